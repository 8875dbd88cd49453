"""Tables larger than memory (dataset=table dataset.in_memory=false): the file read in chunks, and the encoded
rows kept on disk as one float32 array that each batch reads through a memory map.

dlx.data.table encodes the file chunk by chunk into a cache folder, keyed by the file's path, size and
modification time and by every option that changes the encoding; a second run of the same file and options
opens the encoded array at once, and a changed file gets a new folder (the copies of its old state are removed). The batches are
read in the training process, a fancy-indexed read of B rows of the page cache: far cheaper than the samples
DataLoader workers would pickle back one by one, so trainer.num_workers is not used for tables.
"""

import contextlib
import hashlib
import json
import lzma
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.csv
import pyarrow.parquet
import torch

from dlx.data import Batch, BatchIndex, Inputs, Loading
from dlx.errors import DlxError
from dlx.store.files import read_json, write_json_atomically, write_text_atomically

CACHE_FORMAT = 1  # bump when what the cache holds, or how rows are encoded, changes
CHUNK_BYTES = 16 << 20  # of a text file, read and converted at a time (pyarrow's block size)
CHUNK_ROWS = 1 << 16  # of a Parquet file, read at a time; and the rows encoded at a time
# What pandas.read_csv reads as missing by default (its pyarrow engine passes the same list to pyarrow), so that
# a streamed text file has the same missing values as one read whole.
DEFAULT_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
              "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def table_chunks(path: Path, kind: str, separator: str | None, na_values: list[str] | None,
                 columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table's rows, a chunk at a time, as DataFrames indexed by each row's position in the file (what
    messages name rows by); only `columns` when given. A text file's column types are those pyarrow infers from
    its first chunk: a later cell that does not fit raises pyarrow.ArrowInvalid."""
    start = 0
    for batch in record_batches(path, kind, separator, na_values, columns):
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def record_batches(path: Path, kind: str, separator: str | None, na_values: list[str] | None,
                   columns: list[str] | None) -> Iterator[pyarrow.RecordBatch]:
    if kind == "parquet":
        yield from pyarrow.parquet.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=columns)
        return
    reader = pyarrow.csv.open_csv(
        text_source(path), read_options=pyarrow.csv.ReadOptions(block_size=CHUNK_BYTES),
        parse_options=pyarrow.csv.ParseOptions(delimiter=separator or ","),
        convert_options=pyarrow.csv.ConvertOptions(null_values=DEFAULT_NA + list(na_values or []),
                                                   strings_can_be_null=True, include_columns=columns))
    with contextlib.closing(reader):
        yield from reader


def text_source(path: Path) -> Any:
    """What pyarrow reads a text file from: its path, which pyarrow decompresses by the suffix (.gz, .bz2, .zst),
    or, for the compressions it does not know, a stream Python decompresses (.xz; .zip, its single member)."""
    suffix = path.suffix.lower()
    if suffix == ".xz":
        return lzma.open(path)
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            raise DlxError(f"{path} holds {len(members)} files; a zipped table must hold exactly one (as pandas "
                           "requires too). Zip the table alone, or unzip it and point dataset.path at the file.")
        return archive.open(members[0])
    return str(path)


class TableCache:
    """One encoded table: x.npy (the rows' feature vectors, float32), y.npy (their targets), one rows-NAME.npy
    per split (positions in x) and record.json (the preprocessing, the class names, what the log says),
    written last: a folder without it (a run killed while encoding) is encoded again."""

    def __init__(self, base: Path, file: Path, settings: dict[str, Any]) -> None:
        stat = file.stat()
        self.source = str(file.resolve())
        self.stamp = f"{stat.st_size} {stat.st_mtime_ns}"
        key = [CACHE_FORMAT, self.source, self.stamp, settings]
        self.base = base
        self.folder = base / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.hit = False

    def complete(self) -> bool:
        self.hit = read_json(self.folder / "record.json") is not None and (self.folder / "x.npy").is_file()
        return self.hit

    def make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DlxError(f"The table cache {self.folder} cannot be created ({err}). A table read with "
                           "dataset.in_memory=false is encoded to disk: set dataset.cache_dir to a writable folder "
                           "with room for it.") from err
        self.remove_abandoned_scratch()
        if not (self.folder / "source.txt").exists():
            self.remove_stale()
            write_text_atomically(self.folder / "source.txt", f"{self.source}\n{self.stamp}\n")

    def remove_abandoned_scratch(self) -> None:
        """Scratch files of encodings whose process is gone (killed with SIGKILL, or out of memory): nothing
        reads them, and each can be as large as the table."""
        for scratch in self.folder.glob(".*.tmp"):
            pid = scratch.name.split(".")[-3]
            if pid.isdigit() and not process_alive(int(pid)):
                scratch.unlink(missing_ok=True)

    def remove_stale(self) -> None:
        """The copies of earlier states of this file (another size or modification time): they will not be read
        again. Copies of the same state with other options stay (a sweep over them reads each)."""
        for other in self.base.iterdir():
            try:  # another process may be removing the same folder
                written = (other / "source.txt").read_text().splitlines() if other != self.folder else []
            except OSError:
                continue
            if len(written) == 2 and written[0] == self.source and written[1] != self.stamp:
                shutil.rmtree(other, ignore_errors=True)

    def scratch(self, name: str) -> Path:
        """A file of this process alone in the folder (several DDP ranks may encode at once)."""
        return self.folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"

    def array(self, name: str, dtype: Any, shape: tuple[int, ...]) -> tuple[np.memmap, Path]:
        """A new .npy file of this shape, open for writing through a memory map, and its scratch path."""
        path = self.scratch(name)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape), path

    def keep(self, scratch: Path, name: str) -> None:
        """The scratch file, complete, as `name`: renamed over any earlier one (readers see one or the other)."""
        with open(scratch, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(scratch, self.folder / name)

    def save(self, name: str, array: np.ndarray) -> None:
        """A small array as `name`, written to a scratch file first: another process may be reading it."""
        path = self.scratch(name)
        try:
            with open(path, "wb") as file:
                np.save(file, array)
                file.flush()
                os.fsync(file.fileno())  # on disk before record.json, which is, says the copy is complete
            self.keep(path, name)
        finally:
            path.unlink(missing_ok=True)

    def write_record(self, record: dict[str, Any]) -> None:
        write_json_atomically(self.folder / "record.json", record)

    def record(self) -> dict[str, Any]:
        record = read_json(self.folder / "record.json")
        assert record is not None  # complete() or write_record() made it
        return record

    def rows(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"rows-{split}.npy")


class MappedRows:
    """A split of an encoded table: sample i is row rows[i] of x.npy, read through a memory map made for each
    batch (a map kept for a whole run would hold every page it has touched: nanoGPT #287) from a file held open
    (so that a copy removed under a run, its file changed meanwhile, stays readable to the run's end). Its
    targets are small (one value per row) and held in memory."""

    def __init__(self, path: Path, rows: np.ndarray, y: torch.Tensor, inputs: Inputs | None = None,
                 device: str = "cpu") -> None:
        self.path, self.rows, self.y = path, rows, y
        self.inputs = inputs or (lambda x: x)
        self.device = device
        self.file = open(path, "rb")  # held for the split's life, closed with it
        version = np.lib.format.read_magic(self.file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, _, self.dtype = read_header(self.file)
        self.offset = self.file.tell()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_shape(self) -> list[int]:
        return [int(self.shape[1])]

    def prepared(self, inputs: Inputs, device: str, loading: Loading) -> "MappedRows":
        return MappedRows(self.path, self.rows, self.y.to(device), inputs, device)

    def batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        for index in indices:
            positions = self.rows[index] if isinstance(index, slice) else self.rows[index.cpu().numpy()]
            x = np.memmap(self.file, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
            batch = torch.from_numpy(np.ascontiguousarray(x[positions]))
            del x
            yield self.inputs(batch.to(self.device)), self.y[index]

    def labels(self) -> torch.Tensor:
        return self.y


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
