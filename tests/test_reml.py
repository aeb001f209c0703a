"""REML/ML fits against lme4 1.1-31's recorded fits (tests/data/*.json)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

import bayesmer

from bayesmer import build_design
from bayesmer.lmer import RemlFit, fit_reml, reml

DATA = Path(__file__).parent / "data"
# the lme4 1.1-31 fits of ../shared/reference/lme4 (other JSON files here are brms and glmer references)
LME4_FITS = ("clark_intercepts", "clark_slopes", "dyestuff", "dyestuff2_singular", "ogorek_crosslevel",
             "ogorek_simple", "pastes_nested", "penicillin_crossed", "sleepstudy_ml", "sleepstudy_reml",
             "sleepstudy_uncorr")
REFS = [DATA / f"{name}.json" for name in LME4_FITS]


def _lme4_group(name: str) -> str:
    """lme4 names a nested term ``cask:batch``; we name it ``batch:cask``."""
    return ":".join(reversed(name.split(":"))) if ":" in name else name


def _lme4_level(level: str) -> str:
    return ":".join(reversed(level.split(":")))


@pytest.fixture(scope="module", params=REFS, ids=[p.stem for p in REFS])
def case(request):
    ref = json.loads(request.param.read_text())
    data = load_data(ref["data"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = reml(ref["formula"], data, method="REML" if ref["REML"] else "ML")
    return ref, fit, [str(w.message) for w in caught]


def _our_terms(fit: RemlFit, ref_group: str, ref_terms: list[str]):
    """Our term names covering lme4's group (``||`` splits one group in several)."""
    group = _lme4_group(ref_group)
    names = [t.name for t in fit.design.terms if t.group == group]
    cols = [(n, c) for n in names for c in fit.ranef[n].columns]
    assert [c for _, c in cols] == ref_terms
    return cols


def test_fixed_effects(case):
    ref, fit, _ = case
    assert list(fit.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"], rtol=1e-4)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=1e-4)
    np.testing.assert_allclose(fit.vcov.to_numpy(), ref["vcov"], rtol=2e-4, atol=1e-12)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)


def test_variance_components(case):
    ref, fit, _ = case
    for vc in ref["varcorr"]:
        group = _lme4_group(vc["group"])
        rows = fit.varcorr[fit.varcorr.group == group]
        assert len(rows), group
        sd = rows[rows.kind == "sd"].set_index("term1").value
        for term, want in zip(vc["terms"], vc["sd"]):
            if want == 0:
                assert sd[term] == 0.0
            else:
                assert sd[term] == pytest.approx(want, rel=1e-4), (group, term)
        k = len(vc["terms"])
        if k > 1:
            ours = fit.corr(group)
            np.testing.assert_allclose(ours, np.asarray(vc["corr"]), atol=1e-4)
    res = fit.varcorr.iloc[-1]
    assert (res.group, res.kind, res.term1, res.value) == ("Residual", "sd", "", fit.sigma)


def test_likelihood(case):
    ref, fit, _ = case
    assert fit.objective == pytest.approx(ref["objective"], abs=1e-3)
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-3)
    assert fit.aic == pytest.approx(ref["aic"], abs=1e-3)
    assert fit.bic == pytest.approx(ref["bic"], abs=1e-3)
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == {_lme4_group(g): v for g, v in ref["ngroups"].items()}
    assert len(fit.theta) == len(ref["theta"])
    assert fit.converged


def test_conditional_modes(case):
    ref, fit, _ = case
    for re_ref in ref["ranef"]:
        cols = _our_terms(fit, re_ref["group"], re_ref["terms"])
        levels = [_lme4_level(lv) if ":" in lv else lv for lv in re_ref["levels"]]
        want = np.asarray(re_ref["values"], dtype=float)
        got = np.column_stack([fit.ranef[n].loc[levels, c].to_numpy() for n, c in cols])
        floor = 1e-3 * np.max(np.abs(want)) if np.any(want) else 1e-12
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=floor)
        if re_ref["cond_sd"]:
            want_sd = np.asarray(re_ref["cond_sd"], dtype=float)
            got_sd = np.column_stack([fit.ranef_sd[n].loc[levels, c].to_numpy() for n, c in cols])
            floor = 1e-3 * np.max(want_sd) if np.any(want_sd) else 1e-12
            np.testing.assert_allclose(got_sd, want_sd, rtol=1e-3, atol=floor)


