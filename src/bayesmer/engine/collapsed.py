"""Sufficient statistics of a Gaussian mixed model and its collapsed likelihood.

``CollapsedStats.from_design`` reads every row once and keeps only
O(levels) numbers: per level of the largest grouping factor its Z'Z, Z'X and
Z'e blocks, the dense cross products of the other factors, and X'X, X'e, e'e
(e = y - Xβ0 about the least-squares β0, so that nothing large cancels). The
likelihood with b (and, under a Normal prior, β) integrated out is then
:func:`loglik` (see :mod:`bayesmer.engine._kernel` for the algebra), and
:func:`draw_effects` draws (β, b) exactly from their Gaussian conditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import _kernel

__all__ = ["CollapsedStats", "loglik", "draw_effects", "factor_blocks"]

# Above this many dense entries the crossed block is too large for the dense
# route (A21 is q2 x q1 and every evaluation costs G1·K1·m2²).
DENSE_LIMIT = 4_000_000


def factor_blocks(terms) -> list[list[int]]:
    """Indices of the terms, grouped by grouping factor, in the terms' order."""
    blocks: dict[tuple, list[int]] = {}
    for i, t in enumerate(terms):
        blocks.setdefault(tuple(t.factors), []).append(i)
    return list(blocks.values())


def _block_Z(terms, idx):
    Z = np.concatenate([terms[i].Z for i in idx], axis=1)
    return terms[idx[0]].codes, terms[idx[0]].n_levels, Z


def _sparse(codes, G, Z, n):
    K = Z.shape[1]
    rows = np.repeat(np.arange(n), K)
    cols = (codes[:, None] * K + np.arange(K)[None, :]).reshape(-1)
    return sp.csr_matrix((Z.reshape(-1), (rows, cols)), shape=(n, G * K))


@dataclass(frozen=True, eq=False)
class CollapsedStats:
    """What the collapsed likelihood needs, O(levels) in size.

    Attributes
    ----------
    n, p : int
    beta0 : ndarray (p,)
        The least-squares fixed effects the residual e is taken about.
    blk_G, blk_K, blk_off : ndarray of int64 (blocks,)
        Levels, columns and offset in the dense block, per grouping factor.
    term_blk, term_kofs, term_k : ndarray of int64 (terms,)
        Per term (in the design's order) its factor block, its first column
        in that block and its number of columns.
    arrays : tuple of ndarray
        A11 (G1, K1, K1), A1X (G1, K1, p), A1e (G1, K1), A21 (q2, G1·K1),
        A22 (q2, q2), A2X (q2, p), A2e (q2,), XtX, Xte, and e'e as a 1-element array.
    """

    n: int
    p: int
    beta0: np.ndarray
    blk_G: np.ndarray
    blk_K: np.ndarray
    blk_off: np.ndarray
    term_blk: np.ndarray
    term_kofs: np.ndarray
    term_k: np.ndarray
    arrays: tuple

    @property
    def kmax(self) -> int:
        return int(self.term_k.max())

    @classmethod
    def from_design(cls, design) -> "CollapsedStats":
        terms = design.terms
        if not terms:
            raise ValueError("the formula has no random-effect term")
        n, p = design.n, design.p
        y = design.y if getattr(design, "offset", None) is None else design.y - design.offset
        X = design.X
        beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if p else np.zeros(0)
        e = y - X @ beta0
        blocks = factor_blocks(terms)
        term_blk = np.zeros(len(terms), dtype=np.int64)
        term_kofs = np.zeros(len(terms), dtype=np.int64)
        for b, idx in enumerate(blocks):
            o = 0
            for i in idx:
                term_blk[i], term_kofs[i] = b, o
                o += terms[i].k
        codes1, G1, Z1 = _block_Z(terms, blocks[0])
        K1 = Z1.shape[1]
        A11 = np.zeros((G1, K1, K1))
        A1X = np.zeros((G1, K1, p))
        A1e = np.zeros((G1, K1))
        for a in range(K1):
            for c in range(a, K1):
                v = np.bincount(codes1, weights=Z1[:, a] * Z1[:, c], minlength=G1)
                A11[:, a, c] = v
                A11[:, c, a] = v
            for c in range(p):
                A1X[:, a, c] = np.bincount(codes1, weights=Z1[:, a] * X[:, c], minlength=G1)
            A1e[:, a] = np.bincount(codes1, weights=Z1[:, a] * e, minlength=G1)
        blk_G = [G1]
        blk_K = [K1]
        blk_off = [0]
        mats = []
        off = 0
        for idx in blocks[1:]:
            codes, G, Z = _block_Z(terms, idx)
            blk_G.append(G)
            blk_K.append(Z.shape[1])
            blk_off.append(off)
            off += G * Z.shape[1]
            mats.append(_sparse(codes, G, Z, n))
        q2 = off
        if q2 * G1 * K1 > DENSE_LIMIT:
            raise ValueError(
                f"the crossed random effects make a {q2} x {G1 * K1} block, too large for the dense "
                "collapsed route"
            )
        if q2:
            Z2 = sp.hstack(mats, format="csr")
            Z2t = Z2.T.tocsr()
            A21 = np.asarray((Z2t @ _sparse(codes1, G1, Z1, n)).toarray())
            A22 = np.asarray((Z2t @ Z2).toarray())
            A2X = np.asarray(Z2t @ X) if p else np.zeros((q2, 0))
            A2e = np.asarray(Z2t @ e).reshape(-1)
        else:
            A21 = np.zeros((0, G1 * K1))
            A22 = np.zeros((0, 0))
            A2X = np.zeros((0, p))
            A2e = np.zeros(0)
        arrays = tuple(
            np.ascontiguousarray(a, dtype=np.float64)
            for a in (A11, A1X, A1e, A21, A22, A2X, A2e, X.T @ X, X.T @ e, np.array(float(e @ e)))
        )
        return cls(
            n=n, p=p, beta0=beta0,
            blk_G=np.asarray(blk_G, dtype=np.int64), blk_K=np.asarray(blk_K, dtype=np.int64),
            blk_off=np.asarray(blk_off, dtype=np.int64),
            term_blk=term_blk, term_kofs=term_kofs, term_k=np.asarray([t.k for t in terms], dtype=np.int64),
            arrays=arrays,
        )

    def kernel_args(self):
        """The statistics in the order the kernel takes them (e'e as a float)."""
        *a, ete = self.arrays
        return (self.n, self.p, self.blk_G, self.blk_K, self.blk_off, self.term_blk, self.term_kofs,
                self.term_k, *a, float(ete.reshape(-1)[0]))

    def pack_T(self, Ts) -> np.ndarray:
        """Per-term k x k factors into the kernel's (terms, kmax, kmax) array."""
        out = np.zeros((len(Ts), self.kmax, self.kmax))
        for i, T in enumerate(Ts):
            T = np.atleast_2d(np.asarray(T, dtype=float))
            out[i, : T.shape[0], : T.shape[1]] = T
        return out


