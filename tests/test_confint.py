"""lme4's confint.merMod: profile intervals of the variance parameters and the fixed effects, Wald rows.

References: tests/data/make_confint_refs.R (lme4 1.1-31's ``profile()`` and ``confint()``), on sleepstudy
(correlated and uncorrelated slopes), Penicillin (crossed) and Dyestuff2 (an SD at 0: lower end 0).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmer
from bayesmer.lmer import _VarProfiler, _norm_inter, bootstrap, fit_reml

from conftest import DATA

REF = json.loads((DATA / "confint_profile.json").read_text())
BOOT = json.loads((DATA / "confint_boot.json").read_text())
DATASETS = {"sleepstudy": "sleepstudy", "sleepstudy_uncorr": "sleepstudy", "penicillin": "penicillin",
            "dyestuff2": "dyestuff2"}


def _data(id_):
    if id_ == "machines":
        return pd.read_csv(DATA / "suite_machines.csv").astype({"Worker": str})
    return bayesmer.datasets.load(DATASETS[id_])


def _fit(id_, method="REML"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dyestuff2 is singular
        return bayesmer.reml(REF[id_]["formula"], _data(id_), method=method)


@pytest.mark.parametrize("id_", ["sleepstudy", "sleepstudy_uncorr", "penicillin", "dyestuff2"])
def test_profile_intervals_match_lme4(id_):
    ref = REF[id_]
    ci = _fit(id_).confint(method="profile")
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == ref["names"]
    # lme4 reads the ends off a spline through its profile; the must-show is 1e-3 relative
    np.testing.assert_allclose(ci["2.5 %"], ref["lower"], rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(ci["97.5 %"], ref["upper"], rtol=1e-3, atol=1e-12)


def test_boundary_sd_has_lower_end_zero_and_other_levels():
    ci = _fit("dyestuff2").confint(method="profile", level=0.8, parm="theta_", old_names=False)
    ref = REF["dyestuff2"]
    assert list(ci.index) == ref["new_names"][:2] == ["sd_(Intercept)|Batch", "sigma"]
    assert ci.iloc[0, 0] == 0.0
    assert list(ci.columns) == ["10 %", "90 %"]
    np.testing.assert_allclose(ci["10 %"], ref["lower80"][:2], rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(ci["90 %"], ref["upper80"][:2], rtol=1e-3)


def test_profile_of_an_ml_fit_and_by_name():
    # a REML fit is profiled on its ML refit, as lme4's profile(): the ML fit gives the same intervals
    ref = REF["penicillin"]
    ci = _fit("penicillin", method="ML").confint(method="profile", parm=["sd_(Intercept)|sample", ".sig01"],
                                                  level=0.8)
    assert list(ci.index) == [".sig02", ".sig01"]
    np.testing.assert_allclose(ci["10 %"], [ref["lower80"][1], ref["lower80"][0]], rtol=1e-3)
    np.testing.assert_allclose(ci["90 %"], [ref["upper80"][1], ref["upper80"][0]], rtol=1e-3)


def test_the_profile_curve_itself_matches_lme4():
    """zeta at lme4's own profile points (not only where it crosses the cut-off)."""
    ref = REF["penicillin"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = fit_reml(_fit("penicillin").design, method="ML")
    prof = _VarProfiler(ml)
    np.testing.assert_allclose(prof.x0, ref["ml_sdcor"], rtol=1e-5)
    np.testing.assert_allclose(prof.base, ref["ml_deviance"], rtol=1e-9)
    for curve in ref["curve"]:
        w = ref["names"].index(curve["par"])
        cache = {prof.x0[w]: (0.0, prof.x0.copy())}
        got = [prof.zeta(w, v, cache) for v in curve["value"]]
        np.testing.assert_allclose(got, curve["zeta"], atol=5e-4)


def test_three_by_three_term_names_sds_and_valid_correlations():
    """Machines, (Machine | Worker): lme4's names and its SD and sigma rows. Its correlation rows are not
    references: with three columns, correlations each in [-1, 1] need not make a valid matrix, and lme4's
    profile maps such points to another matrix (it warns of non-monotonic profiles and reports -1 for a
    correlation whose deviance has risen by 9 at -0.95). Ours searches over valid matrices only: at each
    end the deviance has risen by exactly qchisq(0.95, 1), checked here by refitting with the
    correlation held there from other starting points."""
    ref = REF["machines"]
    fit = _fit("machines")
    assert list(fit.confint(parm="theta_").index) == ref["names"][:7]
    assert list(fit.confint(parm="theta_", old_names=False).index) == ref["new_names"][:7]
    ci = fit.confint(method="profile", parm=[".sig01", ".sigma"])
    np.testing.assert_allclose(ci["2.5 %"], [ref["lower"][0], ref["lower"][6]], rtol=1e-3)
    np.testing.assert_allclose(ci["97.5 %"], [ref["upper"][0], ref["upper"][6]], rtol=1e-3)
    lo = fit.confint(method="profile", parm=[".sig03"]).iloc[0, 0]
    assert -0.9 < lo < -0.8  # lme4: -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = _VarProfiler(fit_reml(fit.design, method="ML"))
    cut = stats.chi2.ppf(0.95, 1)
    rng = np.random.default_rng(1)
    rises = []
    for _ in range(4):
        start = prof.x0 * np.r_[np.exp(rng.normal(0, 0.3, 6)), 1.0]
        start[[1, 4]] = rng.uniform(-0.5, 0.5, 2)
        start[2] = lo
        rises.append(prof._inner(2, lo, start)[0] - prof.base)
    np.testing.assert_allclose(min(rises), cut, rtol=1e-4)


def test_wald_rows_and_errors():
    fit = _fit("sleepstudy")
    ci = fit.confint()
    assert list(ci.index) == REF["sleepstudy"]["names"]
    assert ci.iloc[:4].isna().all().all()  # lme4: NA for the variance parameters
    se = fit.se["Days"]
    np.testing.assert_allclose(ci.loc["Days"], fit.fixef()["Days"] + np.array([-1, 1]) * 1.959963984540054 * se)
    assert list(fit.confint(old_names=False, parm="theta_").index) == REF["sleepstudy"]["new_names"][:4]
    with pytest.raises(ValueError, match=r"unknown parm \['sd_Days'\]"):
        fit.confint(parm=["sd_Days"])
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        fit.confint(level=95)
    with pytest.raises(ValueError, match="method must be 'Wald', 'profile' or 'boot'"):
        fit.confint(method="bca")


def test_bootstrap_percentile_intervals_near_lme4s():
    """lme4's confint(method = "boot") with 4000 simulations against 300 of ours: each end within 15% of the
    interval's width (about 4 Monte Carlo SEs of a 2.5% quantile from 300 draws); the SD's lower end is 0 in
    both, as more than 2.5% of the simulated data sets give a singular fit."""
    ref = BOOT["dyestuff"]
    fit = bayesmer.reml(ref["formula"], bayesmer.datasets.load("dyestuff"))
    ci = fit.confint(method="boot", nsim=300, seed=20261203)
    assert list(ci.index) == ref["names"]
    width = np.subtract(ref["upper"], ref["lower"])
    assert ci.iloc[0, 0] == 0.0
    np.testing.assert_array_less(np.abs(ci["2.5 %"] - ref["lower"]), 0.15 * width)
    np.testing.assert_array_less(np.abs(ci["97.5 %"] - ref["upper"]), 0.15 * width)
    # the same seed, the same draws; the refits keep the fit's method (REML here, as lme4's refit)
    sims = bootstrap(fit, nsim=5, seed=1)
    np.testing.assert_array_equal(sims.to_numpy(), bootstrap(fit, nsim=5, seed=1).to_numpy())
    assert list(sims.columns) == ref["names"]


def test_norm_inter_as_boot():
    # R: boot:::norm.inter(1:99 + 0, c(0.025, 0.1, 0.975)) gives 2.542249, 10 and 97.457751
    t = np.random.default_rng(0).permutation(np.arange(1.0, 100.0))
    np.testing.assert_allclose([_norm_inter(t, a) for a in (0.025, 0.1, 0.975)], [2.542249, 10.0, 97.457751],
                               rtol=1e-6)
