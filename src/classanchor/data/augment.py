"""Batched training augmentation and the evaluation transform, run on the images' device.

The reference recipe (``reference-protocol.md``) is, per sample, ``Resize(S) -> RandomResizedCrop(S,
scale=(scale_min, 1), ratio=(3/4, 4/3)) -> RandomHorizontalFlip(flip_p) -> RandomRotation(rotation_deg,
fill=0) -> Normalize(mean, std)``. Here every sample's parameters are drawn at once, with the distribution of
torchvision's per-sample transforms (tested against the per-sample sampler of ``benchmarks/speed.py``), and
resize, crop, flip and rotation are composed into ONE affine map per sample: a batch is one ``affine_grid`` +
``grid_sample`` (bilinear, ``align_corners=False``). Crop boxes ``(top, left, height, width)`` are integer
pixels of the input resized to ``S x S``; a positive angle rotates the content counter-clockwise as displayed
(+90 degrees equals ``torch.rot90(x, 1, dims=(-2, -1))``); the fill 0 is black before normalisation.

Deliberate, sub-pixel differences from torchvision: one bilinear resampling instead of two (torchvision
rotates with nearest; here the rotated border is a one-pixel linear ramp); the source is read with border
padding, so samples up to half an output pixel beyond the crop read the neighbouring source pixel; no
antialiasing when the input is larger than ``S`` (the crop itself is never larger than ``S x S``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RESIZE_RULE", "AugmentParams", "AugmentSpec", "affine_matrices", "apply_params", "augment_batch",
           "compute_mean_std", "eval_transform", "normalize_pixels", "resize_pixels", "sample_crop_params",
           "sample_params", "to_nchw"]

NUM_CROP_TRIES = 10  # torchvision's RandomResizedCrop.get_params tries this many times, then falls back


@dataclass(frozen=True)
class AugmentSpec:
    """Parameters of the train augmentation and the eval transform: output side ``size`` S; the crop's area
    fraction in [scale_min, 1] and aspect ratio (width / height) in ``ratio``; flip probability ``flip_p``;
    angles uniform in [-rotation_deg, rotation_deg] degrees; per-channel ``mean``, ``std`` in [0, 1] units
    (length 1 broadcasts to every channel)."""

    size: int
    scale_min: float = 1.0
    flip_p: float = 0.0
    rotation_deg: float = 0.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)

    def __post_init__(self):
        for name in ("mean", "std", "ratio"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if int(self.size) != self.size or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if not 0.0 < self.scale_min <= 1.0:
            raise ValueError(f"scale_min must be in (0, 1], got {self.scale_min}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        if self.rotation_deg < 0:
            raise ValueError(f"rotation_deg must be >= 0, got {self.rotation_deg}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need the same non-zero length, got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {self.ratio}")


class AugmentParams(NamedTuple):
    """Per-sample parameters, each (B,) on one device: int64 crop box, bool flip, float32 angle in degrees."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor
    angle: Tensor


