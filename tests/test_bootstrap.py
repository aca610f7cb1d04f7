"""Bootstrap intervals and calibration: against an independent slow loop and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from sampleweight.bootstrap import bootstrap, percentile_interval, resample_counts, resample_images
from sampleweight.metrics import (
    expected_calibration_error,
    final_metrics,
    metric_intervals,
    negative_log_likelihood,
    reliability,
)

NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def scored_case(seed: int, n: int, classes: int = 7, skill: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.choice(classes, size=n, p=np.r_[0.1, 0.5, np.full(classes - 2, 0.4 / (classes - 2))])
    predictions = np.where(rng.random(n) < skill, targets, rng.integers(0, classes, size=n))
    return targets, predictions


@pytest.mark.parametrize("seed", range(4))
def test_intervals_equal_an_independent_slow_loop_over_the_same_resamples(seed: int) -> None:
    targets, predictions = scored_case(seed, n=90)
    resamples = 60
    ci, settings = metric_intervals(targets, predictions, NAMES, resamples=resamples, seed=seed)
    assert settings == {"resamples": resamples, "seed": seed, "level": 0.95, "stratified": True}
    counts = resample_counts(targets, resamples, seed)
    labels = np.unique(targets)
    rows = []
    for row in counts:  # one resample at a time, scored by scikit-learn on the images drawn
        drawn = np.repeat(np.arange(targets.size), row)
        t, p = targets[drawn], predictions[drawn]
        recall = skm.recall_score(t, p, labels=range(7), average=None, zero_division=0)
        rows.append([
            skm.accuracy_score(t, p),
            skm.recall_score(t, p, labels=labels, average="macro", zero_division=0),
            skm.precision_score(t, p, labels=labels, average="macro", zero_division=0),
            skm.f1_score(t, p, labels=labels, average="macro", zero_division=0),
            *recall,
        ])  # fmt: skip
    slow = np.array(rows)
    low, high = np.quantile(slow, 0.025, axis=0), np.quantile(slow, 0.975, axis=0)
    for i, metric in enumerate(("acc", "bacc", "mpr", "mf1")):
        assert ci[metric] == pytest.approx([low[i], high[i]], abs=1e-12), metric
    present = np.bincount(targets, minlength=7) > 0
    for k, name in enumerate(NAMES):
        expected = pytest.approx([low[4 + k], high[4 + k]], abs=1e-12) if present[k] else None
        assert ci["per_class"][name]["recall"] == expected, name


@pytest.mark.parametrize("seed", range(3))
def test_auc_intervals_equal_scikit_learn_on_each_resample(seed: int) -> None:
    """The AUC intervals of metrics.json: the same resamples drawn and scored by scikit-learn, one by one."""
    targets, predictions = scored_case(seed, n=80, classes=5)
    scores = np.round(np.random.default_rng(seed).dirichlet(np.ones(5), size=80), 2)
    names = NAMES[:5]
    ci, _ = metric_intervals(targets, predictions, names, scores=scores, resamples=40, seed=seed)
    present = np.bincount(targets, minlength=5) > 0
    rows = []
    for drawn in resample_images(resample_counts(targets, 40, seed)):
        per_class = [skm.roc_auc_score(targets[drawn] == c, scores[drawn, c]) if present[c] else np.nan
                     for c in range(5)]  # fmt: skip
        rows.append([np.nanmean(per_class), *per_class])
    slow = np.array(rows)
    low, high = np.quantile(slow, 0.025, axis=0), np.quantile(slow, 0.975, axis=0)
    assert ci["auc"] == pytest.approx([low[0], high[0]], abs=1e-12)
    for c, name in enumerate(names):
        expected = pytest.approx([low[1 + c], high[1 + c]], abs=1e-12) if present[c] else None
        assert ci["per_class"][name]["auc"] == expected, name
    assert ci["acc"] == metric_intervals(targets, predictions, names, resamples=40, seed=seed)[0]["acc"]


def test_a_plain_metric_function_gives_the_vectorised_paths_samples() -> None:
    targets, predictions = scored_case(11, n=70)
    accuracy = lambda t, p: float((t == p).mean())  # noqa: E731

    def weighted_accuracy(t, p, weights):
        return (weights * (t == p)).sum(axis=1) / weights.sum(axis=1)

    plain = bootstrap(accuracy, targets, predictions, resamples=100, seed=3)
    vectorised = bootstrap(weighted_accuracy, targets, predictions, resamples=100, seed=3, weighted=True)
    np.testing.assert_allclose(plain.samples, vectorised.samples)
    assert float(plain.estimate) == pytest.approx(float(vectorised.estimate))
    assert float(plain.estimate) == pytest.approx(accuracy(targets, predictions))
    # any metric of (targets, scores): a per-class AUC slots in
    scores = np.random.default_rng(0).random((70, 7))
    auc = bootstrap(lambda t, s: skm.roc_auc_score(t == 1, s[:, 1]), targets, scores, resamples=50, seed=0)
    assert auc.samples.shape == (50,) and auc.low <= auc.high


@pytest.mark.parametrize("seed", range(8))
def test_the_interval_contains_the_point_estimate(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    targets, predictions = scored_case(seed, n=int(rng.integers(40, 600)), skill=float(rng.uniform(0.2, 0.95)))
    scores = np.random.default_rng(seed).dirichlet(np.ones(7), size=targets.size)
    metrics = final_metrics(targets, scores, predictions, NAMES, resamples=500, seed=seed)
    for metric in ("acc", "bacc", "mpr", "mf1"):
        low, high = metrics["ci"][metric]
        assert low <= metrics[metric] <= high, (metric, low, metrics[metric], high)
    for name in NAMES:
        for metric in ("recall", "auc"):
            interval = metrics["ci"]["per_class"][name][metric]
            if interval is not None:
                assert interval[0] <= metrics["per_class"][name][metric] <= interval[1], (name, metric)
    assert metrics["ci"]["auc"][0] <= metrics["auc"] <= metrics["ci"]["auc"][1]


def test_stratified_resamples_keep_every_class_count() -> None:
    targets, _ = scored_case(5, n=300)
    counts = resample_counts(targets, 400, seed=9)
    assert counts.shape == (400, 300) and (counts >= 0).all()
    for c in np.unique(targets):
        assert (counts[:, targets == c].sum(axis=1) == (targets == c).sum()).all()
    assert (counts.sum(axis=1) == 300).all()
    unstratified = resample_counts(targets, 400, seed=9, stratify=False)
    assert (unstratified.sum(axis=1) == 300).all()
    assert len(np.unique(unstratified[:, targets == 5].sum(axis=1))) > 1  # the class mix varies without it
    np.testing.assert_array_equal(counts, resample_counts(targets, 400, seed=9))  # seeded
    assert not np.array_equal(counts, resample_counts(targets, 400, seed=10))


def test_no_resamples_means_no_intervals_and_bad_counts_are_refused() -> None:
    targets, predictions = scored_case(1, n=30)
    scores = np.eye(7)[predictions]
    metrics = final_metrics(targets, scores, predictions, NAMES, resamples=0)
    assert "ci" not in metrics and "bootstrap" not in metrics and metrics["ece"] == pytest.approx(1 - metrics["acc"])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="resamples"):
            final_metrics(targets, scores, predictions, NAMES, resamples=bad)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.zeros(3), level=1.0)


def test_ece_and_nll_equal_a_hand_computation() -> None:
    # confidences 0.95 (bin 14), 0.95, 0.5 (bin 7: (7/15, 8/15]), 0.4 (bin 5: (5/15, 6/15]), 1.0 (bin 14)
    scores = np.array([
        [0.95, 0.05, 0.0],
        [0.05, 0.95, 0.0],
        [0.5, 0.3, 0.2],
        [0.3, 0.3, 0.4],
        [0.0, 0.0, 1.0],
    ])  # fmt: skip
    targets = np.array([0, 0, 0, 1, 2])  # right, wrong, right, wrong, right
    # bin 14: 3 images, accuracy 2/3, confidence (0.95 + 0.95 + 1) / 3; bin 7: 1 image, 1 vs 0.5; bin 5: 0 vs 0.4
    expected = (3 * abs(2 / 3 - 2.9 / 3) + 1 * abs(1 - 0.5) + 1 * abs(0 - 0.4)) / 5
    assert expected_calibration_error(targets, scores) == pytest.approx(expected)
    table = reliability(targets, scores)
    assert table["count"].tolist() == [0] * 5 + [1, 0, 1] + [0] * 6 + [3]
    assert np.isnan(table["accuracy"][0]) and table["accuracy"][14] == pytest.approx(2 / 3)
    nll = -(math.log(0.95) + math.log(0.05) + math.log(0.5) + math.log(0.3) + math.log(1.0)) / 5
    assert negative_log_likelihood(targets, scores) == pytest.approx(nll)
    assert negative_log_likelihood([1], [[1.0, 0.0]]) == pytest.approx(-math.log(1e-12))  # floored, finite
    assert expected_calibration_error(targets, np.eye(3)[targets]) == 0.0
