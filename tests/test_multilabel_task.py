"""A multilabel run (``--task multilabel``) end to end: config, start-up refusals, training, metrics, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.data import read_dataset
from sampleweight.data.multilabel import taxonomy_labels, taxonomy_multilabel
from sampleweight.engine import loader
from sampleweight.engine.config import TrainConfig, complete_config
from sampleweight.engine.inference import probabilities
from sampleweight.engine.rundir import RunDirectory, read_predictions
from sampleweight.engine.training import train
from sampleweight.errors import DataError
from sampleweight.taxonomy import ISIC2018_TAXONOMY

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet", "--bootstrap", "0", "--epochs", "1"]  # fmt: skip
ISIC_LABELS = ["melanocytic", "non_melanocytic", "NV", "MEL", "benign", "malignant", "BKL", "DF", "VASC", "BCC",
               "AKIEC"]  # fmt: skip


def tiny(out, **overrides) -> dict:
    config = dict(
        data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
        lr=1e-3, quiet=True, out=out, bootstrap=0, task="multilabel",
    )  # fmt: skip
    return {**config, **overrides}


def own_labels(monkeypatch, columns: dict[str, np.ndarray]) -> None:
    """The engine reads ``synthetic:160`` as a multilabel data set with these label columns (0/1 per image)."""
    records = read_dataset("synthetic:160")
    labels = np.stack([np.asarray(column, dtype=np.int64) for column in columns.values()], axis=1)
    multilabel = replace(records, labels=labels, classes=tuple(columns))
    monkeypatch.setattr(loader, "read_dataset", lambda *args, **kwargs: multilabel)


def synthetic_columns() -> dict[str, np.ndarray]:
    records = read_dataset("synthetic:160")
    names = np.array(records.classes)[records.labels]
    return {
        "malignant": np.isin(names, ["MEL", "BCC", "AKIEC"]).astype(int),
        "pigmented": np.isin(names, ["MEL", "NV", "BKL"]).astype(int),
        "odd": np.arange(len(names)) % 2,
    }


def youden(targets: np.ndarray, scores: np.ndarray) -> float:
    """Youden's J by brute force over the distinct scores (on a tie the higher threshold)."""
    best, chosen = -np.inf, None
    for t in np.sort(np.unique(scores))[::-1]:
        decided = scores >= t
        j = decided[targets == 1].mean() - decided[targets == 0].mean()
        if j > best + 1e-12:
            best, chosen = j, t
    return float(chosen)


def test_the_task_is_a_config_field_with_a_sigmoid_loss_a_run_name_and_a_threshold_rule() -> None:
    config = TrainConfig(task="multilabel", threshold_specificity=0.9)
    assert config.loss == "bce" and config.run_name == "cbam_vgg16-bce-none-adam-s0-multilabel"
    assert complete_config({"model": "cbam_vgg16"})["task"] == "multiclass"  # an older run's config.json
    assert complete_config(config.model_dump(mode="json"))["threshold_specificity"] == 0.9
    with pytest.raises(ValueError, match="--positive applies to --task binary"):
        TrainConfig(task="multilabel", positive=["MEL"])


