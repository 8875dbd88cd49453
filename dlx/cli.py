"""The `dlx` command. Wiring only: each command hands its arguments to the module that does the work.

torch and Hydra are imported inside the commands, so `dlx --help` answers at once.
"""

import gc
import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from dlx.errors import DlxError

app = typer.Typer(
    name="dlx",
    help="Config-driven deep-learning experiments: compose Hydra configs, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def print_error(err: BaseException | str, label: str = "error") -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]{label}:[/] {escape(str(err))}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,  # --help goes to Hydra, which lists the config groups and their options
)
def train(ctx: typer.Context) -> None:
    """Train: dlx train [OVERRIDES...], e.g. dlx train model=cnn optimizer.lr=0.01; -m sweeps; --help lists configs."""
    raise typer.Exit(run_train(list(ctx.args)))


def run_train(args: list[str]) -> int:
    """`dlx train ARGS`: hand the arguments to Hydra's own runner; the exit status."""
    from dlx.compose import parse_hydra_args, preflight
    from dlx.config import config_dir, register_schema_and_resolvers
    from dlx.distributed import agree_on_run_dir
    from dlx.sweep import quote_override_value, start_sweep

    dry_run = "--dry-run" in args
    args = resume_in_place([a for a in args if a != "--dry-run"])
    args = agree_on_run_dir(args)  # under torchrun: every rank trains in the run folder rank 0 composes
    printing_config = parse_hydra_args(args).cfg is not None
    try:
        # Compose and check every job's config before Hydra starts, so mistakes get dlx's explanation.
        # With --cfg nothing is trained, so the constructor checks (which import torch) are skipped.
        plan = preflight(args, check_values=not printing_config, keep_going=dry_run)
        if dry_run:
            return print_plan(plan)
        # Under torchrun every rank runs this command; rank 0 alone keeps the sweep's records and table.
        sweeping = plan is not None and plan.multirun and not printing_config and is_main_process()
        if sweeping:
            if not any(a.startswith("hydra.sweep.dir=") for a in args):
                # Fixed here, once: a requeued or continued job must find the same folder, not a new ${now:}.
                args = [*args, f"hydra.sweep.dir={quote_override_value(plan.folder)}"]
            start_sweep(plan, args)
            warn_about_invalid_jobs(plan)
            prepare_shared_stores(plan)
    except DlxError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print_error(err)
        return err.exit_code

    import hydra

    register_schema_and_resolvers()
    sys.argv = ["dlx train", *args]  # @hydra.main reads its flags and overrides from sys.argv
    run = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(train_job)
    try:
        run()
    except (SystemExit, KeyboardInterrupt) as stop:  # Ctrl-C (in training or between steps), a failed job
        code = 128 + signal.SIGINT if isinstance(stop, KeyboardInterrupt) else stop.code
        if not sweeping:
            if isinstance(stop, KeyboardInterrupt):  # outside the training loop: nothing to save yet
                print_error("Stopped by Ctrl-C before training started or after it ended.", "stopped")
            return code if isinstance(code, int) else 1
        from dlx.sweep import finish_sweep

        finish_sweep(Path(plan.folder))
        print_error(f"Sweep stopped. {how_to_continue(plan, args)}", "stopped")
        return code if isinstance(code, int) else 1
    return report_sweep(plan, args) if sweeping else 0


def warn_about_invalid_jobs(plan: Any) -> None:
    """A sweep runs even if some of its jobs have a bad value (they fail alone); say so before it starts."""
    from dlx.runs import differing_overrides, split_override

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
    from dlx.build import build_loggers

    for each in build_loggers(cfg):
        if hasattr(each, "prepare"):
            each.prepare(cfg.output_root)


def is_main_process() -> bool:
    """False in the ranks other than 0 of a torchrun or submitit job: they train, rank 0 speaks."""
    return os.environ.get("RANK", "0") == "0"


