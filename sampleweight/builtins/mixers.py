"""Built-in mixers: ``none``, and ``mixup``, ``cutmix``, ``mixup_cutmix`` and ``remix`` on ``timm.data.Mixup``.

The images are mixed by timm's own code (``Mixup._mix_batch``/``_mix_pair``/``_mix_elem``) and the targets are
timm's ``mixup_target`` of the mixing share, unsmoothed (label smoothing is the loss's ``label_smoothing``,
``docs/mixing.md``). timm draws from numpy's global generator; each call here seeds it from
``(seed, epoch, step, rank)`` for the duration of the call (`sampleweight.mixing.numpy_seeded`) and gives it back
its state, so the mixing is reproducible and leaves every other draw as it was. timm's ``Mixup.__call__`` refuses a
batch of odd size; calling its per-mode methods directly lets a short last batch (or a process's odd share) mix
too in the ``batch`` and ``elem`` modes (the middle sample is paired with itself; ``pair`` needs an even batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from sampleweight.hookspecs import hookimpl
from sampleweight.mixing import BaseMixer, numpy_seeded, remix_label_share

__all__ = ["NoMixing", "RemixMixer", "TimmMixer", "cutmix", "mixup", "mixup_cutmix", "none", "remix"]

Mode = Literal["batch", "pair", "elem"]


class NoMixing:
    """No mixing: the batch is returned as it is (class indices stay class indices)."""

    def __call__(
        self, images: Tensor, targets: Tensor, *, epoch: int, step: int, rank: int | None = None
    ) -> tuple[Tensor, Tensor]:
        return images, targets

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to restore."""

    def __repr__(self) -> str:
        return "NoMixing()"


class TimmMixer(BaseMixer):
    """Mixup and/or CutMix by ``timm.data.Mixup``, its draws seeded from ``(seed, epoch, step, rank)``.

    Args:
        num_classes: The number of classes.
        seed: Base seed of the draws.
        off_epoch: The (0-based) epoch from which on batches are not mixed (None: every epoch).
        mixup_alpha: Mixup's Beta(alpha, alpha) parameter (0: no Mixup).
        cutmix_alpha: CutMix's Beta(alpha, alpha) parameter (0: no CutMix).
        prob: The probability that a batch (or a pair, or an element, by ``mode``) is mixed.
        switch_prob: With both active, the probability of CutMix rather than Mixup.
        mode: Draw the mixing ratio per ``batch``, per ``pair`` or per ``elem`` (element); partners are the
            batch reversed (sample i with B - 1 - i), as in timm.
        correct_lam: Correct CutMix's share for a box clipped by the image border (timm's default).

    Raises:
        ValueError: Neither alpha positive, a negative alpha, a probability outside [0, 1], an unknown mode.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        seed: int = 0,
        off_epoch: int | None = None,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: Mode = "batch",
        correct_lam: bool = True,
    ) -> None:
        super().__init__(num_classes, seed=seed, off_epoch=off_epoch)
        if mixup_alpha < 0 or cutmix_alpha < 0 or not (mixup_alpha > 0 or cutmix_alpha > 0):
            raise ValueError(f"alphas must be >= 0 and one of them > 0, got mixup {mixup_alpha}, cutmix {cutmix_alpha}")
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"mode must be batch, pair or elem, got {mode!r}")
        from timm.data import Mixup

        self.mixup = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            correct_lam=correct_lam,
            label_smoothing=0.0,
            num_classes=num_classes,
        )

    def mixed_images(self, images: Tensor, seed: int) -> tuple[Tensor, float | Tensor]:
        """The mixed images (a copy) and the share of each sample in its mix: a number, or a tensor [B, 1]."""
        mode = self.mixup.mode
        if mode == "pair" and len(images) % 2:
            raise ValueError(f"mode 'pair' needs an even batch, got {len(images)} samples; use mode batch or elem")
        mixed = images.clone()  # timm mixes in place
        mix = {"batch": self.mixup._mix_batch, "pair": self.mixup._mix_pair, "elem": self.mixup._mix_elem}[mode]
        with numpy_seeded(seed):
            share = mix(mixed)
        return mixed, share

    def mix(self, images: Tensor, targets: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """timm's mixed images, and its unsmoothed mixed targets ``lam e_i + (1 - lam) e_partner``."""
        from timm.data.mixup import mixup_target

        mixed, share = self.mixed_images(images, seed)
        return mixed, mixup_target(targets, self.num_classes, share, smoothing=0.0)

    def __repr__(self) -> str:
        m = self.mixup
        return (
            f"{type(self).__name__}(mixup_alpha={m.mixup_alpha}, cutmix_alpha={m.cutmix_alpha}, prob={m.mix_prob}, "
            f"mode={m.mode!r}, off_epoch={self.off_epoch})"
        )


