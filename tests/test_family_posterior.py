"""The posterior of the families of bayesmer.families on the compiled GLMM density (issue 17 items 4-5).

The compiled rows against each family's ``logpdf`` (and scipy's), the gradient against central
differences, the compiled density against its PyMC twin (built by ``build_glmm``) up to a constant,
two small fits against glmmTMB's / ordinal::clmm's estimates (``data/make_family_refs.R``), and the
bad inputs ``fit(family=...)`` refuses.
"""

import json
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import bayesmer
from bayesmer.builder import build_glmm
from bayesmer.engine._kernel import _family_row, _prior
from bayesmer.engine.density import PRIOR_CODES
from bayesmer.engine.glmm import FAMILY_CODES, GlmmSpec
from bayesmer.families import FamilyError, get_family
from bayesmer.familydata import family_data
from bayesmer.priors import Beta, Gamma, PriorError, resolve_priors

DATA = Path(__file__).parent / "data"

#: (family, link) on the kernel; each row's density and gradient checked
CASES = [("negbinomial", None), ("zero_inflated_poisson", None), ("zero_inflated_negbinomial", None),
         ("student", None), ("Gamma", None), ("Gamma", "inverse"), ("beta", None), ("cumulative", None),
         ("cumulative", "probit"), ("gaussian", None)]
DPARS = {"shape": 2.5, "zi": 0.3, "sigma": 0.8, "nu": 4.0, "phi": 6.0, "Intercept": np.array([-1.0, 0.2, 1.5])}


def _family(name, link):
    fam = get_family(name).with_link(link)
    if name == "cumulative":
        fam = replace(fam, levels=("a", "b", "c", "d"))
    return fam


def _simulate(fam, n=48, G=6, seed=3):
    """A small data set drawn from the family itself (rvs), 1 random intercept."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    eta = 0.4 * x + rng.normal(0, 0.5, G)[g] + (0.0 if fam.name == "cumulative" else 0.5)
    if fam.link == "inverse":
        eta = 1.5 + 0.3 * np.abs(eta)
    dp = {d.name: DPARS[d.name] for d in fam.dpars}
    y = fam.rvs(eta, dp, None, rng)
    if fam.name == "cumulative":
        y[:4] = [1, 2, 3, 4]  # every category seen
        y = pd.Categorical.from_codes((y - 1).astype(int), categories=list(fam.levels), ordered=True)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]}), eta, dp


def _dpar_vector(fam, dp):
    return np.concatenate([np.atleast_1d(dp[d.name]) for d in fam.dpars]).astype(float)


@pytest.mark.parametrize("name,link", CASES)
def test_kernel_rows_equal_the_family_logpdf(name, link):
    """Every row's compiled log density (normalising constants included) is the family module's, to 1e-12."""
    fam = _family(name, link)
    df, eta, dp = _simulate(fam)
    y = fam.prepare_response(df["y"], "y")
    code = FAMILY_CODES[(fam.name, fam.link)]
    v = _dpar_vector(fam, dp)
    rows = np.array([_family_row(code, y[i], 1.0, eta[i], v, np.zeros(len(v))) for i in range(len(y))])
    ref = fam.logpdf(y, eta, dp)
    np.testing.assert_allclose(rows[:, 0], ref, rtol=0, atol=1e-12 * (1 + np.max(np.abs(ref))))
    np.testing.assert_allclose(rows[:, 1], fam.derivs(y, eta, dp)[0], rtol=1e-9, atol=1e-10)


def test_family_logpdf_is_scipys():
    """The references themselves: scipy's densities at the same parameters (Var = mu + mu^2/shape etc.)."""
    rng = np.random.default_rng(0)
    eta = rng.normal(0.3, 0.5, 20)
    mu = np.exp(eta)
    y = rng.poisson(mu).astype(float)
    k = 2.5
    np.testing.assert_allclose(get_family("negbinomial").logpdf(y, eta, {"shape": k}),
                               st.nbinom.logpmf(y, k, k / (k + mu)), rtol=1e-12)
    yg = rng.gamma(2.0, 1.0, 20)
    np.testing.assert_allclose(get_family("Gamma").logpdf(yg, eta, {"shape": k}),
                               st.gamma.logpdf(yg, k, scale=mu / k), rtol=1e-12)
    yb = rng.uniform(0.05, 0.95, 20)
    m = 1 / (1 + np.exp(-eta))
    np.testing.assert_allclose(get_family("beta").logpdf(yb, eta, {"phi": 6.0}),
                               st.beta.logpdf(yb, m * 6.0, (1 - m) * 6.0), rtol=1e-12)
    np.testing.assert_allclose(get_family("student").logpdf(yg, eta, {"sigma": 0.8, "nu": 4.0}),
                               st.t.logpdf(yg, 4.0, eta, 0.8), rtol=1e-12)


