"""Open-set metrics. Conventions: label -1 = unknown; a higher score = more likely unknown; a sample is
accepted as known when ``score < threshold`` (Algorithm 1, line 10), rejected (predicted -1) otherwise.

AUROC and AUPR use scikit-learn (mature, tie-correct implementations) rather than hand-written ones;
everything else here is vectorised numpy. Inputs may be tensors (any device) or array-likes.

Degenerate inputs: NaN or infinite scores raise ``ValueError`` everywhere; metrics that compare knowns with
unknowns (AUROC, AUPR, FPR@TPR, OSCR) raise ``ValueError`` when only one kind is present. Constant scores
are legal and give the tie-correct values: AUROC 0.5, AUPR = share of positives, FPR@95%TPR = 1,
OSCR area = closed-set accuracy / 2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "OSCRCurve",
    "UnknownConfusion",
    "aupr_in",
    "aupr_out",
    "auroc",
    "calibrate_threshold",
    "closed_set_accuracy",
    "fpr_at_tpr",
    "known_acceptance_rate",
    "open_set_f1",
    "open_set_predictions",
    "open_set_report",
    "openness",
    "oscr",
    "oscr_curve",
    "to_numpy",
    "unknown_confusion",
    "unknown_recall",
]


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
    scores = to_numpy(known_scores).ravel()
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if scores.size == 0:
        raise ValueError("no known scores to calibrate the threshold on.")
    if not 0 < accept_rate <= 1:
        raise ValueError(f"accept_rate must be in (0, 1], got {accept_rate}.")
    if not np.isfinite(scores).all():
        raise ValueError("known scores contain NaN or infinite values; cannot calibrate a threshold.")
    ordered = np.sort(scores)
    k = math.ceil(accept_rate * scores.size)  # accept the k smallest scores
    boundary = ordered[k - 1]
    # The next representable value in the scores' own dtype: a float64 step would round back onto the
    # boundary when the threshold is compared with float32 scores.
    return float(np.nextafter(boundary, np.array(np.inf, dtype=scores.dtype)))


# ---- input checks shared by the open-set metrics ---------------------------------------------------------
def _scores(scores, name: str = "scores") -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().double()  # also covers bfloat16, which numpy cannot hold
    values = to_numpy(scores).astype(np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError(f"{int((~np.isfinite(values)).sum())} {name} are NaN or infinite; the metric is undefined.")
    return values


def _flags(is_unknown, n: int) -> np.ndarray:
    flags = to_numpy(is_unknown)
    if flags.shape != (n,):
        raise ValueError(f"is_unknown must have shape ({n},) like the scores, got {flags.shape}.")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError("is_unknown must be booleans or 0/1 (pass labels < 0, not the labels themselves).")
    return flags.astype(bool)


def _labelled(scores, predictions, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores float64, predictions int64, labels int64), all (N,); predictions are closed-set classes."""
    labels = to_numpy(labels)
    predictions = to_numpy(predictions)
    n = labels.shape[0] if labels.ndim == 1 else -1
    if labels.ndim != 1 or predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal 1-d shapes.")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integer class indices, got dtype {values.dtype}.")
    if (labels < -1).any():
        raise ValueError("labels must be known classes 0..K-1 or -1 (unknown).")
    if (predictions < 0).any():
        raise ValueError("predictions must be closed-set classes 0..K-1; the threshold turns them into -1.")
    values = _scores(scores) if scores is not None else None
    if values is not None and values.shape != (n,):
        raise ValueError(f"scores {values.shape} must match labels {labels.shape}.")
    return values, predictions.astype(np.int64), labels.astype(np.int64)


def _both_kinds(is_unknown: np.ndarray, metric: str) -> None:
    if is_unknown.all() or not is_unknown.any():
        raise ValueError(f"{metric} needs both known and unknown samples; got only one kind.")


def _threshold(threshold) -> float:
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN; calibrate it with calibrate_threshold on known validation scores.")
    return threshold


def _num_classes(predictions: np.ndarray, labels: np.ndarray, num_classes: int | None) -> int:
    seen = int(max(predictions.max(initial=-1), labels.max(initial=-1))) + 1
    if num_classes is None:
        return max(seen, 1)
    if seen > num_classes:
        raise ValueError(f"labels or predictions reach class {seen - 1} but num_classes is {num_classes}.")
    return int(num_classes)


# ---- threshold-free metrics ----------------------------------------------------------------------------
class OSCRCurve(NamedTuple):
    """The open-set classification rate curve: ``ccr`` against ``fpr`` (both ascending), and its area.

    Point ``j`` is what the rule "accept when ``score < thresholds[j]``" gives; ``thresholds[0]`` accepts
    nothing (``fpr = ccr = 0``) and the last one accepts everything (``fpr = 1``, ``ccr`` = accuracy).
    """

    fpr: np.ndarray
    ccr: np.ndarray
    thresholds: np.ndarray
    area: float


