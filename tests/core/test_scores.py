import math

import pytest
import torch

from classanchor import cac_decision, energy_score, max_logit_score, msp_score, rejection_scores, softmin_confidences

from . import reference_equations as ref


def test_paper_example_same_confidences_different_rejection_scores():
    near = torch.tensor([[1.0, 4.0, 5.0]], dtype=torch.float64)
    far = near + 100
    c_near, c_far = softmin_confidences(near), softmin_confidences(far)
    torch.testing.assert_close(c_near, c_far)
    # The paper prints [0.94, 0.04, 0.02] for the exact values (0.936, 0.047, 0.017): within 0.01.
    torch.testing.assert_close(c_near[0], torch.tensor([0.94, 0.04, 0.02], dtype=torch.float64), atol=0.01, rtol=0)
    s_near, s_far = rejection_scores(near), rejection_scores(far)
    assert float(s_far.min()) > 50 * float(s_near.min())
    _, score_near = cac_decision(near)
    _, score_far = cac_decision(far)
    assert float(score_far) > float(score_near)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmin_and_rejection_scores_match_explicit_equations(seed):
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(11, 6, generator=g, dtype=torch.float64) * 30
    expected_c = torch.tensor([ref.softmin(row) for row in d.tolist()], dtype=torch.float64)
    expected_s = torch.tensor([ref.rejection(row) for row in d.tolist()], dtype=torch.float64)
    torch.testing.assert_close(softmin_confidences(d), expected_c, atol=1e-6, rtol=0)
    torch.testing.assert_close(rejection_scores(d), expected_s, atol=1e-6, rtol=0)
    prediction, score = cac_decision(d)
    for i, row in enumerate(expected_s.tolist()):
        assert int(prediction[i]) == min(range(6), key=lambda j: row[j])
        assert abs(float(score[i]) - min(row)) < 1e-6


def _dominant_rows(n, k, gap, seed):
    """n rows of k distances: one small distance in [0.5, 2] at a random place, the others ``gap`` further."""
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(n, k, generator=g, dtype=torch.float64) * (gap[1] - gap[0]) + gap[0]
    nearest = torch.randint(0, k, (n,), generator=g)
    small = 0.5 + 1.5 * torch.rand(n, generator=g, dtype=torch.float64)
    d += small.unsqueeze(1)
    d[torch.arange(n), nearest] = small
    return d


@pytest.mark.parametrize("k", [2, 6, 20])
def test_float32_scores_of_confidently_known_samples_keep_their_precision(k):
    # One anchor much nearer than the others: 1 - c is ~e^-16 ~ 1e-7 at the nearest anchor, where the literal
    # 1 - softmin(d) cancels in float32. Reference: the explicit Eq. 11 loop in float64 on the same float32
    # values (its own cancellation error is ~1e-16 absolute on 1 - c, i.e. ~1e-9 relative here).
    d32 = _dominant_rows(300, k, (14.0, 18.0), seed=k).float()
    expected = torch.tensor([ref.rejection(row) for row in d32.double().tolist()], dtype=torch.float64)
    assert 1e-8 < float(expected.min(1).values.median()) < 1e-5  # the scores this test is about
    s = rejection_scores(d32)
    assert s.dtype == torch.float32
    # left: the float32 rounding of d_j - d_min (~18 * 6e-8 relative), exp and the divisions
    torch.testing.assert_close(s.double(), expected, rtol=1.5e-6, atol=0)
    _, score = cac_decision(d32)
    torch.testing.assert_close(score.double(), expected.min(1).values, rtol=1.5e-6, atol=0)
    # the test can fail: the literal float32 formula is off by more than 1% on these rows
    literal = ((1.0 - softmin_confidences(d32)) * d32).double()
    assert float(((literal - expected).abs() / expected).max()) > 1e-2


def test_prediction_and_score_are_argmin_and_min_of_eq11_not_of_the_distances():
    # Near 0 the rejection score is far below the distance: s_0 = 0.3 * (1 - c_0) ~ 0.135, not d_0 = 0.3.
    d = torch.tensor([[0.3, 0.5, 30.0], [7.0, 2.0, 2.5], [4.0, 3.0, 9.0]], dtype=torch.float64)
    prediction, score = cac_decision(d)
    for i, row in enumerate(d.tolist()):
        s = ref.rejection(row)  # Eq. 11, explicit loop
        assert int(prediction[i]) == s.index(min(s))
        assert abs(float(score[i]) - min(s)) < 1e-12
        assert min(row) - float(score[i]) > 0.01  # a "min distance" score would fail here
    others = math.exp(-0.5) + math.exp(-30)  # 1 - c_0 = sum_{j != 0} e^{-d_j} / sum_j e^{-d_j}
    assert float(score[0]) == pytest.approx(0.3 * others / (math.exp(-0.3) + others), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_argmin_rejection_equals_argmin_distance_for_nonnegative_distances(dtype):
    """Property (proved in ``scores.rejection_scores``): for d >= 0, s_k = d_k (1 - c_k) is strictly
    increasing in d_k, so argmin s = argmin d. Seeded sweep over near-zero, near-tied and far-apart distances:
    the float64 explicit loop must agree, and so must the implementation. So a wrong "argmin d" implementation
    shows only in the score, which the test above checks."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for scale in (1e-3, 0.1, 1.0, 5.0, 30.0):
        rows.append(torch.rand(400, 5, generator=g, dtype=torch.float64) * scale)
    base = torch.rand(400, 1, generator=g, dtype=torch.float64) * 3
    rows.append(base + torch.rand(400, 5, generator=g, dtype=torch.float64) * 1e-3)  # near ties
    zero = torch.zeros(50, 1, dtype=torch.float64)  # a sample on its anchor
    rows.append(torch.cat([zero, torch.rand(50, 3, generator=g, dtype=torch.float64)], 1))
    for d in rows:
        for row in d.tolist():
            s = ref.rejection(row)
            assert s.index(min(s)) == row.index(min(row))
        d = d.to(dtype)
        s = rejection_scores(d)
        prediction, _ = cac_decision(d)
        # in float32 near-tied scores may round to one value: compare the picked distance, not the index
        picked = d.gather(1, prediction.unsqueeze(1)).squeeze(1)
        rtol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(picked, d.min(1).values, rtol=rtol, atol=0)
        assert (s >= 0).all()


def test_baseline_scores_are_higher_for_less_confident_inputs():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 0.9, 0.8]])
    for score in (msp_score(logits), max_logit_score(logits), energy_score(logits)):
        assert score[1] > score[0]
    torch.testing.assert_close(msp_score(logits), -torch.softmax(logits, 1).max(1).values)
    torch.testing.assert_close(energy_score(logits, 2.0), -2.0 * torch.logsumexp(logits / 2.0, 1))
