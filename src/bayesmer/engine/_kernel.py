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

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

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
def _lam2t_rows(M, TB, blk_G, blk_K, blk_off, q2, bscale, out):
    """out = Λ₂'M for the rows of the dense block (other factors, then β scaled by ``bscale``)."""
    nc = M.shape[1]
    for b in range(1, blk_G.shape[0]):
        Kb = blk_K[b]
        for h in range(blk_G[b]):
            o = blk_off[b] + h * Kb
            for a in range(Kb):
                for c in range(nc):
                    s = 0.0
                    for a2 in range(a, Kb):  # T lower: T[a2, a] = 0 for a2 < a
                        s += TB[b, a2, a] * M[o + a2, c]
                    out[o + a, c] = s
    for i in range(bscale.shape[0]):
        for c in range(nc):
            out[q2 + i, c] = bscale[i] * M[q2 + i, c]


@nb.njit(**_JIT)
def _all_T(Tall, blk_K, term_blk, term_kofs, term_k):
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
def system(sigma, Tall, delta, s0, integ, n, p,
           blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
           A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete):
    """Factor P and solve for ũ at (σ, Λ, δ).

    ``delta`` is β - β0 when β is sampled, μ0 - β0 when integrated (``integ``).
    Returns (f, r², ũ1 (G1, K1), ũ2 (m2,), Minv (G1, K1, K1), H (G1, m2, K1),
    L22 (m2, m2) Cholesky of the Schur complement, c1, TB, ok), r² the
    penalised residual sum of squares r'r - c'ũ and TB the factor blocks' T.
    """
    G1, K1 = blk_G[0], blk_K[0]
    q2 = A22.shape[0]
    m2 = q2 + (p if integ else 0)
    TB = _all_T(Tall, blk_K, term_blk, term_kofs, term_k)
    bscale = np.empty(p if integ else 0)
    for i in range(bscale.shape[0]):
        bscale[i] = s0[i] / sigma
    # r = e - Xδ: its cross products
    rr = ete
    for c in range(p):
        rr -= 2.0 * delta[c] * Xte[c]
        for c2 in range(p):
            rr += delta[c] * XtX[c, c2] * delta[c2]
    rvec = np.empty((m2, 1))
    for r in range(q2):
        s = A2e[r]
        for c in range(p):
            s -= A2X[r, c] * delta[c]
        rvec[r, 0] = s
    if integ:
        for i in range(p):
            s = Xte[i]
            for c in range(p):
                s -= XtX[i, c] * delta[c]
            rvec[q2 + i, 0] = s
    c2m = np.empty((m2, 1))
    _lam2t_rows(rvec, TB, blk_G, blk_K, blk_off, q2, bscale, c2m)
    c2 = c2m[:, 0].copy()
    # P22 = Λ₂'[[A22, A2X], [AX2, XtX]]Λ₂ + I
    A2f = np.empty((m2, m2))
    for i in range(q2):
        for j in range(q2):
            A2f[i, j] = A22[i, j]
    if integ:
        for i in range(q2):
            for j in range(p):
                A2f[i, q2 + j] = A2X[i, j]
                A2f[q2 + j, i] = A2X[i, j]
        for i in range(p):
            for j in range(p):
                A2f[q2 + i, q2 + j] = XtX[i, j]
    tmp = np.empty((m2, m2))
    _lam2t_rows(A2f, TB, blk_G, blk_K, blk_off, q2, bscale, tmp)
    S = np.empty((m2, m2))
    tmpT = np.ascontiguousarray(tmp.T)
    _lam2t_rows(tmpT, TB, blk_G, blk_K, blk_off, q2, bscale, S)
    for i in range(m2):
        S[i, i] += 1.0
    Minv = np.empty((G1, K1, K1))
    H = np.empty((G1, m2, K1))
    c1 = np.empty((G1, K1))
    w1 = np.empty((G1, K1))
    rhs2 = c2.copy()
    logdet = 0.0
    M = np.empty((K1, K1))
    AT = np.empty((K1, K1))
    BT = np.empty((m2, K1))
    HM = np.empty((m2, K1))
    z = np.empty(K1)
    for g in range(G1):
        # M = T1'A11_g T1 + I
        for a in range(K1):
            for c in range(K1):
                s = 0.0
                for j in range(c, K1):
                    s += A11[g, a, j] * TB[0, j, c]
                AT[a, c] = s
        for a in range(K1):
            for c in range(a + 1):
                s = 0.0
                for j in range(a, K1):
                    s += TB[0, j, a] * AT[j, c]
                M[a, c] = s
                M[c, a] = s
            M[a, a] += 1.0
        if not _chol_inplace(M, K1):
            return (np.inf, 0.0, w1, c2, Minv, H, S, c1, TB, False)
        for i in range(K1):
            logdet += 2.0 * math.log(M[i, i])
        _chol_inverse(M, K1, Minv[g])
        # H_g = Λ₂'[A₂₁; A_X1]_g T1
        for r in range(q2):
            for c in range(K1):
                s = 0.0
                for j in range(c, K1):
                    s += A21[r, g * K1 + j] * TB[0, j, c]
                BT[r, c] = s
        if integ:
            for i in range(p):
                for c in range(K1):
                    s = 0.0
                    for j in range(c, K1):
                        s += A1X[g, j, i] * TB[0, j, c]
                    BT[q2 + i, c] = s
        _lam2t_rows(BT, TB, blk_G, blk_K, blk_off, q2, bscale, H[g])
        # c1_g = T1'Z1'r_g, w1_g = M_g⁻¹c1_g
        for j in range(K1):
            s = A1e[g, j]
            for c in range(p):
                s -= A1X[g, j, c] * delta[c]
            z[j] = s
        for a in range(K1):
            s = 0.0
            for j in range(a, K1):
                s += TB[0, j, a] * z[j]
            c1[g, a] = s
        for a in range(K1):
            s = 0.0
            for j in range(K1):
                s += Minv[g, a, j] * c1[g, j]
            w1[g, a] = s
        # S -= H_g M_g⁻¹ H_g' (lower triangle), rhs2 -= H_g w1_g
        for r in range(m2):
            for c in range(K1):
                s = 0.0
                for j in range(K1):
                    s += H[g, r, j] * Minv[g, j, c]
                HM[r, c] = s
            s = 0.0
            for j in range(K1):
                s += H[g, r, j] * w1[g, j]
            rhs2[r] -= s
        for r in range(m2):
            for r2 in range(r + 1):
                s = 0.0
                for j in range(K1):
                    s += HM[r, j] * H[g, r2, j]
                S[r, r2] -= s
    if not _chol_inplace(S, m2):
        return (np.inf, 0.0, w1, c2, Minv, H, S, c1, TB, False)
    for i in range(m2):
        logdet += 2.0 * math.log(S[i, i])
    u2 = rhs2.copy()
    _chol_solve(S, m2, u2)
    u1 = np.empty((G1, K1))
    pen = rr
    for g in range(G1):
        for a in range(K1):
            s = 0.0
            for r in range(m2):
                s += H[g, r, a] * u2[r]
            z[a] = s
        for a in range(K1):
            s = w1[g, a]
            for j in range(K1):
                s -= Minv[g, a, j] * z[j]
            u1[g, a] = s
            pen -= c1[g, a] * s
    for r in range(m2):
        pen -= c2[r] * u2[r]
    f = 2.0 * n * math.log(sigma) + logdet + pen / (sigma * sigma)
    return (f, pen, u1, u2, Minv, H, S, c1, TB, True)


