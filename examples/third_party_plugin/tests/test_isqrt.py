"""The plugin's own tests: sampleweight's contract checks, then what is particular to this weighter."""

from __future__ import annotations

import sampleweight_isqrt
import torch
from sampleweight_isqrt import InverseSqrtFrequency

import sampleweight as sw
from sampleweight import plugins
from sampleweight.testing import check_weighter


def test_isqrt_keeps_the_weighter_contract() -> None:
    check_weighter(InverseSqrtFrequency)  # small default facts: 4 classes, 5 epochs, batches of 8
    check_weighter(InverseSqrtFrequency, class_counts=[6705, 1113, 1099, 514, 327, 142, 115], batch_size=20)
    check_weighter(InverseSqrtFrequency, class_counts=[90, 0, 10])  # a class with no training samples


def test_isqrt_weights_classes_by_the_inverse_square_root_of_their_frequency() -> None:
    weighter = InverseSqrtFrequency(torch.tensor([900, 100]))
    weights = weighter(sw.WeightingBatch(torch.ones(2), torch.tensor([0, 1])))
    assert weights[1] / weights[0] == torch.tensor(3.0) and weights.mean() == torch.tensor(1.0)


def test_isqrt_loads_beside_the_builtins_without_a_clash() -> None:
    registry = plugins.load_plugins(
        entry_points=False, builtins=True, modules=[sampleweight_isqrt], register_timm=False
    )
    assert "isqrt" in sw.list_weighters(registry) and "es" in sw.list_weighters(registry)
    assert not any(info.error or info.clashes for info in registry.plugins)
