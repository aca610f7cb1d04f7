"""The run directory: ``config.json``, ``metrics.jsonl``, ``metrics.json``, ``checkpoint.pt``, ``predictions.csv``,
``data.json``; one writer at a time (`FolderLock`)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.engine.folder_lock import LOCK_FILE, FolderLock
from sampleweight.engine.multilabel import joined_labels
from sampleweight.errors import ConfigError, OutputError

__all__ = [
    "STAGE_KEY",
    "RunDirectory",
    "output_folder",
    "read_epochs",
    "read_predictions",
    "stage_of",
    "write_label_predictions",
    "write_predictions",
]

STAGE_KEY = "retrain"
"""The table in a retrained run's ``config.json``, ``metrics.json`` and ``checkpoint.pt`` (``sampleweight retrain``)."""

MIN_FREE_BYTES = 256 * 2**20


def output_folder(path: str | Path, *, what: str = "--out") -> Path:
    """``path`` as a folder this process can write into, created if missing (a command's output folder).

    Args:
        path: The folder.
        what: What the user named it with, for the message (``--out``).

    Returns:
        The folder.

    Raises:
        ConfigError: ``path`` is a file, or the folder cannot be created or written (read-only, no permission).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder: name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)  # unique: several processes may probe
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write to {what} {path}: {exc.strerror or exc}") from None
    return path


class RunDirectory:
    """One run's output folder, as DESIGN.md fixes it.

    Args:
        path: The folder (created if missing).
        min_free_bytes: Refuse to start when the disk has less free space than this.

    A process that writes into the folder takes it first (`acquire`, or ``with RunDirectory(path) as run:``):
    a second process is then refused at once, and the files an interrupted writer left half-written are
    removed.

    Raises:
        ConfigError: The folder cannot be created or written, or the disk is (nearly) full; raised
            before any training starts.
    """

    CONFIG = "config.json"
    EPOCHS = "metrics.jsonl"
    FINAL = "metrics.json"
    CHECKPOINT = "checkpoint.pt"
    PREDICTIONS = "predictions.csv"
    DATA = "data.json"

    def __init__(self, path: str | Path, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=self.path)  # unique: runs may start together
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"cannot write to the run directory {self.path}: {exc.strerror or exc}") from None
        self._lock = FolderLock(self.path)
        free = shutil.disk_usage(self.path).free
        if free < min_free_bytes:
            raise ConfigError(
                f"only {free / 2**20:.0f} MiB free on the disk of {self.path}; a run needs at least "
                f"{min_free_bytes / 2**20:.0f} MiB for checkpoints: free some space or choose another --out"
            )

    def acquire(self) -> RunDirectory:
        """Become the only process writing here, and remove the temporary files an interrupted writer left.

        Returns:
            This run directory.

        Raises:
            RunDirectoryInUseError: Another process writes here (the message names it).
        """
        self._lock.acquire()
        try:
            for name in (self.CONFIG, self.EPOCHS, self.FINAL, self.CHECKPOINT, self.PREDICTIONS, self.DATA):
                for leftover in self.path.glob(f".{name}.*.tmp"):  # what atomic writes killed midway leave
                    leftover.unlink(missing_ok=True)
        except BaseException:
            self._lock.release()
            raise
        return self

    def release(self) -> None:
        """Let other processes write here again."""
        self._lock.release()

    def __enter__(self) -> RunDirectory:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def checkpoint(self) -> Path:
        """Path of the latest checkpoint."""
        return self.path / self.CHECKPOINT

    def write_config(self, config: dict[str, Any]) -> None:
        """Write the resolved configuration."""
        atomic_write_text(self.path / self.CONFIG, json.dumps(config, indent=2, default=str) + "\n")

    def write_data(self, inventory: dict[str, Any]) -> None:
        """Write ``data.json``: what the run's data holds, and what the reader left out, merged or cannot score."""
        atomic_write_text(self.path / self.DATA, json.dumps(inventory, indent=2, default=_plain) + "\n")

    def append_epoch(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl`` (flushed and synced, so a crash keeps it).

        Raises:
            OutputError: The file cannot be written (the folder became unwritable, or the disk is full).
        """
        path = self.path / self.EPOCHS
        try:
            with open(path, "a") as handle:
                handle.write(json.dumps(record, default=_plain) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None

    def epochs(self) -> list[dict[str, Any]]:
        """The per-epoch records written so far."""
        return read_epochs(self.path / self.EPOCHS)

    def start_fresh(self, *, overwrite: bool = False) -> None:
        """Prepare for a new run: refuse a folder that holds one, unless ``overwrite`` (then clear it).

        Raises:
            ConfigError: The folder holds a run (a checkpoint or final metrics) and ``overwrite`` is off.

        With ``overwrite`` the old run's files go: ``checkpoint.pt``, ``metrics.json``, ``metrics.jsonl``,
        ``predictions.csv``, ``data.json`` (``config.json`` is rewritten), its evaluations in their default place
        (`own_evaluations`) and its TensorBoard event files. Anything else stays: files of the user's, an evaluation
        of several runs, ``attention/`` (PNG panels a user may have kept or edited).
        """
        held = [name for name in (self.CHECKPOINT, self.FINAL, self.PREDICTIONS) if (self.path / name).exists()]
        if held and not overwrite:
            raise ConfigError(
                f"{self.path} already holds a run ({', '.join(held)}); continue it with --resume, "
                "start over with --overwrite, or choose another --out"
            )
        for name in (*held, self.EPOCHS, self.DATA):
            (self.path / name).unlink(missing_ok=True)
        if overwrite:  # what the old run wrote besides: its evaluations, its TensorBoard events (other files stay)
            for folder in self.own_evaluations():
                _remove_evaluation(folder)
            for events in self.path.glob("tensorboard/events.out.tfevents.*"):
                events.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (self.path / "tensorboard").rmdir()

    def own_evaluations(self) -> list[Path]:
        """The evaluations of this run in their default place (``evaluate``, ``evaluate-flip-la1``, ...: a subfolder
        named ``evaluate*`` whose ``metrics.json`` is an evaluation of this run alone): the old model's figures,
        which ``train --overwrite`` removes with the run."""
        found = []
        for folder in sorted(self.path.glob("evaluate*")):
            try:
                recorded = json.loads((folder / self.FINAL).read_text())
            except (OSError, ValueError):
                continue
            runs = recorded.get("runs") if isinstance(recorded, dict) else None
            if isinstance(runs, list) and len(runs) == 1 and _same_folder(Path(str(runs[0])), self.path):
                found.append(folder)
        return found

    def truncate_epochs(self, before: int) -> None:
        """Keep only the per-epoch records of epochs ``< before`` (on resume, drop what the checkpoint lacks)."""
        kept = [r for r in self.epochs() if r["epoch"] < before]
        atomic_write_text(self.path / self.EPOCHS, "".join(json.dumps(r) + "\n" for r in kept))

    def write_final(self, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json``."""
        atomic_write_text(self.path / self.FINAL, json.dumps(metrics, indent=2, default=_plain) + "\n")

    def write_predictions(
        self,
        image_ids: Sequence[str],
        targets: Any,
        scores: Any,
        class_names: Sequence[str],
        predicted: Any = None,
    ) -> None:
        """Write ``predictions.csv``: ``image,true,pred`` (class names) and one score column per class."""
        write_predictions(self.path / self.PREDICTIONS, image_ids, targets, scores, class_names, predicted)


EVALUATION_FILES = (RunDirectory.FINAL, RunDirectory.PREDICTIONS, RunDirectory.DATA)
"""What `sampleweight evaluate` writes into its folder."""


def _same_folder(recorded: Path, folder: Path) -> bool:
    """Whether a run path an evaluation recorded (as given, maybe relative to where it ran) is ``folder``."""
    with contextlib.suppress(OSError):
        if recorded.is_absolute() and recorded.resolve() == folder.resolve():
            return True
    return not recorded.is_absolute() and recorded.name == folder.resolve().name


def _remove_evaluation(folder: Path) -> None:
    """Remove what an evaluation wrote into ``folder`` (and the folder, when nothing else is left in it)."""
    for name in (*EVALUATION_FILES, LOCK_FILE):
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # files of the user's stay, and so does their folder


def write_predictions(
    path: str | Path,
    image_ids: Sequence[str],
    targets: Any,
    scores: Any,
    class_names: Sequence[str],
    predicted: Any = None,
) -> None:
    """Write a predictions CSV (see `RunDirectory.write_predictions`).

    Args:
        path: The CSV file.
        image_ids: One id per row.
        targets: True class indices, or None (unlabelled data: the ``true`` column stays empty).
        scores: Class probabilities [N, C].
        class_names: Column names of the scores.
        predicted: The model's decisions [N] (default: the most probable class).
    """
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores.argmax(axis=1) if predicted is None else np.asarray(predicted)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "true", "pred", *class_names])
    for i, image in enumerate(image_ids):
        true = "" if targets is None else class_names[int(targets[i])]
        writer.writerow([image, true, class_names[predicted[i]], *(f"{s:.6g}" for s in scores[i])])
    atomic_write_text(path, buffer.getvalue())


