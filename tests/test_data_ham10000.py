"""The real HAM10000 copy (10,015 images at 200x150): counts, the paper's two splits, and the cache.

Skipped when the copy is absent (as on a user's machine). Set SAMPLEWEIGHT_HAM10000 to point elsewhere.
Only metadata is read for the whole set; a 50-image subset is decoded, into a cache under tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sampleweight.data import (
    CachedImageDataset,
    DatasetRecords,
    prepare_cache,
    preprocess_image,
    read_dataset,
    split_indices,
)

HAM10000 = Path(
    os.environ.get("SAMPLEWEIGHT_HAM10000")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "HAM10000"
)
COUNTS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}

pytestmark = pytest.mark.skipif(
    not (HAM10000 / "HAM10000_metadata.csv").is_file(),
    reason=f"real HAM10000 copy not found at {HAM10000} (set SAMPLEWEIGHT_HAM10000 to its folder)",
)


@pytest.fixture(scope="module")
def records() -> DatasetRecords:
    return read_dataset(HAM10000)


@pytest.fixture(scope="module")
def splits(records: DatasetRecords) -> list[tuple[np.ndarray, np.ndarray]]:
    return [split_indices(records, split, seed=0) for split in (0, 1)]


def test_counts_per_class_equal_the_metadata(records: DatasetRecords) -> None:
    assert records.layout == "ham10000" and len(records) == 10015
    counts = dict(zip(records.classes, records.class_counts().tolist(), strict=True))
    assert counts == {dx.upper(): n for dx, n in COUNTS.items()}
    assert len(set(records.groups)) == 7470
    assert all(path.is_file() for path in records.paths[::500])


def test_both_splits_keep_lesions_whole_80_20_every_class_both_sides(records, splits) -> None:
    groups = np.array(records.groups)
    for train_idx, val_idx in splits:
        assert len(train_idx) + len(val_idx) == 10015
        assert not set(groups[train_idx]) & set(groups[val_idx])
        assert abs(len(val_idx) / 10015 - 0.2) < 0.005
        train_counts, val_counts = records.class_counts(train_idx), records.class_counts(val_idx)
        assert (train_counts > 0).all() and (val_counts > 0).all()
        share = val_counts.double() / records.class_counts().double()
        assert ((share - 0.2).abs() < 0.02).all(), share
    assert not np.array_equal(splits[0][1], splits[1][1])


def test_known_duplicates_stay_on_one_side(records, splits) -> None:
    index = {image_id: i for i, image_id in enumerate(records.image_ids)}
    for a, b in [("ISIC_0024366", "ISIC_0029861"), ("ISIC_0024777", "ISIC_0029938"), ("ISIC_0030444", "ISIC_0030973")]:
        for _, val_idx in splits:
            val = set(val_idx.tolist())
            assert (index[a] in val) == (index[b] in val)


def test_splits_are_identical_when_rebuilt(splits) -> None:
    rebuilt = [split_indices(read_dataset(HAM10000), split, seed=0) for split in (0, 1)]
    for (a_train, a_val), (b_train, b_val) in zip(splits, rebuilt, strict=True):
        assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)


def test_cache_of_a_real_subset_is_pixel_exact_and_invalidated(records, tmp_path: Path) -> None:
    subset = records.subset(np.arange(0, 10015, 200))  # 51 real images
    cached = prepare_cache(subset, 64, cache_dir=tmp_path, progress=False)
    assert cached.images.shape == (51, 3, 64, 64)
    for i in (0, 17, 50):
        assert np.array_equal(cached.images[i], preprocess_image(subset.paths[i], 64).transpose(2, 0, 1))
    assert prepare_cache(subset, 64, cache_dir=tmp_path, progress=False).reused
    other = prepare_cache(subset, 64, cache_dir=tmp_path, minkowski_p=1.0, progress=False)
    assert not other.reused and other.path != cached.path
    assert not np.array_equal(other.images, cached.images)
    dataset = CachedImageDataset(cached.images, subset.labels)
    image, label, _ = dataset[17]
    assert image.shape == (3, 64, 64) and label == subset.labels[17]
