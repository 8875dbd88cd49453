"""dlx.config.diff: configs flattened to dotted keys, and the changes that matter when resuming."""

import copy
from typing import Any

from dlx.config.diff import config_changes, flatten


def config(**trainer: Any) -> dict[str, Any]:
    """A config as a checkpoint stores it (plain containers, resolved), with the keys that recent dlx writes."""
    return {
        "model": {"_target_": "dlx.models.ffn.FeedForward", "hidden_sizes": [64, 32], "dropout": 0.0},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
        "trainer": {"max_epochs": 10, "batch_size": 64, "device": "auto", "devices": 1, "precision": "32",
                    "deterministic": False, "log_every": 50, "monitor": {"metric": "auto", "mode": "auto"},
                    **trainer},
        "augment": {"hflip": False, "shift": 0},
        "logger": None,
        "output_root": "outputs",
    }


# --- flatten -------------------------------------------------------------------------------------------------


def test_flatten_joins_nested_keys_with_dots() -> None:
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": None}}}) == {"a": 1, "b.c": 2, "b.d.e": None}


def test_flatten_keeps_lists_as_leaves() -> None:
    assert flatten({"model": {"hidden_sizes": [64, 32]}}) == {"model.hidden_sizes": [64, 32]}


def test_flatten_of_a_scalar_and_of_empty_dicts() -> None:
    assert flatten(3) == {"": 3}
    assert flatten(3, prefix="x") == {"x": 3}
    assert flatten({"a": {}}) == {}  # an empty group has no leaves
    assert flatten({}) == {}


def test_flatten_names_non_string_keys() -> None:
    assert flatten({1: {2: "x"}}) == {"1.2": "x"}


# --- config_changes ------------------------------------------------------------------------------------------


def test_the_same_config_has_no_changes() -> None:
    assert config_changes(config(), copy.deepcopy(config())) == []


def test_a_change_reads_key_old_new() -> None:
    new = config(max_epochs=20)
    new["optimizer"]["lr"] = 0.01
    assert config_changes(config(), new) == ["optimizer.lr: 0.1 -> 0.01", "trainer.max_epochs: 10 -> 20"]


def test_nested_and_list_changes() -> None:
    new = config(monitor={"metric": "val/loss", "mode": "min"})
    new["model"]["hidden_sizes"] = [64]
    assert config_changes(config(), new) == [
        "model.hidden_sizes: [64, 32] -> [64]",
        "trainer.monitor.metric: 'auto' -> 'val/loss'",
        "trainer.monitor.mode: 'auto' -> 'min'",
    ]


def test_keys_that_do_not_change_the_training_are_ignored() -> None:
    new = config(device="cuda", threads=4, checkpoint_every=10, log_every=5, eval_every=3, eval_batch_size=10,
                 patience=2, resume="auto", resume_allow_changes=True)
    new["logger"] = {"csv": {"_target_": "dlx.store.loggers.CSVLogger"}}
    new["output_root"] = "elsewhere"
    assert config_changes(config(), new) == []


def test_a_logger_change_inside_the_group_is_ignored() -> None:
    old, new = config(), config()
    old["logger"] = {"csv": {"_target_": "dlx.store.loggers.CSVLogger"}}
    new["logger"] = {"tensorboard": {"_target_": "dlx.store.loggers.TensorBoardLogger", "flush_secs": 5}}
    assert config_changes(old, new) == []


def test_a_key_absent_from_an_old_config_is_no_change_at_its_old_value() -> None:
    old = config()
    for key in ("devices", "precision", "deterministic"):
        del old["trainer"][key]
    del old["augment"]  # older than augmentation
    assert config_changes(old, config()) == []


def test_a_key_absent_from_an_old_config_changes_at_another_value() -> None:
    old = config()
    del old["trainer"]["precision"]
    assert config_changes(old, config(precision="bf16-mixed")) == ["trainer.precision: '32' -> 'bf16-mixed'"]


def test_a_key_only_one_side_has_reads_absent() -> None:
    new = config()
    new["model"]["batch_norm"] = True
    assert config_changes(config(), new) == ["model.batch_norm: '<absent>' -> True"]
    assert config_changes(new, config()) == ["model.batch_norm: True -> '<absent>'"]


def test_changes_compare_values_not_types_of_equal_numbers() -> None:
    # 1 == 1.0 in Python: lr=1 and lr=1.0 train the same.
    old, new = config(), config()
    old["optimizer"]["lr"], new["optimizer"]["lr"] = 1, 1.0
    assert config_changes(old, new) == []


def test_a_recurrent_checkpoint_from_before_text_resumes_without_changes() -> None:
    old = {"model": {"_target_": "dlx.models.rnn.RecurrentNet", "hidden_size": 64}}
    new = {"model": {"_target_": "dlx.models.rnn.RecurrentNet", "hidden_size": 64, "vocab_size": None,
                     "embedding_dim": 64}}
    assert config_changes(old, new) == []
    assert config_changes(old, {"model": {**new["model"], "embedding_dim": 32}}) == ["model.embedding_dim: 64 -> 32"]
