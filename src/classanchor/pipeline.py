"""One path from labelled images to an open-set model: every entry point (benchmark, ``train``, demo) calls it.

:func:`fit_open_set` (paper Section 3 and Algorithm 1):

1. :class:`~classanchor.data.preprocess.Preprocessing` from the training images (per-channel mean / std) at the
   recipe's input size (with ``recipe.extra_test_sizes``, evaluation and the saved model average the logits
   over those sides too; training's validation uses the recipe's size): the one preprocessing of validation,
   evaluation and the saved model;
2. :func:`classanchor.train.train` with the recipe's augmentation, resumable from ``state_path``;
3. logits of the known training split (plus its mirror images when ``recipe.flip_anchor_fit``, unless the
   logits are mirror averages already: ``recipe.test_time_flip``), and the method's own open-set detector
   fitted on them (:attr:`classanchor.methods.Method.detector`: for the CAC family the anchors of Algorithm 1
   lines 1-3, also set on the network; for cross-entropy the max softmax score);
4. the threshold calibrated on the known validation scores (it accepts ``accept_rate`` of them) unless given.

The result is an :class:`OpenSetModel`: :meth:`OpenSetModel.evaluate` gives every open-set metric of a test set
(:func:`classanchor.metrics.open_set_report`), :meth:`OpenSetModel.save` writes the folder the predictor loads.
Logits always come from :func:`classanchor.evaluate.network_logits` in float32, as in the predictor.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .data.augment import AugmentSpec
from .data.loader import DeviceLoader
from .data.preprocess import Preprocessing
from .detectors import Detector, make_detector
from .evaluate import DETECTOR_DEFAULTS, network_logits
from .methods import Method
from .metrics import calibrate_threshold, open_set_report
from .model_io import save_open_set_model
from .models.registry import build_backbone, check_input_sizes
from .network import CACNet
from .recipes import Recipe
from .train import TrainResult, resolve_precision, train

__all__ = ["ACCEPT_RATE", "FitResult", "OpenSetModel", "backbone_for", "fit_open_set", "resolve_device"]

#: Share of the known validation images the calibrated threshold accepts, unless the caller says otherwise.
ACCEPT_RATE = 0.95


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA if available, else CPU; anything else as given (a clear error when it is not usable)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r} ({err}); use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this torch build sees no CUDA GPU; use --device cpu "
                         "(or auto).")
    return device


@dataclass
class OpenSetModel:
    """A trained network with everything that turns its logits into "known class k or unknown".

    Attributes:
        net: the network; for the CAC family its head holds the re-fitted anchors (Algorithm 1 lines 1-3).
        method: how it was trained. detector: its fitted ``method.detector``, ``decide(logits)`` -> (known
            class (N,), score (N,), higher = more unknown).
        class_names: K names. threshold: accept as known when score < threshold. calibration: how it was chosen.
        backbone, backbone_kwargs: the registry name and its arguments (to rebuild the network).
        augment: the training augmentation (a record; test time uses ``preprocessing`` only).
    """

    net: CACNet
    method: Method
    detector: Detector
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    threshold: float
    calibration: dict
    backbone: str
    backbone_kwargs: dict
    augment: AugmentSpec

    def logits(self, images, *, device: torch.device | str = "cpu", batch_size: int = 1000,
               hflip: bool = False) -> torch.Tensor:
        """uint8 images ``(N, H, W[, C])`` of any size -> ``(N, K)`` float32 logits on the CPU."""
        return network_logits(self.net, self.preprocessing, images, device=device, batch_size=batch_size,
                              hflip=hflip)

    def decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K) logits -> (best known class (N,), open-set score (N,)) by the method's own detector."""
        return self.detector.decide(logits)

    def evaluate(self, images, labels, *, classes=None, device: torch.device | str = "cpu",
                 batch_size: int = 1000) -> tuple[torch.Tensor, dict]:
        """uint8 test images, labels (N,) 0..K-1 for knowns and -1 for unknowns, optional original class ids
        ``classes`` (N,) (the unknown-to-known confusion rows) -> ((N, K) logits, the report of
        :func:`classanchor.metrics.open_set_report` at the threshold plus numpy ``test_scores`` and
        ``test_predictions``)."""
        logits = self.logits(images, device=device, batch_size=batch_size)
        predictions, scores = self.decide(logits)
        report = open_set_report(scores, predictions, torch.as_tensor(labels), self.threshold, classes=classes,
                                 num_classes=len(self.class_names))
        return logits, {**report, "test_scores": scores.numpy(), "test_predictions": predictions.numpy()}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """The model folder for ``classanchor predict`` (CAC family only: the saved score is Eq. 11)."""
        if not self.method.uses_anchors:
            raise ValueError(f"only anchor-trained models can be saved for prediction; {self.method.name!r} is "
                             "scored post hoc (see classanchor compare).")
        return save_open_set_model(path, self.net, self.class_names, self.threshold, self.calibration,
                                   self.preprocessing, self.backbone, self.backbone_kwargs,
                                   {"augment": self.augment, **(extra or {})})


