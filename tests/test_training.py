"""The training engine and the train / evaluate / demo commands, end to end on tiny synthetic runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app
from sampleweight.engine.rundir import RunDirectory, read_predictions
from sampleweight.engine.training import train

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet"]  # fmt: skip


def tiny_config(out: Path | None, **overrides) -> dict:
    config = dict(
        data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=2,
        lr=1e-3, quiet=True, out=out,
    )  # fmt: skip
    return {**config, **overrides}


def test_cli_train_writes_the_run_directory(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", *TINY, "--epochs", "2", "--weighter", "ohem", "--weighter", "es", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "config.json", "data.json", "metrics.json", "metrics.jsonl", "predictions.csv",
    ]  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["weighters"] == ["ohem", "es"] and config["device"] == "cpu" and config["precision"] == "fp32"
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert {"train_loss", "mean_weight", "lr", "seconds", "val_acc", "val_bacc", "val_mpr", "val_mf1"} <= set(epochs[0])
    final = json.loads((out / "metrics.json").read_text())
    assert {"acc", "bacc", "mpr", "mf1", "per_class", "confusion", "classes"} <= set(final)
    assert final["classes"] == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert set(final["per_class"]["NV"]) == {"recall", "precision", "f1", "support", "auc"}
    assert final["bacc"] == epochs[-1]["val_bacc"]


def test_final_metrics_equal_scikit_learn_on_the_written_predictions(tmp_path) -> None:
    final = train(tiny_config(tmp_path, epochs=1))
    images, true, pred, scores, classes = read_predictions(tmp_path / "predictions.csv")
    assert classes == final["classes"] and len(images) == final["n"] == len(set(images))
    assert pred == [classes[i] for i in scores.argmax(1)]
    labels = sorted(set(true))
    assert final["acc"] == pytest.approx(skm.accuracy_score(true, pred))
    assert final["bacc"] == pytest.approx(skm.recall_score(true, pred, labels=labels, average="macro"))
    assert final["mpr"] == pytest.approx(
        skm.precision_score(true, pred, labels=labels, average="macro", zero_division=0)
    )
    assert final["mf1"] == pytest.approx(skm.f1_score(true, pred, labels=labels, average="macro", zero_division=0))
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-4)


def test_metrics_json_holds_bootstrap_intervals_and_calibration_in_train_and_evaluate(tmp_path) -> None:
    from sampleweight.metrics import expected_calibration_error, negative_log_likelihood

    run = tmp_path / "run"
    final = train(tiny_config(run, epochs=1, bootstrap=300))
    assert json.loads((run / "metrics.json").read_text()) == final
    assert final["bootstrap"] == {"resamples": 300, "seed": 0, "level": 0.95, "stratified": True}
    assert set(final["ci"]) == {"acc", "bacc", "mpr", "mf1", "auc", "per_class"}
    for metric in ("acc", "bacc", "mpr", "mf1"):
        low, high = final["ci"][metric]
        assert 0 <= low <= final[metric] <= high <= 1
    assert set(final["ci"]["per_class"]) == set(final["classes"])
    for name, intervals in final["ci"]["per_class"].items():
        assert set(intervals) == {"recall", "auc"}
        recall, auc = intervals["recall"], intervals["auc"]
        assert (recall is None) == (final["per_class"][name]["support"] == 0)  # no interval for an absent class
        assert (auc is None) == (final["per_class"][name]["auc"] is None) == (recall is None)
        if recall is not None:
            assert recall[0] <= final["per_class"][name]["recall"] <= recall[1]
            assert auc[0] <= final["per_class"][name]["auc"] <= auc[1]
    assert final["ci"]["auc"][0] <= final["auc"] <= final["ci"]["auc"][1]
    _, true, _, scores, classes = read_predictions(run / "predictions.csv")
    targets = [classes.index(t) for t in true]
    assert final["ece"] == pytest.approx(expected_calibration_error(targets, scores), abs=1e-4)
    assert final["nll"] == pytest.approx(negative_log_likelihood(targets, scores), abs=1e-4)
    for flags, has_ci in ((["--bootstrap", "0"], False), ([], True)):
        result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:60:7", "--out", str(tmp_path / "e"),
                                     *flags])  # fmt: skip
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
        assert ("ci" in metrics) is has_ci and "ece" in metrics and "nll" in metrics
    assert metrics["bootstrap"]["resamples"] == 2000
    # the number of resamples is an execution option: a finished run resumes with another one
    again = train(tiny_config(run, epochs=1, bootstrap=0), resume=True)
    assert "ci" not in again and again["acc"] == final["acc"]


SAMPLERS = {  # every built-in; drs turns class-balanced at epoch 2 of 3, after the resumption
    "instance": {}, "class_balanced": {}, "sqrt": {}, "progressive": {}, "repeat_factor": {"threshold": 0.2},
    "drs": {"start": 0.5},
}  # fmt: skip


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path, monkeypatch, interrupt_after_epoch, sampler: str
) -> None:
    options = {"epochs": 3, "weighters": ["ohem"], "sampler": sampler, "sampler_options": SAMPLERS[sampler]}
    whole = train(tiny_config(tmp_path / "whole", **options))
    interrupt_after_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "parts", **options))
    monkeypatch.undo()
    assert not (tmp_path / "parts" / "metrics.json").exists()
    resumed = train(tiny_config(tmp_path / "parts", **options), resume=True)
    assert resumed == whole
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["criterion"] == b["criterion"] or all(
        torch.equal(a["criterion"][k], b["criterion"][k]) if isinstance(a["criterion"][k], torch.Tensor)
        else a["criterion"][k] == b["criterion"][k] for k in a["criterion"]
    )  # fmt: skip
    lines = RunDirectory(tmp_path / "parts").epochs()
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    for key in ("val_bacc", "train_loss", "drawn"):
        assert [line[key] for line in lines] == [line[key] for line in RunDirectory(tmp_path / "whole").epochs()]
    mode = {"fixed_length": False} if sampler == "repeat_factor" else {}  # its epochs grow (LVIS)
    assert a["sampler"] == b["sampler"] == {"epoch": 2, "sampler": {"epoch": 2, **mode}}


def test_cli_resume_reads_the_runs_own_config(tmp_path, monkeypatch, interrupt_after_epoch) -> None:
    interrupt_after_epoch(0)
    out = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", *TINY, "--epochs", "2", "--weighter", "ohem", "--out", str(out)]).exit_code == 130
    )
    monkeypatch.undo()
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--quiet"])  # no other option
    assert result.exit_code == 0, result.output
    assert [line["epoch"] for line in RunDirectory(out).epochs()] == [0, 1]


def test_resume_with_different_options_is_refused(tmp_path) -> None:
    train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(sw.ConfigError, match="--resume with a different loss"):
        train(tiny_config(tmp_path, epochs=2, loss="focal"), resume=True)
    with pytest.raises(sw.ConfigError, match="nothing to resume"):
        train(tiny_config(tmp_path / "empty", epochs=1), resume=True)


def test_hierarchical_model_trains_with_the_hierarchical_focal_loss(tmp_path) -> None:
    final = train(
        tiny_config(tmp_path, model="hierarchical_vgg16", loss="focal", gamma=1.0, weighters=["es"], epochs=1)
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "hierarchical_vgg16" and config["epochs"] == 1
    _, _, _, scores, _ = read_predictions(tmp_path / "predictions.csv")
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-4)
    assert 0.0 <= final["bacc"] <= 1.0


def test_bf16_autocast_on_cpu(tmp_path, monkeypatch) -> None:
    seen: list[torch.dtype] = []
    original = torch.nn.Linear.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    final = train(tiny_config(tmp_path, epochs=1, precision="bf16"))
    assert torch.bfloat16 in seen
    assert np.isfinite([final[k] for k in ("acc", "bacc", "mpr", "mf1")]).all()
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "bf16"


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_cpu_execution_defaults_are_channels_last_and_a_fused_optimizer(optimizer: str) -> None:
    from sampleweight.engine.config import load_config
    from sampleweight.engine.training import prepare_run

    run = prepare_run(load_config(**tiny_config(None, optimizer=optimizer, device="cpu")))
    assert run.config.channels_last is True
    convs = [m.weight for m in run.network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert run.optimizer.defaults["fused"] is True and run.optimizer.param_groups[0]["fused"] is True


@pytest.mark.parametrize("flag, channels_last", [([], True), (["--no-channels-last"], False)])
def test_the_model_sees_the_memory_format_asked_for(tmp_path, monkeypatch, flag, channels_last) -> None:
    seen: list[bool] = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        if x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:  # a [B, C, 1, 1] tensor is in both formats
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", *flag, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "config.json").read_text())["channels_last"] is channels_last
    assert seen and set(seen) == {channels_last}


def test_evaluate_a_run_on_another_data_set(tmp_path) -> None:
    run = tmp_path / "run"
    train(tiny_config(run, epochs=1))
    result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:60:7", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    images, true, pred, _, _ = read_predictions(tmp_path / "eval" / "predictions.csv")
    assert len(images) == metrics["n"] == 60
    assert metrics["acc"] == pytest.approx(np.mean(np.array(true) == np.array(pred)))
    # the checkpoint file works as well, and defaults to RUN/evaluate
    result = runner.invoke(app, ["evaluate", str(run / "checkpoint.pt"), "--data", "synthetic:60:7"])
    assert result.exit_code == 0 and (run / "evaluate" / "metrics.json").is_file()


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler")
def test_a_compiled_run_trains_and_its_checkpoint_loads_uncompiled(tmp_path) -> None:
    """``--compile`` (the CUDA recipe's last step) on the CPU: inductor compiles train and eval graphs."""
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--compile", "--weighter", "ohem", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["compile"] is True
    state = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert not any(key.startswith("_orig_mod.") for key in state)  # the bare network's weights
    result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:60:7", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--weighter", "ohm"],
            "unknown weighter 'ohm'; choose one of: cb, class_ohem, class_spl, drw, es, none, ohem, spl",
        ),
        (["--data", "/nonexistent/isic"], "/nonexistent/isic"),
        (["--lr", "-1"], "lr: Input should be greater than 0"),
        (["--loss", "dice"], "unknown loss 'dice'"),
        (["--model", "not_a_model"], "unknown model 'not_a_model'"),
        (["--device", "cuda:3"], "CUDA is not available"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message: str) -> None:
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


