"""The binary (per-label) metrics against scikit-learn, the ISIC 2024 published scoring and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    auc as sk_auc,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from sampleweight.binary_metrics import (
    BINARY_METRICS,
    RANKING_METRICS,
    average_precision,
    binary_auc,
    binary_metrics,
    choose_threshold,
    label_metrics,
    partial_auc_above_tpr,
    ranking_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    thresholded_metrics,
)
from sampleweight.bootstrap import resample_counts


def isic2024_pauc(targets, scores, min_tpr=0.80, sample_weight=None) -> float:
    """The ISIC 2024 challenge's scoring as published (ISIC-Research/Challenge-2024-Metrics, PrimaryMetric-pAUC.py,
    the Kaggle competition's metric): flip labels and scores, take the ROC up to FPR 1 - min_tpr, interpolate a point
    there, trapezoid rule."""
    flipped_targets = np.abs(np.asarray(targets) - 1)
    flipped_scores = np.abs(np.asarray(scores) - 1)
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = roc_curve(flipped_targets, flipped_scores, sample_weight=sample_weight)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp, y_interp = [fpr[stop - 1], fpr[stop]], [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return float(sk_auc(fpr, tpr))


def _data(n: int, seed: int, positives: float = 0.2, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random(n) < positives).astype(int)
    targets[:2] = [0, 1]  # both classes
    scores = np.clip(rng.normal(0.35 + 0.3 * targets, 0.2), 0, 1)
    return targets, (np.round(scores, 1) if ties else scores)  # rounding makes many ties


def _points(targets, scores):
    """Every operating point ``score >= t`` (t over the distinct scores, and above all): (tpr, fpr)."""
    thresholds = np.r_[np.inf, np.unique(scores)]
    predicted = scores[None, :] >= thresholds[:, None]
    tpr = (predicted & (targets == 1)).sum(1) / (targets == 1).sum()
    fpr = (predicted & (targets == 0)).sum(1) / (targets == 0).sum()
    return thresholds, tpr, fpr


CASES = [(2, 0), (10, 1), (60, 2), (500, 3), (301, 4)]


@pytest.mark.parametrize(("n", "seed"), CASES)
@pytest.mark.parametrize("ties", [True, False])
def test_auc_pauc_and_ap_equal_scikit_learn_and_the_isic_2024_scoring(n, seed, ties) -> None:
    targets, scores = _data(n, seed, ties=ties)
    assert binary_auc(targets, scores) == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)
    assert partial_auc_above_tpr(targets, scores) == pytest.approx(isic2024_pauc(targets, scores), abs=1e-12)
    assert average_precision(targets, scores) == pytest.approx(average_precision_score(targets, scores), abs=1e-12)
    assert 0 <= partial_auc_above_tpr(targets, scores) <= 0.2
    for min_tpr in (0.0, 0.5, 0.95):
        expected = isic2024_pauc(targets, scores, min_tpr) if min_tpr else roc_auc_score(targets, scores)
        assert partial_auc_above_tpr(targets, scores, min_tpr) == pytest.approx(expected, abs=1e-12)


def test_the_isic_pauc_is_not_scikit_learns_max_fpr_auc() -> None:
    targets, scores = _data(400, 7)
    ours = partial_auc_above_tpr(targets, scores)
    assert ours != pytest.approx(roc_auc_score(targets, scores, max_fpr=0.2), abs=1e-3)
    assert ours == pytest.approx(isic2024_pauc(targets, scores), abs=1e-12)


def test_hand_made_curves() -> None:
    assert partial_auc_above_tpr([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.02)  # the diagonal
    assert binary_auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert partial_auc_above_tpr([0, 1, 1], [0.9, 0.1, 0.2]) == pytest.approx(0.0)  # every negative first
    assert partial_auc_above_tpr([0, 1], [0.1, 0.9]) == pytest.approx(0.2)


@pytest.mark.parametrize(("n", "seed"), CASES)
def test_operating_points_equal_brute_force_over_every_threshold(n, seed) -> None:
    targets, scores = _data(n, seed)
    thresholds, tpr, fpr = _points(targets, scores)
    for specificity in (0.9, 0.95, 0.5):
        expected = tpr[1 - fpr >= specificity - 1e-12].max()
        assert sensitivity_at_specificity(targets, scores, specificity) == pytest.approx(expected)
    for sensitivity in (0.95, 0.8):
        expected = (1 - fpr)[tpr >= sensitivity - 1e-12].max()
        assert specificity_at_sensitivity(targets, scores, sensitivity) == pytest.approx(expected)
    youden = thresholds[1:][np.argmax((tpr - fpr)[1:])]
    assert choose_threshold(targets, scores) == youden
    target = 0.9
    sensitive = thresholds[1:][(1 - fpr)[1:] >= target - 1e-12]
    chosen = choose_threshold(targets, scores, target)
    if sensitive.size:
        assert chosen == sensitive.min()
    else:
        assert chosen > scores.max()
    bacc, f1, sens, spec = thresholded_metrics(targets, scores, chosen)
    assert sens == pytest.approx(predicted_positive_rate(targets, scores, chosen))
    predicted = (scores >= chosen).astype(int)
    assert bacc == pytest.approx(balanced_accuracy_score(targets, predicted))
    assert f1 == pytest.approx(f1_score(targets, predicted, zero_division=0))
    assert spec >= target - 1e-12 or not sensitive.size


@pytest.mark.parametrize(("n", "seed"), [(40, 0), (333, 1)])
def test_weighted_rows_equal_the_images_drawn_again(n, seed) -> None:
    targets, scores = _data(n, seed)
    counts = resample_counts(targets, 25, seed)
    table = ranking_metrics(targets, scores, counts)
    at = thresholded_metrics(targets, scores, 0.5, counts)
    assert table.shape == (25, len(RANKING_METRICS)) and at.shape == (25, 4)
    for row, drawn in enumerate(counts[:6]):
        t, s = np.repeat(targets, drawn), np.repeat(scores, drawn)
        np.testing.assert_allclose(table[row], ranking_metrics(t, s), atol=1e-12)
        np.testing.assert_allclose(at[row], thresholded_metrics(t, s, 0.5), atol=1e-12)
        assert table[row, 0] == pytest.approx(roc_auc_score(targets, scores, sample_weight=drawn))
        assert table[row, 1] == pytest.approx(isic2024_pauc(targets, scores, sample_weight=drawn))
        assert table[row, 2] == pytest.approx(average_precision_score(targets, scores, sample_weight=drawn))


def test_one_class_has_no_figures_and_no_intervals() -> None:
    assert np.isnan(binary_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert np.isnan(ranking_metrics([0, 0], [0.2, 0.5])).all()
    assert np.isnan(choose_threshold([0, 0], [0.2, 0.5]))
    figures = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3], resamples=50)
    assert all(figures[name] is None for name in BINARY_METRICS) and "ci" not in figures
    # a resample without one class (no stratification) is NaN in that row, the others are scored
    weights = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    auc = binary_auc([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.9], weights)
    assert np.isnan(auc[0]) and auc[1] == 0.75


def test_binary_metrics_record_the_threshold_and_intervals_around_the_estimate() -> None:
    targets, scores = _data(300, 5)
    figures = binary_metrics(targets, scores, resamples=300, method="percentile")
    assert figures["threshold"] == choose_threshold(targets, scores) and figures["threshold_rule"] == "youden"
    assert figures["positives"] == int(targets.sum()) and figures["n"] == 300
    assert figures["auc"] == pytest.approx(roc_auc_score(targets, scores))
    for name in BINARY_METRICS:
        low, high = figures["ci"][name]
        assert low <= figures[name] + 1e-9 and figures[name] <= high + 1e-9, name
    given = binary_metrics(targets, scores, threshold=0.5, resamples=0)
    assert given["threshold"] == 0.5 and given["threshold_rule"] == "given" and "ci" not in given
    assert given["bacc"] == pytest.approx(balanced_accuracy_score(targets, (scores >= 0.5).astype(int)))
    with pytest.raises(ValueError, match="target specificity"):
        choose_threshold(targets, scores, "max")


def test_label_metrics_score_each_label_and_average_those_that_have_figures() -> None:
    a, sa = _data(80, 1)
    b, sb = _data(80, 2)
    absent = np.zeros(80, dtype=int)  # a label with no positives: no figures, left out of the means
    targets, scores = np.stack([a, b, absent], 1), np.stack([sa, sb, sb], 1)
    result = label_metrics(targets, scores, ["A", "B", "C"], resamples=40)
    assert result["per_label"]["A"]["auc"] == pytest.approx(roc_auc_score(a, sa))
    assert result["per_label"]["C"]["auc"] is None
    assert result["mean"]["auc"] == pytest.approx((roc_auc_score(a, sa) + roc_auc_score(b, sb)) / 2)
    assert result["mean"]["pauc"] == pytest.approx((isic2024_pauc(a, sa) + isic2024_pauc(b, sb)) / 2)
    with pytest.raises(ValueError, match="L = 2 labels"):
        label_metrics(targets, scores, ["A", "B"])


def predicted_positive_rate(targets: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Sensitivity by counting: the share of positives scored at or above the threshold."""
    return float((scores[targets == 1] >= threshold).mean())


