"""`sampleweight attention`: CBAM panels for the flat and the hierarchical model, image choice, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.data import BatchAugment, prepare_cache, read_dataset
from sampleweight.engine.evaluation import load_trained_model
from sampleweight.engine.rundir import read_predictions
from sampleweight.engine.training import train
from sampleweight.errors import ConfigError
from sampleweight.studies.attention import attention_figures, compute_attention, select_images

runner = CliRunner()
# 64 px: the test backbone's feature map is 2 x 2, so the maps have some structure
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=64, batch_size=16, epochs=1,
            lr=1e-3, quiet=True)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("attention")
    train({**TINY, "out": root / "flat"})
    train({**TINY, "model": "hierarchical_vgg16", "out": root / "tree"})
    return {"flat": root / "flat", "tree": root / "tree"}


def assert_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 200
        assert np.asarray(image.convert("L"), dtype=float).std() > 0, f"{path} is blank"
        return image.size


def test_cli_draws_one_panel_per_chosen_image_for_the_flat_model(runs, tmp_path) -> None:
    images, *_ = read_predictions(runs["flat"] / "predictions.csv")
    result = runner.invoke(app, ["attention", str(runs["flat"]), "--images", f"{images[0]},{images[1]}", "--out",
                                 str(tmp_path), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{images[0]}.png", f"{images[1]}.png"])
    for path in tmp_path.iterdir():
        assert_png(path)


def test_flat_maps_are_the_models_cbam_outputs(runs) -> None:
    model, config, classes = load_trained_model(runs["flat"], torch.device("cpu"))
    records = read_dataset(config.data)
    images = prepare_cache(records, config.image_size, progress=False).images[:4]
    items = compute_attention(model, images, records.labels[:4].tolist(), classes)
    with torch.no_grad():
        out = model.forward_attention(BatchAugment(64).eval()(torch.as_tensor(np.array(images))))
    for i, item in enumerate(items):
        (level,) = item.levels
        assert level.channel == int(out.channel[i].argmax()) and level.spatial.shape == (2, 2)
        np.testing.assert_allclose(level.spatial, out.spatial[i, 0].numpy(), rtol=1e-5)
        np.testing.assert_allclose(level.channel_map, out.features[i, level.channel].numpy(), rtol=1e-5)
        probs = out.logits[i].softmax(0)
        assert item.predicted == classes[int(probs.argmax())]
        assert item.loss == pytest.approx(float(-probs[records.labels[i]].log()), rel=1e-4)


def test_hierarchical_panels_have_one_row_per_decision_on_the_true_path(runs, tmp_path) -> None:
    model, config, classes = load_trained_model(runs["tree"], torch.device("cpu"))
    records = read_dataset(config.data)
    mel, bkl = classes.index("MEL"), classes.index("BKL")
    rows = [int(np.flatnonzero(records.labels == mel)[0]), int(np.flatnonzero(records.labels == bkl)[0])]
    images = prepare_cache(records, config.image_size, progress=False).images[rows]
    melanoma, keratosis = compute_attention(model, images, [mel, bkl], classes)
    assert [level.label for level in melanoma.levels] == ["root -> melanocytic", "melanocytic -> MEL"]
    assert [level.label for level in keratosis.levels] == [
        "root -> non_melanocytic", "non_melanocytic -> benign", "benign -> BKL",
    ]  # fmt: skip
    assert all(0.0 <= level.probability <= 1.0 and level.spatial.shape == (2, 2) for level in keratosis.levels)
    # each level has its own dynamic attention
    assert not np.allclose(keratosis.levels[0].spatial, keratosis.levels[2].spatial)

    paths = attention_figures([runs["tree"]], images=[records.image_ids[r] for r in rows], out=tmp_path, device="cpu")
    sizes = [assert_png(path) for path in paths]
    assert sizes[1][1] > sizes[0][1]  # three rows are taller than two


def test_default_images_are_the_hardest_and_easiest_of_each_class(runs) -> None:
    images, true, _, scores, classes = read_predictions(runs["flat"] / "predictions.csv")
    chosen = select_images([runs["flat"]])
    loss = {image: -np.log(scores[i, classes.index(true[i])]) for i, image in enumerate(images)}
    for image, note in chosen:
        kind, name = note.split()
        members = [loss[im] for im, t in zip(images, true, strict=True) if t == name]
        assert loss[image] == (max(members) if kind == "hardest" else min(members))
    assert {note.split()[1] for _, note in chosen} == set(true)


def test_several_runs_give_a_comparison_panel_per_image(runs, tmp_path) -> None:
    images = [image for image, _ in select_images([runs["flat"], runs["tree"]])][:2]
    paths = attention_figures([runs["flat"], runs["tree"]], images=images, out=tmp_path, device="cpu")
    compare = sorted(tmp_path.glob("compare-*.png"))
    per_run = sorted(tmp_path.glob("*/*.png"))
    assert [p.name for p in compare] == sorted(f"compare-{image}.png" for image in images)
    assert len(per_run) == 4 and set(paths) == {*compare, *per_run}
    assert {p.parent.name for p in per_run} == {"flat", "tree"}
    for path in compare:
        assert_png(path)


def test_unknown_image_exits_2_with_one_line(runs) -> None:
    result = runner.invoke(app, ["attention", str(runs["flat"]), "--images", "ISIC_9999999", "--device", "cpu"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ISIC_9999999" in lines[0] and "SYN_" in lines[0], result.stderr


def test_a_model_without_cbam_is_refused() -> None:
    with pytest.raises(ConfigError, match="no CBAM attention"):
        compute_attention(torch.nn.Linear(3, 7), np.zeros((1, 3, 32, 32), np.uint8), [0], ["a"] * 7)
