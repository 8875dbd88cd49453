"""What a hostile or careless user does, injected for real through the real CLI: SIGTERM to a parallel sweep (real
signals to real joblib workers), two runs in one run folder (one after the other, and at once), links planted
in a run folder (real symlinks), a read-only checkpoints folder, damaged and altered files, and the mistakes that
used to end in a traceback or a misleading message. Each must leave nothing lost, and say what happened in one
paragraph."""

import base64
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENV, dlx, start_dlx, summary_of, wait_for_step

USER_ERROR = 2
SMOKE = "trainer.smoke=true"


def failing(*args: str, cwd: Path, env: dict | None = None) -> str:
    """Run dlx ARGS, expect a user error, return stderr (checked to be a message, not a traceback)."""
    result = dlx(*args, cwd=cwd, expect=USER_ERROR, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert "error:" in result.stderr, result.stderr
    return result.stderr


def wait_for(condition, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


# --- 1. SIGTERM to a parallel sweep -----------------------------------------------------------------------------


def stop_a_parallel_sweep(workdir: Path, launcher: list[str], how: str) -> tuple[subprocess.Popen, str, list[int]]:
    """A sweep of two long jobs side by side; once both have saved a checkpoint, SIGTERM to the sweep's process
    (or Ctrl-C to its process group); returns the process, its stderr, and the job processes' pids."""
    args = ["train", "-m", *launcher, "trainer.seed=1,2", "trainer.max_epochs=500", "trainer.checkpoint_every=5",
            "hydra.sweep.dir=sw"]
    process = start_dlx(args, workdir, start_new_session=True)
    jobs = [workdir / "sw" / job for job in ("0", "1")]
    pids: list[int] = []
    try:
        wait_for(lambda: all((job / "checkpoints" / "last.ckpt").exists() for job in jobs), what="both jobs' first save")
        pids = [summary_of(job)["pid"] for job in jobs]
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        for pid in pids:  # whatever happened, leave no worker training behind this test
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    return process, stderr, pids


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C to the process group"])
def test_a_stopped_joblib_sweep_stops_its_workers_which_save_and_it_says_how_to_continue(workdir: Path,
                                                                                          how: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    process, stderr, pids = stop_a_parallel_sweep(workdir, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], how)
    time.sleep(1)  # the launcher's own ends, if any were late
    stray = [pid for pid in pids if alive(pid)]
    assert not stray, f"workers {stray} still run after the sweep ended:\n{stderr}"
    signal_number = signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
    assert process.returncode == 128 + signal_number, stderr
    assert "Continue it (finished jobs are skipped) with: dlx train -m hydra/launcher=joblib" in stderr, stderr
    for job in ("0", "1"):  # each job stopped after a step, saved that very step, and says so
        summary = summary_of(workdir / "sw" / job)
        assert summary["status"] == "interrupted", summary
        saved = torch.load(workdir / "sw" / job / "checkpoints" / "last.ckpt", weights_only=True)["state"]["step"]
        assert f"after step {saved};" in summary["error"], (saved, summary["error"])
    table = json.loads((workdir / "sw" / "summary.json").read_text())
    assert [row["status"] for row in table["rows"]] == ["interrupted", "interrupted"]


@pytest.mark.slow
def test_sigterm_to_a_submitit_local_sweep_stops_its_jobs_which_save(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    process, stderr, pids = stop_a_parallel_sweep(workdir, ["hydra/launcher=submitit_local"], "SIGTERM")
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Continue it (finished jobs are skipped) with:" in stderr
    assert not [pid for pid in pids if alive(pid)]
    assert {summary_of(workdir / "sw" / job)["status"] for job in ("0", "1")} == {"interrupted"}


# --- 2. Two runs in one run folder ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_in_a_folder_that_holds_one_is_refused_and_changes_nothing(workdir: Path) -> None:
    dlx("train", SMOKE, "hydra.run.dir=run", cwd=workdir)
    run = workdir / "run"
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    stderr = failing("train", SMOKE, "model=cnn", "hydra.run.dir=run", cwd=workdir)
    assert "run already holds a completed run of 2 steps" in stderr and "trainer.overwrite=true" in stderr
    after = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    assert after == before  # .hydra/ included: nothing of the first run was replaced, nothing was mixed in

    # Resuming it is what the folder is for; replacing it, when asked to, leaves nothing of the first run.
    dlx("train", SMOKE, "hydra.run.dir=run", "trainer.resume=auto", cwd=workdir)
    dlx("train", SMOKE, "model=cnn", "hydra.run.dir=run", "trainer.overwrite=true", cwd=workdir)
    assert summary_of(run)["choices"]["model"] == "cnn"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(row["split"], row["step"]) for row in rows] == [("train", 1), ("train", 2), ("val", 2), ("test", 2)]
    assert (run / "train.log").read_text().count("Run folder:") == 1


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_step_leaves_its_folder_to_the_corrected_command(workdir: Path) -> None:
    """A misnamed column fails before training: the same command, corrected, runs in the same folder."""
    (workdir / "rows.csv").write_text("".join(f"{i % 7},{i % 3},{'yes' if i % 2 else 'no'}\n" for i in range(60)))
    (workdir / "rows.csv").write_text("a,b,label\n" + (workdir / "rows.csv").read_text())
    table = ["dataset=table", "dataset.path=rows.csv", "model=ffn", "hydra.run.dir=run"]
    stderr = failing("train", SMOKE, *table, "dataset.target=lable", cwd=workdir)
    assert '"label"' in stderr and summary_of(workdir / "run")["status"] == "failed"
    dlx("train", SMOKE, *table, "dataset.target=label", cwd=workdir)
    assert summary_of(workdir / "run")["status"] == "completed"
    assert (workdir / "run" / "train.log").read_text().count("Run folder:") == 1


@pytest.mark.slow
def test_a_run_folder_being_trained_is_refused_to_a_second_run(workdir: Path) -> None:
    first = start_dlx(["train", "trainer.max_epochs=400", "hydra.run.dir=run"], workdir)
    try:
        wait_for_step(first, workdir / "run" / "metrics.jsonl", 50)
        stderr = failing("train", SMOKE, "hydra.run.dir=run", "trainer.overwrite=true", cwd=workdir)
        assert f"run is being trained right now by process {first.pid} on {platform.node()}" in stderr
        assert summary_of(workdir / "run")["pid"] == first.pid  # the first run's summary, not the second's
    finally:
        first.kill()
        first.communicate()


# --- 3. Links planted in a run folder ---------------------------------------------------------------------------


@pytest.fixture
def smoke_run(workdir: Path) -> Path:
    dlx("train", SMOKE, "hydra.run.dir=run", cwd=workdir)
    return workdir / "run"


@pytest.mark.slow
def test_a_report_embeds_no_file_a_link_in_the_run_folder_points_to(workdir: Path, smoke_run: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    secret = workdir / "secret.png"
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8)).save(secret)
    (smoke_run / "samples").mkdir()
    (smoke_run / "samples" / "step_9999999.png").symlink_to(secret)
    secret_config = workdir / "secret.yaml"
    secret_config.write_text("password: hunter2\n")
    (smoke_run / "config.yaml").unlink()
    (smoke_run / "config.yaml").symlink_to(secret_config)
    dlx("report", str(smoke_run), cwd=workdir)
    page = (smoke_run / "report.html").read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert "hunter2" not in page
    assert page.count("is a symbolic link") == 2


@pytest.mark.slow
def test_resume_and_eval_write_no_file_through_a_link(workdir: Path, smoke_run: Path) -> None:
    victims = {}
    for name in ("config.yaml", "model_summary.txt"):
        victims[name] = workdir / f"victim_{name}"
        victims[name].write_text("mine\n")
        (smoke_run / name).unlink()
        (smoke_run / name).symlink_to(victims[name])
    (workdir / "elsewhere").mkdir()
    (smoke_run / "eval").symlink_to(workdir / "elsewhere", target_is_directory=True)
    dlx("train", SMOKE, "hydra.run.dir=run", "trainer.resume=auto", cwd=workdir)
    for name, victim in victims.items():  # the links were replaced by the run's own files
        assert victim.read_text() == "mine\n"
        assert not (smoke_run / name).is_symlink() and (smoke_run / name).stat().st_size > 10
    result = dlx("eval", str(smoke_run / "checkpoints" / "best.ckpt"), cwd=workdir)
    assert "is a symbolic link" in result.stderr and "PNGs were not saved" in result.stderr
    assert list((workdir / "elsewhere").iterdir()) == []

    # A log or metrics file that is a link is refused, and what it points to is left alone.
    victim = workdir / "victim.log"
    victim.write_text("mine\n")
    (smoke_run / "train.log").unlink()
    (smoke_run / "train.log").symlink_to(victim)
    stderr = failing("train", SMOKE, "hydra.run.dir=run", "trainer.resume=auto", cwd=workdir)
    assert "train.log is a symbolic link" in stderr
    assert victim.read_text() == "mine\n"


def test_cp_refuses_a_destination_that_is_a_link(workdir: Path) -> None:
    (workdir / "dangling.yaml").symlink_to(workdir / "created_through_the_link.yaml")
    stderr = failing("cp", "model/cnn", "dangling.yaml", cwd=workdir)
    assert "is a symbolic link" in stderr
    assert not (workdir / "created_through_the_link.yaml").exists()
    (workdir / "target.yaml").write_text("mine\n")
    (workdir / "live.yaml").symlink_to(workdir / "target.yaml")
    assert "even with --force" in failing("cp", "model/cnn", "live.yaml", "--force", cwd=workdir)
    assert (workdir / "target.yaml").read_text() == "mine\n"


# --- 5. Tracebacks where a paragraph is promised ----------------------------------------------------------------


MISTAKES = [
    (["trainer.seed=-1"], ["trainer.seed=-1 is out of range", "from 0 to"]),
    (["trainer.seed=4294967296"], ["trainer.seed=4294967296 is out of range"]),
    (["model=cnn", "model.kernel_size=0"], ["model.kernel_size=0 is impossible", "1 or more"]),
    (["model.hidden_sizes=64,32"], ["several values", "model.hidden_sizes=[64,32]", "add -m"]),
    (["model=ffn,cnn"], ["several model options", "add -m"]),
    # 6. messages that named the wrong cause
    (["model=cnn", "dataset=breast_cancer"], ["model=cnn takes images", "[30]", "model=ffn"]),
    (["model.hidden_sizes=[0]"], ["model.hidden_sizes=[0] is impossible"]),
]


@pytest.mark.parametrize("overrides, fragments", MISTAKES, ids=[" ".join(o) for o, _ in MISTAKES])
def test_mistakes_that_were_tracebacks_or_misleading_are_one_paragraph(workdir: Path, overrides: list[str],
                                                                        fragments: list[str]) -> None:
    stderr = failing("train", *overrides, SMOKE, cwd=workdir)
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"


@pytest.mark.slow
def test_a_checkpoints_folder_that_became_read_only_stops_the_run_before_its_first_step(workdir: Path) -> None:
    dlx("train", "trainer.max_epochs=1", "hydra.run.dir=run", cwd=workdir)
    checkpoints = workdir / "run" / "checkpoints"
    steps_before = (workdir / "run" / "metrics.jsonl").read_text()
    checkpoints.chmod(0o555)
    # root may write anywhere: the run drops that power, as a normal user has none of it
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    if prefix and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be made here")
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "dlx", "train", "trainer.max_epochs=2", "hydra.run.dir=run",
                                 "trainer.resume=auto", "trainer.resume_allow_changes=true"], cwd=workdir, env=ENV,
                                capture_output=True, text=True, timeout=300)
    finally:
        checkpoints.chmod(0o755)
    assert result.returncode == USER_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert "Cannot write checkpoints in" in result.stderr and "Permission denied" in result.stderr
    trained = [line for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()
               if line not in steps_before and '"train"' in line]
    assert trained == []  # refused before the first step, not after an epoch's work


