"""Shared helpers: every end-to-end test drives the real CLI in a subprocess, in its own folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# One torch thread per process keeps parallel-free test runs predictable on small CI machines.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("HYDRA_FULL_ERROR", None)


def dlx(*args: str, cwd: Path, expect: int | None = 0, env: dict | None = None, timeout: float = 300):
    """Run `python -m dlx ARGS` in cwd; fail the test unless it exits with `expect` (None: any status)."""
    result = subprocess.run(
        [sys.executable, "-m", "dlx", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**ENV, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    if expect is not None and result.returncode != expect:
        raise AssertionError(f"dlx {' '.join(args)} exited {result.returncode}, expected {expect}\n"
                             f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def latest_run(cwd: Path) -> Path:
    return (cwd / "outputs" / "latest").resolve()


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