NAN_PLUGIN = """
import torch
import sampleweight as sw

class NanAfterFirstEpoch(sw.BaseWeighter):
    def forward(self, batch):
        weights = torch.ones_like(batch.losses)
        if batch.epoch >= 1:
            weights[0] = float("nan")
        return weights

class NanThenCrash(sw.BaseWeighter):  # NaN weights from global step 8 (epoch 1), a crash two steps later

    def forward(self, batch):
        if batch.step >= 10:
            raise RuntimeError("something downstream of the NaNs broke")
        weights = torch.ones_like(batch.losses)
        if batch.step >= 8:
            weights[0] = float("nan")
        return weights

calls = {"n": 0}

class NanLoss(torch.nn.Module):
    def forward(self, logits, targets):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        return loss * float("nan") if calls["n"] > 8 else loss

@sw.hookimpl
def register_weighters(register):
    register("nan_after_first", NanAfterFirstEpoch)
    register("nan_then_crash", NanThenCrash)

@sw.hookimpl
def register_losses(register):
    register("nan_later", NanLoss)
"""


@pytest.fixture(params=[1, 3], ids=["read every step", "read every 3 steps"])
def read_every(request, monkeypatch) -> int:
    """The training loop reads the device every step (as on the CPU) or every 3 steps (as on a GPU, deferred)."""
    from sampleweight.engine import training

    monkeypatch.setattr(training, "read_every", lambda device: request.param)
    return request.param


