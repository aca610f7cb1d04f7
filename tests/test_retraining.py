"""Decoupled retraining (issue 15): tau-norm, LWS and NCM by hand; cRT leaves the backbone alone; a retrained run
directory is evaluable, reportable and resumable in a grid; bad input is one line and exit 2."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.classifier import (
    CenteredNCMClassifier,
    CosineClassifier,
    WeightScaling,
    centered_class_means,
    class_means,
    classifier_layer,
    install_head,
    pooled_features,
    replace_classifier,
    tau_normalize,
)
from sampleweight.cli import app
from sampleweight.engine.checkpoint import load_checkpoint, save_checkpoint
from sampleweight.engine.evaluation import evaluate, load_trained_model
from sampleweight.engine.folder_lock import FolderLock
from sampleweight.engine.loader import load_split
from sampleweight.engine.retraining import TAU_GRID, default_epochs, retrain
from sampleweight.engine.training import train
from sampleweight.studies.report import write_report

runner = CliRunner()
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, lr=1e-3,
            epochs=2, quiet=True, bootstrap=50)  # fmt: skip
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")  # cbam_vgg16's classifier (get_classifier() is its fc)


def error_line(output: str) -> str:
    """The one line of an error report (after any notes)."""
    assert "Traceback" not in output, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert errors and errors[0] == len(lines) - 1, output  # one line, the last
    return lines[-1]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A finished two-epoch run of the flat model (test_resnet under CBAM) on synthetic images."""
    out = tmp_path_factory.mktemp("retrain") / "run"
    train({**TINY, "out": out})
    return out


@pytest.fixture(scope="module")
def retrained(source, tmp_path_factory) -> dict[str, Path]:
    """Each method applied to ``source``, into its own run directory."""
    folder = tmp_path_factory.mktemp("stages")
    return {method: _retrain(source, method, folder / method) for method in ("crt", "tau_norm", "lws", "ncm")}


def _retrain(source: Path, method: str, out: Path) -> Path:
    retrain(source, method, out, quiet=True, bootstrap=50)
    return out


def model_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model"]


# ------------------------------------------------------------------------------------ the formulas by hand


def test_tau_normalize_divides_each_row_by_its_norm_to_the_power_tau() -> None:
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.5], [0.0, 0.0]])
    assert torch.equal(tau_normalize(weight, 0.0), weight)
    assert torch.allclose(tau_normalize(weight, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]]))
    # tau = 2: row 0 has norm 5, so it is divided by 25; row 1 (norm 0.5) multiplied by 4; zeros stay zeros
    assert torch.allclose(tau_normalize(weight, 2.0), torch.tensor([[0.12, 0.16], [0.0, 2.0], [0.0, 0.0]]))
    random = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    for tau in (0.3, 1.7):
        expected = [[value / math.sqrt(sum(v * v for v in row)) ** tau for value in row] for row in random.tolist()]
        assert torch.allclose(tau_normalize(random, tau), torch.tensor(expected), atol=1e-6)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
            tau_normalize(weight, bad)


def test_class_means_and_the_cosine_classifier_by_hand() -> None:
    features = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0]])
    targets = torch.tensor([0, 0, 1, 0])
    means = class_means(features, targets, 3)
    assert torch.allclose(means, torch.tensor([[2.0, 4.0 / 3.0], [0.0, 4.0], [0.0, 0.0]]))  # class 2 has no sample
    head = CosineClassifier(means, scale=10.0)
    x = torch.tensor([[1.0, 1.0], [0.0, -2.0]])
    # cos((1, 1), (2, 4/3)) = (2 + 4/3) / (sqrt(2) * sqrt(4 + 16/9)); cos((1, 1), (0, 4)) = 1 / sqrt(2); class 2: 0
    first = (2 + 4 / 3) / (math.sqrt(2) * math.sqrt(4 + 16 / 9))
    expected = torch.tensor([[first, 1 / math.sqrt(2), 0.0], [-(4 / 3) / math.sqrt(4 + 16 / 9), -1.0, 0.0]])
    assert torch.allclose(head(x), 10.0 * expected, atol=1e-6)
    random = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    for c in range(3):
        assert torch.allclose(class_means(random, labels, 3)[c], random[labels == c].mean(0), atol=1e-6)


