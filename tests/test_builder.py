"""The PyMC model: the marginal likelihood's Op against a dense computation, structure, errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest

import bayesmer
from scipy import stats

from bayesmer import build_design
from bayesmer.builder import BuildError, build_model
from bayesmer.engine import CollapsedStats, draw_effects
from bayesmer.priors import default_priors, resolve_priors

DATA = Path(__file__).parent / "data"


def _sleep(formula):
    return build_design(formula, bayesmer.datasets.load("sleepstudy"))


def _dense_marginal(design, beta, sigma, covs):
    """log N(y | Xβ, σ²I + ZΨZ') group by group, with numpy/scipy."""
    codes = design.terms[0].codes
    Z = np.concatenate([t.Z for t in design.terms], axis=1)
    K = Z.shape[1]
    Psi = np.zeros((K, K))
    off = 0
    for c in covs:
        k = c.shape[0]
        Psi[off : off + k, off : off + k] = c
        off += k
    total = 0.0
    for g in np.unique(codes):
        rows = codes == g
        Zg = Z[rows]
        cov = sigma**2 * np.eye(rows.sum()) + Zg @ Psi @ Zg.T
        total += stats.multivariate_normal(design.X[rows] @ beta, cov).logpdf(design.y[rows])
    return total


@pytest.mark.parametrize(
    "formula",
    ["Reaction ~ 1 + Days + (1 + Days | Subject)", "Reaction ~ Days + (Days || Subject)", "Reaction ~ 1 + (1 | Subject)"],
)
@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_marginal_matches_dense(formula, scale):
    """Exact at ordinary values and near sd = 0, where Ψ⁻¹ would blow up; β sampled (Student-t prior)."""
    d = _sleep(formula)
    built = build_model(d, resolve_priors(d, {"fixed": "StudentT(3, 0, 100)"}), "marginal")
    assert not built.integrate_beta
    m = built.model
    pot = m["marginal_loglik"]
    beta = np.array([250.0, 9.0])[: d.p]
    sigma = 27.0
    givens = {m["beta"]: beta, m["sigma"]: np.array(sigma)}
    covs = []
    for t in d.terms:
        sd = np.array([20.0, 5.0])[: t.k] * scale
        givens[m[f"sd_{t.name}"]] = sd
        R = np.eye(t.k)
        if t.k > 1:
            R = np.array([[1.0, 0.3], [0.3, 1.0]])
            givens[m[f"corr_chol_{t.name}"]] = np.linalg.cholesky(R)
        covs.append(np.outer(sd, sd) * R)
    with pytensor.config.change_flags(mode="FAST_COMPILE"):  # no C compilation for one value
        got = pot.eval(givens)
    assert got == pytest.approx(_dense_marginal(d, beta, sigma, covs), rel=1e-9)


def test_model_structure_and_graphviz():
    d = _sleep("Reaction ~ 1 + Days + (1 + Days | Subject)")
    for strategy in ["marginal", "full"]:
        built = build_model(d, default_priors(d), strategy)
        m = built.model
        assert built.strategy == strategy
        assert list(m.coords["fixed"]) == ["(Intercept)", "Days"]
        assert len(m.coords["Subject_level"]) == 18
        assert m.named_vars_to_dims["sd_Subject"] == ("Subject_term",)
        assert m.named_vars_to_dims["corr_Subject"] == ("Subject_pair",)
        if strategy == "full":
            assert m.named_vars_to_dims["b_Subject"] == ("Subject_level", "Subject_effect")
            assert "Reaction" in m.named_vars and "beta" in m.named_vars
        else:
            # b and, under the default Normal priors, β are integrated out and drawn after sampling
            assert "b_Subject" not in m.named_vars and "beta" not in m.named_vars
            assert built.integrate_beta
        pm.model_to_graphviz(m)
        assert set(built.hyper_names) == {"beta", "sd_Subject", "corr_Subject", "sigma"}


def test_auto_is_marginal_for_every_gaussian_model():
    pen = build_design("diameter ~ 1 + (1|plate) + (1|sample)", bayesmer.datasets.load("penicillin"))
    assert build_model(pen, default_priors(pen), "auto").strategy == "marginal"
    pastes = build_design("strength ~ 1 + (1 | batch/cask)", bayesmer.datasets.load("pastes"))
    assert build_model(pastes, default_priors(pastes), "auto").strategy == "marginal"
    d = _sleep("Reaction ~ Days + (Days || Subject)")
    assert build_model(d, default_priors(d), "auto").strategy == "marginal"
    with pytest.raises(BuildError, match="strategy must be"):
        build_model(d, default_priors(d), "exact")


def test_initial_point_from_reml_is_off_the_boundary():
    from bayesmer.lmer import fit_reml

    d = _sleep("Reaction ~ 1 + Days + (1 + Days | Subject)")
    r = fit_reml(d)
    built = build_model(d, default_priors(d), start=r)
    ip = built.initial_point
    assert "beta" not in ip  # integrated out under the default Normal priors
    ip = build_model(d, resolve_priors(d, {"fixed": "StudentT(3, 0, 100)"}), start=r).initial_point
    np.testing.assert_allclose(ip["beta"], r.fixef.to_numpy())
    np.testing.assert_allclose(ip["sd_Subject"], r.sd("Subject"))
    assert ip["sigma"] == pytest.approx(r.sigma)
    assert ip["corr_chol_Subject"].shape == (2, 2)


def test_conditional_b_moments():
    """Many exact draws at fixed (β, σ, Ψ) reproduce the BLUP mean and covariance."""
    d = _sleep("Reaction ~ 1 + Days + (1 + Days | Subject)")
    st = CollapsedStats.from_design(d)
    S = 20000
    beta = np.tile([251.4, 10.5], (S, 1))
    sigma = np.full(S, 25.6)
    L1 = np.array([[24.7, 0.0], [0.066 * 5.9, 5.9 * np.sqrt(1 - 0.066**2)]])
    _, (b,) = draw_effects(st, sigma, [np.tile(L1 / sigma[0], (S, 1, 1))], np.random.default_rng(1), beta=beta)
    Psi = L1 @ L1.T
    t = d.terms[0]
    for g in (0, 7):
        rows = t.codes == g
        Z, X, y = t.Z[rows], d.X[rows], d.y[rows]
        V = sigma[0] ** 2 * np.eye(rows.sum()) + Z @ Psi @ Z.T
        mean = Psi @ Z.T @ np.linalg.solve(V, y - X @ beta[0])
        cov = Psi - Psi @ Z.T @ np.linalg.solve(V, Z @ Psi)
        assert np.all(np.abs(b[:, g].mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / S))
        np.testing.assert_allclose(np.cov(b[:, g].T), cov, rtol=0.05, atol=0.05 * np.sqrt(np.outer(np.diag(cov), np.diag(cov))).max())
