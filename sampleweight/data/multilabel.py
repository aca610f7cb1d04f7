"""The multilabel form of a single-label data set: every node of its label tree is a label.

An image is positive for its class and for every node above it in the taxonomy (`sampleweight.taxonomy.Taxonomy`),
so a model with one sigmoid logit per node learns the whole hierarchy at once, the "hierarchical multi-label
classification" framing (Silla & Freitas, Data Mining and Knowledge Discovery 22, 2011, section 4). With ISIC 2018's
tree (the paper's) the 11 labels are, in the tree's breadth-first order::

    melanocytic, non_melanocytic, NV, MEL, benign, malignant, BKL, DF, VASC, BCC, AKIEC

so a HAM10000 nevus is ``melanocytic + NV`` and a basal cell carcinoma ``non_melanocytic + malignant + BCC``. Its
per-label AUCs answer questions the 7 classes do not ask directly: how well the model tells melanocytic lesions
from the rest, or the malignant non-melanocytic ones (BCC, AKIEC) from the benign ones.

As with the binary form (`sampleweight.data.binary`), the split is drawn on the data set's own classes first, then
the labels become multi-hot: a multilabel run validates on the same images as a multiclass run of the same split and
seed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sampleweight.data.dataset import SplitDatasets
from sampleweight.data.records import UNLABELLED, DatasetRecords
from sampleweight.errors import ConfigError
from sampleweight.functional import multi_hot_counts
from sampleweight.taxonomy import Taxonomy

__all__ = ["taxonomy_labels", "taxonomy_multilabel", "taxonomy_records", "taxonomy_split"]


def taxonomy_labels(taxonomy: Taxonomy) -> tuple[str, ...]:
    """The label names of a tree's multilabel form: its nodes but the root, breadth first.

    Example:
        >>> from sampleweight.taxonomy import ISIC2018_TAXONOMY
        >>> taxonomy_labels(ISIC2018_TAXONOMY)[:6]
        ('melanocytic', 'non_melanocytic', 'NV', 'MEL', 'benign', 'malignant')
    """
    return tuple(node for node in taxonomy.nodes if node != taxonomy.root)


def taxonomy_multilabel(labels: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """Class indices [N] as the multi-hot targets [N, L] of `taxonomy_labels`: each class and its ancestors.

    Args:
        labels: Class indices into ``taxonomy.classes`` [N].
        taxonomy: The label tree.

    Returns:
        ``np.int64`` [N, L], 1 on the nodes of each image's path (its class included).

    Raises:
        ConfigError: An unlabelled image (a data set without ground truth has no multilabel form).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if (labels == UNLABELLED).any():
        raise ConfigError("--task multilabel needs labelled images: these images have no ground truth")
    names = taxonomy_labels(taxonomy)
    column = {name: i for i, name in enumerate(names)}
    table = np.zeros((taxonomy.num_classes, len(names)), dtype=np.int64)  # each class's row of labels
    for index, leaf in enumerate(taxonomy.classes):
        node: str | None = leaf
        while node is not None and node != taxonomy.root:
            table[index, column[node]] = 1
            node = taxonomy.parent(node)
    return table[labels]


def taxonomy_records(records: DatasetRecords, taxonomy: Taxonomy) -> DatasetRecords:
    """The records with the multi-hot labels and label names of the tree's multilabel form."""
    return replace(records, labels=taxonomy_multilabel(records.labels, taxonomy), classes=taxonomy_labels(taxonomy))


def taxonomy_split(data: SplitDatasets, taxonomy: Taxonomy) -> SplitDatasets:
    """Both sides of a split drawn on the data set's own classes, relabelled multi-hot (see the module doc).

    Args:
        data: `sampleweight.data.build_datasets` of single-label records.
        taxonomy: The label tree, in the records' class order.

    Returns:
        The same images on each side, labels [N, L], classes `taxonomy_labels`, class counts the ``[2, L]`` table.
    """
    for side in (data.train, data.val):
        side.labels = taxonomy_multilabel(side.labels, taxonomy)
    counts = multi_hot_counts(torch.from_numpy(data.train.labels))
    return replace(data, classes=taxonomy_labels(taxonomy), class_counts=counts)
