"""lme4's ``glmer``: the Laplace fit (nAGQ = 1) of binomial and Poisson mixed models.

The Laplace deviance is the engine's (:class:`bayesmer.engine.pirls.LaplaceDeviance`:
lme4's PIRLS on ``Λ'Z'WZΛ + I``, factored by :mod:`bayesmer.engine.blocks`);
the design and response are :mod:`bayesmer.glmm_design`'s. This module is
lme4's outer optimisation and what it reports: as lme4, the fit is optimised
first over θ with β inside PIRLS (nAGQ = 0), then over (θ, β) jointly; the
standard errors come from lme4's finite-difference Hessian of the deviance in
(θ, β) (``deriv12``, step 1e-4; ``vcov(use.hessian = TRUE)``), and the
summary is laid out as lme4 prints it.

lme4's deviance function is not quite the exact Laplace approximation (its
PIRLS stops at a relative change of 1e-7); it is reproduced step for step,
so that lme4's estimates and finite-difference standard errors are too.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.optimize as sopt

from .design import Design, nonfinite_advice
from .errors import FitError
from .family import Family, FamilyError, get_family
from .formula import Formula
from .glmm_design import (  # noqa: F401  (GlmmData, RESPONSE_COLUMN, parse_glmm_formula: callers import them from here)
    RESPONSE_COLUMN, GlmmData, evaluate_column, glmm_design, parse_glmm_formula, parse_response,
)
from ._threads import one_blas_thread
from .protocol import ranef_from_modes, varcorr_from_covs
from .rprint import coef_table, corr_table, rformat
from .engine.numdiff import central_grad, fd_hessian
from .engine.pirls import LaplaceDeviance, PirlsError
from .engine.theta import theta_to_T as _theta_to_T, tri_index as _tri_index

__all__ = ["GlmerFit", "glmer", "FamilyError", "PirlsError", "SeparationError"]

_SINGULAR_TOL = 1e-4  # lme4's isSingular
_BOUNDARY_TOL = 1e-5  # glmerControl(boundary.tol)
_GRAD_TOL = 2e-3  # glmerControl(check.conv.grad)
_HESS_TOL = 1e-6  # glmerControl(check.conv.hess)
_DELTA = 1e-4  # lme4's deriv12 step
_SINGULAR_MSG = "boundary (singular) fit: see help('isSingular')"


class SeparationError(PirlsError):
    """A binomial (or Poisson) fit without a finite optimum: a fixed-effect column
    or factor level perfectly (or quasi-) separates the responses; the message names it."""


def _deriv12(f, x: np.ndarray, fx: float):
    """lme4's ``deriv12``: central-difference gradient and Hessian, one absolute step (1e-4)."""
    return fd_hessian(f, x, fx, h=np.full(len(x), _DELTA))


def _settled(g: np.ndarray, H: np.ndarray) -> bool:
    """lme4's convergence test passes: H positive definite, scaled gradient below tolerance."""
    try:
        R = np.linalg.cholesky(H).T
    except np.linalg.LinAlgError:
        return False
    sc = sla.solve_triangular(R, g, lower=False)
    return bool(np.max(np.minimum(np.abs(sc), np.abs(g)), initial=0.0) < _GRAD_TOL)


def _newton(f, x, fx, diag, g=None, H=None):
    """Newton steps (halved until f falls) on lme4's finite-difference derivatives.

    Parameters on the boundary stay there. Returns the point, its value and
    lme4's ``deriv12`` gradient and Hessian there.
    """
    if g is None:
        g, H = _deriv12(f, x, fx)
    for _ in range(4):
        free = ~(diag & (x <= 0))
        free &= ~(diag & (x < 2 * _DELTA) & (g > 0))
        idx = np.flatnonzero(free)
        try:
            step = -np.linalg.solve(H[np.ix_(idx, idx)], g[idx])
        except np.linalg.LinAlgError:
            break
        if np.max(np.abs(step), initial=0.0) < 1e-9:
            break
        for _ in range(6):
            cand = x.copy()
            cand[idx] += step
            cand[diag] = np.maximum(cand[diag], 0.0)
            fc = f(cand)
            if fc <= fx:
                break
            step /= 2
        else:
            break
        x, fx = cand, fc
        g, H = _deriv12(f, x, fx)
        if np.max(np.abs(step)) < 1e-7:
            break
    return x, fx, g, H


