"""What both fits answer: the estimates protocol of :class:`RemlFit` and :class:`BayesFit`.

``fixef()``, ``ranef()``, ``varcorr()`` and ``icc()`` are methods on both fit
classes, with the same layouts; the helpers here build the layouts so the two
cannot drift apart. Below every estimator in the import order (numpy and
pandas only).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from . import naming as nm
from .design import moments

__all__ = ["MixedFit", "Indexable", "varcorr_table", "variance_shares", "ranef_from_modes"]

VARCORR_COLUMNS = ["group", "kind", "term1", "term2", "value"]


@runtime_checkable
class MixedFit(Protocol):
    """A fitted linear mixed model, exact or Bayesian."""

    design: object

    def fixef(self) -> pd.Series: ...

    def ranef(self) -> dict[str, pd.DataFrame]: ...

    def varcorr(self) -> pd.DataFrame: ...

    def icc(self) -> pd.DataFrame: ...


class Indexable:
    """Mixin: calling the table returns it, so ``fit.fixef()`` and the older ``fit.fixef[...]`` agree.

    :class:`RemlFit` stored ``fixef``, ``ranef`` and ``varcorr`` as attributes
    before they became protocol methods; other modules and notebooks still
    index them. The values are these callable subclasses, so both spellings
    give the same table while callers move to the method form.
    """

    def __call__(self):
        return self


class CallableSeries(Indexable, pd.Series):
    @property
    def _constructor(self):
        return pd.Series


class CallableFrame(Indexable, pd.DataFrame):
    @property
    def _constructor(self):
        return pd.DataFrame


class CallableDict(Indexable, dict):
    pass


def varcorr_table(design, sds: dict, corrs: dict, sigma: float | None) -> pd.DataFrame:
    """lme4's tidy VarCorr layout: per term its SDs, then its correlations (pairs in brms's order), then ``Residual``.

    Parameters
    ----------
    sds : dict of term name -> (k,) array
    corrs : dict of term name -> (k(k-1)/2,) pair vector (terms with k > 1)
    sigma : float or None
        The residual SD; None for a family without one (no ``Residual`` row).
    """
    rows = []
    for t in design.terms:
        for j, col in enumerate(t.terms):
            rows.append((t.name, "sd", col, "", float(sds[t.name][j])))
        if t.k > 1:
            for (i, j), v in zip(nm.pairs(t.k), corrs[t.name]):
                rows.append((t.name, "corr", t.terms[i], t.terms[j], float(v)))
    if sigma is not None:
        rows.append(("Residual", "sd", "", "", float(sigma)))
    return pd.DataFrame(rows, columns=VARCORR_COLUMNS)


def varcorr_from_covs(owner, covs: dict, sigma: float | None) -> pd.DataFrame:
    """:func:`varcorr_table` from each term's ``k x k`` covariance matrix (a term whose SD is 0
    has NaN correlations): what a Laplace fit (glmer's, glmmTMB's) reports."""
    sds, corrs = {}, {}
    for t in owner.terms:
        c = covs[t.name]
        s = np.sqrt(np.diag(c))
        sds[t.name] = s
        with np.errstate(invalid="ignore", divide="ignore"):
            r = c / np.outer(s, s)
        corrs[t.name] = np.where(np.outer(s, s) > 0, r, np.nan)[np.triu_indices(t.k, 1)]
    return varcorr_table(owner, sds, corrs, sigma)


def ranef_from_modes(u: np.ndarray, Ts, terms) -> dict[str, pd.DataFrame]:
    """Per term, levels x columns: the conditional modes ``b = Λû`` of a Laplace fit.

    ``u`` is the spherical modes in the Laplace fits' order (term by term, each
    level's ``k`` values together: :class:`bayesmer.engine.blocks.RowBlocks`),
    ``Ts`` each term's covariance factor; once for glmer's and glmmTMB's fits.
    """
    out, pos = {}, 0
    for t, T in zip(terms, Ts):
        size = t.n_levels * t.k
        b = u[pos : pos + size].reshape(t.n_levels, t.k) @ T.T
        pos += size
        out[t.name] = pd.DataFrame(b, index=pd.Index(t.levels, name=t.name), columns=list(t.terms))
    return out


def variance_shares(design, covs: dict, sigma) -> dict[str, np.ndarray]:
    """Each component's share of the variance of one observation (Mixed Model 4a's ICC).

    A term adds ``z_i' Psi z_i`` to the variance of row ``i``; its variance is
    that averaged over the fitted rows (for a random intercept: ``sd^2``), the
    residual adds ``sigma^2``. Shares sum to one.

    Parameters
    ----------
    covs : dict of term name -> (..., k, k) covariance (draws first, or none)
    sigma : float or (...,) array

    Returns
    -------
    dict of component name -> (...,) array, the terms then ``"Residual"``
    """
    parts = {}
    mean_zz = None if getattr(design, "sums", None) is None else moments(design).zz  # data not in memory: from the sums
    for ti, t in enumerate(design.terms):
        C = np.asarray(covs[t.name], dtype=float)
        # mean over rows of z' C z = trace(C · mean(z z'))
        zz = t.Z.T @ t.Z / t.Z.shape[0] if mean_zz is None else mean_zz[ti]
        parts[t.name] = np.einsum("...kl,lk->...", C, zz)
    parts["Residual"] = np.asarray(sigma, dtype=float) ** 2
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}
