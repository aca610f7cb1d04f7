"""Plugin loading: entry points -> pluggy -> a `Registry` of named weighters, losses, models, samplers, mixers and
optimizers.

Plugins (built-in and third-party alike) are modules declared under the ``sampleweight`` entry-point
group. Loading is deterministic (sorted by distribution, then entry-point name) and isolated: a
plugin that fails to import, implements an unknown hook or raises in a hook is recorded with its
error in `PluginInfo` and the others load.

A name claimed by several plugins (a clash) costs only that name, never a plugin's other
registrations, and never depends on the load order: a built-in (registered by the ``sampleweight``
distribution itself) keeps its name, and the third party's registration is ignored; a name that
several third parties claim belongs to none of them, and creating it is a `PluginError` naming them
all. Each losing registration is recorded in its plugin's `PluginInfo.clashes` and warned about once.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType, ModuleType
from typing import Any

import pluggy

from sampleweight import hookspecs
from sampleweight.errors import PluginError, describe as _describe, user_stacklevel as _user_frame

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "INFO_KEYS",
    "KINDS",
    "TASKS",
    "PluginInfo",
    "PluginWarning",
    "Registered",
    "Registry",
    "get_registry",
    "list_plugins",
    "load_plugins",
    "set_registry",
]

ENTRY_POINT_GROUP = "sampleweight"
DISABLE_ENV = "SAMPLEWEIGHT_DISABLE_PLUGINS"
KINDS = ("weighters", "losses", "models", "samplers", "mixers", "optimizers")
SINGULAR = {
    "weighters": "weighter",
    "losses": "loss",
    "models": "model",
    "samplers": "sampler",
    "mixers": "mixer",
    "optimizers": "optimizer",
}
TASKS = ("multiclass", "binary", "multilabel")
"""The task kinds a run may have: one of C classes (softmax), one label against the rest and several independent
labels (sigmoid, one logit per label)."""
DEFAULT_TASKS = {"losses": ("multiclass",), "weighters": ("multiclass", "binary"), "samplers": ("multiclass", "binary")}
"""The tasks a registration without ``tasks`` serves: a loss, softmax ones; a weighter or sampler, those whose
targets are class indices (a binary task's are 0/1)."""
BUILTIN_DISTRIBUTION = "sampleweight"
"""The distribution whose own entry points register the built-ins, which keep their names in a clash."""

INFO_KEYS: dict[str, dict[str, str]] = {
    "*": {
        "summary": "one line saying what it is, shown by `sampleweight plugins` (default: the first line of the "
        "factory's docstring)",
        "default": "True: part of the default comparison (`sampleweight grid` with no axis option); the first "
        "default of a kind, in registration order, is also a single run's default. Only the built-ins' counts",
    },
    "models": {
        "hierarchical": "True: the factory takes `taxonomy=` (a sampleweight.Taxonomy) and forward returns leaf "
        "log-probabilities over it; a run trains it with its `loss`, the report groups it, retrain refuses it",
        "taxonomy": "the default label tree of a hierarchical model, as Taxonomy.to_config() (a run's `taxonomy` "
        "option overrides it; default: ISIC 2018's)",
        "loss": "the loss plugin a run of this model trains with when the run's loss is one of that loss's "
        "`bases`, which it then receives as its `base` option (a hierarchical model's per-level loss)",
        "epochs": "a run's default number of epochs (default 150, the paper's for its flat model)",
        "published": "a paper's figures for this model, shown by `report --paper`: {optimizer: {'source': "
        "'paper, Table N', 'results': {loss: {weighting: {'acc': %, 'bacc': %, 'mpr': %, 'mf1': %}}}}}",
    },
    "losses": {
        "bases": "the losses this one wraps for a model that names it as its `loss` (given as its `base` option)",
        "rebalances": "True, or a function of the loss's options returning a bool: it corrects for the class "
        "prior by itself (a run that also rebalances otherwise is warned about)",
        "pairs_with_rebalancing": "True: designed to be combined with a rebalancing sampler or weighter (LDAM "
        "with DRS or DRW), so the combination is not warned about",
        "soft_targets": "True: the loss takes class distributions [B, C] (mixing, smoothing) as targets as well as "
        "class indices [B], a one-hot distribution giving the loss of its class index (`check_loss` checks it). "
        "Default False: `WeightedLoss` refuses soft targets for it with a ConfigError",
        "tasks": "the task kinds it serves, of multiclass, binary, multilabel (default: multiclass, a softmax loss); "
        "a run of another task refuses it at start-up",
    },
    "weighters": {
        "rebalances": "True: its weights rebalance the classes (as for losses)",
        "class_balanced": "True: Cui et al.'s class-balanced loss weights; weight balancing's second stage (retrain "
        "wb) weights its loss with the first such built-in",
        "tasks": "the task kinds it serves (default: multiclass, binary, whose targets are class indices); a "
        "multilabel weighter reads multi-hot targets [B, L] and may return one weight per (sample, label) [B, L]",
    },
    "samplers": {  # a sampler says whether it rebalances itself (Sampler.rebalances_classes)
        "balanced": "True: it draws every class equally often (p_c = 1/C); a decoupled second stage (retrain crt, "
        "lws) trains on the first such built-in unless told otherwise",
        "tasks": "the task kinds it serves (default: multiclass, binary); a multilabel sampler reads the "
        "multi-hot targets [N, L]",
    },
    "mixers": {},  # the keys of every kind
    "optimizers": {
        "lr": "a run's default learning rate: a number, or a function of the optimizer's options returning one "
        "(default 1e-3)",
        "closure": "True: its `step(closure)` evaluates the loss more than once per step (sharpness-aware: each "
        "call of `closure(classes=None)` runs a forward and backward pass at the current weights, restricted to the "
        "samples of the classes marked in the bool mask `classes`); the trainer then passes a closure, "
        "`check_optimizer` checks it",
        "loss_scaled": "True, or a function of the options returning a bool: its update scales with the loss (SGD; "
        "ADAM's is nearly scale-free), so a class weighter's mean weight far from 1 scales the learning rate "
        "(the trainer warns)",
        "splits_by_class": "True: its `step(closure)` calls `closure(classes=mask)`, splitting the loss by class "
        "(ImbSAM's tail classes); a multilabel sample has no one class, so a multilabel run refuses it at start-up",
    },
}
"""The documented keys of ``register(name, factory, **info)``: ``"*"`` for every kind, then those of one kind.
Another key is a plugin error naming these, as a misspelt hook is."""


class PluginWarning(UserWarning):
    """A plugin failed to load or lost a name clash: the others load, and ``sampleweight plugins`` shows it."""


@dataclass
class PluginInfo:
    """One plugin as `sampleweight plugins` shows it.

    Attributes:
        name: Entry-point name (or the name given to `load_plugins` for modules passed directly).
        distribution: The distribution (pip package) declaring it; None for modules passed directly.
        version: That distribution's version.
        module: The module path (``pkg.module``).
        weighters: Names it registered.
        losses: Names it registered.
        models: Names it registered.
        samplers: Names it registered.
        mixers: Names it registered.
        optimizers: Names it registered.
        error: Why it did not load (None when it did); a plugin with an error registers nothing.
        disabled: True when skipped through ``SAMPLEWEIGHT_DISABLE_PLUGINS``.
        clashes: Its registrations that did not take effect because another plugin (or timm) claims the
            same name, one message each naming both sides; its other names are registered.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str = ""
    weighters: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    mixers: list[str] = field(default_factory=list)
    optimizers: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False
    clashes: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        """Registered by sampleweight's own entry points (a built-in keeps its names in a clash)."""
        return (self.distribution or "").lower() == BUILTIN_DISTRIBUTION

    @property
    def label(self) -> str:
        """``name (distribution version)``, for messages."""
        return f"{self.name} ({self.distribution} {self.version})" if self.distribution else self.name


@dataclass(frozen=True)
class Registered:
    """A named factory, the plugin that registered it and what the registration says of it.

    Attributes:
        name: The registered name.
        factory: What builds it.
        plugin: The plugin that registered it.
        info: The registration's metadata (`INFO_KEYS`), read-only; ``summary`` is always there.
    """

    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class Registry:
    """Everything the loaded plugins registered. Build one with `load_plugins`.

    Attributes:
        plugin_manager: The pluggy manager the plugins were registered with.
        plugins: One `PluginInfo` per plugin, in load order (failed and disabled ones included).
        weighters: Registered weighter factories by name.
        losses: Registered loss factories by name.
        models: Registered model factories by name.
        samplers: Registered sampler factories by name.
        mixers: Registered mixer factories by name.
        optimizers: Registered optimizer factories by name.
        contested: Names that several third-party plugins claim, by kind (``{"weighters": {name:
            [claims]}}``): none of the claims is registered, and creating the name is an error naming them.
        complete: False when a plugin module was still being imported while loading (a plugin
            imported directly, which imports sampleweight, which loads the plugins): its hooks were
            not defined yet, so `get_registry` loads again on next use.
    """

    plugin_manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    weighters: dict[str, Registered] = field(default_factory=dict)
    losses: dict[str, Registered] = field(default_factory=dict)
    models: dict[str, Registered] = field(default_factory=dict)
    samplers: dict[str, Registered] = field(default_factory=dict)
    mixers: dict[str, Registered] = field(default_factory=dict)
    optimizers: dict[str, Registered] = field(default_factory=dict)
    contested: dict[str, dict[str, list[Registered]]] = field(default_factory=dict)
    complete: bool = True

    def kind(self, kind: str) -> dict[str, Registered]:
        """The table for ``kind`` (one of `KINDS`: ``"weighters"``, ``"losses"``, ``"models"``, ``"samplers"``,
        ``"mixers"``, ``"optimizers"``)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return getattr(self, kind)

    def info(self, kind: str, name: str) -> Mapping[str, Any]:
        """What the registration of ``name`` says of it (`INFO_KEYS`); empty for a name no plugin registered (a
        model of timm's own, say).

        Example:
            >>> registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
            >>> registry.info("weighters", "es")["rebalances"], dict(registry.info("models", "resnet18"))
            (True, {})
        """
        entry = self.kind(kind).get(name.split(".")[0] if kind == "models" else name)  # a timm tag: the model
        return entry.info if entry is not None else MappingProxyType({})

    def tasks(self, kind: str, name: str) -> tuple[str, ...]:
        """The task kinds ``name`` of ``kind`` serves: its registration's ``tasks``, else `DEFAULT_TASKS`.

        Example:
            >>> registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
            >>> registry.tasks("losses", "ce"), registry.tasks("losses", "bce")
            (('multiclass',), ('binary', 'multilabel'))
        """
        declared = self.info(kind, name).get("tasks")
        return tuple(declared) if declared is not None else DEFAULT_TASKS.get(kind, TASKS)

    def defaults(self, kind: str) -> list[str]:
        """The names of ``kind`` that the built-ins mark ``default`` (the default comparison), in registration
        order; the first is a single run's default.

        Example:
            >>> load_plugins(entry_points=False, builtins=True, register_timm=False).defaults("losses")
            ['ce', 'focal']
        """
        return self.builtins_marked(kind, "default")

    def builtins_marked(self, kind: str, key: str) -> list[str]:
        """The names of ``kind`` whose built-in registration sets ``key`` (`INFO_KEYS`), in registration order:
        only the built-ins' marks choose what sampleweight does by default.

        Example:
            >>> registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
            >>> registry.builtins_marked("samplers", "balanced")
            ['class_balanced']
        """
        return [name for name, entry in self.kind(kind).items() if entry.plugin.builtin and entry.info.get(key)]


def load_plugins(
    *,
    entry_points: bool = True,
    modules: Iterable[ModuleType | tuple[str, object]] = (),
    disabled: Iterable[str] | None = None,
    register_timm: bool = True,
    builtins: bool | None = None,
) -> Registry:
    """Build a fresh plugin manager and registry.

    Args:
        entry_points: Load the third-party modules declared in the ``sampleweight`` entry-point group.
        modules: Extra plugins registered directly (a module or object, or ``(name, object)``),
            after the entry points; tests use this for test-only plugins.
        disabled: Plugin names (entry-point or distribution names) to skip. Default: the
            comma-separated ``SAMPLEWEIGHT_DISABLE_PLUGINS`` environment variable.
        register_timm: Add registered models to timm's registry so ``timm.create_model`` finds them.
        builtins: Load sampleweight's own plugins (declared by the ``sampleweight`` distribution under
            the same group); default: as ``entry_points``. To test a plugin beside the built-ins and
            nothing else installed: ``load_plugins(entry_points=False, builtins=True, modules=[my_plugin])``.

    Returns:
        The registry; failed plugins are listed in ``registry.plugins`` with their error, and
        registrations that lost a name clash in their plugin's ``clashes``.

    Example:
        >>> import types, sampleweight as sw
        >>> mine = types.ModuleType("mine")
        >>> mine.register_weighters = sw.hookimpl(lambda register: register("halves", lambda: None))
        >>> registry = load_plugins(entry_points=False, builtins=True, modules=[mine], register_timm=False)
        >>> "halves" in registry.weighters and "ohem" in registry.weighters
        True
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry(plugin_manager=pm)
    skip = _disabled_names(disabled)
    builtins = entry_points if builtins is None else builtins
    claims: list[tuple[str, Registered]] = []  # (kind, claim) in load order; settled once all are in

    if entry_points or builtins:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(found, key=lambda e: ((e.dist.name if e.dist else "").lower(), e.name)):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                module=ep.value,
            )
            if not (builtins if info.builtin else entry_points):
                continue
            registry.plugins.append(info)
            if ep.name in skip or (info.distribution or "") in skip:
                info.disabled = True
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - an import failure is the plugin's, recorded
                info.error = _describe(exc)
                continue
            if getattr(getattr(plugin, "__spec__", None), "_initializing", False):
                registry.complete = False  # mid-import (circular): its hooks do not exist yet
                continue
            claims += _add_plugin(registry, info, plugin)

    for item in modules:
        name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__))
        registry.plugins.append(info)
        if name in skip:
            info.disabled = True
            continue
        claims += _add_plugin(registry, info, plugin)

    _settle(registry, claims)
    if register_timm:
        _register_timm_models(registry)
    for info in registry.plugins:
        if info.error:
            warnings.warn(
                f"sampleweight plugin {info.label} failed to load: {info.error}",
                PluginWarning,
                stacklevel=_user_frame(),
            )
        for clash in info.clashes:
            warnings.warn(f"sampleweight plugin {info.label}: {clash}", PluginWarning, stacklevel=_user_frame())
    return registry