def test_a_nan_weighter_plugin_stops_cleanly_and_keeps_the_last_good_checkpoint(
    tmp_path, mount_plugin, read_every
) -> None:
    mount_plugin("sw-test-nan", entry_points={"nan": "sw_test_nan"}, modules={"sw_test_nan": NAN_PLUGIN})
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--weighter", "nan_after_first", "--out", str(out)])
    assert result.exit_code == 2
    # 8 steps per epoch: the first batch of the second epoch (global step 8), counted from 1 as progress counts
    assert "weighter 'nan_after_first' at epoch 2/3, batch 1/8 (run " in result.output
    message = "returned non-finite weights (NaN or inf); weights must be finite; the checkpoint of epoch 1/3, the last"
    assert message in result.output
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_an_error_after_an_unread_nan_reports_the_nan(tmp_path, mount_plugin, monkeypatch) -> None:
    from sampleweight.engine import training

    monkeypatch.setattr(training, "read_every", lambda device: 25)  # as on a GPU: no read before the crash
    mount_plugin("sw-test-nan", entry_points={"nan": "sw_test_nan"}, modules={"sw_test_nan": NAN_PLUGIN})
    result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--weighter", "nan_then_crash"])
    assert result.exit_code == 2, result.output
    assert "weighter 'nan_then_crash' at epoch 2/3, batch 1/8 (run " in result.output
    assert "returned non-finite weights (NaN or inf); weights must be finite; nothing is saved" in result.output


