"""Adapters for the families of :mod:`bayesmer.family` (lme4's glmer) and the Gaussian.

``gaussian`` (identity, ``sigma``), ``bernoulli``/``binomial`` (logit; y the
proportion of successes, weights the trials) and ``poisson`` (log), with the
same interface as the new families. Their point fits are lme4's (``reml``,
``glmer``); these adapters serve the Laplace engine and later posteriors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from .base import Dpar, ResponseFamily
from ..family import get_family as _glm_family

__all__ = ["Gaussian", "Binomial", "Poisson", "gaussian", "binomial", "bernoulli", "poisson"]

SIGMA = Dpar("sigma", "log", "student_t(3, 0, 2.5 * scale)", lower=0.0, glmmtmb="sigma(fit)")
_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class Gaussian(ResponseFamily):
    name: str = "gaussian"
    aliases: tuple = ("normal",)
    link: str = "identity"
    dpars: tuple = (SIGMA,)
    glmmtmb: str = "lmer(REML = FALSE)"

    def logpdf(self, y, eta, dp, wt=None):
        s = dp["sigma"]
        return -0.5 * ((y - eta) / s) ** 2 - np.log(s) - _HALF_LOG_2PI

    def derivs(self, y, eta, dp, wt=None):
        s2 = dp["sigma"] ** 2
        return (y - eta) / s2, np.full(np.shape(eta), -1.0 / s2)

    def variance(self, mu, dp):
        return np.full(np.shape(mu), dp["sigma"] ** 2)

    def init_dpars(self, y, wt=None):
        return {"sigma": float(np.std(y)) or 1.0}

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        eta = np.asarray(eta, dtype=float)
        return eta + dp["sigma"] * rng.standard_normal(eta.shape)


@dataclass(frozen=True)
class Binomial(ResponseFamily):
    """Logit-link binomial: y the proportion of successes out of ``wt`` trials (1 for bernoulli)."""

    name: str = "binomial"
    aliases: tuple = ()
    link: str = "logit"
    glmmtmb: str = "glmer(family = binomial)"

    def logpdf(self, y, eta, dp, wt=None):
        wt = np.ones_like(y) if wt is None else wt
        return _glm_family("binomial").loglik(y, sc.expit(eta), wt)

    def derivs(self, y, eta, dp, wt=None):
        wt = np.ones_like(y) if wt is None else wt
        mu = sc.expit(eta)
        return wt * (y - mu), -wt * mu * (1 - mu)

    def variance(self, mu, dp):
        return mu * (1 - mu)

    def rvs(self, eta, dp, wt=None, rng=None):
        """Proportions of successes in ``wt`` trials (one for bernoulli)."""
        rng = np.random.default_rng(rng)
        eta = np.asarray(eta, dtype=float)
        n = np.ones(eta.shape, dtype=np.int64) if wt is None else np.round(wt).astype(np.int64)
        return rng.binomial(n, sc.expit(eta)) / np.maximum(n, 1)

    def check_response(self, y, column, index):
        _glm_family("binomial").validate(y, np.ones_like(y), column, index)


@dataclass(frozen=True)
class Poisson(ResponseFamily):
    name: str = "poisson"
    aliases: tuple = ()
    link: str = "log"
    glmmtmb: str = "glmer(family = poisson)"

    def logpdf(self, y, eta, dp, wt=None):
        mu = np.exp(eta)
        return sc.xlogy(y, mu) - mu - sc.gammaln(y + 1)

    def derivs(self, y, eta, dp, wt=None):
        mu = np.exp(eta)
        return y - mu, -mu

    def variance(self, mu, dp):
        return mu

    def rvs(self, eta, dp, wt=None, rng=None):
        return np.random.default_rng(rng).poisson(np.exp(eta)).astype(float)

    def check_response(self, y, column, index):
        self._check_counts(y, column, index)


gaussian = Gaussian()
binomial = Binomial()
bernoulli = Binomial(name="bernoulli", aliases=())
poisson = Poisson()
