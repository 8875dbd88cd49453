"""What `dlx train` and `dlx eval` do, from a config to files in a run folder and numbers on the screen."""

import os
import platform
import random
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dlx import __version__
from dlx.build import (build_data, build_model, build_optimizers, build_schedulers, build_task,
                       check_targets_allowed, known_targets)
from dlx.checkpoint import load_checkpoint
from dlx.compose import explain_omegaconf_error
from dlx.config import check_config, resolve_device
from dlx.data import DataSplits
from dlx.engine import Interrupted, Schedule, TrainState, autocast, copy_checkpoint, evaluate, fit, monitored
from dlx.errors import DlxError
from dlx.metrics import MetricsLog, write_json_atomically
from dlx.progress import TrainingProgress, logger, setup_logging, terminal_console
from dlx.resume import find_checkpoint, restore, truncate_metrics
from dlx.tasks import Task, prepare

SPLITS = ("train", "val", "test")


def start_run(trainer: DictConfig) -> str:
    """Seeds, threads and device, set once, here, at the start of a run."""
    random.seed(trainer.seed)
    np.random.seed(trainer.seed)
    torch.manual_seed(trainer.seed)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    return resolve_device(trainer.device)


def train(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
          config_dirs: list[str]) -> dict[str, Any]:
    """Train the composed config in run_dir; return the summary (also written to run_dir/summary.json).

    `overrides` and `config_dirs` (--config-dir) are those of the command line, to print how to resume."""
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    console = terminal_console()
    setup_logging(run_dir / "train.log", console)
    logger.info(f"Run folder: {run_dir}")
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "choices": choices,
                               "overrides": overrides, "pid": os.getpid(), "host": platform.node()}
    write_json_atomically(run_dir / "summary.json", summary)  # "running": what `dlx runs` shows meanwhile
    try:
        check_config(cfg)
        device = start_run(cfg.trainer)
        data = build_data(cfg)
        task = build_task(cfg, data, device)
        model = build_model(cfg, task, data).to(device)
        data = prepare(data, task.inputs, device)
        optimizers = build_optimizers(cfg, task, model)
        schedule = Schedule.plan(cfg.trainer, len(data.train[0]))
        schedulers = build_schedulers(cfg, optimizers, schedule.total_steps)
        # Resolved after the data filled in the model's sizes: this config alone rebuilds the model.
        config = OmegaConf.to_container(cfg, resolve=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config), encoding="utf-8")
        point_latest_at(Path(cfg.output_root), run_dir)
        num_parameters = sum(p.numel() for p in model.parameters())
        logger.info(f"{type(model).__name__} with {num_parameters:,} parameters on {device}; "
                    f"{len(data.train[0]):,} training, {len(data.val[0]):,} validation, {len(data.test[0]):,} test "
                    f"samples; {schedule.total_steps:,} steps of batch {cfg.trainer.batch_size}")
        state = TrainState()
        found = find_checkpoint(cfg.trainer.resume, run_dir) if cfg.trainer.resume else None
        if found:
            state = restore(*found, config, cfg.trainer.resume_allow_changes, model, optimizers, schedulers, device)
            truncate_metrics(run_dir / "metrics.jsonl", state.step)
            adopt_best_checkpoint(found[0], run_dir / "checkpoints")
        elif cfg.trainer.resume == "auto":  # nothing saved yet: the rows of the lost attempt are logged again
            truncate_metrics(run_dir / "metrics.jsonl", 0)

        with MetricsLog(run_dir / "metrics.jsonl") as metrics_log:
            with TrainingProgress(schedule.total_steps, state.step, console) as progress, stop_on_signals() as stop:
                state = fit(model, task, optimizers, schedulers, data, cfg.trainer, config, run_dir, device,
                            metrics_log, progress, state, stop)
            test = test_best_checkpoint(run_dir, model, task, data, cfg, device, schedule, state, metrics_log)
        metric, mode = monitored(cfg.trainer, task)
        summary |= {
            "status": "completed",
            "monitor": {"metric": metric, "mode": mode},
            "best": {"value": state.best_value, "step": state.best_step},
            "test": test,
            "steps": state.step,
            "samples_per_sec": state.train_samples / state.train_seconds if state.train_seconds else None,
            "stopped_early": state.stopped_early,
            "epochs": round(state.epoch + state.batch_in_epoch / schedule.steps_per_epoch, 4),
            "num_parameters": num_parameters,
            "device": device,
            "checkpoint": "checkpoints/best.ckpt" if (run_dir / "checkpoints" / "best.ckpt").exists()
            else "checkpoints/last.ckpt",
        }
        return summary
    except Interrupted as err:
        command = ["dlx", "train", *(f"--config-dir={d}" for d in config_dirs),
                   *(o for o in overrides if not o.startswith("trainer.resume")),
                   f"trainer.resume={err.checkpoint.resolve()}"]
        err.args = (f"{err} Resume with: {shlex.join(command)}",)
        summary |= {"status": "interrupted", "error": str(err)}
        raise
    except DlxError as err:
        summary |= {"status": "failed", "error": str(err)}
        raise
    except BaseException as err:  # a bug, an out-of-memory error, Ctrl-C outside the training loop
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        summary |= {"status": status, "error": f"{type(err).__name__}: {err}"}
        raise
    finally:
        summary |= {"wall_time_s": round(time.time() - started, 3), "dlx_version": __version__,
                    "torch_version": str(torch.__version__), "python_version": platform.python_version()}
        write_json_atomically(run_dir / "summary.json", summary)


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], int]]:
    """While training, SIGINT, SIGTERM and SIGUSR2 ask the engine to stop after the current step (it then
    saves last.ckpt); a second signal stops at once. Yields a function returning the signal received, or 0.

    SIGUSR2 is the warning SLURM (--signal) and submitit send before preemption or the time limit. Under
    submitit, SIGTERM stays with submitit's handler: SLURM sends it on preemption too, and submitit ignores it
    so as to save and requeue on SIGUSR2 instead (the job wrapper hands SIGUSR2 back once last.ckpt is saved).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield lambda: 0
        return

    def handler(signal_number: int, frame: Any) -> None:
        if received:  # the second time: the user means it
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
        received.append(signal_number)
        logger.warning(f"{signal.Signals(signal_number).name} received: stopping after this step "
                       "(send it again to stop at once)")

    numbers = [signal.SIGINT, signal.SIGUSR2]
    if not callable(signal.getsignal(signal.SIGTERM)):  # the default, not a job scheduler's own handler
        numbers.append(signal.SIGTERM)
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield lambda: received[0] if received else 0
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def adopt_best_checkpoint(resumed_from: Path, checkpoints: Path) -> None:
    """A run resumed from another folder's checkpoint takes that folder's best.ckpt along (the best metric
    it restored refers to it)."""
    source = resumed_from.parent / "best.ckpt"
    if source.exists() and source.resolve() != (checkpoints / "best.ckpt").resolve():
        checkpoints.mkdir(parents=True, exist_ok=True)
        copy_checkpoint(source, checkpoints / "best.ckpt")


def test_best_checkpoint(run_dir: Path, model: torch.nn.Module, task: Task, data: DataSplits, cfg: DictConfig,
                         device: str, schedule: Schedule, state: TrainState, log: MetricsLog) -> dict[str, float]:
    """Test the weights read back from best.ckpt: exactly what `dlx eval` will evaluate later."""
    path = run_dir / "checkpoints" / "best.ckpt"
    if not path.exists():  # no validation ever gave a finite metric
        logger.warning(f"No best.ckpt (no finite {monitored(cfg.trainer, task)[0]} in any validation): testing last.ckpt")
        path = path.with_name("last.ckpt")
    best = load_checkpoint(path)
    model.load_state_dict(best["model"])
    test = evaluate(model, task, *data.test, cfg.trainer.eval_batch_size, schedule.max_eval_batches,
                    autocast(device, cfg.trainer.precision))
    log.write({"step": state.step, "split": "test", "checkpoint_step": best["state"]["step"], **test})
    logger.info("test  (best checkpoint, step %d)  %s", best["state"]["step"],
                "  ".join(f"{key} {value:.4f}" for key, value in test.items()))
    return test


def point_latest_at(output_root: Path, run_dir: Path) -> None:
    """outputs/latest -> the newest run folder, replaced atomically (a symlink renamed over the old one)."""
    output_root.mkdir(parents=True, exist_ok=True)
    link = output_root / "latest"
    temporary = output_root / f".latest.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    target = os.path.relpath(run_dir.resolve(), output_root.resolve())
    try:
        temporary.symlink_to(target, target_is_directory=True)
        os.replace(temporary, link)
    except OSError:  # file systems without symlinks: the run folder is printed anyway
        temporary.unlink(missing_ok=True)


def evaluate_checkpoint(path: Path, overrides: list[str], split: str, allow: list[str],
                        config_dirs: list[Path]) -> tuple[dict[str, float], dict[str, Any]]:
    """Rebuild model and data from the checkpoint alone and evaluate it on `split`.

    Returns the metrics and a description of what was evaluated.
    """
    if split not in SPLITS:
        raise DlxError(f'split="{split}" is not a split. Choose one of: {", ".join(SPLITS)}.')
    checkpoint = load_checkpoint(path)
    check_targets_allowed(checkpoint["config"], known_targets(config_dirs) | set(allow), str(path))
    cfg = OmegaConf.create(checkpoint["config"])
    OmegaConf.set_struct(cfg, True)  # so that a mistyped override fails instead of adding a key
    if "download" in cfg.dataset:  # a checkpoint from elsewhere does not decide to use the network; you may
        cfg.dataset.download = False
    for override in overrides:
        if "=" not in override or override[0] in "+~":
            raise DlxError(f'"{override}" is not an eval override: write key=value for a key the stored config has, '
                           "e.g. trainer.device=cpu or dataset.root=/path/to/data.")
        try:
            cfg.merge_with_dotlist([override])
        except Exception as err:
            hint = "The checkpoint's config is config.yaml in its run folder."
            raise DlxError(explain_omegaconf_error(err, hint, can_add_keys=False)) from err
    check_config(cfg)
    device = resolve_device(cfg.trainer.device)
    data = build_data(cfg)
    task = build_task(cfg, data, device)
    model = build_model(cfg, task, data)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()][1:2] or [str(err)]
        raise DlxError(f"The weights in {path} do not fit the model its config builds on this data "
                       f"({detail[0]}). The checkpoint belongs to another model or data shape: "
                       "evaluate it with the data set it was trained on.") from err
    model.to(device)
    x, y = getattr(prepare(data, task.inputs, device), split)
    max_batches = Schedule.plan(cfg.trainer, len(data.train[0])).max_eval_batches
    metrics = evaluate(model, task, x, y, cfg.trainer.eval_batch_size, max_batches,
                       autocast(device, cfg.trainer.get("precision", "32")))
    if not metrics:
        raise DlxError(f"The {split} split of this data set is empty (dataset.val_fraction=0?). Evaluate another split.")
    info = {"checkpoint": str(path), "split": split, "samples": min(len(x), max_batches * cfg.trainer.eval_batch_size)
            if max_batches else len(x), "step": checkpoint["state"]["step"], "model": cfg.model._target_,
            "dataset": cfg.dataset._target_, "device": device}
    return metrics, info
