"""`sampleweight report`: the paper-style tables equal the runs' metrics; the paper's figures; PNGs; errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app
from sampleweight.studies.grid import plan_grid, run_grid
from sampleweight.studies.report import collect_runs, format_cell, summarize, write_report
from sampleweight.studies.statistics import describe

runner = CliRunner()
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
            lr=1e-3)  # fmt: skip


@pytest.fixture(scope="module")
def grid_folder(tmp_path_factory) -> Path:
    """Ten finished tiny runs: ce x (none, cb) x splits 0, 1 x seeds 0, 1 and focal x none x splits 0, 1."""
    out = tmp_path_factory.mktemp("report") / "grid"
    for losses, weighters, seeds in (("ce", "none,cb", "0,1"), ("focal", "none", "0")):
        grid = plan_grid(out, models="cbam_vgg16", losses=losses, weighters=weighters, optimizers="adam",
                         splits="0,1", seeds=seeds, options=TINY)  # fmt: skip
        assert all(o.status == "trained" for o in run_grid(grid, progress=False))
    return out


def run_names(loss: str, weighting: str) -> list[str]:
    seeds = ("", "-seed1") if loss == "ce" else ("",)
    return [f"cbam_vgg16-{loss}-{weighting}-adam-s{split}{seed}" for split in (0, 1) for seed in seeds]


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as handle:
        return {(row["loss"], row["weighting"]): row for row in csv.DictReader(handle)}


def assert_png(path: Path, min_size: int = 100) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_size
        assert np.asarray(image.convert("L"), dtype=float).std() > 0, f"{path} is blank"


def test_table_cells_are_mean_sd_n_and_range_over_splits_and_seeds(grid_folder, tmp_path) -> None:
    report = write_report(grid_folder, tmp_path, figures=False)
    assert [t.key for t in report.tables] == ["cbam_vgg16-adam"]
    rows = read_csv(tmp_path / "table-cbam_vgg16-adam.csv")
    assert list(rows) == [("ce", "none"), ("ce", "cb"), ("focal", "none")]  # the paper's row order
    markdown = (tmp_path / "report.md").read_text()
    for (loss, weighting), row in rows.items():
        finals = [json.loads((grid_folder / name / "metrics.json").read_text()) for name in run_names(loss, weighting)]
        assert row["n"] == str(len(finals)) and row["splits"] == "0 1"
        assert row["seeds"] == ("0 1" if loss == "ce" else "0") and row["setup"] == f"{loss}-{weighting}"
        for metric in ("acc", "bacc", "mpr", "mf1", "ece", "nll"):
            values = np.array([final[metric] for final in finals])
            scale = 1 if metric == "nll" else 100
            assert float(row[metric]) == pytest.approx(scale * values.mean(), abs=1e-3)
            assert float(row[f"{metric}_sd"]) == pytest.approx(scale * values.std(ddof=1), abs=1e-3)  # not half a range
            assert (float(row[f"{metric}_min"]), float(row[f"{metric}_max"])) == pytest.approx(
                (scale * values.min(), scale * values.max()), abs=1e-3
            )
            if metric not in ("ece", "nll"):
                assert format_cell(describe(values)) in markdown
        assert "paper_acc" not in row
    cells = {(c.loss, c.weighting): c for c in summarize(collect_runs(grid_folder))[0].cells}
    recall = [[json.loads((r.path / "metrics.json").read_text())["per_class"][c]["recall"] for c in r.classes]
              for r in cells[("ce", "cb")].runs]  # fmt: skip
    np.testing.assert_allclose(cells[("ce", "cb")].recall, np.mean(recall, axis=0))
    assert format_cell(describe([0.5])) == "50.0" and format_cell(describe([0.5, 0.7])) == "60.0 ± 14.1 (50.0-70.0)"
    assert "## cbam_vgg16, adam (the paper's Table 2)" in markdown


def test_paper_columns_hold_the_papers_numbers(grid_folder, tmp_path) -> None:
    result = runner.invoke(app, ["report", str(grid_folder), "--out", str(tmp_path), "--paper", "--no-figures"])
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "table-cbam_vgg16-adam.csv")
    # Table 2 (flat, ADAM): CEL none 87.5/72.5/80.0/75.5, CEL CB 82.0/78.8/73.0/75.0, FL none 87.0/73.5/79.5/75.5
    assert [rows[("ce", "none")][f"paper_{m}"] for m in ("acc", "bacc", "mpr", "mf1")] == [
        "87.5",
        "72.5",
        "80.0",
        "75.5",
    ]
    assert rows[("ce", "cb")]["paper_bacc"] == "78.8" and rows[("focal", "none")]["paper_acc"] == "87.0"
    markdown = (tmp_path / "report.md").read_text()
    assert "| Acc | Acc paper | BAcc | BAcc paper |" in markdown
    line = next(line for line in markdown.splitlines() if line.startswith("| ce | cb |"))
    assert "| 82.0 |" in line and "| 78.8 |" in line and "| 73.0 |" in line and "| 75.0 |" in line


def test_recall_bars_and_confusion_matrices_are_drawn(grid_folder, tmp_path) -> None:
    report = write_report(grid_folder, tmp_path)
    figures = tmp_path / "figures"
    recall = sorted(figures.glob("recall-*.png"))
    assert [p.name for p in recall] == ["recall-cbam_vgg16-adam-ce.png", "recall-cbam_vgg16-adam-focal.png"]
    confusion = sorted((figures / "confusion").glob("*.png"))
    assert len(confusion) == 10 and (figures / "confusion" / "cbam_vgg16-ce-cb-adam-s1-seed1.png") in confusion
    reliability = figures / "reliability-cbam_vgg16-adam.png"
    for path in [*recall, *confusion, reliability]:
        assert_png(path)
    assert set(report.figures) == {*recall, *confusion, reliability}
    markdown = (tmp_path / "report.md").read_text()
    assert "figures/recall-cbam_vgg16-adam-ce.png" in markdown and "figures/reliability-cbam_vgg16-adam.png" in markdown


def test_report_of_a_folder_without_runs_exits_2_with_one_line(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = runner.invoke(app, ["report", str(folder)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "no finished runs" in runner.invoke(app, ["report", str(tmp_path / "empty")]).stderr


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("metrics.json", '{"acc": 0.5', "cannot read {path} (Expecting"),
        ("config.json", '{"epochs": 3}', "{path} is not a sampleweight run's config.json (no model, loss,"),
        ("metrics.json", "[1, 2]", "{path} is not a sampleweight run's metrics.json (no classes,"),
    ],
)
def test_an_unreadable_or_foreign_run_file_exits_2_naming_it(grid_folder, tmp_path, name, text, message) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder / "cbam_vgg16-ce-none-adam-s0", folder / "run")
    path = folder / "run" / name
    path.write_text(text)
    result = runner.invoke(app, ["report", str(folder), "--no-figures"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: report: "), result.stderr
    assert message.format(path=path) in lines[0] and f"move that run folder out of {folder}" in lines[0]


def test_runs_of_different_setups_are_not_averaged_together(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(grid_folder, folder)
    run = folder / "cbam_vgg16-ce-none-adam-s0"
    copy = folder / "old" / run.name
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "seed": 5, "epochs": 150}))
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 2
    assert "differ in epochs (1 in" in result.output and "report grids of different setups separately" in result.output
    (copy / "config.json").write_text(json.dumps(config))  # same setup, but split 0 twice
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 2 and "are both split 0, seed 0 of cbam_vgg16 adam ce-none" in result.output


def test_a_run_written_before_an_option_existed_shares_the_setup_of_a_new_one(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    for name in run_names("ce", "none")[:2]:  # split 0, both seeds: as an older version wrote them
        path = folder / name / "config.json"
        config = json.loads(path.read_text())
        older = (
            "sampler",
            "sampler_options",
            "mixer",
            "mixer_options",
            "bootstrap",
            "weighter_options",
            "val_fraction",
            "drop_rate",
        )
        path.write_text(json.dumps({k: v for k, v in config.items() if k not in older}))
    (table,) = summarize(collect_runs(folder))
    assert [(cell.loss, cell.label, cell.n) for cell in table.cells] == [("ce", "none", 4), ("ce", "cb", 4),
                                                                         ("focal", "none", 2)]  # fmt: skip


def copy_runs(source: Path, folder: Path, names: list[str], **changes) -> None:
    """Copies of runs under ``folder``, their config changed (same predictions: the same models)."""
    import shutil

    for name in names:
        copy = folder / "variant" / name
        shutil.copytree(source / name, copy)
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, **changes}))


def test_a_sampler_or_a_weighter_option_makes_its_own_row(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    copy_runs(grid_folder, folder, run_names("ce", "none"), sampler="class_balanced")
    copy_runs(grid_folder, folder / "b", run_names("ce", "cb"), weighter_options={"cb.normalize": "classes"})
    (table,) = summarize(collect_runs(folder))
    labels = [(cell.loss, cell.label, cell.n) for cell in table.cells]
    assert labels == [("ce", "none", 4), ("ce", "none sampler=class_balanced", 4), ("ce", "cb", 4),
                      ("ce", "cb normalize=classes", 4), ("focal", "none", 2)]  # fmt: skip
    assert {cell.name for cell in table.cells} >= {"ce-none-sampler=class_balanced", "ce-cb-normalize=classes"}
    # a scoped option for a weighter the run does not use leaves the run in its row: here, beside its twin
    copy_runs(grid_folder, folder / "c", run_names("ce", "none"), weighter_options={"cb.normalize": "classes"})
    with pytest.raises(sw.ConfigError, match="are both split 0, seed 0 of cbam_vgg16 adam ce-none;"):
        summarize(collect_runs(folder))


def test_sampler_options_make_their_own_rows(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    for threshold in (0.1, 0.2):
        copy_runs(grid_folder, folder / str(threshold), run_names("ce", "none"), sampler="repeat_factor",
                  sampler_options={"threshold": threshold})  # fmt: skip
    (table,) = summarize(collect_runs(folder))
    labels = [(cell.label, cell.n) for cell in table.cells if cell.loss == "ce" and cell.weighting == "none"]
    assert labels == [("none", 4), ("none sampler=repeat_factor sampler.threshold=0.1", 4),
                      ("none sampler=repeat_factor sampler.threshold=0.2", 4)]  # fmt: skip


def test_a_mixer_and_its_options_make_their_own_rows(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    copy_runs(grid_folder, folder / "remix", run_names("ce", "none"), mixer="remix", mixer_options={})
    copy_runs(grid_folder, folder / "mixup", run_names("ce", "none"), mixer="mixup", mixer_options={"alpha": 0.4})
    copy_runs(grid_folder, folder / "plain", run_names("ce", "cb"), mixer="none", mixer_options={})  # the default
    with pytest.raises(sw.ConfigError, match="are both split 0, seed 0 of cbam_vgg16 adam ce-cb;"):
        summarize(collect_runs(folder))  # an explicit none is the setup of a run written before mixers
    shutil.rmtree(folder / "plain")
    (table,) = summarize(collect_runs(folder))
    labels = [(cell.label, cell.n) for cell in table.cells if cell.loss == "ce" and cell.weighting == "none"]
    assert labels == [("none", 4), ("none mixer=mixup mixer.alpha=0.4", 4), ("none mixer=remix", 4)]


def test_an_explicit_default_gamma_is_the_same_setup_as_none_given(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    path = folder / run_names("focal", "none")[0] / "config.json"  # split 0 says gamma 1 (the default), split 1 not
    path.write_text(json.dumps({**json.loads(path.read_text()), "gamma": 1.0}))
    (table,) = summarize(collect_runs(folder), paper=True)
    focal = [cell for cell in table.cells if cell.loss == "focal"]
    assert [(cell.label, cell.n) for cell in focal] == [("none", 2)]
    assert focal[0].paper == {"acc": 87.0, "bacc": 73.5, "mpr": 79.5, "mf1": 75.5}  # Table 2, FL none
    path.write_text(json.dumps({**json.loads(path.read_text()), "gamma": 2.0}))
    (table,) = summarize(collect_runs(folder), paper=True)
    assert [cell.label for cell in table.cells if cell.loss == "focal"] == ["none", "none gamma=2.0"]


def test_a_loss_option_equal_to_its_losss_default_is_no_option_of_the_setup(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)

    def set_loss_options(name: str, options: dict) -> None:
        path = folder / name / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "loss_options": options}))

    # the defaults of the registered factories, ce's label_smoothing=0.0 and focal's gamma=1.0, given explicitly
    set_loss_options(run_names("ce", "none")[0], {"label_smoothing": 0.0})
    set_loss_options(run_names("focal", "none")[0], {"gamma": 1})
    (table,) = summarize(collect_runs(folder))
    assert [(cell.loss, cell.label, cell.n) for cell in table.cells if cell.weighting == "none"] == [
        ("ce", "none", 4), ("focal", "none", 2)
    ]  # fmt: skip
    set_loss_options(run_names("ce", "none")[0], {"label_smoothing": 0.1})
    (table,) = summarize(collect_runs(folder))
    assert [cell.label for cell in table.cells if cell.loss == "ce" and cell.weighting == "none"] == [
        "none", "none label_smoothing=0.1"
    ]  # fmt: skip


def test_a_weighting_baseline_is_its_plain_row_and_its_variants_are_compared_with_it(grid_folder, tmp_path) -> None:
    import shutil

    from sampleweight.studies.report import compare_with_baseline, logit_adjusted_run

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    copy_runs(grid_folder, folder, run_names("ce", "none"), sampler="class_balanced")
    runs = collect_runs(folder)
    runs += [logit_adjusted_run(run, 1.0) for run in list(runs)]
    (compared,) = compare_with_baseline(summarize(runs), "none", resamples=20)
    assert sorted((c.cell.name, c.baseline.name) for c in compared.comparisons) == [
        ("ce-cb", "ce-none"), ("ce-cb-logit_adjust=1.0", "ce-none"), ("ce-none-logit_adjust=1.0", "ce-none"),
        ("ce-none-sampler=class_balanced", "ce-none"),
        ("ce-none-sampler=class_balanced-logit_adjust=1.0", "ce-none"), ("focal-none-logit_adjust=1.0", "focal-none"),
    ]  # fmt: skip


def test_the_comparisons_read_percentile_or_bca_intervals_from_the_same_resamples(grid_folder) -> None:
    from sampleweight.studies.report import compare_with_baseline

    tables = summarize(collect_runs(grid_folder))
    read = {
        method: compare_with_baseline(tables, "ce-none", resamples=200, method=method)[0].comparisons
        for method in ("percentile", "bca")
    }
    pooled = {method: [d for c in found for d in c.comparison.pooled] for method, found in read.items()}
    assert [d.estimate for d in pooled["bca"]] == [d.estimate for d in pooled["percentile"]]
    assert [(d.low, d.high) for d in pooled["bca"]] != [(d.low, d.high) for d in pooled["percentile"]]
    with pytest.raises(ValueError, match="percentile, bca"):
        compare_with_baseline(tables, "ce-none", resamples=20, method="basic")


def test_a_weighting_baseline_is_plain_for_its_loss_and_never_crosses_losses(grid_folder, tmp_path) -> None:
    import shutil

    from sampleweight.studies.report import compare_with_baseline

    folder = tmp_path / "runs"
    for name in run_names("ce", "none") + run_names("ce", "cb"):
        shutil.copytree(grid_folder / name, folder / name)
    copy_runs(grid_folder, folder, run_names("focal", "none"), gamma=2.0)  # a grid run with --gamma 2
    copy_runs(grid_folder, folder / "b", run_names("ce", "cb"), loss="focal", gamma=2.0)
    (compared,) = compare_with_baseline(summarize(collect_runs(folder)), "none", resamples=20)
    assert sorted((c.cell.name, c.baseline.name) for c in compared.comparisons) == [
        ("ce-cb", "ce-none"), ("focal-cb-gamma=2.0", "focal-none-gamma=2.0")
    ]  # fmt: skip
    shutil.rmtree(folder / "variant")  # focal has no none row now: its cells are not compared with ce's
    (compared,) = compare_with_baseline(summarize(collect_runs(folder)), "none", resamples=20)
    assert [(c.cell.name, c.baseline.name) for c in compared.comparisons] == [("ce-cb", "ce-none")]
    (named,) = compare_with_baseline(summarize(collect_runs(folder)), "ce-none", resamples=20)
    assert sorted((c.cell.name, c.baseline.name) for c in named.comparisons) == [
        ("ce-cb", "ce-none"), ("focal-cb-gamma=2.0", "ce-none")
    ]  # fmt: skip  # a baseline named in full is every cell's


def test_baseline_comparisons_are_paired_pooled_and_holm_corrected(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    copy_runs(grid_folder, folder, run_names("ce", "none"), sampler="copy")  # the baseline's own models again
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r"), "--baseline", "ce-none",
                                 "--no-figures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(tmp_path / "r" / "comparisons-cbam_vgg16-adam.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    pooled = {(r["setup"], r["metric"]): r for r in rows if r["scope"] == "pooled"}
    assert {setup for setup, _ in pooled} == {"ce-cb", "ce-none-sampler=copy", "focal-none"}
    assert pooled[("focal-none", "acc")]["pairs"] == "2"  # the splits of seed 0, which both have
    (table,) = summarize(collect_runs(folder))
    cells = {cell.name: cell for cell in table.cells}
    for metric in ("acc", "bacc", "mpr", "mf1"):
        cb = pooled[("ce-cb", metric)]
        assert cb["baseline"] == "ce-none" and cb["pairs"] == "4"
        # the mean over the four split/seed pairs of the paired differences = the difference of the cells' means
        expected = 100 * (cells["ce-cb"].mean[metric] - cells["ce-none"].mean[metric])
        assert float(cb["difference"]) == pytest.approx(expected, abs=1e-3)
        assert float(cb["low"]) <= float(cb["difference"]) <= float(cb["high"])
        assert float(cb["p_holm"]) >= float(cb["p"]) and cb["significant"] == (
            "yes" if float(cb["p_holm"]) < 0.05 else "no"
        )
        same = pooled[("ce-none-sampler=copy", metric)]  # a run against itself
        assert (float(same["difference"]), float(same["low"]), float(same["high"]), float(same["p"])) == (0, 0, 0, 1)
    per_pair = [r for r in rows if r["setup"] == "ce-cb" and r["metric"] == "bacc" and r["scope"] != "pooled"]
    assert sorted(r["scope"] for r in per_pair) == ["split 0 seed 0", "split 0 seed 1", "split 1 seed 0",
                                                    "split 1 seed 1"]  # fmt: skip
    assert all(r["pairs"] == "1" for r in per_pair)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "### Paired differences to `ce-none`" in markdown and "Holm's correction over the 12 comparisons" in markdown
    assert "| ce | cb | ce-none | 4 |" in markdown
    assert "paired differences" in result.output


def test_a_baseline_that_names_nothing_exits_2_listing_the_names(grid_folder) -> None:
    result = runner.invoke(app, ["report", str(grid_folder), "--baseline", "ohem", "--no-figures"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --baseline 'ohem' names no setup in the report")
    assert "choose one of: cb, ce-cb, ce-none, focal-none, none" in lines[0]
    ok = runner.invoke(app, ["report", str(grid_folder), "--baseline", "none", "--no-figures"])
    assert ok.exit_code == 0, ok.output  # a weighting: every none cell is a baseline, for the cells of its loss
    (table,) = summarize(collect_runs(grid_folder))
    from sampleweight.studies.report import compare_with_baseline

    (compared,) = compare_with_baseline([table], "none", resamples=50)
    assert [(c.cell.name, c.baseline.name) for c in compared.comparisons] == [("ce-cb", "ce-none")]


def test_names_in_the_terminal_tables_are_printed_as_typed_not_as_markup(grid_folder) -> None:
    from dataclasses import replace

    from rich.console import Console

    from sampleweight.studies.report import compare_with_baseline, rich_comparisons

    (compared,) = compare_with_baseline(summarize(collect_runs(grid_folder)), "none", resamples=20)
    (item,) = compared.comparisons
    odd = replace(item, cell=replace(item.cell, loss="c[bold]e"))
    console = Console(width=200, record=True)
    console.print(rich_comparisons(replace(compared, model="m[red]x", comparisons=(odd,))))
    text = console.export_text()
    assert "c[bold]e" in text and "m[red]x, adam: paired differences" in text


@pytest.fixture(scope="module")
def binary_folder(tmp_path_factory) -> Path:
    """Four finished tiny binary runs (MEL against the rest): bce x (none, es) x splits 0, 1."""
    out = tmp_path_factory.mktemp("binary") / "grid"
    options = {**TINY, "task": "binary", "positive": ["MEL"], "bootstrap": 0}
    grid = plan_grid(out, models="cbam_vgg16", losses="bce", weighters="none,es", optimizers="adam", splits="0,1",
                     seeds="0", options=options)  # fmt: skip
    assert all(o.status == "trained" for o in run_grid(grid, progress=False))
    return out


def test_a_binary_table_shows_auc_pauc_ap_and_compares_them_paired(binary_folder, tmp_path) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from sampleweight.binary_metrics import partial_auc_above_tpr
    from sampleweight.engine.rundir import read_predictions

    report = write_report(binary_folder, tmp_path, figures=False, baseline="none", resamples=50)
    (table,) = report.tables
    assert table.key == "cbam_vgg16-adam-binary-MEL" and table.title == "cbam_vgg16, adam, binary: MEL vs rest"
    rows = read_csv(tmp_path / "table-cbam_vgg16-adam-binary-MEL.csv")
    assert list(rows) == [("bce", "none"), ("bce", "es")]
    markdown = (tmp_path / "report.md").read_text()
    assert "| loss | weighting | n | Acc | BAcc | mPR | mF1 | AUC | pAUC | AP |" in markdown
    finals = {}
    for weighting in ("none", "es"):
        names = [f"cbam_vgg16-bce-{weighting}-adam-s{split}-binary-MEL" for split in (0, 1)]
        finals[weighting] = [json.loads((binary_folder / name / "metrics.json").read_text()) for name in names]
        row = rows[("bce", weighting)]
        for metric in ("acc", "bacc", "auc", "pauc", "ap"):
            values = np.array([f[metric] if metric in f else f["binary"][metric] for f in finals[weighting]])
            assert float(row[metric]) == pytest.approx(100 * values.mean(), abs=1e-3)
            assert float(row[f"{metric}_sd"]) == pytest.approx(100 * values.std(ddof=1), abs=1e-3)
            assert (float(row[f"{metric}_min"]), float(row[f"{metric}_max"])) == pytest.approx(
                (100 * values.min(), 100 * values.max()), abs=1e-3
            )
            assert format_cell(describe(values)) in markdown
    with open(tmp_path / "comparisons-cbam_vgg16-adam-binary-MEL.csv", newline="") as handle:
        compared = list(csv.DictReader(handle))
    assert {r["baseline"] for r in compared} == {"bce-none"} and {r["setup"] for r in compared} == {"bce-es"}
    pooled = {r["metric"]: r for r in compared if r["scope"] == "pooled"}
    assert list(pooled) == ["acc", "bacc", "mpr", "mf1", "auc", "pauc", "ap"]
    for metric in ("auc", "pauc", "ap"):
        pairs = zip(finals["es"], finals["none"], strict=True)
        expected = np.mean([e["binary"][metric] - n["binary"][metric] for e, n in pairs])
        assert float(pooled[metric]["difference"]) == pytest.approx(100 * expected, abs=1e-3)
        assert float(pooled[metric]["low"]) <= float(pooled[metric]["difference"]) <= float(pooled[metric]["high"])
        assert pooled[metric]["pairs"] == "2" and float(pooled[metric]["p_holm"]) >= float(pooled[metric]["p"])
    # each pair's differences, independently: scikit-learn's ROC AUC and AP (and the ISIC pAUC) of each run's MEL column
    for split in (0, 1):
        scored = {}
        for weighting in ("none", "es"):
            images, true, _, scores, classes = read_predictions(
                binary_folder / f"cbam_vgg16-bce-{weighting}-adam-s{split}-binary-MEL" / "predictions.csv"
            )
            order = np.argsort(images)
            targets = np.array([t == "MEL" for t in true], dtype=int)[order]
            scored[weighting] = (targets, scores[order, classes.index("MEL")])
        assert np.array_equal(scored["none"][0], scored["es"][0])  # the same images, in the same order
        row = next(r for r in compared if r["scope"] == f"split {split} seed 0" and r["metric"] == "auc")
        expected = roc_auc_score(*scored["es"]) - roc_auc_score(*scored["none"])
        assert float(row["difference"]) == pytest.approx(100 * expected, abs=1e-3)
        row = next(r for r in compared if r["scope"] == f"split {split} seed 0" and r["metric"] == "pauc")
        expected = partial_auc_above_tpr(*scored["es"]) - partial_auc_above_tpr(*scored["none"])
        assert float(row["difference"]) == pytest.approx(100 * expected, abs=1e-3)
        row = next(r for r in compared if r["scope"] == f"split {split} seed 0" and r["metric"] == "ap")
        expected = average_precision_score(*scored["es"]) - average_precision_score(*scored["none"])
        assert float(row["difference"]) == pytest.approx(100 * expected, abs=1e-3)
    assert "| loss | weighting | vs | pairs | ΔAcc | ΔBAcc | ΔmPR | ΔmF1 | ΔAUC | ΔpAUC | ΔAP |" in markdown
    assert "Holm's correction over the 7 comparisons of this table" in markdown
    from sampleweight.studies.report import logit_adjusted_run

    for run in collect_runs(binary_folder):  # read from predictions.csv after a monotone map of p: the same figures
        assert logit_adjusted_run(run, 1.0).ranking() == pytest.approx(run.ranking(), abs=1e-6)
    result = runner.invoke(app, ["report", str(binary_folder), "--out", str(tmp_path / "cli"), "--baseline", "none",
                                 "--no-figures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "binary: MEL vs rest" in result.output and "pAUC" in result.output and "ΔAP" in result.output


def test_binary_runs_beside_multiclass_ones_make_their_own_table_and_leave_it_unchanged(
    grid_folder, binary_folder, tmp_path
) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    shutil.copytree(binary_folder, folder / "binary")
    write_report(grid_folder, tmp_path / "alone", figures=False, baseline="none", resamples=50)
    both = write_report(folder, tmp_path / "both", figures=False, baseline="none", resamples=50)
    assert [t.key for t in both.tables] == ["cbam_vgg16-adam", "cbam_vgg16-adam-binary-MEL"]
    for name in ("table-cbam_vgg16-adam.csv", "comparisons-cbam_vgg16-adam.csv"):  # the multiclass files as before
        assert (tmp_path / "both" / name).read_text() == (tmp_path / "alone" / name).read_text()
    assert "auc" not in (tmp_path / "both" / "table-cbam_vgg16-adam.csv").read_text().splitlines()[0]

    def section(path: Path, title: str) -> str:
        text = path.read_text()
        start = text.index(f"\n## {title}\n")
        end = text.find("\n## ", start + 1)
        return text[start : None if end < 0 else end]

    multiclass = "cbam_vgg16, adam (the paper's Table 2)"
    assert section(tmp_path / "both" / "report.md", multiclass) == section(tmp_path / "alone" / "report.md", multiclass)
    binary = section(tmp_path / "both" / "report.md", "cbam_vgg16, adam, binary: MEL vs rest")
    assert "| bce | es | bce-none | 2 |" in binary and "ce-none" not in binary.replace("bce-none", "")
    # a baseline named in full is its table's only: the binary table has no multiclass baseline to pair with
    write_report(folder, tmp_path / "named", figures=False, baseline="ce-none", resamples=50)
    binary = section(tmp_path / "named" / "report.md", "cbam_vgg16, adam, binary: MEL vs rest")
    assert "No paired comparison here: no `ce-none` setup" in binary


ML_LABELS = ("melanocytic", "non_melanocytic", "NV", "MEL", "DF")


def multilabel_case(split: int, n: int = 90) -> tuple[tuple[str, ...], np.ndarray]:
    """A split's validation images and their 0/1 targets [N, 5] (a taxonomy's form: NV, MEL -> melanocytic; DF and an
    unlisted BKL -> non_melanocytic); split 1 holds no DF, so its DF (and no other label) has no AUC."""
    rng = np.random.default_rng(100 + split)
    leaf = rng.choice(4, size=n, p=[0.5, 0.25, 0.1, 0.15] if split == 0 else [0.55, 0.3, 0.0, 0.15])  # NV MEL DF BKL
    if split == 0:
        leaf[:2] = 2  # DF: at least two positives on split 0
    targets = np.stack([leaf < 2, leaf >= 2, leaf == 0, leaf == 1, leaf == 2], axis=1).astype(np.int64)
    return tuple(f"ISIC_{split}{i:05d}" for i in range(n)), targets


def write_multilabel_run(folder: Path, loss: str, weighting: str, split: int, skill: float) -> Path:
    """A finished multilabel run folder of `multilabel_case`'s images, its scores the better the higher ``skill``."""
    _, targets = multilabel_case(split)
    rng = np.random.default_rng([split, len(loss), len(weighting), int(100 * skill)])
    scores = np.clip(skill * targets + (1 - skill) * rng.random(targets.shape), 0, 1)
    path = folder / f"cbam_vgg16-{loss}-{weighting}-adam-s{split}-multilabel"
    return write_multilabel_files(path, targets, scores, ML_LABELS, split=split, loss=loss, weighting=weighting)