def report_sweep(plan: Any, args: list[str]) -> int:
    """The sweep's table, saved beside its jobs; the exit status: non-zero unless every job completed."""
    from dlx.sweep import finish_sweep

    runs = finish_sweep(Path(plan.folder))
    unfinished = [run for run in runs if run.status != "completed"]
    if unfinished:
        print_error(f"{len(unfinished)} of {len(runs)} job(s) did not complete (job "
                    f"{', '.join(f'{run.name}: {run.status}' for run in unfinished)}); the table shows each error, and "
                    f"each job's train.log the whole story. {how_to_continue(plan, args)}")
        return DlxError.exit_code
    return 0


def how_to_continue(plan: Any, args: list[str]) -> str:
    from dlx.sweep import continue_command

    if plan.searched:
        return ("An Optuna study goes on in a new sweep folder: run the same command with the same "
                "hydra.sweeper.storage and hydra.sweeper.study_name.")
    return f"Continue it (finished jobs are skipped) with: {continue_command(args, plan.folder)}"


def print_plan(plan: Any) -> int:
    """`--dry-run`: every job the command would run, each config checked; nothing is trained or written."""
    from rich.markup import escape
    from rich.table import Table

    from dlx.runs import differing_overrides, wide_console

    console = wide_console()
    if plan is None:
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
    unless the command names one (hydra.run.dir=...)."""
    from dlx.sweep import quote_override_value

    resume = [a.partition("=")[2] for a in args if a.startswith("trainer.resume=")]
    if not resume or resume[-1] in ("auto", "null", "") or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    checkpoint = Path(resume[-1]).expanduser()
    if checkpoint.parent.name != "checkpoints":
        return args
    return [*args, f"hydra.run.dir={quote_override_value(str(checkpoint.resolve().parent.parent))}"]


def train_job(cfg: Any) -> Optional[float]:
    """The function Hydra runs for each job, with the composed config and the job's run folder. Returns the
    monitored metric's best value: what a search sweeper (Optuna) optimises; None marks a failed trial."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlx.distributed import export_submitit_environment
    from dlx.engine import Interrupted
    from dlx.run import train as train_run
    from dlx.sweep import completed_attempt, share_machine

    export_submitit_environment()  # a SLURM job of several tasks: each task is one rank of the run
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    choices = {group: option for group, option in hydra_cfg.runtime.choices.items()
               if not group.startswith("hydra/") and group != "train_schema" and option is not None}
    config_dirs = [source.path.removeprefix("file://") for source in hydra_cfg.runtime.config_sources
                   if source.provider == "command-line"]
    try:
        if sweeping and (done := completed_attempt(cfg, run_dir, overrides)) is not None:
            print(f"Job {hydra_cfg.job.num} ({' '.join(overrides) or 'defaults'}) already completed in "
                  f"{run_dir}: skipped", flush=True)
            return (done.get("best") or {}).get("value")
        with share_machine(cfg, hydra_cfg):
            summary = train_run(cfg, run_dir, choices, overrides, config_dirs)
        check_search_direction(hydra_cfg, summary)
    except DlxError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if is_main_process():
            print_error(err, "stopped" if isinstance(err, Interrupted) else "error")
        if isinstance(err, Interrupted) and err.exit_code == 128 + signal.SIGUSR2:
            hand_back_preemption_signal()
        if not sweeping or isinstance(err, Interrupted):  # Ctrl-C stops a whole sweep too
            raise SystemExit(err.exit_code)
        return None  # in a sweep, one failed job does not stop the others (Optuna records a failed trial)
    except Exception as err:  # a bug or an out-of-memory error: in a sweep, the other jobs still run
        if not sweeping:
            raise
        import traceback

        traceback.print_exc()
        print_error(DlxError(f"Job {hydra_cfg.job.num} failed: {type(err).__name__}: {err}"))
        return None
    return summary["best"]["value"]  # None when no validation gave a finite value: a failed trial too


