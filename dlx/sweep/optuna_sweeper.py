"""dlx's Optuna sweeper: a Hydra Sweeper (so `dlx train -m`, every Hydra launcher and `--cfg` work as for any
sweep) that runs a study through Optuna's ask-and-tell interface.

Each trial is one job of the sweep: its number is the job's number (and folder), its parameters the job's
overrides. The study lives in a storage the jobs reach too (SQLite beside the sweep by default), so that a job
in another process or on another machine reports each validation to its trial and learns from the study's
pruner whether to stop (dlx.sweep.trial). With a parallel launcher, n_jobs trials run at once and a new one
starts as soon as any ends: each trial is launched as a batch of one, from a thread of its own. A study killed
mid-trial continues with the same command: its finished trials stay, and the trials that were running resume
from their last checkpoint under their own numbers.
"""

import logging
import queue
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from dlx.errors import DlxError
from dlx.sweep.search import SearchSettings, build_pruner, build_sampler, objective_names, objective_values
from dlx.sweep.search_space import SearchSpace, grid_of, parse_search_space

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class OptunaSweeper(Sweeper):
    """Hydra instantiates it with the keys of hydra.sweeper (conf/hydra/sweeper/dlx_optuna.yaml)."""

    def __init__(self, **sweeper: Any) -> None:
        plain = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                 for key, value in sweeper.items()}
        self.settings = SearchSettings.of(plain)
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        assert self.config is not None  # setup() came first
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        space = parse_search_space(self.settings.params, arguments)
        sources = self.config.hydra.runtime.config_sources
        config_dirs = [source.path.removeprefix("file://") for source in sources if source.provider == "command-line"]
        study = open_study(self.settings, space, self.settings.url(sweep_dir), create=True)
        # The basic launcher runs a job in this process, where signal handlers (Ctrl-C saves the run) can
        # only be set by the main thread: its trials run one at a time, here.
        side_by_side = not isinstance(self.launcher, BasicLauncher)
        runner = StudyRunner(study, self.settings, space, self.launcher, sweep_dir, config_dirs,
                             self.settings.n_jobs if side_by_side else 1, side_by_side)
        runner.run()


def open_study(settings: SearchSettings, space: SearchSpace, url: str, create: bool) -> Any:
    """The study in its storage, with the sampler and pruner of the settings; created when `create`. A study
    of that name with other directions is refused."""
    import optuna

    from dlx.store.study import open_storage

    optuna.logging.set_verbosity(logging.WARNING)  # dlx prints a line per trial itself
    storage = open_storage(url)
    sampler = build_sampler(settings, grid_of(space) if settings.sampler == "grid" else None)
    pruner = build_pruner(settings.pruner, settings.pruner_options)
    directions = [optuna.study.StudyDirection[d.upper()] for d in settings.directions]  # as the storage has them
    existing = {study.study_name: study for study in storage.get_all_studies()}
    if settings.study_name in existing and existing[settings.study_name].directions != directions:
        raise DlxError(f"The study {settings.study_name} in {url} was started to "
                       f"{', '.join(d.name.lower() for d in existing[settings.study_name].directions)}, not to "
                       f"{', '.join(settings.directions)}: a study keeps its directions. Name a new study "
                       "(hydra.sweeper.study_name=...) or pass the directions it has.")
    if settings.study_name not in existing and not create:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(storage=storage, study_name=settings.study_name, sampler=sampler, pruner=pruner,
                                   directions=directions, load_if_exists=True)


def study_size(study: Any) -> int:
    """Trials that count towards n_trials: finished ones, and those running (here or in another process)."""
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=counted))


def interrupted_trials(study: Any, sweep_dir: Path) -> list[Any]:
    """The trials an earlier process of this sweep started and never finished (killed, stopped): still
    RUNNING in the storage, in this sweep folder."""
    from optuna.trial import TrialState

    folder = str(sweep_dir.resolve())
    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if trial.user_attrs.get("sweep_dir") == folder]


def grid_size(space: SearchSpace) -> int:
    size = 1
    for values in grid_of(space).values():
        size *= len(values)
    return size