def write_multilabel_files(
    path: Path, targets: np.ndarray, scores: np.ndarray, labels: tuple[str, ...], *, split: int, loss: str,
    weighting: str
) -> Path:  # fmt: skip
    """A finished multilabel run as the engine writes one (config.json, metrics.json, predictions.csv), its figures
    from `label_metrics` of its scores (rounded to the 6 decimals written), the thresholds its own validation choice
    (Youden's J)."""
    from sampleweight.binary_metrics import label_metrics

    images, _ = multilabel_case(split)
    scores = np.round(scores, 6)
    path.mkdir(parents=True)
    options = {**TINY, "model": "cbam_vgg16", "loss": loss, "weighters": [weighting], "optimizer": "adam",
               "split": split, "seed": 0, "task": "multilabel", "bootstrap": 0}  # fmt: skip
    (path / "config.json").write_text(json.dumps(options))
    block = label_metrics(targets, scores, labels, resamples=0)
    thresholds = np.array([block["per_label"][label]["threshold"] or np.inf for label in labels])
    predicted = (scores >= thresholds).astype(np.int64)
    precision = [targets[predicted[:, i] == 1, i].mean() for i in range(len(labels)) if predicted[:, i].any()]
    mean = block["mean"]
    metrics = {"task": "multilabel", "labels": list(labels), "multilabel": block, "auc": mean["auc"],
               "pauc": mean["pauc"], "ap": mean["ap"], "bacc": mean["bacc"], "f1": mean["f1"],
               "acc": float((predicted == targets).all(1).mean()), "mpr": float(np.mean(precision)), "mf1": mean["f1"],
               "decoding": "thresholds", "epochs": 1, "run": path.name}  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(metrics))
    with open(path / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "true", "pred", *labels])
        for image, true, pred, row in zip(images, targets, predicted, scores, strict=True):
            joined = [";".join(label for label, on in zip(labels, flags, strict=True) if on) for flags in (true, pred)]
            writer.writerow([image, *joined, *(f"{v:.6f}" for v in row)])
    return path


