"""The open-set benchmark definitions: standard trials, openness, relabelling, train/val split, trial data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classanchor.data.formats.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from classanchor.data.imageset import DataError
from classanchor.data.splits import (
    BENCHMARKS,
    OpenSetTrial,
    build_trial,
    get_benchmark,
    get_trial,
    load_trials,
    openness,
    relabel,
    train_val_split,
)

SHARED_SPLITS = Path("/work/shared/benchmark-splits.json")
PACKAGED = Path(__file__).resolve().parents[2] / "src/classanchor/data/benchmark_splits.json"


def standard_splits() -> dict:
    return json.loads((SHARED_SPLITS if SHARED_SPLITS.is_file() else PACKAGED).read_text())


# ---------------------------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_trials_equal_the_standard_splits(name):
    trials = load_trials(name)
    expected = standard_splits()[name]
    assert len(trials) == 5 == len(expected)
    for i, (trial, ref) in enumerate(zip(trials, expected)):
        assert trial.dataset == name and trial.trial == i
        assert list(trial.known) == ref["known"] and list(trial.unknown) == ref["unknown"]
        assert not set(trial.known) & set(trial.unknown) or name.startswith("CIFAR+")


@pytest.mark.skipif(not SHARED_SPLITS.is_file(), reason="shared splits file not available")
def test_packaged_json_is_the_shared_file():
    assert json.loads(PACKAGED.read_text()) == json.loads(SHARED_SPLITS.read_text())


def test_trial_shapes_and_specs():
    sizes = {"MNIST": (6, 4), "SVHN": (6, 4), "CIFAR10": (6, 4), "CIFAR+10": (4, 10), "CIFAR+50": (4, 50),
             "TinyImageNet": (20, 180)}
    for name, (k, u) in sizes.items():
        for t in load_trials(name):
            assert (len(t.known), len(t.unknown)) == (k, u)
    for name in ("CIFAR+10", "CIFAR+50"):
        assert all(t.known == (0, 1, 8, 9) for t in load_trials(name))
        assert get_benchmark(name).unknown_source == "cifar100"
    assert get_benchmark("mnist").input_shape == (32, 32, 1)
    assert get_benchmark("svhn").input_shape == (32, 32, 3)
    assert get_benchmark("tiny-imagenet").input_shape == (64, 64, 3)
    assert get_benchmark("tinyimagenet").val_fraction == 0.1 and get_benchmark("cifar10").val_fraction == 0.2
    assert get_benchmark("cifar_plus_50").name == "CIFAR+50"
    with pytest.raises(ValueError, match="unknown benchmark 'cifar20'"):
        get_benchmark("cifar20")
    with pytest.raises(ValueError, match=r"trials 0\.\.4, got 5"):
        get_trial("MNIST", 5)
    with pytest.raises(ValueError, match="both known and unknown"):
        OpenSetTrial("MNIST", 0, (1, 2), (2, 3))


@pytest.mark.parametrize("name,percent", [("MNIST", 13.39), ("SVHN", 13.39), ("CIFAR10", 13.39),
                                          ("CIFAR+10", 33.33), ("CIFAR+50", 62.86), ("TinyImageNet", 57.35)])
def test_openness(name, percent):
    """Eq. 12; the paper prints the percentages truncated to two decimals."""
    for t in load_trials(name):
        n = len(t.known)
        assert t.openness == pytest.approx(1 - np.sqrt(2 * n / (2 * n + len(t.unknown))))
        assert np.floor(t.openness * 1e4) / 100 == pytest.approx(percent)
    assert openness(6, 10, 6) == pytest.approx(1 - np.sqrt(12 / 16))


# ---------------------------------------------------------------------------------------------- relabel, split


def test_relabel_by_rank_in_sorted_known():
    labels = np.array([9, 2, 5, 3, -1, 0, 9, 7])
    out = relabel(labels, known=(9, 2, 5))
    assert out.dtype == np.int64
    assert out.tolist() == [2, 0, 1, -1, -1, -1, 2, -1]
    big = np.random.default_rng(0).integers(0, 200, 100_000)
    known = [192, 112, 145, 10]
    ref = np.array([sorted(known).index(x) if x in known else -1 for x in big[:1000]])
    np.testing.assert_array_equal(relabel(big, known)[:1000], ref)
    assert relabel(np.array([], np.int64), known).size == 0


def test_train_val_split_per_class():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(5), [100, 50, 7, 10, 500]))
    tr, va = train_val_split(labels, 0.2, seed=3)
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == list(range(labels.size))
    assert np.bincount(labels[va]).tolist() == [20, 10, 1, 2, 100]  # round(0.2 * n) per class
    assert np.bincount(labels[tr]).tolist() == [80, 40, 6, 8, 400]
    _, va2 = train_val_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)  # deterministic
    _, va3 = train_val_split(labels, 0.2, seed=4)
    assert not np.array_equal(va, va3)
    tiny = np.repeat(np.arange(3), 500)
    tr, va = train_val_split(tiny, 0.1)
    assert np.bincount(tiny[tr]).tolist() == [450] * 3 and np.bincount(tiny[va]).tolist() == [50] * 3


def test_train_val_split_of_a_class_ignores_other_classes():
    labels = np.repeat([3, 7, 9], 40)
    _, va = train_val_split(labels, 0.25, seed=1)
    _, va_alone = train_val_split(labels[labels == 7], 0.25, seed=1)
    in_class = np.flatnonzero(labels == 7)
    np.testing.assert_array_equal(np.intersect1d(va, in_class) - in_class[0], va_alone)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(labels, 1.0)


# ---------------------------------------------------------------------------------------------- trial data


def test_build_trial_mnist(tmp_path, make):
    truth = make.mnist(tmp_path, per_class=(10, 4))
    trial = get_trial("MNIST", 0)  # known 0 1 2 4 5 9, unknown 3 6 7 8
    data = build_trial(trial, tmp_path, seed=0)
    assert data.input_shape == (32, 32, 1) and data.train.image_shape == (28, 28, 1)
    assert data.known_names == ("0", "1", "2", "4", "5", "9") and data.unknown_names == ("3", "6", "7", "8")
    assert len(data.train) == 6 * 8 and len(data.val) == 6 * 2
    assert data.train.class_counts().tolist() == [8] * 6 and data.val.class_counts().tolist() == [2] * 6
    assert data.test_known.class_counts().tolist() == [4] * 6
    assert (data.test_unknown.labels == -1).all() and len(data.test_unknown) == 16
    assert sorted(set(data.unknown_labels.tolist())) == [3, 6, 7, 8]
    # images stay attached to their labels: find each train image in the source and compare labels
    images, labels = truth["train"]
    flat = {img.tobytes(): lab for img, lab in zip(images, labels)}
    original = np.array([flat[img[..., 0].tobytes()] for img in data.train.images])
    np.testing.assert_array_equal(relabel(original, trial.known), data.train.labels)
    test = data.test()
    assert len(test) == 40 and test.labels.min() == -1 and test.class_names == data.known_names
    again = build_trial(trial, tmp_path, seed=0)
    np.testing.assert_array_equal(again.val.images, data.val.images)


def test_build_trial_cifar_plus(tmp_path, make):
    make.cifar(tmp_path, "cifar10", per_class=(5, 2), tar=True)
    make.cifar(tmp_path / "c100", "cifar100", per_class=(1, 2), marker=77)
    trial = get_trial("CIFAR+10", 0)
    data = build_trial(trial, {"cifar10": tmp_path, "cifar100": tmp_path / "c100"})
    assert data.known_names == ("airplane", "automobile", "ship", "truck")
    assert data.train.class_counts().tolist() == [4] * 4 and data.val.class_counts().tolist() == [1] * 4
    assert data.test_known.class_counts().tolist() == [2] * 4
    assert len(data.test_unknown) == 10 * 2 and (data.test_unknown.labels == -1).all()
    assert (data.test_unknown.images[:, 0, 0, 0] == 77).all()  # from the CIFAR-100 *test* split
    assert sorted(set(data.unknown_labels.tolist())) == sorted(trial.unknown)
    assert data.unknown_names == tuple(CIFAR100_CLASSES[u] for u in sorted(trial.unknown))
    assert data.input_shape == (32, 32, 3) and CIFAR10_CLASSES[8] == data.known_names[2]
    with pytest.raises(DataError, match="no data root given for 'cifar100'"):
        build_trial(trial, {"cifar10": tmp_path})


def test_build_trial_tinyimagenet_reads_only_known_train_classes(tmp_path, make):
    trial = get_trial("TinyImageNet", 0)
    make.tiny(tmp_path, n_classes=200, train_classes=trial.known, n_train=10, n_val=1)
    data = build_trial(trial, tmp_path)
    assert data.input_shape == (64, 64, 3) and data.train.image_shape == (64, 64, 3)
    assert data.train.class_counts().tolist() == [9] * 20 and data.val.class_counts().tolist() == [1] * 20
    assert len(data.test_known) == 20 and len(data.test_unknown) == 180
    first = min(trial.known)
    assert data.known_names[0] == f"thing {first}, stuff {first}"
    with pytest.raises(DataError, match="no train images for class"):
        build_trial(get_trial("TinyImageNet", 1), tmp_path)  # its known classes have no train folders here
