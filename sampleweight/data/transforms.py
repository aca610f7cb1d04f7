"""From a file to a training tensor: decode, colour-normalise and resize once; augment online.

Offline (once per image, stored in the cache, `sampleweight.data.cache`): `preprocess_image` decodes a file
(`decode_image`), applies Shades of Gray colour constancy (p = 6) at the decoded resolution and resizes to
``image_size`` x ``image_size`` (bicubic, antialiased; the aspect ratio is not kept, as in the paper's
299x299).

Online (every epoch, per sample), as in the paper ("random crops, flips, colour transformations"), with
the parameters of `Augmentation`:

- `train_transform`: torchvision ``transforms.v2`` on one uint8 ``[3, H, W]`` tensor, for DataLoader
  workers;
- `BatchAugment`: the same augmentation as one ``nn.Module`` on a whole uint8 ``[B, 3, H, W]`` batch on
  the device (random resized crop and flips by one ``affine_grid``/``grid_sample``, colour jitter by
  per-sample factors and a per-sample 3x3 hue rotation), so that the CPU only copies cached bytes and a
  fast GPU never waits for data. It runs on CPU tensors as well.

Both end with ``float32`` scaling to [0, 1] and normalisation by ``mean``/``std`` (ImageNet's by default,
what timm's pretrained backbones expect); `eval_transform` / ``BatchAugment.eval()`` only resize and
normalise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import v2

from sampleweight.data.colour import shades_of_gray
from sampleweight.errors import ConfigError, DataError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augmentation",
    "BatchAugment",
    "decode_image",
    "eval_transform",
    "preprocess_image",
    "train_transform",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augmentation:
    """The online augmentation, shared by `train_transform` and `BatchAugment`.

    Attributes:
        scale: Range of the crop's area as a fraction of the image (random resized crop).
        ratio: Range of the crop's aspect ratio (width / height), sampled log-uniformly.
        hflip: Probability of a horizontal flip.
        vflip: Probability of a vertical flip (dermoscopy has no up or down).
        brightness: Brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn from ``[1 - c, 1 + c]``.
        saturation: Saturation factor drawn from ``[1 - s, 1 + s]``.
        hue: Hue shift drawn from ``[-h, h]`` (fraction of a full turn; small: colour is diagnostic).
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augmentation scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"augmentation ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("hflip", "vflip"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"augmentation {name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"augmentation {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"augmentation hue must be in [0, 0.5], got {self.hue}")


# ----------------------------------------------------------------------------------------------- offline


def decode_image(path: str | Path, *, draft_size: int | None = None) -> np.ndarray:
    """Decode an image file to RGB.

    Args:
        path: Image file (JPEG, PNG, ...).
        draft_size: If given and the file is a JPEG, let the decoder downscale by 1/2, 1/4 or 1/8 while
            keeping both sides >= ``draft_size`` (much faster for large originals; the final resize
            antialiases anyway).

    Returns:
        uint8 [H, W, 3].

    Raises:
        DataError: The file is missing, truncated or not a readable image (the message names it).
    """
    try:
        with Image.open(path) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode image {path}: {err} (corrupt or truncated file?)") from None


def preprocess_image(
    image: str | Path | np.ndarray,
    image_size: int,
    *,
    colour_constancy: bool = True,
    minkowski_p: float = 6.0,
) -> np.ndarray:
    """Decode (if a path), colour-normalise and resize one image: what the cache stores per image.

    Args:
        image: An image file, or a uint8 ``[H, W, 3]`` array.
        image_size: Side S of the square output.
        colour_constancy: Apply Shades of Gray (`shades_of_gray`) before resizing.
        minkowski_p: Its Minkowski norm (6 in the paper).

    Returns:
        uint8 [S, S, 3], C-contiguous.

    Raises:
        DataError: The file cannot be decoded.
    """
    size = _check_size(image_size)
    if isinstance(image, (str, Path)):
        array = decode_image(image, draft_size=size)
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {array.dtype} {array.shape}")
    if colour_constancy:
        array = shades_of_gray(array, minkowski_p)
    if array.shape[:2] != (size, size):
        array = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC))
    return np.ascontiguousarray(array)


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}")
    return int(image_size)


# ----------------------------------------------------------------------------------------------- per sample


