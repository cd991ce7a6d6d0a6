"""The Class Anchor Clustering loss (paper Section 3.2, Eqs. 6-8) and its ablation variants (Fig. 3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import OpenSetInputError, check_batch, check_labels

__all__ = ["LossWeights", "LOSS_VARIANTS", "cac_loss", "cac_loss_terms", "CACLoss"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the two CAC terms: ``tuplet * L_T + anchor * L_A`` (Eq. 8 with ``anchor`` = lambda).

    The paper uses ``tuplet=1, anchor=0.1`` (Section 4.1); its ablation (Fig. 3) trains each term alone.
    """

    tuplet: float = 1.0
    anchor: float = 0.1

    def __post_init__(self) -> None:
        if self.tuplet < 0 or self.anchor < 0 or self.tuplet + self.anchor == 0:
            raise OpenSetInputError(
                f"loss weights must be >= 0 and not both 0, got tuplet={self.tuplet}, anchor={self.anchor}."
            )


#: The variants of the paper's ablation (Fig. 3): full CAC, the Anchor term alone, the Tuplet term alone.
LOSS_VARIANTS: dict[str, LossWeights] = {
    "cac": LossWeights(tuplet=1.0, anchor=0.1),
    "anchor": LossWeights(tuplet=0.0, anchor=1.0),
    "tuplet": LossWeights(tuplet=1.0, anchor=0.0),
}


def cac_loss_terms(
    distances: torch.Tensor, labels: torch.Tensor, *, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample Tuplet (Eq. 7) and Anchor (Eq. 6) terms.

    ``L_T = log(1 + sum_{j != y} exp(d_y - d_j))``. Since the ``j = y`` summand would be ``exp(0) = 1``,
    this equals ``logsumexp_j(d_y - d_j) = cross_entropy(-d, y)``, which PyTorch evaluates with the
    max-shift, so distances in the hundreds or thousands never overflow.
    ``L_A = d_y``.

    Args:
        distances: (B, K) distances to the anchors (Eq. 2).
        labels: (B,) known labels in 0..K-1.
        validate: check shapes, label range and finiteness (one host sync); the training loop turns
            this off and validates the labels once per data set instead.
    Returns:
        (tuplet, anchor), each of shape (B,).
    """
    if validate:
        check_batch(distances, "distances")
        check_labels(labels, distances.shape[0], distances.shape[1])
    labels = labels.to(distances.device)
    tuplet = F.cross_entropy(-distances, labels, reduction="none")
    anchor = distances.gather(1, labels.unsqueeze(1)).squeeze(1)
    return tuplet, anchor


def cac_loss(
    distances: torch.Tensor,
    labels: torch.Tensor,
    anchor_weight: float = 0.1,
    tuplet_weight: float = 1.0,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Eq. 8 averaged over the batch: ``mean(tuplet_weight * L_T + anchor_weight * L_A)``.

    ``anchor_weight`` is the paper's lambda (default 0.1). ``LOSS_VARIANTS`` holds the ablation weights.

    Example:
        >>> d = torch.tensor([[1.0, 4.0, 5.0]])
        >>> round(float(cac_loss(d, torch.tensor([0]))), 4)  # log(1 + e^-3 + e^-4) + 0.1 * 1
        0.1659
    """
    weights = LossWeights(tuplet=tuplet_weight, anchor=anchor_weight)
    tuplet, anchor = cac_loss_terms(distances, labels, validate=validate)
    return (weights.tuplet * tuplet + weights.anchor * anchor).mean()


class CACLoss(nn.Module):
    """Module form of :func:`cac_loss`: ``CACLoss(anchor_weight=0.1)(distances, labels) -> scalar``."""

    def __init__(self, anchor_weight: float = 0.1, tuplet_weight: float = 1.0) -> None:
        super().__init__()
        self.weights = LossWeights(tuplet=tuplet_weight, anchor=anchor_weight)

    @classmethod
    def variant(cls, name: str) -> "CACLoss":
        """One of the ablation variants in :data:`LOSS_VARIANTS` ('cac', 'anchor', 'tuplet')."""
        if name not in LOSS_VARIANTS:
            raise OpenSetInputError(f"unknown loss variant {name!r}; choose one of {sorted(LOSS_VARIANTS)}.")
        w = LOSS_VARIANTS[name]
        return cls(anchor_weight=w.anchor, tuplet_weight=w.tuplet)

    def forward(self, distances: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cac_loss(distances, labels, self.weights.anchor, self.weights.tuplet)

    def extra_repr(self) -> str:
        return f"tuplet_weight={self.weights.tuplet}, anchor_weight={self.weights.anchor}"
