"""Finite differences: the gradients and Hessians the Laplace fits take numerically, in one place.

lme4's ``deriv12`` (central differences with one absolute step) and
glmmTMB's fit (central differences with steps relative to the parameter) are
:func:`fd_hessian` with their steps; :func:`grad_hessian` differentiates an
analytic gradient instead of the function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["central_grad", "forward_grad", "fd_hessian", "grad_hessian"]


def central_grad(f, x, h=None) -> np.ndarray:
    """Central differences of f at x, steps h (default ``1e-6 * max(1, |x|)``)."""
    h = 1e-6 * np.maximum(1.0, np.abs(x)) if h is None else h
    g = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h[j]
        g[j] = (f(x + e) - f(x - e)) / (2 * h[j])
    return g


def forward_grad(f, x) -> np.ndarray:
    """Forward differences of f at x, steps ``1e-7 * max(1, |x|)``."""
    fx = f(x)
    h = 1e-7 * np.maximum(1.0, np.abs(x))
    g = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h[j]
        g[j] = (f(x + e) - fx) / h[j]
    return g


def fd_hessian(f, x, fx=None, rel=1e-4, h=None):
    """Central-difference gradient and Hessian of f at x.

    Steps ``h`` (one per coordinate), default ``rel * max(1, |x|)``. ``fx`` is
    f(x) when the caller has it; by default it is computed afresh (after the
    caller's own evaluations elsewhere, a warm-started f may differ there by
    1e-12). lme4's ``deriv12`` is ``fd_hessian(f, x, fx, h=np.full(len(x), 1e-4))``.
    """
    m = len(x)
    if fx is None:
        fx = f(x)
    h = rel * np.maximum(1.0, np.abs(x)) if h is None else h
    g, H = np.empty(m), np.empty((m, m))
    for j in range(m):
        ej = np.zeros(m)
        ej[j] = h[j]
        fa, fs = f(x + ej), f(x - ej)
        g[j] = (fa - fs) / (2 * h[j])
        H[j, j] = (fa - 2 * fx + fs) / h[j] ** 2
        for i in range(j):
            ei = np.zeros(m)
            ei[i] = h[i]
            v = f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
            H[i, j] = H[j, i] = v / (4 * h[i] * h[j])
    return g, H


def grad_hessian(grad, r, rel=1e-4) -> np.ndarray:
    """Central differences of an analytic gradient: the Hessian, symmetrised."""
    m = len(r)
    h = rel * np.maximum(1.0, np.abs(r))
    H = np.empty((m, m))
    for j in range(m):
        e = np.zeros(m)
        e[j] = h[j]
        H[:, j] = (grad(r + e) - grad(r - e)) / (2 * h[j])
    return (H + H.T) / 2
