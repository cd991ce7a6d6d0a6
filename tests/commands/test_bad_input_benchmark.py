"""``classanchor benchmark`` on bad input: each row is (case, changed flags, exit code, words on stderr).

Every refusal prints one clear line and no traceback and leaves the run folder as it was (absent here); the
corrected command then runs on the same (default) folder, and a crafted ``state.pt`` in a run folder runs no code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ..data.conftest import make_mnist
from .conftest import check_refusal, run_cli, snapshot

GOOD = {"--data-root": "DATA", "--trials": "0", "--methods": "cac", "--epochs-scale": "0.02", "--backbone": "mlp",
        "--device": "cpu", "--precision": "float32"}


def argv(names: dict[str, str], dataset: str = "mnist", out: str | None = "OUT", **changes: str | None) -> list[str]:
    """``benchmark <dataset>`` with :data:`GOOD`'s flags, ``changes`` ({'--flag': value or None to drop}) applied."""
    flags = {**GOOD, **({"--out": out} if out else {}), **changes}
    args = ["benchmark", dataset]
    for flag, value in flags.items():
        if value is not None:
            head, _, tail = value.partition("/")
            args += [flag, names[head] + "/" + tail if tail and head in names else names.get(value, value)]
    return args + ["--no-progress"]


def setup(tmp: Path) -> dict[str, str]:
    make_mnist(tmp / "data", per_class=(10, 4))
    corrupt = tmp / "corrupt" / "MNIST" / "raw"
    make_mnist(tmp / "corrupt", per_class=(10, 4))
    images = corrupt / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:3000])
    (tmp / "afile").write_text("x")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("my own file")
    return {"DATA": str(tmp / "data"), "CORRUPT": str(tmp / "corrupt"), "NOWHERE": str(tmp / "nowhere"),
            "OUT": str(tmp / "run"), "AFILE": str(tmp / "afile"), "MINE": str(tmp / "mine")}


ROWS = [  # (case, flags changed, exit code, words on stderr)
    ("trials_7", {"--trials": "7"}, 2, ["--trials", "'7'", "0-4"]),
    ("trials_a-b", {"--trials": "a-b"}, 2, ["--trials", "'a-b'", "e.g. 0-4"]),
    ("no_data_root", {"--data-root": "NOWHERE"}, 2, ["MNIST", "nowhere", "does not exist"]),
    ("corrupt_data", {"--data-root": "CORRUPT"}, 2, ["train-images-idx3-ubyte.gz", "truncated", "download it again"]),
    ("threshold_nan", {"--threshold": "nan"}, 2, ["unrecognized arguments: --threshold"]),
    ("anchor_nan", {"--anchor-magnitude": "nan"}, 2, ["anchor_magnitude", "finite number > 0"]),
    ("anchor_weight", {"--anchor-weight": "-1"}, 2, ["anchor_weight", "finite number > 0"]),
    ("epochs_scale", {"--epochs-scale": "0"}, 2, ["epochs_scale", "(0, 1]"]),
    ("method", {"--methods": "cac,nope"}, 2, ["unknown method 'nope'", "cac"]),
    ("recipe", {"--recipe": "nope"}, 2, ["no recipe 'nope'", "paper"]),
    ("backbone", {"--backbone": "nope"}, 2, ["unknown backbone 'nope'", "classifier32"]),
    ("backbone_kwargs", {"--backbone-kwargs": '{"nonsense": 3}'}, 2, ["nonsense", "check --backbone-kwargs"]),
    ("backbone_kwargs_json", {"--backbone-kwargs": "{nonsense"}, 2, ["--backbone-kwargs", "JSON object"]),
    ("cuda", {"--device": "cuda"}, 2, ["'cuda'", "no CUDA", "--device cpu"]),
    ("device", {"--device": "tpu"}, 2, ["unknown device 'tpu'", "auto, cpu, cuda"]),
    ("out_file", {"--out": "AFILE"}, 2, ["afile is a file, not a run folder", "--out"]),
    ("out_foreign", {"--out": "MINE"}, 2, ["mine is not empty and is not a classanchor run folder", "thesis.tex",
                                           "choose another --out folder or empty this one"]),
    ("out_read_only", {"--out": "READONLY/run"}, 2, ["readonly/run", "read-only", "writable"]),
]


@pytest.mark.parametrize("case, changes, code, words", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(tmp_path, capsys, request, case, changes, code, words):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA GPU")
    names = setup(tmp_path)
    if case == "out_read_only":
        names["READONLY"] = str(request.getfixturevalue("read_only"))
    folders = {name: snapshot(Path(names[name])) for name in ("OUT", "MINE")}
    code_, out, err = run_cli(capsys, argv(names, **changes))
    assert code_ == code, err
    check_refusal("benchmark", code, out, err, words)
    assert {name: snapshot(Path(names[name])) for name in folders} == folders  # nothing written, nothing touched
    assert folders["OUT"] is None


def test_an_unknown_dataset_is_named(tmp_path, capsys):
    code, out, err = run_cli(capsys, argv(setup(tmp_path), dataset="nope"))
    assert code == 2
    check_refusal("benchmark", code, out, err, ["unknown benchmark 'nope'", "MNIST"])


class Marker:
    """A pickle that, if ever unpickled, creates the file ``path`` (as a crafted checkpoint would run a command)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_failed_commands_leave_the_default_folder_usable_and_a_crafted_state_runs_no_code(tmp_path, capsys,
                                                                                           monkeypatch):
    names = setup(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default --out: runs/mnist
    run = tmp_path / "runs" / "mnist"
    bad = [{"--trials": "7"}, {"--data-root": "NOWHERE"}, {"--data-root": "CORRUPT"},
           {"--backbone-kwargs": '{"nonsense": 3}'}, {"--anchor-magnitude": "nan"}, {"--epochs-scale": "0"}]
    if not torch.cuda.is_available():
        bad.append({"--device": "cuda"})
    for changes in bad:
        code, out, err = run_cli(capsys, argv(names, out=None, **changes))
        assert code == 2 and "Traceback" not in out + err and not run.exists(), (changes, err)
    code, out, err = run_cli(capsys, argv(names, out=None))
    assert code == 0, err
    job = run / "trial0" / "cac"
    for name in ("config.json", "results.json", "table.md", "report/index.html"):
        assert (run / name).is_file(), name
    assert {p.name for p in job.iterdir()} == {"state.pt", "history.json", "logits.npz", "result.json", "model"}
    assert not [p for p in run.rglob(".*")]  # no temporaries left

    # a downloaded run folder whose unfinished job holds a crafted state.pt (the report is tested above: skipped)
    monkeypatch.setattr("classanchor.report.write_report", lambda run: Path(run) / "report" / "index.html")
    marker = tmp_path / "code_ran"
    torch.save({"model": Marker(marker), "stage": 0, "epoch": 0, "result": {}}, job / "state.pt")
    (job / "result.json").unlink()
    code, out, err = run_cli(capsys, argv(names, out=None))
    assert code == 2 and not marker.exists()
    check_refusal("benchmark", code, out, err, [str(Path("runs/mnist/trial0/cac/state.pt")), "never loaded",
                                                 "delete it to train this job from the start"])
    (job / "state.pt").unlink()  # as the message says
    code, out, err = run_cli(capsys, argv(names, out=None))
    assert code == 0 and not marker.exists(), err
    assert json.loads((job / "result.json").read_text())["job"] == "cac"
    assert os.path.getsize(job / "state.pt") > 0
