"""The binomial and Poisson posterior (issue 12): the compiled density, Stan's posterior, the groups.

References: brms 2.18 with the same priors, 4 x 5000 draws (``data/make_brms_refs.R``, ids ``cbpp``
and ``poisson_slope``). Every posterior mean within 4 combined Monte Carlo SEs, every posterior SD
within 10%.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer.builder import build_glmm
from bayesmer.engine.glmm import GlmmSpec
from bayesmer.errors import SettingsError
from bayesmer.family import get_family
from bayesmer.glmer_fit import fit_glmer, glmer, glmm_design
from bayesmer.priors import resolve_priors

DATA = Path(__file__).parent / "data"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
POIS = "y ~ x + (1 + x | g)"
REF_PRIORS = {"fixed": "Normal(0, 2.5)", "sd": "HalfCauchy(1)", "corr": "LKJ(2)"}


@pytest.fixture(scope="module")
def cbpp():
    return pd.read_csv(DATA / "glmer_cbpp.csv", dtype={"herd": str, "period": str})


@pytest.fixture(scope="module")
def pois():
    return pd.read_csv(DATA / "glmer_poisson_sim.csv")


def _fit(formula, data, family, seed=11, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(formula, data, kw.pop("priors", REF_PRIORS), family=family, seed=seed,
                            progress=False, **kw)


@pytest.mark.parametrize("family,link,formula", [
    ("binomial", "logit", CBPP), ("binomial", "probit", CBPP), ("binomial", "cloglog", CBPP),
    ("poisson", "log", "y3 ~ x + (1 + x | g) + (1 | h)"),
])
@pytest.mark.parametrize("centred", [False, True])
def test_density_gradient_matches_finite_differences(cbpp, pois, family, link, formula, centred):
    F = get_family(family, link)
    gd = glmm_design(formula, cbpp if family == "binomial" else pois, F)
    spec = GlmmSpec.build(gd.X, gd.y, gd.weights, gd.offset, gd.terms, F, resolve_priors(gd, None, family=F),
                          [centred] * len(gd.terms))
    x = np.random.default_rng(3).normal(scale=0.3, size=spec.ndim)
    lp, g = spec.logp(x)
    h = 1e-6
    fd = np.array([(spec.logp(x + h * e)[0] - spec.logp(x - h * e)[0]) / (2 * h) for e in np.eye(spec.ndim)])
    assert np.isfinite(lp)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(g).max()))


@pytest.mark.parametrize("centred", [False, True])
def test_density_equals_the_pymc_model(cbpp, centred):
    """The compiled density and fit.model's log density differ by a constant only (cbpp: one scalar term)."""
    F = get_family("binomial")
    gd = glmm_design(CBPP, cbpp, F)
    point = fit_glmer(gd)
    built = build_glmm(gd, resolve_priors(gd, REF_PRIORS, family=F), start=point, centred=[centred])
    logp = built.model.compile_logp()
    rng = np.random.default_rng(5)
    diffs = []
    for _ in range(3):
        beta = rng.normal(size=4) * 0.5
        log_sd = rng.normal() * 0.3
        eff = rng.normal(size=(15, 1))
        spec = built.density
        gamma = np.linalg.solve(spec.bchol, beta - spec.bshift)  # NUTS's coordinates of β
        x = np.concatenate([gamma, [log_sd], eff.ravel()])
        point_ = {"beta": beta, "sd_herd_log__": np.array([log_sd])}
        point_["b_herd" if centred else "z_herd"] = eff
        diffs.append(built.density.logp(x)[0] - logp(point_))
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-8)


def _key(brms_name: str):
    col = lambda c: "(Intercept)" if c == "Intercept" else c  # noqa: E731
    kind, rest = brms_name.split("_", 1)
    if kind == "b":
        return ("fixed", "", col(rest))
    parts = rest.split("__")
    if kind == "sd":
        return ("sd", parts[0], col(parts[1]))
    return ("corr", parts[0], f"{col(parts[1])},{col(parts[2])}")