def test_runs_skips_a_malformed_summary_with_a_warning_and_lists_the_others(workdir: Path, smoke_run: Path) -> None:
    for name, text in [("list", "[1, 2]"), ("types", json.dumps({"status": "completed", "best": {"value": "high"}}))]:
        (workdir / "outputs" / name).mkdir(parents=True)
        (workdir / "outputs" / name / "summary.json").write_text(text)
    shutil.copytree(smoke_run, workdir / "outputs" / "good")
    result = dlx("runs", "--json", cwd=workdir)
    assert [row["run"] for row in json.loads(result.stdout)] == ["good"]
    assert "holds a JSON list, not an object" in result.stderr
    assert '"best.value" is "high", not a number' in result.stderr
    assert "Traceback" not in result.stderr


def write_idx(path: Path, array: np.ndarray, extra: bytes = b"") -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes() + extra)


def idx_folder(root: Path, test_size: int = 8, extra: bytes = b"") -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 255, (60, 8, 8)))
    write_idx(root / "train-labels-idx1-ubyte", rng.integers(0, 10, 60), extra)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 255, (20, test_size, test_size)))
    write_idx(root / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 20))
    return root


@pytest.mark.parametrize("make, fragments", [
    (lambda root: idx_folder(root, test_size=6), ["training and test images differ in size", "8x8", "6x6"]),
    (lambda root: idx_folder(root, extra=b"\x01\x02"), ["longer than its header says", "2 more bytes"]),
    (lambda root: (root.write_text("not a folder"), root)[1], ["is a file, not a folder"]),
], ids=["sizes differ", "longer than its header", "root is a file"])
def test_idx_files_that_do_not_fit_are_named(workdir: Path, make, fragments: list[str]) -> None:
    root = make(workdir / "data")
    stderr = failing("train", "dataset=mnist", f"dataset.root={root}", "model=cnn", SMOKE, cwd=workdir)
    for fragment in fragments:
        assert fragment in stderr, stderr


