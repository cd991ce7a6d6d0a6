"""Predict "known class or unknown" with a saved open-set model, on image files, folders, zips or arrays.

Per image (Algorithm 1 of the paper, lines 5-14): distances ``d`` (K,) of the logits to the re-fitted
anchors, rejection scores ``s = (1 - softmin(d)) * d`` (Eq. 11), best class ``argmin s``, open-set score
``min s``; the image is that class when ``score < threshold`` and ``unknown`` otherwise. The reported
confidence is the SoftMin confidence ``softmin(d)`` (Eqs. 9-10) of the best class.

Image files are decoded exactly as for training (:func:`classanchor.data.decode.decode_files`) and run in
batches. Unreadable files are skipped and listed in the result; images of another mode (e.g. grey for an
RGB model) are converted and counted.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.decode import conversion_name, decode_files, pil_to_array, resize_images
from .data.folders import load_labelled_folder
from .data.preprocess import Preprocessing
from .data.sources import SkippedFile, expand_paths
from .evaluate import network_logits
from .heads import anchor_distances
from .metrics import closed_set_accuracy, open_set_report
from .model_io import load_open_set_model
from .network import CACNet
from .scores import cac_decision, softmin_confidences

__all__ = ["UNKNOWN", "OpenSetPredictor", "PredictionResult", "PredictionRow", "evaluation_report"]

UNKNOWN = "unknown"


@dataclass(frozen=True)
class PredictionRow:
    """One image: its path (``array[i]`` for arrays), the prediction (a class name or ``'unknown'``), the best
    known class, the open-set score (higher = more unknown) and the SoftMin confidence of the best class."""

    path: str
    prediction: str
    best_class: str
    score: float
    confidence: float


@dataclass
class PredictionResult:
    """Predictions of a batch of images, as arrays (N,) plus the files that could not be used.

    Attributes:
        paths: (N,) where each image came from.
        class_index: int64 (N,) predicted class, -1 = unknown (score >= threshold).
        best_index: int64 (N,) best known class regardless of the threshold (argmin of Eq. 11).
        scores: float32 (N,) open-set scores ``min s``; confidences: float32 (N,) ``softmin(d)[best]``.
        class_names, threshold: of the model.
        skipped: files that could not be read or decoded, with the reason.
        converted: images converted to the model's mode, by kind (e.g. ``{'grey -> RGB': 2}``).
    """

    paths: list[str]
    class_index: np.ndarray
    best_index: np.ndarray
    scores: np.ndarray
    confidences: np.ndarray
    class_names: tuple[str, ...]
    threshold: float
    skipped: list[SkippedFile] = field(default_factory=list)
    converted: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> PredictionRow:
        best = self.class_names[int(self.best_index[i])]
        return PredictionRow(self.paths[i], best if self.class_index[i] >= 0 else UNKNOWN, best,
                             float(self.scores[i]), float(self.confidences[i]))

    def __iter__(self) -> Iterator[PredictionRow]:
        return (self[i] for i in range(len(self)))

    @property
    def labels(self) -> list[str]:
        """(N,) predicted class names, ``'unknown'`` for rejected images."""
        names = np.asarray([*self.class_names, UNKNOWN], dtype=object)
        return names[self.class_index].tolist()  # index -1 picks UNKNOWN

    @property
    def is_unknown(self) -> np.ndarray:
        return self.class_index < 0

    def records(self) -> list[dict[str, Any]]:
        """One dict per image: path, prediction, best_class, score, confidence."""
        return [row.__dict__.copy() for row in self]

    def notes(self) -> list[str]:
        """Human-readable lines about conversions and skipped files (empty when there is nothing to say)."""
        lines = [f"converted {n} image(s) {kind} for this model" for kind, n in sorted(self.converted.items())]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        return lines


class OpenSetPredictor:
    """A trained CAC network (with its re-fitted anchors), its K class names, threshold (accept as known when the
    score is below it; settable) and :class:`Preprocessing`. Build it with :meth:`load` (a saved model folder),
    :meth:`from_model` or directly; ``card`` is the loaded model.json."""

    def __init__(self, net: CACNet, class_names: Sequence[str], threshold: float, preprocessing: Preprocessing,
                 *, device: torch.device | str = "cpu", card: dict | None = None):
        if len(class_names) != net.num_classes:
            raise ValueError(f"{len(class_names)} class names for a network with {net.num_classes} classes.")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.class_names = tuple(str(n) for n in class_names)
        self.threshold = float(threshold)
        self.preprocessing = preprocessing
        self.card = card or {}

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> OpenSetPredictor:
        """The predictor of a model folder written by :func:`classanchor.model_io.save_open_set_model`."""
        net, card = load_open_set_model(path, device)
        return cls(net, card["class_names"], card["threshold"], Preprocessing.from_dict(card["input"]),
                   device=device, card=card)

    @classmethod
    def from_model(cls, model, device: torch.device | str = "cpu") -> OpenSetPredictor:
        """The predictor of an in-memory :class:`classanchor.pipeline.OpenSetModel` (CAC family)."""
        return cls(model.net, model.class_names, model.threshold, model.preprocessing, device=device)

    @property
    def image_size(self) -> int:
        return self.preprocessing.size

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    def __repr__(self) -> str:
        return (f"OpenSetPredictor(classes={list(self.class_names)}, threshold={self.threshold:.4g}, "
                f"input={self.image_size}x{self.image_size}x{self.channels})")

    def score_batch(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 ``(B, H, W, C)`` images with the model's channels, any size -> (best class (B,), open-set score
        (B,), SoftMin confidence (B,)). The network runs through :func:`classanchor.evaluate.network_logits`,
        the forward pass of the evaluation."""
        images = np.require(images, requirements="W")  # torch wants writable memory: copies np.asarray(PIL)
        logits = network_logits(self.net, self.preprocessing, images, device=self.device, batch_size=len(images),
                                layout="NHWC")
        distances = anchor_distances(logits, self.net.head.anchors.detach().cpu())
        best, score = cac_decision(distances)
        confidence = softmin_confidences(distances).gather(1, best.unsqueeze(1)).squeeze(1)
        return best.numpy(), score.numpy(), confidence.numpy()

    def _result(self, paths: list[str], scored: list[tuple], threshold, skipped=(), converted=()):
        """The :meth:`score_batch` outputs of ``paths``, in order, at ``threshold`` (None: the model's)."""
        thr = self.threshold if threshold is None else float(threshold)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))
        best, scores, conf = (np.concatenate(parts).astype(parts[0].dtype, copy=False)
                              for parts in zip(empty, *scored))
        return PredictionResult(list(paths), np.where(scores < thr, best, -1), best, scores, conf,
                                self.class_names, thr, list(skipped), dict(converted))

    def predict(self, inputs, *, batch_size: int = 256, threshold: float | None = None,
                progress: bool = True) -> PredictionResult:
        """Predict on a path or list of paths (files; folders and zips are searched recursively;
        ``archive.zip/inner/folder`` selects part of a zip), on uint8 pixels as an array / tensor (H, W),
        (H, W, C), (N, H, W) or (N, H, W, C) of any size, or on PIL images. ``threshold`` overrides the
        model's for this call; ``progress`` shows a bar from 256 files on. Files that cannot be used are in
        ``result.skipped``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return self.predict_arrays(inputs, batch_size=batch_size, threshold=threshold)
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) or _is_pil(inputs) else list(inputs)
        if items and all(_is_pil(i) for i in items):
            return self._predict_pil(items, batch_size, threshold)
        if not all(isinstance(i, (str, os.PathLike)) for i in items):
            kinds = sorted({type(i).__name__ for i in items})
            raise TypeError(f"predict takes paths, a uint8 array or PIL images; got {kinds}.")
        return self._predict_files(items, batch_size, threshold, progress)

    def predict_arrays(self, images, *, batch_size: int = 256, threshold: float | None = None) -> PredictionResult:
        """uint8 pixels (H, W), (H, W, C), (N, H, W) or (N, H, W, C), C = 1, 3 or 4, any size."""
        array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if array.dtype != np.uint8:
            raise TypeError(f"predict expects uint8 pixel values 0-255, got dtype {array.dtype}; convert with "
                            "(x * 255).round().astype(np.uint8) if your values are in [0, 1].")
        array = _as_nhwc(array)
        n, c = array.shape[0], array.shape[-1]
        paths = [f"array[{i}]" for i in range(n)]
        if c == self.channels:  # any size: the preprocessing resizes, as in the evaluation
            scored = [self.score_batch(array[lo:lo + batch_size]) for lo in range(0, n, batch_size)]
            return self._result(paths, scored, threshold)
        from PIL import Image  # other channels: converted like a decoded file, at the array's own size

        pil = [Image.fromarray(a[..., 0] if c == 1 else a) for a in array]
        return self._predict_pil(pil, batch_size, threshold, paths)

    def _predict_pil(self, images: list, batch_size: int, threshold, paths: list[str] | None = None):
        """PIL images of any size and mode: converted at their own size (:func:`pil_to_array`, as files are),
        stretched to S x S by the one resize rule (:func:`resize_images`), then scored."""
        arrays = [pil_to_array(im, self.channels) for im in images]
        converted = Counter(c for _, m in arrays if (c := conversion_name(m, self.channels)))
        resized = [resize_images(a[None], self.image_size) for a, _ in arrays]
        scored = [self.score_batch(np.concatenate(resized[lo:lo + batch_size]))
                  for lo in range(0, len(resized), batch_size)]
        return self._result(paths or [f"image[{i}]" for i in range(len(images))], scored, threshold,
                            converted=converted)

    def _predict_files(self, inputs: list, batch_size: int, threshold, progress: bool) -> PredictionResult:
        with expand_paths(inputs) as found, tqdm(total=len(found), desc="predicting", unit="img", dynamic_ncols=True,
                                                 mininterval=1.0, disable=not progress or len(found) < 256) as bar:
            paths, scored, converted, skipped = [], [], Counter(), list(found.skipped)
            for lo in range(0, len(found), batch_size):
                where = [found.where(i) for i in range(lo, min(lo + batch_size, len(found)))]
                decoded = decode_files(lambda i, lo=lo: found.read(lo + i), where, self.image_size, self.channels,
                                       on_error="skip", progress=False)
                skipped += decoded.skipped
                converted.update(decoded.converted)
                if decoded.ok.any():
                    scored.append(self.score_batch(decoded.images))
                    paths += [where[i] for i in np.flatnonzero(decoded.ok).tolist()]
                bar.update(len(where))
        return self._result(paths, scored, threshold, skipped, converted)

    def evaluate(self, data: str | os.PathLike, known: Iterable[str] | str | None = None,
                 unknown: Iterable[str] | str | None = None, *, batch_size: int = 256, progress: bool = True) -> dict:
        """:func:`evaluation_report` of this model on a labelled image folder (one sub-folder per class), plus
        skipped files and conversions. ``known`` (default: the model's classes found in ``data``) are scored
        against their class, ``unknown`` (default: every other class folder) must be rejected."""
        images, unknown_class, unknown_names, decoded, listing = load_labelled_folder(
            data, self.class_names, known, unknown, image_size=self.image_size, channels=self.channels,
            progress=progress)
        result = self.predict_arrays(images.images, batch_size=batch_size)
        report = evaluation_report(result.scores, result.best_index, images.labels, self.threshold,
                                   self.class_names, unknown_class, unknown_names)
        return {"data": str(data), **report, "converted": dict(decoded.converted),
                "skipped": [{"path": s.path, "reason": s.reason} for s in (*listing.skipped, *decoded.skipped)]}


def evaluation_report(scores: np.ndarray, best: np.ndarray, labels: np.ndarray, threshold: float,
                      class_names: Sequence[str], unknown_class: np.ndarray, unknown_names: Sequence[str]) -> dict:
    """Open-set metrics at ``threshold`` for labelled images, JSON-ready: ``scores``, ``best``: (N,) open-set
    scores and best known class (argmin of Eq. 11); ``labels``: (N,) 0..K-1 known, -1 unknown;
    ``unknown_class``: (N,) index into ``unknown_names`` (any value for knowns). Returns counts, closed-set
    ``accuracy`` and ``known_acceptance`` (share of knowns with score < threshold); with unknowns also
    ``unknown_rejection`` (share with score >= threshold), ``auroc`` and the rest of
    :func:`classanchor.metrics.open_set_report`; per-class shares (``per_known_class``, ``per_unknown_class``)."""
    k = len(class_names)
    accepted, known, unknown = scores < threshold, labels >= 0, labels < 0
    out: dict[str, Any] = {"threshold": float(threshold), "n_known": int(known.sum()),
                           "n_unknown": int(unknown.sum()), "class_names": list(class_names),
                           "unknown_names": list(unknown_names)}
    if known.any() and unknown.any():
        report = open_set_report(scores, best, labels, threshold, classes=np.where(unknown, unknown_class, 0),
                                 num_classes=k)
        confusion = report.pop("unknown_confusion")
        report["unknown_confusion"] = {"rows": [unknown_names[i] for i in confusion["classes"]],
                                       "columns": list(class_names), "counts": confusion["counts"]}
        report["unknown_rejection"] = report["unknown_recall"]
        out.update(report)
    elif known.any():
        out["accuracy"] = closed_set_accuracy(best[known], labels[known])
        out["known_acceptance"] = float(accepted[known].mean())
    elif unknown.any():
        out["unknown_rejection"] = float((~accepted[unknown]).mean())
    per_known = np.bincount(labels[known], minlength=k)
    accepted_known = np.bincount(labels[known & accepted], minlength=k)
    right = np.bincount(labels[known & (best == labels)], minlength=k)
    out["per_known_class"] = {n: {"n": int(c), "accepted": float(a / c), "accuracy": float(r / c)}
                              for n, c, a, r in zip(class_names, per_known, accepted_known, right) if c}
    per_unknown = np.bincount(unknown_class[unknown], minlength=len(unknown_names))
    rejected = np.bincount(unknown_class[unknown & ~accepted], minlength=len(unknown_names))
    out["per_unknown_class"] = {n: {"n": int(c), "rejected": float(r / c)}
                                for n, c, r in zip(unknown_names, per_unknown, rejected) if c}
    return out


def _is_pil(obj) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "mode")


def _as_nhwc(array: np.ndarray) -> np.ndarray:
    """(H, W) / (H, W, C) / (N, H, W) / (N, H, W, C) / (N, C, H, W) -> (N, H, W, C)."""
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        array = array[..., None]  # grey: (H, W) or (N, H, W)
    if array.ndim == 3:
        array = array[None]  # one image
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # (N, C, H, W)
    if array.ndim == 4 and array.shape[-1] in (1, 3, 4):
        return array
    raise ValueError(f"cannot read images of shape {array.shape}; pass (H, W), (H, W, C), (N, H, W) or "
                     "(N, H, W, C) with C = 1, 3 or 4.")
