"""``sampleweight report``: the paper's Tables 2-5 and Figures 1-2 from finished run directories.

`collect_runs` finds every finished run under a folder (a ``metrics.json`` beside a ``config.json``).
`summarize` groups them as the paper does: one table per model x optimizer, one row per loss x
weighting, the columns Acc / BAcc / mPR / mF1 as the mean over the splits with their spread.
`write_report` writes ``report.md`` and one CSV per table (optionally with the paper's own figures
beside ours), a per-class recall bar chart per model x optimizer x loss and a confusion matrix per
run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from sampleweight.engine import training
from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.engine.rundir import RunDirectory
from sampleweight.errors import ConfigError
from sampleweight.studies.figures import plot_confusion, plot_recall_bars
from sampleweight.studies.paper_results import PAPER_TABLE_NUMBERS, paper_result

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "Cell",
    "Report",
    "ResultTable",
    "RunResult",
    "collect_runs",
    "format_cell",
    "markdown_table",
    "rich_table",
    "summarize",
    "write_report",
]

METRICS = ("acc", "bacc", "mpr", "mf1")
METRIC_LABELS = {"acc": "Acc", "bacc": "BAcc", "mpr": "mPR", "mf1": "mF1"}
REPORT_FILE = "report.md"
FIGURES_FOLDER = "figures"

# The paper's order; anything else follows, sorted.
_MODEL_ORDER = ("cbam_vgg16", "hierarchical_vgg16")
_OPTIMIZER_ORDER = ("adam", "sgd")
_LOSS_ORDER = ("ce", "focal")
_WEIGHTING_ORDER = ("none", "cb", "es", "spl", "ohem")
# Config fields that may differ between the runs of one cell: the split, and how a run executed.
_PER_RUN_FIELDS = frozenset({"split", *training.EXECUTION_FIELDS})

# The options that describe a table's setup (shown above it).
_SETUP = ("data", "backbone", "pretrained", "image_size", "epochs", "batch_size", "lr")


@dataclass(frozen=True)
class RunResult:
    """One finished run directory.

    Attributes:
        path: The run directory.
        config: Its ``config.json``.
        metrics: Its ``metrics.json``.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def model(self) -> str:
        """The model name."""
        return str(self.config["model"])

    @property
    def loss(self) -> str:
        """The loss name (``ce``, ``focal``, ...)."""
        return str(self.config["loss"])

    @property
    def weighting(self) -> str:
        """The weighters joined with ``+`` (``none``, ``ohem+es``)."""
        return "+".join(self.config["weighters"])

    @property
    def optimizer(self) -> str:
        """``adam`` or ``sgd``."""
        return str(self.config["optimizer"])

    @property
    def split(self) -> int:
        """The split number."""
        return int(self.config["split"])

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of ``metrics.json``'s confusion matrix."""
        return list(self.metrics["classes"])


@dataclass(frozen=True)
class Cell:
    """One row of a table: a loss x weighting over its splits.

    Attributes:
        loss: The loss.
        weighting: The weighting.
        runs: The runs averaged (one per split).
        mean: Per metric, the mean over the runs (fraction).
        spread: Per metric, the standard deviation over the runs (fraction; for two splits, half their
            difference; 0 for one run).
        recall: Mean per-class recall [C] (fractions, in the runs' class order).
        recall_spread: Its standard deviation over the runs [C].
        paper: The paper's figures for this cell in percent (`paper_result`), or None.
    """

    loss: str
    weighting: str
    runs: tuple[RunResult, ...]
    mean: dict[str, float]
    spread: dict[str, float]
    recall: np.ndarray
    recall_spread: np.ndarray
    paper: dict[str, float] | None = None

    @property
    def n(self) -> int:
        """How many runs (splits) the cell averages."""
        return len(self.runs)

    @property
    def splits(self) -> list[int]:
        """The splits of its runs."""
        return sorted(run.split for run in self.runs)


