"""Fuzz of the readers: truncated, bit-flipped and oversized MNIST idx files, CIFAR pickles, zips and images.

Every case ends in one of three ways: the reader returns images of the right shape and dtype (a flipped bit in
pixel data is still an image), it raises the library's own :class:`DataError` naming the file, or (the
``on_error="skip"`` policy of your own folders and ``predict``) it lists the file as skipped with a reason. Never
another exception, never code from a pickle, never a hang: each case runs under a time limit. The cases come from
a seeded RNG, so a failure is reproducible by its test id.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import signal
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classanchor.data.decode import decode_files
from classanchor.data.folders import load_user_data
from classanchor.data.formats.cifar import read_cifar10
from classanchor.data.formats.mnist import read_mnist
from classanchor.data.imageset import DataError

from .conftest import make_cifar, make_mnist

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # PIL's notes on the corrupt files themselves

TIME_LIMIT_S = 10  # per case; the readers take milliseconds on these tiny files
MEMORY_LIMIT = 128 * 2**20  # bytes per case; the files are a few kB
#: An image header may claim up to PIL's limit (Image.MAX_IMAGE_PIXELS, 89M pixels; twice that is refused as a
#: decompression bomb) and is then decoded: a flipped TIFF header claiming 20 x 1114116 pixels takes 128 MiB.
IMAGE_MEMORY_LIMIT = 1024 * 2**20
CASES = int(os.environ.get("CLASSANCHOR_FUZZ_CASES", 10))  # truncations; 3x as many bit flips


@contextlib.contextmanager
def time_limit(seconds: int = TIME_LIMIT_S):
    """Raise TimeoutError if the block runs longer than ``seconds`` (a hang), on Unix; else just run it."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hang(*_):
        raise TimeoutError(f"the reader hung for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mutations(blob: bytes, seed: int) -> list[tuple[str, bytes]]:
    """(name, bytes): truncations, bit flips (1-8 random bits anywhere, in the first or in the last 256 bytes, where
    headers, pickle opcodes and a zip's directory lie), and an oversized file (the blob twice)."""
    rng = np.random.default_rng(seed)
    out = [(f"truncated_to_{n}", blob[:n]) for n in sorted({0, 1, len(blob) - 1, *rng.integers(0, len(blob), CASES)})]
    n = len(blob)
    for i in range(3 * CASES):
        lo, hi = [(0, n), (0, min(n, 256)), (max(0, n - 256), n)][i % 3]
        flipped = bytearray(blob)
        for position in rng.integers(lo, hi, rng.integers(1, 9)):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        out.append((f"flipped_{i}", bytes(flipped)))
    out.append(("oversized", blob + blob))
    return out


def check(read, ok, memory: int = MEMORY_LIMIT) -> str:
    """Run ``read()`` under the time and memory limits: 'ok' (``ok(result)`` holds), 'refused' (DataError) or
    'skipped'. The memory is what Python and numpy allocate (tracemalloc), so a reader that claims gigabytes for a
    flipped byte is caught here, before it takes the machine down."""
    start = time.monotonic()
    tracemalloc.start()
    try:
        with time_limit():
            try:
                result = read()
            except DataError as err:
                assert str(err), "a DataError must say what is wrong"
                return "refused"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < memory, f"the reader allocated {peak / 2**20:.0f} MiB"
    assert time.monotonic() - start < TIME_LIMIT_S
    return ok(result)


def image_set_ok(data) -> str:
    assert data.images.dtype == np.uint8 and data.images.ndim == 4 and len(data.labels) == len(data.images)
    return "ok"


# ----------------------------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("member, gz", [("train-images-idx3-ubyte", False), ("train-labels-idx1-ubyte", False),
                                        ("train-images-idx3-ubyte.gz", True)])
def test_mnist_idx(tmp_path, member, gz):
    root = tmp_path / "mnist"
    make_mnist(root, per_class=(2, 1), gz=gz, torchvision_layout=False)
    path = root / member
    good = path.read_bytes()
    seen = set()
    for name, blob in mutations(good, seed=len(member) + gz):
        path.write_bytes(blob)
        seen.add(check(lambda: read_mnist(root, "train", cache=False), image_set_ok))
    assert "refused" in seen
    # a header that claims a huge image count (4e9 images of 28x28) is refused, not allocated
    raw = gzip.decompress(good) if gz else good
    huge = raw[:4] + np.array([0xFFFFFFFF], ">u4").tobytes() + raw[8:]
    path.write_bytes(gzip.compress(huge) if gz else huge)
    assert check(lambda: read_mnist(root, "train", cache=False), image_set_ok) == "refused"


# ----------------------------------------------------------------------------------------------- CIFAR


