"""Your own image folders (data.folders): layouts, the per-class split, conversions and every kind of bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classanchor.data.folders import list_image_folder, load_labelled_folder, load_user_data
from classanchor.data.imageset import DataError
from classanchor.data.sources import OUTSIDE_ARCHIVE, FileSource

from ..helpers.files import KINDS, png_bytes, write_image_folder, zip_folder

# ------------------------------------------------------------------------------------------------ layouts


def test_zip_with_a_wrapper_folder_and_split_folders_points_at_the_split(tmp_path):
    data = write_image_folder(tmp_path / "imgs", per_class=3)
    archive = zip_folder(data, tmp_path / "photos.zip", prefix="photos/train/")
    with zipfile.ZipFile(archive, "a") as z:  # a test split beside the train split
        z.writestr("photos/test/red/000.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))
    with FileSource(archive) as source, pytest.raises(DataError, match="split folders") as err:
        list_image_folder(source)
    assert f"{archive}/photos/train" in str(err.value)
    with FileSource(f"{archive}/photos/train") as source:
        listing = list_image_folder(source)
    assert listing.classes == tuple(sorted(KINDS))
    assert len(listing.files["red"]) == 3 and listing.skipped == ()


def test_wrapper_folders_are_entered_but_a_single_class_folder_is_not(tmp_path):
    write_image_folder(tmp_path / "outer" / "inner", per_class=2, kinds=("a", "b"))
    with FileSource(tmp_path / "outer") as source:
        assert list_image_folder(source).classes == ("a", "b")
    write_image_folder(tmp_path / "single", per_class=2, kinds=("only",))
    with pytest.raises(DataError, match="at least 2 known classes"):
        load_user_data(tmp_path / "single", progress=False)


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
    with pytest.raises(DataError, match="both known and unknown"):
        load_user_data(data, known="a,b", unknown="b", progress=False)
    with pytest.raises(DataError, match=r"is a file, not a folder"):
        load_user_data(data / "a" / "000.png", progress=False)


@pytest.mark.parametrize("as_zip", [False, True])
def test_a_class_folder_without_images_stops_the_run_even_when_not_chosen(tmp_path, as_zip):
    data = write_image_folder(tmp_path / "d", per_class=4, kinds=("a", "b"))
    (data / "d").mkdir()
    (data / "d" / "readme.txt").write_text("x")
    (data / "e").mkdir()  # a completely empty class folder
    path = data
    if as_zip:
        path = zip_folder(data, tmp_path / "d.zip")
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("e/", b"")  # zips keep empty folders as entries
    with pytest.raises(DataError, match=r"class folder\(s\) \['d', 'e'\] in .* hold no image files; add images"):
        load_user_data(path, progress=False)
    with pytest.raises(DataError, match=r"\['d', 'e'\] .* hold no image files"):
        load_user_data(path, known="a,b", progress=False)


def test_zip_entries_outside_the_archive_are_skipped_and_listed(tmp_path):
    archive = zip_folder(write_image_folder(tmp_path / "d", per_class=4, kinds=("a", "b")), tmp_path / "d.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("a/../../evil.png", (tmp_path / "d" / "a" / "000.png").read_bytes())
    d = load_user_data(archive, val_fraction=0.25, test_fraction=0, progress=False)
    assert len(d.train) + len(d.val) == 8
    assert [(s.path, s.reason) for s in d.skipped] == [(f"{archive}/a/../../evil.png", OUTSIDE_ARCHIVE)]


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
