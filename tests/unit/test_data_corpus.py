"""dlx.data.corpus: how a corpus is split, cut into pieces for the tokenizer, and read back as blocks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dlx.data import corpus
from dlx.data.corpus import Document, TokenBlocks, pieces, split_documents
from dlx.errors import DlxError


def test_one_document_is_split_by_position_at_line_starts() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    splits = split_documents([Document(Path("a.txt"), text)], val_fraction=0.1, test_fraction=0.1, seed=0)
    assert "".join(splits["train"] + splits["val"] + splits["test"]) == text  # nothing lost, nothing repeated
    for name in ("val", "test"):
        assert splits[name][0].startswith("line ") and abs(len(splits[name][0]) - len(text) * 0.1) < 20


def test_several_documents_go_whole_to_one_split_each_fixed_by_the_seed() -> None:
    documents = [Document(Path(f"{i}.txt"), f"document {i}\n" * (10 + i)) for i in range(20)]
    splits = split_documents(documents, val_fraction=0.1, test_fraction=0.1, seed=3)
    texts = {d.text for d in documents}
    assert all(piece in texts for name in splits for piece in splits[name])
    assert sum(len(splits[name]) for name in splits) == 20 and all(splits[name] for name in splits)
    assert split_documents(documents, 0.1, 0.1, seed=3) == splits
    assert split_documents(documents, 0.1, 0.1, seed=4) != splits
    with pytest.raises(DlxError, match="too few for a"):
        split_documents(documents[:2], 0.1, 0.1, seed=0)


def test_a_word_tokenizer_is_refused_before_the_corpus_is_read() -> None:
    with pytest.raises(DlxError, match="tokenizer=word .* bits per character"):
        corpus.load_corpus("never-read.txt", tokenizer="word")


def test_pieces_end_at_line_ends_and_give_the_text_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "PIECE_CHARACTERS", 50)
    text = "".join(f"a line of text number {i}\n" for i in range(40)) + "x" * 120  # and a long last line
    cut = list(pieces([text, "second"]))
    assert "".join(cut) == text + "second"
    assert all(piece.endswith("\n") for piece in cut[:-4]) and cut[-4:] == ["x" * 50, "x" * 50, "x" * 20, "second"]


def test_blocks_read_the_token_file_with_next_token_targets(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    np.arange(100, dtype=np.uint16).tofile(path)
    blocks = TokenBlocks(path, "uint16", start=10, length=50, block_size=8, stride=4)
    assert len(blocks) == (50 - 8 - 1) // 4 + 1 and blocks.sample_shape == [8]
    x, y = next(blocks.batches([torch.tensor([0, 2])]))
    assert x.dtype == torch.int64 and x.tolist() == [list(range(10, 18)), list(range(18, 26))]
    assert y.tolist() == [list(range(11, 19)), list(range(19, 27))]
    last = len(blocks) - 1
    x, y = next(blocks.batches([slice(last, last + 5)]))  # evaluation's ranges: cut at the split's end
    assert len(x) == 1 and y[0, -1].item() <= 10 + 50 - 1  # never past the split
    assert blocks.labels().shape == (len(blocks), 8)
