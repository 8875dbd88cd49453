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
