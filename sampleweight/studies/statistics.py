"""Statistics over many runs: each cell's spread, paired bootstrap differences on the same images, Holm's correction.

**Spread of a cell.** `describe`: the mean, the standard deviation (``n - 1`` in the denominator), n and
the min-max of a metric over the runs of one setup (its splits and seeds).

**Paired differences.** Two setups trained on the same split with the same seed were scored on the same
validation images (``predictions.csv``, matched by image id). `PairedBootstrap.compare` resamples those
images (stratified by class, `sampleweight.bootstrap.resample_counts`) and scores both setups on every
resample, so the difference ``A - B`` of a metric is measured on the same draws: the image-to-image
noise that both share cancels. One pair of runs gives the difference on its images, a 95 % interval
(BCa by default, `sampleweight.bootstrap`; or the percentile interval) and a two-sided p-value; several
pairs (splits x seeds) are **pooled** by a two-level bootstrap: each resample draws K of the K pairs with
replacement (the run-to-run level: split and seed) and, within each pair drawn, that pair's image
resample (the image level); the pooled difference is the mean over the pairs drawn. The image resamples
belong to the images, not to the key: pairs scored on the same images (several seeds on one split, or
every run scored on one test set) share resample r, so the image-level noise they share is counted once,
not averaged away as if their images were independent samples; pairs on other images (other splits)
get independent resamples. The interval and the p-value of the pooled difference so cover the validation
images and the variation between splits and seeds that the K pairs show. With 2-4 pairs, how well
depends on which dominates (``benchmarks/paired_pooling.py``, two equally good setups): each pair's
difference already varies with its images and the image level counts that again, so where the images'
noise dominates the pooled test is conservative (0-2.6 % false positives at p < 0.05 for 2 and 4
splits); where the runs differ by more than their images do, the run-to-run level rests on K values
(the bootstrap's variance of a mean of K values is ``(K - 1) / K`` of the textbook one) and the interval
is too narrow (16 % false positives with 2 splits, 9 % with 4).

**Multilabel runs.** A multilabel run's predictions hold 0/1 targets and decisions per label [N, L] and one sigmoid
probability per label (`Predictions.multilabel`). Its images are resampled once for all labels (a resample keeps
the images together, so the labels' figures stay paired with each other as with the other run), stratified by each
image's rarest label among those images (`label_strata`, the rule by which a multilabel split is stratified), and
compared on ``mean_auc``, ``mean_pauc``, ``mean_ap`` (`MEAN_RANKED`): each label's figure on the resampled images,
averaged over the labels that have both classes in that resample; or on one label's ``auc:NAME``, ``pauc:NAME``,
``ap:NAME``.

**p-value.** Percentile: ``p = 2 min(P*(d <= 0), P*(d >= 0))`` over the resampled differences ``d`` (each
share counted as ``(k + 1) / (R + 1)``, so p is never 0; at most 1): the smallest level at which the
percentile interval excludes 0. BCa: the smallest level at which the BCa interval excludes 0
(`bca_p_value`; the same shares, read through BCa's shifted levels). `holm` adjusts a family of p-values
(the comparisons of one table) for multiple testing (Holm 1979): a difference is significant when its
adjusted p is below 0.05.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from sampleweight.bootstrap import (
    DEFAULT_METHOD,
    JACKKNIFE_GROUPS,
    JackknifeGroups,
    acceleration,
    bias_correction,
    check_method,
    interval,
    jackknife_groups,
    resample_counts,
)
from sampleweight.data.splits import label_strata as label_strata
from sampleweight.engine.rundir import read_predictions
from sampleweight.errors import ConfigError
from sampleweight.metrics import confusion_matrix, confusion_metrics

if TYPE_CHECKING:
    from sampleweight.taxonomy import Taxonomy

__all__ = [
    "ALPHA",
    "COMPARED_METRICS",
    "MEAN_RANKED",
    "Comparison",
    "Difference",
    "PairedBootstrap",
    "Predictions",
    "Spread",
    "bca_p_value",
    "bootstrap_p_value",
    "describe",
    "holm",
    "image_set_entropy",
    "label_strata",
    "metric_values",
]

COMPARED_METRICS = ("acc", "bacc", "mpr", "mf1")
"""What `sampleweight report --baseline` compares; ``"recall:NAME"`` is one class's recall, ``"auc:NAME"``,
``"pauc:NAME"`` and ``"ap:NAME"`` its one-vs-rest ROC AUC, ISIC 2024 partial AUC and average precision
(`sampleweight.binary_metrics`; a binary run's positive class, or a multiclass run's class)."""
RANKED = ("auc", "pauc", "ap")
"""The score-based metrics `metric_values` takes as ``"NAME:CLASS"`` (columns of `binary_metrics.RANKING_METRICS`)."""
MEAN_RANKED = ("mean_auc", "mean_pauc", "mean_ap")
"""The means over labels that `metric_values` takes: ``mean_auc`` is the mean of each label's ROC AUC (ISIC 2024's
partial AUC, average precision) over the labels that have both classes among the images scored (each resample's, with
``weights``; NaN when none has); a label is a multilabel run's label column, or one class of a multiclass run against
the rest (``mean_auc`` is then the macro one-vs-rest AUC)."""
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
        targets: True class indices [N]; a multilabel run's: 0/1 per label [N, L].
        predicted: Decided class indices [N] (the ``pred`` column: argmax, or greedy for the hierarchical model); a
            multilabel run's: 0/1 per label [N, L] (each label's score at or above its threshold).
        scores: Class probabilities [N, C]; a multilabel run's: each label's sigmoid probability [N, L].
        classes: Class names (a multilabel run's label names), in score-column order.
    """

    images: tuple[str, ...]
    targets: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    classes: tuple[str, ...]

    @property
    def multilabel(self) -> bool:
        """Whether these are a multilabel run's predictions (targets [N, L])."""
        return np.ndim(self.targets) == 2

    def on_label_tree(self, taxonomy: Taxonomy) -> Predictions:
        """A multiclass run's predictions on the nodes of its label tree, as a multilabel run of that form.

        The labels are `sampleweight.data.multilabel.taxonomy_labels` (the nodes but the root), the form
        ``--task multilabel`` gives a single-label data set; an image's true labels are its class and the nodes above
        it, a node's probability is the sum of its classes' probabilities (P(malignant) = P(BCC) + P(AKIEC)), and the
        decided labels are the decided class's path.

        Args:
            taxonomy: The run's label tree, in its class order.

        Raises:
            ConfigError: A multilabel run, or a tree whose classes are not the run's.
        """
        from sampleweight.data.multilabel import taxonomy_labels, taxonomy_multilabel

        if self.multilabel or tuple(taxonomy.classes) != tuple(self.classes):
            raise ConfigError(
                "on_label_tree scores a multiclass run on a label tree of its own classes "
                f"({', '.join(self.classes)}), got {'a multilabel run' if self.multilabel else 'other classes'}"
            )
        paths = taxonomy_multilabel(np.arange(len(self.classes)), taxonomy)  # [C, L]: the nodes on each class's path
        return Predictions(
            self.images, paths[self.targets], paths[self.predicted], self.scores @ paths, taxonomy_labels(taxonomy)
        )

    def one_vs_rest(self, name: str | Sequence[str]) -> Predictions:
        """The run as a binary one: class ``name`` (1) against the rest (0), scored by its probability.

        So a multiclass run's probability of a class is compared, paired, with a binary run of that class on the same
        images (a binary run's split is the multiclass one relabelled, `sampleweight.data.binary`). Several classes
        (``["MEL", "BCC"]``, a binary run's ``--positive MEL,BCC``) are positive together: scored by the sum of their
        probabilities, decided positive where the decided class is one of them, named ``MEL+BCC``. A multilabel
        run's label ``name`` is its column: its targets, decisions and sigmoid probability.

        Raises:
            ConfigError: ``name`` is not one of the classes (or, several, of a multilabel run).
        """
        names = [name] if isinstance(name, str) else list(name)
        unknown = [n for n in names if n not in self.classes]
        if unknown or not names:
            raise ConfigError(f"unknown class {', '.join(map(repr, unknown))}; classes: {', '.join(self.classes)}")
        if self.multilabel and len(names) > 1:
            raise ConfigError(
                f"a multilabel run's labels are scored one at a time; name one of {', '.join(self.classes)}"
            )
        indices = [self.classes.index(n) for n in names]
        positive = self.scores[:, indices].sum(axis=1)
        if self.multilabel:
            targets, predicted = self.targets[:, indices[0]], self.predicted[:, indices[0]]
        else:
            targets, predicted = np.isin(self.targets, indices), np.isin(self.predicted, indices)
        return Predictions(
            self.images,
            np.asarray(targets).astype(np.int64),
            np.asarray(predicted).astype(np.int64),
            np.stack([1 - positive, positive], axis=1),
            ("rest", "+".join(names)),
        )

    @classmethod
    def read(cls, path: str | Path, *, multilabel: bool = False) -> Predictions:
        """Read a ``predictions.csv``.

        Args:
            path: The file.
            multilabel: A multilabel run's (``image,true,pred,<label scores>``, ``true`` and ``pred`` the names of the
                labels that are 1 joined by ``;``, empty for none): targets and decisions [N, L].

        Raises:
            ConfigError: It is missing, or a row has no true class (unlabelled data cannot be compared), or (multilabel)
                names a label that has no score column.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the paired comparisons need each run's predictions.csv")
        images, true, pred, scores, classes = read_predictions(path)
        if multilabel:
            targets, predicted = _label_matrix(path, true, classes), _label_matrix(path, pred, classes)
            return cls(tuple(images), targets, predicted, scores, tuple(classes))
        index = {name: i for i, name in enumerate(classes)}
        if any(t not in index for t in true):
            raise ConfigError(f"{path} has rows without a known true class; paired comparisons need labelled images")
        return cls(tuple(images), np.array([index[t] for t in true], dtype=np.int64),
                   np.array([index[p] for p in pred], dtype=np.int64), scores, tuple(classes))  # fmt: skip


def _label_matrix(path: Path, cells: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """A multilabel ``predictions.csv``'s ``true`` or ``pred`` column (``;``-joined label names) as 0/1 [N, L]."""
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(cells), len(labels)), dtype=np.int64)
    for row, cell in enumerate(cells):
        for name in filter(None, cell.split(";")):
            if name not in index:
                raise ConfigError(
                    f"{path} names the label {name!r}, which has no score column (labels: {', '.join(labels)}); "
                    "it is not a multilabel run's predictions.csv"
                )
            matrix[row, index[name]] = 1
    return matrix


