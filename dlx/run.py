"""What `dlx train` and `dlx eval` do, from a config to files in a run folder and numbers on the screen."""

import gc
import json
import logging
import os
import platform
import random
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dlx import __version__
from dlx.augment import build_augment
from dlx.build import build_data, build_loggers, build_model, build_optimizers, build_schedulers, build_task
from dlx.checkpoint import load_checkpoint, restore_rng_state
from dlx.compose import explain_omegaconf_error
from dlx.config import check_config, resolve_device
from dlx.data import DataSplits
from dlx.distributed import (World, WorkersFailed, device_of_rank, join_world, launch, launched_as_rank,
                             weights_sha256)
from dlx.engine import Interrupted, Schedule, TrainState, autocast, copy_checkpoint, evaluate, fit, monitored
from dlx.errors import DlxError
from dlx.metrics import MetricsLog, write_json_atomically
from dlx.model_summary import save_and_show, summarize
from dlx.progress import TrainingProgress, logger, setup_logging, terminal_console
from dlx.rebuild import load_weights, trusted_config
from dlx.resume import find_checkpoint, restore, truncate_metrics
from dlx.tasks import Task, prepare

SPLITS = ("train", "val", "test")


def start_run(trainer: DictConfig, world: World) -> str:
    """Seeds, determinism, threads and device, set once, here, at the start of a run."""
    # Each rank its own dropout masks and noise; the sample order depends on trainer.seed alone, and DDP gives
    # every rank rank 0's initial weights.
    seed = trainer.seed + world.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic = trainer.deterministic
    if deterministic:  # cuBLAS is reproducible only with a fixed workspace, set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Checked for every run, as the jobs of a sweep share this process; changed only when it differs, since the
    # call imports torch's compiler (a second and a half). An operation without a deterministic kernel is named
    # in a warning rather than stopping the run.
    if deterministic != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    device = device_of_rank(resolve_device(trainer.device), world)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    elif world.size > 1 and device == "cpu":  # the processes on this machine share its cores
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world.local_size))
    return device


def train(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
          config_dirs: list[str]) -> dict[str, Any]:
    """Train the composed config in run_dir; return the summary (also written to run_dir/summary.json).

    `overrides` and `config_dirs` (--config-dir) are those of the command line, to print how to resume.

    trainer.devices=N (N > 1) trains in N new processes, each running train() as one rank, and returns rank 0's
    summary; a process that torchrun or submitit started is one rank already. Rank 0 alone writes files and
    prints."""
    if cfg.trainer.devices > 1 and not launched_as_rank():
        return train_on_devices(cfg, run_dir, choices, overrides, config_dirs)
    world = join_world()
    started = time.time()
    console = terminal_console() if world.is_main else None
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir / "train.log" if world.is_main else None, console)
    if not world.is_main:
        logger.setLevel(logging.ERROR)  # rank 0 speaks for the run; errors are raised on every rank
    logger.info(f"Run folder: {run_dir}")
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "choices": choices,
                               "overrides": overrides, "pid": os.getpid(), "host": platform.node()}
    if world.is_main:
        write_json_atomically(run_dir / "summary.json", summary)  # "running": what `dlx runs` shows meanwhile
    loggers: list[Any] = []  # TensorBoard, MLflow... (rank 0)
    try:
        check_config(cfg)
        if cfg.trainer.devices not in (1, world.size):
            logger.info(f"trainer.devices={cfg.trainer.devices} is ignored: the launcher (torchrun, submitit) started "
                        f"{world.size} process(es) for this run")
        cfg.trainer.devices = world.size  # the stored config says how the run was trained
        device = start_run(cfg.trainer, world)
        data = build_data(cfg)
        task = build_task(cfg, data, device)
        model = build_model(cfg, task, data).to(device)
        augment = build_augment(cfg.augment, data)
        data = prepare(data, task.inputs, device)
        optimizers = build_optimizers(cfg, task, model)
        schedule = Schedule.plan(cfg.trainer, len(data.train[0]), world.size)
        schedulers = build_schedulers(cfg, optimizers, schedule.total_steps)
        # Resolved after the data filled in the model's sizes: this config alone rebuilds the model.
        config = OmegaConf.to_container(cfg, resolve=True)
        if world.is_main:
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config), encoding="utf-8")
            point_latest_at(Path(cfg.output_root), run_dir)
        num_parameters = sum(p.numel() for p in model.parameters())
        batches = f"batch {cfg.trainer.batch_size}" + (f" in each of {world.size} processes" if world.size > 1 else "")
        logger.info(f"{type(model).__name__} with {num_parameters:,} parameters on {device}; "
                    f"{len(data.train[0]):,} training, {len(data.val[0]):,} validation, {len(data.test[0]):,} test "
                    f"samples; {schedule.total_steps:,} steps of {batches}")
        if world.is_main:
            show_model_summary(model, data.input_shape, device, run_dir, console)
        state = resume_or_start(cfg.trainer, run_dir, world, config, model, optimizers, schedulers, device)
        if world.is_main:
            loggers = start_loggers(cfg, run_dir, config, state.step)
        with MetricsLog(run_dir / "metrics.jsonl" if world.is_main else Path(os.devnull), loggers) as metrics_log:
            with TrainingProgress(schedule.total_steps, state.step, console) as progress, stop_on_signals() as stop:
                state = fit(model, task, optimizers, schedulers, data, cfg.trainer, config, run_dir, device,
                            metrics_log, progress, state, stop, world, augment)
            if world.size > 1:
                summary["distributed"] = check_same_weights(model, world, device)
            test = test_best_checkpoint(run_dir, model, task, data, cfg, device, schedule, state, metrics_log, world)
        metric, mode = monitored(cfg.trainer, task)
        summary |= {"status": "completed", "monitor": {"metric": metric, "mode": mode}, "test": test,
                    **outcome(state, schedule, run_dir), "num_parameters": num_parameters, "device": device}
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
        if world.is_main:
            write_json_atomically(run_dir / "summary.json", summary)
        finish_loggers(loggers, summary)


