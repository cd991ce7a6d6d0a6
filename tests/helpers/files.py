"""Writers of tiny image folders and zips, and a lister of cache folders, for the data and predictor tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("red", "green", "stripes", "blue")


def pattern(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy ``size x size`` RGB image whose class is obvious: a colour channel or horizontal stripes."""
    x = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    if kind == "stripes":
        x[::2] += 200
    else:
        x[..., {"red": 0, "green": 1, "blue": 2}.get(kind, sum(map(ord, kind)) % 3)] += 200
    return x


def write_image_folder(root: Path, per_class: int = 12, kinds=KINDS, size: int = 16, seed: int = 0) -> Path:
    """``root/<kind>/<i>.png`` for each kind; returns root."""
    rng = np.random.default_rng(seed)
    for kind in kinds:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(pattern(kind, rng, size)).save(root / kind / f"{i:03d}.png")
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """A zip of every file below ``folder``, entry names prefixed with ``prefix``."""
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, prefix + f.relative_to(folder).as_posix())
    return archive


def png_bytes(array: np.ndarray) -> bytes:
    """A PNG file of a uint8 (H, W) / (H, W, C) array (or uint16 (H, W): 16-bit grey)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def cache_files(cache: Path) -> list[str]:
    """The sorted file names in a cache folder ([] when it does not exist)."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []
