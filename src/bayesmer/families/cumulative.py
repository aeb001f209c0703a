"""Cumulative ordinal (brms ``cumulative``; ordinal's ``clmm``), logit (default) or probit link.

P(Y <= k) = F(Intercept[k] - eta) for k = 1..K-1, with no intercept in eta
(ordinal::clmm and brms agree on the sign). The thresholds are brms's
``Intercept[k]`` (clmm's ``1|2``, ``2|3``, ...).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.special as sc

from .base import Dpar, FamilyError, ResponseFamily, bad_rows

__all__ = ["Cumulative", "cumulative"]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

THRESHOLDS = Dpar("Intercept", "ordered", "student_t(3, 0, 2.5)", glmmtmb="clmm's alpha (thresholds)")


def _cdf_pdf_dpdf(link: str, x):
    """F, f = F' and f' at x (x may hold ±inf)."""
    if link == "logit":
        F = sc.expit(x)
        f = F * (1 - F)
        return F, f, f * (1 - 2 * F)
    F = sc.ndtr(x)
    with np.errstate(invalid="ignore"):
        f = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
        df = np.where(np.isfinite(x), -x * f, 0.0)
    return F, f, df


@dataclass(frozen=True)
class Cumulative(ResponseFamily):
    """The cumulative model; ``levels`` are the response's ordered categories once bound to data."""

    name: str = "cumulative"
    aliases: tuple = ("ordinal", "clmm")
    link: str = "logit"
    dpars: tuple = (THRESHOLDS,)
    glmmtmb: str = "ordinal::clmm(link = 'logit')"
    links: tuple = ("logit", "probit")
    levels: tuple = ()
    has_intercept: bool = False  # eta has no intercept: the thresholds stand for it

    @property
    def n_thresholds(self) -> int:
        return max(len(self.levels) - 1, 0)

    def dpar_size(self, d):
        return self.n_thresholds

    def threshold_names(self) -> list[str]:
        """clmm's names of the thresholds: ``1|2``, ``2|3``, ..."""
        return [f"{a}|{b}" for a, b in zip(self.levels[:-1], self.levels[1:])]

    def _bounds(self, y, dp):
        tau = np.concatenate([[-np.inf], np.asarray(dp["Intercept"], dtype=float), [np.inf]])
        k = y.astype(int)
        return tau[k], tau[k - 1]

    def _parts(self, y, eta, dp):
        hi, lo = self._bounds(y, dp)
        a, b = hi - eta, lo - eta
        Fa, fa, dfa = _cdf_pdf_dpdf(self.link, a)
        Fb, fb, dfb = _cdf_pdf_dpdf(self.link, b)
        # P(Y = k) = F(a) - F(b), taken on the side where it does not cancel
        if self.link == "logit":
            p = np.where(b > -a, sc.expit(-b) - sc.expit(-a), Fa - Fb)
        else:
            p = np.where(b > -a, sc.ndtr(-b) - sc.ndtr(-a), Fa - Fb)
        g = (fa - fb) / p
        return np.log(p), -g, (dfa - dfb) / p - g * g

    def logpdf(self, y, eta, dp, wt=None):
        hi, lo = self._bounds(y, dp)
        a, b = hi - eta, lo - eta
        cdf = sc.expit if self.link == "logit" else sc.ndtr
        # P(Y = k) = F(a) - F(b), taken on the side where it does not cancel
        with np.errstate(divide="ignore"):
            return np.log(np.where(b > -a, cdf(-b) - cdf(-a), cdf(a) - cdf(b)))

    def derivs(self, y, eta, dp, wt=None):
        return self._parts(y, eta, dp)[1:]

    def mean(self, eta, dp):
        """E[Y] on the 1..K scale (shapes as :meth:`probs`, without its last axis)."""
        p = self.probs(eta, dp)
        return p @ np.arange(1, p.shape[-1] + 1)

    def probs(self, eta, dp) -> np.ndarray:
        """P(Y = k | eta), k = 1..K on a new last axis.

        ``eta`` (..., n) with thresholds (K-1,), or per draw: ``eta`` (S, n)
        with thresholds (S, K-1), giving (S, n, K).
        """
        tau = np.asarray(dp["Intercept"], dtype=float)
        F = self.linkinv(np.expand_dims(tau, -2) - np.asarray(eta, dtype=float)[..., None])
        edge = np.zeros((*F.shape[:-1], 1))
        return np.clip(np.diff(np.concatenate([edge, F, edge + 1.0], axis=-1), axis=-1), 0.0, 1.0)

    def rvs(self, eta, dp, wt=None, rng=None):
        """Categories 1..K (their labels are :attr:`levels`)."""
        rng = np.random.default_rng(rng)
        tau = np.asarray(dp["Intercept"], dtype=float)
        eta = np.asarray(eta, dtype=float)
        F = self.linkinv(tau[None, :] - eta.reshape(-1, 1))
        u = rng.random((eta.size, 1))
        return (1.0 + np.sum(u > F, axis=1)).reshape(eta.shape)

    def variance(self, mu, dp):
        raise NotImplementedError("the cumulative family's variance depends on eta, not on the mean alone")

    def init_dpars(self, y, wt=None):
        K = len(self.levels)
        cum = np.array([np.mean(y <= k) for k in range(1, K)])
        cum = np.clip(cum, 1e-3, 1 - 1e-3)
        tau = sc.logit(cum) if self.link == "logit" else sc.ndtri(cum)
        return {"Intercept": np.maximum.accumulate(tau + np.arange(K - 1) * 1e-3)}

    def bind(self, col: pd.Series, column: str) -> "Cumulative":
        """The family with the response's ordered categories.

        An ordered categorical keeps its order; a plain numeric column is
        ordered by value (a warning states the order); an unordered
        categorical uses its categories' order (stated too); a column of
        strings without an order is refused.
        """
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels = tuple(str(c) for c in col.cat.categories)
            if not col.cat.ordered:
                warnings.warn(
                    f"the cumulative response {column!r} is an unordered categorical; its categories' "
                    f"order is used: {' < '.join(levels)}", UserWarning, stacklevel=4)
            return replace(self, levels=levels)
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            vals = np.unique(col.dropna().to_numpy(dtype=float))
            bad = vals != np.round(vals)
            labels = tuple(f"{v:g}" for v in vals)
            warnings.warn(
                f"the cumulative response {column!r} is numeric; its order is {' < '.join(labels)}"
                + (" (values that are not whole numbers taken as categories)" if bad.any() else ""),
                UserWarning, stacklevel=4)
            return replace(self, levels=labels)
        raise FamilyError(
            f"the cumulative response {column!r} holds strings without an order (dtype {col.dtype}); give an "
            "ordered categorical, e.g. pd.Categorical(values, categories=[...], ordered=True)")

    def prepare_response(self, col: pd.Series, column: str) -> np.ndarray:
        if not self.levels:
            return self.bind(col, column).prepare_response(col, column)
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            return np.where(codes < 0, np.nan, codes + 1.0)
        vals = col.to_numpy(dtype=float)
        lookup = {lab: i + 1.0 for i, lab in enumerate(self.levels)}
        return np.array([np.nan if np.isnan(v) else lookup[f"{v:g}"] for v in vals])

    def check_response(self, y, column, index):
        K = len(self.levels)
        if K < 2:
            raise FamilyError(f"the cumulative response {column!r} needs at least two categories, not {K}")
        bad_rows((y < 1) | (y > K) | (y != np.round(y)),
                 f"the cumulative response {column!r} is not one of its {K} categories", np.asarray(index))
        seen = set(np.unique(y).astype(int))
        missing = [lab for i, lab in enumerate(self.levels) if i + 1 not in seen]
        if missing:
            raise FamilyError(
                f"the cumulative response {column!r} never takes the categor{'y' if len(missing) == 1 else 'ies'} "
                f"{missing} (of {list(self.levels)}): its thresholds are not identified; drop the unused "
                "categories (e.g. col.cat.remove_unused_categories())")

    def dpar_series(self, dp):
        tau = np.asarray(dp["Intercept"], dtype=float)
        return pd.Series(tau, index=[f"Intercept[{i + 1}]" for i in range(len(tau))], name="Estimate")


cumulative = Cumulative()
