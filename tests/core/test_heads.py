import pytest
import torch

from classanchor import AnchorHead, OpenSetInputError, anchor_distances, fit_anchors

from . import reference_equations as ref


def test_training_anchors_are_scaled_identity_and_saved_in_state_dict():
    head = AnchorHead(4, anchor_magnitude=7.5)
    assert torch.equal(head.anchors, 7.5 * torch.eye(4))
    assert "anchors" in head.state_dict()
    assert not any(p is head.anchors for p in head.parameters())
    other = AnchorHead(4)
    other.load_state_dict(head.state_dict())
    assert torch.equal(other.anchors, head.anchors)


def test_distances_match_explicit_loops_in_float64():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(13, 5, generator=g, dtype=torch.float64) * 6
    anchors = torch.randn(5, 5, generator=g, dtype=torch.float64) * 4
    expected = torch.tensor(ref.distances(z.tolist(), anchors.tolist()), dtype=torch.float64)
    torch.testing.assert_close(anchor_distances(z, anchors), expected, atol=1e-6, rtol=0)


def test_head_forward_uses_its_anchors():
    head = AnchorHead(3, anchor_magnitude=10)
    z = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    d = head(z)
    torch.testing.assert_close(d[0], torch.tensor([0.0, 200**0.5, 200**0.5]))
    torch.testing.assert_close(d[1], torch.full((3,), 10.0))


def test_gradient_is_finite_when_logit_sits_on_anchor():
    head = AnchorHead(3)
    z = (10 * torch.eye(3)[:1]).clone().requires_grad_(True)
    head(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    # d/dz of the two non-zero distances: (z - C_j) / d_j; the zero distance contributes 0.
    expected = sum((z.detach()[0] - head.anchors[j]) / head(z.detach())[0, j] for j in (1, 2))
    torch.testing.assert_close(z.grad[0], expected)


def test_fit_anchors_matches_reference_and_ignores_misclassified():
    g = torch.Generator().manual_seed(1)
    k = 4
    labels = torch.arange(40) % k
    z = torch.randn(40, k, generator=g, dtype=torch.float64) + 3 * torch.nn.functional.one_hot(labels, k)
    z[0] = torch.tensor([0.0, 9.0, 0.0, 0.0], dtype=torch.float64)  # label 0 but argmax 1: must be ignored
    expected = torch.tensor(ref.refit_anchors(z.tolist(), labels.tolist(), k), dtype=torch.float64)
    torch.testing.assert_close(fit_anchors(z, labels, k), expected, atol=1e-6, rtol=0)


def test_fit_anchors_class_without_correct_sample():
    z = torch.tensor([[5.0, 0.0], [4.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 0])  # class 1's only sample is misclassified
    with pytest.raises(OpenSetInputError, match=r"classes \[1\] have no correctly classified"):
        fit_anchors(z, labels, 2)
    anchors = fit_anchors(z, labels, 2, empty_class="all_samples")
    torch.testing.assert_close(anchors, torch.tensor([[4.0, 0.0], [4.0, 1.0]]))
    assert torch.isfinite(anchors).all()
    with pytest.raises(OpenSetInputError, match=r"no training samples at all"):
        fit_anchors(z[[0, 2]], labels[[0, 2]], 2, empty_class="all_samples")


@pytest.mark.parametrize(
    "logits, labels, message",
    [
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty batch"),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), "4 columns but the model has 3"),
        (torch.tensor([[0.0, float("nan"), 0.0]]), torch.tensor([0]), "NaN or infinite"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), r"must lie in 0..2"),
        (torch.zeros(2, 3), torch.tensor([0, -1]), r"must lie in 0..2"),
    ],
)
def test_fit_anchors_rejects_bad_input(logits, labels, message):
    with pytest.raises(OpenSetInputError, match=message):
        fit_anchors(logits, labels, 3)


def test_head_rejects_wrong_width_and_wrong_anchor_shape():
    head = AnchorHead(3)
    with pytest.raises(OpenSetInputError, match=r"shape \(batch, 3\)"):
        head(torch.zeros(2, 5))
    with pytest.raises(OpenSetInputError, match=r"anchors must have shape \(3, 3\)"):
        head.set_anchors(torch.zeros(3, 4))
    with pytest.raises(OpenSetInputError, match="at least 2 known classes"):
        AnchorHead(1)
