"""The training engine: one run of any registered model x loss x weighter(s) x optimizer.

`train(config)` is what ``sampleweight train`` calls, and what a notebook calls. Per epoch: the
weighters see the epoch, each batch's loss is ``(1/B) sum w l`` (`WeightedLoss`), the validation
side is scored with the paper's metrics, one line goes to ``metrics.jsonl`` and the checkpoint is
replaced atomically. Every source of randomness is reseeded from ``(seed, epoch)`` at the start of
an epoch, so a run resumed from a checkpoint ends with exactly the weights and metrics of an
uninterrupted one (on the CPU; cuDNN autotuning makes CUDA runs close, not bit-identical).

Launched by ``torchrun`` as several processes, the same function trains with DistributedDataParallel:
each process loads its share of every global batch (`sampleweight.engine.loader`), `WeightedLoss` weights the
global batch, validation predictions are gathered from all processes, and only rank 0 writes the run
directory and prints (`sampleweight.engine.ddp`, ``docs/distributed.md``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from torch import Tensor, nn

from sampleweight import distributed
from sampleweight.deferred import DeferredCheck
from sampleweight.engine import ddp
from sampleweight.engine.checkpoint import CheckpointWriter, capture_rng, load_checkpoint, restore_rng
from sampleweight.engine.components import (
    build_mixer,
    build_model,
    build_optimizer,
    check_choices,
    check_weights,
    is_hierarchical,
    loss_scaled,
    model_outputs,
    run_taxonomy,
    takes_closure,
    training_loss,
)
from sampleweight.engine.config import (
    EXECUTION_FIELDS,
    TrainConfig,
    complete_config,
    load_config,
    validation_message,
)
from sampleweight.engine.device import autocast_for, resolve_device
from sampleweight.engine.folder_lock import LOCK_FILE
from sampleweight.engine.inference import decide, predict
from sampleweight.engine.loader import TrainingData, load_split, smallest_part
from sampleweight.engine.multilabel import epoch_figures, multilabel_final
from sampleweight.engine.progress import TrainingProgress
from sampleweight.engine.rebalancing import rebalancing_twice
from sampleweight.engine.rundir import STAGE_KEY, RunDirectory, write_label_predictions
from sampleweight.errors import ConfigError, LossError, OutputError, SampleWeightError, WeightError
from sampleweight.metrics import classification_metrics, final_metrics
from sampleweight.mixing import Mixer
from sampleweight.taxonomy import Taxonomy
from sampleweight.weighted_loss import WeightedLoss
from sampleweight.weighting import class_mix_weights

__all__ = ["Run", "prepare_run", "resume_options", "train", "weight_scale_lines"]


@dataclass
class Run:
    """Everything a run holds while it trains (built by `prepare_run`).

    ``model`` is what the training step calls (the network, wrapped in DDP with several processes
    and compiled with ``compile``); ``network`` is the bare model, whose state is checkpointed.
    ``directory`` is None when nothing is written (no ``out``, or a process other than rank 0).
    """

    config: TrainConfig
    device: torch.device
    model: nn.Module
    criterion: WeightedLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: TrainingData
    directory: RunDirectory | None
    start_epoch: int = 0
    network: nn.Module | None = None
    taxonomy: Taxonomy | None = None
    mixer: Mixer | None = None

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = self.model


def train(config: TrainConfig | dict[str, Any], *, resume: bool = False) -> dict[str, Any]:
    """Train one model and return its final validation metrics.

    Args:
        config: A `TrainConfig` (or a dict of its fields).
        resume: Continue the run in ``config.out`` from its last finished epoch.

    Returns:
        The final metrics (as written to ``metrics.json``): ``acc``, ``bacc``, ``mpr``, ``mf1``,
        ``per_class``, ``confusion``, ``classes``, ``ece``, ``nll`` and (unless ``bootstrap`` is 0) their
        95 % intervals under ``ci`` (`sampleweight.metrics.final_metrics`); a multilabel run's are its labels'
        figures and their means (`sampleweight.engine.multilabel.multilabel_final`).

    Raises:
        ConfigError: Invalid options, unwritable ``out``, nothing to resume, ``resume`` with ``overwrite``.
        RunDirectoryInUseError: Another process writes into ``config.out``.
        OutputError: ``config.out`` stopped being writable during the run (the last good checkpoint is kept).
        DataError: A bad data set.
        LossError: The training loss became NaN/inf (the last good checkpoint is kept).
        WeightError: A weighter produced invalid weights.
    """
    config = config if isinstance(config, TrainConfig) else load_config(**config)
    finished = _finished_metrics(config) if resume and not config.overwrite else None
    if finished is not None:  # nothing to resume: say so, and leave its files as they are
        if ddp.is_main():
            Console(stderr=True).print(
                f"note: {config.out} is finished ({config.epochs}/{config.epochs} epochs); nothing to resume, its "
                "files are left as they are (train more with a new --out, or start over with --overwrite)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        return finished
    with ddp.session(resolve_device(config.device)):
        run = prepare_run(config, resume=resume)
        with run.directory or contextlib.nullcontext():  # held since prepare_run: one writer per run directory
            try:
                return _fit(run)
            except OutputError as error:  # the folder stopped being writable: say what is left and what to do
                raise OutputError(f"{error}; {_saved(run)}") from None


def _finished_metrics(config: TrainConfig) -> dict[str, Any] | None:
    """The final metrics of the run in ``config.out`` when it finished all its epochs with these very options.

    None otherwise: another setup's or a shorter run (resuming says what differs), or a finished run resumed with
    another execution option (``--bootstrap``), which resuming scores again.
    """
    if config.out is None:
        return None
    try:
        final = json.loads((Path(config.out) / RunDirectory.FINAL).read_text())
        saved = json.loads((Path(config.out) / RunDirectory.CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(final, dict) or not isinstance(saved, dict) or final.get("epochs") != config.epochs:
        return None
    saved = complete_config(saved)  # an older version's config.json: the options it did not know at their defaults
    given = config.model_dump(mode="json")
    same = all(
        value is None or saved.get(key) == value
        for key, value in given.items()
        if key not in ("out", "quiet", "overwrite")  # how it is shown and where: not what it computes
    )
    return final if same and final.get("run") == config.run_name else None


def _fit(run: Run) -> dict[str, Any]:
    """The epochs of a prepared run, then the final metrics and predictions."""
    cfg = run.config
    autocast = autocast_for(run.device, cfg.precision)
    console = None if ddp.is_main() else Console(quiet=True)  # only rank 0 prints
    scalars = _tensorboard(run)
    with (
        TrainingProgress(cfg.epochs, quiet=cfg.quiet, title=cfg.run_name, console=console) as progress,
        scalars or contextlib.nullcontext(),
        CheckpointWriter() as checkpoints,  # saved while the next epoch trains; waited for on any exit
    ):
        progress.start(run.start_epoch, len(run.data.train))
        if not cfg.quiet:
            progress.console.print(
                f"data: {run.data.describe}; model {cfg.model} on {_where(run)}", markup=False, highlight=False
            )
        for note in run.data.inventory.notes() if run.data.inventory is not None else ():
            progress.console.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
        scale_lines = weight_scale_lines(
            run.criterion.weighter, run.data.class_counts, cfg.optimizer, cfg.optimizer_options
        )
        for line in scale_lines:
            progress.console.print(line, highlight=False, soft_wrap=True)
        twice = rebalancing_twice(cfg, run.data.sampler.rebalances_classes)
        if twice:
            progress.console.print(f"[yellow]warning[/]: {escape(twice)}", highlight=False, soft_wrap=True)
        for epoch in range(run.start_epoch, cfg.epochs):
            _seed_epoch(cfg.seed, epoch, distributed.rank())
            started = time.perf_counter()
            train_loss, weight_mean = _train_epoch(run, epoch, autocast, progress)
            drawn = run.data.drawn()
            ddp.average_buffers(run.network)
            seconds = time.perf_counter() - started
            targets, scores = _validate(run, autocast)
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "mean_weight": weight_mean,
                "lr": run.optimizer.param_groups[0]["lr"],
                "seconds": seconds,
                "images_per_second": run.data.images_drawn() / seconds,  # the epoch's images, all processes
                **_validation_record(run, targets, scores),
                "drawn": drawn,
            }
            run.scheduler.step()
            if run.directory:
                run.directory.append_epoch(record)
                checkpoints.submit(run.directory.checkpoint, _checkpoint_state(run, epoch + 1))
            if scalars is not None:
                for key, value in record.items():
                    if isinstance(value, dict):  # drawn: one scalar per class
                        for part, number in value.items():
                            scalars.add_scalar(f"{key}/{part}", number, epoch)
                    elif key != "epoch":
                        scalars.add_scalar(key, value, epoch)
            progress.end_epoch(epoch, record)
    if run.start_epoch >= cfg.epochs:  # resuming a run whose last epoch was done: score its final model
        targets, scores = _validate(run, autocast)
    if cfg.task == "multilabel":  # each label decided at its own threshold, chosen on this validation side
        figures, predictions = multilabel_final(
            targets, scores, run.data.classes, threshold_rule=_threshold_rule(cfg), resamples=cfg.bootstrap
        )
        final = {**figures, "epochs": cfg.epochs, "run": cfg.run_name}
        if run.directory:
            write_label_predictions(
                run.directory.path / RunDirectory.PREDICTIONS,
                run.data.val_ids,
                targets,
                scores,
                run.data.classes,
                predictions,
            )
            run.directory.write_final(final)
        return final
    predictions = decide(scores, run.taxonomy)
    final = {
        **final_metrics(targets, scores, predictions, run.data.classes, resamples=cfg.bootstrap),
        **_task_metrics(cfg, targets, scores),
        "decoding": "greedy" if run.taxonomy is not None else "argmax",
        "epochs": cfg.epochs,
        "run": cfg.run_name,
    }
    if run.directory:
        run.directory.write_predictions(run.data.val_ids, targets, scores, run.data.classes, predictions)
        run.directory.write_final(final)
    return final


def _validation_record(run: Run, targets: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """An epoch's validation figures in ``metrics.jsonl``: ``val_acc``, ``val_bacc``, ``val_mpr``, ``val_mf1`` (and a
    binary run's ``val_auc``, ``val_pauc``); a multilabel run's ``val_auc``, ``val_pauc``, ``val_ap`` (means over
    its labels, `sampleweight.engine.multilabel.epoch_figures`)."""
    if run.config.task == "multilabel":
        return epoch_figures(targets, scores)
    metrics = classification_metrics(targets, decide(scores, run.taxonomy), run.data.classes)
    return {
        **{f"val_{k}": metrics[k] for k in ("acc", "bacc", "mpr", "mf1")},
        **_ranking_record(run.config, targets, scores),
    }


def _threshold_rule(config: TrainConfig) -> str | float:
    """How a sigmoid run's decision threshold(s) are chosen on the validation side: Youden's J, or
    ``--threshold-specificity``."""
    return "youden" if config.threshold_specificity is None else config.threshold_specificity


def _ranking_record(config: TrainConfig, targets: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """A binary run's per-epoch validation AUC and ISIC 2024 partial AUC (``metrics.jsonl``); nothing otherwise."""
    if config.task != "binary":
        return {}
    from sampleweight.binary_metrics import RANKING_METRICS, ranking_metrics

    figures = dict(zip(RANKING_METRICS, ranking_metrics(targets, scores[:, 1]).tolist(), strict=True))
    return {f"val_{name}": figures[name] if math.isfinite(figures[name]) else None for name in ("auc", "pauc")}


