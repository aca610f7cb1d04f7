"""Benchmark: our trainer against a minimal hand-written timm/PyTorch loop, as an images/s ratio.

The same model (``cbam_vgg16`` with a small timm backbone), data (``--limit`` images spread over
HAM10000, split by lesion), batch size, optimizer and epochs, each epoch followed by a validation
pass, four ways:

- ``ours``: ``sampleweight.engine.training.train`` with a run directory (checkpoint, metrics, predictions
  every epoch), reading the image cache, augmenting whole batches (`BatchAugment`), ``WeightedLoss``
  with ``ohem``;
- ``loop (cached)``: a minimal loop over the same cache with the same batch augmentation and
  ``F.cross_entropy`` (no weighting, no checkpoints, no metrics beyond accuracy), written as most
  loops are: default memory format, default ``torch.optim.Adam``;
- ``loop (cached, tuned)``: the same loop with the execution settings our trainer picks on this
  device (channels-last model and input, ``Adam(fused=True)``): what is left is the framework tax;
- ``loop (JPEG)``: a plain loop that decodes, colour-normalises and resizes every JPEG every epoch and
  augments per sample with torchvision (``--jpeg-workers`` loader processes), as a loop without a
  cache does.

Each variant's time includes its set-up (splitting the data, building the model). The variants run
interleaved ``--rounds`` times, in a new random order each round (median taken; ``ratio_per_round``
pairs each loop with ours in the same round). The cache is built once before timing
(``sampleweight prepare`` does this ahead of training).
Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/trainer_vs_loop.py --limit 1000 --image-size 64 --epochs 2
"""

from __future__ import annotations

import argparse
import functools
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from sampleweight.data import (
    BatchAugment,
    CachedImageDataset,
    eval_transform,
    prepare_cache,
    preprocess_image,
    read_dataset,
    split_indices,
    train_transform,
)
from sampleweight.engine.config import TrainConfig
from sampleweight.engine.training import train

from benchtools import DEFAULT_DATA, default_out, finish, machine_facts, subset_as_csv

DEFAULT_OUT = default_out("trainer_vs_loop")


