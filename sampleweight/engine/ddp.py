"""One run on several processes: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc-per-node N -m sampleweight train ...`` starts N processes and describes them in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); `session`
joins them into one process group (NCCL on GPUs, gloo on the CPU) for the duration of a run. The rest
of this module is what the engine needs from that group beyond the library's collectives
(`sampleweight.distributed`): who this process is on its node, the model wrapped in DDP, the BatchNorm
statistics averaged, and node-local ordering for the image cache.

Every helper is a no-op (or the identity) when no process group of more than one process is
initialised. ``docs/distributed.md`` describes the launch, multi-node and SLURM use.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from sampleweight.distributed import all_reduce_sum, forget_host_group, is_distributed, rank
from sampleweight.errors import ConfigError

__all__ = [
    "average_buffers",
    "is_main",
    "launched_world_size",
    "local_main_first",
    "local_rank",
    "session",
    "wrap",
]


def launched_world_size() -> int:
    """The number of processes the launcher (``torchrun``, ``srun`` + ``torchrun``) started; 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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
        forget_host_group()  # destroyed with the default group
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


def average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over all processes, in place.

    One collective for all of them. Integer buffers (batch counters) are left alone: every process
    ran the same number of steps.
    """
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers or not is_distributed():
        return
    flat = all_reduce_sum(torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers]))
    flat /= dist.get_world_size()
    offset = 0
    with torch.no_grad():
        for buffer in buffers:
            buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()
