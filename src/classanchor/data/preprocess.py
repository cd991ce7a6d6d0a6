"""One preprocessing from pixels of any size to the network's input, for evaluation and the predictor.

Every path (training-time validation, the benchmark's evaluation, ``classanchor predict`` on files, arrays or
PIL images; files decoded at their own size first) takes the same steps, so the same image gives the same
network input: 1. :meth:`Preprocessing.pixels`: uint8 pixels of any size -> uint8 ``(B, C, S, S)`` by
:data:`RESIZE_RULE`; 2. :meth:`Preprocessing.normalise`: ``(x / 255 - mean) / std`` per channel, float32;
3. with ``mirror_average`` (test-time flip), an image's logits are the mean of those of the image and of its
mirror image; 4. with ``extra_sizes`` (multi-size test), steps 1-3 are repeated with the image resized to each
extra side and the image's logits are the mean over all sides (steps 3 and 4 are applied by
:func:`classanchor.evaluate.network_logits`; a network with global pooling takes any side). Saved in
``model.json``. Training-time validation (checkpoint choice) uses ``size`` alone. Example::

    >>> import torch
    >>> prep = Preprocessing(size=32, channels=1, mean=(0.13,), std=(0.31,))
    >>> prep.pixels(torch.zeros(2, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 1, 32, 32])
    >>> prep(torch.zeros(2, 28, 28, dtype=torch.uint8)).dtype
    torch.float32
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import Tensor

from .augment import RESIZE_RULE, compute_mean_std, normalize_pixels, resize_pixels, to_nchw

__all__ = ["RESIZE_RULE", "Preprocessing", "resize_pixels"]


@dataclass(frozen=True)
class Preprocessing:
    """Side ``size`` S, ``channels`` (1 grey, 3 RGB), per-channel ``mean``, ``std`` in [0, 1] units (a single
    value broadcasts to every channel), ``mirror_average`` (step 3) and ``extra_sizes`` (step 4: further test-time
    sides, e.g. ``(64,)`` for a network trained at 48 px on 64 px images)."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mirror_average: bool = False
    extra_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        mean, std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        if len(mean) == 1 and self.channels > 1:
            mean, std = mean * self.channels, std * self.channels
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "extra_sizes", tuple(self.extra_sizes))
        for side in (self.size, *self.extra_sizes):
            if isinstance(side, bool) or int(side) != side or side < 1:
                raise ValueError(f"sizes must be positive integers, got {side!r}.")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"extra_sizes {self.extra_sizes} must differ from each other and from size "
                             f"{self.size}.")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}.")
        if len(mean) != self.channels or len(std) != self.channels:
            raise ValueError(f"need one mean and one std per channel ({self.channels}), got {mean} and "
                             f"{std}.")
        if any(not np.isfinite(s) or s <= 0 for s in std) or any(not np.isfinite(m) for m in mean):
            raise ValueError(f"mean must be finite and std positive, got {mean} and {std}.")

    @classmethod
    def fit(cls, images, size: int, mirror_average: bool = False, extra_sizes=()) -> Preprocessing:
        """Mean and std of uint8 training images ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``."""
        x = to_nchw(images)
        mean, std = compute_mean_std(x, layout="NCHW")
        return cls(size=size, channels=int(x.shape[1]), mean=mean, std=std, mirror_average=mirror_average,
                   extra_sizes=tuple(extra_sizes))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every test-time side: ``size``, then ``extra_sizes``."""
        return (self.size, *self.extra_sizes)

    def views(self) -> tuple[Preprocessing, ...]:
        """One single-side preprocessing per side of :attr:`sizes` (step 4 averages their logits)."""
        return tuple(replace(self, size=side, extra_sizes=()) for side in self.sizes)

    def pixels(self, images, layout: str | None = None) -> Tensor:
        """uint8 ``(B, H, W)`` / ``(B, C, H, W)`` / ``(B, H, W, C)`` with this model's channels -> uint8
        ``(B, C, S, S)`` (step 1) at S = ``size`` (the extra sides: :meth:`views`)."""
        x = to_nchw(images, layout)
        if x.shape[1] != self.channels:
            raise ValueError(f"images have {x.shape[1]} channel(s), this model takes {self.channels}; "
                             "decode them with classanchor.data.decode (it converts grey and colour) or "
                             "convert them first.")
        return resize_pixels(x, self.size)

    def normalise(self, pixels: Tensor) -> Tensor:
        """uint8 ``(B, C, S, S)`` -> float32 ``(x / 255 - mean) / std`` (step 2)."""
        return normalize_pixels(pixels, self.mean, self.std)

    def __call__(self, images, layout: str | None = None) -> Tensor:
        """Both steps: uint8 images of any size -> float32 ``(B, C, S, S)`` network input."""
        return self.normalise(self.pixels(images, layout))

    def to_dict(self) -> dict:
        """The JSON record saved in ``model.json`` (``input``)."""
        return {"size": int(self.size), "channels": int(self.channels), "mean": list(self.mean),
                "std": list(self.std), "pixel_range": "uint8 0-255 divided by 255, then (x - mean) / std",
                "resize": RESIZE_RULE, "mirror_average": bool(self.mirror_average),
                "extra_sizes": [int(side) for side in self.extra_sizes]}

    @classmethod
    def from_dict(cls, record: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`; extra keys are ignored, a missing ``mirror_average`` is False and a
        missing ``extra_sizes`` is none (folders saved before these options)."""
        mirror_average = record.get("mirror_average", False)
        if not isinstance(mirror_average, bool):
            raise ValueError(f"mirror_average must be true or false, got {mirror_average!r}.")
        extra_sizes = record.get("extra_sizes", [])
        if not isinstance(extra_sizes, list) or not all(type(side) is int for side in extra_sizes):
            raise ValueError(f"extra_sizes must be a list of integer sides, got {extra_sizes!r}.")
        return cls(size=int(record["size"]), channels=int(record["channels"]), mean=tuple(record["mean"]),
                   std=tuple(record["std"]), mirror_average=mirror_average, extra_sizes=tuple(extra_sizes))
