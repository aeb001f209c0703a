"""θ <-> Λ: lme4's parameters of the relative covariance factors.

Per term, θ is the column-major lower triangle of its k x k factor T, with
Ψ = σ²TT'; the diagonals are bounded below by 0, the rest free.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["tri_index", "theta_to_T", "theta_lower", "theta_start", "n_theta"]


@functools.lru_cache(maxsize=None)
def tri_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the lower triangle in column-major order (lme4's)."""
    cols, rows = np.triu_indices(k)
    return rows, cols


def n_theta(ks) -> int:
    return sum(k * (k + 1) // 2 for k in ks)


def theta_to_T(theta: np.ndarray, ks) -> list[np.ndarray]:
    """Per term its lower-triangular T."""
    out, pos = [], 0
    for k in ks:
        m = k * (k + 1) // 2
        T = np.zeros((k, k))
        r, c = tri_index(k)
        T[r, c] = theta[pos : pos + m]
        out.append(T)
        pos += m
    return out


def T_to_theta(Ts) -> np.ndarray:
    return np.concatenate([T[tri_index(T.shape[0])] for T in Ts])


def theta_lower(ks) -> np.ndarray:
    """Lower bounds of θ: 0 on the diagonals, free elsewhere."""
    lo = []
    for k in ks:
        r, c = tri_index(k)
        lo.extend(np.where(r == c, 0.0, -np.inf))
    return np.asarray(lo)


def theta_start(ks) -> np.ndarray:
    """lme4's start: Λ = I."""
    return np.concatenate([np.eye(k)[tri_index(k)] for k in ks])
