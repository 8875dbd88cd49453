"""Hyperparameter search through the real CLI, dlx's own Optuna sweeper and a real Optuna storage (SQLite or a
journal file): pruning, a study killed with SIGKILL and continued, trials side by side under joblib, samplers,
several objectives, `dlx study` and the study's report, and every bad input refused before the study changes."""

import hashlib
import json
import shlex
import signal
import time
from pathlib import Path

import optuna
import pytest
from conftest import dlx, start_dlx, summary_of

from dlx.store.metrics import read_metrics

SMOKE = "trainer.smoke=true"
# The shipped search space with a median pruner that starts judging after two trials (Optuna's default is five).
PRUNED_SEARCH = ["train", "-m", "hparams_search=ffn_digits", "hydra.sweeper.n_trials=6", "trainer.max_epochs=4",
                 "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.n_startup_trials=2"]


def sweep_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory) -> tuple[Path, str]:
    """hparams_search=ffn_digits with a median pruner, in its default folder outputs/studies/ffn_digits."""
    cwd = tmp_path_factory.mktemp("search")
    result = dlx(*PRUNED_SEARCH, cwd=cwd)
    return cwd, result.stdout


def test_a_search_prunes_trials_says_how_many_and_marks_them_pruned(pruned_search) -> None:
    cwd, stdout = pruned_search
    folder = cwd / "outputs" / "studies" / "ffn_digits"
    study = load(f"sqlite:///{folder / 'study.db'}", "ffn_digits")
    states = {trial.number: trial.state for trial in study.trials}
    pruned = [n for n, state in states.items() if state == optuna.trial.TrialState.PRUNED]
    assert len(states) == 6 and pruned and set(states.values()) <= {optuna.trial.TrialState.COMPLETE,
                                                                   optuna.trial.TrialState.PRUNED}
    assert f"{len(pruned)} of 6 trials were pruned" in stdout
    rows = {row["run"]: row for row in sweep_summary(folder)["rows"]}
    for number in states:
        summary = summary_of(folder / str(number))
        trial = study.trials[number]
        if number in pruned:
            # Stopped at the validation where the pruner said so, with its checkpoints kept.
            assert summary["status"] == rows[str(number)]["status"] == "pruned"
            assert summary["epochs"] == trial.last_step < 4 and summary["stopped_early"]
            assert (folder / str(number) / "checkpoints" / "last.ckpt").is_file()
            assert f"Trial {number} pruned at validation {trial.last_step}" in stdout
        else:
            assert summary["status"] == "completed" and summary["epochs"] == 4
            assert trial.value == summary["best"]["value"]
        # Each validation reached the trial, in the study's storage, from the job.
        validations = [row["acc"] for row in read_metrics(folder / str(number) / "metrics.jsonl")
                       if row["split"] == "val"]
        assert list(trial.intermediate_values.values()) == validations
    listed = json.loads(dlx("runs", str(folder), "--status", "pruned", "--json", cwd=cwd).stdout)
    assert sorted(int(row["run"]) for row in listed) == sorted(pruned)


def test_the_best_trials_command_trains_it_again_to_the_same_value(pruned_search) -> None:
    cwd, stdout = pruned_search
    best = json.loads((cwd / "outputs/studies/ffn_digits/summary.json").read_text())["study"]["best"]
    line = next(line for line in stdout.splitlines() if line.startswith(f"Best trial {best['number']}:"))
    command = shlex.split(line.split("train it again with: ")[1])
    assert command == best["command"] and command[-1] == "hydra.mode=RUN"
    dlx(*command[1:], "hydra.run.dir=again", cwd=cwd)
    assert summary_of(cwd / "again")["best"]["value"] == best["values"]["val/acc"]


