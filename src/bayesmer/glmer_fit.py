"""lme4's ``glmer``: the Laplace fit (nAGQ = 1) of binomial and Poisson mixed models.

With the relative covariance factor Λ(θ) and spherical random effects u
(b = Λu), the conditional mode û(θ, β) minimises the penalised deviance
``Σ devResid(y, μ) + |u|²`` (penalised iteratively reweighted least squares,
PIRLS, on ``Λ'Z'WZΛ + I``). lme4's Laplace deviance is then

    -2 log L(θ, β) ≈ -2 Σ log p(y | û) + |û|² + log|L|²,   LL' = Λ'Z'WZΛ + I

with W the working weights at û. As lme4, the fit is optimised first over θ
with β inside PIRLS (nAGQ = 0), then over (θ, β) jointly; the standard errors
come from lme4's finite-difference Hessian of the deviance in (θ, β)
(``deriv12``, step 1e-4; ``vcov(use.hessian = TRUE)``).

ZΛ is held as a scipy CSR matrix with one entry per row and random-effect
column (never an ``n x q`` dense matrix); ``Λ'Z'WZΛ + I`` is factored in
MixedModels.jl's blocked form (the first term's ``k x k`` blocks, then one
dense block for the other terms).

lme4's deviance function is not quite the exact Laplace approximation (its
PIRLS stops at a relative change of 1e-7); it is reproduced step for step,
so that lme4's estimates and finite-difference standard errors are too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.optimize as sopt
import scipy.sparse as sp
import scipy.stats as st

from .design import Design, DesignError, ReTerm, _grouping, build_design, nonfinite_advice, plain_frame
from .errors import FitError
from .family import Family, FamilyError, as_binary, get_family
from .formula import Call, Formula, FormulaError, Name, check_value, deparse, evaluate, parse_formula, parse_r
from ._threads import one_blas_thread
from .protocol import varcorr_from_covs
from .engine.theta import theta_to_T as _theta_to_T, tri_index as _tri_index

__all__ = ["GlmerFit", "glmer", "FamilyError", "PirlsError", "SeparationError"]

_SINGULAR_TOL = 1e-4  # lme4's isSingular
_BOUNDARY_TOL = 1e-5  # glmerControl(boundary.tol)
_GRAD_TOL = 2e-3  # glmerControl(check.conv.grad)
_HESS_TOL = 1e-6  # glmerControl(check.conv.hess)
_DELTA = 1e-4  # lme4's deriv12 step
_SINGULAR_MSG = "boundary (singular) fit: see help('isSingular')"
_RESPONSE = "_glmer_response_"  # the placeholder column build_design reads
#: the column glmer's design reads the evaluated response from
RESPONSE_COLUMN = _RESPONSE


class PirlsError(FitError):
    """PIRLS found no conditional mode (the linear predictor diverged).

    A :class:`~bayesmer.errors.FitError` (so a ``RuntimeError`` as before).
    """


class SeparationError(PirlsError):
    """A binomial (or Poisson) fit without a finite optimum: a fixed-effect column
    or factor level perfectly (or quasi-) separates the responses; the message names it."""


# --------------------------------------------------------------------------
# the response


@dataclass(frozen=True)
class _Response:
    y: np.ndarray  # proportions (binomial) or counts, all rows of the data
    wt: np.ndarray  # prior weights: trials for the binomial
    label: str  # what the messages call the response


def _evaluate(expr, data: pd.DataFrame, where: str) -> np.ndarray:
    """A numeric column, or an R expression of columns (:func:`bayesmer.formula.evaluate`: never Python's eval)."""
    if isinstance(expr, str) and expr in data.columns:
        expr = Name(expr)  # a column, whatever its name (the arrays saved as "(weights)", "(offset)")
    return evaluate(expr, data, where, error=DesignError)


def _lhs(lhs: str) -> object:
    """The parsed response: a checked R expression, or ``cbind(successes, failures)`` of two."""
    node = parse_r(lhs)
    if isinstance(node, Call) and node.fn == "cbind":
        if len(node.args) != 2 or any(k is not None for k, _ in node.args):
            raise FormulaError(f"cbind in the response {lhs!r} needs two arguments: successes and failures")
        for _, arg in node.args:
            check_value(arg, f"the response {lhs!r}")
    else:
        check_value(node, f"the response {lhs!r}")
    return node


def _split_response(formula: str | Formula) -> tuple[str, Formula]:
    """The left-hand side, and the formula with the placeholder response.

    The response is evaluated here (``cbind(s, f)`` makes two columns, a
    factor is 0/1), and build_design reads the result from a placeholder
    column.
    """
    if isinstance(formula, Formula):
        return formula.response, dataclasses.replace(formula, response=_RESPONSE)
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {type(formula).__name__}")
    depth = 0
    for i, ch in enumerate(formula):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "~" and depth == 0:
            lhs = formula[:i].strip()
            if not lhs:
                raise FormulaError(f"formula {formula!r} has no response left of '~'")
            _lhs(lhs)  # checked here, so that a model file's response is refused when the file is read
            return " ".join(lhs.split()), parse_formula(f"{_RESPONSE} ~ {formula[i + 1:]}")
    raise FormulaError(f"formula {formula!r} needs a '~' between the response and the terms")


def parse_glmm_formula(formula: str | Formula) -> tuple[str, Formula]:
    """A GLMM formula: its response as written (``cbind(s, f)`` included) and the parsed right-hand side.

    Raises
    ------
    FormulaError
        For a formula without ``~`` or a response, or a bad right-hand side.
    """
    return _split_response(formula)


def _response(lhs: str, data: pd.DataFrame, family: Family, weights) -> _Response:
    """y and the prior weights as R's ``glm`` holds them."""
    n = len(data)
    if weights is None:
        prior = np.ones(n)
    elif isinstance(weights, str):
        prior = _evaluate(weights, data, f"weights {weights!r}")
    else:
        prior = np.asarray(weights, dtype=float).reshape(-1)
        if prior.shape[0] != n:
            raise DesignError(f"weights has {prior.shape[0]} values for {n} rows")
    node = _lhs(lhs)
    if isinstance(node, Call) and node.fn == "cbind":
        if family.name != "binomial":
            raise FamilyError(f"a cbind(successes, failures) response needs family='binomial', not {family.name!r}")
        args = [deparse(a) for _, a in node.args]
        s, f = (_evaluate(a, data, f"the response {lhs!r}") for _, a in node.args)
        for values, expr, what in ((s, args[0], "successes"), (f, args[1], "failures")):
            neg = values < 0
            if np.any(neg):
                rows = data.index[neg]
                shown = ", ".join(str(r) for r in rows[:10])
                more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
                raise FamilyError(f"the {what} {expr!r} of the response {lhs!r} are negative: rows {shown}{more}")
        trials = s + f
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials == 0, 0.0, s / trials)
        return _Response(y, trials * prior, lhs)
    column = node.id if isinstance(node, Name) and node.id in data.columns else None
    if family.name == "binomial" and column is not None and (
            not pd.api.types.is_numeric_dtype(data[column]) or pd.api.types.is_bool_dtype(data[column])):
        return _Response(as_binary(data[column], lhs), prior, lhs)
    return _Response(_evaluate(node, data, f"the response {lhs!r}"), prior, lhs)


