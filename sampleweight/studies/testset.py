"""``sampleweight evaluate GRID --each --data TEST --out DIR``: every finished run of a grid scored on one test set.

`evaluate_each` finds the finished runs under the grid folder (a ``checkpoint.pt`` beside a ``metrics.json``;
retrained stages ``RUN+METHOD`` included, each a setup of its own) and scores each alone
(`sampleweight.engine.evaluation.evaluate`, with its test-time augmentation and logit adjustment) into
``DIR/<the run's path under the grid>/``: ``metrics.json``, ``predictions.csv`` and ``data.json`` as one
``evaluate`` writes them, then `SOURCE_FILE` (``run.json``): where the run is, a copy of its ``config.json``
and its training class counts, so that ``sampleweight report DIR`` groups the evaluations by their runs'
setups (and pairs them by split and seed on the test images) without reading the grid again.

Resumable: ``run.json`` is written last, each file atomically, so a folder with all four files is a complete
evaluation. Run again, the same command skips the complete evaluations of the same runs, data and options
(and redoes one whose run changed since: its checkpoint's size or modification time), and redoes the ones an
interruption cut short; a folder of DIR that holds an evaluation with other options, or a training run, is
refused before anything is scored, unless ``overwrite``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.engine.evaluation import (
    TRAINING_RUN_FILES,
    check_options,
    evaluate,
    same_evaluation,
    training_class_counts,
)
from sampleweight.engine.progress import runs_bar
from sampleweight.engine.rundir import RunDirectory
from sampleweight.errors import ConfigError, RunDirectoryInUseError, SampleWeightError

__all__ = ["SOURCE_FILE", "EachOutcome", "EvaluationSource", "evaluate_each", "find_grid_runs"]

SOURCE_FILE = "run.json"
"""In each evaluation of ``evaluate --each``: the run it scored (`EvaluationSource`); written last."""
_EVALUATION_FILES = (RunDirectory.FINAL, RunDirectory.PREDICTIONS, RunDirectory.DATA, SOURCE_FILE)
_METRICS = ("acc", "bacc", "mpr", "mf1")


@dataclass(frozen=True)
class EvaluationSource:
    """The run an evaluation of ``evaluate --each`` scored, as its ``run.json`` records it.

    Attributes:
        run: The run directory (absolute, as it was when evaluated).
        config: A copy of the run's ``config.json`` (its setup: what ``report`` groups by).
        train_class_counts: The run's training images per class name (its ``data.json``: the prior that logit
            adjustment divides out), or None when the run has none.
        checkpoint: The size (``bytes``) and modification time (``modified_ns``) of the run's ``checkpoint.pt``
            when it was evaluated: a run trained again since is evaluated again.
    """

    run: Path
    config: dict[str, Any]
    train_class_counts: dict[str, int] | None
    checkpoint: dict[str, int]

    @classmethod
    def of_run(cls, run: Path, classes: Sequence[str]) -> EvaluationSource:
        """What ``run.json`` records of ``run`` now (its classes: those of its evaluation)."""
        try:
            counts = training_class_counts(run, classes)
            train_counts: dict[str, int] | None = {name: int(n) for name, n in zip(classes, counts, strict=True)}
        except ConfigError:  # an older run without data.json: report can still table it, not adjust it
            train_counts = None
        config = json.loads((run / RunDirectory.CONFIG).read_text())
        return cls(run.resolve(), config, train_counts, _fingerprint(run))

    @classmethod
    def read(cls, folder: str | Path) -> EvaluationSource:
        """The ``run.json`` in ``folder``.

        Raises:
            ConfigError: It is missing, does not parse, or lacks what ``evaluate --each`` writes (the file is named).
        """
        path = Path(folder) / SOURCE_FILE
        try:
            value = json.loads(path.read_text())
            return cls(Path(value["run"]), dict(value["config"]), value.get("train_class_counts"),
                       dict(value.get("checkpoint") or {}))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot read {path} ({type(exc).__name__}: {exc}); evaluate the grid again with "
                "sampleweight evaluate GRID --each (it redoes this evaluation)"
            ) from None

    def write(self, folder: Path) -> None:
        """Write ``folder/run.json`` (atomically)."""
        value = {"run": str(self.run), "config": self.config, "train_class_counts": self.train_class_counts,
                 "checkpoint": self.checkpoint}  # fmt: skip
        atomic_write_text(folder / SOURCE_FILE, json.dumps(value, indent=2) + "\n")


@dataclass(frozen=True)
class EachOutcome:
    """What `evaluate_each` did with one run of the grid.

    Attributes:
        run: The run directory.
        name: Its path under the grid (``cbam_vgg16-ce-none-adam-s0``, ``...-s0+crt``): its folder under ``out``.
        status: ``evaluated`` (now), ``skipped`` (evaluated before, the same way), ``unfinished`` (no
            ``metrics.json``: left out), ``failed`` or ``busy`` (another process writes its folder).
        out: Its evaluation folder (None for an unfinished run).
        metrics: The evaluation's metrics, once evaluated (now or before).
        note: Why it is left out, failed or busy, or that it was evaluated again because its run changed.
        seconds: Wall time spent on it in this call.
    """

    run: Path
    name: str
    status: Literal["evaluated", "skipped", "unfinished", "failed", "busy"]
    out: Path | None = None
    metrics: dict[str, Any] | None = None
    note: str | None = None
    seconds: float = 0.0


def find_grid_runs(grid: str | Path) -> tuple[list[Path], list[Path]]:
    """The finished and the unfinished runs under a grid folder (each a folder with ``checkpoint.pt``), sorted.

    Raises:
        ConfigError: ``grid`` is a run itself, a file, missing, or holds no run.
    """
    grid = Path(grid)
    if (grid / RunDirectory.CHECKPOINT).is_file() or grid.is_file():
        raise ConfigError(
            f"--each scores every run under a grid folder, and {grid} is one run: leave out --each to evaluate it"
        )
    if not grid.is_dir():
        raise ConfigError(f"{grid} is not a folder: --each takes the folder of a grid (sampleweight grid's --out)")
    found = sorted(path.parent for path in grid.rglob(RunDirectory.CHECKPOINT))
    if not found:
        raise ConfigError(f"no run under {grid}: --each takes the folder of a grid (sampleweight grid's --out)")
    finished = [run for run in found if (run / RunDirectory.FINAL).is_file()]
    return finished, [run for run in found if run not in finished]


def evaluate_each(
    grid: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    bootstrap: int = 2000,
    tta: str = "none",
    logit_adjust: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> list[EachOutcome]:
    """Score every finished run under ``grid`` alone on ``data``, one evaluation folder each under ``out``.

    Args:
        grid: The grid folder (or any folder of run directories; retrained stages are runs of their own).
        data: The labelled test set, as `evaluate` reads it.
        out: The folder of the evaluations: ``out/<the run's path under grid>/``.
        device: Device (default CUDA when available).
        batch_size: Images per forward pass, views included.
        cache_dir: Image cache folder.
        skip_bad: Leave out (and report) unreadable images.
        bootstrap: Resamples of each evaluation's intervals (``ci`` in ``metrics.json``).
        tta: Test-time augmentation (`sampleweight.engine.evaluation.TTA_MODES`).
        logit_adjust: Post-hoc logit adjustment tau, each run with its own training prior.
        overwrite: Replace what a folder of ``out`` holds when it is not this evaluation of its run (an
            evaluation with other data or options, or a training run).
        progress: A progress bar over the runs (else one line per run only).
        console: Where progress and the per-run lines go (default stderr).

    Returns:
        One `EachOutcome` per run found, finished or not, in sorted order.

    Raises:
        ConfigError: A bad option; ``grid`` is one run or holds none; ``out`` would write into a run of the grid;
            a folder of ``out`` holds another evaluation or a training run (without ``overwrite``). All before
            anything is scored.
    """
    check_options(batch_size=batch_size, tta=tta, logit_adjust=logit_adjust)
    grid, out = Path(grid), Path(out)
    console = console or Console(stderr=True)
    finished, unfinished = find_grid_runs(grid)
    targets = {run: out / run.relative_to(grid) for run in finished}
    _refuse_the_runs(out, grid, [*finished, *unfinished], list(targets.values()))
    outcomes: dict[Path, EachOutcome] = {}
    pending: list[tuple[Path, str | None]] = []  # (run, why it is evaluated again)
    conflicts: list[str] = []
    for run, target in targets.items():
        state, detail = _state(target, run, str(data), tta, logit_adjust)
        if state == "complete":
            outcomes[run] = EachOutcome(run, _name(run, grid), "skipped", target, _read_metrics(target))
        elif state == "conflict" and not overwrite:
            conflicts.append(f"{target} holds {detail}")
        else:
            pending.append((run, detail if state == "changed" else None))
    if conflicts:
        more = f" (and {len(conflicts) - 1} more folder(s) of {out})" if len(conflicts) > 1 else ""
        raise ConfigError(f"{conflicts[0]}{more}; choose another --out, or replace them with --overwrite")
    for run in unfinished:
        note = f"not finished (no {RunDirectory.FINAL}): finish it with sampleweight train --out {run} --resume"
        outcomes[run] = EachOutcome(run, _name(run, grid), "unfinished", note=note)
    skipped = [o for o in outcomes.values() if o.status == "skipped"]
    if skipped:
        console.print(f"evaluate: {len(skipped)} of {len(finished)} runs already evaluated (skipped)", highlight=False)
    for outcome in sorted(outcomes.values(), key=lambda o: o.name):
        if outcome.status == "unfinished":
            _print(console, outcome)
    with _Bar(len(finished), len(skipped), progress, console) as bar:
        for run, why in pending:
            target = targets[run]
            bar.started(_name(run, grid))
            started = time.perf_counter()
            for name in _EVALUATION_FILES:  # run.json first: incomplete until the evaluation is written again
                (target / name).unlink(missing_ok=True)
            try:
                metrics, _ = evaluate(run, data, out=target, device=device, batch_size=batch_size,
                                      cache_dir=cache_dir, skip_bad=skip_bad, quiet=True, bootstrap=bootstrap,
                                      tta=tta, logit_adjust=logit_adjust, overwrite=overwrite)  # fmt: skip
                names = metrics["labels"] if metrics.get("task") == "multilabel" else metrics["classes"]
                EvaluationSource.of_run(run, names).write(target)
                outcome = EachOutcome(run, _name(run, grid), "evaluated", target, metrics, why,
                                      time.perf_counter() - started)  # fmt: skip
            except RunDirectoryInUseError as exc:
                outcome = EachOutcome(run, _name(run, grid), "busy", target, note=str(exc))
            except SampleWeightError as exc:  # recorded; the other runs go on, and the same command retries it
                outcome = EachOutcome(run, _name(run, grid), "failed", target, note=str(exc))
            outcomes[run] = outcome
            bar.finished(outcome)
    return [outcomes[run] for run in sorted(outcomes, key=lambda r: _name(r, grid))]


def _refuse_the_runs(out: Path, grid: Path, runs: Sequence[Path], targets: Sequence[Path]) -> None:
    """The evaluations never go into the grid's runs (their own metrics.json and predictions.csv)."""
    if out.resolve() == grid.resolve():
        raise ConfigError(f"--out {out} is the grid itself: give the evaluations a folder of their own")
    sources = {run.resolve() for run in runs}
    for target in targets:
        inside = [folder for folder in (target.resolve(), *target.resolve().parents) if folder in sources]
        if inside:
            raise ConfigError(
                f"--out {out} would put an evaluation into the run {inside[0]}: give the evaluations a folder of "
                "their own"
            )


