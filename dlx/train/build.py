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
from dlx.train.tasks import Task, make_task


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
    check_model_reads_data(cfg.model._target_, model_class, data)
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
    scheduler = cfg.get("scheduler")
    if total_steps is not None and scheduler and "_target_" in scheduler:
        with open_dict(scheduler):
            for key in ("T_max", "total_steps", "total_iters"):
                if key in scheduler.keys() and OmegaConf.is_missing(scheduler, key):  # `in` is False for ???
                    scheduler[key] = total_steps


# What each kind of model reads, and the shipped models of that kind: for the message when the data do not fit.
MODEL_KINDS = {
    "numbers": "models of images or numbers (model=ffn, cnn, lstm, ...)",
    "text classifier": "classifiers of text (model=lstm, gru, rnn or transformer)",
    "language model": "language models (model=gpt, lstm_lm or gru_lm)",
    "encoder-decoder": "encoder-decoders (model=seq2seq or seq2seq_lstm)",
}
DATA_OF = {"text classifier": "dataset=text dataset.path=FILE", "language model": "dataset=text_lm dataset.path=FILE",
           "encoder-decoder": "dataset=pairs dataset.path=FILE, or dataset=generated_pairs"}


def kinds_read(model_class: Any) -> list[str]:
    """What a model class reads and gives, from its constructor, its own kind first: token ids or numbers, a class
    per sample or a token per position, or target sequences from source sequences. The recurrent and Transformer
    classifiers read either numbers or text (vocab_size left None, or filled in)."""
    if inspect.isclass(model_class) and issubclass(model_class, EncoderDecoder):
        return ["encoder-decoder"]
    accepted = inspect.signature(model_class).parameters
    if "vocab_size" not in accepted:
        return ["numbers"]
    if accepted["vocab_size"].default is not inspect.Parameter.empty:
        return ["numbers", "text classifier"]
    return ["language model"] if "num_outputs" not in accepted else ["text classifier"]


def data_kind(data: DataSplits) -> str:
    """The kind of model these data train."""
    if data.task == "seq2seq":
        return "encoder-decoder"
    if data.task == "language_model":
        return "language model"
    return "text classifier" if data.tokenizer is not None else "numbers"


def check_model_reads_data(target: str, model_class: Any, data: DataSplits) -> None:
    """A DlxError, before the model is built, when it cannot read this data or give what it asks for: a model of
    numbers given text, a language model given classes to learn, a classifier given pairs of sequences..."""
    kinds, wanted = kinds_read(model_class), data_kind(data)
    if wanted in kinds:
        return
    name = target.rsplit(".", 1)[-1]
    what = {"numbers": "images or numbers", "text classifier": "texts and their classes",
            "language model": "a corpus for a language model", "encoder-decoder": "pairs of sequences"}[wanted]
    fix = f"Choose one of the {MODEL_KINDS[wanted]}"
    fix += f", or train {name} on {DATA_OF[kinds[0]]}." if kinds[0] in DATA_OF else "."
    raise DlxError(f"{name} ({target}) is one of the {MODEL_KINDS[kinds[0]].split(' (')[0]}, but this data set gives "
                   f"{what}. {fix}")


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
