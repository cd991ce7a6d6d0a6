"""Open-set metrics. Conventions: label -1 = unknown; a higher score = more likely unknown.

AUROC uses scikit-learn's ``roc_auc_score`` (a mature, tie-correct implementation) rather than a
hand-written one; everything else here is vectorised numpy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

__all__ = ["closed_set_accuracy", "auroc", "openness", "calibrate_threshold", "to_numpy"]


def to_numpy(values) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def closed_set_accuracy(predictions, labels) -> float:
    """Share of known test samples whose predicted class equals the label (Table 3 of the paper).

    Args:
        predictions, labels: (N,) class indices of known samples; unknown samples (label -1) must be
            excluded by the caller.
    """
    predictions, labels = to_numpy(predictions), to_numpy(labels)
    if predictions.shape != labels.shape or predictions.ndim != 1:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal 1-d shapes.")
    if labels.size == 0:
        raise ValueError("no known samples to compute the closed-set accuracy on.")
    if (labels < 0).any():
        raise ValueError("labels contain -1 (unknown); closed-set accuracy is measured on known samples only.")
    return float((predictions == labels).mean())


def auroc(scores, is_unknown) -> float:
    """Area under the ROC curve of an open-set score, unknown = positive class (Section 4, Metrics).

    Args:
        scores: (N,) open-set scores, higher = more unknown.
        is_unknown: (N,) booleans (or 0/1), True for samples of unknown classes.
    """
    scores = to_numpy(scores).astype(np.float64)
    is_unknown = to_numpy(is_unknown).astype(bool)
    if scores.shape != is_unknown.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and is_unknown {is_unknown.shape} must be equal 1-d shapes.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite; AUROC is undefined.")
    if is_unknown.all() or not is_unknown.any():
        raise ValueError("AUROC needs both known and unknown samples; got only one kind.")
    return float(roc_auc_score(is_unknown, scores))


def openness(n_train: int, n_test: int, n_target: int) -> float:
    """Eq. 12 (Scheirer et al. 2013): ``O = 1 - sqrt(2 * N_train / (N_test + N_target))``.

    ``N_train``: classes seen in training; ``N_test``: all classes at test time (known + unknown);
    ``N_target``: classes to be recognised at test time. 6 known / 4 unknown gives 0.1339.
    """
    if min(n_train, n_test, n_target) <= 0:
        raise ValueError(f"class counts must be positive, got {n_train}, {n_test}, {n_target}.")
    return 1.0 - math.sqrt(2.0 * n_train / (n_test + n_target))


def calibrate_threshold(known_scores, accept_rate: float = 0.95) -> float:
    """Threshold theta on an open-set score that accepts ``accept_rate`` of known validation samples.

    A sample is accepted as known when ``score < theta`` (Algorithm 1, line 10). With ``n`` scores and
    ``k = ceil(accept_rate * n)``, theta is the smallest float above the k-th smallest score, so exactly
    the ``k`` lowest scores (and any ties with the k-th) are accepted on the calibration data.
    """
    scores = to_numpy(known_scores).astype(np.float64).ravel()
    if scores.size == 0:
        raise ValueError("no known scores to calibrate the threshold on.")
    if not 0 < accept_rate <= 1:
        raise ValueError(f"accept_rate must be in (0, 1], got {accept_rate}.")
    if not np.isfinite(scores).all():
        raise ValueError("known scores contain NaN or infinite values; cannot calibrate a threshold.")
    ordered = np.sort(scores)
    k = math.ceil(accept_rate * scores.size)  # accept the k smallest scores
    boundary = ordered[k - 1]
    return float(np.nextafter(boundary, np.inf))
