"""One optimizer driver for the profiled criterion, with its tolerances in one settings object.

Modelled on MixedModels.jl's ``OptSummary``: :class:`OptSettings` holds every
tolerance and bound of the search, :class:`OptSummary` what the search did.
A bounded quasi-Newton search on the exact gradient (projected BFGS with
L-BFGS-B's stopping rules, the whole search one compiled call:
:func:`bayesmer.engine._kernel.profiled_minimize`), from lme4's start (Λ = I) or a moment start
when that is better; a first pass keeps the diagonals off 0 (d is even in a
scalar term's θ, so its gradient vanishes at 0 and a search can stall there),
probes of small interior values for diagonals that end near 0, a snap to the
boundary where that is no worse (lme4 ends on it), Newton steps with a
finite-difference Hessian of the exact gradient, and lme4's scaled-gradient
convergence check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .theta import theta_lower, theta_start

__all__ = ["OptSettings", "OptSummary", "optimize"]


@dataclass(frozen=True)
class OptSettings:
    """Tolerances and bounds of the θ search."""

    ftol: float = 1e-11
    gtol: float = 1e-7
    maxiter: int = 1000
    maxfun: int = 10_000
    #: the first pass keeps diagonals at or above this
    floor: float = 1e-2
    #: interior values tried for diagonals that end near 0
    probes: tuple = (0.1, 0.01)
    #: diagonals below this are tried at exactly 0
    snap_below: float = 1e-4
    #: forward-difference step of the Hessian, relative
    hess_step: float = 1e-6
    newton_steps: int = 3
    newton_steps_expensive: int = 2
    #: lme4's check.conv.grad tolerance on the scaled gradient
    conv_grad: float = 2e-3
    #: lme4's isSingular tolerance on θ's diagonals
    singular_tol: float = 1e-4


@dataclass(frozen=True)
class OptSummary:
    """What the search did."""

    theta_initial: np.ndarray
    theta: np.ndarray
    fval: float
    converged: bool
    message: str
    n_evaluations: int
    gradient: np.ndarray = field(repr=False)
    settings: OptSettings = field(repr=False)
    optimizer: str = "projected BFGS (compiled)"


def _moment_start(design, theta0: np.ndarray) -> np.ndarray | None:
    """θ from moments for the intercept-only terms (the others keep Λ = I).

    Per grouping factor, the spread of the group means of the OLS residuals
    beyond what the within-group variance explains; σ² the smallest
    within-group variance. Only a start: the caller keeps Λ = I where that
    gives the lower criterion.
    """
    if not any(t.k == 1 and np.all(t.Z == 1.0) for t in design.terms):
        return None
    X, y = design.X, design.y
    if getattr(design, "offset", None) is not None:
        y = y - design.offset
    r = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if design.p else y - 0.0
    n = len(r)
    s2, within = [], []
    for t in design.terms:
        G = t.n_levels
        cnt = np.bincount(t.codes, minlength=G).astype(float)
        cnt[cnt == 0] = 1.0
        m = np.bincount(t.codes, weights=r, minlength=G) / cnt
        within.append(float(((r - m[t.codes]) ** 2).sum()) / max(n - G, 1))
        between = float(np.mean((m - r.mean()) ** 2))
        s2.append(max(between - within[-1] * float(np.mean(1.0 / cnt)), 0.0))
    sig2 = min(within)
    if not sig2 > 0:
        return None
    out, pos = theta0.copy(), 0
    for t, v in zip(design.terms, s2):
        if t.k == 1 and np.all(t.Z == 1.0):
            out[pos] = math.sqrt(v / sig2)
        pos += t.k * (t.k + 1) // 2
    return out


def _check_convergence(g: np.ndarray, H: np.ndarray | None, message: str, tol: float) -> tuple[bool, str]:
    """lme4's check.conv.grad (the gradient scaled by the Hessian's Cholesky factor), and the curvature."""
    mingrad = np.abs(g)
    if len(g) and H is not None and H.shape[0] == len(g):
        try:
            R = np.linalg.cholesky(H).T
            mingrad = np.minimum(mingrad, np.abs(np.linalg.solve(R, g)))
        except np.linalg.LinAlgError:
            pass
    gmax = float(np.max(mingrad)) if len(g) else 0.0
    converged = gmax < tol
    if not converged:
        message = f"{message}; gradient {gmax:.3g} at the optimum"
    if H is not None and len(g) and np.any(np.diag(H) < 0):
        converged = False
        message = f"{message}; negative curvature at the optimum"
    return converged, message


_STATUS = (
    "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
    "CONVERGENCE: RELATIVE REDUCTION OF F <= FTOL",
    "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
    "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
    "ABNORMAL: NO DESCENT FOUND IN THE LINE SEARCH",
    "ABNORMAL: THE CRITERION IS NOT FINITE AT THE START",
)


def optimize(prob, design, settings: OptSettings = OptSettings()) -> OptSummary:
    """Minimise ``prob.deviance`` over θ within lme4's bounds.

    ``prob`` has ``ks``, ``expensive``, ``deviance(θ)``, ``fg(θ, vec_diag)`` and
    ``minimize(...)`` (see :class:`bayesmer.engine.profiled.Profiled`): each search is one
    compiled call, with no Python per evaluation.
    """
    s = settings
    ks = prob.ks
    theta0 = theta_start(ks)
    lower = theta_lower(ks)
    diag = lower == 0
    # where a diagonal of a several-column term is 0, T⁻¹ does not exist: forward differences there
    vec_diag = np.concatenate([np.full(k * (k + 1) // 2, k > 1) for k in ks]) & diag
    n_evals = [0]

    def f(theta):
        n_evals[0] += 1
        return prob.deviance(theta)

    def fg(theta):
        d, g, k = prob.fg(theta, vec_diag)
        n_evals[0] += k
        return d, g

    def search(x0, lo):
        x, d, g, nfev, _, status = prob.minimize(x0, lo, vec_diag, s.ftol, s.gtol, s.maxiter, s.maxfun)
        n_evals[0] += nfev
        return x, d, g, _STATUS[status]

    start = _moment_start(design, theta0)
    if start is not None:
        start = np.where(diag, np.maximum(start, 5 * s.floor), start)
        if f(start) < f(theta0):
            theta0 = start
    theta, fval, g_all, message = search(theta0, np.where(diag, s.floor, lower))
    if np.any(diag & (theta <= s.floor * (1 + 1e-9))):
        theta, fval, g_all, message = search(theta, lower)
    near = diag & (theta < 1e-3)
    if near.any():
        probes = [(f(np.where(near, v, theta)), v) for v in s.probes]
        fp, v = min(probes)
        if fp < fval:
            x_b, f_b, g_b, msg_b = search(np.where(near, v, theta), lower)
            if f_b < fval - 1e-9:
                theta, fval, g_all, message = x_b, f_b, g_b, msg_b
    small = diag & (theta < s.snap_below)
    if small.any():
        snapped = np.where(small, 0.0, theta)
        fs = f(snapped)
        if fs <= fval + 1e-9:
            theta, fval = snapped, fs
            g_all = None
    # Newton steps on the free coordinates with one forward-difference Hessian of the exact
    # gradient; the same Hessian scales lme4's convergence check
    free = ~(diag & (theta < 1e-6))
    idx = np.flatnonzero(free)
    if g_all is None:
        _, g_all = fg(theta)
    g = g_all[idx]
    H = None
    tol = 1e-13 * max(1.0, abs(fval))
    if len(idx) and np.max(np.abs(g)) > tol:
        H = np.zeros((len(idx), len(idx)))
        for a, i in enumerate(idx):
            h = s.hess_step * max(1.0, abs(theta[i]))
            e = np.zeros_like(theta)
            e[i] = h
            H[a] = (fg(theta + e)[1][idx] - g) / h
        H = (H + H.T) / 2
        try:
            np.linalg.cholesky(H)
            H_ok = True
        except np.linalg.LinAlgError:
            H_ok = False
        for _ in range(s.newton_steps_expensive if prob.expensive else s.newton_steps):
            if not H_ok or np.max(np.abs(g)) <= tol:
                break
            step = -np.linalg.solve(H, g)
            cap = 0.1 * np.maximum(1.0, np.abs(theta[idx]))
            step *= min(1.0, float(np.min(cap / np.maximum(np.abs(step), 1e-300))))
            cand = theta.copy()
            cand[idx] += step
            cand = np.maximum(cand, lower)
            fc, gc = fg(cand)
            # d is known to ~1e-15 relative near the optimum: accept a step that does not
            # raise it beyond that and shrinks the gradient
            if not (fc <= fval + 1e-14 * abs(fval) and np.max(np.abs(gc[idx])) < np.max(np.abs(g))):
                break
            theta, fval, g = cand, min(fc, fval), gc[idx]
    converged, message = _check_convergence(g, H, message, s.conv_grad)
    return OptSummary(theta_initial=theta0, theta=theta, fval=fval, converged=converged, message=message,
                      n_evaluations=n_evals[0], gradient=g, settings=s)
