"""The `dlx` command: one module per subcommand, each a Typer wrapper that hands its arguments to the layer that
does the work. torch and Hydra are imported inside the commands, so `dlx --help` answers at once.

`dlx train` has a single path, whichever way it is started: every argument belongs to Hydra, and
dlx.sweep.command.run_train composes, checks and runs them (main() calls it without Typer's parsing).
"""

import gc
import os
import sys

import typer

from dlx.cli import configs, evaluate, export, plot, predict, report, runs, study, train

app = typer.Typer(
    name="dlx",
    help="Config-driven deep-learning experiments: compose Hydra configs, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,  # --help goes to Hydra, which lists the config groups and their options
)(train.train)
app.command("eval")(evaluate.eval_command)
app.command("runs")(runs.runs_command)
app.command("plot")(plot.plot_command)
app.command("predict")(predict.predict_command)
app.command("sample")(predict.sample_command)
app.command("export")(export.export_command)
app.command("report")(report.report_command)
app.command("study")(study.study_command)
app.command("ls")(configs.ls_command)
app.command("cat")(configs.cat_command)
app.command("cp")(configs.cp_command)


def main() -> None:
    # `python -m dlx` puts the working folder on sys.path, the `dlx` script does not; users' own
    # `_target_` modules live there, so both entry points must see it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if sys.argv[1:2] == ["train"]:
            # Every argument of `train` belongs to Hydra: skip Typer's parsing, whose imports cost a tenth
            # of a second that every run, and every job of a sweep of short runs, would pay.
            from dlx.sweep.command import run_train

            sys.exit(run_train(sys.argv[2:]))
        app(prog_name="dlx")
    finally:
        # The interpreter's last garbage collection walks every object torch created: half a second at
        # each exit. Frozen objects are skipped; finalizers and atexit handlers still run.
        gc.freeze()
