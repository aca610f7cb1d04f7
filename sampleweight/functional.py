"""Stateless functional forms of the paper's losses and weightings.

Each function is the equation it names, on tensors, with no state and no registry: the built-in
plugins are thin stateful wrappers around these (as torchmetrics keeps ``functional/`` beside its
classes), and they are what a user calls who wants one formula in their own code.

Equations refer to the paper (``docs/weighting.md`` restates them):
Eq. 5 cross-entropy, Eq. 6 focal loss, Eq. 7 class balance, Eq. 8 effective number of samples,
Eq. 9 curriculum pacing (and its per-class form, the paper's proposed future work). Beyond the paper,
the long-tail losses that act on the logits: logit adjustment (Menon et al., ICLR 2021), balanced
softmax (Ren et al., NeurIPS 2020) and LDAM (Cao et al., NeurIPS 2019).

**Targets.** Every loss takes class indices [B] (long) or class distributions [B, C] (float, rows summing
to 1: what ``timm.data.Mixup`` returns). A distribution ``y`` gives each loss its soft form (stated in
each function, ``docs/long-tail.md``); a one-hot ``y`` gives exactly the loss and gradient of its class
index. ``label_smoothing = eps`` first turns the target, hard or soft, into ``(1 - eps) y + eps / C``
(`smooth_targets`), then the soft form applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "asymmetric_loss",
    "binary_cross_entropy",
    "class_balance_weights",
    "class_curriculum_mask",
    "class_log_prior",
    "cross_entropy",
    "curriculum_fraction",
    "curriculum_mask",
    "curriculum_pace",
    "curriculum_size",
    "deferred_start_epoch",
    "distribution_balanced_loss",
    "effective_number_weights",
    "focal_loss",
    "label_counts",
    "label_targets",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_cross_entropy",
    "logit_adjusted_probabilities",
    "normalize_class_weights",
    "sigmoid_focal_loss",
    "smooth_targets",
    "soft_cross_entropy",
    "target_distribution",
]


def cross_entropy(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """Per-sample softmax cross-entropy (Eq. 5): ``l_j = -log p_j(y_j)``; soft: ``-sum_c y_c log p_c``.

    The soft form is timm's ``SoftTargetCrossEntropy`` per sample (and, with ``label_smoothing``, its
    ``LabelSmoothingCrossEntropy`` for class indices).

    Args:
        logits: Scores [B, C] (any float dtype; computed in float32 or wider).
        targets: Class indices [B], or class distributions [B, C].
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (as in
            ``torch.nn.functional.cross_entropy``); 0 is the paper's loss.

    Returns:
        Losses [B], float32 (float64 for float64 input).
    """
    logits = _wide(logits)
    distribution = target_distribution(logits, targets, label_smoothing=label_smoothing)
    if distribution is None:
        return F.cross_entropy(logits, targets, reduction="none")
    return soft_cross_entropy(logits, distribution)


def soft_cross_entropy(logits: Tensor, distribution: Tensor) -> Tensor:
    """``-sum_c y_c log softmax(logits)_c`` per sample: timm's ``SoftTargetCrossEntropy`` before its mean.

    Args:
        logits: Scores [B, C] (computed in their own dtype: widen them first).
        distribution: Targets [B, C] in the dtype of ``logits``.

    Returns:
        Losses [B].
    """
    return (-distribution * logits.log_softmax(dim=-1)).sum(dim=-1)


def smooth_targets(distribution: Tensor, label_smoothing: float) -> Tensor:
    """Label smoothing of a class distribution: ``(1 - eps) y + eps / C`` (Szegedy et al., CVPR 2016).

    The rule of ``torch.nn.functional.cross_entropy(label_smoothing=eps)`` and of timm's ``Mixup``, which
    smooths the mixed distribution.

    Args:
        distribution: Targets [B, C].
        label_smoothing: ``eps`` in [0, 1).

    Returns:
        The smoothed targets [B, C] (``distribution`` itself for ``eps = 0``).

    Example:
        >>> smooth_targets(torch.tensor([[1.0, 0.0]]), 0.2).round(decimals=4).tolist()
        [[0.8999999761581421, 0.10000000149011612]]
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    if label_smoothing == 0:
        return distribution
    return distribution * (1.0 - label_smoothing) + label_smoothing / distribution.shape[-1]


