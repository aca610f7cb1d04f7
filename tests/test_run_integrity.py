"""Run integrity under faults and odd input (issue 18): one writer per run directory, write failures, leftover
temporary files, messages that keep what the user typed, non-finite options, contradictory flags, what the data
reader left out (data.json), and evaluation on a set that lacks some of the model's classes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import recall_score
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.cli import app
from sampleweight.data import DataInventory, read_dataset, split_indices
from sampleweight.engine.folder_lock import LOCK_FILE, FolderLock
from sampleweight.engine.rundir import RunDirectory, read_predictions
from sampleweight.engine.training import train

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet"]  # fmt: skip
TINY_CONFIG = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16,
                   lr=1e-3, quiet=True)  # fmt: skip


def error_lines(output: str) -> list[str]:
    """The lines of an error report, after any notes printed before it."""
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")) :]


def wait_for(condition, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A finished one-epoch run whose folder name holds square brackets, and what `train` printed."""
    out = tmp_path_factory.mktemp("runs") / "a[bold]b"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def write_images(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")


# ------------------------------------------------------------------- 1. one writer per run directory

SLOW_PLUGIN = """
import os
import time

import sampleweight as sw


class Slow(sw.BaseWeighter):
    def forward(self, batch):
        time.sleep(float(os.environ.get("SW_TEST_SLEEP", "0")))
        return batch.losses.new_ones(batch.losses.shape)


@sw.hookimpl
def register_weighters(register):
    register("slow", Slow)
"""


def test_two_train_processes_on_one_out_one_trains_the_other_is_refused_and_a_killed_holder_blocks_nothing(
    tmp_path, mount_plugin
) -> None:
    site = mount_plugin("sw-test-slow", entry_points={"slow": "sw_test_slow"}, modules={"sw_test_slow": SLOW_PLUGIN})
    out = tmp_path / "run"
    command = [sys.executable, "-m", "sampleweight", "train", *TINY, "--epochs", "2", "--weighter", "slow",
               "--out", str(out)]  # fmt: skip
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "SW_TEST_SLEEP": "1.5"}  # about 12 s per epoch
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        config, checkpoint = out / RunDirectory.CONFIG, out / RunDirectory.CHECKPOINT
        wait_for(lambda: config.is_file() or first.poll() is not None, what="the first run to start")
        # the second starts while the first is in its first epoch: nothing but the lock can stop it
        second = subprocess.run([*command, "--lr", "0.001"], env=env, capture_output=True, text=True, timeout=300)
        wait_for(lambda: checkpoint.is_file() or first.poll() is not None, what="the first epoch's checkpoint")
        assert first.poll() is None, "the first run ended early: " + first.stdout.read()
    finally:
        first.send_signal(signal.SIGKILL)  # as a crash or `kill -9` would: the lock is never released by it
        first.wait()
    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"error: {out} is in use by another sampleweight process pid {first.pid} on ")
    assert json.loads((out / RunDirectory.CONFIG).read_text())["lr"] == 1e-5  # the refused run wrote nothing
    assert (out / LOCK_FILE).is_file()  # what the killed run left: a lock file that no process holds

    resumed = subprocess.run([*command, "--resume"], env={**env, "SW_TEST_SLEEP": "0"}, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in RunDirectory(out).epochs()] == [0, 1]
    assert not (out / LOCK_FILE).exists()  # a finished run leaves the folder as DESIGN.md lists it


