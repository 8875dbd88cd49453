"""`dlx train [OVERRIDES...]`: every argument goes to Hydra's own runner (dlx.sweep.command)."""

import typer

from dlx.sweep.command import run_train


def train(ctx: typer.Context) -> None:
    """Train: dlx train [OVERRIDES...], e.g. dlx train model=cnn optimizer.lr=0.01; -m sweeps; --help lists configs."""
    raise typer.Exit(run_train(list(ctx.args)))
