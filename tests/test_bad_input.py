"""Every mistake a user can make on the command line gets one paragraph saying what was wrong and how to fix
it, exit status 2, and no Python traceback. All through the real CLI, in a fresh folder per test."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ENV, dlx, latest_run, summary_of

USER_ERROR = 2


def failing(*args: str, cwd: Path, env: dict | None = None) -> str:
    """Run dlx ARGS, expect a user error, return stderr (checked to be a message, not a traceback)."""
    result = dlx(*args, cwd=cwd, expect=USER_ERROR, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert "error:" in result.stderr, result.stderr
    return result.stderr


def no_run_folder(cwd: Path) -> bool:
    return not (cwd / "outputs").exists()


# --- train: mistakes found while composing the config, before Hydra creates a run folder --------------------

# (overrides, fragments the message must contain)
COMPOSE_ERRORS = [
    (["model=nope"], ['no model option "nope"', "Choose one of:", "cnn", "ffn", "transformer"]),
    (["model=fnn"], ['Did you mean "ffn"?']),
    (["+experiment=tutorial_fn"], ['no experiment option "tutorial_fn"', 'Did you mean "tutorial_ffn"?']),
    (["optimizer.lrr=0.1"], ['Unknown config key "optimizer.lrr"', 'Did you mean "lr"?']),
    (["trainr.max_epochs=1"], ['Unknown config key "trainr"', 'Did you mean "trainer"?']),
    (["trainer.max_epochs=abc"], ['Invalid value for "trainer.max_epochs"', "abc"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", "1 or more"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "greater than 0"]),
    (["trainer.device=gpu"], ['trainer.device="gpu" is not a device', 'Did you mean "cuda"?']),
    (["output_root=a_file/outputs"], ["Cannot create the run folder", "a_file is not a folder", "output_root"]),
    (["trainer.on_nonfinite=skipp"], ['Did you mean "skip"?']),
    (["trainer.precision=bf16"], ['trainer.precision="bf16" must be one of 32, bf16-mixed', 'Did you mean "bf16-mixed"?']),
    (["dataset=[]"], ["No dataset is chosen", "dataset=NAME"]),
    (["+model.hiden_sizes=[3]"], ['"model.hiden_sizes"', 'Did you mean "hidden_sizes"?']),
    (["model.activation=relu2"], ["model.activation='relu2'", 'Did you mean "relu"?']),
]


@pytest.mark.parametrize("overrides, fragments", COMPOSE_ERRORS, ids=[" ".join(o) for o, _ in COMPOSE_ERRORS])
def test_train_rejects_bad_override_before_any_run(workdir: Path, overrides: list[str], fragments: list[str]) -> None:
    (workdir / "a_file").write_text("not a folder")
    stderr = failing("train", *overrides, "trainer.smoke=true", cwd=workdir)
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"
    assert no_run_folder(workdir), list((workdir / "outputs").rglob("*"))


def test_hydra_full_error_shows_the_traceback(workdir: Path) -> None:
    result = dlx("train", "model=fnn", "trainer.smoke=true", cwd=workdir, expect=None, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "DlxError" in result.stderr and 'Did you mean "ffn"?' in result.stderr


def test_console_script_reports_errors_like_python_m(workdir: Path) -> None:
    script = shutil.which("dlx")
    assert script is not None, "the dlx console script is not on PATH (pip install -e .)"
    installed = subprocess.run([script, "train", "model=fnn", "trainer.smoke=true"], cwd=workdir,
                               capture_output=True, text=True, timeout=120, env=ENV, stdin=subprocess.DEVNULL)
    module = dlx("train", "model=fnn", "trainer.smoke=true", cwd=workdir, expect=None)
    assert installed.returncode == module.returncode == USER_ERROR
    assert installed.stderr == module.stderr
    assert 'Did you mean "ffn"?' in installed.stderr and "Traceback" not in installed.stderr
    assert no_run_folder(workdir)


# --- train: mistakes only the data reveals; the run folder records the failure ---------------------------------

def test_missing_mnist_files_without_download(workdir: Path) -> None:
    empty = workdir / "empty"
    empty.mkdir()
    stderr = failing("train", "dataset=mnist", f"dataset.root={empty}", "trainer.smoke=true", cwd=workdir)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in stderr
    assert str(empty.resolve()) in stderr
    assert "dataset.download=true" in stderr
    assert list(empty.iterdir()) == [], "nothing may be downloaded without dataset.download=true"
    assert not (workdir / "data").exists()
    summary = summary_of(latest_run_or_only(workdir))
    assert summary["status"] == "failed" and "t10k-labels-idx1-ubyte" in summary["error"]


def test_regression_data_with_classification_loss(workdir: Path) -> None:
    stderr = failing("train", "dataset=diabetes", "trainer.smoke=true", cwd=workdir)
    assert "regression" in stderr and "loss=mse" in stderr
    assert summary_of(latest_run_or_only(workdir))["status"] == "failed"


def latest_run_or_only(cwd: Path) -> Path:
    """The failed run's folder: outputs/latest if it was made, else the single folder that holds a summary."""
    if (cwd / "outputs" / "latest").exists():
        return latest_run(cwd)
    summaries = list((cwd / "outputs").rglob("summary.json"))
    assert len(summaries) == 1, summaries
    return summaries[0].parent


