"""Forecasting on real series that statsmodels ships inside its package (offline): dlx's forecasters against the
seasonal naive forecast and statsmodels' ARIMA and ETS, on the same test windows, in the same run.

    pip install "dlx[bench]"                       # statsmodels
    python bench/forecast.py                       # every series, dlx's models for seeds 0 1 2, the baselines
    python bench/forecast.py sunspots --seeds 0    # one series, one seed
    python bench/forecast.py --table               # only rebuild docs/results/forecast.md

For each series: the data set is written as a CSV (the only change: CO2's 59 missing weeks are filled by linear
interpolation, since dlx refuses a series with gaps); each dlx model is trained on it through the real CLI, as a
whole timed process (`dlx train dataset=timeseries ...`), and its summary.json kept as
docs/results/forecast_SERIES/MODEL_seed_S.json. The baselines are fitted here, in this process, on every row before
the test rows (training and validation), and forecast the test split's windows from each window's origin with
the fitted parameters and the series up to the origin (statsmodels' `apply`/`smooth` and dynamic prediction):
- seasonal naive: y[t] forecast by the last value of the same season before the origin (season 1: the last value);
- ARIMA(p, d, q), with p <= 3, d <= 1, q <= 2 chosen by AIC;
- ETS (additive error, damped additive trend, additive season when season > 1), the initial states by the
  heuristic of Hyndman et al. (estimating 52 weekly ones by maximum likelihood takes minutes).
MASE divides by the in-sample seasonal naive error over dlx's training rows (the same scale for every method),
so every number is on the same footing; docs/results/forecast_SERIES/baselines.json keeps them with their fit
times. The machine is shared with other work, so wall times are noisy.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT))
from bench.experiments import machine  # noqa: E402
from dlx.data.timeseries import load_timeseries, split_origins  # noqa: E402


@dataclass
class Series:
    load: str  # what the data set is, for the table
    column: str
    time_column: str
    window: int
    horizon: int
    season: int
    models: dict[str, list[str]] = field(default_factory=dict)  # dlx model -> its overrides


def sunspots() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    return pd.DataFrame({"year": data["YEAR"].astype(int), "activity": data["SUNACTIVITY"]})


def co2() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.co2.load_pandas().data["co2"].interpolate()  # 59 missing weeks
    return pd.DataFrame({"week": data.index.strftime("%Y-%m-%d"), "co2": data.to_numpy()})


def elnino() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.elnino.load_pandas().data
    months = pd.date_range(f"{int(data['YEAR'].iloc[0])}-01-01", periods=12 * len(data), freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m-%d"),
                         "temperature": data.drop(columns="YEAR").to_numpy().ravel()})


LOADERS = {"sunspots": sunspots, "co2": co2, "elnino": elnino}
MLP = ["model=ffn", "model.hidden_sizes=[128,128]", "optimizer=adam", "optimizer.lr=0.001", "trainer.batch_size=32"]
LSTM = ["model=lstm", "model.hidden_size=64", "optimizer.lr=0.003", "trainer.batch_size=32"]
SERIES = {
    "sunspots": Series("yearly sunspot numbers, 1700-2008 (309 rows)", "activity", "year", window=24, horizon=4,
                       season=1, models={"ffn": [*MLP, "model.dropout=0.2", "trainer.max_epochs=30"],
                                         "lstm": [*LSTM, "trainer.max_epochs=60"]}),
    "elnino": Series("monthly sea surface temperature (El Niño), 1950-2010 (732 rows)", "temperature", "month",
                     window=36, horizon=6, season=12,
                     models={"ffn": [*MLP, "model.dropout=0.2", "trainer.max_epochs=60"],
                             "lstm": [*LSTM, "trainer.max_epochs=30"]}),
    "co2": Series("weekly CO2 at Mauna Loa, 1958-2001 (2,284 rows)", "co2", "week", window=104, horizon=4, season=52,
                  models={"ffn": [*MLP, "trainer.max_epochs=20"], "lstm": [*LSTM, "trainer.max_epochs=4"]}),
}


def data_overrides(name: str, path: str) -> list[str]:
    spec = SERIES[name]
    return ["dataset=timeseries", f"dataset.path={path}", f"dataset.column={spec.column}",
            f"dataset.time_column={spec.time_column}", f"dataset.window={spec.window}",
            f"dataset.horizon={spec.horizon}", f"dataset.season={spec.season}"]


def command_line(name: str, model: str, seed: int) -> str:
    return " ".join(["dlx", "train", *data_overrides(name, f"{name}.csv"), *SERIES[name].models[model],
                     f"trainer.seed={seed}"])


def train(name: str, model: str, seed: int, folder: Path) -> dict:
    command = [sys.executable, "-m", "dlx", "train", *data_overrides(name, f"{name}.csv"), *SERIES[name].models[model],
               f"trainer.seed={seed}", "trainer.device=cpu", f"hydra.run.dir={model}_{seed}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((folder / f"{model}_{seed}" / "summary.json").read_text())
    return summary | {"command": command_line(name, model, seed), "end_to_end_s": round(elapsed, 1),
                      "machine": machine()}


# --- baselines ---------------------------------------------------------------------------------------------------

def test_windows(name: str, path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(the series, the test origins, dlx's record of the split) exactly as dlx cuts it."""
    spec = SERIES[name]
    data = load_timeseries(str(path), spec.column, time_column=spec.time_column, window=spec.window,
                           horizon=spec.horizon, season=spec.season)
    record = data.preprocessing
    assert record is not None
    origins = split_origins(tuple(record["splits"]["test"]), spec.window, spec.horizon, record["stride"])
    return pd.read_csv(path)[spec.column].to_numpy(np.float64), origins, record


