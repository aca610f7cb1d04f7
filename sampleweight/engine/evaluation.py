"""``sampleweight evaluate``: trained runs on another data set, as the ISIC challenge evaluates them.

One run, or an ensemble of runs (same classes) whose class probabilities are averaged (``combine``:
``mean``, or ``geometric``: the renormalised geometric mean); a grid folder stands for its finished runs.
Each run sees the images as it was trained: at its own ``image_size`` (its own image cache) and precision,
so runs of different input sizes ensemble without resizing one's input to another's.

Test-time augmentation (`TTA_MODES`) scores several views of every image in one batch on the device and
averages their probabilities: ``flip`` (identity, horizontal, vertical, both: 4 views), ``flip-rot`` (the 8
symmetries of the square: 4 rotations by 90 degrees, each also mirrored) and ``crops``, the ordered
multi-crop evaluation of Gessert et al. (arXiv 1808.01694; ``ngessert/isic2018``): a `CROP_GRID` x
`CROP_GRID` grid of crops of the model's input size S, evenly spaced from the top-left to the bottom-right
corner, cut without rescaling from the image cached at side ``round(S * CROP_ZOOM)`` (so a crop covers half
the image, the smallest crop training's random resized crop takes); 16 views. ``none`` is the plain
evaluation, bit for bit.

Post-hoc logit adjustment (Menon et al., ICLR 2021): with ``logit_adjust=tau`` each run's probabilities
become ``softmax(log p - tau * log prior)``, prior = that run's training class frequencies (``data.json``),
before the ensemble combines them; the decisions, AUC, ECE, NLL and ``predictions.csv`` use the adjusted
probabilities.

Labelled data gets ``metrics.json`` (`sampleweight.metrics.final_metrics`: Acc, BAcc, mPR, mF1, per-class
recall and one-vs-rest ROC AUC, ECE, NLL, bootstrap intervals); an unlabelled image folder gets its
``predictions.csv`` (and the submission) with a ``metrics.json`` that says no metrics were computed.
``submission`` writes the ISIC 2018 Task 3 CSV (`sampleweight.engine.submission`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from torch import nn

from sampleweight.classifier import install_head
from sampleweight.data import BatchAugment, CachedImageDataset, DataInventory, build_eval_dataset, read_dataset
from sampleweight.data.binary import binary_records, positive_indices
from sampleweight.data.multilabel import taxonomy_labels, taxonomy_records
from sampleweight.data.records import DatasetRecords
from sampleweight.engine.checkpoint import load_checkpoint
from sampleweight.engine.components import build_model, check_model, model_outputs, taxonomy_of_model
from sampleweight.engine.config import TrainConfig, validation_message
from sampleweight.engine.device import autocast_for, resolve_device
from sampleweight.engine.inference import decide, probabilities as output_probabilities
from sampleweight.engine.loader import label_tree, make_loader
from sampleweight.engine.multilabel import FALLBACK_THRESHOLD, decide_labels, multilabel_final
from sampleweight.engine.rebalancing import rebalancing, sampler_rebalances
from sampleweight.engine.rundir import RunDirectory, stage_of, write_label_predictions, write_predictions
from sampleweight.engine.submission import (
    check_submission_path,
    submission_order,
    write_binary_submission,
    write_label_submission,
    write_submission,
)
from sampleweight.errors import ConfigError, DataError
from sampleweight.functional import class_log_prior, logit_adjusted_probabilities
from sampleweight.metrics import final_metrics
from sampleweight.taxonomy import Taxonomy

__all__ = [
    "COMBINE_MODES",
    "CROP_GRID",
    "CROP_ZOOM",
    "TRAINING_RUN_FILES",
    "TTA_MODES",
    "Member",
    "check_options",
    "combine_probabilities",
    "evaluate",
    "find_runs",
    "load_trained_model",
    "logit_adjust",
    "predict_views",
    "same_evaluation",
    "training_class_counts",
    "tta_input_size",
    "tta_views",
]

TTA_MODES = ("none", "flip", "flip-rot", "crops")
"""Test-time augmentations: the views of each image whose probabilities are averaged."""
COMBINE_MODES = ("mean", "geometric")
"""How an ensemble combines its runs' probabilities: arithmetic mean, or renormalised geometric mean."""
CROP_GRID = 4
"""``crops``: a CROP_GRID x CROP_GRID grid of crops (16, the default of Gessert et al.'s configs)."""
CROP_ZOOM = math.sqrt(2)
"""``crops``: the image is read at ``round(S * CROP_ZOOM)`` and cut into S x S crops (half its area each)."""
_LOG_FLOOR = 1e-30  # probabilities below this count as this in the geometric mean (no log 0)


def load_trained_model(
    run_or_checkpoint: str | Path, device: torch.device
) -> tuple[torch.nn.Module, TrainConfig, tuple[str, ...]]:
    """The model of a run directory (or a ``checkpoint.pt``), its config and its class names.

    Raises:
        ConfigError: No checkpoint there.
    """
    checkpoint = _checkpoint_file(run_or_checkpoint)
    state = load_checkpoint(checkpoint)
    config, classes = _described(state, checkpoint)
    check_model(config)  # its plugin still installed, its backbone known
    model = build_model(
        config.model_copy(update={"pretrained": False, "pretrained_path": None}),
        model_outputs(config.task, classes),
        taxonomy_of_model(config, classes),
    )
    install_head(model, state.get("head", "linear"))  # a nearest-class-mean run (sampleweight retrain) has a cosine one
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, classes


