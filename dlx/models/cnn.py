from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from dlx.errors import DlxError
from dlx.models.layers import Activation, WeightInit, check_sizes, init_weights, make_activation

# Activations that never reorder two numbers in floating point, so that max pooling before them gives the very
# numbers (and gradients) of max pooling after them, with the activation computed on a quarter of the values.
POOL_FIRST = ("relu", "leaky_relu")


class ConvNet(nn.Module):
    """Convolution blocks (Conv -> [BatchNorm] -> activation -> pooling), then a feedforward head.

    Pooling halves the feature map (pool_size=2) only while it is large enough to pool, so the same
    config runs on 8x8 digits and 32x32 CIFAR-10. Max pooling runs before a ReLU (POOL_FIRST): the same result,
    cheaper. Neither has weights, so checkpoints keep their keys.
    """

    def __init__(
        self,
        input_shape: list[int],
        num_outputs: int,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        pooling: Literal["max", "avg", "none"] = "max",
        pool_size: int = 2,
        batch_norm: bool = True,
        activation: Activation = "relu",
        hidden_sizes: Sequence[int] = (),
        dropout: float = 0.0,
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        check_image_shape(input_shape)
        check_sizes(channels=channels, kernel_size=kernel_size, stride=stride, pool_size=pool_size,
                    hidden_sizes=hidden_sizes)
        if padding < 0:
            raise DlxError(f"model.padding={padding} is impossible: it must be 0 or more pixels.")
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            height = (height + 2 * padding - kernel_size) // stride + 1
            width = (width + 2 * padding - kernel_size) // stride + 1
            pool: list[nn.Module] = []
            if pooling != "none" and min(height, width) >= pool_size:
                pool = [nn.MaxPool2d(pool_size) if pooling == "max" else nn.AvgPool2d(pool_size)]
                height, width = height // pool_size, width // pool_size
            if pool and pooling == "max" and activation in POOL_FIRST:
                blocks += [*pool, make_activation(activation)]
            else:
                blocks += [make_activation(activation), *pool]
            in_channels = out_channels
        if min(height, width) < 1:
            raise ValueError(
                f"the convolutions shrink the {input_shape[1]}x{input_shape[2]} input to nothing; "
                "use a smaller kernel_size or stride, more padding, or fewer channels"
            )
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = in_channels * height * width
        for hidden in hidden_sizes:
            head += [nn.Linear(features, hidden), make_activation(activation)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            features = hidden
        head.append(nn.Linear(features, num_outputs))
        self.head = nn.Sequential(*head)
        init_weights(self, weight_init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, num_outputs)


def check_image_shape(input_shape: list[int]) -> None:
    """A convolutional network takes images: (channels, height, width) per sample."""
    if len(input_shape) != 3:
        raise DlxError(f"model=cnn takes images (channels, height, width), but this data set's samples have shape "
                       f"{list(input_shape)}: they are not images. Use model=ffn for tabular features (or model=rnn, "
                       "lstm, gru or transformer for sequences).")
