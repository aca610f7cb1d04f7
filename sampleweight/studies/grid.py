"""``sampleweight grid``: the cross-product of models x losses x weightings x samplers x mixers x optimizers x splits
x seeds.

`plan_grid` turns the lists and the options shared by every run into one `TrainConfig` per
combination, each with its own run directory named ``model-loss-weighting-optimizer-sSPLIT`` under
the grid folder (``MODEL-focal-ohem+es-adam-s0``), followed by ``-SAMPLER`` for a sampler other
than the default ``instance`` (``MODEL-ce-none-adam-s0-class_balanced``), ``-MIXER`` for a mixer other than
``none`` and ``-seedN`` for a seed other than 0, so that grids planned before samplers, mixers and seeds existed
keep their names. `run_grid` trains them:

- a finished run (it has ``metrics.json``) is skipped, a half-finished one (a checkpoint without
  ``metrics.json``) is resumed (`train(config, resume=True)`), the others start;
- ``summary.csv`` in the grid folder is rewritten after every run (one row per combination);
- on the CPU or one device the runs go one after another in this process; with several devices,
  one ``python -m sampleweight train ... --device cuda:K`` worker per device trains one run at a time.

`run_stages` then adds decoupled second stages (``sampleweight retrain``, ``grid --retrain crt,tau_norm``) to
every finished run, each in ``RUN+METHOD`` beside it, skipping finished ones.

For a cluster, `Grid.train_command` gives each run as one ``sampleweight train`` command (what
``sampleweight grid --print-commands`` prints), and ``sampleweight grid ... --index K`` trains only
the K-th run with the same skip/resume logic, for a scheduler's job array (``docs/reproduction-gpu-recipe.md``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import timm
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from sampleweight.engine import components, training
from sampleweight.engine.checkpoint import atomic_write_text
from sampleweight.engine.config import (
    EXECUTION_FIELDS,
    OPTION_TABLES,
    TrainConfig,
    complete_config,
    default_name,
    load_config,
    task_loss,
)
from sampleweight.engine.device import resolve_device
from sampleweight.engine.folder_lock import FolderLock
from sampleweight.engine.progress import runs_bar
from sampleweight.engine.retraining import METHODS, retrain, retrained_name
from sampleweight.engine.rundir import RunDirectory, output_folder, read_epochs
from sampleweight.errors import ConfigError, RunDirectoryInUseError, SampleWeightError
from sampleweight.factory import (
    accepted_options,
    check_weighter_options,
    list_losses,
    list_mixers,
    list_models,
    list_optimizers,
    list_samplers,
    list_weighters,
    lookup,
)
from sampleweight.plugins import SINGULAR, get_registry

__all__ = [
    "DEFAULT_SPLITS",
    "GRID_FILE",
    "SUMMARY_COLUMNS",
    "SUMMARY_FILE",
    "Grid",
    "GridRun",
    "RunOutcome",
    "StageOutcome",
    "default_axis",
    "parse_list",
    "parse_methods",
    "plan_grid",
    "run_grid",
    "run_stages",
    "stage_path",
    "write_summary",
]

GRID_FILE = "grid.json"
"""The options every run of a grid shares, as a ``--config`` file for ``sampleweight train``."""
SUMMARY_FILE = "summary.csv"
"""One row per combination: its state and, once finished, its final metrics."""
LOG_FILE = "train.log"
"""Output of a worker subprocess, in its run directory (several-device grids only)."""

DEFAULT_SPLITS = (0, 1)
"""The paper's two splits. The default models, losses, weightings, samplers and optimizers are those the built-ins
mark ``default`` (`default_axis`): the paper's comparison, 2 models x 2 losses x 5 weightings x 2 optimizers x 2
splits = 80 runs."""


def default_axis(kind: str) -> tuple[str, ...]:
    """A grid's axis of ``kind`` (``"models"``, ``"losses"``, ``"weighters"``, ``"samplers"``, ``"mixers"``,
    ``"optimizers"``) when none is given: the names the built-ins mark ``default``
    (`sampleweight.plugins.Registry.defaults`)."""
    return tuple(get_registry().defaults(kind))


# and "seed", popped by plan_grid
_COMBINATION = ("model", "loss", "weighters", "sampler", "mixer", "optimizer", "split", "out")
_METRICS = ("acc", "bacc", "mpr", "mf1")
SUMMARY_COLUMNS = ("index", "run", "model", "loss", "weighting", "sampler", "mixer", "optimizer", "split", "seed",
                   "state", "epochs_done", "epochs", "acc", "bacc", "mpr", "mf1", "train_seconds", "error")  # fmt: skip
"""The columns of ``summary.csv`` (`write_summary`)."""


@dataclass(frozen=True)
class GridRun:
    """One combination of a grid.

    Attributes:
        index: Position in the grid (what ``--index`` selects; the order of ``--print-commands``).
        config: The run's complete configuration (``config.out`` is its run directory).
    """

    index: int
    config: TrainConfig

    @property
    def name(self) -> str:
        """The run directory's name: ``model-loss-weighting-optimizer-sSPLIT[-SAMPLER][-seedK]``
        (`sampleweight.engine.config.TrainConfig.run_name`)."""
        return self.config.run_name

    @property
    def path(self) -> Path:
        """The run directory."""
        return Path(self.config.out)

    @property
    def retrainable(self) -> bool:
        """Whether decoupled second stages apply: not to the hierarchical model, which has no single classifier."""
        return not components.is_hierarchical(self.config.model)

    def state(self) -> Literal["finished", "partial", "new"]:
        """``finished`` (``metrics.json`` written), ``partial`` (a checkpoint to resume) or ``new``."""
        if (self.path / RunDirectory.FINAL).is_file():
            return "finished"
        if (self.path / RunDirectory.CHECKPOINT).is_file():
            return "partial"
        return "new"

    def stale_options(self) -> list[str]:
        """Options in which a finished or half-finished run differs from this configuration (``["epochs 1 -> 2"]``).

        Execution options (device, precision, workers, cache folder, ...: those a resumed run may change,
        `sampleweight.engine.config.EXECUTION_FIELDS`) do not count, nor do options the run's version did not
        know yet, when this one's value is their default (`complete_config`).
        """
        path = self.path / RunDirectory.CONFIG
        if not path.is_file():
            return []
        saved = complete_config(json.loads(path.read_text()))
        wanted = self.config.model_dump(mode="json")
        return [
            f"{key} {saved.get(key)!r} -> {value!r}"
            for key, value in wanted.items()
            if key not in EXECUTION_FIELDS and saved.get(key) != value
        ]


@dataclass(frozen=True)
class Grid:
    """A planned grid (`plan_grid`): the folder, the runs and the options they share.

    Attributes:
        out: The grid folder; run directories, ``grid.json`` and ``summary.csv`` go there.
        runs: One `GridRun` per combination, models outermost, seeds innermost.
        shared: The options every run shares (the config file's and the flags', without the
            combination's own: model, loss, weighters, sampler, optimizer, split, seed, out; without
            ``loss_options``, of which each run takes what its loss accepts, and without ``sampler_options``,
            of which each run takes those its sampler accepts).
    """

    out: Path
    runs: tuple[GridRun, ...]
    shared: dict[str, Any]

    @property
    def config_file(self) -> Path:
        """``OUT/grid.json``: `shared` as a ``--config`` file for ``sampleweight train``."""
        return self.out / GRID_FILE

    def write_config_file(self) -> Path:
        """Write `config_file` (the train commands of `train_command` read it)."""
        output_folder(self.out)
        atomic_write_text(self.config_file, json.dumps(self.shared, indent=2, default=str) + "\n")
        return self.config_file

    def train_arguments(self, run: GridRun) -> list[str]:
        """The ``sampleweight train`` options of one run: ``--config OUT/grid.json`` plus its combination."""
        config = run.config
        arguments = ["--config", str(self.config_file), "--model", config.model, "--loss", config.loss]
        for key, value in config.loss_options.items():
            arguments += ["--loss-option", f"{key}={json.dumps(value)}"]  # JSON is YAML: parse_options reads it
        for weighter in config.weighters:
            arguments += ["--weighter", weighter]
        if config.sampler != default_name("samplers"):  # the commands of grids planned before samplers stay the same
            arguments += ["--sampler", config.sampler]
        for key, value in config.sampler_options.items():
            arguments += ["--sampler-option", f"{key}={json.dumps(value)}"]  # JSON is YAML: parse_options reads it
        if config.mixer != default_name("mixers"):
            arguments += ["--mixer", config.mixer]
        for key, value in config.mixer_options.items():
            arguments += ["--mixer-option", f"{key}={json.dumps(value)}"]
        for key, value in config.optimizer_options.items():
            arguments += ["--optimizer-option", f"{key}={json.dumps(value)}"]
        return [*arguments, "--optimizer", config.optimizer, "--split", str(config.split), "--seed", str(config.seed),
                "--out", str(run.path)]  # fmt: skip

    def train_command(self, run: GridRun) -> str:
        """One run as a shell command line: ``sampleweight train --config OUT/grid.json --model ...``.

        The command reads ``grid.json``; write it first (`write_config_file`).
        """
        return shlex.join(["sampleweight", "train", *self.train_arguments(run)])

    def retrain_command(self, run: GridRun, method: str) -> str:
        """A decoupled second stage of one run as a command line (to run once the run is finished; only for a
        `GridRun.retrainable` run)."""
        return shlex.join(["sampleweight", "retrain", str(run.path), "--method", method, "--out",
                           str(stage_path(run, method))])  # fmt: skip


@dataclass(frozen=True)
class RunOutcome:
    """What `run_grid` did with one run.

    Attributes:
        run: The run.
        status: ``trained`` (finished now), ``skipped`` (finished before, or by another process since the grid
            was planned), ``failed``, or ``busy`` (another process is training it: two grids on one folder
            share the work).
        metrics: The final metrics (``metrics.json``) unless it failed.
        error: One line on why it failed, or who holds a busy run, or (for a run another process finished with
            other options) what differs.
        seconds: Wall time spent on it in this call.
    """

    run: GridRun
    status: Literal["trained", "skipped", "failed", "busy"]
    metrics: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class StageOutcome:
    """What `run_stages` did with one decoupled second stage of one run.

    Attributes:
        run: The run it re-balances.
        method: ``crt``, ``tau_norm``, ``lws`` or ``ncm``.
        status: ``retrained`` (done now), ``skipped`` (done before), ``failed``, ``busy`` (another process writes
            its folder) or ``not applicable`` (the hierarchical model has no single classifier).
        metrics: Its final metrics once done.
        error: Why it failed, is busy or does not apply.
        seconds: Wall time spent on it in this call.
    """

    run: GridRun
    method: str
    status: Literal["retrained", "skipped", "failed", "busy", "not applicable"]
    metrics: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def path(self) -> Path:
        """The stage's run directory (`stage_path`)."""
        return stage_path(self.run, self.method)


