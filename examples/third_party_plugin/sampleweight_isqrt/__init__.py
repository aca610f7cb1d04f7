"""An example third-party plugin: inverse-square-root class-frequency weighting, and a hierarchical model.

``w_c = sqrt(N / N_c)``, normalised so that the mean class weight is 1: a milder class balance than
``cb`` (``N / N_c``), often used for long-tailed data (e.g. Mahajan et al. 2018).

Install it with ``pip install examples/third_party_plugin`` and use it by name:
``sw.create_weighter("isqrt", class_counts=...)`` or ``sampleweight train --weighter isqrt``; the model
``malignancy_tree`` (`sampleweight_isqrt.tree`) with ``sampleweight train --model malignancy_tree``.
"""

from __future__ import annotations

import torch
from torch import Tensor

import sampleweight as sw
from sampleweight_isqrt.tree import MALIGNANCY_TREE, MalignancyTree, malignancy_tree

__all__ = ["MALIGNANCY_TREE", "InverseSqrtFrequency", "MalignancyTree", "malignancy_tree"]


class InverseSqrtFrequency(sw.BaseWeighter):
    """Weight each sample by ``sqrt(N / N_y)``, normalised to a mean class weight of 1.

    Args:
        class_counts: Training-set counts per class [C] (a dataset fact sampleweight passes in).
    """

    def __init__(self, class_counts: Tensor) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64).clamp_min(1)
        weights = (counts.sum() / counts).sqrt()
        self.register_buffer("class_weights", (weights * (weights.numel() / weights.sum())).float())

    def forward(self, batch: sw.WeightingBatch) -> Tensor:
        return self.class_weights.to(batch.losses.device)[batch.targets].to(batch.losses.dtype)


@sw.hookimpl
def register_weighters(register):
    register("isqrt", InverseSqrtFrequency, rebalances=True)


@sw.hookimpl
def register_models(register):
    # What the model is, so that sampleweight treats it as its own hierarchical model: it takes a label tree and
    # returns leaf log-probabilities, its default tree is the malignancy one, a run trains it with the per-level
    # hierarchical loss when its --loss is ce or focal, and for 30 epochs unless told otherwise.
    register(
        "malignancy_tree",
        malignancy_tree,
        hierarchical=True,
        taxonomy={"tree": MALIGNANCY_TREE},
        loss="hierarchical",
        epochs=30,
    )
