"""One writer per output folder: an operating-system lock on a file inside it.

`FolderLock` takes a POSIX record lock (``fcntl.lockf``; ``msvcrt.locking`` on Windows) on ``FOLDER/.lock``
and writes its pid, host and start time into that file, so that a process refused the folder can name the
holder. The kernel drops the lock when its process ends in any way (normal exit, ``kill -9``, a crash, a
lost node on a shared filesystem that supports locks), so a lock never goes stale the way a PID file does:
what a killed run leaves behind is an unlocked file that the next run simply takes.

POSIX record locks belong to the process, not to its file descriptors, so the loader worker processes a
run forks neither inherit nor keep its lock (a killed run's folder is free at once). They do not exclude
other threads of the same process, so the folders this process holds are also kept in a set.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

from sampleweight.errors import RunDirectoryInUseError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["LOCK_FILE", "FolderLock"]

LOCK_FILE = ".lock"
"""Name of the lock file inside the locked folder (removed when the holder releases it)."""

_BUSY = (errno.EACCES, errno.EAGAIN, getattr(errno, "EDEADLK", errno.EAGAIN))
_held: dict[str, str] = {}  # real path of a folder this process holds -> its holder line
_held_guard = threading.Lock()


class FolderLock:
    """The lock that makes one process the only writer of ``folder``.

    Args:
        folder: An existing folder.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with FolderLock(folder):
        ...     try:
        ...         FolderLock(folder).acquire()
        ...     except RunDirectoryInUseError as error:
        ...         print("refused; held by", error.holder.split()[0], "...")
        refused; held by pid ...
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._key = os.path.realpath(self.folder)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            RunDirectoryInUseError: Another process (or another run in this one) holds the folder; the
                message names the folder and the holder.
        """
        if self._fd is not None:
            return
        with _held_guard:
            if self._key in _held:  # never open the file here: closing it would drop this process's lock
                raise _in_use(self.folder, _held[self._key])
            fd = self._lock_file()
            holder = _holder_record()
            _held[self._key] = _describe(holder)
        self._fd = fd
        with contextlib.suppress(OSError):  # who holds it is for the messages of others: best effort
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(holder).encode() + b"\n")

    def release(self) -> None:
        """Give the folder up (removing the lock file); nothing happens when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Remove first: a process that opened the file before this tolerates it (see _lock_file). A folder
        # that became unwritable keeps the file; the kernel still drops the lock below.
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        try:
            os.close(fd)  # releases the record lock
        finally:
            with _held_guard:
                _held.pop(self._key, None)

    def _lock_file(self) -> int:
        """An open descriptor of the lock file, locked by this process."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
            except OSError as exc:  # the filesystem offers no locks (some network mounts)
                warnings.warn(
                    f"cannot lock {self.folder} ({exc.strerror or exc}): this filesystem offers no file locks, "
                    "so nothing stops a second run from writing into the same folder",
                    stacklevel=4,
                )
                return fd
            if not locked:
                holder = _read_holder(fd)
                os.close(fd)
                raise _in_use(self.folder, holder)
            try:  # the holder removes the file when it releases: the descriptor must still be the file
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                return fd
            os.close(fd)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    """Lock the whole file without waiting: True if locked, False if another process holds it."""
    try:
        if fcntl is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in _BUSY or isinstance(exc, BlockingIOError):
            return False
        raise
    return True


def _holder_record() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }


def _read_holder(fd: int) -> str | None:
    """The holder line of a lock file held by another process (None when it has not written it yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 65536) or b"null")
    except (OSError, ValueError):
        return None
    return _describe(record) if isinstance(record, dict) else None


def _describe(record: dict[str, object]) -> str:
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} since {record.get('since', '?')}"


def _in_use(folder: Path, holder: str | None) -> RunDirectoryInUseError:
    who = f"process {holder}" if holder else "process (it has not said which yet)"
    return RunDirectoryInUseError(
        f"{folder} is in use by another sampleweight {who}; wait for it to end, or choose another --out",
        folder=str(folder),
        holder=holder,
    )
