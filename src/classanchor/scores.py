"""Open-set scores computed from a network's outputs. Convention: higher score = more likely unknown.

The CAC scores follow the test procedure of the paper (Section 3.3, Eqs. 9-11, Algorithm 1 lines 5-9);
the others are the usual post-hoc scores of a cross-entropy network, for comparison.
All functions are pure and vectorised: (B, K) in, (B,) or (B, K) out, on the input's device.
"""

from __future__ import annotations

import torch

__all__ = [
    "softmin_confidences",
    "rejection_scores",
    "cac_decision",
    "msp_score",
    "max_logit_score",
    "energy_score",
]


def softmin_confidences(distances: torch.Tensor) -> torch.Tensor:
    """Eqs. 9-10: ``c_i = exp(-d_i) / sum_k exp(-d_k)``; (B, K) -> (B, K), rows sum to 1.

    Only differences of distances matter: [1, 4, 5] and [101, 104, 105] both give about
    [0.94, 0.04, 0.02] (the paper's example).
    """
    return torch.softmax(-distances, dim=1)


def rejection_scores(distances: torch.Tensor) -> torch.Tensor:
    """Eq. 11: ``s = (1 - c) * d`` elementwise, with ``c`` the SoftMin confidences; (B, K) -> (B, K)."""
    return (1.0 - softmin_confidences(distances)) * distances


def cac_decision(distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1, lines 7-9: predicted class ``argmin s`` and open-set score ``min s``.

    Args:
        distances: (B, K) distances to the re-fitted anchors.
    Returns:
        (prediction (B,) int64, score (B,)) where a larger score means "more unknown".
    """
    score, prediction = rejection_scores(distances).min(dim=1)
    return prediction, score


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017), negated: ``-max_k softmax(z)_k``; (B,)."""
    return -torch.softmax(logits, dim=1).amax(dim=1)


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    """Maximum logit (Vaze et al. 2022), negated: ``-max_k z_k``; (B,)."""
    return -logits.amax(dim=1)


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy (Liu et al. 2020): ``-T * logsumexp(z / T)``; (B,). Higher = more unknown."""
    return -temperature * torch.logsumexp(logits / temperature, dim=1)
