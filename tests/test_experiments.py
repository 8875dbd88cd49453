"""Every shipped experiment (conf/experiment/) composes and runs through the whole pipeline: one sweep over
all of them in smoke mode, on real IDX files the test writes (the MNIST and Fashion-MNIST loaders read the
same format). Their accuracies and times are measured by bench/experiments.py, not here."""

import json
from pathlib import Path

import pytest
from conftest import JSON_SOURCES, dlx
from test_data_and_safety import write_mnist_folder
from test_seq2seq import number_words

from dlx.config.schema import config_dir


@pytest.mark.slow
def test_every_experiment_runs_from_its_command(tmp_path: Path) -> None:
    experiments = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))
    assert {"tutorial_ffn", "tutorial_cnn", "tutorial_lstm", "tutorial_gan", "fashion_mlp", "fashion_cnn",
            "fashion_lstm", "fashion_transformer", "fashion_fast_cnn"} <= set(experiments)
    generated = ["seq2seq_addition", "seq2seq_reverse"]  # their data is generated: no folder
    # Experiments on a file or folder of their own (bench/ writes the real ones), here small ones the test writes.
    (tmp_path / "numbers.tsv").write_text("digits\twords\n" + "".join(f"{n}\t{number_words(n)}\n" for n in range(50)))
    # bench/text.py's columns: text, topic and split.
    quotes = [(f"the {word} of the {topic} number {n}", topic, ["train", "train", "val", "test"][n % 4])
              for topic, word in (("computers", "program"), ("food", "soup")) for n in range(12)]
    (tmp_path / "fortunes.csv").write_text("text,topic,split\n" + "".join(f"{t},{c},{s}\n" for t, c, s in quotes))
    own_data = {"seq2seq_numbers": ["dataset.path=numbers.tsv"],
                "python_gpt": [f"dataset.path={JSON_SOURCES}", "dataset.block_size=32", "dataset.cache_dir=cache"],
                "python_lstm": [f"dataset.path={JSON_SOURCES}", "dataset.block_size=32", "dataset.cache_dir=cache"],
                "fortunes_lstm": ["dataset.path=fortunes.csv"],
                "fortunes_transformer": ["dataset.path=fortunes.csv"]}
    assert {*generated, *own_data} <= set(experiments)
    images = sorted(set(experiments) - set(generated) - set(own_data))
    write_mnist_folder(tmp_path / "data", compressed=True)
    # ++: the key comes with the swept experiments, not with the config Hydra composes first for the sweep.
    dlx("train", "-m", f"+experiment={','.join(images)}", f"++dataset.root={tmp_path / 'data'}", "trainer.smoke=true",
        "hydra.sweep.dir=sw", cwd=tmp_path)
    dlx("train", "-m", f"+experiment={','.join(generated)}", "trainer.smoke=true", "hydra.sweep.dir=sw_generated",
        cwd=tmp_path)
    rows = [row for sweep in ("sw", "sw_generated")
            for row in json.loads((tmp_path / sweep / "summary.json").read_text())["rows"]]
    assert len(rows) == len(images) + len(generated) and {row["status"] for row in rows} == {"completed"}
    for experiment, data in own_data.items():
        dlx("train", f"+experiment={experiment}", *data, "trainer.smoke=true", cwd=tmp_path)
