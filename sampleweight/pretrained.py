"""Pretrained weights of a timm model: where they come from, and failing in seconds when they cannot be had.

timm downloads weights through ``huggingface_hub``, which retries a host it cannot reach with growing
pauses: about 46 s for VGG16 on a machine without internet, before an error that names neither the
model nor the fix. `weights_available` looks first: weights in the local cache load with no network
request at all; otherwise one short connection to the weights' host decides, and an unreachable host
is a `ConfigError` at once, saying how to provide the weights offline.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from sampleweight.errors import ConfigError

__all__ = ["PROBE_TIMEOUT", "download_message", "weights_available"]

PROBE_TIMEOUT = 5.0
"""Seconds one connection to the weights' host may take before the host counts as unreachable."""

HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a Hub repository, in order


@contextlib.contextmanager
def weights_available(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Around ``timm.create_model(name, pretrained=True)``: raise at once when the weights cannot be had.

    - Weights in the local cache (the Hugging Face cache, or torch.hub's for URL weights): the block
      runs, with the Hub in offline mode when its host cannot be reached (no retries before the cache).
    - Not cached, and the host unreachable (one connection of at most `PROBE_TIMEOUT` seconds, skipped
      behind a proxy, which only a real request can test), or ``HF_HUB_OFFLINE`` set: a `ConfigError`.
    - Otherwise the block runs and downloads as usual.

    Args:
        name: A timm model name (``"vgg16"``, ``"vgg16.tv_in1k"``).
        cache_dir: The ``cache_dir`` given to ``timm.create_model``, if any (default: the Hub's / torch.hub's).

    Raises:
        ConfigError: The weights are not cached and their host cannot be reached (`download_message`).
    """
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or cfg.file or cfg.state_dict or not (cfg.hf_hub_id or cfg.url):
        yield  # local weights, or none at all: timm says which
        return
    hub_id, url = cfg.hf_hub_id, cfg.url or ""  # url is set when hub_id is not (checked above)
    cached = _hub_cached(hub_id, cfg.hf_hub_filename, cache_dir) if hub_id else _url_cached(url, cache_dir)
    if hub_id and _hub_constants().HF_HUB_OFFLINE:  # the Hub reads its cache by itself, or fails at once
        if not cached:
            raise ConfigError(download_message(name, "HF_HUB_OFFLINE is set and they are not in the cache"))
        yield
        return
    reason = _unreachable(_hub_constants().ENDPOINT if hub_id else _url_and_filename(url)[0])
    if reason is not None and not cached:
        raise ConfigError(download_message(name, reason))
    with _hub_offline() if reason is not None and hub_id else contextlib.nullcontext():
        yield  # a cached copy, without retrying an unreachable host first; or the download as usual


def download_message(name: str, error: BaseException | str) -> str:
    """What to do when the weights of ``name`` cannot be downloaded, with the reason."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    source = cfg and (f"Hugging Face Hub {cfg.hf_hub_id!r}" if cfg.hf_hub_id else cfg.url)
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return (
        f"could not download the pretrained weights of backbone {name!r}"
        f"{f' from {source}' if source else ''} ({reason}). Without internet, either pass a local state "
        f"dict of the timm model {name!r} with pretrained_path='weights.safetensors' (CLI --pretrained-path), "
        f"or fill the Hugging Face cache (HF_HOME) by running timm.create_model({name!r}, pretrained=True) "
        f"on a machine with internet and copying the cache, or train from scratch with pretrained=False "
        f"(CLI --no-pretrained)"
    )


def _unreachable(url: str) -> str | None:
    """Why the host of ``url`` cannot be reached (one connection attempt), or None when it can (or a proxy decides)."""
    if urllib.request.getproxies():
        return None
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    if not host:
        return None
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc.strerror or exc}"


def _hub_constants() -> Any:  # the module huggingface_hub.constants, read at call time: tests point it elsewhere
    from huggingface_hub import constants

    return constants


def _hub_cached(repo_id: str, filename: str | None, cache_dir: str | os.PathLike[str] | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hub_cache = None if cache_dir is None else os.fspath(cache_dir)  # the Hub's signature takes str | Path
    for candidate in (filename,) if filename else HUB_FILES:
        if isinstance(try_to_load_from_cache(repo_id, candidate, cache_dir=hub_cache), str):
            return True
    return False


def _url_and_filename(url: str | tuple[str, str]) -> tuple[str, str]:
    """A timm ``pretrained_cfg.url`` (a URL, or ``(url, filename)``) as the URL and the cached file's name."""
    if isinstance(url, tuple):
        return url
    return url, os.path.basename(urllib.parse.urlsplit(url).path)


def _url_cached(url: str | tuple[str, str], cache_dir: str | os.PathLike[str] | None) -> bool:
    import torch.hub

    _, filename = _url_and_filename(url)
    folder = cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    return bool(filename) and os.path.isfile(os.path.join(folder, filename))


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    constants = _hub_constants()
    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous
