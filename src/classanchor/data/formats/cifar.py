"""CIFAR-10 and CIFAR-100 from the official python version or from an image-folder tree / zip.

Accepted (``root`` may be the file / folder itself or a folder holding it): ``cifar-10-python.tar.gz`` or
the extracted ``cifar-10-batches-py/`` (CIFAR-100: ``cifar-100-python.tar.gz`` / ``cifar-100-python/``), or
an image-folder tree ``{train,test}/<official class name>/*.png|jpg`` as a folder or a zip
(``CIFAR-10-images.zip``), read by :mod:`.image_folder`. The pickles are read by an unpickler that only
rebuilds numpy arrays: nothing else in a downloaded file is ever executed.
"""

from __future__ import annotations

import io
import pickle
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..cache import cached, file_fingerprint
from ..imageset import DataError, ImageSet, PathLike
from ._common import REDOWNLOAD, check_root, check_split
from .image_folder import read_image_folder

__all__ = ["CIFAR10_CLASSES", "CIFAR100_CLASSES", "read_cifar10", "read_cifar100"]

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                    "ship", "truck")
CIFAR100_CLASSES: tuple[str, ...] = tuple((
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
).split())


@dataclass(frozen=True)
class _CifarLayout:
    title: str
    folder: str  # extracted python version
    tar: str  # official python archive
    images_folder: str  # image-folder copy, also as <images_folder>.zip
    batches: dict  # split -> member names
    meta: str
    label_key: str
    names_key: str
    classes: tuple[str, ...]


_CIFAR = {
    "cifar10": _CifarLayout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "CIFAR-10-images",
                            {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                            "batches.meta", "labels", "label_names", CIFAR10_CLASSES),
    "cifar100": _CifarLayout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", "CIFAR-100-images",
                             {"train": ("train",), "test": ("test",)},
                             "meta", "fine_labels", "fine_label_names", CIFAR100_CLASSES),
}


class _SafeUnpickler(pickle._Unpickler):
    """Unpickler that only rebuilds the numpy arrays found in the official CIFAR pickles. The pure-Python one:
    its memo is a dict, whereas the C one allocates and zeroes a table as long as the largest memo index, so
    one flipped opcode (``LONG_BINPUT 1476487305``) made it claim 23 GB."""

    _ALLOWED: ClassVar[frozenset] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise DataError(f"{where}: cannot unpickle it ({type(e).__name__}: {e}); {REDOWNLOAD}.") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}; {REDOWNLOAD}.")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_from_pickles(layout: _CifarLayout, blobs: dict[str, bytes], split: str, where: str) -> ImageSet:
    images, labels = [], []
    for member in layout.batches[split]:
        d = _unpickle(blobs[member], f"{where}: {member}")
        if "data" not in d or layout.label_key not in d:
            raise DataError(f"{where}: {member} lacks 'data' or '{layout.label_key}' (keys "
                            f"{sorted(map(str, d))}); this is not the official {layout.title} python "
                            "version: download it again.")
        try:
            x = np.asarray(d["data"])
            y = np.asarray(d[layout.label_key], dtype=np.int64).reshape(-1)
        except (ValueError, TypeError, OverflowError) as e:  # labels that are not integers, ragged data, ...
            raise DataError(f"{where}: {member} holds no image array and label list ({type(e).__name__}: "
                            f"{e}); {REDOWNLOAD}.") from e
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise DataError(f"{where}: {member} data has dtype {x.dtype} shape {x.shape} for {len(y)} "
                            f"labels; expected uint8 (N, 3072); {REDOWNLOAD}.")
        images.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    names = layout.classes
    if layout.meta in blobs:
        meta = _unpickle(blobs[layout.meta], f"{where}: {layout.meta}")
        try:
            if layout.names_key in meta:
                names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout.names_key])
        except (ValueError, TypeError) as e:  # not a list of names, or not UTF-8
            raise DataError(f"{where}: {layout.meta} holds no list of class names ({type(e).__name__}: {e}); "
                            f"{REDOWNLOAD}.") from e
    y = np.concatenate(labels)
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"{where}: labels {y.min()}..{y.max()} outside 0..{len(names) - 1}; {REDOWNLOAD}.")
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), y, names)


def _read_blobs(layout: _CifarLayout, kind: str, path: Path, split: str) -> dict[str, bytes]:
    """The pickled batches of ``split`` and the meta file (if there) from the tar or the extracted folder."""
    wanted = (*layout.batches[split], layout.meta)
    if kind == "pickle-dir":
        blobs = {m: (path / m).read_bytes() for m in wanted if (path / m).is_file()}
    else:
        blobs = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    parent, base = posixpath.split(member.name)
                    if member.isfile() and base in wanted and posixpath.basename(parent) == layout.folder:
                        blobs[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: cannot read the archive ({type(e).__name__}: {e}); {REDOWNLOAD}.") from e
    missing = [m for m in layout.batches[split] if m not in blobs]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} in this {layout.title} python version; download the "
                        f"complete official {layout.tar} again (and extract it, if you gave its folder).")
    return blobs


def _locate_cifar(layout: _CifarLayout, root: Path) -> tuple[str, Path]:
    """('pickle-tar' | 'pickle-dir' | 'images', path) for the CIFAR data in or at ``root``."""
    if root.is_file():
        name = root.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return "pickle-tar", root
        if name.endswith(".zip"):
            return "images", root
        raise DataError(f"{root}: not a {layout.title} file; expected {layout.tar} or an image-folder zip.")
    if (root / layout.batches["test"][0]).is_file() and (root / layout.meta).is_file():
        return "pickle-dir", root
    for kind, name in [("pickle-dir", layout.folder), ("pickle-tar", layout.tar),
                       ("images", f"{layout.images_folder}.zip"), ("images", layout.images_folder)]:
        if (root / name).exists():
            return kind, root / name
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "images", root
    raise DataError(f"no {layout.title} data found in {root}: looked for {layout.folder}/ (python batches), "
                    f"{layout.tar}, {layout.images_folder}.zip, {layout.images_folder}/ (image folders), or "
                    f"train/ and test/ class folders.")


def _read_cifar(variant: str, root: PathLike, split: str, cache_dir, cache, progress) -> ImageSet:
    layout = _CIFAR[variant]
    check_split(split, ("train", "test"), layout.title)
    kind, path = _locate_cifar(layout, check_root(root, layout.title))
    if kind == "images":
        return read_image_folder(path, split, layout.classes, image_size=(32, 32), channels=3,
                                 cache_dir=cache_dir, cache=cache, progress=progress, name=variant)
    wanted = (*layout.batches[split], layout.meta)
    files = [path] if kind == "pickle-tar" else [path / m for m in wanted if (path / m).is_file()]

    def build() -> ImageSet:
        return _cifar_from_pickles(layout, _read_blobs(layout, kind, path, split), split, str(path))

    key = {"split": split, "files": [file_fingerprint(f) for f in files]}
    return cached(variant, key, build, cache_dir, cache)


def read_cifar10(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
                 cache: bool = True, progress: bool = True) -> ImageSet:
    """CIFAR-10: images uint8 (N, 32, 32, 3) RGB, labels 0-9 in the official order (airplane ... truck);
    N = 50000 train, 10000 test."""
    return _read_cifar("cifar10", root, split, cache_dir, cache, progress)


def read_cifar100(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
                  cache: bool = True, progress: bool = True) -> ImageSet:
    """CIFAR-100: images uint8 (N, 32, 32, 3) RGB, fine labels 0-99 in the official order; N = 50000 train,
    10000 test."""
    return _read_cifar("cifar100", root, split, cache_dir, cache, progress)
