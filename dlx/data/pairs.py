"""Pairs of sequences for encoder-decoders: `dataset=pairs dataset.path=FILE` (a CSV, TSV or Parquet file of source
and target texts) and `dataset=generated_pairs dataset.task=reverse|sort|addition` (generated, offline).

Sources and targets share one tokenizer (dlx.data.tokens), learnt from the training split's sources and targets
only. x holds source ids (N, S), y target ids (N, T) as [BOS] tokens [EOS], both padded with [PAD] (0); S and T are
the longest source and target of the file, at most `max_length` tokens (longer ones are cut, and counted in the
log). Validation and test pairs are held out at random (`val_fraction`, `test_fraction`, `split_seed`).

A pairs file is read as text: every cell as written ("007" stays 007, "NA" stays NA). It must be UTF-8; a file
that is not is refused with the byte offset and line of the first bad byte, or read with U+FFFD in place of bad
bytes under `encoding_errors=replace` (counted in the log). A row whose source or target is empty (or only
spaces) is refused with its line, or left out and counted under `empty_rows=skip`.
"""

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from dlx.data import DataSplits, InMemory, hold_out
from dlx.data.table import missing_columns, row_in_file
from dlx.data.text import read_text_cells
from dlx.data.tokens import TokenizerKind, encode_texts, refuse_inexact, train_tokenizer
from dlx.errors import DlxError

logger = logging.getLogger("dlx")

GeneratedTask = Literal["reverse", "sort", "addition"]
SHOWN_ROWS = 5  # rows named in a message


def load_pairs(path: str, source_column: str = "source", target_column: str = "target",
               tokenizer: TokenizerKind = "char", vocab_size: int = 8000, lowercase: bool = False,
               max_length: int = 128, val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
               sep: str | None = None, empty_rows: Literal["error", "skip"] = "error",
               encoding_errors: Literal["strict", "replace"] = "strict") -> DataSplits:
    """The pairs of the file at `path` as train, validation and test splits; see the module's docstring and
    conf/dataset/pairs.yaml for each argument."""
    refuse_inexact(tokenizer, "an encoder-decoder's exact match, chrF and character error rate compare the text it "
                              "decodes with the target as written")
    file = Path(path).expanduser()
    frame = read_text_cells(file, sep, encoding_errors)
    for column, key in ((source_column, "dataset.source_column"), (target_column, "dataset.target_column")):
        missing_columns(file, frame, [column], key)
    sources, targets = non_empty_pairs(frame, file, source_column, target_column, empty_rows)
    if len(sources) < 3:
        raise DlxError(f"{file} has {len(sources)} pair(s) of source and target: too few to train on and hold out "
                       "validation and test pairs. Add rows (thousands, for a model to learn from).")
    rows = split_rows(len(sources), val_fraction, test_fraction, split_seed)
    logger.info(f"Pairs {file}: {len(sources):,} rows ({', '.join(f'{len(v):,} {k}' for k, v in rows.items())}), "
                f"source column {source_column!r}, target column {target_column!r}")
    return pair_splits(sources, targets, rows, tokenizer, vocab_size, lowercase, max_length)