def target_distribution(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> Tensor | None:
    """The target as a distribution [B, C] in the dtype of ``logits``, smoothed; None for plain class indices.

    None means: class indices with no smoothing, for which a loss keeps its hard form. Otherwise class
    indices become one-hot rows, and the rows are smoothed (`smooth_targets`). A distribution is not
    checked to sum to 1 (that would cost a host synchronisation per batch).

    Args:
        logits: Scores [B, C].
        targets: Class indices [B] (integers), or class distributions [B, C] (floats).
        label_smoothing: ``eps`` in [0, 1).

    Returns:
        Targets [B, C], or None.

    Raises:
        ValueError: Targets of another shape, or a [B, C] integer tensor.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    if targets.ndim == 1 and not targets.is_floating_point():
        if label_smoothing == 0:
            return None
        distribution = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    elif targets.ndim == 2 and targets.is_floating_point() and targets.shape == logits.shape:
        distribution = targets.to(logits.dtype)
    else:
        raise ValueError(
            f"targets must be class indices [B] (integers) or class distributions [B, C] (floats) for logits "
            f"{list(logits.shape)}, got {targets.dtype} of shape {list(targets.shape)}"
        )
    return smooth_targets(distribution, label_smoothing)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 1.0,
    alpha: Tensor | Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Per-sample softmax focal loss (Eq. 6): ``l_j = -alpha_{y_j} (1 - p_j)^gamma log p_j``.

    Soft targets: ``l_j = -sum_c y_c alpha_c (1 - p_c)^gamma log p_c``, the expected hard loss under the
    target distribution, as kornia's ``focal_loss`` sums its one-hot target times
    ``-alpha (1 - p)^gamma log p`` over the classes (``kornia/losses/focal.py``); for a mixed pair it is
    ``lambda FL(a) + (1 - lambda) FL(b)``, the mixup criterion of Zhang et al. (ICLR 2018).

    Computed from ``log_softmax`` so it stays finite for very large logits; ``1 - p`` is taken as
    ``-expm1(log p)`` so it keeps its precision when ``p`` is close to 1. With ``gamma = 0`` and no
    ``alpha`` the result is exactly `cross_entropy`.

    Args:
        logits: Scores [B, C].
        targets: Class indices [B], or class distributions [B, C].
        gamma: Focusing parameter, ``>= 0`` (the paper found 1 best).
        alpha: Optional per-class factors [C] (``alpha_y`` multiplies the loss of a class-y sample).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first.

    Returns:
        Losses [B], float32 (float64 for float64 input).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
        >>> focal_loss(logits, torch.tensor([0, 0]), gamma=0.0).allclose(cross_entropy(logits, torch.tensor([0, 0])))
        True
    """
    if gamma < 0:
        raise ValueError(f"focal loss needs gamma >= 0, got {gamma}")
    logits = _wide(logits)
    distribution = target_distribution(logits, targets, label_smoothing=label_smoothing)
    log_p = logits.log_softmax(dim=-1)
    if distribution is None:
        log_p = log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    if gamma == 0:
        loss = -log_p
    else:
        # clamp: (1-p)^gamma has an infinite slope at p = 1 for gamma < 1; the clamped value has zero
        # gradient there instead of inf * 0 = NaN, and the loss itself is 0 either way.
        one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
        loss = -one_minus_p.pow(gamma) * log_p
    if alpha is not None:
        alpha_t = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        loss = loss * (alpha_t if distribution is not None else alpha_t[targets])
    return loss if distribution is None else (distribution * loss).sum(dim=-1)


def label_targets(logits: Tensor, targets: Tensor) -> Tensor:
    """The targets of a sigmoid (binary or multilabel) loss as one float per (sample, label) [B, L].

    Args:
        logits: One logit per label [B, L] (a binary task: L = 1).
        targets: For a binary task class indices [B] (0: negative, 1: positive; not checked, which would cost a
            host sync), or label targets [B, L] (0/1, or soft values in [0, 1]) of the shape of ``logits``.

    Returns:
        Targets [B, L] in the dtype of ``logits``.

    Raises:
        ValueError: Targets of another shape (class indices for more than one logit, say).

    Example:
        >>> label_targets(torch.zeros(3, 1), torch.tensor([0, 1, 1])).flatten().tolist()
        [0.0, 1.0, 1.0]
    """
    if targets.ndim == 1 and logits.ndim == 2 and logits.shape[1] == 1:
        return targets.to(logits.dtype).unsqueeze(1)
    if targets.shape == logits.shape and logits.ndim == 2:
        return targets.to(logits.dtype)
    raise ValueError(
        f"a sigmoid loss takes 0/1 class indices [B] for one logit [B, 1] (binary) or label targets [B, L] of the "
        f"logits' shape (multilabel); got logits {list(logits.shape)} and targets {list(targets.shape)}"
    )


def multi_hot_counts(targets: Tensor) -> Tensor:
    """A multilabel task's ``class_counts`` from its multi-hot targets [N, L]: the [2, L] table, row 0 the samples
    without each label, row 1 those with it (the inverse of `label_counts`).

    Example:
        >>> multi_hot_counts(torch.tensor([[1, 0], [1, 1], [0, 0]])).tolist()
        [[1, 2], [2, 1]]
    """
    positives = (targets != 0).sum(0)
    return torch.stack([len(targets) - positives, positives])


def label_counts(class_counts: Tensor | Sequence[int] | Sequence[Sequence[int]]) -> tuple[Tensor, int]:
    """Positive counts per label [L] and the number of samples N, from a sigmoid task's ``class_counts``.

    A binary task's ``class_counts`` is ``[N_negative, N_positive]`` (its two classes); a multilabel task's is
    [2, L], column ``l`` holding label ``l``'s negatives and positives (each column sums to N).

    Example:
        >>> positives, total = label_counts([90, 10])
        >>> positives.tolist(), total
        ([10.0], 100)
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.ndim == 1 and counts.numel() == 2:
        counts = counts.unsqueeze(1)
    if counts.ndim != 2 or counts.shape[0] != 2 or bool((counts < 0).any()):
        raise ValueError(
            "a sigmoid task's class_counts are [N_negative, N_positive] (binary) or [2, L] (multilabel: negatives "
            f"and positives per label), >= 0; got {counts.tolist()}"
        )
    totals = counts.sum(dim=0)
    if bool((totals != totals[0]).any()) or float(totals[0]) <= 0:
        raise ValueError(f"every label's negatives and positives must add up to the same N > 0, got {counts.tolist()}")
    return counts[1], int(totals[0])


def binary_cross_entropy(
    logits: Tensor, targets: Tensor, *, pos_weight: Tensor | float | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Binary cross-entropy of each (sample, label): ``-(w_l y log p + (1 - y) log(1 - p))``, ``p = sigmoid(z)``.

    timm's ``BinaryCrossEntropy`` before its reduction (dense targets, ``smooth_dense``).

    Args:
        logits: One logit per label [B, L].
        targets: As `label_targets` takes them.
        pos_weight: ``w``, the weight of the positive term: one value or one per label [L].
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5, ``(1 - eps) y + eps / 2``.

    Returns:
        Terms [B, L], float32 (float64 for float64 logits).
    """
    logits = _wide(logits)
    y = _smooth_labels(label_targets(logits, targets), label_smoothing)
    weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, y, pos_weight=weight, reduction="none")


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, *, gamma: float = 2.0, alpha: float | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Sigmoid focal loss of each (sample, label) (Lin et al., ICCV 2017): ``-alpha_t (1 - p_t)^gamma log p_t``.

    ``p_t = y p + (1 - y)(1 - p)``, ``alpha_t = y alpha + (1 - y)(1 - alpha)`` (1 without ``alpha``); the BCE term is
    taken from the logits, so it stays finite. ``torchvision.ops.sigmoid_focal_loss`` with ``reduction="none"``.

    Args:
        logits: One logit per label [B, L].
        targets: As `label_targets` takes them.
        gamma: Focusing parameter >= 0; 0 is `binary_cross_entropy`.
        alpha: Weight of the positive terms in [0, 1], or None.
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5.

    Returns:
        Terms [B, L], float32 (float64 for float64 logits).
    """
    logits = _wide(logits)
    y = _smooth_labels(label_targets(logits, targets), label_smoothing)
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if gamma:
        p = logits.sigmoid()
        one_minus_pt = (y * (1 - p) + (1 - y) * p).clamp_min(torch.finfo(logits.dtype).tiny)
        loss = loss * one_minus_pt.pow(gamma)
    if alpha is not None:
        loss = loss * (y * alpha + (1 - y) * (1 - alpha))
    return loss


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    pos_weight: Tensor | float | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Asymmetric loss of each (sample, label) (Ridnik et al., ICCV 2021, Eq. 4-5).

    ``-y w (1 - p)^{gamma+} log p - (1 - y) p_m^{gamma-} log(1 - p_m)``, with the shifted probability
    ``p_m = max(p - clip, 0)`` and probabilities clamped to ``eps`` before the log; timm's ``AsymmetricLossMultiLabel``
    before its reduction. The focusing factors carry gradient, as in the paper's reference code by default.

    Args:
        logits: One logit per label [B, L].
        targets: As `label_targets` takes them.
        gamma_neg: Focusing parameter of the negative terms.
        gamma_pos: Focusing parameter of the positive terms.
        clip: The margin ``m`` (None or 0: no shift).
        eps: Smallest probability before the log.
        pos_weight: ``w``: one value or one per label [L] (None: 1).
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5.

    Returns:
        Terms [B, L], float32 (float64 for float64 logits).
    """
    logits = _wide(logits)
    y = _smooth_labels(label_targets(logits, targets), label_smoothing)
    p = logits.sigmoid()
    q = 1 - p
    if clip:
        q = (q + clip).clamp(max=1)  # 1 - p_m
    positive = y * p.clamp(min=eps).log()
    if pos_weight is not None:
        positive = positive * torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    loss = positive + (1 - y) * q.clamp(min=eps).log()
    if gamma_neg > 0 or gamma_pos > 0:
        pt = p * y + q * (1 - y)
        loss = loss * (1 - pt).pow(gamma_pos * y + gamma_neg * (1 - y))
    return -loss


