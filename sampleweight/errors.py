"""Errors a user can act on, and where warnings point.

Every error raised because of user input (a bad option, a bad plugin, a bad data set) derives from
`SampleWeightError`. The CLI turns these into one red line on stderr and exit code 2; anything else
is a bug and keeps its traceback. A warning points at the user's line (`user_stacklevel`), not at ours.
"""

from __future__ import annotations

import sys
import traceback
from types import FrameType


class SampleWeightError(Exception):
    """Base class of all errors caused by user input; the message says what is wrong and how to fix it."""


class ConfigError(SampleWeightError, ValueError):
    """An option or configuration value is invalid (unknown name, wrong type, missing fact)."""


class RunDirectoryInUseError(ConfigError):
    """Another process is writing into the run directory (or evaluate's output folder) given as ``--out``.

    Attributes:
        folder: The folder.
        holder: Who holds it, as recorded by its holder (``pid 4711 on node7 since 2025-01-31 12:00:03``),
            or None when unknown.
    """

    def __init__(self, message: str, *, folder: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.folder, self.holder = folder, holder


class OutputError(SampleWeightError):
    """An output file could not be written while running: the folder stopped being writable, vanished, or filled up."""


class PluginError(SampleWeightError):
    """A plugin could not be loaded or registered something invalid (e.g. a duplicate name)."""


class WeightError(SampleWeightError, ValueError):
    """A weighter failed on a batch: it returned weights that are not a finite, non-negative vector with one
    entry per sample, or it raised (the original exception is then this error's ``__cause__``).

    Attributes:
        epoch: The epoch of the bad batch, when known.
        step: Its global step (`WeightedLoss.step`: batches weighted before it, over all epochs), when known.
        weighter: The weighter's name, when known.
        problem: What went wrong, without where (``returned negative weights; weights must be >= 0``), when
            known: the training engine says where in its own terms (epochs counted from 1, as its progress).
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        weighter: str | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step
        self.weighter, self.problem = weighter, problem


class LossError(SampleWeightError, ValueError):
    """A loss returned something that is not one finite loss per sample, or the training loss is not finite."""


class DataError(SampleWeightError, ValueError):
    """A data set is missing, malformed or inconsistent (missing images, unknown labels, empty classes)."""


def describe(exc: BaseException) -> str:
    """``ExcType: message`` plus where it was raised (the last frame), for a one-line report."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside sampleweight.

    Call it in the ``warnings.warn`` call itself: ``warnings.warn(message, stacklevel=user_stacklevel())``.
    The warning then points at the user's code (their ``import sampleweight``, ``sw.create_weighter(...)``
    or ``sw.WeightedLoss(...)`` line), however deep in the library it was raised. Import machinery frames
    are skipped, as `warnings.warn` skips them.

    Example:
        >>> import warnings
        >>> def warn_if_negative(value: float) -> None:  # in a sampleweight module
        ...     if value < 0:
        ...         warnings.warn(f"{value} < 0", stacklevel=user_stacklevel())
    """
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        filename = frame.f_code.co_filename
        if not ("importlib" in filename and "_bootstrap" in filename):
            module = frame.f_globals.get("__name__", "")
            if module != "sampleweight" and not module.startswith("sampleweight."):
                return level
            level += 1
        frame = frame.f_back
    return level
