"""The Python blocks of the how-to pages run as written: each page's blocks, in order, as one script."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# page -> (what it needs installed, folders its snippets import from)
PAGES = {
    "plugins.md": ((), [ROOT / "examples" / "third_party_plugin"]),  # the "your plugin" of the page
    "integrations.md": (("lightning", "accelerate", "transformers"), []),
    "mixing.md": ((), []),
    "tasks.md": ((), []),
}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_python_blocks_of_a_page_run(page: str, tmp_path: Path) -> None:
    needs, paths = PAGES[page]
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"docs/{page} needs {', '.join(missing)} (pip install sampleweight[integrations])")
    blocks = BLOCK.findall((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} has no Python block"
    script = tmp_path / f"{page}.py"
    script.write_text("\n".join(blocks))
    # this source tree first: the page documents the code beside it, whichever checkout is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, *paths])), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, f"docs/{page}:\n{result.stderr[-4000:]}"
