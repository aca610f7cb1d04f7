"""Built-in weighters: none, cb (Eq. 7), es (Eq. 8), spl and ohem (Eq. 9 pacing)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from sampleweight import functional as SF
from sampleweight.hookspecs import hookimpl
from sampleweight.weighting import BaseWeighter, WeightingBatch

NORMALIZE_MODES = ("none", "classes", "batch")


class UniformWeighter(BaseWeighter):
    """Every sample weighs 1 (the paper's "none")."""

    def forward(self, batch: WeightingBatch) -> Tensor:
        return torch.ones_like(batch.losses)


class ClassWeighter(BaseWeighter):
    """A fixed weight per class, looked up by each sample's target (CB, ES).

    Args:
        class_weights: Weights [C].
        normalize: ``"none"`` (as given), ``"classes"`` (rescaled so the mean over classes is 1),
            ``"batch"`` (each batch's weights rescaled to mean 1).
    """

    def __init__(self, class_weights: Tensor, normalize: str = "none") -> None:
        super().__init__()
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {normalize!r}")
        self.normalize = normalize
        self.register_buffer("class_weights", SF.normalize_class_weights(class_weights.float(), normalize))

    def forward(self, batch: WeightingBatch) -> Tensor:
        table = self.class_weights.to(device=batch.losses.device)
        weights = table[batch.targets].to(batch.losses.dtype)
        if self.normalize == "batch":
            weights = weights / weights.mean()
        return weights

    def extra_repr(self) -> str:
        return f"name={self.name!r}, normalize={self.normalize!r}, classes={self.class_weights.numel()}"


class CurriculumWeighter(BaseWeighter):
    """Keep the m easiest (SPL) or hardest (OHEM) samples of each batch, m paced by Eq. 9.

    ``m = round(B * exp(alpha e) / (1 + exp(alpha e)))``: half the batch at epoch 0, the whole batch
    from epoch E/2 on with the default ``alpha = 2 ln(2M - 1) / E``. A short last batch (B < M) keeps
    the same fraction of its B samples. Ties are broken by position (earlier sample first).

    Args:
        hardest: True for OHEM, False for SPL.
        pace: alpha of Eq. 9.
    """

    def __init__(self, *, hardest: bool, pace: float) -> None:
        super().__init__()
        self.hardest = hardest
        self.pace = float(pace)

    def keep(self, batch_len: int, epoch: int) -> int:
        """m, the number of samples kept in a batch of ``batch_len`` at ``epoch``."""
        return SF.curriculum_size(batch_len, epoch, self.pace)

    def forward(self, batch: WeightingBatch) -> Tensor:
        return SF.curriculum_mask(batch.losses, self.keep(batch.size, batch.epoch), hardest=self.hardest)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, hardest={self.hardest}, pace={self.pace:.6g}"


def none() -> UniformWeighter:
    """All weights 1."""
    return UniformWeighter()


def cb(class_counts: Tensor, normalize: str = "none", class_names: Sequence[str] | None = None) -> ClassWeighter:
    """Class balance (Eq. 7): ``w = N / N_y``.

    Args:
        class_counts: Training-set counts per class [C] (a dataset fact).
        normalize: ``"none"`` (paper), ``"classes"`` (mean class weight 1) or ``"batch"``.
        class_names: For the warning about classes with no training samples.
    """
    _warn_empty_classes(class_counts, class_names, "cb")
    return ClassWeighter(SF.class_balance_weights(class_counts), normalize)


def es(
    class_counts: Tensor,
    beta: float | None = None,
    normalize: str = "none",
    class_names: Sequence[str] | None = None,
) -> ClassWeighter:
    """Effective number of samples (Eq. 8): ``w = (1 - beta) / (1 - beta^{N_y})``.

    Args:
        class_counts: Training-set counts per class [C] (a dataset fact).
        beta: In [0, 1); default ``(N - 1) / N``.
        normalize: ``"none"`` (paper), ``"classes"`` (mean class weight 1, as Cui et al.) or ``"batch"``.
        class_names: For the warning about classes with no training samples.
    """
    _warn_empty_classes(class_counts, class_names, "es")
    return ClassWeighter(SF.effective_number_weights(class_counts, beta), normalize)


def spl(num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None) -> CurriculumWeighter:
    """Self-paced learning: weight 1 for the m lowest losses of each batch, 0 for the rest.

    Args:
        num_epochs: E (a dataset fact); with ``batch_size`` it sets the default pace.
        batch_size: M, the nominal batch size (a dataset fact).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=False, pace=_pace(num_epochs, batch_size, pace, "spl"))


def ohem(num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None) -> CurriculumWeighter:
    """Online hard example mining: weight 1 for the m highest losses of each batch, 0 for the rest.

    Args:
        num_epochs: E (a dataset fact); with ``batch_size`` it sets the default pace.
        batch_size: M, the nominal batch size (a dataset fact).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=True, pace=_pace(num_epochs, batch_size, pace, "ohem"))


@hookimpl
def register_weighters(register) -> None:
    register("none", none)
    register("cb", cb)
    register("es", es)
    register("spl", spl)
    register("ohem", ohem)


def _pace(num_epochs: int | None, batch_size: int | None, pace: float | None, name: str) -> float:
    if pace is not None:
        return float(pace)
    if num_epochs is None or batch_size is None:
        raise ValueError(
            "the paper's pacing needs num_epochs and batch_size (pass num_epochs=..., batch_size=...), "
            f"or set the pace directly (pace=...); {name} got num_epochs={num_epochs}, batch_size={batch_size}"
        )
    return SF.curriculum_pace(num_epochs, batch_size)


def _warn_empty_classes(class_counts: Tensor, class_names: Sequence[str] | None, name: str) -> None:
    counts = torch.as_tensor(class_counts).flatten()
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        labels = [class_names[i] if class_names else f"class {i}" for i in empty]
        warnings.warn(
            f"{name}: {', '.join(labels)} has no training samples; weighting it as a class with one "
            "sample (the largest finite weight) instead of infinity",
            stacklevel=4,
        )
