"""dataset=table through the real CLI, on CSV, TSV and Parquet files written here with pandas: a classifier learns
a rule of numeric and categorical columns with missing values, a regression beats predicting the mean, `dlx eval`
reproduces the test numbers, `dlx predict` writes the rows back with the model's own predictions (and deals with
new categories, missing columns and extra columns as documented), `dlx export` takes raw rows; bad files and
columns get their one-paragraph errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dlx, summary_of

from dlx.data.table import load_table
from dlx.errors import DlxError
from dlx.inspect.predict import predict
from dlx.inspect.rebuild import rebuild_model

USER_ERROR = 2
COLOUR_EFFECT = {"red": 1.5, "green": 0.0, "blue": -1.5}


def classifier_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """label is "yes" when a + colour's effect + member's effect > 0; a is missing in a tenth of the rows and
    colour in a twentieth (the label still follows the hidden value), count is noise. The first 70 % of the
    rows are train, then 10 % val (spelt Validation), then test."""
    generator = np.random.default_rng(seed)
    a = generator.normal(size=rows)
    colour = generator.choice(list(COLOUR_EFFECT), rows).astype(object)
    member = generator.random(rows) < 0.5
    score = a + np.array([COLOUR_EFFECT[c] for c in colour]) + np.where(member, 0.8, -0.8)
    a[generator.random(rows) < 0.1] = np.nan
    colour[generator.random(rows) < 0.05] = None
    position = np.arange(rows)
    split = np.where(position < 0.7 * rows, "train", np.where(position < 0.8 * rows, "Validation", "test"))
    return pd.DataFrame({"a": a, "colour": colour, "member": member, "count": generator.integers(0, 50, rows),
                         "split": split, "label": np.where(score > 0, "yes", "no")})


def regression_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    u, v = generator.normal(size=rows), generator.normal(size=rows)
    kind = generator.choice(["x", "y", "z"], rows)
    kind_effect = np.select([kind == "x", kind == "z"], [4.0, -4.0], 0.0)
    price = 10 + 3 * u - 2 * v + kind_effect + generator.normal(0, 0.5, rows)
    return pd.DataFrame({"u": u, "v": v, "kind": kind, "price": price})


def train_args(path: Path, target: str, *more: str) -> list[str]:
    return ["train", "dataset=table", f"dataset.path={path}", f"dataset.target={target}", "model=ffn",
            "optimizer=adam", "optimizer.lr=0.01", "trainer.max_epochs=15", "trainer.device=cpu", *more]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the CSV file, the run folder) of a classifier trained on it, with fixed splits from its split column."""
    folder = tmp_path_factory.mktemp("classifier")
    classifier_frame(600).to_csv(folder / "people.csv", index=False)
    dlx(*train_args(folder / "people.csv", "label", "dataset.split_column=split", "hydra.run.dir=run"), cwd=folder)
    return folder / "people.csv", folder / "run"


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("regression")
    regression_frame(500).to_parquet(folder / "prices.parquet", index=False)
    dlx(*train_args(folder / "prices.parquet", "price", "loss=mse", "trainer.max_epochs=25", "hydra.run.dir=run"),
        cwd=folder)
    return folder / "prices.parquet", folder / "run"


@pytest.mark.slow
def test_a_classifier_learns_from_numbers_and_categories_and_eval_reproduces_it(classifier: tuple[Path, Path]) -> None:
    path, run = classifier
    summary = summary_of(run)
    assert summary["status"] == "completed"
    assert summary["test"]["acc"] >= 0.85  # "no" is the larger class at about 55 %: chance stays far below
    log = (run / "train.log").read_text()
    assert 'Target "label": classification, 2 classes' in log
    # The split column is honoured: 70 % train, 10 % val ("Validation"), 20 % test, in file order.
    assert "600 rows (420 train, 60 val, 120 test)" in log
    evaluated = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=run).stdout)
    assert evaluated["metrics"] == summary["test"] and evaluated["samples"] == 120


