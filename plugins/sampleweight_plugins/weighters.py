"""Built-in weighters: none, cb (Eq. 7), es (Eq. 8), spl and ohem (Eq. 9 pacing), their per-class forms
class_spl and class_ohem (the paper's proposed future work), and drw (deferred re-weighting, Cao et al. 2019)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from sampleweight import functional as SF
from sampleweight.hookspecs import hookimpl
from sampleweight.weighting import BaseWeighter, Weighter, WeightingBatch

NORMALIZE_MODES = ("none", "classes", "batch")
DRW_WEIGHTINGS = ("es", "cb")


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
    """Keep the easiest (SPL) or hardest (OHEM) samples of each batch, as many as Eq. 9 paces.

    ``m = round(B * s(e))`` with ``s(e) = exp(alpha e) / (1 + exp(alpha e))``: half the batch at epoch
    0, the whole batch from epoch E/2 on with the default ``alpha = 2 ln(2M - 1) / E``. A short last
    batch (B < M) keeps the same fraction of its B samples. With ``per_class=True`` the selection
    runs within each class present in the batch instead: ``round(n_c * s(e))`` of its ``n_c``
    samples, at least one (class-aware SPL/OHEM). Ties are broken by position (earlier sample first).

    Args:
        hardest: True for OHEM, False for SPL.
        pace: alpha of Eq. 9.
        per_class: Select within each class instead of across the batch.
    """

    def __init__(self, *, hardest: bool, pace: float, per_class: bool = False) -> None:
        super().__init__()
        self.hardest = hardest
        self.pace = float(pace)
        self.per_class = per_class

    def keep(self, batch_len: int, epoch: int) -> int:
        """m, the number of samples kept in a batch of ``batch_len`` at ``epoch`` (across the batch)."""
        return SF.curriculum_size(batch_len, epoch, self.pace)

    def forward(self, batch: WeightingBatch) -> Tensor:
        if self.per_class:
            fraction = SF.curriculum_fraction(batch.epoch, self.pace)
            return SF.class_curriculum_mask(batch.losses, batch.targets, fraction, hardest=self.hardest)
        return SF.curriculum_mask(batch.losses, self.keep(batch.size, batch.epoch), hardest=self.hardest)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, hardest={self.hardest}, pace={self.pace:.6g}, per_class={self.per_class}"


class DeferredWeighter(BaseWeighter):
    """Weight 1 until ``start_epoch``, then the weights of another weighter (deferred re-weighting).

    Args:
        weighter: What applies from ``start_epoch`` on (a `ClassWeighter` for DRW).
        start_epoch: First 0-based epoch that is re-weighted.
    """

    def __init__(self, weighter: Weighter, start_epoch: int) -> None:
        super().__init__()
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        self.weighter = weighter
        self.start_epoch = int(start_epoch)

    def forward(self, batch: WeightingBatch) -> Tensor:
        if batch.epoch < self.start_epoch:
            return torch.ones_like(batch.losses)
        return self.weighter(batch)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, start_epoch={self.start_epoch}"


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


def class_spl(
    num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None
) -> CurriculumWeighter:
    """Class-aware self-paced learning: within each class of a batch, weight 1 for its lowest losses.

    Each class present keeps ``round(n_c * s(e))`` of its ``n_c`` samples (at least one), with the
    pacing ``s(e)`` of `spl`.

    Args:
        num_epochs: E (a dataset fact); with ``batch_size`` it sets the default pace.
        batch_size: M, the nominal batch size (a dataset fact).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=False, pace=_pace(num_epochs, batch_size, pace, "class_spl"), per_class=True)


def class_ohem(
    num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None
) -> CurriculumWeighter:
    """Class-aware OHEM: within each class of a batch, weight 1 for its highest losses (the paper's future work).

    Each class present keeps ``round(n_c * s(e))`` of its ``n_c`` samples (at least one), with the
    pacing ``s(e)`` of `ohem`, so a rare class is never crowded out by the hard samples of a common one.

    Args:
        num_epochs: E (a dataset fact); with ``batch_size`` it sets the default pace.
        batch_size: M, the nominal batch size (a dataset fact).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=True, pace=_pace(num_epochs, batch_size, pace, "class_ohem"), per_class=True)


def drw(
    class_counts: Tensor,
    num_epochs: int | None = None,
    start: float | None = None,
    start_epoch: int | None = None,
    weighting: str = "es",
    beta: float | None = None,
    normalize: str = "classes",
    class_names: Sequence[str] | None = None,
) -> DeferredWeighter:
    """Deferred re-weighting (Cao et al. 2019, LDAM-DRW): weight 1 first, class weights late in training.

    Before the start epoch every weight is 1; from it on, each sample weighs its class's ES (Eq. 8)
    or CB (Eq. 7) weight, by default rescaled so that the mean class weight is 1, as Cao et al. do.

    Args:
        class_counts: Training-set counts per class [C] (a dataset fact).
        num_epochs: E (a dataset fact); needed unless ``start_epoch`` is given.
        start: Fraction of training after which the class weights apply: from the first epoch
            ``e >= start * E``. Default 0.8 (Cao et al.'s epoch 160 of 200).
        start_epoch: The first re-weighted epoch (0-based), instead of ``start``.
        weighting: ``"es"`` (effective number, default) or ``"cb"`` (class balance).
        beta: ES's beta; default ``(N - 1) / N`` as `es` (Cao et al. use 0.9999).
        normalize: ``"classes"`` (mean class weight 1, default), ``"none"`` or ``"batch"``.
        class_names: For the warning about classes with no training samples.
    """
    if weighting not in DRW_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(DRW_WEIGHTINGS)}, got {weighting!r}")
    if weighting == "cb" and beta is not None:
        raise ValueError("beta is an option of the 'es' weighting; drop it or use weighting='es'")
    if weighting == "es":
        class_weights = es(class_counts, beta, normalize, class_names)
    else:
        class_weights = cb(class_counts, normalize, class_names)
    return DeferredWeighter(class_weights, SF.deferred_start_epoch(num_epochs, start, start_epoch, name="drw"))


@hookimpl
def register_weighters(register) -> None:
    register("none", none)
    register("cb", cb)
    register("es", es)
    register("spl", spl)
    register("ohem", ohem)
    register("class_spl", class_spl)
    register("class_ohem", class_ohem)
    register("drw", drw)


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