def test_the_cl2n_classifier_is_kang_et_als_knn_classifier_by_hand() -> None:
    """facebookresearch/classifier-balancing: get_knncentroids' cl2n centroids (the class means of the centred,
    L2-normalised training features) and KNNClassifier(feat_type='cl2n', dist_type='l2'): minus the squared
    Euclidean distance from the centred, L2-normalised input to each centroid."""
    generator = np.random.default_rng(3)
    feats = generator.normal(1.0, 2.0, size=(40, 6))
    labels = np.arange(40) % 4
    featmean = feats.mean(axis=0)
    cl2n = (feats - featmean) / np.linalg.norm(feats - featmean, axis=1, keepdims=True)
    centroids = np.stack([cl2n[labels == c].mean(axis=0) for c in np.unique(labels)])
    inputs = generator.normal(1.0, 2.0, size=(7, 6))
    x = (inputs - featmean) / np.linalg.norm(inputs - featmean, axis=1, keepdims=True)
    theirs = -((x**2).sum(1, keepdims=True) + (centroids**2).sum(1)[None] - 2 * x @ centroids.T)
    center, means = centered_class_means(torch.tensor(feats), torch.tensor(labels), 4)
    assert np.allclose(center.numpy(), featmean) and np.allclose(means.numpy(), centroids)
    head = CenteredNCMClassifier(center, means, scale=2.5)
    ours = head(torch.tensor(inputs)).double()
    assert np.allclose(ours.numpy(), 2.5 * theirs, atol=1e-5)
    euclidean = torch.cdist(torch.tensor(x), torch.tensor(centroids)) ** 2  # the Euclidean distance, squared
    assert torch.allclose(ours, -2.5 * euclidean, atol=1e-5)
    cosine = CosineClassifier(class_means(torch.tensor(feats), torch.tensor(labels), 4))(torch.tensor(inputs))
    assert not torch.equal(ours.argmax(1), cosine.argmax(1))  # a different rule: some decisions differ


def test_weight_scaling_trains_only_its_scales_and_folds_into_an_equal_linear_layer() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(4, 3)
    scaled = WeightScaling(linear)
    assert [name for name, p in scaled.named_parameters() if p.requires_grad] == ["scales"]
    with torch.no_grad():
        scaled.scales.copy_(torch.tensor([0.5, 2.0, -1.0]))
    x = torch.randn(8, 4)
    assert torch.allclose(scaled(x), linear(x) * torch.tensor([0.5, 2.0, -1.0]))
    assert torch.allclose(scaled.folded()(x), scaled(x), atol=1e-6)


