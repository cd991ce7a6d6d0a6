"""The ``.npz`` cache of decoded datasets: decode a benchmark dataset once, read it back in a second.

A cache file is ``<cache_dir>/<kind>-<digest>.npz`` holding ``images`` uint8 (N, H, W, C), ``labels`` int64
(N,) and ``class_names``; the digest covers :data:`CACHE_FORMAT`, the reader's settings and the fingerprint
(path, size, modification time) of every source file, so a changed file is read again. An unwritable cache
only warns (:func:`save_npz`), a damaged cache file is deleted and rebuilt (:func:`try_load`). Example::

    >>> import numpy as np, tempfile
    >>> from classanchor.data.imageset import ImageSet
    >>> build = lambda: ImageSet(np.zeros((1, 2, 2, 1), np.uint8), [0], ("a",))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cached("demo", {"split": "train"}, build, tmp, True).image_shape
    (2, 2, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .imageset import ImageSet, PathLike

__all__ = ["CACHE_FORMAT", "cache_path", "cached", "file_fingerprint", "save_npz", "try_load"]

CACHE_FORMAT = 2  # bump when any reader's decoded arrays change (2: one decoder, EXIF orientation, 16-bit)


def file_fingerprint(path: Path) -> list:
    """[resolved path, size in bytes, mtime in ns] of a file: part of every cache key."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def cache_path(cache_dir: PathLike | None, kind: str, key: dict) -> Path:
    """The cache file of reader ``kind`` (e.g. "mnist") with settings and source fingerprints ``key``, in
    ``cache_dir``, else ``$CLASSANCHOR_CACHE`` if set, else ``~/.cache/classanchor``."""
    blob = json.dumps({"format": CACHE_FORMAT, "kind": kind, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    if cache_dir is None:
        cache_dir = os.environ.get("CLASSANCHOR_CACHE") or Path.home() / ".cache" / "classanchor"
    return Path(cache_dir).expanduser() / f"{kind}-{digest}.npz"


def save_npz(path: Path, data: ImageSet) -> None:
    """Write ``data`` to ``path`` atomically (:func:`classanchor.io.atomic_write`); warn if it cannot."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=data.images, labels=data.labels,
                     class_names=np.array(data.class_names, dtype=str))

    try:
        atomic_write(path, write)
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {path} ({e}); continuing without it. "
                      f"Set CLASSANCHOR_CACHE or pass cache_dir= to a writable folder.", stacklevel=3)


def try_load(path: Path) -> ImageSet | None:
    """The ImageSet cached in ``path``, or None (no file, or a damaged one: deleted with a warning)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageSet(z["images"], z["labels"], tuple(z["class_names"].tolist()))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # damaged: read the source
        warnings.warn(f"ignoring the unreadable cache file {path} ({e}); reading the source again.",
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def cached(kind: str, key: dict, build: Callable[[], ImageSet], cache_dir: PathLike | None,
           cache: bool) -> ImageSet:
    """The cached ImageSet for (kind, key), or ``build()`` it and store it (``cache`` False: just build)."""
    if not cache:
        return build()
    path = cache_path(cache_dir, kind, key)
    data = try_load(path)
    if data is None:
        data = build()
        save_npz(path, data)
    return data
