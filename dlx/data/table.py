"""`dataset=table dataset.path=FILE dataset.target=COLUMN`: the user's own CSV, TSV or Parquet file.

How a row becomes the model's feature vector (fitted on the training split only, so nothing of val or test
leaks into training, and recorded as plain values in `DataSplits.preprocessing`, which every checkpoint keeps,
so that `dlx eval`, `dlx predict` and `dlx export` treat new rows exactly as training did):

- numeric columns are standardised with the training rows' mean and standard deviation (a constant column is
  centred only). A missing value becomes the training mean (0 once standardised), and each numeric column that
  had missing values in training gets an indicator input, 1 where the value was missing;
- string, categorical and boolean columns are one-hot encoded over the categories of the training rows, in
  sorted order; a missing value is a category of its own when training had any. A category never seen in
  training (or a missing value where training had none) gets all zeros: the model sees "none of the categories
  it knows" rather than a guess, and `dlx predict` counts such rows per column in a warning;
- a column with more than `max_categories` categories is refused: one input per category would make a very wide
  input of categories seen a few times each (an identifier or free text, most likely), which teaches nothing
  that carries to new rows. Leave it out of `features`, or raise `max_categories` if it truly is a category;
- the feature vector is [standardised numbers, missing indicators, one-hot blocks], in the order of `features`
  within each part; `preprocessing["features"]` names every input.

The target decides the task unless `task` says: strings and booleans are classes, so are whole numbers with at
most MAX_INTEGER_CLASSES distinct values (a column of integers with empty cells reads as floats, hence "whole
numbers"); other numbers are regression. Class names are the sorted distinct values as strings. Regression
targets are standardised with the training mean and std (as dlx.data.sklearn_sets does), recorded so that
predictions are given back in the target's own units. Rows whose target is empty are left out (and counted).

Everything is vectorised pandas/NumPy (no Python loop over rows): a million rows load in about the time of
pandas.read_csv plus the standardisation written by hand (bench/tables.py measures the two side by side).

A table larger than memory (dataset.in_memory=false, or auto when it would take more than half the memory
available) goes through the same steps a chunk of rows at a time, its encoded rows written to a float32 array on
disk that training reads batch by batch (dlx.data.table_cache); only the target and split columns, one value per
row, are held whole. The statistics are summed in the same blocks of rows either way, so a table streamed and the
same table in memory give the same numbers to the last bit. One difference: read in chunks, a text file's column
types are those pyarrow infers from its first chunk (16 MiB), and a later cell that does not fit is an error.
"""

import dataclasses
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet
import torch
from pandas.api import types

from dlx.data import DataSplits, InMemory, TaskKind, cache_folder, hold_out
from dlx.data.memory import choose_in_memory
from dlx.data.table_cache import CHUNK_ROWS, MappedRows, TableCache, table_chunks
from dlx.errors import DlxError, did_you_mean
from dlx.store.files import atomic_file

logger = logging.getLogger("dlx")

TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
# Of text files, which pandas decompresses on the fly (and compresses, writing predictions).
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
STATS_ROWS = 1 << 16  # training rows summed at a time for the statistics, in memory and streamed alike
MAX_INTEGER_CLASSES = 20  # a target of whole numbers with at most this many distinct values is classification
NUMERIC_SHARE = 0.9  # of a text column's distinct values: numbers at least this share, it is a numeric column
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}  # case and spaces ignored
MISSING = "(missing)"  # how a missing value's input is named, in feature names
SNIFF_BYTES = 4096
LIST_KEYS = ("dataset.features", "dataset.categorical")
TEXT_ADVICE = {  # the end of the message for text among numbers, by the column's role
    "feature": lambda name: (", or add the text to dataset.na_values, or, if the column's values are categories, "
                             f"list it in dataset.categorical=[{name}]."),
    "target": lambda name: (", or add the text to dataset.na_values, or, if the column's values are classes, set "
                            "dataset.task=classification."),
}
FORMATS_HINT = ("dataset=table reads .csv, .tsv or .tab text (optionally compressed: .csv.gz) and .parquet or .pq "
                "files; dataset.sep=';' reads a text file of any other name with that separator")


@dataclass
class Encoded:
    """Rows as the model's feature vectors, and what did not fit the training encoding."""

    x: np.ndarray  # (N, features) float32
    unseen: dict[str, int] = field(default_factory=dict)  # categorical column -> rows whose category is new
    unseen_examples: dict[str, str] = field(default_factory=dict)  # column -> one such category
    new_missing: dict[str, int] = field(default_factory=dict)  # column -> rows missing where training had none


def load_table(path: str, target: str, features: list[str] | None = None, categorical: list[str] | None = None,
               task: Literal["auto", "classification", "regression"] = "auto", split_column: str | None = None,
               val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
               max_categories: int = 100, sep: str | None = None, na_values: list[str] | None = None,
               in_memory: Any = "auto", cache_dir: str | None = None) -> DataSplits:
    """The table at `path` as train, validation and test splits, held in memory or (dataset.in_memory=false, or
    auto when it would not fit) encoded to disk and read batch by batch; see the module's docstring and
    conf/dataset/table.yaml for each argument."""
    file = Path(path).expanduser()
    options = TableOptions(target, features, categorical, task, split_column, val_fraction, test_fraction,
                           split_seed, max_categories, sep, list(na_values or []))
    check_file(file, sep)
    if choose_in_memory(in_memory, memory_estimate(file, sep), "the table, read and encoded,",
                        "encoding it to disk in chunks and reading it batch by batch"):
        return table_in_memory(file, options)
    return streamed_table(file, options, cache_dir)


@dataclass(frozen=True)
class TableOptions:
    """The dataset.* options that decide how a table's rows are encoded and split (a streamed table's cache key)."""

    target: str
    features: list[str] | None
    categorical: list[str] | None
    task: str
    split_column: str | None
    val_fraction: float
    test_fraction: float
    split_seed: int
    max_categories: int
    sep: str | None
    na_values: list[str]


