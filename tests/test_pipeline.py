"""fit_open_set: the anchor-fit data with mirrored copies, and with test-time mirror averaging instead."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from classanchor.data.imageset import ImageSet
from classanchor.methods import get_method
from classanchor.pipeline import fit_open_set
from classanchor.recipes import get_recipe
from classanchor.train import Stage

NAMES = ("a", "b", "c")


def _images(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)
    images[..., 0] = np.minimum(255, images[..., 0] // 2 + 60 * labels[:, None, None]).astype(np.uint8)
    return ImageSet(images, labels.astype(np.int64), NAMES)


def _fit(test_time_flip: bool):
    recipe = replace(get_recipe("CIFAR10", "fast"), image_size=16, stages=(Stage(1, 0.01),), batch_size=8,
                     backbone="small_cnn", backbone_kwargs=(), test_time_flip=test_time_flip)
    assert recipe.flip_anchor_fit and recipe.flip_p > 0
    return fit_open_set(_images(24, 0), _images(9, 1), recipe, get_method("cac"), device="cpu", seed=0,
                        precision="float32", progress=False)


def _net_logits(fitted, images: np.ndarray, mirror: bool) -> torch.Tensor:
    """The network on the preprocessed images, one image at a time (mirrored left-right when asked)."""
    prep, net = fitted.model.preprocessing, fitted.model.net.eval()
    rows = []
    with torch.no_grad():
        for image in images:
            x = prep(image[None])
            rows.append(net(x.flip(-1) if mirror else x)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("test_time_flip", [False, True])
def test_anchor_fit_data_with_mirror_copies_or_mirror_averages(test_time_flip):
    fitted = _fit(test_time_flip)
    train = _images(24, 0)
    own, mirrored = _net_logits(fitted, train.images, False), _net_logits(fitted, train.images, True)
    assert fitted.model.preprocessing.mirror_average is test_time_flip
    if test_time_flip:  # one row per image: the mean of the image's and its mirror image's logits
        expected, labels = (own + mirrored) / 2, torch.as_tensor(train.labels)
    else:  # the reference code's anchor fit: the split, then its mirror images
        expected, labels = torch.cat([own, mirrored]), torch.as_tensor(np.concatenate([train.labels] * 2))
    torch.testing.assert_close(fitted.train_logits, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(fitted.train_labels, labels)
    # Algorithm 1 lines 1-3 on exactly these rows: class means of the rows whose largest logit is their label
    # (all of the class's rows where none is: the library's empty_class="all_samples" fallback)
    correct = expected.argmax(1) == labels
    for k in range(3):
        rows = (labels == k) & correct if ((labels == k) & correct).any() else labels == k
        torch.testing.assert_close(fitted.model.net.head.anchors[k], expected[rows].mean(0), rtol=1e-4, atol=1e-5)


def test_extra_test_sizes_give_the_mean_logits_over_the_sides_and_need_a_network_that_takes_them():
    recipe = replace(get_recipe("CIFAR10", "fast"), image_size=16, stages=(Stage(1, 0.01),), batch_size=8,
                     backbone_kwargs=(("width", 8),), test_time_flip=True, extra_test_sizes=(20,))
    assert recipe.backbone == "resnet9"  # global max pooling: any input side
    fitted = fit_open_set(_images(24, 0), _images(9, 1), recipe, get_method("cac"), device="cpu", seed=0,
                          precision="float32", progress=False)
    prep, net = fitted.model.preprocessing, fitted.model.net.eval()
    assert prep.sizes == (16, 20) and prep.mirror_average
    train = _images(24, 0)
    rows = []
    with torch.no_grad():  # per image: (f(x) + f(mirror x)) / 2 at each side, then the mean over the sides
        for image in train.images:
            sides = [view(image[None]) for view in prep.views()]
            assert [x.shape[-1] for x in sides] == [16, 20]
            rows.append(torch.stack([(net(x)[0] + net(x.flip(-1))[0]) / 2 for x in sides]).mean(0))
    expected = torch.stack(rows)
    torch.testing.assert_close(fitted.train_logits, expected, rtol=1e-4, atol=1e-5)
    single = torch.stack([(net(prep.views()[0](im[None]))[0] + net(prep.views()[0](im[None]).flip(-1))[0]) / 2
                          for im in train.images]).detach()
    assert (fitted.train_logits - single).abs().max() > 1e-3  # the second side changes the logits
    labels = torch.as_tensor(train.labels)
    correct = expected.argmax(1) == labels
    for k in range(3):  # Algorithm 1 on the averaged rows
        rows_k = (labels == k) & correct if ((labels == k) & correct).any() else labels == k
        torch.testing.assert_close(net.head.anchors[k], expected[rows_k].mean(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="does not take 20 x 20 px inputs"):  # refused before any training
        fit_open_set(_images(24, 0), _images(9, 1), replace(recipe, backbone="small_cnn", backbone_kwargs=()),
                     get_method("cac"), device="cpu", seed=0, precision="float32", progress=False)
