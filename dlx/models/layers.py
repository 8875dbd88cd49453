"""Choices the tutorial teaches as hyperparameters: activation functions and weight initialisation."""

from typing import Literal

import torch
from torch import nn

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "softmax"]
WeightInit = Literal[
    "default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal", "zeros"
]


def make_activation(name: Activation) -> nn.Module:
    # Softmax as a hidden activation is unusual but it is one of the tutorial's five; it normalises each
    # sample's features to a probability distribution.
    modules = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "gelu": nn.GELU,
        "softmax": lambda: nn.Softmax(dim=-1),
    }
    return modules[name]()


def init_weights(model: nn.Module, scheme: WeightInit, activation: Activation = "relu") -> None:
    """Re-initialise the weights of every linear and convolution layer; biases start at zero.

    "default" keeps PyTorch's own initialisation (a scaled uniform). Kaiming is meant for ReLU-like
    activations and Xavier for sigmoid/tanh; the gain follows the activation so both stay well scaled.
    """
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    gain = nn.init.calculate_gain(activation) if activation in ("sigmoid", "tanh", "relu", "leaky_relu") else 1.0
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        weight = module.weight
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
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def flat_size(shape: list[int]) -> int:
    return int(torch.Size(shape).numel())
