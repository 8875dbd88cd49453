"""Shared helpers: every end-to-end test drives the real CLI in a subprocess, in its own folder."""

import json
import os
import subprocess
import sys
import time
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


def start_dlx(args: list[str], cwd: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """`python -m dlx ARGS` started in the background, for tests that signal or kill it."""
    return subprocess.Popen([sys.executable, "-m", "dlx", *args], cwd=cwd, env={**ENV, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, **kwargs)


def wait_for_step(process: subprocess.Popen, metrics: Path, step: int, timeout: float = 120) -> None:
    """Block until the run has logged `step` (read from its real metrics file); kill it on a timeout."""
    from dlx.store.metrics import read_metrics

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(r.get("step", 0) >= step for r in read_metrics(metrics)):
            return
        assert process.poll() is None, f"the run ended before step {step}:\n{process.communicate()[1]}"
        time.sleep(0.002)
    process.kill()
    raise AssertionError(f"no step {step} within {timeout} s")


def latest_run(cwd: Path) -> Path:
    return (cwd / "outputs" / "latest").resolve()


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def compose():
    """compose(OVERRIDES): the config `dlx train OVERRIDES` runs, composed in this process (no subprocess)."""
    from dlx.config.compose import compose_config

    return compose_config


# A real corpus that every Python installation carries: the sources of the standard library's json package.
JSON_SOURCES = Path(json.__file__).parent
LANGUAGE_MODEL_DATA = ["dataset=text_lm", f"dataset.path={JSON_SOURCES}", "dataset.suffixes=[.py]",
                       "dataset.block_size=32", "dataset.cache_dir=token_cache"]
SMALL_LANGUAGE_MODELS = {
    "gpt": ["model.d_model=32", "model.num_heads=2", "model.num_layers=1", "model.dim_feedforward=64"],
    "lstm_lm": ["model.embedding_dim=32", "model.hidden_size=32", "model.num_layers=1"],
    "gru_lm": ["model.embedding_dim=32", "model.hidden_size=32", "model.num_layers=1"],
}
PAIRS = ["dataset=generated_pairs", "dataset.num_samples=400", "dataset.max_length=6"]
# What each shipped model needs to train on bundled data; everything else is the shipped default.
MODEL_DATA = {"perceptron": ["dataset=breast_cancer", "loss=bce"], "seq2seq": PAIRS, "seq2seq_lstm": PAIRS,
              **{name: [*LANGUAGE_MODEL_DATA, *small] for name, small in SMALL_LANGUAGE_MODELS.items()}}
REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = Path(os.environ.get("DLX_SLURM_DIR", "/tmp/dlx-slurm"))


@pytest.fixture(scope="session")
def slurm() -> dict:
    """The environment that reaches the one-node SLURM cluster of .ci/slurm-up (SLURM_CONF), started here when
    it is not running yet; skips where SLURM is not installed. A cluster started here is stopped at the end
    of the session (not under xdist, where other workers may still use it)."""
    import fcntl

    SLURM_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{SLURM_DIR}.lock", "w") as lock:  # xdist workers: one starts it, the others find it up
        fcntl.flock(lock, fcntl.LOCK_EX)
        up = subprocess.run(["bash", str(REPO / ".ci" / "slurm-up")], capture_output=True, text=True)
    if up.returncode == 3:
        pytest.skip(f"SLURM is not installed here: {up.stderr.strip()}")
    assert up.returncode == 0, f"the SLURM cluster did not start:\n{up.stdout}\n{up.stderr}"
    yield {"SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    if "started" in up.stdout and "PYTEST_XDIST_WORKER" not in os.environ:
        subprocess.run(["bash", str(REPO / ".ci" / "slurm-down")], check=False)


def pid_of_rank(environment: dict, under: int | None = None, timeout: float = 60) -> int:
    """The pid of the rank to kill: the oldest process running dlx whose environment (as it started) holds every
    item of `environment` (RANK=1 under a torchrun agent, SLURM_PROCID=1 in a SLURM job), among the
    descendants of `under` (every process when None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parents = {}
        for entry in Path("/proc").iterdir():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (ValueError, OSError):
                continue
        found = []
        for pid in sorted(parents):
            ancestor = pid
            while under is not None and ancestor not in (under, 0, 1) and ancestor in parents:
                ancestor = parents[ancestor]
            try:
                started_with = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
                runs_dlx = b"dlx" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if (under is None or ancestor == under) and runs_dlx and \
                    all(f"{key}={value}".encode() in started_with for key, value in environment.items()):
                found.append(pid)
        if found:
            return min(found)
        time.sleep(0.2)
    raise AssertionError(f"no dlx process with {environment} under {under}")
