"""``sampleweight evaluate``: a trained model on another data set (e.g. the ISIC 2018 validation/test release)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from sampleweight.classifier import install_head
from sampleweight.data import BatchAugment, DataInventory, build_eval_dataset, read_dataset
from sampleweight.engine.checkpoint import load_checkpoint
from sampleweight.engine.config import TrainConfig, validation_message
from sampleweight.engine.loader import make_loader
from sampleweight.engine.rundir import RunDirectory, write_predictions
from sampleweight.engine.training import (
    HIERARCHICAL_MODELS,
    autocast_for,
    build_model,
    decide,
    predict,
    resolve_device,
    taxonomy_of_model,
)
from sampleweight.errors import ConfigError, DataError
from sampleweight.metrics import final_metrics

__all__ = ["evaluate", "load_trained_model"]


def load_trained_model(
    run_or_checkpoint: str | Path, device: torch.device
) -> tuple[torch.nn.Module, TrainConfig, tuple[str, ...]]:
    """The model of a run directory (or a ``checkpoint.pt``), its config and its class names.

    Raises:
        ConfigError: No checkpoint there.
    """
    checkpoint = _checkpoint_file(run_or_checkpoint)
    state = load_checkpoint(checkpoint)
    try:
        config = TrainConfig(**state["config"])
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source=f"the checkpoint {checkpoint}")) from None
    classes = tuple(state["classes"])
    model = build_model(
        config.model_copy(update={"pretrained": False, "pretrained_path": None}),
        len(classes),
        taxonomy_of_model(config, classes),
    )
    install_head(model, state.get("head", "linear"))  # a nearest-class-mean run (sampleweight retrain) has a cosine one
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, classes


def _checkpoint_file(run_or_checkpoint: str | Path) -> Path:
    path = Path(run_or_checkpoint)
    checkpoint = path / RunDirectory.CHECKPOINT if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(
            f"no checkpoint at {checkpoint}: pass a run directory (with {RunDirectory.CHECKPOINT}) or the file"
        )
    return checkpoint


def evaluate(
    run_or_checkpoint: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    device: str | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    quiet: bool = False,
    bootstrap: int = 2000,
) -> tuple[dict[str, Any], Path]:
    """Score a trained model on every image of ``data``; write ``metrics.json``, ``predictions.csv`` and ``data.json``.

    A labelled set that lacks some of the model's classes is scored over the classes it has: BAcc, mPR and mF1
    are means over ``metrics["scored_classes"]``, and a note (also in ``data.json``) names the absent ones.

    Args:
        run_or_checkpoint: A run directory or its ``checkpoint.pt``.
        data: A data set (any layout `read_dataset` detects; the ISIC 2018 validation or test release
            with its ground-truth CSV).
        out: Output folder (default ``RUN/evaluate``).
        device: Device (default CUDA when available).
        batch_size: Evaluation batch size.
        cache_dir: Image cache folder.
        skip_bad: Leave out (and report) unreadable images and bad rows instead of failing.
        quiet: No progress bar while caching.
        bootstrap: Resamples of the stratified-bootstrap intervals (``ci`` in ``metrics.json``); 0: none.

    Returns:
        The metrics and the output folder.

    Raises:
        DataError: The data set's classes are not the model's (a label the model does not know).
        RunDirectoryInUseError: Another process writes into the output folder.
    """
    torch_device = resolve_device(device)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    source = Path(run_or_checkpoint)
    checkpoint = _checkpoint_file(source)  # before creating any folder for a path that holds no run
    folder = Path(out) if out is not None else checkpoint.parent / "evaluate"
    with RunDirectory(folder) as directory:  # one writer: a second evaluate into the folder is refused at once
        metrics = _evaluate(directory, source, data, torch_device, batch_size, cache_dir, skip_bad, quiet, bootstrap)
    return metrics, directory.path


def _evaluate(
    directory: RunDirectory,
    source: Path,
    data: str | Path,
    torch_device: torch.device,
    batch_size: int,
    cache_dir: str | Path | None,
    skip_bad: bool,
    quiet: bool,
    bootstrap: int,
) -> dict[str, Any]:
    model, config, classes = load_trained_model(source, torch_device)
    records = read_dataset(data, skip_bad=skip_bad, classes=classes, allow_empty_classes=True)
    if tuple(records.classes) != classes:
        raise DataError(
            f"{data} has classes {list(records.classes)} but the model was trained on {list(classes)}; "
            "evaluate on data with the same classes in the same order"
        )
    dataset = build_eval_dataset(
        records,
        image_size=config.image_size,
        augment="batch",
        cache_dir=cache_dir,
        progress=not quiet,
        skip_bad=skip_bad,
    )
    loader = make_loader(dataset, batch_size, torch_device, workers=0)
    normalize = BatchAugment(config.image_size).to(torch_device).eval()
    precision = config.precision if torch_device.type == "cuda" else "fp32"  # as trained; bf16 needs CUDA
    targets, scores = predict(model, loader, torch_device, autocast_for(torch_device, precision), normalize)
    predictions = decide(scores, model.taxonomy if config.model in HIERARCHICAL_MODELS else None)
    metrics = {
        **final_metrics(targets, scores, predictions, classes, resamples=bootstrap),
        "decoding": "greedy" if config.model in HIERARCHICAL_MODELS else "argmax",
        "data": str(data),
    }
    image_ids = [records.image_ids[i] for i in dataset.record_indices]
    undecodable = sorted(set(range(len(records))) - set(dataset.record_indices.tolist()))
    skipped = records.skipped + tuple(f"{records.image_ids[i]} (cannot be decoded)" for i in undecodable)
    inventory = DataInventory.of_sides(records, {"evaluated": dataset.record_indices}, skipped)
    if not quiet:
        for note in inventory.notes():
            Console(stderr=True).print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    write_predictions(directory.path / RunDirectory.PREDICTIONS, image_ids, targets, scores, classes, predictions)
    directory.write_final(metrics)
    directory.write_data(inventory.to_dict())
    return metrics
