"""``classanchor report`` on bad input: each row is (argv, exit code, words on stderr), never a traceback, and a
failed report writes nothing (an earlier report stays as it was)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classanchor.cli import main

from ..test_io import dot_entries, fill, small_disk
from ..test_report import write_job
from .conftest import check_refusal, snapshot
from .test_bad_input_benchmark import Marker


def finished_run(root: Path) -> Path:
    """A run folder with one finished cross-entropy job (trial 0)."""
    run = root / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    train_labels, val_labels = np.repeat(np.arange(3), 20), np.repeat(np.arange(3), 10)
    known = np.repeat(np.arange(3), 8)
    test_labels = np.concatenate([known, np.full(9, -1)])
    test_classes = np.concatenate([known + 3, np.repeat([11, 12, 15], 3)])
    write_job(run / "trial0" / "ce", rng, method="ce", train_labels=train_labels, val_labels=val_labels,
              test_labels=test_labels, test_classes=test_classes, result={"trial": 0, "accuracy": 0.9, "auroc": 0.8},
              history=False)
    return run


def setup(tmp: Path, case: str) -> dict[str, str]:
    run = tmp / "run"
    if case == "empty":
        run.mkdir()
    elif case == "config_only":
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"config": {"dataset": "MNIST"}}))
        (run / "trial0" / "cac").mkdir(parents=True)  # a job that has not finished: no result.json
    elif case in ("truncated_logits", "truncated_logits_old_report", "corrupt_result", "pickled_logits", "valid"):
        finished_run(tmp)
        if case == "truncated_logits_old_report":
            assert main(["report", str(run)]) == 0
        if case.startswith("truncated_logits"):
            npz = run / "trial0" / "ce" / "logits.npz"
            npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
        if case == "pickled_logits":  # a crafted logits.npz whose object array would run code if unpickled
            with np.load(run / "trial0" / "ce" / "logits.npz") as arrays:
                crafted = dict(arrays)
            crafted["test"] = np.array([Marker(tmp / "code_ran")], dtype=object)
            np.savez(run / "trial0" / "ce" / "logits.npz", **crafted)
        if case == "corrupt_result":
            (run / "trial0" / "ce" / "result.json").write_text('{"trial": 0, "accur')
    (tmp / "afile").write_text("x")
    return {"RUN": str(run), "AFILE": str(tmp / "afile")}


ROWS = [  # (case, argv after "report", exit code, words on stderr)
    ("missing", ["RUN"], 2, ["is not a run folder"]),
    ("empty", ["RUN"], 2, ["no finished job"]),
    ("config_only", ["RUN"], 2, ["no finished job"]),
    ("truncated_logits", ["RUN"], 2, ["logits.npz", "result.json", "truncated"]),
    ("truncated_logits_old_report", ["RUN"], 2, ["logits.npz", "result.json"]),
    ("corrupt_result", ["RUN"], 2, ["result.json", "not valid JSON"]),
    ("pickled_logits", ["RUN"], 2, ["logits.npz", "cannot be read", "allow_pickle=False"]),
    ("valid", ["RUN", "--out", "READONLY/report"], 2, ["readonly/report", "read-only", "writable"]),
    ("valid", ["RUN", "--out", "AFILE"], 2, ["afile", "is a file"]),
    ("valid", ["RUN"], 0, []),
]


@pytest.mark.parametrize("case, argv, code, words", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input(tmp_path, capsys, request, case, argv, code, words):
    names = setup(tmp_path, case)
    if "READONLY/report" in argv:
        names["READONLY/report"] = str(request.getfixturevalue("read_only") / "report")
    run = tmp_path / "run"
    before = (run / "report" / "index.html").read_text() if (run / "report" / "index.html").exists() else None
    capsys.readouterr()
    assert main(["report", *[names.get(a, a) for a in argv]]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("classanchor report: error: ")
        if before is None:  # nothing written: no report folder, no temporary
            assert not (run / "report").exists()
        else:  # the earlier report is untouched
            assert (run / "report" / "index.html").read_text() == before
        if run.is_dir():
            assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    else:
        assert (run / "report" / "index.html").exists() and "Report written to" in out
    assert not (tmp_path / "code_ran").exists()


def test_a_full_disk_keeps_the_earlier_report_and_the_next_run_writes_it(tmp_path, capsys):
    with small_disk(tmp_path) as disk:
        run = finished_run(disk)
        assert main(["report", str(run)]) == 0
        before = snapshot(run / "report")
        filler = fill(disk)
        capsys.readouterr()
        assert main(["report", str(run)]) == 2
        out, err = capsys.readouterr()
        check_refusal("report", 2, out, err, [f"could not write {run / 'report'}: the disk is full"])
        assert snapshot(run / "report") == before and dot_entries(run) == []
        filler.unlink()
        assert main(["report", str(run)]) == 0 and (run / "report" / "index.html").is_file()


def test_no_traceback_end_to_end(tmp_path):
    names = setup(tmp_path, "truncated_logits")
    module = "classanchor" if importlib.util.find_spec("classanchor.__main__") else "classanchor.cli"
    done = subprocess.run([sys.executable, "-m", module, "report", names["RUN"]], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("classanchor report: error: ") and "logits.npz" in done.stderr
    assert not (tmp_path / "run" / "report").exists()


def test_a_report_into_an_existing_folder_keeps_other_files_and_drops_stale_figures(tmp_path):
    run = finished_run(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.png").write_bytes(b"not ours")  # a file the report did not write is left alone
    (out / "trial9_roc.png").write_bytes(b"stale")  # a figure an earlier report wrote is removed
    (out / "summary.json").write_text(json.dumps({"figures": ["trial9_roc.png", "../escape.png"]}))
    (tmp_path / "escape.png").write_bytes(b"outside")
    assert main(["report", str(run), "--out", str(out)]) == 0
    figures = json.loads((out / "summary.json").read_text())["figures"]
    assert figures and all((out / name).is_file() for name in figures)
    assert (out / "mine.png").exists() and not (out / "trial9_roc.png").exists() and (tmp_path / "escape.png").exists()
    assert (out / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
