"""What a sampler is: the protocol, base classes for sampler plugins, and the library-owned sharding.

A sampler decides which dataset indices an epoch trains on, in which order: the *global sequence* of
the epoch, the same on every process and fixed by ``(seed, epoch)``. Plugins write only that sequence
(`BaseSampler.epoch_indices`, or `ClassSampler.class_probabilities` for a sampler that draws classes
with replacement); splitting it over processes is the library's job (`ShardedSampler`, what
`sampleweight.create_sampler` returns), so every sampler keeps the engine's guarantee: the processes'
parts of every global batch, concatenated in rank order, are the batch one process would load, and
every process runs the same number of steps.

``docs/sampling.md`` gives each built-in sampler's formula and how to use them in your own loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler as TorchSampler

from sampleweight.errors import ConfigError, PluginError

__all__ = [
    "BaseSampler",
    "ClassSampler",
    "Sampler",
    "ShardedSampler",
    "epoch_seed",
]


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """A 63-bit seed for one epoch (and one independent ``stream`` of draws within it, for process ``rank``).

    Rank 0 (and a single process) gets the seeds of ``(seed, epoch, stream)``; every other rank its own.

    Example:
        >>> epoch_seed(0, 1, stream=1) == epoch_seed(0, 1, stream=1) != epoch_seed(0, 2, stream=1)
        True
    """
    entropy = [seed, epoch, stream] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)[0] >> 1)


@runtime_checkable
class Sampler(Protocol):
    """What ``DataLoader(sampler=...)`` takes, with the per-epoch state a resumable run needs.

    ``__iter__`` yields the dataset indices of the current epoch (the global sequence, deterministic
    from the sampler's seed and the epoch), ``__len__`` is their number, ``set_epoch(epoch)`` selects
    the epoch (call it before iterating), and ``state_dict`` / ``load_state_dict`` round-trip whatever
    else the sampler keeps, so that a resumed run draws exactly what an uninterrupted one does.
    """

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


class BaseSampler(TorchSampler[int]):
    """Base for sampler plugins: implement `epoch_indices`, the global sequence of one epoch.

    It supplies `set_epoch`, iteration over the current epoch, ``len`` (the epoch length), `generator`
    (a torch generator seeded from ``(seed, epoch)``: use it for every draw, so an epoch is the same
    whether or not the run was resumed before it) and a `state_dict` holding the epoch.

    Args:
        num_samples: Indices per epoch (> 0).
        seed: Base seed of every draw.

    Attributes:
        rebalances_classes: True for a sampler that changes how often each class is drawn (the engine
            warns when it is combined with a class-rebalancing weighter).

    Raises:
        ValueError: ``num_samples`` is not a positive integer, or ``seed`` is negative.

    Example:
        >>> class Reversed(BaseSampler):
        ...     def epoch_indices(self, epoch):
        ...         return torch.arange(self.num_samples).flip(0)
        >>> list(Reversed(3))
        [2, 1, 0]
    """

    rebalances_classes: bool = False

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples (the epoch length) must be a positive integer, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def epoch_indices(self, epoch: int) -> Tensor:
        """The dataset indices of ``epoch`` in order: LongTensor [num_samples], a function of (seed, epoch)."""
        raise NotImplementedError(f"{type(self).__name__} must implement epoch_indices(epoch)")

    def generator(self, epoch: int, stream: int = 1) -> torch.Generator:
        """A CPU generator seeded from ``(seed, epoch, stream)`` (stream 1 is the instance sampler's order)."""
        return torch.Generator().manual_seed(epoch_seed(self.seed, epoch, stream=stream))

    def set_epoch(self, epoch: int) -> None:
        """Draw the sequence of ``epoch`` (0-based) on the next iteration."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch).tolist())

    def __len__(self) -> int:
        return self.num_samples

    def state_dict(self) -> dict[str, Any]:
        """The epoch (the sequence itself follows from the seed and the epoch)."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.epoch = int(state_dict["epoch"])


class ClassSampler(BaseSampler):
    """Base for samplers that draw with replacement by class: implement `class_probabilities`.

    Each of the epoch's ``num_samples`` draws picks a class ``c`` with probability ``p_c(epoch)``, then
    one of that class's samples uniformly: vectorised (``torch.multinomial`` over the classes, one
    uniform draw per index): about 0.1 s for an epoch of 10^6 indices on one CPU core
    (``benchmarks/sampling.py``).

    A class with no samples can never be drawn. Since such a sampler exists to rebalance the classes,
    an empty class is refused, unless ``skip_empty`` asks to balance the others: its probability is
    then set to 0 and the rest renormalised.

    Args:
        targets: Class index of every sample, LongTensor [N].
        num_classes: C (default ``max(targets) + 1``); classes beyond the targets' are empty.
        num_samples: Indices per epoch (default N).
        seed: Base seed.
        class_names: Names for messages (default ``class 0``, ``class 1``, ...).
        skip_empty: Draw from the non-empty classes only instead of refusing an empty class.

    Attributes:
        class_counts: Samples per class, LongTensor [C].

    Raises:
        ValueError: Bad targets, an empty class without ``skip_empty``, a bad ``num_samples``.
    """

    rebalances_classes = True

    def __init__(
        self,
        targets: Tensor | Sequence[int],
        *,
        num_classes: int | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        skip_empty: bool = False,
    ) -> None:
        targets = torch.as_tensor(targets)
        if targets.ndim != 1 or targets.numel() == 0 or targets.is_floating_point() or bool((targets < 0).any()):
            raise ValueError("targets must be a non-empty 1-D tensor of class indices >= 0")
        targets = targets.long()
        classes = int(targets.max()) + 1 if num_classes is None else int(num_classes)
        if classes < int(targets.max()) + 1:
            raise ValueError(f"num_classes={classes}, but targets hold class {int(targets.max())}")
        if class_names is not None and len(class_names) != classes:
            raise ValueError(f"{len(class_names)} class_names for {classes} classes")
        super().__init__(len(targets) if num_samples is None else num_samples, seed)
        self.targets = targets
        self.class_counts = torch.bincount(targets, minlength=classes)
        self.class_names = list(class_names) if class_names is not None else [f"class {c}" for c in range(classes)]
        self.skip_empty = bool(skip_empty)
        empty = [self.class_names[c] for c in (self.class_counts == 0).nonzero().flatten().tolist()]
        if empty and not self.skip_empty:
            raise ValueError(
                f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no training samples, and a class with "
                "no training samples is never drawn, so the classes cannot be balanced; pass skip_empty=true "
                "(--sampler-option skip_empty=true) to balance the other classes, or use the instance sampler"
            )
        self._by_class = torch.argsort(targets, stable=True)  # sample indices grouped by class
        self._starts = torch.cumsum(self.class_counts, 0) - self.class_counts

    def class_probabilities(self, epoch: int) -> Tensor:
        """p_c of ``epoch``: FloatTensor [C], >= 0, any scale (normalised by the caller)."""
        raise NotImplementedError(f"{type(self).__name__} must implement class_probabilities(epoch)")

    def epoch_indices(self, epoch: int) -> Tensor:
        """``num_samples`` draws with replacement: a class by `class_probabilities`, then a sample of it."""
        probabilities = self.probabilities(epoch)
        generator = self.generator(epoch)
        classes = torch.multinomial(probabilities, self.num_samples, replacement=True, generator=generator)
        counts = self.class_counts[classes]
        uniform = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
        within = torch.minimum((uniform * counts).long(), counts - 1)
        return self._by_class[self._starts[classes] + within]

    def probabilities(self, epoch: int) -> Tensor:
        """`class_probabilities` of ``epoch``, checked, with empty classes at 0, normalised to sum 1 (float64)."""
        p = torch.as_tensor(self.class_probabilities(epoch), dtype=torch.float64).clone()
        if p.shape != self.class_counts.shape or not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
            raise ValueError(
                f"{type(self).__name__}.class_probabilities({epoch}) must be {len(self.class_counts)} finite "
                f"values >= 0, got {p.tolist()}"
            )
        p[self.class_counts == 0] = 0.0
        if float(p.sum()) <= 0:
            raise ValueError(f"{type(self).__name__}.class_probabilities({epoch}) gives no class with samples")
        return p / p.sum()


class ShardedSampler(TorchSampler[int]):
    """One process's share of a sampler's global sequence: what `sampleweight.create_sampler` returns.

    Every process draws the same global sequence, pads it to a multiple of ``num_replicas`` by repeating
    its first indices (as ``DistributedSampler`` does; fewer than ``num_replicas`` repeats per epoch),
    cuts it into global batches of ``batch_size`` and each global batch into ``num_replicas`` equal
    contiguous parts; process ``rank`` takes part ``rank``. Loaded in batches of ``batch_size /
    num_replicas``, the parts of step k, concatenated in rank order, are global batch k, and every
    process runs the same number of steps. Without ``batch_size`` the parts are single indices: process
    r takes indices r, r + W, r + 2W, ... (``DistributedSampler``'s order). With one process the share is
    the global sequence itself.

    Args:
        sampler: The global sequence (any `Sampler`).
        num_replicas: W, the number of processes.
        rank: This process's rank, in ``[0, W)``.
        batch_size: The global batch M (a multiple of W); default W.
        drop_last: Drop a last global batch shorter than M (on every process).
        min_part: Drop a last global batch whose parts would hold fewer than this many indices (the
            engine passes 2 for a model with BatchNorm, which cannot train on one sample).

    Raises:
        ConfigError: Bad ``num_replicas``, ``rank``, ``batch_size`` or ``min_part``.

    Example:
        >>> import sampleweight as sw, torch
        >>> targets = torch.tensor([0, 0, 0, 1])
        >>> shares = [sw.create_sampler("instance", targets=targets, num_replicas=2, rank=r) for r in (0, 1)]
        >>> sorted(list(shares[0]) + list(shares[1]))
        [0, 1, 2, 3]
    """

    name: str = ""
    """The name the sampler was created by (set by `sampleweight.create_sampler`)."""

    def __init__(
        self,
        sampler: Sampler,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
        min_part: int = 1,
    ) -> None:
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ConfigError(f"num_replicas must be a positive integer, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ConfigError(f"rank must lie in [0, {num_replicas}), got {rank!r}")
        batch_size = num_replicas if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size % num_replicas:
            raise ConfigError(
                f"batch_size {batch_size} is the global batch, shared by {num_replicas} processes; "
                f"choose a multiple of {num_replicas}"
            )
        if not isinstance(min_part, int) or min_part < 1:
            raise ConfigError(f"min_part must be a positive integer, got {min_part!r}")
        self.sampler = sampler
        self.num_replicas, self.rank, self.batch_size = num_replicas, rank, batch_size
        self.drop_last, self.min_part = bool(drop_last), min_part
        self.epoch = 0
        self._cached: tuple[int, Tensor] | None = None  # (epoch, global indices): drawn once per epoch

    @property
    def rebalances_classes(self) -> bool:
        """Whether the wrapped sampler changes how often each class is drawn."""
        return bool(getattr(self.sampler, "rebalances_classes", False))

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch`` (0-based), for the wrapped sampler too."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)
        self._cached = None

    def global_length(self) -> int:
        """How many indices all processes together load this epoch (the padded, trimmed global sequence)."""
        world, batch = self.num_replicas, self.batch_size
        total = math.ceil(len(self.sampler) / world) * world
        tail = total % batch
        if tail and (self.drop_last or tail // world < self.min_part):
            total -= tail
        return total

    def global_indices(self) -> Tensor:
        """The epoch's global sequence as the processes together load it: padded, trimmed (LongTensor)."""
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._pad(self._draw(), self.global_length()))
        return self._cached[1]

    def __iter__(self) -> Iterator[int]:
        order = self.global_indices()
        world = self.num_replicas
        if world == 1:
            return iter(order.tolist())
        per_process = self.batch_size // world
        full = len(order) - len(order) % self.batch_size  # indices in full global batches
        head = order[:full].view(-1, world, per_process)[:, self.rank].reshape(-1)
        tail = order[full:].view(world, -1)[self.rank]
        return iter(torch.cat([head, tail]).tolist())

    def __len__(self) -> int:
        return self.global_length() // self.num_replicas

    def state_dict(self) -> dict[str, Any]:
        """The epoch and the wrapped sampler's state."""
        return {"epoch": self.epoch, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.epoch = int(state_dict["epoch"])
        self.sampler.load_state_dict(state_dict["sampler"])
        self._cached = None

    def _draw(self) -> Tensor:
        """The wrapped sampler's sequence of the current epoch, as a LongTensor."""
        if isinstance(self.sampler, BaseSampler):
            indices = self.sampler.epoch_indices(self.sampler.epoch)
        else:
            indices = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)
        indices = torch.as_tensor(indices).long().flatten()
        if len(indices) != len(self.sampler):
            raise PluginError(
                f"{type(self.sampler).__name__} yielded {len(indices)} indices in epoch {self.epoch}, but its "
                f"len() is {len(self.sampler)}"
            )
        return indices

    @staticmethod
    def _pad(order: Tensor, total: int) -> Tensor:
        """``order`` cut or extended to ``total`` by repeating it from its start."""
        if total <= len(order):
            return order[:total]
        return order.repeat(math.ceil(total / len(order)))[:total]

    def __repr__(self) -> str:
        return (
            f"ShardedSampler({type(self.sampler).__name__}, num_replicas={self.num_replicas}, rank={self.rank}, "
            f"batch_size={self.batch_size})"
        )
