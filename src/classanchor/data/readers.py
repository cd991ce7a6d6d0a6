"""The benchmark datasets by name: the public face of the format readers in :mod:`classanchor.data.formats`.

Every reader returns an :class:`ImageSet`: ``images`` uint8 (N, H, W, C), ``labels`` int64 (N,) and the
dataset's ``class_names`` (label ``i`` is ``class_names[i]``; label -1 = unknown, used by the open-set
splits). Decoded arrays are cached as ``.npz`` files in ``cache_dir`` (default ``$CLASSANCHOR_CACHE`` or
``~/.cache/classanchor``; :mod:`classanchor.data.cache`); the cache key holds each source file's path, size and
modification time, so a changed file is read again. Every problem with the input raises :class:`DataError`
naming the file and the fix.

Supported inputs (``root`` may be the file/folder itself or a folder that contains it), one module each:

- MNIST (:mod:`~classanchor.data.formats.mnist`): ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``,
  directly in ``root`` or in ``root/MNIST/raw`` (torchvision's layout).
- SVHN (:mod:`~classanchor.data.formats.svhn`): ``train_32x32.mat`` / ``test_32x32.mat`` (label 10 means
  digit 0 and is mapped to 0).
- CIFAR-10 / CIFAR-100 (:mod:`~classanchor.data.formats.cifar`): the official python version
  (``cifar-10-python.tar.gz`` or the extracted ``cifar-10-batches-py/``; ``cifar-100-python.tar.gz`` or
  ``cifar-100-python/``), or an image-folder tree ``{train,test}/<official class name>/*.png|jpg`` as a folder
  or a zip (e.g. ``CIFAR-10-images.zip``; :mod:`~classanchor.data.formats.image_folder`).
- TinyImageNet (:mod:`~classanchor.data.formats.tinyimagenet`): the official ``tiny-imagenet-200`` layout as
  a folder or a zip; train images are read only for the requested classes; ``split='test'`` means the
  official ``val`` folder.

Example::

    >>> from classanchor.data.readers import load_dataset
    >>> mnist = load_dataset("mnist", "/data", "train")       # doctest: +SKIP
    >>> mnist.images.shape, mnist.labels[:3]                   # doctest: +SKIP
    ((60000, 28, 28, 1), array([5, 0, 4]))
"""

from __future__ import annotations

from collections.abc import Iterable

from .cache import default_cache_dir
from .formats._common import filter_classes
from .formats.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, read_cifar10, read_cifar100
from .formats.image_folder import read_image_folder
from .formats.mnist import MNIST_CLASSES, read_mnist
from .formats.svhn import SVHN_CLASSES, read_svhn
from .formats.tinyimagenet import read_tinyimagenet, tinyimagenet_classes
from .imageset import DataError, ImageSet, PathLike

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASETS",
    "MNIST_CLASSES",
    "SVHN_CLASSES",
    "DataError",
    "ImageSet",
    "PathLike",
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

DATASETS: tuple[str, ...] = ("mnist", "svhn", "cifar10", "cifar100", "tinyimagenet")
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
    return filter_classes(data, classes, dataset)