# --- 6. Messages that named the wrong cause ---------------------------------------------------------------------


@pytest.mark.slow
def test_eval_and_predict_take_a_run_folder(workdir: Path, smoke_run: Path) -> None:
    evaluated = json.loads(dlx("eval", "run", "--json", cwd=workdir).stdout)
    assert evaluated["checkpoint"] == str(Path("run") / "checkpoints" / "best.ckpt")
    assert evaluated["metrics"] == summary_of(smoke_run)["test"]


def test_ctrl_c_while_the_best_checkpoint_is_tested_says_so_and_how_to_finish(workdir: Path) -> None:
    # A large test split in small batches: its evaluation takes seconds, long enough to be interrupted.
    process = start_dlx(["train", "dataset=synthetic", "dataset.num_samples=300000", "dataset.test_fraction=0.9",
                         "dataset.val_fraction=0.01", "trainer.max_steps=3", "trainer.eval_every=3",
                         "trainer.eval_batch_size=4", "hydra.run.dir=run"], workdir)
    metrics = workdir / "run" / "metrics.jsonl"
    try:
        wait_for(lambda: metrics.exists() and '"val"' in metrics.read_text(), what="the last validation")
        wait_for(lambda: (workdir / "run" / "checkpoints" / "best.ckpt").exists(), what="the last save")
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "while testing the best checkpoint, after training ended at step 3" in stderr, stderr
    assert "Resume with: dlx train" in stderr and "trainer.resume=" in stderr
    assert summary_of(workdir / "run")["status"] == "interrupted"


