"""The metrics against scikit-learn on random predictions, including absent and never-predicted classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sampleweight.metrics import classification_metrics, confusion_matrix

NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


@pytest.mark.parametrize("seed", range(50))
def test_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    true_classes = rng.choice(7, size=int(rng.integers(1, 8)), replace=False)  # some classes absent
    targets = rng.choice(true_classes, size=n)
    predictions = np.where(rng.random(n) < 0.6, targets, rng.integers(0, 7, size=n))
    got = classification_metrics(targets, predictions, NAMES)
    labels = np.unique(targets)
    assert got["acc"] == pytest.approx(skm.accuracy_score(targets, predictions))
    assert got["bacc"] == pytest.approx(skm.recall_score(targets, predictions, labels=labels, average="macro"))
    assert got["mpr"] == pytest.approx(
        skm.precision_score(targets, predictions, labels=labels, average="macro", zero_division=0)
    )
    assert got["mf1"] == pytest.approx(
        skm.f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
    )
    np.testing.assert_array_equal(got["confusion"], skm.confusion_matrix(targets, predictions, labels=range(7)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        targets, predictions, labels=range(7), zero_division=0
    )
    for i, name in enumerate(NAMES):
        row = got["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i])
        )


def test_balanced_accuracy_equals_scikit_learn_when_all_classes_present() -> None:
    targets = np.array([0, 0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 0, 1, 1, 0, 0])
    got = classification_metrics(targets, predictions, ["a", "b", "c"])
    assert got["bacc"] == pytest.approx(skm.balanced_accuracy_score(targets, predictions))
    assert got["bacc"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert got["per_class"]["c"] == {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 1}


def test_confusion_matrix_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 2)
