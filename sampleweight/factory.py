"""Build weighters, losses, samplers, mixers and optimizers by name, handing each factory the options and facts it
declares.

A factory is called with the user's options plus the dataset-level facts its signature names
(pluggy-style "declare what you need"): ``class_counts`` (LongTensor [C], training-set counts),
``num_classes``, ``num_epochs``, ``batch_size`` and ``class_names``; a sampler factory also
``targets`` (LongTensor [N], the training side's class indices) and ``seed``, a mixer factory also ``seed``; an
optimizer factory the run's ``lr``, ``momentum``, ``weight_decay`` and ``device``. ``num_classes`` follows from
``class_counts`` or ``class_names`` when not given, and ``class_counts`` from ``targets``.

A weighter option may be scoped to one weighter as ``"NAME.KEY"`` (``{"es.normalize": "classes"}``): it
reaches only that component of a composition (``"ohem+es"``), and a weighting without that weighter
ignores it (so one table of options serves every run of a grid).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pydantic
import torch
from torch import nn

from sampleweight import distributed
from sampleweight.errors import ConfigError, PluginError, SampleWeightError, describe
from sampleweight.functional import multi_hot_counts
from sampleweight.mixing import Mixer
from sampleweight.plugins import DISABLE_ENV, SINGULAR, TASKS, Registered, Registry, get_registry
from sampleweight.sampling import Sampler, ShardedSampler
from sampleweight.weighting import ProductWeighter, Weighter

__all__ = [
    "FACTS",
    "MIXER_FACTS",
    "OPTIMIZER_FACTS",
    "SAMPLER_FACTS",
    "SCOPE",
    "accepted_options",
    "check_mixer_options",
    "check_optimizer_options",
    "check_options",
    "check_sampler_options",
    "check_task",
    "check_weighter_options",
    "create_loss",
    "create_mixer",
    "create_optimizer",
    "create_sampler",
    "create_weighter",
    "default_lr",
    "factory_arguments",
    "list_losses",
    "list_mixers",
    "list_models",
    "list_optimizers",
    "list_samplers",
    "list_weighters",
    "lookup",
    "option_defaults",
    "resolve_facts",
    "typed_options",
]

FACTS = ("class_counts", "num_classes", "num_epochs", "batch_size", "class_names")
SAMPLER_FACTS = (*FACTS, "targets", "seed")
"""The facts a sampler factory may name: the weighters' plus the training targets and the seed."""
MIXER_FACTS = (*FACTS, "seed")
"""The facts a mixer factory may name: the weighters' plus the seed its draws follow from."""
OPTIMIZER_FACTS = (*FACTS, "lr", "momentum", "weight_decay", "device")
"""The facts an optimizer factory may name: the weighters' plus the run's learning rate, momentum, weight decay and
device."""
DEFAULT_LR = 1e-3
"""An optimizer's default learning rate when its registration names none (``lr``)."""

PRODUCTS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "weighter": (
        "a Weighter (callable on a WeightingBatch, with state_dict/load_state_dict)",
        lambda obj: isinstance(obj, Weighter),
    ),
    "loss": ("a callable (a per-sample loss module)", callable),
    "sampler": (
        "a sampleweight.Sampler (__iter__, __len__, set_epoch, state_dict and load_state_dict)",
        lambda obj: isinstance(obj, Sampler),
    ),
    "mixer": (
        "a sampleweight.Mixer (callable on (images, targets, epoch=, step=), with state_dict and load_state_dict)",
        lambda obj: isinstance(obj, Mixer),
    ),
    "optimizer": ("a torch.optim.Optimizer", lambda obj: isinstance(obj, torch.optim.Optimizer)),
}
"""What a factory must return, by what it builds: a description and a check (a factory returning something else is
a `PluginError` when the user creates it, not at the first batch)."""


def list_weighters(registry: Registry | None = None) -> list[str]:
    """Names of all registered weighters, sorted."""
    return sorted((registry or get_registry()).weighters)


def list_losses(registry: Registry | None = None) -> list[str]:
    """Names of all registered losses, sorted."""
    return sorted((registry or get_registry()).losses)


def list_models(registry: Registry | None = None) -> list[str]:
    """Names of the models registered by sampleweight plugins (built-in and third-party), sorted.

    timm's own models (``timm.list_models()``) can be created by name too (``--model``), but are not listed here.
    """
    return sorted((registry or get_registry()).models)


def list_samplers(registry: Registry | None = None) -> list[str]:
    """Names of all registered samplers, sorted."""
    return sorted((registry or get_registry()).samplers)


def list_mixers(registry: Registry | None = None) -> list[str]:
    """Names of all registered mixers, sorted."""
    return sorted((registry or get_registry()).mixers)


