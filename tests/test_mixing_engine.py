"""Mixing in the engine: train --mixer, resume bit-identical on the CPU, never at evaluation, off_epoch, grid axis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight import plugins
from sampleweight.cli import app
from sampleweight.engine.config import TrainConfig, complete_config
from sampleweight.engine.rundir import RunDirectory
from sampleweight.engine.training import train
from sampleweight.studies.grid import plan_grid

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet"]  # fmt: skip


def tiny_config(out: Path | None, **overrides) -> dict:
    config = dict(
        data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=2,
        lr=1e-3, quiet=True, out=out,
    )  # fmt: skip
    return {**config, **overrides}


@pytest.mark.parametrize(("mixer", "weighters"), [("mixup", ["ohem"]), ("remix", ["class_ohem", "cb"])])
def test_a_run_resumed_mid_run_with_mixing_equals_an_uninterrupted_one(
    tmp_path, monkeypatch, interrupt_after_epoch, mixer: str, weighters: list[str]
) -> None:
    options = {"epochs": 3, "weighters": weighters, "mixer": mixer}
    whole = train(tiny_config(tmp_path / "whole", **options))
    interrupt_after_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "parts", **options))
    monkeypatch.undo()
    resumed = train(tiny_config(tmp_path / "parts", **options), resume=True)
    assert resumed == whole
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    lines = RunDirectory(tmp_path / "parts").epochs()
    assert [line["train_loss"] for line in lines] == [
        line["train_loss"] for line in RunDirectory(tmp_path / "whole").epochs()
    ]
    plain = train(tiny_config(tmp_path / "plain", epochs=1, weighters=weighters))
    assert RunDirectory(tmp_path / "plain").epochs()[0]["train_loss"] != lines[0]["train_loss"]  # it did mix
    assert plain["run"] + f"-{mixer}" == whole["run"]


SEEN: list[tuple[int, int, int, int]] = []  # (epoch, step, rank, batch size) of every batch the spy mixed


class Spy(sw.BaseMixer):
    """Mixup-like: pairs each sample with the batch reversed, half and half; records every batch it mixes."""

    def mix(self, images, targets, seed):
        one_hot = torch.nn.functional.one_hot(targets, self.num_classes).to(images.dtype)
        return 0.5 * (images + images.flip(0)), 0.5 * (one_hot + one_hot.flip(0))

    def __call__(self, images, targets, *, epoch, step, rank=None):
        SEEN.append((epoch, step, rank, len(targets)))
        return super().__call__(images, targets, epoch=epoch, step=step, rank=rank)


class SpyPlugin:
    @sw.hookimpl
    def register_mixers(self, register) -> None:
        register("spy", lambda num_classes, seed, off_epoch=None: Spy(num_classes, seed=seed, off_epoch=off_epoch))


@pytest.fixture
def spy_registry():
    previous = plugins.set_registry(plugins.load_plugins(modules=[("spy", SpyPlugin())]))
    SEEN.clear()
    yield
    plugins.set_registry(previous)


def test_mixing_runs_on_every_training_step_and_never_at_evaluation(tmp_path, spy_registry) -> None:
    train(tiny_config(tmp_path / "run", epochs=2, mixer="spy"))
    steps = len(RunDirectory(tmp_path / "run").epochs())
    drawn = [sum(line["drawn"].values()) for line in RunDirectory(tmp_path / "run").epochs()]
    assert steps == 2 and [sum(n for e, _, _, n in SEEN if e == epoch) for epoch in (0, 1)] == drawn
    assert {rank for _, _, rank, _ in SEEN} == {0}
    assert [step for epoch, step, _, _ in SEEN if epoch == 0] == list(range(len(SEEN) // 2))


def test_off_epoch_trains_the_last_epochs_on_the_images_as_they_are(tmp_path, spy_registry) -> None:
    train(tiny_config(tmp_path / "off", epochs=3, mixer="spy", mixer_options={"off_epoch": 1}))
    train(tiny_config(tmp_path / "plain", epochs=3))
    off, plain = (RunDirectory(tmp_path / name).epochs() for name in ("off", "plain"))
    assert off[0]["train_loss"] != plain[0]["train_loss"]  # mixed in epoch 0 only; then trained as without mixing
    assert json.loads((tmp_path / "off" / "config.json").read_text())["mixer_options"] == {"off_epoch": 1}


def test_the_run_name_and_config_carry_the_mixer_only_when_it_is_not_none() -> None:
    assert TrainConfig().mixer == "none" and TrainConfig().mixer_options == {}
    assert TrainConfig(model="resnet18").run_name == "resnet18-ce-none-adam-s0"
    named = TrainConfig(model="resnet18", sampler="class_balanced", mixer="remix", seed=2).run_name
    assert named == "resnet18-ce-none-adam-s0-class_balanced-remix-seed2"
    older = complete_config({"model": "resnet18", "optimizer": "sgd"})  # a config.json written before mixers
    assert older["mixer"] == "none" and older["mixer_options"] == {}


def test_a_config_file_names_the_mixer_and_flags_update_its_options_key_by_key(tmp_path) -> None:
    from sampleweight.engine.config import load_config

    path = tmp_path / "run.toml"
    path.write_text('mixer = "remix"\n[mixer_options]\nkappa = 2.0\ntau = 0.4\n')
    config = load_config(path, mixer_options={"tau": 0.3})
    assert config.mixer == "remix" and config.mixer_options == {"kappa": 2.0, "tau": 0.3}
    assert config.run_name.endswith("-remix")


def test_cli_train_takes_a_mixer_and_its_options(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--mixer", "remix", "--mixer-option", "kappa=2",
                                 "--mixer-option", "off_epoch=5", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["mixer"] == "remix" and config["mixer_options"] == {"kappa": 2, "off_epoch": 5}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mixer", "mixpu"], "unknown mixer 'mixpu'"),
        (["--mixer", "mixup", "--mixer-option", "kappa=2"], "does not accept option(s) kappa"),
        (["--mixer", "mixup", "--mixer-option", "seed=2"], "--mixer-option seed: seed comes from the run"),
        (["--mixer", "mixup", "--mixer-option", "alpha=abc"], "option alpha must be float"),
    ],
)
def test_bad_mixer_input_exits_2_with_one_line_before_reading_data(tmp_path, flags, message) -> None:
    result = runner.invoke(app, ["train", *TINY, *flags, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_the_mixer_axis_of_a_grid_gives_each_run_the_options_its_mixer_takes(tmp_path) -> None:
    grid = plan_grid(tmp_path / "g", models="resnet18", losses="ce", weighters="none", mixers="none,mixup,remix",
                     optimizers="adam", splits="0", options={"mixer_options": {"alpha": 0.4, "kappa": 2}})  # fmt: skip
    assert [run.name for run in grid.runs] == ["resnet18-ce-none-adam-s0", "resnet18-ce-none-adam-s0-mixup",
                                               "resnet18-ce-none-adam-s0-remix"]  # fmt: skip
    assert [run.config.mixer_options for run in grid.runs] == [{}, {"alpha": 0.4}, {"alpha": 0.4, "kappa": 2}]
    arguments = grid.train_arguments(grid.runs[2])
    assert "--mixer" not in grid.train_arguments(grid.runs[0])
    assert arguments[arguments.index("--mixer") + 1] == "remix" and "kappa=2" in arguments
    plain = plan_grid(tmp_path / "d", models="resnet18", losses="ce", weighters="none", optimizers="adam", splits="0")
    assert [run.name for run in plain.runs] == ["resnet18-ce-none-adam-s0"]  # the default axis: none
    with pytest.raises(sw.ConfigError, match="--mixer-option tau: no mixer of the grid"):
        plan_grid(tmp_path / "e", models="resnet18", losses="ce", weighters="none", mixers="none,mixup",
                  optimizers="adam", splits="0", options={"mixer_options": {"tau": 0.3}})  # fmt: skip
