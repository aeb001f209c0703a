"""The collapsed Gaussian log-likelihood and its gradient, compiled by numba.

Model (lme4's relative form): ``y = Xβ + Zb + ε``, ``ε ~ N(0, σ²I)``, ``b = Λu``
with ``u ~ N(0, σ²I)`` and, when the fixed effects are integrated out,
``β = μ0 + Γu_β`` with ``Γ = diag(s0)/σ`` (a Normal prior). With ``Λ*`` the
block-diagonal stack of the per-term factors (and Γ), ``P = Λ*'A Λ* + I``,
``c = Λ*'Z*'r`` and ``ũ = P⁻¹c``::

    f = -2 log p(y | ·) - n log 2π = 2n log σ + log|P| + (r'r - c'ũ)/σ²
    ∂f/∂Λ* = 2 Λ*⁻ᵀ (I - P⁻¹ - ũũ'/σ²)        (only its diagonal blocks)

P is factored by blocks as MixedModels.jl does: the grouping factor with most
levels is block diagonal (one K1 x K1 block per level), every other factor and
the β block make one dense block. Terms that share a grouping factor are one
factor block (their Λ is block diagonal inside it), so ``(x || g)`` costs what
``(x | g)`` costs.

Everything here is ``cache=True``: the code depends on no data, so after the
first run on a machine a new data set costs no compilation. All compiled code
lives in this one module on purpose: numba invalidates a cached function when
its own file changes, not when a function it calls from another module does,
so a caller cached elsewhere would keep running stale code after an upgrade.
"""

from __future__ import annotations

import functools
import math

import llvmlite.binding as _llvm
import numba as nb
import numpy as np
from numba import types
from numba.extending import get_cython_function_address, intrinsic

# Scalar prior families, by code (the priors module maps its classes to them).
NORMAL, STUDENT_T, HALF_CAUCHY, HALF_NORMAL, HALF_STUDENT_T, EXPONENTIAL, GAMMA, BETA = range(8)

_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


# LAPACK from numba: scipy's cython_lapack exports the Fortran routines' addresses. Each is
# registered with LLVM under a name of ours and called as an external symbol, so the compiled
# code refers to it by name (resolved again in every process): it stays cacheable.
def _lapack(name, nargs):
    sym = "bayesmer_" + name
    _llvm.add_symbol(sym, get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(sym, types.void(*([types.voidptr] * nargs)))


#: dpotrf(uplo, n, a, lda, info): Cholesky factor; dpotri(uplo, n, a, lda, info): the inverse
#: from it (trtri and the triangular product lauum), n³/3 + 2n³/3 flops in all
_dpotrf = _lapack("dpotrf", 5)
_dpotri = _lapack("dpotri", 5)


@nb.njit(**_JIT)
def _chol_inplace(A, m):
    """Lower Cholesky of A[:m, :m] in place; False when not positive definite."""
    for j in range(m):
        s = A[j, j]
        for k in range(j):
            s -= A[j, k] * A[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, m):
            t = A[i, j]
            for k in range(j):
                t -= A[i, k] * A[j, k]
            A[i, j] = t / d
    for j in range(m):
        for i in range(j):
            A[i, j] = 0.0
    return True


@nb.njit(**_JIT)
def _chol_inverse(L, m, out):
    """(LL')⁻¹ from the lower factor L[:m, :m]."""
    Linv = np.zeros((m, m))
    for j in range(m):
        Linv[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, m):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * Linv[k, j]
            Linv[i, j] = s / L[i, i]
    for i in range(m):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, m):
                s += Linv[k, i] * Linv[k, j]
            out[i, j] = s
            out[j, i] = s


@nb.njit(**_JIT)
def _chol_solve(L, m, b):
    """Solve (LL')x = b in place."""
    for i in range(m):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * b[k]
        b[i] = s / L[i, i]
    for i in range(m - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, m):
            s -= L[k, i] * b[k]
        b[i] = s / L[i, i]


@nb.njit(**_JIT)
def _lt_solve_t(L, m, b):
    """Solve L'x = b in place (back substitution)."""
    for i in range(m - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, m):
            s -= L[k, i] * b[k]
        b[i] = s / L[i, i]