def _mean_ranked(targets: np.ndarray, scores: np.ndarray, weights: Any) -> np.ndarray:
    """`MEAN_RANKED` [..., 3]: each label's AUC, pAUC and AP averaged over the labels with both classes (per row)."""
    from sampleweight.binary_metrics import RANKING_METRICS, ranking_metrics

    columns = [RANKING_METRICS.index(name.removeprefix("mean_")) for name in MEAN_RANKED]
    tables = np.stack(
        [
            ranking_metrics(targets[:, label], scores[:, label], weights)[..., columns]
            for label in range(scores.shape[1])
        ],
        axis=-2,
    )  # [..., L, 3]: NaN where a label has one class
    found = np.isfinite(tables)
    count = found.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(found, tables, 0.0).sum(axis=-2) / count, np.nan)


def metric_values(
    targets: np.ndarray,
    predicted: np.ndarray,
    classes: Sequence[str],
    metrics: Sequence[str],
    weights: Any = None,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """``metrics`` (``acc``, ``bacc``, ``mpr``, ``mf1``, ``recall:NAME``, ``auc:NAME``, ``pauc:NAME``, ``ap:NAME``,
    ``mean_auc``, ``mean_pauc``, ``mean_ap``) of one run, or of each resample.

    A multilabel run (``targets`` [N, L]) has the score-based ones only: ``auc:LABEL``, ``pauc:LABEL``, ``ap:LABEL``
    and `MEAN_RANKED`.

    Args:
        targets: True class indices [N], or 0/1 per label [N, L].
        predicted: Decided class indices [N] (or 0/1 per label [N, L]).
        classes: The class (label) names.
        metrics: Which metrics.
        weights: Resample counts [R, N] (`sampleweight.bootstrap.resample_counts`), or None for the data as given.
        scores: Class probabilities [N, C] (a multilabel run's per-label probabilities [N, L]), needed by
            ``auc:NAME``, ``pauc:NAME``, ``ap:NAME`` (class NAME against the rest) and `MEAN_RANKED`.

    Returns:
        [M], or [R, M] with ``weights``.
    """
    multilabel = np.ndim(targets) == 2
    if multilabel:
        refused = [m for m in metrics if m not in MEAN_RANKED and m.partition(":")[0] not in RANKED]
        if refused:
            raise ConfigError(
                f"a multilabel run is compared on the scores of its labels: {', '.join(MEAN_RANKED)}, auc:LABEL, "
                f"pauc:LABEL or ap:LABEL, not {', '.join(refused)}"
            )
        scored = {}
        label_targets = np.asarray(targets)
    else:
        scored = confusion_metrics(confusion_matrix(targets, predicted, len(classes), weights))
        label_targets = None
    means = None
    columns = []
    for metric in metrics:
        kind, _, name = metric.partition(":")
        if metric in MEAN_RANKED:
            if scores is None:
                raise ConfigError(f"{metric} ranks the images by their scores; pass scores")
            if means is None:
                if label_targets is None:  # a multiclass run's classes, each against the rest
                    label_targets = (np.asarray(targets)[:, None] == np.arange(len(classes))).astype(np.int64)
                means = _mean_ranked(label_targets, np.asarray(scores, dtype=np.float64), weights)
            columns.append(means[..., MEAN_RANKED.index(metric)])
        elif kind in RANKED and name:
            from sampleweight.binary_metrics import RANKING_METRICS, ranking_metrics

            if name not in classes:
                raise ConfigError(f"unknown class {name!r} in {metric!r}; classes: {', '.join(classes)}")
            if scores is None:
                raise ConfigError(f"{metric} ranks the images by their scores; pass scores")
            index = list(classes).index(name)
            positive = np.asarray(targets)[:, index] if multilabel else targets == index
            table = ranking_metrics(positive, scores[:, index], weights)
            columns.append(table[..., RANKING_METRICS.index(kind)])
        elif metric.startswith("recall:"):
            name = metric.split(":", 1)[1]
            if name not in classes:
                raise ConfigError(f"unknown class {name!r} in {metric!r}; classes: {', '.join(classes)}")
            columns.append(scored["recall"][..., list(classes).index(name)])
        elif metric in COMPARED_METRICS:
            columns.append(scored[metric])
        else:
            raise ConfigError(
                f"unknown metric {metric!r}; choose from {', '.join(COMPARED_METRICS)}, recall:CLASS, auc:CLASS, "
                f"pauc:CLASS, ap:CLASS or {', '.join(MEAN_RANKED)}"
            )
    return np.stack(columns, axis=-1)


def bootstrap_p_value(differences: Any) -> np.ndarray:
    """Two-sided p-value of "no difference" from resampled differences [R, ...] (see the module doc)."""
    d = np.asarray(differences, dtype=np.float64)
    total = d.shape[0] + 1
    below = ((d <= 0).sum(axis=0) + 1) / total
    above = ((d >= 0).sum(axis=0) + 1) / total
    return np.minimum(1.0, 2 * np.minimum(below, above))


def bca_p_value(differences: Any, estimate: Any, acceleration: Any) -> np.ndarray:
    """Two-sided p-value of "no difference" that matches the BCa interval: the smallest level at which it excludes 0.

    The BCa interval at lower-tail level ``beta`` reads the resamples at ``Phi(z0 + w / (1 - a w))``,
    ``w = z0 + Phi^-1(beta)``; setting that equal to the share ``q`` of resampled differences at or below 0
    (counted as in `bootstrap_p_value`) and solving gives ``beta = Phi(u / (1 + a u) - z0)``, ``u = Phi^-1(q) - z0``;
    the upper side is the same for ``-d`` (``z0`` and ``a`` change sign). ``p = 2 min`` of the two, at most 1.
    With ``z0 = a = 0`` this is `bootstrap_p_value`.

    Args:
        differences: Resampled differences [R, ...].
        estimate: The difference on the images as given [...].
        acceleration: BCa's ``a`` [...] (`sampleweight.bootstrap.acceleration`).
    """
    d = np.asarray(differences, dtype=np.float64)
    total = d.shape[0] + 1
    z0 = bias_correction(d, estimate).reshape(-1)
    a = np.broadcast_to(np.asarray(acceleration, dtype=np.float64), d.shape[1:]).reshape(-1)
    below = (((d <= 0).sum(axis=0) + 1) / total).reshape(-1)
    above = (((d >= 0).sum(axis=0) + 1) / total).reshape(-1)
    p = np.empty(below.size)
    for i in range(below.size):
        p[i] = 2 * min(_bca_tail(below[i], z0[i], a[i]), _bca_tail(above[i], -z0[i], -a[i]))
    return np.minimum(1.0, p).reshape(d.shape[1:])


def _bca_tail(share: float, z0: float, a: float) -> float:
    """The lower-tail level at which the BCa interval's lower end reaches the value with ``share`` below it."""
    normal = NormalDist()
    u = normal.inv_cdf(min(max(share, 1e-300), 1 - 1e-16)) - z0
    denominator = 1 + a * u
    if denominator <= 0:  # beyond the transformation's pole: excluded at every level, or at none
        return 0.0 if u < 0 else 1.0
    return normal.cdf(u / denominator - z0)


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
        metric: ``acc``, ``bacc``, ``mpr``, ``mf1``, ``recall:NAME``, ... (what `PairedBootstrap` compared).
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
        metrics: What to compare (`COMPARED_METRICS`, ``recall:NAME``, ``auc:NAME``, ..., `MEAN_RANKED`; a multilabel
            run's: `MEAN_RANKED` or ``auc:LABEL``, ``pauc:LABEL``, ``ap:LABEL``).
        resamples: R per pair.
        seed: Base seed.
        level: Coverage of the intervals.
        method: ``"bca"`` (default) or ``"percentile"``: how the intervals and p-values are read from the
            resamples. BCa's acceleration comes from a stratified delete-a-group jackknife over each image set
            (`sampleweight.bootstrap.jackknife_groups`); for the pooled difference, each group is left out of
            every pair scored on its image set at once (the run-to-run level does not enter it).
        jackknife: Deletion groups per class for BCa (`sampleweight.bootstrap.JACKKNIFE_GROUPS`).

    Example:
        >>> import numpy as np
        >>> truth = np.array([0, 0, 1, 1, 1, 1])
        >>> run = Predictions(tuple("abcdef"), truth, truth, np.eye(2)[truth], ("x", "y"))
        >>> same = PairedBootstrap(resamples=100).compare({(0, 0): run}, {(0, 0): run})
        >>> [(d.estimate, d.p) for d in same.pooled][:1]
        [(0.0, 1.0)]
    """

    def __init__(
        self,
        metrics: Sequence[str] = COMPARED_METRICS,
        *,
        resamples: int = 2000,
        seed: int = 0,
        level: float = 0.95,
        method: str = DEFAULT_METHOD,
        jackknife: int = JACKKNIFE_GROUPS,
    ) -> None:
        self.metrics = tuple(metrics)
        self.resamples, self.seed, self.level = resamples, seed, level
        self.method, self.jackknife = check_method(method), jackknife
        self._keys: dict[Hashable, tuple[int, ...]] = {}  # key -> the identity of its image set
        self._images: dict[tuple[int, ...], _ImageSet] = {}
        self._scored: dict[tuple[Hashable, int], tuple[Predictions, _Scored]] = {}

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
        differences: list[_Scored] = []
        for key in keys:
            a, b = self._score(key, runs_a[key]), self._score(key, runs_b[key])
            difference = _Scored(a.estimate - b.estimate, a.samples - b.samples, a.deleted - b.deleted)
            differences.append(difference)
            accelerated = np.zeros(len(self.metrics))
            if self.method == "bca":
                accelerated = acceleration(difference.estimate, difference.deleted, self._image_set(key).groups)
            per_pair[key] = self._differences(difference.estimate, difference.samples, 1, accelerated)
        pooled = np.mean([d.estimate for d in differences], axis=0)
        stacked = np.stack([d.samples for d in differences])  # [K, R, M]
        count = len(keys)
        if count > 1:  # the run-to-run level: K of the K pairs, with replacement, per resample
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, count]))
            drawn = rng.integers(0, count, size=(self.resamples, count))
            stacked = stacked[drawn.T, np.arange(self.resamples)[None, :]]
        accelerated = self._pooled_acceleration(keys, differences, pooled)
        return Comparison(self._differences(pooled, stacked.mean(axis=0), count, accelerated), per_pair, unpaired)

    def _pooled_acceleration(self, keys: list[Hashable], differences: list[_Scored], pooled: np.ndarray) -> np.ndarray:
        """BCa's ``a`` of the pooled difference: the jackknife of the mean over the pairs, over the images.

        Each image set's groups are left out in turn, in every pair scored on that set at once; the strata are
        the classes of each image set. The run-to-run level does not enter ``a`` (its share of the skewness is
        left to ``z0`` and the resamples).
        """
        if self.method != "bca":
            return np.zeros(len(self.metrics))
        deleted, sizes, stratum_sizes, strata = [], [], [], []
        offset = 0
        for identity in dict.fromkeys(self._keys[key] for key in keys):
            image_set = self._images[identity]
            moved = sum(d.deleted - d.estimate for key, d in zip(keys, differences, strict=True)
                        if self._keys[key] == identity)  # fmt: skip
            deleted.append(pooled + moved / len(keys))
            groups = image_set.groups
            sizes.append(groups.sizes)
            stratum_sizes.append(groups.stratum_sizes)
            strata.append(groups.strata + offset)
            offset += int(groups.strata.max()) + 1 if groups.strata.size else 0
        members = tuple(m for identity in dict.fromkeys(self._keys[key] for key in keys)
                        for m in self._images[identity].groups.members)  # fmt: skip
        union = JackknifeGroups(members, np.concatenate(sizes), np.concatenate(stratum_sizes), np.concatenate(strata))
        return acceleration(pooled, np.concatenate(deleted), union)

    def _differences(
        self, estimate: np.ndarray, samples: np.ndarray, pairs: int, accelerated: np.ndarray
    ) -> tuple[Difference, ...]:
        low, high = interval(samples, estimate, self.level, method=self.method, acceleration=accelerated)
        p = bootstrap_p_value(samples) if self.method == "percentile" else bca_p_value(samples, estimate, accelerated)
        return tuple(
            Difference(metric, float(estimate[i]), float(low[i]), float(high[i]), float(p[i]), pairs)
            for i, metric in enumerate(self.metrics)
        )

    def _score(self, key: Hashable, run: Predictions) -> _Scored:
        """The run's metrics on its images, on each of its image set's resamples and (BCa) jackknife deletions."""
        cached = self._scored.get((key, id(run)))
        if cached is not None and cached[0] is run:
            return cached[1]
        image_set = self._image_set(key, run)
        order = np.argsort(np.asarray(run.images, dtype=object), kind="stable")
        if tuple(run.images[i] for i in order) != image_set.images:
            raise ConfigError(
                f"runs of split/seed {key} were scored on different images; a paired comparison needs the same "
                "validation images (same data, split, seed and val_fraction)"
            )
        if not np.array_equal(run.targets[order], image_set.targets):
            raise ConfigError(f"runs of split/seed {key} disagree on the true classes of the same images")
        targets, predicted, scores = image_set.targets, run.predicted[order], run.scores[order]
        estimate = metric_values(targets, predicted, run.classes, self.metrics, scores=scores)
        samples = metric_values(targets, predicted, run.classes, self.metrics, image_set.counts, scores)
        deleted = np.empty((0, len(self.metrics)))
        if self.method == "bca" and image_set.groups.members:
            weights = image_set.groups.keep_weights(len(targets))
            deleted = metric_values(targets, predicted, run.classes, self.metrics, weights, scores)
        scored = _Scored(estimate, samples, deleted)
        self._scored[(key, id(run))] = (run, scored)
        return scored

    def _image_set(self, key: Hashable, run: Predictions | None = None) -> _ImageSet:
        """The key's image set: its images (sorted by id), true classes, resample counts [R, N], jackknife groups
        (both stratified by `label_strata`).

        The first run of a key fixes its images; the resamples belong to that image set (seeded by
        `image_set_entropy`), drawn once however many keys share it.
        """
        identity = self._keys.get(key)
        if identity is None:
            if run is None:
                raise KeyError(key)
            order = np.argsort(np.asarray(run.images, dtype=object), kind="stable")
            images, targets = tuple(run.images[i] for i in order), run.targets[order]
            identity = image_set_entropy(images, targets)
            self._keys[key] = identity
            if identity not in self._images:
                strata = label_strata(targets)  # a multilabel run's images: by their rarest label
                counts = resample_counts(strata, self.resamples, np.random.SeedSequence([self.seed, 0, *identity]))
                groups = jackknife_groups(
                    strata, groups=self.jackknife, seed=np.random.SeedSequence([self.seed, 2, *identity])
                )
                self._images[identity] = _ImageSet(images, targets, counts, groups)
        return self._images[identity]


@dataclass(frozen=True)
class _ImageSet:
    images: tuple[str, ...]
    targets: np.ndarray
    counts: np.ndarray  # [R, N]
    groups: JackknifeGroups


@dataclass(frozen=True)
class _Scored:
    estimate: np.ndarray  # [M]
    samples: np.ndarray  # [R, M]
    deleted: np.ndarray  # [G, M] with BCa, else [0, M]


def image_set_entropy(images: Sequence[str], targets: Any) -> tuple[int, ...]:
    """The identity of a scored image set, as seed entropy: a hash of its image ids and true classes (in order).

    `PairedBootstrap` seeds each image set's resamples with it, so runs scored on the same images (sorted by
    id) share their resamples, and other images get independent ones.

    Args:
        images: Image ids [N] (`PairedBootstrap` passes them sorted).
        targets: Their true class indices [N] (or 0/1 per label [N, L]).

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
