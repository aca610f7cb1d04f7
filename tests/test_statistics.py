"""Many-run statistics: paired bootstrap differences against a slow loop, pooling, Holm, the spread of a cell."""

from __future__ import annotations

import statistics as stdlib_statistics
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats  # scikit-learn's own dependency: an independent BCa to check ours against
from sklearn import metrics as skm

import sampleweight as sw
from sampleweight.bootstrap import bca_interval, resample_counts
from sampleweight.studies.statistics import (
    PairedBootstrap,
    Predictions,
    bca_p_value,
    bootstrap_p_value,
    describe,
    holm,
    holm_family,
    image_set_entropy,
)

CLASSES = ("MEL", "NV", "BCC", "DF")


def run(targets: np.ndarray, predicted: np.ndarray, prefix: str = "img") -> Predictions:
    images = tuple(f"{prefix}{i:04d}" for i in range(targets.size))
    return Predictions(images, targets, predicted, np.eye(len(CLASSES))[predicted], CLASSES)


def case(seed: int, n: int = 400, skill: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.choice(len(CLASSES), size=n, p=[0.2, 0.6, 0.15, 0.05])
    return targets, np.where(rng.random(n) < skill, targets, rng.integers(0, len(CLASSES), size=n))


def test_a_run_against_itself_differs_by_nothing() -> None:
    runs = {(split, 0): run(*case(split)) for split in (0, 1)}
    comparison = PairedBootstrap(resamples=300).compare(runs, runs)
    for difference in [*comparison.pooled, *(d for pair in comparison.per_pair.values() for d in pair)]:
        assert (difference.estimate, difference.low, difference.high, difference.p) == (0.0, 0.0, 0.0, 1.0)
    assert comparison.pooled[0].pairs == 2 and not any(d.significant for d in holm_family(comparison.pooled))


def test_a_good_predictor_clearly_beats_a_chance_level_one() -> None:
    good, chance = {}, {}
    for split in (0, 1):
        targets, predicted = case(split, skill=0.85)
        good[(split, 0)] = run(targets, predicted)
        chance[(split, 0)] = run(targets, np.random.default_rng(10 + split).integers(0, 4, size=targets.size))
    comparison = PairedBootstrap(resamples=500).compare(good, chance)
    for difference in holm_family(comparison.pooled):
        assert difference.estimate > 0.2 and difference.low > 0 and difference.p < 0.01 and difference.significant
    reverse = PairedBootstrap(resamples=500).compare(chance, good)
    assert all(d.high < 0 for d in reverse.pooled)


def test_one_pair_equals_an_independent_slow_loop_over_the_same_resamples() -> None:
    targets, predicted_a = case(3, n=150)
    predicted_b = np.where(np.random.default_rng(4).random(150) < 0.3, 1, predicted_a)  # B predicts NV more
    comparison = PairedBootstrap(resamples=80, seed=5, method="percentile").compare({(1, 2): run(targets, predicted_a)},
                                                              {(1, 2): run(targets, predicted_b)})  # fmt: skip
    images = run(targets, predicted_a).images  # already sorted: the draws are seeded by the image set
    counts = resample_counts(targets, 80, np.random.SeedSequence([5, 0, *image_set_entropy(images, targets)]))
    labels = np.unique(targets)
    rows = []
    for row in counts:
        drawn = np.repeat(np.arange(targets.size), row)
        t, a, b = targets[drawn], predicted_a[drawn], predicted_b[drawn]
        rows.append([
            skm.accuracy_score(t, a) - skm.accuracy_score(t, b),
            skm.recall_score(t, a, labels=labels, average="macro")
            - skm.recall_score(t, b, labels=labels, average="macro"),
            skm.precision_score(t, a, labels=labels, average="macro", zero_division=0)
            - skm.precision_score(t, b, labels=labels, average="macro", zero_division=0),
            skm.f1_score(t, a, labels=labels, average="macro", zero_division=0)
            - skm.f1_score(t, b, labels=labels, average="macro", zero_division=0),
        ])  # fmt: skip
    slow = np.array(rows)
    for i, difference in enumerate(comparison.pooled):
        assert difference.low == pytest.approx(np.quantile(slow[:, i], 0.025), abs=1e-12)
        assert difference.high == pytest.approx(np.quantile(slow[:, i], 0.975), abs=1e-12)
        below, above = (slow[:, i] <= 0).sum(), (slow[:, i] >= 0).sum()
        assert difference.p == pytest.approx(min(1.0, 2 * min(below + 1, above + 1) / 81))
    assert comparison.pooled[0].estimate == pytest.approx(
        np.mean(predicted_a == targets) - np.mean(predicted_b == targets)
    )


def test_pooling_averages_the_pairs_and_widens_when_they_disagree() -> None:
    targets0, predicted0 = case(0)
    targets1, predicted1 = case(1)
    worse0 = np.where(np.random.default_rng(0).random(targets0.size) < 0.4, 1, predicted0)  # much worse on split 0
    worse1 = np.where(np.random.default_rng(1).random(targets1.size) < 0.02, 1, predicted1)  # about as good on split 1
    a = {(0, 0): run(targets0, predicted0), (1, 0): run(targets1, predicted1)}
    b = {(0, 0): run(targets0, worse0), (1, 0): run(targets1, worse1)}
    comparison = PairedBootstrap(resamples=1000).compare(a, b)
    pooled = comparison.pooled[1]  # BAcc
    split0, split1 = comparison.per_pair[(0, 0)][1], comparison.per_pair[(1, 0)][1]
    assert pooled.estimate == pytest.approx((split0.estimate + split1.estimate) / 2)
    # the run-to-run level: the pooled interval reaches from about one pair's difference to the other's
    assert pooled.high - pooled.low > max(split0.high - split0.low, split1.high - split1.low)
    assert pooled.low < split1.high and pooled.high > split0.low


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_keys_scored_on_the_same_images_share_their_resamples_and_other_images_do_not(method: str) -> None:
    targets, predicted = case(5)
    _, other = case(6)
    a, b = run(targets, predicted), run(targets, other)
    single = PairedBootstrap(resamples=300, method=method).compare({(0, 0): a}, {(0, 0): b})
    # the same two runs again under other seeds (the same images): the pooled interval is the single pair's,
    # since every key draws the image set's resamples (keyed by split/seed, it came out narrower)
    copies = PairedBootstrap(resamples=300, method=method).compare(
        {(0, s): a for s in range(4)}, {(0, s): b for s in range(4)}
    )
    assert copies.pooled == tuple(replace(d, pairs=4) for d in single.pooled)
    assert all(pair == single.pooled for pair in copies.per_pair.values())
    # the same predictions on other images (another split): drawn independently, so the intervals differ
    renamed = PairedBootstrap(resamples=300, method=method).compare(
        {(0, 0): a, (1, 0): run(targets, predicted, "x")}, {(0, 0): b, (1, 0): run(targets, other, "x")}
    )
    assert renamed.per_pair[(0, 0)] == single.pooled and renamed.per_pair[(1, 0)] != single.pooled
    assert renamed.pooled[1].high - renamed.pooled[1].low < single.pooled[1].high - single.pooled[1].low


def seeds_on_one_image_set(draw: int, seeds: int = 4, n: int = 400) -> tuple[dict, dict]:
    """Two equally good setups, ``seeds`` runs each, all scored on one image set (a fixed validation or test set).

    Each setup has its own easy and hard images (the same images stay easy across its seeds: 95 % right against
    5 %, mixed to each class's recall), so its seeds mostly agree, as real reruns do, and the setups differ
    image by image with no difference in expectation.
    """
    rng = np.random.default_rng([2023, draw])
    targets = rng.choice(len(CLASSES), size=n, p=[0.2, 0.6, 0.15, 0.05])
    recall = np.array([0.6, 0.9, 0.7, 0.5])[targets]
    setups: list[dict] = []
    for _ in range(2):
        easy = rng.random(n) < (recall - 0.05) / 0.9
        right = np.where(easy, 0.95, 0.05)
        runs = {}
        for seed in range(seeds):
            wrong = (targets + rng.integers(1, len(CLASSES), size=n)) % len(CLASSES)
            runs[(0, seed)] = run(targets, np.where(rng.random(n) < right, targets, wrong))
        setups.append(runs)
    return setups[0], setups[1]


def test_pooling_seeds_scored_on_one_image_set_keeps_the_false_positive_rate() -> None:
    """Issue 23: keyed by (split, seed), 4 seeds on one image set were pooled as 4 independent image samples.

    Equal setups, 200 draws (fixed seeds): the pooled test's false-positive rate at p < 0.05 was 0.115 (BAcc)
    and 0.09 (Acc) when each key drew its own resamples; keyed by the images it is 0.035 and 0.025. The percentile
    interval keeps this fast: the resamples are what changed, and BCa reads the same ones
    (``benchmarks/paired_pooling.py`` has both).
    """
    p_values = []
    for draw in range(200):
        a, b = seeds_on_one_image_set(draw)
        bootstrap = PairedBootstrap(("bacc", "acc"), resamples=199, seed=draw, method="percentile")
        p_values.append([d.p for d in bootstrap.compare(a, b).pooled])
    false_positive = (np.array(p_values) < 0.05).mean(axis=0)
    assert (false_positive <= 0.06).all(), false_positive


def test_runs_are_matched_by_image_id_and_other_images_are_refused() -> None:
    targets, predicted = case(7, n=120)
    _, other = case(8, n=120)
    a, b = run(targets, predicted), run(targets, other)
    order = np.random.default_rng(0).permutation(120)
    shuffled = Predictions(tuple(b.images[i] for i in order), b.targets[order], b.predicted[order], b.scores[order],
                           CLASSES)  # fmt: skip
    as_written = PairedBootstrap(resamples=200).compare({0: a}, {0: b})
    assert PairedBootstrap(resamples=200).compare({0: a}, {0: shuffled}).pooled == as_written.pooled
    with pytest.raises(sw.ConfigError, match="different images"):
        PairedBootstrap(resamples=10).compare({0: a}, {0: run(targets, other, prefix="x")})
    with pytest.raises(sw.ConfigError, match="no pair of runs"):
        PairedBootstrap(resamples=10).compare({0: a}, {1: b})
    partial = PairedBootstrap(resamples=10).compare({0: a, 1: a}, {0: b})
    assert partial.unpaired == (1,) and partial.pooled[0].pairs == 1


@pytest.mark.parametrize("seed", range(3))
def test_one_pair_bca_equals_scipys_bca_of_the_per_class_differences(seed: int) -> None:
    """Per class, each image's A-right minus B-right (-1, 0, 1) is one of scipy's samples; the BAcc difference is
    the mean of their means, the Acc difference their mean weighted by size. The pair's image set seeds the draws.

    Class sizes are powers of 2, so both sides compute every value exactly and agree on which resamples tie with
    the estimate (scipy compares floats exactly; ours allows for the last bits).
    """
    targets = np.repeat(np.arange(4), [32, 16, 8, 8])
    rng = np.random.default_rng(seed)
    right_a = rng.random(targets.size) < np.array([0.8, 0.5, 0.9, 0.6])[targets]
    right_b = np.where(rng.random(targets.size) < 0.7, right_a, rng.random(targets.size) < 0.6)
    a = run(targets, np.where(right_a, targets, (targets + 1) % 4))
    b = run(targets, np.where(right_b, targets, (targets + 2) % 4))
    comparison = PairedBootstrap(("bacc", "acc"), resamples=999, seed=seed, method="bca", jackknife=32).compare(
        {(0, 0): a}, {(0, 0): b}
    )
    samples = tuple((right_a[targets == c].astype(float) - right_b[targets == c]) for c in range(4))
    statistics = (
        lambda *s, axis: np.mean([x.mean(axis=axis) for x in s], axis=0),
        lambda *s, axis: np.sum([x.sum(axis=axis) for x in s], axis=0) / targets.size,
    )
    draws = np.random.SeedSequence([seed, 0, *image_set_entropy(a.images, targets)])
    for difference, statistic in zip(comparison.pooled, statistics, strict=True):
        reference = stats.bootstrap(samples, statistic, n_resamples=999, method="BCa", vectorized=True,
                                    rng=np.random.default_rng(draws))  # fmt: skip
        assert difference.low == pytest.approx(reference.confidence_interval.low, abs=1e-12)
        assert difference.high == pytest.approx(reference.confidence_interval.high, abs=1e-12)
        assert difference.estimate == pytest.approx(statistic(*samples, axis=-1))


def test_the_bca_p_value_is_the_level_at_which_the_bca_interval_reaches_zero() -> None:
    samples = np.random.default_rng(0).gamma(2.0, 1.0, size=20000)[:, None] - 0.6  # skewed, mostly above 0
    estimate = np.array([1.3])
    for a in (0.0, 0.08, -0.05):
        p = float(bca_p_value(samples, estimate, np.array([a]))[0])
        assert 0.01 < p < 0.5
        low_narrower = bca_interval(samples, estimate, np.array([a]), level=1 - p - 0.005)[0][0]
        low_wider = bca_interval(samples, estimate, np.array([a]), level=1 - p + 0.005)[0][0]
        assert low_narrower > 0 > low_wider, (a, p)
    symmetric = np.r_[np.linspace(-1, 3, 200), np.linspace(-1, 3, 200)][:, None]  # median 1 = the estimate: z0 = 0
    np.testing.assert_allclose(bca_p_value(symmetric, np.array([1.0]), np.array([0.0])), bootstrap_p_value(symmetric))


def test_holm_and_the_p_value_against_hand_computations() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept monotone: 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    assert bootstrap_p_value(np.full(99, 0.3)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.r_[np.full(90, 0.3), np.full(9, -0.1)]) == pytest.approx(2 * 10 / 100)
    assert bootstrap_p_value(np.zeros(10)) == 1.0


def test_describe_is_mean_sample_sd_n_and_range() -> None:
    values = [0.61, 0.72, 0.65, 0.70]
    spread = describe(values)
    assert spread.mean == pytest.approx(np.mean(values)) and spread.sd == pytest.approx(stdlib_statistics.stdev(values))
    assert (spread.n, spread.low, spread.high) == (4, 0.61, 0.72)
    assert describe([0.5]).sd == 0.0


LABELS = ("melanocytic", "NV", "MEL", "DF", "none_here")


def multilabel_case(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 targets [N, 5] (the last label never positive), and two runs' sigmoid scores, B noisier than A."""
    rng = np.random.default_rng(seed)
    nv, mel, df = rng.random(n) < 0.5, rng.random(n) < 0.2, np.arange(n) < 2  # DF: a rare label, two positives
    targets = np.stack([nv | mel, nv, mel, df, np.zeros(n, bool)], axis=1).astype(np.int64)
    a = np.clip(0.6 * targets + 0.5 * rng.random(targets.shape), 0, 1)
    b = np.clip(0.3 * targets + 0.8 * rng.random(targets.shape), 0, 1)
    return targets, a, b


def mean_over_labels(targets: np.ndarray, scores: np.ndarray, score) -> float:
    """scikit-learn's figure of each label that has both classes, averaged over those labels."""
    found = [
        score(targets[:, i], scores[:, i]) for i in range(targets.shape[1]) if 0 < targets[:, i].sum() < len(targets)
    ]
    return float(np.mean(found)) if found else float("nan")


def test_mean_ranked_metrics_average_each_labels_figure_over_the_labels_with_both_classes() -> None:
    from sampleweight.binary_metrics import partial_auc_above_tpr
    from sampleweight.studies.statistics import MEAN_RANKED, metric_values

    targets, scores, _ = multilabel_case(0)
    predicted = (scores >= 0.5).astype(np.int64)
    values = metric_values(targets, predicted, LABELS, [*MEAN_RANKED, "auc:MEL", "ap:DF"], scores=scores)
    expected = [mean_over_labels(targets, scores, f) for f in (skm.roc_auc_score, partial_auc_above_tpr,
                                                              skm.average_precision_score)]  # fmt: skip
    assert values[:3] == pytest.approx(expected) and 0 < values[1] < 0.2
    assert values[3] == pytest.approx(skm.roc_auc_score(targets[:, 2], scores[:, 2]))
    assert values[4] == pytest.approx(skm.average_precision_score(targets[:, 3], scores[:, 3]))
    # unstratified resamples: DF (2 positives) leaves some of them, whose means are over the other three labels
    counts = resample_counts(targets[:, 0], 40, seed=3, stratify=False)
    drawn = metric_values(targets, predicted, LABELS, MEAN_RANKED, counts, scores)
    left_out = 0
    for row, count in zip(drawn, counts, strict=True):
        index = np.repeat(np.arange(len(targets)), count)
        left_out += targets[index, 3].sum() == 0
        assert row[0] == pytest.approx(mean_over_labels(targets[index], scores[index], skm.roc_auc_score))
        assert row[2] == pytest.approx(mean_over_labels(targets[index], scores[index], skm.average_precision_score))
    assert left_out > 0
    # a multiclass run's mean_auc is the macro one-vs-rest AUC
    classes, probabilities = case(1)[0], np.random.default_rng(1).dirichlet(np.ones(4), 400)
    macro = metric_values(classes, probabilities.argmax(1), CLASSES, ["mean_auc"], scores=probabilities)[0]
    assert macro == pytest.approx(skm.roc_auc_score(classes, probabilities, multi_class="ovr", average="macro"))
    one_class = np.zeros_like(targets)  # no label has both classes: no mean (NaN), not a number made up
    assert np.isnan(metric_values(one_class, predicted, LABELS, MEAN_RANKED, scores=scores)).all()
    single = metric_values(targets[:1], predicted[:1], LABELS, ["mean_auc"], scores=scores[:1])  # one image
    assert np.isnan(single).all()
    with pytest.raises(sw.ConfigError, match=r"a multilabel run is compared on the scores of its labels: .* not bacc"):
        metric_values(targets, predicted, LABELS, ["mean_auc", "bacc"], scores=scores)


def test_multilabel_predictions_read_their_label_sets_and_strata_are_each_images_rarest_label(tmp_path) -> None:
    from sampleweight.data.records import DatasetRecords
    from sampleweight.data.splits import split_strata
    from sampleweight.studies.statistics import label_strata

    path = tmp_path / "predictions.csv"
    path.write_text("image,true,pred,A,B,C\nx1,A;C,A,0.9,0.1,0.4\nx2,,B,0.2,0.7,0.1\nx3,B,,0.3,0.4,0.2\n")
    scored = Predictions.read(path, multilabel=True)
    assert scored.multilabel and scored.classes == ("A", "B", "C") and scored.images == ("x1", "x2", "x3")
    assert scored.targets.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert scored.predicted.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    column = scored.one_vs_rest("C")
    assert column.targets.tolist() == [1, 0, 0] and column.scores[:, 1].tolist() == [0.4, 0.1, 0.2]
    with pytest.raises(sw.ConfigError, match="a multilabel run's labels are scored one at a time"):
        scored.one_vs_rest(["A", "C"])
    path.write_text("image,true,pred,A,B\nx1,A;D,A,0.9,0.1\n")
    with pytest.raises(sw.ConfigError, match="names the label 'D', which has no score column"):
        Predictions.read(path, multilabel=True)
    targets = multilabel_case(2)[0]
    records = DatasetRecords(tuple(map(str, range(len(targets)))), targets, tuple(map(str, range(len(targets)))),
                             LABELS, "x", render=lambda size: np.zeros((1, size, size, 3), np.uint8))  # fmt: skip
    assert label_strata(targets).tolist() == split_strata(records).tolist()
    assert label_strata(np.array([2, 0, 1])).tolist() == [2, 0, 1]


def test_multilabel_runs_are_compared_paired_on_the_mean_of_their_labels_figures() -> None:
    from sampleweight.studies.statistics import MEAN_RANKED, label_strata

    targets, scores_a, scores_b = multilabel_case(4)
    images = tuple(f"img{i:04d}" for i in range(len(targets)))
    a = Predictions(images, targets, (scores_a >= 0.5).astype(np.int64), scores_a, LABELS)
    b = Predictions(images, targets, (scores_b >= 0.5).astype(np.int64), scores_b, LABELS)
    stats = PairedBootstrap(MEAN_RANKED, resamples=60, seed=2, method="percentile")
    comparison = stats.compare({(0, 0): a}, {(0, 0): b})
    assert [d.metric for d in comparison.pooled] == list(MEAN_RANKED)
    # the same resamples by hand: stratified by each image's rarest label, scikit-learn on the images drawn
    strata = label_strata(targets)
    counts = resample_counts(strata, 60, np.random.SeedSequence([2, 0, *image_set_entropy(images, targets)]))
    slow = []
    for row in counts:
        index = np.repeat(np.arange(len(targets)), row)
        slow.append([mean_over_labels(targets[index], s[index], score) for score in (skm.roc_auc_score,
                     skm.average_precision_score) for s in (scores_a, scores_b)])  # fmt: skip
    slow = np.array(slow)
    auc, ap = slow[:, 0] - slow[:, 1], slow[:, 2] - slow[:, 3]
    for difference, resampled, score in ((comparison.pooled[0], auc, skm.roc_auc_score),
                                         (comparison.pooled[2], ap, skm.average_precision_score)):  # fmt: skip
        expected = mean_over_labels(targets, scores_a, score) - mean_over_labels(targets, scores_b, score)
        assert difference.estimate == pytest.approx(expected) and difference.estimate > 0.1
        assert (difference.low, difference.high) == pytest.approx(
            (np.quantile(resampled, 0.025), np.quantile(resampled, 0.975)), abs=1e-12
        )
    for stratum in np.unique(strata):  # every resample keeps each stratum's count
        assert (counts[:, strata == stratum].sum(1) == (strata == stratum).sum()).all()
    same = PairedBootstrap(MEAN_RANKED, resamples=60).compare({(0, 0): a}, {(0, 0): a})  # BCa, itself: nothing
    assert all((d.estimate, d.low, d.high, d.p) == (0.0, 0.0, 0.0, 1.0) for d in same.pooled)


def test_a_multiclass_run_on_its_label_trees_nodes_sums_each_nodes_classes() -> None:
    from sampleweight.taxonomy import Taxonomy

    tree = Taxonomy({"x": ["a", "b"], "y": ["c", "d"]}, classes=["d", "a", "c", "b"])  # labels x, y, a, b, c, d
    rng = np.random.default_rng(3)
    scores = rng.dirichlet(np.ones(4), size=12)
    targets, predicted = rng.integers(0, 4, 12), scores.argmax(1)
    run = Predictions(tuple(f"i{k}" for k in range(12)), targets, predicted, scores, ("d", "a", "c", "b"))
    nodes = run.on_label_tree(tree)
    assert nodes.classes == ("x", "y", "a", "b", "c", "d") and nodes.multilabel
    by_name = {name: scores[:, i] for i, name in enumerate(run.classes)}  # independent: sums by name
    expected = np.stack([by_name["a"] + by_name["b"], by_name["c"] + by_name["d"], by_name["a"], by_name["b"],
                         by_name["c"], by_name["d"]], axis=1)  # fmt: skip
    np.testing.assert_allclose(nodes.scores, expected)
    names = np.array(run.classes)
    for row, label in zip(nodes.targets, names[targets], strict=True):
        assert {nodes.classes[i] for i in np.flatnonzero(row)} == {label, "x" if label in "ab" else "y"}
    assert (nodes.predicted.sum(1) == 2).all()  # the decided class and its parent
    with pytest.raises(sw.ConfigError, match="on a label tree of its own classes"):
        nodes.on_label_tree(tree)
