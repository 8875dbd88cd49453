"""The pairs loaders in-process: generated targets are right, sources distinct and the same for a seed, splits
disjoint, ids laid out as [BOS] tokens [EOS] with padding trimmed to the longest row."""

from pathlib import Path

import pytest
import torch

from dlx.data.pairs import load_generated_pairs, load_pairs
from dlx.data.tokens import BOS_ID, EOS_ID, PAD_ID, decode_ids, tokenizer_from_json
from dlx.errors import DlxError


def texts(data, split: str) -> list[tuple[str, str]]:
    tokenizer = tokenizer_from_json(data.tokenizer, "test")
    part = data.split(split)
    return [(decode_ids(tokenizer, x.tolist()), decode_ids(tokenizer, y.tolist())) for x, y in zip(part.x, part.y)]


@pytest.mark.parametrize("task", ["reverse", "sort", "addition"])
def test_generated_targets_are_right_and_sources_distinct(task: str) -> None:
    data = load_generated_pairs(task, num_samples=300, min_length=2, max_length=6, alphabet="xyz", digits=2, seed=3)
    pairs = texts(data, "train") + texts(data, "val") + texts(data, "test")
    assert len(pairs) == 300 and len({source for source, _ in pairs}) == 300
    for source, target in pairs:
        if task == "addition":
            expected = str(sum(map(int, source.split("+"))))
        else:
            expected = source[::-1] if task == "reverse" else "".join(sorted(source))
        assert target == expected
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [243, 27, 30]
    again = load_generated_pairs(task, num_samples=300, min_length=2, max_length=6, alphabet="xyz", digits=2, seed=3)
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.test.y, data.test.y)


def test_targets_are_bos_tokens_eos_and_padding_is_trimmed() -> None:
    data = load_generated_pairs("reverse", num_samples=100, min_length=1, max_length=4, alphabet="abc", seed=0)
    y = data.train.y
    assert (y[:, 0] == BOS_ID).all() and data.target_length == y.shape[1] == 4 + 2
    ends = (y == EOS_ID).int().argmax(dim=1)
    assert all((row[end + 1:] == PAD_ID).all() for row, end in zip(y, ends))
    assert data.train.x.shape[1] == 4 and (data.train.x[:, 0] != PAD_ID).all()


def test_impossible_requests_say_why() -> None:
    with pytest.raises(DlxError, match="there are 12 distinct"):
        load_generated_pairs("reverse", num_samples=100, min_length=1, max_length=2, alphabet="abc")
    with pytest.raises(DlxError, match="1 to 9 digits"):
        load_generated_pairs("addition", digits=0)
    with pytest.raises(DlxError, match="tokenizer=word .* exact match"):
        load_pairs("never-read.tsv", tokenizer="word")  # refused before the file is read


def test_a_pairs_file_keeps_cells_as_written_and_learns_its_vocabulary_from_training_rows(tmp_path: Path) -> None:
    rows = [f"{n:03d}\tNA {n}" for n in range(40)] + ["007\tqué"]
    (tmp_path / "pairs.tsv").write_text("source\ttarget\n" + "\n".join(rows) + "\n")
    data = load_pairs(str(tmp_path / "pairs.tsv"), val_fraction=0.1, test_fraction=0.1, split_seed=0)
    pairs = dict(texts(data, "train") + texts(data, "val") + texts(data, "test"))
    assert pairs["012"] == "NA 12"  # "NA" is text, not a missing value; "012" keeps its zero
    vocabulary = tokenizer_from_json(data.tokenizer, "test").get_vocab()
    in_training = "007" in dict(texts(data, "train"))
    assert ("é" in vocabulary) == in_training  # learnt from the training rows alone
