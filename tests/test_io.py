"""classanchor.io: atomic writes under faults (a raise at each step, a kill, a full disk) and git_commit."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

import classanchor.io as cio
from classanchor.io import atomic_write, clean_stale_temporaries, git_commit, save_torch, write_json, write_text


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
    def enforce_fail(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", enforce_fail)
    target = tmp_path / "state.pt"
    with pytest.raises(OSError, match="could not write .*state.pt .*disk full or not writable") as err:
        save_torch(target, {"a": 1})
    assert str(target) in str(err.value)
    assert not target.exists() and dot_entries(tmp_path) == []


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


def test_a_run_folder_with_another_config_names_the_fields_that_differ(tmp_path):
    from classanchor.io import RunFolder

    RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [0, 1]})
    with pytest.raises(ValueError, match=r"trials: \[0, 1\] there, \[0\] now"):
        RunFolder.create(tmp_path, {"dataset": "MNIST", "trials": [0]})
