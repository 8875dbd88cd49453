"""`dlx export`: the exported ONNX file runs in onnxruntime, and the TorchScript file in torch.jit.load, on real
digits test images, giving what `dlx eval`'s model gives on them."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MODEL_DATA, dlx

from dlx.config.schema import config_dir

pytest_plugins = ["trained_runs"]

USER_ERROR = 2


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_as_the_checkpoint_does(classifier_run: Path, classifier_test_outputs: dict,
                                                                 tmp_path: Path) -> None:
    import onnxruntime

    out = tmp_path / "digits.onnx"
    result = dlx("export", str(classifier_run / "checkpoints" / "best.ckpt"), "--format", "onnx", "--out", str(out),
                 cwd=tmp_path)
    assert "Checked: run by onnxruntime, the file gives the checkpoint's outputs" in result.stdout

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    [pixels] = session.get_inputs()
    assert pixels.name == "pixels" and pixels.shape == ["batch", 1, 8, 8]
    # Raw pixels in [0, 1], as image files give them: the normalisation is inside the exported graph.
    images = classifier_test_outputs["images"].numpy()
    logits = session.run(None, {"pixels": images})[0]
    expected = classifier_test_outputs["logits"].numpy()  # eval's model on the normalised images
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    labels = classifier_test_outputs["y"].numpy()
    assert abs((logits.argmax(axis=1) == labels).mean() - classifier_test_outputs["metrics"]["acc"]) <= 1 / len(labels)
    np.testing.assert_allclose(session.run(None, {"pixels": images[:1]})[0], expected[:1], rtol=1e-4, atol=1e-4)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["dlx.class_names"]) == [str(c) for c in range(10)]
    assert metadata["dlx.input"].startswith("pixels in [0, 1]")


def test_torchscript_export_reloads_and_gives_the_checkpoint_s_outputs(classifier_run: Path,
                                                                       classifier_test_outputs: dict,
                                                                       tmp_path: Path) -> None:
    checkpoint = classifier_run / "checkpoints" / "best.ckpt"
    result = dlx("export", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "digits.pt"),
                 cwd=tmp_path)
    assert "Checked: run by torch.jit.load" in result.stdout
    extra = {"dlx.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PyTorch deprecates TorchScript
        loaded = torch.jit.load(str(tmp_path / "digits.pt"), _extra_files=extra)
    with torch.inference_mode():
        logits = loaded(classifier_test_outputs["images"])
    torch.testing.assert_close(logits, classifier_test_outputs["logits"], rtol=1e-4, atol=1e-4)
    assert json.loads(extra["dlx.json"])["dlx.checkpoint"] == str(checkpoint)


@pytest.mark.slow
def test_export_refuses_unknown_formats_unwritable_files_and_missing_libraries(classifier_run: Path,
                                                                               tmp_path: Path) -> None:
    checkpoint = str(classifier_run / "checkpoints" / "best.ckpt")
    result = dlx("export", checkpoint, "--format", "onnxx", cwd=tmp_path, expect=USER_ERROR)
    assert 'error: --format onnxx is not an export format. Did you mean "onnx"?' in result.stderr
    (tmp_path / "file").write_text("")
    result = dlx("export", checkpoint, "--out", str(tmp_path / "file" / "model.onnx"), cwd=tmp_path, expect=USER_ERROR)
    assert "Cannot write" in result.stderr and "Traceback" not in result.stderr

    (tmp_path / "blocked" / "onnxruntime").mkdir(parents=True)
    (tmp_path / "blocked" / "onnxruntime" / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    result = dlx("export", checkpoint, cwd=tmp_path, expect=USER_ERROR, env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert 'needs onnxruntime, which is not installed. Install it with: pip install "dlx[export]"' in result.stderr
    assert not list(classifier_run.joinpath("checkpoints").glob("*.onnx*"))


NOT_EXPORTED = {"seq2seq_lstm": "packs each source by its length"}  # the reason the message gives


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(p.stem for p in (config_dir() / "model").glob("*.yaml")))
def test_every_model_family_exports_to_both_formats(model: str, tmp_path: Path) -> None:
    dlx("train", f"model={model}", *MODEL_DATA.get(model, []), "trainer.smoke=true", cwd=tmp_path)
    checkpoint = next((tmp_path / "outputs").glob("*/*/checkpoints/best.ckpt"))
    for fmt in ("onnx", "torchscript"):
        result = dlx("export", str(checkpoint), "--format", fmt, cwd=tmp_path, expect=None)
        if model in NOT_EXPORTED:
            assert result.returncode == USER_ERROR and NOT_EXPORTED[model] in result.stderr, result.stderr
        else:
            assert result.returncode == 0 and "Checked:" in result.stdout, result.stderr
