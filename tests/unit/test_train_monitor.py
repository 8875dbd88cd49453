"""dlx.train.monitor: the means of a logging interval, the first step whose values were not finite, and the
best validation metric with its patience. One process (World()), 0-dim tensors as a task returns them."""

import math

import pytest
import torch

from dlx.parallel.world import World
from dlx.train.monitor import BestMonitor, IntervalMeter, interval_means
from dlx.train.state import TrainState

NAN, INF = float("nan"), float("inf")


def values(**named: float) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(value) for name, value in named.items()}


def meter_of(losses: list[float], drop_nonfinite: bool = False, batch_size: int = 8) -> IntervalMeter:
    meter = IntervalMeter(World(), drop_nonfinite=drop_nonfinite)
    for loss in losses:
        meter.add(values(loss=loss), batch_size)
    return meter


# --- interval_means ------------------------------------------------------------------------------------------


def test_interval_means_weight_each_batch_by_its_size() -> None:
    steps = [(values(loss=1.0, acc=0.5), 10), (values(loss=3.0, acc=1.0), 30)]
    means = interval_means(steps, World())
    assert list(means) == ["loss", "acc"]
    assert means["loss"] == pytest.approx(2.5)  # (10 * 1 + 30 * 3) / 40
    assert means["acc"] == pytest.approx(0.875)  # (10 * 0.5 + 30 * 1) / 40


def test_interval_means_of_equal_batches_are_the_plain_mean() -> None:
    steps = [(values(loss=v), 4) for v in (1.0, 2.0, 6.0)]
    assert interval_means(steps, World()) == {"loss": pytest.approx(3.0)}


def test_interval_means_read_integer_and_half_tensors_as_floats() -> None:
    steps = [({"correct": torch.tensor(3)}, 1), ({"correct": torch.tensor(2.0, dtype=torch.float16)}, 3)]
    assert interval_means(steps, World()) == {"correct": pytest.approx(2.25)}


def test_interval_means_of_no_steps_are_empty() -> None:
    assert interval_means([], World()) == {}


def test_meter_means_and_samples() -> None:
    meter = IntervalMeter(World(), drop_nonfinite=False)
    meter.add(values(loss=1.0), 10)
    meter.add(values(loss=3.0), 30)
    assert meter.means() == {"loss": pytest.approx(2.5)}
    assert meter.samples() == 40


def test_samples_count_every_ranks_batches() -> None:
    # The ranks' batches have the same sizes, so no collective is needed: rank 0 of 4 counts for all four.
    meter = IntervalMeter(World(rank=0, size=4), drop_nonfinite=False)
    meter.add(values(loss=1.0), 10)
    meter.add(values(loss=1.0), 6)
    assert meter.samples() == 64


def test_restart_empties_the_interval() -> None:
    meter = meter_of([1.0, 2.0])
    meter.restart(now=123.0)
    assert (meter.steps, meter.samples(), meter.means(), meter.started) == ([], 0, {}, 123.0)


# --- IntervalMeter.add -----------------------------------------------------------------------------------------


def test_add_keeps_nonfinite_steps_unless_told_to_drop_them() -> None:
    kept = meter_of([1.0, NAN, INF, 2.0])
    assert len(kept.steps) == 4
    assert math.isnan(kept.means()["loss"])


def test_add_drops_a_step_with_any_nonfinite_value_under_skip() -> None:
    meter = IntervalMeter(World(), drop_nonfinite=True)
    meter.add(values(loss=1.0, acc=0.5), 10)
    meter.add(values(loss=2.0, acc=NAN), 10)  # one bad value is enough
    meter.add(values(loss=-INF, acc=0.5), 10)
    meter.add(values(loss=3.0, acc=1.0), 30)
    assert [size for _, size in meter.steps] == [10, 30]
    assert meter.samples() == 40
    assert meter.means() == {"loss": pytest.approx(2.5), "acc": pytest.approx(0.875)}


# --- IntervalMeter.first_bad_step ------------------------------------------------------------------------------


def test_first_bad_step_is_zero_when_everything_is_finite() -> None:
    meter = meter_of([1.0, 2.0, 3.0])
    assert meter.first_bad_step(step=30) == 0
    assert meter.first_bad_step(step=30, weights_finite=torch.tensor(True)) == 0


def test_first_bad_step_of_an_empty_interval_is_zero() -> None:
    assert meter_of([]).first_bad_step(step=30) == 0


@pytest.mark.parametrize("bad_index", [0, 1, 2, 3, 4])
def test_first_bad_step_names_the_exact_step(bad_index: int) -> None:
    losses = [1.0] * 5
    losses[bad_index] = NAN
    # The interval's five steps end at step 50: they are steps 46..50.
    assert meter_of(losses).first_bad_step(step=50) == 46 + bad_index