def _name(run: Path, grid: Path) -> str:
    return run.relative_to(grid).as_posix()


def _state(
    target: Path, run: Path, data: str, tta: str, logit_adjust: float | None
) -> tuple[Literal["new", "complete", "changed", "partial", "conflict"], str | None]:
    """What ``target`` holds for ``run``: nothing, this evaluation complete, this evaluation of a run that changed
    since, a part of one (an interrupted evaluation), or something else (a conflict, described)."""
    held = [name for name in TRAINING_RUN_FILES if (target / name).exists()]
    if held:
        return "conflict", f"a training run ({', '.join(held)})"
    if not (target / RunDirectory.FINAL).is_file():
        return ("partial" if target.exists() else "new"), None
    metrics = _read_metrics(target)
    if metrics is None:
        return "partial", None  # cut off or damaged: redone
    differences = same_evaluation(metrics, [run], data, tta=tta, logit_adjust=logit_adjust)
    if differences:
        return "conflict", f"another evaluation ({'; '.join(differences)})"
    if not all((target / name).is_file() for name in _EVALUATION_FILES):
        return "partial", None
    try:
        recorded = EvaluationSource.read(target).checkpoint
    except ConfigError:
        return "partial", None
    if recorded != _fingerprint(run):
        return "changed", "its run changed since it was evaluated (checkpoint.pt rewritten): evaluated again"
    return "complete", None


