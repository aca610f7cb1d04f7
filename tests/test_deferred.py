"""Checks kept on the device: no host sync while weighting or training, and still the exact failing step."""

from __future__ import annotations

import pytest
import torch

import sampleweight as sw
from sampleweight.deferred import DeferredCheck
from sampleweight.weighting import WeightingBatch


class StepWeights(sw.BaseWeighter):
    """Weights by step: ``{step: weights}``, ones otherwise."""

    name = "steps"

    def __init__(self, bad: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.bad = bad

    def forward(self, batch: WeightingBatch) -> torch.Tensor:
        return self.bad.get(batch.step, torch.ones_like(batch.losses))


def test_deferred_check_keeps_the_first_failure_until_popped() -> None:
    check = DeferredCheck()
    assert check.pop() is None
    values = [0.5, 1.0, float("inf"), float("nan"), 2.0]
    for step, value in enumerate(values):
        value = torch.tensor(value)
        check.update(~torch.isfinite(value), epoch=7, step=step, detail=value)
    failure = check.pop()
    assert (failure.epoch, failure.step, failure.detail.item()) == (7, 2, float("inf"))
    assert check.pop() is None
    check.update(torch.tensor(False), epoch=8, step=0, detail=torch.tensor(1.0))
    assert check.pop() is None


def test_deferred_validation_raises_later_for_the_first_bad_batch(registry) -> None:
    nan, negative = torch.tensor([1.0, float("nan"), 1.0]), torch.tensor([1.0, 1.0, -2.0])
    criterion = sw.WeightedLoss("ce", StepWeights({2: nan, 3: negative}), validate="deferred", registry=registry)
    criterion.set_epoch(4)
    for _ in range(5):  # nothing raises in the calls
        criterion(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(
        sw.WeightError, match=r"weighter 'steps' returned non-finite weights.*\(epoch 4, global step 2\)"
    ) as info:
        criterion.raise_if_invalid()
    assert (info.value.epoch, info.value.step) == (4, 2)
    criterion.raise_if_invalid()  # reported once
    criterion(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    criterion.raise_if_invalid()  # step 5 is fine


def test_deferred_validation_of_negative_weights_and_of_a_product(registry) -> None:
    criterion = sw.WeightedLoss(
        "ce", StepWeights({0: torch.tensor([1.0, -1.0])}), validate="deferred", registry=registry
    )
    criterion(torch.randn(2, 4), torch.tensor([0, 1]))
    negative = r"returned negative weights \(epoch 0, global step 0\); weights must be >= 0"
    with pytest.raises(sw.WeightError, match=negative):
        criterion.raise_if_invalid()
    product = sw.ProductWeighter([sw.create_weighter("es", registry=registry, class_counts=[5, 5, 1, 1])])
    product = sw.ProductWeighter([*product.components, StepWeights({1: torch.tensor([float("inf"), 1.0])})])
    criterion = sw.WeightedLoss("ce", product, validate="deferred", registry=registry)
    for _ in range(3):
        criterion(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(sw.WeightError, match=r"weighter 'steps' returned non-finite.*step 1"):
        criterion.raise_if_invalid()


def test_an_immediate_check_blames_the_product_when_only_the_product_overflows(registry) -> None:
    huge = StepWeights({0: torch.tensor([3e38, 1.0])})
    criterion = sw.WeightedLoss("ce", sw.ProductWeighter([huge, huge]), registry=registry)
    with pytest.raises(sw.WeightError, match=r"weighter 'steps\+steps' returned non-finite.*positions \[0\]"):
        criterion(torch.randn(2, 4), torch.tensor([0, 1]))


def test_validate_takes_true_false_or_deferred(registry) -> None:
    with pytest.raises(sw.ConfigError, match="validate must be True, False or 'deferred'"):
        sw.WeightedLoss("ce", "none", validate="later", registry=registry)
    quiet = sw.WeightedLoss("ce", StepWeights({0: torch.tensor([float("nan")])}), validate=False, registry=registry)
    assert torch.isnan(quiet(torch.randn(1, 4), torch.tensor([0])))


@pytest.mark.filterwarnings("ignore:.*has no training samples")
@pytest.mark.parametrize(
    "spec", ["none", "cb", "es", "spl", "ohem", "class_spl", "class_ohem", "drw", "ohem+es", "class_ohem+cb"]
)
@pytest.mark.parametrize("loss", ["ce", "focal"])
def test_weighting_a_batch_never_reads_the_device(registry, host_reads, spec: str, loss: str) -> None:
    facts = {"class_counts": [40, 30, 20, 5, 3, 1, 0], "num_epochs": 20, "batch_size": 8}
    criterion = sw.WeightedLoss(loss, spec, validate="deferred", registry=registry, **facts)
    criterion.set_epoch(17)  # drw switched on, SPL/OHEM mid-curriculum
    batches = [(torch.randn(8, 7, requires_grad=True), torch.randint(0, 7, (8,))) for _ in range(3)]
    batches.append((torch.randn(1, 7, requires_grad=True), torch.tensor([6])))  # a short last batch, B = 1
    with host_reads() as reads:
        for step, (logits, targets) in enumerate(batches):
            criterion(logits, targets, indices=torch.arange(8 * step, 8 * step + len(targets))).backward()
    assert reads == []
    criterion.raise_if_invalid()


def test_the_sync_spy_sees_a_host_read(host_reads) -> None:
    with host_reads() as reads:
        bool(torch.tensor(1.0) > 0)
        torch.ones(2).tolist()
    assert reads == ["__bool__", "tolist"]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the sync check is CUDA's)")


@needs_cuda
@pytest.mark.filterwarnings("ignore:.*has no training samples")
@pytest.mark.parametrize("spec", ["none", "es", "spl", "ohem", "class_spl", "class_ohem", "drw", "ohem+es"])
def test_on_cuda_weighting_and_the_deferred_checks_never_wait_for_the_gpu(registry, spec: str) -> None:
    """CUDA's own detector: any synchronising call (boolean indexing included) raises while it is on."""
    facts = {"class_counts": [40, 30, 20, 5, 3, 1, 0], "num_epochs": 20, "batch_size": 8}
    criterion = sw.WeightedLoss("focal", spec, validate="deferred", registry=registry, **facts).cuda()
    criterion.set_epoch(3)
    logits = torch.randn(8, 7, device="cuda", requires_grad=True)
    targets = torch.randint(0, 7, (8,), device="cuda")
    indices = torch.arange(8, device="cuda")
    losses = DeferredCheck()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3):
            loss = criterion(logits, targets, indices=indices)
            losses.update(~torch.isfinite(criterion.last_value), epoch=3, step=step, detail=criterion.last_value)
            loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    criterion.raise_if_invalid()
    assert losses.pop() is None


@needs_cuda
def test_a_deferred_check_follows_its_module_to_another_device() -> None:
    check = DeferredCheck()
    check.update(torch.tensor(False), epoch=0, step=0, detail=torch.tensor(0.0))
    check.update(torch.tensor(True, device="cuda"), epoch=0, step=1, detail=torch.tensor(5.0, device="cuda"))
    failure = check.pop()
    assert (failure.step, failure.detail.item()) == (1, 5.0)
