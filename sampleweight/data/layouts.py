"""Reading a data set from the layout the user downloaded: `read_dataset` returns its `DatasetRecords`.

`read_dataset` auto-detects the layout of what the user downloaded and returns `DatasetRecords`:

- ``ham10000``: the HAM10000 release, ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``) beside
  ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/`` (or one ``HAM10000_images/`` folder);
- ``isic2018``: the ISIC 2018 Task 3 release, ``ISIC2018_Task3_{Training,Validation,Test}_Input/`` with
  ``ISIC2018_Task3_{...}_GroundTruth.csv`` (one-hot ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``; at the top level
  or inside the ``..._GroundTruth/`` folder the official zip unpacks to) and the optional
  ``ISIC2018_Task3_Training_LesionGroupings.csv`` (``image,lesion_id,diagnosis_confirm_type``);
- ``csv``: any other data set, a ``labels.csv`` (``image,label[,group]``) beside its images;
- ``multilabel``: several labels per image, a ``labels.csv`` with a column ``image`` and one 0/1 column per label
  (no ``label`` column; an optional ``patient_id``, ``lesion_id`` or ``group`` column is the group) beside its
  images or with them in ``images/``: the records are multilabel (``labels`` [N, L], `DatasetRecords.multilabel`);
- ``images``: a folder of images without labels (say ``ISIC2018_Task3_Test_Input/`` without its ground
  truth), read only when nothing labelled is there and the caller allows it (``allow_unlabelled=True``,
  what ``sampleweight evaluate`` passes): each image file in the folder or its subfolders is a record
  named by its file stem, labelled `UNLABELLED` (`DatasetRecords.labelled` is False);
- ``synthetic``: ``synthetic`` or ``synthetic:N`` (or ``synthetic:N:SEED``), generated in memory
  (`sampleweight.data.synthetic`).

Class order is fixed: ISIC's column order ``MEL, NV, BCC, AKIEC, BKL, DF, VASC`` (`ISIC_CLASSES`); HAM10000's
``dx`` codes map onto it (`HAM10000_DX`). For a generic CSV the classes are the sorted labels present
(numerically sorted when all are integers) unless ``classes=`` fixes them. A multilabel CSV's labels are its label
columns, in the file's order (``classes=`` may reorder them).

A layout is forced with ``layout=`` or by prefixing the path with its name, ``multilabel:PATH`` (a path that exists
as written is always read as a path).

Nothing is dropped silently: a missing image, an unknown label, a malformed one-hot row or a duplicate id is
a `DataError` naming the rows, unless ``skip_bad=True``, which leaves them out and records what it skipped in
`DatasetRecords.skipped` (and logs a warning). Image files beside the labels that no row names are recorded in
`DatasetRecords.unlabelled`; generic-CSV labels written with surrounding spaces are read without them and
recorded in `DatasetRecords.merged_labels`; labels that differ only in case are refused, naming the spellings.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from sampleweight.data.records import ISIC_CLASSES, UNLABELLED, DatasetRecords
from sampleweight.data.synthetic import DEFAULT_SYNTHETIC_SIZE, synthetic_records
from sampleweight.errors import ConfigError, DataError

__all__ = ["HAM10000_DX", "IMAGE_SUFFIXES", "LAYOUTS", "read_dataset"]

log = logging.getLogger(__name__)

HAM10000_DX: dict[str, int] = {"mel": 0, "nv": 1, "bcc": 2, "akiec": 3, "bkl": 4, "df": 5, "vasc": 6}
"""HAM10000 ``dx`` code -> index into `ISIC_CLASSES`."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""File suffixes (lower case) taken for images when indexing an image folder."""

LAYOUTS = ("isic2018", "ham10000", "isic2020", "csv", "multilabel", "images", "synthetic")
"""Layout names `read_dataset` recognises, in the order auto-detection tries them."""

_ISIC_SUBSETS = ("Training", "Validation", "Test")
_HAM_METADATA_NAMES = ("ham10000_metadata.csv", "ham10000_metadata.tab", "ham10000_metadata")
_SHOW = 5  # how many offending rows an error message lists before "and N more"


# ----------------------------------------------------------------------------------------------- detection


