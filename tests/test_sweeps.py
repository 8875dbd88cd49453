"""Sweeps through the real CLI and Hydra's real sweepers and launchers: summaries, dry runs, continued
sweeps, Optuna (more in test_search.py), joblib, submitit (its local executor runs the same launcher code as
SLURM jobs)."""

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import dlx, start_dlx, summary_of

from dlx.sweep.machine import GpuClaim

SMOKE = "trainer.smoke=true"


def sweep_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def wait_for(condition, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status_of(run_dir: Path) -> str | None:
    try:
        return summary_of(run_dir)["status"]
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2x2 sweep that really trains (2 epochs), shared by the tests that only read it."""
    cwd = tmp_path_factory.mktemp("grid")
    result = dlx("train", "-m", "model=ffn,cnn", "optimizer.lr=0.1,0.01", "trainer.max_epochs=2",
                 "hydra.sweep.dir=sw", cwd=cwd)
    return cwd, result


def test_multirun_prints_and_saves_a_table_sorted_by_the_monitored_metric(grid_sweep) -> None:
    cwd, result = grid_sweep
    summary = sweep_summary(cwd / "sw")
    rows = summary["rows"]
    assert len(rows) == 4 and {row["status"] for row in rows} == {"completed"}
    values = [row["best val/acc"] for row in rows]
    assert values == sorted(values, reverse=True)  # accuracy: best is highest
    # The table names what differs between jobs, and each row is the job's own summary.
    assert summary["columns"][:3] == ["run", "model", "optimizer.lr"]
    for row in rows:
        job = summary_of(cwd / "sw" / row["run"])
        assert row["best val/acc"] == job["best"]["value"] and row["test/acc"] == job["test"]["acc"]
        assert f"model={row['model']}" in job["overrides"]
        assert "test  (best checkpoint" in (cwd / "sw" / row["run"] / "train.log").read_text()  # every job logs
    with open(cwd / "sw" / "summary.csv", newline="") as file:
        csv_rows = list(csv.DictReader(file))
    assert [r["run"] for r in csv_rows] == [r["run"] for r in rows]
    assert summary["best"]["run"] == rows[0]["run"]
    assert "4 jobs, best first" in result.stdout and f"Best: job {rows[0]['run']}" in result.stdout


def test_a_failed_job_is_reported_and_the_others_complete(workdir: Path) -> None:
    result = dlx("train", "-m", "dataset.val_fraction=0.1,-1,0.2", SMOKE, "hydra.sweep.dir=sw", cwd=workdir,
                 expect=2)
    assert "job 1 (dataset.val_fraction=-1) will fail" in result.stderr  # warned before anything ran
    rows = {row["run"]: row for row in sweep_summary(workdir / "sw")["rows"]}
    assert rows["1"]["status"] == "failed" and "val_fraction=-1 must be a fraction" in rows["1"]["error"]
    assert rows["0"]["status"] == rows["2"]["status"] == "completed"
    assert "1 of 3 job(s) did not complete (job 1: failed)" in result.stderr


def test_dry_run_lists_and_checks_every_job_without_creating_anything(workdir: Path) -> None:
    result = dlx("train", "-m", "model=ffn,cnn", "optimizer.lr=0.1,0.01", "--dry-run", cwd=workdir)
    assert "4 job(s)" in result.stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("│")]
    assert rows == [["0", "ffn", "0.1", "valid"], ["1", "ffn", "0.01", "valid"],
                    ["2", "cnn", "0.1", "valid"], ["3", "cnn", "0.01", "valid"]]
    bad = dlx("train", "-m", "model=ffn,cnn", "trainer.batch_size=32,0", "--dry-run", cwd=workdir, expect=2)
    assert "2 of 4 job config(s) are invalid" in bad.stderr and "batch_size" in bad.stdout
    assert not (workdir / "outputs").exists()


@pytest.mark.slow
def test_an_interrupted_sweep_continues_where_it_stopped(workdir: Path) -> None:
    args = ["train", "-m", "trainer.seed=1,2,3", "trainer.max_epochs=40", "trainer.checkpoint_every=10",
            "hydra.sweep.dir=sw"]
    sweep = workdir / "sw"
    process = start_dlx(args, workdir)
    try:
        wait_for(lambda: status_of(sweep / "0") == "completed" and (sweep / "1" / "checkpoints" / "last.ckpt").exists(),
                 what="job 0 done and job 1 under way")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT
    assert "Continue it (finished jobs are skipped) with: dlx train -m trainer.seed=1,2,3" in err
    assert "hydra.sweep.dir=sw" in err
    assert status_of(sweep / "1") == "interrupted" and not (sweep / "2").exists()
    finished = (sweep / "0" / "summary.json").read_text()

    # A changed sweep is refused before anything runs.
    changed = dlx(*[a.replace("1,2,3", "1,2,4") for a in args], cwd=workdir, expect=2)
    assert "Refused to continue the sweep in sw" in changed.stderr

    result = dlx(*args, cwd=workdir)
    assert "Job 0 (trainer.seed=1 trainer.max_epochs=40 trainer.checkpoint_every=10) already completed" in result.stdout
    assert (sweep / "0" / "summary.json").read_text() == finished  # not run again
    assert "Resumed from" in (sweep / "1" / "train.log").read_text()
    rows = sweep_summary(sweep)["rows"]
    assert sorted(row["run"] for row in rows) == ["0", "1", "2"]
    assert {row["status"] for row in rows} == {"completed"}
    for job in ("0", "1", "2"):  # every step logged once, the resumed job included
        logged = [(row["split"], row["step"]) for row in map(json.loads, (sweep / job / "metrics.jsonl").open())]
        assert len(logged) == len(set(logged))
        assert summary_of(sweep / job)["steps"] == summary_of(sweep / "0")["steps"]


@pytest.mark.slow
def test_continuing_a_sweep_whose_config_files_changed_is_refused(workdir: Path) -> None:
    conf = workdir / "my_conf" / "model"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text("defaults: [ffn]\nhidden_sizes: [8]\n")
    args = ["train", "-m", "--config-dir=my_conf", "model=tiny", "trainer.seed=1,2", SMOKE, "hydra.sweep.dir=sw"]
    dlx(*args, cwd=workdir)
    (conf / "tiny.yaml").write_text("defaults: [ffn]\nhidden_sizes: [16]\n")
    result = dlx(*args, cwd=workdir, expect=2)
    assert "the config of job 0 changed since it started (model.hidden_sizes: [8] -> [16])" in result.stderr


@pytest.mark.slow
def test_an_optuna_search_records_failed_trials_and_its_study_continues(workdir: Path) -> None:
    storage = f"sqlite:///{workdir / 'study.db'}"
    # batch size 0 is impossible: the trials that draw it fail, and the search goes on around them.
    common = ["train", "-m", "hparams_search=ffn_digits", "trainer.max_epochs=2", "trainer.batch_size=choice(32,0)",
              f"hydra.sweeper.storage={storage}"]
    failed = dlx(*common, "hydra.sweeper.n_trials=5", "hydra.sweep.dir=search1", cwd=workdir, expect=2)
    assert "did not complete" in failed.stderr and "trainer.batch_size=0 is impossible" in failed.stderr
    summary = sweep_summary(workdir / "search1")
    statuses = {row["run"]: row["status"] for row in summary["rows"]}
    assert len(statuses) == 5 and "failed" in statuses.values() and list(statuses.values()).count("completed") >= 2
    import optuna

    study = optuna.load_study(study_name="ffn_digits", storage=storage)
    assert {str(t.number): t.state.name for t in study.trials} == {
        run: {"completed": "COMPLETE", "failed": "FAIL"}[status] for run, status in statuses.items()}
    best = summary["rows"][0]
    assert best["best val/acc"] == study.best_value == summary["study"]["best"]["values"]["val/acc"]
    ran_with = dict(o.split("=", 1) for o in summary_of(workdir / "search1" / best["run"])["overrides"])
    for name, value in study.best_params.items():  # the best job ran with Optuna's best parameters
        assert ran_with[name] == str(value), (name, ran_with, study.best_params)

    # The same storage and study name continue the study in a new sweep folder, up to its n_trials.
    dlx(*common, "hydra.sweeper.n_trials=7", "hydra.sweep.dir=search2", cwd=workdir, expect=None)
    assert len(optuna.load_study(study_name="ffn_digits", storage=storage).trials) == 7
    assert sorted(row["run"] for row in sweep_summary(workdir / "search2")["rows"]) == ["5", "6"]


def test_a_search_in_the_wrong_direction_stops_with_a_fix_before_any_trial(workdir: Path) -> None:
    result = dlx("train", "-m", "hparams_search=ffn_digits", "dataset=diabetes", "loss=mse",
                 "hydra.sweeper.n_trials=3", SMOKE, "hydra.sweep.dir=sw", cwd=workdir, expect=2)
    assert "hydra.sweeper.direction=maximize, but val/loss is best at its minimum" in result.stderr
    assert "Pass hydra.sweeper.direction=minimize" in result.stderr
    assert not (workdir / "sw").exists()  # nothing ran, no study was created


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_write_the_same_summary(workdir: Path, launcher: str, grid_sweep) -> None:
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    dlx("train", "-m", f"hydra/launcher={launcher}", *extra, "model=ffn,cnn", "optimizer.lr=0.1,0.01",
        "trainer.max_epochs=2", "hydra.sweep.dir=sw", cwd=workdir)
    summary = sweep_summary(workdir / "sw")
    reference = sweep_summary(grid_sweep[0] / "sw")
    assert summary["columns"] == reference["columns"]
    # Same jobs, same seeds, same numbers, whichever processes ran them.
    by_run = {row["run"]: row for row in reference["rows"]}
    for row in summary["rows"]:
        assert row["status"] == "completed"
        assert math.isclose(row["best val/acc"], by_run[row["run"]]["best val/acc"])


@pytest.mark.slow
def test_a_preempted_submitit_job_requeues_and_resumes_to_the_same_weights(workdir: Path) -> None:
    job = ["model=ffn", "model.dropout=0.2", "trainer.max_epochs=25", "trainer.checkpoint_every=5"]
    process = start_dlx(["train", "-m", "hydra/launcher=submitit_local", *job, "hydra.sweep.dir=sw"], workdir)
    run_dir = workdir / "sw" / "0"
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), what="the job's first checkpoint")
        # SIGUSR2 is what SLURM and submitit send before preemption: dlx saves, submitit requeues.
        subprocess.run(["kill", "-USR2", str(summary_of(run_dir)["pid"])], check=True)
        out, err = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 0, err
    log = (run_dir / "train.log").read_text()
    assert "SIGUSR2 received: stopping after this step" in log and "Resumed from" in log
    assert summary_of(run_dir)["status"] == "completed"
    dlx("train", *job, "hydra.run.dir=reference", cwd=workdir)
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["model"]
    reference = torch.load(workdir / "reference" / "checkpoints" / "last.ckpt", weights_only=True)["model"]
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)


def test_runs_lists_filters_and_ranks_runs(grid_sweep) -> None:
    cwd, _ = grid_sweep
    everything = json.loads(dlx("runs", "sw", "--json", cwd=cwd).stdout)
    assert len(everything) == 4 and {row["dataset"] for row in everything} == {"digits"}
    cnn = json.loads(dlx("runs", "sw", "--model", "cnn", "--json", cwd=cwd).stdout)
    assert {row["model"] for row in cnn} == {"cnn"} and len(cnn) == 2
    best = json.loads(dlx("runs", "sw", "--best", "1", "--json", cwd=cwd).stdout)
    assert best[0]["best val/acc"] == max(row["best val/acc"] for row in everything)
    table = dlx("runs", "sw", cwd=cwd).stdout
    assert "4 run(s) under sw, best first" in table
    missing = dlx("runs", "nowhere", cwd=cwd, expect=2)
    assert "nowhere is not a folder" in missing.stderr


def test_parallel_jobs_each_claim_their_own_gpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the lock folder, per machine
    gpus = ["GPU-aaaa", "GPU-bbbb"]
    first, second, third = GpuClaim(), GpuClaim(), GpuClaim()
    assert first.acquire(gpus) == 0
    # Another process sees the first GPU taken (a real flock, as two joblib workers would).
    probe = ("import sys, tempfile; tempfile.tempdir = sys.argv[1]; from dlx.sweep.machine import GpuClaim; "
             "print(GpuClaim().acquire(['GPU-aaaa', 'GPU-bbbb']))")
    assert subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                          check=True).stdout.strip() == "1"
    assert second.acquire(gpus) == 1
    assert third.acquire(gpus) is None  # all taken: the caller shares one and says so
    first.release()
    assert third.acquire(gpus) == 0


def test_a_missing_launcher_plugin_names_the_extra_to_install() -> None:
    from hydra.errors import MissingConfigException

    from dlx.config.explain import explain_composition_error

    err = MissingConfigException("missing", missing_cfg_file="hydra/launcher/joblib", options=["basic"])
    message = explain_composition_error(err)
    assert message.startswith("hydra/launcher=joblib comes from hydra-joblib-launcher, which is not installed")
    assert 'pip install "dlx[sweep]"' in message
