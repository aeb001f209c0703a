"""bayesmer.simulate: drawing responses from a stated mixed model."""


import numpy as np
import pandas as pd
import pytest

from bayesmer import datasets
from bayesmer.simulation import SimulationError, simulate

SLEEP = "Reaction ~ Days + (Days | Subject)"
SLEEP_PARAMS = {
    "fixef": {"(Intercept)": 251.4, "Days": 10.5},
    "sigma": 25.6,
    "sd": {"Subject": [24.7, 5.9]},
    "corr": {"Subject": 0.066},
}


def _layout(n_groups, n_per, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.tile(np.linspace(-1, 1, n_per), n_groups)
    return pd.DataFrame({"g": pd.Categorical(g), "x": x, "z": rng.standard_normal(g.size)})


def test_random_intercepts_moments():
    df = _layout(3000, 8)
    y = simulate("y ~ z + (1 | g)", df, {"fixef": [2.0, -1.0], "sigma": 1.5, "sd": {"g": [0.8]}}, seed=1)
    assert isinstance(y, pd.Series) and y.name == "y" and len(y) == len(df)
    r = (y - 2.0 + df["z"]).groupby(df["g"], observed=True)
    within = r.var().mean()
    between = r.mean().var()
    assert np.sqrt(within) == pytest.approx(1.5, rel=0.03)
    # var of a group mean = tau^2 + sigma^2 / n
    assert np.sqrt(between - within / 8) == pytest.approx(0.8, rel=0.06)


def test_random_slopes_moments():
    df = _layout(4000, 10)
    truth = {"fixef": {"(Intercept)": 1.0, "x": 2.0}, "sigma": 0.5, "sd": {"g": [1.0, 0.7]}, "corr": {"g": -0.4}}
    y = simulate("y ~ x + (x | g)", df, truth, seed=2)
    X = np.column_stack([np.ones(10), np.linspace(-1, 1, 10)])
    coefs = np.linalg.lstsq(X, y.to_numpy().reshape(4000, 10).T, rcond=None)[0].T
    np.testing.assert_allclose(coefs.mean(axis=0), [1.0, 2.0], atol=0.05)
    resid = y.to_numpy().reshape(4000, 10) - coefs @ X.T
    sigma2 = (resid**2).sum() / (4000 * (10 - 2))
    assert np.sqrt(sigma2) == pytest.approx(0.5, rel=0.02)
    # cov of per-group OLS coefficients = Psi + sigma^2 (X'X)^-1
    psi = np.cov(coefs, rowvar=False) - sigma2 * np.linalg.inv(X.T @ X)
    sd = np.sqrt(np.diag(psi))
    np.testing.assert_allclose(sd, [1.0, 0.7], rtol=0.06)
    assert psi[0, 1] / (sd[0] * sd[1]) == pytest.approx(-0.4, abs=0.05)


def test_crossed_terms_and_array_fixef():
    pen = datasets.load("penicillin")
    params = {"fixef": [22.97], "sigma": 0.55, "sd": {"plate": [0.85], "sample": [1.93]}}
    y = simulate("diameter ~ 1 + (1 | plate) + (1 | sample)", pen, params, seed=3, nsim=4)
    assert y.shape == (144, 4) and list(y.columns) == ["sim_1", "sim_2", "sim_3", "sim_4"]
    assert not np.allclose(y["sim_1"], y["sim_2"])


def test_uncorrelated_terms_use_suffixed_names():
    s = datasets.load("sleepstudy")
    params = {"fixef": [251, 10], "sigma": 25, "sd": {"Subject": [25], "Subject.1": [6]}}
    y = simulate("Reaction ~ Days + (Days || Subject)", s, params, seed=1)
    assert len(y) == 180


def test_deterministic_by_seed():
    s = datasets.load("sleepstudy")
    a = simulate(SLEEP, s, SLEEP_PARAMS, seed=42, nsim=2)
    pd.testing.assert_frame_equal(a, simulate(SLEEP, s, SLEEP_PARAMS, seed=42, nsim=2))
    assert not np.allclose(a, simulate(SLEEP, s, SLEEP_PARAMS, seed=43, nsim=2))
    gen = np.random.default_rng(42)
    assert simulate(SLEEP, s, SLEEP_PARAMS, seed=gen).equals(a["sim_1"].rename("Reaction"))


def test_response_may_be_absent_and_index_is_kept():
    s = datasets.load("sleepstudy").drop(columns="Reaction")
    s.index = s.index + 1000
    y = simulate(SLEEP, s, SLEEP_PARAMS, seed=0)
    assert y.index.equals(s.index)


def test_ogorek_recovers_generating_values_through_simulate():
    df = datasets.simulate_ogorek(0, n_units=2000)
    truth = df.attrs["params"]
    y = simulate("y ~ x + a + x*a + (1 + x | unit)", df.drop(columns="y"), truth, seed=5)
    # OLS of the marginal model is unbiased for the fixed effects
    X = np.column_stack([np.ones(len(df)), df["x"], df["a"], df["x"] * df["a"]])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(beta, [1.0, 3.0, -0.15, 0.3], atol=0.03)


class _FitLike:
    """Duck-typed fit: the protocol simulate() reads (fixef(), sigma, sd(), corr())."""

    sigma = 25.6

    def fixef(self):
        return pd.Series({"(Intercept)": 251.4, "Days": 10.5})

    def sd(self, name):
        return {"Subject": np.array([24.7, 5.9])}[name]

    def corr(self, name):
        return {"Subject": np.array([[1.0, 0.066], [0.066, 1.0]])}[name]


class _ParamsLike:
    def params(self):
        return SLEEP_PARAMS


def test_accepts_fit_objects():
    s = datasets.load("sleepstudy")
    a = simulate(SLEEP, s, _FitLike(), seed=9)
    b = simulate(SLEEP, s, SLEEP_PARAMS, seed=9)
    c = simulate(SLEEP, s, _ParamsLike(), seed=9)
    np.testing.assert_allclose(a, b, rtol=1e-3)
    pd.testing.assert_series_equal(b, c)


def test_fit_without_the_term_is_named():
    with pytest.raises(SimulationError, match="Subject"):
        simulate("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy").assign(S2=1), _BadFit(), seed=1)


