"""The metrics of one label's scores, as the melanoma challenges score them; vectorised over bootstrap resamples.

For targets 0/1 and a score per image (higher: more likely positive), from one sort:

- ``auc``: the ROC AUC (ties counting one half: the trapezoid through tied scores), ISIC 2020's metric;
- ``pauc``: the partial AUC above 80 % TPR, ISIC 2024's metric: the area of the ROC region with TPR >= 0.8 under the
  curve, in [0, 0.2]. The challenge's published scoring (ISIC-Research/Challenge-2024-Metrics,
  ``PrimaryMetric-pAUC.py``, the metric of the Kaggle competition "ISIC 2024 - Skin Cancer Detection with 3D-TBP",
  evaluation page: "partial area under the ROC curve (pAUC) above 80% true positive rate") flips the labels and the
  scores, takes the flipped ROC curve up to FPR 0.2 (a point interpolated linearly at 0.2) and integrates it with
  the trapezoid rule: the same region, measured along the original TPR axis. It is *not* scikit-learn's
  ``roc_auc_score(max_fpr=...)``, which cuts along the FPR axis and rescales (McClish);
- ``ap``: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds (scikit-learn's
  ``average_precision_score``, no interpolation);
- ``sens_at_spec90``, ``sens_at_spec95``: the highest sensitivity of a threshold whose specificity is at least 90 %
  (95 %); ``spec_at_sens95``: the highest specificity of a threshold whose sensitivity is at least 95 %; thresholds
  are the distinct scores (an operating point a user can set), no interpolation;
- ``bacc``, ``f1``, ``sensitivity``, ``specificity`` at a threshold (``score >= threshold`` is positive) chosen on the
  validation side: by Youden's J (``max TPR - FPR``) or as the one giving the highest sensitivity at a target
  specificity (`choose_threshold`); the threshold is recorded.

A set with one class only has none of these (NaN; None in ``metrics.json``). The stratified bootstrap keeps each
class's count, so every resample of a set with both classes has both. With ``weights`` [R, N] (how often each image is
drawn), every function scores all resamples at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sampleweight.bootstrap import DEFAULT_METHOD, bootstrap

__all__ = [
    "BINARY_METRICS",
    "MIN_TPR",
    "average_precision",
    "binary_auc",
    "binary_metrics",
    "choose_threshold",
    "label_metrics",
    "partial_auc_above_tpr",
    "ranking_metrics",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "thresholded_metrics",
]

MIN_TPR = 0.8
"""ISIC 2024's partial AUC counts the ROC region with TPR >= 0.8."""
RANKING_METRICS = ("auc", "pauc", "ap", "sens_at_spec90", "sens_at_spec95", "spec_at_sens95")
"""The threshold-free figures of `ranking_metrics`, in its column order."""
THRESHOLD_METRICS = ("bacc", "f1", "sensitivity", "specificity")
"""The figures at the chosen threshold (`thresholded_metrics`)."""
BINARY_METRICS = (*RANKING_METRICS, *THRESHOLD_METRICS)
"""Every figure a binary run's ``metrics.json`` holds, each with a bootstrap interval."""
_TOLERANCE = 1e-9


