"""Built-in samplers: instance (a shuffled pass), class_balanced, sqrt, progressive (Kang et al. 2020),
repeat_factor (Gupta et al. 2019) and drs (deferred re-sampling, Cao et al. 2019).

Every one returns the *global* sequence of an epoch, fixed by ``(seed, epoch)``; the library shards it
over processes (`sampleweight.ShardedSampler`). The rebalancing ones draw with replacement by class
(`sampleweight.ClassSampler`): a class with probability ``p_c``, then one of its samples uniformly, so
that ``p_c`` is the expected share of class c in an epoch; except repeat_factor, which repeats every image its
repeat factor's number of times (rounded stochastically), so that its epochs grow and vary in length.
``docs/sampling.md`` gives the formulas.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sampleweight import functional as SF
from sampleweight.errors import user_stacklevel
from sampleweight.hookspecs import hookimpl
from sampleweight.sampling import BaseSampler, ClassSampler

REPEAT_THRESHOLD = 0.001
"""Gupta et al.'s (LVIS) default threshold t of repeat-factor sampling."""


def permutations(size: int, num_samples: int, generator: torch.Generator) -> Tensor:
    """``num_samples`` indices of ``range(size)``: random permutations one after another, the last one cut.

    With ``num_samples == size`` this is one ``torch.randperm(size, generator=generator)``: the engine's
    shuffled pass, unchanged.
    """
    parts, left = [], num_samples
    while left > 0:
        parts.append(torch.randperm(size, generator=generator)[:left])
        left -= size
    return torch.cat(parts)


class InstanceSampler(BaseSampler):
    """Every sample once per epoch, in a random order: a fresh permutation per epoch (today's shuffled pass).

    An epoch longer than the data set continues with further permutations; a shorter one takes the
    start of the permutation.

    Args:
        size: N, the number of samples.
        num_samples: Indices per epoch (default N).
        seed: Base seed.
    """

    def __init__(self, size: int, num_samples: int | None = None, seed: int = 0) -> None:
        super().__init__(size if num_samples is None else num_samples, seed)
        self.size = size

    def epoch_indices(self, epoch: int) -> Tensor:
        return permutations(self.size, self.num_samples, self.generator(epoch))


class PowerSampler(ClassSampler):
    """Class c drawn with probability ``p_c = N_c^q / sum_k N_k^q`` (Kang et al. 2020, Eq. 1).

    ``q = 1`` is instance-balanced (with replacement), ``q = 0`` class-balanced, ``q = 1/2`` square-root.

    Args:
        targets: Class index of every sample [N].
        q: The exponent, in [0, 1].
        **kwargs: `ClassSampler` arguments (``num_classes``, ``num_samples``, ``seed``, ``class_names``,
            ``skip_empty``).
    """

    def __init__(self, targets: Tensor, q: float, **kwargs) -> None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q}")
        super().__init__(targets, **kwargs)
        self.q = float(q)

    def class_probabilities(self, epoch: int) -> Tensor:
        return power_probabilities(self.class_counts, self.q)


class ProgressiveSampler(ClassSampler):
    """Progressively-balanced sampling (Kang et al. 2020, Eq. 2): from instance- to class-balanced.

    ``p_c(t) = (1 - t/T) N_c / N + (t/T) / C``, with t the 0-based epoch and T the number of epochs:
    instance-balanced in epoch 0, nearly class-balanced in the last.

    Args:
        targets: Class index of every sample [N].
        num_epochs: T.
        **kwargs: `ClassSampler` arguments.
    """

    def __init__(self, targets: Tensor, num_epochs: int, **kwargs) -> None:
        super().__init__(targets, **kwargs)
        self.num_epochs = int(num_epochs)

    def class_probabilities(self, epoch: int) -> Tensor:
        share = min(max(epoch / self.num_epochs, 0.0), 1.0)
        instance = power_probabilities(self.class_counts, 1.0)
        balanced = power_probabilities(self.class_counts, 0.0)
        return (1.0 - share) * instance + share * balanced