def test_a_nan_loss_names_epoch_and_step(tmp_path, mount_plugin, read_every) -> None:
    mount_plugin("sw-test-nan", entry_points={"nan": "sw_test_nan"}, modules={"sw_test_nan": NAN_PLUGIN})
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--loss", "nan_later", "--out", str(out)])
    assert result.exit_code == 2
    # 128 training images / 16 = 8 steps per epoch: the 9th call is the first batch of the second epoch
    assert "the training loss became nan at epoch 2/3, batch 1/8" in result.output
    assert "the checkpoint of epoch 1/3, the last good one, is kept" in result.output
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_host_reads_per_epoch_do_not_grow_with_its_steps(tmp_path, monkeypatch, host_reads) -> None:
    """The training step never waits for the device: the loop reads it every `read_every` steps, and at the end."""
    from sampleweight.engine import training

    monkeypatch.setattr(training, "read_every", lambda device: 1000)
    counts = []
    for images in (160, 320):  # 8 and 16 steps per epoch
        original, reads = training._train_epoch, []

        def spied(*args, original=original, reads=reads):
            with host_reads() as calls:
                result = original(*args)
            reads.append(len(calls))
            return result

        monkeypatch.setattr(training, "_train_epoch", spied)
        train(tiny_config(None, data=f"synthetic:{images}", epochs=1, weighters=["ohem", "es"]))
        monkeypatch.setattr(training, "_train_epoch", original)
        counts.append(reads)
    assert counts[0] == counts[1] and counts[0][0] > 0, counts


def test_keyboard_interrupt_in_the_cli_leaves_a_resumable_run(tmp_path, interrupt_after_epoch) -> None:
    interrupt_after_epoch(0)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 130
    assert f"continue it with: sampleweight train --out {out} --resume" in result.output
    assert (out / "checkpoint.pt").is_file()