# --------------------------------------------------------------------------
# the design, with lme4's allowance for one level per row


def _unique_per_row(data: pd.DataFrame, factors: tuple[str, ...]) -> bool:
    cols = data[list(factors)]
    cols = cols[cols.notna().all(axis=1)]
    return len(cols) > 1 and not cols.duplicated().any()


def _design(f: Formula, data: pd.DataFrame, resp: _Response, offset: np.ndarray) -> tuple[Design, tuple[ReTerm, ...], np.ndarray]:
    """The design, its random-effect terms in lme4's order, and the kept rows' positions.

    build_design refuses a grouping factor with a level per row (right for a
    linear model, whose residual it would duplicate); lme4's glmer takes one
    (an observation-level random effect for overdispersion). Such intercept
    terms are left out of build_design and made here, then put in lme4's
    order (by decreasing number of levels, formula order among ties).
    """
    frame = data.reset_index(drop=True)
    if _RESPONSE in frame.columns:
        raise DesignError(f"the data has a column named {_RESPONSE!r}, which glmer uses internally")
    missing = ~(np.isfinite(resp.y) & np.isfinite(resp.wt) & np.isfinite(offset))
    obs_terms = [t for t in f.random if all(c in frame.columns for c in t.factors) and _unique_per_row(frame, t.factors)]
    for t in obs_terms:
        if t.expr != "1":
            raise DesignError(
                f"random-effect term {t} has one level of {t.group!r} per row; only an intercept "
                f"(1 | {t.group}) is supported for such a term"
            )
        missing |= frame[list(t.factors)].isna().any(axis=1).to_numpy()
    kept_terms = tuple(t for t in f.random if t not in obs_terms)
    if obs_terms and not kept_terms:
        raise DesignError("every random-effect term has one level per row; glmer needs a grouping with repeated levels")
    kept_y = resp.y[~missing]
    if len(kept_y) and np.all(kept_y == kept_y[0]):
        # lme4's check.response.not.const; build_design's own check would
        # name the placeholder column.
        raise FamilyError(f"the response {resp.label!r} is constant ({kept_y[0]:g} in all {len(kept_y)} rows)")
    frame[_RESPONSE] = np.where(missing, np.nan, resp.y)
    with warnings.catch_warnings():
        # build_design's missing-value warning would name the placeholder column.
        warnings.filterwarnings("ignore", message=r"\d+ row\(s\) with missing values")
        design = build_design(dataclasses.replace(f, random=kept_terms), frame)
    pos = design.frame.index.to_numpy()
    if len(pos) < len(frame):
        warnings.warn(
            f"{len(frame) - len(pos)} row(s) with missing values in the response, weights, offset or "
            f"model columns removed ({len(pos)} kept)",
            UserWarning,
            stacklevel=3,
        )
    if not obs_terms:
        return design, design.terms, pos
    n = len(pos)
    kept = frame.iloc[pos]
    made = []
    for t in obs_terms:
        codes, levels = _grouping(kept, t.factors)
        made.append((t, ReTerm(
            name=t.group, group=t.group, factors=t.factors, codes=codes, levels=levels,
            terms=("(Intercept)",), Z=np.ones((n, 1)), expr="1", spec=None,
        )))
    order = {t: i for i, t in enumerate(f.random)}
    built = [(order[t], rt) for t, rt in made]
    by_expr = {}
    for rt in design.terms:
        by_expr.setdefault((rt.expr, rt.factors), []).append(rt)
    for t in kept_terms:
        built.append((order[t], by_expr[(t.expr, t.factors)].pop(0)))
    built.sort(key=lambda item: (-item[1].n_levels, item[0]))
    seen: dict[str, int] = {}
    terms = []
    for _, rt in built:
        count = seen.get(rt.group, 0)
        seen[rt.group] = count + 1
        name = rt.group if count == 0 else f"{rt.group}.{count}"
        terms.append(dataclasses.replace(rt, name=name))
    return design, tuple(terms), pos