def distribution_balanced_loss(
    logits: Tensor,
    targets: Tensor,
    class_counts: Tensor | Sequence[int] | Sequence[Sequence[int]],
    *,
    map_alpha: float = 0.1,
    map_beta: float = 10.0,
    map_mu: float = 0.2,
    neg_scale: float = 2.0,
    init_bias: float = 0.05,
    focal_gamma: float = 2.0,
    focal_balance: float = 2.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Distribution-balanced loss of each (sample, label) (Wu et al., ECCV 2020); timm's ``DistributionBalancedLoss``
    before its reduction.

    Re-balanced weight ``r = alpha + sigmoid(beta (n_l^{-1} / sum_k y_k n_k^{-1} - mu))`` (a sample with no positive
    label: ``1 + alpha``); prior-shifted logit ``z = x - kappa log(N / n_l - 1) / lambda``; positive term
    ``softplus(-z)``, negative term ``softplus(lambda z) / lambda`` (negative-tolerant); each times the focal factor
    ``balance * (1 - p_t)^gamma``. Counts are clamped to [1, N - 1].

    Args:
        logits: One logit per label [B, L].
        targets: As `label_targets` takes them.
        class_counts: ``[N_negative, N_positive]`` (binary) or [2, L] (`label_counts`).
        map_alpha: Smallest re-balancing weight.
        map_beta: Scale of the re-balancing map.
        map_mu: Threshold of the re-balancing map.
        neg_scale: ``lambda`` > 0.
        init_bias: ``kappa`` (0: no prior shift).
        focal_gamma: Focusing parameter (0: no focal factor, and no balance).
        focal_balance: Constant scale of the focal term.
        label_smoothing: ``eps`` in [0, 1): each target moves towards 0.5 (the weights use the targets as given).

    Returns:
        Terms [B, L], float32 (float64 for float64 logits).
    """
    if not neg_scale > 0:
        raise ValueError(f"neg_scale must be > 0, got {neg_scale}")
    logits = _wide(logits)
    positives, total = label_counts(class_counts)
    if total < 2:
        raise ValueError(f"the distribution-balanced loss needs N >= 2 samples, got {total}")
    n = positives.clamp(1.0, total - 1.0).to(logits.device, logits.dtype)
    raw = label_targets(logits, targets)
    repeat = (raw * (1 / n)).sum(dim=-1, keepdim=True)
    ratio = (1 / n) / repeat.clamp(min=torch.finfo(torch.float32).tiny)
    weight = torch.sigmoid(map_beta * (ratio - map_mu)) + map_alpha
    y = _smooth_labels(raw, label_smoothing)
    z = logits - torch.log(total / n - 1) * init_bias / neg_scale
    positive = F.softplus(-z)
    negative = F.softplus(z * neg_scale) / neg_scale
    if focal_gamma > 0:
        positive = positive * torch.sigmoid(-z) ** focal_gamma * focal_balance
        negative = negative * torch.sigmoid(z * neg_scale) ** focal_gamma * focal_balance
    return weight * (y * positive + (1 - y) * negative)


def _smooth_labels(labels: Tensor, label_smoothing: float) -> Tensor:
    """Each label target moved towards 0.5: ``(1 - eps) y + eps / 2`` (timm's dense BCE/ASL smoothing)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    return labels if label_smoothing == 0 else labels * (1.0 - label_smoothing) + 0.5 * label_smoothing


def class_log_prior(class_counts: Tensor | Sequence[int]) -> Tensor:
    """The log class prior of the training set: ``log(N_c / N)`` per class.

    A class with no samples counts as one sample (prior ``1 / N``, the rarest a class can be), so the
    prior stays finite: logit adjustment then pushes that class as hard as a class of one image,
    instead of giving it ``-inf`` (which makes a loss on it infinite and its gradient NaN).

    Args:
        class_counts: Training-set counts per class [C] (integers >= 0, at least one positive).

    Returns:
        Log-prior [C], float32, every entry finite and ``<= 0``.

    Example:
        >>> class_log_prior(torch.tensor([3, 1, 0])).exp().tolist()
        [0.75, 0.25, 0.25]
    """
    counts = _checked_counts(class_counts)
    return (counts.clamp_min(1).log() - math.log(float(counts.sum()))).float()


def logit_adjusted_cross_entropy(
    logits: Tensor, targets: Tensor, log_prior: Tensor, *, tau: float = 1.0, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample logit-adjusted cross-entropy (Menon et al., ICLR 2021): CE on ``logits + tau * log_prior``.

    Training on the adjusted logits and predicting with the raw ones aims at the balanced error. With
    ``log_prior = log(N_c)`` and ``tau = 1`` it is the balanced softmax loss of Ren et al. (NeurIPS
    2020): the two differ by a constant per row (``log N``), which the softmax ignores. Soft targets:
    the soft cross-entropy (`cross_entropy`) on the adjusted logits, ``-sum_c y_c log softmax(z + tau log pi)_c``.

    Args:
        logits: Scores [B, C].
        targets: Class indices [B], or class distributions [B, C].
        log_prior: Per-class log prior [C] (`class_log_prior`), or log counts.
        tau: Strength of the adjustment, ``>= 0``; 0 is plain cross-entropy.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first.

    Returns:
        Losses [B], float32 (float64 for float64 input).
    """
    if tau < 0:
        raise ValueError(f"logit adjustment needs tau >= 0, got {tau}")
    logits = _wide(logits)
    return cross_entropy(logits + tau * log_prior.to(logits), targets, label_smoothing=label_smoothing)


def logit_adjusted_probabilities(probabilities: Tensor, log_prior: Tensor, *, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021) of a trained model's class probabilities.

    ``softmax(log p - tau * log_prior)``: the scores lose ``tau`` times the log prior of their class, so a
    frequent class must be more certain to win, and the result is renormalised into probabilities (the
    decision ``argmax(log p - tau log prior)`` is Menon et al.'s; the renormalisation keeps AUC, ECE and NLL
    meaningful). With ``tau = 1`` a model fitted to the training prior aims at the balanced error.

    Args:
        probabilities: Class probabilities [N, C] (a zero stays zero).
        log_prior: The training set's log class prior [C] (`class_log_prior`).
        tau: Strength, ``>= 0``; 0 returns the probabilities renormalised.

    Returns:
        Probabilities [N, C], float64 (each row sums to 1).

    Example:
        >>> p = torch.tensor([[0.6, 0.4]])
        >>> adjusted = logit_adjusted_probabilities(p, class_log_prior(torch.tensor([3, 1])), tau=1.0)
        >>> [round(v, 6) for v in adjusted[0].tolist()]  # 0.6 / 0.75 : 0.4 / 0.25
        [0.333333, 0.666667]
    """
    if not math.isfinite(tau) or tau < 0:
        raise ValueError(f"logit adjustment needs a finite tau >= 0, got {tau}")
    log_p = torch.as_tensor(probabilities, dtype=torch.float64).log()
    return (log_p - tau * torch.as_tensor(log_prior, dtype=torch.float64)).softmax(dim=-1)


def ldam_margins(class_counts: Tensor | Sequence[int], max_margin: float = 0.5) -> Tensor:
    """LDAM's per-class margins (Cao et al., NeurIPS 2019): ``m_c ~ N_c^{-1/4}``, the largest ``max_margin``.

    A class with no samples counts as one sample (the largest margin).

    Args:
        class_counts: Training-set counts per class [C].
        max_margin: The margin of the rarest class, ``> 0`` (the paper's and kaidic/LDAM-DRW's default 0.5).

    Returns:
        Margins [C], float32, in ``(0, max_margin]``.

    Example:
        >>> ldam_margins(torch.tensor([16, 1])).tolist()
        [0.25, 0.5]
    """
    if not max_margin > 0:
        raise ValueError(f"LDAM needs max_margin > 0, got {max_margin}")
    margins = _checked_counts(class_counts).clamp_min(1).pow(-0.25)
    return (margins * (max_margin / margins.max())).float()


def ldam_loss(
    logits: Tensor, targets: Tensor, margins: Tensor, *, s: float = 30.0, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample LDAM loss (Cao et al., NeurIPS 2019): CE on ``s * (logits - m_y e_y)``.

    The target class's logit is lowered by its class margin ``m_y`` before the softmax, so a rare class
    must win by a larger margin; ``s`` rescales the logits (LDAM assumes normalised features, for which
    logits are small).

    Soft targets: each class's logit is lowered by its margin weighted by its target mass, and the soft
    cross-entropy is taken: ``-sum_c y_c log softmax(s * (z - y * m))_c`` (``y * m`` element-wise). A
    one-hot ``y = e_y`` gives ``z - m_y e_y``, exactly kaidic/LDAM-DRW's ``LDAMLoss`` (``models/losses.py``,
    which subtracts ``m_list @ one_hot`` at the target only).

    Args:
        logits: Scores [B, C].
        targets: Class indices [B], or class distributions [B, C].
        margins: Per-class margins [C] (`ldam_margins`).
        s: Logit scale, ``> 0`` (default 30, as kaidic/LDAM-DRW).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first (margins and
            cross-entropy both use the smoothed target).

    Returns:
        Losses [B], float32 (float64 for float64 input).
    """
    if not s > 0:
        raise ValueError(f"LDAM needs s > 0, got {s}")
    logits = _wide(logits)
    margins = margins.to(logits)
    distribution = target_distribution(logits, targets, label_smoothing=label_smoothing)
    if distribution is None:
        shifted = logits.scatter_add(1, targets.unsqueeze(1), -margins[targets].unsqueeze(1))
        return F.cross_entropy(s * shifted, targets, reduction="none")
    return soft_cross_entropy(s * (logits - distribution * margins), distribution)


def class_balance_weights(class_counts: Tensor) -> Tensor:
    """Class-balance weights (Eq. 7): ``w_c = N / N_c`` with ``N = sum_c N_c``.

    A class with no samples gets the weight of a class with one sample (``N``), the largest finite
    weight, instead of ``inf``.

    Args:
        class_counts: Training-set counts per class [C] (integers >= 0, at least one positive).

    Returns:
        Weights [C], float32.
    """
    counts = _checked_counts(class_counts)
    return (counts.sum() / counts.clamp_min(1)).float()


def effective_number_weights(class_counts: Tensor, beta: float | None = None) -> Tensor:
    """Effective-number weights (Eq. 8, Cui et al. 2019): ``w_c = (1 - beta) / (1 - beta^{N_c})``.

    Computed in float64 as ``expm1(log beta) / expm1(N_c log beta)`` (``log``, then ``expm1``), so that
    ``beta`` close to 1 (the default ``(N - 1) / N`` for N in the thousands) loses no precision. A class
    with no samples gets the weight of a class with one sample (1), the largest finite weight.

    Args:
        class_counts: Training-set counts per class [C].
        beta: In [0, 1). Default ``(N - 1) / N``, with N the training-set size.

    Returns:
        Weights [C], float32.
    """
    counts = _checked_counts(class_counts)
    total = float(counts.sum())
    if beta is None:
        beta = (total - 1.0) / total
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"effective-number beta must lie in [0, 1), got {beta}")
    n = counts.clamp_min(1)
    if beta == 0.0:
        return torch.ones_like(n, dtype=torch.float32)
    # 1 - beta^n = -expm1(n * log(beta)); 1 - beta = -expm1(log(beta))
    log_beta = math.log(beta)
    return (-math.expm1(log_beta) / -torch.expm1(n * log_beta)).float()


def normalize_class_weights(weights: Tensor, mode: str) -> Tensor:
    """Rescale per-class weights.

    Args:
        weights: Per-class weights [C].
        mode: ``"none"`` (unchanged, the paper), ``"classes"`` (mean over the classes is 1, as
            Cui et al. do: ``w * C / sum(w)``). Batch normalisation (``"batch"``) depends on the
            batch and is applied per batch by the weighters.

    Returns:
        Weights [C].
    """
    if mode == "classes":
        return weights * (weights.numel() / weights.sum())
    if mode in ("none", "batch"):
        return weights
    raise ValueError(f"normalize must be one of 'none', 'classes', 'batch', got {mode!r}")


def curriculum_pace(num_epochs: int, batch_size: int) -> float:
    """The paper's default pacing rate alpha (Eq. 9): ``alpha = 2 ln(2M - 1) / E``.

    With it, ``m(0) = M/2`` and ``m(e) = M`` for every ``e >= E/2`` (all weights 1 in the second half
    of training).

    Args:
        num_epochs: E, total training epochs (> 0).
        batch_size: M, the nominal batch size (> 0).

    Returns:
        alpha (0 for M = 1, where m = M from the start).
    """
    if num_epochs <= 0 or batch_size <= 0:
        raise ValueError(f"curriculum pacing needs num_epochs > 0 and batch_size > 0, got {num_epochs}, {batch_size}")
    return 2.0 * math.log(2 * batch_size - 1) / num_epochs


DEFERRED_START = 0.8
"""Where deferred re-weighting (DRW) and re-sampling (DRS) begin by default: Cao et al.'s epoch 160 of 200."""


def deferred_start_epoch(
    num_epochs: int | None, start: float | None = None, start_epoch: int | None = None, *, name: str = "drw"
) -> int:
    """The first epoch of a deferred schedule (DRW, DRS): ``start_epoch``, else the first epoch ``e >= start * E``.

    Args:
        num_epochs: E; needed unless ``start_epoch`` is given.
        start: Fraction of training in [0, 1] (default `DEFERRED_START`).
        start_epoch: The first deferred epoch (0-based), instead of ``start``.
        name: The method, for messages.

    Returns:
        The 0-based epoch.

    Raises:
        ValueError: Both ``start`` and ``start_epoch``, a fraction outside [0, 1], or no ``num_epochs``.

    Example:
        >>> deferred_start_epoch(200), deferred_start_epoch(3, start=0.5)
        (160, 2)
    """
    if start_epoch is not None:
        if start is not None:
            raise ValueError("pass either start (a fraction of training) or start_epoch, not both")
        return int(start_epoch)
    start = DEFERRED_START if start is None else float(start)
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start must be a fraction of training in [0, 1], got {start}")
    if num_epochs is None:
        raise ValueError(f"{name} needs num_epochs to place start (or pass start_epoch=...)")
    return math.ceil(start * num_epochs - 1e-9)


def curriculum_fraction(epoch: int, pace: float) -> float:
    """The share of a batch a curriculum weighter keeps at ``epoch`` (Eq. 9).

    ``s(e) = exp(alpha e) / (1 + exp(alpha e))``.

    Args:
        epoch: e, 0-based.
        pace: alpha (see `curriculum_pace`).

    Returns:
        s(e) in [0, 1]: 1/2 at e = 0, rising to 1.
    """
    return 1.0 / (1.0 + math.exp(-pace * epoch)) if pace * epoch > -700 else 0.0


def curriculum_size(batch_len: int, epoch: int, pace: float) -> int:
    """How many samples of a batch a curriculum weighter keeps (Eq. 9).

    ``m = round(B * exp(alpha e) / (1 + exp(alpha e)))``, rounding half up, kept within ``[1, B]``.
    ``B`` is the length of this batch, so a short last batch scales the same fraction.

    Args:
        batch_len: B, the number of samples in this batch (>= 1).
        epoch: e, 0-based.
        pace: alpha (see `curriculum_pace`).

    Returns:
        m, an integer in [1, B].
    """
    m = _round_half_up(batch_len * curriculum_fraction(epoch, pace))
    return min(batch_len, max(1, m))


def curriculum_mask(losses: Tensor, keep: int, *, hardest: bool) -> Tensor:
    """Weights 1 for the ``keep`` highest (``hardest``) or lowest losses of a batch, 0 for the rest.

    Ties are broken deterministically by position: among equal losses the earlier sample is kept.

    Args:
        losses: Per-sample losses [B].
        keep: Number of samples to keep, in [0, B].
        hardest: True for OHEM (highest losses), False for SPL (lowest).

    Returns:
        Weights [B] of 0s and 1s, in the dtype of ``losses``.
    """
    order = torch.sort(losses, descending=hardest, stable=True).indices
    mask = torch.zeros_like(losses)
    mask[order[:keep]] = 1
    return mask


def class_curriculum_mask(losses: Tensor, targets: Tensor, fraction: float, *, hardest: bool) -> Tensor:
    """Per-class curriculum selection: within each class, weight 1 for its hardest (or easiest) samples.

    For every class ``c`` present in the batch with ``n_c`` samples, the ``round(n_c * fraction)``
    samples of highest (``hardest``) or lowest loss among them get weight 1, rounding half up as
    `curriculum_size` does and keeping at least one sample per class present; the rest get 0. With
    ``fraction = curriculum_fraction(e, alpha)`` this is the paper's pacing applied to each class
    separately (the class-aware OHEM the paper proposes as future work). Ties are broken by
    position: among equal losses of one class the earlier sample is kept.

    Vectorised: one stable sort by loss, then one stable sort by class, so the samples end up grouped
    by class and ordered by loss within each class; no host synchronisation.

    Args:
        losses: Per-sample losses [B].
        targets: Class indices [B].
        fraction: s in [0, 1], the share of each class to keep.
        hardest: True for class-aware OHEM (highest losses), False for class-aware SPL (lowest).

    Returns:
        Weights [B] of 0s and 1s, in the dtype of ``losses``.

    Example:
        >>> losses = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2])
        >>> class_curriculum_mask(losses, torch.tensor([0, 0, 0, 1, 2]), 0.5, hardest=True).tolist()
        [0.0, 1.0, 1.0, 1.0, 1.0]
    """
    if losses.ndim != 1 or targets.shape != losses.shape:
        shapes = f"{list(losses.shape)} and {list(targets.shape)}"
        raise ValueError(f"losses and targets must both have shape [B], got {shapes}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    batch_len = losses.shape[0]
    if batch_len == 0:
        return torch.zeros_like(losses)
    by_loss = torch.sort(losses, descending=hardest, stable=True).indices
    order = by_loss[torch.sort(targets[by_loss], stable=True).indices]  # by class, then by loss, then position
    grouped = targets[order]
    position = torch.arange(batch_len, device=losses.device)
    starts = torch.ones(batch_len, dtype=torch.bool, device=losses.device)
    starts[1:] = grouped[1:] != grouped[:-1]
    group = starts.long().cumsum(0) - 1
    rank_in_class = position - torch.where(starts, position, 0).cummax(0).values
    class_size = torch.zeros(batch_len, dtype=torch.long, device=losses.device).index_add_(
        0, group, torch.ones_like(group)
    )[group]
    keep = torch.minimum(_round_half_up(class_size.to(_exact_dtype(losses)) * fraction).clamp_min(1), class_size)
    mask = torch.empty_like(losses)
    mask[order] = (rank_in_class < keep).to(losses.dtype)
    return mask


def _round_half_up(value: Any) -> Any:
    """``floor(value + 0.5)`` for a float (-> int) or a float tensor (-> long tensor).

    The 1e-9 absorbs float error, so that an exact .5 (e.g. ``B * (2M-1)/(2M)`` at ``e = E/2``)
    rounds up. Both forms take the same steps in float64, so they round identically.
    """
    shifted = value + 0.5 + 1e-9
    return math.floor(shifted) if isinstance(shifted, float) else shifted.floor().long()


def _exact_dtype(reference: Tensor) -> torch.dtype:
    """float64, as the Python floats of `curriculum_size`; MPS has no float64, so float32 there."""
    return torch.float32 if reference.device.type == "mps" else torch.float64


def _wide(logits: Tensor) -> Tensor:
    """Losses are computed in float32 at least (bf16/fp16 logits under autocast lose too much)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _checked_counts(class_counts: Tensor | Sequence[int]) -> Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() == 0 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError(f"class_counts must be >= 0 with a positive total, got {counts.tolist()}")
    return counts
