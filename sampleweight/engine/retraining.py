"""``sampleweight retrain``: a decoupled second stage on a finished run (Kang et al., ICLR 2020).

Kang et al. ("Decoupling representation and classifier for long-tailed recognition") keep the
representation a run learned on the natural class mix and re-balance only its classifier:

- ``crt`` (classifier re-training): the classifier is re-initialised (timm's ``reset_classifier``) and
  trained again on class-balanced batches (the built-in sampler registered ``balanced``), everything else frozen;
- ``tau_norm``: each class's weight vector is divided by its norm to the power tau, the bias dropped (as
  Kang et al.'s ``tau_norm.py``); tau is chosen on the validation side from `TAU_GRID` unless given;
- ``lws`` (learnable weight scaling): one scale per class, learned on class-balanced batches, the classifier
  itself frozen; the scales are then folded into its weights;
- ``wb`` (weight balancing, Alshammari et al., CVPR 2022): the classifier, kept as the run left it, trained
  further on the natural class mix with a class-balanced loss (the built-in weighter registered ``class_balanced``,
  Cui et al.'s effective number, normalised to a mean class weight of 1), weight decay, and after each step the
  MaxNorm projection of each class's weight vector into a ball whose radius lies ``max_norm`` of the way from the
  smallest to the largest class norm of the run's classifier (their code's rule and default 0.1);
- ``ncm`` (nearest class mean): the mean pooled feature of each class on the training side, and the cosine
  similarity to it as the score (a `sampleweight.classifier.CosineClassifier` in place of the classifier); with
  ``ncm_distance="cl2n"``, Kang et al.'s code's default instead: the Euclidean distance to the class means of the
  centred, L2-normalised features (a `sampleweight.classifier.CenteredNCMClassifier`).

The backbone runs in eval mode throughout (BatchNorm statistics and dropout as at the end of the run), so
its parameters and buffers stay exactly those of the source run. (Kang et al.'s code leaves the frozen
network in training mode during cRT and LWS, so there BatchNorm re-estimates its running statistics on the
class-balanced batches; here the representation is the source run's, bit for bit.)

`retrain` writes a normal run directory (``config.json`` with a ``retrain`` table, ``metrics.json``,
``predictions.csv``, ``checkpoint.pt``, ``data.json``, and ``metrics.jsonl`` for the trained methods) that
``evaluate``, ``report`` and ``grid`` treat like any other run. ``docs/long-tail.md`` gives the formulas.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from torch import Tensor, nn

from sampleweight.classifier import (
    CenteredNCMClassifier,
    CosineClassifier,
    WeightScaling,
    centered_class_means,
    class_means,
    classifier_layer,
    max_norm_,
    max_norm_limit,
    pooled_features,
    replace_classifier,
    tau_normalize,
)
from sampleweight.engine.checkpoint import load_checkpoint, save_checkpoint
from sampleweight.engine.components import build_optimizer, class_balanced_weighter, is_hierarchical, takes_closure
from sampleweight.engine.config import TrainConfig, balanced_sampler, default_name, validation_message
from sampleweight.engine.device import autocast_for, resolve_device
from sampleweight.engine.evaluation import load_trained_model
from sampleweight.engine.inference import predict
from sampleweight.engine.loader import TrainingData, check_sampler, load_split, make_loader
from sampleweight.engine.rundir import STAGE_KEY, RunDirectory, stage_of
from sampleweight.engine.training import batch_closure
from sampleweight.errors import ConfigError, DataError, LossError
from sampleweight.factory import check_options, list_losses
from sampleweight.metrics import classification_metrics, final_metrics
from sampleweight.weighted_loss import WeightedLoss

__all__ = [
    "MAX_NORM_THRESHOLD",
    "METHODS",
    "NCM_DISTANCES",
    "SELECTION_METRIC",
    "TAU_GRID",
    "TRAINED_METHODS",
    "default_epochs",
    "retrain",
    "retrained_name",
]

METHODS = ("crt", "tau_norm", "lws", "ncm", "wb")
"""The decoupled second stages (Kang et al. 2020; wb: Alshammari et al. 2022)."""
TRAINED_METHODS = ("crt", "lws", "wb")
"""The methods that train on class-balanced batches (the others compute the classifier in one pass)."""
MAX_NORM_THRESHOLD = 0.1
"""wb's MaxNorm threshold when not given: Alshammari et al.'s (``thresh = 0.1`` in their second-stage demo)."""
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))
"""tau values tried when ``--tau`` is not given: 0, 0.1, ..., 2 (Kang et al.'s ``np.linspace(0, 2, 21)``)."""
SELECTION_METRIC = "bacc"
"""What tau is chosen by on the validation side: balanced accuracy (the first best in grid order)."""
NCM_DISTANCES = ("cosine", "cl2n")
"""How ``ncm`` measures the nearest class mean: the cosine to the class means of the raw features (the default;
the rule of Kang et al.'s ``tau_norm.py``), or ``cl2n``, the squared Euclidean distance after centring and
L2-normalising (the default NCM of their ``KNNClassifier``)."""
NCM_SCALE_BOUNDS = (0.01, 1000.0)
"""Where the NCM temperature is searched (`_fit_scale`)."""
SELECTION_NOTE = (
    "tau was chosen on the validation side that these metrics are computed on, so they are optimistic; "
    "choose tau on other data (--tau) for an unbiased figure"
)


def default_epochs(run_epochs: int) -> int:
    """The epochs of a trained stage when not given: 10 % of the run's, rounded up (at least 1)."""
    return max(1, -(-run_epochs // 10))


def retrained_name(run_name: str, method: str) -> str:
    """The name of a retrained run: its source's, then ``+METHOD`` (``MODEL-ce-none-adam-s0+crt``)."""
    return f"{run_name}+{method}"


def retrain(
    run: str | Path,
    method: str,
    out: str | Path,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    sampler: str | None = None,
    loss: str | None = None,
    tau: float | None = None,
    ncm_distance: str | None = None,
    weight_decay: float | None = None,
    max_norm: float | None = None,
    data: str | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    bootstrap: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Re-balance the classifier of a finished run and write the result as a new run directory.

    Args:
        run: A finished run directory (``metrics.json`` and ``checkpoint.pt``), trained by ``sampleweight train``.
        method: ``crt``, ``tau_norm``, ``lws``, ``ncm`` or ``wb`` (`METHODS`).
        out: The new run directory.
        epochs: Epochs of ``crt``/``lws``/``wb`` (default `default_epochs`: 10 % of the run's, at least 1).
        lr: Their learning rate (default the run's; cosine-annealed to 0 over the stage, as Kang et al.).
        batch_size: Their batch size (default the run's).
        sampler: Their sampler plugin (default: the class-balanced one, `balanced_sampler`; ``wb``: the run's
            default sampler, the natural class mix).
        loss: Their loss plugin (default ``ce``, plain cross-entropy).
        tau: ``tau_norm``'s exponent, >= 0 (default: the best of `TAU_GRID` on the validation side).
        ncm_distance: ``ncm``'s rule, one of `NCM_DISTANCES` (default ``"cosine"``).
        weight_decay: ``wb``'s weight decay of the classifier (default the run's).
        max_norm: ``wb``'s MaxNorm threshold in [0, 1] (default `MAX_NORM_THRESHOLD`;
            `sampleweight.classifier.max_norm_limit`).
        data: The data set, if it moved since the run (default the run's ``data``).
        device: Device (default CUDA when available).
        cache_dir: Image cache folder (default the run's).
        workers: Loader worker processes (default the run's).
        bootstrap: Resamples of the intervals in ``metrics.json`` (default the run's).
        overwrite: Start over in an ``out`` that holds a run.
        quiet: Print nothing.
        console: Where progress goes (default stdout).

    Returns:
        The final metrics (as written to ``metrics.json``), with the stage's outcome under ``retrain``.

    Raises:
        ConfigError: An unknown method or option, a negative tau, an unknown NCM distance, an option the method
            does not take, a run
            that is not finished or has no checkpoint, a retrained run as the source, a model without a single
            linear classifier (the hierarchical one), an ``out`` that holds a run (without ``overwrite``).
        RunDirectoryInUseError: Another process writes into ``out``.
        DataError: The data's classes are not the run's.
        LossError: The stage's training loss became NaN/inf.

    Example:
        >>> retrain("runs/ce-none", "crt", "runs/ce-none+crt")  # doctest: +SKIP
    """
    stage = _stage_options(method, epochs, lr, batch_size, sampler, loss, tau, ncm_distance, weight_decay, max_norm)
    source = _finished_run(Path(run))
    out = Path(out)
    if out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the run itself: give the retrained run a folder of its own")
    torch_device = resolve_device(device)
    state = load_checkpoint(source / RunDirectory.CHECKPOINT)
    config = _source_config(state, source)
    if is_hierarchical(config.model):
        raise ConfigError(
            f"retrain: {config.model} is hierarchical: it decides level by level along its label tree, with a "
            "classifier per node, so it has no single classifier to re-balance; retrain a flat model's run"
        )
    if config.task != "multiclass":
        raise ConfigError(
            f"retrain: {source} is a {config.task} run, one sigmoid logit per label: tau-norm and LWS rescale that "
            "logit and leave its ranking (AUC) as it is, and cRT/NCM re-balance classes against each other, which one "
            "logit has not; re-balance a sigmoid head by its threshold(s) instead (--threshold-specificity, "
            "docs/tasks.md)"
        )
    model, _, classes = load_trained_model(source, torch_device)
    _check_classifier(model, method, len(classes), config.image_size, torch_device)
    updates: dict[str, Any] = {"out": out, "device": str(torch_device), "quiet": quiet}
    for key, value in (("data", data), ("cache_dir", cache_dir), ("workers", workers), ("bootstrap", bootstrap)):
        if value is not None:
            updates[key] = value
    try:
        config = TrainConfig(**{**config.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from None
    console = console or Console(quiet=quiet)
    with RunDirectory(out) as directory:  # one writer, as train: a second stage into the folder is refused
        outputs = (RunDirectory.CHECKPOINT, RunDirectory.FINAL, RunDirectory.PREDICTIONS)
        held = [name for name in outputs if (out / name).exists()]
        if held and not overwrite:  # a stage is not resumed: it is short
            raise ConfigError(
                f"{out} already holds a run ({', '.join(held)}); start over with --overwrite or choose another --out"
            )
        directory.start_fresh(overwrite=True)
        return _retrain(directory, source, config, stage, model, classes, torch_device, console)


def _stage_options(
    method: str,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    sampler: str | None,
    loss: str | None,
    tau: float | None,
    ncm_distance: str | None = None,
    weight_decay: float | None = None,
    max_norm: float | None = None,
) -> dict[str, Any]:
    """The options given, checked; those the method does not take are refused."""
    if method not in METHODS:
        raise ConfigError(f"unknown retrain method {method!r}; choose one of: {', '.join(METHODS)}")
    given = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "sampler": sampler, "loss": loss, "tau": tau,
             "ncm_distance": ncm_distance, "weight_decay": weight_decay, "max_norm": max_norm}  # fmt: skip
    given = {key: value for key, value in given.items() if value is not None}
    takes = {"crt": {"epochs", "lr", "batch_size", "sampler", "loss"}, "lws": {"epochs", "lr", "batch_size",
             "sampler", "loss"}, "tau_norm": {"tau"}, "ncm": {"ncm_distance"},
             "wb": {"epochs", "lr", "batch_size", "sampler", "loss", "weight_decay", "max_norm"}}[method]  # fmt: skip
    extra = sorted(set(given) - takes)
    if extra:
        accepted = (
            f"it takes {', '.join('--' + k.replace('_', '-') for k in sorted(takes))}" if takes else "it has none"
        )
        raise ConfigError(f"--{extra[0].replace('_', '-')} is not an option of {method} ({accepted})")
    if "tau" in given and not (math.isfinite(given["tau"]) and given["tau"] >= 0):
        raise ConfigError(f"--tau must be a finite number >= 0 (w_c / ||w_c||^tau), got {given['tau']}")
    if "ncm_distance" in given and given["ncm_distance"] not in NCM_DISTANCES:
        raise ConfigError(
            f"unknown --ncm-distance {given['ncm_distance']!r}; choose one of: {', '.join(NCM_DISTANCES)}"
        )
    if "weight_decay" in given and not (math.isfinite(given["weight_decay"]) and given["weight_decay"] >= 0):
        raise ConfigError(f"--weight-decay must be a finite number >= 0, got {given['weight_decay']}")
    if "max_norm" in given and not 0 <= given["max_norm"] <= 1:
        raise ConfigError(
            f"--max-norm must lie in [0, 1] (0: the smallest class norm of the run's classifier, 1: the largest), "
            f"got {given['max_norm']}"
        )
    if "epochs" in given and given["epochs"] < 1:
        raise ConfigError(f"--epochs must be >= 1, got {given['epochs']}")
    if "batch_size" in given and given["batch_size"] < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {given['batch_size']}")
    if "lr" in given and not (math.isfinite(given["lr"]) and given["lr"] > 0):
        raise ConfigError(f"--lr must be a finite number > 0, got {given['lr']}")
    if "loss" in given:
        if given["loss"] not in list_losses():
            raise ConfigError(f"unknown loss {given['loss']!r}; choose one of: {', '.join(list_losses())}")
        check_options("losses", [given["loss"]], {})
    if "sampler" in given:
        check_sampler(TrainConfig(sampler=given["sampler"]))
    return {"method": method, **given}


def _finished_run(path: Path) -> Path:
    """``path`` if it is a finished run that ``sampleweight train`` wrote, else a `ConfigError` saying why."""
    if not path.is_dir():
        raise ConfigError(f"{path} is not a run directory: pass the --out folder of a finished sampleweight train")
    if not (path / RunDirectory.CHECKPOINT).is_file():
        raise ConfigError(f"{path} has no {RunDirectory.CHECKPOINT}: retrain needs the trained model of a finished run")
    if not (path / RunDirectory.FINAL).is_file():
        raise ConfigError(
            f"{path} is not finished (no {RunDirectory.FINAL}); finish it first: "
            f"sampleweight train --out {path} --resume"
        )
    try:  # a damaged config.json is no matter: the checkpoint holds the run's configuration (and says if retrained)
        retrained = stage_of(json.loads((path / RunDirectory.CONFIG).read_text())) is not None
    except (OSError, ValueError, AttributeError):
        retrained = False
    if retrained:
        raise ConfigError(f"{path} is itself a retrained run; retrain the run it came from")
    return path


def _source_config(state: dict[str, Any], source: Path) -> TrainConfig:
    """The run's configuration from its checkpoint, which must be that of its last epoch."""
    if STAGE_KEY in state:
        raise ConfigError(f"{source} is itself a retrained run; retrain the run it came from")
    try:
        config = TrainConfig(**state["config"])
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source=f"the checkpoint in {source}")) from None
    if int(state["epoch"]) < config.epochs:
        raise ConfigError(
            f"{source} is not finished: its checkpoint is of epoch {state['epoch']} of {config.epochs}; finish it "
            f"first: sampleweight train --out {source} --resume"
        )
    return config


@torch.no_grad()
def _check_classifier(model: nn.Module, method: str, num_classes: int, image_size: int, device: torch.device) -> None:
    """The model's classifier can be re-balanced apart from the rest: timm's interface, fed by the pooled features.

    Checked on a random batch in eval mode: ``classifier(pooled_features(x))`` must give ``model(x)``.
    """
    name = type(model).__name__
    try:
        layer = classifier_layer(model)
        if method != "crt" and not (isinstance(layer, nn.Linear) and layer.out_features == num_classes):
            raise ConfigError(
                f"{method} re-balances a linear classifier with one weight vector per class; {name}'s classifier is "
                f"{type(layer).__name__}"
            )
        if method == "crt" and not callable(getattr(model, "reset_classifier", None)):
            raise ConfigError(f"the model {name} has no reset_classifier(), so cRT cannot re-initialise its classifier")
        x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
        direct, split = model(x), layer(pooled_features(model, x))
    except ConfigError as error:
        raise ConfigError(f"retrain: {error}") from None
    if direct.shape != split.shape or not torch.allclose(
        direct, split, rtol=1e-4, atol=1e-4 * (1 + direct.abs().max())
    ):
        raise ConfigError(
            f"retrain: {name}'s classifier (get_classifier()) applied to its pooled features "
            "(forward_head(pre_logits=True)) does not give the model's scores, so its classifier cannot be "
            "re-balanced apart from the rest"
        )


def _retrain(
    directory: RunDirectory,
    source: Path,
    config: TrainConfig,
    stage: dict[str, Any],
    model: nn.Module,
    classes: tuple[str, ...],
    device: torch.device,
    console: Console,
) -> dict[str, Any]:
    method = stage["method"]
    trained = method in TRAINED_METHODS
    settings = {
        "epochs": stage.get("epochs", default_epochs(config.epochs)) if trained else None,
        "lr": stage.get("lr", config.lr) if trained else None,
        "batch_size": stage.get("batch_size", config.batch_size),
        "sampler": stage.get("sampler", balanced_sampler() if method != "wb" else default_name("samplers"))
        if trained
        else None,
        "loss": stage.get("loss", default_name("losses")) if trained else None,
    }
    if method == "wb":
        settings.update(
            weighter=class_balanced_weighter(),
            weighter_options={"normalize": "classes"},
            weight_decay=stage.get("weight_decay", config.weight_decay),
            max_norm=stage.get("max_norm", MAX_NORM_THRESHOLD),
        )
    record = {
        "method": method,
        "source": str(source.resolve()),
        "source_run": config.run_name,
        "options": {key: value for key, value in stage.items() if key != "method"},  # as given: what sets it apart
        **{key: value for key, value in settings.items() if value is not None},
    }
    if method == "tau_norm":
        record.update(tau=stage.get("tau"), tau_grid=list(TAU_GRID) if "tau" not in stage else None)
        if "tau" not in stage:
            record["selection_metric"] = SELECTION_METRIC
    if method == "ncm":
        record["ncm_distance"] = stage.get("ncm_distance", NCM_DISTANCES[0])
    directory.write_config({**config.model_dump(mode="json"), STAGE_KEY: record})
    loading = config.model_copy(
        update={
            "sampler": settings["sampler"] or default_name("samplers"),
            "sampler_options": {},
            "epochs": settings["epochs"] or config.epochs,
            "batch_size": settings["batch_size"],
        }
    )
    data = load_split(loading, device)
    if tuple(data.classes) != tuple(classes):
        raise DataError(
            f"the data has classes {list(data.classes)} but the run was trained on {list(classes)}; retrain with the "
            "run's data (--data)"
        )
    if data.inventory is not None:
        directory.write_data(data.inventory.to_dict())
    autocast = autocast_for(device, config.precision if device.type == "cuda" else "fp32")
    model.eval()  # the backbone's BatchNorm statistics and dropout stay as the run left them
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head = "linear"
    if method == "crt":
        torch.manual_seed(config.seed)
        model.reset_classifier(len(classes))
        model.to(device)
        layer = classifier_layer(model)
        outcome = _fit_head(
            model, layer, list(layer.parameters()), data, settings, config, autocast, directory, console
        )
    elif method == "lws":
        scaled = WeightScaling(classifier_layer(model))
        replace_classifier(model, scaled)
        outcome = _fit_head(model, scaled, [scaled.scales], data, settings, config, autocast, directory, console)
        outcome["scales"] = dict(zip(classes, scaled.scales.detach().cpu().tolist(), strict=True))
        replace_classifier(model, scaled.folded())
    elif method == "wb":
        torch.manual_seed(config.seed)
        layer = classifier_layer(model)
        limit = max_norm_limit(layer.weight, settings["max_norm"])
        outcome = _fit_head(
            model, layer, list(layer.parameters()), data, settings, config, autocast, directory, console,
            after_step=lambda: max_norm_(layer.weight, limit),
        )  # fmt: skip
        outcome["max_norm_limit"] = limit
    elif method == "tau_norm":
        outcome = _tau_norm(model, data, stage.get("tau"), classes, autocast, device)
    else:
        distance = record["ncm_distance"]
        outcome = _nearest_class_mean(model, data, settings["batch_size"], config, classes, autocast, device, distance)
        head = "cosine" if distance == "cosine" else "cl2n"
    model.eval()
    targets, scores = predict(model, data.val, device, autocast, data.normalize)
    predictions = scores.argmax(axis=1)
    final = {
        **final_metrics(targets, scores, predictions, classes, resamples=config.bootstrap),
        "decoding": "argmax",
        "epochs": config.epochs,
        "run": retrained_name(config.run_name, method),
        STAGE_KEY: {"method": method, "source": record["source"], **outcome},
    }
    dump = config.model_dump(mode="json")
    checkpoint = {"epoch": config.epochs, "model": model.state_dict(), "config": dump, "classes": list(classes),
                  STAGE_KEY: record, "head": head}  # fmt: skip
    save_checkpoint(directory.checkpoint, checkpoint)
    directory.write_predictions(data.val_ids, targets, scores, classes, predictions)
    directory.write_final(final)  # last: a folder with metrics.json holds a finished stage
    return final


def _fit_head(
    model: nn.Module,
    head: nn.Module,
    parameters: list[nn.Parameter],
    data: TrainingData,
    settings: dict[str, Any],
    config: TrainConfig,
    autocast: contextlib.AbstractContextManager,
    directory: RunDirectory,
    console: Console,
    after_step: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Train ``parameters`` of ``head`` on the pooled features of augmented batches of the stage's sampler.

    The run's optimizer (a sharpness-aware one steps through a closure) and weight decay (the stage's, when it
    has one), the stage's learning rate annealed to 0 by a cosine over all steps (Kang et al.'s schedule), the
    stage's loss (weighted by the stage's weighter, if any) averaged over the batch; ``after_step`` runs after
    each step (wb's MaxNorm projection).
    """
    for parameter in parameters:
        parameter.requires_grad_(True)
    device = data.augment.mean.device
    criterion = WeightedLoss(
        settings["loss"],
        settings.get("weighter", default_name("weighters")),
        weighter_options=settings.get("weighter_options", {}),
        class_counts=data.class_counts,
        class_names=list(data.classes),
    ).to(device)
    stage = config.model_copy(
        update={"lr": settings["lr"], "weight_decay": settings.get("weight_decay", config.weight_decay)}
    )
    optimizer = build_optimizer(
        stage, parameters, device, class_counts=data.class_counts, class_names=list(data.classes)
    )
    closure = takes_closure(config.optimizer)
    epochs = settings["epochs"]
    steps = 0
    for epoch in range(epochs):  # a sampler's epochs may differ in length: count each one's batches
        data.sampler.set_epoch(epoch)
        steps += len(data.train)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    model.eval()  # a classifier just created (reset_classifier) may bring modules in training mode: dropout, pooling
    head.train()
    loss_mean = float("nan")
    for epoch in range(epochs):
        generator = data.set_epoch(epoch, config.seed)
        started = time.perf_counter()
        total = torch.zeros(2, dtype=torch.float64, device=device)  # sum of losses, batches: read once per epoch
        for images, labels, _ in data.train:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.no_grad(), autocast:
                features = pooled_features(model, data.augment(images, generator=generator))
            optimizer.zero_grad(set_to_none=True)
            if closure:
                optimizer.step(batch_closure(head, criterion, contextlib.nullcontext(), features.float(), labels, None))
                loss = criterion.last_value
            else:
                loss = criterion(head(features.float()), labels)
                loss.backward()
                optimizer.step()
            if after_step is not None:
                after_step()
            scheduler.step()
            total += torch.stack([loss.detach().double(), torch.ones((), dtype=torch.float64, device=device)])
        loss_sum, batches = total.tolist()
        loss_mean = loss_sum / max(batches, 1)
        if not math.isfinite(loss_mean):
            raise LossError(
                f"the {settings['loss']} loss of the re-balanced classifier became {loss_mean} in epoch {epoch + 1}/"
                f"{epochs}; lower --lr"
            )
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "train_loss": loss_mean, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "drawn": data.drawn()}  # fmt: skip
        directory.append_epoch(record)
        console.print(
            f"{escape(directory.path.name)}: epoch {epoch + 1}/{epochs}  loss {loss_mean:.4f}  {seconds:.1f}s",
            highlight=False,
        )
    head.eval()
    for parameter in parameters:
        parameter.requires_grad_(False)
    return {"epochs": epochs, "train_loss": loss_mean}


@torch.no_grad()
def _features(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    normalize: nn.Module,
    autocast: contextlib.AbstractContextManager,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Pooled features [N, D] (float32) and class indices [N] of every image of ``batches``, unaugmented."""
    features, targets = [], []
    for images, labels, _ in batches:
        with autocast:
            features.append(pooled_features(model, normalize(images.to(device))).float())
        targets.append(labels.to(device))
    return torch.cat(features), torch.cat(targets)


def _tau_norm(
    model: nn.Module,
    data: TrainingData,
    tau: float | None,
    classes: tuple[str, ...],
    autocast: contextlib.AbstractContextManager,
    device: torch.device,
) -> dict[str, Any]:
    """Rescale the classifier's rows by ``1 / ||w_c||^tau`` and drop its bias; choose tau on the validation side."""
    layer = classifier_layer(model)
    weight = layer.weight.detach().clone()
    outcome: dict[str, Any] = {}
    if tau is None:
        features, targets = _features(model, data.val, data.normalize, autocast, device)
        by_tau = {}
        for candidate in TAU_GRID:
            predicted = (features @ tau_normalize(weight, candidate).T.float()).argmax(1)
            by_tau[candidate] = classification_metrics(targets.cpu(), predicted.cpu(), classes)[SELECTION_METRIC]
        tau = max(TAU_GRID, key=lambda t: (by_tau[t], -t))  # the best; on a tie, the smallest tau
        outcome.update(
            tau_grid=list(TAU_GRID),
            selection={
                "metric": SELECTION_METRIC,
                "side": "validation",
                "by_tau": {str(t): by_tau[t] for t in TAU_GRID},
            },
            optimistic=True,
            note=SELECTION_NOTE,
        )
    else:
        outcome["tau_given"] = True
    layer.weight.copy_(tau_normalize(weight, tau))
    if layer.bias is not None:
        layer.bias.zero_()
    return {"tau": tau, **outcome}


def _nearest_class_mean(
    model: nn.Module,
    data: TrainingData,
    batch_size: int,
    config: TrainConfig,
    classes: tuple[str, ...],
    autocast: contextlib.AbstractContextManager,
    device: torch.device,
    distance: str = "cosine",
) -> dict[str, Any]:
    """Replace the classifier by the nearest class mean of the training features, by ``distance`` (`NCM_DISTANCES`)."""
    plain = make_loader(
        data.train.dataset, batch_size, device, workers=config.workers or 0
    )  # every image once, in order
    features, targets = _features(model, plain, data.normalize, autocast, device)
    head: CosineClassifier | CenteredNCMClassifier
    if distance == "cosine":
        head = CosineClassifier(class_means(features, targets, len(classes)))
    else:
        head = CenteredNCMClassifier(*centered_class_means(features, targets, len(classes)))
    head = head.to(device)
    with torch.no_grad():
        head.scale.fill_(_fit_scale(head(features), targets))  # the scores at scale 1, scaled by the best s
    replace_classifier(model, head)
    return {"distance": distance, "scale": float(head.scale), "feature_images": int(targets.numel())}


def _fit_scale(scores: Tensor, targets: Tensor) -> float:
    """The temperature s of ``softmax(s * scores)`` with the least NLL on the training side (within
    `NCM_SCALE_BOUNDS`); ``scores`` [N, C] are the NCM head's at scale 1 (cosines, or minus squared distances).

    The NLL is convex in s, so a bounded scalar search finds its minimum; the decisions do not depend on s.
    """
    from scipy.optimize import minimize_scalar

    unscaled = scores.double()
    index = targets.long()[:, None]

    def nll(scale: float) -> float:
        logits = scale * unscaled
        return float((torch.logsumexp(logits, dim=1) - logits.gather(1, index)[:, 0]).mean())

    low, high = NCM_SCALE_BOUNDS
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.clip(found.x, low, high))
