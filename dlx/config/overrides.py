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
    0.001) while a command line keeps what was typed (true, 1e-3)."""
    key, _, value = override.partition("=")
    spelled = {"true": "true", "false": "false", "none": "null", "null": "null"}.get(value.lower())
    if spelled is None:
        try:
            spelled = repr(float(value)) if not value.isdigit() else value
        except ValueError:
            spelled = value
    return key.lstrip("+~"), spelled


def quote_override_value(value: str) -> str:
    """A value Hydra's override parser reads back verbatim: as it is when plain (outputs/sweeps/...), quoted
    when it holds spaces, commas, colons, brackets or quotes."""
    if re.fullmatch(r"[\w./+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