def test_singular_flag_and_warning(case):
    ref, fit, caught = case
    assert fit.singular == ref["singular"]
    singular_warned = any("boundary (singular) fit" in m for m in caught)
    assert singular_warned == ref["singular"]
    if ref["singular"]:
        assert np.all(fit.varcorr[fit.varcorr.group != "Residual"].query("kind == 'sd'").value == 0.0)


def test_summary_layout(case):
    ref, fit, _ = case
    text = fit.summary()
    head = "REML ['lmerMod']" if ref["REML"] else "maximum likelihood  ['lmerMod']"
    assert head in text.splitlines()[0]
    for piece in ["Formula:", "Scaled residuals:", "Random effects:", "Groups", "Std.Dev.",
                  "Residual", f"Number of obs: {ref['nobs']}", "Fixed effects:", "t value"]:
        assert piece in text
    assert str(fit) == text
    if ref["REML"]:
        assert "REML criterion at convergence:" in text


def test_cov_matrices_match_sd_and_corr(case):
    _, fit, _ = case
    for name, cov in fit.cov_matrices().items():
        sd = fit.sd(name)
        np.testing.assert_allclose(np.sqrt(np.diag(cov)), sd)
        if np.all(sd > 0):
            np.testing.assert_allclose(cov, fit.corr(name) * np.outer(sd, sd), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def sleep():
    return bayesmer.datasets.load("sleepstudy")


def test_ml_and_reml_differ_as_expected(sleep):
    f = "Reaction ~ Days + (Days | Subject)"
    r = reml(f, sleep)
    m = reml(f, sleep, method="ML")
    assert (r.method, m.method) == ("REML", "ML")
    np.testing.assert_allclose(r.fixef, m.fixef, rtol=1e-6)  # balanced design: same β
    # in this balanced design REML and ML share sigma at their optima (lme4's
    # two reference fits differ by 4e-6 relative); the random-effect SDs are
    # what REML's degrees-of-freedom correction inflates
    assert m.sigma == pytest.approx(r.sigma, rel=1e-5)
    assert np.all(m.sd("Subject") < r.sd("Subject"))
    assert np.all(m.se < r.se)
    assert "maximum likelihood" in m.summary() and "deviance" in m.summary()


def test_method_is_case_insensitive(sleep):
    """bayesmer.settings owns the valid methods; lme4's REML=TRUE/FALSE reads as either case here."""
    assert reml("Reaction ~ Days + (1 | Subject)", sleep, method="ml").method == "ML"


@pytest.mark.parametrize("bad", ["REMLE", "MLE", "", None])
def test_bad_method(sleep, bad):
    with pytest.raises(ValueError, match="method"):
        reml("Reaction ~ Days + (Days | Subject)", sleep, method=bad)
    with pytest.raises(ValueError, match="method"):
        fit_reml(build_design("Reaction ~ Days + (1 | Subject)", sleep), method=bad)


def test_unknown_term_name(sleep):
    fit = reml("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(KeyError, match="Subject"):
        fit.sd("Day")


def _simulate(n_groups=100, per=20, seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    cov = np.array([[1.0, 0.3 * 1.0 * 0.5], [0.3 * 1.0 * 0.5, 0.25]])
    b = rng.multivariate_normal([0, 0], cov, size=n_groups)
    y = 2.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(scale=0.8, size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def test_recovers_simulated_truth():
    """2,000 rows, one grouping factor with a random slope: truth is recovered."""
    fit = reml("y ~ x + (x | g)", _simulate())
    assert fit.sigma == pytest.approx(0.8, rel=0.1)
    np.testing.assert_allclose(fit.sd("g"), [1.0, 0.5], rtol=0.25)
    np.testing.assert_allclose(fit.fixef, [2.0, 0.5], atol=0.25)
    assert fit.converged and not fit.singular


def test_statistics_are_o_levels_not_rows():
    """The engine keeps per-level blocks and level-pair tables, nothing n x q."""
    from bayesmer.engine.profiled import Profiled

    d = build_design("y ~ x + (x | g)", _simulate())
    prob = Profiled.from_design(d, reml=True)
    A11, A1X, A1e = prob.stats.arrays[:3]
    assert A11.shape == (100, 2, 2) and A1X.shape == (100, 2, 2) and A1e.shape == (100, 2)
    assert prob.stats.q2 == 0
    d2 = build_design("y ~ x + (1 | a) + (1 | b)", _crossed_sim())
    arrays = Profiled.from_design(d2, reml=True).stats.arrays
    assert all(np.asarray(a).size < d2.n * 100 for a in arrays)


def test_crossed_blocked_matches_direct_dense():
    """The blocked deviance equals a direct dense evaluation of lme4's formula."""
    from bayesmer.engine.profiled import Profiled
    from bayesmer.engine.theta import theta_to_T

    data = bayesmer.datasets.load("penicillin")
    d = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    prob = Profiled.from_design(d, reml=True)
    theta = np.array([0.7, 1.9])
    Zs, lams = [], []
    for t, T in zip(d.terms, theta_to_T(theta, prob.ks)):
        Zs.append(np.eye(t.n_levels)[t.codes] * t.Z)
        lams.append(np.full(t.n_levels, T[0, 0]))
    Z = np.hstack(Zs) * np.concatenate(lams)
    n, p = d.n, d.p
    V = np.eye(n) + Z @ Z.T
    Vi = np.linalg.inv(V)
    X, y = d.X, d.y
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    s2 = r @ Vi @ r / (n - p)
    want = (np.linalg.slogdet(V)[1] + np.linalg.slogdet(X.T @ Vi @ X)[1]
            + (n - p) * (1 + np.log(2 * np.pi * s2)))
    assert prob.deviance(theta) == pytest.approx(want, abs=1e-8)


def _crossed_sim(seed=3, n=3000, n_a=700, n_b=400):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.5, n_a)[a] + rng.normal(0, 0.3, n_b)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})


@pytest.mark.parametrize("which", ["sleepstudy", "pastes", "penicillin", "uncorr", "pairs", "pairs_slope"])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_exact_gradient_matches_differences(which, method):
    """The analytic gradient agrees with central differences on every code path."""
    from bayesmer.engine.profiled import Profiled
    from bayesmer.engine.theta import n_theta, theta_lower

    specs = {
        "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv"),
        "pastes": ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "pastes.csv"),
        "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv"),
        "uncorr": ("Reaction ~ Days + (Days || Subject)", "sleepstudy.csv"),
        "pairs": ("y ~ x + (1 | a) + (1 | b)", None),
        "pairs_slope": ("y ~ x + (x | a) + (1 | b)", None),
    }
    formula, csv = specs[which]
    data = _crossed_sim() if csv is None else load_data(csv)
    prob = Profiled.from_design(build_design(formula, data), reml=method == "REML")
    if which.startswith("pairs"):  # the sparse crossed path: levels touch few rows of the dense block
        assert prob.stats.arrays[4].size < prob.stats.q2 * prob.stats.blk_G[0]
    rng = np.random.default_rng(7)
    lower = theta_lower(prob.ks)
    for _ in range(2):
        th = rng.uniform(0.2, 1.5, n_theta(prob.ks))
        th[lower != 0] = rng.normal(0, 0.3, int(np.sum(lower != 0)))
        f, g = prob.deviance_grad(th)
        assert f == pytest.approx(prob.deviance(th), abs=1e-9)
        h = 1e-4
        num = np.array([(prob.deviance(th + h * e) - prob.deviance(th - h * e)) / (2 * h)
                        for e in np.eye(len(th))])
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-5 * max(1.0, abs(f)) ** 0.5)


