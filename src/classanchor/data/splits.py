"""The open-set benchmark of the paper: the five standard trials per dataset and the data of one trial.

Conventions: known classes are relabelled 0..K-1 by their rank in the sorted known list; unknown samples
get label -1. The train/val split is a per-class random split of the official training set (80/20;
TinyImageNet 90/10 = 450/50 per class) fixed by a seed; test = the official test split (TinyImageNet: the
official ``val`` folder). CIFAR+10/+50: known = CIFAR-10 classes [0, 1, 8, 9], unknown = CIFAR-100 fine
classes taken from the CIFAR-100 *test* split. Example (``build_trial(trial, data_root)`` reads its images)::

    >>> trial = get_trial("MNIST", 0)
    >>> trial.known, round(trial.openness, 5)
    ((0, 1, 2, 4, 5, 9), 0.13397)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from ..metrics import openness  # Eq. 12, defined once for the library
from .formats import load_dataset
from .imageset import DataError, ImageSet, PathLike

__all__ = ["BENCHMARKS", "BenchmarkSpec", "OpenSetData", "OpenSetTrial", "build_trial", "get_benchmark",
           "get_trial", "load_trials", "relabel", "train_val_split"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark dataset of the paper: the readers (``formats.load_dataset`` names) of the known classes
    (train and test) and of the unknown classes (test split only); ``input_shape`` (H, W, C), what the network
    expects (MNIST's 28 px images are resized to 32 on the device); ``val_fraction``, the share of each known
    class's official training images held out for validation."""

    name: str
    known_source: str
    unknown_source: str
    input_shape: tuple[int, int, int]
    val_fraction: float


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "MNIST": BenchmarkSpec("MNIST", "mnist", "mnist", (32, 32, 1), 0.2),
    "SVHN": BenchmarkSpec("SVHN", "svhn", "svhn", (32, 32, 3), 0.2),
    "CIFAR10": BenchmarkSpec("CIFAR10", "cifar10", "cifar10", (32, 32, 3), 0.2),
    "CIFAR+10": BenchmarkSpec("CIFAR+10", "cifar10", "cifar100", (32, 32, 3), 0.2),
    "CIFAR+50": BenchmarkSpec("CIFAR+50", "cifar10", "cifar100", (32, 32, 3), 0.2),
    "TinyImageNet": BenchmarkSpec("TinyImageNet", "tinyimagenet", "tinyimagenet", (64, 64, 3), 0.1),
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == "+")


_BY_KEY = {_key(k): k for k in BENCHMARKS} | {"cifarplus10": "CIFAR+10", "cifarplus50": "CIFAR+50",
                                               "tinyimagenet200": "TinyImageNet"}


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of a benchmark; case and '-'/'_' are ignored ("cifar+10", "tiny-imagenet" work)."""
    key = _key(name)
    if key not in _BY_KEY:
        raise ValueError(f"unknown benchmark {name!r}; known benchmarks: {list(BENCHMARKS)}.")
    return BENCHMARKS[_BY_KEY[key]]


@dataclass(frozen=True)
class OpenSetTrial:
    """One known/unknown class split of benchmark ``dataset`` (trial index 0-based): ``known``, ``unknown``,
    original class indices of the dataset(s) in the order of the standard splits file (for CIFAR+N, CIFAR-100
    fine labels); ``openness``: Eq. 12 with N_train = N_target = #known, N_test = #known + #unknown."""

    dataset: str
    trial: int
    known: tuple[int, ...]
    unknown: tuple[int, ...]
    openness: float = field(init=False)

    def __post_init__(self) -> None:
        spec = get_benchmark(self.dataset)
        object.__setattr__(self, "dataset", spec.name)
        known, unknown = tuple(map(int, self.known)), tuple(map(int, self.unknown))
        where = f"{self.dataset} trial {self.trial}"
        if not known or not unknown:
            raise ValueError(f"{where}: known and unknown classes must be non-empty.")
        if len(set(known)) != len(known) or len(set(unknown)) != len(unknown):
            raise ValueError(f"{where}: repeated class in {known} / {unknown}.")
        both = sorted(set(known) & set(unknown)) if spec.known_source == spec.unknown_source else []
        if both:
            raise ValueError(f"{where}: classes {both} are both known and unknown.")
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "unknown", unknown)
        n = len(known)
        object.__setattr__(self, "openness", openness(n, n + len(unknown), n))

    @property
    def spec(self) -> BenchmarkSpec:
        return BENCHMARKS[self.dataset]

    @property
    def known_sorted(self) -> tuple[int, ...]:
        """Known classes in sorted order: known_sorted[k] is the original class of relabelled class k."""
        return tuple(sorted(self.known))