# --------------------------------------------------------------------------
# the Laplace deviance


class _BlockChol:
    """Cholesky factor of ``Λ'Z'WZΛ + I`` in MixedModels.jl's blocked form.

    The first term (most levels) makes ``G`` diagonal blocks of ``k x k``;
    the other terms one dense block of ``q2 x q2``. With ``R12 = L11⁻¹ A12``,
    ``L22 L22' = A22 - R12'R12``: the cost is that of the small dense block,
    not of a dense ``q x q`` factorisation (lme4 gets the same from CHOLMOD's
    fill-reducing ordering).
    """

    def __init__(self, A11: np.ndarray, A12: np.ndarray, A22: np.ndarray):
        G, k, _ = A11.shape
        self.G, self.k = G, k
        self.L11 = np.linalg.cholesky(A11)  # (G, k, k)
        self.R12 = self._solve11(A12.reshape(G, k, -1), trans=False).reshape(G * k, -1)
        q2 = A22.shape[0]
        self.L22 = sla.cholesky(A22 - self.R12.T @ self.R12, lower=True, check_finite=False) if q2 else A22

    def _solve11(self, B: np.ndarray, trans: bool) -> np.ndarray:
        if self.k == 1:
            return B / self.L11
        L = np.swapaxes(self.L11, 1, 2) if trans else self.L11
        return np.linalg.solve(L, B)

    def logdet(self) -> float:
        """log|L|² (lme4's ldL2)."""
        d1 = np.diagonal(self.L11, axis1=1, axis2=2)
        return 2.0 * float(np.sum(np.log(d1)) + np.sum(np.log(np.diag(self.L22))))

    def fwd(self, r: np.ndarray) -> np.ndarray:
        """``L⁻¹ r`` for a vector or the columns of a matrix."""
        q1 = self.G * self.k
        r1, r2 = r[:q1], r[q1:]
        shape = (self.G, self.k, -1)
        c1 = self._solve11(r1.reshape(shape), trans=False).reshape(r1.shape)
        if not len(r2):
            return c1
        c2 = sla.solve_triangular(self.L22, r2 - self.R12.T @ c1, lower=True, check_finite=False)
        return np.concatenate([c1, c2])

    def bwd(self, c: np.ndarray) -> np.ndarray:
        """``L'⁻¹ c`` for a vector or the columns of a matrix."""
        q1 = self.G * self.k
        c1, c2 = c[:q1], c[q1:]
        if len(c2):
            x2 = sla.solve_triangular(self.L22, c2, lower=True, trans="T", check_finite=False)
            c1 = c1 - self.R12 @ x2
        else:
            x2 = c2
        x1 = self._solve11(c1.reshape(self.G, self.k, -1), trans=True).reshape(c1.shape)
        return np.concatenate([x1, x2])


