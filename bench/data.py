"""Benchmark of dlx's own-data loaders, each against what a user would write by hand, side by side in one run.

    python bench/data.py                          # 3 rounds; about 6 minutes on 2 cores
    python bench/data.py --markdown bench/RESULTS-data.md
    python bench/data.py --fashion                # also the Fashion-MNIST-as-PNG accuracy check (~4 minutes)
    python bench/data.py --fashion --rounds 0     # that check alone

Jobs, on a folder of generated JPEGs (--images, default 20,000, 64x64 RGB, ten classes) read at 32x32:
- streamed: `dlx train dataset=image_folder dataset.in_memory=false trainer.num_workers=2` for one epoch of
  model=cnn (batch 128), against bench/reference_folder.py: torchvision's ImageFolder + Resize + DataLoader with
  the same workers, model, optimizer, batch and image size. Target: dlx's samples per second at least 1.0x.
- cache: a first in-memory run of the folder (a new cache: every image decoded) against the second (read from
  the decoded cache), each training one step: the time to have the data ready, which the loader logs, and the
  whole processes' wall times. Target: the second's data ready at least 3x sooner.
- --fashion: Fashion-MNIST (Debian's dataset-fashion-mnist) written out as PNG files in train/, val/ and test/
  folders (val/ the images dlx's IDX loader holds out), and the tutorial's FFN trained on them in memory,
  against the same network on the IDX files, seeds 0 to 3 each. Targets: mean test accuracy within 0.3 points
  of the IDX files'; the PNGs streamed (seed 0) exactly as accurate as in memory.

Each process is timed from start to exit; rounds alternate the order of dlx and the reference.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
TARGETS = {"streamed_throughput_ratio": 1.0, "cache_speedup": 3.0, "fashion_accuracy_gap_points": 0.3,
           "fashion_streamed_minus_in_memory": 0.0}
AT_LEAST = {"streamed_throughput_ratio", "cache_speedup"}


def write_jpegs(root: Path, count: int, size: int = 64, classes: int = 10) -> None:
    """`count` JPEGs in `classes` class folders: a coloured blob whose hue and place tell the class, on noise."""
    from PIL import Image

    generator = np.random.default_rng(0)
    palette = generator.integers(40, 255, size=(classes, 3))
    yy, xx = np.mgrid[:size, :size]
    for index in range(count):
        label = index % classes
        pixels = generator.integers(0, 90, size=(size, size, 3)).astype(np.uint8)
        cy, cx = size // 4 + (label % 3) * size // 4 + generator.integers(-3, 4, size=2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2
        pixels[blob] = palette[label]
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index:06d}.jpg", quality=90)


def run(command: list[str], cwd: Path) -> float:
    """Run a process to its end; its wall time. A failure stops the benchmark with the process's output."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    (cwd / "stdout.txt").write_text(result.stdout)
    return time.perf_counter() - started


def dlx_train(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "dlx", "train", "trainer.device=cpu", *overrides]


def folder_overrides(root: Path, cache: Path) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=32", f"dataset.cache_dir={cache}",
            "dataset.val_fraction=0.05", "dataset.test_fraction=0.05", "model=cnn", "model.channels=[8,16]",
            "optimizer.lr=0.1", "trainer.batch_size=128", "trainer.log_every=20"]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def streamed_round(root: Path, scratch: Path, number: int) -> dict[str, float]:
    """dlx streamed and the hand-written loop, one epoch each, in an order that turns around every round."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    jobs = {
        "dlx": lambda: run(dlx_train(*folder_overrides(root, folder / "cache"), "dataset.in_memory=false",
                                     "trainer.num_workers=2", "trainer.max_epochs=1", f"hydra.run.dir={folder}/run"),
                           folder),
        "reference": lambda: run([sys.executable, str(HERE / "reference_folder.py"), "--root", str(root),
                                  "--image-size", "32", "--workers", "2", "--batch", "128"], folder),
    }
    order = list(jobs) if number % 2 == 0 else list(jobs)[::-1]
    for name in order:
        jobs[name]()
        if name == "dlx":
            dlx_rate = summary(folder / "run")["samples_per_sec"]
        else:
            reference_rate = json.loads((folder / "stdout.txt").read_text().splitlines()[-1])["samples_per_sec"]
    return {"dlx_samples_per_sec": dlx_rate, "reference_samples_per_sec": reference_rate}


def cache_round(root: Path, scratch: Path) -> dict[str, float]:
    """A first in-memory run with an empty cache, then the same run again, one step each: the whole processes'
    wall times, and the time each took to have its data ready (what the cache saves; the rest of a process,
    imports, composition, the model, does not change), which the loader logs."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    args = [*folder_overrides(root, folder / "cache"), "dataset.in_memory=true", "trainer.max_steps=1"]
    first = run(dlx_train(*args, f"hydra.run.dir={folder}/first"), folder)
    second = run(dlx_train(*args, f"hydra.run.dir={folder}/second"), folder)
    return {"first_run_s": first, "second_run_s": second, "first_data_ready_s": data_ready(folder / "first"),
            "second_data_ready_s": data_ready(folder / "second")}


