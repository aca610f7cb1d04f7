"""Colour constancy: Shades of Gray (Finlayson and Trezzi 2004), as used for dermoscopy by Barata et al. 2015.

The illuminant of an image is estimated per channel by a Minkowski p-norm of its pixel values,
``e_c = (mean_x I_c(x)^p)^(1/p)`` (p = 1 is Gray World, p = infinity is max-RGB; the paper uses p = 6),
normalised to unit length, ``ê = e / ||e||_2``. Each channel is then scaled by ``1 / (sqrt(3) * ê_c)``, so
that the estimated illuminant becomes neutral grey: an image whose illuminant is already grey
(``ê_c = 1/sqrt(3)`` for every c) is left unchanged. Results are clipped to the value range.

Reference: C. Barata, M. E. Celebi, J. S. Marques, "Improving dermoscopy image classification using color
constancy", IEEE J. Biomed. Health Inform. 19(3), 2015.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sampleweight.errors import ConfigError

__all__ = ["illuminant", "shades_of_gray"]

_EPS = 1e-12


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (p >= 1 or math.isinf(p)):
        raise ConfigError(f"the Minkowski norm p of Shades of Gray must be a number >= 1 (or inf), got {p!r}")
    return float(p)


def illuminant(image: np.ndarray, p: float = 6.0) -> np.ndarray:
    """The Shades of Gray illuminant estimate of an RGB image (or of each image of a batch), unit length.

    Args:
        image: ``[H, W, 3]`` or a batch ``[N, H, W, 3]``, any real dtype.
        p: Minkowski norm (>= 1; ``inf`` for max-RGB).

    Returns:
        float64 ``[3]`` (or ``[N, 3]``): ``e / ||e||_2`` with ``e_c = (mean(I_c^p))^(1/p)``; ``1/sqrt(3)``
        each for an all-zero image.
    """
    p = _check_p(p)
    x = np.asarray(image, dtype=np.float64)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"expected a channels-last RGB image [H, W, 3] or batch [N, H, W, 3], got {x.shape}")
    x = x.reshape(*x.shape[:-3], -1, 3)  # [..., HW, 3]
    top = np.maximum(x.max(axis=(-2, -1), keepdims=True, initial=0.0), _EPS)
    x = x / top  # divide by the max first: x^p stays in range
    if math.isinf(p):
        e = x.max(axis=-2, initial=0.0)
    elif p == 6.0:  # the paper's case, without pow (3x faster)
        x2 = x * x
        e = np.mean(x2 * x2 * x2, axis=-2) ** (1 / 6)
    else:
        e = np.mean(x**p, axis=-2) ** (1 / p)
    norm = np.linalg.norm(e, axis=-1, keepdims=True)
    return np.where(norm < _EPS, 1 / math.sqrt(3), e / np.maximum(norm, _EPS))


def shades_of_gray(image: np.ndarray | Tensor, p: float = 6.0) -> np.ndarray | Tensor:
    """Colour-normalise an RGB image by Shades of Gray with Minkowski norm ``p`` (Barata et al. 2015).

    Deterministic. Channels are scaled by ``1 / (sqrt(3) * ê_c)`` where ``ê`` is `illuminant`, then clipped.

    Args:
        image: A numpy array ``[H, W, 3]`` or ``[N, H, W, 3]`` (channels last), or a torch tensor
            ``[3, H, W]`` or ``[B, 3, H, W]`` (channels first). Each image of a batch gets its own
            illuminant. uint8 images stay uint8 (rounded half to even, clipped to [0, 255]); float images
            are taken to be in [0, 1] and are clipped to it.
        p: Minkowski norm (>= 1; 6 in the paper; ``inf`` is max-RGB).

    Returns:
        The normalised image, same type, shape and dtype as ``image``.

    Example:
        >>> import numpy as np
        >>> grey = np.full((2, 2, 3), 100, np.uint8)
        >>> bool((shades_of_gray(grey) == grey).all())  # a grey illuminant is left unchanged
        True
    """
    if isinstance(image, Tensor):
        return _shades_of_gray_torch(image, _check_p(p))
    array = np.asarray(image)
    if array.dtype == np.uint8 and array.ndim in (3, 4) and array.shape[-1] == 3:
        return _shades_of_gray_uint8(array, _check_p(p))
    gain = 1.0 / (math.sqrt(3) * np.maximum(illuminant(array, p), _EPS))  # [3] or [N, 3]
    out = np.clip(array.astype(np.float64) * gain[..., None, None, :], 0.0, 1.0)
    return out.astype(array.dtype, copy=False)


def _shades_of_gray_uint8(array: np.ndarray, p: float) -> np.ndarray:
    """uint8 fast path, same result as the float formula: a uint8 image has only 256 values per channel, so
    ``mean(I^p)`` comes from a histogram and the scaling is a lookup table (2-3x faster than float64)."""
    height, width = array.shape[-3:-1]
    batch = array.reshape(-1, height * width, 3)
    n = len(batch)
    # One key per (image, channel, value), so that one bincount makes every histogram and one take applies
    # every lookup table.
    keys = (np.arange(n, dtype=np.intp)[:, None, None] * 3 + np.arange(3)) * 256 + batch
    counts = np.bincount(keys.ravel(), minlength=n * 3 * 256).reshape(n, 3, 256)
    values = np.arange(256, dtype=np.float64)
    if math.isinf(p):
        e = np.where(counts > 0, values, 0.0).max(axis=-1)
    else:
        e = (counts @ (values / 255) ** p / (height * width)) ** (1 / p)
    norm = np.linalg.norm(e, axis=-1, keepdims=True)
    e = np.where(norm < _EPS, 1 / math.sqrt(3), e / np.maximum(norm, _EPS))
    gain = 1.0 / (math.sqrt(3) * np.maximum(e, _EPS))
    tables = np.clip(np.rint(values * gain[..., None]), 0, 255).astype(np.uint8)  # [n, 3, 256]
    return tables.reshape(-1)[keys].reshape(array.shape)


def _shades_of_gray_torch(image: Tensor, p: float) -> Tensor:
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected a channels-first RGB tensor [3, H, W] or [B, 3, H, W], got {tuple(image.shape)}")
    x = image.to(torch.float64 if image.device.type == "cpu" else torch.float32)
    flat = x.flatten(-2)  # [..., 3, HW]
    top = flat.amax(dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    flat = flat / top
    e = flat.amax(dim=-1) if math.isinf(p) else flat.pow(p).mean(dim=-1).pow(1 / p)  # [..., 3]
    norm = e.norm(dim=-1, keepdim=True)
    e = torch.where(norm < _EPS, torch.full_like(e, 1 / math.sqrt(3)), e / norm.clamp_min(_EPS))
    gain = 1.0 / (math.sqrt(3) * e.clamp_min(_EPS))
    out = x * gain[..., None, None]
    if image.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.clamp(0, 1).to(image.dtype)
