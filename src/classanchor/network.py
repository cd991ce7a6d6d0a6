"""A backbone (image -> K logits) carrying an AnchorHead (logits -> K distances), paper Section 3.1."""

from __future__ import annotations

import torch
from torch import nn

from .heads import AnchorHead, fit_anchors
from .scores import cac_decision

__all__ = ["CACNet"]


class CACNet(nn.Module):
    """``z = f(x)`` (Eq. 1) by any backbone, and ``d = e(z, C)`` (Eq. 2) by :class:`AnchorHead`.

    ``forward(x)`` returns the (B, K) logits so that the same network serves CAC and the
    cross-entropy baseline; ``distances(x)`` returns (B, K) distances to the current anchors.

    Example:
        >>> net = CACNet(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), num_classes=3)
        >>> net.distances(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, backbone: nn.Module, num_classes: int, anchor_magnitude: float = 10.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = AnchorHead(num_classes, anchor_magnitude)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def refit_anchors(self, train_logits: torch.Tensor, train_labels: torch.Tensor, **kw) -> torch.Tensor:
        """Algorithm 1 lines 1-3 on precomputed training logits; sets and returns the (K, K) anchors."""
        anchors = fit_anchors(train_logits, train_labels, self.num_classes, **kw)
        self.head.set_anchors(anchors)
        return anchors

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, threshold: float = float("inf")) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1 lines 5-14: (labels (B,) with -1 = unknown, open-set scores (B,))."""
        prediction, score = cac_decision(self.distances(x))
        return torch.where(score < threshold, prediction, torch.full_like(prediction, -1)), score
