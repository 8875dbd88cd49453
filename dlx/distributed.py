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
import logging
import os
import platform
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterable
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
        digest.update(parameter.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class WorkersFailed(Exception):
    """The processes of a trainer.devices=N run ended with an error, or were stopped by a signal."""

    def __init__(self, exit_code: int, cause: str) -> None:
        super().__init__(cause)
        self.exit_code = exit_code  # rank 0's exit status, or 128 + the signal that stopped the launcher
        self.cause = cause  # what the first rank to fail reported, when it was not a clean stop


def launch(num_processes: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run function(*args) in `num_processes` new processes on this machine, as ranks 0..N-1 of one job
    (torch's elastic launcher, standalone rendezvous on a free local port); rank 0's return value.

    A signal to this process (SIGINT, SIGTERM, SIGUSR2...) is passed on to the ranks by the launcher; raises
    WorkersFailed when they end with an error, or after such a signal."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Passed on to the ranks: those the launcher handles by default, and SIGUSR2, the warning of a preemption.
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2)
    handlers = {number: signal.getsignal(number) for number in handled}  # the launcher replaces them
    launcher_log = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    launcher_log.addFilter(quiet_dlx_exits)
    with tempfile.TemporaryDirectory(prefix="dlx-ranks-") as logs:  # the ranks' error files, read on failure
        # After passing a signal on, the agent waits this long for the ranks to finish their step and save
        # before it kills them (30 s by default: too short to save a large model).
        os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300")
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=num_processes, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # as torchrun --standalone
                              max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=logs),
                              signals_to_handle=",".join(signal.Signals(number).name for number in handled))
        try:
            return elastic_launch(config, function)(*args)[0]
        except SignalException as err:
            raise WorkersFailed(128 + err.sigval, "") from None
        except ChildFailedError as err:
            rank, first = err.get_first_failure()
            message = first.message.get("message", "") if isinstance(first.message, dict) else str(first.message)
            exit_code = err.failures[0].exitcode if 0 in err.failures else first.exitcode
            raise WorkersFailed(exit_code, f"rank {rank} exited with status {first.exitcode}: {message}") from None
        finally:
            launcher_log.removeFilter(quiet_dlx_exits)
            for number, handler in handlers.items():
                signal.signal(number, handler)


def quiet_dlx_exits(record: logging.LogRecord) -> bool:
    """A filter for the launcher's log: drop its report, with a traceback of its own, of a rank that ended by
    dlx's own error path (exit status 2, or 128 + a signal); rank 0's summary.json holds that error, and the
    launching process reports it as one paragraph. Crashes keep their traceback."""
    failed = str(record.msg).startswith("failed (exitcode") and isinstance(record.args, tuple) and record.args
    return not (failed and (record.args[0] == DlxError.exit_code or record.args[0] > 128))


def agree_on_run_dir(args: list[str]) -> list[str]:
    """`dlx train ARGS` as one rank of a torchrun job: every rank composes its own config, and the run folder's
    name holds the time and a per-process random id, so each would pick another folder. Rank 0 composes its
    folder and sends it to the others; every rank then runs with hydra.run.dir (hydra.sweep.dir for a sweep)
    set to it. Outside such a job, or when the arguments name the folder, `args` come back unchanged."""
    if not launched_as_rank() or int(os.environ["WORLD_SIZE"]) == 1:
        return args
    import torch.distributed as dist

    world = join_world()
    override = [folder_override(args) if world.is_main else None]
    dist.broadcast_object_list(override, src=0, group=object_group())
    args = args if override[0] is None else [*args, override[0]]
    # Hydra's own record of the job (.hydra/) is written by rank 0 alone, like everything in the run folder.
    return args if world.is_main else [*args, "hydra.output_subdir=null"]


def folder_override(args: list[str]) -> str | None:
    """hydra.run.dir=FOLDER (hydra.sweep.dir for a sweep), FOLDER as these arguments compose it; None when they
    name it, train nothing, or do not compose (the check every rank runs next then explains why)."""
    from dlx.compose import preflight
    from dlx.sweep import quote_override_value

    try:
        plan = preflight(args, check_values=False)
    except Exception:
        return None
    if plan is None:
        return None
    key = "hydra.sweep.dir" if plan.multirun else "hydra.run.dir"
    if any(arg.lstrip("+").startswith(f"{key}=") for arg in args):
        return None
    return f"{key}={quote_override_value(plan.folder)}"


def export_submitit_environment() -> bool:
    """Inside a submitit job (SLURM) with several tasks, set the variables torch.distributed reads (RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so that each task trains as one
    rank of one run. True when it did; False outside submitit, for a single task, or when they are set already.

    CUDA_VISIBLE_DEVICES is left as SLURM set it: a task that sees one GPU trains on it, a task that sees all
    of its node's GPUs takes the one of its local rank."""
    try:
        import submitit

        tasks = submitit.JobEnvironment().num_tasks
    except (ImportError, RuntimeError):  # no submitit, or not inside a submitit job
        return False
    if tasks == 1 or launched_as_rank():
        return False
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True