@dataclass
class FitResult:
    """What :func:`fit_open_set` returns: the model, its training record and the arrays it was fitted on.

    Attributes:
        train_logits, train_labels: (N_tr[*2], K), the anchor-fit data (mirrored copies appended when used).
        val_logits, val_labels, val_scores: the known validation split and its open-set scores.
        precision: the precision training ran in (``"float32"`` or ``"bf16"``); logits are always float32.
        seconds: wall times, ``{"train", "fit"}`` (fit = logits + detector + threshold).
    """

    model: OpenSetModel
    history: TrainResult
    train_logits: torch.Tensor
    train_labels: torch.Tensor
    val_logits: torch.Tensor
    val_labels: torch.Tensor
    val_scores: torch.Tensor
    precision: str
    seconds: dict = field(default_factory=dict)


def backbone_for(recipe: Recipe, backbone: str | None, given: dict | None) -> tuple[str, dict]:
    """(name, keyword arguments) of the network to build: ``backbone`` with the ``given`` arguments, or the
    recipe's own (``recipe.backbone`` and its ``backbone_kwargs``, ``given`` on top) when ``backbone`` is None.
    classifier32 gets the recipe's dropout unless given (other backbones do not take it)."""
    kwargs = dict(given or {})
    if backbone is None:
        backbone, kwargs = recipe.backbone, {**dict(recipe.backbone_kwargs), **kwargs}
    if backbone == "classifier32":
        kwargs.setdefault("dropout", recipe.dropout)
    return backbone, kwargs


def _calibrate(val_scores: torch.Tensor, accept_rate: float, threshold: float | None) -> tuple[float, dict]:
    if threshold is None:
        threshold = calibrate_threshold(val_scores, accept_rate)
        calibration = {"method": "accept_rate", "target_accept_rate": accept_rate}
    else:
        if not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold}.")
        threshold, calibration = float(threshold), {"method": "user"}
    calibration.update(data="known validation split", n_images=int(val_scores.numel()),
                       achieved_accept_rate=float((val_scores < threshold).float().mean()))
    return threshold, calibration


