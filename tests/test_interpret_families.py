"""predictions, comparisons and r2 on the families of bayesmer.families, against hand formulas.

Each expected value is the family's definition applied to the posterior's draws
(``fit.idata.posterior``: beta, the groups' effects, the dpars) or to the point
fit's estimates, with the design built here from the data columns, not read
from the fit's design.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.special as sc
from conftest import quiet_fit

import bayesmer


def _flat(post, name):
    """A posterior variable as (chains x draws, ...), chain-major (the tables' order)."""
    v = post[name].transpose("chain", "draw", ...).to_numpy()
    return v.reshape(-1, *v.shape[2:])


def _effects(post, name, levels):
    """The draws' intercept effects of the groups ``levels`` (one per row): (S, n)."""
    b = post[name].isel({post[name].dims[-1]: 0})
    lv = list(map(str, b[b.dims[-1]].to_numpy()))
    b = _flat(post.assign(_b=b), "_b")
    return b[:, [lv.index(str(x)) for x in levels]]


def _reml_effects(fit, term, levels):
    r = fit.reml.ranef() if callable(fit.reml.ranef) else fit.reml.ranef
    tab = r[term]
    tab.index = tab.index.map(str)
    return tab.iloc[:, 0].reindex(list(map(str, levels))).to_numpy()


def _fixef(fit):
    f = fit.reml.fixef() if callable(fit.reml.fixef) else fit.reml.fixef
    return pd.Series(f)


@pytest.fixture(scope="module")
def nb():
    d = bayesmer.datasets.load("epilepsy")
    return d, quiet_fit("count ~ zAge + zBase * Trt + (1 | patient)", d, family="negbinomial", draws=100, tune=150)


@pytest.fixture(scope="module")
def zip_():
    d = bayesmer.datasets.load("salamanders")
    return d, quiet_fit("count ~ mined + (1 | site)", d, family="zero_inflated_poisson", draws=100, tune=150)


@pytest.fixture(scope="module")
def cum():
    d = bayesmer.datasets.load("wine")
    return d, quiet_fit("rating ~ temp + contact + (1 | judge)", d, family="cumulative", draws=100, tune=150)


@pytest.fixture(scope="module")
def lnorm():
    d = bayesmer.datasets.load("sleepstudy")
    return d, quiet_fit("Reaction ~ Days + (1 | Subject)", d, family="lognormal", draws=100, tune=150)


def _nb_X(d):
    trt = (d["Trt"].astype(str) == "1").to_numpy(float)
    return np.column_stack([np.ones(len(d)), d["zAge"], d["zBase"], trt, d["zBase"] * trt])


def _cum_eta_fixed(d):
    return np.column_stack([(d["temp"].astype(str) == "warm").to_numpy(float),
                            (d["contact"].astype(str) == "yes").to_numpy(float)])


def _cum_probs(eta, tau):
    """P(Y = k), k = 1..K, of the cumulative logit: (S, n, K)."""
    cdf = sc.expit(tau[:, None, :] - eta[:, :, None])
    S, n, _ = cdf.shape
    return np.diff(np.concatenate([np.zeros((S, n, 1)), cdf, np.ones((S, n, 1))], axis=2), axis=2)


def test_negbinomial_mean_is_exp_eta_on_both_sides(nb):
    d, fit = nb
    post = fit.idata.posterior
    X = _nb_X(d)
    eta = _flat(post, "beta") @ X.T + _effects(post, "b_patient", d["patient"])
    t = fit.predictions()
    np.testing.assert_allclose(t["mean"], np.exp(eta).mean(0), rtol=1e-10)
    # the point side at the estimates; the population level (include_random=False)
    beta = _fixef(fit).to_numpy()
    t0 = fit.predictions(include_random=False)
    np.testing.assert_allclose(t0["reml"], np.exp(X @ beta), rtol=1e-10)
    tc = fit.predictions(by=True)
    expect = np.exp(X @ beta + _reml_effects(fit, "patient", d["patient"])).mean()
    np.testing.assert_allclose(tc["reml"], expect, rtol=1e-10)
    assert np.all(t["reml_se"] > 0)
    # kind="link" is eta itself
    np.testing.assert_allclose(fit.predictions(kind="link")["mean"], eta.mean(0), rtol=1e-10, atol=1e-12)


def test_zero_inflated_poisson_mean_scales_by_one_minus_zi(zip_):
    d, fit = zip_
    post = fit.idata.posterior
    X = np.column_stack([np.ones(len(d)), (d["mined"].astype(str) == "no").to_numpy(float)])
    zi = _flat(post, "zi")
    eta = _flat(post, "beta") @ X.T + _effects(post, "b_site", d["site"])
    t = fit.predictions()
    np.testing.assert_allclose(t["mean"], ((1 - zi[:, None]) * np.exp(eta)).mean(0), rtol=1e-10)
    zi_hat = float(fit.reml.dpars["zi"])
    expect = (1 - zi_hat) * np.exp(X @ _fixef(fit).to_numpy() + _reml_effects(fit, "site", d["site"]))
    np.testing.assert_allclose(t["reml"], expect, rtol=1e-10)
    # a comparison is the difference of those means, row by row, averaged
    c = fit.comparisons("mined", by=True)
    eta_no = _flat(post, "beta")[:, [0]] + _flat(post, "beta")[:, [1]] + _effects(post, "b_site", d["site"])
    eta_yes = _flat(post, "beta")[:, [0]] + _effects(post, "b_site", d["site"])
    diff = ((1 - zi[:, None]) * (np.exp(eta_no) - np.exp(eta_yes))).mean(1)
    np.testing.assert_allclose(c["mean"], diff.mean(), rtol=1e-10)


def test_cumulative_mean_is_expected_category_and_probs(cum):
    d, fit = cum
    post = fit.idata.posterior
    tau = _flat(post, "Intercept")
    eta = _flat(post, "beta") @ _cum_eta_fixed(d).T + _effects(post, "b_judge", d["judge"])
    p = _cum_probs(eta, tau)
    K = p.shape[2]
    t = fit.predictions()
    np.testing.assert_allclose(t["mean"], (p @ np.arange(1, K + 1)).mean(0), rtol=1e-10)
    # kind="probs": a block per category, each the by-groups' average probability
    tp = fit.predictions(by="temp", kind="probs")
    assert list(tp["group"].astype(str)) == [str(k) for k in fit.glmm.levels for _ in range(2)]
    warm = (d["temp"].astype(str) == "warm").to_numpy()
    for k in range(K):
        got = tp[tp["group"].astype(str) == str(fit.glmm.levels[k])].set_index("temp")["mean"]
        np.testing.assert_allclose(got["warm"], p[:, warm, k].mean(1).mean(), rtol=1e-10)
        np.testing.assert_allclose(got["cold"], p[:, ~warm, k].mean(1).mean(), rtol=1e-10)
    np.testing.assert_allclose(tp.groupby("temp", observed=True)["reml"].sum(), 1.0, atol=1e-12)
    # a comparison of probabilities: per category the warm-minus-cold difference, summing to zero
    cp = fit.comparisons("temp", by=True, kind="probs")
    assert len(cp) == K
    np.testing.assert_allclose(cp["mean"].sum(), 0.0, atol=1e-12)
    eta_w = eta - _flat(post, "beta")[:, [0]] * warm + _flat(post, "beta")[:, [0]]
    eta_c = eta - _flat(post, "beta")[:, [0]] * warm
    np.testing.assert_allclose(cp["mean"], (_cum_probs(eta_w, tau) - _cum_probs(eta_c, tau)).mean(1).mean(0),
                               rtol=1e-10)
    # the point side: the estimated thresholds and fixed effects, the judges' modes
    tau_hat = np.array([fit.reml.dpars[f"Intercept[{k + 1}]"] for k in range(K - 1)])[None]
    eta_hat = (_cum_eta_fixed(d) @ _fixef(fit).to_numpy() + _reml_effects(fit, "judge", d["judge"]))[None]
    np.testing.assert_allclose(t["reml"], (_cum_probs(eta_hat, tau_hat) @ np.arange(1, K + 1))[0], rtol=1e-10)


def test_cumulative_integrated_equals_monte_carlo(cum):
    """include_random="integrated": E over b ~ N(0, sd^2) of E[Y], by brute-force Monte Carlo."""
    d, fit = cum
    grid = bayesmer.datagrid(fit, temp=["cold", "warm"], contact=["no"])
    t = fit.predictions(grid, include_random="integrated")
    rng = np.random.default_rng(5)
    K = len(fit.glmm.levels)
    sd = float(np.sqrt(fit.reml.cov_matrices()["judge"][0, 0]))
    tau_hat = np.array([fit.reml.dpars[f"Intercept[{k + 1}]"] for k in range(K - 1)])[None]
    eta = (_cum_eta_fixed(grid) @ _fixef(fit).to_numpy())[:, None] + sd * rng.standard_normal((1, 200_000))
    ey = np.stack([_cum_probs(e[None], tau_hat)[0] @ np.arange(1, K + 1) for e in eta])  # (2, N)
    mc, se = ey.mean(1), ey.std(1) / np.sqrt(ey.shape[1])
    assert np.all(np.abs(t["reml"].to_numpy() - mc) < 4 * se + 1e-12), (t["reml"].to_numpy(), mc, se)
    # and it differs from the population level by more than the MC error (the test can fail)
    t0 = fit.predictions(grid, include_random=False)
    assert np.all(np.abs(t0["reml"].to_numpy() - mc) > 10 * se)
    # the posterior side, draw by draw, each with its own thresholds and sd
    post = fit.idata.posterior
    tau = _flat(post, "Intercept")
    sds = _flat(post, "sd_judge").reshape(len(tau), -1)[:, 0]
    eta_s = _flat(post, "beta") @ _cum_eta_fixed(grid).T  # (S, 2)
    # independent normal draws per posterior draw: the MC errors average out over the draws
    for j in range(2):
        e = eta_s[:, j:j + 1] + sds[:, None] * rng.standard_normal((len(tau), 2000))
        ey = _cum_probs(e, tau) @ np.arange(1, K + 1)  # (S, 2000)
        assert abs(t["mean"].iloc[j] - ey.mean()) < 4 * ey.std() / np.sqrt(ey.size), (t["mean"].iloc[j], ey.mean())


def test_lognormal_mean_is_on_the_y_scale(lnorm):
    d, fit = lnorm
    post = fit.idata.posterior
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    s = _flat(post, "sigma")
    eta = _flat(post, "beta") @ X.T + _effects(post, "b_Subject", d["Subject"])
    t = fit.predictions()
    np.testing.assert_allclose(t["mean"], np.exp(eta + s[:, None] ** 2 / 2).mean(0), rtol=1e-10)
    expect = np.exp(X @ _fixef(fit).to_numpy() + _reml_effects(fit, "Subject", d["Subject"])
                    + float(fit.reml.sigma) ** 2 / 2)
    np.testing.assert_allclose(t["reml"], expect, rtol=1e-10)
    np.testing.assert_allclose(fit.predictions(kind="link")["mean"], eta.mean(0), rtol=1e-10)
    # the slope in Days of exp(eta + sigma^2/2) is beta_Days times that mean (central differences)
    mu = np.exp(eta + s[:, None] ** 2 / 2)
    sl = fit.slopes("Days", by=True)
    np.testing.assert_allclose(sl["mean"], (_flat(post, "beta")[:, 1] * mu.mean(1)).mean(), rtol=1e-6)
    # the integrated mean of a lognormal has a closed form: exp(eta + (sd^2 + sigma^2) / 2)
    grid = bayesmer.datagrid(fit, Days=[0, 9])
    ti = fit.predictions(grid, include_random="integrated")
    sd2 = float(fit.reml.cov_matrices()["Subject"][0, 0])
    Xg = np.column_stack([np.ones(2), [0, 9]])
    np.testing.assert_allclose(ti["reml"], np.exp(Xg @ _fixef(fit).to_numpy() + (sd2 + fit.reml.sigma**2) / 2),
                               rtol=1e-8)


def _r2_hand(y, mu):
    vm, ve = mu.var(1, ddof=1), (y - mu).var(1, ddof=1)
    return vm / (vm + ve)


def test_r2_is_brms_bayes_r2_from_the_draws(zip_, cum, lnorm):
    d, fit = zip_
    post = fit.idata.posterior
    X = np.column_stack([np.ones(len(d)), (d["mined"].astype(str) == "no").to_numpy(float)])
    zi = _flat(post, "zi")[:, None]
    eta0 = _flat(post, "beta") @ X.T
    y = d["count"].to_numpy(float)
    r = fit.r2()
    np.testing.assert_allclose(r.loc["conditional", "mean"],
                               _r2_hand(y, (1 - zi) * np.exp(eta0 + _effects(post, "b_site", d["site"]))).mean(),
                               rtol=1e-10)
    np.testing.assert_allclose(r.loc["marginal", "mean"], _r2_hand(y, (1 - zi) * np.exp(eta0)).mean(), rtol=1e-10)
    assert r["reml"].isna().all()  # no Nakagawa R² for this family here: NaN, not a guess
    assert ((r["mean"] > 0) & (r["mean"] < 1)).all()

    d, fit = cum
    post = fit.idata.posterior
    eta = _flat(post, "beta") @ _cum_eta_fixed(d).T + _effects(post, "b_judge", d["judge"])
    p = _cum_probs(eta, _flat(post, "Intercept"))
    ycat = d["rating"].cat.codes.to_numpy(float) + 1 if isinstance(d["rating"].dtype, pd.CategoricalDtype) \
        else d["rating"].to_numpy(float)
    np.testing.assert_allclose(fit.r2().loc["conditional", "mean"],
                               _r2_hand(ycat, p @ np.arange(1, p.shape[2] + 1)).mean(), rtol=1e-10)

    d, fit = lnorm
    post = fit.idata.posterior
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    eta = _flat(post, "beta") @ X.T + _effects(post, "b_Subject", d["Subject"])
    mu = np.exp(eta + _flat(post, "sigma")[:, None] ** 2 / 2)
    r = fit.r2()
    np.testing.assert_allclose(r.loc["conditional", "mean"], _r2_hand(d["Reaction"].to_numpy(float), mu).mean(),
                               rtol=1e-10)
    assert ((r["mean"] > 0) & (r["mean"] < 1)).all()
    assert np.isfinite(r["reml"]).all()  # the Gaussian model of log y has Nakagawa's R²


def test_probs_only_for_cumulative(nb):
    with pytest.raises(bayesmer.interpret.InterpretError, match="probs"):
        nb[1].predictions(kind="probs")


def test_hypothesis_on_dpars_by_their_names(nb, cum):
    fit = nb[1]
    shape = _flat(fit.idata.posterior, "shape")
    h = fit.hypothesis(["shape > 5", "shape - 2 * zBase = 0"])
    np.testing.assert_allclose(h.loc[0, "Estimate"], (shape - 5).mean(), rtol=1e-12)
    np.testing.assert_allclose(h.loc[0, "Post.Prob"], np.mean(shape > 5), rtol=1e-12)
    np.testing.assert_allclose(h.loc[0, "reml"], fit.reml.dpars["shape"] - 5, rtol=1e-12)
    np.testing.assert_allclose(h.loc[0, "reml_se"], fit.reml.dpars_se["shape"], rtol=1e-12)
    zb = _flat(fit.idata.posterior, "beta")[:, 2]
    np.testing.assert_allclose(h.loc[1, "Estimate"], (shape - 2 * zb).mean(), rtol=1e-12)
    assert np.isnan(h.loc[1, "Evid.Ratio"])
    fit = cum[1]
    tau = _flat(fit.idata.posterior, "Intercept")
    h = fit.hypothesis("Intercept[2] - Intercept[1] > 2")
    np.testing.assert_allclose(h.loc[0, "Estimate"], (tau[:, 1] - tau[:, 0] - 2).mean(), rtol=1e-12)


def test_cumulative_reml_se_is_emmeans_delta_method(cum):
    # emmeans 1.8.4-1, mode = "mean.class" on ordinal::clmm (tests/data/make_emmeans_clmm_refs.R): the SE of
    # E[Y] varies the thresholds with beta; at temp=cold, contact=no (eta = 0) it is the thresholds' alone
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "emmeans_clmm_wine.json").read_text())
    _, fit = cum
    grid = pd.DataFrame({"temp": ref["temp"], "contact": ref["contact"]})
    table = fit.predictions(bayesmer.datagrid(fit, temp=["cold", "warm"], contact=["no", "yes"]),
                            include_random=False)
    got = grid.merge(table, on=["temp", "contact"], how="left")
    np.testing.assert_allclose(got["reml"], ref["mean_class"], rtol=1e-4)
    np.testing.assert_allclose(got["reml_se"], ref["SE"], rtol=1e-4)