class _Laplace:
    """lme4's Laplace deviance of one model, evaluated by lme4's PIRLS.

    lme4's deviance function is a deterministic function of its parameters
    that is not quite the exact Laplace approximation: every evaluation
    starts PIRLS from the same linear predictor ``lp0``, stops when the
    penalised deviance changes by less than ``tol_pwrss`` (relative), and
    takes log|L|² from the factor made with the weights before the last
    step. At lme4's default (1e-7) this moves the deviance by up to ~1e-3
    and lme4's finite-difference standard errors by up to ~1%, so the steps
    are followed as ``pwrssUpdate`` in lme4's ``external.cpp`` takes them.

    Lives only inside one :func:`glmer` call.
    """

    def __init__(self, X, y, wt, offset, terms, family: Family, tol_pwrss: float):
        self.X, self.y, self.wt, self.offset, self.family = X, y, wt, offset, family
        self.link = family.link
        self.tol = tol_pwrss
        n = len(y)
        self.ks = [t.k for t in terms]
        self.Zs = [t.Z for t in terms]
        self.K = sum(self.ks)
        cols, start = [], 0
        for t in terms:
            cols.append(start + t.codes[:, None] * t.k + np.arange(t.k)[None, :])
            start += t.n_levels * t.k
        self.q = start
        self.cols = np.concatenate(cols, axis=1)  # (n, K): the columns of ZΛ in each row
        self.indices = self.cols.reshape(-1)
        self.indptr = np.arange(0, n * self.K + 1, self.K)
        # The blocks of Λ'Z'WZΛ are assembled straight from the rows: with K
        # entries per row their products fall in fixed cells, summed by one
        # bincount each (no sparse-sparse product per PIRLS iteration).
        k1 = self.ks[0]
        self.G1, self.k1 = terms[0].n_levels, k1
        self.q1 = self.G1 * k1
        self.q2 = self.q - self.q1
        c1, c2 = self.cols[:, :k1], self.cols[:, k1:] - self.q1
        self.idx11 = (c1[:, :, None] * k1 + np.arange(k1)[None, None, :]).reshape(-1)
        self.idx12 = (c1[:, :, None] * self.q2 + c2[:, None, :]).reshape(-1)
        self.idx22 = (c2[:, :, None] * self.q2 + c2[:, None, :]).reshape(-1)
        self.diag2 = np.arange(self.q2) * (self.q2 + 1)
        self.nth = sum(k * (k + 1) // 2 for k in self.ks)
        # R's mustart: the response model's first linear predictor (offset excluded).
        mu0 = (wt * y + 0.5) / (wt + 1) if family.name == "binomial" else y + 0.1
        self.lp0 = self.link.linkfun(mu0) - offset
        self.shift = family.loglik_shift(y, wt)
        self.n_evals = 0

    def lam_z(self, theta: np.ndarray) -> sp.csr_matrix:
        Ts = _theta_to_T(theta, self.ks)
        data = np.concatenate([Z @ T for Z, T in zip(self.Zs, Ts)], axis=1).reshape(-1)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(len(self.y), self.q))

    def factor(self, data: np.ndarray, W: np.ndarray) -> _BlockChol:
        """The factor of ``Λ'Z'WZΛ + I`` from ZΛ's row entries ``data`` (n, K)."""
        k1, q2 = self.k1, self.q2
        d1, d2 = data[:, :k1], data[:, k1:]
        wd1 = d1 * W[:, None]
        A11 = np.bincount(self.idx11, weights=(wd1[:, :, None] * d1[:, None, :]).reshape(-1), minlength=self.q1 * k1)
        A11 = A11.reshape(self.G1, k1, k1)
        A11 += np.eye(k1)
        A12 = np.bincount(self.idx12, weights=(wd1[:, :, None] * d2[:, None, :]).reshape(-1), minlength=self.q1 * q2)
        A22 = np.bincount(self.idx22, weights=((d2 * W[:, None])[:, :, None] * d2[:, None, :]).reshape(-1), minlength=q2 * q2)
        A22 = A22.astype(float).reshape(q2, q2)  # bincount of no rows is int
        A22.flat[self.diag2] += 1.0
        return _BlockChol(A11, A12.astype(float).reshape(self.q1, q2), A22)

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None = None, exact: bool = False) -> _Pirls:
        """lme4's ``pwrssUpdate`` at θ: over u given β, or over (u, β) when β is None (nAGQ = 0).

        Fisher scoring from ``lp0``; a step that raises the penalised deviance
        is halved (up to 10 times); stops when the penalised deviance changes
        by less than ``tol`` relative. L is the factor of the last iteration.
        With ``exact``, PIRLS runs on to a 1e-11 change and L is made at the
        final modes: the exact Laplace deviance, smooth in the parameters.
        """
        tol = 1e-11 if exact else self.tol
        X, y, wt, fam, link = self.X, self.y, self.wt, self.family, self.link
        joint = beta is None and X.shape[1] > 0
        A = self.lam_z(theta)
        At = A.T  # a CSC view: no copy
        data = A.data.reshape(-1, self.K)
        off = self.offset if beta is None or not len(beta) else self.offset + X @ beta
        eta = self.lp0 + self.offset
        mu = link.linkinv(eta)
        du, db = np.zeros(self.q), np.zeros(X.shape[1])
        oldpdev = np.finfo(float).max

        def update(du, db):
            e = off + A @ du
            if joint:
                e = e + X @ db
            m = link.linkinv(e)
            return e, m, float(fam.dev_resids(y, m, wt).sum() + du @ du)

        for _ in range(30):
            olddu, olddb = du, db
            mu_eta = link.mu_eta(eta)
            var = fam.variance(mu)
            W = wt * mu_eta**2 / var
            z = eta - off + (y - mu) / mu_eta  # the working response, offset excluded
            L = self.factor(data, W)
            cu = L.fwd(At @ (W * z))
            if joint:
                WX = W[:, None] * X
                RZX = L.fwd(At @ WX)
                RX = sla.cholesky(X.T @ WX - RZX.T @ RZX, lower=True, check_finite=False)
                cb = sla.solve_triangular(RX, WX.T @ z - RZX.T @ cu, lower=True, check_finite=False)
                db = sla.solve_triangular(RX.T, cb, lower=False, check_finite=False)
                cu = cu - RZX @ db
            du = L.bwd(cu)
            eta, mu, pdev = update(du, db)
            if abs((oldpdev - pdev) / pdev) < tol:
                if exact:
                    mu_eta = link.mu_eta(eta)
                    L = self.factor(data, wt * mu_eta**2 / fam.variance(mu))
                return _Pirls(du, db if joint else None, eta, mu, L, pdev, RX if joint else None)
            if not np.isfinite(pdev) or pdev > oldpdev:
                for _ in range(10):
                    du, db = (olddu + du) / 2, (olddb + db) / 2
                    eta, mu, pdev = update(du, db)
                    if np.isfinite(pdev) and pdev <= oldpdev:
                        break
                if not np.isfinite(pdev) or pdev - oldpdev > tol:
                    raise PirlsError(f"PIRLS step-halvings failed to reduce the deviance at θ = {theta}")
            oldpdev = pdev
        raise PirlsError(f"PIRLS did not converge in 30 iterations at θ = {theta}")

    def laplace(self, theta, beta=None, exact: bool = False) -> float:
        """lme4's Laplace deviance: nAGQ = 1 given β, nAGQ = 0 (β in PIRLS) without."""
        self.n_evals += 1
        try:
            r = self.pirls(np.asarray(theta, dtype=float), beta, exact)
        except (PirlsError, np.linalg.LinAlgError):
            return np.inf
        return r.value(self)

    def f_all(self, par: np.ndarray) -> float:
        """lme4's deviance function of stage 2, of (θ, β)."""
        return self.laplace(par[: self.nth], par[self.nth :])

    def f_exact(self, par: np.ndarray) -> float:
        return self.laplace(par[: self.nth], par[self.nth :], exact=True)

    def set_lp0(self, r: _Pirls) -> None:
        """Start later PIRLS from this one's linear predictor (lme4's ``lp0 <- pp$linPred(1)``)."""
        self.lp0 = r.eta - self.offset


