"""Reading each data layout, auto-detection, and one clear error per kind of bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampleweight.data import HAM10000_DX, ISIC_CLASSES, UNLABELLED, DataInventory, DatasetRecords, read_dataset
from sampleweight.errors import ConfigError, DataError

DX = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]


def write_jpeg(path: Path, seed: int = 0, size: tuple[int, int] = (20, 15)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def make_ham(root: Path, rows: list[tuple[str, str, str]] | None = None, split_parts: bool = True) -> Path:
    """A HAM10000 release: metadata + images in part_1/part_2. rows: (lesion_id, image_id, dx)."""
    if rows is None:
        rows = [(f"HAM_{i // 2:07d}", f"ISIC_{i:07d}", DX[i % 7]) for i in range(28)]
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    lines += [f"{lesion},{image},{dx},histo,50.0,male,back" for lesion, image, dx in rows]
    root.mkdir(parents=True, exist_ok=True)
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    for i, (_, image, _) in enumerate(rows):
        folder = f"HAM10000_images_part_{1 + i % 2}" if split_parts else "HAM10000_images"
        write_jpeg(root / folder / f"{image}.jpg", seed=i)
    return root


def one_hot_csv(rows: list[tuple[str, list[str]]]) -> str:
    return "\n".join(["image," + ",".join(ISIC_CLASSES)] + [f"{image}," + ",".join(v) for image, v in rows]) + "\n"


def make_isic(
    root: Path, subset: str = "Training", n: int = 21, groupings: bool = True, in_folder: bool = False
) -> Path:
    images = root / f"ISIC2018_Task3_{subset}_Input"
    rows = []
    for i in range(n):
        image = f"ISIC_{subset[0]}{i:06d}"
        write_jpeg(images / f"{image}.jpg", seed=i)
        rows.append((image, ["1.0" if c == i % 7 else "0.0" for c in range(7)]))
    (images / "ATTRIBUTION.txt").write_text("not an image")
    stem = f"ISIC2018_Task3_{subset}_GroundTruth"
    truth = root / stem / f"{stem}.csv" if in_folder else root / f"{stem}.csv"
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(one_hot_csv(rows))
    if groupings:
        lines = ["image,lesion_id,diagnosis_confirm_type"]
        lines += [f"{image},HAM_{i // 3:07d},histopathology" for i, (image, _) in enumerate(rows)]
        (root / f"ISIC2018_Task3_{subset}_LesionGroupings.csv").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------------------------- layouts


def test_ham10000_layout_maps_dx_onto_isic_class_order(tmp_path: Path) -> None:
    root = make_ham(tmp_path / "ham")
    records = read_dataset(root)
    assert records.layout == "ham10000"
    assert records.classes == ISIC_CLASSES == ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    assert len(records) == 28
    assert records.labels.dtype == np.int64
    assert [records.labels[i] for i in range(7)] == [HAM10000_DX[d] for d in DX]
    assert records.groups[:3] == ("HAM_0000000", "HAM_0000000", "HAM_0000001")
    assert records.paths[0].parent.name == "HAM10000_images_part_1"
    assert records.paths[1].parent.name == "HAM10000_images_part_2"
    assert records.class_counts().tolist() == [4] * 7
    assert "ham10000" in records.describe() and "14 lesions" in records.describe()


def test_ham10000_single_image_folder_and_metadata_file_as_source(tmp_path: Path) -> None:
    root = make_ham(tmp_path / "ham", split_parts=False)
    assert len(read_dataset(root)) == 28
    assert read_dataset(root / "HAM10000_metadata.csv").layout == "ham10000"


@pytest.mark.parametrize("in_folder", [False, True], ids=["csv-at-top", "csv-in-zip-folder"])
def test_isic2018_training_layout_with_lesion_groupings(tmp_path: Path, in_folder: bool) -> None:
    root = make_isic(tmp_path / "isic", in_folder=in_folder)
    records = read_dataset(root)
    assert records.layout == "isic2018"
    assert records.classes == ISIC_CLASSES
    assert records.labels.tolist() == [i % 7 for i in range(21)]
    assert records.groups[:4] == ("HAM_0000000",) * 3 + ("HAM_0000001",)
    assert len(records.paths) == 21  # ATTRIBUTION.txt is not an image


def test_isic2018_without_groupings_uses_image_ids_as_groups_and_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="no ISIC2018_Task3_Training_LesionGroupings.csv: each image is treated"):
        records = read_dataset(make_isic(tmp_path, groupings=False))
    assert records.groups == records.image_ids


def test_isic2018_validation_and_test_subsets(tmp_path: Path) -> None:
    make_isic(tmp_path, "Validation", n=14, groupings=False, in_folder=True)
    make_isic(tmp_path, "Test", n=14, groupings=False)
    with pytest.raises(DataError, match="several ISIC 2018 subsets"):
        read_dataset(tmp_path)
    assert read_dataset(tmp_path, subset="validation").image_ids[0] == "ISIC_V000000"
    assert read_dataset(tmp_path / "ISIC2018_Task3_Test_Input").image_ids[0] == "ISIC_T000000"
    truth = tmp_path / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv"
    assert read_dataset(truth).image_ids[0] == "ISIC_V000000"
    with pytest.raises(ConfigError, match="valid: training, validation, test"):
        read_dataset(tmp_path, subset="holdout")
    with pytest.raises(DataError, match="no ISIC 2018 Training ground truth"):
        read_dataset(tmp_path, subset="training")


def test_generic_csv_layout_sorted_classes_groups_and_paths(tmp_path: Path) -> None:
    for i in range(6):
        write_jpeg(tmp_path / "images" / f"img{i}.png", seed=i)
    (tmp_path / "labels.csv").write_text(
        "image,label,group\nimg0,cat,a\nimg1,dog,a\nimages/img2.png,cat,\nimg3,bird,b\nimg4.png,dog,c\nimg5,bird,\n"
    )
    records = read_dataset(tmp_path)
    assert records.layout == "csv"
    assert records.classes == ("bird", "cat", "dog")
    assert records.labels.tolist() == [1, 2, 1, 0, 2, 0]
    assert records.groups == ("a", "a", "images/img2.png", "b", "c", "img5")
    fixed = read_dataset(tmp_path, classes=["dog", "cat", "bird"])
    assert fixed.labels.tolist() == [1, 0, 1, 2, 0, 2]


def test_generic_csv_integer_labels_sort_numerically(tmp_path: Path) -> None:
    lines = ["image,label"]
    for i, label in enumerate([2, 10, 1, 2, 10, 1]):
        write_jpeg(tmp_path / f"x{i}.jpg", seed=i)
        lines.append(f"x{i}.jpg,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines))
    assert read_dataset(tmp_path).classes == ("1", "2", "10")


def test_synthetic_specs() -> None:
    assert len(read_dataset("synthetic")) == 2000
    records = read_dataset("synthetic:120")
    assert (records.layout, len(records), records.paths, records.root) == ("synthetic", 120, None, None)
    assert read_dataset("Synthetic:120:3").image_ids == records.image_ids
    assert not np.array_equal(read_dataset("synthetic:120:3").labels, records.labels)
    for bad in ("synthetic:many", "synthetic:1:2:3", "synthetic:5"):
        with pytest.raises(ConfigError):
            read_dataset(bad)


def test_detection_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sampleweight.data"):
        read_dataset(make_ham(tmp_path))
    assert "ham10000 at" in caplog.text


def test_unrecognised_folder_lists_what_was_looked_for(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "a.jpg")
    with pytest.raises(DataError) as error:
        read_dataset(tmp_path)
    message = str(error.value)
    for expected in ("ISIC2018_Task3_Training_GroundTruth.csv", "HAM10000_metadata.csv", "labels.csv", "synthetic"):
        assert expected in message
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="valid layouts"):
        read_dataset(tmp_path, layout="imagenet")


def test_subset_keeps_classes_and_renders_selected_images() -> None:
    records = read_dataset("synthetic:60")
    part = records.subset([5, 2, 40])
    assert part.image_ids == (records.image_ids[5], records.image_ids[2], records.image_ids[40])
    assert part.classes == records.classes
    assert np.array_equal(part.render(16), records.render(16)[[5, 2, 40]])
    assert records.class_counts([5, 2, 40]).sum().item() == 3


# ----------------------------------------------------------------------------------------------- bad input


def test_missing_images_name_the_files_and_count(tmp_path: Path) -> None:
    root = make_ham(tmp_path)
    for i in range(0, 14, 2):  # 7 images of part 1
        (root / "HAM10000_images_part_1" / f"ISIC_{i:07d}.jpg").unlink()
    with pytest.raises(DataError) as error:
        read_dataset(root)
    message = str(error.value)
    assert "7 missing image(s)" in message
    assert "ISIC_0000000, ISIC_0000002" in message and "and 2 more" in message
    assert "skip_bad=True" in message


def test_unknown_dx_is_an_error_naming_the_line(tmp_path: Path) -> None:
    rows = [(f"HAM_{i}", f"ISIC_{i:07d}", DX[i % 7]) for i in range(14)]
    rows[3] = ("HAM_3", "ISIC_0000003", "melanoma")
    with pytest.raises(DataError, match=r"unknown dx \(valid: akiec, bcc, .*line 5 'melanoma'"):
        read_dataset(make_ham(tmp_path, rows))


@pytest.mark.parametrize(
    "values",
    [["0"] * 7, ["1", "1", "0", "0", "0", "0", "0"], ["0.5", "0.5", "0", "0", "0", "0", "0"], ["x"] * 7],
    ids=["no-one", "two-ones", "fractions", "not-numbers"],
)
def test_bad_one_hot_row_is_an_error(tmp_path: Path, values: list[str]) -> None:
    root = make_isic(tmp_path, n=14)
    truth = root / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = truth.read_text().splitlines()
    lines[2] = "ISIC_T000001," + ",".join(values)
    truth.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"1 one-hot row\(s\) without exactly one 1.*line 3 ISIC_T000001"):
        read_dataset(root)


def test_duplicate_image_ids_are_an_error(tmp_path: Path) -> None:
    rows = [(f"HAM_{i}", f"ISIC_{i:07d}", DX[i % 7]) for i in range(14)]
    rows.append(("HAM_99", "ISIC_0000004", "nv"))
    with pytest.raises(DataError, match=r"duplicate image id\(s\): ISIC_0000004 \(lines 6 and 16\)"):
        read_dataset(make_ham(tmp_path, rows))


@pytest.mark.parametrize("content", ["", "lesion_id,image_id,dx\n", "\n\n"], ids=["empty", "header-only", "blank"])
def test_empty_csv_is_an_error(tmp_path: Path, content: str) -> None:
    make_ham(tmp_path)
    (tmp_path / "HAM10000_metadata.csv").write_text(content)
    with pytest.raises(DataError, match="is empty"):
        read_dataset(tmp_path)


def test_missing_column_is_an_error(tmp_path: Path) -> None:
    make_ham(tmp_path)
    (tmp_path / "HAM10000_metadata.csv").write_text("lesion,image_id,dx\nHAM_1,ISIC_0000000,mel\n")
    with pytest.raises(DataError, match="lacks column"):
        read_dataset(tmp_path)


def test_class_with_no_images_is_an_error(tmp_path: Path) -> None:
    rows = [(f"HAM_{i}", f"ISIC_{i:07d}", DX[i % 6]) for i in range(12)]  # no vasc
    with pytest.raises(DataError, match=r"class\(es\) with no images .*: VASC"):
        read_dataset(make_ham(tmp_path, rows))


def test_generic_csv_listed_class_without_images_is_an_error(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text("image,label\na.jpg,cat\n")
    assert read_dataset(tmp_path).classes == ("cat",)
    with pytest.raises(DataError, match=r"no images .*: dog"):
        read_dataset(tmp_path, classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"unknown label\(s\) \(valid: bird\)"):
        read_dataset(tmp_path, classes=["bird"])


def test_skip_bad_leaves_out_and_reports_every_bad_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [(f"HAM_{i}", f"ISIC_{i:07d}", DX[i % 7]) for i in range(21)]
    rows[3] = ("HAM_3", "ISIC_0000003", "unknown")
    rows.append(("HAM_99", "ISIC_0000004", "nv"))
    root = make_ham(tmp_path, rows)
    (root / "HAM10000_images_part_1" / "ISIC_0000000.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="sampleweight.data"):
        records = read_dataset(root, skip_bad=True)
    assert len(records) == 19
    assert "ISIC_0000000" not in records.image_ids and "ISIC_0000003" not in records.image_ids
    assert records.image_ids.count("ISIC_0000004") == 1
    assert len(records.skipped) == 3
    assert "skipped 3 row(s)" in caplog.text


# ------------------------------------------------------------------------------- images without labels


def test_a_folder_of_images_reads_unlabelled_only_when_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "ISIC2018_Task3_Test_Input"
    for k in (3, 1, 2):
        write_jpeg(folder / f"ISIC_{k:07d}.jpg", seed=k)
    (folder / "LICENSE.txt").write_text("not an image")
    with pytest.raises(DataError, match="holds images but no labels to train on") as error:
        read_dataset(folder)
    assert "labels.csv" in str(error.value) and "HAM10000_metadata.csv" in str(error.value)
    records = read_dataset(folder, allow_unlabelled=True)
    assert records.layout == "images" and not records.labelled and records.classes == ISIC_CLASSES
    assert records.image_ids == ("ISIC_0000001", "ISIC_0000002", "ISIC_0000003")  # file stems, sorted
    assert records.labels.tolist() == [UNLABELLED] * 3 and records.class_counts().tolist() == [0] * 7
    assert records.paths == tuple(folder / f"ISIC_{k:07d}.jpg" for k in (1, 2, 3))
    assert "3 images without labels" in records.describe()
    # the ISIC release folder holding only the test images (no ground truth): its subfolder's images
    assert read_dataset(tmp_path, allow_unlabelled=True).image_ids == records.image_ids
    assert read_dataset(folder, allow_unlabelled=True, classes=["a", "b"]).classes == ("a", "b")


def test_labelled_data_is_read_with_labels_even_when_unlabelled_is_allowed(tmp_path: Path) -> None:
    root = make_ham(tmp_path)
    assert read_dataset(root, allow_unlabelled=True).labelled
    forced = read_dataset(root, layout="images")
    assert not forced.labelled and len(forced) == 28


def test_unlabelled_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in .*empty: it has no image files") as error:
        read_dataset(tmp_path / "empty", allow_unlabelled=True)
    assert "\n" not in str(error.value)
    write_jpeg(tmp_path / "twice" / "a.jpg")
    write_jpeg(tmp_path / "twice" / "sub" / "a.png")
    with pytest.raises(DataError, match=r"same name.*a \(a\.jpg and sub/a\.png\)"):
        read_dataset(tmp_path / "twice", allow_unlabelled=True)
    kept = read_dataset(tmp_path / "twice", allow_unlabelled=True, skip_bad=True)
    assert kept.image_ids == ("a",) and kept.paths == (tmp_path / "twice" / "a.jpg",) and len(kept.skipped) == 1


def test_unlabelled_records_refuse_labels_and_labelled_ones_need_valid_labels() -> None:
    with pytest.raises(ValueError, match="unlabelled records"):
        DatasetRecords(("a",), np.array([0]), ("a",), ISIC_CLASSES, "images", paths=(Path("a.jpg"),), labelled=False)
    with pytest.raises(ValueError, match="index into classes"):
        DatasetRecords(("a",), np.array([UNLABELLED]), ("a",), ISIC_CLASSES, "csv", paths=(Path("a.jpg"),))


def test_the_inventory_of_unlabelled_images_counts_images_not_classes(tmp_path: Path) -> None:
    for k in range(4):
        write_jpeg(tmp_path / f"x{k}.jpg", seed=k)
    records = read_dataset(tmp_path, allow_unlabelled=True)
    inventory = DataInventory.of_sides(records, {"evaluated": [0, 1, 3]})
    data = inventory.to_dict()
    assert data["labelled"] is False and data["class_counts"] == {"evaluated": None}
    assert data["images"] == {"evaluated": 3} and data["classes_without_images"] == {"evaluated": None}
    assert inventory.notes() == ["no ground truth for the images (3 evaluated): no metrics computed, only their scores"]
    labelled = DataInventory.of_sides(read_dataset("synthetic:40"), {"train": range(40)}).to_dict()
    assert labelled["labelled"] is True and labelled["images"] == {"train": 40}
