"""The fit's DataTree in ArviZ's own calls, prediction, save/load, priors by brms's names, ICC."""

import json
import pickle
import warnings
from pathlib import Path

import arviz as az
import arviz_base
import arviz_stats as azs
import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import SLEEP, quiet_fit

import bayesmer
from bayesmer import checking, cli
from bayesmer import naming as nm

matplotlib.use("Agg")
DATA = Path(__file__).parent / "data"
ATTRS = ("created_at", "creation_library", "inference_library", "inference_library_version")


def _lme4(name):
    return json.loads((DATA / f"{name}.json").read_text())


# ---- ArviZ's schema ----------------------------------------------------------


def test_arviz_summary_of_the_whole_tree_matches_ranef(sleep_fit):
    """arviz-stats 1.3 swapped rows when two variables shared a dim at different positions."""
    s = az.summary(sleep_fit.idata, round_to="none")
    ranef = sleep_fit.ranef()["Subject"]
    for level in ranef.index:
        for col in ranef.columns:
            assert s.loc[f"b_Subject[{level}, {col}]", "mean"] == pytest.approx(ranef.loc[level, col], rel=1e-9)
    # every row sits near lme4's conditional mode (the mislabelled row read 24.11 for 309's slope, mode -8.62)
    modes = _lme4("sleepstudy_reml")["ranef"][0]
    for level, values in zip(modes["levels"], modes["values"]):
        for col, mode, cond_sd in zip(modes["terms"], values, modes["cond_sd"][modes["levels"].index(level)]):
            assert s.loc[f"b_Subject[{level}, {col}]", "mean"] == pytest.approx(mode, abs=cond_sd), (level, col)
    post = sleep_fit.idata["posterior"]
    assert s.loc["sd_Subject[Days]", "mean"] == pytest.approx(float(post["sd_Subject"].sel(Subject_term="Days").mean()))
    assert s.loc["corr_Subject[(Intercept),Days]", "mean"] == pytest.approx(float(post["corr_Subject"].mean()))


def test_correlations_are_pairs_as_in_brms(sleep_fit):
    corr = sleep_fit.idata["posterior"]["corr_Subject"]
    assert corr.dims == ("chain", "draw", "Subject_pair")
    assert list(corr["Subject_pair"].values) == ["(Intercept),Days"]
    assert list(nm.pair_labels(["a", "b", "c"])) == ["a,b", "a,c", "b,c"]


def test_every_group_carries_its_attributes(sleep):
    fit = quiet_fit(SLEEP, sleep, draws=100, tune=100, sample_posterior_predictive=True, sample_prior=50)
    tree = fit.predict(pd.DataFrame({"Days": [1], "Subject": ["308"]}), kind="response", seed=1)
    assert {"posterior", "sample_stats", "log_likelihood", "log_prior", "observed_data", "constant_data",
            "posterior_predictive", "prior", "prior_predictive", "predictions",
            "predictions_constant_data"} <= set(tree.children)
    for name, group in tree.children.items():
        missing = [a for a in ATTRS if a not in group.attrs]
        assert not missing, (name, missing)
        assert group.attrs["inference_library"] == "nutpie", name
    # ArviZ's predictive checks read the groups as they are
    for group in ("posterior_predictive", "prior_predictive"):
        pc = az.plot_ppc_dist(fit.idata, group=group, num_samples=20, backend="matplotlib")
        matplotlib.pyplot.close(pc.viz["figure"].item())


@pytest.mark.slow
def test_arviz_diagnostics_and_plots_on_every_model_file(model_file_fit):
    fit = model_file_fit
    s = azs.summary(fit.idata)
    assert len(s) and not s[["r_hat", "ess_bulk", "ess_tail"]].isna().any().any(), s[s.isna().any(axis=1)]
    # arviz-plots refuses more than 40 panels by default: its own knob, raised as a user would
    with arviz_base.rc_context({"plot.max_subplots": 2000}):
        for plot in (az.plot_trace_dist, az.plot_rank, az.plot_forest):
            pc = plot(fit.idata, backend="matplotlib")
            matplotlib.pyplot.close(pc.viz["figure"].item())


