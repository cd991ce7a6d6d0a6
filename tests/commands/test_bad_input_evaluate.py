"""``classanchor evaluate`` on bad input: each row is (case, argv, exit code, words), never a traceback.

The model folder is never touched; ``--output`` is either written completely or not at all (an earlier file stays as
it was), also on a read-only or full disk.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classanchor.model_io import WEIGHTS_FILE

from ..test_io import dot_entries, fill, small_disk
from .conftest import check_refusal, run_cli, snapshot
from .test_bad_input_predict import model_for_case


def write_images(root: Path, classes=("cat", "dog", "fox"), n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def setup(tmp: Path, case: str) -> dict[str, str]:
    """The files of one case; returns the placeholders of its argv."""
    model = tmp / "model"
    model_for_case(model, case, file_case="model_file", missing_case="no_model")
    if case == "weights_tampered":
        weights = model / WEIGHTS_FILE
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
    data = write_images(tmp / "data")
    (data / "owl").mkdir()  # an empty class folder
    good = write_images(tmp / "good")
    corrupt = write_images(tmp / "corrupt")
    (corrupt / "dog" / "0.png").write_bytes((corrupt / "dog" / "0.png").read_bytes()[:40])
    (tmp / "empty").mkdir()
    (tmp / "adir").mkdir()
    return {"MODEL": str(model), "DATA": str(data), "GOOD": str(good), "CORRUPT": str(corrupt),
            "EMPTY": str(tmp / "empty"), "NOWHERE": str(tmp / "nowhere"), "ADIR": str(tmp / "adir"),
            "OUTPUT": str(tmp / "metrics.json")}


ROWS = [  # (case, argv after "evaluate", exit code, words on stderr)
    ("no_model", ["MODEL", "GOOD"], 2, ["model: no such model folder"]),
    ("model_file", ["MODEL", "GOOD"], 2, ["is a file", "model.json and weights.safetensors"]),
    ("not_json", ["MODEL", "GOOD"], 2, ["model.json", "not valid JSON"]),
    ("unknown_kwarg", ["MODEL", "GOOD"], 2, ["model.json", "cannot be built", "nonsense"]),
    ("duplicated_kwarg", ["MODEL", "GOOD"], 2, ["model.json", "num_classes", "fixed by the model"]),
    ("path_kwarg", ["MODEL", "GOOD"], 2, ["model.json", "outside the model folder"]),
    ("no_package", ["MODEL", "GOOD"], 2, ["timm", "pip install"]),
    ("weights_tampered", ["MODEL", "GOOD"], 2, ["weights.safetensors", "checksum", "save the model again"]),
    ("download_kwargs", ["MODEL", "GOOD", "--output", "OUTPUT"], 0, ["metrics written to"]),
    ("valid", ["MODEL", "GOOD", "--threshold", "nan"], 2, ["--threshold", "finite number"]),
    ("valid", ["MODEL", "GOOD", "--batch-size", "0"], 2, ["--batch-size", ">= 1"]),
    ("valid", ["MODEL", "GOOD", "--device", "cuda"], 2, ["'cuda'", "no CUDA", "--device cpu"]),
    ("valid", ["MODEL", "NOWHERE"], 2, ["nowhere: no such file or folder"]),
    ("valid", ["MODEL", "EMPTY"], 2, ["no images found", "one sub-folder per class"]),
    ("valid", ["MODEL", "DATA"], 2, ["'owl'", "hold no image files"]),
    ("valid", ["MODEL", "GOOD", "--known", "cat,wolf"], 2, ["'wolf'", "not classes of the model", "cat, dog"]),
    ("valid", ["MODEL", "GOOD", "--known", "cat", "--unknown", "cat"], 2, ["'cat'", "both known and unknown"]),
    ("valid", ["MODEL", "GOOD", "--output", "ADIR"], 2, ["adir is a folder", "path of a file"]),
    ("valid", ["MODEL", "GOOD", "--output", "READONLY/m.json"], 2, ["m.json", "read-only", "writable"]),
    ("valid", ["MODEL", "CORRUPT", "--output", "OUTPUT"], 0, ["skipped 1 file(s)", "dog/0.png"]),
    ("valid", ["MODEL", "GOOD", "--output", "OUTPUT"], 0, []),
]


@pytest.mark.parametrize("case, args, code, words", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input(tmp_path, capsys, monkeypatch, request, case, args, code, words):
    if case == "no_package":
        monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA GPU")
    names = setup(tmp_path, case)
    if "READONLY/m.json" in args:
        names["READONLY/m.json"] = str(request.getfixturevalue("read_only") / "m.json")
    model = snapshot(Path(names["MODEL"]))
    code_, out, err = run_cli(capsys, ["evaluate", *[names.get(a, a) for a in args], "--no-progress"])
    assert code_ == code, err
    check_refusal("evaluate", code, out, err if code else out + err, words)
    assert snapshot(Path(names["MODEL"])) == model
    output = Path(names["OUTPUT"])
    if code:
        assert not output.exists() and dot_entries(tmp_path) == []
    elif "OUTPUT" in args:
        report = json.loads(output.read_text())
        assert report["n_known"] + report["n_unknown"] == (8 if case == "valid" and "CORRUPT" in args else 9)


def test_a_full_disk_keeps_the_earlier_output_and_the_next_run_writes_it(tmp_path, capsys):
    names = setup(tmp_path, "valid")
    with small_disk(tmp_path) as disk:
        output = disk / "metrics.json"
        argv = ["evaluate", names["MODEL"], names["GOOD"], "--output", str(output), "--no-progress"]
        output.write_text("earlier")
        filler = fill(disk)
        code, out, err = run_cli(capsys, argv)
        assert code == 2
        check_refusal("evaluate", code, out, err, [f"could not write {output}: the disk is full", "free some space"])
        assert output.read_text() == "earlier" and dot_entries(disk) == []
        filler.unlink()
        code, out, err = run_cli(capsys, argv)
        assert code == 0 and json.loads(output.read_text())["n_unknown"] == 3
