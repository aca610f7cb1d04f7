"""``sampleweight demo``: the embedded default job, a small comparison on the synthetic data set.

One run per weighting (``sampleweight demo``: none, es and ohem; the default model and loss, cross-entropy,
ADAM), on the built-in synthetic ISIC-like data with a small timm backbone and small images, then a table of
Acc, BAcc, mPR and mF1. A few minutes on a 2-core CPU; it shows the paper's main trade-off (class balancing trades
accuracy for balanced accuracy) without downloading anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sampleweight.engine.config import TrainConfig, load_config
from sampleweight.engine.training import train

__all__ = ["demo_config", "results_table", "run_demo"]


def demo_config(weighter: str, out: Path, *, epochs: int, images: int, image_size: int, quiet: bool) -> TrainConfig:
    """The configuration of one demo run.

    Differs from the paper's only where a CPU needs it: a small randomly initialised backbone
    (``resnet10t``, no download) for the default model, 64 px images, a few epochs and, to learn from
    scratch in that time, ADAM at lr 1e-3.
    """
    return load_config(
        data=f"synthetic:{images}",
        backbone="resnet10t",
        pretrained=False,
        image_size=image_size,
        epochs=epochs,
        lr=1e-3,
        weighters=[weighter],
        out=out / weighter,
        overwrite=True,  # the demo always starts over
        quiet=quiet,
    )


def run_demo(
    out: Path = Path("runs/demo"),
    *,
    weighters: Sequence[str],
    epochs: int = 6,
    images: int = 1500,
    image_size: int = 64,
    quiet: bool = False,
    console: Console | None = None,
) -> dict[str, dict[str, Any]]:
    """Train one run per weighter and print the comparison table.

    Args:
        out: The parent folder: one run directory per weighting.
        weighters: The weightings compared (one run each; ``ohem+es`` composes).
        epochs: Epochs per run.
        images: Synthetic images.
        image_size: Their side in pixels.
        quiet: One line per epoch instead of progress bars.
        console: Where to print (default: a new rich console).

    Returns:
        Final metrics per weighter.
    """
    console = console or Console()
    results: dict[str, dict[str, Any]] = {}
    for weighter in weighters:
        config = demo_config(weighter, out, epochs=epochs, images=images, image_size=image_size, quiet=quiet)
        console.print(
            f"[bold]demo[/]: training with weighting [cyan]{escape(weighter)}[/] -> {escape(str(config.out))}"
        )
        results[weighter] = train(config)
    console.print(results_table(results, title=f"sampleweight demo: synthetic:{images}, {epochs} epochs, CE, ADAM"))
    console.print(
        f"run directories: {out}/<weighting>/ (config.json, metrics.jsonl, metrics.json, predictions.csv)", markup=False
    )
    return results


def results_table(results: dict[str, dict[str, Any]], *, title: str = "") -> Table:
    """A rich table: one row per run, Acc/BAcc/mPR/mF1 in percent, the best of each column in bold."""
    table = Table(title=title)
    table.add_column("weighting")
    columns = ("acc", "bacc", "mpr", "mf1")
    for name in ("Acc", "BAcc", "mPR", "mF1"):
        table.add_column(name, justify="right")
    best = {c: max(r[c] for r in results.values()) for c in columns}
    for name, metrics in results.items():
        cells = [f"{100 * metrics[c]:.1f}" for c in columns]
        cells = [f"[bold]{cell}[/]" if metrics[c] == best[c] else cell for cell, c in zip(cells, columns, strict=True)]
        table.add_row(escape(name), *cells)  # a name as typed, not markup
    return table
