"""``classanchor train`` on bad input: each row is (case, data, changed flags, exit code, words).

A refusal prints one clear line and no traceback and leaves the run folder untouched (absent here); a run that
goes through leaves a complete folder. The corrected command then runs on the same --out, and a crafted
``state.pt`` in the run folder runs no code.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from ..helpers.files import write_image_folder, zip_folder
from .conftest import check_refusal, run_cli, snapshot
from .test_bad_input_benchmark import Marker

GOOD = {"--out": "OUT", "--epochs": "1", "--backbone": "mlp", "--image-size": "8", "--device": "cpu",
        "--precision": "float32"}
COMPLETE = {"config.json", "data.json", "state.pt", "history.json", "metrics.json", "model"}


def argv(names: dict[str, str], data: str = "DATA", **changes: str | None) -> list[str]:
    """``train <data>`` with :data:`GOOD`'s flags, ``changes`` ({'--flag': value or None to drop}) applied."""
    args = ["train", names.get(data, data)]
    for flag, value in {**GOOD, **changes}.items():
        if value is not None:
            head, _, tail = value.partition("/")
            args += [flag, names[head] + "/" + tail if tail and head in names else names.get(value, value)]
    return args + ["--no-progress"]


def setup(tmp: Path) -> dict[str, str]:
    kinds = ("red", "green", "stripes")
    data = write_image_folder(tmp / "data", per_class=8, kinds=kinds, size=16)
    empty_class = write_image_folder(tmp / "empty_class", per_class=8, kinds=kinds, size=16)
    (empty_class / "blue").mkdir()
    corrupt = write_image_folder(tmp / "corrupt", per_class=8, kinds=kinds, size=16)
    png = (corrupt / "red" / "000.png").read_bytes()
    (corrupt / "red" / "000.png").write_bytes(png[: len(png) // 2])
    archive = zip_folder(data, tmp / "data.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("../escape.png", png)
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("x")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("my own file")
    return {name.upper(): str(tmp / name) for name in ("data", "empty_class", "corrupt", "empty", "nowhere", "afile",
                                                      "mine")} | {"ZIP": str(archive), "OUT": str(tmp / "run")}


ROWS = [  # (case, data, flags changed, exit code, words: on stderr, or on stdout + stderr for exit code 0)
    ("batch_size", "DATA", {"--batch-size": "0"}, 2, ["--batch-size", ">= 1, got 0"]),
    ("threshold_nan", "DATA", {"--threshold": "nan"}, 2, ["--threshold", "finite number", "'nan'"]),
    ("epochs", "DATA", {"--epochs": "0"}, 2, ["--epochs", ">= 1"]),
    ("image_size", "DATA", {"--image-size": "0"}, 2, ["--image-size", ">= 1"]),
    ("image_size_c32", "DATA", {"--backbone": "classifier32", "--image-size": "12"}, 2, ["multiple of 8", "12"]),
    ("image_size_paper", "DATA", {"--backbone": None, "--recipe": "paper", "--image-size": "12"}, 2,
     ["classifier32", "multiple of 8"]),
    ("recipe", "DATA", {"--recipe": "slow"}, 2, ["--recipe", "invalid choice", "slow"]),
    ("accept_rate", "DATA", {"--accept-rate": "nan"}, 2, ["accept_rate", "(0, 1]"]),
    ("fractions", "DATA", {"--val-fraction": "0.6", "--test-fraction": "0.6"}, 2, ["val_fraction", "less than 1"]),
    ("lr", "DATA", {"--lr": "-1"}, 2, ["lr > 0"]),
    ("max_per_class", "DATA", {"--max-per-class": "0"}, 2, ["max_per_class", "at least 3"]),
    ("empty_class", "EMPTY_CLASS", {}, 2, ["'blue'", "hold no image files", "add images", "or remove them"]),
    ("no_data", "NOWHERE", {}, 2, ["nowhere", "no such file or folder"]),
    ("empty_data", "EMPTY", {}, 2, ["no images found", "one sub-folder per class"]),
    ("one_known", "DATA", {"--known": "red"}, 2, ["at least 2 known classes", "green, red, stripes"]),
    ("known_missing", "DATA", {"--known": "red,nothere"}, 2, ["'nothere'", "not found", "green, red, stripes"]),
    ("known_and_unknown", "DATA", {"--known": "red,green", "--unknown": "red"}, 2, ["both known and unknown"]),
    ("backbone", "DATA", {"--backbone": "nope"}, 2, ["unknown backbone 'nope'"]),
    ("backbone_kwargs", "DATA", {"--backbone-kwargs": '{"nonsense": 3}'}, 2, ["nonsense", "check --backbone-kwargs"]),
    ("cuda", "DATA", {"--device": "cuda"}, 2, ["'cuda'", "no CUDA", "--device cpu"]),
    ("out_file", "DATA", {"--out": "AFILE"}, 2, ["afile is a file, not a run folder", "--out"]),
    ("out_foreign", "DATA", {"--out": "MINE"}, 2, ["mine is not empty and is not a classanchor run folder",
                                                   "choose another --out folder or empty this one"]),
    ("out_read_only", "DATA", {"--out": "READONLY/run"}, 2, ["readonly/run", "read-only", "writable"]),
    ("corrupt_image", "CORRUPT", {}, 0, ["1 file(s) skipped: see data.json"]),
    ("zip_outside", "ZIP", {}, 0, ["1 file(s) skipped: see data.json"]),
]


@pytest.mark.parametrize("case, data, changes, code, words", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(tmp_path, capsys, request, case, data, changes, code, words):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA GPU")
    names = setup(tmp_path)
    if case == "out_read_only":
        names["READONLY"] = str(request.getfixturevalue("read_only"))
    mine = snapshot(Path(names["MINE"]))
    code_, out, err = run_cli(capsys, argv(names, data, **changes))
    assert code_ == code, err
    check_refusal("train", code, out, err if code else out + err, words)
    run = Path(names["OUT"])
    assert snapshot(Path(names["MINE"])) == mine
    if code:
        assert not run.exists()
    else:
        assert {p.name for p in run.iterdir()} == COMPLETE
        skipped = json.loads((run / "data.json").read_text())["skipped"]
        assert len(skipped) == 1 and ("truncated" in skipped[0]["reason"] or "outside the archive" in
                                      skipped[0]["reason"])


def test_failed_commands_leave_the_folder_usable_and_a_crafted_state_runs_no_code(tmp_path, capsys):
    names = setup(tmp_path)
    run = Path(names["OUT"])
    bad = [("DATA", {"--batch-size": "0"}), ("DATA", {"--threshold": "nan"}), ("EMPTY_CLASS", {}),
           ("DATA", {"--backbone-kwargs": '{"nonsense": 3}'}), ("DATA", {"--image-size": "0"})]
    if not torch.cuda.is_available():
        bad.append(("DATA", {"--device": "cuda"}))
    for data, changes in bad:
        code, out, err = run_cli(capsys, argv(names, data, **changes))
        assert code == 2 and "Traceback" not in out + err and not run.exists(), (changes, err)
    code, out, err = run_cli(capsys, argv(names))
    assert code == 0, err
    assert {p.name for p in run.iterdir()} == COMPLETE

    good_state = (run / "state.pt").read_bytes()
    marker = tmp_path / "code_ran"
    torch.save({"model": Marker(marker), "stage": 0, "epoch": 0, "result": {}}, run / "state.pt")
    (run / "metrics.json").unlink()  # the run is unfinished: it resumes from state.pt
    code, out, err = run_cli(capsys, argv(names))
    assert code == 2 and not marker.exists()
    check_refusal("train", code, out, err, ["state.pt", "never loaded", "delete it to train this job from the start"])
    (run / "state.pt").write_bytes(good_state[: len(good_state) // 2])  # a truncated one: named, with the fix
    code, out, err = run_cli(capsys, argv(names))
    check_refusal("train", code, out, err, ["state.pt", "failed finding central directory", "delete it"])
    (run / "state.pt").unlink()
    code, out, err = run_cli(capsys, argv(names))
    assert code == 0 and not marker.exists(), err
    assert {p.name for p in run.iterdir()} == COMPLETE and not list(run.rglob(".*"))
