"""Command-line overrides as strings: parsed by Hydra's own grammar, spelled one way for comparison, quoted
so that Hydra reads them back verbatim, and compared between the jobs of a sweep."""

import re

from dlx.config.explain import HELP_HINT
from dlx.errors import DlxError


def differing_overrides(jobs: list[list[str]]) -> list[str]:
    """The override keys whose values are not the same in every job's overrides, in the order they first appear."""
    values: dict[str, set[str | None]] = {}
    parsed = [dict(split_override(o) for o in overrides) for overrides in jobs]
    for overrides in parsed:
        for key in overrides:
            values.setdefault(key, set())
    for key in values:
        values[key] = {overrides.get(key) for overrides in parsed}
    return [key for key, seen in values.items() if len(seen) > 1]


def split_override(override: str) -> tuple[str, str]:
    """(key, value) with the value spelled one way: a sweep's jobs get values as Hydra prints them (True,
    0.001) while a command line keeps what was typed (true, 1e-3, +5, 1_000)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), spelled_value(value)


def spelled_value(value: str) -> str:
    keyword = {"true": "true", "false": "false", "none": "null", "null": "null"}.get(value.lower())
    if keyword is not None:
        return keyword
    for number in (int, float):  # int first: 5 and 5.0 are different values to Hydra
        try:
            return repr(number(value))
        except ValueError:
            continue
    return value


def quote_override_value(value: str) -> str:
    """A value Hydra's override parser reads back verbatim as this string: as it is when plain ASCII
    (outputs/sweeps/...), quoted when it holds anything else (spaces, commas, colons, brackets, quotes,
    letters outside ASCII) or would read as a bool, null or number."""
    if re.fullmatch(r"[A-Za-z0-9_./+-]+", value) and not reads_as_scalar(value):
        return value
    # Hydra unescapes backslashes only where they precede a quote or end the value: double those alone.
    escaped = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, value).replace("'", "\\'")
    return "'" + escaped + "'"


def reads_as_scalar(value: str) -> bool:
    """Whether Hydra reads the unquoted value as a bool, null or number rather than a string."""
    if value.lower() in ("true", "false", "null", "none"):
        return True
    try:
        float(value)  # ints too, and inf, nan, 1_000
    except ValueError:
        return False
    return True


def is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).is_sweep_override()


def check_overrides_parse(overrides: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # OverrideParseException
        raise DlxError(f"{err}. Overrides look like key=value, group=option, +new_key=value or ~key; quote values "
                       f"with spaces or special characters. {HELP_HINT}") from err