def test_multilabel_probabilities_are_each_labels_sigmoid_whatever_the_width() -> None:
    logits = torch.tensor([[0.3, -1.2, 2.0], [-0.5, 0.0, 4.0]])
    assert torch.equal(probabilities(logits, "multilabel"), logits.sigmoid())
    one = torch.tensor([[0.7], [-2.0]])  # one label: one logit, still one column, not [1 - p, p]
    assert torch.equal(probabilities(one, "multilabel"), one.sigmoid())
    assert probabilities(one).shape == (2, 2) and torch.allclose(probabilities(logits).sum(1), torch.ones(2))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--optimizer", "imbsam"], "--optimizer imbsam: it splits the loss by class, and a multilabel image has"),
        (["--model", "hierarchical_vgg16"], "decides along a label tree, a multiclass task only; use a flat model"),
        (["--mixer", "mixup"], "--mixer mixup: a mixer mixes class distributions, which a multilabel task's"),
        (["--weighter", "class_ohem"], "weighter 'class_ohem' serves multiclass, binary tasks, not this run's multi"),
        (["--sampler", "class_balanced"], "sampler 'class_balanced' serves multiclass, binary tasks, not this run's"),
        (["--loss", "ce"], "loss 'ce' serves multiclass tasks, not this run's multilabel task"),
        (["--positive", "MEL"], "--positive applies to --task binary"),
    ],
)
def test_a_multilabel_run_that_cannot_be_is_refused_in_one_line(tmp_path, flags, message) -> None:
    result = runner.invoke(app, ["train", *TINY, "--task", "multilabel", *flags, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_label_no_training_image_holds_is_refused_naming_it(tmp_path, monkeypatch) -> None:
    columns = synthetic_columns()
    own_labels(monkeypatch, {**columns, "never": np.zeros(160, dtype=int)})
    result = runner.invoke(app, ["train", *TINY, "--task", "multilabel", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no image of the training side (split 0, seed 0) holds the label(s) never;" in result.output
    with pytest.raises(DataError, match="holds the label"):
        train(tiny(None))
    monkeypatch.undo()
    own_labels(monkeypatch, columns)
    result = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path / "m")])  # a multiclass run of it
    assert result.exit_code == 2 and "is a multilabel data set (3 label columns)" in result.output


@pytest.fixture(scope="module")
def taxonomy_run(tmp_path_factory):
    """A 2-epoch multilabel run of a single-label data set (its taxonomy form), with OHEM and ES weights."""
    out = tmp_path_factory.mktemp("taxonomy") / "run"
    final = train(tiny(out, weighters=["ohem", "es"], epochs=2, bootstrap=50))
    return out, final


def test_a_single_label_data_set_trains_on_its_label_trees_nodes(taxonomy_run) -> None:
    out, final = taxonomy_run
    assert final["labels"] == ISIC_LABELS == list(taxonomy_labels(ISIC2018_TAXONOMY))
    records = read_dataset("synthetic:160")
    images, true, _, scores, columns = read_predictions(out / "predictions.csv")
    assert columns == ISIC_LABELS and scores.shape == (len(images), 11)
    tree = ISIC2018_TAXONOMY.with_classes(records.classes)
    where = {image: i for i, image in enumerate(records.image_ids)}
    expected = taxonomy_multilabel(records.labels[[where[image] for image in images]], tree)
    assert true == [";".join(np.array(ISIC_LABELS)[row == 1]) for row in expected]  # e.g. melanocytic;NV
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    heads = [value for key, value in checkpoint["model"].items() if value.ndim == 2 and value.shape[0] == 11]
    assert heads  # one logit per label
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"] == "multilabel" and saved["loss"] == "bce"
    assert out.name == "run" and final["run"].endswith("-multilabel")
    data = json.loads((out / "data.json").read_text())
    assert data["multilabel"] is True
    assert data["classes"] == ISIC_LABELS and data["images"]["validation"] == len(images)
    assert data["class_counts"]["validation"] == dict(zip(ISIC_LABELS, expected.sum(0).tolist(), strict=True))


def test_metrics_json_and_predictions_match_an_independent_computation(taxonomy_run) -> None:
    out, final = taxonomy_run
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(final))
    _, true, pred, scores, labels = read_predictions(out / "predictions.csv")
    targets = np.array([[name in row.split(";") for name in labels] for row in true], dtype=int)
    scores = scores.astype(np.float32)  # the run's float32 probabilities, exactly
    per_label = final["multilabel"]["per_label"]
    thresholds, aucs, baccs, f1s, precisions = [], [], [], [], []
    for i, name in enumerate(labels):
        figures = per_label[name]
        if 0 < targets[:, i].sum() < len(targets):
            assert figures["auc"] == pytest.approx(roc_auc_score(targets[:, i], scores[:, i]), abs=1e-12)
            assert figures["threshold"] == pytest.approx(youden(targets[:, i], scores[:, i]), abs=0)
            decided = scores[:, i] >= np.float32(figures["threshold"])
            assert figures["bacc"] == pytest.approx(balanced_accuracy_score(targets[:, i], decided), abs=1e-12)
            assert figures["f1"] == pytest.approx(f1_score(targets[:, i], decided), abs=1e-12)
            aucs.append(figures["auc"])
            baccs.append(figures["bacc"])
            f1s.append(figures["f1"])
            assert figures["ci"]["auc"] is not None
        else:  # one class only on the validation side: no figures, decided at 0.5
            assert figures["auc"] is None and figures["threshold"] is None
            decided = scores[:, i] >= 0.5
        thresholds.append(decided)
        if decided.any():
            precisions.append(targets[decided, i].mean())
    decisions = np.stack(thresholds, axis=1).astype(int)
    assert any(figures["auc"] is None for figures in per_label.values())  # DF: no validation image
    assert pred == [";".join(np.array(labels)[row == 1]) for row in decisions]
    assert final["acc"] == pytest.approx((decisions == targets).all(1).mean(), abs=1e-12)
    assert final["auc"] == pytest.approx(np.mean(aucs)) and final["bacc"] == pytest.approx(np.mean(baccs))
    assert final["mf1"] == final["f1"] == pytest.approx(np.mean(f1s))
    assert final["mpr"] == pytest.approx(np.mean(precisions))
    assert final["task"] == "multilabel" and final["decoding"] == "thresholds" and final["epochs"] == 2
    assert set(final) == {"task", "labels", "multilabel", "auc", "pauc", "ap", "bacc", "f1", "acc", "mpr", "mf1",
                          "decoding", "epochs", "run"}  # fmt: skip
    epochs = RunDirectory(out).epochs()
    assert len(epochs) == 2 and not {"val_acc", "val_bacc", "val_mpr", "val_mf1"} & set(epochs[-1])
    assert epochs[-1]["val_auc"] == pytest.approx(final["auc"]) and epochs[-1]["val_ap"] == pytest.approx(final["ap"])
    assert epochs[-1]["val_pauc"] == pytest.approx(final["pauc"])