class RemixMixer(TimmMixer):
    """Remix (Chou et al., ECCV 2020 workshops): inputs mixed as Mixup/CutMix mix them, the label to the minority.

    A pair mixed with share ``lam`` of sample i gets the label share ``lam_y`` of
    `sampleweight.mixing.remix_label_share`: 0 when ``n_i >= kappa n_j`` and ``lam < tau``, 1 when
    ``kappa n_i <= n_j`` and ``1 - lam < tau``, else ``lam``; ``n`` are the training-set class counts.

    Args:
        class_counts: Training-set counts per class.
        kappa: The count ratio from which the minority takes the label (the paper's 3).
        tau: The share threshold (the paper's 0.5).
        **options: Those of `TimmMixer` (``mixup_alpha``, ``cutmix_alpha``, ``prob``, ``mode``, ...).
    """

    def __init__(self, class_counts: Tensor, *, kappa: float = 3.0, tau: float = 0.5, **options: Any) -> None:
        counts = torch.as_tensor(class_counts)
        super().__init__(len(counts), **options)
        if kappa < 1:
            raise ValueError(f"kappa must be >= 1 (a count ratio), got {kappa}")
        if not 0 <= tau <= 1:
            raise ValueError(f"tau must lie in [0, 1], got {tau}")
        self.class_counts = counts.long()
        self.kappa, self.tau = float(kappa), float(tau)

    def mix(self, images: Tensor, targets: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """The mixed images and Remix's targets ``lam_y e_i + (1 - lam_y) e_partner``."""
        from timm.data.mixup import mixup_target

        mixed, share = self.mixed_images(images, seed)
        share = torch.as_tensor(share, dtype=torch.float64).reshape(-1).expand(len(targets))
        counts = self.class_counts.to(targets.device)
        label = remix_label_share(share.to(targets.device), counts[targets], counts[targets.flip(0)],
                                  kappa=self.kappa, tau=self.tau)  # fmt: skip
        return mixed, mixup_target(targets, self.num_classes, label.float().unsqueeze(1), smoothing=0.0)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, kappa={self.kappa}, tau={self.tau})"


def none() -> NoMixing:
    """No mixing (the default): the images and class indices as they are."""
    return NoMixing()


def mixup(
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: Mode = "batch",
    off_epoch: int | None = None,
    seed: int = 0,
) -> TimmMixer:
    """Mixup (Zhang et al., ICLR 2018) by timm.data.Mixup: lam x_i + (1 - lam) x_j, lam ~ Beta(alpha, alpha)."""
    return TimmMixer(num_classes, seed=seed, off_epoch=off_epoch, mixup_alpha=alpha, prob=prob, mode=mode)


def cutmix(
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: Mode = "batch",
    correct_lam: bool = True,
    off_epoch: int | None = None,
    seed: int = 0,
) -> TimmMixer:
    """CutMix (Yun et al., ICCV 2019) by timm.data.Mixup: a box of x_j pasted into x_i, labels by area."""
    return TimmMixer(
        num_classes, seed=seed, off_epoch=off_epoch, mixup_alpha=0.0, cutmix_alpha=alpha, prob=prob, mode=mode,
        correct_lam=correct_lam,
    )  # fmt: skip


def mixup_cutmix(
    num_classes: int,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    mode: Mode = "batch",
    correct_lam: bool = True,
    off_epoch: int | None = None,
    seed: int = 0,
) -> TimmMixer:
    """Mixup or CutMix per batch (timm.data.Mixup with both; DeiT's alphas 0.8 and 1.0 by default)."""
    return TimmMixer(
        num_classes, seed=seed, off_epoch=off_epoch, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
        prob=prob, switch_prob=switch_prob, mode=mode, correct_lam=correct_lam,
    )  # fmt: skip


def remix(
    class_counts: Tensor,
    kappa: float = 3.0,
    tau: float = 0.5,
    alpha: float = 1.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    mode: Mode = "batch",
    off_epoch: int | None = None,
    seed: int = 0,
) -> RemixMixer:
    """Remix (Chou et al., ECCV 2020 workshops): Mixup's inputs, the label moved to the minority sample."""
    return RemixMixer(
        class_counts, kappa=kappa, tau=tau, seed=seed, off_epoch=off_epoch, mixup_alpha=alpha,
        cutmix_alpha=cutmix_alpha, prob=prob, mode=mode,
    )  # fmt: skip


@hookimpl
def register_mixers(register) -> None:
    register("none", none, default=True)
    register("mixup", mixup)
    register("cutmix", cutmix)
    register("mixup_cutmix", mixup_cutmix)
    register("remix", remix)
