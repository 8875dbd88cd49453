"""A trained model rebuilt from its checkpoint file alone, safely: what `dlx eval`, `predict`, `sample` and
`export` share.

The file is read with torch.load(weights_only=True) (dlx.store.checkpoint.load_checkpoint), and the config inside is
only instantiated once every `_target_` it names is one that dlx's configs, the user's (--config-dir) or --allow
name (dlx.config.trust.check_targets_allowed): a checkpoint someone sent you cannot run code.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import torch
from omegaconf import DictConfig
from torch import nn

from dlx.config.checks import check_constructor_call
from dlx.config.trust import trusted_config
from dlx.data import TaskKind
from dlx.errors import DlxError
from dlx.models.gan import GAN
from dlx.store.checkpoint import load_checkpoint
from dlx.train.build import call


def load_weights(model: nn.Module, checkpoint: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()][1:2] or [str(err)]
        raise DlxError(f"The weights in {path} do not fit the model its config builds on this data "
                       f"({detail[0]}). The checkpoint belongs to another model or data shape: "
                       "evaluate it with the data set it was trained on.") from err


@dataclass
class Rebuilt:
    model: nn.Module  # on the CPU, in eval mode
    cfg: DictConfig  # the checkpoint's config
    checkpoint: dict[str, Any]
    path: Path

    @property
    def is_gan(self) -> bool:
        return isinstance(self.model, GAN)

    @property
    def gan(self) -> GAN:
        """The model, for callers that checked is_gan."""
        assert isinstance(self.model, GAN)
        return self.model

    def data(self, command: str) -> dict[str, Any]:
        """What the checkpoint records of its training data: task, input_shape, class_names, pixel_mean and
        pixel_std (None for tabular data), for a table (dataset=table) `preprocessing`, its encoding
        (dlx.data.table), and for text `tokenizer`, the tokenizer's JSON (dlx.data.tokens). Checkpoints of dlx
        before this entry have none: a DlxError."""
        data = self.checkpoint.get("data")
        if data is None:
            raise DlxError(f"{self.path} does not record its training data (input size, class names, pixel "
                           f"statistics): it was written by an older dlx. dlx {command} needs them to prepare inputs "
                           "exactly as training did. Train the model again with this version of dlx; `dlx eval` "
                           "still works with this checkpoint.")
        if not well_formed(data):
            raise DlxError(f"{self.path} is damaged or was altered: its record of the training data is not the "
                           "task, input shape, class names and pixel statistics (or table encoding) dlx writes. Use "
                           "another checkpoint.")
        return data


def well_formed(data: Any) -> bool:
    """The checkpoint's "data" entry holds what checkpoint_payload writes (a file someone sent may not)."""
    def numbers(value: Any, kind: type | tuple[type, ...]) -> bool:
        return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)

    if not (isinstance(data, dict) and data.get("task") in get_args(TaskKind)
            and (data.get("tokenizer") is None or isinstance(data["tokenizer"], str))
            and numbers(data.get("input_shape"), int) and all(v > 0 for v in data["input_shape"])
            and isinstance(data.get("class_names"), list) and all(isinstance(n, str) for n in data["class_names"])
            and all(data.get(key) is None or numbers(data[key], (int, float)) for key in ("pixel_mean", "pixel_std"))):
        return False
    if data["task"] == "forecasting":
        from dlx.data.timeseries import well_formed_series  # pandas, only for the checkpoints of series

        return well_formed_series(data.get("preprocessing"), data["input_shape"])
    if data.get("preprocessing") is None:
        return True
    from dlx.data.table import well_formed_preprocessing  # pandas, only for the checkpoints of tables

    record = data["preprocessing"]
    return (well_formed_preprocessing(record) and record["task"] == data["task"]
            and data["input_shape"] == [len(record["features"])])


def rebuild_model(path: Path, allow: list[str], config_dirs: list[Path]) -> Rebuilt:
    """The checkpoint's model with its weights, without its data: the stored config holds the sizes the data
    filled in (input_shape, num_outputs). On the CPU: predicting a few images, sampling and exporting need
    no accelerator, and a checkpoint trained on a GPU is used where there is none."""
    checkpoint = load_checkpoint(path)
    cfg = trusted_config(checkpoint, path, allow, config_dirs)
    check_constructor_call("model", cfg.model)
    model = call("model", cfg.model)
    if not isinstance(model, nn.Module):
        raise DlxError(f"model._target_={cfg.model._target_} built a {type(model).__name__}, not a torch.nn.Module.")
    load_weights(model, checkpoint, path)
    return Rebuilt(model.eval(), cfg, checkpoint, Path(path))


def checkpoint_in(path: Path) -> Path:
    """The checkpoint a command was given: a file as it is; for a run folder (outputs/latest) or its checkpoints/
    folder, its best.ckpt, or its last.ckpt when it has no best (no validation gave a finite metric)."""
    path = Path(path)
    for folder in (path / "checkpoints", path) if path.is_dir() else ():  # a run folder, or its checkpoints/
        for name in ("best.ckpt", "last.ckpt"):
            if (folder / name).is_file():
                return folder / name
    return path


def run_folder_of(checkpoint: Path) -> Path:
    """RUN for RUN/checkpoints/X.ckpt; for a checkpoint kept elsewhere, its own folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


class Normalize(nn.Module):
    """Pixels in [0, 1] to what the model saw in training: (x - mean) / std per channel, with the training
    split's statistics, as dlx.train.tasks.pixel_normalizer does to whole splits."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Generate(nn.Module):
    """A GAN's generator as users want it: noise (B, noise_dim) in, images (B, C, H, W) in [0, 1] out (the
    generator's tanh range mapped back, as the sample grids are)."""

    def __init__(self, gan: GAN) -> None:
        super().__init__()
        self.gan = gan

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.gan.generate(z) + 1) / 2


def raw_input_model(rebuilt: Rebuilt, command: str) -> nn.Module:
    """The model as it takes inputs from outside: images as pixels in [0, 1] (the training normalisation
    inside), tabular features as the data set gives them (standardised by its loader), and for a GAN, the
    generator (noise in, images out)."""
    if rebuilt.is_gan:
        return Generate(rebuilt.gan).eval()
    data = rebuilt.data(command)
    if data.get("pixel_mean") is None:
        return rebuilt.model
    return nn.Sequential(Normalize(data["pixel_mean"], data["pixel_std"]), rebuilt.model).eval()
