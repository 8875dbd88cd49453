"""Benchmark: dlx against a hand-written PyTorch loop, whole processes side by side, rounds in alternation.

    python bench/run.py                       # 5 rounds and the growth tables on the CPU; about 20 minutes on 2 cores
    python bench/run.py --device cuda         # the same jobs on a GPU
    python bench/run.py --markdown bench/RESULTS.md   # also write the results as a Markdown report
    python bench/run.py --baseline fb5e40c    # also time dlx as it was at a git revision: no slowdown?
    python bench/run.py --compile             # also time dlx with trainer.compile=true (torch.compile)

Jobs: the tutorial's FFN (3000 steps of batch 100, a validation every 500) and a small CNN (2 epochs), on
Fashion-MNIST when /usr/share/datasets/fashion-mnist exists (Debian: dataset-fashion-mnist), else on digits.
Each process is timed from start to exit (imports, data, checkpoints and metrics included); peak memory is the
process's maximum resident set size; throughput is training samples per second reported by each process.

--baseline REV checks REV out into a temporary `git worktree` (removed at the end, on errors and Ctrl-C too) and
runs each job a third time in every round with that revision's dlx package first on PYTHONPATH (the current
working tree's dlx runs with this repository first on it). The order within a round turns around every other
round (reference, current, baseline; then baseline, current, reference), so that the machine's drift weighs on
both evenly. The report adds a table of the current code against the baseline and a target per job: wall time
at most 1.05x the baseline's (a margin for the noise between runs of the same code), which, like the other
targets, makes the exit status non-zero when missed.

--compile runs each job once more in every round as dlx with trainer.compile=true, and adds a table of it against
plain dlx (no target: it says where compiling pays): wall time and samples/s with compiling included, and the
rate once compiled, from the intervals of the run's metrics.jsonl after the first.

Then the growth tables: samples/s and peak memory of dlx and the reference by batch size (32 to 1,024) and by the
number of training samples (10k to 1M synthetic 28x28 images), each run training on the same number of samples
(--growth-rounds N rounds of them, default 1; 0 leaves them out). About 25 minutes on 2 cores with the 5 rounds.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent  # the working tree whose dlx is "current"
FASHION = Path("/usr/share/datasets/fashion-mnist")
JOBS = ("ffn", "cnn")
STARTUP = {"help": ["--help"], "cfg_job": ["train", "--cfg", "job"]}  # dlx commands timed for start-up alone
TARGETS = {  # (what, limit, direction): the performance goals dlx holds itself to
    "ffn_wall_ratio": 1.00,  # dlx / reference, at most
    "cnn_throughput_ratio": 1.00,  # dlx / reference, at least
    "memory_ratio": 1.20,  # dlx / reference, at most
    "help_s": 0.30,
    "cfg_job_s": 1.00,
    "ffn_baseline_wall_ratio": 1.05,  # current / baseline, at most (with --baseline): no slowdown beyond noise
    "cnn_baseline_wall_ratio": 1.05,
}
GROWTH_BATCHES = (32, 64, 128, 256, 512, 1024)
GROWTH_SAMPLES = (10_000, 100_000, 1_000_000)  # training samples, synthetic 28x28 images
GROWTH_RUN_SAMPLES = 120_000  # samples each growth run trains on, whatever its batch
AT_LEAST = {"cnn_throughput_ratio"}  # the targets that are floors; the others are ceilings

# A contender in a round: its name in the results, and the source tree of the dlx it runs (None: the reference).
Contender = tuple[str, Path | None]


def environment(code: Path | None) -> dict[str, str]:
    """The environment of a measured process. With `code`, that tree's dlx package comes first on the path, ahead
    of the editable install's entry for this repository, so `import dlx` finds the tree's own package."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def measure(command: list[str], cwd: Path, code: Path | None = None) -> dict[str, float]:
    """Run one process to its end with os.wait4, which gives that process's own peak memory."""
    started = time.perf_counter()
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=environment(code))
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C or SIGTERM: leave no training process writing into folders being removed
            process.kill()
            process.wait()
            raise
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def dataset_overrides(data: str) -> list[str]:
    """dlx's overrides for a data name of the reference's: a Fashion-MNIST folder, digits, or synthetic:COUNT."""
    if data == "digits":
        return ["dataset=digits"]
    if data.startswith("synthetic:"):  # what bench/reference.py generates: 28x28 images, 10 classes, 20% for test
        return ["dataset=synthetic", "dataset.shape=[1,28,28]", "dataset.num_classes=10", "dataset.test_fraction=0.2",
                f"dataset.num_samples={data.split(':', 1)[1]}"]
    return ["dataset=fashion_mnist", f"dataset.root={data}"]