def to_nchw(images, layout: str | None = None) -> Tensor:
    """(B, H, W), (B, C, H, W) or (B, H, W, C) array/tensor -> (B, C, H, W) tensor (a view where possible);
    the layout is guessed from the shape (channels = a size of 1, 3 or 4) unless ``layout`` says it."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, H, W), (B, C, H, W) or (B, H, W, C), got "
                         f"{tuple(x.shape)}")
    if layout is None:  # channels last when only the last axis looks like channels
        layout = "NHWC" if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4) else "NCHW"
    if layout.upper() not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return x.permute(0, 3, 1, 2) if layout.upper() == "NHWC" else x


def _fallback_crop(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of torchvision's fallback crop: the whole image, its aspect ratio clamped into ``ratio``."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def sample_crop_params(n: int, height: int, width: int, scale: tuple[float, float],
                       ratio: tuple[float, float], generator: torch.Generator | None = None,
                       device=None) -> tuple[Tensor, ...]:
    """RandomResizedCrop boxes for n samples at once -> (top, left, h, w), int64 tensors of shape (n,). Same
    distribution as torchvision's ``RandomResizedCrop.get_params``: per try, area fraction ~ U(scale),
    log(aspect) ~ U(log ratio), w = round(sqrt(A * f * r)), h = round(sqrt(A * f / r)); the first of
    ``NUM_CROP_TRIES`` tries (all drawn at once) with 0 < w <= width and 0 < h <= height is kept, else a
    centred crop of the clamped ratio; top ~ U{0..height-h}, left ~ U{0..width-w}. Drawn on the generator's
    device (or ``device``)."""
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    u = torch.rand((n, 2 * NUM_CROP_TRIES + 2), generator=generator, device=dev)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target_area = float(height * width) * (scale[0] + (scale[1] - scale[0]) * u[:, :NUM_CROP_TRIES])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, NUM_CROP_TRIES : 2 * NUM_CROP_TRIES])
    w = torch.round(torch.sqrt(target_area * aspect)).long()  # round half to even, like Python's round
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (n, tries)
    # Index of the first valid try = number of leading invalid tries (clamped; overridden below if none).
    first = (valid.cumsum(dim=1) == 0).sum(dim=1, keepdim=True).clamp_(max=NUM_CROP_TRIES - 1)
    any_valid = valid.any(dim=1)
    fh, fw = _fallback_crop(height, width, ratio)  # used when no try is valid, centred
    w = torch.where(any_valid, w.gather(1, first).squeeze(1), fw)
    h = torch.where(any_valid, h.gather(1, first).squeeze(1), fh)
    # torch.minimum guards float rounding of u * n up to n
    top = torch.minimum(torch.floor(u[:, -2] * (height - h + 1).to(u.dtype)).long(), height - h)
    left = torch.minimum(torch.floor(u[:, -1] * (width - w + 1).to(u.dtype)).long(), width - w)
    top = torch.where(any_valid, top, (height - fh) // 2)
    left = torch.where(any_valid, left, (width - fw) // 2)
    return top, left, h, w


def sample_params(n: int, spec: AugmentSpec, generator: torch.Generator | None = None,
                  device=None) -> AugmentParams:
    """Crop boxes, flips and angles for n samples -> AugmentParams of shape (n,) on the generator's device."""
    top, left, h, w = sample_crop_params(n, spec.size, spec.size, (spec.scale_min, 1.0), spec.ratio,
                                         generator, device)
    u = torch.rand((n, 2), generator=generator, device=top.device)
    return AugmentParams(top, left, h, w, u[:, 0] < spec.flip_p, (2.0 * u[:, 1] - 1.0) * spec.rotation_deg)


def affine_matrices(params: AugmentParams, size: int) -> Tensor:
    """Per-sample affine maps for ``F.affine_grid`` -> (B, 2, 3) float32: output normalised coords o (x right,
    y down, in [-1, 1]) map to source normalised coords ``src = C @ F @ R @ o`` with R the inverse of a
    counter-clockwise rotation by ``angle``, F the flip (x -> -x) and C the crop box (scale w/S, h/S and shift
    to the box centre). The initial resize to S x S is implicit (normalised coordinates)."""
    s = float(size)
    rad = params.angle.float() * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    sx, sy = params.width.float() / s, params.height.float() / s
    cx = (2.0 * params.left.float() + params.width.float()) / s - 1.0
    cy = (2.0 * params.top.float() + params.height.float()) / s - 1.0
    fx = torch.where(params.flip, -sx, sx)
    row0 = torch.stack([fx * cos, -fx * sin, cx], dim=1)
    row1 = torch.stack([sy * sin, sy * cos, cy], dim=1)
    return torch.stack([row0, row1], dim=1)


def _rotation_fill_mask(angle: Tensor, size: int) -> Tensor:
    """Coverage of the rotated S x S image per output pixel -> (B, 1, S, S) in [0, 1] (0 = fill): bilinear
    sampling (zero padding) of an all-ones image at the rotated coordinates: torchvision's fill mask."""
    rad = angle.float() * (math.pi / 180.0)
    cos, sin = torch.cos(rad)[:, None, None], torch.sin(rad)[:, None, None]
    coords = (2.0 * torch.arange(size, device=angle.device, dtype=torch.float32) + 1.0) / size - 1.0
    ox, oy = coords[None, None, :], coords[None, :, None]
    rx, ry = cos * ox - sin * oy, sin * ox + cos * oy  # (B, S, S), in the rotated image's normalised frame

    def coverage(t: Tensor) -> Tensor:
        p = ((t + 1.0) * size - 1.0) * 0.5  # pixel coordinate, pixel centres at 0..S-1
        return torch.clamp(torch.minimum(p + 1.0, size - p), 0.0, 1.0)

    return (coverage(rx) * coverage(ry)).unsqueeze(1)


