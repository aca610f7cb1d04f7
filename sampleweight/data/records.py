"""What a data set is: one record per image (id, file, class, lesion group), whatever layout it came from.

A multilabel data set (several labels per image) holds 0/1 per label, ``labels`` [N, L], instead of one class index:
its ``classes`` are the label names and `DatasetRecords.class_counts` is the ``[2, L]`` table (images without and with
each label) that the class weighters and samplers take for a multilabel task.

`DatasetRecords` is what every reader returns (`sampleweight.data.layouts.read_dataset` for the files a
user downloaded, `sampleweight.data.synthetic` for the embedded set) and what splits, caches and datasets
take. Class order is fixed per data set; ISIC 2018 / HAM10000 use `ISIC_CLASSES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from sampleweight.functional import multi_hot_counts

__all__ = ["ISIC_CLASSES", "UNLABELLED", "DatasetRecords"]

ISIC_CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
"""The class order of every ISIC 2018 / HAM10000 data set: the column order of ISIC's ground-truth CSV."""

UNLABELLED = -1
"""The label of every image of an unlabelled data set (a folder of images without ground truth)."""


@dataclass(frozen=True, eq=False)
class DatasetRecords:
    """The records of one data set: parallel sequences, one entry per image, in a fixed order.

    Attributes:
        image_ids: Image identifiers as the data set names them (``ISIC_0024306``).
        labels: Class indices into `classes`, ``np.int64`` [N] (read-only); for a multilabel data set, 0/1 per label,
            ``np.int64`` [N, L] with L = ``len(classes)`` (see `multilabel`).
        groups: Lesion id of each image, or the image id where the data set has none; images of one group
            always land on the same side of a split.
        classes: Class names; ``labels`` index into this tuple.
        layout: Which layout was read (one of `LAYOUTS`).
        root: The folder the data set was read from (None for in-memory data).
        paths: Image file of each record, or None for in-memory data (synthetic).
        render: For in-memory data: ``render(image_size) -> uint8 [N, S, S, 3]``; None for files.
        skipped: What ``skip_bad=True`` left out, one line per row (empty when nothing was skipped).
        source: The ``source`` string the records were read from.
        unlabelled: Image files found with the data (relative to ``root``) that no row names, so not used:
            e.g. ISIC images with no ground-truth row.
        merged_labels: One line per label spelling read as another (surrounding spaces dropped).
        labelled: False for images without ground truth (layout ``images``): every label is `UNLABELLED`,
            ``classes`` are those the images will be scored against, and `class_counts` are zeros.

    Example:
        >>> from sampleweight.data import read_dataset
        >>> records = read_dataset("synthetic:200")
        >>> records.class_counts().tolist()  # in ISIC_CLASSES order
        [22, 134, 10, 7, 22, 2, 3]
    """

    image_ids: tuple[str, ...]
    labels: np.ndarray
    groups: tuple[str, ...]
    classes: tuple[str, ...]
    layout: str
    root: Path | None = None
    paths: tuple[Path, ...] | None = None
    render: Callable[[int], np.ndarray] | None = field(default=None, repr=False)
    skipped: tuple[str, ...] = ()
    source: str = ""
    unlabelled: tuple[str, ...] = ()
    merged_labels: tuple[str, ...] = ()
    labelled: bool = True

    def __post_init__(self) -> None:
        labels = np.array(self.labels, dtype=np.int64, copy=True)
        labels = labels if labels.ndim == 2 else labels.reshape(-1)
        labels.flags.writeable = False
        object.__setattr__(self, "labels", labels)
        n = len(self.image_ids)
        if len(labels) != n or len(self.groups) != n or (self.paths is not None and len(self.paths) != n):
            raise ValueError("image_ids, labels, groups and paths must have one entry per image")
        if (self.paths is None) == (self.render is None):
            raise ValueError("exactly one of paths (images on disk) and render (images in memory) is needed")
        if labels.ndim == 2:  # multilabel: 0/1 per label
            if labels.shape[1] != len(self.classes) or not self.labelled:
                raise ValueError("multilabel labels [N, L] need labelled records and one class name per label column")
            if labels.size and not np.isin(labels, (0, 1)).all():
                raise ValueError("multilabel labels must be 0 or 1")
        elif not self.labelled:
            if n and (labels != UNLABELLED).any():
                raise ValueError(f"unlabelled records must have every label {UNLABELLED}")
        elif n and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError("labels must index into classes")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def multilabel(self) -> bool:
        """Whether each image holds 0/1 per label (``labels`` [N, L]) rather than one class index."""
        return self.labels.ndim == 2

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def class_counts(self, indices: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Images per class, in `classes` order.

        Args:
            indices: Count only these records (e.g. the training side of a split); default all.

        Returns:
            LongTensor [C]: what the class-balance weighters take as ``class_counts`` (zeros when unlabelled); for a
            `multilabel` data set the ``[2, L]`` table: row 0 the images without each label, row 1 those with it.
        """
        labels = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        if self.multilabel:
            return multi_hot_counts(torch.from_numpy(labels))
        labels = labels[labels != UNLABELLED]
        return torch.from_numpy(np.bincount(labels, minlength=self.num_classes).astype(np.int64))

    def subset(self, indices: Sequence[int] | np.ndarray) -> DatasetRecords:
        """The records at ``indices`` (in that order), with the same classes and layout.

        Args:
            indices: Record positions.

        Returns:
            A new `DatasetRecords`; for in-memory data its `render` renders the full set and selects.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        render = None
        if self.render is not None:
            full = self.render

            def render(image_size: int, _full: Callable[[int], np.ndarray] = full) -> np.ndarray:
                return _full(image_size)[idx]

        return replace(
            self,
            image_ids=tuple(self.image_ids[i] for i in idx),
            labels=self.labels[idx],
            groups=tuple(self.groups[i] for i in idx),
            paths=None if self.paths is None else tuple(self.paths[i] for i in idx),
            render=render,
        )

    def describe(self) -> str:
        """One line: layout, where, how many images and lesions, and the images per class."""
        if not self.labelled:
            where = f" at {self.root}" if self.root is not None else ""
            skipped = f"; {len(self.skipped)} skipped" if self.skipped else ""
            return f"{self.layout}{where}: {len(self)} images without labels{skipped}"
        counts = self.class_counts()[1 if self.multilabel else slice(None)].tolist()
        per_class = ", ".join(f"{name} {count}" for name, count in zip(self.classes, counts, strict=True))
        where = f" at {self.root}" if self.root is not None else ""
        skipped = f"; {len(self.skipped)} skipped" if self.skipped else ""
        if self.multilabel:
            return (
                f"{self.layout}{where}: {len(self)} images, {len(set(self.groups))} lesions, "
                f"{self.num_classes} labels (images with each: {per_class}){skipped}"
            )
        return (
            f"{self.layout}{where}: {len(self)} images, {len(set(self.groups))} lesions, "
            f"{self.num_classes} classes ({per_class}){skipped}"
        )
