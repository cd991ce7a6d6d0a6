"""The distance layer of a CAC network (paper Section 3.1, Eqs. 1-5) and anchor re-fitting (Section 3.3).

Conventions used everywhere in the library: ``K`` known classes, logits ``z`` of shape (B, K),
anchors ``C`` of shape (K, K) with one anchor per row, distances ``d`` of shape (B, K).
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import OpenSetInputError, check_batch, check_labels

__all__ = ["AnchorHead", "anchor_distances", "class_anchors", "fit_anchors"]


def class_anchors(num_classes: int, anchor_magnitude: float = 10.0) -> torch.Tensor:
    """Training anchors of Eqs. 3-5: ``C_i = alpha * e_i``, i.e. ``alpha * I`` of shape (K, K).

    ``anchor_magnitude`` is the paper's alpha (default 10, Section 4.1).
    """
    if num_classes < 2:
        raise OpenSetInputError(f"an open-set classifier needs at least 2 known classes, got {num_classes}.")
    if not anchor_magnitude > 0:
        raise OpenSetInputError(f"anchor_magnitude (the paper's alpha) must be > 0, got {anchor_magnitude}.")
    return anchor_magnitude * torch.eye(num_classes)


def anchor_distances(logits: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``d_ij = ||z_i - C_j||_2`` (Euclidean, not squared).

    Args:
        logits: (B, K) logit vectors ``z = f(x)``.
        anchors: (K, K) anchors, one per row.
    Returns:
        (B, K) distances. Computed from explicit differences (not the ``|a|^2 - 2ab + |b|^2`` expansion,
        which cancels badly in float32), and with the gradient defined as 0 where a logit sits exactly on
        an anchor (``torch.linalg.vector_norm`` masks the 0/0 there), so training never sees a NaN.

    Example:
        >>> anchor_distances(torch.tensor([[10.0, 0.0]]), 10 * torch.eye(2))
        tensor([[ 0.0000, 14.1421]])
    """
    return torch.linalg.vector_norm(logits.unsqueeze(1) - anchors.unsqueeze(0), dim=-1)


class AnchorHead(nn.Module):
    """Distance layer ``e(z, C)`` of Eq. 2 with the anchors ``C`` as a non-trainable buffer.

    The anchors start at ``anchor_magnitude * I`` (Eqs. 3-5) and travel with ``state_dict()``; after
    training they are replaced by the class means of correctly classified training logits
    (:func:`fit_anchors`, Algorithm 1 lines 1-3). Any backbone that outputs K logits can carry this head.

    Shapes: ``forward(logits: (B, K)) -> distances (B, K)``.
    """

    anchors: torch.Tensor

    def __init__(self, num_classes: int, anchor_magnitude: float = 10.0) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.anchor_magnitude = float(anchor_magnitude)
        self.register_buffer("anchors", class_anchors(self.num_classes, self.anchor_magnitude))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise OpenSetInputError(
                f"AnchorHead expects logits of shape (batch, {self.num_classes}), got {tuple(logits.shape)}; "
                f"the backbone must output one logit per known class."
            )
        return anchor_distances(logits, self.anchors)

    def set_anchors(self, anchors: torch.Tensor) -> None:
        """Replace the anchors (e.g. with the re-fitted class means); shape must stay (K, K)."""
        expected = (self.num_classes, self.num_classes)
        if tuple(anchors.shape) != expected:
            raise OpenSetInputError(
                f"anchors must have shape {expected} (one {self.num_classes}-d anchor per known class), "
                f"got {tuple(anchors.shape)}."
            )
        if not bool(torch.isfinite(anchors).all()):
            raise OpenSetInputError("anchors contain NaN or infinite values; re-fit them on finite logits.")
        self.anchors.copy_(anchors.to(self.anchors))

    def reset_anchors(self) -> None:
        """Restore the training anchors ``anchor_magnitude * I``."""
        self.set_anchors(class_anchors(self.num_classes, self.anchor_magnitude))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, anchor_magnitude={self.anchor_magnitude}"


def fit_anchors(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, *, empty_class: str = "error"
) -> torch.Tensor:
    """Algorithm 1, lines 1-3: anchor ``C_k`` = mean logit of the correctly classified training samples of k.

    A training sample counts as correctly classified when its *largest logit* is its label (Appendix A.2).

    Args:
        logits: (N, K) training logits (no augmentation; the caller may append flipped images).
        labels: (N,) known labels in 0..K-1.
        num_classes: K.
        empty_class: what to do for a class with no correctly classified sample. ``"error"`` (default)
            raises; ``"all_samples"`` uses the mean of all of that class's samples instead (documented
            fallback for badly trained networks). A class with no sample at all always raises.
    Returns:
        (K, K) anchors, one row per class, in the dtype of ``logits``.
    """
    check_batch(logits, "logits", width=num_classes)
    check_labels(labels, logits.shape[0], num_classes)
    if empty_class not in ("error", "all_samples"):
        raise OpenSetInputError(f"empty_class must be 'error' or 'all_samples', got {empty_class!r}.")
    labels = labels.to(logits.device)
    correct = logits.argmax(dim=1) == labels
    sums, counts = _class_sums(logits[correct], labels[correct], num_classes)
    missing = counts == 0
    if bool(missing.any()):
        missing_ids = missing.nonzero().flatten().tolist()
        if empty_class == "error":
            raise OpenSetInputError(
                f"classes {missing_ids} have no correctly classified training sample, so their anchors "
                "(Algorithm 1) are undefined; train longer, or pass empty_class='all_samples' to use the "
                "mean of all of their samples."
            )
        all_sums, all_counts = _class_sums(logits, labels, num_classes)
        if bool((all_counts[missing] == 0).any()):
            absent = [k for k in missing_ids if int(all_counts[k]) == 0]
            raise OpenSetInputError(f"classes {absent} have no training samples at all; cannot fit anchors.")
        sums[missing], counts[missing] = all_sums[missing], all_counts[missing]
    return sums / counts.unsqueeze(1).to(sums.dtype)


def _class_sums(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    sums = torch.zeros(num_classes, logits.shape[1], dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, labels, logits)
    counts = torch.bincount(labels, minlength=num_classes)
    return sums, counts
