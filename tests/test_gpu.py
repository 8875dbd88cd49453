"""The CUDA path, run where a GPU is: `pytest -m gpu` (skipped on machines without one, such as CI).

Training on the GPU learns and `dlx eval` reproduces its numbers there and, within rounding, on the CPU; a run
killed on the GPU resumes to bit-identical weights (the CUDA generator is checkpointed, and trainer.deterministic
picks reproducible kernels); parallel joblib jobs share the GPUs; data-parallel training uses NCCL where there
are two GPUs and is refused clearly where there is one."""

import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import dlx, latest_run, start_dlx, summary_of, wait_for_step

from dlx.store.checkpoint import load_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cnn_learns_on_the_gpu_and_evaluates_the_same_there_and_on_the_cpu(workdir: Path) -> None:
    dlx("train", "model=cnn", "trainer.device=cuda", "trainer.precision=bf16-mixed", "augment.shift=1",
        "trainer.max_epochs=12", cwd=workdir)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["device"].startswith("cuda")
    assert summary["test"]["acc"] >= 0.9

    on_gpu = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir).stdout)
    assert on_gpu["metrics"] == summary["test"]
    on_cpu = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "trainer.device=cpu", "--json",
                            cwd=workdir).stdout)
    assert on_cpu["metrics"]["acc"] == pytest.approx(summary["test"]["acc"], abs=2 / on_cpu["samples"])
    assert on_cpu["metrics"]["loss"] == pytest.approx(summary["test"]["loss"], rel=0.02)


# Dropout, augmentation and (for the CNN) cuDNN's convolutions: each breaks bit-identity unless the CUDA
# generator is checkpointed and trainer.deterministic picks reproducible kernels.
KILLABLE = {
    "ffn": ["model=ffn", "model.hidden_sizes=[256,256]", "model.dropout=0.2", "trainer.max_epochs=150"],
    "cnn": ["model=cnn", "augment.shift=1", "trainer.max_epochs=100"],
}


@pytest.mark.parametrize("family", sorted(KILLABLE))
def test_a_run_killed_on_the_gpu_resumes_to_bit_identical_weights(family: str, workdir: Path) -> None:
    args = ["train", *KILLABLE[family], "trainer.device=cuda", "trainer.deterministic=true",
            "trainer.checkpoint_every=5", "trainer.log_every=1", "trainer.eval_every=30"]
    dlx(*args, "hydra.run.dir=uninterrupted", cwd=workdir)

    process = start_dlx([*args, "hydra.run.dir=killed"], workdir)
    wait_for_step(process, workdir / "killed" / "metrics.jsonl", 47)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["state"]["step"]
    assert 45 <= killed_at < summary_of(workdir / "uninterrupted")["steps"]

    dlx(*args, "hydra.run.dir=killed", "trainer.resume=auto", cwd=workdir)
    expected = load_checkpoint(workdir / "uninterrupted" / "checkpoints" / "last.ckpt")["model"]
    resumed = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["model"]
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), f"{key} differs"


def test_parallel_joblib_jobs_train_on_the_gpus(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    dlx("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.device=cuda",
        "trainer.seed=0,1", "trainer.max_epochs=3", "hydra.sweep.dir=sweep", cwd=workdir)
    summaries = [summary_of(workdir / "sweep" / job) for job in ("0", "1")]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert all(s["device"].startswith("cuda") for s in summaries)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_train_one_run_over_nccl(workdir: Path) -> None:
    dlx("train", "trainer.device=cuda", "trainer.devices=2", "trainer.max_epochs=3", cwd=workdir)
    summary = summary_of(latest_run(workdir))
    assert summary["status"] == "completed"
    distributed = summary["distributed"]
    assert distributed["world_size"] == 2 and distributed["backend"] == "nccl"
    assert len(set(distributed["weights_sha256_per_rank"])) == 1


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="for machines with one GPU")
def test_two_processes_on_one_gpu_are_refused_with_the_fix(workdir: Path) -> None:
    result = dlx("train", "trainer.device=cuda", "trainer.devices=2", "trainer.max_epochs=1", cwd=workdir,
                 expect=2)
    assert "shows 1 GPU(s)" in result.stderr and "Lower trainer.devices" in result.stderr
