"""What a run is made of, read from the plugin registry: its choices checked, its model built, its label tree,
the loss it trains with and its batch mixer.

Nothing here names a model or a loss: what a model is (hierarchical, its label tree, the loss it trains with, its
epochs) is what its registration says (``register(name, factory, **info)``, `sampleweight.plugins.INFO_KEYS`), so a
third party's model gets the same treatment as a built-in one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import timm
import torch
from torch import Tensor, nn

from sampleweight.engine.config import TrainConfig, default_name, refuse_facts
from sampleweight.engine.loader import check_sampler, label_tree
from sampleweight.errors import ConfigError
from sampleweight.factory import (
    MIXER_FACTS,
    accepted_options,
    check_mixer_options,
    check_optimizer_options,
    check_options,
    check_task,
    check_weighter_options,
    create_mixer,
    create_optimizer,
    list_models,
    list_optimizers,
    lookup,
    option_defaults,
)
from sampleweight.mixing import Mixer
from sampleweight.plugins import get_registry
from sampleweight.pretrained import download_message, weights_available
from sampleweight.taxonomy import Taxonomy

__all__ = [
    "build_mixer",
    "build_model",
    "check_choices",
    "check_mixer",
    "check_model",
    "check_weights",
    "is_hierarchical",
    "label_tree",
    "loss_plugin",
    "model_info",
    "model_outputs",
    "run_taxonomy",
    "taxonomy_of_model",
    "training_loss",
]


def model_info(model: str) -> Mapping[str, Any]:
    """What the registration of ``model`` says of it (empty for a timm model no plugin registered)."""
    return get_registry().info("models", model)


def is_hierarchical(model: str) -> bool:
    """Whether ``model`` decides along a label tree (its registration's ``hierarchical``): it takes a taxonomy,
    returns leaf log-probabilities, trains with its registered per-level loss, and has no single classifier for
    `sampleweight retrain` to learn again."""
    return bool(model_info(model).get("hierarchical"))


def check_choices(config: TrainConfig) -> None:
    """Check every name and option of a run against what is installed, creating nothing.

    The model (and its backbone), the loss, the weighter(s), the sampler and the mixer with their options (scoped
    ``NAME.KEY`` weighter options included), so that a mistake is reported before any data is read, any model built or
    any weight downloaded.

    Raises:
        ConfigError: An unknown name (the valid ones listed) or an option nothing accepts.
        PluginError: A name several third-party plugins claim.
    """
    check_model(config)
    check_run_task(config)
    loss, loss_options = training_loss(config, None)
    check_options("losses", [loss], loss_options)
    if loss != config.loss:  # a loss built on the run's (a hierarchical model's ce/focal): what that one takes
        check_options("losses", [config.loss], config.loss_options)
    check_weighter_options(config.weighters, config.weighter_options)  # scoped NAME.KEY options too
    check_sampler(config)
    check_mixer(config)
    check_optimizer(config)


def check_mixer(config: TrainConfig) -> None:
    """The mixer's name and options, checked before any image is read; the facts come from the run.

    Raises:
        ConfigError: An unknown mixer, an option it does not take, or a fact given as an option.
    """
    refuse_facts("mixer", config.mixer_options, MIXER_FACTS)
    check_mixer_options(config.mixer, config.mixer_options)


def build_mixer(config: TrainConfig, class_counts: Tensor, class_names: list[str]) -> Mixer:
    """The run's batch mixer, given the facts its factory names (its draws follow from the run's seed)."""
    return create_mixer(
        config.mixer,
        **config.mixer_options,
        class_counts=class_counts,
        class_names=class_names,
        num_epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
    )


def check_optimizer(config: TrainConfig) -> None:
    """The optimizer is registered and takes its options; the run's own settings are not among them.

    Raises:
        ConfigError: An unknown optimizer or option, or ``lr``, ``momentum``, ``weight_decay``, ``device`` given as an
            optimizer option (they are the run's ``--lr``, ... that every optimizer receives).
    """
    settings = sorted(set(config.optimizer_options) & set(RUN_SETTINGS))
    if settings:
        raise ConfigError(
            f"--optimizer-option {settings[0]}: {settings[0]} is a run option, which the optimizer receives; give "
            f"--{settings[0].replace('_', '-')} (or {settings[0]} in a config file) instead"
        )
    check_optimizer_options(config.optimizer, config.optimizer_options)


RUN_SETTINGS = ("lr", "momentum", "weight_decay", "device")
"""The run's options that every optimizer factory may name (`sampleweight.factory.OPTIMIZER_FACTS`)."""


def build_optimizer(
    config: TrainConfig, parameters: Iterable[Any], device: torch.device, **facts: Any
) -> torch.optim.Optimizer:
    """The run's optimizer over ``parameters``: its options, the run's lr, momentum, weight decay and device, and
    the data set's ``facts`` (``class_counts``, ``num_classes``, ...)."""
    return create_optimizer(
        config.optimizer,
        parameters,
        **config.optimizer_options,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        device=device,
        **facts,
    )


def class_balanced_weighter() -> str:
    """The built-in weighter registered ``class_balanced`` (Cui et al.'s class-balanced loss): what weight
    balancing's second stage (``retrain --method wb``) weights its loss with.

    Example:
        >>> class_balanced_weighter()
        'es'
    """
    names = get_registry().builtins_marked("weighters", "class_balanced")
    if not names:
        raise ConfigError("no class-balanced weighter: the registry has no built-ins (builtins=True loads them)")
    return names[0]


def splits_by_class(name: str) -> bool:
    """Whether optimizer ``name`` is registered ``splits_by_class=True``: its step keeps the samples of some classes
    only (``closure(classes=mask)``), which a multilabel task's samples, of several labels each, cannot serve."""
    return bool(get_registry().info("optimizers", name).get("splits_by_class"))


def takes_closure(name: str) -> bool:
    """Whether optimizer ``name`` is registered ``closure=True``: its step evaluates the loss through a closure."""
    return bool(get_registry().info("optimizers", name).get("closure"))


def loss_scaled(optimizer: str, options: Mapping[str, Any]) -> bool:
    """Whether optimizer ``optimizer``'s update with ``options`` scales with the loss (registration ``loss_scaled``).

    Example:
        >>> loss_scaled("sgd", {}), loss_scaled("adam", {}), loss_scaled("sam", {"base": "adam"})
        (True, False, False)
    """
    value = get_registry().info("optimizers", optimizer).get("loss_scaled", False)
    return bool(value(dict(options)) if callable(value) else value)


def check_run_task(config: TrainConfig) -> None:
    """The run's loss, weighter(s) and sampler serve its task (their registrations' ``tasks``), its model can give
    one logit per label, its mixer mixes nothing (a sigmoid task) and its optimizer does not split the loss by class
    (a multilabel task: registration ``splits_by_class``).

    Raises:
        ConfigError: One line naming what does not serve the task, and what does.
    """
    if config.task != "multiclass" and is_hierarchical(config.model):
        raise ConfigError(
            f"--task {config.task}: model {config.model!r} decides along a label tree, a multiclass task only; "
            "use a flat model"
        )
    check_task("losses", config.loss, config.task)
    check_task("weighters", config.weighters, config.task)
    check_task("samplers", config.sampler, config.task)
    if config.task != "multiclass" and config.mixer != default_name("mixers"):
        raise ConfigError(
            f"--mixer {config.mixer}: a mixer mixes class distributions, which a {config.task} task's sigmoid losses "
            f"do not take; use --mixer {default_name('mixers')} (or --task multiclass)"
        )
    if config.task == "multilabel" and splits_by_class(config.optimizer):
        others = sorted(name for name in list_optimizers() if not splits_by_class(name))
        raise ConfigError(
            f"--optimizer {config.optimizer}: it splits the loss by class, and a multilabel image has several labels, "
            f"no one class; use one of {', '.join(others)} (or --task binary)"
        )


def model_outputs(task: str, classes: tuple[str, ...]) -> int:
    """How many logits a run's model gives: one per class (multiclass), one (binary) or one per label."""
    return 1 if task == "binary" else len(classes)


def check_model(config: TrainConfig) -> None:
    """The model is sampleweight's or timm's, and ``backbone`` a timm model given only to ours.

    Raises:
        ConfigError: Naming similar models.
    """
    ours = list_models()
    if not timm.is_model(config.model):
        similar = timm.list_models(f"*{config.model}*")[:8]
        hint = f"; similar timm models: {', '.join(similar)}" if similar else ""
        raise ConfigError(
            f"unknown model {config.model!r}; sampleweight's models: {', '.join(ours)}, or any timm model "
            f"(timm.list_models()){hint}"
        )
    if config.backbone is None:
        return
    if config.model not in ours:
        raise ConfigError(f"--backbone applies to {', '.join(ours)}; {config.model!r} is a timm model")
    source, _ = timm.models.parse_model_name(config.backbone)
    if not (source or timm.is_model(config.backbone)):  # hf-hub:/local-dir: names are timm's to resolve
        close = difflib.get_close_matches(config.backbone, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ConfigError(f"unknown timm backbone {config.backbone!r}{hint}")


def check_weights(config: TrainConfig) -> None:
    """The pretrained weights a run downloads can be had (cached, or their host reachable), before any data is read.

    The weights are the backbone's for sampleweight's models (``--backbone``, else the default its factory or model
    class names), the model's own for a timm model. Nothing to check without ``--pretrained``, with
    ``--pretrained-path``, or for a registered model whose default backbone cannot be told (its build then checks).

    Raises:
        ConfigError: The weights are not cached and their host cannot be reached (what to do instead).
    """
    if not config.pretrained or config.pretrained_path is not None:
        return
    name = config.model
    if config.model in list_models():
        name = config.backbone or _default_backbone(config.model) or ""
    if not name:
        return
    with weights_available(name):  # raises at once offline; otherwise nothing happens here
        pass


def _default_backbone(model: str) -> str | None:
    """The ``backbone`` default of a registered model: its factory's, else that of the class the factory returns."""
    factory = lookup(None, "models", model).factory
    default = option_defaults(factory).get("backbone")
    if default is None:
        try:
            returned = inspect.signature(factory, eval_str=True).return_annotation
        except (NameError, TypeError, ValueError):
            return None
        default = option_defaults(returned).get("backbone") if inspect.isclass(returned) else None
    return default if isinstance(default, str) else None


def build_model(config: TrainConfig, num_classes: int, taxonomy: Taxonomy | None = None) -> nn.Module:
    """``timm.create_model`` with the config's model, backbone, dropout and pretrained weights.

    The model's name and backbone are the caller's to check first (`check_model`, or `check_choices` for a
    whole run), once.
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": config.drop_rate}
    if taxonomy is not None:
        kwargs["taxonomy"] = taxonomy
    ours = config.model in list_models()
    if config.backbone is not None:
        kwargs["backbone"] = config.backbone
    if config.pretrained_path is not None:
        if ours:
            kwargs["pretrained_path"] = str(config.pretrained_path)
        else:
            kwargs["pretrained_cfg_overlay"] = {"file": str(config.pretrained_path)}
    pretrained = config.pretrained or config.pretrained_path is not None
    if ours or not pretrained or config.pretrained_path is not None:  # our models check their backbone's weights
        return timm.create_model(config.model, pretrained=pretrained, **kwargs)
    try:
        with weights_available(config.model):  # fails in seconds offline, instead of after the Hub's retries
            return timm.create_model(config.model, pretrained=True, **kwargs)
    except OSError as error:
        raise ConfigError(download_message(config.model, error)) from error


def run_taxonomy(config: TrainConfig, classes: tuple[str, ...]) -> Taxonomy | None:
    """The run's label tree in the data's class order, or None when neither its model nor its loss takes one.

    The tree is the run's ``taxonomy`` option, else its model's registered one, else ISIC 2018's.
    """
    loss = loss_plugin(config.model, config.loss)
    if not (is_hierarchical(config.model) or _takes_taxonomy(loss) or config.taxonomy is not None):
        return None
    return label_tree(config.model, config.taxonomy, classes)


def taxonomy_of_model(config: TrainConfig, classes: tuple[str, ...]) -> Taxonomy | None:
    """The label tree the model takes (hierarchical models only), in the data's class order."""
    return run_taxonomy(config, classes) if is_hierarchical(config.model) else None


def loss_plugin(model: str, loss: str) -> str:
    """The registered loss a run of ``model`` with ``loss`` trains with.

    A model that registers a ``loss`` (a hierarchical model: its per-level loss, Eq. 10) trains with that loss
    when the run's ``loss`` is one of its ``bases``, given as its ``base``; any other pair trains with ``loss``.
    """
    wrapper = model_info(model).get("loss")
    if wrapper is not None and loss in get_registry().info("losses", wrapper).get("bases", ()):
        return wrapper
    return loss


def training_loss(config: TrainConfig, taxonomy: Taxonomy | None) -> tuple[str, dict[str, Any]]:
    """The loss a run trains with (`loss_plugin`) and its options.

    A wrapping loss gets the run's loss as its ``base``; a loss whose factory names ``taxonomy`` gets the run's
    label tree (`run_taxonomy`; None while the options are only being checked).
    """
    options: dict[str, Any] = dict(config.loss_options)
    name = loss_plugin(config.model, config.loss)
    if name != config.loss:
        options["base"] = config.loss
    if _takes_taxonomy(name):
        options["taxonomy"] = taxonomy
    return name, options


def _takes_taxonomy(loss: str) -> bool:
    """Whether the loss's factory names ``taxonomy`` (a per-level loss over a label tree)."""
    if loss not in get_registry().losses:
        return False
    return "taxonomy" in (accepted_options(lookup(None, "losses", loss).factory) or ())
