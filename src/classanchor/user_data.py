"""Your own images: an image folder (one sub-folder per class) read into train / val / test arrays.

Layout::

    DATA/<class name>/[any sub-folders/]<image file>

``DATA`` is a folder, a zip, or a folder inside a zip written as one path (``photos.zip/photos/train``).
Wrapper folders holding nothing but one folder are entered automatically (a zip of ``photos/`` works);
a folder holding ``train/`` and ``test/`` split folders is refused with the path to use instead.

Every image, of any size and mode, goes through :func:`decode_image`: EXIF orientation applied, converted
to RGB (or grey for a grey model), stretched to ``S x S`` pixels with PIL's bilinear filter, uint8. The
saved model records this, and :mod:`classanchor.predictor` reuses the very same function, so training and
prediction see identically prepared pixels.

Bad files never stop a run: a non-image file, a file outside a class folder, an unreadable or truncated
image is skipped and listed (:class:`SkippedFile`) with its path and the reason. An empty folder, a known
class without images, or a class name that is not a folder raise :class:`DataError` naming the problem.

Example::

    >>> data = load_user_data("photos.zip", known=["cat", "dog", "bird"], unknown=["fox"])  # doctest: +SKIP
    >>> data.train.images.shape, data.known_names                                          # doctest: +SKIP
    ((2400, 32, 32, 3), ('cat', 'dog', 'bird'))
"""

from __future__ import annotations

import io
import os
import posixpath
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.readers import DataError, ImageSet
from .data.splits import train_val_split

__all__ = [
    "IMAGE_SUFFIXES",
    "DataError",
    "Decoded",
    "FolderListing",
    "ImageSource",
    "SkippedFile",
    "UserData",
    "UserTrainConfig",
    "decode_files",
    "decode_image",
    "list_image_folder",
    "load_labelled_folder",
    "load_user_data",
    "prepare_image",
    "train_on_folder",
    "user_recipe",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SPLIT_FOLDER_NAMES = frozenset({"train", "test", "val", "valid", "validation"})
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
RESIZE_RULE = "EXIF orientation applied, converted to RGB or grey, stretched to SxS with PIL bilinear"
_CHUNK = 64  # files per thread-pool task


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used: its path (zip entries as ``archive.zip/inner/path``) and why."""

    path: str
    reason: str


# ----------------------------------------------------------------------------------------------------
# where the files are: a folder, a zip, or a folder inside a zip


def _hidden(name: str) -> bool:
    return name.startswith("__MACOSX/") or any(part.startswith(".") for part in name.split("/"))


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


class ImageSource:
    """Read-only view of a folder, a zip, or a folder inside a zip (``archive.zip/inner/folder``).

    A path naming one file inside a zip (``archive.zip/inner/cat.jpg``) gives a source holding just that file.

    ``names()`` lists every non-hidden file below it as a posix path relative to it (sorted);
    ``read(name)`` returns its bytes; ``where(name)`` the path to show to a person.
    Use it as a context manager (a zip stays open until ``close()``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.zip_path, self.prefix = _locate(self.path)
        self._zip: zipfile.ZipFile | None = None
        self._zip_names: list[str] | None = None
        self.single_file = False  # the path names one file inside a zip: names() is just that file
        if self.zip_path is not None:
            try:
                self._zip = zipfile.ZipFile(self.zip_path)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise DataError(f"{self.zip_path}: not a readable zip archive ({err}); the file is damaged or "
                                "not a zip: copy it again.") from err
            self._zip_names = self._list_zip()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    @property
    def is_zip(self) -> bool:
        return self.zip_path is not None

    def _list_zip(self) -> list[str]:
        assert self._zip is not None
        if self.prefix and self.prefix in set(self._zip.namelist()):  # one file inside the zip
            self.prefix, _, name = self.prefix.rpartition("/")
            self.path = self.path.parent
            self.single_file = True
            return [name]
        start = self.prefix + "/" if self.prefix else ""
        names = sorted(n[len(start):] for n in self._zip.namelist()
                       if n.startswith(start) and not n.endswith("/") and not _hidden(n))
        if self.prefix and not names:
            tops = sorted({n.split("/", 1)[0] for n in self._zip.namelist() if not _hidden(n)})
            raise DataError(f"{self.path}: the zip {self.zip_path} has no entries under '{self.prefix}/'; "
                            f"its top-level entries are {tops[:20]}.")
        return [n for n in names if n]

    def names(self) -> list[str]:
        """Every non-hidden file below this source (recursively), sorted posix paths relative to it."""
        if self._zip_names is not None:
            return list(self._zip_names)
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.path).as_posix()
            out.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(filenames) if not f.startswith("."))
        return out

    def where(self, name: str) -> str:
        return posixpath.join(str(self.path), name) if self.is_zip else str(self.path / name)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(f"{self.prefix}/{name}" if self.prefix else name)
        return (self.path / name).read_bytes()


