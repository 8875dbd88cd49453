"""The GAN's classifier-based score: its arithmetic on known distributions, and `dlx eval GAN classifier=...`
through the real CLI with checkpoints trained by dlx."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import dlx

from dlx.inspect.gan_score import scores

pytest_plugins = ["trained_runs"]


def test_the_score_is_the_number_of_classes_for_sharp_even_samples_and_one_for_a_collapse() -> None:
    classes = 10
    even = torch.eye(classes).repeat(50, 1)  # every class equally often, each sample certain
    assert scores(even)["classifier_score"] == pytest.approx(classes)
    assert scores(even)["class_entropy"] == pytest.approx(1.0) and scores(even)["top_class_fraction"] == 0.1
    collapsed = torch.zeros(500, classes)
    collapsed[:, 3] = 1  # mode collapse: one class only
    assert scores(collapsed) | {"samples": 0} == {"classifier_score": pytest.approx(1.0), "class_entropy": 0.0,
                                                  "top_class_fraction": 1.0, "samples": 0}
    unsure = torch.full((500, classes), 1 / classes)  # blurry samples the classifier cannot tell apart
    assert scores(unsure)["classifier_score"] == pytest.approx(1.0)
    half = torch.eye(classes)[torch.arange(500) % 5]  # five classes of ten
    assert scores(half)["classifier_score"] == pytest.approx(5) and scores(half)["class_entropy"] == pytest.approx(
        math.log(5) / math.log(10))


@pytest.mark.slow
def test_eval_scores_a_gan_with_a_classifier_of_the_same_data(gan_run: Path, classifier_run: Path,
                                                             tmp_path: Path) -> None:
    gan, classifier = gan_run / "checkpoints" / "best.ckpt", classifier_run / "checkpoints" / "best.ckpt"
    first = json.loads(dlx("eval", str(gan), f"classifier={classifier}", "--json", cwd=tmp_path).stdout)
    again = json.loads(dlx("eval", str(gan), f"classifier={classifier}", "--json", cwd=tmp_path).stdout)
    metrics = first["metrics"]
    assert metrics == again["metrics"]  # fixed noise: a checkpoint always gets the same score
    assert 1 <= metrics["classifier_score"] <= 10 and 0 <= metrics["class_entropy"] <= 1
    assert metrics["samples"] == 10_000 and first["classifier"] == str(classifier)
    assert "d_acc" in metrics  # the GAN's own metrics are still there

    swapped = dlx("eval", str(classifier), f"classifier={gan}", cwd=tmp_path, expect=2)
    assert "scores a GAN, but" in swapped.stderr and "Traceback" not in swapped.stderr
    not_a_classifier = dlx("eval", str(gan), f"classifier={gan}", cwd=tmp_path, expect=2)
    assert "is not a classifier checkpoint" in not_a_classifier.stderr
