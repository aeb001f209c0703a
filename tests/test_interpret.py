"""After the fit (issue 18): hypotheses, R², predictions, comparisons, slopes.

References (``data/make_interpret_refs.R``): ``interpret_reml.json``, lme4 1.1-31 fits with Wald tests,
performance 0.10.2's ``r2_nakagawa`` and delta-method SEs computed by hand (analytic Jacobians; the REML
side must agree to 1e-4 relative); ``brms_interpret_<id>.json``, brms 2.18 fits with the same priors as
the bayesmer fits here, 4 x 1000 draws: ``hypothesis()``, ``bayes_R2()`` and per-draw averages of
``posterior_linpred(transform = TRUE)``, with their Monte Carlo SEs (the posterior side must agree
within 4 combined Monte Carlo SEs).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer import interpret
from bayesmer.interpret import InterpretError, parse_hypothesis

DATA = Path(__file__).parent / "data"
REML = json.loads((DATA / "interpret_reml.json").read_text())


def _brms(id_):
    return json.loads((DATA / f"brms_interpret_{id_}.json").read_text())


def _fit(formula, data, priors, **kw):
    kw = {"draws": 500, "tune": 500, "chains": 2, "seed": 18, "progress": False} | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(formula, data, priors, **kw)


@pytest.fixture(scope="module")
def sleep_fit():
    return _fit("Reaction ~ Days + (Days | Subject)", bayesmer.datasets.load("sleepstudy"),
                {"fixed": "Normal(0, 500)", "sd": "HalfCauchy(50)", "sigma": "HalfCauchy(50)", "corr": "LKJ(2)"})


@pytest.fixture(scope="module")
def cbpp_fit():
    cbpp = pd.read_csv(DATA / "glmer_cbpp.csv", dtype={"herd": str, "period": str})
    return _fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                {"fixed": "Normal(0, 2.5)", "sd": "HalfCauchy(1)"}, family="binomial")


def _close(a, b, rel=1e-4):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rel)


def _within_mc(mean, sd, ess, ref, k=4.0):
    """|posterior mean - brms mean| within k combined Monte Carlo SEs."""
    mean, sd, ess = (np.asarray(x, float) for x in (mean, sd, ess))
    ref_mean = np.array([r["mean"] for r in ref])
    ref_mcse = np.array([r["mcse_mean"] for r in ref])
    tol = k * np.sqrt((sd / np.sqrt(ess)) ** 2 + ref_mcse**2)
    assert np.all(np.abs(mean - ref_mean) < tol), (mean, ref_mean, tol)
    ref_sd = np.array([r["sd"] for r in ref])
    np.testing.assert_allclose(sd, ref_sd, rtol=0.2)


# ---------------------------------------------------------------- hypothesis
def test_parse_hypothesis_linear_forms():
    names = ["(Intercept)", "period2", "period3", "period4"]
    h = parse_hypothesis("Intercept + period4 < -2", names)
    assert h.sign == "<" and h.const == 2.0 and list(h.coef) == [1, 0, 0, 1]
    assert h.label == "(Intercept+period4)-(-2) < 0"
    h = parse_hypothesis("2 * (period2 - period3) / 4 = `(Intercept)`", names)
    np.testing.assert_allclose(h.coef, [-1, 0.5, -0.5, 0])
    assert parse_hypothesis("period2 > 0", names).label == "(period2) > 0"


@pytest.mark.parametrize("text, msg", [
    ("Days", "exactly one of"),
    ("Days > 1 > 0", "exactly one of"),
    ("Dayz > 10", "unknown name 'Dayz'"),
    ("Days * Days > 10", "product of two fixed effects"),
    ("10 / Days > 1", "dividing by a fixed effect"),
    ("(Days > 10", "not closed"),
    ("Days >= 10", "exactly one of"),
    ("__import__('os') > 1", "unknown name"),
])
def test_parse_hypothesis_errors_name_the_culprit(text, msg):
    with pytest.raises(InterpretError, match=msg):
        parse_hypothesis(text, ["(Intercept)", "Days"])


def test_hypothesis_reproduces_brms_on_its_own_draws(sleep_fit, monkeypatch):
    """brms's hypothesis() table from brms's draws: exact for the inequalities, the "=" ratio within
    the difference between R's binned density and a direct kernel sum (and brms's sampled prior)."""
    ref = _brms("sleepstudy")
    draws = np.column_stack([ref["b_Intercept"], ref["b_Days"]])

    class Fake:  # the brms draws in place of the fit's posterior
        priors, reml, glmm = sleep_fit.priors, sleep_fit.reml, None
        design = sleep_fit.design

    monkeypatch.setattr(interpret, "_beta_draws", lambda fit: draws)
    table = interpret.hypothesis(Fake(), ref["hypotheses"])
    for (_, row), r in zip(table.iterrows(), ref["hypothesis"]):
        assert row["Hypothesis"] == r["Hypothesis"]
        _close(row[["Estimate", "Est.Error", "CI.Lower", "CI.Upper"]], [r[k] for k in
               ("Estimate", "Est.Error", "CI.Lower", "CI.Upper")], 1e-10)
        assert row["Star"] == r["Star"]
        if "=" in r["Hypothesis"]:
            # brms smooths 4000 prior draws: a few per cent
            _close(row["Evid.Ratio"], r["Evid.Ratio"], 0.1)
        else:
            _close(row[["Evid.Ratio", "Post.Prob"]], [r["Evid.Ratio"], r["Post.Prob"]], 1e-10)


@pytest.mark.parametrize("case", ["sleep", "cbpp"])
def test_hypothesis_matches_brms_and_wald(case, sleep_fit, cbpp_fit):
    fit, ref, wald = (sleep_fit, _brms("sleepstudy"), REML["sleep_hyp"]) if case == "sleep" else (
        cbpp_fit, _brms("cbpp"), REML["cbpp_hyp"])
    table = fit.hypothesis(ref["hypotheses"])
    assert list(table.columns[:8]) == ["Hypothesis", "Estimate", "Est.Error", "CI.Lower", "CI.Upper",
                                       "Evid.Ratio", "Post.Prob", "Star"]
    for (_, row), r, text in zip(table.iterrows(), ref["hypothesis"], ref["hypotheses"]):
        assert row["Hypothesis"] == r["Hypothesis"]
        x = fit.draws("beta") @ parse_hypothesis(text, fit.reml.fixef.index).coef
        import arviz_stats as azs
        ess = float(azs.ess(x.reshape(2, -1), chain_axis=0, draw_axis=1, method="bulk"))
        tol = 4 * np.hypot(row["Est.Error"] / np.sqrt(ess), r["Est.Error"] / np.sqrt(2000))
        assert abs(row["Estimate"] - r["Estimate"]) < tol
        _close(row["Est.Error"], r["Est.Error"], 0.15)
        if "=" not in text:
            assert abs(row["Post.Prob"] - r["Post.Prob"]) < 0.05
        w = wald[text]
        _close(row[["reml", "reml_se", "z"]], [w["estimate"], w["se"], w["z"]])
    from scipy import stats
    first = table.iloc[0]
    z = wald[ref["hypotheses"][0]]["z"]
    # one-sided p against the hypothesis's complement
    expect = stats.norm.sf(z) if ">" in ref["hypotheses"][0] else stats.norm.cdf(z)
    _close(first["p"], expect)


# ---------------------------------------------------------------- R²
@pytest.mark.parametrize("case", ["sleep", "cbpp"])
def test_r2_matches_brms_and_nakagawa(case, sleep_fit, cbpp_fit):
    fit, ref, nak = (sleep_fit, _brms("sleepstudy"), REML["sleep_r2"]) if case == "sleep" else (
        cbpp_fit, _brms("cbpp"), REML["cbpp_r2"])
    t = fit.r2()
    _close(t.loc[["conditional", "marginal"], "reml"], [nak["conditional"], nak["marginal"]])
    _within_mc(t["mean"], t["sd"], t["ess_bulk"], [ref["r2_conditional"], ref["r2_marginal"]])
    assert list(t.columns) == ["reml", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk"]
    assert "hdi_2.5%" in fit.r2(prob=0.95).columns


# ---------------------------------------------------------------- predictions (Gaussian)
def test_sleep_predictions_reml_and_posterior(sleep_fit):
    ref, post = REML, _brms("sleepstudy")
    avg = sleep_fit.predictions(by=True)
    _close(avg[["reml", "reml_se"]].iloc[0], [ref["sleep_avg"]["estimate"], ref["sleep_avg"]["se"]])
    _within_mc(avg["mean"], avg["sd"], avg["ess_bulk"], [post["avg_conditional"]])
    by = sleep_fit.predictions(by="Days")
    assert list(by["Days"]) == ref["sleep_by_days"]["Days"]
    _close(by["reml"], ref["sleep_by_days"]["estimate"])
    _close(by["reml_se"], ref["sleep_by_days"]["se"])
    _within_mc(by["mean"], by["sd"], by["ess_bulk"], post["by_days_conditional"])
    grid = bayesmer.datagrid(sleep_fit, Days=list(range(10)))
    zero = sleep_fit.predictions(grid, include_random=False)
    _close(zero["reml"], ref["sleep_grid_zero"]["estimate"])
    _close(zero["reml_se"], ref["sleep_grid_zero"]["se"])
    _within_mc(zero["mean"], zero["sd"], zero["ess_bulk"], post["grid_zero"])
    # identity link: integrating over N(0, Sigma) is the population level, exactly
    integ = sleep_fit.predictions(grid, include_random="integrated")
    _close(integ[["reml", "mean"]], zero[["reml", "mean"]], 1e-12)


def test_sleep_slopes_and_comparisons(sleep_fit):
    s = sleep_fit.slopes("Days", by=True)
    _close(s[["reml", "reml_se"]].iloc[0], [REML["sleep_slope"]["estimate"], REML["sleep_slope"]["se"]])
    c = sleep_fit.comparisons("Days", by=True)
    _close(c[["reml", "reml_se"]].iloc[0], [REML["sleep_slope"]["estimate"], REML["sleep_slope"]["se"]])
    assert c["contrast"].iloc[0] == "+1"
    # the posterior slope averaged over subjects is the mean of b_Days + b_Subject,Days: the draws say so
    b = sleep_fit.draws("beta")[:, 1] + sleep_fit.draws(sleep_fit.built.b["Subject"])[:, :, 1].mean(1)
    _close(s["mean"].iloc[0], b.mean(), 1e-6)


# ---------------------------------------------------------------- predictions (binomial)
def test_cbpp_unit_predictions_reml(cbpp_fit):
    t = cbpp_fit.predictions()
    assert len(t) == 56 and "period" in t.columns
    _close(t["reml"][:6], REML["cbpp_unit"]["estimate"])
    _close(t["reml_se"][:6], REML["cbpp_unit"]["se"])


@pytest.mark.parametrize("mode", ["conditional", "zero", "integrated"])
def test_cbpp_by_period_and_contrasts(cbpp_fit, mode):
    ref = REML["cbpp_by_period"][mode]
    t = cbpp_fit.predictions(by="period", include_random=mode)
    assert list(t["period"]) == ref["period"]
    _close(t["reml"], ref["estimate"])
    _close(t["reml_se"], ref["se"])
    post = _brms("cbpp")["modes"][mode]
    _within_mc(t["mean"], t["sd"], t["ess_bulk"], post["by_period"])
    c = cbpp_fit.comparisons("period", by=True, include_random=mode)
    ref = REML["cbpp_contrast_period"][mode]
    assert list(c["contrast"]) == ref["contrast"]
    _close(c["reml"], ref["estimate"])
    _close(c["reml_se"], ref["se"])
    _within_mc(c["mean"], c["sd"], c["ess_bulk"], post["contrast_period"])


def test_cbpp_three_meanings_differ_and_integrated_is_monte_carlo(cbpp_fit):
    """On the logit scale the three answers differ; the integrated one is the mean over u ~ N(0, s^2)."""
    grid = bayesmer.datagrid(cbpp_fit, period=["1", "2", "3", "4"])
    est = {m: cbpp_fit.predictions(grid, include_random=m)["reml"].to_numpy() for m in
           ("conditional", "zero", "integrated")}
    assert np.all(np.abs(est["integrated"] - est["zero"]) > 5e-3)
    assert np.all(np.abs(est["conditional"] - est["zero"]) > 1e-4)
    b = cbpp_fit.reml.fixef.to_numpy()
    s = np.sqrt(cbpp_fit.reml.cov_matrices()["herd"][0, 0])
    u = np.random.default_rng(1).standard_normal(2_000_000) * s
    eta = b[0] + np.r_[0, b[1:]]
    brute = np.array([np.mean(1 / (1 + np.exp(-(e + u)))) for e in eta])
    np.testing.assert_allclose(est["integrated"], brute, atol=4 * 0.5 / np.sqrt(u.size))
    # and the posterior side, per draw, over the draws of the SD
    post = cbpp_fit.predictions(grid, include_random="integrated")["mean"].to_numpy()
    beta = cbpp_fit.draws("beta")
    sd = cbpp_fit.draws(cbpp_fit.built.sd["herd"])[:, 0]
    z = np.random.default_rng(2).standard_normal((beta.shape[0], 2000))
    etas = beta[:, [0]] + np.c_[np.zeros(len(beta)), beta[:, 1:]]
    mc = np.array([np.mean(1 / (1 + np.exp(-(etas[:, [j]] + sd[:, None] * z)))) for j in range(4)])
    np.testing.assert_allclose(post, mc, atol=2e-3)


# ---------------------------------------------------------------- Poisson slope (REML side)
def test_poisson_slopes_and_comparisons_reml():
    pois = pd.read_csv(DATA / "glmer_poisson_sim.csv")
    fit = _fit("y ~ x + (1 + x | g)", pois, None, family="poisson", draws=100, tune=200)
    _close(fit.reml.fixef, REML["pois_fit"]["fixef"])
    s = fit.slopes("x", by=True)
    _close(s[["reml", "reml_se"]].iloc[0], [REML["pois_slope"]["estimate"], REML["pois_slope"]["se"]])
    c = fit.comparisons("x", by=True)
    _close(c[["reml", "reml_se"]].iloc[0], [REML["pois_comparison"]["estimate"], REML["pois_comparison"]["se"]])
    # Nakagawa's R² with the Poisson's lognormal variance at the null model's mean
    _close(fit.r2()["reml"], [REML["pois_r2"]["conditional"], REML["pois_r2"]["marginal"]])


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_culprit(cbpp_fit):
    with pytest.raises(InterpretError, match="include_random"):
        cbpp_fit.predictions(include_random="sometimes")
    with pytest.raises(InterpretError, match="'herd2'"):
        cbpp_fit.predictions(by="herd2")
    with pytest.raises(InterpretError, match="not numeric"):
        cbpp_fit.slopes("period")
    with pytest.raises(InterpretError, match="no level '9'"):
        cbpp_fit.comparisons({"period": ("1", "9")})
    with pytest.raises(InterpretError, match="kind"):
        cbpp_fit.predictions(kind="response")
    with pytest.raises(InterpretError, match="datagrid: no column 'Days'"):
        bayesmer.datagrid(cbpp_fit, Days=[1])


# ---------------------------------------------------------------- brms's prior spellings
def test_brms_prior_spellings_map_to_slots():
    from bayesmer.priors import (LKJ, Exponential, HalfCauchy, HalfNormal, HalfStudentT, Normal, PriorError,
                                 StudentT, resolve_priors)

    d = bayesmer.build_design("Reaction ~ Days + (Days | Subject)", bayesmer.datasets.load("sleepstudy"))
    ps = resolve_priors(d, {"b": "normal(0, 10)", "Intercept": "cauchy(250, 50)", "sd": "cauchy(0, 5)",
                            "sd(Days|Subject)": "student_t(3, 0, 10)", "sigma": "exponential(1)",
                            "cor": "lkj(2)"})
    assert ps.fixed_prior("Days") == Normal(0, 10)
    assert ps.fixed_prior("(Intercept)") == StudentT(1, 250, 50)
    assert ps.sd_priors("Subject") == (HalfCauchy(5), HalfStudentT(3, 10))
    assert ps.sigma == Exponential(1) and ps.corr_prior("Subject") == LKJ(2)
    assert resolve_priors(d, {"sd": "normal(0, 3)"}).sd_priors("Subject") == (HalfNormal(3),) * 2
    assert str(bayesmer.parse_prior("student_t(3, 0, 10)")) == "student_t(3, 0, 10)"
    for bad, msg in [({"sd": "normal(1, 5)"}, "location 1"), ({"b": "exponential(1)"}, "fixed effect"),
                     ({"sd": "gamma(2, 0.1)"}, "no Gamma prior"), ({"cor": "normal(0, 1)"}, "correlation"),
                     ({"sd": "normal(0)"}, "takes 2 parameter")]:
        with pytest.raises(PriorError, match=msg):
            resolve_priors(d, bad)


# ---------------------------------------------------------------- prob= and the posterior predictive
def test_prob_intervals_in_tables(sleep_fit):
    import arviz_stats as azs

    s = sleep_fit.summary(prob=0.95)
    assert list(s.columns[4:6]) == ["hdi_2.5%", "hdi_97.5%"]
    assert list(sleep_fit.summary().columns[4:6]) == ["hdi_3%", "hdi_97%"]
    days = sleep_fit.draws("beta")[:, 1]
    lo, hi = np.asarray(azs.hdi(days, prob=0.95))
    _close(s.loc[("fixed", "", "Days"), ["hdi_2.5%", "hdi_97.5%"]], [lo, hi], 1e-12)
    f = sleep_fit.fixef(prob=0.9)
    _close(f.loc["Days", ["hdi_5%", "hdi_95%"]], np.asarray(azs.hdi(days, prob=0.9)), 1e-12)
    r = sleep_fit.ranef(prob=0.9)["Subject"]
    b = sleep_fit.draws(sleep_fit.built.b["Subject"])
    _close(r.loc[(sleep_fit.design.terms[0].levels[2], "Days"), "mean"], b[:, 2, 1].mean(), 1e-12)
    v = sleep_fit.varcorr(prob=0.9)
    sig = sleep_fit.draws(sleep_fit.built.sigma)
    row = v[v["group"] == "Residual"].iloc[0]
    _close([row["value"], row["hdi_5%"], row["hdi_95%"]], [sig.mean(), *azs.hdi(sig, prob=0.9)], 1e-12)
    corr = v[v["kind"] == "corr"].iloc[0]
    c = sleep_fit.draws(sleep_fit.built.corr["Subject"])[:, 0]
    _close([corr["value"], corr["hdi_5%"]], [c.mean(), azs.hdi(c, prob=0.9)[0]], 1e-12)
    with pytest.raises(InterpretError, match="prob"):
        sleep_fit.fixef(prob=1.5)


def test_posterior_predictive_added_without_mutation(sleep_fit, cbpp_fit):
    assert "posterior_predictive" not in sleep_fit.idata.children
    new = sleep_fit.posterior_predictive(seed=3)
    assert "posterior_predictive" not in sleep_fit.idata.children
    yrep = new.idata["posterior_predictive"]["Reaction"]
    assert yrep.dims == ("chain", "draw", "obs") and yrep.shape[2] == 180
    # the replicated data's mean per row is the posterior mean of mu (within noise / sqrt(S))
    mu = sleep_fit.predict(summary=True)["mean"].to_numpy()
    sigma = sleep_fit.draws("sigma").mean()
    assert np.all(np.abs(yrep.mean(("chain", "draw")).to_numpy() - mu) < 5 * sigma / np.sqrt(1000))
    counts = cbpp_fit.posterior_predictive(seed=3).idata["posterior_predictive"]
    y = counts[list(counts.data_vars)[0]].to_numpy()
    assert np.all(y == np.round(y)) and np.all(y <= cbpp_fit.glmm.weights)


# ---------------------------------------------------------------- lmerTest's Satterthwaite, anova, Wald intervals
LMERTEST = json.loads((DATA / "interpret_lmertest.json").read_text())


def test_satterthwaite_matches_lmertest():
    from bayesmer.lmer import satterthwaite

    sleep = bayesmer.datasets.load("sleepstudy")
    m = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    for fit, ref in [(m, LMERTEST["sleep"]),
                     (bayesmer.reml("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmer.datasets.load("penicillin")),
                      LMERTEST["penicillin"])]:
        t = fit.satterthwaite()
        assert list(t.index) == list(np.atleast_1d(ref["names"]))
        for col, key in [("Estimate", "estimate"), ("Std. Error", "se"), ("df", "df"), ("t value", "t")]:
            _close(t[col], np.atleast_1d(ref[key]))
        # p-values near 1e-7 move a hundred times faster than t: compared on the log scale
        _close(np.log(t["Pr(>|t|)"]), np.log(np.atleast_1d(ref["p"])))
    c = satterthwaite(m, LMERTEST["sleep_contrast"]["L"]).iloc[0]
    ref = LMERTEST["sleep_contrast"]
    _close([c["Estimate"], c["Std. Error"], c["df"], c["t value"]], [ref["estimate"], ref["se"], ref["df"], ref["t"]])
    with pytest.raises(ValueError, match="L needs 2 columns"):
        satterthwaite(m, [1, 2, 3])


def test_anova_and_wald_intervals_match_lme4():
    sleep = bayesmer.datasets.load("sleepstudy")
    m0 = bayesmer.reml("Reaction ~ Days + (1 | Subject)", sleep)
    m1 = bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep)
    a = bayesmer.anova(m1, m0)  # ordered by npar, as lme4
    ref = LMERTEST["anova"]
    assert list(a["npar"]) == ref["npar"]
    for col, key in [("AIC", "AIC"), ("BIC", "BIC"), ("logLik", "logLik"), ("deviance", "deviance")]:
        _close(a[col], ref[key], 1e-6)
    _close([a["Chisq"].iloc[1], a["Pr(>Chisq)"].iloc[1]], [ref["Chisq"][1], ref["p"][1]], 1e-4)
    ci = m1.confint(parm="beta_")  # the fixed effects' rows (tests/test_confint.py: the variance parameters')
    ref = LMERTEST["confint_wald"]
    _close(ci["2.5 %"], ref["lower"][-2:])
    _close(ci["97.5 %"], ref["upper"][-2:])
    prof = m1.confint(method="profile", parm="beta_")
    ref = LMERTEST["confint_profile"]
    _close(prof["2.5 %"], ref["lower"][-2:])
    _close(prof["97.5 %"], ref["upper"][-2:])
    with pytest.raises(ValueError, match="'Wald', 'profile' or 'boot'"):
        m1.confint(method="bca")
