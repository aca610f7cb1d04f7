"""The binary and multilabel tasks: the sigmoid losses against timm, torchvision and numpy, their task checks, and the
weighters on (sample, label) terms."""

from __future__ import annotations

import numpy as np
import pytest
import timm.loss
import torch
import torchvision.ops

import sampleweight as sw
from sampleweight.errors import ConfigError
from sampleweight.factory import check_task
from sampleweight.plugins import load_plugins

SIGMOID = ["bce", "sigmoid_focal", "asl", "db"]
SHAPES = [(1, 1), (7, 1), (5, 2), (9, 4)]  # B = 1, binary (one logit), C = 2 labels, several labels


def _data(batch: int, labels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, labels, generator=generator, dtype=torch.float64) * 3
    targets = (torch.rand(batch, labels, generator=generator) < 0.4).double()
    return logits, targets


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _counts(labels: int) -> torch.Tensor:
    positives = torch.tensor([20, 3, 45, 1, 9])[:labels]
    return torch.stack([100 - positives, positives])  # [2, L]: negatives, positives per label


# -- each loss: timm's class of the same name, and an independent computation --------------------------------------


@pytest.mark.parametrize(("batch", "labels"), SHAPES)
@pytest.mark.parametrize("pos_weight", [None, 3.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bce_is_timms_binary_cross_entropy_and_the_formula(batch, labels, pos_weight, smoothing) -> None:
    x, y = _data(batch, labels)
    ours = sw.create_loss("bce", pos_weight=pos_weight, label_smoothing=smoothing)(x, y)
    reference = timm.loss.create_classification_loss(
        "bce", multi_label=True, smoothing=smoothing, pos_weight=pos_weight, bce_sum=True
    )
    assert ours.shape == (batch,)
    torch.testing.assert_close(ours.mean(), reference(x.float(), y.float()), rtol=1e-5, atol=1e-6, check_dtype=False)
    p, t = _sigmoid(x.numpy()), y.numpy() * (1 - smoothing) + 0.5 * smoothing
    w = 1.0 if pos_weight is None else pos_weight
    numpy = -(w * t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(ours.numpy(), numpy, rtol=1e-4, atol=1e-5)


def test_bce_takes_class_indices_for_one_logit_and_neg_pos_from_the_counts() -> None:
    x = torch.tensor([[0.3], [-1.2], [2.0]])
    indices = torch.tensor([1, 0, 1])
    loss = sw.create_loss("bce", pos_weight="neg_pos", class_counts=torch.tensor([90, 10]))
    expected_weight = timm.loss.compute_class_weights([10], 100, method="neg_pos")[1]
    assert float(expected_weight) == 9.0
    p = _sigmoid(x.numpy().ravel())
    numpy = np.where(indices.numpy() == 1, -9.0 * np.log(p), -np.log(1 - p))
    np.testing.assert_allclose(loss(x, indices).numpy(), numpy, rtol=1e-6)
    with pytest.raises(ValueError, match="class indices"):
        loss(torch.zeros(3, 2), indices)  # class indices for two logits: not a binary task
    with pytest.raises(ValueError, match="class_counts"):
        sw.create_loss("bce", pos_weight="neg_pos")


@pytest.mark.parametrize(("batch", "labels"), SHAPES)
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (2.0, 0.25), (0.5, 0.7), (0.0, None)])
def test_sigmoid_focal_is_torchvisions_and_timms_poly_focal(batch, labels, gamma, alpha) -> None:
    x, y = _data(batch, labels, seed=1)
    ours = sw.create_loss("sigmoid_focal", gamma=gamma, alpha=alpha)(x, y)
    reference = torchvision.ops.sigmoid_focal_loss(x, y, alpha=-1 if alpha is None else alpha, gamma=gamma)
    torch.testing.assert_close(ours, reference.sum(dim=1).float(), rtol=1e-5, atol=1e-6, check_dtype=False)
    timm_focal = timm.loss.PolyBinaryCrossEntropy(epsilon=0.0, gamma=gamma, alpha=alpha, reduction="batchmean")
    torch.testing.assert_close(ours.mean(), timm_focal(x, y), rtol=1e-5, atol=1e-6, check_dtype=False)
    if gamma == 0 and alpha is None:
        torch.testing.assert_close(ours, sw.create_loss("bce")(x, y))


@pytest.mark.parametrize(("batch", "labels"), SHAPES)
@pytest.mark.parametrize(("gamma_neg", "gamma_pos", "clip"), [(4.0, 1.0, 0.05), (2.0, 0.0, None), (0.0, 0.0, 0.0)])
def test_asl_is_timms_asymmetric_loss_and_the_papers_formula(batch, labels, gamma_neg, gamma_pos, clip) -> None:
    x, y = _data(batch, labels, seed=2)
    ours = sw.create_loss("asl", gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)(x, y)
    reference = timm.loss.create_classification_loss(
        "asl", multi_label=True, asl_gamma_neg=gamma_neg, asl_gamma_pos=gamma_pos, asl_clip=clip
    )
    torch.testing.assert_close(ours.mean(), reference(x, y), rtol=1e-5, atol=1e-6, check_dtype=False)
    # Ridnik et al. 2021, Eq. 4-5: L+ = (1-p)^g+ log p, L- = p_m^g- log(1-p_m), p_m = max(p - m, 0)
    p, t = _sigmoid(x.numpy()), y.numpy()
    p_m = np.maximum(p - (clip or 0.0), 0.0)
    positive = (1 - p) ** gamma_pos * np.log(np.maximum(p, 1e-8))
    negative = p_m**gamma_neg * np.log(np.maximum(1 - p_m, 1e-8))
    numpy = -(t * positive + (1 - t) * negative).sum(axis=1)
    np.testing.assert_allclose(ours.numpy(), numpy, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("batch", "labels"), SHAPES)
def test_db_is_timms_distribution_balanced_loss_and_the_papers_formula(batch, labels) -> None:
    x, y = _data(batch, labels, seed=3)
    counts = _counts(labels)
    ours = sw.create_loss("db", class_counts=counts.flatten() if labels == 1 else counts)(x, y)
    reference = timm.loss.create_classification_loss("db", multi_label=True, class_counts=counts[1], num_samples=100)
    torch.testing.assert_close(ours.mean() / labels, reference(x, y), rtol=1e-5, atol=1e-6, check_dtype=False)
    # Wu et al. 2020: r = (1/n_i) / sum_j y_j / n_j, w = alpha + sigmoid(beta (r - mu)); prior shift
    # nu_i = -kappa log(N / n_i - 1); negatives softplus(lambda z) / lambda; focal (1 - p_t)^2, balance 2
    n, t, z0 = counts[1].double().numpy(), y.numpy(), x.numpy()
    repeat = (t / n).sum(axis=1, keepdims=True)
    ratio = (1 / n) / np.maximum(repeat, np.finfo(np.float32).tiny)
    weight = 0.1 + _sigmoid(10 * (ratio - 0.2))
    z = z0 + (-np.log(100 / n - 1) * 0.05 / 2)
    positive = np.log1p(np.exp(-z)) * _sigmoid(-z) ** 2 * 2
    negative = np.log1p(np.exp(2 * z)) / 2 * _sigmoid(2 * z) ** 2 * 2
    numpy = (weight * (t * positive + (1 - t) * negative)).sum(axis=1)
    np.testing.assert_allclose(ours.numpy(), numpy, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", SIGMOID)
def test_every_sigmoid_loss_takes_binary_class_indices_as_one_label(name) -> None:
    x, y = _data(6, 1, seed=4)
    loss = sw.create_loss(name, **({"class_counts": torch.tensor([80, 20])} if name == "db" else {}))
    torch.testing.assert_close(loss(x, y.squeeze(1).long()), loss(x, y))
    assert loss(x.half(), y).dtype == torch.float32  # computed in float32 at least
    assert loss(x, y).dtype == torch.float64


# -- tasks: a loss or weighter for another task is refused in one line ----------------------------------------------


def test_a_softmax_loss_for_a_sigmoid_task_and_the_reverse_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"loss 'ce' serves multiclass tasks, not this run's binary task; .*bce"):
        check_task("losses", "ce", "binary")
    with pytest.raises(ConfigError, match=r"loss 'bce' serves binary, multilabel tasks, not this run's multiclass"):
        sw.WeightedLoss("bce", task="multiclass")
    with pytest.raises(ConfigError, match="not this run's multilabel task"):
        sw.WeightedLoss("focal", task="multilabel")
    with pytest.raises(ConfigError, match="weighter 'class_ohem' serves multiclass, binary tasks"):
        sw.WeightedLoss("bce", "ohem+class_ohem", task="multilabel", num_epochs=4)
    with pytest.raises(ConfigError, match="task must be one of"):
        sw.WeightedLoss("bce", task="regression")
    for error in (ConfigError,):
        with pytest.raises(error) as raised:
            check_task("losses", "asl", "multiclass")
        assert "\n" not in str(raised.value)


def test_a_registration_says_which_tasks_and_a_bad_tasks_value_is_a_plugin_error() -> None:
    import types
    import warnings

    registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
    assert registry.tasks("losses", "focal") == ("multiclass",)
    assert registry.tasks("losses", "db") == ("binary", "multilabel")
    assert registry.tasks("weighters", "es") == ("multiclass", "binary", "multilabel")
    assert registry.tasks("weighters", "class_spl") == ("multiclass", "binary")
    bad = types.ModuleType("bad")
    bad.register_losses = sw.hookimpl(lambda register: register("odd", lambda: None, tasks=["regression"]))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        registry = load_plugins(entry_points=False, builtins=False, modules=[bad], register_timm=False)
    assert "tasks=['regression']: expected a non-empty list of multiclass, binary, multilabel" in str(
        registry.plugins[0].error
    )


# -- weighters on the new tasks -------------------------------------------------------------------------------------


def test_cb_on_a_binary_task_weighs_positives_by_timms_neg_pos_ratio() -> None:
    counts = torch.tensor([90, 10])
    weighter = sw.create_weighter("cb", class_counts=counts)
    x, y = torch.randn(8, 1), torch.tensor([0, 1, 0, 0, 1, 1, 0, 0])
    criterion = sw.WeightedLoss("bce", weighter, task="binary")
    value = criterion(x, y)
    weights = criterion.last_weights
    torch.testing.assert_close(weights, torch.where(y == 1, 10.0, 100 / 90))
    neg_pos = timm.loss.compute_class_weights([10], 100, method="neg_pos")[1]
    torch.testing.assert_close(weights[1] / weights[0], neg_pos[0])  # cb's positive/negative ratio is neg_pos
    plain = sw.create_loss("bce")(x, y)
    torch.testing.assert_close(value, (weights * plain).mean())


@pytest.mark.parametrize("name", ["cb", "es", "drw"])
@pytest.mark.parametrize("labels", [1, 3])
def test_class_weighters_weigh_each_sample_label_term_by_its_labels_counts(name, labels) -> None:
    counts = _counts(labels)
    x, y = _data(10, labels, seed=5)
    options = {"num_epochs": 5, "start_epoch": 0, "normalize": "none"} if name == "drw" else {}
    criterion = sw.WeightedLoss("bce", name, class_counts=counts, weighter_options=options)
    value = criterion(x, y)
    # each label is a two-class problem: its negatives and its positives, N = 100
    n = counts.double().numpy()
    if name == "cb":
        table = 100 / n
    else:
        beta = 99 / 100
        table = (1 - beta) / (1 - beta**n)
    expected = y.numpy() * table[1] + (1 - y.numpy()) * table[0]
    assert criterion.task == "multilabel" or criterion.task is None
    np.testing.assert_allclose(criterion.last_weights.numpy(), expected, rtol=1e-5)
    terms = -(y * torch.nn.functional.logsigmoid(x) + (1 - y) * torch.nn.functional.logsigmoid(-x))
    np.testing.assert_allclose(float(value), float((torch.as_tensor(expected) * terms).sum(1).mean()), rtol=1e-5)


def test_es_classes_normalisation_and_mean_weight_on_a_label_table() -> None:
    counts = _counts(3)
    weighter = sw.create_weighter("es", class_counts=counts, normalize="classes")
    assert weighter.class_weights.shape == (2, 3)
    torch.testing.assert_close(weighter.class_weights.mean(), torch.tensor(1.0))
    table = weighter.class_weights.double()
    assert weighter.mean_weight(counts) == pytest.approx(float((counts * table).sum() / counts.sum()))


def test_ohem_ranks_multilabel_samples_by_their_summed_loss_and_composes_with_per_term_weights() -> None:
    counts = _counts(4)
    x, y = _data(12, 4, seed=6)
    criterion = sw.WeightedLoss("bce", "ohem+cb", class_counts=counts, num_epochs=10, batch_size=12)
    value = criterion(x, y)
    summed = sw.create_loss("bce")(x, y)
    kept = torch.zeros(12)
    kept[summed.argsort(descending=True, stable=True)[:6]] = 1  # epoch 0: half of the batch, the hardest
    term_weights = y * (100 / counts[1]) + (1 - y) * (100 / counts[0])
    torch.testing.assert_close(
        criterion.last_weights, (kept[:, None] * term_weights).to(criterion.last_weights), rtol=1e-6, atol=0
    )
    terms = -(y * torch.nn.functional.logsigmoid(x) + (1 - y) * torch.nn.functional.logsigmoid(-x))
    torch.testing.assert_close(value, (kept[:, None] * term_weights * terms).sum(1).mean(), rtol=1e-6, atol=0)


def test_per_term_weights_need_a_loss_with_terms() -> None:
    class Summed(torch.nn.Module):
        tasks = ("multilabel",)

        def forward(self, logits, targets):
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1)

    criterion = sw.WeightedLoss(Summed(), "cb", class_counts=_counts(2))
    x, y = _data(4, 2)
    with pytest.raises(sw.LossError, match="gives no terms"):
        criterion(x, y)
    plain = sw.WeightedLoss(Summed(), "ohem", num_epochs=2)  # per-sample weights need no terms
    assert plain(x, y).shape == ()


def test_validation_mode_is_the_plain_mean_of_the_summed_losses() -> None:
    x, y = _data(5, 3)
    criterion = sw.WeightedLoss("asl", "cb", class_counts=_counts(3)).eval()
    torch.testing.assert_close(criterion(x, y), sw.create_loss("asl")(x, y).mean())


def test_es_positive_side_is_timms_effective_num_class_weight_up_to_scale() -> None:
    counts = _counts(5)
    ours = sw.create_weighter("es", class_counts=counts, beta=0.999).class_weights  # [2, L]
    _, timm_weights = timm.loss.compute_class_weights(counts[1], 100, method="effective_num", beta=0.999)
    torch.testing.assert_close((ours[1] / ours[1].mean()).float(), timm_weights, rtol=1e-5, atol=1e-6)
    # cb's positive/negative ratio per label is timm's neg_pos pos_weight
    cb = sw.create_weighter("cb", class_counts=counts).class_weights
    _, neg_pos = timm.loss.compute_class_weights(counts[1], 100, method="neg_pos")
    torch.testing.assert_close((cb[1] / cb[0]).float(), neg_pos, rtol=1e-5, atol=1e-6)
