"""Built-in per-sample losses: ce (Eq. 5) and focal (Eq. 6), and the long-tail losses that act on the logits:
logit_adjusted (Menon et al. 2021), balanced_softmax (Ren et al. 2020) and ldam (Cao et al. 2019).

Every one takes class indices [B] or class distributions [B, C] (mixing) as targets, and ``label_smoothing``;
each registers ``soft_targets=True`` and says so on its class (``soft_targets = True``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sampleweight import functional as SF
from sampleweight.hookspecs import hookimpl


class CrossEntropy(nn.Module):
    """Per-sample softmax cross-entropy (Eq. 5), ``reduction="none"``; soft targets: ``-sum_c y_c log p_c``.

    Args:
        label_smoothing: As in ``torch.nn.CrossEntropyLoss``; 0 (default) is the paper's loss.
    """

    soft_targets = True
    """Takes class distributions [B, C] as targets too (`sampleweight.WeightedLoss` reads this)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = _checked_smoothing(label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Per-sample softmax focal loss (Eq. 6), ``reduction="none"``.

    Soft targets: ``-sum_c y_c alpha_c (1 - p_c)^gamma log p_c`` (`sampleweight.functional.focal_loss`).

    Args:
        gamma: Focusing parameter >= 0; 0 is exactly cross-entropy.
        alpha: Optional per-class factors [C].
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first.
    """

    soft_targets = True

    def __init__(
        self, gamma: float = 1.0, alpha: Sequence[float] | Tensor | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.label_smoothing = _checked_smoothing(label_smoothing)
        alpha_t = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).flatten()
        if alpha_t is not None and (not bool(torch.isfinite(alpha_t).all()) or bool((alpha_t < 0).any())):
            raise ValueError(f"alpha must be finite and >= 0, got {alpha_t.tolist()}")
        self.register_buffer("alpha", alpha_t)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.focal_loss(logits, targets, gamma=self.gamma, alpha=self.alpha, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        alpha = "" if self.alpha is None else f", alpha={self.alpha.tolist()}"
        return f"gamma={self.gamma}{alpha}, label_smoothing={self.label_smoothing}"


class LogitAdjustedLoss(nn.Module):
    """Per-sample cross-entropy on ``logits + tau * offsets``, offsets fixed per class (a buffer).

    With ``offsets = log prior`` it is the logit-adjusted loss; with ``offsets = log counts`` and ``tau = 1``
    the balanced softmax loss. Soft targets: the soft cross-entropy on the adjusted logits.

    Args:
        offsets: Per-class offsets [C] (finite).
        tau: Strength, ``>= 0``.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first.
    """

    soft_targets = True

    def __init__(self, offsets: Tensor, tau: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = float(tau)
        self.label_smoothing = _checked_smoothing(label_smoothing)
        self.register_buffer("offsets", offsets.float())

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.logit_adjusted_cross_entropy(
            logits, targets, self.offsets, tau=self.tau, label_smoothing=self.label_smoothing
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, label_smoothing={self.label_smoothing}"


class LDAMLoss(nn.Module):
    """Per-sample LDAM loss: CE on ``s * (logits - m_y e_y)``, margins ``m_c`` proportional to ``N_c^{-1/4}``.

    Soft targets: ``-sum_c y_c log softmax(s * (z - y * m))_c``, each margin weighted by its class's target mass
    (`sampleweight.functional.ldam_loss`).

    Args:
        margins: Per-class margins [C] (`sampleweight.functional.ldam_margins`).
        s: Logit scale, ``> 0``.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first.
    """

    soft_targets = True

    def __init__(self, margins: Tensor, s: float = 30.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not s > 0:
            raise ValueError(f"s must be > 0, got {s}")
        self.s = float(s)
        self.label_smoothing = _checked_smoothing(label_smoothing)
        self.register_buffer("margins", margins.float())

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return SF.ldam_loss(logits, targets, self.margins, s=self.s, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"s={self.s}, max_margin={float(self.margins.max()):.4g}, label_smoothing={self.label_smoothing}"


def ce(label_smoothing: float = 0.0) -> CrossEntropy:
    """Softmax cross-entropy per sample (Eq. 5).

    Args:
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0).
    """
    return CrossEntropy(label_smoothing)


def focal(
    gamma: float = 1.0,
    alpha: Sequence[float] | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> FocalLoss:
    """Focal loss per sample (Eq. 6).

    Args:
        gamma: Focusing parameter >= 0 (default 1, the paper's best).
        alpha: Optional per-class factors, one per class.
        num_classes: A dataset fact; checks the length of ``alpha``.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0).
    """
    if alpha is not None and num_classes is not None and len(alpha) != num_classes:
        raise ValueError(f"alpha has {len(alpha)} entries but there are {num_classes} classes")
    return FocalLoss(gamma, alpha, label_smoothing)


def logit_adjusted(class_counts: Tensor, tau: float = 1.0, label_smoothing: float = 0.0) -> LogitAdjustedLoss:
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): CE on ``logits + tau * log(prior)``.

    Args:
        class_counts: A dataset fact: training-set counts per class, the prior ``N_c / N`` (a class with no
            images counts as one, so the prior stays finite; `sampleweight.functional.class_log_prior`).
        tau: Strength of the adjustment, ``>= 0`` (default 1, the paper's choice).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0).
    """
    return LogitAdjustedLoss(SF.class_log_prior(class_counts), tau, label_smoothing)


def balanced_softmax(class_counts: Tensor, label_smoothing: float = 0.0) -> LogitAdjustedLoss:
    """Balanced softmax (Ren et al., NeurIPS 2020): CE on ``logits + log(N_c)``.

    The same loss as ``logit_adjusted`` with ``tau = 1`` (the two differ by ``log N`` on every logit).

    Args:
        class_counts: A dataset fact: training-set counts per class (a class with no images counts as one).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0).
    """
    log_counts = SF.class_log_prior(class_counts) + math.log(float(torch.as_tensor(class_counts).sum()))
    return LogitAdjustedLoss(log_counts, label_smoothing=label_smoothing)


def ldam(class_counts: Tensor, max_margin: float = 0.5, s: float = 30.0, label_smoothing: float = 0.0) -> LDAMLoss:
    """LDAM loss (Cao et al., NeurIPS 2019), as kaidic/LDAM-DRW's ``LDAMLoss`` per sample.

    With ``--weighter drw`` it is LDAM-DRW (deferred re-weighting from 80 % of training).

    Args:
        class_counts: A dataset fact: training-set counts per class (a class with no images counts as one).
        max_margin: Margin of the rarest class (default 0.5).
        s: Logit scale (default 30).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0), margins included.
    """
    return LDAMLoss(SF.ldam_margins(class_counts, max_margin), s, label_smoothing)


@hookimpl
def register_losses(register) -> None:
    register("ce", ce, default=True, soft_targets=True)
    register("focal", focal, default=True, soft_targets=True)
    register("logit_adjusted", logit_adjusted, rebalances=_shifts_logits, soft_targets=True)
    register("balanced_softmax", balanced_softmax, rebalances=True, soft_targets=True)
    register("ldam", ldam, rebalances=True, pairs_with_rebalancing=True, soft_targets=True)


def _checked_smoothing(label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    return float(label_smoothing)


def _shifts_logits(options: Mapping[str, Any]) -> bool:
    """``logit_adjusted`` corrects for the prior unless its ``tau`` is 0 (then it is plain ce)."""
    return options.get("tau", 1.0) != 0
