"""The bootstrap over scored images: stratified resamples, any metric on them, percentile or BCa intervals.

One resample draws, within each class, as many images as the class has, with replacement, so every
resample keeps every class's count (a stratified bootstrap: the validation side's class mix is fixed
by the split, not a random quantity). A resample is held as *counts*: how many times each image is
drawn ([R, N] integers), which is what a vectorised metric needs (a weighted confusion matrix, a
weighted rank statistic); a plain metric function is called once per resample on the images drawn.

**Intervals.** ``method="percentile"``: the central ``level`` share of the resampled values.
``method="bca"``: Efron's bias-corrected and accelerated interval (Efron 1987; Efron and Tibshirani 1993,
ch. 14), the percentile interval read at shifted levels ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))``: ``z0``
corrects for the median bias of the resampled values (from the share below the estimate, ties counted
one half), ``a`` (the acceleration) for the skewness of the metric's influence. ``a`` comes from a
*stratified delete-a-group jackknife* (`jackknife_groups`, `acceleration`): within each class, its
images are split at random into ``min(n_c, groups)`` groups (50 by default) and the metric is computed
with one group left out at a time; ``a = sum_c n_c^-3 sum_g U_g^3 / (6 (sum_c n_c^-2 sum_g U_g^2)^1.5)``
over the groups' influence values ``U_g`` (the form for several independently resampled samples, which
``scipy.stats.bootstrap`` uses for several samples; a test checks ours against it). A class of up to
``groups`` images is left out one image at a time (the exact jackknife); in a larger class a group's
influence is the sum of its images', so the sums of cubes and squares, and ``a``, estimate the same
quantities, at ``C x groups`` metric evaluations instead of N (at most 350 for HAM10000's seven classes,
against the 2,000 resamples). The small classes, whose skewness dominates ``a`` for the macro means, are
the ones left out image by image; in a large class the grouped estimate is rougher, but there ``a`` is
small (``benchmarks/bootstrap_coverage.py --exact`` compares the two).

The per-run confidence intervals of ``metrics.json`` (`sampleweight.metrics.metric_intervals`) and
the paired comparisons of ``sampleweight report`` (`sampleweight.studies.statistics`) draw their
resamples here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_METHOD",
    "INTERVAL_METHODS",
    "JACKKNIFE_GROUPS",
    "BootstrapResult",
    "JackknifeGroups",
    "acceleration",
    "bca_interval",
    "bias_correction",
    "bootstrap",
    "check_method",
    "interval",
    "jackknife_groups",
    "percentile_interval",
    "resample_counts",
    "resample_images",
]

INTERVAL_METHODS = ("percentile", "bca")
"""How an interval is read from the resamples: the percentile interval, or the bias-corrected and accelerated one."""
DEFAULT_METHOD = "bca"
"""The interval `metric_intervals` (``metrics.json``) and the paired comparisons read unless told otherwise.

BCa: at 1,500 images in the HAM10000 proportions it brought the coverage of the 95 % intervals of BAcc, mPR
and mF1 to 94.2-94.9 % where the percentile interval gave 92.5-94.8 %, never lower on Acc, BAcc, mPR or mF1,
for about a tenth more time (``benchmarks/bootstrap_coverage.py``, ``docs/benchmarks.md``)."""
JACKKNIFE_GROUPS = 50
"""Deletion groups per class of the jackknife behind the BCa acceleration (a class of fewer images: one each)."""


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


def check_method(method: str) -> str:
    """``method`` if it is one of `INTERVAL_METHODS`; a ValueError naming the choices otherwise."""
    if method not in INTERVAL_METHODS:
        raise ValueError(f"interval method must be one of {', '.join(INTERVAL_METHODS)}; got {method!r}")
    return method


@dataclass(frozen=True)
class JackknifeGroups:
    """A stratified delete-a-group jackknife: which images each deletion leaves out.

    Attributes:
        members: Per group, the indices of its images.
        sizes: Per group, how many images it holds [G].
        stratum_sizes: Per group, how many images its stratum (class) holds [G].
        strata: Per group, its stratum's index (0, 1, ... in the order of the sorted class labels) [G].
    """

    members: tuple[np.ndarray, ...]
    sizes: np.ndarray
    stratum_sizes: np.ndarray
    strata: np.ndarray

    def keep_weights(self, n: int) -> np.ndarray:
        """[G, N] int32: 1 for the images each deletion keeps, 0 for its group's (weights for a vectorised metric)."""
        weights = np.ones((len(self.members), n), dtype=np.int32)
        for row, members in enumerate(self.members):
            weights[row, members] = 0
        return weights


