"""From a `TrainConfig` to batches on the device: the data side of a training run.

The images come from the cache (`sampleweight.data`) as uint8 ``[3, S, S]``; the random augmentation
and the normalisation run on whole batches on the training device (`BatchAugment`), so loader workers
only copy bytes. The training batches come from the configured sampler (``config.sampler``, a sampler
plugin: ``instance``, today's shuffled pass, by default) and every augmentation draw from generators
seeded by ``(seed, epoch)``: an epoch is the same whether or not the run was resumed before it.

With several processes (``torchrun``), ``batch_size`` is the global batch: every process draws the same
global sequence and loads its own contiguous part of each global batch (`sampleweight.ShardedSampler`),
and its own round-robin shard of the validation side (`ShardSampler`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from sampleweight import distributed
from sampleweight.data import BatchAugment, DataInventory, build_datasets, read_dataset
from sampleweight.data.binary import binary_records, binary_split
from sampleweight.data.multilabel import taxonomy_records, taxonomy_split
from sampleweight.engine import ddp
from sampleweight.engine.config import TrainConfig, refuse_facts
from sampleweight.errors import ConfigError, DataError
from sampleweight.factory import SAMPLER_FACTS, check_sampler_options, create_sampler
from sampleweight.plugins import get_registry
from sampleweight.sampling import ShardedSampler, epoch_seed
from sampleweight.taxonomy import Taxonomy, as_taxonomy

__all__ = [
    "ShardSampler",
    "TrainingData",
    "check_label_positives",
    "check_sampler",
    "epoch_seed",
    "label_tree",
    "load_split",
    "make_loader",
    "smallest_part",
]


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
        train: Training batches ``(uint8 images [B, 3, S, S], labels [B], indices [B])``, drawn per epoch by
            ``train.sampler`` (a `ShardedSampler` over the configured sampler plugin).
        val: Validation batches in a fixed order.
        classes: Class names in index order (a multilabel task: the label names).
        class_counts: Training-side images per class (LongTensor [C]; a multilabel task: the ``[2, L]`` table of
            images without and with each label).
        val_ids: Image ids of the validation side, in the order of ``val``.
        augment: Training augmentation + normalisation, on the device (uint8 batch -> float batch).
        normalize: The same module in eval mode: resize (if needed) + normalisation only.
        describe: One line on the data (layout, counts).
        rank: This process's rank (its augmentation draws differ from the other processes').
        inventory: Images per class on each side, and what the reader left out (``data.json``).
        train_targets: Class index of every training sample, LongTensor [N] (what the sampler draws from); a
            multilabel task: 0/1 per label, [N, L].
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
    train_targets: Tensor | None = None

    @property
    def sampler(self) -> ShardedSampler:
        """The training sampler: this process's share of the epoch's global sequence."""
        return self.train.sampler

    def set_epoch(self, epoch: int, seed: int) -> torch.Generator:
        """Prepare ``epoch``: its batch order, and a generator for its augmentation draws on the device."""
        self.sampler.set_epoch(epoch)
        generator = torch.Generator(device=self.augment.mean.device)
        return generator.manual_seed(epoch_seed(seed, epoch, stream=2, rank=self.rank))

    def drawn(self) -> dict[str, int]:
        """Samples per class in the current epoch's global sequence: what all processes together train on (a
        multilabel task: the images drawn that hold each label)."""
        drawn = self.train_targets[self.sampler.global_indices()]
        counts = drawn.sum(0) if drawn.ndim == 2 else torch.bincount(drawn, minlength=len(self.classes))
        return dict(zip(self.classes, counts.tolist(), strict=True))

    def images_drawn(self) -> int:
        """Images in the current epoch's global sequence (all processes together)."""
        return len(self.sampler.global_indices())


