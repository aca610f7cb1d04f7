"""Built-in per-sample losses: ce (Eq. 5) and focal (Eq. 6), and the long-tail losses that act on the logits:
logit_adjusted (Menon et al. 2021), balanced_softmax (Ren et al. 2020) and ldam (Cao et al. 2019).

Every one takes class indices [B] or class distributions [B, C] (mixing) as targets, and ``label_smoothing``;
each registers ``soft_targets=True`` and says so on its class (``soft_targets = True``).

Then the sigmoid losses of the binary and multilabel tasks: bce, sigmoid_focal (Lin et al. 2017), asl (Ridnik et al.
2021) and db (distribution-balanced, Wu et al. 2020). Each runs timm's own criterion (``timm.loss``) with no reduction
and sums its (sample, label) terms per sample, so it is timm's loss of the same options per sample, and a weighter can
weigh its samples (or, for multilabel, its terms: `SigmoidLoss.terms`). The model gives one logit per label: [B, 1]
for a binary task, whose targets are the class indices 0 (negative) and 1 (positive) [B]; [B, L] for a multilabel
task, whose targets are 0/1 (or soft) [B, L]. The softmax ``focal`` is a multiclass loss; its sigmoid form is the
separate ``sigmoid_focal``, so a name means one formula whatever the task."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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


SIGMOID_TASKS = ("binary", "multilabel")


class SigmoidLoss(nn.Module):
    """Per-sample sum over the labels of a sigmoid loss's (sample, label) terms.

    Args:
        terms: ``(logits [B, L], targets, **options) -> [B, L]``, a function of `sampleweight.functional`.
        buffers: Tensor options (``pos_weight``, ``class_counts``), kept as buffers so ``.to(device)`` moves them.
        **options: The function's other options.
    """

    tasks = SIGMOID_TASKS
    """The task kinds it serves (`sampleweight.WeightedLoss` reads this, as the registration's ``tasks``)."""
    soft_targets = False
    """Takes no class distributions (mixing); multilabel targets [B, L] are label targets, not distributions."""

    def __init__(self, terms: Callable[..., Tensor], buffers: Mapping[str, Tensor | None], **options: Any) -> None:
        super().__init__()
        self.function = terms
        self.options = options
        self.buffer_names = [name for name, value in buffers.items() if value is not None]
        for name, value in buffers.items():
            if value is not None:
                self.register_buffer(name, value)

    def terms(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss of each (sample, label) [B, L] (targets as in `forward`)."""
        tensors = {name: getattr(self, name) for name in self.buffer_names}
        return self.function(logits, targets, **tensors, **self.options)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-sample losses [B]: the terms summed over the labels.

        Args:
            logits: One logit per label [B, L] (binary: [B, 1]).
            targets: Binary: class indices 0/1 [B]; multilabel: label targets [B, L]
                (`sampleweight.functional.label_targets`).
        """
        return self.terms(logits, targets).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"{self.function.__name__}, " + ", ".join(f"{k}={v}" for k, v in self.options.items())


def bce(
    pos_weight: float | list[float] | str | None = None,
    label_smoothing: float = 0.0,
    class_counts: Tensor | None = None,
) -> SigmoidLoss:
    """Binary cross-entropy per sample, summed over the labels (timm's ``BinaryCrossEntropy`` per sample).

    Args:
        pos_weight: Weight of the positive term, one value or one per label; ``"neg_pos"``: ``N_negative /
            N_positive`` per label from the training counts (timm's ``compute_class_weights(method="neg_pos")``).
            Default: none (1).
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5, ``(1 - eps) y + eps / 2``.
        class_counts: A dataset fact, needed by ``pos_weight="neg_pos"``: ``[N_negative, N_positive]`` (binary) or
            [2, L] (multilabel).
    """
    return SigmoidLoss(
        SF.binary_cross_entropy,
        {"pos_weight": _pos_weight(pos_weight, class_counts)},
        label_smoothing=_checked_smoothing(label_smoothing),
    )


def sigmoid_focal(gamma: float = 2.0, alpha: float | None = None, label_smoothing: float = 0.0) -> SigmoidLoss:
    """Sigmoid focal loss (Lin et al., ICCV 2017) per sample, summed over the labels.

    ``-alpha_t (1 - p_t)^gamma log p_t`` per (sample, label), ``p_t`` the probability of the target: timm's
    ``PolyBinaryCrossEntropy(epsilon=0)`` and ``torchvision.ops.sigmoid_focal_loss``.

    Args:
        gamma: Focusing parameter >= 0 (default 2, Lin et al.'s); 0 is `bce`.
        alpha: Weight of the positive terms in [0, 1], negatives ``1 - alpha`` (Lin et al. use 0.25 for detection);
            default none.
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return SigmoidLoss(
        SF.sigmoid_focal_loss, {}, gamma=float(gamma), alpha=alpha, label_smoothing=_checked_smoothing(label_smoothing)
    )


def asl(
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    pos_weight: float | list[float] | str | None = None,
    label_smoothing: float = 0.0,
    class_counts: Tensor | None = None,
) -> SigmoidLoss:
    """Asymmetric loss (Ridnik et al., ICCV 2021) per sample, summed over the labels: timm's
    ``AsymmetricLossMultiLabel`` per sample (its ``batchmean`` reduction is the mean of these).

    Args:
        gamma_neg: Focusing parameter of the negative terms (default 4).
        gamma_pos: Focusing parameter of the positive terms (default 1).
        clip: Probability margin shifted onto the negatives (asymmetric clipping); None or 0 disables it.
        eps: Smallest probability before the log.
        pos_weight: Weight of the positive term, as in `bce` (``"neg_pos"`` included).
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5.
        class_counts: A dataset fact, needed by ``pos_weight="neg_pos"``.
    """
    if gamma_neg < 0 or gamma_pos < 0:
        raise ValueError(f"gamma_neg and gamma_pos must be >= 0, got {gamma_neg} and {gamma_pos}")
    if clip is not None and not 0.0 <= clip < 1.0:
        raise ValueError(f"clip must lie in [0, 1), got {clip}")
    return SigmoidLoss(
        SF.asymmetric_loss,
        {"pos_weight": _pos_weight(pos_weight, class_counts)},
        gamma_neg=float(gamma_neg),
        gamma_pos=float(gamma_pos),
        clip=clip,
        eps=float(eps),
        label_smoothing=_checked_smoothing(label_smoothing),
    )


def db(
    class_counts: Tensor,
    map_alpha: float = 0.1,
    map_beta: float = 10.0,
    map_mu: float = 0.2,
    neg_scale: float = 2.0,
    init_bias: float = 0.05,
    focal_gamma: float = 2.0,
    focal_balance: float = 2.0,
    label_smoothing: float = 0.0,
) -> SigmoidLoss:
    """Distribution-balanced loss (Wu et al., ECCV 2020) per sample, summed over the labels: timm's
    ``DistributionBalancedLoss`` per sample (re-balanced weights, negative-tolerant regularisation, focal term).

    Args:
        class_counts: A dataset fact: ``[N_negative, N_positive]`` (binary) or [2, L] (multilabel); the loss reads
            each label's positives and N.
        map_alpha: Smallest re-balancing weight.
        map_beta: Scale of the re-balancing map.
        map_mu: Threshold of the re-balancing map.
        neg_scale: Negative logit scale lambda (1 disables the negative-tolerant scaling).
        init_bias: Class-prior logit shift kappa (0 disables it).
        focal_gamma: Focusing parameter (0 disables the focal term).
        focal_balance: Constant scale of the focal term.
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5.
    """
    counts = torch.as_tensor(class_counts)
    SF.label_counts(counts)  # checked now, not at the first batch
    if not neg_scale > 0:
        raise ValueError(f"neg_scale must be > 0, got {neg_scale}")
    return SigmoidLoss(
        SF.distribution_balanced_loss,
        {"class_counts": counts.double()},
        map_alpha=map_alpha,
        map_beta=map_beta,
        map_mu=map_mu,
        neg_scale=neg_scale,
        init_bias=init_bias,
        focal_gamma=focal_gamma,
        focal_balance=focal_balance,
        label_smoothing=_checked_smoothing(label_smoothing),
    )


def _pos_weight(pos_weight: float | Sequence[float] | str | None, class_counts: Tensor | None) -> Tensor | None:
    """The positive-term weight as a tensor (None for none); ``"neg_pos"`` from the counts, as timm computes it."""
    if pos_weight is None:
        return None
    if isinstance(pos_weight, str):
        if pos_weight != "neg_pos":
            raise ValueError(f"pos_weight must be a number, one per label, or 'neg_pos'; got {pos_weight!r}")
        if class_counts is None:
            raise ValueError("pos_weight='neg_pos' needs the training counts (class_counts=...)")
        from timm.loss import compute_class_weights

        positives, total = SF.label_counts(class_counts)
        return compute_class_weights(positives, total, method="neg_pos")[1]
    weight = torch.as_tensor(pos_weight, dtype=torch.float32).flatten()
    if weight.numel() == 0 or not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError(f"pos_weight must be finite and >= 0, got {weight.tolist()}")
    return weight


@hookimpl
def register_losses(register) -> None:
    register("ce", ce, default=True, soft_targets=True)
    register("focal", focal, default=True, soft_targets=True)
    register("logit_adjusted", logit_adjusted, rebalances=_shifts_logits, soft_targets=True)
    register("balanced_softmax", balanced_softmax, rebalances=True, soft_targets=True)
    register("ldam", ldam, rebalances=True, pairs_with_rebalancing=True, soft_targets=True)
    register("bce", bce, tasks=SIGMOID_TASKS)
    register("sigmoid_focal", sigmoid_focal, tasks=SIGMOID_TASKS)
    register("asl", asl, tasks=SIGMOID_TASKS)
    register("db", db, rebalances=True, tasks=SIGMOID_TASKS)


def _checked_smoothing(label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    return float(label_smoothing)


def _shifts_logits(options: Mapping[str, Any]) -> bool:
    """``logit_adjusted`` corrects for the prior unless its ``tau`` is 0 (then it is plain ce)."""
    return options.get("tau", 1.0) != 0
