"""The ``sampleweight`` command line: a thin typer layer over the library functions.

Every command parses and validates its options and calls the same function a notebook would. Errors
caused by user input (`SampleWeightError`) print one red line on stderr and exit with code 2.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from sampleweight.errors import ConfigError, SampleWeightError
from sampleweight.plugins import PluginWarning, get_registry

F = TypeVar("F", bound=Callable[..., Any])
_show_warning = warnings.showwarning


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Show a `PluginWarning` as one ``warning: ...`` line on stderr (Python's shows the warning's file and source
    line too, on every command); other warnings as Python shows them."""
    if not issubclass(category, PluginWarning):
        _show_warning(message, category, filename, lineno, file, line)
        return
    stream = file if file is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):  # as Python's: a closed stream loses the warning
        stream.write(f"warning: {' '.join(str(message).split())}\n")


# Installed when the command line is imported, before the registry is used: the package import loaded it and kept
# its plugin warnings for this first use (`sampleweight.plugins.load_at_import`).
warnings.showwarning = _one_line_warning
get_registry()

from sampleweight.engine.config import TrainConfig, parse_options  # noqa: E402 - loads the plugins (see above)


class _OneLineErrors(TyperGroup):
    """The commands, with a bad option value (a number that does not parse, one out of range, a missing option)
    said in one ``error: ...`` line, exit code 2, as every other error in user input, instead of click's usage
    box."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a `typer.BadParameter` from parsing its options becomes one line."""
        given = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # emptied by invoke: kept to name the bad value
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            err_console.print(f"[bold red]error:[/] {escape(_bad_value(exc, given))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None


def _bad_value(exc: typer.BadParameter, args: list[str]) -> str:
    """``--epochs '1.5': Input should be a valid integer``: the option, the value given, and why it is refused."""
    names = [name for name in getattr(exc.param, "opts", ()) if name.startswith("-")]
    if not names or not exc.message:  # an argument, or a missing option: click's own words say which
        return " ".join(exc.format_message().split()).rstrip(".")
    given = None
    for index, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in names:
            given = value if equals else (args[index + 1] if index + 1 < len(args) else None)
    shown = names[-1] if given is None else f"{names[-1]} {given!r}"
    return f"{shown}: {' '.join(exc.message.split()).rstrip('.')}"


app = typer.Typer(
    cls=_OneLineErrors,
    name="sampleweight",
    help="Sample-weighting strategies (CB, ES, SPL, OHEM, ...) for training timm image classifiers on imbalanced data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def user_errors(command: F) -> F:
    """Turn a `SampleWeightError` into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SampleWeightError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from sampleweight import __version__

        console.print(f"sampleweight {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Train, evaluate and compare sample-weighting strategies."""


@app.command()
@user_errors
def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print the plugins as JSON instead of a table."),
    check: bool = typer.Option(
        False, "--check", help="Exit with code 1 when a plugin failed to load or lost a name clash."
    ),
) -> None:
    """List every plugin (built-in and third-party): what it registers, and why it failed to load."""

    from sampleweight.plugins import KINDS, get_registry, list_plugins

    registry = get_registry()
    infos = list_plugins(registry)

    def summaries(info: Any) -> dict[str, dict[str, str]]:
        """Each registered name's one-line summary, by kind."""
        return {
            kind: {name: registry.info(kind, name).get("summary", "") for name in getattr(info, kind)}
            for kind in KINDS
            if getattr(info, kind)
        }

    problems = [info for info in infos if info.error or info.clashes]
    if as_json:
        print(json.dumps([{**asdict(i), "summaries": summaries(i)} for i in infos], indent=2))
    else:
        # Four columns, the names wrapping within theirs, and the long texts (errors, clashes) as numbered
        # notes under the table: readable in 80 columns.
        table = Table(title="sampleweight plugins", show_lines=True)
        table.add_column("plugin", no_wrap=True)
        table.add_column("from", overflow="fold")
        table.add_column("registers", ratio=1)
        table.add_column("status", no_wrap=True)
        notes: list[str] = []
        for info in infos:
            registers = [
                f"{kind}:\n"
                + "\n".join(f"  {name} — {summary}" if summary else f"  {name}" for name, summary in named.items())
                for kind, named in summaries(info).items()
            ]
            if info.disabled:
                status = "[yellow]disabled[/]"
            elif info.error or info.clashes:
                first = len(notes) + 1
                notes += [f"{info.label}: {text}" for text in ([info.error] if info.error else []) + info.clashes]
                status = f"[red]{'failed' if info.error else 'clash'} \\[{first}][/]"
            else:
                status = "[green]ok[/]"
            source = f"{info.distribution} {info.version}" if info.distribution else "-"
            cells = (info.name, source, "\n".join(registers) or "-")
            table.add_row(*(escape(text) for text in cells), status)  # a plugin's text is not markup
        console.print(table)
        for number, note in enumerate(notes, 1):
            console.print(f"[red]\\[{number}][/] {escape(note)}", highlight=False)
    if check and problems:
        names = escape(", ".join(info.name for info in problems))
        err_console.print(
            f"[bold red]check failed:[/] {len(problems)} plugin(s) with problems: {names}", highlight=False
        )
        raise typer.Exit(code=1)


RUN_OPTIONS = "Run options"
"""The help panel of the options that are `TrainConfig` fields (`run_options`): the same words in train and grid."""
BOOTSTRAP_HELP = "Bootstrap resamples of the 95 % intervals in metrics.json (default 2000; 0: none)."
GAMMA_HELP = "The focal loss's exponent: short for --loss-option gamma=G (default 1)."
DATA_HELP = "Data set folder (HAM10000, ISIC 2018 Task 3, or labels.csv + images), or synthetic[:N[:SEED]]."


@dataclass(frozen=True)
class _Flag:
    """One `TrainConfig` field as a command-line option."""

    name: str
    field: FieldInfo
    declaration: str
    parses: Any

    @property
    def table(self) -> bool:
        """A table of options (``loss_options``): repeatable ``KEY=VALUE`` pairs."""
        return get_origin(_without_none(self.field.annotation)) is dict

    def parameter(self) -> inspect.Parameter:
        """The typer option: the field's type, default (shown in the help) and description (the help)."""
        default = None if self.table else self.field.get_default(call_default_factory=True)
        annotation = self.parses if default is not None else self.parses | None
        option = typer.Option(default, self.declaration, help=self.field.description, rich_help_panel=RUN_OPTIONS)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)

    def value(self, given: Any) -> Any:
        """The field's value from what the command line gave."""
        if self.table:
            return parse_options(given, self.declaration)
        return list(given) if get_origin(self.parses) is list else given


