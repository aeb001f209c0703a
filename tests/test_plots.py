"""Conditional effects, comparisons and predictive checks drawn; the prior predictive; fit.update.

The pictures are checked by what they draw: the REML line against lme4's
estimates, the bars against the data's frequencies, the observed statistic
against the data's, the prior predictive against its prior.
"""

import os
from pathlib import Path
import warnings

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.special import expit

import bayesmer
from bayesmer import plots

from conftest import quiet_fit

matplotlib.use("Agg")

# lme4 1.1-35: lmer(Reaction ~ Days + (Days | Subject), sleepstudy) (REML) and its ranef for 308
LME4_SLEEP = (251.405104848, 10.467285959)
LME4_308 = (2.258551, 9.198976)
# lme4: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial) fixef
LME4_CBPP = (-1.398343, -0.991925, -1.128216, -1.579745)
# lme4: lmer(Reaction ~ 1 + (1 | Subject), sleepstudy) fixef: the grand mean of the balanced design
LME4_SLEEP_INTERCEPT = 298.507892


def _figure(obj):
    return obj.viz["figure"].item() if hasattr(obj, "viz") else obj


def _save(obj, path):
    fig = _figure(obj)
    fig.savefig(path, dpi=30)
    plt.close(fig)
    assert path.stat().st_size > 1000
    return fig


def _by_gid(fig, gid):
    out = []
    for ax in fig.axes:
        out += [a for a in (*ax.lines, *ax.collections, *ax.patches) if a.get_gid() == gid]
    return out


@pytest.fixture(scope="module")
def cbpp_fit():
    cbpp = bayesmer.datasets.load("cbpp")
    return quiet_fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial",
                     draws=150, tune=150)


# ---- every bundled model file -------------------------------------------------


def _x_variable(fit):
    """The first column the fixed effects read, else the first grouping column."""
    frame = fit.glmm.frame if fit.glmm is not None else fit.design.frame
    groups = [c for t in fit.design.terms for c in t.factors]
    response = set(fit.design.response.replace("(", " ").replace(")", " ").replace(",", " ").split())
    fixed = [c for c in frame.columns if c not in groups and c not in response
             and any(c in name for name in fit.design.fixed_names)]
    return (fixed or groups)[0]


@pytest.mark.slow
def test_every_plot_on_every_model_file(model_file_fit, tmp_path):
    fit = model_file_fit
    var = _x_variable(fit)
    # conditional effects: the band around the posterior mean, REML's line beside it at the table's values
    fig = _save(plots.plot_predictions(fit, var, n_points=12), tmp_path / "pred.png")
    mean = np.concatenate([a.get_ydata() for a in _by_gid(fig, "posterior_mean")])
    reml = np.concatenate([a.get_ydata() for a in _by_gid(fig, "reml")])
    assert len(mean) == len(reml) > 1 and np.all(np.isfinite(reml))
    # posterior mean and REML agree to a few posterior SDs (short chains; the same data)
    table = fit.predictions(bayesmer.datagrid(fit, **{var: sorted(set(fit.design.frame[var]))[:2]}))
    assert np.all(np.abs(table["mean"] - table["reml"]) < 4 * table["sd"] + 1e-9)
    for band in _by_gid(fig, "posterior_band"):
        (path,) = band.get_paths()
        ys = path.vertices[:, 1]
        assert ys.min() < mean.min() + 1e-9 and ys.max() > mean.max() - 1e-9
    # comparisons: one row per contrast, each REML estimate inside or near its posterior interval
    fig = _save(plots.plot_comparisons(fit, var), tmp_path / "cmp.png")
    (post,) = _by_gid(fig, "posterior")
    (rl,) = _by_gid(fig, "reml")
    segs = np.array([s[:, 0] for s in post.get_segments()])
    assert len(segs) == len(rl.get_xdata()) >= 1 and np.all(segs[:, 0] < segs[:, 1])
    # predictive checks, on the posterior predictive drawn once
    fit = fit.posterior_predictive(seed=1)
    ndraws = 8
    fig = _save(plots.plot_ppc(fit, ndraws=ndraws), tmp_path / "dens.png")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= ndraws + 1
    y = np.asarray(fit.idata["observed_data"][fit.built.response].values)
    fig = _save(plots.plot_ppc(fit, kind="stat", stat="sd"), tmp_path / "stat.png")
    marks = [c.get_offsets()[:, 0] for c in fig.axes[0].collections if len(c.get_offsets()) == 1]
    assert any(np.isclose(m[0], np.std(y)) for m in marks), (marks, np.std(y))
    # grouped by a grouping factor (two levels: arviz-plots takes a second a panel)
    group = fit.design.terms[0].factors[-1]
    levels = sorted(set(fit.design.frame[group].astype(str)))[:2]
    fig = _save(plots.plot_ppc(fit, kind="grouped", by=group, levels=levels, ndraws=ndraws), tmp_path / "grp.png")
    drawn = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in drawn] == levels
    codes = fit.design.frame[group].astype(str).to_numpy()
    for ax, level in zip(drawn, levels):  # the observed curve spans that group's data
        obs, mine = ax.lines[-1].get_xdata(), y[codes == level]
        tol = 0.02 * (np.ptp(mine) or 1.0)  # the KDE's grid starts within a step of the data's edge
        assert abs(obs.min() - mine.min()) <= tol and abs(obs.max() - mine.max()) <= tol
    yrep = fit.idata["posterior_predictive"][fit.built.response].values
    if np.all(y == np.round(y)) and np.all(yrep == np.round(yrep)):  # counts (a Gaussian's draws are not)
        fig = _save(plots.plot_ppc(fit, kind="bars", seed=1), tmp_path / "bars.png")
        values = np.arange(y.min(), y.min() + len(_by_gid(fig, "observed")))
        heights = [b.get_height() for b in _by_gid(fig, "observed")]
        assert heights == [np.sum(y == v) for v in values]
    else:
        with pytest.raises(ValueError, match="not integer-valued"):
            plots.plot_ppc(fit, kind="bars")


