"""Building plugins by name: which facts reach a factory, who is blamed when it fails, where warnings point."""

from __future__ import annotations

import types

import pytest
import torch

import sampleweight as sw
from sampleweight import plugins
from sampleweight.weighting import WeightingBatch

TARGETS = torch.tensor([0, 0, 0, 1, 1, 2])


def registry_with(**factories) -> plugins.Registry:
    """A registry of the built-ins plus one test plugin, ``weighters={name: factory}``, ``samplers=...``, ..."""
    module = types.ModuleType("sw_test_factories")
    for kind, table in factories.items():

        def hook(register, table=table):
            for name, factory in table.items():
                register(name, factory)

        hook.__name__ = f"register_{kind}"
        setattr(module, hook.__name__, sw.hookimpl(hook))
    return plugins.load_plugins(entry_points=False, builtins=True, modules=[module], register_timm=False)


# -- a factory taking **kwargs gets the facts it names ------------------------------------------------------


class KeywordWeighter(sw.BaseWeighter):
    def __init__(self, class_counts, num_epochs=None, **options) -> None:
        super().__init__()
        self.class_counts, self.num_epochs, self.options = class_counts, num_epochs, options

    def forward(self, batch: WeightingBatch) -> torch.Tensor:
        return torch.ones_like(batch.losses)


class KeywordSampler(sw.BaseSampler):
    def __init__(self, targets, seed=0, **options) -> None:
        super().__init__(len(targets), seed)
        self.options = options

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        return torch.arange(self.num_samples)


def test_a_keyword_arguments_weighter_factory_gets_the_facts_it_names_and_the_options() -> None:
    registry = registry_with(weighters={"keyed": KeywordWeighter})
    weighter = sw.create_weighter(
        "keyed", registry=registry, class_counts=[3, 1], num_epochs=5, batch_size=4, strength=2
    )
    assert weighter.class_counts.tolist() == [3, 1] and weighter.num_epochs == 5
    assert weighter.options == {"strength": 2}  # batch_size is a fact it does not name: not passed


def test_a_keyword_arguments_sampler_factory_gets_the_facts_it_names_and_the_options() -> None:
    registry = registry_with(samplers={"keyed": KeywordSampler})
    sampler = sw.create_sampler("keyed", registry=registry, targets=TARGETS, seed=3, num_epochs=4, flavour="plain")
    assert (sampler.sampler.seed, len(sampler), sampler.sampler.options) == (3, 6, {"flavour": "plain"})


# -- warnings point at the user's line ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cb", "es", "drw"])
def test_a_weighters_warning_points_at_the_users_line(name: str) -> None:
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.create_weighter(name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.WeightedLoss("ce", name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__
