"""A process that a launcher started as one rank of a run: the run folder every rank of a torchrun job agrees
on (the same one again when torchrun restarts the ranks), and submitit's tasks (a SLURM job of several tasks)
as ranks. Nothing here imports torch until a process really is a rank, so `dlx train` pays nothing for it
otherwise."""

import json
import os
from pathlib import Path

from dlx.parallel.world import join_world, launched_as_rank, object_group


def agree_on_run_dir(args: list[str]) -> list[str]:
    """`dlx train ARGS` as one rank of a torchrun job (or of `srun` in a SLURM job): every rank composes its
    own config, and the run folder's name holds the time and a per-process random id, so each would pick another
    folder. Rank 0 composes its folder and sends it to the others; every rank then runs with hydra.run.dir
    (hydra.sweep.dir for a sweep) set to it. Outside such a job, or when the arguments name the folder, `args`
    come back unchanged.

    When torchrun's agent restarts the ranks after a failure (--max-restarts), the new ranks continue in the
    folder of the first attempt, from its newest good checkpoint (trainer.resume=auto)."""
    export_submitit_environment()  # `srun dlx train` in a SLURM job of several tasks: each task is one rank
    if not launched_as_rank():
        return args
    world = join_world()
    if world.size == 1:  # torchrun with one process: only a restart needs anything
        return args_of_rank_0(args) if restart_record("") else args
    import torch.distributed as dist

    agreed: list[list[str] | None] = [args_of_rank_0(args) if world.is_main else None]
    dist.broadcast_object_list(agreed, src=0, group=object_group())
    chosen = agreed[0] or args
    # Hydra's own record of the job (.hydra/) is written by rank 0 alone, like everything in the run folder.
    return chosen if world.is_main else [*chosen, "hydra.output_subdir=null"]


def args_of_rank_0(args: list[str]) -> list[str]:
    """The arguments every rank runs with, as rank 0 decides them: the run folder it composes (or the one the
    first attempt recorded, after a restart), and on a restart, resume from that folder's newest checkpoint."""
    from dlx.config.compose import preflight
    from dlx.config.overrides import quote_override_value

    try:
        plan = preflight(args, check_values=False)
    except Exception:  # the check every rank runs next explains why
        return args
    if plan is None:  # --help, --info: nothing is trained
        return args
    key = "hydra.sweep.dir" if plan.multirun else "hydra.run.dir"
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    record = restart_record(plan.configs[0].output_root if plan.configs and plan.configs[0] is not None
                            else "outputs")
    if not any(arg.lstrip("+").startswith(f"{key}=") for arg in args):
        folder = read_restart_record(record) if restart else None
        if folder is None:
            folder = plan.folder
            write_restart_record(record, folder)
        args = [*args, f"{key}={quote_override_value(folder)}"]
    if restart and not plan.multirun:  # a sweep's jobs resume by themselves (dlx.sweep.attempts)
        args = [*(a for a in args if not a.startswith("trainer.resume=")), "trainer.resume=auto"]
    return args


def restart_record(output_root: str) -> Path | None:
    """Where rank 0 notes the run folder for the ranks torchrun's agent may start again (--max-restarts):
    OUTPUT_ROOT/.torchrun/RUN_ID (torchrun's --rdzv-id, shared by the restarts), on the disk that holds the
    runs, since the new rank 0 may be on another machine. None when the agent restarts nothing."""
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) == 0 or not os.environ.get("TORCHELASTIC_RUN_ID"):
        return None
    return Path(output_root) / ".torchrun" / os.environ["TORCHELASTIC_RUN_ID"]


def read_restart_record(record: Path | None) -> str | None:
    try:
        return str(json.loads(record.read_text(encoding="utf-8"))["folder"]) if record else None
    except (OSError, ValueError, KeyError):  # the first attempt failed before it chose its folder
        return None


def write_restart_record(record: Path | None, folder: str) -> None:
    if record is None:
        return
    from dlx.store.files import write_json_atomically

    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(record, {"folder": folder})


def export_submitit_environment() -> bool:
    """Inside a SLURM job step of several tasks (`srun dlx train`, or submitit's job), or a submitit job of
    several local tasks, set the variables torch.distributed reads (RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so that each task trains as one rank of one run. True when it
    did; False outside such a job, for a single task, or when they are set already.

    CUDA_VISIBLE_DEVICES is left as SLURM set it: a task that sees one GPU trains on it, a task that sees all
    of its node's GPUs takes the one of its local rank."""
    if launched_as_rank():
        return False
    if "SLURM_JOB_ID" in os.environ:
        return export_slurm_step_environment()
    if not os.environ.get("SUBMITIT_EXECUTOR"):  # set in every job submitit starts; its import costs 0.1 s
        return False
    try:
        import submitit

        tasks = submitit.JobEnvironment().num_tasks
    except (ImportError, RuntimeError):  # no submitit, or not inside a submitit job
        return False
    if tasks == 1:
        return False
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def export_slurm_step_environment() -> bool:
    """The variables of export_submitit_environment from SLURM's own: the step's tasks (a job's batch script,
    which has no SLURM_STEP_NUM_TASKS, trains alone), their first node as the address of rank 0's store, on a
    port drawn from the job and step ids, which every task computes alike."""
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    if tasks == 1:
        return False
    import subprocess

    nodes = os.environ["SLURM_STEP_NODELIST"]  # compressed, "gpu[01-04]": scontrol expands it
    first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                           check=True).stdout.split()[0]
    step = int(os.environ["SLURM_JOB_ID"]) * 131 + int(os.environ.get("SLURM_STEP_ID", "0"))
    os.environ.update(RANK=os.environ["SLURM_PROCID"], WORLD_SIZE=str(tasks), LOCAL_RANK=os.environ["SLURM_LOCALID"],
                      LOCAL_WORLD_SIZE=str(tasks_on_node(os.environ["SLURM_STEP_TASKS_PER_NODE"],
                                                         int(os.environ["SLURM_NODEID"]))),
                      MASTER_ADDR=first, MASTER_PORT=str(20000 + step % 40000))
    return True


def tasks_on_node(spec: str, node: int) -> int:
    """The tasks of node number `node` in SLURM's SLURM_STEP_TASKS_PER_NODE ("4(x2),3": 4, 4, 3)."""
    counts: list[int] = []
    for part in spec.split(","):
        count, _, repeat = part.partition("(x")
        counts += [int(count)] * int(repeat.rstrip(")") or 1)
    return counts[node]