# ---- the numbers each picture shows -----------------------------------------


def test_conditional_effects_reml_line_is_lme4s(sleep_fit, tmp_path):
    fig = _save(plots.plot_predictions(sleep_fit, "Days", n_points=10), tmp_path / "days.png")
    (reml,) = _by_gid(fig, "reml")
    x, yv = reml.get_xdata(), reml.get_ydata()
    assert np.allclose(yv, LME4_SLEEP[0] + LME4_SLEEP[1] * x, rtol=1e-6)
    (post,) = _by_gid(fig, "posterior_mean")
    lo_hi = [ci.get_ydata() for ci in _by_gid(fig, "reml_ci")]
    assert np.all(lo_hi[0] < yv) and np.all(yv < lo_hi[1])
    # the posterior's line: the draws' mean of beta0 + beta1 x
    beta = sleep_fit.draws("beta")
    assert np.allclose(post.get_ydata(), beta[:, 0].mean() + beta[:, 1].mean() * x, rtol=1e-9)
    # by the grouping factor: a panel per subject, each with its effects
    fig = plots.plot_predictions(sleep_fit, "Days", by="Subject", n_points=10)  # not saved: 18 panels take seconds
    plt.close(fig)
    assert len(fig.axes) == 18
    first = fig.axes[0]
    assert first.get_title() == "Subject = 308"
    (line,) = [a for a in first.lines if a.get_gid() == "reml"]
    want = (LME4_SLEEP[0] + LME4_308[0]) + (LME4_SLEEP[1] + LME4_308[1]) * line.get_xdata()
    assert np.allclose(line.get_ydata(), want, rtol=1e-5)


def test_conditional_effects_of_a_factor_on_the_probability_scale(cbpp_fit, tmp_path):
    fig = _save(plots.plot_predictions(cbpp_fit, "period"), tmp_path / "period.png")
    (reml,) = _by_gid(fig, "reml")
    b = np.array(LME4_CBPP)
    want = expit(b[0] + np.r_[0.0, b[1:]])
    assert np.allclose(reml.get_ydata(), want, rtol=2e-4)
    assert len(reml.get_xdata()) == 4
    fig = _save(plots.plot_comparisons(cbpp_fit, "period", include_random=False), tmp_path / "cmp.png")
    (rl,) = _by_gid(fig, "reml")
    assert np.allclose(rl.get_xdata(), want[1:] - want[0], rtol=5e-4)
    (post,) = _by_gid(fig, "posterior")
    for seg, x in zip(post.get_segments(), rl.get_xdata()):
        assert seg[0, 0] < seg[1, 0] and seg[0, 0] < 0  # periods 2-4 lower than 1 (all draws' bulk)


