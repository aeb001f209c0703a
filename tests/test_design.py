from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmer import DesignError, build_design
from bayesmer.design import new_data

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(DATA / "sleepstudy.csv")


@pytest.fixture(scope="module")
def machines():
    # Machines-shaped data: 6 workers x 3 machines x 3 replicates
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        [(w, m) for w in range(1, 7) for m in "ABC" for _ in range(3)], columns=["Worker", "Machine"]
    )
    df["score"] = 50 + rng.normal(size=len(df))
    return df


def test_sleepstudy(sleep):
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    assert d.fixed_names == ("(Intercept)", "Days")
    assert d.n == 180 and d.X.shape == (180, 2)
    np.testing.assert_array_equal(d.y, sleep["Reaction"].to_numpy())
    (term,) = d.terms
    assert term.name == "Subject" and term.terms == ("(Intercept)", "Days")
    # numeric Subject is read as categorical with its values sorted
    assert term.n_levels == 18 and term.levels[:2] == ("308", "309")
    assert term.Z.shape == (180, 2)
    np.testing.assert_array_equal(term.Z[:, 1], sleep["Days"].to_numpy())
    assert (term.codes[:10] == 0).all() and term.codes.max() == 17


def test_double_bar_names_like_lme4(sleep):
    d = build_design("Reaction ~ Days + (Days || Subject)", sleep)
    assert [(t.name, t.terms) for t in d.terms] == [("Subject", ("(Intercept)",)), ("Subject.1", ("Days",))]


def test_terms_in_lme4_order():
    pastes = pd.read_csv(DATA / "pastes.csv")
    d = build_design("strength ~ 1 + (1 | batch/cask)", pastes)
    # lme4 sorts terms by decreasing number of levels
    assert [(t.name, t.n_levels) for t in d.terms] == [("batch:cask", 30), ("batch", 10)]
    assert d.terms[0].levels[:2] == ("A:a", "A:b")
    pen = pd.read_csv(DATA / "penicillin.csv")
    d = build_design("diameter ~ 1 + (1 | sample) + (1 | plate)", pen)
    assert [(t.name, t.n_levels) for t in d.terms] == [("plate", 24), ("sample", 6)]


def test_factor_left_of_bar(machines):
    d = build_design("score ~ Machine + (0 + Machine | Worker)", machines)
    assert d.fixed_names == ("(Intercept)", "MachineB", "MachineC")
    (term,) = d.terms
    assert term.terms == ("MachineA", "MachineB", "MachineC") and term.k == 3
    np.testing.assert_array_equal(term.Z.sum(axis=1), 1.0)


def test_interactions_and_transforms():
    df = pd.read_csv(DATA / "ogorek.csv")
    d = build_design("y ~ x + a + x * a + (1 + x | unit)", df)
    assert d.fixed_names == ("(Intercept)", "x", "a", "x:a")
    np.testing.assert_allclose(d.X[:, 3], df["x"] * df["a"])
    d = build_design("y ~ 0 + I(x ** 2) + (1 | unit)", df)
    assert d.fixed_names == ("I(x ** 2)",)
    np.testing.assert_allclose(d.X[:, 0], df["x"] ** 2)


def test_missing_rows_dropped_with_count(sleep):
    df = sleep.copy()
    df.loc[[3, 7], "Days"] = np.nan
    df.loc[11, "Subject"] = None
    with pytest.warns(UserWarning, match=r"3 row\(s\) with missing values in \['Days', 'Subject'\]"):
        d = build_design("Reaction ~ Days + (Days | Subject)", df)
    assert d.n == 177 and d.n_dropped == 3
    # an unused column with missing values drops nothing
    df = sleep.assign(other=np.nan)
    assert build_design("Reaction ~ Days + (1 | Subject)", df).n == 180


def test_rank_deficient_x_drops_aliased(sleep):
    df = sleep.assign(Days2=2 * sleep["Days"])
    with pytest.warns(UserWarning, match=r"rank deficient so dropping 1 column\(s\): \['Days2'\]"):
        d = build_design("Reaction ~ Days + Days2 + (1 | Subject)", df)
    assert d.fixed_names == ("(Intercept)", "Days") and d.aliased == ("Days2",)


@pytest.mark.parametrize(
    ("formula", "mutate", "message"),
    [
        ("Reaction ~ Dayz + (1 | Subject)", None, "unknown column 'Dayz'"),
        ("Reaction ~ Days + (1 | Subjekt)", None, "unknown grouping column 'Subjekt'"),
        ("Reaction ~ Days + (Hours | Subject)", None, "unknown column 'Hours'"),
        ("Name ~ Days + (1 | Subject)", "name", "response column 'Name' is not numeric"),
        ("Reaction ~ Days + (1 | One)", "one", "single level"),
        ("Reaction ~ Days + (1 | Row)", "row", "180 levels for 180 rows"),
        ("Reaction ~ Days + (1 | Subject)", "inf", r"infinite or undefined value\(s\) in \['Days'\]"),
        ("Reaction ~ Days + (1 | Subject)", "empty", "empty"),
        ("log(Reaction) ~ Days + (1 | Subject)", "negative", "response 'log\\(Reaction\\)'"),
    ],
)
def test_bad_input_names_the_culprit(sleep, formula, mutate, message):
    df = sleep.copy()
    if mutate == "name":
        df["Name"] = "x"
    elif mutate == "one":
        df["One"] = "a"
    elif mutate == "row":
        df["Row"] = np.arange(len(df))
    elif mutate == "inf":
        df["Days"] = df["Days"].astype(float)
        df.loc[5, "Days"] = np.inf
    elif mutate == "empty":
        df = df.iloc[:0]
    elif mutate == "negative":
        df.loc[0, "Reaction"] = -1.0
    with pytest.raises(DesignError, match=message):
        with np.errstate(all="ignore"):
            build_design(formula, df)


def test_new_data_marks_new_levels(sleep):
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    new = pd.DataFrame({"Days": [1.0, 2.0], "Subject": [308, 999]})
    nd = new_data(d, new)
    np.testing.assert_array_equal(nd.X, [[1, 1], [1, 2]])
    np.testing.assert_array_equal(nd.codes[0], [0, -1])
    np.testing.assert_array_equal(nd.Z[0], [[1, 1], [1, 2]])