def _optimize(prob: LaplaceDeviance, lower: np.ndarray):
    """lme4's two stages: θ with β in PIRLS (nAGQ = 0), then (θ, β) by the Laplace deviance.

    lme4's deviance function jumps (by up to ~0.1 on some data) where its
    PIRLS takes one iteration more or less; a gradient method on it can stall
    at a jump. Each stage therefore first minimises the exact Laplace
    deviance (smooth), then moves to the nearby minimum of lme4's function:
    Nelder-Mead for θ (lme4's bobyqa), Newton steps on lme4's own
    finite-difference derivatives for (θ, β).
    """
    theta0 = np.concatenate([np.eye(k)[_tri_index(k)] for k in prob.ks])
    # lme4's first PIRLS, at the starting θ from R's mustart, gives the
    # linear predictor every stage-1 evaluation starts from.
    prob.set_lp0(prob.pirls(theta0))
    bounds_th = [(0.0, None) if lo == 0 else (None, None) for lo in lower]
    res1 = sopt.minimize(
        lambda th: prob.laplace(th, exact=True), theta0, method="L-BFGS-B", bounds=bounds_th,
        options={"ftol": 1e-12, "gtol": 1e-7, "maxiter": 500},
    )
    start = res1.x
    simplex = np.vstack([start, start + np.diag(np.maximum(1e-3 * np.abs(start), 1e-4))])
    res1 = sopt.minimize(
        lambda th: prob.laplace(th), start, method="Nelder-Mead", bounds=bounds_th,
        options={"initial_simplex": simplex, "xatol": 1e-8, "fatol": 1e-10, "maxfev": 400},
    )
    r1 = prob.pirls(res1.x)
    prob.set_lp0(r1)  # updateGlmerDevfun's lp0: every stage-2 evaluation starts here
    beta1 = r1.beta if r1.beta is not None else np.zeros(prob.X.shape[1])
    x0 = np.concatenate([res1.x, beta1])
    bounds = bounds_th + [(None, None)] * len(beta1)
    # β measured in stage 1's standard errors (β = β1 + RX'⁻¹ z): the
    # deviance's curvature in z is about 2 I, which L-BFGS-B needs few steps on.
    nth = len(res1.x)
    to_beta = (lambda z: beta1 + sla.solve_triangular(r1.RX, z, lower=True, trans="T")) if r1.RX is not None else (lambda z: z)

    def fe(xz):
        return prob.f_exact(np.concatenate([xz[:nth], to_beta(xz[nth:])]))

    xz0 = np.concatenate([res1.x, np.zeros(len(beta1))]) if r1.RX is not None else x0
    res = sopt.minimize(
        fe, xz0, jac=lambda x: central_grad(fe, x, 1e-5 * np.maximum(1.0, np.abs(x))), method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-13, "gtol": 1e-7, "maxiter": 1000},
    )
    f = prob.f_all
    x = np.concatenate([res.x[:nth], to_beta(res.x[nth:])])
    fx = f(x)
    message = str(res.message)
    diag = np.concatenate([lower == 0, np.zeros(len(beta1), bool)])
    x, fx, g, H = _newton(f, x, fx, diag)
    if not _settled(g, H):
        # A jump of lme4's function lies between the exact optimum and its
        # own: derivative-free steps cross it, as lme4's Nelder-Mead does.
        # lme4's initial Nelder-Mead steps (0.02 for θ, 0.2 SE for β, the
        # SEs from stage 1's RX), a tenth of them as this starts nearby.
        se1 = np.sqrt(np.diag(sla.cho_solve((r1.RX, True), np.eye(len(beta1))))) if r1.RX is not None else np.ones(0)
        steps = 0.1 * np.concatenate([np.full(len(res1.x), 0.02), 0.2 * np.minimum(se1, 10.0)])
        simplex = np.vstack([x, x + np.diag(steps)])
        res = sopt.minimize(
            f, x, method="Nelder-Mead", bounds=bounds,
            options={"initial_simplex": simplex, "xatol": 1e-7, "fatol": 1e-9, "maxfev": 3000},
        )
        if res.fun < fx:
            x, fx = res.x, float(res.fun)
            g, H = _deriv12(f, x, fx)
            x, fx, g, H = _newton(f, x, fx, diag, g, H)
    # lme4's check.boundary: a θ diagonal within boundary.tol of 0 goes to 0 when no worse.
    edge = diag & (x > 0) & (x < _BOUNDARY_TOL)
    if edge.any():
        for i in np.flatnonzero(edge):
            cand = x.copy()
            cand[i] = 0.0
            fc = f(cand)
            if fc < fx:
                x, fx = cand, fc
        g, H = _deriv12(f, x, fx)
    return x, fx, g, H, message