def test_a_multilabel_data_set_trains_on_its_own_labels_and_draws_positives_per_label(tmp_path, monkeypatch) -> None:
    columns = synthetic_columns()
    own_labels(monkeypatch, columns)
    final = train(tiny(tmp_path / "own", sampler="repeat_factor", sampler_options={"threshold": 0.4}))
    assert final["labels"] == ["malignant", "pigmented", "odd"]
    drawn = RunDirectory(tmp_path / "own").epochs()[0]["drawn"]
    training = json.loads((tmp_path / "own" / "data.json").read_text())["class_counts"]["train"]
    assert set(drawn) == set(columns) and drawn["malignant"] > training["malignant"]  # repeated by its rarest label
    plain = train(tiny(tmp_path / "plain", weighters=["cb"]))
    # cb weighs the term (j, l) N / N_pos,l or N / N_neg,l: over an epoch drawing every image once, the mean term
    # weight is (1 / N L) sum_l (N_pos,l N / N_pos,l + N_neg,l N / N_neg,l) = 2
    assert RunDirectory(tmp_path / "plain").epochs()[0]["mean_weight"] == pytest.approx(2.0, rel=1e-6)
    assert (
        RunDirectory(tmp_path / "plain").epochs()[0]["drawn"]
        == json.loads((tmp_path / "plain" / "data.json").read_text())["class_counts"]["train"]
    )  # the instance sampler: every training image once
    assert plain["multilabel"]["per_label"]["odd"]["positives"] > 0
    monkeypatch.undo()
    own_labels(monkeypatch, {"malignant": columns["malignant"]})
    one = train(tiny(tmp_path / "one", threshold_specificity=0.9))
    _, _, _, scores, labels = read_predictions(tmp_path / "one" / "predictions.csv")
    assert labels == ["malignant"] and scores.shape[1] == 1  # one logit, its sigmoid
    assert one["multilabel"]["per_label"]["malignant"]["threshold_rule"] == 0.9


def test_a_multilabel_run_resumed_mid_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, interrupt_after_epoch):
    options = {"epochs": 3, "weighters": ["ohem", "cb"]}
    whole = train(tiny(tmp_path / "whole", **options))
    interrupt_after_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "parts", **options))
    monkeypatch.undo()
    resumed = train(tiny(tmp_path / "parts", **options), resume=True)
    assert resumed == whole
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    timing = ("seconds", "images_per_second")
    parts, uninterrupted = RunDirectory(tmp_path / "parts").epochs(), RunDirectory(tmp_path / "whole").epochs()
    assert [{k: v for k, v in line.items() if k not in timing} for line in parts] == [
        {k: v for k, v in line.items() if k not in timing} for line in uninterrupted
    ]
    assert (tmp_path / "whole" / "predictions.csv").read_text() == (tmp_path / "parts" / "predictions.csv").read_text()


