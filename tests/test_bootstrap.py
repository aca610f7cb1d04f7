"""Bootstrap intervals and calibration: against an independent slow loop and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # scikit-learn's own dependency: an independent BCa to check ours against
from sklearn import metrics as skm

from sampleweight.bootstrap import (
    acceleration,
    bca_interval,
    bootstrap,
    jackknife_groups,
    percentile_interval,
    resample_counts,
    resample_images,
)
from sampleweight.metrics import (
    confusion_matrix,
    confusion_metrics,
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
    # the percentile interval, read off the slow loop's resamples (BCa, the default, has its own checks below)
    ci, settings = metric_intervals(targets, predictions, NAMES, resamples=resamples, seed=seed, method="percentile")
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
    ci, _ = metric_intervals(targets, predictions, names, scores=scores, resamples=40, seed=seed, method="percentile")
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
    without_scores = metric_intervals(targets, predictions, names, resamples=40, seed=seed, method="percentile")
    assert ci["acc"] == without_scores[0]["acc"]


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


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("seed", range(8))
def test_the_interval_contains_the_point_estimate(seed: int, method: str) -> None:
    rng = np.random.default_rng(100 + seed)
    targets, predictions = scored_case(seed, n=int(rng.integers(40, 600)), skill=float(rng.uniform(0.2, 0.95)))
    scores = np.random.default_rng(seed).dirichlet(np.ones(7), size=targets.size)
    metrics = final_metrics(targets, scores, predictions, NAMES, resamples=500, seed=seed, method=method)
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


def weighted_figures(classes: int):
    """BAcc and Acc of each row of resample counts (the vectorised path, as metrics.json scores them)."""

    def figures(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        scored = confusion_metrics(confusion_matrix(targets, predictions, classes, weights))
        return np.stack([scored["bacc"], scored["acc"]], axis=-1)

    return figures


@pytest.mark.parametrize("seed", range(3))
def test_bca_equals_scipys_bca_for_several_samples_on_the_same_resamples(seed: int) -> None:
    """Each class is one of scipy's samples (its images right or wrong); BAcc is the mean of their means and Acc the
    mean weighted by their sizes. scipy resamples each sample as our stratified bootstrap resamples each class (the
    same generator calls), and its BCa takes the exact jackknife of each sample: ours with one group per image."""
    rng = np.random.default_rng(seed)
    sizes = [30, 12, 25, 8]
    targets = np.repeat(np.arange(4), sizes)
    right = rng.random(targets.size) < np.array([0.8, 0.6, 0.95, 0.4])[targets]
    predictions = np.where(right, targets, (targets + 1) % 4)
    ours = bootstrap(weighted_figures(4), targets, predictions, resamples=999, seed=seed, weighted=True,
                     method="bca", jackknife=max(sizes))  # fmt: skip
    samples = tuple(right[targets == c].astype(float) for c in range(4))
    statistics = {
        0: lambda *s, axis: np.mean([x.mean(axis=axis) for x in s], axis=0),
        1: lambda *s, axis: np.sum([x.sum(axis=axis) for x in s], axis=0) / targets.size,
    }
    for column, statistic in statistics.items():
        reference = stats.bootstrap(samples, statistic, n_resamples=999, method="BCa", vectorized=True,
                                    rng=np.random.default_rng(seed))  # fmt: skip
        np.testing.assert_allclose(np.sort(ours.samples[:, column]), np.sort(reference.bootstrap_distribution))
        assert ours.low[column] == pytest.approx(reference.confidence_interval.low, abs=1e-12)
        assert ours.high[column] == pytest.approx(reference.confidence_interval.high, abs=1e-12)
    percentile = bootstrap(weighted_figures(4), targets, predictions, resamples=999, seed=seed, weighted=True,
                           method="percentile")  # fmt: skip
    assert percentile.method == "percentile" and percentile.acceleration is None
    np.testing.assert_array_equal(percentile.samples, ours.samples)  # the same resamples, read another way


def test_bca_of_a_plain_metric_function_equals_the_vectorised_path() -> None:
    targets, predictions = scored_case(12, n=150)
    figures = weighted_figures(7)

    def plain(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        return figures(t, p, np.ones((1, t.size)))[0]

    looped = bootstrap(plain, targets, predictions, resamples=120, seed=4, method="bca", jackknife=6)
    vectorised = bootstrap(figures, targets, predictions, resamples=120, seed=4, method="bca", jackknife=6,
                           weighted=True)  # fmt: skip
    for field in ("samples", "acceleration", "low", "high"):
        np.testing.assert_allclose(getattr(looped, field), getattr(vectorised, field), rtol=0, atol=1e-12)
    assert looped.method == "bca" and (looped.acceleration != 0).all()


def test_jackknife_groups_split_each_class_and_leave_a_single_image_alone() -> None:
    targets = np.repeat(np.arange(4), [120, 7, 1, 50])
    groups = jackknife_groups(targets, groups=10, seed=3)
    members = np.concatenate(groups.members)
    assert sorted(members.tolist()) == [i for i in range(targets.size) if targets[i] != 2]  # a partition, class 2 out
    for size, label in ((120, 0), (7, 1), (50, 3)):  # strata are numbered by class
        rows = groups.strata == label
        assert rows.sum() == min(size, 10) and groups.sizes[rows].sum() == size
        assert (groups.stratum_sizes[rows] == size).all() and groups.sizes[rows].max() - groups.sizes[rows].min() <= 1
        assert all((targets[m] == label).all() for m, row in zip(groups.members, rows, strict=True) if row)
    weights = groups.keep_weights(targets.size)
    assert weights.shape == (len(groups.members), targets.size) and (weights.sum(axis=1) == 178 - groups.sizes).all()
    again = jackknife_groups(targets, groups=10, seed=3)  # seeded
    assert all(np.array_equal(a, b) for a, b in zip(groups.members, again.members, strict=True))
    with pytest.raises(ValueError, match="groups"):
        jackknife_groups(targets, groups=1)


@pytest.mark.parametrize("seed", range(4))
def test_the_grouped_jackknife_gives_the_exact_jackknifes_interval(seed: int) -> None:
    """50 groups in a class of 600 and of 150 (one image each in a class of 40) against one image each.

    BAcc's acceleration comes mostly from the small classes and agrees within 10 %; Acc's from the class of 600,
    whose skewness 50 group sums estimate more roughly, but ``a`` is small and the interval moves by a sliver.
    """
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(3), [600, 150, 40])
    predictions = np.where(rng.random(targets.size) < np.array([0.95, 0.85, 0.9])[targets], targets, (targets + 1) % 3)
    figures = weighted_figures(3)
    estimate = figures(targets, predictions, np.ones((1, targets.size)))[0]
    samples = bootstrap(figures, targets, predictions, resamples=2000, seed=seed, weighted=True).samples
    results = []
    for size in (600, 50):
        groups = jackknife_groups(targets, groups=size, seed=seed)
        a = acceleration(estimate, figures(targets, predictions, groups.keep_weights(790)), groups)
        results.append((a, *bca_interval(samples, estimate, a)))
    (exact, exact_low, exact_high), (grouped, low, high) = results
    assert (exact < 0).all()  # high recalls: the influence is skewed to the left
    assert grouped[0] == pytest.approx(exact[0], rel=0.1) and grouped[1] == pytest.approx(exact[1], rel=0.5)
    # within 2 % of the width, or one step of Acc's lattice (k / 790: the shifted level may cross a value)
    slack = np.maximum(0.02 * (exact_high - exact_low), 1 / 790 + 1e-12)
    assert (np.abs(low - exact_low) <= slack).all() and (np.abs(high - exact_high) <= slack).all()


def test_bca_of_a_statistic_that_never_moves_is_the_point_and_unknown_methods_are_refused() -> None:
    targets = np.array([0, 0, 1, 1, 1])
    result = bootstrap(weighted_figures(2), targets, targets, resamples=50, weighted=True, method="bca")
    assert result.low.tolist() == result.high.tolist() == [1.0, 1.0] and result.acceleration.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="percentile, bca"):
        bootstrap(weighted_figures(2), targets, targets, resamples=5, weighted=True, method="studentized")
    with pytest.raises(ValueError, match="percentile, bca"):
        final_metrics(targets, np.eye(2)[targets], targets, ["a", "b"], resamples=5, method="bc")


def test_bca_intervals_keep_the_metrics_json_format() -> None:
    targets, predictions = scored_case(2, n=200)
    scores = np.random.default_rng(2).dirichlet(np.ones(7), size=200)
    percentile = final_metrics(targets, scores, predictions, NAMES, resamples=300, method="percentile")
    bca = final_metrics(targets, scores, predictions, NAMES, resamples=300, method="bca")

    def shape(tree):
        if isinstance(tree, dict):
            return {key: shape(value) for key, value in tree.items()}
        return None if tree is None else len(tree)

    assert shape(bca["ci"]) == shape(percentile["ci"]) and bca["bootstrap"] == percentile["bootstrap"]
    assert bca["ci"] != percentile["ci"]  # read differently from the same resamples
    assert {key: value for key, value in bca.items() if key != "ci"} == {
        key: value for key, value in percentile.items() if key != "ci"
    }


def test_metrics_json_and_the_paired_comparisons_read_bca_intervals_by_default() -> None:
    """BCa covered better than the percentile interval in benchmarks/bootstrap_coverage.py: it is the default."""
    from sampleweight.studies.statistics import PairedBootstrap

    targets, predictions = scored_case(4, n=250)
    scores = np.eye(7)[predictions]
    default = final_metrics(targets, scores, predictions, NAMES, resamples=200)
    assert default["ci"] == final_metrics(targets, scores, predictions, NAMES, resamples=200, method="bca")["ci"]
    assert default["ci"] != final_metrics(targets, scores, predictions, NAMES, resamples=200, method="percentile")["ci"]
    assert PairedBootstrap().method == "bca"