def test_a_folder_lock_names_its_holder_and_is_free_once_the_holder_is_killed(tmp_path) -> None:
    script = f"from sampleweight.engine.folder_lock import FolderLock; FolderLock({str(tmp_path)!r}).acquire(); "
    script += "print('held', flush=True); import time; time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(sw.RunDirectoryInUseError, match=f"{tmp_path} is in use by .* pid {holder.pid} on ") as e:
            FolderLock(tmp_path).acquire()
        assert e.value.holder.startswith(f"pid {holder.pid} on ") and e.value.folder == str(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(tmp_path) as lock:  # the kernel released it with the process
        assert lock.held
        with pytest.raises(sw.RunDirectoryInUseError, match=f"pid {os.getpid()} "):  # this process, another run
            FolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()


def test_grid_leaves_a_run_held_by_another_process_to_it_and_index_refuses_it(tmp_path) -> None:
    grid = ["grid", "--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--epochs", "1", "--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none", "--optimizers",
            "adam", "--splits", "0", "--quiet", "--out", str(tmp_path)]  # fmt: skip
    run = tmp_path / "cbam_vgg16-ce-none-adam-s0"
    run.mkdir()
    with FolderLock(run):  # another process training it (a lock of this process excludes other runs in it too)
        shared = runner.invoke(app, grid)
        summary = (tmp_path / "summary.csv").read_text()
        alone = runner.invoke(app, [*grid, "--index", "0"])
    assert shared.exit_code == 0, shared.output
    assert "grid: busy cbam_vgg16-ce-none-adam-s0" in shared.output and "in use by" in shared.output
    assert ",running," in summary
    assert alone.exit_code == 2
    (line,) = error_lines(alone.output)
    assert line.startswith(f"error: {run} is in use by another sampleweight process pid {os.getpid()} on ")


def test_a_second_evaluate_into_one_folder_is_refused(tmp_path, trained) -> None:
    run, _ = trained
    out = tmp_path / "eval"
    out.mkdir()
    with FolderLock(out):
        result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:40:3", "--out", str(out)])
    assert result.exit_code == 2
    assert error_lines(result.output)[0].startswith(f"error: {out} is in use by another sampleweight process")
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------- 3. an unwritable run directory mid-run


def _stop_writing_after_first_checkpoint(monkeypatch, out: Path) -> None:
    """Once the first checkpoint is written, creating files in ``out`` fails as in a folder made read-only."""
    from sampleweight.engine import checkpoint

    original, saved = tempfile.mkstemp, []

    def mkstemp(*args, dir=None, prefix="", **kwargs):
        if Path(dir) == out and saved:
            raise PermissionError(13, "Permission denied", str(out))
        if prefix == ".checkpoint.pt.":
            saved.append(True)
        return original(*args, dir=dir, prefix=prefix, **kwargs)

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp)


def test_a_run_directory_that_stops_being_writable_exits_2_with_one_line_and_keeps_the_checkpoint(
    tmp_path, monkeypatch
) -> None:
    out = tmp_path / "run"
    _stop_writing_after_first_checkpoint(monkeypatch, out)
    result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        f"error: cannot write {out / 'checkpoint.pt'}: Permission denied; the last good checkpoint is kept; make "
        f"the folder writable (or free space) and continue with: sampleweight train --out {out} --resume"
    ]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in RunDirectory(out).epochs()] == [0, 1, 2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the simulated case runs instead")
def test_a_run_directory_made_read_only_mid_run_exits_2(tmp_path, monkeypatch) -> None:
    from sampleweight.engine import progress

    out = tmp_path / "run"
    original = progress.TrainingProgress.end_epoch

    def end_epoch(self, epoch, record):
        original(self, epoch, record)
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:  # saved in the background
            time.sleep(0.05)
        out.chmod(0o500)

    monkeypatch.setattr(progress.TrainingProgress, "end_epoch", end_epoch)
    try:
        result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--out", str(out)])
    finally:
        out.chmod(0o700)
    assert result.exit_code == 2, result.output
    assert error_lines(result.output)[0].startswith(f"error: cannot write {out}")
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] >= 1


# ------------------------------------------------------------------- 4. no temporary file after an interruption