def _read_metrics(folder: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((folder / RunDirectory.FINAL).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fingerprint(run: Path) -> dict[str, int]:
    stat = (run / RunDirectory.CHECKPOINT).stat()
    return {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def _print(console: Console, outcome: EachOutcome) -> None:
    name = escape(outcome.name)
    if outcome.status == "evaluated" and outcome.metrics is not None:
        figures = (
            "  ".join(f"{m} {100 * outcome.metrics[m]:.1f}" for m in _METRICS)
            if outcome.metrics.get("labelled")
            else "no labels: scores only"
        )
        line = f"evaluate: [green]done[/] {name}  {figures}  ({outcome.seconds:.0f}s)"
        if outcome.note:
            line += f" [yellow]({escape(outcome.note)})[/]"
        for note in outcome.metrics.get("logit_adjust_note") or []:
            line += f"\n[yellow]note[/]: {escape(note)}"
    else:
        colour = {"unfinished": "yellow", "busy": "yellow"}.get(outcome.status, "red")
        word = "skipped" if outcome.status == "unfinished" else outcome.status
        line = f"evaluate: [{colour}]{word}[/] {name}: {escape(str(outcome.note))}"
    console.print(line, highlight=False, soft_wrap=True)


class _Bar:
    """A bar over the grid's finished runs (evaluated / total, the run in progress, ETA), and one line per run."""

    def __init__(self, total: int, done: int, enabled: bool, console: Console) -> None:
        self.console, self.total, self.done = console, total, done
        self._progress: Progress | None = None
        if enabled:
            self._progress = runs_bar("evaluate", console)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task("evaluate", total=self.total, completed=self.done, running="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def started(self, name: str) -> None:
        """A run's evaluation begins."""
        if self._progress is not None:
            self._progress.update(self._task, running=escape(name))

    def finished(self, outcome: EachOutcome) -> None:
        """A run's evaluation ended (evaluated, failed or busy)."""
        _print(self.console, outcome)
        if self._progress is not None:
            self._progress.update(self._task, advance=1, running="")