@pytest.mark.slow
def test_dlx_study_shows_the_best_trial_and_writes_its_plots(pruned_search) -> None:
    cwd, _ = pruned_search
    folder = cwd / "outputs" / "studies" / "ffn_digits"
    result = dlx("study", str(folder), cwd=cwd)
    assert "Study ffn_digits" in result.stdout and "Best trial" in result.stdout
    assert "train it again: dlx train hparams_search=ffn_digits" in result.stdout
    assert "pruned" in result.stdout and "Parameter importances for val/acc (fANOVA): " in result.stdout
    for name in ("history", "importances", "parallel_coordinates", "intermediate_values", "timeline"):
        png = (folder / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    # The storage alone, by URL, gives the same study.
    by_url = dlx("study", f"sqlite:///{folder / 'study.db'}", "--out", "by_url", cwd=cwd)
    assert "Best trial" in by_url.stdout and len(list((cwd / "by_url").glob("*.png"))) == 5
    # The report of the search's folder: one page with the study and its plots inline.
    dlx("report", str(folder), cwd=cwd)
    page = (folder / "report.html").read_text()
    assert "<h1>dlx study ffn_digits</h1>" in page and page.count("data:image/png;base64,") == 5
    assert "hydra.mode=RUN" in page


def test_the_same_command_again_finds_the_study_complete(pruned_search) -> None:
    cwd, _ = pruned_search
    storage = f"sqlite:///{cwd / 'outputs/studies/ffn_digits/study.db'}"
    before = [(t.number, t.state, t.value) for t in load(storage, "ffn_digits").trials]
    result = dlx(*PRUNED_SEARCH, cwd=cwd)
    assert "holds its 6 trials already: nothing to run" in result.stdout
    assert [(t.number, t.state, t.value) for t in load(storage, "ffn_digits").trials] == before


@pytest.mark.slow
def test_a_study_killed_with_sigkill_continues_with_the_same_command(workdir: Path) -> None:
    args = ["train", "-m", "hydra/sweeper=dlx_optuna", "hydra.sweeper.study_name=killed", "hydra.sweeper.n_trials=3",
            "optimizer.lr=tag(log,interval(0.02,0.2))", "model.hidden_sizes=[32]", "trainer.max_epochs=12"]
    folder = workdir / "outputs" / "studies" / "killed"
    process = start_dlx(args, workdir)
    try:
        wait_for(lambda: status(folder / "0") == "completed" and (folder / "1/checkpoints/last.ckpt").exists(),
                 timeout=240, what="trial 0 done and trial 1 under way")
        process.send_signal(signal.SIGKILL)  # the sweep and its trial (in the same process) die at once
        process.communicate(timeout=60)
    finally:
        process.kill()
    storage = f"sqlite:///{folder / 'study.db'}"
    states = [trial.state.name for trial in load(storage, "killed").trials]
    assert states == ["COMPLETE", "RUNNING"]
    finished = (folder / "0" / "summary.json").read_text()

    result = dlx(*args, cwd=workdir)
    assert "Continuing the study: 1 trial(s) finished; trial(s) 1 resume where they stopped" in result.stdout
    assert "Resumed from" in (folder / "1" / "train.log").read_text()
    study = load(storage, "killed")
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert (folder / "0" / "summary.json").read_text() == finished  # not trained again
    logged = [(row["split"], row["step"]) for row in read_metrics(folder / "1" / "metrics.jsonl")]
    assert len(logged) == len(set(logged))  # the resumed trial's steps, each once
    # Its validations reached the trial once each, before and after the kill.
    assert list(study.trials[1].intermediate_values) == list(range(1, 13))
    assert study.trials[1].value == summary_of(folder / "1")["best"]["value"]


def status(run_dir: Path) -> str | None:
    try:
        return summary_of(run_dir)["status"]
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_two_trials_run_at_once_and_a_new_one_starts_as_soon_as_one_ends(workdir: Path) -> None:
    # The grid sampler (seed 0) hands out 3, 40, 2 and 1 epochs: trial 1 is by far the longest.
    dlx("train", "-m", "hydra/sweeper=dlx_optuna", "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0",
        "trainer.max_epochs=choice(1,2,3,40)", "trainer.batch_size=128", "model.hidden_sizes=[32]",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=10",
        "hydra.sweeper.study_name=parallel", cwd=workdir)
    study = load(f"sqlite:///{workdir / 'outputs/studies/parallel/study.db'}", "parallel")
    trials = study.trials
    assert [t.params["trainer.max_epochs"] for t in trials] == [3, 40, 2, 1]  # the grid's size caps n_trials
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2  # two at once, never more
    assert spans[1][0] < spans[0][1]  # trial 1 started while trial 0 ran
    # Trial 2 took trial 0's place as soon as it ended, while trial 1 was still running: not batches that wait
    # for the slowest.
    assert spans[0][1] <= spans[2][0] < spans[1][1]
    assert all(summary_of(workdir / "outputs/studies/parallel" / str(t.number))["status"] == "completed"
               for t in trials)


@pytest.mark.parametrize("sampler", ["random", pytest.param("grid", marks=pytest.mark.slow),
                                     *(pytest.param(name, marks=pytest.mark.slow) for name in ("cmaes", "gp", "qmc"))])
def test_each_sampler_runs_a_study_in_a_journal_file(workdir: Path, sampler: str) -> None:
    space = ["optimizer.lr=choice(0.05,0.1,0.2)"] if sampler == "grid" else ["optimizer.lr=interval(0.05,0.2)"]
    dlx("train", "-m", "hydra/sweeper=dlx_optuna", f"hydra.sweeper.sampler={sampler}", *space,
        "hydra.sweeper.n_trials=2", "hydra.sweeper.storage=study.log", "hydra.sweeper.study_name=s", SMOKE,
        cwd=workdir)
    study = load_journal(workdir / "study.log", "s")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "Study s in" in dlx("study", "study.log", "--no-plots", cwd=workdir).stdout


def load_journal(path: Path, name: str) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))


