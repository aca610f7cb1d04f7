"""The command line skeleton: --help, --version, plugins (table and JSON), exit code 2 on user errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app

runner = CliRunner()
EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "plugins" in result.output


def test_the_command_line_and_the_config_model_load_without_the_data_stack() -> None:
    # the options of train and grid are built from TrainConfig when the CLI module loads: that must not
    # pull in what one run needs (scikit-learn, the training loop), which every command would then wait for
    script = (
        "import sys, sampleweight.cli, sampleweight.engine.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('sklearn', 'sampleweight.engine.training'))))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    from sampleweight.engine import evaluate, train  # still there, when asked for

    assert callable(train) and callable(evaluate)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sampleweight {sw.__version__}"


def test_plugins_json_lists_builtins_with_plain_string_names() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    infos = {p["name"]: p for p in json.loads(result.output)}
    assert infos["weighters"]["weighters"] == ["none", "cb", "es", "spl", "ohem", "class_spl", "class_ohem", "drw"]
    assert infos["losses"]["distribution"] == "sampleweight" and infos["losses"]["error"] is None
    samplers = ["instance", "class_balanced", "sqrt", "progressive", "repeat_factor", "drs"]
    assert infos["samplers"]["samplers"] == samplers and infos["samplers"]["distribution"] == "sampleweight"


def test_plugins_table(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "none — All weights 1." in result.output and "ce — Softmax cross-entropy per sample" in result.output
    assert "samplers:" in result.output and "class_balanced — Class-balanced sampling" in result.output
    summaries = {
        info["name"]: info["summaries"] for info in json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    }
    assert summaries["models"]["models"]["hierarchical_vgg16"].startswith("the paper's hierarchical model")


def test_plugins_command_shows_a_mounted_third_party_plugin_and_a_broken_one(mount_plugin, tmp_path) -> None:
    site = mount_plugin("sampleweight-isqrt", "0.1.0", entry_points={"isqrt": "sampleweight_isqrt"})
    broken = mount_plugin(
        "sw-test-broken",
        entry_points={"broken": "sw_test_broken"},
        modules={"sw_test_broken": "raise RuntimeError('cannot start')\n"},
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(broken), str(EXAMPLE_PLUGIN)]), "COLUMNS": "250"}
    out = subprocess.run(
        [sys.executable, "-m", "sampleweight", "plugins", "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    assert infos["isqrt"]["weighters"] == ["isqrt"] and infos["isqrt"]["version"] == "0.1.0"
    assert infos["broken"]["error"].startswith("RuntimeError: cannot start")
    table = subprocess.run([sys.executable, "-m", "sampleweight", "plugins"], env=env, capture_output=True, text=True)
    assert table.returncode == 0 and "isqrt" in table.stdout and "failed [1]" in table.stdout
    assert "[1] broken (sw-test-broken 1.0): RuntimeError: cannot start" in table.stdout


def test_user_error_exits_2_with_one_line() -> None:
    from sampleweight.cli import user_errors

    @user_errors
    def fails() -> None:
        raise sw.ConfigError("unknown weighter 'x'; choose one of: cb, es")

    import typer

    probe = typer.Typer()
    probe.command()(fails)
    result = runner.invoke(probe, [])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: unknown weighter 'x'; choose one of: cb, es"]
    assert "Traceback" not in result.output


def _help(command: str) -> str:
    """``command --help`` as one line of words, the table's borders gone (a wrapped help text reads whole)."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


