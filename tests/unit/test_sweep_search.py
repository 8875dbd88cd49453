"""The search space syntax users know from hydra.sweeper.params, turned into Optuna distributions and back
into overrides; and the search settings' checks."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dlx.errors import DlxError
from dlx.sweep.search import Measures, SearchSettings, build_pruner, build_sampler, check_objectives
from dlx.sweep.search_space import grid_of, parse_search_space


def only(params: dict[str, str], arguments: list[str] | None = None):
    space = parse_search_space(params, arguments or [])
    assert len(space.params) == 1
    return space.params[0]


def test_each_form_of_the_syntax_becomes_its_distribution() -> None:
    assert only({"optimizer.lr": "tag(log, interval(0.003, 0.5))"}).distribution == FloatDistribution(0.003, 0.5, log=True)
    assert only({"model.dropout": "interval(0.0, 0.5)"}).distribution == FloatDistribution(0.0, 0.5)
    assert only({"trainer.seed": "int(interval(1, 9))"}).distribution == IntDistribution(1, 9)
    # range() excludes its stop, as Python's does
    assert only({"trainer.max_epochs": "range(2, 11, 4)"}).distribution == IntDistribution(2, 10, step=4)
    assert only({"optimizer.momentum": "range(0.0, 1.0, 0.25)"}).distribution == FloatDistribution(0.0, 0.75, step=0.25)
    assert only({"model.activation": "choice(relu, tanh)"}).distribution == CategoricalDistribution(["relu", "tanh"])
    assert only({}, ["trainer.batch_size=32,64"]).distribution == CategoricalDistribution([32, 64])


def test_every_value_optuna_picks_is_written_back_as_an_override_hydra_reads_as_that_value() -> None:
    param = only({"model.hidden_sizes": "choice([64], [256,128], 'a b', true, 0.5)"})
    parser = OverridesParser.create()
    expected = {"[64]": [64], "[256,128]": [256, 128], "a b": "a b", True: True, 0.5: 0.5}
    for choice in param.distribution.choices:  # plain values, as Optuna stores them
        override = param.override(choice)
        assert parser.parse_override(override).value() == expected[choice], override


def test_the_command_line_wins_over_params_and_fixes_a_key() -> None:
    space = parse_search_space({"optimizer.lr": "interval(0.01, 0.1)", "trainer.batch_size": "choice(32, 64)"},
                               ["trainer.batch_size=16", "model.dropout=interval(0.1,0.2)", "hydra.verbose=true"])
    assert [p.key for p in space.params] == ["optimizer.lr", "model.dropout"]
    assert space.fixed == ["trainer.batch_size=16"]
    assert space.overrides({"optimizer.lr": 0.05, "model.dropout": 0.15}) == [
        "trainer.batch_size=16", "optimizer.lr=0.05", "model.dropout=0.15"]


@pytest.mark.parametrize("spec, message", [
    ("interval(0.5, 0.003)", "bounds reversed (0.5 > 0.003)"),
    ("tag(log, interval(0, 1))", "needs a lower bound above 0"),
    ("range(5, 1)", "is empty"),
    ("glob(*)", "glob() lists config options"),
])
def test_a_bad_search_space_is_explained(spec: str, message: str) -> None:
    with pytest.raises(DlxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space({"trainer.seed": spec}, [])


def test_the_grid_is_every_value_and_refuses_an_interval() -> None:
    space = parse_search_space({"trainer.seed": "range(1, 4)", "model.activation": "choice(relu, tanh)"}, [])
    assert grid_of(space) == {"trainer.seed": [1, 2, 3], "model.activation": ["relu", "tanh"]}
    with pytest.raises(DlxError, match="has no end of them"):
        grid_of(parse_search_space({"optimizer.lr": "interval(0.1, 0.2)"}, []))


def settings(**values) -> SearchSettings:
    return SearchSettings.of({"study_name": "s", **values})


def test_settings_are_checked_with_the_key_to_fix() -> None:
    with pytest.raises(DlxError, match='Did you mean "hyperband"'):
        settings(pruner="hyperbnd")
    with pytest.raises(DlxError, match="gives 1 direction"):
        settings(objectives=["val/acc", "num_parameters"], direction="maximize")
    with pytest.raises(DlxError, match="cannot prune a search of several objectives"):
        settings(objectives=["val/acc", "wall_time_s"], direction=["maximize", "minimize"], pruner="median")
    with pytest.raises(DlxError, match="Did you mean \"n_startup_trials\""):
        build_pruner("median", {"n_startup_trial": 3})
    assert type(build_sampler(settings(sampler="nsgaii"))).__name__ == "NSGAIISampler"
    assert build_pruner("percentile", {})._percentile == 25.0  # Optuna's PercentilePruner has no default


def test_objectives_must_be_measured_and_optimised_in_their_own_direction() -> None:
    measures = Measures(("val/loss", "val/acc"), "val/acc", "max")
    check_objectives(settings(), measures)
    check_objectives(settings(objectives=["val/acc", "num_parameters"], direction=["maximize", "minimize"]), measures)
    with pytest.raises(DlxError, match="do not measure. Did you mean \"val/acc\""):
        check_objectives(settings(objectives=["val/accc"]), measures)
    with pytest.raises(DlxError, match="val/loss is best at its minimum"):
        check_objectives(settings(objectives=["val/loss"], direction="maximize"), measures)
    with pytest.raises(DlxError, match="prunes on the metric each validation reports, the monitored one"):
        check_objectives(settings(objectives=["val/loss"], direction="minimize", pruner="median"), measures)
