"""What the benchmark scripts share: where the data and the reports are, timing on a device, the report."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from sampleweight.data import read_dataset

DEFAULT_DATA = Path(
    os.environ.get("SAMPLEWEIGHT_HAM10000") or Path(__file__).resolve().parents[1].parent / "shared/data/HAM10000"
)
"""The real HAM10000 copy: ``$SAMPLEWEIGHT_HAM10000``, else ``../shared/data/HAM10000`` beside the repository."""


def default_out(name: str) -> Path:
    """Where benchmark ``name`` writes its JSON by default (a temporary folder, never the repository)."""
    return Path(tempfile.gettempdir()) / "sampleweight-benchmarks" / f"{name}.json"


def machine_facts() -> dict[str, object]:
    """What a timing depends on besides its code: ``cpu``, torch's ``threads`` and the ``torch`` version."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for ``fn()`` including the device work it queued."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def finish(report: dict, out: Path, print_report: Callable[[dict, Console], None]) -> dict:
    """Print ``report`` as tables and write it to ``out`` as JSON; return it."""
    print_report(report, Console())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def subset_as_csv(data: Path, limit: int, folder: Path) -> Path:
    """``limit`` images spread over a data set, as a ``labels.csv`` layout (images linked, not copied)."""
    records = read_dataset(data)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "group"])
        # spread over the whole data set (its metadata is sorted by diagnosis): every class is in
        for i in np.linspace(0, len(records) - 1, min(limit, len(records))).astype(int):
            source = records.paths[i]
            link = images / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
            writer.writerow([records.image_ids[i], records.classes[records.labels[i]], records.groups[i]])
    return folder


def study_folder(setup: str) -> str:
    """The folder name of a study's setup (``bce, class_balanced sampler`` -> ``bce_class_balanced_sampler``)."""
    return setup.replace(" ", "_").replace(",", "").replace("=", "-").replace("+", "-")


def study_command(args: argparse.Namespace, split: int, seed: int, out: Path, task: Sequence[str]) -> list[str]:
    """``sampleweight train`` of one run of a study at the reproduction scale of ``args`` (data, image size, epochs,
    batch, lr, its cache under ``args.out``), with ``task``'s options (task, loss, weighter, sampler ...)."""
    shared = [
        "--data", str(args.data), "--model", "cbam_vgg16", "--backbone", "test_resnet", "--no-pretrained",
        "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--split", str(split), "--seed", str(seed), "--cache-dir", str(args.out / "cache"),
        "--quiet", "--out", str(out),
    ]  # fmt: skip
    return [sys.executable, "-m", "sampleweight", "train", *shared, *task]


def train_study(args: argparse.Namespace, setups: Sequence[str], options: Callable[[str], Sequence[str]]) -> None:
    """Train every setup on every (split, seed) of ``args``, one run at a time with ``args.threads`` threads:
    a finished run is kept, an interrupted one resumed (so a stopped study picks up where it stopped).

    Args:
        args: The study's arguments (``out``, ``splits``, ``seeds``, ``threads`` and `study_command`'s).
        setups: The setups, in training order within each (split, seed).
        options: A setup's ``sampleweight train`` options (task, loss, weighter, sampler ...).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for seed in args.seeds:  # both splits of the first seed first: a shorter study still spans the splits
        for split in args.splits:
            for setup in setups:
                out = args.out / study_folder(setup) / f"s{split}-seed{seed}"
                if (out / "metrics.json").is_file():
                    continue
                resume = ["--resume"] if (out / "checkpoint.pt").is_file() else ["--overwrite"]
                started = time.time()
                print(f"{setup} split {split} seed {seed}", flush=True)
                command = study_command(args, split, seed, out, options(setup))
                subprocess.run([*command, *resume], check=True, env=env)
                print(f"  {time.time() - started:.0f} s", flush=True)


def study_arguments(description: str, out: str, page: Path) -> argparse.ArgumentParser:
    """The arguments every real-data study takes: the data, where its runs go, the (split, seed) pairs, the
    reproduction scale (48 px, 5 epochs, batch 32, lr 1e-3), threads per run, paired resamples, the page it writes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / out)
    parser.add_argument("--splits", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--page", type=Path, default=page)
    return parser


def holm_per_metric(comparisons: dict, metrics: Sequence[str]) -> dict[tuple[str, str], float]:
    """Holm-adjusted p of each setup's pooled difference, one family per metric (over the setups compared).

    Args:
        comparisons: Setup -> `sampleweight.studies.statistics.Comparison` against the study's baseline.
        metrics: The compared metrics, in the order of each comparison's ``pooled``.
    """
    from sampleweight.studies.statistics import holm

    adjusted = {}
    names = list(comparisons)
    for i, metric in enumerate(metrics):
        ps = holm([comparisons[n].pooled[i].p for n in names]) if names else []
        adjusted.update({(n, metric): float(p) for n, p in zip(names, ps, strict=True)})
    return adjusted


def spread_cells(values: np.ndarray | None, columns: int) -> list[str]:
    """``mean ± sd`` over a setup's runs (rows of ``values``) of each of the first ``columns`` figures; ``-`` none."""
    if values is None or len(values) == 0:
        return ["-"] * columns
    return [f"{values[:, i].mean():.4f} ± {values[:, i].std(ddof=1) if len(values) > 1 else 0:.4f}"
            for i in range(columns)]  # fmt: skip


def difference_cells(
    setup: str, comparisons: dict, adjusted: dict[tuple[str, str], float], metrics: Sequence[str], baseline: str
) -> list[str]:
    """A setup's pooled difference from the baseline per metric: ``+d [low, high], p P (P after Holm)``; the
    baseline's row says ``baseline``, a setup without a comparison ``-``."""
    if setup not in comparisons:
        return ["baseline" if setup == baseline else "-"] * len(metrics)
    cells = []
    for i, metric in enumerate(metrics):
        d = comparisons[setup].pooled[i]
        cells.append(f"{d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}], p {d.p:.3f} ({adjusted[setup, metric]:.3f})")
    return cells
