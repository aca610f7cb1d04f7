"""The hierarchical loss (the paper's Eq. 10): one CE or focal term per level of the true path.

For a sample of class y whose path from the root is ``n_1 -> n_2 -> ... -> n_L -> y`` (L = 2 for
melanocytic, 3 for non-melanocytic lesions in ISIC 2018)::

    l = sum_{l=1..L} l_level(p(c_l | n_l))        c_l: the child of n_l on y's path
    CE:    l_level(p) = -log p
    focal: l_level(p) = -(1 - p)^gamma log p      (gamma = 0 is CE)

The loss reads leaf scores [B, C], not per-node logits, so it plugs into the same per-sample loss
slot as the flat losses (every weighter works unchanged, and class-based weighters see the leaf
class). The conditionals are recovered exactly from the leaves::

    log p(child | node) = logsumexp(scores of the classes under child) - logsumexp(scores under node)

For the hierarchical model's output (leaf log-probabilities, the product of the conditionals) this is
the model's own decision probability. Any other leaf scores (e.g. a flat model's logits) are read as
unnormalised log-probabilities, which makes this a hierarchical softmax loss on a flat classifier.

**Soft targets** (a class distribution ``y`` [B, C], from mixing or label smoothing): the expected loss
under the target, ``l = sum_c y_c l(c)`` with ``l(c)`` the loss above for class c. It is linear in the
target, so a one-hot ``y`` gives exactly the hard loss and a mixed pair gives ``lambda l(a) + (1 - lambda)
l(b)`` (the mixup criterion of Zhang et al., ICLR 2018). Eq. 10 has one term per decision on the true path,
and a mixed target has several paths (which may share their first decisions); the expectation needs no rule
for merging them, and costs one hard loss per class (C evaluations of a few small softmaxes per sample).
``label_smoothing = eps`` turns the target into ``(1 - eps) y + eps / C`` first, as for the flat losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sampleweight.errors import ConfigError
from sampleweight.functional import focal_loss, target_distribution
from sampleweight.taxonomy import Taxonomy, as_taxonomy

__all__ = ["HierarchicalLoss", "hierarchical_loss"]


class HierarchicalLoss(nn.Module):
    """Per-sample hierarchical loss: the sum of per-level CE/focal terms on the true path (Eq. 10).

    Args:
        taxonomy: The label tree (default ISIC 2018); scores and targets use its class order.
        gamma: Focal-loss exponent for every level's term; 0 (default) gives cross-entropy.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` first (default 0).

    Example:
        >>> loss = HierarchicalLoss(gamma=1.0)
        >>> leaf_log_probs = torch.randn(4, 7).log_softmax(dim=1)
        >>> loss(leaf_log_probs, torch.tensor([0, 1, 2, 6])).shape
        torch.Size([4])
    """

    soft_targets = True
    """Takes class distributions [B, C] as targets too: the expected loss under them (module doc)."""

    def __init__(
        self, taxonomy: Taxonomy | Mapping[str, Any] | None = None, *, gamma: float = 0.0, label_smoothing: float = 0.0
    ):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"the hierarchical loss needs gamma >= 0, got {gamma}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.taxonomy = as_taxonomy(taxonomy)
        self.gamma = float(gamma)
        tax = self.taxonomy
        nodes = tax.nodes
        index = {node: i for i, node in enumerate(nodes)}
        internal = tax.internal_nodes
        membership = torch.zeros(len(nodes), tax.num_classes, dtype=torch.bool)
        for i, node in enumerate(nodes):
            membership[i, list(tax.leaves_under(node))] = True
        # Children of each internal node as node indices; len(nodes) points at a -inf column.
        width = max(len(tax.children(n)) for n in internal)
        children = torch.full((len(internal), width), len(nodes), dtype=torch.long)
        for i, node in enumerate(internal):
            children[i, : len(tax.children(node))] = torch.tensor([index[kid] for kid in tax.children(node)])
        # Per class and level: the deciding internal node (row of `children`) and the child taken.
        # Levels past a class's depth point at the root's first child and are masked out.
        depth = tax.max_depth
        decider = torch.zeros(tax.num_classes, depth, dtype=torch.long)
        taken = torch.zeros(tax.num_classes, depth, dtype=torch.long)
        valid = torch.zeros(tax.num_classes, depth, dtype=torch.bool)
        for leaf, path in enumerate(tax.paths):
            for level, (node, child) in enumerate(path):
                decider[leaf, level], taken[leaf, level] = internal.index(node), child
                valid[leaf, level] = True
        self.register_buffer("_membership", membership, persistent=False)
        self.register_buffer("_children", children, persistent=False)
        self.register_buffer("_decider", decider, persistent=False)
        self.register_buffer("_taken", taken, persistent=False)
        self.register_buffer("_valid", valid, persistent=False)

    def level_logits(self, scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The decisions on each sample's true path, as logits over the deciding node's children.

        Args:
            scores: Leaf scores [B, C] (log-probabilities or unnormalised), taxonomy class order.
            targets: Class indices [B].

        Returns:
            ``(logits [B, L, K], child [B, L], valid [B, L])`` with L the taxonomy's depth and K the
            widest node: ``logits[j, l].log_softmax(-1)[child[j, l]]`` is log p(c_l | n_l) of sample j
            (padding entries are -inf); ``valid`` is False past a sample's depth.
        """
        if scores.ndim != 2 or scores.shape[1] != self.taxonomy.num_classes:
            raise ConfigError(
                f"the hierarchical loss expects leaf scores [B, {self.taxonomy.num_classes}] for the taxonomy "
                f"classes {list(self.taxonomy.classes)}, got shape {list(scores.shape)}"
            )
        if self._membership.device != scores.device:  # losses are often not moved with .to(device)
            self.to(scores.device)
        scores = scores if scores.dtype == torch.float64 else scores.float()
        masked = scores.unsqueeze(1).masked_fill(~self._membership, float("-inf"))
        node_scores = masked.logsumexp(dim=-1)  # [B, nodes]: log of the mass under each node
        padded = torch.cat([node_scores, node_scores.new_full((scores.shape[0], 1), float("-inf"))], dim=1)
        deciders = self._decider[targets]  # [B, L]
        logits = padded[torch.arange(scores.shape[0], device=scores.device)[:, None, None], self._children[deciders]]
        return logits, self._taken[targets], self._valid[targets]

    def forward(self, scores: Tensor, targets: Tensor) -> Tensor:
        """Per-sample losses [B] (no reduction).

        Args:
            scores: Leaf scores [B, C]: the hierarchical model's leaf log-probabilities (or any leaf
                log-scores), in the taxonomy's class order.
            targets: Class indices [B], or class distributions [B, C] (the expected loss, module doc).
        """
        if scores.ndim == 2:
            scores = scores if scores.dtype == torch.float64 else scores.float()
            distribution = target_distribution(scores, targets, label_smoothing=self.label_smoothing)
        else:
            distribution = None  # level_logits names the wrong shape
        if distribution is None:
            return self.hard_losses(scores, targets)
        batch, classes = distribution.shape
        every_class = torch.arange(classes, device=scores.device).repeat(batch)  # [B * C]: class c of each sample
        per_class = self.hard_losses(scores.repeat_interleave(classes, dim=0), every_class).view(batch, classes)
        return (distribution * per_class).sum(dim=1)

    def hard_losses(self, scores: Tensor, targets: Tensor) -> Tensor:
        """Per-sample losses [B] for class indices [B] (Eq. 10)."""
        logits, child, valid = self.level_logits(scores, targets)
        batch, levels, width = logits.shape
        terms = focal_loss(logits.reshape(-1, width), child.reshape(-1), gamma=self.gamma).view(batch, levels)
        return torch.where(valid, terms, torch.zeros_like(terms)).sum(dim=1)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}, classes={list(self.taxonomy.classes)}"


