"""What the benchmark scripts share: where the data and the reports are, timing on a device, the report."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable
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
