"""The multilabel form of HAM10000 on real images: sigmoid heads over the ISIC 2018 label tree, compared, paired.

`--task multilabel` on HAM10000 trains one sigmoid logit per node of the paper's label tree (11 labels: melanocytic,
non_melanocytic, the 7 diagnoses, benign, malignant; `sampleweight.data.multilabel`). At the reproduction scale of
``docs/reproduction-cpu-results.md`` (``cbam_vgg16`` over a randomly initialised timm ``test_resnet``, 48 px,
5 epochs, batch 32, ADAM lr 1e-3, the lesion-grouped splits 0 and 1, seeds 0 and 1), each setup trains one run per
(split, seed):

- ``bce`` (the baseline), ``bce`` with ``es`` (per label: its positives and negatives weighted by their effective
  numbers), ``asl`` (Ridnik et al. 2021), ``db`` (distribution-balanced, Wu et al. 2020), and ``bce`` with the
  ``repeat_factor`` sampler (LVIS's rule: an image repeated by the rarest of its labels) at t = 0.1 (LVIS's
  default t = 0.001 repeats nothing here: the rarest label, DF, is on 1.1 % of the images);
- and the 7-class softmax model (``ce``, no weighting), whose probability of a node is the sum of its diagnoses'
  probabilities (P(malignant) = P(BCC) + P(AKIEC)), scored on the same labels and validation images (the multilabel
  split is the multiclass one relabelled).

Then each setup minus ``bce`` on the mean over the 11 labels of ROC AUC, ISIC 2024's partial AUC above 80 % TPR and
average precision, paired on the same validation images and pooled over the four (split, seed) pairs
(``sampleweight report --baseline``'s statistics), Holm-corrected over the setups per metric; and each label's AUC.
Written to ``docs/reproduction-multilabel-results.md``.

One training process at a time (``sampleweight train`` in a subprocess with ``--threads`` threads); resumable: a
finished run is kept, an interrupted one resumed. From the repository root:

    nice -n 10 python benchmarks/multilabel_ham10000.py --data /path/to/HAM10000
    python benchmarks/multilabel_ham10000.py --report-only     # rewrite the page from the finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchtools import (
    difference_cells,
    holm_per_metric,
    spread_cells,
    study_arguments,
    study_folder,
    train_study,
)

if TYPE_CHECKING:
    from sampleweight.studies.statistics import Predictions

SETUPS: dict[str, list[str]] = {
    "bce": [],
    "bce+es": ["--weighter", "es"],
    "asl": ["--loss", "asl"],
    "db": ["--loss", "db"],
    "bce, repeat_factor sampler t=0.1": ["--sampler", "repeat_factor", "--sampler-option", "threshold=0.1"],
}
MULTICLASS = "7-class ce, node probabilities"
BASELINE = "bce"
METRICS = ("mean_auc", "mean_pauc", "mean_ap")
METRIC_NAMES = {"mean_auc": "ROC AUC", "mean_pauc": "pAUC above 80 % TPR", "mean_ap": "AP"}
ROOT = Path(__file__).resolve().parents[1]


def options(setup: str) -> list[str]:
    return [] if setup == MULTICLASS else ["--task", "multilabel", *SETUPS[setup]]


def runs_of(args: argparse.Namespace, setup: str) -> dict:
    from sampleweight.studies.statistics import Predictions
    from sampleweight.taxonomy import ISIC2018_TAXONOMY

    found = {}
    for split in args.splits:
        for seed in args.seeds:
            path = args.out / study_folder(setup) / f"s{split}-seed{seed}"
            if (path / "metrics.json").is_file():
                if setup == MULTICLASS:  # a node's probability: the sum of its diagnoses'
                    run = Predictions.read(path / "predictions.csv")
                    found[(split, seed)] = run.on_label_tree(ISIC2018_TAXONOMY.with_classes(run.classes))
                else:
                    found[(split, seed)] = Predictions.read(path / "predictions.csv", multilabel=True)
    return found


def figures(run: Predictions) -> np.ndarray:
    """Mean AUC, pAUC, AP over the labels, then each label's AUC, of one run."""
    from sampleweight.studies.statistics import metric_values

    names = [*METRICS, *(f"auc:{label}" for label in run.classes)]
    return metric_values(run.targets, run.predicted, run.classes, names, scores=run.scores)


