"""A binary run (``--task binary --positive MEL``) end to end: config, start-up refusals, training, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from sampleweight.binary_metrics import binary_metrics
from sampleweight.cli import app
from sampleweight.data import build_datasets, read_dataset
from sampleweight.data.binary import binary_records, binary_split, positive_indices
from sampleweight.engine.config import TrainConfig
from sampleweight.engine.rundir import read_predictions
from sampleweight.engine.training import train
from sampleweight.errors import ConfigError

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet", "--bootstrap", "100"]  # fmt: skip


def tiny(out, **overrides) -> dict:
    config = dict(
        data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
        lr=1e-3, quiet=True, out=out, bootstrap=100,
    )  # fmt: skip
    return {**config, **overrides}


def test_the_task_is_a_config_field_with_its_default_loss_and_run_name() -> None:
    assert TrainConfig().task == "multiclass" and TrainConfig().run_name == "cbam_vgg16-ce-none-adam-s0"
    binary = TrainConfig(task="binary", positive=["MEL,BCC"])
    assert binary.loss == "bce" and binary.positive == ["MEL", "BCC"]
    assert binary.run_name == "cbam_vgg16-bce-none-adam-s0-binary-MEL+BCC"
    assert TrainConfig(task="binary", loss="asl").loss == "asl"
    with pytest.raises(ValueError, match="--positive applies to --task binary"):
        TrainConfig(positive=["MEL"])
    with pytest.raises(ValueError, match="--threshold-specificity applies to --task binary and --task multilabel"):
        TrainConfig(threshold_specificity=0.9)


def test_positive_classes_and_relabelled_splits_keep_the_multiclass_split() -> None:
    records = read_dataset("synthetic:160")
    assert positive_indices(records.classes, ["BCC", "MEL"]) == (0, 2)
    with pytest.raises(ConfigError, match="needs --positive CLASS"):
        positive_indices(records.classes, None)
    with pytest.raises(ConfigError, match="--positive XYZ: not a class of this data set; its classes: MEL, NV"):
        positive_indices(records.classes, ["XYZ"])
    assert positive_indices(("benign", "malignant"), None) == (1,)
    data = build_datasets(records, 0, 0, image_size=32, augment="batch", progress=False)
    val_before, labels_before = data.val.record_indices.copy(), data.val.labels.copy()
    binary = binary_split(data, records, ["MEL"])
    assert np.array_equal(binary.val.record_indices, val_before)  # the same images on each side
    assert np.array_equal(binary.val.labels, (labels_before == 0).astype(int))
    assert binary.classes == ("rest", "MEL")
    assert binary.class_counts.tolist() == [int((binary.train.labels == 0).sum()), int(binary.train.labels.sum())]
    relabelled = binary_records(records, ["MEL"])
    assert relabelled.classes == ("rest", "MEL") and relabelled.labels.tolist() == (records.labels == 0).tolist()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "ce"], "loss 'ce' serves multiclass tasks, not this run's binary task; losses for binary: asl"),
        (["--model", "hierarchical_vgg16"], "decides along a label tree, a multiclass task only"),
        (["--positive", "XYZ"], "--positive XYZ: not a class of this data set"),
        (["--mixer", "mixup"], "--mixer mixup: a mixer mixes class distributions, which a binary task's sigmoid"),
    ],
)
def test_a_run_of_the_wrong_task_is_refused_in_one_line(tmp_path, flags, message) -> None:
    task = [] if "--task" in flags else ["--task", "binary"]
    positive = [] if "--positive" in flags or "--task" in flags else ["--positive", "MEL"]
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", *task, *positive, *flags, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_binary_run_trains_one_logit_and_writes_the_challenge_metrics(tmp_path) -> None:
    final = train(tiny(tmp_path / "b", task="binary", positive=["MEL"], weighters=["ohem", "es"], epochs=2))
    assert final["classes"] == ["rest", "MEL"] and final["task"] == "binary"
    images, true, _, scores, classes = read_predictions(tmp_path / "b" / "predictions.csv")
    targets = np.array([classes.index(t) for t in true])
    np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)
    figures = final["binary"]
    assert figures["auc"] == pytest.approx(roc_auc_score(targets, scores[:, 1]), abs=1e-5)
    again = binary_metrics(targets, scores[:, 1], resamples=0)
    assert figures["threshold"] == pytest.approx(again["threshold"], abs=1e-5)
    assert set(figures["ci"]) == {k for k in figures if k in figures["ci"]} and figures["ci"]["pauc"] is not None
    epochs = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert {"val_auc", "val_pauc"} <= set(epochs[-1])
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["task"] == "binary" and saved["positive"] == ["MEL"] and saved["loss"] == "bce"
    data = json.loads((tmp_path / "b" / "data.json").read_text())
    assert data["classes"] == ["rest", "MEL"]
    multiclass = train(tiny(tmp_path / "m", bootstrap=0))
    _, _, _, _, _ = read_predictions(tmp_path / "m" / "predictions.csv")
    assert multiclass["n"] == final["n"]
    assert read_predictions(tmp_path / "m" / "predictions.csv")[0] == images  # the same validation images


def test_the_class_balanced_sampler_balances_positives_and_negatives(tmp_path) -> None:
    train(tiny(tmp_path, task="binary", positive=["MEL"], sampler="class_balanced", bootstrap=0))
    drawn = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["drawn"]
    assert set(drawn) == {"rest", "MEL"} and abs(drawn["rest"] - drawn["MEL"]) <= 0.25 * sum(drawn.values())


def test_evaluate_scores_binary_runs_with_their_validation_threshold_and_writes_the_isic_2020_submission(tmp_path):
    from sampleweight.engine.evaluation import evaluate

    first = tmp_path / "a"
    train(tiny(first, task="binary", positive=["MEL"]))
    threshold = json.loads((first / "metrics.json").read_text())["binary"]["threshold"]
    submission = tmp_path / "submission.csv"
    metrics, folder = evaluate(
        first, "synthetic:160", out=tmp_path / "e", quiet=True, bootstrap=50, submission=submission
    )
    assert metrics["classes"] == ["rest", "MEL"] and metrics["task"] == "binary"
    assert metrics["binary"]["threshold"] == pytest.approx(threshold)
    assert metrics["binary"]["threshold_rule"] == "the run's validation threshold"
    images, true, _, scores, _ = read_predictions(folder / "predictions.csv")
    assert len(images) == 160 and set(true) == {"rest", "MEL"}
    lines = submission.read_text().splitlines()
    assert lines[0] == "image_name,target" and len(lines) == 161
    assert float(lines[1].split(",")[1]) == pytest.approx(scores[0, 1], abs=1e-6)
    targets = np.array([t == "MEL" for t in true], dtype=int)
    assert metrics["binary"]["auc"] == pytest.approx(roc_auc_score(targets, scores[:, 1]))
    second = tmp_path / "b"
    train(tiny(second, task="binary", positive=["MEL"], seed=1))
    ensemble, _ = evaluate([first, second], "synthetic:160", out=tmp_path / "ens", quiet=True, bootstrap=0, tta="flip")
    assert ensemble["binary"]["threshold_rule"] == "the mean of the runs' validation thresholds"
    multiclass = tmp_path / "m"
    train(tiny(multiclass, bootstrap=0))
    with pytest.raises(ConfigError, match="need the same classes"):
        evaluate([first, multiclass], "synthetic:160", out=tmp_path / "mixed", quiet=True)


def test_retrain_refuses_a_binary_run_in_one_line(tmp_path) -> None:
    from sampleweight.engine.retraining import retrain

    train(tiny(tmp_path / "b", task="binary", positive=["MEL"], bootstrap=0))
    with pytest.raises(ConfigError, match=r"is a binary run, one sigmoid logit per label: tau-norm and LWS") as raised:
        retrain(tmp_path / "b", "crt", tmp_path / "r")
    assert "\n" not in str(raised.value) and not (tmp_path / "r").exists()


def _isic2020(root, patients: int = 12, per_patient: int = 4):
    from PIL import Image

    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"]
    for p in range(patients):
        for k in range(per_patient):
            name = f"ISIC_{p:03d}{k}"
            target = int(k == 0 and p % 3 == 0)
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "train" / f"{name}.jpg")
            lines.append(f"{name},IP_{p:03d},male,50,torso,unknown,{'malignant' if target else 'benign'},{target}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_the_isic_2020_training_layout_is_read_grouped_by_patient_and_trains_binary(tmp_path) -> None:
    from sampleweight.data import split_indices

    root = _isic2020(tmp_path / "isic2020")
    records = read_dataset(root)
    assert records.layout == "isic2020" and records.classes == ("benign", "melanoma")
    assert records.groups[0] == "IP_000" and int(records.labels.sum()) == 4
    train_idx, val_idx = split_indices(records, 0, 0, 0.25)
    assert not {records.groups[i] for i in train_idx} & {records.groups[i] for i in val_idx}  # no patient on both
    final = train(tiny(tmp_path / "run", data=str(root), task="binary", batch_size=8, bootstrap=0))
    assert final["classes"] == ["rest", "melanoma"] and final["binary"]["positives"] >= 1
    bad = tmp_path / "bad"
    _isic2020(bad, patients=2)
    (bad / "train.csv").write_text((bad / "train.csv").read_text().replace(",0\n", ",2\n", 1))
    with pytest.raises(Exception, match="target not 0 or 1"):
        read_dataset(bad)


def test_a_grid_carries_the_task_and_takes_its_default_loss() -> None:
    from sampleweight.studies.grid import plan_grid

    options = {"task": "binary", "positive": ["MEL"], "epochs": 1}
    grid = plan_grid("/tmp/unused", models="cbam_vgg16", weighters="none,ohem+es", optimizers="adam", options=options)
    assert [run.name for run in grid.runs][:2] == [
        "cbam_vgg16-bce-none-adam-s0-binary-MEL",
        "cbam_vgg16-bce-none-adam-s1-binary-MEL",
    ]
    assert {run.config.task for run in grid.runs} == {"binary"}
    plain = plan_grid("/tmp/unused", models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0")
    assert [run.name for run in plain.runs] == ["cbam_vgg16-ce-none-adam-s0"]
    with pytest.raises(ConfigError, match="loss 'ce' serves multiclass tasks, not this run's binary task"):
        plan_grid("/tmp/unused", models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", options=options)
