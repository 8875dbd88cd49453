"""The `dlx` command. Wiring only: each command hands its arguments to the module that does the work.

torch and Hydra are imported inside the commands, so `dlx --help` answers at once.
"""

import gc
import json
import math
import os
import sys
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


def print_error(err: BaseException, label: str = "error") -> None:
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

    args = resume_in_place(args)
    try:
        # Compose and check every job's config before Hydra starts, so mistakes get dlx's explanation.
        # With --cfg nothing is trained, so the constructor checks (which import torch) are skipped.
        preflight(args, check_values=parse_hydra_args(args).cfg is None)
    except DlxError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print_error(err)
        return err.exit_code

    import hydra

    register_schema_and_resolvers()
    failures: list[str] = []
    sys.argv = ["dlx train", *args]  # @hydra.main reads its flags and overrides from sys.argv
    hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(train_job(failures))()
    if failures:
        print_error(DlxError(f"{len(failures)} job(s) failed: {', '.join(failures)}. Each failed run folder's "
                             "summary.json holds its error."))
        return DlxError.exit_code
    return 0


def resume_in_place(args: list[str]) -> list[str]:
    """`trainer.resume=RUN/checkpoints/X.ckpt` continues in RUN: the run folder is that of the checkpoint,
    unless the command names one (hydra.run.dir=...)."""
    resume = [a.partition("=")[2] for a in args if a.startswith("trainer.resume=")]
    if not resume or resume[-1] in ("auto", "null", "") or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    checkpoint = Path(resume[-1]).expanduser()
    if checkpoint.parent.name != "checkpoints":
        return args
    return [*args, f"hydra.run.dir='{checkpoint.resolve().parent.parent}'"]


def train_job(failures: list[str]) -> Any:
    """The function Hydra runs for each job, with the composed config and the job's run folder."""

    def job(cfg: Any) -> Optional[float]:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from dlx.engine import Interrupted
        from dlx.run import train as train_run

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        choices = {group: option for group, option in hydra_cfg.runtime.choices.items()
                   if not group.startswith("hydra/") and group != "train_schema"}
        config_dirs = [source.path.removeprefix("file://") for source in hydra_cfg.runtime.config_sources
                       if source.provider == "command-line"]
        try:
            summary = train_run(cfg, run_dir, choices, list(hydra_cfg.overrides.task), config_dirs)
        except DlxError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print_error(err, "stopped" if isinstance(err, Interrupted) else "error")
            if hydra_cfg.mode == RunMode.RUN or isinstance(err, Interrupted):  # Ctrl-C stops a whole sweep too
                raise SystemExit(err.exit_code)
            failures.append(str(run_dir))  # in a sweep, one failed job does not stop the others
            return math.nan  # what a sweeper (Optuna) takes as a failed trial
        return summary["best"]["value"]  # what a Hydra sweeper (e.g. Optuna) optimises

    return job


@app.command("eval")
def eval_command(
    checkpoint: Path = typer.Argument(..., help="A .ckpt file written by dlx train."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value changes to the stored config (dataset.root=..., trainer.device=cpu); split=val."
    ),
    split: str = typer.Option("test", help="Which split to evaluate: test, val or train."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a table."),
    allow: list[str] = typer.Option(
        [], "--allow", help="Trust this _target_ (your own model or data class) named in the checkpoint's config."
    ),
    config_dirs: list[Path] = typer.Option(
        [], "--config-dir", "-cd", help="Your config folder: the _target_s its YAML files name are trusted."
    ),
) -> None:
    """Evaluate a checkpoint: rebuilds its model and data from the file alone."""
    from dlx.run import evaluate_checkpoint

    rest = []
    for override in overrides or []:
        if override.startswith("split="):
            split = override.partition("=")[2]
        else:
            rest.append(override)
    try:
        metrics, info = evaluate_checkpoint(checkpoint, rest, split, allow, config_dirs)
    except DlxError as err:
        print_error(err)
        raise typer.Exit(err.exit_code)
    if json_output:
        from dlx.metrics import json_safe

        print(json.dumps(json_safe({**info, "metrics": metrics})))
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
