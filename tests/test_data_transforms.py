"""Online augmentation (per sample and on whole batches), preprocessing, and the cache-backed torch data sets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sampleweight.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    BatchAugment,
    CachedImageDataset,
    build_datasets,
    build_eval_dataset,
    eval_transform,
    preprocess_image,
    read_dataset,
    shades_of_gray,
    train_transform,
)
from sampleweight.errors import ConfigError

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
NO_JITTER = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def batch(b: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=generator)


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return (x * STD + MEAN) * 255


def test_batch_augment_shapes_dtype_and_range() -> None:
    augment = BatchAugment(24)
    out = augment(batch(5, 32), generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 24, 24) and out.dtype == torch.float32
    pixels = unnormalise(out)
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3
    floats = augment(batch(5, 32).float() / 255, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(floats, out, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        augment(torch.zeros(3, 32, 32, dtype=torch.uint8))


def test_batch_augment_is_deterministic_under_a_seeded_generator() -> None:
    augment, x = BatchAugment(16), batch(6)
    a = augment(x, generator=torch.Generator().manual_seed(7))
    b = augment(x, generator=torch.Generator().manual_seed(7))
    c = augment(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # each sample gets its own draw: identical inputs come out differently
    same = x[:1].repeat(6, 1, 1, 1)
    out = augment(same, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(("hflip", "vflip", "dims"), [(1.0, 0.0, [-1]), (0.0, 1.0, [-2]), (1.0, 1.0, [-2, -1])])
def test_flips_actually_flip(hflip: float, vflip: float, dims: list[int]) -> None:
    full_crop = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=hflip, vflip=vflip, **NO_JITTER)
    x = batch(3)
    out = unnormalise(BatchAugment(16, full_crop)(x))
    assert torch.allclose(out, x.flip(dims).float(), atol=1e-3)
    identity = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, **NO_JITTER)
    assert torch.allclose(unnormalise(BatchAugment(16, identity)(x)), x.float(), atol=1e-3)


def test_crop_zooms_into_the_image() -> None:
    ramp = (torch.arange(32) * 8).to(torch.uint8)  # 0..248 across the width
    x = ramp.view(1, 1, 1, 32).expand(3, 3, 32, 32).contiguous()
    crop = Augmentation(scale=(0.25, 0.25), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, **NO_JITTER)
    out = unnormalise(BatchAugment(32, crop)(x, generator=torch.Generator().manual_seed(0)))
    spans = out[:, 0].amax(dim=-1) - out[:, 0].amin(dim=-1)  # half the width is seen: about half the ramp
    assert torch.all((spans > 100) & (spans < 140))
    starts = out[:, 0, 0, 0]
    assert starts.unique().numel() == 3  # each sample its own crop position


def test_colour_jitter_changes_colour_but_not_geometry() -> None:
    x = batch(4)
    jitter = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, hue=0.1)
    out = unnormalise(BatchAugment(16, jitter)(x, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(out, x.float(), atol=1.0)
    grey_in, grey_out = x.float().mean(1), out.mean(1)
    correlation = torch.corrcoef(torch.stack([grey_in.flatten(), grey_out.flatten()]))[0, 1]
    assert correlation > 0.8


def test_eval_mode_only_resizes_and_normalises() -> None:
    augment = BatchAugment(16).eval()
    x = batch(2, 16)
    assert torch.allclose(unnormalise(augment(x)), x.float(), atol=1e-3)
    assert augment(batch(2, 32)).shape == (2, 3, 16, 16)


def test_augmentation_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="scale"):
        Augmentation(scale=(0.5, 1.5))
    with pytest.raises(ConfigError, match="hflip"):
        Augmentation(hflip=2.0)


def test_per_sample_transforms() -> None:
    x = batch(1, 40)[0]
    out = train_transform(32)(x)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    evaluated = eval_transform(40)(x)
    assert torch.allclose(unnormalise(evaluated[None])[0], x.float(), atol=1e-3)


def test_preprocess_image_decodes_normalises_and_resizes(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = preprocess_image(tmp_path / "a.png", 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    expected = np.asarray(Image.fromarray(shades_of_gray(pixels)).resize((20, 20), Image.Resampling.BICUBIC))
    assert np.array_equal(out, expected)
    assert np.array_equal(preprocess_image(pixels, 30, colour_constancy=False)[:, :, 0].shape, (30, 30))
    with pytest.raises(ConfigError, match="image_size"):
        preprocess_image(pixels, 4)


# ----------------------------------------------------------------------------------------------- data sets


def test_cached_image_dataset_items_and_batches() -> None:
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    labels = np.arange(10) % 3
    dataset = CachedImageDataset(images, labels, indices=[9, 2, 5])
    image, label, index = dataset[0]
    assert torch.equal(image, torch.from_numpy(images[9])) and (label, index) == (0, 0)
    items = dataset.__getitems__([2, 0])
    assert torch.equal(items[0][0], torch.from_numpy(images[5])) and items[0][1:] == (2, 2)
    x, y, i = next(iter(DataLoader(dataset, batch_size=3)))
    assert x.shape == (3, 3, 8, 8) and y.tolist() == [0, 2, 2] and i.tolist() == [0, 1, 2]
    assert dataset.record_indices.tolist() == [9, 2, 5]


def test_memory_mapped_dataset_pickles_by_path(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.ones((4, 3, 8, 8), np.uint8))
    dataset = CachedImageDataset(np.load(tmp_path / "images.npy", mmap_mode="r"), [0, 1, 0, 1])
    payload = pickle.dumps(dataset)
    assert len(payload) < 4 * 8 * 8 * 3  # the path travels, not the pixels
    restored = pickle.loads(payload)
    assert isinstance(restored.images, np.memmap) and torch.equal(restored[1][0], dataset[1][0])


@pytest.mark.parametrize("augment", ["per_sample", "batch"])
def test_build_datasets_on_synthetic(augment: str) -> None:
    records = read_dataset("synthetic:200")
    data = build_datasets(records, split=1, image_size=24, augment=augment, progress=False)
    assert len(data.train) + len(data.val) == 200
    assert data.class_counts.tolist() == records.class_counts(data.train_indices).tolist()
    assert data.classes == records.classes
    x, y, i = next(iter(DataLoader(data.train, batch_size=8, shuffle=True)))
    assert y.dtype == torch.int64 and i.max() < len(data.train)
    assert torch.equal(y, torch.from_numpy(records.labels[data.train_indices[i.numpy()]]))
    if augment == "batch":
        assert x.dtype == torch.uint8 and data.batch_augment is not None
        assert data.batch_augment(x).shape == (8, 3, 24, 24)
    else:
        assert x.dtype == torch.float32 and x.shape == (8, 3, 24, 24) and data.batch_augment is None
    with pytest.raises(ConfigError, match="augment"):
        build_datasets(records, augment="gpu")


def test_build_eval_dataset_covers_all_records() -> None:
    records = read_dataset("synthetic:30")
    dataset = build_eval_dataset(records, image_size=16, augment="batch", progress=False)
    assert len(dataset) == 30 and dataset[3][0].dtype == torch.uint8


def test_batch_colour_jitter_matches_torchvision_where_nothing_saturates() -> None:
    import torchvision.transforms.v2.functional as TF

    jitter = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, hue=0.0)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.35
    draws = torch.rand(4, 10, generator=torch.Generator().manual_seed(1))
    out = BatchAugment(16, jitter)._colour_and_normalise(x, draws[:, 6:], 1.0) * STD + MEAN
    for i in range(4):
        brightness, contrast, saturation = (1 + 0.2 * (2 * draws[i, k] - 1) for k in (6, 7, 8))
        expected = TF.adjust_saturation(
            TF.adjust_contrast(TF.adjust_brightness(x[i], brightness.item()), contrast.item()), saturation.item()
        )
        assert torch.allclose(out[i], expected, atol=1e-5)
