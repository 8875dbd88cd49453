"""Folders of files with one sub-folder per class, as torchvision's ImageFolder reads them: what
`dataset=image_folder` (images) and `dataset=text` (.txt files) share.

    ROOT/cat/0001.jpg, ROOT/dog/0002.png, ...            classes from the folder names, in name order;
                                                         validation and test held out by config
    ROOT/train/cat/..., ROOT/val/..., ROOT/test/...      fixed splits, each in that layout (val or test may
                                                         be missing: then held out of train)
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlx.data import hold_out
from dlx.errors import DlxError

SPLIT_FOLDERS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: int
    split: str | None  # its fixed split (ROOT/train, ROOT/val, ROOT/test), or None when held out by config


@dataclass(frozen=True)
class Layout:
    root: Path
    class_names: list[str]
    files: list[LabelledFile]  # in name order: classes, then files
    fixed_splits: bool
    ignored: int  # files of other kinds (by their suffix), or hidden


@dataclass(frozen=True)
class FileKind:
    """What a folder of classes holds, for the search and its messages."""

    noun: str  # "image files", ".txt files"
    suffixes: tuple[str, ...]  # lower-case, with the dot
    option: str  # the config key that names the folder: dataset.root, dataset.path
    example: str  # a file name, for the messages: 1.jpg


def scan_class_folders(root: Path, kind: FileKind) -> Layout:
    """The classes and files under `root` (an existing folder), in either layout above."""
    if not root.exists():
        raise DlxError(f"{kind.option}={root} does not exist{'' if root.is_absolute() else f' (in {Path.cwd()})'}. "
                       f"Set it to a folder with one sub-folder of {kind.noun} per class (ROOT/cat/{kind.example}, "
                       f"ROOT/dog/{kind.example}), or with train/, val/ and test/ sub-folders in that layout. "
                       f"(`dlx eval` and `dlx predict` read the folder a checkpoint was trained on: pass "
                       f"{kind.option}=... to say where it is now.)")
    root = root.resolve()  # file paths absolute: workers and caches do not depend on the working folder
    folders = sub_folders(root)
    fixed = bool(folders) and set(folders) <= set(SPLIT_FOLDERS) and "train" in folders
    if fixed:
        class_names = sub_folders(root / "train")
        for folder in folders:
            extra = sorted(set(sub_folders(root / folder)) - set(class_names))
            if extra:
                raise DlxError(f"{root / folder} has class folder(s) {', '.join(extra)} that {root / 'train'} does "
                               "not have: a model cannot learn a class it never sees. Add training examples of "
                               "those classes, or remove the folders.")
    else:
        class_names = folders
    if not class_names:
        raise DlxError(f"{root / 'train' if fixed else root} has no sub-folders, so there are no classes. Put "
                       f"each class's {kind.noun} in a folder of its own, named after the class: "
                       f"{root}/CLASS/{kind.example}.")
    files: list[LabelledFile] = []
    ignored = 0
    splits: list[str | None] = list(folders) if fixed else [None]
    for split in splits:
        base = root / split if split else root
        for label, name in enumerate(class_names):
            found, skipped = files_under(base / name, kind.suffixes)
            ignored += skipped
            if not found and (split in (None, "train")):
                raise DlxError(f"The class folder {base / name} holds no {kind.noun} ({', '.join(kind.suffixes)}). "
                               "Add examples of that class, or remove the folder.")
            files += [LabelledFile(path, label, split) for path in found]
    if len(class_names) < 2:
        raise DlxError(f"{root} has one class folder only ({class_names[0]}): a classifier needs two classes or more.")
    return Layout(root, class_names, files, fixed, ignored)


def sub_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def files_under(folder: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], int]:
    """The files with one of `suffixes` under `folder` (its sub-folders too, as torchvision's ImageFolder reads
    them), in name order, and how many other files there were."""
    if not folder.is_dir():
        return [], 0
    found, ignored = [], 0
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            if name.lower().endswith(suffixes) and not name.startswith("."):
                found.append(Path(directory) / name)
            else:
                ignored += 1
    return found, ignored


def split_indices(files: list[LabelledFile], layout: Layout, val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, np.ndarray]:
    """Indices into `files` of each split: the fixed folders, and held out by config where there are none
    (stratified, as the built-in data sets are)."""
    labels = np.array([each.label for each in files], dtype=np.int64)
    index = np.arange(len(files))
    named = {split: index[[each.split == split for each in files]] for split in SPLIT_FOLDERS} \
        if layout.fixed_splits else {"train": index}
    train = named["train"]
    if "test" not in named or not len(named.get("test", [])):
        train, _, test, _ = hold_out(train, labels[train], test_fraction, seed, stratify=True)
        named["test"] = test
    if "val" not in named or not len(named.get("val", [])):
        train, _, val, _ = hold_out(train, labels[train], val_fraction, seed, stratify=True)
        named["val"] = val
    named["train"] = train
    return named
