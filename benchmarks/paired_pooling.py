"""False positives of the pooled paired test (``sampleweight report --baseline``) when two setups are equally good.

Two setups with the same expected recall per class (`RECALL`, HAM10000's class shares as in
``bootstrap_coverage.py``) are compared by `sampleweight.studies.statistics.PairedBootstrap` on K pairs of
runs, and the share of draws whose pooled p-value is below 0.05 is counted: a calibrated test gives about
5 %. Each setup has its own easy and hard images (on an image set, an image is easy for a setup with the
probability that gives the class's recall; a run then gets an easy image right 95 % of the time and a hard
one 5 %), so two seeds of a setup agree on most images, as real reruns do, and the setups differ image by
image. The scenarios:

- ``one pair``: K = 1.
- ``seeds on one image set``: K seeds of each setup scored on the same images (a fixed validation side,
  or a test set). Issue 23's case: keyed by (split, seed), each key drew its own image resamples and the
  pooled interval shrank as if the K pairs had independent images.
- ``splits``: K pairs on K different image sets (the grid's splits), each with its own easy and hard images.
- ``splits, run-to-run noise``: as ``splits``, and every run's recall of each class moves by a normal
  amount of SD ``--run-noise`` (seed luck that is not in the images), so the pairs differ beyond their
  images.

Reported per scenario, metric and interval method: the false-positive rate with its 95 % Wilson interval,
and the mean half-width of the pooled 95 % interval over 1.96 times the SD of the pooled difference over
the draws (1: the interval has the right width; above 1: conservative). Run from the repository root:

    python benchmarks/paired_pooling.py                # 500 draws per scenario, 1,000 images per image set
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sampleweight.studies.statistics import PairedBootstrap, Predictions

from benchtools import default_out, finish

DEFAULT_OUT = default_out("paired_pooling")
NAMES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
SHARES = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.011, 0.014])
RECALL = np.array([0.60, 0.92, 0.70, 0.55, 0.65, 0.45, 0.80])
METRICS = ("bacc", "acc")
SHARP = 0.95
"""How often a run gets an easy image right (and a hard one wrong)."""
SCENARIOS = (
    ("one pair", 1, True, False),
    ("seeds on one image set", 2, True, False),
    ("seeds on one image set", 4, True, False),
    ("splits", 2, False, False),
    ("splits", 4, False, False),
    ("splits, run-to-run noise", 2, False, True),
    ("splits, run-to-run noise", 4, False, True),
)
"""(name, K, all pairs on one image set, run-to-run noise)."""


def image_set(index: int, images: int) -> tuple[tuple[str, ...], np.ndarray]:
    counts = np.maximum(1, np.round(SHARES / SHARES.sum() * images)).astype(np.int64)
    targets = np.repeat(np.arange(len(NAMES)), counts)
    return tuple(f"set{index}-{i:05d}" for i in range(targets.size)), targets


def runs_of_a_setup(
    sets: list[tuple[tuple[str, ...], np.ndarray]], pairs: int, shared: bool, noise: float, rng: np.random.Generator
) -> dict[tuple[int, int], Predictions]:
    """One setup's K runs: keyed (split, seed); on one image set (seeds 0..K-1) or on K (splits 0..K-1)."""
    easy = [rng.random(t.size) < (RECALL[t] - (1 - SHARP)) / (2 * SHARP - 1) for _, t in sets]
    runs = {}
    for k in range(pairs):
        which = 0 if shared else k
        images, targets = sets[which]
        right = np.where(easy[which], SHARP, 1 - SHARP) + rng.normal(0, noise, len(NAMES))[targets]
        wrong = (targets + rng.integers(1, len(NAMES), size=targets.size)) % len(NAMES)
        predicted = np.where(rng.random(targets.size) < right, targets, wrong)
        key = (0, k) if shared else (k, 0)
        runs[key] = Predictions(images, targets, predicted, np.eye(len(NAMES))[predicted], NAMES)
    return runs


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def run(draws: int, images: int, resamples: int, noise: float, methods: list[str], seed: int) -> dict:
    results = []
    start = time.perf_counter()
    for name, pairs, shared, noisy in SCENARIOS:
        p = {m: np.zeros((draws, len(METRICS))) for m in methods}
        half = {m: np.zeros((draws, len(METRICS))) for m in methods}
        estimates = np.zeros((draws, len(METRICS)))
        for draw in range(draws):
            rng = np.random.default_rng([seed, pairs, int(shared), int(noisy), draw])
            sets = [image_set(draw * 10 + k, images) for k in range(1 if shared else pairs)]
            a, b = (runs_of_a_setup(sets, pairs, shared, noise if noisy else 0.0, rng) for _ in range(2))
            for method in methods:
                pooled = PairedBootstrap(METRICS, resamples=resamples, seed=draw, method=method).compare(a, b).pooled
                p[method][draw] = [d.p for d in pooled]
                half[method][draw] = [(d.high - d.low) / 2 for d in pooled]
                estimates[draw] = [d.estimate for d in pooled]
        spread = estimates.std(axis=0, ddof=1)
        for method in methods:
            for i, metric in enumerate(METRICS):
                hits = int((p[method][:, i] < 0.05).sum())
                low, high = wilson(hits, draws)
                results.append({
                    "scenario": name, "pairs": pairs, "metric": metric, "method": method,
                    "false_positive_rate": hits / draws, "rate_low": low, "rate_high": high,
                    "width_ratio": float(half[method][:, i].mean() / (1.959964 * spread[i])),
                })  # fmt: skip
    return {
        "benchmark": "paired_pooling",
        "draws": draws,
        "images": images,
        "resamples": resamples,
        "run_noise": noise,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}",
        "results": results,
    }


def print_report(report: dict, console: Console) -> None:
    console.width = max(console.width, 110)
    table = Table(title=f"pooled paired test of two equal setups: {report['draws']} draws per scenario, "
                        f"{report['images']:,} images per set, {report['resamples']:,} resamples")  # fmt: skip
    for column in ("scenario", "K", "metric", "method", "false positives %", "95 % CI", "width ratio"):
        table.add_column(column, justify="left" if column in ("scenario", "metric", "method") else "right")
    for row in report["results"]:
        table.add_row(
            row["scenario"], str(row["pairs"]), row["metric"], row["method"], f"{100 * row['false_positive_rate']:.1f}",
            f"{100 * row['rate_low']:.1f}-{100 * row['rate_high']:.1f}", f"{row['width_ratio']:.2f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"{report['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=999)
    parser.add_argument("--run-noise", type=float, default=0.05, help="SD of a run's per-class recall shift")
    parser.add_argument("--methods", default="percentile,bca")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    report = run(args.draws, args.images, args.resamples, args.run_noise, methods, args.seed)
    return finish(report, args.out, print_report)


if __name__ == "__main__":
    main()
