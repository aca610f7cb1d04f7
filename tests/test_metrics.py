"""The metrics against scikit-learn on random predictions, including absent and never-predicted classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sampleweight.bootstrap import resample_counts, resample_images
from sampleweight.metrics import classification_metrics, confusion_matrix, final_metrics, roc_auc

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


# ------------------------------------------------------------------------------------------- ROC AUC


@pytest.mark.parametrize("seed", range(40))
def test_roc_auc_equals_scikit_learn_per_class_with_ties_and_absent_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    present = rng.choice(7, size=int(rng.integers(1, 8)), replace=False)
    targets = rng.choice(present, size=n)
    scores = rng.dirichlet(np.ones(7), size=n)
    if seed % 2:
        scores = np.round(scores, 1)  # many ties, counted one half as scikit-learn does
    got = roc_auc(targets, scores)
    for c in range(7):
        positive = targets == c
        if positive.any() and not positive.all():
            assert got[c] == pytest.approx(skm.roc_auc_score(positive, scores[:, c]), abs=1e-12)
        else:
            assert np.isnan(got[c])  # no positives (absent class) or no negatives: no AUC


@pytest.mark.parametrize("seed", range(10))
def test_weighted_roc_auc_equals_scikit_learn_on_each_resample_drawn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    targets = rng.integers(0, 4, size=n)
    scores = np.round(rng.random((n, 4)), 2)
    counts = resample_counts(targets, 6, seed=seed)
    got = roc_auc(targets, scores, counts)
    assert got.shape == (6, 4)
    for r, drawn in enumerate(resample_images(counts)):
        for c in range(4):
            positive = targets[drawn] == c
            if positive.any() and not positive.all():
                assert got[r, c] == pytest.approx(skm.roc_auc_score(positive, scores[drawn, c]), abs=1e-12)
                weighted = skm.roc_auc_score(targets == c, scores[:, c], sample_weight=counts[r])
                assert got[r, c] == pytest.approx(weighted, abs=1e-12)
            else:
                assert np.isnan(got[r, c])


def test_final_metrics_mean_auc_is_scikit_learns_macro_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    targets = np.r_[np.arange(7), rng.integers(0, 7, size=193)]
    scores = rng.dirichlet(np.ones(7), size=200)
    metrics = final_metrics(targets, scores, scores.argmax(1), NAMES, resamples=0)
    expected = skm.roc_auc_score(targets, scores, multi_class="ovr", average="macro")
    assert metrics["auc"] == pytest.approx(expected, abs=1e-12)
    for c, name in enumerate(NAMES):
        assert metrics["per_class"][name]["auc"] == pytest.approx(skm.roc_auc_score(targets == c, scores[:, c]))


def test_an_absent_class_has_no_auc_and_the_mean_runs_over_the_others() -> None:
    targets = np.array([0, 0, 1, 1, 1])
    scores = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    metrics = final_metrics(targets, scores, scores.argmax(1), ["a", "b", "c"], resamples=200)
    assert metrics["per_class"]["c"]["auc"] is None and metrics["ci"]["per_class"]["c"]["auc"] is None
    assert metrics["per_class"]["a"]["auc"] == pytest.approx(skm.roc_auc_score(targets == 0, scores[:, 0]))
    assert metrics["auc"] == pytest.approx((metrics["per_class"]["a"]["auc"] + metrics["per_class"]["b"]["auc"]) / 2)
    only_one = final_metrics([1, 1], scores[:2], [1, 1], ["a", "b", "c"], resamples=50)
    assert only_one["auc"] is None and only_one["ci"]["auc"] is None  # one class: no negatives, no AUC at all