def read_dataset(
    source: str | Path,
    *,
    layout: str | None = None,
    subset: str | None = None,
    classes: Sequence[str] | None = None,
    skip_bad: bool = False,
    allow_empty_classes: bool = False,
    allow_unlabelled: bool = False,
) -> DatasetRecords:
    """Read a data set, detecting its layout.

    Args:
        source: A folder (or the CSV file) of a supported layout, or ``synthetic[:N[:SEED]]``; ``LAYOUT:PATH``
            (``multilabel:data/labels.csv``) forces the layout as ``layout=`` does.
        layout: Force a layout (one of `LAYOUTS`) instead of detecting it.
        subset: For the ISIC 2018 layout: ``training``, ``validation`` or ``test``. Default: the one
            ``source`` names (an ``..._Input`` folder or a ground-truth CSV), else Training when present, else
            the only one present.
        classes: For a generic CSV: the class names in index order (default: the sorted labels present).
            For a multilabel CSV: its label columns in the order wanted (default: the file's). Every listed class
            must have images. For unlabelled images: the classes they will be scored
            against (default `ISIC_CLASSES`).
        skip_bad: Leave out rows with a missing image, an unknown label, a malformed one-hot row, a multilabel
            value other than 0/1 or a duplicate id (reported in `DatasetRecords.skipped` and logged) instead of
            raising.
        allow_empty_classes: Accept classes without images (a test set scored over the classes it has);
            by default every class needs images, as training does.
        allow_unlabelled: Read a folder of images without labels (layout ``images``) when nothing labelled
            is there, as evaluation does; by default such a folder is refused, as training needs labels.

    Returns:
        The records; ``records.layout`` says which layout was found (also logged at INFO).

    Raises:
        DataError: Nothing recognisable at ``source`` (the message lists what was looked for), bad rows, images
            without labels (unless ``allow_unlabelled``), or a folder without images (one line).
        ConfigError: An unknown ``layout``/``subset`` or a malformed ``synthetic:...`` spec.

    Example:
        >>> records = read_dataset("synthetic:500")
        >>> records.layout, len(records), records.classes[:2]
        ('synthetic', 500, ('MEL', 'NV'))
    """
    given = str(source).strip()
    text, layout = _layout_prefix(given, layout)
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"unknown data layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if layout == "synthetic" or re.fullmatch(r"(?i)synthetic(:.*)?", text):
        records = _read_synthetic(text)
    else:
        records = _read_path(Path(text).expanduser(), layout, subset, classes, skip_bad, allow_unlabelled)
        if not allow_empty_classes and records.labelled:
            _require_every_class(records, text)
    records = replace(records, source=given)
    log.info("data: %s", records.describe())
    if records.skipped:
        log.warning(
            "data: skipped %d row(s) (skip_bad=True): %s",
            len(records.skipped),
            _examples(records.skipped),
        )
    return records


def _layout_prefix(text: str, layout: str | None) -> tuple[str, str | None]:
    """``("PATH", "multilabel")`` for ``"multilabel:PATH"`` (a layout name of `LAYOUTS` before a colon).

    A path that exists as written is never split; ``synthetic:...`` is left to the synthetic reader. A prefix and a
    different ``layout=`` is a `ConfigError`.
    """
    match = re.fullmatch(r"([A-Za-z0-9]+):(.+)", text)
    if match is None or match.group(1).lower() not in LAYOUTS or match.group(1).lower() == "synthetic":
        return text, layout
    if Path(text).expanduser().exists():
        return text, layout
    named = match.group(1).lower()
    if layout is not None and layout != named:
        raise ConfigError(f"{text!r} names the layout {named!r}, but layout={layout!r} was given; give one of them")
    return match.group(2).strip(), named


def _read_synthetic(text: str) -> DatasetRecords:
    parts = text.split(":")[1:]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"bad synthetic data spec {text!r}: expected 'synthetic', 'synthetic:N' or 'synthetic:N:SEED' "
            "with integers N (images) and SEED"
        ) from None
    if len(values) > 2:
        raise ConfigError(f"bad synthetic data spec {text!r}: expected at most 'synthetic:N:SEED'")
    num_images = values[0] if values else DEFAULT_SYNTHETIC_SIZE
    seed = values[1] if len(values) > 1 else 0
    return synthetic_records(num_images, seed=seed)


