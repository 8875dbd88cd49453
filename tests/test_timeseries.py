"""dataset=timeseries through the real CLI, on a monthly series written here with pandas (a yearly sine, a trend and
noise): a forecaster beats the seasonal naive forecast (MASE < 1), `dlx eval` reproduces the test numbers, `dlx
predict` forecasts the months after the file's end (what the model gives on the same window, dated), `dlx export`
takes windows in the series' units; every model family forecasts, multirun and DDP work, plot and report read the
run; bad series get their one-paragraph errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dlx, summary_of

from dlx.data.timeseries import load_timeseries
from dlx.inspect.rebuild import rebuild_model

USER_ERROR = 2
ROWS = 400
SEASON = 12


def monthly_series(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """sales: a yearly sine, a slow trend and noise; temperature: the season a quarter ahead, noisier."""
    generator = np.random.default_rng(seed)
    t = np.arange(rows)
    season = np.sin(2 * np.pi * t / SEASON)
    sales = 100 + 20 * season + 0.05 * t + generator.normal(0, 2, rows)
    temperature = 10 + 8 * np.sin(2 * np.pi * (t + 3) / SEASON) + generator.normal(0, 1, rows)
    return pd.DataFrame({"month": pd.date_range("2000-01-01", periods=rows, freq="MS").strftime("%Y-%m-%d"),
                         "sales": sales.round(3), "temperature": temperature.round(2)})


def series_args(path: Path, *more: str) -> list[str]:
    """dlx train on the series at `path`: sales, 3 months ahead from 24, unless `more` says otherwise."""
    defaults = ["dataset.column=sales", "dataset.time_column=month", "dataset.window=24", "dataset.horizon=3",
                f"dataset.season={SEASON}", "trainer.device=cpu"]
    said = {argument.split("=")[0] for argument in more}
    return ["train", "dataset=timeseries", f"dataset.path={path}",
            *(argument for argument in defaults if argument.split("=")[0] not in said), *more]


FFN = ["model=ffn", "model.hidden_sizes=[64]", "optimizer=adam", "optimizer.lr=0.003", "trainer.max_epochs=40"]


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the CSV file, the run folder) of an MLP forecaster of sales, 3 months ahead from 24."""
    folder = tmp_path_factory.mktemp("series")
    monthly_series().to_csv(folder / "sales.csv", index=False)
    dlx(*series_args(folder / "sales.csv", *FFN, "hydra.run.dir=run"), cwd=folder)
    return folder / "sales.csv", folder / "run"


def test_a_forecaster_beats_seasonal_naive_and_eval_reproduces_it(forecaster: tuple[Path, Path]) -> None:
    path, run = forecaster
    summary = summary_of(run)
    assert summary["status"] == "completed" and summary["choices"]["loss"] == "mse"  # chosen by the data set
    assert summary["monitor"] == {"metric": "val/mase", "mode": "min"}
    test = summary["test"]
    assert set(test) == {"loss", "mae", "rmse", "mase"}
    assert test["mase"] < 0.8  # the seasonal naive forecast scores about 1: the model beats it clearly
    assert test["rmse"] >= test["mae"] > 0
    log = (run / "train.log").read_text()
    # 400 months: the last 80 are the test's targets, the 40 before validation's; 3 targets from row 24 on.
    assert "400 rows, time step MS" in log and "254 train, 38 val, 78 test" in log
    assert "targets in rows train 0-279, val 280-319, test 320-399" in log
    naive = json.loads(json.dumps(torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["data"]))
    assert test["mase"] < naive["preprocessing"]["seasonal_naive_mase"]["test"]
    evaluated = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=run).stdout)
    assert evaluated["metrics"] == summary["test"] and evaluated["samples"] == 78


def test_the_metrics_are_in_the_series_units(forecaster: tuple[Path, Path]) -> None:
    """MAE, RMSE and MASE recomputed here from the model's forecasts on the loader's test windows."""
    path, run = forecaster
    data = load_timeseries(str(path), "sales", time_column="month", window=24, horizon=3, season=SEASON)
    record = data.preprocessing
    model = rebuild_model(run / "checkpoints" / "best.ckpt", [], []).model
    with torch.inference_mode():
        forecast = model(data.test.x).double().numpy() * record["std"][0] + record["mean"][0]
    actual = data.test.y.double().numpy() * record["std"][0] + record["mean"][0]
    error = np.abs(forecast - actual)
    test = summary_of(run)["test"]
    assert test["mae"] == pytest.approx(error.mean(), rel=1e-4)
    assert test["rmse"] == pytest.approx(np.sqrt((error ** 2).mean()), rel=1e-4)
    assert test["mase"] == pytest.approx(error.mean() / record["scale"][0], rel=1e-4)
    sales = pd.read_csv(path)["sales"].to_numpy()
    assert record["scale"][0] == pytest.approx(np.abs(sales[12:280] - sales[:268]).mean())  # the training rows


