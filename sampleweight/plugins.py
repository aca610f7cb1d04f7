"""Plugin loading: entry points -> pluggy -> a `Registry` of named weighters, losses, models and samplers.

Plugins (built-in and third-party alike) are modules declared under the ``sampleweight`` entry-point
group. Loading is deterministic (sorted by distribution, then entry-point name) and isolated: a
plugin that fails to import, implements an unknown hook, raises in a hook, or registers a name that
another plugin already holds is recorded with its error in `PluginInfo` and the others load.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from sampleweight import hookspecs
from sampleweight.errors import PluginError

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginInfo",
    "Registered",
    "Registry",
    "get_registry",
    "list_plugins",
    "load_plugins",
    "set_registry",
]

ENTRY_POINT_GROUP = "sampleweight"
DISABLE_ENV = "SAMPLEWEIGHT_DISABLE_PLUGINS"
KINDS = ("weighters", "losses", "models", "samplers")
SINGULAR = {"weighters": "weighter", "losses": "loss", "models": "model", "samplers": "sampler"}


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
        error: Why it did not load (None when it did); a plugin with an error registers nothing.
        disabled: True when skipped through ``SAMPLEWEIGHT_DISABLE_PLUGINS``.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str = ""
    weighters: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False

    @property
    def label(self) -> str:
        """``name (distribution version)``, for messages."""
        return f"{self.name} ({self.distribution} {self.version})" if self.distribution else self.name


@dataclass(frozen=True)
class Registered:
    """A named factory and the plugin that registered it."""

    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo


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
    complete: bool = True

    def kind(self, kind: str) -> dict[str, Registered]:
        """The table for ``kind`` (one of `KINDS`: ``"weighters"``, ``"losses"``, ``"models"``, ``"samplers"``)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return getattr(self, kind)


def load_plugins(
    *,
    entry_points: bool = True,
    modules: Iterable[ModuleType | tuple[str, object]] = (),
    disabled: Iterable[str] | None = None,
    register_timm: bool = True,
) -> Registry:
    """Build a fresh plugin manager and registry.

    Args:
        entry_points: Load the modules declared in the ``sampleweight`` entry-point group.
        modules: Extra plugins registered directly (a module or object, or ``(name, object)``),
            after the entry points; tests use this for test-only plugins.
        disabled: Plugin names (entry-point or distribution names) to skip. Default: the
            comma-separated ``SAMPLEWEIGHT_DISABLE_PLUGINS`` environment variable.
        register_timm: Add registered models to timm's registry so ``timm.create_model`` finds them.

    Returns:
        The registry; failed plugins are listed in ``registry.plugins`` with their error.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry(plugin_manager=pm)
    skip = _disabled_names(disabled)

    if entry_points:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(found, key=lambda e: ((e.dist.name if e.dist else "").lower(), e.name)):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                module=ep.value,
            )
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
            _add_plugin(registry, info, plugin)

    for item in modules:
        name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__))
        registry.plugins.append(info)
        if name in skip:
            info.disabled = True
            continue
        _add_plugin(registry, info, plugin)

    for info in registry.plugins:
        if info.error:
            warnings.warn(f"sampleweight plugin {info.label} failed to load: {info.error}", stacklevel=2)
    if register_timm:
        _register_timm_models(registry)
    return registry


_default_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from the entry points on first use."""
    global _default_registry
    if _default_registry is None or not _default_registry.complete:
        _default_registry = load_plugins()
    return _default_registry


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (None: reload on next use); returns the previous one."""
    global _default_registry
    previous, _default_registry = _default_registry, registry
    return previous


def list_plugins(registry: Registry | None = None) -> list[PluginInfo]:
    """All plugins, built-in and third-party, with what they registered and any load error."""
    return list((registry or get_registry()).plugins)


def _add_plugin(registry: Registry, info: PluginInfo, plugin: object) -> None:
    """Register one plugin with pluggy and collect its registrations, all or nothing."""
    pm = registry.plugin_manager
    try:
        pm.register(plugin, name=_pluggy_name(pm, info))
    except Exception as exc:  # noqa: BLE001 - bad hook signatures are the plugin's, recorded
        info.error = _describe(exc)
        return
    try:
        pm.check_pending()  # a hook implementation with no spec (e.g. a misspelt name) is an error
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        info.error = f"{exc} (known hooks: {', '.join(f'{k}' for k in _hook_names())})"
        return

    staged: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
    others = [p for p in pm.get_plugins() if p is not plugin]
    try:
        for kind in KINDS:
            caller = pm.subset_hook_caller(f"register_{kind}", remove_plugins=others)
            caller(register=_registrar(registry, info, kind, staged[kind]))
    except Exception as exc:  # noqa: BLE001 - a failing hook or duplicate name rejects this plugin
        pm.unregister(plugin)
        info.error = exc.args[0] if isinstance(exc, PluginError) else _describe(exc)
        return
    for kind in KINDS:
        registry.kind(kind).update(staged[kind])
        getattr(info, kind).extend(staged[kind])


def _registrar(
    registry: Registry, info: PluginInfo, kind: str, staged: dict[str, Registered]
) -> Callable[[str, Callable[..., Any]], None]:
    singular = SINGULAR[kind]

    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise PluginError(
                f"plugin {info.label} registered {singular} name {name!r}; names must be lowercase "
                "snake_case identifiers"
            )
        if not callable(factory):
            raise PluginError(f"plugin {info.label} registered {singular} {name!r} with a non-callable factory")
        holder = registry.kind(kind).get(name)
        if holder is not None or name in staged:
            first = holder.plugin.label if holder else info.label
            raise PluginError(
                f"{singular} {name!r} is registered twice: by plugin {first} and by plugin {info.label}; "
                f"rename one of them, or disable one with {DISABLE_ENV}=<plugin name>"
            )
        staged[name] = Registered(name, factory, info)

    return register


def _register_timm_models(registry: Registry) -> None:
    """Add registered models to timm's registry.

    A name timm already uses for another model rejects the plugin that registered it, as a duplicate
    name does: all of its registrations are withdrawn and its error is recorded.
    """
    if not registry.models:
        return
    import timm.models

    for name, entry in list(registry.models.items()):
        existing = timm.models.is_model(name) and timm.models.model_entrypoint(name)
        if existing and getattr(existing, "__wrapped__", existing) is not entry.factory:
            _reject(
                registry,
                entry.plugin,
                f"model {name!r} of plugin {entry.plugin.label} clashes with timm's own model "
                f"{existing.__module__}.{name}; choose another name",
            )
    for name, entry in registry.models.items():
        if not timm.models.is_model(name):
            timm.models.register_model(_named(name, entry.factory))


def _reject(registry: Registry, info: PluginInfo, error: str) -> None:
    """Withdraw everything ``info``'s plugin registered and record why."""
    for kind in KINDS:
        table = registry.kind(kind)
        for name in getattr(info, kind):
            table.pop(name, None)
        getattr(info, kind).clear()
    info.error = error
    warnings.warn(f"sampleweight plugin {info.label} failed to load: {error}", stacklevel=4)


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


def _describe(exc: BaseException) -> str:
    """``ExcType: message`` plus where it was raised (the last frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
