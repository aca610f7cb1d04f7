"""A multilabel run's decisions and figures: what its ``metrics.jsonl``, ``metrics.json`` and ``predictions.csv`` hold.

A multilabel model scores each label by its own sigmoid. Each label is decided at its own threshold, chosen on the
validation side (Youden's J, or the most sensitive one at ``--threshold-specificity``;
`sampleweight.binary_metrics.choose_threshold`): an image holds label ``l`` when its score is at least ``t_l``. A label
whose validation images all hold it (or none does) has no threshold (its figures are None); it is decided at
`FALLBACK_THRESHOLD`.

``metrics.json`` holds `sampleweight.binary_metrics.label_metrics` (each label's figures with its bootstrap interval,
and their means) under ``multilabel``, and at the top level:

- ``auc``, ``pauc``, ``ap``, ``bacc``, ``f1``: the means over the labels that have the figure;
- ``acc``: the exact-match ratio, the share of images whose every label is decided right;
- ``mpr``: the mean over labels of the precision at the threshold (a label decided positive for no image is left
  out; None when no label is);
- ``mf1``: the macro F1 over labels (``f1`` again), the multiclass ``mf1``'s counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampleweight.binary_metrics import RANKING_METRICS, label_metrics, ranking_metrics

__all__ = [
    "EPOCH_FIGURES",
    "FALLBACK_THRESHOLD",
    "LABEL_SEPARATOR",
    "decide_labels",
    "epoch_figures",
    "joined_labels",
    "label_thresholds",
    "multilabel_final",
]

FALLBACK_THRESHOLD = 0.5
"""Where a label without a validation threshold (one class only on the validation side) is decided."""
LABEL_SEPARATOR = ";"
"""Joins the names of an image's labels in ``predictions.csv`` (``true``, ``pred``)."""
EPOCH_FIGURES = ("auc", "pauc", "ap")
"""A multilabel run's per-epoch validation figures (``val_auc``, ...): means over the labels that have them."""


def epoch_figures(targets: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """``val_auc``, ``val_pauc``, ``val_ap``: each the mean over the labels with both classes on the validation side
    (None when no label has them).

    Args:
        targets: 0/1 [N, L].
        scores: Per-label probabilities [N, L].

    Example:
        >>> targets = np.array([[1, 0], [0, 0], [1, 0]])
        >>> epoch_figures(targets, np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]]))["val_auc"]
        1.0
    """
    rows = np.stack([ranking_metrics(targets[:, i], scores[:, i]) for i in range(targets.shape[1])])
    record: dict[str, float | None] = {}
    for figure in EPOCH_FIGURES:
        values = rows[:, RANKING_METRICS.index(figure)]
        values = values[np.isfinite(values)]
        record[f"val_{figure}"] = float(values.mean()) if values.size else None
    return record


def label_thresholds(per_label: Mapping[str, Mapping[str, Any]], labels: Sequence[str]) -> np.ndarray:
    """Each label's decision threshold from ``label_metrics``' ``per_label`` (a run's ``metrics.json``):
    its ``threshold``, `FALLBACK_THRESHOLD` where it has none."""
    values = [per_label[name].get("threshold") for name in labels]
    return np.array([FALLBACK_THRESHOLD if value is None else float(value) for value in values], dtype=np.float64)


def decide_labels(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The labels decided for each image: ``score >= threshold``, ``np.int64`` 0/1 [N, L]."""
    return (np.asarray(scores) >= np.asarray(thresholds)[None, :]).astype(np.int64)


def joined_labels(matrix: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Each row's labels that are 1, joined by `LABEL_SEPARATOR` in label order ("" for none).

    Example:
        >>> joined_labels(np.array([[1, 0, 1], [0, 0, 0]]), ["a", "b", "c"])
        ['a;c', '']
    """
    return [LABEL_SEPARATOR.join(name for name, on in zip(labels, row, strict=True) if on) for row in matrix.tolist()]


def multilabel_final(
    targets: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    *,
    thresholds: Sequence[float] | None = None,
    threshold_rule: str | float = "youden",
    resamples: int = 2000,
) -> tuple[dict[str, Any], np.ndarray]:
    """A multilabel run's final figures (``metrics.json`` but ``epochs`` and ``run``) and its decisions.

    Args:
        targets: 0/1 [N, L].
        scores: Per-label probabilities [N, L].
        labels: The L label names.
        thresholds: One threshold per label (an evaluated run's), or None to choose each on these images by
            ``threshold_rule``.
        threshold_rule: ``"youden"`` or a target specificity.
        resamples: Bootstrap resamples per label (0: no intervals).

    Returns:
        ``(metrics, decisions [N, L])``; see the module doc for the figures.
    """
    targets = np.asarray(targets).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    block = label_metrics(
        targets, scores, labels, thresholds=thresholds, threshold_rule=threshold_rule, resamples=resamples
    )
    decided = decide_labels(scores, label_thresholds(block["per_label"], labels))
    precisions = [
        float((decided[:, i] & targets[:, i]).sum() / decided[:, i].sum())
        for i in range(len(labels))
        if decided[:, i].any()
    ]
    mean = block["mean"]
    metrics = {
        "task": "multilabel",
        "labels": list(labels),
        "multilabel": block,
        **{figure: mean[figure] for figure in ("auc", "pauc", "ap", "bacc", "f1")},
        "acc": float((decided == targets).all(axis=1).mean()) if len(targets) else None,
        "mpr": float(np.mean(precisions)) if precisions else None,
        "mf1": mean["f1"],
        "decoding": "thresholds",
    }
    return metrics, decided
