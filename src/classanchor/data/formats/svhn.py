"""SVHN (cropped digits) from the official MATLAB v5 files ``{train,test,extra}_32x32.mat``."""

from __future__ import annotations

import numpy as np

from ..cache import cached, file_fingerprint
from ..imageset import DataError, ImageSet, PathLike
from ._common import REDOWNLOAD, check_root, check_split, find_file

__all__ = ["SVHN_CLASSES", "read_svhn"]

SVHN_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def read_svhn(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
              cache: bool = True) -> ImageSet:
    """SVHN from ``root``, the .mat file or a folder holding it (directly or in ``SVHN/`` or ``svhn/``):
    images uint8 (N, 32, 32, 3) and labels 0-9 (the file's label 10 = digit 0)."""
    check_split(split, ("train", "test", "extra"), "SVHN")
    path = check_root(root, "SVHN")
    name = f"{split}_32x32.mat"
    if not path.is_file():
        path = find_file([name], [path, path / "SVHN", path / "svhn"], f"SVHN {split}",
                         f"Download the official cropped-digits file {name}")

    def build() -> ImageSet:
        from scipy.io import loadmat

        try:
            mat = loadmat(path, variable_names=["X", "y"])
        except Exception as e:  # scipy raises ValueError, MatReadError, TypeError, zlib.error, ...
            raise DataError(f"{path}: cannot read the MATLAB file ({type(e).__name__}: {e}); "
                            f"{REDOWNLOAD}.") from e
        if "X" not in mat or "y" not in mat:
            raise DataError(f"{path}: variables 'X' and 'y' not found (found {sorted(mat)}); this is not "
                            f"the official SVHN {name}: download it again.")
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8 or x.shape[3] != y.size:
            raise DataError(f"{path}: X has dtype {x.dtype} shape {x.shape} and y has {y.size} labels; "
                            f"expected uint8 (32, 32, 3, N) with N labels: download it again.")
        labels = y.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() > 10):
            raise DataError(f"{path}: labels must be 1-10 (10 = digit 0), found {labels.min()}..."
                            f"{labels.max()}; {REDOWNLOAD}.")
        return ImageSet(np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels % 10, SVHN_CLASSES)

    return cached("svhn", {"split": split, "files": [file_fingerprint(path)]}, build, cache_dir, cache)
