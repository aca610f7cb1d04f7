"""Built-in model plugin: the paper's two models and the hierarchical loss that trains the second.

Registers, through the same hooks a third-party plugin uses:

- models ``cbam_vgg16`` (flat: VGG16 -> CBAM -> fc) and ``hierarchical_vgg16`` (VGG16 -> dynamic
  CBAM -> LSTM over a `sampleweight.taxonomy.Taxonomy`), added to timm's registry by the core;
- loss ``hierarchical`` (Eq. 10: a CE or focal term per level of the true path).

``docs/models.md`` describes the architectures, shapes, weights and the loss.
"""

from __future__ import annotations

from sampleweight.builtins.models.cbam import Attention, Cbam
from sampleweight.builtins.models.cbam_vgg16 import CbamOutput, CbamVGG16, cbam_vgg16
from sampleweight.builtins.models.hierarchical_loss import HierarchicalLoss, hierarchical_loss
from sampleweight.builtins.models.hierarchical_vgg16 import HierarchicalVGG16, TreeOutput, hierarchical_vgg16
from sampleweight.builtins.models.published import CBAM_VGG16, HIERARCHICAL_VGG16
from sampleweight.hookspecs import Register, hookimpl

__all__ = [
    "Attention",
    "Cbam",
    "CbamOutput",
    "CbamVGG16",
    "HierarchicalLoss",
    "HierarchicalVGG16",
    "TreeOutput",
    "cbam_vgg16",
    "hierarchical_loss",
    "hierarchical_vgg16",
    "register_losses",
    "register_models",
]


@hookimpl
def register_models(register: Register) -> None:
    """Register ``cbam_vgg16`` and ``hierarchical_vgg16`` (timm entry points), saying what each is: the paper's
    epochs (150 flat, 250 hierarchical), the hierarchical one's per-level loss, and the paper's figures."""
    register(
        "cbam_vgg16",
        cbam_vgg16,
        summary="the paper's flat model: a timm backbone (VGG16) -> CBAM -> dropout -> fc",
        default=True,
        epochs=150,
        published=CBAM_VGG16,
    )
    register(
        "hierarchical_vgg16",
        hierarchical_vgg16,
        summary="the paper's hierarchical model: backbone -> dynamic CBAM -> LSTM, one decision per tree level",
        default=True,
        hierarchical=True,
        loss="hierarchical",
        epochs=250,
        published=HIERARCHICAL_VGG16,
    )


@hookimpl
def register_losses(register: Register) -> None:
    """Register the ``hierarchical`` loss (options ``base``, ``gamma``, ``taxonomy``)."""
    register(
        "hierarchical",
        hierarchical_loss,
        summary="Eq. 10: a ce or focal term per level of the true path of a label tree",
        bases=("ce", "focal"),
        soft_targets=True,
    )