def _flags(exclude: Collection[str] = ()) -> list[_Flag]:
    """The `TrainConfig` fields that are command-line options (those not marked ``FILE_ONLY``), but ``exclude``."""
    flags = []
    for name, field in TrainConfig.model_fields.items():
        marks = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        declared = marks.get("flag")
        if declared is False or name in exclude:
            continue
        parses = _parses(name, field.annotation)
        dashed = name.replace("_", "-")
        declaration = declared or (f"--{dashed}/--no-{dashed}" if parses is bool else f"--{dashed}")
        flags.append(_Flag(name, field, declaration, parses))
    return flags


def _parses(name: str, annotation: Any) -> Any:
    """What a field's option parses: the field's type without None; a ``Literal`` of strings as ``str`` (pydantic
    then names the choices); a list repeated; a table (``dict``) as repeated ``KEY=VALUE`` strings."""
    kind = _without_none(annotation)
    origin = get_origin(kind)
    if origin is Literal and all(isinstance(choice, str) for choice in get_args(kind)):
        return str
    if origin is list and get_args(kind)[0] in (str, int, float):
        return list[get_args(kind)[0]]  # type: ignore[misc]
    if origin is dict:
        return list[str]
    if kind is Path:
        return str  # as typed: an empty path reaches TrainConfig, which refuses it (Path("") would be ".")
    if kind in (str, int, float, bool):
        return kind
    raise TypeError(f"TrainConfig.{name}: no command-line option parses {annotation}; mark the field FILE_ONLY")


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(annotation) in (Union, UnionType):
        (kind,) = [t for t in get_args(annotation) if t is not type(None)]
        return kind
    return annotation