def hand_back_preemption_signal() -> None:
    """SIGUSR2 is how SLURM (--signal) and submitit announce preemption or the time limit. dlx stopped and
    saved last.ckpt first; now the handler that was there before (submitit's: requeue this job) runs."""

    handler = signal.getsignal(signal.SIGUSR2)
    if callable(handler):
        handler(signal.SIGUSR2, None)


def check_search_direction(hydra_cfg: Any, summary: dict[str, Any]) -> None:
    """An Optuna sweep that maximises a metric the run minimises would search for the worst model."""
    direction = hydra_cfg.sweeper.get("direction")
    mode = (summary.get("monitor") or {}).get("mode")
    expected = {"max": "maximize", "min": "minimize"}.get(mode)
    if isinstance(direction, str) and expected and direction != expected:
        print_error(DlxError(f"hydra.sweeper.direction={direction}, but this run's monitored metric "
                             f"{summary['monitor']['metric']} is best at its {mode}imum: the search would look for "
                             f"the worst model. Pass hydra.sweeper.direction={expected}, or monitor another metric "
                             "(trainer.monitor.metric=..., trainer.monitor.mode=...)."))
        raise SystemExit(DlxError.exit_code)


@app.command("eval")
def eval_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value changes to the stored config (dataset.root=..., trainer.device=cpu); split=val; "
        "for a GAN, classifier=CLASSIFIER.ckpt scores its samples with that classifier."
    ),
    split: str = typer.Option("test", help="Which split to evaluate: test, val or train."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a table."),
    allow: list[str] = typer.Option(
        [], "--allow", help="Trust this _target_ (your own model or data class) named in the checkpoint's config."
    ),
    config_dirs: list[Path] = typer.Option(
        [], "--config-dir", "-cd", help="Your config folder: the _target_s its YAML files name are trusted."
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out-dir", help="Classifiers: where the confusion matrix PNG (and --worst grid) go; default RUN/eval."
    ),
    worst: int = typer.Option(0, "--worst", min=0, help="Classifiers: list the N most confidently wrong examples "
                              "and save them as an image grid."),
) -> None:
    """Evaluate a checkpoint: rebuilds its model and data from the file alone.

    Classifiers also get precision, recall and F1 per class and a confusion matrix (a table and a PNG)."""
    from dlx.class_metrics import class_details, print_class_report
    from dlx.run import evaluate_checkpoint

    rest, classifier = [], None
    for override in overrides or []:
        if override.startswith("split="):
            split = override.partition("=")[2]
        elif override.startswith("classifier="):
            classifier = Path(override.partition("=")[2])
        else:
            rest.append(override)
    try:
        metrics, info, evaluated = evaluate_checkpoint(checkpoint, rest, split, allow, config_dirs)
        classes, warnings = class_details(evaluated, checkpoint, split, out_dir, worst)
        if classifier is not None:  # a GAN scored by a classifier of the same data (dlx/gan_score.py)
            from dlx.gan_score import classifier_score

            metrics |= classifier_score(checkpoint, classifier, allow, config_dirs)
            info["classifier"] = str(classifier)
    except DlxError as err:
        print_error(err)
        raise typer.Exit(err.exit_code)
    for warning in warnings:
        print_error(warning, "warning")
    if json_output:
        from dataclasses import asdict

        from dlx.metrics import json_safe

        print(json.dumps(json_safe({**info, "metrics": metrics, **(asdict(classes) if classes else {})})))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{checkpoint}: step {info['step']:,}, {split} split, {info['samples']:,} samples", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if classes:
        print_class_report(classes, console)


