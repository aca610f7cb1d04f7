"""Benchmark: the cost of a sharpness-aware step (sam, imbsam) as a ratio to a plain step of its base optimizer.

A SAM step runs two forward and backward passes (ImbSAM three), so about 2x (3x) the plain step is expected; the
rest (the perturbation: one norm over all gradients, two in-place additions per parameter) is small. Each round
times ``--steps-per-round`` training steps of the trainer's own step (``batch_closure`` with a ``WeightedLoss``,
channels-last) for every optimizer in a random order, on the same batch; reported as the median per-round ratio to
the base optimizer's step, with its interquartile range.

Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/sam_step.py                          # CPU defaults: resnet10t, 64 px, batch 32
    python benchmarks/sam_step.py --device cuda --backbone vgg16 --image-size 299 --batch-size 20
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import random
import statistics
from pathlib import Path

import timm
import torch
from rich.console import Console
from rich.table import Table

import sampleweight as sw
from sampleweight.engine.training import batch_closure

from benchtools import default_out, finish, time_call

DEFAULT_OUT = default_out("sam_step")
BASE = "sgd"
VARIANTS = ("sgd", "sam", "imbsam")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    classes = 7
    counts = torch.tensor([5300, 890, 880, 410, 260, 115, 92])  # HAM10000's training side, roughly
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(args.batch_size, device=device) % classes
    indices = torch.arange(args.batch_size, device=device)
    steps: dict[str, object] = {}
    for name in VARIANTS:
        model = timm.create_model(args.backbone, num_classes=classes).to(device, memory_format=torch.channels_last)
        criterion = sw.WeightedLoss("ce", "none")
        optimizer = sw.create_optimizer(name, model.parameters(), lr=1e-3, device=device, class_counts=counts)
        closure_step = bool(sw.plugins.get_registry().info("optimizers", name).get("closure"))

        def step(model=model, criterion=criterion, optimizer=optimizer, closure_step=closure_step) -> None:
            optimizer.zero_grad(set_to_none=True)
            if closure_step:
                optimizer.step(batch_closure(model, criterion, contextlib.nullcontext(), x, labels, indices))
            else:
                criterion(model(x), labels, indices=indices).backward()
                optimizer.step()

        step()  # warm-up: allocations, the optimizer's state
        steps[name] = step

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    order = random.Random(0)
    for _ in range(args.rounds):
        names = list(VARIANTS)
        order.shuffle(names)
        for name in names:
            step = steps[name]
            times[name].append(
                time_call(lambda step=step: [step() for _ in range(args.steps_per_round)], device)  # type: ignore[operator]
                / args.steps_per_round
            )
    rows = {}
    for name in VARIANTS:
        ratios = sorted(t / b for t, b in zip(times[name], times[BASE], strict=True))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        rows[name] = {
            "ms_per_step": 1000 * statistics.median(times[name]),
            "ratio_to_sgd": statistics.median(ratios),
            "iqr": [quartiles[0], quartiles[2]],
        }
    report = {
        "benchmark": "sam_step",
        "device": str(device),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "settings": vars(args) | {"out": str(args.out)},
        "steps": rows,
    }
    return finish(report, args.out, print_report)


def print_report(report: dict, console: Console) -> None:
    table = Table(title=f"a step on {report['device']}: sharpness-aware against its base (sgd)")
    for column in ("optimizer", "ms/step", "ratio to sgd", "IQR"):
        table.add_column(column)
    for name, row in report["steps"].items():
        low, high = row["iqr"]
        table.add_row(name, f"{row['ms_per_step']:.1f}", f"{row['ratio_to_sgd']:.2f}", f"{low:.2f}-{high:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
