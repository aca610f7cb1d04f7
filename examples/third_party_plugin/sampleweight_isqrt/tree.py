"""An example third-party hierarchical model: a malignancy tree on any timm backbone.

It decides benign or malignant first, then the diagnosis within that branch: its own small label tree over
the seven ISIC classes, not the paper's. Registered with what it is (``hierarchical=True``, its ``taxonomy``,
the per-level ``loss`` it trains with, its ``epochs``), sampleweight trains, grids, evaluates and reports it as
it does its own hierarchical model, and ``sampleweight retrain`` refuses it, without naming it anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import Tensor, nn

import sampleweight as sw
from sampleweight.taxonomy import as_taxonomy

MALIGNANCY_TREE: dict[str, Any] = {"malignant": ["MEL", "BCC", "AKIEC"], "benign": ["NV", "BKL", "DF", "VASC"]}
"""Benign or malignant first, then the diagnosis (two decisions to every leaf)."""


class MalignancyTree(nn.Module):
    """A timm backbone's pooled features, one linear decision per internal node of the label tree.

    ``forward`` returns leaf log-probabilities [B, C] in the taxonomy's class order: the sum, along each class's
    path from the root, of ``log_softmax`` of the decisions taken.

    Args:
        taxonomy: The label tree (a `sampleweight.Taxonomy` or its ``to_config()`` dict; default: the malignancy
            tree over the ISIC 2018 classes).
        num_classes: Must equal the taxonomy's number of classes when given.
        backbone: Any timm model name (default ``resnet18``).
        pretrained: Load the backbone's timm pretrained weights.
        pretrained_path: A local weights file for the backbone instead (sampleweight's ``--pretrained-path``).
        drop_rate: Dropout on the pooled features.
        **timm_options: What timm passes an entry point (its ``pretrained_cfg``, ``cache_dir``, ...).
    """

    def __init__(
        self,
        taxonomy: sw.Taxonomy | Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        *,
        backbone: str = "resnet18",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        drop_rate: float = 0.0,
        **timm_options: Any,
    ) -> None:
        super().__init__()
        self.taxonomy = sw.Taxonomy(MALIGNANCY_TREE) if taxonomy is None else as_taxonomy(taxonomy)
        if num_classes is not None and num_classes != self.taxonomy.num_classes:
            raise ValueError(f"num_classes={num_classes}, but the taxonomy has {self.taxonomy.num_classes} classes")
        overlay = {"file": pretrained_path} if pretrained_path else None
        self.backbone = timm.create_model(
            backbone,
            pretrained=pretrained or bool(pretrained_path),
            pretrained_cfg_overlay=overlay,
            cache_dir=timm_options.get("cache_dir"),
            num_classes=0,
        )
        self.dropout = nn.Dropout(drop_rate)
        width = self.backbone.num_features
        self.decisions = nn.ModuleDict(
            {node: nn.Linear(width, len(self.taxonomy.children(node))) for node in self.taxonomy.internal_nodes}
        )

    def forward_nodes(self, x: Tensor) -> dict[str, Tensor]:
        """Each internal node's decision logits [B, its children]."""
        features = self.dropout(self.backbone(x))
        return {node: head(features) for node, head in self.decisions.items()}

    def forward(self, x: Tensor) -> Tensor:
        decisions = {node: logits.log_softmax(-1) for node, logits in self.forward_nodes(x).items()}
        leaves = [
            torch.stack([decisions[node][:, child] for node, child in path]).sum(0) for path in self.taxonomy.paths
        ]
        return torch.stack(leaves, dim=1)


def malignancy_tree(pretrained: bool = False, **kwargs: Any) -> MalignancyTree:
    """A malignancy tree (benign or malignant, then the diagnosis) on a timm backbone (timm entry point)."""
    return MalignancyTree(pretrained=pretrained, **kwargs)
