"""Prior sensitivity, LOO / leave-one-group-out, comparison and the notebook plots."""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmer
from bayesmer import checking, plots
from conftest import MODELS, SLEEP, quiet_fit

matplotlib.use("Agg")


def _fit(formula, data, **kw):
    # longer chains than conftest's default: the sensitivity checks read tails
    return quiet_fit(formula, data, **{"draws": 500, "tune": 500} | kw)


@pytest.fixture(scope="module")
def default_fit(sleep):
    return _fit(SLEEP, sleep)


@pytest.fixture(scope="module")
def ogorek():
    return bayesmer.datasets.load("ogorek")


def test_sensitivity_flags_nothing_under_default_priors(default_fit):
    table = checking.sensitivity(default_fit)
    assert list(table.columns) == ["prior", "likelihood", "diagnosis"]
    assert "sd(Days|Subject)" in table.index and "sigma" in table.index
    assert (table["diagnosis"] == "").all(), table
    assert (table["prior"] < 0.05).all()


def test_sensitivity_flags_a_strong_prior(sleep):
    fit = _fit(SLEEP, sleep, priors={"sd(Days|Subject)": "HalfNormal(0.5)"})
    table = checking.sensitivity(fit)
    row = table.loc["sd(Days|Subject)"]
    assert row["prior"] > 0.05 and row["diagnosis"] != "", table
    # the prior drags the slope SD far below REML's 5.92
    assert fit.summary().loc[("sd", "Subject", "Days"), "mean"] < 3


def test_sensitivity_needs_log_prior(default_fit):
    tree = default_fit.idata.copy()
    del tree["log_prior"]
    broken = type(default_fit)(**{**default_fit.__dict__, "idata": tree})
    with pytest.raises(checking.CheckError, match="no log_prior group"):
        checking.sensitivity(broken)


def test_group_loglik_is_the_exact_marginal(default_fit):
    ll = checking.group_loglik(default_fit)
    assert ll.shape[:2] == default_fit.idata["posterior"]["sigma"].shape and ll.shape[2] == 18
    # one draw, checked against the dense multivariate normal of each group
    post = default_fit.idata["posterior"]
    beta = post["beta"].values[0, 7]
    sigma = float(post["sigma"].values[0, 7])
    sd = post["sd_Subject"].values[0, 7]
    (r,) = post["corr_Subject"].values[0, 7]  # the one pair, "(Intercept),Days"
    psi = np.array([[1.0, r], [r, 1.0]]) * np.outer(sd, sd)
    d = default_fit.design
    t = d.terms[0]
    for j in (0, 5, 17):
        rows = t.codes == j
        Z, X, y = t.Z[rows], d.X[rows], d.y[rows]
        cov = Z @ psi @ Z.T + sigma**2 * np.eye(rows.sum())
        expect = stats.multivariate_normal(X @ beta, cov).logpdf(y)
        assert ll[0, 7, j] == pytest.approx(expect, rel=1e-9)