@dataclass(frozen=True)
class _Pirls:
    u: np.ndarray
    beta: np.ndarray | None
    eta: np.ndarray
    mu: np.ndarray
    L: _BlockChol
    pdev: float
    RX: np.ndarray | None = None  # lower Cholesky factor of β's Schur complement (joint PIRLS)

    def value(self, prob: _Laplace) -> float:
        """ldL2 + |u|² + -2 log p(y | u): pdev holds the deviance and |u|²."""
        return float(self.L.logdet() + self.pdev + prob.shift)


def _deriv12(f, x: np.ndarray, fx: float, delta: float = _DELTA):
    """lme4's ``deriv12``: central-difference gradient and Hessian, step ``delta``."""
    m = len(x)
    g = np.empty(m)
    H = np.empty((m, m))
    for j in range(m):
        e = np.zeros(m)
        e[j] = delta
        fa, fs = f(x + e), f(x - e)
        H[j, j] = (fa - 2 * fx + fs) / delta**2
        g[j] = (fa - fs) / (2 * delta)
        for i in range(j):
            e2 = np.zeros(m)
            e2[i] = delta
            v = f(x + e2 + e) - f(x + e2 - e) - f(x - e2 + e) + f(x - e2 - e)
            H[i, j] = H[j, i] = v / (4 * delta**2)
    return g, H


