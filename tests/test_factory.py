"""Building plugins by name: which facts reach a factory, who is blamed when it fails, where warnings point."""

from __future__ import annotations

import types
from typing import Literal

import pytest
import torch
import typer
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight import plugins
from sampleweight.cli import user_errors
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


# -- a failing factory: the user's mistake or the plugin's bug ------------------------------------------------


def strict_weighter(class_counts, strength: float = 1.0) -> sw.Weighter:
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    return KeywordWeighter(class_counts)


def buggy_weighter(class_counts, strength: float = 1.0) -> sw.Weighter:
    return KeywordWeighter(class_counts.no_such_method())


def buggy_typed_weighter(class_counts) -> sw.Weighter:
    return KeywordWeighter(len(class_counts) + "1")  # a TypeError inside the factory's body


def forwarding_weighter(class_counts, **options) -> sw.Weighter:
    return strict_weighter(class_counts, **options)


def test_an_option_value_the_factory_rejects_is_the_users_config_error() -> None:
    registry = registry_with(weighters={"strict": strict_weighter})
    with pytest.raises(sw.ConfigError, match=r"weighter 'strict': strength must be >= 0, got -1"):
        sw.create_weighter("strict", registry=registry, class_counts=[3, 1], strength=-1)


def test_an_option_the_factory_does_not_take_is_the_users_config_error() -> None:
    registry = registry_with(weighters={"strict": strict_weighter, "forwarding": forwarding_weighter})
    with pytest.raises(sw.ConfigError, match=r"does not accept option\(s\) power"):
        sw.create_weighter("strict", registry=registry, class_counts=[3, 1], power=2)
    # a factory taking **options passes it on: the TypeError names the user's option, so it is still theirs
    with pytest.raises(sw.ConfigError, match=r"weighter 'forwarding': .*unexpected keyword argument 'power'"):
        sw.create_weighter("forwarding", registry=registry, class_counts=[3, 1], power=2)


@pytest.mark.parametrize(
    ("factory", "raised"),
    [(buggy_weighter, "AttributeError"), (buggy_typed_weighter, "TypeError")],
)
def test_an_exception_inside_the_factory_is_the_plugins_bug_naming_it(factory, raised: str) -> None:
    registry = registry_with(weighters={"buggy": factory})
    with pytest.raises(sw.PluginError) as error:
        sw.create_weighter("buggy", registry=registry, class_counts=[3, 1])
    message = str(error.value)
    assert message.startswith("weighter 'buggy' of plugin sw_test_factories failed while being created: " + raised)
    assert "report it to the plugin's author" in message and "\n" not in message
    assert type(error.value.__cause__).__name__ == raised


BUGGY_PLUGIN = """
import sampleweight as sw

def buggy(class_counts):
    return class_counts.no_such_method()

@sw.hookimpl
def register_weighters(register):
    register("buggy", buggy)
"""


def test_a_plugin_bug_names_the_distribution_and_is_one_line_with_exit_code_2_in_the_cli(mount_plugin) -> None:
    mount_plugin(
        "sw-test-buggy", "2.0", entry_points={"buggy": "sw_test_buggy"}, modules={"sw_test_buggy": BUGGY_PLUGIN}
    )

    @user_errors
    def command() -> None:
        sw.WeightedLoss("ce", "buggy", class_counts=[3, 1])

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(
        "error: weighter 'buggy' of plugin buggy (sw-test-buggy 2.0) failed while being created: AttributeError: "
    )
    assert line.endswith("this is a bug in the plugin, not in your options: report it to the plugin's author")


# -- warnings point at the user's line ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cb", "es", "drw"])
def test_a_weighters_warning_points_at_the_users_line(name: str) -> None:
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.create_weighter(name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="class 1 has no training samples") as record:
        sw.WeightedLoss("ce", name, class_counts=[5, 0, 3], num_epochs=10)
    assert record[0].filename == __file__


# -- every option is checked against its factory's annotations ----------------------------------------------


class TypedWeighter(sw.BaseWeighter):  # string annotations (this module has `from __future__ import annotations`)
    def __init__(self, strength: float = 1.0, flag: bool = False, mode: Literal["a", "b"] = "a", free=None) -> None:
        super().__init__()
        self.strength, self.flag, self.mode, self.free = strength, flag, mode, free


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strength": "abc"}, "weighter 'typed': option strength must be float, got 'abc'"),
        ({"flag": "maybe"}, "weighter 'typed': option flag must be bool, got 'maybe'"),
        ({"flag": 2}, "weighter 'typed': option flag must be bool, got 2"),
        ({"mode": "c"}, "weighter 'typed': option mode must be Literal['a', 'b'], got 'c'"),
        ({"typed.strength": [1]}, "weighter 'typed': option strength must be float, got [1]"),  # scoped too
    ],
)
def test_an_option_of_the_wrong_type_is_a_config_error_naming_plugin_option_type_and_value(options, message) -> None:
    registry = registry_with(weighters={"typed": TypedWeighter})
    with pytest.raises(sw.ConfigError) as checked:
        sw.factory.check_weighter_options("typed", options, registry=registry)
    assert message in str(checked.value)
    with pytest.raises(sw.ConfigError, match="must be"):
        sw.create_weighter("typed", registry=registry, **options)


def test_a_valid_option_reaches_the_factory_as_given_and_a_lax_one_in_its_checked_form() -> None:
    registry = registry_with(weighters={"typed": TypedWeighter})
    weighter = sw.create_weighter("typed", registry=registry, strength=2, flag=True, free="anything")
    assert weighter.strength == 2 and type(weighter.strength) is int  # unchanged: as before the check
    assert weighter.flag is True and weighter.free == "anything"  # an unannotated option is not checked
    assert sw.create_weighter("typed", registry=registry, flag="false").flag is False  # not the truthy string


@pytest.mark.parametrize(
    ("kind", "name", "options", "message"),
    [
        ("losses", "focal", {"gamma": "abc"}, "loss 'focal': option gamma must be float, got 'abc'"),
        ("weighters", "es", {"beta": "abc"}, "weighter 'es': option beta must be float | None, got 'abc'"),
        ("samplers", "class_balanced", {"skip_empty": "maybe"}, "option skip_empty must be bool, got 'maybe'"),
        ("samplers", "class_balanced", {"skip_empty": 2}, "option skip_empty must be bool, got 2"),
    ],
)
def test_the_builtins_options_are_type_checked_before_anything_is_built(kind, name, options, message) -> None:
    from sampleweight.factory import check_options, check_sampler_options

    with pytest.raises(sw.ConfigError) as checked:
        if kind == "samplers":
            check_sampler_options(name, options)
        else:
            check_options(kind, [name], options)
    assert message in str(checked.value)
    assert "'<' not supported" not in str(checked.value)