@pytest.mark.slow
def test_resume_auto_with_every_checkpoint_damaged_refuses_unless_told_to_start_over(workdir: Path,
                                                                                     smoke_run: Path) -> None:
    for path in (smoke_run / "checkpoints").glob("*.ckpt"):
        path.write_bytes(path.read_bytes()[:100])
    stderr = failing("train", SMOKE, "hydra.run.dir=run", "trainer.resume=auto", cwd=workdir)
    assert "found no usable checkpoint" in stderr and "trainer.overwrite=true" in stderr
    result = dlx("train", SMOKE, "hydra.run.dir=run", "trainer.resume=auto", "trainer.overwrite=true", cwd=workdir)
    assert "starts over from scratch" in result.stdout
    assert summary_of(smoke_run)["status"] == "completed"


def test_a_checkpoint_of_a_format_no_dlx_wrote_is_refused(workdir: Path, smoke_run: Path) -> None:
    checkpoint = torch.load(smoke_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["format_version"] = 0
    torch.save(checkpoint, workdir / "old.ckpt")
    assert "format 0, which no dlx ever wrote" in failing("eval", "old.ckpt", cwd=workdir)


# --- 7. Smaller ---------------------------------------------------------------------------------------------------


def test_runs_shows_a_run_killed_with_sigkill_as_killed(workdir: Path) -> None:
    process = start_dlx(["train", "trainer.max_epochs=400", "hydra.run.dir=outputs/run"], workdir)
    wait_for_step(process, workdir / "outputs" / "run" / "metrics.jsonl", 30)
    process.kill()
    process.communicate()
    rows = json.loads(dlx("runs", "--json", cwd=workdir).stdout)
    assert [(row["run"], row["status"]) for row in rows] == [("run", "killed")]
    assert "trainer.resume=auto" in rows[0]["error"]


def test_eval_pushes_the_split_through_the_model_once(smoke_run: Path) -> None:
    from dlx.inspect.class_metrics import class_report
    from dlx.inspect.evaluate import evaluate_checkpoint

    metrics, _, evaluated = evaluate_checkpoint(smoke_run / "checkpoints" / "best.ckpt", [], "test", [], [])

    def refuse(*args: object) -> None:
        raise AssertionError("the model was run again")

    expected = evaluated.model(evaluated.split.x[: evaluated.samples]).argmax(dim=1)
    evaluated.model.forward = refuse
    report = class_report(evaluated)
    assert sum(report.confusion_matrix[i][i] for i in range(len(report.class_names))) == \
        int((expected == evaluated.split.y[: evaluated.samples]).sum())
    assert metrics["acc"] == pytest.approx(float((expected == evaluated.split.y[: evaluated.samples]).float().mean()))


def test_a_narrow_terminal_keeps_the_step_and_the_loss(workdir: Path) -> None:
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "dlx", "train", "trainer.max_epochs=3", "trainer.log_every=5"],
                               cwd=workdir, env={**ENV, "COLUMNS": "50", "LINES": "40", "TERM": "xterm"},
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the run ended
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=300)
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", errors="replace"))  # colours, cursor moves
    assert process.returncode == 0, text
    bars = [line for line in text.replace("\r", "\n").splitlines() if line.lstrip().startswith("train")]
    assert any("/63" in line and "loss" in line for line in bars), bars[-5:]


