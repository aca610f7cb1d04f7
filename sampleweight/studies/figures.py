"""Report figures as PNG files: per-class recall bars per weighting (the paper's Figures 1-2), reliability
diagrams and confusion matrices.

Drawn with matplotlib's object-oriented API on the Agg canvas (``matplotlib.figure.Figure``), never
through ``pyplot``: no global backend is switched, no window opens, and nothing is left in pyplot's
figure registry, so this works on headless machines, in threads and inside notebooks alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sampleweight.errors import OutputError
from sampleweight.metrics import CALIBRATION_BINS, reliability

__all__ = ["new_figure", "plot_confusion", "plot_recall_bars", "plot_reliability", "save_figure"]

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib `Figure` on an Agg canvas (inches), independent of pyplot."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG (creating the folder) and return the path.

    Raises:
        OutputError: The file cannot be written (a read-only folder, a file where the folder should be, a full disk).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=DPI, facecolor="white")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def plot_recall_bars(
    recall: Mapping[str, Sequence[float]],
    classes: Sequence[str],
    path: str | Path,
    *,
    spread: Mapping[str, Sequence[float]] | None = None,
    title: str = "",
    ylabel: str = "recall (%)",
) -> Path:
    """Per-class recall, one group of bars per class and one bar per weighting (Figures 1-2 of the paper).

    Any per-class figure in [0, 1] draws the same way (a multilabel table's per-label ROC AUC, with ``ylabel``); a
    NaN value draws no bar.

    Args:
        recall: Per weighting (in legend order), the recall of each class in [0, 1].
        classes: Class names, in the order of the recall values.
        path: The PNG to write.
        spread: Per weighting, an error bar per class (e.g. the spread over splits); optional.
        title: Figure title.
        ylabel: The y axis's label.

    Returns:
        ``path``.
    """
    names = list(recall)
    positions = np.arange(len(classes))
    width = 0.8 / max(len(names), 1)
    figure = new_figure(max(6.0, 1.1 * len(classes) + 0.25 * len(names) * len(classes) / 2), 3.8)
    axes = figure.add_subplot()
    for k, name in enumerate(names):
        values = 100 * np.asarray(recall[name], dtype=float)
        errors = None if spread is None or name not in spread else 100 * np.asarray(spread[name], dtype=float)
        axes.bar(positions + (k - (len(names) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=name)
    axes.set_xticks(positions, list(classes))
    axes.set_ylim(0, 105)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(title="weighting", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        axes.set_title(title)
    return save_figure(figure, path)


def plot_reliability(
    curves: Mapping[str, tuple[Any, Any, float | None]],
    path: str | Path,
    *,
    bins: int = CALIBRATION_BINS,
    title: str = "",
) -> Path:
    """A reliability diagram: per setup, accuracy against mean confidence in equal-width top-label bins.

    A calibrated model lies on the diagonal; below it, it is over-confident. Each point is a bin with
    at least one image; the legend gives the setup's expected calibration error.

    Args:
        curves: Per setup (legend order), ``(targets [N], scores [N, C], ece)``: true classes, class
            probabilities, and the ECE to show (a fraction; None: computed from these predictions).
        path: The PNG to write.
        bins: Confidence bins (15, as the ECE of ``metrics.json``).
        title: Figure title.

    Returns:
        ``path``.
    """
    figure = new_figure(6.4, 4.8)
    axes = figure.add_subplot()
    axes.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, (targets, scores, ece) in curves.items():
        table = reliability(targets, scores, bins)
        filled = table["count"] > 0
        if ece is None:
            ece = float((table["count"][filled] * np.abs(table["accuracy"] - table["confidence"])[filled]).sum()
                        / table["count"].sum())  # fmt: skip
        axes.plot(100 * table["confidence"][filled], 100 * table["accuracy"][filled], marker="o", markersize=3,
                  linewidth=1.2, label=f"{name} (ECE {100 * ece:.1f})")  # fmt: skip
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 100)
    axes.set_xlabel("confidence: top-label probability (%)")
    axes.set_ylabel("accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        axes.set_title(title, fontsize="medium")
    return save_figure(figure, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, *, title: str = ""
) -> Path:
    """A confusion matrix: colour = share of the true class (row-normalised), text = the count.

    Args:
        confusion: Counts [C, C], rows true classes, columns predicted classes (``metrics.json``'s
            ``confusion``).
        classes: Class names.
        path: The PNG to write.
        title: Figure title.

    Returns:
        ``path``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = 1.8 + 0.6 * len(classes)
    figure = new_figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            dark = shares[row, column] > 0.6
            axes.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize="small",
                      color="white" if dark else "black")  # fmt: skip
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, list(classes), rotation=45, ha="right")
    axes.set_yticks(ticks, list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    if title:
        axes.set_title(title, fontsize="medium")
    return save_figure(figure, path)
