"""Text classification on the topics of Debian's `fortunes` package: dlx's LSTM and Transformer against TF-IDF with
logistic regression (scikit-learn), on the same splits, in the same run.

    apt-get install fortunes                              # BSD-licensed quotes, one file per topic
    python bench/text.py                                  # data, baseline, 3 seeds of each experiment, the table
    python bench/text.py --write-data fortunes.csv        # only the CSV, to train on it yourself:
    dlx train +experiment=fortunes_transformer dataset.path=fortunes.csv

The CSV has one row per fortune: its text, its topic (the file it comes from) and its split (70% train, 10% val,
20% test, stratified by topic, fixed by a seed), so dlx (`dataset.split_column=split`) and the baseline see the
same texts. The baseline's regularisation (C) and n-gram range are chosen on the validation split, as dlx's best
checkpoint is. Each dlx run's summary.json is kept as docs/results/EXPERIMENT/seed_S.json with its command and
end-to-end time; the baseline's scores as docs/results/fortunes_tfidf/baseline.json; the table as
docs/results/text.md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
FORTUNES = Path("/usr/share/games/fortunes")
TOPICS = ["computers", "politics", "science", "food", "sports", "law", "education", "medicine"]
EXPERIMENTS = ["fortunes_lstm", "fortunes_transformer"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import machine, spread  # noqa: E402  (bench/ is a folder of scripts, not a package)


def fortunes(topic: str) -> list[str]:
    """The quotes of one topic file: separated by lines holding a single %."""
    text = (FORTUNES / topic).read_text(encoding="utf-8", errors="replace")
    quotes = [" ".join(quote.split()) for quote in text.split("\n%\n")]
    return [quote for quote in quotes if quote and quote != "%"]


def write_data(path: Path, seed: int = 0) -> pd.DataFrame:
    rows = [(quote, topic) for topic in TOPICS for quote in dict.fromkeys(fortunes(topic))]  # duplicates once
    frame = pd.DataFrame(rows, columns=["text", "topic"])
    generator = np.random.default_rng(seed)
    frame["split"] = "train"
    for _, group in frame.groupby("topic"):
        order = generator.permutation(group.index.to_numpy())
        test, val = round(len(order) * 0.2), round(len(order) * 0.1)
        frame.loc[order[:test], "split"] = "test"
        frame.loc[order[test:test + val], "split"] = "val"
    frame.to_csv(path, index=False)
    return frame


def baseline(frame: pd.DataFrame) -> dict:
    """TF-IDF of words (and word pairs) with logistic regression, C and n-grams chosen on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    split = {name: frame[frame["split"] == name] for name in ("train", "val", "test")}
    best = None
    for ngrams in ((1, 1), (1, 2)):
        vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True, min_df=1)
        x_train = vectorizer.fit_transform(split["train"]["text"])
        for c in (0.3, 1.0, 3.0, 10.0, 30.0):
            model = LogisticRegression(C=c, max_iter=2000).fit(x_train, split["train"]["topic"])
            val = float((model.predict(vectorizer.transform(split["val"]["text"])) == split["val"]["topic"]).mean())
            if best is None or val > best[0]:
                best = (val, ngrams, c, vectorizer, model)
    assert best is not None
    val, ngrams, c, vectorizer, model = best
    test = float((model.predict(vectorizer.transform(split["test"]["text"])) == split["test"]["topic"]).mean())
    return {"val_acc": val, "test_acc": test, "ngram_range": list(ngrams), "C": c,
            "model": "TfidfVectorizer(sublinear_tf=True) + LogisticRegression, chosen on val"}


def run(experiment: str, seed: int, data: Path) -> dict:
    command = ["dlx", "train", f"+experiment={experiment}", f"dataset.path={data.name}", f"trainer.seed={seed}"]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / data.name).symlink_to(data.resolve())
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "dlx", *command[1:], "hydra.run.dir=run"],
                                cwd=folder, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
    return summary | {"command": " ".join(command), "end_to_end_s": round(elapsed, 1), "machine": machine()}


def table(base: dict) -> str:
    rows = ["| model | command | test accuracy: mean ± sd over seeds | wall time per run |", "| --- | --- | --- | --- |",
            f"| TF-IDF + logistic regression (scikit-learn; n-grams {tuple(base['ngram_range'])}, C={base['C']}, chosen "
            f"on val) | `python bench/text.py` | {100 * base['test_acc']:.2f}% | seconds |"]
    for experiment in EXPERIMENTS:
        runs = [json.loads(p.read_text()) for p in sorted((RESULTS / experiment).glob("seed_*.json"))]
        if not runs:
            continue
        accuracy = [r["test"]["acc"] for r in runs]
        rows.append(f"| dlx {experiment} | `dlx train +experiment={experiment} dataset.path=fortunes.csv` | "
                    f"{100 * statistics.mean(accuracy):.2f}% ± {100 * spread(accuracy):.2f} (n={len(runs)}) | "
                    f"{statistics.mean(r['end_to_end_s'] for r in runs):.0f} s (end to end) |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-data", type=Path, help="only write the CSV of fortunes to this file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    args = parser.parse_args()
    if not FORTUNES.is_dir():
        raise SystemExit(f"{FORTUNES} does not exist: apt-get install fortunes")
    if args.write_data:
        frame = write_data(args.write_data)
        print(f"{args.write_data}: {len(frame):,} fortunes of {frame['topic'].nunique()} topics")
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "fortunes.csv"
        frame = write_data(data)
        print(f"{len(frame):,} fortunes: {frame.groupby('topic').size().to_dict()}", flush=True)
        base = baseline(frame)
        (RESULTS / "fortunes_tfidf").mkdir(parents=True, exist_ok=True)
        (RESULTS / "fortunes_tfidf" / "baseline.json").write_text(json.dumps(base, indent=2) + "\n")
        print(f"baseline: {base}", flush=True)
        for experiment in args.experiments:
            (RESULTS / experiment).mkdir(parents=True, exist_ok=True)
            for seed in args.seeds:
                summary = run(experiment, seed, data)
                (RESULTS / experiment / f"seed_{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
                print(f"{experiment} seed {seed}: test {summary['test']}, {summary['end_to_end_s']} s", flush=True)
    text = table(base)
    (RESULTS / "text.md").write_text("# Text classification: the topics of Debian's fortunes\n\nWritten by `python "
                                     f"bench/text.py` on {machine()}, a machine shared with other work (wall times "
                                     "are noisy). The raw summaries are beside this file.\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
