"""Input validation shared by the public functions: every message names the problem and the fix."""

from __future__ import annotations

import torch


class OpenSetInputError(ValueError):
    """Raised when a tensor handed to the library has the wrong shape, range or values."""


def check_batch(tensor: torch.Tensor, name: str, *, width: int | None = None) -> None:
    """Check that ``tensor`` is a non-empty (B, width) floating batch with only finite values."""
    if not isinstance(tensor, torch.Tensor):
        raise OpenSetInputError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim != 2:
        raise OpenSetInputError(f"{name} must have shape (batch, classes), got shape {tuple(tensor.shape)}; "
                                "flatten the backbone output to one row per image.")
    if tensor.shape[0] == 0:
        raise OpenSetInputError(f"{name} is an empty batch (shape {tuple(tensor.shape)}); pass at least one row.")
    if width is not None and tensor.shape[1] != width:
        raise OpenSetInputError(f"{name} has {tensor.shape[1]} columns but the model has {width} known classes; "
                                f"the backbone must output exactly {width} logits (one per known class).")
    if not tensor.is_floating_point():
        raise OpenSetInputError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}.")
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).any(dim=1).sum())
        raise OpenSetInputError(f"{name} contains NaN or infinite values in {bad} of {tensor.shape[0]} rows; check "
                                "the input images and the learning rate (a diverged network gives non-finite logits).")


def check_labels(labels: torch.Tensor, batch_size: int, num_classes: int, name: str = "labels") -> None:
    """Check that ``labels`` is an integer (B,) tensor with values in 0..num_classes-1."""
    if not isinstance(labels, torch.Tensor):
        raise OpenSetInputError(f"{name} must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise OpenSetInputError(f"{name} must have shape ({batch_size},) to match the batch, got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise OpenSetInputError(f"{name} must be integer class indices, got dtype {labels.dtype}.")
    if batch_size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise OpenSetInputError(f"{name} must lie in 0..{num_classes - 1} (the known classes), got values in "
                                f"{int(labels.min())}..{int(labels.max())}; relabel known classes to 0..K-1 and keep "
                                "unknown samples (label -1) out of training and anchor fitting.")
