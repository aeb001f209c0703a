"""lme4's profiled REML criterion and ML deviance, and their exact gradient, on the engine's factorisation.

With the fixed-effect columns and the residual as right-hand sides R = [X, e]
of the blocked factorisation, the penalised cross products Pen = R'R - c'ũ
are [X e]'V⁻¹[X e] in lme4's relative scale, so

    REML: d(θ) = log|P| + log|Pen_XX| + (n-p)(1 + log(2π r²/(n-p)))
    ML:   d(θ) = log|P| + n(1 + log(2π r²/n)),     r² = Pen_ee - Pen_eX Pen_XX⁻¹ Pen_Xe

and ∂d/∂T_t = 2T_t⁻ᵀ Σ_levels [I - P⁻¹ - ŨKŨ']_tt with K = ∂d/∂Pen (see :mod:`._kernel`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _kernel
from .collapsed import CollapsedStats
from .theta import theta_to_T, tri_index

__all__ = ["Factorization", "factorize", "Profiled", "Estimates", "estimates"]


@dataclass(frozen=True, eq=False)
class Factorization:
    """The blocked factorisation at one θ with right-hand sides [X, e] (nothing is cached anywhere)."""

    theta: np.ndarray
    Tall: np.ndarray
    logdet: float
    Pen: np.ndarray
    U1: np.ndarray
    U2: np.ndarray
    Minv: np.ndarray
    Hc: np.ndarray
    hptr: np.ndarray
    L22: np.ndarray

    def s_inverse(self, symmetric: bool = False) -> np.ndarray:
        """S⁻¹ of the dense block from its factor (LAPACK's dpotri for large blocks): its lower
        triangle, which is what the kernel reads, or the whole matrix."""
        inv = _kernel.sinv_from_chol(self.L22)
        if symmetric and self.L22.shape[0] > _kernel.DENSE_LOOP_MAX:
            inv = np.tril(inv) + np.tril(inv, -1).T
        return inv


def _profiled_rhs(stats: CollapsedStats):
    A11, A1X, A1e, ptr, rows, vals, A22, A2X, A2e, XtX, Xte, ete, row_a = stats.arrays
    R1 = np.concatenate([A1X, A1e[:, :, None]], axis=2)
    R2 = np.concatenate([A2X, A2e[:, None]], axis=1)
    p = stats.p
    RR = np.empty((p + 1, p + 1))
    RR[:p, :p], RR[:p, p], RR[p, :p], RR[p, p] = XtX, Xte, Xte, ete[0]
    return np.ascontiguousarray(R1), np.ascontiguousarray(R2), RR


def factorize(stats: CollapsedStats, theta: np.ndarray, ks, rhs) -> Factorization | None:
    """The factorisation at θ, or None where P is not positive definite."""
    Tall = stats.pack_T(theta_to_T(theta, ks))
    R1, R2, RR = rhs
    st = stats.kernel_stats()
    ok, ld1, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2 = _kernel.factor_a(Tall, np.zeros(0), R1, R2, RR, st,
                                                                         np.zeros((0, 0)))
    if not ok:
        return None
    ok, L22 = _kernel.chol_dense(S)
    if not ok:
        return None
    logdet, Pen, U1, U2 = _kernel.factor_b(L22, ld1, c1, w1, rhs2, c2, RR, Minv, Hc, hptr, st, 0)
    return Factorization(theta, Tall, logdet, Pen, U1, U2, Minv, Hc, hptr, L22)


@dataclass(frozen=True, eq=False)
class Profiled:
    """The profiled criterion of one design: REML (``reml=True``) or ML.

    Pure functions of θ: :meth:`deviance`, :meth:`deviance_grad` and
    :meth:`factor` keep nothing between calls.
    """

    stats: CollapsedStats
    ks: tuple
    reml: bool
    rhs: tuple
    #: done once rather than per evaluation: the kernel's statistics tuple and where θ sits in the
    #: kernel's (terms, kmax, kmax) array of factors
    _st: tuple = field(init=False, repr=False)
    _tidx: tuple = field(init=False, repr=False)
    _tshape: tuple = field(init=False, repr=False)

    def __post_init__(self):
        t_i, r_i, c_i = [], [], []
        for t, k in enumerate(self.ks):
            r, c = tri_index(k)
            t_i.append(np.full(len(r), t))
            r_i.append(r)
            c_i.append(c)
        tidx = tuple(np.concatenate(a).astype(np.intp) if a else np.zeros(0, dtype=np.intp)
                     for a in (t_i, r_i, c_i))
        object.__setattr__(self, "_st", self.stats.kernel_stats())
        object.__setattr__(self, "_tidx", tidx)
        object.__setattr__(self, "_tshape", (len(self.ks), self.stats.kmax, self.stats.kmax))

    @classmethod
    def from_design(cls, design, reml: bool) -> "Profiled":
        stats = CollapsedStats.from_design(design)
        return cls(stats=stats, ks=tuple(t.k for t in design.terms), reml=reml, rhs=_profiled_rhs(stats))

    @property
    def n(self) -> int:
        return self.stats.n

    @property
    def p(self) -> int:
        return self.stats.p

    @property
    def expensive(self) -> bool:
        """Whether one evaluation costs a large dense factorisation."""
        return self.stats.q2 >= 400

    def factor(self, theta) -> Factorization | None:
        return factorize(self.stats, np.asarray(theta, dtype=float), self.ks, self.rhs)

    def _run(self, mode: int, theta, vec_diag=None, lower=None, settings=(0.0, 0.0, 0, 0)):
        """One call of the compiled :func:`bayesmer.engine._kernel.profiled_run`."""
        m = len(self._tidx[0])
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        vec_diag = np.zeros(m, dtype=np.bool_) if vec_diag is None else np.ascontiguousarray(vec_diag, dtype=np.bool_)
        lower = np.zeros(m) if lower is None else np.ascontiguousarray(lower, dtype=np.float64)
        R1, R2, RR = self.rhs
        tt, tr, tc = self._tidx
        ftol, gtol, maxiter, maxfun = settings
        return _kernel.profiled_run(int(mode), theta, lower, vec_diag, tt, tr, tc, int(self._tshape[0]),
                                    int(self._tshape[1]), R1, R2, RR, self._st, int(self.stats.n), bool(self.reml),
                                    float(ftol), float(gtol), int(maxiter), int(maxfun))

    def deviance(self, theta) -> float:
        """lme4's REML criterion or ML deviance at θ (inf where undefined)."""
        d = self._run(0, theta)[1]
        return float(d) if np.isfinite(d) else np.inf

    def deviance_grad(self, theta) -> tuple[float, np.ndarray]:
        """d(θ) and its exact gradient (0 in the rows of a singular term's factor)."""
        _, d, g, _, _, _ = self._run(1, theta)
        if not np.isfinite(d):
            return np.inf, np.zeros_like(g)
        return float(d), g

    def fg(self, theta, vec_diag) -> tuple[float, np.ndarray, int]:
        """d(θ) and its gradient in one compiled call: exact, or forward differences where a
        diagonal marked in ``vec_diag`` is 0 (T⁻¹ does not exist there); and the evaluations used."""
        _, d, g, k, _, _ = self._run(1, theta, vec_diag)
        return float(d), g, int(k)

    def minimize(self, theta0, lower, vec_diag, ftol: float, gtol: float, maxiter: int, maxfun: int):
        """The whole bounded search in one compiled call (:func:`bayesmer.engine._kernel.profiled_minimize`):
        (θ, d, gradient, evaluations, iterations, status)."""
        x, d, g, nfev, it, status = self._run(2, theta0, vec_diag, lower, (ftol, gtol, maxiter, maxfun))
        return x, float(d), g, int(nfev), int(it), int(status)


@dataclass(frozen=True, eq=False)
class Estimates:
    """lme4's estimates at θ: β, their covariance, σ, and per term the conditional modes and covariances."""

    beta: np.ndarray
    vcov: np.ndarray
    sigma: float
    modes: tuple
    cond_cov: tuple
    Ts: tuple


def estimates(prob: Profiled, theta) -> Estimates:
    """β̂ = Pen_XX⁻¹Pen_Xe (about β0), σ² = r²/(n-p) (REML) or r²/n, vcov = σ²Pen_XX⁻¹; the
    conditional modes b = Λ(ũ_e - Ũ_X(β̂ - β0)) and lme4's conditional covariances σ²Λ(P⁻¹)_gg Λ'."""
    theta = np.asarray(theta, dtype=float)
    fz = prob.factor(theta)
    if fz is None:
        raise np.linalg.LinAlgError("the random-effects system is not positive definite at the optimum")
    n, p, stats = prob.n, prob.p, prob.stats
    Pen = fz.Pen
    if p:
        Sxx_inv = np.linalg.inv(Pen[:p, :p])
        d = Sxx_inv @ Pen[:p, p]
    else:
        Sxx_inv, d = np.zeros((0, 0)), np.zeros(0)
    r2 = float(Pen[p, p] - Pen[p, :p] @ d)
    sigma2 = r2 / (n - p) if prob.reml else r2 / n
    w = np.append(-d, 1.0)
    u1 = fz.U1 @ w  # (G1, K1)
    u2 = fz.U2 @ w  # (q2,)
    Sinv = fz.s_inverse(symmetric=True)
    st = stats.kernel_stats()
    P1 = _kernel.first_block_pinv(Sinv, fz.Minv, fz.Hc, fz.hptr, st, 0)
    Ts = theta_to_T(theta, prob.ks)
    modes, covs = [], []
    for t, (b, kofs, k) in enumerate(zip(stats.term_blk, stats.term_kofs, stats.term_k)):
        T = Ts[t]
        sl = slice(int(kofs), int(kofs + k))
        if b == 0:
            u, Pb = u1[:, sl], P1[:, sl, sl]
        else:
            Kb, Gb, off = int(stats.blk_K[b]), int(stats.blk_G[b]), int(stats.blk_off[b])
            idx = off + np.arange(Gb * Kb).reshape(Gb, Kb)[:, sl]
            u = u2[idx]
            Pb = Sinv[idx[:, :, None], idx[:, None, :]]
        modes.append(u @ T.T)
        covs.append(sigma2 * np.einsum("ij,gjl,ml->gim", T, Pb, T))
    return Estimates(beta=stats.beta0 + d, vcov=sigma2 * Sxx_inv, sigma=math.sqrt(sigma2), modes=tuple(modes),
                     cond_cov=tuple(covs), Ts=tuple(Ts))
