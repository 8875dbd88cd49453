"""`dataset=text_lm dataset.path=FILE_OR_FOLDER`: a corpus for a language model, as blocks of tokens.

The text is split before anything is learnt from it: a single file by position (its last `test_fraction` of
characters are the test split, the `val_fraction` before them validation), a folder by file (its files, in an
order drawn from `split_seed`, go to test, validation and training until each has its share of the characters),
so that no block of test text was ever seen in training. The tokenizer is learnt from the training text alone.

The whole corpus is tokenised once into a file of token ids (uint16, or uint32 for vocabularies over 65,536),
kept in a cache folder beside its tokenizer and keyed by the files' names, sizes and modification times and the
settings that change the tokens: the next run of the same corpus reads it at once. Training reads blocks of it
through a memory map opened anew for each batch, so the memory a run holds stays flat however large the corpus
(a map kept open for the whole run would keep every page it touched: nanoGPT #287).

A sample is `block_size + 1` consecutive tokens: the model reads the first block_size and predicts each next one.
Training blocks start every `stride` tokens (default: block_size, so blocks do not overlap; smaller strides give
more, overlapping blocks); validation and test blocks never overlap.
"""

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlx.data import Batch, BatchIndex, DataSplits, Inputs, Loading, cache_folder
from dlx.data.text import ENCODING_ERRORS, read_text_file
from dlx.data.tokens import (
    UNK_ID,
    TokenizerKind,
    encode_corpus,
    refuse_inexact,
    token_dtype,
    tokenizer_from_json,
    train_tokenizer,
)
from dlx.errors import DlxError
from dlx.store.files import atomic_file, read_json, write_json_atomically, write_text_atomically

logger = logging.getLogger("dlx")

CACHE_FORMAT = 1  # bump when what the cache holds, or how text is tokenised, changes
PIECE_CHARACTERS = 1 << 20  # text is tokenised in pieces of about this many characters, cut at line ends
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Document:
    path: Path
    text: str


def load_corpus(path: str, tokenizer: TokenizerKind = "char", vocab_size: int = 512, block_size: int = 128,
                stride: int | None = None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                split_seed: int = 0, lowercase: bool = False, suffixes: Sequence[str] = (".txt",),
                encoding_errors: str = "strict", cache_dir: str | None = None) -> DataSplits:
    """The corpus at `path` as train, validation and test splits of token blocks; see the module's docstring."""
    check_settings(block_size, stride, val_fraction, test_fraction, encoding_errors)
    refuse_inexact(tokenizer, "a language model's bits per character count the characters its tokens stand for, and "
                              "its samples are decoded text")
    started = time.perf_counter()
    files = corpus_files(Path(path).expanduser(), tuple(s.lower() for s in suffixes))
    settings = {"tokenizer": tokenizer, "vocab_size": vocab_size, "lowercase": lowercase, "val": val_fraction,
                "test": test_fraction, "seed": split_seed, "encoding_errors": encoding_errors}
    cache = TokenCache(cache_folder(cache_dir, "text_lm"), files, settings)
    if not cache.complete():
        documents = [Document(file, read_text_file(file, encoding_errors)) for file in files]
        cache.write(*tokenise(documents, settings))
    record = cache.record()
    if record["characters"] == 0:
        raise DlxError(f"{path} holds no text ({len(files)} empty file(s)). Point dataset.path at the corpus.")
    tokens = cache.tokens_path
    parts = {name: TokenBlocks(tokens, record["dtype"], record["splits"][name][0], record["splits"][name][1],
                               block_size, stride or block_size if name == "train" else block_size) for name in SPLITS}
    for name, part in parts.items():
        if len(part) == 0:
            raise DlxError(f"The {name} split of {path} holds {record['splits'][name][1]:,} tokens, fewer than one "
                           f"block of dataset.block_size={block_size} + 1. Use a larger corpus, a smaller block_size, "
                           f"or a larger dataset.{'val' if name == 'val' else 'test'}_fraction."
                           if name != "train" else
                           f"The training split of {path} holds fewer tokens than one block of dataset.block_size="
                           f"{block_size} + 1: use a larger corpus or a smaller block_size.")
    counts = ", ".join(f"{record['splits'][name][1]:,} {name}" for name in SPLITS)
    logger.info(f"Corpus {path}: {len(files):,} file(s), {record['characters']:,} characters; {tokenizer} tokenizer "
                f"of {record['vocab_size']:,} tokens learnt from the training text; tokens: {counts}; blocks of "
                f"{block_size}; {'from the token cache' if cache.hit else 'tokenised now, and cached'} in "
                f"{time.perf_counter() - started:.2f} s"
                + (f"; {record['unknown']:,} validation or test character(s) unseen in training read as [UNK]"
                   if record["unknown"] else ""))
    return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], task="language_model",
                      tokenizer=cache.tokenizer_json())


