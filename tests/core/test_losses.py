import math

import pytest
import torch

from classanchor import LOSS_VARIANTS, CACLoss, OpenSetInputError, anchor_distances, cac_loss, cac_loss_terms

from . import reference_equations as ref


def _random_problem(seed, b=17, k=6, scale=8.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(b, k, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    labels = torch.randint(0, k, (b,), generator=g)
    anchors = 10 * torch.eye(k, dtype=torch.float64)
    return z, labels, anchors


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weights", [(1.0, 0.1), (0.0, 1.0), (1.0, 0.0), (0.7, 0.35)])
def test_loss_matches_explicit_equations(seed, weights):
    tuplet_weight, anchor_weight = weights
    z, labels, anchors = _random_problem(seed)
    d = anchor_distances(z, anchors)
    loss = cac_loss(d, labels, anchor_weight=anchor_weight, tuplet_weight=tuplet_weight).detach()
    expected = ref.cac(d.tolist(), labels.tolist(), anchor_weight, tuplet_weight)
    assert abs(loss.item() - expected) < 1e-6


def test_loss_gradient_matches_finite_differences_of_the_reference():
    z, labels, anchors = _random_problem(3, b=5, k=4)
    cac_loss(anchor_distances(z, anchors), labels, anchor_weight=0.1).backward()

    def reference_loss(z_list):
        return ref.cac(ref.distances(z_list, anchors.tolist()), labels.tolist(), 0.1)

    h = 1e-6
    numeric = torch.zeros_like(z)
    base = z.detach().tolist()
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            plus = [row[:] for row in base]
            minus = [row[:] for row in base]
            plus[i][j] += h
            minus[i][j] -= h
            numeric[i, j] = (reference_loss(plus) - reference_loss(minus)) / (2 * h)
    torch.testing.assert_close(z.grad, numeric, atol=1e-6, rtol=0)


def test_terms_are_eq6_and_eq7_per_sample():
    z, labels, anchors = _random_problem(4)
    d = anchor_distances(z, anchors).detach()
    tuplet, anchor = cac_loss_terms(d, labels)
    for i, y in enumerate(labels.tolist()):
        assert abs(float(tuplet[i]) - ref.tuplet(d[i].tolist(), y)) < 1e-9
        assert float(anchor[i]) == float(d[i, y])


def test_no_overflow_for_distances_in_the_hundreds():
    d = torch.tensor([[900.0, 100.0, 500.0], [100.0, 900.0, 905.0]], dtype=torch.float32)
    labels = torch.tensor([0, 0])
    loss = cac_loss(d, labels, anchor_weight=0.1)
    expected = ref.cac(d.double().tolist(), labels.tolist(), 0.1)
    assert math.isfinite(float(loss))
    assert abs(float(loss) - expected) / expected < 1e-6


def test_module_and_ablation_variants():
    z, labels, anchors = _random_problem(5)
    d = anchor_distances(z, anchors).detach()
    tuplet, anchor = cac_loss_terms(d, labels)
    assert LOSS_VARIANTS["cac"].anchor == 0.1
    torch.testing.assert_close(CACLoss.variant("anchor")(d, labels), anchor.mean())
    torch.testing.assert_close(CACLoss.variant("tuplet")(d, labels), tuplet.mean())
    torch.testing.assert_close(CACLoss(anchor_weight=0.3)(d, labels), (tuplet + 0.3 * anchor).mean())
    with pytest.raises(OpenSetInputError, match="unknown loss variant"):
        CACLoss.variant("center")


@pytest.mark.parametrize(
    "d, labels, message",
    [
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty batch"),
        (torch.ones(2, 3), torch.tensor([0, 5]), r"must lie in 0..2"),
        (torch.ones(2, 3), torch.tensor([0.0, 1.0]), "integer class indices"),
        (torch.tensor([[1.0, float("inf"), 2.0]]), torch.tensor([0]), "NaN or infinite"),
        (torch.ones(3), torch.tensor([0]), r"shape \(batch, classes\)"),
    ],
)
def test_loss_rejects_bad_input(d, labels, message):
    with pytest.raises(OpenSetInputError, match=message):
        cac_loss(d, labels)


def test_negative_weights_are_rejected():
    with pytest.raises(OpenSetInputError, match="loss weights"):
        cac_loss(torch.ones(1, 2), torch.tensor([0]), anchor_weight=-1.0)