def mase(forecasts: np.ndarray, series: np.ndarray, origins: np.ndarray, horizon: int, scale: float) -> float:
    actual = series[origins[:, None] + np.arange(horizon)]
    return float(np.abs(forecasts - actual).mean() / scale)


def arima(series: np.ndarray, origins: np.ndarray, horizon: int, fit_rows: int) -> tuple[np.ndarray, dict]:
    from statsmodels.tsa.arima.model import ARIMA

    best = None
    for p in range(4):
        for d in range(2):
            for q in range(3):
                if p == q == 0:
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = ARIMA(series[:fit_rows], order=(p, d, q)).fit()
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if best is None or fitted.aic < best.aic:
                    best = fitted
    assert best is not None
    applied = best.apply(series)
    forecasts = np.stack([applied.get_prediction(start=o, end=o + horizon - 1, dynamic=True).predicted_mean
                          for o in origins])
    return forecasts, {"order": list(best.model.order), "aic": float(best.aic)}


def ets(series: np.ndarray, origins: np.ndarray, horizon: int, fit_rows: int, season: int) -> tuple[np.ndarray, dict]:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    options = {"error": "add", "trend": "add", "damped_trend": True, "initialization_method": "heuristic"}
    if season > 1:
        options |= {"seasonal": "add", "seasonal_periods": season}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ETSModel(series[:fit_rows], **options).fit(disp=False)
        smoothed = ETSModel(series, **options).smooth(fitted.params)
        forecasts = np.stack([smoothed.predict(start=o, end=o + horizon - 1, dynamic=0) for o in origins])
    return forecasts, {"spec": {k: v for k, v in options.items() if k != "initialization_method"},
                       "aic": float(fitted.aic)}