@pytest.mark.slow
def test_predict_forecasts_the_months_after_the_file(forecaster: tuple[Path, Path], tmp_path: Path) -> None:
    path, run = forecaster
    checkpoint = run / "checkpoints" / "best.ckpt"
    frame = pd.read_csv(path)
    frame.head(360).to_csv(tmp_path / "upto.csv", index=False)  # ends in December 2029
    result = dlx("predict", str(checkpoint), str(tmp_path / "upto.csv"), "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["follows"] == "line 361 (2029-12-01)"
    months = [row["month"] for row in report["forecast"]]
    assert months == ["2030-01-01", "2030-02-01", "2030-03-01"]
    forecast = np.array([row["sales"] for row in report["forecast"]])
    # The same window is the loader's test window of origin 360 (the test origins run from 320).
    data = load_timeseries(str(path), "sales", time_column="month", window=24, horizon=3, season=SEASON)
    record = data.preprocessing
    with torch.inference_mode():
        expected = rebuild_model(checkpoint, [], []).model(data.test.x[40:41]).double().numpy()[0]
    np.testing.assert_allclose(forecast, expected * record["std"][0] + record["mean"][0], rtol=1e-6)
    assert np.abs(forecast - frame["sales"].to_numpy()[360:363]).max() < 10  # the noise is 2; a season is 40

    table = dlx("predict", str(checkpoint), str(tmp_path / "upto.csv"), "--out", str(tmp_path / "next.csv"),
                cwd=tmp_path).stdout
    assert "3 step(s) after" in table and "2030-03-01" in table and "next.csv" in table
    written = pd.read_csv(tmp_path / "next.csv")
    assert list(written.columns) == ["month", "sales"]
    np.testing.assert_allclose(written["sales"], forecast, rtol=1e-9)
    # A series whose last window has a gap: the month named, nothing written.
    frame.head(360).drop(index=350).to_csv(tmp_path / "gap.csv", index=False)
    result = dlx("predict", str(checkpoint), str(tmp_path / "gap.csv"), "--out", str(tmp_path / "gap_out.csv"),
                 cwd=tmp_path, expect=USER_ERROR)
    assert "line 352 says 2029-04-01, where 2029-03-01 was due" in " ".join(result.stderr.split())
    assert not (tmp_path / "gap_out.csv").exists()
    result = dlx("predict", str(checkpoint), str(tmp_path / "upto.csv"), "--out", str(tmp_path / "upto.csv"),
                 cwd=tmp_path, expect=USER_ERROR)
    assert "does not overwrite its input" in result.stderr
    assert pd.read_csv(tmp_path / "upto.csv").equals(frame.head(360))


@pytest.mark.slow
def test_export_takes_windows_in_the_series_units(forecaster: tuple[Path, Path], tmp_path: Path) -> None:
    import onnxruntime

    path, run = forecaster
    checkpoint = run / "checkpoints" / "best.ckpt"
    result = dlx("export", str(checkpoint), "--out", str(tmp_path / "sales.onnx"), cwd=tmp_path)
    assert "windows of the series, shape (batch, 24, 1)" in result.stdout
    assert "forecasts, shape (batch, 3, 1)" in result.stdout
    frame = pd.read_csv(path).head(360)
    window = frame["sales"].to_numpy(np.float32)[-24:].reshape(1, 24, 1)
    session = onnxruntime.InferenceSession(str(tmp_path / "sales.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"series": window})[0]
    frame.to_csv(tmp_path / "upto.csv", index=False)
    predicted = json.loads(dlx("predict", str(checkpoint), str(tmp_path / "upto.csv"), "--json", cwd=tmp_path).stdout)
    np.testing.assert_allclose(exported[0, :, 0], [row["sales"] for row in predicted["forecast"]], rtol=1e-4)


@pytest.mark.parametrize("model", [
    ["model=lstm", "model.hidden_size=32"],
    ["model=gru", "model.hidden_size=32", "dataset.stride=2"],
    ["model=rnn", "model.hidden_size=16", "dataset.horizon=1"],
    ["model=transformer", "model.d_model=16", "model.num_heads=2", "model.num_layers=1", "model.dim_feedforward=32"],
], ids=["lstm", "gru", "rnn", "transformer"])
def test_every_sequence_model_forecasts_two_columns(model: list[str], tmp_path: Path) -> None:
    monthly_series(240).to_csv(tmp_path / "two.csv", index=False)
    dlx(*series_args(tmp_path / "two.csv", "dataset.column=[temperature,sales]", "dataset.target=sales",
                     "dataset.window=12", *model, "trainer.max_epochs=3", "hydra.run.dir=run"), cwd=tmp_path)
    summary = summary_of(tmp_path / "run")
    assert summary["status"] == "completed" and np.isfinite(summary["test"]["mase"])
    data = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)["data"]
    assert data["input_shape"] == [12, 2] and data["preprocessing"]["targets"] == ["sales"]
    forecast = json.loads(dlx("predict", str(tmp_path / "run" / "checkpoints" / "best.ckpt"), str(tmp_path / "two.csv"),
                              "--json", cwd=tmp_path).stdout)["forecast"]
    assert len(forecast) == data["preprocessing"]["horizon"] and set(forecast[0]) == {"month", "sales"}


@pytest.mark.slow
def test_multirun_ddp_plot_and_report(tmp_path: Path) -> None:
    monthly_series(240).to_csv(tmp_path / "s.csv", index=False)
    short = ["model=ffn", "optimizer=adam", "trainer.max_epochs=3", "dataset.window=12"]
    arguments = series_args(tmp_path / "s.csv", *short, "dataset.horizon=1,2", "hydra.sweep.dir=sweep")
    dlx(arguments[0], "-m", *arguments[1:], cwd=tmp_path)
    jobs = sorted((tmp_path / "sweep").glob("[01]/summary.json"))
    assert [json.loads(job.read_text())["status"] for job in jobs] == ["completed", "completed"]

    dlx(*series_args(tmp_path / "s.csv", *short, "trainer.devices=2", "hydra.run.dir=ddp"), cwd=tmp_path, timeout=180)
    summary = summary_of(tmp_path / "ddp")
    first, second = summary["distributed"]["weights_sha256_per_rank"]
    assert first == second
    evaluated = json.loads(dlx("eval", str(tmp_path / "ddp" / "checkpoints" / "best.ckpt"), "--json",
                               cwd=tmp_path).stdout)
    assert evaluated["metrics"] == summary["test"]

    dlx("plot", str(tmp_path / "ddp"), "--out", str(tmp_path / "curves.png"), cwd=tmp_path)
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    dlx("report", str(tmp_path / "ddp"), "--out", str(tmp_path / "report.html"), cwd=tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "test/mase (best checkpoint)" in page and "Forecasts of the test split" in page
    assert page.count('src="data:image/png;base64,') == 2  # the curves, the test forecasts

    listed = dlx("ls", "dataset", cwd=tmp_path).stdout
    assert "timeseries" in listed and "Your own time series" in listed


def write_bad_series(folder: Path) -> None:
    good = monthly_series(120)
    good.to_csv(folder / "good.csv", index=False)
    good.assign(sales=good["sales"].where(~good.index.isin([30, 31, 77]))).to_csv(folder / "holes.csv", index=False)
    good.drop(index=[40, 41, 90]).to_csv(folder / "gaps.csv", index=False)
    good.iloc[[*range(50), 51, 50, *range(52, 120)]].to_csv(folder / "unsorted.csv", index=False)
    typo = good.astype({"sales": str})
    typo.loc[64, "sales"] = "1O3.2"
    typo.to_csv(folder / "typo.csv", index=False)
    (folder / "empty.csv").write_text("month,sales\n")
    good.head(20).to_csv(folder / "short.csv", index=False)


BAD_SERIES = {  # file, overrides -> what the message must say
    "no such column": ("good.csv", ["dataset.column=sale"], 'dataset.column=sale is not a column of {folder}/good.csv. '
                       'Did you mean "sales"?'),
    "target not read": ("good.csv", ["dataset.target=temperature"], 'dataset.target names "temperature", which is '
                        "not among the columns read"),
    "empty cells": ("holes.csv", [], "has empty (missing) values in the series at lines 32, 33, 79 (3 rows in all), "
                    "in column(s) sales"),
    "gaps in time": ("gaps.csv", [], 'The time column "month" of {folder}/gaps.csv has gaps: the series steps by '
                     "about 31 days 00:00:00, but lines 42, 90 follow the row above by another step (the first: "
                     "2003-04-01 to 2003-07-01) (2 rows in all)"),
    "out of order": ("unsorted.csv", [], 'is not in order: line 53 (2004-03-01) comes before the time of the row above '
                     "it (2004-04-01)"),
    "text among numbers": ("typo.csv", [], "Column \"sales\" of {folder}/typo.csv holds '1O3.2' at line 66"),
    "empty file": ("empty.csv", [], "empty.csv is an empty table: it has a header (2 columns) but no rows"),
    "window too long": ("short.csv", ["dataset.window=24"], "need 27 rows for a single window and its forecast, but "
                        "{folder}/short.csv holds a series of 20 rows"),
    "season too long": ("good.csv", ["dataset.season=200"], "dataset.season=200 is not shorter than the 84 training "
                        "rows"),
}


@pytest.fixture(scope="module")
def bad_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad_series")
    write_bad_series(folder)
    return folder


@pytest.mark.parametrize("case", BAD_SERIES)
def test_bad_series_get_one_paragraph_naming_the_rows_and_the_fix(bad_series: Path, case: str) -> None:
    name, overrides, message = BAD_SERIES[case]
    result = dlx(*series_args(bad_series / name, "model=ffn", *overrides, "hydra.run.dir=run"), cwd=bad_series,
                 expect=USER_ERROR)
    assert message.format(folder=bad_series) in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    assert not (bad_series / "run" / "checkpoints").exists()
