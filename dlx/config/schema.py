"""The config schema (the type of every key dlx itself reads), where the config tree lives, and the resolvers
its YAML uses. Nothing here imports torch: `dlx train --cfg job` and `dlx --help` stay fast."""

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32", "bf16-mixed")


# The schema gives each key its type, so that `trainer.batch_size=abc` fails before anything runs. The values,
# and what each key means, have one source: the YAML files (conf/train.yaml, conf/trainer/default.yaml), which
# `dlx cat` prints and users copy. MISSING here means "the YAML says"; schema() fills in the trainer's.


@dataclass
class MonitorConfig:
    metric: str = MISSING
    mode: str = MISSING


@dataclass
class TrainerConfig:
    max_epochs: int = MISSING
    max_steps: Optional[int] = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    eval_every: Optional[int] = MISSING
    log_every: int = MISSING
    device: str = MISSING
    devices: int = MISSING
    seed: int = MISSING
    grad_clip: Optional[float] = MISSING
    threads: Optional[int] = MISSING
    precision: str = MISSING
    deterministic: bool = MISSING
    compile: bool = MISSING
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    smoke: bool = MISSING
    patience: Optional[int] = MISSING
    checkpoint_every: Optional[int] = MISSING
    resume: Optional[str] = MISSING
    resume_allow_changes: bool = MISSING
    overwrite: bool = MISSING
    on_nonfinite: str = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    prefetch_factor: int = MISSING


@dataclass
class AugmentConfig:
    hflip: bool = MISSING
    shift: int = MISSING


@dataclass
class TrainConfig:
    model: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    loss: Any = MISSING
    scheduler: Any = None
    logger: Any = None  # {name: logger config}: where metrics go besides metrics.jsonl
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    output_root: str = MISSING


def config_dir() -> Path:
    """The built-in config tree: inside the package when installed from a wheel, else the repo's conf/."""
    package = Path(__file__).resolve().parent.parent  # dlx/
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


def schema() -> DictConfig:
    """TrainConfig's types with conf/trainer/default.yaml's values: a trainer option of the user's that sets
    only some keys (my_conf/trainer/fast.yaml: max_epochs: 3) takes the others from there."""
    node = OmegaConf.structured(TrainConfig)
    node.trainer = OmegaConf.merge(node.trainer, OmegaConf.load(config_dir() / "trainer" / "default.yaml"))
    return node


def register_schema_and_resolvers() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=schema())
    # A per-process id makes run folders unique even for runs started in the same second. Cached, like
    # Hydra's own ${now:}, so that every read of hydra.run.dir in one process gives the same folder.
    OmegaConf.register_new_resolver("dlx_run_id", lambda: secrets.token_hex(3), use_cache=True, replace=True)


# ---------------------------------------------------------------------------------------------------------------
# Checks of a composed config. Keys and types of `trainer` are guarded by the schema above; the groups whose
# keys are constructor arguments (model, dataset, optimizer, loss, scheduler) are checked against the
# signature and type hints of the class they name.


