"""What every response family of :mod:`bayesmer.families` holds and does.

A family is data plus a few pure functions of ``(y, eta, dpars)``: the link,
the log density of each row with its normalising constant, and its first and
second derivatives in the linear predictor ``eta`` (the observed information,
as glmmTMB's Laplace approximation uses it), the distributional parameters
("dpars", with brms's names), their unconstrained transforms and brms's
default priors. Nothing here knows about designs or random effects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.special as sc

from ..family import FamilyError, _bad

__all__ = ["Dpar", "ResponseFamily", "FamilyError", "LINKS", "bad_rows"]

bad_rows = _bad

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Dpar:
    """A distributional parameter.

    Attributes
    ----------
    name : str
        brms's name: ``shape``, ``nu``, ``phi``, ``zi``, ``sigma``, ``Intercept``.
    transform : {"log", "logit", "log1m1", "ordered"}
        To the unconstrained scale: ``log x``, ``logit x``, ``log(x - 1)`` (nu,
        bounded below by 1 as brms bounds it), or ordered thresholds (the first
        free, then the logs of the increments).
    prior : str
        brms's default prior (brms 2.18 ``default_prior()``), as brms writes it.
    lower, upper : float
        The bounds of the natural scale.
    glmmtmb : str
        What glmmTMB reports for it (for the reference comparisons).
    """

    name: str
    transform: str
    prior: str
    lower: float = -np.inf
    upper: float = np.inf
    glmmtmb: str = ""

    def to_unconstrained(self, x):
        x = np.asarray(x, dtype=float)
        if self.transform == "log":
            return np.log(x)
        if self.transform == "logit":
            return sc.logit(x)
        if self.transform == "log1m1":
            return np.log(x - 1.0)
        if self.transform == "ordered":
            return np.concatenate([x[:1], np.log(np.diff(x))])
        raise ValueError(self.transform)

    def from_unconstrained(self, z):
        z = np.asarray(z, dtype=float)
        if self.transform == "log":
            return np.exp(z)
        if self.transform == "logit":
            return sc.expit(z)
        if self.transform == "log1m1":
            return 1.0 + np.exp(z)
        if self.transform == "ordered":
            return np.cumsum(np.concatenate([z[:1], np.exp(z[1:])]))
        raise ValueError(self.transform)


def _linkinv(link: str, eta):
    eta = np.asarray(eta, dtype=float)
    if link == "identity":
        return eta
    if link == "log":
        return np.exp(eta)
    if link == "logit":
        return sc.expit(eta)
    if link == "inverse":
        return 1.0 / eta
    if link == "probit":
        return sc.ndtr(eta)
    raise ValueError(link)


def _linkfun(link: str, mu):
    mu = np.asarray(mu, dtype=float)
    if link == "identity":
        return mu
    if link == "log":
        return np.log(mu)
    if link == "logit":
        return sc.logit(mu)
    if link == "inverse":
        return 1.0 / mu
    if link == "probit":
        return sc.ndtri(mu)
    raise ValueError(link)


LINKS = ("identity", "log", "logit", "inverse", "probit")


@dataclass(frozen=True)
class ResponseFamily:
    """A response family: its link, density, derivatives in eta and parameters.

    Subclasses implement :meth:`logpdf`, :meth:`derivs`, :meth:`variance`,
    :meth:`check_response` and :meth:`init_dpars`. ``dp`` is a dict of each
    dpar's natural value (thresholds as an array under ``"Intercept"``);
    ``wt`` are prior weights (trials for the binomial), ones by default.

    Attributes
    ----------
    name : str
        brms's name.
    aliases : tuple of str
        bambi's (and others') names for it.
    link : str
        The link of the mean.
    links : tuple of str
        The links it takes (:meth:`with_link`); the first is the default.
    dpars : tuple of Dpar
    glmmtmb : str
        The R call that fits it (the reference the point fit matches).
    """

    name: str = ""
    aliases: tuple = ()
    link: str = "identity"
    dpars: tuple = ()
    glmmtmb: str = ""
    links: tuple = ()

    def with_link(self, link: str | None) -> "ResponseFamily":
        """The family with another link (one of :attr:`links`)."""
        if link is None or link == self.link:
            return self
        allowed = self.links or (self.link,)
        if link not in allowed:
            raise FamilyError(f"unknown link {link!r} for family {self.name!r}; its links are {list(allowed)}")
        return replace(self, link=link)

    def init_eta(self, y) -> float:
        """A starting value of the linear predictor's intercept: the link of the mean response."""
        with np.errstate(all="ignore"):
            v = float(self.linkfun(np.clip(np.mean(y), 1e-3, None) if self.link in ("log", "inverse")
                                   else np.clip(np.mean(y), 1e-3, 1 - 1e-3) if self.link in ("logit", "probit")
                                   else np.mean(y)))
        return v if np.isfinite(v) else 0.0

    # -- link
    def linkinv(self, eta):
        """``mu = g⁻¹(eta)``."""
        return _linkinv(self.link, eta)

    def linkfun(self, mu):
        """``eta = g(mu)``."""
        return _linkfun(self.link, mu)

    def mean(self, eta, dp) -> np.ndarray:
        """E[y | eta] (the mean: ``linkinv(eta)`` except where a dpar enters it)."""
        return self.linkinv(eta)

    # -- density
    def logpdf(self, y, eta, dp, wt=None) -> np.ndarray:  # pragma: no cover - abstract
        """log p(y_i | eta_i, dpars), one value per row, normalising constants included."""
        raise NotImplementedError

    def derivs(self, y, eta, dp, wt=None) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """First and second derivatives of :meth:`logpdf` in eta, row by row."""
        raise NotImplementedError

    def variance(self, mu, dp) -> np.ndarray:  # pragma: no cover
        """Var(y | mu, dpars)."""
        raise NotImplementedError

    def rvs(self, eta, dp, wt=None, rng=None) -> np.ndarray:  # pragma: no cover
        """Draws of y given eta and the dpars, one per row (posterior predictive, simulation)."""
        raise NotImplementedError(f"no random draws for family {self.name!r}")

    # -- parameters
    def dpar_names(self) -> list[str]:
        """The names of the dpars as brms names them (thresholds ``Intercept[k]``)."""
        return [d.name for d in self.dpars]

    def init_dpars(self, y, wt=None) -> dict:
        """Starting values of the dpars for a point fit."""
        return {}

    def pack(self, dp: dict) -> np.ndarray:
        """The dpars' unconstrained vector."""
        if not self.dpars:
            return np.zeros(0)
        return np.concatenate([np.atleast_1d(d.to_unconstrained(dp[d.name])) for d in self.dpars])

    def unpack(self, z: np.ndarray) -> dict:
        """Natural dpars from the unconstrained vector (:meth:`pack`'s inverse)."""
        out, pos = {}, 0
        for d in self.dpars:
            m = self.dpar_size(d)
            v = d.from_unconstrained(z[pos : pos + m])
            out[d.name] = v if d.transform == "ordered" else float(v[0]) if np.ndim(v) else float(v)
            pos += m
        return out

    def dpar_size(self, d: Dpar) -> int:
        return 1

    def dpar_series(self, dp: dict) -> pd.Series:
        """The dpars as a Series with brms's names."""
        names, vals = [], []
        for d in self.dpars:
            v = np.atleast_1d(dp[d.name])
            if d.transform == "ordered":
                names += [f"{d.name}[{i + 1}]" for i in range(len(v))]
                vals += list(v)
            else:
                names.append(d.name)
                vals.append(float(v[0]))
        return pd.Series(vals, index=names, name="Estimate", dtype=float)

    def default_priors(self) -> dict[str, str]:
        """brms's default prior of each dpar (brms 2.18), as brms writes it."""
        return {d.name: d.prior for d in self.dpars}

    # -- the response
    def prepare_response(self, col: pd.Series, column: str) -> np.ndarray:
        """The numeric response of a data column (ordinal families map categories to 1..K)."""
        if pd.api.types.is_bool_dtype(col):
            return col.to_numpy(dtype=float)
        if not pd.api.types.is_numeric_dtype(col):
            raise FamilyError(f"the {self.name} response {column!r} is not numeric (dtype {col.dtype})")
        return col.to_numpy(dtype=float)

    def check_response(self, y, column: str, index) -> None:
        """Raise :class:`FamilyError` naming the rows the family cannot take."""

    # shared checks
    def _check_counts(self, y, column, index):
        index = np.asarray(index)
        bad_rows(y < 0, f"the {self.name} response {column!r} has negative counts", index)
        bad_rows(y != np.round(y), f"the {self.name} response {column!r} has counts that are not integers", index)

    def _check_positive(self, y, column, index):
        bad_rows(y <= 0, f"the {self.name} response {column!r} has zero or negative values "
                 "(the family needs y > 0)", np.asarray(index))

    def __str__(self) -> str:
        return f"{self.name}({self.link})"
