"""Run the shipped experiments (conf/experiment/) for several seeds and write the results table.

    python bench/experiments.py fashion_mlp fashion_cnn ...   # each for seeds 0 1 2, one process at a time
    python bench/experiments.py --table                        # only rebuild the table from docs/results/

Each run is `dlx train +experiment=NAME trainer.seed=S dataset.root=...` as a whole process, timed from start to
exit (imports and data loading included). Its summary.json is kept as docs/results/NAME/seed_S.json, with the
end-to-end time and the machine added; a GAN row also gets its classifier score (`dlx eval GAN
classifier=CLASSIFIER`, the classifier being the seed's fashion_cnn run). docs/results/README.md is the table
the project README shows: mean and spread of test accuracy over the seeds, and wall time.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
FASHION = "/usr/share/datasets/fashion-mnist"
# Published accuracies: the tutorial's FFN, and rows of the Fashion-MNIST README's benchmark table.
PUBLISHED = {"tutorial_ffn": 0.956, "fashion_mlp": 0.8833, "fashion_cnn": 0.934}
CLASSIFIER_FOR = {"fashion_gan": "fashion_cnn", "tutorial_gan": "tutorial_cnn"}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()}"


def run(name: str, seed: int, root: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "dlx", "train", f"+experiment={name}", f"trainer.seed={seed}",
                   f"dataset.root={root}", "hydra.run.dir=run"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
        summary |= {"command": f"dlx train +experiment={name} trainer.seed={seed} dataset.root={root}",
                    "end_to_end_s": round(elapsed, 1), "machine": machine()}
        classifier = CLASSIFIER_FOR.get(name)
        if classifier and (RESULTS / classifier / f"seed_{seed}.ckpt").exists():
            summary["gan_score"] = gan_score(Path(folder) / "run" / "checkpoints" / "best.ckpt",
                                             RESULTS / classifier / f"seed_{seed}.ckpt", folder)
        keep_classifier(name, seed, Path(folder))
        return summary


def keep_classifier(name: str, seed: int, folder: Path) -> None:
    """A classifier checkpoint a GAN row is scored with is kept beside the results (not committed)."""
    if name in CLASSIFIER_FOR.values():
        shutil.copyfile(folder / "run" / "checkpoints" / "best.ckpt", RESULTS / name / f"seed_{seed}.ckpt")


def gan_score(gan: Path, classifier: Path, cwd: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "dlx", "eval", str(gan), f"classifier={classifier}", "--json"],
                            cwd=cwd, capture_output=True, text=True, check=True)
    return {key: value for key, value in json.loads(result.stdout)["metrics"].items()
            if key in ("classifier_score", "class_entropy", "top_class_fraction")}


def table() -> str:
    rows = ["| experiment | command | published | dlx, test split: mean ± sd over seeds | wall time per run | machine |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml")):
        if name.startswith(("seq2seq_", "python_", "fortunes_")):
            continue  # sequences: measured by bench/seq2seq.py, language_model.py and text.py (docs/results/*.md)
        runs = [json.loads(path.read_text()) for path in sorted((RESULTS / name).glob("seed_*.json"))]
        published = f"{100 * PUBLISHED[name]:.2f}%" if name in PUBLISHED else "—"
        if not runs:
            rows.append(f"| {name} | `dlx train +experiment={name} dataset.root=...` | {published} | not measured here "
                        "(no MNIST on this machine) | | |")
            continue
        times = [run["end_to_end_s"] for run in runs]
        if "gan_score" in runs[0]:
            scores = [run["gan_score"]["classifier_score"] for run in runs]
            entropy = [run["gan_score"]["class_entropy"] for run in runs]
            result = (f"classifier score {statistics.mean(scores):.2f} ± {spread(scores):.2f}, class entropy "
                      f"{statistics.mean(entropy):.2f} (n={len(runs)})")
        else:
            accuracy = [run["test"]["acc"] for run in runs]
            result = f"{100 * statistics.mean(accuracy):.2f}% ± {100 * spread(accuracy):.2f} (n={len(runs)})"
        rows.append(f"| {name} | `dlx train +experiment={name} dataset.root=...` | {published} | {result} | "
                    f"{statistics.mean(times):.0f} s (end to end) | {runs[0]['machine']} |")
    return "\n".join(rows) + "\n"


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default=FASHION, help="the folder with the IDX files")
    parser.add_argument("--table", action="store_true", help="only rebuild docs/results/README.md")
    args = parser.parse_args()
    for name in args.experiments:
        (RESULTS / name).mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            summary = run(name, seed, args.root)
            (RESULTS / name / f"seed_{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(f"{name} seed {seed}: test {summary['test']}, {summary['end_to_end_s']} s", flush=True)
    text = table()
    (RESULTS / "README.md").write_text("# Results of the shipped experiments\n\nWritten by `python "
                                       "bench/experiments.py`; each row's runs are the seed_*.json beside it. "
                                       "How fashion_cnn's settings were chosen, on the validation split: "
                                       "[fashion_cnn/selection.md](fashion_cnn/selection.md).\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
