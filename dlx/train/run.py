"""One run's life, in this process: from a composed config to the files in its run folder (config, log,
checkpoints, metrics, summary) and back to a summary, whatever happened."""

import logging
import os
import platform
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dlx import __version__
from dlx.config.checks import check_config
from dlx.data import DataSplits
from dlx.errors import DlxError
from dlx.parallel.world import (
    RankFailed,
    World,
    blame,
    join_world,
    launcher_restart,
    report_failure,
    slurm_job,
    weights_sha256,
)
from dlx.store.checkpoint import load_checkpoint
from dlx.store.files import open_to_append, read_json, write_json_atomically, write_text_atomically
from dlx.store.metrics import MetricsLog
from dlx.train.augment import Augment, build_augment
from dlx.train.build import (
    build_data,
    build_loading,
    build_loggers,
    build_model,
    build_optimizers,
    build_schedulers,
    build_task,
    fill_derived,
)
from dlx.train.checkpointing import CheckpointWriter, check_writable
from dlx.train.evaluate import autocast, evaluate
from dlx.train.loop import Loop, Pruning, fit
from dlx.train.monitor import BestMonitor, monitored
from dlx.train.resume import resume_or_start
from dlx.train.setup import start_run
from dlx.train.signals import Interrupted, ignore_stop_requests, stop_on_signals
from dlx.train.state import Schedule, TrainState
from dlx.train.step import Updater
from dlx.train.tasks import Task, prepare
from dlx.ui.console import logger, setup_logging, terminal_console
from dlx.ui.model_summary import show, summarize, summary_text
from dlx.ui.progress import TrainingProgress


@dataclass
class RunParts:
    """What a run is built of, from its config and its data."""

    device: str
    data: DataSplits  # prepared: as the model sees it, on the device
    task: Task
    model: torch.nn.Module
    augment: Augment | None
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    schedule: Schedule
    config: dict[str, Any]  # resolved after the data filled in the model's sizes: this config alone rebuilds it