def list_optimizers(registry: Registry | None = None) -> list[str]:
    """Names of all registered optimizers, sorted."""
    return sorted((registry or get_registry()).optimizers)


def create_weighter(name: str | Sequence[str], *, registry: Registry | None = None, **options: Any) -> Weighter:
    """Create a weighter by name.

    Args:
        name: A registered name (``"ohem"``), several joined by ``+`` (``"ohem+es"``) or a list of
            names: the weights of several weighters multiply.
        registry: Where to look names up; default the process-wide registry.
        **options: Options of the weighter(s) and dataset facts (``class_counts``, ``num_classes``,
            ``num_epochs``, ``batch_size``, ``class_names``). Each is given to every component
            whose factory names it; an option no component accepts is an error. An option scoped
            as ``"NAME.KEY"`` goes to the component NAME only (over an unscoped KEY), and is ignored
            when NAME is not a component (pass it as ``**{"es.normalize": "classes"}``).

    Returns:
        A `Weighter` (a `ProductWeighter` for several names).

    Raises:
        ConfigError: Unknown name (the valid ones are listed), unknown option, missing fact; a scoped
            option naming an unknown weighter or a key that weighter does not accept.

    Example:
        >>> import sampleweight as sw, torch
        >>> w = sw.create_weighter("ohem+es", class_counts=torch.tensor([90, 10]), num_epochs=10, batch_size=4)
        >>> w = sw.create_weighter("ohem+es", class_counts=torch.tensor([90, 10]), num_epochs=10, batch_size=4,
        ...                        **{"es.normalize": "classes", "cb.normalize": "classes"})  # cb's is ignored
    """
    names = _split_names(name)
    facts = resolve_facts(options)
    entries = [lookup(registry, "weighters", n) for n in names]
    per_component = _component_options(entries, options, registry)
    weighters = [_build(entry, own, facts, "weighter") for entry, own in zip(entries, per_component, strict=True)]
    return weighters[0] if len(weighters) == 1 else ProductWeighter(weighters)


def check_weighter_options(
    name: str | Sequence[str], options: Mapping[str, Any], *, registry: Registry | None = None
) -> list[dict[str, Any]]:
    """Check a weighting's options without building it (no dataset facts needed); return each component's.

    Args:
        name: The weighting (``"ohem+es"`` or a list of names).
        options: Its options, unscoped (``normalize``) or scoped (``es.normalize``).
        registry: Where to look names up; default the process-wide registry.

    Returns:
        The options each component receives, in order.

    Raises:
        ConfigError: An unknown weighter (in the weighting or in a scoped option), an option no
            component accepts, a scoped key its weighter does not accept.
    """
    entries = [lookup(registry, "weighters", n) for n in _split_names(name)]
    per_component = _component_options(entries, options, registry)
    for entry, own in zip(entries, per_component, strict=True):
        typed_options(entry, own, "weighter")
    return per_component


SCOPE = "."
"""Separates the weighter from the key in a scoped option: ``es.normalize``."""


def _component_options(
    entries: Sequence[Registered], options: Mapping[str, Any], registry: Registry | None
) -> list[dict[str, Any]]:
    """Each component's options: the unscoped ones, then its own scoped ones over them (all checked)."""
    unscoped = {k: v for k, v in options.items() if SCOPE not in k}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if SCOPE not in key:
            continue
        weighter, _, option = key.partition(SCOPE)
        if not weighter or not option:
            raise ConfigError(f"malformed scoped weighter option {key!r}: write NAME.KEY, e.g. es.normalize")
        try:
            entry = lookup(registry, "weighters", weighter)
        except ConfigError as exc:
            raise ConfigError(f"weighter option {key!r}: {exc}") from None
        accepted = accepted_options(entry.factory)
        if accepted is not None and option not in accepted - set(FACTS):
            raise ConfigError(
                f"weighter option {key!r}: weighter {weighter!r} does not accept option {option!r}; "
                f"its options are: {', '.join(sorted(accepted - set(FACTS))) or '(none)'}"
            )
        scoped.setdefault(weighter, {})[option] = value
    _check_unused(unscoped, entries, "weighter")
    return [{**unscoped, **scoped.get(entry.name, {})} for entry in entries]


def create_loss(name: str, *, registry: Registry | None = None, **options: Any) -> nn.Module:
    """Create a per-sample loss by name: ``loss(model_output, targets [B]) -> losses [B]``.

    Args:
        name: A registered loss name (``"ce"``, ``"focal"``, ...).
        registry: Where to look the name up; default the process-wide registry.
        **options: Options of the loss (e.g. ``gamma``) and dataset facts it declares.

    Returns:
        The loss module.

    Raises:
        ConfigError: Unknown name (the valid ones are listed) or option.
    """
    entry = lookup(registry, "losses", name)
    facts = resolve_facts(options)
    _check_unused(options, [entry], "loss")
    return _build(entry, options, facts, "loss")