def test_lazy_tables_are_cached_and_consistent():
    df = bayesmer.datasets.load("sleepstudy")
    fit = reml("Reaction ~ Days + (Days || Subject)", df)
    assert fit.ranef is fit.ranef and fit.ranef_sd is fit.ranef_sd and fit.varcorr is fit.varcorr
    assert list(fit.vcov.index) == list(fit.fixef.index) == list(fit.vcov.columns)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov.to_numpy())), fit.se.to_numpy())
    assert set(fit.ranef) == set(fit.ranef_sd) == {"Subject", "Subject.1"}
    assert fit.ranef["Subject.1"].shape == (18, 1) and (fit.ranef_sd["Subject"].to_numpy() > 0).all()
    # the cached tables bypass the frozen dataclass, which still refuses writes
    with pytest.raises(Exception):
        fit.sigma = 1.0


def test_seed_tables_as_printed():
    """The numbers seeds 000 and 003 print, to the digits they print them."""
    og = reml("y ~ x + a + x * a + (1 + x | unit)", bayesmer.datasets.load("ogorek"))
    assert og.fixef.round(4).tolist() == [0.9776, 3.0670, -0.1108, 0.3577]
    cl = reml("y ~ x + (1 | clus)", bayesmer.datasets.load("clark_intercepts"))
    assert cl.fixef.round(5).tolist() == [2.90087, 0.79944]
