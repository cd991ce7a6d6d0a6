"""The one protocol every open-set detector follows: ``fit(train_logits, train_labels) -> self``, then
``score(logits)`` (higher = more unknown) and ``predict(logits)`` (a known class index).

Detectors work on logits, so the backbone runs once and any number of detectors share its outputs
(the design of pytorch-ood's detectors). Shapes: logits (N, K) floating, labels (N,) int64 in 0..K-1.
"""

from __future__ import annotations

import torch

from .._checks import check_batch, check_labels

__all__ = ["Detector", "NotFittedError"]


class NotFittedError(RuntimeError):
    """Raised when a detector that learns from training logits is used before ``fit``."""


class Detector:
    """Base class of the open-set detectors.

    Subclasses implement ``_score`` (and ``_predict`` when the prediction is not ``argmax`` of the logits);
    detectors with a state set ``requires_fit = True`` and implement ``_fit``. The public methods here
    check the inputs and the fitted state once for all detectors.

    Attributes:
        name: the registry name (``classanchor.detectors.DETECTORS``).
        requires_fit: True when ``score``/``predict`` need ``fit`` first.
        num_classes_: K, set by ``fit`` (None before); later logits must have K columns.
    """

    name: str = "detector"
    requires_fit: bool = False

    def __init__(self) -> None:
        self.num_classes_: int | None = None

    # ---- the protocol -------------------------------------------------------------------------------
    def fit(self, train_logits: torch.Tensor, train_labels: torch.Tensor) -> Detector:
        """Learn what the detector needs from known training data; returns ``self``.

        Args:
            train_logits: (N, K) logits of known training samples (no unknowns).
            train_labels: (N,) int labels in 0..K-1.
        For detectors without a state this only checks the inputs and records K.
        """
        check_batch(train_logits, "train_logits")
        check_labels(train_labels, train_logits.shape[0], train_logits.shape[1], "train_labels")
        self._fit(train_logits, train_labels.to(train_logits.device))
        self.num_classes_ = int(train_logits.shape[1])
        return self

    @property
    def is_fitted(self) -> bool:
        """True when the detector can score: it was fitted, or it needs no fitting."""
        return self.num_classes_ is not None or not self.requires_fit

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """Open-set score, (N, K) -> (N,), higher = more likely unknown, on the logits' device."""
        self._check(logits)
        return self._score(logits)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Closed-set prediction, (N, K) -> (N,) int64 known class indices (never -1)."""
        self._check(logits)
        return self._predict(logits)

    def decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predict(logits), score(logits))`` in one call (one pass where the detector allows it)."""
        self._check(logits)
        return self._decide(logits)

    # ---- hooks for subclasses ---------------------------------------------------------------------------
    def _fit(self, train_logits: torch.Tensor, train_labels: torch.Tensor) -> None:
        """No-op: detectors without a state learn nothing."""

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=1)

    def _decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._predict(logits), self._score(logits)

    def _check(self, logits: torch.Tensor) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call .fit(train_logits, train_labels) on the known "
                "training logits before score() or predict()."
            )
        check_batch(logits, "logits", width=self.num_classes_)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict:
        return {}
