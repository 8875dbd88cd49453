"""A causal Transformer decoder over tokens, a small GPT (Radford et al. 2018): the Transformer's decoder stack
without cross-attention, each position attending to itself and the positions before it."""

import torch
from torch import nn

from dlx.models.layers import WeightInit, init_weights


class GPT(nn.Module):
    """Token ids (B, T) in, with T up to the block size the data set gives (input_shape [block_size]); the logits
    of each next token (B, T, vocab) out. Pre-norm blocks of masked self-attention and a feed-forward layer, learnt
    positions, and the output layer tied to the token embedding (`tie_weights`, as GPT-2 does)."""

    def __init__(
        self,
        input_shape: list[int],
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 4,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        tie_weights: bool = True,
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        (block_size,) = input_shape
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)  # GPT-2's scale: N(0, 1) logits through the tied head
        self.positions = nn.Parameter(torch.randn(1, block_size, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        init_weights(self, weight_init)
        if tie_weights:
            self.head.weight = self.embedding.weight

    @property
    def block_size(self) -> int:
        return self.positions.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        if steps > self.block_size:
            raise ValueError(f"{steps} tokens are more than the block size {self.block_size} this model was built for")
        h = self.dropout(self.embedding(x) + self.positions[:, :steps])  # (B, T, d_model)
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device, dtype=h.dtype)
        h = self.blocks(h, mask=causal, is_causal=True)
        return self.head(self.norm(h))  # (B, T, vocab)
