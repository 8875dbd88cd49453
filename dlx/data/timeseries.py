"""`dataset=timeseries dataset.path=FILE dataset.column=C`: the user's own time series (CSV, TSV or Parquet, one row
per time step), forecast from sliding windows.

A sample is a window of `window` consecutive rows of the columns read (`column`, one or several), shape
(window, columns), and its target the next `horizon` values of the forecast columns (`target`, by default the
first column read), flattened step by step: (horizon * targets,), step 1's targets first. A window's forecast
origin is the row of its first target; consecutive windows' origins are `stride` rows apart.

The splits are cut in time, with no forecast target in two splits: of the series' T rows, the last
round(test_fraction * T) are the test split's targets, the round(val_fraction * T) rows before them the
validation split's, and the rows before those the training split's. A window belongs to the split that holds
all of its targets (its inputs may reach back into an earlier split's rows: that is history a forecaster has
when it forecasts). Each split's origins run from its first row (or row `window`, the first that has a full
window before it) to the last that leaves room for `horizon` targets, `stride` apart.

Each column is standardised with the mean and standard deviation of the training rows (those before the
validation rows); the statistics, the columns, the window and the time step are recorded as plain values in
`DataSplits.preprocessing`, which every checkpoint keeps, so that `dlx eval`, `dlx predict` and `dlx export`
need no training file. MASE divides a forecast's mean absolute error by `scale`, the in-sample mean absolute
error of the seasonal naive forecast (y[t] predicted by y[t - season]) over the training rows, per target.

A series must be whole: a non-numeric value, an empty cell, and (with `time_column`) rows out of order or a gap
in the times are each refused with the rows named, rather than filled in silently.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.api import types

from dlx.data import DataSplits, InMemory
from dlx.data.table import check_not_bytes, missing_columns, read_table, row_in_file
from dlx.errors import DlxError

logger = logging.getLogger("dlx")

SPLITS = ("train", "val", "test")
NAMED_ROWS = 5  # rows a message names at most


@dataclass(frozen=True)
class TimeAxis:
    """What the time column says: "datetime" (`step` a pandas frequency, e.g. "MS") or "number" (`step` the
    difference between consecutive rows), and the last time of the series."""

    kind: str
    step: str | float
    last: Any


def load_timeseries(path: str, column: str | list[str], target: str | list[str] | None = None,
                    time_column: str | None = None, window: int = 24, horizon: int = 1, stride: int = 1,
                    season: int = 1, val_fraction: float = 0.1, test_fraction: float = 0.2, sep: str | None = None,
                    na_values: list[str] | None = None) -> DataSplits:
    """The series at `path` as windows split in time; see the module's docstring and conf/dataset/timeseries.yaml
    for each argument."""
    file = Path(path).expanduser()
    columns, targets = chosen_columns(column, target, time_column)
    check_sizes(window, horizon, stride, season, val_fraction, test_fraction)
    frame = read_table(file, sep, na_values)
    missing_columns(file, frame, columns, "dataset.column")
    if time_column is not None:
        missing_columns(file, frame, [time_column], "dataset.time_column")
    values = series_values(frame, file, columns)
    check_length(len(values), window, horizon, file)
    axis = time_axis(frame[time_column], time_column, file) if time_column is not None else None
    bounds = split_bounds(len(values), window, horizon, val_fraction, test_fraction, file)
    train_rows = values[:bounds["val"][0]]
    mean, std = column_statistics(train_rows)
    target_index = [columns.index(name) for name in targets]
    scale = seasonal_naive_scale(train_rows[:, target_index], season, targets, file)
    record: dict[str, Any] = {
        "source": file.name, "columns": columns, "targets": targets, "mean": mean, "std": std, "scale": scale,
        "window": window, "horizon": horizon, "stride": stride, "season": season, "time_column": time_column,
        "time_kind": axis.kind if axis else None, "time_step": axis.step if axis else None, "sep": sep,
        "na_values": list(na_values or []), "rows": len(values),
        "splits": {name: list(rows) for name, rows in bounds.items()},
    }
    origins = {name: split_origins(bounds[name], window, horizon, stride) for name in SPLITS}
    record["seasonal_naive_mase"] = {name: naive_mase(values[:, target_index], origins[name], horizon, season, scale)
                                     for name in ("val", "test") if len(origins[name])}
    splits = window_splits(standardised(values, mean, std), target_index, origins, window, horizon, stride)
    log_series(file, record, origins, axis)
    return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task="forecasting",
                      preprocessing=record)


# --- the config's values -----------------------------------------------------------------------------------------

def chosen_columns(column: str | list[str], target: str | list[str] | None,
                   time_column: str | None) -> tuple[list[str], list[str]]:
    """(the columns read, the columns forecast): `target` defaults to the first column read, and must be read."""
    columns = [column] if isinstance(column, str) else list(column)
    targets = [columns[0]] if target is None and columns else [target] if isinstance(target, str) else list(target or [])
    if not columns:
        raise DlxError("dataset.column=[] names no column: name the series to forecast, e.g. dataset.column=sales, "
                       "or several for a multivariate input, e.g. dataset.column=[sales,price].")
    if not targets:
        raise DlxError("dataset.target=[] names no column to forecast: name one of dataset.column (by default the "
                       "first is forecast).")
    for key, names in (("dataset.column", columns), ("dataset.target", targets)):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DlxError(f"{key} names {', '.join(repeated)} more than once. Name each column once.")
    outside = [name for name in targets if name not in columns]
    if outside:
        raise DlxError(f'dataset.target names "{outside[0]}", which is not among the columns read, dataset.column='
                       f"[{','.join(columns)}]: a forecaster forecasts from the series' own past. Add it to "
                       "dataset.column, or forecast one of those.")
    if time_column is not None and time_column in columns:
        raise DlxError(f'dataset.time_column "{time_column}" is also in dataset.column: the times say where each row '
                       "is, they are not a series to forecast from. Leave it out of dataset.column.")
    return columns, targets


def check_sizes(window: int, horizon: int, stride: int, season: int, val_fraction: float,
                test_fraction: float) -> None:
    for key, count in (("window", window), ("horizon", horizon), ("stride", stride), ("season", season)):
        if count < 1:
            raise DlxError(f"dataset.{key}={count}: it counts rows (time steps), so give a whole number of 1 or "
                           "more.")
    for key, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise DlxError(f"dataset.{key}={fraction} is not a fraction of the series' rows: give a number from 0 up "
                           "to (not including) 1.")
    if val_fraction + test_fraction >= 1:
        raise DlxError(f"dataset.val_fraction={val_fraction:g} and dataset.test_fraction={test_fraction:g} leave "
                       "no rows to train on: together they must be under 1 (e.g. 0.1 and 0.2).")


# --- reading the series ------------------------------------------------------------------------------------------

def series_values(frame: pd.DataFrame, path: Path, columns: list[str]) -> np.ndarray:
    """(T, columns) float64: every cell a finite number, or a DlxError naming the rows that are not."""
    block = {}
    for name in columns:
        column = frame[name]
        check_not_bytes(column, name, path)
        if types.is_datetime64_any_dtype(column):
            raise DlxError(f'Column "{name}" of {path} holds dates or times, not the numbers of a series. Name it '
                           "in dataset.time_column, and columns of numbers in dataset.column.")
        if types.is_bool_dtype(column):
            raise DlxError(f'Column "{name}" of {path} holds true/false values, not the numbers of a series. Name '
                           "columns of numbers in dataset.column (write the flag as 0 and 1 to read it as one).")
        parsed = column if types.is_numeric_dtype(column) else pd.to_numeric(column, errors="coerce")
        text = (column.notna() & parsed.isna()).to_numpy()
        if text.any():
            raise DlxError(f'Column "{name}" of {path} holds {quoted(column, text)} at {rows_named(path, frame, text)}'
                           f"{count_of(text)}, where a series needs numbers. Correct the value (a stray letter: 1O "
                           "for 10), or add the text to dataset.na_values if it means missing (then fill the gap).")
        block[name] = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.stack([block[name] for name in columns], axis=1)
    empty = np.isnan(values).any(axis=1)
    if empty.any():
        where = ", ".join(columns[j] for j in np.flatnonzero(np.isnan(values).any(axis=0)))
        raise DlxError(f"{path} has empty (missing) values in the series at {rows_named(path, frame, empty)}"
                       f"{count_of(empty)}, in column(s) {where}. A window must hold a value at every step: fill "
                       "them in (e.g. with pandas: frame.interpolate(), then to_csv), or cut the file to a stretch "
                       "without gaps.")
    infinite = ~np.isfinite(values).all(axis=1)
    if infinite.any():
        raise DlxError(f"{path} holds an infinite value at {rows_named(path, frame, infinite)}{count_of(infinite)}, "
                       "which cannot be learnt. Correct those cells.")
    return values


def rows_named(path: Path, frame: pd.DataFrame, mask: np.ndarray) -> str:
    """"line 5", "lines 5, 9, 12 ..." of a text file (row 5 ... of a Parquet file): the first NAMED_ROWS rows of
    the mask."""
    positions = np.flatnonzero(mask)
    named = [row_in_file(path, int(frame.index[p])) for p in positions[:NAMED_ROWS]]
    if len(named) > 1:
        word = named[0].split()[0]
        named = [named[0].replace(word, f"{word}s", 1), *(n.split()[1] for n in named[1:])]
    return ", ".join(named) + (" ..." if len(positions) > NAMED_ROWS else "")


def count_of(mask: np.ndarray) -> str:
    count = int(mask.sum())
    return f" ({count:,} rows in all)" if count > 1 else ""


def quoted(column: pd.Series, mask: np.ndarray) -> str:
    value = column[mask].iloc[0]
    return repr(value.item() if isinstance(value, np.generic) else value)


def check_length(rows: int, window: int, horizon: int, path: Path) -> None:
    if window + horizon > rows:
        raise DlxError(f"dataset.window={window} and dataset.horizon={horizon} need {window + horizon} rows for a "
                       f"single window and its forecast, but {path} holds a series of {rows} rows. Lower "
                       "dataset.window (or the horizon), or give a longer series.")


def time_axis(column: pd.Series, name: str, path: Path) -> TimeAxis:
    """The time column's kind and step; a DlxError naming the rows of a time that is missing or not a time,
    of rows out of order, or of a gap (a step longer than the series' own)."""
    frame = column.to_frame()
    if types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
        times = column.to_numpy(dtype=np.float64, na_value=np.nan)
        kind = "number"
    else:
        times = parsed_times(column, name, path)
        kind = "datetime"
    empty = np.isnan(times) if kind == "number" else pd.isna(times)
    if empty.any():
        raise DlxError(f'The time column "{name}" of {path} is empty at {rows_named(path, frame, empty)}'
                       f"{count_of(empty)}. Fill in those times, or leave out dataset.time_column to read the rows "
                       "in the order of the file.")
    numbers = times if kind == "number" else times.as_unit("ns").asi8.astype(np.float64)  # nanoseconds
    steps = np.diff(numbers)
    backwards = np.concatenate([[False], steps <= 0])
    if backwards.any():
        first = int(np.flatnonzero(backwards)[0])
        same = steps[first - 1] == 0
        raise DlxError(f'The time column "{name}" of {path} is not in order: {row_in_file(path, first)} '
                       f"({show_time(times, first)}) {'repeats' if same else 'comes before'} the time of the row "
                       f"above it ({show_time(times, first - 1)}){count_of(backwards)}. Sort the file by time and "
                       "keep one row per time (pandas: frame.sort_values(...).drop_duplicates(...)).")
    if kind == "number":
        return numeric_axis(times, steps, name, path, frame)
    return calendar_axis(times, steps, name, path, frame)


def parsed_times(column: pd.Series, name: str, path: Path) -> pd.DatetimeIndex:
    if types.is_datetime64_any_dtype(column):
        return pd.DatetimeIndex(column)
    with warnings.catch_warnings():  # "could not infer format": each cell is then parsed on its own
        warnings.simplefilter("ignore")
        times = pd.to_datetime(column.astype("string"), errors="coerce")
    wrong = (column.notna() & times.isna()).to_numpy()
    if wrong.any():
        raise DlxError(f'The time column "{name}" of {path} holds {quoted(column, wrong)} at '
                       f"{rows_named(path, column.to_frame(), wrong)}{count_of(wrong)}, which is not a date or time. "
                       "Write times as ISO dates (2024-01-31, 2024-01-31 13:00) or as numbers (a year, a step "
                       "count).")
    return pd.DatetimeIndex(times)


def show_time(times: Any, position: int) -> str:
    return time_text(times[position])


def whole(value: float) -> float | int:
    """A time as a number, a whole one (a year) without its ".0"."""
    return int(value) if float(value).is_integer() else float(value)


def time_text(time: Any) -> str:
    """A time as a message or a forecast shows it: a number as written (1999, 0.5), a date in ISO form without
    the time of day when it is midnight (2024-01-31, 2024-01-31T13:00:00)."""
    if isinstance(time, (int, float, np.number)):
        return f"{whole(float(time))}"
    return time.date().isoformat() if time == time.normalize() else time.isoformat()


def numeric_axis(times: np.ndarray, steps: np.ndarray, name: str, path: Path, frame: pd.DataFrame) -> TimeAxis:
    step = float(np.median(steps)) if len(steps) else 1.0
    odd = np.concatenate([[False], ~np.isclose(steps, step, rtol=1e-6, atol=0)])
    if odd.any():
        raise gap_error(name, path, frame, odd, times, f"{step:g}", f"np.arange(first, last + {step:g}, {step:g})")
    return TimeAxis("number", step, float(times[-1]))


def calendar_axis(times: pd.DatetimeIndex, steps: np.ndarray, name: str, path: Path,
                  frame: pd.DataFrame) -> TimeAxis:
    """Dates: pandas' inferred frequency (monthly "MS", weekly "W-SAT", ...), which knows months of 28 to 31 days;
    without one, the steps far from the typical one are the gaps."""
    with warnings.catch_warnings():  # pandas 3 announces an offset in place of the string: both read as one
        warnings.simplefilter("ignore")
        frequency = pd.infer_freq(times) if len(times) >= 3 else None
    if frequency is not None:
        return TimeAxis("datetime", pd.tseries.frequencies.to_offset(frequency).freqstr, times[-1])
    typical = float(np.median(steps))
    # A missing row at least doubles a step; months (28 to 31 days) and hours across a clock change stay near it.
    odd = np.concatenate([[False], (steps > 1.5 * typical) | (steps < 0.5 * typical)])
    if not odd.any():  # uneven without an outlier (business days with holidays), or too few rows to tell
        odd = np.concatenate([[False], steps != steps[0]])
    step = pd.Timedelta(typical, unit="ns")
    if not odd.any():  # evenly spaced, but too short for pandas to name the frequency
        return TimeAxis("datetime", pd.tseries.frequencies.to_offset(step).freqstr, times[-1])
    raise gap_error(name, path, frame, odd, times, f"about {step}", "pd.date_range(first, last, freq=...)")


def gap_error(name: str, path: Path, frame: pd.DataFrame, odd: np.ndarray, times: Any, step: str,
              grid: str) -> DlxError:
    first = int(np.flatnonzero(odd)[0])
    return DlxError(
        f'The time column "{name}" of {path} has gaps: the series steps by {step}, but '
        f"{rows_named(path, frame, odd)} follow{'s' * bool(odd.sum() == 1)} the row above by another step (the first: "
        f"{show_time(times, first - 1)} to {show_time(times, first)}){count_of(odd)}. A forecaster reads "
        "consecutive rows as evenly spaced. Fill in the missing times (pandas: frame.set_index(time).reindex(grid)"
        f".interpolate(), the grid from {grid}), or leave out dataset.time_column to read the rows in order as "
        "they are.")


# --- splits and windows -------------------------------------------------------------------------------------------

def split_bounds(rows: int, window: int, horizon: int, val_fraction: float, test_fraction: float,
                 path: Path) -> dict[str, tuple[int, int]]:
    """[start, end) of the rows whose values each split forecasts: test the last rows, validation those before."""
    test_rows, val_rows = round(rows * test_fraction), round(rows * val_fraction)
    val_start = rows - test_rows - val_rows
    bounds = {"train": (0, val_start), "val": (val_start, rows - test_rows), "test": (rows - test_rows, rows)}
    if val_start - window < horizon:
        raise DlxError(f"{path} leaves no training window: of its {rows} rows, dataset.test_fraction="
                       f"{test_fraction:g} and dataset.val_fraction={val_fraction:g} hold out the last "
                       f"{test_rows + val_rows}, and the {val_start} before them do not fit one window of "
                       f"{window} rows and its {horizon} target(s). Lower the fractions or dataset.window, or give a "
                       "longer series.")
    for name, fraction, held in (("val", val_fraction, val_rows), ("test", test_fraction, test_rows)):
        if fraction > 0 and held < horizon:
            raise DlxError(f"dataset.{name}_fraction={fraction:g} of {path}'s {rows} rows is {held} row(s), fewer "
                           f"than dataset.horizon={horizon}: no {name} window fits. Raise dataset.{name}_fraction, "
                           f"or set it to 0 for no {name} split.")
    return bounds


def split_origins(bounds: tuple[int, int], window: int, horizon: int, stride: int) -> np.ndarray:
    """The forecast origins (rows of the first target) of a split's windows: every target in [start, end), a full
    window before each."""
    start, end = bounds
    return np.arange(max(start, window), end - horizon + 1, stride, dtype=np.int64)


def column_statistics(rows: np.ndarray) -> tuple[list[float], list[float]]:
    """Each column's mean and standard deviation over the training rows (a constant column's std is 1)."""
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    return [float(m) for m in mean], [float(s) if s > 1e-12 else 1.0 for s in std]


def standardised(values: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """(values - mean) / std per column, in float64, then float32: what the model reads."""
    return ((values - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


def seasonal_naive_scale(train: np.ndarray, season: int, targets: list[str], path: Path) -> list[float]:
    """Per target, the mean |y[t] - y[t - season]| over the training rows: MASE's denominator."""
    if len(train) <= season:
        raise DlxError(f"dataset.season={season} is not shorter than the {len(train)} training rows of {path}: the "
                       "seasonal naive forecast that MASE is scaled by needs a season of history. Lower "
                       "dataset.season (1 scales by the naive forecast, y[t] = y[t-1]).")
    scale = np.abs(train[season:] - train[:-season]).mean(axis=0)
    flat = [name for name, value in zip(targets, scale) if value <= 1e-12]
    if flat:
        raise DlxError(f'The training rows of column "{flat[0]}" of {path} repeat exactly every dataset.season='
                       f"{season} row(s) (a constant series, for season 1): there is nothing to forecast, and MASE, "
                       "which divides by the seasonal naive forecast's error, is undefined. Choose another column "
                       "or season.")
    return [float(value) for value in scale]


def naive_mase(targets: np.ndarray, origins: np.ndarray, horizon: int, season: int, scale: list[float]) -> float:
    """MASE of the seasonal naive forecast on these windows: each step's forecast is the last value observed
    before the origin in the same season, y[o + k - season * (k // season + 1)]."""
    steps = np.arange(horizon)
    lags = season * (steps // season + 1)
    actual = targets[origins[:, None] + steps]  # (N, horizon, targets)
    forecast = targets[origins[:, None] + steps - lags]
    return float((np.abs(actual - forecast) / np.asarray(scale)).mean())


def window_splits(series: np.ndarray, target_index: list[int], origins: dict[str, np.ndarray], window: int,
                  horizon: int, stride: int) -> dict[str, InMemory]:
    """InMemory splits of windows (N, window, columns) and their targets (N, horizon * targets). The windows are
    views of the one standardised series (torch's unfold), not copies: a batch is copied when it is read."""
    values = torch.from_numpy(series)
    windows = values.unfold(0, window, 1).transpose(1, 2)  # (T - window + 1, window, columns): windows[i] = rows i..
    futures = values[:, target_index].unfold(0, horizon, 1).transpose(1, 2)  # (T - horizon + 1, horizon, targets)
    splits = {}
    for name, starts in origins.items():
        if len(starts):
            first, last = int(starts[0]), int(starts[-1])
            x = windows[first - window:last - window + 1:stride]
            y = futures[first:last + 1:stride].reshape(len(starts), -1)  # step 1's targets, then step 2's ...
        else:
            x, y = windows[:0], futures[:0].reshape(0, horizon * len(target_index))
        splits[name] = InMemory(x, y.contiguous())
    return splits


def log_series(path: Path, record: dict[str, Any], origins: dict[str, np.ndarray], axis: TimeAxis | None) -> None:
    counts = ", ".join(f"{len(origins[name]):,} {name}" for name in SPLITS)
    rows = ", ".join(f"{name} {start:,}-{end - 1:,}" for name, (start, end) in record["splits"].items() if end > start)
    every = f", time step {axis.step}" if axis is not None else ""
    logger.info(f"Series {path}: {record['rows']:,} rows{every}; columns {', '.join(record['columns'])}, forecast "
                f"{', '.join(record['targets'])}; windows of {record['window']} rows, {record['horizon']} step(s) "
                f"ahead, every {record['stride']} row(s): {counts} (targets in rows {rows}, counted from 0)")
    naive = record["seasonal_naive_mase"]
    if naive:
        logger.info(f"Seasonal naive forecast (season {record['season']}), the bar to beat: MASE "
                    + ", ".join(f"{name} {value:.4f}" for name, value in naive.items()))


# --- checkpoints -----------------------------------------------------------------------------------------------

def well_formed_series(record: Any, input_shape: list[int]) -> bool:
    """The record holds what load_timeseries writes (a checkpoint someone sent may not), consistently with the
    model's input shape (window, columns)."""
    def numbers(value: Any, length: int) -> bool:
        return (isinstance(value, list) and len(value) == length
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value))

    def strings(value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)

    if not (isinstance(record, dict) and strings(record.get("columns")) and strings(record.get("targets"))
            and isinstance(record.get("source"), str) and isinstance(record.get("na_values"), list)
            and all(isinstance(record.get(key), int) and record[key] >= 1
                    for key in ("window", "horizon", "stride", "season"))):
        return False
    columns, targets = record["columns"], record["targets"]
    return (set(targets) <= set(columns) and numbers(record.get("mean"), len(columns))
            and numbers(record.get("std"), len(columns)) and all(v > 0 for v in record["std"])
            and numbers(record.get("scale"), len(targets)) and all(v > 0 for v in record["scale"])
            and record.get("time_kind") in (None, "number", "datetime")
            and (record.get("time_column") is None or isinstance(record["time_column"], str))
            and (record.get("sep") is None or isinstance(record["sep"], str))
            and input_shape == [record["window"], len(columns)])


def target_statistics(record: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(mean, std) of each forecast column over the training rows, in the order of record["targets"]."""
    index = [record["columns"].index(name) for name in record["targets"]]
    return [record["mean"][i] for i in index], [record["std"][i] for i in index]