def train(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
          config_dirs: list[str], pruning: Pruning | None = None) -> dict[str, Any]:
    """Train the composed config in run_dir; return the summary (also written to run_dir/summary.json, whatever
    happened).

    `overrides` and `config_dirs` (--config-dir) are those of the command line, to print how to resume.
    `pruning`: a search's trial, which may stop the run after a validation (its status is then `pruned`).

    A process that a launcher started as one rank (trainer.devices, torchrun, submitit) trains its share of
    the run; rank 0 alone writes files and prints."""
    world = join_world()
    started = time.time()
    console = start_logging(run_dir, world)
    earlier = read_json(run_dir / "summary.json") if world.is_main else None  # an attempt this one may resume
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "choices": choices,
                               "overrides": overrides, "pid": os.getpid(), "host": platform.node()}
    if slurm_job():
        summary["slurm_job"] = slurm_job()
    speaks = world.is_main  # writes summary.json: rank 0, or the next rank if rank 0 was killed
    if speaks:
        write_json_atomically(run_dir / "summary.json", summary, run_dir)  # "running": what `dlx runs` shows meanwhile
    loggers: list[Any] = []  # TensorBoard, MLflow... (rank 0)
    trained_to: int | None = None  # the last step, once training ended (the best checkpoint is tested next)
    try:
        parts = build_run(cfg, world)
        if world.is_main:
            record_run(parts, cfg, run_dir, console)
        state = resume_or_start(cfg.trainer, run_dir, world, parts.config, parts.model, parts.optimizers,
                                parts.schedulers, parts.device)
        restart = record_restarts(summary, earlier, state, parts.schedule)
        if world.is_main:
            check_writable(run_dir / "checkpoints")
            loggers = start_loggers(cfg, run_dir, parts.config, state.step)
        with MetricsLog(run_dir / "metrics.jsonl" if world.is_main else None, loggers) as metrics_log:
            if restart:
                metrics_log.write(restart)
            with TrainingProgress(parts.schedule.total_steps, state.step, console) as progress, \
                    stop_on_signals() as stop:
                trained_to = fit(make_loop(parts, cfg.trainer, state, run_dir, metrics_log, progress, stop, world,
                                           pruning)).step
            if world.size > 1:
                summary["distributed"] = check_same_weights(parts.model, world, parts.device)
            test = test_best_checkpoint(run_dir, parts, cfg, state, metrics_log, world)
        metric, mode = monitored(cfg.trainer, parts.task)
        summary |= {"status": "pruned" if state.pruned else "completed", "monitor": {"metric": metric, "mode": mode}, "test": test,
                    **outcome(parts, state, run_dir)}
        return summary
    except Interrupted as err:
        summary |= {"status": "interrupted", "error": how_to_go_on(err, overrides, config_dirs)}
        raise
    except BaseException as err:  # a mistake, a bug, an out-of-memory error, Ctrl-C outside the training steps
        if world.size > 1:  # ending: the launcher's SIGTERM to the ranks left must not cut short what follows
            ignore_stop_requests()
        failure = blame(world, err) if world.size > 1 else None
        if failure is None and isinstance(err, KeyboardInterrupt):  # while the run is set up, or tested at the end
            stopped_outside = stopped_outside_steps(trained_to, run_dir)
            summary |= {"status": "interrupted", "error": how_to_go_on(stopped_outside, overrides, config_dirs)}
            raise stopped_outside from None
        if failure is None:
            summary |= {"status": "failed",
                        "error": str(err) if isinstance(err, DlxError) else f"{type(err).__name__}: {err}"}
            if world.size > 1:
                report_failure(world, err)  # for the other ranks, whose next collective fails without this one
            raise
        # Another rank failed: name it, here and in the summary.
        stopped = RankFailed(failure)
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.exists():
            stopped.args = (f"{stopped} Resume with: {resume_command(last, overrides, config_dirs)}",)
        summary |= {"status": "failed", "error": str(stopped), "failed_rank": failure.rank}
        speaks = speaks or (failure.rank == 0 and failure.killed and world.rank == 1)
        raise stopped from err
    finally:
        summary |= {"wall_time_s": round(time.time() - started, 3), "dlx_version": __version__,
                    "torch_version": str(torch.__version__), "python_version": platform.python_version()}
        if speaks:
            write_json_atomically(run_dir / "summary.json", summary, run_dir)
        finish_loggers(loggers, summary)


def resume_command(checkpoint: Path, overrides: list[str], config_dirs: list[str]) -> str:
    """The `dlx train` command that continues this run from `checkpoint`."""
    return shlex.join(["dlx", "train", *(f"--config-dir={d}" for d in config_dirs),
                       *(o for o in overrides if not o.startswith("trainer.resume")),
                       f"trainer.resume={checkpoint.resolve()}"])


