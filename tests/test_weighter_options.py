"""Weighter options, scoped to one weighter (``es.normalize``), from Python, config files and the command line;
and the weight scale that `train` logs."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app
from sampleweight.engine.config import load_config
from sampleweight.engine.training import weight_scale_lines
from sampleweight.weighting import WeightingBatch, class_mix_weights

runner = CliRunner()
COUNTS = torch.tensor([890, 5360, 411, 262, 879, 92, 114])  # HAM10000-like: CB's mean weight per sample is 7
FACTS = {"class_counts": COUNTS, "num_epochs": 10, "batch_size": 8}
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--epochs", "1", "--quiet"]  # fmt: skip


def batch() -> WeightingBatch:
    return WeightingBatch(torch.arange(8.0), torch.tensor([0, 1, 1, 2, 3, 4, 5, 6]), epoch=0)


def test_a_scoped_option_reaches_only_its_component_of_a_composition() -> None:
    scoped = sw.create_weighter("ohem+es", **FACTS, **{"es.normalize": "classes"})
    ohem = sw.create_weighter("ohem", **FACTS)(batch())
    es_classes = sw.create_weighter("es", class_counts=COUNTS, normalize="classes")(batch())
    torch.testing.assert_close(scoped(batch()), ohem * es_classes)
    assert scoped.components[1].normalize == "classes"
    # scoped beats unscoped for its weighter; a weighter absent from the weighting ignores its scoped options
    both = sw.create_weighter("es", class_counts=COUNTS, normalize="none", **{"es.normalize": "batch"})
    assert both.normalize == "batch"
    assert sw.create_weighter("ohem", **FACTS, **{"es.normalize": "classes", "cb.normalize": "batch"}).pace > 0


def test_weighted_loss_routes_scoped_options_like_create_weighter() -> None:
    logits, targets = torch.randn(8, 7), batch().targets
    expected = sw.WeightedLoss("ce", "ohem+es", **FACTS, weighter_options={"normalize": "classes"})(logits, targets)
    for options in ({"weighter_options": {"es.normalize": "classes"}}, {"es.normalize": "classes"}):
        criterion = sw.WeightedLoss("ce", ["ohem", "es"], **FACTS, **options)
        torch.testing.assert_close(criterion(logits, targets), expected)


@pytest.mark.parametrize(
    ("weighting", "options", "message"),
    [
        ("es", {"bogus.normalize": "classes"}, "weighter option 'bogus.normalize': unknown weighter 'bogus'; choose"),
        ("es", {"es.pace": 1.0}, "weighter 'es' does not accept option 'pace'; its options are: beta, normalize"),
        ("es", {"ohem.normalize": "x"}, "weighter 'ohem' does not accept option 'normalize'"),
        ("es", {".normalize": "classes"}, "malformed scoped weighter option '.normalize'"),
        ("ohem", {"normalize": "classes"}, "weighter 'ohem' does not accept option(s) normalize"),
    ],
)
def test_bad_weighter_options_are_refused_naming_the_fix(weighting: str, options: dict, message: str) -> None:
    with pytest.raises(sw.ConfigError) as error:
        sw.create_weighter(weighting, **FACTS, **options)
    assert message in str(error.value)
    with pytest.raises(sw.ConfigError, match=r"choose one of|does not accept|malformed"):
        sw.WeightedLoss("ce", weighting, **FACTS, weighter_options=options)


def test_config_files_write_a_scoped_option_as_a_dotted_key_or_a_table(tmp_path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text(
        '[weighter_options]\npace = 0.5\n"ohem.pace" = 0.1\n\n[weighter_options.es]\nnormalize = "classes"\n'
    )
    yaml = tmp_path / "a.yaml"
    yaml.write_text("weighter_options:\n  pace: 0.5\n  ohem.pace: 0.1\n  es:\n    normalize: classes\n")
    expected = {"pace": 0.5, "ohem.pace": 0.1, "es.normalize": "classes"}
    for path in (toml, yaml):
        assert load_config(path).weighter_options == expected
        # a flag updates the table key by key, a scoped key over the file's
        flagged = load_config(path, weighter_options={"es.normalize": "batch"}).weighter_options
        assert flagged == {**expected, "es.normalize": "batch"}


def test_the_weight_scale_is_logged_and_sgd_is_warned_about_a_tiny_or_huge_one() -> None:
    lines = {
        name: weight_scale_lines(sw.create_weighter(name, **FACTS), COUNTS, "sgd") for name in ("none", "cb", "es")
    }
    assert lines["none"] == []
    assert lines["cb"][0] == "weight scale: cb gives a mean weight per sample of 7 under the training class mix"
    assert "mean weight per sample of 0.000941" in lines["es"][0]
    for name in ("cb", "es"):  # 7 is inside 0.1-10, 0.00094 is not
        assert len(lines[name]) == (2 if name == "es" else 1)
    assert "warning" in lines["es"][1] and "--weighter-option es.normalize=classes" in lines["es"][1]
    assert len(weight_scale_lines(sw.create_weighter("es", **FACTS), COUNTS, "adam")) == 1  # ADAM: no warning
    twelve = torch.tensor([1000] + [10] * 11)  # CB's mean weight per sample is the number of classes: 12
    assert (
        "mean weight per sample 12 is outside 0.1-10"
        in weight_scale_lines(sw.create_weighter("cb", class_counts=twelve), twelve, "sgd")[-1]
    )
    # by hand: sum_c N_c w_c / N
    es = sw.functional.effective_number_weights(COUNTS).double()
    scales = dict(class_mix_weights(sw.create_weighter("ohem+es+drw", **FACTS), COUNTS))
    assert scales == pytest.approx({"es": float((COUNTS * es).sum() / COUNTS.sum()), "drw": 1.0})


def test_train_takes_scoped_weighter_options_and_logs_the_weight_scale(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["--weighter", "ohem+es", "--optimizer", "sgd", "--weighter-option", "cb.normalize=classes",
            "--weighter-option", "ohem.pace=0.5", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, ["train", *TINY, *args])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["weighter_options"] == {
        "cb.normalize": "classes",
        "ohem.pace": 0.5,
    }
    assert "weight scale: es gives a mean weight per sample of" in result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert len(warning) == 1 and "normalize" in warning[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weighter-option", "bogus.normalize=classes"], "unknown weighter 'bogus'"),
        (["--weighter", "es", "--weighter-option", "es.pace=1"], "weighter 'es' does not accept option 'pace'"),
        (["--weighter-option", "normalize"], "malformed --weighter-option 'normalize': expected KEY=VALUE"),
        (["--weighter", "ohem", "--weighter-option", "normalize=classes"], "does not accept option(s) normalize"),
    ],
)
def test_bad_weighter_options_on_the_command_line_exit_2_with_one_line(tmp_path, args, message) -> None:
    result = runner.invoke(app, ["train", *TINY, *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
