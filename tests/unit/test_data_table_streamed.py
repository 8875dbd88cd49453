"""dlx.data.table with dataset.in_memory=false: a table read in chunks and encoded to disk gives the rows, targets,
splits and preprocessing of the same table read whole, to the last bit, whatever the chunks (made small here);
the encoded copy is reused, rebuilt when the file changes, and never left half-written; auto streams what would
not fit; a cell that does not fit its column's type in a later chunk is named."""

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dlx.data import Split, memory, table, table_cache
from dlx.data.table import load_table
from dlx.errors import DlxError


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Numbers with missing values and a large offset (float64 matters), categories with missing values and
    rare ones that some chunks lack, a boolean, a target of three classes, some rows without a target."""
    generator = np.random.default_rng(seed)
    size = generator.normal(1e6, 3, rows)
    size[generator.random(rows) < 0.1] = np.nan
    colour = generator.choice(["red", "green", "blue", "teal"], rows, p=[0.4, 0.3, 0.29, 0.01]).astype(object)
    colour[generator.random(rows) < 0.05] = None
    label = generator.choice(["a", "b", "c"], rows).astype(object)
    label[generator.random(rows) < 0.02] = None
    return pd.DataFrame({"size": size, "colour": colour, "flag": generator.random(rows) < 0.3,
                         "count": generator.integers(0, 9, rows), "label": label})


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few hundred rows, statistics summed 1,000 rows at a time: many of each on a small table."""
    monkeypatch.setattr(table_cache, "CHUNK_BYTES", 8192)
    monkeypatch.setattr(table_cache, "CHUNK_ROWS", 300)
    monkeypatch.setattr(table, "CHUNK_ROWS", 300)
    monkeypatch.setattr(table, "STATS_ROWS", 1000)


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """dlx's log, caught even when dlx's logger does not propagate (after a run set up its logging)."""
    caplog.set_level(logging.INFO, logger="dlx")
    logging.getLogger("dlx").addHandler(caplog.handler)
    yield caplog
    logging.getLogger("dlx").removeHandler(caplog.handler)


