"""After training, through the real CLI: eval's class report, plot, predict, sample, ls/cat/cp, completion.

Images are written with Pillow and read back with Pillow; curves and confusion matrices are real matplotlib
PNGs; predictions are compared with what `dlx eval`'s own rebuild of the model computes on the same images."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import dlx
from PIL import Image

from dlx.config.schema import config_dir

pytest_plugins = ["trained_runs"]

USER_ERROR = 2


def failing(*args: str, cwd: Path, env: dict | None = None) -> str:
    """stderr of a dlx command that must fail as a user error: exit 2, one paragraph, no traceback."""
    result = dlx(*args, cwd=cwd, expect=USER_ERROR, env=env)
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    return result.stderr


def has_colour(png: Path, rgb: tuple[int, int, int], tolerance: int = 10, at_least: int = 20) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum()) >= at_least


MATPLOTLIB_C0, MATPLOTLIB_C1 = (31, 119, 180), (255, 127, 14)  # the first two colours of matplotlib's cycle


@pytest.mark.slow
def test_eval_reports_precision_recall_f1_and_confusion_matrix(classifier_run: Path, classifier_test_outputs: dict,
                                                                tmp_path: Path) -> None:
    from sklearn.metrics import precision_recall_fscore_support

    checkpoint = classifier_run / "checkpoints" / "best.ckpt"
    result = dlx("eval", str(checkpoint), "--json", "--worst", "6", "--out-dir", str(tmp_path / "figures"),
                 cwd=tmp_path)
    report = json.loads(result.stdout)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == report["samples"] == 359
    assert matrix.trace() / matrix.sum() == pytest.approx(report["metrics"]["acc"], abs=1e-9)
    # The same numbers as scikit-learn on the predictions of eval's model, computed here.
    predicted = classifier_test_outputs["logits"].argmax(dim=1).numpy()
    precision, recall, f1, support = precision_recall_fscore_support(classifier_test_outputs["y"].numpy(), predicted,
                                                                     zero_division=0)
    assert [row["class"] for row in report["per_class"]] == [str(c) for c in range(10)]
    assert [row["precision"] for row in report["per_class"]] == pytest.approx(precision.tolist())
    assert [row["recall"] for row in report["per_class"]] == pytest.approx(recall.tolist())
    assert [row["f1"] for row in report["per_class"]] == pytest.approx(f1.tolist())
    assert [row["support"] for row in report["per_class"]] == support.tolist()

    worst = report["worst"]
    assert len(worst) == 6 and all(row["true"] != row["predicted"] for row in worst)
    assert [row["probability"] for row in worst] == sorted((row["probability"] for row in worst), reverse=True)
    assert all(str(predicted[row["index"]]) == row["predicted"] for row in worst)
    for name in ("confusion_matrix", "worst"):
        path = Path(report["files"][name])
        assert path.parent == tmp_path / "figures" and path.name == f"best_test_{name}.png"
        assert Image.open(path).size[0] > 300

    # The tables, and the PNG in the run folder by default.
    result = dlx("eval", str(checkpoint), "split=val", cwd=tmp_path)
    for text in ("per class", "macro avg", "confusion matrix (rows: true class", "precision", "recall", "f1"):
        assert text in result.stdout
    assert (classifier_run / "eval" / "best_val_confusion_matrix.png").is_file()
    assert "most confidently wrong" not in result.stdout


def write_digit_images(images: torch.Tensor, folder: Path, count: int, scale: int = 1, mode: str = "L",
                       suffix: str = ".png") -> list[Path]:
    """Test images (N, 1, 8, 8) in [0, 1] as 8-bit image files, enlarged `scale` times (each pixel a block)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        pixels = (images[index, 0].numpy() * 255).round().astype(np.uint8)
        image = Image.fromarray(pixels).resize((8 * scale, 8 * scale), Image.Resampling.NEAREST).convert(mode)
        paths.append(folder / f"test{index:03d}{suffix}")
        image.save(paths[-1])
    return paths


def test_predict_gives_the_classes_eval_s_model_gives(classifier_run: Path, classifier_test_outputs: dict,
                                                       tmp_path: Path) -> None:
    images = classifier_test_outputs["images"]
    small = write_digit_images(images, tmp_path / "small", 12)
    large = write_digit_images(images, tmp_path / "large", 4, scale=4, mode="RGB")  # resized and greyed by predict
    photo = write_digit_images(images, tmp_path, 1, scale=8, mode="RGB", suffix=".jpg")
    result = dlx("predict", str(classifier_run / "checkpoints" / "best.ckpt"), str(tmp_path / "small"),
                 *map(str, large), str(photo[0]), "--top-k", "3", "--json", cwd=tmp_path)
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["file"] for p in predictions] == [str(p) for p in small + large + photo]

    expected = torch.softmax(classifier_test_outputs["logits"][:12], dim=1)
    for index, prediction in enumerate(predictions[:12]):
        assert prediction["class"] == str(int(expected[index].argmax()))
        # Only the 8-bit rounding of the files separates these inputs from eval's.
        assert prediction["probability"] == pytest.approx(float(expected[index].max()), abs=0.01)
        top = prediction["top_k"]
        assert len(top) == 3 and top[0]["class"] == prediction["class"]
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    # 32x32 RGB copies shrink back to exactly the 8x8 grey pixels (each output pixel the mean of its block).
    for small_one, large_one in zip(predictions[:4], predictions[12:16]):
        assert large_one["top_k"] == small_one["top_k"]
    assert predictions[16]["class"] in [str(c) for c in range(10)]