@pytest.mark.parametrize("case", ["cbpp", "poisson_slope"])
def test_posterior_matches_brms(cbpp, pois, case):
    import arviz_stats as azs

    ref = json.loads((DATA / f"brms_{case}.json").read_text())
    formula, data, family = (CBPP, cbpp, "binomial") if case == "cbpp" else (POIS, pois, "poisson")
    fit = _fit(formula, data, family, draws=2000)
    keys, ds, _, _ = fit._scalars()
    mcse = azs.mcse(ds, method="mean")
    ours = fit.summary()
    ours["mcse"] = [float(mcse[f"p{i}"]) for i in range(len(keys))]
    assert int(fit.idata["sample_stats"]["diverging"].sum()) == 0
    for row in ref["summary"]:
        key = _key(row["variable"])
        got = ours.loc[key]
        z = abs(got["mean"] - row["mean"]) / np.hypot(got["mcse"], row["mcse_mean"])
        assert z < 4, (case, key, got["mean"], row["mean"], z)
        assert abs(got["sd"] / row["sd"] - 1) < 0.10, (case, key, got["sd"], row["sd"])


def test_groups_counts_loo_and_prediction(cbpp):
    fit = _fit(CBPP, cbpp, "binomial", draws=300, tune=300, sample_posterior_predictive=True)
    tree = fit.idata
    obs = tree["observed_data"]["cbind(incidence, size - incidence)"].to_numpy()
    np.testing.assert_array_equal(obs, cbpp["incidence"].to_numpy())
    pp = tree["posterior_predictive"]["cbind(incidence, size - incidence)"].to_numpy()
    assert np.all(pp == np.round(pp)) and np.all(pp >= 0) and np.all(pp <= cbpp["size"].to_numpy())
    ll = tree["log_likelihood"]["cbind(incidence, size - incidence)"]
    assert ll.sizes["obs"] == len(cbpp) and np.all(ll.to_numpy() <= 0)
    assert np.isfinite(fit.loo().elpd)
    assert set(fit.summary().index.get_level_values("component")) == {"fixed", "sd"}
    mean = fit.predict(kind="mean", summary=True)["mean"].to_numpy()
    link = fit.predict(kind="link", summary=True)["mean"].to_numpy()
    assert np.all((mean > 0) & (mean < 1))
    # the inverse link of the draws, averaged: close to, not equal to, the inverse link of the mean
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-link)), atol=0.05)
    new = cbpp.iloc[:3].copy()
    new["herd"] = ["1", "zz", "2"]
    pred = fit.predict(new, kind="response", seed=1)["predictions"]
    assert pred["cbind(incidence, size - incidence)"].sizes["obs"] == 3


def test_glmer_estimates_printed_beside_the_posterior(cbpp):
    fit = _fit(CBPP, cbpp, "binomial", draws=200, tune=200)
    point = glmer(CBPP, cbpp, family="binomial")
    table = fit.summary()
    np.testing.assert_allclose(table.loc[("fixed", "", "period2"), "reml"], point.fixef["period2"])
    np.testing.assert_allclose(table.loc[("fixed", "", "period2"), "reml_se"], point.se["period2"])
    assert "glmer" in str(fit) and "binomial" in str(fit)


def test_recovers_a_simulated_poisson_truth():
    rng = np.random.default_rng(2026)
    G, n = 40, 25
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    b = rng.normal(0, 0.5, size=G)
    y = rng.poisson(np.exp(0.3 + 0.6 * x + b[g]))
    df = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    fit = _fit("y ~ x + (1 | g)", df, "poisson", priors=None, draws=500, tune=500)
    s = fit.summary()
    for key, truth in {("fixed", "", "x"): 0.6, ("fixed", "", "(Intercept)"): 0.3, ("sd", "g", "(Intercept)"): 0.5}.items():
        lo, hi = s.loc[key, ["hdi_3%", "hdi_97%"]]
        assert lo < truth < hi, (key, lo, hi)


