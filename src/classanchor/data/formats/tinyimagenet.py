"""TinyImageNet from the official ``tiny-imagenet-200`` layout, as a folder or its zip.

Class i is the i-th wnid of ``wnids.txt`` in sorted order; class names come from ``words.txt``. When every
requested image of a zip is in the cache, the zip is not even opened.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..cache import cache_path, cached, file_fingerprint, save_npz, try_load
from ..decode import decode_names
from ..imageset import DataError, ImageSet, PathLike
from ..sources import FileSource, is_image_name
from ._common import REDOWNLOAD, check_root, check_split, class_indices, filter_classes, labels_from_names

__all__ = ["read_tinyimagenet", "tinyimagenet_classes"]

_SIZE = (64, 64)
_FOLDER = "tiny-imagenet-200"


def _locate(root: Path) -> Path:
    """The tiny-imagenet-200 folder or zip at or in ``root`` (without opening it)."""
    if root.is_dir() and not (root / "wnids.txt").is_file():
        sub = next((p for p in (root / _FOLDER, root / f"{_FOLDER}.zip") if p.exists()), None)
        if sub is None:
            raise DataError(f"no TinyImageNet data found in {root}: looked for wnids.txt, {_FOLDER}/ and "
                            f"{_FOLDER}.zip (the official tiny-imagenet-200 layout).")
        return sub
    return root


class _Tiny:
    """The official tiny-imagenet-200 layout inside a folder or a zip; ``files`` is open until closed."""

    def __init__(self, root: Path):
        self.files = FileSource(_locate(root))
        try:
            self.prefix = self._prefix()
            self.wnids, self.names = self._classes()
        except BaseException:
            self.files.close()
            raise

    def _prefix(self) -> str:
        """The folder of wnids.txt inside a zip ('tiny-imagenet-200/' or ''); '' for a folder."""
        if not self.files.is_zip:
            return ""
        metas = sorted((n for n in self.files.names() if posixpath.basename(n) == "wnids.txt"), key=len)
        if not metas:
            raise DataError(f"{self.files.zip_path}: no wnids.txt in the zip; this is not the official "
                            f"{_FOLDER} layout: download it again.")
        return metas[0][: -len("wnids.txt")]

    def _text(self, name: str) -> str:
        return self.files.read(self.prefix + name).decode("utf-8", errors="replace")

    def _classes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        wnids = sorted(set(self._text("wnids.txt").split()))
        if not wnids:
            raise DataError(f"{self.files.where(self.prefix + 'wnids.txt')}: empty; download it again.")
        text = self._text("words.txt") if self.files.exists(self.prefix + "words.txt") else ""
        rows = (line.partition("\t") for line in text.splitlines())
        words = {wnid.strip(): name.strip() for wnid, _, name in rows}
        return tuple(wnids), tuple(words.get(w) or w for w in wnids)

    def train_files(self, cls: int) -> list[str]:
        """The train image names of class ``cls``, sorted; DataError when the class has none."""
        wnid = self.wnids[cls]
        folder = f"{self.prefix}train/{wnid}/images"
        names = [n for n in self.files.names(folder) if is_image_name(n)]
        if not names:
            raise DataError(f"TinyImageNet: no train images for class {cls} ({wnid}, "
                            f"{self.names[cls]!r}): expected {folder}/*.JPEG in {self.files.path}. This copy "
                            f"lacks that class's train folder: request only classes it has (classes=) or "
                            f"use the complete official {_FOLDER}.zip.")
        return names

    def val_files(self) -> tuple[list[str], np.ndarray]:
        """The val image names and their labels, from ``val/val_annotations.txt``."""
        annotations = self.prefix + "val/val_annotations.txt"
        where = self.files.where(annotations)
        if not self.files.exists(annotations):
            raise DataError(f"TinyImageNet: {where} not found; the val split needs it: download "
                            f"{_FOLDER}.zip again.")
        rows = [line.split("\t") for line in self._text("val/val_annotations.txt").splitlines()
                if line.strip()]
        if any(len(r) < 2 for r in rows):
            raise DataError(f"{where}: lines must be '<file>\\t<wnid>\\t...'; {REDOWNLOAD}.")
        names = [f"{self.prefix}val/images/{r[0].strip()}" for r in rows]
        return names, labels_from_names(np.array([r[1].strip() for r in rows]), self.wnids, where)


def tinyimagenet_classes(root: PathLike) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, names) of TinyImageNet: class i = i-th wnid in sorted order; names from words.txt."""
    tiny = _Tiny(check_root(root, "TinyImageNet"))
    tiny.files.close()
    return tiny.wnids, tiny.names