@app.command("runs")
def runs_command(
    folder: Path = typer.Argument(Path("outputs"), help="A folder of runs and sweeps, searched recursively."),
    model: Optional[str] = typer.Option(None, help="Only runs of this model (e.g. cnn)."),
    dataset: Optional[str] = typer.Option(None, help="Only runs on this data set (e.g. digits)."),
    status: Optional[str] = typer.Option(None, help="Only runs with this status: completed, failed, interrupted "
                                         "or running."),
    best: Optional[int] = typer.Option(None, "--best", min=1, help="Only the N best completed runs."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
) -> None:
    """Table of the runs under FOLDER (default outputs/), best first: overrides, metrics, time, status."""
    from dlx.metrics import json_safe
    from dlx.runs import best_first, find_runs, print_table, table_rows

    if not folder.is_dir():
        print_error(DlxError(f"{folder} is not a folder. dlx train writes runs under outputs/ in the folder it "
                             "runs in (or output_root=...): run `dlx runs` there, or name the folder."))
        raise typer.Exit(DlxError.exit_code)
    runs = [run for run in find_runs(folder)
            if (model is None or run.choices.get("model") == model)
            and (dataset is None or run.choices.get("dataset") == dataset)
            and (status is None or run.status == status)]
    runs = best_first(runs)
    if best is not None:
        runs = [run for run in runs if run.has_score][:best]
    if json_output:
        columns, rows = table_rows(runs, ("model", "dataset"))
        print(json.dumps(json_safe(rows), indent=2))
    elif not runs:
        print(f"No runs under {folder}" + (" match these filters." if model or dataset or status else "."))
    else:
        print_table(runs, f"{len(runs)} run(s) under {folder}, best first", ("model", "dataset"))


@contextmanager
def errors_reported() -> Iterator[None]:
    """A DlxError becomes its paragraph on stderr and exit status 2, without a traceback."""
    try:
        yield
    except DlxError as err:
        print_error(err)
        raise typer.Exit(err.exit_code) from None


ALLOW_HELP = "Trust this _target_ (your own model class) named in the checkpoint's config."
CONFIG_DIR_HELP = "Your config folder: the _target_s its YAML files name are trusted."


@app.command("plot")
def plot_command(
    runs: list[Path] = typer.Argument(..., help="Run folders, or folders of runs (a sweep folder: all its jobs)."),
    metric: list[str] = typer.Option([], "--metric", help="Only this curve: loss, acc, or val/acc for one split "
                                     "(repeat for several)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The PNG to write; default RUN/curves.png for one "
                                       "folder, else ./curves.png."),
) -> None:
    """Loss and metric curves of runs as a PNG: training and validation, several runs overlaid.

    The legend names each run by the overrides that differ between them."""
    from dlx.plot import plot_runs

    with errors_reported():
        path, curves, metrics = plot_runs(runs, metric, out)
    print(f"{path}: {', '.join(metrics)} of {len(curves)} run(s)")


@app.command("predict")
def predict_command(
    checkpoint: Path = typer.Argument(..., help="A classifier's .ckpt file written by dlx train."),
    images: list[Path] = typer.Argument(..., help="PNG or JPEG files, or folders of them."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many of the most probable classes to show."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """Class and top-k probabilities of a classifier for your own image files.

    Each image is prepared as the training images were: grey or colour, resized, scaled to [0, 1], normalised."""
    from dlx.predict import predict, print_predictions

    with errors_reported():
        predictions = predict(checkpoint, images, top_k, allow, config_dirs)
    if json_output:
        print(json.dumps({"checkpoint": str(checkpoint), "predictions": predictions}))
    else:
        print_predictions(predictions, checkpoint)


@app.command("sample")
def sample_command(
    checkpoint: Path = typer.Argument(..., help="A GAN's .ckpt file written by dlx train."),
    count: int = typer.Option(64, "-n", "--count", help="How many samples to draw."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The PNG grid to write; default "
                                       "RUN/samples/CKPT_seedSEED.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise: the same seed draws the same samples."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """New samples from a GAN checkpoint's generator, as a grid of images."""
    from dlx.predict import sample

    with errors_reported():
        path = sample(checkpoint, count, out, seed, allow, config_dirs)
    print(f"{path}: {count} samples from {checkpoint} (seed {seed})")


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The file to write; default beside the "
                                       "checkpoint (best.onnx, best.pt)."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """Export a checkpoint's model to ONNX or TorchScript, checked to give the checkpoint's outputs.

    Image models take raw pixels in [0, 1]: the training normalisation is inside the exported graph."""
    from dlx.export import export_checkpoint, print_exported

    with errors_reported():
        exported = export_checkpoint(checkpoint, fmt, out, allow, config_dirs)
    print_exported(exported, checkpoint)


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="A run folder (outputs/latest, outputs/DATE/TIME)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The HTML file; default RUN/report.html."),
    allow: list[str] = typer.Option([], "--allow", help=ALLOW_HELP),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help=CONFIG_DIR_HELP),
) -> None:
    """One self-contained HTML page about a run: metrics, curves, confusion matrix or samples, config."""
    from dlx.report import write_report

    with errors_reported():
        path = write_report(run, out, allow, config_dirs)
    print(f"{path} ({path.stat().st_size // 1024:,} KiB, self-contained: open it in any browser)")