def load_generated_pairs(task: GeneratedTask = "reverse", num_samples: int = 20000, min_length: int = 4,
                         max_length: int = 12, alphabet: str = "abcdefghijklmnopqrstuvwxyz", digits: int = 3,
                         val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """`num_samples` distinct sources of a generated task and their targets, char-tokenized:
    - reverse: `min_length` to `max_length` symbols of `alphabet` -> the same symbols in reverse order;
    - sort: the same kind of source -> its symbols in sorted order;
    - addition: "a+b" for numbers of 0 to `digits` digits each -> their sum, in decimal digits.
    Every source is distinct, so no held-out source was seen in training. `seed` draws them and the splits."""
    if task not in ("reverse", "sort", "addition"):
        raise DlxError(f'dataset.task="{task}" is not a generated task. Choose reverse, sort or addition.')
    if task == "addition":
        sources = distinct_additions(num_samples, digits, seed)
        targets = [str(sum(int(n) for n in source.split("+"))) for source in sources]
    else:
        sources = distinct_strings(num_samples, min_length, max_length, alphabet, seed)
        targets = [source[::-1] if task == "reverse" else "".join(sorted(source)) for source in sources]
    rows = split_rows(len(sources), val_fraction, test_fraction, seed)
    logger.info(f"Generated task {task}: {len(sources):,} pairs ({', '.join(f'{len(v):,} {k}' for k, v in rows.items())}), "
                f"e.g. {sources[0]!r} -> {targets[0]!r}")
    longest = max(len(text) for text in sources + targets)
    return pair_splits(sources, targets, rows, "char", 1000, False, longest + 2)


# --- generated tasks ------------------------------------------------------------------------------------------

def distinct_strings(count: int, min_length: int, max_length: int, alphabet: str, seed: int) -> list[str]:
    symbols = sorted(set(alphabet))
    if not symbols or min_length < 1 or max_length < min_length:
        raise DlxError(f"dataset.min_length={min_length}, dataset.max_length={max_length}, dataset.alphabet="
                       f"{alphabet!r}: give an alphabet of one symbol or more and 1 <= min_length <= max_length.")
    possible = sum(len(symbols) ** length for length in range(min_length, max_length + 1))
    check_count(count, possible, "sequences of that alphabet and those lengths")
    generator = np.random.default_rng(seed)
    found: dict[str, None] = {}  # insertion-ordered: the same seed gives the same list
    while len(found) < count:
        lengths = generator.integers(min_length, max_length + 1, size=count)
        draws = generator.integers(0, len(symbols), size=(count, max_length))
        for length, row in zip(lengths, draws):
            found.setdefault("".join(symbols[i] for i in row[:length]))
            if len(found) == count:
                break
    return list(found)


def distinct_additions(count: int, digits: int, seed: int) -> list[str]:
    if not 1 <= digits <= 9:
        raise DlxError(f"dataset.digits={digits}: give 1 to 9 digits per number.")
    limit = 10**digits
    check_count(count, limit * limit, f"sums of two numbers below {limit:,}")
    generator = np.random.default_rng(seed)
    pairs = generator.choice(limit * limit, size=count, replace=False)  # distinct (a, b), drawn uniformly
    return [f"{a}+{b}" for a, b in zip(pairs // limit, pairs % limit)]


def check_count(count: int, possible: int, what: str) -> None:
    if not 3 <= count <= possible:
        raise DlxError(f"dataset.num_samples={count:,}: there are {possible:,} distinct {what}, and a run needs "
                       "at least 3 (train, validation, test). Give num_samples within that range, or widen the "
                       "task (longer sequences, a larger alphabet, more digits).")


# --- files ----------------------------------------------------------------------------------------------------

def non_empty_pairs(frame: pd.DataFrame, path: Path, source_column: str, target_column: str,
                    empty_rows: str) -> tuple[list[str], list[str]]:
    """The sources and targets of the rows whose source and target both hold text."""
    sources = frame[source_column].astype(str)
    targets = frame[target_column].astype(str)
    empty = (sources.str.strip() == "").to_numpy() | (targets.str.strip() == "").to_numpy()
    if empty.any():
        where = np.flatnonzero(empty)
        named = ", ".join(row_in_file(path, int(i)) for i in where[:SHOWN_ROWS]) + (
            f" and {len(where) - SHOWN_ROWS:,} more" if len(where) > SHOWN_ROWS else "")
        if empty_rows != "skip":
            raise DlxError(f"{path} has {len(where):,} row(s) with an empty {source_column!r} or {target_column!r}: "
                           f"{named}. A pair needs both texts. Fill or delete those rows, or pass "
                           "dataset.empty_rows=skip to leave them out.")
        logger.info(f"{path}: {len(where):,} row(s) with an empty source or target left out "
                    f"(dataset.empty_rows=skip): {named}")
    keep = ~empty
    return sources[keep].tolist(), targets[keep].tolist()


# --- splits and tokens ----------------------------------------------------------------------------------------

def split_rows(count: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row positions of each split: `test_fraction` of all rows, then `val_fraction` of the rest, at random."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DlxError(f"dataset.{key}={value}: give a fraction in [0, 1).")
    positions = np.arange(count)
    rest, _, test, _ = hold_out(positions, positions, test_fraction, seed, stratify=False)
    train, _, val, _ = hold_out(rest, rest, val_fraction, seed + 1, stratify=False)
    return {"train": train, "val": val, "test": test}


def pair_splits(sources: list[str], targets: list[str], rows: dict[str, np.ndarray], kind: TokenizerKind,
                vocab_size: int, lowercase: bool, max_length: int) -> DataSplits:
    """Token ids of every split, with one tokenizer learnt from the training sources and targets."""
    train = rows["train"]
    tokenizer = train_tokenizer([sources[i] for i in train] + [targets[i] for i in train], kind, vocab_size,
                                lowercase)
    x = encode_texts(tokenizer, sources, max_length)
    y = encode_texts(tokenizer, targets, max_length, bos=True, eos=True)
    if x.truncated or y.truncated:
        logger.info(f"Cut at dataset.max_length={max_length} tokens: {x.truncated:,} source(s) and {y.truncated:,} "
                    "target(s) ([BOS] and [EOS] count in a target's length)")
    source_ids, target_ids = trimmed(x.ids), trimmed(y.ids)
    logger.info(f"Tokenizer {kind}: {tokenizer.get_vocab_size():,} tokens, learnt from the training pairs; sources "
                f"of up to {source_ids.shape[1]} tokens, targets of up to {target_ids.shape[1]} ([BOS] and [EOS] "
                "included)")
    splits = {name: InMemory(torch.from_numpy(source_ids[index]), torch.from_numpy(target_ids[index]))
              for name, index in rows.items()}
    return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task="seq2seq",
                      tokenizer=tokenizer.to_str())


def trimmed(ids: np.ndarray) -> np.ndarray:
    """The columns up to the longest row's last token: padding that every row has is left out (attention and
    recurrence cost grows with the width)."""
    used = np.flatnonzero((ids != 0).any(axis=0))
    width = int(used[-1]) + 1 if len(used) else 1
    return np.ascontiguousarray(ids[:, :width])
