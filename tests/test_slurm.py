"""Jobs on a real SLURM cluster: one node (this machine) that .ci/slurm-up starts, slurmctld queueing the jobs
and slurmd running them. A sweep through hydra/launcher=slurm (submitit); one run trained by the tasks of a job
(submitit's, and `srun dlx train`); jobs preempted (`scontrol requeue`, a time limit's SIGUSR2), requeued by
SLURM and resumed to the weights of a run never stopped; a task that fails alone.

Run with `pytest -m slurm` (one at a time: the node has this machine's cores, and SLURM queues the rest)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, REPO, dlx, pid_of_rank, start_dlx, summary_of, wait_for_step
from test_distributed import SHORT, assert_one_run_of_two_ranks

from dlx.store.checkpoint import load_checkpoint
from dlx.store.metrics import read_metrics

pytestmark = pytest.mark.slurm

# What this cluster's node offers a job: its CPU cores; no GPU, no memory accounting.
ON_THIS_NODE = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.mem_gb=null"]
# 162 steps an epoch, about 2 s on one core, with dropout: its random masks must resume exactly too.
LONG_JOB = ["model=ffn", "model.dropout=0.2", "trainer.batch_size=8", "trainer.log_every=20"]
FAULTS = REPO / "tests" / "faults"


def job_record(job: str, slurm: dict) -> dict:
    """What slurmctld knows of a job (scontrol show job): JobState, Restarts, NumTasks, RunTime..."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job], env={**ENV, **slurm}, capture_output=True,
                           text=True, check=True).stdout
    return dict(field.split("=", 1) for field in shown.split() if "=" in field)


def ended_job_record(job: str, slurm: dict, timeout: float = 300) -> dict:
    """The job's record once it ended (its result may be written while its processes exit)."""
    wait_for(lambda: job_record(job, slurm)["JobState"] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"),
             timeout)
    return job_record(job, slurm)


def assert_same_weights(run: Path, reference: Path) -> None:
    resumed = load_checkpoint(run / "checkpoints" / "last.ckpt")["model"]
    whole = load_checkpoint(reference / "checkpoints" / "last.ckpt")["model"]
    assert all(torch.equal(resumed[key], whole[key]) for key in whole)  # bit for bit


def test_a_sweep_runs_as_jobs_that_slurmctld_queues(workdir: Path, slurm: dict) -> None:
    result = dlx("train", "-m", *ON_THIS_NODE, "model=ffn,cnn", "trainer.max_epochs=1", "hydra.sweep.dir=sw",
                 cwd=workdir, env=slurm)
    assert "Sweep sw: 2 jobs" in result.stdout
    rows = {row["run"]: row for row in summary_of(workdir / "sw")["rows"]}
    assert {run: row["status"] for run, row in rows.items()} == {"0": "completed", "1": "completed"}
    jobs = [summary_of(workdir / "sw" / run)["slurm_job"] for run in ("0", "1")]
    records = [ended_job_record(job, slurm) for job in jobs]
    # One array job of two tasks (Hydra's launcher submits the sweep with sbatch --array), both run and done.
    assert {record["ArrayJobId"] for record in records} == {jobs[0].split("_")[0]}
    assert [record["JobState"] for record in records] == ["COMPLETED", "COMPLETED"]
    assert all(record["BatchHost"] == os.uname().nodename.split(".")[0] for record in records)


def test_the_tasks_of_a_submitit_job_train_one_run(workdir: Path, slurm: dict) -> None:
    dlx("train", "-m", *ON_THIS_NODE, "hydra.launcher.tasks_per_node=2", *SHORT, "hydra.sweep.dir=sw", cwd=workdir,
        env=slurm)
    summary = assert_one_run_of_two_ranks(workdir / "sw" / "0")
    assert summary["steps"] == 22
    record = ended_job_record(summary["slurm_job"], slurm)
    assert record["NumTasks"] == "2" and record["JobState"] == "COMPLETED"


def test_srun_tasks_train_one_run(workdir: Path, slurm: dict) -> None:
    """The job script a user writes: its srun starts the tasks, each becomes one rank (no submitit)."""
    script = f"srun {sys.executable} -m dlx train {' '.join(SHORT)} hydra.run.dir=run trainer.resume=auto"
    subprocess.run(["sbatch", "--wait", "--ntasks=2", "--output=job.out", f"--wrap={script}"], cwd=workdir,
                   env={**ENV, **slurm}, check=True, timeout=300)
    summary = assert_one_run_of_two_ranks(workdir / "run")
    assert summary["steps"] == 22 and len(list(workdir.glob("**/summary.json"))) == 1