def jackknife_groups(
    targets: Any, *, stratify: bool = True, groups: int = JACKKNIFE_GROUPS, seed: int | np.random.SeedSequence = 0
) -> JackknifeGroups:
    """The deletion groups of a stratified delete-a-group jackknife (for `acceleration`).

    Within each class (all images as one stratum without ``stratify``) of ``n_c >= 2`` images, the images
    are split at random into ``min(n_c, groups)`` groups of nearly equal size; a class of one image has
    none (the stratified bootstrap always draws that image once, so it has no influence).

    Args:
        targets: True class indices [N].
        stratify: One stratum per class (as the resamples are drawn), else one for all images.
        groups: At most this many groups per stratum (a stratum of up to ``groups`` images: one image each).
        seed: Seed of the random split.

    Returns:
        A `JackknifeGroups`.

    Example:
        >>> split = jackknife_groups([0, 0, 0, 1, 1, 1, 1, 1, 2], groups=3)
        >>> split.sizes.tolist(), split.stratum_sizes.tolist(), split.strata.tolist()
        ([1, 1, 1, 2, 2, 1], [3, 3, 3, 5, 5, 5], [0, 0, 0, 1, 1, 1])
    """
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 2:
        raise ValueError(f"groups must be an integer >= 2, got {groups!r}")
    labels = np.asarray(targets).reshape(-1)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(labels.size)]
    members: list[np.ndarray] = []
    sizes, stratum_sizes, which = [], [], []
    for index, stratum in enumerate(strata):
        if stratum.size < 2:
            continue
        for group in np.array_split(rng.permutation(stratum), min(stratum.size, int(groups))):
            members.append(np.sort(group))
            sizes.append(group.size)
            stratum_sizes.append(stratum.size)
            which.append(index)
    return JackknifeGroups(
        tuple(members), np.array(sizes, dtype=np.int64), np.array(stratum_sizes, dtype=np.int64), np.array(which)
    )