def check_options(
    kind: str, names: Sequence[str], options: Mapping[str, Any], *, registry: Registry | None = None
) -> None:
    """Check, creating nothing, that every name of ``kind`` is registered and some of them accepts every option.

    What `create_weighter` / `create_loss` check first, for a command line to report before any work.

    Args:
        kind: A registry kind (``"weighters"``, ``"losses"``, ...).
        names: The names the user chose (weights of several weighters multiply).
        options: The user's options for them (dataset facts are always accepted).
        registry: Where to look names up; default the process-wide registry.

    Raises:
        ConfigError: An unknown name (the valid ones listed) or an option none of them accepts (naming the
            registered ones of ``kind`` that take it: ``gamma is an option of: focal, hierarchical``).
        PluginError: A name several third-party plugins claim.
    """
    entries = [lookup(registry, kind, name) for name in names]
    try:
        _check_unused(options, entries, SINGULAR[kind])
    except ConfigError as error:
        raise ConfigError(f"{error}{_takers(registry, kind, options, entries)}") from None
    for entry in entries:
        typed_options(entry, options, SINGULAR[kind])


def check_task(kind: str, names: str | Sequence[str], task: str, *, registry: Registry | None = None) -> None:
    """Check that every name of ``kind`` serves ``task`` (its registration's ``tasks``, `Registry.tasks`).

    Args:
        kind: ``"losses"``, ``"weighters"`` or ``"samplers"``.
        names: The names chosen (a weighting such as ``"ohem+es"`` is split into its components).
        task: ``"multiclass"``, ``"binary"`` or ``"multilabel"``.
        registry: Where to look names up; default the process-wide registry.

    Raises:
        ConfigError: One line naming the first name that does not serve ``task``, the task, and those that do.

    Example:
        >>> check_task("losses", "bce", "binary")  # passes; ``"ce"`` would raise:
        >>> # ConfigError: loss 'ce' serves multiclass tasks, not this run's binary task; losses for binary: ...
    """
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    registry = registry or get_registry()
    for name in _split_names(names):
        lookup(registry, kind, name)
        served = registry.tasks(kind, name)
        if task not in served:
            fitting = sorted(other for other in registry.kind(kind) if task in registry.tasks(kind, other))
            raise ConfigError(
                f"{SINGULAR[kind]} {name!r} serves {', '.join(served)} tasks, not this run's {task} task; "
                f"{kind} for {task}: {', '.join(fitting) or '(none installed)'}"
            )


def create_sampler(
    name: str,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = False,
    min_part: int = 1,
    registry: Registry | None = None,
    **options: Any,
) -> ShardedSampler:
    """Create a sampler by name: what ``DataLoader(sampler=...)`` takes, sharded over the processes.

    The plugin's factory gives the global index sequence of each epoch; the returned `ShardedSampler`
    gives this process its disjoint share of it, with the same length on every process. Call
    ``set_epoch(epoch)`` before each epoch.

    Args:
        name: A registered sampler name (``"instance"``, ``"class_balanced"``, ``"sqrt"``, ...).
        num_replicas: The number of processes; default the initialised process group's size (1 without one).
        rank: This process's rank; default the process group's.
        drop_last: Drop a last global batch shorter than ``batch_size``, on every process.
        min_part: Drop a last global batch whose per-process parts would hold fewer indices than this.
        registry: Where to look the name up; default the process-wide registry.
        **options: Options of the sampler (e.g. ``num_samples``, the epoch length) and facts:
            ``targets`` (the training side's class indices, what every built-in needs), ``class_counts``,
            ``num_classes``, ``class_names``, ``num_epochs``, ``batch_size`` (the global batch: with it,
            the processes' parts of each global batch are contiguous, so that concatenated in rank order
            they are the global batch) and ``seed``.

    Returns:
        The `ShardedSampler` (its ``sampler`` attribute is the plugin's own object).

    Raises:
        ConfigError: Unknown name (the valid ones are listed), an option the sampler does not take, a
            missing or inconsistent fact, an empty class for a rebalancing sampler, a bad epoch length.
        PluginError: The factory returned something that is not a `Sampler`.

    Example:
        >>> import sampleweight as sw, torch
        >>> sampler = sw.create_sampler("class_balanced", targets=torch.tensor([0, 0, 0, 1]), seed=0)
        >>> sampler.set_epoch(0)
        >>> len(list(sampler))
        4
    """
    entry = check_sampler_options(name, options, registry=registry)
    facts = _sampler_facts(options)
    sampler = _build(entry, options, facts, "sampler", SAMPLER_FACTS)
    world = distributed.world_size() if num_replicas is None else num_replicas
    here = distributed.rank() if rank is None else rank
    sharded = ShardedSampler(
        sampler, num_replicas=world, rank=here, batch_size=facts.get("batch_size"), drop_last=drop_last,
        min_part=min_part,
    )  # fmt: skip
    sharded.name = entry.name
    return sharded


