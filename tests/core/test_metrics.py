import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from classanchor.metrics import auroc, calibrate_threshold, closed_set_accuracy, openness


@pytest.mark.parametrize(
    "known, unknown, expected", [(6, 4, 0.1339), (4, 10, 0.3333), (4, 50, 0.6286), (20, 180, 0.5735)]
)
def test_openness_reproduces_paper_values(known, unknown, expected):
    # The paper truncates to two decimals of a percent (6/4 is 13.397%, printed 13.39%).
    value = openness(known, known + unknown, known)
    assert int(value * 10000) / 10000 == expected
    assert abs(value - (1 - (2 * known / (2 * known + unknown)) ** 0.5)) < 1e-15


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    is_unknown = rng.random(300) < 0.3
    scores[is_unknown] += 1
    assert abs(auroc(torch.tensor(scores), torch.tensor(is_unknown)) - roc_auc_score(is_unknown, scores)) < 1e-12
    # brute force: P(score_unknown > score_known) + 0.5 P(equal)
    u, k = scores[is_unknown][:, None], scores[~is_unknown][None, :]
    assert abs(auroc(scores, is_unknown) - ((u > k).mean() + 0.5 * (u == k).mean())) < 1e-12


def test_auroc_rejects_one_class_and_nan():
    with pytest.raises(ValueError, match="both known and unknown"):
        auroc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="NaN or infinite"):
        auroc([0.1, float("nan")], [False, True])


def test_closed_set_accuracy():
    assert closed_set_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75
    with pytest.raises(ValueError, match="known samples only"):
        closed_set_accuracy([0, 1], [0, -1])


def test_calibrated_threshold_accepts_the_requested_share():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=1000)
    for rate in (0.5, 0.9, 0.95, 1.0):
        theta = calibrate_threshold(scores, rate)
        assert (scores < theta).sum() == int(np.ceil(rate * 1000))
    ties = np.array([1.0, 1.0, 1.0, 2.0])
    assert (ties < calibrate_threshold(ties, 0.5)).sum() == 3  # ties with the boundary are all accepted


def test_calibrated_threshold_holds_for_float32_scores():
    scores = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    theta = calibrate_threshold(scores, 1.0)
    assert (scores < np.float32(theta)).sum() == 3
    assert (torch.from_numpy(scores) < theta).sum() == 3
