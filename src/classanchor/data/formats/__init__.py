"""The benchmark datasets' official formats, one module each, and :func:`load_dataset` to read one by name.

Every reader returns an :class:`~classanchor.data.imageset.ImageSet` (images uint8 (N, H, W, C), labels
int64 (N,), the dataset's ``class_names``) and raises :class:`~classanchor.data.imageset.DataError` naming
the file and the fix. ``root`` may be the file or folder itself or a folder that holds it.

- :mod:`.mnist`: the idx files; :mod:`.svhn`: the cropped-digits ``{split}_32x32.mat``;
- :mod:`.cifar`: CIFAR-10 / -100, python version (tar.gz or extracted) or an image-folder tree / zip;
- :mod:`.tinyimagenet`: ``tiny-imagenet-200`` as a folder or zip (``split='test'`` = its ``val`` folder);
- :mod:`.image_folder`: ``[<split>/]<class name>/<image>`` trees (folder or zip) with a fixed class list.

Image files are read through :class:`~classanchor.data.sources.FileSource` and decoded with
``on_error="raise"`` (a bad file stops the read); decoded arrays are cached by :mod:`classanchor.data.cache`.
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
    """Read a dataset by name from the files found in ``root`` (layouts: the module docstring).

    Args:
        name: one of ``DATASETS`` (case and punctuation ignored: "CIFAR-10", "tiny-imagenet-200" work).
        split: "train" or "test" (TinyImageNet "test" = its official val folder).
        classes: keep only these class indices (or names); labels keep their original values.
    Returns an ImageSet with images uint8 (N, H, W, C).
    """
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