def resume_or_start(trainer: DictConfig, run_dir: Path, world: World, config: dict[str, Any], model: torch.nn.Module,
                    optimizers: dict[str, Any], schedulers: dict[str, Any], device: str) -> TrainState:
    """The state training starts from: trainer.resume's checkpoint loaded into the fresh objects (and the
    run folder's metrics and best.ckpt brought back to that point), or step 0."""
    found = resume_point(trainer.resume, run_dir, world)
    if not found:
        if trainer.resume == "auto" and world.is_main:  # nothing saved yet: the lost rows are logged again
            truncate_metrics(run_dir / "metrics.jsonl", 0)
        return TrainState()
    state = restore(*found, config, trainer.resume_allow_changes, model, optimizers, schedulers, device)
    if len(found[1].get("rng_per_rank", [])) == world.size > 1:
        restore_rng_state(found[1]["rng_per_rank"][world.rank], device)  # this rank's own generators
    if world.is_main:
        truncate_metrics(run_dir / "metrics.jsonl", state.step)
        adopt_best_checkpoint(found[0], run_dir / "checkpoints")
    return state


def outcome(state: TrainState, schedule: Schedule, run_dir: Path) -> dict[str, Any]:
    """What the training loop ended with, for summary.json."""
    return {
        "best": {"value": state.best_value, "step": state.best_step},
        "steps": state.step,
        "samples_per_sec": state.train_samples / state.train_seconds if state.train_seconds else None,
        "stopped_early": state.stopped_early,
        "epochs": round(state.epoch + state.batch_in_epoch / schedule.steps_per_epoch, 4),
        "checkpoint": "checkpoints/best.ckpt" if (run_dir / "checkpoints" / "best.ckpt").exists()
        else "checkpoints/last.ckpt",
    }


def resume_point(setting: str | None, run_dir: Path, world: World) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint trainer.resume names, chosen by rank 0 (resume=auto skips damaged files, and two ranks
    must not choose differently) and read by every rank: on several machines, keep the run folder on a shared
    disk."""
    if not setting:
        return None
    found = find_checkpoint(setting, run_dir) if world.is_main else None
    if world.size == 1:
        return found
    chosen = world.gather(str(found[0]) if found else None)[0]
    if world.is_main or chosen is None:
        return found
    return Path(chosen), load_checkpoint(Path(chosen))


def show_model_summary(model: torch.nn.Module, input_shape: list[int], device: str, run_dir: Path,
                       console: Any) -> None:
    """The model table: a help, not a requirement; a model torchinfo cannot trace still trains."""
    try:
        save_and_show(summarize(model, input_shape, device), run_dir / "model_summary.txt", console)
    except Exception as err:
        logger.warning(f"Warning: no model summary ({type(err).__name__}: {err}); training goes on.")


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


def train_on_devices(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
                     config_dirs: list[str]) -> dict[str, Any]:
    """trainer.devices=N: train in N processes on this machine (one per GPU, or sharing the CPU), each one rank
    running train(); rank 0's summary. A failure is reported as rank 0 recorded it in summary.json."""
    OmegaConf.resolve(cfg)  # here, where Hydra's resolvers (${hydra:...}) still work
    try:
        return launch(cfg.trainer.devices, train_rank, cfg, run_dir, choices, overrides, config_dirs)
    except WorkersFailed as failure:
        raise error_of_ranks(run_dir / "summary.json", failure) from None


