"""The multilabel layout: a labels.csv with a column image and one 0/1 column per label, read into records [N, L]."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.data import LAYOUTS, DataInventory, build_datasets, prepare, read_dataset
from sampleweight.errors import ConfigError, DataError

LABELS = ("MEL", "NV", "BCC")
ROWS = [  # image (as the CSV names it), labels, lesion
    ("img0", (1, 0, 0), "L0"),
    ("img1.png", (0, 1, 0), "L0"),
    ("images/img2.png", (1, 0, 1), ""),
    ("img3", (0, 0, 0), "L3"),
    ("img4.jpg", (0, 1, 1), "L4"),
    ("img5", (1, 1, 0), "L4"),
]


def write_image(path: Path, seed: int = 0) -> Path:
    """A tiny PNG or JPEG (by the suffix) of random pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_multilabel(
    root: Path,
    rows=ROWS,
    labels=LABELS,
    group: str | None = "lesion_id",
    images_in: str = "images",
    extra_header: str = "",
) -> Path:
    """A multilabel data set: labels.csv with image, the label columns and the group; images in ``images_in``."""
    for i, (image, _, _) in enumerate(rows):
        name = Path(image).name
        write_image(root / images_in / (name if Path(name).suffix else f"{name}.{'png' if i % 2 else 'jpg'}"), i)
    header = ["image", *labels, *([group] if group else [])]
    lines = [",".join(header) + extra_header]
    for image, values, lesion in rows:
        lines.append(",".join([image, *map(str, values), *([lesion] if group else [])]))
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_the_layout_is_detected_and_read_as_multilabel_records(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path / "data")
    records = read_dataset(root)
    assert records.layout == "multilabel" and "multilabel" in LAYOUTS
    assert records.multilabel and records.labelled
    assert records.classes == LABELS
    assert records.labels.dtype == np.int64 and records.labels.tolist() == [list(v) for _, v, _ in ROWS]
    assert records.image_ids == tuple(image for image, _, _ in ROWS)
    assert records.groups == ("L0", "L0", "images/img2.png", "L3", "L4", "L4")  # no lesion: the image is its group
    assert [p.name for p in records.paths] == ["img0.jpg", "img1.png", "img2.png", "img3.png", "img4.jpg", "img5.png"]
    assert records.class_counts().tolist() == [[3, 3, 4], [3, 3, 2]]  # [2, L]: without, with each label
    assert "3 labels (images with each: MEL 3, NV 3, BCC 2)" in records.describe()
    assert records.unlabelled == ()


def test_images_beside_the_file_patient_groups_tabs_and_values_written_as_floats(tmp_path: Path) -> None:
    rows = [(f"p{i}", ((i + 1) % 2, i % 2), f"patient{i // 3}") for i in range(6)]
    root = make_multilabel(tmp_path, rows=rows, labels=("a", "b"), group="patient_id", images_in=".")
    text = (root / "labels.csv").read_text().replace(",0,", ",0.0,").replace(",1,", ",1.0,")
    (root / "labels.csv").write_text(text.replace(",", "\t"))
    records = read_dataset(root)
    assert records.layout == "multilabel" and records.classes == ("a", "b")
    assert records.labels[:, 0].tolist() == [1, 0, 1, 0, 1, 0]
    assert records.groups == ("patient0",) * 3 + ("patient1",) * 3


def test_no_group_column_makes_each_image_its_own_group_and_any_case_of_the_reserved_names(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path, group=None)
    (root / "labels.csv").write_text((root / "labels.csv").read_text().replace("image,", "Image,", 1))
    records = read_dataset(root)
    assert records.groups == records.image_ids


@pytest.mark.parametrize("how", ["layout=", "prefix", "file"])
def test_the_layout_can_be_named_or_the_file_given(tmp_path: Path, how: str) -> None:
    root = make_multilabel(tmp_path / "data")
    if how == "layout=":
        records = read_dataset(root, layout="multilabel")
    elif how == "prefix":
        records = read_dataset(f"multilabel:{root}")
    else:
        records = read_dataset(root / "labels.csv")
    assert records.layout == "multilabel" and records.labels.shape == (6, 3)
    if how == "prefix":
        assert records.source == f"multilabel:{root}"  # the data as given, as data.json records it


