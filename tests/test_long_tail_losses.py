"""The long-tail losses (logit_adjusted, balanced_softmax, ldam) against independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight import functional as SF
from sampleweight.cli import app

COUNTS = [400, 120, 60, 25, 9, 3, 1]


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target] per row, in float64, written out."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets]


def _batch(batch: int, classes: int = len(COUNTS), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 3
    return logits, torch.randint(0, classes, (batch,), generator=generator)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_logit_adjusted_loss_is_cross_entropy_on_logits_plus_tau_log_prior(tau: float, batch: int) -> None:
    logits, targets = _batch(batch, seed=batch)
    prior = np.array(COUNTS, dtype=np.float64) / sum(COUNTS)
    expected = _cross_entropy(logits.numpy() + tau * np.log(prior), targets.numpy())
    loss = sw.create_loss("logit_adjusted", class_counts=torch.tensor(COUNTS), tau=tau)
    np.testing.assert_allclose(loss(logits, targets).numpy(), expected, rtol=1e-6, atol=1e-6)
    if tau == 0:
        torch.testing.assert_close(loss(logits, targets), SF.cross_entropy(logits, targets))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_balanced_softmax_is_cross_entropy_on_logits_plus_log_counts(batch: int) -> None:
    logits, targets = _batch(batch, seed=batch)
    expected = _cross_entropy(logits.numpy() + np.log(np.array(COUNTS, dtype=np.float64)), targets.numpy())
    balanced = sw.create_loss("balanced_softmax", class_counts=torch.tensor(COUNTS))
    np.testing.assert_allclose(balanced(logits, targets).numpy(), expected, rtol=1e-6, atol=1e-6)
    adjusted = sw.create_loss("logit_adjusted", class_counts=torch.tensor(COUNTS), tau=1.0)
    torch.testing.assert_close(balanced(logits, targets), adjusted(logits, targets))  # the same loss


def _kaidic_ldam(logits: np.ndarray, targets: np.ndarray, counts: list[int], max_m: float, s: float) -> np.ndarray:
    """kaidic/LDAM-DRW's LDAMLoss (losses.py), re-derived in numpy, per sample instead of averaged."""
    m_list = 1.0 / np.sqrt(np.sqrt(np.array(counts, dtype=np.float64)))
    m_list = m_list * (max_m / np.max(m_list))
    index = np.zeros_like(logits, dtype=bool)
    index[np.arange(len(targets)), targets] = True
    batch_m = (m_list[None, :] @ index.T.astype(np.float64)).reshape(-1, 1)
    output = np.where(index, logits - batch_m, logits)
    return _cross_entropy(s * output, targets)


@pytest.mark.parametrize(("max_margin", "s"), [(0.5, 30.0), (0.3, 10.0), (1.0, 1.0)])
@pytest.mark.parametrize("batch", [1, 9, 64])
def test_ldam_loss_equals_kaidics_formula(max_margin: float, s: float, batch: int) -> None:
    logits, targets = _batch(batch, seed=batch + 1)
    logits = logits / 10  # LDAM's logits come from normalised features: small
    loss = sw.create_loss("ldam", class_counts=torch.tensor(COUNTS), max_margin=max_margin, s=s)
    expected = _kaidic_ldam(logits.numpy(), targets.numpy(), COUNTS, max_margin, s)
    np.testing.assert_allclose(loss(logits, targets).numpy(), expected, rtol=1e-5, atol=1e-6)
    margins = loss.margins.numpy()
    assert margins.max() == pytest.approx(max_margin) and np.all(np.diff(margins) > 0)  # rarer: larger margin


def test_ldam_gradient_is_the_softmax_of_the_shifted_logits_minus_the_target() -> None:
    logits, targets = _batch(16, seed=3)
    logits = (logits / 10).requires_grad_(True)
    s, margins = 30.0, SF.ldam_margins(torch.tensor(COUNTS)).double()
    SF.ldam_loss(logits, targets, margins, s=s).sum().backward()
    onehot = torch.nn.functional.one_hot(targets, len(COUNTS)).double()
    shifted = s * (logits.detach() - margins[targets].unsqueeze(1) * onehot)
    torch.testing.assert_close(logits.grad, s * (shifted.softmax(dim=1) - onehot))
    # the margin matters: without it the gradient differs wherever the target's probability does
    plain = s * ((s * logits.detach()).softmax(dim=1) - onehot)
    assert not torch.allclose(logits.grad, plain)


@pytest.mark.parametrize("name", ["logit_adjusted", "balanced_softmax", "ldam"])
def test_a_class_with_no_training_images_gives_finite_losses_and_gradients(name: str) -> None:
    counts = torch.tensor([50, 0, 5])  # class 1 absent from training
    logits = torch.randn(6, 3, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 1, 0, 2])  # and yet present here (an evaluation batch, say)
    losses = sw.create_loss(name, class_counts=counts)(logits, targets)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(logits.grad).all()


def test_the_absent_class_counts_as_one_image() -> None:
    prior = SF.class_log_prior(torch.tensor([50, 0, 5])).exp()
    torch.testing.assert_close(prior, torch.tensor([50 / 55, 1 / 55, 5 / 55]))
    torch.testing.assert_close(SF.ldam_margins(torch.tensor([50, 0, 5])), SF.ldam_margins(torch.tensor([50, 1, 5])))


def test_bf16_logits_give_float32_losses() -> None:
    logits, targets = _batch(8, seed=4)
    for name in ("logit_adjusted", "balanced_softmax", "ldam"):
        loss = sw.create_loss(name, class_counts=torch.tensor(COUNTS))(logits.bfloat16(), targets)
        assert loss.dtype == torch.float32 and loss.shape == (8,)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("logit_adjusted", {"tau": -1.0}, "tau must be >= 0"),
        ("ldam", {"max_margin": 0.0}, "max_margin > 0"),
        ("ldam", {"s": -30.0}, "s must be > 0"),
        ("balanced_softmax", {"tau": 1.0}, "does not accept option"),
    ],
)
def test_bad_options_are_config_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(sw.ConfigError, match=message):
        sw.create_loss(name, class_counts=torch.tensor(COUNTS), **options)


def test_the_long_tail_losses_need_the_training_class_counts() -> None:
    with pytest.raises(sw.ConfigError, match=r"loss 'ldam' needs class_counts"):
        sw.create_loss("ldam")


def test_ldam_drw_weights_and_trains_through_weighted_loss() -> None:
    criterion = sw.WeightedLoss("ldam", "drw", class_counts=torch.tensor(COUNTS), num_epochs=10)
    logits, targets = _batch(12, seed=5)
    logits.requires_grad_(True)
    for epoch in (0, 9):  # before and after DRW's switch to class weights
        criterion.set_epoch(epoch)
        criterion(logits.float(), targets).backward()
        assert torch.isfinite(logits.grad).all()
    assert not torch.allclose(criterion.last_weights, torch.ones(12))


def test_train_with_a_long_tail_loss_from_the_command_line(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "synthetic:80", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "16", "--epochs", "1", "--quiet", "--loss", "logit_adjusted", "--loss-option", "tau=1.5",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file()
