"""The convolutional network pools before a ReLU: the same numbers and gradients as the textbook order
(activation, then pooling), bit for bit, and the same checkpoint keys."""

import pytest
import torch
from torch import nn

from dlx.models.cnn import ConvNet


def textbook_order(model: ConvNet) -> nn.Sequential:
    """The model's own layers with each max pooling moved back after the activation that follows it."""
    layers = list(model.features)
    for index, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.MaxPool2d):
            layers[index], layers[index + 1] = layers[index + 1], layer
    return nn.Sequential(*layers, *model.head)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_pooling_before_the_activation_changes_no_number(activation: str) -> None:
    torch.manual_seed(0)
    model = ConvNet([1, 28, 28], 10, channels=[8, 16], activation=activation, hidden_sizes=[32])
    positions = [type(layer).__name__ for layer in model.features]
    assert positions[positions.index("MaxPool2d") + 1] in ("ReLU", "LeakyReLU")
    textbook = textbook_order(model)
    assert [type(layer).__name__ for layer in textbook][2:4] == [positions[3], "MaxPool2d"]
    x = torch.randn(16, 1, 28, 28)
    target = torch.randint(0, 10, (16,))
    outputs, gradients = [], []
    for net in (model, textbook):
        net.zero_grad()
        out = net(x)
        nn.functional.cross_entropy(out, target).backward()
        outputs.append(out.detach())
        gradients.append([p.grad.clone() for p in model.parameters()])  # textbook shares model's parameters
    assert torch.equal(*outputs)
    assert all(torch.equal(a, b) for a, b in zip(*gradients))


def test_other_activations_and_average_pooling_keep_the_textbook_order() -> None:
    for kwargs in ({"activation": "gelu"}, {"pooling": "avg"}):
        names = [type(layer).__name__ for layer in ConvNet([1, 8, 8], 3, channels=[4], **kwargs).features]
        assert names[-1] in ("MaxPool2d", "AvgPool2d")


def test_checkpoint_keys_do_not_depend_on_the_order() -> None:
    keys = set(ConvNet([1, 28, 28], 10, channels=[8, 16]).state_dict())
    assert {"features.0.weight", "features.1.weight", "features.4.weight", "features.5.running_mean"} <= keys
