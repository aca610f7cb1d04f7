"""Collectives over the process group a launcher initialised (``torchrun``, Lightning, accelerate).

What the library itself needs when several processes train together: who this process is (`rank`,
`world_size`, `is_distributed`), gathering a batch whose parts differ in length (`gather_rows`, used by
`WeightedLoss` for selection over the global batch), gathering round-robin shards back into data-set
order (`gather_interleaved`), and sums (`all_reduce_sum`). Starting the processes, joining their group and
wrapping the model in DDP belong to one training run: `sampleweight.engine.ddp`.

Every helper is a no-op (or the identity) when no process group of more than one process is
initialised, so single-process code calls them unconditionally at no cost. ``docs/distributed.md``
describes the launch, multi-node and SLURM use, and what global batch selection means.
"""

from __future__ import annotations

import atexit
import os
from typing import cast

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_sum",
    "forget_host_group",
    "gather_interleaved",
    "gather_rows",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank: from the process group, else from the launcher's ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of processes in the initialised process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(tensor: Tensor) -> tuple[Tensor, list[int]]:
    """All-gather tensors whose first dimension differs between processes.

    The lengths are gathered first, on the host (`_lengths`), so that the GPU is never waited for;
    every part is padded to the longest, gathered, and cut back.

    Args:
        tensor: This process's rows ``[n_r, ...]`` (the other dimensions equal on every process).

    Returns:
        ``(rows, sizes)``: all processes' rows concatenated in rank order ``[sum n_r, ...]`` on the
        device of ``tensor``, and the ``n_r``. Single-process: ``(tensor, [n])``.
    """
    if not is_distributed():
        return tensor, [tensor.shape[0]]
    device = _comm_device(tensor)
    sizes = _lengths(tensor.shape[0])
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]), device=device)
    padded[: tensor.shape[0]] = tensor.to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    rows = torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])
    return rows.to(tensor.device), sizes


def gather_interleaved(tensor: Tensor, length: int) -> Tensor:
    """Undo a round-robin sharding: process r held rows ``r, r + W, r + 2W, ...`` of ``length`` rows.

    Args:
        tensor: This process's shard, in order.
        length: Rows of the whole (each row held by exactly one process, none twice).

    Returns:
        The ``length`` rows in their original order (on every process). Single-process: ``tensor``.
    """
    if not is_distributed():
        return tensor
    rows, sizes = gather_rows(tensor)
    whole = rows.new_empty((length, *rows.shape[1:]))
    world, start = len(sizes), 0
    for shard, size in enumerate(sizes):
        whole[shard::world] = rows[start : start + size]
        start += size
    return whole


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The element-wise sum of ``tensor`` over all processes (a new tensor; ``tensor`` single-process)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().to(_comm_device(tensor), copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def _lengths(length: int) -> list[int]:
    """Every process's ``length``, in rank order, exchanged between the hosts (a gloo group).

    Through NCCL the lengths would travel as GPU tensors, and reading them back would make the host
    wait for everything queued on the GPU; through gloo they never touch it.
    """
    mine = torch.tensor([length], dtype=torch.long)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine, group=_host_group())
    return torch.cat(parts).tolist()


# (default group, gloo group over the same processes)
_host_groups: list[tuple[dist.ProcessGroup | None, dist.ProcessGroup]] = []


def forget_host_group() -> None:
    """Drop the gloo side group of `gather_rows`; call it when destroying the default group it belongs to.

    It also runs at exit: a side group still held while the interpreter shuts down can abort the process
    ("terminate called without an active exception") after its default group was destroyed.
    """
    _host_groups.clear()


atexit.register(forget_host_group)  # released while the interpreter still runs, not during its shutdown


def _host_group() -> dist.ProcessGroup | None:
    """A process group for CPU tensors: the default group when it has gloo, else a gloo group over it."""
    backend = dist.get_backend()
    if backend == "gloo" or "cpu:gloo" in backend:  # gloo alone, or gloo for CPU tensors ("cpu:gloo,cuda:nccl")
        return dist.group.WORLD
    return _gloo_group()


def _gloo_group() -> dist.ProcessGroup:
    """A gloo group over the processes of the default group, made once per default group (collectively)."""
    world = dist.group.WORLD
    if not _host_groups or _host_groups[0][0] is not world:  # first use, or a new default group
        # over all ranks (ranks=None) every process is a member: never the non-member sentinel new_group may return
        _host_groups[:] = [(world, cast("dist.ProcessGroup", dist.new_group(backend="gloo")))]
    return _host_groups[0][1]


def _comm_device(tensor: Tensor) -> torch.device:
    """Where the backend takes tensors: this process's GPU for NCCL, the CPU for gloo."""
    backend = dist.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if backend == "gloo":
        return torch.device("cpu")
    return tensor.device
