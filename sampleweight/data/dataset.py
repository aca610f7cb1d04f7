"""Torch data sets over the preprocessed images, and the train/validation pair of one split.

`CachedImageDataset` indexes the uint8 ``[N, 3, S, S]`` array of `prepare_cache` (a memory map of the
cache file, or the in-memory synthetic images) and returns ``(image, label, index)``, where ``index`` is
the position in this data set (what per-sample weighters key their history by; `record_indices` maps it
back to the records). It implements ``__getitems__``, so a ``DataLoader`` fetches a whole batch with one
sorted slice of the memory map instead of one read per image.

`build_datasets` is the paper's pipeline for one split of already-read records: cache the images, split by
lesion, and wrap both sides, with either per-sample augmentation in the loader workers
(``augment="per_sample"``) or uint8 batches for `BatchAugment` on the device (``augment="batch"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sampleweight.data.cache import CachedImages, prepare_cache
from sampleweight.data.records import DatasetRecords
from sampleweight.data.splits import split_indices
from sampleweight.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    BatchAugment,
    eval_transform,
    train_transform,
)
from sampleweight.errors import ConfigError

__all__ = ["AUGMENT_MODES", "CachedImageDataset", "SplitDatasets", "build_datasets", "build_eval_dataset"]

log = logging.getLogger(__name__)

AUGMENT_MODES = ("per_sample", "batch")
"""Where the online augmentation runs: in the data set (per sample, CPU workers) or on whole batches."""


class CachedImageDataset(Dataset):
    """Images of a preprocessed array with their labels: ``dataset[i] -> (image, label, i)``.

    Args:
        images: uint8 ``[N, 3, S, S]``, e.g. ``prepare_cache(...).images`` (a memory map is reopened by
            path in worker processes instead of being pickled).
        labels: Class index per row of ``images`` ``[N]``, or 0/1 per label ``[N, L]`` (a multilabel data set: an
            item's label is then an ``int64`` tensor [L], and a loader's batch of them ``[B, L]``).
        indices: Which rows this data set covers (default all), in order.
        transform: Applied to the uint8 ``[3, S, S]`` tensor (e.g. `train_transform`); None returns it as is.

    Example:
        >>> import numpy as np
        >>> images = np.zeros((10, 3, 32, 32), np.uint8)
        >>> dataset = CachedImageDataset(images, np.arange(10) % 2, indices=[0, 5])
        >>> image, label, index = dataset[1]
        >>> image.shape, label, index
        (torch.Size([3, 32, 32]), 1, 1)
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        indices: Sequence[int] | np.ndarray | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [N, 3, S, S], got {images.dtype} {images.shape}")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 2:
            labels = labels.reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        rows = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        self.record_indices: np.ndarray = rows
        """Row of ``images`` (= record index) of each item."""
        self.labels: np.ndarray = labels[rows]
        """Class index of each item, ``np.int64`` [len(self)] (0/1 per label, [len(self), L], when multilabel)."""
        self.transform = transform

    def __len__(self) -> int:
        return len(self.record_indices)

    def label(self, index: int) -> int | Tensor:
        """Item ``index``'s class index, or its 0/1 labels as an ``int64`` tensor [L] (multilabel)."""
        if self.labels.ndim == 2:
            return torch.from_numpy(self.labels[index].copy())
        return int(self.labels[index])

    def __getitem__(self, index: int) -> tuple[Tensor, int | Tensor, int]:
        row = int(self.record_indices[index])
        image = torch.from_numpy(np.array(self.images[row]))
        if self.transform is not None:
            image = self.transform(image)
        return image, self.label(index), int(index)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, int | Tensor, int]]:
        """A batch at once: one sorted fancy-index read of the image array (fast on a memory map)."""
        positions = np.asarray(indices, dtype=np.int64)
        rows = self.record_indices[positions]
        order = np.argsort(rows, kind="stable")
        block = torch.from_numpy(self.images[rows[order]])  # one sequential pass over the memory map
        slot = np.empty_like(order)
        slot[order] = np.arange(len(order))  # item k is block[slot[k]]
        items = []
        for k, position in enumerate(positions.tolist()):
            image = block[slot[k]]
            if self.transform is not None:
                image = self.transform(image)
            items.append((image, self.label(position), position))
        return items

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap) and self.images.filename is not None:
            state["images"] = Path(self.images.filename)  # reopen, do not pickle gigabytes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["images"], Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)


@dataclass(frozen=True, eq=False)
class SplitDatasets:
    """The two sides of one split, ready for ``DataLoader``s.

    Attributes:
        train: Training side (augmented per sample, or uint8 for `BatchAugment`).
        val: Validation side (evaluation transform, or uint8).
        classes: Class names, in index order.
        class_counts: Training-side images per class, LongTensor [C] (for the class-balance weighters).
        train_indices: Record indices of ``train`` (after leaving out undecodable images with skip_bad).
        val_indices: Record indices of ``val``.
        cached: The image cache both sides read.
        augment: ``"per_sample"`` or ``"batch"``.
        batch_augment: For ``"batch"``: the `BatchAugment` to apply on the device to training batches
            (call ``.eval()`` on it, or on a copy, for validation batches); None for ``"per_sample"``.
        skipped: What was left out, one line each (skipped rows and undecodable images).
    """

    train: CachedImageDataset
    val: CachedImageDataset
    classes: tuple[str, ...]
    class_counts: Tensor
    train_indices: np.ndarray
    val_indices: np.ndarray
    cached: CachedImages
    augment: str
    batch_augment: BatchAugment | None
    skipped: tuple[str, ...] = ()