def check_sampler_options(name: str, options: Mapping[str, Any], *, registry: Registry | None = None) -> Registered:
    """Refuse an unknown sampler, or an option it does not take, before any data is read.

    Args:
        name: The sampler's name.
        options: Its options (facts such as ``targets`` or ``seed`` may be among them).
        registry: Where to look the name up; default the process-wide registry.

    Returns:
        The registered entry.

    Raises:
        ConfigError: Unknown name (the valid ones are listed) or option (the sampler's options are listed).
    """
    return _checked_entry("samplers", name, options, registry, SAMPLER_FACTS)


def create_mixer(name: str, *, registry: Registry | None = None, **options: Any) -> Mixer:
    """Create a batch mixer by name: ``mixer(images, targets, epoch=, step=) -> (images, soft targets)``.

    Args:
        name: A registered mixer name (``"none"``, ``"mixup"``, ``"cutmix"``, ``"mixup_cutmix"``, ``"remix"``, ...).
        registry: Where to look the name up; default the process-wide registry.
        **options: Options of the mixer (e.g. ``alpha``, ``off_epoch``) and facts: ``class_counts``,
            ``num_classes``, ``class_names``, ``num_epochs``, ``batch_size`` and ``seed`` (the base of its draws,
            which follow from ``(seed, epoch, step, rank)``).

    Returns:
        The `Mixer` (``sampleweight.mixing``).

    Raises:
        ConfigError: Unknown name (the valid ones are listed), an option the mixer does not take, a missing fact
            (e.g. ``num_classes``), a bad value.
        PluginError: The factory returned something that is not a `Mixer`.

    Example:
        >>> import sampleweight as sw, torch
        >>> mixer = sw.create_mixer("mixup", alpha=0.4, num_classes=3, seed=0)
        >>> images, soft = mixer(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), epoch=0, step=0)
        >>> soft.shape, torch.allclose(soft.sum(1), torch.ones(4))
        (torch.Size([4, 3]), True)
    """
    entry = check_mixer_options(name, options, registry=registry)
    return _build(entry, options, _sampler_facts(options), "mixer", MIXER_FACTS)


def check_mixer_options(name: str, options: Mapping[str, Any], *, registry: Registry | None = None) -> Registered:
    """Refuse an unknown mixer, or an option it does not take, before any data is read.

    Raises:
        ConfigError: Unknown name (the valid ones are listed) or option (the mixer's options are listed).
    """
    return _checked_entry("mixers", name, options, registry, MIXER_FACTS)


def create_optimizer(
    name: str, params: Iterable[Any], *, registry: Registry | None = None, **options: Any
) -> torch.optim.Optimizer:
    """Create an optimizer by name over ``params``.

    Args:
        name: A registered optimizer name (``"adam"``, ``"sgd"``, ``"sam"``, ``"imbsam"``, ...).
        params: The parameters (``model.parameters()``) or parameter groups.
        registry: Where to look the name up; default the process-wide registry.
        **options: Options of the optimizer (e.g. ``rho``) and facts: ``lr``, ``momentum``, ``weight_decay``,
            ``device`` (what the trainer passes from the run's options; a factory gets those its signature
            names), ``class_counts``, ``num_classes``, ``num_epochs``, ``batch_size``, ``class_names``.

    Returns:
        The optimizer. One registered ``closure=True`` (`default_lr`'s registry says so: ``registry.info(
        "optimizers", name)``) takes ``step(closure)``, where ``closure(classes=None)`` runs a forward and backward
        pass (``docs/training.md``).

    Raises:
        ConfigError: Unknown name (the valid ones are listed), an option it does not take, a bad value.
        PluginError: The factory failed, or returned something that is not a ``torch.optim.Optimizer``.

    Example:
        >>> import sampleweight as sw, torch
        >>> model = torch.nn.Linear(3, 2)
        >>> optimizer = sw.create_optimizer("sam", model.parameters(), lr=0.1, rho=0.05)
        >>> type(optimizer).__name__, optimizer.param_groups[0]["lr"]
        ('SharpnessAware', 0.1)
    """
    entry = check_optimizer_options(name, options, registry=registry)
    facts = resolve_facts(options)
    for key in ("lr", "momentum", "weight_decay"):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")
        facts[key] = value
    if options.get("device") is not None:
        facts["device"] = options["device"]
    return _build(entry, options, facts, "optimizer", OPTIMIZER_FACTS, positional=(params,))


