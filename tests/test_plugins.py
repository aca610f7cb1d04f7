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
    softmax = ["ce", "focal", "logit_adjusted", "balanced_softmax", "ldam"]
    assert builtins["losses"].losses == [*softmax, "bce", "sigmoid_focal", "asl", "db"]
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


def test_a_name_two_third_parties_claim_belongs_to_neither_and_costs_nothing_else() -> None:
    def first(register):
        register("focal_x", lambda: None)

    def second(register):
        register("focal_x", lambda: None)
        register("dice", lambda: None)

    with pytest.warns(UserWarning, match="also registered by plugin"):
        registry = plugins.load_plugins(
            entry_points=False,
            modules=[plugin_module("alpha", register_losses=first), plugin_module("beta", register_losses=second)],
        )
    alpha, beta = registry.plugins
    assert alpha.error is None and beta.error is None
    assert (alpha.losses, beta.losses) == ([], ["dice"])  # the clash costs 'focal_x' only
    assert "'focal_x' is also registered by plugin beta" in alpha.clashes[0]
    assert "'focal_x' is also registered by plugin alpha" in beta.clashes[0]
    assert sw.list_losses(registry) == ["dice"]
    with pytest.raises(sw.PluginError, match="'focal_x' is registered by several plugins: alpha and beta"):
        sw.create_loss("focal_x", registry=registry)


def test_a_builtin_keeps_its_name_whatever_the_load_order(registry) -> None:
    def clash(register):
        register("ohem", lambda: None)
        register("mine", lambda: sw.BaseWeighter())

    with pytest.warns(UserWarning, match="'ohem' is a built-in"):
        registry = plugins.load_plugins(disabled=(), modules=[plugin_module("copycat", register_weighters=clash)])
    copycat = registry.plugins[-1]
    assert copycat.error is None and copycat.weighters == ["mine"]
    assert "'ohem' is a built-in of plugin weighters (sampleweight" in copycat.clashes[0]
    assert registry.weighters["ohem"].plugin.distribution == "sampleweight"


RC_SWPLUG = """
import torch
import sampleweight as sw

class Rank(sw.BaseWeighter):
    def forward(self, batch):
        return torch.ones_like(batch.losses)

@sw.hookimpl
def register_weighters(register):
    register("ohem", lambda: None)   # a built-in name, with a broken factory
    register("rank", Rank)

@sw.hookimpl
def register_losses(register):
    register("ce", lambda: None)
"""