def test_lws_learns_the_scales_that_generated_the_labels() -> None:
    """A toy problem whose labels come from softmax(s* (W x)): learning only the scales on top of W recovers s*."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, generator=generator)
    true_scales = torch.tensor([0.5, 1.0, 2.0])
    x = torch.randn(20000, 4, generator=generator)
    labels = torch.multinomial((true_scales * (x @ weight.T)).softmax(1), 1, generator=generator)[:, 0]
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.zero_()
    scaled = WeightScaling(linear)
    optimizer = torch.optim.Adam([scaled.scales], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(scaled(x), labels).backward()
        optimizer.step()
    assert torch.allclose(scaled.scales.detach(), true_scales, atol=0.08), scaled.scales
    assert torch.equal(linear.weight, weight)  # the classifier itself is frozen


def test_the_classifier_is_found_and_replaced_through_timms_interface() -> None:
    for model in (
        timm.create_model("cbam_vgg16", backbone="test_resnet", num_classes=5).eval(),
        timm.create_model("test_resnet", num_classes=5).eval(),
    ):
        x = torch.randn(2, 3, 32, 32)
        layer = classifier_layer(model)
        assert isinstance(layer, nn.Linear) and layer.out_features == 5
        assert torch.allclose(layer(pooled_features(model, x)), model(x), atol=1e-5)  # pooled features feed it
        head = CosineClassifier(torch.randn(5, layer.in_features))
        replace_classifier(model, head)
        assert classifier_layer(model) is head and torch.allclose(model(x), head(pooled_features(model, x)))
        model.reset_classifier(5)  # cRT's re-initialisation: a fresh linear layer of the same shape
        assert isinstance(classifier_layer(model), nn.Linear) and classifier_layer(model) is not layer
    with pytest.raises(sw.ConfigError, match="no single classifier layer"):
        classifier_layer(timm.create_model("test_resnet", num_classes=0))
    with pytest.raises(sw.ConfigError, match="no get_classifier"):
        classifier_layer(nn.Linear(2, 2))
    with pytest.raises(sw.ConfigError, match="unknown classifier head 'other'"):
        install_head(timm.create_model("test_resnet", num_classes=2), "other")


def test_default_epochs_are_ten_percent_rounded_up() -> None:
    assert [default_epochs(e) for e in (1, 5, 10, 15, 90, 150)] == [1, 1, 1, 2, 9, 15]


# ------------------------------------------------------------------------------------ the methods, end to end


def test_crt_leaves_every_backbone_parameter_and_buffer_unchanged_and_retrains_the_classifier(
    source, retrained
) -> None:
    before, after = model_state(source), model_state(retrained["crt"])
    assert before.keys() == after.keys()
    buffers = [key for key in before if "running_" in key or "num_batches_tracked" in key]
    assert buffers  # the backbone has BatchNorm: its statistics must not move either
    for key in before:
        if key not in CLASSIFIER_KEYS:
            assert torch.equal(before[key], after[key]), key
    assert all(not torch.equal(before[key], after[key]) for key in CLASSIFIER_KEYS)
    epochs = [json.loads(line) for line in (retrained["crt"] / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 1  # default: 10 % of the run's 2 epochs, at least 1
    natural = json.loads((source / "metrics.jsonl").read_text().splitlines()[0])["drawn"]  # instance: every image
    drawn = epochs[0]["drawn"]
    assert sum(drawn.values()) == sum(natural.values())  # an epoch as long as the run's, class-balanced:
    assert max(drawn.values()) < max(natural.values()) and min(drawn.values()) > min(natural.values())
    config = json.loads((retrained["crt"] / "config.json").read_text())
    stage = config["retrain"]
    assert stage["method"] == "crt" and stage["source"] == str(source.resolve()) and stage["options"] == {}
    assert stage["sampler"] == "class_balanced" and stage["loss"] == "ce" and stage["epochs"] == 1
    assert config["weighters"] == ["none"] and config["sampler"] == "instance"  # the source's: what trained it


def test_any_timm_model_is_retrained_through_its_classifier_interface(tmp_path) -> None:
    run = tmp_path / "timm"
    train({**{k: v for k, v in TINY.items() if k != "backbone"}, "model": "test_resnet", "epochs": 1, "out": run})
    for method in ("crt", "ncm"):
        retrain(run, method, tmp_path / method, quiet=True, bootstrap=0)
    before, after = model_state(run), model_state(tmp_path / "crt")
    changed = sorted(key for key in before if not torch.equal(before[key], after[key]))
    assert changed == ["fc.bias", "fc.weight"]  # timm's ResNet: get_classifier() is its fc
    model, _, _ = load_trained_model(tmp_path / "ncm", torch.device("cpu"))
    assert isinstance(model.get_classifier(), CosineClassifier)


GROWING_SAMPLER = """
import torch
import sampleweight as sw

