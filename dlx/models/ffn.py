from collections.abc import Sequence

import torch
from torch import nn

from dlx.models.layers import Activation, WeightInit, check_sizes, flat_size, init_weights, make_activation


class FeedForward(nn.Module):
    """A multi-layer perceptron: Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer.

    With hidden_sizes=[100] and activation=relu this is the tutorial's 784-100-10 network.
    """

    def __init__(
        self,
        input_shape: list[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (100,),
        activation: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        check_sizes(hidden_sizes=hidden_sizes)
        layers: list[nn.Module] = [nn.Flatten()]
        width = flat_size(input_shape)
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)
        init_weights(self, weight_init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
