"""Multilabel records (labels [N, L]), their split strata and data sets, and the taxonomy's multilabel form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sampleweight.data import build_datasets, read_dataset
from sampleweight.data.multilabel import taxonomy_labels, taxonomy_multilabel, taxonomy_records, taxonomy_split
from sampleweight.data.records import DatasetRecords
from sampleweight.data.splits import split_indices, split_strata
from sampleweight.errors import ConfigError
from sampleweight.taxonomy import ISIC2018_TAXONOMY, Taxonomy


def multilabel_records(n: int = 300, rates=(0.5, 0.2, 0.05, 0.02), seed: int = 0) -> DatasetRecords:
    base = read_dataset(f"synthetic:{n}")
    labels = (np.random.default_rng(seed).random((n, len(rates))) < rates).astype(np.int64)
    names = tuple(f"l{i}" for i in range(len(rates)))
    return DatasetRecords(base.image_ids, labels, base.groups, names, "synthetic", render=base.render)


def test_multilabel_records_count_each_label_with_and_without():
    records = multilabel_records()
    assert records.multilabel and records.labels.shape == (300, 4)
    positives = records.labels.sum(0)
    assert records.class_counts().tolist() == [(300 - positives).tolist(), positives.tolist()]
    some = np.array([3, 7, 11])
    assert records.class_counts(some)[1].tolist() == records.labels[some].sum(0).tolist()
    assert records.subset(some).labels.tolist() == records.labels[some].tolist()
    assert "4 labels (images with each: l0 " in records.describe()
    assert not read_dataset("synthetic:50").multilabel


@pytest.mark.parametrize(
    ("labels", "classes", "message"),
    [
        (np.array([[0, 2], [1, 0]]), ("a", "b"), "must be 0 or 1"),
        (np.array([[0, 1], [1, 0]]), ("a", "b", "c"), "one class name per label column"),
    ],
)
def test_multilabel_records_refuse_bad_labels(labels, classes, message):
    with pytest.raises(ValueError, match=message):
        DatasetRecords(("x", "y"), labels, ("x", "y"), classes, "t", render=lambda s: np.zeros((2, s, s, 3), np.uint8))


def test_split_strata_are_each_images_rarest_label():
    records = multilabel_records(n=400, rates=(0.6, 0.3, 0.1, 0.04), seed=3)
    strata = split_strata(records)
    frequency = records.labels.sum(0)
    for labels, stratum in zip(records.labels, strata, strict=True):  # the rule, image by image
        held = np.flatnonzero(labels)
        if held.size == 0:
            assert stratum == 4
        else:
            assert stratum == held[np.argmin(frequency[held])]  # argmin: the first of tied labels
    single = read_dataset("synthetic:60")
    assert split_strata(single) is single.labels


def test_multilabel_split_keeps_lesions_whole_and_rare_labels_near_the_fraction():
    records = multilabel_records(n=600, rates=(0.5, 0.2, 0.05, 0.03), seed=1)
    train, val = split_indices(records, split=0, seed=0)
    assert len(train) + len(val) == 600 and not set(train) & set(val)
    groups = np.asarray(records.groups)
    assert not set(groups[train]) & set(groups[val])
    share = records.class_counts(val)[1].double() / records.class_counts()[1].double()
    assert ((share - 0.2).abs() < 0.1).all(), share  # every label, the rare ones included, split near 80/20
    again = split_indices(records, split=0, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again, strict=True))


def test_multilabel_datasets_serve_label_vectors_and_the_two_row_counts():
    records = multilabel_records()
    data = build_datasets(records, 0, 0, image_size=32, progress=False, augment="batch")
    assert data.class_counts.tolist() == records.class_counts(data.train_indices).tolist()
    _, label, _ = data.train[5]
    assert label.dtype == torch.int64 and label.tolist() == records.labels[data.train_indices[5]].tolist()
    _, labels, _ = next(iter(DataLoader(data.val, batch_size=7)))
    assert labels.shape == (7, 4) and labels.tolist() == records.labels[data.val_indices[:7]].tolist()
    batch = data.train.__getitems__([9, 2, 4])  # the sorted block read keeps each item's own labels
    assert [item[1].tolist() for item in batch] == [records.labels[data.train_indices[i]].tolist() for i in (9, 2, 4)]


def test_taxonomy_labels_are_each_class_and_its_ancestors():
    names = taxonomy_labels(ISIC2018_TAXONOMY)
    assert names == ("melanocytic", "non_melanocytic", "NV", "MEL", "benign", "malignant",
                     "BKL", "DF", "VASC", "BCC", "AKIEC")  # fmt: skip
    classes = np.random.default_rng(0).integers(0, 7, size=50)
    table = taxonomy_multilabel(classes, ISIC2018_TAXONOMY)
    for label, row in zip(classes, table, strict=True):  # independent: the path's decisions name the nodes
        path = ISIC2018_TAXONOMY.path(int(label))
        expected = {ISIC2018_TAXONOMY.children(node)[choice] for node, choice in path}
        assert {names[i] for i in np.flatnonzero(row)} == expected
    assert table[:, names.index("melanocytic")].tolist() == np.isin(classes, (0, 1)).astype(int).tolist()
    assert (table[:, :2].sum(1) == 1).all()  # melanocytic and non_melanocytic: exactly one


def test_taxonomy_form_of_another_tree_and_unlabelled_images():
    tree = Taxonomy({"x": ["a", "b"], "c": ["d", "e"]}, classes=["e", "a", "d", "b"])
    assert taxonomy_labels(tree) == ("x", "c", "a", "b", "d", "e")
    assert taxonomy_multilabel(np.array([0, 1]), tree).tolist() == [[0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0]]
    with pytest.raises(ConfigError, match="needs labelled images"):
        taxonomy_multilabel(np.array([0, -1]), tree)


def test_taxonomy_split_validates_on_the_images_of_the_multiclass_split():
    records = read_dataset("synthetic:300")
    single = build_datasets(records, 1, 0, image_size=32, progress=False, augment="batch")
    taxonomy = ISIC2018_TAXONOMY.with_classes(records.classes)
    expected_val = single.val_indices.copy()
    data = taxonomy_split(build_datasets(records, 1, 0, image_size=32, progress=False, augment="batch"), taxonomy)
    assert np.array_equal(data.val_indices, expected_val)
    multi = taxonomy_records(records, taxonomy)
    assert data.classes == multi.classes and multi.multilabel
    assert data.class_counts.tolist() == multi.class_counts(data.train_indices).tolist()
    assert data.val.labels.tolist() == multi.labels[data.val_indices].tolist()