@dataclass(frozen=True)
class ResultTable:
    """One table of the report: a model x optimizer, rows loss x weighting.

    Attributes:
        model: The model.
        optimizer: The optimizer.
        cells: The rows, in the paper's order (ce before focal; none, cb, es, spl, ohem, then others).
        classes: Class names of the runs.
        setup: The options the runs share (``{"epochs": "150", ...}``; differing values joined by ``/``).
    """

    model: str
    optimizer: str
    cells: tuple[Cell, ...]
    classes: tuple[str, ...]
    setup: dict[str, str] = field(default_factory=dict)

    @property
    def paper_table(self) -> int | None:
        """The number of the paper's table with the same model and optimizer (2-5), or None."""
        return PAPER_TABLE_NUMBERS.get((self.model.split(".")[0], self.optimizer))

    @property
    def title(self) -> str:
        """``cbam_vgg16, adam (the paper's Table 2)``."""
        number = self.paper_table
        return f"{self.model}, {self.optimizer}" + (f" (the paper's Table {number})" if number else "")

    @property
    def key(self) -> str:
        """``cbam_vgg16-adam``: the stem of its files."""
        return f"{self.model}-{self.optimizer}"


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote.

    Attributes:
        tables: The tables.
        markdown: ``report.md``.
        csv_files: One CSV per table.
        figures: Recall bar charts and confusion matrices (PNG).
    """

    tables: tuple[ResultTable, ...]
    markdown: Path
    csv_files: tuple[Path, ...]
    figures: tuple[Path, ...]


def collect_runs(folder: str | Path) -> list[RunResult]:
    """Every finished run under ``folder`` (itself or any subfolder with ``metrics.json`` and ``config.json``).

    Folders with a ``metrics.json`` but no ``config.json`` (such as ``RUN/evaluate/``) are not runs.

    Raises:
        ConfigError: ``folder`` does not exist or holds no finished run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: pass the grid folder (the --out of sampleweight grid)")
    results = []
    for metrics_path in sorted(folder.rglob(RunDirectory.FINAL)):
        config_path = metrics_path.with_name(RunDirectory.CONFIG)
        if config_path.is_file():
            results.append(RunResult(metrics_path.parent, _read_json(config_path), _read_json(metrics_path)))
    if not results:
        raise ConfigError(
            f"no finished runs in {folder}: a run directory has {RunDirectory.CONFIG} and {RunDirectory.FINAL}; "
            f"train some first, e.g. sampleweight grid --out {folder}"
        )
    return results


def summarize(runs: Iterable[RunResult], *, paper: bool = False) -> list[ResultTable]:
    """Group runs into the paper's tables: one per model x optimizer, a row per loss x weighting.

    Args:
        runs: Finished runs (`collect_runs`).
        paper: Attach the paper's figures to the cells that the paper reports (`Cell.paper`).

    Returns:
        The tables, in the paper's order (Tables 2-5 first: cbam_vgg16 before hierarchical_vgg16, adam
        before sgd).

    Raises:
        ConfigError: Runs of one table have different classes.
    """
    groups: dict[tuple[str, str], dict[tuple[str, str], list[RunResult]]] = {}
    for run in runs:
        groups.setdefault((run.model, run.optimizer), {}).setdefault((run.loss, run.weighting), []).append(run)
    tables = []
    for model, optimizer in sorted(groups, key=lambda k: (_rank(k[0], _MODEL_ORDER), _rank(k[1], _OPTIMIZER_ORDER))):
        rows = groups[(model, optimizer)]
        members = [run for group in rows.values() for run in group]
        classes = members[0].classes
        for run in members:
            if run.classes != classes:
                raise ConfigError(
                    f"runs of {model}, {optimizer} have different classes: {members[0].path} has {classes}, "
                    f"{run.path} has {run.classes}; report them from separate folders"
                )
        ordered = sorted(rows, key=lambda k: (_rank(k[0], _LOSS_ORDER), _rank(k[1], _WEIGHTING_ORDER)))
        cells = tuple(
            _cell(model, optimizer, loss, weighting, rows[(loss, weighting)], paper) for loss, weighting in ordered
        )
        tables.append(ResultTable(model, optimizer, cells, tuple(classes), _setup(members)))
    return tables


def format_cell(mean: float, spread: float, n: int) -> str:
    """``83.5 ± 1.2`` in percent (no spread for a single run)."""
    return f"{100 * mean:.1f}" if n < 2 else f"{100 * mean:.1f} ± {100 * spread:.1f}"


