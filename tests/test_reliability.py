"""Faults injected for real: processes killed with SIGKILL (mid-epoch and mid-save), stopped with SIGTERM and
SIGINT, losses that explode, a disk that fills up. Nothing written before the fault may be lost or damaged."""

import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ENV, MODEL_DATA, dlx, start_dlx, summary_of, wait_for_step

from dlx.store.checkpoint import load_checkpoint
from dlx.store.metrics import read_metrics

# Long enough that the process can be killed half way, with saves in the middle of epochs (21 steps each).
RESUMABLE = {
    "ffn": ["model=ffn", "model.hidden_sizes=[256,256]", "model.dropout=0.2", "trainer.max_epochs=40"],
    "lstm": ["model=lstm", "model.hidden_size=32", "trainer.max_epochs=6"],
    "gan": ["model=gan", "trainer.max_epochs=20"],
    # Flips and shifts are drawn from the generator that checkpoints restore: a resumed run draws the same ones.
    "augmented_cnn": ["model=cnn", "augment.hflip=true", "augment.shift=1", "trainer.max_epochs=8"],
    # Sequence models of text, a Transformer and a recurrent one: blocks of a real corpus, read through the token
    # file's memory map.
    "gpt": ["model=gpt", *MODEL_DATA["gpt"], "trainer.batch_size=16", "trainer.max_epochs=4"],
    "lstm_lm": ["model=lstm_lm", *MODEL_DATA["lstm_lm"], "trainer.batch_size=16", "trainer.max_epochs=4"],
}
COMMON = ["trainer.checkpoint_every=5", "trainer.log_every=1", "trainer.eval_every=30"]


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return start_dlx(["train", *args], cwd, **kwargs)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A family's run done without interruption, to compare the interrupted one with: trained when first asked
    for (only the families selected are trained), then kept for the module."""
    runs: dict[str, Path] = {}

    def run_of(family: str) -> Path:
        if family not in runs:
            folder = tmp_path_factory.mktemp(family)
            dlx("train", *RESUMABLE[family], *COMMON, "hydra.run.dir=uninterrupted", cwd=folder)
            runs[family] = folder / "uninterrupted"
        return runs[family]

    return run_of


# The FFN in the default suite, the safety net of every change to the loop; the other families in the slow one.
@pytest.mark.parametrize("family", [family if family == "ffn" else pytest.param(family, marks=pytest.mark.slow)
                                    for family in sorted(RESUMABLE)])
def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(family: str, workdir: Path,
                                                                   uninterrupted: Callable[[str], Path]) -> None:
    args = RESUMABLE[family] + COMMON
    uninterrupted_run = uninterrupted(family)

    process = start([*args, "hydra.run.dir=killed"], workdir)
    wait_for_step(process, workdir / "killed" / "metrics.jsonl", 47)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["state"]
    total, epochs = summary_of(uninterrupted_run)["steps"], summary_of(uninterrupted_run)["epochs"]
    assert 45 <= killed_at["step"] < total and 0 < killed_at["batch_in_epoch"] < total / epochs  # really mid-epoch

    dlx("train", *args, "hydra.run.dir=killed", "trainer.resume=auto", cwd=workdir)
    assert_same_weights(final_weights(uninterrupted_run), final_weights(workdir / "killed"))
    # The metrics file continued: every step logged exactly once, as in the uninterrupted run.
    steps = [(r["step"], r["split"]) for r in read_metrics(workdir / "killed" / "metrics.jsonl")]
    expected = [(r["step"], r["split"]) for r in read_metrics(uninterrupted_run / "metrics.jsonl")]
    assert steps == expected
    assert summary_of(workdir / "killed")["test"] == summary_of(uninterrupted_run)["test"]


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_and_tell_how_to_resume(signal_number: int, workdir: Path,
                                                        uninterrupted: Callable[[str], Path]) -> None:
    args = RESUMABLE["ffn"] + COMMON
    process = start(args, workdir)
    metrics = next_run_metrics(workdir, process)
    wait_for_step(process, metrics, 30)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr and "Resume with: dlx train" in stderr
    run_dir = metrics.parent
    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state"]["step"]
    logged = max(r["step"] for r in read_metrics(metrics))
    assert saved == logged >= 30  # the step in progress finished and was saved
    assert summary_of(run_dir)["status"] == "interrupted"

    resume = shlex.split(stderr.split("Resume with: dlx ")[1])  # a command meant for a shell
    subprocess.run([sys.executable, "-m", "dlx", *resume], cwd=workdir, env=ENV, check=True, capture_output=True)
    assert summary_of(run_dir)["status"] == "completed"
    assert_same_weights(final_weights(uninterrupted("ffn")), final_weights(run_dir))


def next_run_metrics(workdir: Path, process: subprocess.Popen, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((workdir / "outputs").glob("*/*/metrics.jsonl"))
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    raise AssertionError("the run never wrote metrics")


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_complete_checkpoint(workdir: Path) -> None:
    """Save at every step a checkpoint big enough that saving is most of the step, and kill at random moments."""
    args = ["model.hidden_sizes=[1024,1024]", "trainer.max_epochs=50", "trainer.checkpoint_every=1",
            "trainer.log_every=1", "hydra.run.dir=run", "trainer.resume=auto"]
    last = workdir / "run" / "checkpoints" / "last.ckpt"
    caught_mid_save, steps = 0, [0]
    for attempt in range(8):
        process = start(args, workdir)
        previous = last.stat().st_ino if last.exists() else None
        deadline = time.monotonic() + 60
        while not last.exists() or last.stat().st_ino == previous:  # until this process has saved once
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            time.sleep(0.001)
        # Then kill it the moment a save is under way (its temporary file exists), or at a random moment.
        while attempt % 2 == 0 and not list(last.parent.glob(".*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.0002)
        time.sleep(0 if attempt % 2 == 0 else 0.001 * attempt)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        temporary = list(last.parent.glob(".*.tmp"))
        caught_mid_save += bool(temporary)
        for leftover in temporary:
            leftover.unlink()
        checkpoint = load_checkpoint(last)  # complete: it loads, with every part of the state
        assert {"model", "optimizers", "rng", "state", "config"} <= checkpoint.keys()
        assert len(checkpoint["model"]) == 6  # three linear layers, weight and bias each
        steps.append(checkpoint["state"]["step"])
        if caught_mid_save >= 2 and attempt >= 3:
            break
    assert steps == sorted(steps) and steps[-1] > steps[1]  # each run resumed where the last left off
    assert caught_mid_save >= 1, "no kill landed during a save; the test did not test anything"


def test_exploding_loss_stops_with_the_step_and_keeps_good_checkpoints(workdir: Path) -> None:
    result = dlx("train", "optimizer.lr=1e8", "trainer.checkpoint_every=1", "trainer.log_every=20",
                 "hydra.run.dir=run", cwd=workdir, expect=2)
    assert "Training diverged at step" in result.stderr and "optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr
    step = int(result.stderr.split("diverged at step ")[1].split(":")[0])
    assert step < 20  # named exactly, although the loss is only read every 20 steps
    last = workdir / "run" / "checkpoints" / "last.ckpt"
    if last.exists():
        checkpoint = load_checkpoint(last)
        assert checkpoint["state"]["step"] < step
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())
    assert summary_of(workdir / "run")["status"] == "failed"


def test_on_nonfinite_skip_skips_and_counts(workdir: Path) -> None:
    dlx("train", "optimizer.lr=1e8", "trainer.on_nonfinite=skip", "trainer.max_epochs=2", "hydra.run.dir=run",
        cwd=workdir)
    rows = [r for r in read_metrics(workdir / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert rows[-1]["skipped_steps"] > 0
    assert summary_of(workdir / "run")["status"] == "completed"


@pytest.mark.slow
def test_full_disk_during_a_save_keeps_the_previous_checkpoint(workdir: Path) -> None:
    dlx("train", "trainer.max_steps=20", "hydra.run.dir=run", cwd=workdir)
    before = (workdir / "run" / "checkpoints" / "last.ckpt").read_bytes()
    metrics_before = (workdir / "run" / "metrics.jsonl").read_text().splitlines()

    def small_disk() -> None:  # every file this process writes may hold at most 30 kB: the checkpoint does not fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    result = subprocess.run(
        [sys.executable, "-m", "dlx", "train", "trainer.max_steps=40", "hydra.run.dir=run", "trainer.resume=auto",
         "trainer.resume_allow_changes=true"], cwd=workdir, env=ENV, capture_output=True, text=True,
        preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr
    assert "Could not write the checkpoint" in result.stderr and "unchanged" in result.stderr
    assert (workdir / "run" / "checkpoints" / "last.ckpt").read_bytes() == before
    assert load_checkpoint(workdir / "run" / "checkpoints" / "last.ckpt")["state"]["step"] == 20
    assert not list((workdir / "run" / "checkpoints").glob(".*.tmp"))
    metrics_after = (workdir / "run" / "metrics.jsonl").read_text().splitlines()
    assert metrics_after[: len(metrics_before) - 1] == metrics_before[:-1]  # only the old test row was dropped


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused_with_a_diff(workdir: Path) -> None:
    dlx("train", "trainer.max_steps=10", "hydra.run.dir=run", cwd=workdir)
    result = dlx("train", "trainer.max_steps=10", "hydra.run.dir=run", "trainer.resume=auto", "optimizer.lr=0.05",
                 "model.hidden_sizes=[50]", cwd=workdir, expect=2)
    assert "Refused to resume" in result.stderr
    assert "optimizer.lr: 0.1 -> 0.05" in result.stderr and "model.hidden_sizes: [100] -> [50]" in result.stderr
    assert "trainer.resume_allow_changes=true" in result.stderr


def test_a_checkpoint_from_before_a_key_existed_resumes_when_the_key_keeps_its_old_behaviour() -> None:
    from dlx.config.diff import config_changes

    old = {"trainer": {"max_epochs": 5}, "model": {"hidden_sizes": [100]}}  # written before augment.* existed
    new = {"trainer": {"max_epochs": 5, "deterministic": False}, "model": {"hidden_sizes": [100]},
           "augment": {"hflip": False, "shift": 0}}
    assert config_changes(old, new) == []
    new["augment"]["shift"] = 1
    assert config_changes(old, new) == ["augment.shift: 0 -> 1"]


@pytest.mark.slow
def test_resume_auto_falls_back_from_a_damaged_last_checkpoint(workdir: Path) -> None:
    args = ["trainer.max_steps=40", "trainer.checkpoint_every=5", "trainer.eval_every=100", "hydra.run.dir=run"]
    dlx("train", *args[1:], "trainer.max_steps=15", "trainer.resume_allow_changes=true", cwd=workdir)
    checkpoints = workdir / "run" / "checkpoints"
    assert load_checkpoint(checkpoints / "previous.ckpt")["state"]["step"] == 10
    (checkpoints / "last.ckpt").write_bytes((checkpoints / "last.ckpt").read_bytes()[:4000])  # a damaged disk
    result = dlx("train", *args, "trainer.resume=auto", "trainer.resume_allow_changes=true", cwd=workdir)
    assert "skipping" in result.stdout and "last.ckpt" in result.stdout
    assert "Resumed from" in result.stdout and "previous.ckpt at step 10" in result.stdout
    assert summary_of(workdir / "run")["steps"] == 40


@pytest.mark.slow
def test_resume_from_a_path_continues_in_that_run_folder(workdir: Path) -> None:
    dlx("train", "trainer.max_steps=10", cwd=workdir)
    run_dir = (workdir / "outputs" / "latest").resolve()
    result = dlx("train", "trainer.max_steps=10", f"trainer.resume={run_dir}/checkpoints/last.ckpt", cwd=workdir)
    assert f"Run folder: {run_dir}" in result.stdout
    assert len(list((workdir / "outputs").glob("*/*/summary.json"))) == 1
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert sum(r["split"] == "test" for r in rows) == 1
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 10
    assert os.path.exists(run_dir / ".hydra" / "overrides.yaml")


@pytest.mark.slow
def test_resume_cannot_stretch_a_planned_schedule(workdir: Path) -> None:
    dlx("train", "scheduler=onecycle", "trainer.max_steps=20", "hydra.run.dir=run", cwd=workdir)
    result = dlx("train", "scheduler=onecycle", "trainer.max_steps=40", "hydra.run.dir=run", "trainer.resume=auto",
                 "trainer.resume_allow_changes=true", cwd=workdir, expect=2)
    assert "different run length" in result.stderr and "planned over 20 steps" in result.stderr
    assert "Traceback" not in result.stderr

