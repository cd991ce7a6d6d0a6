"""classifier32: the encoder of the CAC paper's reference code (the same for CAC and the CE baseline).

Every conv is 3x3, padding 1, no bias, followed by BatchNorm2d and LeakyReLU(0.2)::

    block 1: conv(C_in -> 64, s1), conv(64 -> 64, s1), conv(64 -> 128, s2), Dropout2d(p)
    block 2: conv(128 -> 128, s1) x 2, conv(128 -> 128, s2), Dropout2d(p)
    block 3: same as block 2
    head:    flatten (128 * (S/8)^2: 2048 at 32 px, 8192 at 64 px) -> Linear(., K)

No pooling. Dropout p = 0.2 (TinyImageNet: 0.3). About 1.0 M parameters for K = 6 at 32 px.

    >>> net = Classifier32(num_classes=6)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 6])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Classifier32"]


def _conv_bn_act(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2),
    ]


class Classifier32(nn.Module):
    """The reference network: image (B, C_in, S, S) -> K logits (B, K), S = 32 or 64 (any multiple of 8).

    ``forward_features(x)`` -> (B, 128 * (S/8)^2) flattened features; ``classifier`` is the final Linear, so
    ``forward(x) == classifier(forward_features(x))``.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.2):
        super().__init__()
        if image_size % 8 != 0 or image_size < 8:
            raise ValueError(f"image_size must be a positive multiple of 8 (32 or 64), got {image_size}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.feature_dim = 128 * (image_size // 8) ** 2
        self.features = nn.Sequential(
            *_conv_bn_act(in_channels, 64, 1),
            *_conv_bn_act(64, 64, 1),
            *_conv_bn_act(64, 128, 2),
            nn.Dropout2d(dropout),
            *_conv_bn_act(128, 128, 1),
            *_conv_bn_act(128, 128, 1),
            *_conv_bn_act(128, 128, 2),
            nn.Dropout2d(dropout),
            *_conv_bn_act(128, 128, 1),
            *_conv_bn_act(128, 128, 1),
            *_conv_bn_act(128, 128, 2),
            nn.Dropout2d(dropout),
        )
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init: conv kaiming_normal (fan_out, relu); BN weight 1, bias 0; Linear N(0, 0.01), bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C_in, S, S) float -> (B, 128 * (S/8)^2) flattened conv features."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, S, S) float -> (B, K) logits."""
        return self.classifier(self.forward_features(x))
