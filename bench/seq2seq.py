"""Measure the encoder-decoders through the real CLI: exact match on held-out pairs of the generated reversal and
addition tasks (the shipped experiments), and of a pairs file of numbers written in English words and in digits.

    python bench/seq2seq.py                          # reverse, addition, numbers; seeds 0 1 2, one run at a time
    python bench/seq2seq.py numbers --seeds 0        # one task, one seed
    python bench/seq2seq.py --table                  # only rebuild docs/results/seq2seq.md from the kept summaries

Each run is `dlx train +experiment=seq2seq_TASK trainer.seed=S` as a whole process, timed from start to exit
(imports, data and tokenizer, training, validation and the test of the best checkpoint), then `dlx eval
best.ckpt beam=4 --json` on the same test split. The numbers file is written first, the same for every seed:
every number from 0 to 9,999 in digits and in words (num2words, `pip install num2words`), a tab between them. Each
run's summary.json is kept as docs/results/seq2seq_TASK/seed_S.json with the commands, the end-to-end time, the
beam-search test metrics, the machine, its load average when the run started (the machine is shared) and
OMP_NUM_THREADS (set it to 1 to run several tasks side by side: `OMP_NUM_THREADS=1 python bench/seq2seq.py reverse &`);
its best checkpoint is kept beside it as seed_S.ckpt (not committed: *.ckpt is ignored) for `dlx predict`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments import RESULTS, machine, spread

TASKS = {
    "reverse": ["+experiment=seq2seq_reverse"],
    "addition": ["+experiment=seq2seq_addition"],
    "numbers": ["+experiment=seq2seq_numbers", "dataset.path=numbers.tsv"],
}
DESCRIPTIONS = {
    "reverse": "reverse 4 to 12 letters (generated)",
    "addition": "add two numbers below 100, in digits (generated)",
    "numbers": "0 to 9,999 in English words -> digits (num2words)",
}
BEAM = 4


def write_numbers(path: Path) -> None:
    from num2words import num2words

    path.write_text("digits\twords\n" + "".join(f"{n}\t{num2words(n)}\n" for n in range(10_000)), encoding="utf-8")


def dlx(arguments: list[str], folder: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "dlx", *arguments], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dlx {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return result


def run(task: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        if task == "numbers":
            write_numbers(Path(folder) / "numbers.tsv")
        train = ["train", *TASKS[task], f"trainer.seed={seed}"]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        dlx([*train, "hydra.run.dir=run"], folder)
        elapsed = time.perf_counter() - started
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
        evaluate = ["eval", "run/checkpoints/best.ckpt", f"beam={BEAM}", "--json"]
        beam = json.loads(dlx(evaluate, folder).stdout)["metrics"]
        shutil.copyfile(Path(folder) / "run" / "checkpoints" / "best.ckpt",  # for `dlx predict`; git ignores it
                        RESULTS / f"seq2seq_{task}" / f"seed_{seed}.ckpt")
        return summary | {"command": "dlx " + " ".join(train), "end_to_end_s": round(elapsed, 1),
                          "beam_command": "dlx " + " ".join(evaluate), f"test_beam{BEAM}": beam,
                          "machine": machine(), "load_average_at_start": round(load, 2),
                          "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def table() -> str:
    rows = ["| task | command | test exact match, greedy: mean ± sd over seeds | with beam search of 4 | chrF | "
            "CER | wall time per run | machine |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in TASKS:
        runs = [json.loads(path.read_text()) for path in sorted((RESULTS / f"seq2seq_{task}").glob("seed_*.json"))]
        if not runs:
            continue

        def mean(values: list[float], percent: bool = True) -> str:
            scale = 100 if percent else 1
            return f"{scale * statistics.mean(values):.2f}{'%' if percent else ''} ± {scale * spread(values):.2f}"

        exact = [r["test"]["exact_match"] for r in runs]
        beam = [r[f"test_beam{BEAM}"]["exact_match"] for r in runs]
        chrf = [r["test"]["chrf"] for r in runs]
        cer = [r["test"]["cer"] for r in runs]
        times = [r["end_to_end_s"] for r in runs]
        loads = [r["load_average_at_start"] for r in runs]
        command = runs[0]["command"].replace(" trainer.seed=0", "")
        threads = f", {runs[0]['omp_num_threads']} thread(s) per run" if runs[0].get("omp_num_threads") else ""
        rows.append(f"| {DESCRIPTIONS[task]} | `{command}` | {mean(exact)} (n={len(runs)}) | {mean(beam)} | "
                    f"{mean(chrf, percent=False)} | {mean(cer)} | {statistics.mean(times):.0f} s (end to end) | "
                    f"{runs[0]['machine']}{threads}, shared (load average {min(loads):.1f} to {max(loads):.1f}) |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", choices=[*TASKS, []], default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true", help="only rebuild docs/results/seq2seq.md")
    args = parser.parse_args()
    for task in [] if args.table else (args.tasks or list(TASKS)):
        folder = RESULTS / f"seq2seq_{task}"
        folder.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            summary = run(task, seed)
            (folder / f"seed_{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(f"{task} seed {seed}: test {summary['test']}, beam {summary[f'test_beam{BEAM}']}, "
                  f"{summary['end_to_end_s']} s", flush=True)
    text = table()
    (RESULTS / "seq2seq.md").write_text("# Encoder-decoders: exact match on held-out pairs\n\nWritten by `python "
                                        "bench/seq2seq.py`; each row's runs are the seed_*.json in "
                                        "docs/results/seq2seq_TASK/.\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
