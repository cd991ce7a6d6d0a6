"""Open-set detectors on logits, behind one protocol: ``fit(train_logits, train_labels) -> self``,
``score(logits)`` (N,) with higher = more unknown, ``predict(logits)`` (N,) known class indices.

>>> import torch
>>> from classanchor.detectors import make_detector
>>> train, labels = torch.tensor([[9.0, 1.0], [8.0, 0.0], [0.0, 9.0], [1.0, 8.0]]), torch.tensor([0, 0, 1, 1])
>>> det = make_detector("class_mean").fit(train, labels)
>>> det.predict(torch.tensor([[8.5, 0.5]])), det.score(torch.tensor([[8.5, 0.5]]))
(tensor([0]), tensor([0.]))

Registry names: ``cac`` (CAC rejection score, Algorithm 1), ``msp`` (the paper's "SoftMax"; alias
``softmax``), ``max_logit``, ``energy``, ``openmax`` (Bendale & Boult 2016), ``class_mean`` (distance to
class means of a cross-entropy network, Section 5.1).
"""

from __future__ import annotations

from .base import Detector, NotFittedError
from .distance import CACDetector, ClassMeanDetector
from .logit import EnergyDetector, MaxLogitDetector, MSPDetector
from .openmax import OpenMaxDetector, SmallTailWarning
from .weibull import WeibullTail, fit_weibull, fit_weibull_tail, weibull_cdf

__all__ = [
    "DETECTORS",
    "CACDetector",
    "ClassMeanDetector",
    "Detector",
    "EnergyDetector",
    "MSPDetector",
    "MaxLogitDetector",
    "NotFittedError",
    "OpenMaxDetector",
    "SmallTailWarning",
    "WeibullTail",
    "fit_weibull",
    "fit_weibull_tail",
    "make_detector",
    "weibull_cdf",
]

DETECTORS: dict[str, type[Detector]] = {
    "cac": CACDetector,
    "msp": MSPDetector,
    "max_logit": MaxLogitDetector,
    "energy": EnergyDetector,
    "openmax": OpenMaxDetector,
    "class_mean": ClassMeanDetector,
}
_ALIASES = {"softmax": "msp"}


def make_detector(name: str, **kwargs) -> Detector:
    """A new, unfitted detector by registry name; ``kwargs`` go to its constructor.

    >>> make_detector("openmax", tail_size=20, alpha_rank=10)
    OpenMaxDetector(tail_size=20, alpha_rank=10, distance='euclidean', translate_amount=1.0)
    """
    key = _ALIASES.get(name, name)
    if key not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    return DETECTORS[key](**kwargs)