def _read_path(
    path: Path,
    layout: str | None,
    subset: str | None,
    classes: Sequence[str] | None,
    skip_bad: bool,
    allow_unlabelled: bool,
) -> DatasetRecords:
    if not path.exists():
        raise DataError(
            f"data set not found: {path} does not exist. Point --data at the folder you downloaded "
            "(HAM10000 or ISIC 2018 Task 3), a folder with a labels.csv, or use 'synthetic'."
        )
    found = [] if layout == "images" else _detect(path)
    if layout in _LABELS_CSV_LAYOUTS:  # a labels.csv is read as the layout asked for, whatever its header
        found = [(layout if kind in _LABELS_CSV_LAYOUTS else kind, detail) for kind, detail in found]
    if layout is not None and layout != "images":
        found = [f for f in found if f[0] == layout]
        if not found:
            raise DataError(f"no {layout} data set at {path}.\n{_looked_for()}")
    if not found and path.is_dir() and (allow_unlabelled or layout == "images"):
        return _read_images(path, classes, skip_bad)
    if not found and path.is_dir() and _image_files([path, *_subfolders(path)]):
        raise DataError(
            f"{path} holds images but no labels to train on: add a labels.csv (image,label[,group]) beside them, "
            f"or point --data at a labelled release (`sampleweight evaluate` scores images without labels).\n"
            f"{_looked_for()}"
        )
    if not found:
        raise DataError(f"could not recognise a data set at {path}.\n{_looked_for()}")
    if len(found) > 1:
        log.info(
            "data: %s holds several layouts (%s); reading %s (pass layout= to choose)",
            path,
            ", ".join(f[0] for f in found),
            found[0][0],
        )
    kind, detail = found[0]
    if kind == "isic2018":
        return _read_isic(detail, subset, skip_bad)
    if kind == "ham10000":
        return _read_ham(detail[0], skip_bad)
    if kind == "isic2020":
        return _read_isic2020(detail[0], skip_bad)
    if kind == "multilabel":
        return _read_multilabel(detail[0], classes, skip_bad)
    return _read_generic(detail[0], classes, skip_bad)


def _require_every_class(records: DatasetRecords, where: str) -> None:
    """Every class has images (a multilabel set: every label has images holding it), or one `DataError` naming them."""
    multilabel = records.multilabel
    counts = records.class_counts()[1 if multilabel else slice(None)].tolist()
    empty = [name for name, n in zip(records.classes, counts, strict=True) if n == 0]
    if not empty:
        return
    if multilabel:
        problem, listed = "label(s) with no positive image", "images with each label"
        fix = "Every label needs images that have it to train on; drop its column or check the file."
    else:
        problem, listed = "class(es) with no images", "counts"
        fix = "Every class needs images to train on; check the download" + (
            " or the classes= list." if records.layout == "csv" else "."
        )
    raise DataError(
        f"{problem} in {where}: {', '.join(empty)} ({listed}: "
        + ", ".join(f"{name} {int(n)}" for name, n in zip(records.classes, counts, strict=True))
        + f"). {fix}"
    )


_ACCEPTED = (
    "--data takes a data folder (HAM10000, ISIC 2018 Task 3, or a labels.csv beside the images), a labels CSV "
    "file (image,label[,group], or image and one 0/1 column per label) or synthetic[:N[:SEED]]"
)
"""What ``--data`` accepts, in one line: the end of the message for a path that is none of them."""


def _looked_for() -> str:
    return (
        "Looked for:\n"
        "  - ISIC 2018 Task 3: ISIC2018_Task3_Training_GroundTruth.csv (top level or in "
        "ISIC2018_Task3_Training_GroundTruth/) and the image folder ISIC2018_Task3_Training_Input/ "
        "(Validation and Test alike), or the ..._Input folder itself;\n"
        "  - HAM10000: HAM10000_metadata.csv beside HAM10000_images_part_1/ and HAM10000_images_part_2/ "
        "(or one HAM10000_images/ folder);\n"
        "  - ISIC 2020: train.csv with columns image_name,patient_id,target beside train/ (or jpeg/train/);\n"
        "  - generic: labels.csv with columns image,label[,group] beside the images (or any CSV file "
        "passed directly);\n"
        "  - multilabel: labels.csv with a column image and one 0/1 column per label, beside the images or with "
        "them in images/;\n"
        "  - or 'synthetic' / 'synthetic:N' for the built-in synthetic data set."
    )


def _isic_files(folder: Path, subset: str) -> tuple[Path | None, Path]:
    """(ground-truth CSV or None, image folder) of one ISIC 2018 subset under ``folder``."""
    stem = f"ISIC2018_Task3_{subset}_GroundTruth"
    candidates = [folder / f"{stem}.csv", folder / stem / f"{stem}.csv"]
    truth = next((c for c in candidates if c.is_file()), None)
    return truth, folder / f"ISIC2018_Task3_{subset}_Input"