_default_registry: Registry | None = None


_unreported: list[warnings.WarningMessage] = []
"""The `PluginWarning` warnings of the registry loaded while the package was imported, shown on its next use."""


def get_registry() -> Registry:
    """The process-wide registry, loaded from the entry points on first use.

    Its `PluginWarning` warnings (a plugin that failed to load, a lost name clash) are shown then; those of the load
    at package import (`load_at_import`) on the next call, so that the command line shows them its way.
    """
    global _default_registry
    if _default_registry is None or not _default_registry.complete:
        _default_registry = load_plugins()
    while _unreported:
        shown = _unreported.pop(0)
        warnings.warn_explicit(shown.message, shown.category, shown.filename, shown.lineno)
    return _default_registry


def load_at_import() -> None:
    """Load the process-wide registry as the package is imported (timm needs the models then).

    Its `PluginWarning` warnings point at the user's ``import sampleweight``, shown now; only when this process is
    the command line (``sampleweight ...``, ``python -m sampleweight ...``) are they kept for the next
    `get_registry` call, since the command line, imported after the package, installs its one-line display of them
    first.
    """
    if not _is_command_line():
        get_registry()
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        get_registry()
    for shown in caught:
        if issubclass(shown.category, PluginWarning):
            _unreported.append(shown)
        else:
            warnings.warn_explicit(shown.message, shown.category, shown.filename, shown.lineno)


