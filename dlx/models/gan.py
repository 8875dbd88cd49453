import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from dlx.models.layers import Activation, WeightInit, flat_size, init_weights, make_activation


def mlp(sizes: list[int], activation: Activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width_in, width_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(width_in, width_out), make_activation(activation)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class GAN(nn.Module):
    """The tutorial's GAN: a generator MLP that maps noise z to a sample and a discriminator MLP that
    outputs the logit of "this sample is real".

    Data is scaled to [-1, 1] for this model, which is why the generator ends in tanh. forward(x)
    returns the discriminator's logits for x, so the model is a classifier of real vs generated.
    """

    def __init__(
        self,
        input_shape: list[int],
        noise_dim: int = 32,
        generator_sizes: Sequence[int] = (128, 256),
        discriminator_sizes: Sequence[int] = (256, 128),
        activation: Activation = "leaky_relu",
        noise: Literal["normal", "uniform"] = "normal",
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        self.input_shape = list(input_shape)
        self.noise_dim = noise_dim
        self.noise = noise
        features = flat_size(input_shape)
        self.generator = nn.Sequential(mlp([noise_dim, *generator_sizes, features], activation), nn.Tanh())
        self.discriminator = mlp([features, *discriminator_sizes, 1], activation)
        init_weights(self, weight_init, activation)

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n noise vectors on the model's device; with a (CPU) generator, the same ones on every device."""
        device = next(self.discriminator.parameters()).device
        shape = (n, self.noise_dim)
        draw = torch.rand if self.noise == "uniform" else torch.randn
        z = draw(shape, generator=generator).to(device) if generator else draw(shape, device=device)
        return z * 2 - 1 if self.noise == "uniform" else z  # U(-1, 1) or N(0, 1)

    def with_networks(self, generator: nn.Module, discriminator: nn.Module) -> "GAN":
        """This GAN calling other networks, e.g. its own wrapped for data-parallel training; the two share
        everything else. Its state_dict() is no checkpoint's: save the original's."""
        view = copy.copy(self)
        view._modules = {}  # its own table of submodules: the copy would share the original's
        view.generator, view.discriminator = generator, discriminator  # type: ignore[assignment]  # any Module
        return view

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z).view(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x.flatten(1)).squeeze(1)  # (B,) logits of "real"