class JpegDataset(Dataset):
    """What a loop without a cache does: decode + colour constancy + resize + augment, every time."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int, transform) -> None:
        self.paths, self.labels, self.size, self.transform = paths, labels, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(preprocess_image(self.paths[i], self.size).copy()).permute(2, 0, 1)
        return self.transform(image), int(self.labels[i])


def plain_loop(
    model, optimizer, train_loader, val_loader, epochs: int, augment=None, normalize=None, channels_last=False
) -> None:
    """A minimal training loop: forward, cross-entropy, backward, step; then validation accuracy."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for _ in range(epochs):
        model.train()
        for batch in train_loader:
            images, labels = batch[0], batch[1]
            x = augment(images) if augment is not None else images
            loss = F.cross_entropy(model(x.contiguous(memory_format=layout)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for batch in val_loader:
                images, labels = batch[0], batch[1]
                x = normalize(images) if normalize is not None else images
                correct += int((model(x.contiguous(memory_format=layout)).argmax(1) == labels).sum())


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="sw-bench-"))
    cache_dir = work / "cache"
    data = subset_as_csv(args.data, args.limit, work / "data")
    records = read_dataset(data)
    train_idx, val_idx = split_indices(records, 0, 0)
    cached = prepare_cache(records, args.image_size, cache_dir=cache_dir, progress=False)
    n_train = len(train_idx)

    def model_and_optimizer(tuned: bool = False):
        torch.manual_seed(0)
        model = timm.create_model("cbam_vgg16", backbone=args.backbone, num_classes=records.num_classes)
        if tuned:
            model = model.to(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), lr=1e-4, **({"fused": True} if tuned else {}))

    # Warm up (thread pools, oneDNN kernels for these shapes) so that the first variant timed pays nothing extra.
    model, _ = model_and_optimizer()
    warm = BatchAugment(args.image_size)(torch.from_numpy(cached.images[: args.batch_size].copy()))
    for _ in range(3):
        F.cross_entropy(model(warm), torch.zeros(len(warm), dtype=torch.long)).backward()

    def ours() -> None:
        config = TrainConfig(
            data=str(data), backbone=args.backbone, pretrained=False, image_size=args.image_size, epochs=args.epochs,
            batch_size=args.batch_size, lr=1e-4, weighters=["ohem"], out=work / "run", cache_dir=cache_dir,
            quiet=True, device="cpu", overwrite=True,
        )  # fmt: skip
        train(config)

    def cached_loop(tuned: bool = False) -> None:
        train_idx, val_idx = split_indices(records, 0, 0)  # a plain loop splits its data too
        model, optimizer = model_and_optimizer(tuned)
        augment, normalize = BatchAugment(args.image_size), BatchAugment(args.image_size).eval()
        train_set = CachedImageDataset(cached.images, records.labels, train_idx)
        val_set = CachedImageDataset(cached.images, records.labels, val_idx)
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=args.batch_size)
        plain_loop(model, optimizer, train_loader, val_loader, args.epochs, augment, normalize, tuned)

    def jpeg_loop() -> None:
        train_idx, val_idx = split_indices(records, 0, 0)
        model, optimizer = model_and_optimizer()
        paths, size = list(records.paths), args.image_size
        jpeg_train = JpegDataset([paths[i] for i in train_idx], records.labels[train_idx], size, train_transform(size))
        jpeg_val = JpegDataset([paths[i] for i in val_idx], records.labels[val_idx], size, eval_transform(size))
        workers = {"num_workers": args.jpeg_workers, "persistent_workers": args.jpeg_workers > 0}
        train_loader = DataLoader(jpeg_train, batch_size=args.batch_size, shuffle=True, **workers)
        val_loader = DataLoader(jpeg_val, batch_size=args.batch_size, **workers)
        plain_loop(model, optimizer, train_loader, val_loader, args.epochs)

    variants = {
        "ours": ours,
        "loop (cached)": cached_loop,
        "loop (cached, tuned)": functools.partial(cached_loop, tuned=True),
        "loop (JPEG)": jpeg_loop,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = random.Random(0)
    for _ in range(args.rounds):  # interleaved in a new order each round: load and position hit all alike
        for name in order.sample(list(variants), k=len(variants)):
            start = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - start)
    timings = {name: statistics.median(values) for name, values in samples.items()}

    shutil.rmtree(work, ignore_errors=True)
    rates = {name: args.epochs * n_train / seconds for name, seconds in timings.items()}
    return {
        "benchmark": "trainer_vs_loop",
        **machine_facts(),
        "model": f"cbam_vgg16(backbone={args.backbone})",
        "data": f"{len(records)} images of {args.data} ({n_train} train / {len(val_idx)} val)",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "seconds": timings,
        "seconds_all_rounds": samples,
        "images_per_second": rates,
        "ratio_vs_cached_loop": rates["ours"] / rates["loop (cached)"],
        "ratio_vs_tuned_loop": rates["ours"] / rates["loop (cached, tuned)"],
        "ratio_vs_jpeg_loop": rates["ours"] / rates["loop (JPEG)"],
        # paired: each round's loop time over ours in the same round (interleaved, so load hits both alike)
        "ratio_per_round": {
            name: [theirs / ours for theirs, ours in zip(values, samples["ours"], strict=True)]
            for name, values in samples.items()
        },
    }


def print_table(report: dict, console: Console) -> None:
    table = Table(
        title=f"trainer vs plain loop: {report['model']}, {report['image_size']} px, batch {report['batch_size']}, "
        f"{report['epochs']} epochs, {report['data']}"
    )
    for column in ("loop", "seconds", "train images/s", "ours / this", "per round"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    ours = report["images_per_second"]["ours"]
    for name, rate in report["images_per_second"].items():
        rounds = report["ratio_per_round"][name]
        spread = f"{min(rounds):.2f}-{max(rounds):.2f}"
        table.add_row(name, f"{report['seconds'][name]:.1f}", f"{rate:.0f}", f"{ours / rate:.2f}", spread)
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=1000, help="use N images spread over the data set")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jpeg-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median taken)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return finish(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
