"""dlx.data.timeseries in-process: windows and their targets, splits cut in time without a shared target, statistics
of the training rows alone, the seasonal naive scale and baseline, and the time column's checks."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlx.data.timeseries import load_timeseries, naive_mase, split_origins
from dlx.errors import DlxError


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "s.csv") -> str:
    if name.endswith(".parquet"):
        frame.to_parquet(tmp_path / name, index=False)
    else:
        frame.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


@pytest.mark.parametrize("window,horizon,stride", [(5, 2, 3), (1, 1, 1), (7, 4, 2), (3, 5, 1)])
def test_windows_hold_the_rows_before_each_origin_and_targets_the_rows_after(tmp_path: Path, window: int,
                                                                             horizon: int, stride: int) -> None:
    rows = 61
    frame = pd.DataFrame({"a": np.arange(rows) * 1.0, "b": np.arange(rows) ** 1.5})
    data = load_timeseries(write(tmp_path, frame), ["a", "b"], target="b", window=window, horizon=horizon,
                           stride=stride, val_fraction=0.2, test_fraction=0.25)
    record = data.preprocessing
    assert record is not None
    z = (frame.to_numpy() - np.array(record["mean"])) / np.array(record["std"])
    used: dict[str, set[int]] = {}
    for name in ("train", "val", "test"):
        split = data.split(name)
        start, end = record["splits"][name]
        origins = split_origins((start, end), window, horizon, stride)
        assert len(split) == len(origins) > 0
        for i, origin in enumerate(origins):
            np.testing.assert_allclose(split.x[i].numpy(), z[origin - window:origin], rtol=1e-6)
            np.testing.assert_allclose(split.y[i].numpy(), z[origin:origin + horizon, 1], rtol=1e-6)
        used[name] = {int(o) + k for o in origins for k in range(horizon)}
        assert min(used[name]) >= start and max(used[name]) < end  # every target inside the split's rows
    assert not (used["train"] & used["val"]) and not (used["val"] & used["test"])
    assert record["splits"] == {"train": [0, 34], "val": [34, 46], "test": [46, 61]}  # 15 test rows, 12 val rows


def test_statistics_and_scale_come_from_the_training_rows_alone(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    values = generator.normal(10, 3, 100)
    first = load_timeseries(write(tmp_path, pd.DataFrame({"y": values})), "y", window=4, season=2)
    values[75:] += 1000  # validation and test rows only (the last 20 % and the 10 % before: rows 70 on)
    second = load_timeseries(write(tmp_path, pd.DataFrame({"y": values}), "other.csv"), "y", window=4, season=2)
    a, b = first.preprocessing, second.preprocessing
    assert a is not None and b is not None
    assert a["mean"] == b["mean"] and a["std"] == b["std"] and a["scale"] == b["scale"]
    assert a["mean"][0] == pytest.approx(values[:70].mean())
    assert a["scale"][0] == pytest.approx(np.abs(values[2:70] - values[:68]).mean())


def test_the_seasonal_naive_forecast_repeats_the_last_season() -> None:
    series = np.array([[1.0], [2.0], [3.0], [10.0], [20.0], [30.0], [11.0], [21.0], [31.0]])
    # Origin 6, three steps, season 3: forecast rows 3, 4, 5 (10, 20, 30) for 11, 21, 31: errors of 1.
    assert naive_mase(series, np.array([6]), 3, 3, [2.0]) == pytest.approx(0.5)
    # Season 1 (naive): the last value, 30, for every step: errors 19, 9, 1.
    assert naive_mase(series, np.array([6]), 3, 1, [1.0]) == pytest.approx((19 + 9 + 1) / 3)


def test_the_time_column_gives_the_step_and_names_gaps(tmp_path: Path) -> None:
    years = pd.DataFrame({"year": np.arange(1900, 1960), "y": np.sin(np.arange(60))})
    data = load_timeseries(write(tmp_path, years), "y", time_column="year", window=5)
    assert data.preprocessing is not None and data.preprocessing["time_step"] == 1.0
    with pytest.raises(DlxError, match=r"has gaps: the series steps by 1, but line 12 follows the row above"):
        load_timeseries(write(tmp_path, years.drop(index=10)), "y", time_column="year", window=5)
    days = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=40, freq="D"), "y": np.arange(40.0) % 7 + np.arange(40) / 10})
    data = load_timeseries(write(tmp_path, days, "days.parquet"), "y", time_column="day", window=5, season=7)
    assert data.preprocessing is not None and data.preprocessing["time_step"] == "D"
    with pytest.raises(DlxError, match=r"'soon' at row 4, which is not a date"):
        load_timeseries(write(tmp_path, days.astype({"day": str}).assign(
            day=lambda f: f["day"].where(f.index != 3, "soon")), "odd.parquet"), "y", time_column="day", window=5)


def test_a_constant_series_cannot_be_scaled(tmp_path: Path) -> None:
    with pytest.raises(DlxError, match="repeat exactly every dataset.season=1 row"):
        load_timeseries(write(tmp_path, pd.DataFrame({"y": np.ones(50)})), "y", window=4)