def run_options(*, exclude: Collection[str] = ()) -> Callable[[F], F]:
    """Give a command one option per `TrainConfig` field, generated from the field, in the help panel *Run options*.

    Each field not marked ``FILE_ONLY`` (`sampleweight.engine.config.FILE_ONLY`) and not in ``exclude`` becomes
    ``--field-name`` (a boolean ``--field-name/--no-field-name``; a field's ``json_schema_extra`` ``flag`` names
    it otherwise, e.g. ``--quiet/--progress``, ``--weighter``) with the field's type (a ``list`` field repeatable,
    a ``dict`` field repeatable ``KEY=VALUE`` pairs read by `parse_options`), its default (shown in the help)
    and its description as the help text. So ``train`` and ``grid`` say the same about each, and a new run option
    is one field.

    The command declares its own options as usual and takes the generated ones as ``**options``, keyed by field
    name: the value given on the command line, None for an option not given (so a config file's value stays).

    Args:
        exclude: Fields that are no option of this command (grid's per-run fields, which its axes replace).
    """

    def decorate(command: F) -> F:
        flags = _flags(exclude)
        own = [
            parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in inspect.signature(command, eval_str=True).parameters.values()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        parameters = [context, *(flag.parameter() for flag in flags), *own]

        @functools.wraps(command)
        def wrapper(ctx: typer.Context, **values: Any) -> Any:
            options = {}
            for flag in flags:
                given = values.pop(flag.name)
                # by name: typer may bring its own copy of click, whose ParameterSource is another enum
                source = getattr(ctx.get_parameter_source(flag.name), "name", "DEFAULT")
                options[flag.name] = None if source in ("DEFAULT", "DEFAULT_MAP") else flag.value(given)
            return command(**values, **options)

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}  # real types, for typer's type hints
        return wrapper  # type: ignore[return-value]

    return decorate


def given_path(value: str | Path | None, flag: str) -> Path | None:
    """A path option as given: refused when empty (``Path("")`` is the current folder, written into or scanned
    unasked), as `TrainConfig` refuses one.

    Raises:
        ConfigError: ``value`` is an empty string.
    """
    if value is None:
        return None
    if not str(value).strip():
        raise ConfigError(f"{flag} is an empty path; give a folder or file (. for the current folder)")
    return Path(value)


def with_gamma(loss_options: dict[str, Any] | None, gamma: float | None) -> dict[str, Any] | None:
    """``--loss-option`` pairs with ``--gamma G`` added as ``gamma=G`` (what it is short for).

    Raises:
        ConfigError: ``--loss-option gamma=...`` gives another value.
    """
    if gamma is None:
        return loss_options
    options = loss_options or {}
    if options.get("gamma", gamma) != gamma:
        raise ConfigError(
            f"--gamma {gamma:g} and --loss-option gamma={options['gamma']} contradict each other: give one of them"
        )
    return {**options, "gamma": gamma}


