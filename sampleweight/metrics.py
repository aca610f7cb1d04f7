"""The paper's metrics, computed once, in one place, from a confusion matrix; calibration; their intervals.

Acc (overall accuracy), BAcc (balanced accuracy: mean recall), mPR (mean precision), mF1 (mean F1),
and per class: recall (RE), precision (PR), F1 and support. Macro means run over the classes that
occur in the ground truth (support > 0); a class that is never predicted has precision 0 (and so F1
0), as scikit-learn's ``zero_division=0``. The formulas take a confusion matrix with any leading
axes, so the same code scores one run and 2,000 bootstrap resamples at once.

Ranking: each class's one-vs-rest ROC AUC (`roc_auc`, as scikit-learn's ``roc_auc_score`` of
``targets == c`` against ``scores[:, c]``, ties counted one half) and their mean over the classes that
have one, the figures the ISIC 2018 challenge reported beside its balanced accuracy. A class with no
images, or with every image, has no AUC (None in ``metrics.json``).

Calibration: the expected calibration error (ECE, top-label, 15 equal-width confidence bins) and the
mean negative log-likelihood (NLL) of the predicted probabilities. `final_metrics` is what a run's
``metrics.json`` holds: all of the above and, under ``ci``, 95 % stratified-bootstrap intervals
(`sampleweight.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sampleweight.bootstrap import DEFAULT_METHOD, bootstrap

__all__ = [
    "CALIBRATION_BINS",
    "INTERVAL_METRICS",
    "ClassificationMetrics",
    "classification_metrics",
    "confusion_matrix",
    "confusion_metrics",
    "expected_calibration_error",
    "final_metrics",
    "metric_intervals",
    "negative_log_likelihood",
    "reliability",
    "roc_auc",
]

ClassificationMetrics = dict[str, Any]

CALIBRATION_BINS = 15
"""Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15)."""
INTERVAL_METRICS = ("acc", "bacc", "mpr", "mf1")
"""The summary metrics that get a bootstrap interval (besides each class's recall, and the AUCs)."""


def confusion_matrix(targets: Any, predictions: Any, num_classes: int, weights: Any = None) -> np.ndarray:
    """Counts [C, C]: row = true class, column = predicted class; or one matrix per row of ``weights``.

    Args:
        targets: True class indices [N] (tensor, array or list).
        predictions: Predicted class indices [N].
        num_classes: C.
        weights: Optional [..., N]: how much each image counts in each matrix (bootstrap resample counts
            from `sampleweight.bootstrap.resample_counts`).

    Returns:
        An int64 array [C, C]; with ``weights``, [..., C, C] of the weights' dtype.
    """
    t = torch.as_tensor(targets).long().flatten().cpu()
    p = torch.as_tensor(predictions).long().flatten().cpu()
    if t.shape != p.shape:
        raise ValueError(f"targets and predictions differ in length: {t.numel()} vs {p.numel()}")
    codes = (t * num_classes + p).numpy()
    if weights is None:
        counts = np.bincount(codes, minlength=num_classes * num_classes)
        return counts.reshape(num_classes, num_classes).astype(np.int64)
    weights = np.asarray(weights)
    if weights.shape[-1:] != codes.shape:
        raise ValueError(f"weights must end in one entry per image ({codes.size}), got shape {weights.shape}")
    rows = weights.reshape(-1, codes.size)
    out = np.zeros((rows.shape[0], num_classes * num_classes), dtype=np.result_type(rows.dtype, np.int64))
    if codes.size:  # sum the weights of the images of each (true, predicted) pair, all rows at once
        order = np.argsort(codes, kind="stable")
        ordered = codes[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        out[:, ordered[starts]] = np.add.reduceat(rows[:, order], starts, axis=1)
    return out.reshape(*weights.shape[:-1], num_classes, num_classes)


def confusion_metrics(confusion: Any) -> dict[str, np.ndarray]:
    """Acc, BAcc, mPR, mF1 and the per-class figures of confusion matrices [..., C, C] (any leading axes).

    Returns:
        ``{"acc", "bacc", "mpr", "mf1"}`` of shape [...] and ``{"recall", "precision", "f1", "support"}``
        of shape [..., C]. Macro means run over the classes with support > 0 in each matrix.
    """
    cm = np.asarray(confusion)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    hits = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / support, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    classes_present = present.sum(axis=-1)
    total = support.sum(axis=-1)

    def macro(values: np.ndarray) -> np.ndarray:
        return np.where(classes_present > 0, (values * present).sum(axis=-1) / np.maximum(classes_present, 1), 0.0)

    return {
        "acc": np.where(total > 0, hits.sum(axis=-1) / np.maximum(total, 1), 0.0),
        "bacc": macro(recall),
        "mpr": macro(precision),
        "mf1": macro(f1),
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "support": support,
    }


def classification_metrics(targets: Any, predictions: Any, class_names: Sequence[str]) -> ClassificationMetrics:
    """Acc, BAcc, mPR, mF1, per-class recall/precision/F1/support and the confusion matrix.

    Args:
        targets: True class indices [N].
        predictions: Predicted class indices [N].
        class_names: Names of the C classes, in index order.

    Returns:
        ``{"acc", "bacc", "mpr", "mf1", "per_class": {name: {"recall", "precision", "f1",
        "support"}}, "confusion": [[...]], "classes": [...], "scored_classes": [...], "n": N}`` with plain
        Python numbers, as written to ``metrics.json``; ``scored_classes`` are those the macro means run
        over (the classes with support).
    """
    cm = confusion_matrix(targets, predictions, len(class_names))
    figures = confusion_metrics(cm)
    return {
        **{name: float(figures[name]) for name in INTERVAL_METRICS},
        "per_class": {
            name: {
                "recall": float(figures["recall"][i]),
                "precision": float(figures["precision"][i]),
                "f1": float(figures["f1"][i]),
                "support": int(figures["support"][i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
        "classes": list(class_names),
        "scored_classes": [name for name, held in zip(class_names, figures["support"] > 0, strict=True) if held],
        "n": int(cm.sum()),
    }


def roc_auc(targets: Any, scores: Any, weights: Any = None) -> np.ndarray:
    """Each class's one-vs-rest ROC AUC: ``P(score of a positive > score of a negative)``, ties counting 1/2.

    For class ``c`` the positives are the images of ``c`` and the negatives all others, ranked by
    ``scores[:, c]``; this is scikit-learn's ``roc_auc_score(targets == c, scores[:, c])``, computed from
    one sort per class. With ``weights``, each image counts as often as its weight in each row (bootstrap
    resample counts), all rows at once: the AUC of every resample without drawing it.

    Args:
        targets: True class indices [N].
        scores: Class probabilities (or any scores, higher meaning more likely) [N, C].
        weights: Optional [..., N]: how much each image counts in each row.

    Returns:
        float64 [C], or [..., C] with ``weights``; NaN for a class without positives or without negatives.

    Example:
        >>> roc_auc([0, 0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.65, 0.35], [0.2, 0.8]]).tolist()
        [0.75, 0.75]
    """
    labels, values = _scored(targets, scores)
    n, num_classes = values.shape
    if weights is None:
        rows, shape = np.ones((1, n)), None
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape[-1:] != (n,):
            raise ValueError(f"weights must end in one entry per image ({n}), got shape {weights.shape}")
        rows, shape = weights.reshape(-1, n), weights.shape[:-1]
    out = np.full((rows.shape[0], num_classes), np.nan)
    for c in range(num_classes):
        positive = labels == c
        if not positive.any() or positive.all():
            continue
        negatives, positives = np.flatnonzero(~positive), np.flatnonzero(positive)
        order = negatives[np.argsort(values[negatives, c], kind="stable")]
        ranked = values[order, c]
        below = np.zeros((rows.shape[0], order.size + 1))  # [:, k]: weight of the k lowest-scored negatives
        np.cumsum(rows[:, order], axis=1, out=below[:, 1:])
        score = values[positives, c]
        lower = below[:, np.searchsorted(ranked, score, "left")]  # negatives scored below each positive
        not_higher = below[:, np.searchsorted(ranked, score, "right")]  # ... and those tied with it
        weight = rows[:, positives]
        pairs = weight.sum(axis=1) * below[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, c] = np.where(pairs > 0, (weight * (lower + not_higher)).sum(axis=1) / (2 * pairs), np.nan)
    return out[0] if shape is None else out.reshape(*shape, num_classes)


def _mean_auc(auc: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """The mean over the classes that have an AUC (``defined`` [C]); NaN where none has."""
    if not defined.any():
        return np.full(auc.shape[:-1], np.nan)
    return auc[..., defined].mean(axis=-1)


def reliability(targets: Any, scores: Any, bins: int = CALIBRATION_BINS) -> dict[str, np.ndarray]:
    """Top-label reliability: per equal-width confidence bin, how many images, their mean confidence and accuracy.

    The top label is the most probable class; its probability is the confidence. Bin ``k`` (0-based)
    holds the confidences in ``(k/bins, (k+1)/bins]`` (the first bin includes 0).

    Args:
        targets: True class indices [N].
        scores: Class probabilities [N, C].
        bins: Number of bins.

    Returns:
        ``{"count" [bins], "confidence" [bins], "accuracy" [bins]}``; empty bins have confidence and
        accuracy NaN.
    """
    labels, probabilities = _scored(targets, scores)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    which = np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True)
    count = np.bincount(which, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(targets: Any, scores: Any, bins: int = CALIBRATION_BINS) -> float:
    """ECE: ``sum_k |B_k| / N * |accuracy(B_k) - confidence(B_k)|`` over equal-width top-label bins.

    Args:
        targets: True class indices [N].
        scores: Class probabilities [N, C].
        bins: Number of equal-width confidence bins (15).

    Returns:
        The ECE, a fraction in [0, 1] (0 for no images).

    Example:
        >>> round(expected_calibration_error([0, 1], [[0.9, 0.1], [0.9, 0.1]]), 6)  # accuracy 0.5, confidence 0.9
        0.4
    """
    table = reliability(targets, scores, bins)
    total = table["count"].sum()
    if total == 0:
        return 0.0
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((table["count"][filled] * gaps).sum() / total)


NLL_FLOOR = 1e-12
"""Probabilities below this count as this in `negative_log_likelihood` (a finite worst case of about 27.6)."""


def negative_log_likelihood(targets: Any, scores: Any) -> float:
    """Mean ``-log p(true class)`` over the images (probabilities floored at `NLL_FLOOR`).

    Args:
        targets: True class indices [N].
        scores: Class probabilities [N, C].

    Returns:
        The mean NLL in nats (0 for no images).
    """
    labels, probabilities = _scored(targets, scores)
    if labels.size == 0:
        return 0.0
    true = probabilities[np.arange(labels.size), labels]
    return float(-np.log(np.maximum(true, NLL_FLOOR)).mean())


def metric_intervals(
    targets: Any,
    predictions: Any,
    class_names: Sequence[str],
    *,
    scores: Any = None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    method: str = DEFAULT_METHOD,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stratified-bootstrap intervals of Acc, BAcc, mPR, mF1 and each class's recall (and, with scores, the AUCs).

    All resamples are scored at once, as weighted confusion matrices and weighted rank sums (2,000
    resamples of 2,000 images take well under a second; ``benchmarks/bootstrap_speed.py``).

    Args:
        targets: True class indices [N].
        predictions: Predicted class indices [N].
        class_names: The C class names.
        scores: Class probabilities [N, C]: adds intervals of the mean AUC and each class's AUC (`roc_auc`).
        resamples: R.
        seed: Seed of the resamples.
        level: Coverage (0.95).
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated; `sampleweight.bootstrap`).

    Returns:
        ``(ci, settings)``: ``ci`` = ``{"acc": [low, high], "bacc": ..., "mpr": ..., "mf1": ...,
        "per_class": {name: {"recall": [low, high]}}}`` (None for a class absent from the targets); with
        ``scores`` also ``ci["auc"]`` and ``ci["per_class"][name]["auc"]`` (None for a class without an AUC);
        ``settings`` = ``{"resamples", "seed", "level", "stratified"}``.
    """
    num_classes = len(class_names)
    labels = np.asarray(torch.as_tensor(targets).long().flatten().cpu())
    predicted = np.asarray(torch.as_tensor(predictions).long().flatten().cpu())
    values: list[np.ndarray] = [labels, predicted]
    defined = np.zeros(num_classes, dtype=bool)
    if scores is not None:
        values.append(_scored(labels, scores)[1])
        defined = ~np.isnan(roc_auc(labels, values[2]))

    def figures(labels: np.ndarray, predicted: np.ndarray, *rest: np.ndarray, weights: np.ndarray) -> np.ndarray:
        scored = confusion_metrics(confusion_matrix(labels, predicted, num_classes, weights))
        columns = [np.stack([scored[m] for m in INTERVAL_METRICS], axis=-1), scored["recall"]]
        if rest:
            auc = roc_auc(labels, rest[0], weights)
            columns += [_mean_auc(auc, defined)[..., None], auc]
        return np.concatenate(columns, axis=-1)

    result = bootstrap(figures, *values, resamples=resamples, seed=seed, level=level, weighted=True, method=method)
    low, high = result.low.tolist(), result.high.tolist()
    present = np.bincount(labels, minlength=num_classes) > 0
    ci: dict[str, Any] = {m: [low[i], high[i]] for i, m in enumerate(INTERVAL_METRICS)}
    offset = len(INTERVAL_METRICS)
    ci["per_class"] = {
        name: {"recall": [low[offset + i], high[offset + i]] if present[i] else None}
        for i, name in enumerate(class_names)
    }
    if scores is not None:
        offset += num_classes
        ci["auc"] = [low[offset], high[offset]] if defined.any() else None
        for i, name in enumerate(class_names):
            ci["per_class"][name]["auc"] = [low[offset + 1 + i], high[offset + 1 + i]] if defined[i] else None
    return ci, result.settings()


def final_metrics(
    targets: Any,
    scores: Any,
    predictions: Any,
    class_names: Sequence[str],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    method: str = DEFAULT_METHOD,
) -> ClassificationMetrics:
    """What a run's ``metrics.json`` holds: `classification_metrics`, the AUCs, ``ece``, ``nll`` and their intervals.

    Args:
        targets: True class indices [N].
        scores: Class probabilities [N, C] (for the AUCs and the calibration figures; a hierarchical model's
            leaf probabilities).
        predictions: The decided classes [N] (argmax, or a hierarchical model's greedy decoding).
        class_names: The C class names.
        resamples: Bootstrap resamples for ``ci`` (0: no intervals).
        seed: Seed of the resamples.
        level: Coverage of the intervals.
        method: How the intervals are read from the resamples: ``"percentile"`` or ``"bca"`` (`metric_intervals`).

    Returns:
        `classification_metrics` plus ``auc`` (the mean one-vs-rest ROC AUC over the classes that have one,
        None when none has) and ``per_class[name]["auc"]`` (`roc_auc`; None for a class without images or
        with every image), ``ece`` (top-label, 15 bins) and ``nll``; with ``resamples``, ``ci`` (see
        `metric_intervals`) and ``bootstrap`` (its settings).
    """
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 0:
        raise ValueError(f"resamples must be an integer >= 0 (0: no intervals), got {resamples!r}")
    metrics = classification_metrics(targets, predictions, class_names)
    auc = roc_auc(targets, scores)
    defined = ~np.isnan(auc)
    metrics["auc"] = float(_mean_auc(auc, defined)) if defined.any() else None
    for name, value, has in zip(class_names, auc.tolist(), defined, strict=True):
        metrics["per_class"][name]["auc"] = value if has else None
    metrics["ece"] = expected_calibration_error(targets, scores)
    metrics["nll"] = negative_log_likelihood(targets, scores)
    if resamples:
        metrics["ci"], metrics["bootstrap"] = metric_intervals(
            targets, predictions, class_names, scores=scores, resamples=resamples, seed=seed, level=level, method=method
        )
    return metrics


def _scored(targets: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(torch.as_tensor(targets).long().flatten().cpu())
    probabilities = np.asarray(torch.as_tensor(scores).double().cpu())
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.size:
        raise ValueError(f"scores must be [N, C] with N = {labels.size} targets, got shape {list(probabilities.shape)}")
    return labels, probabilities