def test_evaluate_scores_a_multilabel_run_at_its_validation_thresholds_and_writes_its_submission(
    taxonomy_run, tmp_path
) -> None:
    from sampleweight.engine.evaluation import evaluate

    run, trained = taxonomy_run
    submission = tmp_path / "submission.csv"
    metrics, folder = evaluate(
        run, "synthetic:160", out=tmp_path / "e", quiet=True, bootstrap=20, submission=submission
    )
    assert metrics["task"] == "multilabel" and metrics["labels"] == ISIC_LABELS and metrics["labelled"]
    images, true, pred, scores, labels = read_predictions(folder / "predictions.csv")
    assert len(images) == 160 and labels == ISIC_LABELS
    targets = np.array([[name in row.split(";") for name in labels] for row in true], dtype=int)
    records = read_dataset("synthetic:160")
    tree = ISIC2018_TAXONOMY.with_classes(records.classes)
    assert np.array_equal(targets, taxonomy_multilabel(records.labels, tree))  # the taxonomy form of every image
    scores = scores.astype(np.float32)
    decided = []
    for i, name in enumerate(labels):
        figures, validation = metrics["multilabel"]["per_label"][name], trained["multilabel"]["per_label"][name]
        if validation["threshold"] is None:  # DF had no validation image: decided at 0.5
            assert figures["threshold"] == 0.5 and figures["threshold_rule"].startswith("0.5: a run had no")
        else:
            assert figures["threshold"] == validation["threshold"]
            assert figures["threshold_rule"] == "the run's validation threshold"
        assert figures["auc"] == pytest.approx(roc_auc_score(targets[:, i], scores[:, i]), abs=1e-12)
        decided.append(scores[:, i] >= np.float32(figures["threshold"]))
    decisions = np.stack(decided, axis=1).astype(int)
    assert pred == [";".join(np.array(labels)[row == 1]) for row in decisions]
    assert metrics["acc"] == pytest.approx((decisions == targets).all(1).mean(), abs=1e-12)
    lines = submission.read_text().splitlines()
    assert lines[0] == "image," + ",".join(ISIC_LABELS) and len(lines) == 161
    first = lines[1].split(",")
    assert first[0] == images[0] and np.allclose([float(v) for v in first[1:]], scores[0], atol=1e-7)
    assert json.loads((folder / "data.json").read_text())["class_counts"]["evaluated"] == dict(
        zip(ISIC_LABELS, targets.sum(0).tolist(), strict=True)
    )


def test_an_ensemble_with_tta_averages_each_labels_probabilities_and_thresholds(taxonomy_run, tmp_path) -> None:
    from sampleweight.engine.evaluation import combine_probabilities, evaluate

    first, _ = taxonomy_run
    second = tmp_path / "second"
    train(tiny(second, seed=1))
    singles = [
        evaluate(run, "synthetic:160", out=tmp_path / f"one{i}", quiet=True, bootstrap=0, tta="flip")[0]
        for i, run in enumerate((first, second))
    ]
    metrics, folder = evaluate(
        [first, second], "synthetic:160", out=tmp_path / "ens", quiet=True, bootstrap=0, tta="flip"
    )
    assert metrics["tta"] == "flip" and metrics["views"] == 4
    parts = [read_predictions(tmp_path / f"one{i}" / "predictions.csv")[3] for i in range(2)]
    np.testing.assert_allclose(read_predictions(folder / "predictions.csv")[3], (parts[0] + parts[1]) / 2, atol=1e-8)
    for name in ISIC_LABELS:
        figures = metrics["multilabel"]["per_label"][name]
        own = [single["multilabel"]["per_label"][name] for single in singles]
        if all(entry["threshold_rule"] == "the run's validation threshold" for entry in own):
            assert figures["threshold"] == pytest.approx((own[0]["threshold"] + own[1]["threshold"]) / 2)
            assert figures["threshold_rule"] == "the mean of the runs' validation thresholds"
        else:
            assert figures["threshold"] == 0.5
    p = np.random.default_rng(0).uniform(0.01, 0.99, (3, 5, 4))
    geometric = np.exp(np.log(p).mean(0)) / (np.exp(np.log(p).mean(0)) + np.exp(np.log(1 - p).mean(0)))
    np.testing.assert_allclose(combine_probabilities(list(p), "geometric", multilabel=True), geometric, atol=1e-12)


