"""The built-in synthetic data set: deterministic, ISIC-proportioned, lesion-grouped, fast, learnable."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from sampleweight.data import ISIC_CLASSES, prepare_cache, read_dataset, split_indices, synthetic_records
from sampleweight.data.synthetic import ISIC_CLASS_COUNTS
from sampleweight.errors import ConfigError


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = synthetic_records(300, seed=1), synthetic_records(300, seed=1), synthetic_records(300, seed=2)
    assert a.image_ids == b.image_ids and a.groups == b.groups
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.render(32), b.render(32))
    assert not np.array_equal(a.render(32), c.render(32))
    assert not np.array_equal(a.labels, c.labels)


def test_shapes_dtype_and_any_size() -> None:
    records = synthetic_records(50)
    for size in (8, 33, 64):
        images = records.render(size)
        assert images.shape == (50, size, size, 3) and images.dtype == np.uint8
    assert records.render(16).std() > 10  # not blank


def test_class_proportions_follow_isic() -> None:
    records = synthetic_records(2000)
    assert records.classes == ISIC_CLASSES
    counts = records.class_counts().numpy()
    assert counts.sum() == 2000
    expected = np.array(ISIC_CLASS_COUNTS) / sum(ISIC_CLASS_COUNTS) * 2000
    assert np.all(np.abs(counts - expected) <= 1)
    assert counts.argmax() == ISIC_CLASSES.index("NV")


def test_every_class_has_two_lesions_even_when_tiny() -> None:
    records = synthetic_records(14)
    assert records.class_counts().tolist() == [2] * 7
    groups = np.array(records.groups)
    for c in range(7):
        assert len(set(groups[records.labels == c])) == 2
    with pytest.raises(ConfigError, match="at least 14"):
        synthetic_records(13)


def test_lesions_have_repeat_images_of_one_class() -> None:
    records = synthetic_records(2000)
    groups = np.array(records.groups)
    names, sizes = np.unique(groups, return_counts=True)
    assert 1.2 < len(groups) / len(names) < 1.5  # HAM10000: 10,015 images of 7,470 lesions
    assert sizes.max() <= 4
    for name in names[sizes > 1][:50]:
        assert len(set(records.labels[groups == name])) == 1
    # repeat photos of a lesion look alike: their lesions' colours are closer than those of two lesions of a class
    centre = records.render(24)[:, 8:16, 8:16].astype(np.float32).mean((1, 2))
    pairs = [np.flatnonzero(groups == name)[:2] for name in names[sizes > 1][:200]]
    rng = np.random.default_rng(0)
    others = [rng.choice(np.flatnonzero(records.labels == records.labels[a]), 2, replace=False) for a, _ in pairs]
    repeat_distance = np.mean([np.abs(centre[a] - centre[b]).sum() for a, b in pairs])
    class_distance = np.mean([np.abs(centre[a] - centre[b]).sum() for a, b in others])
    assert repeat_distance < 0.7 * class_distance


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    synthetic_records(500).render(64)
    assert time.perf_counter() - start < 2.0  # about 0.2 s on one core


def test_classes_are_learnable_but_not_trivially() -> None:
    records = read_dataset("synthetic:1500:1")
    images = prepare_cache(records, 32, progress=False).images.transpose(0, 2, 3, 1).astype(np.float32) / 255
    centre = images[:, 8:24, 8:24]
    features = np.concatenate([centre.mean((1, 2)), centre.std((1, 2)), images.mean((1, 2)), images.std((1, 2))], 1)
    train_idx, val_idx = split_indices(records, 0)
    model = LogisticRegression(max_iter=2000, class_weight="balanced").fit(
        features[train_idx], records.labels[train_idx]
    )
    score = balanced_accuracy_score(records.labels[val_idx], model.predict(features[val_idx]))
    assert 0.35 < score < 0.95  # chance is 1/7
