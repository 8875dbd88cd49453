"""From a composed config to live objects: data, loss, task, model, optimizers, schedulers.

`dlx train` builds from the config the user composed. `dlx eval` builds from the config stored in a
checkpoint, which may come from anyone: before anything is imported or instantiated from it, every
`_target_` it names must be one that dlx's own config tree (or the user's, or --allow) names.
"""

import inspect
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from dlx.config.checks import locate_target
from dlx.data import DataSplits, InMemory, Loading
from dlx.errors import DlxError
from dlx.models.gan import GAN
from dlx.models.seq2seq import EncoderDecoder
from dlx.train.tasks import Task, make_task, not_an_encoder_decoder


def call(group: str, node: DictConfig, **filled: Any) -> Any:
    """Instantiate `node` (already checked by check_config) with the values dlx fills in, turning a
    constructor's complaint into a DlxError."""
    try:
        return instantiate(node, **filled, _convert_="all")
    except DlxError:
        raise
    except Exception as err:
        cause = err.__cause__ or err
        if isinstance(cause, DlxError):
            raise cause from None
        raise DlxError(f"The {group} config was rejected by {node._target_}: {' '.join(str(cause).split())} "
                       f"Fix the {group}.* values (see `dlx train --cfg job`).") from err


def build_data(cfg: DictConfig) -> DataSplits:
    data = call("dataset", cfg.dataset)
    if not isinstance(data, DataSplits):
        raise DlxError(f"dataset._target_={cfg.dataset._target_} returned {type(data).__name__}, not a "
                       "dlx.data.DataSplits. See 'Bring your own data' in the README.")
    if len(data.train) == 0:
        raise DlxError(f"The training split of {cfg.dataset._target_} is empty; lower dataset.val_fraction.")
    if data.task == "regression":
        for split in ("train", "val", "test"):
            part = data.split(split)
            if isinstance(part, InMemory) and part.y.dim() == 1:
                # (N,) against predictions (N, 1) would broadcast to (N, N) in the loss
                setattr(data, split, InMemory(part.x, part.y.unsqueeze(1)))
    if data.task == "classification":
        for split in ("train", "val", "test"):
            labels = data.split(split).labels()
            if len(labels) and not 0 <= labels.min() <= labels.max() < data.num_classes:
                raise DlxError(f"The {split} labels of {cfg.dataset._target_} run from {labels.min()} to "
                               f"{labels.max()}, but it names {data.num_classes} classes: labels must be class "
                               "indices 0..classes-1 (DataSplits.class_names lists the classes).")
    return data


def build_loading(trainer: DictConfig) -> Loading:
    """How streamed splits are read: trainer.num_workers, pin_memory, persistent_workers, prefetch_factor."""
    default = Loading()  # for the configs of checkpoints older than these keys
    return Loading(*(trainer.get(key, getattr(default, key)) for key in
                     ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")))


def build_task(cfg: DictConfig, data: DataSplits, device: str) -> Task:
    criterion = call("loss", cfg.loss)
    model_class = locate_target("model", cfg.model._target_)
    is_gan = inspect.isclass(model_class) and issubclass(model_class, GAN)
    if data.task == "seq2seq" and not (inspect.isclass(model_class) and issubclass(model_class, EncoderDecoder)):
        raise not_an_encoder_decoder(cfg.model._target_)
    return make_task(criterion, data, device, is_gan)


def fill_derived(cfg: DictConfig, data: DataSplits, task: Task, total_steps: int | None = None,
                 world_size: int | None = None) -> None:
    """The one step where values that come from the data and the run enter the config: the model's input
    shape, number of outputs and, for text, vocabulary size (for the arguments its constructor takes), the `???` lengths of the
    scheduler (T_max, total_steps, total_iters), and the processes that trained it (trainer.devices, which a
    launcher may have decided), so that the stored config alone rebuilds the run and says how it ran."""
    if world_size is not None:
        cfg.trainer.devices = world_size
    filled: dict[str, Any] = {"input_shape": data.input_shape}
    if data.tokenizer is not None:
        filled["vocab_size"] = data.vocab_size
    if data.target_length is not None:
        filled["max_target_length"] = data.target_length
    if task.num_outputs is not None:
        filled["num_outputs"] = task.num_outputs
    accepted = inspect.signature(locate_target("model", cfg.model._target_)).parameters
    with open_dict(cfg.model):
        for key, value in filled.items():
            if key in accepted:
                cfg.model[key] = value
    if "vocab_size" in accepted and OmegaConf.is_missing(cfg.model, "vocab_size"):
        raise DlxError(f"model._target_={cfg.model._target_} reads token ids, and its vocab_size comes from the "
                       f"tokenizer of a text data set; dataset._target_={cfg.dataset._target_} gives no text. Choose "
                       "a data set of text (e.g. dataset=pairs or dataset=generated_pairs for an encoder-decoder).")
    scheduler = cfg.get("scheduler")
    if total_steps is not None and scheduler and "_target_" in scheduler:
        with open_dict(scheduler):
            for key in ("T_max", "total_steps", "total_iters"):
                if key in scheduler.keys() and OmegaConf.is_missing(scheduler, key):  # `in` is False for ???
                    scheduler[key] = total_steps


def build_model(cfg: DictConfig) -> nn.Module:
    """The model of cfg.model, whose sizes fill_derived() wrote in."""
    model = call("model", cfg.model)
    if not isinstance(model, nn.Module):
        raise DlxError(f"model._target_={cfg.model._target_} built a {type(model).__name__}, not a torch.nn.Module.")
    return model


def build_optimizers(cfg: DictConfig, task: Task, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
    make = call("optimizer", cfg.optimizer)
    return {name: complete("optimizer", cfg.optimizer, make, params)
            for name, params in task.param_groups(model).items()}


def build_schedulers(cfg: DictConfig, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """One scheduler per optimizer, stepped once per optimizer step (its lengths filled by fill_derived())."""
    node = cfg.get("scheduler")
    if not node or "_target_" not in node:
        return {}
    make = call("scheduler", node)
    return {name: complete("scheduler", node, make, optimizer) for name, optimizer in optimizers.items()}


def complete(group: str, node: DictConfig, make: Any, argument: Any) -> Any:
    """Call a `_partial_` config's function with the argument dlx supplies (parameters, an optimizer)."""
    try:
        return make(argument)
    except (TypeError, ValueError) as err:
        raise DlxError(f"The {group} config was rejected by {node._target_}: {err}. "
                       f"Fix the {group}.* values (see `dlx train --cfg job`).") from err


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The loggers logger=... chose (dlx.store.loggers), in the order of the config."""
    return [call(f"logger.{name}", node) for name, node in (cfg.get("logger") or {}).items()]