def table_in_memory(file: Path, options: TableOptions) -> DataSplits:
    o = options
    frame = read_table(file, o.sep, o.na_values)
    columns = chosen_features(frame, file, o.target, o.features, o.categorical, o.split_column)
    kinds = column_kinds(frame, file, columns, set(o.categorical or []))
    frame, targets, class_names, task_kind = read_target(frame, file, o.target, o.task)
    rows = split_rows(frame, file, o.split_column, targets, task_kind, o.val_fraction, o.test_fraction, o.split_seed)
    numbers = numeric_block(frame, file, kinds["numeric"])
    labels = {name: category_labels(frame[name]) for name in kinds["categorical"]}
    preprocessing = fit_preprocessing(numbers, rows["train"], labels, kinds["numeric"], file, o.max_categories)
    preprocessing, y = with_targets(preprocessing, file, options, task_kind, targets, rows["train"])
    encoded = encode_arrays(numbers, labels, preprocessing, file, frame.index.to_numpy())
    log_table(file, len(frame), preprocessing, rows, encoded.unseen, encoded.new_missing, class_names, "in memory")
    splits = {name: InMemory(torch.from_numpy(encoded.x[index]), torch.from_numpy(y[index]))
              for name, index in rows.items()}
    return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task=task_kind,
                      class_names=class_names, preprocessing=preprocessing)


