"""Shared fixtures: a fresh plugin registry per test, and plugins mounted through real entry points."""

from __future__ import annotations

import contextlib
import functools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from sampleweight import plugins


@pytest.fixture
def registry() -> plugins.Registry:
    """A fresh registry loaded from the installed entry points (the built-ins), not the cached one."""
    return plugins.load_plugins(disabled=(), register_timm=False)


@pytest.fixture
def interrupt_after_epoch(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``interrupt_after_epoch(k)``: training raises KeyboardInterrupt (as Ctrl-C would) once epoch ``k`` has
    ended, its checkpoint submitted. ``monkeypatch.undo()`` lets the next run go through."""
    from sampleweight.engine import progress

    original = progress.TrainingProgress.end_epoch

    def arm(stop: int) -> None:
        def end_epoch(self, epoch, record):
            original(self, epoch, record)
            if epoch == stop:
                raise KeyboardInterrupt

        monkeypatch.setattr(progress.TrainingProgress, "end_epoch", end_epoch)

    return arm


@pytest.fixture
def mount_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Make a distribution with ``sampleweight`` entry points importable without ``pip install``.

    ``mount_plugin(dist, version, entry_points={name: "module"}, modules={"module": "source"},
    path=None)`` writes ``dist-version.dist-info`` (METADATA + entry_points.txt) and the modules into a
    folder on ``sys.path``; ``importlib.metadata`` then finds the entry points as if installed. The
    process-wide registry is reset before and after, so the next lookup sees the new plugins.
    """
    added: list[str] = []
    plugins.set_registry(None)

    def mount(
        dist: str,
        version: str = "1.0",
        entry_points: dict[str, str] | None = None,
        modules: dict[str, str] | None = None,
        path: Path | None = None,
    ) -> Path:
        root = tmp_path / f"site-{dist}"
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{name} = {target}" for name, target in (entry_points or {}).items())
        (info / "entry_points.txt").write_text(f"[sampleweight]\n{lines}\n")
        for module, source in (modules or {}).items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        for folder in (root, path):
            if folder is not None:
                monkeypatch.syspath_prepend(str(folder))
                added.append(str(folder))
        return root

    yield mount
    for name in [m for m in sys.modules if m.startswith(("sw_test_", "sampleweight_isqrt"))]:
        del sys.modules[name]
    plugins.set_registry(None)


# What makes the host wait for the device (on CUDA), as Python sees it.
SYNCING_METHODS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__")
SYNCING_FUNCTIONS = ("nonzero", "unique", "masked_select", "argwhere")


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], contextlib.AbstractContextManager[list[str]]]:
    """``with host_reads() as calls:`` records every call that would read a tensor on the host (wait for a GPU)."""
    return functools.partial(_recording_host_reads, monkeypatch)


@contextlib.contextmanager
def _recording_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []

    def recording(original, name: str):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        return wrapper

    with monkeypatch.context() as patch:
        for owner, names in ((torch.Tensor, SYNCING_METHODS), (torch, SYNCING_FUNCTIONS)):
            for name in names:
                patch.setattr(owner, name, recording(getattr(owner, name), name))
        yield calls
