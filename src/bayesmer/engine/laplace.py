"""The Laplace maximum-likelihood fit of a mixed model of any response family, as glmmTMB computes it.

With b = Λ(θ)u and u ~ N(0, I), the random effects' conditional mode û
minimises ``h(u) = -Σ log p(y_i | η_i, dpars) + ½|u|²`` with
``η = Xβ + offset + ZΛu``, found by Newton's method on the exact Hessian
``H = Λ'Z'DZΛ + I``, D the diagonal of ``-∂² log p / ∂η²`` (observed
information, as TMB's automatic differentiation gives it). The Laplace
approximation of the marginal likelihood is then

    -log L(β, θ, dpars) ≈ h(û) + ½ log|H(û)|

(the same value glmmTMB's objective takes in its own parameterisation of the
random effects: the Jacobians cancel). It is minimised jointly over β, θ and
the dpars' unconstrained values (L-BFGS-B on central-difference gradients,
then Newton steps on a finite-difference Hessian); the covariance of the
estimates is the inverse of that Hessian (glmmTMB's ``sdreport``; the fixed
effects' block does not depend on how θ and the dpars are parameterised at
the optimum).

``Λ'Z'DZΛ + I`` is assembled and factored by :mod:`bayesmer.glmer`'s
blocked Cholesky (``_Laplace.lam_z``/``factor``, ``_BlockChol``), imported
rather than copied: ZΛ is one CSR row of K entries per observation, the
first (largest) term makes k x k diagonal blocks, the rest one dense block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize as sopt

from ..families.base import ResponseFamily
from .theta import n_theta, tri_index

__all__ = ["LaplaceModel", "LaplaceResult", "fit_laplace", "fd_hessian"]


class InnerError(RuntimeError):
    """Newton's method found no conditional mode."""


