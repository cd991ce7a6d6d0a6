"""Detectors without a state: the post-hoc scores of a cross-entropy network (``classanchor.scores``).

All three predict ``argmax_k z_k`` and need no ``fit`` (calling it only checks the inputs and records K).
"""

from __future__ import annotations

import torch

from ..scores import energy_score, max_logit_score, msp_score
from .base import Detector

__all__ = ["EnergyDetector", "MSPDetector", "MaxLogitDetector"]


class MSPDetector(Detector):
    """Maximum softmax probability, the paper's "SoftMax" baseline: score ``-max_k softmax(z)_k``.

    >>> MSPDetector().score(torch.tensor([[4.0, 0.0], [1.0, 1.0]]))
    tensor([-0.9820, -0.5000])
    """

    name = "msp"

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return msp_score(logits)


class MaxLogitDetector(Detector):
    """Maximum logit (Vaze et al. 2022): score ``-max_k z_k``."""

    name = "max_logit"

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return max_logit_score(logits)


class EnergyDetector(Detector):
    """Free energy (Liu et al. 2020): score ``-T logsumexp(z / T)``; ``temperature`` T > 0 (default 1)."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return energy_score(logits, self.temperature)

    def _params(self) -> dict:
        return {"temperature": self.temperature}