def _is_command_line() -> bool:
    """Whether this process runs sampleweight's command line (its console script or ``python -m sampleweight``)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    as_module = any(arg == "-m" and argv[i + 1 : i + 2] == ["sampleweight"] for i, arg in enumerate(argv))
    return as_module or os.path.basename(sys.argv[0]) == "sampleweight"


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (None: reload on next use); returns the previous one."""
    global _default_registry
    previous, _default_registry = _default_registry, registry
    return previous


def list_plugins(registry: Registry | None = None) -> list[PluginInfo]:
    """All plugins, built-in and third-party, with what they registered and any load error."""
    return list((registry or get_registry()).plugins)


def _add_plugin(registry: Registry, info: PluginInfo, plugin: object) -> list[tuple[str, Registered]]:
    """Register one plugin with pluggy and return its claims ``(kind, Registered)``, all or nothing.

    A plugin whose hooks fail (an unknown hook, a hook that raises, an invalid name or factory, a name
    it registers twice itself) claims nothing and records its error; clashes with other plugins are
    settled later, name by name (`_settle`).
    """
    pm = registry.plugin_manager
    try:
        pm.register(plugin, name=_pluggy_name(pm, info))
    except Exception as exc:  # noqa: BLE001 - bad hook signatures are the plugin's, recorded
        info.error = _describe(exc)
        return []
    try:
        pm.check_pending()  # a hook implementation with no spec (e.g. a misspelt name) is an error
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        info.error = f"{exc} (known hooks: {', '.join(f'{k}' for k in _hook_names())})"
        return []

    staged: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
    others = [p for p in pm.get_plugins() if p is not plugin]
    try:
        for kind in KINDS:
            caller = pm.subset_hook_caller(f"register_{kind}", remove_plugins=others)
            caller(register=_registrar(info, kind, staged[kind]))
    except Exception as exc:  # noqa: BLE001 - a failing hook or an invalid registration rejects this plugin
        pm.unregister(plugin)
        info.error = exc.args[0] if isinstance(exc, PluginError) else _describe(exc)
        return []
    return [(kind, entry) for kind in KINDS for entry in staged[kind].values()]


