"""Readers of the official dataset formats, on tiny files written by the tests (plus two real-data checks)."""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from classanchor.data import readers
from classanchor.data.readers import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    DataError,
    ImageSet,
    load_dataset,
    read_cifar10,
    read_cifar100,
    read_image_folder,
    read_mnist,
    read_svhn,
    read_tinyimagenet,
    tinyimagenet_classes,
)

REAL = Path("/work/shared/data")


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ---------------------------------------------------------------------------------------------- ImageSet


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


def test_official_class_lists():
    assert len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)  # the official fine names are alphabetical


# ---------------------------------------------------------------------------------------------- MNIST


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


def test_mnist_cache_hit_and_invalidation(tmp_path, make, cache_env, monkeypatch):
    make.mnist(tmp_path)
    first = read_mnist(tmp_path, "train")
    assert len(cache_files(cache_env)) == 1 and cache_files(cache_env)[0].endswith(".npz")

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(readers, "_read_idx", boom)
    second = read_mnist(tmp_path, "train")
    np.testing.assert_array_equal(first.images, second.images)
    monkeypatch.undo()
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(cache_env))

    # a changed source file (new size and mtime) is read again
    new = make.mnist(tmp_path, per_class=(6, 3))
    third = read_mnist(tmp_path, "train")
    np.testing.assert_array_equal(third.labels, new["train"][1])
    assert len(third) == 60


def test_cache_dir_argument_and_cache_off(tmp_path, make, cache_env):
    make.mnist(tmp_path)
    read_mnist(tmp_path, "test", cache=False)
    assert cache_files(cache_env) == []
    other = tmp_path / "elsewhere"
    read_mnist(tmp_path, "test", cache_dir=other)
    assert len(cache_files(other)) == 1 and cache_files(cache_env) == []


def test_damaged_cache_file_is_rebuilt(tmp_path, make, cache_env):
    truth = make.mnist(tmp_path)
    read_mnist(tmp_path, "test")
    (f,) = cache_env.iterdir()
    f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        data = read_mnist(tmp_path, "test")
    np.testing.assert_array_equal(data.labels, truth["test"][1])
    assert cache_files(cache_env) == [f.name]


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
    with pytest.raises(DataError, match="does not exist"):
        read_mnist(tmp_path / "nowhere", "test")


def test_mnist_image_label_count_mismatch(tmp_path, make):
    make.mnist(tmp_path, gz=False)
    make.idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros(7, np.uint8), gz=False)
    with pytest.raises(DataError, match="50 images but .* 7 labels"):
        read_mnist(tmp_path, "train")


# ---------------------------------------------------------------------------------------------- SVHN


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


# ---------------------------------------------------------------------------------------------- CIFAR


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
    with pytest.raises(DataError, match="data_batch_3: file missing"):
        read_cifar10(tmp_path, "train")


def test_cifar_nothing_found_lists_names(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", tmp_path, "test")
    msg = str(err.value)
    for name in ("cifar-100-python/", "cifar-100-python.tar.gz", "CIFAR-100-images.zip"):
        assert name in msg


# ---------------------------------------------------------------------------------------------- image folders


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
    with pytest.raises(DataError, match="test/cat/0001.png in .*cannot decode the image"):
        read_cifar10(tmp_path, "test")


def test_image_folder_corrupt_entry_crc(tmp_path, make):
    entries = make.cifar_tree(classes=("cat",), per_class=1, splits=("test",))
    zpath = make.image_zip(tmp_path / "CIFAR-10-images.zip", entries)
    raw = bytearray(zpath.read_bytes())
    raw[100] ^= 0xFF  # inside the stored PNG bytes: the CRC check fails
    zpath.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="0000.png in .*(cannot read it|cannot decode)"):
        read_cifar10(tmp_path, "test")


# ---------------------------------------------------------------------------------------------- TinyImageNet


@pytest.mark.parametrize("as_zip", [True, False])
def test_tinyimagenet_layout(tmp_path, make, as_zip):
    info = make.tiny(tmp_path, n_classes=5, train_classes=(0, 2), n_train=3, n_val=2, as_zip=as_zip,
                     grey_first_val=True)
    wnids, names = tinyimagenet_classes(tmp_path)
    assert list(wnids) == info["wnids"] and list(names) == info["names"]
    train = read_tinyimagenet(tmp_path, "train", classes=[2, 0])
    assert train.images.shape == (6, 64, 64, 3) and train.labels.tolist() == [0, 0, 0, 2, 2, 2]
    assert train.class_names == tuple(info["names"])
    by_wnid = read_tinyimagenet(tmp_path, "train", classes=[info["wnids"][2]])
    assert by_wnid.labels.tolist() == [2, 2, 2]
    val = read_tinyimagenet(tmp_path, "val")
    np.testing.assert_array_equal(val.labels, info["val_labels"])  # from val_annotations.txt
    assert val.images.shape == (10, 64, 64, 3)  # the grey JPEG became RGB
    test = read_tinyimagenet(tmp_path, "test", classes=[1, 4])
    assert sorted(test.labels.tolist()) == [1, 1, 4, 4]


def test_tinyimagenet_cached_zip_read_skips_the_zip(tmp_path, make, monkeypatch):
    make.tiny(tmp_path, train_classes=(1, 3))
    first = read_tinyimagenet(tmp_path, "train", classes=[1, 3])
    first_val = read_tinyimagenet(tmp_path, "val", classes=[0])

    def boom(*a, **k):
        raise AssertionError("opened the zip although everything is cached")

    monkeypatch.setattr(readers._Tiny, "__init__", boom)
    again = read_tinyimagenet(tmp_path, "train", classes=[3, 1])
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.class_names == again.class_names
    np.testing.assert_array_equal(read_tinyimagenet(tmp_path, "val", classes=[0]).images, first_val.images)


def test_tinyimagenet_missing_train_class(tmp_path, make, cache_env):
    info = make.tiny(tmp_path, train_classes=(0, 2))
    with pytest.raises(DataError) as err:
        read_tinyimagenet(tmp_path, "train", classes=[0, 1])
    msg = str(err.value)
    assert f"class 1 ({info['wnids'][1]}" in msg and "train/" in msg and "classes=" in msg
    assert cache_files(cache_env) == []  # class 0 was not decoded either: the check comes first
    with pytest.raises(DataError, match="unknown wnid 'n0000'"):
        read_tinyimagenet(tmp_path, "train", classes=["n0000"])
    with pytest.raises(DataError, match=r"class index 7 out of range 0\.\.4"):
        read_tinyimagenet(tmp_path, "val", classes=[7])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="looked for wnids.txt, tiny-imagenet-200/ and tiny-imagenet-200.zip"):
        read_tinyimagenet(empty, "val")


def test_tinyimagenet_bad_zip(tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="tiny-imagenet-200.zip: not a readable zip archive"):
        read_tinyimagenet(tmp_path, "val")


# ---------------------------------------------------------------------------------------------- by name


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


def test_no_temp_files_left(tmp_path, make, cache_env):
    make.mnist(tmp_path)
    make.cifar(tmp_path, "cifar10")
    read_mnist(tmp_path, "train")
    read_cifar10(tmp_path, "test")
    names = cache_files(cache_env)
    assert len(names) == 2 and all(n.endswith(".npz") and not n.startswith(".") for n in names)


# ---------------------------------------------------------------------------------------------- real data


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
