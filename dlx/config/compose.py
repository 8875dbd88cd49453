"""Compose configs exactly as `dlx train` will, before Hydra's runner starts, so that a wrong override
gets a one-paragraph explanation (with a "did you mean") instead of Hydra's raw message.

This uses Hydra's own search path, parser and composition; only the error messages are dlx's.
"""

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlx.config.checks import check_config
from dlx.config.explain import HELP_HINT, explain_composition_error
from dlx.config.overrides import check_overrides_parse, is_sweep
from dlx.config.schema import config_dir, register_schema_and_resolvers
from dlx.errors import DlxError


def parse_hydra_args(args: list[str]) -> argparse.Namespace:
    """Hydra's own command-line parser: the same flags and overrides `@hydra.main` accepts."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(args)


@contextmanager
def hydra_session(extra_config_dir: str | None) -> Iterator[Any]:
    """A Hydra instance on the same search path `@hydra.main` builds: dlx's conf/, then --config-dir."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    register_schema_and_resolvers()
    search_path = create_config_search_path(str(config_dir()))
    if extra_config_dir is not None:
        folder = os.path.abspath(extra_config_dir)
        if not os.path.isdir(folder):
            raise DlxError(f"--config-dir {folder} does not exist. Point it at the folder that holds your own "
                           "config groups (e.g. my_conf/ with my_conf/model/my_net.yaml).")
        search_path.prepend(provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    try:
        yield Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


@dataclass
class Plan:
    """What `dlx train ARGS` will run, composed and checked before anything starts."""

    multirun: bool
    folder: str  # the run folder, or for a sweep the sweep folder (resolved: ${now:} fixed once)
    sweeper: str  # the sweeper's _target_
    jobs: list[list[str]] = field(default_factory=list)  # each job's overrides, in Hydra's order (= its job number)
    configs: list[DictConfig | None] = field(default_factory=list)  # each job's composed config
    errors: list[str | None] = field(default_factory=list)  # each job's problem, when asked to keep going
    search_space: dict[str, str] = field(default_factory=dict)  # a search sweeper's parameters
    trials: int | None = None  # and how many trials it runs
    sweeper_config: dict[str, Any] = field(default_factory=dict)  # hydra.sweeper of a search, resolved once
    launcher: str = ""  # the launcher's _target_: where the jobs run

    @property
    def searched(self) -> bool:
        """A search sweeper (Optuna) decides its jobs while it runs: they cannot be listed in advance."""
        return self.multirun and not self.sweeper.endswith("BasicSweeper")


def sweep_jobs(hydra: Any, master: DictConfig, overrides: list[str]) -> list[list[str]]:
    """The overrides of each job of a basic sweep, expanded by Hydra's own BasicSweeper (glob() included),
    so their order is the job numbering Hydra will use."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{key}={value}" for key, value in (master.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=hydra.config_loader)
    try:
        parsed = [o for o in parser.parse_overrides([*params, *overrides]) if not o.is_hydra_override()]
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception as err:  # OverrideParseException, HydraException (an interval() without a search sweeper)
        raise DlxError(f"{err}. Sweep over values with a comma list (optimizer.lr=0.1,0.01), range(1,4) or "
                       f"glob(c*); interval() and tag() need a search sweeper (hparams_search=...). {HELP_HINT}") from err


def preflight(args: list[str], check_values: bool, keep_going: bool = False) -> Plan | None:
    """Compose the config of every job `dlx train ARGS` will run and check it; raise DlxError if one fails
    (with keep_going, record each job's problem in the plan instead). None when nothing will be trained."""
    from hydra.types import RunMode

    parsed = parse_hydra_args(args)
    if parsed.run + parsed.multirun + (parsed.cfg is not None) + parsed.shell_completion + (parsed.info is not None) > 1:
        raise DlxError("-m/--multirun, -r/--run, --cfg, --info and --shell-completion do not go together: give one. "
                       "--cfg prints the config of one job (drop -m, keep one value per key); --dry-run lists every "
                       "job of a sweep and checks its config.")
    if parsed.help or parsed.hydra_help or parsed.shell_completion or parsed.info:
        return None
    config_name = parsed.config_name or "train"
    check_overrides_parse(parsed.overrides)
    with hydra_session(parsed.config_dir) as hydra:
        if not parsed.multirun:
            refuse_sweeps_in_one_run(hydra, parsed.overrides)
        try:
            # One run refuses a swept value (a=1,2 without -m), as Hydra's runner would: no sweep happens then.
            master = compose_or_explain(hydra, config_name, parsed.overrides,
                                        RunMode.MULTIRUN if parsed.multirun else RunMode.RUN,
                                        validate_sweep_overrides=not parsed.multirun)
        except DlxError as err:
            if parsed.multirun and any(is_sweep(o) for o in parsed.overrides):
                raise DlxError(f"{err} In a sweep, Hydra first composes the config the jobs share, without the swept "
                               "options (+experiment=a,b): a key that only those options define must be set with "
                               "++ (++dataset.root=...).") from err
            raise
        multirun = parsed.multirun or master.hydra.mode == RunMode.MULTIRUN
        plan = Plan(multirun, str(master.hydra.sweep.dir if multirun else master.hydra.run.dir),
                    master.hydra.sweeper._target_, launcher=master.hydra.launcher._target_)
        if not multirun:
            plan.jobs = [parsed.overrides]  # hydra.* overrides included: the same job either way
        elif not plan.searched:
            plan.jobs = sweep_jobs(hydra, master, parsed.overrides)
        else:  # the search space is the sweeper's: check the config its trials start from
            plan.jobs = [[o for o in parsed.overrides if not is_sweep(o)]]
            plan.search_space = {str(k): str(v) for k, v in (master.hydra.sweeper.get("params") or {}).items()}
            plan.search_space |= dict(o.split("=", 1) for o in parsed.overrides if is_sweep(o))
            plan.trials = master.hydra.sweeper.get("n_trials")
            plan.sweeper_config = OmegaConf.to_container(master.hydra.sweeper, resolve=True)  # type: ignore[assignment]
        for overrides in plan.jobs:
            try:
                # One run's config is the one just composed: the same overrides, in the same mode.
                cfg = compose_or_explain(hydra, config_name, overrides, RunMode.RUN) if multirun else master
            except DlxError as err:  # Hydra itself would refuse to start such a sweep
                if not keep_going:
                    raise
                plan.configs.append(None)
                plan.errors.append(str(err))
                continue
            plan.configs.append(cfg)
            plan.errors.append(check_values_of(cfg, raise_it=not (keep_going or multirun)) if check_values else None)
        if any(plan.errors) and all(plan.errors) and not keep_going:  # a sweep of jobs that would all fail
            raise DlxError(plan.errors[0])
        if check_values:
            check_run_folder_creatable(plan.folder)
    return plan


def refuse_sweeps_in_one_run(hydra: Any, overrides: list[str]) -> None:
    """A sweep's values (a,b, range(...)) without -m: say whether the user meant a list or a sweep, in dlx's words
    (Hydra's "Ambiguous value" also offers brackets for a config group, which takes one option)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=hydra.config_loader)
    for override in parser.parse_overrides(overrides):
        if not override.is_sweep_override() or override.is_hydra_override():
            continue
        line, key = override.input_line or "", override.key_or_group
        value = line.partition("=")[2]
        if hydra.config_loader.get_group_options(key):
            raise DlxError(f"{line} names several {key} options, and a run has one. To train each, one job per "
                           f"option, add -m: dlx train -m {line} ...; else choose one, e.g. {key}="
                           f"{value.split(',')[0]}.")
        raise DlxError(f"{line} gives several values, and one run takes one value per key. For a list, write it in "
                       f"brackets: {key}=[{value}]; to train once with each value (a sweep), add -m: dlx train -m "
                       f"{line} ...")


def check_values_of(cfg: DictConfig, raise_it: bool) -> str | None:
    """The config's problem, or None. In a sweep, a job with a bad value fails on its own and the others
    run; the caller warns about it first."""
    try:
        check_config(cfg)
    except DlxError as err:
        if raise_it:
            raise
        return str(err)
    return None


def check_run_folder_creatable(folder: str) -> None:
    """The run folder Hydra is about to create must be creatable: its nearest existing parent a writable folder."""
    if not folder.strip():  # Hydra would take the working directory itself as the run folder
        raise DlxError("The run folder is empty (hydra.run.dir= or hydra.sweep.dir= with no value): dlx would write "
                       "the run's files among yours in the working directory. Name a folder, e.g. "
                       "hydra.run.dir=outputs/my_run, or drop the option.")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not a folder" if not os.path.isdir(existing) else "is not writable"
        raise DlxError(f"Cannot create the run folder {folder}: {existing} {problem}. Point output_root (or "
                       "hydra.run.dir) at a folder you can write to, e.g. output_root=$HOME/dlx-outputs.")


def compose_config(overrides: list[str], user_config_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config of one `dlx train OVERRIDES` run, composed in this process as the runner composes it, without
    Hydra's own settings; a DlxError explains a wrong override."""
    from hydra.types import RunMode
    from omegaconf import open_dict

    from dlx.config.overrides import check_overrides_parse

    check_overrides_parse(overrides)
    with hydra_session(str(user_config_dir) if user_config_dir else None) as hydra:
        cfg = compose_or_explain(hydra, "train", overrides, RunMode.RUN)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_or_explain(hydra: Any, config_name: str, overrides: list[str], run_mode: Any,
                       validate_sweep_overrides: bool = False) -> DictConfig:
    try:
        return hydra.compose_config(config_name, overrides, run_mode=run_mode,
                                    validate_sweep_overrides=validate_sweep_overrides)
    except DlxError:
        raise
    except Exception as err:
        raise DlxError(explain_composition_error(err)) from err


def runs_one_job_here(args: list[str], plan: Plan | None) -> bool:
    """Whether `dlx train ARGS` is one run that run_one_job() can start with the config preflight composed (no
    -m, --cfg, --help, --info; none of the flags that only Hydra's own runner reads)."""
    parsed = parse_hydra_args(args)
    return (plan is not None and not plan.multirun and len(plan.configs) == 1 and plan.configs[0] is not None
            and parsed.cfg is None and not parsed.resolve and parsed.config_path is None
            and parsed.experimental_rerun is None)


def run_one_job(plan: Plan, args: list[str], task: Callable[[DictConfig], Any]) -> None:
    """What `@hydra.main` does for one run (Hydra.run), on the config preflight composed and checked: Hydra's
    logging and callbacks, the run folder and its .hydra/ record, `task` run in it, an error reported as Hydra
    reports it (exit status 1). Hydra's own runner composes the config twice more (once to read hydra.mode, once
    to run), each about a tenth of a second."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.utils import run_and_report
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode

    cfg = plan.configs[0]
    assert cfg is not None  # runs_one_job_here() said so
    parsed = parse_hydra_args(args)
    config_name = parsed.config_name or "train"
    with hydra_session(parsed.config_dir) as hydra:
        def run() -> None:
            configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
            if cfg.hydra.mode is None:
                cfg.hydra.mode = RunMode.RUN
            callbacks = Callbacks(cfg)
            callbacks.on_run_start(config=cfg, config_name=config_name)
            done = run_job(hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                           task_function=task, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None)
            callbacks.on_run_end(config=cfg, config_name=config_name, job_return=done)
            _ = done.return_value  # raises the job's exception, if it failed

        run_and_report(run)
