"""Choices the tutorial teaches as hyperparameters: activation functions and weight initialisation."""

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from dlx.errors import DlxError

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "softmax"]
Nonlinearity = Literal["relu", "leaky_relu"]  # what Kaiming's initialisation is computed for
PAD = 0  # the token id of padding: dlx.data.tokens puts [PAD] first in every vocabulary; masks rely on it

WeightInit = Literal[
    "default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal", "zeros"
]


def make_activation(name: Activation) -> nn.Module:
    # Softmax as a hidden activation is unusual but it is one of the tutorial's five; it normalises each
    # sample's features to a probability distribution.
    modules: dict[str, Callable[[], nn.Module]] = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "gelu": nn.GELU,
        "softmax": lambda: nn.Softmax(dim=-1),
    }
    return modules[name]()


def weights_and_biases(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weight matrices and bias vectors a layer owns itself (not its children's)."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return [module.weight], [module.bias] if module.bias is not None else []
    if isinstance(module, (nn.RNNBase, nn.MultiheadAttention)):  # gate and attention projections
        own = list(module.named_parameters(recurse=False))
        return ([p for name, p in own if "weight" in name and p.dim() == 2],
                [p for name, p in own if "bias" in name])
    return [], []


def init_weights(model: nn.Module, scheme: WeightInit, activation: Activation = "relu") -> None:
    """Re-initialise the weights of every linear, convolution, recurrent and attention layer; biases start
    at zero.

    "default" keeps PyTorch's own initialisation (a scaled uniform). Kaiming is meant for ReLU-like
    activations and Xavier for sigmoid/tanh; the gain follows the activation so both stay well scaled.
    """
    if scheme == "default":
        return
    nonlinearity: Nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    gain = nn.init.calculate_gain(activation) if activation in ("sigmoid", "tanh", "relu", "leaky_relu") else 1.0
    for module in model.modules():
        weights, biases = weights_and_biases(module)
        for weight in weights:
            init_weight(weight, scheme, gain, nonlinearity)
        for bias in biases:
            nn.init.zeros_(bias)


def init_weight(weight: torch.Tensor, scheme: WeightInit, gain: float, nonlinearity: Nonlinearity) -> None:
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity=nonlinearity)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity)
    elif scheme == "normal":
        nn.init.normal_(weight, mean=0.0, std=0.01)
    elif scheme == "zeros":
        # Every unit then computes the same thing: the symmetry problem the tutorial's lesson on
        # initialisation is about. Offered so that it can be seen in a run.
        nn.init.zeros_(weight)


def check_sizes(**sizes: int | Sequence[int]) -> None:
    """Each size (a width, a count of channels, a kernel size...) must be 1 or more: a layer of width 0 passes
    nothing on, and the network would train at chance, or crash in its first step, rather than say so."""
    for name, value in sizes.items():
        values = list(value) if isinstance(value, Sequence) else [value]
        if any(size < 1 for size in values):
            raise DlxError(f"model.{name}={list(value) if isinstance(value, Sequence) else value} is impossible: "
                           f"every {name.removesuffix('s').replace('_', ' ')} must be 1 or more"
                           + (" (an empty list means none)." if isinstance(value, Sequence) else "."))


def flat_size(shape: list[int]) -> int:
    return int(torch.Size(shape).numel())