def test_gamma_and_beta_prior_codes_are_scipys():
    for prior, x, ref in ((Gamma(2.0, 0.1), 7.3, st.gamma.logpdf(7.3, 2.0, scale=10.0)),
                          (Beta(2.0, 5.0), 0.3, st.beta.logpdf(0.3, 2.0, 5.0))):
        lp, d = _prior(PRIOR_CODES[type(prior).__name__], np.array(prior.params(), float), x)
        assert lp == pytest.approx(ref, rel=1e-12)
        h = 1e-6
        num = (_prior(PRIOR_CODES[type(prior).__name__], np.array(prior.params(), float), x + h)[0]
               - _prior(PRIOR_CODES[type(prior).__name__], np.array(prior.params(), float), x - h)[0]) / (2 * h)
        assert d == pytest.approx(num, rel=1e-6)


def _fake_start(fd, dp):
    """What build_glmm reads of a Laplace fit, at made-up values (no fit: the twin test needs none)."""
    t = fd.terms[0]
    names = list(fd.fixed_names)
    return SimpleNamespace(
        fixef=pd.Series(np.zeros(len(names)), index=names), vcov=pd.DataFrame(np.eye(len(names)) * 0.01),
        cov_matrices=lambda: {t.name: np.eye(1) * 0.25},
        ranef={t.name: pd.DataFrame(np.zeros((t.n_levels, 1)))},
        dpars=fd.family.dpar_series(dp), _eta=np.zeros(len(fd.y)))


def _built(name, link, centred):
    fam = _family(name, link)
    df, _, dp = _simulate(fam)
    fd = family_data("y ~ x + (1 | g)", df, fam)
    priors = resolve_priors(fd, family=fd.family)
    return build_glmm(fd, priors, start=_fake_start(fd, dp), centred=[centred]), fd


def _forward(tr, raw):
    """PyMC's transform of a value, in numpy (its ``forward`` compiles a graph per call)."""
    kind = type(tr).__name__ if tr is not None else None
    if kind is None:
        return raw
    if kind == "LogTransform":
        return np.log(raw)
    if kind == "LogOddsTransform":
        return np.log(raw / (1 - raw))
    if kind == "Ordered":
        return np.concatenate([raw[:1], np.log(np.diff(raw))])
    if kind in ("IntervalTransform", "Interval"):  # pm.Truncated(lower=1): log(x - 1)
        return np.log(raw - 1.0)
    raise AssertionError(kind)


@pytest.mark.parametrize("name,link", [c for c in CASES if c[0] != "gaussian"])
def test_compiled_density_is_its_pymc_twin(name, link):
    """The compiled log density and gradient against central differences, and against PyMC's logp of the same model
    (PyMC's own transforms, Jacobians included) at random points: equal up to one constant."""
    rng = np.random.default_rng(5)
    for centred in (False, True) if name == "negbinomial" else (False,):
        built, fd = _built(name, link, centred)
        spec, model = built.density, built.model
        fam = fd.family
        logp = model.compile_logp(jacobian=True)
        diffs = []
        for _ in range(3):
            beta0 = np.r_[2.0, np.zeros(spec.p - 1)] if fam.link == "inverse" else np.zeros(spec.p)  # eta > 0
            x = spec.initial_x(beta0, [np.array([0.5])], [np.eye(1)], [np.zeros((fd.terms[0].n_levels, 1))],
                               fam.pack({d.name: DPARS[d.name] for d in fam.dpars}))
            x = x + rng.normal(0, 0.2, x.size)
            lp, g = spec.logp(x)
            eps = 1e-6
            for j in rng.choice(spec.ndim, 6, replace=False):
                e = np.zeros(spec.ndim)
                e[j] = eps
                num = (spec.logp(x + e)[0] - spec.logp(x - e)[0]) / (2 * eps)
                assert g[j] == pytest.approx(num, rel=1e-5, abs=1e-6), (name, centred, j)
            v = spec.expand(x)
            p, G = spec.p, fd.terms[0].n_levels
            beta, sd, b, dv = v[:p], v[p], v[p + 1:p + 1 + G], v[p + 1 + G:]
            nat = {built.beta: beta, built.sd["g"]: np.array([sd])}
            nat[built.b["g"] if centred else "z_g"] = (b if centred else b / sd).reshape(G, 1)
            pos = 0
            for d in fam.dpars:
                m = fam.dpar_size(d)
                nat[d.name] = dv[pos:pos + m] if d.transform == "ordered" else dv[pos]
                pos += m
            point = {}
            for rv in model.free_RVs:
                val = model.rvs_to_values[rv]
                tr = model.rvs_to_transforms.get(rv)
                raw = np.asarray(nat[rv.name], dtype=float)
                point[val.name] = _forward(tr, raw)
            diffs.append(lp - float(logp(point)))
        # β = shift + Cγ (a constant Jacobian) and the likelihoods' constants: one constant
        assert np.ptp(diffs) < 1e-8 * (1 + abs(lp)), (name, centred, diffs)


