"""Where a run's metrics go besides metrics.jsonl (which is always written, and which resuming relies on):
a CSV file, TensorBoard, MLflow. Chosen with `logger=csv`, `logger=[csv,tensorboard]`, `logger=mlflow`.

Each logger is a plain class whose constructor arguments are its YAML keys, with four methods the run calls:
start(run_dir, config, resumed_step), log_metrics(row), log_image(tag, path, step), finish(status, summary).
The libraries are imported in start(), so choosing no logger costs nothing; a logger's `requires` names its
module and pip extra, checked before the run starts (dlx.config.checks). MLflowLogger.prepare() creates its store and experiment
once before a sweep's jobs start.
"""

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

NON_METRIC_KEYS = ("step", "epoch", "split")
FIELDS = ["step", "epoch", "split", "name", "value"]  # metrics.csv's columns


class CSVLogger:
    """metrics.csv in the run folder, one row per value: step, epoch, split, name, value (a long table
    appends cleanly whatever metrics a split has; pandas' pivot makes it wide)."""

    requires = None  # the standard library's csv

    def __init__(self, filename: str = "metrics.csv") -> None:
        self.filename = filename

    def start(self, run_dir: Path, config: dict[str, Any], resumed_step: int) -> None:
        from dlx.store.files import open_to_append, write_text_atomically

        path = run_dir / self.filename
        # What a resumed run keeps: the rows up to its checkpoint (it logs the later ones again), as in
        # metrics.jsonl; rewritten beside the file and renamed over it, so a crash here loses nothing.
        kept = [row for row in read_csv(path) if int(row["step"]) <= resumed_step and row["split"] != "test"]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(kept)
        write_text_atomically(path, text.getvalue(), run_dir)
        self.file = open_to_append(path, run_dir)
        self.writer = csv.DictWriter(self.file, fieldnames=FIELDS)

    def log_metrics(self, row: dict[str, Any]) -> None:
        for name, value in row.items():
            if name not in NON_METRIC_KEYS:
                self.writer.writerow(dict(zip(FIELDS, (row["step"], row.get("epoch"), row["split"], name, value))))
        self.file.flush()

    def log_image(self, tag: str, path: Path, step: int) -> None:
        pass  # the PNG files are in the run folder already

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.file.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    from dlx.store.files import read_regular_file

    if not path.exists():
        return []
    return list(csv.DictReader(io.StringIO(read_regular_file(path).decode("utf-8"), newline="")))


class TensorBoardLogger:
    """TensorBoard event files in RUN/tensorboard (`tensorboard --logdir outputs` shows every run): each
    metric as a scalar named split/metric, and the GAN's sample grids as images."""

    requires = ("tensorboard", "tensorboard")  # the module it needs, and the pip extra that installs it

    def __init__(self, log_dir: str | None = None) -> None:
        self.log_dir = log_dir

    def start(self, run_dir: Path, config: dict[str, Any], resumed_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from dlx.store.files import open_folder

        if self.log_dir is None:  # the run folder's own: made here, refused if a link planted there leads elsewhere
            os.close(open_folder(run_dir / "tensorboard", run_dir, create=True))
        # purge_step: TensorBoard drops what an interrupted attempt logged after the checkpoint resumed from.
        self.writer = SummaryWriter(self.log_dir or str(run_dir / "tensorboard"),
                                    purge_step=resumed_step + 1 if resumed_step else None)

    def log_metrics(self, row: dict[str, Any]) -> None:
        for name, value in row.items():
            if name not in NON_METRIC_KEYS and value is not None:
                self.writer.add_scalar(f"{row['split']}/{name}", value, row["step"])

    def log_image(self, tag: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        self.writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.writer.close()


class MLflowLogger:
    """An MLflow run per dlx run: the composed config as parameters, every metric at its step, the sample
    images, and at the end the summary and the best checkpoint as artifacts.

    The store is MLFLOW_TRACKING_URI when set (a tracking server), else tracking_uri, else a SQLite file
    beside the outputs (sqlite:///OUTPUT_ROOT/mlflow.db): MLflow's embedded backend (its plain-file store is
    deprecated). `mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` browses it.
    """

    requires = ("mlflow", "mlflow")

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "dlx",
                 log_checkpoint: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.log_checkpoint = log_checkpoint

    def prepare(self, output_root: str) -> str:
        """Create the store (a new SQLite file is migrated on first use) and the experiment; return its id.
        A sweep calls this once before its jobs start, so parallel jobs (joblib) do not race to create them."""
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.tracking_uri or \
            f"sqlite:///{Path(output_root).resolve() / 'mlflow.db'}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name)
        except mlflow.exceptions.MlflowException:  # another process created it in between
            created = self.client.get_experiment_by_name(self.experiment_name)
            assert created is not None  # it exists: creating it failed because it did
            return created.experiment_id

    def start(self, run_dir: Path, config: dict[str, Any], resumed_step: int) -> None:
        import mlflow

        self.run_dir = run_dir
        experiment_id = self.prepare(config.get("output_root", "outputs"))
        id_file = run_dir / "mlflow_run_id"
        if resumed_step and id_file.exists():  # a resumed run continues its MLflow run
            from dlx.store.files import read_regular_file

            self.run_id = read_regular_file(id_file, run_dir).decode().strip()
            try:
                self.client.update_run(self.run_id, status="RUNNING")
                # MLflow cannot delete metric values: the interrupted attempt's steps after the checkpoint
                # stay beside the resumed run's (metrics.jsonl has only the latter).
                self.client.set_tag(self.run_id, "dlx.resumed_at_step", str(resumed_step))
                return
            except mlflow.exceptions.MlflowException as err:
                from dlx.ui.console import logger

                logger.warning(f"Warning: MLflow run {self.run_id} of this folder is not in {self.client.tracking_uri} "
                               f"({err.error_code}): logging to a new MLflow run")
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name,
                                             tags={"dlx.run_dir": str(run_dir)}).info.run_id
        from dlx.store.files import write_text_atomically

        write_text_atomically(id_file, self.run_id + "\n", run_dir)
        from dlx.config.diff import flatten

        params = list(flatten(config).items())
        for begin in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
            batch = [mlflow.entities.Param(key, str(value)[:6000]) for key, value in params[begin : begin + 100]]
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, row: dict[str, Any]) -> None:
        import mlflow

        now_ms = int(time.time() * 1000)
        metrics = [mlflow.entities.Metric(f"{row['split']}/{name}", float(value), now_ms, row["step"])
                   for name, value in row.items() if name not in NON_METRIC_KEYS and value is not None]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=tag)

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        if status == "completed":
            self.client.log_dict(self.run_id, summary, "summary.json")
            best = self.run_dir / "checkpoints" / "best.ckpt"
            if self.log_checkpoint and best.exists():
                self.client.log_artifact(self.run_id, str(best), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, status={"completed": "FINISHED", "interrupted": "KILLED"}.get(
            status, "FAILED"))
