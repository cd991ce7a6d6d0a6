"""Readers of the benchmark datasets' official file formats, decoded once to uint8 arrays and cached.

Every reader returns an :class:`ImageSet`: ``images`` uint8 (N, H, W, C), ``labels`` int64 (N,) and the
dataset's ``class_names`` (label ``i`` is ``class_names[i]``; label -1 = unknown, used by the open-set
splits). Decoded arrays are cached as ``.npz`` files in ``cache_dir`` (default ``$CLASSANCHOR_CACHE`` or
``~/.cache/classanchor``); the cache key holds each source file's path, size and modification time, so a
changed file is read again. Every problem with the input raises :class:`DataError` naming the file and
the fix.

Supported inputs (``root`` may be the file/folder itself or a folder that contains it):

- MNIST: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``, directly in ``root`` or in
  ``root/MNIST/raw`` (torchvision's layout).
- SVHN: ``train_32x32.mat`` / ``test_32x32.mat`` (label 10 means digit 0 and is mapped to 0).
- CIFAR-10 / CIFAR-100: the official python version (``cifar-10-python.tar.gz`` or the extracted
  ``cifar-10-batches-py/``; ``cifar-100-python.tar.gz`` or ``cifar-100-python/``), or an image-folder tree
  ``{train,test}/<official class name>/*.png|jpg`` as a folder or a zip (e.g. ``CIFAR-10-images.zip``).
- TinyImageNet: the official ``tiny-imagenet-200`` layout as a folder or a zip; train images are read
  only for the requested classes; ``split='test'`` means the official ``val`` folder.

Example::

    >>> from classanchor.data.readers import load_dataset
    >>> mnist = load_dataset("mnist", "/data", "train")       # doctest: +SKIP
    >>> mnist.images.shape, mnist.labels[:3]                   # doctest: +SKIP
    ((60000, 28, 28, 1), array([5, 0, 4]))
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import posixpath
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Union

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASETS",
    "MNIST_CLASSES",
    "SVHN_CLASSES",
    "DataError",
    "ImageSet",
    "default_cache_dir",
    "load_dataset",
    "read_cifar10",
    "read_cifar100",
    "read_image_folder",
    "read_mnist",
    "read_svhn",
    "read_tinyimagenet",
    "tinyimagenet_classes",
]

PathLike = Union[str, "os.PathLike[str]"]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
SVHN_CLASSES: tuple[str, ...] = MNIST_CLASSES
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
DATASETS: tuple[str, ...] = ("mnist", "svhn", "cifar10", "cifar100", "tinyimagenet")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_CACHE_FORMAT = 1  # bump when the decoded arrays of any reader change
_PROGRESS_MIN = 500  # show a progress bar when decoding at least this many files
_CHUNK = 256  # files per thread-pool task


class DataError(ValueError):
    """A dataset file is missing, truncated, corrupt or not in the expected format."""


# ----------------------------------------------------------------------------------------------------
# the common return type


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Decoded images with integer labels.

    Attributes:
        images: uint8 array (N, H, W, C), pixel values 0-255, channels last (C = 1 grey or 3 RGB).
        labels: int64 array (N,); ``class_names[labels[i]]`` is the class of image ``i``; -1 = unknown.
        class_names: the names of the label indices 0..len(class_names)-1.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            shape = getattr(images, "shape", None)
            dtype = getattr(images, "dtype", type(images).__name__)
            raise DataError(f"ImageSet.images must be a uint8 array of shape (N, H, W, C); got dtype "
                            f"{dtype}, shape {shape}.")
        if isinstance(self.class_names, str):
            raise DataError("ImageSet.class_names must be a sequence of names, not one string.")
        names = tuple(str(n) for n in self.class_names)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise DataError(f"ImageSet.labels must be a 1-d integer array; got dtype {labels.dtype}, "
                            f"shape {labels.shape}.")
        labels = labels.astype(np.int64, copy=False)
        if len(labels) != len(images):
            raise DataError(f"ImageSet has {len(images)} images but {len(labels)} labels.")
        if labels.size and (labels.min() < -1 or labels.max() >= len(names)):
            raise DataError(f"ImageSet labels must lie in -1..{len(names) - 1} ({len(names)} class names); "
                            f"got min {labels.min()}, max {labels.max()}.")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageSet(n={len(self)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """int64 (num_classes,): images per class (label -1 not counted)."""
        return np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images selected by an integer index array or a boolean mask (N,), as a new ImageSet."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)


# ----------------------------------------------------------------------------------------------------
# cache


def default_cache_dir() -> Path:
    """``$CLASSANCHOR_CACHE`` if set, else ``~/.cache/classanchor``."""
    env = os.environ.get("CLASSANCHOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "classanchor"


def _fingerprint(path: Path) -> list:
    """[resolved path, size in bytes, mtime in ns] of a file: part of every cache key."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _cache_path(cache_dir: PathLike | None, kind: str, key: dict) -> Path:
    blob = json.dumps({"format": _CACHE_FORMAT, "kind": kind, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / f"{kind}-{digest}.npz"


def _load_npz(path: Path) -> ImageSet:
    with np.load(path, allow_pickle=False) as z:
        return ImageSet(z["images"], z["labels"], tuple(z["class_names"].tolist()))


def _save_npz(path: Path, data: ImageSet) -> None:
    """Write ``data`` to ``path`` atomically (temp file, then os.replace); warn if the cache is unwritable."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache may be shared read-only
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=data.images, labels=data.labels,
                     class_names=np.array(data.class_names, dtype=str))
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {path} ({e}); continuing without it. "
                      f"Set CLASSANCHOR_CACHE or pass cache_dir= to a writable folder.", stacklevel=3)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _try_load(path: Path) -> ImageSet | None:
    if not path.is_file():
        return None
    try:
        return _load_npz(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # damaged: read the source
        warnings.warn(f"ignoring the unreadable cache file {path} ({e}); reading the source again.",
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def _cached(kind: str, key: dict, build: Callable[[], ImageSet], cache_dir: PathLike | None,
            cache: bool) -> ImageSet:
    """Return the cached ImageSet for (kind, key), or ``build()`` it and store it."""
    if not cache:
        return build()
    path = _cache_path(cache_dir, kind, key)
    found = _try_load(path)
    if found is not None:
        return found
    data = build()
    _save_npz(path, data)
    return data


# ----------------------------------------------------------------------------------------------------
# low-level helpers: files in a folder or a zip, image decoding


_REDOWNLOAD = "the file is truncated or corrupt: download it again"


class _Files:
    """Read-only view of a folder or a zip archive; names are posix paths relative to it."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file()
        self._zip: zipfile.ZipFile | None = None
        if self.is_zip:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataError(f"{path}: not a readable zip archive ({e}); {_REDOWNLOAD}.") from e

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def names(self) -> list[str]:
        """Every file in a zip (folders excluded). Folders: use ``walk``."""
        assert self._zip is not None
        return [n for n in self._zip.namelist() if not n.endswith("/")]

    def walk(self, sub: str) -> list[str]:
        """Every file below ``sub`` of a folder source, as relative posix paths."""
        top = self.path / sub
        out = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.path).as_posix()
            out.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(filenames))
        return out

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            try:
                self._zip.getinfo(name)
                return True
            except KeyError:
                return False
        return (self.path / name).is_file()

    def describe(self, name: str) -> str:
        return f"{name} in {self.path}" if self.is_zip else str(self.path / name)

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except KeyError as e:
            raise DataError(f"{self.describe(name)}: file missing from the archive; {_REDOWNLOAD}.") from e
        except FileNotFoundError as e:
            raise DataError(f"{self.describe(name)}: file not found.") from e
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise DataError(f"{self.describe(name)}: cannot read it ({e}); {_REDOWNLOAD}.") from e

    def fingerprint(self, names: Sequence[str]) -> list:
        """Cache-key part: the zip file's stat, or the stat of every listed file of a folder."""
        if self.is_zip:
            return _fingerprint(self.path)
        stats = [os.stat(self.path / n) for n in names]
        return [str(self.path.resolve()), list(names), [[s.st_size, s.st_mtime_ns] for s in stats]]


