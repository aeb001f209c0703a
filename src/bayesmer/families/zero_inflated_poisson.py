"""Zero-inflated Poisson (brms ``zero_inflated_poisson``; glmmTMB ``poisson`` with ``ziformula = ~1``).

P(y = 0) = zi + (1 - zi) exp(-mu); P(y) = (1 - zi) Poisson(y | mu) for y > 0.
``zi`` is constant (brms's default; glmmTMB's ``ziformula = ~1``, whose
``fixef(fit)$zi`` is ``logit(zi)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from .base import Dpar, ResponseFamily

__all__ = ["ZeroInflatedPoisson", "zero_inflated_poisson", "ZI", "zi_mix"]

ZI = Dpar("zi", "logit", "beta(1, 1)", lower=0.0, upper=1.0, glmmtmb="plogis(fixef(fit)$zi)")


def zi_mix(y, zi, logf, d1, d2, logf0, g0, h0):
    """Log density and eta-derivatives of a zero-inflated count model.

    ``logf, d1, d2``: the count part's log density and its derivatives at
    every row; ``logf0, g0, h0``: its log P(0) and that one's derivatives.
    """
    zero = y == 0
    a = np.log1p(-zi) + logf0  # log of (1 - zi) f(0)
    ls = np.logaddexp(np.log(zi), a)  # log P(y = 0)
    w = np.exp(a - ls)  # (1 - zi) f(0) / P(0)
    lp = np.where(zero, ls, np.log1p(-zi) + logf)
    g = np.where(zero, w * g0, d1)
    h = np.where(zero, w * (g0**2 + h0) - (w * g0) ** 2, d2)
    return lp, g, h


@dataclass(frozen=True)
class ZeroInflatedPoisson(ResponseFamily):
    name: str = "zero_inflated_poisson"
    aliases: tuple = ("zip", "zipoisson")
    link: str = "log"
    dpars: tuple = (ZI,)
    glmmtmb: str = "glmmTMB(family = poisson, ziformula = ~1)"

    def _parts(self, y, eta, dp):
        mu = np.exp(eta)
        logf = sc.xlogy(y, mu) - mu - sc.gammaln(y + 1)
        return zi_mix(y, dp["zi"], logf, y - mu, -mu, -mu, -mu, -mu)

    def logpdf(self, y, eta, dp, wt=None):
        mu, zi = np.exp(eta), dp["zi"]
        pos = np.log1p(-zi) + sc.xlogy(y, mu) - mu - sc.gammaln(y + 1)
        return np.where(y == 0, np.logaddexp(np.log(zi), np.log1p(-zi) - mu), pos)

    def derivs(self, y, eta, dp, wt=None):
        return self._parts(y, eta, dp)[1:]

    def mean(self, eta, dp):
        return (1 - dp["zi"]) * np.exp(eta)

    def variance(self, mu, dp):
        # mu is the count part's mean here
        zi = dp["zi"]
        return (1 - zi) * mu * (1 + zi * mu)

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        eta = np.asarray(eta, dtype=float)
        y = rng.poisson(np.exp(eta)).astype(float)
        return np.where(rng.random(eta.shape) < dp["zi"], 0.0, y)

    def init_dpars(self, y, wt=None):
        p0 = float(np.mean(y == 0))
        return {"zi": min(max(p0 / 2, 0.05), 0.5)}

    def check_response(self, y, column, index):
        self._check_counts(y, column, index)


zero_inflated_poisson = ZeroInflatedPoisson()
