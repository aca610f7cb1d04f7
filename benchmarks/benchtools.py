"""What the benchmark scripts share: where the data and the reports are, timing on a device, the report."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

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
