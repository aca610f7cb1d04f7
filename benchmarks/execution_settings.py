"""Benchmark: what the trainer's execution defaults buy on a training step (channels-last, fused optimizer).

For each model (``name:backbone@size/batch``), four ways to run the same training step (forward,
cross-entropy, backward, ADAM step): the default memory format with ``torch.optim.Adam`` as most loops
write it, channels-last model and input, ``Adam(fused=True)``, and both (the trainer's default on the
CPU and CUDA). The variants run interleaved, in a new random order each round; reported as the
median time per step and its ratio to the default in the same round (median and IQR).

Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/execution_settings.py
    python benchmarks/execution_settings.py --models cbam_vgg16:vgg16@299/20 --device cuda
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import sampleweight  # noqa: F401  (registers cbam_vgg16 and hierarchical_vgg16 with timm)

from benchtools import default_out, finish, machine_facts, time_call

DEFAULT_OUT = default_out("execution_settings")
DEFAULT_MODELS = [
    "cbam_vgg16:resnet10t@64/20",
    "cbam_vgg16:resnet18@128/20",
    "hierarchical_vgg16:resnet10t@64/20",
    "cbam_vgg16:vgg16@128/4",
]
VARIANTS = {  # name: (channels_last, fused)
    "default": (False, False),
    "channels-last": (True, False),
    "fused Adam": (False, True),
    "channels-last + fused (ours)": (True, True),
}


def parse_model(spec: str) -> tuple[str, str, int, int]:
    """``name:backbone@size/batch`` -> its parts."""
    name, rest = spec.split(":")
    backbone, rest = rest.split("@")
    size, batch = rest.split("/")
    return name, backbone, int(size), int(batch)


def make_step(spec: str, channels_last: bool, fused: bool, device: torch.device):
    """A training-step closure for one model and one variant (same initial weights for every variant)."""
    name, backbone, size, batch = parse_model(spec)
    torch.manual_seed(0)
    model = timm.create_model(name, backbone=backbone, num_classes=7, pretrained=False).to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, **({"fused": True} if fused else {}))
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 7, (batch,), device=device)
    hierarchical = name.startswith("hierarchical")  # returns log-probabilities

    def step() -> None:
        output = model(x)
        loss = F.nll_loss(output, y) if hierarchical else F.cross_entropy(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    shuffle = random.Random(0)
    results = []
    for spec in args.models:
        steps = {variant: make_step(spec, *settings, device) for variant, settings in VARIANTS.items()}
        for step in steps.values():  # warm up (oneDNN/cuDNN pick their kernels for these shapes)
            step()
            step()
        times: dict[str, list[float]] = {variant: [] for variant in steps}
        for _ in range(args.rounds):
            for variant in shuffle.sample(list(steps), k=len(steps)):
                times[variant].append(time_call(steps[variant], device))
        for variant, values in times.items():
            ratios = [t / base for t, base in zip(values, times["default"], strict=True)]
            q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            results.append({
                "model": spec, "variant": variant, "step_ms": 1e3 * statistics.median(values),
                "ratio": median, "ratio_iqr": [q1, q3],
            })  # fmt: skip
        del steps
    return {
        "benchmark": "execution_settings",
        "device": str(device),
        **machine_facts(),
        "rounds": args.rounds,
        "results": results,
    }


def print_table(report: dict, console: Console) -> None:
    table = Table(title=f"execution settings: training step on {report['device']}, {report['rounds']} rounds")
    for column in ("model", "variant", "step ms", "/ default (IQR)"):
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")
    for row in report["results"]:
        q1, q3 = row["ratio_iqr"]
        table.add_row(row["model"], row["variant"], f"{row['step_ms']:.1f}", f"{row['ratio']:.3f} ({q1:.3f}-{q3:.3f})")
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="name:backbone@size/batch")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
