"""Statistics over many runs: each cell's spread, paired bootstrap differences on the same images, Holm's correction.

**Spread of a cell.** `describe`: the mean, the standard deviation (``n - 1`` in the denominator), n and
the min-max of a metric over the runs of one setup (its splits and seeds).

**Paired differences.** Two setups trained on the same split with the same seed were scored on the same
validation images (``predictions.csv``, matched by image id). `PairedBootstrap.compare` resamples those
images (stratified by class, `sampleweight.bootstrap.resample_counts`) and scores both setups on every
resample, so the difference ``A - B`` of a metric is measured on the same draws: the image-to-image
noise that both share cancels. One pair of runs gives the difference on its images, a 95 % percentile
interval and a two-sided p-value; several pairs (splits x seeds) are **pooled** by a two-level
bootstrap: each resample draws K of the K pairs with replacement (the run-to-run level: split and
seed) and, within each pair drawn, that pair's image resample (the image level); the pooled difference
is the mean over the pairs drawn. The image resamples belong to the images, not to the key: pairs scored
on the same images (several seeds on one split, or every run scored on one test set) share resample r,
so the image-level noise they share is counted once, not averaged away as if their images were
independent samples; pairs on other images (other splits) get independent resamples. The interval and
the p-value of the pooled difference so cover the validation images and the variation between splits and
seeds that the K pairs show. With few pairs the
run-to-run level is estimated from few values and the interval is too narrow (the bootstrap's variance
of a mean of K values is ``(K - 1) / K`` of the textbook one): we recommend at least 2 splits x 2 seeds.

**p-value.** ``p = 2 min(P*(d <= 0), P*(d >= 0))`` over the resampled differences ``d`` (each share
counted as ``(k + 1) / (R + 1)``, so p is never 0; at most 1): the smallest level at which the percentile
interval excludes 0. `holm` adjusts a family of p-values (the comparisons of one table) for multiple
testing (Holm 1979): a difference is significant when its adjusted p is below 0.05.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sampleweight.bootstrap import percentile_interval, resample_counts
from sampleweight.engine.rundir import read_predictions
from sampleweight.errors import ConfigError
from sampleweight.metrics import confusion_matrix, confusion_metrics

__all__ = [
    "ALPHA",
    "COMPARED_METRICS",
    "Comparison",
    "Difference",
    "PairedBootstrap",
    "Predictions",
    "Spread",
    "bootstrap_p_value",
    "describe",
    "holm",
    "image_set_entropy",
    "metric_values",
]

COMPARED_METRICS = ("acc", "bacc", "mpr", "mf1")
"""What `sampleweight report --baseline` compares; ``"recall:NAME"`` is one class's recall."""
ALPHA = 0.05
"""A difference is significant when its Holm-adjusted p-value is below this."""


@dataclass(frozen=True)
class Spread:
    """A metric over the runs of one cell.

    Attributes:
        mean: The mean.
        sd: The standard deviation (denominator ``n - 1``; 0 for one run).
        n: How many runs.
        low: The smallest value.
        high: The largest value.
    """

    mean: float
    sd: float
    n: int
    low: float
    high: float


def describe(values: Sequence[float]) -> Spread:
    """`Spread` of ``values`` (at least one).

    Example:
        >>> spread = describe([0.70, 0.74, 0.72])
        >>> f"{spread.mean:.2f} ± {spread.sd:.2f}, n {spread.n}, {spread.low:.2f}-{spread.high:.2f}"
        '0.72 ± 0.02, n 3, 0.70-0.74'
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("describe needs at least one value")
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Spread(float(array.mean()), sd, int(array.size), float(array.min()), float(array.max()))


@dataclass(frozen=True)
class Predictions:
    """One run's ``predictions.csv``: image ids, true and decided classes (indices), scores.

    Attributes:
        images: Image ids [N].
        targets: True class indices [N].
        predicted: Decided class indices [N] (the ``pred`` column: argmax, or greedy for the hierarchical model).
        scores: Class probabilities [N, C].
        classes: Class names, in score-column order.
    """

    images: tuple[str, ...]
    targets: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    classes: tuple[str, ...]

    @classmethod
    def read(cls, path: str | Path) -> Predictions:
        """Read a ``predictions.csv``.

        Raises:
            ConfigError: It is missing, or a row has no true class (unlabelled data cannot be compared).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the paired comparisons need each run's predictions.csv")
        images, true, pred, scores, classes = read_predictions(path)
        index = {name: i for i, name in enumerate(classes)}
        if any(t not in index for t in true):
            raise ConfigError(f"{path} has rows without a known true class; paired comparisons need labelled images")
        return cls(tuple(images), np.array([index[t] for t in true], dtype=np.int64),
                   np.array([index[p] for p in pred], dtype=np.int64), scores, tuple(classes))  # fmt: skip


