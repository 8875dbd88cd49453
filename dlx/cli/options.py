"""What the commands share: the --allow and --config-dir help, and DlxError as a paragraph and an exit status."""

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from dlx.errors import DlxError
from dlx.ui.console import print_error


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
