import torch
from torch import nn

from dlx.models.layers import WeightInit, flat_size, init_weights


class Perceptron(nn.Module):
    """The tutorial's perceptron: one weighted sum plus a bias per output, no hidden layer.

    forward() returns the weighted sum z (a logit). The output unit is a sigmoid, sigmoid(z), which
    loss=bce applies inside its numerically stable BCEWithLogits form; the class decision is the step
    function z > 0, the same as sigmoid(z) > 0.5.
    """

    def __init__(self, input_shape: list[int], num_outputs: int, weight_init: WeightInit = "default") -> None:
        super().__init__()
        self.linear = nn.Linear(flat_size(input_shape), num_outputs)
        init_weights(self, weight_init, activation="sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