@dataclass
class StudyRunner:
    """Runs trials until the study holds n_trials, `slots` at a time, telling the study each outcome."""

    study: Any
    settings: SearchSettings
    space: SearchSpace
    launcher: Any
    sweep_dir: Path
    config_dirs: list[str]
    slots: int
    side_by_side: bool  # each trial from a thread of its own (a parallel launcher), or here, one by one
    running: dict[int, list[str]] = field(default_factory=dict)  # trial number -> its job's overrides
    done: "queue.Queue[tuple[int, Any, BaseException | None]]" = field(default_factory=queue.Queue)
    stop: BaseException | None = None  # Ctrl-C, or a job that stopped the sweep: launch nothing more

    @property
    def n_trials(self) -> int:
        return min(self.settings.n_trials, grid_size(self.space)) if self.settings.sampler == "grid" \
            else self.settings.n_trials

    def run(self) -> None:
        resumed = [(trial.number, trial.user_attrs["overrides"])
                   for trial in interrupted_trials(self.study, self.sweep_dir)]
        self.announce(resumed)
        while True:
            while self.stop is None and len(self.running) < self.slots and (
                    resumed or study_size(self.study) < self.n_trials):
                number, overrides = resumed.pop(0) if resumed else self.ask()
                self.launch(number, overrides)
            if not self.running:
                break
            self.wait_for_one()
        if self.stop is not None:
            raise self.stop

    def announce(self, resumed: list[tuple[int, list[str]]]) -> None:
        from optuna.trial import TrialState

        finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                 TrialState.FAIL))
        pruner = f", {self.settings.pruner} pruner" if self.settings.pruner else ""
        at_once = f", {self.slots} at a time" if self.slots > 1 else ""
        print(f"Study {self.settings.study_name} ({self.settings.sampler} sampler{pruner}): {self.n_trials} "
              f"trials{at_once}; storage {describe_url(self.settings.url(self.sweep_dir))}", flush=True)
        if finished or resumed:
            pruned = sum(trial.state == TrialState.PRUNED for trial in finished)
            print(f"Continuing the study: {len(finished)} trial(s) finished"
                  + (f" ({pruned} pruned)" if pruned else "")
                  + (f"; trial(s) {', '.join(str(n) for n, _ in resumed)} resume where they stopped" if resumed else ""),
                  flush=True)
        if not resumed and study_size(self.study) >= self.n_trials:
            print(f"The study holds its {self.n_trials} trials already: nothing to run. Raise "
                  "hydra.sweeper.n_trials to search further.", flush=True)

    def ask(self) -> tuple[int, list[str]]:
        """A new trial: its parameters from the sampler, its job's overrides recorded with it (for `dlx study`
        and for resuming it after a kill)."""
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask(self.space.distributions())
        overrides = self.space.overrides(trial.params)
        trial.set_user_attr("sweep_dir", str(self.sweep_dir.resolve()))
        trial.set_user_attr("run_dir", str((self.sweep_dir / str(trial.number)).resolve()))
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("command", ["dlx", "train", *(f"--config-dir={d}" for d in self.config_dirs),
                                        *overrides, "hydra.mode=RUN"])
        return trial.number, overrides

    def launch(self, number: int, overrides: list[str]) -> None:
        """Trial `number` as a batch of one job, numbered as the trial (its folder is the trial's number)."""
        self.running[number] = overrides
        if not self.side_by_side:
            job = self.launcher.launch([overrides], initial_job_idx=number)[0]  # Ctrl-C and kills go through
            self.finish(number, job)
            return

        def run_trial() -> None:
            try:
                self.done.put((number, self.launcher.launch([overrides], initial_job_idx=number)[0], None))
            except BaseException as err:  # a job stopped by Ctrl-C raises SystemExit through joblib
                self.done.put((number, None, err))

        threading.Thread(target=run_trial, name=f"trial-{number}", daemon=True).start()

    def wait_for_one(self) -> None:
        """The next trial to end, told to the study. Ctrl-C here stops launching: the trials running finish
        stopping (their processes got the signal too) and stay RUNNING in the study, to resume later."""
        while True:
            try:
                number, job, error = self.done.get(timeout=0.5)
                break
            except queue.Empty:
                continue
            except KeyboardInterrupt as interrupt:
                if self.stop is not None:
                    raise
                self.stop = interrupt
                print(f"Stopping: waiting for {len(self.running)} running trial(s) to save their last "
                      "checkpoint (Ctrl-C again leaves now).", flush=True)
        if error is not None:
            self.running.pop(number)
            self.stop = self.stop or error
            return
        self.finish(number, job)

    def finish(self, number: int, job: Any) -> None:
        """Tell the study how trial `number` ended, from the summary its job returned, and say it."""
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        self.running.pop(number)
        run_dir = self.sweep_dir / str(number)
        summary = job.return_value if job.status == JobStatus.COMPLETED else None
        status = (summary or {}).get("status", "failed")
        if status == "pruned":
            self.tell(number, state=TrialState.PRUNED)
            trial = self.study.get_trials(deepcopy=False)[number]  # numbered 0, 1... in the study
            step = trial.last_step
            print(f"Trial {number} pruned at validation {step} "
                  f"({objective_names(self.settings, monitored=summary_metric(summary))[0]} "
                  f"{trial.intermediate_values.get(step, float('nan')):.4f})", flush=True)
            return
        values = objective_values(self.settings, summary, run_dir) if status == "completed" and summary else None
        if values is None:
            self.tell(number, state=TrialState.FAIL)
            reason = (summary or {}).get("error") or (f"no finite value of {', '.join(objective_names(self.settings))}"
                                                      if status == "completed" else f"see {run_dir / 'train.log'}")
            print(f"Trial {number} failed: {reason}", flush=True)
            return
        self.tell(number, values=values)
        names = objective_names(self.settings, monitored=summary_metric(summary))
        if self.study.user_attrs.get("objectives") != names:
            self.study.set_user_attr("objectives", names)  # for `dlx study`: what the values are
        print(f"Trial {number} completed: {', '.join(f'{n} {v:.4g}' for n, v in zip(names, values))}"
              + self.best_so_far(), flush=True)

    def tell(self, number: int, **outcome: Any) -> None:
        try:
            self.study.tell(number, **outcome)
        except RuntimeError as err:
            # The grid sampler asks the study to stop once its grid is done, which Optuna allows only inside
            # study.optimize(); the trial is recorded all the same, and n_trials is capped at the grid's size.
            if "Study.stop" not in str(err):
                raise

    def best_so_far(self) -> str:
        if self.settings.multi_objective:
            return f" ({len(self.study.best_trials)} trial(s) on the Pareto front)"
        try:
            best = self.study.best_trial
        except ValueError:  # no completed trial
            return ""
        return f" (best: trial {best.number}, {best.value:.4g})"


def summary_metric(summary: dict[str, Any] | None) -> str | None:
    return ((summary or {}).get("monitor") or {}).get("metric")


def describe_url(url: str) -> str:
    from dlx.store.study import describe

    return describe(url)