class RunsCode:
    """If this is ever unpickled it creates ``path``: a crafted 'CIFAR batch' must never get that far."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("member", ["data_batch_1", "test_batch", "batches.meta"])
def test_cifar_pickles(tmp_path, member):
    make_cifar(tmp_path, "cifar10", per_class=(2, 1))
    path = tmp_path / "cifar-10-batches-py" / member
    split = "test" if member == "test_batch" else "train"
    seen = set()
    for name, blob in mutations(path.read_bytes(), seed=len(member)):
        path.write_bytes(blob)
        seen.add(check(lambda: read_cifar10(tmp_path, split, cache=False, progress=False), image_set_ok))
    assert "refused" in seen
    marker = tmp_path / "code_ran"
    crafted = [pickle.dumps(c, protocol=2) for c in (
        {b"data": RunsCode(marker), b"labels": [0]}, RunsCode(marker),
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": pickle.loads})]
    crafted.append(b"\x80\x02}r" + struct.pack("<I", 2**24) + b".")  # memo index 16M: a 256 MiB table in C pickle
    for i, blob in enumerate(crafted):
        path.write_bytes(blob)
        outcome = check(lambda: read_cifar10(tmp_path, split, cache=False, progress=False), image_set_ok)
        assert outcome == ("ok" if member == "batches.meta" and i == 3 else "refused")  # an empty meta is no harm
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------- zips


def image_zip(path: Path, classes=("airplane", "cat"), per_class: int = 4, fmt: str = "PNG") -> Path:
    rng = np.random.default_rng(7)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for split in ("train", "test"):
            for c in classes:
                for i in range(per_class):
                    buffer = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format=fmt)
                    z.writestr(f"CIFAR-10-images/{split}/{c}/{i}.{fmt.lower()}", buffer.getvalue())
    return path


def test_zips_of_images(tmp_path):
    good = image_zip(tmp_path / "good.zip").read_bytes()
    path = tmp_path / "CIFAR-10-images.zip"
    user = tmp_path / "photos.zip"
    seen = set()
    for i, (name, blob) in enumerate(mutations(good, seed=11)):
        path.write_bytes(blob)
        seen.add(check(lambda: read_cifar10(path, "train", cache=False, progress=False), image_set_ok))
        user.write_bytes(blob)  # your own zip: bad files are skipped and listed, a broken archive is refused
        seen.add(check(lambda: load_user_data(f"{user}/CIFAR-10-images/train", image_size=8, progress=False,
                                              val_fraction=0.25, test_fraction=0.0), lambda d: "ok"))
    assert "refused" in seen


# ----------------------------------------------------------------------------------------------- images


def encoded(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(3)
    shape = (24, 20, 3) if mode == "RGB" else (24, 20)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("JPEG", "RGB"), ("JPEG", "L"),
                                       ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB")])
def test_images(fmt, mode):
    cases = mutations(encoded(fmt, mode), seed=len(fmt + mode))
    blobs = [blob for _, blob in cases]
    where = [f"{name}.{fmt.lower()}" for name, _ in cases]

    def listed(decoded) -> str:  # every file either decoded or listed as skipped with a reason
        assert decoded.images.shape == (int(decoded.ok.sum()), 8, 8, 3) and decoded.images.dtype == np.uint8
        assert [s.path for s in decoded.skipped] == [w for w, ok in zip(where, decoded.ok) if not ok]
        assert all(s.reason for s in decoded.skipped)
        return "skipped" if decoded.skipped else "ok"

    assert check(lambda: decode_files(blobs.__getitem__, where, 8, 3, on_error="skip", progress=False,
                                      workers=2), listed, IMAGE_MEMORY_LIMIT) == "skipped"
    for i in range(len(blobs)):  # the raise policy (benchmark formats): decoded, or a DataError naming the file
        outcome = check(lambda: decode_files(lambda _: blobs[i], [where[i]], 8, 3, progress=False, workers=1),
                        lambda d: "ok", IMAGE_MEMORY_LIMIT)
        assert outcome in ("ok", "refused")


def test_an_image_that_claims_a_huge_size_is_skipped_not_decoded():
    png = encoded("PNG", "L")
    ihdr = png.index(b"IHDR")
    side = np.array([200_000], ">u4").tobytes()  # 200000 x 200000 pixels: a decompression bomb, valid CRC
    header = b"IHDR" + side + side + png[ihdr + 12:ihdr + 17]
    bomb = png[:ihdr] + header + np.array([zlib.crc32(header)], ">u4").tobytes() + png[ihdr + 21:]
    decoded = check(lambda: decode_files(lambda _: bomb, ["bomb.png"], 8, 3, on_error="skip", progress=False),
                    lambda d: d)
    assert decoded.images.shape[0] == 0 and "DecompressionBomb" in decoded.skipped[0].reason
