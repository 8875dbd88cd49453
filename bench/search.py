"""Benchmark: the same Optuna study with and without a pruner, side by side.

    python bench/search.py                                  # ffn_digits, 20 trials of 15 epochs, seed 0
    python bench/search.py --seeds 0 1 2 --pruners none median hyperband --markdown bench/RESULTS-search.md

Each study is `dlx train -m hparams_search=ffn_digits` (TPE, the shipped search space: learning rate, momentum,
widths, activation, batch size) with the same sampler seed and number of trials, once per pruner, each in a
folder of its own. The report gives, per study: the trials pruned, the optimizer steps trained in total (summed
over the trials' summary.json), the best validation accuracy and the test accuracy of that trial's best
checkpoint, and the wall time. Steps do not depend on the machine's load; wall time does. The exit status is
non-zero unless every pruned study trains at least TARGET_SAVING fewer steps than the unpruned one of its seed.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SAVING = 0.30  # pruned studies train at least 30% fewer steps in total


def run_study(folder: Path, seed: int, pruner: str, trials: int, epochs: int) -> dict[str, Any]:
    """One study through the real CLI; its totals, read back from the sweep's summary.json."""
    name = f"{pruner}-{seed}"
    command = [sys.executable, "-m", "dlx", "train", "-m", "hparams_search=ffn_digits",
               f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.seed={seed}",
               f"hydra.sweeper.pruner={'null' if pruner == 'none' else pruner}", f"trainer.max_epochs={epochs}",
               f"hydra.sweeper.study_name={name}", f"hydra.sweep.dir={folder / name}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    summary = json.loads((folder / name / "summary.json").read_text())
    rows = summary["rows"]
    best = summary["study"]["best"]
    best_row = next(row for row in rows if row["run"] == str(best["number"]))
    return {"pruner": pruner, "seed": seed, "trials": len(rows),
            "pruned": sum(row["status"] == "pruned" for row in rows),
            "steps": sum(row["steps"] or 0 for row in rows), "best_val_acc": best["values"]["val/acc"],
            "best_test_acc": best_row["test/acc"], "best_trial": best["number"], "wall_s": seconds}


def report(results: list[dict[str, Any]]) -> tuple[str, bool]:
    """A markdown table, one row per study, with each pruned study's steps against the unpruned one's."""
    lines = ["| pruner | seed | trials (pruned) | steps trained | steps vs no pruner | best val/acc (trial) | "
             "its test/acc | wall s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    met = True
    for row in results:
        baseline = next(r for r in results if r["seed"] == row["seed"] and r["pruner"] == "none")
        saving = 1 - row["steps"] / baseline["steps"]
        if row["pruner"] != "none":
            met &= saving >= TARGET_SAVING
        lines.append(f"| {row['pruner']} | {row['seed']} | {row['trials']} ({row['pruned']}) | {row['steps']:,} | "
                     + ("-" if row["pruner"] == "none" else f"{-saving:+.0%}")
                     + f" | {row['best_val_acc']:.4f} ({row['best_trial']}) | {row['best_test_acc']:.4f} | "
                       f"{row['wall_s']:.0f} |")
    for pruner in dict.fromkeys(r["pruner"] for r in results):
        mine = [r for r in results if r["pruner"] == pruner]
        if len(mine) > 1:
            lines.append(f"| {pruner}, mean | | | {statistics.mean(r['steps'] for r in mine):,.0f} | | "
                         f"{statistics.mean(r['best_val_acc'] for r in mine):.4f} | "
                         f"{statistics.mean(r['best_test_acc'] for r in mine):.4f} | |")
    return "\n".join(lines), met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pruners", nargs="+", default=["none", "median", "hyperband"])
    parser.add_argument("--markdown", type=Path, help="Also write the table to this file.")
    args = parser.parse_args()
    if "none" not in args.pruners:
        args.pruners.insert(0, "none")
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        for seed in args.seeds:
            for pruner in args.pruners:
                results.append(run_study(Path(temporary), seed, pruner, args.trials, args.epochs))
                print(json.dumps(results[-1]), flush=True)
    table, met = report(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    print(f"target: every pruned study trains at least {TARGET_SAVING:.0%} fewer steps: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
