"""From a `TrainConfig` to batches on the device: the data side of a training run.

The images come from the cache (`sampleweight.data`) as uint8 ``[3, S, S]``; the random augmentation
and the normalisation run on whole batches on the training device (`BatchAugment`), so loader workers
only copy bytes. The order of the training batches and every augmentation draw come from generators
seeded by ``(seed, epoch)``: an epoch is the same whether or not the run was resumed before it.

With several processes (``torchrun``), ``batch_size`` is the global batch: every process draws the same
permutation and loads its own contiguous part of each global batch (`EpochSampler`), and its own
round-robin shard of the validation side (`ShardSampler`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from sampleweight import distributed
from sampleweight.data import BatchAugment, DataInventory, build_datasets, read_dataset
from sampleweight.engine import ddp
from sampleweight.engine.config import TrainConfig
from sampleweight.errors import ConfigError

__all__ = ["EpochSampler", "ShardSampler", "TrainingData", "epoch_seed", "load_split", "make_loader"]


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """A 63-bit seed for one epoch (and one independent ``stream`` of draws within it, for process ``rank``).

    Rank 0 (and a single process) gets the seeds of ``(seed, epoch, stream)``; every other rank its own.
    """
    entropy = [seed, epoch, stream] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler[int]):
    """A random permutation per epoch, fixed by ``(seed, epoch)``; call `set_epoch` before iterating.

    With ``world_size > 1`` it yields this process's share, so that the processes together load what
    one process would: every process draws the same permutation, pads it to a multiple of
    ``world_size`` by repeating its first samples (as ``DistributedSampler`` does; fewer than
    ``world_size`` repeated samples per epoch), cuts it into global batches of ``batch_size`` and each
    global batch into ``world_size`` equal contiguous parts; process ``r`` takes part ``r``. Batches of
    ``batch_size / world_size`` from this sampler are then exactly those parts: the parts of step k,
    concatenated in rank order, are batch k of one process with the same ``batch_size`` (the last one
    with the padding), in the same order, and every process runs the same number of steps.

    Args:
        length: Number of samples.
        seed: Base seed.
        batch_size: The global batch size M (a multiple of ``world_size``); needed when ``world_size > 1``.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
        self, length: int, seed: int, *, batch_size: int | None = None, rank: int = 0, world_size: int = 1
    ) -> None:
        if world_size > 1 and (batch_size is None or batch_size % world_size):
            raise ValueError(f"batch_size must be a multiple of world_size={world_size}, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        self.length, self.seed, self.epoch = length, seed, 0
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        order = torch.randperm(self.length, generator=generator)
        if self.world_size > 1:
            order = self._share(order)
        return iter(order.tolist())

    def _share(self, order: Tensor) -> Tensor:
        """This rank's parts of the global batches of the padded permutation."""
        world, per_process = self.world_size, self.batch_size // self.world_size
        total = len(self) * world
        padded = order.repeat(math.ceil(total / max(1, self.length)))[:total]
        full = total - total % self.batch_size  # samples in full global batches
        head = padded[:full].view(-1, world, per_process)[:, self.rank].reshape(-1)
        tail = padded[full:].view(world, -1)[self.rank]
        return torch.cat([head, tail])

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)


class ShardSampler(Sampler[int]):
    """Samples ``rank, rank + W, rank + 2W, ...`` in order: one process's shard of an evaluation set.

    Every sample is in exactly one shard (no padding); `sampleweight.distributed.gather_interleaved`
    puts the shards' outputs back into data-set order.

    Args:
        length: Number of samples.
        rank: This process's rank.
        world_size: Number of processes (W).
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


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
        rank: This process's rank (its augmentation draws differ from the other processes').
        inventory: Images per class on each side, and what the reader left out (``data.json``).
    """

    train: DataLoader
    val: DataLoader
    classes: tuple[str, ...]
    class_counts: Tensor
    val_ids: list[str]
    augment: BatchAugment
    normalize: nn.Module
    describe: str
    rank: int = 0
    inventory: DataInventory | None = None

    def set_epoch(self, epoch: int, seed: int) -> torch.Generator:
        """Prepare ``epoch``: its batch order, and a generator for its augmentation draws on the device."""
        self.train.sampler.set_epoch(epoch)
        generator = torch.Generator(device=self.augment.mean.device)
        return generator.manual_seed(epoch_seed(seed, epoch, stream=2, rank=self.rank))


def load_split(config: TrainConfig, device: torch.device) -> TrainingData:
    """Read the data set, split it, cache its images and wrap both sides as loaders.

    With several processes, ``config.batch_size`` is the global batch: each process loads
    ``batch_size / world_size`` samples per step (its share of the same global batch, `EpochSampler`)
    and its shard of the validation side (`ShardSampler`); each node's first process fills the image
    cache before the others read it.

    Raises:
        ConfigError: A batch size that the processes cannot share equally.
        DataError: A bad data set (missing or corrupt images, unknown labels, a class with no images).
    """
    rank, world = distributed.rank(), distributed.world_size()
    if config.batch_size % world:
        raise ConfigError(
            f"--batch-size {config.batch_size} is the global batch, shared by {world} processes; "
            f"choose a multiple of {world}"
        )
    records = read_dataset(config.data, skip_bad=config.skip_bad)
    with ddp.local_main_first():
        data = build_datasets(
            records,
            config.split,
            config.seed,
            image_size=config.image_size,
            val_fraction=config.val_fraction,
            augment="batch",
            cache_dir=config.cache_dir,
            progress=not config.quiet and ddp.is_main(),
            skip_bad=config.skip_bad,
        )
    augment = BatchAugment(config.image_size).to(device)
    normalize = BatchAugment(config.image_size).to(device).eval()
    workers = _workers(config.workers, device)
    per_process = config.batch_size // world
    sampler = EpochSampler(len(data.train), config.seed, batch_size=config.batch_size, rank=rank, world_size=world)
    train = make_loader(data.train, per_process, device, workers, sampler)
    shard = ShardSampler(len(data.val), rank, world) if world > 1 else None
    val = make_loader(data.val, per_process, device, workers, shard)
    val_ids = [records.image_ids[i] for i in data.val_indices]
    inventory = DataInventory.of_sides(
        records, {"train": data.train_indices, "validation": data.val_indices}, data.skipped
    )
    return TrainingData(
        train, val, data.classes, data.class_counts, val_ids, augment, normalize, records.describe(), rank, inventory
    )


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
