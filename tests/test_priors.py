"""Prior objects, parsing, defaults and overrides."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import bayesmer
from bayesmer import build_design
from bayesmer.priors import (
    LKJ,
    Exponential,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    PriorError,
    PriorSet,
    StudentT,
    default_priors,
    parse_prior,
    resolve_priors,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sleep():
    return build_design("Reaction ~ 1 + Days + (1 + Days | Subject)", bayesmer.datasets.load("sleepstudy"))


@pytest.mark.parametrize(
    "prior",
    [Normal(0, 500), StudentT(3, 0, 2.5), HalfCauchy(5), HalfNormal(2), HalfStudentT(3, 1.5), Exponential(0.1), LKJ(2)],
)
def test_round_trip(prior):
    assert parse_prior(str(prior)) == prior
    assert parse_prior(prior) is prior


def test_str_and_keywords():
    assert str(HalfCauchy(5)) == "HalfCauchy(5)"
    assert parse_prior(" Normal( 0 , sigma = 10 ) ") == Normal(0, 10)
    assert parse_prior("HalfStudentT(nu=3, sigma=2)") == HalfStudentT(3, 2)


@pytest.mark.parametrize(
    "text, match",
    [
        ("Foo(1)", "unknown prior family 'Foo'"),
        ("HalfCauchy", "cannot parse"),
        ("Normal(0, 1", "cannot parse"),
        ("Normal(0)", "takes 2 parameter"),
        ("HalfCauchy(1, 2)", "takes 1 parameter"),
        ("Normal(0, sigma=abc)", "not a number"),
        ("Normal(0, scale=1)", "no parameter 'scale'"),
        ("__import__('os')", "unknown prior family"),
        ("HalfCauchy(-5)", "must be positive"),
        ("Normal(0, 0)", "must be positive"),
        ("Normal(0, inf)", "finite"),
        ("LKJ(0)", "must be positive"),
    ],
)
def test_parse_errors(text, match):
    with pytest.raises(PriorError, match=match):
        parse_prior(text)


def test_constructor_validates():
    with pytest.raises(PriorError, match="positive"):
        HalfNormal(-1)
    with pytest.raises(PriorError, match="number"):
        Normal("a", 1)
    with pytest.raises(PriorError):
        parse_prior(5)


def test_logp_normalised():
    for prior in [HalfCauchy(3), HalfNormal(2), HalfStudentT(3, 1.5), Exponential(0.5)]:
        total, _ = integrate.quad(lambda x: np.exp(prior.logp(x)), 0, np.inf)
        assert total == pytest.approx(1, rel=1e-5)
    total, _ = integrate.quad(lambda r: np.exp(LKJ(2).logp(np.array([[1, r], [r, 1]]))), -1, 1)
    assert total == pytest.approx(1, rel=1e-6)


def test_defaults_scaled_to_data(sleep):
    ps = default_priors(sleep)
    y, days = sleep.y, sleep.X[:, 1]
    sy = y.std(ddof=1)
    slope = 2.5 * sy / days.std(ddof=1)
    assert ps.fixed_prior("Days").mu == 0
    assert ps.fixed_prior("Days").sigma == pytest.approx(slope)
    icpt = ps.fixed_prior("(Intercept)")
    assert icpt.mu == pytest.approx(y.mean())
    # wide enough for the intercept at Days = 0
    assert icpt.sigma == pytest.approx(np.hypot(2.5 * sy, slope * days.mean()))
    assert isinstance(ps.sigma, HalfCauchy) and ps.sigma.beta == pytest.approx(sy)
    sd_int, sd_days = ps.sd_priors("Subject")
    assert sd_int.beta == pytest.approx(sy)
    assert sd_days.beta == pytest.approx(sy / days.std(ddof=1))
    assert ps.corr_prior("Subject") == LKJ(2)


def test_overrides(sleep):
    ps = resolve_priors(
        sleep,
        {"sd(Days|Subject)": HalfNormal(3), "fixed": "Normal(0, 500)", "sd": "HalfCauchy(50)", "Days": "StudentT(3, 0, 10)"},
    )
    assert ps.fixed_prior("(Intercept)") == Normal(0, 500)
    assert ps.fixed_prior("Days") == StudentT(3, 0, 10)
    assert ps.sd_priors("Subject") == (HalfCauchy(50), HalfNormal(3))
    assert ps.sigma == default_priors(sleep).sigma
    ps2 = resolve_priors(sleep, {"corr(Subject)": "LKJ(4)", "sigma": "Exponential(0.1)"})
    assert ps2.corr_prior("Subject") == LKJ(4) and ps2.sigma == Exponential(0.1)


def test_override_errors(sleep):
    with pytest.raises(PriorError, match=r"unknown prior name 'Dayz'.*sd\(Days\|Subject\)"):
        resolve_priors(sleep, {"Dayz": "Normal(0, 1)"})
    with pytest.raises(PriorError, match="unknown prior name"):
        resolve_priors(sleep, {"sd(Days|Subjct)": "HalfCauchy(1)"})
    with pytest.raises(PriorError, match="fixed effect"):
        resolve_priors(sleep, {"Days": "HalfCauchy(1)"})
    with pytest.raises(PriorError, match="standard deviation"):
        resolve_priors(sleep, {"sd": "LKJ(2)"})
    with pytest.raises(PriorError, match="correlation"):
        resolve_priors(sleep, {"corr(Subject)": "Normal(0, 1)"})
    with pytest.raises(PriorError, match="must be positive"):
        resolve_priors(sleep, {"sigma": "HalfCauchy(-1)"})


def test_priorset_table_and_dict(sleep):
    ps = default_priors(sleep)
    assert isinstance(ps, PriorSet)
    text = str(ps)
    for slot in ["(Intercept)", "sd(Days|Subject)", "corr(Subject)", "sigma", "LKJ(2)"]:
        assert slot in text
    d = ps.to_dict()
    assert resolve_priors(sleep, d) == ps
    with pytest.raises(Exception):
        ps.sigma = HalfCauchy(1)


def test_double_bar_names():
    d = build_design("Reaction ~ Days + (Days || Subject)", bayesmer.datasets.load("sleepstudy"))
    ps = default_priors(d)
    names = set(ps.to_dict())
    assert {"sd((Intercept)|Subject)", "sd(Days|Subject.1)"} <= names
    assert not ps.corr
