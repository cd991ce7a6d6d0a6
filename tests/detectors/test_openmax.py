"""OpenMax against the equations of Bendale & Boult (2016) written as explicit per-sample loops."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial import distance as spd
from scipy.stats import weibull_min

from classanchor._checks import OpenSetInputError
from classanchor.detectors import OpenMaxDetector, SmallTailWarning, fit_weibull_tail
from classanchor.detectors.openmax import openmax_distances


def clusters(num_classes=3, per_class=40, magnitude=10.0, noise=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    logits = magnitude * torch.eye(num_classes)[labels] + noise * torch.randn(len(labels), num_classes, generator=g)
    return logits, labels


def distance_by_loop(v, mean, kind):
    if kind == "euclidean":
        return spd.euclidean(v, mean)
    return spd.euclidean(v, mean) / 200.0 + spd.cosine(v, mean)


def openmax_by_loop(detector, v):
    """Algorithm 2 of the OpenMax paper for one logit vector v (list of K floats); returns K + 1 probs."""
    k = len(v)
    alpha = min(detector.alpha_rank, k)
    ranked = sorted(range(k), key=lambda i: -v[i])
    w = [1.0] * k
    for rank, i in enumerate(ranked[:alpha], start=1):
        d = distance_by_loop(v, detector.means_[i].tolist(), detector.distance)
        cdf = weibull_min.cdf(d + detector.shifts_[i], detector.shapes_[i], scale=detector.scales_[i])
        w[i] = 1.0 - (alpha - rank + 1) / alpha * cdf
    activations = [sum(v[i] * (1 - w[i]) for i in range(k))] + [v[i] * w[i] for i in range(k)]
    top = max(activations)
    exps = [math.exp(a - top) for a in activations]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("translate_amount, tolerance", [(1.0, 1e-6), (10000.0, 1e-2), (None, 1e-6)])
def test_toy_problem_far_point_rejected_point_at_mean_accepted(translate_amount, tolerance):
    train, labels = clusters()
    detector = OpenMaxDetector(translate_amount=translate_amount).fit(train, labels)  # alpha 10 -> K = 3
    at_mean = detector.means_[1].float().unsqueeze(0)
    far = torch.tensor([[25.0, 20.0, 15.0]])
    unknown_prime, known_prime = detector.recalibrated(at_mean)
    # the top class of a point at its MAV keeps its activation: w = 1 - CDF(0) ~ 1 (exactly 1 without
    # libMR's translation and with its default 1, as min(tail) > 1 here; with a translation of 10000, CDF(0)
    # is small but not 0)
    assert abs(known_prime[0, 1] / at_mean[0, 1] - 1) < tolerance
    assert unknown_prime[0] < 0.1 * known_prime[0, 1]
    p_mean, p_far = detector.probabilities(at_mean)[0], detector.probabilities(far)[0]
    assert p_mean.argmax() == 2 and p_mean[0] < 1e-3  # known class 1 (column 2), unknown prob ~ 0
    assert p_far.argmax() == 0 and p_far[0] > 0.99  # the unknown column wins
    scores = detector.score(torch.cat([at_mean, far]))
    assert scores[1] > scores[0] and scores.dtype == torch.float32
    assert detector.predict(at_mean).item() == 1


@pytest.mark.parametrize("distance", ["euclidean", "eucos"])
@pytest.mark.parametrize("translate_amount", [1.0, 10000.0, None])
def test_recalibration_matches_the_loop(distance, translate_amount):
    num_classes = 5
    train, labels = clusters(num_classes, per_class=30, noise=2.0, seed=1)
    test = clusters(num_classes, per_class=4, noise=5.0, seed=2)[0]
    detector = OpenMaxDetector(tail_size=10, alpha_rank=3, distance=distance, translate_amount=translate_amount)
    detector.fit(train, labels)
    expected = torch.tensor([openmax_by_loop(detector, row) for row in test.tolist()], dtype=torch.float64)
    probabilities = detector.probabilities(test)
    torch.testing.assert_close(probabilities, expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(detector.score(test), expected[:, 0].float())
    assert detector.predict(test).tolist() == expected[:, 1:].argmax(1).tolist()
    # the fit: MAVs of correctly classified samples, Weibull models of each class's largest distances
    correct = train.argmax(1) == labels
    for k in range(num_classes):
        rows = train[correct & (labels == k)].double()
        torch.testing.assert_close(detector.means_[k], rows.mean(0))
        own = [distance_by_loop(r, rows.mean(0).tolist(), distance) for r in rows.tolist()]
        tail = np.sort(own)[-10:]
        shift = 0.0 if translate_amount is None else translate_amount - tail[0]
        shape, _, scale = weibull_min.fit(tail + shift, floc=0)
        assert detector.shifts_[k] == pytest.approx(shift, rel=1e-9, abs=1e-9)
        # shapes reach 1e5 after a translation of 10000, where scipy's optimiser stops early: ours fits at
        # least as well (log-likelihood) and agrees closely
        assert detector.shapes_[k] == pytest.approx(shape, rel=1e-2)
        assert detector.scales_[k] == pytest.approx(scale, rel=1e-5)
        ours = weibull_min.logpdf(tail + shift, detector.shapes_[k], scale=detector.scales_[k]).sum()
        assert ours >= weibull_min.logpdf(tail + shift, shape, scale=scale).sum() - 1e-9


def test_eucos_distance_matches_scipy():
    v, means = torch.randn(6, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    expected = [[distance_by_loop(a, b, "eucos") for b in means.tolist()] for a in v.tolist()]
    torch.testing.assert_close(openmax_distances(v, means, "eucos"), torch.tensor(expected, dtype=torch.float64))


def test_a_small_class_uses_all_its_samples_and_a_tiny_one_raises():
    train, labels = clusters(per_class=30)
    keep = (labels != 2) | (torch.arange(len(labels)) % 30 < 6)  # class 2: 6 samples, all correct
    with pytest.warns(SmallTailWarning, match=r"classes \[2\]"):
        detector = OpenMaxDetector(tail_size=20).fit(train[keep], labels[keep])
    assert detector.tail_sizes_.tolist() == [20, 20, 6]
    own = (train[keep][labels[keep] == 2].double() - detector.means_[2]).norm(dim=1).numpy()
    expected = fit_weibull_tail(own, 6)
    assert detector.shapes_[2] == pytest.approx(expected.shape) and detector.scales_[2] == pytest.approx(expected.scale)

    keep = (labels != 0) | (torch.arange(len(labels)) < 2)  # class 0: 2 samples
    with pytest.raises(OpenSetInputError, match=r"classes \[0\] have \[2\]"):
        OpenMaxDetector().fit(train[keep], labels[keep])
    same = train.clone()
    same[labels == 1] = torch.tensor([0.0, 10.0, 0.0])  # identical samples: every distance is 0
    with pytest.raises(OpenSetInputError, match="Weibull fit of class 1"):
        OpenMaxDetector().fit(same, labels)


def test_parameters_are_validated():
    for kwargs in ({"tail_size": 2}, {"alpha_rank": 0}, {"distance": "cosine"}):
        with pytest.raises(ValueError):
            OpenMaxDetector(**kwargs)
