"""dlx.config.trust: a checkpoint's config names only allowed `_target_`s and no interpolations, and old
target paths of moved classes are renamed to their new place."""

import copy

import pytest

from dlx.config.trust import MOVED_TARGETS, check_targets_allowed, with_moved_targets
from dlx.errors import DlxError

FFN, SGD = "dlx.models.ffn.FeedForward", "torch.optim.SGD"
ALLOWED = {FFN, SGD, "dlx.store.loggers.CSVLogger"}


def stored_config() -> dict:
    return {
        "model": {"_target_": FFN, "hidden_sizes": [64, 32]},
        "optimizer": {"_target_": SGD, "_partial_": True, "lr": 0.1},
        "logger": {"csv": {"_target_": "dlx.store.loggers.CSVLogger"}},
        "trainer": {"max_epochs": 3, "resume": None},
    }


# --- check_targets_allowed -----------------------------------------------------------------------------------


def test_a_config_of_allowed_targets_passes() -> None:
    check_targets_allowed(stored_config(), ALLOWED, "run/last.ckpt")


def test_a_target_not_allowed_is_refused_with_its_place() -> None:
    cfg = stored_config()
    cfg["model"]["_target_"] = "os.system"
    with pytest.raises(DlxError) as raised:
        check_targets_allowed(cfg, ALLOWED, "run/last.ckpt")
    message = str(raised.value)
    assert message.startswith('Refused: the config stored in run/last.ckpt names _target_="os.system" at "model"')
    assert "--allow os.system" in message


def test_a_nested_target_is_found_in_dicts_and_lists() -> None:
    cfg = stored_config()
    cfg["model"]["layers"] = [{"_target_": FFN}, {"inner": {"_target_": "subprocess.run"}}]
    with pytest.raises(DlxError, match=r'_target_="subprocess.run" at "model\.layers\[1\]\.inner"'):
        check_targets_allowed(cfg, ALLOWED, "x.ckpt")


def test_a_target_at_the_top_is_placed_at_dot() -> None:
    with pytest.raises(DlxError, match='_target_="builtins.eval" at "."'):
        check_targets_allowed({"_target_": "builtins.eval"}, ALLOWED, "x.ckpt")


def test_a_target_in_a_top_level_list() -> None:
    with pytest.raises(DlxError, match=r'at "\[0\]"'):
        check_targets_allowed([{"_target_": "os.remove"}], ALLOWED, "x.ckpt")


def test_a_target_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(DlxError, match='_target_="5" at "model"'):
        check_targets_allowed({"model": {"_target_": 5}}, ALLOWED, "x.ckpt")


def test_an_allowed_name_must_match_exactly() -> None:
    with pytest.raises(DlxError, match='_target_="dlx.models.ffn.FeedForward2"'):
        check_targets_allowed({"model": {"_target_": FFN + "2"}}, ALLOWED, "x.ckpt")


def test_an_interpolation_is_refused_with_its_place() -> None:
    cfg = stored_config()
    cfg["trainer"]["resume"] = "${oc.env:HOME}"
    with pytest.raises(DlxError) as raised:
        check_targets_allowed(cfg, ALLOWED, "run/last.ckpt")
    assert str(raised.value).startswith('Refused: the config stored in run/last.ckpt holds an interpolation at '
                                        '"trainer.resume" (${oc.env:HOME}).')


def test_an_interpolation_inside_a_list_is_refused() -> None:
    cfg = stored_config()
    cfg["model"]["hidden_sizes"] = [64, "${model._target_}"]
    with pytest.raises(DlxError, match=r'interpolation at "model\.hidden_sizes\[1\]"'):
        check_targets_allowed(cfg, ALLOWED, "x.ckpt")


def test_plain_strings_with_dollars_or_braces_pass() -> None:
    check_targets_allowed({"name": "cost in $", "fmt": "{step}"}, ALLOWED, "x.ckpt")


# --- with_moved_targets --------------------------------------------------------------------------------------


def test_old_logger_paths_name_their_new_place() -> None:
    assert MOVED_TARGETS["dlx.loggers.CSVLogger"] == "dlx.store.loggers.CSVLogger"
    old = {"logger": {"csv": {"_target_": "dlx.loggers.CSVLogger", "flush": True}}}
    assert with_moved_targets(old) == {"logger": {"csv": {"_target_": "dlx.store.loggers.CSVLogger", "flush": True}}}


def test_moved_targets_are_renamed_in_lists_and_nested_dicts() -> None:
    old = {"loggers": [{"_target_": "dlx.loggers.TensorBoardLogger"}, {"a": {"_target_": "dlx.loggers.MLflowLogger"}}]}
    assert with_moved_targets(old) == {"loggers": [{"_target_": "dlx.store.loggers.TensorBoardLogger"},
                                                   {"a": {"_target_": "dlx.store.loggers.MLflowLogger"}}]}


def test_other_values_are_untouched() -> None:
    cfg = stored_config()
    cfg["note"] = "dlx.loggers.CSVLogger"  # only a _target_ is renamed
    cfg["trainer"]["extra"] = {"name": "dlx.loggers.CSVLogger"}
    original = copy.deepcopy(cfg)
    assert with_moved_targets(cfg) == original
    assert cfg == original  # the argument is not changed in place


def test_the_result_is_a_copy() -> None:
    old = {"logger": {"csv": {"_target_": "dlx.loggers.CSVLogger"}}}
    moved = with_moved_targets(old)
    assert old["logger"]["csv"]["_target_"] == "dlx.loggers.CSVLogger"
    assert moved["logger"] is not old["logger"]


def test_scalars_pass_through() -> None:
    assert with_moved_targets(3) == 3
    assert with_moved_targets(None) is None
    assert with_moved_targets("dlx.loggers.CSVLogger") == "dlx.loggers.CSVLogger"
