import math
from typing import Literal

import torch
from torch import nn

from dlx.models.layers import PAD, WeightInit, init_weights
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
    the mean of all tokens.

    Text (`vocab_size`, which dlx fills in from the data's tokenizer): the input is token ids (B, T), padded with
    0; they are embedded, and attention never looks at the padding (a key-padding mask), nor does the mean."""

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
        vocab_size: int | None = None,
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
        elif vocab_size:
            steps, features = input_shape[0], 0
        else:
            steps, features = sequence_shape(input_shape)
        self.embed: nn.Module = nn.Embedding(vocab_size, d_model, padding_idx=PAD) if vocab_size \
            else nn.Linear(features, d_model)
        self.text = bool(vocab_size)
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
        h = self.embed(x if self.text else self.tokens(x))  # (B, T, d_model)
        padding = None
        if self.text:
            padding = x == PAD  # (B, T): True where a text has ended
            # A row of padding alone (an empty text) attends to its first position rather than to nothing (NaN).
            padding[:, 0] = False
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
            if padding is not None:
                padding = torch.cat([padding.new_zeros(len(x), 1), padding], dim=1)
        if self.positions is not None:
            h = h + self.positions[:, : h.shape[1]]  # text may come without its trailing padding: fewer tokens
        h = self.norm(self.encoder(h, src_key_padding_mask=padding))
        if self.pooling == "cls":
            return self.head(h[:, 0])
        if padding is None:
            return self.head(h.mean(dim=1))
        kept = (~padding).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return self.head((h * kept).sum(dim=1) / kept.sum(dim=1).clamp_min(1))