# --- eval ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a smoke run, shared by the eval tests (they only read it)."""
    folder = tmp_path_factory.mktemp("trained")
    dlx("train", "trainer.smoke=true", cwd=folder)
    path = latest_run(folder) / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return path


def test_eval_missing_checkpoint(workdir: Path) -> None:
    stderr = failing("eval", "nothere/last.ckpt", cwd=workdir)
    assert "No checkpoint file at nothere/last.ckpt" in stderr


def test_eval_truncated_checkpoint(workdir: Path, checkpoint: Path) -> None:
    truncated = workdir / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:3000])
    stderr = failing("eval", str(truncated), cwd=workdir)
    assert "truncated.ckpt is truncated or corrupt" in stderr
    assert "last.ckpt or best.ckpt" in stderr


def test_eval_file_that_is_not_a_dlx_checkpoint(workdir: Path) -> None:
    torch.save({"weight": torch.zeros(3, 4), "bias": torch.ones(3)}, workdir / "weights.pt")
    stderr = failing("eval", "weights.pt", cwd=workdir)
    assert "weights.pt is a PyTorch file but not a dlx checkpoint" in stderr


def test_eval_checkpoint_from_a_newer_format(workdir: Path, checkpoint: Path) -> None:
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["format_version"] = 999
    torch.save(payload, workdir / "future.ckpt")
    stderr = failing("eval", "future.ckpt", cwd=workdir)
    assert "newer dlx" in stderr and "999" in stderr and "Upgrade dlx" in stderr


def test_eval_mistyped_override(workdir: Path, checkpoint: Path) -> None:
    stderr = failing("eval", str(checkpoint), "trainer.devce=cpu", cwd=workdir)
    assert 'Unknown config key "trainer.devce"' in stderr and 'Did you mean "device"?' in stderr
    assert "+trainer.devce" not in stderr  # eval changes existing keys only, so it does not suggest adding one


def test_eval_override_without_equals(workdir: Path, checkpoint: Path) -> None:
    stderr = failing("eval", str(checkpoint), "trainer.device", cwd=workdir)
    assert '"trainer.device" is not an eval override' in stderr and "key=value" in stderr
    stderr = failing("eval", str(checkpoint), "+trainer.extra=1", cwd=workdir)
    assert '"+trainer.extra=1" is not an eval override' in stderr


@pytest.mark.parametrize("split_args", [["--split", "nope"], ["split=nope"]])
def test_eval_unknown_split(workdir: Path, checkpoint: Path, split_args: list[str]) -> None:
    stderr = failing("eval", str(checkpoint), *split_args, cwd=workdir)
    assert 'split="nope" is not a split' in stderr
    assert "train, val, test" in stderr


def test_eval_checkpoint_of_another_model_shape(workdir: Path, checkpoint: Path) -> None:
    """Weights that do not fit the model the stored config builds: one paragraph naming the mismatch."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["model"]["hidden_sizes"] = [7]  # the stored weights are of a wider network
    torch.save(payload, workdir / "other.ckpt")
    stderr = failing("eval", "other.ckpt", cwd=workdir)
    assert "do not fit the model" in stderr and "size mismatch" in stderr


def test_mistyped_monitor_metric_lists_what_is_measured(workdir: Path) -> None:
    stderr = failing("train", "trainer.monitor.metric=val/accuracy", "trainer.smoke=true", cwd=workdir)
    assert 'trainer.monitor.metric="val/accuracy" is not measured' in stderr and 'Did you mean "val/acc"?' in stderr


@pytest.mark.parametrize("damage", ["no_model", "target_not_a_string"])
def test_eval_altered_checkpoint_structure(workdir: Path, checkpoint: Path, damage: str) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    if damage == "no_model":
        del payload["model"]
    else:
        payload["config"]["model"]["_target_"] = ["os", "system"]
    torch.save(payload, workdir / "altered.ckpt")
    stderr = failing("eval", "altered.ckpt", cwd=workdir)
    assert ("damaged or was altered" in stderr) if damage == "no_model" else ("Refused" in stderr)