@pytest.mark.slow
def test_control_characters_in_file_names_are_escaped(workdir: Path, smoke_run: Path) -> None:
    from PIL import Image

    name = "digit\x1b[2J\x1b[31mred.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(workdir / name)
    result = dlx("predict", str(smoke_run / "checkpoints" / "best.ckpt"), name, cwd=workdir)
    assert "\x1b[2J" not in result.stdout and "digit\\x1b[2J\\x1b[31mred.png" in result.stdout.replace("\n", "")
    stderr = failing("predict", str(smoke_run / "checkpoints" / "best.ckpt"), "missing\x1b[31m.png", cwd=workdir)
    assert "\x1b[31m" not in stderr and "missing\\x1b[31m.png" in stderr


# --- More cases a careless or hostile user tries (each broke before: a traceback, a hang, a wrong cause) ---------


@pytest.mark.slow
def test_files_that_are_not_what_their_names_say_are_refused_without_hanging(workdir: Path, smoke_run: Path) -> None:
    os.mkfifo(workdir / "pipe.png")  # reading a pipe waits for a writer forever
    assert "is not a regular file" in failing("predict", "run", "pipe.png", cwd=workdir)
    assert "not a complete zip archive" in failing("train", SMOKE, "trainer.resume=/etc/passwd", cwd=workdir)
    (workdir / "runs" / "bad").mkdir(parents=True)
    os.mkfifo(workdir / "runs" / "bad" / "summary.json")
    shutil.copytree(smoke_run, workdir / "runs" / "good")
    result = dlx("runs", "runs", "--json", cwd=workdir, timeout=60)
    assert [row["run"] for row in json.loads(result.stdout)] == ["good"] and "not a regular file" in result.stderr


@pytest.mark.slow
def test_run_folders_named_carelessly_are_refused_before_anything_is_written(workdir: Path, smoke_run: Path) -> None:
    assert "no checkpoint file there" in failing("train", SMOKE, "trainer.resume=typo.ckpt", cwd=workdir)
    assert "The run folder is empty" in failing("train", SMOKE, "hydra.run.dir=", cwd=workdir)
    assert [path.name for path in (workdir / "outputs").iterdir()] == ["latest"]  # the smoke run's link alone
    assert not (workdir / "checkpoints").exists()
    summary = (smoke_run / "summary.json").read_text()
    assert "not a sweep" in failing("train", "-m", "trainer.seed=1,2", SMOKE, "hydra.sweep.dir=run", cwd=workdir)
    assert (smoke_run / "summary.json").read_text() == summary
    (workdir / "loop").symlink_to("loop")
    assert "leads nowhere or to itself" in failing("report", "loop", cwd=workdir)


@pytest.mark.slow
def test_resume_takes_a_run_folder_and_continues_in_it(workdir: Path, smoke_run: Path) -> None:
    result = dlx("train", SMOKE, "trainer.resume=run", cwd=workdir)
    assert f"Resumed from {smoke_run.resolve() / 'checkpoints' / 'last.ckpt'}" in result.stdout
    assert [path.name for path in (workdir / "outputs").iterdir()] == ["latest"]  # no new run folder
    assert (workdir / "outputs" / "latest").resolve() == smoke_run.resolve()