def test_bars_and_zeros_are_the_datas(cbpp_fit, tmp_path):
    cbpp = bayesmer.datasets.load("cbpp")
    y = cbpp["incidence"].to_numpy()
    pc = plots.plot_ppc(cbpp_fit, kind="bars", seed=2)
    fig = _save(pc, tmp_path / "bars.png")
    bars = _by_gid(fig, "observed")
    assert [b.get_height() for b in bars[: y.max() + 1]] == [np.sum(y == v) for v in range(y.max() + 1)]
    (pts,) = _by_gid(fig, "predictive")
    assert len(pts.get_xdata()) == len(bars) and np.all(pts.get_ydata() >= 0)
    fig = _save(plots.plot_ppc(cbpp_fit, kind="stat", stat="zeros", seed=2), tmp_path / "zeros.png")
    marks = [c.get_offsets()[0, 0] for c in fig.axes[0].collections if len(c.get_offsets()) == 1]
    assert np.isclose(marks[0], np.mean(y == 0))


def test_ppc_refuses_what_it_cannot_draw(sleep_fit):
    with pytest.raises(ValueError, match="kind must be one of dens, stat, grouped, bars, not 'hist'"):
        plots.plot_ppc(sleep_fit, kind="hist")
    with pytest.raises(ValueError, match="needs by="):
        plots.plot_ppc(sleep_fit, kind="grouped")
    with pytest.raises(ValueError, match="'Nope' is not a column"):
        plots.plot_ppc(sleep_fit, kind="grouped", by="Nope")
    with pytest.raises(ValueError, match="prior_predictive"):
        plots.plot_ppc(sleep_fit, group="prior_predictive")
    with pytest.raises(ValueError, match="variable 'Day' is not a column"):
        plots.plot_predictions(sleep_fit, "Day")
    with pytest.raises(ValueError, match="by=True"):
        plots.plot_comparisons(sleep_fit, "Days", by=None)


# ---- prior predictive ---------------------------------------------------------


def test_prior_predictive_matches_its_prior(tmp_path):
    dye = bayesmer.datasets.load("dyestuff")
    priors = {"(Intercept)": "Normal(1500, 100)", "sd": "HalfNormal(1)", "sigma": "HalfNormal(1)"}
    tree = bayesmer.prior_predictive("Yield ~ 1 + (1 | Batch)", dye, priors=priors, draws=800, seed=4)
    assert {"prior", "prior_predictive", "observed_data", "constant_data"} == set(tree.children)
    yrep = tree["prior_predictive"]["Yield"].values
    assert yrep.shape == (1, 800, 30)
    # each data set's mean is the intercept plus an average of small effects and noise: its spread is the prior's
    means = yrep.reshape(800, 30).mean(axis=1)
    se_sd = 100 / np.sqrt(2 * 800)
    assert abs(means.std() - 100) < 4 * se_sd + 1.0
    assert abs(means.mean() - 1500) < 4 * 100 / np.sqrt(800)
    beta = tree["prior"]["beta"].values.ravel()
    assert abs(beta.std() - 100) < 4 * se_sd
    fig = _save(plots.plot_ppc(tree, group="prior_predictive", ndraws=10), tmp_path / "prior.png")
    assert len(fig.axes[0].lines) >= 11  # the draws and the observed data


