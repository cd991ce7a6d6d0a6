"""Image files -> uint8 pixels: the one decoder of the package, threaded, with an explicit error policy.

Every image file read by classanchor (benchmark image folders, your own folders, ``classanchor predict``):

1. PIL opens it; a JPEG much larger than the target side S is decoded at a reduced scale (``Image.draft``);
2. :func:`pil_to_array`, at the file's own size: EXIF orientation applied, then converted to grey (1 channel)
   or RGB (3). 16-bit grey (``I;16*``) and 32-bit integer grey (``I``) map 0..65535 linearly to 0..255
   (``round(v * 255 / 65535)``, values outside clipped first); float grey (``F``) maps [0, 1] to 0..255
   (clipped, NaN -> 0), so a float image holding 0..255 comes out white: save such images as 8-bit files;
3. :func:`resize_images` stretches it to ``S x S`` by the one resize rule. With ``resize=False`` an image of
   another size is a bad file instead (benchmark formats, whose images all have the official size).

``on_error="raise"`` (benchmark formats) stops at the first bad file with a :class:`DataError` naming it;
``on_error="skip"`` (your own folders, predict) skips it and lists it with the reason. Mode conversions are
counted (``Decoded.converted``, e.g. ``{'16-bit grey -> RGB': 2}``). Example::

    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.fromarray(np.full((10, 20), 32768, np.uint16)).save(buffer, format="PNG")   # 16-bit grey
    >>> decoded = decode_files(lambda i: buffer.getvalue(), ["grey.png"], size=8, channels=3)
    >>> decoded.images.shape, int(decoded.images.max()), dict(decoded.converted)
    ((1, 8, 8, 3), 128, {'16-bit grey -> RGB': 1})
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .imageset import DataError
from .preprocess import resize_pixels
from .sources import FileSource, SkippedFile

__all__ = ["GREY_MODES", "Decoded", "conversion_name", "decode_files", "decode_names", "pil_to_array",
           "resize_images"]

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_DEEP_GREY = {"I;16": "16-bit grey", "I;16B": "16-bit grey", "I;16L": "16-bit grey", "I;16N": "16-bit grey",
              "I": "32-bit grey", "F": "float grey"}  # modes PIL's convert() would clip instead of scale
_BAD_IMAGE = ("the file is corrupt or not an image: replace or remove it (a benchmark dataset: download it "
              "again)")
_ORIENTATION = 0x0112  # the EXIF tag
_CHUNK = 64  # files per thread-pool task
_PROGRESS_MIN = 500  # show a progress bar from this many files on
_WORKERS = max(1, min(16, os.cpu_count() or 1))


def conversion_name(mode: str, channels: int) -> str | None:
    """How an image of PIL ``mode`` is converted for ``channels`` ('grey -> RGB', '16-bit grey -> grey',
    'palette -> RGB', 'colour -> grey', ...), or None when it is not."""
    if mode in _DEEP_GREY:
        return f"{_DEEP_GREY[mode]} -> {'RGB' if channels == 3 else 'grey'}"
    if channels == 1:
        return None if mode in GREY_MODES else "colour -> grey"
    if mode == "RGB":
        return None
    return "grey -> RGB" if mode in GREY_MODES else f"{'palette' if mode == 'P' else mode} -> RGB"


def _deep_grey_to_uint8(im) -> np.ndarray:
    """A PIL image of mode I;16*, I or F -> uint8 (H, W), scaled as the module docstring says."""
    values = np.asarray(im)
    if im.mode == "F":
        unit = np.clip(np.nan_to_num(values.astype(np.float64), nan=0.0), 0.0, 1.0)
        return np.rint(unit * 255).astype(np.uint8)
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535), exactly


def pil_to_array(im, channels: int) -> tuple[np.ndarray, str]:
    """A PIL image -> (uint8 (H, W, channels) at its own size, its original PIL mode), as step 2 above."""
    from PIL import ImageOps

    mode = im.mode
    if im.getexif().get(_ORIENTATION, 1) != 1:  # exif_transpose copies even an upright image: ask first
        im = ImageOps.exif_transpose(im)
    if im.mode in _DEEP_GREY:
        grey = _deep_grey_to_uint8(im)[..., None]
        return (np.repeat(grey, 3, axis=2) if channels == 3 else grey), mode
    target = "RGB" if channels == 3 else "L"
    if im.mode != target:
        im = im.convert(target)
    return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels), mode


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, size, size, C) by :func:`classanchor.data.augment.resize_pixels`."""
    if images.shape[1:3] == (size, size):
        return images
    # torch wants writable memory (np.asarray of a PIL image is read-only)
    x = torch.from_numpy(np.require(images, requirements=["C", "W"])).permute(0, 3, 1, 2)
    return np.ascontiguousarray(resize_pixels(x, size).permute(0, 2, 3, 1).numpy())


