"""Decode, colour-normalise and resize every image once, into a memory-mapped uint8 cache on disk.

Decoding JPEGs is the slow part of a data pipeline (a few hundred 299x299 images per second per core);
training reads each image once per epoch for hundreds of epochs. `prepare_cache` therefore runs
`preprocess_image` once per image, in a thread pool (Pillow and numpy release the GIL), into a numpy
``.npy`` file ``[N, 3, S, S]`` (channels first, what torch models take) that training then memory-maps:
a batch is one contiguous copy per image, no decoding and no transposing.

Where: ``cache_dir`` if given, else ``$SAMPLEWEIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sampleweight``,
else ``~/.cache/sampleweight`` (`default_cache_dir`); never beside the data, which may be read-only.

Key: a SHA-256 of the preprocessing (cache format version, image size, colour constancy on/off and its
p, resampling) and of every source file in record order (image id, absolute path, size in bytes,
modification time in ns). Any change, a re-downloaded image, another subset of records, another size,
gives another key and so another file: a stale cache is never read. The file name carries the layout,
the size and the key (``ham10000-299px-<key>.npy``), with a JSON sidecar describing it.

Writes are atomic: the array is filled in a temporary file in the same folder, then ``os.replace``-d into
place, so an interrupted build leaves no half-written cache (at most a ``.tmp`` file, removed on error).

Images that cannot be decoded are a `DataError` naming them, raised after the cache is written (so that
a rerun with ``skip_bad=True`` reuses it and only leaves those images out).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampleweight.data.colour import shades_of_gray
from sampleweight.data.layouts import read_dataset
from sampleweight.data.records import DatasetRecords
from sampleweight.data.transforms import preprocess_image
from sampleweight.errors import ConfigError, DataError

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_VERSION",
    "CachedImages",
    "PrepareSummary",
    "cache_key",
    "default_cache_dir",
    "prepare",
    "prepare_cache",
    "remove_dead_leftovers",
]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "SAMPLEWEIGHT_CACHE_DIR"
"""Environment variable naming the cache folder."""

CACHE_VERSION = 1
"""Bumped whenever the preprocessing changes what is stored: old caches are then not reused."""

_RESAMPLE = "bicubic"
_CHUNK = 32  # images per thread-pool task


def default_cache_dir() -> Path:
    """The cache folder: ``$SAMPLEWEIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sampleweight``, else
    ``~/.cache/sampleweight``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sampleweight"
    return Path.home() / ".cache" / "sampleweight"


@dataclass(frozen=True, eq=False)
class CachedImages:
    """The preprocessed images of a data set, one per record, and where they came from.

    Attributes:
        images: uint8 ``[N, 3, S, S]`` (channels first): a read-only memory map of the cache file, or an
            in-memory array for in-memory data (synthetic).
        path: The cache file, or None for in-memory data.
        key: The cache key (hex), or None for in-memory data.
        reused: True when an existing cache was opened rather than built.
        seconds: Time taken to build or open it.
        bad: Record indices of images that could not be decoded (stored as zeros).
        bad_reasons: One message per entry of ``bad``.
    """

    images: np.ndarray
    path: Path | None
    key: str | None
    reused: bool
    seconds: float
    bad: tuple[int, ...] = ()
    bad_reasons: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        """Side S of the cached images."""
        return int(self.images.shape[-1])


def _real_path_resolver() -> Callable[[str | os.PathLike[str]], str]:
    """``Path(p).resolve()`` as a string, resolving each folder once (most images share a few folders).

    A path whose last part is a link is resolved whole; otherwise its folder is (symlinks, ``..`` and
    relative folders included) and the name appended, which names the same file.
    """
    real_folder = functools.lru_cache(maxsize=None)(os.path.realpath)

    def real_path(path: str | os.PathLike[str]) -> str:
        folder, name = os.path.split(os.fspath(path))
        if not name or name in (".", "..") or os.path.islink(path):
            return os.path.realpath(path)
        return os.path.join(real_folder(folder or os.curdir), name)

    return real_path


def cache_key(
    records: DatasetRecords, image_size: int, *, colour_constancy: bool = True, minkowski_p: float = 6.0
) -> str:
    """The hex SHA-256 that names the cache of ``records`` preprocessed with these parameters.

    Args:
        records: Records whose images live in files (not synthetic).
        image_size: Side of the cached images.
        colour_constancy: Whether Shades of Gray is applied.
        minkowski_p: Its norm (ignored when ``colour_constancy`` is off).

    Returns:
        64 hex digits; changes with any parameter and with any file's path, size or modification time.

    Raises:
        DataError: A file has disappeared since the records were read.
    """
    if records.paths is None:
        raise ConfigError(f"{records.layout} records are generated in memory and have no cache")
    digest = hashlib.sha256()
    params = {
        "version": CACHE_VERSION,
        "image_size": int(image_size),
        "colour_constancy": bool(colour_constancy),
        "minkowski_p": float(minkowski_p) if colour_constancy else None,
        "resample": _RESAMPLE,
        "layout": "NCHW-uint8",
    }
    digest.update(json.dumps(params, sort_keys=True).encode())
    missing = []
    real_path = _real_path_resolver()
    for image_id, path in zip(records.image_ids, records.paths, strict=True):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            missing.append(str(path))
            continue
        digest.update(f"\n{image_id}\t{real_path(path)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} image file(s) disappeared since the data set was read: {shown}")
    return digest.hexdigest()


