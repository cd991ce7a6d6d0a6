"""classifier32 (shapes, exact parameter count, structure, init) and the backbone registry."""

import sys
import types

import pytest
import torch
from torch import nn

from classanchor.models.classifier32 import Classifier32
from classanchor.models.registry import MLP, available_backbones, build_backbone


@pytest.mark.parametrize(
    "in_channels, size, features",
    [(1, 32, 2048), (3, 32, 2048), (3, 64, 8192)],
    ids=["32px-1ch", "32px-3ch", "64px"],
)
def test_shapes(in_channels, size, features):
    net = Classifier32(num_classes=6, in_channels=in_channels, image_size=size).eval()
    x = torch.randn(2, in_channels, size, size)
    assert net.forward_features(x).shape == (2, features) == (2, net.feature_dim)
    logits = net(x)
    assert logits.shape == (2, 6) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, net.classifier(net.forward_features(x)))
    assert isinstance(net.classifier, nn.Linear) and net.classifier.in_features == features


def test_parameter_count_k6_32px():
    # conv weights (3x3, no bias):
    conv = 3 * 64 * 9 + 64 * 64 * 9 + 64 * 128 * 9 + 6 * (128 * 128 * 9)  # 1728 + 36864 + 73728 + 884736
    assert conv == 997_056
    bn = 2 * (64 + 64 + 128 + 6 * 128)  # weight + bias of 9 BatchNorm2d layers
    assert bn == 2_048
    fc = 128 * 4 * 4 * 6 + 6  # Linear(2048, 6) weight + bias
    assert fc == 12_294
    net = Classifier32(num_classes=6, in_channels=3, image_size=32)
    assert sum(p.numel() for p in net.parameters()) == conv + bn + fc == 1_011_398
    # 64 px (TinyImageNet, K = 20): only the Linear grows, to 8192 * 20 + 20.
    big = Classifier32(num_classes=20, in_channels=3, image_size=64)
    assert sum(p.numel() for p in big.parameters()) == conv + bn + 128 * 8 * 8 * 20 + 20


def test_structure():
    net = Classifier32(num_classes=10, dropout=0.3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128] + [128] * 6
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (2, 2)] * 3
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 9
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 9 and all(a.negative_slope == 0.2 for a in acts)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 3 and all(d.p == 0.3 for d in drops)
    assert Classifier32(num_classes=10).features[9].p == 0.2  # default p, after block 1's third conv
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in net.modules())


def test_init_statistics():
    torch.manual_seed(0)
    net = Classifier32(num_classes=6)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            # kaiming_normal_(fan_out, relu): std = sqrt(2 / (C_out * 9)); the sample std of n >= 1728 normal
            # draws is within 1/sqrt(2n) relative (<= 1.7%) per sigma; allow 4 sigma (7%).
            w = m.weight.detach()
            expected = (2.0 / (m.out_channels * 9)) ** 0.5
            assert abs(w.std().item() / expected - 1) < 4 / (2 * w.numel()) ** 0.5
            assert abs(w.mean().item()) < 4 * expected / w.numel() ** 0.5
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    w = net.classifier.weight.detach()  # N(0, 0.01), n = 12288
    assert abs(w.std().item() / 0.01 - 1) < 4 / (2 * w.numel()) ** 0.5
    assert abs(w.mean().item()) < 4 * 0.01 / w.numel() ** 0.5
    assert torch.all(net.classifier.bias == 0)


def test_rejects_bad_sizes():
    with pytest.raises(ValueError):
        Classifier32(num_classes=6, image_size=28)


# -------------------------------------------------------------------------------------------------- registry
def test_registry_builds_classifier32_and_mlp():
    net = build_backbone("classifier32", num_classes=20, in_channels=3, image_size=64, dropout=0.3)
    assert isinstance(net, Classifier32) and net.classifier.in_features == 8192
    assert all(m.p == 0.3 for m in net.modules() if isinstance(m, nn.Dropout2d))
    mlp = build_backbone("mlp", num_classes=4, in_channels=1, image_size=8, hidden=16)
    assert isinstance(mlp, MLP)
    x = torch.randn(3, 1, 8, 8)
    assert mlp(x).shape == (3, 4) and mlp.forward_features(x).shape == (3, 16)
    torch.testing.assert_close(mlp(x), mlp.classifier(mlp.forward_features(x)))
    assert "classifier32" in available_backbones() and "mlp" in available_backbones()
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet9000", num_classes=4)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("keras:resnet", num_classes=4)


@pytest.mark.parametrize("name, module", [("torchvision:resnet18", "torchvision"), ("timm:resnet18", "timm")])
def test_optional_backends_explain_how_to_install(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # behaves as not installed, even where it is
    with pytest.raises(ImportError, match=r"pip install classanchor\[vision\]"):
        build_backbone(name, num_classes=4)


def test_torchvision_adapter_replaces_head_and_first_conv(monkeypatch):
    """With a stand-in torchvision.models, check the head swap and the channel adaptation (no download)."""
    calls = {}

    def get_model(name, weights=None):
        calls.update(name=name, weights=weights)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 8),
            nn.ReLU(),
            nn.Linear(8, 1000),
        )

    fake_models = types.ModuleType("torchvision.models")
    fake_models.get_model = get_model
    fake = types.ModuleType("torchvision")
    fake.models = fake_models
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake_models)

    net = build_backbone("torchvision:tiny", num_classes=5, in_channels=1, image_size=16)
    assert calls == {"name": "tiny", "weights": None}  # pretrained weights are off by default
    x = torch.randn(2, 1, 16, 16)
    assert net(x).shape == (2, 5) and net.forward_features(x).shape == (2, 8)
    assert net.classifier.out_features == 5
    torch.testing.assert_close(net(x), net.classifier(net.forward_features(x)))