def train_transform(
    image_size: int = 299,
    augmentation: Augmentation | None = None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The online training augmentation for one uint8 ``[3, H, W]`` tensor (torchvision ``transforms.v2``).

    Args:
        image_size: Output side.
        augmentation: Parameters (default `Augmentation()`).
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel std divided by.

    Returns:
        Random resized crop -> horizontal and vertical flips -> colour jitter -> float32 -> normalise.
    """
    aug = augmentation or Augmentation()
    size = _check_size(image_size)
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=aug.scale, ratio=aug.ratio, antialias=True),
            v2.RandomHorizontalFlip(aug.hflip),
            v2.RandomVerticalFlip(aug.vflip),
            v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def eval_transform(
    image_size: int = 299, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> v2.Compose:
    """The evaluation transform for one uint8 ``[3, H, W]`` tensor: resize (if needed), float32, normalise."""
    size = _check_size(image_size)
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


# ----------------------------------------------------------------------------------------------- per batch

# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=torch.float64,
)
_LUMA = (0.2989, 0.587, 0.114)  # as torchvision's rgb_to_grayscale


class BatchAugment(nn.Module):
    """`Augmentation` on a whole batch on its device: random resized crops, flips, colour jitter, normalise.

    In training mode each sample gets its own crop (area fraction, aspect ratio, position), flips and
    brightness, contrast, saturation and hue factors, all drawn in one call and applied with batched
    tensor ops (one ``grid_sample`` for crop + flips, reflection padding never needed). In eval mode it
    only resizes (if the input is not ``image_size``) and normalises. Use it on uint8 batches straight
    from a cache-backed data set (``augment="batch"`` in `build_datasets`), after moving them to the GPU.

    Args:
        image_size: Output side S.
        augmentation: Parameters (default `Augmentation()`).
        mean: Per-channel mean, after scaling to [0, 1].
        std: Per-channel std.

    Example:
        >>> import torch
        >>> augment = BatchAugment(64)
        >>> batch = torch.randint(0, 256, (4, 3, 80, 80), dtype=torch.uint8)
        >>> augment(batch, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 64, 64])
        >>> augment.eval()(batch).dtype
        torch.float32
    """

    def __init__(
        self,
        image_size: int = 299,
        augmentation: Augmentation | None = None,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.image_size = _check_size(image_size)
        self.augmentation = augmentation or Augmentation()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        yiq = _RGB_TO_YIQ
        self.register_buffer("rgb_to_yiq", yiq.float(), persistent=False)
        self.register_buffer("yiq_to_rgb", torch.linalg.inv(yiq).float(), persistent=False)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, {self.augmentation}"

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment (training mode) or just resize (eval mode), then normalise.

        Args:
            images: ``[B, 3, H, W]``, uint8 (0-255) or float (0-1).
            generator: Random generator on ``images.device`` for reproducible draws (default: torch's).

        Returns:
            float32 ``[B, 3, S, S]``, normalised by ``mean``/``std``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a batch [B, 3, H, W], got shape {tuple(images.shape)}")
        scale = 255.0 if images.dtype == torch.uint8 else 1.0  # folded into the colour map, not a pass of its own
        x = images.float()
        if self.training:
            draws = torch.rand(x.shape[0], 10, generator=generator, device=x.device)
            x = self._crop_and_flip(x, draws[:, :6])
            return self._colour_and_normalise(x, draws[:, 6:], scale)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return x.mul(1 / (scale * self.std)).sub_(self.mean / self.std)

    def _crop_and_flip(self, x: Tensor, u: Tensor) -> Tensor:
        aug = self.augmentation
        area = aug.scale[0] + u[:, 0] * (aug.scale[1] - aug.scale[0])
        log_ratio = math.log(aug.ratio[0]) + u[:, 1] * (math.log(aug.ratio[1]) - math.log(aug.ratio[0]))
        ratio = torch.exp(log_ratio)
        # Half-extents of the crop in normalised coordinates ([-1, 1] spans the image).
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        centre_x = (1 - width) * (2 * u[:, 2] - 1)
        centre_y = (1 - height) * (2 * u[:, 3] - 1)
        flip_x = torch.where(u[:, 4] < aug.hflip, -1.0, 1.0)
        flip_y = torch.where(u[:, 5] < aug.vflip, -1.0, 1.0)
        zero = torch.zeros_like(width)
        theta = torch.stack(
            [torch.stack([width * flip_x, zero, centre_x], 1), torch.stack([zero, height * flip_y, centre_y], 1)], 1
        )
        size = (x.shape[0], 3, self.image_size, self.image_size)
        grid = F.affine_grid(theta, list(size), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour_and_normalise(self, x: Tensor, u: Tensor, scale: float) -> Tensor:
        """Brightness, contrast, saturation and hue as one per-sample affine colour map, then normalisation.

        Each of the four is linear in the pixel values (brightness scales; contrast blends with the mean
        grey; saturation blends with the pixel's grey; hue rotates the YIQ chroma plane), so together they
        are ``x -> M x + o`` with a 3x3 ``M`` and offset ``o`` per sample, applied in one batched matmul
        with the normalisation folded in; the result is clipped once to the valid range (torchvision clips
        after each step, which differs only where a step saturates).
        """
        aug = self.augmentation
        batch = x.shape[0]
        brightness = 1 + aug.brightness * (2 * u[:, 0] - 1)
        contrast = 1 + aug.contrast * (2 * u[:, 1] - 1)
        saturation = 1 + aug.saturation * (2 * u[:, 2] - 1)
        eye = torch.eye(3, device=x.device).expand(batch, 3, 3)
        to_grey = self.luma.view(1, 1, 3).expand(batch, 3, 3)  # every output channel = luma . x
        matrix = saturation.view(-1, 1, 1) * eye + (1 - saturation).view(-1, 1, 1) * to_grey
        if aug.hue > 0:
            angle = 2 * math.pi * aug.hue * (2 * u[:, 3] - 1)
            cos, sin = torch.cos(angle), torch.sin(angle)
            one, zero = torch.ones_like(angle), torch.zeros_like(angle)
            rows = [torch.stack(row, 1) for row in ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos))]
            matrix = self.yiq_to_rgb @ torch.stack(rows, 1) @ self.rgb_to_yiq @ matrix
        mean_grey = x.mean(dim=(2, 3)) @ self.luma.view(3) / scale  # [B], in [0, 1] units
        offset = ((1 - contrast) * brightness * mean_grey).view(-1, 1, 1) * matrix.sum(dim=2, keepdim=True)
        matrix = matrix * (contrast * brightness / scale).view(-1, 1, 1)
        std, mean = self.std.view(1, 3, 1), self.mean.view(1, 3, 1)
        out = torch.baddbmm((offset - mean) / std, matrix / std, x.flatten(2))
        return out.view_as(x).clamp_(min=-self.mean / self.std, max=(1 - self.mean) / self.std)