def _reason(err: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image PIL can read (unknown format or not an image at all)"
    text = str(err)
    return (f"truncated image file ({text})" if "truncated" in text
            else f"cannot decode the image ({type(err).__name__}: {text})")


def _decode_one(data: bytes, channels: int, draft: int | None) -> tuple[np.ndarray, str]:
    """Encoded bytes -> (uint8 (H, W, channels) at the file's own size, the file's PIL mode)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        mode = im.mode
        if draft is not None:
            im.draft("RGB" if channels == 3 else "L", (draft, draft))
        im.load()  # a truncated file raises here
        return pil_to_array(im, channels)[0], mode


@dataclass
class Decoded:
    """The result of :func:`decode_files`: ``images`` uint8 (N_ok, H, W, C) in the order of the files that
    decoded; ``ok`` bool (N,) per requested file (all True with "raise"); ``skipped`` the failed files, with
    the reason; ``converted`` images converted, by kind; ``grey`` bool (N_ok,): the file itself was grey."""

    images: np.ndarray
    ok: np.ndarray
    skipped: list[SkippedFile]
    converted: Counter
    grey: np.ndarray


def decode_files(read: Callable[[int], bytes], where: Sequence[str], size: int | tuple[int, int] | None,
                 channels: int | None, *, on_error: str = "raise", resize: bool = True, progress: bool = True,
                 desc: str = "decoding", workers: int | None = None) -> Decoded:
    """Decode files ``0..N-1`` (``read(i)`` gives the bytes, ``where[i]`` the path to show) in a thread pool
    -> :class:`Decoded` with images uint8 (N_ok, S, S, C) (or (N_ok, H, W, C) without resize). ``size``: with
    ``resize`` (default) the side S, every image is stretched to S x S; with ``resize=False`` the (H, W) (or S
    for S x S) every image must already have, None = the first image's size. ``channels``: 1 (grey), 3 (RGB)
    or None (1 if every image is grey, else 3). ``on_error``: "raise" or "skip" a bad file (unreadable, not an
    image, truncated, wrong size). ``workers``: threads (default min(16, CPU count))."""
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grey), 3 (RGB) or None (automatic), got {channels!r}.")
    if resize and not isinstance(size, int):
        raise ValueError(f"resizing needs one side S (an int), got size={size!r}; pass resize=False to "
                         "require a size instead.")
    n = len(where)
    decode_channels = 3 if channels is None else channels
    shape = (size, size) if isinstance(size, int) else (None if size is None else tuple(size))
    modes: list[str | None] = [None] * n
    errors: dict[int, str] = {}

    def fail(i: int, reason: str, fix: str) -> None:  # raises, or records the failure and returns None
        if on_error == "raise":
            raise DataError(f"{where[i]}: {reason}; {fix}.")
        errors[i] = reason

    def one(i: int) -> np.ndarray | None:
        """File i decoded, or None when it failed (recorded in ``errors``)."""
        try:
            blob = read(i)
        except DataError as err:  # from a FileSource: it names the file and the fix
            if on_error == "raise":
                raise
            errors[i] = str(err).removeprefix(f"{where[i]}: ").rstrip(".")
            return None
        except Exception as err:  # noqa: BLE001 - OSError, KeyError, ... from another reader
            return fail(i, f"cannot read the file ({type(err).__name__}: {err})",
                        "check that it exists and is readable")
        try:
            array, modes[i] = _decode_one(blob, decode_channels, size if resize else None)
        except Exception as err:  # noqa: BLE001 - PIL: OSError, SyntaxError, ValueError, DecompressionBomb...
            return fail(i, _reason(err), _BAD_IMAGE)
        if resize:
            return resize_images(array[None], size)[0]
        if shape is not None and array.shape[:2] != shape:
            (h, w), (want_h, want_w) = array.shape[:2], shape
            return fail(i, f"image is {w}x{h} pixels (width x height), expected {want_w}x{want_h} like the "
                           "rest of the dataset", "remove or replace this file")
        return array

    start, first_image = 0, None
    while shape is None and start < n:  # the first image that decodes sets the size
        first_image = one(start)
        start += 1
        if first_image is not None:
            shape = first_image.shape[:2]
    shape = shape or (0, 0)
    out = np.empty((n, shape[0], shape[1], decode_channels), np.uint8)
    if first_image is not None:
        out[start - 1] = first_image

    def work(lo: int) -> int:
        hi = min(lo + _CHUNK, n)
        for i in range(lo, hi):
            array = one(i)
            if array is not None:
                out[i] = array
        return hi - lo

    bar = tqdm(total=n, initial=start, desc=desc, unit="img", disable=not progress or n < _PROGRESS_MIN,
               dynamic_ncols=True, mininterval=1.0)
    with ThreadPoolExecutor(workers or _WORKERS) as pool, bar:
        for done in pool.map(work, range(start, n, _CHUNK)):  # an error cancels the chunks not started
            bar.update(done)
    ok = np.ones(n, bool)
    ok[list(errors)] = False
    images = out if ok.all() else out[ok]
    grey = np.array([m in GREY_MODES for m, good in zip(modes, ok) if good], bool)
    if channels is None:
        channels = 1 if grey.size and grey.all() else 3
    if channels == 1 and images.shape[-1] == 3:
        images = np.ascontiguousarray(images[..., :1])  # grey decoded as RGB: R = G = B
    converted = Counter(c for m, good in zip(modes, ok) if good and (c := conversion_name(m, channels)))
    return Decoded(images, ok, [SkippedFile(where[i], errors[i]) for i in sorted(errors)], converted, grey)


def decode_names(source: FileSource, names: Sequence[str], size: int | tuple[int, int] | None,
                 channels: int | None, **options) -> Decoded:
    """:func:`decode_files` of the files ``names`` of ``source`` (options: those of decode_files)."""
    where = [source.where(n) for n in names]
    return decode_files(lambda i: source.read(names[i]), where, size, channels, **options)
