"""Splits read from their files batch by batch, for data sets larger than memory.

The loop asks for batches of sample indices, exactly as it indexes an in-memory split: each epoch's order
comes from (seed, epoch), a resumed run continues at its batch, and each DDP rank asks for its own share. A
torch DataLoader reads them: its sampler runs in this process and hands the indices asked for to its workers,
which decode the samples (`trainer.num_workers` processes; none reads them here). The samples come back as
the in-memory path holds them before training (uint8 pixels), and are scaled and mapped on the device by the
same operations, so that a streamed run and an in-memory run of the same files train the same weights.
"""

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from dlx.data import Batch, BatchIndex, Inputs, Loading, scaled
from dlx.errors import DlxError

Sample = tuple[torch.Tensor, int]


def ignore_stop_signals(worker_id: int) -> None:
    """In each worker: leave Ctrl-C, SIGTERM and SIGUSR2 to the training process, which finishes its step,
    saves and stops them. A terminal's Ctrl-C and a scheduler's SIGTERM reach the whole process group; a worker
    that died of one would make the DataLoader fail the run in the middle of that save."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)


def own_generator() -> torch.Generator:
    """A DataLoader draws a seed for its workers from this generator each time it is iterated. Left to draw
    from torch's default generator, it would shift the random numbers the model's initialisation, dropout and
    augmentation draw, differently in a fresh, a resumed and an in-memory run; the workers draw none."""
    return torch.Generator().manual_seed(0)


class ReadError:
    """A sample a worker could not read, passed back as a value: the DataLoader would turn an exception into
    a RuntimeError that carries the worker's traceback instead of dlx's message."""

    def __init__(self, message: str) -> None:
        self.message = message


def collate_or_error(samples: list[Sample | ReadError]) -> tuple[torch.Tensor, torch.Tensor] | ReadError:
    for sample in samples:
        if isinstance(sample, ReadError):
            return sample
    images, labels = zip(*samples)
    return torch.stack(images), torch.tensor(labels)


class CatchReadErrors(Dataset):
    """A dataset whose DlxErrors (a damaged file) come back as ReadError values."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample | ReadError:
        try:
            return self.dataset[index]
        except DlxError as err:
            return ReadError(str(err))


class BatchList:
    """The batch sampler: the batches the loop asks for next, as lists of sample indices. The DataLoader
    iterates it anew for each batches() call (in this process), so persistent workers serve every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Streamed:
    """A split whose samples a Dataset reads one by one ((C, H, W) uint8 image, class index)."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor, sample_shape: list[int],
                 on_read_error: Callable[[str], DlxError], inputs: Inputs | None = None, device: str = "cpu",
                 loading: Loading = Loading()) -> None:
        self.dataset = dataset
        self._labels = labels
        self._sample_shape = sample_shape
        self.on_read_error = on_read_error  # the message a user sees for a file that fails mid-run
        self.inputs = inputs or (lambda x: x)
        self.device = device
        self.loading = loading
        self.sampler = BatchList()
        self.loader: DataLoader | None = None  # made on first use, kept: persistent workers outlive epochs

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def sample_shape(self) -> list[int]:
        return self._sample_shape

    def labels(self) -> torch.Tensor:
        return self._labels

    def prepared(self, inputs: Inputs, device: str, loading: Loading) -> "Streamed":
        return Streamed(self.dataset, self._labels, self._sample_shape, self.on_read_error, inputs, device, loading)

    def batches(self, indices: Sequence[BatchIndex]) -> Iterator[Batch]:
        self.sampler.batches = [self.index_list(index) for index in indices]
        pin = self.loading.pin_memory and self.device.startswith("cuda")
        for batch in self.data_loader():
            if isinstance(batch, ReadError):
                raise self.on_read_error(batch.message)
            pixels, labels = batch
            # Scaled on the device as the in-memory path scales its batches: the same numbers.
            x = scaled(pixels.to(self.device, non_blocking=pin))
            yield self.inputs(x), labels.to(self.device, non_blocking=pin)

    def index_list(self, index: BatchIndex) -> list[int]:
        if isinstance(index, slice):
            return list(range(*index.indices(len(self))))
        return index.tolist()

    def data_loader(self) -> DataLoader:
        if self.loader is None:
            workers = self.loading.num_workers
            options: dict[str, Any] = {}
            if workers > 0:
                options = {"persistent_workers": self.loading.persistent_workers,
                           "prefetch_factor": self.loading.prefetch_factor}
            self.loader = DataLoader(CatchReadErrors(self.dataset), batch_sampler=self.sampler, num_workers=workers,
                                     collate_fn=collate_or_error, pin_memory=self.loading.pin_memory
                                     and self.device.startswith("cuda"), generator=own_generator(),
                                     worker_init_fn=ignore_stop_signals, **options)
        return self.loader