def _locate(path: Path) -> tuple[Path | None, str]:
    """(zip file, inner folder) for a zip or a path inside one; (None, '') for a folder."""
    if path.is_dir():
        return None, ""
    for parent in (path, *path.parents):
        if parent.is_file():
            if not zipfile.is_zipfile(parent):
                if parent == path:
                    raise DataError(f"{path}: is a file, not a folder or a zip of image folders.")
                raise DataError(f"{path}: {parent} is a file, not a folder or a zip.")
            rel = path.relative_to(parent).as_posix()
            return parent, "" if rel == "." else rel.strip("/")
        if parent.exists():
            break
    raise DataError(f"{path}: no such folder or zip file.")


# ----------------------------------------------------------------------------------------------------
# decoding: one function for training and prediction


def _reason(err: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image PIL can read (unknown format or not an image at all)"
    text = str(err)
    if "truncated" in text:
        return f"truncated image file ({text})"
    return f"cannot decode the image ({type(err).__name__}: {text})"


def decode_image(data: bytes, size: int, channels: int) -> tuple[np.ndarray, str]:
    """One encoded image -> (uint8 (size, size, channels) array, the file's own PIL mode).

    JPEGs much larger than ``size`` are decoded at a reduced scale first (``Image.draft``, fast; training
    and prediction both do it), then :func:`prepare_image`. Raises PIL's errors for unreadable or
    truncated data.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        mode = im.mode
        im.draft("RGB" if channels == 3 else "L", (size, size))
        im.load()  # a truncated file raises here
        return prepare_image(im, size, channels)[0], mode


def prepare_image(im, size: int, channels: int) -> tuple[np.ndarray, str]:
    """A PIL image -> (uint8 (size, size, channels) array, its original mode).

    EXIF orientation applied; converted to RGB (channels 3) or grey (channels 1); stretched to
    ``size x size`` with PIL's bilinear filter (antialiased when shrinking).
    """
    from PIL import Image, ImageOps

    mode = im.mode
    target = "RGB" if channels == 3 else "L"
    im = ImageOps.exif_transpose(im)
    if im.mode != target:
        im = im.convert(target)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8).reshape(size, size, channels), mode


def conversion_name(mode: str, channels: int) -> str | None:
    """'grey -> RGB', 'RGBA -> RGB', 'colour -> grey', ... or None when the image already has that mode."""
    grey = mode in GREY_MODES
    if channels == 3:
        if mode == "RGB":
            return None
        return "grey -> RGB" if grey else f"{'palette' if mode == 'P' else mode} -> RGB"
    return None if grey else "colour -> grey"


@dataclass
class Decoded:
    """The result of :func:`decode_files`.

    Attributes:
        images: uint8 (N_ok, S, S, C), in the order of the names that decoded.
        ok: bool (N,) per requested name: decoded (True) or skipped (False).
        skipped: the names that failed, with the reason.
        converted: how many images were converted, by kind (e.g. ``{'grey -> RGB': 3}``).
        grey: bool (N_ok,) the file itself was grey.
    """

    images: np.ndarray
    ok: np.ndarray
    skipped: list[SkippedFile] = field(default_factory=list)
    converted: Counter = field(default_factory=Counter)
    grey: np.ndarray | None = None


def decode_files(read: Callable[[int], bytes], where: Sequence[str], size: int, channels: int | None, *,
                 progress: bool = True, desc: str = "decoding", workers: int | None = None) -> Decoded:
    """Decode files ``0..N-1`` (``read(i)`` gives the bytes, ``where[i]`` the display path) in a thread pool.

    ``channels`` None = automatic: 1 if every image is grey, else 3 (grey images converted to RGB).
    A file that cannot be read or decoded is skipped and listed, never fatal.
    """
    from tqdm.auto import tqdm

    n = len(where)
    decode_channels = 3 if channels is None else channels
    out = np.empty((n, size, size, decode_channels), np.uint8)
    ok = np.zeros(n, bool)
    grey = np.zeros(n, bool)
    modes: list[str | None] = [None] * n
    errors: dict[int, str] = {}

    def work(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            try:
                blob = read(i)
            except Exception as err:  # noqa: BLE001 - OSError, zipfile.BadZipFile, zlib.error, KeyError
                errors[i] = f"cannot read the file ({type(err).__name__}: {err})"
                continue
            try:
                out[i], modes[i] = decode_image(blob, size, decode_channels)
            except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
                errors[i] = _reason(err)
                continue
            ok[i] = True
            grey[i] = modes[i] in GREY_MODES
        return hi - lo

    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(total=n, desc=desc, unit="img", disable=not progress or n < 500,
                                                   dynamic_ncols=True, mininterval=1.0) as bar:
        for done in pool.map(lambda lo: work(lo, min(lo + _CHUNK, n)), range(0, n, _CHUNK)):
            bar.update(done)
    images = out[ok]
    grey = grey[ok]
    final_channels = channels if channels is not None else (1 if ok.any() and grey.all() else 3)
    if final_channels == 1 and decode_channels == 3:
        images = np.ascontiguousarray(images[..., :1])  # grey decoded as RGB: R = G = B
    converted = Counter(c for m in modes if m is not None
                        if (c := conversion_name(m, final_channels)) is not None)
    skipped = [SkippedFile(where[i], errors[i]) for i in sorted(errors)]
    return Decoded(images, ok, skipped, converted, grey)


# ----------------------------------------------------------------------------------------------------
# class folders


@dataclass(frozen=True)
class FolderListing:
    """The class folders of an image folder, before any decoding.

    Attributes:
        source: the path given by the user; root: the folder actually used (wrapper folders entered).
        classes: every class folder name, sorted.
        files: class name -> image file names (relative to ``source``), sorted.
        skipped: non-image files and files outside any class folder.
        folders: every first-level folder, also those without images.
    """

    source: str
    root: str
    classes: tuple[str, ...]
    files: dict[str, list[str]]
    skipped: tuple[SkippedFile, ...]
    folders: tuple[str, ...] = ()

    def count(self, name: str) -> int:
        return len(self.files.get(name, []))


def list_image_folder(source: ImageSource) -> FolderListing:
    """Group the files of ``source`` by class folder (the first folder level below the root)."""
    names = source.names()
    prefix = ""
    while True:  # enter a wrapper folder: nothing else at this level and no files directly inside it
        here = [n[len(prefix):] for n in names if n.startswith(prefix)]
        tops = {n.split("/", 1)[0] for n in here}
        if len(tops) != 1 or any("/" not in n for n in here):
            break
        top = tops.pop()
        if any("/" not in n[len(top) + 1:] for n in here):
            break  # the single folder holds images itself: it is a class folder
        prefix += top + "/"
    root = source.where(prefix.rstrip("/")) if prefix else str(source.path)
    folders = {n[len(prefix):].split("/", 1)[0] for n in names if n.startswith(prefix) and "/" in n[len(prefix):]}
    if not source.is_zip and (source.path / prefix).is_dir():
        folders |= {e.name for e in os.scandir(source.path / prefix) if e.is_dir() and not e.name.startswith(".")}
    files: dict[str, list[str]] = {}
    skipped = []
    for name in names:
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if "/" not in rel:
            skipped.append(SkippedFile(source.where(name), "not inside a class folder"))
        elif not _is_image_name(rel):
            suffix = posixpath.splitext(rel)[1] or "no suffix"
            skipped.append(SkippedFile(source.where(name), f"not an image file ({suffix}; images end in "
                                                           f"{', '.join(IMAGE_SUFFIXES[:4])}, ...)"))
        else:
            files.setdefault(rel.split("/", 1)[0], []).append(name)
    if not files:
        detail = f" ({len(skipped)} other files skipped, e.g. {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise DataError(f"{root}: no images found{detail}; expected one sub-folder per class holding image "
                        f"files ({', '.join(IMAGE_SUFFIXES)}).")
    classes = tuple(sorted(files))
    splits = [c for c in classes if c.lower() in SPLIT_FOLDER_NAMES]
    if splits and all(all(posixpath.relpath(n, prefix + c).count("/") >= 1 for n in files[c]) for c in splits):
        example = posixpath.join(str(source.path), prefix + ("train" if "train" in splits else splits[0]))
        raise DataError(f"{root} holds split folders ({', '.join(splits)}) rather than class folders; point at "
                        f"one of them, e.g. {example}")
    return FolderListing(str(source.path), root, classes, files, tuple(skipped), tuple(sorted(folders)))


def _parse_names(names: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = names.split(",")
    out = tuple(n.strip() for n in names if n.strip())
    if len(set(out)) != len(out):
        repeated = sorted({n for n in out if out.count(n) > 1})
        raise DataError(f"class name(s) {repeated} given twice.")
    return out


def _check_names(names: Sequence[str], listing: FolderListing, role: str) -> None:
    imageless = [n for n in names if n not in listing.files and n in listing.folders]
    if imageless:
        raise DataError(f"{role} class folder(s) {imageless} in {listing.root} hold no image files; add images "
                        f"({', '.join(IMAGE_SUFFIXES[:4])}, ...) or leave the class out.")
    missing = [n for n in names if n not in listing.files]
    if missing:
        raise DataError(f"{role} class(es) {missing} not found in {listing.root}; the class folders there are: "
                        f"{', '.join(listing.classes)}.")


# ----------------------------------------------------------------------------------------------------
# training data: known classes split per class into train / val / test, unknown classes for evaluation


@dataclass(frozen=True, eq=False, repr=False)
class UserData:
    """The arrays of one training run on an image folder; labels 0..K-1 known (order of ``known_names``).

    Attributes:
        train, val, test_known: known classes, per-class random split (seeded); labels 0..K-1.
        test_unknown: every image of the held-out unknown classes; labels -1.
        unknown_class: int64 (N_unknown,) index into ``unknown_names`` of each ``test_unknown`` image.
        channels, image_size: the network input (C = 1 grey or 3 RGB, S x S pixels).
        skipped: files not used and why; converted: images converted, by kind.
        counts: class name -> {"train", "val", "test"} images actually used.
    """

    source: str
    known_names: tuple[str, ...]
    unknown_names: tuple[str, ...]
    train: ImageSet
    val: ImageSet
    test_known: ImageSet
    test_unknown: ImageSet
    unknown_class: np.ndarray
    channels: int
    image_size: int
    skipped: tuple[SkippedFile, ...]
    converted: dict[str, int]
    counts: dict[str, dict[str, int]]

    def __repr__(self) -> str:
        return (f"UserData({self.source}: known {list(self.known_names)}, unknown {list(self.unknown_names)}, "
                f"train {len(self.train)}, val {len(self.val)}, test {len(self.test_known)} + "
                f"{len(self.test_unknown)} unknown, {self.image_size}x{self.image_size}x{self.channels})")

    def summary(self) -> dict:
        """JSON-ready: classes, counts per split, input shape, converted and skipped files."""
        return {"source": self.source, "known_names": list(self.known_names),
                "unknown_names": list(self.unknown_names), "image_size": self.image_size,
                "channels": self.channels, "counts": self.counts,
                "unknown_counts": {n: int(c) for n, c in zip(self.unknown_names, np.bincount(
                    self.unknown_class, minlength=len(self.unknown_names)).tolist())},
                "converted": dict(self.converted),
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}


def _subsample(names: list[str], limit: int | None, seed: int, class_index: int) -> list[str]:
    if limit is None or len(names) <= limit:
        return names
    keep = np.sort(np.random.default_rng([seed, class_index, 7]).choice(len(names), limit, replace=False))
    return [names[i] for i in keep.tolist()]


def load_user_data(data: str | os.PathLike, known: Iterable[str] | str | None = None,
                   unknown: Iterable[str] | str | None = None, *, image_size: int = 32, channels: int | None = None,
                   val_fraction: float = 0.1, test_fraction: float = 0.2, max_per_class: int | None = None,
                   seed: int = 0, progress: bool = True) -> UserData:
    """Read an image folder (or zip) for training: known classes split into train / val / test.

    Args:
        data: the folder, zip, or ``archive.zip/inner/folder``; one sub-folder per class.
        known: the known classes (names or a comma list); None = every class folder not in ``unknown``.
        unknown: classes held out entirely, used only to measure open-set performance.
        image_size: S, every image is stretched to S x S.
        channels: 1 or 3; None = 1 if every image is grey, else 3.
        val_fraction, test_fraction: per-class shares of each known class for validation (checkpoint
            choice, threshold calibration) and for the test metrics; the split is seeded by ``seed`` and
            by the class's rank among all class folders, so it does not change with the known list.
        max_per_class: use at most this many images per class (a seeded random subset), for quick runs.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 and sum "
                         "to less than 1.")
    if val_fraction <= 0:
        raise ValueError("val_fraction must be > 0: the validation images choose the checkpoint and calibrate the "
                         "threshold.")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grey), 3 (RGB) or None (automatic), got {channels}.")
    if max_per_class is not None and max_per_class < 3:
        raise ValueError(f"max_per_class must be at least 3, got {max_per_class}.")
    unknown_names = _parse_names(unknown) or ()
    known_names = _parse_names(known)
    with ImageSource(data) as source:
        listing = list_image_folder(source)
        _check_names(unknown_names, listing, "unknown")
        if known_names is None:
            known_names = tuple(c for c in listing.classes if c not in unknown_names)
        _check_names(known_names, listing, "known")
        both = sorted(set(known_names) & set(unknown_names))
        if both:
            raise DataError(f"class(es) {both} are both known and unknown; list each class once.")
        if len(known_names) < 2:
            raise DataError(f"an open-set classifier needs at least 2 known classes, got {list(known_names)}; the "
                            f"class folders in {listing.root} are: {', '.join(listing.classes)}.")
        rank = {c: i for i, c in enumerate(listing.classes)}
        names, labels, ranks = [], [], []
        for label, cls in enumerate((*known_names, *unknown_names)):
            files = _subsample(listing.files[cls], max_per_class, seed, rank[cls])
            names += files
            labels += [label] * len(files)  # one list per class, not per-sample work
            ranks += [rank[cls]] * len(files)
        decoded = decode_files(lambda i: source.read(names[i]), [source.where(n) for n in names], image_size,
                               channels, progress=progress, desc=f"reading {Path(str(data)).name}")
    labels_all = np.asarray(labels, np.int64)[decoded.ok]
    ranks_all = np.asarray(ranks, np.int64)[decoded.ok]
    k = len(known_names)
    counts_per_class = np.bincount(labels_all, minlength=k + len(unknown_names))
    empty = [c for c, n in zip((*known_names, *unknown_names), counts_per_class.tolist()) if n == 0]
    if empty:
        bad = [s for s in decoded.skipped][:3]
        raise DataError(f"class(es) {empty} have no readable image in {listing.root}"
                        + (f" (e.g. {bad[0].path}: {bad[0].reason})" if bad else "") + ".")
    is_known = labels_all < k
    known_index = np.flatnonzero(is_known)
    minimum = 2 + (test_fraction > 0)
    few = [f"{c} ({n})" for c, n in zip(known_names, counts_per_class[:k].tolist()) if n < minimum]
    if few:
        raise DataError(f"known class(es) {', '.join(few)} have too few readable images; each needs at least "
                        f"{minimum} for the train / val{' / test' if test_fraction else ''} split: add images"
                        f"{' or pass test_fraction=0' if test_fraction else ''}.")
    rest, test = train_val_split(ranks_all[known_index], test_fraction, seed)
    rest_ranks = ranks_all[known_index[rest]]
    tr, va = train_val_split(rest_ranks, val_fraction / (1 - test_fraction), seed + 1)
    split_index = {"train": known_index[rest[tr]], "val": known_index[rest[va]], "test": known_index[test]}
    empty_split = [(split, c) for split in ("train", "val") for label, c in enumerate(known_names)
                   if not (labels_all[split_index[split]] == label).any()]
    if empty_split:
        raise DataError(f"the {empty_split[0][0]} split of known class {empty_split[0][1]!r} is empty; add images "
                        "to that class or change val_fraction / test_fraction.")
    images = decoded.images

    def subset(index: np.ndarray) -> ImageSet:
        return ImageSet(images[index], labels_all[index], known_names)

    unknown_index = np.flatnonzero(~is_known)
    test_unknown = ImageSet(images[unknown_index], np.full(unknown_index.size, -1, np.int64), known_names)
    counts = {c: {split: int((labels_all[idx] == label).sum()) for split, idx in split_index.items()}
              for label, c in enumerate(known_names)}
    return UserData(str(data), known_names, unknown_names, subset(split_index["train"]), subset(split_index["val"]),
                    subset(split_index["test"]), test_unknown, labels_all[unknown_index] - k,
                    images.shape[-1], image_size, tuple(listing.skipped) + tuple(decoded.skipped),
                    dict(decoded.converted), counts)


