"""Progress of a training run: rich bars for people, one plain line per epoch for logs (quiet mode)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainingProgress", "runs_bar"]


class TrainingProgress:
    """Epoch and batch bars with ETA, live loss and the last validation BAcc.

    Args:
        epochs: Total epochs.
        quiet: No bars; one line per epoch instead (for log files and CI).
        title: Shown before the bars.
        console: Where to draw (default: stderr, so stdout stays clean for tables and JSON).
    """

    def __init__(self, epochs: int, *, quiet: bool = False, title: str = "", console: Console | None = None) -> None:
        self.epochs = epochs
        self.quiet = quiet
        self.title = title
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._epoch_task = self._batch_task = None

    def __enter__(self) -> TrainingProgress:
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def start(self, first_epoch: int, batches_per_epoch: int) -> None:
        """Begin at ``first_epoch`` (more than 0 when resuming)."""
        self._batches = batches_per_epoch
        if self._progress is None:
            if first_epoch:
                self.console.print(f"{self.title}: resuming at epoch {first_epoch + 1}/{self.epochs}", markup=False)
            return
        self._epoch_task = self._progress.add_task(
            escape(self.title) or "epochs", total=self.epochs, completed=first_epoch, info=""
        )
        self._batch_task = self._progress.add_task("batches", total=batches_per_epoch, info="")

    def set_batches(self, batches: int) -> None:
        """The batches of the epoch about to run: a sampler's epochs may differ in length."""
        self._batches = batches
        if self._progress is not None and self._batch_task is not None:
            self._progress.update(self._batch_task, total=batches)

    def advance(self, loss: float | None = None) -> None:
        """One batch done; with its loss when the host has read it (the bar keeps the last one shown)."""
        if self._progress is not None:
            info = {} if loss is None else {"info": f"loss {loss:.4f}"}
            self._progress.update(self._batch_task, advance=1, **info)

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """An epoch done, with its `metrics.jsonl` record."""
        if "val_bacc" in record:
            figures = f"val acc {record['val_acc']:.3f} bacc {record['val_bacc']:.3f}"
            shown = f"val BAcc {record['val_bacc']:.3f}"
        else:  # a multilabel run: the mean AUC over its labels (None while no label has both classes)
            auc = record.get("val_auc")
            figures = shown = "val mAUC " + ("-" if auc is None else f"{auc:.3f}")
        summary = (
            f"epoch {epoch + 1}/{self.epochs}  loss {record['train_loss']:.4f}  {figures}  {record['seconds']:.1f}s"
        )
        if self._progress is None:
            line = f"{self.title}: {summary}" if self.title else summary
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        self._progress.update(self._epoch_task, completed=epoch + 1, info=shown)
        if epoch + 1 < self.epochs:
            self._progress.reset(self._batch_task, total=self._batches, info="")
        else:
            self._progress.remove_task(self._batch_task)


def runs_bar(label: str, console: Console) -> Progress:
    """A bar over many runs (``LABEL ━━━ done/total runs``, elapsed, ETA, then the runs in progress in the task's
    ``running`` field): what ``grid`` and ``evaluate --each`` show."""
    return Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[running]}"),
        console=console,
    )