def _registrar(info: PluginInfo, kind: str, staged: dict[str, Registered]) -> Callable[..., None]:
    singular = SINGULAR[kind]
    known = {**INFO_KEYS["*"], **INFO_KEYS[kind]}

    def register(name: str, factory: Callable[..., Any], **details: Any) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise PluginError(
                f"plugin {info.label} registered {singular} name {name!r}; names must be lowercase "
                "snake_case identifiers"
            )
        if not callable(factory):
            raise PluginError(f"plugin {info.label} registered {singular} {name!r} with a non-callable factory")
        if name in staged:
            raise PluginError(f"plugin {info.label} registered {singular} {name!r} twice; register each name once")
        unknown = sorted(set(details) - set(known))
        if unknown:
            raise PluginError(
                f"plugin {info.label} registered {singular} {name!r} with unknown key(s) {', '.join(unknown)}; "
                f"a {singular}'s keys are: {', '.join(known)}"
            )
        problem = _invalid_info(details)
        if problem:
            raise PluginError(f"plugin {info.label} registered {singular} {name!r} with {problem}")
        if "summary" not in details:
            details["summary"] = (inspect.getdoc(factory) or "").strip().split("\n")[0]
        staged[name] = Registered(name, factory, info, MappingProxyType(details))

    return register