@pytest.mark.slow
def test_predict_refuses_what_it_cannot_classify(classifier_run: Path, gan_run: Path, tmp_path: Path) -> None:
    checkpoint = classifier_run / "checkpoints" / "best.ckpt"
    (tmp_path / "notes.png").write_text("not an image")
    assert "is not an image file" in failing("predict", str(checkpoint), str(tmp_path / "notes.png"), cwd=tmp_path)
    stderr = failing("predict", str(gan_run / "checkpoints" / "best.ckpt"), str(tmp_path), cwd=tmp_path)
    assert "holds a GAN" in stderr and "dlx sample" in stderr

    old = torch.load(checkpoint, weights_only=True)
    del old["data"]  # as written before checkpoints recorded their data
    torch.save(old, tmp_path / "old.ckpt")
    write_digit_images(torch.zeros(1, 1, 8, 8), tmp_path / "images", 1)
    stderr = failing("predict", str(tmp_path / "old.ckpt"), str(tmp_path / "images"), cwd=tmp_path)
    assert "older dlx" in stderr and "dlx eval` still works" in stderr


def test_sample_draws_new_images_from_a_gan(gan_run: Path, classifier_run: Path, tmp_path: Path) -> None:
    result = dlx("sample", str(gan_run / "checkpoints" / "best.ckpt"), "-n", "16", "--seed", "1",
                 "--out", str(tmp_path / "grid.png"), cwd=tmp_path)
    assert "16 samples" in result.stdout
    # torchvision's grid: 8 per row, 8x8 digits drawn 8 times larger, 2 pixels of padding.
    assert Image.open(tmp_path / "grid.png").size == (8 * 66 + 2, 2 * 66 + 2)
    stderr = failing("sample", str(classifier_run / "checkpoints" / "best.ckpt"), cwd=tmp_path)
    assert "holds a FeedForward, neither a GAN nor a language model" in stderr and "dlx predict" in stderr


def test_plot_overlays_runs_and_a_sweep_folder_means_its_jobs(classifier_run: Path, gan_run: Path,
                                                               tmp_path: Path) -> None:
    from dlx.results.plot import find_curves

    result = dlx("plot", str(classifier_run), cwd=tmp_path)
    assert result.stdout.startswith(f"{classifier_run / 'curves.png'}: loss, acc of 1 run(s)")
    # One run: training in the first colour, validation in the second.
    assert has_colour(classifier_run / "curves.png", MATPLOTLIB_C0)
    assert has_colour(classifier_run / "curves.png", MATPLOTLIB_C1)

    sweep = tmp_path / "sweep"
    for number, run in enumerate((classifier_run, gan_run)):
        (sweep / str(number)).mkdir(parents=True)
        for name in ("metrics.jsonl", "summary.json"):
            shutil.copy(run / name, sweep / str(number) / name)
    result = dlx("plot", str(sweep), "--metric", "loss", "--metric", "val/acc", "--out", str(tmp_path / "c.png"),
                 cwd=tmp_path)
    assert "loss, val/acc of 2 run(s)" in result.stdout
    assert has_colour(tmp_path / "c.png", MATPLOTLIB_C0) and has_colour(tmp_path / "c.png", MATPLOTLIB_C1)
    labels = [curves.label for curves in find_curves([sweep])]
    assert labels == ["model=ffn trainer.max_epochs=3", "model=gan trainer.smoke=true"]

    stderr = failing("plot", str(sweep), "--metric", "val/acc_", cwd=tmp_path)
    assert 'Did you mean "val/acc"?' in stderr
    assert "does not exist" in failing("plot", str(tmp_path / "nothere"), cwd=tmp_path)
    assert "Cannot write" in failing("plot", str(sweep), "--out", str(tmp_path / "c.png" / "x.png"), cwd=tmp_path)


