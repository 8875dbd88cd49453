"""`dlx ls`, `dlx cat`, `dlx cp`: list, print and copy the built-in configs."""

import json
from pathlib import Path
from typing import Optional

import typer

from dlx.cli.options import errors_reported
from dlx.errors import DlxError
from dlx.ui.console import printable


def ls_command(
    group: Optional[str] = typer.Argument(None, help="Only this group's options (model, optimizer, ...)."),
    config_dirs: list[Path] = typer.Option([], "--config-dir", "-cd", help="Also list your config folder's options."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
) -> None:
    """List every config group with its options and what each one is."""
    from dlx.config.catalogue import list_options, print_options

    with errors_reported():
        options = list_options(config_dirs)
        if json_output:
            print(json.dumps([{"group": o.group, "option": o.name, "description": o.description,
                               "default": o.default, "path": str(o.path) if o.path else None}
                              for o in options if o.group and (group is None or o.group == group)], indent=2))
        else:
            print_options(options, group)


def cat_command(
    items: Optional[list[str]] = typer.Argument(None, help="GROUP/OPTION (model/cnn) prints that file; overrides "
                                                "(model=cnn optimizer.lr=0.01) print the config they compose."),
    config_dir: Optional[Path] = typer.Option(None, "--config-dir", "-cd", help="Your config folder, searched "
                                              "first, as dlx train --config-dir does."),
) -> None:
    """Print a config file (dlx cat model/cnn) or the config overrides compose (dlx cat model=cnn)."""
    from dlx.config.catalogue import composed_config, find_option

    items = items or []
    files = [item for item in items if "=" not in item]
    with errors_reported():
        if files and len(items) > 1:
            raise DlxError(f"Give one GROUP/OPTION to print its file ({files[0]}), or overrides (model=cnn ...) to "
                           "print the config they compose: not both.")
        if files:
            print(find_option(files[0], [config_dir] if config_dir else []).file.read_text(encoding="utf-8"), end="")
        else:
            print(composed_config(items, config_dir), end="")


def cp_command(
    source: str = typer.Argument(..., help="A built-in config as GROUP/OPTION, e.g. model/cnn."),
    destination: str = typer.Argument(..., help="The file to write (my_conf/model/my_cnn.yaml) or a folder "
                                      "(my_conf/ or my_conf/model/)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the destination if it exists."),
) -> None:
    """Copy a built-in config into your own config folder, to edit."""
    from dlx.config.catalogue import plan_copy
    from dlx.store.files import atomic_file

    with errors_reported():
        # A str, not a Path: a trailing slash says "a folder", even one that does not exist yet.
        original, path, usage = plan_copy(source, destination, force)
        with atomic_file(path) as copy:  # replaces what is there, never writes through it
            copy.write(original.read_bytes())
    print(printable(f"Copied {source} to {path}. {usage}"))
