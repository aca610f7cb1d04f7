"""The paper's metrics, computed once, in one place, from a confusion matrix.

Acc (overall accuracy), BAcc (balanced accuracy: mean recall), mPR (mean precision), mF1 (mean F1),
and per class: recall (RE), precision (PR), F1 and support. Macro means run over the classes that
occur in the ground truth (support > 0); a class that is never predicted has precision 0 (and so F1
0), as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ClassificationMetrics", "classification_metrics", "confusion_matrix"]

ClassificationMetrics = dict[str, Any]


def confusion_matrix(targets: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """Counts [C, C]: row = true class, column = predicted class.

    Args:
        targets: True class indices [N] (tensor, array or list).
        predictions: Predicted class indices [N].
        num_classes: C.

    Returns:
        An int64 array.
    """
    t = torch.as_tensor(targets).long().flatten().cpu()
    p = torch.as_tensor(predictions).long().flatten().cpu()
    if t.shape != p.shape:
        raise ValueError(f"targets and predictions differ in length: {t.numel()} vs {p.numel()}")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


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
    num_classes = len(class_names)
    cm = confusion_matrix(targets, predictions, num_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    hits = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / support, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    total = int(support.sum())

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "acc": float(hits.sum() / total) if total else 0.0,
        "bacc": macro(recall),
        "mpr": macro(precision),
        "mf1": macro(f1),
        "per_class": {
            name: {
                "recall": float(recall[i]),
                "precision": float(precision[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
        "classes": list(class_names),
        "scored_classes": [name for name, held in zip(class_names, present, strict=True) if held],
        "n": total,
    }
