import math
from typing import Literal

import torch
from torch import nn

from dlx.models.layers import WeightInit, init_weights
from dlx.models.rnn import as_sequence, sequence_shape


def sinusoidal_positions(steps: int, d_model: int) -> torch.Tensor:
    """The fixed sine/cosine encoding of "Attention is all you need", shape (steps, d_model)."""
    position = torch.arange(steps).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(steps, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class TransformerClassifier(nn.Module):
    """A Transformer encoder over tokens: an image's rows (patch_size=0) or its patch_size x patch_size
    patches (a small ViT), a vector's features, or a sequence's steps; classified from a [CLS] token or
    the mean of all tokens."""

    def __init__(
        self,
        input_shape: list[int],
        num_outputs: int,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        patch_size: int = 0,
        positional: Literal["learned", "sinusoidal", "none"] = "learned",
        pooling: Literal["cls", "mean"] = "cls",
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.patch_size = patch_size
        if patch_size:
            channels, height, width = input_shape
            if height % patch_size or width % patch_size:
                raise ValueError(f"patch_size {patch_size} does not divide the {height}x{width} image")
            steps, features = (height // patch_size) * (width // patch_size), channels * patch_size**2
        else:
            steps, features = sequence_shape(input_shape)
        self.embed = nn.Linear(features, d_model)
        self.pooling = pooling
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        tokens = steps + (pooling == "cls")
        if positional == "learned":
            self.positions = nn.Parameter(torch.randn(1, tokens, d_model) * 0.02)
        elif positional == "sinusoidal":
            self.register_buffer("positions", sinusoidal_positions(tokens, d_model).unsqueeze(0))
        else:
            self.positions = None  # type: ignore[assignment]  # no positional encoding: forward skips it
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)
        init_weights(self, weight_init)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_size:
            p = self.patch_size
            patches = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
            return patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (B, patches, C*p*p)
        return as_sequence(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.tokens(x))  # (B, T, d_model)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        if self.positions is not None:
            h = h + self.positions
        h = self.norm(self.encoder(h))
        return self.head(h[:, 0] if self.pooling == "cls" else h.mean(dim=1))