class RepeatFactorSampler(ClassSampler):
    """Repeat-factor sampling (Gupta et al., LVIS 2019): each image repeated ``r_c = max(1, sqrt(t / f_c))`` times.

    ``f_c = N_c / N`` is the fraction of training images of class c; with one label per image an image's repeat
    factor ``r_i`` is its class's. LVIS's repeat factor sampling (Gupta et al., CVPR 2019)
    repeats image i ``r_i`` times per epoch, so the epoch grows to ``sum_i r_i`` indices. A fractional ``r_i`` is
    rounded stochastically, as detectron2's ``RepeatFactorTrainingSampler`` does
    (``detectron2/data/samplers/distributed_sampler.py``): ``floor(r_i)`` repeats, plus one more with probability
    ``r_i - floor(r_i)``, drawn from ``(seed, epoch)``; the repeated indices are then shuffled. Image i so
    appears ``r_i`` times per epoch in expectation, classes with ``f_c >= t`` exactly once per image, and the
    epoch's length (``len()``, known once `set_epoch` has selected the epoch) varies around ``sum_i r_i``. When no
    class is below t every ``r_i`` is 1 and the epoch is exactly the `InstanceSampler`'s (the same permutation).

    With ``fixed_length`` the epoch keeps ``num_samples`` draws (default N) with replacement, class c with
    probability ``p_c ∝ N_c r_c``: the shares are LVIS's, but each image is drawn ``r_c num_samples / sum_i r_i``
    times in expectation (what this sampler did before it followed LVIS).

    Multi-label targets (multi-hot, [N, L]) follow LVIS's own definition, which is multi-label by nature
    (detectron2's ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency``): ``f_l`` is the fraction
    of images that contain label l, ``r_l = max(1, sqrt(t / f_l))``, and an image's factor is
    ``r_i = max_{l in image i} r_l`` (1 for an image with no positive label). A label that no image holds changes
    nothing (it is never refused, so ``skip_empty`` has no effect). The epoch grows as above; with
    ``fixed_length`` each of the ``num_samples`` draws picks image i with probability ``r_i / sum_j r_j`` (the
    distribution the class-index draw above gives, drawn per image).

    Args:
        targets: Class index of every sample [N], or multi-hot labels [N, L] (0/1, any numeric dtype).
        threshold: t, in (0, 1].
        fixed_length: Keep the epoch at ``num_samples`` draws with replacement instead of growing it. Default:
            fixed exactly when ``num_samples`` is given.
        num_samples: Indices per epoch of a fixed-length epoch (default N); implies ``fixed_length``.
        **kwargs: The other `ClassSampler` arguments (``num_classes``, ``seed``, ``class_names``, ``skip_empty``).

    Attributes:
        repeat_factors: ``r_c`` per class (or ``r_l`` per label), float64 [C] (1 for an empty class or label).
        image_factors: ``r_i`` per image, float64 [N].
        multilabel: Whether the targets are multi-hot [N, L].
        expected_length: ``sum_i r_i``, the mean length of an epoch that grows.

    Raises:
        ValueError: A threshold outside (0, 1], ``num_samples`` with ``fixed_length=False``, or targets that are
            neither class indices [N] nor 0/1 multi-hot labels [N, L].
    """

    ROUNDING_STREAM = 3
    """The `generator` stream of the stochastic rounding (1 is the order's, as the instance sampler's)."""

    def __init__(
        self,
        targets: Tensor,
        threshold: float = REPEAT_THRESHOLD,
        *,
        fixed_length: bool | None = None,
        num_samples: int | None = None,
        **kwargs,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        if fixed_length is not None and not fixed_length and num_samples is not None:
            raise ValueError(
                "num_samples fixes the epoch length, and fixed_length=false grows it to the sum of the repeat "
                "factors; drop one of them"
            )
        targets = torch.as_tensor(targets)
        self.multilabel = targets.ndim == 2
        self.threshold = float(threshold)
        if self.multilabel:
            self._init_multilabel(targets, num_samples, **kwargs)
            factors = image_repeat_factors(targets, self.threshold)  # r_i = max_l r_l, float64 [N]
            self.repeat_factors = repeat_factors(self.class_counts, self.threshold, num_images=len(targets))
        else:
            super().__init__(targets, num_samples=num_samples, **kwargs)
            self.repeat_factors = repeat_factors(self.class_counts, self.threshold)
            factors = self.repeat_factors[self.targets]  # r_i, float64 [N]
        self.fixed_length = bool(fixed_length) if fixed_length is not None else num_samples is not None
        self._mode_given = fixed_length is not None or num_samples is not None  # else an old state may set it
        self.image_factors = factors
        self._whole = factors.floor()
        self._fraction = factors - self._whole
        self.expected_length = float(factors.sum())
        self._drawn: tuple[int, Tensor] | None = None  # (epoch, its indices): len() needs the epoch's draw

    def _init_multilabel(
        self,
        targets: Tensor,
        num_samples: int | None,
        *,
        num_classes: int | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        skip_empty: bool = False,
    ) -> None:
        """Check multi-hot targets [N, L] and set what `ClassSampler` would (``class_counts``: images per label)."""
        check_multi_hot(targets)
        labels = targets.shape[1]
        if num_classes is not None and int(num_classes) != labels:
            raise ValueError(f"num_classes={num_classes}, but the multi-hot targets have {labels} labels")
        if class_names is not None and len(class_names) != labels:
            raise ValueError(f"{len(class_names)} class_names for {labels} labels")
        BaseSampler.__init__(self, len(targets) if num_samples is None else num_samples, seed)
        self.targets = targets
        self.class_counts = (targets != 0).sum(0)  # images that contain label l, LongTensor [L]
        self.class_names = list(class_names) if class_names is not None else [f"class {c}" for c in range(labels)]
        self.skip_empty = bool(skip_empty)

    def class_probabilities(self, epoch: int) -> Tensor:
        return self.class_counts.double() * self.repeat_factors

    def expected_repeats(self) -> Tensor:
        """How often each image of class c is drawn per epoch in expectation, float64 [C].

        ``r_c`` when the epoch grows; ``r_c num_samples / sum_i r_i`` with ``fixed_length``. For multi-hot
        targets the same per label l: how often an image whose rarest label is l is drawn (see `image_factors`).
        """
        if self.fixed_length:
            return self.repeat_factors * (self.num_samples / self.expected_length)
        return self.repeat_factors.clone()

    def epoch_indices(self, epoch: int) -> Tensor:
        """The epoch's indices: each image ``floor(r_i)`` times or once more, shuffled (or fixed-length draws)."""
        if self.fixed_length and self.multilabel:  # image i with probability r_i / sum_j r_j
            return torch.multinomial(
                self.image_factors, self.num_samples, replacement=True, generator=self.generator(epoch)
            )
        if self.fixed_length:
            return super().epoch_indices(epoch)
        if self._drawn is None or self._drawn[0] != epoch:
            rounding = self.generator(epoch, self.ROUNDING_STREAM)
            extra = torch.rand(len(self.targets), generator=rounding, dtype=torch.float64) < self._fraction
            repeats = (self._whole + extra).long()
            indices = torch.repeat_interleave(torch.arange(len(self.targets)), repeats)
            self._drawn = (epoch, indices[torch.randperm(len(indices), generator=self.generator(epoch))])
        return self._drawn[1]

    def __len__(self) -> int:
        return self.num_samples if self.fixed_length else len(self.epoch_indices(self.epoch))

    def state_dict(self) -> dict[str, Any]:
        """The epoch, and whether the epoch has a fixed length (a state without it predates the growing epoch)."""
        return {"epoch": self.epoch, "fixed_length": self.fixed_length}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned.

        A state saved before this sampler followed LVIS has no ``fixed_length``: its run drew fixed-length epochs,
        so a sampler created without saying (no ``fixed_length``, no ``num_samples``) continues them, with a
        warning, and the resumed run ends as it would have.

        Raises:
            ValueError: The state's mode is not this sampler's.
        """
        if "fixed_length" in state_dict:
            saved = bool(state_dict["fixed_length"])
        else:
            saved = True  # the only kind of epoch an older version drew
            if not self.fixed_length and not self._mode_given:
                warnings.warn(
                    "repeat_factor: this state was saved before repeat-factor sampling grew each epoch to the sum "
                    "of the repeat factors (LVIS); its run continues with fixed-length epochs of "
                    f"{self.num_samples} draws, as it began (fixed_length=true). Start a new run for LVIS's epochs",
                    stacklevel=user_stacklevel(),
                )
                self.fixed_length = True
        if saved != self.fixed_length:
            raise ValueError(
                f"the state is of a repeat_factor sampler with fixed_length={saved}, but this one has "
                f"fixed_length={self.fixed_length}; create it with fixed_length={saved} to continue"
            )
        super().load_state_dict(state_dict)


class DeferredSampler(ClassSampler):
    """Deferred re-sampling (DRS, Cao et al. 2019): the instance sampler's shuffled pass, then class-balanced.

    Epochs before ``start_epoch`` are exactly the `InstanceSampler`'s (the same permutations); from
    ``start_epoch`` on, every class is drawn with probability ``1 / C``.

    Args:
        targets: Class index of every sample [N].
        start_epoch: First class-balanced epoch (0-based).
        **kwargs: `ClassSampler` arguments.
    """

    def __init__(self, targets: Tensor, start_epoch: int, **kwargs) -> None:
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        super().__init__(targets, **kwargs)
        self.start_epoch = int(start_epoch)

    def class_probabilities(self, epoch: int) -> Tensor:
        q = 1.0 if epoch < self.start_epoch else 0.0
        return power_probabilities(self.class_counts, q)

    def epoch_indices(self, epoch: int) -> Tensor:
        if epoch < self.start_epoch:
            return permutations(len(self.targets), self.num_samples, self.generator(epoch))
        return super().epoch_indices(epoch)


def power_probabilities(class_counts: Tensor, q: float) -> Tensor:
    """``N_c^q / sum_k N_k^q`` over the classes with samples (empty classes get 0), float64 [C].

    Example:
        >>> power_probabilities(torch.tensor([90, 10, 0]), 0.5).tolist()
        [0.75, 0.25, 0.0]
    """
    counts = class_counts.double()
    weights = torch.where(counts > 0, counts.pow(q), torch.zeros_like(counts))
    return weights / weights.sum()


def repeat_factors(class_counts: Tensor, threshold: float, num_images: int | None = None) -> Tensor:
    """``r_c = max(1, sqrt(t / f_c))`` with ``f_c = N_c / N`` (1 for an empty class, which is never drawn).

    Args:
        class_counts: ``N_c``, images per class (or per label: the images that contain it), [C].
        threshold: t.
        num_images: N (default ``sum_c N_c``, the number of images when each has one class).

    Example:
        >>> repeat_factors(torch.tensor([96, 4]), threshold=0.16).tolist()
        [1.0, 2.0]
    """
    counts = class_counts.double()
    fractions = counts / (counts.sum() if num_images is None else num_images)
    factors = torch.sqrt(threshold / fractions.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(counts > 0, factors.clamp_min(1.0), torch.ones_like(counts))


def check_multi_hot(targets: Tensor) -> None:
    """Refuse multi-label targets that are not a non-empty multi-hot matrix [N, L] of 0/1 values.

    Raises:
        ValueError: The wrong number of dimensions, no sample or label, or a value other than 0 and 1.
    """
    if targets.ndim != 2 or targets.numel() == 0:
        raise ValueError(
            f"multi-label targets must be a non-empty multi-hot matrix [N, L] of 0/1, got shape {tuple(targets.shape)}"
        )
    if targets.is_complex() or not bool(((targets == 0) | (targets == 1)).all()):
        bad = targets[(targets != 0) & (targets != 1)].flatten()[:3].tolist()
        raise ValueError(
            f"multi-label targets must hold only 0 and 1 (multi-hot [N, L]), got {bad}; pass 0/1 labels, "
            "not scores or label indices"
        )


def image_repeat_factors(multi_hot: Tensor, threshold: float) -> Tensor:
    """LVIS's image repeat factors: ``r_i = max(1, max_{l in image i} sqrt(t / f_l))``, float64 [N].

    ``f_l`` is the fraction of the N images that contain label l (Gupta et al. 2019; detectron2's
    ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency``); an image with no label has 1.

    Example:
        >>> factors = image_repeat_factors(torch.tensor([[1, 0], [1, 1], [1, 0], [0, 0]]), threshold=1.0)
        >>> [round(r, 3) for r in factors.tolist()]  # r_0 = sqrt(1 / 0.75), r_1 = sqrt(1 / 0.25); no label: 1
        [1.155, 2.0, 1.155, 1.0]
    """
    check_multi_hot(multi_hot)
    present = multi_hot != 0
    per_label = repeat_factors(present.sum(0), threshold, num_images=len(multi_hot))  # r_l, [L]
    return torch.where(present, per_label, torch.ones_like(per_label)).amax(1)


# -- factories: what `sampleweight.create_sampler` calls, with the facts they name ---------------------------


def instance(targets: Tensor, num_samples: int | None = None, seed: int = 0) -> InstanceSampler:
    """Instance sampling: each sample once per epoch, shuffled (the default; ``p_c ∝ N_c``).

    Args:
        targets: The training side's class indices [N], or a multilabel task's 0/1 labels [N, L] (a fact; only its
            length is used).
        num_samples: Indices per epoch (default N).
        seed: Base seed (a fact: the run's seed).
    """
    return InstanceSampler(len(targets), num_samples, seed)


def _power_sampler(q: float, name: str, summary: str) -> Callable[..., PowerSampler]:
    """The factory of `PowerSampler` with exponent ``q``, registered as ``name``."""

    def factory(
        targets: Tensor,
        num_classes: int | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        skip_empty: bool = False,
    ) -> PowerSampler:
        return PowerSampler(targets, q, **_class_options(num_classes, num_samples, seed, class_names, skip_empty))

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"""{summary}

    Args:
        targets: The training side's class indices [N] (a fact).
        num_classes: C (a fact; default ``max(targets) + 1``).
        num_samples: Indices per epoch (default N).
        seed: Base seed (a fact).
        class_names: For messages (a fact).
        skip_empty: Sample the classes with training samples instead of refusing an empty class.
    """
    return factory


class_balanced = _power_sampler(
    0.0, "class_balanced", "Class-balanced sampling: every class equally often, ``p_c = 1 / C`` (q = 0)."
)
sqrt = _power_sampler(0.5, "sqrt", "Square-root sampling: ``p_c ∝ sqrt(N_c)`` (q = 1/2; Mahajan et al. 2018).")


def progressive(
    targets: Tensor,
    num_epochs: int,
    num_classes: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    skip_empty: bool = False,
) -> ProgressiveSampler:
    """Progressively-balanced sampling: ``p_c(t) = (1 - t/T) N_c / N + (t/T) / C`` (Kang et al. 2020).

    Args:
        targets: The training side's class indices [N] (a fact).
        num_epochs: T, the number of epochs (a fact).
        num_classes: C (a fact).
        num_samples: Indices per epoch (default N).
        seed: Base seed (a fact).
        class_names: For messages (a fact).
        skip_empty: Balance the classes with training samples instead of refusing an empty class.
    """
    options = _class_options(num_classes, num_samples, seed, class_names, skip_empty)
    return ProgressiveSampler(targets, num_epochs, **options)


def repeat_factor(
    targets: Tensor,
    threshold: float = REPEAT_THRESHOLD,
    fixed_length: bool | None = None,
    num_classes: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    skip_empty: bool = False,
) -> RepeatFactorSampler:
    """Repeat-factor sampling: each image ``r_c = max(1, sqrt(t / f_c))`` times per epoch (Gupta et al. 2019).

    The epoch grows to ``sum_i r_i`` indices (fractional factors rounded stochastically per image and epoch, as
    detectron2's ``RepeatFactorTrainingSampler``); with ``fixed_length`` it keeps ``num_samples`` draws, class c
    with probability ``∝ N_c r_c``. Multi-hot targets [N, L] (a multilabel task) follow LVIS's multi-label rule:
    ``r_i`` is the largest ``r_l`` of the labels image i holds, ``f_l`` the fraction of images holding label l
    (`RepeatFactorSampler`).

    Args:
        targets: The training side's class indices [N], or multi-hot labels [N, L] (a fact).
        threshold: t (default 0.001, LVIS's). On HAM10000 (rarest class 1.1 %) the default changes
            nothing; t = 0.1 repeats the four rarest classes.
        fixed_length: Keep the epoch at ``num_samples`` draws with replacement (default: only when
            ``num_samples`` is given): the same number of steps per epoch as the other samplers.
        num_classes: C (a fact).
        num_samples: Indices per epoch of a fixed-length epoch (default N); implies ``fixed_length``.
        seed: Base seed (a fact).
        class_names: For messages (a fact).
        skip_empty: Sample the classes with training samples instead of refusing an empty class.
    """
    options = _class_options(num_classes, num_samples, seed, class_names, skip_empty)
    return RepeatFactorSampler(targets, threshold, fixed_length=fixed_length, **options)


def drs(
    targets: Tensor,
    num_epochs: int | None = None,
    start: float | None = None,
    start_epoch: int | None = None,
    num_classes: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    skip_empty: bool = False,
) -> DeferredSampler:
    """Deferred re-sampling: instance sampling, then class-balanced from ``start * E`` (Cao et al. 2019).

    Args:
        targets: The training side's class indices [N] (a fact).
        num_epochs: E (a fact); needed unless ``start_epoch`` is given.
        start: Fraction of training after which sampling is class-balanced: from the first epoch
            ``e >= start * E``. Default 0.8, as `drw`.
        start_epoch: The first class-balanced epoch (0-based), instead of ``start``.
        num_classes: C (a fact).
        num_samples: Indices per epoch (default N).
        seed: Base seed (a fact).
        class_names: For messages (a fact).
        skip_empty: Balance the classes with training samples instead of refusing an empty class.
    """
    first = SF.deferred_start_epoch(num_epochs, start, start_epoch, name="drs")
    options = _class_options(num_classes, num_samples, seed, class_names, skip_empty)
    return DeferredSampler(targets, first, **options)


@hookimpl
def register_samplers(register) -> None:
    register("instance", instance, default=True, tasks=("multiclass", "binary", "multilabel"))
    register("class_balanced", class_balanced, balanced=True)
    register("sqrt", sqrt)
    register("progressive", progressive)
    register("repeat_factor", repeat_factor, tasks=("multiclass", "binary", "multilabel"))
    register("drs", drs)


def _class_options(
    num_classes: int | None,
    num_samples: int | None,
    seed: int,
    class_names: Sequence[str] | None,
    skip_empty: bool,
) -> dict:
    return {
        "num_classes": num_classes,
        "num_samples": num_samples,
        "seed": seed,
        "class_names": class_names,
        "skip_empty": skip_empty,
    }
