"""Datasets by name (``formats.load_dataset``), the official class lists, two real-data checks."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from classanchor.data.formats import load_dataset
from classanchor.data.formats.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, read_cifar10
from classanchor.data.formats.mnist import read_mnist
from classanchor.data.imageset import DataError

REAL = Path("/work/shared/data")


def test_official_class_lists():
    assert len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)  # the official fine names are alphabetical


def test_load_dataset_by_name(tmp_path, make):
    make.mnist(tmp_path)
    make.svhn(tmp_path / "SVHN", n=10, split="test")
    make.cifar(tmp_path, "cifar10", tar=True)
    make.cifar(tmp_path, "cifar100")
    make.tiny(tmp_path, train_classes=(1,))
    assert len(load_dataset("MNIST", tmp_path, "train")) == 50
    assert load_dataset("svhn", tmp_path, "test", classes=[0, 1]).labels.tolist() == [1, 0]
    assert set(load_dataset("CIFAR-10", tmp_path, "test", classes=[8, 9]).labels.tolist()) == {8, 9}
    assert set(load_dataset("cifar100", tmp_path, "test", classes=["apple", "worm"]).labels.tolist()) == {0, 99}
    assert set(load_dataset("tiny-imagenet", tmp_path, "train", classes=[1]).labels.tolist()) == {1}
    assert len(load_dataset("TinyImageNet", tmp_path, "test")) == 10
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(DataError, match="unknown class name 'aple'"):
        load_dataset("cifar100", tmp_path, "test", classes=["aple"])
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("mnist", tmp_path, "val")


@pytest.mark.skipif(not (REAL / "MNIST").is_dir(), reason="real MNIST not available")
def test_real_mnist(tmp_path):
    train = read_mnist(REAL, "train", cache_dir=tmp_path)
    test = read_mnist(REAL, "test", cache_dir=tmp_path)
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.class_counts().sum() == 60000 and test.class_counts().sum() == 10000
    assert train.class_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not (REAL / "CIFAR-10-images.zip").is_file(), reason="real CIFAR-10 zip not available")
def test_real_cifar10_zip_test_split(tmp_path):
    test = read_cifar10(REAL / "CIFAR-10-images.zip", "test", cache_dir=tmp_path, progress=False)
    assert test.images.shape == (10000, 32, 32, 3) and test.class_names == CIFAR10_CLASSES
    assert test.class_counts().tolist() == [1000] * 10
    assert 100 < test.images.mean() < 140


def test_gzip_module_still_reads_our_files(tmp_path, make):
    """Guard for the helper itself: the test idx writer produces what the official files hold."""
    path = make.idx(tmp_path / "x-idx1-ubyte.gz", np.arange(5), gz=True)
    assert gzip.decompress(path.read_bytes())[:4] == b"\x00\x00\x08\x01"
