"""Encoder-decoders and their decoding, in-process: teacher forcing and step-by-step decoding compute the same
logits, beam search of one is greedy decoding and a wider beam finds hypotheses at least as probable, and the
metrics summed per batch give sacrebleu's corpus scores."""

import random

import pytest
import torch
import torch.nn.functional as F

from dlx.data import tokens
from dlx.models import seq2seq
from dlx.models.decoding import beam_search, greedy
from dlx.models.seq2seq import EOS_ID, PAD_ID, LSTMSeq2Seq, TransformerSeq2Seq
from dlx.train import sequence_metrics as metrics

VOCAB = 12


def models() -> list[seq2seq.EncoderDecoder]:
    """Untrained models, their output layer biased towards [EOS] so that most hypotheses end within a few steps."""
    torch.manual_seed(0)
    built = [TransformerSeq2Seq(VOCAB, 9, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=2,
                                dim_feedforward=32, tie_embeddings=False),
             LSTMSeq2Seq(VOCAB, 9, embedding_dim=8, hidden_size=16, num_layers=2),
             LSTMSeq2Seq(VOCAB, 9, embedding_dim=8, hidden_size=16, attention="dot")]
    with torch.no_grad():
        for model in built:
            model.head.bias[EOS_ID] += 3.0
    return [model.eval() for model in built]


def sources() -> torch.Tensor:
    src = torch.randint(4, VOCAB, (5, 7), generator=torch.Generator().manual_seed(1))
    src[1, 4:] = PAD_ID  # shorter sources, padded
    src[3, 2:] = PAD_ID
    return src


def log_probability(model: seq2seq.EncoderDecoder, src: torch.Tensor, hypothesis: torch.Tensor) -> torch.Tensor:
    """(B,) the log-probability of each hypothesis (tokens after [BOS], up to its [EOS])."""
    tgt_in = torch.cat([torch.full((len(src), 1), tokens.BOS_ID), hypothesis[:, :-1]], dim=1)
    log_probs = F.log_softmax(model(src, tgt_in), dim=2).gather(2, hypothesis[:, :, None]).squeeze(2)
    return (log_probs * (hypothesis != PAD_ID)).sum(dim=1)


def test_the_models_special_ids_are_the_tokenizers() -> None:
    assert (seq2seq.PAD_ID, seq2seq.BOS_ID, seq2seq.EOS_ID) == (tokens.PAD_ID, tokens.BOS_ID, tokens.EOS_ID)


@pytest.mark.parametrize("index", range(3))
def test_teacher_forcing_and_stepwise_decoding_give_the_same_logits(index: int) -> None:
    model, src = models()[index], sources()
    tgt_in = torch.randint(4, VOCAB, (5, 6), generator=torch.Generator().manual_seed(2))
    tgt_in[:, 0] = tokens.BOS_ID
    with torch.no_grad():
        forced = model(src, tgt_in)  # (B, T, V)
        memory = model.encode(src)
        state = model.start(memory)
        steps = []
        for position in range(tgt_in.shape[1]):
            logits, state = model.step(memory, state, tgt_in[:, position])
            steps.append(logits)
    assert forced.shape == (5, 6, VOCAB)
    torch.testing.assert_close(torch.stack(steps, dim=1), forced, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("index", range(3))
def test_padding_does_not_change_a_sources_output(index: int) -> None:
    model, src = models()[index], sources()
    with torch.no_grad():
        alone = greedy(model, src[3:4, :2], 8)
        in_batch = greedy(model, src, 8)[3:4, : alone.shape[1]]
    assert torch.equal(alone, in_batch)


@pytest.mark.parametrize("index", range(3))
def test_beam_of_one_is_greedy_and_wider_beams_find_likelier_hypotheses(index: int) -> None:
    model, src = models()[index], sources()
    with torch.no_grad():
        greedy_ids = greedy(model, src, 8)
        assert torch.equal(beam_search(model, src, 8, beam=1), greedy_ids)
        wide = beam_search(model, src, 8, beam=5, length_penalty=0.0)  # no normalisation: the likeliest wins
        ended = lambda ids: (ids == EOS_ID).any(dim=1)  # noqa: E731
        both = ended(greedy_ids) & ended(wide)
        assert both.any()
        assert (log_probability(model, src, wide)[both] >= log_probability(model, src, greedy_ids)[both] - 1e-5).all()
    assert (wide[:, 0] != PAD_ID).all()


def test_summed_statistics_give_sacrebleus_corpus_scores() -> None:
    from sacrebleu.metrics import BLEU, CHRF

    rng = random.Random(0)
    words = ["one", "two", "three", "four", "hundred", "and", "twenty"]
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(40)]
    hypotheses = [r if i % 3 == 0 else " ".join(reversed(r.split())) if i % 3 == 1 else r[: len(r) // 2]
                  for i, r in enumerate(references)]
    for char_level in (False, True):
        bleu = metrics.bleu_metric(char_level)
        # Summed over batches of 16 and scaled by the count, as evaluation does.
        sums = sum(metrics.bleu_statistics(bleu, hypotheses[i:i + 16], references[i:i + 16]) for i in range(0, 40, 16))
        expected = BLEU(tokenize="char" if char_level else "13a", smooth_method="none").corpus_score(
            hypotheses, [references]).score
        assert metrics.bleu_score(list(sums / 40)) == pytest.approx(expected, abs=1e-9)
    chrf = metrics.chrf_metric()
    sums = sum(metrics.chrf_statistics(chrf, hypotheses[i:i + 16], references[i:i + 16]) for i in range(0, 40, 16))
    assert metrics.chrf_score(chrf, list(sums / 40)) == pytest.approx(CHRF().corpus_score(hypotheses, [references]).score)


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0), ("abc", "abc", 0), ("", "abc", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
    ("493", "494", 1), ("dbqk", "dbk", 1), ("abcdef", "azced", 3),
])
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert metrics.edit_distance(a, b) == metrics.edit_distance(b, a) == distance
