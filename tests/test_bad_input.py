"""The bad-input and fault sweep (issue 23, item 7): what a hostile but realistic user tries gets one line and
exit code 2 (or a note), never a traceback, and is refused before any data is read."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sampleweight.cli import app
from sampleweight.engine.training import train

runner = CliRunner()
TINY = ["--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
        "--batch-size", "16", "--quiet", "--device", "cpu"]  # fmt: skip
TINY_CONFIG = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16,
                   lr=1e-3, quiet=True, device="cpu", bootstrap=20)  # fmt: skip


def error_line(output: str) -> str:
    """The one ``error: ...`` line of a refused command (after any notes), checked to be its last line."""
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), output
    return lines[-1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch run (in a folder of its own: a grid of one run for report)."""
    out = tmp_path_factory.mktemp("sweep") / "runs" / "run"
    train({**TINY_CONFIG, "epochs": 1, "out": out})
    return out


def unwritable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Creating files in ``folder`` fails as in a read-only folder (the tests may run as root, who writes anyway)."""
    original = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied", str(folder))
        return original(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# -- tracebacks that were: one line, exit code 2 ------------------------------------------------------------


def test_a_seed_beyond_what_torch_takes_is_refused_up_front(tmp_path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--seed", "99999999999999999999", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "seed: Input should be less than or equal to 9223372036854775807" in error_line(result.output)
    assert not (tmp_path / "r").exists()


def test_grid_out_that_is_a_file_is_one_line(tmp_path) -> None:
    target = tmp_path / "grid.txt"
    target.write_text("not a folder")
    result = runner.invoke(app, ["grid", *TINY, "--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none",
                                 "--optimizers", "adam", "--splits", "0", "--out", str(target)])  # fmt: skip
    assert result.exit_code == 2
    assert error_line(result.output) == (
        f"error: --out {target} is a file, not a folder: name a folder (it is created if missing)"
    )


def test_report_out_that_is_a_file_or_read_only_is_one_line(tmp_path, finished, monkeypatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("")
    result = runner.invoke(app, ["report", str(finished.parent), "--out", str(target), "--no-figures"])
    assert result.exit_code == 2 and "is a file, not a folder" in error_line(result.output)
    unwritable(monkeypatch, tmp_path / "ro")
    (tmp_path / "ro").mkdir()
    result = runner.invoke(app, ["report", str(finished.parent), "--out", str(tmp_path / "ro"), "--no-figures"])
    assert result.exit_code == 2
    assert error_line(result.output) == f"error: cannot write to --out {tmp_path / 'ro'}: Permission denied"


def test_attention_out_read_only_is_one_line(tmp_path, finished, monkeypatch) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    unwritable(monkeypatch, out)
    result = runner.invoke(app, ["attention", str(finished), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 2
    assert error_line(result.output) == f"error: cannot write to --out {out}: Permission denied"


def test_a_figure_that_cannot_be_written_is_an_output_error(tmp_path) -> None:
    from sampleweight.errors import OutputError
    from sampleweight.studies.figures import new_figure, save_figure

    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        save_figure(new_figure(2, 2), tmp_path / "file" / "figure.png")


def test_retrain_of_a_run_with_a_damaged_config_json_reads_the_checkpoints(tmp_path, finished) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "config.json").write_text('{"model": "cbam_vg')
    result = runner.invoke(app, ["retrain", str(run), "--method", "tau_norm", "--out", str(tmp_path / "tau"),
                                 "--device", "cpu", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "tau" / "config.json").read_text())["retrain"]["method"] == "tau_norm"


# -- checked in the right order: before any data is read, and no folder left behind ------------------------


def _must_not_read_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleweight.engine import training

    def must_not_run(*args, **kwargs):
        raise AssertionError("data read before the options were checked")

    monkeypatch.setattr(training, "load_split", must_not_run)


def test_pretrained_weights_that_cannot_be_had_are_said_before_any_data_is_read(tmp_path, monkeypatch) -> None:
    from sampleweight import pretrained

    monkeypatch.setattr(pretrained, "_unreachable", lambda url: "cannot reach huggingface.co:443: refused")
    monkeypatch.setattr(pretrained, "_hub_cached", lambda *args: False)
    monkeypatch.setattr(pretrained, "_url_cached", lambda *args: False)
    _must_not_read_data(monkeypatch)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", "synthetic:40", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 2
    line = error_line(result.output)
    assert "could not download the pretrained weights of backbone 'vgg16'" in line and "refused" in line
    assert not out.exists()  # the refused run made no folder
    result = runner.invoke(app, ["train", "--model", "resnet18", "--data", "synthetic:40", "--out", str(out)])
    assert result.exit_code == 2 and "pretrained weights of backbone 'resnet18'" in error_line(result.output)


def test_a_run_refused_after_its_folder_was_made_removes_it_but_not_a_folder_the_user_made(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not out.exists()
    out.mkdir()
    result = runner.invoke(app, ["train", *TINY, "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert result.exit_code == 2 and out.is_dir()


def test_resume_without_config_json_names_the_missing_file(tmp_path, finished, monkeypatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "config.json").unlink()
    _must_not_read_data(monkeypatch)
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 2
    assert error_line(result.output) == (
        f"error: cannot resume {run}: its config.json (the run's options) is missing; give them with --config FILE, "
        "or start over with --overwrite"
    )


def test_resuming_a_finished_run_says_so_and_rewrites_nothing(tmp_path, finished) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in run.iterdir() if path.is_file()}
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"note: {run} is finished (1/1 epochs); nothing to resume" in text and "resuming at epoch" not in text
    after = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in run.iterdir() if path.is_file()}
    assert after == before


# -- silent acceptance ----------------------------------------------------------------------------------------


def test_an_empty_item_of_a_grid_list_is_an_error_naming_it(tmp_path) -> None:
    from sampleweight.errors import ConfigError
    from sampleweight.studies.grid import parse_list

    with pytest.raises(ConfigError, match=r"--weighters 'none,,es': item 2 is empty"):
        parse_list("none,,es", "weighters")
    with pytest.raises(ConfigError, match="--models is empty"):
        parse_list("", "models")
    assert parse_list(" none , es ", "weighters") == ["none", "es"]


def test_grid_devices_are_checked_before_any_run_starts(tmp_path) -> None:
    out = tmp_path / "grid"
    axes = ["--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none", "--optimizers", "adam", "--splits", "0"]
    result = runner.invoke(app, ["grid", *TINY[:-2], *axes, "--devices", "x,y", "--out", str(out)])
    assert result.exit_code == 2
    assert error_line(result.output).startswith("error: --devices x,y: unknown device 'x'")
    assert not out.exists() or not any(path.is_dir() for path in out.iterdir())  # no run folder


def test_attention_with_empty_images_is_refused(finished) -> None:
    result = runner.invoke(app, ["attention", str(finished), "--images", "", "--device", "cpu"])
    assert result.exit_code == 2 and "--images is empty" in error_line(result.output)


@pytest.mark.parametrize("flag", ["--out", "--data", "--cache-dir"])
def test_an_empty_path_is_refused_not_taken_as_the_current_folder(flag, tmp_path, monkeypatch) -> None:
    _must_not_read_data(monkeypatch)
    monkeypatch.chdir(tmp_path)
    args = {"--out": str(tmp_path / "r"), "--data": "synthetic:40", flag: ""}
    result = runner.invoke(app, ["train", "--no-pretrained", *[part for pair in args.items() for part in pair]])
    assert result.exit_code == 2
    assert f"{flag[2:].replace('-', '_')}: Value error, an empty path" in error_line(result.output)
    assert list(tmp_path.iterdir()) == []


# -- leftovers and modes --------------------------------------------------------------------------------------


def test_run_files_get_the_mode_open_would_give_them_not_0600(finished) -> None:
    from sampleweight.engine import checkpoint

    expected = 0o666 & ~checkpoint._UMASK
    for name in ("config.json", "metrics.json", "predictions.csv", "checkpoint.pt", "data.json"):
        assert (finished / name).stat().st_mode & 0o777 == expected, name


# -- messages: one line that says what is wrong and what to do -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--epochs", "1.5"], "error: --epochs '1.5': Input should be a valid integer"),
        (["train", "--lr=abc"], "error: --lr 'abc': Input should be a valid number"),
        (["grid", "--seed", "x"], "error: --seed 'x': Input should be a valid integer"),
        (["evaluate", "run", "--data", "d", "--bootstrap", "-1"], "error: --bootstrap '-1': Input should be greater"),
        (["retrain", "run", "--method", "crt", "--out", "o", "--epochs", "1.5"], "error: --epochs '1.5': Input"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_error_line_naming_the_option(args, expected, tmp_path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert error_line(result.output).startswith(expected) and "Usage:" not in result.output


def test_config_that_is_a_folder_says_so(tmp_path) -> None:
    result = runner.invoke(app, ["train", "--config", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert error_line(result.output) == (
        f"error: --config {tmp_path} is a folder; expected a TOML, YAML or JSON file of options"
    )


@pytest.mark.parametrize("name", ["lesion.jpg", "labels.csv"])
def test_data_that_is_an_image_or_binary_says_what_data_takes(name, tmp_path) -> None:
    image = tmp_path / name
    image.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    result = runner.invoke(app, ["train", *TINY, "--data", str(image), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    line = error_line(result.output)
    assert "codec" not in line and ("not a data folder" in line or "nor a data folder" in line), line
    assert "--data takes a data folder" in line and "synthetic" in line


def test_a_damaged_checkpoint_says_so_and_what_to_do(tmp_path, finished) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    (run / "metrics.json").unlink()  # unfinished: resuming reads the checkpoint
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 2
    line = error_line(result.output)
    assert f"{run / 'checkpoint.pt'} is damaged or not a sampleweight checkpoint" in line
    assert f"start the run over with sampleweight train --out {run} --overwrite" in line


CRASHING_PLUGIN = """
import sampleweight as sw

