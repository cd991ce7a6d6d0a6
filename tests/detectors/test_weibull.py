"""The Weibull tail fit (libMR FitHigh, reimplemented) against scipy on the same tail and against values
recorded from libmr 0.1.9 itself."""

import numpy as np
import pytest
import torch
from scipy.stats import weibull_min

from classanchor.detectors import fit_weibull, fit_weibull_tail, weibull_cdf


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("translate_amount", [1.0, 10000.0, None])
def test_tail_fit_matches_scipy_on_the_same_tail(seed, translate_amount):
    rng = np.random.default_rng(seed)
    distances = rng.gamma(4.0, 1.5, 200)
    model = fit_weibull_tail(distances, 20, translate_amount)
    tail = np.sort(distances)[-20:]
    # libMR: min(tail) -> translate_amount
    shift = 0.0 if translate_amount is None else translate_amount - tail.min()
    assert model.shift == pytest.approx(shift) and model.tail_size == 20
    shape, _, scale = weibull_min.fit(tail + shift, floc=0)
    # scipy stops a little early (~1e-5 relative here): the likelihood check below is the sharp one
    assert model.shape == pytest.approx(shape, rel=1e-4) and model.scale == pytest.approx(scale, rel=1e-4)
    # ours is the maximum: its likelihood is at least scipy's (scipy's optimiser stops a little earlier)
    ours = weibull_min.logpdf(tail + shift, model.shape, scale=model.scale).sum()
    assert ours >= weibull_min.logpdf(tail + shift, shape, scale=scale).sum() - 1e-9
    x = np.linspace(0, 2 * distances.max(), 50)
    np.testing.assert_allclose(model.cdf(x), weibull_min.cdf(x + shift, model.shape, scale=model.scale), atol=1e-12)
    torch.testing.assert_close(model.cdf(torch.tensor(x)), torch.tensor(model.cdf(x)))


# Recorded with libmr 0.1.9 (PyPI sdist built in a throwaway venv; not a dependency of this project):
#   mr = libmr.MR(); mr.fit_high(LIBMR_DATA, 8); mr.get_params(); [mr.w_score(x) for x in LIBMR_X]
# and the same with libmr.MR(translate_amount=10000).
# get_params() = (scale, shape, sign, translate_amount, small_score).
LIBMR_DATA = [0.81, 1.37, 2.05, 2.42, 2.96, 3.18, 3.55, 3.9, 4.27, 4.61, 5.34, 6.02, 7.45]
LIBMR_X = [0.0, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0]
LIBMR_RECORDED = {
    1: ((2.9632522135863777, 2.1133257489129664, 1, 1, 3.18),
        [0.0, 0.06405660548474201, 0.1656107788128246, 0.3001967734746189, 0.5936660563302716,
         0.8192001577138168, 0.9389316495850648, 0.9844577211448797, 0.9995794084289551]),
    10000: ((10002.316609705145, 6993.02305874945, 1, 10000, 3.18),
            [0.021181160819684464, 0.16014250697215227, 0.21930678298917528, 0.2961523094484442,
             0.5067099669700771, 0.7587233983214995, 0.9427607491059355, 0.9968318742438452,
             0.9999999999228002]),
}


@pytest.mark.parametrize("translate_amount", sorted(LIBMR_RECORDED))
def test_tail_fit_matches_values_recorded_from_libmr(translate_amount):
    (scale, shape, _, _, small_score), w_scores = LIBMR_RECORDED[translate_amount]
    model = fit_weibull_tail(LIBMR_DATA, 8, translate_amount)
    assert model.shift == pytest.approx(translate_amount - small_score, abs=1e-12)
    # libMR's likelihood root-finding stops at tolerance 1e-6 (measured: 2e-8 relative on the shape with
    # translate 1, 3e-6 on the poorly determined shape ~7000 with translate 10000; CDFs within 1e-6)
    rel = 1e-6 if translate_amount == 1 else 1e-5
    assert model.shape == pytest.approx(shape, rel=rel) and model.scale == pytest.approx(scale, rel=1e-6)
    np.testing.assert_allclose(model.cdf(np.array(LIBMR_X)), w_scores, rtol=0, atol=2e-6)


def test_default_translate_amount_is_libmrs():
    small_score = LIBMR_RECORDED[1][0][4]
    default = fit_weibull_tail(LIBMR_DATA, 8)
    assert default == fit_weibull_tail(LIBMR_DATA, 8, 1.0)
    assert default.shift == pytest.approx(1.0 - small_score)


def test_fit_recovers_known_parameters():
    sample = weibull_min.rvs(2.5, scale=3.0, size=20000, random_state=np.random.default_rng(0))
    shape, scale = fit_weibull(sample)
    assert shape == pytest.approx(2.5, rel=0.03) and scale == pytest.approx(3.0, rel=0.03)


def test_cdf_broadcasts_per_class_parameters_and_is_zero_below_the_support():
    x = torch.tensor([[0.0, 1.0], [2.0, -5.0]])
    out = weibull_cdf(x, np.array([2.0, 3.0]), np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    expected = [[0.0, 1 - np.exp(-1.0)], [1 - np.exp(-4.0), 0.0]]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_fit_rejects_samples_without_a_maximum_likelihood_estimate():
    with pytest.raises(ValueError, match="not all equal"):
        fit_weibull([2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_weibull([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        fit_weibull([1.0])
    with pytest.raises(ValueError, match="not all equal"):
        fit_weibull_tail([1.0, 3.0, 3.0, 3.0], 3)  # the tail is constant
