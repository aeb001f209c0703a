"""Zero-inflated negative binomial (brms ``zero_inflated_negbinomial``; glmmTMB ``nbinom2``, ``ziformula = ~1``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ResponseFamily
from .negbinomial import SHAPE, nb_derivs, nb_logpdf
from .zero_inflated_poisson import ZI, zi_mix

__all__ = ["ZeroInflatedNegBinomial", "zero_inflated_negbinomial"]


@dataclass(frozen=True)
class ZeroInflatedNegBinomial(ResponseFamily):
    name: str = "zero_inflated_negbinomial"
    aliases: tuple = ("zinb", "zero_inflated_negativebinomial")
    link: str = "log"
    dpars: tuple = (SHAPE, ZI)
    glmmtmb: str = "glmmTMB(family = nbinom2, ziformula = ~1)"

    def _parts(self, y, eta, dp):
        mu, k = np.exp(eta), dp["shape"]
        logf = nb_logpdf(y, mu, k)
        d1, d2 = nb_derivs(y, mu, k)
        logf0 = k * (np.log(k) - np.log(k + mu))
        g0 = -k * mu / (k + mu)
        h0 = -k * k * mu / (k + mu) ** 2
        return zi_mix(y, dp["zi"], logf, d1, d2, logf0, g0, h0)

    def logpdf(self, y, eta, dp, wt=None):
        mu, k, zi = np.exp(eta), dp["shape"], dp["zi"]
        logf0 = k * (np.log(k) - np.log(k + mu))
        return np.where(y == 0, np.logaddexp(np.log(zi), np.log1p(-zi) + logf0), np.log1p(-zi) + nb_logpdf(y, mu, k))

    def derivs(self, y, eta, dp, wt=None):
        return self._parts(y, eta, dp)[1:]

    def mean(self, eta, dp):
        return (1 - dp["zi"]) * np.exp(eta)

    def variance(self, mu, dp):
        zi, k = dp["zi"], dp["shape"]
        return (1 - zi) * mu * (1 + mu / k + zi * mu)

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        eta = np.asarray(eta, dtype=float)
        k = dp["shape"]
        y = rng.poisson(rng.gamma(k, np.exp(eta) / k)).astype(float)
        return np.where(rng.random(eta.shape) < dp["zi"], 0.0, y)

    def init_dpars(self, y, wt=None):
        p0 = float(np.mean(y == 0))
        return {"shape": 1.0, "zi": min(max(p0 / 4, 0.05), 0.5)}

    def check_response(self, y, column, index):
        self._check_counts(y, column, index)


zero_inflated_negbinomial = ZeroInflatedNegBinomial()
