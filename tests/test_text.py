"""Text through the real CLI: classifiers of a CSV and of a folder of .txt files, a language model of a real corpus
(Python's json sources), predict and sample, the token cache, and every bad input's message."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import JSON_SOURCES, LANGUAGE_MODEL_DATA, MODEL_DATA, dlx, latest_run, summary_of

from dlx.store.checkpoint import load_checkpoint

USER_ERROR = 2
TOPICS = {"sport": "ball goal team match score player coach win league referee".split(),
          "food": "bread cheese soup salad taste cook kitchen spicy sweet oven".split(),
          "tech": "computer code software chip network data program server bug laptop".split()}
FILLER = "the a of and to in is it that with for on this was my our".split()
SMALL_TEXT = ["dataset.max_length=32", "trainer.max_epochs=6", "optimizer.lr=0.003"]


def topic_texts(count: int, seed: int) -> list[tuple[str, str]]:
    """Short texts whose topic shows in a few of their words, the rest filler: (text, topic)."""
    generator = random.Random(seed)
    rows = []
    for _ in range(count):
        topic = generator.choice(sorted(TOPICS))
        words = [generator.choice(TOPICS[topic]) if generator.random() < 0.3 else generator.choice(FILLER)
                 for _ in range(generator.randint(6, 24))]
        rows.append((" ".join(words), topic))
    return rows


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "reviews.csv"
    pd.DataFrame(topic_texts(600, seed=0), columns=["review", "topic"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("model", "tokenizer"), [("lstm", "word"),
                                                  pytest.param("transformer", "bpe", marks=pytest.mark.slow)])
def test_a_text_classifier_learns_a_csv_and_classifies_new_texts(model: str, tokenizer: str, texts_csv: Path,
                                                                 workdir: Path) -> None:
    dlx("train", "dataset=text", f"dataset.path={texts_csv}", "dataset.text_column=review",
        "dataset.label_column=topic", f"model={model}", f"dataset.tokenizer={tokenizer}", *SMALL_TEXT, cwd=workdir)
    run = latest_run(workdir)
    summary = summary_of(run)
    assert summary["test"]["acc"] >= 0.9, summary["test"]
    checkpoint = run / "checkpoints" / "best.ckpt"
    evaluated = json.loads(dlx("eval", str(checkpoint), "--json", cwd=workdir).stdout)
    assert evaluated["metrics"] == summary["test"]  # exactly
    saved = load_checkpoint(checkpoint)["data"]["tokenizer"]
    assert isinstance(saved, str) and json.loads(saved)["model"]["type"] == {"word": "WordLevel", "bpe": "BPE"}[tokenizer]

    new = workdir / "new.txt"
    new.write_text("the referee gave the team a goal\n\nspicy soup with bread from the oven\nthe server code has a bug\n")
    predicted = json.loads(dlx("predict", str(checkpoint), str(new), "--json", cwd=workdir).stdout)["predictions"]
    assert [p["class"] for p in predicted] == ["sport", "food", "tech"]  # the empty line is skipped
    out = workdir / "predicted.csv"
    dlx("predict", str(checkpoint), str(texts_csv), "--out", str(out), cwd=workdir)
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["review", "topic", "prediction", "probability_food", "probability_sport",
                                  "probability_tech"]
    assert (rows["prediction"] == rows["topic"]).mean() >= 0.9


def test_a_folder_of_text_files_with_fixed_splits(workdir: Path) -> None:
    root = workdir / "corpus"
    for split, count, seed in (("train", 300, 1), ("val", 40, 2), ("test", 60, 3)):
        for index, (text, topic) in enumerate(topic_texts(count, seed)):
            (root / split / topic).mkdir(parents=True, exist_ok=True)
            (root / split / topic / f"{index}.txt").write_text(text, encoding="utf-8")
    (root / "train" / "food" / "empty.txt").write_text("  \n")
    result = dlx("train", "dataset=text", f"dataset.path={root}", "dataset.tokenizer=char", "dataset.vocab_size=400",
                 "model=gru", *SMALL_TEXT, "trainer.max_epochs=8", cwd=workdir)
    assert "Left out 1 empty text file(s)" in result.stdout
    summary = summary_of(latest_run(workdir))
    assert "300 training, 40 validation, 60 test samples" in result.stdout
    assert summary["test"]["acc"] >= 0.8, summary["test"]


@pytest.mark.slow
def test_a_language_model_of_python_sources_learns_and_samples_reproducibly(workdir: Path) -> None:
    args = ["train", "model=gpt", *MODEL_DATA["gpt"], "trainer.batch_size=16", "optimizer.lr=0.003",
            "trainer.max_epochs=5"]
    first = dlx(*args, cwd=workdir)
    assert "tokenised now, and cached" in first.stdout
    run = latest_run(workdir)
    summary = summary_of(run)
    # A model that learnt nothing but the characters' frequencies scores their entropy: it must do much better.
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(JSON_SOURCES.glob("*.py")))
    counts = torch.tensor([text.count(c) for c in set(text)], dtype=torch.float64)
    unigram_bits = float(-(counts / counts.sum() * (counts / counts.sum()).log2()).sum())
    assert summary["test"]["bpc"] < unigram_bits - 0.75, (summary["test"], unigram_bits)
    assert summary["test"]["perplexity"] == pytest.approx(torch.tensor(summary["test"]["loss"]).exp().item(), rel=1e-6)
    assert json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir).stdout)["metrics"] \
        == summary["test"]

    second = dlx(*args, "trainer.max_epochs=1", cwd=workdir)
    assert "from the token cache" in second.stdout  # tokenised once

    checkpoint = str(run / "checkpoints" / "best.ckpt")
    sample = ["sample", checkpoint, "--prompt", "def ", "--max-tokens", "40", "--top-k", "5"]
    once, again = dlx(*sample, cwd=workdir).stdout, dlx(*sample, cwd=workdir).stdout
    other = dlx(*sample, "--seed", "1", cwd=workdir).stdout
    assert once == again and once != other and once.startswith("def ")
    greedy = dlx(*sample, "-t", "0", "-n", "2", cwd=workdir).stdout[:-1]  # two texts, a blank line between
    half = (len(greedy) - 2) // 2
    assert greedy[:half] == greedy[half + 2:]  # temperature 0: the most likely token, every time
    refused = dlx("sample", checkpoint, "--prompt", "naïve ☃", cwd=workdir, expect=USER_ERROR)
    assert "lacks: 'ï' '☃'" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_text_models_refuse_data_they_cannot_read(texts_csv: Path, workdir: Path) -> None:
    text = ["dataset=text", f"dataset.path={texts_csv}", "dataset.text_column=review", "dataset.label_column=topic"]
    (workdir / "empty.txt").write_text("")
    for topic, content in (("blank", " \n"), ("full", "some text")):
        (workdir / "folder" / topic).mkdir(parents=True)
        (workdir / "folder" / topic / "1.txt").write_text(content)
    cases = [
        (["model=gpt", "dataset=text_lm", f"dataset.path={workdir / 'empty.txt'}", "dataset.cache_dir=cache"],
         "empty.txt holds no text"),
        (["model=lstm", "dataset=text", f"dataset.path={workdir / 'folder'}"],
         f"The class folder {workdir / 'folder' / 'blank'} holds only empty .txt files"),
        ([*text, "model=ffn"], "is one of the models of images or numbers, but this data set gives texts and their "
                               "classes. Choose one of the classifiers of text"),
        ([*text, "model=gpt"], "is one of the language models, but this data set gives texts and their classes"),
        (["model=lstm", *LANGUAGE_MODEL_DATA], "gives a corpus for a language model. Choose one of the language models"),
        (["model=gpt"], "GPT (dlx.models.gpt.GPT) is one of the language models, but this data set gives images or "
                        "numbers. Choose one of the models of images or numbers (model=ffn, cnn, lstm, ...), or train "
                        "GPT on dataset=text_lm dataset.path=FILE."),
        ([*text[:2], "dataset.text_column=reveiw", "model=lstm"],
         'dataset.text_column=reveiw is not a column of'),
        (["model=gpt", *LANGUAGE_MODEL_DATA, "dataset.block_size=100000"], "fewer tokens than one block"),
        (["model=gpt", *LANGUAGE_MODEL_DATA, "dataset.tokenizer=word"], "dataset.tokenizer=word reads text as words"),
        (["model=gpt", "dataset=text_lm", f"dataset.path={workdir / 'nowhere'}"], "does not exist"),
    ]
    for args, message in cases:
        result = dlx("train", *args, "trainer.smoke=true", cwd=workdir, expect=USER_ERROR)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert "Did you mean \"review\"" in dlx("train", *text[:2], "dataset.text_column=reveiw", "model=lstm",
                                            cwd=workdir, expect=USER_ERROR).stderr


@pytest.mark.slow
def test_text_that_is_not_utf8_is_named_with_its_byte_or_read_with_replacements(workdir: Path) -> None:
    rows = "".join(f"{text},{topic}\n" for text, topic in topic_texts(200, seed=5))
    data = ("text,label\n" + rows).encode("utf-8")
    bad = data[:1000] + b"caf\xe9 " + data[1000:]  # Latin-1 é among UTF-8
    path = workdir / "latin.csv"
    path.write_bytes(bad)
    args = ["train", "dataset=text", f"dataset.path={path}", "model=lstm", "trainer.smoke=true"]
    refused = dlx(*args, cwd=workdir, expect=USER_ERROR)
    line = data[:1000].count(b"\n") + 1
    assert f"{path} is not UTF-8 text: byte offset 1,003 (line {line}) holds b'\\xe9" in refused.stderr
    assert "dataset.encoding_errors=replace" in refused.stderr and "Traceback" not in refused.stderr
    accepted = dlx(*args, "dataset.encoding_errors=replace", cwd=workdir)
    assert "1 character(s) that were not UTF-8 replaced by U+FFFD" in accepted.stdout

    corpus = workdir / "corpus.txt"
    corpus.write_bytes(b"plain text\n" * 10 + b"\xff\xfe" + b"more text\n" * 10)
    refused = dlx("train", "model=gpt", "dataset=text_lm", f"dataset.path={corpus}", "trainer.smoke=true",
                  cwd=workdir, expect=USER_ERROR)
    assert "byte offset 110 (line 11) holds b'\\xff\\xfe" in refused.stderr


@pytest.mark.slow
def test_two_processes_train_one_text_classifier(texts_csv: Path, workdir: Path) -> None:
    dlx("train", "dataset=text", f"dataset.path={texts_csv}", "dataset.text_column=review",
        "dataset.label_column=topic", "model=lstm", *SMALL_TEXT, "trainer.max_epochs=2", "trainer.devices=2",
        "trainer.device=cpu", cwd=workdir, timeout=600)
    run = latest_run(workdir)
    summary = summary_of(run)
    digests = summary["distributed"]["weights_sha256_per_rank"]
    assert summary["status"] == "completed" and len(digests) == 2 and digests[0] == digests[1]
    evaluated = json.loads(dlx("eval", str(run / "checkpoints" / "best.ckpt"), "--json", cwd=workdir).stdout)
    assert evaluated["metrics"] == pytest.approx(summary["test"], rel=1e-6)


def test_a_checkpoint_is_not_evaluated_on_texts_that_changed_since(workdir: Path) -> None:
    path = workdir / "texts.csv"
    pd.DataFrame(topic_texts(200, seed=7), columns=["text", "label"]).to_csv(path, index=False)
    dlx("train", "dataset=text", f"dataset.path={path}", "model=lstm", "trainer.smoke=true", "hydra.run.dir=run",
        cwd=workdir)
    pd.DataFrame([(text.upper() + " zebra quartz", label) for text, label in topic_texts(200, seed=8)],
                 columns=["text", "label"]).to_csv(path, index=False)
    refused = dlx("eval", "run/checkpoints/best.ckpt", cwd=workdir, expect=USER_ERROR)
    assert "differ from those run/checkpoints/best.ckpt was trained on, in: tokenizer" in refused.stderr