def check_optimizer_options(name: str, options: Mapping[str, Any], *, registry: Registry | None = None) -> Registered:
    """Refuse an unknown optimizer, or an option it does not take, before any data is read.

    Args:
        name: The optimizer's name.
        options: Its options (facts such as ``lr`` may be among them).
        registry: Where to look the name up; default the process-wide registry.

    Returns:
        The registered entry.

    Raises:
        ConfigError: Unknown name (the valid ones are listed) or option (the optimizer's options are listed).
    """
    return _checked_entry("optimizers", name, options, registry, OPTIMIZER_FACTS, passed=("params",))


def default_lr(name: str, options: Mapping[str, Any], *, registry: Registry | None = None) -> float:
    """The default learning rate of optimizer ``name`` with ``options``: its registration's ``lr`` (a number, or a
    function of the options), else `DEFAULT_LR`.

    Example:
        >>> default_lr("adam", {}), default_lr("sam", {"base": "adam"})
        (1e-05, 1e-05)
    """
    value = lookup(registry, "optimizers", name).info.get("lr", DEFAULT_LR)
    return float(value(dict(options)) if callable(value) else value)


_KEYWORDS = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names a factory accepts; None when it takes ``**kwargs`` (accepts anything)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in _KEYWORDS}


def typed_options(
    entry: Registered, options: Mapping[str, Any], what: str, fact_names: Sequence[str] = FACTS
) -> dict[str, Any]:
    """Check each option against the type its factory's signature annotates it with; return the options to pass.

    An option is checked as pydantic's lax mode would (``2`` is a valid ``float``, ``"true"`` a valid ``bool``,
    ``"abc"`` is no number, ``2`` no ``bool``); the factory receives the option as given when the checked value
    equals it (so a valid option reaches it unchanged), else the checked value (``"false"`` becomes ``False``).
    Unannotated parameters, options the signature does not name (``**kwargs``) and facts (checked by
    `resolve_facts`) are left as they are; so is an annotation pydantic cannot check (or that does not resolve).

    Args:
        entry: The registered factory.
        options: The user's options for it (facts may be among them).
        what: What the factory builds, for the message (``"loss"``).
        fact_names: The names that are facts for this kind of plugin.

    Returns:
        ``options``, each checked option in the form the factory receives.

    Raises:
        ConfigError: An option of the wrong type, naming the plugin, the option, the expected type and the value.

    Example:
        >>> from sampleweight.plugins import get_registry
        >>> typed_options(get_registry().losses["focal"], {"gamma": 2}, "loss")
        {'gamma': 2}
    """
    hints = _annotations(entry.factory)
    checked = dict(options)
    for key, value in options.items():
        if key in fact_names or key not in hints:
            continue
        adapter = _adapter(hints[key])
        if adapter is None:
            continue
        try:
            valid = adapter.validate_python(value)
        except pydantic.ValidationError as error:
            reason = error.errors()[0]["msg"] if error.errors() else str(error)
            raise ConfigError(
                f"{what} {entry.name!r}: option {key} must be {_type_name(hints[key])}, "
                f"got {value!r} ({reason[:1].lower()}{reason[1:]})"
            ) from None
        if not _same(valid, value):
            checked[key] = valid
    return checked