def _detect(path: Path) -> list[tuple[str, tuple]]:
    """Every layout found at ``path``, in priority order, each with what its reader needs."""
    found: list[tuple[str, tuple]] = []
    if path.is_file():
        match = re.fullmatch(r"(?i)ISIC2018_Task3_(Training|Validation|Test)_GroundTruth\.csv", path.name)
        folder = path.parent.parent if path.parent.name == path.stem else path.parent
        if match:
            name = match.group(1).capitalize()
            found.append(("isic2018", (folder, {name: (path, folder / f"ISIC2018_Task3_{name}_Input")})))
        elif path.name.lower() in _HAM_METADATA_NAMES:
            found.append(("ham10000", (path,)))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(f"{path} is an image, not a data folder or a labels CSV; {_ACCEPTED}")
        else:
            found.append((_labels_layout(path), (path,)))
        return found
    # An ISIC ..._Input folder itself: its ground truth lies beside it.
    match = re.fullmatch(r"(?i)ISIC2018_Task3_(Training|Validation|Test)_Input", path.name)
    if match:
        name = match.group(1).capitalize()
        truth, _ = _isic_files(path.parent, name)
        if truth is not None:
            found.append(("isic2018", (path.parent, {name: (truth, path)})))
    else:
        subsets = {}
        for name in _ISIC_SUBSETS:
            truth, images = _isic_files(path, name)
            if truth is not None:
                subsets[name] = (truth, images)
        if subsets:
            found.append(("isic2018", (path, subsets)))
    children = {child.name.lower(): child for child in path.iterdir()}
    ham = next((children[n] for n in _HAM_METADATA_NAMES if n in children and children[n].is_file()), None)
    if ham is not None:
        found.append(("ham10000", (ham,)))
    isic2020 = children.get("train.csv")
    if isic2020 is not None and isic2020.is_file() and set(ISIC2020_COLUMNS) <= set(_header(isic2020)):
        found.append(("isic2020", (isic2020,)))
    if "labels.csv" in children and children["labels.csv"].is_file():
        found.append((_labels_layout(children["labels.csv"]), (children["labels.csv"],)))
    return found


_LABELS_CSV_LAYOUTS = ("csv", "multilabel")
"""The layouts of a ``labels.csv``: one ``label`` column, or one 0/1 column per label."""


def _labels_layout(labels_csv: Path) -> str:
    """``multilabel`` for a labels CSV with an ``image`` column and no ``label`` column, else ``csv``."""
    header = [cell.strip('"').lower() for cell in _header(labels_csv)]
    return "multilabel" if "image" in header and "label" not in header else "csv"


ISIC2020_COLUMNS = ("image_name", "patient_id", "target")
"""The columns of ISIC 2020's (Kaggle SIIM-ISIC Melanoma Classification) ``train.csv`` that the reader uses."""
ISIC2020_CLASSES = ("benign", "melanoma")
"""ISIC 2020's classes: ``target`` 0 and 1 (``--task binary`` takes melanoma as the positive class)."""
ISIC2020_IMAGE_FOLDERS = ("train", "jpeg/train", "train_jpeg", "images")
"""Where the ISIC 2020 reader looks for the images, beside ``train.csv`` (then in its folder itself)."""


def _header(path: Path) -> list[str]:
    """The first line of a CSV (or tab-separated) file, its cells stripped (empty when unreadable)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return []
    return [cell.strip() for cell in next(csv.reader([first], delimiter=_delimiter(first)), [])]


def _delimiter(first_line: str) -> str:
    """A tab for a tab-separated file (a tab and no comma in its first line), else a comma."""
    return "\t" if "\t" in first_line and "," not in first_line else ","


def _read_isic2020(train_csv: Path, skip_bad: bool) -> DatasetRecords:
    """ISIC 2020's training release: ``train.csv`` (``image_name``, ``patient_id``, ``target``) and its images.

    The group of an image is its patient: a split never puts one patient's lesions on both sides (as HAM10000's
    lesion ids group its images).
    """
    root = train_csv.parent
    header, rows = _read_csv(train_csv)
    col = _columns(train_csv, header, ISIC2020_COLUMNS)
    folders = [root / name for name in ISIC2020_IMAGE_FOLDERS if (root / name).is_dir()]
    index = _index_images([*folders, root])
    if not index:
        raise DataError(
            f"ISIC 2020 train.csv found at {train_csv}, but no images: looked in "
            f"{', '.join(name + '/' for name in ISIC2020_IMAGE_FOLDERS)} and {root} itself"
        )
    problems = _Problems(str(train_csv))
    records = []
    named: set[Path] = set()
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        image, patient, target = cells[col["image_name"]], cells[col["patient_id"]], cells[col["target"]]
        path = index.get(image)
        named.add(path)
        bad = False
        if target not in ("0", "1"):
            problems.add("target not 0 or 1", line, f"line {line} {target!r}")
            bad = True
        if path is None:
            problems.add("missing image(s)", line, image or f"line {line}")
            bad = True
        if not bad:
            records.append((line, image, int(target), patient or image, path))
    found = _finish(str(train_csv), problems, records, ISIC2020_CLASSES, "isic2020", root, skip_bad)
    return replace(found, unlabelled=_unlabelled(index, named, root))


# ----------------------------------------------------------------------------------------------- readers


class _Problems:
    """Collects bad rows by kind, so that one error (or one skip report) names them all."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.kinds: dict[str, list[str]] = {}
        self.bad_rows: set[int] = set()

    def add(self, kind: str, row: int, item: str) -> None:
        self.kinds.setdefault(kind, []).append(item)
        self.bad_rows.add(row)

    def finish(self, skip_bad: bool) -> tuple[str, ...]:
        """Raise a `DataError` naming every problem, or (skip_bad) return one line per skipped item."""
        if not self.kinds:
            return ()
        if skip_bad:
            return tuple(f"{item} ({kind})" for kind, items in self.kinds.items() for item in items)
        lines = [f"{len(self.bad_rows)} bad row(s) in {self.where}:"]
        lines += [f"  - {len(items)} {kind}: {_examples(items)}" for kind, items in self.kinds.items()]
        lines.append(
            "Fix: complete or correct the download (or the CSV), or pass skip_bad=True (CLI: --skip-bad) "
            "to leave these rows out; what is skipped is reported."
        )
        raise DataError("\n".join(lines))


