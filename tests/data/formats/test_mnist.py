"""MNIST idx files, on tiny files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from classanchor.data.formats.mnist import read_mnist
from classanchor.data.imageset import DataError

from ...helpers.files import cache_files


@pytest.mark.parametrize("gz,torchvision_layout", [(True, True), (False, False)])
def test_mnist_idx(tmp_path, make, gz, torchvision_layout):
    truth = make.mnist(tmp_path, gz=gz, torchvision_layout=torchvision_layout)
    for split in ("train", "test"):
        data = read_mnist(tmp_path, split)
        images, labels = truth[split]
        assert data.images.shape == (len(labels), 28, 28, 1) and data.images.dtype == np.uint8
        np.testing.assert_array_equal(data.images[..., 0], images)
        np.testing.assert_array_equal(data.labels, labels)
        assert data.class_names == tuple("0123456789")


def test_mnist_truncated_gzip(tmp_path, make, cache_env):
    make.mnist(tmp_path)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError) as err:
        read_mnist(tmp_path, "train")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "gzip" in msg and "download it again" in msg
    assert cache_files(cache_env) == []  # nothing half-written


def test_mnist_truncated_raw_and_bad_magic(tmp_path, make):
    make.mnist(tmp_path, gz=False, torchvision_layout=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: \d+ bytes, but its header .* download"):
        read_mnist(tmp_path, "test")
    path.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    with pytest.raises(DataError, match="not an idx3 file .*magic 0x00000801"):
        read_mnist(tmp_path, "test")


def test_mnist_missing_file(tmp_path, make):
    make.mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        read_mnist(tmp_path, "test")
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value) and "MNIST/raw" in str(err.value)
    assert str(err.value).startswith("MNIST test labels not found: looked for t10k-labels-idx1-ubyte.gz, ")
    assert str(err.value).endswith(f"Download the official idx files (e.g. into {tmp_path / 'MNIST' / 'raw'}).")
    with pytest.raises(DataError, match="does not exist"):
        read_mnist(tmp_path / "nowhere", "test")


def test_mnist_image_label_count_mismatch(tmp_path, make):
    make.mnist(tmp_path, gz=False)
    make.idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros(7, np.uint8), gz=False)
    with pytest.raises(DataError, match="50 images but .* 7 labels"):
        read_mnist(tmp_path, "train")
