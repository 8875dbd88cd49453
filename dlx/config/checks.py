"""The checks a composed config must pass before any data is loaded. Keys and types of `trainer` are guarded
by the schema (dlx.config.schema); the groups whose keys are constructor arguments (model, dataset,
optimizer, loss, scheduler, logger) are checked against the signature and type hints of the class they
name. Nothing here imports torch."""

import importlib
import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dlx.config.explain import explain_omegaconf_error
from dlx.config.schema import DEVICES, PRECISIONS
from dlx.errors import DlxError, did_you_mean, format_choices

# Constructor arguments that dlx fills in from the data or the run, so a YAML need not (or must not) set them.
FILLED_BY_DLX = {
    "model": {"input_shape", "num_outputs", "vocab_size", "max_target_length"},
    "dataset": set(),
    "optimizer": {"params"},
    "loss": set(),
    "scheduler": {"optimizer", "T_max", "total_steps", "total_iters"},
}


def check_config(cfg: DictConfig) -> None:
    """Raise DlxError for the first impossible value or unknown constructor argument in cfg."""
    from omegaconf.errors import OmegaConfBaseException

    for group in ("model", "dataset", "optimizer", "loss"):
        if OmegaConf.is_missing(cfg, group) or not isinstance(cfg[group], DictConfig):
            raise DlxError(f"No {group} is chosen: select one with {group}=NAME (`dlx train --help` lists them).")
    if cfg.get("scheduler") is not None and not isinstance(cfg.scheduler, DictConfig):
        raise DlxError("scheduler must be a scheduler config: select one with scheduler=NAME, or scheduler=none.")
    unset = sorted(key for group in ("trainer", "augment") if isinstance(cfg.get(group), DictConfig)
                   for key in OmegaConf.missing_keys(cfg[group]))  # full keys: trainer.max_epochs
    unset += ["output_root"] if "output_root" in cfg and OmegaConf.is_missing(cfg, "output_root") else []
    if unset:  # the schema types these keys; their values come from conf/train.yaml and conf/trainer/default.yaml
        raise DlxError(f"{', '.join(unset)} {'has' if len(unset) == 1 else 'have'} no value. A primary config of "
                       "your own (--config-name) must keep train.yaml's keys and defaults list (trainer: default): "
                       "start from a copy, `dlx cp train my_conf/`, or set the value (key=value).")
    try:  # interpolations fail here, with their key, rather than somewhere later
        for key in cfg:
            if key != "hydra" and isinstance(cfg[key], DictConfig):
                OmegaConf.to_container(cfg[key], resolve=True)
    except OmegaConfBaseException as err:
        raise DlxError(explain_omegaconf_error(err)) from err
    check_trainer(cfg.trainer)
    if cfg.get("augment") is not None and cfg.augment.shift < 0:
        raise DlxError(f"augment.shift={cfg.augment.shift} must be 0 (no shifts) or a number of pixels, e.g. 2.")
    if "lr" in cfg.optimizer and not number("optimizer.lr", cfg.optimizer.lr) > 0:
        raise DlxError(f"optimizer.lr={cfg.optimizer.lr} is not a learning rate: it must be greater than 0 "
                       "(typical values: 0.1 for SGD, 1e-3 for Adam).")
    for key in ("weight_decay", "momentum"):
        if key in cfg.optimizer and not number(f"optimizer.{key}", cfg.optimizer[key]) >= 0:
            raise DlxError(f"optimizer.{key}={cfg.optimizer[key]} must be 0 or more.")
    for key in ("val_fraction", "test_fraction"):
        if key in cfg.dataset and not 0 <= number(f"dataset.{key}", cfg.dataset[key]) < 1:
            raise DlxError(f"dataset.{key}={cfg.dataset[key]} must be a fraction in [0, 1), e.g. 0.1.")
    for group in FILLED_BY_DLX:
        node = cfg.get(group)
        if node:
            check_constructor_call(group, node)
    check_loggers(cfg.get("logger"))


def check_loggers(loggers: Any) -> None:
    """logger=... must select logger configs ({name: {_target_: ...}}) whose library is installed."""
    if loggers is None:
        return
    if not isinstance(loggers, DictConfig) or not all(isinstance(node, DictConfig) for node in loggers.values()):
        raise DlxError("logger must select logger configs: logger=csv, logger=tensorboard, logger=mlflow, or several "
                       "as logger=[csv,tensorboard].")
    for key, node in loggers.items():
        name = str(key)
        check_constructor_call(f"logger.{name}", node)
        check_logger_installed(name, locate_target(f"logger.{name}", node._target_))


def check_logger_installed(name: str, logger_class: Any) -> None:
    """The library a logger class `requires` (module, pip extra) must be importable; imported once here, and
    the run reuses the module."""
    requires = getattr(logger_class, "requires", None)
    if not requires:
        return
    module, extra = requires
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise DlxError(f"logger={name} needs the {module} package, which is not installed: "
                       f'pip install "dlx[{extra}]". Or drop logger={name} (metrics.jsonl is always '
                       "written).") from err


def number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DlxError(f"{key}={value!r} must be a number.")
    return value