def rows_of(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    [(x, y)] = list(split.batches([slice(0, len(split))]))
    return x, y


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_and_in_memory_give_the_same_rows_to_the_last_bit(suffix: str, tmp_path: Path,
                                                                     small_chunks: None) -> None:
    path = tmp_path / f"t{suffix}"
    written = frame(5000)
    written.to_csv(path, index=False) if suffix == ".csv" else written.to_parquet(path, index=False, row_group_size=700)
    whole = load_table(str(path), "label", in_memory=True)
    streamed = load_table(str(path), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    assert isinstance(streamed.train, table_cache.MappedRows)
    assert streamed.preprocessing == whole.preprocessing and streamed.class_names == whole.class_names
    for name in ("train", "val", "test"):
        streamed_x, streamed_y = rows_of(streamed.split(name))
        whole_x, whole_y = rows_of(whole.split(name))
        assert torch.equal(streamed_x, whole_x) and torch.equal(streamed_y, whole_y), name
    # A batch of scattered rows, as training asks: the same rows in the same order.
    index = torch.tensor([7, 3, 3000, 0, 1234])
    [(x, y)] = list(streamed.train.batches([index]))
    assert torch.equal(x, rows_of(whole.train)[0][index]) and torch.equal(y, whole.train.labels()[index])


def test_a_regression_streams_with_its_target_standardised_the_same_way(tmp_path: Path, small_chunks: None) -> None:
    written = frame(3000).assign(price=lambda f: f["count"] * 2.5 + np.random.default_rng(1).normal(0, 1, len(f)))
    written.drop(columns=["label"]).to_csv(tmp_path / "p.csv", index=False)
    whole = load_table(str(tmp_path / "p.csv"), "price", in_memory=True)
    streamed = load_table(str(tmp_path / "p.csv"), "price", in_memory=False, cache_dir=str(tmp_path / "c"))
    assert streamed.task == "regression" and streamed.preprocessing == whole.preprocessing
    for name in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(rows_of(streamed.split(name)), rows_of(whole.split(name))))


def test_the_encoded_copy_is_reused_then_rebuilt_when_the_file_changes(tmp_path: Path, small_chunks: None,
                                                                       log: pytest.LogCaptureFixture) -> None:
    path, cache = tmp_path / "t.csv", tmp_path / "cache"
    frame(2000).to_csv(path, index=False)
    load_table(str(path), "label", in_memory=False, cache_dir=str(cache))
    [state] = list(cache.iterdir())
    encoded = (state / "x.npy").stat().st_mtime_ns
    assert sorted(p.name for p in state.iterdir()) == ["record.json", "rows-test.npy", "rows-train.npy",
                                                       "rows-val.npy", "source.txt", "x.npy", "y.npy"]  # no scratch
    log.clear()
    load_table(str(path), "label", in_memory=False, cache_dir=str(cache))
    assert (state / "x.npy").stat().st_mtime_ns == encoded and "(from an earlier run)" in log.text
    load_table(str(path), "label", in_memory=False, cache_dir=str(cache), split_seed=1)  # other options: another copy
    assert len(list(cache.iterdir())) == 2

    frame(2000, seed=5).to_csv(path, index=False)  # the file changes
    os.utime(path, ns=(0, encoded + 10**9))
    log.clear()
    load_table(str(path), "label", in_memory=False, cache_dir=str(cache))
    assert "(encoded now)" in log.text
    [new_state] = list(cache.iterdir())  # the copies of the old state, whatever their options, are removed
    assert new_state != state


def test_a_run_killed_while_encoding_leaves_no_copy_that_is_read(tmp_path: Path, small_chunks: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path, cache = tmp_path / "t.csv", tmp_path / "cache"
    frame(2000).to_csv(path, index=False)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(table, "encode_to_disk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_table(str(path), "label", in_memory=False, cache_dir=str(cache))
    [state] = list(cache.iterdir())
    assert not (state / "record.json").exists() and not list(state.glob("*.tmp"))  # scratch arrays removed
    monkeypatch.undo()
    data = load_table(str(path), "label", in_memory=False, cache_dir=str(cache))  # encoded again, whole
    assert len(data.train) + len(data.val) + len(data.test) == frame(2000)["label"].notna().sum()


def test_auto_streams_a_table_that_would_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 log: pytest.LogCaptureFixture) -> None:
    frame(1000).to_csv(tmp_path / "t.csv", index=False)
    size = (tmp_path / "t.csv").stat().st_size
    monkeypatch.setattr(memory, "available_memory", lambda: 6 * size)  # half of it: 3x the file, not the 4x needed
    data = load_table(str(tmp_path / "t.csv"), "label", cache_dir=str(tmp_path / "cache"))
    assert isinstance(data.train, table_cache.MappedRows)
    assert "dataset.in_memory=auto: the table, read and encoded, would take about" in log.text
    monkeypatch.setattr(memory, "available_memory", lambda: 100 * size)
    assert not isinstance(load_table(str(tmp_path / "t.csv"), "label").train, table_cache.MappedRows)


def test_text_in_a_numeric_column_after_the_first_chunk_is_named(tmp_path: Path, small_chunks: None) -> None:
    written = frame(3000).astype({"size": object})
    written.loc[2500, "size"] = "unknown"
    written.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DlxError, match=r"holds 'unknown' in a column of double values \(column 1 of the file.*"
                                       r"dataset.na_values"):
        load_table(str(tmp_path / "t.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    # Read whole, the same cell is found as in any table: by its line.
    with pytest.raises(DlxError, match=r'Column "size" of .*t.csv holds numbers, but line 2,502 holds \'unknown\''):
        load_table(str(tmp_path / "t.csv"), "label", in_memory=True)


def test_the_errors_of_a_table_read_whole_hold_when_it_is_streamed(tmp_path: Path) -> None:
    frame(200).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DlxError, match='dataset.target=lable is not a column of .*Did you mean "label"'):
        load_table(str(tmp_path / "t.csv"), "lable", in_memory=False, cache_dir=str(tmp_path / "cache"))
    frame(200).assign(label="same").to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DlxError, match="has one class only"):
        load_table(str(tmp_path / "one.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    (tmp_path / "header.csv").write_text("a,label\n")
    with pytest.raises(DlxError, match=r"is an empty table: it has a header \(2 columns\) but no rows"):
        load_table(str(tmp_path / "header.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    (tmp_path / "latin.csv").write_bytes("name,label\nJos\xe9,a\nRen\xe9e,b\n".encode("latin-1"))
    with pytest.raises(DlxError, match="latin.csv"):
        load_table(str(tmp_path / "latin.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    (tmp_path / "cut.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    for in_memory in (True, False):
        with pytest.raises(DlxError, match="cut.parquet cannot be read as Parquet"):
            load_table(str(tmp_path / "cut.parquet"), "label", in_memory=in_memory, cache_dir=str(tmp_path / "c"))


def streamed_matches_in_memory(path: Path, cache: Path, **options: object) -> table.DataSplits:
    whole = load_table(str(path), "label", in_memory=True, **options)
    streamed = load_table(str(path), "label", in_memory=False, cache_dir=str(cache), **options)
    assert streamed.preprocessing == whole.preprocessing
    for name in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(rows_of(streamed.split(name)), rows_of(whole.split(name))))
    return streamed


def test_a_column_of_numbers_as_categories_is_named_from_all_its_chunks(tmp_path: Path, small_chunks: None) -> None:
    # Whole numbers in the first chunks, halves later: read whole, every category is named 1.0, 0.5, ...
    written = frame(3000).assign(ratio=np.where(np.arange(3000) < 2000, np.arange(3000) % 3, 0.5))
    written.loc[::7, "ratio"] = np.nan
    written.to_csv(tmp_path / "t.csv", index=False)
    data = streamed_matches_in_memory(tmp_path / "t.csv", tmp_path / "cache", categorical=["ratio"])
    ratio = next(c for c in data.preprocessing["categorical"] if c["name"] == "ratio")
    assert ratio["categories"] == ["0.0", "0.5", "1.0", "2.0"] and ratio["missing"]


def test_a_parquet_column_empty_in_its_first_rows_is_typed_by_all_of_them(tmp_path: Path, small_chunks: None) -> None:
    written = frame(2000).assign(town=lambda f: np.where(np.arange(len(f)) < 600, None, "York"))
    written.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=500)
    data = streamed_matches_in_memory(tmp_path / "t.parquet", tmp_path / "cache")
    assert [c["name"] for c in data.preprocessing["categorical"]] == ["colour", "flag", "town"]


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.xz", ".csv.zip"])
def test_compressed_text_is_streamed(suffix: str, tmp_path: Path, small_chunks: None) -> None:
    frame(2000).to_csv(tmp_path / f"t{suffix}", index=False)
    streamed_matches_in_memory(tmp_path / f"t{suffix}", tmp_path / "cache")


def test_scratch_left_by_a_killed_encoding_is_removed(tmp_path: Path) -> None:
    frame(500).to_csv(tmp_path / "t.csv", index=False)
    load_table(str(tmp_path / "t.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    [state] = list((tmp_path / "cache").iterdir())
    dead = state / ".x.999999999.abcd1234.tmp"  # no such process
    alive = state / f".x.{os.getpid()}.abcd1234.tmp"  # an encoding still under way
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    (state / "record.json").unlink()  # as a run killed while encoding leaves it: encoded again, by this run
    load_table(str(tmp_path / "t.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    assert not dead.exists() and alive.exists()


def test_a_split_reads_on_when_its_copy_is_removed_under_it(tmp_path: Path) -> None:
    frame(500).to_csv(tmp_path / "t.csv", index=False)
    data = load_table(str(tmp_path / "t.csv"), "label", in_memory=False, cache_dir=str(tmp_path / "cache"))
    before = rows_of(data.test)
    shutil.rmtree(tmp_path / "cache")  # as a run on the changed file removes the copy of its old state
    assert all(torch.equal(a, b) for a, b in zip(rows_of(data.test), before))


def test_statistics_of_a_small_table_are_numpy_s_own(tmp_path: Path) -> None:
    written = frame(3000)
    written.to_csv(tmp_path / "t.csv", index=False)
    data = load_table(str(tmp_path / "t.csv"), "label", in_memory=True)
    train = table.split_rows(written[written["label"].notna()], tmp_path, None,
                             *table.read_target(written, tmp_path, "label", "auto")[1:2],
                             "classification", 0.1, 0.2, 0)["train"]
    sizes = written[written["label"].notna()]["size"].to_numpy()[train]
    size = data.preprocessing["numeric"][0]
    assert size["name"] == "size" and size["mean"] == np.nanmean(sizes) and size["std"] == np.nanstd(sizes)
