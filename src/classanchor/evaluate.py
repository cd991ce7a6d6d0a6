"""The evaluation protocol (Algorithm 1 of the paper): logits once, then anchors, scores and metrics.

The network runs once per split (:func:`network_logits`); everything after that works on the saved logits
(:class:`Logits`), so any score (CAC, softmax, OpenMax, ...) can be computed later without the network:
:func:`open_set_evaluation` per trial, :func:`aggregate_reports` over trials.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .data.augment import to_nchw
from .data.preprocess import Preprocessing
from .detectors import Detector, make_detector
from .metrics import calibrate_threshold, open_set_report
from .train import to_memory_format, use_channels_last

__all__ = ["CPU_EVAL_BATCH", "DETECTOR_DEFAULTS", "METRIC_KEYS", "SCORE_LABELS", "THRESHOLD_KEYS", "Logits",
           "aggregate_reports", "load_logits", "network_logits", "open_set_evaluation"]

#: Threshold-free metrics of :func:`open_set_evaluation` (keys of :func:`classanchor.metrics.open_set_report`).
METRIC_KEYS = ("accuracy", "auroc", "oscr", "fpr_at_95_tpr", "aupr_in", "aupr_out")
#: Metrics at the threshold calibrated on the known validation logits.
THRESHOLD_KEYS = ("macro_f1", "unknown_recall", "known_acceptance")
#: What each detector's score is, for tables and plots (higher = more unknown throughout).
SCORE_LABELS: dict[str, str] = {"cac": "min rejection score (Eq. 11)", "msp": "max softmax probability",
                                "max_logit": "max logit", "energy": "energy", "openmax": "OpenMax unknown probability",
                                "class_mean": "distance to the nearest class mean"}
#: Largest evaluation batch on a CPU: 1.5x faster than batches of 1000 (benchmarks/speed.py, docs/speed.md).
CPU_EVAL_BATCH = 128
#: Constructor arguments used when a detector is given by name: the class-mean detectors fall back to all
#: training samples of a class without a correctly classified one, as the benchmark's evaluation does.
DETECTOR_DEFAULTS: dict[str, dict] = {name: {"empty_class": "all_samples"} for name in ("cac", "class_mean")}


@dataclass
class Logits:
    """Logits of one trained network on the three evaluation sets (all tensors on the CPU, float32).

    Attributes:
        train, train_labels: (N_tr, K), (N_tr,) known training split (plus flipped copies where the
            protocol asks for them) used to re-fit the anchors.
        test, test_labels: (N_te, K), (N_te,) known and unknown test images; label -1 = unknown.
        test_classes: (N_te,) original class index of each test image in its source dataset.
        val, val_labels: (N_va, K), (N_va,) known validation split (to calibrate thresholds); optional.
        anchors: (K, K) the fitted class means of the job's own detector (Algorithm 1 anchors for CAC).
        test_scores, test_predictions, val_scores: the job's own open-set decisions, as stored by the pipeline;
            tables, plots and the report read them instead of recomputing them.
    """

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    test_classes: torch.Tensor
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    anchors: torch.Tensor | None = None
    test_scores: torch.Tensor | None = None
    test_predictions: torch.Tensor | None = None
    val_scores: torch.Tensor | None = None

    @property
    def is_unknown(self) -> torch.Tensor:
        return self.test_labels < 0

    def to_npz(self) -> dict[str, np.ndarray]:
        """The arrays by field name, for ``np.savez``; absent optional fields are left out."""
        return {k: v.numpy() for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_npz(cls, arrays) -> Logits:
        """Inverse of :meth:`to_npz` (accepts the mapping ``np.load`` returns; other keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: torch.from_numpy(np.asarray(arrays[k])) for k in arrays if k in fields})


@torch.inference_mode()
def network_logits(net: torch.nn.Module, preprocessing: Preprocessing, images, *, device: torch.device | str = "cpu",
                   batch_size: int = 1000, hflip: bool = False, layout: str | None = None) -> torch.Tensor:
    """The test-time forward pass of the evaluation and the predictor: uint8 images ``(N, H, W)``,
    ``(N, C, H, W)`` or ``(N, H, W, C)`` of any size -> (N, K) float32 logits on the CPU, through
    ``preprocessing`` (resize, normalisation; the mean over the mirror image and over every side of
    ``preprocessing.sizes`` where it says so), in the memory format :func:`classanchor.train.use_channels_last`
    picks for ``device``. On a CPU ``batch_size`` is at most :data:`CPU_EVAL_BATCH` (faster, as measured);
    ``hflip`` feeds the images mirrored (anchor fit on mirrors).
    """
    device = torch.device(device)
    if device.type == "cpu":
        batch_size = min(batch_size, CPU_EVAL_BATCH)
    pixels = to_nchw(torch.as_tensor(images), layout)
    net.eval().to(device)
    channels_last = use_channels_last(None, device)
    views = preprocessing.views()
    outputs = []
    for lo in range(0, pixels.shape[0], batch_size):
        batch = pixels[lo:lo + batch_size].to(device)
        logits = _side_logits(net, views[0], batch, hflip, channels_last)
        if len(views) > 1:  # multi-size test: the mean of the logits at every side
            for view in views[1:]:
                logits += _side_logits(net, view, batch, hflip, channels_last)
            logits /= len(views)
        outputs.append(logits.cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0, getattr(net, "num_classes", 0))


