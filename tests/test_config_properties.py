"""Property-based: random overrides either compose to a config that passes every check, or fail with a
DlxError (one clear paragraph), never with another exception or a traceback."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlx.config.compose import preflight
from dlx.errors import DlxError

KEYS = [
    "model", "dataset", "optimizer", "loss", "scheduler", "trainer", "+experiment",
    "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "optimizer.lrr", "optimizer.betas",
    "model.hidden_sizes", "model.activation", "model.dropout", "model.weight_init", "model.channels",
    "model.kernel_size", "model.cell", "model.num_heads", "model.noise", "+model.extra",
    "trainer.max_epochs", "trainer.max_steps", "trainer.batch_size", "trainer.device", "trainer.seed",
    "trainer.grad_clip", "trainer.monitor.mode", "trainer.monitor.metric", "trainer.on_nonfinite", "trainr.seed",
    "dataset.val_fraction", "dataset.test_fraction", "dataset.root", "dataset.download", "~scheduler",
]
OPTIONS = ["ffn", "cnn", "lstm", "gan", "digits", "mnist", "adam", "sgd", "bce", "mse", "cosine", "none", "default",
           "tutorial_ffn", "relu", "tanh", "cuda", "cpu", "auto", "max", "skip", "val/acc"]
VALUES = st.one_of(
    st.integers(-3, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(OPTIONS),
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=8),
    st.lists(st.integers(-2, 64), max_size=3).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    st.sampled_from(["true", "false", "null", "[]", "{}", "${oc.env:HOME}", "'quoted value'"]),
)
OVERRIDE = st.one_of(
    st.builds(lambda k, v: k if k.startswith("~") else f"{k}={v}", st.sampled_from(KEYS), VALUES),
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=12)
    .filter(lambda s: not s.startswith("-")),  # leading dashes are flags, answered by the argument parser
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=4))
def test_random_overrides_compose_or_fail_with_a_clear_error(overrides: list[str]) -> None:
    try:
        preflight(overrides, check_values=True)
    except DlxError as err:
        message = str(err)
        assert len(message) > 20 and "Traceback" not in message