@pytest.mark.slow
def test_several_objectives_give_the_pareto_front_in_the_summary(workdir: Path) -> None:
    dlx("train", "-m", "hparams_search=ffn_digits", "hydra.sweeper.sampler=nsgaii",
        "hydra.sweeper.objectives=[val/acc,num_parameters]", "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.n_trials=4", SMOKE, "hydra.sweep.dir=sw", cwd=workdir)
    study = load(f"sqlite:///{workdir / 'sw' / 'study.db'}", "ffn_digits")
    front = sweep_summary(workdir / "sw")["study"]["pareto_front"]
    assert sorted(record["number"] for record in front) == sorted(t.number for t in study.best_trials)
    for record in front:
        summary = summary_of(workdir / "sw" / str(record["number"]))
        assert record["values"] == {"val/acc": summary["best"]["value"], "num_parameters": summary["num_parameters"]}
    shown = dlx("study", "sw", cwd=workdir)
    assert "On the Pareto front: trial" in shown.stdout and (workdir / "sw/plots/pareto_front.png").is_file()


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    """A study of one trial, for the bad inputs to leave untouched."""
    cwd = tmp_path_factory.mktemp("bad")
    dlx("train", "-m", "hparams_search=ffn_digits", "hydra.sweeper.n_trials=1", SMOKE, "hydra.sweep.dir=sw", cwd=cwd)
    return cwd


