"""Benchmark: dlx against a hand-written PyTorch loop, whole processes side by side, rounds in alternation.

    python bench/run.py                       # 5 rounds on the CPU; about 4 minutes on 2 cores
    python bench/run.py --device cuda         # the same jobs on a GPU
    python bench/run.py --markdown bench/RESULTS.md   # also write the results as a Markdown report

Jobs: the tutorial's FFN (3000 steps of batch 100, a validation every 500) and a small CNN (2 epochs), on
Fashion-MNIST when /usr/share/datasets/fashion-mnist exists (Debian: dataset-fashion-mnist), else on digits.
Each process is timed from start to exit (imports, data, checkpoints and metrics included); peak memory is the
process's maximum resident set size; throughput is training samples per second reported by each process.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
TARGETS = {  # (what, limit, direction): the performance goals dlx holds itself to
    "ffn_wall_ratio": 1.10,  # dlx / reference, at most
    "cnn_throughput_ratio": 0.95,  # dlx / reference, at least
    "memory_ratio": 1.20,  # dlx / reference, at most
    "help_s": 0.30,
    "cfg_job_s": 1.00,
}


def measure(command: list[str], cwd: Path) -> dict[str, float]:
    """Run one process to its end with os.wait4, which gives that process's own peak memory."""
    started = time.perf_counter()
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def dlx_job(job: str, data: str, device: str, folder: Path) -> tuple[list[str], list[str]]:
    """(dlx command, reference command) for one job."""
    dataset = (["dataset=fashion_mnist", f"dataset.root={data}"] if data != "digits" else ["dataset=digits"])
    common = [f"trainer.device={device}", f"hydra.run.dir={folder}"]
    if job == "ffn":
        dlx = ["+experiment=tutorial_ffn", *dataset, *common]
    else:
        dlx = ["model=cnn", "model.channels=[8,16]", *dataset, "optimizer.lr=0.1", "trainer.batch_size=128",
               "trainer.max_epochs=2", "trainer.log_every=100", *common]
    reference = [sys.executable, str(HERE / "reference.py"), "--job", job, "--data", data, "--device", device]
    return [sys.executable, "-m", "dlx", "train", *dlx], reference


def one_round(data: str, device: str, scratch: Path) -> dict[str, dict[str, float]]:
    results = {}
    for job in ("ffn", "cnn"):
        folder = Path(tempfile.mkdtemp(dir=scratch))
        dlx_command, reference_command = dlx_job(job, data, device, folder / "run")
        dlx = measure(dlx_command, folder)
        summary = json.loads((folder / "run" / "summary.json").read_text())
        dlx |= {"samples_per_sec": summary["samples_per_sec"], "test_acc": summary["test"]["acc"]}
        reference = measure(reference_command, folder)
        reported = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
        reference |= {"samples_per_sec": reported["samples_per_sec"], "test_acc": reported["test_acc"]}
        results[f"{job}/dlx"], results[f"{job}/reference"] = dlx, reference
    for name, command in {"help": ["--help"], "cfg_job": ["train", "--cfg", "job"]}.items():
        results[name] = measure([sys.executable, "-m", "dlx", *command], scratch)
    return results


def median_of(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {key: {field: statistics.median(r[key][field] for r in rounds) for field in rounds[0][key]}
            for key in rounds[0]}


def verdicts(m: dict[str, dict[str, float]]) -> dict[str, tuple[float, float, bool]]:
    """target name -> (measured, limit, met)."""
    ratios = {
        "ffn_wall_ratio": m["ffn/dlx"]["wall_s"] / m["ffn/reference"]["wall_s"],
        "cnn_throughput_ratio": m["cnn/dlx"]["samples_per_sec"] / m["cnn/reference"]["samples_per_sec"],
        "memory_ratio": max(m[f"{job}/dlx"]["peak_mib"] / m[f"{job}/reference"]["peak_mib"] for job in ("ffn", "cnn")),
        "help_s": m["help"]["wall_s"],
        "cfg_job_s": m["cfg_job"]["wall_s"],
    }
    at_least = {"cnn_throughput_ratio"}
    return {name: (value, TARGETS[name], value >= TARGETS[name] if name in at_least else value <= TARGETS[name])
            for name, value in ratios.items()}


def machine(device: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    where = f"{cpu}, {os.cpu_count()} cores"
    if device.startswith("cuda"):
        where += f", GPU {torch.cuda.get_device_name(0)}"
    return f"{where}; Python {platform.python_version()}, torch {torch.__version__}"


def report(m: dict[str, dict[str, float]], rounds: int, data: str, device: str) -> str:
    lines = [f"Machine: {machine(device)}. Data: {'Fashion-MNIST' if data != 'digits' else 'digits'}; device "
             f"{device}; median of {rounds} rounds.", "",
             "| job | wall s (dlx / ref) | ratio | samples/s (dlx / ref) | ratio | peak MiB (dlx / ref) | ratio "
             "| test acc (dlx / ref) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for job in ("ffn", "cnn"):
        d, r = m[f"{job}/dlx"], m[f"{job}/reference"]
        lines.append(f"| {job} | {d['wall_s']:.2f} / {r['wall_s']:.2f} | {d['wall_s'] / r['wall_s']:.2f} | "
                     f"{d['samples_per_sec']:,.0f} / {r['samples_per_sec']:,.0f} | "
                     f"{d['samples_per_sec'] / r['samples_per_sec']:.2f} | {d['peak_mib']:.0f} / {r['peak_mib']:.0f} | "
                     f"{d['peak_mib'] / r['peak_mib']:.2f} | {d['test_acc']:.4f} / {r['test_acc']:.4f} |")
    lines += ["", f"`dlx --help`: {m['help']['wall_s']:.2f} s; `dlx train --cfg job`: {m['cfg_job']['wall_s']:.2f} s.",
              "", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for name, (value, limit, met) in verdicts(m).items():
        lines.append(f"| {name} | {value:.3f} | {'≥' if name == 'cnn_throughput_ratio' else '≤'} {limit} | "
                     f"{'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    data = str(FASHION) if FASHION.is_dir() else "digits"
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds):
            rounds.append(one_round(data, args.device, Path(scratch)))
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
    text = report(median_of(rounds), args.rounds, data, args.device)
    print(text)
    if args.markdown:
        args.markdown.write_text(f"# Benchmark results\n\nMeasured {time.strftime('%Y-%m-%d')} with "
                                 f"`python bench/run.py --rounds {args.rounds} --device {args.device}`.\n\n{text}\n")
    if not all(met for _, _, met in verdicts(median_of(rounds)).values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