class Growing(sw.BaseSampler):  # epoch e: a permutation of the N samples, then its first 16 e again

    def __init__(self, targets, seed=0):
        super().__init__(len(targets), seed)

    def epoch_indices(self, epoch):
        order = torch.randperm(self.num_samples, generator=self.generator(epoch))
        return torch.cat([order, order[: 16 * epoch]])

    def __len__(self):
        return self.num_samples + 16 * self.epoch

@sw.hookimpl
def register_samplers(register):
    register("growing", Growing)
"""


def test_a_stage_anneals_its_learning_rate_to_zero_over_epochs_of_different_lengths(
    source, mount_plugin, tmp_path
) -> None:
    mount_plugin("sw-test-growing", entry_points={"growing": "sw_test_growing"},
                 modules={"sw_test_growing": GROWING_SAMPLER})  # fmt: skip
    out = tmp_path / "crt"
    retrain(source, "crt", out, epochs=3, lr=0.01, sampler="growing", quiet=True, bootstrap=0)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [sum(line["drawn"].values()) for line in lines] == [128, 144, 160]
    assert lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine reaches 0 at the stage's last step


def test_tau_norm_rescales_the_rows_drops_the_bias_and_records_its_choice_honestly(source, retrained) -> None:
    before, after = model_state(source), model_state(retrained["tau_norm"])
    metrics = json.loads((retrained["tau_norm"] / "metrics.json").read_text())
    stage = metrics["retrain"]
    tau = stage["tau"]
    assert tau in TAU_GRID and stage["tau_grid"] == list(TAU_GRID)
    assert stage["selection"]["metric"] == "bacc" and stage["selection"]["side"] == "validation"
    by_tau = {float(t): v for t, v in stage["selection"]["by_tau"].items()}
    assert by_tau[tau] == max(by_tau.values()) and all(by_tau[t] < by_tau[tau] for t in TAU_GRID if t < tau)
    assert stage["optimistic"] is True and "optimistic" in stage["note"]
    assert torch.allclose(after["fc.weight"], tau_normalize(before["fc.weight"], tau))
    assert torch.equal(after["fc.bias"], torch.zeros_like(before["fc.bias"]))
    assert all(torch.equal(before[k], after[k]) for k in before if k not in CLASSIFIER_KEYS)
    assert {"ci", "ece", "nll"} <= set(metrics)


def test_tau_norm_with_a_given_tau_chooses_nothing(source, tmp_path) -> None:
    retrain(source, "tau_norm", tmp_path / "t", tau=1.0, quiet=True, bootstrap=0)
    stage = json.loads((tmp_path / "t" / "metrics.json").read_text())["retrain"]
    assert stage["tau"] == 1.0 and "selection" not in stage
    weight = model_state(tmp_path / "t")["fc.weight"]
    assert torch.allclose(weight.norm(dim=1), torch.ones(weight.shape[0]), atol=1e-5)
    assert json.loads((tmp_path / "t" / "config.json").read_text())["retrain"]["options"] == {"tau": 1.0}


def test_lws_folds_one_scale_per_class_into_the_frozen_classifier(source, retrained) -> None:
    before, after = model_state(source), model_state(retrained["lws"])
    scales = json.loads((retrained["lws"] / "metrics.json").read_text())["retrain"]["scales"]
    factor = torch.tensor(list(scales.values()))
    assert list(scales) == json.loads((source / "metrics.json").read_text())["classes"]
    assert not torch.equal(factor, torch.ones_like(factor))  # it learned something
    assert torch.allclose(after["fc.weight"], before["fc.weight"] * factor[:, None])
    assert torch.allclose(after["fc.bias"], before["fc.bias"] * factor)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in CLASSIFIER_KEYS)


def test_ncm_scores_the_cosine_to_each_class_mean_of_the_training_features(source, retrained) -> None:
    model, _, classes = load_trained_model(retrained["ncm"], torch.device("cpu"))
    head = classifier_layer(model)
    assert isinstance(head, CosineClassifier) and head.means.shape[0] == len(classes)
    stage = json.loads((retrained["ncm"] / "metrics.json").read_text())["retrain"]
    assert stage["scale"] == pytest.approx(float(head.scale)) and stage["feature_images"] > 0
    source_model, config, _ = load_trained_model(source, torch.device("cpu"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = pooled_features(source_model, x)  # the backbone is the source's, unchanged
        expected = float(head.scale) * nn.functional.cosine_similarity(features[:, None], head.means[None], dim=2)
        assert torch.allclose(model(x), expected, atol=1e-4)
        data = load_split(config.model_copy(update={"quiet": True}), torch.device("cpu"))
        sums = torch.zeros_like(head.means)
        for i in range(len(data.train.dataset)):  # every training image once, unaugmented, one at a time
            image, label, _ = data.train.dataset[i]
            sums[int(label)] += pooled_features(source_model, data.normalize(torch.as_tensor(image)[None]))[0]
        counts = torch.bincount(data.train_targets, minlength=len(classes)).clamp(min=1)
        assert torch.allclose(head.means, sums / counts[:, None], atol=1e-4)


def test_ncm_cl2n_scores_the_distance_to_the_class_means_of_the_centred_normalised_features(
    source, retrained, tmp_path
) -> None:
    out = tmp_path / "ncm_cl2n"
    retrain(source, "ncm", out, ncm_distance="cl2n", quiet=True, bootstrap=0)
    model, _, classes = load_trained_model(out, torch.device("cpu"))
    head = classifier_layer(model)
    assert isinstance(head, CenteredNCMClassifier) and head.means.shape[0] == len(classes)
    stage = json.loads((out / "metrics.json").read_text())["retrain"]
    assert stage["distance"] == "cl2n" and stage["scale"] == pytest.approx(float(head.scale))
    assert json.loads((out / "config.json").read_text())["retrain"]["ncm_distance"] == "cl2n"
    cosine_stage = json.loads((retrained["ncm"] / "metrics.json").read_text())["retrain"]
    assert cosine_stage["distance"] == "cosine"  # the default
    source_model, config, _ = load_trained_model(source, torch.device("cpu"))
    with torch.no_grad():
        data = load_split(config.model_copy(update={"quiet": True}), torch.device("cpu"))
        features = torch.cat([  # every training image once, unaugmented, one at a time
            pooled_features(source_model, data.normalize(torch.as_tensor(data.train.dataset[i][0])[None]))
            for i in range(len(data.train.dataset))
        ])  # fmt: skip
        center = features.mean(0)
        normalised = (features - center) / (features - center).norm(dim=1, keepdim=True)
        counts = torch.bincount(data.train_targets, minlength=len(classes)).clamp(min=1)
        means = torch.zeros(len(classes), features.shape[1]).index_add_(0, data.train_targets, normalised)
        means /= counts[:, None]
        assert torch.allclose(head.center, center, atol=1e-4) and torch.allclose(head.means, means, atol=1e-4)
        x = torch.randn(3, 3, 32, 32)
        f = pooled_features(source_model, x)
        f_hat = (f - center) / (f - center).norm(dim=1, keepdim=True)
        expected = -float(head.scale) * torch.cdist(f_hat, means) ** 2
        assert torch.allclose(model(x), expected, atol=1e-3)
    _, folder = evaluate(out, "synthetic:160", out=tmp_path / "eval", quiet=True, bootstrap=0)
    with open(out / "predictions.csv", newline="") as ours, open(folder / "predictions.csv", newline="") as theirs:
        again = {row["image"]: row["pred"] for row in csv.DictReader(theirs)}
        assert all(again[row["image"]] == row["pred"] for row in csv.DictReader(ours))  # evaluate rebuilds the head


@pytest.mark.parametrize("method", ["crt", "tau_norm", "lws", "ncm"])
def test_a_retrained_run_is_evaluable_and_evaluate_reproduces_its_predictions(retrained, method, tmp_path) -> None:
    run = retrained[method]
    metrics, folder = evaluate(run, "synthetic:160", out=tmp_path / "eval", quiet=True, bootstrap=0)
    with open(run / "predictions.csv", newline="") as handle:
        ours = {row["image"]: row for row in csv.DictReader(handle)}
    with open(folder / "predictions.csv", newline="") as handle:
        theirs = {row["image"]: row for row in csv.DictReader(handle)}
    assert ours and set(ours) <= set(theirs)
    for image, row in ours.items():
        assert row["pred"] == theirs[image]["pred"]
        for name in metrics["classes"]:
            assert float(row[name]) == pytest.approx(float(theirs[image][name]), abs=2e-5)


def test_a_retrained_run_is_its_own_setup_in_the_report_and_compares_with_the_baseline(
    source, retrained, tmp_path
) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(source, folder / "run")
    for method in ("crt", "ncm"):
        shutil.copytree(retrained[method], folder / f"run+{method}")
    report = write_report(folder, figures=False, baseline="none", resamples=50)
    (table,) = report.tables
    assert [cell.name for cell in table.cells] == ["ce-none", "ce-none+crt", "ce-none+ncm"]
    compared = {item.cell.name: item.baseline.name for item in table.comparisons}
    assert compared == {"ce-none+crt": "ce-none", "ce-none+ncm": "ce-none"}
    crt = next(cell for cell in table.cells if cell.name == "ce-none+crt")
    final = json.loads((folder / "run+crt" / "metrics.json").read_text())
    assert crt.mean["bacc"] == final["bacc"]
    assert "none+crt" in (folder / "report.md").read_text()
    again = write_report(folder, tmp_path / "r2", figures=False, baseline="ce-none+crt", resamples=50)
    assert {item.cell.name for item in again.tables[0].comparisons} == {"ce-none", "ce-none+ncm"}


def test_a_stage_option_given_makes_its_own_cell(source, retrained, tmp_path) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(retrained["tau_norm"], folder / "auto")
    retrain(source, "tau_norm", folder / "fixed", tau=0.5, quiet=True, bootstrap=0)
    (table,) = write_report(folder, figures=False).tables
    assert [cell.name for cell in table.cells] == ["ce-none+tau_norm", "ce-none+tau_norm-tau_norm.tau=0.5"]


# ------------------------------------------------------------------------------------ bad input: exit 2, one line


def _invoke(*args: str):
    return runner.invoke(app, ["retrain", *args])


def test_bad_input_is_one_line_and_exit_2(source, tmp_path) -> None:
    out = str(tmp_path / "out")
    cases = {
        "unknown method": (_invoke(str(source), "--method", "crt2", "--out", out), "unknown retrain method 'crt2'"),
        "negative tau": (_invoke(str(source), "--method", "tau_norm", "--tau", "-0.5", "--out", out), "--tau must be"),
        "tau for crt": (_invoke(str(source), "--method", "crt", "--tau", "1", "--out", out), "not an option of crt"),
        "unknown distance": (
            _invoke(str(source), "--method", "ncm", "--ncm-distance", "l2", "--out", out),
            "unknown --ncm-distance 'l2'; choose one of: cosine, cl2n",
        ),
        "distance for crt": (
            _invoke(str(source), "--method", "crt", "--ncm-distance", "cl2n", "--out", out),
            "--ncm-distance is not an option of crt",
        ),
        "no run": (_invoke(str(tmp_path / "nothing"), "--method", "crt", "--out", out), "is not a run directory"),
        "out is the run": (_invoke(str(source), "--method", "ncm", "--out", str(source)), "is the run itself"),
        "unknown loss": (_invoke(str(source), "--method", "crt", "--loss", "cee", "--out", out), "unknown loss"),
        "unknown sampler": (_invoke(str(source), "--method", "lws", "--sampler", "x", "--out", out), "sampler"),
    }
    for name, (result, message) in cases.items():
        assert result.exit_code == 2, (name, result.output)
        assert message in error_line(result.output), (name, result.output)
    assert not (tmp_path / "out").exists()  # refused before any folder is made


def test_a_run_that_is_not_finished_or_has_no_checkpoint_is_refused(source, tmp_path) -> None:
    unfinished = tmp_path / "unfinished"
    shutil.copytree(source, unfinished)
    (unfinished / "metrics.json").unlink()
    result = _invoke(str(unfinished), "--method", "crt", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "is not finished (no metrics.json)" in error_line(result.output)
    bare = tmp_path / "bare"
    shutil.copytree(source, bare)
    (bare / "checkpoint.pt").unlink()
    result = _invoke(str(bare), "--method", "crt", "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "has no checkpoint.pt" in error_line(result.output)
    midway = tmp_path / "midway"  # metrics.json there, but the checkpoint is of an earlier epoch
    shutil.copytree(source, midway)
    state = load_checkpoint(midway / "checkpoint.pt")
    save_checkpoint(midway / "checkpoint.pt", {**state, "epoch": 1})
    result = _invoke(str(midway), "--method", "crt", "--out", str(tmp_path / "c"))
    assert result.exit_code == 2 and "its checkpoint is of epoch 1 of 2" in error_line(result.output)


def test_a_model_without_a_single_classifier_is_refused(source, retrained, tmp_path) -> None:
    tree = tmp_path / "tree"  # what a hierarchical run's checkpoint says: refused before its model is built
    shutil.copytree(source, tree)
    state = load_checkpoint(tree / "checkpoint.pt")
    save_checkpoint(tree / "checkpoint.pt", {**state, "config": {**state["config"], "model": "hierarchical_vgg16"}})
    result = _invoke(str(tree), "--method", "crt", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "has no single classifier to re-balance" in error_line(result.output)
    result = _invoke(str(retrained["ncm"]), "--method", "tau_norm", "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "is itself a retrained run" in error_line(result.output)


def test_a_model_whose_pooled_features_do_not_feed_its_classifier_is_refused(monkeypatch, source, tmp_path) -> None:
    from sampleweight.engine import retraining

    monkeypatch.setattr(retraining, "pooled_features", lambda model, x: 2 * pooled_features(model, x))
    result = _invoke(str(source), "--method", "lws", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "does not give the model's scores" in error_line(result.output)


def test_an_out_that_holds_a_run_or_is_in_use_is_refused(source, retrained, tmp_path) -> None:
    result = _invoke(str(source), "--method", "crt", "--out", str(retrained["crt"]))
    assert result.exit_code == 2 and "already holds a run" in error_line(result.output)
    busy = tmp_path / "busy"
    busy.mkdir()
    with FolderLock(busy):
        result = _invoke(str(source), "--method", "ncm", "--out", str(busy))
    assert result.exit_code == 2 and "is in use by another sampleweight process" in error_line(result.output)


def test_train_resume_refuses_a_retrained_run(retrained) -> None:
    result = runner.invoke(app, ["train", "--out", str(retrained["crt"]), "--resume"])
    assert result.exit_code == 2
    assert error_line(result.output) == (
        f"error: {retrained['crt']} holds a retrained classifier (sampleweight retrain), not a training run to "
        "continue; retrain the source run again instead"
    )


# ------------------------------------------------------------------------------------ grid --retrain


def test_grid_print_commands_gives_no_retrain_command_for_a_hierarchical_run(tmp_path) -> None:
    args = ["grid", "--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--epochs", "1", "--models", "cbam_vgg16,hierarchical_vgg16", "--losses", "ce", "--weighters", "none",
            "--optimizers", "adam", "--splits", "0", "--out", str(tmp_path), "--retrain", "crt",
            "--print-commands"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    retrain_lines = [line for line in result.stdout.splitlines() if line.startswith("sampleweight retrain")]
    assert retrain_lines == [
        f"sampleweight retrain {tmp_path / 'cbam_vgg16-ce-none-adam-s0'} --method crt --out "
        f"{tmp_path / 'cbam_vgg16-ce-none-adam-s0+crt'}"
    ]
    assert "no retrain commands for the 1 run(s) of a hierarchical model" in result.stderr


def test_grid_retrain_adds_the_stages_and_resumes_without_redoing_finished_ones(tmp_path) -> None:
    grid = ["grid", "--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "16", "--lr", "1e-3", "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce",
            "--weighters", "none", "--optimizers", "adam", "--splits", "0", "--bootstrap", "0", "--quiet", "--out",
            str(tmp_path)]  # fmt: skip
    bad = runner.invoke(app, [*grid, "--retrain", "crt,cRT"])
    assert bad.exit_code == 2 and "unknown retrain method 'cRT'" in error_line(bad.output)
    assert not (tmp_path / "cbam_vgg16-ce-none-adam-s0").exists()  # refused before anything trained
    commands = runner.invoke(app, [*grid, "--retrain", "crt,tau_norm", "--print-commands"]).output.splitlines()
    run = tmp_path / "cbam_vgg16-ce-none-adam-s0"
    assert commands[-1] == f"sampleweight retrain {run} --method tau_norm --out {run}+tau_norm"
    first = runner.invoke(app, [*grid, "--retrain", "crt,tau_norm", "--no-report"])
    assert first.exit_code == 0, first.output
    stages = {method: tmp_path / f"cbam_vgg16-ce-none-adam-s0+{method}" for method in ("crt", "tau_norm")}
    assert all((path / "metrics.json").is_file() for path in stages.values())
    written = {method: (path / "metrics.json").stat().st_mtime_ns for method, path in stages.items()}
    (stages["tau_norm"] / "metrics.json").unlink()  # an interrupted stage: done again, the finished one skipped
    second = runner.invoke(app, [*grid, "--retrain", "crt,tau_norm"])
    assert second.exit_code == 0, second.output
    assert "skipped (finished) cbam_vgg16-ce-none-adam-s0+crt" in second.output
    assert (stages["crt"] / "metrics.json").stat().st_mtime_ns == written["crt"]
    assert (stages["tau_norm"] / "metrics.json").is_file()
    report = (tmp_path / "report.md").read_text()
    assert "none+crt" in report and "none+tau_norm" in report


# ------------------------------------------------------------------------------------ weight balancing (wb)


def test_wb_fine_tunes_the_classifier_under_maxnorm_with_class_balanced_loss(source, tmp_path) -> None:
    """Alshammari et al.'s second stage: the run's classifier (not re-initialised) trained further, each class row
    projected into the MaxNorm ball after every step, the backbone untouched."""
    from sampleweight.classifier import max_norm_limit

    out = tmp_path / "wb"
    metrics = retrain(source, "wb", out, quiet=True, bootstrap=0, epochs=2, max_norm=0.2, weight_decay=0.01)
    before, after = model_state(source), model_state(out)
    limit = max_norm_limit(before["fc.weight"], 0.2)
    assert metrics["retrain"]["max_norm_limit"] == pytest.approx(limit)
    norms = after["fc.weight"].norm(dim=1)
    assert float(norms.max()) <= limit * (1 + 1e-5)  # the projection ran after the last step
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if k not in CLASSIFIER_KEYS)
    stage = json.loads((out / "config.json").read_text())["retrain"]
    assert stage["sampler"] == "instance" and stage["weighter"] == "es" and stage["weight_decay"] == 0.01
    assert stage["options"] == {"epochs": 2, "max_norm": 0.2, "weight_decay": 0.01}
    bad = runner.invoke(
        app, ["retrain", str(source), "--method", "wb", "--max-norm", "1.5", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "--max-norm must lie in [0, 1]" in error_line(bad.output)
    bad = runner.invoke(
        app, ["retrain", str(source), "--method", "crt", "--max-norm", "0.1", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "--max-norm is not an option of crt" in error_line(bad.output)
