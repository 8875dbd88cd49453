"""Which configs dlx will build objects from. A checkpoint's config may come from anyone: before anything
is imported or instantiated from it, every `_target_` it names must be one that dlx's own config tree (or
the user's, or --allow) names."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlx.config.schema import config_dir
from dlx.errors import DlxError

# Classes that moved inside dlx: checkpoints written before the move name them by their old path, which
# still means the same class.
MOVED_TARGETS = {
    "dlx.loggers.CSVLogger": "dlx.store.loggers.CSVLogger",
    "dlx.loggers.TensorBoardLogger": "dlx.store.loggers.TensorBoardLogger",
    "dlx.loggers.MLflowLogger": "dlx.store.loggers.MLflowLogger",
}


def known_targets(extra_config_dirs: list[Path]) -> set[str]:
    """Every `_target_` named in dlx's config tree and in the given config folders."""
    targets = set()
    for folder in [config_dir(), *extra_config_dirs]:
        for path in Path(folder).rglob("*.yaml"):
            for line in path.read_text(encoding="utf-8").splitlines():
                key, _, value = line.strip().partition(":")
                if key == "_target_":
                    targets.add(value.split("#")[0].strip().strip("'\""))
    return targets


def check_targets_allowed(node: Any, allowed: set[str], source: str, where: str = "") -> None:
    """Refuse any `_target_` in `node` (a plain container) that is not in `allowed`, and any interpolation."""
    if isinstance(node, str) and "${" in node:
        raise DlxError(f'Refused: the config stored in {source} holds an interpolation at "{where}" ({node[:60]}). '
                       "dlx stores configs fully resolved, so this file was altered, and resolving it could build "
                       "objects that bypass the allow-list. Do not trust this checkpoint.")
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and (not isinstance(target, str) or target not in allowed):
            raise DlxError(f'Refused: the config stored in {source} names _target_="{target}" at "{where or "."}", '
                           "which is not one of dlx's classes nor in your config folders. Building it could run "
                           "arbitrary code. If it is your own class and you trust the file, pass "
                           f"--allow {target} (or --config-dir with the YAML that names it).")
        for key, value in node.items():
            check_targets_allowed(value, allowed, source, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_targets_allowed(value, allowed, source, f"{where}[{index}]")


def trusted_config(checkpoint: dict[str, Any], path: Path, allow: list[str], config_dirs: list[Path]) -> DictConfig:
    """The config stored in `checkpoint`, refused unless every `_target_` in it is allowed; in struct mode, so
    that a mistyped override fails instead of adding a key."""
    config = with_moved_targets(checkpoint["config"])
    check_targets_allowed(config, known_targets(config_dirs) | set(allow), str(path))
    cfg = OmegaConf.create(config)
    OmegaConf.set_struct(cfg, True)
    if "download" in cfg.dataset:  # a checkpoint from elsewhere does not decide to use the network; you may
        cfg.dataset.download = False
    return cfg


def with_moved_targets(node: Any) -> Any:
    """A copy of a plain config container whose `_target_`s of classes that moved (MOVED_TARGETS) name their
    new place."""
    if isinstance(node, dict):
        return {key: MOVED_TARGETS.get(value, value) if key == "_target_" and isinstance(value, str)
                else with_moved_targets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [with_moved_targets(value) for value in node]
    return node