@pytest.mark.parametrize("args, message", [
    (["hydra.sweeper.sampler=tpee"], 'hydra.sweeper.sampler=tpee is not one dlx knows. Did you mean "tpe"?'),
    (["hydra.sweeper.pruner=medain"], 'hydra.sweeper.pruner=medain is not one dlx knows. Did you mean "median"?'),
    (["hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.warmup_steps=2"],
     'takes no such option. Did you mean "n_warmup_steps"?'),
    (["optimizer.lr=interval(0.5,0.003)"], "has its bounds reversed (0.5 > 0.003): write the lower bound first"),
    (["hydra.sweeper.objectives=[val/f1]"], "hydra.sweeper.objectives names val/f1, which these runs do not measure"),
    (["hydra.sweeper.direction=minimize"], "hydra.sweeper.direction=minimize, but val/acc is best at its maximum"),
    (["hydra.sweeper.direction=minimize", "trainer.monitor.metric=val/loss"],
     "was started to maximize, not to minimize: a study keeps its directions"),
    (["hydra.sweeper.storage=postgresql://dlx:secret@localhost:1/nowhere"],
     "Cannot open the study's storage postgresql://dlx:***@localhost:1/nowhere"),
    (["hydra.sweeper.n_jobs=2"], "takes a parallel launcher: add hydra/launcher=joblib"),
    (["optimizer.lr=tag(log,interval(0.01,0.1))"], "Refused to continue the study in sw: its search space changed"),
])
def test_bad_input_is_one_paragraph_and_leaves_the_study_as_it_was(small_study: Path, args: list[str],
                                                                   message: str) -> None:
    before = digest(small_study / "sw" / "study.db")
    result = dlx("train", "-m", "hparams_search=ffn_digits", "hydra.sweeper.n_trials=1", SMOKE, "hydra.sweep.dir=sw",
                 *args, cwd=small_study, expect=2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\nerror:") + result.stderr.startswith("error:") == 1
    assert digest(small_study / "sw" / "study.db") == before
    assert "secret" not in result.stderr


def test_a_storage_that_cannot_be_created_is_refused_before_anything_is_written(workdir: Path) -> None:
    (workdir / "a_file").write_text("not a folder")
    result = dlx("train", "-m", "hparams_search=ffn_digits", f"hydra.sweeper.storage=sqlite:///{workdir}/a_file/s.db",
                 SMOKE, "hydra.sweep.dir=sw", cwd=workdir, expect=2)
    assert "Cannot create the study's storage" in result.stderr and "a_file is a file, not a folder" in result.stderr
    assert not (workdir / "sw").exists()


@pytest.mark.slow
def test_a_trial_trained_in_two_processes_is_pruned_and_both_ranks_stop(workdir: Path) -> None:
    # The grid (seed 0) tries lr 0.1 first, then 0.0001, which the median of the first trial's validations prunes.
    dlx("train", "-m", "hydra/sweeper=dlx_optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.0001,0.1)",
        "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.n_startup_trials=1", "trainer.devices=2",
        "trainer.device=cpu", "trainer.max_epochs=4", "hydra.sweeper.study_name=ddp", cwd=workdir)
    folder = workdir / "outputs" / "studies" / "ddp"
    study = load(f"sqlite:///{folder / 'study.db'}", "ddp")
    assert [(t.params["optimizer.lr"], t.state.name) for t in study.trials] == [(0.1, "COMPLETE"), (0.0001, "PRUNED")]
    pruned = summary_of(folder / "1")
    assert pruned["status"] == "pruned" and pruned["epochs"] == study.trials[1].last_step == 1
    assert pruned["distributed"]["world_size"] == 2  # both ranks stopped at that validation, with the same weights


@pytest.mark.slow
def test_ctrl_c_stops_a_study_with_the_command_that_continues_it(workdir: Path) -> None:
    args = ["train", "-m", "hydra/sweeper=dlx_optuna", "hydra.sweeper.study_name=stopped", "hydra.sweeper.n_trials=2",
            "optimizer.lr=tag(log,interval(0.02,0.2))", "model.hidden_sizes=[32]", "trainer.max_epochs=12"]
    folder = workdir / "outputs" / "studies" / "stopped"
    process = start_dlx(args, workdir)
    try:
        wait_for(lambda: (folder / "0/checkpoints/last.ckpt").exists(), timeout=240, what="trial 0 under way")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT
    assert "Continue the study (finished trials are kept, interrupted ones resume) with: dlx train -m" in err
    assert "hydra.sweep.dir=outputs/studies/stopped" in err
    assert status(folder / "0") == "interrupted"
    assert [t.state.name for t in load(f"sqlite:///{folder / 'study.db'}", "stopped").trials] == ["RUNNING"]
    command = shlex.split(err.split("with: ")[-1].strip().splitlines()[0])
    result = dlx(*command[1:], cwd=workdir)
    assert "trial(s) 0 resume where they stopped" in result.stdout
    assert [t.state.name for t in load(f"sqlite:///{folder / 'study.db'}", "stopped").trials] == ["COMPLETE"] * 2
