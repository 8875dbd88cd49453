"""dlx.data.table: the encoding of a table's rows (statistics and categories of the training rows only, missing
values, categories never seen), the task a target implies, the splits, the record checkpoints keep, and the files
it refuses, on small tables written here."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dlx.data.table import (
    category_labels,
    encode_arrays,
    encode_rows,
    fit_preprocessing,
    fixed_splits,
    inferred_task,
    load_table,
    read_table,
    table_format,
    well_formed_preprocessing,
)
from dlx.errors import DlxError

HERE = Path("rows.csv")  # the file named in messages


def fitted(train: pd.DataFrame, numeric: list[str], categorical: list[str], max_categories: int = 100) -> dict:
    numbers = train[numeric].to_numpy(np.float64)
    labels = {name: category_labels(train[name]) for name in categorical}
    rows = np.arange(len(train))
    return fit_preprocessing(numbers, rows, labels, numeric, HERE, max_categories) | {"source": "train.csv"}


def encode(frame: pd.DataFrame, preprocessing: dict):
    return encode_rows(frame, preprocessing, HERE)


TRAIN = pd.DataFrame({"height": [1.0, 2.0, np.nan, 5.0], "weight": [10.0, 10.0, 20.0, 20.0],
                      "colour": ["red", "blue", None, "red"], "member": [True, False, True, True]})


def test_numbers_are_standardised_with_training_statistics_and_missing_ones_flagged() -> None:
    preprocessing = fitted(TRAIN, ["height", "weight"], [])
    height, weight = preprocessing["numeric"]
    assert height == {"name": "height", "mean": pytest.approx(8 / 3), "std": pytest.approx(np.std([1, 2, 5])),
                      "missing": True}
    assert weight == {"name": "weight", "mean": 15.0, "std": 5.0, "missing": False}
    assert preprocessing["features"] == ["height", "weight", "height (missing)"]
    new = pd.DataFrame({"height": [8 / 3, np.nan], "weight": [25.0, 5.0]})
    x = encode(new, preprocessing).x
    np.testing.assert_allclose(x, [[0.0, 2.0, 0.0], [0.0, -2.0, 1.0]], atol=1e-6)  # missing: the mean, flagged


def test_categories_come_from_training_and_unseen_ones_are_all_zeros() -> None:
    preprocessing = fitted(TRAIN, [], ["colour", "member"])
    assert preprocessing["categorical"] == [
        {"name": "colour", "categories": ["blue", "red"], "missing": True},  # sorted; missing is a category
        {"name": "member", "categories": ["False", "True"], "missing": False}]
    assert preprocessing["features"] == ["colour=blue", "colour=red", "colour=(missing)", "member=False",
                                         "member=True"]
    new = pd.DataFrame({"colour": ["red", "green", None, "green"], "member": [True, None, False, True]})
    encoded = encode(new, preprocessing)
    np.testing.assert_array_equal(encoded.x, [[0, 1, 0, 0, 1],
                                              [0, 0, 0, 0, 0],  # green: never seen; member: missing, never seen
                                              [0, 0, 1, 1, 0],
                                              [0, 0, 0, 0, 1]])
    assert encoded.unseen == {"colour": 2, "member": 1}
    assert encoded.unseen_examples == {"colour": "green", "member": "(missing)"}


def test_a_column_without_missing_values_in_training_counts_the_new_ones() -> None:
    preprocessing = fitted(TRAIN, ["weight"], [])
    encoded = encode(pd.DataFrame({"weight": [np.nan, 15.0, np.nan]}), preprocessing)
    np.testing.assert_array_equal(encoded.x[:, 0], [0.0, 0.0, 0.0])  # the training mean; no indicator to set
    assert encoded.new_missing == {"weight": 2}


def test_category_labels_name_whole_numbers_and_booleans_as_people_write_them() -> None:
    assert category_labels(pd.Series([1.0, 2.0, np.nan])).tolist()[:2] == ["1", "2"]  # integers with a gap
    assert category_labels(pd.Series([1.5, 2.0])).tolist() == ["1.5", "2.0"]
    assert category_labels(pd.Series([True, False])).tolist() == ["True", "False"]
    assert category_labels(pd.Series([True, None], dtype=object)).isna().tolist() == [False, True]
    assert category_labels(pd.Series(["a", None])).isna().tolist() == [False, True]


@pytest.mark.parametrize("values, task", [
    (["yes", "no", "yes"], "classification"),
    ([True, False, True], "classification"),
    ([0, 1, 2, 1], "classification"),  # few whole numbers: classes
    ([0.0, 1.0, np.nan, 1.0], "classification"),  # whole numbers with an empty cell read as floats
    ([0.5, 1.25, 3.0], "regression"),
    (list(range(100)), "regression"),  # many whole numbers: a count or a price
    (["1.5", "2.5", "3"], "regression"),  # numbers in a text column
])
def test_the_target_s_values_decide_the_task(values: list, task: str) -> None:
    assert inferred_task(pd.Series(values), "y", HERE)[0] == task


def test_a_text_cell_among_numbers_is_named_by_its_line(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [str(v) for v in range(30)], "y": [0, 1] * 15})
    frame.loc[17, "x"] = "n/a?"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DlxError, match=r'Column "x" of .*t.csv holds numbers, but line 19 holds \'n/a\?\''):
        load_table(str(tmp_path / "t.csv"), "y")
    load_table(str(tmp_path / "t.csv"), "y", na_values=["n/a?"])  # the remedy it names
    load_table(str(tmp_path / "t.csv"), "y", categorical=["x"])  # or the other
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DlxError, match="but row 18 holds"):  # Parquet has no header line
        load_table(str(tmp_path / "t.parquet"), "y")


def test_split_column_values() -> None:
    splits = fixed_splits(pd.Series(["train", " Test", "VALIDATION", "val", "train"]), "s", HERE)
    assert splits.tolist() == ["train", "test", "val", "val", "train"]
    with pytest.raises(DlxError, match=r"but line 4 says 'dev' \(2 row\(s\) in all, saying \(empty\), dev\)"):
        fixed_splits(pd.Series(["train", "test", "dev", None]), "s", HERE)
    with pytest.raises(DlxError, match="names no test rows"):
        fixed_splits(pd.Series(["train", "val"]), "s", HERE)


def test_load_table_fits_on_training_rows_only_and_records_enough_to_encode_new_rows(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame({"a": generator.normal(size=200), "town": generator.choice(["x", "y"], 200),
                          "split": ["train"] * 150 + ["val"] * 20 + ["test"] * 30, "price": generator.normal(size=200)})
    frame.loc[190:, "a"] = 1000.0  # test rows far off: their values must not move the training statistics
    frame.loc[195:, "town"] = "z"  # a town only the test rows have
    frame.to_csv(tmp_path / "houses.tsv", sep="\t", index=False)
    data = load_table(str(tmp_path / "houses.tsv"), "price", split_column="split")
    assert (len(data.train), len(data.val), len(data.test)) == (150, 20, 30) and data.task == "regression"
    record = data.preprocessing
    assert record["numeric"][0]["mean"] == pytest.approx(frame["a"][:150].mean())
    assert record["categorical"][0]["categories"] == ["x", "y"]
    assert record["target_mean"] == pytest.approx(frame["price"][:150].mean())
    assert data.test.y[:, 0].numpy() == pytest.approx(
        ((frame["price"][170:] - record["target_mean"]) / record["target_std"]).to_numpy(), abs=1e-6)
    assert well_formed_preprocessing(record)
    # The record alone encodes the file's rows as the loader did.
    again = encode_rows(read_table(tmp_path / "houses.tsv"), record, tmp_path / "houses.tsv").x[170:]
    assert torch.equal(torch.from_numpy(again), data.test.x)
    assert not data.test.x[25:, 2:].any()  # town z: neither x nor y


def test_hold_out_is_stratified_and_the_same_for_the_same_seed(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(300.0), "label": ["rare"] * 30 + ["common"] * 270})
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_table(str(tmp_path / "t.csv"), "label")
    assert data.class_names == ["common", "rare"]
    assert (data.test.y == 1).sum() == 6 and len(data.test) == 60  # a fifth of each class
    assert torch.equal(load_table(str(tmp_path / "t.csv"), "label").test.x, data.test.x)
    assert not torch.equal(load_table(str(tmp_path / "t.csv"), "label", split_seed=1).test.x, data.test.x)


def test_too_many_categories_are_refused_and_max_categories_allows_them(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user": [f"u{i}" for i in range(60)], "label": [0, 1] * 30})
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DlxError, match=r"has \d+ distinct values .*an identifier\?.*max_categories=10"):
        load_table(str(tmp_path / "t.csv"), "label", max_categories=10)
    allowed = load_table(str(tmp_path / "t.csv"), "label", max_categories=60)
    assert allowed.input_shape == [len(allowed.train)]  # one input per user of the training rows


def test_well_formed_preprocessing_rejects_altered_records() -> None:
    record = fitted(TRAIN, ["height"], ["colour"]) | {"target": "y", "task": "classification", "sep": None,
                                                        "na_values": []}
    assert well_formed_preprocessing(record)
    assert not well_formed_preprocessing({**record, "features": record["features"][:-1]})
    assert not well_formed_preprocessing({**record, "numeric": [{**record["numeric"][0], "std": 0.0}]})
    assert not well_formed_preprocessing({**record, "task": "regression"})  # no target statistics
    assert not well_formed_preprocessing("not a dict")


def test_formats_by_suffix_and_files_that_are_not_what_they_say(tmp_path: Path) -> None:
    assert table_format(Path("a.csv"), None) == ("text", ",")
    assert table_format(Path("a.TSV"), None) == ("text", "\t")
    assert table_format(Path("a.csv.gz"), None) == ("text", ",")
    assert table_format(Path("a.pq"), None) == ("parquet", None)
    assert table_format(Path("a.txt"), ";") == ("text", ";")
    with pytest.raises(DlxError, match="is not a table file dlx knows by its name"):
        table_format(Path("a.xlsx"), None)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "real.parquet")
    (tmp_path / "fake.csv").write_bytes((tmp_path / "real.parquet").read_bytes())
    with pytest.raises(DlxError, match="is a Parquet file, not text: rename it to fake.parquet"):
        read_table(tmp_path / "fake.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DlxError, match="is an empty table: it has no columns"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DlxError, match="cannot be read as ','-separated text"):
        read_table(tmp_path / "ragged.csv")
    with pytest.raises(DlxError, match="is a folder, not a table file"):
        read_table(tmp_path)


def test_encode_arrays_names_an_infinite_value_by_its_line() -> None:
    preprocessing = fitted(TRAIN, ["weight"], [])
    with pytest.raises(DlxError, match="holds inf at line 3"):
        encode_arrays(np.array([[1.0], [np.inf]]), {}, preprocessing, HERE, np.array([0, 1]))
