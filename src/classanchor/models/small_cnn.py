"""A three-layer CNN for tiny images (the embedded 8x8 digits demo, tests and examples)."""

from __future__ import annotations

from torch import nn

__all__ = ["SmallCNN"]


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2)]


class SmallCNN(nn.Sequential):
    """(B, C, S, S) -> (B, K) logits with conv(32) -> conv(64, /2) -> conv(64, /2) -> linear.

    ``S`` must be divisible by 4 (8 for the scikit-learn digits).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 8, width: int = 32) -> None:
        if image_size % 4:
            raise ValueError(f"SmallCNN needs an image size divisible by 4, got {image_size}.")
        side = image_size // 4
        super().__init__(*_conv(in_channels, width, 1), *_conv(width, 2 * width, 2), *_conv(2 * width, 2 * width, 2),
                         nn.Flatten(), nn.Linear(2 * width * side * side, num_classes))
