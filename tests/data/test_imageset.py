"""ImageSet: the validated return type of every reader."""

from __future__ import annotations

import numpy as np
import pytest

from classanchor.data.imageset import DataError, ImageSet


def test_imageset_validates_and_subsets():
    images = np.zeros((4, 2, 3, 1), np.uint8)
    data = ImageSet(images, np.array([0, 1, -1, 1], np.int32), ["a", "b"])
    assert data.labels.dtype == np.int64 and data.class_names == ("a", "b")
    assert data.image_shape == (2, 3, 1) and len(data) == 4 and data.num_classes == 2
    assert data.class_counts().tolist() == [1, 2]
    sub = data.subset(data.labels == 1)
    assert len(sub) == 2 and sub.labels.tolist() == [1, 1]
    with pytest.raises(DataError, match="uint8 array of shape"):
        ImageSet(images.astype(np.float32), np.zeros(4, np.int64), ("a",))
    with pytest.raises(DataError, match="uint8 array of shape"):
        ImageSet(np.zeros((4, 2, 3), np.uint8), np.zeros(4, np.int64), ("a",))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        ImageSet(images, np.zeros(3, np.int64), ("a",))
    with pytest.raises(DataError, match=r"labels must lie in -1\.\.1"):
        ImageSet(images, np.array([0, 1, 2, 0]), ("a", "b"))
    with pytest.raises(DataError, match="1-d integer"):
        ImageSet(images, np.zeros(4, np.float32), ("a",))
    with pytest.raises(DataError, match="not one string"):
        ImageSet(images, np.zeros(4, np.int64), "ab")
