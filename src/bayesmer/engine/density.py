"""The posterior density NUTS samples: priors, transforms and the collapsed likelihood.

The sampler moves an unconstrained vector ``x``::

    [log σ, per term (log sd_t (k_t), z_t (k_t(k_t-1)/2)), β (p, only when sampled)]

where ``tanh(z_t)`` are the canonical partial correlations of term t (Stan's
``cholesky_corr`` transform). The correlation matrix is LKJ(η): its partial
correlations in column j are independent Beta(η + (k-2-j)/2) on (-1, 1)
(Lewandowski, Kurowicka and Joe 2009), so the prior and the Jacobian of tanh
together are Σ β_j log(1 - tanh²z).

The compiled code is in :mod:`._kernel` (``cache=True``) and takes its data
through arrays, so one compiled function serves every data set; nutpie calls
it through a C function pointer with no Python in between (:mod:`.nuts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernel import (
    _LAYOUT, BETA, EXPONENTIAL, GAMMA, HALF_CAUCHY, HALF_NORMAL, HALF_STUDENT_T, NORMAL, STUDENT_T, c_entry_points, expand,
    logp_grad,
)
from .collapsed import CollapsedStats

__all__ = ["DensitySpec", "PRIOR_CODES", "logp_grad", "expand"]

#: the priors module's families -> the kernel's codes
PRIOR_CODES = {
    "Normal": NORMAL,
    "StudentT": STUDENT_T,
    "HalfCauchy": HALF_CAUCHY,
    "HalfNormal": HALF_NORMAL,
    "HalfStudentT": HALF_STUDENT_T,
    "Exponential": EXPONENTIAL,
    "Gamma": GAMMA,
    "Beta": BETA,
}


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

    layout = _LAYOUT

    entry_points = staticmethod(c_entry_points)

    @property
    def ndim(self) -> int:
        """Length of x: log σ, per term k log-SDs and k(k-1)/2 partial correlations, β when sampled."""
        k = self.stats.term_k
        return 1 + int(np.sum(k + k * (k - 1) // 2)) + (0 if self.integrate_beta else self.stats.p)

    @property
    def n_expanded(self) -> int:
        """Length of the expanded values (σ, SDs, correlations, β): one per coordinate of x."""
        return self.ndim

    @property
    def meta(self) -> np.ndarray:
        s = self.stats
        return np.array([s.n, s.p, int(self.integrate_beta), s.kmax], dtype=np.int64)

    def arrays(self) -> tuple:
        """The density's arguments after (x, grad), in order (the statistics as one tuple)."""
        s = self.stats
        return (self.meta, self.codes, self.par, self.eta, self.s0, self.mu0, s.beta0, s.kernel_stats())

    def flat_arrays(self) -> tuple:
        """:meth:`arrays` with the statistics tuple spliced in: what the C entry point reads."""
        *own, st = self.arrays()
        return (*own, *st)

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
        integ = priors.integrates_beta
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
