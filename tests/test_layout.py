"""The folders show the layers: the core a training loop imports, data, the engine (one run), the studies
(many runs) and the command line; imports only point down, and ``import sampleweight`` stays light.

The built-in plugins (``sampleweight/builtins/``) stand beside the layers, as a third party's would: they
import only the core, and nothing imports them (the registry reaches them through their entry points)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sampleweight"

# What may import what: a layer imports only from itself and the layers listed for it.
LAYERS = {
    "core": {"core"},
    "data": {"core", "data"},
    "engine": {"core", "data", "engine"},
    "studies": {"core", "data", "engine", "studies"},
    "cli": {"core", "data", "engine", "studies", "cli"},
    "builtins": {"core", "builtins"},
}
HEAVY = (
    "sampleweight.engine",
    "sampleweight.studies",
    "sampleweight.cli",
    "sampleweight.testing",  # the plugin authors' contract checks: imported by their tests, not by a training loop
    "matplotlib",
    "rich",
    "sklearn",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[:2] in (["sampleweight", x] for x in ("data", "engine", "studies", "builtins")):
        return parts[1]
    if module in ("sampleweight.cli", "sampleweight.__main__"):
        return "cli"
    return "core"


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
PACKAGES = {_module_name(path) for path in PACKAGE.rglob("__init__.py")}


def _imports(module: str) -> set[str]:
    """The sampleweight modules ``module`` imports anywhere in its file (deferred imports too)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            }
    return {name for name in found if name in MODULES}


def test_the_folders_hold_the_modules_of_their_layer() -> None:
    assert {"weighting", "weighted_loss", "functional", "factory", "plugins", "hookspecs", "metrics"} <= {
        m.split(".")[1] for m in MODULES if _layer(m) == "core" and m != "sampleweight"
    }
    engine = {m.rsplit(".", 1)[1] for m in MODULES if _layer(m) == "engine"}
    assert {"training", "loader", "config", "checkpoint", "rundir", "progress", "evaluation", "ddp"} <= engine
    assert {"components", "device", "inference"} <= engine  # what others use of a run, beside the training loop
    studies = {m.rsplit(".", 1)[1] for m in MODULES if _layer(m) == "studies"}
    assert {"grid", "report", "figures", "attention", "demo"} <= studies


def _code_strings(module: str) -> set[str]:
    """The string constants of a module's code (docstrings left out)."""
    tree = ast.parse(MODULES[module].read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in ("engine", "studies")))
def test_the_engine_and_studies_name_no_plugin(module: str) -> None:
    """What a model, loss, weighter or sampler is comes from its registration, so a third party's plugin is
    treated as a built-in is: no code of the engine or the studies names one (test-time augmentation's mode
    ``none`` is not a weighter, nor the registration key ``hierarchical`` a loss)."""
    from sampleweight.engine.evaluation import TTA_MODES
    from sampleweight.plugins import INFO_KEYS, KINDS, load_plugins

    registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
    keys = {key for table in INFO_KEYS.values() for key in table}
    names = {name for kind in KINDS for name in registry.kind(kind)} - set(TTA_MODES) - keys
    named = sorted(_code_strings(module) & names)
    assert not named, f"{module} names the plugin(s) {named}; read what they are from the registry instead"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) != "builtins"))
def test_no_layer_imports_the_builtins_which_load_through_their_entry_points(module: str) -> None:
    direct = sorted(name for name in _imports(module) if _layer(name) == "builtins")
    assert not direct, f"{module} imports the built-in plugin(s) {direct}; reach them through the registry"


def test_the_builtins_are_declared_as_entry_points_of_our_distribution() -> None:
    from importlib import metadata

    declared = {ep.value for ep in metadata.entry_points(group="sampleweight") if ep.dist.name == "sampleweight"}
    modules = {m for m in MODULES if _layer(m) == "builtins" and m.count(".") == 2}
    assert declared == modules, "every module directly under sampleweight/builtins/ is one declared plugin"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    layer = _layer(module)
    upward = sorted(name for name in _imports(module) if _layer(name) not in LAYERS[layer])
    assert not upward, f"{module} ({layer}) imports {upward} from a layer above it"


def test_no_import_cycle_between_modules() -> None:
    # Package __init__ files only gather names, so edges into them are left out.
    graph = {m: {n for n in _imports(m) if n not in PACKAGES and n != m} for m in MODULES if m not in PACKAGES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_importing_sampleweight_and_weighting_a_batch_pulls_in_no_engine_studies_or_heavy_libraries() -> None:
    script = f"""
import json, sys
heavy = {HEAVY!r}
loaded = lambda: sorted(m for m in sys.modules if m.startswith(heavy))
import sampleweight as sw
after_import = loaded()
import torch
criterion = sw.WeightedLoss("ce", "es", class_counts=torch.tensor([50, 5, 1]))
criterion(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0])).backward()
print(json.dumps({{"import": after_import, "weighted_loss": loaded()}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"import": [], "weighted_loss": []}


def test_the_public_api_is_listed_and_importable() -> None:
    import sampleweight as sw

    assert sorted(sw.__all__) == sorted(set(sw.__all__))
    for name in sw.__all__:
        assert getattr(sw, name) is not None
    from sampleweight.engine import TrainConfig, evaluate, load_config, train

    assert callable(train) and callable(evaluate) and callable(load_config) and TrainConfig().epochs == 150
