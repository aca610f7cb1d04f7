"""Contract checks for plugins: call them from your own tests.

``check_weighter``, ``check_loss``, ``check_sampler``, ``check_mixer``, ``check_model`` and ``check_optimizer``
build a plugin the way sampleweight does and run it through what the library relies on (``docs/plugins.md``). A
broken rule raises ``AssertionError`` naming the rule (a short, stable name), what the rule asks and what was
seen, e.g.::

    weighter rule 'finite-nonnegative' (weights are finite and >= 0): MyWeighter returned NaN or infinite
    weights at batch positions [0] of a batch of 8 (float32 losses, classes [0, 1, 3]) at epoch 0, step 0

The rules of each kind are listed in `WEIGHTER_RULES`, `LOSS_RULES`, `SAMPLER_RULES`, `MIXER_RULES`,
`MODEL_RULES` and `OPTIMIZER_RULES`.

A check takes the factory you register, called as sampleweight calls it: with your options plus the
dataset facts its signature names (``class_counts``, ``num_classes``, ``num_epochs``, ``batch_size``,
``class_names``; a sampler's also ``targets`` and ``seed``, a mixer's ``seed``). Facts you do not give have small
defaults: class counts halving from 30 (``[30, 15, 8, 4]`` for the default 4 classes), 5 epochs, batches of 8, seed 0,
and training targets with those counts. The weighter, loss, sampler and mixer checks take a built object too.

The loss and sampler checks take the ``task`` a plugin serves (its ``tasks`` registration; check each): for
``"multilabel"`` the targets are multi-hot ``[N, L]`` (0/1) and ``class_counts`` the ``[2, L]`` table whose column
``l`` holds the images without label ``l`` and those with it, what a multilabel run passes.

The checks run on the CPU (and also on CUDA where there is one, for weighters and losses), in about a
second each; a model check builds the model twice, on a ``(2, 3, 64, 64)`` input by default. They leave
the global random state as they found it.

Example:
    >>> import torch, sampleweight as sw
    >>> from sampleweight.testing import check_weighter
    >>> class Halves(sw.BaseWeighter):
    ...     def forward(self, batch):
    ...         return torch.full_like(batch.losses, 0.5)
    >>> check_weighter(Halves)
    >>> class Negative(sw.BaseWeighter):
    ...     def forward(self, batch):
    ...         return -torch.ones_like(batch.losses)
    >>> check_weighter(Negative)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: weighter rule 'finite-nonnegative' (weights are finite and >= 0): Negative returned negative ...
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from sampleweight.errors import describe
from sampleweight.factory import FACTS, MIXER_FACTS, OPTIMIZER_FACTS, SAMPLER_FACTS, factory_arguments, resolve_facts
from sampleweight.functional import multi_hot_counts
from sampleweight.mixing import Mixer
from sampleweight.sampling import Sampler
from sampleweight.taxonomy import Taxonomy, as_taxonomy
from sampleweight.weighting import Weighter, WeightingBatch

__all__ = [
    "CHECK_TAXONOMY",
    "LOSS_RULES",
    "MIXER_RULES",
    "MODEL_RULES",
    "OPTIMIZER_RULES",
    "SAMPLER_RULES",
    "TINY_BACKBONE",
    "WEIGHTER_RULES",
    "check_loss",
    "check_mixer",
    "check_model",
    "check_optimizer",
    "check_sampler",
    "check_weighter",
    "default_facts",
]

DEFAULT_NUM_CLASSES = 4
DEFAULT_NUM_EPOCHS = 5
DEFAULT_BATCH_SIZE = 8
TINY_BACKBONE = "test_resnet"
"""The timm backbone `check_model` gives a factory that takes ``backbone`` (timm's tiny test network)."""
CHECK_TAXONOMY = Taxonomy({"x": ["a", "b"], "y": ["c", {"z": ["d", "e"]}]})
"""The label tree `check_model` gives a hierarchical model by default: 5 classes, 3 levels (not ISIC 2018's, so
that a model ignoring ``taxonomy=`` is caught)."""

WEIGHTER_RULES: dict[str, str] = {
    "factory": "the factory builds a weighter from the facts its signature names and the options given",
    "protocol": "a sampleweight.Weighter: callable on a WeightingBatch, with state_dict() and load_state_dict()",
    "call": (
        "it weights every batch without raising: full, short and one-sample batches, classes absent from a "
        "batch, every epoch, float32/float64/bfloat16 losses, a mixed batch (soft_targets set)"
    ),
    "shape": "one weight per sample: a Tensor of shape [B]",
    "dtype": "floating-point weights",
    "device": "weights on the device of the losses",
    "finite-nonnegative": "weights are finite and >= 0",
    "no-grad": "weights carry no gradient (requires_grad False, no autograd graph)",
    "inputs-unchanged": (
        "the batch's losses, targets and indices are left unchanged (the losses share memory with the ones "
        "being trained)"
    ),
    "deterministic": (
        "the same batches give the same weights: they follow from the batch, the epoch and the weighter's own "
        "state, not from the global random state (under DDP every process weights the global batch and must agree)"
    ),
    "state-dict": (
        "state_dict(), saved with torch.save and loaded into a fresh weighter with load_state_dict(), gives the "
        "same weights on the batches that follow (a resumed run weights as an uninterrupted one)"
    ),
}
"""The rules `check_weighter` checks: name -> what it asks."""

LOSS_RULES: dict[str, str] = {
    "factory": "the factory builds a loss from the facts its signature names and the options given",
    "module": "an nn.Module (sampleweight moves it to the device with the rest)",
    "call": "loss(logits [B, C], targets [B]) runs for full, short and one-sample batches in float32/64 and bfloat16",
    "shape": "per-sample losses, no reduction: a Tensor of shape [B]",
    "dtype": "floating-point losses, not narrower than the logits (float64 logits give float64 losses)",
    "device": "losses on the device of the logits",
    "finite": "finite losses on random logits",
    "gradient": "backward() of the losses gives the logits a finite, non-zero gradient",
    "per-sample": "a sample's loss depends on that sample alone (changing one sample's logits changes no other loss)",
    "inputs-unchanged": "the logits and targets are left unchanged",
    "soft-targets": (
        "a loss that declares soft targets (soft_targets=True) runs on class distributions [B, C], and a one-hot "
        "distribution gives the losses and the gradient of its class indices"
    ),
}
"""The rules `check_loss` checks: name -> what it asks."""

SAMPLER_RULES: dict[str, str] = {
    "factory": "the factory builds a sampler from the facts its signature names and the options given",
    "protocol": "a sampleweight.Sampler: __iter__, __len__, set_epoch(), state_dict() and load_state_dict()",
    "call": "set_epoch(), iteration, len() and loading through a torch DataLoader(sampler=...) run without raising",
    "indices": (
        "it yields integer dataset indices in range(N), N the number of training images (targets [N], or the rows of "
        "multi-hot targets [N, L])"
    ),
    "length": (
        "len() is the number of indices an epoch yields, and > 0, from set_epoch() on (a DataLoader reads it before "
        "iterating)"
    ),
    "deterministic": (
        "the sequence of an epoch follows from the seed and the epoch only: the same when iterated again, when "
        "loaded through a DataLoader, and from a sampler created again with the same seed (epochs in any order)"
    ),
    "set-epoch": "a random sampler draws a new sequence each epoch (one whose seed changes its sequence)",
    "state-dict": (
        "state_dict(), saved with torch.save and loaded into a fresh sampler with load_state_dict(), gives the same "
        "sequences in the epochs that follow"
    ),
}
"""The rules `check_sampler` checks: name -> what it asks."""

MIXER_RULES: dict[str, str] = {
    "factory": "the factory builds a mixer from the facts its signature names and the options given",
    "protocol": "a sampleweight.Mixer: mixer(images, targets, *, epoch, step, rank), state_dict(), load_state_dict()",
    "call": "it mixes full, odd-sized short and one-sample batches of every epoch, on ranks 0 and 1, without raising",
    "images": "the mixed images are a tensor of the batch's shape, dtype and device",
    "targets": (
        "the targets are the class indices unchanged, or class distributions [B, C]: floating-point, finite, >= 0, "
        "rows summing to 1, on the targets' device"
    ),
    "batch-classes": "a distribution puts mass only on classes of the batch (a mix of the batch's own samples)",
    "inputs-unchanged": "the batch's images and targets are left unchanged",
    "deterministic": (
        "the same batch, epoch, step and rank give the same images and targets, whatever the global random state "
        "(draw from (seed, epoch, step, rank): a resumed run mixes as an uninterrupted one)"
    ),
    "global-random-state": (
        "a call leaves the global random generators (torch, numpy, random) as it found them (dropout and the "
        "other draws of a run do not depend on the mixing)"
    ),
    "state-dict": (
        "state_dict(), saved with torch.save and loaded into a fresh mixer with load_state_dict(), gives the same "
        "mixing on the batches that follow"
    ),
}
"""The rules `check_mixer` checks: name -> what it asks."""

MODEL_RULES: dict[str, str] = {
    "factory": "fn(pretrained=False, num_classes=C, **options) builds the model (hierarchical: with taxonomy= too)",
    "module": "the factory returns an nn.Module",
    "forward": "forward(x) runs on a batch of images in train and eval mode",
    "output-shape": "forward(x) returns a Tensor [B, num_classes]",
    "finite": "finite outputs on random images",
    "eval-mode": "in eval mode the same images give the same outputs (dropout and the like are off)",
    "gradients": (
        "a loss on the outputs gives every trainable parameter a finite gradient (DistributedDataParallel "
        "fails on a parameter that takes no part)"
    ),
    "state-dict": "state_dict(), saved and loaded into a fresh model (strict), gives the same outputs in eval mode",
    "channels-last": "channels_last images and weights give the same outputs (within float tolerance)",
    "log-probabilities": "a hierarchical model returns leaf log-probabilities: logsumexp over the classes is 0",
    "taxonomy": "a hierarchical model takes taxonomy= and predicts that taxonomy's classes, in its order",
}
"""The rules `check_model` checks: name -> what it asks."""

OPTIMIZER_RULES: dict[str, str] = {
    "factory": "factory(params, **options) builds an optimizer from the parameters, the facts its signature names "
    "(lr, momentum, weight_decay, device, class_counts, ...) and the options given",
    "optimizer": "a torch.optim.Optimizer whose parameter groups hold exactly the parameters given",
    "closure": (
        "registered closure=True: step(closure) calls closure(classes=None) (classes a bool mask over the classes, "
        "or None) and needs it; registered without: step() takes a plain step after one backward pass"
    ),
    "step": "a step leaves finite parameters, and moves them",
    "descent": "steps on a convex quadratic with a small learning rate lower its loss",
    "deterministic": "the same start and steps give the same parameters (every DDP process must step alike)",
    "state-dict": (
        "state_dict(), saved with torch.save and loaded into a fresh optimizer with load_state_dict(), gives the "
        "same parameters after the steps that follow (a resumed run steps as an uninterrupted one)"
    ),
}
"""The rules `check_optimizer` checks: name -> what it asks."""


# -- public checks ---------------------------------------------------------------------------------------


def check_weighter(factory_or_weighter: Callable[..., Any] | Weighter, **facts_and_options: Any) -> None:
    """Check that a weighter keeps the contract sampleweight relies on (`WEIGHTER_RULES`).

    The weighter weights batches of every epoch ``0 .. num_epochs - 1`` (their first batches and the short
    last one, with dataset indices), plus batches of one sample, of one class only, of float64 and bfloat16
    losses, and a mixed batch (``soft_targets`` [B, C] beside the hard ``targets``, as a mixer gives; for a
    weighter built beforehand, when the facts say its classes); each result is checked. Then two weighters
    built alike must agree, and one restored from another's state dict must continue as the original.

    Args:
        factory_or_weighter: The factory you register (called with the facts its signature names and the
            options), or a built weighter (copied, never modified).
        **facts_and_options: Dataset facts (``class_counts``, ``num_classes``, ``num_epochs``,
            ``batch_size``, ``class_names``; defaults in `default_facts`) and the factory's options.

    Raises:
        AssertionError: A broken rule, named in the message (``weighter rule 'shape' ...``).
        TypeError: Options given with a built weighter, or options the factory does not take.

    Example:
        >>> import torch, sampleweight as sw
        >>> class ClassWeights(sw.BaseWeighter):
        ...     def __init__(self, class_counts, power=0.5):
        ...         super().__init__()
        ...         self.register_buffer("table", class_counts.sum() / class_counts.clamp_min(1).double() ** power)
        ...     def forward(self, batch):
        ...         return self.table.to(batch.losses)[batch.targets]
        >>> check_weighter(ClassWeights, power=1.0, class_counts=[90, 9, 1])
    """
    facts, options = _facts(facts_and_options)
    check = _Checker("weighter", WEIGHTER_RULES, _name(factory_or_weighter))
    make = _maker(check, factory_or_weighter, facts, options, FACTS, lambda obj: isinstance(obj, Weighter))
    # soft targets are [B, C]: a weighter built beforehand gets them when the facts say its classes
    built = isinstance(factory_or_weighter, Weighter) and not isinstance(factory_or_weighter, type)
    classes_known = not built or bool({"class_counts", "num_classes", "targets"} & set(facts_and_options))
    batches, resume_at = _weighting_batches(facts, mixed=classes_known)
    with torch.random.fork_rng(devices=[]):
        runs = []
        for run in range(2):  # built alike, then run under another global random state
            torch.manual_seed(0)
            weighter = make()
            check.require(
                isinstance(weighter, Weighter),
                "protocol",
                f"built {type(weighter).__name__}, which lacks "
                f"{_missing(weighter, ('__call__', 'state_dict', 'load_state_dict'))}; subclass sw.BaseWeighter",
            )
            torch.manual_seed(1000 + run)
            runs.append(_weigh(check, weighter, batches, validate=run == 0))
        for batch, first, second in zip(batches, *runs, strict=True):
            check.require(
                _same(first, second),
                "deterministic",
                f"gave different weights to the same {_where(batch)} in two runs ({_show(first)} and "
                f"{_show(second)}); seed any randomness from the batch and the epoch (a torch.Generator), not "
                "from the global random state",
            )
        torch.manual_seed(0)
        original = make()
        _weigh(check, original, batches[:resume_at], validate=False)
        state = _saved(check, original.state_dict)
        torch.manual_seed(0)
        restored = make()
        try:
            restored.load_state_dict(state)
        except Exception as exc:
            raise check.broken("state-dict", f"load_state_dict() raised {describe(exc)}") from exc
        later = batches[resume_at:]
        expected = _weigh(check, original, later, validate=False)
        for batch, want, got in zip(later, expected, _weigh(check, restored, later, validate=False), strict=True):
            check.require(
                _same(want, got),
                "state-dict",
                f"restored from the state dict gives {_show(got)} where the original gives {_show(want)} on the "
                f"{_where(batch)}; save whatever the weights depend on in state_dict() (BaseWeighter: buffers, or "
                "get_extra_state()/set_extra_state())",
            )
        if torch.cuda.is_available():
            weighter = make()
            if isinstance(weighter, nn.Module):
                weighter.to("cuda")  # as WeightedLoss.to(device) moves it
            _weigh(check, weighter, [_moved(batch, "cuda") for batch in batches[:resume_at]], validate=True)


def check_loss(
    factory_or_loss: Callable[..., Any] | nn.Module,
    *,
    soft_targets: bool | None = None,
    task: str = "multiclass",
    **facts_and_options: Any,
) -> None:
    """Check that a per-sample loss keeps the contract sampleweight relies on (`LOSS_RULES`).

    The loss gets random logits ``[B, C]`` (``C = num_classes``) and class-index targets for a full batch, a
    short one and one sample, in float32, float64 and bfloat16; each result and its gradient are checked,
    and one sample's logits are changed to check that the other losses do not move. A loss that takes soft
    targets also gets class distributions (random ones, and one-hot ones compared with the class indices, in
    float64, with a class absent and with one sample).

    Args:
        factory_or_loss: The factory you register (called with the facts its signature names and the
            options), or a built loss module.
        soft_targets: Whether the loss takes class distributions [B, C] as targets (say what you register:
            ``register(name, factory, soft_targets=True)``); default: the built module's ``soft_targets``
            attribute, False without one.
        task: The task the loss serves (what you register as ``tasks``; check each): ``"multiclass"`` (logits [B, C],
            class indices), ``"binary"`` (one logit [B, 1], targets 0/1 [B]; default counts ``[30, 15]`` as
            ``[N_negative, N_positive]``) or ``"multilabel"`` (logits [B, C], targets 0/1 [B, C]; default counts
            [2, C], column ``c`` the negatives and positives of label ``c``).
        **facts_and_options: Dataset facts (``class_counts``, ``num_classes``, ``num_epochs``,
            ``batch_size``, ``class_names``; defaults in `default_facts`) and the factory's options.

    Raises:
        AssertionError: A broken rule, named in the message (``loss rule 'shape' ...``).
        TypeError: Options given with a built loss, or options the factory does not take.

    Example:
        >>> import torch.nn.functional as F
        >>> from torch import nn
        >>> class SquaredError(nn.Module):
        ...     def forward(self, logits, targets):
        ...         one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        ...         return (logits.softmax(1) - one_hot).pow(2).sum(1)
        >>> check_loss(SquaredError)
    """
    if task not in ("multiclass", "binary", "multilabel"):
        raise ValueError(f"task must be multiclass, binary or multilabel, got {task!r}")
    if task == "binary" and facts_and_options.get("class_counts") is None:
        facts_and_options = {"class_counts": torch.tensor([30, 15]), **facts_and_options}
    facts, options = _facts(facts_and_options)
    if task == "multilabel" and facts_and_options.get("class_counts") is None:
        positives = torch.tensor([max(1, round(30 * 0.5 ** (c + 1))) for c in range(facts["num_classes"])])
        facts["class_counts"] = torch.stack([60 - positives, positives])
    check = _Checker("loss", LOSS_RULES, _name(factory_or_loss))
    make = _maker(check, factory_or_loss, facts, options, FACTS, lambda obj: isinstance(obj, nn.Module))
    classes, size = facts["num_classes"], facts["batch_size"]
    outputs = 1 if task == "binary" else classes
    cases = [(size, torch.float32, "cpu"), (1, torch.float32, "cpu"), (max(size // 2, 2), torch.float32, "cpu")]
    cases += [(size, torch.float64, "cpu"), (size, torch.bfloat16, "cpu")]
    if torch.cuda.is_available():
        cases.append((size, torch.float32, "cuda"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        loss = make()
        check.require(
            isinstance(loss, nn.Module),
            "module",
            f"built {type(loss).__name__}; a loss is an nn.Module mapping (logits, targets) to losses [B]",
        )
        generator = torch.Generator().manual_seed(0)
        for index, (batch, dtype, device) in enumerate(cases):
            logits = (torch.randn(batch, outputs, generator=generator) * 3).to(device, dtype).requires_grad_()
            if task == "multilabel":
                targets = (torch.rand(batch, classes, generator=generator) < 0.4).float().to(device)
            else:
                targets = _class_targets(batch, classes, generator).to(device)
            where = f"logits [{batch}, {outputs}] ({str(dtype).removeprefix('torch.')}, {device}, {task} task)"
            losses = _loss_values(check, loss.to(device), logits, targets, where)
            _check_gradient(check, logits, losses, where, nonzero=index == 0)
            if index == 0:
                _check_per_sample(check, loss, logits.detach(), targets, losses.detach(), generator, where)
        takes_soft = getattr(loss, "soft_targets", False) is True if soft_targets is None else soft_targets
        if task == "multiclass" and takes_soft:
            loss.to("cpu")
            for batch in (size, 1):
                _check_soft_targets(check, loss, batch, classes, generator)


def check_sampler(
    factory_or_sampler: Callable[..., Any] | Sampler, *, task: str = "multiclass", **facts_and_options: Any
) -> None:
    """Check that a sampler keeps the contract sampleweight relies on (`SAMPLER_RULES`).

    Every epoch ``0 .. num_epochs - 1`` is drawn, checked, drawn again and loaded through a
    ``DataLoader(sampler=...)``; a sampler created again (visiting the epochs backwards) and one restored from
    a state dict must draw the same sequences.

    Args:
        factory_or_sampler: The factory you register (called with the facts its signature names, ``targets``
            and ``seed`` among them, and the options), or a built sampler (copied, never modified).
        task: The task the sampler serves (what you register as ``tasks``; check each). ``"multiclass"``: class
            indices [N]. ``"binary"``: 0/1 class indices [N] (default counts ``[30, 15]``, negatives and positives).
            ``"multilabel"``: multi-hot targets [N, L] of 0/1, and ``class_counts`` the [2, L] table (column ``l``:
            the images without label ``l``, the images with it; each column sums to N); ``num_classes`` is L. By
            default 60 images and L = 4 labels held by 15, 8, 4 and 2 of them (drawn from the seed), so that some
            images hold no label and some several. Given ``class_counts`` [2, L], images with those counts are drawn.
        **facts_and_options: Facts (``targets``, ``class_counts``, ``num_classes``, ``num_epochs``,
            ``batch_size``, ``class_names``, ``seed``; defaults in `default_facts`) and the factory's options.

    Raises:
        AssertionError: A broken rule, named in the message (``sampler rule 'indices' ...``).
        TypeError: Options given with a built sampler, or options the factory does not take.
        ValueError: An unknown task, or facts that do not fit it (multi-hot targets for a task other than
            multilabel, class indices for multilabel, targets and class counts that disagree).

    Example:
        >>> import torch, sampleweight as sw
        >>> class Shuffled(sw.BaseSampler):
        ...     def __init__(self, targets, seed=0):
        ...         super().__init__(len(targets), seed)
        ...     def epoch_indices(self, epoch):
        ...         return torch.randperm(self.num_samples, generator=self.generator(epoch))
        >>> check_sampler(Shuffled, targets=torch.tensor([0, 0, 0, 1, 1, 2]))
        >>> check_sampler(Shuffled, task="multilabel", targets=torch.tensor([[1, 0], [1, 1], [0, 0]]))
    """
    facts, options = _facts(facts_and_options, task=task)
    check = _Checker("sampler", SAMPLER_RULES, _name(factory_or_sampler))
    make = _maker(check, factory_or_sampler, facts, options, SAMPLER_FACTS, _is_built_sampler)
    size, batch_size = len(facts["targets"]), facts["batch_size"]
    epochs = _epochs(facts["num_epochs"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sampler = make()
        check.require(
            isinstance(sampler, Sampler),
            "protocol",
            f"built {type(sampler).__name__}, which lacks "
            f"{_missing(sampler, ('__iter__', '__len__', 'set_epoch', 'state_dict', 'load_state_dict'))}; "
            "subclass sw.BaseSampler",
        )
        drawn: dict[int, list[int]] = {}
        for epoch in epochs:
            torch.manual_seed(100 + epoch)
            _call(check, lambda: sampler.set_epoch(epoch), f"set_epoch({epoch})")  # noqa: B023 - called at once
            announced = _call(check, lambda: len(sampler), f"len() in epoch {epoch}")
            drawn[epoch] = sequence = _draw(check, sampler, epoch, set_epoch=False)
            _check_indices(check, sequence, size, epoch)
            length = _call(check, lambda: len(sampler), f"len() in epoch {epoch}")
            check.require(
                length == len(sequence) and length > 0,
                "length",
                f"has len() {length} but yields {len(sequence)} indices in epoch {epoch}",
            )
            check.require(
                announced == length,
                "length",
                f"has len() {announced} after set_epoch({epoch}) but {length} once the epoch is iterated; know the "
                "epoch's length when set_epoch() selects it (draw the epoch there if need be)",
            )
            torch.manual_seed(200 + epoch)
            again = _draw(check, sampler, epoch, set_epoch=False)
            check.require(
                again == sequence,
                "deterministic",
                f"yields another sequence when epoch {epoch} is iterated again ({_first(again)} after "
                f"{_first(sequence)}); iterating must not advance the sampler",
            )
            torch.manual_seed(300 + epoch)
            loaded = _load(check, sampler, epoch, size, batch_size)
            check.require(
                loaded == sequence,
                "deterministic",
                f"loads another sequence through a DataLoader in epoch {epoch} ({_first(loaded)}, iterated: "
                f"{_first(sequence)})",
            )
        torch.manual_seed(0)
        twin = make()
        for epoch in reversed(epochs):
            torch.manual_seed(400 + epoch)
            sequence = _draw(check, twin, epoch)
            check.require(
                sequence == drawn[epoch],
                "deterministic",
                f"created again with the same seed, yields {_first(sequence)} in epoch {epoch} instead of "
                f"{_first(drawn[epoch])} (epochs visited in another order); draw each epoch from (seed, epoch) "
                "only, e.g. with BaseSampler.generator(epoch)",
            )
        if len(epochs) > 1 and all(drawn[epoch] == drawn[epochs[0]] for epoch in epochs):
            torch.manual_seed(0)
            reseeded = _reseeded(factory_or_sampler, make, facts, options, check)
            if reseeded is not None and _draw(check, reseeded, epochs[0]) != drawn[epochs[0]]:
                raise check.broken(
                    "set-epoch",
                    f"yields the same sequence in epochs {list(epochs)}, though its seed changes it; draw each epoch "
                    "from (seed, epoch), e.g. with BaseSampler.generator(epoch)",
                )
        half = max(len(epochs) // 2, 1)
        torch.manual_seed(0)
        original = make()
        for epoch in epochs[:half]:
            _draw(check, original, epoch)
        state = _saved(check, original.state_dict)
        torch.manual_seed(0)
        restored = make()
        try:
            restored.load_state_dict(state)
        except Exception as exc:
            raise check.broken("state-dict", f"load_state_dict() raised {describe(exc)}") from exc
        for epoch in epochs[half:] or epochs:
            sequence = _draw(check, restored, epoch)
            check.require(
                sequence == drawn[epoch],
                "state-dict",
                f"restored from the state dict yields {_first(sequence)} in epoch {epoch} instead of "
                f"{_first(drawn[epoch])}",
            )


def check_mixer(factory_or_mixer: Callable[..., Any] | Mixer, **facts_and_options: Any) -> None:
    """Check that a mixer keeps the contract sampleweight relies on (`MIXER_RULES`).

    Random image batches (``[B, 3, 8, 8]``: a full batch, an odd-sized short one and one sample) of every epoch are
    mixed on ranks 0 and 1 and checked; the same calls under another global random state, by a mixer built again
    and by one restored from a state dict, must give the same results.

    Args:
        factory_or_mixer: The factory you register (called with the facts its signature names, ``seed`` among
            them, and the options), or a built mixer (copied, never modified).
        **facts_and_options: Facts (``class_counts``, ``num_classes``, ``num_epochs``, ``batch_size``,
            ``class_names``, ``seed``; defaults in `default_facts`) and the factory's options.

    Raises:
        AssertionError: A broken rule, named in the message (``mixer rule 'targets' ...``).
        TypeError: Options given with a built mixer, or options the factory does not take.

    Example:
        >>> import torch, sampleweight as sw
        >>> class Swap(sw.BaseMixer):
        ...     def mix(self, images, targets, seed):
        ...         one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        ...         return images.flip(0), one_hot.flip(0)
        >>> check_mixer(Swap)
    """
    facts, options = _facts(facts_and_options)
    check = _Checker("mixer", MIXER_RULES, _name(factory_or_mixer))
    make = _maker(check, factory_or_mixer, facts, options, MIXER_FACTS, lambda obj: isinstance(obj, Mixer))
    calls = _mixing_calls(facts)
    with torch.random.fork_rng(devices=[]):
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            torch.manual_seed(0)
            mixer = make()
            check.require(
                isinstance(mixer, Mixer),
                "protocol",
                f"built {type(mixer).__name__}, which lacks "
                f"{_missing(mixer, ('__call__', 'state_dict', 'load_state_dict'))}; subclass sw.BaseMixer",
            )
            first = [_mixed(check, mixer, call, facts["num_classes"]) for call in calls]
            torch.manual_seed(1)
            np.random.seed(1)
            random.seed(1)
            twin = make()
            for call, want in zip(reversed(calls), reversed(first), strict=True):  # in another order
                got = _mixed(check, twin, call, facts["num_classes"])
                check.require(
                    _same(got[0], want[0]) and _same(got[1], want[1]),
                    "deterministic",
                    f"mixed the same {call.where} differently when built again and called under another global "
                    "random state (or in another order); draw from (seed, epoch, step, rank), e.g. sw.BaseMixer's "
                    "seed, not from the global random state",
                )
            half = len(calls) // 2
            original = make()
            for call in calls[:half]:
                _mixed(check, original, call, facts["num_classes"])
            state = _saved(check, original.state_dict)
            restored = make()
            try:
                restored.load_state_dict(state)
            except Exception as exc:
                raise check.broken("state-dict", f"load_state_dict() raised {describe(exc)}") from exc
            for call, want in zip(calls[half:], first[half:], strict=True):
                got = _mixed(check, restored, call, facts["num_classes"])
                check.require(
                    _same(got[0], want[0]) and _same(got[1], want[1]),
                    "state-dict",
                    f"restored from the state dict mixes the {call.where} differently from the original",
                )
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def check_model(
    factory: Callable[..., nn.Module],
    *,
    hierarchical: bool = False,
    taxonomy: Taxonomy | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    **options: Any,
) -> None:
    """Check that a timm-style model factory keeps the contract sampleweight relies on (`MODEL_RULES`).

    The model is built with ``factory(pretrained=False, num_classes=C, **options)`` (what ``timm.create_model``
    and ``sampleweight train`` call), run in eval and train mode on a batch of 2 random images, trained one
    backward pass, saved and loaded into a fresh instance, and run on channels_last images.

    Args:
        factory: The timm-style model factory ``fn(pretrained=False, **kwargs)`` you register.
        hierarchical: The model returns leaf log-probabilities over a taxonomy (like ``hierarchical_vgg16``):
            it is built with ``taxonomy=``, and its outputs must be normalised log-probabilities.
        taxonomy: The taxonomy of a hierarchical model (default `CHECK_TAXONOMY`, 5 classes); for another
            model it is passed on as an option.
        num_classes: C (default 4; a hierarchical model's is its taxonomy's).
        input_size: ``(channels, height, width)`` of the images (default ``(in_chans, 64, 64)``).
        **options: The factory's options. A factory taking ``backbone`` (or ``**kwargs`` that accept it) gets
            `TINY_BACKBONE` unless you give one, so the check stays fast.

    Raises:
        AssertionError: A broken rule, named in the message (``model rule 'output-shape' ...``).

    Example:
        >>> from torch import nn
        >>> def tiny_net(pretrained=False, num_classes=4, **kwargs):
        ...     return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                          nn.Linear(8, num_classes))
        >>> check_model(tiny_net, num_classes=3)
    """
    check = _Checker("model", MODEL_RULES, _name(factory))
    if isinstance(factory, nn.Module) or not callable(factory):
        raise check.broken("factory", f"is {type(factory).__name__}; pass the factory fn(pretrained=False, **kwargs)")
    kwargs = dict(options)
    tree = None
    if hierarchical:
        tree = CHECK_TAXONOMY if taxonomy is None else as_taxonomy(taxonomy)
        if num_classes is not None and num_classes != tree.num_classes:
            raise ValueError(f"num_classes={num_classes}, but the taxonomy has {tree.num_classes} classes")
        classes = tree.num_classes
        kwargs["taxonomy"] = tree
    else:
        classes = DEFAULT_NUM_CLASSES if num_classes is None else num_classes
        if taxonomy is not None:
            kwargs["taxonomy"] = taxonomy
    kwargs["num_classes"] = classes
    tiny = "backbone" not in options and _may_take(factory, "backbone")
    shape = tuple(input_size) if input_size is not None else (int(options.get("in_chans", 3)), 64, 64)

    def build() -> nn.Module:
        nonlocal tiny
        if tiny:
            try:
                return _built_model(check, factory, {**kwargs, "backbone": TINY_BACKBONE}, tree)
            except AssertionError as error:
                if "'backbone'" not in str(error.__cause__):  # it takes no backbone after all: build it as it is
                    raise
                tiny = False
        return _built_model(check, factory, kwargs, tree)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(2, *shape, generator=generator)
        targets = torch.arange(2) % classes
        model.eval()
        with torch.no_grad():
            scores = _model_output(check, model, images, classes, tree, "eval")
            again = _model_output(check, model, images, classes, tree, "eval")
        check.require(
            torch.equal(scores, again),
            "eval-mode",
            f"returned different outputs for the same images in eval mode (max difference "
            f"{(scores - again).abs().max().item():.3g}); switch dropout and other randomness off in eval()",
        )
        model.train()
        _check_model_gradients(check, model, _model_output(check, model, images, classes, tree, "train"), targets)
        model.eval()
        with torch.no_grad():
            reference = model(images)
        state = _saved(check, model.state_dict)
        torch.manual_seed(1)  # another initialisation, so only the state dict can make the outputs agree
        fresh = build()
        try:
            fresh.load_state_dict(state)
        except Exception as exc:
            raise check.broken("state-dict", f"load_state_dict(strict=True) raised {describe(exc)}") from exc
        fresh.eval()
        with torch.no_grad():
            restored = _model_output(check, fresh, images, classes, tree, "eval")
        check.require(
            torch.allclose(restored, reference, rtol=1e-5, atol=1e-6),
            "state-dict",
            f"loaded from the state dict gives other outputs (max difference "
            f"{(restored - reference).abs().max().item():.3g}); register everything the outputs depend on as a "
            "parameter or a persistent buffer",
        )
        if images.ndim == 4:
            try:
                fresh.to(memory_format=torch.channels_last)
                with torch.no_grad():
                    last = fresh(images.contiguous(memory_format=torch.channels_last))
            except Exception as exc:
                raise check.broken(
                    "channels-last",
                    f"failed on channels_last images: {describe(exc)}; use .reshape() or .flatten(), not .view()",
                ) from exc
            tolerance = 1e-4 * (1 + reference.abs().max().item())
            comparable = isinstance(last, Tensor) and last.shape == reference.shape
            difference = (last - reference).abs().max().item() if comparable else math.inf
            check.require(
                difference <= tolerance,
                "channels-last",
                f"gives other outputs on channels_last images (max difference {difference:.3g}, tolerance "
                f"{tolerance:.3g})",
            )


def check_optimizer(
    factory: Callable[..., Any], *, closure: bool = False, steps: int = 5, **facts_and_options: Any
) -> None:
    """Check that an optimizer factory keeps the contract sampleweight relies on (`OPTIMIZER_RULES`).

    The optimizer trains a small least-squares problem (a [3, 4] weight and a [3] bias, a batch of 12 samples of
    the default 4 classes) for ``steps`` steps, twice from the same start, and once more after its state went
    through ``state_dict()``/``torch.save``/``load_state_dict()`` mid-way.

    Args:
        factory: The factory you register: ``factory(params, **options)``.
        closure: What you register as ``closure`` (True: a sharpness-aware optimizer stepping through a closure).
        steps: Steps per run.
        **facts_and_options: Facts (``lr`` defaults to 0.01 here, ``momentum``, ``weight_decay``, ``device``,
            ``class_counts``, ``num_classes``, ... as in `default_facts`) and the factory's options.

    Raises:
        AssertionError: A broken rule, named in the message (``optimizer rule 'descent' ...``).
        TypeError: Options the factory does not take.

    Example:
        >>> import torch
        >>> check_optimizer(lambda params, lr: torch.optim.SGD(params, lr=lr))
        >>> check_optimizer(lambda params, lr: torch.optim.SGD(params, lr=lr, maximize=True))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        AssertionError: optimizer rule 'descent' (...): <lambda> raised the loss from ...
    """
    given = {"lr": 0.01, **facts_and_options}
    settings: dict[str, Any] = {
        key: given.pop(key) for key in ("lr", "momentum", "weight_decay", "device") if key in given
    }
    facts, options = _facts(given)
    facts = {**{key: value for key, value in facts.items() if key in OPTIMIZER_FACTS}, **settings}
    check = _Checker("optimizer", OPTIMIZER_RULES, _name(factory))
    if not callable(factory):
        raise check.broken("factory", f"is {type(factory).__name__}, not a factory")
    accepted = {p.name for p in list(inspect.signature(factory).parameters.values())[1:]}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    if not takes_any and set(options) - accepted:
        raise TypeError(f"{check.name} does not take option(s) {', '.join(sorted(set(options) - accepted))}")
    kwargs = factory_arguments(factory, options, facts, OPTIMIZER_FACTS)
    kwargs.pop("params", None)
    classes = len(facts["class_counts"])
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=generator), torch.randn(12, 3, generator=generator)
    labels = torch.arange(12) % classes
    start = [torch.randn(3, 4, generator=generator), torch.randn(3, generator=generator)]

    def build(params: list[Tensor]) -> Any:
        try:
            optimizer = factory(params, **kwargs)
        except Exception as exc:
            raise check.broken("factory", f"failed: {describe(exc)}") from exc
        held = [p for group in getattr(optimizer, "param_groups", ()) for p in group["params"]]
        check.require(isinstance(optimizer, torch.optim.Optimizer), "optimizer", f"returned {type(optimizer).__name__}")
        check.require(
            len(held) == len(params) and all(any(p is q for q in held) for p in params),
            "optimizer",
            f"holds {len(held)} parameter(s), not the {len(params)} given",
        )
        return optimizer

    def loss_of(params: list[Tensor], keep: Tensor | None = None) -> Tensor:
        terms = ((x @ params[0].T + params[1] - y) ** 2).sum(1) / 2
        return (terms if keep is None else terms * keep).sum() / len(terms)

    probed: list[bool] = []  # a closure optimizer is probed once for a plain step (it must refuse one)

    def one_step(optimizer: Any, params: list[Tensor]) -> None:
        calls: list[Any] = []
        optimizer.zero_grad(set_to_none=True)
        if closure:

            def evaluate(classes: Tensor | None = None) -> Tensor:
                calls.append(classes)
                if classes is not None:
                    check.require(
                        isinstance(classes, Tensor) and classes.dtype == torch.bool and classes.shape == (classes_,),
                        "closure",
                        f"called the closure with classes={classes!r}, not a bool mask [{classes_}] or None",
                    )
                loss = loss_of(params, None if classes is None else classes[labels].float())
                loss.backward()
                return loss.detach()

            classes_ = classes
            stepped(lambda: optimizer.step(evaluate), "step(closure)")
            check.require(bool(calls), "closure", "took a step without calling the closure")
            if probed:
                return
            probed.append(True)
            try:
                optimizer.zero_grad(set_to_none=True)
                loss_of(params).backward()
                optimizer.step()
            except Exception:  # noqa: BLE001 - it needs its closure, as registered
                optimizer.zero_grad(set_to_none=True)
                return
            raise check.broken("closure", "is registered closure=True but steps without a closure")
        loss_of(params).backward()
        stepped(optimizer.step, "step()")

    def stepped(function: Callable[[], Any], what: str) -> None:
        try:
            function()
        except Exception as exc:
            hint = " (registered without closure=True, it gets no closure)" if not closure else ""
            raise check.broken("closure", f"failed in {what}{hint}: {describe(exc)}") from exc

    def run(first: int, last: int, params: list[Tensor], optimizer: Any) -> list[Tensor]:
        for _ in range(first, last):
            one_step(optimizer, params)
        return [p.detach().clone() for p in params]

    fresh = lambda: [t.clone().requires_grad_(True) for t in start]  # noqa: E731
    params = fresh()
    optimizer = build(params)
    before = float(loss_of(params).detach())
    one_step(optimizer, params)
    check.require(all(bool(torch.isfinite(p).all()) for p in params), "step", "left non-finite parameters")
    check.require(
        any(not torch.equal(p.detach(), t) for p, t in zip(params, start, strict=True)), "step", "moved nothing"
    )
    ended = run(1, steps, params, optimizer)
    after = float(loss_of(params).detach())
    check.require(after < before, "descent", f"raised the loss from {before:.4g} to {after:.4g} in {steps} steps")
    again = fresh()
    check.require(
        all(torch.equal(a, b) for a, b in zip(run(0, steps, again, build(again)), ended, strict=True)),
        "deterministic",
        "gave other parameters from the same start and steps",
    )
    half = steps // 2
    first = fresh()
    first_optimizer = build(first)
    run(0, half, first, first_optimizer)
    state = _saved(check, first_optimizer.state_dict)
    resumed = [p.detach().clone().requires_grad_(True) for p in first]
    resumed_optimizer = build(resumed)
    try:
        resumed_optimizer.load_state_dict(state)
    except Exception as exc:
        raise check.broken("state-dict", f"load_state_dict() raised {describe(exc)}") from exc
    check.require(
        all(torch.equal(a, b) for a, b in zip(run(half, steps, resumed, resumed_optimizer), ended, strict=True)),
        "state-dict",
        f"gave other parameters after resuming from its state at step {half}",
    )


def default_facts(*, task: str = "multiclass", **given: Any) -> dict[str, Any]:
    """The dataset facts a check builds a plugin with: those given, completed with small defaults.

    Args:
        task: ``"multiclass"``, ``"binary"`` or ``"multilabel"`` (multi-hot targets [N, L] and ``class_counts``
            the [2, L] table; see `check_sampler`).
        **given: Any of ``targets``, ``class_counts``, ``num_classes``, ``num_epochs``, ``batch_size``,
            ``class_names`` and ``seed``.

    Returns:
        All of them: ``class_counts`` from the targets, or halving from 30 over ``num_classes`` (default 4)
        classes; ``targets`` with those counts in a fixed shuffled order; ``class_names`` ``class_0``, ...;
        5 epochs; batches of 8; seed 0.

    Example:
        >>> facts = default_facts()
        >>> facts["class_counts"].tolist(), len(facts["targets"]), facts["num_epochs"], facts["batch_size"]
        ([30, 15, 8, 4], 57, 5, 8)
        >>> facts = default_facts(task="multilabel")
        >>> facts["class_counts"].tolist(), tuple(facts["targets"].shape)
        ([[45, 52, 56, 58], [15, 8, 4, 2]], (60, 4))
    """
    facts, _ = _facts(given, task=task)
    return facts


# -- building -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checker:
    """Turns a broken rule into the AssertionError that names it."""

    kind: str
    rules: Mapping[str, str]
    name: str

    def broken(self, rule: str, detail: str) -> AssertionError:
        return AssertionError(f"{self.kind} rule {rule!r} ({self.rules[rule]}): {self.name} {detail}")

    def require(self, condition: bool, rule: str, detail: str) -> None:
        if not condition:
            raise self.broken(rule, detail)


MULTILABEL_IMAGES = 60
"""How many images the default multilabel facts have (labels held by 15, 8, 4, 2, ... of them)."""


def _facts(given: Mapping[str, Any], task: str = "multiclass") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(facts, options)``: the facts given, completed with defaults, and the rest (the plugin's options)."""
    if task not in ("multiclass", "binary", "multilabel"):
        raise ValueError(f"task must be multiclass, binary or multilabel, got {task!r}")
    options = {key: value for key, value in given.items() if key not in SAMPLER_FACTS}
    facts = {key: value for key, value in given.items() if key in SAMPLER_FACTS and value is not None}
    if task == "multilabel":
        return _multilabel_facts(facts), options
    if "targets" in facts and torch.as_tensor(facts["targets"]).ndim == 2:
        raise ValueError(
            f"multi-hot targets [N, L] are a multilabel task's, not a {task} task's: check a plugin registered for "
            "the multilabel task with task='multilabel'"
        )
    if task == "binary" and "targets" not in facts and "class_counts" not in facts:
        facts["class_counts"] = torch.tensor([30, 15])
    targets = None
    if "targets" in facts:
        targets = torch.as_tensor(facts.pop("targets")).long().flatten()
        if task == "binary" and bool((targets > 1).any() | (targets < 0).any()):
            raise ValueError(
                f"a binary task's targets are 0 (negative) or 1 (positive), got {targets.unique().tolist()}"
            )
        if "class_counts" not in facts:
            named = facts.get("num_classes") or len(facts.get("class_names") or ())
            facts["class_counts"] = torch.bincount(targets, minlength=max(named, int(targets.max()) + 1))
    elif "class_counts" not in facts:
        classes = facts.get("num_classes") or len(facts.get("class_names") or ()) or DEFAULT_NUM_CLASSES
        facts["class_counts"] = torch.tensor([max(2, round(30 * 0.5**c)) for c in range(classes)])
    seed = int(facts.pop("seed", 0))
    resolved = resolve_facts(facts)  # checked: one number of classes, positive integers
    counts = resolved["class_counts"]
    if targets is None:
        ordered = torch.repeat_interleave(torch.arange(len(counts)), counts)
        targets = ordered[torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed))]
    elif not torch.equal(torch.bincount(targets, minlength=len(counts)), counts):
        raise ValueError(f"class_counts {counts.tolist()} disagree with the targets given; give one of them")
    resolved.setdefault("class_names", tuple(f"class_{c}" for c in range(len(counts))))
    resolved.setdefault("num_epochs", DEFAULT_NUM_EPOCHS)
    resolved.setdefault("batch_size", DEFAULT_BATCH_SIZE)
    resolved.update(targets=targets, seed=seed)
    if task == "binary" and len(counts) != 2:
        raise ValueError(f"a binary task has 2 classes (negative, positive), got class_counts {counts.tolist()}")
    return resolved, options


def _multilabel_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """`_facts` of a multilabel task: multi-hot targets [N, L] and ``class_counts`` the [2, L] table."""
    seed = int(facts.pop("seed", 0))
    targets = None
    if "targets" in facts:
        targets = torch.as_tensor(facts.pop("targets"))
        if targets.ndim != 2 or targets.numel() == 0 or not bool(((targets == 0) | (targets == 1)).all()):
            raise ValueError(
                f"a multilabel task's targets are multi-hot [N, L] of 0/1, got shape {tuple(targets.shape)}"
                + ("" if targets.ndim != 2 else " with values other than 0 and 1")
            )
        counts = multi_hot_counts(targets.long())
        if "class_counts" in facts and not torch.equal(torch.as_tensor(facts["class_counts"]).long(), counts):
            raise ValueError(
                f"class_counts {torch.as_tensor(facts['class_counts']).tolist()} disagree with the multi-hot targets' "
                f"[without, with] each label {counts.tolist()}; give one of them"
            )
        facts["class_counts"] = counts
    elif "class_counts" in facts:
        counts = torch.as_tensor(facts["class_counts"])
        if counts.ndim != 2 or counts.shape[0] != 2 or counts.is_floating_point() or bool((counts < 0).any()):
            raise ValueError(
                "a multilabel task's class_counts is the [2, L] table of integers >= 0 (images without and with each "
                f"label), got {counts.tolist()}"
            )
        if len(set(counts.sum(0).tolist())) != 1:
            raise ValueError(
                f"each column of class_counts [2, L] counts every image once (without or with the label): "
                f"{counts.tolist()} sums to {counts.sum(0).tolist()}"
            )
    else:
        labels = facts.get("num_classes") or len(facts.get("class_names") or ()) or DEFAULT_NUM_CLASSES
        positives = torch.tensor([max(1, round(30 * 0.5 ** (c + 1))) for c in range(labels)])
        facts["class_counts"] = torch.stack([MULTILABEL_IMAGES - positives, positives])
    resolved = resolve_facts(facts)  # checked: one number of labels, counts >= 0
    counts = resolved["class_counts"]
    if targets is None:  # each label on a random set of images of its size, drawn from the seed
        generator = torch.Generator().manual_seed(seed)
        images = int(counts[:, 0].sum())
        targets = torch.zeros(images, counts.shape[1], dtype=torch.long)
        for label, held in enumerate(counts[1].tolist()):
            targets[torch.randperm(images, generator=generator)[:held], label] = 1
    resolved.setdefault("class_names", tuple(f"label_{c}" for c in range(counts.shape[1])))
    resolved.setdefault("num_epochs", DEFAULT_NUM_EPOCHS)
    resolved.setdefault("batch_size", DEFAULT_BATCH_SIZE)
    resolved.update(targets=targets, seed=seed)
    return resolved


def _maker(
    check: _Checker,
    obj: Any,
    facts: Mapping[str, Any],
    options: Mapping[str, Any],
    fact_names: Sequence[str],
    is_built: Callable[[Any], bool],
) -> Callable[[], Any]:
    """A function building a fresh plugin each call: from the factory, or a copy of the object built."""
    if not isinstance(obj, type) and is_built(obj):
        if options:
            raise TypeError(f"options {sorted(options)} are for a factory, but check_{check.kind} got a built object")
        pristine = copy.deepcopy(obj)
        return lambda: copy.deepcopy(pristine)
    if not callable(obj):
        raise check.broken("factory", f"is {type(obj).__name__}: neither a factory nor a built {check.kind}")
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError) as exc:
        raise check.broken("factory", f"has no signature to read: {exc}") from exc
    known = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters) and set(options) - known:
        raise TypeError(f"{check.name} does not take option(s) {', '.join(sorted(set(options) - known))}")
    kwargs = factory_arguments(obj, options, {k: v for k, v in facts.items() if k in fact_names}, fact_names)
    missing = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs
    ]
    if missing:
        raise check.broken(
            "factory",
            f"needs {', '.join(missing)}, which sampleweight does not pass (no such fact); give it as an option: "
            f"check_{check.kind}({check.name}, {missing[0]}=...)",
        )

    def make() -> Any:
        try:
            return obj(**kwargs)
        except Exception as exc:
            raise check.broken(
                "factory", f"failed when called with {', '.join(kwargs) or 'nothing'}: {describe(exc)}"
            ) from exc

    return make


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _missing(obj: Any, methods: Sequence[str]) -> str:
    absent = [name for name in methods if not callable(getattr(obj, name, None))]
    return ", ".join(absent) or "nothing"


def _saved(check: _Checker, state_dict: Callable[[], Any]) -> Any:
    """``state_dict()`` after a round trip through ``torch.save``/``torch.load`` (as in a checkpoint)."""
    try:
        state = state_dict()
    except Exception as exc:
        raise check.broken("state-dict", f"state_dict() raised {describe(exc)}") from exc
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except Exception as exc:
        raise check.broken("state-dict", f"state_dict() cannot be saved with torch.save: {describe(exc)}") from exc
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)  # as sampleweight loads its checkpoints


def _call(check: _Checker, function: Callable[[], Any], what: str) -> Any:
    try:
        return function()
    except Exception as exc:
        raise check.broken("call", f"failed in {what}: {describe(exc)}") from exc


def _same(first: Any, second: Any) -> bool:
    """Whether two results are the same tensor (shape and values)."""
    return isinstance(first, Tensor) and isinstance(second, Tensor) and torch.equal(first, second)


def _show(values: Any) -> str:
    if not isinstance(values, Tensor):
        return repr(values)
    shown = [round(v, 4) for v in values.flatten()[:6].double().tolist()]
    return f"{shown}{' ...' if values.numel() > 6 else ''}"


def _first(sequence: Sequence[int]) -> str:
    return f"{list(sequence[:8])}{' ...' if len(sequence) > 8 else ''}"


def _epochs(num_epochs: int) -> list[int]:
    """Every epoch of a short run; the first, middle and last ones of a long one."""
    if num_epochs <= 8:
        return list(range(num_epochs))
    return sorted({0, 1, 2, num_epochs // 2 - 1, num_epochs // 2, num_epochs - 2, num_epochs - 1})


# -- weighters -----------------------------------------------------------------------------------------------


def _weighting_batches(facts: Mapping[str, Any], *, mixed: bool = True) -> tuple[list[WeightingBatch], int]:
    """The batches a weighter is checked on, and where a resumed run picks up (before a short batch).

    Each epoch: the first three batches of a fixed shuffle of the targets and its last (short) batch, with
    their dataset indices and the steps of a real run. Epoch 0 also has a batch of one sample (first: the
    resumed run starts there), one of the commonest class only, batches of float64 and bfloat16 losses, and
    (``mixed``) a mixed batch (``soft_targets`` [B, C], as a mixer gives; ``targets`` its classes of largest mass).
    The first batch holds a loss of 0 and a large one.
    """
    targets, size = facts["targets"], facts["batch_size"]
    count = len(targets)
    generator = torch.Generator().manual_seed(facts["seed"])
    per_epoch = math.ceil(count / size)
    batches: list[WeightingBatch] = []
    resume_at, extra = 0, 0

    def batch(
        indices: Tensor, epoch: int, step: int, dtype: torch.dtype = torch.float32, mixed: bool = False
    ) -> WeightingBatch:
        losses = (torch.rand(len(indices), generator=generator, dtype=torch.float64) * 4).to(dtype)
        if not mixed:
            return WeightingBatch(losses, targets[indices].clone(), epoch, step, indices.clone())
        # a mixed batch (Mixup's pairs: each sample with the batch reversed), its hard targets the largest mass
        one_hot = torch.nn.functional.one_hot(targets[indices], facts["num_classes"]).to(torch.float32)
        share = torch.rand(len(indices), 1, generator=generator)
        soft = share * one_hot + (1 - share) * one_hot.flip(0)
        return WeightingBatch(losses, soft.argmax(1), epoch, step, indices.clone(), soft_targets=soft)

    for epoch in _epochs(facts["num_epochs"]):
        order = torch.randperm(count, generator=generator)
        chosen = sorted({0, 1, 2, per_epoch - 1} & set(range(per_epoch)))
        for position in chosen:
            indices = order[position * size : (position + 1) * size]
            batches.append(batch(indices, epoch, epoch * per_epoch + extra + position))
        if epoch == 0:
            first = batches[0].losses
            first[0] = 0.0
            first[-1] = 30.0
            resume_at = len(batches)
            common = (targets == int(facts["class_counts"].argmax())).nonzero().flatten()[:size]
            step = per_epoch
            for indices, dtype, soft in (
                (order[:1], torch.float32, False),
                (common, torch.float32, False),
                (order[:size], torch.float64, False),
                (order[:size], torch.bfloat16, False),
                *([(order[:size], torch.float32, True)] if mixed else []),
            ):
                batches.append(batch(indices, 0, step, dtype, soft))
                step += 1
            extra = step - per_epoch
    return batches, resume_at


def _where(batch: WeightingBatch) -> str:
    classes = torch.unique(batch.targets.cpu()).tolist()
    dtype = str(batch.losses.dtype).removeprefix("torch.")
    return f"batch of {batch.size} ({dtype} losses, classes {classes}) at epoch {batch.epoch}, step {batch.step}"


def _moved(batch: WeightingBatch, device: str) -> WeightingBatch:
    indices = None if batch.indices is None else batch.indices.to(device)
    soft = None if batch.soft_targets is None else batch.soft_targets.to(device)
    return WeightingBatch(batch.losses.to(device), batch.targets.to(device), batch.epoch, batch.step, indices, soft)


def _weigh(check: _Checker, weighter: Any, batches: Sequence[WeightingBatch], *, validate: bool) -> list[Tensor]:
    """The weights of each batch in turn (detached, on the CPU), each checked when ``validate``."""
    found = []
    for batch in batches:
        before = [batch.losses.clone(), batch.targets.clone(), None if batch.indices is None else batch.indices.clone()]
        try:
            weights = weighter(batch)
        except Exception as exc:
            raise check.broken("call", f"failed on a {_where(batch)}: {describe(exc)}") from exc
        if validate:
            _check_weights(check, weights, batch, before)
        found.append(weights.detach().to("cpu", torch.float64) if isinstance(weights, Tensor) else weights)
    return found


def _check_weights(check: _Checker, weights: Any, batch: WeightingBatch, before: list[Tensor | None]) -> None:
    where = _where(batch)
    check.require(
        isinstance(weights, Tensor),
        "shape",
        f"returned {type(weights).__name__} for a {where}, not a Tensor of shape [{batch.size}]",
    )
    check.require(
        tuple(weights.shape) == (batch.size,),
        "shape",
        f"returned weights of shape {list(weights.shape)} for a {where}; return one weight per sample, "
        f"shape [{batch.size}]",
    )
    check.require(
        weights.is_floating_point(),
        "dtype",
        f"returned {weights.dtype} weights for a {where}; return a float tensor (e.g. built with "
        "torch.ones_like(batch.losses))",
    )
    check.require(
        weights.device == batch.losses.device,
        "device",
        f"returned weights on {weights.device} for a {where} on {batch.losses.device}; create them on "
        "batch.losses.device",
    )
    check.require(
        not weights.requires_grad and weights.grad_fn is None,
        "no-grad",
        f"returned weights that require grad for a {where}; compute them under torch.no_grad() or .detach() them",
    )
    bad = ~torch.isfinite(weights)
    check.require(
        not bool(bad.any()),
        "finite-nonnegative",
        f"returned NaN or infinite weights at batch positions {bad.nonzero().flatten().tolist()[:8]} of a {where}",
    )
    negative = weights < 0
    check.require(
        not bool(negative.any()),
        "finite-nonnegative",
        f"returned negative weights at batch positions {negative.nonzero().flatten().tolist()[:8]} of a {where}",
    )
    names = ("losses", "targets", "indices")
    now = (batch.losses, batch.targets, batch.indices)
    changed = [
        n
        for n, a, b in zip(names, now, before, strict=True)
        if a is not None and b is not None and not torch.equal(a, b)
    ]
    check.require(
        not changed,
        "inputs-unchanged",
        f"modified batch.{', batch.'.join(changed)} in place on a {where}; compute on a copy instead",
    )


# -- losses ------------------------------------------------------------------------------------------------------


def _class_targets(size: int, classes: int, generator: torch.Generator) -> Tensor:
    """``size`` class indices, every class among them when ``size >= classes``, in a random order."""
    return (torch.arange(size) % classes)[torch.randperm(size, generator=generator)]


def _loss_values(check: _Checker, loss: nn.Module, logits: Tensor, targets: Tensor, where: str) -> Tensor:
    logits_before, targets_before = logits.detach().clone(), targets.clone()
    try:
        losses = loss(logits, targets)
    except Exception as exc:
        raise check.broken("call", f"failed on {where}: {describe(exc)}") from exc
    batch = logits.shape[0]
    check.require(
        isinstance(losses, Tensor),
        "shape",
        f"returned {type(losses).__name__} for {where}, not a Tensor of shape [{batch}]",
    )
    check.require(
        tuple(losses.shape) == (batch,),
        "shape",
        f"returned losses of shape {list(losses.shape)} for {where}; return one loss per sample (no reduction), "
        f"shape [{batch}]",
    )
    check.require(
        losses.is_floating_point() and torch.promote_types(logits.dtype, losses.dtype) == losses.dtype,
        "dtype",
        f"returned {losses.dtype} losses for {where}; compute in the logits' dtype (or wider: half-precision "
        "logits may give float32 losses)",
    )
    check.require(
        losses.device == logits.device,
        "device",
        f"returned losses on {losses.device} for {where}; keep them on the logits' device",
    )
    bad = ~torch.isfinite(losses.detach())
    check.require(
        not bool(bad.any()),
        "finite",
        f"returned NaN or infinite losses at batch positions {bad.nonzero().flatten().tolist()[:8]} for {where}",
    )
    changed = [
        name
        for name, now, was in (("logits", logits.detach(), logits_before), ("targets", targets, targets_before))
        if not torch.equal(now, was)
    ]
    check.require(not changed, "inputs-unchanged", f"modified the {' and '.join(changed)} in place on {where}")
    return losses


def _check_gradient(check: _Checker, logits: Tensor, losses: Tensor, where: str, *, nonzero: bool) -> None:
    try:
        losses.sum().backward()
    except Exception as exc:
        raise check.broken(
            "gradient", f"losses cannot be back-propagated on {where}: {describe(exc)}; do not detach them"
        ) from exc
    grad = logits.grad
    check.require(grad is not None, "gradient", f"gave the logits no gradient on {where}")
    assert grad is not None  # (require raised otherwise)
    check.require(
        bool(torch.isfinite(grad).all()), "gradient", f"gave the logits a NaN or infinite gradient on {where}"
    )
    check.require(
        not nonzero or bool(torch.ne(grad, 0).any()), "gradient", f"gave the logits a zero gradient on {where}"
    )


def _check_per_sample(
    check: _Checker,
    loss: nn.Module,
    logits: Tensor,
    targets: Tensor,
    losses: Tensor,
    generator: torch.Generator,
    where: str,
) -> None:
    if logits.shape[0] < 2:
        return
    moved = logits.clone()
    moved[0] += torch.randn(logits.shape[1], generator=generator).to(logits) * 3
    with torch.no_grad():
        again = loss(moved, targets)
    others = again[1:].detach().to(losses)
    check.require(
        torch.allclose(others, losses[1:], rtol=1e-5, atol=1e-6),
        "per-sample",
        f"changed the losses of other samples when only sample 0's logits changed on {where} "
        f"({_show(losses[1:])} became {_show(others)}); compute each sample's loss from its own logits only, "
        "with no reduction or batch statistics",
    )


def _check_soft_targets(check: _Checker, loss: nn.Module, batch: int, classes: int, generator: torch.Generator) -> None:
    """Mixed targets run; one-hot targets give the class indices' losses and gradient (float64, a class absent)."""
    logits = (torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.arange(batch) % max(classes - 1, 1)  # the last class absent
    mixed = torch.rand(batch, classes, generator=generator, dtype=torch.float64)
    cases = {"mixed": mixed / mixed.sum(1, keepdim=True), "one-hot": F.one_hot(targets, classes).double()}
    found: dict[str, tuple[Tensor, Tensor]] = {}
    for kind, distribution in cases.items():
        where = f"{kind} class distributions [{batch}, {classes}] (float64)"
        logits.grad = None
        try:
            losses = loss(logits, distribution)
            losses.sum().backward()
        except Exception as exc:
            raise check.broken("soft-targets", f"failed on {where}: {describe(exc)}") from exc
        check.require(
            isinstance(losses, Tensor) and tuple(losses.shape) == (batch,) and bool(torch.isfinite(losses).all()),
            "soft-targets",
            f"returned {_show(losses) if isinstance(losses, Tensor) else type(losses).__name__} on {where}, not "
            f"finite losses of shape [{batch}]",
        )
        assert logits.grad is not None
        found[kind] = (losses.detach(), logits.grad.clone())
    logits.grad = None
    hard = loss(logits, targets)
    hard.sum().backward()
    assert logits.grad is not None
    soft, soft_grad = found["one-hot"]
    where = f"one-hot class distributions [{batch}, {classes}] (float64)"
    check.require(
        torch.allclose(soft, hard.detach(), rtol=1e-7, atol=1e-9),
        "soft-targets",
        f"gave {_show(soft)} on {where} where the class indices give {_show(hard)}; a one-hot distribution is its "
        "class index",
    )
    check.require(
        torch.allclose(soft_grad, logits.grad, rtol=1e-7, atol=1e-9),
        "soft-targets",
        f"gave the logits another gradient on {where} than the class indices do; a one-hot distribution is its "
        "class index",
    )


# -- mixers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MixingCall:
    """One call of a mixer: a batch and where it is in the run."""

    images: Tensor
    targets: Tensor
    epoch: int
    step: int
    rank: int

    @property
    def where(self) -> str:
        classes = sorted(set(self.targets.tolist()))
        size = len(self.targets)
        return f"batch of {size} (classes {classes}) at epoch {self.epoch}, step {self.step}, rank {self.rank}"


def _mixing_calls(facts: Mapping[str, Any]) -> list[_MixingCall]:
    """Full, odd-sized short and one-sample batches of every epoch, on ranks 0 and 1."""
    generator = torch.Generator().manual_seed(7)
    targets = facts["targets"]
    full = max(int(facts["batch_size"]), 2)
    sizes = (full, full - 1 if full % 2 == 0 else full - 2, 1)
    calls = []
    for epoch in _epochs(facts["num_epochs"]):
        for step, size in enumerate(sizes):
            for rank in (0, 1):
                chosen = torch.randint(len(targets), (max(size, 1),), generator=generator)
                images = torch.randn(len(chosen), 3, 8, 8, generator=generator)
                calls.append(_MixingCall(images, targets[chosen].clone(), epoch, step, rank))
    return calls


def _mixed(check: _Checker, mixer: Any, call: _MixingCall, num_classes: int) -> tuple[Tensor, Tensor]:
    """The mixer's result for ``call``, checked against every rule about one call."""
    images, targets = call.images.clone(), call.targets.clone()
    before = (torch.get_rng_state(), _numpy_key(), random.getstate())
    result = _call(
        check, lambda: mixer(images, targets, epoch=call.epoch, step=call.step, rank=call.rank), f"the {call.where}"
    )
    after = (torch.get_rng_state(), _numpy_key(), random.getstate())
    check.require(
        torch.equal(before[0], after[0]) and before[1:] == after[1:],
        "global-random-state",
        f"changed the global random state while mixing the {call.where}; draw from a generator of your own "
        "(or restore the global state, as sampleweight.mixing.numpy_seeded does for numpy)",
    )
    check.require(
        torch.equal(images, call.images) and torch.equal(targets, call.targets),
        "inputs-unchanged",
        f"changed its input {'images' if not torch.equal(images, call.images) else 'targets'} while mixing the "
        f"{call.where}; mix a copy",
    )
    check.require(
        isinstance(result, tuple) and len(result) == 2,
        "call",
        f"returned {type(result).__name__} for the {call.where}, not a pair (images, targets)",
    )
    mixed, soft = result
    check.require(
        isinstance(mixed, Tensor)
        and mixed.shape == images.shape
        and mixed.dtype == images.dtype
        and mixed.device == images.device,
        "images",
        f"returned images {_describe_tensor(mixed)} for the {call.where} of images {_describe_tensor(images)}",
    )
    check.require(isinstance(soft, Tensor), "targets", f"returned targets of type {type(soft).__name__}")
    if soft.ndim == 1 and not soft.is_floating_point():
        check.require(
            torch.equal(soft, targets),
            "targets",
            f"returned class indices {soft.tolist()} for the {call.where} whose classes are {targets.tolist()}; "
            "return the class indices unchanged (not mixed) or distributions",
        )
        return mixed, soft
    check.require(
        soft.shape == (len(targets), num_classes) and soft.is_floating_point() and soft.device == targets.device,
        "targets",
        f"returned targets {_describe_tensor(soft)} for the {call.where}; expected class indices [B] or a "
        f"floating-point [{len(targets)}, {num_classes}] on {targets.device}",
    )
    sums = soft.double().sum(dim=1)
    check.require(
        bool(torch.isfinite(soft).all())
        and bool((soft >= 0).all())
        and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5)),
        "targets",
        f"returned distributions that are not finite, >= 0 and summing to 1 (row sums {_show(sums)}) for the "
        f"{call.where}",
    )
    outside = torch.ones(num_classes, dtype=torch.bool)
    outside[targets.unique()] = False
    check.require(
        not bool((soft[:, outside] > 0).any()),
        "batch-classes",
        f"put mass on classes {outside.nonzero().flatten()[(soft[:, outside] > 0).any(0)].tolist()} that the "
        f"{call.where} does not hold",
    )
    return mixed, soft


def _numpy_key() -> Any:
    """numpy's global generator state, comparable with ``==`` (before and after a call)."""
    state = np.random.get_state(legacy=False)
    return (state["state"]["key"].tobytes(), state["state"]["pos"], state["has_gauss"], state["gauss"])


def _describe_tensor(value: Any) -> str:
    if not isinstance(value, Tensor):
        return type(value).__name__
    return f"{list(value.shape)} {str(value.dtype).removeprefix('torch.')} on {value.device}"


# -- samplers ---------------------------------------------------------------------------------------------------


def _is_built_sampler(obj: Any) -> bool:
    return isinstance(obj, Sampler)


def _draw(check: _Checker, sampler: Any, epoch: int, *, set_epoch: bool = True) -> list[Any]:
    """The sequence of ``epoch`` (integers where the sampler yields integer-like values)."""
    if set_epoch:
        _call(check, lambda: sampler.set_epoch(epoch), f"set_epoch({epoch})")
    return [_integer(value) for value in _call(check, lambda: list(iter(sampler)), f"iterating epoch {epoch}")]


def _integer(value: Any) -> Any:
    try:
        return operator.index(value)
    except TypeError:
        return value


def _check_indices(check: _Checker, sequence: Sequence[Any], size: int, epoch: int) -> None:
    for position, index in enumerate(sequence):
        check.require(
            isinstance(index, int),
            "indices",
            f"yielded {index!r} ({type(index).__name__}) at position {position} of epoch {epoch}, not an integer index",
        )
        check.require(
            0 <= index < size,
            "indices",
            f"yielded index {index} at position {position} of epoch {epoch}, outside range({size})",
        )


def _load(check: _Checker, sampler: Any, epoch: int, size: int, batch_size: int) -> list[int]:
    """The indices a ``DataLoader(dataset, sampler=sampler)`` loads in ``epoch``, in order."""
    _call(check, lambda: sampler.set_epoch(epoch), f"set_epoch({epoch})")
    indices: list[int] = list(range(size))
    loader: DataLoader[int] = DataLoader(indices, sampler=sampler, batch_size=batch_size)  # type: ignore[arg-type]
    return _call(
        check,
        lambda: [int(i) for batch in loader for i in batch.tolist()],
        f"loading epoch {epoch} through DataLoader(dataset, sampler=sampler, batch_size={batch_size})",
    )


def _reseeded(
    obj: Any, make: Callable[[], Any], facts: Mapping[str, Any], options: Mapping[str, Any], check: _Checker
) -> Any | None:
    """A sampler like ``make()``'s with another seed, when the seed can be changed (else None)."""
    if isinstance(obj, type) or not _is_built_sampler(obj):
        if "seed" not in factory_arguments(obj, options, {"seed": facts["seed"]}, SAMPLER_FACTS):
            return None
        return _maker(check, obj, {**facts, "seed": facts["seed"] + 1}, options, SAMPLER_FACTS, _is_built_sampler)()
    other = make()
    if not isinstance(getattr(other, "seed", None), int):
        return None
    other.seed += 1
    return other


# -- models --------------------------------------------------------------------------------------------------------


def _may_take(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _built_model(
    check: _Checker, factory: Callable[..., Any], kwargs: Mapping[str, Any], tree: Taxonomy | None
) -> nn.Module:
    try:
        model = factory(pretrained=False, **kwargs)
    except Exception as exc:
        rule = "taxonomy" if tree is not None and "taxonomy" in str(exc) else "factory"
        raise check.broken(
            rule, f"failed when called with pretrained=False, {', '.join(kwargs)}: {describe(exc)}"
        ) from exc
    check.require(isinstance(model, nn.Module), "module", f"returned {type(model).__name__}, not an nn.Module")
    return model


def _model_output(
    check: _Checker, model: nn.Module, images: Tensor, classes: int, tree: Taxonomy | None, mode: str
) -> Tensor:
    try:
        scores = model(images)
    except Exception as exc:
        raise check.broken("forward", f"failed in {mode} mode on images {list(images.shape)}: {describe(exc)}") from exc
    check.require(
        isinstance(scores, Tensor),
        "output-shape",
        f"returned {type(scores).__name__} in {mode} mode, not a Tensor [B, num_classes]",
    )
    expected = [images.shape[0], classes]
    if tree is not None and scores.ndim == 2 and scores.shape[0] == images.shape[0]:
        check.require(
            scores.shape[1] == classes,
            "taxonomy",
            f"returned {scores.shape[1]} scores per image for a taxonomy of {classes} classes {list(tree.classes)}",
        )
    check.require(
        list(scores.shape) == expected,
        "output-shape",
        f"returned shape {list(scores.shape)} in {mode} mode for {expected[0]} images and num_classes={classes}",
    )
    check.require(
        bool(torch.isfinite(scores.detach()).all()), "finite", f"returned NaN or infinite scores in {mode} mode"
    )
    if tree is not None:
        total = torch.logsumexp(scores.detach().double(), dim=1)
        check.require(
            bool((total.abs() < 1e-3).all()),
            "log-probabilities",
            f"returned scores whose logsumexp over the classes is {_show(total)} in {mode} mode, not 0: return "
            "log p(class), e.g. log_softmax of the logits",
        )
    return scores


def _check_model_gradients(check: _Checker, model: nn.Module, scores: Tensor, targets: Tensor) -> None:
    model.zero_grad(set_to_none=True)
    try:
        F.cross_entropy(scores.float(), targets).backward()
    except Exception as exc:
        raise check.broken("gradients", f"cannot back-propagate a loss on its outputs: {describe(exc)}") from exc
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    idle = [name for name, p in trainable if p.grad is None]
    check.require(
        not idle,
        "gradients",
        f"gave no gradient to {len(idle)} of its {len(trainable)} trainable parameters ({', '.join(idle[:5])}"
        f"{', ...' if len(idle) > 5 else ''}); remove unused parameters or freeze them (requires_grad_(False))",
    )
    bad = [name for name, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    check.require(not bad, "gradients", f"gave NaN or infinite gradients to {', '.join(bad[:5])}")
