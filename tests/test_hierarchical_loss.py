"""Hierarchical loss (Eq. 10) against hand computations from explicit node softmaxes."""

from __future__ import annotations

import math

import pytest
import torch

from sampleweight.builtins import models as model_plugin
from sampleweight.builtins.models.hierarchical_loss import HierarchicalLoss, hierarchical_loss
from sampleweight.errors import ConfigError
from sampleweight.taxonomy import ISIC2018_CLASSES, Taxonomy

# Decision logits of every internal node of the ISIC 2018 tree, children in tree order.
NODE_LOGITS = {
    "root": [0.3, -0.2],  # melanocytic, non_melanocytic
    "melanocytic": [1.0, 0.5],  # NV, MEL
    "non_melanocytic": [0.2, 0.1],  # benign, malignant
    "benign": [0.5, -1.0, 2.0],  # BKL, DF, VASC
    "malignant": [0.0, 0.7],  # BCC, AKIEC
}
# Each class's decisions: (node, child position), written out by hand.
PATHS = {
    "MEL": [("root", 0), ("melanocytic", 1)],
    "NV": [("root", 0), ("melanocytic", 0)],
    "BCC": [("root", 1), ("non_melanocytic", 1), ("malignant", 0)],
    "AKIEC": [("root", 1), ("non_melanocytic", 1), ("malignant", 1)],
    "BKL": [("root", 1), ("non_melanocytic", 0), ("benign", 0)],
    "DF": [("root", 1), ("non_melanocytic", 0), ("benign", 1)],
    "VASC": [("root", 1), ("non_melanocytic", 0), ("benign", 2)],
}


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def conditionals(cls: str) -> list[float]:
    """p(child | node) at each level of a class's path, from the node softmaxes."""
    return [softmax(NODE_LOGITS[node])[child] for node, child in PATHS[cls]]


def leaf_log_probs() -> torch.Tensor:
    """[1, 7] log p(class) = sum of the log conditionals along the path, ISIC column order."""
    return torch.tensor([[sum(math.log(p) for p in conditionals(c)) for c in ISIC2018_CLASSES]], dtype=torch.float64)


def expected(cls: str, gamma: float) -> float:
    return sum(-((1 - p) ** gamma) * math.log(p) for p in conditionals(cls))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("cls", ["MEL", "DF"])  # a melanocytic (2 levels) and a non-melanocytic (3) sample
def test_loss_matches_hand_computation(cls: str, gamma: float) -> None:
    loss = HierarchicalLoss(gamma=gamma)
    target = torch.tensor([ISIC2018_CLASSES.index(cls)])
    value = loss(leaf_log_probs(), target)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(expected(cls, gamma), rel=1e-10)


def test_melanocytic_ce_by_hand_has_two_terms() -> None:
    # MEL: -log p(melanocytic) - log p(MEL | melanocytic), written out once more without helpers
    root = math.exp(0.3) / (math.exp(0.3) + math.exp(-0.2))
    mel = math.exp(0.5) / (math.exp(1.0) + math.exp(0.5))
    value = HierarchicalLoss()(leaf_log_probs(), torch.tensor([0]))
    assert value.item() == pytest.approx(-math.log(root) - math.log(mel), rel=1e-10)


def test_batch_is_per_sample_without_reduction() -> None:
    scores = leaf_log_probs().expand(7, -1)
    targets = torch.arange(7)
    value = HierarchicalLoss(gamma=1.0)(scores, targets)
    assert value.shape == (7,)
    want = [expected(c, 1.0) for c in ISIC2018_CLASSES]
    assert value.tolist() == pytest.approx(want, rel=1e-10)


def test_leaf_scores_are_normalised_so_a_constant_shift_changes_nothing() -> None:
    torch.manual_seed(0)
    scores = torch.randn(5, 7)
    targets = torch.tensor([0, 1, 2, 5, 6])
    loss = HierarchicalLoss(gamma=1.0)
    assert torch.allclose(loss(scores, targets), loss(scores + torch.randn(5, 1) * 10, targets), atol=1e-5)


def test_focal_with_gamma_zero_is_ce_and_focal_is_smaller() -> None:
    torch.manual_seed(1)
    scores = torch.randn(8, 7).log_softmax(1)
    targets = torch.randint(0, 7, (8,))
    ce = hierarchical_loss()(scores, targets)
    assert torch.equal(hierarchical_loss("focal", gamma=0.0)(scores, targets), ce)
    assert bool((hierarchical_loss("focal")(scores, targets) < ce).all())


