"""Does mixing add to rebalancing on HAM10000? Rebalancing x {no mixing, mixup, remix}, paired, at CPU scale.

The reproduction scale of ``benchmarks/reproduce_ham10000.py`` (``cbam_vgg16`` on a randomly initialised
``test_resnet``, 48 px, 5 epochs, batches of 32, ADAM lr 1e-3, lesion-grouped splits 0 and 1, seeds 0 and 1), and
four ways to rebalance: none (CE), ``cb`` weighting, the ``balanced_softmax`` loss and ``class_balanced``
sampling, each trained without mixing (``none``), with ``mixup`` and with ``remix`` (the built-ins' defaults:
alpha 1, kappa 3, tau 0.5). 4 x 3 setups x 2 splits x 2 seeds = 48 runs, trained one at a time (one process,
``--threads`` threads), one (split, seed) at a time, so that an interrupted study holds complete pairs; rerun it
to continue (the grids resume) or to rewrite the page from the finished runs.

Each mixer is compared with no mixing under the same rebalancing, on the same validation images (paired
bootstrap over the images, pooled over the (split, seed) pairs that both have, `sampleweight.studies.statistics`),
Holm's correction over the 8 comparisons of each metric. From the repository root:

    nice -n 10 python benchmarks/reproduce_mixing.py

The page goes to ``docs/reproduction-mixing.md``; the runs under ``--out`` (default under the system temp folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from sampleweight.engine.rundir import RunDirectory, read_epochs
from sampleweight.studies.grid import Grid, plan_grid, run_grid
from sampleweight.studies.report import Cell, collect_runs, summarize
from sampleweight.studies.statistics import COMPARED_METRICS, Difference, PairedBootstrap, holm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_ham10000 import DEFAULT_DATA, _commit  # the sibling script's data and helpers

ROOT = Path(__file__).resolve().parents[1]
REBALANCING = {  # name -> (loss, weighting, sampler)
    "none": ("ce", "none", "instance"),
    "cb": ("ce", "cb", "instance"),
    "balanced_softmax": ("balanced_softmax", "none", "instance"),
    "class_balanced": ("ce", "none", "class_balanced"),
}
MIXERS = ("none", "mixup", "remix")
LABELS = {"acc": "Acc", "bacc": "BAcc", "mpr": "mPR", "mf1": "mF1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="HAM10000 folder (read only)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sampleweight-mixing")
    parser.add_argument("--cache-dir", type=Path, default=None, help="image cache (default OUT/cache)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--splits", default="0,1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples of the paired tests")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the one training process")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reproduction-mixing.md")
    parser.add_argument("--report-only", action="store_true", help="write the page from the finished runs")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[Grid]:
    """One grid per rebalancing and (seed, split), ordered so that each (split, seed) completes before the next."""
    shared = {"data": args.data, "backbone": "test_resnet", "pretrained": False, "image_size": args.image_size,
              "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "cache_dir": args.cache_dir or args.out / "cache"}  # fmt: skip
    grids = []
    for seed in args.seeds.split(","):
        for split in args.splits.split(","):
            for loss, weighting, sampler in REBALANCING.values():
                grids.append(plan_grid(args.out, models="cbam_vgg16", losses=loss, weighters=weighting,
                                       samplers=sampler, mixers=",".join(MIXERS), optimizers="adam", splits=split,
                                       seeds=seed, options=shared))  # fmt: skip
    return grids


def cells(folder: Path) -> dict[tuple[str, str], Cell]:
    """The finished setups by (rebalancing, mixer)."""
    (table,) = summarize(collect_runs(folder))
    found = {}
    for cell in table.cells:
        mixer = cell.options.get("mixer", '"none"').strip('"')
        for name, (loss, weighting, sampler) in REBALANCING.items():
            if (cell.loss, cell.weighting, cell.sampler) == (loss, weighting, sampler) and mixer in MIXERS:
                found[name, mixer] = cell
    return found


def compare(found: dict[tuple[str, str], Cell], resamples: int) -> dict[tuple[str, str], list[Difference]]:
    """Each mixer minus no mixing under each rebalancing, per metric, Holm-adjusted over the comparisons."""
    bootstrap = PairedBootstrap(COMPARED_METRICS, resamples=resamples)
    differences = {}
    for name in REBALANCING:
        for mixer in MIXERS[1:]:
            if (name, mixer) in found and (name, "none") in found:
                both = set(found[name, mixer].by_key) & set(found[name, "none"].by_key)
                if both:
                    a = {key: found[name, mixer].by_key[key] for key in both}
                    b = {key: found[name, "none"].by_key[key] for key in both}
                    differences[name, mixer] = list(bootstrap.compare(a, b).pooled)
    for index in range(len(COMPARED_METRICS)):
        keys = list(differences)
        for key, p in zip(keys, holm([differences[k][index].p for k in keys]), strict=True):
            differences[key][index] = replace(differences[key][index], p_holm=float(p))
    return differences


def render(args: argparse.Namespace, found: dict, differences: dict, commit: str, minutes: float | None) -> str:
    lines = [
        "# Mixing and rebalancing on HAM10000 (CPU reproduction scale)",
        "",
        "Does input mixing add to rebalancing here, as BagofTricks-LT reports on CIFAR-100-LT-100 (error 56.82 "
        "for balanced softmax alone, 53.19 with input mixup, 51.97 with Remix; zhangyongshun/BagofTricks-LT, "
        "`documents/trick_combination.md`)? Written by `benchmarks/reproduce_mixing.py`"
        f"{commit}; the scale of [reproduction-cpu-results.md](reproduction-cpu-results.md): `cbam_vgg16` on a "
        f"randomly initialised `test_resnet`, {args.image_size} px, {args.epochs} epochs, batches of "
        f"{args.batch_size}, ADAM lr {args.lr:g}, lesion-grouped splits {args.splits}, seeds {args.seeds}. Mixers "
        "with the built-ins' defaults: `mixup` (alpha 1, per batch, timm's `Mixup`), `remix` (alpha 1, kappa 3, "
        "tau 0.5); label smoothing off.",
        "",
        "## Mean over the runs (validation side, %)",
        "",
        "| rebalancing | mixer | runs | Acc | BAcc | mPR | mF1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in REBALANCING:
        for mixer in MIXERS:
            cell = found.get((name, mixer))
            if cell is None:
                lines.append(f"| {name} | {mixer} | 0 (not run) | | | | |")
                continue
            mean = cell.mean
            lines.append(f"| {name} | {mixer} | {cell.n} | "
                         + " | ".join(f"{100 * mean[m]:.1f}" for m in COMPARED_METRICS) + " |")  # fmt: skip
    lines += [
        "",
        "## Mixing minus no mixing, same rebalancing (paired, percentage points)",
        "",
        "Paired bootstrap over the validation images of the pairs of runs on the same (split, seed), pooled; 95 % "
        "interval; p two-sided, Holm-adjusted over the comparisons of the table per metric.",
        "",
        "| rebalancing | mixer | pairs | " + " | ".join(LABELS[m] for m in COMPARED_METRICS) + " |",
        "|---|---|---|" + "---|" * len(COMPARED_METRICS),
    ]
    for (name, mixer), found_differences in differences.items():
        texts = []
        for d in found_differences:
            p = "< 0.001" if d.p_holm < 0.001 else f"{d.p_holm:.3f}"
            texts.append(f"{100 * d.estimate:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}], p {p}")
        lines.append(f"| {name} | {mixer} | {found_differences[0].pairs} | " + " | ".join(texts) + " |")
    if differences:
        bacc = COMPARED_METRICS.index("bacc")
        significant = [d[bacc] for d in differences.values() if d[bacc].significant]
        lower, higher = sum(d.estimate < 0 for d in significant), sum(d.estimate > 0 for d in significant)
        lines += [
            "",
            f"**Reading.** Of the {len(differences)} comparisons, mixing lowers BAcc significantly (Holm-adjusted p < "
            f"0.05) in {lower}, raises it in {higher}, and the difference is within the noise in "
            f"{len(differences) - lower - higher}. This scale trains {args.epochs} epochs from random weights; "
            "BagofTricks-LT trains its Mixup and Remix runs for 400 epochs on CIFAR with the same alpha 1, kappa 3 and "
            "tau 0.5 (`configs/cao_cifar/mixup/remix/cifar100_im100_remix_alpha10.yaml`), and Mixup is a regulariser "
            "whose benefit usually needs long training, so the answer here is about short training only: it does not "
            "test whether mixing adds to rebalancing at the paper's 150 epochs (docs/reproduction-gpu-recipe.md: "
            "`sampleweight grid --mixers none,mixup,remix`).",
        ]
    expected = len(REBALANCING) * len(MIXERS) * len(args.splits.split(",")) * len(args.seeds.split(","))
    finished = sum(cell.n for cell in found.values())
    lines += ["", "## What ran", ""]
    spent = f"; this invocation trained for {minutes:.0f} min (one run at a time)." if minutes is not None else "."
    lines.append(f"{finished} of the {expected} planned runs finished{spent}")
    seconds = [sum(e.get("seconds", 0.0) for e in read_epochs(run.path / RunDirectory.EPOCHS))
               for cell in found.values() for run in cell.runs]  # fmt: skip
    if seconds:
        keys = sorted({run.key for cell in found.values() for run in cell.runs})
        lines.append(f"Training time per run (the sum of its epochs): {min(seconds) / 60:.1f}-{max(seconds) / 60:.1f} "
                     f"min, {sum(seconds) / 60:.0f} min in all, on a 2-core VM shared with other work. (split, seed) "
                     f"pairs with finished runs: {', '.join(map(str, keys))}.")  # fmt: skip
    if finished < expected:
        lines.append("The study was stopped before the end: the tables hold only the finished runs, and a "
                     "comparison only the (split, seed) pairs that both setups finished. Rerun the command to "
                     "finish it (the grids resume).")  # fmt: skip
    lines += ["", "```bash", "nice -n 10 python benchmarks/reproduce_mixing.py", "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    commit = _commit(args.doc)
    minutes = None
    if not args.report_only:
        started = time.perf_counter()
        for grid in plan(args):
            run_grid(grid, progress=sys.stderr.isatty())
        minutes = (time.perf_counter() - started) / 60
    found = cells(args.out)
    text = render(args, found, compare(found, args.bootstrap), commit, minutes)
    args.doc.write_text(text)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
