"""A binary task on any labelled data set: the named classes (``--positive MEL[,...]``) against the rest.

The split is drawn on the data set's own classes first (grouped by lesion or patient, stratified by class), then the
labels become 0 (``rest``) and 1 (the positive classes, named joined with ``+``). So a binary run and a multiclass run
of the same split and seed validate on the same images, and their scores can be compared image by image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from sampleweight.data.dataset import SplitDatasets
from sampleweight.data.records import UNLABELLED, DatasetRecords
from sampleweight.errors import ConfigError

__all__ = ["NEGATIVE", "binary_classes", "binary_records", "binary_split", "positive_indices"]

NEGATIVE = "rest"
"""The name of a binary task's negative class (index 0)."""


def positive_indices(classes: Sequence[str], positive: Sequence[str] | None) -> tuple[int, ...]:
    """The indices of the positive classes among ``classes``.

    Args:
        classes: The data set's classes.
        positive: The names given (``--positive``); None: the second class of a two-class data set (an ISIC 2020
            layout's ``melanoma``).

    Raises:
        ConfigError: No ``positive`` for a data set of more than two classes, an unknown name, or every class named.

    Example:
        >>> positive_indices(("MEL", "NV", "BCC"), ["MEL", "BCC"])
        (0, 2)
    """
    if not positive:
        if len(classes) == 2:
            return (1,)
        raise ConfigError(
            f"--task binary needs --positive CLASS[,CLASS...]: the classes counted as positive; this data set's "
            f"classes: {', '.join(classes)}"
        )
    unknown = [name for name in positive if name not in classes]
    if unknown:
        raise ConfigError(
            f"--positive {', '.join(unknown)}: not a class of this data set; its classes: {', '.join(classes)}"
        )
    chosen = tuple(sorted({classes.index(name) for name in positive}))
    if len(chosen) == len(classes):
        raise ConfigError(f"--positive names every class ({', '.join(classes)}); leave at least one as the rest")
    return chosen


def binary_classes(classes: Sequence[str], positive: Sequence[str] | None) -> tuple[str, str]:
    """``("rest", "MEL+BCC")``: a binary task's class names (negative first)."""
    return NEGATIVE, "+".join(classes[i] for i in positive_indices(classes, positive))


def _as_binary(labels: np.ndarray, chosen: tuple[int, ...]) -> np.ndarray:
    binary = np.isin(labels, chosen).astype(np.int64)
    return np.where(labels == UNLABELLED, UNLABELLED, binary)


def binary_records(records: DatasetRecords, positive: Sequence[str] | None) -> DatasetRecords:
    """The records with labels 0 (rest) / 1 (positive) and classes `binary_classes`."""
    chosen = positive_indices(records.classes, positive)
    return replace(
        records, labels=_as_binary(records.labels, chosen), classes=binary_classes(records.classes, positive)
    )


def binary_split(data: SplitDatasets, records: DatasetRecords, positive: Sequence[str] | None) -> SplitDatasets:
    """Both sides of a split drawn on ``records``' own classes, relabelled 0/1 (see the module doc).

    Args:
        data: `sampleweight.data.build_datasets` of ``records``.
        records: The records as read (their own classes).
        positive: The positive classes' names.

    Returns:
        The same images on each side, labels 0/1, classes ``("rest", positive)``, class counts ``[N_rest, N_pos]``.
    """
    chosen = positive_indices(records.classes, positive)
    for side in (data.train, data.val):
        side.labels = _as_binary(side.labels, chosen)
    counts = torch.from_numpy(np.bincount(data.train.labels[data.train.labels >= 0], minlength=2).astype(np.int64))
    return replace(data, classes=binary_classes(records.classes, positive), class_counts=counts)
