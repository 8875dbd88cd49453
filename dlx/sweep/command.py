"""`dlx train ARGS` from the command line to Hydra's runner and back.

Every argument belongs to Hydra. Before its runner starts, every job's config is composed and checked
(dlx.config.compose.preflight), so that mistakes get dlx's explanation; a sweep's plan is written to its
folder. Hydra then runs dlx.sweep.job.train_job once (`dlx train`) or once per job (`dlx train -m`, with
whatever sweeper and launcher the config chose), and a sweep ends with its table."""

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.parallel.world import is_main_process
from dlx.store.run_folder import RunFolderLock
from dlx.sweep.job import train_job
from dlx.sweep.stop import job_ends_its_process, jobs_stop_with_the_sweep, runs_jobs_in_processes
from dlx.ui.console import print_error


def run_train(args: list[str]) -> int:
    """`dlx train ARGS`: hand the arguments to Hydra's own runner; the exit status."""
    from dlx.config.compose import parse_hydra_args, preflight, run_one_job, runs_one_job_here
    from dlx.config.overrides import quote_override_value
    from dlx.config.schema import config_dir, register_schema_and_resolvers
    from dlx.parallel.rendezvous import agree_on_run_dir
    from dlx.sweep.records import start_sweep
    from dlx.sweep.study_plan import is_dlx_search, plan_study, search_overrides

    dry_run = "--dry-run" in args
    args = resume_in_place([a for a in args if a != "--dry-run"])
    args = agree_on_run_dir(args)  # under torchrun: every rank trains in the run folder rank 0 composes
    printing_config = parse_hydra_args(args).cfg is not None
    held: RunFolderLock | None = None
    try:
        # Compose and check every job's config before Hydra starts, so mistakes get dlx's explanation.
        # With --cfg nothing is trained, so the constructor checks (which import torch) are skipped.
        plan = preflight(args, check_values=not printing_config, keep_going=dry_run)
        searching = plan is not None and is_dlx_search(plan) and not printing_config
        study = plan_study(plan, search_overrides(args)) if searching else None  # type: ignore[arg-type]
        if dry_run:
            return print_plan(plan, study)
        # Under torchrun every rank runs this command; rank 0 alone keeps the sweep's records and table.
        sweeping = plan is not None and plan.multirun and not printing_config and is_main_process()
        if sweeping:
            assert plan is not None  # a sweep has a plan
            if not any(a.startswith("hydra.sweep.dir=") for a in args):
                # Fixed here, once: a requeued or continued job must find the same folder, not a new ${now:}.
                args = [*args, f"hydra.sweep.dir={quote_override_value(plan.folder)}"]
            if study is not None and not any(a.startswith("hydra.sweeper.study_name=") for a in args):
                # The same for a study's name, which may come from ${now:} too: every job opens that study.
                args = [*args, f"hydra.sweeper.study_name={quote_override_value(study.settings.study_name)}"]
            start_sweep(plan, args, study)
            warn_about_invalid_jobs(plan)
            prepare_shared_stores(plan)
        elif plan is not None and not plan.multirun and not printing_config and is_main_process():
            args, held = hold_run_folder(plan, args)
    except DlxError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print_error(err)
        return err.exit_code

    if runs_one_job_here(args, plan):
        assert plan is not None  # one job, composed

        def run() -> None:
            run_one_job(plan, args, train_job)
    else:
        import hydra

        register_schema_and_resolvers()
        sys.argv = ["dlx train", *args]  # @hydra.main reads its flags and overrides from sys.argv
        run = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(train_job)
    try:
        with held or contextlib.nullcontext(), stopping_by_signals(plan, sweeping) as received:
            run()
    except (SystemExit, KeyboardInterrupt) as stop:  # Ctrl-C (in training or between steps), a failed job
        code = 128 + (received() or signal.SIGINT) if isinstance(stop, KeyboardInterrupt) else stop.code
        if not sweeping:
            if isinstance(stop, KeyboardInterrupt):  # outside dlx's own handling: Hydra's start, say
                print_error("Stopped by Ctrl-C before the run started.", "stopped")
            return code if isinstance(code, int) else 1
        from dlx.sweep.records import finish_sweep

        assert plan is not None  # a sweep has a plan
        finish_sweep(Path(plan.folder))
        print_error(f"Sweep stopped. {how_to_continue(plan, args)}", "stopped")
        return code if isinstance(code, int) else 1
    return report_sweep(plan, args) if sweeping else 0


