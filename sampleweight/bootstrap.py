"""The bootstrap over scored images: stratified resamples, any metric on them, percentile intervals.

One resample draws, within each class, as many images as the class has, with replacement, so every
resample keeps every class's count (a stratified bootstrap: the validation side's class mix is fixed
by the split, not a random quantity). A resample is held as *counts*: how many times each image is
drawn ([R, N] integers), which is what a vectorised metric needs (a weighted confusion matrix, a
weighted rank statistic); a plain metric function is called once per resample on the images drawn.

The per-run confidence intervals of ``metrics.json`` (`sampleweight.metrics.metric_intervals`) and
the paired comparisons of ``sampleweight report`` (`sampleweight.studies.statistics`) draw their
resamples here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BootstrapResult", "bootstrap", "percentile_interval", "resample_counts", "resample_images"]


def resample_counts(
    targets: Any, resamples: int, seed: int | np.random.SeedSequence = 0, *, stratify: bool = True
) -> np.ndarray:
    """How many times each image is drawn in each of ``resamples`` bootstrap resamples.

    Args:
        targets: True class indices [N] (only their grouping matters when ``stratify``).
        resamples: R.
        seed: Seed of the draws (an int or a `numpy.random.SeedSequence`); the same seed and targets
            give the same resamples.
        stratify: Draw within each class (every resample keeps every class's count); False draws N
            images from all N.

    Returns:
        Counts [R, N] (int32); every row sums to N, and with ``stratify`` every class's images sum to
        its count.

    Example:
        >>> counts = resample_counts([0, 0, 0, 1], 3, seed=0)
        >>> counts.shape, counts[:, 3].tolist(), counts[:, :3].sum(axis=1).tolist()
        ((3, 4), [1, 1, 1], [3, 3, 3])
    """
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    labels = np.asarray(targets).reshape(-1)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, labels.size), dtype=np.int32)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(labels.size)]
    rows = np.arange(resamples)[:, None]
    for members in groups:
        size = members.size
        drawn = rng.integers(0, size, size=(resamples, size))  # positions within the group
        tally = np.bincount((rows * size + drawn).ravel(), minlength=resamples * size)
        counts[:, members] = tally.reshape(resamples, size)
    return counts


def resample_images(counts: np.ndarray) -> list[np.ndarray]:
    """The image indices each resample draws (``counts`` row ``r`` -> each index repeated as often as drawn)."""
    positions = np.arange(counts.shape[1])
    return [np.repeat(positions, row) for row in counts]


def percentile_interval(samples: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of bootstrap samples (percentile method), along the first axis.

    Args:
        samples: Statistic per resample [R, ...].
        level: Coverage, in (0, 1).

    Returns:
        ``(low, high)``, each of shape ``samples.shape[1:]``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    values = np.asarray(samples, dtype=np.float64)
    tail = (1 - level) / 2
    return np.quantile(values, tail, axis=0), np.quantile(values, 1 - tail, axis=0)


@dataclass(frozen=True)
class BootstrapResult:
    """A statistic on the images as given and on each resample.

    Attributes:
        estimate: The statistic on the data as given (a float, or an array for a vector statistic).
        samples: The statistic on each resample [R, ...].
        low: Lower end of the percentile interval (shape of ``estimate``).
        high: Upper end.
        level: The interval's coverage (0.95).
        resamples: R.
        seed: The seed of the resamples.
        stratified: Whether the resamples kept every class's count.
    """

    estimate: np.ndarray
    samples: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    resamples: int
    seed: int
    stratified: bool

    def settings(self) -> dict[str, Any]:
        """``{"resamples", "seed", "level", "stratified"}``: what ``metrics.json`` records of the bootstrap."""
        return {"resamples": self.resamples, "seed": self.seed, "level": self.level, "stratified": self.stratified}


def bootstrap(
    metric: Callable[..., Any],
    targets: Any,
    *values: Any,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    stratify: bool = True,
    weighted: bool = False,
) -> BootstrapResult:
    """A percentile bootstrap interval of any metric of ``(targets, *values)`` over the scored images.

    Args:
        metric: ``metric(targets, *values) -> float | array``: any metric, e.g. scikit-learn's
            ``roc_auc_score`` on ``(targets, scores)``; called once on the data and once per resample
            with the images drawn. With ``weighted``, ``metric(targets, *values, weights=counts)``
            instead: the data as given and ``counts`` [R, N] (how often each image is drawn), returning
            one value (or vector) per row [R, ...]; a vectorised metric answers all resamples in one
            call (`sampleweight.metrics.metric_intervals` does this).
        targets: True class indices [N]: the strata.
        *values: What the metric takes besides the targets, each indexed by image on its first axis
            (predictions [N], scores [N, C], ...).
        resamples: R (2,000 by default).
        seed: Seed of the resamples.
        level: Coverage of the interval.
        stratify: Resample within each class (`resample_counts`).
        weighted: Call ``metric`` with the resample counts (see above).

    Returns:
        A `BootstrapResult`.

    Example:
        >>> import numpy as np
        >>> targets = np.array([0, 0, 1, 1, 1, 0])
        >>> accuracy = lambda t, p: float((t == p).mean())
        >>> result = bootstrap(accuracy, targets, np.array([0, 1, 1, 1, 0, 0]), resamples=200)
        >>> round(float(result.estimate), 3), bool(result.low <= result.estimate <= result.high)
        (0.667, True)
    """
    labels = np.asarray(targets).reshape(-1)
    arrays = [np.asarray(v) for v in values]
    for array in arrays:
        if array.shape[:1] != labels.shape:
            raise ValueError(f"each value must hold one entry per image ({labels.size}), got shape {array.shape}")
    counts = resample_counts(labels, resamples, seed, stratify=stratify)
    if weighted:
        estimate = np.asarray(metric(labels, *arrays, weights=np.ones((1, labels.size), dtype=np.int32)))[0]
        samples = np.asarray(metric(labels, *arrays, weights=counts), dtype=np.float64)
    else:
        estimate = np.asarray(metric(labels, *arrays))
        samples = np.stack(
            [np.asarray(metric(labels[drawn], *(a[drawn] for a in arrays))) for drawn in resample_images(counts)]
        ).astype(np.float64)
    low, high = percentile_interval(samples, level)
    return BootstrapResult(estimate, samples, low, high, level, resamples, int(seed), stratify)