def test_naming_the_layout_reads_a_label_column_named_label(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path, labels=("label", "other"), rows=[(r[0], r[1][:2], r[2]) for r in ROWS])
    detected = read_dataset(root)  # a column 'label' makes it the single-label layout
    assert detected.layout == "csv" and detected.classes == ("0", "1")
    records = read_dataset(f"multilabel:{root}")
    assert records.classes == ("label", "other") and records.multilabel
    with pytest.raises(ConfigError, match="names the layout 'multilabel', but layout='csv'"):
        read_dataset(f"multilabel:{root}", layout="csv")


def test_a_single_label_labels_csv_is_still_the_csv_layout(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / f"x{i}.png", i)
    (tmp_path / "labels.csv").write_text("image,label\nx0,a\nx1,b\nx2,a\nx3,b\n")
    records = read_dataset(tmp_path)
    assert records.layout == "csv" and not records.multilabel and records.labels.tolist() == [0, 1, 0, 1]


def test_classes_reorder_the_label_columns_and_must_be_the_files(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path)
    records = read_dataset(root, classes=["BCC", "MEL", "NV"])
    assert records.classes == ("BCC", "MEL", "NV")
    assert records.labels.tolist() == [[v[2], v[0], v[1]] for _, v, _ in ROWS]
    with pytest.raises(DataError, match="has the label columns MEL, NV, BCC, but the labels asked for are MEL, NV"):
        read_dataset(root, classes=["MEL", "NV"])


# -- bad input: one clear error each -------------------------------------------------------------------------------