def hierarchical_loss(
    base: str = "ce",
    gamma: float | None = None,
    taxonomy: Taxonomy | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> HierarchicalLoss:
    """Factory of the ``"hierarchical"`` loss plugin.

    Args:
        base: Per-level loss: ``"ce"`` (Eq. 5) or ``"focal"`` (Eq. 6).
        gamma: Focal exponent (``base="focal"`` only; default 1, the paper's best).
        taxonomy: The label tree (default ISIC 2018).
        class_names: The data set's classes (a fact the core passes); checked against the taxonomy.
        num_classes: The data set's number of classes (a fact); checked against the taxonomy.
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) y + eps / C`` (default 0), then the
            expected loss under it is taken (module doc).

    Returns:
        A `HierarchicalLoss`.

    Raises:
        ConfigError: Unknown ``base``, ``gamma`` with ``base="ce"``, or data classes that are not
            the taxonomy's.
    """
    if base == "ce":
        if gamma:
            raise ConfigError(f"gamma={gamma} needs base='focal'; base='ce' is the focal loss with gamma=0")
        gamma = 0.0
    elif base == "focal":
        gamma = 1.0 if gamma is None else gamma
    else:
        raise ConfigError(f"hierarchical loss base must be 'ce' or 'focal', got {base!r}")
    tax = as_taxonomy(taxonomy)
    if class_names is not None:
        tax.check_classes(class_names)
    elif num_classes is not None and num_classes != tax.num_classes:
        raise ConfigError(
            f"the data has {num_classes} classes but the taxonomy has {tax.num_classes} "
            f"({list(tax.classes)}); pass a taxonomy whose leaves are the data's classes"
        )
    return HierarchicalLoss(tax, gamma=gamma, label_smoothing=label_smoothing)