class LaplaceModel:
    """One model's Laplace objective: data, terms and family, no estimates.

    Parameters
    ----------
    X : (n, p) array
    y, wt, offset : (n,) arrays
    terms : tuple of ReTerm (lme4's order: the term with most levels first)
    family : ResponseFamily
    """

    def __init__(self, X, y, wt, offset, terms, family: ResponseFamily):
        from ..family import get_family as _glm_family
        from ..glmer import _Laplace

        n = len(y)
        # glmer's structure of ZΛ and of the blocks of Λ'Z'WZΛ + I (its family is not used here)
        self._s = _Laplace(np.asarray(X, float), np.ones(n), np.ones(n), np.zeros(n), terms,
                           _glm_family("poisson"), 1e-7)
        self.X, self.y, self.wt, self.offset, self.family = np.asarray(X, float), y, wt, offset, family
        self.terms = terms
        self.ks = [t.k for t in terms]
        self.nth = n_theta(self.ks)
        self.p = self.X.shape[1]
        self.q = self._s.q
        self.u = np.zeros(self.q)  # warm start of the inner Newton
        self.n_evals = 0
        self.theta_lower = np.concatenate([np.where(r == c, 0.0, -np.inf) for r, c in (tri_index(k) for k in self.ks)])

    # -- the parameter vector x = (β, θ, dpars unconstrained)
    def split(self, x):
        p, nth = self.p, self.nth
        return x[:p], x[p : p + nth], self.family.unpack(x[p + nth :])

    def mode(self, beta, theta, dp, u0=None):
        """û, η, the factor of H at û and h(û); raises InnerError."""
        fam, y, wt = self.family, self.y, self.wt
        A = self._s.lam_z(theta)
        At = A.T
        data = A.data.reshape(-1, self._s.K)
        fixed = self.offset + self.X @ beta
        u = np.zeros(self.q) if u0 is None else u0.copy()
        eta = fixed + A @ u
        h = -float(np.sum(fam.logpdf(y, eta, dp, wt))) + 0.5 * float(u @ u)
        if not np.isfinite(h):
            u = np.zeros(self.q)
            eta = fixed.copy()
            h = -float(np.sum(fam.logpdf(y, eta, dp, wt)))
            if not np.isfinite(h):
                raise InnerError("the log density is not finite at u = 0")
        for _ in range(100):
            d1, d2 = fam.derivs(y, eta, dp, wt)
            W = -d2
            if not np.all(np.isfinite(W)):
                raise InnerError("non-finite second derivative")
            try:  # Newton on the exact Hessian while it is positive definite
                L = self._s.factor(data, W)
            except np.linalg.LinAlgError:  # else a descent direction: D clamped where log p is not concave
                L = self._s.factor(data, np.maximum(W, 1e-10))
            g = At @ d1 - u
            step = L.bwd(L.fwd(g))
            dec = float(g @ step)
            if dec < 1e-30 or np.max(np.abs(step)) < 1e-15:
                break
            t = 1.0
            while True:
                un = u + t * step
                en = fixed + A @ un
                hn = -float(np.sum(fam.logpdf(y, en, dp, wt))) + 0.5 * float(un @ un)
                if np.isfinite(hn) and hn <= h - 1e-4 * t * dec + 1e-12 * abs(h):
                    break
                t *= 0.5
                if t < 1e-10:
                    raise InnerError("step halving failed")
            u, eta, h = un, en, hn
            if np.max(np.abs(t * step)) < 1e-9 and t == 1.0:
                break  # a full Newton step this small: the next would be ~1e-18
        else:
            raise InnerError("Newton's method did not converge in 100 iterations")
        d1, d2 = fam.derivs(y, eta, dp, wt)
        L = self._s.factor(data, -d2)  # the exact Hessian at the mode (LinAlgError when not PD)
        return u, eta, L, h

    def objective(self, x) -> float:
        """-log L at x (Laplace); inf where the inner problem fails."""
        self.n_evals += 1
        beta, theta, dp = self.split(np.asarray(x, float))
        try:
            try:
                u, eta, L, h = self.mode(beta, theta, dp, self.u)
            except (InnerError, np.linalg.LinAlgError, FloatingPointError):
                u, eta, L, h = self.mode(beta, theta, dp, None)
        except (InnerError, np.linalg.LinAlgError, FloatingPointError):
            return np.inf
        self.u = u
        return h + 0.5 * L.logdet()

    def start(self) -> np.ndarray:
        """Starting values: a fixed-effects fit (Newton on β with the dpars' start), θ = 1."""
        fam, X, y, wt = self.family, self.X, self.y, self.wt
        dp = fam.init_dpars(y, wt)
        beta = np.zeros(self.p)
        for _ in range(50):
            eta = self.offset + X @ beta
            d1, d2 = fam.derivs(y, eta, dp, wt)
            W = np.maximum(-d2, 1e-10)
            try:
                step = np.linalg.solve(X.T @ (W[:, None] * X) + 1e-8 * np.eye(self.p), X.T @ d1)
            except np.linalg.LinAlgError:
                break
            f0 = np.sum(fam.logpdf(y, eta, dp, wt))
            t = 1.0
            while t > 1e-6:
                f1 = np.sum(fam.logpdf(y, self.offset + X @ (beta + t * step), dp, wt))
                if np.isfinite(f1) and f1 >= f0:
                    break
                t /= 2
            beta = beta + t * step
            if np.max(np.abs(t * step), initial=0) < 1e-8:
                break
        theta = np.concatenate([np.eye(k)[tri_index(k)] for k in self.ks])
        return np.concatenate([beta, theta, fam.pack(dp)])


def _central_grad(f, x, h=None):
    h = 1e-6 * np.maximum(1.0, np.abs(x)) if h is None else h
    g = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h[j]
        g[j] = (f(x + e) - f(x - e)) / (2 * h[j])
    return g


def _forward_grad(f, x):
    fx = f(x)
    h = 1e-7 * np.maximum(1.0, np.abs(x))
    g = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h[j]
        g[j] = (f(x + e) - fx) / h[j]
    return g