def markdown_table(table: ResultTable, *, paper: bool = False) -> str:
    """A table as Markdown: loss, weighting, n, then each metric (and the paper's beside it).

    The best mean of each of our columns is bold (where the column varies).
    """
    header = ["loss", "weighting", "n"]
    for metric in METRICS:
        header.append(METRIC_LABELS[metric])
        if paper:
            header.append(f"{METRIC_LABELS[metric]} paper")
    best = {m: max(cell.mean[m] for cell in table.cells) for m in METRICS}
    varies = {m: min(cell.mean[m] for cell in table.cells) < best[m] for m in METRICS}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for cell in table.cells:
        row = [cell.loss, cell.weighting, str(cell.n)]
        for metric in METRICS:
            text = format_cell(cell.mean[metric], cell.spread[metric], cell.n)
            row.append(f"**{text}**" if varies[metric] and cell.mean[metric] == best[metric] else text)
            if paper:
                row.append(_paper_text(cell, metric))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def rich_table(table: ResultTable, *, paper: bool = False) -> Table:
    """A table for the terminal: the Markdown table's content, the paper's figures dimmed."""
    view = Table(title=escape(table.title), title_justify="left")
    for name in ("loss", "weighting", "n"):
        view.add_column(name)
    for metric in METRICS:
        view.add_column(METRIC_LABELS[metric], justify="right")
        if paper:
            view.add_column("paper", justify="right", style="dim")
    for cell in table.cells:
        row = [escape(cell.loss), escape(cell.weighting), str(cell.n)]  # names as typed, not markup
        for metric in METRICS:
            row.append(format_cell(cell.mean[metric], cell.spread[metric], cell.n))
            if paper:
                row.append(_paper_text(cell, metric))
        view.add_row(*row)
    return view


def write_report(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    paper: bool = False,
    figures: bool = True,
) -> Report:
    """Write the report of every finished run under ``folder``.

    Files (in ``out``, default ``folder``): ``report.md``; ``table-MODEL-OPTIMIZER.csv`` per table
    (percent: ``acc``, ``acc_spread``, ... and with ``paper`` the paper's ``paper_acc``, ...);
    ``figures/recall-MODEL-OPTIMIZER-LOSS.png`` (per-class recall per weighting, the paper's Figures
    1-2) and ``figures/confusion/RUN.png`` per run.

    Args:
        folder: The grid folder (or any folder holding run directories).
        out: Where to write (default ``folder``).
        paper: Put the paper's figures beside ours (in the Markdown and the CSVs).
        figures: Draw the PNG figures.

    Returns:
        A `Report` with the tables and the files written.

    Raises:
        ConfigError: No finished runs in ``folder``.
    """
    folder = Path(folder)
    runs = collect_runs(folder)
    tables = summarize(runs, paper=paper)
    out = Path(out) if out is not None else folder
    out.mkdir(parents=True, exist_ok=True)
    csv_files = tuple(_write_csv(table, out / f"table-{table.key}.csv", paper=paper) for table in tables)
    drawn: list[Path] = []
    recall_figures: dict[str, list[Path]] = {}
    if figures:
        for table in tables:
            recall_figures[table.key] = _recall_figures(table, out / FIGURES_FOLDER)
            drawn += recall_figures[table.key]
        for run in runs:
            drawn.append(_confusion_figure(run, folder, out / FIGURES_FOLDER / "confusion"))
    markdown = out / REPORT_FILE
    atomic_write_text(markdown, _markdown(tables, folder, out, runs, paper, recall_figures, drawn))
    return Report(tuple(tables), markdown, csv_files, tuple(drawn))


# ------------------------------------------------------------------------------------------------ helpers


def _cell(model: str, optimizer: str, loss: str, weighting: str, runs: Sequence[RunResult], paper: bool) -> Cell:
    runs = sorted(runs, key=lambda r: (r.split, str(r.path)))
    _check_comparable(runs, f"{model} {optimizer} {loss} {weighting}")
    values = {m: np.array([run.metrics[m] for run in runs], dtype=float) for m in METRICS}
    recall = np.array([[run.metrics["per_class"][c]["recall"] for c in run.classes] for run in runs], dtype=float)
    return Cell(
        loss=loss,
        weighting=weighting,
        runs=tuple(runs),
        mean={m: float(v.mean()) for m, v in values.items()},
        spread={m: float(v.std()) for m, v in values.items()},
        recall=recall.mean(axis=0),
        recall_spread=recall.std(axis=0),
        paper=paper_result(model, optimizer, loss, weighting) if paper else None,
    )


