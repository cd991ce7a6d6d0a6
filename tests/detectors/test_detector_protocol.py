"""The detector protocol, the registry, and the distance detectors against explicit loops."""

import math

import pytest
import torch

from classanchor._checks import OpenSetInputError
from classanchor.detectors import (
    DETECTORS,
    CACDetector,
    ClassMeanDetector,
    Detector,
    EnergyDetector,
    MaxLogitDetector,
    MSPDetector,
    NotFittedError,
    OpenMaxDetector,
    make_detector,
)
from classanchor.scores import energy_score, max_logit_score, msp_score
from tests.core import reference_equations as ref

K = 3


def toy_logits(seed=0, per_class=30, noise=2.5):
    """Clusters around 6 * e_k with enough noise that some training samples are misclassified."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat_interleave(per_class)
    logits = 6.0 * torch.eye(K)[labels] + noise * torch.randn(len(labels), K, generator=g)
    return logits, labels


def class_means_by_loop(logits, labels):
    """Mean of the correctly classified (largest logit = label) training logits of each class."""
    means = []
    for k in range(K):
        rows = [logits[i].tolist() for i in range(len(labels))
                if labels[i] == k and int(logits[i].argmax()) == k]
        means.append([sum(r[j] for r in rows) / len(rows) for j in range(K)])
    return means


def test_registry_and_factory():
    assert set(DETECTORS) == {"cac", "msp", "max_logit", "energy", "openmax", "class_mean"}
    for name, cls in DETECTORS.items():
        detector = make_detector(name)
        assert isinstance(detector, cls) and isinstance(detector, Detector) and detector.name == name
    assert isinstance(make_detector("softmax"), MSPDetector)
    assert make_detector("energy", temperature=2.0).temperature == 2.0
    with pytest.raises(ValueError, match="unknown detector 'odin'.*class_mean"):
        make_detector("odin")


@pytest.mark.parametrize("name", ["cac", "openmax", "class_mean"])
def test_score_before_fit_raises_not_fitted(name):
    detector = make_detector(name)
    assert not detector.is_fitted
    for method in (detector.score, detector.predict, detector.decide):
        with pytest.raises(NotFittedError, match=r"call \.fit\(train_logits, train_labels\)"):
            method(torch.zeros(2, K))


def test_logit_detectors_need_no_fit_and_wrap_the_score_functions():
    logits, labels = toy_logits()
    for detector, fn in ((MSPDetector(), msp_score), (MaxLogitDetector(), max_logit_score),
                         (EnergyDetector(2.0), lambda z: energy_score(z, 2.0))):
        assert detector.is_fitted
        torch.testing.assert_close(detector.score(logits), fn(logits))
        torch.testing.assert_close(detector.predict(logits), logits.argmax(dim=1))
        assert detector.fit(logits, labels) is detector and detector.num_classes_ == K
        with pytest.raises(OpenSetInputError, match="3 known classes"):
            detector.score(torch.zeros(2, K + 1))  # K is known after fit
    with pytest.raises(ValueError, match="temperature"):
        EnergyDetector(0.0)


def test_fit_and_score_validate_inputs():
    logits, labels = toy_logits()
    with pytest.raises(OpenSetInputError, match="must lie in 0..2"):
        CACDetector().fit(logits, torch.where(labels == 0, -1, labels))
    detector = CACDetector().fit(logits, labels)
    with pytest.raises(OpenSetInputError, match="NaN or infinite"):
        detector.score(torch.full((1, K), math.nan))


def test_cac_detector_matches_the_equations_by_loop():
    train, labels = toy_logits(seed=1)
    test = toy_logits(seed=2, per_class=5, noise=4.0)[0]
    assert (train.argmax(1) != labels).sum() > 3  # misclassified samples must not move the anchors
    detector = CACDetector().fit(train, labels)
    assert detector.fit(train, labels) is detector and detector.is_fitted
    anchors = class_means_by_loop(train, labels)
    torch.testing.assert_close(detector.means_, torch.tensor(anchors), rtol=1e-5, atol=1e-5)
    scores, predictions = [], []
    for row in ref.distances(test.tolist(), anchors):
        s = ref.rejection(row)  # Eq. 11
        scores.append(min(s))
        predictions.append(s.index(min(s)))
    torch.testing.assert_close(detector.score(test), torch.tensor(scores), rtol=1e-5, atol=1e-5)
    assert detector.predict(test).tolist() == predictions
    prediction, score = detector.decide(test)
    assert prediction.tolist() == predictions and torch.equal(score, detector.score(test))


@pytest.mark.parametrize("prediction", ["nearest_mean", "argmax"])
def test_class_mean_detector_matches_a_loop(prediction):
    train, labels = toy_logits(seed=3)
    test = toy_logits(seed=4, per_class=5, noise=4.0)[0]
    detector = ClassMeanDetector(prediction=prediction).fit(train, labels)
    means = class_means_by_loop(train, labels)
    distances = ref.distances(test.tolist(), means)
    torch.testing.assert_close(detector.score(test), torch.tensor([min(d) for d in distances]), rtol=1e-5, atol=1e-5)
    expected = [d.index(min(d)) for d in distances] if prediction == "nearest_mean" else test.argmax(1).tolist()
    assert detector.predict(test).tolist() == expected
    at_mean = detector.score(torch.tensor(means))
    assert at_mean.abs().max() < 1e-5  # a point on a class mean has distance 0
    with pytest.raises(ValueError, match="prediction must be"):
        ClassMeanDetector(prediction="vote")


def test_repr_lists_the_parameters():
    assert repr(OpenMaxDetector(tail_size=5)) == (
        "OpenMaxDetector(tail_size=5, alpha_rank=10, distance='euclidean', translate_amount=1.0)")
