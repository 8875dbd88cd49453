"""dlx.train.checkpointing.CheckpointWriter: last.ckpt at each save, the one before as previous.ckpt, best.ckpt
when improved; real files in tmp_path, read back with dlx.store.checkpoint.load_checkpoint. One process."""

from pathlib import Path

import torch
from torch import nn

from dlx.data import DataSplits
from dlx.parallel.world import World
from dlx.store.checkpoint import load_checkpoint
from dlx.train.checkpointing import CheckpointWriter
from dlx.train.state import TrainState

CONFIG = {"model": {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 3}, "trainer": {"seed": 7}}


def image_data() -> DataSplits:
    """Three small splits of 1x2x2 images, with pixel statistics as image_splits() measures them."""
    x = torch.arange(6 * 4, dtype=torch.float32).view(6, 1, 2, 2) / 24
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return DataSplits(train=(x, y), val=(x[:3], y[:3]), test=(x[3:], y[3:]), task="classification",
                      class_names=["cat", "dog", "owl"], pixel_mean=[0.25], pixel_std=[0.5])


def writer_in(folder: Path, data: DataSplits | None = None) -> tuple[CheckpointWriter, nn.Module]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    writer = CheckpointWriter(folder, CONFIG, model, {"model": optimizer}, {"model": scheduler},
                              data or image_data(), "cpu", World())
    return writer, model


def step_in(path: Path) -> int:
    return load_checkpoint(path)["state"]["step"]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- which files a save writes ---------------------------------------------------------------------------------


def test_the_first_save_writes_last_only(tmp_path: Path) -> None:
    writer, _ = writer_in(tmp_path / "checkpoints")  # the folder does not exist yet
    writer.save(TrainState(step=10), {"acc": 0.5}, improved=False)
    assert files_in(tmp_path / "checkpoints") == ["last.ckpt"]  # no previous.ckpt, no temporary left behind
    assert writer.last == tmp_path / "checkpoints" / "last.ckpt"
    assert step_in(writer.last) == 10


def test_the_first_save_when_improved_writes_last_and_best(tmp_path: Path) -> None:
    writer, _ = writer_in(tmp_path)
    writer.save(TrainState(step=10), {"acc": 0.5}, improved=True)
    assert files_in(tmp_path) == ["best.ckpt", "last.ckpt"]
    assert (step_in(tmp_path / "last.ckpt"), step_in(tmp_path / "best.ckpt")) == (10, 10)


def test_a_second_save_moves_the_previous_last_to_previous(tmp_path: Path) -> None:
    writer, _ = writer_in(tmp_path)
    writer.save(TrainState(step=10), {"acc": 0.5}, improved=False)
    writer.save(TrainState(step=20), {"acc": 0.4}, improved=False)
    assert files_in(tmp_path) == ["last.ckpt", "previous.ckpt"]
    assert (step_in(tmp_path / "last.ckpt"), step_in(tmp_path / "previous.ckpt")) == (20, 10)
    writer.save(TrainState(step=30), {"acc": 0.3}, improved=False)
    # Only the one before is kept: step 10 is gone.
    assert (step_in(tmp_path / "last.ckpt"), step_in(tmp_path / "previous.ckpt")) == (30, 20)


def test_not_improved_leaves_best_as_it_was(tmp_path: Path) -> None:
    writer, _ = writer_in(tmp_path)
    writer.save(TrainState(step=10), {"acc": 0.9}, improved=True)
    best_bytes = (tmp_path / "best.ckpt").read_bytes()
    writer.save(TrainState(step=20), {"acc": 0.1}, improved=False)
    assert step_in(tmp_path / "best.ckpt") == 10
    assert load_checkpoint(tmp_path / "best.ckpt")["val"] == {"acc": 0.9}
    assert (tmp_path / "best.ckpt").read_bytes() == best_bytes
    writer.save(TrainState(step=30), {"acc": 0.95}, improved=True)
    assert step_in(tmp_path / "best.ckpt") == 30
    assert step_in(tmp_path / "previous.ckpt") == 20  # previous is the last before, not the best before


