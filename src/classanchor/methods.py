"""Training methods as data: which loss, which weights, which checkpoint rule (no copied scripts)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .losses import LOSS_VARIANTS, cac_loss_terms

__all__ = ["Method", "get_method", "METHOD_NAMES", "BatchLoss"]

METHOD_NAMES = ("cac", "anchor", "tuplet", "ce")


@dataclass(frozen=True)
class BatchLoss:
    """Per-batch sums (not means) of the quantities logged each epoch; tensors stay on the device."""

    loss: torch.Tensor  # mean loss of the batch, the one that is back-propagated
    loss_sum: torch.Tensor
    anchor_sum: torch.Tensor
    correct: torch.Tensor


@dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
        name: 'cac' (Eq. 8), 'anchor' (Eq. 6 only), 'tuplet' (Eq. 7 only) or 'ce' (cross-entropy).
        tuplet_weight, anchor_weight: weights of Eq. 7 and Eq. 6 (anchor_weight = the paper's lambda).
        anchor_magnitude: the paper's alpha, the scale of the training anchors ``alpha * I``.
        label_smoothing: cross-entropy only (0 in the paper).
    The checkpoint rule follows the reference code: the CAC family keeps the epoch with the lowest
    validation anchor loss (mean ``d_y``), cross-entropy the one with the highest validation accuracy.
    """

    name: str
    tuplet_weight: float = 1.0
    anchor_weight: float = 0.1
    anchor_magnitude: float = 10.0
    label_smoothing: float = 0.0

    @property
    def uses_anchors(self) -> bool:
        return self.name != "ce"

    @property
    def detector(self) -> str:
        """The method's own open-set score, decided here once: the CAC rejection score (Eq. 11) for the
        anchor-trained family, the maximum softmax probability for cross-entropy (the paper's baseline)."""
        return "cac" if self.uses_anchors else "msp"

    @property
    def checkpoint_metric(self) -> str:
        return "val_anchor_loss" if self.uses_anchors else "val_accuracy"

    @property
    def checkpoint_mode(self) -> str:
        return "min" if self.uses_anchors else "max"

    def batch_loss(self, logits: torch.Tensor, distances: torch.Tensor, labels: torch.Tensor) -> BatchLoss:
        """Loss of one batch. CAC family: Eq. 8 on the distances, accuracy = argmin distance;
        cross-entropy: CE on the logits, accuracy = argmax logit. Inputs (B, K), (B, K), (B,)."""
        if self.uses_anchors:
            tuplet, anchor = cac_loss_terms(distances.float(), labels, validate=False)
            per_sample = self.tuplet_weight * tuplet + self.anchor_weight * anchor
            predicted = distances.argmin(dim=1)
        else:
            per_sample = F.cross_entropy(logits.float(), labels, reduction="none",
                                         label_smoothing=self.label_smoothing)
            anchor = distances.float().gather(1, labels.unsqueeze(1)).squeeze(1)
            predicted = logits.argmax(dim=1)
        return BatchLoss(loss=per_sample.mean(), loss_sum=per_sample.detach().sum(),
                         anchor_sum=anchor.detach().sum(), correct=(predicted == labels).sum())


def get_method(name: str, *, anchor_magnitude: float | None = None,
               anchor_weight: float | None = None) -> Method:
    """A method by name, with optional hyperparameter overrides (for the sweep of the paper's Fig. 2)."""
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}.")
    for label, value in (("anchor_magnitude (the paper's alpha)", anchor_magnitude),
                         ("anchor_weight (the paper's lambda)", anchor_weight)):
        if value is not None and not 0 < float(value) < float("inf"):  # nan fails too
            raise ValueError(f"{label} must be a finite number > 0, got {value}.")
    if anchor_weight is not None and name != "cac":
        raise ValueError("anchor_weight can only be set for method 'cac'.")
    tuplet, anchor = (0.0, 0.0) if name == "ce" else (LOSS_VARIANTS[name].tuplet, LOSS_VARIANTS[name].anchor)
    method = Method(name, tuplet_weight=tuplet, anchor_weight=float(anchor_weight or anchor))
    return method if anchor_magnitude is None else replace(method, anchor_magnitude=float(anchor_magnitude))
