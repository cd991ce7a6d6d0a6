"""The training loop: methods, checkpoint rule, non-finite loss, and bit-identical resume after a kill."""

import numpy as np
import pytest
import torch

from classanchor import CACNet, SmallCNN, get_method
from classanchor.data.augment import AugmentSpec
from classanchor.data.loader import DeviceLoader
from classanchor.train import NonFiniteLossError, Stage, TrainConfig, train


def _data(n=96, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    images = rng.integers(0, 60, size=(n, 8, 8), dtype=np.uint8)
    for c in range(k):  # a bright stripe per class makes the task learnable
        images[labels == c, 3 * c: 3 * c + 2, :] = 255
    return images, labels


def _loaders(seed=0):
    images, labels = _data()
    spec = AugmentSpec(size=8, scale_min=0.9, mean=(0.3,), std=(0.35,))
    return (DeviceLoader(images[:72], labels[:72], 16, spec, train=True, seed=seed, channels_last=False),
            DeviceLoader(images[72:], labels[72:], 64, spec, train=False, channels_last=False))


def _net():
    torch.manual_seed(0)
    return CACNet(SmallCNN(3, width=8), 3)


CONFIG = TrainConfig(stages=(Stage(3, 0.1), Stage(2, 0.01)), weight_decay=5e-4, channels_last=False)


def _kill_at_validation(monkeypatch, n: int):
    """Make the n-th call of ``validate`` raise KeyboardInterrupt (the process dies in epoch n's validation,
    after epoch n-1's state was saved); returns the function that undoes the patch."""
    import classanchor.train as train_module

    original, calls = train_module.validate, {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "validate", killed)
    return lambda: monkeypatch.setattr(train_module, "validate", original)


def test_training_learns_and_keeps_the_best_anchor_loss_epoch():
    net = _net()
    result = train(net, get_method("cac"), *_loaders(), CONFIG, progress=False)
    assert len(result.history) == 5
    assert [h["stage"] for h in result.history] == [1, 1, 1, 2, 2]
    stage2 = result.history[3:]
    assert result.best_metric == min(h["val_anchor_loss"] for h in stage2)
    assert result.history[-1]["val_accuracy"] > 0.6
    assert torch.equal(net.head.anchors, 10 * torch.eye(3))  # training never moves the anchors


def test_cross_entropy_keeps_the_best_accuracy_epoch():
    result = train(_net(), get_method("ce"), *_loaders(), CONFIG, progress=False)
    assert result.best_metric == max(h["val_accuracy"] for h in result.history[3:])


def test_resume_after_kill_gives_the_same_result(tmp_path, monkeypatch):
    reference = _net()
    expected = train(reference, get_method("cac"), *_loaders(), CONFIG, progress=False)

    state = tmp_path / "state.pt"
    undo = _kill_at_validation(monkeypatch, 5)  # the process dies during epoch 5's validation
    with pytest.raises(KeyboardInterrupt):
        train(_net(), get_method("cac"), *_loaders(), CONFIG, state_path=state, progress=False)
    undo()
    assert torch.load(state, weights_only=False)["stage"] == 1  # epochs 1-4 done: inside stage 2

    resumed_net = _net()
    torch.manual_seed(123)  # a different global RNG state must not matter: the state file restores it
    resumed = train(resumed_net, get_method("cac"), *_loaders(), CONFIG, state_path=state, progress=False)
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "train_images_per_s")} for h in resumed.history]
    want = [{k: v for k, v in h.items() if k not in ("seconds", "train_images_per_s")} for h in expected.history]
    assert strip == want
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed_net.state_dict()[name]), name


def test_non_finite_loss_is_reported():
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        train(_net(), get_method("cac"), *_loaders(), TrainConfig(stages=(Stage(1, 1e30),), channels_last=False),
              progress=False)


def test_methods_by_name():
    assert get_method("cac").anchor_weight == 0.1 and get_method("cac").checkpoint_metric == "val_anchor_loss"
    assert get_method("anchor").tuplet_weight == 0.0 and get_method("tuplet").anchor_weight == 0.0
    assert get_method("ce").checkpoint_mode == "max"
    assert get_method("cac", anchor_magnitude=5, anchor_weight=0.8).anchor_magnitude == 5
    with pytest.raises(ValueError, match="unknown method"):
        get_method("openmax")
    assert sum(s.epochs for s in CONFIG.stages) == 5


def test_resume_under_another_one_cycle_length_is_refused(tmp_path, monkeypatch):
    state = tmp_path / "state.pt"
    saved = TrainConfig(stages=(Stage(3, 0.1, "onecycle"),), channels_last=False)
    undo = _kill_at_validation(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(_net(), get_method("cac"), *_loaders(), saved, state_path=state, progress=False)
    undo()
    longer = TrainConfig(stages=(Stage(8, 0.1, "onecycle"),), channels_last=False)  # 72 images / 16: 5 steps an epoch
    with pytest.raises(ValueError, match="holds a 15-step one-cycle schedule, this run's stage 1 has 40 steps"):
        train(_net(), get_method("cac"), *_loaders(), longer, state_path=state, progress=False)
    resumed = train(_net(), get_method("cac"), *_loaders(), saved, state_path=state, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]  # the same settings resume
