"""`dlx train [OVERRIDES...]`: every argument goes to Hydra's own runner (dlx.sweep.command)."""

import typer


def train(ctx: typer.Context) -> None:
    """Train: dlx train [OVERRIDES...], e.g. dlx train model=cnn optimizer.lr=0.01; -m sweeps; --help lists configs."""
    from dlx.sweep.command import run_train  # its imports are a train's, not every command's (`dlx --help`)

    raise typer.Exit(run_train(list(ctx.args)))
