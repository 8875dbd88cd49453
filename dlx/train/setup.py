"""What is set once, at the start of a run, for the whole process: seeds, determinism, threads, the device."""

import os
import random

import numpy as np
import torch
from omegaconf import DictConfig

from dlx.errors import DlxError
from dlx.parallel.world import World, device_of_rank


def resolve_device(name: str) -> str:
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DlxError(f"trainer.device={name} but PyTorch sees no CUDA GPU on this machine "
                       f"(torch {torch.__version__}). Use trainer.device=cpu or auto, or install a CUDA build of torch.")
    if name.startswith("cuda:"):
        index = name.removeprefix("cuda:")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise DlxError(f"trainer.device={name} names no GPU of this machine, which has "
                           f"{torch.cuda.device_count()} (cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DlxError("trainer.device=mps but Apple's Metal backend is not available here. Use trainer.device=auto.")
    return name


def start_run(trainer: DictConfig, world: World) -> str:
    """Seeds, determinism, threads and device, set once, here, at the start of a run."""
    # Each rank its own dropout masks and noise; the sample order depends on trainer.seed alone, and DDP gives
    # every rank rank 0's initial weights.
    seed = trainer.seed + world.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic = trainer.deterministic
    if deterministic:  # cuBLAS is reproducible only with a fixed workspace, set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Checked for every run, as the jobs of a sweep share this process; changed only when it differs, since the
    # call imports torch's compiler (a second and a half). An operation without a deterministic kernel is named
    # in a warning rather than stopping the run.
    if deterministic != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    device = device_of_rank(resolve_device(trainer.device), world)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    elif world.size > 1 and device == "cpu":  # the processes on this machine share its cores
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world.local_size))
    return device