def load_split(config: TrainConfig, device: torch.device) -> TrainingData:
    """Read the data set, split it, cache its images and wrap both sides as loaders.

    The training side is drawn by ``config.sampler`` (`sampleweight.create_sampler`, with the training
    targets, the run's seed, epochs and batch size as facts). With several processes,
    ``config.batch_size`` is the global batch: each process loads ``batch_size / world_size`` samples per
    step (its share of the same global batch, `sampleweight.ShardedSampler`) and its shard of the
    validation side (`ShardSampler`); each node's first process fills the image cache before the others
    read it.

    Raises:
        ConfigError: A batch size that the processes cannot share equally; an unknown sampler, an option
            it does not take, an empty class for a rebalancing sampler, a bad epoch length.
        DataError: A bad data set (missing or corrupt images, unknown labels, a class with no images).
    """
    rank, world = distributed.rank(), distributed.world_size()
    if config.batch_size % world:
        raise ConfigError(
            f"--batch-size {config.batch_size} is the global batch, shared by {world} processes; "
            f"choose a multiple of {world}"
        )
    records = read_dataset(config.data, skip_bad=config.skip_bad)  # the caller checked the sampler (check_sampler)
    if records.multilabel and config.task != "multilabel":
        raise ConfigError(
            f"{config.data} is a multilabel data set ({len(records.classes)} label columns), which a {config.task} "
            "run cannot read; use --task multilabel"
        )
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
    if config.task == "binary":  # split on the data's own classes, then --positive against the rest
        data = binary_split(data, records, config.positive)
        records = binary_records(records, config.positive)
    elif config.task == "multilabel" and not records.multilabel:  # the label tree's nodes, split on the classes
        taxonomy = label_tree(config.model, config.taxonomy, records.classes)
        data = taxonomy_split(data, taxonomy)
        records = taxonomy_records(records, taxonomy)
    if config.task == "multilabel":
        check_label_positives(data.class_counts, data.classes, config)
    augment = BatchAugment(config.image_size).to(device)
    normalize = BatchAugment(config.image_size).to(device).eval()
    workers = _workers(config.workers, device)
    per_process = config.batch_size // world
    targets = torch.as_tensor(data.train.labels, dtype=torch.long)
    facts = {
        "targets": targets,
        "class_counts": data.class_counts,
        "class_names": list(data.classes),
        "num_epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    sampler = create_sampler(config.sampler, num_replicas=world, rank=rank, **config.sampler_options, **facts)
    train = make_loader(data.train, per_process, device, workers, sampler)
    shard = ShardSampler(len(data.val), rank, world) if world > 1 else None
    val = make_loader(data.val, per_process, device, workers, shard)
    val_ids = [records.image_ids[i] for i in data.val_indices]
    inventory = DataInventory.of_sides(
        records, {"train": data.train_indices, "validation": data.val_indices}, data.skipped
    )
    return TrainingData(
        train,
        val,
        data.classes,
        data.class_counts,
        val_ids,
        augment,
        normalize,
        records.describe(),
        rank,
        inventory=inventory,
        train_targets=targets,
    )


def label_tree(model: str, taxonomy: Mapping[str, Any] | None, classes: tuple[str, ...]) -> Taxonomy:
    """A run's label tree in the data's class order: its ``taxonomy`` option (as saved in ``config.json``), else
    its model's registered one (the registration's ``taxonomy``), else ISIC 2018's. A multilabel run of a
    single-label data set trains on its nodes (`sampleweight.data.multilabel`)."""
    tree = taxonomy if taxonomy is not None else get_registry().info("models", model).get("taxonomy")
    return as_taxonomy(None if tree is None else dict(tree)).with_classes(classes)


def check_label_positives(class_counts: Tensor, labels: tuple[str, ...], config: TrainConfig) -> None:
    """A multilabel run's training side holds every label on some image (``class_counts``, the ``[2, L]`` table).

    A label no training image holds is a class the model never sees, and its class weights divide by zero.

    Raises:
        DataError: Naming the label(s) and what to do.
    """
    empty = [name for name, positives in zip(labels, class_counts[1].tolist(), strict=True) if positives == 0]
    if empty:
        raise DataError(
            f"--task multilabel: no image of the training side (split {config.split}, seed {config.seed}) holds the "
            f"label(s) {', '.join(empty)}; add images with them, leave those labels out of the data set, or choose "
            "another --split"
        )


def check_sampler(config: TrainConfig) -> None:
    """The sampler's name and options, checked before any image is read; the facts come from the run."""
    refuse_facts("sampler", config.sampler_options, SAMPLER_FACTS)
    check_sampler_options(config.sampler, config.sampler_options)


def smallest_part(model: nn.Module) -> int:
    """The fewest samples a process may train a step on: 2 when ``model`` has BatchNorm, else 1.

    BatchNorm in training mode cannot normalise one sample whose feature map is 1x1 (PyTorch raises
    "Expected more than 1 value per channel when training"); the training sampler then drops a last
    global batch that would give each process a single sample (`sampleweight.ShardedSampler`'s
    ``min_part``), on every process alike.
    """
    return 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1


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
