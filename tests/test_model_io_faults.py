"""Saving a model under faults: a raise or a kill between every two steps, a full disk, unsafe backbone arguments.

At every instant a complete model is readable at ``model/`` or restored from there by the next load or save, and
the next successful save removes what a killed one left behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

import classanchor.model_io as model_io
from classanchor import CACNet, Preprocessing
from classanchor.model_io import CONFIG_FILE, ModelFormatError, load_open_set_model, save_open_set_model
from classanchor.models.registry import build_backbone

from .test_io import backdate, dot_entries, fill, small_disk

PREP = Preprocessing(size=8, channels=1, mean=(0.5,), std=(0.25,))


def make_net(seed: int = 0) -> CACNet:
    torch.manual_seed(seed)
    return CACNet(build_backbone("mlp", 2, 1, 8), 2).eval()


def save(path: Path, threshold: float, kwargs: dict | None = None) -> Path:
    return save_open_set_model(path, make_net(), ["cat", "dog"], threshold, {"method": "user"}, PREP, "mlp",
                               kwargs or {})


def threshold_of(path: Path) -> float:
    net, card = load_open_set_model(path)
    assert isinstance(net, CACNet)
    return card["threshold"]


class Killed(BaseException):
    """The process died: nothing runs after this point, not even the clean-up."""


class Fault:
    """Raises at the chosen step (an ``Exception``, or ``Killed`` after which every later step dies too)."""

    def __init__(self, monkeypatch, step: str, kill: bool):
        self.step, self.kill, self.dead, self.replaces = step, kill, False, 0
        real_replace, real_rmtree, real_save_file = os.replace, shutil.rmtree, safetensors.torch.save_file
        real_unlink, real_write_json = Path.unlink, model_io.write_json

        def fail(name: str) -> None:
            if self.dead:
                raise Killed
            if name == self.step:
                if self.kill:
                    self.dead = True
                    raise Killed
                raise OSError(f"injected failure at {name}")

        def replace(src, dst):
            self.replaces += 1
            fail(f"replace{self.replaces}")
            return real_replace(src, dst)

        def rmtree(path, ignore_errors=False, **k):
            try:
                fail("rmtree")
            except OSError:
                if ignore_errors:  # as shutil.rmtree(..., ignore_errors=True): the folder stays, no error
                    return None
                raise
            return real_rmtree(path, ignore_errors=ignore_errors, **k)

        def unlink(path, *a, **k):
            fail("unlink")
            return real_unlink(path, *a, **k)

        def save_file(*a, **k):
            fail("before_save_file")
            real_save_file(*a, **k)
            fail("after_save_file")

        def write_json(*a, **k):
            fail("write_json")
            return real_write_json(*a, **k)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(shutil, "rmtree", rmtree)
        monkeypatch.setattr(Path, "unlink", unlink)
        monkeypatch.setattr(safetensors.torch, "save_file", save_file)
        monkeypatch.setattr(model_io, "write_json", write_json)


# the steps of a save over an existing model: weights, model.json (its own atomic write: replace1), moving the old
# model aside (replace2), moving the new one in (replace3), removing the old one (rmtree)
STEPS = ["before_save_file", "after_save_file", "write_json", "replace1", "replace2", "replace3", "rmtree"]


@pytest.mark.parametrize("step", STEPS)
def test_a_raise_at_each_step_keeps_the_old_model_and_leaves_nothing(tmp_path, monkeypatch, step):
    path = save(tmp_path / "model", 1.0)
    with monkeypatch.context() as m:
        Fault(m, step, kill=False)
        if step == "rmtree":  # the new model is in place; only removing the old one failed (it is ignored)
            save(path, 2.0)
        else:
            with pytest.raises(OSError, match="injected failure"):
                save(path, 2.0)
    assert threshold_of(path) == (2.0 if step == "rmtree" else 1.0)
    if step != "rmtree":
        assert dot_entries(tmp_path) == []
    backdate(tmp_path)
    save(path, 3.0)
    assert threshold_of(path) == 3.0 and dot_entries(tmp_path) == []


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_each_step_keeps_a_complete_model_and_the_next_save_cleans_up(tmp_path, monkeypatch, step):
    path = save(tmp_path / "model", 1.0)
    with monkeypatch.context() as m:
        fault = Fault(m, step, kill=True)
        with pytest.raises(Killed):
            save(path, 2.0)
        assert fault.dead
    if step == "replace3":  # killed between the two renames: no model/, the old one lies in .model.*.old/model
        assert not path.exists() and any(name.endswith(".old") for name in dot_entries(tmp_path))
    assert dot_entries(tmp_path)  # the killed save left something behind
    assert threshold_of(path) == (2.0 if step == "rmtree" else 1.0)  # load restores the old model if needed
    backdate(tmp_path)  # what a killed process left is older than this process
    save(path, 3.0)
    assert dot_entries(tmp_path) == [] and sorted(p.name for p in path.iterdir()) == [CONFIG_FILE,
                                                                                      "weights.safetensors"]
    assert threshold_of(path) == 3.0


def test_a_save_after_a_kill_between_the_renames_restores_then_replaces(tmp_path, monkeypatch):
    path = save(tmp_path / "model", 1.0)
    with monkeypatch.context() as m:
        Fault(m, "replace3", kill=True)
        with pytest.raises(Killed):
            save(path, 2.0)
    assert not path.exists()
    backdate(tmp_path)
    save(path, 3.0)  # no load in between: the save itself restores the old folder first, then swaps
    assert threshold_of(path) == 3.0 and dot_entries(tmp_path) == []


def test_a_kill_during_the_first_save_leaves_no_model_and_nothing_after_the_next(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        Fault(m, "replace2", kill=True)  # no old model: replace2 moves the new folder in
        with pytest.raises(Killed):
            save(tmp_path / "model", 2.0)
    assert not (tmp_path / "model").exists()
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_open_set_model(tmp_path / "model")
    backdate(tmp_path)
    save(tmp_path / "model", 3.0)
    assert dot_entries(tmp_path) == [] and threshold_of(tmp_path / "model") == 3.0


# ---------------------------------------------------------------------------------------------- disk full

@pytest.mark.parametrize("where", ["save_file", "write_json", "safetensors_error"])
def test_a_full_disk_names_the_model_and_leaves_no_partial_folder(tmp_path, monkeypatch, where):
    from safetensors import SafetensorError

    old = save(tmp_path / "old", 1.0)

    def full(*a, **k):
        if where == "safetensors_error":
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write_json":
        monkeypatch.setattr(model_io, "write_json", full)
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", full)
    for target in (tmp_path / "new", old):
        with pytest.raises(OSError) as err:
            save(target, 2.0)
        assert str(target) in str(err.value) and "disk is full" in str(err.value)
    monkeypatch.undo()
    assert not (tmp_path / "new").exists() and dot_entries(tmp_path) == []
    assert threshold_of(old) == 1.0


def test_a_model_save_on_a_really_full_disk_keeps_the_old_model_and_the_next_save_succeeds(tmp_path):
    with small_disk(tmp_path) as disk:
        path = save(disk / "model", 1.0)
        filler = fill(disk)
        for target in (disk / "new", path):
            with pytest.raises(OSError, match=f"could not write {target}: the disk is full"):
                save(target, 2.0)
        assert threshold_of(path) == 1.0 and not (disk / "new").exists() and dot_entries(disk) == []
        filler.unlink()
        save(path, 3.0)
        assert threshold_of(path) == 3.0 and dot_entries(disk) == []


# ------------------------------------------------------------------------------------- backbone arguments

def _edit_kwargs(path: Path, kwargs: dict, name: str = "mlp") -> None:
    card = json.loads((path / CONFIG_FILE).read_text())
    card["backbone"] = {"name": name, "kwargs": kwargs}
    (path / CONFIG_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize("kwargs", [{"weights": "DEFAULT"}, {"pretrained": True}, {"checkpoint_path": "/etc/passwd"},
                                    {"pretrained_cfg_overlay": {"file": "/etc/passwd"}}, {"weights_path": "/x"}])
def test_weight_sources_in_a_saved_model_are_dropped(tmp_path, kwargs):
    path = save(tmp_path / "model", 1.0)
    _edit_kwargs(path, kwargs)
    assert threshold_of(path) == 1.0  # loads only what its folder holds


def test_prefixed_backbones_are_built_offline(tmp_path, monkeypatch):
    seen = {}

    def spy(name, k, channels, size, **kw):
        seen.update(kw)
        return build_backbone("mlp", k, channels, size)

    path = save(tmp_path / "model", 1.0)
    _edit_kwargs(path, {"weights": "DEFAULT", "pretrained": True, "checkpoint_path": "/etc/passwd",
                        "pretrained_cfg": {"hf_hub_id": "x"}, "drop_rate": 0.1}, name="timm:resnet18")
    monkeypatch.setattr(model_io, "build_backbone", spy)
    assert threshold_of(path) == 1.0
    assert seen == {"pretrained": False, "drop_rate": 0.1}


@pytest.mark.parametrize("kwargs, message", [
    ({"hidden": "/etc/passwd"}, "names a file outside the model folder"),
    ({"hidden": ["a", {"b": str(Path.home())}]}, "names a file outside the model folder"),
    ({"num_classes": 3}, "fixed by the model itself"),
    ({"nonsense": 3}, "cannot be built with the arguments"),
    ({"hidden": "sixteen"}, "cannot be built"),
])
def test_unsafe_or_unknown_backbone_arguments_are_refused_naming_the_file(tmp_path, kwargs, message):
    path = save(tmp_path / "model", 1.0)
    _edit_kwargs(path, kwargs)
    with pytest.raises(ModelFormatError, match=message) as err:
        load_open_set_model(path)
    assert str(path / CONFIG_FILE) in str(err.value)


def test_a_missing_backbone_package_says_what_to_install(tmp_path, monkeypatch):
    import sys

    path = save(tmp_path / "model", 1.0)
    _edit_kwargs(path, {}, name="timm:resnet18")
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(ImportError, match="pip install") as err:
        load_open_set_model(path)
    assert str(path) in str(err.value)
