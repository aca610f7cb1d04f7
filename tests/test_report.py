"""`sampleweight report`: the paper-style tables equal the runs' metrics; the paper's figures; PNGs; errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.studies.grid import plan_grid, run_grid
from sampleweight.studies.report import collect_runs, format_cell, summarize, write_report

runner = CliRunner()
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
            lr=1e-3)  # fmt: skip


@pytest.fixture(scope="module")
def grid_folder(tmp_path_factory) -> Path:
    """Six finished tiny runs: ce x (none, cb) x splits 0, 1 and focal x none x splits 0, 1."""
    out = tmp_path_factory.mktemp("report") / "grid"
    for losses, weighters in (("ce", "none,cb"), ("focal", "none")):
        grid = plan_grid(out, models="cbam_vgg16", losses=losses, weighters=weighters, optimizers="adam",
                         splits="0,1", options=TINY)  # fmt: skip
        assert all(o.status == "trained" for o in run_grid(grid, progress=False))
    return out


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as handle:
        return {(row["loss"], row["weighting"]): row for row in csv.DictReader(handle)}


def assert_png(path: Path, min_size: int = 100) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_size
        assert np.asarray(image.convert("L"), dtype=float).std() > 0, f"{path} is blank"


def test_table_cells_are_the_mean_and_spread_of_the_runs_metrics(grid_folder, tmp_path) -> None:
    report = write_report(grid_folder, tmp_path, figures=False)
    assert [t.key for t in report.tables] == ["cbam_vgg16-adam"]
    rows = read_csv(tmp_path / "table-cbam_vgg16-adam.csv")
    assert list(rows) == [("ce", "none"), ("ce", "cb"), ("focal", "none")]  # the paper's row order
    markdown = (tmp_path / "report.md").read_text()
    for (loss, weighting), row in rows.items():
        finals = [json.loads((grid_folder / f"cbam_vgg16-{loss}-{weighting}-adam-s{s}" / "metrics.json").read_text())
                  for s in (0, 1)]  # fmt: skip
        assert row["n"] == "2" and row["splits"] == "0 1"
        for metric in ("acc", "bacc", "mpr", "mf1"):
            values = np.array([final[metric] for final in finals])
            assert float(row[metric]) == pytest.approx(100 * values.mean(), abs=1e-3)
            assert float(row[f"{metric}_spread"]) == pytest.approx(100 * abs(values[0] - values[1]) / 2, abs=1e-3)
            assert format_cell(values.mean(), values.std(), 2) in markdown
        assert "paper_acc" not in row
    cells = {(c.loss, c.weighting): c for c in summarize(collect_runs(grid_folder))[0].cells}
    recall = [[json.loads((r.path / "metrics.json").read_text())["per_class"][c]["recall"] for c in r.classes]
              for r in cells[("ce", "cb")].runs]  # fmt: skip
    np.testing.assert_allclose(cells[("ce", "cb")].recall, np.mean(recall, axis=0))
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
    assert len(confusion) == 6 and (figures / "confusion" / "cbam_vgg16-ce-cb-adam-s1.png") in confusion
    for path in [*recall, *confusion]:
        assert_png(path)
    assert set(report.figures) == {*recall, *confusion}
    assert "figures/recall-cbam_vgg16-adam-ce.png" in (tmp_path / "report.md").read_text()


def test_report_of_a_folder_without_runs_exits_2_with_one_line(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = runner.invoke(app, ["report", str(folder)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "no finished runs" in runner.invoke(app, ["report", str(tmp_path / "empty")]).stderr


def test_runs_of_different_setups_are_not_averaged_together(grid_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(grid_folder, folder)
    run = folder / "cbam_vgg16-ce-none-adam-s0"
    copy = folder / "old" / run.name
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "split": 1, "epochs": 150}))
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 2
    assert "differ in epochs (1 in" in result.output and "report grids of different setups separately" in result.output
    (copy / "config.json").write_text(json.dumps(config))  # same setup, but split 0 twice
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 2 and "are both split 0 of cbam_vgg16 adam ce none" in result.output
