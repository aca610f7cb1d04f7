"""What the ISIC-style evaluation gives at CPU scale on real HAM10000 images: TTA, an ensemble, logit adjustment.

Trains one small flat model per ``--weighters`` entry (``cbam_vgg16`` on timm's ``test_resnet``, randomly
initialised, 48 px, 5 epochs, ADAM lr 1e-3, batch 32: the setting of ``docs/reproduction-cpu-results.md``) on the
paper's split 0 of the real HAM10000 images, then scores them with ``sampleweight evaluate`` on that split's
validation side, held out from training (written as a ``labels.csv`` of linked images): each run alone with
every ``--tta``, with post-hoc logit adjustment (tau 1), and the ensemble of the runs (mean and geometric,
with and without logit adjustment). Reported per evaluation: BAcc and the mean one-vs-rest AUC with their
95 % bootstrap intervals, and the seconds of the ``evaluate`` call (image caches built beforehand; the
bootstrap included) as a ratio to the same runs' plain evaluation. A check:
each run's plain evaluation gives the BAcc of its own ``metrics.json`` (the same images).

The runs are resumable (a finished run is reused). From the repository root, on a shared 2-core CPU:

    nice -n 10 python benchmarks/evaluation_ham10000.py                     # about 10 minutes
    python benchmarks/evaluation_ham10000.py --limit 300 --epochs 1         # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from sampleweight.data import build_eval_dataset, read_dataset, split_indices
from sampleweight.engine.config import TrainConfig
from sampleweight.engine.evaluation import TTA_MODES, evaluate, tta_input_size
from sampleweight.engine.training import train

from benchtools import DEFAULT_DATA, default_out, finish, subset_as_csv

DEFAULT_OUT = default_out("evaluation_ham10000")
DEFAULT_WORK = Path(tempfile.gettempdir()) / "sampleweight-evaluation"


def held_out(data: str | Path, folder: Path, split: int = 0, seed: int = 0) -> Path:
    """The validation side of a run's split as a ``labels.csv`` layout (images linked, not copied)."""
    records = read_dataset(data)
    _, validation = split_indices(records, split=split, seed=seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "group"])
        for i in validation:
            link = images / records.paths[i].name
            if not link.exists():
                link.symlink_to(records.paths[i].resolve())
            writer.writerow([records.image_ids[i], records.classes[records.labels[i]], records.groups[i]])
    return folder


def trained(args: argparse.Namespace, data: str | Path, weighting: str) -> Path:
    out = args.work / f"run-{weighting}"
    if not (out / "metrics.json").is_file():
        config = TrainConfig(
            data=str(data), model="cbam_vgg16", backbone=args.backbone, pretrained=False,
            image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weighters=[weighting], split=0, seed=0, out=out, quiet=True, overwrite=True,
        )  # fmt: skip
        train(config)
    return out


def scored(name: str, runs: list[Path], holdout: Path, args: argparse.Namespace, **options: Any) -> dict:
    folder = args.work / "evaluations" / name
    start = time.perf_counter()
    metrics, _ = evaluate(runs, holdout, out=folder, quiet=True, bootstrap=args.bootstrap, batch_size=64, **options)
    seconds = time.perf_counter() - start
    return {
        "evaluation": name,
        "runs": len(runs),
        **{key: options.get(key) for key in ("tta", "combine", "logit_adjust")},
        "bacc": metrics["bacc"],
        "bacc_ci": metrics.get("ci", {}).get("bacc"),
        "auc": metrics["auc"],
        "auc_ci": metrics.get("ci", {}).get("auc"),
        "recall": {c: metrics["per_class"][c]["recall"] for c in metrics["classes"]},
        "seconds": seconds,
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = subset_as_csv(args.data, args.limit, args.work / "data") if args.limit else args.data
    runs = {weighting: trained(args, data, weighting) for weighting in args.weighters}
    holdout = held_out(data, args.work / "holdout")
    for tta in ("none", "crops"):  # the image caches first, so that no evaluation's time includes building one
        build_eval_dataset(read_dataset(holdout), image_size=tta_input_size(tta, args.image_size), progress=False)
    rows = []
    for weighting, path in runs.items():
        group = [scored(f"{weighting} tta={tta}", [path], holdout, args, tta=tta) for tta in TTA_MODES]
        group.append(scored(f"{weighting} logit_adjust=1", [path], holdout, args, tta="none", logit_adjust=1.0))
        own = json.loads((path / "metrics.json").read_text())["bacc"]
        if abs(group[0]["bacc"] - own) > 1e-9:  # the held-out images are the run's own validation side
            raise AssertionError(f"{weighting}: plain evaluation BAcc {group[0]['bacc']} != its run's {own}")
        rows += _timed(group)
    if len(runs) > 1:
        members = list(runs.values())
        group = [scored(f"ensemble {combine}", members, holdout, args, tta="none", combine=combine)
                 for combine in ("mean", "geometric")]  # fmt: skip
        group.append(scored("ensemble mean tta=flip-rot", members, holdout, args, tta="flip-rot", combine="mean"))
        group.append(scored("ensemble mean logit_adjust=1", members, holdout, args, tta="none", combine="mean",
                            logit_adjust=1.0))  # fmt: skip
        rows += _timed(group)
    return {
        "benchmark": "evaluation_ham10000",
        "data": str(args.data),
        "limit": args.limit,
        "held_out_images": sum(1 for _ in open(holdout / "labels.csv")) - 1,
        "setting": {k: getattr(args, k) for k in ("backbone", "image_size", "epochs", "batch_size", "lr", "threads")},
        "results": rows,
    }


def _timed(group: list[dict]) -> list[dict]:
    """Each evaluation's seconds over the first one's (the same runs, no TTA)."""
    for row in group:
        row["time_ratio"] = row["seconds"] / group[0]["seconds"]
    return group


def print_report(report: dict, console: Console) -> None:
    table = Table(title=f"evaluate on {report['held_out_images']} held-out HAM10000 images (split 0)")
    for column in ("evaluation", "BAcc [95 % CI]", "mean AUC [95 % CI]", "time ratio"):
        table.add_column(column, justify="left" if column == "evaluation" else "right")
    for row in report["results"]:
        cells = []
        for key in ("bacc", "auc"):
            interval = row[f"{key}_ci"]
            low_high = f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else ""
            cells.append(f"{100 * row[key]:.1f}{low_high}")
        table.add_row(row["evaluation"], *cells, f"{row['time_ratio']:.1f}")
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="use N images spread over the data set (0: all)")
    parser.add_argument("--weighters", nargs="+", default=["none", "es"])
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="runs, held-out set and evaluations")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_report)


if __name__ == "__main__":
    main()
