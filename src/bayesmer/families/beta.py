"""Beta (brms ``beta``; glmmTMB ``beta_family``), logit link.

Mean mu and precision ``phi``: shape1 = mu phi, shape2 = (1 - mu) phi;
glmmTMB's ``sigma()`` is ``phi``. The response must lie strictly inside (0, 1):
brms's ``zero_one_inflated_beta`` (or ``zero_inflated_beta`` for zeros only)
takes values at exactly 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special as sc

from .base import Dpar, ResponseFamily, bad_rows

__all__ = ["Beta", "beta"]

PHI = Dpar("phi", "log", "gamma(0.01, 0.01)", lower=0.0, glmmtmb="sigma(fit) (beta_family)")


@dataclass(frozen=True)
class Beta(ResponseFamily):
    name: str = "beta"
    aliases: tuple = ("beta_family",)
    link: str = "logit"
    dpars: tuple = (PHI,)
    glmmtmb: str = "glmmTMB(family = beta_family)"

    def logpdf(self, y, eta, dp, wt=None):
        phi = dp["phi"]
        mu = sc.expit(eta)
        a, b = mu * phi, (1 - mu) * phi
        return sc.gammaln(phi) - sc.gammaln(a) - sc.gammaln(b) + (a - 1) * np.log(y) + (b - 1) * np.log1p(-y)

    def derivs(self, y, eta, dp, wt=None):
        phi = dp["phi"]
        mu = sc.expit(eta)
        a, b = mu * phi, (1 - mu) * phi
        m1 = mu * (1 - mu)  # dmu/deta
        m2 = m1 * (1 - 2 * mu)
        lmu = phi * (np.log(y) - np.log1p(-y) - sc.digamma(a) + sc.digamma(b))
        lmumu = -phi * phi * (sc.polygamma(1, a) + sc.polygamma(1, b))
        return lmu * m1, lmumu * m1 * m1 + lmu * m2

    def variance(self, mu, dp):
        return mu * (1 - mu) / (1 + dp["phi"])

    def rvs(self, eta, dp, wt=None, rng=None):
        rng = np.random.default_rng(rng)
        mu, phi = sc.expit(eta), dp["phi"]
        # a draw can round to exactly 0 or 1 in floating point where the family's density is 0
        return np.clip(rng.beta(mu * phi, (1 - mu) * phi), 1e-300, 1 - np.finfo(float).epsneg)

    def init_dpars(self, y, wt=None):
        m, v = float(np.mean(y)), float(np.var(y))
        return {"phi": max(m * (1 - m) / v - 1, 1.0) if v > 0 else 10.0}

    def check_response(self, y, column, index):
        index = np.asarray(index)
        bad_rows((y < 0) | (y > 1), f"the beta response {column!r} is outside (0, 1)", index)
        bad_rows(y == 0, f"the beta response {column!r} is exactly 0 (the beta family needs 0 < y < 1; "
                 "'zero_inflated_beta' or 'zero_one_inflated_beta' take zeros)", index)
        bad_rows(y == 1, f"the beta response {column!r} is exactly 1 (the beta family needs 0 < y < 1; "
                 "'zero_one_inflated_beta' takes ones)", index)


beta = Beta()
