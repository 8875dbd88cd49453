"""Encoder-decoder models of token sequences: the tutorial's Transformer (an encoder and a decoder, each a stack of
self-attention and feed-forward layers, the decoder also attending to the encoder's output) and, before it, an
LSTM encoder-decoder with attention.

Both read source ids (B, S) and target ids (B, T) padded with 0, and share one interface:
- forward(src, tgt_in) -> logits (B, T, vocab): teacher forcing, each position predicting the next token;
- encode(src) -> memory, start(memory) -> state, step(memory, state, token) -> (logits (B, vocab), state): one
  decoding step at a time, for dlx.models.decoding (greedy and beam search). Memory and state are tuples of
  tensors whose first dimension is the batch, so that a beam search can reorder them with index_select.
"""

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlx.models.transformer import sinusoidal_positions

# The special ids of every dlx vocabulary (dlx.data.tokens, which the models layer does not import; a unit test
# checks they agree): padding, and the token each target begins with and ends with.
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3

Tensors = tuple[torch.Tensor, ...]


class EncoderDecoder(nn.Module, ABC):
    """What the Seq2Seq task, decoding and export ask of an encoder-decoder (see the module's docstring)."""

    max_target_length: int  # the longest target of the training data, [BOS] and [EOS] included: decoding's limit

    @abstractmethod
    def encode(self, src: torch.Tensor) -> Tensors:
        """The memory the decoder reads: tensors (B, ...) computed once per source."""

    @abstractmethod
    def start(self, memory: Tensors) -> Tensors:
        """The decoder's state before its first token ([BOS])."""

    @abstractmethod
    def step(self, memory: Tensors, state: Tensors, token: torch.Tensor) -> tuple[torch.Tensor, Tensors]:
        """Logits (B, vocab) of the token after `token` (B,), and the state after it."""


