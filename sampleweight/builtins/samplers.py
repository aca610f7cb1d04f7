"""Built-in samplers: instance (a shuffled pass), class_balanced, sqrt, progressive (Kang et al. 2020),
repeat_factor (Gupta et al. 2019) and drs (deferred re-sampling, Cao et al. 2019).

Every one returns the *global* sequence of an epoch, fixed by ``(seed, epoch)``; the library shards it
over processes (`sampleweight.ShardedSampler`). The rebalancing ones draw with replacement by class
(`sampleweight.ClassSampler`): a class with probability ``p_c``, then one of its samples uniformly, so
that ``p_c`` is the expected share of class c in an epoch. ``docs/sampling.md`` gives the formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sampleweight import functional as SF
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
    """Repeat-factor sampling (Gupta et al., LVIS 2019): class c repeated ``r_c = max(1, sqrt(t / f_c))`` times.

    ``f_c = N_c / N`` is the fraction of training images of class c (one label per image here, so an
    image's repeat factor is its class's); class c is drawn with probability ``p_c ∝ N_c r_c``. Classes
    with ``f_c >= t`` keep their frequency; rarer ones are oversampled up to ``f_c = t``'s share.

    Args:
        targets: Class index of every sample [N].
        threshold: t, in (0, 1].
        **kwargs: `ClassSampler` arguments.
    """

    def __init__(self, targets: Tensor, threshold: float = REPEAT_THRESHOLD, **kwargs) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        super().__init__(targets, **kwargs)
        self.threshold = float(threshold)
        self.repeat_factors = repeat_factors(self.class_counts, self.threshold)

    def class_probabilities(self, epoch: int) -> Tensor:
        return self.class_counts.double() * self.repeat_factors


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


def repeat_factors(class_counts: Tensor, threshold: float) -> Tensor:
    """``r_c = max(1, sqrt(t / f_c))`` with ``f_c = N_c / N`` (1 for an empty class, which is never drawn).

    Example:
        >>> repeat_factors(torch.tensor([96, 4]), threshold=0.16).tolist()
        [1.0, 2.0]
    """
    counts = class_counts.double()
    fractions = counts / counts.sum()
    factors = torch.sqrt(threshold / fractions.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(counts > 0, factors.clamp_min(1.0), torch.ones_like(counts))


# -- factories: what `sampleweight.create_sampler` calls, with the facts they name ---------------------------


def instance(targets: Tensor, num_samples: int | None = None, seed: int = 0) -> InstanceSampler:
    """Instance sampling: each sample once per epoch, shuffled (the default; ``p_c ∝ N_c``).

    Args:
        targets: The training side's class indices [N] (a fact; only its length is used).
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
    num_classes: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    skip_empty: bool = False,
) -> RepeatFactorSampler:
    """Repeat-factor sampling: ``p_c ∝ N_c max(1, sqrt(t / f_c))``, ``f_c = N_c / N`` (Gupta et al. 2019).

    Args:
        targets: The training side's class indices [N] (a fact).
        threshold: t (default 0.001, LVIS's). On HAM10000 (rarest class 1.1 %) the default changes
            nothing; t = 0.1 oversamples the four rarest classes.
        num_classes: C (a fact).
        num_samples: Indices per epoch (default N).
        seed: Base seed (a fact).
        class_names: For messages (a fact).
        skip_empty: Sample the classes with training samples instead of refusing an empty class.
    """
    options = _class_options(num_classes, num_samples, seed, class_names, skip_empty)
    return RepeatFactorSampler(targets, threshold, **options)


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
    register("instance", instance, default=True)
    register("class_balanced", class_balanced, balanced=True)
    register("sqrt", sqrt)
    register("progressive", progressive)
    register("repeat_factor", repeat_factor)
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