def test_best_is_a_file_of_its_own_not_changed_by_later_saves_of_last(tmp_path: Path) -> None:
    # best.ckpt may be a hard link of last.ckpt when written; replacing last.ckpt must not change it.
    writer, model = writer_in(tmp_path)
    writer.save(TrainState(step=10), {"acc": 0.9}, improved=True)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    writer.save(TrainState(step=20), {"acc": 0.1}, improved=False)
    best = load_checkpoint(tmp_path / "best.ckpt")
    assert torch.equal(best["model"]["weight"], saved["weight"])
    assert torch.equal(load_checkpoint(tmp_path / "last.ckpt")["model"]["weight"], saved["weight"] + 1.0)


def test_rank_1_writes_nothing(tmp_path: Path) -> None:
    writer, _ = writer_in(tmp_path)
    writer.world = World(rank=1, size=1)  # size 1: no collective to gather the generators through
    writer.save(TrainState(step=10), {"acc": 0.5}, improved=True)
    assert not tmp_path.exists() or files_in(tmp_path) == []


# --- what a checkpoint holds -----------------------------------------------------------------------------------


def test_the_payload_round_trips_config_data_state_and_val(tmp_path: Path) -> None:
    writer, model = writer_in(tmp_path)
    state = TrainState(step=12, epoch=2, batch_in_epoch=3, best_value=0.75, best_step=8, skipped_steps=1)
    writer.save(state, {"acc": 0.75, "loss": 0.5}, improved=True)
    checkpoint = load_checkpoint(tmp_path / "last.ckpt")
    assert checkpoint["config"] == CONFIG
    assert checkpoint["data"] == {"task": "classification", "input_shape": [1, 2, 2],
                                  "class_names": ["cat", "dog", "owl"], "pixel_mean": [0.25], "pixel_std": [0.5]}
    assert checkpoint["state"] == {"step": 12, "epoch": 2, "batch_in_epoch": 3, "best_value": 0.75, "best_step": 8,
                                   "skipped_steps": 1, "evals_without_improvement": 0, "stopped_early": False,
                                   "pruned": False, "train_samples": 0, "train_seconds": 0.0}
    assert checkpoint["val"] == {"acc": 0.75, "loss": 0.5}
    assert checkpoint["format_version"] == 1
    assert checkpoint["model"].keys() == model.state_dict().keys()
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in model.state_dict().items())
    assert set(checkpoint["optimizers"]) == {"model"}
    assert checkpoint["schedulers"]["model"]["step_size"] == 2
    assert "rng_per_rank" not in checkpoint  # one process: its generators are under "rng"


def test_tabular_data_stores_no_pixel_statistics_and_class_names_as_strings(tmp_path: Path) -> None:
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    data = DataSplits(train=(x, y), val=(x, y), test=(x, y), class_names=[0, 1])  # type: ignore[list-item]
    writer, _ = writer_in(tmp_path, data)
    writer.save(TrainState(step=1), {}, improved=False)
    assert load_checkpoint(tmp_path / "last.ckpt")["data"] == {
        "task": "classification", "input_shape": [3], "class_names": ["0", "1"], "pixel_mean": None,
        "pixel_std": None}


def test_the_model_and_optimizer_state_load_back_into_fresh_objects(tmp_path: Path) -> None:
    writer, model = writer_in(tmp_path)
    optimizer = writer.optimizers["model"]
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()  # momentum buffers exist now
    writer.save(TrainState(step=1), {}, improved=False)
    checkpoint = load_checkpoint(tmp_path / "last.ckpt")
    fresh = nn.Linear(4, 3)
    fresh.load_state_dict(checkpoint["model"])
    assert torch.equal(fresh.weight, model.weight)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_optimizer.load_state_dict(checkpoint["optimizers"]["model"])
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["momentum_buffer"],
                       optimizer.state_dict()["state"][0]["momentum_buffer"])


def test_changed_data_names_what_differs_and_ignores_what_may_vary() -> None:
    from dlx.train.checkpointing import changed_data

    record = {"task": "classification", "class_names": ["a", "b"], "tokenizer": '{"x": 1, "y": 2}',
              "preprocessing": {"source": "rows.csv", "numeric": [1.0]}}
    same = {**record, "tokenizer": '{"y": 2, "x": 1}', "preprocessing": {"source": "moved.csv", "numeric": [1.0]}}
    assert changed_data(record, same) == []
    assert changed_data(record, {**record, "class_names": ["a", "c"], "tokenizer": '{"x": 3}'}) == ["class_names",
                                                                                                  "tokenizer"]
    assert changed_data(None, record) == []  # a checkpoint from before the data record
