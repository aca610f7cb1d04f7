"""Every formula against an independent computation (numpy / plain Python in float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sampleweight import functional as SF


def np_log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def random_batch(seed: int, batch: int, classes: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * scale
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return logits, targets


@pytest.mark.parametrize("seed", range(60))
def test_cross_entropy_matches_numpy(seed: int) -> None:
    batch, classes = 1 + seed % 23, 2 + seed % 9
    logits, targets = random_batch(seed, batch, classes)
    expected = -np_log_softmax(logits.numpy())[np.arange(batch), targets.numpy()]
    np.testing.assert_allclose(SF.cross_entropy(logits, targets).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(80))
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_focal_loss_matches_numpy(seed: int, gamma: float) -> None:
    batch, classes = 1 + seed % 20, 2 + seed % 7
    logits, targets = random_batch(seed, batch, classes)
    log_p = np_log_softmax(logits.numpy())[np.arange(batch), targets.numpy()]
    p = np.exp(log_p)
    expected = -((1.0 - p) ** gamma) * log_p
    np.testing.assert_allclose(SF.focal_loss(logits, targets, gamma=gamma).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_focal_alpha_scales_each_sample_by_its_class_factor() -> None:
    logits, targets = random_batch(3, 30, 4)
    alpha = [0.25, 1.0, 2.0, 0.0]
    plain = SF.focal_loss(logits, targets, gamma=2.0)
    weighted = SF.focal_loss(logits, targets, gamma=2.0, alpha=alpha)
    torch.testing.assert_close(weighted, plain * torch.tensor(alpha, dtype=torch.float64)[targets])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_focal_gamma_zero_equals_cross_entropy_exactly(dtype: torch.dtype) -> None:
    logits, targets = random_batch(1, 50, 7)
    logits = logits.to(dtype)
    assert torch.equal(SF.focal_loss(logits, targets, gamma=0.0), SF.cross_entropy(logits, targets))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_gradient_matches_autograd_float64(gamma: float) -> None:
    logits, targets = random_batch(7, 6, 5)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: SF.focal_loss(x, targets, gamma=gamma), (logits,))
    # and against the closed-form gradient of -(1-p)^g log p w.r.t. the logits
    loss = SF.focal_loss(logits, targets, gamma=gamma).sum()
    (grad,) = torch.autograd.grad(loss, logits)
    probs = logits.detach().softmax(1).numpy()
    p = probs[np.arange(6), targets.numpy()]
    dl_dp = gamma * (1 - p) ** (gamma - 1) * np.log(p) - (1 - p) ** gamma / p
    onehot = np.eye(5)[targets.numpy()]
    dp_dz = p[:, None] * (onehot - probs)
    np.testing.assert_allclose(grad.numpy(), dl_dp[:, None] * dp_dz, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_is_finite_for_huge_logits(gamma: float) -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [30.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 0, 0])
    loss = SF.focal_loss(logits, targets, gamma=gamma)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()
    assert loss[0] == 0 and loss[1] > 1e3  # confident right, confident wrong


def test_focal_rejects_negative_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        SF.focal_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), gamma=-1.0)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=12).filter(lambda c: sum(c) > 0))
@settings(max_examples=200, deadline=None)
def test_class_balance_weights_are_n_over_n_c(counts: list[int]) -> None:
    total = sum(counts)
    expected = [total / max(n, 1) for n in counts]
    np.testing.assert_allclose(SF.class_balance_weights(torch.tensor(counts)).numpy(), expected, rtol=1e-6)


@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=12).filter(lambda c: sum(c) > 1),
    st.one_of(st.none(), st.floats(0.0, 0.9999)),
)
@settings(max_examples=200, deadline=None)
def test_effective_number_weights_match_formula(counts: list[int], beta: float | None) -> None:
    total = sum(counts)
    b = (total - 1) / total if beta is None else beta
    expected = [(1 - b) / (1 - b ** max(n, 1)) if b > 0 else 1.0 for n in counts]
    got = SF.effective_number_weights(torch.tensor(counts), beta).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_effective_number_default_beta_on_ham10000_counts() -> None:
    counts = torch.tensor([1113, 6705, 514, 327, 1099, 115, 142])
    total = 10015
    beta = (total - 1) / total
    expected = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts.tolist()], dtype=torch.float32)
    torch.testing.assert_close(SF.effective_number_weights(counts), expected)
    # rarer class, larger weight; ES is milder than CB
    weights = SF.effective_number_weights(counts)
    assert torch.equal(weights.argsort(), counts.argsort(descending=True))
    cb = SF.class_balance_weights(counts)
    assert weights.max() / weights.min() < cb.max() / cb.min()


def test_absent_class_gets_the_weight_of_a_single_sample() -> None:
    counts = torch.tensor([50, 0, 10])
    assert SF.class_balance_weights(counts)[1] == 60.0
    assert SF.effective_number_weights(counts)[1] == pytest.approx(1.0)
    assert torch.isfinite(SF.effective_number_weights(counts)).all()


@pytest.mark.parametrize("counts", [[], [0, 0], [3, -1]])
def test_bad_class_counts_raise(counts: list[int]) -> None:
    with pytest.raises(ValueError, match="class_counts"):
        SF.class_balance_weights(torch.tensor(counts))


def test_normalize_classes_gives_mean_one() -> None:
    weights = SF.class_balance_weights(torch.tensor([100, 10, 1]))
    assert SF.normalize_class_weights(weights, "classes").mean() == pytest.approx(1.0)
    assert torch.equal(SF.normalize_class_weights(weights, "none"), weights)
    with pytest.raises(ValueError, match="normalize"):
        SF.normalize_class_weights(weights, "bogus")


def reference_m(batch: int, epoch: int, num_epochs: int, nominal: int) -> int:
    """Eq. 9 with alpha = 2 ln(2M-1)/E, evaluated independently with exact half-up rounding."""
    alpha = 2 * math.log(2 * nominal - 1) / num_epochs
    value = batch * math.exp(alpha * epoch) / (1 + math.exp(alpha * epoch))
    return min(batch, max(1, math.floor(value + 0.5 + 1e-9)))


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(0, 10), (10, 12), (30, 16), (37, 17), (74, 19), (75, 20), (149, 20)],  # hand-computed from Eq. 9
)
def test_pacing_for_m20_e150(epoch: int, expected: int) -> None:
    pace = SF.curriculum_pace(150, 20)
    assert pace == pytest.approx(2 * math.log(39) / 150)
    assert SF.curriculum_size(20, epoch, pace) == expected == reference_m(20, epoch, 150, 20)


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 13, 19])
@pytest.mark.parametrize("epoch", [0, 37, 75, 149])
def test_pacing_for_a_short_last_batch(batch: int, epoch: int) -> None:
    m = SF.curriculum_size(batch, epoch, SF.curriculum_pace(150, 20))
    assert m == reference_m(batch, epoch, 150, 20)
    assert 1 <= m <= batch
    if epoch >= 75:
        assert m == batch


@given(st.integers(1, 64), st.integers(1, 400))
@settings(max_examples=300, deadline=None)
def test_second_half_keeps_everything_and_first_epoch_keeps_half(nominal: int, num_epochs: int) -> None:
    pace = SF.curriculum_pace(num_epochs, nominal)
    assert SF.curriculum_size(nominal, 0, pace) == max(1, math.floor(nominal / 2 + 0.5))
    for epoch in range(math.ceil(num_epochs / 2), num_epochs):
        assert SF.curriculum_size(nominal, epoch, pace) == nominal
    sizes = [SF.curriculum_size(nominal, e, pace) for e in range(num_epochs)]
    assert sizes == sorted(sizes)  # never decreases


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=40),  # few distinct values: many ties
    st.data(),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_curriculum_mask_keeps_exactly_the_m_extreme_losses(values: list[int], data, hardest: bool) -> None:
    keep = data.draw(st.integers(0, len(values)))
    losses = torch.tensor(values, dtype=torch.float32)
    mask = SF.curriculum_mask(losses, keep, hardest=hardest)
    # independent: rank by (loss, position) ascending for SPL; (-loss, position) for OHEM
    ranked = sorted(range(len(values)), key=lambda i: ((-values[i] if hardest else values[i]), i))
    expected = [1.0 if i in set(ranked[:keep]) else 0.0 for i in range(len(values))]
    assert mask.tolist() == expected
