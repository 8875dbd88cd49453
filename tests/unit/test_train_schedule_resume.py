"""dlx.train.state.Schedule.batches for a run that stopped early (trainer.patience): resuming its checkpoint
trains no more steps, wherever in the run and in its epoch it stopped."""

import pytest
import torch

from dlx.data import InMemory
from dlx.train.state import Schedule, TrainState


def schedule() -> Schedule:
    return Schedule(steps_per_epoch=3, total_steps=9, eval_every=3, log_every=1, max_eval_batches=None, batch_size=4)


def numbered_split() -> InMemory:
    """Ten samples whose inputs are their own indices."""
    return InMemory(torch.arange(10), torch.zeros(10))


def taken(state: TrainState) -> tuple[list[list[int]], list[int]]:
    """The batches handed out from `state` on (one step each, as the loop takes them), and the epochs whose
    order was drawn."""
    epochs_asked: list[int] = []

    def order_of_epoch(epoch: int) -> torch.Tensor:
        epochs_asked.append(epoch)
        return torch.arange(10)

    batches = []
    for x, _ in schedule().batches(state, order_of_epoch, numbered_split()):
        batches.append(x.tolist())
        state.step += 1
    return batches, epochs_asked


@pytest.mark.parametrize(("step", "epoch", "batch_in_epoch"), [
    (3, 0, 3),  # at the end of an epoch (where a validation stops a run)
    (4, 1, 1),  # mid-epoch: a checkpoint_every save after the first batch of epoch 1
    (0, 0, 0),  # even before any step
])
def test_a_run_that_stopped_early_resumes_to_no_more_steps(step: int, epoch: int, batch_in_epoch: int) -> None:
    state = TrainState(step=step, epoch=epoch, batch_in_epoch=batch_in_epoch, stopped_early=True)
    assert taken(state) == ([], [])  # no batch, and no epoch's order drawn
    # Its place is left as saved: no epoch is begun or finished.
    assert (state.step, state.epoch, state.batch_in_epoch) == (step, epoch, batch_in_epoch)


def test_the_same_state_not_stopped_continues_mid_epoch() -> None:
    # The counterpart: without stopped_early the mid-epoch state above has five steps left.
    state = TrainState(step=4, epoch=1, batch_in_epoch=1)
    assert taken(state) == ([[4, 5, 6, 7], [8, 9], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]], [1, 2])
    assert (state.step, state.epoch, state.batch_in_epoch) == (9, 2, 3)


def test_stopping_early_at_the_end_of_an_epoch_begins_no_next_one() -> None:
    # The loop sets stopped_early at a validation (and breaks); a consumer that goes on gets no new epoch.
    state = TrainState()
    batches = []
    for x, _ in schedule().batches(state, lambda epoch: torch.arange(10), numbered_split()):
        batches.append(x.tolist())
        state.step += 1
        if state.step == 3:
            state.stopped_early = True
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert (state.step, state.epoch, state.batch_in_epoch) == (3, 1, 0)
