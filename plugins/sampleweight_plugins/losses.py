"""Built-in per-sample losses: ce (Eq. 5) and focal (Eq. 6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sampleweight import functional as SF
from sampleweight.hookspecs import hookimpl


class CrossEntropy(nn.Module):
    """Per-sample softmax cross-entropy (Eq. 5), ``reduction="none"``.

    Args:
        label_smoothing: As in ``torch.nn.CrossEntropyLoss``; 0 (default) is the paper's loss.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Per-sample softmax focal loss (Eq. 6), ``reduction="none"``.

    Args:
        gamma: Focusing parameter >= 0; 0 is exactly cross-entropy.
        alpha: Optional per-class factors [C].
    """

    def __init__(self, gamma: float = 1.0, alpha: Sequence[float] | Tensor | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        alpha_t = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).flatten()
        if alpha_t is not None and (not bool(torch.isfinite(alpha_t).all()) or bool((alpha_t < 0).any())):
            raise ValueError(f"alpha must be finite and >= 0, got {alpha_t.tolist()}")
        self.register_buffer("alpha", alpha_t)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.focal_loss(logits, targets, gamma=self.gamma, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}" + ("" if self.alpha is None else f", alpha={self.alpha.tolist()}")


def ce(label_smoothing: float = 0.0) -> CrossEntropy:
    """Softmax cross-entropy per sample (Eq. 5)."""
    return CrossEntropy(label_smoothing)


def focal(gamma: float = 1.0, alpha: Sequence[float] | None = None, num_classes: int | None = None) -> FocalLoss:
    """Focal loss per sample (Eq. 6).

    Args:
        gamma: Focusing parameter >= 0 (default 1, the paper's best).
        alpha: Optional per-class factors, one per class.
        num_classes: A dataset fact; checks the length of ``alpha``.
    """
    if alpha is not None and num_classes is not None and len(alpha) != num_classes:
        raise ValueError(f"alpha has {len(alpha)} entries but there are {num_classes} classes")
    return FocalLoss(gamma, alpha)


@hookimpl
def register_losses(register) -> None:
    register("ce", ce)
    register("focal", focal)