def write_label_predictions(
    path: str | Path,
    image_ids: Sequence[str],
    targets: Any,
    scores: Any,
    labels: Sequence[str],
    predicted: Any,
) -> None:
    """Write a multilabel run's predictions CSV: ``image,true,pred`` and one score column per label.

    ``true`` and ``pred`` name the labels that are 1 (``pred``: the score reaches the label's threshold), joined by
    ``;`` in label order ("" for none); the scores are each label's sigmoid probability (they do not sum to 1), with
    9 significant digits, which hold a float32 exactly: read back as float32, each equals the score that was
    compared with its label's threshold.

    Args:
        path: The CSV file.
        image_ids: One id per row.
        targets: 0/1 [N, L], or None (unlabelled data: the ``true`` column stays empty).
        scores: Per-label probabilities [N, L].
        labels: The L label names (the score columns' names).
        predicted: The decisions, 0/1 [N, L].
    """
    scores = np.asarray(scores, dtype=np.float64)
    true = [""] * len(image_ids) if targets is None else joined_labels(np.asarray(targets), labels)
    pred = joined_labels(np.asarray(predicted), labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "true", "pred", *labels])
    for i, image in enumerate(image_ids):
        writer.writerow([image, true[i], pred[i], *(f"{s:.9g}" for s in scores[i])])  # a float32 exactly
    atomic_write_text(path, buffer.getvalue())


def stage_of(config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``retrain`` table of a run's ``config.json`` or checkpoint (None for a run of ``sampleweight train``)."""
    stage = config.get(STAGE_KEY)
    return stage if isinstance(stage, dict) else None


def read_epochs(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (none when it is missing).

    A last line cut off by a crash (or being appended right now by a running job) is left out; its
    epoch is redone on resume.

    Raises:
        ConfigError: A line other than the last is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ConfigError(f"{path} is corrupt at line {i + 1}; delete the run directory or fix the line") from None
    return records


def read_predictions(path: str | Path) -> tuple[list[str], list[str], list[str], np.ndarray, list[str]]:
    """Read a predictions CSV: ``(images, true, pred, scores [N, C], class_names)``."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    classes = header[3:]
    scores = np.array([[float(v) for v in row[3:]] for row in body], dtype=np.float64).reshape(len(body), len(classes))
    return [r[0] for r in body], [r[1] for r in body], [r[2] for r in body], scores, classes


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
