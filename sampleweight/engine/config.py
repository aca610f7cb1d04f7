"""Training configuration: the paper's defaults, validated by pydantic, loadable from TOML/YAML/JSON."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from sampleweight.errors import ConfigError
from sampleweight.factory import default_lr, lookup
from sampleweight.plugins import SINGULAR, get_registry

__all__ = [
    "DEFAULT_EPOCHS",
    "EXECUTION",
    "EXECUTION_FIELDS",
    "FILE_ONLY",
    "OPTION_TABLES",
    "TrainConfig",
    "balanced_sampler",
    "complete_config",
    "default_name",
    "load_config",
    "parse_options",
    "refuse_facts",
    "task_loss",
    "upgrade_options",
    "validation_message",
]

# The paper: ADAM lr 1e-5; SGD (Nesterov momentum 0.9) lr 1e-4 (each optimizer's registration says its default
# learning rate); 150 epochs flat, 250 hierarchical (each model's registration says its epochs,
# `sampleweight.plugins.INFO_KEYS`).
DEFAULT_EPOCHS = 150
"""A run's epochs when neither it nor its model's registration names them."""


def default_name(kind: str) -> str:
    """The name a run uses when it names none of ``kind`` (``"models"``, ``"losses"``, ``"weighters"``,
    ``"samplers"``, ``"mixers"``, ``"optimizers"``): the first the built-ins mark ``default``
    (`sampleweight.plugins.Registry.defaults`).

    Example:
        >>> default_name("samplers")
        'instance'
    """
    names = get_registry().defaults(kind)
    if not names:
        raise ConfigError(f"no default {SINGULAR[kind]}: the registry has no built-ins (builtins=True loads them)")
    return names[0]


def task_loss(task: str) -> str:
    """The loss a run of ``task`` uses when it names none: the first built-in loss registered for it (the marked
    default for multiclass).

    Example:
        >>> task_loss("binary")
        'bce'
    """
    if task == "multiclass":
        return default_name("losses")
    registry = get_registry()
    names = [
        name
        for name, entry in registry.losses.items()
        if entry.plugin.builtin and task in registry.tasks("losses", name)
    ]
    if not names:
        raise ConfigError(
            f"no built-in loss serves the {task} task: the registry has no built-ins (builtins=True loads them)"
        )
    return names[0]


def balanced_sampler() -> str:
    """The built-in sampler that draws every class equally often (registered ``balanced``): what a decoupled second
    stage trains on by default (Kang et al.'s class-aware sampling).

    Example:
        >>> balanced_sampler()
        'class_balanced'
    """
    names = get_registry().builtins_marked("samplers", "balanced")
    if not names:
        raise ConfigError("no class-balanced sampler: the registry has no built-ins (builtins=True loads them)")
    return names[0]


EXECUTION = {"execution": True}
"""A field's mark (``json_schema_extra=EXECUTION``) when it says how a run executes, not what it computes
(`EXECUTION_FIELDS`)."""
FILE_ONLY = {"flag": False}
"""A field's mark (``json_schema_extra=FILE_ONLY``) when it is no flag of ``sampleweight train``/``grid``: a
config-file option."""


MAX_SEED = 2**63 - 1
"""The largest seed: what ``torch.manual_seed`` takes as it is (numpy's SeedSequence takes any integer >= 0)."""


class TrainConfig(BaseModel):
    """Everything one training run needs. Unset fields take the paper's values.

    Each field is an option of a config file (``--config``) and, unless marked `FILE_ONLY`, a flag of
    ``sampleweight train`` and ``grid``, generated from the field (``sampleweight.cli.run_options``): named
    ``--field-name`` (a boolean ``--field-name/--no-field-name``) unless ``json_schema_extra`` names it
    (``{"flag": "--quiet/--progress"}``), with the field's type and default, and its description as the help
    text. So a new run option is one field with its description. A field marked `EXECUTION` says how the
    run executes, not what it computes (`EXECUTION_FIELDS`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # lr=inf: refused

    # data
    data: str = Field(
        "synthetic",
        description="Data set folder (HAM10000, ISIC 2018 Task 3, or labels.csv + images), or synthetic[:N[:SEED]].",
    )
    split: int = Field(
        0,
        ge=0,
        description="Lesion-grouped 80/20 split: 0 and 1 are the paper's two; any k >= 0 is another independent draw.",
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the split, the initialisation and the data order.")
    val_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the images (whole lesions) on the validation side.",
        json_schema_extra=FILE_ONLY,
    )
    task: Literal["multiclass", "binary", "multilabel"] = Field(
        "multiclass",
        description="multiclass (softmax over the classes), binary (--positive against the rest, one sigmoid "
        "logit) or multilabel (one sigmoid logit per label: a labels.csv's columns, or the label tree's nodes for a "
        "single-label data set).",
    )
    positive: list[str] | None = Field(
        None,
        description="The class(es) a binary task counts as positive, e.g. MEL or MEL,BCC (default: the second class "
        "of a two-class data set).",
        json_schema_extra={"flag": "--positive"},
    )
    threshold_specificity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="A binary task's decision threshold (a multilabel task's, per label): the most sensitive one "
        "with this specificity on the validation side (default: Youden's J).",
    )
    image_size: int = Field(299, ge=16, le=2048, description="Side of the square input images, in pixels.")
    cache_dir: Path | None = Field(
        None,
        description="Image cache folder (default $SAMPLEWEIGHT_CACHE_DIR or ~/.cache/sampleweight).",
        json_schema_extra=EXECUTION,
    )
    skip_bad: bool = Field(
        False,
        description="Leave out (and report) unreadable images and bad rows instead of stopping.",
        json_schema_extra={"flag": "--skip-bad"},
    )
    workers: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Data-loader worker processes (default 0 on CPU, up to 8 on CUDA).",
        json_schema_extra=EXECUTION,
    )
    # model
    model: str = Field(
        default_factory=lambda: default_name("models"),
        description="A registered model (`sampleweight plugins` lists them) or any timm model.",
    )
    backbone: str | None = Field(
        None, description="timm backbone of a registered model (default: the model's, vgg16; any features_only model)."
    )
    pretrained: bool = Field(True, description="Start from ImageNet-pretrained weights (timm's).")
    pretrained_path: Path | None = Field(
        None, description="A local file of pretrained backbone weights instead of a download (offline clusters)."
    )
    drop_rate: float = Field(0.5, ge=0, lt=1, description="Dropout before the classifier.", json_schema_extra=FILE_ONLY)
    taxonomy: dict[str, Any] | None = Field(
        None,
        description="Label tree of the hierarchical model/loss (default ISIC 2018), as Taxonomy.to_config().",
        json_schema_extra=FILE_ONLY,
    )
    # loss and weighting
    loss: str = Field(
        default_factory=lambda: default_name("losses"),
        description="ce, focal, ... or a plugin's loss (a hierarchical model's ce/focal: at every level).",
    )
    loss_options: dict[str, Any] = Field(
        default_factory=dict,
        description="An option of the loss as KEY=VALUE (repeatable; the value is read as YAML), "
        "e.g. --loss-option tau=1.0.",
        json_schema_extra={"flag": "--loss-option"},
    )
    weighters: list[str] = Field(
        default_factory=lambda: [default_name("weighters")],
        min_length=1,
        description="none, cb, es, spl, ohem, class_ohem, drw, ... or a plugin's. "
        "Repeat (or join with +): weights multiply.",
        json_schema_extra={"flag": "--weighter"},
    )
    weighter_options: dict[str, Any] = Field(
        default_factory=dict,
        description="An option of the weighter(s) as KEY=VALUE, or scoped to one weighter as NAME.KEY=VALUE "
        "(repeatable), e.g. --weighter-option es.normalize=classes.",
        json_schema_extra={"flag": "--weighter-option"},
    )
    # sampling
    sampler: str = Field(
        default_factory=lambda: default_name("samplers"),
        description="Which images an epoch draws: instance (a shuffled pass), class_balanced, sqrt, progressive, "
        "repeat_factor, drs or a plugin's.",
    )
    sampler_options: dict[str, Any] = Field(
        default_factory=dict,
        description="An option of the sampler as KEY=VALUE (repeatable), e.g. --sampler-option threshold=0.1.",
        json_schema_extra={"flag": "--sampler-option"},
    )
    # mixing
    mixer: str = Field(
        default_factory=lambda: default_name("mixers"),
        description="How training batches are mixed: none, mixup, cutmix, mixup_cutmix, remix or a plugin's "
        "(never at evaluation).",
    )
    mixer_options: dict[str, Any] = Field(
        default_factory=dict,
        description="An option of the mixer as KEY=VALUE (repeatable), e.g. --mixer-option alpha=0.4 or "
        "off_epoch=100 (no mixing from that 0-based epoch on).",
        json_schema_extra={"flag": "--mixer-option"},
    )
    # optimisation
    optimizer: str = Field(
        default_factory=lambda: default_name("optimizers"),
        description="adam, sgd (with Nesterov momentum), sam, imbsam or a plugin's.",
    )
    optimizer_options: dict[str, Any] = Field(
        default_factory=dict,
        description="An option of the optimizer as KEY=VALUE (repeatable), e.g. --optimizer-option rho=0.1.",
        json_schema_extra={"flag": "--optimizer-option"},
    )
    lr: float | None = Field(
        None, gt=0, description="Learning rate (default: the optimizer's; the paper's adam 1e-5, sgd 1e-4)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD's Nesterov momentum.", json_schema_extra=FILE_ONLY)
    weight_decay: float = Field(0.0, ge=0, description="The optimizer's weight decay.", json_schema_extra=FILE_ONLY)
    lr_milestones: tuple[float, ...] = Field(
        (0.5, 0.75),
        description="Fractions of training at which the learning rate is multiplied by lr_decay.",
        json_schema_extra=FILE_ONLY,
    )
    lr_decay: float = Field(
        0.1, gt=0, le=1, description="The learning rate's factor at each milestone.", json_schema_extra=FILE_ONLY
    )
    epochs: int | None = Field(
        None, ge=1, description="Training epochs (default: the model's, 150 flat, 250 hierarchical)."
    )
    batch_size: int = Field(
        20, ge=1, description="Batch size M; under torchrun the global batch, shared by the processes."
    )
    # execution
    device: str | None = Field(
        None, description="cuda, cuda:N or cpu (default cuda when available).", json_schema_extra=EXECUTION
    )
    precision: Literal["fp32", "bf16"] | None = Field(
        None, description="bf16 or fp32 (default bf16 on CUDA, fp32 on CPU).", json_schema_extra=EXECUTION
    )
    channels_last: bool | None = Field(
        None,
        description="Channels-last memory format (default on, for CUDA and the CPU: faster convolutions).",
        json_schema_extra=EXECUTION,
    )
    compile: bool = Field(False, description="torch.compile the model.", json_schema_extra=EXECUTION)
    out: Path | None = Field(
        None, description="Run directory: config, metrics, checkpoint, predictions.", json_schema_extra=EXECUTION
    )
    overwrite: bool = Field(
        False,
        description="Start over in an --out that already holds a run.",
        json_schema_extra={**EXECUTION, "flag": "--overwrite"},
    )
    quiet: bool = Field(
        False,
        description="One line per epoch instead of progress bars.",
        json_schema_extra={**EXECUTION, "flag": "--quiet/--progress"},
    )
    tensorboard: bool = Field(
        False,
        description="Also write the per-epoch scalars to tensorboard/ in the run directory (needs tensorboard).",
        json_schema_extra={**EXECUTION, "flag": "--tensorboard"},
    )
    bootstrap: int = Field(
        2000,
        ge=0,
        description="Resamples of the 95 % bootstrap intervals in metrics.json (0: no intervals).",
        json_schema_extra=EXECUTION,
    )

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, values: Any) -> Any:
        return upgrade_options(values) if isinstance(values, dict) else values

    @field_validator("data", "out", "cache_dir", "pretrained_path", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        """An empty path is refused: it would be the current folder, written into or scanned unasked."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path; give a folder or file (. for the current folder)")
        return value

    @field_validator("positive")
    @classmethod
    def _split_commas(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [part.strip() for item in value for part in item.split(",")]
        if any(not name for name in names):
            raise ValueError("empty class name")
        return names

    @field_validator("weighters")
    @classmethod
    def _split_plus(cls, value: list[str]) -> list[str]:
        names = [part.strip() for item in value for part in item.split("+")]
        if any(not name for name in names):
            raise ValueError("empty weighter name")
        return names

    @field_validator("weighter_options", mode="before")
    @classmethod
    def _scoped_tables(cls, value: Any) -> Any:
        """A table under ``weighter_options`` holds one weighter's options: ``{es: {normalize: classes}}``
        (TOML ``[weighter_options.es]``) is read as ``{"es.normalize": "classes"}``."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}
        for key, option in value.items():
            if isinstance(option, dict) and "." not in str(key):
                flat.update({f"{key}.{inner}": inner_value for inner, inner_value in option.items()})
            else:
                flat[key] = option
        return flat

    @field_validator("optimizer")
    @classmethod
    def _registered_optimizer(cls, value: str) -> str:
        """A registered optimizer (the valid ones are listed)."""
        lookup(None, "optimizers", value)
        return value

    @field_validator("lr_milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value) or list(value) != sorted(value):
            raise ValueError("milestones must be increasing fractions of training in (0, 1)")
        return value

    @model_validator(mode="after")
    def _finite_options(self) -> TrainConfig:
        for table in OPTION_TABLES:
            for key, value in _numbers(getattr(self, table)):
                if not math.isfinite(value):
                    raise ValueError(f"{table}.{key} must be a finite number, got {value}")
        return self

    @model_validator(mode="after")
    def _task_options(self) -> TrainConfig:
        if self.task != "binary" and self.positive:
            raise ValueError("--positive applies to --task binary (the classes counted as positive)")
        if self.task == "multiclass" and self.threshold_specificity is not None:
            raise ValueError("--threshold-specificity applies to --task binary and --task multilabel")
        if self.task != "multiclass" and "loss" not in self.model_fields_set:
            object.__setattr__(self, "loss", task_loss(self.task))
        return self

    @model_validator(mode="after")
    def _paper_defaults(self) -> TrainConfig:
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.optimizer, self.optimizer_options))
        if self.epochs is None:
            object.__setattr__(self, "epochs", get_registry().info("models", self.model).get("epochs", DEFAULT_EPOCHS))
        return self

    @property
    def weighter_spec(self) -> str:
        """The weighters joined with ``+`` (``"ohem+es"``)."""
        return "+".join(self.weighters)

    @property
    def run_name(self) -> str:
        """A readable name: model-loss-weighting-optimizer-sN, then -SAMPLER and -MIXER unless they are the
        defaults, then ``-seedK`` for a seed other than 0."""
        sampler = "" if self.sampler == default_name("samplers") else f"-{self.sampler}"
        mixer = "" if self.mixer == default_name("mixers") else f"-{self.mixer}"
        seed = f"-seed{self.seed}" if self.seed else ""
        task = (
            ""
            if self.task == "multiclass"
            else f"-{self.task}" + ("-" + "+".join(self.positive or ()) if self.positive else "")
        )
        return (
            f"{self.model}-{self.loss}-{self.weighter_spec}-{self.optimizer}-s{self.split}{sampler}{mixer}{seed}{task}"
        )


def _marks(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


EXECUTION_FIELDS = frozenset(name for name, field in TrainConfig.model_fields.items() if _marks(field).get("execution"))
"""The fields marked `EXECUTION`: how a run executes, not what it computes. They may change when a run is resumed,
and runs that differ only in them are the same setup."""

OPTION_TABLES = ("loss_options", "weighter_options", "sampler_options", "mixer_options", "optimizer_options")
"""Fields holding a plugin's options: flags update them key by key instead of replacing the file's table."""


def upgrade_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Options as an older version wrote them (a ``config.json``, a config file), in today's keys.

    ``gamma`` was a field of its own until it became what it is, an option of the loss: a ``gamma`` that is
    set moves into ``loss_options`` (``{"gamma": 2.0}`` -> ``{"loss_options": {"gamma": 2.0}}``), over a
    ``loss_options.gamma`` beside it, as the older version trained with it; ``null``, which every older
    ``config.json`` holds, is dropped. So a run written by an older version loads, resumes and shares a setup
    with a new run of the same options.

    Example:
        >>> upgrade_options({"loss": "focal", "gamma": 2.0, "loss_options": {}})
        {'loss': 'focal', 'loss_options': {'gamma': 2.0}}
    """
    upgraded = dict(values)
    gamma = upgraded.pop("gamma", None)
    if gamma is None:
        return upgraded
    options = upgraded.get("loss_options")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        return upgraded  # the loss_options field reports its own type error
    upgraded["loss_options"] = {**options, "gamma": gamma}
    return upgraded


def _numbers(value: Any, key: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a nested option table, with its dotted key."""
    if isinstance(value, float):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _numbers(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{key}[{i}]")


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A `TrainConfig` from a TOML, YAML or JSON file (optional) with ``overrides`` on top.

    Args:
        path: The file; its suffix picks the format (``.toml``, ``.yaml``/``.yml``, ``.json``).
        **overrides: Values that replace the file's (e.g. command-line flags); None values are ignored.
            An option table (`OPTION_TABLES`, e.g. ``loss_options``) is updated key by key: the file's
            other keys stay.

    Raises:
        ConfigError: The file is missing or unreadable, or a value is invalid (the field and the
            reason are named).
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read(Path(path))
    for key, value in overrides.items():
        if value is None:
            continue
        if key in OPTION_TABLES and isinstance(value, dict) and isinstance(values.get(key), dict):
            value = {**values[key], **value}
        values[key] = value
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source=str(path) if path else None)) from None


def complete_config(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved ``config.json`` as this version writes it: the options an older version did not know take
    their defaults.

    A run written before an option existed (``sampler``, ``sampler_options``, ``bootstrap``, ...) lacks its key;
    compared key by key with a new run's config it would read as ``None`` and differ. The saved options are
    validated as a `TrainConfig` and dumped again (derived defaults such as ``lr`` included); where they no
    longer validate, the missing keys take the fields' plain defaults. Keys that are not options (a retrained
    run's ``retrain`` table) are kept as they are.

    Args:
        saved: The parsed ``config.json``.

    Returns:
        Every `TrainConfig` field (JSON values), then the other keys of ``saved``.

    Example:
        >>> complete_config({"model": "resnet18", "optimizer": "sgd"})["sampler"]
        'instance'
    """
    saved = upgrade_options(saved)  # an older version's keys as today's (gamma: a loss option)
    known = {key: value for key, value in saved.items() if key in TrainConfig.model_fields}
    try:
        filled = TrainConfig.model_validate(known).model_dump(mode="json")
    except ValidationError:
        filled = {**TrainConfig.model_construct().model_dump(mode="json"), **known}
    return {**filled, **{key: value for key, value in saved.items() if key not in known}}


def refuse_facts(kind: str, options: Mapping[str, Any], facts: Sequence[str]) -> None:
    """Refuse a plugin option that names one of the facts a run hands its factory (``kind``: ``"sampler"``, ...).

    Raises:
        ConfigError: ``--KIND-option`` gave a fact, which comes from the run (its data, --epochs, ...).

    Example:
        >>> try:
        ...     refuse_facts("mixer", {"seed": 3, "alpha": 0.4}, ("seed", "num_classes"))
        ... except ConfigError as error:
        ...     print(str(error).split(":")[0])
        --mixer-option seed
    """
    taken = sorted(set(options) & set(facts))
    if taken:
        raise ConfigError(
            f"--{kind}-option {taken[0]}: {', '.join(taken)} comes from the run (its data, --epochs, --batch-size, "
            f"--seed), not from {kind} options; drop it"
        )


def parse_options(pairs: Sequence[str] | None, flag: str) -> dict[str, Any] | None:
    """``KEY=VALUE`` strings (a repeatable command-line flag) as a dict of typed values.

    Each value is read as a YAML scalar or list: ``3`` is an int, ``0.5`` and ``1e-3`` floats, ``true`` a bool,
    ``null`` None, ``[1, 2]`` a list; anything else stays a string. A later pair overrides an earlier one.

    Args:
        pairs: The flag's values, e.g. ``["tau=1.0", "s=30"]``; None or empty when the flag was not given.
        flag: The flag's name, for the error message (``--loss-option``).

    Returns:
        The options, or None when there are none (so that a config file's table stays as it is).

    Raises:
        ConfigError: A pair without ``=`` or with an empty key, or a value that does not parse.

    Example:
        >>> parse_options(["tau=1", "base=ce", "scale=1e-3"], "--loss-option")
        {'tau': 1, 'base': 'ce', 'scale': 0.001}
    """
    if not pairs:
        return None
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"malformed {flag} {pair!r}: expected KEY=VALUE, e.g. {flag} tau=1.0")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"malformed {flag} {pair!r}: the value {text!r} does not parse") from None
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        options[key] = value
    return options


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def validation_message(exc: ValidationError, source: str | None = None) -> str:
    """One line per invalid field: ``field: reason (got value)``."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "config"
        value = f" (got {error['input']!r})" if error["type"] != "missing" and "input" in error else ""
        if not error["loc"] and error["type"] == "value_error":  # a check across fields: its own words say it all
            lines.append(str(error.get("ctx", {}).get("error", error["msg"])))
        elif error["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown option; valid options: {', '.join(TrainConfig.model_fields)}")
        else:
            lines.append(f"{field}: {error['msg']}{value}")
    where = f" in {source}" if source else ""
    return f"invalid configuration{where}: " + "; ".join(lines)


def _one_line(error: Exception) -> str:
    """A parser's error as one line: YAML's problem and where (its message spans lines, quoting the file)."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:  # yaml.MarkedYAMLError
        context = getattr(error, "context", None)
        return f"{context + ': ' if context else ''}{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


def _read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"--config {path} is a folder; expected a TOML, YAML or JSON file of options")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's
        raise ConfigError(f"cannot parse config file {path}: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of options, got {type(data).__name__}")
    return data