class TransformerSeq2Seq(EncoderDecoder):
    """The Transformer of "Attention is all you need": token embeddings scaled by sqrt(d_model) plus sinusoidal
    positions, an encoder stack (self-attention over the source, padding masked out) and a decoder stack (causal
    self-attention over the target so far, then attention to the encoder's output), pre-norm, one embedding
    table shared by source and target (one vocabulary) and, if `tie_embeddings`, by the output layer."""

    def __init__(
        self,
        vocab_size: int,
        max_target_length: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if d_model % 2:
            raise ValueError(f"d_model ({d_model}) must be even: sine and cosine positions come in pairs")
        self.max_target_length = max_target_length
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        # Entries of scale 1/sqrt(d_model): times sqrt(d_model) in embed_tokens they are of unit scale, as the
        # positions are, and as the output layer's weights (tied) they give logits of unit scale.
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()

        def encoder_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        def decoder_layer() -> nn.TransformerDecoderLayer:
            return nn.TransformerDecoderLayer(d_model, num_heads, dim_feedforward, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.encoder = nn.TransformerEncoder(encoder_layer(), num_encoder_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(decoder_layer(), num_decoder_layers, norm=nn.LayerNorm(d_model))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, vocab_size)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, d_model): embeddings scaled as in the paper, so that positions do not drown them."""
        positions = sinusoidal_positions(ids.shape[1], self.d_model).to(device=ids.device)
        return self.dropout(self.embed(ids) * math.sqrt(self.d_model) + positions)

    def encode(self, src: torch.Tensor) -> Tensors:
        padding = src == PAD_ID  # (B, S), True where there is no token
        return self.encoder(self.embed_tokens(src), src_key_padding_mask=padding), padding

    def decode(self, memory: torch.Tensor, padding: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) of the token after each position of tgt_in (B, T). Target padding needs no mask:
        it comes after the tokens, which the causal mask keeps from looking ahead, and the loss ignores it."""
        length = tgt_in.shape[1]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=tgt_in.device), diagonal=1)
        hidden = self.decoder(self.embed_tokens(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                              memory_key_padding_mask=padding)
        return self.head(hidden)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, padding = self.encode(src)
        return self.decode(memory, padding, tgt_in)

    def start(self, memory: Tensors) -> Tensors:
        return (torch.empty(memory[0].shape[0], 0, dtype=torch.long, device=memory[0].device),)

    def step(self, memory: Tensors, state: Tensors, token: torch.Tensor) -> tuple[torch.Tensor, Tensors]:
        # The state is the target so far (B, t); the decoder runs over all of it again at each step: O(T^2),
        # which short targets afford, for the same numbers as teacher forcing.
        prefix = torch.cat([state[0], token[:, None]], dim=1)
        return self.decode(memory[0], memory[1], prefix)[:, -1], (prefix,)


class LSTMSeq2Seq(EncoderDecoder):
    """The encoder-decoder with attention that came before the Transformer (Bahdanau et al. 2015, Luong et al.
    2015): a bidirectional LSTM reads the source (packed, so padding is never read); a unidirectional LSTM writes
    the target one token at a time, starting from the encoder's final states. At each step the decoder's output
    attends to the encoder's outputs (`attention`: additive, Bahdanau's score v.tanh(Wq + Uk); or dot,
    Luong's "general" score q.Wk), and the context and the output make the attentional vector that predicts the
    next token and is fed to the next step with its token (Luong's input feeding)."""

    def __init__(
        self,
        vocab_size: int,
        max_target_length: int,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        attention: Literal["additive", "dot"] = "additive",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.max_target_length = max_target_length
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.attention = attention
        between = dropout if num_layers > 1 else 0.0  # torch applies it between layers only
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.encoder = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=True,
                               dropout=between)
        self.values = nn.Linear(2 * hidden_size, hidden_size)  # both directions' outputs -> what attention reads
        self.keys = nn.Linear(hidden_size, hidden_size, bias=False)
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.score = nn.Linear(hidden_size, 1, bias=False)  # additive attention's v
        self.bridge = nn.Linear(4 * hidden_size, 2 * hidden_size)  # final encoder (h, c) -> first decoder (h, c)
        self.decoder = nn.LSTM(embedding_dim + hidden_size, hidden_size, num_layers, batch_first=True,
                               dropout=between)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode(self, src: torch.Tensor) -> Tensors:
        padding = src == PAD_ID
        lengths = (~padding).sum(dim=1).clamp_min(1)  # an empty source reads one padding token
        packed = pack_padded_sequence(self.dropout(self.embed(src)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, (h, c) = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])  # (B, S, 2H)
        values = self.values(outputs)  # (B, S, H)

        def both_directions(state: torch.Tensor) -> torch.Tensor:  # (layers * 2, B, H) -> (B, layers, 2H)
            return state.view(self.num_layers, 2, -1, self.hidden_size).permute(2, 0, 1, 3).flatten(2)

        final = torch.tanh(self.bridge(torch.cat([both_directions(h), both_directions(c)], dim=2)))
        h0, c0 = final.chunk(2, dim=2)  # (B, layers, H) each
        return values, self.keys(values), padding, h0, c0

    def start(self, memory: Tensors) -> Tensors:
        values, _, _, h0, c0 = memory
        return h0, c0, values.new_zeros(values.shape[0], self.hidden_size)

    def attend(self, query: torch.Tensor, memory: Tensors) -> torch.Tensor:
        """The context (B, H): the encoder's values weighted by the softmax of each position's score with the
        decoder's output `query` (B, H), padding excluded."""
        values, keys, padding = memory[:3]
        if self.attention == "additive":
            scores = self.score(torch.tanh(keys + self.query(query)[:, None, :])).squeeze(2)  # (B, S)
        else:
            scores = torch.bmm(keys, query[:, :, None]).squeeze(2)
        weights = F.softmax(scores.masked_fill(padding, float("-inf")), dim=1)
        return torch.bmm(weights[:, None, :], values).squeeze(1)

    def step(self, memory: Tensors, state: Tensors, token: torch.Tensor) -> tuple[torch.Tensor, Tensors]:
        h, c, feed = state
        step_input = torch.cat([self.dropout(self.embed(token)), feed], dim=1)[:, None, :]  # (B, 1, E + H)
        output, (h_next, c_next) = self.decoder(step_input, (h.transpose(0, 1).contiguous(),
                                                             c.transpose(0, 1).contiguous()))
        query = output[:, 0]
        attentional = torch.tanh(self.combine(torch.cat([query, self.attend(query, memory)], dim=1)))
        logits = self.head(self.dropout(attentional))
        return logits, (h_next.transpose(0, 1), c_next.transpose(0, 1), attentional)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory = self.encode(src)
        state = self.start(memory)
        logits = []
        for position in range(tgt_in.shape[1]):
            step_logits, state = self.step(memory, state, tgt_in[:, position])
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, vocab)
