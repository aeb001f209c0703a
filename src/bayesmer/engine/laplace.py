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
the dpars' unconstrained values: L-BFGS-B on the analytic gradient
(:meth:`LaplaceModel.gradient`: the modes' implicit dependence included;
the third derivative in η and the dpars' row-level derivatives by central
differences of the families' analytic ones), then Newton steps on a Hessian
made by central differences of that gradient. The covariance of the
estimates is the inverse of that Hessian (glmmTMB's ``sdreport``; the fixed
effects' block does not depend on how θ and the dpars are parameterised at
the optimum). Where the gradient's dense ``q x min(q, n)`` solve would be
too large, differences of the objective alone are used.

``Λ'Z'DZΛ + I`` is assembled and factored by :mod:`.blocks`, as lme4's PIRLS
(:mod:`.pirls`) factors its ``Λ'Z'WZΛ + I``: ZΛ is one CSR row of K entries
per observation, the first (largest) term makes k x k diagonal blocks, the
rest one dense block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize as sopt

from ..errors import FitError
from ..families.base import ResponseFamily
from .blocks import RowBlocks
from .numdiff import central_grad, fd_hessian, forward_grad, grad_hessian
from .theta import n_theta, tri_index

__all__ = ["LaplaceError", "LaplaceModel", "LaplaceResult", "fit_laplace"]


class InnerError(RuntimeError):
    """Newton's method found no conditional mode."""


class LaplaceError(FitError):
    """The Laplace fit broke down (a Hessian that is not finite, no conditional mode at the end).

    ``x`` is where it stopped, (β, θ, dpars unconstrained): the caller names
    the parameter that ran off (:func:`bayesmer.glmmtmb`).
    """

    def __init__(self, message: str, x=None):
        super().__init__(message)
        self.x = None if x is None else np.asarray(x, float).copy()


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
        # ZΛ by rows and the blocks of Λ'Z'DZΛ + I
        self.blocks = RowBlocks(terms, len(y))
        self.X, self.y, self.wt, self.offset, self.family = np.asarray(X, float), y, wt, offset, family
        self.terms = terms
        self.ks = [t.k for t in terms]
        self.nth = n_theta(self.ks)
        self.p = self.X.shape[1]
        self.q = self.blocks.q
        self.u = np.zeros(self.q)  # warm start of the inner Newton
        self.n_evals = 0  # objective evaluations
        self.n_grads = 0  # gradient evaluations (each one mode and its solves)
        self.theta_lower = np.concatenate([np.where(r == c, 0.0, -np.inf) for r, c in (tri_index(k) for k in self.ks)])

    # -- the parameter vector x = (β, θ, dpars unconstrained)
    def split(self, x):
        p, nth = self.p, self.nth
        return x[:p], x[p : p + nth], self.family.unpack(x[p + nth :])

    def mode(self, beta, theta, dp, u0=None):
        """û, η, the factor of H at û and h(û); raises InnerError."""
        fam, y, wt = self.family, self.y, self.wt
        A = self.blocks.lam_z(theta)
        At = A.T
        data = A.data.reshape(-1, self.blocks.K)
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
                L = self.blocks.factor(data, W)
            except np.linalg.LinAlgError:  # else a descent direction: D clamped where log p is not concave
                L = self.blocks.factor(data, np.maximum(W, 1e-10))
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
        L = self.blocks.factor(data, -d2)  # the exact Hessian at the mode (LinAlgError when not PD)
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

    def gradient(self, x, dpar_map=None) -> np.ndarray:
        """The gradient of :meth:`objective`: analytic in β and θ, by central differences in the dpars.

        With û the mode, H = A'DA + I (A = ZΛ), c_i = ½ ℓ‴_i a_i'H⁻¹a_i and
        w = H⁻¹A'c (ℓ‴ by a central difference of the analytic ℓ″):
        ∂f/∂β = -X'(ℓ' + c) + X'(D ∘ Aw), and per θ element, with B = ∂A/∂θ,
        ∂f/∂θ = -ℓ'·Bû + tr(H⁻¹A'DB) - (Bû)·(c - D ∘ Aw) - (Bw)·ℓ'
        (the implicit dependence of û included). Per dpar ψ, with ∂ℓ/∂ψ,
        ∂ℓ'/∂ψ, ∂ℓ″/∂ψ by central differences row by row (η fixed, no new
        mode): ∂f/∂ψ = -Σ∂ℓ/∂ψ - ½ s·∂ℓ″/∂ψ - (Aw)·∂ℓ'/∂ψ, s_i = a_i'H⁻¹a_i.
        ``dpar_map = (z, dp_of)`` takes the dpars' part in other coordinates
        z (``dp_of(z)`` the dict of natural values); default x's own.
        """
        x = np.asarray(x, float)
        self.n_grads += 1
        fam, y, wt = self.family, self.y, self.wt
        beta, theta, dp = self.split(x)
        p, nth = self.p, self.nth
        g = np.empty(len(x))
        try:
            u, eta, L, _ = self.mode(beta, theta, dp, self.u)
        except (InnerError, np.linalg.LinAlgError):
            return np.full(len(x), np.nan)
        self.u = u
        A = self.blocks.lam_z(theta)
        data = A.data.reshape(-1, self.blocks.K)
        cols = self.blocks.cols
        d1, d2 = fam.derivs(y, eta, dp, wt)
        D = -d2
        de = 1e-4 * np.maximum(1.0, np.abs(eta))
        d3 = (fam.derivs(y, eta + de, dp, wt)[1] - fam.derivs(y, eta - de, dp, wt)[1]) / (2 * de)
        # Nc (n, K): H⁻¹a_i at row i's own columns, from H⁻¹ (q x q) gathered per
        # row when q <= n, else from H⁻¹A' (q x n)
        if self.q <= len(y):
            Hinv = L.bwd(L.fwd(np.eye(self.q)))
            Nc = np.einsum("nkl,nl->nk", Hinv[cols[:, :, None], cols[:, None, :]], data)
        else:
            N = L.bwd(L.fwd(A.T.toarray()))
            Nc = N[cols, np.arange(len(y))[:, None]]
        s_i = np.sum(data * Nc, axis=1)
        c = 0.5 * d3 * s_i
        w = L.bwd(L.fwd(A.T @ c))
        Aw = A @ w
        g[:p] = -self.X.T @ (d1 + c) + self.X.T @ (D * Aw)
        Uc, Wc, Gc = u[cols], w[cols], Nc * D[:, None]
        e = c - D * Aw
        pos, slot = p, 0
        for t, k in zip(self.terms, self.ks):
            Z = t.Z
            r_idx, c_idx = tri_index(k)
            for r, cc in zip(r_idx, c_idx):
                j = slot + cc
                z = Z[:, r]
                g[pos] = (-np.sum(d1 * z * Uc[:, j]) + np.sum(z * Gc[:, j])
                          - np.sum(z * Uc[:, j] * e) - np.sum(z * Wc[:, j] * d1))
                pos += 1
            slot += k
        z0, dp_of = (x[p + nth :], fam.unpack) if dpar_map is None else dpar_map
        for i in range(len(z0)):
            h = 1e-5 * max(1.0, abs(z0[i]))
            zp, zm = z0.copy(), z0.copy()
            zp[i] += h
            zm[i] -= h
            dpp, dpm = dp_of(zp), dp_of(zm)
            dl = (fam.logpdf(y, eta, dpp, wt) - fam.logpdf(y, eta, dpm, wt)) / (2 * h)
            (a1, a2), (b1, b2) = fam.derivs(y, eta, dpp, wt), fam.derivs(y, eta, dpm, wt)
            dl1, dl2 = (a1 - b1) / (2 * h), (a2 - b2) / (2 * h)
            g[p + nth + i] = -np.sum(dl) - 0.5 * np.sum(s_i * dl2) - np.sum(Aw * dl1)
        return g

    def start(self) -> np.ndarray:
        """Starting values: a fixed-effects fit (Newton on β with the dpars' start), θ = 1."""
        fam, X, y, wt = self.family, self.X, self.y, self.wt
        dp = fam.init_dpars(y, wt)
        beta = np.zeros(self.p)
        const = np.flatnonzero(np.all(X == 1.0, axis=0)) if len(y) else np.zeros(0, int)
        if len(const):  # the intercept at the link of the mean response
            beta[const[0]] = fam.init_eta(y)
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
        # θ = 1 (lme4's start) is far too wide on some scales (an inverse link): the
        # best of a few widths, by the objective
        best, x0 = np.inf, None
        for scale in (1.0, 0.3, 0.1, 0.03, 0.01):
            x = np.concatenate([beta, scale * theta, fam.pack(dp)])
            self.u = np.zeros(self.q)
            fx = self.objective(x)
            if fx < best:
                best, x0 = fx, x
        self.u = np.zeros(self.q)
        return x0 if x0 is not None else np.concatenate([beta, theta, fam.pack(dp)])


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
    n_grads: int = 0


def _damped_newton(f, grad, x, fx, lo, iters=50):
    """Newton steps on a difference Hessian of ``grad``, its eigenvalues kept positive, halved until f falls.

    The fallback where L-BFGS-B stalls at the edge of the region where f is finite.
    """
    for _ in range(iters):
        g = grad(x)
        if not np.all(np.isfinite(g)):
            break
        H = grad_hessian(grad, x, 1e-5)
        # NaN where the objective is not finite beside x (a parameter running off to
        # where the density cannot be evaluated): eigh would fail on it
        if not np.all(np.isfinite(H)):
            raise LaplaceError("the difference Hessian of the Laplace objective is not finite", x)
        try:
            w, V = np.linalg.eigh(H)
        except np.linalg.LinAlgError as exc:
            raise LaplaceError(f"the eigenvalues of the difference Hessian did not converge ({exc})", x) from None
        w = np.maximum(np.abs(w), 1e-8 * max(1.0, np.max(np.abs(w))))
        step = -V @ ((V.T @ g) / w)
        t = 1.0
        while t > 1e-8:
            cand = np.maximum(x + t * step, lo)
            fc = f(cand)
            if np.isfinite(fc) and fc < fx:
                break
            t /= 2
        else:
            break
        x, fx = cand, fc
        if np.max(np.abs(t * step)) < 1e-8:
            break
    return x, fx


def fit_laplace(model: LaplaceModel, x0=None, report=None, analytic: bool | None = None) -> LaplaceResult:
    """Minimise the Laplace objective; the Hessian is taken in ``report``'s parameterisation.

    Parameters
    ----------
    report : (to_x, from_x) pair of functions, optional
        A reparameterisation r <-> x in which the Hessian (hence the
        covariance) is reported (the thresholds of an ordinal model as they
        are, not as increments). Default: x itself.
    analytic : bool, optional
        Use :meth:`LaplaceModel.gradient` (default where its dense solve,
        ``q x min(q, n)``, has at most 1e7 entries) rather than differences of
        the objective alone.
    """
    f = model.objective
    x0 = model.start() if x0 is None else np.asarray(x0, float)
    p, nth = model.p, model.nth
    m = len(x0)
    lo = np.concatenate([np.full(p, -np.inf), model.theta_lower, np.full(m - p - nth, -np.inf)])
    bounds = [(None if np.isinf(a) else a, None) for a in lo]
    x0 = np.maximum(x0, lo)
    if analytic is None:
        analytic = model.q * min(model.q, len(model.y)) <= 1e7
    if report is None:
        to_x = from_x = lambda v: v  # noqa: E731
    else:
        to_x, from_x = report
    fr = lambda r: f(np.maximum(to_x(r), lo))  # noqa: E731

    def grad_r(r, rel=None):
        """The gradient in r (its dpars in r's coordinates)."""
        head = r[: p + nth]
        dp_of = lambda z: model.family.unpack(to_x(np.concatenate([head, z]))[p + nth :])  # noqa: E731
        return model.gradient(np.maximum(to_x(r), lo), dpar_map=(r[p + nth :], dp_of))

    jac = (lambda x: model.gradient(x)) if analytic else (lambda x: forward_grad(f, x))
    # near the optimum by L-BFGS-B; the Newton steps below finish the work
    # (restarted while the gradient is large: a line search that met the edge of
    # the region where the density is finite, e.g. eta <= 0 under an inverse
    # link, can stop L-BFGS-B early)
    for _ in range(10):
        res = sopt.minimize(f, x0, jac=jac, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-12, "gtol": 1e-6, "maxiter": 2000, "maxcor": 20})
        gx = jac(res.x)
        free0 = ~((lo == 0) & (res.x <= 1e-6) & (gx > 0))
        if not np.all(np.isfinite(gx)) or np.max(np.abs(gx[free0]), initial=0) < 1e-3 or np.allclose(res.x, x0):
            break
        x0 = res.x
    x, fx = res.x, float(res.fun)
    message = str(res.message)
    if np.all(np.isfinite(gx)) and np.max(np.abs(gx[free0]), initial=0) >= 1e-3:
        x, fx = _damped_newton(f, jac, x, fx, lo)
        message += "; finished by damped Newton steps"
    if analytic and not np.all(np.isfinite(model.gradient(x))):
        analytic = False
    # Newton steps in the reporting parameterisation: one Hessian (differences
    # of the gradient, or of the objective), then steps on gradients with it
    # (the optimum to ~1e-10, for SEs to 1e-4); the Hessian is made again if x moved.
    on_edge = (lo == 0) & (x <= 1e-6)
    free = np.flatnonzero(~on_edge)

    def both(r):
        if analytic:
            return grad_r(r, 1e-5), grad_hessian(grad_r, r)
        return fd_hessian(fr, r)

    r = from_x(x)
    fx = fr(r)
    g, H = both(r)
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
        g = grad_r(r, 1e-5) if analytic else central_grad(fr, r, 1e-5 * np.maximum(1.0, np.abs(r)))
    if np.max(np.abs(r - r_h) / np.maximum(1.0, np.abs(r))) > 1e-7:
        g, H = both(r)
    x = np.maximum(to_x(r), lo)
    fx = f(x)
    beta, theta, dp = model.split(x)
    try:
        u, eta, _, _ = model.mode(beta, theta, dp, model.u)
    except (InnerError, np.linalg.LinAlgError) as exc:
        raise LaplaceError(f"no conditional mode of the random effects at the optimum ({exc})", x) from None
    converged = bool(np.all(np.isfinite(H))) and bool(np.max(np.abs(g[~on_edge]), initial=0) < 1e-2)
    return LaplaceResult(x, fx, g, H, u, eta, converged, message, model.n_evals, model.n_grads)
