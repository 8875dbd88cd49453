from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from dlx.models.layers import PAD, WeightInit, init_weights

Cell = Literal["rnn", "lstm", "gru"]
Pooling = Literal["last", "max", "mean"]
CELLS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """Read an input as a sequence: an image (B, C, H, W) as H rows of C*W features, a vector (B, F) as
    F steps of one feature, a sequence (B, T, F) as it is."""
    if x.dim() == 4:
        return x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C*W)
    if x.dim() == 2:
        return x.unsqueeze(-1)  # (B, F, 1)
    return x


def sequence_shape(input_shape: list[int]) -> tuple[int, int]:
    """(steps, features per step) of as_sequence() for one sample of this shape."""
    if len(input_shape) == 3:
        channels, height, width = input_shape
        return height, channels * width
    if len(input_shape) == 1:
        return input_shape[0], 1
    return input_shape[0], input_shape[1]


def token_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """(B,) the tokens before the padding of each row of (B, T) ids, at least 1 (a packed sequence cannot be
    empty: an all-padding row is read as one padding token)."""
    return (tokens != PAD).sum(dim=1).clamp_min(1)


class RecurrentNet(nn.Module):
    """A recurrent classifier (vanilla RNN, LSTM or GRU cell) that reads its input one step at a time and
    classifies from its states: `pooling=last`, the last hidden state (both directions' when bidirectional), or
    the maximum (`max`) or mean (`mean`) of the last layer's outputs over all steps, which lets every position of
    a long text speak (Conneau et al. 2017 found max pooling of a bidirectional LSTM the best sentence encoder).

    Text (`vocab_size`, which dlx fills in from the data's tokenizer): the input is token ids (B, T), padded with
    0 after each text's tokens; an embedding turns them into vectors, and the sequences are packed, so that the
    last state is that of each text's own last token, not of the padding after it (and the backward direction
    starts there too), and the padding never enters a max or a mean.

    `dropout` is applied between stacked layers and to the features the output layer reads, and, for text, to the
    embedded tokens too (small labelled text sets overfit their embeddings first)."""

    def __init__(
        self,
        input_shape: list[int],
        num_outputs: int,
        cell: Cell = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        weight_init: WeightInit = "default",
        vocab_size: int | None = None,
        embedding_dim: int = 64,
        pooling: Pooling = "last",
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD) if vocab_size else None
        features = embedding_dim if vocab_size else sequence_shape(input_shape)[1]
        self.recurrent = CELLS[cell](
            features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)
        init_weights(self, weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            outputs, hidden = self.recurrent(as_sequence(x))
        else:
            # The lengths go to the CPU for packing: one small copy per batch.
            packed = pack_padded_sequence(self.dropout(self.embedding(x)), token_lengths(x).cpu(), batch_first=True,
                                          enforce_sorted=False)
            outputs, hidden = self.recurrent(packed)
        if self.pooling == "last":
            features = self.last_state(hidden)
        else:
            features = self.pool(outputs)
        return self.head(self.dropout(features))

    def last_state(self, hidden: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, directions * H): the last layer's final state of each direction."""
        if isinstance(hidden, tuple):  # the LSTM also returns its cell state
            hidden = hidden[0]
        # hidden: (layers * directions, B, H)
        directions = 2 if self.recurrent.bidirectional else 1
        return hidden[-directions:].transpose(0, 1).flatten(1)

    def pool(self, outputs: torch.Tensor | PackedSequence) -> torch.Tensor:
        """(B, directions * H): the max or mean of the last layer's outputs over each sequence's own steps."""
        if not isinstance(outputs, PackedSequence):  # image rows: every sequence has all its steps
            return outputs.amax(dim=1) if self.pooling == "max" else outputs.mean(dim=1)
        steps, lengths = pad_packed_sequence(outputs, batch_first=True)  # (B, longest, D), (B,) in input order
        kept = (torch.arange(steps.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).to(steps.device).unsqueeze(-1)
        if self.pooling == "max":
            return steps.masked_fill(~kept, float("-inf")).amax(dim=1)
        return (steps * kept).sum(dim=1) / lengths.to(steps.device, steps.dtype).unsqueeze(1)


class RecurrentLM(nn.Module):
    """A recurrent language model: token ids (B, T) in, the logits of each next token (B, T, vocab) out, read
    left to right by a stack of LSTM, GRU or vanilla RNN layers (Zaremba et al. 2014's recipe: dropout on the
    embeddings, between layers and before the output).

    `tie_weights` shares the embedding matrix with the output layer (Press & Wolf 2017): fewer parameters and
    usually a lower perplexity; it needs hidden_size == embedding_dim."""

    def __init__(
        self,
        vocab_size: int,
        cell: Cell = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        tie_weights: bool = False,
        weight_init: WeightInit = "default",
    ) -> None:
        super().__init__()
        if tie_weights and hidden_size != embedding_dim:
            raise ValueError(f"tie_weights=true shares the embedding with the output layer, so hidden_size "
                             f"({hidden_size}) must equal embedding_dim ({embedding_dim})")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.recurrent = CELLS[cell](embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                                     dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, vocab_size)
        init_weights(self, weight_init)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.recurrent(self.dropout(self.embedding(x)))  # (B, T, hidden)
        return self.head(self.dropout(output))  # (B, T, vocab)
