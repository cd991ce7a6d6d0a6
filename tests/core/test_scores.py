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


def test_prediction_is_argmin_rejection_not_argmin_distance():
    # Eq. 11 can order classes differently from the raw distances when distances are close to 0.
    d = torch.tensor([[0.3, 0.5, 30.0]], dtype=torch.float64)
    s = torch.tensor([ref.rejection(d[0].tolist())], dtype=torch.float64)
    prediction, _ = cac_decision(d)
    assert int(prediction) == int(s.argmin())


def test_baseline_scores_are_higher_for_less_confident_inputs():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 0.9, 0.8]])
    for score in (msp_score(logits), max_logit_score(logits), energy_score(logits)):
        assert score[1] > score[0]
    torch.testing.assert_close(msp_score(logits), -torch.softmax(logits, 1).max(1).values)
    torch.testing.assert_close(energy_score(logits, 2.0), -2.0 * torch.logsumexp(logits / 2.0, 1))
