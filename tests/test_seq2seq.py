"""Encoder-decoders end to end through the real CLI: generated tasks and pairs files train, `dlx eval` reproduces the
test numbers exactly (and decodes by beam search on request), `dlx predict` decodes new sources, a Transformer
killed with SIGKILL resumes to bit-identical weights, two processes train one run, and bad files get one paragraph."""

import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import dlx, latest_run, start_dlx, summary_of, wait_for_step

from dlx.store.checkpoint import load_checkpoint
from dlx.store.metrics import read_metrics

USER_ERROR = 2
METRICS = {"loss", "token_acc", "exact_match", "bleu", "chrf", "cer"}
# A small reversal task and small models: a few seconds per epoch on one core.
REVERSE = ["dataset=generated_pairs", "dataset.task=reverse", "dataset.num_samples=830", "dataset.min_length=2",
           "dataset.max_length=5", "dataset.alphabet=abcdef", "trainer.batch_size=32"]
TRANSFORMER = ["model=seq2seq", "model.d_model=32", "model.num_heads=2", "model.num_encoder_layers=1",
               "model.num_decoder_layers=1", "model.dim_feedforward=64"]
LSTM = ["model=seq2seq_lstm", "model.embedding_dim=16", "model.hidden_size=32"]


def failing(*args: str, cwd: Path) -> str:
    result = dlx(*args, cwd=cwd, expect=USER_ERROR)
    assert "Traceback" not in result.stderr and "error:" in result.stderr, result.stderr
    return " ".join(result.stderr.split())


