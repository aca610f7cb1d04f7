"""The test-set workflow (issue 23, 3): ``evaluate GRID --each --data TEST --out DIR`` scores every finished run of a
grid alone, resumably, and ``report DIR --baseline NAME`` compares the setups paired on the test images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.data import read_dataset
from sampleweight.engine.evaluation import evaluate
from sampleweight.studies.grid import plan_grid, run_grid, run_stages
from sampleweight.studies.report import collect_runs, write_report

runner = CliRunner()
TEST = "synthetic:60:7"  # another synthetic set than the runs' synthetic:160
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
            lr=1e-3, quiet=True, bootstrap=0)  # fmt: skip
FINISHED = ["cbam_vgg16-ce-cb-adam-s0", "cbam_vgg16-ce-cb-adam-s1", "cbam_vgg16-ce-none-adam-s0",
            "cbam_vgg16-ce-none-adam-s0+crt", "cbam_vgg16-ce-none-adam-s1"]  # fmt: skip
FILES = ["data.json", "metrics.json", "predictions.csv", "run.json"]


def error_lines(output: str) -> list[str]:
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")) :]


def each(grid: Path, out: Path, *extra: str):
    return runner.invoke(app, ["evaluate", str(grid), "--each", "--data", TEST, "--out", str(out), "--bootstrap", "0",
                               *extra])  # fmt: skip


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A tiny grid: ce x (none, cb) x splits 0, 1, a crt stage of one run, and one unfinished run."""
    out = tmp_path_factory.mktemp("each") / "grid"
    planned = plan_grid(out, models="cbam_vgg16", losses="ce", weighters="none,cb", optimizers="adam", splits="0,1",
                        options=TINY)  # fmt: skip
    assert all(o.status == "trained" for o in run_grid(planned, progress=False))
    (stage,) = run_stages(planned, ["crt"], only=[r.name for r in planned.runs].index("cbam_vgg16-ce-none-adam-s0"))
    assert stage.status == "retrained"
    shutil.copytree(out / "cbam_vgg16-ce-cb-adam-s1", out / "unfinished")
    (out / "unfinished" / "metrics.json").unlink()
    return out


@pytest.fixture(scope="module")
def evaluated(grid, tmp_path_factory) -> tuple[Path, str]:
    """``evaluate GRID --each`` into a folder of its own, and what it printed."""
    out = tmp_path_factory.mktemp("each") / "test"
    result = each(grid, out)
    assert result.exit_code == 0, result.output
    return out, " ".join(result.output.split())


