"""Distance-based detectors in logit space: CAC's test procedure and the post-hoc class-mean distance.

Both learn the class means ``mu_k`` of the correctly classified training logits (Algorithm 1 lines 1-3;
:func:`classanchor.heads.fit_anchors`) and measure Euclidean distances ``d_k = ||z - mu_k||_2`` (Eq. 2).
"""

from __future__ import annotations

import torch

from ..heads import anchor_distances, fit_anchors
from ..scores import cac_decision
from .base import Detector

__all__ = ["CACDetector", "ClassMeanDetector"]


class _MeansDetector(Detector):
    requires_fit = True

    def __init__(self, empty_class: str = "error") -> None:
        super().__init__()
        if empty_class not in ("error", "all_samples"):
            raise ValueError(f"empty_class must be 'error' or 'all_samples', got {empty_class!r}.")
        self.empty_class = empty_class
        self.means_: torch.Tensor | None = None

    def _fit(self, train_logits: torch.Tensor, train_labels: torch.Tensor) -> None:
        self.means_ = fit_anchors(train_logits, train_labels, train_logits.shape[1], empty_class=self.empty_class)

    def distances(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) Euclidean distances to the fitted class means (Eq. 2)."""
        self._check(logits)
        return self._distances(logits)

    def _distances(self, logits: torch.Tensor) -> torch.Tensor:
        return anchor_distances(logits, self.means_.to(device=logits.device, dtype=logits.dtype))

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return self._decide(logits)[1]

    def _predict(self, logits: torch.Tensor) -> torch.Tensor:
        return self._decide(logits)[0]

    def _params(self) -> dict:
        return {"empty_class": self.empty_class}


class CACDetector(_MeansDetector):
    """CAC's test procedure (Section 3.3, Algorithm 1): anchors re-fitted as the class means of correctly
    classified training logits, rejection scores ``s = (1 - softmin(d)) * d`` (Eq. 11); score ``min_k s_k``,
    prediction ``argmin_k s_k``.

    Args:
        empty_class: passed to :func:`~classanchor.heads.fit_anchors` (``"error"`` or ``"all_samples"``).
    Attributes:
        means_: (K, K) re-fitted anchors, one per row.
    """

    name = "cac"

    def _decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cac_decision(self._distances(logits))


class ClassMeanDetector(_MeansDetector):
    """Distance to the class means of a cross-entropy network, applied post hoc (the "distance-based
    approaches" the paper compares against, Section 5.1): score ``min_k ||z - mu_k||_2``.

    Args:
        prediction: ``"nearest_mean"`` (default; ``argmin_k d_k``, the class whose mean gave the score) or
            ``"argmax"`` (the network's own prediction ``argmax_k z_k``, same accuracy as softmax).
        empty_class: as for :class:`CACDetector`.
    Attributes:
        means_: (K, K) class means, one per row.
    """

    name = "class_mean"

    def __init__(self, prediction: str = "nearest_mean", empty_class: str = "error") -> None:
        super().__init__(empty_class)
        if prediction not in ("nearest_mean", "argmax"):
            raise ValueError(f"prediction must be 'nearest_mean' or 'argmax', got {prediction!r}.")
        self.prediction = prediction

    def _decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score, nearest = self._distances(logits).min(dim=1)
        return (nearest if self.prediction == "nearest_mean" else logits.argmax(dim=1)), score

    def _params(self) -> dict:
        return {"prediction": self.prediction, "empty_class": self.empty_class}
