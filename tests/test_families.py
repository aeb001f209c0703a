"""Response families (bayesmer.families) and their Laplace ML fits (bayesmer.glmmtmb) against glmmTMB, clmm and lmer.

References: tests/data/make_family_refs.R (glmmTMB 1.1.5, ordinal 2022.11.16,
lme4 1.1.31 on R 4.2.2), one family_<name>.json per fit with its data as CSV.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import bayesmer
from bayesmer.families import FAMILIES, FamilyError, get_family
from bayesmer.glmmtmb_fit import glmmtmb

DATA = Path(__file__).parent / "data"

# family name -> (family= argument, ziformula=)
REFS = {
    "negbinomial": ("negbinomial", None),
    "zero_inflated_poisson": ("poisson", "~1"),
    "zero_inflated_negbinomial": ("zero_inflated_negbinomial", None),
    "Gamma": ("gamma", None),
    "Gamma_slope": ("Gamma", None),
    "beta": ("beta", None),
    "lognormal": ("lognormal", None),
    "cumulative": ("cumulative", None),
    "student": ("t", None),
    "negbinomial_crossed": ("negbinomial", None),
}
LINKS = {"Gamma_inverse": ("Gamma", "inverse"), "cumulative_probit": ("cumulative", "probit")}


def _load(name):
    ref = json.loads((DATA / f"family_{name}.json").read_text())
    d = pd.read_csv(DATA / ref["data"])
    for c, spec in ref["factors"].items():
        d[c] = pd.Categorical(d[c].astype(str), categories=spec["levels"], ordered=spec["ordered"])
    return ref, d


@pytest.fixture(scope="module")
def fits():
    out = {}
    for name, (fam, zi) in REFS.items():
        ref, d = _load(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = (ref, glmmtmb(ref["formula"], d, fam, ziformula=zi))
    return out


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("name", list(REFS))
def test_point_fit_matches_reference(fits, name):
    ref, fit = fits[name]
    fe, se = pd.Series(ref["fixef"]), pd.Series(ref["se"])
    assert list(fit.fixef.index) == list(fe.index)
    assert _rel(fit.fixef[fe.index], fe) < 1e-4
    assert _rel(fit.se[se.index], se) < 1e-4
    vc = fit.varcorr.query("kind == 'sd' and group != 'Residual'").set_index(["group", "term1"])["value"]
    for grp, terms in ref["sd"].items():
        for term, v in terms.items():
            assert abs(vc[(grp, term)] / v - 1) < 1e-4, (grp, term)
    assert len(vc) == sum(len(t) for t in ref["sd"].values())
    for k, v in ref["dpars"].items():
        if k in fit.dpars.index:
            assert abs(fit.dpars[k] / v - 1) < 1e-4, k
    assert set(fit.dpars.index) <= set(ref["dpars"])
    if "corr" in ref:
        corr = fit.varcorr.query("kind == 'corr'")["value"].iloc[0]
        assert abs(corr - ref["corr"]) < 1e-4
    assert abs(fit.loglik - ref["loglik"]) < 1e-3
    assert abs(fit.aic - ref["aic"]) < 2e-3
    assert fit.nobs == ref["nobs"]


def test_singular_fit_matches_glmmtmb():
    ref, d = _load("negbinomial_singular")
    with pytest.warns(UserWarning, match="boundary"):
        fit = glmmtmb(ref["formula"], d, "negbinomial")
    assert fit.theta[0] == 0.0 and ref["sd"]["g"]["(Intercept)"] < 1e-3
    assert _rel(fit.fixef, list(ref["fixef"].values())) < 1e-5
    assert _rel(fit.se, list(ref["se"].values())) < 1e-4
    assert abs(fit.dpars["shape"] / ref["dpars"]["shape"] - 1) < 1e-5
    assert abs(fit.loglik - ref["loglik"]) < 1e-4


def test_offset_in_formula():
    ref, d = _load("negbinomial_offset")
    fit = glmmtmb(ref["formula"], d, "negbinomial")
    assert _rel(fit.fixef, list(ref["fixef"].values())) < 1e-4
    assert _rel(fit.se, list(ref["se"].values())) < 1e-4
    assert abs(fit.dpars["shape"] / ref["dpars"]["shape"] - 1) < 1e-4
    assert abs(fit.loglik - ref["loglik"]) < 1e-3


def test_lognormal_reml():
    ref, d = _load("lognormal_reml")
    fit = glmmtmb(ref["formula"], d, "lognormal", REML=True)
    assert fit.method == "REML"
    assert _rel(fit.fixef, list(ref["fixef"].values())) < 1e-4
    assert _rel(fit.se, list(ref["se"].values())) < 1e-4
    sds = fit.varcorr.query("kind == 'sd' and group != 'Residual'")["value"]
    assert _rel(sds, list(ref["sd"]["Subject"].values())) < 1e-4
    assert abs(fit.dpars["sigma"] / ref["dpars"]["sigma"] - 1) < 1e-4
    assert abs(fit.dpars_se["sigma"] / ref["dpars_se"]["sigma"] - 1) < 1e-4
    with pytest.raises(FamilyError, match="REML is available for 'lognormal'"):
        glmmtmb(ref["formula"], d, "Gamma", REML=True)


@pytest.mark.parametrize("name", list(LINKS))
def test_other_links(name):
    ref, d = _load(name)
    fam, link = LINKS[name]
    fit = glmmtmb(ref["formula"], d, fam, link=link)
    assert fit.family.link == link
    assert _rel(fit.fixef, list(ref["fixef"].values())) < 1e-4
    assert _rel(fit.se, list(ref["se"].values())) < 1e-4
    mine = fit.varcorr.query("kind == 'sd'")["value"].to_numpy()
    assert _rel(mine, [v for g in ref["sd"].values() for v in g.values()]) < 1e-4
    assert _rel(fit.dpars.to_numpy(), list(ref["dpars"].values())) < 1e-4
    assert abs(fit.loglik - ref["loglik"]) < 1e-3
    with pytest.raises(FamilyError, match="unknown link 'identity' for family 'Gamma'"):
        glmmtmb(ref["formula"], d, "Gamma", link="identity")


def test_cumulative_thresholds_and_their_ses(fits):
    ref, fit = fits["cumulative"]
    assert list(fit.dpars.index) == [f"Intercept[{k}]" for k in range(1, 5)]
    assert fit.family.threshold_names() == list(ref["thresholds"])
    assert _rel(fit.dpars.to_numpy(), list(ref["thresholds"].values())) < 1e-4
    assert _rel(fit.dpars_se.to_numpy(), list(ref["thresholds_se"].values())) < 1e-4
    assert "(Intercept)" not in fit.fixef.index


def test_lognormal_log_scale(fits):
    ref, fit = fits["lognormal"]
    assert fit.varcorr["group"].iloc[-1] == "Residual"
    assert abs(fit.loglik + np.log(fit.y).sum() - ref["loglik_log_scale"]) < 1e-3
    # sigma's SE as glmmTMB's Gaussian fit of log(y) gives it (delta method from its dispersion's)
    assert abs(fit.dpars_se["sigma"] / ref["dpars_se"]["sigma"] - 1) < 1e-4


def test_summary_prints(fits):
    text = fits["negbinomial"][1].summary()
    assert "nbinom2" in text and "shape" in text and "zBase:Trt1" in text and "patient" in text
    text = fits["cumulative"][1].summary()
    assert "Threshold coefficients" in text and "1|2" in text
    assert "Zero-inflation model" in fits["zero_inflated_poisson"][1].summary()


def test_zero_inflation_on_glmmtmbs_logit_scale(fits):
    ref, fit = fits["zero_inflated_poisson"]
    est, se = fit.zi_logit()
    assert abs(est / ref["dpars"]["zi_logit"] - 1) < 1e-4
    assert abs(se / ref["dpars"]["zi_logit_se"] - 1) < 1e-4


def test_ranef_and_fitted(fits):
    ref, fit = fits["negbinomial"]
    b = fit.ranef["patient"]
    assert b.shape == (59, 1) and abs(b.to_numpy().mean()) < 0.05
    mu = fit.fitted()
    assert mu.shape == (236,) and np.all(mu > 0)
    assert abs(np.log(mu).mean() - np.log(fit.y + 0.5).mean()) < 0.5
    ref, fit = fits["lognormal"]
    assert fit.ranef["Subject"].shape == (18, 2)
    assert np.all(fit.fitted() > 150)


def test_public_export():
    assert bayesmer.glmmtmb is glmmtmb


# ---------------------------------------------------------------- the families themselves

def _case(name, rng):
    f = get_family(name)
    n = 25
    if name == "cumulative":
        f = dataclasses.replace(f, levels=("1", "2", "3", "4"))
        return f, rng.integers(1, 5, n).astype(float), {"Intercept": np.array([-1.0, 0.2, 1.5])}
    y = {
        "negbinomial": rng.poisson(3, n), "zero_inflated_poisson": rng.poisson(1, n),
        "zero_inflated_negbinomial": rng.poisson(1, n), "poisson": rng.poisson(3, n),
        "student": 3 * rng.normal(size=n), "gaussian": rng.normal(size=n), "Gamma": rng.gamma(2, size=n),
        "lognormal": rng.gamma(2, size=n), "beta": rng.uniform(0.05, 0.95, n),
        "bernoulli": rng.integers(0, 2, n), "binomial": rng.integers(0, 2, n),
    }[name].astype(float)
    dp = {"shape": 2.3, "zi": 0.3, "nu": 4.0, "sigma": 1.3, "phi": 5.0}
    return f, y, {d.name: dp[d.name] for d in f.dpars}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_derivatives_in_eta(name):
    rng = np.random.default_rng(7)
    f, y, dp = _case(name, rng)
    eta = 0.5 * rng.normal(size=len(y)) + (0.5 if f.link == "log" else 0.0)
    h = 1e-5
    d1, d2 = f.derivs(y, eta, dp)
    n1 = (f.logpdf(y, eta + h, dp) - f.logpdf(y, eta - h, dp)) / (2 * h)
    n2 = (f.derivs(y, eta + h, dp)[0] - f.derivs(y, eta - h, dp)[0]) / (2 * h)
    np.testing.assert_allclose(d1, n1, atol=1e-7)
    np.testing.assert_allclose(d2, n2, atol=1e-7)


def test_log_densities_against_scipy():
    y = np.array([0.0, 1, 2, 5])
    mu = np.exp(np.array([0.3, 0.3, 1.0, 2.0]))
    fam = get_family
    np.testing.assert_allclose(fam("negbinomial").logpdf(y, np.log(mu), {"shape": 2.0}),
                               st.nbinom.logpmf(y, 2.0, 2.0 / (2 + mu)), rtol=1e-12)
    np.testing.assert_allclose(fam("gamma").logpdf(y + 1, np.log(mu), {"shape": 2.0}),
                               st.gamma.logpdf(y + 1, 2.0, scale=mu / 2), rtol=1e-12)
    np.testing.assert_allclose(fam("t").logpdf(y, mu, {"nu": 3.0, "sigma": 2.0}), st.t.logpdf(y, 3.0, mu, 2.0), rtol=1e-12)
    np.testing.assert_allclose(fam("lognormal").logpdf(y + 1, mu, {"sigma": 0.5}),
                               st.lognorm.logpdf(y + 1, 0.5, scale=np.exp(mu)), rtol=1e-12)
    m = st.logistic.cdf([0.1, -0.4])
    np.testing.assert_allclose(fam("beta").logpdf(np.array([0.2, 0.7]), np.array([0.1, -0.4]), {"phi": 3.0}),
                               st.beta.logpdf([0.2, 0.7], 3 * m, 3 * (1 - m)), rtol=1e-12)
    zip_ = fam("zero_inflated_poisson").logpdf(y, np.log(mu), {"zi": 0.25})
    expect = np.log(0.75 * st.poisson.pmf(y, mu) + 0.25 * (y == 0))
    np.testing.assert_allclose(zip_, expect, rtol=1e-12)
    cum = dataclasses.replace(fam("cumulative"), levels=("a", "b", "c"))
    p = np.exp(cum.logpdf(np.array([1.0, 2, 3]), np.zeros(3), {"Intercept": np.array([-0.5, 1.0])}))
    F = st.logistic.cdf([-0.5, 1.0])
    np.testing.assert_allclose(p, [F[0], F[1] - F[0], 1 - F[1]], rtol=1e-12)


def test_registry_names_aliases_and_priors():
    assert get_family("negativebinomial") is get_family("negbinomial")
    assert get_family("t") is get_family("student")
    assert get_family("gamma") is get_family("Gamma")
    with pytest.raises(FamilyError, match="unknown family 'negbin'.*negbinomial.*aliases"):
        get_family("negbin")
    assert get_family("negbinomial").default_priors() == {"shape": "gamma(0.01, 0.01)"}
    assert get_family("student").default_priors()["nu"] == "gamma(2, 0.1)"
    assert get_family("zero_inflated_poisson").default_priors() == {"zi": "beta(1, 1)"}
    assert get_family("cumulative").default_priors() == {"Intercept": "student_t(3, 0, 2.5)"}
    f = get_family("zero_inflated_negbinomial")
    dp = {"shape": 1.7, "zi": 0.2}
    assert f.unpack(f.pack(dp)) == pytest.approx(dp)
    c = dataclasses.replace(get_family("cumulative"), levels=("1", "2", "3", "4"))
    tau = np.array([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(c.unpack(c.pack({"Intercept": tau}))["Intercept"], tau)


# ---------------------------------------------------------------- bad responses

def _frame(y):
    return pd.DataFrame({"y": y, "g": list("aabbccdd")[: len(y)]}, index=[f"r{i}" for i in range(len(y))])


@pytest.mark.parametrize("family", ["negbinomial", "zero_inflated_poisson", "zero_inflated_negbinomial"])
def test_counts_negative_or_not_whole(family):
    with pytest.raises(FamilyError, match=r"negative counts: rows r2$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([1, 2, -1, 3, 0, 1, 2, 4]), family)
    with pytest.raises(FamilyError, match=r"not integers: rows r1, r5$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([1, 2.5, 1, 3, 0, 1.5, 2, 4]), family)


def test_beta_at_zero_or_one_names_the_family_that_takes_them():
    with pytest.raises(FamilyError, match=r"exactly 0 .*zero_inflated_beta.*rows r3$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([0.2, 0.3, 0.5, 0.0, 0.1, 0.9, 0.4, 0.6]), "beta")
    with pytest.raises(FamilyError, match=r"exactly 1 .*zero_one_inflated_beta.*rows r0, r7$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([1.0, 0.3, 0.5, 0.2, 0.1, 0.9, 0.4, 1.0]), "beta")
    with pytest.raises(FamilyError, match=r"outside \(0, 1\): rows r1$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([0.5, 1.3, 0.5, 0.2, 0.1, 0.9, 0.4, 0.6]), "beta")


@pytest.mark.parametrize("family", ["Gamma", "lognormal"])
def test_positive_families_refuse_zero_or_negative(family):
    with pytest.raises(FamilyError, match=r"zero or negative values .*rows r1, r4$"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([1.0, 0.0, 2.0, 3.0, -1.0, 2.0, 1.0, 4.0]), family)


def test_ordinal_response_checks():
    levels = ["low", "mid", "high"]
    words = ["low", "mid", "high", "mid", "low", "high", "mid", "low"]
    with pytest.raises(FamilyError, match="strings without an order.*ordered categorical"):
        glmmtmb("y ~ 1 + (1 | g)", _frame(words), "cumulative")
    unseen = pd.Categorical(["low", "high"] * 4, categories=levels, ordered=True)
    with pytest.raises(FamilyError, match=r"never takes the category \['mid'\]"):
        glmmtmb("y ~ 1 + (1 | g)", _frame(unseen), "cumulative")
    fam = get_family("cumulative")
    with pytest.warns(UserWarning, match=r"numeric; its order is 1 < 2 < 3"):
        bound = fam.bind(pd.Series([3, 1, 2, 2]), "y")
    assert bound.levels == ("1", "2", "3")
    np.testing.assert_array_equal(bound.prepare_response(pd.Series([3, 1, 2, 2]), "y"), [3, 1, 2, 2])
    with pytest.warns(UserWarning, match="unordered categorical; its categories' order is used: b < a"):
        fam.bind(pd.Series(pd.Categorical(["a", "b"], categories=["b", "a"])), "y")


def test_ziformula_only_constant():
    with pytest.raises(FamilyError, match="only '~1'"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([0, 1, 0, 2, 0, 1, 3, 0]), "poisson", ziformula="~x")
    with pytest.raises(FamilyError, match="needs family 'poisson' or 'negbinomial'"):
        glmmtmb("y ~ 1 + (1 | g)", _frame([0.1, 1, 0.3, 2, 0.2, 1, 3, 0.4]), "Gamma", ziformula="~1")


@pytest.mark.parametrize("name", ["zero_inflated_negbinomial", "Gamma_slope", "cumulative", "beta"])
def test_analytic_gradient_of_the_laplace_objective(name):
    from bayesmer.engine.laplace import LaplaceModel
    from bayesmer.engine.numdiff import central_grad

    ref, d = _load(name)
    fam, zi = REFS.get(name, ("Gamma", None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = glmmtmb(ref["formula"], d, fam, ziformula=zi)
    X = fit.design.X[:, 1:] if fit.family.name == "cumulative" else fit.design.X
    n = len(fit.y)
    m = LaplaceModel(X, fit.y, np.ones(n), np.zeros(n), fit.terms, fit.family)
    x = m.start()
    x[m.p : m.p + m.nth] *= 0.7
    g = m.gradient(x)
    np.testing.assert_allclose(g, central_grad(m.objective, x), atol=1e-6 * max(1.0, np.max(np.abs(g))))


@pytest.mark.parametrize("fam, glmer_fam", [("poisson", "poisson"), ("bernoulli", "binomial")])
def test_adapters_agree_with_glmer(fam, glmer_fam):
    # the Laplace engine against lme4's glmer reproduced (exact Laplace: tol_pwrss 1e-12); a
    # missing response row is dropped with a warning
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(25), 8)
    x = rng.normal(size=200)
    y = rng.poisson(np.exp(0.3 + 0.5 * x + 0.6 * rng.normal(size=25)[g])).astype(float)
    if fam == "bernoulli":
        y = (y > 1).astype(float)
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    d.loc[3, "y"] = np.nan
    with pytest.warns(UserWarning, match="1 row"):
        a = glmmtmb("y ~ x + (1 | g)", d, fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = bayesmer.glmer("y ~ x + (1 | g)", d, glmer_fam, tol_pwrss=1e-12)
    assert a.nobs == 199
    assert _rel(a.fixef, b.fixef) < 1e-5
    assert _rel(a.se, b.se) < 2e-5
    assert _rel(a.theta, b.theta) < 1e-5
    assert abs(a.loglik - b.loglik) < 1e-5


def test_difference_only_path_agrees(fits):
    # the path for models whose dense q x n solve is too large for the analytic gradient
    from bayesmer.engine.laplace import LaplaceModel, fit_laplace

    ref, fit = fits["Gamma"]
    n = len(fit.y)
    m = LaplaceModel(fit.design.X, fit.y, np.ones(n), np.zeros(n), fit.terms, fit.family)
    res = fit_laplace(m, analytic=False)
    beta, theta, dp = m.split(res.x)
    assert _rel(beta, fit.fixef) < 1e-5 and _rel(theta, fit.theta) < 1e-5
    assert abs(dp["shape"] / fit.dpars["shape"] - 1) < 1e-5
    se = np.sqrt(np.diag(np.linalg.inv(res.hessian)))[: len(beta)]
    assert _rel(se, fit.se) < 1e-4
