"""An example third-party plugin: inverse-square-root class-frequency weighting.

``w_c = sqrt(N / N_c)``, normalised so that the mean class weight is 1: a milder class balance than
``cb`` (``N / N_c``), often used for long-tailed data (e.g. Mahajan et al. 2018).

Install it with ``pip install examples/third_party_plugin`` and use it by name:
``sw.create_weighter("isqrt", class_counts=...)`` or ``sampleweight train --weighter isqrt``.
"""

from __future__ import annotations

import torch
from torch import Tensor

import sampleweight as sw


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
    register("isqrt", InverseSqrtFrequency)