@nb.njit(**_JIT)
def _potrf_lower(A):
    """Lower Cholesky factor of the row-major A (its lower triangle is read) in place, LAPACK;
    the strict upper triangle is zeroed. False when A is not positive definite.

    A row-major lower triangle is the column-major upper one: dpotrf("U") on it gives U with
    A = U'U, whose column-major upper triangle is the row-major L = U'."""
    m = A.shape[0]
    if m == 0:
        return True
    uplo = np.full(1, ord("U"), dtype=np.uint8)
    n = np.full(1, m, dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    _dpotrf(uplo.ctypes, n.ctypes, A.ctypes, n.ctypes, info.ctypes)
    if info[0] != 0:
        return False
    for i in range(m):
        for j in range(i + 1, m):
            A[i, j] = 0.0
    return True


@nb.njit(**_JIT)
def _potri_lower(L):
    """(LL')⁻¹'s lower triangle in place of the row-major lower factor L (LAPACK dpotri: L⁻¹ by
    trtri, then the triangular product L⁻ᵀL⁻¹ by lauum). The strict upper triangle is left as it was."""
    m = L.shape[0]
    if m == 0:
        return True
    uplo = np.full(1, ord("U"), dtype=np.uint8)
    n = np.full(1, m, dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    _dpotri(uplo.ctypes, n.ctypes, L.ctypes, n.ctypes, info.ctypes)
    return info[0] == 0


# Statistics tuple ``st`` (see CollapsedStats.kernel_stats), by position:
_A11, _A1X, _A1E, _PTR, _ROWS, _VALS, _A22, _A2X, _A2E, _XTX, _XTE, _ETE = range(12)
_BLK_G, _BLK_K, _BLK_OFF, _TERM_BLK, _TERM_KOFS, _TERM_K, _ROW_A = range(12, 19)
#: above this size the dense block is factored by LAPACK instead of loops
DENSE_LOOP_MAX = 48
#: from this size on (m2² doubles over 1 MB, beyond a core's cache) the first factor's couplings
#: are visited row by row of the dense block rather than level by level (measured on the InstEval
#: shape, m2 = 1,144: 1.5x faster; on its 150-student subset, m2 = 166: 1.3x slower)
ROW_ORDER_MIN = 400


@nb.njit(**_JIT)
def _all_T(Tall, blk_K, term_blk, term_kofs, term_k):
    """Per factor block its K x K relative factor, block diagonal over the block's terms."""
    nb_ = blk_K.shape[0]
    Kmax = 0
    for b in range(nb_):
        Kmax = max(Kmax, blk_K[b])
    TB = np.zeros((nb_, Kmax, Kmax))
    for t in range(term_blk.shape[0]):
        b, o = term_blk[t], term_kofs[t]
        for a in range(term_k[t]):
            for c in range(term_k[t]):
                TB[b, o + a, o + c] = Tall[t, a, c]
    return TB


@nb.njit(**_JIT)
def _coupling_order(st, hptr, m2):
    """The first factor's couplings (the rows Hc holds), ordered by the dense-block row they touch.

    Entry h of Hc couples level g (hptr[g] <= h < hptr[g+1]) with dense row ``rowof[h]``
    (a β row after the level's factor rows); that level's entries start at ``hstart[h]``, and
    ``tord[tptr[r]:tptr[r+1]]`` are the entries at row r. A level's rows are sorted, so the
    entries h2 in ``hstart[h] .. h`` touch rows at or before ``rowof[h]``.
    """
    ptr, rows = st[_PTR], st[_ROWS]
    q2 = st[_A22].shape[0]
    G1 = hptr.shape[0] - 1
    nh_tot = hptr[G1]
    rowof = np.empty(nh_tot, dtype=np.int64)
    hstart = np.empty(nh_tot, dtype=np.int64)
    for g in range(G1):
        lo = ptr[g]
        ng = ptr[g + 1] - lo
        h0 = hptr[g]
        for j in range(hptr[g + 1] - h0):
            rowof[h0 + j] = rows[lo + j] if j < ng else q2 + (j - ng)
            hstart[h0 + j] = h0
    tptr = np.zeros(m2 + 1, dtype=np.int64)
    for h in range(nh_tot):
        tptr[rowof[h] + 1] += 1
    for r in range(m2):
        tptr[r + 1] += tptr[r]
    fill = tptr[:m2].copy()
    tord = np.empty(nh_tot, dtype=np.int64)
    for h in range(nh_tot):
        r = rowof[h]
        tord[fill[r]] = h
        fill[r] += 1
    return rowof, hstart, tptr, tord


@nb.njit(**_JIT)
def _level_rowbuf(st, hptr):
    """A buffer for one level's dense rows (the most any level touches)."""
    mx = 0
    for g in range(hptr.shape[0] - 1):
        mx = max(mx, hptr[g + 1] - hptr[g])
    return np.empty(mx, dtype=np.int64)


@nb.njit(**_JIT)
def _level_rows_into(rb, st, g, hptr):
    """Level g's dense rows (its factor rows, then the β rows) into rb; returns how many."""
    ptr, rows = st[_PTR], st[_ROWS]
    q2 = st[_A22].shape[0]
    lo = ptr[g]
    ng = ptr[g + 1] - lo
    nh = hptr[g + 1] - hptr[g]
    for j in range(nh):
        rb[j] = rows[lo + j] if j < ng else q2 + (j - ng)
    return nh


@nb.njit(**_JIT)
def _level_quad_by_level(Sinv, Minv, Hc, hptr, st, per_level):
    """:func:`_level_quad` level by level (a small S⁻¹ stays in cache whichever way it is read)."""
    G1, K1 = Minv.shape[0], Minv.shape[1]
    Q = np.zeros((G1 if per_level else 1, K1, K1))
    rb = _level_rowbuf(st, hptr)
    E = np.empty((rb.shape[0], K1))
    for g in range(G1):
        q = g if per_level else 0
        h0 = hptr[g]
        nh = _level_rows_into(rb, st, g, hptr)
        for j in range(nh):
            for a in range(K1):
                v = 0.0
                for l in range(K1):
                    v += Minv[g, a, l] * Hc[h0 + j, l]
                E[j, a] = v
        for j in range(nh):
            r = rb[j]
            for j2 in range(j):
                r2 = rb[j2]
                sv = Sinv[r, r2] if r2 <= r else Sinv[r2, r]
                for a in range(K1):
                    for c in range(K1):
                        Q[q, a, c] += sv * (E[j, a] * E[j2, c] + E[j2, a] * E[j, c])
            sv = Sinv[r, r]
            for a in range(K1):
                for c in range(K1):
                    Q[q, a, c] += E[j, a] * sv * E[j, c]
    return Q


@nb.njit(**_JIT)
def _level_quad(Sinv, Minv, Hc, hptr, st, m2, per_level):
    """Σ_g (or, with ``per_level``, per level g) E_g S⁻¹ E_g' over the rows level g touches,
    E_g = M_g⁻¹H_g', reading only S⁻¹'s lower triangle, row by row (see :func:`_coupling_order`).

    Returns Q (G1 or 1, K1, K1)."""
    G1, K1 = Minv.shape[0], Minv.shape[1]
    if m2 < ROW_ORDER_MIN:
        return _level_quad_by_level(Sinv, Minv, Hc, hptr, st, per_level)
    E = np.empty((hptr[G1], K1))
    lev = np.empty(hptr[G1], dtype=np.int64)
    for g in range(G1):
        for h in range(hptr[g], hptr[g + 1]):
            lev[h] = g
            for a in range(K1):
                v = 0.0
                for l in range(K1):
                    v += Minv[g, a, l] * Hc[h, l]
                E[h, a] = v
    Q = np.zeros((G1 if per_level else 1, K1, K1))
    rowof, hstart, tptr, tord = _coupling_order(st, hptr, m2)
    for r in range(m2):
        for t in range(tptr[r], tptr[r + 1]):
            hh = tord[t]
            q = lev[hh] if per_level else 0
            for h2 in range(hstart[hh], hh + 1):
                r2 = rowof[h2]
                sv = Sinv[r, r2] if r2 <= r else Sinv[r2, r]
                if h2 == hh:
                    for a in range(K1):
                        for c in range(K1):
                            Q[q, a, c] += E[hh, a] * sv * E[hh, c]
                else:
                    for a in range(K1):
                        for c in range(K1):
                            Q[q, a, c] += sv * (E[hh, a] * E[h2, c] + E[h2, a] * E[hh, c])
    return Q


@nb.njit(**_JIT)
def factor_a(Tall, bscale, R1, R2, RR, st, W):
    """First pass of the blocked factorisation of P = Λ*'AΛ* + I, with right-hand sides R.

    ``W`` (m2, m2), when not empty (see :func:`want_w`), receives the lower triangle of
    Σ_g E_g'E_g (E_g = M_g⁻¹H_g'), so that the gradient's Σ_g E_g S⁻¹ E_g' is one pass over
    S⁻¹ (:func:`zm_blocks`) rather than a second visit of the couplings.

    The largest grouping factor is block diagonal (one K1 x K1 block per level);
    the other factors and, when ``bscale`` is not empty, the β block (scaled by
    ``bscale``, Γ = diag(bscale)) make one dense block. ``R1`` (G1, K1, nr) is
    Z₁'R, ``R2`` (q2 + pb, nr) is [Z₂'R; X'R], ``RR`` (nr, nr) is R'R.

    Returns (ok, logdet of the first block, TB, Minv (G1, K1, K1), Hc (rows, K1)
    the per-level coupling Λ₂'A₂₁Λ₁ on the rows each level touches, hptr,
    c1 = Λ₁'R1, w1 = M⁻¹c1, S (m2, m2) lower triangle of the Schur complement,
    rhs2, c2 = Λ₂'R2).
    """
    A11, A1X, ptr, rows, vals = st[_A11], st[_A1X], st[_PTR], st[_ROWS], st[_VALS]
    A22, A2X, XtX = st[_A22], st[_A2X], st[_XTX]
    blk_G, blk_K, row_a = st[_BLK_G], st[_BLK_K], st[_ROW_A]
    G1, K1 = blk_G[0], blk_K[0]
    q2 = A22.shape[0]
    pb = bscale.shape[0]
    m2 = q2 + pb
    nr = R1.shape[2]
    TB = _all_T(Tall, blk_K, st[_TERM_BLK], st[_TERM_KOFS], st[_TERM_K])
    rblk = np.empty(q2, dtype=np.int64)
    for b in range(1, blk_G.shape[0]):
        o = st[_BLK_OFF][b]
        for r in range(blk_G[b] * blk_K[b]):
            rblk[o + r] = b
    # c2 = Λ₂'R2 and S = Λ₂'[[A22, A2X], [AX2, XtX]]Λ₂ + I, lower triangle
    c2 = np.empty((m2, nr))
    for r in range(q2):
        b, a = rblk[r], row_a[r]
        start = r - a
        for c in range(nr):
            v = 0.0
            for a2 in range(a, blk_K[b]):
                v += TB[b, a2, a] * R2[start + a2, c]
            c2[r, c] = v
    for i in range(pb):
        for c in range(nr):
            c2[q2 + i, c] = bscale[i] * R2[q2 + i, c]
    S = np.zeros((m2, m2))
    scalar = True
    for b in range(1, blk_G.shape[0]):
        scalar = scalar and blk_K[b] == 1
    if scalar:
        # every other factor has one column: Λ₂ is diagonal
        lam = np.empty(q2)
        for r in range(q2):
            lam[r] = TB[rblk[r], 0, 0]
        for r in range(q2):
            for c in range(r + 1):
                S[r, c] = lam[r] * A22[r, c] * lam[c]
    else:
        # Λ₂'A22 (rows), then ·Λ₂ (columns)
        tmp = np.empty((q2, q2))
        for r in range(q2):
            b, a = rblk[r], row_a[r]
            start = r - a
            for c in range(q2):
                v = 0.0
                for a2 in range(a, blk_K[b]):
                    v += TB[b, a2, a] * A22[start + a2, c]
                tmp[r, c] = v
        for r in range(q2):
            for c in range(r + 1):
                b, a = rblk[c], row_a[c]
                start = c - a
                v = 0.0
                for a2 in range(a, blk_K[b]):
                    v += tmp[r, start + a2] * TB[b, a2, a]
                S[r, c] = v
    if pb:
        for i in range(pb):
            for c in range(q2):
                b, a = rblk[c], row_a[c]
                start = c - a
                v = 0.0
                for a2 in range(a, blk_K[b]):
                    v += A2X[start + a2, i] * TB[b, a2, a]
                S[q2 + i, c] = bscale[i] * v
            for j in range(i + 1):
                S[q2 + i, q2 + j] = bscale[i] * XtX[i, j] * bscale[j]
    for i in range(m2):
        S[i, i] += 1.0
    # the first block, level by level
    nrows_total = rows.shape[0] + G1 * pb
    Hc = np.empty((nrows_total, K1))
    hptr = np.empty(G1 + 1, dtype=np.int64)
    Minv = np.empty((G1, K1, K1))
    c1 = np.empty((G1, K1, nr))
    w1 = np.empty((G1, K1, nr))
    rhs2 = c2.copy()
    logdet = 0.0
    M = np.empty((K1, K1))
    AT = np.empty((K1, K1))
    E = np.empty((nrows_total, K1))
    h = 0
    for g in range(G1):
        hptr[g] = h
        for a in range(K1):
            for c in range(K1):
                v = 0.0
                for j in range(c, K1):
                    v += A11[g, a, j] * TB[0, j, c]
                AT[a, c] = v
        for a in range(K1):
            for c in range(a + 1):
                v = 0.0
                for j in range(a, K1):
                    v += TB[0, j, a] * AT[j, c]
                M[a, c] = v
                M[c, a] = v
            M[a, a] += 1.0
        if not _chol_inplace(M, K1):
            return (False, 0.0, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2)
        for i in range(K1):
            logdet += 2.0 * math.log(M[i, i])
        _chol_inverse(M, K1, Minv[g])
        lo, hi = ptr[g], ptr[g + 1]
        ng = hi - lo
        # raw rows A₂₁[r, g]·T1, then Λ₂' within each touched level block
        for j in range(ng):
            for c in range(K1):
                v = 0.0
                for l in range(c, K1):
                    v += vals[lo + j, l] * TB[0, l, c]
                Hc[h + j, c] = v
        for j in range(ng):
            r = rows[lo + j]
            b, a = rblk[r], row_a[r]
            # a level's rows are consecutive in the list, so row start+a2 is at j - a + a2;
            # in ascending order the rows read (a2 >= a) are not yet overwritten
            for c in range(K1):
                v = 0.0
                for a2 in range(a, blk_K[b]):
                    v += TB[b, a2, a] * Hc[h + j - a + a2, c]
                Hc[h + j, c] = v
        for i in range(pb):
            for c in range(K1):
                v = 0.0
                for l in range(c, K1):
                    v += A1X[g, l, i] * TB[0, l, c]
                Hc[h + ng + i, c] = bscale[i] * v
        nh = ng + pb
        # c1 = T1'R1_g, w1 = M⁻¹c1
        for a in range(K1):
            for c in range(nr):
                v = 0.0
                for j in range(a, K1):
                    v += TB[0, j, a] * R1[g, j, c]
                c1[g, a, c] = v
        for a in range(K1):
            for c in range(nr):
                v = 0.0
                for j in range(K1):
                    v += Minv[g, a, j] * c1[g, j, c]
                w1[g, a, c] = v
        # rhs2 -= H w1; E = H M⁻¹ for the update of S below
        for j in range(nh):
            rj = rows[lo + j] if j < ng else q2 + (j - ng)
            for c in range(nr):
                v = 0.0
                for l in range(K1):
                    v += Hc[h + j, l] * w1[g, l, c]
                rhs2[rj, c] -= v
            for c in range(K1):
                v = 0.0
                for l in range(K1):
                    v += Hc[h + j, l] * Minv[g, l, c]
                E[h + j, c] = v
        h += nh
    hptr[G1] = h
    # S -= Σ_g H_g M_g⁻¹ H_g': every level's pairs of touched rows. A large S (the InstEval shape's
    # is 10 MB) row by row, the pairs taken at their larger row, so that the writes stay in one
    # row of S; a small one level by level
    if m2 < ROW_ORDER_MIN:
        rb = _level_rowbuf(st, hptr)
        for g in range(G1):
            h0 = hptr[g]
            nh = _level_rows_into(rb, st, g, hptr)
            for j in range(nh):
                r = rb[j]
                for j2 in range(j + 1):
                    v = 0.0
                    for l in range(K1):
                        v += E[h0 + j, l] * Hc[h0 + j2, l]
                    r2 = rb[j2]
                    if r2 <= r:
                        S[r, r2] -= v
                    else:
                        S[r2, r] -= v
        return (True, logdet, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2)
    rowof, hstart, tptr, tord = _coupling_order(st, hptr, m2)
    if W.shape[0] > 0 and K1 == 1:
        for r in range(m2):
            for t in range(tptr[r], tptr[r + 1]):
                hh = tord[t]
                e = E[hh, 0]
                for h2 in range(hstart[hh], hh + 1):
                    r2 = rowof[h2]
                    if r2 <= r:
                        S[r, r2] -= e * Hc[h2, 0]
                        W[r, r2] += e * E[h2, 0]
                    else:
                        S[r2, r] -= e * Hc[h2, 0]
                        W[r2, r] += e * E[h2, 0]
        return (True, logdet, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2)
    for r in range(m2):
        for t in range(tptr[r], tptr[r + 1]):
            hh = tord[t]
            for h2 in range(hstart[hh], hh + 1):
                v = 0.0
                for l in range(K1):
                    v += E[hh, l] * Hc[h2, l]
                r2 = rowof[h2]
                if r2 <= r:
                    S[r, r2] -= v
                else:
                    S[r2, r] -= v
    return (True, logdet, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2)


@nb.njit(**_JIT)
def want_w(st, pb, want):
    """The ``W`` argument of :func:`factor_a`: an m2 x m2 array of zeros where the gradient is wanted,
    the first factor has one column and the dense block is large (row-ordered couplings); else empty."""
    m2 = st[_A22].shape[0] + pb
    if want and st[_BLK_K][0] == 1 and m2 >= ROW_ORDER_MIN:
        return np.zeros((m2, m2))
    return np.zeros((0, 0))


@nb.njit(**_JIT)
def chol_small(S):
    """Lower Cholesky factor of the lower triangle of S (loops; for small blocks)."""
    L = S.copy()
    ok = _chol_inplace(L, L.shape[0])
    return ok, L


@nb.njit(**_JIT)
def chol_lapack(S):
    """Lower Cholesky factor of the lower triangle of S, in place (LAPACK dpotrf); returns (ok, S)."""
    return _potrf_lower(S), S


@nb.njit(**_JIT)
def chol_dense(S):
    """Lower Cholesky factor of the lower triangle of S: loops for small blocks, LAPACK in place for large."""
    if S.shape[0] <= DENSE_LOOP_MAX:
        return chol_small(S)
    return chol_lapack(S)


@nb.njit(**_JIT)
def factor_b(L22, logdet, c1, w1, rhs2, c2, RR, Minv, Hc, hptr, st, pb):
    """Second pass: ũ for every right-hand side and the penalised cross products.

    Returns (log|P|, Pen = R'R - c'ũ (nr, nr), U1 (G1, K1, nr), U2 (m2, nr)).
    """
    ptr, rows = st[_PTR], st[_ROWS]
    q2 = st[_A22].shape[0]
    m2 = L22.shape[0]
    G1, K1, nr = c1.shape[0], c1.shape[1], c1.shape[2]
    for i in range(m2):
        logdet += 2.0 * math.log(L22[i, i])
    U2 = rhs2.copy()
    col = np.empty(m2)
    for c in range(nr):
        for i in range(m2):
            col[i] = U2[i, c]
        _chol_solve(L22, m2, col)
        for i in range(m2):
            U2[i, c] = col[i]
    U1 = np.empty((G1, K1, nr))
    z = np.empty(K1)
    Pen = RR.copy()
    for g in range(G1):
        lo = ptr[g]
        ng = ptr[g + 1] - lo
        nh = hptr[g + 1] - hptr[g]
        h = hptr[g]
        for c in range(nr):
            for a in range(K1):
                v = 0.0
                for j in range(nh):
                    rj = rows[lo + j] if j < ng else q2 + (j - ng)
                    v += Hc[h + j, a] * U2[rj, c]
                z[a] = v
            for a in range(K1):
                v = w1[g, a, c]
                for j in range(K1):
                    v -= Minv[g, a, j] * z[j]
                U1[g, a, c] = v
    for c in range(nr):
        for d in range(nr):
            v = 0.0
            for g in range(G1):
                for a in range(K1):
                    v += c1[g, a, c] * U1[g, a, d]
            for i in range(m2):
                v += c2[i, c] * U2[i, d]
            Pen[c, d] -= v
    # symmetrise (c'ũ is symmetric in exact arithmetic)
    for c in range(nr):
        for d in range(c):
            v = 0.5 * (Pen[c, d] + Pen[d, c])
            Pen[c, d] = v
            Pen[d, c] = v
    return logdet, Pen, U1, U2


@nb.njit(**_JIT)
def sinv_from_chol(L22):
    """S⁻¹ from its lower factor: the whole matrix by loops for small blocks; for large ones its
    lower triangle by LAPACK's dpotri (the strict upper triangle is 0), all the kernel reads."""
    m = L22.shape[0]
    out = np.empty((m, m))
    if m <= DENSE_LOOP_MAX:
        _chol_inverse(L22, m, out)
        return out
    for i in range(m):
        for j in range(i + 1):
            out[i, j] = L22[i, j]
        for j in range(i + 1, m):
            out[i, j] = 0.0
    _potri_lower(out)
    return out


@nb.njit(**_JIT)
def zm_blocks(Kmat, Sinv, U1, U2, Minv, Hc, hptr, st, pb, W):
    """Σ over levels of I - (P⁻¹)_gg - Ũ_g K Ũ_g' per factor block, and for the β block.

    Reads only the lower triangle of ``Sinv`` (S⁻¹) and, when not empty, of ``W`` (from :func:`factor_a`).
    f = log|P| + g(Pen) has ∂f/∂Λ* = 2Λ*⁻ᵀ(that), with K = ∂g/∂Pen.
    Returns (Zm (blocks, Kmax, Kmax), Zb (pb, pb)).
    """
    blk_G, blk_K, blk_off = st[_BLK_G], st[_BLK_K], st[_BLK_OFF]
    q2 = st[_A22].shape[0]
    G1, K1, nr = U1.shape[0], U1.shape[1], U1.shape[2]
    nb_ = blk_G.shape[0]
    Kmax = 0
    for b in range(nb_):
        Kmax = max(Kmax, blk_K[b])
    Zm = np.zeros((nb_, Kmax, Kmax))
    UK = np.empty((K1, nr))
    # (P⁻¹)_gg = M_g⁻¹ + E_g S⁻¹ E_g' (E_g = M_g⁻¹H_g' on the rows level g touches): the sum over g
    # of the second part at once
    if W.shape[0] > 0:
        # K1 = 1: Σ_g E_g S⁻¹ E_g' = <S⁻¹, W>, W = Σ_g E_g'E_g (lower triangles, off-diagonal twice)
        Q = np.zeros((1, 1, 1))
        q = 0.0
        for r in range(W.shape[0]):
            acc = 0.0
            for c in range(r):
                acc += Sinv[r, c] * W[r, c]
            q += 2.0 * acc + Sinv[r, r] * W[r, r]
        Q[0, 0, 0] = q
    else:
        Q = _level_quad(Sinv, Minv, Hc, hptr, st, Sinv.shape[0], False)
    for a in range(K1):
        for c in range(K1):
            Zm[0, a, c] = (G1 if a == c else 0.0) - Q[0, a, c]
    for g in range(G1):
        for a in range(K1):
            for c in range(nr):
                v = 0.0
                for d in range(nr):
                    v += U1[g, a, d] * Kmat[d, c]
                UK[a, c] = v
        for a in range(K1):
            for c in range(a + 1):
                w = 0.0
                for d in range(nr):
                    w += UK[a, d] * U1[g, c, d]
                z = Minv[g, a, c] + w
                Zm[0, a, c] -= z
                if a != c:
                    Zm[0, c, a] -= z
    for b in range(1, nb_):
        Kb = blk_K[b]
        for hl in range(blk_G[b]):
            o = blk_off[b] + hl * Kb
            for a in range(Kb):
                for c in range(Kb):
                    w = 0.0
                    for d in range(nr):
                        for e in range(nr):
                            w += U2[o + a, d] * Kmat[d, e] * U2[o + c, e]
                    sv = Sinv[o + a, o + c] if a >= c else Sinv[o + c, o + a]
                    Zm[b, a, c] += (1.0 if a == c else 0.0) - sv - w
    Zb = np.zeros((pb, pb))
    for i in range(pb):
        for j in range(pb):
            w = 0.0
            for d in range(nr):
                for e in range(nr):
                    w += U2[q2 + i, d] * Kmat[d, e] * U2[q2 + j, e]
            sv = Sinv[q2 + i, q2 + j] if i >= j else Sinv[q2 + j, q2 + i]
            Zb[i, j] = (1.0 if i == j else 0.0) - sv - w
    return Zm, Zb


@nb.njit(**_JIT)
def first_block_pinv(Sinv, Minv, Hc, hptr, st, pb):
    """(P⁻¹)_gg for every level g of the first factor: M⁻¹ + E S⁻¹ E' on the rows it touches."""
    out = _level_quad(Sinv, Minv, Hc, hptr, st, Sinv.shape[0], True)
    out += Minv
    return out


@nb.njit(**_JIT)
def grad_T(Zm, Tall, st):
    """∂f/∂T_t = 2 T_t⁻ᵀ Zm_tt per term (lower triangle; 0 where T_t is singular)."""
    term_blk, term_kofs, term_k = st[_TERM_BLK], st[_TERM_KOFS], st[_TERM_K]
    gT = np.zeros(Tall.shape)
    for t in range(term_blk.shape[0]):
        k = term_k[t]
        o = term_kofs[t]
        X = np.empty((k, k))
        for a in range(k):
            for c in range(k):
                X[a, c] = Zm[term_blk[t], o + a, o + c]
        for col in range(k):
            for i in range(k - 1, -1, -1):
                v = X[i, col]
                for m in range(i + 1, k):
                    v -= Tall[t, m, i] * X[m, col]
                X[i, col] = v / Tall[t, i, i] if Tall[t, i, i] != 0.0 else 0.0
        for a in range(k):
            for c in range(a + 1):
                gT[t, a, c] = 2.0 * X[a, c]
    return gT


@nb.njit(**_JIT)
def profiled_criterion(logdet, Pen, n, reml):
    """lme4's REML criterion (``reml``) or ML deviance from log|P| and Pen = [X e]'V⁻¹[X e]; and K = ∂d/∂Pen."""
    p = Pen.shape[0] - 1
    K = np.zeros((p + 1, p + 1))
    ldx = 0.0
    bt = np.zeros(p)
    Sinv = np.zeros((p, p))
    if p:
        Lx = Pen[:p, :p].copy()
        if not _chol_inplace(Lx, p):
            return np.inf, K
        for i in range(p):
            ldx += 2.0 * math.log(Lx[i, i])
        _chol_inverse(Lx, p, Sinv)
        for i in range(p):
            v = 0.0
            for j in range(p):
                v += Sinv[i, j] * Pen[j, p]
            bt[i] = v
    r2 = Pen[p, p]
    for i in range(p):
        r2 -= Pen[p, i] * bt[i]
    if not r2 > 0.0:
        return np.inf, K
    w = np.empty(p + 1)
    for i in range(p):
        w[i] = -bt[i]
    w[p] = 1.0
    if reml:
        nmp = n - p
        d = logdet + ldx + nmp * (1.0 + math.log(2.0 * math.pi * r2 / nmp))
        c = nmp / r2
        for i in range(p):
            for j in range(p):
                K[i, j] += Sinv[i, j]
    else:
        d = logdet + n * (1.0 + math.log(2.0 * math.pi * r2 / n))
        c = n / r2
    for i in range(p + 1):
        for j in range(p + 1):
            K[i, j] += c * w[i] * w[j]
    return d, K


@nb.njit(**_JIT)
def profiled_eval(Tall, R1, R2, RR, st, n, reml, want_grad):
    """The profiled criterion and, on request, ∂d/∂T, in one call (the dense block by loops when
    small, by LAPACK's dpotrf and dpotri when large)."""
    W = want_w(st, 0, want_grad)
    ok, ld1, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2 = factor_a(Tall, np.zeros(0), R1, R2, RR, st, W)
    gT = np.zeros(Tall.shape)
    if not ok:
        return np.inf, gT
    ok, L22 = chol_dense(S)
    if not ok:
        return np.inf, gT
    logdet, Pen, U1, U2 = factor_b(L22, ld1, c1, w1, rhs2, c2, RR, Minv, Hc, hptr, st, 0)
    d, K = profiled_criterion(logdet, Pen, n, reml)
    if want_grad and np.isfinite(d):
        if L22.shape[0] <= DENSE_LOOP_MAX:
            Sinv = sinv_from_chol(L22)
        else:
            _potri_lower(L22)
            Sinv = L22
        Zm, Zb = zm_blocks(K, Sinv, U1, U2, Minv, Hc, hptr, st, 0, W)
        gT = grad_T(Zm, Tall, st)
    return d, gT


@nb.njit(**_JIT)
def _residual_rhs(delta, integ, st):
    """R = r = e - Xδ as one right-hand side: (R1, R2, RR)."""
    A1X, A1e, A2X, A2e, XtX, Xte = st[_A1X], st[_A1E], st[_A2X], st[_A2E], st[_XTX], st[_XTE]
    ete = st[_ETE][0]
    G1, K1, p = A1X.shape[0], A1X.shape[1], A1X.shape[2]
    q2 = A2X.shape[0]
    pb = p if integ else 0
    R1 = np.empty((G1, K1, 1))
    for g in range(G1):
        for j in range(K1):
            v = A1e[g, j]
            for c in range(p):
                v -= A1X[g, j, c] * delta[c]
            R1[g, j, 0] = v
    R2 = np.empty((q2 + pb, 1))
    for r in range(q2):
        v = A2e[r]
        for c in range(p):
            v -= A2X[r, c] * delta[c]
        R2[r, 0] = v
    xr = np.empty(p)
    for i in range(p):
        v = Xte[i]
        for c in range(p):
            v -= XtX[i, c] * delta[c]
        xr[i] = v
    for i in range(pb):
        R2[q2 + i, 0] = xr[i]
    rr = ete
    for c in range(p):
        rr -= 2.0 * delta[c] * Xte[c]
        for c2 in range(p):
            rr += delta[c] * XtX[c, c2] * delta[c2]
    RR = np.empty((1, 1))
    RR[0, 0] = rr
    return R1, R2, RR, xr


@nb.njit(**_JIT)
def loglik_grad(sigma, Tall, delta, s0, integ, n, st, gT, gdelta):
    """log p(y | σ, Λ, [β]) (without -n/2 log 2π) and its gradient, all in numba (small dense block).

    ``delta`` is β - β0 when β is sampled, μ0 - β0 when β ~ N(μ0, diag(s0²)) is
    integrated out (``integ``). Fills ``gT`` (∂/∂T_t) and, when sampled,
    ``gdelta`` (∂/∂β). Returns (loglik, ∂loglik/∂σ at fixed T, ok).
    """
    p = st[_A1X].shape[2]
    pb = p if integ else 0
    bscale = np.empty(pb)
    for i in range(pb):
        bscale[i] = s0[i] / sigma
    R1, R2, RR, xr = _residual_rhs(delta, integ, st)
    W = want_w(st, pb, True)
    ok, ld1, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2 = factor_a(Tall, bscale, R1, R2, RR, st, W)
    if not ok:
        return -np.inf, 0.0, False
    ok, L22 = chol_dense(S)
    if not ok:
        return -np.inf, 0.0, False
    logdet, Pen, U1, U2 = factor_b(L22, ld1, c1, w1, rhs2, c2, RR, Minv, Hc, hptr, st, pb)
    s2 = sigma * sigma
    pen = Pen[0, 0]
    f = 2.0 * n * math.log(sigma) + logdet + pen / s2
    if L22.shape[0] <= DENSE_LOOP_MAX:
        Sinv = sinv_from_chol(L22)
    else:
        _potri_lower(L22)  # L22 is not needed again: S⁻¹'s lower triangle in its place
        Sinv = L22
    Kmat = np.empty((1, 1))
    Kmat[0, 0] = 1.0 / s2
    Zm, Zb = zm_blocks(Kmat, Sinv, U1, U2, Minv, Hc, hptr, st, pb, W)
    g = grad_T(Zm, Tall, st)
    for t in range(gT.shape[0]):
        for a in range(gT.shape[1]):
            for c in range(gT.shape[2]):
                gT[t, a, c] = -0.5 * g[t, a, c]
    dfds = 2.0 * n / sigma - 2.0 * pen / (s2 * sigma)
    for i in range(pb):
        dfds -= 2.0 * Zb[i, i] / sigma  # Γ = diag(s0)/σ: ∂f/∂Γ_ii = 2Zb_ii/Γ_ii, dΓ_ii/dσ = -Γ_ii/σ
    if not integ:
        # ∂Pen/∂δ = -2 (X'r - X'ZΛũ)
        A1X, A2X = st[_A1X], st[_A2X]
        blk_G, blk_K, blk_off = st[_BLK_G], st[_BLK_K], st[_BLK_OFF]
        G1, K1 = U1.shape[0], U1.shape[1]
        for c in range(p):
            gdelta[c] = xr[c]
        for gg in range(G1):
            for j in range(K1):
                tu = 0.0
                for l in range(j + 1):
                    tu += TB[0, j, l] * U1[gg, l, 0]
                for c in range(p):
                    gdelta[c] -= A1X[gg, j, c] * tu
        for b in range(1, blk_G.shape[0]):
            Kb = blk_K[b]
            for hl in range(blk_G[b]):
                o = blk_off[b] + hl * Kb
                for j in range(Kb):
                    tu = 0.0
                    for l in range(j + 1):
                        tu += TB[b, j, l] * U2[o + l, 0]
                    for c in range(p):
                        gdelta[c] -= A2X[o + j, c] * tu
        for c in range(p):
            gdelta[c] /= s2
    return -0.5 * f, -0.5 * dfds, True


@nb.njit(**_JIT)
def draw_u_many(sigma, Tall, delta, s0, integ, st, eps1, eps2, u1_out, u2_out):
    """Exact draws of u | y, σ, Λ (and u_β when β is integrated out), one per row of the inputs.

    σ (S,), Tall (S, terms, kmax, kmax), δ (S, p), standard normal eps1 (S, G1, K1)
    and eps2 (S, m2). Fills u1_out, u2_out; b = Λu, β = μ0 + Γu_β. Returns the
    first draw whose system was not positive definite, or -1.
    """
    p = st[_A1X].shape[2]
    pb = p if integ else 0
    ptr, rows = st[_PTR], st[_ROWS]
    q2 = st[_A22].shape[0]
    for s in range(sigma.shape[0]):
        bscale = np.empty(pb)
        for i in range(pb):
            bscale[i] = s0[i] / sigma[s]
        R1, R2, RR, xr = _residual_rhs(delta[s], integ, st)
        ok, ld1, TB, Minv, Hc, hptr, c1, w1, S, rhs2, c2 = factor_a(Tall[s], bscale, R1, R2, RR, st, np.zeros((0, 0)))
        if not ok:
            return s
        ok, L22 = chol_dense(S)
        if not ok:
            return s
        logdet, Pen, U1, U2 = factor_b(L22, ld1, c1, w1, rhs2, c2, RR, Minv, Hc, hptr, st, pb)
        m2 = L22.shape[0]
        # u2 ~ N(ũ2, σ²S⁻¹): ũ2 + σL22⁻ᵀε2
        z = eps2[s].copy()
        _lt_solve_t(L22, m2, z)
        for i in range(m2):
            u2_out[s, i] = U2[i, 0] + sigma[s] * z[i]
        # u1 | u2 ~ N(M⁻¹(c1 - H'u2), σ²M⁻¹), M⁻¹ = C'⁻¹C⁻¹ with C = chol(M⁻¹)⁻ᵀ: use chol of M⁻¹
        G1, K1 = Minv.shape[0], Minv.shape[1]
        Cm = np.empty((K1, K1))
        for g in range(G1):
            lo = ptr[g]
            ng = ptr[g + 1] - lo
            nh = hptr[g + 1] - hptr[g]
            h = hptr[g]
            rhs = np.empty(K1)
            for a in range(K1):
                v = c1[g, a, 0]
                for j in range(nh):
                    rj = rows[lo + j] if j < ng else q2 + (j - ng)
                    v -= Hc[h + j, a] * u2_out[s, rj]
                rhs[a] = v
            for a in range(K1):
                for c in range(K1):
                    Cm[a, c] = Minv[g, a, c]
            _chol_inplace(Cm, K1)  # M⁻¹ = Cm Cm': Cm ε has covariance M⁻¹
            for a in range(K1):
                v = 0.0
                e = 0.0
                for j in range(K1):
                    v += Minv[g, a, j] * rhs[j]
                for j in range(a + 1):
                    e += Cm[a, j] * eps1[s, g, j]
                u1_out[s, g, a] = v + sigma[s] * e
    return -1


# --------------------------------------------------------------------------
# the posterior density: priors, transforms (see bayesmer.engine.density)

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
    if code == GAMMA:  # shape a, rate b (brms's gamma(a, b))
        a, b = par[0], par[1]
        if x <= 0.0:
            return -np.inf, 0.0
        return a * math.log(b) - math.lgamma(a) + (a - 1.0) * math.log(x) - b * x, (a - 1.0) / x - b
    if code == BETA:
        a, b = par[0], par[1]
        if x <= 0.0 or x >= 1.0:
            return -np.inf, 0.0
        return (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + (a - 1.0) * math.log(x)
                + (b - 1.0) * math.log1p(-x)), (a - 1.0) / x - (b - 1.0) / (1.0 - x)
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
def _term_scale(x, h, k, codes, par, ci, grad, sd_out, L_out):
    """A term's SDs from its log-SDs ``x[h:h+k]`` (priors ``codes/par[ci:]`` and log Jacobians added,
    their gradient written to ``grad``) and its correlation's Cholesky factor; returns the log density."""
    lp = 0.0
    for a in range(k):
        sd = math.exp(x[h + a])
        sd_out[a] = sd
        l, d = _prior(codes[ci + a], par[ci + a], sd)
        lp += l + x[h + a]
        grad[h + a] = d * sd + 1.0
    if k > 1:
        _corr_chol(x[h + k:h + k + k * (k - 1) // 2], k, L_out)
    else:
        L_out[0, 0] = 1.0
    return lp


@nb.njit(**_JIT)
def _term_scale_grad(x, h, k, gLam, Lc, sds, eta, grad):
    """∂/∂Λ of a term (Λ = diag(sd) Lc) into its log-SDs and partial correlations, with the LKJ prior
    added; returns the LKJ's log density (and its Jacobian's)."""
    gL = np.zeros((k, k))
    for a in range(k):
        acc = 0.0
        for c in range(a + 1):
            acc += gLam[a, c] * Lc[a, c]
            gL[a, c] = gLam[a, c] * sds[a]
        grad[h + a] += acc * sds[a]
    if k == 1:
        return 0.0
    nz = k * (k - 1) // 2
    gz = np.zeros(nz)
    lp = _corr_chol_grad(x[h + k:h + k + nz], k, Lc.copy(), gL, eta, gz)
    grad[h + k:h + k + nz] += gz
    return lp


@nb.njit(**_JIT)
def logp_grad(x, grad, meta, codes, par, eta, s0, mu0, beta0, st):
    """Log posterior density at x (up to the LKJ constants) and its gradient into ``grad``."""
    n, p, integ, kmax = meta[0], meta[1], meta[2] == 1, meta[3]
    term_k = st[_TERM_K]
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
        lp += _term_scale(x, pos, k, codes, par, ci, grad, sds[t], Ls[t, :k, :k])
        ci += k
        for a in range(k):
            for b in range(k):
                Tall[t, a, b] = sds[t, a] * Ls[t, a, b] / sigma
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
    ll, gs, ok = loglik_grad(sigma, Tall, delta, s0, integ, n, st, gT, gd)
    if not ok:
        return -np.inf
    lp += ll - 0.5 * n * _LOG2PI
    gsig += gs
    pos = 1
    for t in range(nterm):
        k = term_k[t]
        for a in range(k):
            for b in range(a + 1):
                gsig -= gT[t, a, b] * Tall[t, a, b] / sigma
        # T = Λ/σ: ∂/∂Λ = ∂/∂T / σ
        lp += _term_scale_grad(x, pos, k, gT[t, :k, :k] / sigma, Ls[t, :k, :k], sds[t], eta[t], grad)
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


# --------------------------------------------------------------------------
# The GLMM posterior (binomial, Poisson): b explicit, per term centred or not.
#
# x = [β (p), per term (log sd_t (k_t), z_t (k_t(k_t-1)/2)), per term its G_t x k_t
# effects], where a non-centred term holds u (b_g = Λ_t u_g, u ~ N(0, I)) and a
# centred term holds b itself (b_g ~ N(0, Λ_t Λ_t')). Λ_t = diag(sd_t) chol(R_t).
# Then the family's dpars (meta[5] of them, their transforms meta[6:]), unconstrained.
# The binomial's and Poisson's rows leave out their constants (log binomial
# coefficients, log y!); the other families' keep them.

BINOMIAL_LOGIT, BINOMIAL_PROBIT, BINOMIAL_CLOGLOG, POISSON_LOG = range(4)
# The families of bayesmer.families (each module holds the reference log density and its
# eta-derivatives; tests/test_family_posterior.py checks these rows against family.logpdf).
# Their rows keep every normalising constant, so the pointwise log-likelihood is the true one.
(NEGBINOMIAL, ZERO_INFLATED_POISSON, ZERO_INFLATED_NEGBINOMIAL, STUDENT, GAMMA_LOG, GAMMA_INVERSE, BETA_LOGIT,
 CUMULATIVE_LOGIT, CUMULATIVE_PROBIT, GAUSSIAN) = range(4, 14)
# The dpars' transforms to the unconstrained coordinates NUTS moves (families.base.Dpar.transform):
# log x; logit x; log(x - 1) (student's nu >= 1); ordered thresholds: the first free, then log increments.
TR_LOG, TR_LOGIT, TR_LOG1M1, TR_ORDERED_FIRST, TR_ORDERED_NEXT = range(5)
_SQRT2 = math.sqrt(2.0)
_LOGPI = math.log(math.pi)


@nb.njit(**_JIT)
def _log_ndtr(t):
    """(log Φ(t), φ(t)/Φ(t)), stable far into the lower tail."""
    if t > -30.0:
        P = 0.5 * math.erfc(-t / _SQRT2)
        return math.log(P), math.exp(-0.5 * t * t - 0.5 * _LOG2PI) / P
    # Mills' ratio: Φ(t) = φ(t)/(-t) (1 - 1/t² + 3/t⁴ - ...)
    t2 = t * t
    s = 1.0 - 1.0 / t2 + 3.0 / (t2 * t2)
    return -0.5 * t2 - math.log(-t) - 0.5 * _LOG2PI + math.log(s), -t / s


@nb.njit(**_JIT)
def _family_ll(fam, y, w, e):
    """(w ℓ(y; η), dℓ/dη) of one row: y a proportion (binomial) or a count (Poisson)."""
    if fam == POISSON_LOG:
        if e > 700.0:
            return -np.inf, 0.0
        m = math.exp(e)
        return w * (y * e - m), w * (y - m)
    l1 = d1 = l0 = d0 = 0.0
    if fam == BINOMIAL_LOGIT:
        # log σ(η) = -softplus(-η), log(1 - σ(η)) = -softplus(η)
        sp_neg = max(-e, 0.0) + math.log1p(math.exp(-abs(e)))
        sig = math.exp(-sp_neg)
        l1, d1 = -sp_neg, 1.0 - sig
        l0, d0 = -(sp_neg + e), -sig
    elif fam == BINOMIAL_PROBIT:
        l1, r1 = _log_ndtr(e)
        l0, r0 = _log_ndtr(-e)
        d1, d0 = r1, -r0
    else:  # cloglog: μ = 1 - exp(-exp(η))
        if e > 700.0:
            l1, d1, l0, d0 = 0.0, 0.0, -np.inf, -np.inf
        else:
            t = math.exp(e)
            l0, d0 = -t, -t
            l1 = math.log(-math.expm1(-t))
            d1 = t / math.expm1(t) if t > 1e-300 else 1.0
    ll = 0.0
    d = 0.0
    if y > 0.0:
        ll += y * l1
        d += y * d1
    if y < 1.0:
        ll += (1.0 - y) * l0
        d += (1.0 - y) * d0
    return w * ll, w * d


@nb.njit(**_JIT)
def _digamma(x):
    """ψ(x) for x > 0: the recurrence up to 10, then the asymptotic series (error below 1e-14)."""
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + math.log(x) - 0.5 / x - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (
        1.0 / 240.0 - f * (1.0 / 132.0)))))


@nb.njit(**_JIT)
def _log_sigmoid(t):
    """log(1 / (1 + exp(-t))) = -softplus(-t)."""
    return -(max(-t, 0.0) + math.log1p(math.exp(-abs(t))))


@nb.njit(**_JIT)
def _log1mexp(d):
    """log(1 - exp(d)) for d <= 0 (Mächler's switch at -log 2)."""
    if d > -_LOG2:
        return math.log(-math.expm1(d))
    return math.log1p(-math.exp(d))


@nb.njit(**_JIT)
def _logaddexp(a, b):
    m = max(a, b)
    if m == -np.inf:
        return -np.inf
    return m + math.log1p(math.exp(-abs(a - b)))


@nb.njit(**_JIT)
def _cum_logcdf(probit, t):
    """(log F(t), log f(t)) of the cumulative model's link distribution (t finite)."""
    if probit:
        return _log_ndtr(t)[0], -0.5 * t * t - 0.5 * _LOG2PI
    lF = _log_sigmoid(t)
    return lF, lF + _log_sigmoid(-t)


@nb.njit(**_JIT)
def _cumulative_row(probit, k, e, dp, gdp, w):
    """One row of the cumulative model (reference: families/cumulative.py): P(Y = k) = F(τ_k - η) - F(τ_{k-1} - η).

    log P is taken on the side where the difference does not cancel: log F(a) + log(1 - F(b)/F(a)),
    or with the survival function when both lie in the upper tail."""
    K1 = dp.shape[0]
    has_a = k <= K1
    has_b = k >= 2
    a = dp[k - 1] - e if has_a else np.inf
    b = dp[k - 2] - e if has_b else -np.inf
    if has_b and (not has_a or b > -a):  # the upper tail: S(b) - S(a), S(t) = F(-t)
        lSb = _cum_logcdf(probit, -b)[0]
        if has_a:
            lp = lSb + _log1mexp(_cum_logcdf(probit, -a)[0] - lSb)
        else:
            lp = lSb
    else:
        lFa = _cum_logcdf(probit, a)[0]
        if has_b:
            lp = lFa + _log1mexp(_cum_logcdf(probit, b)[0] - lFa)
        else:
            lp = lFa
    fa = math.exp(_cum_logcdf(probit, a)[1] - lp) if has_a else 0.0  # f(a) / P
    fb = math.exp(_cum_logcdf(probit, b)[1] - lp) if has_b else 0.0
    if has_a:
        gdp[k - 1] += w * fa
    if has_b:
        gdp[k - 2] -= w * fb
    return w * lp, -w * (fa - fb)


@nb.njit(**_JIT)
def _family_row(fam, y, w, e, dp, gdp):
    """(w ℓ(y; η, dpars), w dℓ/dη) of one row of a bayesmer.families family, w dℓ/d(dpar) added to gdp.

    dp holds the dpars' natural values in the family's order (families/<family>.py, whose
    ``logpdf`` and ``derivs`` are the references)."""
    if fam == NEGBINOMIAL or fam == ZERO_INFLATED_NEGBINOMIAL:
        # families/negbinomial.py: Var = μ + μ²/k
        if e > 700.0:
            return -np.inf, 0.0
        k = dp[0]
        mu = math.exp(e)
        lkm = math.log(k + mu)
        lk = math.log(k)
        f0 = k * (lk - lkm)  # log P(0)
        if fam == ZERO_INFLATED_NEGBINOMIAL:
            zi = dp[1]
            l1mz = math.log1p(-zi)
            if y == 0.0:
                # families/zero_inflated_poisson.py zi_mix: P(0) = zi + (1 - zi) f(0)
                ls = _logaddexp(math.log(zi), l1mz + f0)
                r = math.exp(l1mz + f0 - ls)
                gdp[0] += w * r * (lk - lkm + mu / (k + mu))
                gdp[1] += w * (1.0 - math.exp(f0)) * math.exp(-ls)
                return w * ls, w * r * (-k * mu / (k + mu))
            gdp[1] -= w / (1.0 - zi)
        else:
            l1mz = 0.0
        ll = (math.lgamma(y + k) - math.lgamma(k) - math.lgamma(y + 1.0) + f0 + y * e - y * lkm + l1mz)
        gdp[0] += w * (_digamma(y + k) - _digamma(k) + lk - lkm + (mu - y) / (k + mu))
        return w * ll, w * (y - (y + k) * mu / (k + mu))
    if fam == ZERO_INFLATED_POISSON:
        if e > 700.0:
            return -np.inf, 0.0
        zi = dp[0]
        mu = math.exp(e)
        if y == 0.0:
            ls = _logaddexp(math.log(zi), math.log1p(-zi) - mu)
            r = math.exp(math.log1p(-zi) - mu - ls)
            gdp[0] += w * (-math.expm1(-mu)) * math.exp(-ls)
            return w * ls, -w * r * mu
        gdp[0] -= w / (1.0 - zi)
        return w * (math.log1p(-zi) + y * e - mu - math.lgamma(y + 1.0)), w * (y - mu)
    if fam == STUDENT:
        # families/student.py: dpars (sigma, nu)
        s, nu = dp[0], dp[1]
        r = (y - e) / s
        q = r * r / nu
        ll = (math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * (math.log(nu) + _LOGPI)
              - math.log(s) - 0.5 * (nu + 1.0) * math.log1p(q))
        den = nu + r * r
        gdp[0] += w * (-1.0 + (nu + 1.0) * r * r / den) / s
        gdp[1] += w * (0.5 * _digamma(0.5 * (nu + 1.0)) - 0.5 * _digamma(0.5 * nu) - 0.5 / nu
                       - 0.5 * math.log1p(q) + 0.5 * (nu + 1.0) * r * r / (nu * den))
        return w * ll, w * (nu + 1.0) * r / (s * den)
    if fam == GAMMA_LOG or fam == GAMMA_INVERSE:
        # families/gamma.py: y ~ Gamma(shape k, rate k / μ)
        k = dp[0]
        ly = math.log(y)
        if fam == GAMMA_LOG:
            if e < -700.0:
                return -np.inf, 0.0
            t = y * math.exp(-e)  # y / μ
            lmu = e
            d = k * (t - 1.0)
        else:
            if e <= 0.0:
                return -np.inf, 0.0
            t = y * e
            lmu = -math.log(e)
            d = k * (1.0 / e - y)
        ll = k * math.log(k) - math.lgamma(k) + (k - 1.0) * ly - k * t - k * lmu
        gdp[0] += w * (math.log(k) + 1.0 - _digamma(k) + ly - t - lmu)
        return w * ll, w * d
    if fam == BETA_LOGIT:
        # families/beta.py: shape1 = μφ, shape2 = (1 - μ)φ
        phi = dp[0]
        mu = 1.0 / (1.0 + math.exp(-e)) if e >= 0 else math.exp(e) / (1.0 + math.exp(e))
        nmu = 1.0 / (1.0 + math.exp(e)) if e <= 0 else math.exp(-e) / (1.0 + math.exp(-e))
        a, b = mu * phi, nmu * phi
        if a <= 0.0 or b <= 0.0:
            return -np.inf, 0.0
        ly, l1y = math.log(y), math.log1p(-y)
        ll = math.lgamma(phi) - math.lgamma(a) - math.lgamma(b) + (a - 1.0) * ly + (b - 1.0) * l1y
        da, db = _digamma(a), _digamma(b)
        gdp[0] += w * (_digamma(phi) - mu * da - nmu * db + mu * ly + nmu * l1y)
        return w * ll, w * phi * (ly - l1y - da + db) * mu * nmu
    if fam == CUMULATIVE_LOGIT or fam == CUMULATIVE_PROBIT:
        return _cumulative_row(fam == CUMULATIVE_PROBIT, int(y), e, dp, gdp, w)
    # GAUSSIAN: families/glm.py
    s = dp[0]
    r = (y - e) / s
    gdp[0] += w * (r * r - 1.0) / s
    return w * (-0.5 * r * r - math.log(s) - 0.5 * _LOG2PI), w * r / s


@nb.njit(**_JIT)
def _dpars_natural(z, tr, out):
    """The dpars' natural values from their unconstrained coordinates; returns the log Jacobian."""
    lj = 0.0
    for j in range(z.shape[0]):
        c = tr[j]
        if c == TR_LOG:
            out[j] = math.exp(z[j])
            lj += z[j]
        elif c == TR_LOGIT:
            out[j] = 1.0 / (1.0 + math.exp(-z[j])) if z[j] >= 0 else math.exp(z[j]) / (1.0 + math.exp(z[j]))
            lj += _log_sigmoid(z[j]) + _log_sigmoid(-z[j])
        elif c == TR_LOG1M1:
            out[j] = 1.0 + math.exp(z[j])
            lj += z[j]
        elif c == TR_ORDERED_FIRST:
            out[j] = z[j]
        else:
            out[j] = out[j - 1] + math.exp(z[j])
            lj += z[j]
    return lj


@nb.njit(**_JIT)
def _dpars_grad(z, tr, val, gval, gz):
    """gz = d(log density)/dz from d/d(natural value) gval, the log Jacobians' derivatives included."""
    nd = z.shape[0]
    acc = 0.0  # Σ of gval over the thresholds above j (ordered: val_j moves every later threshold)
    for j in range(nd - 1, -1, -1):
        c = tr[j]
        if c == TR_LOG:
            gz[j] = gval[j] * val[j] + 1.0
        elif c == TR_LOGIT:
            gz[j] = gval[j] * val[j] * (1.0 - val[j]) + 1.0 - 2.0 * val[j]
        elif c == TR_LOG1M1:
            gz[j] = gval[j] * (val[j] - 1.0) + 1.0
        elif c == TR_ORDERED_NEXT:
            acc += gval[j]
            gz[j] = acc * math.exp(z[j]) + 1.0
        else:
            acc += gval[j]
            gz[j] = acc
            acc = 0.0


@nb.njit(**_JIT)
def _glmm_beta(x, p, bshift, bchol):
    """β = shift + C γ from the first p coordinates γ of x (C lower triangular)."""
    beta = np.empty(p)
    for a in range(p):
        acc = bshift[a]
        for c in range(a + 1):
            acc += bchol[a, c] * x[c]
        beta[a] = acc
    return beta


@nb.njit(**_JIT)
def glmm_logp_grad(x, grad, meta, codes, par, eta, y, wt, off, X, term_k, term_G, term_cent, rcodes, Z,
                   term_zoff, bshift, bchol):
    """Log posterior density of a GLMM at x (up to the LKJ and likelihood constants), gradient into ``grad``.

    The fixed effects are sampled as γ with β = shift + Cγ (C the Cholesky factor of the
    Laplace fit's covariance of β), which NUTS's diagonal mass matrix cannot do itself:
    an uncentred covariate and its intercept are strongly correlated. The Jacobian is constant.
    """
    n, p, nterm, kmax, fam, nd = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
    grad[:] = 0.0
    lp = 0.0
    beta = _glmm_beta(x, p, bshift, bchol)
    gbeta = np.zeros(p)
    for c in range(p):
        l, d = _prior(codes[c], par[c], beta[c])
        lp += l
        gbeta[c] = d
    hpos = np.empty(nterm, dtype=np.int64)
    bpos = np.empty(nterm, dtype=np.int64)
    pos = p
    for t in range(nterm):
        k = term_k[t]
        hpos[t] = pos
        pos += k + k * (k - 1) // 2
    b0 = pos
    for t in range(nterm):
        bpos[t] = pos - b0
        pos += term_G[t] * term_k[t]
    nb_ = pos - b0
    # the family's dpars: the last nd coordinates, their priors after the SDs'
    d0 = pos
    tr = meta[6:6 + nd]
    dval = np.empty(nd)
    gdp = np.zeros(nd)
    lp += _dpars_natural(x[d0:d0 + nd], tr, dval)
    Lam = np.zeros((nterm, kmax, kmax))
    Lc = np.zeros((nterm, kmax, kmax))
    sds = np.zeros((nterm, kmax))
    ci = p
    for t in range(nterm):
        k = term_k[t]
        lp += _term_scale(x, hpos[t], k, codes, par, ci, grad, sds[t], Lc[t, :k, :k])
        ci += k
        for a in range(k):
            for c in range(a + 1):
                Lam[t, a, c] = sds[t, a] * Lc[t, a, c]
    for j in range(nd):
        l, d = _prior(codes[ci + j], par[ci + j], dval[j])
        lp += l
        gdp[j] += d
    B = np.empty(nb_)
    gB = np.zeros(nb_)
    gLam = np.zeros((nterm, kmax, kmax))
    w = np.empty(kmax)
    v = np.empty(kmax)
    for t in range(nterm):
        k, G = term_k[t], term_G[t]
        o = b0 + bpos[t]
        lp -= 0.5 * G * k * _LOG2PI
        if term_cent[t] == 1:
            for g in range(G):
                for a in range(k):
                    B[bpos[t] + g * k + a] = x[o + g * k + a]
                # w = Λ⁻¹b, v = Λ⁻ᵀw: d(-½|w|²)/db = -v, d/dΛ = v w' (lower triangle)
                for a in range(k):
                    acc = x[o + g * k + a]
                    for c in range(a):
                        acc -= Lam[t, a, c] * w[c]
                    w[a] = acc / Lam[t, a, a]
                for a in range(k - 1, -1, -1):
                    acc = w[a]
                    for c in range(a + 1, k):
                        acc -= Lam[t, c, a] * v[c]
                    v[a] = acc / Lam[t, a, a]
                for a in range(k):
                    lp -= 0.5 * w[a] * w[a]
                    gB[bpos[t] + g * k + a] -= v[a]
                    for c in range(a + 1):
                        gLam[t, a, c] += v[a] * w[c]
            for a in range(k):
                lp -= G * math.log(Lam[t, a, a])
                gLam[t, a, a] -= G / Lam[t, a, a]
        else:
            for g in range(G):
                for a in range(k):
                    u = x[o + g * k + a]
                    lp -= 0.5 * u * u
                    grad[o + g * k + a] = -u
                    acc = 0.0
                    for c in range(a + 1):
                        acc += Lam[t, a, c] * x[o + g * k + c]
                    B[bpos[t] + g * k + a] = acc
    for i in range(n):
        e = off[i]
        for c in range(p):
            e += X[i, c] * beta[c]
        for t in range(nterm):
            g = rcodes[t, i]
            zo = term_zoff[t]
            base = bpos[t] + g * term_k[t]
            for a in range(term_k[t]):
                e += Z[i, zo + a] * B[base + a]
        if fam <= POISSON_LOG:
            l, d = _family_ll(fam, y[i], wt[i], e)
        else:
            l, d = _family_row(fam, y[i], wt[i], e, dval, gdp)
        if not np.isfinite(l):
            return -np.inf
        lp += l
        for c in range(p):
            gbeta[c] += X[i, c] * d
        for t in range(nterm):
            g = rcodes[t, i]
            zo = term_zoff[t]
            base = bpos[t] + g * term_k[t]
            for a in range(term_k[t]):
                gB[base + a] += Z[i, zo + a] * d
    for t in range(nterm):
        k, G = term_k[t], term_G[t]
        o = b0 + bpos[t]
        if term_cent[t] == 1:
            for j in range(G * k):
                grad[o + j] += gB[bpos[t] + j]
        else:
            for g in range(G):
                for c in range(k):
                    acc = 0.0
                    for a in range(c, k):
                        acc += Lam[t, a, c] * gB[bpos[t] + g * k + a]
                    grad[o + g * k + c] += acc
                for a in range(k):
                    ga = gB[bpos[t] + g * k + a]
                    for c in range(a + 1):
                        gLam[t, a, c] += ga * x[o + g * k + c]
        lp += _term_scale_grad(x, hpos[t], k, gLam[t, :k, :k], Lc[t, :k, :k], sds[t], eta[t], grad)
    for c in range(p):
        acc = 0.0
        for a in range(c, p):
            acc += bchol[a, c] * gbeta[a]
        grad[c] = acc
    if nd:
        _dpars_grad(x[d0:d0 + nd], tr, dval, gdp, grad[d0:d0 + nd])
    return lp


@nb.njit(**_JIT)
def glmm_expand(x, out, meta, term_k, term_G, term_cent, bshift, bchol):
    """x -> [β, per term (sd_t, corr_t pairs), per term b_t (G_t x k_t, row-major), the dpars' natural values]."""
    p, nterm, nd = meta[1], meta[2], meta[5]
    beta = _glmm_beta(x, p, bshift, bchol)
    for c in range(p):
        out[c] = beta[c]
    pos = p
    o = p
    Lams = []
    for t in range(nterm):
        k = term_k[t]
        Lt = np.zeros((k, k))
        if k > 1:
            _corr_chol(x[pos + k:pos + k + k * (k - 1) // 2], k, Lt)
        else:
            Lt[0, 0] = 1.0
        for a in range(k):
            out[o + a] = math.exp(x[pos + a])
        o += k
        if k > 1:
            R = Lt @ Lt.T
            for a in range(k):
                for c in range(a + 1, k):
                    out[o] = R[a, c]
                    o += 1
        Lam = np.zeros((k, k))
        for a in range(k):
            for c in range(a + 1):
                Lam[a, c] = math.exp(x[pos + a]) * Lt[a, c]
        Lams.append(Lam)
        pos += k + k * (k - 1) // 2
    for t in range(nterm):
        k, G = term_k[t], term_G[t]
        Lam = Lams[t]
        for g in range(G):
            for a in range(k):
                if term_cent[t] == 1:
                    out[o + g * k + a] = x[pos + g * k + a]
                else:
                    acc = 0.0
                    for c in range(a + 1):
                        acc += Lam[a, c] * x[pos + g * k + c]
                    out[o + g * k + a] = acc
        o += G * k
        pos += G * k
    if nd:
        _dpars_natural(x[pos:pos + nd], meta[6:6 + nd], out[o:o + nd])


# --------------------------------------------------------------------------
# C entry points for nutpie (see bayesmer.engine.nuts)

@intrinsic
def _f64_ptr(typingctx, addr):
    sig = types.CPointer(types.float64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float64)))

    return sig, codegen


@intrinsic
def _i64_ptr(typingctx, addr):
    sig = types.CPointer(types.int64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))

    return sig, codegen


