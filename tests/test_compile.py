"""trainer.compile=true: the training steps run through torch.compile (its real C++ backend on the CPU), the
checkpoints are the plain model's, a run killed with SIGKILL resumes to the weights of a compiled run never
stopped, and a machine that cannot compile gets one paragraph."""

import signal
from pathlib import Path

import pytest
import torch
from conftest import dlx, start_dlx, summary_of, wait_for_step

from dlx.store.checkpoint import load_checkpoint
from dlx.store.metrics import read_metrics

# Dropout inside the compiled graph: its random numbers must come back the same after a resume too.
COMPILED_FFN = ["model=ffn", "model.hidden_sizes=[64]", "model.dropout=0.2", "trainer.compile=true",
                "trainer.max_epochs=3", "trainer.log_every=1", "trainer.checkpoint_every=5", "trainer.eval_every=30"]


@pytest.mark.slow
def test_a_compiled_run_saves_the_plain_model_and_trains_as_the_eager_one(workdir: Path) -> None:
    plain = ["model=ffn", "model.hidden_sizes=[64]", "trainer.max_steps=40", "trainer.log_every=1"]
    dlx("train", *plain, "trainer.compile=true", "hydra.run.dir=compiled", cwd=workdir)
    dlx("train", *plain, "hydra.run.dir=eager", cwd=workdir)
    compiled, eager = (load_checkpoint(workdir / run / "checkpoints" / "last.ckpt") for run in ("compiled", "eager"))
    assert compiled["model"].keys() == eager["model"].keys()  # no "_orig_mod." in front of them
    for key in eager["model"]:  # fused kernels round differently, by a few units in the last place at most
        torch.testing.assert_close(compiled["model"][key], eager["model"][key], rtol=1e-4, atol=1e-5)
    losses = {run: [row["loss"] for row in read_metrics(workdir / run / "metrics.jsonl") if row["split"] == "train"]
              for run in ("compiled", "eager")}
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4) and len(losses["eager"]) == 40
    # Evaluation uses the model itself: dlx eval of the compiled run's checkpoint gives its test numbers.
    evaluated = dlx("eval", str(workdir / "compiled" / "checkpoints" / "best.ckpt"), "--json", cwd=workdir)
    assert evaluated.stdout.strip() and summary_of(workdir / "compiled")["test"]["acc"] > 0.8


@pytest.mark.slow
def test_a_compiled_run_killed_with_sigkill_resumes_to_the_weights_of_one_never_stopped(workdir: Path) -> None:
    dlx("train", *COMPILED_FFN, "hydra.run.dir=uninterrupted", cwd=workdir)
    process = start_dlx(["train", *COMPILED_FFN, "hydra.run.dir=killed"], workdir)
    wait_for_step(process, workdir / "killed" / "metrics.jsonl", 30, timeout=300)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["state"]
    assert 25 <= killed_at["step"] < summary_of(workdir / "uninterrupted")["steps"]

    dlx("train", *COMPILED_FFN, "hydra.run.dir=killed", "trainer.resume=auto", cwd=workdir)
    resumed, uninterrupted = (load_checkpoint(workdir / run / "checkpoints" / "last.ckpt")["model"]
                              for run in ("killed", "uninterrupted"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)


def test_a_machine_that_cannot_compile_gets_one_paragraph(workdir: Path) -> None:
    result = dlx("train", "model=ffn", "trainer.compile=true", "trainer.max_steps=2", "hydra.run.dir=run",
                 cwd=workdir, expect=2, env={"CXX": str(workdir / "no-such-compiler")})
    message = " ".join(result.stderr.split())
    assert "trainer.compile=true: torch.compile could not compile FeedForward's training step" in message, message
    assert "trainer.compile=false" in message and "Traceback" not in result.stderr
    assert summary_of(workdir / "run")["status"] == "failed"
