"""dataset.in_memory=auto|true|false, for the loaders that can hold a data set in memory or read it from disk
batch by batch (image folders, tables)."""

import logging
import os
from pathlib import Path
from typing import Any

from dlx.errors import DlxError

logger = logging.getLogger("dlx")

IN_MEMORY_SHARE = 0.5  # of the memory available, that auto lets a data set take once loaded


def choose_in_memory(in_memory: Any, needed_bytes: int, what: str, otherwise: str) -> bool:
    """dataset.in_memory: true, false, or auto: in memory when `what` (the data as held for training, all its
    copies counted) takes at most IN_MEMORY_SHARE of the memory available now; the log says which was chosen
    and why when auto streams (`otherwise` says how)."""
    if isinstance(in_memory, bool):
        return in_memory
    if in_memory != "auto":
        raise DlxError(f"dataset.in_memory={in_memory}: choose auto, true or false.")
    available = available_memory()
    fits = needed_bytes <= IN_MEMORY_SHARE * available
    if not fits:
        logger.info(f"dataset.in_memory=auto: {what} would take about {needed_bytes / 2**30:.1f} GiB of the "
                    f"{available / 2**30:.1f} GiB available: {otherwise}")
    return fits


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable, which counts reclaimable caches)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
