"""`dlx eval`: a checkpoint's model and data rebuilt from the file alone, and evaluated on a split."""

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlx.config.checks import check_config
from dlx.config.explain import explain_omegaconf_error
from dlx.config.trust import trusted_config
from dlx.data import Split
from dlx.errors import DlxError
from dlx.inspect.rebuild import load_weights
from dlx.store.checkpoint import load_checkpoint
from dlx.train.build import build_data, build_loading, build_model, build_task, fill_derived
from dlx.train.checkpointing import changed_data, data_record
from dlx.train.evaluate import autocast, evaluate
from dlx.train.setup import resolve_device
from dlx.train.state import Schedule
from dlx.train.tasks import Classification, Seq2Seq, Task, prepare

SPLITS = ("train", "val", "test")


@dataclass
class Evaluated:
    """What evaluate_checkpoint evaluated, for a closer look (dlx eval's per-class report)."""

    model: torch.nn.Module
    task: Task
    split: Split  # the evaluated split as the model sees it, on the device
    raw: Split  # the same split as the data set gives it (pixels in [0, 1]), on the CPU
    samples: int  # evaluated: the first `samples` of the split (all, but for smoke runs)
    class_names: list[str]
    batch_size: int
    mixed_precision: AbstractContextManager
    tokenizer: str | None = None  # text: the data's tokenizer (JSON), to show the texts themselves
    outputs: torch.Tensor | None = None  # (samples, outputs) float32 on the CPU: what the model gave, recorded
    # as it was evaluated, so that a class report does not push the split through it a second time


class Recorder(nn.Module):
    """The model, keeping what it outputs for each batch evaluation pushes through it (in batch order)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        self.outputs.append(output.float().cpu())
        return output


def evaluate_checkpoint(path: Path, overrides: list[str], split: str, allow: list[str], config_dirs: list[Path],
                        beam: int | None = None) -> tuple[dict[str, float], dict[str, Any], Evaluated]:
    """Rebuild model and data from the checkpoint alone and evaluate it on `split` (an encoder-decoder's
    sequences decoded by beam search of `beam` hypotheses, when given, rather than greedily as in training).

    Returns the metrics, a description of what was evaluated, and the model and inputs themselves.
    """
    if split not in SPLITS:
        raise DlxError(f'split="{split}" is not a split. Choose one of: {", ".join(SPLITS)}.')
    checkpoint = load_checkpoint(path)
    cfg = trusted_config(checkpoint, path, allow, config_dirs)
    for override in overrides:
        if "=" not in override or override[0] in "+~":
            raise DlxError(f'"{override}" is not an eval override: write key=value for a key the stored config has, '
                           "e.g. trainer.device=cpu or dataset.root=/path/to/data.")
        try:
            cfg.merge_with_dotlist([override])
        except Exception as err:
            hint = "The checkpoint's config is config.yaml in its run folder."
            raise DlxError(explain_omegaconf_error(err, hint, can_add_keys=False)) from err
    check_config(cfg)
    device = resolve_device(cfg.trainer.device)
    data = build_data(cfg)
    changed = changed_data(checkpoint.get("data"), data_record(data))
    if changed:
        raise DlxError(f"The data this config reads now differ from those {path} was trained on, in: "
                       f"{', '.join(changed)} (the files changed since training: other texts give another "
                       "vocabulary, other rows or images other statistics). Its numbers would mean nothing here: "
                       "evaluate it on the data it was trained on (dataset.path=..., dataset.root=...), or train "
                       "again on these.")
    task = build_task(cfg, data, device)
    if beam is not None:
        if not isinstance(task, Seq2Seq):
            raise DlxError(f"beam={beam} decodes sequences with beam search, which applies to encoder-decoders "
                           f"(model=seq2seq, seq2seq_lstm); {path} holds a {cfg.model._target_}. Leave beam= out.")
        task.beam = beam
    fill_derived(cfg, data, task)  # the stored config has them already: the same values
    model = build_model(cfg)
    load_weights(model, checkpoint, path)
    model.to(device)
    prepared = prepare(data, task.inputs, device, build_loading(cfg.trainer)).split(split)
    max_batches = Schedule.plan(cfg.trainer, len(data.train)).max_eval_batches
    mixed_precision = autocast(device, cfg.trainer.get("precision", "32"))
    recorder = Recorder(model)  # a classifier's outputs are what its class report needs; other tasks call
    # their model's own methods (a GAN's generator), so they get it unwrapped
    evaluated = recorder if isinstance(task, Classification) else model
    metrics = evaluate(evaluated, task, prepared, cfg.trainer.eval_batch_size, max_batches, mixed_precision)
    if not metrics:
        raise DlxError(f"The {split} split of this data set is empty (dataset.val_fraction=0?). Evaluate another split.")
    samples = min(len(prepared), max_batches * cfg.trainer.eval_batch_size) if max_batches else len(prepared)
    info = {"checkpoint": str(path), "split": split, "samples": samples, "step": checkpoint["state"]["step"],
            "model": cfg.model._target_, "dataset": cfg.dataset._target_, "device": device}
    if beam is not None:
        info["beam"] = beam
    outputs = torch.cat(recorder.outputs) if recorder.outputs else None
    return metrics, info, Evaluated(model, task, prepared, data.split(split), samples, data.class_names,
                                    cfg.trainer.eval_batch_size, mixed_precision, data.tokenizer, outputs)