def _central_grad(f, x: np.ndarray) -> np.ndarray:
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    g = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h[j]
        g[j] = (f(x + e) - f(x - e)) / (2 * h[j])
    return g


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


def _optimize(prob: _Laplace, lower: np.ndarray):
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
        fe, xz0, jac=lambda x: _central_grad(fe, x), method="L-BFGS-B", bounds=bounds,
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
# printing as R prints


def _decimals(v: float, digits: int) -> int:
    """Decimals R's ``format(v, digits=)`` needs for ``digits`` significant digits."""
    if v == 0 or not np.isfinite(v):
        return 0
    e = math.floor(math.log10(abs(v)))
    dec = max(0, digits - 1 - e)
    s = f"{abs(v):.{dec}f}"
    if "." in s:
        s = s.rstrip("0")
        return len(s.split(".")[1]) if "." in s else 0
    return 0


def _rformat(values, digits: int) -> list[str]:
    """R's ``format(x, digits=)`` of a vector: common decimals, fixed notation."""
    vals = [float(v) for v in values]
    dec = max((_decimals(v, digits) for v in vals), default=0)
    return [f"{v:.{dec}f}" for v in vals]


def _rformat_sci(values, digits: int) -> list[str]:
    vals = [float(v) for v in values]
    sig = 1
    for v in vals:
        m = f"{v:.{digits - 1}e}".split("e")[0].rstrip("0").rstrip(".")
        sig = max(sig, len(m.replace("-", "").replace(".", "")))
    out = []
    for v in vals:
        mant, ex = f"{v:.{sig - 1}e}".split("e")
        out.append(f"{mant}e{int(ex):+03d}")
    return out


def _format_pval(p: np.ndarray, digits: int = 3) -> list[str]:
    """R's ``format.pval`` with printCoefmat's settings."""
    eps = np.finfo(float).eps
    out = [""] * len(p)
    small = p < eps
    rest = np.flatnonzero(~small)
    expo = np.floor(np.log10(np.where(p > 0, p, 1e-50)))
    fixp = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
    sci = [i for i in rest if i not in fixp]
    for i, s in zip(fixp, _rformat(p[fixp], digits)):
        out[i] = s
    for i, s in zip(sci, _rformat_sci(p[sci], digits)):
        out[i] = s
    for i in np.flatnonzero(small):
        out[i] = "< 2e-16"
    return out


def _stars(p: float) -> str:
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return " "