def test_first_bad_step_finds_a_bad_value_among_finite_ones() -> None:
    meter = IntervalMeter(World(), drop_nonfinite=False)
    meter.add(values(loss=1.0, acc=0.5), 8)
    meter.add(values(loss=1.0, acc=INF), 8)
    assert meter.first_bad_step(step=12) == 12


def test_first_bad_step_is_the_earliest_of_several() -> None:
    assert meter_of([1.0, 1.0, INF, NAN, 1.0, NAN]).first_bad_step(step=106) == 103


def test_nonfinite_weights_name_the_current_step() -> None:
    meter = meter_of([1.0, 2.0, 3.0])
    assert meter.first_bad_step(step=30, weights_finite=torch.tensor(False)) == 30


def test_nonfinite_weights_name_the_current_step_of_an_empty_interval() -> None:
    assert meter_of([]).first_bad_step(step=30, weights_finite=torch.tensor(False)) == 30


def test_a_bad_step_comes_before_the_weights_flag() -> None:
    meter = meter_of([1.0, NAN, 3.0])
    assert meter.first_bad_step(step=30, weights_finite=torch.tensor(False)) == 29


# --- BestMonitor.update ----------------------------------------------------------------------------------------


def validate(monitor: BestMonitor, state: TrainState, step: int, val: dict[str, float],
             last_step: bool = False) -> bool:
    state.step = step
    return monitor.update(state, val, last_step)


def test_max_mode_keeps_the_highest_value_and_its_step() -> None:
    monitor, state = BestMonitor("val/acc", "max", patience=None), TrainState()
    assert validate(monitor, state, 10, {"acc": 0.5, "loss": 1.0})
    assert validate(monitor, state, 20, {"acc": 0.7, "loss": 2.0})
    assert not validate(monitor, state, 30, {"acc": 0.6, "loss": 0.1})
    assert not validate(monitor, state, 40, {"acc": 0.7})  # a tie is no improvement
    assert (state.best_value, state.best_step) == (0.7, 20)
    assert state.evals_without_improvement == 2
    assert not state.stopped_early  # no patience: never stops


def test_min_mode_keeps_the_lowest_value() -> None:
    monitor, state = BestMonitor("val/loss", "min", patience=None), TrainState()
    assert validate(monitor, state, 1, {"loss": 2.0})
    assert validate(monitor, state, 2, {"loss": 1.5})
    assert not validate(monitor, state, 3, {"loss": 1.7})
    assert (state.best_value, state.best_step) == (1.5, 2)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_a_nonfinite_value_is_never_the_best(bad: float) -> None:
    monitor, state = BestMonitor("val/loss", "min", patience=None), TrainState()
    assert not validate(monitor, state, 1, {"loss": bad})  # not even as the first value
    assert (state.best_value, state.best_step, state.evals_without_improvement) == (None, None, 1)
    assert validate(monitor, state, 2, {"loss": 3.0})
    assert not validate(monitor, state, 3, {"loss": bad})
    assert (state.best_value, state.best_step, state.evals_without_improvement) == (3.0, 2, 1)


def test_a_missing_metric_counts_as_no_improvement() -> None:
    monitor, state = BestMonitor("val/acc", "max", patience=None), TrainState()
    assert not validate(monitor, state, 1, {"loss": 0.1})
    assert (state.best_value, state.evals_without_improvement) == (None, 1)


def test_patience_stops_after_that_many_validations_without_improvement() -> None:
    monitor, state = BestMonitor("val/acc", "max", patience=2), TrainState()
    validate(monitor, state, 1, {"acc": 0.5})
    validate(monitor, state, 2, {"acc": 0.4})
    assert (state.evals_without_improvement, state.stopped_early) == (1, False)
    validate(monitor, state, 3, {"acc": 0.6})  # an improvement resets the count
    assert state.evals_without_improvement == 0
    validate(monitor, state, 4, {"acc": 0.6})
    assert not state.stopped_early
    validate(monitor, state, 5, {"acc": 0.1})
    assert (state.evals_without_improvement, state.stopped_early) == (2, True)
    assert (state.best_value, state.best_step) == (0.6, 3)


def test_no_early_stop_on_the_last_step() -> None:
    monitor, state = BestMonitor("val/acc", "max", patience=1), TrainState()
    validate(monitor, state, 1, {"acc": 0.5})
    validate(monitor, state, 2, {"acc": 0.4}, last_step=True)
    assert state.evals_without_improvement == 1
    assert not state.stopped_early  # the run ends anyway: it did not stop early


def test_an_empty_validation_changes_nothing() -> None:
    monitor = BestMonitor("val/acc", "max", patience=3)
    state = TrainState(step=5, best_value=0.5, best_step=2, evals_without_improvement=1)
    assert not monitor.update(state, {}, last_step=False)
    assert (state.best_value, state.best_step, state.evals_without_improvement, state.stopped_early) == (
        0.5, 2, 1, False)
