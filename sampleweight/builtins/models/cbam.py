"""CBAM, the Convolutional Block Attention Module (Woo et al. 2018), with its maps exposed.

Channel attention, then spatial attention, on a feature map ``F`` [B, C, h, w]::

    channel weights  a = sigmoid(W1 (relu(W0 avgpool(F)) + relu(W0 maxpool(F))))       [B, C]
    F' = a * F
    spatial map      s = sigmoid(conv7x7([mean_c(F'); max_c(F')]))                       [B, 1, h, w]
    F'' = s * F'

With a ``state_size``, both attentions are *dynamic*: conditioned on a state vector ``h`` (the LSTM
hidden state of the current decision level in the hierarchical model), in the additive style of
Bahdanau / show-attend-tell attention::

    a = sigmoid(W1 tanh(relu(W0 avgpool(F)) + relu(W0 maxpool(F)) + U_c h))
    s = sigmoid(conv7x7([mean_c(F'); max_c(F')]) + v^T tanh(W_k F' + U_s h))

(``W_k`` and ``v`` are 1x1 convolutions, so the state term is scored at every location.) Both maps lie
in [0, 1]; `Cbam.forward` returns them with the attended features, unlike ``timm.layers.CbamModule``,
which only returns the product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Attention", "Cbam", "ChannelAttention", "SpatialAttention"]


@dataclass(frozen=True)
class Attention:
    """The two CBAM maps for one batch.

    Attributes:
        channel: Channel weights [B, C] in [0, 1].
        spatial: Spatial map [B, 1, h, w] in [0, 1] (the resolution of the feature map).
    """

    channel: Tensor
    spatial: Tensor


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared bottleneck MLP on average- and max-pooled features.

    Args:
        channels: C, channels of the feature map.
        reduction: Bottleneck ratio (C // reduction hidden units, at least 1); 16 as in CBAM.
        state_size: If set, the weights are conditioned on a state vector of this size.
    """

    def __init__(self, channels: int, reduction: int = 16, state_size: int | None = None):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.state = nn.Linear(state_size, hidden, bias=False) if state_size else None

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """Channel weights [B, C] in [0, 1] for features ``x`` [B, C, h, w] (and ``state`` [B, S])."""
        hidden = torch.relu(self.fc1(x.mean(dim=(2, 3)))) + torch.relu(self.fc1(x.amax(dim=(2, 3))))
        if _check_state(self.state, state):
            hidden = torch.tanh(hidden + self.state(state))
        return torch.sigmoid(self.fc2(hidden))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a convolution over the channel-wise mean and max.

    Args:
        kernel_size: Size of that convolution; 7 as in CBAM.
        channels: C, needed only for the dynamic form.
        state_size: If set, the map is conditioned on a state vector of this size.
        attention_size: Width of the additive state-feature scoring (dynamic form only).
    """

    def __init__(
        self,
        kernel_size: int = 7,
        channels: int | None = None,
        state_size: int | None = None,
        attention_size: int = 256,
    ):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        if state_size:
            if not channels:
                raise ValueError("dynamic spatial attention needs the number of channels")
            self.key = nn.Conv2d(channels, attention_size, 1)
            self.state = nn.Linear(state_size, attention_size, bias=False)
            self.score = nn.Conv2d(attention_size, 1, 1)
        else:
            self.key = self.state = self.score = None

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """Spatial map [B, 1, h, w] in [0, 1] for features ``x`` [B, C, h, w] (and ``state`` [B, S])."""
        logits = self.conv(torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1))
        if _check_state(self.state, state):
            keys = self.key(x) + self.state(state)[:, :, None, None]
            logits = logits + self.score(torch.tanh(keys))
        return torch.sigmoid(logits)


class Cbam(nn.Module):
    """Channel attention followed by spatial attention, static or conditioned on a state.

    Args:
        channels: C, channels of the feature map.
        reduction: Channel-attention bottleneck ratio.
        kernel_size: Spatial-attention convolution size.
        state_size: If set, both attentions are conditioned on a state vector of this size (the
            module docstring gives the equations).
        attention_size: Width of the dynamic spatial scoring (ignored when static).

    Example:
        >>> cbam = Cbam(512)
        >>> features, attention = cbam(torch.randn(2, 512, 9, 9))
        >>> features.shape, attention.channel.shape, attention.spatial.shape
        (torch.Size([2, 512, 9, 9]), torch.Size([2, 512]), torch.Size([2, 1, 9, 9]))
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        state_size: int | None = None,
        attention_size: int = 256,
    ):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, state_size)
        self.spatial = SpatialAttention(kernel_size, channels, state_size, attention_size)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Attention]:
        """Attend to ``x`` [B, C, h, w].

        Args:
            x: Feature map.
            state: [B, state_size], required exactly when the module is dynamic.

        Returns:
            The attended features [B, C, h, w] and the `Attention` maps that produced them.
        """
        channel = self.channel(x, state)
        x = x * channel[:, :, None, None]
        spatial = self.spatial(x, state)
        return x * spatial, Attention(channel=channel, spatial=spatial)


def _check_state(projection: nn.Module | None, state: Tensor | None) -> bool:
    """Whether the attention is dynamic; a state must be given exactly when it is."""
    if projection is None and state is not None:
        raise ValueError("this attention is static (no state_size); it takes no state")
    if projection is not None and state is None:
        raise ValueError("this attention is conditioned on a state; pass state=[B, state_size]")
    return projection is not None
