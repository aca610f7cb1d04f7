"""The paper's hierarchical model (after Barata & Marques 2019): VGG16 -> dynamic CBAM -> LSTM decoder.

The diagnosis is decoded level by level along a `Taxonomy` (default ISIC 2018: melanocytic vs
non-melanocytic, then nevus | melanoma, or benign | malignant and the final class)::

    image [B, 3, 299, 299] -> backbone (vgg16 last max-pool) ----------------> F [B, 512, 9, 9]
    h0, c0 = tanh(W_h mean(F)), tanh(W_c mean(F))                               [B, hidden]
    at internal node n, with (h, c) the LSTM state of n's parent ((h0, c0) at the root):
        F', attention_n = CBAM(F | h)             channel [B, 512], spatial [B, 1, 9, 9]
        context = dropout(mean over locations of F')                            [B, 512]
        h_n, c_n = LSTMCell([context, embed(n)], (h, c))     embed(root) = START token
        logits_n = W_n dropout(h_n)                                              [B, children of n]
    log p(leaf) = sum over the leaf's path of log_softmax(logits_n)[child]      [B, num_classes]

Every internal node is evaluated in each forward pass: the root from (h0, c0), and a child node from
its parent's LSTM state and the embedding of the decision that leads to it. This is teacher forcing
along every path at once (5 LSTM steps for ISIC 2018, cheap next to VGG16), and it makes the leaf
probabilities the product of the conditional decisions, so they sum to 1 exactly. Because the node
reached by a decision depends only on that decision's path, greedy decoding (argmax at each level,
the inference of Barata & Marques) reads the same node outputs: `HierarchicalVGG16.greedy_decode`.

Each internal node has its own linear classifier over its children; the decision embedding is
indexed by internal node (the embedding of a decision is that of the node it leads to; row 0, the
root's, is the START token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sampleweight.builtins.models._backbone import create_backbone, data_config, feature_channels, place
from sampleweight.builtins.models.cbam import Attention, Cbam
from sampleweight.errors import ConfigError
from sampleweight.taxonomy import Taxonomy, as_taxonomy

__all__ = ["HierarchicalVGG16", "TreeOutput", "hierarchical_vgg16"]


@dataclass(frozen=True)
class TreeOutput:
    """Everything `HierarchicalVGG16.forward_tree` computes for one batch.

    Attributes:
        leaf_log_probs: log p(class) [B, num_classes] in the taxonomy's class order (``forward``'s
            output); ``exp`` sums to 1 over the classes.
        node_logits: Per internal node (taxonomy name), the decision logits [B, children of the node]
            in the node's child order; ``log_softmax`` gives log p(child | node).
        attention: Per internal node, the dynamic CBAM maps used for that decision: ``channel``
            [B, C] and ``spatial`` [B, 1, h, w], both in [0, 1].
        features: The backbone's feature map [B, C, h, w], before attention.
    """

    leaf_log_probs: Tensor
    node_logits: dict[str, Tensor]
    attention: dict[str, Attention]
    features: Tensor


class HierarchicalVGG16(nn.Module):
    """Hierarchical classifier: backbone features, dynamic CBAM and an LSTM decoding a taxonomy.

    ``forward(x)`` returns leaf log-probabilities [B, num_classes], so ``argmax`` ranks classes by
    the product of the conditional decisions; `greedy_decode` gives the level-by-level argmax path
    instead. `forward_tree` returns per-node logits and attention maps.

    Args:
        taxonomy: The label tree (default: ISIC 2018); its ``classes`` fix the output order. A
            `Taxonomy.to_config` dict is accepted too.
        num_classes: Must equal the taxonomy's number of classes when given.
        backbone: timm model name (default ``vgg16``, the paper's).
        pretrained: Load the backbone's timm pretrained weights (ImageNet for ``vgg16``).
        pretrained_path: Local state dict for the backbone (implies ``pretrained``).
        in_chans: Input channels.
        drop_rate: Dropout on the attended context and on the LSTM output (0.5 in the paper).
        hidden_size: LSTM hidden size (also the width of the dynamic spatial-attention scoring).
        embed_size: Size of the decision embeddings.
        reduction: CBAM channel-attention bottleneck ratio.
        kernel_size: CBAM spatial-attention convolution size.
        **backbone_kwargs: Passed to ``timm.create_model`` for the backbone (``cache_dir``,
            ``pretrained_cfg_overlay``, ``device``, ``dtype``, ...).

    Raises:
        ConfigError: ``num_classes`` differs from the taxonomy, or a backbone option is invalid.

    Example:
        >>> import torch
        >>> model = HierarchicalVGG16(backbone="test_resnet").eval()
        >>> tree = model.forward_tree(torch.randn(2, 3, 64, 64))
        >>> torch.allclose(tree.leaf_log_probs.exp().sum(1), torch.ones(2))
        True
        >>> sorted(tree.node_logits)
        ['benign', 'malignant', 'melanocytic', 'non_melanocytic', 'root']
    """

    def __init__(
        self,
        taxonomy: Taxonomy | Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        *,
        backbone: str = "vgg16",
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        hidden_size: int = 512,
        embed_size: int = 128,
        reduction: int = 16,
        kernel_size: int = 7,
        **backbone_kwargs: Any,
    ):
        super().__init__()
        self.taxonomy = as_taxonomy(taxonomy)
        if num_classes is not None and num_classes != self.taxonomy.num_classes:
            raise ConfigError(
                f"hierarchical_vgg16 predicts the {self.taxonomy.num_classes} classes of its taxonomy "
                f"{list(self.taxonomy.classes)}, but num_classes={num_classes}; pass a taxonomy whose "
                f"leaves are the data's classes (taxonomy=Taxonomy(tree, classes=...))"
            )
        self.num_classes = self.taxonomy.num_classes
        self.drop_rate = drop_rate
        self.backbone = create_backbone(
            backbone, pretrained=pretrained, pretrained_path=pretrained_path, in_chans=in_chans, **backbone_kwargs
        )
        self.num_features = channels = feature_channels(self.backbone)
        internal = self.taxonomy.internal_nodes
        self.attention = Cbam(
            channels, reduction=reduction, kernel_size=kernel_size, state_size=hidden_size, attention_size=hidden_size
        )
        self.init_h = nn.Linear(channels, hidden_size)
        self.init_c = nn.Linear(channels, hidden_size)
        self.embedding = nn.Embedding(len(internal), embed_size)
        self.lstm = nn.LSTMCell(channels + embed_size, hidden_size)
        self.drop = nn.Dropout(drop_rate)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, len(self.taxonomy.children(n))) for n in internal)
        self._register_tree_buffers()
        self.pretrained_cfg = data_config(
            self.backbone, architecture="hierarchical_vgg16", num_classes=self.num_classes, in_chans=in_chans
        )
        self.pretrained_cfg["classifier"] = "heads"
        self.default_cfg = self.pretrained_cfg
        place(self, backbone_kwargs)

    def _register_tree_buffers(self) -> None:
        """Index tensors that turn per-node outputs into leaf scores and greedy paths."""
        tax = self.taxonomy
        internal = tax.internal_nodes
        position = {node: i for i, node in enumerate(internal)}
        self._parents = [None if tax.parent(n) is None else position[tax.parent(n)] for n in internal]
        # Edge (node i, child k) is column offsets[i] + k of the concatenated per-node log-softmaxes.
        offsets, total = [], 0
        for node in internal:
            offsets.append(total)
            total += len(tax.children(node))
        depth = tax.max_depth
        leaf_edges = torch.full((tax.num_classes, depth), total, dtype=torch.long)  # total: a zero column
        for leaf, path in enumerate(tax.paths):
            for level, (node, child) in enumerate(path):
                leaf_edges[leaf, level] = offsets[position[node]] + child
        # Where a decision leads: internal node j as j, class c as len(internal) + c; -1 pads.
        width = max(len(tax.children(n)) for n in internal)
        targets = torch.full((len(internal), width), -1, dtype=torch.long)
        for i, node in enumerate(internal):
            for k, kid in enumerate(tax.children(node)):
                targets[i, k] = position[kid] if kid in position else len(internal) + tax.class_index(kid)
        self.register_buffer("_leaf_edges", leaf_edges, persistent=False)
        self.register_buffer("_child_targets", targets, persistent=False)

    def get_classifier(self) -> nn.Module:
        """The per-node decision classifiers (one linear layer per internal node)."""
        return self.heads

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's feature map [B, C, h, w] (attention is per decision, see `forward_tree`)."""
        return self.backbone(x)[-1]

    def forward_tree(self, x: Tensor) -> TreeOutput:
        """Evaluate every decision of the taxonomy.

        Args:
            x: Images [B, in_chans, H, W].

        Returns:
            A `TreeOutput` with per-node logits and attention maps and the leaf log-probabilities.
        """
        features = self.forward_features(x)
        pooled = features.mean(dim=(2, 3))
        root_state = (torch.tanh(self.init_h(pooled)), torch.tanh(self.init_c(pooled)))
        states: list[tuple[Tensor, Tensor]] = []
        node_logits: dict[str, Tensor] = {}
        attention: dict[str, Attention] = {}
        for i, node in enumerate(self.taxonomy.internal_nodes):
            parent = self._parents[i]
            hidden, cell = root_state if parent is None else states[parent]
            attended, attention[node] = self.attention(features, hidden)
            context = self.drop(attended.mean(dim=(2, 3)))
            decision = self.embedding.weight[i].expand(x.shape[0], -1)
            hidden, cell = self.lstm(torch.cat([context, decision], dim=1), (hidden, cell))
            states.append((hidden, cell))
            node_logits[node] = self.heads[i](self.drop(hidden))
        return TreeOutput(
            leaf_log_probs=self._leaf_log_probs(node_logits),
            node_logits=node_logits,
            attention=attention,
            features=features,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Leaf log-probabilities [B, num_classes] in the taxonomy's class order.

        ``log p(class) = sum over its path of log p(child | node)``: ranking by it ranks by the product
        of the conditional decisions. See `greedy_decode` for the level-by-level prediction.
        """
        return self.forward_tree(x).leaf_log_probs

    @torch.no_grad()
    def greedy_decode(self, x: Tensor | TreeOutput) -> Tensor:
        """The greedy path prediction: the argmax child at each level, from the root to a class.

        This is the inference of Barata & Marques (2019). It can differ from ``forward(x).argmax(1)``
        when a confident early decision leads to an uncertain subtree.

        Args:
            x: Images [B, in_chans, H, W], or the `TreeOutput` of `forward_tree` to reuse.

        Returns:
            Class indices [B] (taxonomy class order).
        """
        tree = x if isinstance(x, TreeOutput) else self.forward_tree(x)
        internal = self.taxonomy.internal_nodes
        batch = tree.leaf_log_probs.shape[0]
        current = torch.zeros(batch, dtype=torch.long, device=tree.leaf_log_probs.device)  # at the root
        for i, node in enumerate(internal):  # breadth-first: a node's parent was decided before it
            choice = tree.node_logits[node].argmax(dim=1)
            current = torch.where(current == i, self._child_targets[i][choice], current)
        return current - len(internal)

    def _leaf_log_probs(self, node_logits: Mapping[str, Tensor]) -> Tensor:
        # log-softmax in float32 at least: half-precision log-probabilities lose the small classes
        ordered = [_wide(node_logits[node]) for node in self.taxonomy.internal_nodes]
        edges = torch.cat([logits.log_softmax(dim=1) for logits in ordered], dim=1)
        return F.pad(edges, (0, 1))[:, self._leaf_edges].sum(dim=-1)


def _wide(logits: Tensor) -> Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def hierarchical_vgg16(pretrained: bool = False, **kwargs: Any) -> HierarchicalVGG16:
    """The paper's hierarchical model (timm entry point): VGG16, dynamic CBAM, LSTM over a taxonomy.

    Args:
        pretrained: ImageNet weights for the backbone (timm's pretrained config).
        **kwargs: `HierarchicalVGG16` options: ``taxonomy`` (ISIC 2018), ``num_classes``,
            ``backbone`` ("vgg16"), ``drop_rate`` (0.5), ``hidden_size``, ``embed_size``,
            ``pretrained_path``, ``in_chans``, and backbone options such as ``cache_dir``.

    Returns:
        The model; ``forward`` gives leaf log-probabilities.
    """
    return HierarchicalVGG16(pretrained=pretrained, **kwargs)
