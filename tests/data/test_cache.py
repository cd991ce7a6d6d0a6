"""The .npz cache of decoded datasets: hits, invalidation, cache_dir, damaged files, no temp files."""

from __future__ import annotations

import numpy as np
import pytest

from classanchor.data.formats import mnist
from classanchor.data.formats.cifar import read_cifar10
from classanchor.data.formats.mnist import read_mnist

from ..helpers.files import cache_files


def test_mnist_cache_hit_and_invalidation(tmp_path, make, cache_env, monkeypatch):
    make.mnist(tmp_path)
    first = read_mnist(tmp_path, "train")
    assert len(cache_files(cache_env)) == 1 and cache_files(cache_env)[0].endswith(".npz")

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(mnist, "_read_idx", boom)
    second = read_mnist(tmp_path, "train")
    np.testing.assert_array_equal(first.images, second.images)
    monkeypatch.undo()
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(cache_env))

    # a changed source file (new size and mtime) is read again
    new = make.mnist(tmp_path, per_class=(6, 3))
    third = read_mnist(tmp_path, "train")
    np.testing.assert_array_equal(third.labels, new["train"][1])
    assert len(third) == 60


def test_cache_dir_argument_and_cache_off(tmp_path, make, cache_env):
    make.mnist(tmp_path)
    read_mnist(tmp_path, "test", cache=False)
    assert cache_files(cache_env) == []
    other = tmp_path / "elsewhere"
    read_mnist(tmp_path, "test", cache_dir=other)
    assert len(cache_files(other)) == 1 and cache_files(cache_env) == []


def test_damaged_cache_file_is_rebuilt(tmp_path, make, cache_env):
    truth = make.mnist(tmp_path)
    read_mnist(tmp_path, "test")
    (f,) = cache_env.iterdir()
    f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        data = read_mnist(tmp_path, "test")
    np.testing.assert_array_equal(data.labels, truth["test"][1])
    assert cache_files(cache_env) == [f.name]


def test_an_unwritable_cache_warns_and_the_data_is_still_read(tmp_path, make):
    truth = make.mnist(tmp_path)
    (tmp_path / "not-a-folder").write_text("")
    with pytest.warns(UserWarning, match="could not write the dataset cache .* continuing without it"):
        data = read_mnist(tmp_path, "test", cache_dir=tmp_path / "not-a-folder")
    np.testing.assert_array_equal(data.labels, truth["test"][1])


def test_no_temp_files_left(tmp_path, make, cache_env):
    make.mnist(tmp_path)
    make.cifar(tmp_path, "cifar10")
    read_mnist(tmp_path, "train")
    read_cifar10(tmp_path, "test")
    names = cache_files(cache_env)
    assert len(names) == 2 and all(n.endswith(".npz") and not n.startswith(".") for n in names)
