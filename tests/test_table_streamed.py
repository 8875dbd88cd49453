"""dataset=table dataset.in_memory=false through the real CLI, on a CSV file written here with pandas: a table
encoded to disk and read batch by batch trains the weights the same table trains in memory, `dlx eval` reproduces
its test numbers, and a run killed with SIGKILL in the middle of an epoch resumes to bit-identical weights."""

import json
import signal
from pathlib import Path

import pytest
from conftest import dlx, start_dlx, summary_of, wait_for_step
from test_image_folder import assert_same_weights, weights
from test_table import classifier_frame

from dlx.store.checkpoint import load_checkpoint


def train_args(path: Path, cache: Path, *more: str) -> list[str]:
    return ["train", "dataset=table", f"dataset.path={path}", "dataset.target=label", "dataset.split_column=split",
            f"dataset.cache_dir={cache}", "model=ffn", "optimizer=adam", "optimizer.lr=0.01", "trainer.max_epochs=6",
            "trainer.batch_size=16", "trainer.device=cpu", *more]


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("people")
    classifier_frame(1500).to_csv(folder / "people.csv", index=False)
    return folder / "people.csv"


@pytest.mark.slow  # the unit tests compare the rows bit for bit in a second; this, the CLI end to end
def test_a_streamed_table_trains_the_weights_of_the_table_in_memory(people: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dlx(*train_args(people, cache, "dataset.in_memory=true", "hydra.run.dir=in_memory"), cwd=tmp_path)
    dlx(*train_args(people, cache, "dataset.in_memory=false", "hydra.run.dir=streamed"), cwd=tmp_path)
    log = (tmp_path / "streamed" / "train.log").read_text()
    assert "1,500 rows (1,050 train, 150 val, 300 test)" in log and "streamed from its encoded copy in" in log
    assert_same_weights(weights(tmp_path / "in_memory"), weights(tmp_path / "streamed"))
    streamed = summary_of(tmp_path / "streamed")
    assert streamed["test"] == summary_of(tmp_path / "in_memory")["test"] and streamed["test"]["acc"] >= 0.85
    # dlx eval reads the encoded copy again and finds training's test numbers.
    evaluated = json.loads(dlx("eval", str(tmp_path / "streamed" / "checkpoints" / "best.ckpt"), "--json",
                               cwd=tmp_path).stdout)
    assert evaluated["metrics"] == streamed["test"] and evaluated["samples"] == 300


@pytest.mark.slow
def test_sigkill_mid_epoch_on_a_streamed_table_then_resume_is_bit_identical(people: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    common = ["dataset.in_memory=false", "trainer.batch_size=4", "trainer.max_epochs=3"]
    dlx(*train_args(people, cache, *common, "hydra.run.dir=whole"), cwd=tmp_path)
    args = train_args(people, cache, *common, "trainer.checkpoint_every=7", "trainer.log_every=1",
                      "hydra.run.dir=killed")
    process = start_dlx(args, tmp_path)
    wait_for_step(process, tmp_path / "killed" / "metrics.jsonl", 400)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["state"]
    steps_per_epoch = 263  # 1,050 training rows in batches of 4
    assert 390 <= state["step"] < 3 * steps_per_epoch and 0 < state["batch_in_epoch"] < steps_per_epoch

    dlx(*args, "trainer.resume=auto", cwd=tmp_path)
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))


@pytest.mark.slow
def test_two_ddp_processes_share_a_streamed_table(people: Path, tmp_path: Path) -> None:
    # Both ranks find no encoded copy and encode the table at once, into scratch files of their own.
    common = ["trainer.devices=2", "trainer.max_epochs=2"]
    dlx(*train_args(people, tmp_path / "cache", *common, "dataset.in_memory=false", "hydra.run.dir=streamed"),
        cwd=tmp_path)
    dlx(*train_args(people, tmp_path / "cache", *common, "dataset.in_memory=true", "hydra.run.dir=in_memory"),
        cwd=tmp_path)
    streamed = summary_of(tmp_path / "streamed")
    assert streamed["distributed"]["world_size"] == 2
    assert len(set(streamed["distributed"]["weights_sha256_per_rank"])) == 1
    assert_same_weights(weights(tmp_path / "streamed"), weights(tmp_path / "in_memory"))