def dlx_command(job: str, data: str, device: str, folder: Path, compiled: bool = False, batch: int = 0,
                steps: int = 0) -> list[str]:
    """The dlx training command for one job, writing its run into `folder`; the same for every dlx tree. `batch`
    and `steps`, when given, replace the job's own (with one validation, at the last step), as in the reference."""
    common = [f"trainer.device={device}", f"hydra.run.dir={folder}", *(["trainer.compile=true"] if compiled else [])]
    common += [f"trainer.batch_size={batch}"] if batch else []
    common += [f"trainer.max_steps={steps}", f"trainer.eval_every={steps}"] if steps else []
    if job == "ffn":
        dlx = ["+experiment=tutorial_ffn", *dataset_overrides(data)]
    else:
        dlx = ["model=cnn", "model.channels=[8,16]", *dataset_overrides(data), "optimizer.lr=0.1",
               "trainer.batch_size=128", "trainer.max_epochs=2", "trainer.log_every=100"]
    return [sys.executable, "-m", "dlx", "train", *dlx, *common]


def reference_command(job: str, data: str, device: str, batch: int = 0, steps: int = 0) -> list[str]:
    return [sys.executable, str(HERE / "reference.py"), "--job", job, "--data", data, "--device", device,
            "--batch", str(batch), "--steps", str(steps)]


