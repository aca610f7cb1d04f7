"""From a `TrainConfig` to batches on the device: the data side of a training run.

The images come from the cache (`sampleweight.data`) as uint8 ``[3, S, S]``; the random augmentation
and the normalisation run on whole batches on the training device (`BatchAugment`), so loader workers
only copy bytes. The order of the training batches and every augmentation draw come from generators
seeded by ``(seed, epoch)``: an epoch is the same whether or not the run was resumed before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from sampleweight.config import TrainConfig
from sampleweight.data import BatchAugment, build_datasets, read_dataset

__all__ = ["EpochSampler", "TrainingData", "epoch_seed", "load_split", "make_loader"]


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for one epoch (and one independent ``stream`` of draws within it)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler[int]):
    """A random permutation per epoch, fixed by ``(seed, epoch)``; call `set_epoch` before iterating.

    Args:
        length: Number of samples.
        seed: Base seed.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


@dataclass
class TrainingData:
    """Both sides of a split as loaders, and what the engine needs to know about them.

    Attributes:
        train: Training batches ``(uint8 images [B, 3, S, S], labels [B], indices [B])``, reshuffled per epoch.
        val: Validation batches in a fixed order.
        classes: Class names in index order.
        class_counts: Training-side images per class (LongTensor [C]).
        val_ids: Image ids of the validation side, in the order of ``val``.
        augment: Training augmentation + normalisation, on the device (uint8 batch -> float batch).
        normalize: The same module in eval mode: resize (if needed) + normalisation only.
        describe: One line on the data (layout, counts).
    """

    train: DataLoader
    val: DataLoader
    classes: tuple[str, ...]
    class_counts: Tensor
    val_ids: list[str]
    augment: BatchAugment
    normalize: nn.Module
    describe: str

    def set_epoch(self, epoch: int, seed: int) -> torch.Generator:
        """Prepare ``epoch``: its batch order, and a generator for its augmentation draws on the device."""
        self.train.sampler.set_epoch(epoch)
        generator = torch.Generator(device=self.augment.mean.device)
        return generator.manual_seed(epoch_seed(seed, epoch, stream=2))


def load_split(config: TrainConfig, device: torch.device) -> TrainingData:
    """Read the data set, split it, cache its images and wrap both sides as loaders.

    Raises:
        DataError: A bad data set (missing or corrupt images, unknown labels, a class with no images).
    """
    records = read_dataset(config.data)
    data = build_datasets(
        records,
        config.split,
        config.seed,
        image_size=config.image_size,
        val_fraction=config.val_fraction,
        augment="batch",
        cache_dir=config.cache_dir,
        progress=not config.quiet,
    )
    augment = BatchAugment(config.image_size).to(device)
    normalize = BatchAugment(config.image_size).to(device).eval()
    workers = _workers(config.workers, device)
    train = make_loader(data.train, config.batch_size, device, workers, EpochSampler(len(data.train), config.seed))
    val = make_loader(data.val, config.batch_size, device, workers)
    val_ids = [records.image_ids[i] for i in data.val_indices]
    return TrainingData(train, val, data.classes, data.class_counts, val_ids, augment, normalize, records.describe())


def make_loader(
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    workers: int,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    """A loader of uint8 batches: pinned memory on CUDA, persistent workers when there are any."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=False,
    )


def _workers(requested: int | None, device: torch.device) -> int:
    """Default: none on the CPU (the model needs the cores; cached reads are cheap), up to 8 for CUDA."""
    if requested is not None:
        return requested
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
