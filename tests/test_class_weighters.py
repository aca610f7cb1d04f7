"""Class-aware SPL/OHEM and deferred re-weighting (DRW), against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import sampleweight as sw
from sampleweight import functional as SF
from sampleweight.weighting import WeightingBatch

EPOCHS, NOMINAL = 150, 20


def expected_class_mask(losses: list[float], targets: list[int], fraction: float, hardest: bool) -> list[float]:
    """Plain Python: per class present, keep round-half-up(n_c * fraction) (at least 1) extreme losses."""
    weights = [0.0] * len(losses)
    for label in set(targets):
        members = [i for i, t in enumerate(targets) if t == label]
        ranked = sorted(members, key=lambda i: (-losses[i] if hardest else losses[i], i))  # ties: earlier first
        keep = min(len(members), max(1, math.floor(len(members) * fraction + 0.5 + 1e-9)))
        for i in ranked[:keep]:
            weights[i] = 1.0
    return weights


def paced_fraction(epoch: int) -> float:
    alpha = 2 * math.log(2 * NOMINAL - 1) / EPOCHS
    return math.exp(alpha * epoch) / (1 + math.exp(alpha * epoch))


@pytest.mark.parametrize("name", ["class_spl", "class_ohem"])
@pytest.mark.parametrize("seed", range(30))
def test_class_curriculum_keeps_the_paced_share_of_each_class(registry, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    epoch = [0, 1, 37, 74, 75, 149, int(torch.randint(0, 150, (1,), generator=generator))][seed % 7]
    batch_len = [20, 20, 7, 1, 13, 2][seed % 6]  # full batches, short last batches and B = 1
    classes = [7, 3, 2][seed % 3]
    targets = torch.randint(0, classes, (batch_len,), generator=generator)
    if batch_len > 2:
        targets[-1] = classes  # a class with a single sample (and classes 0..classes-1 may be missing)
    losses = torch.randint(0, 4, (batch_len,), generator=generator).float()  # many ties
    weighter = sw.create_weighter(name, registry=registry, num_epochs=EPOCHS, batch_size=NOMINAL)
    weights = weighter(WeightingBatch(losses, targets, epoch=epoch))
    expected = expected_class_mask(losses.tolist(), targets.tolist(), paced_fraction(epoch), name == "class_ohem")
    assert weights.tolist() == expected
    assert weights.dtype == losses.dtype and not weights.requires_grad


@pytest.mark.parametrize("name", ["class_spl", "class_ohem"])
def test_every_weight_is_one_from_half_of_training_on(registry, name: str) -> None:
    weighter = sw.create_weighter(name, registry=registry, num_epochs=EPOCHS, batch_size=NOMINAL)
    generator = torch.Generator().manual_seed(0)
    for epoch in (75, 76, 120, 149):
        for batch_len in (1, 5, 20):
            targets = torch.randint(0, 3, (batch_len,), generator=generator)
            batch = WeightingBatch(torch.rand(batch_len, generator=generator), targets, epoch=epoch)
            assert weighter(batch).tolist() == [1.0] * batch_len
    before = WeightingBatch(torch.arange(20.0), torch.zeros(20, dtype=torch.long), epoch=74)
    assert weighter(before).sum() == 19  # one class of M = 20 samples drops one just before E/2


def test_at_epoch_zero_each_class_keeps_half_rounded_up_and_never_none(registry) -> None:
    losses = torch.tensor([0.8, 0.9, 0.5, 0.3, 0.2, 0.4, 0.6])
    targets = torch.tensor([0, 0, 0, 1, 2, 2, 0])  # class 0: four samples, class 1: one, class 2: two
    kwargs = {"registry": registry, "num_epochs": 10, "batch_size": 7}
    batch = WeightingBatch(losses, targets)
    assert sw.create_weighter("class_ohem", **kwargs)(batch).tolist() == [1, 1, 0, 1, 0, 1, 0]
    assert sw.create_weighter("class_spl", **kwargs)(batch).tolist() == [0, 0, 1, 1, 1, 0, 1]
    # plain OHEM keeps round(7/2) = 4 over the batch: all of class 0, none of the rare classes 1 and 2
    assert sw.create_weighter("ohem", **kwargs)(batch).tolist() == [1, 1, 1, 0, 0, 0, 1]


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0.0, 0.5, 1.0, 2.5])), min_size=0, max_size=40),
    fraction=st.floats(0.0, 1.0),
    hardest=st.booleans(),
)
def test_class_curriculum_mask_matches_plain_python(
    data: list[tuple[int, float]], fraction: float, hardest: bool
) -> None:
    targets = [t for t, _ in data]
    losses = [loss for _, loss in data]
    mask = SF.class_curriculum_mask(
        torch.tensor(losses, dtype=torch.float64), torch.tensor(targets, dtype=torch.long), fraction, hardest=hardest
    )
    assert mask.tolist() == expected_class_mask(losses, targets, fraction, hardest)


def test_functional_forms_share_the_pacing() -> None:
    alpha = SF.curriculum_pace(EPOCHS, NOMINAL)
    for epoch in (0, 10, 37, 74, 75):
        assert SF.curriculum_fraction(epoch, alpha) == pytest.approx(paced_fraction(epoch), rel=1e-12)
        whole_batch_as_one_class = SF.class_curriculum_mask(
            torch.arange(20.0), torch.zeros(20, dtype=torch.long), SF.curriculum_fraction(epoch, alpha), hardest=True
        )
        assert int(whole_batch_as_one_class.sum()) == SF.curriculum_size(20, epoch, alpha)
    with pytest.raises(ValueError, match="fraction"):
        SF.class_curriculum_mask(torch.rand(3), torch.zeros(3, dtype=torch.long), 1.5, hardest=True)
    with pytest.raises(ValueError, match="shape"):
        SF.class_curriculum_mask(torch.rand(3), torch.zeros(2, dtype=torch.long), 0.5, hardest=True)


def test_class_ohem_state_and_pace_override(registry) -> None:
    weighter = sw.create_weighter("class_ohem", registry=registry, pace=0.0)  # half of each class forever
    batch = WeightingBatch(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0, 0, 1, 1]), epoch=1000)
    assert weighter(batch).tolist() == [0.0, 1.0, 0.0, 1.0]
    with pytest.raises(sw.ConfigError, match=r"'class_spl': the paper's pacing needs num_epochs.*pace="):
        sw.create_weighter("class_spl", registry=registry, batch_size=10)


def es_normalised(counts: list[int]) -> list[float]:
    total = sum(counts)
    beta = (total - 1) / total
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def test_drw_is_one_until_eighty_percent_then_effective_number_at_mean_one_per_batch(registry) -> None:
    counts = [500, 40, 7]
    weighter = sw.create_weighter("drw", registry=registry, class_counts=counts, num_epochs=10)
    targets = torch.tensor([0, 1, 2, 2, 0])
    for epoch in range(10):
        weights = weighter(WeightingBatch(torch.rand(5), targets, epoch=epoch))
        if epoch < 8:
            assert weights.tolist() == [1.0] * 5, epoch
        else:
            per_sample = torch.tensor([es_normalised(counts)[t] for t in targets.tolist()])
            torch.testing.assert_close(weights, per_sample / per_sample.mean(), rtol=1e-5, atol=0)
    assert weighter.mean_weight(torch.tensor(counts)) == 1.0


def test_one_drw_step_equals_ldam_drw_cross_entropy_with_class_weights(registry) -> None:
    """kaidic/LDAM-DRW (cifar_train.py, train_rule DRW): per-class weights (1 - b) / (1 - b^n_c), scaled to sum
    to C, given to cross-entropy as `weight=`, i.e. sum_j w_j l_j / sum_j w_j; re-derived here in float64."""
    generator = torch.Generator().manual_seed(0)
    counts = [5000, 500, 50, 5]
    logits = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0, 1, 0])
    beta = 0.9999
    per_class = [(1 - beta) / (1 - beta**n) for n in counts]
    per_class = torch.tensor([w * len(counts) / sum(per_class) for w in per_class], dtype=torch.float64)
    theirs_logits = logits.clone().requires_grad_(True)
    log_p = theirs_logits.log_softmax(1)[torch.arange(16), targets]
    w = per_class[targets]
    theirs = -(w * log_p).sum() / w.sum()
    theirs.backward()

    ours_logits = logits.clone().requires_grad_(True)
    criterion = sw.WeightedLoss("ce", "drw", registry=registry, class_counts=counts, start_epoch=3, beta=beta)
    criterion.set_epoch(3)
    ours = criterion(ours_logits, targets)
    ours.backward()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(ours_logits.grad, theirs_logits.grad, rtol=1e-5, atol=1e-9)
    criterion.set_epoch(2)  # before the switch: plain cross-entropy, as theirs with beta = 0
    before = criterion(logits, targets)
    torch.testing.assert_close(before, torch.nn.functional.cross_entropy(logits, targets), rtol=1e-6, atol=0)


def test_focal_drw_is_the_weighted_mean_of_focal_losses_not_kaidics_focal(registry) -> None:
    """What docs/weighting.md states: ours is sum_j v (1 - p_j)^g CE_j / sum_j v; kaidic/LDAM-DRW's FocalLoss
    (losses.py) is (1/B) sum_j (1 - exp(-v CE_j))^g v CE_j, the weight inside the exponent, no division by the
    weights' sum; theirs is ours times the batch's mean weight times the exponent's factor."""
    generator = torch.Generator().manual_seed(1)
    counts = [5000, 500, 50, 5]
    logits = torch.randn(16, 4, generator=generator, dtype=torch.float64) * 2
    targets = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0, 1, 0])
    beta, gamma = 0.9999, 1.0
    per_class = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts], dtype=torch.float64)
    v = (per_class * len(counts) / per_class.sum())[targets]
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    p = torch.exp(-ce)
    criterion = sw.WeightedLoss("focal", "drw", registry=registry, class_counts=counts, start_epoch=3, beta=beta,
                                gamma=gamma)  # fmt: skip
    criterion.set_epoch(3)
    ours = criterion(logits, targets)
    torch.testing.assert_close(ours, (v * (1 - p) ** gamma * ce).sum() / v.sum(), rtol=1e-6, atol=0)
    theirs = ((1 - torch.exp(-v * ce)) ** gamma * v * ce).mean()  # their focal_loss(F.cross_entropy(weight=...))
    exponent = (v * (1 - p**v) ** gamma * ce).sum() / (v * (1 - p) ** gamma * ce).sum()
    torch.testing.assert_close(theirs, ours * v.mean() * exponent, rtol=1e-7, atol=0)
    assert not math.isclose(float(theirs), float(ours), rel_tol=1e-3)


