"""REML fits from the test suites and examples of lme4, nlme and MixedModels.jl
that use issue 9's spellings, against lme4's fits of the same formulas.

References: tests/data/suite_fits.jsonl, made by tests/data/make_suite_fits.R.
Tolerances are test_reml.py's: fixed effects, SEs, sigma and SDs to 1e-4
relative, correlations to 1e-4, the REML criterion to 1e-3.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

from bayesmer import parse_formula
from bayesmer.lmer import reml

DATA = Path(__file__).parent / "data"
REFS = [json.loads(line) for line in (DATA / "suite_fits.jsonl").read_text().splitlines() if line.strip()]


def _data(ref: dict) -> pd.DataFrame:
    df = load_data(ref["data"])
    for col, levels in ref["levels"].items():
        # R's factor levels (Orthodont's Sex is Male, Female), not sorted ones
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return df


@pytest.fixture(scope="module", params=REFS, ids=[r["id"] for r in REFS])
def case(request):
    ref = request.param
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lme4 fitted these without a warning
        fit = reml(ref["formula"], _data(ref), method="REML")
    return ref, fit


def test_fixed_effects(case):
    ref, fit = case
    assert list(fit.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"], rtol=1e-4)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    assert fit.nobs == ref["nobs"]


def test_reml_criterion(case):
    ref, fit = case
    assert fit.objective == pytest.approx(ref["objective"], abs=1e-3)


def _ours(fit, lme4_group: str, terms: list[str]) -> str:
    """Our term for lme4's group: same factors (lme4 writes a/b as b:a) and columns."""
    factors = set(lme4_group.split(":"))
    names = [t.name for t in fit.design.terms if set(t.factors) == factors and list(t.terms) == terms]
    assert len(names) == 1, (lme4_group, terms, [(t.name, t.terms) for t in fit.design.terms])
    return names[0]


def test_variance_components(case):
    ref, fit = case
    assert len(ref["varcorr"]) == len(fit.design.terms)
    for vc in ref["varcorr"]:
        name = _ours(fit, vc["group"], vc["terms"])
        np.testing.assert_allclose(fit.sd(name), vc["sd"], rtol=1e-4)
        if len(vc["terms"]) > 1:
            np.testing.assert_allclose(fit.corr(name), np.asarray(vc["corr"]), atol=1e-4)


def test_spelling_is_the_one_under_test():
    """The suite formulas parse to what lme4 reads (a guard against a reference
    file drifting to a spelling bayesmer handled before issue 9)."""
    by_id = {r["id"]: r for r in REFS}
    assert str(parse_formula(by_id["dyestuff_bare_bar"]["formula"])) == "Yield ~ 1 + (1 | Batch)"
    assert parse_formula(by_id["pixel"]["formula"]).fixed == "1 + day + I(day^2)"
    assert parse_formula(by_id["summary_x1"]["formula"]).fixed == "1 + x.1 + x.2"


def test_pixel_on_an_integer_day_column_is_not_xor():
    """The issue's silent wrong model: on an integer day, I(day^2) fitted day XOR 2
    (REML criterion 876.2); lme4's is 825.2."""
    ref = next(r for r in REFS if r["id"] == "pixel")
    df = _data(ref)
    assert df["day"].dtype.kind == "i"
    assert reml(ref["formula"], df).objective == pytest.approx(825.2102, abs=1e-3)
