"""The likelihood engine: the collapsed likelihood against the dense multivariate normal,
its gradient, the exact draws of (β, b), the PyMC Op and the nutpie route."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import bayesmer
from bayesmer.design import build_design
from bayesmer.engine import CollapsedStats, draw_effects, loglik
from bayesmer.engine.density import DensitySpec
from bayesmer.priors import resolve_priors

DATA = Path(__file__).parent / "data"

DESIGNS = {
    "slopes": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "double_bar": ("Reaction ~ Days + (Days || Subject)", "sleepstudy"),
    "crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
    "nested": ("strength ~ 1 + (1 | batch/cask)", "pastes"),
    "crossed_slopes": ("y ~ x + (1 + x | subj) + (1 + x | item)", "subjitems"),
    "factor_slope": ("Reaction ~ Days + (1 | Subject) + (0 + dgroup | Subject)", "sleepstudy"),
}


def _data(name):
    if name == "subjitems":
        return pd.read_csv(DATA / "subjitems.csv")
    d = bayesmer.datasets.load(name)
    if name == "sleepstudy":
        d = d.assign(dgroup=pd.Categorical(np.where(d["Days"] < 5, "early", "late")))
    return d


@pytest.fixture(scope="module", params=list(DESIGNS))
def case(request):
    formula, data = DESIGNS[request.param]
    design = build_design(formula, _data(data))
    return request.param, design, CollapsedStats.from_design(design)


def _random_T(design, rng):
    Ts = []
    for t in design.terms:
        T = np.tril(rng.normal(size=(t.k, t.k)) * 0.4)
        T[np.diag_indices(t.k)] = np.abs(np.diag(T)) + 0.3
        Ts.append(T)
    return Ts


def _dense_V(design, sigma, Ts):
    """σ²I + ZΨZ' built densely: the reference the engine must equal."""
    n = design.n
    V = sigma**2 * np.eye(n)
    for t, T in zip(design.terms, Ts):
        Zt = np.zeros((n, t.n_levels * t.k))
        for j in range(t.k):
            Zt[np.arange(n), t.codes * t.k + j] = t.Z[:, j]
        V += sigma**2 * Zt @ np.kron(np.eye(t.n_levels), T @ T.T) @ Zt.T
    return V


def _dense_Z(design):
    n = design.n
    blocks = []
    for t in design.terms:
        Zt = np.zeros((n, t.n_levels * t.k))
        for j in range(t.k):
            Zt[np.arange(n), t.codes * t.k + j] = t.Z[:, j]
        blocks.append(Zt)
    return np.hstack(blocks)


def test_loglik_equals_dense_normal(case):
    name, design, stats = case
    rng = np.random.default_rng(1)
    for _ in range(2):
        Ts = _random_T(design, rng)
        sigma = float(np.std(design.y)) * rng.uniform(0.2, 0.8)
        V = _dense_V(design, sigma, Ts)
        beta = np.linalg.lstsq(design.X, design.y, rcond=None)[0] + rng.normal(size=design.p)
        ll = loglik(stats, sigma, Ts, beta=beta)[0]
        ref = st.multivariate_normal(design.X @ beta, V).logpdf(design.y)
        assert ll == pytest.approx(ref, rel=1e-10, abs=1e-8)
        # β ~ N(μ0, diag(s0²)) integrated out: y ~ N(Xμ0, V + XΣ0X')
        mu0, s0 = rng.normal(size=design.p), rng.uniform(1, 100, size=design.p)
        ll = loglik(stats, sigma, Ts, prior_mu=mu0, prior_sd=s0)[0]
        ref = st.multivariate_normal(design.X @ mu0, V + design.X @ np.diag(s0**2) @ design.X.T).logpdf(design.y)
        assert ll == pytest.approx(ref, rel=1e-10, abs=1e-8)


def test_gradient_matches_finite_differences(case):
    name, design, stats = case
    rng = np.random.default_rng(2)
    for overrides in ({}, {"fixed": "StudentT(3, 0, 100)"}):
        spec = DensitySpec.build(stats, resolve_priors(design, overrides), design)
        assert spec.integrate_beta == (not overrides)
        x = rng.normal(size=spec.ndim) * 0.3
        x[0] = np.log(np.std(design.y) / 2)
        if not spec.integrate_beta:
            x[-design.p:] = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
        lp, g = spec.logp(x)
        assert np.isfinite(lp)
        h = 1e-6
        fd = np.array([(spec.logp(x + h * e)[0] - spec.logp(x - h * e)[0]) / (2 * h) for e in np.eye(spec.ndim)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


def test_exact_draws_match_the_gaussian_conditional():
    """(β, b) | y, σ, Ψ drawn by the engine against the dense conditional mean and covariance."""
    design = build_design("strength ~ 1 + (1 | batch/cask)", bayesmer.datasets.load("pastes"))
    stats = CollapsedStats.from_design(design)
    sigma, Ts = 0.9, [np.array([[1.5]]), np.array([[3.1]])]
    mu0, s0 = np.array([50.0]), np.array([20.0])
    S = 20_000
    beta, bs = draw_effects(stats, np.full(S, sigma), [np.tile(T, (S, 1, 1)) for T in Ts],
                            np.random.default_rng(3), prior_mu=mu0, prior_sd=s0)
    draws = np.hstack([beta, *[b.reshape(S, -1) for b in bs]])
    # dense: [β; b] ~ N([μ0; 0], blockdiag(Σ0, Ψ)), y | β, b ~ N(Xβ + Zb, σ²I)
    W = np.hstack([design.X, _dense_Z(design)])
    prior_var = np.concatenate([s0**2] + [np.full(t.n_levels, (sigma * T[0, 0]) ** 2) for t, T in zip(design.terms, Ts)])
    prec = W.T @ W / sigma**2 + np.diag(1 / prior_var)
    cov = np.linalg.inv(prec)
    mean = cov @ (W.T @ design.y / sigma**2 + np.concatenate([mu0 / s0**2, np.zeros(W.shape[1] - 1)]))
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.06 * np.sqrt(np.outer(np.diag(cov), np.diag(cov))).max())
    np.testing.assert_allclose(draws.std(0), np.sqrt(np.diag(cov)), rtol=0.03)


def test_pymc_model_and_compiled_density_agree():
    """The Op in fit.model and the density nutpie samples are one log posterior."""
    import pymc as pm

    from bayesmer.builder import build_model

    design = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmer.datasets.load("penicillin"))
    pri = resolve_priors(design)
    built = build_model(design, pri)
    assert built.strategy == "marginal" and built.integrate_beta
    logp = built.model.compile_logp()
    names = [v.name for v in built.model.value_vars]
    assert names == ["sigma_log__", "sd_plate_log__", "sd_sample_log__"]
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = np.log([2.0, 1.0, 3.0]) + rng.normal(size=3) * 0.3
        point = {"sigma_log__": x[0], "sd_plate_log__": x[1:2], "sd_sample_log__": x[2:3]}
        assert logp(point) == pytest.approx(built.density.logp(x)[0], rel=1e-10)
    # the Op's gradient as PyMC compiles it
    dlogp = built.model.compile_dlogp()
    g_pymc = dlogp(point)
    np.testing.assert_allclose(g_pymc, built.density.logp(x)[1], rtol=1e-8)
    assert pm.model_to_graphviz(built.model) is not None