@pytest.fixture(scope="module")
def multilabel_folder(tmp_path_factory) -> Path:
    """Six fabricated multilabel runs: bce x (none, es) and asl x none, splits 0 and 1 (es ranks better)."""
    out = tmp_path_factory.mktemp("multilabel") / "grid"
    for loss, weighting, skill in (("bce", "none", 0.35), ("bce", "es", 0.5), ("asl", "none", 0.4)):
        for split in (0, 1):
            write_multilabel_run(out, loss, weighting, split, skill)
    return out


def mean_over_labels(targets: np.ndarray, scores: np.ndarray, score) -> float:
    """scikit-learn's figure of each label with both classes, averaged over those labels."""
    found = [
        score(targets[:, i], scores[:, i]) for i in range(targets.shape[1]) if 0 < targets[:, i].sum() < len(targets)
    ]
    return float(np.mean(found))


def test_a_multilabel_table_shows_the_means_over_labels_and_each_labels_auc(multilabel_folder, tmp_path) -> None:
    from sklearn.metrics import roc_auc_score

    report = write_report(multilabel_folder, tmp_path, figures=False)
    (table,) = report.tables
    assert table.key == "cbam_vgg16-adam-multilabel" and table.title == "cbam_vgg16, adam, multilabel: 5 labels"
    assert table.setup["labels"] == ", ".join(ML_LABELS)
    with open(tmp_path / "table-cbam_vgg16-adam-multilabel.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["loss", "weighting", "setup", "n", "splits", "seeds"] + [
        f"{m}{suffix}" for m in ("auc", "pauc", "ap", "bacc", "mf1") for suffix in ("", "_sd", "_min", "_max")
    ]
    rows = read_csv(tmp_path / "table-cbam_vgg16-adam-multilabel.csv")
    assert list(rows) == [("asl", "none"), ("bce", "none"), ("bce", "es")]  # losses not in the paper: by name
    per_label = read_csv(tmp_path / "labels-cbam_vgg16-adam-multilabel.csv")
    markdown = (tmp_path / "report.md").read_text()
    assert "## cbam_vgg16, adam, multilabel: 5 labels" in markdown
    assert "| loss | weighting | n | AUC | pAUC | AP | BAcc | mF1 |" in markdown
    assert "| loss | weighting | n | melanocytic | non_melanocytic | NV | MEL | DF |" in markdown
    for (loss, weighting), row in rows.items():
        folders = [multilabel_folder / f"cbam_vgg16-{loss}-{weighting}-adam-s{split}-multilabel" for split in (0, 1)]
        finals = [json.loads((f / "metrics.json").read_text()) for f in folders]
        assert row["n"] == "2" and row["splits"] == "0 1" and row["setup"] == f"{loss}-{weighting}"
        for metric, key in (("auc", "auc"), ("pauc", "pauc"), ("ap", "ap"), ("bacc", "bacc"), ("mf1", "f1")):
            values = np.array([final["multilabel"]["mean"][key] for final in finals])
            assert float(row[metric]) == pytest.approx(100 * values.mean(), abs=1e-3)
            assert float(row[f"{metric}_sd"]) == pytest.approx(100 * values.std(ddof=1), abs=1e-3)
            assert (float(row[f"{metric}_min"]), float(row[f"{metric}_max"])) == pytest.approx(
                (100 * values.min(), 100 * values.max()), abs=1e-3
            )
            assert format_cell(describe(values)) in markdown
        for split, final in enumerate(finals):  # the fabricated means: scikit-learn's, over labels with both classes
            _, targets = multilabel_case(split)
            scores = np.loadtxt(folders[split] / "predictions.csv", delimiter=",", skiprows=1, usecols=range(3, 8))
            assert final["auc"] == pytest.approx(mean_over_labels(targets, scores, roc_auc_score))
        labelled = per_label[(loss, weighting)]
        for label in ML_LABELS:
            values = [final["multilabel"]["per_label"][label]["auc"] for final in finals]
            if label == "DF":  # split 1 has no DF image: no AUC of DF for the setup
                assert values[1] is None and labelled["DF"] == labelled["DF_sd"] == ""
                continue
            assert float(labelled[label]) == pytest.approx(100 * np.mean(values), abs=1e-3)
            assert float(labelled[f"{label}_sd"]) == pytest.approx(100 * np.std(values, ddof=1), abs=1e-3)
            assert f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}" in markdown
    assert "Calibration" not in markdown and "paper" not in markdown.lower().replace("paper-style", "")