def fd_hessian(f, x, fx=None, rel=1e-4):
    """Central-difference gradient and Hessian of f at x (steps ``rel * max(1, |x|)``)."""
    m = len(x)
    fx = f(x)  # afresh, with the neighbours' warm start (a value from elsewhere may differ by 1e-12)
    h = rel * np.maximum(1.0, np.abs(x))
    g, H = np.empty(m), np.empty((m, m))
    for j in range(m):
        ej = np.zeros(m)
        ej[j] = h[j]
        fa, fs = f(x + ej), f(x - ej)
        g[j] = (fa - fs) / (2 * h[j])
        H[j, j] = (fa - 2 * fx + fs) / h[j] ** 2
        for i in range(j):
            ei = np.zeros(m)
            ei[i] = h[i]
            v = f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
            H[i, j] = H[j, i] = v / (4 * h[i] * h[j])
    return g, H


@dataclass(frozen=True)
class LaplaceResult:
    """The optimum: x = (β, θ, dpars unconstrained), -log L, its Hessian there, û and η."""

    x: np.ndarray
    fun: float
    grad: np.ndarray
    hessian: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    converged: bool
    message: str
    n_evals: int


def fit_laplace(model: LaplaceModel, x0=None, report=None) -> LaplaceResult:
    """Minimise the Laplace objective; the Hessian is taken in ``report``'s parameterisation.

    Parameters
    ----------
    report : (to_x, from_x) pair of functions, optional
        A reparameterisation r <-> x in which the Hessian (hence the
        covariance) is reported (the thresholds of an ordinal model as they
        are, not as increments). Default: x itself.
    """
    f = model.objective
    x0 = model.start() if x0 is None else np.asarray(x0, float)
    p, nth = model.p, model.nth
    lo = np.concatenate([np.full(p, -np.inf), model.theta_lower, np.full(len(x0) - p - nth, -np.inf)])
    bounds = [(None if np.isinf(a) else a, None) for a in lo]
    x0 = np.maximum(x0, lo)
    # forward differences are enough to get near: the Newton steps below finish the work
    res = sopt.minimize(f, x0, jac=lambda x: _forward_grad(f, x), method="L-BFGS-B", bounds=bounds,
                        options={"ftol": 1e-12, "gtol": 1e-6, "maxiter": 2000, "maxcor": 20})
    n_stage1 = model.n_evals
    x, fx = res.x, float(res.fun)
    message = str(res.message)
    if report is None:
        to_x = from_x = lambda v: v  # noqa: E731
    else:
        to_x, from_x = report
    fr = lambda r: f(np.maximum(to_x(r), lo))  # noqa: E731
    # Newton steps in the reporting parameterisation: one finite-difference
    # Hessian, then steps on central-difference gradients with it (the optimum
    # to ~1e-10, for SEs to 1e-4); the Hessian is made again if x moved.
    on_edge = (lo == 0) & (x <= 1e-6)
    free = np.flatnonzero(~on_edge)
    r = from_x(x)
    g, H = fd_hessian(fr, r, fx)
    r_h = r.copy()
    for _ in range(20):
        try:
            step = -np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-4:
            cand = r.copy()
            cand[free] += t * step
            fc = fr(cand)
            if fc <= fx:
                break
            t /= 2
        else:
            break
        r, fx = cand, fc
        if np.max(np.abs(t * step) / np.maximum(1.0, np.abs(r[free]))) < 1e-10:
            break
        g = _central_grad(fr, r, 1e-5 * np.maximum(1.0, np.abs(r)))
    if np.max(np.abs(r - r_h) / np.maximum(1.0, np.abs(r))) > 1e-7:
        g, H = fd_hessian(fr, r, fx)
    x = np.maximum(to_x(r), lo)
    beta, theta, dp = model.split(x)
    u, eta, _, _ = model.mode(beta, theta, dp, model.u)
    converged = bool(np.all(np.isfinite(H))) and bool(np.max(np.abs(g[~on_edge]), initial=0) < 1e-2)
    return LaplaceResult(x, fx, g, H, u, eta, converged, message, model.n_evals)
