from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer

from bayesmer import DesignError, build_design
from bayesmer.design import new_data

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sleep():
    return bayesmer.datasets.load("sleepstudy")


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
    pastes = bayesmer.datasets.load("pastes")
    d = build_design("strength ~ 1 + (1 | batch/cask)", pastes)
    # lme4 sorts terms by decreasing number of levels
    assert [(t.name, t.n_levels) for t in d.terms] == [("batch:cask", 30), ("batch", 10)]
    assert d.terms[0].levels[:2] == ("A:a", "A:b")
    pen = bayesmer.datasets.load("penicillin")
    d = build_design("diameter ~ 1 + (1 | sample) + (1 | plate)", pen)
    assert [(t.name, t.n_levels) for t in d.terms] == [("plate", 24), ("sample", 6)]


def test_factor_left_of_bar(machines):
    d = build_design("score ~ Machine + (0 + Machine | Worker)", machines)
    assert d.fixed_names == ("(Intercept)", "MachineB", "MachineC")
    (term,) = d.terms
    assert term.terms == ("MachineA", "MachineB", "MachineC") and term.k == 3
    np.testing.assert_array_equal(term.Z.sum(axis=1), 1.0)


def test_interactions_and_transforms():
    df = bayesmer.datasets.load("ogorek")
    d = build_design("y ~ x + a + x * a + (1 + x | unit)", df)
    assert d.fixed_names == ("(Intercept)", "x", "a", "x:a")
    np.testing.assert_allclose(d.X[:, 3], df["x"] * df["a"])
    d = build_design("y ~ 0 + I(x ** 2) + (1 | unit)", df)
    assert d.fixed_names == ("I(x^2)",)  # R deparses ** as ^
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


# --- the designs built without formulaic match formulaic's exactly ----------


@pytest.mark.parametrize(
    "expr",
    ["x + a + x*a", "a*x", "x:a + a:x", "x*a*u", "0 + x", "x - 1", "1", "0 + x:a", "`my var`",
     "x + `my var`:a", "a:x + x + 1", "u", "I(x*2)", "b", "x + s", "log(x + 10)"],
)
def test_simple_matrix_matches_formulaic(expr):
    import formulaic

    from bayesmer.design import _parse, _simple_matrix

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=20), "a": rng.integers(0, 5, 20),
                       "u": rng.integers(0, 3, 20).astype(np.uint8), "b": rng.choice([True, False], 20),
                       "s": rng.choice(["p", "q"], 20), "my var": rng.normal(size=20)})
    ref = formulaic.model_matrix(expr, df)
    got = _simple_matrix(_parse(expr), df)
    if expr in ("I(x*2)", "b", "x + s", "log(x + 10)"):
        assert got is None  # left to formulaic
        return
    Z, names = got
    assert names == list(ref.columns)
    np.testing.assert_array_equal(Z, np.asarray(ref, dtype=float))


def test_fast_designs_equal_formulaic_designs(sleep, monkeypatch):
    import bayesmer.design as dm

    formulas = ["Reaction ~ Days + (Days || Subject)", "Reaction ~ Days * Days + (0 + Days | Subject)",
                "Reaction ~ 1 + (1 | Subject)"]
    fast = [build_design(f, sleep) for f in formulas]
    monkeypatch.setattr(dm, "_simple_matrix", lambda terms, frame: None)
    for f, a in zip(formulas, fast):
        b = build_design(f, sleep)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.X, b.X)
        assert a.fixed_names == b.fixed_names
        for ta, tb in zip(a.terms, b.terms):
            assert (ta.name, ta.terms, ta.levels, ta.expr) == (tb.name, tb.terms, tb.levels, tb.expr)
            np.testing.assert_array_equal(ta.Z, tb.Z)
            np.testing.assert_array_equal(ta.codes, tb.codes)
        assert list(a.fixed_spec.column_names) == list(b.fixed_spec.column_names)
        na, nb = new_data(a, sleep.head(7)), new_data(b, sleep.head(7))
        np.testing.assert_array_equal(na.X, nb.X)
        for za, zb in zip(na.Z, nb.Z):
            np.testing.assert_array_equal(za, zb)


def test_lazy_spec_pickles_and_rebuilds(sleep):
    import pickle

    d = pickle.loads(pickle.dumps(build_design("Reaction ~ Days + (Days || Subject)", sleep)))
    nd = new_data(d, sleep.iloc[[0, 11]])
    np.testing.assert_array_equal(nd.X, [[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(nd.Z[1], [[0.0], [1.0]])


@pytest.mark.parametrize("kind", ["str", "object", "int", "float", "bool", "mixed", "Int64", "date", "category"])
def test_factor_codes_keep_categorical_level_order(kind):
    from bayesmer.design import _factor_codes

    rng = np.random.default_rng(0)
    values = {
        "str": rng.choice(["b", "a", "C", "10", "9"], 50),
        "object": pd.Series(rng.choice(["b", "a", "C", "10", "9"], 50), dtype=object),
        "int": rng.choice([10, 9, -1, 100, 2], 50),
        "float": rng.choice([1.5, 0.25, 10.0, 2.0], 50),
        "bool": rng.choice([True, False], 50),
        "mixed": rng.choice(np.array([1, "a", 2.5, "b"], dtype=object), 50),
        "Int64": pd.array(rng.choice([3, 1, 2], 50), dtype="Int64"),
        "date": pd.to_datetime(rng.choice(["2020-01-02", "2019-05-01", "2021-01-01"], 50)),
        "category": pd.Categorical(rng.choice(["x", "y", "z"], 50), categories=["z", "x", "y", "w"]),
    }[kind]
    col = pd.Series(values)
    cat = col.cat.remove_unused_categories() if kind == "category" else col.astype("category")
    codes, levels = _factor_codes(col)
    np.testing.assert_array_equal(codes, cat.cat.codes.to_numpy(np.int64))
    assert levels == [str(c) for c in cat.cat.categories]


def test_nested_grouping_codes_in_lexicographic_order():
    df = pd.DataFrame({"y": np.arange(12.0), "b": list("BBAA" * 3), "c": list("xyxy" * 3)})
    d = build_design("y ~ 1 + (1 | b/c)", df)
    t = next(t for t in d.terms if t.group == "b:c")
    assert t.levels == ("A:x", "A:y", "B:x", "B:y")
    np.testing.assert_array_equal(t.codes, [2, 3, 0, 1] * 3)