def test_a_checkpoint_write_killed_midway_leaves_no_temporary_file_after_resume(tmp_path, interrupt_after_epoch):
    out = tmp_path / "run"
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train({**TINY_CONFIG, "epochs": 2, "out": out})
    stall = f"""
import time
from sampleweight.engine.checkpoint import save_checkpoint

class Stall:
    def __reduce__(self):
        print("writing", flush=True)
        time.sleep(300)

save_checkpoint({str(out / "checkpoint.pt")!r}, {{"stall": Stall()}})
"""
    writer = subprocess.Popen([sys.executable, "-c", stall], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)  # killed in the middle of writing the checkpoint
        writer.wait()
    assert len(list(out.glob(".checkpoint.pt.*.tmp"))) == 1
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1  # the good one is untouched

    interrupt_after_epoch(99)  # no interruption this time
    train({**TINY_CONFIG, "epochs": 2, "out": out}, resume=True)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_starting_over_removes_what_an_interrupted_writer_left(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in (".checkpoint.pt.abc123.tmp", ".metrics.json.x1.tmp", ".predictions.csv.y2.tmp"):
        (out / name).write_bytes(b"partial")
    (out / "notes.tmp").write_text("the user's own file")
    with RunDirectory(out):
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "notes.tmp"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.tmp"]


# ------------------------------------------------------------------- 5. messages keep what the user typed


def test_paths_and_config_errors_are_printed_exactly_as_typed(tmp_path, trained) -> None:
    run, printed = trained
    assert printed.strip().splitlines()[-1].endswith(f"-> {run}")  # a[bold]b, not ab

    missing = "/nonexistent/[old] copy"
    result = runner.invoke(app, ["train", "--data", missing, "--no-pretrained", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert error_lines(result.output)[0].startswith(f"error: data set not found: {missing} does not exist.")

    config = tmp_path / "[cfg]" / "run.yaml"
    config.parent.mkdir()
    config.write_text("weighters: [ohem, es\nlr: 1e-3\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        f"error: cannot parse config file {config}: while parsing a flow sequence: expected ',' or ']', but got ':' "
        "(line 2, column 3)"
    ]


def test_a_plugin_error_with_brackets_is_shown_in_the_plugins_table(mount_plugin, monkeypatch) -> None:
    mount_plugin(
        "sw-test-brackets",
        entry_points={"brackets": "sw_test_brackets"},
        modules={"sw_test_brackets": "raise RuntimeError('needs [cuda] extra')\n"},
    )
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.warns(UserWarning, match=r"needs \[cuda\] extra"):  # the plugin manager warns as it loads
        result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0 and "failed [1]" in result.output  # the error is note 1 under the table
    assert "[1] brackets (sw-test-brackets 1.0): RuntimeError: needs [cuda] extra" in result.output


# ------------------------------------------------------------------- 6. non-finite options; errors at step 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "inf"], "lr: Input should be a finite number (got inf)"),
        (["--lr", "nan"], "lr: Input should be a finite number (got nan)"),
        (["--loss", "focal", "--gamma", "inf"], "loss_options.gamma must be a finite number, got inf"),
        (["--loss", "focal", "--loss-option", "gamma=.inf"], "loss_options.gamma must be a finite number, got inf"),
    ],
)
def test_non_finite_float_options_are_refused_up_front(tmp_path, args, message) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", *args, "--out", str(out)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [f"error: invalid configuration: {message}"]
    assert not out.exists()  # refused before anything was created


NAN_LOSS = """
import torch
import sampleweight as sw


class NanLoss(torch.nn.Module):
    def forward(self, logits, targets):
        return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none") * float("nan")


@sw.hookimpl
def register_losses(register):
    register("nan_now", NanLoss)
"""


def test_a_nan_loss_at_the_first_step_claims_no_checkpoint_and_numbers_epochs_as_the_progress_line(
    tmp_path, mount_plugin
) -> None:
    mount_plugin("sw-test-nan-now", entry_points={"nan_now": "sw_test_nan_now"}, modules={"sw_test_nan_now": NAN_LOSS})
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--loss", "nan_now", "--out", str(out)])
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert "the training loss became nan at epoch 1/1, batch 1/8 " in line
    assert "no epoch had finished, so there is no checkpoint" in line and "is kept" not in line
    assert not (out / "checkpoint.pt").exists()


# ------------------------------------------------------------------- 7. contradictory flags; --split


def test_resume_with_overwrite_is_refused_as_contradictory(tmp_path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--resume", "--overwrite"])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        "error: --resume continues the run in --out and --overwrite starts it over: give one of them"
    ]
    with pytest.raises(sw.ConfigError, match="give one of them"):
        train({**TINY_CONFIG, "epochs": 1, "out": tmp_path, "overwrite": True}, resume=True)


def test_a_run_started_with_overwrite_resumes_without_it(tmp_path, interrupt_after_epoch) -> None:
    interrupt_after_epoch(0)
    result = runner.invoke(app, ["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--overwrite"])
    assert result.exit_code == 130 and json.loads((tmp_path / "config.json").read_text())["overwrite"] is True
    interrupt_after_epoch(99)
    resumed = runner.invoke(app, ["train", "--out", str(tmp_path), "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_split_takes_any_k_as_an_independent_draw_as_help_and_docs_say() -> None:
    records = read_dataset("synthetic:300")
    draws = {k: split_indices(records, split=k)[1].tolist() for k in (0, 1, 5)}
    assert draws[5] != draws[0] and draws[5] != draws[1]
    assert split_indices(records, split=5)[1].tolist() == draws[5]  # reproducible
    for command in (["train", "--help"], ["grid", "--help"]):
        help_text = " ".join(runner.invoke(app, command, env={"COLUMNS": "200"}).output.split())
        assert "any k >= 0 is another independent draw" in help_text, command
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert "`--split K`" in docs and "any k >= 0 is another independent" in docs


# ------------------------------------------------------------------- 8. what the reader dropped: data.json


def test_data_json_records_what_was_skipped_unlabelled_merged_and_not_scored(tmp_path) -> None:
    folder = tmp_path / "data"
    names = [f"img{i:02d}" for i in range(30)]
    write_images(folder / "images", [*names, "stray"])  # "stray" has no row in labels.csv
    labels = ["a" if i % 2 else "b" for i in range(29)] + ["c"]  # c: one image
    rows = [f"{name},{label},lesion{i}" for i, (name, label) in enumerate(zip(names, labels, strict=True))]
    rows[3] = "img03,a ,lesion3"  # 'a ' is read as 'a'
    rows.append("missing01,a,lesion99")  # no such image: skipped with --skip-bad
    (folder / "images" / "img05.jpg").write_bytes(b"not a jpeg")  # undecodable: skipped with --skip-bad
    (folder / "labels.csv").write_text("image,label,group\n" + "\n".join(rows) + "\n")
    records = read_dataset(folder, skip_bad=True)
    seed = next(seed for seed in range(20) if 2 in records.labels[split_indices(records, seed=seed)[0]])
    train_idx, _ = split_indices(records, seed=seed)  # a seed that puts the one image of c on the training side

    out = tmp_path / "run"
    args = ["train", "--data", str(folder), "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "64", "--epochs", "1", "--quiet", "--skip-bad", "--cache-dir", str(tmp_path / "cache"),
            "--seed", str(seed), "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "data.json").read_text())
    assert data["classes"] == ["a", "b", "c"] and data["layout"] == "csv"
    assert any(line.startswith("missing01") for line in data["skipped"])
    assert any("img05.jpg" in line for line in data["skipped"])  # undecodable
    assert data["unlabelled"] == ["images/stray.jpg"]
    assert data["merged_labels"] == ["'a ' read as 'a' (1 row(s))"]
    assert data["classes_without_images"] == {"train": [], "validation": ["c"]}
    # the training prior by class name: the split's training side, less the undecodable image
    kept_train = [i for i in train_idx if records.image_ids[i] != "img05"]
    expected = {name: int(np.sum(records.labels[kept_train] == k)) for k, name in enumerate(records.classes)}
    assert data["class_counts"]["train"] == expected
    assert sum(data["class_counts"]["validation"].values()) == len(read_predictions(out / "predictions.csv")[0])
    for note in data["notes"]:  # one line each, on the console too
        assert f"note: {note}" in " ".join(result.output.split()) or note in result.output
    assert any("no validation images of c" in note for note in data["notes"])
    final = json.loads((out / "metrics.json").read_text())
    assert final["scored_classes"] == ["a", "b"]


def test_labels_that_differ_only_in_case_are_refused_naming_both_spellings(tmp_path) -> None:
    write_images(tmp_path, [f"i{k}" for k in range(12)])
    labels = ["MEL", "NV"] * 5 + ["Mel", "mel"]
    rows = "\n".join(f"i{k},{label}" for k, label in enumerate(labels))
    (tmp_path / "labels.csv").write_text(f"image,label\n{rows}\n")
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--no-pretrained", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        f"error: labels in {tmp_path / 'labels.csv'} differ only in case: 'MEL' (5 row(s), first on line 2) vs "
        "'Mel' (1 row(s), first on line 12) vs 'mel' (1 row(s), first on line 13). They would become separate "
        "classes: spell each class one way"
    ]


def test_isic_images_without_a_ground_truth_row_are_recorded(tmp_path) -> None:
    names = [f"ISIC_{k:07d}" for k in range(14)]
    write_images(tmp_path / "ISIC2018_Task3_Training_Input", [*names, "ISIC_9999999"])
    rows = [f"{name}," + ",".join("1.0" if c == k % 7 else "0.0" for c in range(7)) for k, name in enumerate(names)]
    truth = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n" + "\n".join(rows) + "\n"
    (tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv").write_text(truth)
    with pytest.warns(UserWarning, match="LesionGroupings"):
        records = read_dataset(tmp_path)
    assert records.unlabelled == ("ISIC2018_Task3_Training_Input/ISIC_9999999.jpg",)
    notes = DataInventory.of_sides(records, {"train": range(len(records))}).notes()
    assert notes == [
        "1 image file(s) have no label row and are not used: ISIC2018_Task3_Training_Input/ISIC_9999999.jpg"
    ]


# ------------------------------------------------------------------- 9. evaluate a set that lacks some classes


def test_evaluate_scores_the_classes_a_labelled_set_has(tmp_path, trained) -> None:
    run, _ = trained
    folder = tmp_path / "test"
    names = [f"t{k}" for k in range(9)]
    write_images(folder, names, seed=3)
    rows = [f"{name},{['MEL', 'NV', 'NV'][k % 3]}" for k, name in enumerate(names)]
    (folder / "labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "eval"
    args = ["evaluate", str(run), "--data", str(folder), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(sw.ISIC2018_TAXONOMY.classes) and metrics["scored_classes"] == ["MEL", "NV"]
    _, true, pred, _, _ = read_predictions(out / "predictions.csv")
    assert metrics["bacc"] == pytest.approx(recall_score(true, pred, labels=["MEL", "NV"], average="macro"))
    assert "(over 2 of 7 classes; no images of BCC, AKIEC, BKL, DF, VASC)" in " ".join(result.output.split())
    data = json.loads((out / "data.json").read_text())
    assert data["classes_without_images"]["evaluated"] == ["BCC", "AKIEC", "BKL", "DF", "VASC"]


def test_a_ham10000_set_without_one_class_reads_for_evaluation_only(tmp_path) -> None:
    names = [f"ISIC_{k:07d}" for k in range(6)]
    write_images(tmp_path / "HAM10000_images", names)
    rows = [f"HAM_{k},{name},{['mel', 'nv'][k % 2]}" for k, name in enumerate(names)]
    (tmp_path / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\n" + "\n".join(rows) + "\n")
    with pytest.raises(sw.DataError, match=r"class\(es\) with no images in .*: BCC, AKIEC, BKL, DF, VASC"):
        read_dataset(tmp_path)
    records = read_dataset(tmp_path, allow_empty_classes=True)
    assert records.class_counts().tolist() == [3, 3, 0, 0, 0, 0, 0]