def _described(state: dict[str, Any], checkpoint: Path) -> tuple[TrainConfig, tuple[str, ...]]:
    try:
        config = TrainConfig(**state["config"])
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source=f"the checkpoint {checkpoint}")) from None
    return config, tuple(state["classes"])


def _checkpoint_file(run_or_checkpoint: str | Path) -> Path:
    path = Path(run_or_checkpoint)
    checkpoint = path / RunDirectory.CHECKPOINT if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(
            f"no checkpoint at {checkpoint}: pass a run directory (with {RunDirectory.CHECKPOINT}) or the file"
        )
    return checkpoint


def find_runs(sources: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The checkpoint of every run named: a run directory, a ``checkpoint.pt``, or a folder of runs (a grid).

    A folder without a checkpoint of its own stands for the finished trained runs under it (a
    ``checkpoint.pt`` beside a ``metrics.json``), in sorted order. Unfinished ones are left out, with a note,
    and so are retrained stages (``sampleweight retrain``: their backbone is their source run's, which would
    count twice in an ensemble) unless the folder holds nothing else; name a stage's folder to include it.

    Returns:
        ``(checkpoints, notes)``.

    Raises:
        ConfigError: A path that is neither, or a folder with no finished run.
    """
    checkpoints: list[Path] = []
    notes: list[str] = []
    for source in sources:
        path = Path(source)
        if not path.is_dir() or (path / RunDirectory.CHECKPOINT).is_file():
            checkpoints.append(_checkpoint_file(path))
            continue
        found = sorted(path.rglob(RunDirectory.CHECKPOINT))
        finished = [c for c in found if (c.parent / RunDirectory.FINAL).is_file()]
        if not finished:
            raise ConfigError(
                f"no run at {path}: it has no {RunDirectory.CHECKPOINT}, and no finished run (a folder with "
                f"{RunDirectory.CHECKPOINT} and {RunDirectory.FINAL}) under it"
            )
        if len(finished) < len(found):
            unfinished = [str(c.parent.relative_to(path)) for c in found if c not in finished]
            notes.append(f"{path}: left out {len(unfinished)} unfinished run(s): {', '.join(unfinished)}")
        stages = [c for c in finished if _is_stage(c.parent)]
        if len(stages) == len(finished):  # a folder of stages only: they are what was asked for
            stages = []
        if stages:
            names = ", ".join(str(c.parent.relative_to(path)) for c in stages)
            notes.append(
                f"{path}: left out {len(stages)} retrained stage(s), whose backbone is their source run's: {names} "
                "(name a stage's folder to include it)"
            )
        checkpoints += [c for c in finished if c not in stages]
    return checkpoints, notes


def _is_stage(folder: Path) -> bool:
    """Whether the run in ``folder`` is a retrained stage (its ``config.json`` has a ``retrain`` table)."""
    try:
        return stage_of(json.loads((folder / RunDirectory.CONFIG).read_text())) is not None
    except (OSError, ValueError, AttributeError):
        return False


def training_class_counts(run: str | Path, class_names: Sequence[str]) -> np.ndarray:
    """A run's training images per class (its ``data.json``), in ``class_names`` order: its class prior.

    Args:
        run: The run directory (or its ``checkpoint.pt``).
        class_names: The model's classes.

    Raises:
        ConfigError: The run has no readable ``data.json`` with training counts of these classes.
    """
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    path = folder / RunDirectory.DATA
    fix = "retrain it with this version (every run writes data.json), or leave out --logit-adjust"
    try:
        counts = json.loads(path.read_text())["class_counts"]["train"]
    except FileNotFoundError:
        raise ConfigError(f"the training prior of {folder} is unknown: it has no {RunDirectory.DATA}; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the training class counts from {path} ({exc}); {fix}") from None
    if not isinstance(counts, dict) or set(counts) != set(class_names):
        raise ConfigError(f"{path} has no training counts of the classes {', '.join(class_names)}; {fix}")
    return np.array([int(counts[name]) for name in class_names], dtype=np.int64)


def logit_adjust(probabilities: np.ndarray, class_counts: Any, tau: float) -> np.ndarray:
    """Post-hoc logit adjustment of class probabilities [N, C]: ``softmax(log p - tau log prior)`` (float64).

    The prior is ``class_counts`` normalised, a class without images counting as one
    (`sampleweight.functional.class_log_prior`).
    """
    log_prior = class_log_prior(torch.as_tensor(np.asarray(class_counts)))
    adjusted = logit_adjusted_probabilities(torch.from_numpy(np.asarray(probabilities)), log_prior, tau=tau)
    return adjusted.numpy()


def combine_probabilities(members: Sequence[np.ndarray], how: str = "mean", *, multilabel: bool = False) -> np.ndarray:
    """An ensemble's class probabilities [N, C] from its members' (each [N, C]).

    Args:
        members: Each run's probabilities.
        how: ``mean`` (the average) or ``geometric`` (``softmax(mean log p)``, probabilities floored at 1e-30).
        multilabel: The columns are independent labels' probabilities (a multilabel task): ``geometric`` then
            renormalises each label's two sides, ``p = G(p) / (G(p) + G(1 - p))`` with ``G`` the geometric mean
            over the runs (for one label, what ``softmax(mean log [1 - p, p])`` gives a binary run).

    Returns:
        One member's array as it is; else float64 [N, C].
    """
    if how not in COMBINE_MODES:
        raise ConfigError(f"unknown --combine {how!r}; choose one of: {', '.join(COMBINE_MODES)}")
    if len(members) == 1:
        return members[0]
    stacked = np.stack([np.asarray(m, dtype=np.float64) for m in members])
    if how == "mean":
        return stacked.mean(axis=0)
    mean_log = np.log(np.maximum(stacked, _LOG_FLOOR)).mean(axis=0)
    if multilabel:
        mean_log_rest = np.log(np.maximum(1 - stacked, _LOG_FLOOR)).mean(axis=0)
        return torch.from_numpy(mean_log - mean_log_rest).sigmoid().numpy()
    return torch.from_numpy(mean_log).softmax(dim=1).numpy()


# ------------------------------------------------------------------------------------- test-time views


def tta_input_size(tta: str, image_size: int) -> int:
    """The side of the cached images a view set is cut from: ``round(S * CROP_ZOOM)`` for ``crops``, else S."""
    return round(image_size * CROP_ZOOM) if tta == "crops" else image_size


def tta_views(images: torch.Tensor, tta: str, image_size: int) -> torch.Tensor:
    """The views of a batch [B, 3, H, W] as one batch [V * B, 3, S, S], view-major (view v is rows v*B...).

    Args:
        images: A normalised batch, at side ``tta_input_size(tta, image_size)``.
        tta: One of `TTA_MODES`.
        image_size: The model's input side S.

    Returns:
        ``none``: the batch itself; ``flip``: identity, horizontal, vertical, both; ``flip-rot``: rotations by
        0, 90, 180, 270 degrees, then the same of the mirrored batch; ``crops``: the `CROP_GRID` ** 2 crops,
        row by row.
    """
    if tta == "none":
        return images
    if tta == "flip":
        return torch.cat([images, images.flip(-1), images.flip(-2), images.flip(-2, -1)])
    if tta == "flip-rot":
        mirrored = images.flip(-1)
        return torch.cat([torch.rot90(x, k, (-2, -1)) for x in (images, mirrored) for k in range(4)])
    if tta == "crops":
        side = images.shape[-1]
        if images.shape[-2] != side or side < image_size:
            raise ValueError(f"crops need square images of side >= {image_size}, got {tuple(images.shape)}")
        starts = [round(i * (side - image_size) / (CROP_GRID - 1)) for i in range(CROP_GRID)]
        return torch.cat(
            [images[..., top : top + image_size, left : left + image_size] for top in starts for left in starts]
        )
    raise ConfigError(f"unknown --tta {tta!r}; choose one of: {', '.join(TTA_MODES)}")


def _view_count(tta: str) -> int:
    return {"none": 1, "flip": 4, "flip-rot": 8, "crops": CROP_GRID**2}[tta]


def predict_views(
    model: nn.Module,
    batches: Any,
    device: torch.device,
    autocast: Any,
    normalize: nn.Module,
    tta: str,
    image_size: int,
    task: str = "multiclass",
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every image, averaged over its test-time views, in the order of ``batches``.

    Each batch's views go through the model as one batch (``V * B`` images); with ``none`` this is exactly
    `sampleweight.engine.inference.predict`.

    Args:
        model: The model (put in eval mode).
        batches: ``(images, labels, indices)`` batches of uint8 images at ``tta_input_size(tta, image_size)``.
        device: Where the model is.
        autocast: Mixed-precision context.
        normalize: Turns a uint8 batch into the model's input (`BatchAugment` in eval mode).
        tta: One of `TTA_MODES`.
        image_size: The model's input side.
        task: The run's task (a multilabel run's labels are each scored by their own sigmoid).

    Returns:
        ``(targets [N], scores [N, C])``, scores float32 (a multilabel run: ``targets [N, L]``, ``scores [N, L]``).
    """
    was_training = model.training
    model.eval()
    views = _view_count(tta)
    targets, scores = [], []
    for images, labels, _ in batches:
        x = tta_views(normalize(images.to(device, non_blocking=True)), tta, image_size)
        with torch.inference_mode(), autocast:
            output = model(x)
        probabilities = output_probabilities(output, task)
        if views > 1:
            probabilities = probabilities.view(views, -1, probabilities.shape[1]).mean(0)
        scores.append(probabilities.cpu())
        targets.append(labels)
    model.train(was_training)
    return torch.cat(targets).numpy(), torch.cat(scores).numpy()


# ------------------------------------------------------------------------------------------- evaluate


@dataclass(frozen=True, eq=False)
class Member:
    """One run of an evaluation (an ensemble has several).

    Attributes:
        checkpoint: Its ``checkpoint.pt``.
        config: Its training config.
        classes: Its class names.
        class_counts: Its training images per class, when logit adjustment needs its prior (else None).
        rebalances: How it already compensates its class frequencies, when its prior was read
            (`sampleweight.engine.rebalancing.rebalancing`; empty for a plain run).
    """

    checkpoint: Path
    config: TrainConfig
    classes: tuple[str, ...]
    class_counts: np.ndarray | None = None
    rebalances: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def taxonomy(self) -> Taxonomy | None:
        """The label tree of a hierarchical model (None for a flat one)."""
        return taxonomy_of_model(self.config, self.classes)

    @classmethod
    def read(cls, checkpoint: Path, *, prior: bool = False) -> Member:
        """The run of ``checkpoint``; with ``prior``, also its training class counts (`training_class_counts`)
        and how it already rebalances them."""
        state = load_checkpoint(checkpoint, mmap=True)  # the weights are read later, by load_trained_model
        config, classes = _described(state, checkpoint)
        notes = _member_notes(state, checkpoint)
        if not prior:
            return cls(checkpoint, config, classes, notes=notes)
        counts = training_class_counts(checkpoint.parent, classes)
        ways = rebalancing(config, sampler_rebalances(config, counts), stage_of(state))
        return cls(checkpoint, config, classes, counts, tuple(ways), notes)


def _member_notes(state: dict[str, Any], checkpoint: Path) -> tuple[str, ...]:
    """What to say about a run scored as it is: unfinished (no ``metrics.json`` beside its checkpoint), or a
    ``config.json`` of another model than the checkpoint's (which is what is scored: its weights are that model's)."""
    notes, saved = [], state["config"]
    if not (checkpoint.parent / RunDirectory.FINAL).is_file():
        notes.append(
            f"{checkpoint.parent} is unfinished: scored as its checkpoint left it, after epoch {state['epoch']} of "
            f"{saved.get('epochs', '?')}"
        )
    try:
        beside = json.loads((checkpoint.parent / RunDirectory.CONFIG).read_text())
    except (OSError, ValueError):
        beside = None
    if isinstance(beside, dict):
        differ = [f"{key} {saved.get(key)} (config.json: {beside[key]})" for key in ("model", "backbone")
                  if key in beside and beside[key] != saved.get(key)]  # fmt: skip
        if differ:
            notes.append(f"{checkpoint} is of another model than its folder's config.json: {', '.join(differ)}; "
                         "scored as the checkpoint's")  # fmt: skip
    return tuple(notes)


@dataclass(frozen=True)
class _Plan:
    """Everything one `evaluate` call scores, and how."""

    members: tuple[Member, ...]
    data: str
    device: torch.device
    batch_size: int
    cache_dir: str | Path | None
    skip_bad: bool
    quiet: bool
    bootstrap: int
    tta: str
    combine: str
    logit_adjust: float | None
    submission: Path | None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.members[0].classes


def evaluate(
    runs: str | Path | Sequence[str | Path],
    data: str | Path,
    *,
    out: str | Path | None = None,
    device: str | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    quiet: bool = False,
    bootstrap: int = 2000,
    tta: str = "none",
    combine: str = "mean",
    submission: str | Path | None = None,
    logit_adjust: float | None = None,
    overwrite: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Score trained runs (one, or an ensemble) on every image of ``data``; write the evaluation folder.

    Writes ``metrics.json``, ``predictions.csv`` and ``data.json`` in ``out``, and the ISIC 2018 Task 3
    submission when asked. An ``out`` that holds a training run, or an evaluation of other runs, data or
    options (`same_evaluation`), is refused unless ``overwrite``; the same evaluation is redone in place.
    A labelled set that lacks some of the model's classes is scored over the classes it has
    (``metrics["scored_classes"]``; a note names the absent ones); a folder of images without labels is scored
    without metrics (``metrics["labelled"]`` is False).

    Args:
        runs: A run directory, its ``checkpoint.pt``, or a folder of runs (a grid: its finished runs), or a
            list of these: several runs are an ensemble (they must have the same classes).
        data: A data set (any layout `read_dataset` detects, e.g. the ISIC 2018 validation or test release
            with its ground-truth CSV), or a folder of images without labels.
        out: Output folder (default ``RUN/evaluate`` for one run or grid folder, with ``-TTA``, ``-geometric``
            and ``-laTAU`` appended for those options; required for several paths).
        device: Device (default CUDA when available).
        batch_size: Images per forward pass (views included: a batch holds ``batch_size // views`` images).
        cache_dir: Image cache folder.
        skip_bad: Leave out (and report) unreadable images and bad rows instead of failing.
        quiet: No progress bar while caching and no notes.
        bootstrap: Resamples of the stratified-bootstrap intervals (``ci`` in ``metrics.json``); 0: none.
        tta: Test-time augmentation, one of `TTA_MODES`.
        combine: How an ensemble averages its runs' probabilities, one of `COMBINE_MODES`.
        submission: Also write the ISIC 2018 Task 3 submission CSV here.
        logit_adjust: Post-hoc logit adjustment strength tau (>= 0; None: none), with each run's training prior.
        overwrite: Replace what ``out`` holds: another evaluation, or a training run (whose ``checkpoint.pt``,
            ``config.json`` and ``metrics.jsonl`` are deleted, so that ``report`` no longer takes it for one).

    Returns:
        The metrics (as written to ``metrics.json``) and the output folder.

    Raises:
        ConfigError: A bad option, no run at a path, runs with different classes, an unknown training prior
            (``logit_adjust`` on a run without ``data.json``), a submission for non-ISIC classes; an ``out``
            that is one of the runs, or (without ``overwrite``) holds a training run or another evaluation.
        OutputError: The submission cannot be written.
        DataError: The data set's classes are not the model's, or no images.
        RunDirectoryInUseError: Another process writes into the output folder.
    """
    sources = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not sources:
        raise ConfigError("evaluate needs at least one run")
    check_options(batch_size=batch_size, tta=tta, combine=combine, logit_adjust=logit_adjust)
    torch_device = resolve_device(device)
    checkpoints, notes = find_runs(sources)  # before creating any folder for a path that holds no run
    members = tuple(Member.read(c, prior=bool(logit_adjust)) for c in checkpoints)
    notes += [note for member in members for note in member.notes]
    for member in members[1:]:
        if member.classes != members[0].classes:
            raise ConfigError(
                f"the runs of an ensemble need the same classes in the same order: {members[0].checkpoint.parent} "
                f"has {', '.join(members[0].classes)}, {member.checkpoint.parent} has {', '.join(member.classes)}"
            )
        if member.config.task != members[0].config.task:
            raise ConfigError(
                f"the runs of an ensemble need the same task: {members[0].checkpoint.parent} is a "
                f"{members[0].config.task} run, {member.checkpoint.parent} a {member.config.task} one"
            )
    if members[0].config.task == "multilabel" and logit_adjust is not None:
        raise ConfigError(
            "--logit-adjust shifts a softmax by its class prior; a multilabel run's labels are independent sigmoids "
            "(each its own threshold), so leave it out"
        )
    if submission is not None:
        if members[0].config.task == "multiclass":
            submission_order(members[0].classes)
        submission = check_submission_path(submission)
    plan = _Plan(members, str(data), torch_device, batch_size, cache_dir, skip_bad, quiet, bootstrap, tta,
                 combine, logit_adjust, submission)  # fmt: skip
    folder = Path(out) if out is not None else _default_folder(sources, checkpoints, plan)
    _refuse_a_source(folder, plan)  # before RunDirectory creates anything
    with RunDirectory(folder) as directory:  # one writer: a second evaluate into the folder is refused at once
        _claim(directory.path, plan, overwrite=overwrite)
        metrics = _evaluate(directory, plan, notes)
    return metrics, directory.path


TRAINING_RUN_FILES = (RunDirectory.CHECKPOINT, RunDirectory.CONFIG, RunDirectory.EPOCHS)
"""What makes a folder a training run's (`sampleweight train`, `sampleweight retrain`), not an evaluation's."""
_IDENTITY = ("runs", "data", "tta", "combine", "logit_adjust")
"""The ``metrics.json`` entries that say which evaluation it is: the same ones redo it, in place."""


def same_evaluation(
    metrics: dict[str, Any],
    runs: Sequence[str | Path],
    data: str | Path,
    *,
    tta: str = "none",
    combine: str = "mean",
    logit_adjust: float | None = None,
) -> list[str]:
    """How an evaluation's ``metrics.json`` differs from scoring ``runs`` on ``data`` with these options.

    Paths compare resolved (a run or data folder given another way is the same); the options that do not change
    the scores (batch size, bootstrap resamples, the submission) do not count.

    Returns:
        One ``"tta 'none' there, 'flip' now"`` per difference: empty when it is the same evaluation.
    """
    wanted = {"runs": [str(r) for r in runs], "data": str(data), "tta": tta, "combine": combine,
              "logit_adjust": logit_adjust}  # fmt: skip
    differences = []
    for key in _IDENTITY:
        there, now = metrics.get(key), wanted[key]
        if key == "runs":
            same = isinstance(there, list) and [_resolved(r) for r in there] == [_resolved(r) for r in now]
        elif key == "data":
            same = isinstance(there, str) and _resolved(there) == _resolved(now)
        elif key == "combine" and len(wanted["runs"]) == 1:
            same = True  # one run: nothing to combine
        else:
            same = there == now
        if not same:
            differences.append(f"{key} {there!r} there, {now!r} now")
    return differences


def _resolved(path: str) -> str:
    """A path as one absolute spelling (a spec such as ``synthetic:60`` as it is)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _refuse_a_source(folder: Path, plan: _Plan) -> None:
    """An evaluation never goes into a run it scores: it would replace the run's own validation figures."""
    if folder.resolve() in {m.checkpoint.parent.resolve() for m in plan.members}:
        raise ConfigError(
            f"--out {folder} is a run being evaluated: its metrics.json and predictions.csv are the run's own; "
            "give the evaluation a folder of its own"
        )


def _claim(folder: Path, plan: _Plan, *, overwrite: bool) -> None:
    """Refuse an output folder that holds a training run or another evaluation, unless ``overwrite``.

    With ``overwrite`` a training run's own files go (its checkpoint, config and epoch log), so that the folder
    is an evaluation's and ``report`` no longer reads it as a run; the evaluation's files are replaced.
    """
    held = [name for name in TRAINING_RUN_FILES if (folder / name).exists()]
    if held:
        if not overwrite:
            raise ConfigError(
                f"{folder} holds a training run ({', '.join(held)}); choose another --out, or replace the run "
                "with the evaluation with --overwrite"
            )
        for name in held:
            (folder / name).unlink()
        return
    final = folder / RunDirectory.FINAL
    if overwrite or not final.is_file():
        return
    try:
        recorded = json.loads(final.read_text())
    except (OSError, ValueError):
        recorded = None
    runs = [m.checkpoint.parent for m in plan.members]
    differences = (
        same_evaluation(recorded, runs, plan.data, tta=plan.tta, combine=plan.combine, logit_adjust=plan.logit_adjust)
        if isinstance(recorded, dict)
        else ["its metrics.json is not an evaluation's"]
    )
    if differences:
        raise ConfigError(
            f"{folder} holds another evaluation ({'; '.join(differences)}); choose another --out, or replace it "
            "with --overwrite"
        )


def check_options(
    *, batch_size: int = 64, tta: str = "none", combine: str = "mean", logit_adjust: float | None = None
) -> None:
    """Check `evaluate`'s options before anything is read.

    Raises:
        ConfigError: A batch size below 1, an unknown ``tta`` or ``combine``, a negative or infinite tau.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if tta not in TTA_MODES:
        raise ConfigError(f"unknown --tta {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    if combine not in COMBINE_MODES:
        raise ConfigError(f"unknown --combine {combine!r}; choose one of: {', '.join(COMBINE_MODES)}")
    if logit_adjust is not None and not (math.isfinite(logit_adjust) and logit_adjust >= 0):
        raise ConfigError(f"--logit-adjust takes a tau >= 0 (1 is Menon et al.'s), got {logit_adjust}")


def _default_folder(sources: list[str | Path], checkpoints: list[Path], plan: _Plan) -> Path:
    if len(sources) > 1:
        raise ConfigError("several runs (an ensemble) need --out: the folder for its metrics and predictions")
    source = Path(sources[0])
    grid = source.is_dir() and not (source / RunDirectory.CHECKPOINT).is_file()
    home = source if grid else checkpoints[0].parent
    name = "evaluate"
    if plan.tta != "none":
        name += f"-{plan.tta}"
    if len(checkpoints) > 1 and plan.combine != "mean":
        name += f"-{plan.combine}"
    if plan.logit_adjust is not None:
        name += f"-la{plan.logit_adjust:g}"
    return home / name


def _evaluate(directory: RunDirectory, plan: _Plan, notes: list[str]) -> dict[str, Any]:
    if plan.members[0].config.task == "multilabel":
        return _evaluate_labels(directory, plan, notes)
    classes = plan.classes
    binary = plan.members[0].config.task == "binary"
    records = read_dataset(
        plan.data,
        skip_bad=plan.skip_bad,
        classes=None if binary else classes,
        allow_empty_classes=True,
        allow_unlabelled=True,
    )
    if binary and records.labelled:  # the data's classes: the run's positive ones against the rest
        records = binary_records(records, _positive_of(plan.members[0].config.positive, records.classes))
    if records.labelled and tuple(records.classes) != classes:
        raise DataError(
            f"{plan.data} has classes {list(records.classes)} but the model was trained on {list(classes)}; "
            "evaluate on data with the same classes in the same order"
        )
    datasets = _datasets(records, plan)
    indices = next(iter(datasets.values())).record_indices
    sizes = sorted({m.config.image_size for m in plan.members})
    if len(sizes) > 1:
        notes.append(f"the runs take images of {', '.join(map(str, sizes))} px: each is fed its own size, as trained")
    adjusted_twice = _adjusted_twice(plan.members)  # none without --logit-adjust: no member read its prior
    notes += adjusted_twice
    targets, scores = None, []
    for member in plan.members:
        targets, probabilities = _member_scores(member, datasets, plan)
        if plan.logit_adjust:
            probabilities = logit_adjust(probabilities, member.class_counts, plan.logit_adjust)
        scores.append(probabilities)
    combined = combine_probabilities(scores, plan.combine)
    predictions = decide(combined, _shared_taxonomy(plan.members))
    image_ids = [records.image_ids[i] for i in indices]
    undecodable = sorted(set(range(len(records))) - set(indices.tolist()))
    skipped = records.skipped + tuple(f"{records.image_ids[i]} (cannot be decoded)" for i in undecodable)
    inventory = DataInventory.of_sides(records, {"evaluated": indices}, skipped)
    about = {
        "decoding": "greedy" if _shared_taxonomy(plan.members) is not None else "argmax",
        "data": plan.data,
        "runs": [str(m.checkpoint.parent) for m in plan.members],
        "combine": plan.combine,
        "tta": plan.tta,
        "views": _view_count(plan.tta),
        "logit_adjust": plan.logit_adjust,
    }
    if adjusted_twice:
        about["logit_adjust_note"] = adjusted_twice
    if records.labelled:
        metrics = {
            **final_metrics(targets, combined, predictions, classes, resamples=plan.bootstrap),
            **_binary_metrics(plan, targets, combined),
            "labelled": True,
            **about,
        }
    else:
        metrics = {"classes": list(classes), "n": len(image_ids), "labelled": False, **about}
    if not plan.quiet:
        for note in [*notes, *inventory.notes()]:
            Console(stderr=True).print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    truth = targets if records.labelled else None
    write_predictions(directory.path / RunDirectory.PREDICTIONS, image_ids, truth, combined, classes, predictions)
    if plan.submission is not None and binary:
        write_binary_submission(plan.submission, image_ids, combined[:, 1])
    elif plan.submission is not None:
        write_submission(plan.submission, image_ids, combined, classes)
        metrics["submission"] = str(plan.submission)
    directory.write_final(metrics)
    directory.write_data(inventory.to_dict())
    return metrics


def _evaluate_labels(directory: RunDirectory, plan: _Plan, notes: list[str]) -> dict[str, Any]:
    """`_evaluate` for multilabel runs: the data relabelled as the runs were trained, each label decided at the runs'
    validation threshold (`sampleweight.engine.multilabel`)."""
    labels = plan.classes
    records = _label_records(
        read_dataset(plan.data, skip_bad=plan.skip_bad, allow_empty_classes=True, allow_unlabelled=True), plan
    )
    datasets = _datasets(records, plan)
    indices = next(iter(datasets.values())).record_indices
    sizes = sorted({m.config.image_size for m in plan.members})
    if len(sizes) > 1:
        notes.append(f"the runs take images of {', '.join(map(str, sizes))} px: each is fed its own size, as trained")
    targets, scores = None, []
    for member in plan.members:
        targets, probabilities = _member_scores(member, datasets, plan)
        scores.append(probabilities)
    combined = combine_probabilities(scores, plan.combine, multilabel=True)
    thresholds, rules = _label_thresholds(plan)
    image_ids = [records.image_ids[i] for i in indices]
    undecodable = sorted(set(range(len(records))) - set(indices.tolist()))
    skipped = records.skipped + tuple(f"{records.image_ids[i]} (cannot be decoded)" for i in undecodable)
    inventory = DataInventory.of_sides(records, {"evaluated": indices}, skipped)
    about = {
        "data": plan.data,
        "runs": [str(m.checkpoint.parent) for m in plan.members],
        "combine": plan.combine,
        "tta": plan.tta,
        "views": _view_count(plan.tta),
        "logit_adjust": None,
    }
    if records.labelled:
        figures, decided = multilabel_final(targets, combined, labels, thresholds=thresholds, resamples=plan.bootstrap)
        for name, rule in zip(labels, rules, strict=True):
            figures["multilabel"]["per_label"][name]["threshold_rule"] = rule
        metrics = {**figures, "labelled": True, **about}
    else:
        decided = decide_labels(combined, np.array(thresholds))
        metrics = {"task": "multilabel", "labels": list(labels), "n": len(image_ids), "labelled": False,
                   "decoding": "thresholds", **about}  # fmt: skip
    if not plan.quiet:
        for note in [*notes, *inventory.notes()]:
            Console(stderr=True).print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    truth = targets if records.labelled else None
    write_label_predictions(directory.path / RunDirectory.PREDICTIONS, image_ids, truth, combined, labels, decided)
    if plan.submission is not None:
        write_label_submission(plan.submission, image_ids, combined, labels)
        metrics["submission"] = str(plan.submission)
    directory.write_final(metrics)
    directory.write_data(inventory.to_dict())
    return metrics


def _label_records(records: DatasetRecords, plan: _Plan) -> DatasetRecords:
    """The evaluation data as the multilabel runs were trained on it: a multilabel data set as it is, a single-label
    one in its label tree's multilabel form (the runs' tree); its label names must be the runs'.

    Raises:
        DataError: Other label names than the runs', or a multiclass data set's classes outside the runs' tree.
    """
    labels, first = plan.classes, plan.members[0].config
    if not records.labelled:
        return records
    if not records.multilabel:
        try:
            tree = label_tree(first.model, first.taxonomy, records.classes)
        except ConfigError as error:
            raise DataError(f"{plan.data} cannot be relabelled as the runs' label tree: {error}") from None
        if taxonomy_labels(tree) != labels:
            raise DataError(
                f"{plan.data} is a single-label data set, whose label-tree form has the labels "
                f"{', '.join(taxonomy_labels(tree))}, but the runs were trained on {', '.join(labels)}; evaluate on a "
                "multilabel data set with those label columns"
            )
        return taxonomy_records(records, tree)
    if tuple(records.classes) != labels:
        raise DataError(
            f"{plan.data} has the labels {', '.join(records.classes)} but the runs were trained on "
            f"{', '.join(labels)}; evaluate on data with the same label columns in the same order"
        )
    return records


def _label_thresholds(plan: _Plan) -> tuple[list[float], list[str]]:
    """Each label's decision threshold, chosen on the runs' own validation sides (an ensemble: their mean), and how
    it was had; a label a run has no threshold of (one class only on its validation side) is decided at 0.5."""
    per_run = [_validation_label_thresholds(m.checkpoint.parent, plan.classes) for m in plan.members]
    thresholds, rules = [], []
    for i in range(len(plan.classes)):
        known = [run[i] for run in per_run if run is not None and run[i] is not None]
        if len(known) < len(per_run):
            thresholds.append(FALLBACK_THRESHOLD)
            rules.append(f"{FALLBACK_THRESHOLD:g}: a run had no validation threshold for this label")
        else:
            thresholds.append(float(np.mean(known)))
            rules.append(
                "the mean of the runs' validation thresholds" if len(known) > 1 else "the run's validation threshold"
            )
    return thresholds, rules


def _validation_label_thresholds(run: Path, labels: Sequence[str]) -> list[float | None] | None:
    """The per-label decision thresholds a multilabel run chose on its validation side (its ``metrics.json``)."""
    try:
        per_label = json.loads((run / RunDirectory.FINAL).read_text())["multilabel"]["per_label"]
        values = [per_label[name]["threshold"] for name in labels]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [float(v) if isinstance(v, (int, float)) else None for v in values]


def _positive_of(positive: Sequence[str] | None, classes: Sequence[str]) -> list[str] | None:
    """A binary run's positive classes on a data set: its own, or the second class of a two-class data set that
    names them otherwise (ISIC 2020's ``target`` 0/1)."""
    if positive and not set(positive) <= set(classes) and len(classes) == 2:
        return None
    positive_indices(classes, positive)  # an unknown class: one line naming the data's
    return list(positive) if positive else None


def _binary_metrics(plan: _Plan, targets: np.ndarray, combined: np.ndarray) -> dict[str, Any]:
    """A binary evaluation's ``task`` and ``binary`` figures (`sampleweight.binary_metrics.binary_metrics`), at the
    threshold chosen on the runs' own validation sides (an ensemble: the mean of its runs' thresholds)."""
    if plan.members[0].config.task != "binary":
        return {}
    from sampleweight.binary_metrics import binary_metrics

    thresholds = [_validation_threshold(m.checkpoint.parent) for m in plan.members]
    known = [t for t in thresholds if t is not None]
    threshold = float(np.mean(known)) if len(known) == len(thresholds) else None
    figures = binary_metrics(targets, combined[:, 1], threshold=threshold, resamples=plan.bootstrap)
    if threshold is None:  # a run without its validation threshold: chosen here, and said so
        figures["threshold_rule"] += " (chosen on these images: a run had no validation threshold)"
    elif len(known) > 1:
        figures["threshold_rule"] = "the mean of the runs' validation thresholds"
    else:
        figures["threshold_rule"] = "the run's validation threshold"
    return {"task": "binary", "binary": figures}


def _validation_threshold(run: Path) -> float | None:
    """The decision threshold a binary run chose on its validation side (its ``metrics.json``), or None."""
    try:
        threshold = json.loads((run / RunDirectory.FINAL).read_text())["binary"]["threshold"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(threshold) if isinstance(threshold, (int, float)) else None


def _adjusted_twice(members: Sequence[Member]) -> list[str]:
    """A note for each run that already rebalances its classes: logit adjustment by its natural prior adds a
    second correction (meant for a plain CE or focal run: instance sampler, no class weighting)."""
    return [
        f"{m.checkpoint.parent} already rebalances its classes ({'; '.join(m.rebalances)}): adjusting its logits "
        "by the natural training prior corrects them twice; post-hoc logit adjustment is meant for a plain run "
        "(docs/evaluation.md)"
        for m in members
        if m.rebalances
    ]


def _datasets(records: DatasetRecords, plan: _Plan) -> dict[int, CachedImageDataset]:
    """One evaluation data set per image side the runs need, all over the images every side could decode."""
    sides = sorted({tta_input_size(plan.tta, m.config.image_size) for m in plan.members})
    datasets = {
        side: build_eval_dataset(
            records,
            image_size=side,
            augment="batch",
            cache_dir=plan.cache_dir,
            progress=not plan.quiet,
            skip_bad=plan.skip_bad,
        )
        for side in sides
    }
    common = datasets[sides[0]].record_indices
    for dataset in datasets.values():
        common = np.intersect1d(common, dataset.record_indices)
    if common.size == 0:
        raise DataError(f"no image of {plan.data} could be decoded")
    return {
        side: dataset
        if np.array_equal(dataset.record_indices, common)
        else CachedImageDataset(dataset.images, records.labels, common)
        for side, dataset in datasets.items()
    }


def _member_scores(
    member: Member, datasets: dict[int, CachedImageDataset], plan: _Plan
) -> tuple[np.ndarray, np.ndarray]:
    """One run's probabilities of every image (its views averaged), fed as it was trained."""
    model, config, _ = load_trained_model(member.checkpoint, plan.device)
    side = tta_input_size(plan.tta, config.image_size)
    per_batch = max(1, plan.batch_size // _view_count(plan.tta))
    loader = make_loader(datasets[side], per_batch, plan.device, workers=0)
    normalize = BatchAugment(side).to(plan.device).eval()
    precision = config.precision if plan.device.type == "cuda" else "fp32"  # as trained; bf16 needs CUDA
    autocast = autocast_for(plan.device, precision)
    return predict_views(model, loader, plan.device, autocast, normalize, plan.tta, config.image_size, config.task)


def _shared_taxonomy(members: Sequence[Member]) -> Taxonomy | None:
    """The label tree to decode greedily with: every run's, when all are hierarchical with one tree."""
    trees = [m.taxonomy for m in members]
    if trees[0] is None or any(t is None or t != trees[0] for t in trees[1:]):
        return None
    return trees[0]