def load_labelled_folder(data: str | os.PathLike, class_names: Sequence[str], known: Iterable[str] | str | None = None,
                         unknown: Iterable[str] | str | None = None, *, image_size: int, channels: int,
                         progress: bool = True) -> tuple[ImageSet, np.ndarray, tuple[str, ...], Decoded, FolderListing]:
    """Every image of the chosen classes of a labelled folder, for evaluating a trained model.

    Args:
        class_names: the model's classes; a known class gets its index there as label.
        known: classes to treat as known (each must be a model class); None = the model's classes found in
            ``data``. unknown: classes to treat as unknown (label -1); None = every other class folder.
    Returns (images with labels 0..K-1 / -1, unknown class index per image (-1 for knowns) into the returned
    unknown names, unknown names, the decode record, the listing).
    """
    with ImageSource(data) as source:
        listing = list_image_folder(source)
        unknown_names = _parse_names(unknown)
        known_names = _parse_names(known)
        if known_names is None:
            known_names = tuple(c for c in class_names if c in listing.files and c not in (unknown_names or ()))
            if not known_names:
                raise DataError(f"none of the model's classes ({', '.join(class_names)}) is a class folder in "
                                f"{listing.root} (folders: {', '.join(listing.classes)}).")
        not_model = [c for c in known_names if c not in class_names]
        if not_model:
            raise DataError(f"known class(es) {not_model} are not classes of the model; its classes are: "
                            f"{', '.join(class_names)}.")
        _check_names(known_names, listing, "known")
        if unknown_names is None:
            unknown_names = tuple(c for c in listing.classes if c not in class_names)
        _check_names(unknown_names, listing, "unknown")
        both = sorted(set(known_names) & set(unknown_names))
        if both:
            raise DataError(f"class(es) {both} are both known and unknown; list each class once.")
        index = {c: i for i, c in enumerate(class_names)}
        chosen = [*known_names, *unknown_names]
        names = [n for c in chosen for n in listing.files[c]]
        label_of = [index[c] if c in index and c in known_names else -1 for c in chosen]
        unknown_of = [-1] * len(known_names) + list(range(len(unknown_names)))
        sizes = [len(listing.files[c]) for c in chosen]
        decoded = decode_files(lambda i: source.read(names[i]), [source.where(n) for n in names], image_size,
                               channels, progress=progress, desc=f"reading {Path(str(data)).name}")
    labels = np.repeat(np.asarray(label_of, np.int64), sizes)[decoded.ok]
    unknown_class = np.repeat(np.asarray(unknown_of, np.int64), sizes)[decoded.ok]
    images = ImageSet(decoded.images, labels, tuple(class_names))
    return images, unknown_class, tuple(unknown_names), decoded, listing


