"""The Weibull tail fit (libMR FitHigh, reimplemented) against scipy on the same tail."""

import numpy as np
import pytest
import torch
from scipy.stats import weibull_min

from classanchor.detectors import fit_weibull, fit_weibull_tail, weibull_cdf


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("translate_amount", [10000.0, None])
def test_tail_fit_matches_scipy_on_the_same_tail(seed, translate_amount):
    rng = np.random.default_rng(seed)
    distances = rng.gamma(4.0, 1.5, 200)
    model = fit_weibull_tail(distances, 20, translate_amount)
    tail = np.sort(distances)[-20:]
    shift = 0.0 if translate_amount is None else translate_amount - tail.min()  # libMR: min(tail) -> 10000
    assert model.shift == pytest.approx(shift) and model.tail_size == 20
    shape, _, scale = weibull_min.fit(tail + shift, floc=0)
    assert model.shape == pytest.approx(shape, rel=1e-4) and model.scale == pytest.approx(scale, rel=1e-5)
    # ours is the maximum: its likelihood is at least scipy's (scipy's optimiser stops a little earlier)
    ours = weibull_min.logpdf(tail + shift, model.shape, scale=model.scale).sum()
    assert ours >= weibull_min.logpdf(tail + shift, shape, scale=scale).sum() - 1e-9
    x = np.linspace(0, 2 * distances.max(), 50)
    np.testing.assert_allclose(model.cdf(x), weibull_min.cdf(x + shift, model.shape, scale=model.scale), atol=1e-12)
    torch.testing.assert_close(model.cdf(torch.tensor(x)), torch.tensor(model.cdf(x)))


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
