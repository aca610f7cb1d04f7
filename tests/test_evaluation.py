"""Evaluation as the ISIC challenge does it (issue 16): ensembles, test-time augmentation, the submission file,
unlabelled images, AUC end to end, and post-hoc logit adjustment (issue 15) in evaluate and report."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm
from typer.testing import CliRunner

from sampleweight import functional as SF
from sampleweight.cli import app
from sampleweight.data import ISIC_CLASSES, BatchAugment, build_eval_dataset, read_dataset
from sampleweight.engine import components, inference, training
from sampleweight.engine.evaluation import (
    CROP_GRID,
    evaluate,
    load_trained_model,
    logit_adjust,
    predict_views,
    tta_input_size,
    tta_views,
)
from sampleweight.engine.loader import make_loader
from sampleweight.engine.rundir import read_predictions, write_predictions
from sampleweight.engine.submission import SUBMISSION_COLUMNS, submission_order, write_submission
from sampleweight.errors import ConfigError
from sampleweight.metrics import final_metrics
from sampleweight.studies.report import collect_runs, write_report

runner = CliRunner()
CPU = torch.device("cpu")
DATA = "synthetic:60:7"
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
            lr=1e-3, quiet=True, bootstrap=0)  # fmt: skip
HAM10000 = Path(
    os.environ.get("SAMPLEWEIGHT_HAM10000") or Path(__file__).resolve().parents[1].parent / "shared/data/HAM10000"
)


def error_lines(output: str) -> list[str]:
    """The lines of an error report, after any notes printed before it."""
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")) :]


def write_images(folder: Path, names: list[str], seed: int = 0, size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{name}.jpg")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Finished one-epoch runs: flat at 32 px, flat at 40 px (another seed), hierarchical at 32 px."""
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for name, overrides in {
        "flat": {},
        "wide": {"image_size": 40, "seed": 1},
        "tree": {"model": "hierarchical_vgg16"},
    }.items():
        training.train({**TINY, **overrides, "out": root / name})
        found[name] = root / name
    return found


def plain_prediction(run: Path, data: str = DATA, batch_size: int = 64) -> tuple[list[str], np.ndarray, np.ndarray]:
    """What evaluation did before test-time augmentation existed: training's `predict` over one view per image."""
    model, config, classes = load_trained_model(run, CPU)
    records = read_dataset(data, classes=classes, allow_empty_classes=True)
    dataset = build_eval_dataset(records, image_size=config.image_size, augment="batch", progress=False)
    loader = make_loader(dataset, batch_size, CPU, workers=0)
    targets, scores = inference.predict(model, loader, CPU, None, BatchAugment(config.image_size).eval())
    return [records.image_ids[i] for i in dataset.record_indices], targets, scores


def predictions_of(folder: Path) -> tuple[list[str], list[str], list[str], np.ndarray, list[str]]:
    return read_predictions(folder / "predictions.csv")


# ------------------------------------------------------------------------ TTA none: today's evaluation


def test_tta_none_equals_the_plain_evaluation_bit_for_bit(tmp_path, runs) -> None:
    run = runs["flat"]
    metrics, out = evaluate(run, DATA, out=tmp_path / "e", bootstrap=300, quiet=True)
    images, targets, scores = plain_prediction(run)
    predicted = inference.decide(scores)
    expected = final_metrics(targets, scores, predicted, list(ISIC_CLASSES), resamples=300)
    assert {key: metrics[key] for key in expected} == expected
    assert metrics["tta"] == "none" and metrics["views"] == 1 and metrics["labelled"] is True
    write_predictions(tmp_path / "expected.csv", images, targets, scores, ISIC_CLASSES, predicted)
    assert (out / "predictions.csv").read_text() == (tmp_path / "expected.csv").read_text()
    # the arrays themselves, not only their printed digits, and with a last short batch
    model, _, _ = load_trained_model(run, CPU)
    records = read_dataset(DATA, classes=ISIC_CLASSES, allow_empty_classes=True)
    dataset = build_eval_dataset(records, image_size=32, augment="batch", progress=False)
    normalize = BatchAugment(32).eval()
    for batch_size in (7, 64):
        loader = make_loader(dataset, batch_size, CPU, workers=0)
        got_targets, got = predict_views(model, loader, CPU, contextlib.nullcontext(), normalize, "none", 32)
        want_targets, want = inference.predict(model, loader, CPU, None, normalize)
        assert np.array_equal(got, want) and np.array_equal(got_targets, want_targets)


