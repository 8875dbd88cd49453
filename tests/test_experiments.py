"""Every shipped experiment (conf/experiment/) composes and runs through the whole pipeline: one sweep over
all of them in smoke mode, on real IDX files the test writes (the MNIST and Fashion-MNIST loaders read the
same format). Their accuracies and times are measured by bench/experiments.py, not here."""

import json
from pathlib import Path

from conftest import dlx
from test_data_and_safety import write_mnist_folder
from test_seq2seq import number_words

from dlx.config.schema import config_dir


def test_every_experiment_runs_from_its_command(tmp_path: Path) -> None:
    experiments = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))
    assert {"tutorial_ffn", "tutorial_cnn", "tutorial_lstm", "tutorial_gan", "fashion_mlp", "fashion_cnn",
            "fashion_lstm", "fashion_transformer", "fashion_fast_cnn"} <= set(experiments)
    generated = ["seq2seq_addition", "seq2seq_reverse"]  # their data is generated: no folder
    assert {*generated, "seq2seq_numbers"} <= set(experiments)
    experiments.remove("seq2seq_numbers")  # a pairs file of its own: below
    write_mnist_folder(tmp_path / "data", compressed=True)
    # ++: the key comes with the swept experiments, not with the config Hydra composes first for the sweep.
    dlx("train", "-m", f"+experiment={','.join(sorted(set(experiments) - set(generated)))}",
        f"++dataset.root={tmp_path / 'data'}", "trainer.smoke=true", "hydra.sweep.dir=sw", cwd=tmp_path)
    dlx("train", "-m", f"+experiment={','.join(generated)}", "trainer.smoke=true", "hydra.sweep.dir=sw_generated",
        cwd=tmp_path)
    rows = [row for sweep in ("sw", "sw_generated")
            for row in json.loads((tmp_path / sweep / "summary.json").read_text())["rows"]]
    assert len(rows) == len(experiments) and {row["status"] for row in rows} == {"completed"}
    (tmp_path / "numbers.tsv").write_text("digits\twords\n" + "".join(f"{n}\t{number_words(n)}\n" for n in range(50)))
    dlx("train", "+experiment=seq2seq_numbers", "dataset.path=numbers.tsv", "trainer.smoke=true", cwd=tmp_path)
