"""dlx.train.resume.find_checkpoint: which checkpoint trainer.resume continues from, with real checkpoint files."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dlx.errors import DlxError
from dlx.store.checkpoint import FORMAT_VERSION, save_checkpoint
from dlx.train.resume import find_checkpoint


def write_checkpoint(run_dir: Path, name: str, step: int) -> Path:
    """A minimal checkpoint that load_checkpoint accepts: the keys it requires, of their types."""
    path = run_dir / "checkpoints" / name
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "config": {"trainer": {"max_steps": 100}},
                           "model": {"weight": torch.full((4, 3), float(step))},
                           "state": {"step": step, "epoch": 0, "batch_in_epoch": step}, "rng": {}})
    return path


def truncate(path: Path) -> None:
    """A file cut short, as a crash or a full disk leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def warnings_of_dlx(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """dlx's warnings, caught even when dlx's logger does not propagate (after a run set up its logging)."""
    dlx_logger = logging.getLogger("dlx")
    dlx_logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    dlx_logger.removeHandler(caplog.handler)


def test_auto_picks_last_when_it_is_newest(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "best.ckpt", step=20)
    write_checkpoint(tmp_path, "previous.ckpt", step=40)
    last = write_checkpoint(tmp_path, "last.ckpt", step=50)
    path, checkpoint = find_checkpoint("auto", tmp_path)
    assert path == last
    assert checkpoint["state"]["step"] == 50
    assert torch.equal(checkpoint["model"]["weight"], torch.full((4, 3), 50.0))  # the file's contents


def test_auto_picks_the_highest_step_whatever_the_name(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "last.ckpt", step=30)
    write_checkpoint(tmp_path, "previous.ckpt", step=20)
    best = write_checkpoint(tmp_path, "best.ckpt", step=35)
    path, checkpoint = find_checkpoint("auto", tmp_path)
    assert (path, checkpoint["state"]["step"]) == (best, 35)


def test_auto_prefers_last_on_a_tie(tmp_path: Path) -> None:
    # At a validation that improved, last.ckpt and best.ckpt hold the same step.
    write_checkpoint(tmp_path, "best.ckpt", step=30)
    last = write_checkpoint(tmp_path, "last.ckpt", step=30)
    assert find_checkpoint("auto", tmp_path)[0] == last


def test_auto_skips_a_corrupt_last_for_previous(tmp_path: Path, warnings_of_dlx: pytest.LogCaptureFixture) -> None:
    write_checkpoint(tmp_path, "best.ckpt", step=10)
    previous = write_checkpoint(tmp_path, "previous.ckpt", step=40)
    last = write_checkpoint(tmp_path, "last.ckpt", step=50)
    truncate(last)
    path, checkpoint = find_checkpoint("auto", tmp_path)
    assert (path, checkpoint["state"]["step"]) == (previous, 40)
    assert any(f"skipping {last}" in message and "truncated or corrupt" in message
               for message in warnings_of_dlx.messages)


def test_auto_with_only_corrupt_checkpoints_refuses_unless_told_to_start_over(tmp_path: Path) -> None:
    # Starting from scratch in silence would throw the run away (and exit 0 as if nothing happened).
    truncate(write_checkpoint(tmp_path, "last.ckpt", step=50))
    with pytest.raises(DlxError, match="no usable checkpoint in .* truncated or corrupt.* trainer.overwrite=true"):
        find_checkpoint("auto", tmp_path)
    assert find_checkpoint("auto", tmp_path, start_over=True) is None


def test_auto_never_follows_a_link_in_the_checkpoints_folder(tmp_path: Path) -> None:
    elsewhere = write_checkpoint(tmp_path / "other_run", "last.ckpt", step=99)
    previous = write_checkpoint(tmp_path, "previous.ckpt", step=5)
    (tmp_path / "checkpoints" / "last.ckpt").symlink_to(elsewhere)
    assert find_checkpoint("auto", tmp_path)[0] == previous


def test_auto_skips_a_file_that_is_not_a_dlx_checkpoint(tmp_path: Path) -> None:
    previous = write_checkpoint(tmp_path, "previous.ckpt", step=5)
    torch.save({"state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert find_checkpoint("auto", tmp_path)[0] == previous


def test_auto_without_checkpoints_is_none(tmp_path: Path, warnings_of_dlx: pytest.LogCaptureFixture) -> None:
    assert find_checkpoint("auto", tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "other.ckpt").write_bytes(b"")  # only the three names count
    assert find_checkpoint("auto", tmp_path) is None
    assert any("no checkpoint in" in message and "starts from scratch" in message
               for message in warnings_of_dlx.messages)


def test_an_explicit_path_is_loaded_whatever_is_newer(tmp_path: Path) -> None:
    best = write_checkpoint(tmp_path, "best.ckpt", step=10)
    write_checkpoint(tmp_path, "last.ckpt", step=50)
    path, checkpoint = find_checkpoint(str(best), tmp_path)
    assert (path, checkpoint["state"]["step"]) == (best, 10)


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "last.ckpt", step=50)
    missing = tmp_path / "checkpoints" / "nope.ckpt"
    with pytest.raises(DlxError, match=f"No checkpoint file at {missing}"):
        find_checkpoint(str(missing), tmp_path)


def test_an_explicit_corrupt_path_is_an_error_not_skipped(tmp_path: Path) -> None:
    last = write_checkpoint(tmp_path, "last.ckpt", step=50)
    write_checkpoint(tmp_path, "previous.ckpt", step=40)
    truncate(last)
    with pytest.raises(DlxError, match="is truncated or corrupt"):
        find_checkpoint(str(last), tmp_path)
