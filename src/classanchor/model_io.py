"""A saved open-set model: one folder with the weights and a readable description, loadable without training code.

Folder layout::

    model/
      weights.safetensors   the CACNet state dict (backbone + the re-fitted anchors), safetensors format
      model.json            indented JSON: format version, class names, anchors, threshold and its calibration,
                            input size / channels / normalisation, backbone name and kwargs, library version,
                            git commit, training record

The folder is written complete or not at all: both files go to a temporary sibling folder that replaces the
target by ``os.replace`` (an old *model* folder is swapped out, :func:`_swap_in`; any other folder is refused).
Loading checks the format version, the weights' checksum and every tensor against the backbone, and raises
:class:`ModelFormatError` naming the file and the problem. Nothing is unpickled: safetensors and JSON only.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .data.preprocess import Preprocessing
from .io import git_commit, give_usual_permissions, temporary_sibling_folder, write_failure, write_json
from .models.registry import build_backbone, check_input_sizes
from .network import CACNet

__all__ = ["CONFIG_FILE", "FORMAT_NAME", "FORMAT_VERSION", "WEIGHTS_FILE", "ModelFormatError", "load_open_set_model",
           "read_model_card", "save_open_set_model"]

FORMAT_NAME = "classanchor-open-set-model"
FORMAT_VERSION = 2
#: Versions this library reads. Version 1 resized with PIL's bilinear filter; version 2 records the one resize rule
#: of ``classanchor.data.preprocess`` (its models read fine, they score resized images marginally differently).
READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "model.json"
SCORE_RULE = ("CAC open-set score: min_k (1 - softmin(d)_k) * d_k with d the Euclidean distances of the logits to "
              "the anchors (paper Eq. 11); accepted as known when score < threshold, else 'unknown'")


class ModelFormatError(ValueError):
    """A model folder is missing a file, is corrupt, or was written in an incompatible format."""


def save_open_set_model(path: str | os.PathLike, net: CACNet, class_names, threshold: float, calibration: dict,
                        preprocessing: Preprocessing, backbone: str, backbone_kwargs: dict,
                        extra: dict | None = None) -> Path:
    """Write ``net`` (with its re-fitted anchors) as a self-contained open-set model folder, atomically.

    Args:
        path: the model folder (replaced if it holds a saved model; refused if it holds anything else).
        net: the trained network; its head holds the anchors used at test time (Algorithm 1 lines 1-3).
        class_names: K names, ``class_names[k]`` is known class k. threshold: accept as known when score < it.
        calibration: how the threshold was chosen, kept verbatim, e.g. ``{"method": "accept_rate",
            "target_accept_rate": 0.95, "n_images": 600, "achieved_accept_rate": 0.95}``.
        preprocessing: saved as ``input``. backbone, backbone_kwargs: for ``models.registry.build_backbone``.
        extra: anything else to record (training config, data summary, metrics)."""
    path = Path(path)
    names = [str(n) for n in class_names]
    if len(names) != net.num_classes or len(set(names)) != len(names):
        raise ValueError(f"class_names must be {net.num_classes} distinct names (one per known class), got {names}.")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}.") from None
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}.")
    first = next((m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is not None and first.in_channels != preprocessing.channels:
        raise ValueError(f"the network takes {first.in_channels} input channel(s) but the preprocessing gives "
                         f"{preprocessing.channels}; they must come from the same training run.")
    card: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "classanchor_version": __version__,
        "git_commit": git_commit(), "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "class_names": names, "num_classes": len(names), "threshold": threshold, "calibration": calibration,
        "score": SCORE_RULE, "input": preprocessing.to_dict(),
        "backbone": {"name": backbone, "kwargs": dict(backbone_kwargs)},
        "anchor_magnitude": net.head.anchor_magnitude, "anchors": net.head.anchors.detach().cpu().tolist(),
        "weights": {"file": WEIGHTS_FILE, "sha256": None},  # filled in once the weights are written
        "extra": extra or {},
    }
    _restore_swapped_out(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / CONFIG_FILE).is_file())):
        raise ValueError(f"{path} exists and is not a saved open-set model folder; choose another path "
                         "(nothing was written).")
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    # contiguous CPU copies: safetensors refuses views and channels-last strides
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    tmp = temporary_sibling_folder(path)
    try:
        try:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME,
                                                                "format_version": str(FORMAT_VERSION)})
            card["weights"]["sha256"] = hashlib.sha256((tmp / WEIGHTS_FILE).read_bytes()).hexdigest()
            write_json(tmp / CONFIG_FILE, card)
        except (OSError, SafetensorError) as err:
            raise write_failure(path, err) from err
        give_usual_permissions(tmp / WEIGHTS_FILE)
        give_usual_permissions(tmp, directory=True)  # mkdtemp makes 0700
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``; an old model folder there is moved aside, then removed.
    It goes to ``.<name>.XXXXXXXX.old/model``: if the process dies before ``tmp`` replaces it,
    :func:`_restore_swapped_out` (run by every load and save) moves it back, so a complete model is always at
    ``path`` or recoverable from there."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        try:
            os.replace(path, old / "model")
        except BaseException:
            shutil.rmtree(old, ignore_errors=True)
            raise
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / "model", path)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _restore_swapped_out(path: Path, wait_s: float = 0.5) -> None:
    """If ``path`` is missing but a save was killed while swapping, move the old model back. A save swapping
    right now (another process) puts its new folder in place within microseconds, so the old one is restored
    only when ``path`` is still missing after ``wait_s`` seconds."""
    if path.exists() or not path.parent.is_dir():
        return
    candidates = [old / "model" for old in path.parent.glob(f".{glob.escape(path.name)}.*.old")
                  if (old / "model" / CONFIG_FILE).is_file() and (old / "model" / WEIGHTS_FILE).is_file()]
    if not candidates:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if path.exists():
            return
    newest = max(candidates, key=lambda m: m.stat().st_mtime)
    try:
        os.replace(newest, path)
    except OSError:
        return  # another process restored it or saved a new one first
    shutil.rmtree(newest.parent, ignore_errors=True)


#: Backbone arguments that would fetch or read weights from elsewhere (torchvision ``weights``, timm
#: ``pretrained`` / ``checkpoint_path`` / ``pretrained_cfg*``): dropped, a saved model loads only its folder.
_WEIGHT_SOURCES = ("weights", "pretrained", "checkpoint_path", "weights_path", "pretrained_path", "cache_dir",
                   "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict")
#: Arguments build_backbone takes positionally from the model description itself.
_RESERVED = ("name", "num_classes", "in_channels", "image_size")


def _offline_kwargs(name: str, kwargs: dict, folder: Path) -> dict:
    """The saved backbone kwargs, made safe to build offline (no download, no file outside ``folder`` read):
    :data:`_WEIGHT_SOURCES` (and ``pretrained_cfg*``) are dropped, ``pretrained=False`` is set for
    ``torchvision:``/``timm:`` backbones; a string naming an existing path outside ``folder``, or a
    :data:`_RESERVED` argument, raises :class:`ModelFormatError`."""
    config = folder / CONFIG_FILE
    if reserved := sorted(set(kwargs) & set(_RESERVED)):
        raise ModelFormatError(f"{config}: the backbone arguments {reserved} are fixed by the model itself (class "
                               "names, input size and channels); remove them from backbone.kwargs or save the model "
                               "again.")
    safe = {k: v for k, v in kwargs.items() if k not in _WEIGHT_SOURCES and not k.startswith("pretrained_cfg")}
    inside = folder.resolve()
    for key, value in safe.items():
        for text in _strings(value):
            try:
                candidate = Path(text).expanduser()
                exists = bool(text) and candidate.exists()
            except (OSError, ValueError):
                continue
            if exists and not candidate.resolve().is_relative_to(inside):
                raise ModelFormatError(f"{config}: the backbone argument {key}={text!r} names a file outside the "
                                       f"model folder; a saved model loads only what {folder} holds, so this is "
                                       "refused: remove the argument from backbone.kwargs or save the model again.")
    if ":" in name:
        safe["pretrained"] = False  # the weights come from the file, never from a download
    return safe


def _strings(value) -> Iterator[str]:
    """Every string in ``value`` (nested lists and dicts included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list, tuple)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def read_model_card(path: str | os.PathLike) -> dict:
    """The checked contents of ``model.json`` of a model folder (no weights are read)."""
    path = Path(path)
    _restore_swapped_out(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model folder.")
    if not path.is_dir():
        raise ModelFormatError(f"{path} is a file; a saved model is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}.")
    config = path / CONFIG_FILE
    if not config.is_file():
        raise ModelFormatError(f"{config} is missing; {path} is not a complete saved open-set model (it needs "
                               f"{CONFIG_FILE} and {WEIGHTS_FILE}).")
    try:
        card = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"{config} is not valid JSON ({err}); the file is corrupt: save the model again.") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{config} is not a classanchor open-set model description (its 'format' should be "
                               f"{FORMAT_NAME!r}).")
    version = card.get("format_version")
    if version not in READABLE_VERSIONS:
        by = card.get("classanchor_version", "an unknown version")
        hint = "upgrade classanchor" if isinstance(version, int) and version > FORMAT_VERSION else "re-save it"
        raise ModelFormatError(f"{config} has format version {version!r} (written by classanchor {by}); this "
                               f"classanchor {__version__} reads format version {FORMAT_VERSION}: {hint}.")
    required = ("class_names", "threshold", "input", "backbone", "anchors", "weights")
    if missing := [k for k in required if k not in card]:
        raise ModelFormatError(f"{config} lacks the field(s) {missing}; the file is incomplete: save the model again.")
    try:
        Preprocessing.from_dict(card["input"])
        names = [str(n) for n in card["class_names"]]
        float(card["threshold"])
        str(card["backbone"]["name"])
        dict(card["backbone"].get("kwargs", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFormatError(f"{config} has a malformed field ({type(err).__name__}: {err}); save the model "
                               "again.") from None
    if len(names) < 2 or len(set(names)) != len(names):
        raise ModelFormatError(f"{config}: class_names must be at least 2 distinct names, got {names}.")
    return card


def load_open_set_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[CACNet, dict]:
    """(network in eval mode on ``device``, model card) of a saved model folder, without training code or data:
    the backbone is rebuilt from its registry name and kwargs (never downloading weights), the state dict (with
    the anchors) is read from the safetensors file after its checksum is verified."""
    path = Path(path)
    card = read_model_card(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFormatError(f"{weights} is missing; {path} is not a complete saved open-set model.")
    expected = card["weights"].get("sha256") if isinstance(card["weights"], dict) else None
    if expected and hashlib.sha256(weights.read_bytes()).hexdigest() != expected:
        raise ModelFormatError(f"{weights} does not match the checksum recorded in {path / CONFIG_FILE}; the weights "
                               "are corrupt or come from another model: save the model again.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFormatError(f"{weights} cannot be read as safetensors ({err}); the file is corrupt.") from None
    k = len(card["class_names"])
    backbone = card["backbone"]
    kwargs = _offline_kwargs(backbone["name"], dict(backbone.get("kwargs") or {}), path)
    try:
        body = build_backbone(backbone["name"], k, card["input"]["channels"], card["input"]["size"], **kwargs)
    except ImportError as err:
        raise ImportError(f"the model {path} needs a package that is not installed: {err}") from None
    except (TypeError, ValueError) as err:
        raise ModelFormatError(f"{path / CONFIG_FILE}: the backbone {backbone['name']!r} cannot be built with the "
                               f"arguments {kwargs} ({err}); the file is damaged or comes from another classanchor "
                               "version: save the model again.") from None
    net = CACNet(body, k, float(card.get("anchor_magnitude", 10.0)))
    own = net.state_dict()
    problems = {"missing": sorted(set(own) - set(state)), "unexpected": sorted(set(state) - set(own)),
                "wrong shapes": [f"{n} {tuple(state[n].shape)} (backbone needs {tuple(own[n].shape)})"
                                 for n in sorted(set(own) & set(state)) if own[n].shape != state[n].shape]}
    if any(problems.values()):
        details = "; ".join(f"{what} {', '.join(names[:5])}" for what, names in problems.items() if names)
        raise ModelFormatError(f"{weights} does not fit the backbone {backbone['name']!r} with {k} classes at "
                               f"{card['input']['size']} px x {card['input']['channels']} channels described in "
                               f"{path / CONFIG_FILE}: {details}.")
    net.load_state_dict(state)
    try:
        check_input_sizes(net, card["input"]["channels"], card["input"].get("extra_sizes", []), k)
    except ValueError as err:
        raise ModelFormatError(f"{path / CONFIG_FILE}: {err}") from None
    anchors = torch.tensor(card["anchors"], dtype=net.head.anchors.dtype)
    if tuple(anchors.shape) != (k, k) or not torch.equal(anchors, net.head.anchors):
        raise ModelFormatError(f"the anchors in {path / CONFIG_FILE} differ from those in {weights}; the two files "
                               "come from different models: save the model again.")
    return net.to(device).eval(), card
