"""Maximum-likelihood fits of mixed models of the families of :mod:`bayesmer.families`, as glmmTMB computes them.

:func:`glmmtmb` fits by the Laplace approximation with the exact Hessian
(glmmTMB's; ordinal::clmm's for ``cumulative``), except ``lognormal``, whose
fit is exactly ``lmer(log(y), REML = FALSE)`` (REML on request) with the
log-likelihood on the y scale. These point fits are the starting points and
the frequentist references of the families' posteriors.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .design import Design, DesignError
from .errors import FitError
from .families import FamilyError, ResponseFamily, get_family
from .formula import Formula
from .glmm_design import Response, evaluate_column, frame_design, split_response
from .engine.laplace import LaplaceError, LaplaceModel, fit_laplace
from .engine.numdiff import fd_hessian
from .engine.profiled import Profiled
from .engine.theta import theta_to_T, tri_index
from .protocol import ranef_from_modes, varcorr_from_covs
from .rprint import coef_table, rformat
from ._threads import one_blas_thread

__all__ = ["FamilyFit", "failed_fit", "glmmtmb"]

#: how glmmTMB's summary names the families
_TMB_NAMES = {
    "negbinomial": "nbinom2", "zero_inflated_poisson": "poisson", "zero_inflated_negbinomial": "nbinom2",
    "student": "t", "Gamma": "Gamma", "beta": "beta", "lognormal": "lognormal (lmer of log y)",
    "cumulative": "cumulative (clmm)", "gaussian": "gaussian", "poisson": "poisson", "binomial": "binomial",
    "bernoulli": "binomial",
}


@dataclass(frozen=True, eq=False)
class FamilyFit:
    """A mixed model of a :mod:`bayesmer.families` family fitted by maximum likelihood (Laplace).

    Attributes
    ----------
    formula : str
    family : ResponseFamily
        (for ``cumulative``, bound to the response's ordered categories)
    fixef, se : Series
        Fixed effects of the mean (``vcov(fit)$cond``'s order) and their SEs.
    vcov : DataFrame
        Covariance of the fixed effects.
    varcorr : DataFrame
        Columns ``group, kind, term1, term2, value``: SDs and correlations of
        the random effects (``Residual``: lognormal's sigma, as lmer's).
    dpars, dpars_se : Series
        The family's parameters with brms's names (``shape``, ``zi``, ``phi``,
        ``sigma``, ``nu``, ``Intercept[k]``) on their natural scale, and their
        SEs from the same Hessian (lognormal's sigma: the delta method from
        the Hessian in log sigma, see :func:`_lognormal_sigma_se`).
    theta : ndarray
        Per term the column-major lower triangle of the random effects'
        covariance factor (Σ = TT'; for lognormal lme4's relative θ).
    loglik, aic, bic : float
        With every normalising constant (glmmTMB's, clmm's; lognormal's on the y scale).
    df_resid, nobs : int
    ngroups : dict
    converged : bool
    n_evaluations : int
        Laplace objective evaluations (each one mode by Newton's method).
    n_gradients : int
        Gradient evaluations (each one mode and a solve with H for every row).
    method : str
        ``"Laplace"``, ``"ML"`` or ``"REML"`` (lognormal).
    failed : str or None
        Why the Laplace fit failed, for the stand-in :func:`bayesmer.fit`
        samples from (see :func:`failed_fit`); None for a fit.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import bayesmer
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(20), 15)                 # 20 groups of 15 rows
    >>> x = rng.normal(size=g.size)
    >>> mu = np.exp(1.0 + 0.5 * x + rng.normal(0, 0.5, 20)[g])
    >>> y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))  # NB2: shape 2
    >>> counts = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    >>> fit = bayesmer.glmmtmb("y ~ x + (1 | g)", counts, family="negbinomial")
    >>> fit.fixef.round(2).tolist(), fit.dpars.index.tolist()
    ([0.96, 0.45], ['shape'])
    >>> print(fit)                                       # glmmTMB's summary()  # doctest: +SKIP
    """

    formula: str
    family: ResponseFamily
    design: Design
    terms: tuple
    y: np.ndarray
    fixef: pd.Series
    se: pd.Series
    dpars: pd.Series
    dpars_se: pd.Series
    theta: np.ndarray
    loglik: float
    aic: float
    bic: float
    df_resid: int
    nobs: int
    ngroups: dict
    converged: bool
    n_evaluations: int
    method: str = "Laplace"
    n_gradients: int = 0
    _vcov: np.ndarray = field(repr=False, default=None)
    _covs: dict = field(repr=False, default_factory=dict)
    _u: np.ndarray = field(repr=False, default=None)
    _eta: np.ndarray = field(repr=False, default=None)
    _sigma: float | None = field(repr=False, default=None)
    _ranef_lmer: dict | None = field(repr=False, default=None)
    failed: str | None = None
    #: the joint covariance of (fixed effects, dpars in :meth:`ResponseFamily.dpar_series` order), from the
    #: same inverse Hessian: the delta method of the after-fit tools reads it (thresholds move E[Y] too)
    _vcov_dpars: np.ndarray | None = field(repr=False, default=None)

    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        names = self.fixef.index
        return pd.DataFrame(self._vcov, index=names, columns=names.copy())

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        return varcorr_from_covs(self, self._covs, self._sigma)

    def cov_matrices(self) -> dict[str, np.ndarray]:
        """Per term the covariance matrix of its random effects."""
        return {k: v.copy() for k, v in self._covs.items()}

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (glmmTMB's summary's "deviance")."""
        return -2.0 * self.loglik

    def fitted(self) -> np.ndarray:
        """E[y] at the conditional modes (category 1..K's expectation for ``cumulative``)."""
        dp = {d.name: (np.asarray([self.dpars[f"{d.name}[{i + 1}]"] for i in range(self.family.dpar_size(d))])
                       if d.transform == "ordered" else self.dpars[d.name]) for d in self.family.dpars}
        return self.family.mean(self._eta, dp)

    def zi_logit(self) -> tuple[float, float]:
        """glmmTMB's ``fixef(fit)$zi`` and its SE: logit(zi), by the delta method from zi's SE."""
        zi, se = float(self.dpars["zi"]), float(self.dpars_se["zi"])
        return math.log(zi / (1 - zi)), se / (zi * (1 - zi))

    @functools.cached_property
    def ranef(self) -> dict:
        """Per term, levels x columns: the conditional modes ``b = Λû`` (lognormal: on the log scale)."""
        if self._u is None:
            return self._ranef_lmer
        return ranef_from_modes(self._u, theta_to_T(self.theta, [t.k for t in self.terms]), self.terms)

    def summary(self) -> str:
        """The fit laid out as glmmTMB's ``summary()`` (clmm's for ``cumulative``)."""
        fam = self.family
        lines = [f" Family: {_TMB_NAMES.get(fam.name, fam.name)}  ( {fam.link} )", f"Formula:          {self.formula}"]
        if self.failed is not None:
            lines.append(f"The Laplace fit failed ({self.failed}): the values below are a stand-in's start values")
        if fam.name.startswith("zero_inflated"):
            lines.append("Zero inflation:            ~1")
        lines.append("")
        hdr = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [f"{v:.1f}" for v in (self.aic, self.bic, self.loglik, self.deviance)] + [str(self.df_resid)]
        w = max(len(v) for v in hdr + vals) + 1
        lines.append("".join(h.rjust(w) + " " for h in hdr))
        lines.append("".join(v.rjust(w) + " " for v in vals))
        lines += ["", "Random effects:", "", "Conditional model:"]
        rows = []
        for t in self.terms:
            c = self._covs[t.name]
            s = np.sqrt(np.diag(c))
            for j, nm in enumerate(t.terms):
                with np.errstate(invalid="ignore", divide="ignore"):
                    cr = " ".join(f"{c[j, i] / (s[i] * s[j]):.2f}" for i in range(j))
                rows.append([t.name if j == 0 else "", nm, c[j, j], s[j], cr])
        if self._sigma is not None:
            rows.append(["Residual", "", self._sigma**2, self._sigma, ""])
        vs, ss = rformat([r[2] for r in rows], 4), rformat([r[3] for r in rows], 4)
        has_corr = any(r[4] for r in rows)
        table = [["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])]
        table += [[r[0], r[1], v, s] + ([r[4]] if has_corr else []) for r, v, s in zip(rows, vs, ss)]
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines += [" " + " ".join(c.ljust(wd) for c, wd in zip(r, widths)) for r in table]
        groups = "; ".join(f"{g}, {v}" for g, v in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs} / Conditional model: {groups}")
        for d in fam.dpars:
            if d.transform not in ("ordered", "logit"):
                lines += ["", f"{d.name} ({fam.name}): {self.dpars[d.name]:.4g}"]
        lines += ["", "Conditional model:"]
        if self.failed is not None:
            lines.append("no estimates: the fit failed")
            return "\n".join(lines)
        if len(self.fixef):
            lines.extend(coef_table(self.fixef.to_numpy(), self.se.to_numpy(), list(self.fixef.index)))
        if "zi" in self.dpars.index:
            est, se = self.zi_logit()
            lines += ["", "Zero-inflation model:"]
            lines.extend(coef_table(np.array([est]), np.array([se]), ["(Intercept)"]))
        if fam.name == "cumulative":
            lines += ["", "Threshold coefficients:"]
            names = list(fam.threshold_names())
            est, se = self.dpars.to_numpy(), self.dpars_se.to_numpy()
            cells = rformat(np.round(np.concatenate([est, se]), 4), 4)
            zs = rformat(np.round(est / se, 3), 4)
            w0 = max(len(n) for n in names)
            lines.append(" " * w0 + "  Estimate Std. Error z value")
            for i, nm in enumerate(names):
                lines.append(f"{nm.ljust(w0)} {cells[i].rjust(9)} {cells[len(est) + i].rjust(10)} {zs[i].rjust(7)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _dp_flat(fam: ResponseFamily, dp: dict) -> np.ndarray:
    if not fam.dpars:
        return np.zeros(0)
    return np.concatenate([np.atleast_1d(np.asarray(dp[d.name], float)) for d in fam.dpars])


def _dp_dict(fam: ResponseFamily, v: np.ndarray) -> dict:
    out, pos = {}, 0
    for d in fam.dpars:
        m = fam.dpar_size(d)
        out[d.name] = v[pos : pos + m].copy() if d.transform == "ordered" else float(v[pos])
        pos += m
    return out


def glmmtmb(
    formula: str | Formula,
    data: pd.DataFrame,
    family: str | ResponseFamily = "negbinomial",
    ziformula: str | None = None,
    REML: bool = False,
    offset=None,
    link: str | None = None,
) -> FamilyFit:
    """Fit a mixed model of a response family by maximum likelihood (Laplace), as glmmTMB (or clmm, lmer).

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula; its response a column of ``data`` (or an arithmetic
        expression of columns).
    data : DataFrame
    family : str or ResponseFamily
        brms's names (``negbinomial``, ``zero_inflated_poisson``,
        ``zero_inflated_negbinomial``, ``student``, ``Gamma``, ``lognormal``,
        ``beta``, ``cumulative``, ``gaussian``, ``poisson``, ``bernoulli``) or
        bambi's aliases (``negativebinomial``, ``t``, ``gamma``).
    ziformula : {"~1", None}
        glmmTMB's zero-inflation formula: ``"~1"`` with ``poisson`` or
        ``negbinomial`` is the zero-inflated family (the only form taken).
    REML : bool
        For ``lognormal`` only: REML rather than ML.
    offset : str or array-like, optional
    link : str, optional
        Another link than the family's default: ``"inverse"`` for Gamma,
        ``"probit"`` for cumulative.

    Returns
    -------
    FamilyFit

    Raises
    ------
    FamilyError
        An unknown family (listing the valid ones), or a response the family
        cannot take, naming the rows.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import bayesmer
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(20), 15)                 # 20 groups of 15 rows
    >>> x = rng.normal(size=g.size)
    >>> mu = np.exp(1.0 + 0.5 * x + rng.normal(0, 0.5, 20)[g])
    >>> y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))  # NB2: shape 2
    >>> counts = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    >>> fit = bayesmer.glmmtmb("y ~ x + (1 | g)", counts, family="negbinomial")
    >>> fit.family.name, fit.converged, round(float(fit.dpars["shape"]), 2)
    ('negbinomial', True, 1.82)
    >>> zip_fit = bayesmer.glmmtmb("y ~ x + (1 | g)", counts, family="poisson", ziformula="~1")
    >>> zip_fit.family.name
    'zero_inflated_poisson'
    """
    fam = get_family(family).with_link(link)
    if ziformula is not None:
        if "".join(str(ziformula).split()) not in ("~1", "1"):
            raise FamilyError(f"ziformula {ziformula!r}: only '~1' (a constant zero-inflation) is supported")
        zi_of = {"poisson": "zero_inflated_poisson", "negbinomial": "zero_inflated_negbinomial"}
        if fam.name not in zi_of and not fam.name.startswith("zero_inflated"):
            raise FamilyError(f"ziformula needs family 'poisson' or 'negbinomial', not {fam.name!r}")
        fam = get_family(zi_of.get(fam.name, fam.name)).with_link(link)
    if REML and fam.name != "lognormal":
        raise FamilyError(f"REML is available for 'lognormal' (and lmer's Gaussian), not {fam.name!r}")
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    lhs, f = split_response(formula)
    n = len(data)
    if lhs in data.columns:
        col = data[lhs]
        bind = getattr(fam, "bind", None)
        if bind is not None:
            fam = bind(col, lhs)
        y_all = fam.prepare_response(col, lhs)
    else:
        if fam.name == "cumulative":
            raise FamilyError(f"the cumulative response {lhs!r} must be a column of the data")
        y_all = evaluate_column(lhs, data, f"the response {lhs!r}")
    if offset is None:
        off_all = np.zeros(n)
    elif isinstance(offset, str):
        off_all = evaluate_column(offset, data, f"offset={offset!r}")
    else:
        off_all = np.asarray(offset, dtype=float).reshape(-1)
    if fam.name == "lognormal":
        ok = np.isfinite(y_all)
        fam.check_response(y_all[ok], lhs, data.index[ok])
        with np.errstate(divide="ignore", invalid="ignore"):
            y_all = np.log(y_all)
    wt_all = np.ones(n)
    design, terms, pos = frame_design(f, data, Response(y_all, wt_all, lhs), off_all)
    y, off = y_all[pos], off_all[pos]
    if design.offset is not None:
        off = off + np.asarray(design.offset, dtype=float)
    formula_text = " ".join(formula.split()) if isinstance(formula, str) else str(formula)
    if fam.name == "lognormal":
        return _fit_lognormal(fam, design, terms, formula_text, REML)
    fam.check_response(y, lhs, data.index[pos])
    X = np.asarray(design.X, float)
    names = list(design.fixed_names)
    if fam.name == "cumulative" and "(Intercept)" in names:
        j = names.index("(Intercept)")
        X = np.delete(X, j, axis=1)
        names.pop(j)
    wt = np.ones(len(y))
    model = LaplaceModel(X, y, wt, off, terms, fam)
    p, nth = model.p, model.nth

    def to_x(r):
        return np.concatenate([r[: p + nth], fam.pack(_dp_dict(fam, r[p + nth :]))])

    def from_x(x):
        return np.concatenate([x[: p + nth], _dp_flat(fam, fam.unpack(x[p + nth :]))])

    with one_blas_thread(), np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        try:
            res = fit_laplace(model, report=(to_x, from_x))
        except LaplaceError as exc:
            raise FitError(f"glmmTMB's Laplace fit of {formula_text!r} (family {fam.name!r}) failed: "
                           f"{_diverged(fam, exc, p + nth)}") from exc
    beta, theta, dp = model.split(res.x)
    # a variance at zero (boundary): glmmTMB's log-SD runs off to -inf there; its row
    # and column leave the Hessian before it is inverted, as a fixed parameter's would
    edge = np.zeros(len(res.x), bool)
    edge[p : p + nth] = (model.theta_lower == 0) & (theta <= 1e-6)
    keep = np.flatnonzero(~edge)
    V = np.full(res.hessian.shape, np.nan)
    try:
        Vk = np.linalg.inv(res.hessian[np.ix_(keep, keep)])
        V[np.ix_(keep, keep)] = (Vk + Vk.T) / 2
    except np.linalg.LinAlgError:
        pass
    if edge.any():
        warnings.warn("boundary (singular) fit: a random-effect variance is estimated at zero", UserWarning,
                      stacklevel=2)
    if not np.all(np.isfinite(V[np.ix_(keep, keep)])) or np.any(np.diag(V)[keep] <= 0):
        warnings.warn("the Hessian of the Laplace objective is not positive definite: standard errors are NaN",
                      UserWarning, stacklevel=2)
    with np.errstate(invalid="ignore"):
        sd_all = np.sqrt(np.where(np.diag(V) > 0, np.diag(V), np.nan))
    dpars = fam.dpar_series(dp)
    dpars_se = pd.Series(sd_all[p + nth :], index=dpars.index.copy(), name="Std. Error")
    bd = np.r_[np.arange(p), np.arange(p + nth, len(res.x))]  # fixed effects and dpars, without theta
    k_par = p + nth + len(dpars)
    nobs = len(y)
    ll = -res.fun
    covs = {t.name: T @ T.T for t, T in zip(terms, theta_to_T(theta, model.ks))}
    ngroups: dict[str, int] = {}
    for t in terms:
        ngroups.setdefault(t.group, t.n_levels)
    idx = pd.Index(names)
    if not res.converged:
        warnings.warn(f"the Laplace fit may not have converged (max |gradient| {np.max(np.abs(res.grad)):.3g})",
                      UserWarning, stacklevel=2)
    return FamilyFit(
        formula=formula_text, family=fam, design=design, terms=terms, y=y,
        fixef=pd.Series(beta, index=idx, name="Estimate"),
        se=pd.Series(sd_all[:p], index=idx.copy(), name="Std. Error"),
        dpars=dpars, dpars_se=dpars_se, theta=theta, loglik=float(ll),
        aic=float(-2 * ll + 2 * k_par), bic=float(-2 * ll + math.log(nobs) * k_par),
        df_resid=int(nobs - k_par), nobs=nobs, ngroups=ngroups, converged=res.converged,
        n_evaluations=res.n_evals, n_gradients=res.n_grads, method="Laplace", _vcov=V[:p, :p], _covs=covs,
        _vcov_dpars=V[np.ix_(bd, bd)],
        _u=res.u, _eta=res.eta,
    )


#: what a dpar running to a boundary means, and the family to use instead
_BOUNDARY_HINTS = {
    ("negbinomial", "shape"): "no overdispersion: consider family='poisson'",
    ("zero_inflated_negbinomial", "shape"): "no overdispersion: consider family='zero_inflated_poisson'",
    ("student", "nu"): "no heavy tails: consider family='gaussian'",
    ("zero_inflated_poisson", "zi"): "no zero inflation: consider family='poisson'",
    ("zero_inflated_negbinomial", "zi"): "no zero inflation: consider family='negbinomial'",
}


def _diverged(fam: ResponseFamily, exc: LaplaceError, head: int) -> str:
    """The engine's error, and the family parameter that ran off to a boundary where one did.

    A dpar past 9 on its unconstrained scale (shape or nu > 8000, zi < 1e-4)
    names it; ``head`` is the number of β and θ entries before the dpars in ``exc.x``.
    """
    msg = str(exc)
    if exc.x is None or not fam.dpars:
        return msg
    z_all = exc.x[head:]
    pos = 0
    for d in fam.dpars:
        m = fam.dpar_size(d)
        z = z_all[pos : pos + m]
        pos += m
        if d.transform == "ordered" or len(z) != 1 or not np.isfinite(z[0]) or abs(z[0]) <= 9.0:
            continue
        value = float(np.asarray(fam.unpack(z_all)[d.name]).reshape(-1)[0])
        where = "infinity" if z[0] > 0 and d.upper == np.inf else f"{d.upper:g}" if z[0] > 0 else f"{d.lower:g}"
        hint = _BOUNDARY_HINTS.get((fam.name, d.name), "")
        return (f"the {fam.name} {d.name} runs to {where} ({value:.3g} where {msg})"
                f"{'; ' + hint if hint else ''}")
    return msg


def failed_fit(fd, exc: Exception) -> FamilyFit:
    """A stand-in for a Laplace fit that failed (a dpar running off to a boundary), for :func:`bayesmer.fit`.

    ``fd`` is the model's :class:`bayesmer.familydata.FamilyData`. The
    posterior with proper priors exists where the likelihood's maximum does
    not; the chains then start from the response's mean on the link scale
    (the intercept), zero for the other fixed effects and the random effects,
    unit SDs and the family's own start for its dpars (``init_dpars``). SEs,
    log-likelihood, AIC and BIC are NaN, ``converged`` is False and
    ``failed`` holds the error (the summary's reml column is NaN).
    """
    fam, y = fd.family, np.asarray(fd.y, float)
    X = np.asarray(fd.X, float)
    off = np.asarray(fd.offset, float) if fd.offset is not None else np.zeros(len(y))
    names = pd.Index(list(fd.fixed_names))
    beta = np.zeros(len(names))
    if "(Intercept)" in names:
        beta[list(names).index("(Intercept)")] = fam.init_eta(y)
    dp = fam.init_dpars(y, np.ones(len(y)))
    dpars = fam.dpar_series(dp)
    ks = [t.k for t in fd.terms]
    theta = np.concatenate([np.eye(k)[tri_index(k)] for k in ks]) if ks else np.zeros(0)
    q = sum(t.n_levels * t.k for t in fd.terms)
    nan = float("nan")
    ngroups: dict[str, int] = {}
    for t in fd.terms:
        ngroups.setdefault(t.group, t.n_levels)
    p = len(names)
    k_par = p + len(theta) + len(dpars)
    return FamilyFit(
        formula=fd.formula, family=fam, design=fd.design, terms=fd.terms, y=y,
        fixef=pd.Series(beta, index=names, name="Estimate"),
        se=pd.Series(np.full(p, nan), index=names.copy(), name="Std. Error"),
        dpars=dpars, dpars_se=pd.Series(np.full(len(dpars), nan), index=dpars.index.copy(), name="Std. Error"),
        theta=theta, loglik=nan, aic=nan, bic=nan, df_resid=int(len(y) - k_par), nobs=len(y), ngroups=ngroups,
        converged=False, n_evaluations=0, method="Laplace", _vcov=np.full((p, p), nan),
        _covs={t.name: np.eye(t.k) for t in fd.terms}, _u=np.zeros(q), _eta=X @ beta + off, failed=str(exc),
    )


def _fit_lognormal(fam, design: Design, terms, formula_text: str, REML: bool) -> FamilyFit:
    """lmer(log(y)) by ML (or REML): the lognormal model's exact fit."""
    from .lmer import fit_reml

    if tuple(t.name for t in terms) != tuple(t.name for t in design.terms):
        raise DesignError("lognormal: a random-effect term with one level per row is not identifiable beside sigma")
    fit = fit_reml(design, method="REML" if REML else "ML")
    z = np.asarray(design.y, float)
    ll = float(fit.loglik) - float(z.sum())
    k_par = len(fit.fixef) + len(fit.theta) + 1
    sigma = float(fit.sigma)
    sigma_se = _lognormal_sigma_se(design, np.asarray(fit.theta, float), sigma, REML)
    covs = fit.cov_matrices()
    ngroups = dict(fit.ngroups)
    return FamilyFit(
        formula=formula_text, family=fam, design=design, terms=design.terms, y=np.exp(z),
        fixef=pd.Series(np.asarray(fit.fixef, float), index=pd.Index(design.fixed_names), name="Estimate"),
        se=pd.Series(np.asarray(fit.se, float), index=pd.Index(design.fixed_names), name="Std. Error"),
        dpars=pd.Series([sigma], index=["sigma"], name="Estimate"),
        dpars_se=pd.Series([sigma_se], index=["sigma"], name="Std. Error"),
        theta=np.asarray(fit.theta), loglik=ll, aic=float(-2 * ll + 2 * k_par),
        bic=float(-2 * ll + math.log(len(z)) * k_par), df_resid=int(len(z) - k_par), nobs=len(z),
        ngroups=ngroups, converged=bool(fit.converged), n_evaluations=int(fit.n_evaluations),
        method="REML" if REML else "ML", _vcov=np.asarray(fit.vcov, float), _covs=covs,
        _u=None, _eta=np.asarray(fit.fitted()), _sigma=sigma, _ranef_lmer=dict(fit.ranef),
    )


def _lognormal_sigma_se(design: Design, theta: np.ndarray, sigma: float, REML: bool) -> float:
    """lognormal's SE of sigma as glmmTMB gives it: from the Hessian of -2 log L in (θ, log σ), delta method.

    glmmTMB fits the Gaussian of log(y) with β, θ and log σ (its dispersion
    parameter) and reports the inverse Hessian; the variance of log σ it gives
    is the same in any parameterisation of the covariances (here lme4's
    relative θ) and with β profiled out (ML: n log(2πσ²) + log|L|² + r²/σ²;
    REML, β integrated out: (n - p) log(2πσ²) + log|L|² + log|RX|² + r²/σ²,
    from the engine's factorisation). A θ diagonal at 0 (a singular fit)
    leaves the Hessian, as in :func:`glmmtmb`. NaN where the Hessian is not
    positive definite.
    """
    prob = Profiled.from_design(design, reml=REML)
    n, p = prob.n, prob.p
    ks = [t.k for t in design.terms]
    lower = np.concatenate([np.where(r == c, 0.0, -np.inf) for r, c in (tri_index(k) for k in ks)])
    free = ~((lower == 0) & (theta <= 1e-6))
    m = n - p if REML else n

    def f(x):
        th = theta.copy()
        th[free] = x[:-1]
        fz = prob.factor(th)
        if fz is None:
            return np.inf
        Pen = fz.Pen
        ldx = 0.0
        if p:
            Pxx = Pen[:p, :p]
            r2 = float(Pen[p, p] - Pen[p, :p] @ np.linalg.solve(Pxx, Pen[:p, p]))
            ldx = float(np.linalg.slogdet(Pxx)[1]) if REML else 0.0
        else:
            r2 = float(Pen[0, 0])
        return m * (math.log(2 * math.pi) + 2 * x[-1]) + fz.logdet + ldx + r2 * math.exp(-2 * x[-1])

    x = np.append(theta[free], math.log(sigma))
    _, H = fd_hessian(f, x)
    try:
        V = np.linalg.inv(H / 2)  # -log L is half the deviance
    except np.linalg.LinAlgError:
        return float("nan")
    v = float(V[-1, -1])
    return sigma * math.sqrt(v) if np.isfinite(v) and v > 0 else float("nan")

