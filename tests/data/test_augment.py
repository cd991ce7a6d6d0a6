"""Batched augmentation: distribution against the per-sample definition, and exact geometry on small images."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from classanchor.data.augment import (
    AugmentParams,
    AugmentSpec,
    apply_params,
    augment_batch,
    compute_mean_std,
    eval_transform,
    sample_crop_params,
    sample_params,
    to_nchw,
)
from tests.helpers.scripts import load_script

N_DRAWS = 20_000
# Fixed seeds make every test deterministic. With p > 1e-3 a correct implementation fails a two-sample test for
# a given seed choice with probability 1e-3, while a wrong one is far below that at 20k draws: keeping only 3 of
# the 10 tries (32 px, scale_min 0.7) gives KS p ~ 1e-14 on the area and chi-square p ~ 1e-85 on (h, w).
P_MIN = 1e-3
# torchvision's per-sample crop sampler, as the conventional pipeline of benchmarks/speed.py draws it
reference_sample_params = load_script("speed").reference_sample_params


def _reference_boxes(n, size, scale, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    return np.array([reference_sample_params(size, size, scale, ratio, g) for _ in range(n)])


def _batched_boxes(n, size, scale, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    return np.stack([t.numpy() for t in sample_crop_params(n, size, size, scale, ratio, g)], axis=1)


@pytest.fixture(
    scope="module", params=[(32, 0.7), (32, 0.8), (64, 0.7)], ids=["32px-0.7", "32px-0.8", "64px-0.7"]
)
def boxes(request):
    size, scale_min = request.param
    ratio = (3 / 4, 4 / 3)
    ref = _reference_boxes(N_DRAWS, size, (scale_min, 1.0), ratio, seed=1)
    new = _batched_boxes(N_DRAWS, size, (scale_min, 1.0), ratio, seed=2)
    return size, scale_min, ratio, ref, new


def test_crop_boxes_within_bounds(boxes):
    size, scale_min, (lo, hi), _, new = boxes
    top, left, h, w = new.T
    assert (h >= 1).all() and (w >= 1).all() and (h <= size).all() and (w <= size).all()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= size).all() and (left + w <= size).all()
    # w = round(sqrt(A f r)), h = round(sqrt(A f / r)) with f in [scale_min, 1], r in [lo, hi]: each side is off
    # its real value by at most 0.5 px, so the box must be consistent with some (f, r) within the bounds.
    assert ((w + 0.5) * (h + 0.5) >= scale_min * size * size).all()
    assert ((w - 0.5) * (h - 0.5) <= size * size).all()
    assert ((w + 0.5) / (h - 0.5) >= lo).all() and ((w - 0.5) / (h + 0.5) <= hi).all()


def test_crop_boxes_match_reference_distribution(boxes):
    size, _, _, ref, new = boxes
    area_ref, area_new = ref[:, 2] * ref[:, 3] / size**2, new[:, 2] * new[:, 3] / size**2
    logr_ref, logr_new = np.log(ref[:, 3] / ref[:, 2]), np.log(new[:, 3] / new[:, 2])
    # KS on discrete data is conservative (p-values too large at worst), so a failure is a real difference.
    assert stats.ks_2samp(area_ref, area_new).pvalue > P_MIN
    assert stats.ks_2samp(logr_ref, logr_new).pvalue > P_MIN
    # Means within 4 standard errors of the difference.
    for a, b in ((area_ref, area_new), (logr_ref, logr_new)):
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se
    # Exact test on the joint (h, w) distribution: chi-square on a 2 x k table of box sizes (rare sizes merged).
    keys = ref[:, 2] * 1000 + ref[:, 3], new[:, 2] * 1000 + new[:, 3]
    values = np.union1d(*keys)
    table = np.stack([np.array([(k == v).sum() for v in values]) for k in keys])
    rare = table.sum(0) < 20
    if rare.any():
        table = np.concatenate([table[:, ~rare], table[:, rare].sum(1, keepdims=True)], axis=1)
    assert stats.chi2_contingency(table).pvalue > P_MIN
    # Offsets: (top + 0.5) / (size - h + 1) is uniform on (0, 1) given h under both.
    for col, side in ((0, 2), (1, 3)):
        u_ref = (ref[:, col] + 0.5) / (size - ref[:, side] + 1)
        u_new = (new[:, col] + 0.5) / (size - new[:, side] + 1)
        assert stats.ks_2samp(u_ref, u_new).pvalue > P_MIN


def test_crop_fallback_matches_reference_exactly():
    # A 4 x 40 image: every try is too tall, so both fall back to the centred crop of ratio 4/3.
    g = torch.Generator().manual_seed(0)
    top, left, h, w = sample_crop_params(50, 4, 40, (0.9, 1.0), (3 / 4, 4 / 3), g)
    expected = reference_sample_params(4, 40, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert expected == (0, 17, 4, 5)
    for t, e in zip((top, left, h, w), expected):
        assert (t == e).all()


def test_flip_rate_and_angles():
    spec = AugmentSpec(32, 0.8, 0.3, 20.0)
    p = sample_params(N_DRAWS, spec, torch.Generator().manual_seed(3))
    flips = int(p.flip.sum())
    sigma = math.sqrt(N_DRAWS * 0.3 * 0.7)
    assert abs(flips - 0.3 * N_DRAWS) < 4 * sigma
    angle = p.angle.numpy()
    assert angle.min() >= -20.0 and angle.max() <= 20.0
    assert stats.kstest(angle, stats.uniform(loc=-20, scale=40).cdf).pvalue > P_MIN
    none = sample_params(1000, AugmentSpec(32, 0.8, 0.0, 0.0), torch.Generator().manual_seed(3))
    assert not none.flip.any() and (none.angle == 0).all()


# ----------------------------------------------------------------------------------------------- geometry
MEAN, STD = (0.2, 0.5, 0.7), (0.3, 0.25, 0.2)


def _brute_normalize(x_uint8):
    """Explicit per-channel (x / 255 - mean) / std, float64."""
    x = x_uint8.double() / 255.0
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = (x[:, c] - MEAN[c]) / STD[c]
    return out


def _params(b, top, left, h, w, flip=False, angle=0.0):
    def full(v, dtype):
        return torch.full((b,), v, dtype=dtype)

    return AugmentParams(
        full(top, torch.long),
        full(left, torch.long),
        full(h, torch.long),
        full(w, torch.long),
        full(flip, torch.bool),
        full(angle, torch.float32),
    )


@pytest.fixture
def images():
    return torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("rotation_deg", [0.0, 10.0])
def test_identity_params_return_normalised_input(images, rotation_deg):
    spec = AugmentSpec(8, 0.8, 0.5, rotation_deg, MEAN, STD)
    out = apply_params(images, _params(2, 0, 0, 8, 8), spec)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out.double(), _brute_normalize(images), atol=1e-5, rtol=0)


def test_flip_is_exact_mirror(images):
    spec = AugmentSpec(8, 0.8, 0.5, 0.0, MEAN, STD)
    out = apply_params(images, _params(2, 0, 0, 8, 8, flip=True), spec)
    torch.testing.assert_close(out.double(), _brute_normalize(images).flip(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle, k", [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_right_angle_rotation_equals_rot90(images, angle, k):
    # Convention (as torchvision): positive angles rotate the content counter-clockwise, = torch.rot90(k=1).
    spec = AugmentSpec(8, 0.8, 0.5, 180.0, MEAN, STD)
    out = apply_params(images, _params(2, 0, 0, 8, 8, angle=angle), spec)
    expected = torch.rot90(_brute_normalize(images), k, dims=(-2, -1))
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=0)


def test_rotation_fills_corners_with_black(images):
    spec = AugmentSpec(8, 0.8, 0.5, 45.0, MEAN, STD)
    out = apply_params(images, _params(2, 0, 0, 8, 8, angle=45.0), spec)
    black = -torch.tensor(MEAN) / torch.tensor(STD)
    for corner in (out[:, :, 0, 0], out[:, :, -1, -1], out[:, :, 0, -1], out[:, :, -1, 0]):
        torch.testing.assert_close(corner, black.expand(2, 3), atol=1e-5, rtol=0)


def test_crop_flip_rotation_compose_like_the_sequential_pipeline():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    spec = AugmentSpec(16, 0.2, 0.5, 90.0, MEAN, STD)
    out = apply_params(x, _params(2, 4, 2, 8, 8, flip=True, angle=90.0), spec)
    # Sequential brute force: crop rows 4..11, cols 2..9 -> bilinear 2x resize -> mirror -> rot90.
    crop = _brute_normalize(x)[:, :, 4:12, 2:10]
    resized = F.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False)
    expected = torch.rot90(resized.flip(-1), 1, dims=(-2, -1))
    # The outermost output pixels sample 1/4 px beyond the crop: the composed map reads the neighbouring source
    # pixel there, the sequential one clamps to the crop edge (documented); compare the interior.
    torch.testing.assert_close(out.double()[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4, rtol=0)


def test_resize_is_implicit_in_the_affine_map():
    # MNIST: 28 px input, S = 32; the whole-image crop equals the eval resize (bilinear, align_corners=False).
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    spec = AugmentSpec(32, 0.7, 0.0, 0.0, (0.13,), (0.31,))
    out = apply_params(x, _params(3, 0, 0, 32, 32), spec)
    ev = eval_transform(x, spec)
    assert out.shape == ev.shape == (3, 1, 32, 32)
    half_level = 0.5 / 255 / 0.31  # the eval resize rounds to uint8 (Preprocessing's RESIZE_RULE); augmentation does not
    torch.testing.assert_close(out, ev, atol=half_level + 1e-5, rtol=0)
    ref = F.interpolate(x[:, None].double(), size=(32, 32), mode="bilinear", align_corners=False).round() / 255
    torch.testing.assert_close(ev.double(), (ref - 0.13) / 0.31, atol=1e-5, rtol=0)


def test_eval_transform_shapes_and_identity():
    mnist = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    assert eval_transform(mnist, AugmentSpec(32)).shape == (5, 1, 32, 32)
    x = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)  # NHWC
    out = eval_transform(x, AugmentSpec(8, mean=MEAN, std=STD))
    torch.testing.assert_close(out.double(), _brute_normalize(x.permute(0, 3, 1, 2)), atol=1e-5, rtol=0)
    as_float = x.permute(0, 3, 1, 2).float()
    before = as_float.clone()
    eval_transform(as_float, AugmentSpec(8, mean=MEAN, std=STD))
    assert torch.equal(as_float, before)  # the caller's tensor is not normalised in place


# -------------------------------------------------------------------------------------- batches and seeds
def test_same_seed_same_batch_different_seed_different_batch():
    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    spec = AugmentSpec(32, 0.8, 0.5, 10.0, MEAN, STD)
    a = augment_batch(x, spec, torch.Generator().manual_seed(5))
    b = augment_batch(x, spec, torch.Generator().manual_seed(5))
    c = augment_batch(x, spec, torch.Generator().manual_seed(6))
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_nhwc_and_nchw_inputs_agree():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    spec = AugmentSpec(16, 0.7, 0.5, 15.0, MEAN, STD)
    a = augment_batch(x, spec, torch.Generator().manual_seed(0))
    b = augment_batch(x.permute(0, 2, 3, 1).contiguous(), spec, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert to_nchw(np.zeros((2, 5, 5), np.uint8)).shape == (2, 1, 5, 5)


def test_spec_validation():
    for bad in (
        {"size": 0},
        {"size": 32, "scale_min": 0.0},
        {"size": 32, "flip_p": 1.5},
        {"size": 32, "rotation_deg": -1},
        {"size": 32, "mean": (0.5, 0.5), "std": (0.2,)},
        {"size": 32, "std": (0.0,)},
    ):
        with pytest.raises(ValueError):
            AugmentSpec(**bad)
    with pytest.raises(ValueError, match="channels"):
        apply_params(
            torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
            _params(1, 0, 0, 8, 8),
            AugmentSpec(8, mean=(0.1, 0.2), std=(1.0, 1.0)),
        )


def test_compute_mean_std_matches_float64_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 9, 7, 3), dtype=np.uint8)
    mean, std = compute_mean_std(x)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-12)
    mean_c, std_c = compute_mean_std(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(mean_c, mean, rtol=1e-12)
    np.testing.assert_allclose(std_c, std, rtol=1e-12)
    gray_mean, gray_std = compute_mean_std(x[..., 0])
    assert len(gray_mean) == len(gray_std) == 1
    np.testing.assert_allclose((gray_mean[0], gray_std[0]), (mean[0], std[0]), rtol=1e-12)
    with pytest.raises(TypeError):
        compute_mean_std(x.astype(np.float32))
