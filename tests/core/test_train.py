"""The training loop: methods, checkpoint rule, non-finite loss, and bit-identical resume after a kill."""

from dataclasses import replace

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


def test_weight_averaging_keeps_the_moving_average_of_every_step(monkeypatch):
    """ema_decay: the validated, kept and returned network is w_ema <- d w_ema + (1 - d) w over every step's
    weights and BatchNorm statistics, checked against an explicit loop over snapshots taken after each step."""
    import classanchor.train as train_module

    decay, epochs = 0.8, 3
    config = TrainConfig(stages=(Stage(epochs, 0.1, "onecycle"),), weight_decay=5e-4, channels_last=False,
                         ema_decay=decay)
    snapshots = []  # the raw network's floating-point weights and buffers after every optimizer step
    original_step = train_module.train_step

    def recording_step(net, *args, **kwargs):
        batch = original_step(net, *args, **kwargs)
        snapshots.append({k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()})
        return batch

    monkeypatch.setattr(train_module, "train_step", recording_step)
    seen = []  # per epoch: (the network on_epoch_end got, a copy of its weights)
    net = _net()
    result = train(net, get_method("cac"), *_loaders(), config, progress=False,
                   on_epoch_end=lambda n, record: seen.append((n, {k: v.clone() for k, v in n.state_dict().items()})))

    steps = len(snapshots) // epochs
    assert steps >= 4 and len(snapshots) == steps * epochs
    assert any("running_mean" in name for name in snapshots[0])  # BatchNorm statistics are averaged too
    average, per_epoch = None, []
    for i, snapshot in enumerate(snapshots):  # W_0 = w_0; W_t = d W_(t-1) + (1 - d) w_t
        average = dict(snapshot) if average is None else {
            k: decay * average[k] + (1 - decay) * snapshot[k] for k in snapshot}
        if (i + 1) % steps == 0:
            per_epoch.append(average)
    for (network, weights), want in zip(seen, per_epoch, strict=True):
        assert network is not net  # validation and on_epoch_end see the averaged copy
        for name, tensor in want.items():
            torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)
    kept, raw = per_epoch[result.best_epoch - 1], snapshots[result.best_epoch * steps - 1]
    for name, tensor in kept.items():  # the returned network is the kept epoch's average ...
        torch.testing.assert_close(net.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(kept[k], raw[k]) for k in kept)  # ... not that epoch's raw weights


def test_weight_averaging_resumes_bit_identically_and_rejects_bad_decays(tmp_path, monkeypatch):
    config = TrainConfig(stages=(Stage(2, 0.1), Stage(2, 0.01)), weight_decay=5e-4, channels_last=False,
                         ema_decay=0.9)
    reference = _net()
    expected = train(reference, get_method("cac"), *_loaders(), config, progress=False)
    state = tmp_path / "state.pt"
    undo = _kill_at_validation(monkeypatch, 2)  # dies in epoch 2's validation: epoch 1 saved, mid-stage 1
    with pytest.raises(KeyboardInterrupt):
        train(_net(), get_method("cac"), *_loaders(), config, state_path=state, progress=False)
    undo()
    resumed_net = _net()
    resumed = train(resumed_net, get_method("cac"), *_loaders(), config, state_path=state, progress=False)
    assert [h["val_anchor_loss"] for h in resumed.history] == [h["val_anchor_loss"] for h in expected.history]
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed_net.state_dict()[name]), name
    for other in (0.0, 0.5):  # the same state resumed with other or no averaging is refused
        with pytest.raises(ValueError, match=f"written with ema_decay=0.9, this run has ema_decay={other:g}"):
            train(_net(), get_method("cac"), *_loaders(), replace(config, ema_decay=other), state_path=state,
                  progress=False)
    plain = train(_net(), get_method("cac"), *_loaders(), replace(config, ema_decay=0.0), progress=False)
    assert plain.history[0]["val_anchor_loss"] != expected.history[0]["val_anchor_loss"]  # averaging is on
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_decay must be in"):
            TrainConfig(stages=(Stage(1, 0.1),), ema_decay=bad)
