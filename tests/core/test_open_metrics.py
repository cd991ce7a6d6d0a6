"""The open-set metrics against explicit threshold sweeps, explicit loops and scikit-learn, with ties."""

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score

from classanchor.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    calibrate_threshold,
    fpr_at_tpr,
    known_acceptance_rate,
    open_set_f1,
    open_set_predictions,
    open_set_report,
    oscr,
    oscr_curve,
    unknown_confusion,
    unknown_recall,
)

K = 4


def random_open_set(seed, n=300, levels=8):
    """Integer scores (many ties), predictions, labels (-1 = unknown) and original class ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, K, n)
    predictions = np.where(rng.random(n) < 0.7, np.clip(labels, 0, None), rng.integers(0, K, n))
    scores = rng.integers(0, levels, n).astype(float) + (labels < 0) * rng.integers(0, 3, n)
    classes = np.where(labels < 0, 10 + rng.integers(0, 3, n), labels)
    return scores, predictions, labels, classes


def oscr_sweep(scores, predictions, labels):
    """Explicit loop: one point below every score, then one per distinct score v (accept score <= v)."""
    known = [i for i in range(len(scores)) if labels[i] >= 0]
    unknown = [i for i in range(len(scores)) if labels[i] < 0]
    fpr, ccr = [0.0], [0.0]
    for v in sorted(set(scores.tolist())):
        ccr.append(sum(1 for i in known if scores[i] <= v and predictions[i] == labels[i]) / len(known))
        fpr.append(sum(1 for i in unknown if scores[i] <= v) / len(unknown))
    area = sum((fpr[j + 1] - fpr[j]) * (ccr[j + 1] + ccr[j]) / 2 for j in range(len(fpr) - 1))
    return np.array(fpr), np.array(ccr), area


@pytest.mark.parametrize("seed", range(4))
def test_oscr_matches_an_explicit_threshold_sweep(seed):
    scores, predictions, labels, _ = random_open_set(seed)
    curve = oscr_curve(torch.tensor(scores, dtype=torch.float32), torch.tensor(predictions), torch.tensor(labels))
    fpr, ccr, area = oscr_sweep(scores, predictions, labels)
    np.testing.assert_allclose(curve.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(curve.ccr, ccr, atol=1e-12)
    assert abs(curve.area - area) < 1e-12 and abs(oscr(scores, predictions, labels) - area) < 1e-12
    # each point is what "accept when score < thresholds[j]" gives
    for j, theta in enumerate(curve.thresholds):
        accepted = scores < theta
        assert abs(curve.fpr[j] - accepted[labels < 0].mean()) < 1e-12
        assert abs(curve.ccr[j] - (accepted & (predictions == labels))[labels >= 0].mean()) < 1e-12
    # pairwise form of the area: P(s_u > s_k, k correct) + P(s_u = s_k, k correct) / 2
    u = scores[labels < 0][:, None]
    k = scores[labels >= 0][None, :]
    correct = (predictions == labels)[labels >= 0][None, :]
    assert abs(curve.area - (((u > k) + 0.5 * (u == k)) * correct).mean()) < 1e-12


def test_oscr_extremes():
    labels = np.array([0, 1, 1, -1, -1])
    predictions = np.array([0, 1, 0, 0, 0])
    assert oscr([0.0, 0.1, 0.2, 0.8, 0.9], predictions, labels) == pytest.approx(2 / 3)  # = accuracy
    assert oscr(np.ones(5), predictions, labels) == pytest.approx(1 / 3)  # constant: accuracy / 2
    curve = oscr_curve(np.ones(5), predictions, labels)
    np.testing.assert_allclose(curve.fpr, [0, 1]) and np.testing.assert_allclose(curve.ccr, [0, 2 / 3])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tpr", [0.95, 0.8, 1.0])
def test_fpr_at_tpr_matches_brute_force(seed, tpr):
    scores, _, labels, _ = random_open_set(seed)
    unknown = labels < 0
    expected = None
    for v in sorted(set(scores.tolist())):  # the smallest threshold reaching the TPR
        if (scores[~unknown] <= v).mean() >= tpr - 1e-12:
            expected = (scores[unknown] <= v).mean()
            break
    assert fpr_at_tpr(torch.tensor(scores), torch.tensor(unknown), tpr) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_aupr_matches_sklearn(seed):
    scores, _, labels, _ = random_open_set(seed)
    unknown = labels < 0
    assert aupr_out(scores, unknown) == pytest.approx(average_precision_score(unknown, scores), abs=1e-12)
    assert aupr_in(scores, unknown) == pytest.approx(average_precision_score(~unknown, -scores), abs=1e-12)
    separated = np.where(unknown, 1.0, 0.0)
    assert aupr_in(separated, unknown) == 1.0 and aupr_out(separated, unknown) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_open_set_f1_and_rates_match_sklearn_and_loops(seed):
    scores, predictions, labels, _ = random_open_set(seed)
    theta = 4.0  # a tied score value: score == theta is rejected
    decisions = np.array([p if s < theta else -1 for s, p in zip(scores, predictions)])
    np.testing.assert_array_equal(open_set_predictions(scores, predictions, theta), decisions)
    expected = f1_score(labels, decisions, labels=list(range(-1, K)), average="macro", zero_division=0)
    assert open_set_f1(scores, predictions, labels, theta) == pytest.approx(expected, abs=1e-12)
    # K larger than what the data shows: the absent class counts as F1 = 0, as in sklearn
    expected = f1_score(labels, decisions, labels=list(range(-1, K + 2)), average="macro", zero_division=0)
    assert open_set_f1(scores, predictions, labels, theta, num_classes=K + 2) == pytest.approx(expected, abs=1e-12)
    unknown = labels < 0
    assert unknown_recall(scores, unknown, theta) == sum(s >= theta for s in scores[unknown]) / unknown.sum()
    assert known_acceptance_rate(scores, unknown, theta) == sum(s < theta for s in scores[~unknown]) / (~unknown).sum()


def test_known_acceptance_at_a_calibrated_threshold():
    rng = np.random.default_rng(5)
    val, test = rng.normal(size=400), rng.normal(size=1000)
    theta = calibrate_threshold(val, 0.95)
    assert known_acceptance_rate(val, np.zeros(400, bool), theta) == 380 / 400
    assert 0.9 < known_acceptance_rate(test, np.zeros(1000, bool), theta) < 0.99


@pytest.mark.parametrize("threshold", [None, 4.0])
def test_unknown_confusion_matches_a_loop(threshold):
    scores, predictions, labels, classes = random_open_set(7)
    confusion = unknown_confusion(torch.tensor(scores), torch.tensor(predictions), torch.tensor(labels),
                                  torch.tensor(classes), threshold, num_classes=K)
    rows = sorted(set(classes[labels < 0].tolist()))
    counts = np.zeros((len(rows), K), dtype=int)
    for s, p, y, c in zip(scores, predictions, labels, classes):
        if y < 0 and (threshold is None or s < threshold):
            counts[rows.index(c), p] += 1
    np.testing.assert_array_equal(confusion.classes, rows)
    np.testing.assert_array_equal(confusion.counts, counts)
    np.testing.assert_allclose(confusion.rates, counts / counts.sum(axis=1, keepdims=True))


def test_unknown_confusion_edge_cases():
    labels, predictions, classes = np.array([0, 1, -1]), np.array([0, 1, 1]), np.array([0, 1, 7])
    confusion = unknown_confusion([0.0, 0.0, 9.0], predictions, labels, classes, threshold=5.0, num_classes=3)
    np.testing.assert_array_equal(confusion.counts, [[0, 0, 0]])  # rejected: an all-zero row, rates too
    np.testing.assert_array_equal(confusion.rates, [[0.0, 0.0, 0.0]])
    empty = unknown_confusion(None, predictions[:2], labels[:2], classes[:2], num_classes=3)
    assert empty.counts.shape == (0, 3)
    with pytest.raises(ValueError, match="needs the scores"):
        unknown_confusion(None, predictions, labels, classes, threshold=1.0)


def test_open_set_report_collects_every_metric():
    scores, predictions, labels, classes = random_open_set(3)
    unknown = labels < 0
    report = open_set_report(scores, predictions, labels, 4.0, classes=classes, num_classes=K)
    json.dumps(report)
    assert report["n_known"] == (~unknown).sum() and report["n_unknown"] == unknown.sum()
    assert report["accuracy"] == (predictions == labels)[~unknown].mean()
    assert report["auroc"] == auroc(scores, unknown)
    assert report["fpr_at_95_tpr"] == fpr_at_tpr(scores, unknown)
    assert report["oscr"] == oscr(scores, predictions, labels)
    assert report["macro_f1"] == open_set_f1(scores, predictions, labels, 4.0, K)
    assert report["unknown_confusion"]["classes"] == [10, 11, 12]
    assert set(open_set_report(scores, predictions, labels)) == {
        "n_known", "n_unknown", "accuracy", "auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "oscr"}


def test_constant_scores_give_the_documented_values():
    labels = np.array([0, 1, 0, -1, -1, 1, -1, 0])
    predictions = np.array([0, 1, 1, 0, 0, 1, 0, 0])
    scores, unknown = np.full(8, 0.3), labels < 0
    assert auroc(scores, unknown) == 0.5
    assert aupr_out(scores, unknown) == pytest.approx(3 / 8) and aupr_in(scores, unknown) == pytest.approx(5 / 8)
    assert fpr_at_tpr(scores, unknown) == 1.0
    assert fpr_at_tpr(torch.tensor(scores, dtype=torch.bfloat16), torch.tensor(unknown)) == 1.0
    assert oscr(scores, predictions, labels) == pytest.approx(0.8 / 2)


def test_degenerate_inputs_raise_clear_errors():
    labels = np.array([0, 1, -1, -1])
    predictions = np.array([0, 1, 0, 0])
    nan = np.array([0.1, math.nan, 0.3, 0.4])
    unknown = labels < 0
    for call in (lambda: oscr(nan, predictions, labels), lambda: fpr_at_tpr(nan, unknown),
                 lambda: aupr_in(nan, unknown), lambda: aupr_out(nan, unknown),
                 lambda: open_set_f1(nan, predictions, labels, 0.2), lambda: unknown_recall(nan, unknown, 0.2),
                 lambda: open_set_report(nan, predictions, labels)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    only_known = np.zeros(4, bool)
    for call in (lambda: oscr(scores, predictions, np.array([0, 1, 0, 0])), lambda: fpr_at_tpr(scores, only_known),
                 lambda: aupr_in(scores, only_known), lambda: aupr_out(scores, ~only_known),
                 lambda: open_set_report(scores, predictions, np.array([0, 1, 0, 0]))):
        with pytest.raises(ValueError, match="both known and unknown"):
            call()
    with pytest.raises(ValueError, match="needs unknown samples"):
        unknown_recall(scores, only_known, 0.2)
    with pytest.raises(ValueError, match="needs known samples"):
        known_acceptance_rate(scores, ~only_known, 0.2)
    with pytest.raises(ValueError, match="not the labels themselves"):
        fpr_at_tpr(scores, np.array([0, 1, 2, -1]))
    with pytest.raises(ValueError, match="closed-set classes"):
        open_set_f1(scores, np.array([0, -1, 0, 0]), labels, 0.2)
    with pytest.raises(ValueError, match="threshold is NaN"):
        open_set_f1(scores, predictions, labels, math.nan)
    with pytest.raises(ValueError, match="num_classes is 1"):
        open_set_f1(scores, predictions, labels, 0.2, num_classes=1)
    with pytest.raises(ValueError, match="must match"):
        oscr(scores[:3], predictions, labels)
