"""The one exception type users see: a paragraph that says what was wrong and how to fix it."""

import difflib
from collections.abc import Iterable


class DlxError(Exception):
    """An error caused by the user's input (config, files, flags), reported without a traceback."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    scored = [(difflib.SequenceMatcher(None, word, choice).ratio(), choice) for choice in set(choices)]
    # Ties are common between short names (fnn: ffn or rnn?); people seldom mistype the first letter.
    scored = [(score + 0.01 * (choice[:1] == word[:1]), choice) for score, choice in scored if score >= 0.6]
    return f' Did you mean "{max(scored)[1]}"?' if scored else ""


def format_choices(choices: Iterable[str]) -> str:
    return ", ".join(sorted(set(choices)))
