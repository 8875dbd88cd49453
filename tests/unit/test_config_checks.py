"""dlx.config.checks: whether a config value fits a constructor's type hint, and the error for a key that the
constructor does not take."""

import inspect
import typing
from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import pytest
from omegaconf import OmegaConf

from dlx.config.checks import check_constructor_call, value_matches
from dlx.errors import DlxError

FFN = "dlx.models.ffn.FeedForward"


@pytest.mark.parametrize(("value", "hint", "fits"), [
    (3, int, True),
    (-1, int, True),
    (3.0, int, False),
    ("3", int, False),
    (True, int, False),  # bool is a subclass of int, but true is not a number of units
    (False, int, False),
    (0.5, float, True),
    (3, float, True),  # an int is a float: lr=1 must be accepted
    (True, float, False),
    ("0.5", float, False),
    (None, float, False),
    (True, bool, True),
    (False, bool, True),
    (1, bool, False),
    (0, bool, False),
    ("true", bool, False),
    ("relu", str, True),
    ("", str, True),
    (1, str, False),
    (None, str, False),
    (None, type(None), True),
    (0, type(None), False),
    ("", type(None), False),
])
def test_scalar_hints(value: Any, hint: Any, fits: bool) -> None:
    assert value_matches(value, hint) is fits


@pytest.mark.parametrize(("value", "hint", "fits"), [
    (None, Optional[int], True),
    (4, Optional[int], True),
    (4.5, Optional[int], False),
    (None, int | None, True),
    (4, int | None, True),
    ("4", int | None, False),
    (True, int | None, False),
    (0.1, float | None, True),
    (2, Union[int, str], True),
    ("a", Union[int, str], True),
    (2.5, Union[int, str], False),
    (None, Union[int, str], False),
])
def test_union_hints_accept_any_member(value: Any, hint: Any, fits: bool) -> None:
    assert value_matches(value, hint) is fits


@pytest.mark.parametrize(("value", "fits"), [("relu", True), ("gelu", True), ("Relu", False), ("swish", False),
                                             (None, False)])
def test_literal_hints_accept_their_values_only(value: Any, fits: bool) -> None:
    assert value_matches(value, Literal["relu", "gelu"]) is fits


def test_optional_literal() -> None:
    hint = Optional[Literal["max", "avg"]]
    assert value_matches(None, hint)
    assert value_matches("avg", hint)
    assert not value_matches("mean", hint)


@pytest.mark.parametrize("hint", [list[int], Sequence[int], typing.Sequence[int], tuple[int, ...], typing.List[int]])  # noqa: UP006 (the spelling of older code)
@pytest.mark.parametrize(("value", "fits"), [
    ([], True),
    ([1, 2, 3], True),
    ((1, 2), True),
    ([1, 2.5], False),
    ([1, True], False),
    (["1"], False),
    (1, False),
    ("12", False),  # a string is a sequence, but not of ints
    ({"a": 1}, False),
])
def test_sequence_hints_check_every_element(hint: Any, value: Any, fits: bool) -> None:
    assert value_matches(value, hint) is fits


def test_sequences_of_optional_and_nested_lists() -> None:
    assert value_matches([1, None], list[int | None])
    assert not value_matches([1, "a"], list[int | None])
    assert value_matches([[1, 2], [3]], list[list[int]])
    assert not value_matches([[1, 2], 3], list[list[int]])


def test_bare_sequence_hints_take_any_elements() -> None:
    assert value_matches([1, "a", None], list)
    assert value_matches((1, "a"), tuple)
    assert not value_matches("ab", list)


@pytest.mark.parametrize("value", [None, 1, "x", [1, "a"], {"k": 1}, object()])
def test_any_and_unannotated_accept_everything(value: Any) -> None:
    assert value_matches(value, Any)
    assert value_matches(value, inspect.Parameter.empty)


def test_other_classes_are_left_to_the_constructor() -> None:
    assert value_matches("anything", dict[str, int])
    assert value_matches(3, typing.Callable)


def test_heterogeneous_tuple_hint() -> None:
    assert value_matches((1, "a"), tuple[int, str])


def test_literal_of_ints_refuses_a_bool() -> None:
    assert not value_matches(True, Literal[0, 1])


# --- check_constructor_call ----------------------------------------------------------------------------------


def ffn_config(**keys: Any) -> Any:
    return OmegaConf.create({"_target_": FFN, "input_shape": [64], "num_outputs": 10, **keys})


def test_a_valid_call_passes() -> None:
    check_constructor_call("model", ffn_config(hidden_sizes=[32, 16], activation="gelu", dropout=0, batch_norm=True))


def test_keys_filled_by_dlx_may_be_left_out() -> None:
    check_constructor_call("model", OmegaConf.create({"_target_": FFN, "hidden_sizes": [8]}))


def test_an_unknown_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(DlxError) as raised:
        check_constructor_call("model", ffn_config(hiden_sizes=[32]))
    message = str(raised.value)
    assert message.startswith('Unknown key "model.hiden_sizes": FeedForward takes no argument "hiden_sizes".')
    assert 'Did you mean "hidden_sizes"?' in message
    # The arguments listed are those a YAML may set: not input_shape and num_outputs, which dlx fills in.
    assert message.endswith("Its arguments are: activation, batch_norm, dropout, hidden_sizes, weight_init.")


def test_an_unknown_key_far_from_any_argument_gets_no_suggestion() -> None:
    with pytest.raises(DlxError, match='Unknown key "model.zzz"') as raised:
        check_constructor_call("model", ffn_config(zzz=1))
    assert "Did you mean" not in str(raised.value)


def test_a_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(DlxError, match=r"model\.dropout='high' does not fit FeedForward: it expects float"):
        check_constructor_call("model", ffn_config(dropout="high"))


def test_a_wrong_literal_gets_a_suggestion() -> None:
    with pytest.raises(DlxError, match=r'model\.activation=\'rleu\' does not fit .* Did you mean "relu"\?'):
        check_constructor_call("model", ffn_config(activation="rleu"))


def test_a_list_value_is_checked_element_by_element() -> None:
    with pytest.raises(DlxError, match=r"model\.hidden_sizes=\[32, 'x'\]"):
        check_constructor_call("model", ffn_config(hidden_sizes=[32, "x"]))


def test_a_missing_target_is_refused() -> None:
    with pytest.raises(DlxError, match="The model config has no _target_"):
        check_constructor_call("model", OmegaConf.create({"hidden_sizes": [8]}))
