"""A process that a launcher started as one rank of a run: the run folder every rank of a torchrun job agrees
on, and submitit's tasks (a SLURM job of several tasks) as ranks. Nothing here imports torch until a process
really is a rank, so `dlx train` pays nothing for it otherwise."""

import os

from dlx.parallel.world import join_world, launched_as_rank, object_group


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
    from dlx.config.compose import preflight
    from dlx.config.overrides import quote_override_value

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
