"""Check the kernel's LAPACK path (a dense block above ``DENSE_LOOP_MAX`` rows), which the test
suite's designs do not reach: the collapsed log likelihood against the dense multivariate normal,
the density's gradient and the profiled REML criterion's gradient against central differences.

    PYTHONPATH=src .venv/bin/python benchmarks/kernel_large_check.py

Designs: 1,200 rows, a first factor of 150 levels with a random intercept and slope (K1 = 2),
crossed with a second of 60 levels with intercept and slope and a third of 8 levels (q2 = 128);
and 2,000 rows of three crossed intercepts, 700 x 420 x 6 levels (q2 = 426, above
``ROW_ORDER_MIN``: the couplings visited row by row of the dense block).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import scipy.stats as st

from bayesmer.design import build_design
from bayesmer.engine import CollapsedStats, loglik
from bayesmer.engine import _kernel
from bayesmer.engine.density import DensitySpec
from bayesmer.engine.profiled import Profiled
from bayesmer.priors import resolve_priors


def data(seed=3, n=1200, levels=(150, 60, 8)):
    rng = np.random.default_rng(seed)
    la, lb, lc = levels
    a, b, c = rng.integers(0, la, n), rng.integers(0, lb, n), rng.integers(0, lc, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(0, 0.7, la)[a] + rng.normal(0, 0.3, la)[a] * x
         + rng.normal(0, 0.5, lb)[b] + rng.normal(0, 0.2, lb)[b] * x + rng.normal(0, 0.4, lc)[c]
         + rng.normal(0, 1, n))
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{v:03d}" for v in a], "b": [f"b{v:02d}" for v in b],
                         "c": [f"c{v}" for v in c]})


def dense_V(design, sigma, Ts):
    n = design.n
    V = sigma**2 * np.eye(n)
    for t, T in zip(design.terms, Ts):
        Zt = np.zeros((n, t.n_levels * t.k))
        for j in range(t.k):
            Zt[np.arange(n), t.codes * t.k + j] = t.Z[:, j]
        V += sigma**2 * Zt @ np.kron(np.eye(t.n_levels), T @ T.T) @ Zt.T
    return V


def main() -> int:
    ok = check(build_design("y ~ x + (1 + x | a) + (1 + x | b) + (1 | c)", data()),
               np.array([0.8, 0.1, 0.3, 0.5, -0.05, 0.2, 0.4]))
    design = build_design("y ~ x + (1 | a) + (1 | b) + (1 | c)", data(4, 2000, (700, 420, 6)))
    assert CollapsedStats.from_design(design).q2 >= _kernel.ROW_ORDER_MIN
    ok &= check(design, np.array([0.7, 0.5, 0.3]))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def check(design, theta) -> bool:
    stats = CollapsedStats.from_design(design)
    assert stats.q2 > _kernel.DENSE_LOOP_MAX, stats.q2
    print(f"levels {stats.blk_G.tolist()}, columns {stats.blk_K.tolist()}, q2 {stats.q2}")
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(2):
        Ts = []
        for t in design.terms:
            T = np.tril(rng.normal(size=(t.k, t.k)) * 0.4)
            T[np.diag_indices(t.k)] = np.abs(np.diag(T)) + 0.3
            Ts.append(T)
        sigma = float(np.std(design.y)) * rng.uniform(0.3, 0.8)
        V = dense_V(design, sigma, Ts)
        beta = np.linalg.lstsq(design.X, design.y, rcond=None)[0] + rng.normal(size=design.p)
        ll = loglik(stats, sigma, Ts, beta=beta)[0]
        ref = st.multivariate_normal(design.X @ beta, V).logpdf(design.y)
        worst = max(worst, abs(ll - ref) / abs(ref))
        mu0, s0 = rng.normal(size=design.p), rng.uniform(1, 100, size=design.p)
        ll = loglik(stats, sigma, Ts, prior_mu=mu0, prior_sd=s0)[0]
        ref = st.multivariate_normal(design.X @ mu0, V + design.X @ np.diag(s0**2) @ design.X.T).logpdf(design.y)
        worst = max(worst, abs(ll - ref) / abs(ref))
    print(f"loglik vs dense MVN: max rel diff {worst:.1e}")
    ok = worst < 1e-10
    for overrides in ({}, {"fixed": "StudentT(3, 0, 100)"}):
        spec = DensitySpec.build(stats, resolve_priors(design, overrides), design)
        x = rng.normal(size=spec.ndim) * 0.3
        x[0] = np.log(np.std(design.y) / 2)
        if not spec.integrate_beta:
            x[-design.p:] = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
        lp, g = spec.logp(x)
        h = 1e-6
        fd = np.array([(spec.logp(x + h * e)[0] - spec.logp(x - h * e)[0]) / (2 * h) for e in np.eye(spec.ndim)])
        err = float(np.max(np.abs(g - fd)) / max(1.0, np.abs(fd).max()))
        print(f"density gradient (beta {'integrated' if spec.integrate_beta else 'sampled'}) vs central "
              f"differences: max scaled diff {err:.1e}")
        ok &= err < 1e-5
    for reml in (True, False):
        prob = Profiled.from_design(design, reml=reml)
        d, g = prob.deviance_grad(theta)
        h = 1e-6
        fd = np.array([(prob.deviance(theta + h * e) - prob.deviance(theta - h * e)) / (2 * h)
                       for e in np.eye(len(theta))])
        err = float(np.max(np.abs(g - fd)) / max(1.0, np.abs(fd).max()))
        print(f"{'REML' if reml else 'ML'} criterion gradient vs central differences: max scaled diff {err:.1e}")
        ok &= err < 1e-5
    return ok


if __name__ == "__main__":
    sys.exit(main())
