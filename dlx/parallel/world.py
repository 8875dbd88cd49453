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
import json
import os
import platform
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
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
    import torch.distributed as dist

    run_store()  # joins the default group, once
    size = dist.get_world_size()
    return World(rank=dist.get_rank(), size=size, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", size)))


# How long a collective waits for a rank that is alive but does not come (a hung network file system, a
# deadlock) before torch ends the run with its timeout error. The same for gloo and NCCL (torch's defaults
# differ: 30 and 10 minutes). A rank that fails or dies is noticed within seconds instead (report_failure,
# blame, and the heartbeats): this is the last resort, long enough for the slowest thing one rank does while
# the others wait at the next collective: rank 0 writing a large model's checkpoint to a network disk.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
HEARTBEAT_S = 1.0  # each rank's heartbeat in the run's store; a rank silent for 3 of them is taken as gone


@functools.cache
def run_store() -> Any:
    """Join torch.distributed's default process group (once per process) and return the run's key-value
    store, a prefix of the one the ranks met through (a TCPStore at MASTER_ADDR:MASTER_PORT: torchrun's agent
    holds it, or rank 0 under env://). The ranks leave their errors and heartbeats there.

    No backend named: torch's default pairs gloo for CPU tensors with NCCL for CUDA tensors, so small flags
    travel through gloo while gradients on GPUs go through NCCL (and objects: object_group())."""
    import torch
    import torch.distributed as dist

    # NCCL: a failed or timed-out collective aborts the communicator and ends the process (rather than
    # leaving it waiting). torch's default since 2.2; set here so that it holds whatever the environment says.
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "3")
    store, rank, size = next(dist.rendezvous("env://", timeout=COLLECTIVE_TIMEOUT))
    store.set_timeout(COLLECTIVE_TIMEOUT)
    # torchrun's agent keeps one store for all the attempts of a run (--max-restarts): the keys of the ranks
    # it restarts must not meet those their predecessors left (gloo would connect to dead ranks' addresses).
    attempt = f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    dist.init_process_group(store=dist.PrefixStore(f"default_pg/{attempt}", store), rank=rank, world_size=size,
                            timeout=COLLECTIVE_TIMEOUT)
    if not torch.cuda.is_available():  # gloo alone
        # Gloo's threads, still running while the interpreter shuts down, can abort the process at exit
        # ("terminate called without an active exception"); destroying the groups first ends them. Not
        # with NCCL, where destroying them while a failed peer holds a collective can hang the exit.
        atexit.register(dist.destroy_process_group)
    ours = dist.PrefixStore(f"dlx/{attempt}", store)
    stop = threading.Event()
    heart = threading.Thread(target=beat, args=(ours, rank, stop), name="dlx-heartbeat", daemon=True)
    heart.start()
    # Stopped before the interpreter shuts down (atexit runs the last registered first): a daemon thread
    # caught inside the store's C++ code at shutdown can abort the process.
    atexit.register(stop_beating, stop, heart)
    return ours


def beat(store: Any, rank: int, stop: threading.Event) -> None:
    """This rank's heartbeat: a counter in the run's store, added to every HEARTBEAT_S while the process
    lives (a thread of its own, so it beats while the training waits or computes). A rank that is killed
    (SIGKILL, the out-of-memory killer, a lost machine) stops beating: that is how the others name it."""
    while not stop.is_set():
        try:
            store.add(f"beat/{rank}", 1)
        except Exception:  # the store is gone (its host died): the ranks find out through their collectives
            return
        stop.wait(HEARTBEAT_S)


def stop_beating(stop: threading.Event, heart: threading.Thread) -> None:
    stop.set()
    heart.join(timeout=5)


@dataclass(frozen=True)
class RankFailure:
    """What made one rank of a run fail: its own error, or (it stopped beating) that it was killed."""

    rank: int
    size: int
    error: str  # "ValueError: ...", or how it stopped
    host: str = ""
    pid: int = 0
    killed: bool = False  # it ended without a word: it wrote nothing (for rank 0: not even the summary)


class RankFailed(DlxError):
    """This rank stopped because another rank of the run failed: that rank and its error are the story."""

    exit_code = 1  # a crash of the run, not a mistake in the command

    def __init__(self, failure: RankFailure) -> None:
        where = f" (host {failure.host}, pid {failure.pid})" if failure.host else ""
        super().__init__(f"Rank {failure.rank} of the run's {failure.size} processes{where} failed: "
                         f"{failure.error}. The other ranks stopped with it.")
        self.failure = failure


def report_failure(world: World, error: BaseException) -> None:
    """Leave this rank's error in the run's store, where the other ranks find it when their next collective
    fails for want of this one; the first report stays (later ones are consequences)."""
    if world.size == 1:
        return
    failure = RankFailure(world.rank, world.size, f"{type(error).__name__}: {error}".strip().rstrip(":"),
                          platform.node(), os.getpid())
    try:
        run_store().compare_set("failure", "", json.dumps(asdict(failure)))
    except Exception:  # the store is gone too: the launcher's own report names this rank
        pass


def blame(world: World, error: BaseException) -> RankFailure | None:
    """The other rank whose failure made this rank's `error` (a collective that failed or timed out), or None
    when the error is this rank's own. A rank that failed reported its error before it ended; one that was
    killed stopped beating: it takes three heartbeats to tell."""
    import torch.distributed as dist

    if world.size == 1 or not isinstance(error, (RuntimeError, dist.DistError)):
        return None
    try:
        store = run_store()
        before = beats(store, world.size)
        deadline = time.monotonic() + 3 * HEARTBEAT_S
        while True:
            if store.check(["failure"]):
                reported = RankFailure(**json.loads(store.get("failure")))
                return reported if reported.rank != world.rank else None
            if time.monotonic() > deadline:
                break
            time.sleep(HEARTBEAT_S / 10)
        after = beats(store, world.size)
    except Exception:  # the store went with its host: under env:// that is rank 0
        return None if world.rank == 0 else RankFailure(0, world.size, STOPPED_SILENTLY + " (and the run's "
                                                                       "store, which it held, went with it)",
                                                        killed=True)
    silent = [rank for rank in range(world.size) if rank != world.rank and after[rank] == before[rank]]
    return RankFailure(silent[0], world.size, STOPPED_SILENTLY, killed=True) if silent else None


STOPPED_SILENTLY = ("it ended without an error of its own: killed by a signal (SIGKILL, the out-of-memory "
                    "killer) or its machine was lost")


def beats(store: Any, size: int) -> list[int]:
    """Every rank's heartbeat count (adding 0 reads a counter without waiting for it)."""
    return [int(store.add(f"beat/{rank}", 0)) for rank in range(size)]


def launcher_restart() -> tuple[str, int]:
    """(launcher, count) when the launcher started this run's processes again after a failure: torchrun's
    elastic agent (--max-restarts; TORCHELASTIC_RESTART_COUNT) or SLURM requeueing the job (preemption, a time
    limit; SLURM_RESTART_COUNT); ("", 0) for a first start."""
    for launcher, variable in (("torchrun", "TORCHELASTIC_RESTART_COUNT"), ("slurm", "SLURM_RESTART_COUNT")):
        count = os.environ.get(variable, "0")
        if count.isdigit() and int(count) > 0:
            return launcher, int(count)
    return "", 0


def slurm_job() -> str | None:
    """The SLURM job this process runs in ("123", or "123_4" for task 4 of an array job such as a sweep's)."""
    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


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
