"""Compose configs exactly as `dlx train` will, before Hydra's runner starts, so that a wrong override
gets a one-paragraph explanation (with a "did you mean") instead of Hydra's raw message.

This uses Hydra's own search path, parser and composition; only the error messages are dlx's.
"""

import argparse
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from dlx.config import check_config, config_dir, register_schema_and_resolvers
from dlx.errors import HELP_HINT, DlxError, did_you_mean, explain_omegaconf_error, format_choices

MAX_JOBS_CHECKED = 64


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


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The overrides of each job a run or sweep will launch (at most MAX_JOBS_CHECKED of them).

    Sweeps that only Hydra's runner or a search plugin expands (glob(), interval(), tag(...) for Optuna) are
    left out here; they are validated when they are expanded.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception as err:  # OverrideParseException
        raise DlxError(f"{err}. Overrides look like key=value, group=option, +new_key=value or ~key; quote values "
                       f"with spaces or special characters. {HELP_HINT}") from err
    if not multirun:
        return [overrides]
    choices: list[list[str]] = []
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([f"{key}={override.get_value_element_as_str()}"])
        elif override.value_type in (ValueType.CHOICE_SWEEP, ValueType.RANGE_SWEEP):
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        # glob() needs the config repository to expand; interval() and tag() belong to search plugins
    return [list(job) for job in itertools.islice(itertools.product(*choices), MAX_JOBS_CHECKED)]


def preflight(args: list[str], check_values: bool) -> None:
    """Compose the config of every job `dlx train ARGS` will run and check it; raise DlxError if one fails."""
    from hydra.types import RunMode

    parsed = parse_hydra_args(args)
    if parsed.help or parsed.hydra_help or parsed.shell_completion or parsed.info:
        return
    config_name = parsed.config_name or "train"
    with hydra_session(parsed.config_dir) as hydra:
        for overrides in job_overrides(parsed.overrides, parsed.multirun):
            cfg = compose_or_explain(hydra, config_name, overrides, RunMode.RUN)
            if check_values:
                check_config(cfg)
                check_writable(cfg.hydra.sweep.dir if parsed.multirun else cfg.hydra.run.dir)


def check_writable(folder: str) -> None:
    """The run folder Hydra is about to create must be creatable: its nearest existing parent a writable folder."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not a folder" if not os.path.isdir(existing) else "is not writable"
        raise DlxError(f"Cannot create the run folder {folder}: {existing} {problem}. Point output_root (or "
                       "hydra.run.dir) at a folder you can write to, e.g. output_root=$HOME/dlx-outputs.")


def compose_or_explain(hydra: Any, config_name: str, overrides: list[str], run_mode: Any) -> DictConfig:
    try:
        return hydra.compose_config(config_name, overrides, run_mode=run_mode, validate_sweep_overrides=False)
    except DlxError:
        raise
    except Exception as err:
        raise DlxError(explain_composition_error(err)) from err


def explain_composition_error(err: Exception) -> str:
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = list(err.options or [])
        return (f'There is no {group} option "{option}".{did_you_mean(option, options)} '
                f"Choose one of: {format_choices(options)} (or add {group}/{option}.yaml to your --config-dir). "
                f"{HELP_HINT}")
    return explain_omegaconf_error(err)
