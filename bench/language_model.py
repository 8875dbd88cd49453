"""A language model of Python's own sources: dlx's GPT and LSTM against a smoothed character n-gram model, in bits
per character on the same held-out files, computed in the same run.

    python bench/language_model.py                 # the corpus, the n-gram baseline, 3 seeds of each experiment
    python bench/language_model.py --write-data py_corpus   # only the corpus folder, to train on it yourself:
    dlx train +experiment=python_gpt dataset.path=py_corpus

The corpus is the .py files of some of the standard library's packages (CORPUS_PACKAGES: about 1.4 MB of this
Python's own sources, installed everywhere, offline), copied into one folder. dlx splits it by whole files
(dataset.split_seed), and the baseline reads the very same split: the experiments' settings are passed to
dlx.data.corpus.split_documents. The baseline is interpolated Kneser-Ney over characters (Chen & Goodman 1998, with
one discount per order), its order chosen on the validation files. Each dlx run's summary.json is kept as
docs/results/EXPERIMENT/seed_S.json; the baseline's as docs/results/python_ngram/baseline.json; the table as
docs/results/language_model.md.
"""

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
CORPUS_PACKAGES = ["asyncio", "email", "http", "urllib", "logging"]
EXPERIMENTS = ["python_gpt", "python_lstm"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import machine, spread  # noqa: E402  (bench/ is a folder of scripts, not a package)


def write_corpus(folder: Path) -> int:
    """The packages' .py files (tests left out) copied into `folder`; the characters written."""
    library = Path(json.__file__).parent.parent
    written = 0
    for package in CORPUS_PACKAGES:
        for source in sorted((library / package).rglob("*.py")):
            if "test" in source.relative_to(library).parts[1:-1]:
                continue
            target = folder / package / source.relative_to(library / package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written += len(source.read_text(encoding="utf-8"))
    return written


class KneserNey:
    """Interpolated Kneser-Ney over characters: P(c | h) = max(count(h c) - D, 0) / count(h) + D * types(h) /
    count(h) * P(c | shorter h), the lower orders counting contexts (continuation counts) rather than
    occurrences; the lowest order is uniform over the characters of the training text plus one for unseen ones."""

    def __init__(self, text: str, order: int) -> None:
        self.order = order
        self.alphabet = len(set(text)) + 1
        # counts[k][(history, char)] for histories of k characters; the highest order counts occurrences, the
        # others the number of distinct characters that precede (history, char).
        self.counts: list[Counter] = [Counter() for _ in range(order)]
        for i in range(len(text)):
            for k in range(order):
                if i - k < 0:
                    break
                self.counts[k][(text[i - k:i], text[i])] += 1
        if order > 1:
            for k in range(order - 1):
                continuation: Counter = Counter()
                for (history, char) in self.counts[k + 1]:
                    continuation[(history[1:], char)] += 1
                self.counts[k] = continuation
        self.totals: list[dict[str, int]] = []
        self.types: list[dict[str, int]] = []
        self.discounts: list[float] = []
        for k in range(order):
            totals: dict[str, int] = defaultdict(int)
            types: dict[str, int] = defaultdict(int)
            for (history, _), count in self.counts[k].items():
                totals[history] += count
                types[history] += 1
            self.totals.append(totals)
            self.types.append(types)
            ones = sum(1 for count in self.counts[k].values() if count == 1)
            twos = sum(1 for count in self.counts[k].values() if count == 2)
            self.discounts.append(ones / (ones + 2 * twos) if ones + twos else 0.75)

    def probability(self, history: str, char: str) -> float:
        probability = 1.0 / self.alphabet
        for k in range(self.order):
            if k > len(history):
                break
            context = history[len(history) - k:] if k else ""
            total = self.totals[k].get(context, 0)
            if not total:
                continue
            discount = self.discounts[k]
            seen = max(self.counts[k].get((context, char), 0) - discount, 0.0) / total
            probability = seen + discount * self.types[k][context] / total * probability
        return probability

    def bits_per_character(self, text: str) -> float:
        bits = 0.0
        for i, char in enumerate(text):
            bits -= math.log2(self.probability(text[max(0, i - self.order + 1):i], char))
        return bits / len(text)


def baseline(corpus: Path, val_fraction: float, test_fraction: float, split_seed: int) -> dict:
    from dlx.data.corpus import Document, corpus_files, split_documents

    documents = [Document(path, path.read_text(encoding="utf-8")) for path in corpus_files(corpus, (".py",))]
    splits = {name: "".join(texts) for name, texts in
              split_documents(documents, val_fraction, test_fraction, split_seed).items()}
    best = None
    for order in range(3, 10):
        model = KneserNey(splits["train"], order)
        val = model.bits_per_character(splits["val"])
        print(f"  {order}-gram: val {val:.4f} bits per character", flush=True)
        if best is None or val < best[0]:
            best = (val, order, model)
    assert best is not None
    val, order, model = best
    return {"order": order, "val_bpc": val, "test_bpc": model.bits_per_character(splits["test"]),
            "characters": {name: len(text) for name, text in splits.items()},
            "model": "interpolated Kneser-Ney over characters, order chosen on val"}


def run(experiment: str, seed: int, corpus: Path) -> dict:
    command = ["dlx", "train", f"+experiment={experiment}", f"dataset.path={corpus.name}", f"trainer.seed={seed}"]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / corpus.name).symlink_to(corpus.resolve())
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "dlx", *command[1:], "hydra.run.dir=run",
                                 f"dataset.cache_dir={folder}/cache"], cwd=folder, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
    return summary | {"command": " ".join(command), "end_to_end_s": round(elapsed, 1), "machine": machine()}