@intrinsic
def _void_to_i64_ptr(typingctx, ptr):
    sig = types.CPointer(types.int64)(types.voidptr)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.CPointer(types.int64)))

    return sig, codegen


# The density's array arguments, in order: (is integer, ndim).
_LAYOUT = (
    # the density's own: meta, codes, par, eta, s0, mu0, beta0
    (True, 1), (True, 1), (False, 2), (False, 1), (False, 1), (False, 1), (False, 1),
    # the statistics tuple, in CollapsedStats.kernel_stats order
    (False, 3), (False, 3), (False, 2), (True, 1), (True, 1), (False, 2),  # A11, A1X, A1e, ptr, rows, vals
    (False, 2), (False, 2), (False, 1), (False, 2), (False, 1), (False, 1),  # A22, A2X, A2e, XtX, Xte, ete
    (True, 1), (True, 1), (True, 1), (True, 1), (True, 1), (True, 1), (True, 1),  # blk_G .. row_a
)
_N = len(_LAYOUT)


@nb.njit(cache=True)
def _i1(h, i):
    return nb.carray(_i64_ptr(h[4 * i]), (h[4 * i + 1],))


@nb.njit(cache=True)
def _f1(h, i):
    return nb.carray(_f64_ptr(h[4 * i]), (h[4 * i + 1],))


