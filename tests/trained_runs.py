"""Runs trained once per test session, for the tests of what comes after training (eval's class report,
plot, predict, sample, export, report). A test module uses them with `pytest_plugins = ["trained_runs"]`;
the tests read these runs and write their own outputs elsewhere."""

from pathlib import Path

import pytest
from conftest import dlx, latest_run


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Three epochs: right mostly but not always, so the confusion matrix and the most confidently wrong
    # examples have something to show.
    folder = tmp_path_factory.mktemp("classifier")
    dlx("train", "model=ffn", "trainer.max_epochs=3", cwd=folder)
    return latest_run(folder)


@pytest.fixture(scope="session")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gan")
    dlx("train", "model=gan", "trainer.smoke=true", cwd=folder)
    return latest_run(folder)


@pytest.fixture(scope="session")
def classifier_test_outputs(classifier_run: Path) -> dict:
    """What `dlx eval` computes for the classifier's test split, in this process through the same function:
    the raw test images (pixels in [0, 1]), labels, the model's logits on the normalised images, metrics."""
    import torch

    from dlx.inspect.evaluate import evaluate_checkpoint

    metrics, _, evaluated = evaluate_checkpoint(classifier_run / "checkpoints" / "best.ckpt", [], "test", [], [])
    n = evaluated.samples
    with torch.inference_mode():
        logits = evaluated.model(evaluated.split.x[:n])
    return {"images": evaluated.raw.x[:n], "y": evaluated.split.y[:n], "logits": logits, "metrics": metrics,
            "model": evaluated.model}