def test_a_job_that_slurm_requeues_saves_and_resumes_to_the_same_weights(workdir: Path, slurm: dict) -> None:
    """`scontrol requeue`, as an administrator or a preemption without warning does: SLURM sends SIGTERM, then
    SIGKILL after its KillWait. dlx saves at the SIGTERM; the requeued job resumes from that step."""
    # About 30 s on a quiet machine (1,600 steps a second): still training when KillWait's 10 s have passed.
    job = [*LONG_JOB, "trainer.max_epochs=300"]
    process = start_dlx(["train", "-m", *ON_THIS_NODE, *job, "hydra.sweep.dir=sw"], workdir, env=slurm)
    run = workdir / "sw" / "0"
    try:
        wait_for_step(process, run / "metrics.jsonl", 200, timeout=180)
        requeued_at = max(row["step"] for row in read_metrics(run / "metrics.jsonl"))
        subprocess.run(["scontrol", "requeue", summary_of(run)["slurm_job"]], env={**ENV, **slurm}, check=True)
        _, stderr = process.communicate(timeout=400)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    summary = summary_of(run)
    assert summary["status"] == "completed"
    assert ended_job_record(summary["slurm_job"], slurm)["Restarts"] == "1"
    [restart] = summary["restarts"]
    assert restart["launcher"] == "slurm" and restart["count"] == 1
    # Saved at the SIGTERM (and at each validation until the SIGKILL): nothing before the requeue is lost.
    assert restart["resumed_from_step"] >= requeued_at
    log = (run / "train.log").read_text()
    assert "SIGTERM received under SLURM: saving last.ckpt" in log
    assert f"Resumed from {run.resolve() / 'checkpoints' / 'last.ckpt'} at step {restart['resumed_from_step']}" in log
    rows = read_metrics(run / "metrics.jsonl")
    assert [row["step"] for row in rows if row["split"] == "restart"] == [restart["resumed_from_step"]]
    dlx("train", *job, "hydra.run.dir=reference", cwd=workdir)
    assert_same_weights(run, workdir / "reference")


def test_a_job_at_its_time_limit_saves_requeues_and_resumes_to_the_same_weights(workdir: Path, slurm: dict) -> None:
    """A one-minute time limit, and SIGUSR2 10 s before it (sbatch --signal=USR2@10, from signal_delay_s; slurmctld
    checks every 30 s and sends it up to 30 s early): dlx saves and stops, submitit requeues the job, and SLURM
    starts it again in the same folder, until the run is done."""
    # About 95 s on a quiet machine (4,100 steps a second on an Intel Xeon, 2 cores): longer than an attempt trains
    # before the signal, which may come 20 s after the start. 800 epochs took 80 s until batches were gathered with
    # index_select, then 32 s, and the job ended before its signal.
    job = [*LONG_JOB, "trainer.max_epochs=2400"]
    dlx("train", "-m", *ON_THIS_NODE, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10",
        "hydra.launcher.max_num_timeout=6", *job, "hydra.sweep.dir=sw", cwd=workdir, env=slurm, timeout=600)
    run = workdir / "sw" / "0"
    summary = summary_of(run)
    assert summary["status"] == "completed"
    assert summary["restarts"], "the job ended before its time limit's signal: nothing was preempted"
    assert [restart["launcher"] for restart in summary["restarts"]] == ["slurm"] * len(summary["restarts"])
    assert "SIGUSR2 received: stopping after this step" in (run / "train.log").read_text()
    assert ended_job_record(summary["slurm_job"], slurm)["Restarts"] == str(len(summary["restarts"]))
    dlx("train", *job, "hydra.run.dir=reference", cwd=workdir)
    assert_same_weights(run, workdir / "reference")


@pytest.mark.parametrize("how", ["raises", "SIGKILL"])
def test_a_task_that_fails_alone_ends_the_job_within_seconds(how: str, workdir: Path, slurm: dict) -> None:
    """Rank 1 (SLURM's task 1) raises at step 5, or is killed; rank 0 finds out at its next collective, names
    rank 1 and its error, and the job ends: nothing waits for a collective's 30-minute timeout."""
    env = {**ENV, **slurm, "PYTHONPATH": os.pathsep.join([str(FAULTS), ENV.get("PYTHONPATH", "")]),
           "DLX_TEST_FAIL_RANK": "1" if how == "raises" else "", "DLX_TEST_FAIL_STEP": "5"}
    command = (f"srun {sys.executable} -m dlx train --config-dir {FAULTS / 'conf'} model=faulty_ffn "
               "trainer.max_epochs=100 trainer.log_every=1 hydra.run.dir=run")
    job = subprocess.run(["sbatch", "--parsable", "--ntasks=2", "--output=job.out", f"--wrap={command}"], cwd=workdir,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    if how == "SIGKILL":
        wait_for(lambda: (workdir / "run" / "metrics.jsonl").exists() and
                 len(read_metrics(workdir / "run" / "metrics.jsonl")) >= 5)
        os.kill(pid_of_rank({"SLURM_JOB_ID": job, "SLURM_PROCID": "1"}), signal.SIGKILL)
    failed_at = time.monotonic()
    record = ended_job_record(job, slurm)
    assert record["JobState"] == "FAILED"
    if how == "SIGKILL":
        assert time.monotonic() - failed_at < 30
    summary = summary_of(workdir / "run")
    assert summary["status"] == "failed" and summary["failed_rank"] == 1
    error = ("ValueError: the test's failure on rank 1 at step 5" if how == "raises"
             else "killed by a signal (SIGKILL, the out-of-memory killer)")
    assert summary["error"].startswith("Rank 1 of the run's 2 processes") and error in summary["error"]
    output = (workdir / "job.out").read_text()
    assert "error: Rank 1 of the run's 2 processes" in output and error in output


def wait_for(condition, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
