"""Helpers of the bad-input tables: run a command in this process, snapshot a folder, a read-only folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from classanchor.cli import main

from ..test_io import mount_tmpfs


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch) -> Path:
    """Decoded datasets go to the test's own cache folder (never ~/.cache)."""
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``classanchor *argv`` run in this process; argparse's exits included."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refusing a flag value
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def check_refusal(command: str, code: int, out: str, err: str, words: list[str]) -> None:
    """A refusal the way the CLI promises: no traceback, the words, and one ``classanchor <command>: error:`` line
    (argparse prints its usage above it)."""
    assert "Traceback" not in out + err, err
    for word in words:
        assert word in err, (word, err)
    if code == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith((f"classanchor {command}: error: ", "classanchor: error: ")), err
        if not err.startswith("usage:"):
            assert len(err.strip().splitlines()) == 1, err


def snapshot(folder: Path) -> dict[str, tuple[int, int]] | None:
    """{relative path: (size, mtime_ns)} of everything below ``folder`` (hidden entries too); None if absent."""
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def read_only(tmp_path) -> Path:
    """An empty folder on a read-only file system (a tmpfs mounted ro; skipped where that is not possible)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    mount_tmpfs(folder, "ro,size=1m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)
