"""`sampleweight grid`: planning, skipping finished runs, resuming half-finished ones, workers, commands, errors."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app
from sampleweight.engine.rundir import RunDirectory
from sampleweight.engine.training import train
from sampleweight.studies.grid import (
    SUMMARY_COLUMNS,
    Grid,
    GridRun,
    _train_subprocess,
    plan_grid,
    run_grid,
    write_summary,
)

runner = CliRunner()
TINY = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=1,
            lr=1e-3)  # fmt: skip
TINY_FLAGS = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
              "--batch-size", "16", "--lr", "1e-3", "--quiet"]  # fmt: skip


def read_summary(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "summary.csv", newline="") as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def test_plan_is_the_cross_product_with_readable_names_and_per_run_defaults(tmp_path) -> None:
    options = {k: v for k, v in TINY.items() if k != "lr"}
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce,focal", weighters="none,ohem+es", optimizers="adam,sgd",
                     splits="0,1", options={**options, "loss_options": {"gamma": 2.0}})  # fmt: skip
    assert len(grid.runs) == 2 * 2 * 2 * 2
    names = [run.name for run in grid.runs]
    assert names[:3] == ["cbam_vgg16-ce-none-adam-s0", "cbam_vgg16-ce-none-adam-s1", "cbam_vgg16-ce-none-sgd-s0"]
    assert "cbam_vgg16-focal-ohem+es-sgd-s1" in names and len(set(names)) == len(names)
    by_name = {run.name: run.config for run in grid.runs}
    assert by_name["cbam_vgg16-focal-ohem+es-sgd-s1"].weighters == ["ohem", "es"]
    assert by_name["cbam_vgg16-focal-none-adam-s0"].loss_options == {"gamma": 2.0}
    assert by_name["cbam_vgg16-ce-none-adam-s0"].loss_options == {}
    # the paper's learning rate per optimizer where --lr is not given; shared options everywhere
    assert by_name["cbam_vgg16-ce-none-adam-s0"].lr == 1e-5 and by_name["cbam_vgg16-ce-none-sgd-s0"].lr == 1e-4
    assert all(config.epochs == 1 and config.image_size == 32 for config in by_name.values())
    assert all(run.path == tmp_path / run.name for run in grid.runs)


def test_seeds_are_an_axis_and_seed_0_keeps_its_folder_names(tmp_path) -> None:
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0,1",
                     seeds="0,1,2", options=TINY)  # fmt: skip
    assert [run.name for run in grid.runs] == [
        "cbam_vgg16-ce-none-adam-s0", "cbam_vgg16-ce-none-adam-s0-seed1", "cbam_vgg16-ce-none-adam-s0-seed2",
        "cbam_vgg16-ce-none-adam-s1", "cbam_vgg16-ce-none-adam-s1-seed1", "cbam_vgg16-ce-none-adam-s1-seed2",
    ]  # fmt: skip
    assert [(run.config.split, run.config.seed) for run in grid.runs][:3] == [(0, 0), (0, 1), (0, 2)]
    arguments = grid.train_arguments(grid.runs[2])
    assert arguments[arguments.index("--seed") + 1] == "2" and "seed" not in grid.shared
    one_seed = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0",
                         options={**TINY, "seed": 3})  # fmt: skip
    assert [run.name for run in one_seed.runs] == ["cbam_vgg16-ce-none-adam-s0-seed3"]
    with pytest.raises(sw.ConfigError, match=r"either --seed .* or --seeds"):
        plan_grid(tmp_path, weighters="none", seeds="0,1", options={**TINY, "seed": 3})
    result = runner.invoke(app, ["grid", *TINY_FLAGS, "--out", str(tmp_path / "g"), "--seeds", "0,x"])
    assert result.exit_code == 2 and "--seeds must be whole numbers" in result.stderr


def test_a_scoped_weighter_option_reaches_only_the_runs_that_use_its_weighter(tmp_path) -> None:
    options = {**TINY, "weighter_options": {"es.normalize": "classes"}}
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none,ohem,ohem+es", optimizers="adam",
                     splits="0", options=options)  # fmt: skip
    facts = {"class_counts": [50, 10, 3], "num_epochs": 1, "batch_size": 16}
    built = {run.name: sw.create_weighter(run.config.weighters, **facts, **run.config.weighter_options)
             for run in grid.runs}  # fmt: skip
    assert built["cbam_vgg16-ce-ohem+es-adam-s0"].components[1].normalize == "classes"
    # unscoped, the same option cannot reach the runs whose weighter does not take it: refused before training
    out = tmp_path / "unscoped"
    result = runner.invoke(app, ["grid", *TINY_FLAGS, "--models", "cbam_vgg16", "--losses", "ce", "--weighters",
                                 "es,ohem", "--optimizers", "adam", "--weighter-option", "normalize=classes",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "weighting ohem: weighter 'ohem' does not accept option(s) normalize" in lines[0]
    assert not out.exists()
    scoped = runner.invoke(app, ["grid", *TINY_FLAGS, "--models", "cbam_vgg16", "--losses", "ce", "--weighters",
                                 "es,ohem", "--optimizers", "adam", "--splits", "0", "--weighter-option",
                                 "es.normalize=classes", "--out", str(out), "--print-commands"])  # fmt: skip
    assert scoped.exit_code == 0, scoped.output
    assert json.loads((out / "grid.json").read_text())["weighter_options"] == {"es.normalize": "classes"}


def test_grid_skips_finished_runs_and_resumes_a_half_finished_one(tmp_path, monkeypatch, interrupt_after_epoch) -> None:
    out = tmp_path / "grid"
    # a run that finished before: must be left alone
    finished = out / "cbam_vgg16-ce-es-adam-s0"
    train({**TINY, "epochs": 2, "weighters": ["es"], "out": finished})
    finished_bytes = (finished / "metrics.json").read_bytes()
    finished_mtime = (finished / "checkpoint.pt").stat().st_mtime_ns
    # a run interrupted after its first epoch: a checkpoint and one epoch line, no metrics.json
    interrupt_after_epoch(0)
    partial = out / "cbam_vgg16-ce-none-adam-s0"
    with pytest.raises(KeyboardInterrupt):
        train({**TINY, "epochs": 2, "out": partial})
    monkeypatch.undo()
    assert not (partial / "metrics.json").exists()
    first_epoch = RunDirectory(partial).epochs()[0]

    grid = plan_grid(out, models="cbam_vgg16", losses="ce", weighters="none,es", optimizers="adam", splits="0,1",
                     options={**TINY, "epochs": 2})  # fmt: skip
    assert [run.state() for run in grid.runs] == ["partial", "new", "finished", "new"]
    outcomes = {o.run.name: o for o in run_grid(grid, progress=False)}

    assert {name: o.status for name, o in outcomes.items()} == {
        "cbam_vgg16-ce-none-adam-s0": "trained", "cbam_vgg16-ce-none-adam-s1": "trained",
        "cbam_vgg16-ce-es-adam-s0": "skipped", "cbam_vgg16-ce-es-adam-s1": "trained",
    }  # fmt: skip
    epochs = RunDirectory(partial).epochs()
    assert [e["epoch"] for e in epochs] == [0, 1] and epochs[0] == first_epoch  # continued, not restarted
    assert json.loads((partial / "metrics.json").read_text())["epochs"] == 2
    assert (finished / "metrics.json").read_bytes() == finished_bytes
    assert (finished / "checkpoint.pt").stat().st_mtime_ns == finished_mtime
    assert outcomes["cbam_vgg16-ce-es-adam-s0"].metrics == json.loads(finished_bytes)

    summary = read_summary(out)
    assert set(summary) == set(outcomes)
    for name, row in summary.items():
        final = json.loads((out / name / "metrics.json").read_text())
        assert row["state"] == "finished" and row["epochs_done"] == "2"
        assert float(row["bacc"]) == pytest.approx(final["bacc"], abs=1e-6)
    assert json.loads((out / "grid.json").read_text())["epochs"] == 2


def test_grid_accepts_every_train_option_that_is_not_a_grid_axis() -> None:
    import typer

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    train_options, grid_options = ({o for p in commands[c].params for o in p.opts} for c in ("train", "grid"))
    axes = {"--model", "--loss", "--weighter", "--sampler", "--mixer", "--optimizer", "--split"}  # lists in the grid
    assert train_options - grid_options == axes | {"--resume", "--overwrite"}  # the grid always resumes


def test_summary_marks_running_and_failed_runs(tmp_path) -> None:
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none,cb,es", optimizers="adam",
                     splits="0", options=TINY)  # fmt: skip
    write_summary(grid, errors={1: "the training loss became nan"}, running=[0])
    with open(tmp_path / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [(r["state"], r["error"]) for r in rows] == [
        ("running", ""), ("failed", "the training loss became nan"), ("new", ""),
    ]  # fmt: skip


def test_print_commands_train_exactly_the_planned_runs(tmp_path) -> None:
    out = tmp_path / "grid"
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce,focal", "--gamma", "2",
            "--weighters", "none,ohem+es", "--optimizers", "adam", "--splits", "1", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--print-commands"])
    assert result.exit_code == 0, result.output
    commands = result.stdout.strip().splitlines()
    assert len(commands) == 4 and all(c.startswith("sampleweight train --config ") for c in commands)
    assert not any((out / name).exists() for name in ("cbam_vgg16-ce-none-adam-s1",))  # nothing trained
    assert "gamma" not in commands[0] and "--loss-option gamma=2.0" in commands[-1]  # what --gamma 2 is short for
    grid = plan_grid(out, models="cbam_vgg16", losses="ce,focal", weighters="none,ohem+es", optimizers="adam",
                     splits="1", options={**TINY, "loss_options": {"gamma": 2.0}})  # fmt: skip
    planned = {run.name: run.config for run in grid.runs}
    last = shlex.split(commands[-1])
    assert runner.invoke(app, last[1:]).exit_code == 0
    written = json.loads((out / "cbam_vgg16-focal-ohem+es-adam-s1" / "config.json").read_text())
    expected = planned["cbam_vgg16-focal-ohem+es-adam-s1"].model_dump(mode="json")
    execution = {"device", "precision", "channels_last", "quiet"}
    assert {k: v for k, v in written.items() if k not in execution} == {
        k: v for k, v in expected.items() if k not in execution
    }


def test_index_trains_only_that_run(tmp_path) -> None:
    out = tmp_path / "grid"
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce", "--weighters",
            "none,cb", "--optimizers", "adam", "--splits", "0", "--out", str(out), "--index", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "cbam_vgg16-ce-cb-adam-s0" / "metrics.json").is_file()
    assert not (out / "cbam_vgg16-ce-none-adam-s0").exists()
    assert read_summary(out)["cbam_vgg16-ce-none-adam-s0"]["state"] == "new"
    out_of_range = runner.invoke(app, [*args[:-1], "5"])
    assert out_of_range.exit_code == 2 and "out of range" in out_of_range.output


def test_several_devices_train_in_worker_subprocesses(tmp_path) -> None:
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none,es", optimizers="adam", splits="0",
                     options=TINY)  # fmt: skip
    outcomes = run_grid(grid, devices="cpu,cpu", progress=False)
    assert [o.status for o in outcomes] == ["trained", "trained"]
    for run in grid.runs:
        log = (run.path / "train.log").read_text()
        assert "-m sampleweight train --config" in log and "--device cpu" in log
        assert json.loads((run.path / "config.json").read_text())["weighters"] == run.config.weighters
        assert outcomes[run.index].metrics == json.loads((run.path / "metrics.json").read_text())


def finished_meanwhile(tmp_path, monkeypatch, **other) -> tuple[Grid, GridRun]:
    """A grid of two runs, whose second another grid (of ``other`` options) finishes while the first trains."""
    from sampleweight.engine import training

    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none,cb", optimizers="adam", splits="0",
                     options=TINY)  # fmt: skip
    second = grid.runs[1]
    real_train = training.train

    def other_grid_finishes_the_second_run_first(config, resume=False):
        if config.weighters == ["none"]:  # a second grid on the same folder
            real_train(second.config.model_copy(update={"quiet": True, **other}))
        return real_train(config, resume=resume)

    monkeypatch.setattr(training, "train", other_grid_finishes_the_second_run_first)
    return grid, second


def test_a_run_another_grid_finished_meanwhile_is_skipped_not_failed(tmp_path, monkeypatch) -> None:
    grid, second = finished_meanwhile(tmp_path, monkeypatch)
    outcomes = run_grid(grid, progress=False)  # planned while both were new
    assert [o.status for o in outcomes] == ["trained", "skipped"]
    assert outcomes[1].metrics == json.loads((second.path / "metrics.json").read_text())
    assert read_summary(tmp_path)[second.name]["state"] == "finished"
    # the --devices path checks before it starts a worker: no subprocess, no train.log
    outcome = _train_subprocess(grid, second, "cpu")
    assert outcome.status == "skipped" and not (second.path / "train.log").exists()
    config = json.loads((second.path / "config.json").read_text())  # finished by a grid of other options
    (second.path / "config.json").write_text(json.dumps({**config, "lr": 0.5}))
    outcome = _train_subprocess(grid, second, "cpu")
    assert outcome.status == "skipped" and outcome.error.startswith("finished with other options (lr")


def test_a_run_another_grid_finished_with_other_options_is_skipped_with_a_note(tmp_path, monkeypatch) -> None:
    from rich.console import Console

    grid, second = finished_meanwhile(tmp_path, monkeypatch, lr=0.5)  # a grid of another learning rate
    outcomes = run_grid(grid, progress=False)
    assert outcomes[1].status == "skipped" and outcomes[1].error.startswith("finished with other options (lr")
    row = read_summary(tmp_path)[second.name]
    assert row["state"] == "finished" and row["error"] == ""  # a note, not a failure
    console = Console(width=300, record=True)
    again = run_grid(grid, progress=False, console=console)  # now skipped at planning: the same note
    assert again[1].error == outcomes[1].error
    assert f"note: {second.name} is {outcomes[1].error}" in console.export_text()


def test_a_run_another_process_holds_is_busy_on_the_devices_path(tmp_path, monkeypatch) -> None:
    from sampleweight.engine.folder_lock import FolderLock
    from sampleweight.studies import grid as grid_module

    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0",
                     options=TINY)  # fmt: skip
    (run,) = grid.runs
    run.path.mkdir()
    with FolderLock(run.path):  # another process trains it: no worker is started
        outcome = _train_subprocess(grid, run, "cpu")
    assert outcome.status == "busy" and "is in use by another sampleweight process" in outcome.error
    assert not (run.path / "train.log").exists()
    # taken between the check and the worker's start: the worker's refusal is read as busy, not failed
    taken = FolderLock(run.path)

    def worker_refused(command, **kwargs):
        taken.acquire()
        kwargs["stdout"].write("error: ... is in use by another sampleweight process ...\n")
        return 2

    monkeypatch.setattr(grid_module.subprocess, "call", worker_refused)
    try:
        outcome = _train_subprocess(grid, run, "cpu")
    finally:
        taken.release()
    assert outcome.status == "busy" and outcome.error.startswith(f"{run.path} is in use")


def test_a_failing_run_is_recorded_the_others_train_and_the_cli_exits_2(tmp_path, monkeypatch) -> None:
    from sampleweight.engine import training

    real_train = training.train

    def fail_for_es(config, resume=False):
        if config.weighters == ["es"]:
            raise sw.LossError("the training loss became nan at epoch 0, step 3")
        return real_train(config, resume=resume)

    monkeypatch.setattr(training, "train", fail_for_es)
    out = tmp_path / "grid"
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce", "--weighters", "es,none",
            "--optimizers", "adam", "--splits", "0", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # after the progress lines
    assert len(errors) == 1 and errors[0].startswith("error: 1 of 2 runs failed"), result.stderr
    summary = read_summary(out)
    assert summary["cbam_vgg16-ce-es-adam-s0"]["state"] == "failed"
    assert "loss became nan" in summary["cbam_vgg16-ce-es-adam-s0"]["error"]
    assert summary["cbam_vgg16-ce-none-adam-s0"]["state"] == "finished"
    assert (out / "report.md").is_file()  # the finished run is reported anyway


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--weighters", "none,ohem+bogus", "unknown weighter 'bogus'"),
        ("--losses", "ce,dice", "unknown loss 'dice'"),
        ("--optimizers", "adam,rmsprop", "unknown optimizer 'rmsprop'"),
        ("--samplers", "instance,bogus", "unknown sampler 'bogus' in the grid; valid: class_balanced, drs, instance"),
        ("--sampler-option", "threshold=0.1", "--sampler-option threshold: no sampler of the grid (instance) takes"),
        ("--splits", "0,one", "--splits must be whole numbers"),
        ("--weighters", ",", "--weighters is empty"),
    ],
)
def test_bad_grid_lists_exit_2_with_one_line_before_training(tmp_path, flag, value, message) -> None:
    out = tmp_path / "grid"
    result = runner.invoke(app, ["grid", *TINY_FLAGS, "--out", str(out), flag, value])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    if flag == "--weighters" and "bogus" in value:
        assert ", ".join(sw.list_weighters()) in lines[0]
    assert not out.exists()


def test_a_half_finished_run_with_other_options_is_failed_with_what_to_do(
    tmp_path, monkeypatch, interrupt_after_epoch
) -> None:
    out = tmp_path / "grid"
    partial = out / "cbam_vgg16-ce-none-adam-s0"
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train({**TINY, "epochs": 2, "out": partial})
    monkeypatch.undo()
    grid = plan_grid(out, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0",
                     options={**TINY, "epochs": 3})  # fmt: skip
    (outcome,) = run_grid(grid, progress=False)
    assert outcome.status == "failed"
    assert "half-finished with other options (epochs 2 -> 3)" in outcome.error and f"delete {partial}" in outcome.error


# Options that runs written before this round's issues do not have in their config.json.
NEWER_OPTIONS = ("sampler", "sampler_options", "bootstrap", "weighter_options")


def test_a_run_written_before_an_option_existed_is_not_stale(tmp_path) -> None:
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam", splits="0",
                     options=TINY)  # fmt: skip
    (run,) = grid.runs
    old = {k: v for k, v in run.config.model_dump(mode="json").items() if k not in NEWER_OPTIONS}
    run.path.mkdir(parents=True)
    (run.path / "config.json").write_text(json.dumps(old))
    assert run.stale_options() == []  # sampler None -> 'instance', sampler_options None -> {}: not differences
    (run.path / "config.json").write_text(json.dumps({**old, "epochs": 3}))
    assert run.stale_options() == ["epochs 3 -> 1"]
    (run.path / "config.json").write_text(json.dumps({**old, "sampler": "class_balanced"}))
    assert run.stale_options() == ["sampler 'class_balanced' -> 'instance'"]


def test_a_half_finished_run_that_an_older_version_wrote_with_gamma_resumes_without_retraining(
    tmp_path, monkeypatch, interrupt_after_epoch
) -> None:
    from sampleweight.engine.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "grid"
    partial = out / "cbam_vgg16-focal-none-adam-s0"
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train({**TINY, "loss": "focal", "loss_options": {"gamma": 2.0}, "epochs": 2, "out": partial})
    monkeypatch.undo()
    # as an older version wrote it: gamma a field of its own, loss_options empty
    config = json.loads((partial / "config.json").read_text())
    older = {**config, "gamma": 2.0, "loss_options": {}}
    (partial / "config.json").write_text(json.dumps(older))
    state = load_checkpoint(partial / "checkpoint.pt")
    save_checkpoint(partial / "checkpoint.pt", {**state, "config": {**state["config"], **older}})
    first_epoch = (partial / "metrics.jsonl").read_text()

    result = runner.invoke(app, ["grid", *TINY_FLAGS, "--epochs", "2", "--models", "cbam_vgg16", "--losses", "focal",
                                 "--weighters", "none", "--optimizers", "adam", "--splits", "0", "--gamma", "2",
                                 "--no-report", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    epochs = (partial / "metrics.jsonl").read_text()
    assert epochs.startswith(first_epoch) and len(epochs.splitlines()) == 2  # epoch 0 kept, epoch 1 trained
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == [partial.name]  # the same folder


def test_an_option_no_run_accepts_is_reported_before_any_run(tmp_path) -> None:
    with pytest.raises(sw.ConfigError, match=r"--loss-option tau: no loss of the grid \(ce, focal\) takes tau"):
        plan_grid(tmp_path, models="cbam_vgg16", losses="ce,focal", weighters="none", optimizers="adam", splits="0",
                  options={"loss_options": {"tau": 1.0}})  # fmt: skip
    with pytest.raises(
        sw.ConfigError, match=r"--loss-option gamma: no loss of the grid \(ce, balanced_softmax\) takes"
    ):
        plan_grid(tmp_path, models="cbam_vgg16", losses="ce,balanced_softmax", weighters="none", optimizers="adam",
                  splits="0", options={"loss_options": {"gamma": 2.0}})  # fmt: skip
    with pytest.raises(sw.ConfigError, match=r"weighter 'ohem' does not accept option\(s\) beta"):
        plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="es,ohem", optimizers="adam", splits="0",
                  options={"weighter_options": {"beta": 0.9}})  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_gamma_is_short_for_the_loss_option_and_reaches_the_runs_whose_loss_takes_it(tmp_path) -> None:
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16,hierarchical_vgg16", "--losses", "ce,focal",
            "--weighters", "none", "--optimizers", "adam", "--splits", "0", "--out", str(tmp_path),
            "--gamma", "2"]  # fmt: skip
    result = runner.invoke(app, [*args, "--print-commands"])
    assert result.exit_code == 0, result.output
    commands = result.stdout.strip().splitlines()
    assert [("--loss focal" in c, "--loss-option gamma=2.0" in c, "gamma=" in c) for c in commands] == [
        (False, False, False), (True, True, True)
    ] * 2  # fmt: skip
    contradictory = runner.invoke(app, [*args, "--loss-option", "gamma=3", "--print-commands"])
    assert contradictory.exit_code == 2
    assert contradictory.output.strip().splitlines() == [
        "error: --gamma 2 and --loss-option gamma=3 contradict each other: give one of them"
    ]
    assert runner.invoke(app, [*args, "--loss-option", "gamma=2", "--print-commands"]).exit_code == 0  # the same


def test_gamma_and_loss_options_reach_only_the_runs_whose_loss_takes_them(tmp_path) -> None:
    grid = plan_grid(tmp_path, models="cbam_vgg16,hierarchical_vgg16", losses="ce,focal,balanced_softmax",
                     weighters="none", optimizers="adam", splits="0",
                     options={**TINY, "loss_options": {"gamma": 2.0}})  # fmt: skip
    gammas = {(run.config.model, run.config.loss): run.config.loss_options.get("gamma") for run in grid.runs}
    # the hierarchical model's ce is the hierarchical loss with base ce: it takes what ce takes, no gamma
    assert gammas == {(model, loss): 2.0 if loss == "focal" else None for model, loss in gammas}
    out = tmp_path / "tau"
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce,logit_adjusted",
            "--weighters", "none", "--optimizers", "adam", "--splits", "0", "--loss-option", "tau=1.5", "--out",
            str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--print-commands"])
    assert result.exit_code == 0, result.output
    ce, adjusted = result.stdout.strip().splitlines()
    assert "--loss-option" not in ce and "--loss-option tau=1.5 " in adjusted
    assert "loss_options" not in json.loads((out / "grid.json").read_text())  # per run, not shared
    planned = plan_grid(out, models="cbam_vgg16", losses="ce,logit_adjusted", weighters="none", optimizers="adam",
                        splits="0", options={**TINY, "loss_options": {"tau": 1.5}})  # fmt: skip
    assert [run.config.loss_options for run in planned.runs] == [{}, {"tau": 1.5}]
    assert runner.invoke(app, shlex.split(adjusted)[1:]).exit_code == 0  # the printed command trains that run
    written = json.loads((out / planned.runs[1].name / "config.json").read_text())
    assert written["loss_options"] == {"tau": 1.5} and written["loss"] == "logit_adjusted"


def test_the_sampler_axis_keeps_instance_names_and_gives_each_run_the_options_its_sampler_takes(tmp_path) -> None:
    out = tmp_path / "grid"
    args = ["grid", *TINY_FLAGS, "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none",
            "--samplers", "instance,repeat_factor", "--sampler-option", "threshold=0.2", "--optimizers", "adam",
            "--splits", "0", "--out", str(out), "--no-report"]  # fmt: skip
    commands = runner.invoke(app, [*args, "--print-commands"]).stdout.strip().splitlines()
    assert "--sampler" not in commands[0]  # the default: the command of a grid planned before samplers
    assert "--sampler repeat_factor --sampler-option threshold=0.2 " in commands[1]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = {"cbam_vgg16-ce-none-adam-s0": {}, "cbam_vgg16-ce-none-adam-s0-repeat_factor": {"threshold": 0.2}}
    summary = read_summary(out)
    for name, options in names.items():
        config = json.loads((out / name / "config.json").read_text())
        assert config["sampler_options"] == options and summary[name]["sampler"] == config["sampler"]
        assert summary[name]["state"] == "finished"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 of 2 runs already finished" in again.output
    planned = json.loads((out / "cbam_vgg16-ce-none-adam-s0-repeat_factor" / "config.json").read_text())
    shutil.rmtree(out / "cbam_vgg16-ce-none-adam-s0-repeat_factor")
    assert runner.invoke(app, shlex.split(commands[1])[1:]).exit_code == 0  # the printed command: the same run
    written = json.loads((out / "cbam_vgg16-ce-none-adam-s0-repeat_factor" / "config.json").read_text())
    assert {k: v for k, v in written.items() if k != "quiet"} == {k: v for k, v in planned.items() if k != "quiet"}
