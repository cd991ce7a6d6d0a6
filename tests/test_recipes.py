"""Recipes: the paper's values (Table 4 + reference-protocol.md), scaled() rounding, and the fast recipes."""

import math

import pytest

from classanchor.data.splits import BENCHMARKS
from classanchor.recipes import RECIPES, Recipe, get_recipe, recipe_names
from classanchor.train import Stage, TrainConfig

# dataset: (stage-1 epochs, stage-2 epochs, weight decay, input px, scale_min, flip p, rotation deg, dropout,
#           flip_anchor_fit) from paper Table 4 and the reference code's table in reference-protocol.md.
PAPER = {
    "MNIST": (35, 35, 5e-6, 32, 0.7, 0.0, 0.0, 0.2, False),
    "SVHN": (50, 25, 5e-6, 32, 0.7, 0.0, 0.0, 0.2, False),
    "CIFAR10": (150, 50, 5e-6, 32, 0.8, 0.5, 10.0, 0.2, True),
    "CIFAR+10": (150, 50, 5e-4, 32, 0.8, 0.5, 0.0, 0.2, True),
    "CIFAR+50": (150, 50, 5e-4, 32, 0.8, 0.5, 0.0, 0.2, True),
    "TinyImageNet": (500, 300, 1e-3, 64, 0.7, 0.5, 20.0, 0.3, True),
}


def test_every_benchmark_has_a_paper_and_a_fast_recipe():
    assert set(PAPER) == set(BENCHMARKS)
    for dataset in PAPER:
        assert recipe_names(dataset) == ["fast", "paper"]
    assert get_recipe("MNIST") is get_recipe("MNIST", "paper")  # the paper's is the default


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_paper_recipe_equals_table_4_and_the_reference_code(dataset):
    s1, s2, wd, size, scale_min, flip_p, rotation, dropout, flip_fit = PAPER[dataset]
    r = get_recipe(dataset, "paper")
    assert r.stages == (Stage(s1, 0.01), Stage(s2, 0.001))
    assert all(s.schedule == "constant" for s in r.stages) and r.total_epochs == s1 + s2
    assert (r.batch_size, r.momentum, r.nesterov, r.label_smoothing) == (128, 0.9, False, 0.0)
    assert (r.weight_decay, r.image_size, r.scale_min, r.flip_p, r.rotation_deg) == (wd, size, scale_min, flip_p,
                                                                                     rotation)
    assert (r.dropout, r.flip_anchor_fit) == (dropout, flip_fit)
    config = r.train_config()
    assert isinstance(config, TrainConfig) and config.stages == r.stages and config.restart_from_best
    assert (config.weight_decay, config.momentum, config.nesterov) == (wd, 0.9, False)


def test_scaled_rounds_every_stage_up_and_keeps_at_least_one_epoch():
    r = get_recipe("MNIST")
    assert [s.epochs for s in r.scaled(0.03).stages] == [2, 2]  # ceil(1.05) = 2
    assert [s.epochs for s in r.scaled(0.02).stages] == [1, 1]  # ceil(0.7) = 1
    assert [s.epochs for s in r.scaled(0.001).stages] == [1, 1]  # never 0
    assert [s.epochs for s in get_recipe("CIFAR10").scaled(0.1).stages] == [15, 5]
    assert [s.epochs for s in get_recipe("TinyImageNet").scaled(0.011).stages] == [6, 4]  # ceil(5.5), ceil(3.3)
    assert [s.epochs for s in get_recipe("TinyImageNet").scaled(0.07).stages] == [35, 21]  # not float-error 36, 22
    assert r.scaled(1) is r
    scaled = get_recipe("CIFAR10").scaled(0.5)
    assert [s.lr for s in scaled.stages] == [0.01, 0.001] and scaled.weight_decay == 5e-6
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="epochs_scale"):
            r.scaled(bad)


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_fast_recipe_is_valid_and_shorter_with_the_papers_data_settings(dataset):
    fast, paper = get_recipe(dataset, "fast"), get_recipe(dataset, "paper")
    assert isinstance(fast, Recipe) and fast.name == "fast" and fast.dataset == dataset
    assert len(fast.stages) == 1 and fast.stages[0].schedule == "onecycle"
    assert 0 < fast.stages[0].warmup_fraction < 0.5 and fast.stages[0].lr > 0
    assert fast.total_epochs <= paper.total_epochs / 4
    # The data and the evaluation protocol stay the paper's; the network and the optimisation change.
    for field in ("batch_size", "scale_min", "flip_p", "rotation_deg", "flip_anchor_fit"):
        assert getattr(fast, field) == getattr(paper, field), field
    assert paper.backbone == "classifier32" and fast.backbone == "resnet9"
    # test-time mirror averaging where the images are trained with flips (not for digits)
    assert fast.test_time_flip == (paper.flip_p > 0) and not paper.test_time_flip
    # the paper's input side, except MNIST at its native 28 px (no resize) and TinyImageNet's 64 px source
    # images resized to 48 px (measured on all five trials, docs/results.md)
    assert fast.image_size == {"MNIST": 28, "TinyImageNet": 48}.get(dataset, paper.image_size)
    # TinyImageNet is also tested at its 64 px source side (logits averaged with 48 px); the paper tests at one
    assert fast.extra_test_sizes == ((64,) if dataset == "TinyImageNet" else ()) and paper.extra_test_sizes == ()
    assert fast.weight_decay >= paper.weight_decay and fast.nesterov
    config = fast.train_config(compile=False)
    assert config.nesterov and config.stages == fast.stages
    assert math.isclose(fast.scaled(0.5).stages[0].epochs, math.ceil(fast.total_epochs / 2))