def _annotations(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's annotated keyword parameters, string annotations resolved (those that do not resolve left out)."""
    try:
        signature = inspect.signature(factory, eval_str=True)
    except Exception:  # noqa: BLE001 - a name imported under TYPE_CHECKING only: resolve them one by one
        signature = inspect.signature(factory)
    target = inspect.unwrap(factory.__init__ if inspect.isclass(factory) else factory)
    namespace = getattr(target, "__globals__", None) or vars(sys.modules.get(getattr(factory, "__module__", ""), sys))
    hints: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        annotation = parameter.annotation
        if parameter.kind not in _KEYWORDS or annotation is inspect.Parameter.empty:
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # what typing.get_type_hints does, per parameter
            except Exception:  # noqa: BLE001 - an annotation that does not resolve stays unchecked
                continue
        hints[parameter.name] = annotation
    return hints


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    """A lax pydantic validator of ``annotation`` (a class it does not know: an isinstance check), or None."""
    if annotation is Any:
        return None
    try:
        return pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - a type pydantic cannot build a validator for stays unchecked
        return None


def _type_name(annotation: Any) -> str:
    """``float``, ``bool``, ``int | None``, ``Literal['classes', 'samples']``: a type as the user reads it."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return re.sub(r"\b(typing|collections\.abc|torch)\.", "", str(annotation)).replace("NoneType", "None")


def _same(valid: Any, given: Any) -> bool:
    """Whether the checked value is the value given (``2`` for a ``float`` is; ``"false"`` for a ``bool`` is not)."""
    if valid is given:
        return True
    try:
        return (type(valid) is type(given) and bool(valid == given)) or (
            isinstance(valid, int | float) and isinstance(given, int | float) and bool(valid == given)
        )
    except Exception:  # noqa: BLE001 - an ambiguous comparison (tensors): keep the checked value
        return False


def option_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The defaults a factory's signature gives its options: what an option not given is.

    Example:
        >>> def focal(gamma: float = 1.0, alpha=None, *, num_classes: int): ...
        >>> option_defaults(focal)
        {'gamma': 1.0, 'alpha': None}
    """
    params = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.kind in _KEYWORDS and p.default is not inspect.Parameter.empty}