def stopping_by_signals(plan: Any, sweeping: bool) -> AbstractContextManager[Callable[[], int]]:
    """How Ctrl-C and SIGTERM stop the command: a sweep whose launcher runs the jobs in other processes stops
    through them (dlx.sweep.stop); a run in this process stops itself (dlx.train.signals). The context yields
    a function returning the signal that stopped the sweep, or 0."""
    if sweeping and runs_jobs_in_processes(plan.launcher):
        return jobs_stop_with_the_sweep(Path(plan.folder), job_ends_its_process(plan.launcher))
    return contextlib.nullcontext(lambda: 0)


def hold_run_folder(plan: Any, args: list[str]) -> tuple[list[str], RunFolderLock]:
    """One run, one folder: the run folder is held for this process from before Hydra writes into it (its
    .hydra/ record) to the run's end, and refused if it holds another run (dlx.store.run_folder). Its path is
    fixed here, once, for Hydra too (hydra.run.dir), as the one held."""
    from dlx.config.overrides import quote_override_value
    from dlx.store.run_folder import claim_run_folder

    trainer = plan.configs[0].trainer
    if trainer.resume not in (None, "auto") and not Path(trainer.resume).expanduser().is_file():
        raise DlxError(f"trainer.resume={trainer.resume}: there is no checkpoint file there. Name a checkpoint "
                       "(RUN/checkpoints/last.ckpt), a run folder (outputs/latest), or auto (the newest good "
                       "checkpoint of the folder hydra.run.dir names).")
    held = claim_run_folder(Path(plan.folder), trainer.resume, trainer.get("overwrite", False))
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir={quote_override_value(plan.folder)}"]
    return args, held


def warn_about_invalid_jobs(plan: Any) -> None:
    """A sweep runs even if some of its jobs have a bad value (they fail alone); say so before it starts."""
    from dlx.config.overrides import differing_overrides, split_override

    keys = differing_overrides(plan.jobs)
    for number, error in enumerate(plan.errors):
        if error is not None:
            differs = [o for o in plan.jobs[number] if split_override(o)[0] in keys]
            print_error(f"job {number} ({' '.join(differs)}) will fail: {error}", "warning")


def prepare_shared_stores(plan: Any) -> None:
    """A store the sweep's jobs share (MLflow's SQLite file) is created here, once, before jobs that may run
    side by side (joblib) would race to create it."""
    cfg = next((cfg for cfg in plan.configs if cfg is not None and cfg.get("logger")), None)
    if cfg is None:
        return
    from dlx.train.build import build_loggers

    for each in build_loggers(cfg):
        if hasattr(each, "prepare"):
            each.prepare(cfg.output_root)


def report_sweep(plan: Any, args: list[str]) -> int:
    """The sweep's table, saved beside its jobs; the exit status: non-zero unless every job completed (or was
    pruned by the search, which is what pruning is for)."""
    from dlx.sweep.records import finish_sweep

    runs = finish_sweep(Path(plan.folder))
    pruned = [run for run in runs if run.status == "pruned"]
    unfinished = [run for run in runs if run.status not in ("completed", "pruned")]
    if pruned:
        print(f"{len(pruned)} of {len(runs)} trials were pruned (stopped early by the study's pruner): "
              f"{', '.join(run.name for run in pruned)}")
    if unfinished:
        print_error(f"{len(unfinished)} of {len(runs)} job(s) did not complete (job "
                    f"{', '.join(f'{run.name}: {run.status}' for run in unfinished)}); the table shows each error, and "
                    f"each job's train.log the whole story. {how_to_continue(plan, args)}")
        return DlxError.exit_code
    return 0