def _check_comparable(runs: Sequence[RunResult], cell: str) -> None:
    """The runs of one cell must be the same experiment on different splits, or the mean is meaningless."""
    first = runs[0]
    for other in runs[1:]:
        if other.split == first.split:
            raise ConfigError(
                f"report: {first.path} and {other.path} are both split {first.split} of {cell}; a cell averages "
                "one run per split: report the grids separately, or move one of them out of the folder"
            )
        for key in sorted(set(first.config) | set(other.config)):
            if key in _PER_RUN_FIELDS:
                continue
            if first.config.get(key) != other.config.get(key):
                raise ConfigError(
                    f"report: the runs of {cell} differ in {key} ({first.config.get(key)!r} in {first.path}, "
                    f"{other.config.get(key)!r} in {other.path}); a cell averages the same setup over splits: "
                    "report grids of different setups separately"
                )


def _paper_text(cell: Cell, metric: str) -> str:
    return "–" if cell.paper is None else f"{cell.paper[metric]:.1f}"


def _setup(runs: Sequence[RunResult]) -> dict[str, str]:
    setup = {}
    for key in _SETUP:
        values = sorted({_setup_value(key, run.config.get(key)) for run in runs})
        setup[key] = " / ".join(values)
    setup["splits"] = ", ".join(str(s) for s in sorted({run.split for run in runs}))
    return setup


def _setup_value(key: str, value: Any) -> str:
    if key == "backbone" and value is None:
        return "vgg16"
    return str(value)


def _write_csv(table: ResultTable, path: Path, *, paper: bool) -> Path:
    columns = ["loss", "weighting", "n", "splits"]
    for metric in METRICS:
        columns += [metric, f"{metric}_spread"]
    if paper:
        columns += [f"paper_{metric}" for metric in METRICS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for cell in table.cells:
        row: list[Any] = [cell.loss, cell.weighting, cell.n, " ".join(str(s) for s in cell.splits)]
        for metric in METRICS:
            row += [f"{100 * cell.mean[metric]:.4f}", f"{100 * cell.spread[metric]:.4f}"]
        if paper:
            row += ["" if cell.paper is None else f"{cell.paper[metric]:.1f}" for metric in METRICS]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())
    return path


def _recall_figures(table: ResultTable, folder: Path) -> list[Path]:
    paths = []
    for loss in dict.fromkeys(cell.loss for cell in table.cells):
        cells = [cell for cell in table.cells if cell.loss == loss]
        paths.append(
            plot_recall_bars(
                {cell.weighting: cell.recall for cell in cells},
                table.classes,
                folder / f"recall-{table.key}-{loss}.png",
                spread={cell.weighting: cell.recall_spread for cell in cells if cell.n > 1},
                title=f"per-class recall: {table.model}, {table.optimizer}, {loss} (mean over splits)",
            )
        )
    return paths


def _confusion_figure(run: RunResult, folder: Path, out: Path) -> Path:
    name = "__".join(run.path.relative_to(folder).parts) or run.path.name
    acc, bacc = 100 * run.metrics["acc"], 100 * run.metrics["bacc"]
    return plot_confusion(
        run.metrics["confusion"], run.classes, out / f"{name}.png", title=f"{name}\nAcc {acc:.1f}  BAcc {bacc:.1f}"
    )


def _markdown(
    tables: Sequence[ResultTable],
    folder: Path,
    out: Path,
    runs: Sequence[RunResult],
    paper: bool,
    recall_figures: dict[str, list[Path]],
    drawn: Sequence[Path],
) -> str:
    intro = (
        f"{len(runs)} finished runs in `{folder}`. Figures are percentages on the validation side of each split: "
        "the mean over the splits ± their standard deviation (for two splits, half their difference); `n` is the "
        "number of splits averaged. Bold: the best mean of a column (where the column varies)."
    )
    if paper:
        intro += " `paper`: the paper's figure for the same model, optimizer, loss and weighting (its Tables 2-5)."
    lines = ["# sampleweight report", "", intro]
    for table in tables:
        setup = ", ".join(f"{key} {value}" for key, value in table.setup.items())
        lines += ["", f"## {table.title}", "", f"Setup: {setup}.", "", markdown_table(table, paper=paper)]
        for path in recall_figures.get(table.key, []):
            lines += ["", f"![per-class recall]({path.relative_to(out).as_posix()})"]
    confusion = [p for p in drawn if p.parent.name == "confusion"]
    if confusion:
        lines += ["", "## Confusion matrices", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out).as_posix()})" for p in confusion]
    return "\n".join(lines) + "\n"


def _rank(value: str, preferred: Sequence[str]) -> tuple[int, str]:
    return (preferred.index(value), "") if value in preferred else (len(preferred), value)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
