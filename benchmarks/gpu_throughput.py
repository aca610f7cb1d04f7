"""Benchmark: the paper's models at full size on a GPU, and what the whole comparison grid costs.

On CUDA (one prepared run; also runs on the CPU at toy sizes for its smoke test):

1. ``steps``: training images/s of ``cbam_vgg16`` and ``hierarchical_vgg16`` (VGG16 backbone) at
   ``--image-size`` (299) for each batch size in ``--batch-sizes`` (20 = the paper's, and larger),
   under fp32, bf16 autocast, bf16 + channels_last (the trainer's default), the same with the loss
   read on the host every step (what the trainer's deferred checks avoid), and (``--compile``)
   bf16 + channels_last + ``torch.compile``. Each step is forward, ``WeightedLoss("ce", "ohem")``,
   backward, fused ADAM step, timed back to back as in training.
2. ``flops``: FLOPs of one training step (``torch.utils.flop_counter``), hence the achieved TFLOP/s,
   against the measured bf16 matmul ceiling of the card.
3. ``loader``: the real input pipeline (memory-mapped uint8 cache -> pinned batches -> GPU
   `BatchAugment`) feeding the fastest configuration: share of step time spent waiting for data.
4. ``epoch``: the time of one ISIC-sized epoch (8,000 training + 2,000 validation images) per model,
   and from it the estimated time of the paper's full grid (2 models x 2 losses x 5 weightings x 2
   optimizers x 2 splits; 150 epochs flat, 250 hierarchical).

Prints tables and writes JSON (``--out``). On a GPU machine, from the repository root:

    python benchmarks/gpu_throughput.py --compile                      # ~5 minutes on an H100/H200
    python benchmarks/gpu_throughput.py --device cpu --image-size 64 --batch-sizes 4 --steps 2 --backbone test_resnet
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import timm
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

import sampleweight as sw
from sampleweight.data import BatchAugment, CachedImageDataset

from benchtools import DEFAULT_DATA, default_out, finish, sync

DEFAULT_OUT = default_out("gpu_throughput")
MODELS = ("cbam_vgg16", "hierarchical_vgg16")
# The paper's grid: models x losses x weightings x optimizers x splits, and epochs per model.
GRID_RUNS_PER_MODEL = 2 * 5 * 2 * 2
PAPER_EPOCHS = {"cbam_vgg16": 150, "hierarchical_vgg16": 250}
ISIC_TRAIN, ISIC_VAL = 8000, 2000


def matmul_ceiling(device: torch.device, size: int) -> float:
    """Measured bf16 (CUDA) / fp32 (CPU) matmul TFLOP/s: the practical ceiling of the device."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    repeats = 20 if device.type == "cuda" else 2
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def make_step(model: torch.nn.Module, device: torch.device, config: dict[str, bool]) -> Callable:
    """One training step closure, as the trainer runs it: autocast forward, ``WeightedLoss``, backward, fused ADAM.

    The trainer's loop never waits for the device (the weight check is deferred); with
    ``config["read"]`` the step reads its loss on the host and checks the weights in the call, as a
    loop printing the loss every step does, to show what that wait costs.
    """
    validate = True if config["read"] else "deferred"
    criterion = sw.WeightedLoss("ce", "ohem", num_epochs=150, batch_size=20, validate=validate).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=device.type in ("cpu", "cuda"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config["bf16"] else contextlib.nullcontext()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if config["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            output = model(x)
        loss = criterion(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if config["read"]:
            loss.item()
        return loss

    return step


def build(name: str, args: argparse.Namespace, device: torch.device, config: dict[str, bool]):
    torch.manual_seed(0)
    model = timm.create_model(name, backbone=args.backbone, num_classes=7, pretrained=False).to(device)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if config["compile"] else model


def step_flops(name: str, args: argparse.Namespace, batch: int) -> int:
    """FLOPs of one training step (forward + backward), counted on the CPU at the benchmark's shape."""
    model = timm.create_model(name, backbone=args.backbone, num_classes=7, pretrained=False)
    x = torch.randn(batch, 3, args.image_size, args.image_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops()


def time_steps(step: Callable, x: torch.Tensor, y: torch.Tensor, device: torch.device, steps: int) -> float:
    """Seconds per step, back to back as in training (one sync at the end), after warm-up (compile, autotuning)."""
    for _ in range(3):
        step(x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    return (time.perf_counter() - start) / steps


def _config(bf16: bool = True, channels_last: bool = True, compile: bool = False, read: bool = False) -> dict:
    return {"bf16": bf16, "channels_last": channels_last, "compile": compile, "read": read}


CONFIGS = {
    "fp32": _config(bf16=False, channels_last=False),
    "bf16": _config(channels_last=False),
    "bf16+cl": _config(),
    "bf16+cl, loss read every step": _config(read=True),
    "bf16+cl+compile": _config(compile=True),
}
"""Execution settings measured; the trainer's default on CUDA is ``bf16+cl`` (``--compile`` adds the last)."""


def configurations(with_compile: bool) -> list[str]:
    return [name for name, config in CONFIGS.items() if with_compile or not config["compile"]]


def bench_steps(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for name in MODELS:
        for batch in args.batch_sizes:
            flops = step_flops(name, args, batch)
            x = torch.randn(batch, 3, args.image_size, args.image_size, device=device)
            y = torch.randint(0, 7, (batch,), device=device)
            for label in configurations(args.compile):
                model = build(name, args, device, CONFIGS[label])
                seconds = time_steps(make_step(model, device, CONFIGS[label]), x, y, device, args.steps)
                rows.append({
                    "model": name, "batch": batch, "config": label, "step_ms": 1e3 * seconds,
                    "images_per_second": batch / seconds, "tflops": flops / seconds / 1e12,
                })  # fmt: skip
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def bench_loader(args: argparse.Namespace, device: torch.device, best: dict) -> dict:
    """Feed the fastest configuration from the real cached pipeline; measure time waiting for batches."""
    from sampleweight.data import prepare_cache, read_dataset

    if args.data.exists():
        records = read_dataset(args.data)
        cached = prepare_cache(records, args.image_size, cache_dir=args.cache_dir, progress=True)
        images, labels = cached.images, records.labels
    else:  # no data set here: a random cache of the same shape and dtype
        images = np.random.default_rng(0).integers(0, 256, (512, 3, args.image_size, args.image_size), np.uint8)
        labels = np.zeros(len(images), dtype=np.int64)
    batch = best["batch"]
    loader = DataLoader(
        CachedImageDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
    )  # fmt: skip
    augment = BatchAugment(args.image_size).to(device)
    model = build(best["model"], args, device, CONFIGS[best["config"]])
    step = make_step(model, device, CONFIGS[best["config"]])
    waits, steps = [], []
    iterator = iter(loader)
    for i in range(args.loader_steps + 3):
        start = time.perf_counter()
        try:
            x, y, _ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            x, y, _ = next(iterator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        sync(device)
        waited = time.perf_counter() - start
        start = time.perf_counter()
        step(augment(x), y)
        sync(device)
        if i >= 3:
            waits.append(waited)
            steps.append(time.perf_counter() - start)
    wait, compute = sum(waits), sum(steps)
    return {
        "model": best["model"], "batch": batch, "config": best["config"], "workers": args.workers,
        "wait_share": wait / (wait + compute), "images_per_second": batch * len(steps) / (wait + compute),
    }  # fmt: skip


def estimate_grid(rows: list[dict], args: argparse.Namespace) -> dict:
    """Per model at the paper's batch size 20 (best configuration): one epoch and the whole grid."""
    estimate = {}
    for name in MODELS:
        candidates = [r for r in rows if r["model"] == name and r["batch"] == min(args.batch_sizes)]
        best = max(candidates, key=lambda r: r["images_per_second"])
        # validation: forward only, about a third of a training step per image
        epoch = ISIC_TRAIN / best["images_per_second"] + ISIC_VAL / (3 * best["images_per_second"])
        estimate[name] = {
            "config": best["config"], "epoch_seconds": epoch, "run_hours": epoch * PAPER_EPOCHS[name] / 3600,
            "grid_hours": epoch * PAPER_EPOCHS[name] * GRID_RUNS_PER_MODEL / 3600,
        }  # fmt: skip
    estimate["total_grid_hours"] = sum(v["grid_hours"] for v in estimate.values() if isinstance(v, dict))
    return estimate


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    ceiling = matmul_ceiling(device, args.matmul_size)
    rows = bench_steps(args, device)
    best = max(rows, key=lambda r: r["images_per_second"])
    return {
        "benchmark": "gpu_throughput", "date": date.today().isoformat(), "device": str(device), "card": card,
        "torch": torch.__version__, "cuda": torch.version.cuda, "backbone": args.backbone,
        "image_size": args.image_size, "ceiling_tflops": ceiling, "steps": rows,
        "loader": bench_loader(args, device, best), "estimate": estimate_grid(rows, args),
    }  # fmt: skip


def print_tables(report: dict, console: Console) -> None:
    table = Table(
        title=f"{report['card']} ({report['date']}): {report['backbone']} at {report['image_size']} px; "
        f"ceiling {report['ceiling_tflops']:.3g} TFLOP/s"
    )
    for column in ("model", "batch", "config", "step ms", "images/s", "TFLOP/s", "% ceiling"):
        table.add_column(column, justify="left" if column in ("model", "config") else "right")
    for row in report["steps"]:
        share = 100 * row["tflops"] / report["ceiling_tflops"]
        table.add_row(
            row["model"], str(row["batch"]), row["config"], f"{row['step_ms']:.1f}",
            f"{row['images_per_second']:.0f}", f"{row['tflops']:.1f}", f"{share:.0f}",
        )  # fmt: skip
    console.print(table)
    loader = report["loader"]
    console.print(
        f"loader ({loader['workers']} workers, {loader['model']} batch {loader['batch']} {loader['config']}): "
        f"{100 * loader['wait_share']:.1f}% of the time waiting for data, {loader['images_per_second']:.0f} images/s"
    )
    for name in MODELS:
        e = report["estimate"][name]
        console.print(
            f"{name}: one ISIC epoch {e['epoch_seconds']:.0f} s ({e['config']}), one run {e['run_hours']:.1f} h, "
            f"its 40 grid runs {e['grid_hours']:.0f} h"
        )
    console.print(f"the paper's full grid (80 runs) on one such device: {report['estimate']['total_grid_hours']:.0f} h")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 64, 128])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--loader-steps", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data for the loader test (cached first)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_tables)


if __name__ == "__main__":
    main()
