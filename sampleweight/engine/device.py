"""Where a run computes: the device it names (CUDA by default when there is one) and its mixed precision."""

from __future__ import annotations

import contextlib

import torch

from sampleweight.engine import ddp
from sampleweight.errors import ConfigError

__all__ = ["autocast_for", "resolve_device"]


def resolve_device(name: str | None) -> torch.device:
    """``name`` as a device; default CUDA when available. An unavailable device is a `ConfigError`.

    Under a launcher of several processes (``torchrun``), ``cuda`` (with or without an index) is this
    process's GPU, ``cuda:LOCAL_RANK``.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
        if ddp.launched_world_size() > 1:  # torchrun: one GPU per process, by its rank on the node
            device = torch.device("cuda", ddp.local_rank())
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device} ({name!r}): only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def autocast_for(device: torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
