"""Downstream of the response families (issue 17 item 5): the bundled examples, the model files, the
command line, ``predict(kind=...)`` and ``simulate`` for the families of :mod:`bayesmer.families`.

References: tests/data/make_family_datasets.R (R's own summaries of the bundled data sets),
tests/data/make_family_predict_refs.R (ordinal::clmm's fitted probabilities on wine, glmmTMB's
``predict()`` of a zero-inflated Poisson on Salamanders), tests/data/make_family_refs.R (the point fits).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special as sc

import bayesmer
from bayesmer import cli
from bayesmer.errors import PredictionError
from bayesmer.families import FAMILIES, get_family
from bayesmer.modelfile import ModelFileError, check_priors, load_data, load_model_file
from bayesmer.results import _family_mean
from bayesmer.simulation import SimulationError

ROOT = Path(__file__).parents[1]
# the families' model files: a folder of their own, outside the loops that fit every models/*.toml
# (each costs 10 to 30 s there); all are read and checked here, and one is run end to end
FAMILY_DIR = ROOT / "models" / "families"
DATA = Path(__file__).parent / "data"
R_DATA = json.loads((DATA / "family_datasets_ref.json").read_text())
R_PRED = json.loads((DATA / "family_predict_refs.json").read_text())
NEW_SETS = ["epilepsy", "salamanders", "wine", "gamma_sim", "beta_sim"]
# model file -> the family it names (brms's name)
FAMILY_MODELS = {
    "epilepsy": "negbinomial", "salamanders_zip": "zero_inflated_poisson",
    "salamanders_zinb": "zero_inflated_negbinomial", "sleepstudy_student": "student", "gamma_sim": "Gamma",
    "sleepstudy_lognormal": "lognormal", "beta_sim": "beta", "wine": "cumulative",
}
GLM = {"gaussian", "binomial", "bernoulli", "poisson"}


# ---- the bundled examples ------------------------------------------------------


@pytest.mark.parametrize("name", NEW_SETS)
def test_bundled_family_data_match_r(name):
    """Columns, rows, sums, extremes, factor levels (R's order), counts and orderedness as R holds them."""
    df, ref = bayesmer.datasets.load(name), R_DATA[name]
    assert list(df.columns) == ref["columns"] and len(df) == ref["nrow"]
    for col, want in ref["summary"].items():
        if "levels" in want:
            assert isinstance(df[col].dtype, pd.CategoricalDtype), col
            assert list(df[col].cat.categories) == want["levels"], col
            assert bool(df[col].cat.ordered) == want["ordered"], col
            assert df[col].value_counts(sort=False).reindex(df[col].cat.categories).tolist() == want["counts"], col
        else:
            x = df[col].to_numpy(float)
            assert x.sum() == pytest.approx(want["sum"], rel=1e-12), col
            assert (x**2).sum() == pytest.approx(want["sumsq"], rel=1e-12), col
            assert (x.min(), x.max()) == pytest.approx((want["min"], want["max"]), rel=1e-14), col
    assert name in bayesmer.datasets.list() and bayesmer.datasets.describe(name)


def test_wine_rating_is_an_ordered_categorical_and_sims_are_the_reference_draws():
    wine = bayesmer.datasets.load("wine")
    assert wine.shape == (72, 6) and wine["rating"].cat.ordered
    assert list(wine["rating"].cat.categories) == ["1", "2", "3", "4", "5"]
    assert wine["rating"].min() == "1" and wine["rating"].max() == "5"  # compared by the order
    # the simulated examples are the very draws the point-fit references were made from
    for name, csv in (("gamma_sim", "family_gamma_sim.csv"), ("beta_sim", "family_beta.csv")):
        ours, ref = bayesmer.datasets.load(name), pd.read_csv(DATA / csv)
        np.testing.assert_array_equal(ours[["y", "x"]].to_numpy(), ref[["y", "x"]].to_numpy())
        assert (ours["g"].astype(str) == ref["g"]).all()


# ---- model files ---------------------------------------------------------------


def test_a_model_file_per_family():
    new = {name for name in FAMILIES if name not in GLM}
    assert set(FAMILY_MODELS.values()) == new
    assert {p.stem for p in FAMILY_DIR.glob("*.toml")} == set(FAMILY_MODELS)
    for stem, family in FAMILY_MODELS.items():
        spec = load_model_file(FAMILY_DIR / f"{stem}.toml")
        assert spec.family == family and spec.settings()["family"] == family
        data = load_data(spec)
        check_priors(spec, data)
        assert stem in (ROOT / "models" / "README.md").read_text()


def _model(tmp_path, extra):
    p = tmp_path / "m.toml"
    p.write_text('[data]\ndataset = "epilepsy"\n[model]\nformula = "count ~ zAge + (1 | patient)"\n' + extra)
    return p


def test_model_file_family_names_aliases_and_links(tmp_path):
    assert load_model_file(_model(tmp_path, 'family = "nbinom2"\n')).family == "negbinomial"  # alias: brms's name
    assert load_model_file(_model(tmp_path, 'family = "gamma"\nlink = "inverse"\n')).link == "inverse"
    with pytest.raises(ModelFileError) as err:
        load_model_file(_model(tmp_path, 'family = "negbin"\n'))
    assert "[model] family:" in str(err.value) and "'negbin'" in str(err.value)
    for name in ("negbinomial", "zero_inflated_poisson", "cumulative", "student"):
        assert name in str(err.value)
    with pytest.raises(ModelFileError, match=r"\[model\] link: .*'probit'.*'Gamma'.*'log', 'inverse'"):
        load_model_file(_model(tmp_path, 'family = "Gamma"\nlink = "probit"\n'))


def test_cli_refuses_a_link_the_family_lacks(capsys):
    code = cli.main(["run", str(FAMILY_DIR / "wine.toml"), "--link", "cloglog", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "--link cloglog" in err and "'cumulative'" in err and "'logit', 'probit'" in err


# ---- one posterior, run end to end by the command line -------------------------


@pytest.fixture(scope="module")
def zip_run(tmp_path_factory):
    """``bayesmer run models/families/salamanders_zip.toml`` with short chains; the fit it made, kept for predict."""
    out = tmp_path_factory.mktemp("zip") / "out"
    made = []
    real = cli._fit

    def keep(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(cli, "_fit", keep)
        code = cli.main(["run", str(FAMILY_DIR / "salamanders_zip.toml"), "--draws", "100", "--tune", "100",
                         "--chains", "1", "--quiet", "--no-report", "--out", str(out)])
    return code, out, made[0]


def test_run_a_family_model_file_end_to_end(zip_run):
    code, out, fit = zip_run
    assert code == 0
    assert (out / "summary.csv").is_file() and (out / "posterior.nc").is_file()
    assert fit.family.name == "zero_inflated_poisson" and fit.settings["family"] == "zero_inflated_poisson"
    table = pd.read_csv(out / "summary.csv")
    assert len(table) >= 3


def test_predict_zero_inflated_posterior_by_the_formulas(zip_run):
    fit = zip_run[2]
    eta = fit.predict(kind="link")["predictions"]["eta"].values.reshape(100, -1)
    mu = fit.predict(kind="mean")["predictions"]["mu"].values.reshape(100, -1)
    zi = fit.draws("zi").reshape(-1)
    np.testing.assert_allclose(mu, (1 - zi[:, None]) * np.exp(eta), rtol=1e-12)
    y = fit.predict(kind="response", seed=1)["predictions"]["count"].values.reshape(100, -1)
    assert (y >= 0).all() and (y == np.round(y)).all()
    # new counts: their mean is the mean's (100 draws x 644 rows; 5 Monte Carlo SEs)
    assert abs(y.mean() - mu.mean()) < 5 * y.std() / np.sqrt(y.size)
    # zeros beyond the Poisson's: P(0) = zi + (1 - zi) exp(-mu_count)
    p0 = zi[:, None] + (1 - zi[:, None]) * np.exp(-np.exp(eta))
    assert abs((y == 0).mean() - p0.mean()) < 5 * np.sqrt(p0.mean() * (1 - p0.mean()) / y.size)
    table = fit.predict(kind="mean", summary=True)
    assert table.shape == (644, 4) and (table["hdi_3%"] <= table["mean"]).all()
    with pytest.raises(PredictionError, match="cumulative"):
        fit.predict(kind="probs")


def test_predict_point_fit_matches_glmmtmb(zip_run):
    """point=True: glmmTMB's predict(type = "link" / "response") at the sites' conditional modes."""
    fit, ref = zip_run[2], R_PRED["salamanders_zip"]
    link = fit.predict(kind="link", point=True)
    mean = fit.predict(kind="mean", point=True)
    assert isinstance(mean, pd.Series) and len(mean) == 644
    np.testing.assert_allclose(link, ref["link"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(mean, ref["response"], rtol=2e-4)
    new = pd.DataFrame(ref["newdata"])  # a site not in the data: its effect zero, as allow.new.levels gives
    np.testing.assert_allclose(fit.predict(new, kind="link", point=True), ref["new_link"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(fit.predict(new, kind="mean", point=True), ref["new_response"], rtol=2e-4)


def test_simulate_from_the_point_fit(zip_run):
    fit = zip_run[2]
    sal = bayesmer.datasets.load("salamanders")
    sims = bayesmer.simulate("count ~ mined + (1 | site)", sal, fit.reml, seed=1, nsim=20)  # its family, read
    assert sims.shape == (644, 20) and (sims.to_numpy() >= 0).all()
    zi = float(fit.reml.dpars["zi"])
    assert (sims.to_numpy() == 0).mean() > zi  # the inflated zeros and the Poisson's


# ---- cumulative: category probabilities on the posterior and the point fit --------


@pytest.fixture(scope="module")
def wine_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit("rating ~ temp + contact + (1 | judge)", bayesmer.datasets.load("wine"),
                            family="cumulative", draws=100, tune=100, chains=1, seed=1, progress=False)


def test_predict_cumulative_probabilities(wine_fit):
    fit = wine_fit
    tree = fit.predict(kind="probs")["predictions"]
    assert list(tree["category"].values) == ["1", "2", "3", "4", "5"]
    probs = tree["probs"].values.reshape(100, 72, 5)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-12)
    # by the formula, from each draw's thresholds and linear predictor
    eta = fit.predict(kind="link")["predictions"]["eta"].values.reshape(100, 72)
    tau = fit.draws("Intercept").reshape(100, 4)
    cdf = np.concatenate([np.zeros((100, 72, 1)), sc.expit(tau[:, None, :] - eta[:, :, None]), np.ones((100, 72, 1))], 2)
    np.testing.assert_allclose(probs, np.diff(cdf, axis=2), rtol=1e-10, atol=1e-14)
    mean = fit.predict(kind="mean")["predictions"]["mu"].values.reshape(100, 72)
    np.testing.assert_allclose(mean, probs @ np.arange(1, 6), rtol=1e-12)
    y = fit.predict(kind="response", seed=1)["predictions"]
    assert set(np.unique(y["rating"].values)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and list(y["category"].values)[0] == "1"
    table = fit.predict(kind="probs", summary=True)
    assert table.shape == (72 * 5, 4) and list(table.index.get_level_values("category")[:5]) == ["1", "2", "3", "4", "5"]
    # without the judges' effects: the population's probabilities, the same for rows alike in temp and contact
    pop = fit.predict(kind="probs", include_random=False)["predictions"]["probs"].values.reshape(100, 72, 5)
    wine = bayesmer.datasets.load("wine")
    same = ((wine["temp"] == wine["temp"][0]) & (wine["contact"] == wine["contact"][0])).to_numpy()
    np.testing.assert_allclose(pop[:, same], np.broadcast_to(pop[:, [0]], pop[:, same].shape), rtol=1e-12)


def test_predict_after_save_and_load(wine_fit, tmp_path):
    wine_fit.save(tmp_path / "wine.nc")
    back = bayesmer.load(tmp_path / "wine.nc")
    for kind in ("probs", "mean"):
        np.testing.assert_array_equal(back.predict(kind=kind, point=True), wine_fit.predict(kind=kind, point=True))
    np.testing.assert_array_equal(back.predict(kind="probs")["predictions"]["probs"].values,
                                  wine_fit.predict(kind="probs")["predictions"]["probs"].values)


def test_predict_cumulative_point_fit_is_clmms(wine_fit):
    """point=True: clmm's probabilities at its estimates and the judges' conditional modes (fit to 1e-4)."""
    ref = R_PRED["wine"]
    probs = wine_fit.predict(kind="probs", point=True)
    assert list(probs.columns) == ref["categories"] and probs.shape == (72, 5)
    np.testing.assert_allclose(probs.to_numpy(), ref["probs"], rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(wine_fit.predict(kind="link", point=True), ref["eta"], rtol=1e-3, atol=2e-4)
    draws = wine_fit.predict(kind="response", point=True, seed=1)
    assert draws.dtype == "category" and draws.cat.ordered and len(draws) == 72


# ---- lognormal: the Gaussian model of log y, predicted on the y scale --------------


def test_predict_lognormal_on_the_y_scale(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep, family="lognormal", draws=100, tune=100,
                           chains=1, seed=1, progress=False)
    eta = fit.predict(kind="link")["predictions"]["eta"].values.reshape(100, -1)
    mean = fit.predict(kind="mean")["predictions"]["mu"].values.reshape(100, -1)
    sigma = fit.draws("sigma").reshape(-1)
    np.testing.assert_allclose(mean, np.exp(eta + sigma[:, None] ** 2 / 2), rtol=1e-12)
    y = fit.predict(kind="response", seed=1)["predictions"]["Reaction"].values.reshape(100, -1)
    assert (y > 0).all()
    assert abs(np.log(y).mean() - eta.mean()) < 5 * np.log(y).std() / np.sqrt(y.size)
    ref = R_PRED["sleepstudy_lognormal"]  # lmer(log(Reaction), REML = FALSE) and its lognormal mean
    np.testing.assert_allclose(fit.predict(kind="link", point=True), ref["link"], rtol=1e-5)
    np.testing.assert_allclose(fit.predict(kind="mean", point=True), ref["mean"], rtol=1e-4)


# ---- the families' formulas on a fixed point ------------------------------------


ETA = np.array([[-1.0, 0.2, 1.5], [0.3, -0.4, 2.0]])  # two draws, three rows


@pytest.mark.parametrize(
    "family, link, dp, want",
    [
        ("negbinomial", None, {"shape": [2.0, 5.0]}, lambda e, d: np.exp(e)),
        ("zero_inflated_poisson", None, {"zi": [0.2, 0.5]}, lambda e, d: (1 - d["zi"][:, None]) * np.exp(e)),
        ("zero_inflated_negbinomial", None, {"shape": [2.0, 5.0], "zi": [0.2, 0.5]},
         lambda e, d: (1 - d["zi"][:, None]) * np.exp(e)),
        ("lognormal", None, {"sigma": [0.5, 1.2]}, lambda e, d: np.exp(e + d["sigma"][:, None] ** 2 / 2)),
        ("Gamma", None, {"shape": [3.0, 1.0]}, lambda e, d: np.exp(e)),
        ("Gamma", "inverse", {"shape": [3.0, 1.0]}, lambda e, d: 1 / e),
        ("beta", None, {"phi": [12.0, 3.0]}, lambda e, d: 1 / (1 + np.exp(-e))),
        ("student", None, {"sigma": [1.0, 2.0], "nu": [4.0, 30.0]}, lambda e, d: e),
    ],
)
def test_mean_by_the_family_formula(family, link, dp, want):
    fam = get_family(family).with_link(link)
    dp = {k: np.asarray(v) for k, v in dp.items()}
    eta = np.abs(ETA) if link == "inverse" else ETA
    np.testing.assert_allclose(_family_mean(fam, eta, dp), want(eta, dp), rtol=1e-13)


def test_category_probabilities_are_clmms():
    """P(Y = k) from clmm's thresholds and linear predictor: clmm's fitted() and the whole matrix; rows sum to one."""
    ref = R_PRED["wine"]
    tau = np.array(list(json.loads((DATA / "family_cumulative.json").read_text())["thresholds"].values()))
    probs = get_family("cumulative").probs(np.array(ref["eta"])[None, :], {"Intercept": tau[None, :]})[0]
    np.testing.assert_allclose(probs, ref["probs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-14)
    observed = bayesmer.datasets.load("wine")["rating"].cat.codes.to_numpy()
    np.testing.assert_allclose(probs[np.arange(72), observed], ref["fitted"], rtol=1e-12)
    # the expected category is the probabilities' weighted sum
    mean = _family_mean(get_family("cumulative"), np.array(ref["eta"])[None, :], {"Intercept": tau[None, :]})
    np.testing.assert_allclose(mean[0], np.array(ref["probs"]) @ np.arange(1, 6), rtol=1e-12)
    # the probit link: the normal CDF
    pp = get_family("cumulative").with_link("probit").probs(np.array([[0.3]]), {"Intercept": np.array([[-1.0, 0.5]])})
    np.testing.assert_allclose(pp[0, 0], np.diff(sc.ndtr(np.array([-np.inf, -1.3, 0.2, np.inf]))), rtol=1e-13)


# ---- simulate: draws from every family ------------------------------------------


SIM_DP = {
    "negbinomial": {"shape": 2.0}, "zero_inflated_poisson": {"zi": 0.3},
    "zero_inflated_negbinomial": {"shape": 2.0, "zi": 0.3}, "student": {"sigma": 0.5, "nu": 5.0},
    "Gamma": {"shape": 3.0}, "lognormal": {"sigma": 0.4}, "beta": {"phi": 10.0},
}


@pytest.mark.parametrize("family", list(SIM_DP))
def test_simulate_draws_have_the_family_mean_and_variance(family, sleep):
    """No group variation (sd 0): each row's draws have the family's mean exactly; 5 Monte Carlo SEs."""
    fam = get_family(family)
    beta = [-0.5, 0.1] if family == "beta" else [0.5, 0.1]
    params = {"fixef": beta, "sd": {"Subject": [0.0]}, "dpars": SIM_DP[family]}
    sims = bayesmer.simulate("y ~ Days + (1 | Subject)", sleep, params, family=family, seed=2, nsim=300).to_numpy()
    eta = beta[0] + beta[1] * sleep["Days"].to_numpy()
    mean = _family_mean(fam, eta[None, :], {k: np.array([v]) for k, v in SIM_DP[family].items()})[0]
    # one mean per Days value (18 subjects x 300 draws each)
    for d in (0, 9):
        rows = sleep["Days"].to_numpy() == d
        x = sims[rows].ravel()
        assert abs(x.mean() - mean[rows][0]) < 5 * x.std() / np.sqrt(x.size), (family, d)
    if family in ("negbinomial", "zero_inflated_poisson", "zero_inflated_negbinomial"):
        assert (sims == np.round(sims)).all() and (sims >= 0).all()
    if family == "beta":
        assert ((sims > 0) & (sims < 1)).all()
    if family in ("Gamma", "lognormal"):
        assert (sims > 0).all()
    if family == "negbinomial":  # NB2: Var = mu + mu^2 / shape
        x = sims[sleep["Days"].to_numpy() == 0].ravel()
        m = np.exp(0.5)
        assert x.var() == pytest.approx(m + m**2 / 2.0, rel=0.15)


def test_simulate_cumulative_categories(sleep):
    tau = [-1.0, 0.5, 2.0]
    sims = bayesmer.simulate("y ~ Days + (1 | Subject)", sleep,
                             {"fixef": [0.2], "sd": {"Subject": [0.0]}, "dpars": {"Intercept": tau}},
                             family="ordinal", seed=3, nsim=200)
    assert all(sims[c].cat.ordered and list(sims[c].cat.categories) == ["1", "2", "3", "4"] for c in sims)
    rows = sleep["Days"].to_numpy() == 5
    codes = np.stack([sims[c].cat.codes.to_numpy()[rows] for c in sims]).ravel()
    freq = np.bincount(codes, minlength=4) / codes.size
    p = get_family("cumulative").probs(np.array([[1.0]]), {"Intercept": np.array([tau])})[0, 0]
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / codes.size)), (freq, p)
    # the categories of the data's ordered response, and thresholds by brms's names
    wine = bayesmer.datasets.load("wine")
    one = bayesmer.simulate("rating ~ temp + (1 | judge)", wine,
                            {"fixef": {"tempwarm": 1.0}, "sd": {"judge": [1.0]},
                             "dpars": {f"Intercept[{k}]": v for k, v in enumerate([-2, -0.5, 1, 2.5], 1)}},
                            family="cumulative", seed=1)
    assert list(one.cat.categories) == ["1", "2", "3", "4", "5"] and one.name == "rating"


@pytest.mark.parametrize(
    "dpars, needle",
    [
        ({}, "lacks 'shape'"),
        ({"shape": -1.0}, "'shape'.*range"),
        ({"shape": 2.0, "phi": 3.0}, r"unknown parameter\(s\) \['phi'\]"),
    ],
)
def test_simulate_bad_family_parameters(sleep, dpars, needle):
    with pytest.raises(SimulationError, match=needle):
        bayesmer.simulate("y ~ Days + (1 | Subject)", sleep, {"fixef": [0.5, 0.1], "sd": {"Subject": [0.3]},
                                                               "dpars": dpars}, family="negbinomial")


def test_simulate_bad_thresholds(sleep):
    with pytest.raises(SimulationError, match="increasing"):
        bayesmer.simulate("y ~ Days + (1 | Subject)", sleep,
                          {"fixef": [0.2], "sd": {"Subject": [0.3]}, "dpars": {"Intercept": [1.0, 0.0]}},
                          family="cumulative")