@app.command()
@user_errors
@run_options()
def train(
    config: Path | None = typer.Option(None, "--config", help="TOML/YAML/JSON file of options; flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch."),
    gamma: float | None = typer.Option(None, "--gamma", help=GAMMA_HELP, rich_help_panel=RUN_OPTIONS),
    **options: Any,
) -> None:
    """Train one model x loss x weighting x optimizer and write a run directory.

    The run options are those of a config file (--config), and may be given in one.
    """
    from sampleweight.engine.config import load_config
    from sampleweight.engine.ddp import is_main
    from sampleweight.engine.rundir import RunDirectory
    from sampleweight.engine.training import resume_options, train as run_training

    flags = {**options, "loss_options": with_gamma(options["loss_options"], gamma)}
    if resume and config is None and options["out"] is not None:
        config = resume_options(options["out"])  # resume with the run's own options; flags may still override
    if resume and not options["overwrite"]:
        flags["overwrite"] = False  # a run started with --overwrite keeps it in config.json: resuming does not
    settings = load_config(config, **flags)
    try:
        metrics = run_training(settings, resume=resume)
    except KeyboardInterrupt:
        saved = settings.out is not None and (settings.out / RunDirectory.CHECKPOINT).is_file()
        if is_main():
            message = (
                f"the last finished epoch is saved; continue it with: sampleweight train --out {settings.out} --resume"
                if saved
                else "no epoch had finished, nothing is saved"
            )
            err_console.print(f"[yellow]interrupted[/]: {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    if is_main():  # under torchrun, rank 0 speaks for the run
        console.print(_metrics_line(metrics, settings.out), markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def evaluate(
    runs: list[Path] = typer.Argument(
        ...,
        help="Run directories, checkpoint.pt files or grid folders (their finished runs); several: an ensemble. "
        "With --each: one grid folder.",
    ),
    data: str = typer.Option(..., help=DATA_HELP + " A folder of images without labels is scored without metrics."),
    out: str | None = typer.Option(
        None, help="Where to write metrics.json and predictions.csv (default RUN/evaluate[-TTA][-geometric][-laTAU])."
    ),
    device: str | None = typer.Option(None, help="cuda, cuda:N or cpu."),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass, test-time views included."),
    cache_dir: str | None = typer.Option(None, help="Image cache folder."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out (and report) unreadable images."),
    bootstrap: int = typer.Option(2000, min=0, help=BOOTSTRAP_HELP),
    tta: str = typer.Option(
        "none", help="Test-time augmentation: none, flip (4 views), flip-rot (8), crops (16 unscaled crops)."
    ),
    combine: str = typer.Option("mean", help="How an ensemble combines its runs' probabilities: mean or geometric."),
    submission: Path | None = typer.Option(
        None,
        help="Also write the submission CSV to this file: ISIC 2018 Task 3's columns, ISIC 2020's "
        "image_name,target for a binary run, or image,<label1>,<label2>,... (probabilities) for a multilabel run.",
    ),
    logit_adjust: float | None = typer.Option(
        None, "--logit-adjust", help="Post-hoc logit adjustment: log p - TAU log(training prior), renormalised."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace what --out holds: another evaluation, or a training run (deleted)."
    ),
    each: bool = typer.Option(
        False,
        "--each",
        help="Score every finished run of one grid folder alone (retrained stages too), one evaluation each in "
        "--out/RUN; resumable. `sampleweight report OUT --baseline NAME` compares them, paired on these images.",
    ),
) -> None:
    """Score trained runs (one, or an ensemble) on another data set, e.g. the ISIC 2018 validation or test release.

    With --each, every finished run of a grid folder is scored alone into --out/RUN (for `sampleweight report`).
    """
    from sampleweight.engine.evaluation import evaluate as run_evaluation

    given_path(data, "--data")
    out = given_path(out, "--out")
    cache_dir = given_path(cache_dir, "--cache-dir")
    if each:
        _evaluate_each(runs, data, out, device=device, batch_size=batch_size, cache_dir=cache_dir, skip_bad=skip_bad,
                       bootstrap=bootstrap, tta=tta, combine=combine, submission=submission,
                       logit_adjust=logit_adjust, overwrite=overwrite)  # fmt: skip
        return
    metrics, where = run_evaluation(
        runs,
        data,
        out=out,
        device=device,
        batch_size=batch_size,
        cache_dir=cache_dir,
        skip_bad=skip_bad,
        bootstrap=bootstrap,
        tta=tta,
        combine=combine,
        submission=submission,
        logit_adjust=logit_adjust,
        overwrite=overwrite,
    )
    if metrics["labelled"]:
        line = _metrics_line(metrics, where)
    else:
        line = f"no ground truth in {data}: scored {metrics['n']} images, no metrics computed   -> {where}"
    if "submission" in metrics:
        line += f" (submission: {metrics['submission']})"
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _evaluate_each(
    runs: list[Path], data: str, out: Path | None, *, combine: str, submission: Path | None, **options: Any
) -> None:
    """``evaluate GRID --each``: one evaluation per finished run, a line per run, a summary line."""
    from sampleweight.studies.testset import evaluate_each

    if len(runs) != 1:
        raise ConfigError(
            f"--each scores the runs of one grid folder one by one, and {len(runs)} paths were given; several paths "
            "are an ensemble: leave out --each"
        )
    if out is None:
        raise ConfigError(f"--each needs --out: the folder that gets one evaluation per run of {runs[0]}")
    if combine != "mean":
        raise ConfigError("--combine is for an ensemble; --each scores every run alone: leave out --combine")
    if submission is not None:
        raise ConfigError("--submission writes one file for one evaluation; --each makes one per run: leave it out")
    outcomes = evaluate_each(runs[0], data, out, console=err_console, **options)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("evaluated", "skipped", "unfinished")}
    line = (
        f"{counts['evaluated']} evaluated, {counts['skipped']} skipped (evaluated before), "
        f"{counts['unfinished']} unfinished run(s) left out   -> {out}"
    )
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    stopped = [o for o in outcomes if o.status in ("failed", "busy")]
    if stopped:
        names = ", ".join(f"{o.name} ({o.status})" for o in stopped)
        raise ConfigError(
            f"{len(stopped)} of {len(outcomes)} runs were not evaluated: {names}; run the same command again to retry"
        )


@app.command()
@user_errors
def retrain(
    run: Path = typer.Argument(..., help="A finished run directory (sampleweight train's --out)."),
    method: str = typer.Option(
        ..., help="crt, tau_norm, lws, ncm (Kang et al. 2020) or wb (Alshammari et al. 2022); docs/long-tail.md."
    ),
    out: str = typer.Option(..., help="The retrained run's directory (a normal run directory)."),
    epochs: int | None = typer.Option(None, help="crt/lws/wb: epochs (default 10 % of the run's, at least 1)."),
    lr: float | None = typer.Option(None, help="crt/lws/wb: learning rate (default the run's), cosine-annealed to 0."),
    batch_size: int | None = typer.Option(None, help="crt/lws/wb: batch size (default the run's)."),
    sampler: str | None = typer.Option(None, help="crt/lws: sampler (default class_balanced; wb: instance)."),
    loss: str | None = typer.Option(None, help="crt/lws/wb: loss (default ce; wb weights it class-balanced, es)."),
    weight_decay: float | None = typer.Option(None, help="wb: the classifier's weight decay (default the run's)."),
    max_norm: float | None = typer.Option(
        None,
        help="wb: MaxNorm radius as a fraction between the smallest and largest class norm of the run's classifier "
        "(default 0.1, Alshammari et al.'s).",
    ),
    tau: float | None = typer.Option(
        None, help="tau_norm: the exponent, >= 0 (default: the best of 0, 0.1, ..., 2 on the validation side)."
    ),
    ncm_distance: str | None = typer.Option(
        None,
        help="ncm: cosine (default: the cosine to the class means) or cl2n (Kang et al.'s code's default: the "
        "Euclidean distance after centring and L2-normalising the features).",
    ),
    data: str | None = typer.Option(None, help="The run's data set, if it moved (default the run's --data)."),
    device: str | None = typer.Option(None, help="cuda, cuda:N or cpu (default cuda when available)."),
    cache_dir: str | None = typer.Option(None, help="Image cache folder (default the run's)."),
    workers: int | None = typer.Option(None, help="Data-loader worker processes (default the run's)."),
    bootstrap: int | None = typer.Option(None, min=0, help=BOOTSTRAP_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an --out that holds a run."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the final line."),
) -> None:
    """Re-balance a finished run's classifier (decoupled second stage) and write it as a new run directory."""
    from sampleweight.engine.retraining import retrain as run_retraining

    given_path(data, "--data")
    out_folder = given_path(out, "--out")
    metrics = run_retraining(
        run,
        method,
        out_folder,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        sampler=sampler,
        loss=loss,
        tau=tau,
        ncm_distance=ncm_distance,
        weight_decay=weight_decay,
        max_norm=max_norm,
        data=data,
        device=device,
        cache_dir=given_path(cache_dir, "--cache-dir"),
        workers=workers,
        bootstrap=bootstrap,
        overwrite=overwrite,
        quiet=quiet,
        console=console,
    )
    console.print(_metrics_line(metrics, out_folder), markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's run directories."),
    epochs: int = typer.Option(6, help="Epochs per run."),
    images: int = typer.Option(1500, help="Synthetic images."),
    image_size: int = typer.Option(64, help="Image size."),
    quiet: bool = typer.Option(False, "--quiet", help="One line per epoch instead of progress bars."),
    weighters: str = typer.Option("none,es,ohem", help="The weightings compared, one run each (comma-separated)."),
) -> None:
    """The embedded default: none vs es vs ohem (CE) on the synthetic data set, a few minutes on a CPU."""
    from sampleweight.studies.demo import run_demo
    from sampleweight.studies.grid import parse_list

    run_demo(
        out,
        weighters=parse_list(weighters, "weighters"),
        epochs=epochs,
        images=images,
        image_size=image_size,
        quiet=quiet,
        console=console,
    )


@app.command()
@user_errors
def prepare(
    data: str = typer.Option(..., help=DATA_HELP),
    image_size: int = typer.Option(299, help="Side of the cached images (the model's input size)."),
    cache_dir: Path | None = typer.Option(
        None, help="Cache folder (default $SAMPLEWEIGHT_CACHE_DIR or ~/.cache/sampleweight)."
    ),
    workers: int | None = typer.Option(None, help="Decoding threads (default: all cores)."),
    colour_constancy: bool = typer.Option(
        True, "--colour-constancy/--no-colour-constancy", help="Shades of Gray, p = 6."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Leave out unreadable images and bad rows, and report them."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if a valid cache exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Decode, colour-normalise and resize every image once into the on-disk cache that training reads."""
    from sampleweight.data import prepare as prepare_images

    summary = prepare_images(
        data,
        image_size,
        cache_dir,
        colour_constancy=colour_constancy,
        workers=workers,
        skip_bad=skip_bad,
        force=force,
        progress=not as_json,
    )
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
        return
    state = "reused" if summary.reused else f"built in {summary.seconds:.1f}s"
    where = summary.path or "in memory (synthetic)"
    console.print(
        f"{summary.layout}: {summary.num_images} images at {summary.image_size}px, {summary.size_mb:.0f} MB, "
        f"{state} -> {where}",
        markup=False,
        highlight=False,
    )


GRID_LISTS_HELP = "Comma-separated; the grid is their cross-product."
GRID_OWN = ("model", "loss", "weighters", "sampler", "mixer", "optimizer", "split", "out", "quiet", "overwrite")
"""The `TrainConfig` fields that are no run option of ``grid``: its axes (``--models``, ``--losses``, ...) set them
per run, ``--out`` and ``--quiet`` are the grid's own (its folder, its progress), and a grid never starts a run
over (it skips or resumes it)."""


@app.command()
@user_errors
@run_options(exclude=GRID_OWN)
def grid(
    models: str | None = typer.Option(
        None, help=f"Models. {GRID_LISTS_HELP} Default for this and the next three: the paper's comparison."
    ),
    losses: str | None = typer.Option(None, help="Losses (default ce,focal)."),
    weighters: str | None = typer.Option(
        None,
        help="Weightings (default none,cb,es,spl,ohem); an entry may compose several with + (ohem+es multiplies).",
    ),
    samplers: str | None = typer.Option(None, help="Samplers (default instance; class_balanced, sqrt, ...)."),
    mixers: str | None = typer.Option(None, help="Mixers (default none; mixup, cutmix, mixup_cutmix, remix, ...)."),
    optimizers: str = typer.Option("adam,sgd", help="Optimizers: adam and/or sgd."),
    splits: str = typer.Option(
        "0,1", help="Lesion-grouped 80/20 splits: the paper's are 0,1; any k >= 0 is another independent draw."
    ),
    seeds: str | None = typer.Option(
        None, help="Seeds: every split is trained with each (default: --seed, else 0). Names get -seedN for N > 0."
    ),
    out: str = typer.Option("runs/grid", help="Grid folder: one run directory per combination."),
    config: Path | None = typer.Option(None, "--config", help="TOML/YAML/JSON options shared by every run."),
    devices: str | None = typer.Option(
        None, help="Spread the runs over devices (0,1,2 or cuda:0,cuda:1): one run per device at a time."
    ),
    quiet: bool = typer.Option(False, "--quiet/--progress", help="One line per run and epoch, no progress bar."),
    print_commands: bool = typer.Option(
        False, "--print-commands", help="Print one `sampleweight train` command per run (for schedulers); train none."
    ),
    index: int | None = typer.Option(None, help="Train only the run with this 0-based index (a job array's task)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the paper-style tables at the end."),
    retrain: str | None = typer.Option(
        None,
        "--retrain",
        help="Then add these decoupled second stages to every finished run (crt,tau_norm,lws,ncm), each in RUN+METHOD; "
        "finished stages are skipped.",
    ),
    gamma: float | None = typer.Option(None, "--gamma", help=GAMMA_HELP, rich_help_panel=RUN_OPTIONS),
    **options: Any,
) -> None:
    """Train the cross-product of models x losses x weightings x samplers x mixers x optimizers x splits x seeds.

    Finished runs are skipped, half-finished ones resumed. The run options (those of train, but the ones the
    lists above set per run) apply to every run, except that each --loss-option (--gamma too), --sampler-option,
    --mixer-option and NAME.KEY --weighter-option reaches only the runs whose loss, sampler, mixer or weighting
    takes it.
    """
    from sampleweight.errors import SampleWeightError
    from sampleweight.studies.grid import parse_methods, plan_grid, run_grid, run_stages
    from sampleweight.studies.report import rich_table, write_report

    out = given_path(out, "--out")
    options = {**options, "loss_options": with_gamma(options["loss_options"], gamma)}
    methods = parse_methods(retrain) if retrain is not None else []  # before anything trains
    planned = plan_grid(
        out,
        models=models,
        losses=losses,
        weighters=weighters,
        samplers=samplers,
        mixers=mixers,
        optimizers=optimizers,
        splits=splits,
        seeds=seeds,
        config_file=config,
        options=options,
    )
    if print_commands:
        planned.write_config_file()
        for run in planned.runs:
            print(planned.train_command(run))
        retrainable = [run for run in planned.runs if run.retrainable]  # not the hierarchical model's
        for run in retrainable:  # once the runs are finished
            for method in methods:
                print(planned.retrain_command(run, method))
        if methods and len(retrainable) < len(planned.runs):
            err_console.print(
                f"note: no retrain commands for the {len(planned.runs) - len(retrainable)} run(s) of a hierarchical "
                "model: it has no single classifier to re-balance",
                markup=False,
                highlight=False,
            )
        return
    try:
        outcomes = run_grid(planned, devices=devices, only=index, progress=not quiet)
        stages = run_stages(planned, methods, only=index, devices=devices) if methods else []
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/]: finished epochs are saved; run the same command to continue ({escape(str(out))})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=130) from None
    if report and index is None and any(o.metrics is not None for o in [*outcomes, *stages]):
        written = write_report(out)
        for table in written.tables:
            console.print(rich_table(table))
        console.print(f"report: {written.markdown}; summary: {out / 'summary.csv'}", markup=False, highlight=False)
    if index is not None and outcomes and outcomes[0].status == "busy":
        raise SampleWeightError(outcomes[0].error)  # the one run asked for is another process's
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        first = failed[0]
        raise SampleWeightError(
            f"{len(failed)} of {len(outcomes)} runs failed (see {out / 'summary.csv'}); first: {first.run.name}: "
            f"{first.error}. Run the same command again to retry them"
        )
    failed_stages = [o for o in stages if o.status == "failed"]
    if failed_stages:
        first_stage = failed_stages[0]
        raise SampleWeightError(
            f"{len(failed_stages)} of {len(stages)} retrain stages failed; first: {first_stage.path.name}: "
            f"{first_stage.error}. Run the same command again to retry them"
        )


@app.command()
@user_errors
def report(
    folder: Path = typer.Argument(..., help="A grid folder (or any folder of run directories)."),
    out: str | None = typer.Option(None, help="Where to write report.md, the CSVs and figures (default FOLDER)."),
    paper: bool = typer.Option(False, "--paper", help="Show the paper's figures (Tables 2-5) beside ours."),
    figures: bool = typer.Option(
        True, "--figures/--no-figures", help="Draw recall bar charts, reliability diagrams and confusion matrices."
    ),
    baseline: str | None = typer.Option(
        None,
        help="Compare every setup with this one on the same images (paired bootstrap, Holm's correction): "
        "a weighting (none) or a full setup name (ce-none).",
    ),
    logit_adjust: list[float] | None = typer.Option(
        None,
        "--logit-adjust",
        help="Also show every run after post-hoc logit adjustment with this TAU (repeatable): its own setups.",
    ),
    score_multiclass: bool = typer.Option(
        False,
        "--score-multiclass",
        help="Also score each multiclass run as each binary table's task on the same images (P(positive) = the sum "
        "of those classes' probabilities), and on a multilabel table of its label tree's nodes (a node's probability: "
        "the sum of its classes'): rows from=C-class of that table.",
    ),
) -> None:
    """Paper-style tables (mean ± sd, min-max over splits and seeds), paired comparisons and figures from runs."""
    from sampleweight.studies.report import rich_comparisons, rich_label_table, rich_table, write_report

    written = write_report(
        folder,
        given_path(out, "--out"),
        paper=paper,
        figures=figures,
        baseline=baseline,
        logit_adjust=tuple(logit_adjust or ()),
        score_multiclass=score_multiclass,
    )
    for table in written.tables:
        console.print(rich_table(table, paper=paper))
        if table.multilabel:
            console.print(rich_label_table(table))
        if table.comparisons:
            console.print(rich_comparisons(table))
    console.print(
        f"wrote {written.markdown}, {len(written.csv_files)} CSV table(s), {len(written.figures)} figure(s)",
        markup=False,
        highlight=False,
    )


@app.command()
@user_errors
def attention(
    runs: list[Path] = typer.Argument(..., help="Run directories (several: one comparison panel per image)."),
    images: str | None = typer.Option(
        None, help="Comma-separated image ids (default: the hardest and easiest validation image per class)."
    ),
    out: str | None = typer.Option(None, help="Output folder (default RUN/attention, or PARENT/attention)."),
    device: str | None = typer.Option(None, help="cuda, cuda:N or cpu."),
    data: str | None = typer.Option(None, help="Read the images from here instead of the run's --data."),
    cache_dir: str | None = typer.Option(None, help="Image cache folder instead of the run's."),
) -> None:
    """CBAM spatial attention and best channel per image (per decision level for the hierarchical model), as PNG."""
    from sampleweight.studies.attention import attention_figures

    names = [name.strip() for name in images.split(",") if name.strip()] if images is not None else None
    if names == []:
        raise ConfigError("--images is empty: give image ids (comma-separated), or leave it out for automatic picks")
    given_path(data, "--data")
    written = attention_figures(
        runs,
        images=names,
        out=given_path(out, "--out"),
        device=device,
        data=data,
        cache_dir=given_path(cache_dir, "--cache-dir"),
    )
    folders = sorted({str(path.parent) for path in written})
    console.print(f"wrote {len(written)} panel(s) to {', '.join(folders)}", markup=False, highlight=False)


def _metrics_line(metrics: dict[str, Any], where: Path | None) -> str:
    if metrics.get("task") == "multilabel":  # exact match, then the means over the labels that have each figure
        figures = "  ".join(
            f"{name} " + ("-" if metrics[key] is None else f"{100 * metrics[key]:.1f}")
            for name, key in (("exact", "acc"), ("mAUC", "auc"), ("mAP", "ap"), ("mBAcc", "bacc"), ("mF1", "f1"))
        )
        per_label = metrics["multilabel"]["per_label"]
        absent = [name for name in metrics["labels"] if per_label[name]["auc"] is None]
        if absent:
            figures += f"  (means over {len(per_label) - len(absent)} of {len(per_label)} labels; "
            figures += f"one class only on the validation side: {', '.join(absent)})"
        return f"{figures}" + (f"   -> {where}" if where else "")
    shown = ("acc", "bacc", "mpr", "mf1", "auc") if metrics.get("auc") is not None else ("acc", "bacc", "mpr", "mf1")
    figures = "  ".join(f"{k} {100 * metrics[k]:.1f}" for k in shown)
    classes, scored = metrics["classes"], metrics.get("scored_classes", metrics["classes"])
    if len(scored) < len(classes):  # the macro means are over the classes the data has
        absent = ", ".join(name for name in classes if name not in scored)
        figures += f"  (over {len(scored)} of {len(classes)} classes; no images of {absent})"
    return f"{figures}" + (f"   -> {where}" if where else "")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
