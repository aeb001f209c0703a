"""The weighted system ``Λ'Z'WZΛ + I`` of a Laplace fit: ZΛ by rows, and its blocked Cholesky factor.

lme4's PIRLS (:mod:`.pirls`) and glmmTMB's inner Newton (:mod:`.laplace`)
factor the same matrix at every step, with W the working weights (lme4's)
or ``-∂² log p / ∂η²`` (the exact Hessian, glmmTMB's): :class:`RowBlocks`
holds ZΛ as one CSR row of K entries per observation and assembles the blocks
of ``Λ'Z'WZΛ + I`` straight from the rows (one bincount each, no
sparse-sparse product); :class:`BlockChol` factors them in MixedModels.jl's
blocked form (the first term's ``k x k`` diagonal blocks, then one dense block
for the other terms).

This is the one copy of the weighted factorisation, but not yet the engine's
one kernel: the Gaussian engine's compiled factorisation (:mod:`._kernel`,
``factor_a``/``chol_dense``/``factor_b`` on :class:`.collapsed.CollapsedStats`)
factors the same blocked form from O(levels) sufficient statistics made once.
To serve PIRLS it would need those statistics with row weights W (made again
at every step), the random effects mapped between its order (terms grouped by
grouping factor) and this one (the first term, then the rest), and for
glmmTMB's gradient solves with P on any right-hand side (it solves only for
``Λ'Z'R`` and gives P⁻¹'s diagonal blocks).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .theta import theta_to_T

__all__ = ["BlockChol", "RowBlocks"]


class BlockChol:
    """Cholesky factor of ``Λ'Z'WZΛ + I`` in MixedModels.jl's blocked form.

    The first term (most levels) makes ``G`` diagonal blocks of ``k x k``;
    the other terms one dense block of ``q2 x q2``. With ``R12 = L11⁻¹ A12``,
    ``L22 L22' = A22 - R12'R12``: the cost is that of the small dense block,
    not of a dense ``q x q`` factorisation (lme4 gets the same from CHOLMOD's
    fill-reducing ordering).

    Raises ``numpy.linalg.LinAlgError`` when the matrix is not positive definite.
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


class RowBlocks:
    """ZΛ of one design, row by row, and the blocks of ``Λ'Z'WZΛ + I`` for any W.

    Parameters
    ----------
    terms : sequence of ReTerm
        In lme4's order (the term with most levels first): each has ``k``,
        ``Z`` (n, k), ``codes`` (n,) and ``n_levels``.
    n : int
        The number of rows.

    Attributes
    ----------
    ks : list of int
    K : int
        Entries of ZΛ per row (the sum of the ks).
    q : int
        Columns of ZΛ (random effects).
    cols : (n, K) int array
        The columns of ZΛ that each row's entries fall in.
    nth : int
        Length of θ.
    """

    def __init__(self, terms, n: int):
        self.n = n
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
        # With K entries per row the products fall in fixed cells of the
        # blocks, summed by one bincount each.
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

    def lam_z(self, theta: np.ndarray) -> sp.csr_matrix:
        """ZΛ(θ) as an (n, q) CSR matrix of K entries per row (``.data.reshape(n, K)`` their values)."""
        Ts = theta_to_T(theta, self.ks)
        data = np.concatenate([Z @ T for Z, T in zip(self.Zs, Ts)], axis=1).reshape(-1)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n, self.q))

    def factor(self, data: np.ndarray, W: np.ndarray) -> BlockChol:
        """The factor of ``Λ'Z'WZΛ + I`` from ZΛ's row entries ``data`` (n, K)."""
        k1, q2 = self.k1, self.q2
        d1, d2 = data[:, :k1], data[:, k1:]
        wd1 = d1 * W[:, None]
        A11 = np.bincount(self.idx11, weights=(wd1[:, :, None] * d1[:, None, :]).reshape(-1), minlength=self.q1 * k1)
        A11 = A11.reshape(self.G1, k1, k1)
        A11 += np.eye(k1)
        A12 = np.bincount(self.idx12, weights=(wd1[:, :, None] * d2[:, None, :]).reshape(-1), minlength=self.q1 * q2)
        A22 = np.bincount(self.idx22, weights=((d2 * W[:, None])[:, :, None] * d2[:, None, :]).reshape(-1),
                          minlength=q2 * q2)
        A22 = A22.astype(float).reshape(q2, q2)  # bincount of no rows is int
        A22.flat[self.diag2] += 1.0
        return BlockChol(A11, A12.astype(float).reshape(self.q1, q2), A22)
