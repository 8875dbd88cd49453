"""The one exception type users see: a paragraph that says what was wrong and how to fix it."""

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class DlxError(Exception):
    """An error caused by the user's input (config, files, flags), reported without a traceback."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    scored = [(difflib.SequenceMatcher(None, word, choice).ratio(), choice) for choice in set(choices)]
    # A prefix is what a hurried user types (bf16 for bf16-mixed). Ties are common between short names
    # (fnn: ffn or rnn?); people seldom mistype the first letter.
    scored = [(score + 0.3 * (len(word) >= 3 and choice.startswith(word)), choice) for score, choice in scored]
    scored = [(score + 0.01 * (choice[:1] == word[:1]), choice) for score, choice in scored if score >= 0.6]
    return f' Did you mean "{max(scored)[1]}"?' if scored else ""


def format_choices(choices: Iterable[str]) -> str:
    return ", ".join(sorted(set(choices)))


def require(module: str, extra: str, purpose: str) -> Any:
    """Import one of dlx's optional dependencies, or raise a DlxError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DlxError(f"{purpose} needs {module.partition('.')[0]}, which is not installed. Install it with: "
                       f'pip install "dlx[{extra}]"') from err


def check_writable(path: Path, option: str = "--out") -> None:
    """Raise a DlxError naming `option` unless a file can be written at `path` (its folders made as needed)."""
    path = Path(path)
    existing = Path(os.path.abspath(path)).parent
    while not existing.exists():
        existing = existing.parent
    if path.is_dir():
        problem = "it is a folder"
    elif not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = f"{existing} is not writable"
    else:
        return
    raise DlxError(f"Cannot write {path}: {problem}. Pass another {option}.")
