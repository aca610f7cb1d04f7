"""A built-in, procedurally generated stand-in for ISIC 2018: lesion-like images made in memory.

Each image is a blob (the "lesion") on a skin-toned background. What the class decides, with per-lesion
noise so that the classes overlap: the lesion's two colours and how much they mix (variegation), its size
and elongation, how irregular and how soft its border is, the frequency of its texture, a pale centre
(DF) and how strongly it stands out from the skin (AKIEC is faint). What varies per image regardless of
class: skin tone, an illuminant tint (what colour constancy removes), vignetting, pixel noise, and the
pose of the lesion. The 7 ISIC classes come in the ISIC 2018 proportions (at least 2 images each), and a
lesion has 1-4 images (repeat photos: same lesion, different pose and lighting), about 1.35 on average as
in HAM10000, so that lesion-grouped splitting matters here too.

Everything is decided by ``(num_images, seed)``; the pixels are rendered at whatever size is asked for
(`DatasetRecords.render`), vectorised in numpy: a few hundred 64x64 images take a few tens of ms.

Example:
    >>> from sampleweight.data import read_dataset
    >>> records = read_dataset("synthetic:300")
    >>> records.render(64).shape
    (300, 64, 64, 3)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from sampleweight.data.records import ISIC_CLASSES, DatasetRecords
from sampleweight.errors import ConfigError

__all__ = ["DEFAULT_SYNTHETIC_SIZE", "ISIC_CLASS_COUNTS", "render_synthetic", "synthetic_records"]

DEFAULT_SYNTHETIC_SIZE = 2000
"""Images in ``synthetic`` when no size is given."""

ISIC_CLASS_COUNTS: tuple[int, ...] = (1113, 6705, 514, 327, 1099, 115, 142)
"""Images per class in ISIC 2018 Task 3 training (HAM10000), in `ISIC_CLASSES` order."""

_MIN_PER_CLASS = 2
_IMAGES_PER_LESION = (np.array([1, 2, 3, 4]), np.array([0.75, 0.17, 0.05, 0.03]))
_HARMONICS = np.arange(2, 6, dtype=np.float32)  # border perturbation: cos(k * angle), k = 2..5
_WAVES = 3  # texture: sum of 3 plane waves in lesion coordinates

# Per class, in ISIC_CLASSES order (MEL, NV, BCC, AKIEC, BKL, DF, VASC). Colours are RGB in [0, 1].
_COLOUR_1 = np.array(
    [
        [0.32, 0.20, 0.16],  # MEL: dark brown
        [0.50, 0.33, 0.23],  # NV: brown
        [0.62, 0.44, 0.43],  # BCC: pink-brown
        [0.70, 0.45, 0.40],  # AKIEC: reddish pink
        [0.55, 0.40, 0.28],  # BKL: tan
        [0.54, 0.38, 0.30],  # DF: light brown
        [0.58, 0.22, 0.30],  # VASC: red-purple
    ],
    dtype=np.float32,
)
_COLOUR_2 = np.array(
    [
        [0.28, 0.27, 0.38],  # MEL: blue-grey veil
        [0.40, 0.26, 0.18],  # NV: darker brown network
        [0.46, 0.38, 0.44],  # BCC: grey-blue
        [0.82, 0.74, 0.70],  # AKIEC: white scale
        [0.42, 0.31, 0.22],  # BKL: darker tan
        [0.84, 0.75, 0.70],  # DF: white centre
        [0.38, 0.12, 0.26],  # VASC: dark purple lacunae
    ],
    dtype=np.float32,
)
#                         MEL   NV    BCC   AKIEC BKL   DF    VASC
_VARIEGATION = np.array([0.45, 0.15, 0.30, 0.30, 0.25, 0.10, 0.40], dtype=np.float32)
_TEXTURE_FREQ = np.array([2.5, 6.0, 2.0, 9.0, 4.5, 3.0, 3.5], dtype=np.float32)  # cycles per radius
_IRREGULARITY = np.array([0.13, 0.04, 0.09, 0.11, 0.07, 0.05, 0.06], dtype=np.float32)
_SOFTNESS = np.array([0.06, 0.03, 0.07, 0.10, 0.04, 0.09, 0.03], dtype=np.float32)
_RADIUS = np.array([0.56, 0.46, 0.42, 0.42, 0.52, 0.36, 0.38], dtype=np.float32)  # of the half-width
_ELONGATION = np.array([0.75, 0.85, 0.80, 0.70, 0.75, 0.85, 0.85], dtype=np.float32)
_PALE_CENTRE = np.array([0.0, 0.0, 0.15, 0.0, 0.0, 0.55, 0.0], dtype=np.float32)
_OPACITY = np.array([0.95, 0.90, 0.80, 0.60, 0.85, 0.80, 0.90], dtype=np.float32)


@dataclass(frozen=True)
class _Scene:
    """Everything about each image except its pixels: arrays over images, float32."""

    seed: int
    centre: np.ndarray  # [N, 2] in [-1, 1] image coordinates
    angle: np.ndarray  # [N]
    radius: np.ndarray  # [N]
    elongation: np.ndarray  # [N]
    harmonic_amp: np.ndarray  # [N, K]
    harmonic_phase: np.ndarray  # [N, K]
    softness: np.ndarray  # [N]
    colour_1: np.ndarray  # [N, 3]
    colour_2: np.ndarray  # [N, 3]
    variegation: np.ndarray  # [N]
    wave_freq: np.ndarray  # [N, W]
    wave_dir: np.ndarray  # [N, W]
    wave_phase: np.ndarray  # [N, W]
    pale_centre: np.ndarray  # [N]
    opacity: np.ndarray  # [N]
    skin: np.ndarray  # [N, 3]
    tint: np.ndarray  # [N, 3]
    vignette: np.ndarray  # [N]
    noise: np.ndarray  # [N]


def _class_counts(num_images: int) -> np.ndarray:
    """Images per class: ISIC proportions by largest remainder, at least 2 per class (taken from NV)."""
    share = np.array(ISIC_CLASS_COUNTS, dtype=np.float64) / sum(ISIC_CLASS_COUNTS) * num_images
    counts = np.floor(share).astype(np.int64)
    remainder_order = np.argsort(-(share - counts), kind="stable")
    counts[remainder_order[: num_images - counts.sum()]] += 1
    for c in np.flatnonzero(counts < _MIN_PER_CLASS):
        need = _MIN_PER_CLASS - counts[c]
        counts[c] += need
        counts[int(np.argmax(counts))] -= need
    return counts


def synthetic_records(num_images: int = DEFAULT_SYNTHETIC_SIZE, *, seed: int = 0) -> DatasetRecords:
    """The synthetic data set: records whose images are rendered in memory at any size.

    Args:
        num_images: How many images (at least 14: two per class).
        seed: Decides labels, lesions and pixels; the same ``(num_images, seed)`` gives the same data.

    Returns:
        `DatasetRecords` with layout ``synthetic``, classes `ISIC_CLASSES`, lesion groups, ``paths=None``
        and ``render(image_size) -> uint8 [N, S, S, 3]``.

    Raises:
        ConfigError: ``num_images`` below 14.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 14:
        raise ConfigError(f"the synthetic data set needs at least 14 images (2 per class), got {num_images!r}")
    rng = np.random.default_rng([int(seed), 8, 2018])
    counts = _class_counts(int(num_images))
    lesion_class, lesion_size = [], []
    for c, count in enumerate(counts):
        if count < 3 * _MIN_PER_CLASS:  # rare classes: single-image lesions, so a split can use both
            sizes = np.ones(count, dtype=np.int64)
        else:
            sizes = rng.choice(_IMAGES_PER_LESION[0], size=count, p=_IMAGES_PER_LESION[1])
            sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), count)) + 1]
            sizes[-1] -= sizes.sum() - count
        lesion_class += [c] * len(sizes)
        lesion_size += sizes.tolist()
    lesion_class_arr = np.array(lesion_class, dtype=np.int64)
    lesion_of_image = np.repeat(np.arange(len(lesion_size)), lesion_size)
    order = rng.permutation(len(lesion_of_image))
    lesion_of_image = lesion_of_image[order]
    labels = lesion_class_arr[lesion_of_image]
    scene = _make_scene(rng, int(seed), lesion_class_arr, lesion_of_image)
    n = len(labels)
    return DatasetRecords(
        image_ids=tuple(f"SYN_{i:06d}" for i in range(n)),
        labels=labels,
        groups=tuple(f"SYN_L{lesion:06d}" for lesion in lesion_of_image),
        classes=ISIC_CLASSES,
        layout="synthetic",
        root=None,
        paths=None,
        render=functools.partial(_render, scene),
        source=f"synthetic:{n}:{seed}",
    )


