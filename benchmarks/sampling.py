"""Benchmark: what drawing an epoch costs with each built-in sampler, against torch's own samplers.

For an epoch of ``--size`` indices (default 10^6) over a long-tailed training side (``--images`` images,
HAM10000's class shares by default), per sampler:

- ``draw``: the sampler plugin's global sequence as a tensor (`BaseSampler.epoch_indices`): the
  vectorised draw (``torch.multinomial`` over the classes, one uniform draw per index);
- ``iterate``: ``list(create_sampler(...))``, what a ``DataLoader`` consumes: the draw plus the
  sharding (one process) and the conversion to Python ints;
- ``shard of 8``: the same for rank 0 of 8 processes with a global batch of 256 (an eighth of the ints);

and, as references on the same machine, ``torch.randperm`` of the same length (the floor: a shuffled
pass) and ``list(WeightedRandomSampler(weights, size))`` with class-balanced per-sample weights (what
PyTorch users write for class-balanced sampling, one process only). The ratios are to those references;
times are medians over ``--rounds``.

Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/sampling.py --size 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import WeightedRandomSampler

import sampleweight as sw

from benchtools import default_out, finish

DEFAULT_OUT = default_out("sampling")
HAM10000_SHARES = (1113, 6705, 514, 327, 1099, 115, 142)  # MEL, NV, BCC, AKIEC, BKL, DF, VASC images
SAMPLER_OPTIONS = {"progressive": {"num_epochs": 10}, "drs": {"num_epochs": 10, "start_epoch": 0},
                   "repeat_factor": {"threshold": 0.1}}  # fmt: skip


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def long_tail(images: int) -> torch.Tensor:
    """``images`` class indices with HAM10000's class shares, shuffled."""
    shares = torch.tensor(HAM10000_SHARES, dtype=torch.float64)
    counts = (shares / shares.sum() * images).round().long().clamp_min(1)
    counts[counts.argmax()] += images - int(counts.sum())
    targets = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return targets[torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    targets = long_tail(args.images)
    size, rounds = args.size, args.rounds
    floor = median_seconds(lambda: torch.randperm(size), rounds)
    weights = (1.0 / torch.bincount(targets).double())[targets]
    torch_weighted = median_seconds(lambda: list(WeightedRandomSampler(weights, size)), rounds)
    results = {}
    for name in sw.list_samplers():
        options = {"targets": targets, "num_samples": size, "seed": 0, **SAMPLER_OPTIONS.get(name, {})}
        whole = sw.create_sampler(name, num_replicas=1, rank=0, **options)
        shard = sw.create_sampler(name, num_replicas=8, rank=0, batch_size=256, **options)
        whole.set_epoch(3)
        shard.set_epoch(3)
        draw = median_seconds(lambda s=whole: s.sampler.epoch_indices(3), rounds)
        iterate = median_seconds(lambda s=whole: (s.set_epoch(3), list(s)), rounds)  # set_epoch: draw again
        sharded = median_seconds(lambda s=shard: (s.set_epoch(3), list(s)), rounds)
        results[name] = {
            "draw_ms": 1e3 * draw,
            "iterate_ms": 1e3 * iterate,
            "shard_of_8_ms": 1e3 * sharded,
            "draw_vs_randperm": draw / floor,
            "iterate_vs_torch_weighted": iterate / torch_weighted,
        }
    return {
        "benchmark": "sampling",
        "size": size,
        "images": args.images,
        "rounds": rounds,
        "threads": args.threads,
        "randperm_ms": 1e3 * floor,
        "torch_weighted_sampler_ms": 1e3 * torch_weighted,
        "results": results,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
    }


def print_report(report: dict, console: Console) -> None:
    table = Table(
        title=f"an epoch of {report['size']:,} indices over {report['images']:,} images "
        f"({report['threads']} thread(s); randperm {report['randperm_ms']:.1f} ms, "
        f"WeightedRandomSampler {report['torch_weighted_sampler_ms']:.0f} ms)"
    )
    for column in ("sampler", "draw ms", "iterate ms", "shard of 8 ms", "draw / randperm", "iterate / torch"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for name, row in report["results"].items():
        table.add_row(
            name,
            f"{row['draw_ms']:.1f}",
            f"{row['iterate_ms']:.1f}",
            f"{row['shard_of_8_ms']:.1f}",
            f"{row['draw_vs_randperm']:.2f}",
            f"{row['iterate_vs_torch_weighted']:.2f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="indices per epoch")
    parser.add_argument("--images", type=int, default=10_015, help="training images (HAM10000's class shares)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the loader's main process)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_report)


if __name__ == "__main__":
    main()