@pytest.mark.parametrize(
    ("options", "first"),
    [
        ({"start": 0.5, "num_epochs": 7}, 4),  # the first epoch e >= 3.5
        ({"start": 0.8, "num_epochs": 200}, 160),  # Cao et al.'s schedule
        ({"start_epoch": 3}, 3),
        ({"start_epoch": 0, "num_epochs": 5}, 0),
    ],
)
def test_drw_start_as_fraction_or_epoch(registry, options: dict, first: int) -> None:
    weighter = sw.create_weighter("drw", registry=registry, class_counts=[9, 1], weighting="cb", **options)
    targets = torch.tensor([0, 1])
    if first > 0:
        assert weighter(WeightingBatch(torch.rand(2), targets, epoch=first - 1)).tolist() == [1.0, 1.0]
    cb = torch.tensor([10 / 9, 10.0])
    expected = (cb * 2 / cb.sum()).tolist()
    torch.testing.assert_close(
        weighter(WeightingBatch(torch.rand(2), targets, epoch=first)), torch.tensor(expected), rtol=1e-6, atol=0
    )


def test_drw_options_are_checked(registry) -> None:
    counts = {"class_counts": [3, 1], "registry": registry}
    with pytest.raises(sw.ConfigError, match=r"either start .* or start_epoch"):
        sw.create_weighter("drw", start=0.5, start_epoch=2, num_epochs=4, **counts)
    with pytest.raises(sw.ConfigError, match="beta is an option of the 'es' weighting"):
        sw.create_weighter("drw", weighting="cb", beta=0.9, num_epochs=4, **counts)
    with pytest.raises(sw.ConfigError, match="weighting must be one of es, cb"):
        sw.create_weighter("drw", weighting="focal", num_epochs=4, **counts)
    with pytest.raises(sw.ConfigError, match="drw needs num_epochs"):
        sw.create_weighter("drw", **counts)
    raw = sw.create_weighter("drw", normalize="none", beta=0.9, start_epoch=0, **counts)
    weights = raw(WeightingBatch(torch.rand(2), torch.tensor([0, 1])))
    torch.testing.assert_close(weights, torch.tensor([(1 - 0.9) / (1 - 0.9**3), 1.0]))


def test_drw_composes_and_round_trips_its_state(registry) -> None:
    kwargs = {"class_counts": [30, 5, 1], "num_epochs": 10, "batch_size": 4, "registry": registry}
    batch = WeightingBatch(torch.tensor([0.1, 3.0, 0.5, 2.0]), torch.tensor([0, 1, 2, 0]), epoch=9)
    product = sw.create_weighter("ohem+drw", **kwargs)(batch)
    expected = sw.create_weighter("ohem", **kwargs)(batch) * sw.create_weighter("drw", **kwargs)(batch)
    torch.testing.assert_close(product, expected)
    source = sw.create_weighter("drw", **kwargs)
    target = sw.create_weighter("drw", **{**kwargs, "class_counts": [1, 1, 1]})
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(batch), source(batch))
