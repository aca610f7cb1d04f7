"""Run directory files, atomic checkpoints, RNG capture, and refusing an unwritable --out."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

import sampleweight as sw
from sampleweight.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from sampleweight.engine.rundir import RunDirectory, read_predictions


def test_checkpoint_is_atomic_when_saving_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "model": {}, "config": {}})

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(sw.OutputError, match=r"cannot write .*checkpoint\.pt: No space left on device"):
        save_checkpoint(path, {"epoch": 2, "model": {}, "config": {}})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_rng_round_trip() -> None:
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_epochs_append_and_truncate(tmp_path) -> None:
    run = RunDirectory(tmp_path / "run")
    for epoch in range(4):
        run.append_epoch({"epoch": epoch, "loss": np.float32(0.5)})
    run.truncate_epochs(before=2)
    assert [r["epoch"] for r in run.epochs()] == [0, 1]
    assert run.epochs()[0]["loss"] == 0.5


def test_predictions_round_trip(tmp_path) -> None:
    run = RunDirectory(tmp_path)
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    run.write_predictions(["a", "b"], [0, 1], scores, ["MEL", "NV", "BCC"])
    images, true, pred, read_scores, classes = read_predictions(run.path / "predictions.csv")
    assert (images, true, pred, classes) == (["a", "b"], ["MEL", "NV"], ["MEL", "BCC"], ["MEL", "NV", "BCC"])
    np.testing.assert_allclose(read_scores, scores)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file-in-the-way case")
def test_unwritable_out_fails_before_training(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(sw.ConfigError, match="cannot write to the run directory"):
        RunDirectory(locked / "run")


def test_out_that_is_a_file_fails_before_training(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(sw.ConfigError, match="cannot write to the run directory"):
        RunDirectory(blocker / "run")


def test_full_disk_fails_before_training(tmp_path) -> None:
    with pytest.raises(sw.ConfigError, match="MiB free on the disk"):
        RunDirectory(tmp_path / "run", min_free_bytes=2**62)


def test_load_checkpoint_errors_are_config_errors(tmp_path) -> None:
    with pytest.raises(sw.ConfigError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(sw.ConfigError, match="is damaged or not a sampleweight checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(1)}, other)
    with pytest.raises(sw.ConfigError, match="no model/config/epoch entries"):
        load_checkpoint(other)


def test_a_torn_last_metrics_line_is_dropped(tmp_path) -> None:
    run = RunDirectory(tmp_path)
    run.append_epoch({"epoch": 0})
    with open(run.path / RunDirectory.EPOCHS, "a") as handle:
        handle.write('{"epoch": 1, "tra')
    assert run.epochs() == [{"epoch": 0}]


def test_checkpoint_writer_saves_a_snapshot_in_the_background(tmp_path) -> None:
    from sampleweight.engine.checkpoint import CheckpointWriter

    weights = torch.zeros(3)
    with CheckpointWriter() as writer:
        writer.submit(tmp_path / "checkpoint.pt", {"epoch": 1, "model": {"w": weights}, "config": {}})
        weights += 5  # training goes on and changes the live tensor
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint.pt")["model"]["w"], torch.zeros(3))


def test_checkpoint_writer_reraises_a_failed_save(tmp_path) -> None:
    from sampleweight.engine.checkpoint import CheckpointWriter

    writer = CheckpointWriter()
    writer.submit(tmp_path / "missing-folder" / "checkpoint.pt", {"epoch": 1, "model": {}, "config": {}})
    with pytest.raises(sw.OutputError, match=r"missing-folder/checkpoint\.pt: No such file or directory"):
        writer.wait()
    writer.wait()  # the error is reported once


def test_checkpoint_writer_keeps_counters_and_metadata() -> None:
    from collections import Counter

    from sampleweight.engine.checkpoint import _snapshot

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2, 4])
    state = _snapshot({"scheduler": scheduler.state_dict(), "model": model.state_dict()})
    assert state["scheduler"]["milestones"] == Counter({2: 1, 4: 1})
    assert state["model"]._metadata == model.state_dict()._metadata


def test_checkpoint_writer_does_not_hide_the_error_in_flight(tmp_path) -> None:
    from sampleweight.engine.checkpoint import CheckpointWriter

    with pytest.raises(KeyboardInterrupt) as caught, CheckpointWriter() as writer:
        writer.submit(tmp_path / "no-such-folder" / "checkpoint.pt", {"epoch": 1, "model": {}, "config": {}})
        raise KeyboardInterrupt
    assert "saving the checkpoint failed" in "".join(getattr(caught.value, "__notes__", []))