def test_loo_and_logo(default_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = checking.loo(default_fit)
        groups = checking.logo(default_fit)
    assert rows.n_data_points == 180 and groups.n_data_points == 18
    assert np.isfinite(rows.elpd) and np.isfinite(groups.elpd)
    # predicting a whole new subject is harder than one more of its days
    assert groups.elpd < rows.elpd


def test_logo_on_crossed_terms_needs_a_named_group():
    pen = bayesmer.datasets.load("penicillin")
    fit = _fit("diameter ~ 1 + (1 | plate) + (1 | sample)", pen, draws=100, tune=100, chains=1)
    with pytest.raises(checking.CheckError, match="crossed: name the factor"):
        checking.logo(fit)
    with pytest.raises(checking.CheckError, match="crossed"):
        checking.group_loglik(fit)
    with pytest.warns(UserWarning, match="conditional on the random effects"):
        res = checking.logo(fit, group="plate")
    assert res.n_data_points == 24


def test_group_loglik_exact_for_nested_terms():
    pastes = bayesmer.datasets.load("pastes")
    fit = _fit("strength ~ 1 + (1 | batch/cask)", pastes, draws=100, tune=100, chains=1)
    ll = checking.group_loglik(fit)
    assert ll.shape[2] == 10  # one per batch: casks nest within batches
    post = fit.idata["posterior"]
    beta = post["beta"].values[0, 3]
    sigma = float(post["sigma"].values[0, 3])
    sd_b = float(post["sd_batch"].values[0, 3, 0])
    sd_c = float(post["sd_batch:cask"].values[0, 3, 0])
    d = fit.design
    batch = next(t for t in d.terms if t.name == "batch")
    cask = next(t for t in d.terms if t.name == "batch:cask")
    for j in (0, 9):
        rows = batch.codes == j
        same_cask = cask.codes[rows][:, None] == cask.codes[rows][None, :]
        cov = sd_b**2 + sd_c**2 * same_cask + sigma**2 * np.eye(rows.sum())
        expect = stats.multivariate_normal(d.X[rows] @ beta, cov).logpdf(d.y[rows])
        assert ll[0, 3, j] == pytest.approx(expect, rel=1e-9)


def test_compare_ranks_cross_level_model_first(ogorek):
    fits = {
        "simple": _fit("y ~ x + (1 + x | unit)", ogorek),
        "cross-level": _fit("y ~ x + a + x * a + (1 + x | unit)", ogorek),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = checking.compare(fits)
    assert list(table.index) == ["cross-level", "simple"]
    assert {"elpd", "se", "reml_aic", "reml_bic"} <= set(table.columns)
    # REML AIC agrees: seed 000's 2206 vs 2226
    assert table.loc["cross-level", "reml_aic"] == pytest.approx(2206, abs=1)
    assert table.loc["simple", "reml_aic"] == pytest.approx(2226, abs=1)


def test_compare_refuses_different_data(default_fit, ogorek):
    other = _fit("y ~ x + (1 | unit)", ogorek, draws=100, tune=100, chains=1)
    with pytest.raises(checking.CheckError, match="not of the same data"):
        checking.compare({"sleep": default_fit, "ogorek": other})
    with pytest.raises(checking.CheckError, match="at least two"):
        checking.compare({"sleep": default_fit})


def test_prior_sweep(default_fit):
    with pytest.raises(checking.CheckError, match="unknown prior 'sd\\(Hours\\|Subject\\)'"):
        bayesmer.prior_sweep(default_fit, {"sd(Hours|Subject)": ["HalfCauchy(1)"]})
    sweep = bayesmer.prior_sweep(
        default_fit, {"sd(Days|Subject)": ["HalfNormal(0.5)", "HalfCauchy(100)"]}, draws=300, tune=300
    )
    t = sweep.table
    assert len(sweep.fits) == 2
    slope = t[(t.component == "sd") & (t.name == "Days")].set_index("prior:sd(Days|Subject)")["mean"]
    # the tight prior pulls the slope SD down; the wide one leaves it near REML's 5.92
    assert slope["HalfNormal(0.5)"] < 3 < slope["HalfCauchy(100)"]
    assert sweep.plot().axes


def test_group_ols_is_each_groups_own_fit(default_fit, sleep):
    ols = plots.group_ols(default_fit)
    sub = sleep[sleep.Subject == 308]
    slope, intercept = np.polyfit(sub.Days, sub.Reaction, 1)
    assert ols.loc["308"].to_numpy() == pytest.approx([intercept, slope])


def test_plots_draw(default_fit):
    for fig in (
        plots.plot_forest(default_fit),
        plots.plot_shrinkage(default_fit),
        plots.plot_correlation(default_fit),
        plots.plot_ppc(default_fit, seed=1).viz["figure"].item(),
    ):
        assert fig.axes
        matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="unknown random-effect term"):
        plots.plot_shrinkage(default_fit, term="Nope")
    with pytest.raises(ValueError, match="sample_prior=True"):
        plots.plot_ppc(default_fit, kind="prior")


def test_prior_predictive_check(sleep):
    fit = _fit(SLEEP, sleep, draws=100, tune=100, chains=1, sample_prior=200, sample_posterior_predictive=True)
    prior = np.asarray(fit.idata["prior_predictive"]["Reaction"].values)
    post = np.asarray(fit.idata["posterior_predictive"]["Reaction"].values)
    # the data-scaled default priors are wide: prior replicates spread far more than posterior ones
    assert prior.std() > 3 * post.std()
    assert abs(post.mean() - sleep["Reaction"].mean()) < 5
    for kind in ("prior", "posterior"):
        fig = plots.plot_ppc(fit, kind=kind, seed=2).viz["figure"].item()
        # arviz-plots draws one panel per response, titled by its name
        assert [a.get_title() for a in fig.axes] == ["Reaction"]
        matplotlib.pyplot.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_loo_and_logo_on_every_model_file(path):
    from bayesmer.modelfile import load_data, load_model_file

    spec = load_model_file(path)
    data = load_data(spec)
    family = {k: v for k, v in spec.settings().items() if k in ("family", "link")}
    fit = _fit(spec.formula, data, priors=spec.prior_dict, draws=150, tune=150, chains=2, **family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = checking.loo(fit)
        if checking._outer_factor(fit.design, None) is None:
            groups = checking.logo(fit, group=fit.design.terms[0].group)
        else:
            groups = checking.logo(fit)
    assert rows.n_data_points == fit.design.n and np.isfinite(rows.elpd)
    assert 2 <= groups.n_data_points < fit.design.n and np.isfinite(groups.elpd)
