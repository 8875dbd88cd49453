"""The hand-written baseline dlx is measured against: the same model, optimizer, batch size, steps and
evaluations as a dlx job, in a plain PyTorch loop over tensors held in memory, with no framework around it.

    python bench/reference.py --job ffn --data /usr/share/datasets/fashion-mnist   # or --data digits
    python bench/reference.py --job cnn --data synthetic:100000 --batch 256 --steps 300   # for the growth tables

Prints one JSON line: wall time inside the process, training time, samples per second, test accuracy.
"""

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def synthetic(count: int) -> tuple[torch.Tensor, ...]:
    """`count` random 28x28 images labelled by a fixed random linear map into 10 classes, 20% of them for test:
    the data dlx's `dataset=synthetic` makes, written as a user would."""
    generator = np.random.default_rng(0)
    x = generator.random((count, 1, 28, 28), dtype=np.float32)
    projection = generator.standard_normal((28 * 28, 10)).astype(np.float32)
    y = ((x.reshape(count, -1) - 0.5) @ projection).argmax(axis=1)
    test = count // 5
    return torch.from_numpy(x[test:]), torch.from_numpy(y[test:]), torch.from_numpy(x[:test]), torch.from_numpy(y[:test])


def load(data: str) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) as float images in [0, 1] (N, 1, H, W) and int64 labels."""
    if data.startswith("synthetic:"):
        return synthetic(int(data.split(":", 1)[1]))
    if data == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16)
        y = torch.from_numpy(digits.target.astype(np.int64))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        test, train = order[:360], order[360:]
        return x[train], y[train], x[test], y[test]

    def idx(name: str) -> np.ndarray:
        raw = gzip.open(Path(data) / f"{name}.gz").read()
        ndim = raw[3]
        dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4")
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)

    def images(name: str) -> torch.Tensor:
        return torch.from_numpy(idx(name).astype(np.float32) / 255).unsqueeze(1)

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(idx(name).astype(np.int64))

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


def model_for(job: str, shape: tuple[int, ...]) -> nn.Module:
    if job == "ffn":  # the tutorial's network
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 100), nn.ReLU(), nn.Linear(100, 10))
    channels, height, width = shape  # dlx's model=cnn with channels=[8,16]
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (height // 4) * (width // 4), 10),
    )


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(x), 1000))
    model.train()
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", choices=["ffn", "cnn"], required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=0,
                        help="optimizer steps, with a validation at the last (default: ffn 3000, cnn 2 epochs)")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: ffn 100, cnn 128)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)

    x_train, y_train, x_test, y_test = load(args.data)
    # The same split sizes as dlx: 10% of the training images held out for validation.
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))
    held = len(x_train) // 10
    x_val, y_val, x_train, y_train = x_train[order[:held]], y_train[order[:held]], x_train[order[held:]], y_train[order[held:]]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    x_train, y_train, x_val, y_val, x_test, y_test = (
        t.to(args.device) for t in (x_train, y_train, x_val, y_val, x_test, y_test))

    model = model_for(args.job, tuple(x_train.shape[1:])).to(args.device)
    batch = args.batch or (100 if args.job == "ffn" else 128)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    per_epoch = math.ceil(len(x_train) / batch)
    steps = args.steps or (3000 if args.job == "ffn" else 2 * per_epoch)
    eval_every = args.steps or (500 if args.job == "ffn" else per_epoch)
    loss_fn = nn.CrossEntropyLoss()

    train_started = time.perf_counter()
    step = 0
    while step < steps:
        permutation = torch.randperm(len(x_train), device=args.device)
        for i in range(per_epoch):
            index = permutation[i * batch : (i + 1) * batch]
            loss = loss_fn(model(x_train[index]), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % eval_every == 0 or step == steps:
                accuracy(model, x_val, y_val)
            if step == steps:
                break
    train_time = time.perf_counter() - train_started
    test_acc = accuracy(model, x_test, y_test)
    print(json.dumps({"steps": steps, "batch": batch, "train_time_s": train_time,
                      "samples_per_sec": steps * batch / train_time, "test_acc": test_acc,
                      "in_process_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
