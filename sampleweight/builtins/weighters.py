"""Built-in weighters: none, cb (Eq. 7), es (Eq. 8), spl and ohem (Eq. 9 pacing), their per-class forms
class_spl and class_ohem (the paper's proposed future work), and drw (deferred re-weighting, Cao et al. 2019)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sampleweight import functional as SF
from sampleweight.errors import ConfigError, user_stacklevel
from sampleweight.hookspecs import hookimpl
from sampleweight.plugins import TASKS
from sampleweight.weighting import BaseWeighter, Weighter, WeightingBatch

NORMALIZE_MODES = ("none", "classes", "batch")
DRW_WEIGHTINGS = ("es", "cb")


class UniformWeighter(BaseWeighter):
    """Every sample weighs 1 (the paper's "none")."""

    def forward(self, batch: WeightingBatch) -> Tensor:
        return torch.ones_like(batch.losses)


class ClassWeighter(BaseWeighter):
    """A fixed weight per class, looked up by each sample's target (CB, ES).

    A sample with a soft target ``y`` (mixing) weighs ``sum_c y_c w_c``: its class weights mixed in the
    proportions of its target mass (``lambda w_a + (1 - lambda) w_b`` for a mixed pair); a one-hot ``y``
    gives exactly ``w_y``.

    A binary task is two classes, negative (0) and positive (1): a sample weighs its class's weight. A multilabel
    task's weights are a table [2, L] (row 0: each label's negative term, row 1: its positive term), and each
    (sample, label) term weighs ``y_jl w_1l + (1 - y_jl) w_0l``: the weights come back as [B, L].

    Args:
        class_weights: Weights [C], or [2, L] for a multilabel task.
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
        if table.ndim == 2:  # multilabel: one weight per (sample, label) term
            if batch.targets.ndim != 2 or batch.targets.shape[1] != table.shape[1]:
                raise ConfigError(
                    f"weighter {self.name!r} holds weights for {table.shape[1]} labels (a multilabel task), but the "
                    f"targets have shape {list(batch.targets.shape)}; pass label targets [B, {table.shape[1]}]"
                )
            labels = batch.targets.to(table.dtype)
            weights = (labels * table[1] + (1 - labels) * table[0]).to(batch.losses.dtype)
        elif batch.soft_targets is None:
            weights = table[batch.targets].to(batch.losses.dtype)
        else:
            weights = (batch.soft_targets.to(table.dtype) * table).sum(dim=1).to(batch.losses.dtype)
        if self.normalize == "batch":
            weights = weights / weights.mean()
        return weights

    def mean_weight(self, class_counts: Tensor) -> float:
        """``sum_c N_c w_c / N`` (1 with ``normalize="batch"``: every batch's weights have mean 1)."""
        if self.normalize == "batch":
            return 1.0
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        table = self.class_weights.double().cpu()
        counts = counts.reshape(table.shape) if counts.numel() == table.numel() else counts.flatten()
        return float((counts * table).sum() / counts.sum())

    def extra_repr(self) -> str:
        return f"name={self.name!r}, normalize={self.normalize!r}, classes={self.class_weights.numel()}"


class CurriculumWeighter(BaseWeighter):
    """Keep the easiest (SPL) or hardest (OHEM) samples of each batch, as many as Eq. 9 paces.

    ``m = round(B * s(e))`` with ``s(e) = exp(alpha e) / (1 + exp(alpha e))``: half the batch at epoch
    0, the whole batch from epoch E/2 on with the default ``alpha = 2 ln(2M - 1) / E``. A short last
    batch (B < M) keeps the same fraction of its B samples. With ``per_class=True`` the selection
    runs within each class present in the batch instead: ``round(n_c * s(e))`` of its ``n_c``
    samples, at least one (class-aware SPL/OHEM). Ties are broken by position (earlier sample first).
    With soft targets (mixing) the losses ranked are the soft losses, and for ``per_class`` a mixed sample
    belongs to its class of largest target mass (``batch.targets``; a tie goes to the lowest class index).

    The nominal batch size M: ``batch_size`` when given; otherwise the size of the (global) batch the
    weighter sees, the largest so far, which is the first batch of a run unless that one is short.
    It is kept in the state dict, so a resumed run paces as an uninterrupted one. A batch larger than
    a given ``batch_size`` is an error (under DDP, M is the global batch of all processes).

    Args:
        hardest: True for OHEM, False for SPL.
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E`` from ``num_epochs`` and ``batch_size``.
        per_class: Select within each class instead of across the batch.
        num_epochs: E, needed unless ``pace`` is given.
        batch_size: M; default: taken from the batches.
    """

    def __init__(
        self,
        *,
        hardest: bool,
        pace: float | None = None,
        per_class: bool = False,
        num_epochs: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if pace is None and num_epochs is None:
            raise ValueError(
                "the paper's pacing needs num_epochs (pass num_epochs=...), or set the pace directly (pace=...)"
            )
        self.hardest = hardest
        self.per_class = per_class
        self.num_epochs = num_epochs
        self.batch_size = batch_size if pace is None else None  # the M the pace follows from
        self.pace: float | None = float(pace) if pace is not None else None
        if pace is None and batch_size is not None:
            self.pace = SF.curriculum_pace(num_epochs, batch_size)
        self.infers_batch_size = self.pace is None
        if self.infers_batch_size:  # M from the batches, kept in the state dict
            self.register_buffer("seen_batch_size", torch.zeros((), dtype=torch.long))
            self.register_load_state_dict_post_hook(_restore_seen_batch_size)

    def keep(self, batch_len: int, epoch: int) -> int:
        """m, the number of samples kept in a batch of ``batch_len`` at ``epoch`` (across the batch)."""
        return SF.curriculum_size(batch_len, epoch, self.pace_for(batch_len))

    def pace_for(self, batch_len: int) -> float:
        """alpha for a batch of ``batch_len``: fixed, or from the largest batch seen so far (see the class doc)."""
        if self.infers_batch_size:
            if batch_len > (self.batch_size or 0):
                self.batch_size, self.pace = batch_len, SF.curriculum_pace(self.num_epochs, batch_len)
                self.seen_batch_size.fill_(batch_len)  # a device fill: no host sync
        elif self.batch_size is not None and batch_len > self.batch_size:
            raise ConfigError(
                f"weighter {self.name!r} was given batch_size={self.batch_size}, but a batch has {batch_len} samples: "
                f"batch_size is the nominal batch M of the pacing (Eq. 9); under DDP pass the global batch (the "
                f"per-process batch x the number of processes), or leave batch_size out to take it from the batches"
            )
        return self.pace

    def forward(self, batch: WeightingBatch) -> Tensor:
        if self.per_class:
            fraction = SF.curriculum_fraction(batch.epoch, self.pace_for(batch.size))
            return SF.class_curriculum_mask(batch.losses, batch.targets, fraction, hardest=self.hardest)
        return SF.curriculum_mask(batch.losses, self.keep(batch.size, batch.epoch), hardest=self.hardest)

    def extra_repr(self) -> str:
        pace = "from the batches" if self.pace is None else f"{self.pace:.6g}"
        return f"name={self.name!r}, hardest={self.hardest}, pace={pace}, per_class={self.per_class}"


def _restore_seen_batch_size(module: CurriculumWeighter, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the M of the loaded state (one host read, at load time only)."""
    seen = int(module.seen_batch_size)
    module.batch_size = seen or None
    module.pace = SF.curriculum_pace(module.num_epochs, seen) if seen else None


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

    def mean_weight(self, class_counts: Tensor) -> float | None:
        """The re-weighted phase's mean weight per sample (before it, every weight is 1)."""
        inner = getattr(self.weighter, "mean_weight", None)
        return inner(class_counts) if callable(inner) else None

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
    return ClassWeighter(_per_label(SF.class_balance_weights, class_counts), normalize)


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
    return ClassWeighter(_per_label(lambda counts: SF.effective_number_weights(counts, beta), class_counts), normalize)


def spl(num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None) -> CurriculumWeighter:
    """Self-paced learning: weight 1 for the m lowest losses of each batch, 0 for the rest.

    Args:
        num_epochs: E (a dataset fact); with M it sets the default pace.
        batch_size: M, the nominal (global) batch size (a dataset fact); default: the size of the
            batches the weighter sees (the largest so far).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=False, pace=pace, num_epochs=num_epochs, batch_size=batch_size)


def ohem(num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None) -> CurriculumWeighter:
    """Online hard example mining: weight 1 for the m highest losses of each batch, 0 for the rest.

    Args:
        num_epochs: E (a dataset fact); with M it sets the default pace.
        batch_size: M, the nominal (global) batch size (a dataset fact); default: the size of the
            batches the weighter sees (the largest so far).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=True, pace=pace, num_epochs=num_epochs, batch_size=batch_size)


def class_spl(
    num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None
) -> CurriculumWeighter:
    """Class-aware self-paced learning: within each class of a batch, weight 1 for its lowest losses.

    Each class present keeps ``round(n_c * s(e))`` of its ``n_c`` samples (at least one), with the
    pacing ``s(e)`` of `spl`.

    Args:
        num_epochs: E (a dataset fact); with M it sets the default pace.
        batch_size: M, the nominal (global) batch size (a dataset fact); default: the size of the
            batches the weighter sees (the largest so far).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=False, pace=pace, num_epochs=num_epochs, batch_size=batch_size, per_class=True)


def class_ohem(
    num_epochs: int | None = None, batch_size: int | None = None, pace: float | None = None
) -> CurriculumWeighter:
    """Class-aware OHEM: within each class of a batch, weight 1 for its highest losses (the paper's future work).

    Each class present keeps ``round(n_c * s(e))`` of its ``n_c`` samples (at least one), with the
    pacing ``s(e)`` of `ohem`, so a rare class is never crowded out by the hard samples of a common one.

    Args:
        num_epochs: E (a dataset fact); with M it sets the default pace.
        batch_size: M, the nominal (global) batch size (a dataset fact); default: the size of the
            batches the weighter sees (the largest so far).
        pace: alpha of Eq. 9; default ``2 ln(2M - 1) / E``.
    """
    return CurriculumWeighter(hardest=True, pace=pace, num_epochs=num_epochs, batch_size=batch_size, per_class=True)


def drw(
    class_counts: Tensor,
    num_epochs: int | None = None,
    start: float | None = None,
    start_epoch: int | None = None,
    weighting: str = "es",
    beta: float | None = None,
    normalize: str = "batch",
    class_names: Sequence[str] | None = None,
) -> DeferredWeighter:
    """Deferred re-weighting (Cao et al. 2019, LDAM-DRW): weight 1 first, class weights late in training.

    Before the start epoch every weight is 1; from it on, each sample weighs its class's ES (Eq. 8)
    or CB (Eq. 7) weight, by default rescaled per batch to mean 1, so that Eq. 3 becomes
    ``sum_j w_j l_j / sum_j w_j``: the scale of Cao et al.'s reference code (kaidic/LDAM-DRW,
    ``cifar_train.py``), which passes its class weights to ``F.cross_entropy(weight=...)``.

    Args:
        class_counts: Training-set counts per class [C] (a dataset fact).
        num_epochs: E (a dataset fact); needed unless ``start_epoch`` is given.
        start: Fraction of training after which the class weights apply: from the first epoch
            ``e >= start * E``. Default 0.8 (Cao et al.'s epoch 160 of 200).
        start_epoch: The first re-weighted epoch (0-based), instead of ``start``.
        weighting: ``"es"`` (effective number, default) or ``"cb"`` (class balance).
        beta: ES's beta; default ``(N - 1) / N`` as `es` (Cao et al. use 0.9999).
        normalize: ``"batch"`` (each batch's weights rescaled to mean 1: Cao et al.'s scale, default),
            ``"classes"`` (mean class weight 1) or ``"none"``.
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
    register("none", none, default=True, tasks=TASKS)
    register("cb", cb, default=True, rebalances=True, tasks=TASKS)
    register("es", es, default=True, rebalances=True, class_balanced=True, tasks=TASKS)
    register("spl", spl, default=True, tasks=TASKS)
    register("ohem", ohem, default=True, tasks=TASKS)
    register("class_spl", class_spl)  # a class of each sample: multiclass and binary only
    register("class_ohem", class_ohem)
    register("drw", drw, rebalances=True, tasks=TASKS)


def _per_label(weights_of: Callable[[Tensor], Tensor], class_counts: Tensor) -> Tensor:
    """Class weights [C] from counts [C]; for a multilabel task's counts [2, L], each label's (negative, positive)
    weights from its own two counts, a table [2, L]."""
    counts = torch.as_tensor(class_counts)
    if counts.ndim == 2:
        return torch.stack([weights_of(counts[:, label]) for label in range(counts.shape[1])], dim=1)
    return weights_of(counts)


def _warn_empty_classes(class_counts: Tensor, class_names: Sequence[str] | None, name: str) -> None:
    counts = torch.as_tensor(class_counts)
    counts = counts.min(dim=0).values if counts.ndim == 2 else counts  # a label with no positives (or negatives)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        labels = [class_names[i] if class_names else f"class {i}" for i in empty]
        warnings.warn(
            f"{name}: {', '.join(labels)} has no training samples; weighting it as a class with one "
            "sample (the largest finite weight) instead of infinity",
            stacklevel=user_stacklevel(),
        )
