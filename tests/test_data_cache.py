"""The on-disk image cache: pixel-exact, keyed by files and parameters, atomic, never beside the data."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampleweight.data import (
    CACHE_DIR_ENV,
    build_datasets,
    cache_key,
    default_cache_dir,
    prepare,
    prepare_cache,
    preprocess_image,
    read_dataset,
)
from sampleweight.errors import ConfigError, DataError


def make_data(root: Path, n: int = 14) -> Path:
    """A generic labels.csv data set of n small JPEGs of different sizes, two classes, lesion pairs."""
    (root / "images").mkdir(parents=True)
    lines = ["image,label,group"]
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (15 + i, 20 + 2 * i, 3), dtype=np.uint8)
        pixels[..., 0] //= 2  # a colour cast, so colour constancy has work to do
        Image.fromarray(pixels).save(root / "images" / f"im{i}.jpg", quality=90)
        lines.append(f"im{i},{'ab'[i % 2]},les{i // 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data")


def test_cache_round_trips_pixel_exact_and_is_reused(data: Path, tmp_path: Path) -> None:
    records = read_dataset(data)
    cache_dir = tmp_path / "cache"
    built = prepare_cache(records, 24, cache_dir=cache_dir, progress=False)
    assert not built.reused and built.path.parent == cache_dir and built.path.name.startswith("csv-24px-")
    assert built.images.shape == (14, 3, 24, 24) and built.images.dtype == np.uint8
    for i, path in enumerate(records.paths):
        assert np.array_equal(built.images[i], preprocess_image(path, 24).transpose(2, 0, 1))
    meta = json.loads(built.path.with_suffix(".json").read_text())
    assert meta["key"] == built.key and meta["num_images"] == 14 and meta["bad"] == []
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [built.path.name, built.path.with_suffix(".json").name]
    )
    again = prepare_cache(records, 24, cache_dir=cache_dir, progress=False)
    assert again.reused and again.path == built.path and isinstance(again.images, np.memmap)
    assert np.array_equal(again.images, built.images)
    forced = prepare_cache(records, 24, cache_dir=cache_dir, progress=False, force=True)
    assert not forced.reused and np.array_equal(forced.images, built.images)


def test_threads_and_one_worker_build_the_same_cache(data: Path, tmp_path: Path) -> None:
    records = read_dataset(data)
    one = prepare_cache(records, 16, cache_dir=tmp_path / "a", workers=1, progress=False)
    many = prepare_cache(records, 16, cache_dir=tmp_path / "b", workers=3, progress=True)
    assert np.array_equal(one.images, many.images)


def test_any_parameter_or_file_change_invalidates(data: Path, tmp_path: Path) -> None:
    records = read_dataset(data)
    base = cache_key(records, 24)
    assert cache_key(records, 24) == base
    assert cache_key(records, 32) != base
    assert cache_key(records, 24, colour_constancy=False) != base
    assert cache_key(records, 24, minkowski_p=2.0) != base
    assert cache_key(records.subset(range(13)), 24) != base
    first = prepare_cache(records, 24, cache_dir=tmp_path, progress=False)
    no_cc = prepare_cache(records, 24, cache_dir=tmp_path, colour_constancy=False, progress=False)
    assert no_cc.path != first.path and not no_cc.reused
    assert np.array_equal(
        no_cc.images[3], preprocess_image(records.paths[3], 24, colour_constancy=False).transpose(2, 0, 1)
    )
    assert not np.array_equal(no_cc.images, first.images)
    # a re-downloaded (changed) image: new size/mtime, new key, rebuilt with the new pixels
    Image.fromarray(np.full((10, 10, 3), 77, np.uint8)).save(records.paths[0])
    stat = os.stat(records.paths[0])
    os.utime(records.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = prepare_cache(records, 24, cache_dir=tmp_path, progress=False)
    assert changed.key != first.key and not changed.reused
    assert np.array_equal(changed.images[0], preprocess_image(records.paths[0], 24).transpose(2, 0, 1))


def test_damaged_cache_file_is_rebuilt(data: Path, tmp_path: Path) -> None:
    records = read_dataset(data)
    built = prepare_cache(records, 16, cache_dir=tmp_path, progress=False)
    np.save(built.path, np.zeros((3, 3, 16, 16), np.uint8))  # wrong shape
    rebuilt = prepare_cache(records, 16, cache_dir=tmp_path, progress=False)
    assert not rebuilt.reused and rebuilt.images.shape == (14, 3, 16, 16)


def test_default_location_env_var_and_never_beside_the_data(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    before = sorted(str(p) for p in data.rglob("*"))
    built = prepare_cache(read_dataset(data), 16, progress=False)
    assert built.path.parent == tmp_path / "env-cache"
    assert sorted(str(p) for p in data.rglob("*")) == before
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sampleweight"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "sampleweight"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_undecodable_image_is_an_error_naming_it_or_skipped(data: Path, tmp_path: Path, damage: str) -> None:
    bad_file = data / "images" / "im5.jpg"
    content = bad_file.read_bytes()
    bad_file.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"no jpeg here")
    records = read_dataset(data)
    with pytest.raises(DataError, match=r"(?s)1 image\(s\) could not be decoded:\n.*im5\.jpg.*skip_bad=True"):
        prepare_cache(records, 16, cache_dir=tmp_path, progress=False)
    cached = prepare_cache(records, 16, cache_dir=tmp_path, progress=False, skip_bad=True)
    assert cached.reused and cached.bad == (5,) and "im5.jpg" in cached.bad_reasons[0]
    assert not cached.images[5].any()
    split = build_datasets(records, 0, image_size=16, cache_dir=tmp_path, progress=False, skip_bad=True)
    assert 5 not in split.train_indices and 5 not in split.val_indices
    assert len(split.train) + len(split.val) == 13 and len(split.skipped) == 1


def test_not_enough_disk_space_says_how_to_fix(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    with pytest.raises(DataError, match=f"not enough disk space.*{CACHE_DIR_ENV}"):
        prepare_cache(read_dataset(data), 16, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.tmp"))


def test_in_memory_synthetic_needs_no_cache_file(tmp_path: Path) -> None:
    cached = prepare_cache(read_dataset("synthetic:40"), 16, cache_dir=tmp_path, progress=False)
    assert cached.path is None and cached.images.shape == (40, 3, 16, 16) and not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="image_size"):
        prepare_cache(read_dataset("synthetic:40"), 3)
    with pytest.raises(ConfigError, match="no cache"):
        cache_key(read_dataset("synthetic:40"), 16)


def test_prepare_summarises_for_the_cli(data: Path, tmp_path: Path) -> None:
    summary = prepare(str(data), 16, str(tmp_path), progress=False)
    assert (summary.layout, summary.num_images, summary.image_size, summary.reused) == ("csv", 14, 16, False)
    assert summary.classes == ("a", "b") and summary.class_counts == (7, 7)
    assert summary.path is not None and summary.path.is_file() and summary.size_mb >= 0
    assert prepare(str(data), 16, str(tmp_path), progress=False).reused
    as_json = json.loads(json.dumps(summary.to_dict()))
    assert as_json["path"] == str(summary.path) and as_json["classes"] == ["a", "b"]
    synthetic = prepare("synthetic:30", 16, None, progress=False)
    assert synthetic.path is None and synthetic.layout == "synthetic" and synthetic.num_images == 30


def test_the_key_names_files_by_their_real_path(data: Path, tmp_path: Path) -> None:
    """The same files reached through a linked folder or linked files share one cache; a copy does not."""
    (tmp_path / "alias").symlink_to(data, target_is_directory=True)
    linked = tmp_path / "linked"
    (linked / "images").mkdir(parents=True)
    shutil.copy(data / "labels.csv", linked / "labels.csv")
    for image in (data / "images").iterdir():
        (linked / "images" / image.name).symlink_to(image)
    key = cache_key(read_dataset(data), 32)
    assert cache_key(read_dataset(tmp_path / "alias"), 32) == key
    assert cache_key(read_dataset(linked), 32) == key
    copied = shutil.copytree(data, tmp_path / "copy")
    assert cache_key(read_dataset(copied), 32) != key


def test_real_paths_equal_path_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleweight.data.cache import _real_path_resolver

    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "img.jpg").write_bytes(b"x")
    (tmp_path / "real" / "sub" / "img.jpg").write_bytes(b"y")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path / "real" / "sub", target_is_directory=True)
    (tmp_path / "a" / "file.jpg").symlink_to(tmp_path / "real" / "img.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    monkeypatch.chdir(tmp_path / "a")
    paths = [
        tmp_path / "real" / "img.jpg",
        tmp_path / "alias" / "sub" / "img.jpg",  # a linked folder
        tmp_path / "a" / "file.jpg",  # a linked file
        tmp_path / "a" / "link" / ".." / "img.jpg",  # ".." after a link: the link's parent, real/
        Path("link") / "img.jpg",  # relative to the working folder
        Path("file.jpg"),
        tmp_path / "real" / "missing.jpg",
    ]
    real_path = _real_path_resolver()
    for path in paths:
        assert real_path(path) == str(Path(path).resolve()), path
        assert real_path(str(path)) == str(Path(path).resolve()), path