class _BadFit(_FitLike):
    def sd(self, name):
        raise KeyError(f"no term {name!r}")


def _reml():
    from bayesmer.lmer import reml

    return reml


def test_simulate_from_a_reml_fit():
    s = datasets.load("sleepstudy")
    fit = _reml()(SLEEP, s)
    y = simulate(SLEEP, s, fit, seed=1, nsim=400)
    assert y.shape == (180, 400)
    # every row's marginal mean is X beta-hat and its variance z' Psi z + sigma^2
    X = np.column_stack([np.ones(180), s["Days"]])
    psi = np.diag(fit.sd("Subject")) @ fit.corr("Subject") @ np.diag(fit.sd("Subject"))
    sd = np.sqrt(np.einsum("ij,jk,ik->i", X, psi, X) + fit.sigma**2)
    z = (y.mean(axis=1) - X @ fit.fixef.to_numpy()) / (sd / np.sqrt(400))
    assert np.abs(z).max() < 4.5
    assert np.mean(y.std(axis=1) / sd) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"fixef": {"(Intercept)": 1}, "sigma": 1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}}, "missing ['Days']"),
        ({"fixef": {"(Intercept)": 1, "Days": 1, "day": 1}, "sigma": 1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}}, "unknown ['day']"),
        ({"fixef": [1, 2, 3], "sigma": 1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}}, "3 value(s) for 2"),
        ({"fixef": [1, 2], "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}}, "['sigma']"),
        ({"fixef": [1, 2], "sigma": 1, "sd": {"Subj": [1, 1]}, "corr": {"Subject": 0}}, "unknown ['Subj']"),
        ({"fixef": [1, 2], "sigma": 1, "sd": {"Subject": [1, 1]}}, "params['corr'] lacks 'Subject'"),
        ({"fixef": [1, 2], "sigma": 1, "sd": {"Subject": [1]}, "corr": {"Subject": 0}}, "has 1 value(s)"),
        ({"fixef": [1, 2], "sigma": 1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 1.5}}, "not a valid correlation"),
        ({"fixef": [1, 2], "sigma": -1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}}, "sigma"),
        ({"fixef": [1, 2], "sigma": 1, "sd": {"Subject": [1, 1]}, "corr": {"Subject": 0}, "rho": 1}, "unknown key(s) ['rho']"),
    ],
)
def test_bad_params_are_named(params, needle):
    with pytest.raises(SimulationError) as err:
        simulate(SLEEP, datasets.load("sleepstudy"), params, seed=1)
    assert needle in str(err.value)


def test_singular_covariance_is_allowed():
    s = datasets.load("sleepstudy")
    params = {"fixef": [251, 10], "sigma": 25, "sd": {"Subject": [25, 0.0]}, "corr": {"Subject": 0.0}}
    y = simulate(SLEEP, s, params, seed=1)
    assert np.isfinite(y).all()


def test_nan_correlation_of_a_zero_sd_is_ignored():
    s = datasets.load("sleepstudy")
    nan = np.array([[1.0, np.nan], [np.nan, 1.0]])
    params = {"fixef": [251, 10], "sigma": 25, "sd": {"Subject": [25, 0.0]}, "corr": {"Subject": nan}}
    assert np.isfinite(simulate(SLEEP, s, params, seed=1)).all()