def run_job(job: str, data: str, device: str, code: Path | None, scratch: Path, compiled: bool = False,
            batch: int = 0, steps: int = 0) -> dict[str, float]:
    """One training process in a fresh folder (so that no run sees another's outputs): dlx from the source tree
    `code` (with trainer.compile=true when `compiled`), or the reference when it is None; its wall time, peak
    memory, throughput and test accuracy. `batch` and `steps` replace the job's own when given."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    try:
        if code is None:
            measured = measure(reference_command(job, data, device, batch, steps), folder)
            reported = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
            return measured | {"samples_per_sec": reported["samples_per_sec"], "test_acc": reported["test_acc"]}
        measured = measure(dlx_command(job, data, device, folder / "run", compiled, batch, steps), folder, code)
        summary = json.loads((folder / "run" / "summary.json").read_text())
        return measured | {"samples_per_sec": summary["samples_per_sec"], "test_acc": summary["test"]["acc"],
                           "steady_per_sec": steady_rate(folder / "run" / "metrics.jsonl")}
    finally:  # the growth runs write checkpoints of up to a million samples' worth of runs: not kept to the end
        shutil.rmtree(folder, ignore_errors=True)


def steady_rate(metrics: Path) -> float:
    """Training samples per second once running: the median of the logged intervals after the first, which holds
    compiling and the first allocations (the run's own samples_per_sec counts them); the run's rate when it
    logged fewer than two intervals."""
    rates = [row["samples_per_sec"] for row in map(json.loads, metrics.read_text().splitlines())
             if "samples_per_sec" in row]
    return statistics.median(rates[1:]) if len(rates) > 1 else (rates[0] if rates else math.nan)


def running_order(number: int, baseline: Path | None, compiled: bool = False) -> list[Contender]:
    """Who runs when in round `number` (from 0). The order turns around every other round, so that a machine
    getting faster or slower within a round favours no contender."""
    order: list[Contender] = [("reference", None), ("dlx", REPO)]
    order += [("baseline", baseline)] if baseline is not None else []
    order += [("compiled", REPO)] if compiled else []
    return order if number % 2 == 0 else order[::-1]


def one_round(data: str, device: str, scratch: Path, order: list[Contender]) -> dict[str, dict[str, float]]:
    results = {}
    for job in JOBS:
        for name, code in order:
            results[f"{job}/{name}"] = run_job(job, data, device, code, scratch, compiled=name == "compiled")
    for name, code in order:  # time to the first step: a run of one step, start to exit, as a user waits for it
        if name != "compiled":
            results[f"first_step/{name}"] = run_job("ffn", data, device, code, scratch, steps=1)
    for name, command in STARTUP.items():
        results[name] = measure([sys.executable, "-m", "dlx", *command], scratch, REPO)
        for contender, code in order:  # the compiled contender starts as plain dlx does: not timed twice
            if contender == "baseline":  # the restructured code must not start slower either
                results[f"{name}/baseline"] = measure([sys.executable, "-m", "dlx", *command], scratch, code)
    return results


def growth_points() -> list[tuple[str, str, int, int]]:
    """(job, data, batch, training samples) of each point of the growth tables: each batch size on the real data
    (or digits), then each number of training samples on synthetic images at the job's usual batch."""
    points = [(job, "", batch, 0) for job in JOBS for batch in GROWTH_BATCHES]
    return points + [(job, f"synthetic:{math.ceil(samples / 0.72)}", 0, samples)  # 72% of those generated train
                     for job in JOBS for samples in GROWTH_SAMPLES]


def growth(data: str, device: str, scratch: Path, rounds: int) -> dict:
    """Each growth point run by the reference and by dlx, `rounds` times in turned-around order: the medians, keyed
    by (point, contender). Every run trains on GROWTH_RUN_SAMPLES samples (steps = that / batch), so that small
    batches are not timed on a blink."""
    measured = []
    for number in range(rounds):
        results = {}
        for point in growth_points():
            job, source, batch, samples = point
            steps = GROWTH_RUN_SAMPLES // (batch or (100 if job == "ffn" else 128))
            for name, code in running_order(number, None):
                results[point, name] = run_job(job, source or data, device, code, scratch, batch=batch, steps=steps)
            print(f"growth {job}, {f'batch {batch}' if batch else f'{samples:,} samples'}: done", file=sys.stderr)
        measured.append(results)
    return median_of(measured)


def median_of(rounds: list[dict[Any, dict[str, float]]]) -> dict[Any, dict[str, float]]:
    return {key: {field: statistics.median(r[key][field] for r in rounds) for field in rounds[0][key]}
            for key in rounds[0]}


def verdicts(m: dict[str, dict[str, float]]) -> dict[str, tuple[float, float, bool]]:
    """target name -> (measured, limit, met); the baseline's targets only when a baseline was measured."""
    ratios = {
        "ffn_wall_ratio": m["ffn/dlx"]["wall_s"] / m["ffn/reference"]["wall_s"],
        "cnn_throughput_ratio": m["cnn/dlx"]["samples_per_sec"] / m["cnn/reference"]["samples_per_sec"],
        "memory_ratio": max(m[f"{job}/dlx"]["peak_mib"] / m[f"{job}/reference"]["peak_mib"] for job in JOBS),
        "help_s": m["help"]["wall_s"],
        "cfg_job_s": m["cfg_job"]["wall_s"],
    }
    if "ffn/baseline" in m:
        ratios |= {f"{job}_baseline_wall_ratio": m[f"{job}/dlx"]["wall_s"] / m[f"{job}/baseline"]["wall_s"]
                   for job in JOBS}
    return {name: (value, TARGETS[name], value >= TARGETS[name] if name in AT_LEAST else value <= TARGETS[name])
            for name, value in ratios.items()}


def machine(device: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    where = f"{cpu}, {os.cpu_count()} cores"
    if device.startswith("cuda"):
        where += f", GPU {torch.cuda.get_device_name(0)}"
    return f"{where}; Python {platform.python_version()}, torch {torch.__version__}"


def comparison(m: dict[str, dict[str, float]], left: str, right: str, labels: tuple[str, str]) -> list[str]:
    """A Markdown table of the results named `left` against those named `right`, per job, with their ratios."""
    a, b = labels
    lines = [f"| job | wall s ({a} / {b}) | ratio | samples/s ({a} / {b}) | ratio | peak MiB ({a} / {b}) | ratio "
             f"| test acc ({a} / {b}) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for job in JOBS:
        d, r = m[f"{job}/{left}"], m[f"{job}/{right}"]
        lines.append(f"| {job} | {d['wall_s']:.2f} / {r['wall_s']:.2f} | {d['wall_s'] / r['wall_s']:.2f} | "
                     f"{d['samples_per_sec']:,.0f} / {r['samples_per_sec']:,.0f} | "
                     f"{d['samples_per_sec'] / r['samples_per_sec']:.2f} | {d['peak_mib']:.0f} / {r['peak_mib']:.0f} | "
                     f"{d['peak_mib'] / r['peak_mib']:.2f} | {d['test_acc']:.4f} / {r['test_acc']:.4f} |")
    return lines


def report(m: dict[str, dict[str, float]], rounds: int, data: str, device: str,
           versions: tuple[str, str] | None, grown: dict | None) -> str:
    """The results as Markdown; `versions` names the revisions of the current code and the baseline, if one ran."""
    lines = [f"Machine: {machine(device)}. Data: {'Fashion-MNIST' if data != 'digits' else 'digits'}; device "
             f"{device}; median of {rounds} rounds.", "", *comparison(m, "dlx", "reference", ("dlx", "ref"))]
    if "ffn/compiled" in m:
        steady = {job: m[f"{job}/compiled"]["steady_per_sec"] / m[f"{job}/dlx"]["steady_per_sec"] for job in JOBS}
        lines += ["", "With `trainer.compile=true` (compiled) against without (dlx): wall time and samples/s include "
                      "compiling.", "", *comparison(m, "compiled", "dlx", ("compiled", "dlx")), "",
                  "Once compiled (median of the logged intervals after the first), compiled / plain samples/s: "
                  + ", ".join(f"{job} {m[f'{job}/compiled']['steady_per_sec']:,.0f} / "
                              f"{m[f'{job}/dlx']['steady_per_sec']:,.0f} ({ratio:.2f}x)" for job, ratio in steady.items())
                  + "."]
    if versions is not None:
        lines += ["", f"Against the baseline: current is the working tree at {versions[0]}, baseline is "
                      f"{versions[1]}.", "", *comparison(m, "dlx", "baseline", ("current", "baseline"))]
    lines += ["", first_step_line(m)]
    if grown:
        lines += ["", f"How samples per second and peak memory grow: each run trains on {GROWTH_RUN_SAMPLES:,} "
                      "samples with one validation at its end; by batch size on the data above, by the number of "
                      "training samples on synthetic 28x28 images at the job's batch (100 and 128).", "",
                  growth_tables(grown)]
    lines += ["", f"`dlx --help`: {m['help']['wall_s']:.2f} s; `dlx train --cfg job`: {m['cfg_job']['wall_s']:.2f} s."
              + (f" Baseline: {m['help/baseline']['wall_s']:.2f} s and {m['cfg_job/baseline']['wall_s']:.2f} s."
                 if "help/baseline" in m else ""),
              "", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for name, (value, limit, met) in verdicts(m).items():
        lines.append(f"| {name} | {value:.3f} | {'≥' if name in AT_LEAST else '≤'} {limit} | "
                     f"{'yes' if met else 'NO'} |")
    return "\n".join(lines)


def first_step_line(m: dict[str, dict[str, float]]) -> str:
    dlx, reference = m["first_step/dlx"]["wall_s"], m["first_step/reference"]["wall_s"]
    return (f"Time to the first step (a run of one step of the FFN job, start to exit): dlx {dlx:.2f} s, the plain "
            f"script {reference:.2f} s ({dlx - reference:+.2f} s).")


def growth_tables(g: dict) -> str:
    """Two Markdown tables, samples/s and peak memory of dlx and the reference, by batch size and by the number of
    training samples, from growth()'s medians."""
    def row(point: tuple[str, str, int, int], label: str) -> str:
        d, r = g[point, "dlx"], g[point, "reference"]
        return (f"| {point[0]} | {label} | {d['samples_per_sec']:,.0f} / {r['samples_per_sec']:,.0f} | "
                f"{d['samples_per_sec'] / r['samples_per_sec']:.2f} | {d['peak_mib']:,.0f} / {r['peak_mib']:,.0f} | "
                f"{d['peak_mib'] / r['peak_mib']:.2f} |")

    header = ["samples/s (dlx / ref) | ratio | peak MiB (dlx / ref) | ratio |", "--- | --- | --- | --- | --- | --- |"]
    points = sorted({point for point, _ in g}, key=growth_points().index)
    by_batch = [row(p, str(p[2])) for p in points if p[2]]
    by_samples = [row(p, f"{p[3]:,}") for p in points if p[3]]
    return "\n".join([f"| job | batch | {header[0]}", f"| {header[1]}", *by_batch, "",
                      f"| job | training samples | {header[0]}", f"| {header[1]}", *by_samples])


def git(*args: str | Path, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def revision(tree: Path) -> str:
    """The commit a tree is at, with "-dirty" when it has uncommitted changes."""
    return git("describe", "--always", "--dirty", cwd=tree)


@contextlib.contextmanager
def baseline_worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of `rev` in a temporary folder, removed on the way out, whatever the way."""
    folder = Path(tempfile.mkdtemp(prefix="dlx-baseline-"))
    tree = folder / "tree"  # git wants to create the worktree's folder itself
    try:
        try:
            git("worktree", "add", "--detach", tree, rev)
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"git worktree add {rev} failed:\n{error.stderr}") from None
        yield tree
    finally:  # no check: these must run even when `add` failed, and must not hide the error that got us here
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        # Drops git's record of the worktree, should `remove` have failed to.
        if subprocess.run(["git", "worktree", "prune"], cwd=REPO).returncode != 0:
            print(f"warning: `git worktree prune` failed; `git worktree list` may still show {tree}", file=sys.stderr)


def prepare(code: Path, scratch: Path) -> Path:
    """Compile the tree's dlx to bytecode ahead, so that no side's first run pays for writing it, and check that a
    process given `code` imports dlx from there (or the comparison would time one package twice); its __init__."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "dlx")], stdout=subprocess.DEVNULL)
    found = subprocess.run([sys.executable, "-c", "import dlx; print(dlx.__file__)"], cwd=scratch,
                           env=environment(code), capture_output=True, text=True)
    imported = Path(found.stdout.strip()).resolve() if found.returncode == 0 else None
    if imported != (code / "dlx" / "__init__.py").resolve():
        raise SystemExit(f"`import dlx` with {code} on PYTHONPATH finds {imported}, not {code}'s dlx:\n{found.stderr}")
    return imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument("--baseline", metavar="REV", help="also time dlx at this git revision (a commit, tag, HEAD~1)")
    parser.add_argument("--compile", action="store_true", help="also time dlx with trainer.compile=true")
    parser.add_argument("--growth-rounds", type=int, default=1, metavar="N",
                        help="rounds of the growth tables (batch sizes and data sizes); 0 leaves them out")
    args = parser.parse_args()
    # A SIGTERM becomes an exception like Ctrl-C, so that the temporary folders and the worktree are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    data = str(FASHION) if FASHION.is_dir() else "digits"
    rounds = []
    with contextlib.ExitStack() as cleanup:
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        baseline = cleanup.enter_context(baseline_worktree(args.baseline)) if args.baseline else None
        trees = {"current": REPO} | ({"baseline": baseline} if baseline is not None else {})
        for name, tree in trees.items():
            imported = prepare(tree, scratch)
            if baseline is not None:  # said once, so the report can be trusted to compare what it says it does
                print(f"{name}: dlx from {imported} ({revision(tree)})", file=sys.stderr)
        versions = (revision(REPO), f"{args.baseline} ({revision(baseline)})") if baseline is not None else None
        for number in range(args.rounds):
            rounds.append(one_round(data, args.device, scratch, running_order(number, baseline, args.compile)))
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
        grown = growth(data, args.device, scratch, args.growth_rounds) if args.growth_rounds else None
    text = report(median_of(rounds), args.rounds, data, args.device, versions, grown)
    print(text)
    if args.markdown:
        command = f"python bench/run.py --rounds {args.rounds} --device {args.device}"
        command += f" --baseline {args.baseline}" if args.baseline else ""
        command += " --compile" if args.compile else ""
        command += f" --growth-rounds {args.growth_rounds}" if args.growth_rounds != 1 else ""
        args.markdown.write_text(f"# Benchmark results\n\nMeasured {time.strftime('%Y-%m-%d')} with "
                                 f"`{command}`.\n\n{text}\n")
    if not all(met for _, _, met in verdicts(median_of(rounds)).values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
