"""dlx.train.state: how many steps a run has, which sample indices each step trains on, and where a run is."""

from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from dlx.data import InMemory
from dlx.errors import DlxError
from dlx.train.state import SMOKE_BATCHES, Schedule, TrainState, epoch_order, rank_share


def composed_trainer(compose: Callable[[list[str]], DictConfig], *overrides: str) -> DictConfig:
    return compose(list(overrides)).trainer


def identity_order(num_samples: int) -> Callable[[int], torch.Tensor]:
    """Every epoch in sample order, so a batch's indices show exactly where in the epoch it comes from."""
    return lambda epoch: torch.arange(num_samples)


def numbered_split(num_samples: int) -> InMemory:
    """A split whose every input is its own sample index, so a batch shows which samples it holds."""
    return InMemory(torch.arange(num_samples), torch.zeros(num_samples))


def run_batches(schedule: Schedule, state: TrainState, num_samples: int) -> list[list[int]]:
    """Consume schedule.batches as the loop does: one optimizer step per batch handed out."""
    taken = []
    for x, _ in schedule.batches(state, identity_order(num_samples), numbered_split(num_samples)):
        taken.append(x.tolist())
        state.step += 1
    return taken


def plain_schedule(steps_per_epoch: int, total_steps: int, batch_size: int) -> Schedule:
    return Schedule(steps_per_epoch=steps_per_epoch, total_steps=total_steps, eval_every=steps_per_epoch,
                    log_every=1, max_eval_batches=None, batch_size=batch_size)


# --- Schedule.plan -------------------------------------------------------------------------------------------


