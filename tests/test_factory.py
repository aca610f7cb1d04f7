"""Building plugins by name: which facts reach a factory, who is blamed when it fails, where warnings point."""

from __future__ import annotations

import types

import pytest
import torch

import sampleweight as sw
from sampleweight import plugins

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


# -- warnings point at the user's line ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cb", "es", "drw"])
def test_a_weighters_warning_points_at_the_users_line(name: str) -> None:
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.create_weighter(name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.WeightedLoss("ce", name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__
