"""SVHN .mat files, on tiny files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from classanchor.data.formats.svhn import read_svhn
from classanchor.data.imageset import DataError

from ...helpers.files import cache_files


def test_svhn_mat(tmp_path, make):
    images, y = make.svhn(tmp_path, n=12)
    data = read_svhn(tmp_path, "train")
    assert data.images.shape == (12, 32, 32, 3) and data.images.flags.c_contiguous
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, y % 10)
    assert data.labels[9] == 0 and 10 not in data.labels  # label 10 means digit 0
    assert read_svhn(tmp_path / "train_32x32.mat").labels.tolist() == data.labels.tolist()  # the file itself


def test_svhn_errors(tmp_path, make, cache_env):
    with pytest.raises(DataError, match=r"looked for test_32x32\.mat"):
        read_svhn(tmp_path, "test")
    make.svhn(tmp_path, n=4, split="test")
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="test_32x32.mat: cannot read the MATLAB file.*download it again"):
        read_svhn(tmp_path, "test")
    assert cache_files(cache_env) == []
