"""``sampleweight report``: the paper's Tables 2-5 and Figures 1-2 from finished run directories, with honest spreads.

`collect_runs` finds every finished run under a folder (a ``metrics.json`` beside a ``config.json``), or, in a
folder of ``sampleweight evaluate GRID --each`` (no run in it), every evaluation (a ``metrics.json`` beside a
``run.json``: `Evaluation`), which then stands for its run, scored on the test images.
`summarize` groups them as the paper does: one table per model x optimizer, one row (a *cell*) per
setup: loss x weighting, and the sampler and the weighter/loss options where runs differ in them, so
that runs of different setups are never averaged together. A cell's columns are Acc / BAcc / mPR / mF1
over its runs (splits x seeds): mean, standard deviation, n and min-max (`studies.statistics.describe`).
Binary runs (``--task binary --positive MEL``) make tables of their own (model x optimizer x task), with ROC AUC,
ISIC 2024's partial AUC and average precision beside those (`BINARY_COLUMNS`). Multilabel runs (``--task multilabel``)
make tables of their own per model x optimizer x label set, after those: the means over the labels of each label's
ROC AUC, pAUC, AP, and BAcc and F1 at its threshold (`MULTILABEL_COLUMNS`), and each label's ROC AUC
(`Cell.label_auc`).
`compare_with_baseline` adds, per table, every other cell's paired difference to a baseline cell on the
same images (`studies.statistics.PairedBootstrap`), with Holm's correction over the table's comparisons; a binary
table's comparisons add AUC, pAUC and AP (`BINARY_COMPARED`), a multilabel table's compare the means over its
labels of AUC, pAUC and AP (`MULTILABEL_COMPARED`), each against a baseline of that table only.
`write_report` writes ``report.md``, one CSV per table (and per table's comparisons), a per-class recall
bar chart per model x optimizer x loss, one reliability diagram per table and a confusion matrix per run.
With ``logit_adjust`` it also shows every run after post-hoc logit adjustment of its validation predictions
(`logit_adjusted_run`), as setups of their own (``logit_adjust=TAU``) beside the runs as trained.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from sampleweight.bootstrap import DEFAULT_METHOD
from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.engine.components import is_hierarchical, label_tree
from sampleweight.engine.config import EXECUTION_FIELDS, complete_config, default_name
from sampleweight.engine.evaluation import logit_adjust, training_class_counts
from sampleweight.engine.inference import decide
from sampleweight.engine.rebalancing import saved_run_rebalancing
from sampleweight.engine.rundir import STAGE_KEY, RunDirectory, output_folder, stage_of
from sampleweight.errors import ConfigError, SampleWeightError
from sampleweight.factory import lookup, option_defaults
from sampleweight.metrics import expected_calibration_error, final_metrics, negative_log_likelihood
from sampleweight.plugins import get_registry
from sampleweight.studies.figures import plot_confusion, plot_recall_bars, plot_reliability
from sampleweight.studies.grid import default_axis
from sampleweight.studies.statistics import (
    ALPHA,
    COMPARED_METRICS,
    MEAN_RANKED,
    Comparison,
    Difference,
    PairedBootstrap,
    Predictions,
    Spread,
    describe,
    holm_family,
)
from sampleweight.studies.testset import SOURCE_FILE, EvaluationSource

__all__ = [
    "BINARY_COLUMNS",
    "BINARY_COMPARED",
    "METRICS",
    "METRIC_LABELS",
    "MULTILABEL_COLUMNS",
    "MULTILABEL_COMPARED",
    "Cell",
    "CellComparison",
    "Evaluation",
    "Report",
    "ResultTable",
    "RunResult",
    "collect_runs",
    "compare_with_baseline",
    "format_cell",
    "logit_adjusted_run",
    "markdown_comparisons",
    "markdown_label_table",
    "markdown_table",
    "multiclass_scored_run",
    "multiclass_scored_runs",
    "published",
    "rich_comparisons",
    "rich_label_table",
    "rich_table",
    "summarize",
    "write_report",
]

METRICS = ("acc", "bacc", "mpr", "mf1")
BINARY_COLUMNS = ("auc", "pauc", "ap")
"""A binary table's columns after `METRICS`: ROC AUC, ISIC 2024's partial AUC above 80 % TPR, average precision
(`sampleweight.binary_metrics`)."""
BINARY_COMPARED = ("auc", "pauc", "ap")
"""What a binary table's paired comparisons add to `COMPARED_METRICS` (of the positive class's probability)."""
MULTILABEL_COLUMNS = ("auc", "pauc", "ap", "bacc", "mf1")
"""A multilabel table's columns: the means over its labels (`sampleweight.binary_metrics.label_metrics`'s ``mean``, the
top-level figures of a multilabel run's ``metrics.json``) of each label's ROC AUC, ISIC 2024 partial AUC and average
precision (over the labels with both classes on the validation side), and of its BAcc and F1 at the label's threshold
(macro BAcc, macro F1)."""
MULTILABEL_COMPARED = ("auc", "pauc", "ap")
"""What a multilabel table's paired comparisons measure: the means over the labels of AUC, pAUC and AP
(`sampleweight.studies.statistics.MEAN_RANKED`)."""
METRIC_LABELS = {"acc": "Acc", "bacc": "BAcc", "mpr": "mPR", "mf1": "mF1", "auc": "AUC", "pauc": "pAUC", "ap": "AP"}
MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
REPORT_FILE = "report.md"
FIGURES_FOLDER = "figures"

# Rows and tables follow the default comparison's order (the paper's: `sampleweight.studies.grid.default_axis`);
# anything else follows, sorted.
# Config fields that may differ between the runs of one cell: the split and seed, and how a run executed.
_PER_RUN_FIELDS = frozenset({"split", "seed", *EXECUTION_FIELDS})
# Fields that make a cell: runs differing in them are different setups, in different rows of a table.
_CELL_FIELDS = frozenset({"model", "optimizer", "loss", "weighters", "sampler", "sampler_options", "weighter_options",
                          "loss_options", "mixer", "mixer_options", "optimizer_options", "weight_decay",
                          STAGE_KEY})  # fmt: skip

# The options that describe a table's setup (shown above it).
_SETUP = ("data", "backbone", "pretrained", "image_size", "epochs", "batch_size", "lr")


@dataclass(frozen=True)
class Evaluation:
    """How a run was scored on a test set by ``sampleweight evaluate GRID --each`` (its evaluation folder).

    Attributes:
        source: The run it scored (its ``run.json``: where it was, its config, its training class counts).
        data: The test set, as ``evaluate --data`` was given.
        tta: Its test-time augmentation (``none``, ``flip``, ...).
        logit_adjust: The tau of a post-hoc logit adjustment made by ``evaluate``, or None.
    """

    source: EvaluationSource
    data: str
    tta: str = "none"
    logit_adjust: float | None = None


@dataclass(frozen=True)
class RunResult:
    """One finished run directory, or one evaluation of a run on a test set.

    Attributes:
        path: The run directory (or the evaluation's folder).
        config: Its ``config.json`` (an evaluation: its run's, from ``run.json``).
        metrics: Its ``metrics.json`` (or, with ``logit_adjust``, the metrics of the adjusted predictions).
        logit_adjust: The tau of a post-hoc logit adjustment of its predictions (`logit_adjusted_run`), or None.
        adjusted: Those adjusted predictions (or a multiclass run's, scored as a binary task: `multiclass_scored_run`).
        evaluation: For an evaluation of ``evaluate --each``: how it was scored (None for a run's own validation).
        scored_from: For a multiclass run scored as a binary task (`multiclass_scored_run`): its number of classes.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    logit_adjust: float | None = None
    adjusted: Predictions | None = field(default=None, repr=False, compare=False)
    evaluation: Evaluation | None = None
    scored_from: int | None = None

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
        """The weighters joined with ``+`` (``none``, ``ohem+es``); a retrained run adds its method (``none+crt``)."""
        stage = stage_of(self.config)
        return "+".join([*self.config["weighters"], *([stage["method"]] if stage else [])])

    @property
    def optimizer(self) -> str:
        """``adam`` or ``sgd``."""
        return str(self.config["optimizer"])

    @property
    def sampler(self) -> str:
        """The training sampler (``instance``: every image once per epoch, the paper's)."""
        return str(self.config.get("sampler") or default_name("samplers"))

    @property
    def split(self) -> int:
        """The split number."""
        return int(self.config["split"])

    @property
    def seed(self) -> int:
        """The seed (of the split, the initialisation and the data order)."""
        return int(self.config.get("seed", 0))

    @property
    def task(self) -> str:
        """``multiclass``, or another task with its positive classes: ``binary:MEL``, ``binary:MEL+BCC``."""
        task = str(self.config.get("task") or MULTICLASS)
        return task + "".join(f":{'+'.join(p)}" for p in [self.config.get("positive")] if p)

    @property
    def multilabel(self) -> bool:
        """Whether it is a multilabel run (``config.json``'s ``task``): one sigmoid per label."""
        return str(self.config.get("task") or MULTICLASS) == MULTILABEL

    @property
    def key(self) -> tuple[int, int]:
        """``(split, seed)``: runs with the same key were scored on the same validation images."""
        return (self.split, self.seed)

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of ``metrics.json``'s confusion matrix; a multilabel run's label names (its
        ``metrics.json``'s ``labels``)."""
        return list(self.metrics["labels"] if self.multilabel else self.metrics["classes"])

    @property
    def options(self) -> dict[str, str]:
        """The options that make this run's setup besides its loss, weighting and sampler (values as JSON).

        The weighter options that reach its weighters (unscoped, or scoped to one of them), the loss
        options but those equal to the loss's default (its registered factory's: ``gamma=1`` with focal is
        the same setup as no gamma), the sampler's options (``sampler.threshold``), the mixer unless it is the default
        (``mixer``) and its options (``mixer.alpha``), the optimizer's (``optimizer.rho``), a weight decay other than
        0, a task other than multiclass (``task=binary:MEL``), a retrained run's stage
        options as given (``crt.epochs``), an evaluation's ``tta`` (but ``none``) and ``logit_adjust``, and for a
        multiclass run scored as a binary task ``from=7-class`` (`multiclass_scored_run`).
        """
        weighters = set(self.config["weighters"])
        options = {
            key: value
            for key, value in (self.config.get("weighter_options") or {}).items()
            if "." not in key or key.split(".", 1)[0] in weighters
        }
        defaults = _loss_defaults(self.loss)
        options.update(
            {
                key: value
                for key, value in (self.config.get("loss_options") or {}).items()
                if not (key in defaults and defaults[key] == value)  # an explicit default: the same setup as none
            }
        )
        options.update({f"sampler.{key}": value for key, value in (self.config.get("sampler_options") or {}).items()})
        if self.config.get("mixer", default_name("mixers")) != default_name("mixers"):
            options["mixer"] = self.config["mixer"]
        options.update({f"mixer.{key}": value for key, value in (self.config.get("mixer_options") or {}).items()})
        options.update(
            {f"optimizer.{key}": value for key, value in (self.config.get("optimizer_options") or {}).items()}
        )
        if self.config.get("weight_decay"):  # weight balancing's first stage: one row per weight decay
            options["weight_decay"] = self.config["weight_decay"]
        if self.task != MULTICLASS:  # another task is another setup: never pooled with multiclass runs
            options["task"] = self.task
        stage = stage_of(self.config)
        if stage:  # the stage's options as given (``crt.epochs``); its defaults make the plain ``none+crt``
            options.update({f"{stage['method']}.{key}": value for key, value in (stage.get("options") or {}).items()})
        if self.evaluation is not None and self.evaluation.tta != "none":
            options["tta"] = self.evaluation.tta
        if self.evaluation is not None and self.evaluation.logit_adjust is not None:
            options["logit_adjust"] = self.evaluation.logit_adjust
        if self.logit_adjust is not None:
            options["logit_adjust"] = self.logit_adjust
        if self.scored_from is not None:
            options["from"] = f"{self.scored_from}-class"
        return {key: json.dumps(value, sort_keys=True) for key, value in sorted(options.items())}

    @cached_property
    def class_counts(self) -> np.ndarray:
        """Its training images per class, its prior (``data.json``, read once; `training_class_counts`; an
        evaluation: its run's, from ``run.json``)."""
        if self.evaluation is None:
            return training_class_counts(self.path, self.classes)
        counts = self.evaluation.source.train_class_counts
        if not isinstance(counts, dict) or set(counts) != set(self.classes):
            raise ConfigError(
                f"the training prior of the run evaluated in {self.path} is unknown (its {SOURCE_FILE} has no training "
                "counts of its classes: the run has no data.json); leave out --logit-adjust"
            )
        return np.array([int(counts[name]) for name in self.classes], dtype=np.int64)

    @cached_property
    def predictions(self) -> Predictions:
        """Its ``predictions.csv`` (read once), or its logit-adjusted (re-scored) predictions."""
        if self.adjusted is not None:
            return self.adjusted
        return Predictions.read(self.path / RunDirectory.PREDICTIONS, multilabel=self.multilabel)

    def label_figures(self) -> dict[str, float | None]:
        """A multilabel run's `MULTILABEL_COLUMNS` (fractions; None where no label has the figure): its
        ``metrics.json``'s top-level figures, else its ``multilabel`` block's ``mean`` (``f1`` there for ``mf1``)."""
        means = (self.metrics.get("multilabel") or {}).get("mean") or {}
        found = {}
        for name in MULTILABEL_COLUMNS:
            value = self.metrics[name] if name in self.metrics else means.get("f1" if name == "mf1" else name)
            found[name] = None if value is None else float(value)
        return found

    def label_values(self, figure: str) -> list[float | None]:
        """One figure of each label of a multilabel run (``auc``, ``sensitivity``, ...), in `classes` order, from its
        ``metrics.json``'s ``multilabel.per_label`` (None where a label has none)."""
        per_label = self.metrics["multilabel"]["per_label"]
        values = [per_label.get(name, {}).get(figure) for name in self.classes]
        return [None if value is None else float(value) for value in values]

    def ranking(self) -> dict[str, float | None]:
        """A binary run's `BINARY_COLUMNS` (fractions; None where its images have one class only): from its
        ``metrics.json``'s ``binary`` block, else (a logit-adjusted run) from its predictions' positive column."""
        block = self.metrics.get("binary")
        if isinstance(block, dict):
            return {name: None if block.get(name) is None else float(block[name]) for name in BINARY_COLUMNS}
        from sampleweight.binary_metrics import RANKING_METRICS, ranking_metrics

        scored = self.predictions
        values = ranking_metrics(scored.targets == 1, scored.scores[:, 1])
        found = {name: float(values[RANKING_METRICS.index(name)]) for name in BINARY_COLUMNS}
        return {name: value if np.isfinite(value) else None for name, value in found.items()}

    def calibration(self) -> tuple[float, float] | None:
        """``(ece, nll)``: from ``metrics.json``, else from ``predictions.csv``; None when neither has them (and for a
        multilabel run: its sigmoids have no top-label calibration)."""
        if self.multilabel:
            return None
        if "ece" in self.metrics and "nll" in self.metrics:
            return float(self.metrics["ece"]), float(self.metrics["nll"])
        if not (self.path / RunDirectory.PREDICTIONS).is_file():
            return None
        scored = self.predictions
        return (
            expected_calibration_error(scored.targets, scored.scores),
            negative_log_likelihood(scored.targets, scored.scores),
        )


@dataclass(frozen=True)
class Cell:
    """One row of a table: a setup (loss x weighting, sampler, options) over its runs (splits x seeds).

    Attributes:
        loss: The loss.
        weighting: The weighting.
        runs: The runs described (one per split and seed).
        figures: Per metric, its `Spread` over the runs (fractions): `METRICS`, and a binary cell's `BINARY_COLUMNS`
            (each only where every run has it: its images hold both classes); a multilabel cell's
            `MULTILABEL_COLUMNS` (the same rule).
        recall: Mean per-class recall [C] (fractions, in the runs' class order); a multilabel cell's: each label's
            sensitivity at its threshold [L] (NaN where a run has none).
        recall_sd: Its standard deviation over the runs [C].
        sampler: The training sampler.
        options: The weighter/loss options of the setup (`RunResult.options`).
        shown: Those of ``options`` (and the sampler) that tell it apart from other cells of its table,
            as ``key=value`` strings.
        ece: The runs' expected calibration error (None when no run has it).
        nll: The runs' mean negative log-likelihood.
        paper: The published figures for this cell in percent (the model's registered ``published``), or None.
        label_auc: A multilabel cell's per-label ROC AUC: per label, its `Spread` over the runs (only labels every
            run has an AUC of); empty for other tasks.
    """

    loss: str
    weighting: str
    runs: tuple[RunResult, ...]
    figures: dict[str, Spread]
    recall: np.ndarray
    recall_sd: np.ndarray
    sampler: str = field(default_factory=lambda: default_name("samplers"))
    options: dict[str, str] = field(default_factory=dict)
    shown: tuple[str, ...] = ()
    ece: Spread | None = None
    nll: Spread | None = None
    paper: dict[str, float] | None = None
    label_auc: dict[str, Spread] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """How many runs the cell describes."""
        return len(self.runs)

    @property
    def mean(self) -> dict[str, float]:
        """Per metric, the mean over the runs."""
        return {metric: spread.mean for metric, spread in self.figures.items()}

    @property
    def splits(self) -> list[int]:
        """The splits of its runs (each once)."""
        return sorted({run.split for run in self.runs})

    @property
    def seeds(self) -> list[int]:
        """The seeds of its runs (each once)."""
        return sorted({run.seed for run in self.runs})

    @property
    def label(self) -> str:
        """The weighting, with what tells it apart in its table: ``es normalize=classes``."""
        return " ".join([self.weighting, *self.shown])

    @property
    def name(self) -> str:
        """The full setup name, as ``--baseline`` takes it: ``ce-es-normalize=classes``."""
        return "-".join([self.loss, self.weighting, *self.shown])

    @property
    def by_key(self) -> dict[tuple[int, int], Predictions]:
        """Its runs' predictions by ``(split, seed)``."""
        return {run.key: run.predictions for run in self.runs}


@dataclass(frozen=True)
class CellComparison:
    """A cell against the table's baseline cell on the same images.

    Attributes:
        cell: The cell.
        baseline: The baseline cell it is compared with (`compare_with_baseline` says which).
        comparison: The differences ``cell - baseline``, with Holm-adjusted p-values.
    """

    cell: Cell
    baseline: Cell
    comparison: Comparison


@dataclass(frozen=True)
class ResultTable:
    """One table of the report: a model x optimizer, rows loss x weighting (x sampler, options).

    Attributes:
        model: The model.
        optimizer: The optimizer.
        cells: The rows, in the paper's order (ce before focal; none, cb, es, spl, ohem, then others).
        classes: Class names of the runs.
        setup: The options the runs share (``{"epochs": "150", ...}``; differing values joined by ``/``).
        comparisons: Paired differences to the baseline (`compare_with_baseline`), or none.
        task: The runs' task (`RunResult.task`): ``multiclass``, or ``binary:MEL``; a table holds one. A multilabel
            table's is ``multilabel``, or ``multilabel:TAG`` where one report holds runs of several label sets for
            its model and optimizer (``TAG``: 8 hex digits of a hash of the labels, so each set's files differ).
    """

    model: str
    optimizer: str
    cells: tuple[Cell, ...]
    classes: tuple[str, ...]
    setup: dict[str, str] = field(default_factory=dict)
    comparisons: tuple[CellComparison, ...] = ()
    task: str = MULTICLASS

    @property
    def binary(self) -> bool:
        """Whether its runs are binary (one sigmoid logit: the positive classes against the rest)."""
        return self.task.partition(":")[0] == "binary"

    @property
    def multilabel(self) -> bool:
        """Whether its runs are multilabel (one sigmoid per label; `classes` are the labels)."""
        return self.task.partition(":")[0] == MULTILABEL

    @property
    def metrics(self) -> tuple[str, ...]:
        """Its columns: `METRICS`, then for a binary table `BINARY_COLUMNS`; a multilabel table's are
        `MULTILABEL_COLUMNS`."""
        if self.multilabel:
            return MULTILABEL_COLUMNS
        return (*METRICS, *BINARY_COLUMNS) if self.binary else METRICS

    @property
    def compared(self) -> tuple[str, ...]:
        """What its paired comparisons measure: `COMPARED_METRICS`, then for a binary table `BINARY_COMPARED`; a
        multilabel table's `MULTILABEL_COMPARED`."""
        if self.multilabel:
            return MULTILABEL_COMPARED
        return (*COMPARED_METRICS, *BINARY_COMPARED) if self.binary else COMPARED_METRICS

    @property
    def published_source(self) -> str | None:
        """Where the model's registration says its published figures for this optimizer come from (``the paper's
        Table 2``), or None (and for another task than multiclass: the published figures are multiclass)."""
        if self.task != MULTICLASS:
            return None
        return published(self.model, self.optimizer).get("source")

    @property
    def title(self) -> str:
        """``MODEL, OPTIMIZER``, then the source of its published figures (``(the paper's Table 2)``) if any; another
        task follows: ``MODEL, OPTIMIZER, binary: MEL vs rest``, ``MODEL, OPTIMIZER, multilabel: 11 labels``."""
        source = self.published_source
        task = "" if self.task == MULTICLASS else f", {self.task.partition(':')[0]}: {self.classes[-1]} vs rest"
        if self.multilabel:
            tag = self.task.partition(":")[2]
            task = f", multilabel: {len(self.classes)} labels" + (f" ({tag})" if tag else "")
        return f"{self.model}, {self.optimizer}{task}" + (f" ({source})" if source else "")

    @property
    def key(self) -> str:
        """``MODEL-OPTIMIZER`` (``MODEL-OPTIMIZER-binary-MEL``, ``MODEL-OPTIMIZER-multilabel`` for another task): the
        stem of its files."""
        task = "" if self.task == MULTICLASS else "-" + self.task.replace(":", "-")
        return f"{self.model}-{self.optimizer}{task}"


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote.

    Attributes:
        tables: The tables.
        markdown: ``report.md``.
        csv_files: One CSV per table, then one per table's comparisons, then each multilabel table's per-label AUCs.
        figures: Recall bar charts, reliability diagrams and confusion matrices (PNG).
    """

    tables: tuple[ResultTable, ...]
    markdown: Path
    csv_files: tuple[Path, ...]
    figures: tuple[Path, ...]


def collect_runs(folder: str | Path) -> list[RunResult]:
    """Every finished run under ``folder`` (itself or any subfolder with ``metrics.json`` and ``config.json``).

    Folders with a ``metrics.json`` but no ``config.json`` (such as ``RUN/evaluate/``) are not runs. A run
    written by an older version reads with today's defaults for the options it did not know
    (`sampleweight.engine.config.complete_config`), so it shares a setup with a new run of the same options.

    A folder without runs but with the evaluations of ``sampleweight evaluate GRID --each`` (a ``metrics.json``
    beside a ``run.json``) gives those: each stands for its run (its config, from ``run.json``) scored on the test
    images (`RunResult.evaluation`). They must all score one data set. Evaluations beside runs are not read
    (a report never mixes validation and test figures).

    Raises:
        ConfigError: ``folder`` does not exist or holds no finished run (nor evaluation), or a run's
            ``config.json`` or ``metrics.json`` (an evaluation's ``run.json`` or ``metrics.json``) cannot be read
            or is not a sampleweight run's (the file is named); evaluations of different data sets, or of
            images without labels.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: pass the grid folder (the --out of sampleweight grid)")
    results, evaluations = [], []
    for metrics_path in sorted(folder.rglob(RunDirectory.FINAL)):
        config_path = metrics_path.with_name(RunDirectory.CONFIG)
        if config_path.is_file():
            config = complete_config(_read_run_file(config_path, _CONFIG_KEYS, folder))  # older runs: defaults
            metrics = _read_run_file(metrics_path, _metrics_keys(config), folder)
            results.append(RunResult(metrics_path.parent, config, metrics))
        elif metrics_path.with_name(SOURCE_FILE).is_file():  # run.json is written last: a complete evaluation
            evaluations.append(metrics_path.parent)
    if not results and evaluations:
        results = [_evaluation_result(path, folder) for path in evaluations]
        _check_one_test_set(results, folder)
    if not results:
        raise ConfigError(
            f"no finished runs in {folder}: a run directory has {RunDirectory.CONFIG} and {RunDirectory.FINAL}; "
            f"train some first, e.g. sampleweight grid --out {folder}"
        )
    return results


def _evaluation_result(path: Path, folder: Path) -> RunResult:
    """An evaluation folder of ``evaluate --each`` as a run of its source's setup, scored on the test images."""
    source = EvaluationSource.read(path)
    metrics = _read_run_file(path / RunDirectory.FINAL, ("runs", "data", "labelled"), folder)
    if metrics["labelled"] is False:
        raise ConfigError(
            f"report: {path} scored images without labels ({metrics['data']}): there is nothing to compare; "
            "evaluate the runs on a labelled test set"
        )
    _read_run_file(path / RunDirectory.FINAL, _metrics_keys(source.config), folder)
    missing = [key for key in _CONFIG_KEYS if key not in source.config]
    if missing:
        raise ConfigError(
            f"report: {path / SOURCE_FILE} holds no sampleweight run's config (no {', '.join(missing)}); delete "
            f"{path} and evaluate the grid again with sampleweight evaluate GRID --each"
        )
    tta, tau = str(metrics.get("tta") or "none"), metrics.get("logit_adjust")
    evaluation = Evaluation(source, str(metrics["data"]), tta, None if tau is None else float(tau))
    return RunResult(path, complete_config(source.config), metrics, evaluation=evaluation)


def _check_one_test_set(runs: Sequence[RunResult], folder: Path) -> None:
    """The evaluations of one report score one data set (their comparisons pair them on its images)."""
    data = {run.path: run.evaluation.data for run in runs if run.evaluation is not None}
    first = next(iter(data))
    for path, other in data.items():
        if _spelled_out(other) != _spelled_out(data[first]):
            raise ConfigError(
                f"report: the evaluations in {folder} score different data sets ({data[first]} in {first}, {other} "
                f"in {path}); report each test set's evaluations from a folder of their own"
            )


def _spelled_out(data: str) -> str:
    return str(Path(data).resolve()) if Path(data).exists() else data


def logit_adjusted_run(run: RunResult, tau: float) -> RunResult:
    """``run`` after post-hoc logit adjustment of its validation predictions, as a run of its own setup.

    The probabilities of its ``predictions.csv`` become ``softmax(log p - tau log prior)`` with the run's
    training prior (its ``data.json``; `sampleweight.engine.evaluation.logit_adjust`), decided again (argmax,
    or greedily for the hierarchical model) and scored (`sampleweight.metrics.final_metrics`, no intervals).
    Its options gain ``logit_adjust=tau``, so it is a setup of its own, compared on the same images.

    Raises:
        ConfigError: ``tau`` is negative, or the run's training prior is unknown (no ``data.json``), or it is a
            multilabel run.
    """
    if not (np.isfinite(tau) and tau >= 0):
        raise ConfigError(f"--logit-adjust takes a tau >= 0 (1 is Menon et al.'s), got {tau}")
    if run.multilabel:
        raise ConfigError(
            f"report: {run.path} is a multilabel run: its labels' sigmoids have no class prior to subtract (logit "
            "adjustment is a softmax's); leave out --logit-adjust for it"
        )
    if run.evaluation is not None and run.evaluation.logit_adjust is not None:
        raise ConfigError(
            f"report: {run.path} was logit-adjusted when it was evaluated (--logit-adjust "
            f"{run.evaluation.logit_adjust:g}); adjusting it again would correct it twice: leave out --logit-adjust"
        )
    scored = run.predictions
    scores = logit_adjust(scored.scores, run.class_counts, tau)
    taxonomy = None
    if is_hierarchical(run.model):
        taxonomy = label_tree(run.model, run.config.get("taxonomy"), tuple(run.classes))
    predicted = decide(scores, taxonomy)
    metrics = {**final_metrics(scored.targets, scores, predicted, run.classes, resamples=0), "logit_adjust": tau}
    adjusted = replace(scored, predicted=np.asarray(predicted, dtype=np.int64), scores=scores)
    return RunResult(run.path, run.config, metrics, logit_adjust=tau, adjusted=adjusted, evaluation=run.evaluation)


def multiclass_scored_run(run: RunResult, positive: Sequence[str]) -> RunResult:
    """A multiclass run scored as a binary run of ``positive`` against the rest, as a setup of its own.

    Its validation probabilities give ``P(positive) = the sum of the positive classes' probabilities``
    (`Predictions.one_vs_rest`), decided positive where its decided class is one of them: scored as a binary run is
    (`sampleweight.metrics.final_metrics` of the two classes, no intervals, and a ``binary`` block of
    `sampleweight.binary_metrics.binary_metrics`, its threshold chosen on these images by Youden's J). Its config's
    task becomes ``binary`` with these positive classes, so it joins their binary table, and its options gain
    ``from=C-class`` (a row ``none from=7-class``, named ``ce-none-from=7-class``), so it is a setup of its own there,
    paired with the binary runs on the same images.

    Raises:
        ConfigError: It is not a multiclass run, or ``positive`` names a class it does not have.
    """
    if run.task != MULTICLASS:
        raise ConfigError(f"report: {run.path} is a {run.task} run; only a multiclass run is scored as a binary task")
    from sampleweight.binary_metrics import binary_metrics

    scored = run.predictions.one_vs_rest(list(positive))
    metrics = {
        **final_metrics(scored.targets, scored.scores, scored.predicted, list(scored.classes), resamples=0),
        "task": "binary",
        "binary": binary_metrics(scored.targets, scored.scores[:, 1], resamples=0),
    }
    config = {**run.config, "task": "binary", "positive": list(positive)}
    return RunResult(run.path, config, metrics, adjusted=scored, evaluation=run.evaluation,
                     scored_from=len(run.classes))  # fmt: skip


def multiclass_label_tree_run(run: RunResult) -> RunResult:
    """A multiclass run scored as a multilabel run of its label tree's form, as a setup of its own.

    The labels are the nodes of the run's label tree but the root (`sampleweight.data.multilabel.taxonomy_labels`:
    its ``taxonomy`` option, else its model's, else ISIC 2018's), the form a single-label data set takes under
    ``--task multilabel``. A node's probability is the sum of its classes' probabilities (P(malignant) = P(BCC) +
    P(AKIEC)), an image's true labels are its class and the nodes above it, and each label is decided at its threshold
    chosen on these images by Youden's J, as a multilabel run's are (`sampleweight.engine.multilabel.multilabel_final`,
    no intervals). Its config's task becomes ``multilabel``, so it joins that label set's table, and its options gain
    ``from=C-class`` (a row ``none from=7-class``), paired with the multilabel runs on the same images.

    Raises:
        ConfigError: It is not a multiclass run.
    """
    if run.task != MULTICLASS:
        raise ConfigError(f"report: {run.path} is a {run.task} run; only a multiclass run is scored on its label tree")
    from sampleweight.engine.multilabel import multilabel_final

    tree = label_tree(run.model, run.config.get("taxonomy"), tuple(run.classes))
    nodes = run.predictions.on_label_tree(tree)
    metrics, decided = multilabel_final(nodes.targets, nodes.scores, nodes.classes, resamples=0)
    scored = replace(nodes, predicted=decided)
    config = {**run.config, "task": MULTILABEL}
    return RunResult(run.path, config, metrics, adjusted=scored, evaluation=run.evaluation,
                     scored_from=len(run.classes))  # fmt: skip


def multiclass_scored_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """Each multiclass run scored as each binary task of its model and optimizer that it can serve
    (`multiclass_scored_run`), and as each multilabel table of its label tree's form (`multiclass_label_tree_run`).

    A multiclass run (as trained) serves a binary task (its ``--positive`` classes) when it has those classes and a
    binary run of its model and optimizer on its split and seed was scored on the same images with the same labels
    (the binary split is the multiclass one relabelled: the same data, split, seed and validation fraction), so the
    two pair image by image; other multiclass runs are left out of that binary table. Likewise it serves a
    multilabel table whose labels are its label tree's nodes when a multilabel run of its model and optimizer on its
    split and seed was scored on the same images with the same true labels (``--task multilabel`` on the same
    single-label data).
    """
    binary: dict[tuple[str, str, tuple[str, ...]], dict[tuple[int, int], RunResult]] = {}
    multilabel: dict[tuple[str, str, tuple[str, ...]], dict[tuple[int, int], RunResult]] = {}
    for run in runs:
        positive = run.config.get("positive")
        if run.logit_adjust is not None or run.scored_from is not None:
            continue
        if run.task.startswith("binary") and positive:
            binary.setdefault((run.model, run.optimizer, tuple(positive)), {}).setdefault(run.key, run)
        elif run.multilabel:
            multilabel.setdefault((run.model, run.optimizer, tuple(run.classes)), {}).setdefault(run.key, run)
    found = []
    for run in runs:
        if run.task != MULTICLASS or run.logit_adjust is not None:
            continue
        for (model, optimizer, positive), by_key in binary.items():
            partner = by_key.get(run.key)
            if (model, optimizer) != (run.model, run.optimizer) or partner is None:
                continue
            if not set(positive) <= set(run.classes):
                continue
            scored = multiclass_scored_run(run, positive)
            if _same_images(scored.predictions, partner.predictions):
                found.append(scored)
        partners = [
            by_key[run.key]
            for (model, optimizer, _), by_key in multilabel.items()
            if (model, optimizer) == (run.model, run.optimizer) and run.key in by_key
        ]
        if partners:
            scored = multiclass_label_tree_run(run)
            if any(
                tuple(scored.classes) == tuple(partner.classes)
                and _same_images(scored.predictions, partner.predictions)
                for partner in partners
            ):
                found.append(scored)
    return found


def _same_images(a: Predictions, b: Predictions) -> bool:
    """Whether two runs were scored on the same images with the same true classes (labels) (matched by image id)."""
    if sorted(a.images) != sorted(b.images):
        return False
    order_a, order_b = np.argsort(np.asarray(a.images, dtype=object)), np.argsort(np.asarray(b.images, dtype=object))
    return bool(np.array_equal(a.targets[order_a], b.targets[order_b]))


def summarize(runs: Iterable[RunResult], *, paper: bool = False) -> list[ResultTable]:
    """Group runs into the paper's tables: one per model x optimizer (and task), a row per setup.

    Runs of another task than multiclass (``binary:MEL``) make tables of their own, after the multiclass one, with
    the columns `BINARY_COLUMNS` besides `METRICS`; multilabel runs one per label set, after those, with the columns
    `MULTILABEL_COLUMNS` and each label's AUC.

    Args:
        runs: Finished runs (`collect_runs`).
        paper: Attach the paper's figures to the cells that the paper reports (`Cell.paper`): its loss
            x weighting with the default sampler and no options.

    Returns:
        The tables, in the paper's order (Tables 2-5 first: the default comparison's models in their order, adam
        before sgd).

    Raises:
        ConfigError: Runs of one table have different classes; runs of one cell differ in something
            other than split, seed and execution options, or two of them share a split and seed.
    """
    groups: dict[tuple[str, str, str], dict[tuple[Any, ...], list[RunResult]]] = {}
    for run in runs:
        cell_key = (run.loss, run.weighting, run.sampler, tuple(run.options.items()))
        groups.setdefault((run.model, run.optimizer, _table_task(run)), {}).setdefault(cell_key, []).append(run)
    groups = _tagged_label_sets(groups)
    tables = []
    model_order, loss_order, weighting_order = default_axis("models"), default_axis("losses"), default_axis("weighters")
    default_sampler = default_name("samplers")
    optimizer_order = default_axis("optimizers")
    for model, optimizer, task in sorted(
        groups, key=lambda k: (_rank(k[0], model_order), _rank(k[1], optimizer_order), _rank(k[2], (MULTICLASS,)))
    ):
        rows = groups[(model, optimizer, task)]
        members = [run for group in rows.values() for run in group]
        classes = members[0].classes
        for run in members:
            if run.classes != classes:
                raise ConfigError(
                    f"runs of {model}, {optimizer} have different classes: {members[0].path} has {classes}, "
                    f"{run.path} has {run.classes}; report them from separate folders"
                )
        ordered = sorted(rows, key=lambda k: (_rank(k[0], loss_order), _rank(k[1], weighting_order),
                                              _rank(k[2], (default_sampler,)), k[3]))  # fmt: skip
        distinguishing = _distinguishing(list(rows))
        kind = ResultTable(model, optimizer, (), tuple(classes), task=task)
        cells = tuple(
            _cell(model, optimizer, key, rows[key], distinguishing[key], paper and key[2:] == (default_sampler, ()),
                  binary=kind.binary, multilabel=kind.multilabel)
            for key in ordered
        )  # fmt: skip
        setup = _setup(members)
        if kind.multilabel:
            setup["labels"] = ", ".join(classes)
        tables.append(ResultTable(model, optimizer, cells, tuple(classes), setup, task=task))
    return tables


def _table_task(run: RunResult) -> str:
    """The task of the run's table: `RunResult.task`, a multilabel run's with its labels (``multilabel:A;B;C``)."""
    return f"{MULTILABEL}:{';'.join(run.classes)}" if run.multilabel else run.task


def _tagged_label_sets(groups: dict[tuple[str, str, str], Any]) -> dict[tuple[str, str, str], Any]:
    """The groups with each multilabel table's task as `ResultTable.task` names it: ``multilabel``, or
    ``multilabel:TAG`` where its model and optimizer have runs of several label sets."""
    sets = Counter((model, optimizer) for model, optimizer, task in groups if task.startswith(f"{MULTILABEL}:"))
    renamed = {}
    for (model, optimizer, task), rows in groups.items():
        kind, _, labels = task.partition(":")
        if kind == MULTILABEL:
            digest = hashlib.blake2b(labels.encode(), digest_size=4).hexdigest()
            task = f"{MULTILABEL}:{digest}" if sets[(model, optimizer)] > 1 else MULTILABEL
        renamed[(model, optimizer, task)] = rows
    return renamed


def compare_with_baseline(
    tables: Sequence[ResultTable],
    baseline: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    method: str = DEFAULT_METHOD,
) -> list[ResultTable]:
    """The tables with every cell's paired difference to the baseline cell of its table.

    A cell is compared with the baseline cell of its table (so of its task: a binary cell with a binary baseline of
    the same positive classes, never with a multiclass one; a multilabel cell with a multilabel baseline of the same
    labels, on the means over its labels of AUC, pAUC and AP) of the same loss and sampler when the table has one
    (else of the same loss; a baseline named in full is also the baseline of the other losses), on the runs both have
    for a split and seed,
    matched by image id; pooled over those pairs (`PairedBootstrap`). Holm's correction runs over the pooled
    comparisons of a table (cells x metrics), and separately over those of each pair.

    Args:
        tables: From `summarize`.
        baseline: A weighting (``none``: its plain cell of each loss is that loss's baseline, plain meaning
            the sampler and options every cell of the loss shares, so ``focal-none gamma=2.0`` in a grid run
            with ``--gamma 2``; its other cells, such as ``none sampler=class_balanced`` or
            ``none logit_adjust=1.0``, are compared with the plain one of their loss, and a loss without a
            plain cell of that weighting is not compared) or a full setup name (`Cell.name`, e.g.
            ``ce-none``: the baseline of every cell).
        resamples: Bootstrap resamples per pair.
        seed: Seed of the resamples.
        level: Coverage of the intervals.
        method: ``"percentile"`` or ``"bca"``: how the intervals and p-values are read from the resamples
            (`PairedBootstrap`).

    Raises:
        ConfigError: ``baseline`` names no cell of any table (the names it could be are listed).
    """
    if not any(_baseline_cells(table, baseline) for table in tables):
        names = {c.name for table in tables for c in table.cells}
        names |= {c.weighting for table in tables for c in table.cells if c in _baseline_cells(table, c.weighting)}
        raise ConfigError(
            f"--baseline {baseline!r} names no setup in the report; choose one of: {', '.join(sorted(names))}"
        )
    bootstraps: dict[tuple[str, ...], PairedBootstrap] = {}
    compared = []
    for table in tables:
        metrics = _scored_metrics(table)
        if metrics not in bootstraps:
            bootstraps[metrics] = PairedBootstrap(metrics, resamples=resamples, seed=seed, level=level, method=method)
        bootstrap = bootstraps[metrics]
        candidates = _baseline_cells(table, baseline)
        named = any(cell.name == baseline for cell in candidates)
        found = []
        for cell in table.cells:
            reference = _baseline_for(cell, candidates, across_losses=named)
            if reference is not None and set(cell.by_key) & set(reference.by_key):
                comparison = _named_as_columns(bootstrap.compare(cell.by_key, reference.by_key), table.compared)
                found.append((cell, reference, comparison))
        compared.append(replace(table, comparisons=_holm_per_table(found)))
    return compared


def _scored_metrics(table: ResultTable) -> tuple[str, ...]:
    """`ResultTable.compared` as `PairedBootstrap` takes them: a binary table's ``auc`` is ``auc:POSITIVE``, a
    multilabel table's ``mean_auc`` (`MEAN_RANKED`)."""
    if table.multilabel:
        return MEAN_RANKED
    positive = table.classes[-1]
    return tuple(f"{m}:{positive}" if m in BINARY_COMPARED and table.binary else m for m in table.compared)


def _named_as_columns(comparison: Comparison, metrics: Sequence[str]) -> Comparison:
    """The comparison with each difference named by its report column (``auc``, not ``auc:MEL``)."""

    def named(differences: Sequence[Difference]) -> tuple[Difference, ...]:
        return tuple(replace(d, metric=m) for d, m in zip(differences, metrics, strict=True))

    per_pair = {key: named(differences) for key, differences in comparison.per_pair.items()}
    return Comparison(named(comparison.pooled), per_pair, comparison.unpaired)


def format_cell(spread: Spread) -> str:
    """``83.5 ± 1.2 (82.1-84.9)`` in percent: mean ± standard deviation (min-max); the value alone for one run."""
    if spread.n < 2:
        return f"{100 * spread.mean:.1f}"
    return f"{100 * spread.mean:.1f} ± {100 * spread.sd:.1f} ({100 * spread.low:.1f}-{100 * spread.high:.1f})"


def markdown_table(table: ResultTable, *, paper: bool = False) -> str:
    """A table as Markdown: loss, weighting, n, then each metric (and the paper's beside it).

    The best mean of each of our columns is bold (where the column varies). A multilabel table has no paper columns.
    """
    paper = paper and not table.multilabel
    header = ["loss", "weighting", "n"]
    for metric in table.metrics:
        header.append(METRIC_LABELS[metric])
        if paper and metric in METRICS:
            header.append(f"{METRIC_LABELS[metric]} paper")
    means = {m: [cell.mean[m] for cell in table.cells if m in cell.figures] for m in table.metrics}
    best = {m: max(values, default=np.nan) for m, values in means.items()}
    varies = {m: bool(values) and min(values) < best[m] for m, values in means.items()}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for cell in table.cells:
        row = [cell.loss, cell.label, str(cell.n)]
        for metric in table.metrics:
            text = _figure_text(cell, metric)
            row.append(f"**{text}**" if varies[metric] and cell.mean.get(metric) == best[metric] else text)
            if paper and metric in METRICS:
                row.append(_paper_text(cell, metric))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def rich_table(table: ResultTable, *, paper: bool = False) -> Table:
    """A table for the terminal: the Markdown table's content, the paper's figures dimmed."""
    paper = paper and not table.multilabel
    view = Table(title=escape(table.title), title_justify="left")
    for name in ("loss", "weighting", "n"):
        view.add_column(name)
    for metric in table.metrics:
        view.add_column(METRIC_LABELS[metric], justify="right")
        if paper and metric in METRICS:
            view.add_column("paper", justify="right", style="dim")
    for cell in table.cells:
        row = [escape(cell.loss), escape(cell.label), str(cell.n)]  # names as typed, not markup
        for metric in table.metrics:
            row.append(_figure_text(cell, metric))
            if paper and metric in METRICS:
                row.append(_paper_text(cell, metric))
        view.add_row(*row)
    return view


def markdown_label_table(table: ResultTable) -> str:
    """A multilabel table's per-label ROC AUC as Markdown: a row per setup, a column per label (percent, mean ± sd
    over the runs; ``–`` where a run's validation images hold one class of the label); the best mean of a label bold
    (where it varies)."""
    header = ["loss", "weighting", "n", *table.classes]
    means = {
        name: [cell.label_auc[name].mean for cell in table.cells if name in cell.label_auc] for name in table.classes
    }
    best = {name: max(values, default=np.nan) for name, values in means.items()}
    varies = {name: bool(values) and min(values) < best[name] for name, values in means.items()}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(table.classes)) + "|"]
    for cell in table.cells:
        row = [cell.loss, cell.label, str(cell.n)]
        for name in table.classes:
            spread = cell.label_auc.get(name)
            text = "–" if spread is None else _mean_sd_text(spread)
            row.append(f"**{text}**" if spread is not None and varies[name] and spread.mean == best[name] else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def rich_label_table(table: ResultTable) -> Table:
    """A multilabel table's per-label ROC AUC for the terminal (`markdown_label_table`'s content)."""
    view = Table(title=f"{escape(table.title)}: each label's ROC AUC", title_justify="left")
    for name in ("loss", "weighting", "n"):
        view.add_column(name)
    for name in table.classes:
        view.add_column(escape(name), justify="right")
    for cell in table.cells:
        texts = [
            "–" if cell.label_auc.get(name) is None else _mean_sd_text(cell.label_auc[name]) for name in table.classes
        ]
        view.add_row(escape(cell.loss), escape(cell.label), str(cell.n), *texts)
    return view


def _mean_sd_text(spread: Spread) -> str:
    """``83.5 ± 1.2`` in percent (the value alone for one run)."""
    return f"{100 * spread.mean:.1f}" + (f" ± {100 * spread.sd:.1f}" if spread.n > 1 else "")


def markdown_comparisons(table: ResultTable) -> str:
    """The table's paired differences to its baseline as Markdown (pooled over the pairs); bold: significant."""
    header = ["loss", "weighting", "vs", "pairs", *(f"Δ{METRIC_LABELS[m]}" for m in table.compared)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---:|" + "---:|" * len(table.compared)]
    for item in table.comparisons:
        differences = item.comparison.pooled
        row = [item.cell.loss, item.cell.label, item.baseline.name, str(differences[0].pairs)]
        lines.append("| " + " | ".join(row + [_difference_text(d, markdown=True) for d in differences]) + " |")
    return "\n".join(lines)


def rich_comparisons(table: ResultTable) -> Table:
    """The table's paired differences to its baseline, for the terminal (significant ones in bold)."""
    view = Table(title=f"{escape(table.title)}: paired differences (percentage points)", title_justify="left")
    for name in ("loss", "weighting", "vs", "pairs"):
        view.add_column(name)
    for metric in table.compared:
        view.add_column(f"Δ{METRIC_LABELS[metric]}", justify="right")
    for item in table.comparisons:
        differences = item.comparison.pooled
        texts = [_difference_text(d) for d in differences]
        texts = [f"[bold]{t}[/]" if d.significant else t for t, d in zip(texts, differences, strict=True)]
        names = (escape(item.cell.loss), escape(item.cell.label), escape(item.baseline.name))  # not markup
        view.add_row(*names, str(differences[0].pairs), *texts)
    return view


def write_report(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    paper: bool = False,
    figures: bool = True,
    baseline: str | None = None,
    resamples: int = 2000,
    logit_adjust: Sequence[float] = (),
    method: str = DEFAULT_METHOD,
    score_multiclass: bool = False,
) -> Report:
    """Write the report of every finished run under ``folder``.

    Files (in ``out``, default ``folder``): ``report.md``; ``table-MODEL-OPTIMIZER.csv`` per table
    (percent: ``acc``, ``acc_sd``, ``acc_min``, ``acc_max``, ..., ``ece``, ``nll``, and with ``paper``
    the paper's ``paper_acc``, ...; a binary table's ``table-MODEL-OPTIMIZER-binary-MEL.csv`` adds ``auc``, ``pauc``,
    ``ap``; a multilabel table's ``table-MODEL-OPTIMIZER-multilabel.csv`` has ``auc``, ``pauc``, ``ap``, ``bacc``,
    ``mf1`` only, and ``labels-MODEL-OPTIMIZER-multilabel.csv`` each label's AUC); with ``baseline``,
    ``comparisons-MODEL-OPTIMIZER.csv`` per table; ``figures/recall-MODEL-OPTIMIZER-LOSS.png`` (per-class recall per
    setup, the paper's Figures 1-2; a multilabel table's: each label's recall at its threshold, and
    ``figures/auc-MODEL-OPTIMIZER-multilabel-LOSS.png`` each label's AUC), ``figures/reliability-MODEL-OPTIMIZER.png``
    per table and ``figures/confusion/RUN.png`` per run (neither for multilabel runs: their sigmoids have no top-label
    calibration nor one confusion matrix).

    Args:
        folder: The grid folder (or any folder holding run directories).
        out: Where to write (default ``folder``).
        paper: Put the paper's figures beside ours (in the Markdown and the CSVs).
        figures: Draw the PNG figures.
        baseline: Compare every setup with this one on the same images (`compare_with_baseline`).
        resamples: Bootstrap resamples per pair of runs for the comparisons.
        logit_adjust: Also show every run after post-hoc logit adjustment with each of these taus
            (`logit_adjusted_run`), as setups ``LOSS-WEIGHTING-logit_adjust=TAU`` (multilabel runs: as trained only).
        method: The comparisons' intervals and p-values: ``"percentile"`` or ``"bca"`` (`compare_with_baseline`).
        score_multiclass: Also score every multiclass run as each binary task it serves (`multiclass_scored_runs`:
            ``P(positive) = the sum of their probabilities``), as rows ``from=C-class`` of that binary table.

    Returns:
        A `Report` with the tables and the files written.

    Raises:
        ConfigError: No finished runs in ``folder``; ``baseline`` names no setup; a negative tau, or a run
            whose training prior is unknown (with ``logit_adjust``).
    """
    folder = Path(folder)
    runs = collect_runs(folder)
    adjustable = [run for run in runs if not run.multilabel]  # a softmax's prior: not a multilabel run's sigmoids
    adjusted = [logit_adjusted_run(run, float(tau)) for tau in logit_adjust for run in adjustable]
    rebalanced = _rebalanced(adjustable) if logit_adjust else (0, Counter())  # runs the adjustment corrects twice
    runs += adjusted
    if score_multiclass:
        runs += multiclass_scored_runs(runs)
    tables = summarize(runs, paper=paper)
    if baseline is not None:
        tables = compare_with_baseline(tables, baseline, resamples=resamples, method=method)
    out = output_folder(out if out is not None else folder)
    csv_files = [_write_csv(table, out / f"table-{table.key}.csv", paper=paper) for table in tables]
    if baseline is not None:
        csv_files += [_write_comparisons(table, out / f"comparisons-{table.key}.csv") for table in tables]
    csv_files += [_write_label_auc(table, out / f"labels-{table.key}.csv") for table in tables if table.multilabel]
    drawn: list[Path] = []
    table_figures: dict[str, list[Path]] = {}
    if figures:
        for table in tables:
            table_figures[table.key] = _recall_figures(table, out / FIGURES_FOLDER)
            if table.multilabel:
                table_figures[table.key] += _label_auc_figures(table, out / FIGURES_FOLDER)
            else:
                reliability = _reliability_figure(table, out / FIGURES_FOLDER / f"reliability-{table.key}.png")
                table_figures[table.key] += [reliability] if reliability is not None else []
            drawn += table_figures[table.key]
        for run in runs:
            if not run.multilabel and run.scored_from is None:  # multilabel: a decision per label; scored: its run's
                drawn.append(_confusion_figure(run, folder, out / FIGURES_FOLDER / "confusion"))
    markdown = out / REPORT_FILE
    text = _markdown(tables, folder, out, runs, paper, baseline, table_figures, drawn, rebalanced, bool(logit_adjust))
    atomic_write_text(markdown, text)
    return Report(tuple(tables), markdown, tuple(csv_files), tuple(drawn))


# ------------------------------------------------------------------------------------------------ helpers


def _cell(
    model: str,
    optimizer: str,
    key: tuple[Any, ...],
    runs: Sequence[RunResult],
    shown: tuple[str, ...],
    paper: bool,
    *,
    binary: bool = False,
    multilabel: bool = False,
) -> Cell:
    loss, weighting, sampler, options = key
    runs = sorted(runs, key=lambda r: (r.key, str(r.path)))
    _check_comparable(runs, f"{model} {optimizer} {'-'.join([loss, weighting, *shown])}")
    calibration = [c for c in (run.calibration() for run in runs) if c is not None]
    label_auc: dict[str, Spread] = {}
    if multilabel:  # as a binary cell's: a figure only where every run has it
        recall = np.array([run.label_values("sensitivity") for run in runs], dtype=float)  # None: NaN
        found = [run.label_figures() for run in runs]
        values = {m: [figures[m] for figures in found] for m in MULTILABEL_COLUMNS}
        figures = {m: describe(v) for m, v in values.items() if all(x is not None for x in v)}
        aucs = [run.label_values("auc") for run in runs]
        for i, name in enumerate(runs[0].classes):
            if all(auc[i] is not None for auc in aucs):
                label_auc[name] = describe([auc[i] for auc in aucs])
    else:
        recall = np.array([[run.metrics["per_class"][c]["recall"] for c in run.classes] for run in runs], dtype=float)
        figures = {m: describe([run.metrics[m] for run in runs]) for m in METRICS}
    if binary:  # a figure only where every run has it (a run's images with one class have no AUC)
        ranked = [run.ranking() for run in runs]
        values = {m: [found[m] for found in ranked] for m in BINARY_COLUMNS}
        figures.update({m: describe(v) for m, v in values.items() if all(x is not None for x in v)})
    return Cell(
        loss=loss,
        weighting=weighting,
        runs=tuple(runs),
        figures=figures,
        recall=recall.mean(axis=0),
        recall_sd=recall.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(recall.shape[1]),
        sampler=sampler,
        options=dict(options),
        shown=shown,
        ece=describe([c[0] for c in calibration]) if calibration else None,
        nll=describe([c[1] for c in calibration]) if calibration else None,
        paper=published(model, optimizer).get("results", {}).get(loss, {}).get(weighting) if paper else None,
        label_auc=label_auc,
    )


def _rebalanced(runs: Sequence[RunResult]) -> tuple[int, Counter[str]]:
    """How many trained runs already rebalance their classes, and how many do in each way
    (`saved_run_rebalancing`)."""
    ways = [saved_run_rebalancing(run.config, run.class_counts) for run in runs]
    return sum(map(bool, ways)), Counter(way for found in ways for way in found)


def _distinguishing(keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[str, ...]]:
    """Per cell key, the ``key=value`` texts (sampler first) that not every cell of the table shares."""
    items = {key: [("sampler", key[2]), *key[3]] for key in keys}
    common = set.intersection(*(set(found) for found in items.values()))
    shown = {}
    for key, found in items.items():
        weighters = key[1].split("+")
        texts = []
        for name, value in found:
            if (name, value) in common or (name == "sampler" and value == default_name("samplers")):
                continue
            if name == "sampler":
                texts.append(f"sampler={value}")
                continue
            scope, _, option = name.partition(".")
            shown_name = option if option and weighters == [scope] else name  # "normalize" on an es-only cell
            texts.append(f"{shown_name}={_plain(value)}")
        shown[key] = tuple(texts)
    return shown


def _plain(value: str) -> str:
    """A JSON value as a reader writes it: ``classes`` rather than ``"classes"``."""
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def _check_comparable(runs: Sequence[RunResult], cell: str) -> None:
    """The runs of one cell must be the same experiment on different splits/seeds, or the mean is meaningless."""
    first = runs[0]
    for i, other in enumerate(runs[1:], start=1):
        if other.key == runs[i - 1].key:
            raise ConfigError(
                f"report: {runs[i - 1].path} and {other.path} are both split {other.split}, seed {other.seed} of "
                f"{cell}; a cell holds one run per split and seed: report the grids separately, or move one of "
                "them out of the folder"
            )
        for key in sorted(set(first.config) | set(other.config)):
            if key in _PER_RUN_FIELDS or key in _CELL_FIELDS:
                continue
            if first.config.get(key) != other.config.get(key):
                raise ConfigError(
                    f"report: the runs of {cell} differ in {key} ({first.config.get(key)!r} in {first.path}, "
                    f"{other.config.get(key)!r} in {other.path}); a cell describes one setup over splits and "
                    "seeds: report grids of different setups separately"
                )


def _loss_defaults(loss: str) -> dict[str, Any]:
    """The plain (JSON) defaults of a registered loss's options, read from its factory's signature; none for a
    loss that is not installed here."""
    try:
        defaults = option_defaults(lookup(None, "losses", loss).factory)
    except SampleWeightError:
        return {}
    return {key: value for key, value in defaults.items() if isinstance(value, (bool, int, float, str))}


def _baseline_cells(table: ResultTable, baseline: str) -> list[Cell]:
    """The table's cells that ``baseline`` names: the cell of that full name, or the weighting's plain cells.

    A weighting's cell is plain when it has the sampler and options that every cell of its loss shares (the
    default sampler counts as plain): ``none`` itself, or ``focal-none gamma=2.0`` when every focal cell has
    ``gamma=2.0``. A retrained stage is a weighting of its own (``none+crt``).
    """
    named = [cell for cell in table.cells if cell.name == baseline]
    if named:
        return named
    found = []
    for cell in table.cells:
        if cell.weighting != baseline:
            continue
        same_loss = [other for other in table.cells if other.loss == cell.loss]
        shared = set.intersection(*(set(other.options.items()) for other in same_loss))
        one_sampler = len({other.sampler for other in same_loss}) == 1
        if (cell.sampler == default_name("samplers") or one_sampler) and set(cell.options.items()) == shared:
            found.append(cell)
    return found


def _baseline_for(cell: Cell, candidates: Sequence[Cell], *, across_losses: bool) -> Cell | None:
    """The baseline cell ``cell`` is compared with: same loss and sampler, else same loss, else (for a baseline
    named in full, ``across_losses``) the only one."""
    if cell in candidates or not candidates:
        return None
    rules: list[Callable[[Cell], bool]] = [
        lambda b: b.loss == cell.loss and b.sampler == cell.sampler,
        lambda b: b.loss == cell.loss,
    ]
    for rule in rules:
        matches = [b for b in candidates if rule(b)]
        if matches:
            return matches[0]
    return candidates[0] if across_losses and len(candidates) == 1 else None


def _holm_per_table(found: Sequence[tuple[Cell, Cell, Comparison]]) -> tuple[CellComparison, ...]:
    """Holm's correction over the table's pooled differences, and over each pair's, as separate families."""
    pooled = holm_family([d for _, _, comparison in found for d in comparison.pooled])
    per_key: dict[Any, list[Difference]] = {}
    for _, _, comparison in found:
        for key, differences in comparison.per_pair.items():
            per_key.setdefault(key, []).extend(differences)
    adjusted = {key: iter(holm_family(differences)) for key, differences in per_key.items()}
    result, position = [], 0
    for cell, reference, comparison in found:
        count = len(comparison.pooled)
        per_pair = {
            key: tuple(next(adjusted[key]) for _ in found_here) for key, found_here in comparison.per_pair.items()
        }
        adjusted_comparison = Comparison(tuple(pooled[position : position + count]), per_pair, comparison.unpaired)
        result.append(CellComparison(cell, reference, adjusted_comparison))
        position += count
    return tuple(result)


def _difference_text(difference: Difference, *, markdown: bool = False) -> str:
    """``+6.2 [+4.1, +8.3] p 0.002`` in percentage points; with ``markdown``, the value bold when significant."""
    value = f"{100 * difference.estimate:+.1f}"
    if markdown and difference.significant:
        value = f"**{value}**"
    p = difference.p if difference.p_holm is None else difference.p_holm
    return f"{value} [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}] p {_p_text(p)}"


def _figure_text(cell: Cell, metric: str) -> str:
    """`format_cell` of the cell's figure, or ``–`` where it has none (a binary run's images of one class)."""
    return format_cell(cell.figures[metric]) if metric in cell.figures else "–"


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _paper_text(cell: Cell, metric: str) -> str:
    return "–" if cell.paper is None else f"{cell.paper[metric]:.1f}"


def _test_data(runs: Sequence[RunResult]) -> str | None:
    """The test set the evaluations among ``runs`` score (`collect_runs` reads one at a time), or None."""
    return next((run.evaluation.data for run in runs if run.evaluation is not None), None)


def _setup(runs: Sequence[RunResult]) -> dict[str, str]:
    setup = {}
    for key in _SETUP:
        values = sorted({_setup_value(key, run.config.get(key)) for run in runs})
        setup[key] = " / ".join(values)
    test = _test_data(runs)
    if test is not None:
        setup["evaluated on"] = test
    setup["sampler"] = " / ".join(sorted({run.sampler for run in runs}))
    setup["splits"] = ", ".join(str(s) for s in sorted({run.split for run in runs}))
    setup["seeds"] = ", ".join(str(s) for s in sorted({run.seed for run in runs}))
    return setup


def _setup_value(key: str, value: Any) -> str:
    if key == "backbone" and value is None:
        return "vgg16"
    return str(value)


def _write_csv(table: ResultTable, path: Path, *, paper: bool) -> Path:
    columns = ["loss", "weighting", "setup", "n", "splits", "seeds"]
    paper = paper and not table.multilabel
    shown = table.metrics if table.multilabel else (*METRICS, "ece", "nll", *table.metrics[len(METRICS) :])
    for metric in shown:
        columns += [metric, f"{metric}_sd", f"{metric}_min", f"{metric}_max"]
    if paper:
        columns += [f"paper_{metric}" for metric in METRICS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for cell in table.cells:
        row: list[Any] = [cell.loss, cell.label, cell.name, cell.n, " ".join(map(str, cell.splits)),
                          " ".join(map(str, cell.seeds))]  # fmt: skip
        for metric in shown:
            if metric in ("ece", "nll"):
                row += _spread_columns(cell.ece, 100) if metric == "ece" else _spread_columns(cell.nll, 1)
            else:
                row += _spread_columns(cell.figures.get(metric), 100)
        if paper:
            row += ["" if cell.paper is None else f"{cell.paper[metric]:.1f}" for metric in METRICS]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())
    return path


def _write_label_auc(table: ResultTable, path: Path) -> Path:
    """A multilabel table's per-label ROC AUC: a row per setup; per label, its mean and ``_sd`` over the runs (percent;
    empty where a run has no AUC of the label)."""
    columns = ["loss", "weighting", "setup", "n"]
    for name in table.classes:
        columns += [name, f"{name}_sd"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for cell in table.cells:
        row: list[Any] = [cell.loss, cell.label, cell.name, cell.n]
        for name in table.classes:
            spread = cell.label_auc.get(name)
            row += ["", ""] if spread is None else [f"{100 * spread.mean:.4f}", f"{100 * spread.sd:.4f}"]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())
    return path


def _spread_columns(spread: Spread | None, scale: float) -> list[str]:
    if spread is None:
        return [""] * 4
    return [f"{scale * value:.4f}" for value in (spread.mean, spread.sd, spread.low, spread.high)]


def _write_comparisons(table: ResultTable, path: Path) -> Path:
    """One row per cell x scope (pooled, then each split/seed pair) x metric; differences in percentage points."""
    columns = ["baseline", "loss", "weighting", "setup", "scope", "pairs", "metric", "difference", "low", "high",
               "p", "p_holm", "significant"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for item in table.comparisons:
        scopes = [("pooled", item.comparison.pooled)]
        scopes += [(f"split {split} seed {seed}", d) for (split, seed), d in sorted(item.comparison.per_pair.items())]
        for scope, differences in scopes:
            for d in differences:
                writer.writerow([
                    item.baseline.name, item.cell.loss, item.cell.label, item.cell.name, scope, d.pairs, d.metric,
                    f"{100 * d.estimate:.4f}", f"{100 * d.low:.4f}", f"{100 * d.high:.4f}", f"{d.p:.6g}",
                    f"{d.p_holm:.6g}", "yes" if d.significant else "no",
                ])  # fmt: skip
    atomic_write_text(path, buffer.getvalue())
    return path


def _recall_figures(table: ResultTable, folder: Path) -> list[Path]:
    paths = []
    what = "per-label recall at each run's thresholds" if table.multilabel else "per-class recall"
    for loss in dict.fromkeys(cell.loss for cell in table.cells):
        cells = [cell for cell in table.cells if cell.loss == loss]
        paths.append(
            plot_recall_bars(
                {cell.label: cell.recall for cell in cells},
                table.classes,
                folder / f"recall-{table.key}-{loss}.png",
                spread={cell.label: cell.recall_sd for cell in cells if cell.n > 1},
                title=f"{what}: {table.model}, {table.optimizer}, {loss} (mean ± sd over runs)",
            )
        )
    return paths


def _label_auc_figures(table: ResultTable, folder: Path) -> list[Path]:
    """A multilabel table's per-label ROC AUC, one bar per setup, per loss (no bar where a run has no AUC)."""
    paths = []
    for loss in dict.fromkeys(cell.loss for cell in table.cells):
        cells = [cell for cell in table.cells if cell.loss == loss]
        means, spread = {}, {}
        for cell in cells:
            found = [cell.label_auc.get(name) for name in table.classes]
            means[cell.label] = [np.nan if s is None else s.mean for s in found]
            spread[cell.label] = [np.nan if s is None else s.sd for s in found]
        paths.append(
            plot_recall_bars(
                means,
                table.classes,
                folder / f"auc-{table.key}-{loss}.png",
                spread={cell.label: spread[cell.label] for cell in cells if cell.n > 1},
                title=f"per-label ROC AUC: {table.model}, {table.optimizer}, {loss} (mean ± sd over runs)",
                ylabel="ROC AUC (%)",
            )
        )
    return paths


def _reliability_figure(table: ResultTable, path: Path) -> Path | None:
    """One reliability diagram per table: each cell's runs pooled, its mean ECE in the legend."""
    curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]] = {}
    losses = {cell.loss for cell in table.cells}
    for cell in table.cells:
        scored = [run.predictions for run in cell.runs if (run.path / RunDirectory.PREDICTIONS).is_file()]
        if not scored:
            continue
        name = cell.label if len(losses) == 1 else f"{cell.loss} {cell.label}"
        targets = np.concatenate([s.targets for s in scored])
        scores = np.concatenate([s.scores for s in scored])
        curves[name] = (targets, scores, None if cell.ece is None else cell.ece.mean)
    if not curves:
        return None
    return plot_reliability(curves, path, title=f"reliability: {table.model}, {table.optimizer} (runs pooled)")


def _confusion_figure(run: RunResult, folder: Path, out: Path) -> Path:
    name = "__".join(run.path.relative_to(folder).parts) or run.path.name
    if run.logit_adjust is not None:
        name += f"-logit_adjust{run.logit_adjust:g}"
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
    baseline: str | None,
    table_figures: dict[str, list[Path]],
    drawn: Sequence[Path],
    rebalanced: tuple[int, Counter[str]],
    adjusting: bool = False,
) -> str:
    trained = [run for run in runs if run.logit_adjust is None]
    test = _test_data(trained)
    where = (
        f"{len(trained)} evaluations in `{folder}`: finished runs, each scored on the test set `{test}` "
        "(`sampleweight evaluate GRID --each`). Figures are percentages on those test images, the same for every "
        "run"
        if test is not None
        else f"{len(trained)} finished runs in `{folder}`. Figures are percentages on the validation side of each run"
    )
    intro = (
        f"{where}: the mean over a setup's runs (its splits and seeds) ± their standard deviation, and (min-max); "
        "`n` is the number of runs. Bold: the best mean of a column (where the column varies)."
    )
    taus = sorted({run.logit_adjust for run in runs if run.logit_adjust is not None})
    if taus:
        intro += (
            " Setups with `logit_adjust=TAU` are the same runs after post-hoc logit adjustment of their "
            f"{'test' if test is not None else 'validation'} probabilities: `softmax(log p - TAU log prior)`, prior = "
            "each run's training class "
            f"frequencies (TAU: {', '.join(f'{t:g}' for t in taus)}; `docs/evaluation.md`)."
        )
        count, per_way = rebalanced
        if count:
            ways = ", ".join(f"{way} {n}" for way, n in sorted(per_way.items()))
            many = count > 1
            intro += (
                f" It is meant for plain runs; {count} run{'s' * many} here already rebalance{'s' * (not many)} "
                f"the classes, so {'their' if many else 'its'} adjusted setups correct twice (runs per way, a run "
                f"may have several: {ways})."
            )
    if adjusting and any(run.multilabel for run in runs):
        intro += (
            " `--logit-adjust` leaves the multilabel runs as trained (a sigmoid per label has no class prior to "
            "subtract)."
        )
    if paper:
        intro += " `paper`: the paper's figure for the same model, optimizer, loss and weighting (its Tables 2-5)."
    lines = ["# sampleweight report", "", intro]
    for table in tables:
        setup = ", ".join(f"{key} {value}" for key, value in table.setup.items())
        lines += ["", f"## {table.title}", "", f"Setup: {setup}.", "", markdown_table(table, paper=paper)]
        if table.binary:
            lines += ["", _BINARY_NOTE.format(positive=table.classes[-1])]
            scored = sorted({cell.runs[0].scored_from for cell in table.cells if cell.runs[0].scored_from is not None})
            if scored:
                lines[-1] += " " + _SCORED_NOTE.format(classes=", ".join(f"{c}-class" for c in scored))
        if table.multilabel:
            note = _MULTILABEL_NOTE.format(count=len(table.classes))
            scored = sorted({cell.runs[0].scored_from for cell in table.cells if cell.runs[0].scored_from is not None})
            if scored:
                note += " " + _SCORED_TREE_NOTE.format(classes=", ".join(f"{c}-class" for c in scored))
            lines += ["", f"{note} {_LABEL_AUC_NOTE}", "", markdown_label_table(table)]
        calibrated = [cell for cell in table.cells if cell.ece is not None]
        if calibrated:
            lines += ["", "Calibration (ECE: top-label, 15 bins, %; NLL: mean -log p(true class)): " + "; ".join(
                f"{cell.loss} {cell.label} ECE {format_cell(cell.ece)}, NLL {cell.nll.mean:.3f}" for cell in calibrated
            ) + "."]  # fmt: skip
        if baseline is not None:
            lines += ["", *_comparison_section(table, baseline, test=test)]
        for path in table_figures.get(table.key, []):
            kind = "reliability diagram" if path.name.startswith("reliability-") else "per-class recall"
            if table.multilabel:
                kind = "per-label AUC" if path.name.startswith("auc-") else "per-label recall"
            lines += ["", f"![{kind}]({path.relative_to(out).as_posix()})"]
    confusion = [p for p in drawn if p.parent.name == "confusion"]
    if confusion:
        lines += ["", "## Confusion matrices", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out).as_posix()})" for p in confusion]
    return "\n".join(lines) + "\n"


_BINARY_NOTE = (
    "Binary runs ({positive} against the rest): Acc / BAcc / mPR / mF1 of the decided class, then the scores' ranking "
    "of the positive class: AUC the ROC AUC, pAUC the partial AUC above 80 % TPR (ISIC 2024's, from 0 to 20), AP the "
    "average precision (`sampleweight.binary_metrics`); `–`: a run's images hold one class only."
)


_SCORED_NOTE = (
    "Rows `from={classes}`: multiclass runs of this model and optimizer (`--score-multiclass`) scored as this binary "
    "task on the same validation images (same split and seed): the positive classes' probabilities summed, decided "
    "positive where the decided class is one of them."
)
_SCORED_TREE_NOTE = (
    "Rows `from={classes}`: multiclass runs of this model and optimizer (`--score-multiclass`) scored on these labels, "
    "the nodes of their label tree, on the same validation images (same split and seed): a node's probability is the "
    "sum of its classes' probabilities, each label decided at its threshold chosen on these images (Youden's J)."
)
_MULTILABEL_NOTE = (
    "Multilabel runs ({count} labels, one sigmoid each): AUC, pAUC (ISIC 2024's, from 0 to 20) and AP are the means "
    "over the labels of each label's ROC AUC, partial AUC above 80 % TPR and average precision (the labels with both "
    "classes on the validation side), BAcc and mF1 the means over the labels of each label's balanced accuracy and F1 "
    "at its threshold (chosen on the validation side); from each run's `metrics.json`; `–`: no label of a run's "
    "images has both classes."
)
_LABEL_AUC_NOTE = (
    "Each label's ROC AUC (%, mean ± sd over the runs; `–` where a run's images hold one class of the label):"
)


def _comparison_section(table: ResultTable, baseline: str, *, test: str | None = None) -> list[str]:
    if not table.comparisons:
        return [f"No paired comparison here: no `{baseline}` setup with runs on the same splits and seeds."]
    family = len(table.comparisons) * len(table.compared)
    significant = sum(d.significant for item in table.comparisons for d in item.comparison.pooled)
    images = (
        f"on the test images of `{test}` (runs of the same split and seed paired, every pair scored on those "
        "images, matched by image id)"
        if test is not None
        else "on the same validation images (same split and seed, matched by image id)"
    )
    strata = "class"
    if table.multilabel:
        strata = (
            "each image's rarest label; each resample's AUC, pAUC and AP are means over the labels with both classes "
            "in it"
        )
    return [
        f"### Paired differences to `{baseline}`",
        "",
        f"Each setup minus its baseline (`vs`: of the same loss where there is one) {images}, in percentage points: "
        "the mean over the `pairs` of runs, [its 95 % interval] and p, from a two-level paired bootstrap (the "
        f"pairs, then the images, stratified by {strata}; `docs/cli.md`). p is adjusted by Holm's correction over the "
        f"{family} comparisons of this table; **bold**: significant (p < {ALPHA:g}): {significant} of {family}.",
        "",
        markdown_comparisons(table),
    ]


def published(model: str, optimizer: str) -> Mapping[str, Any]:
    """The published figures the model's registration carries for ``optimizer`` (``published``), or empty."""
    return get_registry().info("models", model).get("published", {}).get(optimizer, {})


def _rank(value: str, preferred: Sequence[str]) -> tuple[int, str]:
    return (preferred.index(value), "") if value in preferred else (len(preferred), value)


# What every run's config.json and metrics.json hold, whichever version wrote them.
_CONFIG_KEYS = ("model", "loss", "weighters", "optimizer", "split")
_METRICS_KEYS = ("classes", "per_class", "confusion", *METRICS)
_MULTILABEL_METRICS_KEYS = ("labels", "multilabel")


def _metrics_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """What the ``metrics.json`` of a run of this config holds, whichever version wrote it."""
    return _MULTILABEL_METRICS_KEYS if config.get("task") == MULTILABEL else _METRICS_KEYS


def _read_run_file(path: Path, keys: Sequence[str], folder: Path) -> dict[str, Any]:
    """A run's JSON file, or one `ConfigError` naming it when it does not parse or lacks what a run's has."""
    fix = f"move that run folder out of {folder} (or delete it), then report again"
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise ConfigError(f"report: cannot read {path} ({exc}); {fix}") from None
    missing = [key for key in keys if key not in value] if isinstance(value, dict) else list(keys)
    if missing:
        raise ConfigError(f"report: {path} is not a sampleweight run's {path.name} (no {', '.join(missing)}); {fix}")
    return value
