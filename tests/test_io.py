"""classanchor.io: atomic writes under faults (a raise at each step, a kill, a full disk) and git_commit."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import classanchor.io as cio
from classanchor.io import (RunFolder, atomic_write, clean_stale_temporaries, git_commit, open_run_folder, save_torch,
                            write_json, write_npz, write_text)


def backdate(folder: Path, seconds: float = 3600.0) -> None:
    """Make every dot-entry of ``folder`` (and what lies below) look as if an earlier process left it."""
    past = time.time() - seconds
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            for sub in [entry, *entry.rglob("*")] if entry.is_dir() else [entry]:
                os.utime(sub, (past, past), follow_symlinks=False)


def dot_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------------- a raise at each step

def _fail_in_write(tmp: Path) -> None:
    tmp.write_text("half")
    raise OSError("broken pipe")


@pytest.mark.parametrize("step", ["write", "permissions", "replace"])
def test_a_failure_at_each_step_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, step):
    target = write_text(tmp_path / "result.json", "old\n")
    if step == "permissions":
        monkeypatch.setattr(cio, "give_usual_permissions", lambda *a, **k: (_ for _ in ()).throw(OSError("chmod")))
    if step == "replace":
        monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError("replace")))
    write = _fail_in_write if step == "write" else (lambda tmp: tmp.write_text("new\n"))
    with pytest.raises(OSError):
        atomic_write(target, write)
    assert target.read_text() == "old\n"
    assert dot_entries(tmp_path) == []


class Killed(BaseException):
    """The process died: nothing after this point runs, not even the clean-up."""


def test_a_killed_write_leaves_a_temporary_that_a_later_write_removes(tmp_path, monkeypatch):
    target = write_text(tmp_path / "state.pt", "old")

    def die(tmp: Path) -> None:
        tmp.write_text("partial")
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", lambda *a, **k: (_ for _ in ()).throw(Killed()))  # the clean-up never runs
        with pytest.raises(Killed):
            atomic_write(target, die)
    leftover = dot_entries(tmp_path)
    assert len(leftover) == 1 and leftover[0].startswith(".state.pt.") and leftover[0].endswith(".tmp")
    assert target.read_text() == "old"

    write_text(target, "fresh")  # a temporary of this very process (or a concurrent writer) is never taken
    assert dot_entries(tmp_path) == leftover

    backdate(tmp_path)  # as an earlier, killed process would have left it
    (tmp_path / ".state.pt.tmp").write_text("not ours: no random part")
    (tmp_path / ".other.abcdefgh.tmp").write_text("another file's temporary")
    os.utime(tmp_path / ".other.abcdefgh.tmp", (0, 0))
    write_text(target, "new")
    assert target.read_text() == "new"
    assert dot_entries(tmp_path) == [".other.abcdefgh.tmp", ".state.pt.tmp"]  # only this target's own leftovers
    assert [p.name for p in clean_stale_temporaries(tmp_path)] == [".other.abcdefgh.tmp"]


def test_clean_stale_temporaries_keeps_an_old_folder_holding_the_only_model(tmp_path):
    old = tmp_path / ".model.abcd1234.old" / "model"
    old.mkdir(parents=True)
    (old / "model.json").write_text("{}")
    backdate(tmp_path)
    assert clean_stale_temporaries(tmp_path) == [] and old.exists()  # no model/ beside it: keep
    (tmp_path / "model").mkdir()
    assert clean_stale_temporaries(tmp_path, "model") == [tmp_path / ".model.abcd1234.old"]


# ---------------------------------------------------------------------------------------------- disk full

def test_a_full_disk_gives_a_clear_error_naming_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "table.md"

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as err:
        atomic_write(target, full)
    assert str(target) in str(err.value) and "disk is full" in str(err.value) and err.value.errno == errno.ENOSPC
    assert not target.exists() and dot_entries(target.parent) == []


def test_torch_save_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    target = save_torch(tmp_path / "state.pt", {"a": 1})
    real_write_bytes = Path.write_bytes

    def full(self, data):
        real_write_bytes(self, bytes(data)[:64])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match="could not write .*state.pt: the disk is full") as err:
        save_torch(target, {"a": 2})
    assert ".tmp" not in str(err.value)  # the temporary's name is not the user's business
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"a": 1} and dot_entries(tmp_path) == []


# ------------------------------------------------------------------ a real small file system (root on Linux)

def mount_tmpfs(where: Path, options: str) -> None:
    """Mount a tmpfs with ``options`` (e.g. ``size=1m``, ``ro``) at the existing folder ``where``, or skip."""
    if sys.platform != "linux" or os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a small or read-only file system needs root on Linux; the patched-write tests "
                    "cover this case elsewhere")


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str = "8m"):
    """A ``size`` tmpfs at ``tmp_path/disk`` for the duration of the block."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount_tmpfs(disk, f"size={size}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until ``disk`` is full (the next new file cannot get a single page); returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as err:
                    assert err.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


