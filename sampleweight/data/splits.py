"""The paper's protocol: random 80/20 train/validation splits, grouped by lesion, stratified by class.

Split ``k`` with seed ``s`` is one fold of scikit-learn's ``StratifiedGroupKFold`` with
``n_splits = round(1 / val_fraction)`` (5 for the paper's 80/20) and shuffling seeded by ``(s, k)``:
fold 0 is the validation side, the other folds the training side. So no lesion is on both sides, each
class is split 80/20 as closely as its lesion sizes allow, and the same ``(split, seed)`` always gives
the same split, while different split indices give different random splits (not disjoint folds of
one partition: the paper's two splits are two independent random 80/20 draws).

A multilabel data set (``labels`` [N, L]) is stratified by each image's rarest label (`split_strata`), the one fewest
images of the data set hold, images without any label forming a stratum of their own: so the rare labels, which a
random split is most likely to leave off one side, are split close to 80/20 where their lesions allow it. This is
the first step of iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011: place the images of the
rarest label first), done once, so scikit-learn's grouped splitter can keep lesions whole.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

from sampleweight.data.records import DatasetRecords
from sampleweight.errors import ConfigError, DataError

__all__ = ["label_strata", "split_class_counts", "split_indices", "split_strata"]


def split_strata(records: DatasetRecords) -> np.ndarray:
    """The stratum of each image that a split keeps at its proportions: its class, or (multilabel) its rarest label.

    Args:
        records: The data set.

    Returns:
        ``np.int64`` [N]: ``records.labels`` for a single-label data set; for a multilabel one, the index of the label
        of the image that the fewest images of the data set hold (ties: the first label), and ``L`` for an image
        without labels.

    Example:
        >>> import numpy as np
        >>> from sampleweight.data.records import DatasetRecords
        >>> labels = np.array([[1, 1], [1, 0], [0, 0], [1, 0]])
        >>> records = DatasetRecords(("a", "b", "c", "d"), labels, ("a", "b", "c", "d"), ("common", "rare"), "x",
        ...                          render=lambda size: np.zeros((4, size, size, 3), np.uint8))
        >>> split_strata(records).tolist()
        [1, 0, 2, 0]
    """
    return label_strata(records.labels) if records.multilabel else records.labels


def label_strata(targets: Any) -> np.ndarray:
    """The stratum of each image: its class, or (0/1 per label [N, L]) its rarest label among these images.

    The rule `split_strata` stratifies a multilabel split by, and the paired bootstrap its resamples
    (`sampleweight.studies.statistics.PairedBootstrap`): the index of the image's label that the fewest of these
    images hold (ties: the first label), and ``L`` for an image without labels.

    Args:
        targets: Class indices [N], or 0/1 per label [N, L].

    Returns:
        ``np.int64`` [N].

    Example:
        >>> label_strata(np.array([[1, 1], [1, 0], [0, 0], [1, 0]])).tolist()
        [1, 0, 2, 0]
    """
    labels = np.asarray(targets)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    present = labels.astype(bool)
    order = np.argsort(present.sum(0), kind="stable")  # rarest label first
    rarest = order[present[:, order].argmax(1)]
    return np.where(present.any(1), rarest, labels.shape[1]).astype(np.int64)


def split_indices(
    records: DatasetRecords, split: int = 0, seed: int = 0, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation sides of one lesion-grouped, class-stratified split.

    Args:
        records: The data set.
        split: Which split (0 and 1 are the paper's two); any integer >= 0.
        seed: Base seed; ``(split, seed)`` fixes the split.
        val_fraction: Share of each class's images to hold out: ``1/k`` (0.2, 0.25, 0.1, ...).

    Returns:
        ``(train_idx, val_idx)``: sorted ``np.int64`` record indices, disjoint, covering all records.

    Raises:
        ConfigError: ``split`` negative or ``val_fraction`` not ``1/k``.
        DataError: Fewer lesion groups than folds: there is nothing to split.

    Example:
        >>> from sampleweight.data import read_dataset
        >>> records = read_dataset("synthetic:500")
        >>> train_idx, val_idx = split_indices(records, split=0)
        >>> len(train_idx) + len(val_idx) == len(records)
        True
    """
    if isinstance(split, bool) or not isinstance(split, numbers.Integral) or split < 0:
        raise ConfigError(f"split must be an integer >= 0 (the paper uses 0 and 1), got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    folds = round(1 / val_fraction)
    if folds < 2 or abs(1 / folds - val_fraction) > 1e-6:
        raise ConfigError(
            "val_fraction must be 1/k for an integer k >= 2 (0.2 for the paper's 80/20, 0.25, 0.1, ...), "
            f"got {val_fraction!r}"
        )
    groups = np.asarray(records.groups, dtype=object).astype(str)
    num_groups = len(np.unique(groups))
    if num_groups < folds:
        raise DataError(
            f"cannot split {records.layout} data with {num_groups} lesion group(s) into {folds} folds "
            f"(val_fraction {val_fraction}): need at least {folds} lesions"
        )
    strata = split_strata(records)
    if np.bincount(strata[strata >= 0]).max(initial=0) < folds:
        raise DataError(
            f"cannot stratify {records.layout} data into {folds} folds: every class has fewer than {folds} images"
        )
    random_state = int(np.random.SeedSequence([int(seed), int(split)]).generate_state(1)[0])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=random_state)
    with (
        warnings.catch_warnings()
    ):  # "least populated class has fewer members than n_splits": expected for tiny classes
        warnings.simplefilter("ignore", UserWarning)
        train_idx, val_idx = next(splitter.split(np.zeros(len(records)), strata, groups))
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def split_class_counts(
    records: DatasetRecords, split: int = 0, seed: int = 0, val_fraction: float = 0.2
) -> torch.Tensor:
    """Training-side images per class of a split: the ``class_counts`` the class-balance weighters take.

    Args:
        records: The data set.
        split: Which split.
        seed: Base seed.
        val_fraction: Share held out for validation.

    Returns:
        LongTensor [C] in ``records.classes`` order.
    """
    train_idx, _ = split_indices(records, split, seed, val_fraction)
    return records.class_counts(train_idx)
