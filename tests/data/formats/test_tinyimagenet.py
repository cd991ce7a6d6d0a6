"""The official tiny-imagenet-200 layout (folder and zip), on tiny files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from classanchor.data.formats import tinyimagenet
from classanchor.data.formats.tinyimagenet import read_tinyimagenet, tinyimagenet_classes
from classanchor.data.imageset import DataError

from ...helpers.files import cache_files


@pytest.mark.parametrize("as_zip", [True, False])
def test_tinyimagenet_layout(tmp_path, make, as_zip):
    info = make.tiny(tmp_path, n_classes=5, train_classes=(0, 2), n_train=3, n_val=2, as_zip=as_zip,
                     grey_first_val=True)
    wnids, names = tinyimagenet_classes(tmp_path)
    assert list(wnids) == info["wnids"] and list(names) == info["names"]
    train = read_tinyimagenet(tmp_path, "train", classes=[2, 0])
    assert train.images.shape == (6, 64, 64, 3) and train.labels.tolist() == [0, 0, 0, 2, 2, 2]
    assert train.class_names == tuple(info["names"])
    by_wnid = read_tinyimagenet(tmp_path, "train", classes=[info["wnids"][2]])
    assert by_wnid.labels.tolist() == [2, 2, 2]
    val = read_tinyimagenet(tmp_path, "val")
    np.testing.assert_array_equal(val.labels, info["val_labels"])  # from val_annotations.txt
    assert val.images.shape == (10, 64, 64, 3)  # the grey JPEG became RGB
    test = read_tinyimagenet(tmp_path, "test", classes=[1, 4])
    assert sorted(test.labels.tolist()) == [1, 1, 4, 4]


def test_tinyimagenet_cached_zip_read_skips_the_zip(tmp_path, make, monkeypatch):
    make.tiny(tmp_path, train_classes=(1, 3))
    first = read_tinyimagenet(tmp_path, "train", classes=[1, 3])
    first_val = read_tinyimagenet(tmp_path, "val", classes=[0])

    def boom(*a, **k):
        raise AssertionError("opened the zip although everything is cached")

    monkeypatch.setattr(tinyimagenet._Tiny, "__init__", boom)
    again = read_tinyimagenet(tmp_path, "train", classes=[3, 1])
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.class_names == again.class_names
    np.testing.assert_array_equal(read_tinyimagenet(tmp_path, "val", classes=[0]).images, first_val.images)


def test_tinyimagenet_missing_train_class(tmp_path, make, cache_env):
    info = make.tiny(tmp_path, train_classes=(0, 2))
    with pytest.raises(DataError) as err:
        read_tinyimagenet(tmp_path, "train", classes=[0, 1])
    msg = str(err.value)
    assert f"class 1 ({info['wnids'][1]}" in msg and "train/" in msg and "classes=" in msg
    assert cache_files(cache_env) == []  # class 0 was not decoded either: the check comes first
    with pytest.raises(DataError, match="unknown wnid 'n0000'"):
        read_tinyimagenet(tmp_path, "train", classes=["n0000"])
    with pytest.raises(DataError, match=r"class index 7 out of range 0\.\.4"):
        read_tinyimagenet(tmp_path, "val", classes=[7])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="looked for wnids.txt, tiny-imagenet-200/ and tiny-imagenet-200.zip"):
        read_tinyimagenet(empty, "val")


def test_tinyimagenet_bad_zip(tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="tiny-imagenet-200.zip: not a readable zip archive"):
        read_tinyimagenet(tmp_path, "val")
