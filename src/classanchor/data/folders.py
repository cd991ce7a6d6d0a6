"""Your own images: an image folder ``DATA/<class name>/[sub-folders/]<image file>`` listed, decoded, split.

``DATA`` is a folder, a zip, or a folder inside a zip (``photos.zip/photos/train``). Wrapper folders holding
nothing but one folder are entered; a folder of ``train/`` and ``test/`` split folders is refused with the
path to use instead. Images of any size and mode are decoded as in the predictor. Bad files never stop a run
(``on_error="skip"``): non-image files, files outside a class folder, unreadable images and zip entries
outside the archive are skipped and listed with the reason. An empty folder, a class folder without images, a
class name that is not a folder, or a known class without readable images raise :class:`DataError`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import Decoded, decode_names
from .imageset import DataError, ImageSet, PathLike
from .sources import IMAGE_SUFFIXES, FileSource, SkippedFile, is_image_name
from .splits import train_val_split

__all__ = ["SPLIT_FOLDER_NAMES", "FolderListing", "UserData", "list_image_folder", "load_labelled_folder",
           "load_user_data", "open_image_folder"]

SPLIT_FOLDER_NAMES = frozenset({"train", "test", "val", "valid", "validation"})


def open_image_folder(data: PathLike) -> FileSource:
    """The :class:`FileSource` of an image folder, zip or folder inside a zip; DataError for a single file."""
    source = FileSource(data)
    if source.single_file:
        source.close()
        raise DataError(f"{Path(data).expanduser()}: is a file, not a folder or a zip of image folders; give "
                        "the folder that holds one sub-folder per class.")
    return source


@dataclass(frozen=True)
class FolderListing:
    """The class folders of an image folder, before any decoding: ``root``, the folder used (wrapper folders
    entered) as shown to a person; every class folder name (``classes``, sorted); ``files``: class name ->
    image file names (relative to the source), sorted; ``skipped``: the other files and entries, and why."""

    root: str
    classes: tuple[str, ...]
    files: dict[str, list[str]]
    skipped: tuple[SkippedFile, ...]


def _wrapper_prefix(names: Sequence[str]) -> str:
    """The wrapper folders to enter ('outer/inner/' or ''): a level holding nothing but one folder that holds
    only folders."""
    prefix = ""
    while True:
        here = [n[len(prefix):] for n in names]  # every name starts with the prefix
        tops = {n.split("/", 1)[0] for n in here}
        if len(tops) != 1 or any("/" not in n for n in here):
            return prefix
        top = tops.pop()
        if any("/" not in n[len(top) + 1:] for n in here):
            return prefix  # the single folder holds images itself: it is a class folder
        prefix += top + "/"


def list_image_folder(source: FileSource) -> FolderListing:
    """The files of ``source`` by class folder (first level below the root); DataError: see the module."""
    names = source.names()
    prefix = _wrapper_prefix(names)
    root = source.where(prefix.rstrip("/")) if prefix else str(source.path)
    files: dict[str, list[str]] = {}
    skipped = list(source.skipped)
    for name in names:
        rel = name[len(prefix):]
        if "/" not in rel:
            skipped.append(SkippedFile(source.where(name), "not inside a class folder"))
        elif not is_image_name(rel):
            suffix = posixpath.splitext(rel)[1] or "no suffix"
            skipped.append(SkippedFile(source.where(name), f"not an image file ({suffix}; images end in "
                                                           f"{', '.join(IMAGE_SUFFIXES[:4])}, ...)"))
        else:
            files.setdefault(rel.split("/", 1)[0], []).append(name)
    if not files:
        detail = (f" ({len(skipped)} other files skipped, e.g. {skipped[0].path}: {skipped[0].reason})"
                  if skipped else "")
        raise DataError(f"{root}: no images found{detail}; expected one sub-folder per class holding image "
                        f"files ({', '.join(IMAGE_SUFFIXES)}).")
    classes = tuple(sorted(files))
    splits = [c for c in classes if c.lower() in SPLIT_FOLDER_NAMES]
    if splits and all(posixpath.relpath(n, prefix + c).count("/") >= 1 for c in splits for n in files[c]):
        example = posixpath.join(str(source.path), prefix + ("train" if "train" in splits else splits[0]))
        raise DataError(f"{root} holds split folders ({', '.join(splits)}) rather than class folders; point "
                        f"at one of them, e.g. {example}")
    imageless = [f for f in source.folders(prefix) if f not in files]
    if imageless:
        raise DataError(f"class folder(s) {imageless} in {root} hold no image files; add images "
                        f"({', '.join(IMAGE_SUFFIXES[:4])}, ...) to them or remove them.")
    return FolderListing(root, classes, files, tuple(skipped))


def _parse_names(names: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Class names from a list or a comma-separated string (None stays None); DataError for repeats."""
    if names is None:
        return None
    if isinstance(names, str):
        names = names.split(",")
    out = tuple(n.strip() for n in names if n.strip())
    if len(set(out)) != len(out):
        raise DataError(f"class name(s) {sorted({n for n in out if out.count(n) > 1})} given twice.")
    return out