def _error(root: Path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_dataset(root, **kwargs)
    return str(caught.value)


def test_a_value_other_than_0_or_1_names_the_row_and_column(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path)
    lines = (root / "labels.csv").read_text().splitlines()
    lines[2] = "img1.png,0,2,L0"
    lines[4] = "img3,yes,0,,L3"  # MEL 'yes', BCC empty
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    message = _error(root)
    assert "2 bad row(s)" in message and "value(s) other than 0/1 in a label column" in message
    assert "line 3 NV='2'" in message and "line 5 MEL='yes'" in message and "line 5 BCC=''" in message
    assert "--skip-bad" in message  # the fix
    kept = read_dataset(root, skip_bad=True)
    assert len(kept) == 4 and any("line 3 NV='2'" in line for line in kept.skipped)


def test_a_label_name_holding_a_semicolon_is_refused(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path, labels=("MEL", "NV;BKL", "BCC"))
    assert "label name(s) in" in _error(root) and "NV;BKL" in _error(root) and "rename" in _error(root)


def test_a_file_without_label_columns_is_refused(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path, labels=(), rows=[(r[0], (), r[2]) for r in ROWS])
    message = _error(root)
    assert "has no label column" in message and "one 0/1 column per label" in message


@pytest.mark.parametrize("labels", [("MEL", "NV", "MEL"), ("MEL", "NV", "mel")])
def test_duplicate_label_columns_are_refused(tmp_path: Path, labels) -> None:
    root = make_multilabel(tmp_path, labels=labels)
    message = _error(root)
    assert "duplicate label column(s)" in message and f"MEL and {labels[2]}" in message


def test_a_label_column_without_a_name_is_refused(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path, labels=("MEL", "", "BCC"))
    assert "a label column without a name" in _error(root)


def test_a_label_no_image_has_is_refused_unless_empty_classes_are_allowed(tmp_path: Path) -> None:
    rows = [(image, (v[0], 0, v[2]), lesion) for image, v, lesion in ROWS]
    root = make_multilabel(tmp_path, rows=rows)
    message = _error(root)
    assert "label(s) with no positive image" in message and ": NV (" in message and "MEL 3, NV 0, BCC 2" in message
    assert read_dataset(root, allow_empty_classes=True).class_counts()[1].tolist() == [3, 0, 2]


def test_missing_images_and_duplicate_ids_are_named(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path)
    (root / "images" / "img3.png").unlink()
    with (root / "labels.csv").open("a") as handle:
        handle.write("img0,0,1,0,L0\n")
    message = _error(root)
    assert "missing image(s)" in message and "img3" in message
    assert "duplicate image id(s)" in message and "img0 (lines 2 and 8)" in message
    kept = read_dataset(root, skip_bad=True)
    assert len(kept) == 5 and kept.labels[0].tolist() == [1, 0, 0]  # the first row of img0 is kept


def test_image_files_no_row_names_are_recorded(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path)
    write_image(root / "images" / "stray.png")
    assert read_dataset(root).unlabelled == ("images/stray.png",)


def test_a_labels_csv_without_an_image_column_still_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,MEL,NV\nx,1,0\n")
    assert "lacks column(s) image, label" in _error(tmp_path)
    assert "lacks the column image" in _error(tmp_path, layout="multilabel")


# -- what else reads labels: data sets, data.json, prepare ---------------------------------------------------------


def test_data_sets_serve_label_vectors(tmp_path: Path) -> None:
    rows = [(f"i{i}", (int(i % 3 == 0), int(i % 2 == 0)), f"g{i}") for i in range(20)]
    records = read_dataset(make_multilabel(tmp_path, rows=rows, labels=("x", "y")))
    data = build_datasets(records, split=0, seed=0, image_size=16, cache_dir=tmp_path / "cache", progress=False)
    _image, label, index = data.train[0]
    assert label.dtype == torch.int64 and label.tolist() == records.labels[int(index)].tolist()
    assert data.class_counts.tolist() == records.class_counts(data.train_indices).tolist()


def test_data_json_counts_the_images_with_each_label_per_side(tmp_path: Path) -> None:
    records = read_dataset(make_multilabel(tmp_path))
    sides = {"train": [0, 1, 2, 3], "validation": [4, 5]}
    inventory = DataInventory.of_sides(records, sides)
    data = inventory.to_dict()
    assert data["multilabel"] is True and data["classes"] == list(LABELS)
    assert data["class_counts"] == {"train": {"MEL": 2, "NV": 1, "BCC": 1}, "validation": {"MEL": 1, "NV": 2, "BCC": 1}}
    assert data["images"] == {"train": 4, "validation": 2}
    assert data["classes_without_images"] == {"train": [], "validation": []}
    assert data["labels_without_negatives"] == {"train": [], "validation": ["NV"]}
    assert data["notes"] == ["every validation image has NV: AUC, pAUC and AP are means over the remaining 2 label(s)"]
    json.dumps(data)
    only = DataInventory.of_sides(records, {"train": [1, 4], "validation": [0, 3]}).notes()
    assert only == [
        "no training images with MEL: the model never sees these labels",
        "every training image has NV: the model never sees them absent",
        "no validation images with NV, BCC: AUC, pAUC and AP are means over the remaining 1 label(s)",
    ]


def test_data_json_of_single_label_records_is_unchanged() -> None:
    records = read_dataset("synthetic:40")
    data = DataInventory.of_sides(records, {"train": range(30), "validation": range(30, 40)}).to_dict()
    assert list(data) == [
        "source", "layout", "classes", "labelled", "class_counts", "images", "classes_without_images", "skipped",
        "unlabelled", "merged_labels", "notes",
    ]  # fmt: skip
    assert data["class_counts"]["train"] == dict(
        zip(records.classes, records.class_counts(np.arange(30)).tolist(), strict=True)
    )


def test_prepare_summarises_a_multilabel_set(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_multilabel(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="sampleweight.data.layouts"):
        summary = prepare(str(root), 16, str(tmp_path / "cache"), progress=False)
    assert "multilabel at" in caplog.text
    assert summary.layout == "multilabel" and summary.multilabel and summary.classes == LABELS
    assert summary.class_counts == (3, 3, 2)  # images with each label
    assert json.loads(json.dumps(summary.to_dict()))["class_counts"] == [3, 3, 2]


def test_the_command_line_names_the_layout_too(tmp_path: Path) -> None:
    root = make_multilabel(tmp_path / "data")
    args = ["prepare", "--data", f"multilabel:{root}", "--image-size", "16", "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["layout"] == "multilabel" and summary["multilabel"] is True and summary["class_counts"] == [3, 3, 2]
    (root / "labels.csv").write_text("image,MEL,NV\nimg0,1,0\nimg1.png,0,3\n")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "line 3 NV='3'" in result.output and "Traceback" not in result.output