def _examples(items: Sequence[str], limit: int = _SHOW) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def _read_csv(path: Path, strip: bool = True, lower: bool = True) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a CSV (or tab-separated) file; DataError when it has no rows.

    Cells lose their surrounding spaces unless ``strip`` is False (the header always does); the header is lower
    case unless ``lower`` is False.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a labels CSV (not UTF-8 text), nor a data folder; {_ACCEPTED}") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    reader = csv.reader(lines, delimiter=_delimiter(first))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        stripped = [c.strip() for c in cells]
        if header is None:
            header = [c.strip('"').lower() if lower else c.strip('"') for c in stripped]
        else:
            rows.append((reader.line_num, stripped if strip else cells))
    if header is None or not rows:
        raise DataError(
            f"{path} is empty: it has {'no header' if header is None else 'a header but no rows'}. "
            "Re-download it or point --data at the complete data set."
        )
    return header, rows


def _columns(path: Path, header: list[str], required: Sequence[str]) -> dict[str, int]:
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)}; its header is {','.join(header)}. "
            f"Expected columns: {','.join(required)}."
        )
    return {name: header.index(name) for name in header}


def _index_images(folders: Iterable[Path]) -> dict[str, Path]:
    """Image stem (and file name) -> path over ``folders`` (not recursive); earlier folders win."""
    index: dict[str, Path] = {}
    for path in _image_files(folder for folder in folders if folder.is_dir()):
        index.setdefault(path.stem, path)
        index.setdefault(path.name, path)
    return index


def _named_image(root: Path, image: str, index: Mapping[str, Path], named: set[Path]) -> Path | None:
    """The file a CSV row names: ``root / image`` if it is one, else the indexed file of that id or name; recorded in
    ``named`` (the files some row names). None for an empty cell or a file not found."""
    if not image:
        return None
    direct = root / image
    path = direct if direct.is_file() else index.get(image)
    if path is not None:
        named.add(path)
    return path


def _finish(
    where: str,
    problems: _Problems,
    rows: list[tuple[int, str, int, str, Path]],
    classes: tuple[str, ...],
    layout: str,
    root: Path,
    skip_bad: bool,
) -> DatasetRecords:
    """Check for duplicates, then build the records from (line, id, label, group, path)."""
    first_line: dict[str, int] = {}
    kept = []
    for line, image_id, label, group, path in rows:
        if image_id in first_line:  # the first occurrence is kept when skipping
            problems.add("duplicate image id(s)", line, f"{image_id} (lines {first_line[image_id]} and {line})")
        else:
            first_line[image_id] = line
            kept.append((image_id, label, group, path))
    skipped = problems.finish(skip_bad)
    if not kept:
        raise DataError(f"no usable images in {where}" + (" after skipping bad rows" if skipped else ""))
    return DatasetRecords(
        image_ids=tuple(r[0] for r in kept),
        labels=np.array([r[1] for r in kept], dtype=np.int64),
        groups=tuple(r[2] for r in kept),
        classes=classes,
        layout=layout,
        root=root,
        paths=tuple(r[3] for r in kept),
        skipped=skipped,
    )


