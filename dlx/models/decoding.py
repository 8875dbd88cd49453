"""Decoding an encoder-decoder's output one token at a time: greedy (the most probable token at each step) and
beam search (the `beam` most probable hypotheses kept at each step, ranked by their log-probability divided by
their length ** length_penalty, so that short hypotheses are not preferred merely for having fewer factors).

Both return ids (B, L): the tokens after [BOS], up to and including each hypothesis's [EOS], then [PAD]; L is at
most `max_steps`. Both work on whole batches, and give a source the same tokens whatever else is in its batch up to
floating-point summation order.
"""

import torch
import torch.nn.functional as F

from dlx.models.seq2seq import BOS_ID, EOS_ID, PAD_ID, EncoderDecoder

DEFAULT_LENGTH_PENALTY = 1.0  # the score of a hypothesis is its mean log-probability per token


def never_predicted(logits: torch.Tensor) -> torch.Tensor:
    """The logits (B, V) with [PAD] and [BOS] ruled out: no target position holds them (padding is not a token,
    and [BOS] only starts the decoder's input), so a decoder's choice among them is noise."""
    return logits.index_fill(1, torch.tensor([PAD_ID, BOS_ID], device=logits.device), float("-inf"))


def greedy(model: EncoderDecoder, src: torch.Tensor, max_steps: int) -> torch.Tensor:
    """(B, L) the most probable token at each step, until every hypothesis has ended with [EOS]."""
    memory = model.encode(src)
    state = model.start(memory)
    token = torch.full((src.shape[0],), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    tokens = []
    for _ in range(max_steps):
        logits, state = model.step(memory, state, token)
        token = never_predicted(logits).argmax(dim=1).masked_fill(done, PAD_ID)
        tokens.append(token)
        done |= token == EOS_ID
        if bool(done.all()):
            break
    return torch.stack(tokens, dim=1) if tokens else src.new_zeros(src.shape[0], 0)


def beam_search(model: EncoderDecoder, src: torch.Tensor, max_steps: int, beam: int,
                length_penalty: float = DEFAULT_LENGTH_PENALTY) -> torch.Tensor:
    """(B, L) for each source, the best of `beam` hypotheses by log-probability / length ** length_penalty.

    The B * beam hypotheses advance together as one batch. A finished hypothesis (it produced [EOS]) only
    extends with [PAD] at no cost, so it competes with the others at its own length; with beam=1 this is greedy
    decoding."""
    batch, device = src.shape[0], src.device
    memory = tuple(t.repeat_interleave(beam, dim=0) for t in model.encode(src))  # (B * beam, ...)
    state = model.start(memory)
    token = torch.full((batch * beam,), BOS_ID, dtype=torch.long, device=device)
    # Each source starts from one live hypothesis: the others start at -inf, so the first step fills the beam
    # with distinct continuations rather than beam copies of the best one.
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    scores = scores.view(-1)  # (B * beam,) sum of log-probabilities
    lengths = torch.zeros(batch * beam, device=device)  # tokens produced, [EOS] included
    finished = torch.zeros(batch * beam, dtype=torch.bool, device=device)
    history = torch.zeros(batch * beam, 0, dtype=torch.long, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beam
    for _ in range(max_steps):
        logits, state = model.step(memory, state, token)
        log_probs = never_predicted(F.log_softmax(logits.float(), dim=1))  # (B * beam, V)
        vocab = log_probs.shape[1]
        pad_only = torch.full_like(log_probs[0], float("-inf"))
        pad_only[PAD_ID] = 0.0
        log_probs = torch.where(finished[:, None], pad_only, log_probs)
        candidates = scores[:, None] + log_probs  # (B * beam, V)
        new_lengths = lengths + (~finished).float()
        ranked = candidates / new_lengths.clamp_min(1.0)[:, None] ** length_penalty
        chosen = ranked.view(batch, beam * vocab).topk(beam, dim=1).indices  # (B, beam)
        origin = (offsets + chosen // vocab).view(-1)  # the hypothesis each new one extends
        token = (chosen % vocab).view(-1)
        scores = candidates.view(batch, beam * vocab).gather(1, chosen).view(-1)
        lengths = new_lengths[origin]
        state = tuple(t.index_select(0, origin) for t in state)
        history = torch.cat([history.index_select(0, origin), token[:, None]], dim=1)
        finished = finished[origin] | (token == EOS_ID)
        if bool(finished.all()):
            break
    final = (scores / lengths.clamp_min(1.0) ** length_penalty).view(batch, beam)
    best = (offsets[:, 0] + final.argmax(dim=1))
    return history.index_select(0, best)


def decode(model: EncoderDecoder, src: torch.Tensor, max_steps: int, beam: int = 1) -> torch.Tensor:
    """Greedy decoding for beam=1, beam search otherwise."""
    if beam <= 1:
        return greedy(model, src, max_steps)
    return beam_search(model, src, max_steps, beam)
