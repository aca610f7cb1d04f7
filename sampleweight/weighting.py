"""What a weighter is: the batch it sees, the protocol it follows, and the checks on what it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from sampleweight.errors import SampleWeightError, WeightError, describe

__all__ = [
    "BaseWeighter",
    "ProductWeighter",
    "Weighter",
    "WeightingBatch",
    "apply_weighter",
    "check_form",
    "check_weights",
    "class_mix_weights",
    "weight_flags",
    "weight_problem",
    "weighter_name",
]


@dataclass(frozen=True)
class WeightingBatch:
    """What a weighter sees for one batch.

    A batch trained on soft targets (mixing: ``timm.data.Mixup``, CutMix) carries them in ``soft_targets``
    and, in ``targets``, each sample's class of largest target mass (``argmax``; on a tie, the lowest class
    index), so a weighter that reads only ``targets`` keeps working and one that can use the mixture reads
    ``soft_targets``. Label smoothing done by the loss (its ``label_smoothing`` option) does not reach the
    weighter: ``soft_targets`` is the target as the loop passed it.

    Attributes:
        losses: Per-sample losses [B], detached (a weighter never back-propagates).
        targets: Class indices [B] (for soft targets: the class of largest mass).
        epoch: 0-based training epoch.
        step: Number of batches weighted before this one by the same `WeightedLoss` (not reset per
            epoch).
        indices: Dataset indices of the samples [B], or None when the loop does not provide them
            (weighters that keep per-sample history need them).
        soft_targets: The class distributions [B, C] the loop passed as targets (detached), or None for
            class-index targets.
        task: ``"multiclass"``; ``"binary"`` (targets: 0 negative, 1 positive; losses: the sigmoid loss of the one
            logit); or ``"multilabel"``: then ``targets`` are the label targets [B, L] (0/1) and ``losses`` each
            sample's sum over its labels, and a weighter may return one weight per sample [B] or per (sample,
            label) term [B, L] (the loss then weighs each term: ``sum_l w_jl l_jl``).
    """

    losses: Tensor
    targets: Tensor
    epoch: int = 0
    step: int = 0
    indices: Tensor | None = None
    soft_targets: Tensor | None = None
    task: str = "multiclass"

    @property
    def size(self) -> int:
        """B, the number of samples in the batch."""
        return self.losses.shape[0]


@runtime_checkable
class Weighter(Protocol):
    """Anything that turns a `WeightingBatch` into per-sample weights.

    ``__call__`` returns a tensor [B] on the device of ``batch.losses``, finite, ``>= 0``, with no
    gradient. ``state_dict``/``load_state_dict`` round-trip whatever state the weighter keeps, so a
    resumed run weights exactly as an uninterrupted one.
    """

    def __call__(self, batch: WeightingBatch) -> Tensor: ...

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> Any: ...


class BaseWeighter(nn.Module):
    """Convenient base for weighters: implement `forward(batch) -> weights [B]`.

    Being an ``nn.Module`` gives a weighter ``.to(device)`` for per-class weight tables (register
    them as buffers, and index them on the device with no host sync), and ``state_dict`` /
    ``load_state_dict`` for buffers and, through ``get_extra_state``/``set_extra_state``, for any
    Python-side state. A stateless weighter writes only ``forward``.

    A subclass whose ``__init__`` forgets ``super().__init__()`` still works: the module is set up
    before any ``__init__`` runs.

    Attributes:
        name: The name the weighter was registered under (set by `sampleweight.create_weighter`),
            used in error messages.
    """

    name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseWeighter:
        self = super().__new__(cls)
        nn.Module.__init__(self)  # so that a subclass skipping super().__init__() is a complete module
        return self

    def __init__(self) -> None:
        # nn.Module.__init__ ran in __new__; running it again would drop what a subclass set before calling us
        self.name = self.name or type(self).__name__

    def forward(self, batch: WeightingBatch) -> Tensor:  # pragma: no cover - documented contract
        """Return per-sample weights [B] for ``batch``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch) -> weights [B]")

    def mean_weight(self, class_counts: Tensor) -> float | None:
        """The mean weight per sample when the classes come in the proportions of ``class_counts``.

        For a weighter whose weight depends only on the class (CB, ES, DRW after its switch): the
        factor by which it scales the loss, and so, under SGD, the effective learning rate
        (``sampleweight train`` logs it). None (the default) for weighters whose weights depend on
        more than the class.
        """
        return None

    def extra_repr(self) -> str:
        return f"name={weighter_name(self)!r}"


class ProductWeighter(BaseWeighter):
    """Several weighters at once: the weights multiply (e.g. ``"ohem+es"``).

    The product keeps each component's weights of the last batch in ``last_parts``, so that
    `WeightedLoss` checks them one by one and blames a bad vector on the weighter that produced it.

    Args:
        weighters: The components, applied to the same batch.
    """

    def __init__(self, weighters: Sequence[Weighter]) -> None:
        super().__init__()
        if not weighters:
            raise ValueError("ProductWeighter needs at least one weighter")
        self.components = list(weighters)
        # Register module components so .to(device) and state_dict reach them.
        self.parts = nn.ModuleList(w for w in self.components if isinstance(w, nn.Module))
        self.name = "+".join(weighter_name(w) for w in self.components)
        self.last_parts: list[tuple[str, Tensor]] = []
        """``(name, weights)`` of every component in the last batch."""

    def forward(self, batch: WeightingBatch) -> Tensor:
        names = [weighter_name(component) for component in self.components]
        outputs = [apply_weighter(c, batch, name) for c, name in zip(self.components, names, strict=True)]
        self.last_parts = list(zip(names, outputs, strict=True))
        weights = outputs[0]
        for output in outputs[1:]:
            weights = _broadcast(weights, output) * _broadcast(output, weights)
        return weights

    def get_extra_state(self) -> dict[str, Any]:
        return {str(i): dict(w.state_dict()) for i, w in enumerate(self.components) if not isinstance(w, nn.Module)}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        for i, w in enumerate(self.components):
            if not isinstance(w, nn.Module) and str(i) in state:
                w.load_state_dict(state[str(i)])