def _abbreviate(name: str, minlength: int) -> str:
    """R's ``abbreviate(name, minlength)`` for one name without spaces.

    Lower-case vowels go first, from the right, then lower-case letters,
    then any character; the first character stays.
    """
    chars = list(name)
    for drop in (lambda c: c in "aeiou", str.islower, lambda c: True):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if drop(chars[i]):
                del chars[i]
            i -= 1
    return "".join(chars)


def _corr_table(vcov: np.ndarray, names: list[str]) -> list[str]:
    """lme4's "Correlation of Fixed Effects" block (none for one effect)."""
    p = len(names)
    if p < 2:
        return []
    if p > 12:
        return [
            "",
            f"Correlation matrix not shown by default, as p = {p} > 12.",
            "Use print(x, correlation=TRUE)  or",
            "    vcov(x)        if you need it",
        ]
    sd = np.sqrt(np.diag(vcov))
    corr = vcov / np.outer(sd, sd)
    cells = [f"{v:.3f}" for v in np.round(corr, 3).ravel()]
    w = max(len(c) for c in cells)
    cells = np.array([c.rjust(w) for c in cells]).reshape(p, p)
    rows = [_abbreviate(n, 11) for n in names]
    cols = [_abbreviate(n, 6) for n in names]
    wr = max(len(r) for r in rows[1:])
    widths = [max(w, len(c)) for c in cols[:-1]]
    lines = ["", "Correlation of Fixed Effects:"]
    lines.append(" " * wr + " " + " ".join(c.ljust(cw) for c, cw in zip(cols[:-1], widths)))
    for i in range(1, p):
        vals = [cells[i, j] if j < i else "" for j in range(p - 1)]
        lines.append(rows[i].ljust(wr) + " " + " ".join(v.ljust(cw) for v, cw in zip(vals, widths)))
    return lines


def _coef_table(est: np.ndarray, se: np.ndarray, names) -> list[str]:
    """printCoefmat(digits = 4) of estimates, SEs, z values and p-values."""
    digits = 4
    acs = np.abs(np.concatenate([est, se]))
    acs = acs[np.isfinite(acs) & (acs != 0)]
    digmin = 1 + np.floor(np.log10([acs.min(), acs.max()])) if len(acs) else np.zeros(2)
    dec = int(max(1, *(digits - digmin)))
    cs = _rformat(np.round(np.concatenate([est, se]), dec), digits)
    z = est / se
    zs = _rformat(np.round(z, 3), digits)
    p = 2 * st.norm.sf(np.abs(z))
    ps = _format_pval(p)
    stars = [_stars(v) for v in p]
    cols = [
        ("Estimate", cs[: len(est)]),
        ("Std. Error", cs[len(est):]),
        ("z value", zs),
        ("Pr(>|z|)", ps),
    ]
    w0 = max(len(n) for n in names)
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines = [" " * w0 + " " + " ".join(h.rjust(w) for (h, _), w in zip(cols, widths)) + "    "]
    for i, name in enumerate(names):
        cells = " ".join(vals[i].rjust(w) for (_, vals), w in zip(cols, widths))
        lines.append(f"{name.ljust(w0)} {cells} {stars[i].ljust(3)}")
    lines.append("---")
    lines.append("Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1")
    return lines


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
        out, pos = {}, 0
        Ts = _theta_to_T(self.theta, [t.k for t in self.terms])
        for t, T in zip(self.terms, Ts):
            size = t.n_levels * t.k
            b = self._u[pos : pos + size].reshape(t.n_levels, t.k) @ T.T
            pos += size
            out[t.name] = pd.DataFrame(b, index=pd.Index(t.levels, name=t.name), columns=list(t.terms))
        return out

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
        lines.extend(_coef_table(self.fixef.to_numpy(), self.se.to_numpy(), list(self.fixef.index)))
        lines.extend(_corr_table(self._vcov, list(self.fixef.index)))
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
        vs, ss = _rformat(var_, 4), _rformat(sd_, 4)
        has_corr = any(corr_)
        cs = [" ".join(f"{v:.2f}" for v in cr) for cr in corr_]
        head = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])
        table = [head] + [[g, n, v, s] + ([c] if has_corr else []) for (g, n), v, s, c in zip(rows, vs, ss, cs)]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        return [" " + " ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table]

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True, eq=False)
class GlmmData:
    """A GLMM's arrays: the design and the response as R's ``glm`` holds it.

    Attributes
    ----------
    family : Family
    design : Design
        Its ``y`` is the response below; ``terms`` may differ from ``design.terms``.
    terms : tuple of ReTerm
        In lme4's order, including observation-level terms (one level per row).
    y : ndarray (n,)
        Proportions (binomial) or counts (Poisson).
    weights : ndarray (n,)
        Prior weights: the binomial's trials times any ``weights=``.
    offset : ndarray (n,)
        The whole offset (the formula's and ``offset=``).
    label : str
        The response as written (``cbind(incidence, size - incidence)``).
    formula : str
        The formula as given, response included.
    frame : DataFrame
        The kept rows of the columns the formula, weights and offset read
        (what rebuilds the model: saving, loading, refitting); ``weights=`` or
        ``offset=`` given as arrays are its columns ``(weights)``, ``(offset)``.
    weights_spec, offset_spec : str or None
        The column name or expression of ``frame`` each was read from.
    """

    family: Family
    design: Design
    terms: tuple
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    label: str
    formula: str = ""
    frame: pd.DataFrame | None = None
    weights_spec: str | None = None
    offset_spec: str | None = None

    # what default_priors (and design.moments) read of a design: rows in memory, no sums
    sums = None

    @property
    def X(self) -> np.ndarray:
        return self.design.X

    @property
    def p(self) -> int:
        return self.design.p

    @property
    def fixed_names(self) -> tuple:
        return self.design.fixed_names


