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
first run on a machine a new data set costs no compilation.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Scalar prior families, by code (the priors module maps its classes to them).
NORMAL, STUDENT_T, HALF_CAUCHY, HALF_NORMAL, HALF_STUDENT_T, EXPONENTIAL = range(6)

_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


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
def _block_T(Tall, blk, blk_K, term_blk, term_kofs, term_k):
    """The factor block's K x K relative factor, block diagonal over its terms."""
    K = blk_K[blk]
    T = np.zeros((K, K))
    for t in range(term_blk.shape[0]):
        if term_blk[t] != blk:
            continue
        o = term_kofs[t]
        for a in range(term_k[t]):
            for b in range(term_k[t]):
                T[o + a, o + b] = Tall[t, a, b]
    return T


@nb.njit(**_JIT)
def system(sigma, Tall, delta, s0, integ, n, p,
           blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
           A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete):
    """Factor P and solve for ũ at (σ, Λ, δ).

    ``delta`` is β - β0 when β is sampled, μ0 - β0 when integrated (``integ``).
    Returns (f, r², ũ1 (G1, K1), ũ2 (m2,), Minv (G1, K1, K1), H (G1, m2, K1),
    L22 (m2, m2) Cholesky of the Schur complement, c1, T1, ok), r² the
    penalised residual sum of squares r'r - c'ũ.
    """
    G1, K1 = blk_G[0], blk_K[0]
    nb_ = blk_G.shape[0]
    q2 = A22.shape[0]
    m2 = q2 + (p if integ else 0)
    T1 = _block_T(Tall, 0, blk_K, term_blk, term_kofs, term_k)
    # Z'r, X'r, r'r at δ
    z1r = A1e.copy()
    for g in range(G1):
        for j in range(K1):
            s = 0.0
            for c in range(p):
                s += A1X[g, j, c] * delta[c]
            z1r[g, j] -= s
    z2r = A2e - A2X @ delta if q2 else np.zeros(0)
    xr = Xte - XtX @ delta
    rr = ete - 2.0 * (delta @ Xte) + delta @ (XtX @ delta)
    # Λ₂ for the dense rows, as one matrix (block diagonal, small)
    L2 = np.zeros((m2, m2))
    for b in range(1, nb_):
        Tb = _block_T(Tall, b, blk_K, term_blk, term_kofs, term_k)
        Kb = blk_K[b]
        for h in range(blk_G[b]):
            o = blk_off[b] + h * Kb
            for a in range(Kb):
                for c in range(Kb):
                    L2[o + a, o + c] = Tb[a, c]
    if integ:
        for i in range(p):
            L2[q2 + i, q2 + i] = s0[i] / sigma
    # c2 = Λ₂'[Z₂'r; X'r]
    r2vec = np.empty(m2)
    r2vec[:q2] = z2r
    if integ:
        r2vec[q2:] = xr
    c2 = L2.T @ r2vec
    # P22 = Λ₂'[[A22, A2X], [AX2, XtX]]Λ₂ + I
    A2full = np.empty((m2, m2))
    A2full[:q2, :q2] = A22
    if integ:
        A2full[:q2, q2:] = A2X
        A2full[q2:, :q2] = A2X.T
        A2full[q2:, q2:] = XtX
    S = L2.T @ A2full @ L2
    for i in range(m2):
        S[i, i] += 1.0
    # first block
    Minv = np.empty((G1, K1, K1))
    H = np.empty((G1, m2, K1))
    c1 = np.empty((G1, K1))
    w1 = np.empty((G1, K1))
    logdet = 0.0
    M = np.empty((K1, K1))
    Braw = np.empty((m2, K1))
    for g in range(G1):
        M[:, :] = T1.T @ A11[g] @ T1
        for i in range(K1):
            M[i, i] += 1.0
        if not _chol_inplace(M, K1):
            return (np.inf, 0.0, w1, c2, Minv, H, S, c1, T1, False)
        for i in range(K1):
            logdet += 2.0 * math.log(M[i, i])
        _chol_inverse(M, K1, Minv[g])
        # H_g = Λ₂'[A₂₁; A_X1]_g T1   (m2 x K1)
        for r in range(q2):
            for j in range(K1):
                Braw[r, j] = A21[r, g * K1 + j]
        if integ:
            for i in range(p):
                for j in range(K1):
                    Braw[q2 + i, j] = A1X[g, j, i]
        H[g] = L2.T @ (Braw @ T1)
        c1[g] = T1.T @ z1r[g]
        w1[g] = Minv[g] @ c1[g]
        HM = H[g] @ Minv[g]
        S -= HM @ H[g].T
    rhs2 = c2.copy()
    for g in range(G1):
        rhs2 -= H[g] @ w1[g]
    if not _chol_inplace(S, m2):
        return (np.inf, 0.0, w1, c2, Minv, H, S, c1, T1, False)
    for i in range(m2):
        logdet += 2.0 * math.log(S[i, i])
    u2 = rhs2.copy()
    _chol_solve(S, m2, u2)
    u1 = np.empty((G1, K1))
    for g in range(G1):
        u1[g] = w1[g] - Minv[g] @ (H[g].T @ u2)
    pen = rr
    for g in range(G1):
        pen -= c1[g] @ u1[g]
    pen -= c2 @ u2
    f = 2.0 * n * math.log(sigma) + logdet + pen / (sigma * sigma)
    return (f, pen, u1, u2, Minv, H, S, c1, T1, True)


