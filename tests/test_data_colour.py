"""Shades of Gray colour constancy (p = 6), checked against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sampleweight.data import illuminant, shades_of_gray
from sampleweight.errors import ConfigError


def test_matches_a_hand_computation_on_a_small_image() -> None:
    image = np.array([[[200, 100, 50], [100, 100, 100]], [[50, 150, 250], [0, 0, 0]]], dtype=np.uint8)
    # e_c = (mean over the 4 pixels of I_c^6)^(1/6), by hand:
    e = np.array(
        [
            ((200**6 + 100**6 + 50**6 + 0) / 4) ** (1 / 6),
            ((100**6 + 100**6 + 150**6 + 0) / 4) ** (1 / 6),
            ((50**6 + 100**6 + 250**6 + 0) / 4) ** (1 / 6),
        ]
    )
    unit = e / math.sqrt((e**2).sum())
    np.testing.assert_allclose(illuminant(image), unit, rtol=1e-12)
    gain = 1 / (math.sqrt(3) * unit)
    expected = np.clip(np.rint(image * gain), 0, 255).astype(np.uint8)
    result = shades_of_gray(image, p=6)
    assert result.dtype == np.uint8 and result.shape == image.shape
    assert np.array_equal(result, expected)
    # the blue-heavy illuminant is reduced, red is lifted
    assert result[1, 0, 2] < 250 and result[0, 0, 0] > 200


def test_grey_illuminant_leaves_the_image_unchanged() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (9, 7, 1), dtype=np.uint8), 3, axis=2)
    assert np.array_equal(shades_of_gray(grey), grey)


def test_uint8_fast_path_equals_the_float_formula_for_several_p() -> None:
    image = np.random.default_rng(1).integers(0, 256, (3, 11, 13, 3), dtype=np.uint8)
    for p in (1.0, 2.5, 6.0, math.inf):
        gain = 1 / (math.sqrt(3) * illuminant(image, p))
        expected = np.clip(np.rint(image * gain[:, None, None, :]), 0, 255).astype(np.uint8)
        assert np.array_equal(shades_of_gray(image, p), expected)


def test_batch_is_per_image_and_torch_agrees_with_numpy() -> None:
    images = np.random.default_rng(2).integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    batch = shades_of_gray(images)
    for i in range(4):
        assert np.array_equal(batch[i], shades_of_gray(images[i]))
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert np.array_equal(shades_of_gray(tensor).permute(0, 2, 3, 1).numpy(), batch)
    assert np.array_equal(shades_of_gray(tensor[1]).permute(1, 2, 0).numpy(), batch[1])


def test_float_images_are_in_unit_range() -> None:
    image = np.random.default_rng(3).random((5, 5, 3)).astype(np.float32)
    out = shades_of_gray(image)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    as_uint8 = shades_of_gray((image * 255).round().astype(np.uint8))
    assert np.abs(out * 255 - as_uint8).max() < 2.5


def test_black_image_and_bad_p() -> None:
    black = np.zeros((4, 4, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)
    with pytest.raises(ConfigError, match="Minkowski"):
        shades_of_gray(black, p=0.5)