def glmm_design(formula, data: pd.DataFrame, family: Family, weights=None, offset=None) -> GlmmData:
    """The design and response of a binomial or Poisson mixed model (see :func:`glmer`).

    Raises
    ------
    FamilyError, DesignError
        A response outside the family's range (naming the column and the rows), a
        bad ``weights=``/``offset=``.
    """
    fam = family
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    lhs, f = _split_response(formula)
    # pandas' extension dtypes (Int64, string, pyarrow's) as NumPy's, pd.NA as NaN, for the
    # response, weights and offset; build_design reads its columns so itself, after dropping rows
    plain = plain_frame(data)
    resp = _response(lhs, plain, fam, weights)
    if offset is None:
        off_all = np.zeros(len(data))
    elif isinstance(offset, str):
        off_all = _evaluate(offset, plain, f"offset {offset!r}")
    else:
        off_all = np.asarray(offset, dtype=float).reshape(-1)
        if off_all.shape[0] != len(data):
            raise DesignError(f"offset has {off_all.shape[0]} values for {len(data)} rows")
    design, terms, pos = _design(f, data, resp, off_all)
    y, wt, off = resp.y[pos], resp.wt[pos], off_all[pos]
    design_offset = getattr(design, "offset", None)
    if design_offset is not None:
        off = off + np.asarray(design_offset, dtype=float)
    fam.validate(y, wt, resp.label, data.index[pos])
    text = f"{formula} {weights if isinstance(weights, str) else ''} {offset if isinstance(offset, str) else ''}"
    cols = [c for c in data.columns if re.search(r"(?<![\w.])" + re.escape(str(c)) + r"(?![\w.])", text)]
    frame = plain_frame(data.iloc[pos][cols]).copy()
    specs = []
    for arg, name in ((weights, "(weights)"), (offset, "(offset)")):
        if arg is None or isinstance(arg, str):
            specs.append(arg)
        else:
            frame[name] = np.asarray(arg, dtype=float).reshape(-1)[pos]
            specs.append(name)
    formula_text = " ".join(formula.split()) if isinstance(formula, str) else str(formula)
    return GlmmData(fam, design, terms, y, wt, off, resp.label, formula_text, frame, *specs)


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
    prob = _Laplace(X, y, wt, off, terms, fam, tol_pwrss)
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


def _vcov(H, nth, prob: _Laplace, theta, beta, messages: list[str]) -> np.ndarray:
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
    A = prob.lam_z(theta)
    r = prob.pirls(theta, beta)
    L, mu = r.L, r.mu
    W = prob.wt * prob.link.mu_eta(r.eta) ** 2 / prob.family.variance(mu)
    WX = W[:, None] * prob.X
    RZX = L.fwd(A.T @ WX)
    return np.linalg.inv(prob.X.T @ WX - RZX.T @ RZX)