def test_ppc_plot_from_predictions(sleep_fit):
    from bayesmer import plots

    pc = plots.plot_ppc(sleep_fit, seed=1)
    assert pc.viz["figure"].item().axes


# ---- prediction --------------------------------------------------------------


def test_prediction_kinds_levels_and_unknown_members(sleep_fit):
    new = pd.DataFrame({"Days": [5, 5, 5, 5], "Subject": ["309", "new-a", "new-a", None]})
    mean = sleep_fit.predict(new, seed=3)["predictions"]["mu"].values.reshape(-1, 4)
    beta = sleep_fit.draws("beta")
    pop = beta[:, 0] + 5 * beta[:, 1]
    b309 = sleep_fit.draws("b_Subject")[:, list(sleep_fit.design.terms[0].levels).index("309")]
    np.testing.assert_allclose(mean[:, 0], pop + b309[:, 0] + 5 * b309[:, 1])
    # a new level: one population draw per posterior draw, shared by its rows
    np.testing.assert_allclose(mean[:, 1], mean[:, 2])
    assert mean[:, 1].std() > 2 * pop.std()
    # an unknown member, in the mean: averaged over the population, i.e. X beta exactly
    np.testing.assert_allclose(mean[:, 3], pop)
    resp = sleep_fit.predict(new, kind="response", seed=3)["predictions"]["Reaction"].values.reshape(-1, 4)
    sigma = sleep_fit.draws("sigma").mean()
    # the response adds sigma; the unknown member adds the population's spread too
    assert resp[:, 0].std() == pytest.approx(np.hypot(mean[:, 0].std(), sigma), rel=0.15)
    assert resp[:, 3].std() > 1.5 * resp[:, 0].std()
    with pytest.raises(bayesmer.PredictionError, match="'new-a'.*sample_new_groups=True"):
        sleep_fit.predict(new, sample_new_groups=False)
    with pytest.raises(bayesmer.PredictionError, match="kind"):
        sleep_fit.predict(new, kind="linear")
    # the identity link: the linear predictor is the mean
    np.testing.assert_allclose(sleep_fit.predict(new, kind="link", seed=4)["predictions"]["eta"].values,
                               sleep_fit.predict(new, kind="mean", seed=4)["predictions"]["mu"].values)


def test_tree_reproduces_its_own_predictions(sleep_fit):
    """constant_data and the posterior rebuild the fitted means without the fit object."""
    tree = sleep_fit.predict(seed=1)
    cd = tree["constant_data"]
    post = tree["posterior"]
    b = post["b_Subject"].sel(Subject_level=xr_str(cd["Subject"]))
    eta = (post["beta"].sel(fixed="(Intercept)") + post["beta"].sel(fixed="Days") * cd["Days"]
           + b.sel(Subject_effect="(Intercept)") + b.sel(Subject_effect="Days") * cd["Days"])
    np.testing.assert_allclose(eta.transpose("chain", "draw", "obs").values, tree["predictions"]["mu"].values)


def xr_str(da):
    return da.astype(str)


# ---- save and load -----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_load_round_trip(sleep_fit, tmp_path, suffix):
    path = sleep_fit.save(tmp_path / f"fit{suffix}")
    back = bayesmer.load(path)
    new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "new"]})
    a = sleep_fit.predict(new, kind="response", seed=4)["predictions"]["Reaction"].values
    b = back.predict(new, kind="response", seed=4)["predictions"]["Reaction"].values
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(back.summary(), sleep_fit.summary())
    pd.testing.assert_frame_equal(back.varcorr(), sleep_fit.varcorr())
    pd.testing.assert_frame_equal(back.ranef()["Subject"], sleep_fit.ranef()["Subject"])
    assert back.loo().elpd == pytest.approx(sleep_fit.loo().elpd)
    assert "Reaction ~" in str(back)
    # the REML twin is refitted from the stored columns: lme4's numbers again
    assert back.reml.fixef()["Days"] == pytest.approx(_lme4("sleepstudy_reml")["fixef"][1], rel=1e-5)