def loglik(stats: CollapsedStats, sigma: float, Ts, beta=None, prior_mu=None, prior_sd=None):
    """log p(y | σ, Λ, β) or, with ``prior_mu``/``prior_sd``, log p(y | σ, Λ) with β ~ N(μ, diag(sd²)).

    ``Ts`` are the terms' relative factors (Ψ_t = σ² T_t T_t'). Returns
    (loglik, ∂/∂σ at fixed T, ∂/∂T per term (list), ∂/∂β or None).
    """
    integ = beta is None
    Tall = stats.pack_T(Ts)
    if integ:
        delta = np.asarray(prior_mu, dtype=float) - stats.beta0
        s0 = np.asarray(prior_sd, dtype=float)
    else:
        delta = np.asarray(beta, dtype=float) - stats.beta0
        s0 = np.zeros(stats.p)
    gT = np.zeros_like(Tall)
    gd = np.zeros(stats.p)
    args = stats.kernel_args()
    ll, gs, ok = _kernel.loglik_grad(float(sigma), Tall, delta, s0, integ, *args, gT, gd)
    ll -= 0.5 * stats.n * np.log(2.0 * np.pi)
    gTs = [gT[i, :k, :k] for i, k in enumerate(stats.term_k)]
    return ll, gs, gTs, (None if integ else gd)


def draw_effects(stats: CollapsedStats, sigma, Ts, rng, beta=None, prior_mu=None, prior_sd=None):
    """Exact draws of (β, b) given (σ, Λ) per posterior draw.

    Parameters
    ----------
    sigma : ndarray (S,)
    Ts : list of ndarray (S, k_t, k_t)
        Per term, its relative factor per draw.
    beta : ndarray (S, p), optional
        Sampled fixed effects; when None they are drawn too, from the Normal
        prior (``prior_mu``, ``prior_sd``) updated by the data.

    Returns
    -------
    beta : ndarray (S, p)
    bs : list of ndarray (S, G_t, k_t)
    """
    S = sigma.shape[0]
    integ = beta is None
    args = stats.kernel_args()
    G1, K1 = int(stats.blk_G[0]), int(stats.blk_K[0])
    q2 = stats.arrays[4].shape[0]
    m2 = q2 + (stats.p if integ else 0)
    p = stats.p
    beta_out = np.empty((S, p))
    bs = [np.empty((S, int(stats.blk_G[b]), int(k))) for b, k in zip(stats.term_blk, stats.term_k)]
    s0 = np.asarray(prior_sd, dtype=float) if integ else np.zeros(p)
    for s in range(S):
        Tall = stats.pack_T([T[s] for T in Ts])
        delta = (np.asarray(prior_mu, dtype=float) if integ else beta[s]) - stats.beta0
        u1, u2, _, ok = _kernel.draw_u(float(sigma[s]), Tall, delta, s0, integ, *args,
                                       rng.standard_normal((G1, K1)), rng.standard_normal(m2))
        if not ok:
            raise FloatingPointError(f"draw {s}: the random-effects system is not positive definite")
        beta_out[s] = stats.beta0 + delta + (s0 / sigma[s] * u2[q2:] if integ else 0.0)
        for t, (b, kofs, k) in enumerate(zip(stats.term_blk, stats.term_kofs, stats.term_k)):
            T = Tall[t, :k, :k]
            if b == 0:
                u = u1[:, kofs:kofs + k]
            else:
                Kb, Gb, off = int(stats.blk_K[b]), int(stats.blk_G[b]), int(stats.blk_off[b])
                u = u2[off:off + Gb * Kb].reshape(Gb, Kb)[:, kofs:kofs + k]
            bs[t][s] = u @ T.T
    return beta_out, bs