def _task_metrics(config: TrainConfig, targets: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """A binary run's ``metrics.json`` block ``binary``: `sampleweight.binary_metrics.binary_metrics` of the positive
    class's probability, the threshold chosen on this validation side; and ``task``."""
    if config.task != "binary":
        return {}
    from sampleweight.binary_metrics import binary_metrics

    return {
        "task": config.task,
        "binary": binary_metrics(
            targets, scores[:, 1], threshold_rule=_threshold_rule(config), resamples=config.bootstrap
        ),
    }


WEIGHT_SCALE_RANGE = (0.1, 10.0)
"""Under SGD, `train` warns when a class weighter's mean weight per sample lies outside this range."""


def weight_scale_lines(
    weighter: Any, class_counts: Tensor, optimizer: str, optimizer_options: Mapping[str, Any] | None = None
) -> list[str]:
    """What `train` logs at the start: each class weighter's mean weight per sample under the training mix.

    Under an optimizer whose update scales with the loss (registered ``loss_scaled``: SGD, and SAM around it) that
    mean multiplies the effective learning rate (ADAM's update is nearly scale-free), so outside
    `WEIGHT_SCALE_RANGE` a one-line warning names the ``normalize`` option that fixes it.
    """
    scaled = loss_scaled(optimizer, optimizer_options or {})
    lines = []
    low, high = WEIGHT_SCALE_RANGE
    for name, mean in class_mix_weights(weighter, class_counts):
        lines.append(
            f"weight scale: {escape(name)} gives a mean weight per sample of {mean:.3g} under the training class mix"
        )
        if scaled and not low <= mean <= high:
            lines.append(
                f"[yellow]warning[/]: {escape(name)}'s mean weight per sample {mean:.3g} is outside "
                f"{low:g}-{high:g}, and under SGD it scales the learning rate by that much; set its normalize option "
                f"(--weighter-option {escape(name)}.normalize=classes or =batch) for a mean near 1"
            )
    return lines


def _tensorboard(run: Run) -> Any:
    """A TensorBoard ``SummaryWriter`` on OUT/tensorboard when asked for (rank 0 with a run directory)."""
    if not run.config.tensorboard or run.directory is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir=str(run.directory.path / "tensorboard"))


