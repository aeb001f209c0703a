"""Exact REML and ML fits of linear mixed models, as lme4's ``lmer`` computes them.

(The module is ``lmer`` so that it is not shadowed by the function :func:`bayesmer.reml`.)

lme4's ``lFormula -> mkLmerDevfun -> optimizeLmer -> mkMerMod`` here is
:func:`bayesmer.build_design` -> :class:`bayesmer.engine.profiled.Profiled`
(the profiled criterion and its exact gradient on the engine's blocked
factorisation of sufficient statistics) -> :func:`bayesmer.engine.optimize.optimize`
(one driver, tolerances in :class:`~bayesmer.engine.optimize.OptSettings`) ->
:class:`RemlFit` (lme4's estimates and tables).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._threads import one_blas_thread
from .design import Design, nonfinite_advice
from .sources import build_design
from .errors import FitError
from .engine.optimize import OptSettings, OptSummary, optimize
from .engine.profiled import Profiled, estimates
from .engine.theta import theta_lower
from .formula import Formula
from .settings import check as check_setting
from .protocol import CallableDict, CallableFrame, CallableSeries, varcorr_table, variance_shares

__all__ = ["RemlFit", "reml", "fit_reml", "satterthwaite", "confint", "bootstrap", "anova"]

_SINGULAR_MSG = "boundary (singular) fit: see help('isSingular')"


@dataclass(frozen=True, eq=False)
class RemlFit:
    """A linear mixed model fitted by REML or ML, with lme4's estimates.

    Attributes
    ----------
    design : Design
    method : {"REML", "ML"}
    fixef, se : Series
        Fixed effects and their standard errors, indexed by the design's names.
    vcov : DataFrame
        Covariance of the fixed effects.
    sigma : float
        Residual standard deviation.
    varcorr : DataFrame
        Columns ``group, kind, term1, term2, value``: per term its SDs
        (``kind="sd"``) and correlations (``kind="corr"``), then ``Residual``.
    theta : ndarray
        lme4's θ: per term the column-major lower triangle of its relative
        covariance factor.
    objective : float
        REML criterion or deviance (-2 log-likelihood scale), as lme4.
    loglik, aic, bic : float
    ranef, ranef_sd : dict of str to DataFrame
        Per term, levels x columns: conditional modes and conditional SDs.
    singular : bool
        lme4's ``isSingular``: a diagonal element of θ below 1e-4.
    converged : bool
    optimizer_message : str
    n_evaluations : int
    optsum : OptSummary
        What the optimizer did, with its settings (MixedModels.jl's ``optsum``).
    nobs : int
    ngroups : dict of str to int

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> r = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    >>> round(r.sigma, 2), r.singular
    (25.59, False)
    """

    design: Design
    method: str
    fixef: pd.Series
    se: pd.Series
    sigma: float
    theta: np.ndarray
    objective: float
    loglik: float
    aic: float
    bic: float
    singular: bool
    converged: bool
    optimizer_message: str
    n_evaluations: int
    nobs: int
    ngroups: dict
    optsum: OptSummary | None = field(repr=False, default=None)
    _covs: dict = field(repr=False, default_factory=dict)
    # The arrays behind the tables built on first access (see below): pandas
    # construction costs more than a whole small fit.
    _vcov: np.ndarray = field(repr=False, default=None)
    _modes: tuple = field(repr=False, default=())
    _cond_sds: tuple = field(repr=False, default=())

    def __post_init__(self):
        # fixef() is the protocol method shared with BayesFit; the callable Series
        # keeps fit.fixef[...] working for callers not yet moved to the method form
        object.__setattr__(self, "fixef", CallableSeries(self.fixef))

    # Frozen dataclass without __slots__: cached_property stores in __dict__.
    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects."""
        names = self.fixef.index
        return pd.DataFrame(self._vcov, index=names, columns=names.copy())

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Per term its SDs and correlations, then ``Residual`` (see the class).

        ``fit.varcorr()`` (the protocol shared with BayesFit) and ``fit.varcorr`` give the same table.
        """
        sds = {t.name: self.sd(t.name) for t in self.design.terms}
        corrs = {t.name: self.corr(t.name)[np.triu_indices(t.k, 1)] for t in self.design.terms if t.k > 1}
        return CallableFrame(varcorr_table(self.design, sds, corrs, self.sigma))

    @functools.cached_property
    def ranef(self) -> dict:
        """Per term, levels x columns: the conditional modes (``fit.ranef()`` gives the same)."""
        return CallableDict(self._per_level(self._modes))

    def varcorr_se(self) -> pd.DataFrame:
        """Asymptotic standard errors of the SDs, correlations and sigma, in :meth:`varcorr`'s layout.

        See :meth:`_varcorr_se` (computed once: every summary of the Bayesian fit shows it).
        """
        return self._varcorr_se.copy()

    # the information needs dense n x n algebra: above this many rows the SEs are NaN
    _se_max_rows = 2000

    @functools.cached_property
    def _varcorr_se(self) -> pd.DataFrame:
        """Asymptotic standard errors of the SDs, correlations and sigma, in :meth:`varcorr`'s layout.

        From the expected information of the variance components (Harville
        1977): ``I_ij = tr(P V_i P V_j) / 2`` with ``P`` REML's projection
        (``V^-1`` under ML), then the delta method to SDs and correlations.
        lme4 reports none (it prefers profile intervals); these fill the
        ``reml_se`` column beside the posterior. Dense n x n algebra: NaN
        above ``_se_max_rows`` rows and for data not in memory, and on a singular fit, where the
        information is singular at the boundary.

        Returns
        -------
        DataFrame
            :meth:`varcorr`'s rows with a column ``se``.
        """
        d = self.design
        table = self.varcorr().copy()
        table["se"] = np.nan
        if d.n > self._se_max_rows or self.singular or getattr(d, "sums", None) is not None:
            return pd.DataFrame(table)
        n = d.n
        # per term, the columns a of Z spread over its levels: V_t = sum_ab Psi_ab A_a A_b'
        spread = []
        for t in d.terms:
            G = np.zeros((n, t.n_levels))
            G[np.arange(n), t.codes] = 1.0
            spread.append([G * t.Z[:, [a]] for a in range(t.k)])
        V = self.sigma**2 * np.eye(n)
        params = []  # (term index, a, b) with a >= b, then the residual variance
        for ti, (t, A) in enumerate(zip(d.terms, spread)):
            C = self._covs[t.name]
            for a in range(t.k):
                for b in range(a + 1):
                    params.append((ti, a, b))
                    V += C[a, b] * (A[a] @ A[b].T if a == b else A[a] @ A[b].T + A[b] @ A[a].T)
        Vinv = np.linalg.inv(V)
        P = Vinv
        if self.method == "REML" and d.p:
            VX = Vinv @ d.X
            P = Vinv - VX @ np.linalg.solve(d.X.T @ VX, VX.T)
        PdV = []
        for ti, a, b in params:
            A = spread[ti]
            M = (P @ A[a]) @ A[b].T
            PdV.append(M if a == b else M + (P @ A[b]) @ A[a].T)
        PdV.append(P)
        m = len(PdV)
        info = np.array([[0.5 * np.sum(PdV[i] * PdV[j].T) for j in range(m)] for i in range(m)])
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            return pd.DataFrame(table)
        # delta method: rows of J are d(sd or corr or sigma)/d(psi), in varcorr's row order
        index = {p: i for i, p in enumerate(params)}
        rows = []
        for ti, t in enumerate(d.terms):
            C = self._covs[t.name]
            sd = np.sqrt(np.diag(C))
            for a in range(t.k):
                j = np.zeros(m)
                j[index[(ti, a, a)]] = 0.5 / sd[a]
                rows.append(j)
            for a, b in zip(*np.triu_indices(t.k, 1)):  # pairs (a < b) in varcorr's order
                j = np.zeros(m)
                r = C[b, a] / (sd[a] * sd[b])
                j[index[(ti, b, a)]] = 1.0 / (sd[a] * sd[b])
                j[index[(ti, a, a)]] = -0.5 * r / C[a, a]
                j[index[(ti, b, b)]] = -0.5 * r / C[b, b]
                rows.append(j)
        j = np.zeros(m)
        j[-1] = 0.5 / self.sigma
        rows.append(j)
        J = np.array(rows)
        table["se"] = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, cov, J), 0.0, None))
        return pd.DataFrame(table)

    def icc(self) -> pd.DataFrame:
        """Each variance component's share of an observation's variance (see :func:`bayesmer.protocol.variance_shares`)."""
        shares = variance_shares(self.design, self._covs, self.sigma)
        return pd.DataFrame({"share": [float(v) for v in shares.values()]}, index=pd.Index(list(shares), name="component"))

    @functools.cached_property
    def ranef_sd(self) -> dict:
        """Per term, levels x columns: the conditional SDs."""
        return self._per_level(self._cond_sds)

    def _per_level(self, arrays) -> dict:
        return {
            t.name: pd.DataFrame(a, index=pd.Index(t.levels, name=t.name), columns=list(t.terms))
            for t, a in zip(self.design.terms, arrays)
        }

    def cov_matrices(self) -> dict[str, np.ndarray]:
        """Per term, the ``k x k`` covariance matrix of its random effects."""
        return {name: c.copy() for name, c in self._covs.items()}

    def sd(self, term_name: str) -> np.ndarray:
        """Standard deviations of a term's random effects."""
        return np.sqrt(np.diag(self._cov(term_name)))

    def corr(self, term_name: str) -> np.ndarray:
        """Correlation matrix of a term's random effects (NaN where an SD is 0)."""
        c = self._cov(term_name)
        s = np.sqrt(np.diag(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = c / np.outer(s, s)
        np.fill_diagonal(r, 1.0)
        return r

    def _cov(self, term_name: str) -> np.ndarray:
        try:
            return self._covs[term_name]
        except KeyError:
            raise KeyError(f"no random-effect term {term_name!r}; the terms are {list(self._covs)}") from None

    def fitted(self) -> np.ndarray:
        """Conditional fitted values ``Xβ + Zb`` (data not in memory: computed one chunk of rows at a time)."""
        d = self.design
        if getattr(d, "sums", None) is not None:
            return np.concatenate([r.X @ self.fixef.to_numpy() + sum(
                np.einsum("nk,nk->n", Z, self.ranef[t.name].to_numpy()[c]) for t, Z, c in zip(d.terms, r.term_Z, r.term_codes))
                + (0.0 if r.offset is None else r.offset) for r in _chunks(d)])
        out = d.X @ self.fixef.to_numpy()
        for t in d.terms:
            b = self.ranef[t.name].to_numpy()
            out = out + np.einsum("nk,nk->n", t.Z, b[t.codes])
        return out

    def residuals(self) -> np.ndarray:
        """Conditional residuals ``y - Xβ - Zb``."""
        if getattr(self.design, "sums", None) is not None:
            return np.concatenate([r.y for r in _chunks(self.design)]) - self.fitted()
        return self.design.y - self.fitted()

    def summary(self) -> str:
        """The fit laid out as lme4's ``summary(lmer(...))``."""
        d = self.design
        lines = []
        if self.method == "REML":
            lines.append("Linear mixed model fit by REML ['lmerMod']")
        else:
            lines.append("Linear mixed model fit by maximum likelihood  ['lmerMod']")
        lines.append(f"Formula: {d.formula}")
        lines.append("")
        if self.method == "REML":
            lines.append(f"REML criterion at convergence: {self.objective:.1f}")
        else:
            hdr = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
            df_resid = self.nobs - len(self.fixef) - len(self.theta) - 1
            vals = [f"{self.aic:.1f}", f"{self.bic:.1f}", f"{self.loglik:.1f}", f"{self.objective:.1f}", str(df_resid)]
            w = max(len(v) for v in hdr + vals) + 1
            lines.append("".join(h.rjust(w) for h in hdr))
            lines.append("".join(v.rjust(w) for v in vals))
        lines.append("")
        if getattr(d, "sums", None) is None:
            res = self.residuals() / self.sigma
            q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1])
            lines.append("Scaled residuals: ")
            qs = [f"{v:.4f}" for v in q]
            w = max(len(s) for s in qs) + 1
            lines.append("".join(h.rjust(w) for h in ["Min", "1Q", "Median", "3Q", "Max"]))
            lines.append("".join(s.rjust(w) for s in qs))
        else:  # quantiles need every residual at once: fit.residuals() computes them on request
            lines.append(f"Scaled residuals: not computed (data not in memory, {d.n:,} rows)")
        lines.append("")
        lines.append("Random effects:")
        rows = []
        for t in d.terms:
            cov = self._covs[t.name]
            sds = np.sqrt(np.diag(cov))
            cr = self.corr(t.name)
            for j, nm in enumerate(t.terms):
                corr = " ".join(f"{cr[j, i]:5.2f}" for i in range(j)) if j else ""
                rows.append((t.name if j == 0 else "", nm, f"{cov[j, j]:.4g}", f"{sds[j]:.4g}", corr))
        rows.append(("Residual", "", f"{self.sigma**2:.4g}", f"{self.sigma:.4g}", ""))
        has_corr = any(r[4] for r in rows)
        head = ("Groups", "Name", "Variance", "Std.Dev.") + (("Corr",) if has_corr else ())
        table = [head] + [r if has_corr else r[:4] for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        for r in table:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3])]
            if has_corr:
                cells.append(r[4].ljust(widths[4]))
            lines.append((" " + " ".join(cells)).rstrip())
        groups = ", ".join(f"{g}, {v}" for g, v in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        lines.append("")
        lines.append("Fixed effects:")
        fe = pd.DataFrame(
            {"Estimate": self.fixef, "Std. Error": self.se, "t value": self.fixef / self.se}
        )
        lines.append(fe.to_string(float_format=lambda v: f"{v:.4g}"))
        if self.singular:
            lines.append(_SINGULAR_MSG)
        if not self.converged:
            lines.append(f"optimizer did not converge: {self.optimizer_message}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def satterthwaite(self, L=None) -> pd.DataFrame:
        """lmerTest's t tests of the fixed effects with Satterthwaite's df; see :func:`bayesmer.lmer.satterthwaite`.

        Parameters
        ----------
        L : array-like, optional
            A contrast vector (p,) or matrix (m, p) over the fixed effects;
            by default each fixed effect in turn.

        Returns
        -------
        DataFrame
            ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)``,
            as lmerTest's ``summary()`` prints them; one row per fixed effect
            (or ``L1``, ``L2``, ... per contrast).

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> r = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
        >>> r.satterthwaite()["df"].round(1).tolist()       # lmerTest: 17, 17
        [17.0, 17.0]
        >>> r.satterthwaite(L=[0, 1]).index.tolist()
        ['L1']
        """
        return satterthwaite(self, L)

    def confint(self, level: float = 0.95, method: str = "Wald", parm=None, old_names: bool = True,
                nsim: int = 500, seed=None) -> pd.DataFrame:
        """Confidence intervals, as lme4's ``confint()``; see :func:`bayesmer.lmer.confint`.

        Parameters
        ----------
        level : float
            The confidence level.
        method : {"Wald", "profile", "boot"}
            ``"Wald"``: estimate -/+ z times the SE (NaN for the variance
            parameters, as lme4); ``"profile"``: lme4's likelihood-profile
            intervals, on the ML fit (a REML fit is refitted by ML, as lme4
            does); ``"boot"``: percentile intervals of a parametric bootstrap.
        parm : None, ``"theta_"``, ``"beta_"`` or list of str
            All rows, the variance parameters, the fixed effects, or those named.
        old_names : bool
            ``.sig01``, ..., ``.sigma`` (lme4's ``oldNames = TRUE``) or
            ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``.
        nsim : int
            ``"boot"``: the number of simulations.
        seed : int or numpy.random.Generator, optional
            ``"boot"``: the simulations' seed.

        Returns
        -------
        DataFrame
            lme4's rows (the variance parameters on the SD/correlation scale,
            then the fixed effects); columns ``"2.5 %"`` and ``"97.5 %"`` for level 0.95.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> r = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
        >>> r.confint().round(2).loc["Days"].tolist()
        [7.44, 13.5]
        >>> r.confint(method="profile", parm="beta_").round(2).loc["Days"].tolist()   # lme4: 7.36, 13.58
        [7.36, 13.58]
        >>> r.confint(method="profile", parm=["sd_Days|Subject"], old_names=False).round(2)   # lme4: 3.80, 8.75
                         2.5 %  97.5 %
        sd_Days|Subject    3.8    8.75
        """
        return confint(self, level, method, parm, old_names, nsim, seed)


def _chunks(design):
    from .sources import iter_design_chunks  # data not in memory only

    return iter_design_chunks(design)


def fit_reml(design: Design, method: str = "REML", settings: OptSettings = OptSettings()) -> RemlFit:
    """Fit a linear mixed model to a design by REML or ML, as lme4 does.

    Parameters
    ----------
    design : Design
        From :func:`bayesmer.build_design`.
    method : {"REML", "ML"}
    settings : OptSettings
        The optimizer's tolerances; the fit keeps what it did as ``fit.optsum``.

    Returns
    -------
    RemlFit

    Raises
    ------
    FitError
        When the criterion is not finite at the optimum (lme4 stops with an
        error there too), naming columns of huge magnitude to rescale.

    Warns
    -----
    UserWarning
        On a singular (boundary) fit and when the optimiser did not converge.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> d = bayesmer.build_design("Reaction ~ Days + (Days | Subject)", sleep)
    >>> round(bayesmer.fit_reml(d, method="ML").objective, 2)     # lme4: 1751.94
    1751.94
    """
    method = check_setting("method", method)
    n, p = design.n, design.p
    if method == "REML" and n <= p:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")
    prob = Profiled.from_design(design, reml=method == "REML")
    with one_blas_thread():
        opt = optimize(prob, design, settings)
        if not np.isfinite(opt.fval):
            # lme4 stops with an error here; a fit at θ's start with an infinite criterion is no fit
            raise FitError(
                f"the {method} criterion is {opt.fval} at θ = {np.round(opt.theta, 6).tolist()}: the model "
                f"cannot be fitted as the data stand; {nonfinite_advice(design)}"
            )
        est = estimates(prob, opt.theta)
    theta, fval, converged, message = opt.theta, opt.fval, opt.converged, opt.message
    beta, vcov, sigma, bs, cvs, Ts = est.beta, est.vcov, est.sigma, est.modes, est.cond_cov, est.Ts
    names = pd.Index(design.fixed_names)
    se = np.sqrt(np.diag(vcov))
    covs = {t.name: sigma**2 * (T @ T.T) for t, T in zip(design.terms, Ts)}
    cond_sds = tuple(np.sqrt(np.clip(np.diagonal(cv, axis1=1, axis2=2), 0.0, None)) for cv in cvs)
    df = p + len(theta) + 1
    loglik = -fval / 2.0
    lower = theta_lower(prob.ks)
    singular = bool(np.any(theta[lower == 0] < settings.singular_tol))
    ngroups: dict[str, int] = {}
    for t in design.terms:
        ngroups.setdefault(t.group, t.n_levels)
    fit = RemlFit(
        design=design,
        method=method,
        fixef=pd.Series(beta, index=names, name="Estimate"),
        se=pd.Series(se, index=names.copy(), name="Std. Error"),
        sigma=float(sigma),
        theta=theta,
        objective=float(fval),
        loglik=float(loglik),
        aic=float(fval + 2 * df),
        bic=float(fval + math.log(n) * df),
        singular=singular,
        converged=converged,
        optimizer_message=message,
        n_evaluations=opt.n_evaluations,
        optsum=opt,
        nobs=n,
        ngroups=ngroups,
        _covs=covs,
        _vcov=vcov,
        _modes=tuple(bs),
        _cond_sds=cond_sds,
    )
    if singular:
        warnings.warn(_SINGULAR_MSG, UserWarning, stacklevel=2)
    if not converged:
        warnings.warn(f"the optimizer did not converge: {message}", UserWarning, stacklevel=2)
    return fit


def reml(formula: str | Formula, data: pd.DataFrame, method: str = "REML") -> RemlFit:
    """Fit ``formula`` to ``data`` by REML (default) or ML, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame, or data not in memory
        A path or glob of Parquet files, a Dask, Polars or Spark DataFrame, a
        Polars LazyFrame or a DuckDB relation: the statistics are computed
        where the data live (:mod:`bayesmer.sources`).
    method : {"REML", "ML"}

    Returns
    -------
    RemlFit

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> r = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    >>> r.fixef().round(2).tolist()               # lme4: 251.41, 10.47
    [251.41, 10.47]
    >>> print(r)                                  # lme4's printout  # doctest: +SKIP
    """
    return fit_reml(build_design(formula, data), method=check_setting("method", method))


# ---- inference on the fixed effects: lmerTest's Satterthwaite df, lme4's anova() and Wald intervals ----
# the dense n x n algebra below is for data sets of moderate size
_DENSE_MAX_ROWS = 5000


def _dense_model(design: Design):
    """Per term (Z, same-level mask), y (offset removed) and X, for the dense covariance V(theta, sigma)."""
    if getattr(design, "sums", None) is not None or design.n > _DENSE_MAX_ROWS:
        raise ValueError(f"Satterthwaite's df need the {design.n:,} rows in memory and at most "
                         f"{_DENSE_MAX_ROWS:,} of them (dense n x n algebra)")
    parts = [(t.Z, t.codes[:, None] == t.codes[None, :]) for t in design.terms]
    y = design.y - (design.offset if design.offset is not None else 0.0)
    return parts, y, design.X


def _vinv_parts(parts, ks, n, varpar):
    """Cholesky factor of V = sigma^2 (I + sum_t (Z_t T T' Z_t') o same_t) and sigma."""
    from .engine.theta import theta_to_T

    theta, sigma = varpar[:-1], varpar[-1]
    V = np.eye(n)
    for (Z, same), T in zip(parts, theta_to_T(theta, ks)):
        ZT = Z @ T
        V += (ZT @ ZT.T) * same
    return np.linalg.cholesky(sigma**2 * V)


def _deviance_vp(model, ks, reml: bool, varpar) -> float:
    """-2 log-likelihood (REML's when ``reml``) at varpar = (theta, sigma), beta profiled (lmerTest's devfun_vp)."""
    parts, y, X = model
    C = _vinv_parts(parts, ks, len(y), varpar)
    Xs = np.linalg.solve(C, X)
    ys = np.linalg.solve(C, y)
    A = Xs.T @ Xs
    beta = np.linalg.solve(A, Xs.T @ ys)
    r = ys - Xs @ beta
    dev = 2 * np.sum(np.log(np.diag(C))) + r @ r + len(y) * math.log(2 * math.pi)
    if reml:
        dev += np.linalg.slogdet(A)[1] - X.shape[1] * math.log(2 * math.pi)
    return float(dev)


def _vcov_vp(model, ks, varpar) -> np.ndarray:
    parts, y, X = model
    Xs = np.linalg.solve(_vinv_parts(parts, ks, len(y), varpar), X)
    return np.linalg.inv(Xs.T @ Xs)


def _richardson(f, x, i, j=None, h=None):
    """Second derivative d2f/dxi dxj (j None: first derivative df/dxi) by central differences, Richardson-extrapolated."""
    def once(s):
        ei = np.zeros_like(x)
        ei[i] = s[i]
        if j is None:
            return (f(x + ei) - f(x - ei)) / (2 * s[i])
        ej = np.zeros_like(x)
        ej[j] = s[j]
        return (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * s[i] * s[j])
    h = 1e-3 * np.abs(x) + 1e-4 if h is None else h
    d1, d2, d3 = once(h), once(h / 2), once(h / 4)
    r1, r2 = (4 * d2 - d1) / 3, (4 * d3 - d2) / 3
    return (16 * r2 - r1) / 15


def satterthwaite(fit: RemlFit, L=None) -> pd.DataFrame:
    """t tests of the fixed effects (or contrasts) with Satterthwaite's df, as lmerTest computes them.

    The variance parameters are ``varpar = (theta, sigma)``; their
    covariance ``A = 2 H^-1`` from the Hessian ``H`` of the deviance (REML's
    for a REML fit) at the estimates, and the gradient ``g`` of
    ``L' Vbeta(varpar) L`` give ``df = 2 (L' Vbeta L)^2 / (g' A g)``
    (lmerTest's ``contest1D``); both by Richardson-extrapolated central
    differences where lmerTest uses numDeriv.

    Parameters
    ----------
    fit : RemlFit
    L : array-like, optional
        A contrast vector (p,) or matrix (m, p); by default each fixed effect.

    Returns
    -------
    DataFrame
        ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)``, as
        lmerTest's ``summary()`` prints them.

    Examples
    --------
    >>> import bayesmer
    >>> from bayesmer.lmer import satterthwaite
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> satterthwaite(bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)).columns.tolist()
    ['Estimate', 'Std. Error', 'df', 't value', 'Pr(>|t|)']
    """
    from scipy import stats as st

    d = fit.design
    names = list(fit.fixef.index)
    if L is None:
        Lm, index = np.eye(len(names)), names
    else:
        Lm = np.atleast_2d(np.asarray(L, dtype=float))
        if Lm.shape[1] != len(names):
            raise ValueError(f"L needs {len(names)} columns (the fixed effects {', '.join(names)}); got {Lm.shape[1]}")
        index = [f"L{i + 1}" for i in range(len(Lm))]
    model = _dense_model(d)
    ks = [t.k for t in d.terms]
    vp = np.r_[fit.theta, fit.sigma]
    dev = functools.partial(_deviance_vp, model, ks, fit.method == "REML")
    m = len(vp)
    H = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            H[i, j] = H[j, i] = _richardson(dev, vp, i, j)
    A = 2 * np.linalg.inv(H)
    vc = functools.partial(_vcov_vp, model, ks)
    jac = [_richardson(vc, vp, i) for i in range(m)]  # each (p, p)
    V = np.asarray(fit.vcov, dtype=float)
    b = fit.fixef.to_numpy()
    rows = []
    for l in Lm:
        var = float(l @ V @ l)
        g = np.array([l @ J @ l for J in jac])
        df = 2 * var**2 / float(g @ A @ g)
        est = float(l @ b)
        t = est / math.sqrt(var)
        rows.append((est, math.sqrt(var), df, t, 2 * st.t.sf(abs(t), df)))
    return pd.DataFrame(rows, index=index, columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])


def confint(fit, level: float = 0.95, method: str = "Wald", parm=None, old_names: bool = True,
            nsim: int = 500, seed=None) -> pd.DataFrame:
    """Confidence intervals, as lme4's ``confint(fit, method = "Wald" | "profile" | "boot")``.

    The rows are lme4's: the variance parameters on the SD/correlation scale
    (per random-effect term the column-major lower triangle of its SD and
    correlation matrix, ``.sig01``, ``.sig02``, ...; then ``.sigma``), then
    the fixed effects.

    ``"Wald"``: ``est -/+ qnorm((1 + level) / 2) * se`` for the fixed
    effects, NaN for the variance parameters (as lme4); a :class:`RemlFit`
    or a :class:`~bayesmer.glmer_fit.GlmerFit`. ``"profile"`` (a linear
    mixed model): as lme4's ``profile()``, on the ML fit (a REML fit is
    refitted by ML, as lme4 does), each parameter fixed in turn on a grid
    and the others re-optimised; ``zeta = sign(x - x_ml) sqrt(dev(x) -
    dev_ml)`` and the interval ends where ``zeta`` reaches ``-/+ qnorm((1 +
    level) / 2)``, found by root finding (lme4 reads them off a spline
    through its profile; the two agree to about 1e-5). A side that never
    reaches the cut-off ends at the parameter's bound (an SD estimated at 0
    has lower end 0, as in lme4). For the variance parameters the deviance
    has beta profiled out; for a fixed effect the others are refitted with
    its column moved into an offset. With a term of three or more columns
    the others are re-optimised over valid covariance matrices only (over
    theta, the parameter held by a constraint): lme4 maps correlations
    that make no valid matrix to another matrix, and its correlation rows
    there can differ (it warns of non-monotonic profiles). ``"boot"`` (a linear mixed model):
    lme4's percentile intervals from a parametric bootstrap of ``nsim``
    refits (:func:`bootstrap`; boot's ``norm.inter`` reads the quantiles).

    Parameters
    ----------
    fit : RemlFit or GlmerFit
    level : float
        The confidence level.
    method : {"Wald", "profile", "boot"}
        ``"profile"`` and ``"boot"`` for a :class:`RemlFit` only.
    parm : None, ``"theta_"``, ``"beta_"`` or list of str
        The rows: all (default), the variance parameters, the fixed effects,
        or those named (lme4's old or new names of the variance parameters,
        the fixed effects' names). Only these are profiled.
    old_names : bool
        lme4's ``oldNames``: ``.sig01``, ..., ``.sigma`` (default) or
        ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``.
    nsim : int
        ``"boot"``: the number of simulations (lme4's default 500).
    seed : int or numpy.random.Generator, optional
        ``"boot"``: the simulations' seed.

    Returns
    -------
    DataFrame
        One row per parameter, columns ``"2.5 %"`` and ``"97.5 %"`` (for level 0.95).

    Raises
    ------
    ValueError
        An unknown method, a level outside (0, 1) or an unknown name in ``parm``.

    Examples
    --------
    >>> import bayesmer
    >>> from bayesmer.lmer import confint
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> r = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    >>> confint(r, level=0.9).index.tolist()
    ['.sig01', '.sig02', '.sig03', '.sigma', '(Intercept)', 'Days']
    >>> confint(r, method="profile", parm=[".sigma"]).round(2).loc[".sigma"].tolist()   # lme4: 22.90, 28.86
    [22.9, 28.86]
    """
    from scipy import stats as st

    if method not in ("Wald", "profile", "boot"):
        raise ValueError(f"confint: method must be 'Wald', 'profile' or 'boot', not {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    fe = fit.fixef() if callable(fit.fixef) else fit.fixef
    is_lmm = isinstance(fit, RemlFit)
    old = _var_layout(fit.design, use_sigma=is_lmm, old_names=True)
    new = _var_layout(fit.design, use_sigma=is_lmm, old_names=False)
    shown = old if old_names else new
    names = shown + list(fe.index)
    if parm is None:
        rows = list(range(len(names)))
    elif isinstance(parm, str) and parm in ("theta_", "beta_"):
        rows = list(range(len(old))) if parm == "theta_" else list(range(len(old), len(names)))
    else:
        parm = [parm] if isinstance(parm, str) else list(parm)
        lookup = {n: i for i, n in enumerate(old + list(fe.index))}
        lookup.update({n: i for i, n in enumerate(new)})
        bad = [p for p in parm if p not in lookup]
        if bad:
            raise ValueError(f"confint: unknown parm {bad}; the parameters are {old + new[:-1] + list(fe.index)}")
        rows = [lookup[p] for p in parm]
    z = st.norm.ppf((1 + level) / 2)
    lo, hi = f"{100 * (1 - level) / 2:g} %", f"{100 * (1 + level) / 2:g} %"
    nv = len(old)
    if method == "Wald":
        se = fit.se.to_numpy()
        b = fe.to_numpy()
        ends = [(np.nan, np.nan) if i < nv else (b[i - nv] - z * se[i - nv], b[i - nv] + z * se[i - nv]) for i in rows]
        return pd.DataFrame(ends, index=[names[i] for i in rows], columns=[lo, hi])
    if not is_lmm:
        raise NotImplementedError(f"confint(method={method!r}) is implemented for linear mixed models (RemlFit)")
    if method == "boot":
        t = bootstrap(fit, nsim=nsim, seed=seed).to_numpy()
        a = (1 - level) / 2
        ends = [(_norm_inter(t[:, i], a), _norm_inter(t[:, i], 1 - a)) for i in rows]
        return pd.DataFrame(ends, index=[names[i] for i in rows], columns=[lo, hi])
    if getattr(fit.design, "sums", None) is not None:
        raise ValueError("confint(method='profile') needs the rows in memory")
    if fit.method == "ML":
        ml = fit
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a singular refit: the REML fit has said so
            ml = fit_reml(fit.design, method="ML")
    prof = _VarProfiler(ml) if any(i < nv for i in rows) else None
    with one_blas_thread():
        ends = [prof.interval(i, z) if i < nv else _profile_beta(ml, i - nv, z) for i in rows]
    return pd.DataFrame(ends, index=[names[i] for i in rows], columns=[lo, hi])


def _norm_inter(t: np.ndarray, alpha: float) -> float:
    """boot's ``norm.inter``: the ``(R + 1) alpha``-th order statistic, interpolated on the normal
    quantile scale between its neighbours (what ``boot.ci(type = "perc")`` reports)."""
    from scipy import stats as st

    t = np.sort(t[np.isfinite(t)])
    R = len(t)
    rk = (R + 1) * alpha
    k = int(math.trunc(rk))
    if k == rk:
        return float(t[k - 1])
    if k == 0:
        return float(t[0])
    if k >= R:
        return float(t[-1])
    q1, q2, q3 = st.norm.ppf(alpha), st.norm.ppf(k / (R + 1)), st.norm.ppf((k + 1) / (R + 1))
    return float(t[k - 1] + (q1 - q2) / (q3 - q2) * (t[k] - t[k - 1]))


def bootstrap(fit: RemlFit, nsim: int = 500, seed=None) -> pd.DataFrame:
    """lme4's parametric bootstrap (``bootMer(fit, FUN, nsim)``, ``use.u = FALSE``): the statistics of
    ``nsim`` refits to responses simulated from the fitted model.

    Each simulation draws new random effects from ``N(0, Sigma)`` per level
    and new residuals from ``N(0, sigma^2)`` around ``X beta`` (+ offset),
    and refits by the fit's own method (REML or ML), as lme4's ``refit``.

    Parameters
    ----------
    fit : RemlFit
    nsim : int
        The number of simulations.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    DataFrame
        One row per simulation; the columns are lme4's ``confint`` rows
        (``.sig01``, ..., ``.sigma``, then the fixed effects), the variance
        parameters on the SD/correlation scale.

    Examples
    --------
    >>> import bayesmer
    >>> from bayesmer.lmer import bootstrap
    >>> dye = bayesmer.datasets.load("dyestuff")
    >>> r = bayesmer.reml("Yield ~ 1 + (1 | Batch)", dye)
    >>> bootstrap(r, nsim=20, seed=1).shape
    (20, 3)
    """
    import dataclasses

    if not isinstance(fit, RemlFit):
        raise TypeError(f"bootstrap() takes a RemlFit, not {type(fit).__name__}")
    if getattr(fit.design, "sums", None) is not None:
        raise ValueError("the parametric bootstrap needs the rows in memory")
    if int(nsim) != nsim or nsim < 1:
        raise ValueError(f"nsim must be a positive whole number, got {nsim!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    d = fit.design
    ks = tuple(t.k for t in d.terms)
    mean = d.X @ fit.fixef.to_numpy() + (d.offset if d.offset is not None else 0.0)
    factors = [_safe_chol(fit._covs[t.name]) for t in d.terms]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular refits are part of the bootstrap distribution
        for _ in range(int(nsim)):
            y = mean + fit.sigma * rng.standard_normal(d.n)
            for t, L in zip(d.terms, factors):
                b = rng.standard_normal((t.n_levels, t.k)) @ L.T
                y = y + np.einsum("ik,ik->i", t.Z, b[t.codes])
            try:
                r = fit_reml(dataclasses.replace(d, y=y), method=fit.method)
            except (FitError, ValueError, np.linalg.LinAlgError):
                rows.append(np.full(len(fit.theta) + 1 + d.p, np.nan))
                continue
            rows.append(np.r_[_theta_to_sdcor(r.theta, ks, r.sigma), r.fixef.to_numpy()])
    return pd.DataFrame(rows, columns=_var_layout(d) + list(fit.fixef.index))


def _profile_beta(ml: RemlFit, j: int, z: float) -> tuple[float, float]:
    """Where the signed root of the ML deviance's rise, beta_j fixed and the rest re-fitted, is -/+ z."""
    import dataclasses

    from scipy import optimize as so

    d = ml.design
    keep = [c for c in range(d.p) if c != j]
    b0, step = float(ml.fixef.iloc[j]), 2.0 * float(ml.se.iloc[j])

    def zeta(b):
        # beta_j * x_j moved into the response: an ML fit of the others (what lme4's profile does with an offset)
        dj = dataclasses.replace(d, y=d.y - d.X[:, j] * b, X=d.X[:, keep],
                                 fixed_names=tuple(d.fixed_names[c] for c in keep))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dev = fit_reml(dj, method="ML").objective
        return math.copysign(math.sqrt(max(dev - ml.objective, 0.0)), b - b0)

    out = []
    for sgn in (-1.0, 1.0):
        far = b0 + sgn * step
        while (zeta(far) - sgn * z) * sgn < 0:
            far = b0 + 2 * (far - b0)
        out.append(so.brentq(lambda b: zeta(b) - sgn * z, min(b0, far), max(b0, far), xtol=1e-10))
    return out[0], out[1]


# ---- lme4's profile of the variance parameters: sd/cor scale, the ML deviance with beta profiled ----
def _var_layout(design: Design, use_sigma: bool = True, old_names: bool = True) -> list[str]:
    """The variance parameters' names in lme4's order: per term the column-major lower triangle of its
    SD/correlation matrix (``.sig01``, ... or ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``),
    then ``.sigma`` (``sigma``)."""
    from .engine.theta import tri_index

    names = []
    for t in design.terms:
        r, c = tri_index(t.k)
        for i, j in zip(r, c):
            names.append(f"sd_{t.terms[i]}|{t.group}" if i == j else f"cor_{t.terms[i]}.{t.terms[j]}|{t.group}")
    if use_sigma:
        names.append("sigma")
    if old_names:
        names = [f".sig{i + 1:02d}" for i in range(len(names) - use_sigma)] + ([".sigma"] if use_sigma else [])
    return names


def _safe_chol(S: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of a positive semi-definite S, a column of zeros where a pivot vanishes."""
    k = S.shape[0]
    L = np.zeros_like(S)
    for j in range(k):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-12 * max(S[j, j], 1e-300):
            continue
        L[j, j] = math.sqrt(d)
        L[j + 1:, j] = (S[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


def _sdcor_to_theta(x: np.ndarray, ks) -> np.ndarray:
    """lme4's ``Sv_to_Cv``: (sd/cor per term, sigma) -> theta."""
    from .engine.theta import tri_index

    sigma, pos, out = x[-1], 0, []
    for k in ks:
        r, c = tri_index(k)
        v = x[pos:pos + len(r)]
        pos += len(r)
        sd = np.zeros(k)
        R = np.eye(k)
        for (i, j), val in zip(zip(r, c), v):
            if i == j:
                sd[i] = val
            else:
                R[i, j] = R[j, i] = val
        out.append(_safe_chol(R * np.outer(sd, sd))[r, c] / sigma)
    return np.concatenate(out) if out else np.zeros(0)


def _theta_to_sdcor(theta: np.ndarray, ks, sigma: float) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: theta -> (sd/cor per term, sigma); the correlation of a zero SD is 0."""
    from .engine.theta import theta_to_T, tri_index

    out = []
    for k, T in zip(ks, theta_to_T(theta, ks)):
        S = sigma**2 * T @ T.T
        sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
        r, c = tri_index(k)
        for i, j in zip(r, c):
            out.append(sd[i] if i == j else (S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0))
    return np.array(out + [sigma])


def _ml_deviance_sdcor(prob: Profiled, ks, x: np.ndarray) -> float:
    """-2 log-likelihood at (sd/cor, sigma) with beta at its optimum: log|P| + r2(theta) / sigma^2 + n log(2 pi sigma^2)."""
    return _ml_deviance_theta(prob, _sdcor_to_theta(x, ks), x[-1])


def _ml_deviance_theta(prob: Profiled, theta: np.ndarray, sigma: float) -> float:
    """The same at (theta, sigma)."""
    if not sigma > 0:
        return np.inf
    fz = prob.factor(theta)
    if fz is None:
        return np.inf
    p, Pen = prob.p, fz.Pen
    r2 = float(Pen[p, p] - (Pen[p, :p] @ np.linalg.solve(Pen[:p, :p], Pen[:p, p]) if p else 0.0))
    return float(fz.logdet + r2 / sigma**2 + prob.n * math.log(2 * math.pi * sigma**2))


def _var_bounds(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """lme4's bounds on the sd/cor scale: SDs and sigma in [0, inf), correlations in [-1, 1]."""
    from .engine.theta import tri_index

    lo, hi = [], []
    for t in design.terms:
        r, c = tri_index(t.k)
        lo.extend(np.where(r == c, 0.0, -1.0))
        hi.extend(np.where(r == c, np.inf, 1.0))
    return np.array(lo + [0.0]), np.array(hi + [np.inf])


class _VarProfiler:
    """zeta of one variance parameter: the others re-optimised (L-BFGS-B on central differences),
    warm-started from the nearest point profiled so far."""

    def __init__(self, ml: RemlFit):
        from scipy import optimize as so

        self._so = so
        d = ml.design
        self.ks = tuple(t.k for t in d.terms)
        self.prob = Profiled.from_design(d, reml=False)
        self.x0 = _theta_to_sdcor(ml.theta, self.ks, ml.sigma)
        self.lo, self.hi = _var_bounds(d)
        self.dev = functools.partial(_ml_deviance_sdcor, self.prob, self.ks)
        self.base = self.dev(self.x0)
        # the scale of each parameter for the difference steps
        self.scale = np.where(self.hi == 1.0, 0.1, np.maximum(np.abs(self.x0), 1e-2 * self.x0[-1]))
        # with three or more columns in a term, correlations each in [-1, 1] need not make a valid
        # (positive semi-definite) matrix: the search then runs over theta, always valid
        self.in_theta = any(k >= 3 for k in self.ks)
        th = _sdcor_to_theta(self.x0, self.ks)
        self.zscale = np.r_[np.maximum(np.abs(th), 0.1 * max(np.abs(th).max(), 1e-3)), self.x0[-1]]

    def _inner_theta(self, w: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """The others re-optimised over (theta, sigma) with the parameter held at v as an equality
        constraint (SLSQP on central differences)."""
        from .engine.theta import theta_lower

        m = len(self.x0) - 1
        th0 = _sdcor_to_theta(start, self.ks)
        z0 = np.r_[th0, start[-1]] / self.zscale
        lower = np.r_[theta_lower(self.ks), 1e-8 * self.x0[-1]] / self.zscale

        def split(z):
            zz = z * self.zscale
            return zz[:m], zz[m]

        def f(z):
            th, sig = split(z)
            return _ml_deviance_theta(self.prob, th, sig)

        def con(z):
            th, sig = split(z)
            return (_theta_to_sdcor(th, self.ks, sig)[w] - v) / self.scale[w]

        def central(fun):
            def jac(z):
                g = np.empty_like(z)
                for i in range(len(z)):
                    up, dn = z.copy(), z.copy()
                    up[i] += 1e-6
                    dn[i] = max(z[i] - 1e-6, lower[i])
                    g[i] = (fun(up) - fun(dn)) / (up[i] - dn[i])
                return g
            return jac

        res = self._so.minimize(f, z0, jac=central(f), method="SLSQP",
                                bounds=[(lo, None) for lo in lower],
                                constraints=[{"type": "eq", "fun": con, "jac": central(con)}],
                                options={"ftol": 1e-12, "maxiter": 500})
        th, sig = split(res.x)
        x = _theta_to_sdcor(th, self.ks, sig)
        x[w] = v
        return float(res.fun), x

    def _inner(self, w: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        if self.in_theta:
            return self._inner_theta(w, v, start)
        keep = np.arange(len(self.x0)) != w
        lo, hi, sc = self.lo[keep], self.hi[keep], self.scale[keep]
        x = self.x0.copy()
        x[w] = v

        def f(y):
            x[keep] = y * sc
            return self.dev(x)

        def grad(y):
            g = np.empty_like(y)
            h = 1e-6
            for i in range(len(y)):
                up, dn = y.copy(), y.copy()
                up[i] = min(y[i] + h, hi[i] / sc[i])
                dn[i] = max(y[i] - h, lo[i] / sc[i])
                g[i] = (f(up) - f(dn)) / (up[i] - dn[i])
            return g

        if not keep.any():
            return self.dev(x), x
        y0 = np.clip(start[keep], lo, hi) / sc
        res = self._so.minimize(f, y0, jac=grad, method="L-BFGS-B", bounds=list(zip(lo / sc, hi / sc)),
                                options={"ftol": 1e-13, "gtol": 1e-7, "maxiter": 500})
        x[keep] = res.x * sc
        return float(res.fun), x.copy()

    def zeta(self, w: int, v: float, cache: dict) -> float:
        if v in cache:
            return cache[v][0]
        # start from the line through the two nearest points profiled (the previous point alone when one)
        near = sorted(cache, key=lambda u: abs(u - v))[:2]
        start = cache[near[0]][1]
        if len(near) == 2 and near[0] != near[1]:
            (a, xa), (b, xb) = (near[0], cache[near[0]][1]), (near[1], cache[near[1]][1])
            start = np.clip(xa + (xa - xb) * (v - a) / (a - b), self.lo, self.hi)
        dev, x = self._inner(w, v, start)
        z = math.copysign(math.sqrt(max(dev - self.base, 0.0)), v - self.x0[w])
        cache[v] = (z, x)
        return z

    def _end(self, w: int, target: float, cache: dict) -> float:
        """Where zeta = target on its side of the estimate, by safeguarded secant steps (zeta is close to
        linear in the parameter); the bound where zeta never gets there."""
        x0, sgn = self.x0[w], math.copysign(1.0, target)
        bound = self.lo[w] if sgn < 0 else self.hi[w]
        if x0 == bound:
            return bound
        if self.hi[w] == 1.0:  # a correlation
            step = 0.25 * abs(bound - x0)
        else:
            step = 0.5 * x0 if x0 > 0 else 0.5 * self.x0[-1]
        v, inside, outside = x0 + sgn * step, x0, None  # zeta short of the target at inside, past it at outside
        for _ in range(60):
            v = min(max(v, self.lo[w]), self.hi[w])
            z = self.zeta(w, v, cache)
            if abs(z - target) < 1e-5:
                return v
            if sgn * (z - target) < 0:
                if v == bound:
                    return bound
                inside = v
            else:
                outside = v
            side = sorted((u for u in cache if sgn * (u - x0) >= 0), key=lambda u: abs(cache[u][0] - target))[:2]
            (a, za), (b, zb) = [(u, cache[u][0]) for u in side]
            new = b + (target - zb) * (a - b) / (za - zb) if za != zb else np.nan
            if outside is None:
                # no bracket yet: extrapolate, at most four times as far out as the last point
                far = x0 + 4 * (inside - x0) if inside != x0 else x0 + 2 * sgn * step
                new = far if not np.isfinite(new) or sgn * (new - far) > 0 or sgn * (new - inside) <= 0 else new
            elif not np.isfinite(new) or not min(inside, outside) < new < max(inside, outside):
                new = 0.5 * (inside + outside)
            if outside is not None and abs(outside - inside) < 1e-12 * max(abs(x0), 1.0):
                return new
            v = new
        return v

    def interval(self, w: int, z: float) -> tuple[float, float]:
        """Where zeta = -z and +z; a side that never gets there ends at the parameter's bound (lme4's)."""
        cache: dict = {self.x0[w]: (0.0, self.x0.copy())}
        return self._end(w, -z, cache), self._end(w, z, cache)

def anova(*fits) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models, as lme4's ``anova(fit0, fit1, ...)``.

    REML fits are refitted by ML first (lme4's ``refit = TRUE``); fits are
    ordered by their number of parameters and each is tested against the one
    before it. Accepts :class:`RemlFit`, :class:`~bayesmer.glmer_fit.GlmerFit`
    and :class:`~bayesmer.results.BayesFit` (its ``reml``).

    Parameters
    ----------
    *fits : RemlFit, GlmerFit or BayesFit
        Two or more fits of the same rows, each nested in the next larger one.

    Returns
    -------
    DataFrame
        ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``, one row
        per model (``model1``, ``model2``, ... in the order given), sorted by
        ``npar``; the first row's test columns are NaN.

    Raises
    ------
    ValueError
        Fewer than two fits, or fits of different numbers of observations.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> small = bayesmer.reml("Reaction ~ Days + (1 | Subject)", sleep)
    >>> big = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    >>> table = bayesmer.anova(small, big)               # lme4: Chisq 42.14 on 2 df
    >>> table["npar"].tolist(), round(float(table["Chisq"].iloc[1]), 2)
    ([4, 6], 42.14)
    """
    from scipy import stats as st

    if len(fits) < 2:
        raise ValueError("anova() compares two or more fits")
    rows = []
    for i, f in enumerate(fits):
        f = getattr(f, "reml", f) if not isinstance(f, RemlFit) and hasattr(f, "reml") else f
        if isinstance(f, RemlFit):
            if f.method == "REML":
                f = fit_reml(f.design, method="ML")
            npar = len(f.fixef) + len(f.theta) + 1
        elif hasattr(f, "minus2loglik"):
            npar = len(f.fixef) + len(f.theta)
        else:
            raise TypeError(f"anova(): argument {i + 1} is a {type(f).__name__}, not a fit")
        rows.append((npar, f.aic, f.bic, f.loglik, -2 * f.loglik, f.nobs))
    if len({r[5] for r in rows}) > 1:
        raise ValueError(f"anova(): the fits have different numbers of observations {[r[5] for r in rows]}")
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    out = pd.DataFrame([rows[i][:5] for i in order], columns=["npar", "AIC", "BIC", "logLik", "deviance"],
                       index=[f"model{i + 1}" for i in order])
    chisq = np.r_[np.nan, np.maximum(-np.diff(out["deviance"].to_numpy()), 0.0)]
    dfs = np.r_[np.nan, np.diff(out["npar"].to_numpy())]
    out["Chisq"], out["Df"] = chisq, dfs
    with np.errstate(invalid="ignore"):
        out["Pr(>Chisq)"] = st.chi2.sf(chisq, dfs)
    return out