@nb.njit(**_JIT)
def loglik_grad(sigma, Tall, delta, s0, integ, n, p,
                blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
                A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete, gT, gdelta):
    """log p(y | σ, Λ, [β]) and its gradient.

    Fills ``gT[t]`` with ∂/∂T_t (T_t the relative factor of term t, lower
    triangle) and, when β is sampled, ``gdelta`` with ∂/∂β. Returns (loglik
    without the -n/2 log 2π, ∂loglik/∂σ at fixed T, ok).
    """
    G1, K1 = blk_G[0], blk_K[0]
    nb_ = blk_G.shape[0]
    q2 = A22.shape[0]
    m2 = q2 + (p if integ else 0)
    f, pen, u1, u2, Minv, H, L22, c1, TB, ok = system(
        sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
        A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete)
    if not ok:
        return -np.inf, 0.0, False
    s2 = sigma * sigma
    Sinv = np.empty((m2, m2))
    _chol_inverse(L22, m2, Sinv)
    # Zm per factor block: Σ_levels [I - (P⁻¹)_gg - ũ_g ũ_g'/σ²]
    Kmax = TB.shape[1]
    Zm = np.zeros((nb_, Kmax, Kmax))
    E = np.empty((K1, m2))
    Y = np.empty((m2, K1))
    for g in range(G1):
        # (P⁻¹)_gg = M⁻¹ + E S⁻¹ E', E = M⁻¹H_g'
        for a in range(K1):
            for r in range(m2):
                s = 0.0
                for j in range(K1):
                    s += Minv[g, a, j] * H[g, r, j]
                E[a, r] = s
        for r in range(m2):
            for a in range(K1):
                s = 0.0
                for r2 in range(m2):
                    s += Sinv[r, r2] * E[a, r2]
                Y[r, a] = s
        for a in range(K1):
            for c in range(a + 1):
                s = Minv[g, a, c]
                for r in range(m2):
                    s += E[a, r] * Y[r, c]
                v = (1.0 if a == c else 0.0) - s - u1[g, a] * u1[g, c] / s2
                Zm[0, a, c] += v
                if a != c:
                    Zm[0, c, a] += v
    for b in range(1, nb_):
        Kb = blk_K[b]
        for h in range(blk_G[b]):
            o = blk_off[b] + h * Kb
            for a in range(Kb):
                for c in range(Kb):
                    Zm[b, a, c] += (1.0 if a == c else 0.0) - Sinv[o + a, o + c] - u2[o + a] * u2[o + c] / s2
    # ∂ℓ/∂T_t = -T_t⁻ᵀ Zm_tt (ℓ = -f/2, ∂f/∂T = 2T⁻ᵀZm)
    for t in range(term_blk.shape[0]):
        k = term_k[t]
        o = term_kofs[t]
        X = np.empty((k, k))
        for a in range(k):
            for c in range(k):
                X[a, c] = Zm[term_blk[t], o + a, o + c]
        for col in range(k):
            for i in range(k - 1, -1, -1):
                s = X[i, col]
                for m in range(i + 1, k):
                    s -= Tall[t, m, i] * X[m, col]
                X[i, col] = s / Tall[t, i, i] if Tall[t, i, i] != 0.0 else 0.0
        for a in range(k):
            for c in range(k):
                gT[t, a, c] = -X[a, c] if a >= c else 0.0
    dfds = 2.0 * n / sigma - 2.0 * pen / (s2 * sigma)
    if integ:
        for i in range(p):
            j = q2 + i
            dfds -= 2.0 * (1.0 - Sinv[j, j] - u2[j] * u2[j] / s2) / sigma
    else:
        # ∂r²/∂δ = -2 (X'r - X'ZΛũ)
        for c in range(p):
            s = Xte[c]
            for c2 in range(p):
                s -= XtX[c, c2] * delta[c2]
            gdelta[c] = s
        for g in range(G1):
            for j in range(K1):
                tu = 0.0
                for l in range(j + 1):
                    tu += TB[0, j, l] * u1[g, l]
                for c in range(p):
                    gdelta[c] -= A1X[g, j, c] * tu
        for b in range(1, nb_):
            Kb = blk_K[b]
            for h in range(blk_G[b]):
                o = blk_off[b] + h * Kb
                for j in range(Kb):
                    tu = 0.0
                    for l in range(j + 1):
                        tu += TB[b, j, l] * u2[o + l]
                    for c in range(p):
                        gdelta[c] -= A2X[o + j, c] * tu
        for c in range(p):
            gdelta[c] /= s2  # -½ ∂f/∂δ = -½·(-2(...)/σ²)
    return -0.5 * f, -0.5 * dfds, True