def data_ready(run_dir: Path) -> float:
    """The seconds the image folder took to be ready, from the run's train.log ("..., ready in 1.23 s")."""
    found = re.search(r"ready in ([0-9.]+) s", (run_dir / "train.log").read_text())
    if found is None:
        raise SystemExit(f"{run_dir / 'train.log'} does not say how long the data took")
    return float(found.group(1))


def write_fashion_pngs(root: Path) -> None:
    """Fashion-MNIST as PNG files: train/ and val/ split exactly as dlx's IDX loader splits them, and test/."""
    from PIL import Image

    from dlx.data import hold_out
    from dlx.data.idx import FASHION_CLASSES, FILES, read_idx

    arrays = {key: read_idx(FASHION / f"{name}.gz") for key, name in FILES.items()}
    train_x, train_y, val_x, val_y = hold_out(arrays["train_images"], arrays["train_labels"], 0.1, 0, stratify=True)
    for split, images, labels in (("train", train_x, train_y), ("val", val_x, val_y),
                                  ("test", arrays["test_images"], arrays["test_labels"])):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"{label}_{FASHION_CLASSES[label].replace('/', '-')}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")


def fashion_check(scratch: Path, seeds: int = 4) -> dict[str, float]:
    """Test accuracy of the tutorial's FFN on the IDX files and on the same images as PNGs, in memory, for
    `seeds` seeds each (a folder's sample order differs from the IDX files', as one seed's from another's, and
    one seed's accuracy varies by most of a point here: the mean of a few is what can be compared); and the
    PNGs streamed, which must train exactly as in memory."""
    root = scratch / "fashion_png"
    write_fashion_pngs(root)
    folder = ["dataset=image_folder", f"dataset.root={root}", f"dataset.cache_dir={scratch / 'cache'}"]
    runs = {"idx": ["dataset=fashion_mnist", f"dataset.root={FASHION}"],
            "png_in_memory": [*folder, "dataset.in_memory=true"]}
    accuracy = {}
    for name, dataset in runs.items():
        for seed in range(seeds):
            run_dir = scratch / f"{name}{seed}"
            run(dlx_train("+experiment=tutorial_ffn", *dataset, f"trainer.seed={seed}", f"hydra.run.dir={run_dir}"),
                scratch)
            accuracy[f"{name}_seed{seed}"] = summary(run_dir)["test"]["acc"]
        accuracy[name] = statistics.mean(accuracy[f"{name}_seed{seed}"] for seed in range(seeds))
    run(dlx_train("+experiment=tutorial_ffn", *folder, "dataset.in_memory=false", "trainer.num_workers=2",
                  f"hydra.run.dir={scratch / 'png_streamed'}"), scratch)
    accuracy["png_streamed_seed0"] = summary(scratch / "png_streamed")["test"]["acc"]
    return accuracy


def verdicts(results: dict[str, float]) -> dict[str, tuple[float, float, bool]]:
    measured = {}
    if "dlx_samples_per_sec" in results:  # --rounds 0 measures no speed
        measured = {"streamed_throughput_ratio": results["dlx_samples_per_sec"] / results["reference_samples_per_sec"],
                    "cache_speedup": results["first_data_ready_s"] / results["second_data_ready_s"]}
    if "idx" in results:
        measured["fashion_accuracy_gap_points"] = 100 * abs(results["png_in_memory"] - results["idx"])
        measured["fashion_streamed_minus_in_memory"] = abs(results["png_streamed_seed0"] - results["png_in_memory_seed0"])
    return {name: (value, TARGETS[name], value >= TARGETS[name] if name in AT_LEAST else value <= TARGETS[name])
            for name, value in measured.items()}


def report(results: dict[str, float], rounds: int, images: int) -> str:
    lines = [f"{os.cpu_count()} cores; {images:,} JPEGs of 64x64 read at 32x32; median of {rounds} rounds.", "",
             "| measurement | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:,.4g} |" for name, value in results.items()]
    lines += ["", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for name, (value, limit, met) in verdicts(results).items():
        lines.append(f"| {name} | {value:.3f} | {'≥' if name in AT_LEAST else '≤'} {limit} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--fashion", action="store_true", help="also train on Fashion-MNIST written as PNGs")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    if args.fashion and not FASHION.is_dir():
        raise SystemExit(f"--fashion needs Fashion-MNIST in {FASHION} (Debian: apt-get install dataset-fashion-mnist)")
    with tempfile.TemporaryDirectory() as temporary:
        scratch = Path(temporary)
        root = scratch / "jpegs"
        if args.rounds:
            write_jpegs(root, args.images)
        rounds = []
        for number in range(args.rounds):
            rounds.append(streamed_round(root, scratch, number) | cache_round(root, scratch))
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
        results = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]} if rounds else {}
        if args.fashion:
            results |= fashion_check(scratch)
    text = report(results, args.rounds, args.images)
    print(text)
    if args.markdown:
        args.markdown.write_text(f"# Own-data benchmark\n\nMeasured {time.strftime('%Y-%m-%d')} with "
                                 f"`python bench/data.py --rounds {args.rounds}"
                                 f"{' --fashion' if args.fashion else ''}`.\n\n{text}\n")
    if not all(met for _, _, met in verdicts(results).values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
