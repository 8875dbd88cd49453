"""Loggers and the model summary, read back with each tool's own reader: TensorBoard's event reader, MLflow's
client against a real SQLite store, the csv module."""

import csv
import json
from pathlib import Path

import pytest
from conftest import dlx, latest_run, summary_of

from dlx.store.metrics import read_metrics


def logged_values(run_dir: Path, split: str, name: str) -> list[tuple[int, float]]:
    return [(row["step"], row[name]) for row in read_metrics(run_dir / "metrics.jsonl")
            if row["split"] == split and row.get(name) is not None]


def test_csv_and_tensorboard_hold_what_metrics_jsonl_holds(workdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dlx("train", "logger=[csv,tensorboard]", "trainer.max_epochs=3", "trainer.log_every=10", cwd=workdir)
    run_dir = latest_run(workdir)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for split, name in (("train", "loss"), ("val", "acc"), ("val", "loss"), ("test", "acc")):
        expected = logged_values(run_dir, split, name)
        assert expected, (split, name)
        scalars = events.Scalars(f"{split}/{name}")
        assert [event.step for event in scalars] == [step for step, _ in expected]
        assert [event.value for event in scalars] == pytest.approx([value for _, value in expected])  # float32
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    from_csv = [(int(r["step"]), float(r["value"])) for r in rows if r["split"] == "val" and r["name"] == "acc"]
    assert from_csv == logged_values(run_dir, "val", "acc")


def test_tensorboard_gets_the_gans_sample_images(workdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dlx("train", "model=gan", "logger=tensorboard", "trainer.max_steps=40", "trainer.eval_every=20", cwd=workdir)
    events = EventAccumulator(str(latest_run(workdir) / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("samples")
    assert [image.step for image in images] == [20, 40]
    assert images[0].width > 8 and images[0].height > 8


@pytest.mark.slow
def test_mlflow_records_params_metrics_and_the_best_checkpoint(workdir: Path) -> None:
    from mlflow import MlflowClient

    dlx("train", "logger=mlflow", "trainer.max_epochs=2", "optimizer.lr=0.05", cwd=workdir)
    run_dir = latest_run(workdir)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dlx")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["optimizer.lr"] == "0.05" and run.data.params["model._target_"] == "dlx.models.ffn.FeedForward"
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [(m.step, m.value) for m in history] == logged_values(run_dir, "val", "acc")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/best.ckpt"}
    assert json.loads((Path(client.download_artifacts(run.info.run_id, "summary.json", str(workdir))))
                      .read_text())["test"] == summary_of(run_dir)["test"]


@pytest.mark.slow
def test_mlflow_uses_the_tracking_uri_of_the_environment(workdir: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{workdir / 'elsewhere.db'}"
    dlx("train", "logger=mlflow", SMOKE, cwd=workdir, env={"MLFLOW_TRACKING_URI": uri})
    assert not (workdir / "outputs" / "mlflow.db").exists()
    [run] = MlflowClient(tracking_uri=uri).search_runs([MlflowClient(tracking_uri=uri).get_experiment_by_name(
        "dlx").experiment_id])
    assert run.info.status == "FINISHED"


def test_a_logger_whose_library_is_missing_names_the_extra(workdir: Path) -> None:
    # A package that fails to import, first on the path: what Python sees when tensorboard is not installed.
    blocker = workdir / "blocker" / "tensorboard"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorboard'\")\n")
    result = dlx("train", "logger=tensorboard", SMOKE, cwd=workdir, expect=2,
                 env={"PYTHONPATH": str(blocker.parent)})
    assert 'logger=tensorboard needs the tensorboard package, which is not installed: pip install "dlx[tensorboard]"' \
        in result.stderr
    assert "Traceback" not in result.stderr and not (workdir / "outputs").exists()


def test_training_starts_with_a_model_summary(workdir: Path) -> None:
    result = dlx("train", "model=cnn", SMOKE, cwd=workdir)
    summary = (latest_run(workdir) / "model_summary.txt").read_text()
    assert "Conv2d" in summary and "Total params: 6,138" in summary
    assert "ConvNet: 6,138 parameters (6,138 trainable)" in result.stdout
    assert "BatchNorm2d" in result.stdout and "[1, 16, 8, 8]" in result.stdout  # layers and output shapes


SMOKE = "trainer.smoke=true"