def test_plan_counts_steps_per_epoch_and_total_from_max_epochs(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.max_epochs=3", "trainer.log_every=7")
    schedule = Schedule.plan(trainer, num_train=95)
    assert schedule.steps_per_epoch == 10  # 9 full batches and one of 5
    assert schedule.total_steps == 30
    assert schedule.eval_every == 10  # default: validate at the end of every epoch
    assert schedule.log_every == 7
    assert schedule.batch_size == 10
    assert schedule.max_eval_batches is None
    assert schedule.checkpoint_every is None


def test_plan_drops_a_last_batch_of_one_sample_only_when_other_batches_remain(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10")
    steps = {num_train: Schedule.plan(trainer, num_train).steps_per_epoch for num_train in (21, 22, 20, 1, 11)}
    assert steps == {
        21: 2,  # a last batch of one sample is dropped
        22: 3,  # a last batch of two is kept
        20: 2,  # no partial batch
        1: 1,  # the only batch is never dropped, even of one sample
        11: 1,  # 10 + 1: the batch of one goes, one step is left
    }


def test_plan_max_steps_wins_over_max_epochs(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.max_epochs=3", "trainer.max_steps=45")
    schedule = Schedule.plan(trainer, num_train=100)
    assert schedule.steps_per_epoch == 10
    assert schedule.total_steps == 45  # more than max_epochs' 30: epochs continue as needed


def test_plan_keeps_an_explicit_eval_every_and_checkpoint_every(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.eval_every=4",
                               "trainer.checkpoint_every=3")
    schedule = Schedule.plan(trainer, num_train=100)
    assert schedule.eval_every == 4
    assert schedule.checkpoint_every == 3


def test_plan_smoke_runs_two_batches_logging_each(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.smoke=true", "trainer.max_epochs=50",
                               "trainer.checkpoint_every=5")
    schedule = Schedule.plan(trainer, num_train=100)
    assert SMOKE_BATCHES == 2
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.eval_every, schedule.log_every) == (10, 2, 2, 1)
    assert schedule.max_eval_batches == 2
    assert schedule.checkpoint_every == 5


def test_plan_shares_the_samples_between_processes(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.max_epochs=2")
    # 103 samples over 4 ranks: 25 each (3 sit out), so 3 batches (10, 10, 5) per rank and epoch.
    schedule = Schedule.plan(trainer, num_train=103, world_size=4)
    assert schedule.steps_per_epoch == 3
    assert schedule.total_steps == 6
    # 84 over 4: 21 each, whose last batch of one is dropped.
    assert Schedule.plan(trainer, num_train=84, world_size=4).steps_per_epoch == 2


def test_plan_refuses_fewer_samples_than_processes(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10")
    with pytest.raises(DlxError, match="3 samples, fewer than the 4 processes"):
        Schedule.plan(trainer, num_train=3, world_size=4)
    assert Schedule.plan(trainer, num_train=4, world_size=4).steps_per_epoch == 1  # one sample each is enough


# --- Schedule.batches ----------------------------------------------------------------------------------------


def test_batches_of_a_whole_run_are_every_epochs_batches_in_order() -> None:
    schedule = plain_schedule(steps_per_epoch=3, total_steps=6, batch_size=4)
    state = TrainState()
    epoch = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # 10 samples: the last batch is partial
    assert run_batches(schedule, state, num_samples=10) == epoch + epoch
    # The run ends inside the last epoch's bookkeeping: its batches are done, no new epoch was begun.
    assert (state.step, state.epoch, state.batch_in_epoch) == (6, 1, 3)
    assert schedule.epochs_done(state) == 2.0


def test_batches_draw_each_epochs_order_from_the_epoch_number() -> None:
    schedule = plain_schedule(steps_per_epoch=2, total_steps=4, batch_size=2)
    epochs_asked = []

    def order_of_epoch(epoch: int) -> torch.Tensor:
        epochs_asked.append(epoch)
        return torch.arange(4) + 100 * epoch

    state = TrainState()
    taken = []
    for x, _ in schedule.batches(state, order_of_epoch, numbered_split(200)):
        taken.append(x.tolist())
        state.step += 1
    assert taken == [[0, 1], [2, 3], [100, 101], [102, 103]]
    assert epochs_asked == [0, 1]


def test_batches_resume_at_the_next_batch_of_the_epoch() -> None:
    schedule = plain_schedule(steps_per_epoch=3, total_steps=6, batch_size=4)
    state = TrainState(step=4, epoch=1, batch_in_epoch=1)  # saved after the first batch of epoch 1
    assert run_batches(schedule, state, num_samples=10) == [[4, 5, 6, 7], [8, 9]]
    assert (state.step, state.epoch, state.batch_in_epoch) == (6, 1, 3)


def test_batches_resume_after_a_finished_epoch_at_the_next_one() -> None:
    schedule = plain_schedule(steps_per_epoch=2, total_steps=6, batch_size=2)
    state = TrainState(step=2, epoch=0, batch_in_epoch=2)  # saved at the end of epoch 0
    assert run_batches(schedule, state, num_samples=4) == [[0, 1], [2, 3]] * 2
    assert (state.step, state.epoch, state.batch_in_epoch) == (6, 2, 2)


def test_batches_stop_at_total_steps_inside_an_epoch() -> None:
    schedule = plain_schedule(steps_per_epoch=3, total_steps=5, batch_size=4)
    state = TrainState()
    assert run_batches(schedule, state, num_samples=10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9],
                                                             [0, 1, 2, 3], [4, 5, 6, 7]]
    assert (state.step, state.epoch, state.batch_in_epoch) == (5, 1, 2)
    assert schedule.epochs_done(state) == pytest.approx(1 + 2 / 3)


def test_batches_count_a_batch_done_as_soon_as_it_is_handed_out() -> None:
    # A checkpoint saved during the step must not train the same batch again after a resume.
    schedule = plain_schedule(steps_per_epoch=3, total_steps=3, batch_size=1)
    state = TrainState()
    batches = schedule.batches(state, identity_order(3), numbered_split(3))
    assert next(batches)[0].tolist() == [0]
    assert state.batch_in_epoch == 1


def test_batches_yield_nothing_for_a_run_already_done() -> None:
    schedule = plain_schedule(steps_per_epoch=3, total_steps=6, batch_size=4)
    state = TrainState(step=6, epoch=1, batch_in_epoch=3)
    assert run_batches(schedule, state, num_samples=10) == []
    assert (state.epoch, state.batch_in_epoch) == (1, 3)


def test_batches_leave_out_the_dropped_sample_of_a_planned_schedule(compose) -> None:
    trainer = composed_trainer(compose, "trainer.batch_size=10", "trainer.max_epochs=1")
    schedule = Schedule.plan(trainer, num_train=21)
    assert run_batches(schedule, TrainState(), num_samples=21) == [list(range(10)), list(range(10, 20))]


# --- the steps that log, validate and save -------------------------------------------------------------------


def test_log_and_eval_steps_are_multiples_and_the_last_step() -> None:
    schedule = Schedule(steps_per_epoch=10, total_steps=25, eval_every=10, log_every=4, max_eval_batches=None, batch_size=1)
    steps = range(1, 26)
    assert [s for s in steps if schedule.is_log_step(s)] == [4, 8, 12, 16, 20, 24, 25]
    assert [s for s in steps if schedule.is_eval_step(s)] == [10, 20, 25]
    assert [s for s in steps if schedule.is_last_step(s)] == [25]


def test_checkpoint_steps_only_when_checkpoint_every_is_set() -> None:
    every_6 = Schedule(steps_per_epoch=10, total_steps=20, eval_every=10, log_every=1, max_eval_batches=None, batch_size=1,
                       checkpoint_every=6)
    assert [s for s in range(1, 21) if every_6.is_checkpoint_step(s)] == [6, 12, 18]  # not the last step by itself
    never = Schedule(steps_per_epoch=10, total_steps=20, eval_every=10, log_every=1, max_eval_batches=None, batch_size=1)
    assert not any(never.is_checkpoint_step(s) for s in range(1, 21))


def test_epochs_done_counts_the_current_epochs_batches_as_a_fraction() -> None:
    schedule = plain_schedule(steps_per_epoch=4, total_steps=40, batch_size=8)
    assert schedule.epochs_done(TrainState()) == 0.0
    assert schedule.epochs_done(TrainState(epoch=2, batch_in_epoch=1)) == 2.25
    assert schedule.epochs_done(TrainState(epoch=2, batch_in_epoch=4)) == 3.0


# --- epoch_order and rank_share ------------------------------------------------------------------------------


def test_epoch_order_depends_on_seed_and_epoch_alone() -> None:
    first = epoch_order(50, epoch=3, seed=7, device="cpu")
    torch.manual_seed(12345)  # the global generator must not matter
    torch.rand(10)
    assert torch.equal(first, epoch_order(50, epoch=3, seed=7, device="cpu"))
    assert sorted(first.tolist()) == list(range(50))
    assert not torch.equal(first, epoch_order(50, epoch=4, seed=7, device="cpu"))
    assert not torch.equal(first, epoch_order(50, epoch=3, seed=8, device="cpu"))


def test_rank_share_gives_every_rank_as_many_disjoint_samples() -> None:
    order = torch.tensor([9, 3, 7, 1, 0, 8, 2, 6, 4, 5, 10])  # 11 samples over 3 ranks: 2 sit out
    shares = [rank_share(order, rank, world_size=3).tolist() for rank in range(3)]
    assert shares == [[9, 1, 2], [3, 0, 6], [7, 8, 4]]
    assert sorted(sum(shares, [])) == sorted(order[:9].tolist())  # the last 11 % 3 of the order are left out


def test_rank_share_of_one_process_is_the_whole_order() -> None:
    order = torch.tensor([4, 2, 0, 1, 3])
    assert rank_share(order, rank=0, world_size=1).tolist() == [4, 2, 0, 1, 3]
