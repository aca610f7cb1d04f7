"""Smoke tests: every benchmark script runs at its smallest size and writes well-formed JSON.

Benchmarks are not tests (their figures live in docs/benchmarks.md); these only keep the scripts working.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

import sampleweight as sw

ROOT = Path(__file__).resolve().parents[1]
HAM10000 = Path(os.environ.get("SAMPLEWEIGHT_HAM10000") or ROOT.parent / "shared" / "data" / "HAM10000")
needs_ham10000 = pytest.mark.skipif(
    not (HAM10000 / "HAM10000_metadata.csv").is_file(),
    reason=f"real HAM10000 copy not found at {HAM10000} (set SAMPLEWEIGHT_HAM10000 to its folder)",
)


def load(name: str):
    """Import a benchmark script as ``python benchmarks/NAME.py`` would (its folder first on the path)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_weighting_overhead_smoke(tmp_path) -> None:
    out = tmp_path / "w.json"
    load("weighting_overhead").main(
        ["--backbone", "test_resnet", "--image-size", "32", "--rounds", "2", "--loss-repeats", "2", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "weighting_overhead"
    results = report["results"]
    assert {"plain CE", "ce + none", "ce + es", "ce + ohem", "ce + ohem+es"} <= set(results)
    assert results["plain CE"]["step_ratio"] == 1.0
    assert all(row["step_ms"] > 0 and row["loss_us"] > 0 for row in results.values())
    assert results["plain CE"]["loss_extra_share"] == 0.0
    assert 0 < results["plain CE"]["ops"] < results["ce + none"]["ops"] < results["ce + ohem+es"]["ops"]


def test_mixing_overhead_smoke(tmp_path) -> None:
    out = tmp_path / "m.json"
    load("mixing_overhead").main(
        ["--backbone", "test_resnet", "--image-size", "32", "--rounds", "2", "--repeats", "2", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "mixing_overhead"
    results = report["results"]
    assert set(results) == {"none", "mixup", "cutmix", "mixup_cutmix", "remix"}
    assert results["none"]["step_ratio"] == 1.0 and results["none"]["extra_share"] == 0.0
    assert all(row["step_ms"] > 0 and row["mix_us"] > 0 for row in results.values())


@needs_ham10000
def test_trainer_vs_loop_smoke(tmp_path) -> None:
    out = tmp_path / "t.json"
    args = ["--data", str(HAM10000), "--limit", "60", "--backbone", "test_resnet", "--image-size", "32",
            "--epochs", "1", "--jpeg-workers", "0", "--rounds", "1", "--out", str(out)]  # fmt: skip
    load("trainer_vs_loop").main(args)
    report = json.loads(out.read_text())
    variants = {"ours", "loop (cached)", "loop (cached, tuned)", "loop (JPEG)"}
    assert set(report["images_per_second"]) == set(report["ratio_per_round"]) == variants
    assert all(report[f"ratio_vs_{name}_loop"] > 0 for name in ("cached", "tuned", "jpeg"))
    assert report["ratio_per_round"]["ours"] == [1.0]


@needs_ham10000
def test_data_pipeline_smoke(tmp_path) -> None:
    out = tmp_path / "d.json"
    load("data_pipeline").main(
        ["--data", str(HAM10000), "--limit", "20", "--image-size", "32", "--epochs", "1", "--out", str(out),
         "--cache-dir", str(tmp_path / "cache"), "--model-backbone", "test_resnet", "--model-batch", "2",
         "--model-steps", "1"]
    )  # fmt: skip
    (row,) = json.loads(out.read_text())["results"]
    assert row["image_size"] == 32 and row["images"] == 20
    keys = ("decode", "build", "cached_item", "cached_batch", "speedup", "model", "headroom")
    assert all(row[key] > 0 for key in keys)


def test_gpu_throughput_runs_on_the_cpu_at_toy_size(tmp_path) -> None:
    out = tmp_path / "g.json"
    args = ["--device", "cpu", "--backbone", "test_resnet", "--image-size", "32", "--batch-sizes", "2",
            "--steps", "1", "--loader-steps", "1", "--matmul-size", "64", "--workers", "0",
            "--data", str(tmp_path / "absent"), "--out", str(out)]  # fmt: skip
    load("gpu_throughput").main(args)
    report = json.loads(out.read_text())
    assert {(r["model"], r["config"]) for r in report["steps"]} == {
        (model, config)
        for model in ("cbam_vgg16", "hierarchical_vgg16")
        for config in ("fp32", "bf16", "bf16+cl", "bf16+cl, loss read every step")
    }
    assert all(r["images_per_second"] > 0 and r["tflops"] > 0 for r in report["steps"])
    assert 0 <= report["loader"]["wait_share"] <= 1
    assert report["estimate"]["total_grid_hours"] > 0


def test_execution_settings_smoke(tmp_path) -> None:
    out = tmp_path / "e.json"
    load("execution_settings").main(["--models", "cbam_vgg16:test_resnet@32/2", "--rounds", "2", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    variants = ["default", "channels-last", "fused Adam", "channels-last + fused (ours)"]
    assert [row["variant"] for row in rows] == variants
    assert rows[0]["ratio"] == 1.0 and all(row["step_ms"] > 0 and row["ratio"] > 0 for row in rows)


def test_bootstrap_speed_smoke(tmp_path) -> None:
    out = tmp_path / "b.json"
    load("bootstrap_speed").main(["--images", "300", "--resamples", "50", "--rounds", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["benchmark"] == "bootstrap_speed" and report["resamples"] == 50
    assert report["vectorised_seconds"] > 0 and report["loop_over_vectorised"] > 0
    assert report["vectorised_with_auc_seconds"] > 0 and report["auc_loop_seconds"] > 0


def test_bootstrap_coverage_smoke(tmp_path) -> None:
    out = tmp_path / "c.json"
    args = ["--images", "300", "--draws", "6", "--resamples", "60", "--exact", "--timing-rounds", "1",
            "--out", str(out)]  # fmt: skip
    load("bootstrap_coverage").main(args)
    report = json.loads(out.read_text())
    assert report["benchmark"] == "bootstrap_coverage" and report["draws"] == 6
    assert report["truth"]["bacc"] == pytest.approx(sum(report["recall"].values()) / 7)
    rows = {(row["metric"], row["method"]): row for row in report["results"]}
    assert {method for _, method in rows} == {"percentile", "bca", "bca exact"}
    assert all(0 <= row["coverage_low"] <= row["coverage"] <= row["coverage_high"] <= 1 for row in rows.values())
    assert all(row["truth_below"] + row["truth_above"] == round(6 * (1 - row["coverage"])) for row in rows.values())
    assert rows[("recall DF", "bca exact")]["endpoint_difference_from_bca"]["max"] < 1e-9  # 3 images: one per group
    assert report["metrics_json_seconds"]["percentile"] > 0 and report["metrics_json_seconds"]["bca"] > 0


def test_paired_pooling_smoke(tmp_path) -> None:
    out = tmp_path / "p.json"
    load("paired_pooling").main(["--draws", "3", "--images", "200", "--resamples", "50", "--out", str(out)])
    report = json.loads(out.read_text())
    scenarios = {(row["scenario"], row["pairs"]) for row in report["results"]}
    assert ("seeds on one image set", 4) in scenarios and ("splits", 2) in scenarios and len(scenarios) == 7
    assert {row["method"] for row in report["results"]} == {"percentile", "bca"}
    assert all(0 <= row["false_positive_rate"] <= 1 and row["width_ratio"] > 0 for row in report["results"])


@needs_ham10000
def test_weight_scale_smoke(tmp_path) -> None:
    out = tmp_path / "s.json"
    load("weight_scale").main(["--data", str(HAM10000), "--out", str(out)])
    report = json.loads(out.read_text())
    scales = {row["setup"]: row["mean_weight"] for row in report["results"]}
    assert scales["none"] == 1.0 and scales["drw"] == 1.0
    assert abs(scales["cb"] - 7.0) < 1e-5  # sum_c (N_c / N) (N / N_c) = C
    assert 5e-4 < scales["es"] < 2e-3 and 0.1 < scales["es normalize=classes"] < 0.5


def test_sampling_smoke(tmp_path) -> None:
    out = tmp_path / "s.json"
    load("sampling").main(["--size", "1000", "--images", "200", "--rounds", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert set(report["results"]) == set(sw.list_samplers()) >= {"instance", "class_balanced", "drs"}
    assert all(row["draw_ms"] > 0 and row["iterate_vs_torch_weighted"] > 0 for row in report["results"].values())


def test_reproduce_ham10000_smoke_with_the_long_tail_baselines(tmp_path) -> None:
    doc = tmp_path / "reproduction-cpu-results.md"
    args = ["--data", "synthetic:200", "--out", str(tmp_path / "runs"), "--image-size", "32", "--epochs", "1",
            "--batch-size", "16", "--splits", "0", "--seeds", "0", "--weighters", "none,cb", "--sgd-weighters", "",
            "--samplers", "class_balanced,drs", "--long-tail", "logit_adjusted", "--retrain", "crt",
            "--bootstrap", "20", "--processes", "1", "--doc", str(doc)]  # fmt: skip
    load("reproduce_ham10000").main(args)
    text = doc.read_text()
    for row in ("| ce | none sampler=class_balanced | 1 |", "| ce | none+crt | 1 |", "| logit_adjusted | none | 1 |"):
        assert row in text
    assert "Paired differences to `ce-none`" in text
    findings = {line.split(" | ")[0].lstrip("| "): line.rsplit(" | ", 1)[1] for line in text.splitlines()
                if line.startswith("| ") and line.endswith("** |")}  # fmt: skip
    assert {"Class-balanced sampling raises BAcc (CEL, ADAM)", "cRT raises BAcc over the jointly trained classifier "
            "(CEL, ADAM)", "The logit-adjusted loss raises BAcc over CE (ADAM)"} <= set(findings)  # fmt: skip
    two_sided = findings["Re-sampling vs re-weighting: class-balanced sampling vs CB (CEL, ADAM)"]
    assert two_sided == "**no significant difference** |" or "higher" in two_sided
    assert (tmp_path / "runs" / "cbam_vgg16-ce-none-adam-s0+crt" / "metrics.json").is_file()
    drs = findings["Deferred re-sampling (DRS) beats class-balanced sampling from the start (BAcc, CEL, ADAM)"]
    assert drs.startswith("**not testable at this schedule: DRS rebalances only in the last epoch here") and (
        "(measured: " in drs
    )  # one epoch of deferral (of 1) tests nothing about DRS


def test_reproduce_mixing_smoke(tmp_path) -> None:
    doc = tmp_path / "reproduction-mixing.md"
    args = ["--data", "synthetic:120", "--out", str(tmp_path / "runs"), "--image-size", "32", "--epochs", "1",
            "--batch-size", "16", "--splits", "0", "--seeds", "0", "--bootstrap", "20", "--doc", str(doc)]  # fmt: skip
    load("reproduce_mixing").main(args)
    text = doc.read_text()
    for rebalancing in ("none", "cb", "balanced_softmax", "class_balanced"):
        for mixer in ("none", "mixup", "remix"):
            assert f"| {rebalancing} | {mixer} | 1 |" in text
        assert f"| {rebalancing} | remix | 1 | " in text.split("## Mixing minus no mixing")[1]
    assert "12 of the 12 planned runs finished" in text
    assert (tmp_path / "runs" / "cbam_vgg16-balanced_softmax-none-adam-s0-remix" / "metrics.json").is_file()


@needs_ham10000
def test_evaluation_ham10000_smoke(tmp_path) -> None:
    out = tmp_path / "e.json"
    args = ["--data", str(HAM10000), "--limit", "120", "--epochs", "1", "--image-size", "32", "--bootstrap", "50",
            "--weighters", "none", "es", "--work", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    load("evaluation_ham10000").main(args)
    report = json.loads(out.read_text())
    names = [row["evaluation"] for row in report["results"]]
    assert names[:5] == ["none tta=none", "none tta=flip", "none tta=flip-rot", "none tta=crops", "none logit_adjust=1"]
    assert "ensemble geometric" in names and report["held_out_images"] > 0
    assert all(0 <= row["bacc"] <= 1 and row["time_ratio"] > 0 for row in report["results"])


def test_sam_step_smoke(tmp_path) -> None:
    out = tmp_path / "s.json"
    arguments = ["--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--rounds", "2",
                 "--steps-per-round", "1", "--out", str(out)]  # fmt: skip
    report = load("sam_step").main(arguments)
    assert json.loads(out.read_text())["steps"]["sam"]["ratio_to_sgd"] == report["steps"]["sam"]["ratio_to_sgd"] > 0


def test_sam_wb_ham10000_smoke(tmp_path) -> None:
    from sampleweight.engine.retraining import retrain
    from sampleweight.engine.training import train

    tiny = dict(data="synthetic:120", model="cbam_vgg16", backbone="test_resnet", pretrained=False, image_size=32,
                batch_size=16, epochs=1, lr=1e-3, quiet=True, bootstrap=0)  # fmt: skip
    train({**tiny, "out": tmp_path / "cbam_vgg16-ce-none-adam-s0"})
    train({**tiny, "optimizer": "sam", "optimizer_options": {"base": "adam"}, "out": tmp_path / "sam"})
    retrain(tmp_path / "cbam_vgg16-ce-none-adam-s0", "wb", tmp_path / "wb", quiet=True, bootstrap=0)
    text = load("sam_wb_ham10000").main([str(tmp_path), "--resamples", "20"])
    assert "| ce-none | 1 |" in text and "| ce-none-sam | 1 |" in text and "| ce-none+wb | 1 |" in text


@pytest.mark.parametrize("labels", [1, 3])
def test_binary_bootstrap_speed_smoke(tmp_path, labels) -> None:
    out = tmp_path / "b.json"
    load("binary_bootstrap_speed").main(["--images", "300", "--resamples", "50", "--rounds", "1", "--out", str(out),
                                         "--labels", str(labels)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["benchmark"] == "binary_bootstrap_speed" and report["resamples"] == 50
    assert report["labels"] == labels
    assert report["vectorised_seconds"] > 0 and report["loop_over_vectorised"] > 0


def test_melanoma_binary_smoke_on_synthetic_images(tmp_path) -> None:
    module = load("melanoma_binary")
    page = tmp_path / "page.md"
    argv = ["melanoma_binary.py", "--data", "synthetic:160", "--out", str(tmp_path / "runs"), "--splits", "0",
            "--seeds", "0", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--resamples", "50",
            "--page", str(page)]  # fmt: skip
    import sys as _sys

    saved, _sys.argv = _sys.argv, argv
    try:
        module.main()
    finally:
        _sys.argv = saved
    text = page.read_text()
    assert "Runs finished: 7 of 7 planned" in text and "An unfinished study" not in text
    assert "| 7-class ce, MEL probability | 1 |" in text and "| asl | 1 |" in text
