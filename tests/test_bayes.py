"""Bayesian fits: Stan's posterior reproduced, recovery of simulated truths, ArviZ, errors."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer import BuildError, PriorError

DATA = Path(__file__).parent / "data"
BRMS_PRIORS = {"fixed": "Normal(0, 500)", "sd": "HalfCauchy(50)", "sigma": "HalfCauchy(50)", "corr": "LKJ(2)"}
SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
# brms name -> (component, group, name) of BayesFit.summary()
BRMS_NAMES = {
    "b_Intercept": ("fixed", "", "(Intercept)"),
    "b_Days": ("fixed", "", "Days"),
    "sd_Subject__Intercept": ("sd", "Subject", "(Intercept)"),
    "sd_Subject__Days": ("sd", "Subject", "Days"),
    "cor_Subject__Intercept__Days": ("corr", "Subject", "(Intercept),Days"),
    "sigma": ("sigma", "Residual", "sigma"),
}


def _fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(*args, progress=False, **kwargs)


@pytest.fixture(scope="module")
def sleep_df():
    return bayesmer.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_marginal(sleep_df):
    return _fit(SLEEP, sleep_df, BRMS_PRIORS, draws=2000, tune=1000, chains=4, seed=11, strategy="marginal")


@pytest.fixture(scope="module")
def sleep_full(sleep_df):
    return _fit(SLEEP, sleep_df, BRMS_PRIORS, draws=1500, tune=1000, chains=4, seed=12, strategy="full")


def _mcse(fit):
    """mcse_mean of each reported parameter, in summary order."""
    import arviz_stats as azs

    keys, ds, _, _ = fit._scalars()
    s = azs.summary(ds, kind="mc_diagnostics", round_to="none")
    return pd.Series(s["mcse_mean"].to_numpy(float), index=pd.MultiIndex.from_tuples(keys))


def _check_brms(fit):
    ref = {r["variable"]: r for r in json.loads((DATA / "brms_sleepstudy.json").read_text())["summary"]}
    table = fit.summary()
    mcse = _mcse(fit)
    lines = []
    for brms_name, key in BRMS_NAMES.items():
        r = ref[brms_name]
        mean, sd = table.loc[key, "mean"], table.loc[key, "sd"]
        tol = 4 * np.hypot(mcse[key], r["mcse_mean"])
        ok_mean = abs(mean - r["mean"]) <= tol
        ok_sd = abs(sd / r["sd"] - 1) <= 0.10
        lines.append((brms_name, mean, r["mean"], tol, sd, r["sd"], ok_mean, ok_sd))
    bad = [line for line in lines if not (line[-1] and line[-2])]
    assert not bad, f"differs from brms: {bad}"
    return lines


@pytest.mark.slow
def test_brms_marginal(sleep_marginal):
    assert sleep_marginal.strategy == "marginal"
    _check_brms(sleep_marginal)


@pytest.mark.slow
def test_brms_full(sleep_full):
    assert sleep_full.strategy == "full"
    _check_brms(sleep_full)


@pytest.mark.slow
def test_marginal_and_full_agree(sleep_marginal, sleep_full):
    a, b = sleep_marginal.summary(), sleep_full.summary()
    ma, mb = _mcse(sleep_marginal), _mcse(sleep_full)
    tol = 4 * np.hypot(ma, mb).to_numpy()
    assert np.all(np.abs(a["mean"] - b["mean"]).to_numpy() <= tol)
    np.testing.assert_allclose(a["sd"], b["sd"], rtol=0.1)
    # the exact conditional draws of b match the explicitly sampled b
    import arviz_stats as azs

    pa = sleep_marginal.idata["posterior"]["b_Subject"]
    pb = sleep_full.idata["posterior"]["b_Subject"]
    assert pa.dims == pb.dims
    mca = azs.mcse(pa, method="mean").to_numpy()
    mcb = azs.mcse(pb, method="mean").to_numpy()
    diff = np.abs(pa.mean(("chain", "draw")).to_numpy() - pb.mean(("chain", "draw")).to_numpy())
    assert np.all(diff <= 4 * np.hypot(mca, mcb))
    np.testing.assert_allclose(pa.std(("chain", "draw")), pb.std(("chain", "draw")), rtol=0.1)
    # and both sit next to REML's conditional modes
    r = sleep_marginal.reml.ranef["Subject"].to_numpy()
    assert np.corrcoef(r.ravel(), sleep_marginal.ranef()["Subject"].to_numpy().ravel())[0, 1] > 0.99


def _covers(fit, truth):
    post = fit.idata["posterior"]
    out = {}
    for key, value in truth.items():
        kind, name = key
        if kind == "fixed":
            x = post["beta"].sel(fixed=name)
        elif kind == "sd":
            t, col = name
            x = post[f"sd_{t}"].sel({f"{t}_term": col})
        elif kind == "corr":
            x = post[f"corr_{name}"].isel({f"{name}_pair": 0})
        else:
            x = post["sigma"]
        lo, hi = np.quantile(x.to_numpy().ravel(), [0.05, 0.95])
        out[key] = (lo, value, hi)
    missed = {k: v for k, v in out.items() if not v[0] <= v[1] <= v[2]}
    assert not missed, f"90% intervals miss the truth: {missed}"


@pytest.mark.slow
def test_recovers_ogorek():
    df = bayesmer.datasets.load("ogorek")
    fit = _fit("y ~ x + a + x*a + (1 + x | unit)", df, draws=1000, chains=4, seed=3)
    # Ogorek's simulation: alpha = 1 - 0.15 a + b0, beta = 3 + 0.3 a + b1
    _covers(
        fit,
        {
            ("fixed", "(Intercept)"): 1.0,
            ("fixed", "x"): 3.0,
            ("fixed", "a"): -0.15,
            ("fixed", "x:a"): 0.3,
            ("sd", ("unit", "(Intercept)")): 0.2,
            ("sd", ("unit", "x")): 0.5,
            ("corr", "unit"): 0.9,
            ("sigma", None): 0.75,
        },
    )


@pytest.mark.slow
def test_recovers_clark_slopes():
    df = bayesmer.datasets.load("clark_slopes")
    fit = _fit("y ~ x + (x | clus)", df, draws=1000, chains=4, seed=4)
    # Clark's appendix: intercept 3, slope .75, unit variances, covariance .25, sigma 1
    _covers(
        fit,
        {
            ("fixed", "(Intercept)"): 3.0,
            ("fixed", "x"): 0.75,
            ("sd", ("clus", "(Intercept)")): 1.0,
            ("sd", ("clus", "x")): 1.0,
            ("corr", "clus"): 0.25,
            ("sigma", None): 1.0,
        },
    )


@pytest.mark.slow
def test_arviz_works(sleep_marginal, sleep_full):
    import arviz as az
    import arviz_stats as azs
    import matplotlib

    matplotlib.use("Agg")
    idata = sleep_marginal.idata
    for group in ["posterior", "sample_stats", "log_likelihood", "log_prior", "observed_data"]:
        assert group in idata.children
    assert "diverging" in idata["sample_stats"]
    assert idata["log_likelihood"]["Reaction"].dims == ("chain", "draw", "obs")
    assert set(idata["log_prior"].data_vars) == {"beta", "sd_Subject", "corr_Subject", "sigma"}
    az.summary(idata, var_names=["beta", "sigma", "sd_Subject"])
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd)
    cmp = az.compare({"marginal": idata, "full": sleep_full.idata})
    assert len(cmp) == 2
    ps = azs.psense_summary(idata, var_names=["beta", "sigma", "sd_Subject"])
    assert np.isfinite(ps["prior"].to_numpy(float)).all()
    az.plot_rank(idata, var_names=["beta"])
    az.plot_trace(idata, var_names=["sigma"])


def test_printing_and_tables(sleep_df):
    fit = _fit(SLEEP, sleep_df, draws=200, tune=300, chains=2, seed=5, sample_posterior_predictive=True, sample_prior=100)
    s = fit.summary()
    assert list(s.columns) == ["reml", "reml_se", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat"]
    assert s.index.names == ["component", "group", "name"]
    assert set(s.index.get_level_values("component")) == {"fixed", "sd", "corr", "sigma"}
    assert s.loc[("corr", "Subject", "(Intercept),Days"), "reml"] == pytest.approx(fit.reml.corr("Subject")[0, 1])
    text = str(fit)
    assert "(Intercept)" in text and "HalfCauchy" in text
    assert "<table" in fit._repr_html_()
    assert list(fit.fixef().index) == ["(Intercept)", "Days"]
    assert fit.ranef()["Subject"].shape == (18, 2)
    vc = fit.varcorr()
    assert list(vc.columns) == ["group", "kind", "term1", "term2", "value"]
    for g in ["posterior_predictive", "prior", "prior_predictive"]:
        assert g in fit.idata.children
    # prediction: known subject, and a new one drawn from N(0, Ψ)
    new = pd.DataFrame({"Days": [0, 9, 9], "Subject": ["308", "308", "not-a-subject"]})
    draws = fit.predict(new, seed=1)["predictions"]["mu"]
    assert draws.dims == ("chain", "draw", "obs") and draws.shape == (2, 200, 3)
    table = fit.predict(new, summary=True, seed=1)
    assert table.loc[2, "sd"] > 2 * table.loc[1, "sd"]
    pop = fit.predict(new, include_random=False)["predictions"]["mu"].values
    np.testing.assert_allclose(pop[..., 1], pop[..., 2])
    assert fit.predict()["predictions"]["mu"].shape == (2, 200, 180)


def test_diagnostic_warnings(sleep_df):
    with pytest.warns(UserWarning, match="effective sample size"):
        bayesmer.fit(SLEEP, sleep_df, draws=15, tune=15, chains=2, seed=1, progress=False)


def test_pymc_sampler(sleep_df):
    fit = _fit("Reaction ~ Days + (1 | Subject)", sleep_df, draws=200, tune=200, chains=2, seed=6, sampler="pymc")
    assert fit.summary().loc[("fixed", "", "Days"), "mean"] == pytest.approx(10.47, abs=1.0)
    assert "b_Subject" in fit.idata["posterior"]


@pytest.mark.slow
def test_crossed_uses_marginal():
    df = bayesmer.datasets.load("penicillin")
    fit = _fit("diameter ~ 1 + (1|plate) + (1|sample)", df, draws=500, tune=500, chains=2, seed=7)
    assert fit.strategy == "marginal"
    post = fit.idata["posterior"]
    assert post["b_plate"].shape[2:] == (24, 1) and post["b_sample"].shape[2:] == (6, 1)
    assert fit.fixef()["(Intercept)"] == pytest.approx(22.97, abs=1.0)


def test_errors(sleep_df):
    with pytest.raises(PriorError, match="unknown prior name 'Dayz'"):
        bayesmer.fit(SLEEP, sleep_df, {"Dayz": "Normal(0, 1)"}, progress=False)
    with pytest.raises(PriorError, match="unknown prior family"):
        bayesmer.fit(SLEEP, sleep_df, {"sigma": "Cauchy(5)"}, progress=False)
    with pytest.raises(PriorError, match="cannot parse"):
        bayesmer.fit(SLEEP, sleep_df, {"sigma": "HalfCauchy 5"}, progress=False)
    with pytest.raises(PriorError, match="positive"):
        bayesmer.fit(SLEEP, sleep_df, {"sd": "HalfNormal(-2)"}, progress=False)
    for arg in ["draws", "tune", "chains"]:
        with pytest.raises(ValueError, match=arg):
            bayesmer.fit(SLEEP, sleep_df, **{arg: 0}, progress=False)
    pen = bayesmer.datasets.load("penicillin")
    with pytest.raises(ValueError, match="strategy must be one of"):
        bayesmer.fit("diameter ~ 1 + (1|plate) + (1|sample)", pen, strategy="exact", progress=False)