def fit_open_set(train_set, val_set, recipe: Recipe, method: Method, *, class_names=None,
                 backbone: str | None = None, backbone_kwargs: dict | None = None,
                 device: torch.device | str = "cpu", seed: int = 0, precision: str = "auto",
                 compile: bool = False, state_path: str | Path | None = None, accept_rate: float = ACCEPT_RATE,
                 threshold: float | None = None, eval_batch_size: int = 1000, channels_last: bool | None = None,
                 progress: bool = True, description: str = "") -> FitResult:
    """Train ``method`` on ``train_set`` and turn it into an :class:`OpenSetModel` (module docstring, steps 1-4).

    Args:
        train_set, val_set: :class:`~classanchor.data.imageset.ImageSet` of known images (labels 0..K-1),
            uint8 ``(N, H, W[, C])`` of one size. class_names: K names (default: ``train_set.class_names``).
        backbone, backbone_kwargs: ``models.registry`` name and arguments; None: the recipe's (:func:`backbone_for`).
        seed: of the weights and the augmentation; precision: :func:`classanchor.train.resolve_precision`.
        state_path: resumable training state (a killed run continues from its last epoch).
        accept_rate / threshold: calibrate the threshold on the validation scores, or use a given one.
    """
    device = resolve_device(device)
    if not method.uses_anchors and recipe.label_smoothing and not method.label_smoothing:
        method = replace(method, label_smoothing=recipe.label_smoothing)  # the recipe's cross-entropy setting
    used_precision = resolve_precision(precision, device)
    names = tuple(str(n) for n in (class_names if class_names is not None else train_set.class_names))
    k = len(names)
    preprocessing = Preprocessing.fit(train_set.images, recipe.image_size, mirror_average=recipe.test_time_flip,
                                      extra_sizes=recipe.extra_test_sizes)
    augment = AugmentSpec(size=recipe.image_size, scale_min=recipe.scale_min, flip_p=recipe.flip_p,
                          rotation_deg=recipe.rotation_deg, mean=preprocessing.mean, std=preprocessing.std)
    backbone, kwargs = backbone_for(recipe, backbone, backbone_kwargs)
    torch.manual_seed(seed)  # the same initial weights for every method given the same seed
    net = CACNet(build_backbone(backbone, k, preprocessing.channels, recipe.image_size, **kwargs), k,
                 method.anchor_magnitude)
    check_input_sizes(net, preprocessing.channels, preprocessing.extra_sizes, k)  # before any training
    loader_args = dict(device=device, seed=seed, channels_last=channels_last is not False)
    train_loader = DeviceLoader(train_set.images, train_set.labels, recipe.batch_size, augment, train=True,
                                drop_last=len(train_set) > recipe.batch_size, **loader_args)
    val_loader = DeviceLoader(val_set.images, val_set.labels, eval_batch_size, augment, train=False, **loader_args)
    config = recipe.train_config(compile=compile, precision=used_precision, channels_last=channels_last)
    history = train(net, method, train_loader, val_loader, config, device=device, state_path=state_path,
                    progress=progress, description=description)
    del train_loader, val_loader

    start = time.perf_counter()
    model = OpenSetModel(net, method, make_detector(method.detector, **DETECTOR_DEFAULTS.get(method.detector, {})),
                         preprocessing, names, math.inf, {}, backbone, kwargs, augment)
    train_logits = model.logits(train_set.images, device=device, batch_size=eval_batch_size)
    train_labels = torch.as_tensor(np.asarray(train_set.labels), dtype=torch.int64)
    if recipe.flip_anchor_fit and not recipe.test_time_flip:  # Algorithm 1 on the split + its mirror images
        mirrored = model.logits(train_set.images, device=device, batch_size=eval_batch_size, hflip=True)
        train_logits, train_labels = torch.cat([train_logits, mirrored]), torch.cat([train_labels, train_labels])
    model.detector.fit(train_logits, train_labels)
    if method.uses_anchors:
        net.head.set_anchors(model.detector.means_.to(net.head.anchors.device))
    val_logits = model.logits(val_set.images, device=device, batch_size=eval_batch_size)
    val_scores = model.detector.score(val_logits)
    model.threshold, model.calibration = _calibrate(val_scores, accept_rate, threshold)
    return FitResult(model, history, train_logits, train_labels, val_logits,
                     torch.as_tensor(np.asarray(val_set.labels), dtype=torch.int64), val_scores, used_precision,
                     {"train": history.seconds, "fit": time.perf_counter() - start})
