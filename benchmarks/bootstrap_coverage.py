"""How often the 95 % intervals of ``metrics.json`` contain the true value: percentile against BCa.

A simulated validation side in the HAM10000 proportions (NV 67 %, MEL 11 %, BKL 11 %, BCC 5 %, AKIEC 3 %,
VASC 1.4 %, DF 1.1 %: at 1,500 images DF has 17 and VASC 21), every class with a fixed count, and a
classifier with a known recall per class (`PROFILES`: ``ce``, a plain cross-entropy model's pattern, high
on NV and low on DF; ``balanced``, a rebalanced model's, high on the small classes) whose mistakes go to
the other classes in proportion to their shares. The truth is known: BAcc is the mean of the recalls,
Acc their mean weighted by the class shares, a class's precision its share of the expected predictions
of that class, F1 from those. Each draw scores a new set of predictions, bootstraps it as
``metrics.json`` does (`sampleweight.bootstrap.bootstrap`: stratified, 2,000 resamples, vectorised
confusion matrices) and reads both intervals from the same resamples: the percentile interval and the
BCa interval (its acceleration from the stratified delete-a-group jackknife, 50 groups per class;
``--exact`` adds BCa with the exact leave-one-out jackknife, one group per image, to compare).

Reported per metric and method: the coverage with its 95 % Wilson interval over the draws, the misses
on each side (truth below the interval, above it), the mean width, and for BCa against percentile the
draws where only one of them covers (with an exact two-sided sign test on those). The cost of each
method is timed on one draw through `sampleweight.metrics.metric_intervals` with the AUCs (what a run's
``metrics.json`` computes), median of ``--timing-rounds``. Run from the repository root:

    python benchmarks/bootstrap_coverage.py --draws 2000 --exact         # the plain model, exact jackknife too
    python benchmarks/bootstrap_coverage.py --draws 2000 --profile balanced
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sampleweight.bootstrap import acceleration, bca_interval, bootstrap, jackknife_groups, percentile_interval
from sampleweight.metrics import INTERVAL_METRICS, confusion_matrix, confusion_metrics, metric_intervals

from benchtools import default_out, finish

DEFAULT_OUT = default_out("bootstrap_coverage")
NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
SHARES = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.011, 0.014])
"""The class shares of the issue (HAM10000's, rounded: 1,113 / 6,705 / 514 / 327 / 1,099 / 115 / 142 of 10,015)."""
PROFILES = {
    "ce": np.array([0.60, 0.92, 0.70, 0.55, 0.65, 0.45, 0.80]),
    "balanced": np.array([0.65, 0.80, 0.80, 0.70, 0.70, 0.85, 0.90]),
}
"""The simulated classifier's recall per class (`NAMES` order): a plain model's and a rebalanced model's pattern."""
RECALL = PROFILES["ce"]
METRICS = [*INTERVAL_METRICS, "recall DF", "recall VASC"]


def class_counts(images: int) -> np.ndarray:
    """Images per class at ``images`` images (rounded shares; DF 17 and VASC 21 at 1,500)."""
    return np.maximum(1, np.round(SHARES / SHARES.sum() * images)).astype(np.int64)


def confusion_probabilities(recall: np.ndarray = RECALL) -> np.ndarray:
    """P(predicted = j | true = i) [C, C]: the recall on the diagonal, the rest by the other classes' shares."""
    off = np.tile(SHARES, (len(NAMES), 1))
    np.fill_diagonal(off, 0.0)
    off *= ((1 - recall) / off.sum(axis=1))[:, None]
    return off + np.diag(recall)


def true_values(counts: np.ndarray, recall: np.ndarray = RECALL) -> np.ndarray:
    """The population value of each of `METRICS` for the class mix ``counts``."""
    expected = confusion_metrics(confusion_probabilities(recall) * (counts / counts.sum())[:, None])
    figures = [float(expected[m]) for m in INTERVAL_METRICS]
    return np.array([*figures, recall[NAMES.index("DF")], recall[NAMES.index("VASC")]])


def draw_predictions(
    counts: np.ndarray, rng: np.random.Generator, recall: np.ndarray = RECALL
) -> tuple[np.ndarray, np.ndarray]:
    targets = np.repeat(np.arange(len(NAMES)), counts)
    cumulative = confusion_probabilities(recall).cumsum(axis=1)[targets]
    predictions = (rng.random(targets.size)[:, None] > cumulative).sum(axis=1)
    return targets, np.minimum(predictions, len(NAMES) - 1)


def figures(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`METRICS` of each row of ``weights`` (a weighted confusion matrix per row)."""
    scored = confusion_metrics(confusion_matrix(targets, predictions, len(NAMES), weights))
    recall = scored["recall"][..., [NAMES.index("DF"), NAMES.index("VASC")]]
    return np.concatenate([np.stack([scored[m] for m in INTERVAL_METRICS], axis=-1), recall], axis=-1)


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion."""
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test of ``wins`` against ``losses`` (ties left out)."""
    total = wins + losses
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2**total
    return min(1.0, 2 * tail)


def timing(counts: np.ndarray, recall: np.ndarray, resamples: int, rounds: int) -> dict[str, float]:
    """Seconds of `metric_intervals` with the AUCs (what metrics.json computes) per method, median of ``rounds``."""
    rng = np.random.default_rng(12345)
    targets, predictions = draw_predictions(counts, rng, recall)
    draws = rng.gamma(1 + 3 * np.eye(len(NAMES))[predictions])  # scores leaning to the prediction
    scores = draws / draws.sum(axis=1, keepdims=True)
    seconds: dict[str, list[float]] = {"percentile": [], "bca": []}
    for _ in range(rounds):
        for method in seconds:
            start = time.perf_counter()
            metric_intervals(targets, predictions, NAMES, scores=scores, resamples=resamples, method=method)
            seconds[method].append(time.perf_counter() - start)
    return {method: statistics.median(values) for method, values in seconds.items()}


def run(
    images: int, draws: int, resamples: int, level: float, seed: int, exact: bool, rounds: int, profile: str = "ce"
) -> dict:
    counts, recall = class_counts(images), PROFILES[profile]
    truth = true_values(counts, recall)
    methods = ["percentile", "bca", *(["bca exact"] if exact else [])]
    below = {m: np.zeros((draws, len(METRICS)), dtype=bool) for m in methods}
    above = {m: np.zeros((draws, len(METRICS)), dtype=bool) for m in methods}
    width = {m: np.zeros((draws, len(METRICS))) for m in methods}
    endpoint_gap = np.zeros((draws, len(METRICS)))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for draw in range(draws):
        targets, predictions = draw_predictions(counts, rng, recall)
        result = bootstrap(figures, targets, predictions, resamples=resamples, seed=draw, level=level,
                           weighted=True, method="bca")  # fmt: skip
        intervals = {"percentile": percentile_interval(result.samples, level), "bca": (result.low, result.high)}
        if exact:
            groups = jackknife_groups(targets, groups=int(counts.max()))  # one image per group: leave-one-out
            deleted = figures(targets, predictions, groups.keep_weights(targets.size))
            low, high = bca_interval(result.samples, result.estimate, acceleration(result.estimate, deleted, groups))
            intervals["bca exact"] = (low, high)
            endpoint_gap[draw] = np.maximum(np.abs(low - result.low), np.abs(high - result.high))
        for method, (low, high) in intervals.items():
            below[method][draw], above[method][draw] = truth < low, truth > high
            width[method][draw] = high - low
    seconds = time.perf_counter() - start
    results = []
    for i, metric in enumerate(METRICS):
        covered = {m: ~(below[m][:, i] | above[m][:, i]) for m in methods}
        for method in methods:
            hits = int(covered[method].sum())
            low, high = wilson(hits, draws)
            row = {
                "metric": metric,
                "method": method,
                "coverage": hits / draws,
                "coverage_low": low,
                "coverage_high": high,
                "truth_below": int(below[method][:, i].sum()),
                "truth_above": int(above[method][:, i].sum()),
                "mean_width": float(width[method][:, i].mean()),
            }
            if method != "percentile":
                wins = int((covered[method] & ~covered["percentile"]).sum())
                losses = int((~covered[method] & covered["percentile"]).sum())
                row.update(only_this_covers=wins, only_percentile_covers=losses, sign_test_p=sign_test(wins, losses))
            if method == "bca exact":  # the grouped jackknife's BCa against the exact one's
                row["coverage_differs_from_bca"] = int((covered[method] != covered["bca"]).sum())
                gap = endpoint_gap[:, i]
                row["endpoint_difference_from_bca"] = {
                    "median": float(np.median(gap)), "p99": float(np.quantile(gap, 0.99)), "max": float(gap.max()),
                    "draws_over_0.5_points": int((gap > 0.005).sum()),
                }  # fmt: skip
            results.append(row)
    return {
        "benchmark": "bootstrap_coverage",
        "images": images,
        "class_counts": dict(zip(NAMES, counts.tolist(), strict=True)),
        "profile": profile,
        "recall": dict(zip(NAMES, recall.tolist(), strict=True)),
        "truth": dict(zip(METRICS, truth.tolist(), strict=True)),
        "draws": draws,
        "resamples": resamples,
        "level": level,
        "seed": seed,
        "simulation_seconds": seconds,
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}",
        "metrics_json_seconds": timing(counts, recall, resamples, rounds),
        "results": results,
    }


def print_report(report: dict, console: Console) -> None:
    title = (f"coverage of the {100 * report['level']:.0f} % intervals: {report['draws']:,} draws of "
             f"{report['images']:,} images, {report['resamples']:,} resamples, "
             f"profile {report['profile']}")  # fmt: skip
    table = Table(title=title)
    for column in ("metric", "method", "cover %", "95 % CI", "below", "above", "width", "only it / only pct, p"):
        table.add_column(column, justify="left" if column in ("metric", "method") else "right")
    for row in report["results"]:
        only = ""
        if "only_this_covers" in row:
            only = f"{row['only_this_covers']} / {row['only_percentile_covers']}, {row['sign_test_p']:.3f}"
        table.add_row(
            row["metric"], row["method"], f"{100 * row['coverage']:.1f}",
            f"{100 * row['coverage_low']:.1f}-{100 * row['coverage_high']:.1f}", str(row["truth_below"]),
            str(row["truth_above"]), f"{100 * row['mean_width']:.2f}", only,
        )  # fmt: skip
    console.width = max(console.width, 120)
    console.print(table)
    timed = report["metrics_json_seconds"]
    console.print(f"metrics.json intervals (with AUCs), one draw: percentile {timed['percentile']:.3f} s, "
                  f"BCa {timed['bca']:.3f} s; simulation {report['simulation_seconds']:.0f} s")  # fmt: skip
    gaps = [row for row in report["results"] if "endpoint_difference_from_bca" in row]
    if gaps:
        console.print("BCa with the exact jackknife against 50 groups per class (endpoints, points: median, 99th "
                      "percentile, max over the draws; draws whose coverage differs):")  # fmt: skip
        for row in gaps:
            gap = row["endpoint_difference_from_bca"]
            console.print(f"  {row['metric']}: {100 * gap['median']:.3f}, {100 * gap['p99']:.3f}, "
                          f"{100 * gap['max']:.3f}; {row['coverage_differs_from_bca']}")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ce", help="the classifier's recalls")
    parser.add_argument("--exact", action="store_true", help="add BCa with the exact leave-one-out jackknife")
    parser.add_argument("--timing-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(
        args.images, args.draws, args.resamples, args.level, args.seed, args.exact, args.timing_rounds, args.profile
    )
    return finish(report, args.out, print_report)


if __name__ == "__main__":
    main()
