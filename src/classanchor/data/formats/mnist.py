"""MNIST from the official idx files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..cache import cached, file_fingerprint
from ..imageset import DataError, ImageSet, PathLike
from ._common import REDOWNLOAD, check_root, check_split, find_file

__all__ = ["MNIST_CLASSES", "read_mnist"]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
_PREFIX = {"train": "train", "test": "t10k"}


def _find_file(root: Path, split: str, kind: str, ext: str) -> Path:
    """The idx file of ``kind`` ('images' idx3 or 'labels' idx1), gzipped or not."""
    stem = f"{_PREFIX[split]}-{kind}"
    names = [f"{stem}-{ext}-ubyte.gz", f"{stem}-{ext}-ubyte", f"{stem}.{ext}-ubyte.gz", f"{stem}.{ext}-ubyte"]
    dirs = [root, root / "MNIST" / "raw", root / "raw", root / "MNIST"]
    return find_file(names, dirs, f"MNIST {split} {kind}",
                     f"Download the official idx files (e.g. into {root / 'MNIST' / 'raw'})")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes (magic 0x0000080<ndim>), gzipped or not, as a uint8 array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: broken gzip file ({e}); {REDOWNLOAD}.") from e
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path}: not an idx{ndim} file of unsigned bytes (magic 0x{raw[:4].hex()}, expected "
                        f"0x0000080{ndim}); {REDOWNLOAD}.")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, but its header (shape {dims}) needs {expected}; "
                        f"{REDOWNLOAD}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def read_mnist(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
               cache: bool = True) -> ImageSet:
    """MNIST from the official idx files (gzipped or not) in ``root`` or ``root/MNIST/raw`` (torchvision's):
    images uint8 (N, 28, 28, 1) and labels 0-9 (N = 60000 train, 10000 test)."""
    check_split(split, _PREFIX, "MNIST")
    root = check_root(root, "MNIST")
    img_path, lab_path = _find_file(root, split, "images", "idx3"), _find_file(root, split, "labels", "idx1")

    def build() -> ImageSet:
        images, labels = _read_idx(img_path, 3), _read_idx(lab_path, 1)
        if len(images) != len(labels):
            raise DataError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels; "
                            f"one of them is from another release: download both again.")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lab_path}: label {labels.max()} outside 0-9; {REDOWNLOAD}.")
        return ImageSet(images[..., None], labels.astype(np.int64), MNIST_CLASSES)

    key = {"split": split, "files": [file_fingerprint(img_path), file_fingerprint(lab_path)]}
    return cached("mnist", key, build, cache_dir, cache)
