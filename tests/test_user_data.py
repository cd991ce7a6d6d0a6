"""Reading your own image folders: layouts, the per-class split, conversions and every kind of bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classanchor.user_data import (
    DataError,
    ImageSource,
    decode_image,
    list_image_folder,
    load_labelled_folder,
    load_user_data,
    user_recipe,
)

KINDS = ("red", "green", "stripes", "blue")


def pattern(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy 16x16 RGB image whose class is obvious: a colour channel or horizontal stripes."""
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
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, prefix + f.relative_to(folder).as_posix())
    return archive


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ layouts


def test_zip_with_a_wrapper_folder_and_split_folders_points_at_the_split(tmp_path):
    data = write_image_folder(tmp_path / "imgs", per_class=3)
    archive = zip_folder(data, tmp_path / "photos.zip", prefix="photos/train/")
    with zipfile.ZipFile(archive, "a") as z:  # a test split beside the train split
        z.writestr("photos/test/red/000.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))
    with ImageSource(archive) as source, pytest.raises(DataError, match="split folders") as err:
        list_image_folder(source)
    assert f"{archive}/photos/train" in str(err.value)
    with ImageSource(f"{archive}/photos/train") as source:
        listing = list_image_folder(source)
    assert listing.classes == tuple(sorted(KINDS))
    assert listing.count("red") == 3 and listing.skipped == ()


def test_wrapper_folders_are_entered_but_a_single_class_folder_is_not(tmp_path):
    write_image_folder(tmp_path / "outer" / "inner", per_class=2, kinds=("a", "b"))
    with ImageSource(tmp_path / "outer") as source:
        assert list_image_folder(source).classes == ("a", "b")
    write_image_folder(tmp_path / "single", per_class=2, kinds=("only",))
    with pytest.raises(DataError, match="at least 2 known classes"):
        load_user_data(tmp_path / "single", progress=False)


def test_missing_inner_path_of_a_zip_lists_its_top_level(tmp_path):
    archive = zip_folder(write_image_folder(tmp_path / "d", per_class=1), tmp_path / "x.zip", prefix="top/")
    with pytest.raises(DataError, match=r"no entries under 'nope/'.*\['top'\]"):
        ImageSource(archive / "nope")
    with pytest.raises(DataError, match="no such folder"):
        ImageSource(tmp_path / "absent")


# ------------------------------------------------------------------------------------------------ the split


def test_split_counts_labels_and_seeded_split_that_ignores_the_known_list(tmp_path):
    data = write_image_folder(tmp_path / "d", per_class=20)
    a = load_user_data(data, known="red,green,stripes", unknown=["blue"], val_fraction=0.25, test_fraction=0.25,
                       progress=False)
    assert a.known_names == ("red", "green", "stripes") and a.unknown_names == ("blue",)
    assert {c: a.counts[c] for c in a.known_names} == {c: {"train": 10, "val": 5, "test": 5} for c in a.known_names}
    assert len(a.train) == 30 and len(a.val) == 15 and len(a.test_known) == 15 and len(a.test_unknown) == 20
    assert np.bincount(a.train.labels).tolist() == [10, 10, 10]
    assert (a.test_unknown.labels == -1).all() and (a.unknown_class == 0).all()
    assert a.channels == 3 and a.train.images.shape[1:] == (32, 32, 3)
    # the training images of red are the same whatever the other known classes are (split seeded per class)
    b = load_user_data(data, known=["green", "red"], val_fraction=0.25, test_fraction=0.25, progress=False)
    red_a = a.train.images[a.train.labels == 0]
    red_b = b.train.images[b.train.labels == 1]
    assert np.array_equal(red_a, red_b)
    c = load_user_data(data, known=["green", "red"], val_fraction=0.25, test_fraction=0.25, seed=1, progress=False)
    assert not np.array_equal(red_b, c.train.images[c.train.labels == 1])
    assert b.known_names == ("green", "red") and b.unknown_names == ()  # known order as given; blue left out
    assert len(load_user_data(data, unknown="blue", max_per_class=8, progress=False).train) < 30


def test_images_of_any_size_and_mode_are_resized_and_grey_is_counted(tmp_path):
    data = write_image_folder(tmp_path / "d", per_class=4, kinds=("a", "b"))
    Image.fromarray(np.full((50, 70), 200, np.uint8)).save(data / "a" / "grey.png")  # grey, 70 x 50
    Image.fromarray(np.zeros((9, 9, 4), np.uint8)).save(data / "b" / "rgba.png")
    d = load_user_data(data, image_size=24, test_fraction=0, val_fraction=0.25, progress=False)
    assert d.channels == 3 and d.train.images.shape[1:] == (24, 24, 3)
    assert d.converted == {"grey -> RGB": 1, "RGBA -> RGB": 1}
    all_images = np.concatenate([d.train.images, d.val.images])
    assert any((im == 200).all() for im in all_images)  # the grey image: R = G = B = 200 everywhere


def test_an_all_grey_folder_gives_a_one_channel_input(tmp_path):
    for cls, value in (("dark", 30), ("light", 220)):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(np.full((12, 12), value + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_user_data(tmp_path, image_size=16, val_fraction=0.25, test_fraction=0, progress=False)
    assert d.channels == 1 and d.train.images.shape[1:] == (16, 16, 1) and d.converted == {}
    forced = load_user_data(tmp_path, image_size=16, channels=3, val_fraction=0.25, test_fraction=0, progress=False)
    assert forced.channels == 3 and forced.converted == {"grey -> RGB": 8}


def test_decode_image_stretches_with_pil_bilinear_and_applies_exif_orientation():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (10, 20, 3)).astype(np.uint8)
    out, mode = decode_image(png_bytes(array), 8, 3)
    expected = np.asarray(Image.fromarray(array).resize((8, 8), Image.BILINEAR))
    assert mode == "RGB" and np.array_equal(out, expected)
    # an image stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to display)
    tall = np.zeros((8, 4, 3), np.uint8)
    tall[0] = 255  # the top row is white
    im = Image.fromarray(tall)
    exif = im.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", exif=exif)
    shown, _ = decode_image(buffer.getvalue(), 8, 3)
    assert shown[:, -1].min() == 255 and shown[:, 0].max() < 255  # the white top row is now the right column


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_files_are_skipped_with_their_reason(tmp_path):
    data = write_image_folder(tmp_path / "d", per_class=6, kinds=("a", "b"))
    (data / "a" / "notes.txt").write_text("not an image")
    (data / "b" / "fake.jpg").write_bytes(b"this is text")
    whole = (data / "a" / "000.png").read_bytes()
    (data / "a" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (data / "loose.png").write_bytes(whole)
    d = load_user_data(data, val_fraction=0.2, test_fraction=0, progress=False)
    reasons = {Path(s.path).name: s.reason for s in d.skipped}
    assert set(reasons) == {"notes.txt", "fake.jpg", "cut.png", "loose.png"}
    assert "not an image file (.txt" in reasons["notes.txt"]
    assert "not an image PIL can read" in reasons["fake.jpg"]
    assert "truncated" in reasons["cut.png"]
    assert reasons["loose.png"] == "not inside a class folder"
    assert len(d.train) + len(d.val) == 12
    assert [s["path"] for s in d.summary()["skipped"]] == [s.path for s in d.skipped]


def test_empty_folder_missing_class_and_imageless_class_are_refused_with_the_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_user_data(tmp_path / "empty", progress=False)
    data = write_image_folder(tmp_path / "d", per_class=4, kinds=("a", "b", "c"))
    with pytest.raises(DataError, match=r"known class\(es\) \['zebra'\] not found .*a, b, c"):
        load_user_data(data, known="a,zebra", progress=False)
    with pytest.raises(DataError, match=r"unknown class\(es\) \['owl'\] not found"):
        load_user_data(data, known="a,b", unknown="owl", progress=False)
    (data / "d").mkdir()
    (data / "d" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"\['d'\] .* hold no image files"):
        load_user_data(data, known="a,d", progress=False)
    (data / "e").mkdir()  # a completely empty class folder
    with pytest.raises(DataError, match=r"\['e'\] .* hold no image files"):
        load_user_data(data, known="a,e", progress=False)
    with pytest.raises(DataError, match="both known and unknown"):
        load_user_data(data, known="a,b", unknown="b", progress=False)


def test_a_class_whose_images_are_all_unreadable_or_too_few_is_refused(tmp_path):
    data = write_image_folder(tmp_path / "d", per_class=6, kinds=("a", "b"))
    (data / "c").mkdir()
    (data / "c" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"\['c'\] have no readable image .*x.jpg"):
        load_user_data(data, progress=False)
    (data / "c" / "x.jpg").write_bytes((data / "a" / "000.png").read_bytes())
    with pytest.raises(DataError, match=r"c \(1\) have too few readable images"):
        load_user_data(data, progress=False)
    with pytest.raises(ValueError, match="sum to less than 1"):
        load_user_data(data, val_fraction=0.5, test_fraction=0.5, progress=False)


def test_labelled_folder_for_evaluation_maps_names_to_the_models_classes(tmp_path):
    data = write_image_folder(tmp_path / "d", per_class=3)
    images, unknown_class, unknown_names, _, _ = load_labelled_folder(
        data, ("stripes", "red", "green"), image_size=16, channels=3, progress=False)
    assert unknown_names == ("blue",)  # every folder that is not a model class
    assert sorted(np.bincount(images.labels[images.labels >= 0]).tolist()) == [3, 3, 3]
    assert (images.labels == -1).sum() == 3 and (unknown_class[images.labels == -1] == 0).all()
    reds = images.images[images.labels == 1]
    assert reds[..., 0].mean() > 150 and images.images.shape[1:] == (16, 16, 3)
    with pytest.raises(DataError, match="not classes of the model"):
        load_labelled_folder(data, ("red", "green"), known="blue", image_size=16, channels=3, progress=False)


def test_user_recipe_splits_epochs_three_to_one_like_the_paper():
    assert [(s.epochs, s.lr) for s in user_recipe(30).stages] == [(22, 0.01), (8, 0.001)]
    assert [s.epochs for s in user_recipe(3).stages] == [2, 1]
    assert [s.epochs for s in user_recipe(1).stages] == [1]
    r = user_recipe(4, image_size=64, flip=False)
    assert r.image_size == 64 and r.flip_p == 0 and not r.flip_anchor_fit and r.batch_size == 128