def train_rank(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
               config_dirs: list[str]) -> dict[str, Any]:
    """One rank of a trainer.devices=N run, in a process of its own."""
    # A session of its own, as torchrun starts its workers: Ctrl-C in the terminal then reaches the launching
    # process only, which passes it on. Otherwise each rank would get it twice (from the terminal, then passed
    # on), and a second signal means "stop at once", without saving.
    os.setsid()
    try:
        return train(cfg, run_dir, choices, overrides, config_dirs)
    except DlxError as err:  # rank 0 recorded it in summary.json; the launching process reports it from there
        raise SystemExit(err.exit_code) from None
    finally:
        gc.freeze()  # as `dlx` does: no final garbage collection over every object torch created


def error_of_ranks(summary_path: Path, failure: WorkersFailed) -> DlxError:
    """The error of a multi-process run: rank 0's, as its summary records it, or else the first failed rank's."""
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    if failure.exit_code > 128 and summary.get("status") == "interrupted":
        stopped = Interrupted(failure.exit_code - 128, 0, summary_path.parent / "checkpoints" / "last.ckpt")
        stopped.args = (summary["error"],)  # rank 0's own message: the step it stopped after, how to resume
        return stopped
    if failure.exit_code == DlxError.exit_code and summary.get("status") == "failed":
        return DlxError(summary["error"])
    crash = DlxError(f"Training in several processes failed: {failure.cause or 'they were stopped'}. The run "
                     f"folder {summary_path.parent} holds what rank 0 saved; the messages above come from the "
                     "processes themselves.")
    crash.exit_code = 1  # not a mistake in the command: the status of a Python error
    return crash


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
                         device: str, schedule: Schedule, state: TrainState, log: MetricsLog,
                         world: World = World()) -> dict[str, float]:
    """Test the weights read back from best.ckpt: exactly what `dlx eval` will evaluate later.

    With several ranks, rank 0 reads the file (the others may run on machines that do not see it) and sends
    the weights to the others, and each tests its share of the test split."""
    if world.is_main:
        path = run_dir / "checkpoints" / "best.ckpt"
        if not path.exists():  # no validation ever gave a finite metric
            logger.warning(f"No best.ckpt (no finite {monitored(cfg.trainer, task)[0]} in any validation): "
                           "testing last.ckpt")
            path = path.with_name("last.ckpt")
        best = load_checkpoint(path)
        model.load_state_dict(best["model"])
    world.copy_from_main(model.state_dict().values())
    test = evaluate(model, task, *data.test, cfg.trainer.eval_batch_size, schedule.max_eval_batches,
                    autocast(device, cfg.trainer.precision), world)
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


@dataclass
class Evaluated:
    """What evaluate_checkpoint evaluated, for a closer look (dlx eval's per-class report)."""

    model: torch.nn.Module
    task: Task
    x: torch.Tensor  # the evaluated inputs as the model sees them, on the device
    y: torch.Tensor
    images: torch.Tensor  # the same inputs as the data set gives them (pixels in [0, 1]), on the CPU
    class_names: list[str]
    batch_size: int
    mixed_precision: AbstractContextManager


def evaluate_checkpoint(path: Path, overrides: list[str], split: str, allow: list[str],
                        config_dirs: list[Path]) -> tuple[dict[str, float], dict[str, Any], Evaluated]:
    """Rebuild model and data from the checkpoint alone and evaluate it on `split`.

    Returns the metrics, a description of what was evaluated, and the model and inputs themselves.
    """
    if split not in SPLITS:
        raise DlxError(f'split="{split}" is not a split. Choose one of: {", ".join(SPLITS)}.')
    checkpoint = load_checkpoint(path)
    cfg = trusted_config(checkpoint, path, allow, config_dirs)
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
    load_weights(model, checkpoint, path)
    model.to(device)
    x, y = getattr(prepare(data, task.inputs, device), split)
    max_batches = Schedule.plan(cfg.trainer, len(data.train[0])).max_eval_batches
    mixed_precision = autocast(device, cfg.trainer.get("precision", "32"))
    metrics = evaluate(model, task, x, y, cfg.trainer.eval_batch_size, max_batches, mixed_precision)
    if not metrics:
        raise DlxError(f"The {split} split of this data set is empty (dataset.val_fraction=0?). Evaluate another split.")
    info = {"checkpoint": str(path), "split": split, "samples": min(len(x), max_batches * cfg.trainer.eval_batch_size)
            if max_batches else len(x), "step": checkpoint["state"]["step"], "model": cfg.model._target_,
            "dataset": cfg.dataset._target_, "device": device}
    n = info["samples"]
    return metrics, info, Evaluated(model, task, x[:n], y[:n], getattr(data, split)[0][:n], data.class_names,
                                    cfg.trainer.eval_batch_size, mixed_precision)