@pytest.mark.parametrize("command", ["train", "grid"])
def test_help_lists_every_run_option_with_its_fields_description(command: str) -> None:
    from sampleweight.cli import GRID_OWN
    from sampleweight.engine.config import TrainConfig

    text = _help(command)
    shown = 0
    for name, field in TrainConfig.model_fields.items():
        declared = (field.json_schema_extra or {}).get("flag")  # type: ignore[union-attr]
        dashed = name.replace("_", "-")
        boolean = bool in (field.annotation, *typing.get_args(field.annotation))
        flag = (f"--{dashed}/--no-{dashed}" if boolean else f"--{dashed}") if declared is None else declared
        if declared is False or (command == "grid" and name in GRID_OWN):
            assert field.description not in text, f"{command} --help shows {name}, which is no option of it"
            continue
        primary, _, secondary = str(flag).partition("/")
        row = re.escape(primary) + (rf" {re.escape(secondary)}" if secondary else "") + r" <[^>]+> "
        assert re.search(row + re.escape(field.description), text), f"{command} --help: {flag} without its description"
        shown += 1
    assert shown >= (30 if command == "train" else 21)


def test_generated_options_give_what_the_command_line_says_and_none_for_the_rest() -> None:
    import typer

    from sampleweight.cli import run_options

    received = {}

    @run_options(exclude=("out",))
    def probe(extra: int = typer.Option(0, "--extra"), **options) -> None:
        received.update(options, extra=extra)

    command = typer.Typer()
    command.command()(probe)
    flags = ["--batch-size", "20", "--weighter", "es", "--weighter", "ohem", "--no-pretrained", "--loss-option",
             "tau=1.5", "--quiet", "--extra", "3", "--lr", "1e-3"]  # fmt: skip
    result = runner.invoke(command, flags)
    assert result.exit_code == 0, result.output
    given = {key: value for key, value in received.items() if value is not None}
    assert given == {"batch_size": 20, "weighters": ["es", "ohem"], "pretrained": False, "loss_options": {"tau": 1.5},
                     "quiet": True, "lr": 1e-3, "extra": 3}  # fmt: skip  # 20 is the default, but it was given
    assert "out" not in received and "momentum" not in received  # excluded; a config-file option
    assert runner.invoke(command, ["--out", "x"]).exit_code == 2


@pytest.mark.parametrize("command", ["train", "grid"])
def test_a_config_files_values_stay_unless_a_flag_is_given_even_one_equal_to_the_default(
    command: str, tmp_path, monkeypatch
) -> None:
    from sampleweight.engine import training
    from sampleweight.studies import grid

    seen = []
    monkeypatch.setattr(training, "train", lambda settings, resume: seen.append(settings) or {})
    monkeypatch.setattr(grid, "run_grid", lambda planned, **kwargs: seen.extend(r.config for r in planned.runs) or [])
    monkeypatch.setattr(sw.cli, "_metrics_line", lambda *args: "")
    path = tmp_path / "options.toml"
    path.write_text("batch_size = 8\nimage_size = 64\npretrained = false\n")
    axes = ["--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none", "--optimizers", "adam", "--splits", "0"]
    args = [command, "--config", str(path), *(axes if command == "grid" else []), "--out", str(tmp_path / "out")]
    assert runner.invoke(app, [*args, "--batch-size", "20"]).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    given, file_only = seen
    assert (given.batch_size, given.image_size, given.pretrained) == (20, 64, False)
    assert (file_only.batch_size, file_only.image_size, file_only.pretrained) == (8, 64, False)


