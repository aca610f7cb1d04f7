"""What the benchmark scripts share: timing on a device, and writing the report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console


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