def report(args: argparse.Namespace) -> str:
    from sampleweight.studies.statistics import PairedBootstrap

    setups = [*SETUPS, MULTICLASS]
    runs = {setup: runs_of(args, setup) for setup in setups}
    labels = next((run.classes for found in runs.values() for run in found.values()), ())
    planned = len(args.splits) * len(args.seeds)
    stats = PairedBootstrap(METRICS, resamples=args.resamples, method="percentile")
    values = {s: np.array([figures(run) for run in found.values()]) for s, found in runs.items() if found}
    comparisons = {
        s: stats.compare(runs[s], runs[BASELINE]) for s in setups if s != BASELINE and runs[s] and runs[BASELINE]
    }
    adjusted = holm_per_metric(comparisons, METRICS)
    finished = sum(len(found) for found in runs.values())
    seconds = [
        sum(json.loads(line)["seconds"] for line in (p / "metrics.jsonl").read_text().splitlines() if line.strip())
        for s in setups for p in (args.out / study_folder(s)).glob("s*-seed*") if (p / "metrics.json").is_file()
    ]  # fmt: skip
    lines = [
        "# The multilabel form of HAM10000: sigmoid heads over the label tree compared",
        "",
        "Written by `benchmarks/multilabel_ham10000.py` (rerun it to refresh; `--report-only` rewrites this page from",
        "the finished runs). Real HAM10000 images (all 10,015), the lesion-grouped splits 0 and 1, seeds 0 and 1, at",
        "the reproduction scale of [reproduction-cpu-results.md](reproduction-cpu-results.md): `cbam_vgg16` over a",
        f"randomly initialised timm `test_resnet`, {args.image_size} px, {args.epochs} epochs, batch "
        f"{args.batch_size}, ADAM lr {args.lr:g}. Multilabel runs: `--task multilabel` on HAM10000, whose labels are",
        f"the {len(labels)} nodes of the paper's label tree ([tasks.md](tasks.md): each image is positive for its",
        "diagnosis and the nodes above it); the 7-class softmax run's probability of a node is the sum of its",
        "diagnoses' probabilities, scored on the same labels and the same validation images.",
        "",
        f"Runs finished: {finished} of {planned * len(setups)} planned "
        f"({', '.join(f'{s}: {len(runs[s])}/{planned}' for s in setups)}); training time per run (the sum of its",
        f"epochs) {min(seconds, default=0) / 60:.1f}-{max(seconds, default=0) / 60:.1f} min, one run at a time.",
        "",
    ]
    if finished < planned * len(setups):
        lines += [
            "**An unfinished study.** Only the runs counted above finished; every figure below is from them alone. "
            "Rerun the script to finish it: it resumes, and rewrites this page.",
            "",
        ]
    header = " | ".join(f"{METRIC_NAMES[m]} (mean ± sd)" for m in METRICS)
    deltas = " | ".join(f"{METRIC_NAMES[m]} - bce [95 % CI], p (Holm)" for m in METRICS)
    lines += [
        "Means over the labels of each run's figures, then mean ± sd over its runs:",
        "",
        f"| setup | runs | {header} | {deltas} |",
        "|---|---|" + "---|" * (2 * len(METRICS)),
    ]
    for setup in setups:
        cells = spread_cells(values.get(setup), len(METRICS))
        diffs = difference_cells(setup, comparisons, adjusted, METRICS, BASELINE)
        lines.append(f"| {setup} | {len(runs[setup])} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    significant = {
        metric: [s for s in comparisons if adjusted[s, metric] < 0.05 and comparisons[s].pooled[i].estimate > 0]
        for i, metric in enumerate(METRICS)
    }
    lines += [
        "",
        "**Reading.** Better than plain `bce` after Holm's correction (p < 0.05), on the mean over the labels of "
        + "; ".join(f"{METRIC_NAMES[m]}: {', '.join(f'`{s}`' for s in significant[m]) or 'none'}" for m in METRICS)
        + ". The rest of the differences are within the noise of 4 runs per setup. The `repeat_factor` sampler runs",
        "at t = 0.1: at LVIS's default t = 0.001 it repeats no HAM10000 image (the rarest label, DF, is on 1.1 % of",
        "the images), and a study run with it gave figures identical to `bce`'s.",
    ]
    lines += [
        "",
        "Differences: setup minus `bce` on the same validation images, per (split, seed) and pooled over the pairs",
        f"both have (`sampleweight.studies.statistics.PairedBootstrap`, {args.resamples} paired resamples of the",
        "images per pair, stratified by each image's rarest label; in each resample each label's figure is computed",
        "and averaged over the labels; percentile intervals; p two-sided, Holm-corrected over the setups per metric in",
        "parentheses). pAUC is ISIC 2024's, range 0-0.2 ([tasks.md](tasks.md#metrics)).",
        "",
        "Each label's ROC AUC (mean over the runs):",
        "",
        "| setup | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for setup in setups:
        found = values.get(setup)
        if found is not None:
            per_label = found[:, len(METRICS) :].mean(0)
            lines.append(f"| {setup} | " + " | ".join(f"{v:.3f}" for v in per_label) + " |")
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work, one training process at a time "
        f"with {args.threads} thread(s).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    page = ROOT / "docs" / "reproduction-multilabel-results.md"
    parser = study_arguments(__doc__.split("\n")[0], "sampleweight-multilabel", page)
    parser.add_argument(
        "--setups",
        type=lambda s: s.split(";"),
        default=[*SETUPS, MULTICLASS],
        help="which setups to train, ';'-separated (default: all)",
    )
    args = parser.parse_args()
    if not args.report_only:
        train_study(args, args.setups, options)
    args.page.write_text(report(args))
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
