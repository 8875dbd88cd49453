"""`dlx report`: one self-contained HTML page, rendered by a real headless browser (Debian's chromium)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import dlx
from PIL import Image

pytest_plugins = ["trained_runs"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MATPLOTLIB_C0, MATPLOTLIB_C1 = (31, 119, 180), (255, 127, 14)  # training and validation curves of one run


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium, headless, offline and sandbox-free (tests may run as root), on a file:// page."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def assert_self_contained(page: str) -> None:
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)


def test_report_is_one_self_contained_page_with_metrics_curves_and_confusion_matrix(classifier_run: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = dlx("report", str(classifier_run), "--out", str(out), cwd=tmp_path)
    assert str(out) in result.stdout
    page = out.read_text()
    assert_self_contained(page)
    assert page.count('src="data:image/png;base64,') == 3  # curves, confusion matrix, worst examples
    summary_acc = f"{json.loads((classifier_run / 'summary.json').read_text())['test']['acc']:.4f}"
    for text in ("Final metrics", "test/acc (best checkpoint)", summary_acc, "Curves", "confusion matrix",
                 "precision", "_target_: dlx.models.ffn.FeedForward", "dlx train model=ffn trainer.max_epochs=3"):
        assert text in page, text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_a_headless_browser_with_its_curves(classifier_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    dlx("report", str(classifier_run), "--out", str(out), cwd=tmp_path)

    dom = chromium(out, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert dom.stdout.count("<img") == 3 and "test/acc (best checkpoint)" in dom.stdout

    shot = tmp_path / "page.png"
    rendered = chromium(out, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,1400",
                        "--hide-scrollbars")
    assert rendered.returncode == 0 and shot.is_file(), rendered.stderr
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1400, 1200)

    def rows_with(rgb: tuple[int, int, int]) -> np.ndarray:
        return np.flatnonzero((np.abs(pixels - np.array(rgb)).max(axis=2) <= 12).sum(axis=1) >= 2)

    # The curves are drawn below the metrics table, in the first screen: both lines' colours are there, in
    # one band of rows (the plot's height) that starts below the table.
    train, val = rows_with(MATPLOTLIB_C0), rows_with(MATPLOTLIB_C1)
    assert len(train) >= 10 and len(val) >= 10
    top, bottom = min(train.min(), val.min()), max(train.max(), val.max())
    assert 300 < top and bottom - top < 400, (top, bottom)


def test_report_of_a_gan_shows_its_samples(gan_run: Path, tmp_path: Path) -> None:
    dlx("report", str(gan_run), cwd=tmp_path)
    page = (gan_run / "report.html").read_text()
    assert_self_contained(page)
    assert "<h2>Samples (step 0000002)</h2>" in page and page.count('src="data:image/png;base64,') == 2
    assert "is not a run folder" in dlx("report", str(tmp_path), cwd=tmp_path, expect=2).stderr
