"""Benchmark: the bootstrap of a binary run's metrics.json, vectorised, against a loop over the resamples.

A binary run's ``metrics.json`` holds 95 % intervals of ROC AUC, ISIC 2024's partial AUC, average precision, the
sensitivity/specificity operating points and BAcc/F1 at the threshold, from 2,000 stratified resamples of the
validation images (`sampleweight.binary_metrics.binary_metrics`). Every resample is scored at once: one sort, then
the cumulative weighted true and false positives of every resample. The reference loop draws the same resamples and
calls scikit-learn per resample on the images drawn: ``roc_auc_score``, the ISIC 2024 scoring (flipped labels and
scores, ``roc_curve`` up to FPR 0.2 with a point interpolated there, ``auc``) and ``average_precision_score``; the
intervals of those three are checked equal.

Data: a HAM10000-like melanoma-vs-rest validation side (11 % positives, scores leaning to the truth, rounded to
three decimals, so with ties). Reported: seconds of each (median of ``--rounds``) and the loop's time over the
vectorised one. With ``--labels L`` the same for a multilabel run's ``metrics.json``
(`sampleweight.binary_metrics.label_metrics`: each label's figures from its own bootstrap), on L labels whose
prevalences run from 50 % down to 1 % (the spread of HAM10000's 11 label-tree nodes), against the loop per label.
Run from the repository root:

    python benchmarks/binary_bootstrap_speed.py              # 2,000 resamples of 2,000 images
    python benchmarks/binary_bootstrap_speed.py --labels 11  # a multilabel run of 11 labels
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
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from sampleweight.binary_metrics import BINARY_METRICS, binary_metrics, label_metrics
from sampleweight.bootstrap import bootstrap

from benchtools import default_out, finish

DEFAULT_OUT = default_out("binary_bootstrap_speed")


def scored_images(n: int, seed: int = 0, prevalence: float = 0.11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random(n) < prevalence).astype(np.int64)
    scores = np.round(np.clip(rng.normal(0.3 + 0.25 * targets, 0.18), 0, 1), 3)
    return targets, scores


def labelled_images(n: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 targets and scores [n, labels], prevalences spaced geometrically from 50 % down to 1 %."""
    prevalences = np.geomspace(0.5, 0.01, labels) if labels > 1 else np.array([0.11])
    columns = [scored_images(n, seed=i, prevalence=float(p)) for i, p in enumerate(prevalences)]
    return np.stack([t for t, _ in columns], axis=1), np.stack([s for _, s in columns], axis=1)


def isic2024_pauc(targets: np.ndarray, scores: np.ndarray, min_tpr: float = 0.8) -> float:
    """The challenge's published scoring (ISIC-Research/Challenge-2024-Metrics, PrimaryMetric-pAUC.py)."""
    fpr, tpr, _ = roc_curve(1 - targets, 1 - scores)
    max_fpr = 1 - min_tpr
    stop = np.searchsorted(fpr, max_fpr, "right")
    tpr = np.append(tpr[:stop], np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1]))
    fpr = np.append(fpr[:stop], max_fpr)
    return float(auc(fpr, tpr))


def looped(targets: np.ndarray, scores: np.ndarray, resamples: int, seed: int = 0) -> dict[str, list[float]]:
    def figures(t: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.array([roc_auc_score(t, s), isic2024_pauc(t, s), average_precision_score(t, s)])

    result = bootstrap(figures, targets, scores, resamples=resamples, seed=seed, method="percentile")
    return {name: [result.low[i], result.high[i]] for i, name in enumerate(("auc", "pauc", "ap"))}


def run(images: int, resamples: int, rounds: int, labels: int = 1) -> dict:
    targets, scores = scored_images(images) if labels == 1 else labelled_images(images, labels)
    names = [f"label{i}" for i in range(labels)]
    timings: dict[str, list[float]] = {"vectorised": [], "loop": []}
    for _ in range(rounds):
        start = time.perf_counter()
        if labels == 1:
            ours = {"label0": binary_metrics(targets, scores, resamples=resamples, method="percentile")}
        else:
            ours = label_metrics(targets, scores, names, resamples=resamples, method="percentile")["per_label"]
        timings["vectorised"].append(time.perf_counter() - start)
        start = time.perf_counter()
        if labels == 1:
            reference = {"label0": looped(targets, scores, resamples)}
        else:  # label_metrics seeds label i's resamples with seed + i
            reference = {name: looped(targets[:, i], scores[:, i], resamples, seed=i) for i, name in enumerate(names)}
        timings["loop"].append(time.perf_counter() - start)
    for label in names:
        for name in ("auc", "pauc", "ap"):
            np.testing.assert_allclose(ours[label]["ci"][name], reference[label][name], rtol=0, atol=1e-12)
    median = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "benchmark": "binary_bootstrap_speed",
        "images": images,
        "labels": labels,
        "positives": int(targets.sum()),
        "resamples": resamples,
        "rounds": rounds,
        "figures": len(BINARY_METRICS),
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}",
        "vectorised_seconds": median["vectorised"],
        "loop_seconds": median["loop"],
        "loop_over_vectorised": median["loop"] / median["vectorised"],
    }


def print_report(report: dict, console: Console) -> None:
    kind = "binary" if report.get("labels", 1) == 1 else f"multilabel ({report['labels']} labels)"
    table = Table(title=f"{kind} metrics.json: {report['resamples']:,} resamples of {report['images']:,} images")
    for column in ("method", "seconds", "ratio"):
        table.add_column(column, justify="right" if column != "method" else "left")
    table.add_row(f"vectorised, all {report['figures']} figures", f"{report['vectorised_seconds']:.3f}", "1.0")
    table.add_row(
        "scikit-learn per resample: AUC, ISIC pAUC, AP", f"{report['loop_seconds']:.3f}",
        f"{report['loop_over_vectorised']:.1f}",
    )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=1, help="1: a binary run; L > 1: a multilabel run of L labels")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args.images, args.resamples, args.rounds, args.labels), args.out, print_report)


if __name__ == "__main__":
    main()