def test_confident_correct_prediction_has_near_zero_loss() -> None:
    scores = torch.full((1, 7), -30.0)
    scores[0, 4] = 0.0
    assert HierarchicalLoss()(scores, torch.tensor([4])).item() < 1e-10


def test_gradients_are_finite_and_reach_only_the_relevant_scores() -> None:
    scores = leaf_log_probs().float().requires_grad_(True)
    HierarchicalLoss(gamma=1.0)(scores, torch.tensor([0])).sum().backward()
    grad = scores.grad[0]
    assert torch.isfinite(grad).all()
    assert (grad[:2] != 0).all()  # MEL, NV: the melanocytic subtree decides
    # the non-melanocytic classes enter only through the root's normaliser: gradient proportional to p
    ratio = grad[2:] / scores.detach()[0, 2:].exp()
    assert (ratio > 0).all()
    assert torch.allclose(ratio, ratio[0].expand(5), rtol=1e-5)


def test_custom_taxonomy_with_a_deeper_scc_sample() -> None:
    tax = Taxonomy(
        {
            "melanocytic": ["NV", "MEL"],
            "non_melanocytic": {"benign": ["BKL", "DF", "VASC"], "malignant": ["BCC", "AK", "SCC"]},
        },
        classes=["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"],
    )
    root, non_mel, malignant = softmax([0.1, 0.4]), softmax([-0.3, 0.6]), softmax([0.2, 0.0, 1.1])
    p_scc = root[1] * non_mel[1] * malignant[2]
    p_bcc = root[1] * non_mel[1] * malignant[0]
    p_ak = root[1] * non_mel[1] * malignant[1]
    benign_mass = root[1] * non_mel[0]
    # spread the rest over the other classes; only the sums under each node matter
    scores = torch.tensor(
        [
            [math.log(root[0] / 2), math.log(root[0] / 2), math.log(p_bcc), math.log(p_ak)]
            + [math.log(benign_mass / 3)] * 3
            + [math.log(p_scc)]
        ],
        dtype=torch.float64,
    )
    value = hierarchical_loss(taxonomy=tax, class_names=tax.classes)(scores, torch.tensor([7]))
    want = -math.log(root[1]) - math.log(non_mel[1]) - math.log(malignant[2])
    assert value.item() == pytest.approx(want, rel=1e-10)


def test_factory_options_and_errors() -> None:
    assert hierarchical_loss().gamma == 0.0
    assert hierarchical_loss("focal").gamma == 1.0
    assert hierarchical_loss("focal", gamma=2.0).gamma == 2.0
    with pytest.raises(ConfigError, match="base must be 'ce' or 'focal'"):
        hierarchical_loss("bce")
    with pytest.raises(ConfigError, match=r"gamma=1\.0 needs base='focal'"):
        hierarchical_loss("ce", gamma=1.0)
    with pytest.raises(ConfigError, match="gamma >= 0"):
        hierarchical_loss("focal", gamma=-1.0)
    with pytest.raises(ConfigError, match="class 'SCC' in the data is not in the taxonomy"):
        hierarchical_loss(class_names=[*ISIC2018_CLASSES, "SCC"])
    with pytest.raises(ConfigError, match="the data has 8 classes but the taxonomy has 7"):
        hierarchical_loss(num_classes=8)
    with pytest.raises(ConfigError, match=r"expects leaf scores \[B, 7\]"):
        hierarchical_loss()(torch.zeros(2, 8), torch.tensor([0, 1]))


def test_plugin_registers_the_hierarchical_loss() -> None:
    registered: dict[str, object] = {}
    model_plugin.register_losses(lambda name, factory, **info: registered.__setitem__(name, (factory, info)))
    assert registered["hierarchical"][0] is hierarchical_loss and registered["hierarchical"][1]["bases"] == (
        "ce",
        "focal",
    )


def test_loss_follows_the_device_of_the_scores() -> None:
    loss = HierarchicalLoss(gamma=1.0)  # never moved with .to(device), as losses often are not
    value = loss(torch.randn(2, 7, device="meta"), torch.zeros(2, dtype=torch.long, device="meta"))
    assert value.shape == (2,) and value.device.type == "meta"
