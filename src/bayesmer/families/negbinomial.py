"""Negative binomial (brms ``negbinomial``, bambi ``negativebinomial``; glmmTMB ``nbinom2``).

Var(y) = mu + mu²/shape with a log link. glmmTMB's ``sigma()`` of an
``nbinom2`` fit is ``shape``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from .base import Dpar, ResponseFamily

__all__ = ["NegBinomial", "negbinomial", "nb_logpdf", "nb_derivs"]

SHAPE = Dpar("shape", "log", "gamma(0.01, 0.01)", lower=0.0, glmmtmb="sigma(fit) (nbinom2)")


def nb_logpdf(y, mu, k):
    """log NB(y | mu, shape k), Var = mu + mu²/k."""
    return (sc.gammaln(y + k) - sc.gammaln(k) - sc.gammaln(y + 1)
            + k * (np.log(k) - np.log(k + mu)) + sc.xlogy(y, mu) - y * np.log(k + mu))


def nb_derivs(y, mu, k):
    """First and second derivatives of :func:`nb_logpdf` in eta = log mu."""
    r = mu / (k + mu)
    return y - (y + k) * r, -(y + k) * k * mu / (k + mu) ** 2


@dataclass(frozen=True)
class NegBinomial(ResponseFamily):
    name: str = "negbinomial"
    aliases: tuple = ("negativebinomial", "nbinom2", "negative_binomial")
    link: str = "log"
    dpars: tuple = (SHAPE,)
    glmmtmb: str = "glmmTMB(family = nbinom2)"

    def logpdf(self, y, eta, dp, wt=None):
        return nb_logpdf(y, np.exp(eta), dp["shape"])

    def derivs(self, y, eta, dp, wt=None):
        return nb_derivs(y, np.exp(eta), dp["shape"])

    def variance(self, mu, dp):
        return mu + mu**2 / dp["shape"]

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        k = dp["shape"]
        # a Poisson of a Gamma(k, μ/k) mean: NB with Var = μ + μ²/k
        return rng.poisson(rng.gamma(k, np.exp(eta) / k)).astype(float)

    def init_dpars(self, y, wt=None):
        m, v = float(np.mean(y)), float(np.var(y))
        return {"shape": m**2 / (v - m) if v > m * 1.01 else 10.0}

    def check_response(self, y, column, index):
        self._check_counts(y, column, index)


negbinomial = NegBinomial()
