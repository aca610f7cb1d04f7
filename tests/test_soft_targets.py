"""Soft targets (class distributions, as timm's Mixup gives) and label smoothing through every built-in loss, and
the weighters on mixed samples: each loss against a float64 numpy re-derivation of its formula, values and
gradients (central differences), and a one-hot distribution against the class index, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.data.mixup import mixup_target
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

import sampleweight as sw
from sampleweight import functional as SF
from sampleweight.plugins import PluginInfo, Registered
from sampleweight.taxonomy import ISIC2018_CLASSES, Taxonomy, as_taxonomy

COUNTS = [400, 120, 60, 25, 9, 3, 1]
LOSSES = {  # name -> options; the hierarchical loss needs the 7 ISIC 2018 classes
    "ce": {},
    "focal": {"gamma": 1.0},
    "focal_alpha": {"gamma": 0.5, "alpha": [0.5, 1.0, 2.0, 1.5, 0.25, 3.0, 1.0]},
    "logit_adjusted": {"tau": 1.5},
    "balanced_softmax": {},
    "ldam": {"s": 5.0},
    "hierarchical": {},
    "hierarchical_focal": {"base": "focal", "gamma": 2.0},
}


def build(key: str, classes: int = 7, **options) -> nn.Module:
    name = key.split("_alpha")[0].replace("hierarchical_focal", "hierarchical")
    facts = {"class_counts": torch.tensor(COUNTS[:classes]), "num_classes": classes}
    if name == "hierarchical":
        facts = {"class_names": list(ISIC2018_CLASSES)} if classes == 7 else {"taxonomy": Taxonomy(["a", "b"])}
    opts = {**LOSSES[key], **options}
    if "alpha" in opts:
        opts["alpha"] = opts["alpha"][:classes]
    return sw.create_loss(name, **{k: v for k, v in facts.items() if k != "num_classes" or name == "focal"}, **opts)


# -- numpy re-derivations, float64 ---------------------------------------------------------------------------------


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_hierarchical_hard(scores: np.ndarray, cls: int, tree, gamma: float) -> np.ndarray:
    """Eq. 10 for every row with class ``cls``: a focal term per decision on its path, from leaf log-scores."""

    def mass(node) -> np.ndarray:
        leaves = list(tree.leaves_under(node))
        part = scores[:, leaves]
        top = part.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(part - top).sum(axis=1, keepdims=True)))[:, 0]

    total = np.zeros(scores.shape[0])
    for node, child in tree.paths[cls]:
        log_p = mass(tree.children(node)[child]) - mass(node)
        total += -((1 - np.exp(log_p)) ** gamma) * log_p
    return total


def reference(key: str, z: np.ndarray, y: np.ndarray, classes: int, eps: float) -> np.ndarray:
    """The documented soft form of each loss, on targets smoothed to (1 - eps) y + eps / C (the per-class offsets and
    margins rounded to float32, as the losses keep them in float32 buffers)."""
    y = (1 - eps) * y + eps / classes
    counts = np.array(COUNTS[:classes], dtype=np.float64)
    opts = LOSSES[key]
    if key == "ce":
        return -(y * np_log_softmax(z)).sum(1)
    if key.startswith("focal"):
        log_p = np_log_softmax(z)
        alpha = np.array(opts.get("alpha", [1.0] * 7)[:classes])
        return -(y * alpha * (1 - np.exp(log_p)) ** opts["gamma"] * log_p).sum(1)
    if key == "logit_adjusted":
        log_prior = np.log(counts / counts.sum()).astype(np.float32).astype(np.float64)
        return -(y * np_log_softmax(z + opts["tau"] * log_prior)).sum(1)
    if key == "balanced_softmax":
        log_counts = np.log(counts / counts.sum()).astype(np.float32) + np.float32(np.log(counts.sum()))
        return -(y * np_log_softmax(z + log_counts.astype(np.float64))).sum(1)
    if key == "ldam":
        margins = counts**-0.25
        margins = (margins * (0.5 / margins.max())).astype(np.float32).astype(np.float64)
        return -(y * np_log_softmax(opts["s"] * (z - y * margins))).sum(1)
    tree = as_taxonomy(None if classes == 7 else Taxonomy(["a", "b"]))
    gamma = opts.get("gamma", 0.0)
    per_class = np.stack([np_hierarchical_hard(z, c, tree, gamma) for c in range(classes)], axis=1)
    return (y * per_class).sum(1)


def numeric_gradient(function, z: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """d sum(function(z)) / dz by central differences."""
    grad = np.zeros_like(z)
    for index in np.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up).sum() - function(down).sum()) / (2 * step)
    return grad


def random_case(batch: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 2
    mixed = torch.distributions.Dirichlet(torch.full((classes,), 0.5)).sample((batch,))
    return logits, mixed.double() / mixed.double().sum(1, keepdim=True)


# -- every loss: numpy re-derivation, one-hot = class index ----------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize(("batch", "classes"), [(6, 7), (1, 7), (5, 2)])
@pytest.mark.parametrize("key", list(LOSSES))
def test_each_soft_loss_equals_its_formula_in_value_and_gradient(key: str, batch: int, classes: int, eps: float):
    torch.manual_seed(batch * 10 + classes)
    logits, mixed = random_case(batch, classes, seed=batch + classes)
    loss = build(key, classes, label_smoothing=eps)
    z = logits.clone().requires_grad_()
    losses = loss(z, mixed)
    losses.sum().backward()
    y = mixed.numpy()
    expected = reference(key, logits.numpy(), y, classes, eps)
    np.testing.assert_allclose(losses.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    grad = numeric_gradient(lambda v: reference(key, v, y, classes, eps), logits.numpy())
    np.testing.assert_allclose(z.grad.numpy(), grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("batch", "classes"), [(8, 7), (1, 7), (6, 2)])
@pytest.mark.parametrize("key", list(LOSSES))
def test_a_one_hot_distribution_gives_the_loss_and_gradient_of_its_class_index(key, batch, classes, dtype):
    generator = torch.Generator().manual_seed(batch)
    logits = (torch.randn(batch, classes, generator=generator) * 3).to(dtype)
    targets = torch.tensor([0, 0, 2, 2, 0, 5, 2, 0][:batch]) % classes  # classes 1, 3, 4, 6 absent
    loss = build(key, classes)
    hard_z, soft_z = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    hard, soft = loss(hard_z, targets), loss(soft_z, torch.nn.functional.one_hot(targets, classes).to(dtype))
    hard.sum().backward()
    soft.sum().backward()
    tight = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-7}
    assert soft.dtype == hard.dtype == dtype
    torch.testing.assert_close(soft, hard, **tight)
    torch.testing.assert_close(soft_z.grad, hard_z.grad, **tight)


@pytest.mark.parametrize("key", list(LOSSES))
def test_label_smoothing_of_a_class_index_is_the_soft_form_on_the_smoothed_one_hot(key: str) -> None:
    logits, _ = random_case(5, 7, seed=3)
    targets = torch.tensor([0, 6, 2, 2, 4])
    smoothed = build(key, label_smoothing=0.2)(logits, targets)
    expected = reference(key, logits.numpy(), np.eye(7)[targets.numpy()], 7, 0.2)
    np.testing.assert_allclose(smoothed.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(smoothed, build(key)(logits, targets))


def test_soft_ce_is_timms_soft_target_cross_entropy_per_sample() -> None:
    logits, mixed = random_case(9, 7, seed=1)
    ours = sw.create_loss("ce")(logits, mixed)
    theirs = torch.stack([SoftTargetCrossEntropy()(logits[j : j + 1], mixed[j : j + 1]) for j in range(9)])
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_smoothed_ce_is_timms_label_smoothing_cross_entropy_per_sample() -> None:
    logits, _ = random_case(9, 7, seed=2)
    targets = torch.randint(0, 7, (9,), generator=torch.Generator().manual_seed(0))
    ours = sw.create_loss("ce", label_smoothing=0.1)(logits, targets)
    theirs = torch.stack([LabelSmoothingCrossEntropy(0.1)(logits[j : j + 1], targets[j : j + 1]) for j in range(9)])
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_smoothing_a_mixed_target_is_what_timms_mixup_does() -> None:
    targets = torch.tensor([0, 3, 6, 1])
    mixed = mixup_target(targets, 7, lam=0.7, smoothing=0.0)  # lam e_a + (1 - lam) e_b, b the flipped batch
    theirs = mixup_target(targets, 7, lam=0.7, smoothing=0.1)
    torch.testing.assert_close(SF.smooth_targets(mixed, 0.1), theirs)
    logits, _ = random_case(4, 7, seed=4)
    for key in ("ce", "focal", "ldam"):
        torch.testing.assert_close(build(key, label_smoothing=0.1)(logits, mixed.double()), build(key)(logits, theirs))


def test_every_builtin_loss_takes_label_smoothing_and_refuses_it_outside_zero_to_one() -> None:
    for key in ("ce", "focal", "logit_adjusted", "balanced_softmax", "ldam", "hierarchical"):
        assert build(key, label_smoothing=0.1).label_smoothing == 0.1
        with pytest.raises((ValueError, sw.ConfigError), match="label_smoothing must lie in"):
            build(key, label_smoothing=1.0)
    from sampleweight.factory import check_options  # what --loss-option label_smoothing=0.1 is checked with

    check_options("losses", ["ce", "focal", "logit_adjusted", "balanced_softmax", "ldam"], {"label_smoothing": 0.1})


def test_targets_of_another_form_are_refused_naming_both_forms() -> None:
    with pytest.raises(ValueError, match=r"class indices \[B\] \(integers\) or class distributions \[B, C\]"):
        SF.focal_loss(torch.randn(3, 4), torch.ones(3, 5))


# -- WeightedLoss and the weighters on mixed samples ---------------------------------------------------------------


class Spy(sw.BaseWeighter):
    def forward(self, batch: sw.WeightingBatch) -> torch.Tensor:
        self.seen = batch
        return torch.ones_like(batch.losses)


class ClassTable(sw.BaseWeighter):
    """A third-party weighter written before soft targets: it reads ``targets`` only."""

    def forward(self, batch: sw.WeightingBatch) -> torch.Tensor:
        return torch.tensor([1.0, 2.0, 3.0, 4.0]).to(batch.losses)[batch.targets]


def test_the_weighter_sees_the_soft_targets_and_their_class_of_largest_mass(registry) -> None:
    spy = Spy()
    criterion = sw.WeightedLoss("ce", spy, registry=registry)
    soft = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.4, 0.6, 0.0], [0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]])
    logits = torch.randn(4, 4)
    loss = criterion(logits, soft)
    assert torch.equal(spy.seen.soft_targets, soft) and spy.seen.targets.tolist() == [0, 2, 0, 3]  # a tie: lowest
    torch.testing.assert_close(spy.seen.losses, SF.cross_entropy(logits, soft))
    torch.testing.assert_close(loss, spy.seen.losses.mean())
    criterion(torch.randn(2, 4), torch.tensor([1, 2]))
    assert spy.seen.soft_targets is None and spy.seen.targets.tolist() == [1, 2]
    table = sw.WeightedLoss("ce", ClassTable(), registry=registry)  # an existing plugin keeps working
    table(torch.randn(4, 4), soft)
    assert table.last_weights.tolist() == [1.0, 3.0, 1.0, 4.0]


@pytest.mark.parametrize("name", ["cb", "es", "drw"])
@pytest.mark.parametrize("normalize", ["none", "classes", "batch"])
def test_class_weighters_weigh_a_mixed_sample_by_its_target_mass(registry, name: str, normalize: str) -> None:
    counts = torch.tensor([50, 20, 5, 1])
    options = {"start_epoch": 0} if name == "drw" else {}
    weighter = sw.create_weighter(name, registry=registry, class_counts=counts, normalize=normalize, **options)
    table = weighter.weighter.class_weights if name == "drw" else weighter.class_weights
    lam = 0.3
    a, b = torch.tensor([0, 1, 3, 2, 3]), torch.tensor([3, 1, 0, 2, 2])
    soft = lam * torch.nn.functional.one_hot(a, 4).float() + (1 - lam) * torch.nn.functional.one_hot(b, 4).float()
    losses = torch.rand(5)
    weights = weighter(sw.WeightingBatch(losses, soft.argmax(1), epoch=1, soft_targets=soft))
    expected = (lam * table[a].double() + (1 - lam) * table[b].double()).float()
    if normalize == "batch":
        expected = expected / expected.mean()
    torch.testing.assert_close(weights, expected)
    one_hot = torch.nn.functional.one_hot(a, 4).float()  # a one-hot target: exactly the class weight
    assert torch.equal(
        weighter(sw.WeightingBatch(losses, a, epoch=1, soft_targets=one_hot)), weighter(sw.WeightingBatch(losses, a, 1))
    )


def test_class_weights_of_a_smoothed_loss_use_the_unsmoothed_mixing_mass(registry) -> None:
    counts = [30, 10, 3, 1]
    soft = torch.tensor([[0.6, 0.4, 0.0, 0.0], [0.0, 0.0, 0.2, 0.8]])
    plain = sw.WeightedLoss("ce", "cb", class_counts=counts, registry=registry)
    smoothed = sw.WeightedLoss("ce", "cb", class_counts=counts, label_smoothing=0.1, registry=registry)
    logits = torch.randn(2, 4)
    plain(logits, soft)
    smoothed(logits, soft)
    table = SF.class_balance_weights(torch.tensor(counts))
    torch.testing.assert_close(smoothed.last_weights, soft @ table)
    assert torch.equal(smoothed.last_weights, plain.last_weights)
    assert not torch.allclose(smoothed.last_losses, plain.last_losses)


@pytest.mark.parametrize("spec", ["spl", "ohem", "class_spl", "class_ohem"])
def test_selection_ranks_the_soft_losses_and_class_aware_selection_uses_the_class_of_largest_mass(registry, spec):
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(12, 4, generator=generator)
    soft = torch.distributions.Dirichlet(torch.full((4,), 0.3)).sample((12,))
    criterion = sw.WeightedLoss("focal", spec, gamma=1.0, pace=0.0, registry=registry)
    criterion(logits, soft)
    losses = SF.focal_loss(logits, soft, gamma=1.0)
    torch.testing.assert_close(criterion.last_losses, losses)
    hardest = "ohem" in spec
    if spec.startswith("class_"):
        expected = SF.class_curriculum_mask(losses, soft.argmax(1), 0.5, hardest=hardest)
    else:
        expected = SF.curriculum_mask(losses, 6, hardest=hardest)
    assert torch.equal(criterion.last_weights, expected)


@pytest.mark.parametrize("name", ["ce", "focal", "logit_adjusted", "balanced_softmax", "ldam", "hierarchical"])
def test_weighted_loss_takes_soft_targets_for_every_builtin_loss(registry, name: str) -> None:
    facts = {"class_names": list(ISIC2018_CLASSES)} if name == "hierarchical" else {}
    criterion = sw.WeightedLoss(name, "es", class_counts=COUNTS, registry=registry, **facts)
    logits, soft = random_case(6, 7, seed=0)
    value = criterion(logits.requires_grad_(), soft)
    value.backward()
    expected = (criterion.last_weights * criterion.loss(logits.detach(), soft)).mean()
    torch.testing.assert_close(value.detach(), expected)
    torch.testing.assert_close(criterion.last_weights, (soft.float() @ criterion.weighter.class_weights).double())


def test_soft_targets_reach_only_a_loss_that_declares_them(registry) -> None:
    def hard_only() -> nn.Module:
        return nn.CrossEntropyLoss(reduction="none")  # takes probabilities, but was not registered as such

    registry.losses["hard_only"] = Registered("hard_only", hard_only, PluginInfo("third_party"))
    soft = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    criterion = sw.WeightedLoss("hard_only", "none", registry=registry)
    criterion(torch.randn(2, 2), torch.tensor([0, 1]))  # class indices: fine
    with pytest.raises(sw.ConfigError, match=r"does not take soft targets .*registered with soft_targets=True"):
        criterion(torch.randn(2, 2), soft)
    registry.losses["hard_only"] = Registered("hard_only", hard_only, PluginInfo("third_party"), {"soft_targets": True})
    sw.WeightedLoss("hard_only", "none", registry=registry)(torch.randn(2, 2), soft)
    module = nn.CrossEntropyLoss(reduction="none")
    sw.WeightedLoss(module, "none", registry=registry)(torch.randn(2, 2), soft)  # a module that does not say: trusted
    module.soft_targets = False
    with pytest.raises(sw.ConfigError, match="does not take soft targets"):
        sw.WeightedLoss(module, "none", registry=registry)(torch.randn(2, 2), soft)
    with pytest.raises(sw.ConfigError, match="must be class distributions"):
        sw.WeightedLoss("ce", "none", registry=registry)(torch.randn(2, 2), torch.ones(2, 2, dtype=torch.long))
    assert sw.create_loss("ce").soft_targets and registry.info("losses", "ldam")["soft_targets"]


def test_gather_rows_returns_soft_target_columns_unchanged_in_one_process() -> None:
    from sampleweight import distributed

    soft = torch.tensor([[0.25, 0.75], [1 / 3, 2 / 3]])
    packed = torch.cat([torch.tensor([[0.5, 1.0], [2.5, 0.0]], dtype=torch.float64), soft.double()], dim=1)
    rows, sizes = distributed.gather_rows(packed)
    assert sizes == [2] and torch.equal(rows[:, 2:].float(), soft)  # float32 -> float64 -> float32: exact
