"""What a prediction gives back, whatever the model reads: class probabilities, the columns added to a file of
rows (a prediction, and each class's probability), the record of a written file."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlx.errors import DlxError, check_writable

BATCH = 256  # inputs per forward pass


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes) class probabilities: the softmax of the logits; for a binary model with one output (a
    sigmoid loss), the sigmoid of that logit is the probability of class 1."""
    logits = logits.float()
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)


@dataclass
class TablePredictions:
    rows: Path  # the file of rows read
    out: Path  # the file written: those rows, with the added columns
    count: int
    added: list[str]  # the columns added: prediction, then probability_<class> for each class
    warnings: list[str] = field(default_factory=list)


def check_output(source: Path, out: Path, what: str = "the file of rows") -> None:
    """`out` must be a file dlx writes (by its suffix), writable, and not `source`, `what` dlx predict reads."""
    from dlx.data.table import table_format

    table_format(out, None)  # a DlxError unless the suffix names a format dlx writes
    if out.exists() and out.resolve() == source.resolve():
        raise DlxError(f"--out {out} is {what} being read: dlx predict does not overwrite its input. Pass another "
                       "--out.")
    check_writable(out)


def prediction_columns(outputs: torch.Tensor, data: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """{"prediction": ..., "probability_<class>": ...}: the class and its probabilities for a classifier, the
    value in the target's own units (the training standardisation undone) for a regression."""
    if data["task"] == "regression":
        preprocessing = data["preprocessing"]
        if outputs.shape[1] != 1:
            raise DlxError(f"{checkpoint} is damaged or was altered: its model gives {outputs.shape[1]} outputs "
                           f"for the one target {preprocessing['target']}. Use another checkpoint.")
        values = outputs[:, 0].double().numpy()
        return {"prediction": values * preprocessing["target_std"] + preprocessing["target_mean"]}
    probs = probabilities(outputs)
    names = data["class_names"]
    if probs.shape[1] != len(names):
        raise DlxError(f"{checkpoint} names {len(names)} classes but its model gives {probs.shape[1]} outputs: the "
                       "file is damaged or was altered. Use another checkpoint.")
    columns: dict[str, Any] = {"prediction": np.asarray(names, dtype=object)[probs.argmax(dim=1).numpy()]}
    columns |= {f"probability_{name}": probs[:, i].double().numpy() for i, name in enumerate(names)}
    return columns
