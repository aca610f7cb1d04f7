"""``sampleweight attention``: where CBAM looks, as PNG panels (the paper's Figures 3-4).

For each chosen image, a panel shows the image as the model saw it (colour-normalised and resized),
the CBAM spatial attention map over it, and the feature map of the channel that CBAM weights most
(the "best channel"). A flat model with a CBAM (``forward_attention``) has one row; a hierarchical
model with per-decision attention (``forward_tree``) one row per decision on the image's true path (e.g.
root -> melanocytic -> MEL), each with that decision's own dynamic attention. Given several runs (e.g. the same model
under each weighting), a comparison panel per image puts one row per run, showing the last decision.

Without a list of images, each run's ``predictions.csv`` (validation side) picks the hardest and the
easiest image of every class: the largest and smallest loss ``-log p(true class)``, averaged over the
runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sampleweight.data import BatchAugment, DatasetRecords, prepare_cache, read_dataset
from sampleweight.engine.config import TrainConfig
from sampleweight.engine.device import resolve_device
from sampleweight.engine.evaluation import load_trained_model
from sampleweight.engine.rundir import RunDirectory, output_folder, read_predictions
from sampleweight.errors import ConfigError
from sampleweight.studies.figures import new_figure, save_figure

__all__ = [
    "ImageAttention",
    "LevelAttention",
    "attention_figures",
    "compute_attention",
    "draw_attention",
    "select_images",
]


@dataclass(frozen=True)
class LevelAttention:
    """The CBAM maps behind one decision for one image.

    Attributes:
        label: What was decided: ``MEL`` (flat model) or ``root -> melanocytic`` (one level of the
            hierarchical model's true path).
        probability: The model's probability of that (correct) outcome.
        spatial: The spatial attention map [h, w], values in [0, 1].
        channel: Index of the channel with the largest CBAM channel weight.
        channel_weight: That weight, in [0, 1].
        channel_map: The backbone feature map of that channel [h, w] (before attention).
    """

    label: str
    probability: float
    spatial: np.ndarray
    channel: int
    channel_weight: float
    channel_map: np.ndarray


@dataclass(frozen=True)
class ImageAttention:
    """One image through one model.

    Attributes:
        image_id: The data set's id of the image.
        image: The image as the model saw it before normalisation: uint8 [S, S, 3].
        true_class: Its class.
        predicted: The model's decision, as training reports it in ``predictions.csv``: the most probable
            class, or for the hierarchical model the greedy level-by-level path (``greedy_decode``).
        loss: ``-log p(true class)``.
        levels: One entry per decision shown (one for the flat model).
        note: Why the image was chosen (``hardest MEL``), or empty.
    """

    image_id: str
    image: np.ndarray
    true_class: str
    predicted: str
    loss: float
    levels: tuple[LevelAttention, ...]
    note: str = ""


@torch.no_grad()
def compute_attention(
    model: nn.Module,
    images: np.ndarray | Tensor,
    labels: Sequence[int],
    classes: Sequence[str],
    *,
    image_ids: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> list[ImageAttention]:
    """The CBAM maps of a model for a batch of images.

    Args:
        model: A trained model in eval mode with ``forward_attention`` (a CBAM model) or
            ``forward_tree`` (a hierarchical one with attention per decision), on ``device``.
        images: uint8 images [N, 3, S, S] (the data package's cached, colour-normalised images).
        labels: True class index of each image.
        classes: Class names, the model's order.
        image_ids: Names of the images (default their positions).
        device: Where the model is.
        batch_size: Images per forward pass.

    Returns:
        One `ImageAttention` per image.

    Raises:
        ConfigError: The model has no CBAM attention to show.
    """
    ids = list(image_ids) if image_ids is not None else [str(i) for i in range(len(images))]
    if not (hasattr(model, "forward_tree") or hasattr(model, "forward_attention")):
        raise ConfigError(
            f"{type(model).__name__} has no CBAM attention to show: attention works with models that have "
            "forward_attention or forward_tree (the paper's two; `sampleweight plugins` lists the models)"
        )
    items: list[ImageAttention] = []
    for start in range(0, len(ids), batch_size):
        part = slice(start, start + batch_size)
        batch = torch.as_tensor(np.array(images[part])).to(device)  # a copy: the cache is a read-only memory map
        x = BatchAugment(batch.shape[-1]).to(device).eval()(batch)
        pictures = batch.permute(0, 2, 3, 1).cpu().numpy()
        method = _hierarchical if hasattr(model, "forward_tree") else _flat
        items += method(model, x, pictures, list(labels[part]), list(classes), ids[part])
    return items


def select_images(runs: Sequence[str | Path]) -> list[tuple[str, str]]:
    """The hardest and the easiest validation image of each class, by loss averaged over ``runs``.

    Reads each run's ``predictions.csv``; only images that every run validated count.

    Returns:
        ``[(image_id, note), ...]``, e.g. ``("ISIC_0024306", "hardest MEL")``, classes in order.

    Raises:
        ConfigError: A run has no ``predictions.csv``, or the runs share no validation image.
    """
    losses: dict[str, list[float]] = {}
    truth: dict[str, str] = {}
    class_order: list[str] = []
    for run in runs:
        path = Path(run) / RunDirectory.PREDICTIONS
        if not path.is_file():
            raise ConfigError(
                f"{run} has no {RunDirectory.PREDICTIONS} (is it finished?); name the images with --images"
            )
        images, true, _, scores, classes = read_predictions(path)
        class_order = class_order or classes
        p_true = scores[np.arange(len(images)), [classes.index(t) for t in true]]
        for image, label, p in zip(images, true, p_true, strict=True):
            losses.setdefault(image, []).append(float(-np.log(max(p, 1e-12))))
            truth[image] = label
    shared = {image: float(np.mean(v)) for image, v in losses.items() if len(v) == len(runs)}
    if not shared:
        raise ConfigError("the runs share no validation image (different data or splits?); name them with --images")
    chosen: list[tuple[str, str]] = []
    for name in class_order:
        members = sorted((loss, image) for image, loss in shared.items() if truth[image] == name)
        if not members:
            continue
        chosen.append((members[-1][1], f"hardest {name}"))
        if len(members) > 1:
            chosen.append((members[0][1], f"easiest {name}"))
    return chosen


def draw_attention(rows: Sequence[tuple[str, ImageAttention, LevelAttention]], path: str | Path, *, title: str) -> Path:
    """A panel: one row per ``(row label, image, level)``; columns image, spatial map, best channel.

    Returns:
        ``path`` (PNG).
    """
    figure = new_figure(9.0, 0.6 + 2.9 * len(rows))
    grid = figure.subplots(len(rows), 3, squeeze=False)
    for r, (label, item, level) in enumerate(rows):
        size = item.image.shape[:2]
        spatial = _upsample(level.spatial, size)
        channel = _upsample(level.channel_map, size)
        span = np.ptp(channel)
        channel = (channel - channel.min()) / span if span > 0 else np.zeros_like(channel)
        image_axes, spatial_axes, channel_axes = grid[r]
        image_axes.imshow(item.image)
        image_axes.set_ylabel(f"{label}\np = {level.probability:.2f}", fontsize="small")
        spatial_axes.imshow(item.image)
        shown = spatial_axes.imshow(spatial, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        figure.colorbar(shown, ax=spatial_axes, shrink=0.8)
        channel_axes.imshow(item.image)
        channel_axes.imshow(channel, cmap="inferno", alpha=0.55, vmin=0.0, vmax=1.0)
        spatial_axes.set_title(f"spatial attention (max {level.spatial.max():.2f})", fontsize="small")
        channel_axes.set_title(f"channel {level.channel} (weight {level.channel_weight:.2f})", fontsize="small")
        if r == 0:
            image_axes.set_title("image", fontsize="small")
        for axes in grid[r]:
            axes.set_xticks([])
            axes.set_yticks([])
    figure.suptitle(title, fontsize="medium")
    return save_figure(figure, path)


def attention_figures(
    runs: Sequence[str | Path],
    *,
    images: Sequence[str] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    data: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """Attention panels of one or more runs: per run and image, and (for several runs) per image across runs.

    Args:
        runs: Run directories (with ``checkpoint.pt``).
        images: Image ids; default the hardest and easiest validation image of each class (`select_images`).
        out: Output folder; default ``RUN/attention`` for one run, ``PARENT/attention`` for several.
        device: Where to run the models (default CUDA when available).
        data: Read the images from here instead of the runs' ``data`` (the data set has moved).
        cache_dir: Image cache folder instead of the runs' ``cache_dir``.

    Returns:
        The PNG files: ``OUT/IMAGE.png`` for one run; ``OUT/RUN/IMAGE.png`` and ``OUT/compare-IMAGE.png``
        for several.

    Raises:
        ConfigError: No runs, an unknown image id, a run without checkpoint or attention, a binary or multilabel run.
    """
    paths = [Path(run) for run in runs]
    if not paths:
        raise ConfigError("name at least one run directory")
    _refuse_sigmoid_runs(paths)
    torch_device = resolve_device(device)
    chosen = [(image, "") for image in images] if images else select_images(paths)
    folder = Path(out) if out is not None else (paths[0] if len(paths) == 1 else _common_parent(paths)) / "attention"
    output_folder(folder)  # before any model is loaded: a read-only --out is said at once
    written: list[Path] = []
    per_run: list[tuple[str, list[ImageAttention]]] = []
    loaded: dict[tuple[Any, ...], tuple[DatasetRecords, np.ndarray]] = {}
    for path in paths:
        model, config, classes = load_trained_model(path, torch_device)
        key = (data or config.data, config.image_size, cache_dir or config.cache_dir)
        if key not in loaded:
            loaded[key] = _read_images(config, data, cache_dir)
        records, pictures = loaded[key]
        if tuple(records.classes) != tuple(classes):
            raise ConfigError(f"{path} was trained on classes {list(classes)}, its data has {list(records.classes)}")
        rows = _record_rows(records, [image for image, _ in chosen], path)
        items = compute_attention(
            model,
            pictures[rows],
            records.labels[rows].tolist(),
            classes,
            image_ids=[records.image_ids[i] for i in rows],
            device=torch_device,
        )
        items = [replace(item, note=note) for item, (_, note) in zip(items, chosen, strict=True)]
        per_run.append((path.name, items))
        target = folder if len(paths) == 1 else folder / path.name
        for item in items:
            rows_of_item = [(level.label, item, level) for level in item.levels]
            written.append(draw_attention(rows_of_item, target / f"{item.image_id}.png", title=_title(item, path.name)))
    if len(paths) > 1:
        for k, (image, note) in enumerate(chosen):
            rows = [(f"{name}\n{items[k].levels[-1].label}", items[k], items[k].levels[-1]) for name, items in per_run]
            first = per_run[0][1][k]
            title = f"{image}: true {first.true_class}" + (f" ({note})" if note else "") + "; last decision per run"
            written.append(draw_attention(rows, folder / f"compare-{image}.png", title=title))
    return written


# ------------------------------------------------------------------------------------------------ helpers


def _refuse_sigmoid_runs(paths: Sequence[Path]) -> None:
    """A binary or multilabel run (its ``config.json``'s ``task``) has sigmoid logits that decide no one class of its
    data: the figures show a multiclass run's decision, so such a run is refused before anything is read."""
    for path in paths:
        try:
            task = json.loads((path / RunDirectory.CONFIG).read_text()).get("task", "multiclass")
        except (OSError, ValueError, AttributeError):
            continue  # no readable config.json: loading the run says what is wrong
        if task != "multiclass":
            raise ConfigError(
                f"{path} is a {task} run: the attention figures show a multiclass run's decision among its classes; "
                "draw them for a multiclass run"
            )


def _flat(
    model: nn.Module, x: Tensor, pictures: np.ndarray, labels: list[int], classes: list[str], ids: list[str]
) -> list[ImageAttention]:
    out = model.forward_attention(x)
    log_probs = out.logits.float().log_softmax(1)
    items = []
    for i, label in enumerate(labels):
        channel = int(out.channel[i].argmax())
        level = LevelAttention(
            label=classes[label],
            probability=float(log_probs[i, label].exp()),
            spatial=out.spatial[i, 0].float().cpu().numpy(),
            channel=channel,
            channel_weight=float(out.channel[i, channel]),
            channel_map=out.features[i, channel].float().cpu().numpy(),
        )
        items.append(_item(ids[i], pictures[i], classes, label, int(log_probs[i].argmax()), log_probs[i], (level,)))
    return items


def _hierarchical(
    model: nn.Module, x: Tensor, pictures: np.ndarray, labels: list[int], classes: list[str], ids: list[str]
) -> list[ImageAttention]:
    tree = model.forward_tree(x)
    taxonomy = model.taxonomy
    decisions = model.greedy_decode(tree).tolist()  # the paper's level-by-level inference, as training reports
    items = []
    for i, label in enumerate(labels):
        levels = []
        for node, position in taxonomy.path(label):
            attention = tree.attention[node]
            channel = int(attention.channel[i].argmax())
            levels.append(
                LevelAttention(
                    label=f"{node} -> {taxonomy.children(node)[position]}",
                    probability=float(tree.node_logits[node][i].float().softmax(0)[position]),
                    spatial=attention.spatial[i, 0].float().cpu().numpy(),
                    channel=channel,
                    channel_weight=float(attention.channel[i, channel]),
                    channel_map=tree.features[i, channel].float().cpu().numpy(),
                )
            )
        log_probs = tree.leaf_log_probs[i].float()
        items.append(_item(ids[i], pictures[i], classes, label, decisions[i], log_probs, tuple(levels)))
    return items


def _item(
    image_id: str,
    picture: np.ndarray,
    classes: list[str],
    label: int,
    predicted: int,
    log_probs: Tensor,
    levels: tuple[LevelAttention, ...],
) -> ImageAttention:
    return ImageAttention(
        image_id=image_id,
        image=picture,
        true_class=classes[label],
        predicted=classes[predicted],
        loss=float(-log_probs[label]),
        levels=levels,
    )


def _read_images(
    config: TrainConfig, data: str | None, cache_dir: str | Path | None
) -> tuple[DatasetRecords, np.ndarray]:
    """The run's data set and its cached images (the preprocessing training used), [N, 3, S, S] uint8."""
    records = read_dataset(data or config.data, skip_bad=config.skip_bad)  # as the run was trained
    cached = prepare_cache(
        records,
        config.image_size,
        cache_dir=cache_dir or config.cache_dir,
        progress=False,
        skip_bad=config.skip_bad,
    )
    return records, cached.images


def _record_rows(records: DatasetRecords, image_ids: Sequence[str], run: Path) -> list[int]:
    index = {image: i for i, image in enumerate(records.image_ids)}
    missing = [image for image in image_ids if image not in index]
    if missing:
        examples = ", ".join(records.image_ids[:3])
        raise ConfigError(
            f"image(s) {', '.join(missing[:5])} not in {records.source}, the data of {run}; ids look like {examples}"
        )
    return [index[image] for image in image_ids]


def _title(item: ImageAttention, run: str) -> str:
    note = f" ({item.note})" if item.note else ""
    return f"{item.image_id}{note}: true {item.true_class}, predicted {item.predicted}, loss {item.loss:.2f}\n{run}"


def _upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.as_tensor(values, dtype=torch.float32)[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _common_parent(paths: Sequence[Path]) -> Path:
    parents = {path.resolve().parent for path in paths}
    return parents.pop() if len(parents) == 1 else Path.cwd()
