"""What every reader returns (:class:`ImageSet`) and raises (:class:`DataError`). Example::

    >>> import numpy as np
    >>> data = ImageSet(np.zeros((3, 2, 2, 1), np.uint8), [0, 1, -1], ("cat", "dog"))
    >>> data, data.class_counts().tolist()
    (ImageSet(n=3, image_shape=(2, 2, 1), num_classes=2), [1, 1])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = ["DataError", "ImageSet", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]


class DataError(ValueError):
    """A data file or folder is missing, truncated, corrupt or not in the expected layout; the message names
    the file (zip entries as ``archive.zip/inner/name``) and the fix."""


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Decoded images: ``images`` uint8 (N, H, W, C), channels last (C = 1 grey or 3 RGB); ``labels`` int64
    (N,), ``class_names[labels[i]]`` is the class of image ``i``, -1 = unknown."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"ImageSet.images must be a uint8 array of shape (N, H, W, C); got dtype "
                            f"{getattr(images, 'dtype', type(images).__name__)}, "
                            f"shape {getattr(images, 'shape', None)}.")
        if isinstance(self.class_names, str):
            raise DataError("ImageSet.class_names must be a sequence of names, not one string.")
        names = tuple(str(n) for n in self.class_names)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise DataError(f"ImageSet.labels must be a 1-d integer array; got dtype {labels.dtype}, "
                            f"shape {labels.shape}.")
        labels = labels.astype(np.int64, copy=False)
        if len(labels) != len(images):
            raise DataError(f"ImageSet has {len(images)} images but {len(labels)} labels.")
        if labels.size and (labels.min() < -1 or labels.max() >= len(names)):
            raise DataError(f"ImageSet labels must lie in -1..{len(names) - 1} ({len(names)} class names); "
                            f"got min {labels.min()}, max {labels.max()}.")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ImageSet(n={len(self)}, image_shape={self.image_shape}, num_classes={self.num_classes})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """int64 (num_classes,): images per class (label -1 not counted)."""
        return np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images selected by an integer index array or a boolean mask (N,), as a new ImageSet."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)
