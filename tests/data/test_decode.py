"""The one decoder: modes (16-bit, float, palette, EXIF), the resize rule, and both error policies."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from classanchor.data.decode import conversion_name, decode_files, pil_to_array, resize_images
from classanchor.data.imageset import DataError
from classanchor.data.preprocess import resize_pixels

from ..helpers.files import png_bytes


def encoded(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def decode(blobs: list[bytes], size=8, channels=3, **options):
    return decode_files(lambda i: blobs[i], [f"f{i}.png" for i in range(len(blobs))], size, channels,
                        progress=False, **options)


# ---------------------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grey_png_scales_the_whole_range_mid_grey_is_128_not_255(channels):
    values = np.array([[0, 257, 32768, 65535]], np.uint16).repeat(4, axis=0)
    blob = png_bytes(values)
    assert Image.open(io.BytesIO(blob)).mode == "I;16"
    decoded = decode([blob], size=4, channels=channels)
    assert decoded.images.shape == (1, 4, 4, channels)
    assert decoded.images[0, 0, :, 0].tolist() == [0, 1, 128, 255]
    assert (decoded.images[..., 0:1] == decoded.images).all()  # R = G = B
    assert dict(decoded.converted) == {f"16-bit grey -> {'RGB' if channels == 3 else 'grey'}": 1}
    assert decoded.grey.tolist() == [True]


def test_16_bit_big_endian_tiff_and_32_bit_integer_images():
    big = Image.fromarray(np.full((3, 3), 32768, np.uint16).astype(">u2"))
    assert big.mode == "I;16B"
    assert decode([encoded(big, "TIFF")], size=3).images.max() == 128
    wide = Image.fromarray(np.array([[-5, 0, 32768, 70000]], np.int32))
    assert wide.mode == "I"
    array, mode = pil_to_array(wide, 1)
    assert mode == "I" and array[0, :, 0].tolist() == [0, 0, 128, 255]  # clipped to 0..65535 first


@pytest.mark.parametrize("channels", [1, 3])
def test_float_tiff_in_0_1_maps_to_0_255(channels):
    values = np.array([[0.0, 0.25, 0.5, 1.0, 2.0, np.nan]], np.float32).repeat(2, axis=0)
    blob = encoded(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(blob)).mode == "F"
    decoded = decode([blob], size=(2, 6), channels=channels, resize=False)
    assert decoded.images[0, 0, :, 0].tolist() == [0, 64, 128, 255, 255, 0]  # > 1 clipped, NaN -> 0
    assert decoded.images.shape == (1, 2, 6, channels)
    assert dict(decoded.converted) == {f"float grey -> {'RGB' if channels == 3 else 'grey'}": 1}


def test_conversion_names():
    assert conversion_name("RGB", 3) is None and conversion_name("L", 1) is None
    assert conversion_name("L", 3) == "grey -> RGB" and conversion_name("1", 3) == "grey -> RGB"
    assert conversion_name("P", 3) == "palette -> RGB" and conversion_name("RGBA", 3) == "RGBA -> RGB"
    assert conversion_name("RGB", 1) == "colour -> grey" and conversion_name("I;16B", 1) == "16-bit grey -> grey"
    assert conversion_name("F", 3) == "float grey -> RGB" and conversion_name("I", 3) == "32-bit grey -> RGB"


def test_exif_orientation_is_applied_before_the_resize():
    tall = np.zeros((8, 4, 3), np.uint8)
    tall[0] = 255  # the top row is white
    im = Image.fromarray(tall)
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    shown = decode([encoded(im, exif=exif)], size=8).images[0]
    assert shown[:, -1].min() == 255 and shown[:, 0].max() < 255  # the white top row is now the right column
    array, mode = pil_to_array(Image.open(io.BytesIO(encoded(im, exif=exif))), 3)
    assert mode == "RGB" and array.shape == (4, 8, 3)  # at its own (displayed) size


def test_the_resize_is_the_preprocessing_rule_at_the_files_own_size():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (10, 20, 3)).astype(np.uint8)
    out = decode([png_bytes(array)], size=8).images[0]
    expected = resize_pixels(torch.from_numpy(array).permute(2, 0, 1)[None], 8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(out, expected)
    batch = rng.integers(0, 256, (3, 10, 20, 3)).astype(np.uint8)
    assert np.array_equal(resize_images(batch, 8)[1], resize_images(batch[1:2], 8)[0])  # batch-independent
    assert resize_images(batch[:, :8, :8], 8) is not None and resize_images(batch, 20).shape == (3, 20, 20, 3)


def test_grey_files_give_one_channel_when_channels_is_automatic():
    grey = [png_bytes(np.full((5, 5), v, np.uint8)) for v in (10, 200)]
    auto = decode(grey, size=4, channels=None)
    assert auto.images.shape == (2, 4, 4, 1) and dict(auto.converted) == {}
    mixed = decode([*grey, png_bytes(np.zeros((5, 5, 3), np.uint8))], size=4, channels=None)
    assert mixed.images.shape == (3, 4, 4, 3) and dict(mixed.converted) == {"grey -> RGB": 2}
    assert mixed.grey.tolist() == [True, True, False]


# ---------------------------------------------------------------------------------------------- error policy


def bad_files() -> list[bytes]:
    whole = png_bytes(np.random.default_rng(0).integers(0, 256, (6, 6, 3)).astype(np.uint8))
    return [whole, b"this is text", whole[: len(whole) - 30], png_bytes(np.zeros((6, 7, 3), np.uint8)), whole]


def test_skip_policy_lists_each_bad_file_with_its_reason():
    decoded = decode(bad_files(), size=6, on_error="skip", workers=2)
    assert decoded.ok.tolist() == [True, False, False, True, True] and len(decoded.images) == 3
    reasons = {s.path: s.reason for s in decoded.skipped}
    assert list(reasons) == ["f1.png", "f2.png"]
    assert "not an image PIL can read" in reasons["f1.png"] and "truncated" in reasons["f2.png"]
    same_size = decode(bad_files(), size=None, resize=False, on_error="skip")
    assert same_size.ok.tolist() == [True, False, False, False, True]
    assert "image is 7x6 pixels (width x height), expected 6x6" in same_size.skipped[-1].reason

    def unreadable(i: int) -> bytes:
        raise OSError("disk on fire")

    failed = decode_files(unreadable, ["x.png"], 4, 3, on_error="skip", progress=False)
    assert failed.skipped[0].reason == "cannot read the file (OSError: disk on fire)" and failed.images.shape[0] == 0


def test_raise_policy_names_the_file_and_the_fix():
    files = bad_files()
    with pytest.raises(DataError, match=r"f1\.png: not an image PIL can read.*download it again"):
        decode(files[:2], size=6)
    with pytest.raises(DataError, match=r"f1\.png: image is 7x6 pixels \(width x height\), expected 6x6"):
        decode([files[0], files[3]], size=None, resize=False)
    with pytest.raises(DataError, match=r"f0\.png: image is 6x6 .* expected 5x5"):
        decode([files[0]], size=5, resize=False)
    assert decode([files[0], files[4]], size=None, resize=False).images.shape == (2, 6, 6, 3)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        decode(files, on_error="ignore")
    with pytest.raises(ValueError, match="resizing needs one side"):
        decode(files, size=(6, 6))


def test_many_files_in_threads_keep_their_order():
    blobs = [png_bytes(np.full((3, 3), i, np.uint8)) for i in range(150)]
    decoded = decode(blobs, size=3, channels=1, workers=4)
    assert decoded.images[:, 0, 0, 0].tolist() == list(range(150))
