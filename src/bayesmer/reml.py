"""Exact REML and ML fits of linear mixed models, as lme4 computes them.

lme4's profiled formulation: with the relative covariance factor Λ(θ), the
penalised least-squares system

    [Λ'Z'ZΛ + I   Λ'Z'X   Λ'Z'y]
    [  X'ZΛ        X'X     X'y ]
    [  y'ZΛ        y'X     y'y ]

is factored by a lower Cholesky factor L; ``log|L_Z|²``, ``log|R_X|²`` and the
penalised residual sum of squares r² (the square of the last diagonal element,
X and y being stacked into one block "Xy" as MixedModels.jl does) give the
profiled deviance. Everything is computed from sufficient statistics built
once, with MixedModels.jl's blocked scheme: the term with most levels is
block diagonal (``G`` blocks of ``k x k``); the other terms make one dense block.

The first block enters the rest only through ``W = Λ₁(Λ₁'A₁₁Λ₁ + I)⁻¹Λ₁'``
(block diagonal), so ``L₂₁`` is never formed during the optimisation: its
products are ``A₂₁ W A₁₂`` and ``A₂₁ W A₁y``, cached on the first term's θ.
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
import scipy.sparse as sp

from ._threads import one_blas_thread
from .design import Design, build_design
from .formula import Formula
from .protocol import CallableDict, CallableFrame, CallableSeries, varcorr_table, variance_shares

__all__ = ["RemlFit", "reml", "fit_reml"]

_SINGULAR_TOL = 1e-4
_SINGULAR_MSG = "boundary (singular) fit: see help('isSingular')"


# --------------------------------------------------------------------------
# theta <-> per-term lower-triangular factors


@functools.lru_cache(maxsize=None)
def _tri_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the lower triangle in column-major order (lme4's)."""
    cols, rows = np.triu_indices(k)
    return rows, cols


def _theta_to_T(theta: np.ndarray, ks: list[int]) -> list[np.ndarray]:
    out, pos = [], 0
    for k in ks:
        m = k * (k + 1) // 2
        T = np.zeros((k, k))
        r, c = _tri_index(k)
        T[r, c] = theta[pos : pos + m]
        out.append(T)
        pos += m
    return out


def _theta_lower(ks: list[int]) -> np.ndarray:
    """Lower bounds of θ: 0 on the diagonals, free elsewhere."""
    lo = []
    for k in ks:
        r, c = _tri_index(k)
        lo.extend(np.where(r == c, 0.0, -np.inf))
    return np.asarray(lo)


# --------------------------------------------------------------------------
# the problem: sufficient statistics and the profiled deviance