def test_an_installed_plugin_that_sorts_before_sampleweight_keeps_every_builtin(mount_plugin) -> None:
    # 'rc-swplug' loads before 'sampleweight'; it used to get every built-in weighter rejected.
    mount_plugin(
        "rc-swplug", "0.3", entry_points={"swplug": "sw_test_rc_swplug"}, modules={"sw_test_rc_swplug": RC_SWPLUG}
    )
    with pytest.warns(UserWarning, match="is a built-in"):
        infos = {p.name: p for p in sw.list_plugins()}
    assert infos["weighters"].error is None and infos["losses"].error is None
    alone = {p.name: p for p in plugins.load_plugins(entry_points=False, builtins=True, register_timm=False).plugins}
    for kind in plugins.KINDS:  # every built-in is still there, under its own name
        for name in ("weighters", "losses", "models"):
            assert getattr(infos[name], kind) == getattr(alone[name], kind)
    assert set(sw.list_weighters()) >= {"none", "cb", "es", "spl", "ohem", "class_ohem", "drw", "rank"}
    swplug = infos["swplug"]
    assert (swplug.distribution, swplug.weighters, swplug.losses) == ("rc-swplug", ["rank"], [])
    assert len(swplug.clashes) == 2
    assert all("(sampleweight " in clash for clash in swplug.clashes)
    criterion = sw.WeightedLoss("ce", "ohem", num_epochs=4, batch_size=4)  # the built-ins, not the broken ones
    criterion(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert criterion.last_weights.tolist().count(1.0) == 2


def test_plugins_check_reports_a_clash_naming_both_distributions(mount_plugin) -> None:
    import subprocess
    import sys

    root = mount_plugin(
        "rc-swplug", "0.3", entry_points={"swplug": "sw_test_rc_swplug"}, modules={"sw_test_rc_swplug": RC_SWPLUG}
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(root), "COLUMNS": "80", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "sampleweight", "plugins"]
    listed = subprocess.run(command, capture_output=True, text=True, env=env)
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert checked.returncode == 1 and "swplug" in checked.stderr
    text = " ".join(listed.stdout.split())  # the notes wrap at 80 columns
    assert "swplug (rc-swplug 0.3): weighter 'ohem' is a built-in of plugin weighters (sampleweight" in text
    assert "clash [1]" in text
    clean = subprocess.run([*command[:3], "plugins", "--check"], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_plugins_table_is_readable_at_80_columns() -> None:
    import subprocess
    import sys

    env = {**__import__("os").environ, "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-m", "sampleweight", "plugins"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = set(result.stdout.replace(",", " ").replace("│", " ").split())
    for name in [*sw.list_weighters(), *sw.list_losses(), *sw.list_models(), "sampleweight"]:
        assert name in words, f"{name!r} is broken across lines at 80 columns"


def test_plugin_warnings_point_at_the_caller_not_at_sampleweight() -> None:
    def register_losses(register):
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="boom") as record:
        plugins.load_plugins(entry_points=False, modules=[plugin_module("bad", register_losses=register_losses)])
    assert record[0].filename == __file__


def test_import_warnings_point_at_the_users_import(mount_plugin, tmp_path) -> None:
    import subprocess
    import sys

    root = mount_plugin(
        "rc-swplug", "0.3", entry_points={"swplug": "sw_test_rc_swplug"}, modules={"sw_test_rc_swplug": RC_SWPLUG}
    )
    script = tmp_path / "user_script.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\nimport sampleweight\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{script}:3: PluginWarning: sampleweight plugin swplug" in result.stderr  # a UserWarning subclass
    assert "sampleweight/plugins.py" not in result.stderr


def test_a_registry_without_builtins_says_how_to_get_them() -> None:
    registry = plugins.load_plugins(entry_points=False, modules=[plugin_module("mine")])
    with pytest.raises(sw.ConfigError, match=r"builtins=True"):
        sw.create_loss("ce", registry=registry)
    with_builtins = plugins.load_plugins(entry_points=False, builtins=True, modules=[plugin_module("mine")])
    names = {p.name for p in with_builtins.plugins}
    assert names == {"weighters", "losses", "models", "samplers", "mixers", "optimizers", "mine"}
    assert isinstance(sw.create_loss("ce", registry=with_builtins), torch.nn.Module)


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
        and "known hooks: register_losses, register_mixers, register_models, register_optimizers, register_samplers, "
        "register_weighters"
        in typo.error
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


def test_a_model_name_timm_already_has_stays_timms_and_costs_only_that_name() -> None:
    def register_models(register):
        register("resnet18", lambda pretrained=False, **kwargs: None)

    def register_weighters(register):
        register("from_clashing_plugin", lambda: None)

    module = plugin_module("clash", register_models=register_models, register_weighters=register_weighters)
    with pytest.warns(UserWarning, match="clashes with timm's own model"):
        registry = plugins.load_plugins(entry_points=False, modules=[module])
    (info,) = registry.plugins
    assert info.error is None and "'resnet18' clashes with timm's own model" in info.clashes[0]
    assert (info.models, info.weighters) == ([], ["from_clashing_plugin"])
    assert sw.list_models(registry) == [] and sw.list_weighters(registry) == ["from_clashing_plugin"]


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
        "import sampleweight.builtins.models, sampleweight as sw, timm\n"
        "assert sw.list_models() == ['cbam_vgg16', 'hierarchical_vgg16'], sw.list_models()\n"
        "assert 'hierarchical' in sw.list_losses() and timm.is_model('cbam_vgg16')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_registration_carries_its_metadata_and_a_summary() -> None:
    def halves():
        """Half of every weight.

        More text that the summary leaves out."""

    plugin = plugin_module(
        "sw_test_info",
        register_weighters=lambda register: (
            register("halves", halves, rebalances=True),
            register("named", halves, summary="said by the plugin"),
        ),
    )
    registry = plugins.load_plugins(entry_points=False, builtins=True, modules=[plugin], register_timm=False)
    assert dict(registry.info("weighters", "halves")) == {"rebalances": True, "summary": "Half of every weight."}
    assert registry.info("weighters", "named")["summary"] == "said by the plugin"
    with pytest.raises(TypeError):
        registry.info("weighters", "halves")["rebalances"] = False  # read-only
    assert registry.info("models", "hierarchical_vgg16")["hierarchical"] is True
    assert registry.info("models", "hierarchical_vgg16.some_tag")["epochs"] == 250  # a timm tag names the model


@pytest.mark.parametrize(
    ("kind", "info", "message"),
    [
        ("weighters", {"hierachical": True}, "unknown key(s) hierachical; a weighter's keys are: summary, default, "),
        ("models", {"epochs": 0}, "epochs=0: expected a whole number of epochs >= 1"),
        ("models", {"hierarchical": "yes"}, "hierarchical='yes': expected True or False"),
        ("weighters", {"rebalances": "yes"}, "rebalances='yes': expected True, False or a function of the options"),
        ("losses", {"bases": "ce"}, "bases='ce': expected a list of loss names"),
    ],
)
def test_an_unknown_or_mistyped_metadata_key_is_the_plugins_error(kind, info, message) -> None:
    plugin = plugin_module(
        "sw_test_bad_info", **{f"register_{kind}": lambda register: register("bad", lambda: None, **info)}
    )
    with pytest.warns(UserWarning, match="failed to load"):
        registry = plugins.load_plugins(entry_points=False, builtins=True, modules=[plugin], register_timm=False)
    failed = next(p for p in registry.plugins if p.name == "sw_test_bad_info")
    assert message in failed.error and "bad" not in registry.kind(kind)


def test_only_the_builtins_set_the_defaults() -> None:
    plugin = plugin_module(
        "sw_test_default", register_losses=lambda register: register("mine", lambda: None, default=True)
    )
    registry = plugins.load_plugins(entry_points=False, builtins=True, modules=[plugin], register_timm=False)
    assert registry.defaults("losses") == ["ce", "focal"] and registry.defaults("weighters")[0] == "none"
    assert registry.defaults("models") == ["cbam_vgg16", "hierarchical_vgg16"] and registry.defaults("samplers") == [
        "instance"
    ]