def test_prior_predictive_of_a_binomial_model_draws_counts(tmp_path):
    cbpp = bayesmer.datasets.load("cbpp")
    tree = bayesmer.prior_predictive("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                                     priors={"b": "Normal(0, 0.5)"}, family="binomial", draws=300, seed=3)
    name = "cbind(incidence, size - incidence)"
    yrep = tree["prior_predictive"][name].values.reshape(300, -1)
    assert yrep.shape == (300, 56)
    assert np.all((yrep >= 0) & (yrep <= cbpp["size"].to_numpy()))
    slopes = tree["prior"]["beta"].values.reshape(300, 4)[:, 1:]
    assert abs(slopes.std() - 0.5) < 4 * 0.5 / np.sqrt(2 * 900)
    fig = _save(plots.plot_ppc(tree, kind="bars", group="prior_predictive"), tmp_path / "bars.png")
    y = cbpp["incidence"].to_numpy()
    assert [b.get_height() for b in _by_gid(fig, "observed")][:3] == [np.sum(y == v) for v in range(3)]


# ---- update ---------------------------------------------------------------------


def test_update_carries_settings_and_changes_what_is_asked(sleep_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight = sleep_fit.update(priors={"Days": "Normal(0, 0.01)"}, draws=100, tune=100, progress=False)
        assert tight.priors.to_dict()["Days"] == "Normal(0.0, 0.01)"
        assert tight.settings["chains"] == sleep_fit.settings["chains"] and tight.settings["draws"] == 100
        assert abs(tight.draws("beta")[:, 1].mean()) < 0.05  # was 10.47: the prior holds it at 0
        # the hand-set prior carries into a new formula where its slot still exists, and is dropped where not
        with pytest.warns(UserWarning, match="Days"):
            smaller = tight.update("Reaction ~ 1 + (1 | Subject)", draws=100, tune=100, progress=False)
    assert list(smaller.reml.fixef.index) == ["(Intercept)"]
    assert np.isclose(smaller.reml.fixef["(Intercept)"], LME4_SLEEP_INTERCEPT, rtol=1e-6)
    with pytest.raises(bayesmer.SettingsError, match="drawz"):
        sleep_fit.update(drawz=10)


# ---- the families' model files ------------------------------------------------

FAMILY_MODELS = sorted((Path(__file__).resolve().parents[1] / "models" / "families").glob("*.toml"))


@pytest.fixture(scope="module", params=FAMILY_MODELS, ids=[p.stem for p in FAMILY_MODELS])
def family_file_fit(request):
    """Each family's model file with very short chains: the pictures, not the estimates, are checked."""
    from bayesmer.modelfile import load_data, load_model_file

    spec = load_model_file(request.param)
    settings = {k: v for k, v in spec.settings().items() if k in ("seed", "family", "link")}
    return quiet_fit(spec.formula, load_data(spec), priors=spec.prior_dict,
                     **{"draws": 100, "tune": 150} | settings).posterior_predictive(seed=1)


@pytest.mark.slow
def test_plots_on_every_family_model_file(family_file_fit, tmp_path):
    fit = family_file_fit
    var = _x_variable(fit)
    fig = _save(plots.plot_predictions(fit, var, n_points=8), tmp_path / "pred.png")
    mean = np.concatenate([a.get_ydata() for a in _by_gid(fig, "posterior_mean")])
    reml = np.concatenate([a.get_ydata() for a in _by_gid(fig, "reml")])
    assert len(mean) == len(reml) > 1 and np.all(np.isfinite(mean)) and np.all(np.isfinite(reml))
    ndraws = 6
    fig = _save(plots.plot_ppc(fit, ndraws=ndraws), tmp_path / "dens.png")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= ndraws + 1
    y = np.asarray(fit.idata["observed_data"][fit.built.response].values)
    if fit.family.name == "cumulative" or np.all(y == np.round(y)):
        # counts and ordinal categories: the observed bars are the data's frequencies
        fig = _save(plots.plot_ppc(fit, kind="bars", seed=1), tmp_path / "bars.png")
        heights = [b.get_height() for b in _by_gid(fig, "observed")]
        values = np.arange(y.min(), y.min() + len(heights))
        # a long tail (over 100 values: epilepsy's counts) is pooled into the last bar
        assert heights[:-1] == [np.sum(y == v) for v in values[:-1]]
        assert heights[-1] == np.sum(y >= values[-1]) and sum(heights) == len(y)
    else:
        fig = _save(plots.plot_ppc(fit, kind="stat", stat="sd"), tmp_path / "stat.png")
        marks = [c.get_offsets()[:, 0] for c in fig.axes[0].collections if len(c.get_offsets()) == 1]
        assert any(np.isclose(m[0], np.std(y)) for m in marks), (marks, np.std(y))
