"""The hand-written loop a user writes for a folder of images, that dlx's streamed image folder is measured
against: torchvision's ImageFolder and transforms, a DataLoader with workers, the model and optimizer of the
dlx job, one epoch.

    python bench/reference_folder.py --root FOLDER --image-size 32 --workers 2 --batch 128

Prints one JSON line: samples per second of the training loop (the epoch, from its first batch asked for),
and the accuracy on the training images seen.
"""

import argparse
import json
import time

import torch
import torchvision
from torch import nn
from torchvision import transforms


def model_for(channels: int, size: int) -> nn.Module:
    """dlx's model=cnn with channels=[8,16], as bench/reference.py builds it."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    prepare = transforms.Compose([transforms.Resize((args.image_size, args.image_size)), transforms.ToTensor(),
                                  transforms.Normalize([0.5] * 3, [0.25] * 3)])
    data = torchvision.datasets.ImageFolder(args.root, transform=prepare)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0, prefetch_factor=2 if args.workers else None)
    model = model_for(3, args.image_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    seen = correct = 0
    for x, y in loader:
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(x)
        correct += (logits.argmax(1) == y).sum().item()
    seconds = time.perf_counter() - started
    print(json.dumps({"samples_per_sec": seen / seconds, "train_acc": correct / seen, "samples": seen}))


if __name__ == "__main__":
    main()