# ---- real fits ---------------------------------------------------------------------------

def _quiet(formula, data, **kw):
    kw = {"draws": 300, "tune": 300, "chains": 2, "seed": 7, "progress": False} | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(formula, data, **kw)


@pytest.fixture(scope="module")
def nb_fit():
    ep = pd.read_csv(DATA / "family_epilepsy.csv", dtype={"Trt": str, "patient": str})
    return _quiet("count ~ zAge + zBase * Trt + (1 | patient)", ep, family="negbinomial",
                  sample_posterior_predictive=True)


@pytest.fixture(scope="module")
def wine_fit():
    wine = pd.read_csv(DATA / "family_wine.csv", dtype={"judge": str})
    wine["rating"] = pd.Categorical(wine["rating"], categories=[1, 2, 3, 4, 5], ordered=True)
    return _quiet("rating ~ temp + contact + (1 | judge)", wine, family="cumulative",
                  sample_posterior_predictive=True)


def test_negbinomial_posterior_beside_glmmtmb(nb_fit):
    """brms's epilepsy: the posterior means within 2 posterior SDs of glmmTMB's estimates (flat-ish priors, 236 rows),
    shape's posterior around glmmTMB's; the summary's reml column is glmmTMB's to 1e-4."""
    ref = json.loads((DATA / "family_negbinomial.json").read_text())
    s = nb_fit.summary()
    fixed = s.loc["fixed"]
    assert [n for _, n in fixed.index] == list(ref["fixef"])
    for name, v in ref["fixef"].items():
        row = fixed.loc[("", name)]
        assert abs(row["mean"] - v) < 2 * row["sd"], name
        assert row["reml"] == pytest.approx(v, rel=1e-4, abs=1e-5)
    shape = s.loc[("dpar", "", "shape")]
    assert shape["reml"] == pytest.approx(ref["dpars"]["shape"], rel=1e-3)
    assert 0.5 * ref["dpars"]["shape"] < shape["mean"] < 2.0 * ref["dpars"]["shape"]
    assert nb_fit.family.name == "negbinomial" and nb_fit.reml.dpars.index.tolist() == ["shape"]
    assert int(nb_fit.idata["sample_stats"]["diverging"].sum()) == 0


def test_negbinomial_groups(nb_fit):
    """Pointwise log-likelihood is scipy's NB at the draws (so LOO is right); predictive draws are counts."""
    post = nb_fit.idata["posterior"]
    ll = nb_fit.idata["log_likelihood"]["count"]
    assert ll.shape == (2, 300, 236)
    y = nb_fit.idata["observed_data"]["count"].to_numpy()
    X = nb_fit.glmm.X
    beta = post["beta"].isel(chain=0, draw=5).to_numpy()
    b = post["b_patient"].isel(chain=0, draw=5).to_numpy()[:, 0]
    mu = np.exp(X @ beta + b[nb_fit.glmm.terms[0].codes])
    k = float(post["shape"].isel(chain=0, draw=5))
    np.testing.assert_allclose(ll.isel(chain=0, draw=5).to_numpy(), st.nbinom.logpmf(y, k, k / (k + mu)), rtol=1e-10)
    pp = nb_fit.idata["posterior_predictive"]["count"].to_numpy()
    assert pp.shape == (2, 300, 236) and np.all(pp >= 0) and np.all(pp == np.round(pp))
    import arviz_stats as azs

    assert np.isfinite(azs.loo(nb_fit.idata).elpd)