def _read_ham(metadata: Path, skip_bad: bool) -> DatasetRecords:
    root = metadata.parent
    header, rows = _read_csv(metadata)
    col = _columns(metadata, header, ("lesion_id", "image_id", "dx"))
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("ham10000_images")),
        key=lambda p: (p.name.lower(), p.name),
    )
    index = _index_images([*folders, root])
    if not index:
        raise DataError(
            f"HAM10000 metadata found at {metadata}, but no images: looked for image files in "
            f"HAM10000_images_part_1/, HAM10000_images_part_2/, HAM10000_images/ and {root} itself. "
            "Unpack the image zips next to the metadata."
        )
    where = f"{metadata}"
    problems = _Problems(where)
    records = []
    named: set[Path] = set()
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        image_id, dx, lesion = cells[col["image_id"]], cells[col["dx"]].lower(), cells[col["lesion_id"]]
        named.add(index.get(image_id))
        bad = False
        if dx not in HAM10000_DX:
            problems.add(f"unknown dx (valid: {', '.join(sorted(HAM10000_DX))})", line, f"line {line} {dx!r}")
            bad = True
        path = index.get(image_id)
        if path is None:
            where_images = ", ".join(f.name + "/" for f in folders) or str(root)
            problems.add(f"missing image(s) (looked in {where_images})", line, image_id or f"line {line}")
            bad = True
        if not bad:
            records.append((line, image_id, HAM10000_DX[dx], lesion or image_id, path))
    found = _finish(where, problems, records, ISIC_CLASSES, "ham10000", root, skip_bad)
    return replace(found, unlabelled=_unlabelled(index, named, root))


def _read_isic(detail: tuple, subset: str | None, skip_bad: bool) -> DatasetRecords:
    folder, subsets = detail
    if subset is not None:
        name = subset.strip().capitalize()
        if name not in _ISIC_SUBSETS:
            raise ConfigError(f"unknown ISIC 2018 subset {subset!r}; valid: training, validation, test")
        if name not in subsets:
            raise DataError(
                f"no ISIC 2018 {name} ground truth at {folder}: found "
                f"{', '.join(s.lower() for s in subsets)}; expected ISIC2018_Task3_{name}_GroundTruth.csv"
            )
    elif "Training" in subsets:
        name = "Training"
    elif len(subsets) == 1:
        name = next(iter(subsets))
    else:
        raise DataError(
            f"{folder} holds several ISIC 2018 subsets ({', '.join(s.lower() for s in subsets)}) and no "
            "Training set; choose one with subset= or point --data at its ..._Input folder."
        )
    truth, images = subsets[name]
    if not images.is_dir():
        raise DataError(
            f"ISIC 2018 {name} ground truth found at {truth}, but not its image folder {images}. "
            f"Unpack ISIC2018_Task3_{name}_Input.zip there."
        )
    header, rows = _read_csv(truth)
    col = _columns(truth, header, ("image", *(c.lower() for c in ISIC_CLASSES)))
    groups: dict[str, str] = {}
    groupings = folder / f"ISIC2018_Task3_{name}_LesionGroupings.csv"
    if groupings.is_file():
        g_header, g_rows = _read_csv(groupings)
        g_col = _columns(groupings, g_header, ("image", "lesion_id"))
        for _, cells in g_rows:
            cells = cells + [""] * (len(g_header) - len(cells))
            if cells[g_col["lesion_id"]]:
                groups[cells[g_col["image"]]] = cells[g_col["lesion_id"]]
    elif name == "Training":  # splitting without lesion ids can put one lesion on both sides
        warnings.warn(
            f"{folder} has no {groupings.name}: each image is treated as its own lesion, so images of one "
            "lesion may land on both sides of a split; put the ISIC 2018 lesion groupings file beside the "
            "ground truth (or use the HAM10000 release, whose metadata has lesion ids)",
            stacklevel=3,
        )
    else:
        log.info("data: no %s; each image is its own lesion group", groupings.name)
    index = _index_images([images])
    where = f"{truth}"
    problems = _Problems(where)
    records = []
    named: set[Path] = set()
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        image_id = cells[col["image"]]
        named.add(index.get(image_id))
        raw = [cells[col[c.lower()]] for c in ISIC_CLASSES]
        try:
            values = [float(v) for v in raw]
        except ValueError:
            values = []
        bad = False
        if len(values) != len(ISIC_CLASSES) or any(v not in (0.0, 1.0) for v in values) or sum(values) != 1:
            problems.add(
                "one-hot row(s) without exactly one 1 among MEL..VASC",
                line,
                f"line {line} {image_id}: {','.join(raw)}",
            )
            bad = True
        path = index.get(image_id)
        if path is None:
            problems.add(f"missing image(s) (looked in {images.name}/)", line, image_id or f"line {line}")
            bad = True
        if not bad:
            records.append((line, image_id, values.index(1.0), groups.get(image_id, image_id), path))
    found = _finish(where, problems, records, ISIC_CLASSES, "isic2018", folder, skip_bad)
    return replace(found, unlabelled=_unlabelled(index, named, folder))


