"""Measure: the mean weight per sample of the class weighters under HAM10000's training class mix.

Under SGD the loss scale is the learning rate's: a weighter whose weights average ``s`` over the
training samples trains with ``s`` times the step size of ``none`` (ADAM divides the scale out, up to
its epsilon). This prints, for the training side of a split of the real HAM10000 metadata (the labels
only: no image is read), each built-in class weighter's mean weight per sample
(`sampleweight.BaseWeighter.mean_weight`) in each ``normalize`` mode, and the DRW conventions of
Cao et al.'s reference code (kaidic/LDAM-DRW) beside ours. Run from the repository root:

    python benchmarks/weight_scale.py                     # split 0, seed 0 of ../shared/data/HAM10000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

import sampleweight as sw
from sampleweight.data import read_dataset, split_class_counts

from benchtools import DEFAULT_DATA, default_out, finish

DEFAULT_OUT = default_out("weight_scale")
SETUPS = (
    ("none", {}),
    ("cb", {}),
    ("cb", {"normalize": "classes"}),
    ("es", {}),
    ("es", {"normalize": "classes"}),
    ("es", {"beta": 0.9999}),
    ("es", {"beta": 0.9999, "normalize": "classes"}),
    ("drw", {}),
    ("drw", {"normalize": "classes"}),
    ("drw", {"beta": 0.9999, "normalize": "classes"}),
)
"""Weighting and options; ``normalize="batch"`` (and so the default drw) is 1 by construction."""


def measure(data: str | Path, split: int, seed: int) -> dict:
    records = read_dataset(data)
    counts = split_class_counts(records, split, seed)
    rows = []
    for name, options in SETUPS:
        weighter = sw.create_weighter(name, class_counts=counts, num_epochs=10, **options)
        scale = weighter.mean_weight(counts)  # None for none: its weights do not depend on the class (all 1)
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        rows.append({"setup": label, "mean_weight": 1.0 if scale is None else scale})
    return {
        "benchmark": "weight_scale",
        "data": str(data),
        "split": split,
        "seed": seed,
        "classes": list(records.classes),
        "training_counts": counts.tolist(),
        "results": rows,
    }


def print_report(report: dict, console: Console) -> None:
    mix = ", ".join(f"{c} {n}" for c, n in zip(report["classes"], report["training_counts"], strict=True))
    table = Table(title=f"mean weight per sample, training side of split {report['split']} (seed {report['seed']})")
    table.add_column("weighting")
    table.add_column("mean weight per sample", justify="right")
    table.add_column("SGD step vs none", justify="right")
    for row in report["results"]:
        table.add_row(row["setup"], f"{row['mean_weight']:.4g}", f"{row['mean_weight']:.3g}x")
    console.print(table)
    console.print(f"training class counts: {mix}", highlight=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(measure(args.data, args.split, args.seed), args.out, print_report)


if __name__ == "__main__":
    main()
