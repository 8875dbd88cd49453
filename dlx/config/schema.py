"""The config schema, where the config tree lives, and the checks a composed config must pass before any
data is loaded. Nothing here imports torch: `dlx train --cfg job` and `dlx --help` stay fast."""

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32", "bf16-mixed")


@dataclass
class MonitorConfig:
    metric: str = "auto"  # e.g. val/acc; "auto": val/acc for classifiers, val/loss for regression
    mode: str = "auto"  # min | max | auto


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: Optional[int] = None  # when set, training stops after this many optimizer steps
    batch_size: int = 64
    eval_batch_size: int = 1000
    eval_every: Optional[int] = None  # steps between validations; None: at the end of every epoch
    log_every: int = 50  # steps between training-metric rows
    device: str = "auto"
    # Processes that train the run together (data parallel, one per GPU, or sharing the CPU), each on its share
    # of every batch: batch_size is per process, so the global batch is batch_size x devices. Under torchrun
    # or submitit the launcher's process count wins.
    devices: int = 1
    seed: int = 0
    grad_clip: Optional[float] = None  # max gradient norm
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default
    precision: str = "32"  # 32 | bf16-mixed: autocast to bfloat16 (CPU with AVX512-BF16/AMX, or a recent GPU)
    deterministic: bool = False  # only reproducible kernels (cuDNN, cuBLAS on GPUs): exact reruns, a little slower
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    smoke: bool = False  # a couple of batches of everything, for CI
    patience: Optional[int] = None  # stop early after this many validations without improvement
    checkpoint_every: Optional[int] = None  # steps between saves of last.ckpt besides those at each validation
    resume: Optional[str] = None  # a checkpoint to continue from, or "auto": the run folder's newest good one
    resume_allow_changes: bool = False  # resume even if the config differs from the checkpoint's
    on_nonfinite: str = "error"  # error: stop at a NaN/inf loss or gradient; skip: skip such steps and count them


@dataclass
class AugmentConfig:
    hflip: bool = False  # mirror each training image left to right with probability 1/2
    shift: int = 0  # move each training image by up to this many pixels along each axis


@dataclass
class TrainConfig:
    model: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    loss: Any = MISSING
    scheduler: Any = None
    logger: Any = None  # {name: logger config}: where metrics go besides metrics.jsonl
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # random changes to training images
    output_root: str = "outputs"


def config_dir() -> Path:
    """The built-in config tree: inside the package when installed from a wheel, else the repo's conf/."""
    package = Path(__file__).resolve().parent.parent  # dlx/
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


def register_schema_and_resolvers() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    # A per-process id makes run folders unique even for runs started in the same second. Cached, like
    # Hydra's own ${now:}, so that every read of hydra.run.dir in one process gives the same folder.
    OmegaConf.register_new_resolver("dlx_run_id", lambda: secrets.token_hex(3), use_cache=True, replace=True)


# ---------------------------------------------------------------------------------------------------------------
# Checks of a composed config. Keys and types of `trainer` are guarded by the schema above; the groups whose
# keys are constructor arguments (model, dataset, optimizer, loss, scheduler) are checked against the
# signature and type hints of the class they name.


