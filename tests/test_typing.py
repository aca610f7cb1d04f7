"""The core package type-checks: mypy, configured in pyproject.toml ([tool.mypy]), finds no error."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy_cache_dir() -> str:
    """Outside the repository (which may be read-only), one per user, kept between runs: a cold cache takes
    about 20 s (mostly torch's annotations), a warm one about a second. ``MYPY_CACHE_DIR`` overrides it."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return os.environ.get("MYPY_CACHE_DIR") or str(Path(tempfile.gettempdir()) / f"sampleweight-mypy-{user}")


def test_the_core_package_is_marked_typed() -> None:
    assert (ROOT / "sampleweight" / "py.typed").is_file()  # PEP 561: users' type checkers read our annotations


def test_mypy_finds_no_type_error_in_the_core_package() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra: pip install -e '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", _mypy_cache_dir()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mypy failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