@nb.njit(cache=True)
def _f2(h, i):
    return nb.carray(_f64_ptr(h[4 * i]), (h[4 * i + 1], h[4 * i + 2]))


@nb.njit(cache=True)
def _f3(h, i):
    return nb.carray(_f64_ptr(h[4 * i]), (h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]))


_LOGP_SIG = types.int64(types.uint64, types.CPointer(types.float64), types.CPointer(types.float64),
                        types.CPointer(types.float64), types.voidptr)
_EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.float64),
                          types.CPointer(types.float64), types.voidptr)


def _c_logp(dim, x_, grad_, logp_, user_data):
    h = nb.carray(_void_to_i64_ptr(user_data), (4 * _N,))
    x = nb.carray(x_, (dim,))
    grad = nb.carray(grad_, (dim,))
    out = nb.carray(logp_, (1,))
    st = (_f3(h, 7), _f3(h, 8), _f2(h, 9), _i1(h, 10), _i1(h, 11), _f2(h, 12), _f2(h, 13), _f2(h, 14),
          _f1(h, 15), _f2(h, 16), _f1(h, 17), _f1(h, 18), _i1(h, 19), _i1(h, 20), _i1(h, 21), _i1(h, 22),
          _i1(h, 23), _i1(h, 24), _i1(h, 25))
    lp = logp_grad(x, grad, _i1(h, 0), _i1(h, 1), _f2(h, 2), _f1(h, 3), _f1(h, 4), _f1(h, 5), _f1(h, 6), st)
    out[0] = lp
    if not np.isfinite(lp):
        return 4
    for i in range(dim):
        if not np.isfinite(grad[i]):
            return 3
    return 0