def _read_generic(labels_csv: Path, classes: Sequence[str] | None, skip_bad: bool) -> DatasetRecords:
    root = labels_csv.parent
    header, raw_rows = _read_csv(labels_csv, strip=False)
    col = _columns(labels_csv, header, ("image", "label"))
    rows = [(line, [c.strip() for c in cells]) for line, cells in raw_rows]
    index = _index_images([root, *_subfolders(root)])
    present = sorted({cells[col["label"]] for _, cells in rows if len(cells) > col["label"]} - {""})
    if classes is None:
        _refuse_case_variants(labels_csv, rows, col["label"])
        names = _natural_order(present)
    else:
        names = tuple(str(c) for c in classes)
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"classes= must be distinct names, got {list(names)}")
    lookup = {name: i for i, name in enumerate(names)}
    where = f"{labels_csv}"
    problems = _Problems(where)
    records = []
    named: set[Path] = set()
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        image, label = cells[col["image"]], cells[col["label"]]
        group = cells[col["group"]] if "group" in col else ""
        bad = False
        if label not in lookup:
            problems.add(f"unknown label(s) (valid: {', '.join(names)})", line, f"line {line} {label!r}")
            bad = True
        path = _named_image(root, image, index, named)
        if path is None:
            problems.add(f"missing image(s) (looked in {root} and its subfolders)", line, image or f"line {line}")
            bad = True
        if not bad:
            records.append((line, image, lookup[label], group or image, path))
    found = _finish(where, problems, records, names, "csv", root, skip_bad)
    return replace(
        found, unlabelled=_unlabelled(index, named, root), merged_labels=_padded_labels(raw_rows, col["label"])
    )


MULTILABEL_GROUP_COLUMNS = ("patient_id", "lesion_id", "group")
"""The columns of a multilabel ``labels.csv`` that may hold the group, the first present used (a patient's lesions
stay together); the others are ignored. Every column but ``image`` and these is a label."""


def _read_multilabel(labels_csv: Path, classes: Sequence[str] | None, skip_bad: bool) -> DatasetRecords:
    """A multilabel ``labels.csv``: ``image``, one 0/1 column per label, optionally the group column.

    The group column is the first of `MULTILABEL_GROUP_COLUMNS` present (else each image is its own group).

    Images lie beside the file or in its ``images/`` folder; ``image`` is a file name (with or without its suffix),
    a path relative to the file's folder, or an id.
    """
    root = labels_csv.parent
    header, rows = _read_csv(labels_csv, lower=False)
    lowered = [name.lower() for name in header]
    if "image" not in lowered:
        raise DataError(
            f"{labels_csv} lacks the column image; its header is {','.join(header)}. A multilabel labels.csv has "
            "a column image and one 0/1 column per label."
        )
    image_col = lowered.index("image")
    group_name = next((name for name in MULTILABEL_GROUP_COLUMNS if name in lowered), None)
    group_col = lowered.index(group_name) if group_name is not None else None
    reserved = {"image", *MULTILABEL_GROUP_COLUMNS}
    label_cols = [i for i, name in enumerate(lowered) if name not in reserved]
    names = [header[i] for i in label_cols]
    _check_label_columns(labels_csv, header, names)
    if classes is not None:
        wanted = tuple(str(c) for c in classes)
        if sorted(wanted) != sorted(names):
            raise DataError(
                f"{labels_csv} has the label columns {', '.join(names)}, but the labels asked for are "
                f"{', '.join(wanted)}; give the file's labels (in any order) or read it without classes="
            )
        label_cols = [label_cols[names.index(name)] for name in wanted]
        names = list(wanted)
    images_dir = root / "images"
    index = _index_images([root, images_dir])
    where = f"{labels_csv}"
    problems = _Problems(where)
    records = []
    named: set[Path] = set()
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        image = cells[image_col]
        group = cells[group_col] if group_col is not None else ""
        bad = False
        values = []
        for column, name in zip(label_cols, names, strict=True):
            value = _zero_one(cells[column])
            if value is None:
                problems.add("value(s) other than 0/1 in a label column", line, f"line {line} {name}={cells[column]!r}")
                bad = True
            values.append(value)
        path = _named_image(root, image, index, named)
        if path is None:
            problems.add(f"missing image(s) (looked in {root} and {images_dir.name}/)", line, image or f"line {line}")
            bad = True
        if not bad:
            records.append((line, image, values, group or image, path))
    found = _finish(where, problems, records, tuple(names), "multilabel", root, skip_bad)
    return replace(found, unlabelled=_unlabelled(index, named, root))


