"""Leave-one-group-out on 1,000 groups against the fit it checks.

Run from the repository root::

    .venv/bin/python benchmarks/logo.py            # prints the result
    .venv/bin/python benchmarks/logo.py --write    # also writes benchmarks/results/logo.md and .json

Data: 1,000 groups of 20 rows, ``y ~ x + (x | g)`` (Clark's Mixed Model 7
shape), simulated with a fixed seed. The fit uses bayesmer's defaults (4
chains x 1,000 draws after 1,000 tuning steps). ``fit.logo()`` computes every
group's exact marginal log-likelihood for every draw (4,000 x 1,000) and runs
PSIS over groups. For scale, the previous implementation (a Python loop over
groups, dense algebra per group) is timed on the first 50 groups and its
per-group time multiplied by 1,000, and its values are compared with the new
ones on those groups. The machine is shared: its load average is recorded
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmer
from bayesmer import checking

OUT = Path(__file__).parent / "results"


def simulate(groups: int = 1000, rows: int = 20, seed: int = 2024) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows)
    x = rng.standard_normal(groups * rows)
    L = np.linalg.cholesky(np.array([[0.8**2, 0.3 * 0.8 * 0.4], [0.3 * 0.8 * 0.4, 0.4**2]]))
    b = rng.standard_normal((groups, 2)) @ L.T
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, 1.0, groups * rows)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def loop_group_loglik(fit, groups: int) -> np.ndarray:
    """The previous group_loglik: one dense Woodbury evaluation per group, groups in a Python loop."""
    d = fit.design
    t = d.terms[0]
    beta, sigma = fit.draws("beta"), fit.draws("sigma")
    s2 = sigma**2
    L = fit.cov_factor(t.name)
    out = np.empty((sigma.shape[0], groups))
    for j in range(groups):
        rows = np.flatnonzero(t.codes == j)
        r = d.y[rows][None, :] - beta @ d.X[rows].T
        ZL = np.einsum("nk,skl->snl", t.Z[rows], L)
        M = np.eye(t.k) + np.einsum("snq,snr->sqr", ZL, ZL) / s2[:, None, None]
        cM = np.linalg.cholesky(M)
        w = np.linalg.solve(cM, np.einsum("snq,sn->sq", ZL, r)[..., None])[..., 0]
        logdet = 2 * np.log(np.diagonal(cM, axis1=1, axis2=2)).sum(axis=1)
        quad = (r**2).sum(axis=1) - (w**2).sum(axis=1) / s2
        out[:, j] = -0.5 * rows.size * np.log(2 * np.pi * s2) - 0.5 * logdet - quad / (2 * s2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    df = simulate()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmer.fit("y ~ x + (x | g)", df, seed=1, progress=False)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit.logo()
    t_logo = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = checking.group_loglik(fit)
    t_group = time.perf_counter() - t0
    sub = 50
    t0 = time.perf_counter()
    old = loop_group_loglik(fit, sub)
    t_old = (time.perf_counter() - t0) * 1000 / sub
    # both index groups by the design's codes
    diff = float(np.max(np.abs(new.reshape(-1, new.shape[-1])[:, :sub] - old)))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other work",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": len(df),
        "groups": 1000,
        "draws": int(fit.idata["posterior"].sizes["chain"] * fit.idata["posterior"].sizes["draw"]),
        "fit_seconds": round(t_fit, 1),
        "logo_seconds": round(t_logo, 2),
        "group_loglik_seconds": round(t_group, 2),
        "previous_loop_seconds_extrapolated": round(t_old, 1),
        "max_abs_difference_to_previous": diff,
        "elpd_logo": round(float(res.elpd), 2),
        "logo_over_fit": round(t_logo / t_fit, 3),
    }
    print(json.dumps(result, indent=2))
    if args.write:
        OUT.mkdir(exist_ok=True)
        (OUT / "logo.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [
            "# fit.logo() on 1,000 groups",
            "",
            "`.venv/bin/python benchmarks/logo.py --write` (20,000 rows, `y ~ x + (x | g)`, 4 x 1,000 draws).",
            f"Machine: {result['machine']}; load average {result['load_average_before']} before, "
            f"{result['load_average_after']} after (other sessions were running).",
            "",
            "| step | seconds |",
            "|---|---|",
            f"| `bayesmer.fit` (defaults) | {result['fit_seconds']} |",
            f"| `fit.logo()` | {result['logo_seconds']} |",
            f"| of which exact group marginals (`checking.group_loglik`) | {result['group_loglik_seconds']} |",
            f"| previous loop over groups (50 groups timed, x 20) | {result['previous_loop_seconds_extrapolated']} |",
            "",
            f"`fit.logo()` costs {result['logo_over_fit']} of the fit. The new marginals agree with the loop's "
            f"to {diff:.1e} (largest absolute difference on the first 50 groups).",
        ]
        (OUT / "logo.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