def acceleration(estimate: Any, deleted: Any, groups: JackknifeGroups) -> np.ndarray:
    """The BCa acceleration ``a`` from a stratified delete-a-group jackknife.

    A group of ``m`` images left out of a stratum of ``n`` moves the statistic by about ``-U / (n - m)``,
    ``U`` the sum of its images' influence values, so ``U_g = (n - m) (estimate - deleted_g)``, centred
    within the stratum (each group's share of the stratum's sum, by size, taken off: the influence values
    of a stratum sum to 0). Then ``a = sum n^-3 sum U^3 / (6 (sum n^-2 sum U^2)^1.5)``, the sums over the
    strata and their groups; with one image per group this is the textbook jackknife acceleration (and
    scipy's for several samples).

    Args:
        estimate: The statistic on all images (a float, or an array [...]).
        deleted: The statistic with each group left out [G, ...] (in the order of ``groups.members``).
        groups: From `jackknife_groups`.

    Returns:
        ``a``, shaped like ``estimate``; 0 where the statistic does not move (no spread to be skewed), and
        where a deletion leaves it undefined (NaN): then the interval is only bias-corrected.
    """
    theta = np.asarray(estimate, dtype=np.float64)
    values = np.asarray(deleted, dtype=np.float64).reshape(len(groups.members), *theta.shape)
    if values.shape[0] == 0:
        return np.zeros(theta.shape)
    shape = (-1,) + (1,) * theta.ndim
    raw = (groups.stratum_sizes - groups.sizes).reshape(shape) * (theta - values)
    influence = np.empty_like(raw)
    for stratum in np.unique(groups.strata):
        rows = groups.strata == stratum
        share = groups.sizes[rows].reshape(shape) / groups.stratum_sizes[rows][0]
        influence[rows] = raw[rows] - share * raw[rows].sum(axis=0)
    n = groups.stratum_sizes.astype(np.float64).reshape(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        third = (influence**3 / n**3).sum(axis=0)
        second = (influence**2 / n**2).sum(axis=0)
        a = third / (6 * second**1.5)
    return np.where(np.isfinite(a), a, 0.0)


_NORMAL = NormalDist()


def _shifted_level(z0: float, a: float, z: float) -> float:
    """The percentile level BCa reads for the normal quantile ``z``: ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))``."""
    w = z0 + z
    denominator = 1.0 - a * w
    if denominator <= 0:  # past the pole of the transformation: the level runs to its end
        return 1.0 if w > 0 else 0.0
    return _NORMAL.cdf(z0 + w / denominator)


def bias_correction(samples: Any, estimate: Any) -> np.ndarray:
    """BCa's ``z0 = Phi^-1(share of resampled values below the estimate, ties counted one half)`` along axis 0.

    Metrics of a finite image set take few values, so many resamples tie with the estimate; a resampled value
    within ``1e-12 max(1, |estimate|)`` of it is a tie (the same fraction reached by another sum can differ
    in its last bits). The share is kept within ``[1 / (2 R), 1 - 1 / (2 R)]``, so ``z0`` is finite when every
    resample lies on one side (then the interval is read near that end of the resamples).
    """
    values = np.asarray(samples, dtype=np.float64)
    theta = np.asarray(estimate, dtype=np.float64)
    count = values.shape[0]
    tie = np.abs(values - theta) <= 1e-12 * np.maximum(1.0, np.abs(theta))
    share = ((values < theta) & ~tie).sum(axis=0) / count + 0.5 * tie.sum(axis=0) / count
    share = np.clip(share, 0.5 / count, 1 - 0.5 / count)
    return np.vectorize(_NORMAL.inv_cdf, otypes=[np.float64])(share)


def bca_interval(samples: Any, estimate: Any, acceleration: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The bias-corrected and accelerated (BCa) interval of bootstrap samples, along the first axis.

    Args:
        samples: Statistic per resample [R, ...].
        estimate: The statistic on the data as given [...].
        acceleration: ``a`` [...] (`acceleration`; 0 gives the bias-corrected percentile interval).
        level: Coverage, in (0, 1).

    Returns:
        ``(low, high)``, each of shape ``samples.shape[1:]``: the quantiles of the samples at the shifted levels.
        With ``z0 = a = 0`` (a symmetric, unbiased bootstrap distribution) this is `percentile_interval`.

    Example:
        >>> samples = np.linspace(0.1, 0.9, 9)
        >>> bca, percentile = bca_interval(samples, 0.5, 0.0, 0.5), percentile_interval(samples, 0.5)
        >>> [round(float(x), 6) for x in bca] == [round(float(x), 6) for x in percentile] == [0.3, 0.7]
        True
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    values = np.asarray(samples, dtype=np.float64)
    tail = _NORMAL.inv_cdf((1 - level) / 2)
    z0 = bias_correction(values, estimate).reshape(-1)
    a = np.broadcast_to(np.asarray(acceleration, dtype=np.float64), values.shape[1:]).reshape(-1)
    flat = values.reshape(values.shape[0], -1)
    low, high = np.empty(flat.shape[1]), np.empty(flat.shape[1])
    for column in range(flat.shape[1]):
        low[column] = np.quantile(flat[:, column], _shifted_level(z0[column], a[column], tail))
        high[column] = np.quantile(flat[:, column], _shifted_level(z0[column], a[column], -tail))
    return low.reshape(values.shape[1:]), high.reshape(values.shape[1:])


def interval(
    samples: Any, estimate: Any, level: float = 0.95, *, method: str = DEFAULT_METHOD, acceleration: Any = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """`percentile_interval` or `bca_interval` of bootstrap samples [R, ...], by ``method`` (`INTERVAL_METHODS`)."""
    if check_method(method) == "bca":
        return bca_interval(samples, estimate, acceleration, level)
    return percentile_interval(samples, level)


@dataclass(frozen=True)
class BootstrapResult:
    """A statistic on the images as given and on each resample.

    Attributes:
        estimate: The statistic on the data as given (a float, or an array for a vector statistic).
        samples: The statistic on each resample [R, ...].
        low: Lower end of the interval (shape of ``estimate``).
        high: Upper end.
        level: The interval's coverage (0.95).
        resamples: R.
        seed: The seed of the resamples.
        stratified: Whether the resamples kept every class's count.
        method: How the interval was read (`INTERVAL_METHODS`).
        acceleration: BCa's ``a`` (shape of ``estimate``; None for the percentile interval).
    """

    estimate: np.ndarray
    samples: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    resamples: int
    seed: int
    stratified: bool
    method: str = "percentile"
    acceleration: np.ndarray | None = None

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
    method: str = DEFAULT_METHOD,
    jackknife: int = JACKKNIFE_GROUPS,
) -> BootstrapResult:
    """A bootstrap interval (percentile or BCa) of any metric of ``(targets, *values)`` over the scored images.

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
        method: ``"percentile"`` or ``"bca"`` (see the module doc). BCa also computes the metric once per
            jackknife group (at most ``jackknife`` per class; with ``weighted``, in one call whose weights
            are 0 for the group left out and 1 elsewhere).
        jackknife: Deletion groups per class for BCa's acceleration (`jackknife_groups`).

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
    check_method(method)
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
    if method == "percentile":
        low, high = percentile_interval(samples, level)
        return BootstrapResult(estimate, samples, low, high, level, resamples, int(seed), stratify)
    groups = jackknife_groups(labels, stratify=stratify, groups=jackknife, seed=np.random.SeedSequence([int(seed), 1]))
    if not groups.members:
        deleted = np.empty((0, *np.shape(estimate)))
    elif weighted:
        deleted = np.asarray(metric(labels, *arrays, weights=groups.keep_weights(labels.size)), dtype=np.float64)
    else:
        keep = groups.keep_weights(labels.size).astype(bool)
        deleted = np.stack([np.asarray(metric(labels[row], *(a[row] for a in arrays))) for row in keep])
    a = acceleration(estimate, deleted, groups)
    low, high = bca_interval(samples, estimate, a, level)
    return BootstrapResult(estimate, samples, low, high, level, resamples, int(seed), stratify, method, a)
