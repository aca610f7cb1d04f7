"""Benchmark: images/s of the cached data path against decoding every image every time.

For each image size it measures, on the first ``--limit`` images of a data set (HAM10000 by default):

- ``decode``: JPEG decode + Shades of Gray + resize per image, one thread (what a loader without a cache
  does for every image in every epoch);
- ``build``: building the cache once (the same work, in ``--workers`` threads, written to a memory map);
- ``cached item``: ``dataset[i]`` from the cache, one image at a time, shuffled;
- ``cached batch``: a ``DataLoader`` over the cache (batched ``__getitems__``, shuffled, no workers);
- ``+ v2 aug``: the cached batch path with torchvision per-sample augmentation (crop, flips, jitter);
- ``+ batch aug``: the cached batch path with `BatchAugment` on whole batches (on the CPU here);
- ``model``: what it feeds: training images/s of ``cbam_vgg16`` on ``--model-backbone`` at that size
  (batch ``--model-batch``, channels-last, fused ADAM, as the trainer runs it), and the loader's
  headroom over it (``+ batch aug`` / ``model``: above 1, the loader keeps up).

Prints a table and writes JSON (``--out``). Run from the repository root:

    python benchmarks/data_pipeline.py --limit 1000 --image-size 64 128 299
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import timm
import torch
from PIL import features
from torch.utils.data import DataLoader

from sampleweight.data import (
    BatchAugment,
    CachedImageDataset,
    prepare_cache,
    preprocess_image,
    read_dataset,
    train_transform,
)

from benchtools import DEFAULT_DATA, default_out

DEFAULT_OUT = default_out("data_pipeline")


def rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def bench_size(records, size: int, args: argparse.Namespace, cache_dir: Path) -> dict[str, float]:
    n = len(records)
    result: dict[str, float] = {"image_size": size, "images": n}

    start = time.perf_counter()
    for path in records.paths:
        preprocess_image(path, size)
    result["decode"] = rate(n, time.perf_counter() - start)

    start = time.perf_counter()
    cached = prepare_cache(records, size, cache_dir=cache_dir, workers=args.workers, progress=False, force=True)
    result["build"] = rate(n, time.perf_counter() - start)
    images = np.load(cached.path, mmap_mode="r")  # reopen: reads go through the memory map
    generator = torch.Generator().manual_seed(0)

    dataset = CachedImageDataset(images, records.labels)
    order = torch.randperm(n, generator=generator).tolist()
    start = time.perf_counter()
    for _ in range(args.epochs):
        for i in order:
            dataset[i]
    result["cached_item"] = rate(n * args.epochs, time.perf_counter() - start)

    def loader_rate(data: CachedImageDataset, augment: BatchAugment | None = None) -> float:
        loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, generator=generator)
        start = time.perf_counter()
        for _ in range(args.epochs):
            for x, _, _ in loader:
                if augment is not None:
                    augment(x, generator=generator)
        return rate(n * args.epochs, time.perf_counter() - start)

    result["cached_batch"] = loader_rate(dataset)
    result["cached_v2_aug"] = loader_rate(CachedImageDataset(images, records.labels, transform=train_transform(size)))
    result["cached_batch_aug"] = loader_rate(dataset, BatchAugment(size))
    result["model"] = model_rate(size, args)
    result["headroom"] = result["cached_batch_aug"] / result["model"]
    result["speedup"] = result["cached_batch"] / result["decode"]
    result["speedup_item"] = result["cached_item"] / result["decode"]
    result["cache_mb"] = round(cached.path.stat().st_size / 1e6, 1)
    if not args.keep_cache:
        cached.path.unlink()
        cached.path.with_suffix(".json").unlink()
    return result


def model_rate(size: int, args: argparse.Namespace) -> float:
    """Training images/s of the flat model at ``size``: what the loader has to keep up with."""
    torch.manual_seed(0)
    model = timm.create_model("cbam_vgg16", backbone=args.model_backbone, num_classes=7, pretrained=False)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    x = torch.randn(args.model_batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (args.model_batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.model_steps):
        step()
    return rate(args.model_batch * args.model_steps, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data set folder (default: the HAM10000 copy)")
    parser.add_argument("--limit", type=int, default=1000, help="use the first N images (default 1000)")
    parser.add_argument("--image-size", type=int, nargs="+", default=[64, 128], help="sizes to measure")
    parser.add_argument("--workers", type=int, default=None, help="cache-building threads (default: all CPUs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the cache per measurement")
    parser.add_argument("--model-backbone", default="resnet10t", help="backbone of the model fed (cbam_vgg16)")
    parser.add_argument("--model-batch", type=int, default=20)
    parser.add_argument("--model-steps", type=int, default=3, help="timed training steps per size")
    parser.add_argument("--cache-dir", default=None, help="where to build the caches (default: a temp folder)")
    parser.add_argument("--keep-cache", action="store_true", help="keep the caches built")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    records = read_dataset(args.data)
    if records.paths is None:
        parser.error("the benchmark needs a data set of image files, not synthetic data")
    records = records.subset(np.arange(min(args.limit, len(records))))
    temporary = None
    if args.cache_dir is None:
        temporary = tempfile.mkdtemp(prefix="sampleweight-bench-")
    cache_dir = Path(args.cache_dir or temporary)
    try:
        results = [bench_size(records, size, args, cache_dir) for size in args.image_size]
    finally:
        if temporary is not None and not args.keep_cache:
            shutil.rmtree(temporary, ignore_errors=True)

    columns = [
        ("size", "image_size", "{:.0f}"),
        ("decode+CC+resize", "decode", "{:.0f}"),
        ("build cache", "build", "{:.0f}"),
        ("cached item", "cached_item", "{:.0f}"),
        ("cached batch", "cached_batch", "{:.0f}"),
        ("+ v2 aug", "cached_v2_aug", "{:.0f}"),
        ("+ batch aug", "cached_batch_aug", "{:.0f}"),
        ("speedup", "speedup", "{:.0f}x"),
        ("model", "model", "{:.0f}"),
        ("headroom", "headroom", "{:.0f}x"),
    ]
    print(f"images/s, {len(records)} images of {records.layout} at {records.root}, {os.cpu_count()} CPUs")
    print(" | ".join(name for name, _, _ in columns))
    for row in results:
        print(" | ".join(fmt.format(row[key]).rjust(len(name)) for name, key, fmt in columns))
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "data": str(records.root),
        "layout": records.layout,
        "images": len(records),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "model": f"cbam_vgg16(backbone={args.model_backbone}), batch {args.model_batch}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