def prepare_run(config: TrainConfig, *, resume: bool = False) -> Run:
    """Build data, model, criterion and optimiser; restore them from the checkpoint when resuming.

    The run directory is taken first (`RunDirectory.acquire`), so a second run into it is refused before
    any work; the returned run holds it until ``run.directory.release()`` (`train` does this).
    """
    if resume and config.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it over: give one of them")
    checkpoint = Path(config.out) / RunDirectory.CHECKPOINT if config.out is not None else None
    if resume:
        if checkpoint is None:
            raise ConfigError("--resume needs --out, the run directory to continue")
        if not checkpoint.is_file():
            raise ConfigError(f"nothing to resume in {config.out}: it has no {RunDirectory.CHECKPOINT}")
    # the user's mistakes first: before the run directory is made, any data read, model built or weight downloaded
    check_choices(config)
    check_weights(config)  # offline, unavailable weights are said now, not after the data is read and cached
    main = ddp.is_main()  # only rank 0 writes the run directory
    created = config.out is not None and main and not Path(config.out).exists()
    directory = RunDirectory(config.out).acquire() if config.out is not None and main else None
    try:
        return _prepare(config, directory, resume)
    except BaseException:
        if directory is not None:
            directory.release()
        if created:  # a refused run leaves no folder behind that it made (one it wrote into stays)
            _remove_if_empty(Path(config.out))  # type: ignore[arg-type]
        raise


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing (but a released lock file)."""
    with contextlib.suppress(OSError):
        if all(entry.name == LOCK_FILE for entry in folder.iterdir()):
            (folder / LOCK_FILE).unlink(missing_ok=True)
            folder.rmdir()


def _prepare(config: TrainConfig, directory: RunDirectory | None, resume: bool) -> Run:
    device = resolve_device(config.device)
    config = _resolve_execution(config, device)
    data = load_split(config, device)
    torch.manual_seed(config.seed)
    taxonomy = run_taxonomy(config, data.classes)
    model_taxonomy = taxonomy if is_hierarchical(config.model) else None
    outputs = model_outputs(config.task, data.classes)
    model = build_model(config, num_classes=outputs, taxonomy=model_taxonomy).to(device)
    data.sampler.min_part = smallest_part(model)
    _check_steps(config, data)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss, options = training_loss(config, taxonomy)
    criterion = WeightedLoss(
        loss,
        config.weighters,
        loss_options=options,
        weighter_options=config.weighter_options,
        validate="deferred",  # read on the host every few steps by _train_epoch, not in every step
        class_counts=data.class_counts,
        class_names=list(data.classes),
        num_epochs=config.epochs,
        batch_size=config.batch_size,  # the global batch M: selection runs over all processes' samples
        task=config.task,
    ).to(device)
    optimizer = build_optimizer(
        config,
        [p for p in model.parameters() if p.requires_grad],
        device,
        class_counts=data.class_counts,
        class_names=list(data.classes),
        num_epochs=config.epochs,
        batch_size=config.batch_size,
    )
    milestones = sorted({max(1, math.ceil(f * config.epochs)) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=config.lr_decay)
    mixer = build_mixer(config, data.class_counts, list(data.classes))
    run = Run(
        config, device, model, criterion, optimizer, scheduler, data, directory, taxonomy=model_taxonomy, mixer=mixer
    )
    if resume:
        _restore(run, Path(config.out) / RunDirectory.CHECKPOINT)  # type: ignore[arg-type]  # checked: resume has out
    elif directory is not None:
        directory.start_fresh(overwrite=config.overwrite)
        directory.write_config(config.model_dump(mode="json"))
    if directory is not None and data.inventory is not None:
        directory.write_data(data.inventory.to_dict())
    run.model = ddp.wrap(run.network, device)
    if config.compile:
        run.model = torch.compile(run.model)
    return run


def _train_epoch(
    run: Run, epoch: int, autocast: contextlib.AbstractContextManager, progress: TrainingProgress
) -> tuple[float, float]:
    """One pass over the training side; returns the mean loss and the mean weight per sample (per (sample, label)
    term for a weighter that weighs each term of a multilabel task).

    No step waits for the device: the loss and the weights are checked on the device
    (`DeferredCheck`, ``WeightedLoss(validate="deferred")``) and read on the host every
    `read_every` steps and at the end, which raises for the first bad step, naming it.
    """
    model, criterion, optimizer, device = run.model, run.criterion, run.optimizer, run.device
    model.train()
    criterion.set_epoch(epoch)
    generator = run.data.set_epoch(epoch, run.config.seed)
    progress.set_batches(len(run.data.train))  # after set_epoch: the length of this epoch
    wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    totals = torch.zeros(4, dtype=wide, device=device)  # sum of w * l, sum of w, samples, weights: no host sync
    losses = DeferredCheck()
    every, first_step = read_every(device), criterion.step
    closure = takes_closure(run.config.optimizer)
    try:
        for step, (images, labels, indices) in enumerate(run.data.train):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            x = run.data.augment(images, generator=generator)
            if run.mixer is not None:  # this process's share, drawn from (seed, epoch, step, rank)
                x, labels = run.mixer(x, labels, epoch=epoch, step=step, rank=distributed.rank())
            if run.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            indices = indices.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            if closure:  # a sharpness-aware step: the closure runs each forward/backward pass it asks for
                optimizer.step(batch_closure(model, criterion, autocast, x, labels, indices))
            else:
                with autocast:
                    output = model(x)
                loss = criterion(output, labels, indices=indices)
                loss.backward()
                optimizer.step()
            value = criterion.last_value  # Eq. 3 of the (global) batch: the same on every process
            losses.update(~(value.abs() < float("inf")), epoch=epoch, step=step, detail=value)  # NaN, +-inf
            weights = criterion.last_weights.to(wide)
            if weights.ndim == 1:
                totals[0] += weights @ criterion.last_losses.to(wide)
            else:  # a weight per (sample, label) term: Eq. 3 of the batch is the mean of sum_l w_jl l_jl
                totals[0] += value.to(wide) * weights.shape[0]
            totals[1] += weights.sum()
            totals[2] += weights.shape[0]
            totals[3] += weights.numel()
            if (step + 1) % every:
                progress.advance()
            else:  # every process reads at the same steps, so all of them stop at the same one
                _raise_first_failure(run, losses, first_step)
                progress.advance(value.item())
    except Exception as error:  # a bad step's NaNs can break something later: report the cause
        try:
            _raise_first_failure(run, losses, first_step, error)
        except SampleWeightError:
            raise
        except Exception:  # noqa: BLE001 - the device itself failed (e.g. a CUDA assert): report the original
            pass
        if isinstance(error, WeightError):  # raised by the weighter of this step: said in the run's terms
            raise _in_run(run, error, epoch, first_step, criterion.step) from error.__cause__
        raise
    _raise_first_failure(run, losses, first_step)
    loss_sum, weight_sum, seen, weighed = distributed.all_reduce_sum(totals).tolist()
    return loss_sum / seen, weight_sum / weighed


def batch_closure(
    model: nn.Module,
    criterion: WeightedLoss,
    autocast: contextlib.AbstractContextManager,
    x: Tensor,
    labels: Tensor,
    indices: Tensor,
) -> Any:
    """The closure a sharpness-aware optimizer's ``step(closure)`` calls: ``closure(classes=None)`` runs the
    forward and backward pass of this batch at the current weights and returns the weighted loss.

    The first call weights the batch (the weighter sees it once per step, as in a plain step); the later ones,
    at perturbed weights, reuse those weights (``WeightedLoss(reuse=True)``): the perturbation moves the
    weights, not the objective, so SPL's and OHEM's selections stay those of the unperturbed model, and a
    weighter's state advances once per step. ``classes`` (a bool mask [C]) keeps only the samples of those
    classes in the loss, still divided by the whole batch (ImbSAM's split of the loss by class); a mixed sample
    (soft targets [B, C]) belongs to the class of its largest target mass, as for the class-aware weighters.
    """
    calls = 0
    multilabel = criterion.task == "multilabel"  # several labels per sample: no class to split the loss by
    hard = None if multilabel else labels if labels.ndim == 1 else labels.argmax(1)  # mixed: its largest mass

    def closure(classes: Tensor | None = None) -> Tensor:
        nonlocal calls
        with autocast:
            output = model(x)
        if classes is not None and hard is None:
            raise ConfigError(
                "the optimizer splits the loss by class (closure(classes=...)), but a multilabel sample has no one "
                "class; use an optimizer that does not, or a multiclass or binary task"
            )
        samples = None if classes is None else classes.to(labels.device)[hard]
        loss = criterion(output, labels, indices=indices, samples=samples, reuse=calls > 0)
        calls += 1
        loss.backward()
        return loss.detach()

    return closure


READ_EVERY = 25
"""On an accelerator, the host reads the loss and the deferred checks every this many training steps."""


def read_every(device: torch.device) -> int:
    """How often the training loop reads the device: every step on the CPU (free there), else `READ_EVERY`."""
    return 1 if device.type == "cpu" else READ_EVERY


def _raise_first_failure(run: Run, losses: DeferredCheck, first_step: int, cause: Exception | None = None) -> None:
    """Raise for the first bad step since the last read: invalid weights, or a non-finite loss.

    ``first_step`` is the criterion's step count at the start of the epoch (its steps count all epochs).
    Weights and loss failing at the same step is blamed on the weights, as an immediate check would.
    """
    weights_failed: WeightError | None = None
    try:
        run.criterion.raise_if_invalid()
    except WeightError as error:
        weights_failed = error
    failure = losses.pop()
    if weights_failed is not None and (failure is None or weights_failed.step - first_step <= failure.step):
        raise _in_run(run, weights_failed, run.criterion.epoch, first_step) from cause
    if failure is not None:
        epochs, batches = run.config.epochs, len(run.data.train)
        raise LossError(
            f"the training loss became {failure.detail.item()} at epoch {failure.epoch + 1}/{epochs}, batch "
            f"{failure.step + 1}/{batches} (run {run.config.run_name}); {_kept(run, failure.epoch)}. Lower --lr, "
            "or check the data and the weighter's weights"
        ) from cause


def _in_run(run: Run, error: WeightError, epoch: int, first_step: int, step: int | None = None) -> WeightError:
    """A weighter's failure said as the run's progress says it: epoch and batch counted from 1, out of how many,
    and what is left on disk (`_kept`). ``step`` is the criterion's global step when the error does not carry it."""
    if error.problem is None or error.weighter is None:  # a failure of another form: its own words, and what is kept
        return WeightError(f"{error}; {_kept(run, epoch)}", epoch=error.epoch, step=error.step)
    epoch = error.epoch if error.epoch is not None else epoch
    step = error.step if error.step is not None else step
    where = f"at epoch {epoch + 1}/{run.config.epochs}"
    if step is not None:
        where += f", batch {step - first_step + 1}/{len(run.data.train)}"
    return WeightError(
        f"weighter {error.weighter!r} {where} (run {run.config.run_name}): {error.problem}; {_kept(run, epoch)}",
        epoch=error.epoch,
        step=error.step,
        weighter=error.weighter,
        problem=error.problem,
    )


def _kept(run: Run, epoch: int) -> str:
    """What a run that fails in (0-based) ``epoch`` leaves on disk, numbered as the progress line numbers epochs."""
    if run.config.out is None:
        return "nothing is saved (no --out)"
    if epoch == 0:
        return "no epoch had finished, so there is no checkpoint"
    return f"the checkpoint of epoch {epoch}/{run.config.epochs}, the last good one, is kept"


def _saved(run: Run) -> str:
    """What a run whose folder stopped being writable leaves, and how to continue it."""
    if run.directory is not None and run.directory.checkpoint.is_file():
        return (
            "the last good checkpoint is kept; make the folder writable (or free space) and continue with: "
            f"sampleweight train --out {run.config.out} --resume"
        )
    return "no checkpoint was saved"


def _validate(run: Run, autocast: contextlib.AbstractContextManager) -> tuple[np.ndarray, np.ndarray]:
    """Targets and scores of the whole validation side (gathered from every process's shard)."""
    channels_last, task = bool(run.config.channels_last), run.config.task
    if not distributed.is_distributed():
        return predict(run.model, run.data.val, run.device, autocast, run.data.normalize, channels_last, task)
    # each process scores its shard with the bare network: no DDP collectives in a loop whose length differs
    targets, scores = predict(run.network, run.data.val, run.device, autocast, run.data.normalize, channels_last, task)
    length = len(run.data.val.dataset)
    targets = distributed.gather_interleaved(torch.from_numpy(targets), length)
    scores = distributed.gather_interleaved(torch.from_numpy(scores), length)
    return targets.numpy(), scores.numpy()


def _where(run: Run) -> str:
    """The device, and the number of processes when there are several."""
    world = distributed.world_size()
    return f"{run.device.type} x {world} processes" if world > 1 else str(run.device)


def _resolve_execution(config: TrainConfig, device: torch.device) -> TrainConfig:
    """Fill the device-dependent defaults: bf16 on CUDA, fp32 elsewhere; channels_last on CUDA and the CPU.

    Channels-last convolutions are faster with cuDNN and with oneDNN on the CPU (measured in
    `docs/benchmarks.md`); other devices (MPS) keep the default layout.
    """
    cuda = device.type == "cuda"
    updates: dict[str, Any] = {"device": str(device)}
    if config.precision is None:
        updates["precision"] = "bf16" if cuda else "fp32"
    if config.channels_last is None:
        updates["channels_last"] = device.type in ("cuda", "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
    return config.model_copy(update=updates)


def _seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Reseed the global generators from (seed, epoch): dropout etc. do not depend on resumption.

    Each process of a distributed run draws its own dropout masks (rank 0 those of a single process).
    """
    entropy = [seed, epoch] + ([rank] if rank else [])
    torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))


def _check_steps(config: TrainConfig, data: TrainingData) -> None:
    """Refuse steps a model with BatchNorm cannot train: a batch of one sample per process, or no step at all."""
    world, needed = distributed.world_size(), data.sampler.min_part
    processes = f" over {world} processes" if world > 1 else ""
    if config.batch_size // world < needed:
        raise ConfigError(
            f"--batch-size {config.batch_size}{processes} gives each process {config.batch_size // world} sample per "
            f"step, and a model with BatchNorm needs at least {needed}; use --batch-size {needed * world} or more"
        )
    if len(data.train) > 0:
        return
    raise ConfigError(
        f"the training side has {len(data.train.dataset)} image(s): with a model that has BatchNorm, every process "
        f"needs at least 2 samples per step, so no step can run{processes}; use more training images, "
        "or a model without BatchNorm"
    )


def _checkpoint_state(run: Run, next_epoch: int) -> dict[str, Any]:
    return {
        "epoch": next_epoch,
        "model": run.network.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "criterion": run.criterion.state_dict(),
        "sampler": run.data.sampler.state_dict(),
        "mixer": run.mixer.state_dict() if run.mixer is not None else {},
        "rng": capture_rng(),
        "config": run.config.model_dump(mode="json"),
        "classes": list(run.data.classes),
    }


def resume_options(out: str | Path) -> Path | None:
    """The run's own ``config.json``, which ``train --out OUT --resume`` reads its options from (None when absent).

    Raises:
        ConfigError: ``out`` holds a retrained run (its ``config.json`` has a ``retrain`` table), which is no
            training run to continue; ``out`` has a checkpoint but no ``config.json`` (its options are unknown).
    """
    path = Path(out) / RunDirectory.CONFIG
    if not path.is_file():
        if (Path(out) / RunDirectory.CHECKPOINT).is_file():
            raise ConfigError(
                f"cannot resume {out}: its {RunDirectory.CONFIG} (the run's options) is missing; give them with "
                f"--config FILE, or start over with --overwrite"
            )
        return None  # nothing to resume: train says so
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return path  # unreadable: load_config says why
    if isinstance(saved, dict):
        _refuse_retrained(saved, Path(out))
    return path


def _refuse_retrained(saved: dict[str, Any], folder: Path) -> None:
    """A retrained run's ``config.json`` and checkpoint hold a ``retrain`` table: it cannot be resumed."""
    if STAGE_KEY in saved:
        raise ConfigError(
            f"{folder} holds a retrained classifier (sampleweight retrain), not a training run to continue; "
            "retrain the source run again instead"
        )


def _restore(run: Run, path: Path) -> None:
    state = load_checkpoint(path)  # on the CPU; load_state_dict copies onto the run's device
    _refuse_retrained(state, path.parent)
    try:
        saved = TrainConfig(**state["config"])
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source=f"the checkpoint {path}")) from None
    for key in TrainConfig.model_fields:
        if key not in EXECUTION_FIELDS and getattr(saved, key) != getattr(run.config, key):
            raise ConfigError(
                f"--resume with a different {key} ({getattr(run.config, key)!r}) than the run in "
                f"{run.config.out} ({getattr(saved, key)!r}); resume with the same options or start a new --out"
            )
    run.network.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.criterion.load_state_dict(state["criterion"])
    if "sampler" in state:  # checkpoints written before samplers were plugins have none (the instance sampler)
        run.data.sampler.load_state_dict(state["sampler"])
    if "mixer" in state and run.mixer is not None:  # checkpoints written before mixers were plugins have none
        run.mixer.load_state_dict(state["mixer"])
    restore_rng(state["rng"])
    run.start_epoch = int(state["epoch"])
    if run.directory:
        run.directory.truncate_epochs(before=run.start_epoch)