# --------------------------------------------------------------------------
# the fit


@dataclass(frozen=True, eq=False)
class GlmerFit:
    """A binomial or Poisson mixed model fitted by lme4's Laplace approximation.

    Attributes
    ----------
    formula : str
        The formula as given.
    family : Family
    design : Design
        The fixed part and the terms build_design made (the response in it is
        a placeholder: the response is ``y`` and ``weights`` here).
    terms : tuple of ReTerm
        The random-effect terms in lme4's order.
    y, weights, offset : ndarray
        Response (proportion for the binomial), prior weights (trials for the
        binomial) and offset of the rows fitted.
    fixef, se : Series
        Fixed effects and standard errors (from the finite-difference Hessian,
        as lme4's ``vcov``).
    theta : ndarray
        lme4's θ: per term the column-major lower triangle of its relative
        covariance factor (the random effects' covariance factor: no σ here).
    minus2loglik : float
        -2 log-likelihood (Laplace), lme4's ``-2 * logLik``; printed as
        "deviance" in lme4's summary.
    deviance : float
        lme4's ``deviance()`` of a glmer fit: the conditional deviance, the sum
        of squared deviance residuals at the conditional modes.
    loglik, aic, bic : float
    df_resid : int
    singular, converged : bool
    messages : tuple of str
        lme4's convergence and boundary messages.
    nobs : int
    ngroups : dict of str to int
    n_evaluations : int
        Laplace deviance evaluations (each one PIRLS).

    Examples
    --------
    >>> import bayesmer
    >>> cbpp = bayesmer.datasets.load("cbpp")
    >>> g = bayesmer.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    >>> g.family.name, g.fixef.index.tolist()[:2]
    ('binomial', ['(Intercept)', 'period2'])
    """

    formula: str
    family: Family
    design: Design
    terms: tuple
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    fixef: pd.Series
    se: pd.Series
    theta: np.ndarray
    minus2loglik: float
    deviance: float
    loglik: float
    aic: float
    bic: float
    df_resid: int
    singular: bool
    converged: bool
    messages: tuple
    nobs: int
    ngroups: dict
    n_evaluations: int
    weights_label: str | None = None
    offset_label: str | None = None
    _vcov: np.ndarray = field(repr=False, default=None)
    _u: np.ndarray = field(repr=False, default=None)
    _mu: np.ndarray = field(repr=False, default=None)
    _hessian: np.ndarray = field(repr=False, default=None)
    #: why the Laplace fit failed, for the stand-in :func:`bayesmer.fit` samples from (see :func:`failed_fit`)
    failed: str | None = None

    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects."""
        names = self.fixef.index
        return pd.DataFrame(self._vcov, index=names, columns=names.copy())

    @functools.cached_property
    def _covs(self) -> dict:
        Ts = _theta_to_T(self.theta, [t.k for t in self.terms])
        return {t.name: T @ T.T for t, T in zip(self.terms, Ts)}

    def cov_matrices(self) -> dict[str, np.ndarray]:
        """Per term, the ``k x k`` covariance matrix of its random effects."""
        return {k: v.copy() for k, v in self._covs.items()}

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Columns ``group, kind, term1, term2, value``: per term its SDs and correlations (no residual)."""
        return varcorr_from_covs(self, self._covs, None)

    @functools.cached_property
    def ranef(self) -> dict:
        """Per term, levels x columns: the conditional modes ``b = Λû``."""
        return ranef_from_modes(self._u, _theta_to_T(self.theta, [t.k for t in self.terms]), self.terms)

    def fitted(self) -> np.ndarray:
        """Conditional means μ at the conditional modes (the response scale)."""
        return self._mu.copy()

    def residuals(self, type: str = "deviance") -> np.ndarray:
        """Deviance (default), Pearson or response residuals, as lme4's ``residuals``."""
        fam, y, mu, wt = self.family, self.y, self._mu, self.weights
        if type == "deviance":
            return np.sign(y - mu) * np.sqrt(np.maximum(fam.dev_resids(y, mu, wt), 0.0))
        if type == "pearson":
            return fam.pearson_resids(y, mu, wt)
        if type == "response":
            return y - mu
        raise ValueError(f"type must be 'deviance', 'pearson' or 'response', not {type!r}")

    def summary(self) -> str:
        """The fit laid out as lme4 prints ``summary(glmer(...))``."""
        lines = [
            "Generalized linear mixed model fit by maximum likelihood (Laplace",
            "  Approximation) [glmerMod]",
            f" Family: {self.family.name}  ( {self.family.link.name} )",
            f"Formula: {self.formula}",
        ]
        if self.weights_label:
            lines.append(f"Weights: {self.weights_label}")
        if self.offset_label:
            lines.append(f" Offset: {self.offset_label}")
        lines.append("")
        hdr = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [f"{v:.1f}" for v in (self.aic, self.bic, self.loglik, self.minus2loglik)] + [str(self.df_resid)]
        w = max(len(v) for v in hdr + vals)
        lines.append("".join(h.rjust(w) + " " for h in hdr))
        lines.append("".join(v.rjust(w) + " " for v in vals))
        lines.append("")
        q = np.quantile(self.residuals("pearson"), [0, 0.25, 0.5, 0.75, 1])
        qs = [f"{v:.4f}" for v in q]
        w = max(len(s) for s in qs + ["Median"])
        lines.append("Scaled residuals: ")
        lines.append("".join(h.rjust(w) + " " for h in ["Min", "1Q", "Median", "3Q", "Max"]))
        lines.append("".join(s.rjust(w) + " " for s in qs))
        lines.append("")
        lines.append("Random effects:")
        lines.extend(self._ranef_table())
        groups = "; ".join(f"{g}, {v}" for g, v in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        lines.append("")
        lines.append("Fixed effects:")
        lines.extend(coef_table(self.fixef.to_numpy(), self.se.to_numpy(), list(self.fixef.index)))
        lines.extend(corr_table(self._vcov, list(self.fixef.index)))
        for m in self.messages:
            lines.append(m)
        return "\n".join(lines)

    def _ranef_table(self) -> list[str]:
        var_, sd_, corr_ = [], [], []
        rows = []
        for t in self.terms:
            c = self._covs[t.name]
            s = np.sqrt(np.diag(c))
            for j, nm in enumerate(t.terms):
                rows.append((t.name if j == 0 else "", nm))
                var_.append(c[j, j])
                sd_.append(s[j])
                with np.errstate(invalid="ignore", divide="ignore"):
                    corr_.append([c[j, i] / (s[i] * s[j]) for i in range(j)])
        vs, ss = rformat(var_, 4), rformat(sd_, 4)
        has_corr = any(corr_)
        cs = [" ".join(f"{v:.2f}" for v in cr) for cr in corr_]
        head = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])
        table = [head] + [[g, n, v, s] + ([c] if has_corr else []) for (g, n), v, s, c in zip(rows, vs, ss, cs)]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        return [" " + " ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table]

    def __str__(self) -> str:
        return self.summary()


def glmer(
    formula: str | Formula,
    data: pd.DataFrame,
    family: str | Family = "binomial",
    link: str | None = None,
    weights=None,
    offset=None,
    tol_pwrss: float = 1e-7,
) -> GlmerFit:
    """Fit a binomial or Poisson mixed model by the Laplace approximation, as lme4's ``glmer``.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula. A binomial response is 0/1, booleans, a two-level
        factor (its first level is failure), ``cbind(successes, failures)``
        or a proportion with ``weights=`` the numbers of trials.
    data : DataFrame
    family : {"binomial", "poisson"} or Family
    link : str, optional
        ``"logit"`` (default), ``"probit"`` or ``"cloglog"`` for the binomial;
        ``"log"`` for the Poisson.
    weights : str or array-like, optional
        Prior weights: a column name, an R expression of columns, or one value per row.
    offset : str or array-like, optional
        A known term of the linear predictor (``log(exposure)`` for a Poisson
        rate): a column name, an R expression of columns, or one value per row.
        Expressions (these and the response's) are computed by
        :func:`bayesmer.formula.evaluate` as R does, never evaluated as Python.
        Added to an ``offset(...)`` of the formula where the design has one.
    tol_pwrss : float
        lme4's ``glmerControl(tolPwrss)``: PIRLS stops when the penalised
        deviance changes by less than this, relative. lme4's 1e-7 reproduces
        lme4's numbers; a smaller value gives the exact Laplace deviance.

    Returns
    -------
    GlmerFit

    Raises
    ------
    FamilyError
        For an unknown family or link, or a response outside the family's
        range, naming the column and the rows.
    SeparationError
        A column or factor level perfectly separates the responses and the
        linear predictor diverges (a :class:`PirlsError`), naming it.
    FitError
        Another fit without a finite deviance (:class:`PirlsError` when PIRLS
        diverged), naming columns of huge magnitude.

    Warns
    -----
    UserWarning
        lme4's: a singular (boundary) fit, a failed convergence check, a
        non-positive-definite Hessian, predictors on very different scales;
        quasi-separation by a factor level whose responses are all 0 or all 1
        (its estimate is then unbounded).

    Examples
    --------
    >>> import bayesmer
    >>> cbpp = bayesmer.datasets.load("cbpp")
    >>> g = bayesmer.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    >>> g.fixef.round(2).tolist()                  # lme4: -1.40, -0.99, -1.13, -1.58
    [-1.4, -0.99, -1.13, -1.58]
    >>> print(g)                                   # lme4's printout  # doctest: +SKIP
    """
    gd = glmm_design(formula, data, get_family(family, link), weights=weights, offset=offset)
    return fit_glmer(gd, tol_pwrss=tol_pwrss)


def fit_glmer(gd: GlmmData, tol_pwrss: float = 1e-7) -> GlmerFit:
    """:func:`glmer` on a model's arrays already built (:func:`glmm_design`)."""
    fam, design, terms, y, wt, off = gd.family, gd.design, gd.terms, gd.y, gd.weights, gd.offset
    formula, weights, offset = gd.formula, gd.weights_spec, gd.offset_spec
    X = design.X
    _check_scale(X)
    prob = LaplaceDeviance(X, y, wt, off, terms, fam, tol_pwrss)
    ks = [t.k for t in terms]
    lower = np.concatenate([np.where(r == c, 0.0, -np.inf) for r, c in (_tri_index(k) for k in ks)])
    with one_blas_thread():
        try:
            x, fx, g, H, message = _optimize(prob, lower)
        except PirlsError as exc:
            raise _diverged(gd, exc) from None
        if not np.isfinite(fx):
            raise _diverged(gd, FitError(f"the Laplace deviance is {fx} at the optimum"))
        nth = prob.nth
        theta, beta = x[:nth], x[nth:]
        final = prob.pirls(theta, beta)
    u, mu = final.u, final.mu
    messages: list[str] = []
    singular = bool(np.any(theta[lower == 0] < _SINGULAR_TOL))
    converged = True
    for sentence in separation(X, design.fixed_names, y, wt, fam):
        # the optimiser stopped somewhere on a ridge running off to infinity: say why
        messages.append(f"{sentence}: its estimate is unbounded (the maximum-likelihood estimate is infinite); "
                        f"{_PRIOR_HINT}")
    if singular:
        messages.append(_SINGULAR_MSG)
    else:
        converged, conv_msgs = _check_conv(g, H, nth)
        messages.extend(conv_msgs)
    vcov = _vcov(H, nth, prob, theta, beta, messages)
    n, p = len(y), len(beta)
    df = p + nth
    ll = -fx / 2
    names = pd.Index(design.fixed_names)
    ngroups: dict[str, int] = {}
    for t in terms:
        ngroups.setdefault(t.group, t.n_levels)
    fit = GlmerFit(
        formula=formula,
        family=fam,
        design=design,
        terms=terms,
        y=y,
        weights=wt,
        offset=off,
        fixef=pd.Series(beta, index=names, name="Estimate"),
        se=pd.Series(np.sqrt(np.diag(vcov)), index=names.copy(), name="Std. Error"),
        theta=theta,
        minus2loglik=float(fx),
        deviance=float(fam.dev_resids(y, mu, wt).sum()),
        loglik=float(ll),
        aic=float(fx + 2 * df),
        bic=float(fx + math.log(n) * df),
        df_resid=int(n - df),
        singular=singular,
        converged=converged,
        messages=tuple(messages),
        nobs=n,
        ngroups=ngroups,
        n_evaluations=prob.n_evals,
        weights_label=weights if isinstance(weights, str) else None,
        offset_label=offset if isinstance(offset, str) else None,
        _vcov=vcov,
        _u=u,
        _mu=mu,
        _hessian=H,
    )
    for m in messages:
        warnings.warn(m, UserWarning, stacklevel=3)
    return fit


_PRIOR_HINT = ("bayesmer.fit with a proper prior on the fixed effects (e.g. priors={'b': 'Normal(0, 2.5)'}) "
               "still has a posterior; or merge or drop the level")


def separation(X: np.ndarray, names, y: np.ndarray, wt: np.ndarray, family: Family) -> list[str]:
    """The fixed-effect columns that separate the responses, found cheaply.

    A 0/1 column (a factor level, a logical) whose rows' responses are all 0 or
    all 1 (Poisson: all 0) is quasi-separation: its coefficient runs off to
    infinity. A numeric column above which every response is 1 and below
    which every one is 0 (or the reverse) is complete separation (quasi
    where the two groups touch). Returns one sentence per column; empty when
    none is found (separation by a combination of columns is not looked for).
    """
    keep = wt > 0
    X, y = np.asarray(X, dtype=float)[keep], np.asarray(y, dtype=float)[keep]
    zero, one = y <= 0, (y >= 1) if family.name == "binomial" else np.zeros(len(y), bool)
    found = []
    for j, name in enumerate(names):
        if name == "(Intercept)":
            continue
        x = X[:, j]
        if np.all((x == 0) | (x == 1)):
            on = x == 1
            if 0 < on.sum() < len(x):
                for mask, v in ((zero, 0), (one, 1)):
                    if mask[on].all():
                        found.append(f"quasi-separation by {name!r}: all {int(on.sum())} responses where it is 1 "
                                     f"are {v}")
                        break
            continue
        if family.name != "binomial" or not (zero | one).all() or not zero.any() or not one.any():
            continue
        lo0, hi0, lo1, hi1 = x[zero].min(), x[zero].max(), x[one].min(), x[one].max()
        for a, b, above in ((hi0, lo1, 1), (hi1, lo0, 0)):
            if a <= b:
                kind = "perfect separation" if a < b else "quasi-separation"
                found.append(f"{kind} by {name!r}: every response is {above} where {name} >= {b:.4g} and "
                             f"{1 - above} where {name} <= {a:.4g}")
                break
    return found


def failed_fit(gd: GlmmData, exc: Exception) -> GlmerFit:
    """A stand-in for a Laplace fit that has no finite optimum (separation), for :func:`bayesmer.fit`.

    The posterior with proper priors exists where the likelihood's maximum
    does not; the chains then start from the response's mean on the link
    scale (the intercept), zero for the other fixed effects and the random
    effects, and unit SDs. Every estimate it reports is NaN; ``failed`` holds
    the error.
    """
    fam, y, wt, off, X = gd.family, gd.y, gd.weights, gd.offset, gd.X
    names = pd.Index(gd.fixed_names)
    beta = np.zeros(len(names))
    if "(Intercept)" in names:
        mean = float(np.sum(wt * y) / max(np.sum(wt), 1e-300))
        mean = min(max(mean, 0.05), 0.95) if fam.name == "binomial" else max(mean, 0.05)
        beta[list(names).index("(Intercept)")] = float(fam.link.linkfun(np.array([mean]))[0])
    ks = [t.k for t in gd.terms]
    theta = np.concatenate([np.eye(k)[_tri_index(k)] for k in ks])
    q = sum(t.n_levels * t.k for t in gd.terms)
    nan = float("nan")
    ngroups: dict[str, int] = {}
    for t in gd.terms:
        ngroups.setdefault(t.group, t.n_levels)
    return GlmerFit(
        formula=gd.formula, family=fam, design=gd.design, terms=gd.terms, y=y, weights=wt, offset=off,
        fixef=pd.Series(beta, index=names, name="Estimate"),
        se=pd.Series(np.full(len(names), nan), index=names.copy(), name="Std. Error"),
        theta=theta, minus2loglik=nan, deviance=nan, loglik=nan, aic=nan, bic=nan,
        df_resid=int(len(y) - len(names) - len(theta)), singular=False, converged=False, messages=(str(exc),),
        nobs=len(y), ngroups=ngroups, n_evaluations=0, weights_label=gd.weights_spec, offset_label=gd.offset_spec,
        _vcov=np.full((len(names), len(names)), nan), _u=np.zeros(q), _mu=fam.link.linkinv(X @ beta + off),
        failed=str(exc),
    )


def _diverged(gd: GlmmData, exc: Exception) -> FitError:
    """The error for a Laplace fit that failed: separation named when it is found, else PIRLS's own."""
    found = separation(gd.X, gd.fixed_names, gd.y, gd.weights, gd.family)
    if found:
        return SeparationError(
            f"glmer cannot fit {gd.formula!r}: {'; '.join(found[:3])}. The maximum-likelihood estimate is "
            f"infinite (the linear predictor diverged: {exc}); {_PRIOR_HINT}"
        )
    cls = PirlsError if isinstance(exc, PirlsError) else FitError
    return cls(f"glmer cannot fit {gd.formula!r}: {exc}. Perfect separation by a combination of columns, or "
               f"columns of extreme magnitude, make the linear predictor diverge; {nonfinite_advice(gd.design)}")


def _check_scale(X: np.ndarray) -> None:
    """lme4's check.scaleX: warn when column SDs differ by more than 1000-fold."""
    cont = ~np.all(np.isin(X, (0.0, 1.0)), axis=0)
    if not cont.any() or X.shape[0] < 2:
        return
    sd = X[:, cont].std(axis=0, ddof=1)
    with np.errstate(divide="ignore"):
        logsd = np.abs(np.log(sd))
        comp = np.abs(np.log(sd[:, None] / sd[None, :]))
    if np.any(logsd > math.log(1000)) or np.any(comp > math.log(1000)):
        warnings.warn(
            "Some predictor variables are on very different scales: consider rescaling",
            UserWarning,
            stacklevel=3,
        )


def _check_conv(g: np.ndarray, H: np.ndarray, nth: int) -> tuple[bool, list[str]]:
    """lme4's checkConv: the scaled gradient and the Hessians' eigenvalues."""
    msgs = []
    try:
        R = np.linalg.cholesky(H).T
        scgrad = sla.solve_triangular(R, g, lower=False)
        mingrad = np.minimum(np.abs(scgrad), np.abs(g))
        if np.max(mingrad) > _GRAD_TOL:
            msgs.append(
                f"Model failed to converge with max|grad| = {np.max(mingrad):.6g} (tol = {_GRAD_TOL:g}, "
                f"component {int(np.argmax(mingrad)) + 1})"
            )
    except np.linalg.LinAlgError:
        msgs.append("unable to evaluate scaled gradient")
    for Hs, kind in ((H[nth:, nth:], "fixed-effect "), (H, "")):
        if Hs.shape[0] == 0:
            continue
        ev = np.linalg.eigvalsh(Hs)
        if np.sum(ev < -_HESS_TOL):
            msgs.append(f"Model failed to converge: degenerate {kind}Hessian with {int(np.sum(ev < -_HESS_TOL))} negative eigenvalues")
        elif np.sum(np.abs(ev) < _HESS_TOL):
            msgs.append(f"{kind}Hessian is numerically singular: parameters are not uniquely determined")
        else:
            if ev.max() * _HESS_TOL > 1:
                msgs.append("Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?")
            if ev.min() / ev.max() < _HESS_TOL:
                msgs.append("Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?")
    return not msgs, msgs


def _vcov(H, nth, prob: LaplaceDeviance, theta, beta, messages: list[str]) -> np.ndarray:
    """lme4's ``vcov(use.hessian = TRUE)``: ``2 H⁻¹`` on the β block, else from RX."""
    p = len(beta)
    try:
        Hi = np.linalg.inv(H)
        V = (Hi + Hi.T)[nth:, nth:]
        ok = np.all(np.isfinite(V)) and (p == 0 or np.linalg.eigvalsh(V).min() > 0)
    except np.linalg.LinAlgError:
        ok = False
    if ok:
        return V
    messages.append(
        "variance-covariance matrix computed from finite-difference Hessian is\n"
        "not positive definite or contains NA values: falling back to var-cov estimated from RX"
    )
    return np.linalg.inv(prob.rx_crossprod(theta, beta))