def test_a_missing_optional_library_names_its_extra(classifier_run: Path, tmp_path: Path) -> None:
    # A folder first on the path whose matplotlib cannot be imported: as on a machine without it.
    (tmp_path / "blocked" / "matplotlib").mkdir(parents=True)
    (tmp_path / "blocked" / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {"PYTHONPATH": str(tmp_path / "blocked")}
    stderr = failing("plot", str(classifier_run), "--out", str(tmp_path / "c.png"), cwd=tmp_path, env=env)
    assert 'dlx plot needs matplotlib, which is not installed. Install it with: pip install "dlx[plot]"' in stderr


def test_ls_cat_cp_find_and_copy_the_built_in_configs(tmp_path: Path) -> None:
    listed = json.loads(dlx("ls", "--json", cwd=tmp_path).stdout)
    shipped = {(p.parent.relative_to(config_dir()).as_posix(), p.stem) for p in config_dir().rglob("*.yaml")
               if p.parent != config_dir() and p.parent.name != "help"}
    plugins = {("hydra/launcher", name) for name in ("basic", "joblib", "submitit_local", "submitit_slurm")}
    plugins |= {("hydra/sweeper", "basic")}  # options Hydra and its plugins define in code
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper"):  # an old install's; dlx no longer needs it
        plugins.add(("hydra/sweeper", "optuna"))
    assert {(o["group"], o["option"]) for o in listed} == shipped | plugins
    assert all(o["path"] is None for o in listed if (o["group"], o["option"]) in plugins)
    assert all(o["description"] and "dlx train" not in o["description"] for o in listed)
    assert {(o["group"], o["option"]) for o in listed if o["default"]} >= {("model", "ffn"), ("dataset", "digits")}
    assert "Convolutional network." in dlx("ls", "model", cwd=tmp_path).stdout

    assert dlx("cat", "model/cnn", cwd=tmp_path).stdout == (config_dir() / "model" / "cnn.yaml").read_text()
    composed = yaml.safe_load(dlx("cat", "model=cnn", "optimizer.lr=0.5", cwd=tmp_path).stdout)
    assert composed["model"]["_target_"] == "dlx.models.cnn.ConvNet" and composed["optimizer"]["lr"] == 0.5
    assert "hydra" not in composed
    assert 'Did you mean "model/cnn"?' in failing("cat", "model/cnm", cwd=tmp_path)

    result = dlx("cp", "model/cnn", "my_conf/model/my_cnn.yaml", cwd=tmp_path)
    assert "Use it with: dlx train --config-dir=my_conf model=my_cnn" in result.stdout
    assert (tmp_path / "my_conf/model/my_cnn.yaml").read_text() == (config_dir() / "model" / "cnn.yaml").read_text()
    (tmp_path / "my_conf/model/my_cnn.yaml").write_text("# mine\n")
    assert "--force" in failing("cp", "model/cnn", "my_conf/model/my_cnn.yaml", cwd=tmp_path)
    assert (tmp_path / "my_conf/model/my_cnn.yaml").read_text() == "# mine\n"
    dlx("cp", "model/cnn", "my_conf/model/my_cnn.yaml", "--force", cwd=tmp_path)
    into_folder = dlx("cp", "model/gan", "new_conf/model/", cwd=tmp_path)  # a folder not made yet
    assert "new_conf/model/gan.yaml" in into_folder.stdout and (tmp_path / "new_conf/model/gan.yaml").exists()
    assert "defined in code by a Hydra plugin" in failing("cp", "hydra/launcher/joblib", "x.yaml", cwd=tmp_path)
    (tmp_path / "my_conf/model/my_cnn.yaml").write_text(
        (tmp_path / "my_conf/model/my_cnn.yaml").read_text().replace("channels: [16, 32]", "channels: [4, 8]"))
    composed = dlx("train", "--config-dir=my_conf", "model=my_cnn", "--cfg", "job", cwd=tmp_path).stdout
    assert yaml.safe_load(composed)["model"]["channels"] == [4, 8]


def test_shell_completion_installs_and_completes_commands(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    result = dlx("--install-completion", "bash", cwd=tmp_path, env=env)
    assert "bash completion installed" in result.stdout
    assert "_DLX_COMPLETE=complete_bash" in (tmp_path / ".bash_completions" / "dlx.sh").read_text()
    env |= {"_DLX_COMPLETE": "complete_bash", "COMP_WORDS": "dlx ex", "COMP_CWORD": "1"}
    assert dlx(cwd=tmp_path, env=env).stdout.split() == ["export"]
    env["COMP_WORDS"] = "dlx "
    assert {"train", "eval", "plot", "predict", "sample", "export", "report", "ls", "cat", "cp"} <= set(
        dlx(cwd=tmp_path, env=env).stdout.split())


def test_train_help_lists_every_config_group_with_its_options(tmp_path: Path) -> None:
    help_text = dlx("train", "--help", cwd=tmp_path).stdout
    for group in sorted(p for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra"):
        options = ", ".join(sorted(p.stem for p in group.glob("*.yaml")))
        assert f"\n{group.name}: {options}\n" in help_text, group.name
