"""A job's share of the machine when a launcher runs several at once: a GPU of its own under joblib, the
CPUs of its allocation under SLURM."""

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from dlx.errors import DlxError
from dlx.ui.console import logger

if TYPE_CHECKING:
    from hydra.conf import HydraConf


class GpuClaim:
    """One GPU of this machine for one job, held (an flock) until the job ends: jobs that a local launcher
    (joblib) runs side by side each take a free GPU instead of all piling onto the first. The lock files
    are per machine, so separate `dlx` commands share GPUs the same way."""

    def __init__(self) -> None:
        self.descriptor: int | None = None

    def acquire(self, gpus: list[str]) -> int | None:
        """The index of the first GPU of `gpus` (their identities) no other job holds, or None."""
        folder = lock_folder()
        for index, identity in enumerate(gpus):
            # O_NOFOLLOW: a link planted under this name is refused, never followed (nor truncated).
            descriptor = os.open(folder / f"{identity}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            self.descriptor = descriptor
            return index
        return None

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing drops the lock
            self.descriptor = None


def lock_folder() -> Path:
    """This user's private folder for the GPU locks (refused if someone else owns it or may write in it)."""
    folder = Path(tempfile.gettempdir()) / f"dlx-gpus-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise DlxError(f"{folder} is not a private folder of yours (a link, another owner, or writable by others): "
                       "remove it, dlx makes it again for the GPU locks of parallel jobs.")
    return folder


def gpu_identity(index: int) -> str:
    """A name for GPU `index` that is the same whatever CUDA_VISIBLE_DEVICES renumbers."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else str(index)


@contextmanager
def share_machine(cfg: DictConfig, hydra_cfg: "HydraConf") -> Iterator[None]:
    """Give a job its share of the machine when a launcher runs several at once.

    joblib runs jobs side by side on this machine (it already limits each worker's CPU threads): each job
    takes a GPU no other job holds. Under SLURM, each job uses the CPUs its allocation has.
    """
    if cfg.trainer.threads is None and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cfg.trainer.threads = int(os.environ["SLURM_CPUS_PER_TASK"])
    claim = GpuClaim()
    if "joblib" in hydra_cfg.launcher.get("_target_", "").lower() and cfg.trainer.device in ("auto", "cuda"):
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            index = claim.acquire([gpu_identity(i) for i in range(count)])
            if index is None:
                index = hydra_cfg.job.num % count
                logger.warning(f"Every GPU is taken by another job: this one shares cuda:{index}. Run at most "
                               f"{count} jobs at once (hydra.launcher.n_jobs={count}).")
            # The current device, not the config: the stored config keeps "cuda", which any machine can evaluate.
            torch.cuda.set_device(index)
    try:
        yield
    finally:
        claim.release()
