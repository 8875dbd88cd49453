"""Data-parallel training of one run in several processes, with torch's own tools: torch.distributed's default
process group (gloo for CPU tensors, NCCL for CUDA tensors), DistributedDataParallel, and the elastic launcher
behind torchrun.

A process is one rank of a run when its environment says so (RANK and WORLD_SIZE, as torchrun, the elastic
launcher of `trainer.devices=N`, or submitit's export set them); otherwise it is rank 0 of 1 and nothing here
costs anything. torch is imported inside the functions: the CLI imports this module before it knows whether it
trains.
"""

import atexit
import functools
import hashlib
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlx.errors import DlxError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place in a run: rank `rank` of `size` processes, `local_size` of them on this machine.

    The collectives return their input unchanged when the process trains alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 speaks for the run: it alone writes files and prints."""
        return self.rank == 0

    def wrap(self, module: "nn.Module") -> "nn.Module":
        """`module` in DistributedDataParallel: its forwards then average their gradients over the ranks
        during backward. Building it copies rank 0's parameters and buffers to every rank."""
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, values: "torch.Tensor") -> "torch.Tensor":
        """`values` added up over the ranks (a new tensor; every rank gets the same numbers)."""
        if self.size == 1:
            return values
        import torch.distributed as dist

        total = values.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def mean(self, values: "torch.Tensor") -> "torch.Tensor":
        return self.sum(values) / self.size if self.size > 1 else values

    def all(self, flags: "torch.Tensor") -> "torch.Tensor":
        """Element-wise: true where `flags` (bool) is true on every rank."""
        if self.size == 1:
            return flags
        import torch
        import torch.distributed as dist

        agreed = flags.to(torch.int32)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        return agreed.bool()

    def max(self, value: int) -> int:
        """The largest of the ranks' `value`s. A CPU tensor, so on GPUs it goes through gloo without waiting
        for the device."""
        if self.size == 1:
            return value
        import torch
        import torch.distributed as dist

        largest = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        return int(largest.item())

    def copy_from_main(self, tensors: Iterable["torch.Tensor"]) -> None:
        """Overwrite `tensors` (in place) with rank 0's."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for tensor in tensors:
            dist.broadcast(tensor, src=0)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value, group=object_group())
        return values


@functools.cache
def object_group() -> Any:
    """The ranks' group for pickled objects: gloo. On a machine with CUDA the default group sends objects
    through NCCL, which needs each rank on a GPU of its own: that fails for ranks that share the CPU, and for
    the check that each rank has its GPU (device_of_rank). There, a gloo group of its own, which every rank
    creates at its first object collective, reached by all ranks together; elsewhere the default group (None),
    gloo alone."""
    import torch
    import torch.distributed as dist

    return dist.new_group(backend="gloo") if torch.cuda.is_available() else None


def launched_as_rank() -> bool:
    """True in a process that a launcher started as one rank of a distributed job (torchrun, the elastic
    launcher of trainer.devices, or submitit after export_submitit_environment())."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join_world() -> World:
    """This process's World: for a rank of a multi-process job, after joining torch.distributed's default
    process group (env://; once per process), else rank 0 of 1."""
    if not launched_as_rank() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        # No backend named: torch's default pairs gloo for CPU tensors with NCCL for CUDA tensors, so small
        # flags travel through gloo while gradients on GPUs go through NCCL (and objects: object_group()).
        dist.init_process_group()
        if not torch.cuda.is_available():  # gloo alone
            # Gloo's threads, still running while the interpreter shuts down, can abort the process at exit
            # ("terminate called without an active exception"); destroying the groups first ends them. Not
            # with NCCL, where destroying them while a failed peer holds a collective can hang the exit.
            atexit.register(dist.destroy_process_group)
    size = dist.get_world_size()
    return World(rank=dist.get_rank(), size=size, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", size)))


def device_of_rank(device: str, world: World) -> str:
    """The device this rank trains on: the CPU, or on GPUs the one of its local rank (cuda:LOCAL_RANK; cuda:0
    when the launcher gave each process a GPU of its own to see). Every rank finds the same mistakes."""
    if world.size == 1 or device == "cpu":
        return device
    if device != "cuda":
        raise DlxError(f"trainer.device={device} cannot train in {world.size} processes: a data-parallel run uses "
                       "the CPU or one CUDA GPU per process. Use trainer.device=cpu, cuda or auto, and choose the GPUs "
                       "with CUDA_VISIBLE_DEVICES rather than cuda:N.")
    import torch

    visible = torch.cuda.device_count()
    index = world.local_rank if visible > 1 else 0  # one visible GPU: the launcher may have given each its own
    # Every rank learns which GPU each one would take (host, GPU id), so that all find the same mistake.
    gpus = world.gather((platform.node(), str(torch.cuda.get_device_properties(index).uuid))
                        if index < visible else None)
    if None in gpus or len(set(gpus)) < world.size:
        raise DlxError(f"This machine runs {world.local_size} processes of the run, one per GPU, but shows "
                       f"{visible} GPU(s) to them. Lower trainer.devices (or torchrun's --nproc_per_node) to the "
                       "number of GPUs, spread the run over several machines (see the README's multi-GPU "
                       "section), or train on the CPU (trainer.device=cpu).")
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def weights_sha256(model: "nn.Module") -> str:
    """A fingerprint of the parameters' exact bits, to check that every rank holds the same weights."""
    import torch

    digest = hashlib.sha256()
    for parameter in model.parameters():
        digest.update(parameter.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def is_main_process() -> bool:
    """False in the ranks other than 0 of a torchrun or submitit job: they train, rank 0 speaks."""
    return os.environ.get("RANK", "0") == "0"
