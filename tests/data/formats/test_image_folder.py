"""Benchmark image-folder trees (folder or zip): a bad file stops the read with its name."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from classanchor.data.formats.cifar import read_cifar10
from classanchor.data.formats.image_folder import read_image_folder
from classanchor.data.imageset import DataError

from ...helpers.files import cache_files


def test_image_folder_jpeg_tree_and_grey(tmp_path, make):
    entries = make.cifar_tree(classes=("ship", "bird"), per_class=2, prefix="", ext="jpg")
    for name, image in entries.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(make.encode(image, "JPEG"))
    data = read_cifar10(tmp_path, "test")  # root holds train/ and test/ class folders
    assert data.labels.tolist() == [2, 2, 8, 8] and data.images.shape == (4, 32, 32, 3)
    err = np.abs(data.images.astype(int) - entries["test/bird/0000.jpg"].astype(int)).mean()
    assert err < 80  # lossy JPEG of noise; just the right image, roughly
    grey = read_image_folder(tmp_path, "train", None, channels=1, name="custom")
    assert grey.images.shape == (4, 32, 32, 1) and grey.class_names == ("bird", "ship")


def test_image_folder_unknown_class(tmp_path, make):
    entries = make.cifar_tree(classes=("cat", "aeroplane"), per_class=1, splits=("train",))
    make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    with pytest.raises(DataError) as err:
        read_cifar10(tmp_path, "train")
    msg = str(err.value)
    assert "aeroplane" in msg and "'airplane', 'automobile'" in msg and "CIFAR-10-images.zip" in msg


def test_image_folder_wrong_size(tmp_path, make, cache_env):
    entries = make.cifar_tree(classes=("cat", "dog"), per_class=3, splits=("test",))
    entries["CIFAR-10-images/test/dog/0001.png"] = np.zeros((32, 31, 3), np.uint8)  # 31 wide
    make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    with pytest.raises(DataError) as err:
        read_cifar10(tmp_path, "test")
    msg = str(err.value)
    assert "CIFAR-10-images/test/dog/0001.png" in msg and "31x32" in msg and "expected 32x32" in msg
    assert cache_files(cache_env) == []


def test_image_folder_corrupt_zip_and_image(tmp_path, make):
    entries = make.cifar_tree(classes=("cat",), per_class=3, splits=("test",))
    zpath = make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    good = zpath.read_bytes()
    zpath.write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(DataError, match="CIFAR-10-images.zip: not a readable zip archive.*download it again"):
        read_cifar10(tmp_path, "test")
    with zipfile.ZipFile(zpath, "w") as z:  # a readable zip holding a broken image
        z.writestr("CIFAR-10-images/test/cat/0000.png", make.encode(entries[next(iter(entries))]))
        z.writestr("CIFAR-10-images/test/cat/0001.png", b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"CIFAR-10-images\.zip/CIFAR-10-images/test/cat/0001\.png: .*download it again"):
        read_cifar10(tmp_path, "test")


def test_image_folder_corrupt_entry_crc(tmp_path, make):
    entries = make.cifar_tree(classes=("cat",), per_class=1, splits=("test",))
    zpath = make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    raw = bytearray(zpath.read_bytes())
    raw[100] ^= 0xFF  # inside the stored PNG bytes: the CRC check fails
    zpath.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test/cat/0000\.png: (cannot read it|cannot decode)"):
        read_cifar10(tmp_path, "test")