@app.command("ls")
def ls_command(
    group: Optional[str] = typer.Argument(None, help="Only this group's options (model, optimizer, ...)."),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help="Also list your config folder's options."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
) -> None:
    """List every config group with its options and what each one is."""
    from dlx.configs import list_options, print_options

    with errors_reported():
        options = list_options(config_dirs)
        if json_output:
            print(json.dumps([{"group": o.group, "option": o.name, "description": o.description,
                               "default": o.default, "path": str(o.path) if o.path else None}
                              for o in options if o.group and (group is None or o.group == group)], indent=2))
        else:
            print_options(options, group)


@app.command("cat")
def cat_command(
    items: Optional[list[str]] = typer.Argument(None, help="GROUP/OPTION (model/cnn) prints that file; overrides "
                                                "(model=cnn optimizer.lr=0.01) print the config they compose."),
    config_dir: Optional[Path] = typer.Option(None, "--config-dir", "-cd", help="Your config folder, searched "
                                              "first, as dlx train --config-dir does."),
) -> None:
    """Print a config file (dlx cat model/cnn) or the config overrides compose (dlx cat model=cnn)."""
    from dlx.configs import composed_config, find_option

    items = items or []
    files = [item for item in items if "=" not in item]
    with errors_reported():
        if files and len(items) > 1:
            raise DlxError(f"Give one GROUP/OPTION to print its file ({files[0]}), or overrides (model=cnn ...) to "
                           "print the config they compose: not both.")
        if files:
            print(find_option(files[0], [config_dir] if config_dir else []).path.read_text(encoding="utf-8"), end="")
        else:
            print(composed_config(items, config_dir), end="")


@app.command("cp")
def cp_command(
    source: str = typer.Argument(..., help="A built-in config as GROUP/OPTION, e.g. model/cnn."),
    destination: str = typer.Argument(..., help="The file to write (my_conf/model/my_cnn.yaml) or a folder "
                                      "(my_conf/ or my_conf/model/)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the destination if it exists."),
) -> None:
    """Copy a built-in config into your own config folder, to edit."""
    from dlx.configs import copy_option

    with errors_reported():
        # A str, not a Path: a trailing slash says "a folder", even one that does not exist yet.
        path, usage = copy_option(source, destination, force)
    print(f"Copied {source} to {path}. {usage}")


def main() -> None:
    # `python -m dlx` puts the working folder on sys.path, the `dlx` script does not; users' own
    # `_target_` modules live there, so both entry points must see it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if sys.argv[1:2] == ["train"]:
            # Every argument of `train` belongs to Hydra: skip Typer's parsing, whose imports cost a tenth
            # of a second that every run, and every job of a sweep of short runs, would pay.
            sys.exit(run_train(sys.argv[2:]))
        app(prog_name="dlx")
    finally:
        # The interpreter's last garbage collection walks every object torch created: half a second at
        # each exit. Frozen objects are skipped; finalizers and atexit handlers still run.
        gc.freeze()