def build_datasets(
    records: DatasetRecords,
    split: int = 0,
    seed: int = 0,
    *,
    image_size: int = 299,
    val_fraction: float = 0.2,
    augment: Literal["per_sample", "batch"] = "per_sample",
    augmentation: Augmentation | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    cache_dir: str | Path | None = None,
    colour_constancy: bool = True,
    minkowski_p: float = 6.0,
    workers: int | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> SplitDatasets:
    """The training and validation data sets of one split of the paper's protocol.

    Caches the images (`prepare_cache`: decoded, colour-normalised and resized once), splits by lesion
    (`split_indices`) and wraps both sides as `CachedImageDataset`.

    Args:
        records: The data set (`read_dataset`).
        split: Which split (0 and 1 in the paper).
        seed: Base seed of the split.
        image_size: Side of the images the model sees (299 in the paper); also the cached size.
        val_fraction: Share of each class held out.
        augment: ``"per_sample"``: torchvision transforms in the data set (float32, normalised);
            ``"batch"``: the data sets return uint8 ``[3, S, S]`` and ``batch_augment`` augments and
            normalises whole batches on the device (what keeps a fast GPU busy).
        augmentation: Augmentation parameters (default `Augmentation()`).
        mean: Normalisation mean.
        std: Normalisation std.
        cache_dir: Cache folder (default `default_cache_dir()`).
        colour_constancy: Apply Shades of Gray when caching.
        minkowski_p: Its norm.
        workers: Threads decoding images for the cache.
        progress: Show a progress bar while caching.
        skip_bad: Leave out images that cannot be decoded (reported) instead of raising.

    Returns:
        `SplitDatasets`.

    Raises:
        ConfigError: Unknown ``augment``.
        DataError: Bad images (without ``skip_bad``); data that cannot be split.

    Example:
        >>> from sampleweight.data import read_dataset
        >>> data = build_datasets(read_dataset("synthetic:300"), split=0, image_size=32, progress=False)
        >>> len(data.train) + len(data.val), data.class_counts.sum().item() == len(data.train)
        (300, True)
    """
    if augment not in AUGMENT_MODES:
        raise ConfigError(f"unknown augment mode {augment!r}; valid: {', '.join(AUGMENT_MODES)}")
    train_idx, val_idx = split_indices(records, split, seed, val_fraction)
    cached = prepare_cache(
        records,
        image_size,
        cache_dir=cache_dir,
        colour_constancy=colour_constancy,
        minkowski_p=minkowski_p,
        workers=workers,
        progress=progress,
        skip_bad=skip_bad,
    )
    if cached.bad:  # only reached with skip_bad
        bad = np.asarray(cached.bad, dtype=np.int64)
        train_idx, val_idx = np.setdiff1d(train_idx, bad), np.setdiff1d(val_idx, bad)
    batch_augment = None
    if augment == "batch":
        train_tf = val_tf = None
        batch_augment = BatchAugment(image_size, augmentation, mean=mean, std=std)
    else:
        train_tf = train_transform(image_size, augmentation, mean=mean, std=std)
        val_tf = eval_transform(image_size, mean=mean, std=std)
    return SplitDatasets(
        train=CachedImageDataset(cached.images, records.labels, train_idx, train_tf),
        val=CachedImageDataset(cached.images, records.labels, val_idx, val_tf),
        classes=records.classes,
        class_counts=records.class_counts(train_idx),
        train_indices=train_idx,
        val_indices=val_idx,
        cached=cached,
        augment=augment,
        batch_augment=batch_augment,
        skipped=records.skipped + cached.bad_reasons,
    )


def build_eval_dataset(
    records: DatasetRecords,
    *,
    image_size: int = 299,
    augment: Literal["per_sample", "batch"] = "per_sample",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    cache_dir: str | Path | None = None,
    colour_constancy: bool = True,
    minkowski_p: float = 6.0,
    workers: int | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> CachedImageDataset:
    """All records as one evaluation data set (e.g. the ISIC 2018 Validation or Test release).

    Args:
        records: The data set.
        image_size: Side of the images.
        augment: ``"per_sample"``: items are normalised float32; ``"batch"``: uint8, for
            ``BatchAugment(...).eval()`` on the device.
        mean: Normalisation mean.
        std: Normalisation std.
        cache_dir: Cache folder.
        colour_constancy: Apply Shades of Gray when caching.
        minkowski_p: Its norm.
        workers: Threads decoding images for the cache.
        progress: Show a progress bar while caching.
        skip_bad: Leave out images that cannot be decoded (reported) instead of raising.

    Returns:
        `CachedImageDataset`; its ``record_indices`` name the records (``records.image_ids``) of its items.
    """
    if augment not in AUGMENT_MODES:
        raise ConfigError(f"unknown augment mode {augment!r}; valid: {', '.join(AUGMENT_MODES)}")
    cached = prepare_cache(
        records,
        image_size,
        cache_dir=cache_dir,
        colour_constancy=colour_constancy,
        minkowski_p=minkowski_p,
        workers=workers,
        progress=progress,
        skip_bad=skip_bad,
    )
    indices = np.setdiff1d(np.arange(len(records)), np.asarray(cached.bad, dtype=np.int64))
    transform = eval_transform(image_size, mean=mean, std=std) if augment == "per_sample" else None
    return CachedImageDataset(cached.images, records.labels, indices, transform)
