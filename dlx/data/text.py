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

import codecs
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlx.data import DataSplits, InMemory
from dlx.data.class_folders import FileKind, scan_class_folders, split_indices
from dlx.data.tokens import TokenizerKind, encode_texts, train_tokenizer
from dlx.errors import DlxError

logger = logging.getLogger("dlx")

TEXT_FILES = FileKind(".txt files", (".txt",), "dataset.path", "1.txt")
ENCODING_ERRORS = ("strict", "replace")
DECODE_CHUNK = 1 << 20


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
        texts = read_text_table(source, text_column, label_column, split_column, sep, val_fraction, test_fraction,
                                split_seed, encoding_errors)
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
    """A whole file's text; a DlxError with the byte offset of the first byte that is not UTF-8 (strict)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        if encoding_errors == "replace":
            return data.decode("utf-8", errors="replace")
        raise not_utf8(path, err.start, data[err.start : err.start + 4]) from None


def not_utf8(path: Path, offset: int, found: bytes) -> DlxError:
    return DlxError(f"{path} is not UTF-8 text: the byte at offset {offset:,} ({found.hex(' ')}...) is not valid "
                    "UTF-8. Convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE`), or pass "
                    "dataset.encoding_errors=replace to read such bytes as U+FFFD.")


def read_text_table(path: Path, text_column: str, label_column: str, split_column: str | None, sep: str | None,
                    val_fraction: float, test_fraction: float, split_seed: int, encoding_errors: str) -> Texts:
    """The text and label columns of a CSV, TSV or Parquet file (dlx.data.table reads it)."""
    from dlx.data.table import missing_columns, read_table, read_target, split_rows

    frame = read_table(path, sep, decoded=utf8_text(path, encoding_errors))
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


def utf8_text(path: Path, encoding_errors: str) -> io.StringIO | None:
    """None for a file that is UTF-8 (or Parquet, whose text always is), so it is parsed from the file itself;
    else a DlxError with the byte offset of the first bad byte, or (replace) the text with U+FFFD for it."""
    from dlx.data.table import PARQUET_SUFFIXES

    if not path.is_file() or path.suffix.lower() in PARQUET_SUFFIXES:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # of the chunk's first byte in the file
    with open(path, "rb") as file:
        while True:
            chunk = file.read(DECODE_CHUNK)
            pending = decoder.getstate()[0]  # the bytes of a character that the last chunk cut in two
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                if encoding_errors == "strict":
                    start = offset - len(pending) + err.start
                    raise not_utf8(path, start, (pending + chunk)[err.start : err.start + 4]) from None
                replaced = path.read_bytes().decode("utf-8", errors="replace")
                logger.info(f"{path}: {replaced.count(chr(0xFFFD)):,} character(s) that are not UTF-8 read as U+FFFD "
                            "(dataset.encoding_errors=replace)")
                return io.StringIO(replaced)
            if not chunk:
                return None
            offset += len(chunk)
