"""The submission files: ISIC 2018 Task 3's ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` for a multiclass run, ISIC 2020's
``image_name,target`` for a binary one (`write_binary_submission`), ``image,<label1>,<label2>,...`` for a multilabel
one (`write_label_submission`); one row per image.

The challenge takes one CSV with a row per test image: the image id (``ISIC_0034524``, no extension), then
one diagnosis confidence in [0, 1] per class, in the ground-truth files' column order whatever a model's
class order is (https://challenge.isic-archive.com/landing/2018/47). We write class probabilities (each row
sums to 1), so the file is also a ground-truth-shaped table: `sampleweight.data.read_dataset` reads the same
header and ids.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sampleweight.data.records import ISIC_CLASSES
from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.errors import ConfigError, OutputError

__all__ = [
    "BINARY_SUBMISSION_COLUMNS",
    "SUBMISSION_COLUMNS",
    "check_submission_path",
    "submission_order",
    "write_binary_submission",
    "write_label_submission",
    "write_submission",
]

BINARY_SUBMISSION_COLUMNS = ("image_name", "target")
"""The header of an ISIC 2020 (Kaggle SIIM-ISIC melanoma) submission: the image id and the probability of melanoma."""

SUBMISSION_COLUMNS: tuple[str, ...] = ("image", *ISIC_CLASSES)
"""The header of an ISIC 2018 Task 3 submission."""


def submission_order(class_names: Sequence[str]) -> list[int]:
    """Where each ISIC 2018 class (`ISIC_CLASSES` order) is among ``class_names`` (names compared ignoring case).

    Args:
        class_names: A model's classes, in its order (HAM10000's ``dx`` codes match, as ``mel`` is ``MEL``).

    Returns:
        Seven column indices into the model's scores.

    Raises:
        ConfigError: The model's classes are not the seven ISIC 2018 classes.

    Example:
        >>> submission_order(["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"])
        [4, 5, 1, 0, 2, 3, 6]
    """
    position = {str(name).casefold(): i for i, name in enumerate(class_names)}
    if len(position) != len(class_names) or set(position) != {name.casefold() for name in ISIC_CLASSES}:
        raise ConfigError(
            f"--submission writes the ISIC 2018 Task 3 columns {', '.join(ISIC_CLASSES)}, but the model's classes "
            f"are {', '.join(map(str, class_names))}; a submission needs a model trained on those seven classes"
        )
    return [position[name.casefold()] for name in ISIC_CLASSES]


def check_submission_path(path: str | Path) -> Path:
    """Make sure the submission can be written, before any image is scored (its folder is created if missing).

    Raises:
        ConfigError: ``path`` is a folder.
        OutputError: Its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--submission {path} is a folder: give the CSV file to write ({path / 'submission.csv'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write the submission {path}: {exc.strerror or exc}") from None
    return path


def write_submission(path: str | Path, image_ids: Sequence[str], scores: Any, class_names: Sequence[str]) -> Path:
    """Write the ISIC 2018 Task 3 submission CSV of ``scores`` (class probabilities in the model's class order).

    Args:
        path: The CSV file (written atomically).
        image_ids: One id per row (the image file's stem, ``ISIC_0034524``).
        scores: Class probabilities [N, C] in ``class_names`` order; each row is renormalised to sum to 1.
        class_names: The model's classes (`submission_order`).

    Returns:
        The path.

    Raises:
        ConfigError: The classes are not the ISIC 2018 ones.
        OutputError: The file cannot be written.
    """
    values = np.asarray(scores, dtype=np.float64)[:, submission_order(class_names)]
    if len(image_ids) != len(values):
        raise ValueError(f"{len(image_ids)} image ids for {len(values)} rows of scores")
    values = values / values.sum(axis=1, keepdims=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUBMISSION_COLUMNS)
    for image, row in zip(image_ids, values, strict=True):
        writer.writerow([image, *(f"{v:.8g}" for v in row)])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def write_binary_submission(path: str | Path, image_ids: Sequence[str], positive: Any) -> Path:
    """Write a binary run's submission in the ISIC 2020 format: ``image_name,target``, one row per image.

    The Kaggle SIIM-ISIC Melanoma Classification competition (ISIC 2020) takes the image id and a probability of
    the positive class (melanoma), scored by ROC AUC.

    Args:
        path: The CSV file (written atomically).
        image_ids: One id per row (the image file's stem).
        positive: The positive class's probability [N].

    Returns:
        The path.
    """
    values = np.asarray(positive, dtype=np.float64).reshape(-1)
    if len(image_ids) != len(values):
        raise ValueError(f"{len(image_ids)} image ids for {len(values)} scores")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BINARY_SUBMISSION_COLUMNS)
    for image, value in zip(image_ids, values, strict=True):
        writer.writerow([image, f"{value:.8g}"])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def write_label_submission(path: str | Path, image_ids: Sequence[str], scores: Any, labels: Sequence[str]) -> Path:
    """Write a multilabel run's submission: ``image,<label1>,<label2>,...``, one row per image.

    Each label's column holds its sigmoid probability (independent per label: a row does not sum to 1), in the
    run's label order; the header names the labels, so the file has the shape of a ``labels.csv`` with scores for
    its 0/1 values.

    Args:
        path: The CSV file (written atomically).
        image_ids: One id per row (the image file's stem).
        scores: Per-label probabilities [N, L].
        labels: The L label names.

    Returns:
        The path.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or values.shape != (len(image_ids), len(labels)):
        raise ValueError(f"scores of shape {list(values.shape)} for {len(image_ids)} images and {len(labels)} labels")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *labels])
    for image, row in zip(image_ids, values, strict=True):
        writer.writerow([image, *(f"{v:.8g}" for v in row)])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)
