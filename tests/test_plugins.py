"""The plugin contract: discovery through real entry points, isolation of failures, duplicates."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

import sampleweight as sw
from sampleweight import plugins
from sampleweight.weighting import WeightingBatch

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"

GOOD_PLUGIN = """
import torch
import sampleweight as sw

class Double(sw.BaseWeighter):
    def forward(self, batch):
        return torch.full_like(batch.losses, 2.0)

@sw.hookimpl
def register_weighters(register):
    register("double", Double)
"""


def plugin_module(name: str, **hooks) -> types.ModuleType:
    """A test-only plugin module with the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        function.__name__ = hook_name
        setattr(module, hook_name, sw.hookimpl(function))
    return module


def test_builtins_are_loaded_through_entry_points(registry) -> None:
    builtins = {p.name: p for p in registry.plugins if p.distribution == "sampleweight"}
    assert builtins["weighters"].weighters == ["none", "cb", "es", "spl", "ohem", "class_spl", "class_ohem", "drw"]
    assert builtins["losses"].losses == ["ce", "focal"]
    assert all(p.version == sw.__version__ and p.error is None for p in builtins.values())


def test_load_order_is_sorted_by_distribution_then_name(registry) -> None:
    keys = [((p.distribution or "").lower(), p.name) for p in registry.plugins if p.distribution]
    assert keys == sorted(keys)


def test_a_fresh_manager_per_registry() -> None:
    first = plugins.load_plugins(
        entry_points=False, modules=[plugin_module("a", register_losses=lambda register: None)]
    )
    second = plugins.load_plugins(entry_points=False)
    assert first.plugin_manager is not second.plugin_manager
    assert [p.name for p in second.plugins] == []


def test_modules_register_directly() -> None:
    def register_weighters(register):
        register("triple", lambda: sw.BaseWeighter())

    registry = plugins.load_plugins(
        entry_points=False, modules=[plugin_module("mine", register_weighters=register_weighters)]
    )
    assert sw.list_weighters(registry) == ["triple"]
    assert registry.weighters["triple"].plugin.name == "mine"


def test_duplicate_names_are_rejected_naming_both_plugins() -> None:
    def first(register):
        register("focal", lambda: None)

    def second(register):
        register("focal", lambda: None)
        register("dice", lambda: None)

    with pytest.warns(UserWarning, match="failed to load"):
        registry = plugins.load_plugins(
            entry_points=False,
            modules=[plugin_module("alpha", register_losses=first), plugin_module("beta", register_losses=second)],
        )
    alpha, beta = registry.plugins
    assert alpha.losses == ["focal"] and alpha.error is None
    assert beta.losses == [] and "registered twice: by plugin alpha and by plugin beta" in beta.error
    assert sw.list_losses(registry) == ["focal"]  # beta is rejected as a whole: no 'dice'


def test_duplicate_with_a_builtin_names_the_distribution(registry) -> None:
    def clash(register):
        register("ohem", lambda: None)

    with pytest.warns(UserWarning):
        registry = plugins.load_plugins(disabled=(), modules=[plugin_module("copycat", register_weighters=clash)])
    error = registry.plugins[-1].error
    assert "'ohem' is registered twice: by plugin weighters (sampleweight" in error and "copycat" in error


def test_a_misspelt_hook_is_an_error_and_others_still_load() -> None:
    def register_weighter(register):  # missing the final s
        register("x", lambda: None)

    def register_losses(register):
        register("fine", lambda: None)

    with pytest.warns(UserWarning):
        registry = plugins.load_plugins(
            entry_points=False,
            modules=[
                plugin_module("typo", register_weighter=register_weighter),
                plugin_module("ok", register_losses=register_losses),
            ],
        )
    typo, ok = registry.plugins
    assert (
        "register_weighter" in typo.error
        and "known hooks: register_losses, register_models, register_samplers, register_weighters" in typo.error
    )
    assert ok.error is None and sw.list_losses(registry) == ["fine"]


def test_a_hook_that_raises_is_recorded() -> None:
    def register_losses(register):
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="boom"):
        registry = plugins.load_plugins(
            entry_points=False, modules=[plugin_module("bad", register_losses=register_losses)]
        )
    assert registry.plugins[0].error.startswith("RuntimeError: boom")


def test_bad_names_are_rejected() -> None:
    def register_losses(register):
        register("My-Loss", lambda: None)

    with pytest.warns(UserWarning):
        registry = plugins.load_plugins(
            entry_points=False, modules=[plugin_module("p", register_losses=register_losses)]
        )
    assert "lowercase snake_case" in registry.plugins[0].error