def _term_sparse(term, offset: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO entries of a term's columns in Z: random effect index = level*k + j."""
    k = term.k
    rows = np.repeat(np.arange(n), k)
    cols = offset + (term.codes[:, None] * k + np.arange(k)[None, :]).reshape(-1)
    return rows, cols, term.Z.reshape(-1)


def _pair_structure(A21: sp.csr_matrix, k1: int, max_pairs: int = 30_000_000):
    """Precomputed products for ``A₂₁ W A₁₂`` with W block diagonal.

    Entry (r, r') of the lower triangle is ``Σ_g Σ_jl A[r,gj] W_g[j,l] A[r',gl]``:
    linear in W, so it is ``V @ W.ravel()`` with a sparse V built once. One
    sparse product a evaluation instead of a sparse-sparse product.
    Returns None when there would be too many pairs.
    """
    A = A21.tocsc()
    A.sum_duplicates()
    A.sort_indices()
    q2, q1 = A.shape
    G = q1 // k1
    indptr, rows, vals = A.indptr, A.indices, A.data
    col = np.repeat(np.arange(q1), np.diff(indptr))
    grp = col // k1
    start, stop = indptr[grp * k1], indptr[(grp + 1) * k1]
    counts = stop - start
    total = int(counts.sum())
    if total > max_pairs:
        return None
    a = np.repeat(np.arange(len(rows)), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    b = start[a] + within
    keep = rows[a] >= rows[b]
    a, b = a[keep], b[keep]
    tgt = rows[a].astype(np.int64) * q2 + rows[b]
    widx = grp[a] * (k1 * k1) + (col[a] % k1) * k1 + (col[b] % k1)
    # Number the distinct targets through a q2² marker, not a sort.
    rank = np.zeros(q2 * q2, dtype=np.int64)
    rank[tgt] = 1
    tgt_u = np.flatnonzero(rank)
    rank[tgt_u] = np.arange(len(tgt_u))
    # Duplicates stay: the product sums them.
    V = sp.csr_matrix((vals[a] * vals[b], (rank[tgt], widx)), shape=(len(tgt_u), G * k1 * k1))
    return V, tgt_u


class _Problem:
    """Sufficient statistics of a design and the profiled deviance d(θ)."""

    def __init__(self, design: Design, reml: bool):
        self.reml = reml
        self.design = design
        terms = design.terms
        if not terms:
            raise ValueError("the formula has no random-effect term: use a linear model instead")
        n, p = design.n, design.p
        self.n, self.p = n, p
        self.ks = [t.k for t in terms]
        self.Gs = [t.n_levels for t in terms]
        self.qs = [k * G for k, G in zip(self.ks, self.Gs)]
        self.ntheta = sum(k * (k + 1) // 2 for k in self.ks)
        Xy = np.column_stack([design.X, design.y])
        self.Xy = Xy
        self.Ayy = Xy.T @ Xy

        # First term: block diagonal, one k x k block per level.
        t1 = terms[0]
        k1, G1 = t1.k, t1.n_levels
        self.k1, self.G1 = k1, G1
        self._diag1 = np.arange(k1)
        Z1 = t1.Z
        A11 = np.empty((G1, k1, k1))
        for a in range(k1):
            for b in range(a, k1):
                v = np.bincount(t1.codes, weights=Z1[:, a] * Z1[:, b], minlength=G1)
                A11[:, a, b] = v
                A11[:, b, a] = v
        self.A11 = A11
        A1y = np.empty((G1, k1, p + 1))
        for a in range(k1):
            for c in range(p + 1):
                A1y[:, a, c] = np.bincount(t1.codes, weights=Z1[:, a] * Xy[:, c], minlength=G1)
        self.A1y = A1y

        # The other terms: one block, dense in the optimisation.
        self.m = len(terms)
        if self.m > 1:
            offs = np.cumsum([0] + self.qs[1:])
            self.q2 = int(offs[-1])
            self.blocks2 = [(int(offs[i]), self.Gs[i + 1], self.ks[i + 1]) for i in range(self.m - 1)]
            coo = [_term_sparse(t, int(o), n) for t, o in zip(terms[1:], offs[:-1])]
            rows = np.concatenate([c[0] for c in coo])
            cols = np.concatenate([c[1] for c in coo])
            vals = np.concatenate([c[2] for c in coo])
            Z2 = sp.csr_matrix((vals, (rows, cols)), shape=(n, self.q2))
            r1, c1, v1 = _term_sparse(t1, 0, n)
            Z1s = sp.csr_matrix((v1, (r1, c1)), shape=(n, self.qs[0]))
            Z2t = Z2.T.tocsr()
            self.A22 = (Z2t @ Z2).toarray()
            self.A2y = np.asarray(Z2t @ Xy)
            A21 = (Z2t @ Z1s).tocsr()
            A21.sum_duplicates()
            A21.sort_indices()
            self.A21 = A21
            # A dense A21 is quicker when it is small or not sparse.
            dense_ok = self.q2 * self.qs[0] <= 4_000_000 and A21.nnz > 0.05 * self.q2 * self.qs[0]
            self.A21_dense = A21.toarray() if (dense_ok or self.q2 * self.qs[0] <= 250_000) else None
            self.A12 = A21.T.tocsr()
            self.all_scalar2 = all(k == 1 for k in self.ks[1:])
            self._pairs = None if self.A21_dense is not None else _pair_structure(A21, k1)
            self._diag2 = np.arange(self.q2)
            self._Mbuf = np.empty((self.q2 + p + 1, self.q2 + p + 1))
        # Finite differences in the other terms' θ revisit the first term's θ:
        # a few entries spare most recomputations of A₂₁WA₁₂.
        self._cache: dict[bytes, tuple] = {}
        self.n_evals = 0

    # -- the first term enters the rest only through W -------------------
    def _first_block(self, T1: np.ndarray):
        """log|L₁₁|², W (G, k, k) and the quantities built from it, cached."""
        key = T1.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        A11, A1y = self.A11, self.A1y
        if self.k1 == 1:
            lam = T1[0, 0]
            d = lam * lam * A11[:, 0, 0] + 1.0
            logdet = float(np.log(d).sum())
            w = (lam * lam) / d
            WA1y = w[:, None] * A1y[:, 0, :]  # (G, p+1)
            C11 = A1y[:, 0, :].T @ WA1y
            W = w
            aux = d
        else:
            M = T1.T @ A11 @ T1
            M[:, self._diag1, self._diag1] += 1.0
            L = np.linalg.cholesky(M)
            logdet = 2.0 * float(np.log(L[:, self._diag1, self._diag1]).sum())
            Minv = np.linalg.inv(M)
            W = T1 @ Minv @ T1.T
            aux = (M, Minv)
            WA1y = (W @ A1y).reshape(-1, self.p + 1)
            C11 = A1y.reshape(-1, self.p + 1).T @ WA1y
        S0 = V = X22 = None
        if self.m > 1:
            V = self.A21 @ WA1y
            if self.k1 == 1:
                if self.A21_dense is not None:
                    S0 = (self.A21_dense * W) @ self.A21_dense.T
                elif self._pairs is not None:
                    X22 = self._x22_from_pairs(W)
                else:
                    A = self.A21
                    B = sp.csr_matrix((A.data * W[A.indices], A.indices, A.indptr), shape=A.shape)
                    S0 = (B @ self.A12).toarray()
            else:
                G, k = self.G1, self.k1
                if self.A21_dense is not None:
                    Ad = self.A21_dense.reshape(self.q2, G, k)
                    AW = np.einsum("rgj,gjl->rgl", Ad, W, optimize=True).reshape(self.q2, -1)
                    S0 = AW @ self.A21_dense.T
                elif self._pairs is not None:
                    X22 = np.tril(self._x22_from_pairs(W))
                    X22 += np.tril(X22, -1).T
                else:
                    Wb = sp.bsr_matrix((W, np.arange(G), np.arange(G + 1)), shape=(G * k, G * k))
                    S0 = (self.A21 @ Wb @ self.A12).toarray()
        if X22 is None and S0 is not None:
            X22 = self.A22 - S0
        out = (logdet, W, C11, X22, V, aux)
        if len(self._cache) >= 8:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = out
        return out

    def _x22_from_pairs(self, W: np.ndarray) -> np.ndarray:
        """Lower triangle of A₂₂ - A₂₁WA₁₂ (the Cholesky reads no more)."""
        V, tgt = self._pairs
        X = self.A22.copy()
        X.flat[tgt] -= V @ W.reshape(-1)
        return X

    def _lam2_rows(self, M: np.ndarray, Ts: list[np.ndarray]) -> np.ndarray:
        """Λ₂'M for the rows of the second block."""
        out = np.empty_like(M)
        for (off, G, k), T in zip(self.blocks2, Ts):
            seg = M[off : off + G * k]
            if k == 1:
                out[off : off + G] = T[0, 0] * seg
            else:
                s = seg.reshape(G, k, -1)
                out[off : off + G * k] = np.einsum("lj,glc->gjc", T, s).reshape(G * k, -1)
        return out

    def factor(self, theta: np.ndarray):
        """Blocked Cholesky at θ: (logdet_Z, L22 or None, L33, Ts).

        The second block and Xy are factored together, one Cholesky of
        ``[[M22, R2], [R2', M33]]``, which gives L32 without a triangular
        solve (numpy has none, and mixing in scipy's BLAS costs milliseconds a
        call when both libraries keep threads spinning).
        """
        Ts = _theta_to_T(theta, self.ks)
        logdet, W, C11, X22, V, aux = self._first_block(Ts[0])
        self._last = (Ts, aux)
        M33 = self.Ayy - C11
        if self.m == 1:
            return logdet, None, np.linalg.cholesky(M33), Ts
        Ts2 = Ts[1:]
        q2 = self.q2
        # One buffer for every evaluation, factored in place: a fresh 10 MB
        # array per call costs page faults comparable to the factorisation.
        M = self._Mbuf
        if self.all_scalar2:
            # Λ₂ is constant on each term's rows: scale X₂₂ block by block,
            # lower blocks only, in one pass.
            lams = [T[0, 0] for T in Ts2]
            for a, (oa, Ga, _) in enumerate(self.blocks2):
                for b, (ob, Gb, _) in enumerate(self.blocks2[: a + 1]):
                    np.multiply(X22[oa : oa + Ga, ob : ob + Gb], lams[a] * lams[b], out=M[oa : oa + Ga, ob : ob + Gb])
            lam2 = np.concatenate([np.full(G, lam) for (_, G, _), lam in zip(self.blocks2, lams)])
            R2 = (self.A2y - V) * lam2[:, None]
        else:
            N = self._lam2_rows(X22, Ts2)
            M[:q2, :q2] = self._lam2_rows(np.ascontiguousarray(N.T), Ts2)
            R2 = self._lam2_rows(self.A2y - V, Ts2)
        M[self._diag2, self._diag2] += 1.0
        M[q2:, :q2] = R2.T
        M[q2:, q2:] = M33
        # M is C-ordered: its transpose is the same memory in Fortran order,
        # whose upper triangle is M's lower one, which LAPACK then overwrites
        # with L (the upper triangle keeps stale values: only tril is L).
        _, info = sla.lapack.dpotrf(M.T, lower=0, overwrite_a=1, clean=0)
        if info != 0:
            raise np.linalg.LinAlgError("the random-effects block is not positive definite")
        L = M
        logdet += 2.0 * float(np.log(np.diagonal(L)[:q2]).sum())
        return logdet, L[:q2, :q2], np.tril(L[q2:, q2:]), Ts

    @functools.cached_property
    def has_gradient(self) -> bool:
        """Whether :meth:`deviance_grad` can run (not on the sparse fallback)."""
        return self.m == 1 or self.A21_dense is not None or self._pairs is not None

    @functools.cached_property
    def _pair_rc(self):
        _, tgt = self._pairs
        r, c = np.divmod(tgt, self.q2)
        return r, c, np.where(r == c, 1.0, 2.0)

    def _criterion(self, logdet: float, L33: np.ndarray) -> float:
        p, n = self.p, self.n
        r2 = L33[p, p] ** 2
        if self.reml:
            nmp = n - p
            ldx = 2.0 * float(np.log(np.diagonal(L33)[:p]).sum())
            return logdet + ldx + nmp * (1.0 + math.log(2.0 * math.pi * r2 / nmp))
        return logdet + n * (1.0 + math.log(2.0 * math.pi * r2 / n))

    def deviance_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """d(θ) and its exact gradient.

        With N_S the inverse of the leading block S of the full system M
        (S = Z, ZX or ZXy), ∂log|M_S|/∂θᵢ = 2 tr((I - [N_S]_ZZ) Λ⁻¹∂ᵢΛ), and
        d = Σ_S c_S log|M_S| + const with Σ c_S = 1. The Z₂ blocks of N_S are
        those of the inverse Schur complement (from the dense factor); the Z₁
        blocks are P₁₁⁻¹ + F'K_S F, F = M_r1 P₁₁⁻¹, whose traces against the
        per-level matrices reduce to the products already used for A₂₁WA₁₂.
        Needs every diagonal of Λ above 0 but the first term's when scalar.
        """
        self.n_evals += 1
        theta = np.asarray(theta, dtype=float)
        try:
            logdet, L22, L33, Ts = self.factor(theta)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(theta)
        f = self._criterion(logdet, L33)
        p, n, m = self.p, self.n, self.m
        _, aux = self._last
        a = np.zeros(p + 1)
        if self.reml:
            a[:p], a[p] = 1.0, n - p
        else:
            a[p] = n
        # Rows of the inverse Schur factor for X and y: [-L33⁻¹L32L22⁻¹, L33⁻¹].
        L33inv = sla.lapack.dtrtri(L33, lower=1)[0]
        Kyy = L33inv.T @ (a[:, None] * L33inv)
        G1, k1 = self.G1, self.k1
        grads = []
        if m > 1:
            q2 = self.q2
            L = self._Mbuf
            L32 = L[q2:, :q2]
            Y = L33inv @ L32
            # Z L22 = Y: the X/y rows of the inverse, Z2 columns (negated).
            # LAPACK directly: scipy's solve_triangular checks cost more than
            # the solve on these small blocks.
            V2, info = sla.lapack.dtrtrs(L22, Y.T, lower=1, trans=1)
            if info != 0:
                return np.inf, np.zeros_like(theta)
            V2 = -V2.T
            Kz = sla.lapack.dpotri(L22, lower=1)[0]  # lower triangle of K_Z
            aV2 = a[:, None] * V2
            K2y = V2.T @ (a[:, None] * L33inv)  # (q2, p+1)
            Ts2 = Ts[1:]
            diag_all = np.diagonal(Kz) + np.einsum("kr,kr->r", aV2, V2)
            for (off, G, k), T in zip(self.blocks2, Ts2):
                if k == 1:
                    lam = T[0, 0]
                    if lam == 0.0:
                        grads.append((off, np.zeros(1)))
                        continue
                    Zm = np.array([[G - diag_all[off:off + G].sum()]])
                else:
                    idx = off + np.arange(G * k).reshape(G, k)
                    r_ = idx[:, :, None]
                    c_ = idx[:, None, :]
                    lo = np.maximum(r_, c_)
                    hi = np.minimum(r_, c_)
                    blk = Kz[lo, hi] + np.einsum("kgi,kgj->gij", aV2[:, idx], V2[:, idx])
                    Zm = G * np.eye(k) - blk.sum(0)
                grads.append((off, Zm))
            # D_g: gradient of <K̃, A_r1 W A_1r> in W, K̃ = Λ_r K̄ Λ_r'.
            lam_scalar = self.all_scalar2
            if lam_scalar:
                lam2 = np.concatenate([np.full(G, T[0, 0]) for (_, G, _), T in zip(self.blocks2, Ts2)])
                K2yt = lam2[:, None] * K2y
            else:
                K2yt = _lam_blocks(K2y, self.blocks2, Ts2, trans=False)
            if self._pairs is not None:
                Vp, _ = self._pairs
                rr, cc, wt = self._pair_rc
                kv = Kz[rr, cc] + np.einsum("kr,kr->r", aV2[:, rr], V2[:, cc])
                if lam_scalar:
                    kv *= lam2[rr] * lam2[cc]
                else:
                    Kfull = np.tril(Kz) + np.tril(Kz, -1).T + V2.T @ aV2
                    Kt = _lam_blocks(_lam_blocks(Kfull, self.blocks2, Ts2, trans=False).T, self.blocks2, Ts2, trans=False)
                    kv = Kt[rr, cc]
                D = np.asarray(Vp.T @ (wt * kv)).reshape(G1, k1, k1)
                if k1 > 1:  # a pair r > r' stands for (j, l) and its mirror (l, j)
                    D = (D + D.transpose(0, 2, 1)) / 2
            else:
                Kfull = np.tril(Kz) + np.tril(Kz, -1).T + V2.T @ aV2
                if lam_scalar:
                    Kt = Kfull * np.outer(lam2, lam2)
                else:
                    Kt = _lam_blocks(_lam_blocks(Kfull, self.blocks2, Ts2, trans=False).T, self.blocks2, Ts2, trans=False)
                Ad = self.A21_dense
                Yd = Kt @ Ad
                D = np.einsum("rgj,rgl->gjl", Ad.reshape(q2, G1, k1), Yd.reshape(q2, G1, k1))
            if self.A21_dense is not None:
                U = (self.A21_dense.T @ K2yt).reshape(G1, k1, p + 1)
            else:
                U = np.asarray(self.A12 @ K2yt).reshape(G1, k1, p + 1)
            E = np.einsum("gjc,glc->gjl", U, self.A1y)
            D += E + E.transpose(0, 2, 1)
        else:
            D = np.zeros((G1, k1, k1))
        D += np.einsum("gjc,cd,gld->gjl", self.A1y, Kyy, self.A1y)
        # The first term.
        T1 = Ts[0]
        g = np.zeros_like(theta)
        if k1 == 1:
            lam, dd = T1[0, 0], aux
            g[0] = 2.0 * lam * float(np.sum(self.A11[:, 0, 0] / dd) - np.sum(D[:, 0, 0] / dd**2))
        else:
            P, Pinv = aux
            Abar = np.einsum("gij,gjl->il", Pinv, P - np.eye(k1))
            PT = Pinv @ T1.T  # (G, k, k): P⁻¹T'
            Dbar = np.einsum("gij,gjl,glm->im", PT, D, PT.transpose(0, 2, 1))
            self._put_grad(g, 0, (Abar + Abar.T) / 2 - Dbar, T1)
        pos = k1 * (k1 + 1) // 2
        for (off, Zm), T in zip(grads, Ts[1:]):
            k = T.shape[0]
            if k == 1 and T[0, 0] == 0.0:
                pass
            else:
                self._put_grad(g, pos, Zm, T)
            pos += k * (k + 1) // 2
        return f, g

    @staticmethod
    def _put_grad(g, pos, Zm, T):
        """∂/∂T[r,c] of 2 tr(Zm T⁻¹E_rc) = 2 (Zm T⁻¹)[c, r], column-major tril order."""
        k = T.shape[0]
        if k == 1:
            g[pos] = 2.0 * Zm[0, 0] / T[0, 0]
            return
        ZT = 2.0 * np.linalg.solve(T.T, Zm.T).T  # Zm T⁻¹
        r, c = _tri_index(k)
        g[pos:pos + len(r)] = ZT[c, r]

    def deviance(self, theta: np.ndarray) -> float:
        """lme4's profiled REML criterion or deviance at θ."""
        self.n_evals += 1
        try:
            logdet, _, L33, _ = self.factor(np.asarray(theta, dtype=float))
        except np.linalg.LinAlgError:
            return np.inf
        return self._criterion(logdet, L33)


# --------------------------------------------------------------------------
# optimisation


def _fd_grad_hess(f, theta, free, h, f0, hessian=True):
    """Central-difference gradient (and Hessian) of ``f`` on the free coordinates."""
    idx = np.flatnonzero(free)
    m = len(idx)
    g = np.zeros(m)
    H = np.zeros((m, m))
    fp, fm = np.empty(m), np.empty(m)
    for a, i in enumerate(idx):
        e = np.zeros_like(theta)
        e[i] = h[i]
        fp[a], fm[a] = f(theta + e), f(theta - e)
        g[a] = (fp[a] - fm[a]) / (2 * h[i])
        H[a, a] = (fp[a] - 2 * f0 + fm[a]) / h[i] ** 2
    if hessian:
        for a in range(m):
            for b in range(a + 1, m):
                i, j = idx[a], idx[b]
                e = np.zeros_like(theta)
                e2 = np.zeros_like(theta)
                e[i], e2[j] = h[i], h[j]
                v = (f(theta + e + e2) - f(theta + e - e2) - f(theta - e + e2) + f(theta - e - e2))
                H[a, b] = H[b, a] = v / (4 * h[i] * h[j])
    return idx, g, H


def _optimize(prob: _Problem) -> tuple[np.ndarray, float, bool, str]:
    """Minimise d(θ) from lme4's start (Λ = I) within lme4's bounds."""
    if prob.has_gradient:
        return _optimize_grad(prob)
    return _optimize_fd(prob)


def _optimize_grad(prob: _Problem) -> tuple[np.ndarray, float, bool, str]:
    """L-BFGS-B on the exact gradient (see :meth:`_Problem.deviance_grad`).

    The same safeguards as :func:`_optimize_fd`: a first pass with the
    diagonals kept off 0, probes of small interior values for diagonals that
    end near 0, and snapping to the boundary. Where a diagonal of a term with
    several columns is 0, Λ⁻¹ does not exist and the gradient is taken by
    forward differences.
    """
    ks = prob.ks
    theta0 = np.concatenate([np.eye(k)[_tri_index(k)] for k in ks])
    lower = _theta_lower(ks)
    diag = lower == 0
    vec_diag = np.concatenate([np.full(k * (k + 1) // 2, k > 1) for k in ks]) & diag
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    f = prob.deviance

    last: list = [None, None]  # L-BFGS-B's last point is evaluated again below

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
        if not np.any(vec_diag & (theta < 1e-8)):
            return prob.deviance_grad(theta)
        f0 = f(theta)
        g = np.empty_like(theta)
        for i in range(len(theta)):
            h = 1e-7 * max(1.0, abs(theta[i]))
            e = np.zeros_like(theta)
            e[i] = h
            g[i] = (f(theta + e) - f0) / h
        return f0, g

    opts = {"ftol": _LBFGS_FTOL, "gtol": 1e-7, "maxiter": 1000, "maxfun": 10000}
    floor = 1e-2
    start = _moment_start(prob, theta0)
    if start is not None:
        start = np.where(diag, np.maximum(start, 5 * floor), start)
        if f(start) < f(theta0):
            theta0 = start
    res = sopt.minimize(
        fg, theta0, jac=True, method="L-BFGS-B", options=opts,
        bounds=[(floor if lo == 0 else b[0], None) for lo, b in zip(lower, bounds)],
    )
    if np.any(diag & (res.x <= floor * (1 + 1e-9))):
        res = sopt.minimize(fg, res.x, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    theta, fval = res.x, float(res.fun)
    message = str(res.message)
    near = diag & (theta < 1e-3)
    if near.any():
        probes = [(f(np.where(near, v, theta)), v) for v in (0.1, 0.01)]
        fp, v = min(probes)
        if fp < fval:
            res_b = sopt.minimize(fg, np.where(near, v, theta), jac=True, method="L-BFGS-B",
                                  bounds=bounds, options=opts)
            if res_b.fun < fval - 1e-9:
                res, theta, fval, message = res_b, res_b.x, float(res_b.fun), str(res_b.message)
    theta, fval = _snap_to_boundary(f, theta, fval, diag)
    # Newton steps on the free coordinates, with the Hessian from forward
    # differences of the exact gradient; the same Hessian scales lme4's
    # check.conv.grad below.
    free = ~(diag & (theta < 1e-6))
    idx = np.flatnonzero(free)
    fv, g_all = fg(theta)
    g = g_all[idx]
    H = None
    expensive = prob.m > 1 and prob.q2 >= 400
    tol = 1e-13 * max(1.0, abs(fval))
    if len(idx) and np.max(np.abs(g)) > tol:
        H = np.zeros((len(idx), len(idx)))
        for a, i in enumerate(idx):
            h = 1e-6 * max(1.0, abs(theta[i]))
            e = np.zeros_like(theta)
            e[i] = h
            H[a] = (fg(theta + e)[1][idx] - g) / h
        H = (H + H.T) / 2
        try:
            np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            H_ok = False
        else:
            H_ok = True
        # Newton steps with this one Hessian (each step costs one evaluation).
        for _ in range(2 if expensive else 3):
            if not H_ok or np.max(np.abs(g)) <= tol:
                break
            step = -np.linalg.solve(H, g)
            cap = 0.1 * np.maximum(1.0, np.abs(theta[idx]))
            step *= min(1.0, float(np.min(cap / np.maximum(np.abs(step), 1e-300))))
            cand = theta.copy()
            cand[idx] += step
            cand = np.maximum(cand, lower)
            fc, gc = fg(cand)
            # d(θ) is only known to ~1e-15 relative near the optimum: accept a
            # step that does not raise it beyond that and shrinks the gradient.
            if not (fc <= fval + 1e-14 * abs(fval) and np.max(np.abs(gc[idx])) < np.max(np.abs(g))):
                break
            theta, fval, g = cand, min(fc, fval), gc[idx]
    converged, message = _check_convergence(g, H, message)
    return theta, fval, converged, message


_LBFGS_FTOL = 1e-11


def _moment_start(prob: _Problem, theta0: np.ndarray) -> np.ndarray | None:
    """θ from moments for the intercept-only terms (the others keep Λ = I).

    Per grouping factor, the spread of the group means of the OLS residuals
    beyond what the within-group variance explains; σ² the smallest
    within-group variance. Only a start: the caller keeps Λ = I where that
    gives the lower deviance.
    """
    d = prob.design
    if not any(t.k == 1 and np.all(t.Z == 1.0) for t in d.terms):
        return None
    X, y = d.X, d.y
    r = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if d.p else y - 0.0
    n = len(r)
    s2, within = [], []
    for t in d.terms:
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
    for t, v in zip(d.terms, s2):
        if t.k == 1 and np.all(t.Z == 1.0):
            out[pos] = math.sqrt(v / sig2)
        pos += t.k * (t.k + 1) // 2
    return out


def _optimize_fd(prob: _Problem) -> tuple[np.ndarray, float, bool, str]:
    """Minimise d(θ) from lme4's start (Λ = I) within lme4's bounds.

    L-BFGS-B on forward differences gets close cheaply; Newton steps on
    central differences then pin the optimum down (forward differences stall
    about 1e-5 short, which is the size of the tolerance on the SDs).
    """
    ks = prob.ks
    theta0 = np.concatenate([np.eye(k)[_tri_index(k)] for k in ks])
    lower = _theta_lower(ks)
    diag = lower == 0
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    f = prob.deviance
    opts = {"ftol": 1e-10, "gtol": 1e-5, "eps": 1e-7, "maxiter": 1000, "maxfun": 10000}
    # First with the diagonals kept off 0 (see below why 0 traps), then, if
    # one ends on that floor, on to lme4's bounds from there.
    floor = 1e-2
    res = sopt.minimize(
        f, theta0, method="L-BFGS-B", options=opts,
        bounds=[(floor if lo == 0 else b[0], None) for lo, b in zip(lower, bounds)],
    )
    if np.any(diag & (res.x <= floor * (1 + 1e-9))):
        res = sopt.minimize(f, res.x, method="L-BFGS-B", bounds=bounds, options=opts)
    theta, fval = res.x, float(res.fun)
    message = str(res.message)
    # d(θ) is even in a scalar term's θ, so its gradient vanishes at 0: a step
    # that lands near 0 can stall there although the optimum is inside. Probe
    # small interior values of those diagonals; from a better one, start again.
    near = diag & (theta < 1e-3)
    if near.any():
        probes = [(f(np.where(near, v, theta)), v) for v in (0.1, 0.01)]
        fp, v = min(probes)
        if fp < fval:
            res_b = sopt.minimize(f, np.where(near, v, theta), method="L-BFGS-B", bounds=bounds, options=opts)
            if res_b.fun < fval - 1e-9:
                res, theta, fval, message = res_b, res_b.x, float(res_b.fun), str(res_b.message)
    theta, fval = _snap_to_boundary(f, theta, fval, diag)
    g = H = None
    # Each evaluation of a large crossed model is a dense Cholesky: there
    # L-BFGS-B's optimum (within ~1e-6 in θ) stands, and only the gradient
    # check below is paid for.
    expensive = prob.m > 1 and prob.q2 >= 400
    if expensive:
        pass
    elif len(theta) <= 6:
        for _ in range(2):
            h = 1e-4 * np.maximum(1.0, np.abs(theta))
            free = ~(diag & (theta < 2 * h))
            if not free.any():
                break
            idx, g, H = _fd_grad_hess(f, theta, free, h, fval)
            if np.max(np.abs(g)) < 1e-7:
                break
            try:
                np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                break
            step = -np.linalg.solve(H, g)
            cap = 0.1 * np.maximum(1.0, np.abs(theta[idx]))
            step *= min(1.0, float(np.min(cap / np.maximum(np.abs(step), 1e-300))))
            cand = theta.copy()
            cand[idx] += step
            cand = np.maximum(cand, lower)
            fc = f(cand)
            if not fc < fval:
                break
            theta, fval = cand, fc
            # Newton converges quadratically: after a step this small the
            # next would be below 1e-10, so stop (g is the pre-step gradient).
            if np.max(np.abs(step) / np.maximum(1.0, np.abs(theta[idx]))) < 1e-5:
                break
    else:
        res2 = sopt.minimize(
            f, theta, method="L-BFGS-B", bounds=bounds, jac="3-point",
            options={"ftol": 1e-14, "gtol": 1e-7, "maxiter": 500, "maxfun": 5000},
        )
        if res2.fun <= fval:
            theta, fval, message = res2.x, float(res2.fun), str(res2.message)
    if g is None:
        h = 1e-4 * np.maximum(1.0, np.abs(theta))
        free = ~(diag & (theta < 2 * h))
        if free.any():
            idx, g, H = _fd_grad_hess(f, theta, free, h, fval, hessian=len(theta) <= 6 and not expensive)
        else:
            g = np.zeros(0)
    # For an expensive model the Hessian is its diagonal, which the central
    # differences give for free.
    converged, message = _check_convergence(g, H, message)
    return theta, fval, converged, message


def _snap_to_boundary(f, theta: np.ndarray, fval: float, diag: np.ndarray) -> tuple[np.ndarray, float]:
    """Set diagonals heading for 0 to exactly 0 when that is no worse, as lme4 ends on the boundary."""
    small = diag & (theta < 1e-4)
    if small.any():
        snapped = np.where(small, 0.0, theta)
        fs = f(snapped)
        if fs <= fval + 1e-9:
            return snapped, fs
    return theta, fval


def _check_convergence(g: np.ndarray, H: np.ndarray | None, message: str) -> tuple[bool, str]:
    """lme4's check.conv.grad, and a check of the curvature at the optimum.

    The gradient scaled by the Hessian's Cholesky factor (or the raw one where
    smaller) must stay below 2e-3.
    """
    mingrad = np.abs(g)
    if len(g) and H is not None and H.shape[0] == len(g):
        try:
            R = np.linalg.cholesky(H).T
            mingrad = np.minimum(mingrad, np.abs(np.linalg.solve(R, g)))
        except np.linalg.LinAlgError:
            pass
    gmax = float(np.max(mingrad)) if len(g) else 0.0
    converged = gmax < 2e-3
    if not converged:
        message = f"{message}; gradient {gmax:.3g} at the optimum"
    if H is not None and len(g) and np.any(np.diag(H) < 0):
        converged = False
        message = f"{message}; negative curvature at the optimum"
    return converged, message


# --------------------------------------------------------------------------
# estimates at the optimum


def _lam_blocks(M: np.ndarray, blocks, Ts, trans: bool) -> np.ndarray:
    """Λ M (or Λ' M when ``trans``) for the rows of a block-diagonal Λ."""
    out = np.empty_like(M, dtype=float)
    for (off, G, k), T in zip(blocks, Ts):
        seg = M[off : off + G * k].reshape(G, k, -1)
        A = T.T if trans else T
        out[off : off + G * k] = np.einsum("jl,glc->gjc", A, seg).reshape(G * k, -1)
    return out


def _lam_sparse(blocks, Ts) -> sp.csr_matrix:
    """Block-diagonal Λ as a sparse matrix (for the one-off final solves)."""
    return sp.block_diag([sp.kron(sp.identity(G), sp.csr_matrix(T)) for (_, G, _), T in zip(blocks, Ts)],
                         format="csr")


def _estimates(prob: _Problem, theta: np.ndarray):
    """β, vcov, σ, conditional modes and conditional SDs at θ, per lme4."""
    n, p = prob.n, prob.p
    logdet, L22, L33, Ts = prob.factor(theta)
    Lx = L33[:p, :p]
    lxy = L33[p, :p]
    r2 = L33[p, p] ** 2
    beta = np.linalg.solve(Lx.T, lxy) if p else np.zeros(0)
    sigma2 = r2 / (n - p) if prob.reml else r2 / n
    if p:
        Lxinv = np.linalg.inv(Lx)
        vcov = sigma2 * (Lxinv.T @ Lxinv)
    else:
        vcov = np.zeros((0, 0))

    # Conditional modes: P u = Λ'Z'(y - Xβ), P = Λ'Z'ZΛ + I, solved by blocks.
    G1, k1 = prob.G1, prob.k1
    T1 = Ts[0]
    coef = np.append(-beta, 1.0)
    z1r = prob.A1y @ coef  # (G1, k1): Z₁'(y - Xβ) per level
    rhs1 = z1r @ T1  # Λ₁' per level: row-vector times T
    M11 = np.einsum("ji,gjl,lm->gim", T1, prob.A11, T1)
    M11[:, np.arange(k1), np.arange(k1)] += 1.0
    L11 = np.linalg.cholesky(M11)

    def p11_solve(x):  # x (G1, k1, c)
        return np.linalg.solve(M11, x)

    blocks1 = [(0, G1, k1)]
    out_b, out_sd = [], []
    if prob.m == 1:
        u1 = p11_solve(rhs1[:, :, None])[:, :, 0]
        b1 = u1 @ T1.T
        P11inv = np.linalg.inv(M11)
        cv1 = sigma2 * np.einsum("ij,gjl,ml->gim", T1, P11inv, T1)
        return beta, vcov, math.sqrt(sigma2), [b1], [cv1], Ts

    blocks2, Ts2 = prob.blocks2, Ts[1:]
    L22 = np.tril(L22)  # a copy: the factor lives in the problem's buffer
    q1, q2 = G1 * k1, prob.q2
    rhs2 = _lam_blocks((prob.A2y @ coef)[:, None], blocks2, Ts2, trans=True)[:, 0]

    def p21(x1):  # Λ₂'A₂₁Λ₁ x, x (q1, c)
        y = _lam_blocks(x1, blocks1, [T1], trans=False)
        return _lam_blocks(np.asarray(prob.A21 @ y), blocks2, Ts2, trans=True)

    def p12(x2):  # Λ₁'A₁₂Λ₂ x, x (q2, c)
        y = _lam_blocks(x2, blocks2, Ts2, trans=False)
        return _lam_blocks(np.asarray(prob.A12 @ y), blocks1, [T1], trans=True)

    Linv = sla.lapack.dtrtri(L22, lower=1)[0]  # one BLAS thread here: no ping-pong

    def s_solve(x):
        return Linv.T @ (Linv @ x)

    x1 = p11_solve(rhs1[:, :, None]).reshape(q1, 1)
    u2 = s_solve(rhs2[:, None] - p21(x1))
    u1 = p11_solve((rhs1.reshape(q1, 1) - p12(u2)).reshape(G1, k1, 1)).reshape(q1, 1)
    b1 = (u1.reshape(G1, k1) @ T1.T)
    b2 = _lam_blocks(u2, blocks2, Ts2, trans=False)[:, 0]

    # Diagonal blocks of P⁻¹: S⁻¹ for the second block, and
    # P₁₁⁻¹ + B S⁻¹ B' with B = P₁₁⁻¹P₁₂ for the first. B is as sparse as
    # A₁₂, so L₂₂⁻¹B' costs nnz(A₁₂)·q₂, taken a chunk of levels at a time.
    P11inv = np.linalg.inv(M11)
    if prob.A21_dense is not None:
        # Small or dense A₂₁: B' = P₁₁⁻¹Λ₁'A₁₂Λ₂ by blocks, no sparse algebra
        # (building the sparse Λs costs more than the whole product here).
        A12L2 = _lam_blocks(np.ascontiguousarray(prob.A21_dense), blocks2, Ts2, trans=True).T  # A₁₂Λ₂
        L1A = _lam_blocks(np.ascontiguousarray(A12L2), blocks1, [T1], trans=True)  # Λ₁'A₁₂Λ₂
        Bt = np.einsum("gjl,glc->gjc", P11inv, L1A.reshape(G1, k1, q2)).reshape(q1, q2)
    else:
        Lam1 = _lam_sparse([(0, G1, k1)], [T1])
        Lam2 = _lam_sparse(blocks2, Ts2)
        P11inv_s = sp.block_diag(list(P11inv), format="csr") if k1 > 1 else sp.diags(P11inv[:, 0, 0])
        Bt = (Lam2.T @ prob.A21 @ Lam1 @ P11inv_s).T.tocsr()  # B, (q1, q2)
    extra = np.empty((G1, k1, k1))
    chunk = max(1, int(4_000_000 // max(q2, 1)) // k1)
    LinvT = np.ascontiguousarray(Linv.T)
    for g0 in range(0, G1, chunk):
        g1 = min(G1, g0 + chunk)
        Y = np.asarray(Bt[g0 * k1 : g1 * k1] @ LinvT).reshape(g1 - g0, k1, q2)
        extra[g0:g1] = Y @ Y.transpose(0, 2, 1)
    cv1 = sigma2 * np.einsum("ij,gjl,ml->gim", T1, P11inv + extra, T1)
    bs, cvs = [b1], [cv1]
    for (off, G, k), T in zip(blocks2, Ts2):
        Li = Linv[:, off : off + G * k].reshape(q2, G, k)
        Sinv = np.einsum("rgj,rgl->gjl", Li, Li)
        cvs.append(sigma2 * np.einsum("ij,gjl,ml->gim", T, Sinv, T))
        bs.append(b2[off : off + G * k].reshape(G, k))
    return beta, vcov, math.sqrt(sigma2), bs, cvs, Ts


# --------------------------------------------------------------------------
# the fit


@dataclass(frozen=True, eq=False)
class RemlFit:
    """A linear mixed model fitted by REML or ML, with lme4's estimates.

    Attributes
    ----------
    design : Design
    method : {"REML", "ML"}
    fixef, se : Series
        Fixed effects and their standard errors, indexed by the design's names.
    vcov : DataFrame
        Covariance of the fixed effects.
    sigma : float
        Residual standard deviation.
    varcorr : DataFrame
        Columns ``group, kind, term1, term2, value``: per term its SDs
        (``kind="sd"``) and correlations (``kind="corr"``), then ``Residual``.
    theta : ndarray
        lme4's θ: per term the column-major lower triangle of its relative
        covariance factor.
    objective : float
        REML criterion or deviance (-2 log-likelihood scale), as lme4.
    loglik, aic, bic : float
    ranef, ranef_sd : dict of str to DataFrame
        Per term, levels x columns: conditional modes and conditional SDs.
    singular : bool
        lme4's ``isSingular``: a diagonal element of θ below 1e-4.
    converged : bool
    optimizer_message : str
    n_evaluations : int
    nobs : int
    ngroups : dict of str to int
    """

    design: Design
    method: str
    fixef: pd.Series
    se: pd.Series
    sigma: float
    theta: np.ndarray
    objective: float
    loglik: float
    aic: float
    bic: float
    singular: bool
    converged: bool
    optimizer_message: str
    n_evaluations: int
    nobs: int
    ngroups: dict
    _covs: dict = field(repr=False, default_factory=dict)
    # The arrays behind the tables built on first access (see below): pandas
    # construction costs more than a whole small fit.
    _vcov: np.ndarray = field(repr=False, default=None)
    _modes: tuple = field(repr=False, default=())
    _cond_sds: tuple = field(repr=False, default=())

    def __post_init__(self):
        # fixef() is the protocol method shared with BayesFit; the callable Series
        # keeps fit.fixef[...] working for callers not yet moved to the method form
        object.__setattr__(self, "fixef", CallableSeries(self.fixef))

    # Frozen dataclass without __slots__: cached_property stores in __dict__.
    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects."""
        names = self.fixef.index
        return pd.DataFrame(self._vcov, index=names, columns=names.copy())

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Per term its SDs and correlations, then ``Residual`` (see the class).

        ``fit.varcorr()`` (the protocol shared with BayesFit) and ``fit.varcorr`` give the same table.
        """
        sds = {t.name: self.sd(t.name) for t in self.design.terms}
        corrs = {t.name: self.corr(t.name)[np.triu_indices(t.k, 1)] for t in self.design.terms if t.k > 1}
        return CallableFrame(varcorr_table(self.design, sds, corrs, self.sigma))

    @functools.cached_property
    def ranef(self) -> dict:
        """Per term, levels x columns: the conditional modes (``fit.ranef()`` gives the same)."""
        return CallableDict(self._per_level(self._modes))

    def icc(self) -> pd.DataFrame:
        """Each variance component's share of an observation's variance (see :func:`bayesmer.protocol.variance_shares`)."""
        shares = variance_shares(self.design, self._covs, self.sigma)
        return pd.DataFrame({"share": [float(v) for v in shares.values()]}, index=pd.Index(list(shares), name="component"))

    @functools.cached_property
    def ranef_sd(self) -> dict:
        """Per term, levels x columns: the conditional SDs."""
        return self._per_level(self._cond_sds)

    def _per_level(self, arrays) -> dict:
        return {
            t.name: pd.DataFrame(a, index=pd.Index(t.levels, name=t.name), columns=list(t.terms))
            for t, a in zip(self.design.terms, arrays)
        }

    def cov_matrices(self) -> dict[str, np.ndarray]:
        """Per term, the ``k x k`` covariance matrix of its random effects."""
        return {name: c.copy() for name, c in self._covs.items()}

    def sd(self, term_name: str) -> np.ndarray:
        """Standard deviations of a term's random effects."""
        return np.sqrt(np.diag(self._cov(term_name)))

    def corr(self, term_name: str) -> np.ndarray:
        """Correlation matrix of a term's random effects (NaN where an SD is 0)."""
        c = self._cov(term_name)
        s = np.sqrt(np.diag(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = c / np.outer(s, s)
        np.fill_diagonal(r, 1.0)
        return r

    def _cov(self, term_name: str) -> np.ndarray:
        try:
            return self._covs[term_name]
        except KeyError:
            raise KeyError(f"no random-effect term {term_name!r}; the terms are {list(self._covs)}") from None

    def fitted(self) -> np.ndarray:
        """Conditional fitted values ``Xβ + Zb``."""
        d = self.design
        out = d.X @ self.fixef.to_numpy()
        for t in d.terms:
            b = self.ranef[t.name].to_numpy()
            out = out + np.einsum("nk,nk->n", t.Z, b[t.codes])
        return out

    def residuals(self) -> np.ndarray:
        """Conditional residuals ``y - Xβ - Zb``."""
        return self.design.y - self.fitted()

    def summary(self) -> str:
        """The fit laid out as lme4's ``summary(lmer(...))``."""
        d = self.design
        lines = []
        if self.method == "REML":
            lines.append("Linear mixed model fit by REML ['lmerMod']")
        else:
            lines.append("Linear mixed model fit by maximum likelihood  ['lmerMod']")
        lines.append(f"Formula: {d.formula}")
        lines.append("")
        if self.method == "REML":
            lines.append(f"REML criterion at convergence: {self.objective:.1f}")
        else:
            hdr = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
            df_resid = self.nobs - len(self.fixef) - len(self.theta) - 1
            vals = [f"{self.aic:.1f}", f"{self.bic:.1f}", f"{self.loglik:.1f}", f"{self.objective:.1f}", str(df_resid)]
            w = max(len(v) for v in hdr + vals) + 1
            lines.append("".join(h.rjust(w) for h in hdr))
            lines.append("".join(v.rjust(w) for v in vals))
        lines.append("")
        res = self.residuals() / self.sigma
        q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1])
        lines.append("Scaled residuals: ")
        qs = [f"{v:.4f}" for v in q]
        w = max(len(s) for s in qs) + 1
        lines.append("".join(h.rjust(w) for h in ["Min", "1Q", "Median", "3Q", "Max"]))
        lines.append("".join(s.rjust(w) for s in qs))
        lines.append("")
        lines.append("Random effects:")
        rows = []
        for t in d.terms:
            cov = self._covs[t.name]
            sds = np.sqrt(np.diag(cov))
            cr = self.corr(t.name)
            for j, nm in enumerate(t.terms):
                corr = " ".join(f"{cr[j, i]:5.2f}" for i in range(j)) if j else ""
                rows.append((t.name if j == 0 else "", nm, f"{cov[j, j]:.4g}", f"{sds[j]:.4g}", corr))
        rows.append(("Residual", "", f"{self.sigma**2:.4g}", f"{self.sigma:.4g}", ""))
        has_corr = any(r[4] for r in rows)
        head = ("Groups", "Name", "Variance", "Std.Dev.") + (("Corr",) if has_corr else ())
        table = [head] + [r if has_corr else r[:4] for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        for r in table:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].rjust(widths[3])]
            if has_corr:
                cells.append(r[4].ljust(widths[4]))
            lines.append((" " + " ".join(cells)).rstrip())
        groups = ", ".join(f"{g}, {v}" for g, v in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        lines.append("")
        lines.append("Fixed effects:")
        fe = pd.DataFrame(
            {"Estimate": self.fixef, "Std. Error": self.se, "t value": self.fixef / self.se}
        )
        lines.append(fe.to_string(float_format=lambda v: f"{v:.4g}"))
        if self.singular:
            lines.append(_SINGULAR_MSG)
        if not self.converged:
            lines.append(f"optimizer did not converge: {self.optimizer_message}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _varcorr(design: Design, covs: dict, sigma: float) -> pd.DataFrame:
    rows = []
    for t in design.terms:
        c = covs[t.name]
        s = np.sqrt(np.diag(c))
        for j, nm in enumerate(t.terms):
            rows.append((t.name, "sd", nm, "", float(s[j])))
        for j in range(t.k):
            for i in range(j + 1, t.k):
                v = c[i, j] / (s[i] * s[j]) if s[i] > 0 and s[j] > 0 else float("nan")
                rows.append((t.name, "corr", t.terms[j], t.terms[i], float(v)))
    rows.append(("Residual", "sd", "", "", float(sigma)))
    return pd.DataFrame(rows, columns=["group", "kind", "term1", "term2", "value"])


def fit_reml(design: Design, method: str = "REML") -> RemlFit:
    """Fit a linear mixed model to a design by REML or ML, as lme4 does.

    Parameters
    ----------
    design : Design
        From :func:`bayesmer.build_design`.
    method : {"REML", "ML"}

    Returns
    -------
    RemlFit

    Warns
    -----
    UserWarning
        On a singular (boundary) fit and when the optimiser did not converge.
    """
    if method not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML', not {method!r}")
    n, p = design.n, design.p
    if method == "REML" and n <= p:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")
    prob = _Problem(design, reml=method == "REML")
    with one_blas_thread():
        theta, fval, converged, message = _optimize(prob)
        beta, vcov, sigma, bs, cvs, Ts = _estimates(prob, theta)
    names = pd.Index(design.fixed_names)
    se = np.sqrt(np.diag(vcov))
    covs = {t.name: sigma**2 * (T @ T.T) for t, T in zip(design.terms, Ts)}
    cond_sds = tuple(np.sqrt(np.clip(np.diagonal(cv, axis1=1, axis2=2), 0.0, None)) for cv in cvs)
    df = p + len(theta) + 1
    loglik = -fval / 2.0
    lower = _theta_lower(prob.ks)
    singular = bool(np.any(theta[lower == 0] < _SINGULAR_TOL))
    ngroups: dict[str, int] = {}
    for t in design.terms:
        ngroups.setdefault(t.group, t.n_levels)
    fit = RemlFit(
        design=design,
        method=method,
        fixef=pd.Series(beta, index=names, name="Estimate"),
        se=pd.Series(se, index=names.copy(), name="Std. Error"),
        sigma=float(sigma),
        theta=theta,
        objective=float(fval),
        loglik=float(loglik),
        aic=float(fval + 2 * df),
        bic=float(fval + math.log(n) * df),
        singular=singular,
        converged=converged,
        optimizer_message=message,
        n_evaluations=prob.n_evals,
        nobs=n,
        ngroups=ngroups,
        _covs=covs,
        _vcov=vcov,
        _modes=tuple(bs),
        _cond_sds=cond_sds,
    )
    if singular:
        warnings.warn(_SINGULAR_MSG, UserWarning, stacklevel=2)
    if not converged:
        warnings.warn(f"the optimizer did not converge: {message}", UserWarning, stacklevel=2)
    return fit


def reml(formula: str | Formula, data: pd.DataFrame, method: str = "REML") -> RemlFit:
    """Fit ``formula`` to ``data`` by REML (default) or ML, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame
    method : {"REML", "ML"}

    Returns
    -------
    RemlFit
    """
    if method not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML', not {method!r}")
    return fit_reml(build_design(formula, data), method=method)
