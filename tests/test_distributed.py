"""One run trained by several processes, for real: gloo on the CPU, DistributedDataParallel, torch's elastic
launcher (trainer.devices=N), torchrun, submitit's tasks, and signals to the launching process."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, REPO, dlx, latest_run, pid_of_rank, summary_of, wait_for_step

from dlx.store.checkpoint import load_checkpoint
from dlx.store.metrics import read_metrics

SHORT = ["trainer.max_epochs=2", "trainer.log_every=5"]
TIMEOUT = 120  # a run that hangs (ranks waiting for each other) fails the test instead of blocking the suite


def assert_one_run_of_two_ranks(run: Path) -> dict:
    summary = summary_of(run)
    assert summary["status"] == "completed", summary.get("error")
    distributed = summary["distributed"]
    assert distributed["world_size"] == 2 and distributed["backend"] == "gloo"
    first, second = distributed["weights_sha256_per_rank"]
    assert first == second  # DDP kept the ranks' weights identical, bit for bit
    rows = [(r["step"], r["split"]) for r in read_metrics(run / "metrics.jsonl")]
    assert len(rows) == len(set(rows))  # written once, by rank 0
    return summary


def assert_eval_reproduces(run: Path, summary: dict, cwd: Path) -> None:
    result = dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=cwd)
    assert json.loads(result.stdout)["metrics"] == summary["test"]  # exactly: the batches' sums added in order


@pytest.mark.slow
def test_two_processes_train_one_run_that_a_single_process_evaluates(workdir: Path) -> None:
    # A sequence model (LSTM); test batches of 100: the 359 test digits make 4 batches, shared by the two ranks.
    result = dlx("train", "model=lstm", "model.hidden_size=32", "trainer.devices=2", "trainer.eval_batch_size=100",
                 *SHORT, cwd=workdir, timeout=TIMEOUT)
    run = latest_run(workdir)
    summary = assert_one_run_of_two_ranks(run)
    assert len(list((workdir / "outputs").glob("*/*/summary.json"))) == 1
    assert result.stdout.count("Run folder:") == 1 and "in each of 2 processes" in result.stdout
    rows = read_metrics(run / "metrics.jsonl")
    # 1,295 training digits: 647 per rank, 11 batches of 64 per epoch (the one digit left over sits it out).
    assert [r["step"] for r in rows if r["split"] == "val"] == [11, 22]
    assert summary["steps"] == 22 and summary["epochs"] == 2.0
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["config"]["trainer"]["devices"] == 2
    assert_eval_reproduces(run, summary, workdir)


def test_two_processes_follow_one_process_with_twice_the_batch(workdir: Path) -> None:
    """Rank r trains on every second sample of the epoch's order, from r on: the two ranks' batches of 32 are
    the one-process batch of 64, and DDP averages their gradients into its gradient."""
    same = ["dataset.val_fraction=0.105",  # 1,288 training digits: an even number, so no sample sits out
            "trainer.max_epochs=3", "trainer.log_every=1"]
    dlx("train", *same, "trainer.devices=2", "trainer.batch_size=32", "hydra.run.dir=two", cwd=workdir,
        timeout=TIMEOUT)
    dlx("train", *same, "trainer.batch_size=64", "hydra.run.dir=one", cwd=workdir)
    two, one = read_metrics(workdir / "two" / "metrics.jsonl"), read_metrics(workdir / "one" / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    assert len([r for r in one if r["split"] == "train"]) == 63  # 21 steps per epoch
    for row_two, row_one in zip(two, one):
        for key in ("loss", "acc"):
            if key in row_one:
                assert row_two[key] == pytest.approx(row_one[key], rel=1e-5), (row_one["step"], row_one["split"], key)
    weights_two = load_checkpoint(workdir / "two" / "checkpoints" / "last.ckpt")["model"]
    weights_one = load_checkpoint(workdir / "one" / "checkpoints" / "last.ckpt")["model"]
    for key in weights_one:  # the same up to the order in which the gradients' sums were added
        assert torch.allclose(weights_two[key], weights_one[key], rtol=1e-5, atol=1e-6), key


@pytest.mark.slow
def test_torchrun_trains_one_run_in_one_folder(workdir: Path) -> None:
    """Each rank composes its own config; rank 0's run folder (named by the time and a random id) is used by all."""
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dlx", "train",
         *SHORT], cwd=workdir, env=ENV, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    runs = list((workdir / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 1 and runs[0].parent == latest_run(workdir)
    summary = assert_one_run_of_two_ranks(runs[0].parent)
    assert summary["steps"] == 22
    assert_eval_reproduces(runs[0].parent, summary, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the launching process", "Ctrl-C in a terminal"])
def test_a_signal_stops_every_rank_after_the_same_step(how: str, workdir: Path) -> None:
    # The GAN, whose two networks are synchronised separately, resumes to the end after SIGTERM.
    model = ["model=gan"] if how.startswith("SIGTERM") else ["model.hidden_sizes=[256,256]"]
    args = ["trainer.devices=2", *model, "trainer.max_epochs=100", "trainer.log_every=1", "hydra.run.dir=run"]
    process = subprocess.Popen([sys.executable, "-m", "dlx", "train", *args], cwd=workdir, env=ENV, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True)  # a process group of its own, as a terminal's job
    wait_for_step(process, workdir / "run" / "metrics.jsonl", 10, TIMEOUT)
    if how == "Ctrl-C in a terminal":  # the terminal signals the whole foreground process group
        os.killpg(process.pid, signal.SIGINT)
        signal_number = signal.SIGINT
    else:
        process.send_signal(signal.SIGTERM)
        signal_number = signal.SIGTERM
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("the ranks did not stop") from None
    assert process.returncode == 128 + signal_number, stderr
    assert "Traceback" not in stderr and "Resume with: dlx train" in stderr
    saved = load_checkpoint(workdir / "run" / "checkpoints" / "last.ckpt")
    logged = max(r["step"] for r in read_metrics(workdir / "run" / "metrics.jsonl"))
    assert saved["state"]["step"] == logged >= 10  # the step in progress finished on both ranks and was saved
    assert len(saved["rng_per_rank"]) == 2  # each rank's random generators, to resume exactly
    assert summary_of(workdir / "run")["status"] == "interrupted"
    if how == "SIGTERM to the launching process":  # the printed command resumes in two processes
        resume = shlex.split(stderr.split("Resume with: dlx ")[1])
        resume = [a if not a.startswith("trainer.max_epochs=") else "trainer.max_epochs=4" for a in resume]
        dlx(*resume, "trainer.resume_allow_changes=true", cwd=workdir, timeout=TIMEOUT)
        summary = assert_one_run_of_two_ranks(workdir / "run")  # both networks of the GAN synchronised
        assert summary["steps"] == 44 and (workdir / "run" / "samples" / "step_0000044.png").is_file()
        assert_eval_reproduces(workdir / "run", summary, workdir)


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes_bit_identical(workdir: Path) -> None:
    args = ["trainer.devices=2", "model.dropout=0.2", "model.hidden_sizes=[256,256]", "trainer.max_epochs=8",
            "trainer.log_every=1", "trainer.batch_size=32"]
    dlx("train", *args, "hydra.run.dir=whole", cwd=workdir, timeout=TIMEOUT)
    process = subprocess.Popen([sys.executable, "-m", "dlx", "train", *args, "hydra.run.dir=run"], cwd=workdir,
                               env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    wait_for_step(process, workdir / "run" / "metrics.jsonl", 30, TIMEOUT)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    dlx(*shlex.split(stderr.split("Resume with: dlx ")[1]), cwd=workdir, timeout=TIMEOUT)
    whole = load_checkpoint(workdir / "whole" / "checkpoints" / "last.ckpt")["model"]
    resumed = load_checkpoint(workdir / "run" / "checkpoints" / "last.ckpt")["model"]
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)  # dropout masks too: per-rank generators

    def losses(run: str) -> list[tuple]:
        return [(r["step"], r["split"], r.get("loss")) for r in read_metrics(workdir / run / "metrics.jsonl")]

    assert losses("run") == losses("whole")


def submitit_job(args: list[str]) -> int:
    """What a submitit task runs: export the distributed environment, then train."""
    from dlx.parallel.rendezvous import export_submitit_environment
    from dlx.sweep.command import run_train

    assert export_submitit_environment()
    return run_train(args)


@pytest.mark.slow
def test_submitit_tasks_train_one_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's local executor starts the two tasks as SLURM would (one process per task, its rank in the
    environment); no folder is named, so the tasks must agree on rank 0's."""
    import submitit

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    # The tasks are new Python processes: they import this module (for submitit_job) from here.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    executor = submitit.LocalExecutor(folder=workdir / "submitit")
    executor.update_parameters(tasks_per_node=2, nodes=1, timeout_min=2)
    job = executor.submit(submitit_job, SHORT)
    assert job.results() == [0, 0]
    runs = list((workdir / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 1
    assert assert_one_run_of_two_ranks(runs[0].parent)["steps"] == 22


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*options: str, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """A torchrun agent (python -m torch.distributed.run OPTIONS -m dlx train ARGS), started in the background."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *options, "-m", "dlx", "train", *args],
                            cwd=cwd, env={**ENV, **(env or {})}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_two_torchrun_agents_as_two_nodes_train_one_run(workdir: Path) -> None:
    """Two machines, as two torchrun agents in folders of their own (each one's disk), one process each, meeting
    through c10d rendezvous on 127.0.0.1: one run, written by rank 0 alone, on the trajectory of one process
    with twice the batch."""
    same = ["dataset.val_fraction=0.105", "trainer.max_epochs=2", "trainer.log_every=1"]  # as the test above
    rendezvous = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
                  "--rdzv-id=two-nodes"]
    nodes = [workdir / "node0", workdir / "node1"]
    agents = []
    for rank, node in enumerate(nodes):
        node.mkdir()
        agents.append(torchrun(*rendezvous, f"--node-rank={rank}", args=[*same, "trainer.batch_size=32"], cwd=node))
    for agent in agents:
        _, stderr = agent.communicate(timeout=TIMEOUT)
        assert agent.returncode == 0, stderr
    # The agents' join order decides which node holds rank 0: that node has the run, the other no file at all.
    written = [[path for path in node.rglob("*") if path.is_file()] for node in nodes]
    assert sorted(map(bool, written)) == [False, True], written
    main = nodes[0] if written[0] else nodes[1]
    runs = list((main / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 1 and runs[0].parent == latest_run(main)
    assert_one_run_of_two_ranks(runs[0].parent)
    dlx("train", *same, "trainer.batch_size=64", "hydra.run.dir=one", cwd=workdir)
    two, one = read_metrics(runs[0].parent / "metrics.jsonl"), read_metrics(workdir / "one" / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    for row_two, row_one in zip(two, one):
        for key in ("loss", "acc"):
            if key in row_one:
                assert row_two[key] == pytest.approx(row_one[key], rel=1e-5), (row_one["step"], row_one["split"], key)


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_the_run_resumes_in_its_folder(workdir: Path) -> None:
    """--max-restarts=1: rank 1 killed with SIGKILL, torchrun's agent starts both ranks again; they continue in
    the run folder of the first attempt from its newest checkpoint, to the weights of a run never stopped."""
    args = ["model.dropout=0.2", "trainer.max_epochs=6", "trainer.log_every=1", "trainer.checkpoint_every=5"]
    agent = torchrun("--standalone", "--nproc-per-node=2", "--max-restarts=1", args=args, cwd=workdir)
    metrics = lambda: next(iter((workdir / "outputs").glob("*/*/metrics.jsonl")), workdir / "none")  # noqa: E731
    deadline = time.monotonic() + TIMEOUT
    while not metrics().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_for_step(agent, metrics(), 12, TIMEOUT)
    os.kill(pid_of_rank({"RANK": "1"}, under=agent.pid), signal.SIGKILL)
    killed_after = max(r["step"] for r in read_metrics(metrics()) if r["split"] == "train")
    _, stderr = agent.communicate(timeout=TIMEOUT)
    assert agent.returncode == 0, stderr
    runs = list((workdir / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 1, runs  # the restart found the first attempt's folder
    run = runs[0].parent
    summary = assert_one_run_of_two_ranks(run)
    [restart] = summary["restarts"]
    assert restart["launcher"] == "torchrun" and restart["count"] == 1
    # The newest checkpoint before the kill: at most checkpoint_every (5) steps lost.
    assert killed_after - 5 <= restart["resumed_from_step"] <= killed_after
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows if r["split"] == "restart"] == [restart["resumed_from_step"]]
    assert "Restarted by torchrun (restart 1)" in (run / "train.log").read_text()
    dlx("train", *args, "trainer.devices=2", "hydra.run.dir=whole", cwd=workdir, timeout=TIMEOUT)
    whole = load_checkpoint(workdir / "whole" / "checkpoints" / "last.ckpt")["model"]
    resumed = load_checkpoint(run / "checkpoints" / "last.ckpt")["model"]
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert [(r["step"], r["split"], r.get("loss")) for r in rows if r["split"] != "restart"] == \
        [(r["step"], r["split"], r.get("loss")) for r in read_metrics(workdir / "whole" / "metrics.jsonl")]


FAULTS = REPO / "tests" / "faults"


def start_faulty_run(launcher: str, fail_rank: str, workdir: Path) -> subprocess.Popen:
    """A two-process run of tests/faults' model, which raises on rank `fail_rank` at step 5 ('' for none)."""
    env = {"PYTHONPATH": os.pathsep.join([str(FAULTS), ENV.get("PYTHONPATH", "")]), "DLX_TEST_FAIL_RANK": fail_rank,
           "DLX_TEST_FAIL_STEP": "5"}
    args = [f"--config-dir={FAULTS / 'conf'}", "model=faulty_ffn", "trainer.max_epochs=100", "trainer.log_every=1",
            "hydra.run.dir=run"]
    if launcher == "torchrun":
        return torchrun("--standalone", "--nproc-per-node=2", args=args, cwd=workdir, env=env)
    return subprocess.Popen([sys.executable, "-m", "dlx", "train", *args, "trainer.devices=2"], cwd=workdir,
                            env={**ENV, **env}, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("launcher, failure", [
    ("trainer.devices", "rank 1 raises"),
    ("torchrun", "rank 1 killed"),
    pytest.param("torchrun", "rank 1 raises", marks=pytest.mark.slow),
    pytest.param("trainer.devices", "rank 0 killed", marks=pytest.mark.slow),
])
def test_a_rank_that_fails_alone_ends_the_run_within_seconds(launcher: str, failure: str, workdir: Path) -> None:
    """The others meet the failure at their next collective; they name the rank and its error (its own report in
    the run's store, or its stopped heartbeat) and end, without waiting for the collective's timeout."""
    rank = failure.split()[1]
    process = start_faulty_run(launcher, rank if failure.endswith("raises") else "", workdir)
    wait_for_step(process, workdir / "run" / "metrics.jsonl", 4, TIMEOUT)
    if failure.endswith("killed"):
        wait_for_step(process, workdir / "run" / "metrics.jsonl", 10, TIMEOUT)
        # Under torchrun, the worker whose environment says RANK=1; trainer.devices's ranks are spawned and
        # learn their rank after they start, and rank 0 wrote its pid in summary.json.
        pid = pid_of_rank({"RANK": rank}, under=process.pid) if launcher == "torchrun" \
            else summary_of(workdir / "run")["pid"]
        assert launcher == "torchrun" or rank == "0"
        os.kill(pid, signal.SIGKILL)
    failed_at = time.monotonic()
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert time.monotonic() - failed_at < 30  # seconds, against the collectives' 30-minute timeout
    assert process.returncode == 1, stderr
    error = ("ValueError: the test's failure on rank 1 at step 5" if failure.endswith("raises")
             else "killed by a signal (SIGKILL, the out-of-memory killer)")
    summary = summary_of(workdir / "run")
    assert summary["status"] == "failed" and summary["failed_rank"] == int(rank)
    assert summary["error"].startswith(f"Rank {rank} of the run's 2 processes") and error in summary["error"]
    if rank == "1":  # rank 0 says so itself (a killed rank 0 says nothing: the launcher does)
        assert f"error: Rank {rank} of the run's 2 processes" in stderr and error in stderr
    # The folder is made before training; a checkpoint in it is what there is to resume from.
    assert "Resume with: dlx train" in summary["error"] or not list((workdir / "run" / "checkpoints").glob("*.ckpt"))


def test_devices_must_be_a_positive_number(workdir: Path) -> None:
    result = dlx("train", "trainer.devices=0", cwd=workdir, expect=2)
    assert "trainer.devices=0 is not a number of processes" in result.stderr and "Traceback" not in result.stderr