def with_targets(preprocessing: dict[str, Any], file: Path, options: TableOptions, task_kind: TaskKind,
                 targets: np.ndarray, train: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The preprocessing record completed with the target's, and the targets as the model learns them:
    class indices, or regression values standardised with the training rows' mean and std (N, 1)."""
    preprocessing |= {"source": file.name, "target": options.target, "task": task_kind, "sep": options.sep,
                      "na_values": list(options.na_values)}
    if task_kind != "regression":
        return preprocessing, targets
    mean, std = standard_scale(targets[train])
    return preprocessing | {"target_mean": mean, "target_std": std}, ((targets - mean) / std).astype(np.float32)[:, None]


def memory_estimate(file: Path, sep: str | None) -> int:
    """Bytes a table takes in memory while it is read and encoded: the frame pandas reads, the float64 block of
    its numbers and the float32 features, about 4x a text file's size (more when it is compressed) or 24 bytes
    per cell of a Parquet file. An estimate: a text column of many categories widens into one float32 input per
    category, which only reading it tells (dataset.in_memory=false streams such a table whatever its size)."""
    kind, _ = table_format(file, sep)
    if kind == "parquet":
        try:
            metadata = pyarrow.parquet.read_metadata(file)
        except (OSError, pyarrow.ArrowException) as err:
            raise unreadable(file, kind, None, err) from err
        return 24 * metadata.num_rows * metadata.num_columns
    compressed = file.suffix.lower() in COMPRESSIONS
    return file.stat().st_size * (4 * 5 if compressed else 4)


# --- reading files -------------------------------------------------------------------------------------------

def table_format(path: Path, sep: str | None) -> tuple[str, str | None]:
    """("parquet", None) or ("text", separator) by the file's suffix (a compression suffix set aside)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in PARQUET_SUFFIXES:
        return "parquet", None
    if suffix in TEXT_SEPARATORS or sep is not None:
        return "text", sep if sep is not None else TEXT_SEPARATORS[suffix]
    raise DlxError(f"{path} is not a table file dlx knows by its name ({suffix or 'no suffix'}). {FORMATS_HINT}.")


def is_table_file(path: Path) -> bool:
    try:
        table_format(path, None)
    except DlxError:
        return False
    return True


def read_table(path: Path, sep: str | None = None, na_values: list[str] | None = None,
               as_text: bool = False) -> pd.DataFrame:
    """The file as a DataFrame: typed by pyarrow's inference, or every cell as the text written in it
    (`as_text`, empty cells as ""), or a DlxError that says what is wrong with the file."""
    kind, separator = check_file(path, sep)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif as_text:
            frame = pd.read_csv(path, sep=separator, engine="pyarrow", dtype=str, keep_default_na=False)
        else:
            frame = pd.read_csv(path, sep=separator, engine="pyarrow", na_values=na_values or None)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError, pd.errors.ParserError, pyarrow.ArrowException) as err:
        raise unreadable(path, kind, separator, err) from err
    if frame.shape[1] == 0 or len(frame) == 0:
        raise empty_table(path, frame.shape[1])
    frame.columns = [str(name) for name in frame.columns]
    return frame


def check_file(path: Path, sep: str | None) -> tuple[str, str | None]:
    """The table's format and separator (as table_format), or a DlxError if `path` is not a table file."""
    if not path.exists():
        raise DlxError(f"{path} does not exist. Point dataset.path at your table file (a relative path is read "
                       f"from the folder dlx runs in, {Path.cwd()}; `dlx eval CKPT dataset.path=FILE` evaluates a "
                       f"checkpoint on a file that moved). {FORMATS_HINT}.")
    if path.is_dir():
        raise DlxError(f"{path} is a folder, not a table file. {FORMATS_HINT}; for a folder of images use "
                       f"dataset=image_folder dataset.root={path}.")
    if not path.is_file():  # a pipe or a device: reading it could wait forever, or never end
        raise DlxError(f"{path} is not a regular file (a pipe, a socket or a device). {FORMATS_HINT}.")
    kind, separator = table_format(path, sep)
    check_content(path, kind)
    return kind, separator


def unreadable(path: Path, kind: str, separator: str | None, err: Exception) -> DlxError:
    reason = " ".join(str(err).split())[:300]
    if kind == "parquet":
        return DlxError(f"{path} cannot be read as Parquet ({reason}). Write it again with a Parquet writer "
                        "(pandas' DataFrame.to_parquet), or give it the suffix of its real format.")
    return DlxError(f"{path} cannot be read as {'tab' if separator == chr(9) else repr(separator)}-separated text "
                    f"({reason}). Every row needs as many fields as the header; quote values that hold the "
                    "separator, or set dataset.sep to the separator the file uses.")


def empty_table(path: Path, columns: int) -> DlxError:
    what = "no columns" if columns == 0 else f"a header ({columns} columns) but no rows"
    return DlxError(f"{path} is an empty table: it has {what}. Write the rows into it, one per line below a header "
                    "line of column names.")


def check_content(path: Path, kind: str) -> None:
    """A DlxError when the file's first bytes say it is not the format its name says."""
    with open(path, "rb") as opened:
        head = opened.read(SNIFF_BYTES)
    if path.suffix.lower() in COMPRESSIONS:
        return  # compressed text: its bytes say nothing until decompressed; the parser judges it
    if kind == "parquet":
        if head[:4] != b"PAR1":
            looks = "text (a CSV?)" if head and b"\x00" not in head else "neither Parquet nor text"
            raise DlxError(f"{path} is not a Parquet file: it does not start with Parquet's marker, and looks like "
                           f"{looks}. Rename it to the suffix of its format (.csv, .tsv), or write it again with "
                           "pandas' DataFrame.to_parquet.")
        return
    if head[:4] == b"PAR1":
        raise DlxError(f"{path} is a Parquet file, not text: rename it to {path.stem}.parquet.")
    if head[:4] == b"PK\x03\x04":
        raise DlxError(f"{path} is a zip archive (an Excel workbook?), not text. Save the sheet as CSV (UTF-8), or "
                       "read it with pandas and write it with DataFrame.to_csv or to_parquet.")
    if b"\x00" in head:
        raise DlxError(f"{path} is a binary file, not text: its first bytes hold NUL characters. Give a CSV or "
                       "TSV file of text (UTF-8), or a Parquet file named .parquet.")


def write_table(frame: pd.DataFrame, path: Path, within: Path | None = None) -> None:
    """The frame in the format of `path`'s suffix (CSV, TSV, Parquet), written atomically: a crash leaves the
    old file or the new one, never half of it (inside the run folder `within`, without a link on the way)."""
    kind, separator = table_format(path, None)
    with atomic_file(path, within) as file:
        if kind == "parquet":
            frame.to_parquet(file, index=False)
        else:
            frame.to_csv(file, sep=separator or ",", index=False, compression=COMPRESSIONS.get(path.suffix.lower()))


def cell(value: Any) -> str:
    """A cell's value as a message quotes it: 'text', True, 3.5 (not NumPy's np.True_)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def row_in_file(path: Path, index: int) -> str:
    """How a user finds row `index` (0-based, of the data) in the file: a line of a text file, whose header is
    line 1, or a row of a Parquet file counted from 1."""
    kind, _ = table_format(path, ",")
    return f"line {index + 2:,}" if kind == "text" else f"row {index + 1:,}"


# --- columns ---------------------------------------------------------------------------------------------------

def missing_columns(path: Path, frame: pd.DataFrame, names: list[str], key: str) -> None:
    """A DlxError naming the first of `names` (the value of the config key `key`) that the frame lacks, with
    the closest column it has."""
    for name in names:
        if name not in frame.columns:
            said = f'{key} names "{name}", which' if key in LIST_KEYS else f"{key}={name}"
            raise DlxError(f"{said} is not a column of {path}.{did_you_mean(name, frame.columns)} Its columns "
                           f"are: {', '.join(map(str, frame.columns))}.")


def chosen_features(frame: pd.DataFrame, path: Path, target: str, features: list[str] | None,
                    categorical: list[str] | None, split_column: str | None) -> list[str]:
    """The feature columns: those named, or every column but the target and the split column."""
    missing_columns(path, frame, [target], "dataset.target")
    if split_column is not None:
        missing_columns(path, frame, [split_column], "dataset.split_column")
    missing_columns(path, frame, list(features or []), "dataset.features")
    missing_columns(path, frame, list(categorical or []), "dataset.categorical")
    chosen = list(features) if features is not None else [c for c in frame.columns if c not in (target, split_column)]
    for name, role in ((target, "target"), (split_column, "split column")):
        if name in chosen and features is not None:
            raise DlxError(f'dataset.features names "{name}", the {role}: a model must not be given what it '
                           "predicts, or which split a row is in. Leave it out of dataset.features.")
    duplicated = sorted({c for c in chosen if chosen.count(c) > 1})
    if duplicated:
        raise DlxError(f"dataset.features names {', '.join(duplicated)} more than once. Name each column once.")
    if not chosen:
        raise DlxError(f"{path} has no columns besides the target {target!r}"
                       + (f" and the split column {split_column!r}" if split_column else "")
                       + ": there is nothing to predict it from. Add feature columns to the table.")
    return chosen


def column_kinds(frame: pd.DataFrame, path: Path, columns: list[str], categorical: set[str]) -> dict[str, list[str]]:
    """{"numeric": [...], "categorical": [...]}: numbers (not booleans) are numeric unless named in
    dataset.categorical; text, categories and booleans are categorical. A text column whose values are
    numbers but for a few is a typo in a numeric column: a DlxError naming the first one."""
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for name in columns:
        column = frame[name]
        if types.is_datetime64_any_dtype(column) or types.is_timedelta64_dtype(column):
            raise DlxError(f'Column "{name}" of {path} holds dates or times, which dlx does not encode. Turn them '
                           "into numbers (days since a date, the hour of the day) in a column of their own, or leave "
                           "it out of dataset.features.")
        check_not_bytes(column, name, path)
        if name in categorical:
            kinds["categorical"].append(name)
        elif types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
            kinds["numeric"].append(name)
        elif numbers_with_text(column, name, path, "feature") is not None:
            kinds["numeric"].append(name)
        else:
            kinds["categorical"].append(name)
    return kinds


def check_not_bytes(column: pd.Series, name: str, path: Path) -> None:
    """pyarrow reads a column that is not valid UTF-8 as bytes: say so rather than encode b'...' strings."""
    if types.is_object_dtype(column):
        first = column.dropna().head(1).tolist()
        if first and isinstance(first[0], bytes):
            raise DlxError(f'Column "{name}" of {path} is not UTF-8 text (it holds {first[0][:20]!r}): the file '
                           "was saved in another encoding. Save it as UTF-8 (in pandas: to_csv(encoding='utf-8')).")


def numbers_with_text(column: pd.Series, name: str, path: Path, role: str) -> pd.Series | None:
    """A text column as numbers when at least NUMERIC_SHARE of its distinct values are numbers; None when it
    is text. A DlxError when it is numbers with some text among them, naming the first such cell."""
    if types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
        return column.astype(np.float64)
    if not (types.is_string_dtype(column) or types.is_object_dtype(column)):
        return None
    present = column.dropna()
    distinct = pd.Series(present.unique())
    if len(distinct) == 0:  # no values at all: as good as an empty column of numbers
        return pd.Series(np.nan, index=column.index)
    if types.infer_dtype(distinct) == "boolean":  # true/false with empty cells: categories, not 1 and 0
        return None
    parsed = pd.to_numeric(distinct, errors="coerce")
    numeric = parsed.notna()
    if numeric.mean() < NUMERIC_SHARE:
        return None
    if not numeric.all():
        text = set(distinct[~numeric].tolist())
        first = int(np.flatnonzero(present.isin(text).to_numpy())[0])
        index = int(present.index[first])
        raise DlxError(f'Column "{name}" of {path} holds numbers, but {row_in_file(path, index)} holds '
                       f"{cell(present.iloc[first])} ({int(present.isin(text).sum()):,} such cell(s) in all). Correct "
                       "the value, or empty the cell (an empty cell is a missing value)" + TEXT_ADVICE[role](name))
    return pd.to_numeric(column, errors="coerce").astype(np.float64)


def numeric_block(frame: pd.DataFrame, path: Path, names: list[str]) -> np.ndarray:
    """(N, len(names)) float64, NaN where missing. Float64, so that (x - mean) is exact before the cast to
    float32: a column of large values with a small spread (timestamps) would lose its spread in float32."""
    if not names:
        return np.zeros((len(frame), 0), dtype=np.float64)
    block = frame[names]
    odd = [n for n in names if not (types.is_numeric_dtype(block[n]) and not types.is_bool_dtype(block[n]))]
    if odd:  # new rows whose numeric column was read as text: numbers with a typo, or empty cells
        block = block.assign(**{n: as_numbers(block[n], n, path) for n in odd})
    return block.to_numpy(dtype=np.float64, na_value=np.nan)


def as_numbers(column: pd.Series, name: str, path: Path) -> pd.Series:
    """A column of new rows that the model takes as numbers; a DlxError naming the first cell that is not one."""
    parsed = pd.to_numeric(column, errors="coerce")
    wrong = (column.notna() & parsed.isna()).to_numpy()
    if types.is_bool_dtype(column) or types.infer_dtype(column, skipna=True) == "boolean":
        wrong = column.notna().to_numpy()  # true and false are categories, not 1 and 0
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise DlxError(f'Column "{name}" of {path} holds {cell(column.iloc[first])} at '
                       f"{row_in_file(path, int(column.index[first]))} ({int(wrong.sum()):,} such cell(s) in all), "
                       f"but the model was trained on {name} as numbers. Correct the value, or empty the cell (an "
                       "empty cell is a missing value).")
    return parsed.astype(np.float64)


def category_labels(column: pd.Series) -> pd.Series:
    """The column's values as the strings categories are named by, missing values as NaN: whole numbers
    without a decimal point (1, not 1.0, whatever the column's dtype), booleans as True and False."""
    if types.is_string_dtype(column) and not types.is_object_dtype(column):
        return column  # text already (pandas' string dtype), its missing values NaN or NA
    present = column.notna()
    if types.is_float_dtype(column) and np.all(np.mod(column[present], 1) == 0):
        column = column.astype("Int64")
    return column.astype(str).where(present, np.nan)


# --- the target and the splits ------------------------------------------------------------------------------------

def read_target(frame: pd.DataFrame, path: Path, target: str, task: str,
                why: str = "dataset.task says so") -> tuple[pd.DataFrame, np.ndarray, list[str], TaskKind]:
    """The rows that have a target, the targets (class indices, or float64 values), the class names and the
    task, inferred from the target's values unless `task` says."""
    if task not in ("auto", "classification", "regression"):
        raise DlxError(f'dataset.task={task} is not a task.{did_you_mean(task, ["classification", "regression"])} '
                       "Choose auto, classification or regression.")
    column = frame[target]
    check_not_bytes(column, target, path)
    kind, reason = inferred_task(column, target, path) if task == "auto" else (task, why)
    empty = column.isna()
    if empty.all():
        raise DlxError(f'The target column "{target}" of {path} is empty in every row. Fill it in, or choose '
                       "another dataset.target.")
    if empty.any():
        logger.info(f'Left out {int(empty.sum()):,} row(s) of {path.name} whose target "{target}" is empty')
        frame = frame[~empty]
        column = column[~empty]
    if kind == "regression":
        values = numbers_with_text(column, target, path, "target")
        if values is None:
            raise DlxError(f'The target "{target}" of {path} is text (e.g. {cell(column.iloc[0])}), which cannot be '
                           "regressed on. Set dataset.task=classification (or auto) to predict it as classes.")
        infinite = np.flatnonzero(~np.isfinite(values.to_numpy()))
        if len(infinite):
            raise DlxError(f'The target "{target}" of {path} holds {cell(values.iloc[infinite[0]])} at '
                           f"{row_in_file(path, int(values.index[infinite[0]]))}, which cannot be learnt. Correct "
                           "the value, or empty the cell (a row without a target is left out).")
        logger.info(f'Target "{target}": regression ({reason}); train it with loss=mse')
        return frame, values.to_numpy(np.float64), [], "regression"
    codes, uniques = pd.factorize(column, sort=True)
    class_names = category_labels(pd.Series(uniques)).tolist()
    if len(class_names) < 2:
        raise DlxError(f'The target "{target}" of {path} has one class only ({class_names[0]!r} in every row '
                       "that has a target): a classifier needs two classes or more. Choose another dataset.target, "
                       "or add rows of the other classes.")
    logger.info(f'Target "{target}": classification, {len(class_names)} classes ({reason})')
    return frame, codes.astype(np.int64), class_names, "classification"


def inferred_task(column: pd.Series, name: str, path: Path) -> tuple[TaskKind, str]:
    """The task a target's values suggest, and why (for the log, with how to choose the other)."""
    if types.is_bool_dtype(column) or not types.is_numeric_dtype(column):
        if numbers_with_text(column, name, path, "target") is not None:
            return "regression", "numbers; dataset.task=classification to predict them as classes"
        return "classification", "text or true/false values"
    present = column.dropna()
    whole = types.is_integer_dtype(present) or bool(np.all(np.mod(present, 1) == 0))
    distinct = present.nunique()
    if whole and distinct <= MAX_INTEGER_CLASSES:
        return "classification", (f"{distinct} distinct whole numbers; dataset.task=regression to predict them as "
                                  "numbers")
    return "regression", "numbers; dataset.task=classification to predict them as classes"


def split_rows(frame: pd.DataFrame, path: Path, split_column: str | None, targets: np.ndarray, task: TaskKind,
               val_fraction: float, test_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    """Row positions of each split: from the split column, or held out (stratified by class for
    classification) as dlx.data.sklearn_sets.tabular_splits holds them out: the test first, then validation
    out of the rest. Validation is held out of train also when a split column names no val rows."""
    for name, value in (("dataset.val_fraction", val_fraction), ("dataset.test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DlxError(f"{name}={value} is not a fraction of the rows: give a number from 0 up to (not "
                           "including) 1.")
    stratify = task == "classification"
    rows = np.arange(len(frame))
    if split_column is None:
        rest, rest_y, test, _ = hold_out(rows, targets, test_fraction, split_seed, stratify)
    else:
        names = fixed_splits(frame[split_column], split_column, path)
        rest, test = rows[names == "train"], rows[names == "test"]
        rest_y = targets[rest]
        if (names == "val").any():
            return {"train": rest, "val": rows[names == "val"], "test": test}
        logger.info(f'The split column "{split_column}" names no val rows: {val_fraction:g} of its train rows are '
                    "held out for validation (dataset.val_fraction)")
    train, _, val, _ = hold_out(rest, rest_y, val_fraction, split_seed, stratify)
    if len(train) == 0:
        raise DlxError(f"{path} leaves no training rows ({len(frame):,} rows, of which dataset.test_fraction="
                       f"{test_fraction:g} and dataset.val_fraction={val_fraction:g} are held out). Add rows, or "
                       "lower the fractions.")
    return {"train": train, "val": val, "test": test}


def fixed_splits(column: pd.Series, name: str, path: Path) -> np.ndarray:
    """Each row's split, "train", "val" or "test", from the split column's values (train, val or validation,
    test; case and surrounding spaces ignored); a DlxError naming the first row of any other value."""
    text = column.astype(str).str.strip().str.lower()
    names = text.map(SPLIT_NAMES)
    wrong = names.isna() | column.isna()
    if wrong.any():
        first = int(np.flatnonzero(wrong.to_numpy())[0])
        found = sorted({"(empty)" if pd.isna(v) else str(v) for v in column[wrong].unique()})
        raise DlxError(f'The split column "{name}" of {path} must say train, val (or validation) or test in every '
                       f"row, but {row_in_file(path, int(column.index[first]))} says {cell(column.iloc[first])} "
                       f"({int(wrong.sum()):,} row(s) in all, saying {', '.join(found[:5])}"
                       f"{' ...' * (len(found) > 5)}). "
                       "Correct those cells, or leave out dataset.split_column to hold out val and test by "
                       "dataset.val_fraction and dataset.test_fraction.")
    splits = names.to_numpy(dtype=object)
    for needed in ("train", "test"):
        if not (splits == needed).any():
            raise DlxError(f'The split column "{name}" of {path} names no {needed} rows. Mark some rows '
                           f"{needed}, or leave out dataset.split_column to hold out the splits by fraction.")
    return splits


# --- the encoding ---------------------------------------------------------------------------------------------

def standard_scale(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (NaNs ignored); a constant column's std is 1, so it is centred only."""
    mean = float(np.nanmean(values)) if len(values) else 0.0
    std = float(np.nanstd(values)) if len(values) else 1.0
    return mean, std if std > 1e-12 else 1.0


def fit_preprocessing(numbers: np.ndarray, train: np.ndarray, labels: dict[str, pd.Series], numeric: list[str],
                      path: Path, max_categories: int) -> dict[str, Any]:
    """The encoding, from the training rows (`train`, positions in `numbers` and `labels`) alone: each numeric
    column's mean, std and whether it had missing values; each categorical column's sorted categories and
    whether missing is one of them; the names of the feature vector's inputs."""
    observed = {name: Observed.of(values.iloc[train]) for name, values in labels.items()}
    return preprocessing_of(numbers, train, observed, numeric, path, max_categories)


@dataclass
class Observed:
    """What the training rows hold of a categorical column."""

    categories: list[str]  # sorted
    present: int  # rows with a value
    missing: bool  # whether any row has none

    @staticmethod
    def of(labels: pd.Series) -> "Observed":
        return Observed(sorted(labels.dropna().unique().tolist()), int(labels.notna().sum()),
                        bool(labels.isna().any()))


def preprocessing_of(numbers: np.ndarray, train: np.ndarray, observed: dict[str, Observed], numeric: list[str],
                     path: Path, max_categories: int) -> dict[str, Any]:
    mean, std, any_missing = numeric_statistics(numbers, train, numeric, path)
    numeric_record = [{"name": name, "mean": float(mean[j]), "std": float(std[j]) if std[j] > 1e-12 else 1.0,
                       "missing": bool(any_missing[j])} for j, name in enumerate(numeric)]
    categorical_record = [fit_categories(name, seen, path, max_categories) for name, seen in observed.items()]
    record = {"numeric": numeric_record, "categorical": categorical_record}
    return record | {"features": feature_names(record)}


def numeric_statistics(numbers: np.ndarray, train: np.ndarray, numeric: list[str],
                       path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and "had missing values" of each column over the training rows, NaNs left out.
    Summed STATS_ROWS rows at a time and the blocks merged (Chan, Golub and LeVeque's pairwise update), so that a
    table in memory and one memory-mapped from disk (dataset.in_memory=false) give the same numbers to the last
    bit, and no more than a block is copied."""
    k = numbers.shape[1]
    count, mean, squares = np.zeros(k), np.zeros(k), np.zeros(k)

    def block_moments(begin: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", over="ignore"):  # an infinite value: encode_arrays names its row
            return moments(numbers[train[begin : begin + STATS_ROWS]])

    # The blocks' moments on every core, merged here in order: the same numbers as one after the other.
    with np.errstate(invalid="ignore", over="ignore"):
        for block_count, block_mean, block_squares in in_threads(block_moments, range(0, len(train), STATS_ROWS)):
            total = count + block_count
            share = np.divide(block_count, total, out=np.zeros(k), where=total > 0)
            delta = block_mean - mean
            mean = mean + delta * share
            squares = squares + block_squares + delta * delta * count * share
            count = total
    any_missing = count < len(train)
    if (count == 0).any() and len(train):
        name = np.asarray(numeric)[count == 0][0]
        raise DlxError(f'Column "{name}" of {path} is empty in every training row: there is nothing to learn '
                       "from it. Leave it out of dataset.features.")
    return mean, np.sqrt(squares / np.maximum(count, 1)), any_missing


def in_threads(function: Callable[[Any], Any], parts: Iterable[Any]) -> list[Any]:
    """function(part) for each part, on as many threads as there are cores, in order. For NumPy's work on large
    blocks, which releases the GIL: a million rows standardise in half the time on 2 cores."""
    parts = list(parts)
    if len(parts) < 2:
        return [function(part) for part in parts]
    with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as pool:
        return list(pool.map(function, parts))


def moments(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each column's count of values, mean and sum of squared deviations from it, NaNs left out; `block` is a
    copy (fancy-indexed rows), centred in place."""
    mean = block.mean(axis=0)
    count = np.full(block.shape[1], float(len(block)))
    gaps = np.isnan(mean)  # NaN propagates: only the columns with missing values need a mask
    if gaps.any():
        present = ~np.isnan(block[:, gaps])
        count[gaps] = present.sum(axis=0)
        mean[gaps] = np.nansum(block[:, gaps], axis=0) / np.maximum(count[gaps], 1)
    block -= mean
    squares = np.einsum("ij,ij->j", block, block)
    if gaps.any():  # summed as np.nanstd sums them, so that a small table's numbers are what they always were
        deviations = np.where(present, block[:, gaps], 0.0)
        squares[gaps] = np.sum(deviations * deviations, axis=0)
    return count, mean, squares


def fit_categories(name: str, observed: Observed, path: Path, max_categories: int) -> dict[str, Any]:
    categories = observed.categories
    if len(categories) > max_categories:
        every_row = len(categories) == observed.present
        raise DlxError(f'Column "{name}" of {path} has {len(categories):,} distinct values in the training rows'
                       + (" (a different one in every row: an identifier?)" if every_row else "")
                       + f", more than dataset.max_categories={max_categories}: one input per category would "
                       "make a very wide input of categories seen a few times each, which teaches nothing that "
                       f"carries to new rows. Leave the column out (list the others in dataset.features), or "
                       f"raise dataset.max_categories if it truly holds categories; if it holds numbers, remove "
                       "the text among them.")
    return {"name": name, "categories": [str(c) for c in categories], "missing": observed.missing}


def feature_names(record: dict[str, Any]) -> list[str]:
    """The feature vector's inputs in order: numbers, missing indicators, then each column's categories."""
    names = [c["name"] for c in record["numeric"]]
    names += [f"{c['name']} {MISSING}" for c in record["numeric"] if c["missing"]]
    for column in record["categorical"]:
        names += [f"{column['name']}={category}" for category in column["categories"]]
        names += [f"{column['name']}={MISSING}"] if column["missing"] else []
    return names


def encode_rows(frame: pd.DataFrame, preprocessing: dict[str, Any], path: Path) -> Encoded:
    """New rows (of any file holding the training features) as the model's feature vectors, exactly as
    training encoded its own."""
    numeric = [c["name"] for c in preprocessing["numeric"]]
    categorical = [c["name"] for c in preprocessing["categorical"]]
    absent = [name for name in numeric + categorical if name not in frame.columns]
    if absent:
        raise DlxError(f"{path} lacks the column(s) {', '.join(absent)}, which the model was trained on (from "
                       f"{preprocessing['source']}). Add them to the table (an empty column means missing values: "
                       "the training mean, or the missing category).")
    numbers = numeric_block(frame, path, numeric)
    labels = {name: category_labels(frame[name]) for name in categorical}
    return encode_arrays(numbers, labels, preprocessing, path, frame.index.to_numpy())


def encode_arrays(numbers: np.ndarray, labels: dict[str, pd.Series], preprocessing: dict[str, Any], path: Path,
                  index: np.ndarray) -> Encoded:
    """(N, features) float32 from the numeric block (N, numeric) and each categorical column's labels; `index`
    holds each row's position in the file, to name a row that cannot be encoded."""
    numeric, categorical = preprocessing["numeric"], preprocessing["categorical"]
    n, k = numbers.shape
    x = np.zeros((n, len(preprocessing["features"])), dtype=np.float32)
    encoded = Encoded(x)
    offset = 0
    if k:
        standardise(numbers, numeric, x[:, :k], encoded, path, index)
        offset = k + sum(c["missing"] for c in numeric)
    for column in categorical:
        offset = one_hot(labels[column["name"]], column, x, offset, encoded)
    return encoded


def standardise(numbers: np.ndarray, numeric: list[dict[str, Any]], out: np.ndarray, encoded: Encoded,
                path: Path, index: np.ndarray) -> None:
    """(numbers - mean) / std into `out` (N, k); a missing value becomes 0 (the training mean) and sets its
    column's indicator, which encoded.x holds right after the k numbers."""
    mean = np.array([c["mean"] for c in numeric], dtype=np.float64)
    std = np.array([c["std"] for c in numeric], dtype=np.float32)
    def rows(part: slice) -> None:  # in float64, then cast to float32
        np.subtract(numbers[part], mean, out=out[part], casting="same_kind")
        out[part] /= std

    in_threads(rows, [slice(begin, begin + STATS_ROWS) for begin in range(0, len(numbers), STATS_ROWS)])
    if np.isfinite(out.sum()):  # NaN and inf propagate to the sum: no mask in the common case
        return
    missing = np.isnan(numbers)
    infinite = ~np.isfinite(out) & ~missing
    if infinite.any():  # in the file (inf), or beyond float32 once standardised
        row, j = np.argwhere(infinite)[0]
        raise DlxError(f'Column "{numeric[j]["name"]}" of {path} holds {cell(numbers[row, j])} at '
                       f"{row_in_file(path, int(index[row]))}, which is too large to learn from. Correct or empty "
                       "the cell (an empty cell is a missing value).")
    out[missing] = 0.0
    flagged = [j for j, c in enumerate(numeric) if c["missing"]]
    k = len(numeric)
    encoded.x[:, k:k + len(flagged)] = missing[:, flagged]
    counts = missing.sum(axis=0)
    encoded.new_missing = {c["name"]: int(counts[j]) for j, c in enumerate(numeric) if not c["missing"] and counts[j]}


def one_hot(labels: pd.Series, column: dict[str, Any], x: np.ndarray, offset: int, encoded: Encoded) -> int:
    """Write the column's one-hot block into x[:, offset:] and return the offset after it; count the rows
    whose category training never saw (left all zeros)."""
    # Factorised first (a hash of each cell), then the few distinct values looked up: far faster than looking up
    # every cell's string.
    cells, distinct = pd.factorize(labels)  # -1 where missing
    missing = cells < 0
    codes = np.full(len(cells), -1, dtype=np.int64)  # -1: missing, or a category training never saw
    codes[~missing] = pd.Index(column["categories"]).get_indexer(distinct)[cells[~missing]]
    width = len(column["categories"])
    if column["missing"]:
        codes[missing] = width
        width += 1
    known = codes >= 0
    rows = np.flatnonzero(known)
    x[rows, offset + codes[rows]] = 1.0
    if not known.all():
        encoded.unseen[column["name"]] = int((~known).sum())
        unseen = labels[~known & ~missing]
        encoded.unseen_examples[column["name"]] = str(unseen.iloc[0]) if len(unseen) else MISSING
    return offset + width


def well_formed_preprocessing(record: Any) -> bool:
    """The record holds what load_table writes (a checkpoint someone sent may not), consistently."""
    def named(items: Any, keys: dict[str, type | tuple[type, ...]]) -> bool:
        return isinstance(items, list) and all(
            isinstance(item, dict) and isinstance(item.get("name"), str)
            and all(isinstance(item.get(key), kind) for key, kind in keys.items()) for item in items)

    number = (int, float)
    if not (isinstance(record, dict) and record.get("task") in ("classification", "regression")
            and isinstance(record.get("target"), str) and isinstance(record.get("source"), str)
            and named(record.get("numeric"), {"mean": number, "std": number, "missing": bool})
            and named(record.get("categorical"), {"categories": list, "missing": bool})
            and isinstance(record.get("features"), list) and isinstance(record.get("na_values"), list)
            and (record.get("sep") is None or isinstance(record["sep"], str))):
        return False
    if record["task"] == "regression" and not (all(isinstance(record.get(k), number) for k in ("target_mean",
                                                                                              "target_std"))
                                               and record["target_std"] > 0):
        return False
    finite = all(math.isfinite(c["mean"]) and math.isfinite(c["std"]) and c["std"] > 0 for c in record["numeric"])
    strings = all(isinstance(v, str) for c in record["categorical"] for v in c["categories"])
    return finite and strings and record["features"] == feature_names(record)


def log_table(path: Path, row_count: int, preprocessing: dict[str, Any], rows: dict[str, np.ndarray],
              unseen: dict[str, int], new_missing: dict[str, int], class_names: list[str], where: str) -> None:
    numeric, categorical = preprocessing["numeric"], preprocessing["categorical"]
    logger.info(f"Table {path}: {row_count:,} rows ({', '.join(f'{len(v):,} {k}' for k, v in rows.items())}); "
                f"{len(numeric)} numeric column(s), standardised, and {len(categorical)} categorical, one-hot: "
                f"{len(preprocessing['features'])} inputs"
                + (f"; classes {', '.join(class_names[:10])}{' ...' if len(class_names) > 10 else ''}"
                   if class_names else "") + f"; {where}")
    if unseen:
        logger.info("Validation and test rows with categories the training rows do not have (encoded as all "
                    "zeros), per column: " + ", ".join(f"{name} {count:,}" for name, count in unseen.items()))
    if new_missing:
        logger.info("Validation and test rows missing numbers in columns that have none missing in the training "
                    "rows (read as the training mean), per column: "
                    + ", ".join(f"{name} {count:,}" for name, count in new_missing.items()))


# --- tables larger than memory ----------------------------------------------------------------------------------
#
# The same steps as table_in_memory, a chunk at a time: the target and split columns of every row (one value per
# row: held in memory), the splits; the feature columns into scratch arrays on disk (numbers as float64, categories
# as codes); the statistics from those, a block at a time as in memory; then the encoded rows into x.npy.

def streamed_table(file: Path, options: TableOptions, cache_dir: str | None) -> DataSplits:
    started = time.perf_counter()
    cache = TableCache(cache_folder(cache_dir, "table"), file, dataclasses.asdict(options))
    if not cache.complete():
        encode_to_cache(file, options, cache)
    record = cache.record()
    y = torch.from_numpy(np.load(cache.folder / "y.npy"))
    rows = {name: cache.rows(name) for name in ("train", "val", "test")}
    splits = {name: MappedRows(cache.folder / "x.npy", index, y[torch.from_numpy(index)]) for name, index in rows.items()}
    log_table(file, record["row_count"], record["preprocessing"], rows, record["unseen"], record["new_missing"],
              record["class_names"], f"streamed from its encoded copy in {cache.folder} ("
              f"{'from an earlier run' if cache.hit else 'encoded now'}), ready in {time.perf_counter() - started:.2f} s")
    return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task=record["task"],
                      class_names=record["class_names"], preprocessing=record["preprocessing"])


def encode_to_cache(file: Path, options: TableOptions, cache: TableCache) -> None:
    o = options
    kind, separator = table_format(file, o.sep)
    cache.make_folder()
    head = next(chunks_of(file, kind, separator, o.na_values), None)
    if head is None or len(head) == 0:
        read_table(file, o.sep, o.na_values)  # an empty table, whose error says what it holds
    assert head is not None
    columns = chosen_features(head, file, o.target, o.features, o.categorical, o.split_column)
    kinds = streamed_kinds(file, kind, head, columns, set(o.categorical or []))
    wanted = [o.target, *([o.split_column] if o.split_column else [])]
    frame = pd.concat(list(chunks_of(file, kind, separator, o.na_values, wanted)))  # one or two values a row
    row_count = len(frame)
    frame, targets, class_names, task_kind = read_target(frame, file, o.target, o.task)
    rows = split_rows(frame, file, o.split_column, targets, task_kind, o.val_fraction, o.test_fraction, o.split_seed)
    positions = frame.index.to_numpy()  # each row's position in the file (rows without a target are left out)
    scratch = Scratch(cache)
    try:
        numbers, codes, vocabularies = raw_columns(file, kind, separator, o.na_values, kinds, positions, row_count,
                                                   scratch)
        train_codes = codes[rows["train"]]
        observed = {name: observed_codes(train_codes[:, j], vocabularies[j])
                    for j, name in enumerate(kinds["categorical"])}
        preprocessing = preprocessing_of(numbers, rows["train"], observed, kinds["numeric"], file, o.max_categories)
        preprocessing, y = with_targets(preprocessing, file, options, task_kind, targets, rows["train"])
        unseen, new_missing = encode_to_disk(numbers, codes, vocabularies, preprocessing, file, positions, scratch)
    finally:
        scratch.remove()
    cache.save("y.npy", y)
    for name, index in rows.items():
        cache.save(f"rows-{name}.npy", index)
    cache.write_record({"row_count": row_count, "task": task_kind, "class_names": class_names,
                        "preprocessing": preprocessing, "unseen": unseen, "new_missing": new_missing})


def streamed_kinds(file: Path, kind: str, head: pd.DataFrame, columns: list[str],
                   categorical: set[str]) -> dict[str, list[str]]:
    """column_kinds of the whole table: for Parquet, from each column read whole, one at a time (a column is a
    small part of a wide table, and Parquet reads one without the others); for text, from the first chunk,
    whose types pyarrow then holds the rest of the file to."""
    if kind != "parquet":
        return column_kinds(head, file, columns, categorical)
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for name in columns:
        try:
            column = pyarrow.parquet.read_table(file, columns=[name]).to_pandas()
        except (OSError, pyarrow.ArrowException) as err:
            raise unreadable(file, kind, None, err) from err
        for which, names in column_kinds(column, file, [name], categorical).items():
            kinds[which] += names
    return kinds


def chunks_of(file: Path, kind: str, separator: str | None, na_values: list[str],
              columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """table_chunks, with a file that cannot be read, or a cell whose type differs from its column's first
    rows, said in one paragraph."""
    try:
        yield from table_chunks(file, kind, separator, na_values, columns)
    except (OSError, ValueError, pyarrow.ArrowException) as err:  # ValueError: text that is not UTF-8
        converting = re.search(r"column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", str(err))
        if converting is None:
            raise unreadable(file, kind, separator, err) from err
        raise DlxError(f"{file} holds {converting[3]!r} in a column of {converting[2]} values (column "
                       f"{int(converting[1]) + 1} of the file, counted from 1): read in chunks "
                       "(dataset.in_memory=false), a text file's column types are those of its first rows, and a "
                       "later cell must fit them. Correct the value, or empty the cell (an empty cell is a missing "
                       "value), or add the text to dataset.na_values.") from err


class Scratch:
    """The scratch arrays of one encoding, removed at its end, whether it succeeds or not."""

    def __init__(self, cache: TableCache) -> None:
        self.cache = cache
        self.paths: list[Path] = []

    def array(self, name: str, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
        array, path = self.cache.array(name, dtype, shape)
        self.paths.append(path)
        return array

    def keep(self, array: np.memmap, name: str) -> None:
        array.flush()
        self.cache.keep(self.paths.pop(), name)

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def raw_columns(file: Path, kind: str, separator: str | None, na_values: list[str], kinds: dict[str, list[str]],
                positions: np.ndarray, row_count: int, scratch: Scratch) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """The numeric columns of the rows at `positions` (float64, NaN where missing) and their categorical columns
    (int32 codes into each column's vocabulary, the labels in order of first appearance; -1 where missing), as
    scratch arrays on disk; and the vocabularies."""
    numeric, categorical = kinds["numeric"], kinds["categorical"]
    rank = np.full(row_count, -1, dtype=np.int64)  # a row of the file -> its row in the arrays (-1: left out)
    rank[positions] = np.arange(len(positions))
    numbers = scratch.array("numbers", np.float64, (len(positions), len(numeric)))
    codes = scratch.array("codes", np.int32, (len(positions), len(categorical)))
    vocabularies: list[dict[Any, int]] = [{} for _ in categorical]
    for chunk in chunks_of(file, kind, separator, na_values, numeric + categorical):
        kept = rank[chunk.index.to_numpy()]
        chunk, kept = chunk[kept >= 0], kept[kept >= 0]
        numbers[kept] = numeric_block(chunk, file, numeric)
        for j, name in enumerate(categorical):
            codes[kept, j] = vocabulary_codes(chunk[name], vocabularies[j])
    # Named once per column, from all its distinct values: category_labels writes 1.0 as "1" only when every
    # value of the column is whole, which no single chunk can tell.
    return numbers, codes, [category_labels(pd.Series(list(vocabulary))).tolist() for vocabulary in vocabularies]


def vocabulary_codes(values: pd.Series, vocabulary: dict[Any, int]) -> np.ndarray:
    """Each value's code in `vocabulary` (new values added), -1 where missing."""
    cells, distinct = pd.factorize(values)
    codes = np.array([vocabulary.setdefault(value, len(vocabulary)) for value in distinct], dtype=np.int32)
    return np.where(cells >= 0, codes[cells] if len(codes) else -1, -1).astype(np.int32)


def observed_codes(codes: np.ndarray, vocabulary: list[str]) -> Observed:
    present = codes[codes >= 0]
    return Observed(sorted(vocabulary[c] for c in np.unique(present)), len(present), bool((codes < 0).any()))


def encode_to_disk(numbers: np.ndarray, codes: np.ndarray, vocabularies: list[list[str]],
                   preprocessing: dict[str, Any], file: Path, positions: np.ndarray,
                   scratch: Scratch) -> tuple[dict[str, int], dict[str, int]]:
    """Every row encoded (by encode_arrays, a block of rows at a time) into the cache's x.npy; the counts of
    rows with unseen categories and of newly missing numbers, per column, for the log."""
    x = scratch.array("x", np.float32, (len(numbers), len(preprocessing["features"])))
    names = [column["name"] for column in preprocessing["categorical"]]
    # A code of -1 (missing) picks the NaN at the end of each column's labels.
    labels_of = [np.array([*vocabulary, np.nan], dtype=object) for vocabulary in vocabularies]
    unseen: Counter[str] = Counter()
    new_missing: Counter[str] = Counter()
    for begin in range(0, len(numbers), CHUNK_ROWS):
        block = slice(begin, begin + CHUNK_ROWS)
        labels = {name: pd.Series(labels_of[j][codes[block, j]]) for j, name in enumerate(names)}
        encoded = encode_arrays(np.asarray(numbers[block]), labels, preprocessing, file, positions[block])
        x[block] = encoded.x
        unseen.update(encoded.unseen)
        new_missing.update(encoded.new_missing)
    scratch.keep(x, "x.npy")
    return dict(unseen), dict(new_missing)