@functools.lru_cache(maxsize=64)
def _norm_coeffs(mean_t: tuple, std_t: tuple, channels: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale, shift) (1, C, 1, 1) so that normalised = uint8_value * scale - shift; cached per device, as a
    host-to-device copy per batch would synchronise the GPU stream on the hot path."""
    mean, std = torch.tensor(mean_t, dtype=torch.float32), torch.tensor(std_t, dtype=torch.float32)
    if mean.numel() == 1:
        mean, std = mean.expand(channels), std.expand(channels)
    elif mean.numel() != channels:
        raise ValueError(f"spec has {mean.numel()} mean/std values for images with {channels} channels")
    return (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(device), (mean / std).view(1, -1, 1, 1).to(device)


def normalize_pixels(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(B, C, H, W) uint8 (or float in [0, 255]) -> float32 ``(x / 255 - mean) / std`` per channel."""
    scale, shift = _norm_coeffs(tuple(mean), tuple(std), int(x.shape[1]), x.device)
    return x.float().mul_(scale).sub_(shift) if x.dtype != torch.float32 else x * scale - shift


def apply_params(images: Tensor, params: AugmentParams, spec: AugmentSpec,
                 layout: str | None = None) -> Tensor:
    """Crop + resize + flip + rotate + normalise: uint8 (or float in [0, 255]) images in any layout of
    :func:`to_nchw`, params on the same device -> float32 (B, C, S, S), contiguous NCHW."""
    x = to_nchw(images, layout)
    b, c = x.shape[:2]
    theta = affine_matrices(params, spec.size)
    grid = F.affine_grid(theta, [b, c, spec.size, spec.size], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if spec.rotation_deg > 0:
        out = out * _rotation_fill_mask(params.angle, spec.size)
    scale, shift = _norm_coeffs(spec.mean, spec.std, c, out.device)
    return out.mul_(scale).sub_(shift)


def augment_batch(images: Tensor, spec: AugmentSpec, generator: torch.Generator | None = None,
                  layout: str | None = None) -> Tensor:
    """Random train augmentation of a batch: uint8 (B, C, H, W) or (B, H, W, C) -> float32 (B, C, S, S).

    All randomness comes from ``generator`` (same state -> same batch), on the CPU or the images' device::

        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        >>> augment_batch(x, AugmentSpec(32, 0.8, 0.5, 10.0, (0.5,), (0.25,)), g).shape
        torch.Size([4, 3, 32, 32])
    """
    x = torch.as_tensor(images)
    params = sample_params(x.shape[0], spec, generator=generator, device=x.device)
    if params.top.device != x.device:
        params = AugmentParams(*(p.to(x.device, non_blocking=True) for p in params))
    return apply_params(x, params, spec, layout)


RESIZE_RULE = ("bilinear resize to S x S (torch.nn.functional.interpolate, align_corners=False, antialiased "
               "when shrinking) rounded to uint8; images already S x S are unchanged")


def resize_pixels(images: Tensor, size: int) -> Tensor:
    """uint8 ``(B, C, H, W)`` -> uint8 ``(B, C, size, size)`` by :data:`RESIZE_RULE` (test-time resize); every
    output pixel depends only on its own image, so the result does not depend on the batch it is in."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if images.dtype != torch.uint8:
        raise TypeError(f"resize_pixels expects uint8 pixels, got {images.dtype}.")
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=h > size or w > size)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def eval_transform(images: Tensor, spec: AugmentSpec, layout: str | None = None) -> Tensor:
    """The deterministic transform of :class:`~classanchor.data.preprocess.Preprocessing`: resize by
    :data:`RESIZE_RULE`, normalise; uint8 images in any layout of :func:`to_nchw` -> float32 (B, C, S, S)."""
    x = resize_pixels(to_nchw(images, layout), spec.size)
    return normalize_pixels(x, spec.mean, spec.std).contiguous()


def compute_mean_std(images, layout: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std, in [0, 1] units, of uint8 images in a layout of :func:`to_nchw`;
    exact: a 256-bin histogram per channel (integer counts), then float64 moments, no float copy."""
    x = to_nchw(images, layout)
    if x.dtype != torch.uint8:
        raise TypeError(f"compute_mean_std expects uint8 images, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError("compute_mean_std got an empty array")
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for ch in range(x.shape[1]):  # one histogram per channel (C <= 4)
        counts = torch.bincount(x[:, ch].reshape(-1), minlength=256).to("cpu", torch.float64)
        mean = (counts * values).sum() / counts.sum()
        var = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(float(mean) / 255.0)
        stds.append(math.sqrt(float(var)) / 255.0)
    return tuple(means), tuple(stds)