def test_evaluate_reads_a_multilabel_data_set_of_the_runs_labels_and_refuses_others(tmp_path, monkeypatch) -> None:
    from sampleweight.engine import evaluation
    from sampleweight.errors import ConfigError

    columns = synthetic_columns()
    own_labels(monkeypatch, columns)
    train(tiny(tmp_path / "run"))
    records = loader.read_dataset("synthetic:160")
    monkeypatch.setattr(evaluation, "read_dataset", lambda *args, **kwargs: records)
    metrics, _ = evaluation.evaluate(tmp_path / "run", "synthetic:160", out=tmp_path / "e", quiet=True, bootstrap=0)
    assert metrics["labels"] == ["malignant", "pigmented", "odd"]
    assert metrics["multilabel"]["per_label"]["odd"]["positives"] == 80
    renamed = replace(records, classes=("malignant", "pigmented", "even"))
    monkeypatch.setattr(evaluation, "read_dataset", lambda *args, **kwargs: renamed)
    with pytest.raises(DataError, match=r"has the labels malignant, pigmented, even but the runs were trained on ma"):
        evaluation.evaluate(tmp_path / "run", "synthetic:160", out=tmp_path / "e2", quiet=True, bootstrap=0)
    monkeypatch.undo()  # a single-label data set: its taxonomy form has other labels than this run's
    with pytest.raises(DataError, match="is a single-label data set, whose label-tree form has the labels melano"):
        evaluation.evaluate(tmp_path / "run", "synthetic:160", out=tmp_path / "e3", quiet=True, bootstrap=0)
    with pytest.raises(ConfigError, match="--logit-adjust shifts a softmax by its class prior; a multilabel run"):
        evaluation.evaluate(tmp_path / "run", "synthetic:160", out=tmp_path / "e4", logit_adjust=1.0)
    train(tiny(tmp_path / "multiclass", task="multiclass"))
    with pytest.raises(ConfigError, match="the runs of an ensemble need the same classes"):
        evaluation.evaluate([tmp_path / "run", tmp_path / "multiclass"], "synthetic:160", out=tmp_path / "e5")
    plain = read_dataset("synthetic:160")  # one-hot label columns named as the classes: the same names, another task
    own_labels(monkeypatch, {name: plain.labels == i for i, name in enumerate(plain.classes)})
    train(tiny(tmp_path / "one-hot"))
    with pytest.raises(ConfigError, match=r"the runs of an ensemble need the same task: .* is a multilabel run, "):
        evaluation.evaluate([tmp_path / "one-hot", tmp_path / "multiclass"], "synthetic:160", out=tmp_path / "e6")


def test_a_grid_carries_the_multilabel_task_skips_finished_runs_and_summarises_their_figures(tmp_path) -> None:
    import csv

    from sampleweight.studies.grid import plan_grid, run_grid

    options = {key: value for key, value in tiny(None).items() if key != "out"}
    grid = plan_grid(tmp_path / "grid", weighters="none,spl", optimizers="adam", splits="0", options=options)
    assert [run.name for run in grid.runs] == [
        "cbam_vgg16-bce-none-adam-s0-multilabel",
        "cbam_vgg16-bce-spl-adam-s0-multilabel",
    ]
    assert {run.config.task for run in grid.runs} == {"multilabel"}
    first = run_grid(grid, progress=False)
    assert [outcome.status for outcome in first] == ["trained", "trained"]
    again = run_grid(plan_grid(tmp_path / "grid", weighters="none,spl", optimizers="adam", splits="0", options=options),
                     progress=False)  # fmt: skip
    assert [outcome.status for outcome in again] == ["skipped", "skipped"]
    with open(tmp_path / "grid" / "summary.csv", newline="") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    for run in grid.runs:
        final = json.loads((run.path / "metrics.json").read_text())
        assert final["task"] == "multilabel" and rows[run.name]["state"] == "finished"
        for figure in ("acc", "bacc", "mpr", "mf1"):
            assert rows[run.name][figure] == ("" if final[figure] is None else f"{final[figure]:.6f}")
    from sampleweight.studies.testset import evaluate_each

    each = evaluate_each(tmp_path / "grid", "synthetic:160", tmp_path / "test", bootstrap=0, progress=False)
    assert [outcome.status for outcome in each] == ["evaluated", "evaluated"]
    assert {outcome.metrics["task"] for outcome in each} == {"multilabel"}
    recorded = json.loads((each[0].out / "run.json").read_text())
    assert set(recorded["train_class_counts"]) == set(ISIC_LABELS)  # positives per label on the training side
    with pytest.raises(Exception, match="optimizer imbsam: it splits the loss by class"):
        plan_grid(tmp_path / "grid", weighters="none", optimizers="imbsam", splits="0", options=options)


