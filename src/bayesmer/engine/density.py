"""The posterior density NUTS samples: priors, transforms and the collapsed likelihood.

The sampler moves an unconstrained vector ``x``::

    [log σ, per term (log sd_t (k_t), z_t (k_t(k_t-1)/2)), β (p, only when sampled)]

where ``tanh(z_t)`` are the canonical partial correlations of term t (Stan's
``cholesky_corr`` transform). The correlation matrix is LKJ(η): its partial
correlations in column j are independent Beta(η + (k-2-j)/2) on (-1, 1)
(Lewandowski, Kurowicka and Joe 2009), so the prior and the Jacobian of tanh
together are Σ β_j log(1 - tanh²z).

Everything is compiled by numba with ``cache=True`` and takes its data
through arrays, so one compiled function serves every data set; nutpie calls
it through a C function pointer with no Python in between (:mod:`.nuts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from . import _kernel
from ._kernel import EXPONENTIAL, HALF_CAUCHY, HALF_NORMAL, HALF_STUDENT_T, NORMAL, STUDENT_T
from .collapsed import CollapsedStats

__all__ = ["DensitySpec", "PRIOR_CODES", "logp_grad", "expand"]

_JIT = _kernel._JIT

#: the priors module's families -> the kernel's codes
PRIOR_CODES = {
    "Normal": NORMAL,
    "StudentT": STUDENT_T,
    "HalfCauchy": HALF_CAUCHY,
    "HalfNormal": HALF_NORMAL,
    "HalfStudentT": HALF_STUDENT_T,
    "Exponential": EXPONENTIAL,
}
_LOG2 = math.log(2.0)
_LOG2PI = math.log(2.0 * math.pi)


@nb.njit(**_JIT)
def _prior(code, par, x):
    """(log density, derivative) of a scalar prior at x."""
    if code == NORMAL:
        z = (x - par[0]) / par[1]
        return -0.5 * _LOG2PI - math.log(par[1]) - 0.5 * z * z, -z / par[1]
    if code == STUDENT_T:
        nu, s = par[0], par[2]
        z = (x - par[1]) / s
        lp = (math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
              - math.log(s) - 0.5 * (nu + 1.0) * math.log1p(z * z / nu))
        return lp, -(nu + 1.0) * z / (s * (nu + z * z))
    if code == HALF_CAUCHY:
        b = par[0]
        return _LOG2 - math.log(math.pi * b) - math.log1p((x / b) ** 2), -2.0 * x / (b * b + x * x)
    if code == HALF_NORMAL:
        s = par[0]
        return _LOG2 - 0.5 * _LOG2PI - math.log(s) - 0.5 * (x / s) ** 2, -x / (s * s)
    if code == HALF_STUDENT_T:
        nu, s = par[0], par[1]
        z = x / s
        lp = (_LOG2 + math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
              - math.log(s) - 0.5 * (nu + 1.0) * math.log1p(z * z / nu))
        return lp, -(nu + 1.0) * z / (s * (nu + z * z))
    # EXPONENTIAL
    lam = par[0]
    return math.log(lam) - lam * x, -lam


@nb.njit(**_JIT)
def _corr_chol(z, k, L):
    """L (k x k) from the partial-correlation coordinates z (row-wise lower triangle)."""
    L[:, :] = 0.0
    L[0, 0] = 1.0
    pos = 0
    for i in range(1, k):
        w = 1.0
        for j in range(i):
            c = math.tanh(z[pos + j])
            L[i, j] = c * w
            w *= math.sqrt(1.0 - c * c)
        L[i, i] = w
        pos += i


@nb.njit(**_JIT)
def _corr_chol_grad(z, k, L, gL, eta, gz):
    """Add the LKJ prior with its Jacobian and back-propagate gL into gz; returns the log density."""
    lp = 0.0
    pos = 0
    ws = np.empty(k)
    for i in range(1, k):
        w = 1.0
        for j in range(i):
            ws[j] = w
            c = math.tanh(z[pos + j])
            w *= math.sqrt(1.0 - c * c)
        gw = gL[i, i]
        for j in range(i - 1, -1, -1):
            c = math.tanh(z[pos + j])
            s = math.sqrt(1.0 - c * c)
            bj = eta + 0.5 * (k - 2 - j)
            # log(1 - tanh²) = -2 log cosh, stable for large |z|
            az = abs(z[pos + j])
            lp += bj * (-2.0 * (az + math.log1p(math.exp(-2.0 * az)) - _LOG2))
            g = gL[i, j] * ws[j] * (1.0 - c * c) + gw * ws[j] * (-c * s) - 2.0 * bj * c
            gz[pos + j] += g
            gw = gL[i, j] * c + gw * s
        pos += i
    return lp


@nb.njit(**_JIT)
def logp_grad(x, grad, meta, blk_G, blk_K, blk_off, term_blk, term_kofs, term_k, codes, par, eta,
              s0, mu0, beta0, A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete):
    """Log posterior density at x (up to the LKJ constants) and its gradient into ``grad``."""
    n, p, integ, kmax = meta[0], meta[1], meta[2] == 1, meta[3]
    nterm = term_k.shape[0]
    grad[:] = 0.0
    sigma = math.exp(x[0])
    lp, d = _prior(codes[0], par[0], sigma)
    lp += x[0]
    gsig = d
    Tall = np.zeros((nterm, kmax, kmax))
    Ls = np.zeros((nterm, kmax, kmax))
    sds = np.zeros((nterm, kmax))
    pos = 1
    ci = 1
    for t in range(nterm):
        k = term_k[t]
        for a in range(k):
            sd = math.exp(x[pos + a])
            sds[t, a] = sd
            l, d = _prior(codes[ci], par[ci], sd)
            lp += l + x[pos + a]
            grad[pos + a] = d * sd + 1.0
            ci += 1
        Lt = np.zeros((k, k))
        if k > 1:
            _corr_chol(x[pos + k:pos + k + k * (k - 1) // 2], k, Lt)
        else:
            Lt[0, 0] = 1.0
        for a in range(k):
            for b in range(k):
                Ls[t, a, b] = Lt[a, b]
                Tall[t, a, b] = sds[t, a] * Lt[a, b] / sigma
        pos += k + k * (k - 1) // 2
    if integ:
        delta = mu0 - beta0
    else:
        beta = x[pos:pos + p]
        delta = beta - beta0
        for c in range(p):
            l, d = _prior(codes[ci + c], par[ci + c], beta[c])
            lp += l
            grad[pos + c] = d
    gT = np.zeros((nterm, kmax, kmax))
    gd = np.zeros(p)
    ll, gs, ok = _kernel.loglik_grad(sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off,
                                     term_blk, term_kofs, term_k, A11, A1X, A1e, A21, A22, A2X, A2e,
                                     XtX, Xte, ete[0], gT, gd)
    if not ok:
        return -np.inf
    lp += ll - 0.5 * n * _LOG2PI
    gsig += gs
    pos = 1
    for t in range(nterm):
        k = term_k[t]
        gL = np.zeros((k, k))
        for a in range(k):
            acc = 0.0
            for b in range(a + 1):
                acc += gT[t, a, b] * Ls[t, a, b]
                gL[a, b] = gT[t, a, b] * sds[t, a] / sigma
                gsig -= gT[t, a, b] * Tall[t, a, b] / sigma
            grad[pos + a] += acc / sigma * sds[t, a]
        if k > 1:
            nz = k * (k - 1) // 2
            gz = np.zeros(nz)
            lp += _corr_chol_grad(x[pos + k:pos + k + nz], k, Ls[t, :k, :k].copy(), gL, eta[t], gz)
            grad[pos + k:pos + k + nz] += gz
        pos += k + k * (k - 1) // 2
    if not integ:
        grad[pos:pos + p] += gd
    grad[0] = gsig * sigma + 1.0
    return lp


@nb.njit(**_JIT)
def expand(x, out, meta, term_k):
    """x -> [σ, per term sd_t, corr_t pairs (a < b, row-major), β when sampled]."""
    p, integ = meta[1], meta[2] == 1
    out[0] = math.exp(x[0])
    pos, o = 1, 1
    for t in range(term_k.shape[0]):
        k = term_k[t]
        for a in range(k):
            out[o + a] = math.exp(x[pos + a])
        o += k
        if k > 1:
            L = np.zeros((k, k))
            _corr_chol(x[pos + k:pos + k + k * (k - 1) // 2], k, L)
            R = L @ L.T
            for a in range(k):
                for b in range(a + 1, k):
                    out[o] = R[a, b]
                    o += 1
        pos += k + k * (k - 1) // 2
    if not integ:
        for c in range(p):
            out[o + c] = x[pos + c]


@dataclass(frozen=True, eq=False)
class DensitySpec:
    """Everything the compiled density reads, as arrays.

    Attributes
    ----------
    stats : CollapsedStats
    integrate_beta : bool
        β integrated out (every fixed-effect prior Normal) or sampled.
    codes, par : ndarray
        Prior family codes and parameters: σ, then each term's sd components,
        then (when sampled) each fixed effect.
    eta : ndarray (terms,)
        LKJ shape per term (unused for one column).
    mu0, s0 : ndarray (p,)
        The Normal prior of β when integrated out.
    names : tuple of str
        The expanded values' variable names, in order, with their lengths
        in ``sizes``.
    """

    stats: CollapsedStats
    integrate_beta: bool
    codes: np.ndarray
    par: np.ndarray
    eta: np.ndarray
    mu0: np.ndarray
    s0: np.ndarray

    @property
    def ndim(self) -> int:
        k = self.stats.term_k
        return 1 + int(np.sum(k + k * (k - 1) // 2)) + (0 if self.integrate_beta else self.stats.p)

    @property
    def n_expanded(self) -> int:
        k = self.stats.term_k
        return 1 + int(np.sum(k + k * (k - 1) // 2)) + (0 if self.integrate_beta else self.stats.p)

    @property
    def meta(self) -> np.ndarray:
        s = self.stats
        return np.array([s.n, s.p, int(self.integrate_beta), s.kmax], dtype=np.int64)

    def arrays(self) -> tuple:
        """The density's array arguments after (x, grad), in order."""
        s = self.stats
        return (self.meta, s.blk_G, s.blk_K, s.blk_off, s.term_blk, s.term_kofs, s.term_k,
                self.codes, self.par, self.eta, self.s0, self.mu0, s.beta0, *s.arrays)

    def logp(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(log density, gradient) at x, from Python."""
        g = np.zeros(self.ndim)
        lp = logp_grad(np.asarray(x, dtype=float), g, *self.arrays())
        return lp, g

    def expand(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_expanded)
        expand(np.asarray(x, dtype=float), out, self.meta, self.stats.term_k)
        return out

    @classmethod
    def build(cls, stats: CollapsedStats, priors, design) -> "DensitySpec":
        """From the design's statistics and a :class:`~bayesmer.priors.PriorSet`.

        β is integrated out when every fixed-effect prior is Normal.
        """
        fixed = [p for _, p in priors.fixed]
        integ = all(type(p).__name__ == "Normal" for p in fixed)
        scalar = [priors.sigma]
        for t in design.terms:
            scalar += list(priors.sd_priors(t.name))
        if not integ:
            scalar += fixed
        codes = np.array([PRIOR_CODES[type(p).__name__] for p in scalar], dtype=np.int64)
        par = np.zeros((len(scalar), 3))
        for i, p in enumerate(scalar):
            v = p.params()
            par[i, : len(v)] = v
        eta = np.array([priors.corr_prior(t.name).eta if t.k > 1 else 1.0 for t in design.terms])
        mu0 = np.array([p.mu for p in fixed]) if integ else np.zeros(stats.p)
        s0 = np.array([p.sigma for p in fixed]) if integ else np.zeros(stats.p)
        return cls(stats=stats, integrate_beta=integ, codes=codes, par=par, eta=eta, mu0=mu0, s0=s0)
