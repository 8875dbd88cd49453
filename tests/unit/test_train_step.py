"""dlx.train.step.Updater: one optimizer update from a loss, with gradient clipping, skipping of non-finite
steps (trainer.on_nonfinite=skip) and the scheduler's step. One process (World()), a tiny nn.Linear."""

import math

import pytest
import torch
from torch import nn

from dlx.parallel.world import World
from dlx.train.state import TrainState
from dlx.train.step import Updater

X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
Y = torch.tensor([[1.0], [0.0], [2.0]])


def linear() -> nn.Linear:
    """2 -> 1 with fixed weights, so every gradient below is the same on every machine."""
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.25]]))
        model.bias.copy_(torch.tensor([0.1]))
    return model


def loss_of(model: nn.Module) -> torch.Tensor:
    return ((model(X) - Y) ** 2).mean()


def grads_of(model: nn.Module) -> list[torch.Tensor]:
    """The gradient of loss_of(model), computed on a copy: the model itself is untouched."""
    twin = linear()
    twin.load_state_dict(model.state_dict())
    loss_of(twin).backward()
    return [p.grad.clone() for p in twin.parameters()]


def updater_of(model: nn.Module, grad_clip: float | None = None, skip_nonfinite: bool = False,
               scheduler: bool = False, lr: float = 0.1) -> tuple[Updater, TrainState]:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    schedulers = {"model": torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)} if scheduler else {}
    state = TrainState()
    return Updater({"model": optimizer}, schedulers, grad_clip, skip_nonfinite, World(), state), state


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# --- a plain update ------------------------------------------------------------------------------------------


def test_one_update_is_the_sgd_step_w_minus_lr_times_grad() -> None:
    model = linear()
    before, grads = weights(model), grads_of(model)
    assert all(g.abs().sum() > 0 for g in grads)  # the step moves every parameter: the test can fail
    update, state = updater_of(model)
    update("model", loss_of(model))
    for after, w, g in zip(weights(model), before, grads):
        assert torch.allclose(after, w - 0.1 * g, atol=1e-7)
    assert state.skipped_steps == 0


def test_each_update_starts_from_fresh_gradients() -> None:
    # zero_grad before backward: the second step uses its own gradient, not the sum of both.
    model = linear()
    update, _ = updater_of(model)
    update("model", loss_of(model))
    before, grads = weights(model), grads_of(model)
    update("model", loss_of(model))
    for after, w, g in zip(weights(model), before, grads):
        assert torch.allclose(after, w - 0.1 * g, atol=1e-7)


# --- gradient clipping ---------------------------------------------------------------------------------------


def test_grad_clip_scales_the_gradient_norm_down_to_the_limit_before_the_step() -> None:
    model = linear()
    before, grads = weights(model), grads_of(model)
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert norm > 1.0  # the limit below really clips
    update, _ = updater_of(model, grad_clip=0.5)
    update("model", loss_of(model))
    clipped = [p.grad for p in model.parameters()]
    assert math.sqrt(sum(float(g.pow(2).sum()) for g in clipped)) == pytest.approx(0.5, rel=1e-5)
    for after, w, g in zip(weights(model), before, grads):
        # The direction is kept; only its length changes.
        assert torch.allclose(after, w - 0.1 * g * (0.5 / norm), atol=1e-6)


def test_grad_clip_above_the_norm_leaves_the_gradient_as_it_is() -> None:
    model = linear()
    before, grads = weights(model), grads_of(model)
    update, _ = updater_of(model, grad_clip=1e6)
    update("model", loss_of(model))
    for after, w, g in zip(weights(model), before, grads):
        assert torch.allclose(after, w - 0.1 * g, atol=1e-7)


# --- skipping non-finite steps -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_skip_nonfinite_leaves_weights_and_scheduler_unchanged_and_counts_the_step(bad: float) -> None:
    model = linear()
    before = weights(model)
    update, state = updater_of(model, skip_nonfinite=True, scheduler=True)
    scheduler = update.schedulers["model"]
    update("model", loss_of(model) * bad)
    for after, w in zip(weights(model), before):
        assert torch.equal(after, w)
    assert scheduler.last_epoch == 0  # not stepped: the learning-rate schedule does not advance on a skip
    assert update.lr == 0.1
    assert state.skipped_steps == 1
    update("model", loss_of(model) * bad)
    assert state.skipped_steps == 2


def test_skip_nonfinite_with_a_finite_loss_steps_and_steps_the_scheduler() -> None:
    model = linear()
    before, grads = weights(model), grads_of(model)
    update, state = updater_of(model, skip_nonfinite=True, scheduler=True)
    scheduler = update.schedulers["model"]
    update("model", loss_of(model))
    for after, w, g in zip(weights(model), before, grads):
        assert torch.allclose(after, w - 0.1 * g, atol=1e-7)  # stepped at the lr before the scheduler's step
    assert scheduler.last_epoch == 1
    assert update.lr == pytest.approx(0.05)  # StepLR(step_size=1, gamma=0.5) after one step
    assert state.skipped_steps == 0


def test_a_skipped_step_does_not_count_its_nonfinite_gradient_into_the_next() -> None:
    model = linear()
    update, state = updater_of(model, skip_nonfinite=True)
    update("model", loss_of(model) * float("nan"))
    before, grads = weights(model), grads_of(model)
    update("model", loss_of(model))
    for after, w, g in zip(weights(model), before, grads):
        assert torch.allclose(after, w - 0.1 * g, atol=1e-7)
    assert all(torch.isfinite(w).all() for w in weights(model))
    assert state.skipped_steps == 1


def test_without_skip_a_nan_loss_reaches_the_weights() -> None:
    # on_nonfinite=error: the update does not look; the loop's check reports the step afterwards.
    model = linear()
    update, state = updater_of(model, scheduler=True)
    update("model", loss_of(model) * float("nan"))
    assert all(torch.isnan(w).all() for w in weights(model))
    assert update.schedulers["model"].last_epoch == 1
    assert state.skipped_steps == 0


# --- schedulers and lr ---------------------------------------------------------------------------------------


def test_the_scheduler_steps_once_per_update() -> None:
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    update = Updater({"model": optimizer}, {"model": scheduler}, None, False, World(), TrainState())
    for _ in range(3):
        update("model", loss_of(model))
    assert scheduler.last_epoch == 3
    assert update.lr == pytest.approx(0.1 / 4)


def test_only_the_named_optimizer_and_its_scheduler_step() -> None:
    first, second = linear(), linear()
    opt_a = torch.optim.SGD(first.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(second.parameters(), lr=0.1)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.5)
    update = Updater({"a": opt_a, "b": opt_b}, {"a": sched_a, "b": sched_b}, None, False, World(), TrainState())
    untouched, start = weights(second), weights(first)
    update("a", loss_of(first))
    assert not torch.equal(weights(first)[0], start[0])
    assert [torch.equal(w, u) for w, u in zip(weights(second), untouched)] == [True, True]
    assert (sched_a.last_epoch, sched_b.last_epoch) == (1, 0)


def test_lr_is_the_first_optimizers_current_learning_rate() -> None:
    first, second = linear(), linear()
    opt_a = torch.optim.SGD(first.parameters(), lr=0.3)
    opt_b = torch.optim.SGD(second.parameters(), lr=0.01)
    update = Updater({"a": opt_a, "b": opt_b}, {}, None, False, World(), TrainState())
    assert update.lr == 0.3
    opt_a.param_groups[0]["lr"] = 0.2  # read live, not remembered from construction
    assert update.lr == 0.2
