"""Argument checks and class-name lookups shared by the format readers of :mod:`classanchor.data.formats`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..imageset import DataError, ImageSet, PathLike

REDOWNLOAD = "the file is truncated or corrupt: download it again"


def check_split(split: str, allowed: Iterable[str], dataset: str) -> None:
    allowed = tuple(allowed)
    if split not in allowed:
        raise ValueError(f"{dataset}: split must be one of {allowed}, got {split!r}.")


def check_root(root: PathLike, dataset: str) -> Path:
    """``root`` as a Path (``~`` expanded); DataError when it does not exist."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{dataset}: data root {path} does not exist.")
    return path


def find_file(names: Sequence[str], dirs: Sequence[Path], what: str, fix: str) -> Path:
    """The first file ``dir / name`` (dirs in order, then names); DataError listing what was tried."""
    found = next((d / name for d in dirs for name in names if (d / name).is_file()), None)
    if found is not None:
        return found
    raise DataError(f"{what} not found: looked for {', '.join(names)} in {', '.join(str(d) for d in dirs)}. "
                    f"{fix}.")


def labels_from_names(found: np.ndarray, class_names: Sequence[str], where: str) -> np.ndarray:
    """Vectorised name -> index lookup (one dict access per *distinct* name); unknown name -> DataError."""
    index = {name: i for i, name in enumerate(class_names)}
    uniq, inverse = np.unique(found, return_inverse=True)
    bad = [u for u in uniq.tolist() if u not in index]
    if bad:
        raise DataError(f"{where}: unknown class folder name(s) {bad}; the folder names must be the "
                        f"official class names: {list(class_names)}. Rename or remove those folders.")
    return np.array([index[u] for u in uniq.tolist()], dtype=np.int64)[inverse.reshape(-1)]


def class_indices(classes: Iterable[int | str], class_names: Sequence[str], dataset: str,
                  noun: str = "class name") -> np.ndarray:
    """Sorted unique class indices from indices or names (``noun``: what a name is, e.g. "wnid");
    out of range or unknown -> DataError."""
    index = {name: i for i, name in enumerate(class_names)}
    out = []
    for c in classes:
        if isinstance(c, str) and c not in index:
            more = ", ..." if len(class_names) > 20 else ""
            raise DataError(f"{dataset}: unknown {noun} {c!r}; the {len(class_names)} valid {noun}s are "
                            f"{', '.join(class_names[:20])}{more}.")
        i = index[c] if isinstance(c, str) else int(c)
        if not 0 <= i < len(class_names):
            raise DataError(f"{dataset}: class index {i} out of range 0..{len(class_names) - 1}.")
        out.append(i)
    return np.unique(np.asarray(out, dtype=np.int64))


def filter_classes(data: ImageSet, classes: Iterable[int | str] | None, dataset: str) -> ImageSet:
    """The images of ``classes`` (indices or names; None = all); labels keep their values."""
    if classes is None:
        return data
    return data.subset(np.isin(data.labels, class_indices(classes, data.class_names, dataset)))