def _c_expand(dim, n_expanded, x_, out_, user_data):
    h = nb.carray(_void_to_i64_ptr(user_data), (4 * _N,))
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (n_expanded,))
    expand(x, out, _i1(h, 0), _i1(h, 24))
    return 0


@functools.cache
def c_entry_points():
    """nutpie's two C callbacks, compiled on first use (or loaded from numba's cache)."""
    return nb.cfunc(_LOGP_SIG, cache=True)(_c_logp), nb.cfunc(_EXPAND_SIG, cache=True)(_c_expand)


# The GLMM density's arrays, in order (see glmm_logp_grad): meta, codes, par, eta, y, wt, off, X,
# term_k, term_G, term_cent, rcodes (terms, n), Z, term_zoff, bshift, bchol.
_GLMM_LAYOUT = (
    (True, 1), (True, 1), (False, 2), (False, 1), (False, 1), (False, 1), (False, 1), (False, 2),
    (True, 1), (True, 1), (True, 1), (True, 2), (False, 2), (True, 1), (False, 1), (False, 2),
)
_GN = len(_GLMM_LAYOUT)


@nb.njit(cache=True)
def _i2(h, i):
    return nb.carray(_i64_ptr(h[4 * i]), (h[4 * i + 1], h[4 * i + 2]))