def _check_roles(known: Sequence[str], unknown: Sequence[str], listing: FolderListing) -> None:
    """DataError naming the known or unknown classes that are not class folders, or that are both."""
    for names, role in ((unknown, "unknown"), (known, "known")):
        missing = [n for n in names if n not in listing.files]
        if missing:
            raise DataError(f"{role} class(es) {missing} not found in {listing.root}; the class folders "
                            f"there are: {', '.join(listing.classes)}.")
    both = sorted(set(known) & set(unknown))
    if both:
        raise DataError(f"class(es) {both} are both known and unknown; list each class once.")


def _decode_classes(source: FileSource, files: list[list[str]], image_size: int, channels: int | None,
                    progress: bool) -> tuple[Decoded, np.ndarray]:
    """Decode ``files[j]``, the images of class j, at S x S, skipping bad files -> (the decode record, int64
    (N_ok,) the class j of each decoded image)."""
    decoded = decode_names(source, [n for names in files for n in names], image_size, channels,
                           on_error="skip", progress=progress, desc=f"reading {source.path.name}")
    return decoded, np.repeat(np.arange(len(files)), [len(names) for names in files])[decoded.ok]


@dataclass(frozen=True, eq=False, repr=False)
class UserData:
    """The arrays of one training run on an image folder; labels 0..K-1 known (order of ``known_names``).
    ``train``, ``val``, ``test_known``: known classes, per-class random split (seeded); ``test_unknown``:
    every image of the held-out unknown classes, labels -1; ``unknown_class``: int64 (N_unknown,) index into
    ``unknown_names`` of each of them; ``counts``: class name -> {"train", "val", "test"} images used."""

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
        return (f"UserData({self.source}: known {list(self.known_names)}, unknown "
                f"{list(self.unknown_names)}, train {len(self.train)}, val {len(self.val)}, test "
                f"{len(self.test_known)} + {len(self.test_unknown)} unknown, "
                f"{self.image_size}x{self.image_size}x{self.channels})")

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


