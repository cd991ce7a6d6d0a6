"""keep_freed_memory: a freed 64 MiB block is reused instead of mapped (and page-faulted) anew on every
allocation. Counted in fresh processes, since the setting is process-wide and cannot be undone."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from classanchor import cli
from classanchor.cpu_memory import keep_freed_memory

# Allocate, touch and free a 64 MiB tensor ten times; print the minor page faults of the last nine.
_CYCLES = """
import json, resource, sys, torch
from classanchor.cpu_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    torch.ones(16 << 20)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _cycles(setting: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CYCLES, setting], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists in glibc only")
def test_kept_memory_is_reused_without_page_faults():
    default, kept = _cycles("default"), _cycles("keep")
    pages = 9 * (64 << 20) // 4096  # what mapping every block anew costs with 4 KiB pages
    if default["faults"] < pages // 2:
        pytest.skip(f"this kernel maps the blocks in large pages ({default['faults']} faults for {pages} pages)")
    assert kept["applied"] is True
    assert kept["faults"] < pages // 4, (default, kept)  # seen: 147,465 by default, 16,384 (one block) kept


def test_elsewhere_nothing_changes(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert keep_freed_memory() is False


def test_the_command_keeps_freed_memory_before_it_runs(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.main(["report", str(tmp_path / "no-run")]) == 2  # fails after the setting, as every command runs
    assert calls == [True] and "no-run" in capsys.readouterr().err