# ----------------------------------------------------------------------------------------- ensembles


def test_an_ensemble_of_a_run_with_itself_equals_the_run(tmp_path, runs) -> None:
    run = runs["flat"]
    single, one = evaluate(run, DATA, out=tmp_path / "one", bootstrap=200, quiet=True)
    double, two = evaluate([run, run], DATA, out=tmp_path / "two", bootstrap=200, quiet=True)
    assert double["runs"] == [str(run), str(run)]
    assert {k: v for k, v in double.items() if k != "runs"} == {k: v for k, v in single.items() if k != "runs"}
    assert (one / "predictions.csv").read_text() == (two / "predictions.csv").read_text()
    geometric, three = evaluate([run, run], DATA, out=tmp_path / "geo", combine="geometric", bootstrap=0, quiet=True)
    *_, plain_scores, _ = predictions_of(one)
    _, _, pred, geo_scores, _ = predictions_of(three)
    np.testing.assert_allclose(geo_scores, plain_scores, rtol=1e-5, atol=1e-7)
    assert pred == predictions_of(one)[2] and geometric["combine"] == "geometric"


def test_runs_of_different_image_sizes_are_each_fed_their_own(tmp_path, runs) -> None:
    """An ensemble's probabilities are the mean of each run's own evaluation: no run sees another's input size."""
    flat, wide = runs["flat"], runs["wide"]
    result = runner.invoke(app, ["evaluate", str(flat), str(wide), "--data", DATA, "--out", str(tmp_path / "both"),
                                 "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the runs take images of 32, 40 px: each is fed its own size, as trained" in " ".join(result.output.split())
    _, _, scores32 = plain_prediction(flat)
    _, _, scores40 = plain_prediction(wide)
    mean = (scores32.astype(np.float64) + scores40) / 2
    _, _, pred, scores, _ = predictions_of(tmp_path / "both")
    np.testing.assert_allclose(scores, mean, rtol=1e-5)
    assert pred == [ISIC_CLASSES[i] for i in mean.argmax(1)]


def test_a_grid_folder_is_the_list_of_its_finished_runs(tmp_path, runs) -> None:
    grid = tmp_path / "grid"
    for name in ("flat", "wide"):
        shutil.copytree(runs[name], grid / name)
    shutil.copytree(runs["flat"], grid / "unfinished")
    (grid / "unfinished" / "metrics.json").unlink()
    result = runner.invoke(app, ["evaluate", str(grid), "--data", DATA, "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "left out 1 unfinished run(s): unfinished" in " ".join(result.output.split())
    metrics = json.loads((grid / "evaluate" / "metrics.json").read_text())
    assert metrics["runs"] == [str(grid / "flat"), str(grid / "wide")]
    _, out = evaluate([grid / "flat", grid / "wide"], DATA, out=tmp_path / "listed", bootstrap=0, quiet=True)
    assert (grid / "evaluate" / "predictions.csv").read_text() == (out / "predictions.csv").read_text()


def test_a_grid_folder_leaves_out_retrained_stages_whose_backbone_is_a_runs(tmp_path, runs) -> None:
    grid = tmp_path / "grid"
    shutil.copytree(runs["flat"], grid / "flat")
    shutil.copytree(runs["flat"], grid / "flat+crt")
    config = json.loads((grid / "flat+crt" / "config.json").read_text())
    (grid / "flat+crt" / "config.json").write_text(json.dumps({**config, "retrain": {"method": "crt"}}))
    result = runner.invoke(app, ["evaluate", str(grid), "--data", DATA, "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "left out 1 retrained stage(s), whose backbone is their source run's: flat+crt" in " ".join(
        result.output.split()
    )
    assert json.loads((grid / "evaluate" / "metrics.json").read_text())["runs"] == [str(grid / "flat")]
    named, _ = evaluate([grid / "flat", grid / "flat+crt"], DATA, out=tmp_path / "named", bootstrap=0, quiet=True)
    assert named["runs"] == [str(grid / "flat"), str(grid / "flat+crt")]  # named, a stage is a member
    shutil.rmtree(grid / "flat")
    only, _ = evaluate(grid, DATA, out=tmp_path / "stages", bootstrap=0, quiet=True)
    assert only["runs"] == [str(grid / "flat+crt")]  # a folder of stages only is those stages


# ------------------------------------------------------------------------------ test-time augmentation


def test_the_views_of_each_mode() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert tta_views(x, "none", 4) is x
    flips = tta_views(x, "flip", 4).view(4, 2, 3, 4, 4)
    for view, expected in zip(flips, (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)), strict=True):
        assert torch.equal(view, expected)
    square = tta_views(x, "flip-rot", 4).view(8, 2, 3, 4, 4)
    distinct = {tuple(v[0, 0].flatten().tolist()) for v in square}
    assert len(distinct) == 8  # the eight symmetries of the square, each once
    assert torch.equal(square[1], x.transpose(-1, -2).flip(-2))  # rotation by 90 degrees counter-clockwise
    side = tta_input_size("crops", 32)
    assert side == 45 and tta_input_size("flip", 32) == 32
    big = torch.randn(2, 3, side, side)
    crops = tta_views(big, "crops", 32).view(CROP_GRID**2, 2, 3, 32, 32)
    assert torch.equal(crops[0], big[..., :32, :32]) and torch.equal(crops[-1], big[..., -32:, -32:])
    starts = [0, 4, 9, 13]  # evenly spaced from the top-left to the bottom-right corner: round(k * 13 / 3)
    for k, (top, left) in enumerate((t, s) for t in starts for s in starts):
        assert torch.equal(crops[k], big[..., top : top + 32, left : left + 32]), k
    with pytest.raises(ConfigError, match="unknown --tta 'rot'"):
        tta_views(x, "rot", 4)


def test_views_are_scored_in_one_forward_pass_per_batch_and_averaged() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)).eval()
    images = torch.randint(0, 256, (5, 3, 12, 12), dtype=torch.uint8)
    batches = [
        (images[:3], torch.zeros(3, dtype=torch.long), None),
        (images[3:], torch.ones(2, dtype=torch.long), None),
    ]
    normalize = BatchAugment(12).eval()
    model(normalize(images))
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    targets, scores = predict_views(model, batches, CPU, contextlib.nullcontext(), normalize, "flip", 12)
    assert seen == [12, 8] and targets.tolist() == [0, 0, 0, 1, 1]  # 4 views x 3 images, 4 x 2
    x = normalize(images)
    with torch.no_grad():
        separate = [model(view).softmax(1) for view in (x, x.flip(-1), x.flip(-2), x.flip(-2, -1))]
    np.testing.assert_allclose(scores, torch.stack(separate).mean(0).numpy(), rtol=1e-5, atol=1e-7)


def test_tta_modes_end_to_end(tmp_path, runs) -> None:
    for tta, views in (("flip", 4), ("flip-rot", 8), ("crops", 16)):
        metrics, out = evaluate(runs["flat"], DATA, tta=tta, batch_size=20, bootstrap=0, quiet=True)
        assert out == runs["flat"] / f"evaluate-{tta}" and metrics["views"] == views and metrics["n"] == 60
        _, _, _, scores, _ = predictions_of(out)
        np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)


# ------------------------------------------------------------------ unlabelled images and the submission


def test_an_unlabelled_folder_gets_scores_and_a_submission_that_round_trips(tmp_path, runs) -> None:
    root = tmp_path / "isic"
    folder = root / "ISIC2018_Task3_Test_Input"
    names = [f"ISIC_{34524 + k:07d}" for k in range(9)]
    write_images(folder, names[::-1])
    (folder / "LICENSE.txt").write_text("the release's licence")
    submission = tmp_path / "out" / "submission.csv"
    args = ["evaluate", str(runs["flat"]), "--data", str(folder), "--submission", str(submission), "--tta", "flip",
            "--out", str(tmp_path / "e")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"no ground truth in {folder}: scored 9 images, no metrics computed" in " ".join(result.output.split())
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["labelled"] is False and metrics["n"] == 9 and "acc" not in metrics and "auc" not in metrics
    assert metrics["submission"] == str(submission)
    data = json.loads((tmp_path / "e" / "data.json").read_text())
    assert data["layout"] == "images" and data["images"] == {"evaluated": 9}
    images, true, pred, scores, _ = predictions_of(tmp_path / "e")
    assert images == names and true == [""] * 9
    with open(submission, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == SUBMISSION_COLUMNS == ("image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    values = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == names and ((values >= 0) & (values <= 1)).all()
    np.testing.assert_allclose(values.sum(1), 1, atol=1e-7)
    np.testing.assert_allclose(values, scores, atol=1e-6)
    # round trip: the submission's decisions, as the ISIC 2018 test ground truth, read by the test-layout reader
    one_hot = np.eye(7, dtype=int)[values.argmax(1)]
    truth = ["image," + ",".join(ISIC_CLASSES)] + [
        f"{n}," + ",".join(map(str, r)) for n, r in zip(names, one_hot, strict=True)
    ]
    (root / "ISIC2018_Task3_Test_GroundTruth.csv").write_text("\n".join(truth) + "\n")
    records = read_dataset(root, subset="test", allow_empty_classes=True)
    assert records.layout == "isic2018" and records.labelled and records.unlabelled == ()
    assert list(records.image_ids) == names and records.labels.tolist() == values.argmax(1).tolist()
    assert [ISIC_CLASSES[i] for i in records.labels] == pred
    again, _ = evaluate(runs["flat"], folder, tta="flip", out=tmp_path / "labelled", bootstrap=0, quiet=True)
    assert again["labelled"] is True and again["acc"] == 1.0  # scored against its own decisions


def test_the_submission_has_the_isic_column_order_whatever_the_models(tmp_path) -> None:
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # a generic CSV's sorted HAM10000 dx codes
    scores = np.random.default_rng(0).dirichlet(np.ones(7), size=4)
    write_submission(tmp_path / "s.csv", ["a", "b", "c", "d"], scores, classes)
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row, expected in zip(rows, scores, strict=True):
        for name, value in zip(classes, expected, strict=True):
            assert float(row[name.upper()]) == pytest.approx(value, abs=1e-8)
    assert submission_order(ISIC_CLASSES) == list(range(7))
    with pytest.raises(ConfigError, match="needs a model trained on those seven classes"):
        submission_order(["cat", "dog"])


@pytest.mark.skipif(
    not (HAM10000 / "HAM10000_metadata.csv").is_file(),
    reason=f"real HAM10000 copy not found at {HAM10000} (set SAMPLEWEIGHT_HAM10000 to its folder)",
)
def test_real_ham10000_images_as_an_unlabelled_test_folder_with_multi_crop(tmp_path, runs) -> None:
    folder = tmp_path / "ISIC2018_Task3_Test_Input"
    folder.mkdir()
    source = sorted(HAM10000.glob("HAM10000_images*/*.jpg"))[:24]
    assert len(source) == 24
    for path in source:
        (folder / path.name).symlink_to(path)
    submission = tmp_path / "submission.csv"
    metrics, _ = evaluate(runs["flat"], folder, tta="crops", submission=submission, cache_dir=tmp_path / "cache",
                            out=tmp_path / "e", quiet=True)  # fmt: skip
    assert metrics["labelled"] is False and metrics["views"] == 16
    rows = submission.read_text().splitlines()
    assert rows[0] == ",".join(SUBMISSION_COLUMNS) and [r.split(",")[0] for r in rows[1:]] == [p.stem for p in source]


# ------------------------------------------------------------------------------- AUC, hierarchical model


def test_the_hierarchical_models_auc_is_over_its_leaf_probabilities(tmp_path, runs) -> None:
    run = runs["tree"]
    metrics, out = evaluate([run, run], DATA, out=tmp_path / "e", bootstrap=100, quiet=True)
    assert metrics["decoding"] == "greedy"
    _, targets, leaf = plain_prediction(run)
    for c, name in enumerate(ISIC_CLASSES):
        positive = targets == c
        if positive.any():
            assert metrics["per_class"][name]["auc"] == pytest.approx(skm.roc_auc_score(positive, leaf[:, c]))
        else:
            assert metrics["per_class"][name]["auc"] is None and metrics["ci"]["per_class"][name]["auc"] is None
    _, _, pred, _, _ = predictions_of(out)
    greedy = inference.decide(leaf, components.taxonomy_of_model(load_trained_model(run, CPU)[1], ISIC_CLASSES))
    assert pred == [ISIC_CLASSES[i] for i in greedy]


# --------------------------------------------------------------------------- post-hoc logit adjustment


def test_logit_adjusted_probabilities_equal_a_numpy_computation() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=6)
    probabilities[0] = [1.0, 0.0, 0.0, 0.0]  # a zero stays zero
    counts = np.array([50, 0, 7, 3])  # the class without images counts as one
    prior = np.maximum(counts, 1) / counts.sum()
    for tau in (0.0, 0.5, 1.0, 2.0):
        expected = probabilities / prior**tau
        expected /= expected.sum(axis=1, keepdims=True)
        got = logit_adjust(probabilities, counts, tau)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert np.isfinite(got).all()
    with pytest.raises(ValueError, match="tau >= 0"):
        SF.logit_adjusted_probabilities(torch.ones(1, 2) / 2, torch.zeros(2), tau=-1.0)


def test_evaluate_with_logit_adjustment_equals_adjusting_the_plain_probabilities(tmp_path, runs) -> None:
    run = runs["flat"]
    metrics, out = evaluate(run, DATA, logit_adjust=1.0, bootstrap=0, quiet=True)
    assert out == run / "evaluate-la1" and metrics["logit_adjust"] == 1.0
    counts = json.loads((run / "data.json").read_text())["class_counts"]["train"]
    prior = np.array([max(counts[c], 1) for c in ISIC_CLASSES], dtype=np.float64)
    prior /= np.array([counts[c] for c in ISIC_CLASSES]).sum()
    _, targets, scores = plain_prediction(run)
    adjusted = scores / prior
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    expected = final_metrics(targets, adjusted, adjusted.argmax(1), ISIC_CLASSES, resamples=0)
    for key in ("acc", "bacc", "mpr", "mf1", "auc", "ece", "nll"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    assert metrics["confusion"] == expected["confusion"]
    _, _, pred, written, _ = predictions_of(out)
    assert pred == [ISIC_CLASSES[i] for i in adjusted.argmax(1)]
    np.testing.assert_allclose(written, adjusted, rtol=1e-5)


def test_logit_adjusting_a_run_that_already_rebalances_says_so_once(tmp_path, runs) -> None:
    balanced = tmp_path / "balanced"
    training.train({**TINY, "loss": "balanced_softmax", "weighters": ["es"], "out": balanced})
    result = runner.invoke(app, ["evaluate", str(balanced), str(runs["flat"]), "--data", DATA, "--bootstrap", "0",
                                 "--logit-adjust", "1", "--out", str(tmp_path / "e")])  # fmt: skip
    assert result.exit_code == 0, result.output
    note = (
        f"{balanced} already rebalances its classes (weighter es; loss balanced_softmax): adjusting its logits by "
        "the natural training prior corrects them twice; post-hoc logit adjustment is meant for a plain run "
        "(docs/evaluation.md)"
    )
    output = " ".join(result.output.split())
    assert output.count("already rebalances") == 1 and f"note: {note}" in output  # the plain run gets none
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["logit_adjust_note"] == [note]
    plain, _ = evaluate(runs["flat"], DATA, out=tmp_path / "plain", logit_adjust=1.0, bootstrap=0, quiet=True)
    assert "logit_adjust_note" not in plain
    folder = tmp_path / "grid"
    for run in (balanced, runs["flat"]):
        shutil.copytree(run, folder / run.name)
    markdown = write_report(folder, figures=False, logit_adjust=[1.0]).markdown.read_text()
    assert (
        "It is meant for plain runs; 1 run here already rebalances the classes, so its adjusted setups correct "
        "twice (runs per way, a run may have several: loss balanced_softmax 1, weighter es 1)."
        in " ".join(markdown.split())
    )
    assert "already rebalance" not in write_report(folder, out=tmp_path / "r", figures=False).markdown.read_text()


def test_report_shows_each_run_with_and_without_logit_adjustment(tmp_path, runs) -> None:
    folder = tmp_path / "grid"
    shutil.copytree(runs["flat"], folder / "flat")
    report = write_report(folder, figures=False, baseline="ce-none", logit_adjust=[1.0], resamples=200)
    (table,) = report.tables
    assert [cell.label for cell in table.cells] == ["none", "none logit_adjust=1.0"]
    assert [cell.name for cell in table.cells] == ["ce-none", "ce-none-logit_adjust=1.0"]
    plain, adjusted = table.cells
    _, true, _, scores, classes = predictions_of(folder / "flat")
    targets = np.array([classes.index(t) for t in true])
    counts = json.loads((folder / "flat" / "data.json").read_text())["class_counts"]["train"]
    expected_scores = logit_adjust(scores, [counts[c] for c in classes], 1.0)
    expected = final_metrics(targets, expected_scores, expected_scores.argmax(1), classes, resamples=0)
    assert adjusted.mean["bacc"] == pytest.approx(expected["bacc"]) and adjusted.mean["acc"] == pytest.approx(
        expected["acc"]
    )
    assert plain.mean["bacc"] == json.loads((folder / "flat" / "metrics.json").read_text())["bacc"]
    (comparison,) = table.comparisons
    assert comparison.cell is adjusted and comparison.baseline is plain  # paired, on the same images
    markdown = report.markdown.read_text()
    assert "none logit_adjust=1.0" in markdown and "post-hoc logit adjustment" in markdown
    result = runner.invoke(app, ["report", str(folder), "--logit-adjust", "0.5", "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "logit_adjust=0.5" in result.output


# ---------------------------------------------------------------------------- what --out already holds

RUN_FILES = ("checkpoint.pt", "config.json", "metrics.json", "predictions.csv", "data.json", "metrics.jsonl")


def test_evaluate_refuses_an_out_that_holds_a_run_unless_overwrite(tmp_path, runs) -> None:
    """Issue 23, 7: ``evaluate runs/base --out runs/other`` replaced the other run's metrics, predictions and data
    silently (exit 0), and ``report`` then showed the base model's figures as the other setup's."""
    base, other = tmp_path / "base", tmp_path / "other"
    shutil.copytree(runs["flat"], base)
    shutil.copytree(runs["wide"], other)
    kept = {folder: {name: (folder / name).read_bytes() for name in RUN_FILES} for folder in (base, other)}
    for out, message in (
        (other, f"error: {other} holds a training run (checkpoint.pt, config.json, metrics.jsonl); choose another "
                "--out, or replace the run with the evaluation with --overwrite"),
        (base, f"error: --out {base} is a run being evaluated: its metrics.json and predictions.csv are the run's "
               "own; give the evaluation a folder of its own"),
    ):  # fmt: skip
        for overwrite in ([], ["--overwrite"]) if out == base else ([],):  # the run itself: even with --overwrite
            result = runner.invoke(app, ["evaluate", str(base), "--data", DATA, "--out", str(out), "--bootstrap", "0",
                                         *overwrite])  # fmt: skip
            assert result.exit_code == 2, result.output
            (line,) = error_lines(result.output)
            assert " ".join(line.split()) == message
    assert {folder: {name: (folder / name).read_bytes() for name in RUN_FILES} for folder in (base, other)} == kept
    assert len(collect_runs(tmp_path)) == 2
    result = runner.invoke(app, ["evaluate", str(base), "--data", DATA, "--out", str(other), "--bootstrap", "0",
                                 "--overwrite"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not any((other / name).exists() for name in ("checkpoint.pt", "config.json", "metrics.jsonl"))
    assert json.loads((other / "metrics.json").read_text())["runs"] == [str(base)]
    assert [run.path for run in collect_runs(tmp_path)] == [base]  # no longer read as a run of the other setup


def test_evaluate_redoes_its_own_evaluation_and_refuses_another_unless_overwrite(tmp_path, runs) -> None:
    run, out = runs["flat"], tmp_path / "e"
    args = ["evaluate", str(run), "--data", DATA, "--out", str(out), "--bootstrap", "0"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args[:-1], "10"])  # the same evaluation (the resamples do not change the scores)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "metrics.json").read_text())["bootstrap"]["resamples"] == 10
    cases = (
        (["--tta", "flip"], "tta 'none' there, 'flip' now"),
        (["--logit-adjust", "1"], "logit_adjust None there, 1.0 now"),
        (["--data", "synthetic:60:8"], "data 'synthetic:60:7' there, 'synthetic:60:8' now"),
    )
    for extra, difference in cases:
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result.output)
        assert line == (f"error: {out} holds another evaluation ({difference}); choose another --out, or replace it "
                        "with --overwrite")  # fmt: skip
    other = runner.invoke(app, ["evaluate", str(runs["wide"]), "--data", DATA, "--out", str(out), "--bootstrap", "0"])
    assert other.exit_code == 2 and "holds another evaluation (runs [" in " ".join(other.output.split())
    assert json.loads((out / "metrics.json").read_text())["tta"] == "none"
    result = runner.invoke(app, [*args, "--tta", "flip", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["tta"] == "flip"


# ------------------------------------------------------------------------------ bad input: exit 2, one line


def _run_with_classes(source: Path, folder: Path, classes: list[str]) -> Path:
    shutil.copytree(source, folder)
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    state["classes"] = classes
    torch.save(state, folder / "checkpoint.pt")
    return folder


@pytest.mark.parametrize(
    "case",
    ["different classes", "no images", "submission under a file", "submission is a folder", "negative tau",
     "unknown prior", "unknown tta", "unknown combine", "ensemble without out", "submission of other classes",
     "grid without finished runs", "report unknown prior", "report negative tau"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(tmp_path, runs, case) -> None:
    run = str(runs["flat"])
    (tmp_path / "a-file").write_text("")
    (tmp_path / "empty").mkdir()
    reversed_run = tmp_path / "reversed"
    args, message = {
        "different classes": (
            [run, str(_run_with_classes(runs["flat"], reversed_run, list(ISIC_CLASSES)[::-1])), "--out", "x"],
            "the runs of an ensemble need the same classes in the same order",
        ),
        "no images": ([run, "--data", str(tmp_path / "empty")], "no images in"),
        "submission under a file": (
            [run, "--submission", str(tmp_path / "a-file" / "s.csv")],
            "cannot write the submission",
        ),
        "submission is a folder": ([run, "--submission", str(tmp_path)], "is a folder: give the CSV file"),
        "negative tau": ([run, "--logit-adjust", "-0.5"], "--logit-adjust takes a tau >= 0"),
        "unknown prior": ([str(tmp_path / "old")], "the training prior of"),
        "unknown tta": ([run, "--tta", "rotate"], "unknown --tta 'rotate'; choose one of: none, flip, flip-rot, crops"),
        "unknown combine": ([run, "--combine", "vote"], "unknown --combine 'vote'; choose one of: mean, geometric"),
        "ensemble without out": ([run, run], "several runs (an ensemble) need --out"),
        "submission of other classes": (
            [str(_run_with_classes(runs["flat"], tmp_path / "letters", list("abcdefg"))), "--submission", "s.csv"],
            "--submission writes the ISIC 2018 Task 3 columns",
        ),
        "grid without finished runs": ([str(tmp_path / "empty")], "no run at"),
        "report unknown prior": (None, "the training prior of"),
        "report negative tau": (None, "--logit-adjust takes a tau >= 0"),
    }[case]
    if case in ("unknown prior", "report unknown prior", "report negative tau"):
        shutil.copytree(runs["flat"], tmp_path / "old")
        (tmp_path / "old" / "data.json").unlink()
        args = args or []
    if case.startswith("report"):
        tau = "-1" if case == "report negative tau" else "1"
        result = runner.invoke(app, ["report", str(tmp_path / "old"), "--logit-adjust", tau, "--no-figures"])
    else:
        extra = [] if "--data" in args else ["--data", DATA]
        if case == "unknown prior":
            extra += ["--logit-adjust", "1"]
        result = runner.invoke(app, ["evaluate", *args, *extra, "--bootstrap", "0"])
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert message in line, line
