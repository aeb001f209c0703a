"""One optimizer driver for the profiled criterion, with its tolerances in one settings object.

Modelled on MixedModels.jl's ``OptSummary``: :class:`OptSettings` holds every
tolerance and bound of the search, :class:`OptSummary` what the search did.
L-BFGS-B on the exact gradient, from lme4's start (Λ = I) or a moment start
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
import scipy.optimize as sopt

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
    optimizer: str = "L-BFGS-B"


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


def optimize(prob, design, settings: OptSettings = OptSettings()) -> OptSummary:
    """Minimise ``prob.deviance`` over θ within lme4's bounds.

    ``prob`` has ``ks``, ``expensive``, ``deviance(θ)`` and ``deviance_grad(θ)``
    (see :class:`bayesmer.engine.profiled.Profiled`).
    """
    s = settings
    ks = prob.ks
    theta0 = theta_start(ks)
    lower = theta_lower(ks)
    diag = lower == 0
    vec_diag = np.concatenate([np.full(k * (k + 1) // 2, k > 1) for k in ks]) & diag
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    n_evals = [0]

    def f(theta):
        n_evals[0] += 1
        return prob.deviance(theta)

    last: list = [None, None]  # L-BFGS-B evaluates its last point again

    def fg(theta):
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if key == last[0]:
            f0, g0 = last[1]
            return f0, g0.copy()
        out = fg_eval(theta)
        last[0], last[1] = key, (out[0], out[1].copy())
        return out

    def fg_eval(theta):
        # where a diagonal of a several-column term is 0, T⁻¹ does not exist: forward differences
        if not np.any(vec_diag & (theta < 1e-8)):
            n_evals[0] += 1
            return prob.deviance_grad(theta)
        f0 = f(theta)
        g = np.empty_like(theta)
        for i in range(len(theta)):
            h = 1e-7 * max(1.0, abs(theta[i]))
            e = np.zeros_like(theta)
            e[i] = h
            g[i] = (f(theta + e) - f0) / h
        return f0, g

    opts = {"ftol": s.ftol, "gtol": s.gtol, "maxiter": s.maxiter, "maxfun": s.maxfun}
    start = _moment_start(design, theta0)
    if start is not None:
        start = np.where(diag, np.maximum(start, 5 * s.floor), start)
        if f(start) < f(theta0):
            theta0 = start
    res = sopt.minimize(
        fg, theta0, jac=True, method="L-BFGS-B", options=opts,
        bounds=[(s.floor if lo == 0 else b[0], None) for lo, b in zip(lower, bounds)],
    )
    if np.any(diag & (res.x <= s.floor * (1 + 1e-9))):
        res = sopt.minimize(fg, res.x, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    theta, fval = res.x, float(res.fun)
    message = str(res.message)
    near = diag & (theta < 1e-3)
    if near.any():
        probes = [(f(np.where(near, v, theta)), v) for v in s.probes]
        fp, v = min(probes)
        if fp < fval:
            res_b = sopt.minimize(fg, np.where(near, v, theta), jac=True, method="L-BFGS-B",
                                  bounds=bounds, options=opts)
            if res_b.fun < fval - 1e-9:
                theta, fval, message = res_b.x, float(res_b.fun), str(res_b.message)
    small = diag & (theta < s.snap_below)
    if small.any():
        snapped = np.where(small, 0.0, theta)
        fs = f(snapped)
        if fs <= fval + 1e-9:
            theta, fval = snapped, fs
    # Newton steps on the free coordinates with one forward-difference Hessian of the exact
    # gradient; the same Hessian scales lme4's convergence check
    free = ~(diag & (theta < 1e-6))
    idx = np.flatnonzero(free)
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