@lru_cache(maxsize=1)
def _splits_file() -> dict:
    return json.loads((resources.files("classanchor.data") / "benchmark_splits.json").read_text("utf-8"))


def load_trials(dataset: str) -> tuple[OpenSetTrial, ...]:
    """The five standard trials of a benchmark, from the package data ``benchmark_splits.json``."""
    name = get_benchmark(dataset).name
    return tuple(OpenSetTrial(name, i, t["known"], t["unknown"]) for i, t in enumerate(_splits_file()[name]))


def get_trial(dataset: str, trial: int) -> OpenSetTrial:
    """Trial ``trial`` (0-based) of a benchmark."""
    trials = load_trials(dataset)
    if not 0 <= trial < len(trials):
        raise ValueError(f"{dataset} has trials 0..{len(trials) - 1}, got {trial}.")
    return trials[trial]


def relabel(labels: np.ndarray, known: Sequence[int]) -> np.ndarray:
    """Map original labels (N,) (>= -1) to 0..K-1 by rank in ``sorted(known)`` (K classes >= 0, any order),
    other labels (and -1) to -1 -> int64 (N,), via a lookup table."""
    labels = np.asarray(labels, dtype=np.int64)
    known_sorted = np.unique(np.asarray(known, dtype=np.int64))
    size = int(max(labels.max(initial=-1), known_sorted.max(initial=-1))) + 2
    lut = np.full(size, -1, dtype=np.int64)  # lut[-1] (the last slot) stays -1 for label -1
    lut[known_sorted] = np.arange(known_sorted.size)
    return lut[labels]


