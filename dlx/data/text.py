"""`dataset=text`: texts and their classes, for text classification.

    dataset.path=reviews.csv dataset.text_column=review dataset.label_column=stars     a table (CSV, TSV, Parquet)
    dataset.path=ROOT      ROOT/sports/0001.txt, ROOT/politics/0002.txt, ...          a folder of .txt files per class
                           (or ROOT/train/..., ROOT/val/..., ROOT/test/...: fixed splits, as image folders)

A table is read by dlx.data.table (its formats, its split column, its messages); a folder's files are each one
text. The tokenizer (dlx.data.tokens) is learnt from the training split alone, and every text becomes a row of
`max_length` token ids, padded with 0; longer texts are cut (and counted in the log). Rows whose text is empty
are left out (and counted), as rows without a label are.

Text must be UTF-8. A file that is not is refused with the file and the byte offset of the first bad byte, unless
dataset.encoding_errors=replace, which reads such bytes as U+FFFD (the replacement character) and counts them.
"""

import bz2
import gzip
import io
import logging
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dlx.data import DataSplits, InMemory
from dlx.data.class_folders import FileKind, scan_class_folders, split_indices
from dlx.data.table import missing_columns, read_table, table_format
from dlx.data.tokens import TokenizerKind, encode_texts, train_tokenizer
from dlx.errors import DlxError

logger = logging.getLogger("dlx")

TEXT_FILES = FileKind(".txt files", (".txt",), "dataset.path", "1.txt")
ENCODING_ERRORS = ("strict", "replace")
OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # compressed text whose bytes dlx checks itself


@dataclass
class Texts:
    """Texts with their labels and where each belongs."""

    texts: list[str]
    labels: np.ndarray  # (N,) class indices
    class_names: list[str]
    splits: dict[str, np.ndarray]  # positions of each split's texts
    source: Path


def load_text(path: str, text_column: str = "text", label_column: str = "label", tokenizer: TokenizerKind = "bpe",
              vocab_size: int = 8000, max_length: int = 128, lowercase: bool = True, val_fraction: float = 0.1,
              test_fraction: float = 0.1, split_seed: int = 0, split_column: str | None = None, sep: str | None = None,
              encoding_errors: str = "strict") -> DataSplits:
    """The texts of `path` as train, validation and test splits of token ids; see the module's docstring."""
    if encoding_errors not in ENCODING_ERRORS:
        raise DlxError(f"dataset.encoding_errors={encoding_errors}: choose strict (refuse text that is not UTF-8) or "
                       "replace (read its bad bytes as U+FFFD).")
    source = Path(path).expanduser()
    if source.is_dir():
        texts = read_text_folder(source, val_fraction, test_fraction, split_seed, encoding_errors)
    else:
        texts = read_labelled_table(source, text_column, label_column, split_column, sep, val_fraction,
                                    test_fraction, split_seed, encoding_errors)
    train_texts = [texts.texts[i] for i in texts.splits["train"]]
    vocabulary = train_tokenizer(train_texts, tokenizer, vocab_size, lowercase)
    parts, truncated = {}, 0
    for name, index in texts.splits.items():
        encoded = encode_texts(vocabulary, [texts.texts[i] for i in index], max_length)
        truncated += encoded.truncated
        parts[name] = InMemory(torch.from_numpy(encoded.ids), torch.from_numpy(texts.labels[index]))
    logger.info(f"Text {texts.source}: {len(texts.texts):,} texts of {len(texts.class_names)} classes; {tokenizer} "
                f"tokenizer of {vocabulary.get_vocab_size():,} tokens learnt from the {len(train_texts):,} training "
                f"texts; {max_length} tokens a text"
                + (f" ({truncated:,} longer texts cut there: dataset.max_length)" if truncated else ""))
    return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], task="classification",
                      class_names=texts.class_names, tokenizer=vocabulary.to_str())


def read_text_folder(root: Path, val_fraction: float, test_fraction: float, split_seed: int,
                     encoding_errors: str) -> Texts:
    """Each .txt file of a class folder as one text."""
    layout = scan_class_folders(root, TEXT_FILES)
    texts = [read_text_file(each.path, encoding_errors) for each in layout.files]
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    files = layout.files
    if empty:
        logger.info(f"Left out {len(empty):,} empty text file(s) of {root}, e.g. {files[empty[0]].path}")
        keep = sorted(set(range(len(files))) - set(empty))
        files, texts = [files[i] for i in keep], [texts[i] for i in keep]
    labels = np.array([each.label for each in files], dtype=np.int64)
    emptied = [name for label, name in enumerate(layout.class_names) if not (labels == label).any()]
    if emptied:
        raise DlxError(f"The class folder {layout.root / emptied[0]} holds only empty .txt files: there is no text "
                       "of that class to learn from. Add texts to it, or remove the folder.")
    splits = split_indices(files, layout, val_fraction, test_fraction, split_seed)
    return Texts(texts, labels, layout.class_names, splits, layout.root)


