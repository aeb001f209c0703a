"""GLM families for mixed models: links, variances, deviances and log-likelihoods.

A pure part shared by every estimator of a generalized linear mixed model
(lme4's Laplace fit in :mod:`bayesmer.glmer`, and any posterior sampler): it
holds no data and knows nothing of designs. Definitions are R's (``binomial()``,
``poisson()`` in ``stats/family.R``), including the clamps R puts on the
inverse links so that a fit far out on the linear predictor stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.special as sc
import scipy.stats as st

from .errors import BayesmerError
from .settings import LINKS  # the families' links: one table, where the settings check them

__all__ = ["FamilyError", "Family", "Link", "get_family", "LINKS", "FAMILIES"]

_EPS = np.finfo(float).eps
# R's logit clamps: beyond |eta| = 30 the inverse link is held at eps / 1 - eps.
_THRESH = 30.0
_PROBIT_THRESH = -float(sc.ndtri(_EPS))


class FamilyError(BayesmerError, ValueError):
    """An unknown family or link, or a response the family cannot take."""


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)``.

    Attributes
    ----------
    name : str
        ``"logit"``, ``"probit"``, ``"cloglog"`` or ``"log"``.
    """

    name: str

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        mu = np.asarray(mu, dtype=float)
        if self.name == "logit":
            return sc.logit(mu)
        if self.name == "probit":
            return sc.ndtri(mu)
        if self.name == "cloglog":
            return np.log(-np.log1p(-mu))
        return np.log(mu)

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        """``g⁻¹(eta)``, clamped as R clamps it."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            return sc.expit(np.clip(eta, -_THRESH, _THRESH)).clip(_EPS, 1 - _EPS)
        if self.name == "probit":
            return sc.ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))
        if self.name == "cloglog":
            return (-np.expm1(-np.exp(np.minimum(eta, 700.0)))).clip(_EPS, 1 - _EPS)
        return np.maximum(np.exp(eta), _EPS)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``dmu/deta``, kept at or above machine epsilon as R keeps it."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            e = np.exp(-np.abs(eta))
            return np.maximum(e / (1 + e) ** 2, _EPS)
        if self.name == "probit":
            return np.maximum(np.exp(-0.5 * eta**2) / math.sqrt(2 * math.pi), _EPS)
        if self.name == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), _EPS)
        return np.maximum(np.exp(eta), _EPS)


FAMILIES = tuple(LINKS)


@dataclass(frozen=True)
class Family:
    """A GLM family with its link.

    Attributes
    ----------
    name : {"binomial", "poisson"}
    link : Link

    Notes
    -----
    For the binomial the response is the proportion of successes and the prior
    weights are the numbers of trials, as R's ``glm`` holds a ``cbind`` response.
    """

    name: str
    link: Link

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """``V(mu)``: ``mu (1 - mu)`` or ``mu``."""
        return mu * (1 - mu) if self.name == "binomial" else mu

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Squared deviance residuals, one per row (R's ``dev.resids``)."""
        if self.name == "binomial":
            return 2 * wt * (sc.xlogy(y, y / mu) + sc.xlogy(1 - y, (1 - y) / (1 - mu)))
        return 2 * wt * (sc.xlogy(y, y / mu) - (y - mu))

    def loglik(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row, with its normalising constant.

        Their sum times -2 is R's ``family$aic`` less the parameter count
        (for the binomial, the log binomial coefficient of ``round(wt * y)``
        successes in ``round(wt)`` trials).
        """
        if self.name == "binomial":
            m = np.round(wt)
            return st.binom.logpmf(np.round(wt * y), m, mu)
        return wt * st.poisson.logpmf(y, mu)

    def loglik_shift(self, y: np.ndarray, wt: np.ndarray) -> float:
        """``-2 Σ loglik - Σ dev_resids``, the same for every μ.

        -2 log-likelihood is then the deviance plus this constant: one sum per
        fit instead of a log-density per row and evaluation.
        """
        mu = np.full(len(y), 0.5 if self.name == "binomial" else 1.0)
        return float(-2.0 * self.loglik(y, mu, wt).sum() - self.dev_resids(y, mu, wt).sum())

    def pearson_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Pearson residuals ``(y - mu) sqrt(wt / V(mu))``."""
        return (y - mu) * np.sqrt(wt / self.variance(mu))

    def validate(self, y: np.ndarray, wt: np.ndarray, column: str, index) -> None:
        """Check a response (and its prior weights) for the family.

        Parameters
        ----------
        y : ndarray
            Response: proportions for the binomial, counts for the Poisson.
        wt : ndarray
            Prior weights (numbers of trials for the binomial).
        column : str
            Name of the response, for the message.
        index : sequence
            Row labels, for the message.

        Raises
        ------
        FamilyError
            Naming the column and the rows at fault.
        """
        index = np.asarray(index)
        _bad(wt < 0, f"the weights of {column!r} are negative", index)
        if self.name == "binomial":
            _bad(
                (y < 0) | (y > 1),
                f"the binomial response {column!r} is outside [0, 1] (give 0/1, a two-level "
                "factor, cbind(successes, failures) or a proportion with weights= trials)",
                index,
            )
            successes = wt * y
            _bad(
                np.abs(successes - np.round(successes)) > 1e-3,
                f"the binomial response {column!r} times its weights is not a whole number "
                "of successes",
                index,
            )
        else:
            _bad(y < 0, f"the Poisson response {column!r} has negative counts", index)
            _bad(y != np.round(y), f"the Poisson response {column!r} has counts that are not integers", index)


def _bad(mask: np.ndarray, what: str, index: np.ndarray) -> None:
    if np.any(mask):
        rows = index[np.asarray(mask)]
        shown = ", ".join(str(r) for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        raise FamilyError(f"{what}: rows {shown}{more}")


def get_family(family: str | Family, link: str | None = None) -> Family:
    """The family ``family`` with ``link`` (its canonical link when None).

    Raises
    ------
    FamilyError
        For an unknown family or a link the family does not take.
    """
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            raise FamilyError(f"family {family.name!r} already has link {family.link.name!r}, not {link!r}")
        return family
    if not isinstance(family, str) or family not in LINKS:
        raise FamilyError(f"unknown family {family!r}; the families are {list(FAMILIES)}")
    links = LINKS[family]
    if link is None:
        link = links[0]
    if link not in links:
        raise FamilyError(f"unknown link {link!r} for family {family!r}; its links are {list(links)}")
    return Family(family, Link(link))


def as_binary(col: pd.Series, column: str) -> np.ndarray:
    """A 0/1 response from booleans or a two-level factor (its first level is failure).

    R counts every level after the first as success; a factor with more than
    two levels is refused here rather than lumped silently.
    """
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float)
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = list(col.cat.categories)
        codes = col.cat.codes.to_numpy()
        values = np.where(codes < 0, np.nan, codes.astype(float))
    else:
        levels = sorted(col.dropna().unique(), key=str)
        lookup = {v: i for i, v in enumerate(levels)}
        values = np.array([np.nan if pd.isna(v) else lookup[v] for v in col], dtype=float)
    if len(levels) != 2:
        raise FamilyError(
            f"the binomial response {column!r} is a factor with {len(levels)} level(s) {levels[:10]}; "
            "it needs exactly two (the first is failure)"
        )
    return values
