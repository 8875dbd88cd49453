"""dlx.config.overrides: overrides spelled one way for comparison, values quoted so that Hydra's own parser
reads them back verbatim, and the keys whose values differ between a sweep's jobs."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from dlx.config.overrides import differing_overrides, quote_override_value, split_override


def parsed_back(value: str) -> object:
    """What Hydra makes of `key=VALUE` on a command line."""
    return OverridesParser.create().parse_override(f"key={value}").value()


# --- split_override ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "printed"), [
    ("trainer.smoke=true", "trainer.smoke=True"),
    ("trainer.smoke=false", "trainer.smoke=False"),
    ("trainer.smoke=FALSE", "trainer.smoke=false"),
    ("scheduler=none", "scheduler=null"),
    ("scheduler=None", "scheduler=NULL"),
    ("optimizer.lr=1e-3", "optimizer.lr=0.001"),
    ("optimizer.lr=1E-3", "optimizer.lr=0.0010"),
    ("optimizer.lr=.5", "optimizer.lr=0.5"),
    ("trainer.seed=-3", "trainer.seed=-03"),
])
def test_split_override_spells_equal_values_one_way(typed: str, printed: str) -> None:
    assert split_override(typed) == split_override(printed)


def test_split_override_spellings() -> None:
    assert split_override("trainer.smoke=True") == ("trainer.smoke", "true")
    assert split_override("trainer.smoke=False") == ("trainer.smoke", "false")
    assert split_override("scheduler=none") == ("scheduler", "null")
    assert split_override("optimizer.lr=1e-3") == ("optimizer.lr", "0.001")
    assert split_override("trainer.max_epochs=3") == ("trainer.max_epochs", "3")  # an int stays an int
    assert split_override("trainer.grad_clip=3.0") == ("trainer.grad_clip", "3.0")
    assert split_override("model=cnn") == ("model", "cnn")
    assert split_override("model.hidden_sizes=[64,32]") == ("model.hidden_sizes", "[64,32]")
    assert split_override("hydra.run.dir=a=b") == ("hydra.run.dir", "a=b")  # the first = splits


def test_split_override_keeps_ints_and_floats_apart() -> None:
    assert split_override("trainer.max_epochs=3") != split_override("trainer.max_epochs=3.0")


def test_split_override_drops_add_and_delete_prefixes_from_the_key() -> None:
    assert split_override("+trainer.extra=1") == ("trainer.extra", "1")
    assert split_override("++trainer.extra=1") == ("trainer.extra", "1")
    assert split_override("~trainer.patience") == ("trainer.patience", "")
    assert split_override("~trainer.patience=5") == ("trainer.patience", "5")


@pytest.mark.parametrize(("typed", "printed"), [("trainer.seed=+5", "trainer.seed=5"),
                                                ("trainer.max_steps=1_000", "trainer.max_steps=1000")])
def test_split_override_spells_hydra_ints_one_way(typed: str, printed: str) -> None:
    assert parsed_back(typed.partition("=")[2]) == parsed_back(printed.partition("=")[2])  # Hydra: the same int
    assert split_override(typed) == split_override(printed)


# --- quote_override_value ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["outputs/sweeps/2026-01-01/12-00-00", "runs/a.b+c-d_e", "model", "-"])
def test_plain_values_are_left_unquoted(value: str) -> None:
    assert quote_override_value(value) == value
    assert parsed_back(value) == value


@pytest.mark.parametrize("value", [
    "my runs/first try", "a,b", "C:dir", "it's", 'say "hi"', "[1,2]", "{a: 1}", "x=y", "${oops}", "",
    "  leading and trailing  ", "end\\", "quote\\'s", "\\'", "50%*?@|#$", "~home", "tab\there",
])
def test_quoted_values_read_back_verbatim(value: str) -> None:
    quoted = quote_override_value(value)
    assert quoted.startswith("'") and quoted.endswith("'")
    assert parsed_back(quoted) == value


def test_quoting_escapes_inner_quotes() -> None:
    assert quote_override_value("it's") == "'it\\'s'"
    assert quote_override_value("a b") == "'a b'"


@pytest.mark.parametrize("value", ["a\\b", "C:\\runs\\sweep"])
def test_quoted_backslashes_inside_a_value_read_back_verbatim(value: str) -> None:
    assert parsed_back(quote_override_value(value)) == value


def test_non_ascii_values_read_back_verbatim() -> None:
    assert parsed_back(quote_override_value("runs/café")) == "runs/café"


@pytest.mark.parametrize("value", ["true", "null", "1e-3"])
def test_keyword_like_values_read_back_as_strings(value: str) -> None:
    assert parsed_back(quote_override_value(value)) == value


# --- differing_overrides -------------------------------------------------------------------------------------


def test_differing_overrides_lists_the_keys_that_vary_in_first_seen_order() -> None:
    jobs = [
        ["model=ffn", "optimizer.lr=0.1", "trainer.max_epochs=3", "trainer.seed=0"],
        ["model=ffn", "optimizer.lr=0.01", "trainer.max_epochs=3", "trainer.seed=1"],
    ]
    assert differing_overrides(jobs) == ["optimizer.lr", "trainer.seed"]


def test_differing_overrides_counts_a_key_missing_from_some_jobs() -> None:
    jobs = [["model=ffn"], ["model=ffn", "+trainer.patience=2"], ["model=ffn", "trainer.patience=2"]]
    assert differing_overrides(jobs) == ["trainer.patience"]


def test_differing_overrides_ignores_spelling() -> None:
    jobs = [["optimizer.lr=1e-3", "trainer.smoke=true"], ["optimizer.lr=0.001", "trainer.smoke=True"]]
    assert differing_overrides(jobs) == []


def test_differing_overrides_of_one_job_or_none() -> None:
    assert differing_overrides([["model=ffn", "optimizer.lr=0.1"]]) == []
    assert differing_overrides([]) == []
