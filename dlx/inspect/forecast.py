"""A forecaster (dataset=timeseries) on new data: `dlx predict CKPT series.csv` forecasts the next `horizon` values
after the end of the file, and `dlx export` writes the model as it takes a window in the series' own units.

The file is read as the training file was (its separator and missing-value text, from the checkpoint's record):
its last `window` rows of the training columns, which must be numbers without gaps, are standardised with the
training statistics the checkpoint records, and the model's forecast is given back in the series' units. With a
time column (recorded at training), those rows must step by the training series' step (a monthly series by
month), and each forecast is dated: the last time plus 1, 2, ... steps. The training file is not needed.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dlx.errors import DlxError, did_you_mean
from dlx.inspect.predicted import check_output

if TYPE_CHECKING:
    import pandas as pd

    from dlx.inspect.rebuild import Rebuilt


@dataclass
class Forecast:
    series: Path  # the file read
    follows: str  # where its series ends: "line 301 (2024-12-01)"
    time_name: str  # the first column of the forecast: the time column's name, or "step"
    targets: list[str]
    rows: list[dict[str, Any]]  # one per step ahead: {time_name: when, target: value, ...}
    out: Path | None  # the file written, with --out


def forecast_series(rebuilt: "Rebuilt", data: dict[str, Any], inputs: list[Path], out: Path | None) -> Forecast:
    """The next `horizon` values of the forecast columns after the end of the one file named."""
    from dlx.data.table import read_table, row_in_file, write_table
    from dlx.data.timeseries import series_values, standardised

    record = data["preprocessing"]
    checkpoint = rebuilt.path
    if len(inputs) != 1 or not inputs[0].is_file():
        given = ", ".join(map(str, inputs))
        raise DlxError(f"{checkpoint} forecasts a time series ({record['source']}): give dlx predict one CSV, TSV or "
                       f"Parquet file of the series (given: {given}" + (", which is not a file" if len(inputs) == 1
                                                                         else "") + "); it forecasts what follows.")
    series = inputs[0]
    if out is not None:
        check_output(series, out, "the series")
    frame = read_table(series, record["sep"], record["na_values"])
    absent = [name for name in record["columns"] if name not in frame.columns]
    if absent:
        raise DlxError(f"{series} lacks the column(s) {', '.join(absent)}, which the model reads (it was trained on "
                       f"{record['source']}).{did_you_mean(absent[0], frame.columns)} Its columns are: "
                       f"{', '.join(map(str, frame.columns))}.")
    window = record["window"]
    if len(frame) < window:
        raise DlxError(f"{series} holds {len(frame)} row(s), fewer than the {window} the model reads before it "
                       f"forecasts (dataset.window={window}). Give the series up to now: its last {window} rows are "
                       "read.")
    tail = frame.iloc[-window:]
    values = series_values(tail, series, record["columns"])
    x = torch.from_numpy(standardised(values, record["mean"], record["std"]))[None]  # (1, window, columns)
    with torch.inference_mode():
        output = rebuilt.model(x).double().numpy()
    forecast = in_series_units(output, record, checkpoint)[0]  # (horizon, targets)
    time_name, when = forecast_times(tail, record, series)
    last = len(frame) - 1
    follows = row_in_file(series, int(frame.index[last]))
    if record["time_column"] in frame.columns:
        follows += f" ({frame[record['time_column']].iloc[last]})"
    rows = [{time_name: when[step], **{name: float(forecast[step, j]) for j, name in enumerate(record["targets"])}}
            for step in range(record["horizon"])]
    if out is not None:
        import pandas as pd

        write_table(pd.DataFrame(rows), out)
    return Forecast(series, follows, time_name, list(record["targets"]), rows, out)


def in_series_units(output: np.ndarray, record: dict[str, Any], checkpoint: Path) -> np.ndarray:
    """The model's outputs (N, horizon * targets), standardised, as (N, horizon, targets) in the series' units."""
    from dlx.data.timeseries import target_statistics

    mean, std = target_statistics(record)
    if output.shape[1] != record["horizon"] * len(mean):
        raise DlxError(f"{checkpoint} is damaged or was altered: its model gives {output.shape[1]} outputs, not "
                       f"{record['horizon']} step(s) of {len(mean)} target(s). Use another checkpoint.")
    return output.reshape(len(output), record["horizon"], len(mean)) * np.asarray(std) + np.asarray(mean)


def forecast_times(tail: "pd.DataFrame", record: dict[str, Any], series: Path) -> tuple[str, list[Any]]:
    """The forecast's first column: ("step", [1, 2, ...]) without a time column; with one, its name and the
    times that follow the file's last, at the training series' step. The window's own times must step so too."""
    import pandas as pd

    from dlx.data.table import row_in_file
    from dlx.data.timeseries import time_text, whole

    horizon, name = record["horizon"], record["time_column"]
    if name is None or name not in tail.columns:
        return "step", list(range(1, horizon + 1))
    step = record["time_step"]
    if record["time_kind"] == "number":
        times = pd.to_numeric(tail[name], errors="coerce").to_numpy(np.float64)
        expected = times[0] + step * np.arange(len(times))
        wrong = ~np.isclose(times, expected, rtol=1e-9, atol=1e-9 * abs(step))
        future: list[Any] = [whole(times[-1] + step * k) for k in range(1, horizon + 1)]
    else:
        from dlx.data.timeseries import parsed_times

        parsed = parsed_times(tail[name], name, series)
        expected = pd.date_range(parsed[0], periods=len(parsed), freq=step)
        wrong = np.asarray(parsed != expected)
        future = [time_text(t) for t in pd.date_range(parsed[-1], periods=horizon + 1, freq=step)[1:]]
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise DlxError(f'The last {len(tail)} rows of {series}, which the forecast reads, do not step by the training '
                       f'series\' step ({step}) in the time column "{name}": {row_in_file(series, int(tail.index[first]))} '
                       f"says {tail[name].iloc[first]}, where {time_text(expected[first])} was due. Fill in the missing rows (or "
                       "remove the extra ones) so that the series ends evenly spaced.")
    return name, future


