"""The recipes of docs/integrations.md: the Lightning and accelerate examples, on the CPU, in one process and in two
(gloo). Skipped when the optional dependencies are absent (``pip install "sampleweight[integrations]"``; the test
extra includes them, so CI runs these)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sampleweight import functional as SF

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEP = re.compile(r"^epoch (\d+) step (\d+): kept (\d+) of (\d+), loss ([\d.]+)$", re.MULTILINE)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def steps(output: str) -> list[tuple[int, int, int, int, str]]:
    return [(int(e), int(s), int(k), int(n), loss) for e, s, k, n, loss in STEP.findall(output)]


def assert_paced_over_the_global_batch(found: list, epochs: int, batch_size: int, steps_per_epoch: int) -> None:
    """Every step kept round(B * s(e)) of its global batch B, with M = the global batch size (never stated)."""
    assert [s for _, s, _, _, _ in found] == list(range(epochs * steps_per_epoch))
    pace = SF.curriculum_pace(epochs, batch_size)
    for epoch, step, kept, size, _ in found:
        assert kept == SF.curriculum_size(size, epoch, pace), (epoch, step, kept, size)
    assert {size for *_, size, _ in found} >= {batch_size}


@pytest.mark.parametrize("devices", [1, 2])
def test_lightning_recipe(devices: int) -> None:
    pytest.importorskip(
        "lightning", reason="the Lightning recipe needs lightning (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "lightning_training.py")
    output = run(sys.executable, script, "--devices", str(devices), "--epochs", "3")
    found = steps(output)
    assert_paced_over_the_global_batch(found, epochs=3, batch_size=16, steps_per_epoch=13)  # 200 samples: 12 x 16 + 8
    assert any(kept == 15 and size == 16 for epoch, _, kept, size, _ in found if epoch == 1)  # 2 x round(8 s) = 14
    # validation reuses the criterion in eval() mode: it weights nothing and counts no step
    validated = [int(n) for n in re.findall(r"validation: criterion step (\d+)", output)]
    assert validated[-3:] == [13, 26, 39]


def test_accelerate_recipe_gives_one_process_results_under_torchrun_and_notebook_launcher() -> None:
    pytest.importorskip(
        "accelerate", reason="the accelerate recipe needs accelerate (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "accelerate_training.py")
    args = ("--epochs", "2", "--samples", "110")  # 110 = 6 x 16 + 14: the last global batch is short and uneven
    one = steps(run(sys.executable, script, *args))
    assert_paced_over_the_global_batch(one, epochs=2, batch_size=16, steps_per_epoch=7)
    assert [size for *_, size, _ in one[:7]] == [16] * 6 + [14]
    torchrun = steps(run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", script, *args))
    notebook = steps(run(sys.executable, script, *args, "--notebook-launcher", "2"))
    assert torchrun == one and notebook == one  # the same kept samples and losses (printed to 6 decimals)