def _c_glmm_logp(dim, x_, grad_, logp_, user_data):
    h = nb.carray(_void_to_i64_ptr(user_data), (4 * _GN,))
    x = nb.carray(x_, (dim,))
    grad = nb.carray(grad_, (dim,))
    out = nb.carray(logp_, (1,))
    lp = glmm_logp_grad(x, grad, _i1(h, 0), _i1(h, 1), _f2(h, 2), _f1(h, 3), _f1(h, 4), _f1(h, 5), _f1(h, 6),
                        _f2(h, 7), _i1(h, 8), _i1(h, 9), _i1(h, 10), _i2(h, 11), _f2(h, 12), _i1(h, 13),
                        _f1(h, 14), _f2(h, 15))
    out[0] = lp
    if not np.isfinite(lp):
        return 4
    for i in range(dim):
        if not np.isfinite(grad[i]):
            return 3
    return 0


def _c_glmm_expand(dim, n_expanded, x_, out_, user_data):
    h = nb.carray(_void_to_i64_ptr(user_data), (4 * _GN,))
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (n_expanded,))
    glmm_expand(x, out, _i1(h, 0), _i1(h, 8), _i1(h, 9), _i1(h, 10), _f1(h, 14), _f2(h, 15))
    return 0


@functools.cache
def glmm_entry_points():
    """The GLMM density's two C callbacks for nutpie, compiled on first use (or loaded from numba's cache)."""
    return nb.cfunc(_LOGP_SIG, cache=True)(_c_glmm_logp), nb.cfunc(_EXPAND_SIG, cache=True)(_c_glmm_expand)
