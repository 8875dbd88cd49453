"""`dlx predict CKPT SOURCES` for an encoder-decoder: the target it decodes for each source.

SOURCES is a text file of one source per line (its last line may end with a newline or not; an empty line is
refused, by line number), or a CSV, TSV or Parquet file whose source column (the checkpoint's
dataset.source_column, else "source") holds them. Each source is tokenized by the checkpoint's own tokenizer and
cut at the longer of the training's longest source and dataset.max_length tokens (counted in a warning), and
decoded greedily, or by beam search with --beam N, up to the training's longest target. Characters the vocabulary
lacks are read as [UNK] (counted in a warning, with examples).

The decoded targets are printed, or written with --out: to a text file (.txt, one per line, in the order of the
sources), or to a table (.csv, .tsv, .parquet: the input's columns, or a `source` column, and `prediction`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlx.data.pairs import trimmed
from dlx.data.table import is_table_file, missing_columns, table_format, write_table
from dlx.data.text import not_utf8, read_text_cells
from dlx.data.tokens import decode_ids, encode_texts, tokenizer_from_json, unknown_characters
from dlx.errors import DlxError, check_writable
from dlx.inspect.rebuild import Rebuilt
from dlx.models.decoding import decode
from dlx.models.seq2seq import EncoderDecoder
from dlx.store.files import write_text_atomically

BATCH = 256
SHOWN_EXAMPLES = 5


@dataclass
class Translations:
    sources: Path  # the file read
    out: Path | None  # the file written, or None when printed
    rows: list[dict[str, str]]  # source, prediction, in the file's order
    beam: int
    warnings: list[str] = field(default_factory=list)


def translate(rebuilt: Rebuilt, data: dict[str, Any], inputs: list[Path], out: Path | None,
              beam: int) -> Translations:
    checkpoint = rebuilt.path
    model = rebuilt.model
    if not isinstance(model, EncoderDecoder) or not data.get("tokenizer"):
        raise DlxError(f"{checkpoint} is damaged or was altered: it records pairs of sequences but holds no "
                       "encoder-decoder with its tokenizer. Use another checkpoint.")
    if len(inputs) != 1 or not inputs[0].is_file():
        given = ", ".join(map(str, inputs))
        raise DlxError(f"{checkpoint} holds an encoder-decoder: give dlx predict one file of sources, a text file "
                       "with one source per line or a CSV, TSV or Parquet file with a source column (given: "
                       f"{given}" + (", which is not a file" if len(inputs) == 1 else "") + ").")
    if beam < 1:
        raise DlxError(f"--beam {beam}: give the number of hypotheses to keep, 1 (greedy decoding) or more.")
    path = inputs[0]
    if out is not None:
        check_output(path, out)
    column = str(rebuilt.cfg.dataset.get("source_column", "source"))
    sources, frame = read_sources(path, column, rebuilt.cfg.dataset.get("sep"))
    if out is not None and out.suffix.lower() != ".txt" and frame is not None and "prediction" in frame.columns:
        raise DlxError(f"{path} already has a column named prediction, the column dlx predict adds. Rename or "
                       "remove it (a file of earlier predictions? predict on the sources alone).")
    tokenizer = tokenizer_from_json(data["tokenizer"], str(checkpoint))
    limit = max(int(data["input_shape"][0]), int(rebuilt.cfg.dataset.get("max_length") or 0))
    encoded = encode_texts(tokenizer, sources, limit)
    ids = torch.from_numpy(trimmed(encoded.ids))
    with torch.inference_mode():
        decoded = [row for batch in ids.split(BATCH)
                   for row in decode(model, batch, model.max_target_length - 1, beam).tolist()]
    predictions = [decode_ids(tokenizer, row) for row in decoded]
    warnings = source_warnings(path, sources, encoded.truncated, limit, tokenizer)
    if out is not None:
        write_predictions(out, sources, predictions, frame)
    return Translations(path, out, [{"source": s, "prediction": p} for s, p in zip(sources, predictions)], beam,
                        warnings)


def read_sources(path: Path, column: str, sep: str | None) -> tuple[list[str], Any]:
    """The sources of a table file's source column (and the table), or of a text file's lines (and None)."""
    if is_table_file(path):
        frame = read_text_cells(path, sep, "strict")
        missing_columns(path, frame, [column], "dataset.source_column")
        return frame[column].astype(str).tolist(), frame
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8(path, data, err, "") from err
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    lines = [line.removesuffix("\r") for line in lines]
    if not lines:
        raise DlxError(f"{path} is empty: write one source per line.")
    empty = [number for number, line in enumerate(lines, 1) if not line.strip()]
    if empty:
        named = ", ".join(map(str, empty[:SHOWN_EXAMPLES])) + (" ..." if len(empty) > SHOWN_EXAMPLES else "")
        raise DlxError(f"{path} has {len(empty)} empty line(s) (line {named}): each line is one source to decode. "
                       "Remove the empty lines.")
    return lines, None


def check_output(sources: Path, out: Path) -> None:
    if out.suffix.lower() != ".txt":
        table_format(out, None)  # a DlxError unless the suffix names a table format dlx writes
    if out.exists() and out.resolve() == sources.resolve():
        raise DlxError(f"--out {out} is the file of sources being read: dlx predict does not overwrite its input. "
                       "Pass another --out.")
    check_writable(out)


def write_predictions(out: Path, sources: list[str], predictions: list[str], frame: Any) -> None:
    if out.suffix.lower() == ".txt":
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out, "".join(f"{prediction}\n" for prediction in predictions))
        return
    import pandas as pd

    table = frame if frame is not None else pd.DataFrame({"source": sources})
    write_table(table.assign(prediction=predictions), out)


def source_warnings(path: Path, sources: list[str], truncated: int, limit: int, tokenizer: Any) -> list[str]:
    lines = []
    if truncated:
        lines.append(f"{path}: {truncated:,} source(s) longer than {limit} tokens were cut there (the longest the "
                     "model was trained to read).")
    unknown: dict[str, None] = {}
    count = 0
    for source in sources:
        found = unknown_characters(tokenizer, source)
        count += bool(found)
        unknown.update(dict.fromkeys(found))
    if count:
        examples = ", ".join(repr(c) for c in list(unknown)[:SHOWN_EXAMPLES])
        lines.append(f"{path}: {count:,} source(s) hold text the vocabulary lacks, read as [UNK] (e.g. {examples}); "
                     "the model never saw it in training.")
    return lines


def print_translations(translations: Translations, checkpoint: Path) -> None:
    if translations.out is not None:
        count = len(translations.rows)
        print(f"{translations.out}: {count:,} prediction{'s' * (count != 1)} for the sources of {translations.sources} "
              f"by {checkpoint}" + (f" (beam search of {translations.beam})" if translations.beam > 1 else ""))
        return
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import wide_console

    decoding = f"beam search of {translations.beam}" if translations.beam > 1 else "greedy decoding"
    table = Table(title=f"{len(translations.rows)} source(s), {checkpoint}, {decoding}", title_justify="left")
    table.add_column("source", overflow="fold")
    table.add_column("prediction", overflow="fold")
    for row in translations.rows:
        table.add_row(escape(row["source"]), escape(row["prediction"]))
    wide_console().print(table)
