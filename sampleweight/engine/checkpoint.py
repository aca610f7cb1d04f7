"""Checkpoints written atomically, and the random-number state that makes a resumed run exact."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sampleweight.errors import ConfigError, OutputError

__all__ = [
    "CheckpointWriter",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, then rename it.

    The rename is atomic on POSIX and Windows, so ``path`` always holds either the previous
    checkpoint or the new one, never a partial file (an interrupted run, a full disk). A write that
    fails removes its temporary file; one killed midway (``kill -9``) leaves it for
    `RunDirectory.acquire` to remove.

    Raises:
        OutputError: The file cannot be written (no permission, a full disk, a folder that is gone).
    """
    path = Path(path)
    with _output(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            _usual_mode(fd)
            with os.fdopen(fd, "wb") as handle:
                sink = _WriteErrors(handle)
                try:
                    torch.save(state, sink)
                except RuntimeError:  # torch reports a failed write as "unexpected pos ...": raise the cause
                    if sink.error is not None:
                        raise sink.error from None
                    raise
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _WriteErrors:
    """A binary file for ``torch.save`` that keeps the first ``OSError`` of its writes (torch replaces it)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def _output(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into an `OutputError` naming the file and the reason."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


class CheckpointWriter:
    """Writes checkpoints in a background thread, so that training goes on while one is saved.

    `submit` snapshots the state at once (tensors copied to the CPU: training may change the originals
    right after) and saves it with `save_checkpoint` (atomic) in a thread; it first waits for the
    previous save, so at most one is in flight and they land in order. `close` waits for the last one
    and re-raises its error (a full disk, say). Use it as a context manager.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: str | Path, state: dict[str, Any]) -> None:
        """Save a snapshot of ``state`` to ``path`` in the background."""
        self.wait()
        snapshot = _snapshot(state)

        def write() -> None:
            try:
                save_checkpoint(path, snapshot)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=write, name="sampleweight-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the pending save is on disk; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    close = wait

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.wait()
            return
        try:  # already unwinding (a NaN loss, Ctrl-C): let that error through, note the writer's
            self.wait()
        except BaseException as write_error:  # noqa: BLE001 - attached to the error in flight
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"also, saving the checkpoint failed: {type(write_error).__name__}: {write_error}")


def _snapshot(value: Any) -> Any:
    """A copy of a (nested) state whose tensors no longer share memory with the live ones."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):  # a shallow copy keeps the type and its extras (Counter, _metadata, ...)
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = _snapshot(item)
        return out
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_snapshot(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return copy.deepcopy(value)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (it holds RNG states, so not weights-only).

    Load on the CPU (the default) and let ``load_state_dict`` copy onto the model's device. With ``mmap`` the
    tensors are mapped from the file, not read, until used: cheap when only the config is wanted.

    Raises:
        ConfigError: The file is missing or is not a checkpoint.
    """
    try:
        state = torch.load(Path(path), map_location=map_location, weights_only=False, mmap=mmap)
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint at {path}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling errors of any kind mean "not a checkpoint"
        raise ConfigError(
            f"{path} is damaged or not a sampleweight checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())})"
            f"{_damaged_hint(Path(path))}"
        ) from None
    if not isinstance(state, dict) or not {"model", "config", "epoch"} <= set(state):
        raise ConfigError(f"{path} is not a sampleweight checkpoint (no model/config/epoch entries)")
    return state


def _damaged_hint(path: Path) -> str:
    """What to do about an unreadable checkpoint: a run directory's can be started over (the file is written
    atomically, so damage is the disk's or a copy's, and no earlier epoch is kept to resume from)."""
    if path.name != "checkpoint.pt":
        return ""
    return (
        f"; it cannot be resumed or evaluated: start the run over with sampleweight train --out {path.parent} "
        "--overwrite, or restore the file from a copy"
    )


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary file + rename)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file atomically (temporary file + rename).

    Raises:
        OutputError: The file cannot be written (no permission, a full disk, a folder that is gone).
    """
    path = Path(path)
    with _output(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            _usual_mode(fd)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: os.umask is process-wide, and writes happen in background threads


def _usual_mode(fd: int) -> None:
    """Give a file from `tempfile.mkstemp` (always 0600) the mode ``open`` would: 0666 less the umask."""
    with contextlib.suppress(OSError, AttributeError):  # a file system without modes, or no fchmod (Windows)
        os.fchmod(fd, 0o666 & ~_UMASK)


def capture_rng() -> dict[str, Any]:
    """The state of every random-number generator a training step may touch."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what `capture_rng` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    # RNG states are CPU byte tensors whatever map_location the checkpoint was loaded with.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
