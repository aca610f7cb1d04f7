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
