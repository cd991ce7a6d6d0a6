"""The benchmark datasets' official formats, one module each, and :func:`load_dataset` to read one by name.

Every reader returns an :class:`~classanchor.data.imageset.ImageSet` (the dataset's ``class_names``), raises
:class:`~classanchor.data.imageset.DataError` naming the file and the fix (image files are decoded with
``on_error="raise"``) and caches the decoded arrays (:mod:`classanchor.data.cache`). ``root`` may be the
file or folder itself or a folder that holds it. Modules: :mod:`.mnist`, :mod:`.svhn`, :mod:`.cifar`
(CIFAR-10 / -100), :mod:`.tinyimagenet` and :mod:`.image_folder` (image-folder copies of a dataset).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..imageset import ImageSet, PathLike
from ._common import filter_classes
from .cifar import read_cifar10, read_cifar100
from .mnist import read_mnist
from .svhn import read_svhn
from .tinyimagenet import read_tinyimagenet

__all__ = ["DATASETS", "load_dataset"]

DATASETS: tuple[str, ...] = ("mnist", "svhn", "cifar10", "cifar100", "tinyimagenet")


def load_dataset(name: str, root: PathLike, split: str = "train",
                 classes: Iterable[int | str] | None = None, *, cache_dir: PathLike | None = None,
                 cache: bool = True, progress: bool = True) -> ImageSet:
    """Read dataset ``name`` (one of ``DATASETS``; case and punctuation ignored: "CIFAR-10", "tiny-imagenet")
    from ``root``; ``split`` "train" or "test" (TinyImageNet: its official val folder); ``classes``: keep
    only these class indices (or names), labels keep their original values."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    dataset = "tinyimagenet" if key == "tinyimagenet200" else key
    options = {"cache_dir": cache_dir, "cache": cache}
    if dataset == "tinyimagenet":  # reads only the requested classes
        return read_tinyimagenet(root, split, classes, progress=progress, **options)
    readers = {"mnist": read_mnist, "svhn": read_svhn, "cifar10": read_cifar10, "cifar100": read_cifar100}
    if dataset not in readers:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {list(DATASETS)}.")
    if dataset.startswith("cifar"):  # decodes image files when given an image-folder copy
        options["progress"] = progress
    return filter_classes(readers[dataset](root, split, **options), classes, dataset)