def test_paired_comparisons_take_auc_pauc_and_ap_of_a_class_and_a_multiclass_run_as_one_vs_rest() -> None:
    from sampleweight.studies.statistics import PairedBootstrap, Predictions, metric_values

    rng = np.random.default_rng(3)
    targets = rng.integers(0, 3, 200)
    scores = rng.dirichlet(np.ones(3), 200) + np.eye(3)[targets] * 0.3
    scores /= scores.sum(1, keepdims=True)
    images = tuple(f"img{i:03d}" for i in range(200))
    multiclass = Predictions(images, targets, scores.argmax(1), scores, ("MEL", "NV", "BCC"))
    binary = multiclass.one_vs_rest("MEL")
    assert binary.classes == ("rest", "MEL") and binary.targets.tolist() == (targets == 0).astype(int).tolist()
    values = metric_values(
        binary.targets, binary.predicted, binary.classes, ["auc:MEL", "pauc:MEL", "ap:MEL"], scores=binary.scores
    )
    assert values[0] == pytest.approx(roc_auc_score(targets == 0, scores[:, 0]))
    assert values[1] == pytest.approx(isic2024_pauc((targets == 0).astype(int), scores[:, 0]))
    assert values[2] == pytest.approx(average_precision_score(targets == 0, scores[:, 0]))
    counts = resample_counts(binary.targets, 5, seed=1)  # each resample: scikit-learn on the images drawn
    drawn = metric_values(binary.targets, binary.predicted, binary.classes, ["ap:MEL"], counts, binary.scores)
    for row, count in zip(drawn, counts, strict=True):
        index = np.repeat(np.arange(200), count)
        assert row[0] == pytest.approx(average_precision_score(targets[index] == 0, scores[index, 0]))
    worse = Predictions(images, binary.targets, binary.predicted, binary.scores[:, ::-1].copy(), binary.classes)
    comparison = PairedBootstrap(["auc:MEL", "pauc:MEL"], resamples=200, method="percentile").compare(
        {(0, 0): binary}, {(0, 0): worse}
    )
    auc = comparison.pooled[0]
    assert auc.estimate == pytest.approx(2 * values[0] - 1) and auc.low > 0 and auc.p < 0.05
