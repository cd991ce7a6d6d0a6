"""resnet9: the layout of its docstring (checked by counting FLOPs against the hand-computed sum), the
backbone contract (forward == classifier(forward_features)) and its errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from classanchor.models.registry import build_backbone
from classanchor.models.resnet9 import ResNet9


def expected_forward_flops(c_in: int, size: int, width: int, k: int) -> int:
    """2 * multiply-accumulates of every 3x3 conv of the docstring's table plus the final Linear."""
    w = width
    convs = [(c_in, w, size), (w, 2 * w, size), (2 * w, 2 * w, size // 2), (2 * w, 2 * w, size // 2),
             (2 * w, 4 * w, size // 2), (4 * w, 8 * w, size // 4),
             (8 * w, 8 * w, size // 8), (8 * w, 8 * w, size // 8)]  # the pools round down
    return sum(2 * a * b * 9 * s * s for a, b, s in convs) + 2 * 8 * w * k


@pytest.mark.parametrize("c_in,size,width", [(3, 32, 32), (1, 28, 16), (3, 64, 8)])
def test_flops_match_the_documented_layout(c_in, size, width):
    net = ResNet9(6, c_in, size, width).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, c_in, size, size))
    assert counter.get_total_flops() == expected_forward_flops(c_in, size, width, 6)


def test_width_32_costs_under_60_percent_of_classifier32():
    flops = {}
    for name, kw in (("classifier32", {}), ("resnet9", {"width": 32})):
        net = build_backbone(name, 6, 3, 32, **kw).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(1, 3, 32, 32))
        flops[name] = counter.get_total_flops()
    assert flops["resnet9"] < 0.6 * flops["classifier32"]


def test_forward_is_classifier_of_pooled_features():
    torch.manual_seed(0)
    net = build_backbone("resnet9", 5, 3, 32, width=8).eval()
    x = torch.randn(4, 3, 32, 32)
    features = net.forward_features(x)
    assert features.shape == (4, 64) and net.feature_dim == 64
    torch.testing.assert_close(net(x), net.classifier(features))
    # the global max pool: every feature is the maximum of its final map
    body = net.features[:-2](x)
    torch.testing.assert_close(features, body.amax(dim=(2, 3)))


@pytest.mark.parametrize("kwargs,words", [({"image_size": 7}, "at least 8"), ({"width": 0}, "width")])
def test_bad_arguments_name_the_problem(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ResNet9(6, **kwargs)
