"""OpenMax (Bendale & Boult, "Towards Open Set Deep Networks", CVPR 2016), on logits, without libMR.

Fit (the paper's Algorithm 1): per class k, the mean activation vector ``mu_k`` (MAV) of the correctly
classified training logits (``argmax z = label``), and a Weibull model (:mod:`.weibull`, libMR's
``FitHigh``) of the ``tail_size`` largest distances of those logits to ``mu_k``.

Recalibration (the paper's Algorithm 2), for a logit vector ``v`` (N, K): rank the classes by activation
(rank 1 = largest); for the ``alpha_rank`` top classes ``w_i = 1 - (alpha - r_i + 1)/alpha * CDF_i(dist(v, mu_i))``,
``w_i = 1`` for the others; ``v'_i = v_i w_i`` and the unknown activation ``v'_0 = sum_i v_i (1 - w_i)``;
OpenMax probabilities ``softmax([v'_0, v'_1, ..., v'_K])``.

Conventions chosen here: the open-set score is the unknown probability ``P(unknown) = softmax(...)_0``
(higher = more unknown); the prediction is the most probable *known* class, ``argmax_i v'_i``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._checks import OpenSetInputError
from .base import Detector
from .weibull import LIBMR_TRANSLATE_AMOUNT, fit_weibull_tail, weibull_cdf

__all__ = ["OpenMaxDetector", "SmallTailWarning", "openmax_distances"]

MIN_TAIL = 3  # fewest correctly classified training samples a class needs for its Weibull fit
DISTANCES = ("euclidean", "eucos")


class SmallTailWarning(UserWarning):
    """A class had fewer correctly classified training samples than ``tail_size``; all of them were used."""


def openmax_distances(logits: torch.Tensor, means: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Distances of each logit vector to each MAV, (N, K) x (K, K) -> (N, K).

    ``"euclidean"``: ``||v - mu_k||_2``. ``"eucos"`` (the OpenMax code's default):
    ``||v - mu_k||_2 / 200 + (1 - cos(v, mu_k))``.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    means = means.to(device=logits.device, dtype=logits.dtype)
    euclid = torch.cdist(logits, means, compute_mode="donot_use_mm_for_euclid_dist")
    if distance == "euclidean":
        return euclid
    norms = logits.norm(dim=1, keepdim=True) * means.norm(dim=1).unsqueeze(0)
    cosine = (logits @ means.T) / norms.clamp_min(torch.finfo(logits.dtype).tiny)
    return euclid / 200.0 + (1.0 - cosine)


class OpenMaxDetector(Detector):
    """OpenMax on logits (see the module docstring for the equations).

    Args:
        tail_size: largest distances per class for the Weibull fit (OpenMax paper: 20).
        alpha_rank: number of top classes recalibrated (OpenMax paper: 10; clipped to K).
        distance: ``"euclidean"`` (default) or ``"eucos"`` (euclidean / 200 + cosine distance).
        translate_amount: libMR's translation of the tail before the fit: its smallest distance is moved
            to this value (default 1, libmr 0.1.9's default, see :mod:`.weibull`); ``None`` fits the raw
            distances.
    Fallback: a class with ``3 <= n < tail_size`` correctly classified training samples is fitted on all
    ``n`` distances (a :class:`SmallTailWarning` says so; ``tail_sizes_`` records it); ``n < 3`` raises
    :class:`~classanchor.OpenSetInputError` naming the class.

    Attributes (after fit):
        means_: (K, K) float64 MAVs. shapes_, scales_, shifts_: (K,) float64 Weibull parameters.
        tail_sizes_: (K,) number of distances each fit used.

    Example:
        >>> det = OpenMaxDetector(tail_size=20).fit(train_logits, train_labels)  # doctest: +SKIP
        >>> p_unknown = det.score(test_logits)                                       # doctest: +SKIP
    """

    name = "openmax"
    requires_fit = True

    def __init__(self, tail_size: int = 20, alpha_rank: int = 10, distance: str = "euclidean",
                 translate_amount: float | None = LIBMR_TRANSLATE_AMOUNT) -> None:
        super().__init__()
        if int(tail_size) != tail_size or tail_size < MIN_TAIL:
            raise ValueError(f"tail_size must be an integer >= {MIN_TAIL}, got {tail_size}.")
        if int(alpha_rank) != alpha_rank or alpha_rank < 1:
            raise ValueError(f"alpha_rank must be an integer >= 1, got {alpha_rank}.")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
        self.tail_size = int(tail_size)
        self.alpha_rank = int(alpha_rank)
        self.distance = distance
        self.translate_amount = translate_amount
        self.means_: torch.Tensor | None = None

    def _fit(self, train_logits: torch.Tensor, train_labels: torch.Tensor) -> None:
        num_classes = train_logits.shape[1]
        correct = train_logits.argmax(dim=1) == train_labels
        logits, labels = train_logits[correct].double(), train_labels[correct]  # float64 MAVs and fits
        counts = torch.bincount(labels, minlength=num_classes).cpu()
        too_few = (counts < MIN_TAIL).nonzero().flatten().tolist()
        if too_few:
            raise OpenSetInputError(
                f"OpenMax needs at least {MIN_TAIL} correctly classified training samples per class for its "
                f"Weibull fit; classes {too_few} have {[int(counts[k]) for k in too_few]}. Train longer or "
                "pass more training logits."
            )
        means = torch.zeros(num_classes, num_classes, dtype=logits.dtype, device=logits.device)
        means.index_add_(0, labels, logits)
        means /= counts.to(means).unsqueeze(1)
        # each sample's distance to its own class MAV
        own = openmax_distances(logits, means, self.distance).gather(1, labels.unsqueeze(1)).squeeze(1)
        own, labels_np = own.double().cpu().numpy(), labels.cpu().numpy()
        small = [k for k in range(num_classes) if counts[k] < self.tail_size]
        if small:
            warnings.warn(
                f"OpenMax: classes {small} have fewer than tail_size={self.tail_size} correctly classified "
                f"training samples ({[int(counts[k]) for k in small]}); their Weibull models use all of them.",
                SmallTailWarning, stacklevel=3,
            )
        fits = []
        for k in range(num_classes):
            try:
                fits.append(fit_weibull_tail(own[labels_np == k], self.tail_size, self.translate_amount))
            except ValueError as err:
                raise OpenSetInputError(f"OpenMax: the Weibull fit of class {k} failed: {err}") from err
        self.means_ = means
        self.shapes_ = np.array([f.shape for f in fits])
        self.scales_ = np.array([f.scale for f in fits])
        self.shifts_ = np.array([f.shift for f in fits])
        self.tail_sizes_ = np.array([f.tail_size for f in fits])

    def recalibrated(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recalibrated activations: ``(v'_0 (N,), v' (N, K))``, float64."""
        self._check(logits)
        return self._recalibrate(logits)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """OpenMax probabilities (N, K + 1), float64: column 0 = unknown, column 1 + k = known class k."""
        self._check(logits)
        return self._probabilities(logits)

    def _recalibrate(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = logits.double()
        num_classes = v.shape[1]
        alpha = min(self.alpha_rank, num_classes)
        order = v.argsort(dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(num_classes, device=v.device).expand_as(order))  # 0 = largest
        # (alpha - r + 1)/alpha for the 1-based rank r = ranks + 1, zero beyond the top alpha
        rank_weight = ((alpha - ranks) / alpha).clamp_min(0.0).double()
        dist = openmax_distances(v, self.means_, self.distance)
        w = 1.0 - rank_weight * weibull_cdf(dist, self.shapes_, self.scales_, self.shifts_)
        return (v * (1.0 - w)).sum(dim=1), v * w

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        unknown, known = self._recalibrate(logits)
        return torch.softmax(torch.cat([unknown.unsqueeze(1), known], dim=1), dim=1)

    def _decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self._probabilities(logits)
        return probs[:, 1:].argmax(dim=1), probs[:, 0].to(logits.dtype)

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return self._decide(logits)[1]

    def _predict(self, logits: torch.Tensor) -> torch.Tensor:
        return self._decide(logits)[0]

    def _params(self) -> dict:
        return {"tail_size": self.tail_size, "alpha_rank": self.alpha_rank, "distance": self.distance,
                "translate_amount": self.translate_amount}