def oscr_curve(scores, predictions, labels) -> OSCRCurve:
    """Open-Set Classification Rate curve (Dhamija et al., NeurIPS 2018) and its area.

    For a threshold theta: ``CCR = #{known, score < theta, prediction = label} / #known`` and
    ``FPR = #{unknown, score < theta} / #unknown``. Theta sweeps every gap between distinct scores, so tied
    scores move together (a diagonal segment); the area is the trapezoidal area under the piecewise-linear
    curve, which equals ``P(s_u > s_k, k correct) + P(s_u = s_k, k correct) / 2`` over known/unknown pairs.

    Args:
        scores: (N,) open-set scores, higher = more unknown.
        predictions: (N,) closed-set predicted classes (used for the known samples only).
        labels: (N,) labels, -1 = unknown.
    """
    scores, predictions, labels = _labelled(scores, predictions, labels)
    unknown = labels < 0
    _both_kinds(unknown, "OSCR")
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    correct = (~unknown & (predictions == labels))[order]
    ccr = np.r_[0.0, np.cumsum(correct)[last_of_tie] / (~unknown).sum()]
    fpr = np.r_[0.0, np.cumsum(unknown[order])[last_of_tie] / unknown.sum()]
    thresholds = np.r_[ordered[0], np.nextafter(ordered[last_of_tie], np.inf)]
    area = float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2.0))
    return OSCRCurve(fpr=fpr, ccr=ccr, thresholds=thresholds, area=area)


def oscr(scores, predictions, labels) -> float:
    """Area under the OSCR curve (see :func:`oscr_curve`); in [0, closed-set accuracy]."""
    return oscr_curve(scores, predictions, labels).area


def fpr_at_tpr(scores, is_unknown, tpr: float = 0.95) -> float:
    """FPR at ``tpr`` TPR, with the usual out-of-distribution convention: knowns are the positives.

    TPR = share of knowns accepted, FPR = share of unknowns accepted (``score < theta``), at the smallest
    threshold theta that accepts at least ``tpr`` of the knowns (:func:`calibrate_threshold` on the known
    test scores; thresholds lie only between distinct scores, so ties are accepted together).

    Args:
        scores: (N,) open-set scores, higher = more unknown.
        is_unknown: (N,) booleans, True for unknown samples.
        tpr: share of knowns to accept, in (0, 1] (default 0.95, "FPR@95%TPR"; lower is better).
    """
    scores = _scores(scores)
    unknown = _flags(is_unknown, scores.size)
    _both_kinds(unknown, "FPR@TPR")
    theta = calibrate_threshold(scores[~unknown], tpr)
    return float((scores[unknown] < theta).mean())


def aupr_in(scores, is_unknown) -> float:
    """Area under the precision-recall curve with knowns as positives ("AUPR-In"), ranked by ``-score``.

    ``sklearn.metrics.average_precision_score``; constant scores give the share of knowns.
    """
    scores = _scores(scores)
    unknown = _flags(is_unknown, scores.size)
    _both_kinds(unknown, "AUPR-In")
    return float(average_precision_score(~unknown, -scores))


def aupr_out(scores, is_unknown) -> float:
    """Area under the precision-recall curve with unknowns as positives ("AUPR-Out"), ranked by ``score``.

    ``sklearn.metrics.average_precision_score``; constant scores give the share of unknowns.
    """
    scores = _scores(scores)
    unknown = _flags(is_unknown, scores.size)
    _both_kinds(unknown, "AUPR-Out")
    return float(average_precision_score(unknown, scores))


# ---- metrics at a threshold ----------------------------------------------------------------------------
def open_set_predictions(scores, predictions, threshold: float) -> np.ndarray:
    """Open-set decisions (N,) int64: the closed-set prediction where ``score < threshold``, else -1."""
    scores = _scores(scores)
    predictions = to_numpy(predictions).astype(np.int64)
    if predictions.shape != scores.shape:
        raise ValueError(f"predictions {predictions.shape} must match scores {scores.shape}.")
    return np.where(scores < _threshold(threshold), predictions, -1)


def open_set_f1(scores, predictions, labels, threshold: float, num_classes: int | None = None) -> float:
    """Open-set macro-F1 over the K known classes plus "unknown" (K + 1 classes, unweighted mean).

    Decisions come from :func:`open_set_predictions`; per class ``F1 = 2 TP / (2 TP + FP + FN)``, 0 for a
    class absent from both labels and decisions (as ``sklearn.metrics.f1_score(labels, decisions,
    labels=[-1, 0, ..., K-1], average="macro", zero_division=0)``).

    Args:
        scores, predictions, labels: (N,) each; labels -1 = unknown.
        threshold: accept when ``score < threshold`` (e.g. ``calibrate_threshold(val_known_scores, 0.95)``).
        num_classes: K; default: the largest class index in labels or predictions + 1.
    """
    scores, predictions, labels = _labelled(scores, predictions, labels)
    k = _num_classes(predictions, labels, num_classes)
    decisions = np.where(scores < _threshold(threshold), predictions, -1)
    confusion = np.bincount((labels + 1) * (k + 1) + decisions + 1, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2 TP + FP + FN
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean())