def _curve(targets: Any, scores: Any, weights: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct threshold, highest first, with (0, 0) prepended.

    Returns:
        ``(tp [R, K+1], fp [R, K+1], thresholds [K], rows_shape)``: R is 1 without ``weights``.
    """
    labels = np.asarray(targets).reshape(-1).astype(np.float64)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != values.shape:
        raise ValueError(f"targets and scores differ in length: {labels.size} vs {values.size}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("binary targets must be 0 (negative) or 1 (positive)")
    if weights is None:
        rows, shape = np.ones((1, labels.size)), np.array([], dtype=int)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape[-1:] != labels.shape:
            raise ValueError(f"weights must end in one entry per image ({labels.size}), got shape {weights.shape}")
        rows, shape = weights.reshape(-1, labels.size), np.array(weights.shape[:-1], dtype=int)
    order = np.argsort(-values, kind="stable")
    ordered = values[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])  # the last image of each tie group
    drawn = rows[:, order]
    tp = np.zeros((rows.shape[0], ends.size + 1))
    fp = np.zeros((rows.shape[0], ends.size + 1))
    tp[:, 1:] = np.cumsum(drawn * labels[order], axis=1)[:, ends]
    fp[:, 1:] = np.cumsum(drawn * (1 - labels[order]), axis=1)[:, ends]
    return tp, fp, ordered[ends], shape


def _rates(tp: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TPR and FPR [R, K+1] (NaN rows where a class is absent) and whether both classes are there [R]."""
    positives, negatives = tp[:, -1:], fp[:, -1:]
    both = (positives[:, 0] > 0) & (negatives[:, 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / positives, fp / negatives, both


def _area(tpr: np.ndarray, fpr: np.ndarray, min_tpr: float = 0.0) -> np.ndarray:
    """``integral over FPR of max(TPR - min_tpr, 0)``, the curve linear between its vertices [R] (the AUC for 0)."""
    x0, x1, y0, y1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    width = x1 - x0
    with np.errstate(divide="ignore", invalid="ignore"):
        above = width * ((y0 + y1) / 2 - min_tpr)  # both ends at or above the cut: a trapezoid
        rising = np.where(y1 > y0, (y1 - min_tpr) ** 2 / (2 * (y1 - y0)) * width, 0.0)  # crossing it: a triangle
    return np.where(y0 >= min_tpr, above, np.where(y1 > min_tpr, rising, 0.0)).sum(axis=1)


def _precision_sum(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` [R]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp[:, 1:] + fp[:, 1:] > 0, tp[:, 1:] / (tp[:, 1:] + fp[:, 1:]), 0.0)
        return (np.diff(tp, axis=1) / tp[:, -1:] * precision).sum(axis=1)


def _sensitivity_at(tpr: np.ndarray, fpr: np.ndarray, specificity: float) -> np.ndarray:
    return np.where(fpr <= 1 - specificity + _TOLERANCE, tpr, 0.0).max(axis=1)


def _specificity_at(tpr: np.ndarray, fpr: np.ndarray, sensitivity: float) -> np.ndarray:
    return np.where(tpr >= sensitivity - _TOLERANCE, 1 - fpr, 0.0).max(axis=1)


def _shaped(values: np.ndarray, shape: np.ndarray) -> Any:
    return float(values[0]) if shape.size == 0 else values.reshape(*shape)


def binary_auc(targets: Any, scores: Any, weights: Any = None) -> Any:
    """ROC AUC of 0/1 targets and scores, ties counting one half (scikit-learn's ``roc_auc_score``).

    Args:
        targets: 0/1 [N].
        scores: Scores [N], higher meaning more likely positive.
        weights: Optional [..., N]: how much each image counts in each row (bootstrap resample counts).

    Returns:
        A float (NaN without both classes), or [...] with ``weights``.

    Example:
        >>> binary_auc([0, 0, 1, 1], [0.1, 0.6, 0.35, 0.8])
        0.75
    """
    tp, fp, _, shape = _curve(targets, scores, weights)
    tpr, fpr, both = _rates(tp, fp)
    return _shaped(np.where(both, _area(tpr, fpr), np.nan), shape)


def partial_auc_above_tpr(targets: Any, scores: Any, min_tpr: float = MIN_TPR, weights: Any = None) -> Any:
    """ISIC 2024's partial AUC: the area of the ROC region with TPR >= ``min_tpr``, in [0, 1 - min_tpr].

    ``integral over FPR of max(TPR(FPR) - min_tpr, 0)``, the ROC curve linear between its vertices: what the
    challenge's scoring computes on flipped labels and scores (see the module doc), without the flip.

    Args:
        targets: 0/1 [N].
        scores: Scores [N].
        min_tpr: The lowest TPR counted (0.8; 0 gives the AUC).
        weights: Optional [..., N] (bootstrap resample counts).

    Returns:
        A float in [0, 1 - min_tpr] (NaN without both classes), or [...] with ``weights``.

    Example:
        >>> round(partial_auc_above_tpr([0, 1], [0.2, 0.9]), 12)  # a perfect ranking: the whole band
        0.2
    """
    if not 0.0 <= min_tpr < 1.0:
        raise ValueError(f"min_tpr must lie in [0, 1), got {min_tpr}")
    tp, fp, _, shape = _curve(targets, scores, weights)
    tpr, fpr, both = _rates(tp, fp)
    return _shaped(np.where(both, _area(tpr, fpr, min_tpr), np.nan), shape)


def average_precision(targets: Any, scores: Any, weights: Any = None) -> Any:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds (scikit-learn's).

    Example:
        >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
        0.8333
    """
    tp, fp, _, shape = _curve(targets, scores, weights)
    _, _, both = _rates(tp, fp)
    return _shaped(np.where(both, _precision_sum(tp, fp), np.nan), shape)


def sensitivity_at_specificity(targets: Any, scores: Any, specificity: float, weights: Any = None) -> Any:
    """The highest sensitivity of a threshold whose specificity is at least ``specificity`` (no interpolation).

    Example:
        >>> sensitivity_at_specificity([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.9], 0.75)
        1.0
    """
    tp, fp, _, shape = _curve(targets, scores, weights)
    tpr, fpr, both = _rates(tp, fp)
    return _shaped(np.where(both, _sensitivity_at(tpr, fpr, specificity), np.nan), shape)


def specificity_at_sensitivity(targets: Any, scores: Any, sensitivity: float, weights: Any = None) -> Any:
    """The highest specificity of a threshold whose sensitivity is at least ``sensitivity`` (no interpolation).

    Example:
        >>> specificity_at_sensitivity([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.9], 1.0)
        0.75
    """
    tp, fp, _, shape = _curve(targets, scores, weights)
    tpr, fpr, both = _rates(tp, fp)
    return _shaped(np.where(both, _specificity_at(tpr, fpr, sensitivity), np.nan), shape)


def ranking_metrics(targets: Any, scores: Any, weights: Any = None) -> np.ndarray:
    """`RANKING_METRICS` from one sort: [6], or [..., 6] with ``weights``."""
    tp, fp, _, shape = _curve(targets, scores, weights)
    tpr, fpr, both = _rates(tp, fp)
    columns = [_area(tpr, fpr), _area(tpr, fpr, MIN_TPR), _precision_sum(tp, fp)]
    columns += [_sensitivity_at(tpr, fpr, 0.90), _sensitivity_at(tpr, fpr, 0.95), _specificity_at(tpr, fpr, 0.95)]
    table = np.where(both[:, None], np.stack(columns, axis=1), np.nan)
    return table[0] if shape.size == 0 else table.reshape(*shape, len(RANKING_METRICS))


def choose_threshold(targets: Any, scores: Any, rule: str | float = "youden") -> float:
    """The threshold of a binary decision (``score >= threshold`` is positive), chosen on these images.

    Args:
        targets: 0/1 [N] (the validation side).
        scores: Scores [N].
        rule: ``"youden"``: the threshold of largest ``TPR - FPR`` (Youden's J; on a tie the higher threshold); or a
            target specificity in (0, 1]: the threshold of highest sensitivity whose specificity is at least that.

    Returns:
        The threshold, one of the scores (NaN without both classes).

    Example:
        >>> choose_threshold([0, 0, 1, 1], [0.1, 0.6, 0.35, 0.8])  # J = 0.5 at 0.8 and at 0.35: the higher
        0.8
    """
    tp, fp, thresholds, _ = _curve(targets, scores)
    tpr, fpr, both = _rates(tp, fp)
    if not both[0]:
        return float("nan")
    if rule == "youden":
        index = int(np.argmax((tpr - fpr)[0, 1:]))
    elif isinstance(rule, (int, float)) and not isinstance(rule, bool) and 0 < rule <= 1:
        allowed = np.flatnonzero(fpr[0, 1:] <= 1 - rule + _TOLERANCE)
        if allowed.size == 0:  # not even the highest score keeps that specificity: above every score
            return float(np.nextafter(thresholds[0], np.inf))
        index = int(allowed[-1])  # the lowest such threshold: the most sensitive
    else:
        raise ValueError(f"threshold rule must be 'youden' or a target specificity in (0, 1], got {rule!r}")
    return float(thresholds[index])


def thresholded_metrics(targets: Any, scores: Any, threshold: float, weights: Any = None) -> np.ndarray:
    """`THRESHOLD_METRICS` (BAcc, F1, sensitivity, specificity) of ``score >= threshold``: [4], or [..., 4].

    Example:
        >>> thresholded_metrics([0, 0, 1, 1], [0.1, 0.6, 0.35, 0.8], 0.35).round(4).tolist()
        [0.75, 0.8, 1.0, 0.5]
    """
    labels = np.asarray(targets).reshape(-1).astype(np.float64)
    predicted = (np.asarray(scores, dtype=np.float64).reshape(-1) >= threshold).astype(np.float64)
    rows = np.ones((1, labels.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    flat = rows.reshape(-1, labels.size)
    tp, fn = flat @ (labels * predicted), flat @ (labels * (1 - predicted))
    fp, tn = flat @ ((1 - labels) * predicted), flat @ ((1 - labels) * (1 - predicted))
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    table = np.stack([(sensitivity + specificity) / 2, f1, sensitivity, specificity], axis=-1)
    both = (tp + fn > 0) & (tn + fp > 0)
    table = np.where(both[:, None] & np.isfinite(threshold), table, np.nan)
    return table[0] if weights is None else table.reshape(*rows.shape[:-1], len(THRESHOLD_METRICS))


def binary_metrics(
    targets: Any,
    scores: Any,
    *,
    threshold: float | None = None,
    threshold_rule: str | float = "youden",
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    method: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """What a binary run's ``metrics.json`` holds: every figure of `BINARY_METRICS`, the threshold, the intervals.

    Args:
        targets: 0/1 [N].
        scores: The positive class's probability (or any score) [N].
        threshold: The decision threshold to score at (a run's, chosen on its validation side); None: chosen here
            by ``threshold_rule`` (`choose_threshold`).
        threshold_rule: ``"youden"`` or a target specificity.
        resamples: Stratified bootstrap resamples (0: no intervals). The threshold stays fixed over them.
        seed: Seed of the resamples.
        level: Coverage of the intervals.
        method: ``"percentile"`` or ``"bca"``.

    Returns:
        ``{figure: value or None, "threshold": float or None, "threshold_rule": ..., "positives": n, "n": N,
        "ci": {figure: [low, high] or None}, "bootstrap": settings}`` (no ``ci`` without resamples or without both
        classes).
    """
    labels = np.asarray(targets).reshape(-1).astype(np.int64)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    chosen = choose_threshold(labels, values, threshold_rule) if threshold is None else float(threshold)
    figures = np.concatenate([ranking_metrics(labels, values), thresholded_metrics(labels, values, chosen)])
    out: dict[str, Any] = {name: _value(v) for name, v in zip(BINARY_METRICS, figures.tolist(), strict=True)}
    out.update(
        threshold=_value(chosen),
        threshold_rule=threshold_rule if threshold is None else "given",
        positives=int(labels.sum()),
        n=int(labels.size),
    )
    both = 0 < labels.sum() < labels.size
    if resamples and both:

        def table(labels: np.ndarray, values: np.ndarray, *, weights: np.ndarray) -> np.ndarray:
            return np.concatenate(
                [ranking_metrics(labels, values, weights), thresholded_metrics(labels, values, chosen, weights)],
                axis=-1,
            )

        result = bootstrap(
            table, labels, values, resamples=resamples, seed=seed, level=level, weighted=True, method=method
        )
        low, high = result.low.tolist(), result.high.tolist()
        out["ci"] = {
            name: [low[i], high[i]] if out[name] is not None else None for i, name in enumerate(BINARY_METRICS)
        }
        out["bootstrap"] = result.settings()
    return out


def label_metrics(
    targets: Any,
    scores: Any,
    label_names: Sequence[str],
    *,
    thresholds: Sequence[float] | None = None,
    threshold_rule: str | float = "youden",
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    method: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """A multilabel run's figures: `binary_metrics` of each label, and their means over the labels that have them.

    Each label's intervals come from its own bootstrap, stratified by that label's 0/1 targets; the means are point
    figures (their intervals would need one joint resampling of all labels, which a label absent from a resample
    would leave undefined).

    Args:
        targets: 0/1 [N, L].
        scores: Per-label probabilities [N, L].
        label_names: The L label names.
        thresholds: One threshold per label (a run's), or None to choose each by ``threshold_rule``.
        threshold_rule: ``"youden"`` or a target specificity.
        resamples: Resamples per label (0: no intervals).
        seed: Seed of the resamples.
        level: Coverage.
        method: ``"percentile"`` or ``"bca"``.

    Returns:
        ``{"per_label": {name: binary_metrics}, "mean": {figure: mean or None}, "labels": [...]}``.
    """
    labels = np.asarray(targets).astype(np.int64)
    values = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != values.shape or labels.shape[1] != len(label_names):
        raise ValueError(
            f"multilabel targets and scores must both be [N, L] with L = {len(label_names)} labels, got "
            f"{list(labels.shape)} and {list(values.shape)}"
        )
    per_label = {
        name: binary_metrics(
            labels[:, i],
            values[:, i],
            threshold=None if thresholds is None else thresholds[i],
            threshold_rule=threshold_rule,
            resamples=resamples,
            seed=seed + i,
            level=level,
            method=method,
        )
        for i, name in enumerate(label_names)
    }
    means: dict[str, Any] = {}
    for figure in BINARY_METRICS:
        found = [entry[figure] for entry in per_label.values() if entry[figure] is not None]
        means[figure] = float(np.mean(found)) if found else None
    return {"per_label": per_label, "mean": means, "labels": list(label_names)}


def _value(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
