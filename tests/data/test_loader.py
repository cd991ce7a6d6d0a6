"""DeviceLoader: coverage of every index, batch shapes, determinism and resumable state."""

import numpy as np
import pytest
import torch

from classanchor.data.augment import AugmentSpec
from classanchor.data.loader import DeviceLoader

SPEC = AugmentSpec(16, 0.7, 0.5, 10.0, (0.5,), (0.25,))


def _constant_images(n, size=16, channels_last_layout=True):
    """Image k is filled with the value k % 256, so any crop/flip of it (no rotation) keeps that value."""
    values = (np.arange(n) % 256).astype(np.uint8)
    shape = (n, size, size, 3) if channels_last_layout else (n, 3, size, size)
    return np.broadcast_to(values.reshape(n, 1, 1, 1), shape).copy()


def _collect(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_train_yields_every_index_once_with_its_own_image():
    n = 300
    spec = AugmentSpec(16, 0.7, 0.5, 0.0, (0.0,), (1.0,))
    loader = DeviceLoader(_constant_images(n), np.arange(n), 64, spec, train=True, device="cpu", seed=0)
    assert len(loader) == 5 and loader.num_samples == n
    for _ in range(2):
        batches = _collect(loader)
        assert len(batches) == len(loader)
        ys = torch.cat([y for _, y in batches])
        assert ys.dtype == torch.int64
        assert torch.equal(ys.sort().values, torch.arange(n))
        assert not torch.equal(ys, torch.arange(n))  # shuffled
        for x, y in batches:  # the image travelled with its label; constant images stay constant
            assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32
            assert x.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(x, (y % 256).float().view(-1, 1, 1, 1).expand_as(x) / 255.0)


def test_epochs_differ_and_drop_last():
    loader = DeviceLoader(_constant_images(10), np.arange(10), 4, SPEC, train=True, device="cpu", seed=1)
    assert len(loader) == 3
    e0 = torch.cat([y for _, y in loader])
    e1 = torch.cat([y for _, y in loader])
    assert not torch.equal(e0, e1)
    dropped = DeviceLoader(
        _constant_images(10), np.arange(10), 4, SPEC, train=True, device="cpu", seed=1, drop_last=True
    )
    assert len(dropped) == 2 and [x.shape[0] for x, _ in dropped] == [4, 4]


def test_eval_is_in_order_and_resizes_mnist():
    images = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    spec = AugmentSpec(32, 0.7, 0.0, 0.0, (0.13,), (0.31,))
    loader = DeviceLoader(
        images, np.arange(10) % 3, 4, spec, train=False, device="cpu", seed=0, channels_last=False
    )
    a, b = _collect(loader), _collect(loader)
    assert [tuple(x.shape) for x, _ in a] == [(4, 1, 32, 32), (4, 1, 32, 32), (2, 1, 32, 32)]
    assert torch.equal(torch.cat([y for _, y in a]), torch.arange(10) % 3)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))  # eval is deterministic


def test_same_seed_same_batches_different_seed_different():
    images = np.random.default_rng(1).integers(0, 256, size=(20, 3, 16, 16), dtype=np.uint8)

    def run(seed):
        return _collect(DeviceLoader(images, np.arange(20), 8, SPEC, train=True, device="cpu", seed=seed))

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_state_dict_restores_the_next_epoch_exactly():
    images = np.random.default_rng(2).integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)

    def make():
        return DeviceLoader(images, np.arange(20), 8, SPEC, train=True, device="cpu", seed=3)

    run = make()
    _collect(run)  # epoch 0
    state = run.state_dict()
    expected = _collect(run)  # epoch 1
    next(iter(run))  # a partly consumed epoch 2 must not change what a restored loader does

    resumed = make()
    resumed.load_state_dict(state)
    got = _collect(resumed)
    assert len(got) == len(expected)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(got, expected))
    assert resumed.state_dict() == {"epoch": 2, "seed": 3}


def test_input_validation():
    with pytest.raises(TypeError):
        DeviceLoader(np.zeros((4, 8, 8), np.float32), np.arange(4), 2, SPEC, train=True)
    with pytest.raises(ValueError):
        DeviceLoader(np.zeros((4, 8, 8), np.uint8), np.arange(3), 2, SPEC, train=True)
    with pytest.raises(TypeError):
        DeviceLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4), 2, SPEC, train=True)