def seasonal_naive(series: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    steps = np.arange(horizon)
    return series[origins[:, None] + steps - season * (steps // season + 1)]


def baselines(name: str, path: Path) -> dict:
    spec = SERIES[name]
    series, origins, record = test_windows(name, path)
    scale = record["scale"][0]
    fit_rows = record["splits"]["test"][0]  # the training and validation rows
    results = {"test_windows": len(origins), "scale": scale, "fitted_on_rows": fit_rows}
    naive = seasonal_naive(series, origins, spec.horizon, spec.season)
    results["seasonal_naive"] = {"mase": mase(naive, series, origins, spec.horizon, scale),
                                 "dlx_logged": record["seasonal_naive_mase"]["test"]}
    for method, forecast in (("arima", lambda: arima(series, origins, spec.horizon, fit_rows)),
                             ("ets", lambda: ets(series, origins, spec.horizon, fit_rows, spec.season))):
        started = time.perf_counter()
        forecasts, detail = forecast()
        results[method] = {"mase": mase(forecasts, series, origins, spec.horizon, scale),
                           "seconds": round(time.perf_counter() - started, 1), **detail}
    return results


# --- the table ---------------------------------------------------------------------------------------------------

def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def table() -> str:
    rows = ["| series | horizon, window, season | seasonal naive | ARIMA | ETS | dlx model | dlx MASE, mean ± sd over "
            "seeds | wall time per run | command |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, spec in SERIES.items():
        folder = RESULTS / f"forecast_{name}"
        if not (folder / "baselines.json").exists():
            continue
        base = json.loads((folder / "baselines.json").read_text())
        arima_text = f"{base['arima']['mase']:.3f} ({','.join(map(str, base['arima']['order']))})"
        first = True
        for model in spec.models:
            runs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{model}_seed_*.json"))]
            if not runs:
                continue
            values = [run["test"]["mase"] for run in runs]
            times = [run["end_to_end_s"] for run in runs]
            command = runs[0]["command"].replace(" trainer.seed=0", "")
            lead = (f"| {name}: {spec.load} | {spec.horizon}, {spec.window}, {spec.season} | "
                    f"{base['seasonal_naive']['mase']:.3f} | {arima_text} | {base['ets']['mase']:.3f} |" if first
                    else "| | | | | |")
            rows.append(f"{lead} {model} | {statistics.mean(values):.3f} ± {spread(values):.3f} (n={len(runs)}) | "
                        f"{statistics.mean(times):.0f} s | `{command}` |")
            first = False
    return "\n".join(rows) + "\n"


def write_table() -> str:
    text = table()
    (RESULTS / "forecast.md").write_text(
        "# Forecasting on statsmodels' series\n\nWritten by `python bench/forecast.py`; test-split MASE (lower is "
        "better, below 1 beats the in-sample seasonal naive error), the same test windows for every method. Raw "
        "summaries: forecast_SERIES/MODEL_seed_S.json (dlx, one per run) and forecast_SERIES/baselines.json. "
        f"Machine: {machine()}, shared with other work (wall times are noisy).\n\n" + text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", nargs="*", default=[], help=f"of {', '.join(SERIES)} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=None, help="dlx models (default: each series' all)")
    parser.add_argument("--table", action="store_true", help="only rebuild docs/results/forecast.md")
    args = parser.parse_args()
    for name in [] if args.table else args.series or list(SERIES):
        folder = RESULTS / f"forecast_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / f"{name}.csv"
            LOADERS[name]().to_csv(path, index=False)
            base = baselines(name, path)
            (folder / "baselines.json").write_text(json.dumps(base, indent=2) + "\n")
            print(f"{name}: seasonal naive {base['seasonal_naive']['mase']:.3f}, ARIMA {base['arima']['mase']:.3f}, "
                  f"ETS {base['ets']['mase']:.3f}", flush=True)
            for model in args.models or SERIES[name].models:
                for seed in args.seeds:
                    summary = train(name, model, seed, Path(work))
                    (folder / f"{model}_seed_{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
                    print(f"{name} {model} seed {seed}: test {summary['test']}, {summary['end_to_end_s']} s",
                          flush=True)
    print(write_table())


if __name__ == "__main__":
    main()