def _broadcast(weights: Tensor, other: Tensor) -> Tensor:
    """Per-sample weights [B] as [B, 1] when ``other`` weighs (sample, label) terms [B, L], so the two multiply."""
    return weights.unsqueeze(-1) if weights.ndim < other.ndim else weights


def class_mix_weights(weighter: object, class_counts: Tensor) -> list[tuple[str, float]]:
    """``(name, mean weight per sample)`` of each class weighter in ``weighter`` (a product's components
    one by one) under the class mix ``class_counts``: what `BaseWeighter.mean_weight` reports."""
    found = []
    for component in getattr(weighter, "components", None) or [weighter]:
        mean_weight = getattr(component, "mean_weight", None)
        value = mean_weight(class_counts) if callable(mean_weight) else None
        if value is not None:
            found.append((weighter_name(component), float(value)))
    return found


def weighter_name(weighter: object) -> str:
    """The name to show for a weighter in messages: its registered name, else its class name."""
    return getattr(weighter, "name", "") or type(weighter).__name__


def weight_flags(weights: Tensor) -> Tensor:
    """``[some weight is NaN or infinite, some weight is negative]``: a bool tensor [2], no host sync."""
    finite = (weights.abs() < float("inf")).all()  # = isfinite(weights).all() in 3 kernels instead of 5 (NaN fails)
    return torch.stack([~finite, (weights < 0).any()])


def weight_problem(flags: Tensor) -> tuple[str, str] | None:
    """What `weight_flags` found, as ``(problem, rule)`` for a message; None when nothing."""
    non_finite, negative = flags.tolist()
    if non_finite:
        return "non-finite weights (NaN or inf)", "weights must be finite"
    if negative:
        return "negative weights", "weights must be >= 0"
    return None


def apply_weighter(weighter: Weighter, batch: WeightingBatch, name: str) -> Tensor:
    """``weighter(batch)``, its form checked (`check_form`).

    Raises:
        WeightError: The weighter raised (its exception is kept as the cause; the message names the
            weighter, the epoch and the step), or returned something of the wrong form. A
            `SampleWeightError` it raises itself passes unchanged: it already names the problem.
    """
    try:
        weights = weighter(batch)
    except SampleWeightError:
        raise
    except Exception as exc:
        raise WeightError(
            f"weighter {name!r} failed at epoch {batch.epoch}, global step {batch.step} (batch of {batch.size}): "
            f"{describe(exc)}",
            epoch=batch.epoch,
            step=batch.step,
            weighter=name,
            problem=f"failed: {describe(exc)}",
        ) from exc
    return check_form(weights, batch, name)


def check_form(weights: Any, batch: WeightingBatch, name: str) -> Tensor:
    """Check what needs no host sync: a float tensor [B] on the device of the losses.

    Returns:
        The weights, detached, in the dtype of the losses (float16/bfloat16 weights are widened to it,
        float64 ones narrowed), so that ``last_weights`` and the product with the losses share one dtype.

    Raises:
        WeightError: Naming the weighter, the problem and the fix.
    """
    expected = (batch.size,)
    if not isinstance(weights, Tensor):
        raise WeightError(
            f"weighter {name!r} returned {type(weights).__name__}, expected a float tensor of shape "
            f"{list(expected)}; return one weight per sample"
        )
    per_term = batch.task == "multilabel" and tuple(weights.shape) == tuple(batch.targets.shape)
    if tuple(weights.shape) != expected and not per_term:
        raise WeightError(
            f"weighter {name!r} returned weights of shape {list(weights.shape)} for a batch of "
            f"{batch.size}; it must return one weight per sample, shape {list(expected)}"
        )
    if not weights.is_floating_point():
        raise WeightError(f"weighter {name!r} returned {weights.dtype} weights; return a float tensor")
    if weights.device != batch.losses.device:
        raise WeightError(
            f"weighter {name!r} returned weights on {weights.device} for losses on {batch.losses.device}; "
            "create them on batch.losses.device (e.g. torch.ones_like(batch.losses))"
        )
    return weights.detach().to(batch.losses.dtype)


def check_weights(weights: Any, batch: WeightingBatch, name: str) -> Tensor:
    """Check that ``weights`` is a finite, non-negative float vector with one entry per sample.

    Args:
        weights: What the weighter returned.
        batch: The batch it was given.
        name: The weighter's name, for the error message.

    Returns:
        ``weights``, detached.

    Raises:
        WeightError: Naming the weighter, the problem, the batch positions and the fix.
    """
    weights = check_form(weights, batch, name)
    flags = weight_flags(weights)
    found = weight_problem(flags)  # the one host sync
    if found is not None:
        problem, rule = found
        bad = ~torch.isfinite(weights) if bool(flags[0]) else weights < 0
        positions = (bad.any(dim=-1) if bad.ndim == 2 else bad).nonzero().flatten().tolist()
        raise WeightError(
            f"weighter {name!r} returned {problem} at batch positions {positions[:8]} "
            f"(epoch {batch.epoch}, global step {batch.step}); {rule}",
            epoch=batch.epoch,
            step=batch.step,
        )
    return weights
