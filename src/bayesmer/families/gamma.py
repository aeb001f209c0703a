"""Gamma (brms ``Gamma``, bambi ``gamma``; glmmTMB ``Gamma(link = "log")``), log link by default.

brms's and bambi's default link for Gamma is ``inverse`` (R's); the log link is
the default here as it is what Gamma mixed models are mostly fitted with (and
the parameterisation issue 17 names); ``link="inverse"`` is taken too.

Mean mu, ``shape``: y ~ Gamma(shape, rate = shape / mu), Var = mu²/shape.
glmmTMB's ``sigma()`` is the coefficient of variation, ``shape = 1/sigma²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from .base import Dpar, ResponseFamily

__all__ = ["GammaFamily", "Gamma"]

SHAPE = Dpar("shape", "log", "gamma(0.01, 0.01)", lower=0.0, glmmtmb="1 / sigma(fit)^2")


@dataclass(frozen=True)
class GammaFamily(ResponseFamily):
    name: str = "Gamma"
    aliases: tuple = ("gamma",)
    link: str = "log"
    dpars: tuple = (SHAPE,)
    glmmtmb: str = 'glmmTMB(family = Gamma(link = "log"))'
    links: tuple = ("log", "inverse")

    def logpdf(self, y, eta, dp, wt=None):
        k = dp["shape"]
        if self.link == "inverse":  # mu = 1/eta, eta > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                return k * np.log(k) - sc.gammaln(k) + (k - 1) * np.log(y) - k * y * eta + k * np.log(eta)
        return k * np.log(k) - sc.gammaln(k) + (k - 1) * np.log(y) - k * y * np.exp(-eta) - k * eta

    def derivs(self, y, eta, dp, wt=None):
        k = dp["shape"]
        if self.link == "inverse":
            return k * (1.0 / eta - y), -k / eta**2
        t = y * np.exp(-eta)
        return k * (t - 1), -k * t

    def variance(self, mu, dp):
        return mu**2 / dp["shape"]

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        k = dp["shape"]
        return rng.gamma(k, self.linkinv(eta) / k)

    def init_dpars(self, y, wt=None):
        m, v = float(np.mean(y)), float(np.var(y))
        return {"shape": m * m / v if v > 0 else 1.0}

    def check_response(self, y, column, index):
        self._check_positive(y, column, index)


Gamma = GammaFamily()
