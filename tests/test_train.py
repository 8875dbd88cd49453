"""End to end through the real CLI: every model family trains, learns, checkpoints and evaluates."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import MODEL_DATA, dlx, latest_run, summary_of

from dlx.config.schema import config_dir
from dlx.store.metrics import read_metrics

MODELS = sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))


def test_every_shipped_model_is_covered() -> None:
    assert set(MODELS) == {"perceptron", "ffn", "cnn", "rnn", "lstm", "gru", "transformer", "gan", "gpt", "lstm_lm",
                           "gru_lm", "seq2seq", "seq2seq_lstm"}


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_and_eval_reproduces_its_test_numbers(model: str, workdir: Path) -> None:
    dlx("train", f"model={model}", *MODEL_DATA.get(model, []), "trainer.max_epochs=2", cwd=workdir)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["status"] == "completed"
    assert summary["choices"]["model"] == model
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()

    result = dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir)
    evaluated = json.loads(result.stdout)
    assert evaluated["split"] == "test"
    assert evaluated["metrics"] == summary["test"]  # exactly, not approximately
    if model == "gan":
        assert sorted(p.name for p in (run / "samples").glob("*.png"))  # a grid at each evaluation


def test_default_run_learns_digits(workdir: Path) -> None:
    result = dlx("train", cwd=workdir)
    run = latest_run(workdir)
    assert f"Run folder: {run}" in result.stdout.replace(str(workdir.resolve()), str(workdir.resolve()))
    summary = summary_of(run)
    assert summary["choices"] == {"dataset": "digits", "optimizer": "sgd", "loss": "cross_entropy",
                                  "scheduler": "none", "trainer": "default", "model": "ffn"}
    assert summary["test"]["acc"] >= 0.90
    assert summary["monitor"] == {"metric": "val/acc", "mode": "max"}
    assert summary["dlx_version"] and summary["torch_version"] == str(torch.__version__)

    rows = read_metrics(run / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert {"step", "epoch", "loss", "lr", "samples_per_sec", "elapsed"} <= set(train_rows[0])
    assert len(val_rows) == 10  # one validation per epoch
    assert max(r["acc"] for r in val_rows) == summary["best"]["value"]
    assert [r["split"] for r in rows][-1] == "test"
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    assert "input_shape:\n  - 1\n  - 8\n  - 8" in (run / "config.yaml").read_text()


def test_cnn_learns_digits(workdir: Path) -> None:
    dlx("train", "model=cnn", cwd=workdir)
    assert summary_of(latest_run(workdir))["test"]["acc"] >= 0.95


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(workdir: Path) -> None:
    def metrics_of_run() -> list[dict]:
        dlx("train", "model=cnn", "trainer.max_epochs=2", "model.dropout=0.2", "model.hidden_sizes=[32]",
            cwd=workdir)
        rows = read_metrics(latest_run(workdir) / "metrics.jsonl")
        return [{k: v for k, v in row.items() if k not in ("samples_per_sec", "elapsed")} for row in rows]

    first, second = metrics_of_run(), metrics_of_run()
    assert first == second
    dlx("train", "model=cnn", "trainer.max_epochs=2", "model.dropout=0.2", "model.hidden_sizes=[32]",
        "trainer.seed=1", cwd=workdir)
    rows = read_metrics(latest_run(workdir) / "metrics.jsonl")
    assert [r["loss"] for r in rows] != [r["loss"] for r in first]


@pytest.mark.slow
def test_bf16_mixed_precision_learns_and_eval_reproduces_it(workdir: Path) -> None:
    dlx("train", "model=cnn", "trainer.precision=bf16-mixed", "trainer.max_epochs=3", cwd=workdir)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["test"]["acc"] >= 0.9
    evaluated = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir).stdout)
    assert evaluated["metrics"] == summary["test"]  # evaluated under the same autocast as in training


def test_regression_with_mse(workdir: Path) -> None:
    dlx("train", "dataset=diabetes", "loss=mse", "model.hidden_sizes=[32]", "trainer.max_epochs=30",
        "optimizer.lr=0.01", cwd=workdir)
    summary = summary_of(latest_run(workdir))
    assert summary["monitor"] == {"metric": "val/loss", "mode": "min"}
    assert summary["test"]["loss"] < 0.8  # targets are standardised: 1.0 is predicting the mean


@pytest.mark.parametrize("loss", ["nll", "bce", "mse"])
def test_tutorial_losses_train_classifiers(loss: str, workdir: Path) -> None:
    dlx("train", f"loss={loss}", "optimizer=adam", "trainer.max_epochs=5", cwd=workdir)
    assert summary_of(latest_run(workdir))["test"]["acc"] >= 0.85


def test_smoke_mode_runs_two_batches_of_everything(workdir: Path) -> None:
    dlx("train", "model=cnn", "trainer.smoke=true", cwd=workdir)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["steps"] == 2
    result = dlx("eval", str(run / "checkpoints" / "last.ckpt"), "--json", "split=val", cwd=workdir)
    assert json.loads(result.stdout)["samples"] == 143  # two batches of 1,000, capped by the split's size


def test_max_steps_eval_every_and_schedulers(workdir: Path) -> None:
    dlx("train", "trainer.max_steps=30", "trainer.eval_every=10", "trainer.log_every=5", "scheduler=cosine",
        cwd=workdir)
    rows = read_metrics(latest_run(workdir) / "metrics.jsonl")
    assert [r["step"] for r in rows if r["split"] == "val"] == [10, 20, 30]
    train_lrs = [r["lr"] for r in rows if r["split"] == "train"]
    assert train_lrs[0] > train_lrs[-1] and train_lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_early_stopping_after_patience_validations_without_improvement(workdir: Path) -> None:
    dlx("train", "trainer.patience=2", "trainer.max_epochs=200", cwd=workdir)
    summary = summary_of(latest_run(workdir))
    assert summary["stopped_early"] and summary["steps"] < 200 * 21
    val = [r["acc"] for r in read_metrics(latest_run(workdir) / "metrics.jsonl") if r["split"] == "val"]
    assert max(val[-2:]) <= max(val[:-2]) == summary["best"]["value"]  # the last two did not improve


def test_a_last_batch_of_one_sample_is_dropped_for_batch_norm(workdir: Path) -> None:
    # 1,295 training digits = 2 * 647 + 1: a last batch of one sample would break BatchNorm1d.
    dlx("train", "model.batch_norm=true", "trainer.batch_size=2", "trainer.max_epochs=1", cwd=workdir)
    assert summary_of(latest_run(workdir))["steps"] == 647


def job_summaries(workdir: Path) -> list[dict]:
    """The summary.json of each job of the sweeps under outputs/ (not the sweeps' own tables)."""
    summaries = [json.loads(p.read_text()) for p in (workdir / "outputs" / "sweeps").rglob("summary.json")]
    return [summary for summary in summaries if summary.get("kind") != "sweep"]


@pytest.mark.slow
def test_glob_sweeps_are_expanded_as_hydra_does(workdir: Path) -> None:
    # g* also matches the language models gpt and gru_lm, which need text: exclude takes them out again.
    dlx("train", "-m", "model=glob(g*,exclude=[gpt,*_lm])", "trainer.smoke=true", cwd=workdir)
    summaries = job_summaries(workdir)
    assert sorted(s["choices"]["model"] for s in summaries) == ["gan", "gru"]


def test_cfg_job_prints_config_without_training(workdir: Path) -> None:
    result = dlx("train", "--cfg", "job", "model=lstm", "optimizer.lr=0.005", cwd=workdir)
    assert "_target_: dlx.models.rnn.RecurrentNet" in result.stdout
    assert "lr: 0.005" in result.stdout
    assert not (workdir / "outputs").exists()


def test_help_lists_config_groups_and_options(workdir: Path) -> None:
    result = dlx("train", "--help", cwd=workdir)
    for group, option in [("model", "transformer"), ("dataset", "fashion_mnist"), ("optimizer", "adagrad"),
                          ("loss", "bce"), ("scheduler", "onecycle"), ("experiment", "tutorial_ffn")]:
        assert group in result.stdout and option in result.stdout
    assert not (workdir / "outputs").exists()


def test_overrides_of_every_form(workdir: Path) -> None:
    result = dlx("train", "--cfg", "job", "model=cnn", "model.channels=[8]", "+dataset.note=hello", "~scheduler",
                 "++trainer.seed=3", cwd=workdir)
    assert "channels:\n  - 8" in result.stdout  # group=option, key=value
    assert "note: hello" in result.stdout  # +key=value adds a key
    assert "scheduler: null" in result.stdout  # ~group removes a choice
    assert "seed: 3" in result.stdout  # ++key=value sets or adds
    # An added key that the dataset's loader does not take is caught before training starts.
    result = dlx("train", "+dataset.note=hello", cwd=workdir, expect=2)
    assert 'Unknown key "dataset.note"' in result.stderr
    assert not (workdir / "outputs").exists()


def test_experiment_tutorial_ffn_composes_the_tutorial_setup(workdir: Path) -> None:
    result = dlx("train", "--cfg", "job", "+experiment=tutorial_ffn", cwd=workdir)
    for line in ["_target_: dlx.data.idx.load_mnist", "batch_size: 100", "max_steps: 3000", "eval_every: 500",
                 "lr: 0.1", "hidden_sizes:\n  - 100"]:
        assert line in result.stdout


def test_multirun_runs_every_combination(workdir: Path) -> None:
    dlx("train", "-m", "model=ffn,cnn", "optimizer.lr=0.1,0.05", "trainer.smoke=true", cwd=workdir)
    summaries = job_summaries(workdir)
    assert len(summaries) == 4 and all(s["status"] == "completed" for s in summaries)
    assert sorted(tuple(s["overrides"]) for s in summaries) == sorted(
        (f"model={m}", f"optimizer.lr={lr}", "trainer.smoke=True") for m in ("ffn", "cnn") for lr in ("0.1", "0.05"))


@pytest.mark.slow
def test_runs_started_together_get_their_own_folders(workdir: Path) -> None:
    command = [shutil.which("python") or "python", "-m", "dlx", "train", "trainer.smoke=true"]
    processes = [subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
    for process in processes:
        assert process.wait(timeout=120) == 0
    runs = [p.parent for p in (workdir / "outputs").glob("*/*/summary.json")]
    assert len(runs) == 3
    assert latest_run(workdir) in [r.resolve() for r in runs]


def test_console_script_and_python_module_agree(workdir: Path) -> None:
    script = shutil.which("dlx")
    assert script, "the dlx console script is not installed"
    via_script = subprocess.run([script, "train", "--cfg", "job", "model=gru"], cwd=workdir, capture_output=True,
                                text=True, check=True)
    via_module = dlx("train", "--cfg", "job", "model=gru", cwd=workdir)
    assert via_script.stdout == via_module.stdout


def test_user_model_and_config_dir_plug_in(workdir: Path) -> None:
    (workdir / "my_models.py").write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class TinyNet(nn.Module):\n"
        "    def __init__(self, input_shape: list[int], num_outputs: int, width: int = 16) -> None:\n"
        "        super().__init__()\n"
        "        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_outputs))\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.net(x)\n"
    )
    (workdir / "my_conf" / "model").mkdir(parents=True)
    (workdir / "my_conf" / "model" / "tiny.yaml").write_text(
        "_target_: my_models.TinyNet\ninput_shape: ???\nnum_outputs: ???\nwidth: 32\n")
    dlx("train", "--config-dir", "my_conf", "model=tiny", "trainer.max_epochs=5", cwd=workdir)
    summary = summary_of(latest_run(workdir))
    assert summary["choices"]["model"] == "tiny" and summary["test"]["acc"] > 0.8
    result = dlx("train", "--config-dir", "my_conf", "model=tiny", "model.widht=3", cwd=workdir, expect=2)
    assert 'Did you mean "width"?' in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="apt-get install dataset-fashion-mnist")
def test_cnn_on_real_fashion_mnist(workdir: Path) -> None:
    dlx("train", "dataset=fashion_mnist", "dataset.root=/usr/share/datasets/fashion-mnist", "model=cnn",
        "trainer.max_epochs=1", cwd=workdir, timeout=900)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["test"]["acc"] > 0.85
    evaluated = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir).stdout)
    assert evaluated["metrics"] == summary["test"] and evaluated["samples"] == 10_000


def test_deterministic_is_set_for_each_run_of_a_process(compose) -> None:
    # The jobs of a sweep share one process: a job without trainer.deterministic must not inherit it.
    from dlx.parallel.world import World
    from dlx.train.setup import start_run

    trainer = compose(["trainer.device=cpu"]).trainer
    try:
        trainer.deterministic = True
        start_run(trainer, World())
        assert torch.are_deterministic_algorithms_enabled()
        trainer.deterministic = False
        start_run(trainer, World())
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