def test_a_run_options_constraint_is_the_fields_one_line_error() -> None:
    result = runner.invoke(app, ["train", "--bootstrap", "-1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: invalid configuration: bootstrap: Input should be greater than or equal to 0 (got -1)"
    ]


def test_loss_options_on_the_command_line_reach_the_run_config(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "synthetic:80", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "16", "--epochs", "1", "--quiet", "--loss", "focal", "--loss-option", "gamma=2",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["loss_options"] == {"gamma": 2}


def test_gamma_is_short_for_the_loss_option_and_a_contradicting_one_exits_2_naming_both(tmp_path) -> None:
    from sampleweight.cli import with_gamma

    assert with_gamma({"tau": 1}, 2.0) == {"tau": 1, "gamma": 2.0} and with_gamma(None, None) is None
    assert with_gamma({"gamma": 2}, 2.0) == {"gamma": 2.0}  # the same value twice is no contradiction
    result = runner.invoke(app, ["train", "--loss", "focal", "--gamma", "1", "--loss-option", "gamma=3"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --gamma 1 and --loss-option gamma=3 contradict each other: give one of them"
    ]


def test_a_malformed_loss_option_exits_2_naming_the_flag() -> None:
    result = runner.invoke(app, ["train", "--loss", "focal", "--loss-option", "gamma"])
    assert result.exit_code == 2
    assert "malformed --loss-option 'gamma': expected KEY=VALUE" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("flags", "message", "choice"),
    [
        (["--weighter", "no_such_weighter"], "unknown weighter 'no_such_weighter'; choose one of: ", "class_ohem"),
        (["--weighter", "ohem", "--weighter", "nope"], "unknown weighter 'nope'", "ohem"),
        (["--loss", "nope"], "unknown loss 'nope'; choose one of: ", "focal"),
        (["--loss-option", "nope=1"], "loss 'ce' does not accept option(s) nope; its options are: ", "label_smoothing"),
        (["--gamma", "2"], "loss 'ce' does not accept option(s) gamma; its options are: label_smoothing; ", "focal"),
        (["--model", "hierarchical_vgg16", "--gamma", "2"], "loss 'ce' does not accept option(s) gamma", "focal"),
        (["--model", "no_such_model"], "unknown model 'no_such_model'; sampleweight's models: ", "hierarchical_vgg16"),
        (["--backbone", "vgg61"], "unknown timm backbone 'vgg61'; did you mean ", "vgg16"),
        (["--optimizer", "adamw"], "unknown optimizer 'adamw'; choose one of: ", "imbsam, sam, sgd"),
        (["--loss", "focal", "--loss-option", "gamma=abc"], "loss 'focal': option gamma must be float", "'abc'"),
        (["--weighter", "es", "--weighter-option", "es.beta=abc"], "weighter 'es': option beta must be", "'abc'"),
        (["--sampler", "sqrt", "--sampler-option", "skip_empty=maybe"], "option skip_empty must be bool", "'maybe'"),
        (["--sampler", "sqrt", "--sampler-option", "skip_empty=2"], "option skip_empty must be bool", "got 2"),
        (
            ["--config", "WEIGHTER_OPTIONS", "--weighter", "ohem"],
            "weighter 'ohem' does not accept option(s) tau",
            "pace",
        ),
    ],
)
def test_a_wrong_name_or_option_is_the_first_error(flags, message, choice, tmp_path, monkeypatch) -> None:
    import timm

    from sampleweight.engine import training

    def must_not_run(*args, **kwargs):
        raise AssertionError("data read or a model built before the options were checked")

    monkeypatch.setattr(training, "load_split", must_not_run)
    monkeypatch.setattr(training, "build_model", must_not_run)
    monkeypatch.setattr(timm, "create_model", must_not_run)
    config = tmp_path / "options.toml"
    config.write_text("[weighter_options]\ntau = 1.0\n")
    flags = [str(config) if flag == "WEIGHTER_OPTIONS" else flag for flag in flags]
    result = runner.invoke(app, ["train", "--data", "synthetic", "--out", str(tmp_path / "run"), *flags])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and choice in text.split(message, 1)[1]  # the valid choices follow


def test_pretrained_weights_that_cannot_be_had_fail_at_once_with_the_offline_message(tmp_path) -> None:
    import socket

    with socket.socket() as probe:  # a local port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies and not k.startswith("HF_")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"))
    args = [
        "train",
        "--data",
        "synthetic:40",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
    ]  # fmt: skip  (the default: cbam_vgg16 with VGG16's ImageNet weights)
    result = subprocess.run([sys.executable, "-m", "sampleweight", *args], env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "could not download the pretrained weights of backbone 'vgg16'" in message
    assert f"cannot reach 127.0.0.1:{port}" in message and "Retrying" not in message and "Traceback" not in message
