"""Writers of tiny dataset files in the official formats, for the reader and split tests."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache folder through CLASSANCHOR_CACHE (never ~/.cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(cache))
    return cache


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """An idx file of unsigned bytes (magic 0x0000080<ndim>), gzipped if ``gz``."""
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_mnist(root: Path, per_class=(5, 3), gz: bool = True, torchvision_layout: bool = True) -> dict:
    """MNIST idx files with ``per_class`` = (train, test) images per digit; returns the arrays."""
    rng = np.random.default_rng(1)
    folder = root / "MNIST" / "raw" if torchvision_layout else root
    out = {}
    for split, prefix, n in (("train", "train", per_class[0]), ("test", "t10k", per_class[1])):
        labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
        images = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
        sfx = "-ubyte.gz" if gz else "-ubyte"
        write_idx(folder / f"{prefix}-images-idx3{sfx}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1{sfx}", labels, gz)
        out[split] = (images, labels)
    return out


def make_svhn(root: Path, n: int = 12, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``{split}_32x32.mat`` with X (32, 32, 3, n) and y (n, 1) in 1..10; returns (images NHWC, y)."""
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": y})
    return images, y.ravel()


def _py2_pickle(obj) -> bytes:
    """A protocol-2 pickle with numpy's pre-2.0 module path, like the official (Python 2) CIFAR files."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def make_cifar(root: Path, variant: str = "cifar10", per_class=(2, 1), tar: bool = False,
               marker: int | None = None) -> dict:
    """The official CIFAR python version (folder, or tar.gz if ``tar``); returns {split: (NHWC, labels)}.

    ``marker``: if given, pixel [0, 0, 0] of every test image is set to it (to trace where images came from).
    """
    rng = np.random.default_rng(3 if variant == "cifar10" else 4)
    k = 10 if variant == "cifar10" else 100
    folder = "cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python"
    label_key = "labels" if variant == "cifar10" else "fine_labels"
    files: dict[str, bytes] = {}
    out = {}
    for split, n in (("train", per_class[0]), ("test", per_class[1])):
        labels = rng.permutation(np.repeat(np.arange(k), n))
        data = rng.integers(0, 256, (labels.size, 3072), dtype=np.uint8)
        if split == "test" and marker is not None:
            data[:, 0] = marker
        nhwc = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        out[split] = (nhwc, labels)
        if variant == "cifar10" and split == "train":  # five batches
            for b, idx in enumerate(np.array_split(np.arange(labels.size), 5), start=1):
                files[f"data_batch_{b}"] = _py2_pickle({b"data": data[idx], b"labels": labels[idx].tolist(),
                                                        b"batch_label": b"training batch"})
        else:
            name = "test_batch" if variant == "cifar10" else split
            d = {b"data": data, label_key.encode(): labels.tolist()}
            if variant == "cifar100":
                d[b"coarse_labels"] = (labels // 5).tolist()
            files[name] = _py2_pickle(d)
    if variant == "cifar10":
        files["batches.meta"] = _py2_pickle({b"label_names": [n.encode() for n in CIFAR10]})
    else:
        from classanchor.data.formats.cifar import CIFAR100_CLASSES

        files["meta"] = _py2_pickle({b"fine_label_names": [n.encode() for n in CIFAR100_CLASSES]})
    root.mkdir(parents=True, exist_ok=True)
    if tar:
        name = "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
        with tarfile.open(root / name, "w:gz") as t:
            for member, blob in files.items():
                info = tarfile.TarInfo(f"{folder}/{member}")
                info.size = len(blob)
                t.addfile(info, io.BytesIO(blob))
    else:
        (root / folder).mkdir(exist_ok=True)
        for member, blob in files.items():
            (root / folder / member).write_bytes(blob)
    return out


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buf, format=fmt)
    return buf.getvalue()


def make_image_zip(path: Path, entries: dict[str, np.ndarray], fmt: str = "PNG") -> Path:
    """A zip with ``entries`` = {archive name: HWC uint8 image}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, image in entries.items():
            z.writestr(name, encode(image, fmt))
    return path


def cifar_tree(classes=("truck", "airplane", "cat"), per_class: int = 2, splits=("train", "test"),
               prefix: str = "CIFAR-10-images/", ext: str = "png", seed: int = 5) -> dict[str, np.ndarray]:
    """{'<prefix><split>/<class>/<i>.<ext>': 32x32x3 image} of an image-folder CIFAR tree."""
    rng = np.random.default_rng(seed)
    return {f"{prefix}{s}/{c}/{i:04d}.{ext}": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            for s in splits for c in classes for i in range(per_class)}


def make_tiny(root: Path, n_classes: int = 5, train_classes=(0, 2), n_train: int = 3, n_val: int = 2,
              as_zip: bool = True, grey_first_val: bool = False) -> dict:
    """The official tiny-imagenet-200 layout with ``n_classes`` wnids and train folders only for
    ``train_classes`` (ranks in sorted wnid order). Returns wnids, names and the val labels."""
    rng = np.random.default_rng(6)
    wnids = [f"n{10000000 + 37 * i:08d}" for i in range(n_classes)]
    names = [f"thing {i}, stuff {i}" for i in range(n_classes)]
    entries: dict[str, bytes] = {}
    p = "tiny-imagenet-200/"
    entries[p + "wnids.txt"] = "\n".join(reversed(wnids)).encode() + b"\n"  # unsorted on purpose
    words = [f"{w}\t{n}" for w, n in zip(wnids, names)] + ["n99999999\tunused class"]
    entries[p + "words.txt"] = "\n".join(words).encode() + b"\n"
    for c in train_classes:
        for i in range(n_train):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            entries[f"{p}train/{wnids[c]}/images/{wnids[c]}_{i}.JPEG"] = encode(img, "JPEG")
        entries[f"{p}train/{wnids[c]}/{wnids[c]}_boxes.txt"] = b""
    val_labels = rng.permutation(np.repeat(np.arange(n_classes), n_val))
    rows = []
    for i, c in enumerate(val_labels):
        grey = grey_first_val and i == 0
        img = rng.integers(0, 256, (64, 64) if grey else (64, 64, 3), dtype=np.uint8)
        entries[f"{p}val/images/val_{i}.JPEG"] = encode(img, "JPEG")
        rows.append(f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    entries[p + "val/val_annotations.txt"] = "\n".join(rows).encode() + b"\n"
    root.mkdir(parents=True, exist_ok=True)
    if as_zip:
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as z:
            for name, blob in entries.items():
                z.writestr(name, blob)
    else:
        for name, blob in entries.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)
    return {"wnids": sorted(wnids), "names": [names[wnids.index(w)] for w in sorted(wnids)],
            "val_labels": val_labels}


@pytest.fixture
def make() -> SimpleNamespace:
    """The file writers above, for tests."""
    return SimpleNamespace(idx=write_idx, mnist=make_mnist, svhn=make_svhn, cifar=make_cifar,
                           image_zip=make_image_zip, cifar_tree=cifar_tree, tiny=make_tiny, encode=encode,
                           py2_pickle=_py2_pickle)
