"""Extreme-value (Weibull) models of the largest distances, as OpenMax uses them; numpy/scipy, no libMR.

libMR's ``FitHigh`` (used by the OpenMax code as ``libmr.MR().fit_high(tail, len(tail))``) does this
(libmr 0.1.9 from PyPI, ``libMR/MetaRecognition.cpp``, ``EvtGeneric`` and ``CDF``): sort descending, take
the ``fitting_size`` largest values, translate them by ``shift = translate_amount - small_score`` where
``small_score = min(tail)`` (so the smallest tail value lands on ``translate_amount``), fit a two-parameter
Weibull (location 0) by maximum likelihood (``weibull_fit``, root-finding tolerance 1e-6), and evaluate
``w_score(x) = CDF(x) = 1 - exp(-((x + shift) / scale)^shape)``, 0 where ``x + shift < 0`` (``sign = +1``
for ``FitHigh``). ``translate_amount`` is 1 by default in libmr 0.1.9 (the ``MetaRecognition``
constructor's ``int translate_amount=1`` and the Python binding's ``MR(..., translate_amount=1)``), which
is what OpenMax implementations get from ``libmr.MR()``. :func:`fit_weibull_tail` reproduces this with the
same default (``LIBMR_TRANSLATE_AMOUNT = 1``): on OpenMax-like distance samples its CDFs equal libmr 0.1.9's
``w_score`` within 1.3e-6 (shape and scale within 4e-6 relative: libMR's root-finding tolerance; ours is
1e-14). Earlier versions of this module used 10000, which is not libMR's default.
``translate_amount=None`` fits the raw tail instead (``shift = 0``, i.e.
``scipy.stats.weibull_min.fit(tail, floc=0)``). libMR refuses a tail longer than the data; we use all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq

__all__ = ["WeibullTail", "fit_weibull", "fit_weibull_tail", "weibull_cdf"]

#: libmr 0.1.9's default ``translate_amount`` (MetaRecognition.cpp / MetaRecognition.h; an int there).
LIBMR_TRANSLATE_AMOUNT = 1.0


def fit_weibull(samples) -> tuple[float, float]:
    """Maximum-likelihood two-parameter Weibull (location 0): returns ``(shape, scale)``.

    Same estimate as ``scipy.stats.weibull_min.fit(samples, floc=0)[0::2]`` (and libMR's ``weibull_fit``).
    The shape ``k`` solves the profile-likelihood equation, written scale-free with ``y = x / max(x)``
    so that ``y^k`` never overflows (shapes reach the thousands with a large ``translate_amount``):
    ``sum(y^k ln y) / sum(y^k) - 1/k - mean(ln y) = 0``; then ``scale = max(x) * mean(y^k)^(1/k)``.

    Args:
        samples: (n,) positive values, n >= 2, not all equal.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2 or not np.isfinite(x).all() or (x <= 0).any():
        raise ValueError(f"a Weibull fit needs at least 2 finite positive values, got {x.size} values "
                         f"with minimum {x.min() if x.size else 'n/a'}.")
    top = x.max()
    log_y = np.log(x / top)
    if np.ptp(log_y) == 0:
        raise ValueError("a Weibull fit needs values that are not all equal; the maximum-likelihood shape "
                         "is infinite for a constant sample.")
    mean_log = log_y.mean()

    def profile(k: float) -> float:
        w = np.exp(k * log_y)  # y^k in (0, 1]
        return float((w * log_y).sum() / w.sum() - 1.0 / k - mean_log)

    # profile() increases from -inf (k -> 0) to -mean(ln y) > 0 (k -> inf): bracket the single root.
    low, high = 1e-3, 1.0
    while profile(low) > 0:
        low /= 10.0
    while profile(high) < 0:
        low, high = high, high * 2.0
    shape = brentq(profile, low, high, xtol=1e-14 * high, rtol=1e-14, maxiter=500)
    scale = top * float(np.mean(np.exp(shape * log_y))) ** (1.0 / shape)
    return float(shape), float(scale)


@dataclass(frozen=True)
class WeibullTail:
    """A Weibull model of the largest values of one sample: ``CDF(x) = 1 - exp(-((x + shift)/scale)^shape)``.

    Attributes:
        shape, scale: Weibull parameters fitted to ``tail + shift``.
        shift: translation applied before fitting (``translate_amount - min(tail)``, or 0).
        tail_size: number of values the fit used.
    """

    shape: float
    scale: float
    shift: float
    tail_size: int

    def cdf(self, x):
        """The model's CDF at ``x`` (tensor or array-like; a tensor comes back as a float64 tensor)."""
        return weibull_cdf(x, self.shape, self.scale, self.shift)


def fit_weibull_tail(values, tail_size: int, translate_amount: float | None = LIBMR_TRANSLATE_AMOUNT
                     ) -> WeibullTail:
    """libMR ``FitHigh``: a Weibull fit to the ``tail_size`` largest of ``values`` (all of them if fewer).

    Args:
        values: (n,) values (OpenMax: distances of correctly classified training logits to their class mean).
        tail_size: how many of the largest values to fit.
        translate_amount: libMR's translation: ``min(tail)`` is moved to this value before the fit
            (default 1, libmr 0.1.9's default); ``None`` fits the raw tail (shift 0).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if tail_size < 2:
        raise ValueError(f"tail_size must be >= 2, got {tail_size}.")
    tail = np.sort(x)[-tail_size:]
    shift = 0.0 if translate_amount is None else float(translate_amount) - float(tail[0])
    shape, scale = fit_weibull(tail + shift)
    return WeibullTail(shape=shape, scale=scale, shift=shift, tail_size=int(tail.size))


def weibull_cdf(x, shape, scale, shift=0.0):
    """``1 - exp(-(max(x + shift, 0) / scale)^shape)``, broadcasting; parameters may be (K,) arrays.

    A torch tensor ``x`` gives a float64 tensor on its device (parameters broadcast over its last axis);
    anything else gives a numpy array.
    """
    if isinstance(x, torch.Tensor):
        x = x.double()
        params = [torch.as_tensor(np.asarray(p, dtype=np.float64), device=x.device) for p in (shape, scale, shift)]
        z = ((x + params[2]) / params[1]).clamp_min(0.0)
        return -torch.expm1(-z.pow(params[0]))
    z = np.clip((np.asarray(x, dtype=np.float64) + shift) / scale, 0.0, None)
    with np.errstate(over="ignore"):
        return -np.expm1(-(z ** shape))
