"""Checks that stay on the device: remember the first failing step, read it on the host only when asked.

Reading a value on the host (``.item()``, ``bool(tensor)``) makes the host wait for the GPU, so it
cannot queue the next step's kernels while the current one runs. A training loop that checks the
loss and the weights of every step that way pays a stall per step. `DeferredCheck` keeps the check
on the device instead: each step adds a few tiny kernels, and the host reads the outcome (one
synchronisation) every so many steps and at the end of an epoch, and still learns exactly which
step failed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DeferredCheck", "Failure"]


@dataclass(frozen=True)
class Failure:
    """The first failing step a `DeferredCheck` saw.

    Attributes:
        epoch: Its epoch.
        step: Its step.
        detail: The ``detail`` tensor passed with it, on the CPU (e.g. which weights were bad, or the loss).
    """

    epoch: int
    step: int
    detail: Tensor


class DeferredCheck:
    """The first step at which a condition held, recorded on the device without a host sync.

    Example:
        >>> check = DeferredCheck()
        >>> for step, loss in enumerate(torch.tensor([0.5, float("nan"), float("inf")])):
        ...     check.update(~torch.isfinite(loss), epoch=0, step=step, detail=loss)
        >>> failure = check.pop()  # the one host sync
        >>> failure.step, failure.detail.item()
        (1, nan)
        >>> check.pop() is None  # popping resets it
        True
    """

    def __init__(self) -> None:
        self._at: Tensor | None = None  # int64 scalar: epoch * _STEPS + step of the first failure, -1 while none
        self._detail: Tensor | None = None

    def update(self, failed: Tensor, *, epoch: int, step: int, detail: Tensor) -> None:
        """Record ``(epoch, step, detail)`` if ``failed`` (a 0-dim bool tensor) holds and nothing failed before.

        Queues five small kernels; never waits for the device.
        """
        if not 0 <= step < _STEPS:
            raise ValueError(f"step must lie in [0, {_STEPS}), got {step}")
        at, kept = self._at, self._detail  # both None, or both set
        if at is None or kept is None:
            at = torch.full((), -1, dtype=torch.long, device=failed.device)
            kept = torch.zeros_like(detail)
        elif at.device != failed.device:  # the module moved to another device
            at, kept = at.to(failed.device), kept.to(failed.device)
        first = failed & (at < 0)
        # a Python scalar travels as a kernel argument: no host-to-device copy, no sync
        self._at = torch.where(first, epoch * _STEPS + step, at)
        self._detail = torch.where(first, detail.detach(), kept)

    def pop(self) -> Failure | None:
        """The first failure since the last `pop` (one host sync), or None; forgets it."""
        if self._at is None or self._detail is None:
            return None
        at, detail = int(self._at), self._detail.cpu()
        self._at = self._detail = None
        if at < 0:
            return None
        epoch, step = divmod(at, _STEPS)
        return Failure(epoch, step, detail)


_STEPS = 2**40
"""Steps per epoch that `DeferredCheck` can tell apart (epoch and step share one int64)."""