def metric_values(
    targets: np.ndarray, predicted: np.ndarray, classes: Sequence[str], metrics: Sequence[str], weights: Any = None
) -> np.ndarray:
    """``metrics`` (``acc``, ``bacc``, ``mpr``, ``mf1``, ``recall:NAME``) of one run, or of each resample.

    Args:
        targets: True class indices [N].
        predicted: Decided class indices [N].
        classes: The class names.
        metrics: Which metrics.
        weights: Resample counts [R, N] (`sampleweight.bootstrap.resample_counts`), or None for the data as given.

    Returns:
        [M], or [R, M] with ``weights``.
    """
    scored = confusion_metrics(confusion_matrix(targets, predicted, len(classes), weights))
    columns = []
    for metric in metrics:
        if metric.startswith("recall:"):
            name = metric.split(":", 1)[1]
            if name not in classes:
                raise ConfigError(f"unknown class {name!r} in {metric!r}; classes: {', '.join(classes)}")
            columns.append(scored["recall"][..., list(classes).index(name)])
        elif metric in COMPARED_METRICS:
            columns.append(scored[metric])
        else:
            raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(COMPARED_METRICS)} or recall:CLASS")
    return np.stack(columns, axis=-1)


def bootstrap_p_value(differences: Any) -> np.ndarray:
    """Two-sided p-value of "no difference" from resampled differences [R, ...] (see the module doc)."""
    d = np.asarray(differences, dtype=np.float64)
    total = d.shape[0] + 1
    below = ((d <= 0).sum(axis=0) + 1) / total
    above = ((d >= 0).sum(axis=0) + 1) / total
    return np.minimum(1.0, 2 * np.minimum(below, above))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (same order as given).

    Example:
        >>> holm([0.01, 0.04, 0.03]).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted


@dataclass(frozen=True)
class Difference:
    """``A - B`` for one metric (fractions, as the metrics).

    Attributes:
        metric: ``acc``, ``bacc``, ``mpr``, ``mf1`` or ``recall:NAME``.
        estimate: The mean difference over the pairs of runs.
        low: Lower end of the interval.
        high: Upper end.
        p: Two-sided p-value (`bootstrap_p_value`).
        pairs: How many pairs of runs (split, seed) it rests on.
        p_holm: p after Holm's correction over its family (`holm_family`), once adjusted.
    """

    metric: str
    estimate: float
    low: float
    high: float
    p: float
    pairs: int
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        """Holm-adjusted p below `ALPHA` (the raw p where no adjustment was made)."""
        return (self.p if self.p_holm is None else self.p_holm) < ALPHA


def holm_family(differences: Sequence[Difference]) -> list[Difference]:
    """The same differences with ``p_holm`` set: Holm's correction over all of them as one family."""
    adjusted = holm([d.p for d in differences]) if differences else []
    return [replace(d, p_holm=float(p)) for d, p in zip(differences, adjusted, strict=True)]


@dataclass(frozen=True)
class Comparison:
    """Setup A against setup B on the same images.

    Attributes:
        pooled: One `Difference` per metric, pooled over the pairs (two-level bootstrap).
        per_pair: Per pair key (``(split, seed)``), one `Difference` per metric on that pair's images.
        unpaired: Keys that only one of the two setups has (left out).
    """

    pooled: tuple[Difference, ...]
    per_pair: dict[Hashable, tuple[Difference, ...]] = field(default_factory=dict)
    unpaired: tuple[Hashable, ...] = ()


