"""The models as plain nn.Modules: shapes, choices and the errors their constructors give."""

import pytest
import torch
from torch import nn

from dlx.models.cnn import ConvNet
from dlx.models.ffn import FeedForward
from dlx.models.gan import GAN
from dlx.models.layers import make_activation
from dlx.models.perceptron import Perceptron
from dlx.models.rnn import RecurrentNet
from dlx.models.transformer import TransformerClassifier, sinusoidal_positions

IMAGE, COLOUR, TABULAR = [1, 8, 8], [3, 32, 32], [30]


@pytest.mark.parametrize("shape", [IMAGE, COLOUR, TABULAR])
@pytest.mark.parametrize("build", [
    lambda s: Perceptron(s, 3),
    lambda s: FeedForward(s, 3, hidden_sizes=[16, 8], batch_norm=True, dropout=0.1),
    lambda s: RecurrentNet(s, 3, cell="lstm", hidden_size=8, num_layers=2, bidirectional=True),
    lambda s: RecurrentNet(s, 3, cell="gru", hidden_size=8),
    lambda s: RecurrentNet(s, 3, cell="rnn", hidden_size=8),
    lambda s: TransformerClassifier(s, 3, d_model=16, num_heads=2, num_layers=1, dim_feedforward=32),
    lambda s: TransformerClassifier(s, 3, d_model=16, num_heads=2, num_layers=1, positional="sinusoidal",
                                    pooling="mean"),
])
def test_models_map_any_input_to_logits(build, shape: list[int]) -> None:
    model = build(shape)
    assert model(torch.rand(5, *shape)).shape == (5, 3)


@pytest.mark.parametrize("shape", [IMAGE, COLOUR])
def test_cnn_and_patch_transformer_on_images(shape: list[int]) -> None:
    assert ConvNet(shape, 10, channels=[4, 8, 8], hidden_sizes=[16])(torch.rand(2, *shape)).shape == (2, 10)
    vit = TransformerClassifier(shape, 10, d_model=16, num_heads=4, num_layers=1, patch_size=4)
    assert vit(torch.rand(2, *shape)).shape == (2, 10)


def test_gan_generates_samples_of_the_data_shape_and_scores_them() -> None:
    gan = GAN([1, 8, 8], noise_dim=4, generator_sizes=[16], discriminator_sizes=[16], noise="uniform")
    z = gan.sample_noise(6, torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1
    assert torch.equal(z, gan.sample_noise(6, torch.Generator().manual_seed(0)))  # fixed noise is reproducible
    fake = gan.generate(z)
    assert fake.shape == (6, 1, 8, 8) and fake.abs().max() <= 1  # tanh output, like data scaled to [-1, 1]
    assert gan(fake).shape == (6,)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "softmax"])
def test_every_tutorial_activation(name: str) -> None:
    out = make_activation(name)(torch.linspace(-3, 3, 7).view(1, 7))
    if name == "softmax":
        assert out.sum().item() == pytest.approx(1.0)
    if name == "relu":
        assert out.min().item() == 0.0
    if name == "leaky_relu":
        assert out[0, 0].item() == pytest.approx(-0.03)


def test_weight_init_schemes() -> None:
    zeros = FeedForward([64], 10, hidden_sizes=[50], weight_init="zeros")
    assert all(torch.count_nonzero(p) == 0 for p in zeros.parameters())
    kaiming = FeedForward([1000], 10, hidden_sizes=[1000], weight_init="kaiming_normal")
    first = next(m for m in kaiming.modules() if isinstance(m, nn.Linear))
    assert first.weight.std().item() == pytest.approx((2 / 1000) ** 0.5, rel=0.05)  # He et al.: sqrt(2 / fan_in)
    xavier = FeedForward([1000], 10, hidden_sizes=[1000], activation="tanh", weight_init="xavier_normal")
    first = next(m for m in xavier.modules() if isinstance(m, nn.Linear))
    assert first.weight.std().item() == pytest.approx(5 / 3 * (2 / 2000) ** 0.5, rel=0.05)


def test_sinusoidal_positions_match_the_formula() -> None:
    table = sinusoidal_positions(10, 8)
    assert table[3, 0].item() == pytest.approx(torch.sin(torch.tensor(3.0)).item())
    assert table[3, 3].item() == pytest.approx(torch.cos(torch.tensor(3.0 / 10000 ** (2 / 8))).item(), rel=1e-5)


def test_impossible_architectures_say_why() -> None:
    with pytest.raises(ValueError, match="shrink"):
        ConvNet([1, 8, 8], 10, channels=[4, 4], kernel_size=5, padding=0)
    with pytest.raises(ValueError, match="patch_size 3 does not divide"):
        TransformerClassifier([1, 8, 8], 10, patch_size=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TransformerClassifier([1, 8, 8], 10, d_model=10, num_heads=4)


@pytest.mark.parametrize("build", [
    lambda: RecurrentNet([1, 8, 8], 3, cell="lstm", hidden_size=8, num_layers=2, weight_init="zeros"),
    lambda: TransformerClassifier([1, 8, 8], 3, d_model=16, num_heads=2, num_layers=1, weight_init="zeros"),
])
def test_weight_init_reaches_recurrent_gates_and_attention_projections(build) -> None:
    model = build()
    matrices = {name: p for name, p in model.named_parameters() if p.dim() == 2 and "embed" not in name}
    assert any("weight_hh" in n or "in_proj_weight" in n for n in matrices)
    assert all(torch.count_nonzero(p) == 0 for p in matrices.values())
