"""resnet9: a small residual network for CPUs, the ``fast`` recipes' backbone (ResNet-9 layout of D. Page's
DAWNBench CIFAR-10 entry, widths scaled by ``width``).

Every conv is 3x3, padding 1, no bias, followed by BatchNorm2d and ReLU; resolution falls by max-pooling::

    prep:    conv(C_in -> w)                                   at S
    layer 1: conv(w -> 2w), maxpool 2, + residual [conv(2w -> 2w) x 2]   S/2 (rounded down)
    layer 2: conv(2w -> 4w), maxpool 2                                   S/4
    layer 3: conv(4w -> 8w), maxpool 2, + residual [conv(8w -> 8w) x 2]  S/8
    head:    global max pool -> Linear(8w, K)

Few channels run at full resolution (the prep conv has ``w`` outputs), so the cost per image is a fraction
of classifier32's: ``width=32`` at 32 px is about 0.19 GFLOP per forward pass (classifier32: 0.33), counted
with ``torch.utils.flop_counter`` in ``tests/models/test_resnet9.py``. Any ``S >= 8`` works (the pools
round down, the global pool absorbs any final map: 28 px MNIST needs no resize, 64 px TinyImageNet neither).

    >>> net = ResNet9(num_classes=6, in_channels=3, width=16)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 6])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResNet9"]


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """x + conv(conv(x)), both convs keeping the channel count."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(channels, channels), _conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """Images (B, C_in, S, S) -> K logits (B, K); ``forward_features`` -> (B, 8 * width) pooled features and
    ``classifier`` the final Linear, so ``forward(x) == classifier(forward_features(x))``."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 32):
        super().__init__()
        if image_size < 8:
            raise ValueError(f"resnet9 needs images of at least 8 x 8 pixels, got {image_size}.")
        if int(width) < 1:
            raise ValueError(f"resnet9 width must be >= 1, got {width}.")
        w = int(width)
        pool = nn.MaxPool2d(2)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w),
            _conv_bn_relu(w, 2 * w), pool, _Residual(2 * w),
            _conv_bn_relu(2 * w, 4 * w), pool,
            _conv_bn_relu(4 * w, 8 * w), pool, _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(1))
        self.feature_dim = 8 * w
        self.classifier = nn.Linear(8 * w, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, S, S) -> (B, 8 * width)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

