"""Batch mixing (Mixup, CutMix, Remix, ...): the `Mixer` protocol, `BaseMixer`, and Remix's label rule.

A mixer takes a training batch (images [B, ...] and class indices [B]) and returns the mixed images with their
targets: class distributions [B, C], which `sampleweight.WeightedLoss` takes for every built-in loss and weighter,
or the class indices unchanged for a batch it does not mix. It is called with the epoch and the step (and the
process's rank), and its draws follow from ``(seed, epoch, step, rank)`` alone (`mixing_seed`): a resumed run
mixes exactly as an uninterrupted one, and each process of a distributed run mixes its own share of the global
batch with its own draws. Mixing is for training only: evaluation passes the images as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from sampleweight import distributed

__all__ = ["BaseMixer", "Mixer", "mixing_seed", "numpy_seeded", "remix_label_share"]

_MIXING_STREAM = 0x6D6978  # tells the mixing draws apart from every other (seed, epoch, ...) stream


def mixing_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """A 32-bit seed for the mixing draws of one step of one process: a function of ``(seed, epoch, step, rank)``.

    Example:
        >>> mixing_seed(0, 1, 2) == mixing_seed(0, 1, 2) != mixing_seed(0, 1, 2, rank=1)
        True
    """
    entropy = [_MIXING_STREAM, seed, epoch, step, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the duration of the block, and give it back its state afterwards.

    ``timm.data.Mixup`` draws its mixing ratios and CutMix boxes from numpy's global generator; inside this block
    those draws follow from ``seed`` alone, and code after it sees the global generator as it was before.

    Example:
        >>> before = np.random.get_state()[1].copy()
        >>> with numpy_seeded(3):
        ...     first = np.random.rand()
        >>> with numpy_seeded(3):
        ...     second = np.random.rand()
        >>> first == second and bool((np.random.get_state()[1] == before).all())
        True
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@runtime_checkable
class Mixer(Protocol):
    """What mixes a training batch: ``mixer(images, targets, *, epoch, step, rank=None) -> (images, targets)``.

    ``images`` [B, ...] and ``targets`` (class indices [B]) are one process's share of the batch; the result is
    the mixed images (same shape, dtype and device) and their class distributions [B, C] (rows summing to 1), or
    the inputs' class indices unchanged for a batch it does not mix. The inputs are left unchanged. The draws
    follow from ``(seed, epoch, step, rank)`` (``rank`` None: the process group's), never from the global random
    state, which a call leaves as it found it. ``state_dict`` / ``load_state_dict`` round-trip whatever else it
    keeps (nothing, for the built-ins).
    """

    def __call__(
        self, images: Tensor, targets: Tensor, *, epoch: int, step: int, rank: int | None = None
    ) -> tuple[Tensor, Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


class BaseMixer:
    """Base for mixer plugins: implement `mix`, which gets a seed derived from ``(seed, epoch, step, rank)``.

    It supplies the call (which switches mixing off from ``off_epoch`` on, returning the batch as it is), the
    seeding and an empty `state_dict`.

    Args:
        num_classes: The number of classes C of the soft targets [B, C].
        seed: Base seed of every draw (a run's ``--seed``).
        off_epoch: The (0-based) epoch from which on batches are no longer mixed (timm's ``--mixup-off-epoch``);
            None mixes every epoch.

    Raises:
        ValueError: ``num_classes`` < 1, a negative ``seed``, or an ``off_epoch`` < 0.

    Example:
        >>> class Swap(BaseMixer):  # every sample takes its partner's image and label
        ...     def mix(self, images, targets, seed):
        ...         one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        ...         return images.flip(0), one_hot.flip(0)
        >>> images, soft = Swap(3)(torch.zeros(2, 1), torch.tensor([0, 2]), epoch=0, step=0)
        >>> soft.tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, num_classes: int, *, seed: int = 0, off_epoch: int | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if off_epoch is not None and (isinstance(off_epoch, bool) or not isinstance(off_epoch, int) or off_epoch < 0):
            raise ValueError(f"off_epoch must be an epoch >= 0 (or None: mix every epoch), got {off_epoch!r}")
        self.num_classes = num_classes
        self.seed = seed
        self.off_epoch = off_epoch

    def __call__(
        self, images: Tensor, targets: Tensor, *, epoch: int, step: int, rank: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mix one batch (`mix`), or return it as it is from ``off_epoch`` on."""
        if self.off_epoch is not None and epoch >= self.off_epoch:
            return images, targets
        here = distributed.rank() if rank is None else rank
        return self.mix(images, targets, mixing_seed(self.seed, epoch, step, here))

    def mix(self, images: Tensor, targets: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """The mixed images and their targets; draw from ``seed`` only, leave the inputs unchanged."""
        raise NotImplementedError(f"{type(self).__name__} must implement mix(images, targets, seed)")

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the draws follow from the seed, the epoch and the step."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to restore."""


def remix_label_share(
    mix_share: Tensor, counts_a: Tensor, counts_b: Tensor, *, kappa: float = 3.0, tau: float = 0.5
) -> Tensor:
    """Remix's label share of sample ``a`` (Chou et al., "Remix: Rebalanced Mixup", ECCV 2020 workshops, Sec. 3).

    A pair ``(a, b)`` mixed as ``x = lam_x x_a + (1 - lam_x) x_b`` gets the label ``lam_y y_a + (1 - lam_y) y_b``
    with ``lam_y = 0`` when ``n_a / n_b >= kappa`` and ``lam_x < tau`` (``a`` is the majority and ``b``'s share of
    the image is large enough), ``lam_y = 1`` when ``n_a / n_b <= 1 / kappa`` and ``1 - lam_x < tau``, else
    ``lam_y = lam_x`` (mixup's label): the label goes to the minority sample when the classes' counts differ by
    at least ``kappa`` and the minority's share of the image exceeds ``1 - tau``. BagofTricks-LT implements the
    same rule (``lib/core/combiner.py``, ``remix_kappa``/``remix_tau``). The count conditions are compared as
    products (``n_a >= kappa n_b``, ``kappa n_a <= n_b``), so that a ratio of exactly ``kappa`` counts.

    Args:
        mix_share: ``lam_x``, the share of sample ``a`` in the mixed input (a tensor [B], or broadcastable).
        counts_a: ``n_a``, the training-set count of ``a``'s class, per sample.
        counts_b: ``n_b``, that of the partner's class.
        kappa: The count ratio from which the minority takes the label (the paper's default 3).
        tau: The share below which the majority sample loses its label (the paper's default 0.5).

    Returns:
        ``lam_y``, the label share of ``a``, of ``mix_share``'s dtype.

    Example:
        >>> remix_label_share(torch.tensor([0.3, 0.3, 0.7]), torch.tensor([90, 10, 90]), torch.tensor([10, 90, 10]))
        tensor([0.0000, 0.3000, 0.7000])
    """
    n_a, n_b = counts_a.to(torch.float64), counts_b.to(torch.float64)
    share = mix_share.to(torch.float64)
    label = torch.where((n_a >= kappa * n_b) & (share < tau), torch.zeros_like(share), share)
    label = torch.where((kappa * n_a <= n_b) & (1.0 - share < tau), torch.ones_like(share), label)
    return label.to(mix_share.dtype)