def check_trainer(trainer: DictConfig) -> None:
    at_least_one = ["batch_size", "eval_batch_size", "max_epochs", "log_every"]
    at_least_one += [key for key in ("max_steps", "eval_every", "threads", "checkpoint_every", "patience")
                     if trainer[key] is not None]
    for key in at_least_one:
        if trainer[key] < 1:
            raise DlxError(f"trainer.{key}={trainer[key]} is impossible: it must be 1 or more.")
    if not 0 <= trainer.seed < 2**32 - 1024:  # NumPy's seeds are 32-bit; each rank adds its rank to the seed
        raise DlxError(f"trainer.seed={trainer.seed} is out of range: a seed is a whole number from 0 to "
                       f"{2**32 - 1025:,} (NumPy's generator takes 32 bits), e.g. trainer.seed=42.")
    devices = trainer.get("devices", 1)  # absent from the configs of checkpoints older than it
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise DlxError(f"trainer.devices={devices!r} is not a number of processes: it must be 1 (train in this "
                       "process) or more (that many processes train the run together, one per GPU on a GPU "
                       "machine, else sharing the CPU cores), e.g. trainer.devices=2.")
    workers = trainer.get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DlxError(f"trainer.num_workers={workers!r} must be 0 (streamed files are read in the training process) "
                       "or a number of worker processes, e.g. trainer.num_workers=4.")
    if trainer.get("prefetch_factor", 2) < 1:
        raise DlxError(f"trainer.prefetch_factor={trainer.prefetch_factor} must be 1 or more batches per worker.")
    if trainer.grad_clip is not None and trainer.grad_clip <= 0:
        raise DlxError(f"trainer.grad_clip={trainer.grad_clip} must be a positive gradient norm, or null for none.")
    device = trainer.device
    if device not in DEVICES and not device.startswith("cuda:"):
        suggestion = ' Did you mean "cuda"?' if device.lower() in ("gpu", "nvidia", "cuda0") else did_you_mean(device, DEVICES)
        raise DlxError(f'trainer.device="{device}" is not a device. Choose one of {format_choices(DEVICES)} '
                       f"or cuda:N.{suggestion}")
    precision = trainer.get("precision", "32")
    if precision not in PRECISIONS:
        raise DlxError(f'trainer.precision="{precision}" must be one of {", ".join(PRECISIONS)}.'
                       f"{did_you_mean(str(precision), PRECISIONS)}")
    if trainer.on_nonfinite not in ("error", "skip"):
        raise DlxError(f'trainer.on_nonfinite="{trainer.on_nonfinite}" must be error or skip.'
                       f"{did_you_mean(trainer.on_nonfinite, ['error', 'skip'])}")
    if trainer.monitor.mode not in ("auto", "min", "max"):
        raise DlxError(f'trainer.monitor.mode="{trainer.monitor.mode}" must be min, max or auto.')
    if trainer.monitor.metric != "auto" and not trainer.monitor.metric.startswith("val/"):
        raise DlxError(f'trainer.monitor.metric="{trainer.monitor.metric}" must name a validation metric such as '
                       "val/acc or val/loss: the best checkpoint is chosen on validation, never on test.")


def locate_target(group: str, target: str) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as err:
        raise DlxError(f'{group}._target_="{target}" cannot be imported ({err}). Check the spelling, and that '
                       "the module is importable from the working directory (run dlx from your project's "
                       "root, or install it).") from err


def check_constructor_call(group: str, node: DictConfig) -> None:
    """The keys of `node` must be arguments of its `_target_`, with values of the annotated types."""
    if "_target_" not in node:
        raise DlxError(f"The {group} config has no _target_: it must name the class or function to build "
                       f"(see conf/{group}/ for examples).")
    target = locate_target(group, node._target_)
    signature = inspect.signature(target)
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    hints = type_hints(target)
    name = getattr(target, "__name__", str(target))
    for key in map(str, node):  # a YAML mapping's keys are strings
        if key.startswith("_"):
            continue
        if key not in parameters and not takes_any:
            accepted = [p for p in parameters if p not in FILLED_BY_DLX.get(group, ()) and p != "self"]
            raise DlxError(f'Unknown key "{group}.{key}": {name} takes no argument "{key}".'
                           f"{did_you_mean(key, accepted)} Its arguments are: {format_choices(accepted)}.")
        if OmegaConf.is_missing(node, key) or key not in hints:
            continue
        value = OmegaConf.to_object(node[key]) if isinstance(node[key], (DictConfig, ListConfig)) else node[key]
        if not value_matches(value, hints[key]):
            raise DlxError(f"{group}.{key}={value!r} does not fit {name}: it expects {describe_type(hints[key])}."
                           f"{literal_suggestion(value, hints[key])}")
    missing = [p.name for p in parameters.values()
               if p.default is inspect.Parameter.empty and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
               and p.name not in node and p.name not in FILLED_BY_DLX.get(group, ()) and p.name != "self"]
    if missing and not node.get("_partial_", False):
        raise DlxError(f"{group} config for {name} lacks the required argument(s) {format_choices(missing)}: "
                       f"add them to its YAML or as {group}.{missing[0]}=VALUE.")


def type_hints(target: Any) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # unresolvable forward references in third-party code: skip type checks
        return {}


def value_matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin is typing.Literal:  # 1 == True == 1.0: the type must match too
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]: one type per position
            return len(value) == len(args) and all(value_matches(v, arg) for v, arg in zip(value, args))
        element = args[0] if args else Any
        return all(value_matches(v, element) for v in value)
    return True  # tensors, callables, user classes: leave it to the constructor


def describe_type(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def literal_suggestion(value: Any, hint: Any) -> str:
    literals = [a for a in typing.get_args(hint) if isinstance(a, str)]
    for arg in typing.get_args(hint):  # Optional[Literal[...]]
        literals += [a for a in typing.get_args(arg) if isinstance(a, str)]
    return did_you_mean(str(value), literals) if literals else ""