def check_settings(block_size: int, stride: int | None, val_fraction: float, test_fraction: float,
                   encoding_errors: str) -> None:
    if block_size < 1:
        raise DlxError(f"dataset.block_size={block_size}: give the number of tokens a model reads at once, e.g. 128.")
    if stride is not None and stride < 1:
        raise DlxError(f"dataset.stride={stride}: give the tokens between the starts of training blocks (1 or more), "
                       "or null for block_size (blocks that do not overlap).")
    for name, value in (("dataset.val_fraction", val_fraction), ("dataset.test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise DlxError(f"{name}={value} is not a fraction of the corpus: give a number between 0 and 1 (a "
                           "language model is validated and tested on text it never trained on).")
    if val_fraction + test_fraction >= 1:
        raise DlxError(f"dataset.val_fraction + dataset.test_fraction = {val_fraction + test_fraction:g} leaves no "
                       "text to train on. Lower them.")
    if encoding_errors not in ENCODING_ERRORS:
        raise DlxError(f"dataset.encoding_errors={encoding_errors}: choose strict (refuse text that is not UTF-8) or "
                       "replace (read its bad bytes as U+FFFD).")


def corpus_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The file, or the files under the folder (any depth) whose names end with one of `suffixes`, by path."""
    if not path.exists():
        raise DlxError(f"dataset.path={path} does not exist{'' if path.is_absolute() else f' (in {Path.cwd()})'}. "
                       "Point it at a text file, or at a folder of text files (dataset.suffixes says which: "
                       "[.txt] by default, e.g. [.py] for Python sources).")
    if path.is_file():
        return [path.resolve()]
    found = sorted(p.resolve() for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise DlxError(f"{path} holds no files named *{', *'.join(suffixes)} (dataset.suffixes). Point dataset.path "
                       "at a text file, or set dataset.suffixes to the endings of the corpus's files, e.g. "
                       "dataset.suffixes=[.py].")
    return found


def split_documents(documents: list[Document], val_fraction: float, test_fraction: float,
                    seed: int) -> dict[str, list[str]]:
    """The text of each split: one document by position, several by document (see the module's docstring)."""
    if len(documents) == 1:
        text = documents[0].text
        val_start = cut_at_line(text, round(len(text) * (1 - val_fraction - test_fraction)))
        test_start = cut_at_line(text, round(len(text) * (1 - test_fraction)))
        return {"train": [text[:val_start]], "val": [text[val_start:test_start]], "test": [text[test_start:]]}
    order = np.random.default_rng(seed).permutation(len(documents))
    total = sum(len(document.text) for document in documents)
    wanted = {"test": test_fraction * total, "val": val_fraction * total}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    held = {"test": 0, "val": 0}
    for index in order:
        text = documents[index].text
        target = next((name for name in ("test", "val") if held[name] < wanted[name]), "train")
        if target != "train":
            held[target] += len(text)
        splits[target].append(text)
    empty = [name for name in SPLITS if not splits[name]]
    if empty:
        raise DlxError(f"The corpus has {len(documents)} files, too few for a {' and a '.join(empty)} split of whole "
                       "files. Add files, or make the corpus one file (split by position).")
    return splits


def cut_at_line(text: str, position: int) -> int:
    """The start of the line `position` falls in (a split that starts mid-line would start mid-word); the
    position itself in a text with no line end near it."""
    start = text.rfind("\n", max(0, position - 10_000), position)
    return start + 1 if start >= 0 else position


def pieces(texts: list[str]) -> Iterator[str]:
    """The texts in pieces of about PIECE_CHARACTERS, cut at line ends, each text ending a piece: texts are
    tokenised piece by piece so that no huge list of token objects is ever held."""
    for text in texts:
        start = 0
        while start < len(text):
            end = cut_at_line(text, start + PIECE_CHARACTERS) if start + PIECE_CHARACTERS < len(text) else len(text)
            end = end if end > start else min(len(text), start + PIECE_CHARACTERS)
            yield text[start:end]
            start = end


def tokenise(documents: list[Document], settings: dict[str, Any]) -> tuple[str, dict[str, np.ndarray], int, int]:
    """(the tokenizer's JSON, each split's token ids, tokens read as [UNK] in validation and test, characters)."""
    splits = split_documents(documents, settings["val"], settings["test"], settings["seed"])
    tokenizer = train_tokenizer(splits["train"], settings["tokenizer"], settings["vocab_size"], settings["lowercase"])
    ids = {}
    for name in SPLITS:
        chunks = list(encode_corpus(tokenizer, pieces(splits[name])))
        ids[name] = np.concatenate(chunks) if chunks else np.zeros(0, dtype=token_dtype(tokenizer.get_vocab_size()))
    unknown = int((ids["val"] == UNK_ID).sum() + (ids["test"] == UNK_ID).sum())
    return tokenizer.to_str(), ids, unknown, sum(len(document.text) for document in documents)


class TokenCache:
    """A corpus tokenised: tokens.bin (every split's ids, one after the other), tokenizer.json and record.json
    (the dtype, each split's offset and length); one folder per corpus state and settings. record.json is
    written last, so a folder without it (a run killed while tokenising) is tokenised again."""

    def __init__(self, base: Path, files: list[Path], settings: dict[str, Any]) -> None:
        stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        key = hashlib.sha256(json.dumps([CACHE_FORMAT, stamps, settings], sort_keys=True).encode()).hexdigest()[:20]
        self.folder = base / key
        self.hit = False

    @property
    def tokens_path(self) -> Path:
        return self.folder / "tokens.bin"

    def complete(self) -> bool:
        self.hit = self.tokens_path.is_file() and read_json(self.folder / "record.json") is not None
        return self.hit

    def write(self, tokenizer_json: str, ids: dict[str, np.ndarray], unknown: int, characters: int) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DlxError(f"The token cache {self.folder} cannot be created ({err}). Set dataset.cache_dir to a "
                           "writable folder.") from err
        offsets, start = {}, 0
        for name in SPLITS:
            offsets[name] = [start, int(len(ids[name]))]
            start += len(ids[name])
        with atomic_file(self.tokens_path) as file:
            for name in SPLITS:
                file.write(ids[name].tobytes())
        write_text_atomically(self.folder / "tokenizer.json", tokenizer_json)
        vocab = tokenizer_from_json(tokenizer_json, str(self.folder / "tokenizer.json")).get_vocab_size()
        write_json_atomically(self.folder / "record.json", {
            "dtype": np.dtype(token_dtype(vocab)).name, "splits": offsets, "vocab_size": vocab,
            "unknown": unknown, "characters": characters})

    def record(self) -> dict[str, Any]:
        record = read_json(self.folder / "record.json")
        assert record is not None  # complete() or write() made it
        return record

    def tokenizer_json(self) -> str:
        return (self.folder / "tokenizer.json").read_text(encoding="utf-8")


class TokenBlocks:
    """A split of a language-model corpus: sample i is the block of tokens starting at `start + i * stride`,
    read from the token file through a memory map opened for each batch. x is (B, block_size) int64 ids, y the
    same block shifted by one token: the next token at each position."""

    def __init__(self, path: Path, dtype: str, start: int, length: int, block_size: int, stride: int,
                 device: str = "cpu") -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.start, self.length = start, length
        self.block_size, self.stride = block_size, stride
        self.device = device
        self.count = max(0, (length - block_size - 1) // stride + 1) if length > block_size else 0

    def __len__(self) -> int:
        return self.count

    @property
    def sample_shape(self) -> list[int]:
        return [self.block_size]

    def prepared(self, inputs: Inputs, device: str, loading: Loading) -> "TokenBlocks":
        # Token ids are not mapped (a language model's task passes them as they are).
        return TokenBlocks(self.path, self.dtype.name, self.start, self.length, self.block_size, self.stride, device)

    def batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        window = np.arange(self.block_size + 1)
        for index in indices:
            samples = np.arange(self.count)[index] if isinstance(index, slice) else index.cpu().numpy()
            tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
            # (B, block_size + 1) positions in the file: each sample's block and the token after it
            blocks = torch.from_numpy(tokens[self.start + samples[:, None] * self.stride + window].astype(np.int64))
            del tokens
            blocks = blocks.to(self.device)
            yield blocks[:, :-1], blocks[:, 1:]

    def labels(self) -> torch.Tensor:
        """Every sample's targets (N, block_size): the next token at each position."""
        return torch.cat([y for _, y in self.batches([slice(0, self.count)])]) if self.count else \
            torch.zeros(0, self.block_size, dtype=torch.int64)
