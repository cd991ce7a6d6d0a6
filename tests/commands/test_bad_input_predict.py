"""``classanchor predict`` on bad input: each row is (argv, exit code, words on stderr), never a traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classanchor import CACNet, Preprocessing
from classanchor.cli import main
from classanchor.model_io import CONFIG_FILE, save_open_set_model
from classanchor.models.registry import build_backbone


def make_model(path: Path, kwargs: dict | None = None, name: str = "mlp") -> Path:
    net = CACNet(build_backbone("mlp", 2, 1, 8), 2)
    save_open_set_model(path, net, ["cat", "dog"], 1.0, {"method": "user"},
                        Preprocessing(size=8, channels=1, mean=(0.5,), std=(0.25,)), "mlp", {})
    if kwargs is not None or name != "mlp":
        card = json.loads((path / CONFIG_FILE).read_text())
        card["backbone"] = {"name": name, "kwargs": kwargs or {}}
        (path / CONFIG_FILE).write_text(json.dumps(card))
    return path


def model_for_case(model: Path, case: str, *, file_case: str = "file", missing_case: str = "missing") -> None:
    """The model folder of a case: a file, corrupt JSON, a crafted backbone card (:data:`CARDS`), none at all
    (``missing_case``) or a good model."""
    if case == file_case:
        model.write_text("not a folder")
    elif case == "not_json":
        make_model(model)
        (model / CONFIG_FILE).write_text("{not json")
    elif case in CARDS:
        make_model(model, *CARDS[case])
    elif case != missing_case:
        make_model(model)


def setup(tmp: Path, case: str) -> dict[str, str]:
    """Builds the files of one case; returns the placeholders of its argv."""
    image = tmp / "img.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(image)
    model = tmp / "model"
    model_for_case(model, case)
    (tmp / "outdir").mkdir()
    return {"MODEL": str(model), "IMAGE": str(image), "OUTDIR": str(tmp / "outdir")}


CARDS = {  # model.json backbone (kwargs, name) of a case
    "unknown_kwarg": ({"nonsense": 3}, "mlp"),
    "duplicated_kwarg": ({"num_classes": 3}, "mlp"),
    "download_kwargs": ({"weights": "DEFAULT", "pretrained": True, "checkpoint_path": "/etc/passwd",
                         "pretrained_cfg_overlay": {"file": "/etc/passwd"}}, "mlp"),
    "path_kwarg": ({"hidden": "/etc/passwd"}, "mlp"),
    "no_package": ({}, "timm:resnet18"),
}

ROWS = [  # (case, argv after "predict", exit code, words on stderr)
    ("missing", ["MODEL", "IMAGE"], 2, ["no such model folder"]),
    ("file", ["MODEL", "IMAGE"], 2, ["is a file"]),
    ("not_json", ["MODEL", "IMAGE"], 2, ["model.json", "not valid JSON"]),
    ("unknown_kwarg", ["MODEL", "IMAGE"], 2, ["model.json", "cannot be built", "nonsense"]),
    ("duplicated_kwarg", ["MODEL", "IMAGE"], 2, ["model.json", "num_classes", "fixed by the model"]),
    ("download_kwargs", ["MODEL", "IMAGE"], 0, ["1 image(s) predicted"]),  # dropped: loads what the folder holds
    ("path_kwarg", ["MODEL", "IMAGE"], 2, ["model.json", "outside the model folder"]),
    ("no_package", ["MODEL", "IMAGE"], 2, ["timm", "pip install"]),
    ("valid", ["MODEL", "IMAGE", "--threshold", "nan"], 2, ["--threshold", "finite"]),
    ("valid", ["MODEL", "IMAGE", "--output", "OUTDIR"], 2, ["outdir", "is a folder"]),
]


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse refusing a flag value
        return stop.code


@pytest.mark.parametrize("case, argv, code, words", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input(tmp_path, capsys, monkeypatch, case, argv, code, words):
    if case == "no_package":
        monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    names = setup(tmp_path, case)
    assert run_main(["predict", *[names.get(a, a) for a in argv], "--no-progress"]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)
    if code == 2 and case != "valid":
        assert len(err.strip().splitlines()) == 1 and err.startswith("classanchor predict: error: ")


def test_no_traceback_end_to_end(tmp_path):
    names = setup(tmp_path, "unknown_kwarg")
    module = "classanchor" if importlib.util.find_spec("classanchor.__main__") else "classanchor.cli"
    done = subprocess.run([sys.executable, "-m", module, "predict", names["MODEL"], names["IMAGE"], "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("classanchor predict: error: ") and "nonsense" in done.stderr
