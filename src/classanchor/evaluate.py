"""The evaluation protocol (Algorithm 1 of the paper): logits once, then anchors, scores and metrics.

The network runs once per split; everything after that works on the saved logits (:class:`Logits`),
so any score (CAC, softmax, OpenMax, ...) can be computed later without the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .heads import anchor_distances, fit_anchors
from .metrics import auroc, closed_set_accuracy
from .scores import cac_decision, msp_score
from .train import autocast_for

__all__ = ["Logits", "collect_logits", "evaluate_logits"]


@dataclass
class Logits:
    """Logits of one trained network on the three evaluation sets (all tensors on the CPU, float32).

    Attributes:
        train, train_labels: (N_tr, K), (N_tr,) known training split (plus flipped copies where the
            protocol asks for them) used to re-fit the anchors.
        test, test_labels: (N_te, K), (N_te,) known and unknown test images; label -1 = unknown.
        test_classes: (N_te,) original class index of each test image in its source dataset.
        val, val_labels: (N_va, K), (N_va,) known validation split (to calibrate thresholds); optional.
    """

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    test_classes: torch.Tensor
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None

    @property
    def is_unknown(self) -> torch.Tensor:
        return self.test_labels < 0

    def to_npz(self) -> dict[str, np.ndarray]:
        """The arrays by field name, for ``np.savez``; absent optional fields are left out."""
        return {k: v.numpy() for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_npz(cls, arrays) -> "Logits":
        """Inverse of :meth:`to_npz` (accepts the mapping ``np.load`` returns)."""
        return cls(**{k: torch.from_numpy(np.asarray(arrays[k])) for k in arrays.keys()})


@torch.inference_mode()
def collect_logits(net: torch.nn.Module, loader: Iterable, *, device: torch.device | str, amp: bool = True,
                   hflip: bool = False, channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``net`` in eval mode over ``loader``; returns (N, K) float32 logits and (N,) labels on the CPU.

    ``hflip=True`` feeds every batch mirrored left-right instead (the protocol appends these for
    CIFAR and TinyImageNet when re-fitting anchors).
    """
    device = torch.device(device)
    net.eval()
    outputs, labels = [], []
    for x, y in loader:
        if hflip:
            x = x.flip(-1)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            outputs.append(net(x).float())
        labels.append(y)
    return torch.cat(outputs).cpu(), torch.cat(labels).cpu()


def evaluate_logits(logits: Logits, method_name: str, *, empty_class: str = "error") -> dict:
    """Closed-set accuracy and AUROC of one trial.

    CAC family (Algorithm 1): anchors = class means of correctly classified training logits; on the test
    set ``d`` (Eq. 2), ``s = (1 - softmin(d)) * d`` (Eq. 11), prediction ``argmin s``, score ``min s``.
    Cross-entropy baseline: prediction ``argmax z``, score ``-max softmax(z)``.

    Returns a dict with ``accuracy``, ``auroc`` and, for CAC, the re-fitted ``anchors`` (K x K list).
    """
    known = ~logits.is_unknown
    result: dict = {}
    if method_name == "ce":
        prediction, score = logits.test.argmax(dim=1), msp_score(logits.test)
    else:
        anchors = fit_anchors(logits.train, logits.train_labels, logits.train.shape[1], empty_class=empty_class)
        prediction, score = cac_decision(anchor_distances(logits.test, anchors))
        result["anchors"] = anchors.tolist()
    result["accuracy"] = closed_set_accuracy(prediction[known], logits.test_labels[known])
    result["auroc"] = auroc(score, logits.is_unknown)
    return result