def mtimes(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*.*"))}


def test_every_finished_run_and_stage_gets_the_evaluation_one_evaluate_writes(grid, evaluated, tmp_path) -> None:
    out, output = evaluated
    assert sorted(path.name for path in out.iterdir()) == FINISHED  # not the unfinished run
    for name in FINISHED:
        assert sorted(path.name for path in (out / name).iterdir()) == FILES
    assert f"evaluate: skipped unfinished: not finished (no metrics.json): finish it with sampleweight train --out " \
           f"{grid / 'unfinished'} --resume" in output  # fmt: skip
    assert f"5 evaluated, 0 skipped (evaluated before), 1 unfinished run(s) left out -> {out}" in output
    assert "evaluate: done cbam_vgg16-ce-none-adam-s0+crt" in output and "5/5 runs" in output  # the rich bar
    name = "cbam_vgg16-ce-none-adam-s0+crt"
    metrics, single = evaluate(grid / name, TEST, out=tmp_path / "single", bootstrap=0, quiet=True)
    assert json.loads((out / name / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for file in ("predictions.csv", "data.json"):
        assert (out / name / file).read_text() == (single / file).read_text()
    source = json.loads((out / name / "run.json").read_text())
    assert source["run"] == str((grid / name).resolve())
    assert source["config"] == json.loads((grid / name / "config.json").read_text())  # the setup: a stage's too
    assert source["train_class_counts"] == json.loads((grid / name / "data.json").read_text())["class_counts"]["train"]


def test_a_second_call_skips_them_all_and_redoes_what_is_missing_or_stale(grid, evaluated, tmp_path) -> None:
    out = tmp_path / "test"
    shutil.copytree(evaluated[0], out)
    before = mtimes(out)
    result = each(grid, out)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "evaluate: 5 of 5 runs already evaluated (skipped)" in output
    assert "0 evaluated, 5 skipped (evaluated before), 1 unfinished run(s) left out" in output
    assert mtimes(out) == before
    shutil.rmtree(out / FINISHED[0])  # deleted
    (out / FINISHED[1] / "run.json").unlink()  # interrupted before its last file
    (out / FINISHED[2] / "data.json").unlink()
    checkpoint = grid / FINISHED[3] / "checkpoint.pt"  # trained again since (restored below: the grid is shared)
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        result = each(grid, out)
    finally:
        os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "4 evaluated, 1 skipped (evaluated before)" in output
    assert "its run changed since it was evaluated (checkpoint.pt rewritten): evaluated again" in output
    for name in FINISHED:
        assert sorted(path.name for path in (out / name).iterdir()) == FILES
    after = mtimes(out)
    assert [key for key in before if after[key] == before[key]] == [f"{FINISHED[4]}/{f}" for f in FILES]
    assert (out / FINISHED[0] / "predictions.csv").read_text() == (
        evaluated[0] / FINISHED[0] / "predictions.csv"
    ).read_text()


def test_report_pairs_the_setups_on_the_test_images(grid, evaluated, tmp_path) -> None:
    out = tmp_path / "test"
    shutil.copytree(evaluated[0], out)
    report = write_report(out, figures=False, baseline="none", resamples=200)
    (table,) = report.tables
    assert [(cell.label, cell.n) for cell in table.cells] == [("none", 2), ("cb", 2), ("none+crt", 1)]
    test_images = set(read_dataset(TEST).image_ids)
    for cell in table.cells:
        for run in cell.runs:
            assert run.evaluation is not None and run.path.parent == out
            assert len(run.predictions.images) == 60 and set(run.predictions.images) == test_images
            validation = set(_validation_images(run.evaluation.source.run))
            assert len(validation) < 60 and validation != test_images  # the test images, not the run's validation side
    compared = {(c.cell.name, c.baseline.name): c.comparison for c in table.comparisons}
    assert sorted(compared) == [("ce-cb", "ce-none"), ("ce-none+crt", "ce-none")]
    cb = compared[("ce-cb", "ce-none")]
    assert set(cb.per_pair) == {(0, 0), (1, 0)} and cb.pooled[0].pairs == 2
    for split in (0, 1):  # each pair's difference is the difference of the two evaluations on the test images
        runs = {name: json.loads((out / f"cbam_vgg16-ce-{name}-adam-s{split}" / "metrics.json").read_text())
                for name in ("cb", "none")}  # fmt: skip
        for difference in cb.per_pair[(split, 0)]:
            assert difference.estimate == pytest.approx(runs["cb"][difference.metric] - runs["none"][difference.metric])
    markdown = " ".join(report.markdown.read_text().split())
    assert f"5 evaluations in `{out}`: finished runs, each scored on the test set `{TEST}`" in markdown
    assert "evaluated on synthetic:60:7" in markdown and f"on the test images of `{TEST}`" in markdown
    result = runner.invoke(app, ["report", str(out), "--baseline", "ce-none", "--no-figures", "--out",
                                 str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "paired differences" in result.output
    # the training runs keep their validation figures: evaluations beside runs are not read as runs
    shutil.copytree(out, grid.parent / "grid-with-test" / "test")
    shutil.copytree(grid / FINISHED[0], grid.parent / "grid-with-test" / FINISHED[0])
    (run,) = collect_runs(grid.parent / "grid-with-test")
    assert run.evaluation is None and run.metrics == json.loads((grid / FINISHED[0] / "metrics.json").read_text())


def _validation_images(run: Path) -> list[str]:
    with open(run / "predictions.csv") as handle:
        return [line.split(",")[0] for line in handle.read().splitlines()[1:]]


def test_tta_and_logit_adjustment_reach_every_evaluation_and_the_report(grid, evaluated, tmp_path) -> None:
    small = tmp_path / "grid"
    for name in FINISHED[2:4]:
        shutil.copytree(grid / name, small / name)
    out = tmp_path / "test-flip-la1"
    result = each(small, out, "--tta", "flip", "--logit-adjust", "1")
    assert result.exit_code == 0, result.output
    for name in FINISHED[2:4]:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert (metrics["tta"], metrics["views"], metrics["logit_adjust"]) == ("flip", 4, 1.0)
    (table,) = write_report(out, figures=False).tables
    assert [cell.label for cell in table.cells] == ["none", "none+crt"]  # the options every row shares: not shown
    assert table.cells[0].options == {"logit_adjust": "1.0", "tta": '"flip"'}
    result = runner.invoke(app, ["report", str(out), "--logit-adjust", "1", "--no-figures"])
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert "was logit-adjusted when it was evaluated (--logit-adjust 1); adjusting it again would correct it" in line
    # the plain evaluations adjust in the report with each run's training prior (from run.json)
    report = write_report(evaluated[0], out=tmp_path / "r", figures=False, logit_adjust=[1.0])
    labels = [cell.label for cell in report.tables[0].cells]
    assert "none logit_adjust=1.0" in labels and "none+crt logit_adjust=1.0" in labels


@pytest.mark.parametrize(
    "case",
    ["one run", "a checkpoint", "an ensemble", "no out", "combine", "submission", "out is the grid", "out in a run",
     "other options", "a training run in out", "no grid"],
)  # fmt: skip
def test_bad_each_input_exits_2_with_one_line(grid, evaluated, tmp_path, case) -> None:
    run, o = grid / FINISHED[0], str(tmp_path / "o")
    base = ["evaluate", str(grid), "--each", "--data", TEST, "--bootstrap", "0"]
    args, message = {
        "one run": (["evaluate", str(run), "--each", "--data", TEST, "--out", str(tmp_path / "o")],
                    f"--each scores every run under a grid folder, and {run} is one run: leave out --each"),
        "a checkpoint": (["evaluate", str(run / "checkpoint.pt"), "--each", "--data", TEST, "--out", o],
                         "is one run: leave out --each"),
        "an ensemble": (["evaluate", str(grid), str(run), "--each", "--data", TEST, "--out", o],
                        "--each scores the runs of one grid folder one by one, and 2 paths were given; several paths "
                        "are an ensemble: leave out --each"),
        "no out": (base, f"--each needs --out: the folder that gets one evaluation per run of {grid}"),
        "combine": ([*base, "--out", o, "--combine", "geometric"], "--combine is for an ensemble"),
        "submission": ([*base, "--out", o, "--submission", "s.csv"], "--submission writes one file"),
        "out is the grid": ([*base, "--out", str(grid)], f"--out {grid} is the grid itself"),
        "out in a run": ([*base, "--out", str(run / "test")], f"would put an evaluation into the run {run}"),
        "other options": ([*base, "--out", str(tmp_path / "test"), "--tta", "flip"],
                          f"{tmp_path / 'test' / FINISHED[0]} holds another evaluation (tta 'none' there, 'flip' "
                          f"now) (and 4 more folder(s) of {tmp_path / 'test'}); choose another --out, or replace them "
                          "with --overwrite"),
        "a training run in out": ([*base, "--out", str(tmp_path / "test")],
                                  f"{tmp_path / 'test' / FINISHED[1]} holds a training run (checkpoint.pt, "
                                  "config.json, metrics.jsonl); choose another --out"),
        "no grid": (["evaluate", str(tmp_path / "missing"), "--each", "--data", TEST, "--out", o],
                    "is not a folder: --each takes the folder of a grid"),
    }[case]  # fmt: skip
    if case in ("other options", "a training run in out"):
        shutil.copytree(evaluated[0], tmp_path / "test")
    if case == "a training run in out":
        shutil.rmtree(tmp_path / "test" / FINISHED[1])
        shutil.copytree(grid / FINISHED[1], tmp_path / "test" / FINISHED[1])
    before = mtimes(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert message in " ".join(line.split()), line
    assert mtimes(tmp_path) == before  # refused before anything is written
