"""Multi-process training on PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc-per-node N -m sampleweight train ...`` starts N processes and describes them in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); `session`
joins them into one process group (NCCL on GPUs, gloo on the CPU) for the duration of a run. The rest
of this module is what the engine needs from that group: who this process is, the model wrapped in
DDP, and the few collectives of a run: gathering a batch whose parts differ in length (`gather_rows`,
used by `WeightedLoss` for selection over the global batch), gathering the validation shards back
into data-set order (`gather_interleaved`), sums (`all_reduce_sum`), and averaging the BatchNorm
statistics (`average_buffers`).

Every helper is a no-op (or the identity) when no process group of more than one process is
initialised, so single-process code calls them unconditionally at no cost. ``docs/distributed.md``
describes the launch, multi-node and SLURM use, and what global batch selection means.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sampleweight.errors import ConfigError

__all__ = [
    "all_reduce_sum",
    "average_buffers",
    "gather_interleaved",
    "gather_rows",
    "is_distributed",
    "is_main",
    "launched_world_size",
    "local_main_first",
    "local_rank",
    "rank",
    "session",
    "world_size",
    "wrap",
]


def launched_world_size() -> int:
    """The number of processes the launcher (``torchrun``, ``srun`` + ``torchrun``) started; 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, set by ``torchrun``): the index of its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes files and prints (global rank 0)."""
    return rank() == 0


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the process group the launcher describes, for the duration of the ``with`` block.

    Does nothing for a single process, or when the caller already initialised a group (which it then
    keeps). Otherwise initialises the default group from the environment (``env://``): NCCL when
    ``device`` is a GPU (this process's, ``cuda:LOCAL_RANK``), gloo on the CPU; and destroys it on exit.

    Args:
        device: This process's training device.

    Raises:
        ConfigError: Launched as several processes by a PyTorch without ``torch.distributed``.
    """
    if launched_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={launched_world_size()}, but this PyTorch build has no torch.distributed")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        _host_groups.clear()  # destroyed with the default group
        dist.destroy_process_group()


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each node's local rank 0 first, then on the node's other processes.

    For work that fills a cache on the node's disk (the image cache): one process builds it, the
    others then find it. A failure on the first process still releases the others (which then meet
    the same error themselves).
    """
    if not is_distributed():
        yield
        return
    first = local_rank() == 0
    if not first:
        dist.barrier()
    try:
        yield
    finally:
        if first:
            dist.barrier()


def wrap(network: nn.Module, device: torch.device) -> nn.Module:
    """``network`` in ``DistributedDataParallel`` when distributed, else ``network`` itself.

    Buffers are not synced at every forward: each process keeps its own BatchNorm statistics during
    an epoch (all start equal: the same seed, or the same checkpoint) and `average_buffers` averages
    them at its end, so that validation and the checkpoint see one model on every process.
    """
    if not is_distributed():
        return network
    ddp = nn.parallel.DistributedDataParallel
    # newer PyTorch renames broadcast_buffers to forward_sync_buffers
    no_forward_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else {"broadcast_buffers": False}
    )
    device_ids = [device.index] if device.type == "cuda" else None
    return ddp(network, device_ids=device_ids, **no_forward_sync)


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


def average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over all processes, in place.

    One collective for all of them. Integer buffers (batch counters) are left alone: every process
    ran the same number of steps.
    """
    buffers: Sequence[Tensor] = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers or not is_distributed():
        return
    flat = torch.cat([b.detach().reshape(-1).to(_comm_device(b), torch.float64) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    with torch.no_grad():
        for buffer in buffers:
            buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()


def _lengths(length: int) -> list[int]:
    """Every process's ``length``, in rank order, exchanged between the hosts (a gloo group).

    Through NCCL the lengths would travel as GPU tensors, and reading them back would make the host
    wait for everything queued on the GPU; through gloo they never touch it.
    """
    mine = torch.tensor([length], dtype=torch.long)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine, group=_host_group())
    return torch.cat(parts).tolist()


_host_groups: list[tuple[object, object]] = []  # (default group, gloo group over the same processes)


def _host_group() -> object:
    """A process group for CPU tensors: the default group when it has gloo, else a gloo group over it."""
    backend = dist.get_backend()
    if backend == "gloo" or "cpu:gloo" in backend:  # gloo alone, or gloo for CPU tensors ("cpu:gloo,cuda:nccl")
        return dist.group.WORLD
    return _gloo_group()


def _gloo_group() -> object:
    """A gloo group over the processes of the default group, made once per default group (collectively)."""
    world = dist.group.WORLD
    if not _host_groups or _host_groups[0][0] is not world:  # first use, or a new default group
        _host_groups[:] = [(world, dist.new_group(backend="gloo"))]
    return _host_groups[0][1]


def _comm_device(tensor: Tensor) -> torch.device:
    """Where the backend takes tensors: this process's GPU for NCCL, the CPU for gloo."""
    backend = dist.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if backend == "gloo":
        return torch.device("cpu")
    return tensor.device
