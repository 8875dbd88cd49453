"""Models of text: padding changes nothing (packed sequences, masks), a batch trimmed of its trailing padding gives
the same outputs, a GPT is causal, and the language models give a distribution per position."""

import pytest
import torch

from dlx.models.gpt import GPT
from dlx.models.rnn import RecurrentLM, RecurrentNet
from dlx.models.transformer import TransformerClassifier
from dlx.train.tasks import without_trailing_padding

VOCAB, LENGTH = 50, 20
CLASSIFIERS = [
    lambda: RecurrentNet([LENGTH], 3, cell="lstm", num_layers=2, bidirectional=True, vocab_size=VOCAB),
    lambda: RecurrentNet([LENGTH], 3, cell="gru", vocab_size=VOCAB),
    lambda: RecurrentNet([LENGTH], 3, cell="lstm", bidirectional=True, vocab_size=VOCAB, pooling="max", dropout=0.3),
    lambda: RecurrentNet([LENGTH], 3, cell="gru", num_layers=2, vocab_size=VOCAB, pooling="mean"),
    lambda: TransformerClassifier([LENGTH], 3, d_model=16, num_heads=2, num_layers=2, vocab_size=VOCAB),
    lambda: TransformerClassifier([LENGTH], 3, d_model=16, num_heads=2, pooling="mean", vocab_size=VOCAB),
]


def texts(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Token ids (B, LENGTH), each row `length` ids past the special ones, then padding (0)."""
    ids = torch.randint(4, VOCAB, (len(lengths), LENGTH), generator=torch.Generator().manual_seed(seed))
    return ids.masked_fill(torch.arange(LENGTH) >= torch.tensor(lengths).unsqueeze(1), 0)


@pytest.mark.parametrize("build", CLASSIFIERS)
def test_a_text_is_classified_alike_whatever_shares_its_batch(build) -> None:
    torch.manual_seed(0)
    model = build().eval()
    batch = texts([3, 17, 1, 9])
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(row.unsqueeze(0)) for row in batch])
        trimmed = model(without_trailing_padding(batch))
    assert without_trailing_padding(batch).shape == (4, 17)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together, trimmed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", CLASSIFIERS)
def test_what_follows_a_text_is_not_read(build) -> None:
    """Changing the ids after a text's end (which padding masks out) changes nothing."""
    torch.manual_seed(0)
    model = build().eval()
    batch = texts([5, 8])
    other = batch.clone()
    other[0, 5:] = 7  # no longer padding: now the text is longer
    with torch.no_grad():
        assert not torch.allclose(model(batch)[0], model(other)[0])
        assert torch.allclose(model(batch)[1], model(other)[1], atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooling_reads_the_outputs_of_each_texts_own_tokens(pooling: str) -> None:
    """The pooled features are the max or mean of the outputs over a text's tokens, computed here on the text
    alone, unpadded."""
    torch.manual_seed(0)
    model = RecurrentNet([LENGTH], 3, cell="lstm", bidirectional=True, vocab_size=VOCAB, pooling=pooling).eval()
    batch = texts([6, 11])
    with torch.no_grad():
        expected = []
        for row, length in zip(batch, (6, 11)):
            outputs, _ = model.recurrent(model.embedding(row[:length].unsqueeze(0)))  # (1, length, 2H)
            pooled = outputs.amax(dim=1) if pooling == "max" else outputs.mean(dim=1)
            expected.append(model.head(pooled))
        torch.testing.assert_close(model(batch), torch.cat(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_pooling_over_image_rows(pooling: str) -> None:
    model = RecurrentNet([1, 8, 8], 3, hidden_size=8, bidirectional=True, pooling=pooling)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_an_empty_text_gives_finite_outputs() -> None:
    for build in CLASSIFIERS:
        assert build().eval()(texts([0, 4])).isfinite().all()


@pytest.mark.parametrize("build", [lambda: GPT([LENGTH], VOCAB, d_model=16, num_heads=2, num_layers=2),
                                   lambda: RecurrentLM(VOCAB, hidden_size=16, embedding_dim=16, tie_weights=True)])
def test_language_models_are_causal(build) -> None:
    torch.manual_seed(0)
    model = build().eval()
    ids = texts([LENGTH, LENGTH])
    changed = ids.clone()
    changed[:, 10:] = 5  # the future
    with torch.no_grad():
        logits = model(ids)
        assert logits.shape == (2, LENGTH, VOCAB)
        torch.testing.assert_close(logits[:, :10], model(changed)[:, :10])
        assert not torch.allclose(logits[:, 10:], model(changed)[:, 10:])


def test_gpt_refuses_more_tokens_than_its_block() -> None:
    with pytest.raises(ValueError, match="more than the block size"):
        GPT([8], VOCAB, d_model=16, num_heads=2)(torch.ones(1, 9, dtype=torch.int64))