def test_predict_writes_the_rows_with_the_model_s_own_predictions(classifier: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    path, run = classifier
    checkpoint = run / "checkpoints" / "best.ckpt"
    frame = pd.read_csv(path)
    test_rows = frame[frame["split"] == "test"].drop(columns=["split"]).assign(id=[f"{i:04d}" for i in range(120)])
    test_rows.to_csv(tmp_path / "rows.tsv", sep="\t", index=False)  # TSV in, CSV out
    result = dlx("predict", str(checkpoint), str(tmp_path / "rows.tsv"), "--out", str(tmp_path / "out.csv"), cwd=run)
    assert "120 rows" in result.stdout and result.stderr == ""
    written = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert list(written.columns) == [*test_rows.columns, "prediction", "probability_no", "probability_yes"]
    assert written["id"].tolist() == test_rows["id"].tolist()  # extra columns as written: 0007 stays 0007
    probabilities = written[["probability_no", "probability_yes"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (written["prediction"] == np.where(probabilities[:, 1] > probabilities[:, 0], "yes", "no")).all()
    # What eval measured on the test split is what these predictions score, row for row.
    correct = (written["prediction"] == written["label"]).mean()
    assert correct == summary_of(run)["test"]["acc"]
    # And the probabilities are the model's, on the split the loader encodes from the training file.
    data = load_table(str(path), "label", split_column="split")
    with torch.inference_mode():
        expected = torch.softmax(rebuild_model(checkpoint, [], []).model(data.test.x), dim=1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_predict_on_new_categories_missing_values_and_missing_columns(classifier: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    path, run = classifier
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    rows = pd.DataFrame({"a": [0.3, 0.3, 0.3, 0.3], "colour": ["purple", "pink", "red", "blue"],
                         "member": [True, True, True, True], "count": [10, 10, None, 10]})
    rows.to_parquet(tmp_path / "new.parquet", index=False)
    result = dlx("predict", checkpoint, str(tmp_path / "new.parquet"), "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["out"] == str(run / "predictions" / "new.parquet")  # the default: RUN/predictions/NAME
    assert "per column: colour 2 (e.g. 'purple')" in result.stderr  # categories never seen: counted
    assert "per column: count 1" in result.stderr  # count had no missing values in training
    written = pd.read_parquet(report["out"])
    probability = written["probability_yes"].to_numpy()
    assert probability[0] == probability[1]  # both unseen: the same all-zero encoding
    assert probability[2] > probability[0] > probability[3]  # red raises the odds, blue lowers them, none between

    rows.drop(columns=["a", "count"]).to_csv(tmp_path / "short.csv", index=False)
    result = dlx("predict", checkpoint, str(tmp_path / "short.csv"), cwd=tmp_path, expect=USER_ERROR)
    assert "short.csv lacks the column(s) a, count, which the model was trained on" in result.stderr
    with pytest.raises(DlxError, match="is the file of rows being read: dlx predict does not overwrite its input"):
        predict(Path(checkpoint), [tmp_path / "new.parquet"], 1, [], [], out=tmp_path / "new.parquet")


def test_a_regression_beats_the_mean_and_predicts_in_the_target_s_units(regression: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    path, run = regression
    summary = summary_of(run)
    assert summary["test"]["loss"] < 0.3  # standardised targets: predicting the mean scores 1.0
    assert 'Target "price": regression' in (run / "train.log").read_text()
    rows = regression_frame(200, seed=7)
    rows.to_csv(tmp_path / "new.csv", index=False)
    dlx("predict", str(run / "checkpoints" / "best.ckpt"), str(tmp_path / "new.csv"), "--out",
        str(tmp_path / "out.parquet"), cwd=tmp_path)
    written = pd.read_parquet(tmp_path / "out.parquet")
    error = ((written["prediction"] - written["price"]) ** 2).mean()
    assert error < 0.3 * written["price"].var()  # in dollars, not standard deviations


@pytest.mark.slow
def test_export_takes_raw_rows_and_its_json_encodes_them(classifier: tuple[Path, Path], tmp_path: Path) -> None:
    import onnxruntime

    path, run = classifier
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    result = dlx("export", checkpoint, "--format", "onnx", "--out", str(tmp_path / "model.onnx"), cwd=tmp_path)
    assert "encoding" in result.stdout
    encoding = json.loads((tmp_path / "model.preprocessing.json").read_text())
    frame = classifier_frame(600)
    rows = frame[frame["split"] == "test"]
    # The JSON alone encodes rows for the graph: numbers as they are (NaN where missing), categories one-hot.
    columns = []
    for name in encoding["inputs"]:
        column, _, category = name.partition("=")
        if not category:
            columns.append(rows[column].to_numpy(np.float32))
        elif category == "(missing)":
            columns.append(rows[column].isna().to_numpy(np.float32))
        else:
            columns.append((rows[column].astype(str) == category).to_numpy(np.float32))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"rows": np.stack(columns, axis=1)})[0]
    # The same probabilities as the checkpoint's model gives on the rows dlx's loader encodes.
    data = load_table(str(path), "label", split_column="split")
    with torch.inference_mode():
        expected = torch.softmax(rebuild_model(Path(checkpoint), [], []).model(data.test.x), dim=1)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), dim=1), expected, atol=1e-5)


def write_bad_inputs(folder: Path) -> None:
    good = classifier_frame(60)
    good.to_csv(folder / "parquet_in_name.parquet", index=False)
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 8)
    good.assign(label="yes").to_csv(folder / "one_class.csv", index=False)
    typo = good.astype({"count": str})
    typo.loc[41, "count"] = "1O"
    typo.to_csv(folder / "typo.csv", index=False)
    (folder / "empty.csv").write_text("a,colour,label\n")
    good.assign(split=np.where(np.arange(60) < 50, "train", "tst")).to_csv(folder / "splits.csv", index=False)
    good.to_csv(folder / "good.csv", index=False)


BAD_INPUTS = {  # file, overrides -> what the message must say
    "missing file": ("nowhere.csv", [], "nowhere.csv does not exist. Point dataset.path at your table file"),
    "parquet that is text": ("parquet_in_name.parquet", [], "is not a Parquet file: it does not start with "
                             "Parquet's marker, and looks like text (a CSV?)"),
    "binary csv": ("binary.csv", [], "binary.csv is a binary file, not text"),
    "no such target": ("good.csv", ["dataset.target=lable"], "dataset.target=lable is not a column of "
                       '{folder}/good.csv. Did you mean "label"?'),
    "no such feature": ("good.csv", ["dataset.features=[a,colur]"], 'dataset.features names "colur", which is not '
                        "a column of"),
    "one class": ("one_class.csv", [], "has one class only ('yes' in every row"),
    "text among numbers": ("typo.csv", [], "Column \"count\" of {folder}/typo.csv holds numbers, but line 43 "
                           "holds '1O'"),
    "empty table": ("empty.csv", [], "empty.csv is an empty table: it has a header (3 columns) but no rows"),
    "odd split values": ("splits.csv", ["dataset.split_column=split"], "must say train, val (or validation) or "
                         "test in every row, but line 52 says 'tst' (10 row(s) in all, saying tst)"),
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    write_bad_inputs(folder)
    return folder


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_tables_get_one_paragraph_naming_the_file_and_the_fix(bad_inputs: Path, case: str) -> None:
    name, overrides, message = BAD_INPUTS[case]
    result = dlx(*train_args(bad_inputs / name, "label", *overrides), cwd=bad_inputs, expect=USER_ERROR)
    assert message.format(folder=bad_inputs) in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