def read_text_file(path: Path, encoding_errors: str) -> str:
    """A whole file's text; a DlxError with the byte offset and line of the first byte that is not UTF-8 (strict),
    or its text with U+FFFD for such bytes (replace)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        if encoding_errors == "replace":
            return data.decode("utf-8", errors="replace")
        raise not_utf8(path, data, err) from None


def read_labelled_table(path: Path, text_column: str, label_column: str, split_column: str | None, sep: str | None,
                        val_fraction: float, test_fraction: float, split_seed: int, encoding_errors: str) -> Texts:
    """The text and label columns of a CSV, TSV or Parquet file, every cell as written."""
    from dlx.data.table import read_target, split_rows

    frame = read_text_cells(path, sep, encoding_errors)
    missing_columns(path, frame, [text_column], "dataset.text_column")
    missing_columns(path, frame, [label_column], "dataset.label_column")
    if split_column is not None:
        missing_columns(path, frame, [split_column], "dataset.split_column")
    frame, labels, class_names, _ = read_target(frame, path, label_column, "classification", "texts are classified")
    column = frame[text_column]
    empty = column.isna() | (column.astype(str).str.strip() == "")
    if empty.all():
        raise DlxError(f'The text column "{text_column}" of {path} is empty in every row that has a label. Fill it '
                       "in, or choose another dataset.text_column.")
    if empty.any():
        logger.info(f'Left out {int(empty.sum()):,} row(s) of {path.name} whose text "{text_column}" is empty')
        keep = ~empty.to_numpy()
        frame, labels = frame[keep], labels[keep]
    splits = split_rows(frame, path, split_column, labels, "classification", val_fraction, test_fraction, split_seed)
    return Texts(frame[text_column].astype(str).tolist(), labels, class_names, splits, path)


# --- tables of text, read as written and checked for UTF-8 ---------------------------------------------------------

def read_text_cells(path: Path, sep: str | None, encoding_errors: str) -> pd.DataFrame:
    """Every cell of a CSV, TSV or Parquet file as text (empty cells as ""), its UTF-8 checked first."""
    if path.exists() and path.is_file() and table_format(path, sep)[0] == "text":
        text = checked_utf8(path, encoding_errors)
        if text is not None:  # bad bytes replaced: parse the repaired text with the file's separator
            return parse_text(text, path, sep)
    return read_table(path, sep, as_text=True)


def raw_bytes(path: Path) -> bytes | None:
    """The file's bytes (decompressed for .gz, .bz2, .xz), or None for a compression dlx leaves to the parser."""
    suffix = path.suffix.lower()
    if suffix in OPENERS:
        with OPENERS[suffix](path, "rb") as opened:
            return opened.read()
    if suffix in (".zip", ".zst"):
        return None
    return path.read_bytes()


def checked_utf8(path: Path, errors: str) -> str | None:
    """None when the file is UTF-8 (it is then read by the table reader); its text with bad bytes replaced under
    errors="replace"; else a DlxError with the offset and line of the first bad byte."""
    data = raw_bytes(path)
    if data is None:
        return None
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as err:
        if errors != "replace":
            raise not_utf8(path, data, err) from err
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    logger.info(f"{path}: {replaced:,} "
                "character(s) that were not UTF-8 replaced by U+FFFD (dataset.encoding_errors=replace)")
    return text


def not_utf8(path: Path, data: bytes, err: UnicodeDecodeError,
             replace: str = ", or pass dataset.encoding_errors=replace to read each bad byte as U+FFFD") -> DlxError:
    """The error for bytes that UTF-8 cannot decode, with their offset and line, and how to convert the file."""
    line = data.count(b"\n", 0, err.start) + 1
    bad = data[err.start:err.start + 4]
    return DlxError(f"{path} is not UTF-8 text: byte offset {err.start:,} (line {line:,}) holds {bad!r}, which UTF-8 "
                    "cannot decode (the file is perhaps Latin-1 or Windows-1252). Convert it, e.g. `iconv -f "
                    f"latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}`{replace}.")


def parse_text(text: str, path: Path, sep: str | None) -> pd.DataFrame:
    _, separator = table_format(path, sep)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise DlxError(f"{path} cannot be read as {'tab' if separator == chr(9) else repr(separator)}-separated text "
                       f"({' '.join(str(err).split())[:300]}). Every row needs as many fields as the header; quote "
                       "values that hold the separator, or set dataset.sep.") from err
    if frame.empty:
        raise DlxError(f"{path} is an empty table: it has a header but no rows. Write the pairs into it, one per "
                       "line below a header line of column names.")
    frame.columns = [str(name) for name in frame.columns]
    return frame