def test_gaussian_family_on_binary_or_count_data_warns():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.integers(0, 2, 200), "g": np.repeat(np.arange(20), 10).astype(str)})
    with pytest.warns(UserWarning, match="family='binomial'"):
        bayesmer.fit("y ~ 1 + (1 | g)", df, draws=50, tune=50, chains=1, progress=False, seed=1)
    df["y"] = rng.poisson(2.0, 200)
    with pytest.warns(UserWarning, match="family='poisson'"):
        bayesmer.fit("y ~ 1 + (1 | g)", df, draws=50, tune=50, chains=1, progress=False, seed=1)


def test_bad_family_link_and_settings(cbpp):
    with pytest.raises(SettingsError, match="family must be one of"):
        bayesmer.fit(CBPP, cbpp, family="negbin")
    with pytest.raises(SettingsError, match="link must be one of logit, probit, cloglog"):
        bayesmer.fit(CBPP, cbpp, family="binomial", link="log")
    with pytest.raises(SettingsError, match="strategy='marginal' is for the Gaussian family"):
        bayesmer.fit(CBPP, cbpp, family="binomial", strategy="marginal")
    with pytest.raises(bayesmer.priors.PriorError, match="no residual standard deviation"):
        bayesmer.fit(CBPP, cbpp, {"sigma": "HalfCauchy(1)"}, family="binomial")


def test_save_load_and_prior_sweep_round_trip(cbpp, tmp_path):
    fit = _fit(CBPP, cbpp, "binomial", draws=100, tune=100, chains=2)
    path = fit.save(tmp_path / "cbpp.nc")
    back = bayesmer.load(path)
    assert back.family.name == "binomial" and back.built.strategy == "glmm"
    np.testing.assert_allclose(back.summary()["mean"], fit.summary()["mean"])
    np.testing.assert_allclose(back.reml.fixef, fit.reml.fixef)
    sweep = bayesmer.prior_sweep(fit, {"sd": ["HalfCauchy(0.5)", "HalfCauchy(2)"]}, draws=100, tune=100, chains=1)
    assert len(sweep.fits) == 2


def test_simulate_binomial_and_poisson_from_a_glmer_fit(cbpp):
    point = glmer(CBPP, cbpp, family="binomial")
    sims = bayesmer.simulate(CBPP, cbpp, point, seed=1, nsim=400, family="binomial", weights="size")
    assert np.all(sims.to_numpy() <= cbpp["size"].to_numpy()[:, None]) and np.all(sims.to_numpy() >= 0)
    # the simulated incidence averages what the fitted model implies: about the observed total
    assert abs(sims.sum(axis=0).mean() - cbpp["incidence"].sum()) < 0.15 * cbpp["incidence"].sum()
    df = pd.DataFrame({"x": np.linspace(-1, 1, 400), "g": np.repeat([f"g{i}" for i in range(20)], 20)})
    y = bayesmer.simulate("y ~ x + (1 | g)", df, {"fixef": {"(Intercept)": 1.0, "x": 0.5}, "sd": {"g": [0.0]}},
                          seed=3, family="poisson")
    assert np.all(y == np.round(y)) and abs(y.mean() - np.mean(np.exp(1 + 0.5 * df["x"]))) < 0.3


def test_grouped_logo_and_sensitivity(cbpp):
    fit = _fit(CBPP, cbpp, "binomial", draws=300, tune=300)
    with pytest.warns(UserWarning, match="conditional on the random effects"):
        res = fit.logo()
    assert res.elpd_i.shape == (15,) and np.isfinite(res.elpd)
    # the conditional log-likelihood of a whole herd is far from its LOO posterior: Pareto k says so
    assert res.pareto_k.shape == (15,) and float(np.max(res.pareto_k)) > 0.7
    assert "cbind(incidence, size - incidence) ~ period + (1 | herd)" in repr(fit)
    sens = fit.sensitivity()
    assert len(sens) >= 5
