"""A third party's hierarchical model (``examples/third_party_plugin``: ``malignancy_tree``, its own label tree on
another backbone) is trained, gridded, evaluated, reported and refused by ``retrain`` exactly as the built-in
hierarchical model is: everything sampleweight does with it comes from its registration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampleweight.cli import app

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"
TINY = ["--backbone", "test_resnet", "--no-pretrained", "--image-size", "32", "--batch-size", "16", "--quiet"]
DATA = "synthetic:160"
runner = CliRunner()


@pytest.fixture()
def example(mount_plugin) -> None:
    mount_plugin("sampleweight-isqrt", "0.1.0", entry_points={"isqrt": "sampleweight_isqrt"}, path=EXAMPLE_PLUGIN)


def test_its_registration_says_what_it_is_and_the_run_follows(example) -> None:
    import torch

    from sampleweight.engine.components import is_hierarchical, loss_plugin, run_taxonomy
    from sampleweight.engine.config import load_config
    from sampleweight.taxonomy import ISIC2018_CLASSES

    config = load_config(model="malignancy_tree", loss="focal")
    assert is_hierarchical("malignancy_tree") and config.epochs == 30  # its registered epochs
    assert loss_plugin("malignancy_tree", "focal") == "hierarchical"  # trained per level, as the built-in one
    tree = run_taxonomy(config, ISIC2018_CLASSES)
    assert tree.children(tree.root) == ("malignant", "benign") and tree.classes == ISIC2018_CLASSES
    assert load_config(model="malignancy_tree", taxonomy=None, epochs=3).epochs == 3

    from sampleweight.engine.training import prepare_run

    run = prepare_run(load_config(model="malignancy_tree", data=DATA, backbone="test_resnet", pretrained=False,
                                  image_size=32, epochs=1, quiet=True, device="cpu"))  # fmt: skip
    assert type(run.criterion.loss).__name__ == "HierarchicalLoss" and run.criterion.loss.taxonomy == tree
    assert run.network.taxonomy == tree and torch.is_tensor(next(run.network.parameters()))


def test_it_grids_evaluates_reports_and_is_refused_by_retrain(example, tmp_path) -> None:
    grid = tmp_path / "grid"
    result = runner.invoke(app, ["grid", "--data", DATA, *TINY, "--epochs", "1", "--models", "malignancy_tree",
                                 "--losses", "ce", "--weighters", "none,isqrt", "--optimizers", "adam", "--splits", "0",
                                 "--out", str(grid)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = grid / "malignancy_tree-ce-none-adam-s0"
    assert json.loads((run / "metrics.json").read_text())["classes"]

    scored = tmp_path / "scored"
    result = runner.invoke(app, ["evaluate", str(run), "--data", DATA, "--bootstrap", "0", "--out", str(scored)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((scored / "predictions.csv").open()))
    classes = json.loads((scored / "metrics.json").read_text())["classes"]
    scores = np.array([[float(row[c]) for c in classes] for row in rows])
    from sampleweight_isqrt import MALIGNANCY_TREE

    from sampleweight.engine.inference import decide
    from sampleweight.taxonomy import Taxonomy

    greedy = decide(scores, Taxonomy(MALIGNANCY_TREE).with_classes(tuple(classes)))  # level by level, its own tree
    assert [row["pred"] for row in rows] == [classes[i] for i in greedy]

    result = runner.invoke(app, ["report", str(grid), "--out", str(tmp_path / "report"), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "malignancy_tree, adam" in (tmp_path / "report" / "report.md").read_text()

    result = runner.invoke(app, ["retrain", str(run), "--method", "crt", "--out", str(tmp_path / "crt")])
    assert result.exit_code == 2
    assert "malignancy_tree is hierarchical" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["grid", "--data", DATA, *TINY, "--epochs", "1", "--models", "malignancy_tree",
                                 "--losses", "ce", "--weighters", "none", "--optimizers", "adam", "--splits", "0",
                                 "--retrain", "crt", "--print-commands", "--out", str(grid)])  # fmt: skip
    assert result.exit_code == 0 and "no retrain commands for the 1 run(s) of a hierarchical model" in result.stderr