def prepare_cache(
    records: DatasetRecords,
    image_size: int = 299,
    *,
    cache_dir: str | Path | None = None,
    colour_constancy: bool = True,
    minkowski_p: float = 6.0,
    workers: int | None = None,
    progress: bool = True,
    skip_bad: bool = False,
    force: bool = False,
) -> CachedImages:
    """Build (or reuse) the preprocessed-image cache of ``records``.

    For records in files this decodes each image once with `preprocess_image`, in ``workers`` threads,
    into a memory-mapped ``.npy`` under ``cache_dir`` (see the module docs for the key and location), or
    opens the existing one. For in-memory records (synthetic) nothing is written: the images are rendered
    at ``image_size`` (and colour-normalised if asked) and returned in memory.

    Args:
        records: The data set (`read_dataset`).
        image_size: Side S of the stored images (299 in the paper).
        cache_dir: Cache folder; default `default_cache_dir()`.
        colour_constancy: Apply Shades of Gray before resizing.
        minkowski_p: Its Minkowski norm (6 in the paper).
        workers: Decoding threads; default the number of CPUs (at most 16).
        progress: Show a rich progress bar while building.
        skip_bad: Do not raise for images that cannot be decoded; they are listed in ``bad`` (and logged)
            and `build_datasets` leaves them out.
        force: Rebuild even when a valid cache exists.

    Returns:
        `CachedImages` with the uint8 ``[N, 3, S, S]`` images in record order.

    Raises:
        DataError: Images that cannot be decoded (named, first few and a count), unless ``skip_bad``; not
            enough disk space (with the fix).

    Example:
        >>> from sampleweight.data import read_dataset
        >>> cached = prepare_cache(read_dataset("synthetic:100"), 32)
        >>> cached.images.shape, cached.path
        ((100, 3, 32, 32), None)
    """
    start = time.perf_counter()
    size = int(image_size)
    if isinstance(image_size, bool) or size != image_size or size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}")
    if records.render is not None:
        images = records.render(size)
        if colour_constancy:  # in place, about 2M pixels at a time (bounded temporaries)
            step = max(1, (1 << 21) // (size * size))
            for first in range(0, len(images), step):
                images[first : first + step] = shades_of_gray(images[first : first + step], minkowski_p)
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        images.flags.writeable = False
        return CachedImages(images, None, None, False, time.perf_counter() - start)

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(records, size, colour_constancy=colour_constancy, minkowski_p=minkowski_p)
    stem = f"{records.layout}-{size}px-{key[:24]}"
    path, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    shape = (len(records), 3, size, size)
    remove_dead_leftovers(folder)
    meta = None if force else _open_existing(path, meta_path, key, shape)
    reused = meta is not None
    if meta is None:
        meta = _build(records, path, meta_path, key, shape, colour_constancy, minkowski_p, workers, progress)
    images = np.load(path, mmap_mode="r")
    bad = tuple(int(entry["index"]) for entry in meta["bad"])
    reasons = tuple(str(entry["reason"]) for entry in meta["bad"])
    seconds = time.perf_counter() - start
    log.info(
        "cache: %s %s (%d images at %dpx, %.0f MB) in %.1f s",
        "reused" if reused else "built",
        path,
        len(records),
        size,
        path.stat().st_size / 1e6,
        seconds,
    )
    if bad:
        shown = "\n  ".join(reasons[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        if not skip_bad:
            raise DataError(
                f"{len(bad)} image(s) could not be decoded:\n  {shown}\n"
                "Fix: replace these files (re-download them), or pass skip_bad=True (CLI: --skip-bad) to leave "
                "them out; what is skipped is reported."
            )
        log.warning("cache: %d image(s) could not be decoded and will be left out (skip_bad):\n  %s", len(bad), shown)
    return CachedImages(images, path, key, reused, seconds, bad, reasons)


def _open_existing(path: Path, meta_path: Path, key: str, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The sidecar of a complete cache with this key and shape, or None (then it is rebuilt)."""
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        log.warning("cache: %s is unreadable (%s); rebuilding it", path, err)
        return None
    if meta.get("key") != key or tuple(array.shape) != shape or array.dtype != np.uint8:
        log.warning("cache: %s does not match its key or shape; rebuilding it", path)
        return None
    return meta


def _build(
    records: DatasetRecords,
    path: Path,
    meta_path: Path,
    key: str,
    shape: tuple[int, ...],
    colour_constancy: bool,
    minkowski_p: float,
    workers: int | None,
    progress: bool,
) -> dict[str, Any]:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the cache folder {folder}: {err}. Set {CACHE_DIR_ENV} (or --cache-dir) to a "
            "writable folder."
        ) from None
    needed = int(np.prod(shape))
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + (64 << 20):
        raise DataError(
            f"not enough disk space for the image cache in {folder}: it needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free. Set {CACHE_DIR_ENV} (or --cache-dir) to a larger disk, or use a "
            "smaller --image-size."
        )
    num_workers = max(1, min(16, workers if workers is not None else (os.cpu_count() or 1)))
    start = time.perf_counter()
    bad: list[dict[str, Any]] = []
    paths = records.paths
    assert paths is not None
    with _temporary(folder, path.name) as tmp:
        _fill(tmp, records.image_ids, paths, shape, colour_constancy, minkowski_p, num_workers, progress, bad)
        bad.sort(key=lambda entry: entry["index"])
        meta = {
            "key": key,
            "version": CACHE_VERSION,
            "layout": records.layout,
            "root": str(records.root),
            "source": records.source,
            "num_images": shape[0],
            "image_size": shape[-1],
            "colour_constancy": colour_constancy,
            "minkowski_p": minkowski_p if colour_constancy else None,
            "resample": _RESAMPLE,
            "classes": list(records.classes),
            "build_seconds": round(time.perf_counter() - start, 3),
            "workers": num_workers,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "bad": bad,
        }
        _write_atomic(meta_path, json.dumps(meta, indent=1).encode())
        os.replace(tmp, path)
    return meta


def _fill(
    tmp: Path,
    image_ids: tuple[str, ...],
    paths: tuple[Path, ...],
    shape: tuple[int, ...],
    colour_constancy: bool,
    minkowski_p: float,
    num_workers: int,
    progress: bool,
    bad: list[dict[str, Any]],
) -> None:
    """Preprocess every image into a new .npy memory map at ``tmp``; undecodable ones become zeros in ``bad``."""
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    lock = threading.Lock()

    def work(chunk_start: int) -> int:
        stop = min(chunk_start + _CHUNK, shape[0])
        for i in range(chunk_start, stop):
            try:
                image = preprocess_image(
                    paths[i], shape[-1], colour_constancy=colour_constancy, minkowski_p=minkowski_p
                )
                array[i] = image.transpose(2, 0, 1)
            except DataError as err:
                array[i] = 0
                with lock:
                    bad.append({"index": i, "image_id": image_ids[i], "reason": str(err)})
        return stop - chunk_start

    with _progress_bar(progress, f"Caching {shape[0]} images at {shape[-1]}px", shape[0]) as advance:
        if num_workers == 1:
            for chunk_start in range(0, shape[0], _CHUNK):
                advance(work(chunk_start))
        else:
            with ThreadPoolExecutor(num_workers, thread_name_prefix="sampleweight-cache") as pool:
                for done in pool.map(work, range(0, shape[0], _CHUNK)):
                    advance(done)
    array.flush()  # the memory map closes when ``array`` goes out of scope, before os.replace


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
"""This machine's name as a temporary file carries it: a cache folder may be shared by machines (NFS), and a
process id means something only on the machine that wrote it."""
_LEFTOVER = re.compile(r"\.(?P<name>.+\.(?:npy|json))\.(?:(?P<host>[A-Za-z0-9-]+)\.)?(?P<pid>\d+)\.\d+\.tmp")


def remove_dead_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files in the cache ``folder`` that a process killed midway left (``kill -9`` during a
    build leaves a ``.NAME.HOST.PID.THREAD.tmp`` as large as the cache): those written on this machine by a
    process that is gone. A live process's file (a build under way) and another machine's are kept.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(folder.glob(".*.tmp"))
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if match is None or match["host"] not in (None, _HOST) or _alive(int(match["pid"])):
            continue  # (None: written before temporary files named their machine)
        with suppress(OSError):
            entry.unlink()
            removed.append(entry)
            log.info("cache: removed %s, left by process %s, which is gone", entry, match["pid"])
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user's counts)."""
    if pid <= 0:
        return True  # not a process id: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, and is another user's
        return True
    return True


@contextmanager
def _temporary(folder: Path, name: str) -> Iterator[Path]:
    """A temporary file path in ``folder`` (same file system, so os.replace is atomic), removed on error; its name
    says which machine and process write it (`remove_dead_leftovers`)."""
    tmp = folder / f".{name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_atomic(path: Path, data: bytes) -> None:
    with _temporary(path.parent, path.name) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


@contextmanager
def _progress_bar(enabled: bool, description: str, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# ----------------------------------------------------------------------------------------------- CLI entry


@dataclass(frozen=True)
class PrepareSummary:
    """What `prepare` did.

    Attributes:
        layout: The data layout found.
        source: The ``data`` argument.
        num_images: Images in the data set (after ``skip_bad`` row skips).
        classes: Class names, in index order.
        class_counts: Images per class (multilabel: images with each label).
        image_size: Side of the cached images.
        path: The cache file (None for in-memory data such as synthetic).
        size_mb: Its size in MB (0 for in-memory data).
        seconds: Wall time of reading and caching.
        reused: Whether an existing cache was reused.
        skipped: What was left out (rows and undecodable images), one line each.
        multilabel: Whether each image holds several labels (``classes`` are the labels).
    """

    layout: str
    source: str
    num_images: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    image_size: int
    path: Path | None
    size_mb: float
    seconds: float
    reused: bool
    skipped: tuple[str, ...] = ()
    multilabel: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        out = asdict(self)
        out["path"] = None if self.path is None else str(self.path)
        out["classes"], out["class_counts"], out["skipped"] = (
            list(self.classes),
            list(self.class_counts),
            list(self.skipped),
        )
        return out


def prepare(
    data: str | Path,
    image_size: int = 299,
    cache_dir: str | Path | None = None,
    *,
    colour_constancy: bool = True,
    minkowski_p: float = 6.0,
    workers: int | None = None,
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
    subset: str | None = None,
) -> PrepareSummary:
    """Read a data set and build (or reuse) its image cache: what ``sampleweight prepare`` runs.

    Args:
        data: What ``--data`` takes: a data set folder or CSV, or ``synthetic[:N]``.
        image_size: Side of the cached images.
        cache_dir: Cache folder; default `default_cache_dir()`.
        colour_constancy: Apply Shades of Gray (p = ``minkowski_p``).
        minkowski_p: Minkowski norm of Shades of Gray.
        workers: Decoding threads (default: all CPUs).
        skip_bad: Leave out bad rows and undecodable images, reporting them, instead of raising.
        force: Rebuild even if a valid cache exists.
        progress: Show a progress bar.
        subset: ISIC 2018 subset (``training``, ``validation``, ``test``); see `read_dataset`.

    Returns:
        `PrepareSummary` (``to_dict()`` for JSON).

    Raises:
        DataError: The data set cannot be read or images cannot be decoded (without ``skip_bad``).
    """
    start = time.perf_counter()
    records = read_dataset(data, skip_bad=skip_bad, subset=subset)
    cached = prepare_cache(
        records,
        image_size,
        cache_dir=cache_dir,
        colour_constancy=colour_constancy,
        minkowski_p=minkowski_p,
        workers=workers,
        progress=progress,
        skip_bad=skip_bad,
        force=force,
    )
    return PrepareSummary(
        layout=records.layout,
        source=str(data),
        num_images=len(records),
        classes=records.classes,
        class_counts=tuple(int(n) for n in records.class_counts()[1 if records.multilabel else slice(None)].tolist()),
        image_size=cached.image_size,
        path=cached.path,
        size_mb=round(cached.path.stat().st_size / 1e6, 1) if cached.path is not None else 0.0,
        seconds=round(time.perf_counter() - start, 3),
        reused=cached.reused,
        skipped=records.skipped + cached.bad_reasons,
        multilabel=records.multilabel,
    )