def resolve_facts(options: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset facts among ``options``, checked, with ``num_classes`` derived where possible."""
    facts = {k: options[k] for k in FACTS if options.get(k) is not None}
    if "class_counts" in facts:
        counts = torch.as_tensor(facts["class_counts"])
        multilabel = counts.ndim == 2 and counts.shape[0] == 2  # [2, L]: negatives and positives per label
        if (
            (counts.ndim != 1 and not multilabel)
            or counts.numel() == 0
            or (counts.is_floating_point() and bool((counts != counts.round()).any()))
        ):
            raise ConfigError(
                f"class_counts must be a 1-D sequence of integer counts (or [2, L] for a multilabel task), got "
                f"{facts['class_counts']!r}"
            )
        counts = counts.long()
        if bool((counts < 0).any()) or int(counts.sum()) <= 0:
            raise ConfigError(f"class_counts must be >= 0 with a positive total, got {counts.tolist()}")
        facts["class_counts"] = counts
    sizes = {
        "class_counts": facts["class_counts"].shape[-1] if "class_counts" in facts else None,
        "class_names": len(facts["class_names"]) if "class_names" in facts else None,
        "num_classes": facts.get("num_classes"),
    }
    known = {k: v for k, v in sizes.items() if v is not None}
    if len(set(known.values())) > 1:
        raise ConfigError(f"the number of classes disagrees between {known}; pass consistent facts")
    if known:
        facts["num_classes"] = next(iter(known.values()))
    for key in ("num_classes", "num_epochs", "batch_size"):
        if key in facts and (not isinstance(facts[key], int) or isinstance(facts[key], bool) or facts[key] <= 0):
            raise ConfigError(f"{key} must be a positive integer, got {facts[key]!r}")
    return facts


def _sampler_facts(options: Mapping[str, Any]) -> dict[str, Any]:
    """`resolve_facts` plus ``targets`` (checked; ``class_counts`` derived from them) and ``seed``."""
    facts = resolve_facts(options)
    if options.get("seed") is not None:
        seed = options["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        facts["seed"] = seed
    if options.get("targets") is None:
        return facts
    targets = torch.as_tensor(options["targets"])
    if targets.ndim == 2:  # multi-hot labels [N, L] of a multilabel task: class_counts is the [2, L] table
        return _multi_hot_facts(facts, targets)
    if targets.ndim != 1 or targets.numel() == 0 or targets.is_floating_point() or bool((targets < 0).any()):
        raise ConfigError(
            "targets must be a non-empty 1-D sequence of class indices >= 0 (or a multi-hot matrix [N, L] of 0/1 "
            "for a multilabel task)"
        )
    targets = targets.long()
    classes = facts.get("num_classes", int(targets.max()) + 1)
    if int(targets.max()) >= classes:
        raise ConfigError(f"targets hold class {int(targets.max())}, but there are {classes} classes")
    counts = torch.bincount(targets, minlength=classes)
    if "class_counts" in facts and not torch.equal(facts["class_counts"], counts):
        raise ConfigError(
            f"class_counts {facts['class_counts'].tolist()} disagree with the targets' {counts.tolist()}; "
            "pass the training side's counts, or only targets"
        )
    facts.update(targets=targets, class_counts=counts, num_classes=classes)
    return facts


def _multi_hot_facts(facts: dict[str, Any], targets: torch.Tensor) -> dict[str, Any]:
    """`_sampler_facts` for multi-hot targets [N, L]: 0/1 checked, ``class_counts`` the [2, L] negatives/positives."""
    if targets.numel() == 0 or targets.is_complex() or not bool(((targets == 0) | (targets == 1)).all()):
        raise ConfigError(
            "targets must be class indices [N] or, for a multilabel task, a non-empty multi-hot matrix [N, L] of "
            "0/1 values"
        )
    counts = multi_hot_counts(targets)
    if "class_counts" in facts and not torch.equal(facts["class_counts"], counts):
        raise ConfigError(
            f"class_counts {facts['class_counts'].tolist()} disagree with the multi-hot targets' [negatives, "
            f"positives] per label {counts.tolist()}; pass the training side's counts, or only targets"
        )
    if facts.get("num_classes", targets.shape[1]) != targets.shape[1]:
        raise ConfigError(
            f"the multi-hot targets have {targets.shape[1]} labels, but num_classes is {facts['num_classes']}"
        )
    facts.update(targets=targets, class_counts=counts, num_classes=targets.shape[1])
    return facts


def _split_names(name: str | Sequence[str]) -> list[str]:
    parts = name.split("+") if isinstance(name, str) else [p for n in name for p in n.split("+")]
    names = [p.strip() for p in parts]
    if not names or any(not n for n in names):
        raise ConfigError(f"empty weighter name in {name!r}; use e.g. 'ohem' or 'ohem+es'")
    return names


def lookup(registry: Registry | None, kind: str, name: str) -> Registered:
    """The registered entry ``name`` of ``kind``.

    Raises:
        ConfigError: An unknown name (the valid ones are listed).
        PluginError: A name that several third-party plugins claim (they are named).
    """
    registry = registry or get_registry()
    table = registry.kind(kind)
    if name in table:
        return table[name]
    singular = SINGULAR[kind]
    rivals = registry.contested.get(kind, {}).get(name)
    if rivals:
        raise PluginError(
            f"{singular} {name!r} is registered by several plugins: "
            f"{' and '.join(claim.plugin.label for claim in rivals)}; none of them is used. Uninstall one, or "
            f"disable one with {DISABLE_ENV}=<plugin name> (`sampleweight plugins` lists them)"
        )
    close = difflib.get_close_matches(name, table, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if not any(info.builtin for info in registry.plugins):
        hint += " This registry has no built-ins: build it with plugins.load_plugins(..., builtins=True)."
    raise ConfigError(
        f"unknown {singular} {name!r}; choose one of: {', '.join(sorted(table)) or '(none registered)'}.{hint}"
        f" (`sampleweight plugins` lists what each plugin registers)"
    )


def _checked_entry(
    kind: str,
    name: str,
    options: Mapping[str, Any],
    registry: Registry | None,
    facts: Sequence[str],
    passed: Sequence[str] = (),
) -> Registered:
    """The registered ``kind`` plugin ``name``, its ``options`` checked: each one it takes (or a fact, or an argument
    ``passed`` to it directly, such as an optimizer's ``params``), each of the type its factory declares.

    Raises:
        ConfigError: Unknown name (the valid ones are listed), an option it does not take, a value of the wrong type.
    """
    entry = lookup(registry, kind, name)
    _check_unused(options, [entry], SINGULAR[kind], (*facts, *passed))
    typed_options(entry, options, SINGULAR[kind], facts)
    return entry


def _check_unused(
    options: Mapping[str, Any], entries: Sequence[Registered], what: str, facts: Sequence[str] = FACTS
) -> None:
    accepted: set[str] = set(facts)
    for entry in entries:
        names = accepted_options(entry.factory)
        if names is None:
            return
        accepted |= names
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = sorted(accepted - set(facts))
        label = "+".join(e.name for e in entries)
        raise ConfigError(
            f"{what} {label!r} does not accept option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(valid) or '(none)'}"
        )


def _takers(registry: Registry | None, kind: str, options: Mapping[str, Any], chosen: Sequence[Registered]) -> str:
    """``; KEY is an option of: NAME, ...`` for each option the chosen plugins do not take and others of ``kind``
    name in their factory's signature (empty when none does)."""
    table = (registry or get_registry()).kind(kind)
    taken = set().union(*(accepted_options(entry.factory) or set() for entry in chosen))
    hints = []
    for key in sorted(set(options) - taken):
        takers = sorted(name for name, entry in table.items() if key in (accepted_options(entry.factory) or ()))
        if takers:
            hints.append(f"; {key} is an option of: {', '.join(takers)}")
    return "".join(hints)


def _build(
    entry: Registered,
    options: Mapping[str, Any],
    facts: Mapping[str, Any],
    what: str,
    fact_names: Sequence[str] = FACTS,
    positional: Sequence[Any] = (),
) -> Any:
    """Call ``entry``'s factory with what it takes (after ``positional``: an optimizer's parameters), blaming a
    failure on whoever can fix it.

    The user's: a missing fact, options that do not fit the factory's signature, a ``ValueError`` the
    factory raises to reject a value (`ConfigError`). The plugin's: any other exception raised inside
    the factory, an ``AttributeError`` or a ``TypeError`` from its own body (`PluginError`, naming the
    plugin and its distribution, with the original exception chained).
    """
    kwargs = factory_arguments(entry.factory, typed_options(entry, options, what, fact_names), facts, fact_names)
    _check_required(entry, kwargs, what, len(positional))
    try:
        inspect.signature(entry.factory).bind(*positional, **kwargs)
    except TypeError as exc:  # the options do not fit the signature (a factory with positional-only parameters)
        raise ConfigError(f"{what} {entry.name!r}: {exc}") from None
    try:
        obj = entry.factory(*positional, **kwargs)
    except ValueError as exc:  # the factory's way to reject a value (ConfigError is one)
        raise ConfigError(f"{what} {entry.name!r}: {exc}") from exc
    except SampleWeightError:  # already names its culprit (e.g. a PluginError of a weighter built inside)
        raise
    except TypeError as exc:
        if not _forwarded_unknown_option(exc, entry.factory, options, fact_names):
            raise _plugin_bug(entry, what, exc) from exc
        raise ConfigError(f"{what} {entry.name!r}: {exc}") from exc
    except Exception as exc:
        raise _plugin_bug(entry, what, exc) from exc
    expected = PRODUCTS.get(what)
    if expected is not None and not expected[1](obj):
        raise PluginError(
            f"{what} {entry.name!r} of plugin {entry.plugin.label}: its factory returned {type(obj).__name__}, not "
            f"{expected[0]}; the factory must return one (tell the plugin's author)"
        )
    if what == "weighter":
        with contextlib.suppress(AttributeError):  # a read-only name stays as it is
            obj.name = entry.name
    return obj


def factory_arguments(
    factory: Callable[..., Any], options: Mapping[str, Any], facts: Mapping[str, Any], fact_names: Sequence[str] = FACTS
) -> dict[str, Any]:
    """The keyword arguments ``factory`` is called with: the facts its signature names, and the options.

    A factory with named parameters only gets the options and facts it names (the others are another
    component's, or facts it does not need); a factory taking ``**kwargs`` gets the facts it names and
    every option that is not a fact.

    Args:
        factory: The registered factory.
        options: The user's options (facts among them are replaced by their checked form in ``facts``).
        facts: The resolved dataset facts (`resolve_facts`).
        fact_names: The names that are facts for this kind of plugin (`FACTS`, `SAMPLER_FACTS`).

    Example:
        >>> def factory(class_counts, **options): ...
        >>> factory_arguments(factory, {"strength": 2, "num_epochs": 9}, {"class_counts": [3, 1], "num_epochs": 9})
        {'strength': 2, 'class_counts': [3, 1]}
    """
    params = inspect.signature(factory).parameters.values()
    named = {
        p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return {
        key: value
        for key, value in {**options, **facts}.items()
        if key in named or (takes_any and key not in fact_names)
    }


_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")


def _forwarded_unknown_option(
    exc: TypeError, factory: Callable[..., Any], options: Mapping[str, Any], fact_names: Sequence[str]
) -> bool:
    """Whether a factory taking ``**kwargs`` passed on one of the user's options to something that does not take it."""
    found = _UNEXPECTED_KEYWORD.search(str(exc))
    return (
        found is not None
        and found.group(1) in options
        and found.group(1) not in fact_names
        and accepted_options(factory) is None
    )


def _plugin_bug(entry: Registered, what: str, exc: BaseException) -> PluginError:
    cause = " ".join(describe(exc).split())  # one line, whatever the exception's message
    return PluginError(
        f"{what} {entry.name!r} of plugin {entry.plugin.label} failed while being created: {cause}; this is a bug "
        "in the plugin, not in your options: report it to the plugin's author"
    )


def _check_required(entry: Registered, kwargs: Mapping[str, Any], what: str, given: int = 0) -> None:
    params = list(inspect.signature(entry.factory).parameters.values())[given:]
    missing = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in kwargs
    ]
    if missing:
        explain = {
            "class_counts": "training-set counts per class",
            "num_epochs": "total training epochs",
            "batch_size": "the nominal batch size",
            "num_classes": "number of classes",
            "targets": "the training side's class indices",
        }
        needs = ", ".join(f"{m} ({explain[m]})" if m in explain else m for m in missing)
        raise ConfigError(f"{what} {entry.name!r} needs {needs}; pass {missing[0]}=...")