class CrashLater(sw.BaseWeighter):
    def forward(self, batch):
        if batch.epoch >= 1 and batch.step % 8 == 2:
            raise RuntimeError("boom")
        return batch.losses.new_ones(batch.losses.shape)

@sw.hookimpl
def register_weighters(register):
    register("crash_later", CrashLater)
"""


def test_a_weighter_error_counts_epochs_as_progress_does_and_says_what_is_kept(tmp_path, mount_plugin) -> None:
    mount_plugin("sw-test-crash", entry_points={"crash": "sw_test_crash"}, modules={"sw_test_crash": CRASHING_PLUGIN})
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "3", "--weighter", "crash_later", "--out", str(out)])
    assert result.exit_code == 2
    line = error_line(result.output)
    assert line.startswith("error: weighter 'crash_later' at epoch 2/3, batch 3/8 (run "), line
    assert "failed: RuntimeError: boom" in line
    assert line.endswith("the checkpoint of epoch 1/3, the last good one, is kept"), line


def test_a_plugin_that_fails_to_load_is_one_warning_line_on_the_command_line(tmp_path) -> None:
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "sw_test_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sw-test-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sampleweight]\nbroken = sw_test_broken\n")
    (site / "sw_test_broken.py").write_text("raise ImportError('no such thing')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-m", "sampleweight", "--version"], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: sampleweight plugin broken"), result.stderr
    assert "no such thing" in lines[0]


# -- leftovers: what a killed build or an old run wrote is removed, and nothing else ----------------------------


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_cache_build_killed_midway_leaves_a_temp_file_that_the_next_build_removes(tmp_path) -> None:
    import os

    from sampleweight.data import cache, prepare
    from tests.test_data_cache import make_data

    data, folder = make_data(tmp_path / "data"), tmp_path / "cache"
    folder.mkdir()
    dead = _dead_pid()
    killed = folder / f".csv-16px-abc.npy.{cache._HOST}.{dead}.1.tmp"  # what kill -9 during a build leaves
    older = folder / f".csv-16px-abc.npy.{dead}.1.tmp"  # as versions before the machine's name wrote it
    building = folder / f".csv-16px-def.npy.{cache._HOST}.{os.getpid()}.1.tmp"  # a build under way
    elsewhere = folder / f".csv-16px-abc.npy.otherhost.{dead}.1.tmp"  # another machine's (a shared cache)
    for path in (killed, older, building, elsewhere):
        path.write_bytes(b"\0" * 64)
    prepare(str(data), 16, str(folder), progress=False)
    assert not killed.exists() and not older.exists()
    assert building.exists() and elsewhere.exists()
    killed.write_bytes(b"")
    prepare(str(data), 16, str(folder), progress=False)  # reading the cache again removes it too
    assert not killed.exists()


def test_overwrite_removes_the_old_runs_evaluations_but_not_the_users_files(tmp_path, finished) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:60", "--device", "cpu",
                                 "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (run / "evaluate" / "metrics.json").is_file()
    (run / "notes.txt").write_text("mine")
    (run / "evaluate-mine").mkdir()
    (run / "evaluate-mine" / "metrics.json").write_text('{"acc": 1}')  # not an evaluation's
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(run), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (run / "evaluate").exists()
    assert (run / "notes.txt").read_text() == "mine" and (run / "evaluate-mine" / "metrics.json").is_file()


# -- silent acceptance, continued ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flag"),
    [("grid", "--out"), ("report", "--out"), ("evaluate", "--out"), ("evaluate", "--data"), ("evaluate", "--cache-dir"),
     ("retrain", "--out"), ("retrain", "--data"), ("retrain", "--cache-dir"), ("attention", "--out"),
     ("attention", "--data"), ("attention", "--cache-dir")],
)  # fmt: skip
def test_an_empty_path_of_grid_report_evaluate_is_refused(command, flag, tmp_path, finished, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = {
        "grid": ["grid", *TINY, "--models", "cbam_vgg16", "--losses", "ce", "--weighters", "none", "--splits", "0"],
        "report": ["report", str(finished.parent), "--no-figures"],
        "evaluate": ["evaluate", str(finished), "--data", "synthetic:40", "--device", "cpu"],
        "retrain": ["retrain", str(finished), "--method", "ncm", "--device", "cpu", "--out", str(tmp_path / "n")],
        "attention": ["attention", str(finished), "--device", "cpu"],
    }[command]
    result = runner.invoke(app, [*args, flag, ""])
    assert result.exit_code == 2
    assert (
        error_line(result.output) == f"error: {flag} is an empty path; give a folder or file (. for the current folder)"
    )
    assert list(tmp_path.iterdir()) == []


def test_evaluating_an_unfinished_run_or_a_checkpoint_of_another_model_says_so(tmp_path, finished) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "metrics.json").unlink()
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "backbone": "resnet50"}))
    result = runner.invoke(app, ["evaluate", str(run), "--data", "synthetic:60", "--device", "cpu",
                                 "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"note: {run} is unfinished: scored as its checkpoint left it, after epoch 1 of 1" in text
    assert (
        f"note: {run / 'checkpoint.pt'} is of another model than its folder's config.json: backbone test_resnet "
        "(config.json: resnet50); scored as the checkpoint's"
    ) in text
