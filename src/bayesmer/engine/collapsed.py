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

# The other factors' block is dense (q2 x q2): above this many columns it would not fit.
DENSE_MAX = 10_000


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


def _level_rows(A21: sp.csr_matrix, K1: int, row_start: np.ndarray, row_K: np.ndarray):
    """Per level of the first factor, the dense-block rows it touches (whole level blocks, sorted).

    Returns (ptr (G1+1,), rows, vals (rows, K1)): A₂₁ restricted to those rows.
    """
    q2, q1 = A21.shape
    coo = A21.tocoo()
    return _level_rows_coo(coo.row, coo.col, coo.data, q2, q1 // K1, K1, row_start, row_K)


def _level_rows_coo(r, col, v, q2: int, G1: int, K1: int, row_start: np.ndarray, row_K: np.ndarray):
    """:func:`_level_rows` from A₂₁'s entries (dense row, column, value; repeated entries add up)."""
    g, j = col // K1, col % K1
    # every touched row brings its whole level block (Λ₂' mixes within it)
    start = row_start[r]
    key = np.unique(g.astype(np.int64) * q2 + start)
    kg, ks = np.divmod(key, q2)
    kK = row_K[ks]
    full_g = np.repeat(kg, kK)
    full_r = np.repeat(ks, kK) + (np.arange(kK.sum()) - np.repeat(np.cumsum(kK) - kK, kK))
    full_key = full_g * q2 + full_r  # sorted: by level, then row
    at = np.searchsorted(full_key, g.astype(np.int64) * q2 + r) * K1 + j
    vals = np.bincount(at, weights=v, minlength=full_key.size * K1).reshape(full_key.size, K1)
    ptr = np.searchsorted(full_g, np.arange(G1 + 1))
    return ptr.astype(np.int64), full_r.astype(np.int64), vals


def _intercept_column(sums) -> int:
    """The fixed column that is 1 in every row (sum n, sum of squares n), which absorbs a centre."""
    p, n = sums.p, sums.n
    for j in range(p):
        if sums.WtW[0, 1 + j] == n and sums.WtW[1 + j, 1 + j] == n:
            return j
    raise ValueError("a centred response needs an intercept column")


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
        A11 (G1, K1, K1), A1X (G1, K1, p), A1e (G1, K1); A₂₁ per level of the
        first factor as ptr (G1+1,), rows, vals (rows, K1); A22 (q2, q2),
        A2X (q2, p), A2e (q2,), XtX, Xte, e'e (1,); and row_a (q2,), each dense
        row's column within its level block.
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

    @property
    def q2(self) -> int:
        return int(self.arrays[6].shape[0])

    @classmethod
    def from_design(cls, design) -> "CollapsedStats":
        if getattr(design, "sums", None) is not None:
            return cls.from_sums(design.sums, design.terms)
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
        blk_G, blk_K, blk_off = [G1], [K1], [0]
        mats, row_start, row_K, row_a = [], [], [], []
        off = 0
        for idx in blocks[1:]:
            codes, G, Z = _block_Z(terms, idx)
            Kb = Z.shape[1]
            blk_G.append(G)
            blk_K.append(Kb)
            blk_off.append(off)
            local = np.arange(G * Kb)
            row_a.append(local % Kb)
            row_start.append(off + local - local % Kb)
            row_K.append(np.full(G * Kb, Kb))
            mats.append((off + codes[:, None] * Kb + np.arange(Kb)[None, :], Z))
            off += G * Kb
        q2 = off
        if q2 > DENSE_MAX:
            raise ValueError(
                f"the random effects other than the largest factor's number {q2:,} (more than {DENSE_MAX:,}): "
                "their block is dense in the collapsed likelihood and would not fit in memory"
            )
        if q2:
            R2 = np.concatenate([r for r, _ in mats], axis=1)  # (n, K2): per row each column's dense row
            V2 = np.concatenate([z for _, z in mats], axis=1)  # (n, K2): and its value
            K2 = R2.shape[1]
        if 0 < q2 <= 256:
            # a small block: bins per pair of columns, no sparse matrices (their setup is most of a small fit)
            A22 = np.zeros(q2 * q2)
            A2X = np.zeros((q2, p))
            A2e = np.zeros(q2)
            for a in range(K2):
                ra, va = R2[:, a], V2[:, a]
                for b in range(K2):
                    A22 += np.bincount(ra * q2 + R2[:, b], weights=va * V2[:, b], minlength=q2 * q2)
                for c in range(p):
                    A2X[:, c] += np.bincount(ra, weights=va * X[:, c], minlength=q2)
                A2e += np.bincount(ra, weights=va * e, minlength=q2)
            A22 = A22.reshape(q2, q2)
            # A₂₁'s entries: (dense row, first-factor column, product) per row and pair of columns
            c1 = codes1[:, None] * K1 + np.arange(K1)[None, :]  # (n, K1)
            r21 = np.repeat(R2, K1, axis=1).reshape(-1)
            col21 = np.tile(c1, (1, K2)).reshape(-1)
            v21 = (V2[:, :, None] * Z1[:, None, :]).reshape(-1)
            ptr, rows, vals = _level_rows_coo(r21, col21, v21, q2, G1, K1, np.concatenate(row_start),
                                              np.concatenate(row_K))
        elif q2:
            Z2 = sp.csr_matrix((V2.reshape(-1), (np.repeat(np.arange(n), K2), R2.reshape(-1))), shape=(n, q2))
            Z2t = Z2.T.tocsr()
            A21 = (Z2t @ _sparse(codes1, G1, Z1, n)).tocsr()
            A22 = np.asarray((Z2t @ Z2).toarray())
            A2X = np.asarray(Z2t @ X) if p else np.zeros((q2, 0))
            A2e = np.asarray(Z2t @ e).reshape(-1)
            ptr, rows, vals = _level_rows(A21, K1, np.concatenate(row_start), np.concatenate(row_K))
        else:
            A22, A2X, A2e = np.zeros((0, 0)), np.zeros((0, p)), np.zeros(0)
            ptr, rows, vals = np.zeros(G1 + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, K1))
        row_a = np.concatenate(row_a).astype(np.int64) if row_a else np.zeros(0, dtype=np.int64)
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        arrays = (f64(A11), f64(A1X), f64(A1e), ptr, rows, f64(vals), f64(A22), f64(A2X), f64(A2e),
                  f64(X.T @ X), f64(X.T @ e), np.array([float(e @ e)]), row_a)
        return cls(
            n=n, p=p, beta0=beta0,
            blk_G=np.asarray(blk_G, dtype=np.int64), blk_K=np.asarray(blk_K, dtype=np.int64),
            blk_off=np.asarray(blk_off, dtype=np.int64),
            term_blk=term_blk, term_kofs=term_kofs, term_k=np.asarray([t.k for t in terms], dtype=np.int64),
            arrays=arrays,
        )

    @classmethod
    def from_sums(cls, sums, terms) -> "CollapsedStats":
        """The statistics from additive sums about a centred response (``bayesmer.sources.RawSums``).

        β0 solves the normal equations of the centred response; every product with
        the residual e = ỹ - Xβ0 is then formed from the sums (Z'e = Z'ỹ - Z'Xβ0,
        e'e = ỹ'ỹ - 2β0'X'ỹ + β0'X'Xβ0), all small beside the data's scale because
        ỹ was centred where the rows are. The intercept absorbs the centre.
        """
        if not terms:
            raise ValueError("the formula has no random-effect term")
        n, p = sums.n, sums.p
        XtX, Xty, yty = sums.XtX, sums.Xty, sums.yty
        if p:
            beta_c = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
        else:
            beta_c = np.zeros(0)
        Xte = Xty - XtX @ beta_c
        ete = yty - 2.0 * float(beta_c @ Xty) + float(beta_c @ XtX @ beta_c)
        beta0 = beta_c.copy()
        if sums.y_centre:
            # the centre is constant: the intercept column (all ones) carries it
            beta0[_intercept_column(sums)] += sums.y_centre
        blocks = factor_blocks(terms)
        term_blk = np.zeros(len(terms), dtype=np.int64)
        term_kofs = np.zeros(len(terms), dtype=np.int64)
        for b, idx in enumerate(blocks):
            o = 0
            for i in idx:
                term_blk[i], term_kofs[i] = b, o
                o += terms[i].k
        G1, K1 = sums.blk_G[0], sums.blk_K[0]
        A1e = sums.A1y - sums.A1X @ beta_c
        row_start, row_K, row_a = [], [], []
        off = 0
        blk_off = [0]
        for G, Kb in zip(sums.blk_G[1:], sums.blk_K[1:]):
            blk_off.append(off)
            local = np.arange(G * Kb)
            row_a.append(local % Kb)
            row_start.append(off + local - local % Kb)
            row_K.append(np.full(G * Kb, Kb))
            off += G * Kb
        q2 = off
        if q2 > DENSE_MAX:
            raise ValueError(
                f"the random effects other than the largest factor's number {q2:,} (more than {DENSE_MAX:,}): "
                "their block is dense in the collapsed likelihood and would not fit in memory"
            )
        if q2:
            A2e = sums.A2y - sums.A2X @ beta_c
            ptr, rows, vals = _level_rows(sums.A21.tocsr(), K1, np.concatenate(row_start), np.concatenate(row_K))
        else:
            A2e = np.zeros(0)
            ptr, rows, vals = np.zeros(G1 + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, K1))
        row_a = np.concatenate(row_a).astype(np.int64) if row_a else np.zeros(0, dtype=np.int64)
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        arrays = (f64(sums.A11), f64(sums.A1X), f64(A1e), ptr, rows, f64(vals), f64(sums.A22), f64(sums.A2X),
                  f64(A2e), f64(XtX), f64(Xte), np.array([ete]), row_a)
        return cls(
            n=n, p=p, beta0=beta0,
            blk_G=np.asarray(sums.blk_G, dtype=np.int64), blk_K=np.asarray(sums.blk_K, dtype=np.int64),
            blk_off=np.asarray(blk_off, dtype=np.int64),
            term_blk=term_blk, term_kofs=term_kofs, term_k=np.asarray([t.k for t in terms], dtype=np.int64),
            arrays=arrays,
        )

    def kernel_stats(self) -> tuple:
        """The statistics tuple the kernel reads (see ``_kernel``'s ``_A11`` ... ``_ROW_A``)."""
        *a, row_a = self.arrays
        return (*a, self.blk_G, self.blk_K, self.blk_off, self.term_blk, self.term_kofs, self.term_k, row_a)

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
    ll, gs, ok = _kernel.loglik_grad(float(sigma), Tall, delta, s0, integ, stats.n, stats.kernel_stats(), gT, gd)
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
    p = stats.p
    G1, K1 = int(stats.blk_G[0]), int(stats.blk_K[0])
    q2 = stats.q2
    m2 = q2 + (p if integ else 0)
    Tall = np.zeros((S, len(Ts), stats.kmax, stats.kmax))
    for i, T in enumerate(Ts):
        k = T.shape[-1]
        Tall[:, i, :k, :k] = T
    if integ:
        delta = np.broadcast_to(np.asarray(prior_mu, dtype=float) - stats.beta0, (S, p)).copy()
        s0 = np.asarray(prior_sd, dtype=float)
    else:
        delta = np.asarray(beta, dtype=float) - stats.beta0
        s0 = np.zeros(p)
    u1 = np.empty((S, G1, K1))
    u2 = np.empty((S, m2))
    bad = _kernel.draw_u_many(np.asarray(sigma, dtype=float), Tall, delta, s0, integ, stats.kernel_stats(),
                              rng.standard_normal((S, G1, K1)), rng.standard_normal((S, m2)), u1, u2)
    if bad >= 0:
        raise FloatingPointError(f"draw {bad}: the random-effects system is not positive definite")
    beta_out = stats.beta0 + delta + (s0 / sigma[:, None] * u2[:, q2:] if integ else 0.0)
    bs = []
    for t, (b, kofs, k) in enumerate(zip(stats.term_blk, stats.term_kofs, stats.term_k)):
        if b == 0:
            u = u1[:, :, kofs:kofs + k]
        else:
            Kb, Gb, off = int(stats.blk_K[b]), int(stats.blk_G[b]), int(stats.blk_off[b])
            u = u2[:, off:off + Gb * Kb].reshape(S, Gb, Kb)[:, :, kofs:kofs + k]
        bs.append(np.einsum("sgl,skl->sgk", u, Tall[:, t, :k, :k]))
    return beta_out, bs
