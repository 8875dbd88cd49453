"""How two configs differ, key by key: what resuming a checkpoint and continuing a sweep check before they
go on. Only the keys that change what is trained count."""

from typing import Any

# Keys that may differ between a checkpoint's config and the resumed run's without changing the training.
RESUME_KEYS_IGNORED = {"trainer.resume", "trainer.resume_allow_changes", "trainer.overwrite", "trainer.device", "trainer.threads",
                       "trainer.checkpoint_every", "trainer.log_every", "trainer.eval_every", "trainer.eval_batch_size",
                       "trainer.patience", "output_root",
                       # how data is read, not what: streamed and in-memory splits give the same batches
                       "trainer.num_workers", "trainer.pin_memory", "trainer.persistent_workers",
                       "trainer.prefetch_factor", "dataset.in_memory", "dataset.cache_dir"}


# Keys that later versions of dlx added, with the value that reproduces what older versions did: a checkpoint
# whose config lacks one was trained with that value, so resuming it with that value changes nothing.
ADDED_KEYS_DEFAULTS = {"trainer.devices": 1, "trainer.precision": "32", "trainer.deterministic": False,
                       "trainer.compile": False,
                       "augment.hflip": False, "augment.shift": 0,
                       # the recurrent and Transformer classifiers' keys for text: None reads numbers, as before
                       "model.vocab_size": None, "model.embedding_dim": 64}


def changes_training(key: str) -> bool:
    """False for the keys that only steer resuming, logging or where a run runs."""
    return key not in RESUME_KEYS_IGNORED and key != "logger" and not key.startswith("logger.")


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every leaf that differs, ignoring the keys that do not change the training."""
    before, after = ADDED_KEYS_DEFAULTS | flatten(old), ADDED_KEYS_DEFAULTS | flatten(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        if changes_training(key) and before.get(key, "<absent>") != after.get(key, "<absent>"):
            changes.append(f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}")
    return changes


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: node}