def how_to_continue(plan: Any, args: list[str]) -> str:
    from dlx.sweep.records import continue_command
    from dlx.sweep.study_plan import is_dlx_search

    if is_dlx_search(plan):
        return ("Continue the study (finished trials are kept, interrupted ones resume) with: "
                f"{continue_command(args, plan.folder)}")
    if plan.searched:
        return ("An Optuna study goes on in a new sweep folder: run the same command with the same "
                "hydra.sweeper.storage and hydra.sweeper.study_name.")
    return f"Continue it (finished jobs are skipped) with: {continue_command(args, plan.folder)}"


def print_plan(plan: Any, study: Any = None) -> int:
    """`--dry-run`: every job the command would run, each config checked; nothing is trained or written."""
    from rich.markup import escape
    from rich.table import Table

    from dlx.config.overrides import differing_overrides
    from dlx.sweep.study_plan import describe_study
    from dlx.ui.console import wide_console

    console = wide_console()
    if plan is None:
        return 0
    if study is not None:
        for line in describe_study(study):
            console.print(escape(line))
        console.print(f"The sampler picks each trial as the study goes, over {len(study.space.params)} parameter(s):")
        for key, space in study.space.described().items():
            console.print(f"  {escape(key)}: {escape(space)}")
        if plan.errors[0] is not None:
            print_error(DlxError(f"The config the trials start from is invalid: {plan.errors[0]}"))
            return DlxError.exit_code
        console.print(f"The config the trials start from is valid (dry run: nothing created in {escape(plan.folder)}).")
        return 0
    if plan.searched:
        console.print(f"{plan.sweeper.rpartition('.')[2]} picks its {plan.trials or ''} trials as it goes, over:")
        for key, space in plan.search_space.items():
            console.print(f"  {escape(key)}: {escape(space)}")
        console.print(f"The config the trials start from is {'valid' if plan.errors[0] is None else 'invalid'}:")
    keys = differing_overrides(plan.jobs)
    table = Table(title=f"{len(plan.jobs)} job(s) in {plan.folder} (dry run: nothing created)", title_justify="left")
    for column in ["job", *keys, "config"]:
        table.add_column(column, overflow="fold")
    for number, (overrides, error) in enumerate(zip(plan.jobs, plan.errors)):
        values = dict(o.partition("=")[::2] for o in overrides)
        table.add_row(str(number), *(escape(values.get(key, "")) for key in keys),
                      "[green]valid[/]" if error is None else f"[red]{escape(error)}[/]")
    console.print(table)
    invalid = sum(error is not None for error in plan.errors)
    if invalid:
        print_error(DlxError(f"{invalid} of {len(plan.jobs)} job config(s) are invalid (see the table)."))
        return DlxError.exit_code
    return 0


def resume_in_place(args: list[str]) -> list[str]:
    """`trainer.resume=RUN/checkpoints/X.ckpt` continues in RUN: the run folder is that of the checkpoint,
    unless the command names one (hydra.run.dir=...). `trainer.resume=RUN` (a run folder) resumes RUN's newest
    good checkpoint, in RUN (trainer.resume=auto there)."""
    from dlx.config.overrides import quote_override_value

    resume = [a.partition("=")[2] for a in args if a.startswith("trainer.resume=")]
    if not resume or resume[-1] in ("auto", "null", "") or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    checkpoint = Path(resume[-1]).expanduser()
    if (checkpoint / "checkpoints").is_dir():  # a run folder (outputs/latest): its newest good checkpoint, there
        return [*[a for a in args if not a.startswith("trainer.resume=")], "trainer.resume=auto",
                f"hydra.run.dir={quote_override_value(str(checkpoint.resolve()))}"]
    if checkpoint.parent.name != "checkpoints":
        return args
    return [*args, f"hydra.run.dir={quote_override_value(str(checkpoint.resolve().parent.parent))}"]