def test_multilabel_setups_are_compared_paired_on_the_means_over_their_labels(multilabel_folder, tmp_path) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from sampleweight.binary_metrics import partial_auc_above_tpr

    result = runner.invoke(app, ["report", str(multilabel_folder), "--out", str(tmp_path), "--baseline", "none",
                                 "--no-figures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "multilabel: 5 labels" in result.output and "ΔAUC" in result.output
    assert "eachlabel'sROCAUC" in "".join(result.output.split())  # the per-label table, as the terminal wraps it
    with open(tmp_path / "comparisons-cbam_vgg16-adam-multilabel.csv", newline="") as handle:
        compared = list(csv.DictReader(handle))
    assert {r["setup"] for r in compared} == {"bce-es"} and {r["baseline"] for r in compared} == {"bce-none"}
    pooled = {r["metric"]: r for r in compared if r["scope"] == "pooled"}
    assert list(pooled) == ["auc", "pauc", "ap"]
    scores_by_run = {}
    for weighting in ("none", "es"):
        for split in (0, 1):
            folder = multilabel_folder / f"cbam_vgg16-bce-{weighting}-adam-s{split}-multilabel"
            scores_by_run[(weighting, split)] = np.loadtxt(folder / "predictions.csv", delimiter=",", skiprows=1,
                                                           usecols=range(3, 8))  # fmt: skip
    for metric, score in (("auc", roc_auc_score), ("pauc", partial_auc_above_tpr), ("ap", average_precision_score)):
        differences = []
        for split in (0, 1):  # each pair, independently: scikit-learn per label, averaged over the labels
            _, targets = multilabel_case(split)
            expected = mean_over_labels(targets, scores_by_run[("es", split)], score) - mean_over_labels(
                targets, scores_by_run[("none", split)], score
            )
            row = next(r for r in compared if r["scope"] == f"split {split} seed 0" and r["metric"] == metric)
            assert float(row["difference"]) == pytest.approx(100 * expected, abs=1e-3) and row["pairs"] == "1"
            differences.append(expected)
        assert float(pooled[metric]["difference"]) == pytest.approx(100 * np.mean(differences), abs=1e-3)
        assert float(pooled[metric]["low"]) <= float(pooled[metric]["difference"]) <= float(pooled[metric]["high"])
        assert pooled[metric]["pairs"] == "2" and float(pooled[metric]["p_holm"]) >= float(pooled[metric]["p"])
    assert float(pooled["auc"]["difference"]) > 5  # es's scores rank better, by construction
    markdown = (tmp_path / "report.md").read_text()
    assert (
        "| loss | weighting | vs | pairs | ΔAUC | ΔpAUC | ΔAP |" in markdown
        and "| bce | es | bce-none | 2 |" in markdown
    )
    assert "Holm's correction over the 3 comparisons of this table" in markdown
    assert "stratified by each image's rarest label" in markdown
    named = write_report(multilabel_folder, tmp_path / "named", figures=False, baseline="bce-none", resamples=50)
    assert sorted(c.cell.name for c in named.tables[0].comparisons) == ["asl-none", "bce-es"]


def test_multilabel_figures_are_per_label_recall_and_auc_bars_and_no_confusion(multilabel_folder, tmp_path) -> None:
    report = write_report(multilabel_folder, tmp_path)
    figures = tmp_path / "figures"
    names = sorted(p.relative_to(figures).as_posix() for p in report.figures)
    assert names == [f"{kind}-cbam_vgg16-adam-multilabel-{loss}.png" for kind in ("auc", "recall")
                     for loss in ("asl", "bce")]  # fmt: skip
    for path in report.figures:
        assert_png(path)
    markdown = (tmp_path / "report.md").read_text()
    assert "![per-label AUC](figures/auc-cbam_vgg16-adam-multilabel-bce.png)" in markdown
    assert "![per-label recall](figures/recall-cbam_vgg16-adam-multilabel-bce.png)" in markdown
    (table,) = report.tables
    cell = next(c for c in table.cells if c.name == "bce-es")
    sensitivity = [[json.loads((run.path / "metrics.json").read_text())["multilabel"]["per_label"][label]["sensitivity"]
                    for label in ML_LABELS] for run in cell.runs]  # fmt: skip
    assert sensitivity[1][4] is None  # split 1: no DF image, no sensitivity of DF
    np.testing.assert_allclose(cell.recall[:4], np.mean(np.array(sensitivity, dtype=float)[:, :4], axis=0))
    assert np.isnan(cell.recall[4])


def test_a_folder_of_the_three_tasks_gives_their_tables_the_multiclass_ones_unchanged(
    grid_folder, binary_folder, multilabel_folder, tmp_path
) -> None:
    import shutil

    from sampleweight.studies.report import logit_adjusted_run

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    shutil.copytree(binary_folder, folder / "binary")
    shutil.copytree(multilabel_folder, folder / "multilabel")
    write_report(grid_folder, tmp_path / "alone", figures=False, baseline="none", resamples=50)
    both = write_report(folder, tmp_path / "all", figures=False, baseline="none", resamples=50)
    assert [t.key for t in both.tables] == ["cbam_vgg16-adam", "cbam_vgg16-adam-binary-MEL",
                                            "cbam_vgg16-adam-multilabel"]  # fmt: skip
    for name in ("table-cbam_vgg16-adam.csv", "comparisons-cbam_vgg16-adam.csv"):
        assert (tmp_path / "all" / name).read_text() == (tmp_path / "alone" / name).read_text()
    text = (tmp_path / "all" / "report.md").read_text()
    multilabel = text[text.index("\n## cbam_vgg16, adam, multilabel: 5 labels\n") :]
    assert "| bce | es | bce-none | 2 |" in multilabel and "ce-none" not in multilabel.replace("bce-none", "")
    assert "| ce | cb | ce-none |" in text and "| bce | es | bce-none | 2 | " in text
    # logit adjustment is a softmax's: multilabel runs are shown as trained, and refused alone
    run_name = "cbam_vgg16-bce-none-adam-s0-multilabel"
    (multilabel_run,) = [run for run in collect_runs(multilabel_folder) if run.path.name == run_name]
    with pytest.raises(sw.ConfigError, match="is a multilabel run: its labels' sigmoids have no class prior"):
        logit_adjusted_run(multilabel_run, 1.0)
    adjusted = write_report(multilabel_folder, tmp_path / "adjusted", figures=False, logit_adjust=[1.0])
    assert [cell.name for cell in adjusted.tables[0].cells] == ["asl-none", "bce-none", "bce-es"]
    assert "`--logit-adjust` leaves the multilabel runs as trained" in (tmp_path / "adjusted" / "report.md").read_text()


def test_runs_of_two_label_sets_make_two_tables_with_files_of_their_own(multilabel_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "runs"
    shutil.copytree(multilabel_folder, folder / "five")
    labels = ("NV", "MEL", "melanocytic")
    columns = [ML_LABELS.index(label) for label in labels]
    for split in (0, 1):  # the same setup on three of the labels: a table of its own, never pooled with the five
        _, targets = multilabel_case(split)
        scores = np.random.default_rng(split).random(targets.shape)
        path = folder / "three" / f"cbam_vgg16-bce-none-adam-s{split}-multilabel"
        write_multilabel_files(path, targets[:, columns], scores[:, columns], labels, split=split, loss="bce",
                               weighting="none")  # fmt: skip
    report = write_report(folder, tmp_path / "out", figures=False, baseline="none", resamples=30)
    keys = [table.key for table in report.tables]
    assert len(keys) == 2 and all(k.startswith("cbam_vgg16-adam-multilabel-") and len(k) == 35 for k in keys)
    assert sorted(len(table.classes) for table in report.tables) == [3, 5]
    for table in report.tables:
        assert (tmp_path / "out" / f"table-{table.key}.csv").is_file()
        assert (tmp_path / "out" / f"labels-{table.key}.csv").is_file()
        assert table.title.startswith(f"cbam_vgg16, adam, multilabel: {len(table.classes)} labels (")


def test_score_multiclass_pairs_a_multiclass_runs_summed_probability_with_the_binary_runs(
    grid_folder, binary_folder, tmp_path
) -> None:
    import shutil

    from sklearn.metrics import average_precision_score, roc_auc_score

    from sampleweight.engine.rundir import read_predictions

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    shutil.copytree(binary_folder, folder / "binary")
    plain = write_report(folder, tmp_path / "plain", figures=False, baseline="bce-none", resamples=50)
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "scored"), "--baseline", "bce-none",
                                 "--no-figures", "--score-multiclass"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (tmp_path / "plain" / "report.md").unlink()
    for path in (tmp_path / "plain").iterdir():  # the multiclass table as it was; the binary one gains rows
        if "binary" not in path.name:
            assert path.read_text() == (tmp_path / "scored" / path.name).read_text(), path.name
    rows = read_csv(tmp_path / "scored" / "table-cbam_vgg16-adam-binary-MEL.csv")
    classes = len(collect_runs(grid_folder)[0].classes)
    assert list(rows) == [("ce", f"none from={classes}-class"), ("ce", f"cb from={classes}-class"),
                          ("focal", f"none from={classes}-class"), ("bce", "none"), ("bce", "es")]  # fmt: skip
    assert [t.cells for t in plain.tables][1][0].name == "bce-none"
    row = rows[("ce", f"cb from={classes}-class")]
    assert row["n"] == "2" and row["seeds"] == "0"  # the seed-1 runs have no binary run on their images

    def mel_scores(run: Path) -> tuple[np.ndarray, np.ndarray]:
        images, true, _, scores, names = read_predictions(run / "predictions.csv")
        order = np.argsort(images)
        return np.array([t == "MEL" for t in true], dtype=int)[order], scores[order, names.index("MEL")]

    scored = {split: mel_scores(folder / f"cbam_vgg16-ce-cb-adam-s{split}") for split in (0, 1)}
    binary = {split: mel_scores(binary_folder / f"cbam_vgg16-bce-none-adam-s{split}-binary-MEL") for split in (0, 1)}
    aucs = [roc_auc_score(*scored[split]) for split in (0, 1)]
    assert float(row["auc"]) == pytest.approx(100 * np.mean(aucs), abs=1e-3)
    assert float(row["ap"]) == pytest.approx(100 * np.mean([average_precision_score(*scored[s]) for s in (0, 1)]),
                                             abs=1e-3)  # fmt: skip
    with open(tmp_path / "scored" / "comparisons-cbam_vgg16-adam-binary-MEL.csv", newline="") as handle:
        compared = list(csv.DictReader(handle))
    setup = f"ce-cb-from={classes}-class"
    for split in (0, 1):  # paired with plain bce on the same images, independently
        assert np.array_equal(scored[split][0], binary[split][0])
        line = next(r for r in compared if r["setup"] == setup and r["scope"] == f"split {split} seed 0"
                    and r["metric"] == "auc")  # fmt: skip
        assert line["baseline"] == "bce-none"
        assert float(line["difference"]) == pytest.approx(
            100 * (roc_auc_score(*scored[split]) - roc_auc_score(*binary[split])), abs=1e-3
        )
    markdown = (tmp_path / "scored" / "report.md").read_text()
    assert f"Rows `from={classes}-class`: multiclass runs of this model and optimizer" in markdown


def test_a_multiclass_run_scored_as_several_positive_classes_sums_their_probabilities(grid_folder) -> None:
    from sklearn.metrics import roc_auc_score

    from sampleweight.studies.report import multiclass_scored_run

    run = next(r for r in collect_runs(grid_folder) if r.path.name == "cbam_vgg16-ce-none-adam-s0")
    positive = list(run.classes[:2])
    scored = multiclass_scored_run(run, positive)
    assert scored.task == f"binary:{'+'.join(positive)}" and scored.classes == ["rest", "+".join(positive)]
    assert scored.options["from"] == f'"{len(run.classes)}-class"'
    original = run.predictions
    summed = original.scores[:, 0] + original.scores[:, 1]
    np.testing.assert_allclose(scored.predictions.scores[:, 1], summed)
    truth = np.isin(original.targets, [0, 1])
    assert scored.ranking()["auc"] == pytest.approx(roc_auc_score(truth, summed))
    assert scored.metrics["acc"] == pytest.approx(np.mean(np.isin(original.predicted, [0, 1]) == truth))
    with pytest.raises(sw.ConfigError, match="unknown class 'XYZ'"):
        multiclass_scored_run(run, ["XYZ"])
    with pytest.raises(sw.ConfigError, match="only a multiclass run is scored as a binary task"):
        multiclass_scored_run(scored, positive)


@pytest.fixture(scope="module")
def tree_folder(tmp_path_factory) -> Path:
    """Two finished tiny multilabel runs on the label tree's form of the grid's data: bce x none x splits 0, 1."""
    out = tmp_path_factory.mktemp("tree") / "grid"
    options = {**TINY, "task": "multilabel", "bootstrap": 0}
    grid = plan_grid(out, models="cbam_vgg16", losses="bce", weighters="none", optimizers="adam", splits="0,1",
                     seeds="0", options=options)  # fmt: skip
    assert all(o.status == "trained" for o in run_grid(grid, progress=False))
    return out


def test_score_multiclass_scores_a_multiclass_run_on_its_label_trees_nodes_beside_the_multilabel_runs(
    grid_folder, tree_folder, tmp_path
) -> None:
    import shutil

    from sklearn.metrics import average_precision_score, roc_auc_score

    from sampleweight.data.multilabel import taxonomy_labels, taxonomy_multilabel
    from sampleweight.engine.rundir import read_predictions
    from sampleweight.studies.report import multiclass_label_tree_run
    from sampleweight.taxonomy import ISIC2018_TAXONOMY

    folder = tmp_path / "runs"
    shutil.copytree(grid_folder, folder)
    shutil.copytree(tree_folder, folder / "tree")
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "scored"), "--baseline", "bce-none",
                                 "--no-figures", "--score-multiclass"])  # fmt: skip
    assert result.exit_code == 0, result.output
    classes = len(collect_runs(grid_folder)[0].classes)
    rows = read_csv(tmp_path / "scored" / "table-cbam_vgg16-adam-multilabel.csv")
    assert list(rows) == [("ce", f"none from={classes}-class"), ("ce", f"cb from={classes}-class"),
                          ("focal", f"none from={classes}-class"), ("bce", "none")]  # fmt: skip
    row = rows[("ce", f"cb from={classes}-class")]
    assert row["n"] == "2" and row["seeds"] == "0"  # the seed-1 runs have no multilabel run on their images

    records_classes = collect_runs(grid_folder)[0].classes
    tree = ISIC2018_TAXONOMY.with_classes(records_classes)
    labels = taxonomy_labels(tree)
    paths = taxonomy_multilabel(np.arange(len(records_classes)), tree)

    def node_scores(run: Path) -> tuple[np.ndarray, np.ndarray]:  # independent: each node's classes summed by name
        images, true, _, scores, names = read_predictions(run / "predictions.csv")
        order = np.argsort(images)
        targets = np.array([[int(label in t.split(";")) for label in labels] for t in true])
        if names == list(labels):  # a multilabel run's own scores
            return targets[order], scores[order]
        leaves = {label: [names.index(c) for c in names if label in {c, *ancestors(c)}] for label in labels}
        summed = np.stack([scores[:, leaves[label]].sum(1) for label in labels], axis=1)
        truth = np.array([[int(label in {t, *ancestors(t)}) for label in labels] for t in true])
        return truth[order], summed[order]

    def ancestors(name: str) -> set[str]:
        found, node = set(), tree.parent(name)
        while node is not None and node != tree.root:
            found, node = found | {node}, tree.parent(node)
        return found

    scored = {s: node_scores(folder / f"cbam_vgg16-ce-cb-adam-s{s}") for s in (0, 1)}
    plain = {s: node_scores(tree_folder / f"cbam_vgg16-bce-none-adam-s{s}-multilabel") for s in (0, 1)}
    aucs = [mean_over_labels(*scored[s], roc_auc_score) for s in (0, 1)]
    assert float(row["auc"]) == pytest.approx(100 * np.mean(aucs), abs=1e-3)
    assert float(row["ap"]) == pytest.approx(
        100 * np.mean([mean_over_labels(*scored[s], average_precision_score) for s in (0, 1)]), abs=1e-3
    )
    with open(tmp_path / "scored" / "comparisons-cbam_vgg16-adam-multilabel.csv", newline="") as handle:
        compared = list(csv.DictReader(handle))
    for split in (0, 1):  # paired with the multilabel head on the same images and labels
        assert np.array_equal(scored[split][0], plain[split][0])
        line = next(r for r in compared if r["setup"] == f"ce-cb-from={classes}-class"
                    and r["scope"] == f"split {split} seed 0" and r["metric"] == "auc")  # fmt: skip
        expected = mean_over_labels(*scored[split], roc_auc_score) - mean_over_labels(*plain[split], roc_auc_score)
        assert float(line["difference"]) == pytest.approx(100 * expected, abs=1e-3)
    markdown = (tmp_path / "scored" / "report.md").read_text()
    note = f"Rows `from={classes}-class`: multiclass runs of this model and optimizer (`--score-multiclass`) scored on"
    assert f"{note} these labels" in markdown
    run = next(r for r in collect_runs(grid_folder) if r.path.name == "cbam_vgg16-ce-none-adam-s0")
    tree_run = multiclass_label_tree_run(run)
    assert tree_run.task == "multilabel" and tree_run.classes == list(labels)
    np.testing.assert_allclose(tree_run.predictions.scores, run.predictions.scores @ paths, rtol=1e-6)
    with pytest.raises(sw.ConfigError, match="only a multiclass run is scored on its label tree"):
        multiclass_label_tree_run(tree_run)
