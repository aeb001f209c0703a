"""The marginal strategy (the default) reproduces Stan's posterior on crossed and nested designs.

References: brms 2.18 fits with the same priors, 4 x 5000 draws (``data/make_brms_refs.R``).
Every posterior mean within 4 combined Monte Carlo SEs, every posterior SD within 10%; the
explicit ("full") model agrees with the marginal one, the random effects and fixed effects included.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer

DATA = Path(__file__).parent / "data"

CASES = {
    # id: (bayesmer formula, data, priors)
    "pastes": ("strength ~ 1 + (1 | batch/cask)", "pastes",
               {"fixed": "Normal(0, 100)", "sd": "HalfCauchy(5)", "sigma": "HalfCauchy(5)"}),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin",
                   {"fixed": "Normal(0, 100)", "sd": "HalfCauchy(5)", "sigma": "HalfCauchy(5)"}),
    "subjitems": ("y ~ x + (1 + x | subj) + (1 + x | item)", "subjitems",
                  {"fixed": "Normal(0, 10)", "sd": "HalfCauchy(2)", "sigma": "HalfCauchy(2)", "corr": "LKJ(2)"}),
}


def _data(name):
    return pd.read_csv(DATA / f"{name}.csv") if name == "subjitems" else bayesmer.datasets.load(name)


def _key(brms_name: str):
    """brms's parameter name -> (component, group, name) of ``BayesFit.summary()``."""
    col = lambda c: "(Intercept)" if c == "Intercept" else c  # noqa: E731
    if brms_name == "sigma":
        return ("sigma", "Residual", "sigma")
    kind, rest = brms_name.split("_", 1)
    if kind == "b":
        return ("fixed", "", col(rest))
    parts = rest.split("__")
    if kind == "sd":
        return ("sd", parts[0], col(parts[1]))
    return ("corr", parts[0], f"{col(parts[1])},{col(parts[2])}")


def _fit(case, strategy, seed, draws):
    formula, data, priors = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(formula, _data(data), priors, draws=draws, tune=1000, chains=4, seed=seed,
                            strategy=strategy, progress=False)


def _mcse(fit):
    import arviz_stats as azs

    keys, ds, _, _ = fit._scalars()
    s = azs.summary(ds, kind="mc_diagnostics", round_to="none")
    return pd.Series(s["mcse_mean"].to_numpy(float), index=pd.MultiIndex.from_tuples(keys))


def _draws(fit, key):
    """The draws of one row of ``fit.summary()``."""
    component, group, name = key
    post = fit.idata["posterior"]
    if component == "fixed":
        x = post["beta"].sel(fixed=name)
    elif component == "sd":
        x = post[f"sd_{group}"].sel({f"{group}_term": name})
    elif component == "corr":
        x = post[f"corr_{group}"].sel({f"{group}_pair": name})
    else:
        x = post["sigma"]
    return x.to_numpy().ravel()


@pytest.fixture(scope="module")
def marginal_fits():
    # 4 x 10,000 draws: the SD of a scale with few levels (6 samples, 10 batches) has a heavy
    # right tail, and its estimate needs them (a second on the engine)
    return {case: _fit(case, "auto", 100 + i, 10_000) for i, case in enumerate(CASES)}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_same_posterior_as_brms(marginal_fits, case):
    fit = marginal_fits[case]
    assert fit.strategy == "marginal"
    ref = json.loads((DATA / f"brms_{case}.json").read_text())["summary"]
    table, mcse = fit.summary(), _mcse(fit)
    bad = []
    for r in ref:
        key = _key(r["variable"])
        mean, sd = table.loc[key, "mean"], table.loc[key, "sd"]
        tol = 4 * np.hypot(mcse[key], r["mcse_mean"])
        if not (abs(mean - r["mean"]) <= tol and abs(sd / r["sd"] - 1) <= 0.10):
            bad.append((r["variable"], mean, r["mean"], tol, sd, r["sd"]))
    assert not bad, f"differs from brms: {bad}"


@pytest.mark.slow
def test_marginal_and_full_agree(marginal_fits):
    """On Penicillin (crossed); every case, and sleepstudy, in ``benchmarks/posterior.py``."""
    import arviz_stats as azs

    case = "penicillin"
    a, b = marginal_fits[case], _fit(case, "full", 7, 2000)
    ta, tb = a.summary(), b.summary()
    tol = 4 * np.hypot(_mcse(a), _mcse(b)).to_numpy()
    assert np.all(np.abs(ta["mean"] - tb["mean"]).to_numpy() <= tol)
    # the 5% and 95% quantiles within 4 combined Monte Carlo SEs of each quantile: the SD of a
    # scale with 6 levels is heavy-tailed, and full's 8,000 correlated draws put its 95% quantile
    # about 10% either way (a fixed 10% tolerance failed or passed with the packages' versions)
    for key in ta.index:
        for p in (0.05, 0.95):
            qa, qb = (np.quantile(_draws(f, key), p) for f in (a, b))
            mc = np.hypot(*(float(azs.mcse(_draws(f, key).reshape(4, -1), method="quantile", prob=p))
                            for f in (a, b)))
            assert abs(qa - qb) <= 4 * mc, (key, p, qa, qb, mc)
    # b and β: drawn exactly after sampling under "marginal", sampled under "full"
    pa, pb = a.idata["posterior"], b.idata["posterior"]
    names = ["beta"] + [v for v in pa.data_vars if v.startswith("b_")]
    for name in names:
        xa, xb = pa[name], pb[name]
        assert xa.dims == xb.dims
        diff = np.abs(xa.mean(("chain", "draw")).to_numpy() - xb.mean(("chain", "draw")).to_numpy())
        mc = np.hypot(azs.mcse(xa, method="mean").to_numpy(), azs.mcse(xb, method="mean").to_numpy())
        assert np.all(diff <= 4 * mc), name
        sd_mc = np.hypot(azs.mcse(xa, method="sd").to_numpy(), azs.mcse(xb, method="sd").to_numpy())
        sd_diff = np.abs(xa.std(("chain", "draw")).to_numpy() - xb.std(("chain", "draw")).to_numpy())
        assert np.all(sd_diff <= 4 * sd_mc), name