def _make_scene(rng: np.random.Generator, seed: int, lesion_class: np.ndarray, lesion_of_image: np.ndarray) -> _Scene:
    """Draw lesion-level parameters (shared by a lesion's images) and image-level ones (pose, lighting)."""
    num_lesions, n = len(lesion_class), len(lesion_of_image)
    c = lesion_class

    def f32(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    # Per lesion, around the class means; the spreads make neighbouring classes overlap.
    lesion = {
        "radius": _RADIUS[c] * rng.uniform(0.75, 1.3, num_lesions),
        "elongation": np.clip(_ELONGATION[c] + rng.normal(0, 0.1, num_lesions), 0.5, 1.0),
        "harmonic_amp": _IRREGULARITY[c, None] * rng.uniform(0.3, 1.7, (num_lesions, len(_HARMONICS))),
        "harmonic_phase": rng.uniform(0, 2 * np.pi, (num_lesions, len(_HARMONICS))),
        "softness": _SOFTNESS[c] * rng.uniform(0.6, 1.5, num_lesions),
        "colour_1": np.clip(_COLOUR_1[c] + rng.normal(0, 0.07, (num_lesions, 3)), 0.05, 0.95),
        "colour_2": np.clip(_COLOUR_2[c] + rng.normal(0, 0.07, (num_lesions, 3)), 0.05, 0.95),
        "variegation": np.clip(_VARIEGATION[c] + rng.normal(0, 0.1, num_lesions), 0.0, 1.0),
        "wave_freq": _TEXTURE_FREQ[c, None] * rng.uniform(0.7, 1.4, (num_lesions, _WAVES)),
        "wave_dir": rng.uniform(0, np.pi, (num_lesions, _WAVES)),
        "wave_phase": rng.uniform(0, 2 * np.pi, (num_lesions, _WAVES)),
        "pale_centre": np.clip(_PALE_CENTRE[c] + rng.normal(0, 0.1, num_lesions), 0.0, 1.0),
        "opacity": np.clip(_OPACITY[c] + rng.normal(0, 0.08, num_lesions), 0.4, 1.0),
    }
    per_image = {name: f32(values[lesion_of_image]) for name, values in lesion.items()}
    # Per image: pose, size jitter, skin, lighting.
    per_image["radius"] = per_image["radius"] * f32(rng.uniform(0.9, 1.1, n))
    skin_light, skin_dark = np.array([0.93, 0.78, 0.68]), np.array([0.72, 0.52, 0.40])
    mix = rng.uniform(0, 1, (n, 1))
    return _Scene(
        seed=seed,
        centre=f32(rng.uniform(-0.12, 0.12, (n, 2))),
        angle=f32(rng.uniform(0, 2 * np.pi, n)),
        skin=f32(skin_light * (1 - mix) + skin_dark * mix + rng.normal(0, 0.02, (n, 3))),
        tint=f32(np.exp(rng.normal(0, 0.05, (n, 3))) * rng.uniform(0.85, 1.1, (n, 1))),
        vignette=f32(rng.uniform(0, 0.6, n) * (rng.uniform(0, 1, n) < 0.5)),
        noise=f32(rng.uniform(0.01, 0.04, n)),
        **per_image,
    )


def render_synthetic(records: DatasetRecords, image_size: int) -> np.ndarray:
    """The images of synthetic records at ``image_size`` (same as ``records.render(image_size)``).

    Args:
        records: Records from `synthetic_records` (or ``read_dataset("synthetic...")``).
        image_size: Side S of the square images.

    Returns:
        uint8 [N, S, S, 3].
    """
    if records.render is None:
        raise ConfigError(f"{records.layout} records have no in-memory images to render")
    return records.render(image_size)


def _render(scene: _Scene, image_size: int) -> np.ndarray:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}")
    size = int(image_size)
    n = len(scene.angle)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = max(1, (1 << 20) // (size * size))  # about 1M pixels per chunk keeps temporaries small
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = _render_chunk(scene, start, stop, size)
    return out


def _render_chunk(scene: _Scene, start: int, stop: int, size: int) -> np.ndarray:
    s = slice(start, stop)
    b = stop - start

    def per(x: np.ndarray) -> np.ndarray:  # [B] -> [B, 1, 1] for broadcasting over pixels
        return x[s, None, None]

    # Lesion coordinates (u, v) are affine in the pixel coordinates (x, y): u = au*x + bu*y + cu, etc.;
    # the unperturbed border is the unit circle in (u, v).
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = coords[None, None, :], coords[None, :, None]  # [1, 1, S], [1, S, 1]
    cos, sin = np.cos(scene.angle[s]), np.sin(scene.angle[s])
    r_u = scene.radius[s]
    r_v = r_u * scene.elongation[s]
    cx, cy = scene.centre[s, 0], scene.centre[s, 1]
    affine_u = (cos / r_u, sin / r_u, -(cx * cos + cy * sin) / r_u)
    affine_v = (-sin / r_v, cos / r_v, (cx * sin - cy * cos) / r_v)
    u = affine_u[0][:, None, None] * x + (affine_u[1][:, None, None] * y + affine_u[2][:, None, None])
    v = affine_v[0][:, None, None] * x + (affine_v[1][:, None, None] * y + affine_v[2][:, None, None])
    rho = np.sqrt(u * u + v * v)

    # Border radius 1 + sum_k a_k cos(k phi + phase_k), with cos/sin(k phi) by the angle-addition recurrence.
    inv = 1 / np.maximum(rho, 1e-6)
    cos_1, sin_1 = u * inv, v * inv
    cos_k, sin_k = cos_1, sin_1
    border = np.ones_like(rho)
    for k in range(len(_HARMONICS)):
        cos_k, sin_k = cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1  # angle (k + 2) * phi
        amp, phase = scene.harmonic_amp[s, k], scene.harmonic_phase[s, k]
        border += _pixels(amp * np.cos(phase)) * cos_k - _pixels(amp * np.sin(phase)) * sin_k
    inside = np.tanh((border - rho) / (2 * per(scene.softness)))  # in [-1, 1]: 2 * sigmoid - 1

    # Texture: plane waves in lesion coordinates; sin(p x + q y + c) is separable, so only rows and
    # columns need sin/cos.
    texture = np.zeros_like(rho)
    for w in range(_WAVES):
        cd, sd = np.cos(scene.wave_dir[s, w]), np.sin(scene.wave_dir[s, w])
        omega = 2 * np.pi * scene.wave_freq[s, w]
        p = omega * (affine_u[0] * cd + affine_v[0] * sd)
        q = omega * (affine_u[1] * cd + affine_v[1] * sd)
        c = omega * (affine_u[2] * cd + affine_v[2] * sd) + scene.wave_phase[s, w]
        px = p[:, None] * coords[None] + c[:, None]  # [B, S]
        qy = q[:, None] * coords[None]
        texture += np.sin(px)[:, None, :] * np.cos(qy)[:, :, None] + np.cos(px)[:, None, :] * np.sin(qy)[:, :, None]
    texture *= 1.5 / _WAVES
    centre = 1 / (1 + 4 * rho * rho) ** 2  # pale centre profile, 1 at the middle
    second = np.clip(per(scene.variegation) * (1 + texture) + per(scene.pale_centre) * centre, 0, 1)

    # Compose per channel: image = tint * shade * (skin + alpha * (colour_1 - skin + second * (colour_2 - colour_1))).
    shade = 1 - per(scene.vignette) * np.clip(x * x + y * y - 0.7, 0, None)  # dark dermoscope corners
    alpha_shade = (0.5 + 0.5 * inside) * per(scene.opacity) * shade
    second *= alpha_shade
    rng = np.random.default_rng([scene.seed, 9, size, start])
    image = rng.random((b, 3, size, size), dtype=np.float32)  # uniform noise with the drawn std
    image -= 0.5
    image *= (np.sqrt(12.0) * scene.noise[s])[:, None, None, None]
    for ch in range(3):
        skin, c_1, c_2, tint = (a[s, ch] for a in (scene.skin, scene.colour_1, scene.colour_2, scene.tint))
        plane = image[:, ch]
        plane += _pixels(tint * skin) * shade
        plane += _pixels(tint * (c_1 - skin)) * alpha_shade
        plane += _pixels(tint * (c_2 - c_1)) * second
    image *= 255
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8).transpose(0, 2, 3, 1)


def _pixels(values: np.ndarray) -> np.ndarray:
    """[B] -> [B, 1, 1]."""
    return values[:, None, None]