SAVES = {  # what each save writes, and how to read it back
    "result.json": (lambda p, v: write_json(p, {"v": v}), lambda p: json.loads(p.read_text())["v"]),
    "table.md": (lambda p, v: write_text(p, f"v{v}"), lambda p: int(p.read_text()[1:])),
    "state.pt": (lambda p, v: save_torch(p, {"v": torch.full((3000,), v)}),
                 lambda p: int(torch.load(p, weights_only=True)["v"][0])),
    "logits.npz": (lambda p, v: write_npz(p, {"test": np.random.default_rng(v).random((100, 40)), "v": np.array(v)}),
                   lambda p: int(np.load(p, allow_pickle=False)["v"])),
}


@pytest.mark.parametrize("name", SAVES)
def test_a_full_disk_keeps_the_previous_file_and_the_next_save_succeeds(tmp_path, name):
    save, read = SAVES[name]
    with small_disk(tmp_path) as disk:
        target = save(disk / "run" / name, 1)
        filler = fill(disk)
        with pytest.raises(OSError) as err:
            save(target, 2)
        assert f"could not write {target}: the disk is full" in str(err.value) and err.value.errno == errno.ENOSPC
        assert read(target) == 1 and dot_entries(target.parent) == []
        filler.unlink()
        save(target, 3)
        assert read(target) == 3 and dot_entries(target.parent) == []


def test_a_read_only_file_system_is_named_with_the_fix(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mount_tmpfs(folder, "ro,size=1m")
    try:
        with pytest.raises(OSError, match=r"could not write .*ro/out.csv: the file system is read-only; choose"):
            write_text(folder / "out.csv", "x")
        with pytest.raises(OSError, match=r"could not write .*ro/run: the file system is read-only"):
            RunFolder.create(folder / "run", {"dataset": "MNIST"})
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_writing_to_a_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "preds").mkdir()
    with pytest.raises(IsADirectoryError, match="preds is a folder"):
        write_json(tmp_path / "preds", {"a": 1})
    assert list((tmp_path / "preds").iterdir()) == []


# ------------------------------------------------------------------------------------------------ git

def test_git_commit_never_runs_git_for_an_installed_package(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "classanchor" / "io.py"
    installed.parent.mkdir(parents=True)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(cio, "__file__", str(installed))
    assert git_commit() is None and calls == []


def test_git_commit_in_a_checkout_takes_no_optional_lock(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    (checkout / ".git").mkdir(parents=True)
    source = checkout / "src" / "classanchor" / "io.py"
    source.parent.mkdir(parents=True)
    calls = []

    def fake_run(args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0, stdout="abc123\n" if "rev-parse" in args else "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(cio, "__file__", str(source))
    assert git_commit() == "abc123"
    assert calls and all(k["env"]["GIT_OPTIONAL_LOCKS"] == "0" for _, k in calls)
    assert all(Path(k["cwd"]) == source.parent for _, k in calls)


# ------------------------------------------------------------------------------------------ run folders

def test_a_run_folder_with_another_config_names_the_fields_that_differ(tmp_path):
    RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [0, 1], "methods": ["cac"], "out": "runs/a"})
    with pytest.raises(ValueError, match=r"dataset: 'MNIST' there, 'SVHN' now"):
        RunFolder.create(tmp_path, {"dataset": "SVHN", "trials": [0, 1], "methods": ["cac"], "out": "runs/a"})
    # the same folder reached by another path is the same run
    RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [0, 1], "methods": ["cac"],
                                "out": str(tmp_path.resolve())})
    assert len(json.loads((tmp_path / "config.json").read_text())["sessions"]) == 2


def test_a_run_folder_grows_by_trials_and_methods_and_records_their_union(tmp_path):
    RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [1], "methods": ["cac"], "out": "a"})
    folder = RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [3, 0], "methods": ["ce"], "out": "a"})
    assert folder.config["trials"] == [0, 1, 3] and folder.config["methods"] == ["cac", "ce"]
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["config"] == folder.config and len(recorded["sessions"]) == 2


def test_a_run_folder_is_never_a_file_or_a_folder_of_other_files(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile is a file, not a run folder; choose another --out"):
        RunFolder.create(tmp_path / "afile", {"a": 1})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match=r"mine is not empty and is not a classanchor run folder .*thesis.tex.*; "
                                         r"choose another --out folder or empty this one"):
        RunFolder.create(mine, {"a": 1})
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    for marker in ("config.json", "study_compare.json"):  # a run folder of a command or of a study: reopened
        (mine / marker).write_text(json.dumps({"config": {"a": 1}}))
        assert open_run_folder(mine) == mine
        (mine / marker).unlink()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_text("x")  # hidden entries (and our temporaries) do not count
    RunFolder.create(hidden, {"a": 1})
    assert (hidden / "config.json").exists()
