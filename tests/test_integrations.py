"""The recipes of docs/integrations.md: the Lightning, accelerate and Hugging Face Trainer examples, on the CPU, in one
process and in two (gloo). Skipped when the optional dependencies are absent
(``pip install "sampleweight[integrations]"``; the test extra includes them, so CI runs these)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sampleweight as sw
from sampleweight import functional as SF

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEP = re.compile(r"^epoch (\d+) step (\d+): kept (\d+) of (\d+), loss ([\d.]+)$", re.MULTILINE)
PART = re.compile(r"^rank (\d+) epoch (\d+) batch (\d+): samples ([\d ]+)$", re.MULTILINE)
BATCH = re.compile(r"^epoch (\d+) batch (\d+): samples ([\d ]+)$", re.MULTILINE)
DRAWN = re.compile(r"^epoch (\d+) drew per class: ([\d ]+)$", re.MULTILINE)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def steps(output: str) -> list[tuple[int, int, int, int, str]]:
    return [(int(e), int(s), int(k), int(n), loss) for e, s, k, n, loss in STEP.findall(output)]


def parts(output: str) -> dict[tuple[int, int, int], list[int]]:
    """(rank, epoch, batch) -> the sample indices that process trained on (Lightning's ``--show-batches``)."""
    found = PART.findall(output)
    return {(int(r), int(e), int(b)): [int(i) for i in samples.split()] for r, e, b, samples in found}


def global_batches(output: str) -> dict[tuple[int, int], list[int]]:
    """(epoch, batch) -> the sample indices of that global batch (accelerate's ``--show-batches``)."""
    return {(int(e), int(b)): [int(i) for i in samples.split()] for e, b, samples in BATCH.findall(output)}


def sampler_batches(targets: torch.Tensor, epochs: int, batch_size: int) -> dict[tuple[int, int], list[int]]:
    """(epoch, batch) -> the global batches of the recipes' class-balanced sampler (seed 0), drawn in one process."""
    sampler = sw.create_sampler(
        "class_balanced", targets=targets, seed=0, batch_size=batch_size, num_replicas=1, rank=0
    )
    expected = {}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        expected |= {(epoch, b): part.tolist() for b, part in enumerate(sampler.global_indices().split(batch_size))}
    assert expected[0, 0] != expected[1, 0]  # a new draw per epoch: a recipe that skips set_epoch repeats epoch 0
    return expected


def class_counts(targets: torch.Tensor, expected: dict[tuple[int, int], list[int]], epochs: int) -> list[list[int]]:
    """Samples per class in each epoch of ``expected``: balanced, every class within 3 standard deviations of N / C."""
    counts = []
    for epoch in range(epochs):
        indices = [i for (e, _), batch in sorted(expected.items()) if e == epoch for i in batch]
        counts.append(torch.bincount(targets[indices], minlength=7).tolist())
        share, size = 1 / 7, len(indices)
        assert all(abs(n - size * share) <= 3 * math.sqrt(size * share * (1 - share)) for n in counts[-1]), counts
    return counts


def drawn(output: str) -> list[list[int]]:
    """Samples per class of each epoch, all processes together."""
    found = DRAWN.findall(output)
    assert [int(epoch) for epoch, _ in found] == list(range(len(found)))
    return [[int(n) for n in counts.split()] for _, counts in found]


def example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # the shuffled pass trains on every sample once per epoch: the data set's imbalance
    targets = example("lightning_training").imbalanced_blobs(200, seed=1).tensors[1]
    assert drawn(output) == [torch.bincount(targets, minlength=7).tolist()] * 3


def test_lightning_recipe_with_a_class_balanced_sampler_draws_the_same_global_batches_under_ddp() -> None:
    pytest.importorskip(
        "lightning", reason="the Lightning recipe needs lightning (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "lightning_training.py")
    args = (script, "--epochs", "2", "--sampler", "class_balanced", "--show-batches")
    one, two = run(sys.executable, *args), run(sys.executable, *args, "--devices", "2")

    targets = example("lightning_training").imbalanced_blobs(200, seed=1).tensors[1]
    expected = sampler_batches(targets, epochs=2, batch_size=16)
    assert len(expected) == 2 * 13  # 200 = 12 x 16 + 8
    assert parts(one) == {(0, epoch, b): batch for (epoch, b), batch in expected.items()}
    # two processes: each trains on its own half of every global batch (rank 0 the first), the same steps
    assert parts(two) == {
        (rank, epoch, b): batch[rank * len(batch) // 2 : (rank + 1) * len(batch) // 2]
        for (epoch, b), batch in expected.items()
        for rank in (0, 1)
    }
    assert steps(two) == steps(one)  # so OHEM kept the same samples and the losses agree (6 decimals)
    assert_paced_over_the_global_batch(steps(one), epochs=2, batch_size=16, steps_per_epoch=13)
    # balanced, where the data set holds 149 samples of class 1 and 2 of class 5
    assert drawn(one) == drawn(two) == class_counts(targets, expected, epochs=2)


def test_accelerate_recipe_gives_one_process_results_under_torchrun_and_notebook_launcher() -> None:
    pytest.importorskip(
        "accelerate", reason="the accelerate recipe needs accelerate (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "accelerate_training.py")
    args = ("--epochs", "2", "--samples", "110")  # 110 = 6 x 16 + 14: the last global batch is short and uneven
    one = steps(run(sys.executable, script, *args))
    assert_paced_over_the_global_batch(one, epochs=2, batch_size=16, steps_per_epoch=7)
    assert [size for *_, size, _ in one[:7]] == [16] * 6 + [14]
    torchrun = run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", script, *args)
    notebook = steps(run(sys.executable, script, *args, "--notebook-launcher", "2"))
    assert steps(torchrun) == one and notebook == one  # the same kept samples and losses (printed to 6 decimals)
    # every sample trained on once per epoch, none of accelerate's repeats: the data set's imbalance
    targets = example("accelerate_training").imbalanced_blobs(110).tensors[1]
    assert drawn(torchrun) == [torch.bincount(targets, minlength=7).tolist()] * 2


def test_accelerate_recipe_with_a_class_balanced_sampler_draws_the_same_global_batches_under_torchrun() -> None:
    pytest.importorskip(
        "accelerate", reason="the accelerate recipe needs accelerate (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "accelerate_training.py")
    args = (script, "--epochs", "2", "--samples", "110", "--sampler", "class_balanced", "--show-batches")
    one = run(sys.executable, *args)
    two = run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args)
    targets = example("accelerate_training").imbalanced_blobs(110).tensors[1]
    expected = sampler_batches(targets, epochs=2, batch_size=16)
    assert len(expected) == 2 * 7 and len(expected[1, 6]) == 14  # 110 = 6 x 16 + 14: a short last batch
    # the processes' parts, gathered in rank order, are the sampler's global batches, whatever the processes
    assert global_batches(one) == global_batches(two) == expected
    assert steps(two) == steps(one)
    assert_paced_over_the_global_batch(steps(one), epochs=2, batch_size=16, steps_per_epoch=7)
    assert drawn(one) == drawn(two) == class_counts(targets, expected, epochs=2)


def test_hf_trainer_recipe_gives_one_process_results_under_torchrun() -> None:
    pytest.importorskip(
        "transformers", reason="the Trainer recipe needs transformers (pip install sampleweight[integrations])"
    )
    script = str(EXAMPLES / "hf_trainer.py")
    args = (script, "--epochs", "2", "--sampler", "class_balanced")
    one = steps(run(sys.executable, *args))
    two = steps(run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args))
    assert two == one  # the same global batches, OHEM over them, the same losses (6 decimals)
    assert_paced_over_the_global_batch(one, epochs=2, batch_size=16, steps_per_epoch=13)  # 200 = 12 x 16 + 8
    mixed = steps(
        run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args, "--mixer", "remix")
    )
    assert_paced_over_the_global_batch(mixed, epochs=2, batch_size=16, steps_per_epoch=13)
    assert [loss for *_, loss in mixed] != [loss for *_, loss in one]  # the criterion took the mixed targets


def test_the_lightning_and_accelerate_recipes_mix_each_process_part() -> None:
    pytest.importorskip("lightning", reason="needs lightning (pip install sampleweight[integrations])")
    pytest.importorskip("accelerate", reason="needs accelerate (pip install sampleweight[integrations])")
    lightning = str(EXAMPLES / "lightning_training.py")
    mixed = steps(run(sys.executable, lightning, "--devices", "2", "--epochs", "2", "--mixer", "remix"))
    assert_paced_over_the_global_batch(mixed, epochs=2, batch_size=16, steps_per_epoch=13)
    plain = steps(run(sys.executable, lightning, "--epochs", "2"))
    assert [loss for *_, loss in mixed] != [loss for *_, loss in plain]
    accelerate = (str(EXAMPLES / "accelerate_training.py"), "--epochs", "2", "--samples", "110")
    one = steps(run(sys.executable, *accelerate, "--mixer", "mixup"))
    assert one == steps(run(sys.executable, *accelerate, "--mixer", "mixup"))  # the draws follow from the seed
    assert [loss for *_, loss in one] != [loss for *_, loss in steps(run(sys.executable, *accelerate))]
    torchrun = steps(run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *accelerate,
                         "--mixer", "mixup"))  # fmt: skip
    assert_paced_over_the_global_batch(torchrun, epochs=2, batch_size=16, steps_per_epoch=7)