def load_user_data(data: PathLike, known: Iterable[str] | str | None = None,
                   unknown: Iterable[str] | str | None = None, *, image_size: int = 32,
                   channels: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                   max_per_class: int | None = None, seed: int = 0, progress: bool = True) -> UserData:
    """Read an image folder (or zip) for training: known classes split into train / val / test. ``known``: the
    known classes (names or a comma list; None = every class folder not in ``unknown``); ``unknown``: classes
    held out entirely, used only to measure open-set performance; ``image_size`` S: every image is stretched
    to S x S; ``channels``: 1, 3 or None (1 if every image is grey, else 3); ``val_fraction``,
    ``test_fraction``: per-class shares of each known class for validation (checkpoint choice, threshold
    calibration) and for the test metrics, split seeded by ``seed`` and the class's rank among all class
    folders (so it does not change with the known list); ``max_per_class``: use at most this many images per
    class (a seeded random subset), for quick runs."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 "
                         "and sum to less than 1.")
    if val_fraction <= 0:
        raise ValueError("val_fraction must be > 0: the validation images choose the checkpoint and "
                         "calibrate the threshold.")
    if max_per_class is not None and max_per_class < 3:
        raise ValueError(f"max_per_class must be at least 3, got {max_per_class}.")
    unknown_names, known_names = _parse_names(unknown) or (), _parse_names(known)
    with open_image_folder(data) as source:
        listing = list_image_folder(source)
        if known_names is None:
            known_names = tuple(c for c in listing.classes if c not in unknown_names)
        _check_roles(known_names, unknown_names, listing)
        if len(known_names) < 2:
            raise DataError(f"an open-set classifier needs at least 2 known classes, got "
                            f"{list(known_names)}; the class folders in {listing.root} are: "
                            f"{', '.join(listing.classes)}.")
        chosen = (*known_names, *unknown_names)  # label j = class chosen[j]
        rank = np.asarray([listing.classes.index(c) for c in chosen], np.int64)
        files = [_subsample(listing.files[c], max_per_class, seed, r) for c, r in zip(chosen, rank.tolist())]
        decoded, labels_all = _decode_classes(source, files, image_size, channels, progress)
    k = len(known_names)
    counts_per_class = np.bincount(labels_all, minlength=len(chosen))
    empty = [c for c, n in zip(chosen, counts_per_class.tolist()) if n == 0]
    if empty:
        bad = decoded.skipped
        raise DataError(f"class(es) {empty} have no readable image in {listing.root}"
                        + (f" (e.g. {bad[0].path}: {bad[0].reason})" if bad else "") + ".")
    minimum = 2 + (test_fraction > 0)
    few = [f"{c} ({n})" for c, n in zip(known_names, counts_per_class[:k].tolist()) if n < minimum]
    if few:
        raise DataError(f"known class(es) {', '.join(few)} have too few readable images; each needs at least "
                        f"{minimum} for the train / val{' / test' if test_fraction else ''} split: add images"
                        f"{' or pass test_fraction=0' if test_fraction else ''}.")
    known_index = np.flatnonzero(labels_all < k)
    ranks = rank[labels_all[known_index]]  # split seeds: the class's rank among all class folders
    rest, test = train_val_split(ranks, test_fraction, seed)
    tr, va = train_val_split(ranks[rest], val_fraction / (1 - test_fraction), seed + 1)
    split_index = {"train": known_index[rest[tr]], "val": known_index[rest[va]], "test": known_index[test]}
    images = decoded.images
    sets = {split: ImageSet(images[i], labels_all[i], known_names) for split, i in split_index.items()}
    empty_split = [(split, c) for split in ("train", "val")
                   for c, n in zip(known_names, sets[split].class_counts().tolist()) if n == 0]
    if empty_split:
        raise DataError(f"the {empty_split[0][0]} split of known class {empty_split[0][1]!r} is empty; add "
                        "images to that class or change val_fraction / test_fraction.")
    unknown_index = np.flatnonzero(labels_all >= k)
    test_unknown = ImageSet(images[unknown_index], np.full(unknown_index.size, -1, np.int64), known_names)
    counts = {c: {split: int(s.class_counts()[label]) for split, s in sets.items()}
              for label, c in enumerate(known_names)}
    return UserData(str(data), known_names, unknown_names, sets["train"], sets["val"], sets["test"],
                    test_unknown, labels_all[unknown_index] - k, images.shape[-1], image_size,
                    tuple(listing.skipped) + tuple(decoded.skipped), dict(decoded.converted), counts)


def load_labelled_folder(data: PathLike, class_names: Sequence[str], known: Iterable[str] | str | None = None,
                         unknown: Iterable[str] | str | None = None, *, image_size: int, channels: int,
                         progress: bool = True) -> tuple[ImageSet, np.ndarray, tuple[str, ...], Decoded,
                                                         FolderListing]:
    """Every image of the chosen classes of a labelled folder, for evaluating a trained model.
    ``class_names``: the model's classes, a known class gets its index there as label; ``known``: classes
    treated as known (model classes; None = those found in ``data``); ``unknown``: treated as unknown (label
    -1; None = every other class folder). Returns (the images, unknown class index per image (-1 for knowns)
    into the returned unknown names, the unknown names, the decode record, the listing)."""
    with open_image_folder(data) as source:
        listing = list_image_folder(source)
        unknown_names, known_names = _parse_names(unknown), _parse_names(known)
        if known_names is None:
            not_known = unknown_names or ()
            known_names = tuple(c for c in class_names if c in listing.files and c not in not_known)
            if not known_names:
                raise DataError(f"none of the model's classes ({', '.join(class_names)}) is a class folder "
                                f"in {listing.root} (folders: {', '.join(listing.classes)}).")
        not_model = [c for c in known_names if c not in class_names]
        if not_model:
            raise DataError(f"known class(es) {not_model} are not classes of the model; its classes are: "
                            f"{', '.join(class_names)}.")
        if unknown_names is None:
            unknown_names = tuple(c for c in listing.classes if c not in class_names)
        _check_roles(known_names, unknown_names, listing)
        files = [listing.files[c] for c in (*known_names, *unknown_names)]
        decoded, which = _decode_classes(source, files, image_size, channels, progress)
    label_of = [list(class_names).index(c) for c in known_names] + [-1] * len(unknown_names)
    unknown_of = [-1] * len(known_names) + list(range(len(unknown_names)))
    images = ImageSet(decoded.images, np.asarray(label_of, np.int64)[which], tuple(class_names))
    return images, np.asarray(unknown_of, np.int64)[which], tuple(unknown_names), decoded, listing