def test_demo_prints_the_comparison_table(tmp_path, monkeypatch) -> None:
    from sampleweight.studies import demo

    real = demo.demo_config

    def tiny(weighter, out, **kwargs):
        return real(weighter, out, **kwargs).model_copy(update={"backbone": "test_resnet", "batch_size": 16})

    monkeypatch.setattr(demo, "demo_config", tiny)
    monkeypatch.setenv("COLUMNS", "150")
    args = ["demo", "--out", str(tmp_path), "--epochs", "1", "--images", "160", "--image-size", "32", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for word in ("none", "es", "ohem", "Acc", "BAcc", "mPR", "mF1", str(tmp_path)):
        assert word in result.output
    assert all((tmp_path / w / "metrics.json").is_file() for w in ("none", "es", "ohem"))


def test_the_demo_prints_its_folder_and_names_as_typed_not_as_markup(tmp_path, monkeypatch) -> None:
    from rich.console import Console

    from sampleweight.studies import demo

    monkeypatch.setattr(demo, "train", lambda config: {"acc": 0.5, "bacc": 0.25, "mpr": 0.2, "mf1": 0.1})
    console = Console(width=300, record=True)
    out = tmp_path / "runs[bold]x"
    demo.run_demo(out, weighters=["none", "w[red]"], epochs=1, images=160, image_size=32, quiet=True, console=console)
    text = console.export_text()
    assert f"training with weighting w[red] -> {out / 'w[red]'}" in text
    assert f"run directories: {out}/<weighting>/" in text and "│ w[red]" in text


def test_a_fresh_run_into_a_run_directory_is_refused_unless_overwrite(tmp_path) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 2 and "already holds a run" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--seed", "3", "--overwrite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    assert [line["epoch"] for line in RunDirectory(out).epochs()] == [0]


def test_resuming_a_finished_run_returns_its_metrics(tmp_path) -> None:
    first = train(tiny_config(tmp_path, epochs=1))
    again = train(tiny_config(tmp_path, epochs=1), resume=True)
    assert again == first


def test_resume_refuses_any_change_to_what_is_computed(tmp_path) -> None:
    train(tiny_config(tmp_path, epochs=1))
    changes = ({"lr": 1e-2}, {"epochs": 3}, {"val_fraction": 0.25}, {"weighters": ["es"]}, {"sampler": "sqrt"},
               {"sampler_options": {"num_samples": 64}})  # fmt: skip
    for change in changes:
        with pytest.raises(sw.ConfigError, match=f"--resume with a different {next(iter(change))}"):
            train(tiny_config(tmp_path, **change), resume=True)
    train(tiny_config(tmp_path, epochs=1, quiet=False, workers=0), resume=True)  # execution options may change


def test_hierarchical_loss_on_a_flat_model(tmp_path) -> None:
    final = train(tiny_config(tmp_path, loss="hierarchical", epochs=1))
    assert final["decoding"] == "argmax" and 0.0 <= final["bacc"] <= 1.0


def test_hierarchical_model_decides_greedily(tmp_path) -> None:
    final = train(tiny_config(tmp_path, model="hierarchical_vgg16", epochs=1))
    assert final["decoding"] == "greedy"
    _, true, pred, scores, classes = read_predictions(tmp_path / "predictions.csv")
    expected = sw.ISIC2018_TAXONOMY.greedy_decode(torch.from_numpy(np.log(np.clip(scores, 1e-30, None))))
    assert pred == [classes[i] for i in expected.tolist()]
    assert final["acc"] == pytest.approx(np.mean(np.array(true) == np.array(pred)), abs=1e-6)


def test_skip_bad_trains_around_a_corrupt_image(tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    rows = ["image,label,group"]
    rng = np.random.default_rng(0)
    for i in range(40):
        label = "a" if i % 3 else "b"
        pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) // (2 if label == "a" else 1)
        Image.fromarray(pixels).save(folder / "images" / f"img{i}.jpg")
        rows.append(f"img{i},{label},lesion{i // 2}")
    (folder / "images" / "img7.jpg").write_bytes(b"not a jpeg")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    args = ["train", "--data", str(folder), "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "8", "--epochs", "1", "--quiet", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    failed = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert failed.exit_code == 2 and "img7" in failed.output
    result = runner.invoke(app, [*args, "--skip-bad", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    images, *_ = read_predictions(tmp_path / "b" / "predictions.csv")
    assert "img7" not in images


def test_tensorboard_scalars(tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--tensorboard", "--out", str(out)])
    assert result.exit_code == 0, result.output
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "tensorboard"))
    accumulator.Reload()
    assert {"train_loss", "val_bacc", "lr"} <= set(accumulator.Tags()["scalars"])


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--tensorboard", "--out", str(tmp_path / "run")])
    assert (
        result.exit_code == 2
        and "--tensorboard needs the tensorboard package: pip install tensorboard" in result.output
    )


def test_a_run_resumed_before_a_milestone_decays_its_learning_rate_like_an_uninterrupted_one(
    tmp_path, monkeypatch, interrupt_after_epoch
) -> None:
    whole = tiny_config(tmp_path / "whole", epochs=4)
    train(whole)
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "parts", epochs=4))
    monkeypatch.undo()
    train(tiny_config(tmp_path / "parts", epochs=4), resume=True)
    lrs = [line["lr"] for line in RunDirectory(tmp_path / "parts").epochs()]
    assert lrs == [line["lr"] for line in RunDirectory(tmp_path / "whole").epochs()]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])  # lr / 10 at 50 % and 75 % of 4 epochs