def test_nutpie_private_fields_still_there():
    """The route builds nutpie's CompiledPyMCModel itself: the fields it fills must exist."""
    from nutpie.compile_pymc import CompiledPyMCModel

    names = {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    assert {"compiled_logp_func", "compiled_expand_func", "initial_point_func", "user_data", "n_expanded",
            "shape_info", "shared_data", "shared_var_keys", "_n_dim", "_shapes", "_coords", "dims"} <= names


def test_fit_runs_on_the_engine_and_draws_every_effect():
    data = _data("subjitems")
    fit = bayesmer.fit("y ~ x + (1 + x | subj) + (1 + x | item)", data, draws=300, tune=300, chains=2, seed=5,
                       progress=False)
    assert fit.strategy == "marginal"
    post = fit.idata["posterior"]
    assert post["b_subj"].shape == (2, 300, 30, 2) and post["b_item"].shape == (2, 300, 20, 2)
    assert post["beta"].shape == (2, 300, 2)
    # the posterior mean of b sits on REML's conditional modes
    for term in ("subj", "item"):
        ranef = fit.reml.ranef() if callable(fit.reml.ranef) else fit.reml.ranef
        r = ranef[term].to_numpy()
        m = post[f"b_{term}"].mean(("chain", "draw")).to_numpy()
        assert np.corrcoef(r.ravel(), m.ravel())[0, 1] > 0.98


def test_full_refuses_a_model_too_large_for_it():
    from bayesmer.builder import FULL_MAX_EFFECTS, BuildError, build_model

    g = np.arange(FULL_MAX_EFFECTS + 10)
    data = pd.DataFrame({"y": np.random.default_rng(0).normal(size=g.size * 2), "g": np.repeat(g, 2).astype(str)})
    design = build_design("y ~ 1 + (1 | g)", data)
    with pytest.raises(BuildError, match="strategy='marginal'"):
        build_model(design, resolve_priors(design), strategy="full")


def test_printed_priors_say_whether_beta_is_integrated_out():
    design = build_design("Reaction ~ Days + (Days | Subject)", bayesmer.datasets.load("sleepstudy"))
    normal = resolve_priors(design)
    assert "fixed effects: integrated out exactly" in str(normal)
    t = resolve_priors(design, {"Days": "StudentT(3, 0, 10)"})
    assert not t.integrates_beta
    assert "fixed effects: sampled by NUTS, not integrated out (StudentT on Days" in str(t)
    assert DensitySpec.build(CollapsedStats.from_design(design), t, design).integrate_beta is False


def test_offset_enters_the_engine_and_the_pointwise_loglik():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 10)
    x, off = rng.normal(size=300), rng.normal(size=300) * 2
    y = 1 + 0.5 * x + off + rng.normal(0, 0.7, 30)[g] + rng.normal(size=300)
    df = pd.DataFrame({"y": y, "x": x, "o": off, "g": g.astype(str), "y2": y - off})
    r1, r2 = bayesmer.reml("y ~ x + offset(o) + (1 | g)", df), bayesmer.reml("y2 ~ x + (1 | g)", df)
    np.testing.assert_allclose(r1.fixef().to_numpy(), r2.fixef().to_numpy(), rtol=1e-10)
    assert r1.objective == pytest.approx(r2.objective, rel=1e-12)
    fit = bayesmer.fit("y ~ x + offset(o) + (1 | g)", df, draws=100, tune=200, chains=2, seed=1, progress=False)
    post = fit.idata["posterior"]
    beta = post["beta"].values.reshape(-1, 2)
    b = post["b_g"].values.reshape(beta.shape[0], 30)
    sg = post["sigma"].values.reshape(-1, 1)
    d = build_design("y ~ x + offset(o) + (1 | g)", df)
    eta = beta @ d.X.T + b[:, d.terms[0].codes] + d.offset
    want = -0.5 * np.log(2 * np.pi * sg**2) - 0.5 * ((d.y - eta) / sg) ** 2
    np.testing.assert_allclose(fit.idata["log_likelihood"]["y"].values.reshape(-1, 300), want, rtol=1e-10)
