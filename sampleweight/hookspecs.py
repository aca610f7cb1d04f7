"""The plugin hooks. Hooks only *register* things; nothing on the per-batch path goes through pluggy.

A plugin is a module declared under ``[project.entry-points.sampleweight]`` that implements any of
these hooks, decorated with ``sampleweight.hookimpl``. An implementation may take fewer arguments
than its spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "sampleweight"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The ``register`` callback a hook receives: ``register(name, factory, **info)``.

    ``info`` says what the registered thing is, with the documented keys of `sampleweight.plugins.INFO_KEYS`
    (every kind: ``summary``, ``default``; models: ``hierarchical``, ``taxonomy``, ``loss``, ``epochs``,
    ``published``; losses: ``bases``, ``rebalances``, ``tasks``; weighters and samplers: ``rebalances``, ``tasks``).
    The engine reads capabilities from there and never names a plugin.
    """

    def __call__(self, name: str, factory: Callable[..., Any], /, **info: Any) -> None: ...


@hookspec
def register_weighters(register: Register) -> None:
    """Register weighter factories.

    Args:
        register: ``register(name, factory, **info)``. ``name`` is lowercase snake_case and unique across all
            plugins. ``factory(**options)`` returns a `sampleweight.Weighter`; it is called with the
            user's options plus whichever dataset-level facts its signature names: ``class_counts``
            (LongTensor [C], training-set counts), ``num_classes``, ``num_epochs``, ``batch_size``,
            ``class_names``.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register per-sample loss factories.

    Args:
        register: ``register(name, factory, **info)``. ``factory(**options)`` returns an ``nn.Module`` mapping
            ``(model_output, targets [B])`` to per-sample losses [B] (no reduction). The factory
            receives dataset-level facts its signature names, as for weighters.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register timm-style model factories.

    Args:
        register: ``register(name, fn, **info)`` where ``fn(pretrained: bool = False, **kwargs) -> nn.Module``
            has the shape of a timm ``@register_model`` entry point. The model is added to timm's
            registry, so ``timm.create_model(name, ...)`` builds it after ``import sampleweight``. A model
            says what it is with ``info``: e.g. ``register("tree_net", tree_net, hierarchical=True,
            taxonomy={...}, loss="hierarchical", epochs=250)`` trains, evaluates and reports like the paper's
            hierarchical model, with no change to sampleweight.
    """


@hookspec
def register_samplers(register: Register) -> None:
    """Register sampler factories.

    Args:
        register: ``register(name, factory, **info)``. ``factory(**options)`` returns a `sampleweight.Sampler`
            (what ``DataLoader(sampler=...)`` takes: the global index sequence of the current epoch,
            deterministic from its seed and the epoch, with ``set_epoch`` and ``state_dict`` /
            ``load_state_dict``). It is called with the user's options plus whichever facts its
            signature names: ``targets`` (LongTensor [N], the training side's class indices),
            ``class_counts``, ``num_classes``, ``class_names``, ``num_epochs``, ``batch_size``, ``seed``.
            Sharding over processes is the library's job: the factory returns the global sequence.
    """


@hookspec
def register_mixers(register: Register) -> None:
    """Register batch-mixing factories (Mixup, CutMix, Remix, ...).

    Args:
        register: ``register(name, factory, **info)``. ``factory(**options)`` returns a `sampleweight.Mixer`:
            ``mixer(images, targets, *, epoch, step, rank=None) -> (images, targets)``, the mixed images and their
            class distributions [B, C] (or the class indices unchanged for a batch it does not mix), its draws
            following from ``(seed, epoch, step, rank)``. It is called with the user's options plus whichever
            facts its signature names: ``class_counts``, ``num_classes``, ``class_names``, ``num_epochs``,
            ``batch_size``, ``seed``.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizer factories.

    Args:
        register: ``register(name, factory, **info)``. ``factory(params, **options)`` returns a
            ``torch.optim.Optimizer`` over ``params`` (the trainable parameters, or parameter groups). It is
            called with the user's options plus whichever facts its signature names: the run's ``lr``,
            ``momentum``, ``weight_decay`` and ``device``, and ``class_counts``, ``num_classes``,
            ``num_epochs``, ``batch_size``, ``class_names``. ``info``: ``lr`` (the default learning rate),
            ``loss_scaled``, and ``closure=True`` for an optimizer whose ``step(closure)`` evaluates the loss
            several times per step (sharpness-aware minimisation; ``docs/plugins.md`` gives the contract), with
            ``splits_by_class=True`` when that closure is called with a class mask (a multilabel run refuses it).
    """