def experiment_splits(experiment: str) -> tuple[float, float, int]:
    from omegaconf import OmegaConf

    dataset = OmegaConf.load(ROOT / "conf" / "experiment" / f"{experiment}.yaml").get("dataset", {})
    defaults = OmegaConf.load(ROOT / "conf" / "dataset" / "text_lm.yaml")
    return tuple(dataset.get(key, defaults[key]) for key in ("val_fraction", "test_fraction", "split_seed"))  # type: ignore[return-value]


def table(base: dict) -> str:
    rows = ["| model | command | test bits per character: mean ± sd over seeds | wall time per run |",
            "| --- | --- | --- | --- |",
            f"| character {base['order']}-gram, interpolated Kneser-Ney (chosen on val) | `python "
            f"bench/language_model.py` | {base['test_bpc']:.3f} | seconds |"]
    for experiment in EXPERIMENTS:
        runs = [json.loads(p.read_text()) for p in sorted((RESULTS / experiment).glob("seed_*.json"))]
        if not runs:
            continue
        bpc = [r["test"]["bpc"] for r in runs]
        rows.append(f"| dlx {experiment} | `dlx train +experiment={experiment} dataset.path=py_corpus` | "
                    f"{statistics.mean(bpc):.3f} ± {spread(bpc):.3f} (n={len(runs)}) | "
                    f"{statistics.mean(r['end_to_end_s'] for r in runs):.0f} s (end to end) |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-data", type=Path, help="only copy the corpus into this folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    args = parser.parse_args()
    if args.write_data:
        print(f"{args.write_data}: {write_corpus(args.write_data):,} characters of Python")
        return
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "py_corpus"
        print(f"corpus: {write_corpus(corpus):,} characters", flush=True)
        base = baseline(corpus, *experiment_splits(EXPERIMENTS[0]))
        (RESULTS / "python_ngram").mkdir(parents=True, exist_ok=True)
        (RESULTS / "python_ngram" / "baseline.json").write_text(json.dumps(base, indent=2) + "\n")
        print(f"baseline: {base}", flush=True)
        for experiment in args.experiments:
            (RESULTS / experiment).mkdir(parents=True, exist_ok=True)
            for seed in args.seeds:
                summary = run(experiment, seed, corpus)
                (RESULTS / experiment / f"seed_{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
                print(f"{experiment} seed {seed}: test {summary['test']}, {summary['end_to_end_s']} s", flush=True)
    text = table(base)
    (RESULTS / "language_model.md").write_text("# A language model of Python's sources\n\nWritten by `python "
                                               f"bench/language_model.py` on {machine()}, a machine shared with "
                                               "other work (wall times are noisy). The raw summaries are beside "
                                               "this file.\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