def _decode_one(data: bytes, where: str, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if size is not None and im.size != (size[1], size[0]):
                raise DataError(f"{where}: image is {im.size[0]}x{im.size[1]} pixels (width x height), "
                                f"expected {size[1]}x{size[0]} like the rest of the dataset; remove or "
                                f"replace this file.")
            return np.asarray(im if im.mode == mode else im.convert(mode))
    except DataError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise DataError(f"{where}: cannot decode the image ({type(e).__name__}: {e}); the file is "
                        f"corrupt or not an image: replace it or download the dataset again.") from e


def _decode_images(files: _Files, names: Sequence[str], size: tuple[int, int] | None, channels: int,
                   desc: str, progress: bool) -> np.ndarray:
    """Decode image files (JPEG/PNG/...) to uint8 (N, H, W, channels), in a thread pool.

    ``size`` = (H, W) every image must have; None = the size of the first image.
    """
    from tqdm.auto import tqdm

    mode = {1: "L", 3: "RGB"}[channels]
    n = len(names)
    if size is None:
        if n == 0:
            raise DataError(f"{files.path}: no images to decode.")
        size = _decode_one(files.read(names[0]), files.describe(names[0]), None, mode).shape[:2]
    out = np.empty((n, size[0], size[1], channels), np.uint8)

    def work(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            arr = _decode_one(files.read(names[i]), files.describe(names[i]), size, mode)
            out[i] = arr.reshape(size[0], size[1], channels)
        return hi - lo

    workers = max(1, min(16, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=n, desc=desc, unit="img", disable=not progress or n < _PROGRESS_MIN, dynamic_ncols=True
    ) as bar:
        futures = [pool.submit(work, lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
        try:
            for fut in as_completed(futures):
                bar.update(fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return out


def _check_split(split: str, allowed: Iterable[str], dataset: str) -> None:
    allowed = tuple(allowed)
    if split not in allowed:
        raise ValueError(f"{dataset}: split must be one of {allowed}, got {split!r}.")


def _check_root(root: PathLike, dataset: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{dataset}: data root {path} does not exist.")
    return path


def _first_existing(candidates: Iterable[Path]) -> Path | None:
    for c in candidates:
        if c.exists():
            return c
    return None


def _labels_from_names(found: np.ndarray, class_names: Sequence[str], where: str) -> np.ndarray:
    """Vectorised name -> index lookup (one dict access per *distinct* name); unknown name -> DataError."""
    index = {name: i for i, name in enumerate(class_names)}
    uniq, inverse = np.unique(found, return_inverse=True)
    bad = [u for u in uniq.tolist() if u not in index]
    if bad:
        raise DataError(f"{where}: unknown class folder name(s) {bad}; the folder names must be the "
                        f"official class names: {list(class_names)}. Rename or remove those folders.")
    lut = np.array([index[u] for u in uniq.tolist()], dtype=np.int64)
    return lut[inverse.reshape(-1)]


def _filter_classes(data: ImageSet, classes: Iterable[int] | None, dataset: str) -> ImageSet:
    if classes is None:
        return data
    wanted = _class_indices(classes, data.class_names, dataset)
    return data.subset(np.isin(data.labels, wanted))


def _class_indices(classes: Iterable[int | str], class_names: Sequence[str], dataset: str) -> np.ndarray:
    """Class indices from indices or names; out of range or unknown -> DataError."""
    index = {name: i for i, name in enumerate(class_names)}
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in index:
                raise DataError(f"{dataset}: unknown class name {c!r}; valid names: {list(class_names)}.")
            out.append(index[c])
        else:
            i = int(c)
            if not 0 <= i < len(class_names):
                raise DataError(f"{dataset}: class index {i} out of range 0..{len(class_names) - 1}.")
            out.append(i)
    return np.unique(np.asarray(out, dtype=np.int64))


# ----------------------------------------------------------------------------------------------------
# MNIST


_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def _find_mnist_file(root: Path, split: str, kind: str) -> Path:
    """kind: 'images' (idx3) or 'labels' (idx1)."""
    ext = {"images": "idx3", "labels": "idx1"}[kind]
    prefix = _MNIST_PREFIX[split]
    names = [f"{prefix}-{kind}-{ext}-ubyte.gz", f"{prefix}-{kind}-{ext}-ubyte",
             f"{prefix}-{kind}.{ext}-ubyte.gz", f"{prefix}-{kind}.{ext}-ubyte"]
    dirs = [root, root / "MNIST" / "raw", root / "raw", root / "MNIST"]
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    raise DataError(f"MNIST {split} {kind} not found: looked for {', '.join(names)} in "
                    f"{', '.join(str(d) for d in dirs)}. Download the official idx files "
                    f"(e.g. into {root / 'MNIST' / 'raw'}).")


def _read_bytes_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: broken gzip file ({e}); {_REDOWNLOAD}.") from e


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes (magic 0x0000080<ndim>) as a uint8 array of the header's shape."""
    raw = _read_bytes_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
        magic = raw[:4].hex() if len(raw) >= 4 else raw.hex()
        raise DataError(f"{path}: not an idx{ndim} file of unsigned bytes (magic 0x{magic}, expected "
                        f"0x0000080{ndim}); {_REDOWNLOAD}.")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, but its header (shape {dims}) needs {expected}; "
                        f"{_REDOWNLOAD}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def read_mnist(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
               cache: bool = True) -> ImageSet:
    """MNIST from the official idx files (gzipped or not) in ``root`` or ``root/MNIST/raw``.

    Returns images uint8 (N, 28, 28, 1) and labels 0-9 (N = 60000 train, 10000 test).
    """
    _check_split(split, _MNIST_PREFIX, "MNIST")
    root = _check_root(root, "MNIST")
    img_path = _find_mnist_file(root, split, "images")
    lab_path = _find_mnist_file(root, split, "labels")

    def build() -> ImageSet:
        images = _read_idx(img_path, 3)
        labels = _read_idx(lab_path, 1)
        if len(images) != len(labels):
            raise DataError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels; "
                            f"one of them is from another release: download both again.")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lab_path}: label {labels.max()} outside 0-9; {_REDOWNLOAD}.")
        return ImageSet(images[..., None], labels.astype(np.int64), MNIST_CLASSES)

    key = {"split": split, "files": [_fingerprint(img_path), _fingerprint(lab_path)]}
    return _cached("mnist", key, build, cache_dir, cache)


# ----------------------------------------------------------------------------------------------------
# SVHN


def read_svhn(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
              cache: bool = True) -> ImageSet:
    """SVHN (cropped digits) from the official ``{split}_32x32.mat`` (MATLAB v5) files.

    ``root``: the .mat file, or a folder holding it (directly or in ``SVHN/`` or ``svhn/``).
    Returns images uint8 (N, 32, 32, 3) and labels 0-9 (the file's label 10 = digit 0).
    """
    _check_split(split, ("train", "test", "extra"), "SVHN")
    root = _check_root(root, "SVHN")
    name = f"{split}_32x32.mat"
    if root.is_file():
        path = root
    else:
        dirs = [root, root / "SVHN", root / "svhn"]
        path = _first_existing(d / name for d in dirs)
        if path is None:
            raise DataError(f"SVHN {split} not found: looked for {name} in "
                            f"{', '.join(str(d) for d in dirs)}. Download the official cropped-digits file "
                            f"{name}.")

    def build() -> ImageSet:
        from scipy.io import loadmat

        try:
            mat = loadmat(path, variable_names=["X", "y"])
        except Exception as e:  # scipy raises ValueError, MatReadError, TypeError, zlib.error, ...
            raise DataError(f"{path}: cannot read the MATLAB file ({type(e).__name__}: {e}); "
                            f"{_REDOWNLOAD}.") from e
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
                            f"{labels.max()}; {_REDOWNLOAD}.")
        images = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
        return ImageSet(images, labels % 10, SVHN_CLASSES)

    return _cached("svhn", {"split": split, "files": [_fingerprint(path)]}, build, cache_dir, cache)


# ----------------------------------------------------------------------------------------------------
# CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    title: str
    folder: str  # extracted python version
    tar: str  # official python archive
    images_zip: str  # image-folder zip
    images_folder: str
    batches: dict  # split -> member names
    meta: str
    label_key: str
    names_key: str
    classes: tuple[str, ...]


_CIFAR = {
    "cifar10": _CifarLayout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                            "CIFAR-10-images.zip", "CIFAR-10-images",
                            {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                            "batches.meta", "labels", "label_names", CIFAR10_CLASSES),
    "cifar100": _CifarLayout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                             "CIFAR-100-images.zip", "CIFAR-100-images",
                             {"train": ("train",), "test": ("test",)},
                             "meta", "fine_labels", "fine_label_names", CIFAR100_CLASSES),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds the numpy arrays found in the official CIFAR pickles."""

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
        raise DataError(f"{where}: cannot unpickle it ({type(e).__name__}: {e}); {_REDOWNLOAD}.") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}; {_REDOWNLOAD}.")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_from_pickles(layout: _CifarLayout, blobs: dict[str, bytes], split: str, where: str) -> ImageSet:
    images, labels = [], []
    for member in layout.batches[split]:
        d = _unpickle(blobs[member], f"{where}: {member}")
        if "data" not in d or layout.label_key not in d:
            raise DataError(f"{where}: {member} lacks 'data' or '{layout.label_key}' (keys {sorted(d)}); "
                            f"this is not the official {layout.title} python version: download it again.")
        x = np.asarray(d["data"])
        y = np.asarray(d[layout.label_key], dtype=np.int64).reshape(-1)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise DataError(f"{where}: {member} data has dtype {x.dtype} shape {x.shape} for {len(y)} "
                            f"labels; expected uint8 (N, 3072); {_REDOWNLOAD}.")
        images.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    names = layout.classes
    if layout.meta in blobs:
        meta = _unpickle(blobs[layout.meta], f"{where}: {layout.meta}")
        if layout.names_key in meta:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout.names_key])
    y = np.concatenate(labels)
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"{where}: labels {y.min()}..{y.max()} outside 0..{len(names) - 1}; {_REDOWNLOAD}.")
    return ImageSet(np.ascontiguousarray(np.concatenate(images)), y, names)


def _read_cifar_tar(layout: _CifarLayout, path: Path, split: str) -> ImageSet:
    wanted = set(layout.batches[split]) | {layout.meta}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = posixpath.basename(member.name)
                if member.isfile() and base in wanted and posixpath.basename(
                        posixpath.dirname(member.name)) == layout.folder:
                    f = tar.extractfile(member)
                    assert f is not None
                    blobs[base] = f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read the archive ({type(e).__name__}: {e}); {_REDOWNLOAD}.") from e
    missing = [m for m in layout.batches[split] if m not in blobs]
    if missing:
        raise DataError(f"{path}: {', '.join(f'{layout.folder}/{m}' for m in missing)} not in the archive; "
                        f"this is not the complete official {layout.tar}: download it again.")
    return _cifar_from_pickles(layout, blobs, split, str(path))


def _read_cifar_folder(layout: _CifarLayout, folder: Path, split: str) -> ImageSet:
    blobs = {}
    for member in (*layout.batches[split], layout.meta):
        p = folder / member
        if p.is_file():
            blobs[member] = p.read_bytes()
        elif member != layout.meta:
            raise DataError(f"{p}: file missing from the {layout.title} python version; download "
                            f"{layout.tar} again and extract it.")
    return _cifar_from_pickles(layout, blobs, split, str(folder))


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
    candidates = [("pickle-dir", root / layout.folder), ("pickle-tar", root / layout.tar),
                  ("images", root / layout.images_zip), ("images", root / layout.images_folder)]
    for kind, path in candidates:
        if path.exists():
            return kind, path
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "images", root
    raise DataError(f"no {layout.title} data found in {root}: looked for {layout.folder}/ (python batches), "
                    f"{layout.tar}, {layout.images_zip}, {layout.images_folder}/ (image folders), or "
                    f"train/ and test/ class folders.")


def _read_cifar(variant: str, root: PathLike, split: str, cache_dir, cache, progress) -> ImageSet:
    layout = _CIFAR[variant]
    _check_split(split, ("train", "test"), layout.title)
    root = _check_root(root, layout.title)
    kind, path = _locate_cifar(layout, root)
    if kind == "images":
        return read_image_folder(path, split, layout.classes, image_size=(32, 32), channels=3,
                                 cache_dir=cache_dir, cache=cache, progress=progress, name=variant)
    if kind == "pickle-tar":
        files = [_fingerprint(path)]
        build = lambda: _read_cifar_tar(layout, path, split)
    else:
        members = [path / m for m in (*layout.batches[split], layout.meta) if (path / m).is_file()]
        files = [_fingerprint(m) for m in members]
        build = lambda: _read_cifar_folder(layout, path, split)
    return _cached(variant, {"split": split, "files": files}, build, cache_dir, cache)


def read_cifar10(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
                 cache: bool = True, progress: bool = True) -> ImageSet:
    """CIFAR-10 from the python version (tar.gz or extracted folder) or an image-folder tree / zip.

    Returns images uint8 (N, 32, 32, 3) RGB and labels 0-9 in the official order (airplane ... truck);
    N = 50000 train, 10000 test.
    """
    return _read_cifar("cifar10", root, split, cache_dir, cache, progress)


def read_cifar100(root: PathLike, split: str = "train", *, cache_dir: PathLike | None = None,
                  cache: bool = True, progress: bool = True) -> ImageSet:
    """CIFAR-100 (fine labels 0-99, official order) from the python version or an image-folder tree / zip.

    Returns images uint8 (N, 32, 32, 3) RGB; N = 50000 train, 10000 test.
    """
    return _read_cifar("cifar100", root, split, cache_dir, cache, progress)


# ----------------------------------------------------------------------------------------------------
# image folders


def _is_image(name: str) -> bool:
    base = posixpath.basename(name)
    return (base.lower().endswith(_IMAGE_SUFFIXES) and not base.startswith(".")
            and not name.startswith("__MACOSX/"))


def read_image_folder(root: PathLike, split: str | None, class_names: Sequence[str] | None = None, *,
                      image_size: tuple[int, int] | None = None, channels: int = 3,
                      cache_dir: PathLike | None = None, cache: bool = True, progress: bool = True,
                      name: str = "images") -> ImageSet:
    """Images in ``<split>/<class name>/<file>`` folders, as a folder tree or a zip of it.

    Args:
        root: the folder, or a zip whose entries end in ``<split>/<class name>/<file>`` (any prefix).
        split: the split folder name (e.g. "train"); None = class folders directly under ``root``.
        class_names: label i = class_names[i] (e.g. the official list); None = sorted folder names.
            A folder whose name is not in the list raises DataError.
        image_size: (H, W) every image must have (DataError otherwise); None = the first image's size.
        channels: 3 (RGB) or 1 (grey); images are converted to it.
    Returns images uint8 (N, H, W, channels), sorted by class then file name.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    root = _check_root(root, name)
    settings = {"split": split, "classes": None if class_names is None else list(class_names),
                "size": image_size, "channels": channels}
    if cache and root.is_file():  # a zip: its stat covers its entries, so look in the cache before opening it
        found = _try_load(_cache_path(cache_dir, name, {**settings, "source": _fingerprint(root)}))
        if found is not None:
            return found
    with closing(_Files(root)) as files:
        if files.is_zip:
            paths = [n for n in files.names() if _is_image(n)]
            depth = 3 if split is not None else 2
            paths = [n for n in paths if n.count("/") >= depth - 1
                     and (split is None or n.split("/")[-3] == split)]
            where = f"{root} (entries .../{split + '/' if split else ''}<class>/<file>)"
        else:
            sub = split if split is not None else "."
            if not (root / sub).is_dir():
                raise DataError(f"{name}: split folder {root / sub} not found.")
            paths = [n for n in files.walk(sub) if _is_image(n) and n.count("/") >= (2 if split else 1)]
            where = str(root / sub)
        if not paths:
            raise DataError(f"{name}: no images found in {where}; expected "
                            f"{split + '/' if split else ''}<class name>/<image file> "
                            f"with a suffix in {_IMAGE_SUFFIXES}.")
        folder = np.array([p.split("/")[-2] for p in paths])
        if class_names is None:
            class_names = tuple(sorted(set(folder.tolist())))
        labels = _labels_from_names(folder, class_names, where)
        order = np.lexsort((np.array(paths), labels))
        paths = [paths[i] for i in order]
        labels = labels[order]

        def build() -> ImageSet:
            images = _decode_images(files, paths, image_size, channels, f"decoding {name} {split or ''}",
                                    progress)
            return ImageSet(images, labels, tuple(class_names))

        return _cached(name, {**settings, "source": files.fingerprint(paths)}, build, cache_dir, cache)


# ----------------------------------------------------------------------------------------------------
# TinyImageNet


class _Tiny:
    """The official tiny-imagenet-200 layout inside a folder or a zip."""

    FOLDER = "tiny-imagenet-200"

    def __init__(self, root: Path):
        root = self.locate(root)
        self.files = _Files(root)
        if self.files.is_zip:
            metas = sorted((n for n in self.files.names() if posixpath.basename(n) == "wnids.txt"), key=len)
            if not metas:
                self.files.close()
                raise DataError(f"{root}: no wnids.txt in the zip; this is not the official "
                                f"{self.FOLDER} layout: download it again.")
            self.prefix = metas[0][: -len("wnids.txt")]
        else:
            self.prefix = ""
        try:
            self.wnids, self.names = self._classes()
        except BaseException:
            self.files.close()
            raise

    @classmethod
    def locate(cls, root: Path) -> Path:
        """The tiny-imagenet-200 folder or zip at or in ``root`` (without opening it)."""
        if root.is_dir() and not (root / "wnids.txt").is_file():
            sub = _first_existing([root / cls.FOLDER, root / f"{cls.FOLDER}.zip"])
            if sub is None:
                raise DataError(f"no TinyImageNet data found in {root}: looked for wnids.txt, "
                                f"{cls.FOLDER}/ and {cls.FOLDER}.zip (the official tiny-imagenet-200 "
                                f"layout).")
            return sub
        return root

    def close(self) -> None:
        self.files.close()

    def _text(self, name: str) -> str:
        return self.files.read(self.prefix + name).decode("utf-8", errors="replace")

    def _classes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        wnids = sorted({w.strip() for w in self._text("wnids.txt").split()} - {""})
        if not wnids:
            raise DataError(f"{self.files.describe(self.prefix + 'wnids.txt')}: empty; download it again.")
        words: dict[str, str] = {}
        if self.files.exists(self.prefix + "words.txt"):
            for line in self._text("words.txt").splitlines():
                wnid, _, text = line.partition("\t")
                words[wnid.strip()] = text.strip()
        return tuple(wnids), tuple(words.get(w) or w for w in wnids)

    def class_indices(self, classes: Iterable[int | str] | None) -> np.ndarray:
        if classes is None:
            return np.arange(len(self.wnids))
        index = {w: i for i, w in enumerate(self.wnids)}
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in index:
                    raise DataError(f"TinyImageNet: unknown wnid {c!r}; wnids.txt lists {len(self.wnids)} "
                                    f"classes ({', '.join(self.wnids[:5])}, ...).")
                out.append(index[c])
            else:
                i = int(c)
                if not 0 <= i < len(self.wnids):
                    raise DataError(f"TinyImageNet: class index {i} out of range 0..{len(self.wnids) - 1}.")
                out.append(i)
        return np.unique(np.asarray(out, dtype=np.int64))

    def train_files(self, cls: int) -> list[str]:
        wnid = self.wnids[cls]
        folder = f"{self.prefix}train/{wnid}/images/"
        if self.files.is_zip:
            if not hasattr(self, "_zip_train"):
                groups: dict[str, list[str]] = {}
                start = f"{self.prefix}train/"
                for n in self.files.names():
                    if n.startswith(start) and _is_image(n):
                        groups.setdefault(n[len(start):].split("/", 1)[0], []).append(n)
                self._zip_train = groups
            names = sorted(n for n in self._zip_train.get(wnid, []) if n.startswith(folder))
        else:
            d = self.files.path / folder
            names = sorted(folder + f for f in os.listdir(d) if _is_image(f)) if d.is_dir() else []
        if not names:
            raise DataError(f"TinyImageNet: no train images for class {cls} ({wnid}, "
                            f"{self.names[cls]!r}): expected {folder}*.JPEG in {self.files.path}. This copy "
                            f"lacks that class's train folder: request only classes it has (classes=) or "
                            f"use the complete official {self.FOLDER}.zip.")
        return names

    def val_files(self) -> tuple[list[str], np.ndarray]:
        where = self.files.describe(self.prefix + "val/val_annotations.txt")
        if not self.files.exists(self.prefix + "val/val_annotations.txt"):
            raise DataError(f"TinyImageNet: {where} not found; the val split needs it: download "
                            f"{self.FOLDER}.zip again.")
        rows = [line.split("\t") for line in self._text("val/val_annotations.txt").splitlines() if line.strip()]
        if any(len(r) < 2 for r in rows):
            raise DataError(f"{where}: lines must be '<file>\\t<wnid>\\t...'; {_REDOWNLOAD}.")
        names = [f"{self.prefix}val/images/{r[0].strip()}" for r in rows]
        labels = _labels_from_names(np.array([r[1].strip() for r in rows]), self.wnids, where)
        return names, labels


def tinyimagenet_classes(root: PathLike) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, names) of TinyImageNet: class i = i-th wnid in sorted order; names from words.txt."""
    tiny = _Tiny(_check_root(root, "TinyImageNet"))
    try:
        return tiny.wnids, tiny.names
    finally:
        tiny.close()


def read_tinyimagenet(root: PathLike, split: str = "train", classes: Iterable[int | str] | None = None, *,
                      cache_dir: PathLike | None = None, cache: bool = True,
                      progress: bool = True) -> ImageSet:
    """TinyImageNet from the official ``tiny-imagenet-200`` layout (a folder or its zip).

    Args:
        split: "train" (``train/<wnid>/images``) or "val" (``val/images`` + ``val_annotations.txt``);
            "test" is a synonym of "val" (the benchmark's test split).
        classes: class indices (rank of the wnid in sorted order, 0-199) or wnids to read; None = all.
            Train images are read only for these classes, so the other train folders may be absent.
    Returns images uint8 (N, 64, 64, 3) RGB (grey JPEGs are converted), labels 0-199; class_names are the
    words.txt names of all classes. Train images are cached per class, val images all together.
    """
    _check_split(split, ("train", "val", "test"), "TinyImageNet")
    split = "train" if split == "train" else "val"
    classes = None if classes is None else list(classes)
    source = _Tiny.locate(_check_root(root, "TinyImageNet"))
    if cache and source.is_file() and (classes is None or all(not isinstance(c, str) for c in classes)):
        found = _tiny_zip_cached(source, split, classes, cache_dir)
        if found is not None:  # everything cached: the zip is not even opened
            return found
    tiny = _Tiny(source)
    try:
        wanted = tiny.class_indices(classes)
        if split == "train":
            return _read_tiny_train(tiny, wanted, cache_dir, cache, progress)
        return _read_tiny_val(tiny, wanted, cache_dir, cache, progress)
    finally:
        tiny.close()


def _tiny_key(files: _Files, split: str, names: Sequence[str], cls: int | None = None) -> dict:
    """Cache key of TinyImageNet train images of class ``cls``, or of all val images (cls None)."""
    return {"split": split, "class": cls, "source": files.fingerprint(names)}


def _tiny_zip_cached(source: Path, split: str, classes, cache_dir) -> ImageSet | None:
    """The requested images from the cache alone (zip sources: the key is the zip's stat), else None."""
    fp = _fingerprint(source)
    if split == "val":
        data = _try_load(_cache_path(cache_dir, "tinyimagenet", {"split": "val", "class": None, "source": fp}))
        if data is None:
            return None
        if classes is None:
            return data
        return data.subset(np.isin(data.labels, _class_indices(classes, data.class_names, "TinyImageNet")))
    if classes is None:
        return None  # "all classes" needs the class list from the zip
    parts, names = [], None
    for c in np.unique(np.asarray(list(classes), dtype=np.int64)).tolist():
        key = {"split": "train", "class": c, "source": fp}
        found = _try_load(_cache_path(cache_dir, "tinyimagenet", key))
        if found is None:
            return None
        parts.append(found)
        names = found.class_names
    if not parts:
        return None
    return ImageSet(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                    names)


def _read_tiny_train(tiny: _Tiny, wanted: np.ndarray, cache_dir, cache: bool, progress: bool) -> ImageSet:
    files = tiny.files
    lists = {int(c): tiny.train_files(int(c)) for c in wanted}  # raises for a missing class first
    keys = {c: _tiny_key(files, "train", lists[c], c) for c in lists}
    parts: dict[int, np.ndarray] = {}
    if cache:
        for c in lists:
            found = _try_load(_cache_path(cache_dir, "tinyimagenet", keys[c]))
            if found is not None:
                parts[c] = found.images
    todo = [c for c in lists if c not in parts]
    if todo:
        names = [n for c in todo for n in lists[c]]
        images = _decode_images(files, names, (64, 64), 3, "decoding tinyimagenet train", progress)
        bounds = np.cumsum([0] + [len(lists[c]) for c in todo])
        for c, lo, hi in zip(todo, bounds[:-1], bounds[1:]):
            parts[c] = images[lo:hi]
            if cache:
                one = ImageSet(parts[c], np.full(hi - lo, c, np.int64), tiny.names)
                _save_npz(_cache_path(cache_dir, "tinyimagenet", keys[c]), one)
    order = [int(c) for c in wanted]
    counts = [len(parts[c]) for c in order]
    images = np.concatenate([parts[c] for c in order]) if order else np.empty((0, 64, 64, 3), np.uint8)
    labels = np.repeat(np.asarray(order, dtype=np.int64), counts)
    return ImageSet(images, labels, tiny.names)


def _read_tiny_val(tiny: _Tiny, wanted: np.ndarray, cache_dir, cache: bool, progress: bool) -> ImageSet:
    names, labels = tiny.val_files()

    def build() -> ImageSet:
        images = _decode_images(tiny.files, names, (64, 64), 3, "decoding tinyimagenet val", progress)
        return ImageSet(images, labels, tiny.names)

    data = _cached("tinyimagenet", _tiny_key(tiny.files, "val", names), build, cache_dir, cache)
    if len(wanted) == len(tiny.wnids):
        return data
    return data.subset(np.isin(data.labels, wanted))


# ----------------------------------------------------------------------------------------------------
# by name


_ALIASES = {"mnist": "mnist", "svhn": "svhn", "cifar10": "cifar10", "cifar100": "cifar100",
            "tinyimagenet": "tinyimagenet", "tinyimagenet200": "tinyimagenet"}


def _canonical(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {list(DATASETS)}.")
    return _ALIASES[key]


def load_dataset(name: str, root: PathLike, split: str = "train",
                 classes: Iterable[int | str] | None = None, *, cache_dir: PathLike | None = None,
                 cache: bool = True, progress: bool = True) -> ImageSet:
    """Read a dataset by name from the files found in ``root`` (see the module docstring for layouts).

    Args:
        name: one of ``DATASETS`` (case and punctuation ignored: "CIFAR-10", "tiny-imagenet" work).
        root: a folder holding the dataset files (or the file/folder itself).
        split: "train" or "test" (TinyImageNet "test" = its official val folder).
        classes: keep only these class indices (or names); labels keep their original values.
    Returns an ImageSet with images uint8 (N, H, W, C).
    """
    dataset = _canonical(name)
    if dataset == "tinyimagenet":
        return read_tinyimagenet(root, split, classes, cache_dir=cache_dir, cache=cache, progress=progress)
    if dataset == "mnist":
        data = read_mnist(root, split, cache_dir=cache_dir, cache=cache)
    elif dataset == "svhn":
        data = read_svhn(root, split, cache_dir=cache_dir, cache=cache)
    elif dataset == "cifar10":
        data = read_cifar10(root, split, cache_dir=cache_dir, cache=cache, progress=progress)
    else:
        data = read_cifar100(root, split, cache_dir=cache_dir, cache=cache, progress=progress)
    return _filter_classes(data, classes, dataset)
