"""Keep the project honest: CI runs README's test command, every hook is documented, examples run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from sampleweight import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    command = ci_lines[-1]
    assert "pytest" in command
    assert f"```bash\n{command}\n```" in readme


def test_every_hookspec_is_documented_and_tested() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert hooks == [
        "register_losses",
        "register_mixers",
        "register_models",
        "register_optimizers",
        "register_samplers",
        "register_weighters",
    ]
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_meta.py")
    for hook in hooks:
        assert re.search(rf"def {hook}\(register\)", docs), f"{hook} is not documented in docs/plugins.md"
        assert hook in tests, f"{hook} has no test"


def test_custom_training_loop_example_runs_and_learns() -> None:
    spec = importlib.util.spec_from_file_location("custom_training_loop", ROOT / "examples" / "custom_training_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    balanced_accuracy = module.train("ohem+es", epochs=3)
    assert 1 / 7 < balanced_accuracy <= 1.0  # better than chance after three epochs
