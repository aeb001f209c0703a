"""Lognormal (brms ``lognormal``): log y ~ N(eta, sigma), identity link on the log scale.

The maximum-likelihood fit is exactly ``lmer(log(y), REML = FALSE)``; its
log-likelihood on the y scale is lmer's minus ``sum(log y)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Dpar, ResponseFamily

__all__ = ["Lognormal", "lognormal"]

SIGMA = Dpar("sigma", "log", "student_t(3, 0, 2.5 * scale)", lower=0.0, glmmtmb="sigma(lmer(log(y), REML = FALSE))")

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class Lognormal(ResponseFamily):
    name: str = "lognormal"
    aliases: tuple = ()
    link: str = "identity"
    dpars: tuple = (SIGMA,)
    glmmtmb: str = "lmer(log(y), REML = FALSE)"

    def logpdf(self, y, eta, dp, wt=None):
        s = dp["sigma"]
        z = np.log(y)
        return -0.5 * ((z - eta) / s) ** 2 - np.log(s) - _HALF_LOG_2PI - z

    def derivs(self, y, eta, dp, wt=None):
        s2 = dp["sigma"] ** 2
        return (np.log(y) - eta) / s2, np.full(np.shape(eta), -1.0 / s2)

    def mean(self, eta, dp):
        return np.exp(eta + dp["sigma"] ** 2 / 2)

    def variance(self, mu, dp):
        # mu is the mean on the y scale
        return (np.exp(dp["sigma"] ** 2) - 1) * mu**2

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        eta = np.asarray(eta, dtype=float)
        return np.exp(eta + dp["sigma"] * rng.standard_normal(eta.shape))

    def init_dpars(self, y, wt=None):
        return {"sigma": float(np.std(np.log(y))) or 1.0}

    def check_response(self, y, column, index):
        self._check_positive(y, column, index)


lognormal = Lognormal()