_INFO_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "summary": (str, "a string"),
    "default": (bool, "True or False"),
    "hierarchical": (bool, "True or False"),
    "pairs_with_rebalancing": (bool, "True or False"),
    "balanced": (bool, "True or False"),
    "soft_targets": (bool, "True or False"),
    "closure": (bool, "True or False"),
    "splits_by_class": (bool, "True or False"),
    "class_balanced": (bool, "True or False"),
    "taxonomy": (Mapping, "a mapping (Taxonomy.to_config())"),
    "loss": (str, "a loss name"),
    "epochs": (int, "a whole number of epochs >= 1"),
    "published": (Mapping, "a mapping {optimizer: {'source': ..., 'results': ...}}"),
    "bases": ((tuple, list), "a list of loss names"),
}


def _invalid_info(details: Mapping[str, Any]) -> str | None:
    """What is wrong with a registration's metadata, or None."""
    for key, value in details.items():
        if key == "tasks":
            if not (isinstance(value, (tuple, list)) and value and set(value) <= set(TASKS)):
                return f"{key}={value!r}: expected a non-empty list of {', '.join(TASKS)}"
            continue
        if key in ("rebalances", "loss_scaled"):
            if not (isinstance(value, bool) or callable(value)):
                return f"{key}={value!r}: expected True, False or a function of the options"
            continue
        if key == "lr":
            number = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
            if not (number or callable(value)):
                return f"{key}={value!r}: expected a learning rate > 0 or a function of the options returning one"
            continue
        expected, words = _INFO_TYPES[key]
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not isinstance(value, expected) or (key == "epochs" and not whole):
            return f"{key}={value!r}: expected {words}"
    return None