# ----------------------------------------------------------------------------------------------------
# training on an image folder: data -> CAC training -> anchors -> threshold -> saved model + run folder


@dataclass(frozen=True)
class UserTrainConfig:
    """``classanchor train``: what to train on, how long, and where to write.

    Attributes:
        data: the image folder / zip / ``archive.zip/inner/folder`` (one sub-folder per class).
        out: the run folder (config.json, data.json, state.pt, history.json, model/, metrics.json).
        known, unknown: class folder names; known None = every class not in ``unknown``.
        epochs: total epochs (stage 1 at ``lr`` for the first 3/4, stage 2 at ``lr / 10``; paper 150 + 50).
        image_size: S; every image is stretched to S x S (classifier32 needs a multiple of 8: 32 or 64).
        channels: 1, 3 or None (automatic: 1 if every image is grey).
        backbone, backbone_kwargs: ``models.registry`` name ('classifier32', 'torchvision:resnet18', ...) and
            its keyword arguments (classifier32 gets ``dropout=0.2`` unless given).
        accept_rate: share of known validation images the calibrated threshold accepts (default 0.95).
        threshold: a fixed threshold instead of calibrating one.
        val_fraction, test_fraction: per-class shares of each known class for validation and for the test metrics.
        max_per_class: use at most this many images per class (seeded subset) for quick runs.
        batch_size, lr: SGD batch size and stage-1 learning rate; flip: random horizontal flips (and flipped
            copies in the anchor fit; turn off for images whose meaning changes when mirrored, e.g. text).
        seed, device: the seed of the split, the initial weights and the augmentation; 'auto', 'cpu', 'cuda', ...
    """

    data: str
    out: str
    known: tuple[str, ...] | None = None
    unknown: tuple[str, ...] = ()
    epochs: int = 30
    image_size: int = 32
    channels: int | None = None
    backbone: str = "classifier32"
    backbone_kwargs: dict = field(default_factory=dict)
    accept_rate: float = 0.95
    threshold: float | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_per_class: int | None = None
    batch_size: int = 128
    lr: float = 0.01
    flip: bool = True
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if not 0 < self.accept_rate <= 1:
            raise ValueError(f"accept_rate must be in (0, 1], got {self.accept_rate}.")
        if self.backbone == "classifier32" and (self.image_size % 8 or self.image_size < 8):
            raise ValueError(f"classifier32 needs an image size that is a multiple of 8 (e.g. 32 or 64), got "
                             f"{self.image_size}.")


