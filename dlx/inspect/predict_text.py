"""`dlx predict` for a text classifier (dataset=text): the classes of new texts, read as training read its texts
(the checkpoint's tokenizer, cut at the same number of tokens).

    dlx predict CKPT texts.txt                 one text a line (empty lines skipped): printed, or --out FILE
    dlx predict CKPT rows.csv [--column C]     a table's text column (by default the training data's
                                               dataset.text_column): the rows written back with a `prediction`
                                               column and `probability_<class>` columns, as for dataset=table
"""

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dlx.data.table import is_table_file, missing_columns, read_table, table_format, write_table
from dlx.data.text import read_text_file
from dlx.data.tokens import encode_texts, tokenizer_from_json
from dlx.errors import DlxError
from dlx.inspect.predicted import BATCH, TablePredictions, check_output, prediction_columns, probabilities
from dlx.inspect.rebuild import Rebuilt, run_folder_of


def classify_texts(rebuilt: Rebuilt, data: dict[str, Any], inputs: list[Path], top_k: int, out: Path | None,
                   column: str | None) -> list[dict[str, Any]] | TablePredictions:
    checkpoint = rebuilt.path
    if len(inputs) != 1 or not inputs[0].is_file():
        given = ", ".join(map(str, inputs))
        raise DlxError(f"{checkpoint} classifies text: give dlx predict one text file (one text a line) or one table "
                       f"(CSV, TSV, Parquet) with a column of texts (given: {given}"
                       + (", which is not a file" if len(inputs) == 1 and not inputs[0].is_file() else "") + ").")
    source = inputs[0]
    if is_table_file(source):
        return classify_table(rebuilt, data, source, out, column or rebuilt.cfg.dataset.get("text_column", "text"))
    texts = [line for line in read_text_file(source, "strict").splitlines() if line.strip()]
    if not texts:
        raise DlxError(f"{source} holds no text: write one text a line.")
    logits, warnings = text_logits(rebuilt, data, texts, source)
    if out is not None:
        check_output(source, out)
        added = prediction_columns(logits, data, checkpoint)
        write_table(pd.DataFrame({"text": texts}).assign(**added), out)
        return TablePredictions(source, out, len(texts), list(added), warnings)
    names = data["class_names"]
    values, indices = probabilities(logits).topk(min(top_k, len(names)), dim=1)
    return [{"text": text, "class": names[int(index[0])], "probability": float(value[0]),
             "top_k": [{"class": names[int(i)], "probability": float(v)} for v, i in zip(value, index)]}
            for text, value, index in zip(texts, values, indices)]


def classify_table(rebuilt: Rebuilt, data: dict[str, Any], rows: Path, out: Path | None,
                   column: str) -> TablePredictions:
    within = None if out else run_folder_of(rebuilt.path)  # RUN/predictions: written inside the run folder
    out = out or run_folder_of(rebuilt.path) / "predictions" / rows.name
    check_output(rows, out)
    # From text to text, every cell is carried over as written; into Parquet, as read.
    frame = read_table(rows, as_text=table_format(rows, None)[0] == "text")
    missing_columns(rows, frame, [column], "--column")
    texts = frame[column].fillna("").astype(str).tolist()
    logits, warnings = text_logits(rebuilt, data, texts, rows)
    added = prediction_columns(logits, data, rebuilt.path)
    clashing = [name for name in added if name in frame.columns]
    if clashing:
        raise DlxError(f"{rows} already has a column {clashing[0]}, the name of a column dlx predict adds. Rename "
                       "or remove it (a file of earlier predictions? predict on the rows alone).")
    write_table(frame.assign(**added), out, within)
    return TablePredictions(rows, out, len(frame), list(added), warnings)


def text_logits(rebuilt: Rebuilt, data: dict[str, Any], texts: list[str], source: Path) -> tuple[torch.Tensor, list[str]]:
    """The model's outputs for the texts (N, classes), and a warning for the texts cut at max_length tokens."""
    tokenizer = tokenizer_from_json(data["tokenizer"], str(rebuilt.path))
    (max_length,) = data["input_shape"]
    encoded = encode_texts(tokenizer, texts, max_length)
    with torch.inference_mode():
        logits = torch.cat([rebuilt.model(batch) for batch in torch.from_numpy(encoded.ids).split(BATCH)])
    warnings = [f"{source}: {encoded.truncated:,} text(s) longer than the {max_length} tokens the model reads were cut "
                "there, as in training"] if encoded.truncated else []
    if probabilities(logits).shape[1] != len(data["class_names"]):
        raise DlxError(f"{rebuilt.path} names {len(data['class_names'])} classes but its model gives "
                       f"{logits.shape[1]} outputs: the file is damaged or was altered. Use another checkpoint.")
    return logits, warnings