def stage_path(run: GridRun, method: str) -> Path:
    """Where a run's second stage goes: beside the run, named ``RUN+METHOD`` (``...-adam-s0+crt``)."""
    return run.path.parent / retrained_name(run.name, method)


def parse_methods(value: str | Sequence[str]) -> list[str]:
    """A comma-separated list of retrain methods, checked.

    Raises:
        ConfigError: An empty list or an unknown method (the valid ones are listed).
    """
    methods = parse_list(value, "retrain")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"unknown retrain method {method!r} in --retrain; valid: {', '.join(METHODS)}")
    return methods


def parse_list(value: str | Sequence[Any], what: str) -> list[str]:
    """A comma-separated list (``"ce,focal"``) or a sequence as unique, stripped strings, in order.

    Raises:
        ConfigError: The list is empty, or one of its items is (``none,,es``).
    """
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    blank = [number for number, item in enumerate(items, 1) if not item.strip()]
    if blank and len(blank) < len(items):
        shown = value if isinstance(value, str) else ",".join(items)
        raise ConfigError(f"--{what} {shown!r}: item {blank[0]} is empty; remove the extra comma")
    unique = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not unique:
        raise ConfigError(f"--{what} is empty: give at least one value (comma-separated)")
    return unique


def plan_grid(
    out: str | Path,
    *,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    weighters: str | Sequence[str] | None = None,
    samplers: str | Sequence[str] | None = None,
    mixers: str | Sequence[str] | None = None,
    optimizers: str | Sequence[str] | None = None,
    splits: str | Sequence[int | str] = DEFAULT_SPLITS,
    seeds: str | Sequence[int | str] | None = None,
    config_file: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> Grid:
    """One `TrainConfig` per combination, every one validated before anything trains.

    Args:
        out: The grid folder.
        models: Model names (comma-separated or a list). Default for this and the next three: the built-ins'
            ``default`` ones (`default_axis`), the paper's comparison; for a binary or multilabel task, the flat
            ones among them (a hierarchical model decides one class along its label tree).
        losses: Loss names (default for a binary or multilabel task: its default loss, `task_loss`).
        weighters: Weightings; an entry may compose several with ``+`` (``ohem+es``: weights multiply).
        samplers: Sampler names (default: the paper's shuffled pass).
        mixers: Mixer names (default: the built-ins' default, ``none``).
        optimizers: Optimizer names (default: the paper's two, adam and sgd).
        splits: Split numbers (the paper's are 0 and 1).
        seeds: Seeds (of the split, the initialisation and the data order): every split is trained with
            every seed. Default: the shared ``seed`` option, else 0.
        config_file: A TOML/YAML/JSON file of `TrainConfig` options shared by every run.
        options: `TrainConfig` options shared by every run, over the file's (None values are ignored).
            each ``loss_options`` key applies to the runs whose loss takes it (``gamma``: focal, also on the
            hierarchical model; ``tau``: logit_adjusted, ...); a weighter option scoped as
            ``NAME.KEY`` (``{"weighter_options": {"es.normalize": "classes"}}``) to the runs whose
            weighting uses NAME; each run gets the ``sampler_options`` its sampler takes, and the
            ``mixer_options`` its mixer takes.

    Returns:
        The `Grid`: runs ordered models, losses, weightings, samplers, mixers, optimizers, splits, seeds (seeds
        innermost).

    Raises:
        ConfigError: An unknown model, loss, weighter, sampler or optimizer (the valid names are listed), a
            split or seed that is not a number, both ``seeds`` and a shared ``seed``, a loss option or a sampler
            option that no loss or sampler of the grid takes, or an option that is invalid for some run
            (a weighter option no weighter of that run accepts, among others).

    Example:
        >>> grid = plan_grid("runs/g", models="resnet18", losses="ce", weighters="none,ohem+es",
        ...                  optimizers="adam", splits="0,1", options={"epochs": 2})
        >>> [run.name for run in grid.runs][:2]
        ['resnet18-ce-none-adam-s0', 'resnet18-ce-none-adam-s1']
    """
    out = Path(out)
    shared = _shared_options(config_file, options or {})
    if losses is None and shared.get("task", "multiclass") != "multiclass":  # the task's default loss (bce)
        losses = task_loss(shared["task"])
    if models is None and shared.get("task", "multiclass") != "multiclass":  # a label tree decides one class only
        models = [name for name in default_axis("models") if not components.is_hierarchical(name)]
    models, losses, weighters, samplers, mixers, optimizers = (
        default_axis(kind) if given is None else given
        for kind, given in (("models", models), ("losses", losses), ("weighters", weighters), ("samplers", samplers),
                            ("mixers", mixers), ("optimizers", optimizers))
    )  # fmt: skip
    model_names = _checked(parse_list(models, "models"), "model", list_models(), extra=timm.is_model)
    loss_names = _checked(parse_list(losses, "losses"), "loss", list_losses())
    weightings = parse_list(weighters, "weighters")
    _checked([part.strip() for w in weightings for part in w.split("+")], "weighter", list_weighters())
    sampler_names = _checked(parse_list(samplers, "samplers"), "sampler", list_samplers())
    mixer_names = _checked(parse_list(mixers, "mixers"), "mixer", list_mixers())
    optimizer_names = _checked(parse_list(optimizers, "optimizers"), "optimizer", list_optimizers())
    split_numbers = _split_numbers(parse_list(splits, "splits"))

    shared_seed = shared.pop("seed", None)
    if seeds is not None and shared_seed is not None:
        raise ConfigError("give either --seed (one seed for every run) or --seeds (every run with each seed)")
    seed_numbers = _split_numbers(parse_list(seeds, "seeds"), "seeds") if seeds is not None else [shared_seed or 0]
    for weighting in weightings:  # every run's weighter options, checked before anything trains
        try:
            check_weighter_options(weighting, shared.get("weighter_options", {}))
        except ConfigError as exc:
            raise ConfigError(f"weighting {weighting}: {exc}") from None
    sampler_options = _plugin_options(sampler_names, shared.pop("sampler_options", None) or {}, "samplers")
    mixer_options = _plugin_options(mixer_names, shared.pop("mixer_options", None) or {}, "mixers")
    optimizer_options = _plugin_options(optimizer_names, shared.pop("optimizer_options", None) or {}, "optimizers")
    loss_options = _loss_options(model_names, loss_names, shared.pop("loss_options", None) or {})
    runs: list[GridRun] = []
    for model, loss, weighting, sampler, mixer, optimizer, split, seed in itertools.product(
        model_names, loss_names, weightings, sampler_names, mixer_names, optimizer_names, split_numbers, seed_numbers
    ):
        combination = {"model": model, "loss": loss, "loss_options": loss_options[(model, loss)],
                       "weighters": [weighting], "sampler": sampler, "sampler_options": sampler_options[sampler],
                       "mixer": mixer, "mixer_options": mixer_options[mixer],
                       "optimizer": optimizer, "optimizer_options": optimizer_options[optimizer], "split": split,
                       "seed": seed}  # fmt: skip
        try:
            config = load_config(None, **shared, **combination)
            components.check_choices(config)  # every option too, before any run starts
        except ConfigError as exc:
            suffix = "".join(f"-{name}" for name, kind in ((sampler, "samplers"), (mixer, "mixers"))
                             if name != default_name(kind)) + (f"-seed{seed}" if seed else "")  # fmt: skip
            raise ConfigError(f"run {model}-{loss}-{weighting}-{optimizer}-s{split}{suffix}: {exc}") from None
        runs.append(GridRun(len(runs), config.model_copy(update={"out": out / config.run_name})))
    return Grid(out=out, runs=tuple(runs), shared=shared)


def run_grid(
    grid: Grid,
    *,
    devices: str | Sequence[str] | None = None,
    only: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> list[RunOutcome]:
    """Train every run of ``grid`` that is not finished; skip the finished, resume the half-finished.

    Args:
        grid: From `plan_grid`.
        devices: Devices to spread the runs over (``"0"`` means ``cuda:0``; a list or comma-separated; a
            device listed twice gets two workers). With two or more, one worker
            subprocess per device (``python -m sampleweight train --device ...``) trains one run at a
            time, its output in ``RUN/train.log``. With one or none, the runs train one after another
            in this process (on that device, else the config's).
        only: Train only the run with this index (for a scheduler's job array).
        progress: A progress bar over the grid (else one line per run); the runs themselves print one
            line per epoch.
        console: Where progress goes (default stderr).

    Returns:
        One `RunOutcome` per run considered (all, or the one of ``only``).

    Raises:
        ConfigError: ``only`` is out of range, or ``devices`` is given together with a shared ``device``.
        KeyboardInterrupt: Interrupted; the runs keep their last finished epoch and the same call
            continues them.
    """
    console = console or Console(stderr=True)
    targets = list(grid.runs)
    if only is not None:
        if not 0 <= only < len(grid.runs):
            last = len(grid.runs) - 1
            raise ConfigError(f"--index {only} is out of range: the grid has {len(grid.runs)} runs (0-{last})")
        targets = [grid.runs[only]]
    listed = devices.split(",") if isinstance(devices, str) else list(devices or [])
    device_names = [_device_name(d.strip()) for d in listed if d.strip()]  # repeats allowed: two workers on one
    if device_names and grid.shared.get("device") is not None:
        raise ConfigError("give either --device (one device for every run) or --devices (runs spread over them)")
    for name in dict.fromkeys(device_names):  # before any worker starts or run folder is made
        try:
            resolve_device(name)
        except ConfigError as error:
            raise ConfigError(
                f"--devices {devices if isinstance(devices, str) else ','.join(listed)}: {error}"
            ) from None
    grid.write_config_file()  # creates the grid's folder (a file or a read-only folder is refused)

    ledger = _Ledger(grid)
    pending: list[GridRun] = []
    for run in targets:
        finished = _finished_elsewhere(run)
        if finished is not None:
            ledger.outcomes[run.index] = finished
            _print_kept(console, finished)
        elif run.state() == "partial" and run.stale_options():  # resuming would refuse: say what to do here
            stale = "; ".join(run.stale_options())
            error = f"half-finished with other options ({stale}); delete {run.path} to train it with the new ones"
            ledger.outcomes[run.index] = RunOutcome(run, "failed", error=error)
        else:
            pending.append(run)
    ledger.write()
    with _GridProgress(len(targets), len(targets) - len(pending), progress, console) as bar:
        try:
            if len(device_names) >= 2:
                _run_workers(grid, pending, device_names, bar, ledger)
            else:
                device = device_names[0] if device_names else None
                for run in pending:
                    bar.started(run)
                    ledger.started(run)
                    outcome = _train_in_process(run, device)
                    ledger.finished(outcome)
                    bar.finished(outcome)
        finally:
            ledger.close()
    return [ledger.outcomes[run.index] for run in targets if run.index in ledger.outcomes]


def run_stages(
    grid: Grid,
    methods: Sequence[str],
    *,
    only: int | None = None,
    devices: str | Sequence[str] | None = None,
    console: Console | None = None,
) -> list[StageOutcome]:
    """Add each decoupled second stage (`sampleweight.engine.retraining.retrain`) to every finished run of ``grid``.

    A stage goes to `stage_path` (``RUN+METHOD`` beside the run), where ``report`` finds it as its own setup
    (``none+crt``). A finished stage (its ``metrics.json`` written) is skipped; an interrupted one starts over
    (a stage is short). Runs that are not finished are left out; runs of the hierarchical model are noted as not
    applicable. A stage that fails is recorded and the others go on.

    Args:
        grid: From `plan_grid`.
        methods: `parse_methods`'s list.
        only: Only the stages of the run with this index.
        devices: The grid's ``devices``: the stages run one after another on the first (default: the shared
            ``device`` option, else CUDA when available).
        console: Where its one line per stage goes (default stderr).

    Returns:
        One `StageOutcome` per finished run and method.
    """
    console = console or Console(stderr=True)
    runs = [grid.runs[only]] if only is not None else list(grid.runs)
    listed = devices.split(",") if isinstance(devices, str) else list(devices or [])
    named = [_device_name(d.strip()) for d in listed if d.strip()]
    device = grid.shared.get("device") or (named[0] if named else None)
    outcomes = []
    for run in runs:
        if run.state() != "finished":
            continue
        for method in methods:
            outcome = _stage(run, method, device)
            outcomes.append(outcome)
            _print_stage(console, outcome)
    return outcomes


def _stage(run: GridRun, method: str, device: str | None) -> StageOutcome:
    path = stage_path(run, method)
    if (path / RunDirectory.FINAL).is_file():
        return StageOutcome(run, method, "skipped", metrics=_read_json(path / RunDirectory.FINAL))
    if not run.retrainable:
        return StageOutcome(run, method, "not applicable", error=f"{run.config.model} has no single classifier")
    started = time.perf_counter()
    try:
        metrics = retrain(run.path, method, path, device=device, overwrite=True, quiet=True)
    except RunDirectoryInUseError as exc:
        return StageOutcome(run, method, "busy", error=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - reported with the grid's failures; the other stages go on
        error = str(exc) if isinstance(exc, SampleWeightError) else f"{type(exc).__name__}: {exc}"
        return StageOutcome(run, method, "failed", error=error, seconds=time.perf_counter() - started)
    return StageOutcome(run, method, "retrained", metrics=metrics, seconds=time.perf_counter() - started)


def _print_stage(console: Console, outcome: StageOutcome) -> None:
    name = escape(outcome.path.name)
    if outcome.status in ("retrained", "skipped") and outcome.metrics is not None:
        figures = _figures(outcome.metrics)
        word = "[green]done[/]" if outcome.status == "retrained" else "skipped (finished)"
        console.print(f"grid: {word} {name}  {figures}  ({outcome.seconds:.0f}s)", highlight=False, soft_wrap=True)
    else:
        colour = "red" if outcome.status == "failed" else "yellow"
        console.print(
            f"grid: [{colour}]{outcome.status}[/] {name}: {escape(str(outcome.error))}", highlight=False, soft_wrap=True
        )


def write_summary(grid: Grid, errors: Mapping[int, str] | None = None, running: Iterable[int] = ()) -> Path:
    """Rewrite ``OUT/summary.csv`` from the run directories: one row per combination.

    Columns (`SUMMARY_COLUMNS`): ``index, run, model, loss, weighting, sampler, mixer, optimizer, split, seed, state``
    (``finished``, ``running``, ``partial``, ``new`` or ``failed``), ``epochs_done, epochs, acc, bacc,
    mpr, mf1`` (final metrics, fractions; a multilabel run's exact-match ratio, mean BAcc, mean precision and
    macro F1 over its labels, empty where it has none), ``train_seconds`` (the sum of the epochs' training time)
    and ``error``.

    Args:
        grid: The grid.
        errors: Why runs failed in this call, by run index.
        running: Indices of the runs in training now.
    """
    errors = errors or {}
    running = set(running)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in grid.runs:
        config, state = run.config, run.state()
        epochs = read_epochs(run.path / RunDirectory.EPOCHS)
        row: dict[str, Any] = {
            "index": run.index, "run": run.name, "model": config.model, "loss": config.loss,
            "weighting": config.weighter_spec, "sampler": config.sampler, "mixer": config.mixer,
            "optimizer": config.optimizer,
            "split": config.split, "seed": config.seed,
            "state": _summary_state(run.index, state, errors, running),
            "epochs_done": len(epochs), "epochs": config.epochs,
            "train_seconds": f"{sum(e.get('seconds', 0.0) for e in epochs):.1f}",
            "error": errors.get(run.index, ""),
        }  # fmt: skip
        if state == "finished":
            final = _read_json(run.path / RunDirectory.FINAL)
            row.update({m: "" if final.get(m) is None else f"{final[m]:.6f}" for m in _METRICS})
            row["epochs"] = final.get("epochs", config.epochs)
        writer.writerow(row)
    path = grid.out / SUMMARY_FILE
    atomic_write_text(path, buffer.getvalue())
    return path


# ------------------------------------------------------------------------------------------------ running


def _train_in_process(run: GridRun, device: str | None) -> RunOutcome:
    """Train (or resume) one run here; its failure becomes a failed outcome and the grid goes on.

    Any exception counts (a user error, CUDA out of memory, a bug in a plugin), as a crashing
    subprocess does on the ``--devices`` path; Ctrl-C still stops the grid. A run that another process
    (a second grid on the same folder) finished since this grid was planned is skipped.
    """
    done = _finished_elsewhere(run)
    if done is not None:
        return done
    updates: dict[str, Any] = {"quiet": True}
    if device is not None:
        updates["device"] = device
    started = time.perf_counter()
    resume = run.state() == "partial"
    if resume:
        updates["overwrite"] = False  # a grid resumes half-finished runs whatever the shared options say
    try:
        metrics = training.train(run.config.model_copy(update=updates), resume=resume)
    except RunDirectoryInUseError as exc:
        return RunOutcome(run, "busy", error=str(exc), seconds=time.perf_counter() - started)
    except SampleWeightError as exc:
        return RunOutcome(run, "failed", error=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - recorded in summary.csv; the other runs go on
        error = f"{type(exc).__name__}: {exc}"
        return RunOutcome(run, "failed", error=error, seconds=time.perf_counter() - started)
    return RunOutcome(run, "trained", metrics=metrics, seconds=time.perf_counter() - started)


def _run_workers(
    grid: Grid, runs: Sequence[GridRun], devices: Sequence[str], bar: _GridProgress, ledger: _Ledger
) -> None:
    """One worker thread per device; each trains one run at a time in a ``sampleweight train`` subprocess."""
    queue = list(reversed(runs))
    take = threading.Lock()
    stop = threading.Event()

    def worker(device: str) -> None:
        while not stop.is_set():
            with take:
                if not queue:
                    return
                run = queue.pop()
            bar.started(run, device)
            ledger.started(run)
            outcome = _train_subprocess(grid, run, device)
            ledger.finished(outcome)
            bar.finished(outcome)

    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="grid-worker") as pool:
        futures = [pool.submit(worker, device) for device in devices]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()  # the subprocesses got the same Ctrl-C; start no new ones
            raise


def _train_subprocess(grid: Grid, run: GridRun, device: str) -> RunOutcome:
    """``python -m sampleweight train ... --device DEVICE --quiet [--resume]``, output to ``RUN/train.log``.

    A run another process finished since the grid was planned is skipped, and one another process is
    training is ``busy``: checked before the worker starts and, should it fail, again after (the other
    process may have taken the folder in between).
    """
    done = _finished_elsewhere(run)
    if done is not None:
        return done
    run.path.mkdir(parents=True, exist_ok=True)
    holder = _held_elsewhere(run)
    if holder is not None:
        return RunOutcome(run, "busy", error=holder)
    command = [sys.executable, "-m", "sampleweight", "train", *grid.train_arguments(run), "--device", device, "--quiet"]
    if run.state() == "partial":
        command.append("--resume")
    log = run.path / LOG_FILE
    started = time.perf_counter()
    with open(log, "a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code == 0 and run.state() == "finished":
        return RunOutcome(run, "trained", metrics=_read_json(run.path / RunDirectory.FINAL), seconds=seconds)
    done = _finished_elsewhere(run)
    holder = _held_elsewhere(run) if done is None else None
    if done is not None or holder is not None:  # refused the folder: the other process's run, not a failure
        return done or RunOutcome(run, "busy", error=holder, seconds=seconds)
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    reason = lines[-1] if lines else "no output"
    return RunOutcome(run, "failed", error=f"exit code {code}: {reason} (log: {log})", seconds=seconds)


def _finished_elsewhere(run: GridRun) -> RunOutcome | None:
    """``skipped`` with its metrics when the run is finished by now (before this grid, or by another process
    since), else None; finished with other options than this grid's, it says which (in ``error``)."""
    if run.state() != "finished":
        return None
    stale = run.stale_options()
    note = f"finished with other options ({'; '.join(stale)}); it is kept: delete its folder to train it again"
    return RunOutcome(run, "skipped", metrics=_read_json(run.path / RunDirectory.FINAL), error=note if stale else None)


def _print_kept(console: Console, outcome: RunOutcome) -> None:
    """The note on a skipped run that was finished with other options (kept as it is), if it was."""
    if outcome.status == "skipped" and outcome.error:
        console.print(f"[yellow]note[/]: {escape(outcome.run.name)} is {escape(outcome.error)}", highlight=False,
                      soft_wrap=True)  # fmt: skip


def _held_elsewhere(run: GridRun) -> str | None:
    """Why the run's folder is refused when another process holds it now (it is training the run), else None."""
    try:
        with FolderLock(run.path):
            return None
    except RunDirectoryInUseError as exc:
        return str(exc)


class _Ledger:
    """What a `run_grid` call has done so far, mirrored into ``summary.csv`` after every change (thread-safe)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.outcomes: dict[int, RunOutcome] = {}
        self.errors: dict[int, str] = {}
        self.running: set[int] = set()
        self.elsewhere: set[int] = set()  # runs another process is training
        self._lock = threading.Lock()

    def started(self, run: GridRun) -> None:
        """A run begins."""
        with self._lock:
            self.running.add(run.index)
            self._write()

    def finished(self, outcome: RunOutcome) -> None:
        """A run ended (trained or failed)."""
        with self._lock:
            self.running.discard(outcome.run.index)
            self.outcomes[outcome.run.index] = outcome
            if outcome.status == "busy":
                self.elsewhere.add(outcome.run.index)
            elif outcome.status == "failed" and outcome.error:  # a skipped run's note is no error
                self.errors[outcome.run.index] = outcome.error
            self._write()

    def write(self) -> None:
        """Rewrite ``summary.csv``."""
        with self._lock:
            self._write()

    def close(self) -> None:
        """No run is training any more (finished or interrupted): rewrite ``summary.csv``."""
        with self._lock:
            self.running.clear()
            self._write()

    def _write(self) -> None:
        write_summary(self.grid, self.errors, self.running | self.elsewhere)


class _GridProgress:
    """A bar over the whole grid (runs done / total, the runs in progress, ETA), or one line per run."""

    def __init__(self, total: int, done: int, enabled: bool, console: Console) -> None:
        self.console, self.enabled = console, enabled
        self.total, self.done = total, done
        self.active: dict[int, str] = {}
        self._progress: Progress | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> _GridProgress:
        if self.done:
            self.console.print(f"grid: {self.done} of {self.total} runs already finished (skipped)", highlight=False)
        if self.enabled:
            self._progress = runs_bar("grid", self.console)
            self._progress.__enter__()
            self._task = self._progress.add_task("grid", total=self.total, completed=self.done, running="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def started(self, run: GridRun, device: str | None = None) -> None:
        """A run begins (on ``device``, for a worker)."""
        with self._lock:
            self.active[run.index] = run.name + (f" ({device})" if device else "")
            verb = "resuming" if run.state() == "partial" else "training"
            self.console.print(f"grid: {verb} {self.active[run.index]}", markup=False, highlight=False)
            self._refresh()

    def finished(self, outcome: RunOutcome) -> None:
        """A run ended (trained or failed)."""
        with self._lock:
            self.active.pop(outcome.run.index, None)
            if outcome.metrics is not None:
                figures = _figures(outcome.metrics)
                word = "[green]done[/]" if outcome.status == "trained" else "skipped (finished by another process)"
                self.console.print(
                    f"grid: {word} {escape(outcome.run.name)}  {figures}  ({outcome.seconds:.0f}s)",
                    highlight=False,
                    soft_wrap=True,
                )
                _print_kept(self.console, outcome)
            else:
                colour = "yellow" if outcome.status == "busy" else "red"
                self.console.print(
                    f"grid: [{colour}]{outcome.status}[/] {escape(outcome.run.name)}: {escape(str(outcome.error))}",
                    highlight=False,
                    soft_wrap=True,
                )
            if self._progress is not None:
                self._progress.advance(self._task)
            self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, running=escape(", ".join(self.active.values())))


# ------------------------------------------------------------------------------------------------ helpers


def _shared_options(config_file: str | Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The config file's options (only those it sets) under ``options``, minus the combination's fields."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values = load_config(config_file).model_dump(exclude_unset=True)  # validated on its own
    for key, value in options.items():
        if value is not None:  # an option table from a flag updates the file's key by key
            merge = key in OPTION_TABLES and isinstance(values.get(key), dict)
            values[key] = {**values[key], **value} if merge else value
    unknown = sorted(set(values) - set(TrainConfig.model_fields))
    if unknown:
        valid = ", ".join(TrainConfig.model_fields)
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return {k: v for k, v in values.items() if k not in _COMBINATION}


def _plugin_options(names: Sequence[str], options: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Each plugin's share of the grid's options for ``kind`` (``--sampler-option``, ``--mixer-option``,
    ``--optimizer-option``): the keys its factory takes.

    Raises:
        ConfigError: A key that no plugin of the grid's ``kind`` axis takes.
    """
    accepted = {name: accepted_options(lookup(None, kind, name).factory) for name in names}
    taken, unused = _shares(accepted, options)
    if unused:
        singular = SINGULAR[kind]
        raise ConfigError(
            f"--{singular}-option {unused[0]}: no {singular} of the grid ({', '.join(names)}) takes "
            f"{', '.join(unused)}; `sampleweight plugins` lists the {kind}, docs/plugins.md where their options are"
        )
    return taken


def _shares(accepted: Mapping[Any, set[str] | None], options: Mapping[str, Any]) -> tuple[dict[Any, dict], list[str]]:
    """Each plugin's share of a grid's options, by the keys its factory takes (None: any), and the keys none takes.

    Args:
        accepted: Per plugin (or model x loss), `sampleweight.factory.accepted_options` of its factory.
        options: The grid's options.
    """
    taken = {key: {k: v for k, v in options.items() if names is None or k in names} for key, names in accepted.items()}
    unused = sorted(k for k in options if not any(k in chosen for chosen in taken.values()))
    return taken, unused


def _loss_options(
    models: Sequence[str], losses: Sequence[str], options: Mapping[str, Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Each model x loss's share of the grid's ``--loss-option`` keys (``--gamma`` among them): those its loss takes.

    The loss is the one the run trains with (`sampleweight.engine.components.loss_plugin`: the hierarchical
    model's ``ce``/``focal`` is the hierarchical loss); one built on the run's loss as its base takes only the
    options that base takes too (the hierarchical loss takes ``gamma``, but not with ``ce`` as its base).

    Raises:
        ConfigError: A key that no run of the grid takes.
    """
    accepted: dict[tuple[str, str], set[str] | None] = {}
    for model, loss in itertools.product(models, losses):
        plugin = components.loss_plugin(model, loss)
        names = accepted_options(lookup(None, "losses", plugin).factory)
        if plugin != loss:
            base = accepted_options(lookup(None, "losses", loss).factory)
            names = base if names is None else names if base is None else names & base
        accepted[(model, loss)] = names
    taken, unused = _shares(accepted, options)
    if unused:
        raise ConfigError(
            f"--loss-option {unused[0]}: no loss of the grid ({', '.join(losses)}) takes {', '.join(unused)}; "
            "`sampleweight plugins` lists the losses, docs/weighting.md and docs/long-tail.md their options"
        )
    return taken


def _checked(
    names: list[str], what: str, valid: Sequence[str], extra: Callable[[str], bool] | None = None
) -> list[str]:
    for name in names:
        if name not in valid and not (extra is not None and extra(name)):
            more = ", or any timm model" if extra is not None else ""
            joined = " (join several with +)" if what == "weighter" else ""
            raise ConfigError(f"unknown {what} {name!r} in the grid; valid: {', '.join(valid)}{more}{joined}")
    return names


def _split_numbers(values: list[str], what: str = "splits") -> list[int]:
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--{what} must be whole numbers such as 0,1; got {','.join(values)}") from None
    if any(n < 0 for n in numbers):
        raise ConfigError(f"--{what} must be 0 or more; got {','.join(values)}")
    return numbers


def _figures(metrics: Mapping[str, Any]) -> str:
    """``acc 81.2  bacc 64.0  mpr 60.1  mf1 61.5``: a run's final figures in percent (``-`` for a figure a
    multilabel run has not: no label with both classes on its validation side)."""
    return "  ".join(f"{m} " + ("-" if metrics.get(m) is None else f"{100 * metrics[m]:.1f}") for m in _METRICS)


def _summary_state(index: int, state: str, errors: Mapping[int, str], running: set[int]) -> str:
    if state == "finished":
        return state
    if index in running:
        return "running"
    return "failed" if index in errors else state


def _device_name(text: str) -> str:
    """``"0"`` -> ``"cuda:0"``; anything else (``cuda:1``, ``cpu``) as given."""
    return f"cuda:{text}" if text.isdigit() else text


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