def user_recipe(epochs: int = 30, image_size: int = 32, batch_size: int = 128, lr: float = 0.01, flip: bool = True):
    """The default recipe for your own images: the paper's CIFAR10 recipe with ``epochs`` instead of 150 + 50.

    From CIFAR10's (paper Table 4 + reference code): SGD momentum 0.9, weight decay 5e-6, batch 128,
    RandomResizedCrop scale 0.8-1, flip 0.5, rotation 10 degrees, dropout 0.2, anchors also fitted on
    mirrored images. Stage 1 = the first ``max(1, floor(3/4 epochs))`` epochs at ``lr``, stage 2 = the rest
    at ``lr / 10`` (restarting from stage 1's best checkpoint), as 150 + 50 in the paper.
    """
    from dataclasses import replace

    from .recipes import get_recipe
    from .train import Stage

    base = get_recipe("CIFAR10")
    first = max(1, (3 * epochs) // 4)
    stages = (Stage(first, lr),) + ((Stage(epochs - first, lr / 10),) if epochs > first else ())
    return replace(base, dataset="user images", name="default", stages=stages, batch_size=batch_size,
                   image_size=image_size, flip_p=base.flip_p if flip else 0.0, flip_anchor_fit=flip)


def train_on_folder(config: UserTrainConfig, *, progress: bool = True):
    """Train CAC on an image folder and save the open-set model; returns (OpenSetPredictor, metrics dict).

    Steps: read and split the data (:func:`load_user_data`); train with :func:`classanchor.train.train`
    (resumable: ``out/state.pt``); re-fit the anchors on the training split (Algorithm 1 lines 1-3, plus
    mirrored images when flips are on); calibrate the threshold on the known validation images
    (:func:`classanchor.metrics.calibrate_threshold`) unless ``config.threshold`` is set; measure the test
    split (known test images + every image of the unknown classes); save ``out/model`` with
    :func:`classanchor.model_io.save_open_set_model`; write ``history.json`` and ``metrics.json`` (accuracy,
    AUROC when unknown classes are given, and the metrics at the threshold). A run folder whose
    ``metrics.json`` exists is not trained again (its saved model and metrics are returned).
    """
    import time

    import torch

    from .benchmark import resolve_device
    from .data.augment import AugmentSpec, compute_mean_std
    from .data.loader import DeviceLoader
    from .evaluate import collect_logits
    from .io import RunFolder, read_json, write_json
    from .methods import get_method
    from .metrics import calibrate_threshold
    from .model_io import save_open_set_model
    from .models.registry import build_backbone
    from .network import CACNet
    from .predictor import OpenSetPredictor, evaluation_report
    from .train import train

    out = Path(config.out)
    if (out / "metrics.json").exists():
        RunFolder.create(out, config)  # raises if the folder holds another config
        return OpenSetPredictor.load(out / "model", resolve_device(config.device)), read_json(out / "metrics.json")
    recipe = user_recipe(config.epochs, config.image_size, config.batch_size, config.lr, config.flip)
    start = time.perf_counter()
    data = load_user_data(config.data, config.known, config.unknown, image_size=config.image_size,
                          channels=config.channels, val_fraction=config.val_fraction,
                          test_fraction=config.test_fraction, max_per_class=config.max_per_class, seed=config.seed,
                          progress=progress)
    read_seconds = time.perf_counter() - start
    kwargs = dict(config.backbone_kwargs)
    if config.backbone == "classifier32":
        kwargs.setdefault("dropout", recipe.dropout)
    k, channels, size = len(data.known_names), data.channels, config.image_size
    torch.manual_seed(config.seed)
    net = CACNet(build_backbone(config.backbone, k, channels, size, **kwargs), k)  # fails before anything is written
    folder = RunFolder.create(out, config)
    write_json(folder.file("data.json"), data.summary())
    device = resolve_device(config.device)
    mean, std = compute_mean_std(data.train.images)
    spec = AugmentSpec(size=size, scale_min=recipe.scale_min, flip_p=recipe.flip_p, rotation_deg=recipe.rotation_deg,
                       mean=mean, std=std)

    def loader(images: np.ndarray, labels: np.ndarray, training: bool) -> DeviceLoader:
        return DeviceLoader(images, labels, recipe.batch_size if training else 512, spec, train=training,
                            device=device, seed=config.seed, drop_last=training and len(labels) > recipe.batch_size)

    history = train(net, get_method("cac"), loader(data.train.images, data.train.labels, True),
                    loader(data.val.images, data.val.labels, False), recipe.train_config(), device=device,
                    state_path=folder.path / "state.pt", progress=progress)
    start = time.perf_counter()
    train_eval = loader(data.train.images, data.train.labels, False)
    logits, labels = collect_logits(net, train_eval, device=device, amp=False)
    if recipe.flip_anchor_fit:  # Algorithm 1 on the training split plus its mirror images (reference code)
        flipped, _ = collect_logits(net, train_eval, device=device, amp=False, hflip=True)
        logits, labels = torch.cat([logits, flipped]), torch.cat([labels, labels])
    net.refit_anchors(logits.to(device), labels.to(device), empty_class="all_samples")

    predictor = OpenSetPredictor(net, data.known_names, 0.0, spec, channels, device=device)
    val = predictor.predict_arrays(data.val.images)
    val_accuracy = float((val.best_index == data.val.labels).mean())
    if config.threshold is None:
        threshold = calibrate_threshold(val.scores, config.accept_rate)
        calibration = {"method": "accept_rate", "target_accept_rate": config.accept_rate}
    else:
        threshold = float(config.threshold)
        calibration = {"method": "user"}
    calibration.update(data="known validation images", n_images=len(data.val),
                       achieved_accept_rate=float((val.scores < threshold).mean()))
    predictor.threshold = threshold
    test_images = np.concatenate([data.test_known.images, data.test_unknown.images])
    test_labels = np.concatenate([data.test_known.labels, data.test_unknown.labels])
    unknown_class = np.concatenate([np.zeros(len(data.test_known), np.int64), data.unknown_class])
    metrics: dict = {"known_names": list(data.known_names), "unknown_names": list(data.unknown_names),
                     "n_train": len(data.train), "n_val": len(data.val), "val_accuracy": val_accuracy,
                     "threshold": threshold, "calibration": calibration}
    if len(test_labels):
        test = predictor.predict_arrays(test_images)
        metrics["test"] = evaluation_report(test.scores, test.best_index, test_labels, threshold, data.known_names,
                                            unknown_class, data.unknown_names)
    metrics.update(best_epoch=history.best_epoch, epochs=recipe.total_epochs, train_seconds=history.seconds,
                   read_seconds=read_seconds, eval_seconds=time.perf_counter() - start, device=str(device),
                   skipped_files=len(data.skipped), converted=data.converted)
    save_open_set_model(folder.path / "model", net, data.known_names, threshold, calibration, spec, config.backbone,
                        kwargs, {"training": config, "recipe": recipe, "data": {
                            k: v for k, v in data.summary().items() if k != "skipped"}, "metrics": metrics})
    write_json(folder.file("history.json"), history.history)
    write_json(folder.file("metrics.json"), metrics)
    return predictor, metrics
