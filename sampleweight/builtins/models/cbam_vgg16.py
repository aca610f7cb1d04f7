"""The paper's flat model: VGG16 convolutional layers -> CBAM -> one fully connected layer.

::

    image [B, 3, 299, 299]
      -> backbone (timm vgg16, features_only: output of the last max-pool)   [B, 512, 9, 9]
      -> CBAM: channel attention, then spatial attention                    [B, 512, 9, 9]
      -> global average pool -> dropout 0.5 -> fc                            [B, num_classes]

No VGG classifier MLP. ``backbone`` takes any timm model supporting ``features_only``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from sampleweight.builtins.models._backbone import create_backbone, data_config, feature_channels, place
from sampleweight.builtins.models.cbam import Cbam

__all__ = ["CbamOutput", "CbamVGG16", "cbam_vgg16"]


@dataclass(frozen=True)
class CbamOutput:
    """Everything `CbamVGG16.forward_attention` computes for one batch.

    Attributes:
        logits: Class scores [B, num_classes] (what ``forward`` returns).
        channel: CBAM channel weights [B, C] in [0, 1]; ``channel.argmax(1)`` is the "best channel".
        spatial: CBAM spatial map [B, 1, h, w] in [0, 1].
        features: The backbone's feature map [B, C, h, w], before attention.
    """

    logits: Tensor
    channel: Tensor
    spatial: Tensor
    features: Tensor


class CbamVGG16(nn.Module):
    """Flat classifier: a timm backbone's last feature map, CBAM, average pooling, one linear layer.

    Args:
        num_classes: Outputs of the classifier (0: no classifier, ``forward`` returns pooled features).
        backbone: timm model name (default ``vgg16``, the paper's).
        pretrained: Load the backbone's timm pretrained weights (ImageNet for ``vgg16``).
        pretrained_path: Local state dict for the backbone (implies ``pretrained``).
        in_chans: Input channels.
        drop_rate: Dropout before the classifier (0.5 in the paper).
        reduction: CBAM channel-attention bottleneck ratio.
        kernel_size: CBAM spatial-attention convolution size.
        **backbone_kwargs: Passed to ``timm.create_model`` for the backbone (``pretrained_cfg``,
            ``pretrained_cfg_overlay``, ``cache_dir``, ``drop_path_rate``, ``device``, ``dtype``...).

    Example:
        >>> import torch
        >>> model = CbamVGG16(num_classes=7, backbone="test_resnet")
        >>> out = model.forward_attention(torch.randn(2, 3, 64, 64))
        >>> out.logits.shape, out.channel.shape, out.spatial.shape
        (torch.Size([2, 7]), torch.Size([2, 96]), torch.Size([2, 1, 2, 2]))
    """

    def __init__(
        self,
        num_classes: int = 7,
        *,
        backbone: str = "vgg16",
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        reduction: int = 16,
        kernel_size: int = 7,
        **backbone_kwargs: Any,
    ):
        super().__init__()
        self.backbone = create_backbone(
            backbone, pretrained=pretrained, pretrained_path=pretrained_path, in_chans=in_chans, **backbone_kwargs
        )
        self.num_features = feature_channels(self.backbone)
        self.cbam = Cbam(self.num_features, reduction=reduction, kernel_size=kernel_size)
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = data_config(
            self.backbone, architecture="cbam_vgg16", num_classes=num_classes, in_chans=in_chans
        )
        self.default_cfg = self.pretrained_cfg
        place(self, backbone_kwargs)

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        reference = next(self.cbam.parameters())
        self.fc = (
            nn.Linear(self.num_features, num_classes, device=reference.device, dtype=reference.dtype)
            if num_classes > 0
            else nn.Identity()
        )
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}
        self.default_cfg = self.pretrained_cfg

    def forward_features(self, x: Tensor) -> Tensor:
        """The attended feature map [B, C, h, w] (backbone, then CBAM)."""
        return self.cbam(self.backbone(x)[-1])[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool, dropout and classify an attended feature map.

        Args:
            x: Output of `forward_features`.
            pre_logits: Return the pooled features [B, C] instead of the logits.
        """
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores [B, num_classes] (logits) for images ``x`` [B, in_chans, H, W]."""
        return self.forward_head(self.forward_features(x))

    def forward_attention(self, x: Tensor) -> CbamOutput:
        """Logits together with the CBAM maps and the backbone features (for attention figures).

        Args:
            x: Images [B, in_chans, H, W].

        Returns:
            A `CbamOutput`; its ``logits`` equal ``forward(x)`` (in eval mode).
        """
        features = self.backbone(x)[-1]
        attended, attention = self.cbam(features)
        return CbamOutput(
            logits=self.forward_head(attended),
            channel=attention.channel,
            spatial=attention.spatial,
            features=features,
        )


def cbam_vgg16(pretrained: bool = False, **kwargs: Any) -> CbamVGG16:
    """The paper's flat model (timm entry point): VGG16 features, CBAM, one linear layer.

    Args:
        pretrained: ImageNet weights for the backbone (timm's pretrained config).
        **kwargs: `CbamVGG16` options: ``num_classes`` (7), ``backbone`` ("vgg16"), ``drop_rate``
            (0.5), ``pretrained_path``, ``in_chans``, and backbone options such as ``cache_dir``.

    Returns:
        The model.
    """
    return CbamVGG16(pretrained=pretrained, **kwargs)