def test_unknown_recipe_and_dataset_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"choose one of \['fast', 'paper'\]"):
        get_recipe("MNIST", "slow")
    with pytest.raises(ValueError, match="no recipes for dataset"):
        get_recipe("ImageNet")
    assert all(key == (r.dataset, r.name) for key, r in RECIPES.items())


# ------------------------------------------------------------- the training options the fast recipe relies on
def _tiny_run(config, **kwargs):
    import numpy as np
    import torch

    from classanchor import CACNet, SmallCNN, get_method
    from classanchor.data.augment import AugmentSpec
    from classanchor.data.loader import DeviceLoader
    from classanchor.train import train

    rng = np.random.default_rng(0)
    labels = np.arange(64) % 2
    images = rng.integers(0, 60, size=(64, 8, 8), dtype=np.uint8)
    images[labels == 1, :3] = 255
    spec = AugmentSpec(size=8, scale_min=0.9, mean=(0.3,), std=(0.35,))
    loaders = (DeviceLoader(images[:48], labels[:48], 16, spec, train=True, seed=0, channels_last=False),
               DeviceLoader(images[48:], labels[48:], 64, spec, train=False, channels_last=False))
    torch.manual_seed(0)
    net = CACNet(SmallCNN(2, width=4), 2)
    return net, train(net, get_method("cac"), *loaders, config, progress=False, **kwargs)


def test_fast_schedule_anneals_and_on_epoch_end_sees_every_epoch():
    import torch

    seen = []
    config = TrainConfig(stages=(Stage(3, 0.05, "onecycle", 0.2),), weight_decay=5e-4, nesterov=True)
    net, result = _tiny_run(config, on_epoch_end=lambda n, record: seen.append(
        (record, {k: v.clone() for k, v in n.state_dict().items()})))
    assert [r for r, _ in seen] == result.history and len(seen) == 3
    assert result.history[-1]["lr"] < 0.05 / 1000  # cosine annealed to ~0 (OneCycleLR final_div_factor)
    assert not torch.equal(*(next(v for k, v in s[1].items() if k.endswith("weight")) for s in (seen[0], seen[2])))
    best = seen[result.best_epoch - 1][1]  # train() returns the kept epoch's weights, as seen by the hook
    assert all(torch.equal(best[k], v) for k, v in net.state_dict().items())


def test_channels_last_default_per_device_and_memory_format_helper():
    import torch

    from classanchor.train import CHANNELS_LAST_DEVICES, to_memory_format, use_channels_last

    assert use_channels_last(True, "cpu") and not use_channels_last(False, "cuda")
    assert use_channels_last(None, "cuda") == ("cuda" in CHANNELS_LAST_DEVICES)
    assert use_channels_last(None, "cpu") == ("cpu" in CHANNELS_LAST_DEVICES)
    x = torch.randn(2, 3, 4, 5)
    nhwc = to_memory_format(x, True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, x)
    assert to_memory_format(nhwc, True).data_ptr() == nhwc.data_ptr()  # no copy when already right
    back = to_memory_format(nhwc, False)
    assert back.is_contiguous() and torch.equal(back, x)
    assert to_memory_format(x, False).data_ptr() == x.data_ptr()
    flat = torch.randn(2, 3)
    assert to_memory_format(flat, True) is flat


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    config = TrainConfig(stages=(Stage(2, 0.05, "onecycle"),), channels_last=False)
    _, eager = _tiny_run(config)
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile is not usable here.*no C\\+\\+ compiler"):
        _, fallback = _tiny_run(TrainConfig(stages=config.stages, channels_last=False, compile=True))
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "train_images_per_s")} for h in eager.history]
    assert strip == [{k: v for k, v in h.items() if k not in ("seconds", "train_images_per_s")}
                     for h in fallback.history]


def test_compile_trial_pass_leaves_weights_statistics_and_rng_unchanged(monkeypatch):
    import torch

    from classanchor import CACNet, SmallCNN
    from classanchor.train import prepare_network

    monkeypatch.setattr(torch, "compile", lambda net, **kw: net)  # "compiled" = the module itself
    torch.manual_seed(0)
    net = CACNet(SmallCNN(2, width=4), 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sample = torch.randn(8, 1, 8, 8)
    rng = torch.get_rng_state()
    forward = prepare_network(net, TrainConfig(stages=(Stage(1, 0.1),), compile=True, channels_last=False), "cpu",
                              sample)
    assert forward is net
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # incl. BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in net.parameters())