def test_cumulative_posterior_beside_clmm(wine_fit):
    """ordinal's wine: thresholds Intercept[1..4] ordered, near clmm's; predictive draws are categories 1..5."""
    ref = json.loads((DATA / "family_cumulative.json").read_text())
    s = wine_fit.summary()
    for name, v in ref["dpars"].items():
        row = s.loc[("dpar", "", name)]
        assert row["reml"] == pytest.approx(v, rel=1e-3)
        assert abs(row["mean"] - v) < 2 * row["sd"], name
    for name, v in ref["fixef"].items():
        row = s.loc[("fixed", "", name)]
        assert abs(row["mean"] - v) < 2 * row["sd"], name
    tau = wine_fit.idata["posterior"]["Intercept"]
    assert tau.dims[-1] == "threshold" and list(tau.coords["threshold"].to_numpy()) == [1, 2, 3, 4]
    assert np.all(np.diff(tau.to_numpy(), axis=-1) > 0)
    pp = wine_fit.idata["posterior_predictive"]["rating"].to_numpy()
    assert set(np.unique(pp)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert list(wine_fit.idata["observed_data"].coords["category"].to_numpy()) == ["1", "2", "3", "4", "5"]


def test_family_fit_round_trip(wine_fit):
    """save/load re-parses the family (and the categories) and gives the same summary; posterior_predictive() works."""
    path = wine_fit.save(Path(tempfile.mkdtemp()) / "wine.nc")
    again = bayesmer.load(path)
    assert again.family.name == "cumulative" and again.family.levels == wine_fit.family.levels
    pd.testing.assert_frame_equal(again.summary(), wine_fit.summary())
    pp = again.posterior_predictive(seed=1).idata["posterior_predictive"]["rating"]
    assert pp.shape == (2, 300, 72)


# ---- priors and bad input ------------------------------------------------------------------

def test_dpar_priors_by_brms_class():
    df, _, _ = _simulate(_family("zero_inflated_negbinomial", None))
    fd = family_data("y ~ x + (1 | g)", df, "zinb")
    base = resolve_priors(fd, family=fd.family)
    assert dict(base.dpars) == {"shape": Gamma(0.01, 0.01), "zi": Beta(1.0, 1.0)}  # brms 2.18's defaults
    got = resolve_priors(fd, {"shape": "gamma(2, 0.5)", "zi": "beta(1, 4)"}, family=fd.family)
    assert got.dpar_prior("shape") == Gamma(2.0, 0.5) and got.dpar_prior("zi") == Beta(1.0, 4.0)
    table = got.table()
    assert table.set_index("parameter").loc["zi", "brms"] == "zi"
    with pytest.raises(PriorError, match="unknown family parameter.*'shape', 'zi'|unknown family parameter"):
        resolve_priors(fd, {"phi": "gamma(1, 1)"}, family=fd.family)
    with pytest.raises(PriorError, match="needs a probability"):
        resolve_priors(fd, {"zi": "Normal(0, 1)"}, family=fd.family)


@pytest.mark.parametrize("family,values,match", [
    ("negbinomial", [1, 2, -1, 3], "negative counts"),
    ("zero_inflated_poisson", [1, 2, 1.5, 3], "not integers"),
    ("beta", [0.2, 0.5, 1.0, 0.3], "exactly 1"),
    ("Gamma", [1.0, 0.0, 2.0, 3.0], "zero or negative"),
    ("lognormal", [1.0, -2.0, 2.0, 3.0], "zero or negative"),
])
def test_fit_refuses_a_response_the_family_cannot_take(family, values, match):
    df = pd.DataFrame({"y": values * 3, "x": np.arange(12.0), "g": list("aabbccddeeff")})
    with pytest.raises(FamilyError, match=match):
        bayesmer.fit("y ~ x + (1 | g)", df, family=family, progress=False)


def test_fit_refuses_an_ordinal_response_without_order_or_with_an_unseen_category():
    df = pd.DataFrame({"y": ["lo", "mid", "hi"] * 4, "x": np.arange(12.0), "g": list("aabbccddeeff")})
    with pytest.raises(FamilyError, match="without an order"):
        bayesmer.fit("y ~ x + (1 | g)", df, family="cumulative", progress=False)
    df["y"] = pd.Categorical(df["y"], categories=["lo", "mid", "hi", "top"], ordered=True)
    with pytest.raises(FamilyError, match="never takes.*top"):
        bayesmer.fit("y ~ x + (1 | g)", df, family="cumulative", progress=False)


def test_lognormal_is_the_gaussian_engine_on_log_y():
    """lognormal: lmer's ML fit of log y beside the marginal posterior (b and β integrated out); its pointwise
    log-likelihood is scipy's lognormal density of y (the Gaussian's of log y less log y); draws on the y scale."""
    ref = json.loads((DATA / "family_lognormal.json").read_text())
    sleep = pd.read_csv(DATA / "family_sleepstudy.csv", dtype={"Subject": str})
    fit = _quiet(ref["formula"], sleep, family="lognormal", draws=200, tune=200, sample_posterior_predictive=True)
    assert fit.family.name == "lognormal" and fit.strategy == "marginal"
    s = fit.summary()
    for name, v in ref["fixef"].items():
        row = s.loc[("fixed", "", name)]
        assert row["reml"] == pytest.approx(v, rel=1e-4)
        assert abs(row["mean"] - v) < 2 * row["sd"]
    assert s.loc[("sigma", "Residual", "sigma"), "reml"] == pytest.approx(ref["dpars"]["sigma"], rel=1e-4)
    post = fit.idata["posterior"]
    y = sleep["Reaction"].to_numpy()
    np.testing.assert_allclose(fit.idata["observed_data"]["Reaction"].to_numpy(), y, rtol=1e-12)
    beta = post["beta"].isel(chain=1, draw=3).to_numpy()
    b = post["b_Subject"].isel(chain=1, draw=3).to_numpy()
    t = fit.design.terms[0]
    eta = fit.design.X @ beta + np.sum(t.Z * b[t.codes], axis=1)
    sigma = float(post["sigma"].isel(chain=1, draw=3))
    np.testing.assert_allclose(fit.idata["log_likelihood"]["Reaction"].isel(chain=1, draw=3).to_numpy(),
                               st.lognorm.logpdf(y, sigma, scale=np.exp(eta)), rtol=1e-9)
    assert np.all(fit.idata["posterior_predictive"]["Reaction"].to_numpy() > 0)


def test_negbinomial_without_overdispersion_samples_from_a_stand_in():
    """Counts with no overdispersion: glmmTMB's negbinomial shape runs to infinity (R's glmmTMB: false
    convergence, shape 1.4e7) and the Laplace fit breaks down. The point fit raises a FitError naming the shape;
    fit() warns, samples from a stand-in start (the reml column NaN) and the posterior shape is large."""
    d = pd.read_csv(DATA / "family_nb_no_overdispersion.csv", dtype={"g": str})
    with pytest.raises(bayesmer.FitError, match=r"negbinomial shape runs to infinity.*consider family='poisson'"):
        bayesmer.glmmtmb("y ~ x + (1 | g)", d, family="negbinomial")
    with pytest.warns(UserWarning, match=r"shape runs to infinity.*Sampling the posterior anyway"):
        fit = bayesmer.fit("y ~ x + (1 | g)", d, family="negbinomial", draws=100, tune=150, chains=2, seed=3,
                           progress=False)
    point = fit.reml
    assert point.failed is not None and not point.converged and np.isnan(point.loglik)
    assert point.fixef["(Intercept)"] == pytest.approx(np.log(d["y"].mean()))  # the stand-in's start
    assert point.fixef["x"] == 0.0 and np.all(np.isnan(point.se))
    assert "no estimates: the fit failed" in str(point)
    s = fit.summary()
    assert np.all(np.isnan(s["reml"].to_numpy()))  # fixed effects, sd and shape: no start values shown
    assert s.loc[("fixed", "", "x"), "mean"] < -0.5  # the slope is well determined (about -1.05)
    shape = fit.draws("shape")
    # the posterior mean of the shape is 40-60 over seeds (5% quantile about 6-7); overdispersed counts
    # (the epilepsy fit above) give shapes of a few units
    assert float(np.mean(shape)) > 20 and float(np.quantile(shape, 0.05)) > 3
    assert "negbinomial" in str(fit)