def _check_label_columns(labels_csv: Path, header: Sequence[str], names: Sequence[str]) -> None:
    """Refuse a multilabel header without label columns, with a nameless, duplicate or ``;``-holding one."""
    fix = (
        "A multilabel labels.csv has a column image, one 0/1 column per label and optionally the group "
        f"({', '.join(MULTILABEL_GROUP_COLUMNS)})"
    )
    if not names:
        raise DataError(
            f"{labels_csv} has no label column: its header is {','.join(header)}. {fix}; a single-label file has a "
            "column label instead."
        )
    if any(not name for name in names):
        raise DataError(f"{labels_csv} has a label column without a name (header {','.join(header)}). {fix}.")
    with_semicolon = [name for name in names if ";" in name]
    if with_semicolon:
        raise DataError(
            f"label name(s) in {labels_csv} hold ';': {', '.join(with_semicolon)}. predictions.csv joins an image's "
            "labels with ';': rename the column(s)."
        )
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(name.casefold(), []).append(name)
    duplicates = [" and ".join(group) for group in spellings.values() if len(group) > 1]
    if duplicates:
        raise DataError(
            f"duplicate label column(s) in {labels_csv}: {'; '.join(duplicates)} (names compared ignoring case). "
            "Give each label one column: merge or rename them."
        )


def _zero_one(cell: str) -> int | None:
    """0 or 1 for a cell holding 0 or 1 (``1``, ``1.0``), else None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def _image_files(folders: Iterable[Path]) -> list[Path]:
    """The image files directly in ``folders``, each folder's sorted by name (no stat per file)."""
    files = []
    for folder in folders:
        with os.scandir(folder) as entries:  # scandir: no stat per file (10,015 files in a few ms)
            names = sorted(
                e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()
            )
        files += [folder / name for name in names]
    return files


def _read_images(root: Path, classes: Sequence[str] | None, skip_bad: bool) -> DatasetRecords:
    """A folder of images without labels: one record per image file in it or its subfolders, named by its stem."""
    files = _image_files([root, *_subfolders(root)])
    if not files:
        raise DataError(
            f"no images in {root}: it has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it or its "
            "subfolders, and no labels file; point --data at a folder of images or a data set"
        )
    names = tuple(str(c) for c in classes) if classes is not None else ISIC_CLASSES
    problems = _Problems(f"the images of {root}")
    first: dict[str, Path] = {}
    kept: list[tuple[str, Path]] = []
    for position, path in enumerate(files):
        image_id = path.stem
        if image_id in first:  # one id per image: the submission and predictions.csv name images by stem
            shown = f"{image_id} ({_relative(first[image_id], root)} and {_relative(path, root)})"
            problems.add("image files with the same name (stem)", position, shown)
        else:
            first[image_id] = path
            kept.append((image_id, path))
    skipped = problems.finish(skip_bad)
    ids = tuple(image_id for image_id, _ in kept)
    return DatasetRecords(
        image_ids=ids,
        labels=np.full(len(kept), UNLABELLED, dtype=np.int64),
        groups=ids,
        classes=names,
        layout="images",
        root=root,
        paths=tuple(path for _, path in kept),
        skipped=skipped,
        labelled=False,
    )


def _refuse_case_variants(path: Path, rows: list[tuple[int, list[str]]], column: int) -> None:
    """A `DataError` naming the spellings of labels that differ only in case (they would be separate classes)."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for line, cells in rows:
        if len(cells) > column and cells[column]:
            counts[cells[column]] += 1
            first.setdefault(cells[column], line)
    spellings: dict[str, list[str]] = {}
    for label in sorted(counts):
        spellings.setdefault(label.casefold(), []).append(label)
    clashes = [group for group in spellings.values() if len(group) > 1]
    if clashes:
        named = "; ".join(
            " vs ".join(f"{label!r} ({counts[label]} row(s), first on line {first[label]})" for label in group)
            for group in clashes
        )
        raise DataError(
            f"labels in {path} differ only in case: {named}. They would become separate classes: "
            "spell each class one way"
        )


def _padded_labels(raw_rows: list[tuple[int, list[str]]], column: int) -> tuple[str, ...]:
    """One line per label written with surrounding spaces, which is read without them (merged with its class)."""
    counts = Counter(cells[column] for _, cells in raw_rows if len(cells) > column and cells[column].strip())
    return tuple(
        f"{raw!r} read as {raw.strip()!r} ({n} row(s))" for raw, n in sorted(counts.items()) if raw != raw.strip()
    )


def _unlabelled(index: dict[str, Path], named: set[Path | None], root: Path) -> tuple[str, ...]:
    """The image files of ``index`` that no row names, relative to ``root``: not part of the data set."""
    files = set(index.values()) - named
    return tuple(sorted(_relative(path, root) for path in files))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _natural_order(labels: Sequence[str]) -> tuple[str, ...]:
    """Sorted labels; numerically when all are integers (so ``10`` follows ``9``)."""
    if labels and all(re.fullmatch(r"[+-]?\d+", label) for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))
