"""The search space of an Optuna study, in the syntax users know from `hydra.sweeper.params`: choice(a, b) or
a,b; range(start, stop[, step]); interval(low, high); tag(log, interval(low, high)). Each parameter becomes an
Optuna distribution, and each value Optuna picks becomes an override of the trial's job again.

optuna is imported inside the functions: the CLI imports this module before it knows whether it searches."""

from dataclasses import dataclass, field
from typing import Any

from dlx.errors import DlxError

SYNTAX = ("Write a search space as choice(a,b,c) or a,b,c, range(start,stop[,step]), interval(low,high), or "
          "tag(log,interval(low,high)) for a log scale.")


@dataclass(frozen=True)
class Param:
    """One searched key: its Optuna distribution, and how each value it picks is written as an override."""

    key: str  # the override's key, with its + or ++ when it adds one: what Optuna names the parameter
    distribution: Any  # an optuna.distributions.BaseDistribution
    spec: str  # as the user wrote it, for messages and the sweep's record
    texts: dict[Any, str] = field(default_factory=dict)  # a choice's value -> its override text, where they differ

    def override(self, value: Any) -> str:
        from hydra.core.override_parser.types import Transformer

        return f"{self.key}={self.texts.get(value, Transformer.str(value))}"

    def grid(self) -> list[Any]:
        """Every value, for the grid sampler; a DlxError for a continuous interval."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        distribution = self.distribution
        if isinstance(distribution, CategoricalDistribution):
            return list(distribution.choices)
        if isinstance(distribution, IntDistribution) and not distribution.log:
            return list(range(distribution.low, distribution.high + 1, distribution.step))
        if isinstance(distribution, FloatDistribution) and distribution.step is not None:
            count = round((distribution.high - distribution.low) / distribution.step) + 1
            return [distribution.low + i * distribution.step for i in range(count)]
        raise DlxError(f"The grid sampler tries every value, and {self.key}={self.spec} has no end of them. Give it "
                       "a list or a range (choice(0.1,0.01), range(1,5)), or choose another sampler "
                       "(hydra.sweeper.sampler=tpe).")


@dataclass
class SearchSpace:
    params: list[Param]  # what Optuna picks, in the order given
    fixed: list[str]  # plain overrides every trial gets (key=value in hydra.sweeper.params or the command line)

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """A trial's job: the fixed overrides, then one per searched key with the value Optuna picked."""
        return [*self.fixed, *(param.override(values[param.key]) for param in self.params)]

    def distributions(self) -> dict[str, Any]:
        return {param.key: param.distribution for param in self.params}

    def described(self) -> dict[str, str]:
        return {param.key: param.spec for param in self.params}


def parse_search_space(params: dict[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """hydra.sweeper.params, then the command line's overrides (which win for a key given in both)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    lines += [a for a in arguments if not a.startswith(("hydra.", "hydra/", "+hydra.", "++hydra."))]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception as err:  # OverrideParseException
        raise DlxError(f"{err}. {SYNTAX}") from err
    searched: dict[str, Param] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        searched.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            searched[key] = param_of(override, key)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return SearchSpace(list(searched.values()), list(fixed.values()))


def param_of(override: Any, key: str) -> Param:
    from hydra.core.override_parser.types import Glob

    spec = override.get_value_string()
    if isinstance(override.value(), Glob):
        raise DlxError(f"{key}={spec}: glob() lists config options for a grid sweep; in a search, name them: "
                       f"{key}=choice(a,b,c). {SYNTAX}")
    if override.is_choice_sweep():
        return choice_param(override, key, spec)
    if override.is_range_sweep():
        return range_param(override.value(), key, spec)
    return interval_param(override.value(), key, spec)


def choice_param(override: Any, key: str, spec: str) -> Param:
    """Optuna's categorical values are plain (str, int, float, bool, None): a list or dict choice is kept as
    its override text."""
    from hydra.core.override_parser.types import QuotedString, Transformer
    from optuna.distributions import CategoricalDistribution

    choices, texts = [], {}
    for element in override.sweep_iterator():
        text = Transformer.str(element)
        if isinstance(element, QuotedString):
            value: Any = element.text
        elif isinstance(element, (list, dict)):
            value = text
        else:
            value = element
        if value in texts:
            continue  # choice(a,a): one value
        choices.append(value)
        texts[value] = text
    if not choices:
        raise DlxError(f"{key}={spec} offers no value to choose from. {SYNTAX}")
    return Param(key, CategoricalDistribution(choices), spec, texts)


def range_param(sweep: Any, key: str, spec: str) -> Param:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    values = list(sweep.range())
    if not values:
        raise DlxError(f"{key}={spec} is empty: range(start, stop, step) counts from start up to stop (not "
                       f"included), so stop must be above start (below it for a negative step). {SYNTAX}")
    if sweep.shuffle or sweep.step < 0:
        return Param(key, CategoricalDistribution(values), spec)
    if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        return Param(key, IntDistribution(values[0], values[-1], step=sweep.step), spec)
    return Param(key, FloatDistribution(values[0], values[-1], step=float(sweep.step)), spec)


def interval_param(sweep: Any, key: str, spec: str) -> Param:
    from optuna.distributions import FloatDistribution, IntDistribution

    low, high, log = sweep.start, sweep.end, "log" in sweep.tags
    if low > high:
        raise DlxError(f"{key}={spec} has its bounds reversed ({low} > {high}): write the lower bound first, "
                       f"interval({high}, {low}).")
    if log and low <= 0:
        raise DlxError(f"{key}={spec} is on a log scale, which needs a lower bound above 0 (got {low}). Start "
                       "it at a small positive value, e.g. tag(log, interval(1e-5, ...)).")
    if isinstance(low, int) and isinstance(high, int):
        return Param(key, IntDistribution(low, high, log=log), spec)
    return Param(key, FloatDistribution(float(low), float(high), log=log), spec)


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    return {param.key: param.grid() for param in space.params}