def train_val_split(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split of sample indices (labels (N,) >= 0) -> (train_idx, val_idx), disjoint sorted
    int64 index arrays whose union is 0..N-1. Class c gives round(val_fraction * n_c) samples to validation,
    chosen by a generator seeded with (seed, c), so its split does not depend on the other classes."""
    labels = np.asarray(labels, dtype=np.int64)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    order = np.argsort(labels, kind="stable")  # grouped by class, original order within a class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    for c, lo, n in zip(classes.tolist(), starts.tolist(), counts.tolist()):  # per class, not per sample
        order[lo:lo + n] = order[lo:lo + n][np.random.default_rng([seed, c]).permutation(n)]
    n_val = np.floor(counts * val_fraction + 0.5).astype(np.int64)
    rank = np.arange(labels.size) - np.repeat(starts, counts)  # position within the class block
    is_val = rank < np.repeat(n_val, counts)
    return np.sort(order[~is_val]), np.sort(order[is_val])


@dataclass(frozen=True, eq=False, repr=False)
class OpenSetData:
    """The arrays of one trial. Label convention: 0..K-1 known (rank in the sorted known list), -1 unknown.
    ``train``, ``val``: known classes from the official training split, per-class split; ``test_known``: known
    classes from the official test split; ``test_unknown``: unknown classes from the test split (class_names =
    the known names); ``unknown_names`` in sorted class-index order; ``unknown_labels``: int64 (N_unknown,)
    original class index of each ``test_unknown`` image."""

    trial: OpenSetTrial
    train: ImageSet
    val: ImageSet
    test_known: ImageSet
    test_unknown: ImageSet
    known_names: tuple[str, ...]
    unknown_names: tuple[str, ...]
    unknown_labels: np.ndarray

    def __repr__(self) -> str:
        return (f"OpenSetData({self.trial.dataset} trial {self.trial.trial}: train {len(self.train)}, "
                f"val {len(self.val)}, test_known {len(self.test_known)}, "
                f"test_unknown {len(self.test_unknown)}, image_shape {self.train.image_shape})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) the benchmark's network expects (images may still need resizing, e.g. MNIST)."""
        return self.trial.spec.input_shape

    def test(self) -> ImageSet:
        """test_known followed by test_unknown in one ImageSet (labels 0..K-1 and -1)."""
        return ImageSet(np.concatenate([self.test_known.images, self.test_unknown.images]),
                        np.concatenate([self.test_known.labels, self.test_unknown.labels]), self.known_names)


def _root_for(root: PathLike | Mapping[str, PathLike], source: str) -> PathLike:
    if isinstance(root, Mapping):
        if source not in root:
            raise DataError(f"no data root given for {source!r}; pass a mapping with keys {sorted(root)} "
                            f"plus {source!r}, or one folder holding every dataset.")
        return root[source]
    return root


def build_trial(trial: OpenSetTrial, root: PathLike | Mapping[str, PathLike], *, seed: int = 0,
                cache_dir: PathLike | None = None, cache: bool = True, progress: bool = True) -> OpenSetData:
    """Read the datasets of ``trial`` and build its train / val (split seeded by ``seed``) / test arrays.
    ``root``: a folder holding the dataset files (:mod:`classanchor.data.formats`), or a mapping from reader
    name ("mnist", "svhn", "cifar10", "cifar100", "tinyimagenet") to its folder. Images keep their stored size
    (MNIST stays 28x28x1; ``OpenSetData.input_shape`` is what the network expects). Only the known classes'
    training images are read (TinyImageNet reads no other train folders)."""
    spec = trial.spec
    known = np.asarray(trial.known_sorted, dtype=np.int64)
    unknown = np.asarray(sorted(trial.unknown), dtype=np.int64)
    opts = {"cache_dir": cache_dir, "cache": cache, "progress": progress}
    known_root = _root_for(root, spec.known_source)

    full_train = load_dataset(spec.known_source, known_root, "train", classes=known, **opts)
    missing = np.setdiff1d(known, full_train.labels)
    if missing.size:
        raise DataError(f"{spec.name} trial {trial.trial}: no training images of known class(es) "
                        f"{missing.tolist()} in {known_root}.")
    known_names = tuple(full_train.class_names[k] for k in known)
    split = train_val_split(full_train.labels, spec.val_fraction, seed)  # seeded by the original labels
    full_train = ImageSet(full_train.images, relabel(full_train.labels, known), known_names)
    train, val = (full_train.subset(index) for index in split)
    del full_train

    same_source = spec.unknown_source == spec.known_source
    test_src = load_dataset(spec.known_source, known_root, "test",
                            classes=None if same_source else known, **opts)
    is_known = np.isin(test_src.labels, known)
    test_known = ImageSet(test_src.images[is_known], relabel(test_src.labels[is_known], known), known_names)

    if not same_source:
        test_src = load_dataset(spec.unknown_source, _root_for(root, spec.unknown_source), "test",
                                classes=unknown, **opts)
    is_unknown = np.isin(test_src.labels, unknown)
    unknown_labels = test_src.labels[is_unknown]
    test_unknown = ImageSet(test_src.images[is_unknown], np.full_like(unknown_labels, -1), known_names)
    absent = np.setdiff1d(unknown, unknown_labels)
    if absent.size:
        raise DataError(f"{spec.name} trial {trial.trial}: no test images of unknown class(es) "
                        f"{absent.tolist()}.")
    return OpenSetData(trial, train, val, test_known, test_unknown, known_names,
                       tuple(test_src.class_names[u] for u in unknown), unknown_labels)
