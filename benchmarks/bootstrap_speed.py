"""Benchmark: the stratified bootstrap of metrics.json, vectorised, against a loop over the resamples.

``metrics.json`` holds 95 % intervals of Acc, BAcc, mPR, mF1 and each class's recall from 2,000
stratified resamples of the validation images (`sampleweight.metrics.metric_intervals`). Every
resample is scored at once, as a weighted confusion matrix per resample; the reference is the
straightforward loop that draws each resample's images and calls `classification_metrics` on them,
as a user would write it with `sampleweight.bootstrap.bootstrap` and a plain metric function.

The intervals of the one-vs-rest ROC AUCs are timed the same way: vectorised (one sort per class,
weighted rank sums of every resample at once, `sampleweight.metrics.roc_auc`) against scikit-learn's
``roc_auc_score`` called per resample and class on the images drawn.

Both run on the same seeded resamples of a HAM10000-like validation side (7 classes in the HAM10000
proportions, 70 % of predictions right, Dirichlet scores leaning to the prediction); the intervals are
checked equal. Reported: seconds of each (median of ``--rounds``), and the loop's time over the vectorised
one. Run from the repository root:

    python benchmarks/bootstrap_speed.py                   # 2,000 resamples of 2,000 images
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from sampleweight.bootstrap import bootstrap
from sampleweight.metrics import INTERVAL_METRICS, classification_metrics, metric_intervals

from benchtools import default_out, finish

DEFAULT_OUT = default_out("bootstrap_speed")
HAM10000_MIX = np.array([1113, 6705, 514, 327, 1099, 115, 142]) / 10015
NAMES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def scored_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.choice(len(NAMES), size=n, p=HAM10000_MIX)
    predictions = np.where(rng.random(n) < 0.7, targets, rng.integers(0, len(NAMES), size=n))
    draws = rng.gamma(1 + 3 * np.eye(len(NAMES))[predictions])  # Dirichlet rows leaning to the prediction
    return targets, predictions, draws / draws.sum(axis=1, keepdims=True)


def looped_auc(targets: np.ndarray, scores: np.ndarray, resamples: int) -> dict:
    """The AUC intervals by a Python loop: scikit-learn's roc_auc_score per resample and class."""

    def figures(t: np.ndarray, s: np.ndarray) -> np.ndarray:
        auc = [roc_auc_score(t == c, s[:, c]) for c in range(len(NAMES))]
        return np.array([np.mean(auc), *auc])

    result = bootstrap(figures, targets, scores, resamples=resamples, seed=0)
    return {"auc": [result.low[0], result.high[0]]}


def looped(targets: np.ndarray, predictions: np.ndarray, resamples: int) -> dict:
    """The same intervals by a Python loop: each resample's images through `classification_metrics`."""

    def figures(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        scored = classification_metrics(t, p, NAMES)
        return np.array([scored[m] for m in INTERVAL_METRICS] + [scored["per_class"][c]["recall"] for c in NAMES])

    result = bootstrap(figures, targets, predictions, resamples=resamples, seed=0)
    return {m: [result.low[i], result.high[i]] for i, m in enumerate(INTERVAL_METRICS)}


def run(images: int, resamples: int, rounds: int) -> dict:
    targets, predictions, scores = scored_images(images)
    timings: dict[str, list[float]] = {"vectorised": [], "loop": [], "vectorised_auc": [], "loop_auc": []}
    for _ in range(rounds):
        start = time.perf_counter()
        ci, _ = metric_intervals(targets, predictions, NAMES, resamples=resamples, seed=0)
        timings["vectorised"].append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = looped(targets, predictions, resamples)
        timings["loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with_auc, _ = metric_intervals(targets, predictions, NAMES, scores=scores, resamples=resamples, seed=0)
        timings["vectorised_auc"].append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_auc = looped_auc(targets, scores, resamples)
        timings["loop_auc"].append(time.perf_counter() - start)
    for metric in INTERVAL_METRICS:
        np.testing.assert_allclose(ci[metric], reference[metric], rtol=0, atol=1e-12)
    np.testing.assert_allclose(with_auc["auc"], reference_auc["auc"], rtol=0, atol=1e-12)
    median = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "benchmark": "bootstrap_speed",
        "images": images,
        "resamples": resamples,
        "rounds": rounds,
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}",
        "vectorised_seconds": median["vectorised"],
        "loop_seconds": median["loop"],
        "loop_over_vectorised": median["loop"] / median["vectorised"],
        "vectorised_with_auc_seconds": median["vectorised_auc"],
        "auc_loop_seconds": median["loop_auc"],
        "auc_loop_over_vectorised": median["loop_auc"] / (median["vectorised_auc"] - median["vectorised"]),
    }


def print_report(report: dict, console: Console) -> None:
    table = Table(title=f"bootstrap of metrics.json: {report['resamples']:,} resamples of {report['images']:,} images")
    for column in ("method", "seconds", "ratio"):
        table.add_column(column, justify="right" if column != "method" else "left")
    table.add_row("vectorised (weighted confusion matrices)", f"{report['vectorised_seconds']:.3f}", "1.00")
    table.add_row("loop over resamples", f"{report['loop_seconds']:.3f}", f"{report['loop_over_vectorised']:.1f}")
    auc_alone = report["vectorised_with_auc_seconds"] - report["vectorised_seconds"]
    table.add_row("vectorised, with the AUCs (weighted rank sums)", f"{report['vectorised_with_auc_seconds']:.3f}", "")
    table.add_row("  of which the AUCs", f"{auc_alone:.3f}", "1.00")
    table.add_row(
        "AUCs by scikit-learn, per resample and class", f"{report['auc_loop_seconds']:.3f}",
        f"{report['auc_loop_over_vectorised']:.1f}",
    )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args.images, args.resamples, args.rounds), args.out, print_report)


if __name__ == "__main__":
    main()