class PairedBootstrap:
    """Paired-bootstrap comparisons of runs scored on the same images, pooled over (split, seed) pairs.

    The image resamples are keyed by the images themselves (`image_set_entropy`: their sorted ids and true
    classes), not by the (split, seed) key: runs scored on one image set draw the same resamples whichever
    key they carry, so pooling several seeds scored on one validation or test set does not shrink the
    image-level variance (it would if each key drew its own), while different splits (other images) draw
    independent ones. Each image set's resamples are drawn once and each run is scored on them once
    (cached), so comparing many setups with one baseline stays cheap.

    Args:
        metrics: What to compare (`COMPARED_METRICS`, or ``recall:NAME``).
        resamples: R per pair.
        seed: Base seed.
        level: Coverage of the intervals.

    Example:
        >>> import numpy as np
        >>> truth = np.array([0, 0, 1, 1, 1, 1])
        >>> run = Predictions(tuple("abcdef"), truth, truth, np.eye(2)[truth], ("x", "y"))
        >>> same = PairedBootstrap(resamples=100).compare({(0, 0): run}, {(0, 0): run})
        >>> [(d.estimate, d.p) for d in same.pooled][:1]
        [(0.0, 1.0)]
    """

    def __init__(
        self, metrics: Sequence[str] = COMPARED_METRICS, *, resamples: int = 2000, seed: int = 0, level: float = 0.95
    ) -> None:
        self.metrics = tuple(metrics)
        self.resamples, self.seed, self.level = resamples, seed, level
        self._keys: dict[Hashable, tuple[int, ...]] = {}  # key -> the identity of its image set
        self._images: dict[tuple[int, ...], tuple[tuple[str, ...], np.ndarray, np.ndarray]] = {}
        self._scored: dict[tuple[Hashable, int], tuple[Predictions, np.ndarray, np.ndarray]] = {}

    def compare(self, runs_a: Mapping[Hashable, Predictions], runs_b: Mapping[Hashable, Predictions]) -> Comparison:
        """Setup A (its runs by key ``(split, seed)``) minus setup B, on the keys both have.

        Raises:
            ConfigError: No key in common, or two runs of one key scored on different images or labels.
        """
        keys = [key for key in runs_a if key in runs_b]
        unpaired = tuple(sorted({*runs_a, *runs_b} - set(keys), key=repr))
        if not keys:
            raise ConfigError("no pair of runs on the same split and seed to compare")
        keys.sort(key=repr)
        per_pair: dict[Hashable, tuple[Difference, ...]] = {}
        samples, estimates = [], []
        for key in keys:
            estimate_a, samples_a = self._score(key, runs_a[key])
            estimate_b, samples_b = self._score(key, runs_b[key])
            difference = samples_a - samples_b
            samples.append(difference)
            estimates.append(estimate_a - estimate_b)
            per_pair[key] = self._differences(estimate_a - estimate_b, difference, 1)
        pooled = np.mean(estimates, axis=0)
        stacked = np.stack(samples)  # [K, R, M]
        count = len(keys)
        if count > 1:  # the run-to-run level: K of the K pairs, with replacement, per resample
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, count]))
            drawn = rng.integers(0, count, size=(self.resamples, count))
            stacked = stacked[drawn.T, np.arange(self.resamples)[None, :]]
        return Comparison(self._differences(pooled, stacked.mean(axis=0), count), per_pair, unpaired)

    def _differences(self, estimate: np.ndarray, samples: np.ndarray, pairs: int) -> tuple[Difference, ...]:
        low, high = percentile_interval(samples, self.level)
        p = bootstrap_p_value(samples)
        return tuple(
            Difference(metric, float(estimate[i]), float(low[i]), float(high[i]), float(p[i]), pairs)
            for i, metric in enumerate(self.metrics)
        )

    def _score(self, key: Hashable, run: Predictions) -> tuple[np.ndarray, np.ndarray]:
        """The run's metrics on its images and on each of the key's resamples (cached per run)."""
        cached = self._scored.get((key, id(run)))
        if cached is not None and cached[0] is run:
            return cached[1], cached[2]
        images, targets, counts = self._resamples(key, run)
        order = np.argsort(np.asarray(run.images, dtype=object), kind="stable")
        if tuple(run.images[i] for i in order) != images:
            raise ConfigError(
                f"runs of split/seed {key} were scored on different images; a paired comparison needs the same "
                "validation images (same data, split, seed and val_fraction)"
            )
        if not np.array_equal(run.targets[order], targets):
            raise ConfigError(f"runs of split/seed {key} disagree on the true classes of the same images")
        predicted = run.predicted[order]
        estimate = metric_values(targets, predicted, run.classes, self.metrics)
        samples = metric_values(targets, predicted, run.classes, self.metrics, counts)
        self._scored[(key, id(run))] = (run, estimate, samples)
        return estimate, samples

    def _resamples(self, key: Hashable, run: Predictions) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """The key's images (sorted by id), their true classes and resample counts [R, N].

        The first run of a key fixes its images; the resamples belong to that image set (seeded by
        `image_set_entropy`), drawn once however many keys share it.
        """
        identity = self._keys.get(key)
        if identity is None:
            order = np.argsort(np.asarray(run.images, dtype=object), kind="stable")
            images, targets = tuple(run.images[i] for i in order), run.targets[order]
            identity = image_set_entropy(images, targets)
            self._keys[key] = identity
            if identity not in self._images:
                counts = resample_counts(targets, self.resamples, np.random.SeedSequence([self.seed, 0, *identity]))
                self._images[identity] = (images, targets, counts)
        return self._images[identity]


def image_set_entropy(images: Sequence[str], targets: Any) -> tuple[int, ...]:
    """The identity of a scored image set, as seed entropy: a hash of its image ids and true classes (in order).

    `PairedBootstrap` seeds each image set's resamples with it, so runs scored on the same images (sorted by
    id) share their resamples, and other images get independent ones.

    Args:
        images: Image ids [N] (`PairedBootstrap` passes them sorted).
        targets: Their true class indices [N].

    Returns:
        Four 32-bit integers (a 128-bit BLAKE2b digest).

    Example:
        >>> image_set_entropy(["a", "b"], [0, 1]) == image_set_entropy(("a", "b"), np.array([0, 1]))
        True
        >>> image_set_entropy(["a", "b"], [0, 1]) == image_set_entropy(["a", "c"], [0, 1])
        False
    """
    text = json.dumps([list(images), np.asarray(targets).astype(np.int64).tolist()])
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
