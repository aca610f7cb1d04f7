"""Melanoma vs the rest on real HAM10000 images: the binary head's losses, weightings and samplers compared, paired.

At the reproduction scale of ``docs/reproduction-cpu-results.md`` (``cbam_vgg16`` over a randomly initialised timm
``test_resnet``, 48 px, 5 epochs, batch 32, ADAM lr 1e-3, the lesion-grouped splits 0 and 1, seeds 0 and 1), each
setup trains one ``--task binary --positive MEL`` run per (split, seed):

- ``bce`` (the baseline), ``bce`` with ``es``, with ``pos_weight=neg_pos`` (timm's), with ``ohem``, ``asl``, and
  ``bce`` with the ``class_balanced`` sampler (positives and negatives drawn equally often);
- and the 7-class softmax model (``ce``, no weighting), whose MEL probability is scored the same way (melanoma vs
  the rest, on the same validation images: the binary split is the multiclass one relabelled).

Then each setup minus ``bce`` on ROC AUC and ISIC 2024's partial AUC above 80 % TPR: paired bootstrap over the
validation images of each (split, seed), pooled over the four pairs (`sampleweight.studies.statistics.PairedBootstrap`,
percentile intervals), Holm-corrected over the setups per metric; written to
``docs/reproduction-melanoma-results.md``.

One training process at a time (``sampleweight train`` in a subprocess with ``--threads`` threads); resumable: a
finished run is kept, an interrupted one resumed. From the repository root:

    nice -n 10 python benchmarks/melanoma_binary.py --data /path/to/HAM10000
    python benchmarks/melanoma_binary.py --report-only     # rewrite the page from the finished runs
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from sampleweight.studies.statistics import PairedBootstrap, Predictions

from benchtools import (
    difference_cells,
    holm_per_metric,
    spread_cells,
    study_arguments,
    study_folder,
    train_study,
)

SETUPS: dict[str, list[str]] = {
    "bce": [],
    "bce+es": ["--weighter", "es"],
    "bce pos_weight=neg_pos": ["--loss-option", "pos_weight=neg_pos"],
    "bce+ohem": ["--weighter", "ohem"],
    "asl": ["--loss", "asl"],
    "bce, class_balanced sampler": ["--sampler", "class_balanced"],
}
MULTICLASS = "7-class ce, MEL probability"
BASELINE = "bce"
METRICS = ("auc:MEL", "pauc:MEL")
ROOT = Path(__file__).resolve().parents[1]


def options(setup: str) -> list[str]:
    return [] if setup == MULTICLASS else ["--task", "binary", "--positive", "MEL", *SETUPS[setup]]


def runs_of(args: argparse.Namespace, setup: str) -> dict[tuple[int, int], Predictions]:
    found = {}
    for split in args.splits:
        for seed in args.seeds:
            path = args.out / study_folder(setup) / f"s{split}-seed{seed}"
            if (path / "metrics.json").is_file():
                run = Predictions.read(path / "predictions.csv")
                found[(split, seed)] = run.one_vs_rest("MEL") if setup == MULTICLASS else run
    return found


def report(args: argparse.Namespace) -> str:
    runs = {setup: runs_of(args, setup) for setup in [*SETUPS, MULTICLASS]}
    planned = len(args.splits) * len(args.seeds)
    stats = PairedBootstrap(METRICS, resamples=args.resamples, method="percentile")
    rows, comparisons = [], {}
    for setup, found in runs.items():
        values = np.array([stats_values(run) for run in found.values()]) if found else np.empty((0, 2))
        rows.append((setup, len(found), values))
        if setup != BASELINE and found and runs[BASELINE]:
            comparisons[setup] = stats.compare(found, runs[BASELINE])
    adjusted = holm_per_metric(comparisons, METRICS)
    lines = [
        "# Melanoma vs the rest on HAM10000: binary heads compared",
        "",
        "Written by `benchmarks/melanoma_binary.py` (rerun it to refresh; `--report-only` rewrites this page from the",
        "finished runs). Real HAM10000 images (all 10,015), the lesion-grouped splits 0 and 1, seeds 0 and 1, at the",
        "reproduction scale of [reproduction-cpu-results.md](reproduction-cpu-results.md): `cbam_vgg16` over a",
        f"randomly initialised timm `test_resnet`, {args.image_size} px, {args.epochs} epochs, batch "
        f"{args.batch_size}, ADAM lr {args.lr:g}. Binary runs: `--task binary --positive MEL` (MEL against the six",
        "other classes, about 11 % positives); the 7-class run's MEL probability is scored the same way, on the same",
        "validation images.",
        "",
        f"Runs finished: {sum(r[1] for r in rows)} of {planned * len(rows)} planned "
        f"({', '.join(f'{s}: {n}/{planned}' for s, n, _ in rows)}).",
        "",
        *(
            [
                "**An unfinished study.** Only the runs counted above finished before the study was stopped; every "
                "figure below is from them alone (pairs finished: "
                + "; ".join(
                    f"{s}: {', '.join(f'split {k[0]} seed {k[1]}' for k in sorted(runs[s])) or 'none'}" for s in runs
                )
                + "). Rerun the script to finish it: it resumes, and rewrites this page.",
                "",
            ]
            if sum(r[1] for r in rows) < planned * len(rows)
            else []
        ),
        "| setup | runs | ROC AUC (mean ± sd) | pAUC above 80 % TPR (mean ± sd) | AUC - bce [95 % CI], p (Holm) | "
        "pAUC - bce [95 % CI], p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for setup, count, values in rows:
        cells = spread_cells(values, 2)
        diffs = difference_cells(setup, comparisons, adjusted, METRICS, BASELINE)
        lines.append(f"| {setup} | {count} | {cells[0]} | {cells[1]} | {diffs[0]} | {diffs[1]} |")
    lines += [
        "",
        "Differences: setup minus `bce` on the same validation images, per (split, seed) and pooled over the pairs",
        f"both have ({args.resamples} paired resamples of the images, stratified by class, per pair; percentile",
        "intervals; p two-sided, Holm-corrected over the setups per metric in parentheses). pAUC is ISIC 2024's: the",
        "area of the ROC region with TPR >= 0.8, range 0-0.2 ([tasks.md](tasks.md#metrics)).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work, one training process at a time "
        f"with {args.threads} thread(s).",
    ]
    return "\n".join(lines) + "\n"


def stats_values(run: Predictions) -> list[float]:
    from sampleweight.binary_metrics import ranking_metrics

    positive = run.classes.index("MEL")
    table = ranking_metrics(run.targets == positive, run.scores[:, positive])
    return [float(table[0]), float(table[1])]


def main() -> None:
    page = ROOT / "docs" / "reproduction-melanoma-results.md"
    parser = study_arguments(__doc__.split("\n")[0], "sampleweight-melanoma", page)
    args = parser.parse_args()
    if not args.report_only:
        train_study(args, [*SETUPS, MULTICLASS], options)
    args.page.write_text(report(args))
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
