"""Benchmark: what sample weighting costs, next to plain cross-entropy.

Two measurements, in one process, interleaved so that machine noise hits every variant alike:

- ``step``: a whole training step of the flat model (forward, loss, backward, optimizer step) with
  ``WeightedLoss(loss, weighter)`` against the same step with ``torch.nn.functional.cross_entropy``.
  Each round times ``--steps-per-round`` consecutive steps per criterion, in a random order of the
  criteria. Reported as the median ratio over rounds, with the spread (interquartile range of the per-round
  ratios). The goal is every weighter within 1 % of plain CE.
- ``loss``: the criterion alone on fixed logits (forward + backward of the loss only), in
  microseconds, to show where the time goes (per-sample loss, the weighter, the weight check). As the
  rest of the step is the same code for every criterion, the criterion's extra time over
  ``F.cross_entropy`` divided by the plain step time (``loss_extra_share``) is the weighting's cost
  per step, resolved far below the step-to-step noise of the direct ratio. ``ops``: the operators
  the criterion dispatches per call (forward and backward), each about one kernel launch on a GPU,
  where a small batch can leave the host's launch rate as the limit.

The model runs as the trainer runs it (channels-last, fused ADAM), and the weight check is the
trainer's (``--validate deferred``: on the device, no host sync) unless ``--validate now`` asks for
the check in every call.

Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/weighting_overhead.py                       # CPU defaults: resnet10t, 64 px
    python benchmarks/weighting_overhead.py --device cuda --backbone vgg16 --image-size 299
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils._python_dispatch import TorchDispatchMode

import sampleweight as sw

from benchtools import default_out, finish, machine_facts, time_call

DEFAULT_OUT = default_out("weighting_overhead")
BASELINE = "plain CE"


def variants(
    class_counts: torch.Tensor, epochs: int, batch_size: int, validate: bool | str = "deferred"
) -> dict[str, Callable[..., torch.Tensor]]:
    """Every built-in weighter (and compositions) as a criterion, plus the plain-CE baseline."""
    facts = {"class_counts": class_counts, "num_epochs": epochs, "batch_size": batch_size, "validate": validate}
    criteria: dict[str, Callable[..., torch.Tensor]] = {BASELINE: F.cross_entropy}
    names = [n for n in sw.list_weighters() if n != "none"]
    for name in ["none", *names, "ohem+es"]:
        criteria[f"ce + {name}"] = sw.WeightedLoss("ce", name, **facts)
    criteria["focal + ohem"] = sw.WeightedLoss("focal", "ohem", gamma=1.0, **facts)
    return criteria


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def dispatched_ops(fn: Callable[[], object]) -> int:
    """Operators ``fn`` dispatches (forward and backward): about one kernel launch each on a GPU."""
    counter = _OpCounter()
    with counter:
        fn()
    return counter.count


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    num_classes = 7
    model = timm.create_model("cbam_vgg16", backbone=args.backbone, num_classes=num_classes, pretrained=False)
    model = model.to(device, memory_format=torch.channels_last)  # as the trainer runs it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=device.type in ("cpu", "cuda"))
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, num_classes, (args.batch_size,), device=device)
    class_counts = torch.tensor([1113, 6705, 514, 327, 1099, 115, 142])
    validate = {"now": True, "deferred": "deferred", "off": False}[args.validate]
    criteria = variants(class_counts, epochs=150, batch_size=args.batch_size, validate=validate)
    for criterion in criteria.values():
        if isinstance(criterion, torch.nn.Module):
            criterion.to(device).set_epoch(10)  # mid-curriculum: SPL/OHEM select part of the batch

    def step(criterion: Callable[..., torch.Tensor]) -> None:
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    logits = torch.randn(args.batch_size, num_classes, device=device, requires_grad=True)

    def loss_only(criterion: Callable[..., torch.Tensor]) -> None:
        criterion(logits, targets).backward()

    for criterion in criteria.values():  # warm up every path
        step(criterion)
        loss_only(criterion)
    ops = {name: dispatched_ops(lambda c=criterion: loss_only(c)) for name, criterion in criteria.items()}

    step_times: dict[str, list[float]] = {name: [] for name in criteria}
    loss_times: dict[str, list[float]] = {name: [] for name in criteria}
    order = list(criteria)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        for i in torch.randperm(len(order), generator=generator).tolist():
            name = order[i]
            steps = [time_call(lambda c=criteria[name]: step(c), device) for _ in range(args.steps_per_round)]
            step_times[name].append(sum(steps) / len(steps))
            loss_times[name].append(
                min(time_call(lambda c=criteria[name]: loss_only(c), device) for _ in range(args.loss_repeats))
            )

    results = {}
    base_steps = step_times[BASELINE]
    base_step, base_loss = statistics.median(base_steps), statistics.median(loss_times[BASELINE])
    for name in order:
        ratios = [t / b for t, b in zip(step_times[name], base_steps, strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        results[name] = {
            "step_ms": 1e3 * statistics.median(step_times[name]),
            "step_ratio": median,
            "step_ratio_iqr": [q1, q3],
            "loss_us": 1e6 * statistics.median(loss_times[name]),
            "ops": ops[name],
            # the rest of the step is the same code for every criterion: the criterion's extra time, per step
            "loss_extra_share": (statistics.median(loss_times[name]) - base_loss) / base_step,
        }
    return {
        "benchmark": "weighting_overhead",
        "device": str(device),
        **machine_facts(),
        "model": f"cbam_vgg16(backbone={args.backbone})",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "validate": args.validate,
        "results": results,
    }


def print_table(report: dict, console: Console) -> None:
    table = Table(
        title=f"weighting overhead: {report['model']}, {report['image_size']} px, batch {report['batch_size']}, "
        f"{report['device']}, {report['rounds']} interleaved rounds, weight check {report['validate']}"
    )
    columns = ("criterion", "step ms", "step / plain CE (IQR)", "loss fwd+bwd µs", "ops", "extra loss time / step")
    for column in columns:
        table.add_column(column, justify="right" if column != "criterion" else "left")
    for name, row in report["results"].items():
        q1, q3 = row["step_ratio_iqr"]
        table.add_row(
            name, f"{row['step_ms']:.1f}", f"{row['step_ratio']:.3f} ({q1:.3f}-{q3:.3f})", f"{row['loss_us']:.0f}",
            str(row["ops"]), f"{100 * row['loss_extra_share']:+.2f} %",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps-per-round", type=int, default=3, help="consecutive steps per timing (mean taken)")
    parser.add_argument(
        "--validate",
        choices=["now", "deferred", "off"],
        default="deferred",
        help="WeightedLoss's weight check: in every call (one host sync), deferred (the trainer's), or none",
    )
    parser.add_argument("--loss-repeats", type=int, default=20, help="loss-only timings per round (min taken)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