@nb.njit(**_JIT)
def loglik_grad(sigma, Tall, delta, s0, integ, n, p,
                blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
                A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete, gT, gdelta):
    """log p(y | σ, Λ, [β]) and its gradient.

    Fills ``gT[t]`` with ∂/∂T_t (T_t the relative factor of term t) and, when β is
    sampled, ``gdelta`` with ∂/∂β. Returns (loglik, ∂loglik/∂σ at fixed T, ok).
    """
    G1, K1 = blk_G[0], blk_K[0]
    nb_ = blk_G.shape[0]
    q2 = A22.shape[0]
    m2 = q2 + (p if integ else 0)
    f, pen, u1, u2, Minv, H, L22, c1, T1, ok = system(
        sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
        A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete)
    if not ok:
        return -np.inf, 0.0, False
    s2 = sigma * sigma
    Sinv = np.empty((m2, m2))
    _chol_inverse(L22, m2, Sinv)
    # Zm per factor block: Σ_levels [I - (P⁻¹)_gg - ũ_g ũ_g'/σ²]
    Kmax = 0
    for b in range(nb_):
        Kmax = max(Kmax, blk_K[b])
    Zm = np.zeros((nb_, Kmax, Kmax))
    for g in range(G1):
        E = Minv[g] @ H[g].T  # K1 x m2
        D = Minv[g] + E @ Sinv @ E.T
        for a in range(K1):
            for c in range(K1):
                Zm[0, a, c] += (1.0 if a == c else 0.0) - D[a, c] - u1[g, a] * u1[g, c] / s2
    for b in range(1, nb_):
        Kb = blk_K[b]
        for h in range(blk_G[b]):
            o = blk_off[b] + h * Kb
            for a in range(Kb):
                for c in range(Kb):
                    Zm[b, a, c] += (1.0 if a == c else 0.0) - Sinv[o + a, o + c] - u2[o + a] * u2[o + c] / s2
    # ∂f/∂T_t = 2 T_t⁻ᵀ Zm_tt
    for t in range(term_blk.shape[0]):
        k = term_k[t]
        o = term_kofs[t]
        Zt = np.ascontiguousarray(Zm[term_blk[t], o:o + k, o:o + k])
        Tt = np.ascontiguousarray(Tall[t, :k, :k])
        # solve T' X = Zt (T lower, so T' upper)
        X = Zt.copy()
        for col in range(k):
            for i in range(k - 1, -1, -1):
                s = X[i, col]
                for m in range(i + 1, k):
                    s -= Tt[m, i] * X[m, col]
                X[i, col] = s / Tt[i, i] if Tt[i, i] != 0.0 else 0.0
        for a in range(k):
            for c in range(k):
                gT[t, a, c] = -X[a, c] if a >= c else 0.0  # ℓ = -f/2: -½·2
    dfds = 2.0 * n / sigma - 2.0 * pen / (s2 * sigma)
    if integ:
        for i in range(p):
            j = q2 + i
            zb = 1.0 - Sinv[j, j] - u2[j] * u2[j] / s2
            dfds -= 2.0 * zb / sigma
    else:
        # ∂r²/∂δ = -2 (X'r - X'ZΛũ)
        xr = Xte - XtX @ delta
        xzu = np.zeros(p)
        for g in range(G1):
            tu = T1 @ u1[g]
            for c in range(p):
                for j in range(K1):
                    xzu[c] += A1X[g, j, c] * tu[j]
        if q2:
            # Λ₂ũ₂ for the other blocks
            lu = np.zeros(q2)
            for b in range(1, nb_):
                Tb = _block_T(Tall, b, blk_K, term_blk, term_kofs, term_k)
                Kb = blk_K[b]
                for h in range(blk_G[b]):
                    o = blk_off[b] + h * Kb
                    lu[o:o + Kb] = Tb @ u2[o:o + Kb]
            xzu += A2X.T @ lu
        for c in range(p):
            gdelta[c] = (xr[c] - xzu[c]) / s2  # -½ ∂f/∂δ = -½(-2(...)/σ²)
    return -0.5 * f, -0.5 * dfds, True


@nb.njit(**_JIT)
def draw_u(sigma, Tall, delta, s0, integ, n, p,
           blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
           A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete, eps1, eps2):
    """One exact draw of u | y, σ, Λ (and u_β when β is integrated out).

    ``eps1`` (G1, K1) and ``eps2`` (m2,) are standard normal. Returns
    (u1 (G1, K1), u2 (m2,), T1, ok); b = Λu, β = μ0 + Γu_β.
    """
    G1, K1 = blk_G[0], blk_K[0]
    f, pen, u1, u2, Minv, H, L22, c1, T1, ok = system(
        sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
        A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete)
    if not ok:
        return u1, u2, T1, False
    m2 = u2.shape[0]
    # u2 ~ N(ũ2, σ² S⁻¹): ũ2 + σ L22⁻ᵀ ε2
    z = eps2.copy()
    _lt_solve_t(L22, m2, z)
    v2 = u2 + sigma * z
    # u1 | u2 ~ N(M⁻¹(c1 - H'u2), σ² M⁻¹)
    out1 = np.empty((G1, K1))
    M = np.empty((K1, K1))
    Chol = np.empty((K1, K1))
    for g in range(G1):
        mean = Minv[g] @ (c1[g] - H[g].T @ v2)
        # Cholesky of M_g from its inverse's inverse: factor M_g again
        M[:, :] = T1.T @ A11[g] @ T1
        for i in range(K1):
            M[i, i] += 1.0
        Chol[:, :] = M
        _chol_inplace(Chol, K1)
        e = eps1[g].copy()
        _lt_solve_t(Chol, K1, e)
        out1[g] = mean + sigma * e
    return out1, v2, T1, True
