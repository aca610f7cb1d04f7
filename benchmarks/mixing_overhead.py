"""Benchmark: what batch mixing costs per training step, as a ratio to the same step without it.

A whole training step of the flat model as the trainer runs it (channels-last, fused ADAM, ``WeightedLoss`` with
its deferred weight check): mixer call, forward, loss, backward, optimizer step, for each built-in mixer, against
the same step with no mixing (class indices to the loss). Interleaved in one process: each round times
``--steps-per-round`` consecutive steps per variant, the variants in a new random order every round, so that
machine noise hits them alike; reported as the median ratio over rounds with its interquartile range.

As on ``weighting_overhead.py``, the direct ratio is only as sharp as the machine's step-to-step noise; what
mixing adds is the mixer call and the loss on soft targets instead of class indices, which are also timed
alone (``mix_us``: the mixer on the batch; ``loss_extra_us``: the criterion's forward + backward on the mixed
targets minus on the class indices) and divided by the plain step time (``extra_share``): the cost of mixing per
step, resolved far below the noise of the direct ratio. Goal: under 2 % of a step on the CPU model.

Run from the repository root:

    python benchmarks/mixing_overhead.py             # cbam_vgg16 on resnet10t, 64 px, batch 20 (the CPU model)
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import timm
import torch
from rich.console import Console
from rich.table import Table

import sampleweight as sw

from benchtools import default_out, finish, machine_facts, time_call

DEFAULT_OUT = default_out("mixing_overhead")
BASELINE = "none"


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    class_counts = torch.tensor([1113, 6705, 514, 327, 1099, 115, 142])  # HAM10000's
    num_classes = len(class_counts)
    model = timm.create_model("cbam_vgg16", backbone=args.backbone, num_classes=num_classes, pretrained=False)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=device.type in ("cpu", "cuda"))
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    targets = torch.randint(0, num_classes, (args.batch_size,), device=device)
    criterion = sw.WeightedLoss(args.loss, args.weighter, class_counts=class_counts, validate="deferred").to(device)
    mixers = {name: sw.create_mixer(name, class_counts=class_counts, seed=0) for name in sw.list_mixers()}
    mixers = {BASELINE: mixers.pop(BASELINE), **mixers}
    state = {"step": 0}

    def mixed(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        state["step"] += 1
        return mixers[name](images, targets, epoch=0, step=state["step"], rank=0)

    def step(name: str) -> None:
        x, y = mixed(name)
        loss = criterion(model(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    logits = torch.randn(args.batch_size, num_classes, device=device, requires_grad=True)
    soft = {name: mixed(name)[1] for name in mixers}

    def loss_only(name: str) -> None:
        criterion(logits, soft[name]).backward()

    for name in mixers:  # warm up every path
        step(name)
        loss_only(name)
    step_times: dict[str, list[float]] = {name: [] for name in mixers}
    mix_times: dict[str, list[float]] = {name: [] for name in mixers}
    loss_times: dict[str, list[float]] = {name: [] for name in mixers}
    order = list(mixers)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        for i in torch.randperm(len(order), generator=generator).tolist():
            name = order[i]
            steps = [time_call(lambda n=name: step(n), device) for _ in range(args.steps_per_round)]
            step_times[name].append(sum(steps) / len(steps))
            mix_times[name].append(min(time_call(lambda n=name: mixed(n), device) for _ in range(args.repeats)))
            loss_times[name].append(min(time_call(lambda n=name: loss_only(n), device) for _ in range(args.repeats)))

    base_step = statistics.median(step_times[BASELINE])
    base_mix, base_loss = statistics.median(mix_times[BASELINE]), statistics.median(loss_times[BASELINE])
    results = {}
    for name in order:
        ratios = [t / b for t, b in zip(step_times[name], step_times[BASELINE], strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        mix_extra = statistics.median(mix_times[name]) - base_mix
        loss_extra = statistics.median(loss_times[name]) - base_loss
        results[name] = {
            "step_ms": 1e3 * statistics.median(step_times[name]),
            "step_ratio": median,
            "step_ratio_iqr": [q1, q3],
            "mix_us": 1e6 * statistics.median(mix_times[name]),
            "loss_extra_us": 1e6 * loss_extra,
            "extra_share": (mix_extra + loss_extra) / base_step,  # the rest of the step is the same code
        }
    return {
        "benchmark": "mixing_overhead",
        "device": str(device),
        **machine_facts(),
        "timm": timm.__version__,
        "model": f"cbam_vgg16(backbone={args.backbone})",
        "criterion": f"{args.loss} + {args.weighter}",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "results": results,
    }


def print_table(report: dict, console: Console) -> None:
    table = Table(
        title=f"mixing overhead: {report['model']}, {report['criterion']}, {report['image_size']} px, batch "
        f"{report['batch_size']}, {report['device']}, {report['rounds']} interleaved rounds"
    )
    for column in ("mixer", "step ms", "step / no mixing (IQR)", "mixer µs", "extra loss µs", "extra time / step"):
        table.add_column(column, justify="left" if column == "mixer" else "right")
    for name, row in report["results"].items():
        q1, q3 = row["step_ratio_iqr"]
        table.add_row(
            name, f"{row['step_ms']:.1f}", f"{row['step_ratio']:.3f} ({q1:.3f}-{q3:.3f})", f"{row['mix_us']:.0f}",
            f"{row['loss_extra_us']:+.0f}", f"{100 * row['extra_share']:+.2f} %",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--weighter", default="cb")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps-per-round", type=int, default=3, help="consecutive steps per timing (mean taken)")
    parser.add_argument("--repeats", type=int, default=20, help="mixer-only and loss-only timings per round (min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