def print_forecast(forecast: Forecast, checkpoint: Path, json_output: bool) -> None:
    if json_output:
        print(json.dumps({"checkpoint": str(checkpoint), "series": str(forecast.series), "follows": forecast.follows,
                          "out": None if forecast.out is None else str(forecast.out), "forecast": forecast.rows}))
        return
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import wide_console

    table = Table(title=f"{len(forecast.rows)} step(s) after {forecast.series}, {escape(forecast.follows)}: "
                        f"{checkpoint}", title_justify="left")
    for column in (forecast.time_name, *forecast.targets):
        table.add_column(escape(column), justify="right")
    for row in forecast.rows:
        table.add_row(escape(str(row[forecast.time_name])), *(f"{row[name]:.6g}" for name in forecast.targets))
    wide_console().print(table)
    if forecast.out is not None:
        print(f"{forecast.out}: the forecast, {len(forecast.rows)} row(s)")


# --- export ---------------------------------------------------------------------------------------------------

class SeriesForecaster(nn.Module):
    """A forecaster as it is exported: windows (B, window, columns) in the series' own units in, forecasts
    (B, horizon, targets) in the same units out; the training standardisation inside the graph."""

    mean: torch.Tensor
    std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, model: nn.Module, record: dict[str, Any]) -> None:
        from dlx.data.timeseries import target_statistics

        super().__init__()
        self.model = model
        self.horizon, self.targets = record["horizon"], len(record["targets"])
        target_mean, target_std = target_statistics(record)
        for name, values in (("mean", record["mean"]), ("std", record["std"]), ("target_mean", target_mean),
                             ("target_std", target_std)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forecast = self.model((x - self.mean) / self.std).unflatten(1, (self.horizon, self.targets))
        return forecast * self.target_std + self.target_mean  # (B, horizon, targets)


def describe_series(model: nn.Module, record: dict[str, Any], metadata: dict[str, str]
                    ) -> tuple[Callable[[int], torch.Tensor], str, list[Any], str, dict[str, str]]:
    """dlx.inspect.export.describe() for a forecaster: windows drawn around the training statistics."""
    window, columns = record["window"], len(record["columns"])
    every = f", one row every {record['time_step']}" if record.get("time_step") is not None else ""
    metadata["dlx.input"] = (f"windows of the series, shape (batch, {window}, {columns}): its last {window} rows"
                             f"{every}, oldest first, of the columns {', '.join(record['columns'])}, in their own "
                             "units (the model standardises them as training did)")
    metadata["dlx.output"] = (f"forecasts, shape (batch, {record['horizon']}, {len(record['targets'])}): the next "
                              f"{record['horizon']} value(s) of {', '.join(record['targets'])} after the window, in "
                              "their own units")
    metadata["dlx.preprocessing"] = json.dumps(record)
    mean, std = torch.tensor(record["mean"]), torch.tensor(record["std"])

    def example(n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(n)
        return torch.randn((n, window, columns), generator=generator) * std + mean

    return example, "series", ["batch", window, columns], "forecast", metadata