def test_load_refuses_what_is_not_a_fit(tmp_path, sleep_fit):
    with pytest.raises(bayesmer.LoadError, match="no such file"):
        bayesmer.load(tmp_path / "none.nc")
    with pytest.raises(bayesmer.LoadError, match="unknown file type"):
        bayesmer.load(tmp_path / "x.csv")
    plain = tmp_path / "plain.nc"
    sleep_fit.idata.to_netcdf(plain)
    with pytest.raises(bayesmer.LoadError, match="not a bayesmer fit"):
        bayesmer.load(plain)


def test_constant_response_is_named(sleep):
    with pytest.raises(bayesmer.DesignError, match="'Reaction'.*constant"):
        bayesmer.fit(SLEEP, sleep.assign(Reaction=1.0), progress=False)


def test_pickle(sleep_fit):
    back = pickle.loads(pickle.dumps(sleep_fit))
    pd.testing.assert_series_equal(back.fixef(), sleep_fit.fixef())
    assert back.model is not None


@pytest.mark.slow
def test_cli_output_loads_as_a_fit(tmp_path, capsys, sleep):
    csv = tmp_path / "sleep.csv"
    sleep.to_csv(csv, index=False)
    out = tmp_path / "o"
    code = cli.main(["fit", SLEEP, str(csv), "--draws", "100", "--tune", "100", "--chains", "2", "--seed", "3",
                     "--quiet", "--no-report", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    fit = bayesmer.load(out / "posterior.nc")
    assert fit.summary().loc[("fixed", "", "Days"), "mean"] == pytest.approx(10.47, abs=1.5)
    assert fit.predict(sleep.head(3))["predictions"]["mu"].shape == (2, 100, 3)
    assert np.isfinite(fit.loo().elpd) and fit.varcorr().shape[0] == 4


# ---- priors ------------------------------------------------------------------


def test_default_priors_lists_the_slots_fit_uses(sleep_fit, sleep):
    table = bayesmer.default_priors(SLEEP, sleep)
    assert table.to_dict() == sleep_fit.priors.to_dict()
    assert set(table.table()["brms"]) == {"Intercept", "b", "sd", "cor", "sigma"}
    slots = set(table.to_dict())
    post = sleep_fit.idata["posterior"]
    # one slot per fixed effect, per SD column, per correlated term, and sigma: as the tree's variables
    want = {*post["beta"]["fixed"].values, *(nm.sd_label(c, "Subject") for c in post["sd_Subject"]["Subject_term"].values),
            nm.corr_slot("Subject"), "sigma"}
    assert slots == want
    assert set(sleep_fit.idata["log_prior"].data_vars) == {"beta", "sd_Subject", "corr_Subject", "sigma"}


def test_brms_prior_names(sleep):
    from bayesmer.priors import resolve_priors

    d = bayesmer.build_design("Reaction ~ Days + (Days | Subject) + (1 | Days)", sleep.assign(Days=sleep.Days))
    p = resolve_priors(d, {"b": "Normal(0, 1)", "Intercept": "Normal(250, 5)", "sd": "HalfNormal(9)",
                           "sd(Subject)": "HalfNormal(3)", "sd(Days|Subject)": "HalfNormal(2)",
                           "cor": "LKJ(4)", "sigma": "HalfNormal(30)"}).to_dict()
    assert p["(Intercept)"] == "Normal(250.0, 5.0)" and p["Days"] == "Normal(0.0, 1.0)"
    assert p["sd((Intercept)|Subject)"] == "HalfNormal(3.0)" and p["sd(Days|Subject)"] == "HalfNormal(2.0)"
    assert p["sd((Intercept)|Days)"] == "HalfNormal(9.0)"
    assert p["corr(Subject)"] == "LKJ(4.0)" and p["sigma"] == "HalfNormal(30.0)"
    with pytest.raises(bayesmer.PriorError, match="valid names: .*sd\\(Subject\\)"):
        resolve_priors(d, {"sd(Nope)": "HalfNormal(1)"})
    from bayesmer.priors import slots_of

    assert slots_of(d, "b") == ["Days"] and slots_of(d, "Intercept") == ["(Intercept)"]
    assert slots_of(d, "sd(Subject)") == ["sd((Intercept)|Subject)", "sd(Days|Subject)"]
    assert slots_of(d, "cor") == ["corr(Subject)"]


# ---- REML's standard errors of the variance components -----------------------


@pytest.mark.parametrize(
    "name, formula, data, method",
    [
        ("sleepstudy_reml", SLEEP, "sleepstudy", "REML"),
        ("sleepstudy_ml", SLEEP, "sleepstudy", "ML"),
        ("dyestuff", "Yield ~ 1 + (1 | Batch)", "dyestuff", "REML"),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "REML"),
    ],
)
def test_varcorr_se_against_r(name, formula, data, method):
    """The expected-information SEs, recomputed in R at lme4's estimates (tests/data/make_varcorr_se.R)."""
    ref = json.loads((DATA / "varcorr_se.json").read_text())[name]
    got = bayesmer.reml(formula, bayesmer.datasets.load(data), method=method).varcorr_se()
    assert got["kind"].tolist() == [r["kind"] for r in ref]
    np.testing.assert_allclose(got["value"], [r["value"] for r in ref], rtol=1e-4)
    np.testing.assert_allclose(got["se"], [r["se"] for r in ref], rtol=1e-3)


def test_summary_has_reml_se_for_every_row(sleep_fit):
    table = sleep_fit.summary()
    assert table["reml_se"].notna().all(), table
    assert table.loc[("sd", "Subject", "Days"), "reml_se"] == pytest.approx(1.248, abs=1e-3)
    assert "NaN" not in str(sleep_fit)


# ---- variance decomposition (seed 003, Mixed Model 4a) -----------------------


def test_icc_against_lme4():
    ref = _lme4("clark_intercepts")
    tau, sigma = ref["varcorr"][0]["sd"][0], ref["sigma"]
    want = tau**2 / (tau**2 + sigma**2)
    df = bayesmer.datasets.load("clark_intercepts")
    r = bayesmer.reml(ref["formula"], df)
    assert r.icc().loc["clus", "share"] == pytest.approx(want, rel=1e-4)
    fit = quiet_fit(ref["formula"], df, draws=400, tune=300)
    icc = fit.icc()
    assert icc["mean"].sum() == pytest.approx(1.0)
    assert icc.loc["clus", "reml"] == pytest.approx(want, rel=1e-4)
    assert icc.loc["clus", "hdi_3%"] < want < icc.loc["clus", "hdi_97%"]


# ---- LOO on many rows ----------------------------------------------------------


@pytest.mark.slow
def test_loo_on_100000_rows_says_what_to_pass_then_works():
    rng = np.random.default_rng(5)
    G, m = 1000, 100
    g = np.repeat(np.arange(G), m)
    x = rng.standard_normal(G * m)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.7, G)[g] + rng.normal(0, 1.0, G * m)
    df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    fit = quiet_fit("y ~ x + (1 | g)", df, draws=300, tune=200)
    assert "log_likelihood" not in fit.idata.children  # 600 draws x 100,000 rows > 5e7
    with pytest.raises(checking.CheckError, match="pass thin=2 to fit.loo"):
        fit.loo()
    res = fit.loo(thin=2)
    assert res.n_data_points == 100_000
    # conditional on b the rows are N(., 1): elpd per row near the normal's -0.5 log(2 pi e)
    assert res.elpd / 100_000 == pytest.approx(-0.5 * np.log(2 * np.pi * np.e), abs=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = fit.logo()
    assert groups.n_data_points == G
