"""Every shipped experiment (conf/experiment/) composes and runs through the whole pipeline: one sweep over
all of them in smoke mode, on real IDX files the test writes (the MNIST and Fashion-MNIST loaders read the
same format). Their accuracies and times are measured by bench/experiments.py, not here."""

import json
from pathlib import Path

from conftest import dlx
from test_data_and_safety import write_mnist_folder

from dlx.config.schema import config_dir


def test_every_experiment_runs_from_its_command(tmp_path: Path) -> None:
    experiments = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))
    assert {"tutorial_ffn", "tutorial_cnn", "tutorial_lstm", "tutorial_gan", "fashion_mlp", "fashion_cnn",
            "fashion_lstm", "fashion_transformer", "fashion_fast_cnn"} <= set(experiments)
    generated = [name for name in experiments if name.startswith("seq2seq_")]  # their data needs no folder
    assert {"seq2seq_reverse", "seq2seq_addition"} <= set(generated)
    write_mnist_folder(tmp_path / "data", compressed=True)
    # ++: the key comes with the swept experiments, not with the config Hydra composes first for the sweep.
    dlx("train", "-m", f"+experiment={','.join(sorted(set(experiments) - set(generated)))}",
        f"++dataset.root={tmp_path / 'data'}", "trainer.smoke=true", "hydra.sweep.dir=sw", cwd=tmp_path)
    dlx("train", "-m", f"+experiment={','.join(generated)}", "trainer.smoke=true", "hydra.sweep.dir=sw_generated",
        cwd=tmp_path)
    rows = [row for sweep in ("sw", "sw_generated")
            for row in json.loads((tmp_path / sweep / "summary.json").read_text())["rows"]]
    assert len(rows) == len(experiments) and {row["status"] for row in rows} == {"completed"}
