"""CIFAR python versions (folder and tar.gz) and CIFAR image-folder copies, on tiny files."""

from __future__ import annotations

import pickle
import shutil
import tarfile

import numpy as np
import pytest

from classanchor.data.formats import load_dataset
from classanchor.data.formats.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, read_cifar10, read_cifar100
from classanchor.data.imageset import DataError

from ...helpers.files import cache_files


@pytest.mark.parametrize("tar", [False, True])
def test_cifar10_python_version(tmp_path, make, tar):
    truth = make.cifar(tmp_path, "cifar10", per_class=(3, 2), tar=tar)
    for split in ("train", "test"):
        data = read_cifar10(tmp_path, split)
        images, labels = truth[split]
        np.testing.assert_array_equal(data.images, images)  # (N, 3072) planes -> (N, 32, 32, 3)
        np.testing.assert_array_equal(data.labels, labels)
        assert data.class_names == CIFAR10_CLASSES and data.images.flags.c_contiguous
    if not tar:  # pixel (y=1, x=2) of channel G is data[:, 1024 + 1 * 32 + 2]
        raw = pickle.loads((tmp_path / "cifar-10-batches-py/test_batch").read_bytes(), encoding="bytes")
        np.testing.assert_array_equal(read_cifar10(tmp_path, "test").images[:, 1, 2, 1], raw[b"data"][:, 1058])


@pytest.mark.parametrize("tar", [False, True])
def test_cifar100_python_version(tmp_path, make, tar):
    truth = make.cifar(tmp_path, "cifar100", per_class=(1, 1), tar=tar)
    data = read_cifar100(tmp_path, "test")
    np.testing.assert_array_equal(data.images, truth["test"][0])
    np.testing.assert_array_equal(data.labels, truth["test"][1])
    assert data.class_names == CIFAR100_CLASSES
    # the extracted folder or archive given directly also works
    target = tmp_path / ("cifar-100-python.tar.gz" if tar else "cifar-100-python")
    assert len(read_cifar100(target, "train", cache=False)) == 100


def test_cifar_truncated_tar(tmp_path, make, cache_env):
    make.cifar(tmp_path, "cifar10", tar=True)
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        read_cifar10(tmp_path, "train")
    assert "cifar-10-python.tar.gz" in str(err.value) and "download it again" in str(err.value)
    assert cache_files(cache_env) == []


def test_cifar_bad_and_unsafe_pickles(tmp_path, make):
    make.cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py/test_batch"
    batch.write_bytes(batch.read_bytes()[:50])
    with pytest.raises(DataError, match="test_batch: cannot unpickle it.*download it again"):
        read_cifar10(tmp_path, "test")
    batch.write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")  # a pickle that would run a command
    with pytest.raises(DataError, match="unexpected object os.system"):
        read_cifar10(tmp_path, "test")
    batch.write_bytes(make.py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        read_cifar10(tmp_path, "test")
    (tmp_path / "cifar-10-batches-py/data_batch_3").unlink()
    with pytest.raises(DataError, match="no data_batch_3 in this CIFAR-10 python version"):
        read_cifar10(tmp_path, "train")


def test_cifar_tar_missing_batch(tmp_path, make, cache_env):
    make.cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: no data_batch_3 in this CIFAR-10 python version"):
        read_cifar10(tmp_path, "train")
    assert cache_files(cache_env) == []  # nothing half-written
    assert len(read_cifar10(tmp_path, "test")) == 10  # the test split does not need the missing batch


def test_cifar_nothing_found_lists_names(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", tmp_path, "test")
    msg = str(err.value)
    for name in ("cifar-100-python/", "cifar-100-python.tar.gz", "CIFAR-100-images.zip"):
        assert name in msg


def test_cifar10_image_folder_zip_png(tmp_path, make):
    entries = make.cifar_tree(classes=("truck", "airplane", "cat"), per_class=2)
    zpath = make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    data = read_cifar10(tmp_path, "train")
    assert data.class_names == CIFAR10_CLASSES
    # official index, not alphabetical: airplane 0, cat 3, truck 9; sorted by class then file name
    assert data.labels.tolist() == [0, 0, 3, 3, 9, 9]
    np.testing.assert_array_equal(data.images[4], entries["CIFAR-10-images/train/truck/0000.png"])
    np.testing.assert_array_equal(data.images[0], entries["CIFAR-10-images/train/airplane/0000.png"])
    assert len(read_cifar10(zpath, "test")) == 6  # the zip itself as root