@nb.njit(**_JIT)
def draw_u(sigma, Tall, delta, s0, integ, n, p,
           blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
           A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete, eps1, eps2):
    """One exact draw of u | y, σ, Λ (and u_β when β is integrated out).

    ``eps1`` (G1, K1) and ``eps2`` (m2,) are standard normal. Returns
    (u1 (G1, K1), u2 (m2,), T1, ok); b = Λu, β = μ0 + Γu_β. Not a hot path:
    it runs once per posterior draw.
    """
    G1, K1 = blk_G[0], blk_K[0]
    f, pen, u1, u2, Minv, H, L22, c1, TB, ok = system(
        sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off, term_blk, term_kofs, term_k,
        A11, A1X, A1e, A21, A22, A2X, A2e, XtX, Xte, ete)
    T1 = np.ascontiguousarray(TB[0, :K1, :K1])
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
        # M_g's Cholesky factor: factor it again (system keeps only its inverse)
        M[:, :] = T1.T @ A11[g] @ T1
        for i in range(K1):
            M[i, i] += 1.0
        Chol[:, :] = M
        _chol_inplace(Chol, K1)
        e = eps1[g].copy()
        _lt_solve_t(Chol, K1, e)
        out1[g] = mean + sigma * e
    return out1, v2, T1, True


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
    ll, gs, ok = loglik_grad(sigma, Tall, delta, s0, integ, n, p, blk_G, blk_K, blk_off,
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
    (True, 1), (True, 1), (True, 1), (True, 1), (True, 1), (True, 1), (True, 1),  # meta .. term_k
    (True, 1), (False, 2), (False, 1), (False, 1), (False, 1), (False, 1),  # codes, par, eta, s0, mu0, beta0
    (False, 3), (False, 3), (False, 2), (False, 2), (False, 2), (False, 2), (False, 1),  # A11 .. A2e
    (False, 2), (False, 1), (False, 1),  # XtX, Xte, ete
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
    lp = logp_grad(x, grad, _i1(h, 0), _i1(h, 1), _i1(h, 2), _i1(h, 3), _i1(h, 4), _i1(h, 5), _i1(h, 6),
                   _i1(h, 7), _f2(h, 8), _f1(h, 9), _f1(h, 10), _f1(h, 11), _f1(h, 12),
                   _f3(h, 13), _f3(h, 14), _f2(h, 15), _f2(h, 16), _f2(h, 17), _f2(h, 18), _f1(h, 19),
                   _f2(h, 20), _f1(h, 21), _f1(h, 22))
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
    expand(x, out, _i1(h, 0), _i1(h, 6))
    return 0


@functools.cache
def c_entry_points():
    """nutpie's two C callbacks, compiled on first use (or loaded from numba's cache)."""
    return nb.cfunc(_LOGP_SIG, cache=True)(_c_logp), nb.cfunc(_EXPAND_SIG, cache=True)(_c_expand)
