"""Image-folder trees ``[<split>/]<class name>/<image file>``, as a folder or a zip, with a fixed class list.

The benchmark reads CIFAR image-folder copies (``CIFAR-10-images.zip``) this way. Every image must decode and
have the same size (nothing is resized): a bad file stops the read with a DataError naming it. For your own
folders of images of any size, where bad files are skipped, see :mod:`classanchor.data.folders`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cache import cache_path, cached, file_fingerprint, try_load
from ..decode import decode_names
from ..imageset import DataError, ImageSet, PathLike
from ..sources import IMAGE_SUFFIXES, FileSource, is_image_name
from ._common import check_root, labels_from_names

__all__ = ["read_image_folder"]


def _image_paths(source: FileSource, split: str | None, dataset: str) -> tuple[list[str], str]:
    """(the image names of ``<split>/<class>/<file>`` entries, where they were looked for)."""
    if source.is_zip:  # any prefix: .../<split>/<class>/<file>
        depth = 3 if split is not None else 2
        names = [n for n in source.names() if is_image_name(n) and n.count("/") >= depth - 1
                 and (split is None or n.split("/")[-3] == split)]
        return names, f"{source.path} (entries .../{split + '/' if split else ''}<class>/<file>)"
    sub = split if split is not None else ""
    if not (source.path / sub).is_dir():
        raise DataError(f"{dataset}: split folder {source.path / sub} not found.")
    names = [n for n in source.names(sub) if is_image_name(n) and n.count("/") >= (2 if split else 1)]
    return names, str(source.path / sub)


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
        name: the dataset's name, in messages and cache file names.
    Returns images uint8 (N, H, W, channels), sorted by class then file name.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    root = check_root(root, name)
    settings = {"split": split, "classes": None if class_names is None else list(class_names),
                "size": image_size, "channels": channels}
    if cache and root.is_file():  # a zip: its stat covers its entries, so look in the cache before opening it
        found = try_load(cache_path(cache_dir, name, {**settings, "source": file_fingerprint(root)}))
        if found is not None:
            return found
    with FileSource(root) as source:
        paths, where = _image_paths(source, split, name)
        if not paths:
            raise DataError(f"{name}: no images found in {where}; expected "
                            f"{split + '/' if split else ''}<class name>/<image file> "
                            f"with a suffix in {IMAGE_SUFFIXES}.")
        folder = np.array([p.split("/")[-2] for p in paths])
        if class_names is None:
            class_names = tuple(sorted(set(folder.tolist())))
        labels = labels_from_names(folder, class_names, where)
        order = np.lexsort((np.array(paths), labels))
        paths = [paths[i] for i in order]
        labels = labels[order]

        def build() -> ImageSet:
            decoded = decode_names(source, paths, image_size, channels, on_error="raise", resize=False,
                                   progress=progress, desc=f"decoding {name} {split or ''}")
            return ImageSet(decoded.images, labels, tuple(class_names))

        return cached(name, {**settings, "source": source.fingerprint(paths)}, build, cache_dir, cache)