def _side_logits(net: torch.nn.Module, view: Preprocessing, pixels: torch.Tensor, hflip: bool,
                 channels_last: bool) -> torch.Tensor:
    """(B, K) float32 logits of uint8 ``(B, C, H, W)`` ``pixels`` resized to ``view.size`` (one side)."""
    x = view(pixels, layout="NCHW")
    x = x.flip(-1) if hflip else x
    logits = net(to_memory_format(x, channels_last)).float()
    if view.mirror_average:  # test-time flip: (f(x) + f(mirror x)) / 2
        logits = (logits + net(to_memory_format(x.flip(-1), channels_last)).float()) / 2
    return logits


def load_logits(path: str | os.PathLike) -> Logits:
    """The :class:`Logits` of a ``logits.npz`` written by a job (``Logits.to_npz``), read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return Logits.from_npz(arrays)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; re-run the job (delete its result.json) to write it.") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); the file is damaged or truncated: "
                         "delete the job's result.json to run the job again.") from None


def open_set_evaluation(logits: Logits, detector: str | Detector = "cac", *, accept_rate: float = 0.95,
                        **detector_kwargs) -> dict:
    """Every open-set metric of one detector on one trial's logits.

    1. ``detector.fit(logits.train, logits.train_labels)`` (class means, Weibull tails, ...);
    2. threshold theta = :func:`~classanchor.metrics.calibrate_threshold` of the detector's scores on the known
       *validation* logits, accepting ``accept_rate`` of them (the test set is never used to choose theta);
    3. :func:`~classanchor.metrics.open_set_report` of the test scores and predictions at theta, with the
       unknown-to-known confusion (Fig. 4; rows: the original class ids ``logits.test_classes``) at theta.

    ``detector``: a name of ``classanchor.detectors.DETECTORS`` (with :data:`DETECTOR_DEFAULTS` unless
    ``detector_kwargs`` are given) or an unfitted instance. Returns the report (:data:`METRIC_KEYS`,
    :data:`THRESHOLD_KEYS`, ``n_known``, ``n_unknown``, ``threshold``, ``unknown_confusion``) plus
    ``detector_repr`` (e.g. ``"MSPDetector()"``) and ``accept_rate``. Logits saved without validation logits
    give ``threshold: None``, no threshold metrics, and a confusion counting every unknown sample."""
    if isinstance(detector, str):
        detector = make_detector(detector, **(detector_kwargs or DETECTOR_DEFAULTS.get(detector, {})))
    elif detector_kwargs:
        raise ValueError("detector_kwargs are only used with a detector name; configure the instance instead.")
    detector.fit(logits.train, logits.train_labels)
    prediction, score = detector.decide(logits.test)
    threshold = None if logits.val is None else calibrate_threshold(detector.score(logits.val), accept_rate)
    report = open_set_report(score, prediction, logits.test_labels, threshold, classes=logits.test_classes,
                             num_classes=logits.train.shape[1])
    if threshold is None:
        report.update({"threshold": None, **{key: None for key in THRESHOLD_KEYS}})
    report.update(detector_repr=repr(detector), accept_rate=accept_rate)
    return report


def aggregate_reports(reports: Sequence[dict], keys: Sequence[str] = METRIC_KEYS + THRESHOLD_KEYS) -> dict:
    """Mean and population standard deviation (``ddof=0``, as the benchmark table) over trials:
    ``{key: {"mean", "std", "n"}}``; reports where a key is missing or None are left out of that key (``n``
    counts the rest; ``mean``/``std`` are None when n = 0)."""
    summary = {}
    for key in keys:
        values = np.array([r[key] for r in reports if r.get(key) is not None], dtype=np.float64)
        summary[key] = {"mean": float(values.mean()) if values.size else None,
                        "std": float(values.std()) if values.size else None, "n": int(values.size)}
    return summary