def test_third_party_discovery_through_a_real_entry_point(mount_plugin) -> None:
    mount_plugin("sw-test-good", "2.3", entry_points={"good": "sw_test_good"}, modules={"sw_test_good": GOOD_PLUGIN})
    info = next(p for p in sw.list_plugins() if p.name == "good")
    assert (info.distribution, info.version, info.weighters, info.error) == ("sw-test-good", "2.3", ["double"], None)
    criterion = sw.WeightedLoss("ce", "double")
    criterion(torch.randn(3, 2), torch.tensor([0, 1, 1]))
    assert criterion.last_weights.tolist() == [2.0, 2.0, 2.0]


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_work(mount_plugin) -> None:
    mount_plugin(
        "sw-test-broken",
        entry_points={"broken": "sw_test_broken"},
        modules={"sw_test_broken": "import torch\nraise ImportError('needs libfoo 2.0')\n"},
    )
    mount_plugin("sw-test-good", entry_points={"good": "sw_test_good"}, modules={"sw_test_good": GOOD_PLUGIN})
    with pytest.warns(UserWarning, match="needs libfoo"):
        infos = {p.name: p for p in sw.list_plugins()}
    assert infos["broken"].error.startswith("ImportError: needs libfoo 2.0")
    assert infos["good"].error is None
    assert "double" in sw.list_weighters() and "ohem" in sw.list_weighters()


def test_disable_env_skips_plugins(mount_plugin, monkeypatch) -> None:
    mount_plugin("sw-test-good", entry_points={"good": "sw_test_good"}, modules={"sw_test_good": GOOD_PLUGIN})
    monkeypatch.setenv(plugins.DISABLE_ENV, "good, losses")
    registry = plugins.load_plugins(register_timm=False)
    disabled = {p.name for p in registry.plugins if p.disabled}
    assert disabled == {"good", "losses"}
    assert "double" not in sw.list_weighters(registry) and sw.list_losses(registry) == ["hierarchical"]


def test_the_example_third_party_plugin_is_used_by_name(mount_plugin) -> None:
    mount_plugin("sampleweight-isqrt", "0.1.0", entry_points={"isqrt": "sampleweight_isqrt"}, path=EXAMPLE_PLUGIN)
    counts = torch.tensor([900, 90, 10])
    weighter = sw.create_weighter("isqrt", class_counts=counts)
    raw = (counts.sum() / counts.double()).sqrt()
    expected = (raw * 3 / raw.sum()).float()
    batch = WeightingBatch(torch.ones(3), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(weighter(batch), expected)
    info = next(p for p in sw.list_plugins() if p.name == "isqrt")
    assert (info.distribution, info.weighters) == ("sampleweight-isqrt", ["isqrt"])


def test_a_model_name_timm_already_has_rejects_the_plugin() -> None:
    def register_models(register):
        register("resnet18", lambda pretrained=False, **kwargs: None)

    def register_weighters(register):
        register("from_clashing_plugin", lambda: None)

    module = plugin_module("clash", register_models=register_models, register_weighters=register_weighters)
    with pytest.warns(UserWarning, match="clashes with timm's own model"):
        registry = plugins.load_plugins(entry_points=False, modules=[module])
    (info,) = registry.plugins
    assert "'resnet18' of plugin clash clashes with timm's own model" in info.error
    assert (info.models, info.weighters) == ([], [])
    assert sw.list_models(registry) == [] and sw.list_weighters(registry) == []


def test_plugin_models_are_registered_in_timm() -> None:
    import timm

    def tiny_test_model(pretrained=False, **kwargs):
        return torch.nn.Linear(2, kwargs.get("num_classes", 3))

    def register_models(register):
        register("sw_test_tiny_model", tiny_test_model)

    plugins.load_plugins(entry_points=False, modules=[plugin_module("tiny", register_models=register_models)])
    assert timm.is_model("sw_test_tiny_model")
    assert timm.create_model("sw_test_tiny_model", num_classes=5).out_features == 5


def test_importing_a_plugin_module_first_still_registers_everything() -> None:
    import subprocess
    import sys

    code = (
        "import sampleweight_plugins.models, sampleweight as sw, timm\n"
        "assert sw.list_models() == ['cbam_vgg16', 'hierarchical_vgg16'], sw.list_models()\n"
        "assert 'hierarchical' in sw.list_losses() and timm.is_model('cbam_vgg16')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
