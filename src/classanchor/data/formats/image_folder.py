"""Image-folder trees ``<split>/<class name>/<image file>``, as a folder or a zip, with a fixed class list.

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


def _image_paths(source: FileSource, split: str, dataset: str) -> tuple[list[str], str]:
    """(the image names of ``<split>/<class>/<file>`` entries, where they were looked for)."""
    if source.is_zip:  # any prefix: .../<split>/<class>/<file>
        names = [n for n in source.names() if is_image_name(n) and n.count("/") >= 2
                 and n.split("/")[-3] == split]
        return names, f"{source.path} (entries .../{split}/<class>/<file>)"
    if not (source.path / split).is_dir():
        raise DataError(f"{dataset}: split folder {source.path / split} not found.")
    names = [n for n in source.names(split) if is_image_name(n) and n.count("/") >= 2]
    return names, str(source.path / split)


def read_image_folder(root: PathLike, split: str, class_names: Sequence[str] | None = None, *,
                      image_size: tuple[int, int] | None = None, channels: int = 3,
                      cache_dir: PathLike | None = None, cache: bool = True, progress: bool = True,
                      name: str = "images") -> ImageSet:
    """Images in ``<split>/<class name>/<file>`` folders, as a folder tree or a zip of it (any prefix) ->
    uint8 (N, H, W, channels), sorted by class then file name. Label i = ``class_names[i]`` (None = sorted
    folder names; another folder name raises DataError); every image must be ``image_size`` (H, W) (None =
    the first image's size); ``name``: the dataset's name, in messages and cache file names."""
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
            raise DataError(f"{name}: no images found in {where}; expected {split}/<class name>/<image file> "
                            f"with a suffix in {IMAGE_SUFFIXES}.")
        folder = np.array([p.split("/")[-2] for p in paths])
        class_names = tuple(sorted(set(folder.tolist()))) if class_names is None else tuple(class_names)
        labels = labels_from_names(folder, class_names, where)
        order = np.lexsort((np.array(paths), labels))
        paths = [paths[i] for i in order]

        def build() -> ImageSet:
            decoded = decode_names(source, paths, image_size, channels, on_error="raise", resize=False,
                                   progress=progress, desc=f"decoding {name} {split}")
            return ImageSet(decoded.images, labels[order], class_names)

        return cached(name, {**settings, "source": source.fingerprint(paths)}, build, cache_dir, cache)
