"""FileSource (folders, zips, folders and files inside zips, plain files) and expand_paths."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from classanchor.data import folders, sources
from classanchor.data.formats import image_folder
from classanchor.data.imageset import DataError
from classanchor.data.sources import OUTSIDE_ARCHIVE, FileSource, SkippedFile, expand_paths

from ..helpers.files import png_bytes, write_image_folder, zip_folder


def test_one_suffix_list_for_the_whole_package():
    assert folders.IMAGE_SUFFIXES is sources.IMAGE_SUFFIXES is image_folder.IMAGE_SUFFIXES
    assert {".png", ".jpg", ".jpeg", ".tif", ".webp", ".pgm"} <= set(sources.IMAGE_SUFFIXES)
    assert sources.is_image_name("a/B.JPG") and not sources.is_image_name("notes.txt")


def test_folder_lists_files_before_sub_folders_and_hides_dot_files(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("z.png", "b/y.png", "b/deep/x.png", "a/w.png", ".hidden.png", ".git/config"):
        (tmp_path / name).write_bytes(name.encode())
    with FileSource(tmp_path) as source:
        assert source.names() == ["z.png", "a/w.png", "b/y.png", "b/deep/x.png"]
        assert source.names("b") == ["b/y.png", "b/deep/x.png"]
        assert source.folders() == ["a", "b", "empty"] and source.folders("b") == ["deep"]
        assert source.read("b/y.png") == b"b/y.png" and source.where("a/w.png") == str(tmp_path / "a" / "w.png")
        assert source.exists("a/w.png") and not source.exists("a/nope.png")
        assert not source.is_zip and not source.single_file and source.skipped == ()
        with pytest.raises(DataError, match=r"a/nope\.png: file not found"):
            source.read("a/nope.png")


def test_zip_a_folder_inside_it_one_file_inside_it_and_a_plain_file(tmp_path):
    archive = zip_folder(write_image_folder(tmp_path / "d", per_class=2, kinds=("a", "b")), tmp_path / "x.zip",
                         prefix="top/")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("top/empty/", b"")
        z.writestr("__MACOSX/top/._a.png", b"junk")
    with FileSource(archive) as source:
        assert source.is_zip and source.names() == ["top/a/000.png", "top/a/001.png", "top/b/000.png",
                                                     "top/b/001.png"]
        assert source.folders() == ["top"] and source.folders("top") == ["a", "b", "empty"]
        assert source.where("top/a/000.png") == f"{archive}/top/a/000.png"
    with FileSource(archive / "top" / "b") as source:
        assert source.names() == ["000.png", "001.png"] and source.where("000.png") == f"{archive}/top/b/000.png"
        assert source.read("001.png") == (tmp_path / "d" / "b" / "001.png").read_bytes()
    with FileSource(archive / "top" / "a" / "001.png") as source:
        assert source.single_file and source.names() == ["001.png"]
        assert source.read("001.png") == (tmp_path / "d" / "a" / "001.png").read_bytes()
        assert source.where("001.png") == f"{archive}/top/a/001.png"
    single = FileSource(tmp_path / "d" / "a" / "000.png")
    assert single.single_file and not single.is_zip and single.names() == ["000.png"]
    assert single.read("000.png") == (tmp_path / "d" / "a" / "000.png").read_bytes()


def test_zip_entries_outside_the_archive_are_listed_as_skipped_never_read(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good/a.png", b"x")
        z.writestr("../escape.png", b"x")
        z.writestr("/etc/absolute.png", b"x")
        z.writestr("good/../../climb.png", b"x")
        z.writestr("good/a..b.png", b"x")  # two dots inside a name are fine
    with FileSource(archive) as source:
        assert source.names() == ["good/a..b.png", "good/a.png"]
        assert source.skipped == (SkippedFile(f"{archive}/../escape.png", OUTSIDE_ARCHIVE),
                                  SkippedFile(f"{archive}//etc/absolute.png", OUTSIDE_ARCHIVE),
                                  SkippedFile(f"{archive}/good/../../climb.png", OUTSIDE_ARCHIVE))
    found = expand_paths([archive])
    assert [found.where(i) for i in range(len(found))] == [f"{archive}/good/a..b.png", f"{archive}/good/a.png"]
    assert sum("outside the archive" in s.reason for s in found.skipped) == 3
    found.close()


def test_missing_and_broken_paths_name_the_problem(tmp_path):
    archive = zip_folder(write_image_folder(tmp_path / "d", per_class=1), tmp_path / "x.zip", prefix="top/")
    with pytest.raises(DataError, match=r"no entries under 'nope/'.*\['top'\]"):
        FileSource(archive / "nope")
    with pytest.raises(DataError, match="no such file or folder"):
        FileSource(tmp_path / "absent")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match=r"broken\.zip: not a readable zip archive.*download it again"):
        FileSource(tmp_path / "broken.zip")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt is a file, not a folder or a zip"):
        FileSource(tmp_path / "notes.txt" / "inner")
    with FileSource(archive) as source, pytest.raises(DataError, match=r"x\.zip/top/gone\.png: file not found in "
                                                                         r"the archive"):
        source.read("top/gone.png")


def test_expand_paths_lists_images_and_says_why_the_rest_was_skipped(tmp_path):
    data = write_image_folder(tmp_path / "imgs", per_class=1, kinds=("a",))
    (data / "a" / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "photo.data").write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))  # a file given by itself
    with expand_paths([data, tmp_path / "missing.jpg", tmp_path / "empty", tmp_path / "photo.data"]) as found:
        assert [found.where(i) for i in range(len(found))] == [str(data / "a" / "000.png"),
                                                                str(tmp_path / "photo.data")]
        assert found.read(1) == (tmp_path / "photo.data").read_bytes()
        reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in found.skipped}
    assert reasons == {"notes.txt": "not an image file (.txt)", "missing.jpg": "no such file or folder",
                       "empty": "empty folder: no files in it"}