def read_tinyimagenet(root: PathLike, split: str = "train", classes: Iterable[int | str] | None = None, *,
                      cache_dir: PathLike | None = None, cache: bool = True,
                      progress: bool = True) -> ImageSet:
    """TinyImageNet: images uint8 (N, 64, 64, 3) RGB (grey JPEGs are converted), labels 0-199, class_names the
    words.txt names of all classes. Train images are cached per class, val images all together. ``split``:
    "train" (``train/<wnid>/images``) or "val" (``val/images`` + ``val_annotations.txt``), "test" a synonym of
    "val" (the benchmark's test split). ``classes``: class indices (rank of the wnid in sorted order, 0-199)
    or wnids to read (None = all); only their train images are read, so the other train folders may be
    absent."""
    check_split(split, ("train", "val", "test"), "TinyImageNet")
    split = "train" if split == "train" else "val"
    classes = None if classes is None else list(classes)
    source = _locate(check_root(root, "TinyImageNet"))
    if cache and source.is_file() and (classes is None or all(not isinstance(c, str) for c in classes)):
        found = _zip_cached(source, split, classes, cache_dir)
        if found is not None:  # everything cached: the zip is not even opened
            return found
    tiny = _Tiny(source)
    with tiny.files:
        wanted = (np.arange(len(tiny.wnids)) if classes is None
                  else class_indices(classes, tiny.wnids, "TinyImageNet", noun="wnid"))
        return (_read_train if split == "train" else _read_val)(tiny, wanted, cache_dir, cache, progress)


def _key(split: str, source: list, cls: int | None = None) -> dict:
    """Cache key of the train images of class ``cls`` (all val images: None); ``source``: a fingerprint."""
    return {"split": split, "class": cls, "source": source}


def _zip_cached(source: Path, split: str, classes, cache_dir) -> ImageSet | None:
    """The requested images from the cache alone (zip sources: the key is the zip's stat), else None."""
    fp = file_fingerprint(source)
    if split == "val":
        data = try_load(cache_path(cache_dir, "tinyimagenet", _key("val", fp)))
        return None if data is None else filter_classes(data, classes, "TinyImageNet")
    if not classes:
        return None  # "all classes" needs the class list from the zip
    parts = []
    for c in np.unique(np.asarray(classes, dtype=np.int64)).tolist():
        parts.append(try_load(cache_path(cache_dir, "tinyimagenet", _key("train", fp, c))))
        if parts[-1] is None:
            return None
    return ImageSet(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                    parts[0].class_names)


def _decode(files: FileSource, names: Sequence[str], split: str, progress: bool) -> np.ndarray:
    """uint8 (N, 64, 64, 3): every image must decode and be 64 x 64 (grey JPEGs become RGB)."""
    return decode_names(files, names, _SIZE, 3, on_error="raise", resize=False, progress=progress,
                        desc=f"decoding tinyimagenet {split}").images


def _read_train(tiny: _Tiny, wanted: np.ndarray, cache_dir, cache: bool, progress: bool) -> ImageSet:
    lists = {c: tiny.train_files(c) for c in wanted.tolist()}  # raises for a missing class first
    paths = {c: cache_path(cache_dir, "tinyimagenet", _key("train", tiny.files.fingerprint(names), c))
             for c, names in lists.items()}
    found = {c: try_load(path) for c, path in paths.items()} if cache else {}
    parts = {c: data.images for c, data in found.items() if data is not None}
    todo = [c for c in lists if c not in parts]
    if todo:
        images = _decode(tiny.files, [n for c in todo for n in lists[c]], "train", progress)
        bounds = np.cumsum([0] + [len(lists[c]) for c in todo])
        for c, lo, hi in zip(todo, bounds[:-1], bounds[1:]):
            parts[c] = images[lo:hi]
            if cache:
                save_npz(paths[c], ImageSet(parts[c], np.full(hi - lo, c, np.int64), tiny.names))
    order = wanted.tolist()
    images = np.concatenate([parts[c] for c in order]) if order else np.empty((0, *_SIZE, 3), np.uint8)
    labels = np.repeat(np.asarray(order, dtype=np.int64), [len(parts[c]) for c in order])
    return ImageSet(images, labels, tiny.names)


def _read_val(tiny: _Tiny, wanted: np.ndarray, cache_dir, cache: bool, progress: bool) -> ImageSet:
    names, labels = tiny.val_files()

    def build() -> ImageSet:
        return ImageSet(_decode(tiny.files, names, "val", progress), labels, tiny.names)

    data = cached("tinyimagenet", _key("val", tiny.files.fingerprint(names)), build, cache_dir, cache)
    return data if len(wanted) == len(tiny.wnids) else data.subset(np.isin(data.labels, wanted))