def test_retrain_refuses_a_multilabel_run_in_one_line(taxonomy_run, tmp_path) -> None:
    from sampleweight.engine.retraining import retrain
    from sampleweight.errors import ConfigError

    run, _ = taxonomy_run
    with pytest.raises(ConfigError, match=r"is a multilabel run, one sigmoid logit per label") as raised:
        retrain(run, "crt", tmp_path / "r")
    assert "\n" not in str(raised.value) and not (tmp_path / "r").exists()


def test_unlabelled_images_get_their_labels_probabilities_and_decisions_without_metrics(taxonomy_run, tmp_path):
    from PIL import Image

    from sampleweight.engine.evaluation import evaluate

    run, trained = taxonomy_run
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"IMG_{i}.png")
    submission = tmp_path / "submission.csv"
    metrics, out = evaluate(run, folder, out=tmp_path / "e", quiet=True, submission=submission)
    assert not metrics["labelled"] and metrics["n"] == 3 and metrics["labels"] == ISIC_LABELS
    images, true, pred, scores, _ = read_predictions(out / "predictions.csv")
    assert images == ["IMG_0", "IMG_1", "IMG_2"] and true == ["", "", ""]
    per_label = trained["multilabel"]["per_label"]
    thresholds = np.array(
        [0.5 if per_label[n]["threshold"] is None else per_label[n]["threshold"] for n in ISIC_LABELS]
    )
    decided = scores.astype(np.float32) >= thresholds.astype(np.float32)
    assert pred == [";".join(np.array(ISIC_LABELS)[row]) for row in decided]
    assert submission.read_text().splitlines()[0] == "image," + ",".join(ISIC_LABELS)


def test_attention_figures_refuse_a_multilabel_run_in_one_line(taxonomy_run, tmp_path) -> None:
    from sampleweight.errors import ConfigError
    from sampleweight.studies.attention import attention_figures

    run, _ = taxonomy_run
    with pytest.raises(
        ConfigError, match="is a multilabel run: the attention figures show a multiclass run's"
    ) as raised:
        attention_figures([run], out=tmp_path / "a", device="cpu")
    assert "\n" not in str(raised.value)


def test_a_labels_csv_folder_trains_and_is_evaluated_end_to_end(tmp_path) -> None:
    """The multilabel layout read from files: 3 labels (one rare) over 80 images in lesion pairs, trained, then the run
    evaluated on the same folder: its labels, its predictions' true labels and its evaluation's are the file's."""
    from PIL import Image

    rng = np.random.default_rng(7)
    labels = rng.random((80, 3)) < [0.5, 0.3, 0.1]
    labels[:6, 2] = True  # the rare label on enough lesions for both sides
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    lines = ["image,lesion_id,pigmented,scaly,ulcerated"]
    for i, row in enumerate(labels.astype(int)):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        lines.append(f"im{i},L{i // 2},{row[0]},{row[1]},{row[2]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    flags = [*TINY[2:], "--data", str(root), "--task", "multilabel", "--epochs", "2", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, ["train", *flags])
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert final["labels"] == ["pigmented", "scaly", "ulcerated"]
    images, true, _, _, _ = read_predictions(tmp_path / "run" / "predictions.csv")
    names = np.array(final["labels"])
    assert true == [";".join(names[labels[int(image[2:])]]) for image in images]
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["layout"] == "multilabel" and data["multilabel"] is True
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(root), "--out",
                                 str(tmp_path / "evaluated"), "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "evaluated" / "metrics.json").read_text())
    assert evaluated["labels"] == final["labels"]
    e_images, e_true, _, _, _ = read_predictions(tmp_path / "evaluated" / "predictions.csv")
    assert len(e_images) == 80 and e_true == [";".join(names[labels[int(image[2:])]]) for image in e_images]