def unknown_recall(scores, is_unknown, threshold: float) -> float:
    """Share of unknown samples rejected: ``mean(score >= threshold)`` over unknowns."""
    scores = _scores(scores)
    unknown = _flags(is_unknown, scores.size)
    if not unknown.any():
        raise ValueError("unknown recall needs unknown samples; got none.")
    return float((scores[unknown] >= _threshold(threshold)).mean())


def known_acceptance_rate(scores, is_unknown, threshold: float) -> float:
    """Share of known samples accepted: ``mean(score < threshold)`` over knowns (the TPR at the threshold)."""
    scores = _scores(scores)
    unknown = _flags(is_unknown, scores.size)
    if unknown.all():
        raise ValueError("the known acceptance rate needs known samples; got none.")
    return float((scores[~unknown] < _threshold(threshold)).mean())


class UnknownConfusion(NamedTuple):
    """Unknown-to-known confusion (the paper's Fig. 4).

    Attributes:
        classes: (U,) original class ids of the unknown classes, ascending (the rows).
        counts: (U, K) int64, unknown samples of class ``classes[u]`` accepted and predicted as known ``k``.
        rates: (U, K) ``counts`` normalised per row; a row with no accepted sample is all zeros.
    """

    classes: np.ndarray
    counts: np.ndarray
    rates: np.ndarray


def unknown_confusion(scores, predictions, labels, classes, threshold: float | None = None,
                      num_classes: int | None = None) -> UnknownConfusion:
    """Which known class took the unknown samples that were accepted as known (Fig. 4 of the paper).

    Args:
        scores: (N,) open-set scores; may be None when ``threshold`` is None.
        predictions: (N,) closed-set predictions; labels: (N,), -1 = unknown.
        classes: (N,) original class id of every sample in its source dataset (rows of the matrix).
        threshold: count only unknowns with ``score < threshold``; None counts every unknown sample.
        num_classes: K (columns); default: the largest class index in labels or predictions + 1.
    An input without unknown samples gives a (0, K) matrix.
    """
    scores, predictions, labels = _labelled(scores, predictions, labels)
    classes = to_numpy(classes)
    if classes.shape != labels.shape or classes.dtype.kind not in "iu":
        raise ValueError(f"classes must be integer ids of shape {labels.shape}, got {classes.dtype} {classes.shape}.")
    k = _num_classes(predictions, labels, num_classes)
    unknown = labels < 0
    rows, row_of = np.unique(classes[unknown], return_inverse=True)
    accepted = np.ones(int(unknown.sum()), dtype=bool)
    if threshold is not None:
        if scores is None:
            raise ValueError("a threshold needs the scores; pass scores or threshold=None.")
        accepted = scores[unknown] < _threshold(threshold)
    flat = row_of[accepted] * k + predictions[unknown][accepted]
    counts = np.bincount(flat, minlength=rows.size * k).reshape(rows.size, k).astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return UnknownConfusion(classes=rows.astype(np.int64), counts=counts, rates=rates)


def open_set_report(scores, predictions, labels, threshold: float | None = None, *, classes=None,
                    num_classes: int | None = None) -> dict:
    """Every open-set metric of one set of (scores, predictions, labels), as a JSON-ready dict.

    Keys: ``n_known``, ``n_unknown``, ``accuracy`` (closed-set, knowns), ``auroc``, ``aupr_in``,
    ``aupr_out``, ``fpr_at_95_tpr``, ``oscr``; with a ``threshold`` also ``threshold``, ``macro_f1``,
    ``unknown_recall``, ``known_acceptance``; with ``classes`` (original class ids) also
    ``unknown_confusion`` = ``{"classes", "counts", "rates"}`` of the unknowns accepted at the threshold
    (all unknowns when threshold is None). Needs known and unknown samples (``ValueError`` otherwise).
    """
    scores, predictions, labels = _labelled(scores, predictions, labels)
    unknown = labels < 0
    _both_kinds(unknown, "open_set_report")
    report = {
        "n_known": int((~unknown).sum()),
        "n_unknown": int(unknown.sum()),
        "accuracy": closed_set_accuracy(predictions[~unknown], labels[~unknown]),
        "auroc": auroc(scores, unknown),
        "aupr_in": aupr_in(scores, unknown),
        "aupr_out": aupr_out(scores, unknown),
        "fpr_at_95_tpr": fpr_at_tpr(scores, unknown, 0.95),
        "oscr": oscr(scores, predictions, labels),
    }
    if threshold is not None:
        report.update(
            threshold=_threshold(threshold),
            macro_f1=open_set_f1(scores, predictions, labels, threshold, num_classes),
            unknown_recall=unknown_recall(scores, unknown, threshold),
            known_acceptance=known_acceptance_rate(scores, unknown, threshold),
        )
    if classes is not None:
        confusion = unknown_confusion(scores, predictions, labels, classes, threshold, num_classes)
        report["unknown_confusion"] = {name: value.tolist() for name, value in confusion._asdict().items()}
    return report