def _settle(registry: Registry, claims: list[tuple[str, Registered]]) -> None:
    """Give each claimed name to its owner, whatever the load order.

    One claim: it holds the name. Several: a built-in's claim holds it and the others are ignored;
    among third parties only, nobody holds it (`Registry.contested`). A losing claim costs its plugin
    that name only, recorded in its ``clashes`` naming the other side.
    """
    rivals: dict[tuple[str, str], list[Registered]] = {}
    for kind, entry in claims:
        rivals.setdefault((kind, entry.name), []).append(entry)
    for kind, entry in claims:
        everyone = rivals[kind, entry.name]
        owners = [claim for claim in everyone if claim.plugin.builtin] or everyone
        singular = SINGULAR[kind]
        if len(owners) == 1 and owners[0] is entry:
            registry.kind(kind)[entry.name] = entry
            getattr(entry.plugin, kind).append(entry.name)
        elif not any(claim is entry for claim in owners):
            entry.plugin.clashes.append(
                f"{singular} {entry.name!r} is a built-in of plugin {owners[0].plugin.label}, which keeps the "
                f"name; this registration is ignored: rename it"
            )
        else:
            registry.contested.setdefault(kind, {})[entry.name] = owners
            others = ", ".join(claim.plugin.label for claim in owners if claim is not entry)
            entry.plugin.clashes.append(
                f"{singular} {entry.name!r} is also registered by plugin {others}; neither is used, and creating "
                f"{entry.name!r} is an error until one is uninstalled or disabled with {DISABLE_ENV}=<plugin name>"
            )


def _register_timm_models(registry: Registry) -> None:
    """Add registered models to timm's registry.

    A name timm already uses for its own model stays timm's, as a built-in's does: that registration is
    withdrawn and recorded as a clash of its plugin; the plugin's other names stay.
    """
    if not registry.models:
        return
    import timm.models

    reloaded: set[str] = set()
    for name, entry in list(registry.models.items()):
        existing = timm.models.is_model(name) and timm.models.model_entrypoint(name)
        if existing and _same_function(getattr(existing, "__wrapped__", existing), entry.factory):
            reloaded.add(name)  # the plugin's module was imported again (importlib.reload, a new registry)
        elif existing:
            del registry.models[name]
            entry.plugin.models.remove(name)
            entry.plugin.clashes.append(
                f"model {name!r} clashes with timm's own model {existing.__module__}.{name}, which keeps the "
                "name; this registration is ignored: rename it"
            )
    for name, entry in registry.models.items():
        current = timm.models.model_entrypoint(name) if name in reloaded else None
        if current is not None and getattr(current, "__wrapped__", current) is not entry.factory:
            with warnings.catch_warnings():  # timm warns when a name is registered again: here it is on purpose
                warnings.simplefilter("ignore")
                timm.models.register_model(_named(name, entry.factory))
        elif not timm.models.is_model(name):
            timm.models.register_model(_named(name, entry.factory))


def _same_function(registered: Callable[..., Any], factory: Callable[..., Any]) -> bool:
    """The same factory, or the same one imported again: same module and qualified name."""
    return registered is factory or (
        registered.__module__ == factory.__module__
        and getattr(registered, "__qualname__", None) == getattr(factory, "__qualname__", None)
    )


def _named(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
    """timm registers a function under its ``__name__``; wrap when the registered name differs."""
    if factory.__name__ == name:
        return factory

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> Any:
        return factory(pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = factory.__module__
    entrypoint.__doc__ = factory.__doc__
    entrypoint.__wrapped__ = factory  # type: ignore[attr-defined]
    return entrypoint


def _pluggy_name(pm: pluggy.PluginManager, info: PluginInfo) -> str:
    """A unique pluggy name; entry-point names are only unique within a distribution."""
    base = f"{info.distribution}:{info.name}" if info.distribution else info.name
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base}#{n}"
    return name


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("register_")]


def _disabled_names(disabled: Iterable[str] | None) -> set[str]:
    if disabled is None:
        disabled = os.environ.get(DISABLE_ENV, "").split(",")
    return {name.strip() for name in disabled if name.strip()}