def record_restarts(summary: dict[str, Any], earlier: dict[str, Any] | None, state: TrainState,
                    schedule: Schedule) -> dict[str, Any] | None:
    """A run that resumed keeps the record of its earlier restarts in summary["restarts"]; when the launcher
    restarted it just now (torchrun after a failed rank, SLURM after a preemption), one more, and the row
    that says so in metrics.jsonl (split "restart", at the step it resumed from), which this returns."""
    launcher, count = launcher_restart()
    restarts = list((earlier or {}).get("restarts", [])) if state.step > 0 else []
    if launcher:
        restarts.append({"launcher": launcher, "count": count, "resumed_from_step": state.step,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if restarts:
        summary["restarts"] = restarts
    if not launcher:
        return None
    logger.info(f"Restarted by {launcher} (restart {count}): resumed at step {state.step}")
    return {"step": state.step, "epoch": round(schedule.epochs_done(state), 4), "split": "restart",
            "count": count}


def stopped_outside_steps(trained_to: int | None, run_dir: Path) -> Interrupted:
    """Ctrl-C before the first step (data, model, resuming) or after the last (testing the best checkpoint)."""
    if trained_to is None:
        return Interrupted(signal.SIGINT, 0, None, "while the run was being set up, before its first step")
    return Interrupted(signal.SIGINT, trained_to, run_dir / "checkpoints" / "last.ckpt",
                       f"while testing the best checkpoint, after training ended at step {trained_to}")


def how_to_go_on(stopped: Interrupted, overrides: list[str], config_dirs: list[str]) -> str:
    """The message of a stopped run, completed with the command that resumes it (or starts it again)."""
    if stopped.checkpoint is None:
        command = ["dlx", "train", *(f"--config-dir={d}" for d in config_dirs),
                   *(o for o in overrides if not o.startswith("trainer.resume"))]
        stopped.args = (f"{stopped} Start it again with: {shlex.join(command)}",)
    else:
        stopped.args = (f"{stopped} Resume with: {resume_command(stopped.checkpoint, overrides, config_dirs)}",)
    return str(stopped)


def start_logging(run_dir: Path, world: World) -> Any:
    """The run folder and dlx's log (console and train.log); the rich console when a person is watching."""
    console = terminal_console() if world.is_main else None
    setup_logging(run_dir / "train.log" if world.is_main else None, console,
                  lambda path: open_to_append(path, run_dir))
    if not world.is_main:
        logger.setLevel(logging.ERROR)  # rank 0 speaks for the run; errors are raised on every rank
    logger.info(f"Run folder: {run_dir}")
    return console


def build_run(cfg: DictConfig, world: World) -> RunParts:
    """Check the config, set up the process (seeds, device), and build everything the run trains with."""
    check_config(cfg)
    if cfg.trainer.devices not in (1, world.size):
        logger.info(f"trainer.devices={cfg.trainer.devices} is ignored: the launcher (torchrun, submitit) started "
                    f"{world.size} process(es) for this run")
    device = start_run(cfg.trainer, world)
    data = build_data(cfg)
    task = build_task(cfg, data, device)
    schedule = Schedule.plan(cfg.trainer, len(data.train), world.size)
    fill_derived(cfg, data, task, schedule.total_steps, world.size)
    config = OmegaConf.to_container(cfg, resolve=True)
    model = build_model(cfg).to(device)
    augment = build_augment(cfg.augment, data)
    data = prepare(data, task.inputs, device, build_loading(cfg.trainer))
    optimizers = build_optimizers(cfg, task, model)
    schedulers = build_schedulers(cfg, optimizers)
    logger.info(f"{type(model).__name__} with {count_parameters(model):,} parameters on {device}; "
                f"{len(data.train):,} training, {len(data.val):,} validation, {len(data.test):,} test "
                f"samples; {schedule.total_steps:,} steps of batch {cfg.trainer.batch_size}"
                + (f" in each of {world.size} processes" if world.size > 1 else ""))
    return RunParts(device, data, task, model, augment, optimizers, schedulers, schedule, config)  # type: ignore[arg-type]


def record_run(parts: RunParts, cfg: DictConfig, run_dir: Path, console: Any) -> None:
    """config.yaml, the outputs/latest link and the model summary (rank 0)."""
    write_text_atomically(run_dir / "config.yaml", OmegaConf.to_yaml(parts.config), run_dir)
    point_latest_at(Path(cfg.output_root), run_dir)
    show_model_summary(parts, run_dir, console)


def make_loop(parts: RunParts, trainer: DictConfig, state: TrainState, run_dir: Path, metrics_log: MetricsLog,
              progress: TrainingProgress, stop_requested: Callable[[], int], world: World,
              pruning: Pruning | None = None) -> Loop:
    # Plain values for the per-step path: reading an OmegaConf node costs microseconds each time.
    skip_nonfinite = trainer.on_nonfinite == "skip"
    updater = Updater(parts.optimizers, parts.schedulers, trainer.grad_clip, skip_nonfinite, world, state)
    checkpoints = CheckpointWriter(run_dir / "checkpoints", parts.config, parts.model, parts.optimizers,
                                   parts.schedulers, parts.data, parts.device, world)
    monitor = BestMonitor(*monitored(trainer, parts.task), trainer.patience)
    return Loop(model=parts.model, task=parts.task, data_train=parts.data.train, data_val=parts.data.val,
                schedule=parts.schedule, updater=updater, checkpoints=checkpoints, monitor=monitor,
                metrics_log=metrics_log, progress=progress, world=world, state=state, run_dir=run_dir,
                device=parts.device, seed=trainer.seed, eval_batch_size=trainer.eval_batch_size,
                mixed_precision=autocast(parts.device, trainer.precision), stop_requested=stop_requested,
                augment=parts.augment, pruning=pruning, compile=trainer.compile)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def outcome(parts: RunParts, state: TrainState, run_dir: Path) -> dict[str, Any]:
    """What the training loop ended with, for summary.json."""
    return {
        "best": {"value": state.best_value, "step": state.best_step},
        "steps": state.step,
        "samples_per_sec": state.train_samples / state.train_seconds if state.train_seconds else None,
        "stopped_early": state.stopped_early,
        "epochs": round(parts.schedule.epochs_done(state), 4),
        "checkpoint": "checkpoints/best.ckpt" if (run_dir / "checkpoints" / "best.ckpt").exists()
        else "checkpoints/last.ckpt",
        "num_parameters": count_parameters(parts.model),
        "device": parts.device,
    }


def show_model_summary(parts: RunParts, run_dir: Path, console: Any) -> None:
    """The model table: a help, not a requirement; a model torchinfo cannot trace still trains."""
    try:
        networks = parts.task.networks(parts.model, parts.data.input_shape)
        statistics = summarize(parts.model, networks, parts.device)
    except Exception as err:
        logger.warning(f"Warning: no model summary ({type(err).__name__}: {err}); training goes on.")
        return
    path = run_dir / "model_summary.txt"
    write_text_atomically(path, summary_text(statistics), run_dir)
    show(statistics, path, console)


def start_loggers(cfg: DictConfig, run_dir: Path, config: dict[str, Any], resumed_step: int) -> list[Any]:
    loggers = build_loggers(cfg)
    for each in loggers:
        each.start(run_dir, config, resumed_step)
    return loggers


def finish_loggers(loggers: list[Any], summary: dict[str, Any]) -> None:
    """Close each logger with the run's outcome; one that fails (a tracking server gone) is reported, and
    takes nothing else down: the run folder has everything."""
    for each in loggers:
        try:
            each.finish(summary["status"], summary)
        except Exception as err:
            logger.warning(f"Warning: {type(each).__name__} could not finish ({type(err).__name__}: {err})")


def check_same_weights(model: torch.nn.Module, world: World, device: str) -> dict[str, Any]:
    """After data-parallel training every rank must hold the same weights: compare their fingerprints."""
    digests = world.gather(weights_sha256(model))
    if len(set(digests)) > 1:
        raise DlxError(f"The {world.size} training processes ended with different weights (sha256 per rank: "
                       f"{', '.join(digest[:12] for digest in digests)}): their gradients were not all averaged. "
                       "This is a bug in dlx or in a model whose training step bypasses DistributedDataParallel; "
                       "please report it with the command you ran.")
    return {"world_size": world.size, "backend": "nccl" if device.startswith("cuda") else "gloo",
            "weights_sha256_per_rank": digests}


def test_best_checkpoint(run_dir: Path, parts: RunParts, cfg: DictConfig, state: TrainState, log: MetricsLog,
                         world: World) -> dict[str, float]:
    """Test the weights read back from best.ckpt: exactly what `dlx eval` will evaluate later.

    With several ranks, rank 0 reads the file (the others may run on machines that do not see it) and sends
    the weights to the others, and each tests its share of the test split."""
    model, task = parts.model, parts.task
    if world.is_main:
        path = run_dir / "checkpoints" / "best.ckpt"
        if not path.exists():  # no validation ever gave a finite metric
            logger.warning(f"No best.ckpt (no finite {monitored(cfg.trainer, task)[0]} in any validation): "
                           "testing last.ckpt")
            path = path.with_name("last.ckpt")
        best = load_checkpoint(path)
        model.load_state_dict(best["model"])
    world.copy_from_main(model.state_dict().values())
    test = evaluate(model, task, parts.data.test, cfg.trainer.eval_batch_size, parts.schedule.max_eval_batches,
                    autocast(parts.device, cfg.trainer.precision), world)
    if world.is_main:
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


