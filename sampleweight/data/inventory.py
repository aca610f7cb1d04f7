"""What a run's data holds, and everything the reader left out, merged or cannot score: ``data.json``.

A `DataInventory` counts the images per class on each side (``train`` and ``validation`` for a training
run, ``evaluated`` for ``sampleweight evaluate``) and carries what `read_dataset` and the image cache
recorded: the rows and images ``skip_bad`` left out, the image files no row names, the label spellings read
as another. `DataInventory.notes` says each of these in one line, with the classes a side has no images
of (its BAcc, mPR and mF1 are over the others); `DataInventory.to_dict` is the ``data.json`` of the run
directory, whose training counts are the run's class prior.

For multilabel records (`DatasetRecords.multilabel`) the counts are the images *with* each label (positives) per
side, ``data.json`` says ``"multilabel": true`` and names, per side, the labels without positive and those without
negative images (a label needs both to be scored by AUC, pAUC and AP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampleweight.data.records import DatasetRecords

__all__ = ["DataInventory"]

_SHOW = 5  # how many items a note lists before "... and N more"


@dataclass(frozen=True)
class DataInventory:
    """Images per class per side, and what the reader did not use as it was.

    Attributes:
        source: The data as given (``--data``).
        layout: The layout read (`LAYOUTS`).
        classes: Class names in index order.
        counts: Images per class (in ``classes`` order) for each side: ``train`` and ``validation``, or
            ``evaluated``; for multilabel records, the images with each label.
        skipped: Rows and images left out (``skip_bad``), one line each.
        unlabelled: Image files that no row names (not used), relative to the data folder.
        merged_labels: Label spellings read as another, one line each.
        labelled: False for images without ground truth: ``counts`` are zeros and ``class_counts`` null.
        sizes: Images per side (the sum of ``counts`` for single-label records).
        multilabel: Whether each image holds several labels (``classes`` are then the labels).

    Example:
        >>> from sampleweight.data import read_dataset
        >>> records = read_dataset("synthetic:40")
        >>> not_df = [i for i, label in enumerate(records.labels) if records.classes[label] != "DF"]
        >>> inventory = DataInventory.of_sides(records, {"train": range(len(records)), "validation": not_df})
        >>> inventory.to_dict()["class_counts"]["validation"]["NV"]
        24
        >>> inventory.notes()
        ['no validation images of DF: BAcc, mPR and mF1 are over the remaining 6 class(es)']
    """

    source: str
    layout: str
    classes: tuple[str, ...]
    counts: dict[str, tuple[int, ...]]
    skipped: tuple[str, ...] = ()
    unlabelled: tuple[str, ...] = ()
    merged_labels: tuple[str, ...] = ()
    labelled: bool = True
    sizes: dict[str, int] = field(default_factory=dict)
    multilabel: bool = False

    @classmethod
    def of_sides(
        cls, records: DatasetRecords, sides: dict[str, Sequence[int] | np.ndarray], skipped: Sequence[str] = ()
    ) -> DataInventory:
        """The inventory of ``records`` split into named sides.

        Args:
            records: What `read_dataset` returned.
            sides: Record indices of each side, e.g. ``{"train": ..., "validation": ...}``.
            skipped: What was left out: ``records.skipped`` and the images the cache could not decode
                (default: ``records.skipped``).

        Returns:
            The inventory.
        """
        row = 1 if records.multilabel else slice(None)  # multilabel: the [2, L] table's positives
        counts = {
            side: tuple(records.class_counts(np.asarray(indices, dtype=np.int64))[row].tolist())
            for side, indices in sides.items()
        }
        return cls(
            source=records.source,
            layout=records.layout,
            classes=tuple(records.classes),
            counts=counts,
            skipped=tuple(skipped) or records.skipped,
            unlabelled=records.unlabelled,
            merged_labels=records.merged_labels,
            labelled=records.labelled,
            sizes={side: len(indices) for side, indices in sides.items()},
            multilabel=records.multilabel,
        )

    def images(self, side: str) -> int:
        """How many images ``side`` has."""
        return self.sizes.get(side, sum(self.counts[side]))

    def without_images(self, side: str) -> list[str] | None:
        """The classes ``side`` has no images of (multilabel: no image with); None when unlabelled (not known)."""
        if not self.labelled:
            return None
        return [name for name, n in zip(self.classes, self.counts[side], strict=True) if n == 0]

    def without_negatives(self, side: str) -> list[str]:
        """The labels every image of ``side`` has (multilabel records; empty otherwise)."""
        if not self.multilabel:
            return []
        size = self.images(side)
        return [name for name, n in zip(self.classes, self.counts[side], strict=True) if n == size]

    def notes(self) -> list[str]:
        """One line for each thing left out, merged or not scored (empty when the data was used as it is)."""
        lines = []
        if self.skipped:
            lines.append(f"left out {len(self.skipped)} bad row(s) or image(s) (--skip-bad): {_some(self.skipped)}")
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled)} image file(s) have no label row and are not used: "
                         f"{_some(self.unlabelled)}")  # fmt: skip
        if self.merged_labels:
            lines.append(f"labels written with surrounding spaces: {_some(self.merged_labels)}")
        if not self.labelled:
            sides = ", ".join(f"{self.images(side)} {side}" for side in self.counts)
            lines.append(f"no ground truth for the images ({sides}): no metrics computed, only their scores")
            return lines
        if self.multilabel:
            return lines + self._multilabel_notes()
        for side in self.counts:
            empty = self.without_images(side)
            if not empty:
                continue
            if side == "train":
                lines.append(f"no training images of {', '.join(empty)}: the model never sees these classes")
            else:
                scored = len(self.classes) - len(empty)
                lines.append(f"no {side} images of {', '.join(empty)}: "
                             f"BAcc, mPR and mF1 are over the remaining {scored} class(es)")  # fmt: skip
        return lines

    def _multilabel_notes(self) -> list[str]:
        lines = []
        for side in self.counts:
            empty, full = self.without_images(side) or [], self.without_negatives(side)
            if side == "train":
                if empty:
                    lines.append(f"no training images with {', '.join(empty)}: the model never sees these labels")
                if full:
                    lines.append(f"every training image has {', '.join(full)}: the model never sees them absent")
            elif empty or full:
                said = [f"no {side} images with {', '.join(empty)}"] if empty else []
                said += [f"every {side} image has {', '.join(full)}"] if full else []
                scored = len(self.classes) - len(set(empty) | set(full))
                lines.append(f"{'; '.join(said)}: AUC, pAUC and AP are means over the remaining {scored} label(s)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The contents of ``data.json``: counts by class name per side, what was left out, and the notes.

        Multilabel records add ``"multilabel": true`` and ``labels_without_negatives`` per side; their
        ``class_counts`` are the images with each label.
        """
        out = {
            "source": self.source,
            "layout": self.layout,
            "classes": list(self.classes),
            "labelled": self.labelled,
            "class_counts": {
                side: dict(zip(self.classes, counts, strict=True)) if self.labelled else None
                for side, counts in self.counts.items()
            },
            "images": {side: self.images(side) for side in self.counts},
            "classes_without_images": {side: self.without_images(side) for side in self.counts},
            "skipped": list(self.skipped),
            "unlabelled": list(self.unlabelled),
            "merged_labels": list(self.merged_labels),
            "notes": self.notes(),
        }
        if self.multilabel:  # single-label data.json stays as it was
            out = {"multilabel": True, **out}
            out["labels_without_negatives"] = {side: self.without_negatives(side) for side in self.counts}
        return out


def _some(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")