def number_words(n: int) -> str:
    """English words of 0..999, written here so that the test needs no package."""
    ones = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
           "sixteen seventeen eighteen nineteen".split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    if n < 20:
        return ones[n]
    if n < 100:
        return tens[n // 10] + ("" if n % 10 == 0 else "-" + ones[n % 10])
    rest = n % 100
    return ones[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("transformer")
    dlx("train", *REVERSE, *TRANSFORMER, "trainer.max_epochs=2", "hydra.run.dir=run", cwd=folder)
    return folder / "run"


@pytest.mark.slow
def test_transformer_trains_and_eval_reproduces_its_test_numbers_and_decodes_by_beam(transformer_run: Path) -> None:
    summary = summary_of(transformer_run)
    assert summary["status"] == "completed" and set(summary["test"]) == METRICS
    assert summary["monitor"] == {"metric": "val/chrf", "mode": "max"}
    rows = read_metrics(transformer_run / "metrics.jsonl")
    assert [r["split"] for r in rows if r["split"] != "train"] == ["val", "val", "test"]
    checkpoint = str(transformer_run / "checkpoints" / "best.ckpt")
    evaluated = json.loads(dlx("eval", checkpoint, "--json", cwd=transformer_run).stdout)
    assert evaluated["metrics"] == summary["test"]  # exactly: the same batches, the same greedy decoding
    beam = json.loads(dlx("eval", checkpoint, "beam=3", "--json", cwd=transformer_run).stdout)
    assert beam["beam"] == 3 and set(beam["metrics"]) == METRICS
    # Teacher-forced numbers do not depend on decoding; the decoded ones may.
    assert beam["metrics"]["loss"] == summary["test"]["loss"]
    assert beam["metrics"]["token_acc"] == summary["test"]["token_acc"]
    shown = dlx("eval", checkpoint, "beam=3", cwd=transformer_run).stdout
    assert "beam search of 3" in shown and "exact_match" in shown
    assert "whole number of 1 or more" in failing("eval", checkpoint, "beam=0", cwd=transformer_run)
    dlx("plot", str(transformer_run), "--metric", "val/exact_match", "--out", "curves.png", cwd=transformer_run)
    assert (transformer_run / "curves.png").stat().st_size > 0
    report = dlx("report", str(transformer_run), cwd=transformer_run).stdout
    assert "report.html" in report and "exact_match" in (transformer_run / "report.html").read_text()


@pytest.mark.slow
def test_predict_decodes_a_text_file_and_a_table(transformer_run: Path, tmp_path: Path) -> None:
    checkpoint = str(transformer_run / "checkpoints" / "best.ckpt")
    (tmp_path / "sources.txt").write_text("abc\nfed\ncafe\n")
    printed = dlx("predict", checkpoint, str(tmp_path / "sources.txt"), cwd=tmp_path).stdout
    assert "3 source(s)" in printed and "greedy decoding" in printed and "cafe" in printed
    result = json.loads(dlx("predict", checkpoint, str(tmp_path / "sources.txt"), "--beam", "2", "--json",
                            cwd=tmp_path).stdout)
    assert [row["source"] for row in result["predictions"]] == ["abc", "fed", "cafe"] and result["beam"] == 2
    dlx("predict", checkpoint, str(tmp_path / "sources.txt"), "--out", str(tmp_path / "out.txt"), cwd=tmp_path)
    greedy = [row["prediction"] for row in json.loads(dlx("predict", checkpoint, str(tmp_path / "sources.txt"),
                                                              "--json", cwd=tmp_path).stdout)["predictions"]]
    assert (tmp_path / "out.txt").read_text().splitlines() == greedy
    (tmp_path / "rows.csv").write_text("id,source\n1,abc\n2,fed\n")
    dlx("predict", checkpoint, str(tmp_path / "rows.csv"), "--out", str(tmp_path / "out.csv"), cwd=tmp_path)
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "id,source,prediction" and lines[1].startswith("1,abc,") and len(lines) == 3

    (tmp_path / "gaps.txt").write_text("abc\n\nfed\n")
    assert "empty line(s) (line 2)" in failing("predict", checkpoint, str(tmp_path / "gaps.txt"), cwd=tmp_path)
    (tmp_path / "unknown.txt").write_text("abz\n")
    result = dlx("predict", checkpoint, str(tmp_path / "unknown.txt"), cwd=tmp_path)
    assert "read as [UNK]" in result.stderr and "'z'" in result.stderr
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert "byte offset 3 (line 1)" in failing("predict", checkpoint, str(tmp_path / "latin1.txt"), cwd=tmp_path)
    assert "does not overwrite its input" in failing("predict", checkpoint, str(tmp_path / "sources.txt"), "--out",
                                                     str(tmp_path / "sources.txt"), cwd=tmp_path)


@pytest.mark.slow
def test_the_exported_encoder_and_decoder_decode_as_dlx_predict_does(transformer_run: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    checkpoint = str(transformer_run / "checkpoints" / "best.ckpt")
    result = dlx("export", checkpoint, "--format", "onnx", "--out", str(tmp_path / "rev.onnx"), cwd=tmp_path)
    assert "Checked: run by onnxruntime, both files" in result.stdout
    encoder, decoder = (onnxruntime.InferenceSession(str(tmp_path / f"rev.{part}.onnx")) for part in ("encoder",
                                                                                                       "decoder"))
    tokenizer = Tokenizer.from_file(str(tmp_path / "rev.tokenizer.json"))
    (tmp_path / "sources.txt").write_text("abcd\nfe\n")
    expected = [row["prediction"] for row in json.loads(dlx("predict", checkpoint, str(tmp_path / "sources.txt"),
                                                                "--json", cwd=tmp_path).stdout)["predictions"]]
    for source, prediction in zip(["abcd", "fe"], expected):  # greedy decoding, as the export's metadata says
        src = np.array([tokenizer.encode(source, add_special_tokens=False).ids], dtype=np.int64)
        memory = encoder.run(None, {"source_ids": src})[0]
        limit = int(decoder.get_modelmeta().custom_metadata_map["dlx.max_target_length"])  # [BOS] ... [EOS]
        target = [2]
        while target[-1] != 3 and len(target) < limit:
            logits = decoder.run(None, {"memory": memory, "source_ids": src,
                                        "target_ids": np.array([target], dtype=np.int64)})[0]
            step = logits[0, -1].copy()
            step[[0, 2]] = -np.inf  # [PAD] and [BOS] are never predicted
            target.append(int(step.argmax()))
        assert tokenizer.decode([token for token in target[1:] if token != 3]) == prediction


@pytest.mark.slow
def test_lstm_with_attention_learns_to_reverse(workdir: Path) -> None:
    dlx("train", *REVERSE, *LSTM, "optimizer.lr=0.01", "trainer.max_epochs=6", cwd=workdir)
    run = latest_run(workdir)
    test = summary_of(run)["test"]
    assert test["exact_match"] >= 0.9 and test["cer"] <= 0.05, test
    assert "packs each source by its length" in failing("export", str(run / "checkpoints" / "best.ckpt"), cwd=workdir)


@pytest.mark.slow
def test_a_pairs_file_trains_with_bpe_and_predicts_on_a_table_column(workdir: Path) -> None:
    lines = ["number\twords"] + [f"{n}\t{number_words(n)}" for n in range(0, 1000, 3)]
    (workdir / "numbers.tsv").write_text("\n".join(lines) + "\n")
    result = dlx("train", "dataset=pairs", "dataset.path=numbers.tsv", "dataset.source_column=number",
                 "dataset.target_column=words", "dataset.tokenizer=bpe", "dataset.vocab_size=300",
                 "dataset.max_length=6", *LSTM, "trainer.max_epochs=1", cwd=workdir)
    assert "Pairs numbers.tsv: 334 rows" in result.stdout and "target(s)" in result.stdout  # cut at 6, counted
    run = latest_run(workdir)
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["config"]["model"]["max_target_length"] == 6
    (workdir / "new.tsv").write_text("words\tnumber\nx\t17\ny\t905\n")
    dlx("predict", str(run / "checkpoints" / "best.ckpt"), "new.tsv", "--out", "predicted.tsv", cwd=workdir)
    assert (workdir / "predicted.tsv").read_text().splitlines()[0] == "words\tnumber\tprediction"
    (workdir / "other.csv").write_text("numbers\n17\n")
    stderr = failing("predict", str(run / "checkpoints" / "best.ckpt"), "other.csv", cwd=workdir)
    assert "dataset.source_column=number is not a column of other.csv" in stderr and 'Did you mean "numbers"?' in stderr


BAD_FILES = {
    "missing column": ("src\ttarget\nab\tba\n", ["dataset.source_column=source is not a column", 'Did you mean "src"?']),
    "empty file": ("", ["is an empty table"]),
    "header only": ("source\ttarget\n", ["is an empty table", "no rows"]),
    "empty rows": ("source\ttarget\nab\tba\n\tx\ncd\t \n", ["2 row(s) with an empty", "line 3, line 4",
                                                            "dataset.empty_rows=skip"]),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_pairs_file_gets_one_paragraph(name: str, workdir: Path) -> None:
    content, fragments = BAD_FILES[name]
    (workdir / "pairs.tsv").write_text(content)
    stderr = failing("train", "dataset=pairs", "dataset.path=pairs.tsv", "model=seq2seq", "trainer.smoke=true",
                     cwd=workdir)
    for fragment in fragments:
        assert fragment in stderr, stderr


@pytest.mark.slow
def test_a_file_that_is_not_utf8_is_named_with_its_offset_or_read_with_replacement(workdir: Path) -> None:
    rows = "source\ttarget\n" + "".join(f"{a}{b}\t{b}{a}\n" for a in "abcdef" for b in "abcdef")
    (workdir / "pairs.tsv").write_bytes((rows + "caf\xe9\tx\n").encode("latin-1"))
    args = ["train", "dataset=pairs", "dataset.path=pairs.tsv", "model=seq2seq", "trainer.smoke=true"]
    offset = len(rows.encode()) + 3
    stderr = failing(*args, cwd=workdir)
    assert f"byte offset {offset:,} (line 38)" in stderr and "dataset.encoding_errors=replace" in stderr
    result = dlx(*args, "dataset.encoding_errors=replace", cwd=workdir)
    assert "1 character(s) that were not UTF-8 replaced by U+FFFD" in result.stdout
    (workdir / "pairs.tsv").write_text(rows + "\tx\n")
    result = dlx(*args, "dataset.empty_rows=skip", cwd=workdir)
    assert "1 row(s) with an empty source or target left out" in result.stdout and "line 38" in result.stdout


@pytest.mark.slow
def test_models_and_data_that_do_not_fit_say_so(workdir: Path) -> None:
    assert "is one of the encoder-decoders, but this data set gives images or numbers" in failing(
        "train", "model=seq2seq", "trainer.smoke=true", cwd=workdir)
    assert "gives pairs of sequences. Choose one of the encoder-decoders" in failing(
        "train", "model=lstm", *REVERSE, "trainer.smoke=true", cwd=workdir)
    assert "Use loss=cross_entropy" in failing("train", *TRANSFORMER, *REVERSE, "loss=mse", "trainer.smoke=true",
                                               cwd=workdir)
    assert "expects one of reverse, sort, addition" in failing("train", *TRANSFORMER, *REVERSE, "dataset.task=sum",
                                                         "trainer.smoke=true", cwd=workdir)


@pytest.mark.slow
def test_transformer_killed_mid_epoch_resumes_to_bit_identical_weights(workdir: Path) -> None:
    # 830 pairs: 672 training pairs, 21 batches of 32 per epoch; saves every 5 steps, between validations.
    args = [*REVERSE, *TRANSFORMER, "trainer.max_epochs=4", "trainer.checkpoint_every=5", "trainer.log_every=1",
            "trainer.eval_every=30"]
    dlx("train", *args, "hydra.run.dir=uninterrupted", cwd=workdir)
    process = start_dlx(["train", *args, "hydra.run.dir=killed"], workdir)
    wait_for_step(process, workdir / "killed" / "metrics.jsonl", 47)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["state"]
    assert 45 <= killed_at["step"] < 84 and 0 < killed_at["batch_in_epoch"] < 21  # really mid-epoch
    dlx("train", *args, "hydra.run.dir=killed", "trainer.resume=auto", cwd=workdir)
    expected = load_checkpoint(workdir / "uninterrupted" / "checkpoints" / "last.ckpt")["model"]
    resumed = load_checkpoint(workdir / "killed" / "checkpoints" / "last.ckpt")["model"]
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert summary_of(workdir / "killed")["test"] == summary_of(workdir / "uninterrupted")["test"]


@pytest.mark.slow
def test_two_processes_train_one_run_that_a_single_process_evaluates(workdir: Path) -> None:
    dlx("train", *REVERSE, *LSTM, "trainer.devices=2", "trainer.device=cpu", "trainer.max_epochs=1", cwd=workdir,
        timeout=180)
    run = latest_run(workdir)
    summary = summary_of(run)
    first, second = summary["distributed"]["weights_sha256_per_rank"]
    assert summary["status"] == "completed" and first == second
    result = dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir)
    assert json.loads(result.stdout)["metrics"] == summary["test"]


def test_a_sweep_trains_both_encoder_decoders(workdir: Path) -> None:
    dlx("train", "-m", "model=seq2seq,seq2seq_lstm", *REVERSE, "trainer.smoke=true", "hydra.sweep.dir=sweep",
        cwd=workdir)
    rows = json.loads((workdir / "sweep" / "summary.json").read_text())["rows"]
    assert [row["status"] for row in rows] == ["completed", "completed"]
