"""Each lme4 formula spelling against R's model.matrix on the same data.

References: tests/data/mm_spellings.csv, made by tests/data/make_mm_spellings.R
(R's model.matrix and model.offset on mm_data.csv; on mm_newdata.csv through
R's prediction path, the training terms' predvars).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmer import DesignError, build_design
from bayesmer.design import new_data

DATA = Path(__file__).parent / "data"
REF = pd.read_csv(DATA / "mm_spellings.csv", dtype={"value": float})
CASES = list(dict.fromkeys(REF["case"]))


def _frame(path: str) -> pd.DataFrame:
    df = pd.read_csv(DATA / path)
    df["f"] = pd.Categorical(df["f"], categories=["a", "b", "c"])
    # a response and a grouping factor for the mixed model around each spelling
    df["y"] = np.linspace(1.0, 2.0, len(df)) ** 2
    df["g"] = np.arange(len(df)) % 4
    return df


TRAIN, NEW = _frame("mm_data.csv"), _frame("mm_newdata.csv")


def _reference(case: str, which: str) -> tuple[str, list[str], np.ndarray, np.ndarray | None]:
    ref = REF[(REF["case"] == case) & (REF["which"] == which)]
    columns = list(dict.fromkeys(ref["column"]))
    n = ref["row"].max() + 1
    mat = np.column_stack([ref.loc[ref["column"] == c].sort_values("row")["value"].to_numpy() for c in columns])
    assert mat.shape[0] == n
    offset = None
    if "(offset)" in columns:
        offset = mat[:, columns.index("(offset)")]
        mat = mat[:, [i for i, c in enumerate(columns) if c != "(offset)"]]
        columns.remove("(offset)")
    return ref["formula"].iloc[0], columns, mat, offset


@pytest.mark.parametrize("case", CASES)
def test_fixed_part_matches_model_matrix(case):
    rhs, names, want, offset = _reference(case, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: R's matrices are full rank
        d = build_design(f"y {rhs} + (1 | g)", TRAIN)
    assert list(d.fixed_names) == names
    np.testing.assert_allclose(d.X, want, rtol=1e-9, atol=1e-12)
    if offset is None:
        assert d.offset is None
    else:
        np.testing.assert_allclose(d.offset, offset, rtol=1e-12)
    # prediction reuses the training basis: R's predict() path on new rows
    _, names_new, want_new, offset_new = _reference(case, "new")
    nd = new_data(d, NEW)
    np.testing.assert_allclose(nd.X, want_new, rtol=1e-9, atol=1e-12)
    if offset_new is not None:
        np.testing.assert_allclose(nd.offset, offset_new, rtol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("offset")])
def test_random_part_matches_model_matrix(case):
    """The same spelling left of a bar gives R's columns for the term."""
    rhs, names, want, _ = _reference(case, "train")
    d = build_design(f"y ~ 1 + ({rhs.removeprefix('~ ')} | g)", TRAIN)
    (term,) = d.terms
    assert term.terms == tuple(names)
    np.testing.assert_allclose(term.Z, want, rtol=1e-9, atol=1e-12)
    _, _, want_new, _ = _reference(case, "new")
    np.testing.assert_allclose(new_data(d, NEW).Z[0], want_new, rtol=1e-9, atol=1e-12)


def test_power_on_integer_column_is_a_power_not_xor():
    """Python's ^ on an int column is XOR; R's I(day^2) is the square."""
    d = build_design("y ~ day + I(day^2) + (1 | g)", TRAIN)
    np.testing.assert_array_equal(d.X[:, 2], TRAIN["day"].to_numpy() ** 2)


def test_backticked_grouping_with_space():
    df = TRAIN.assign(**{"my group": TRAIN["g"].map({0: "p q", 1: "r s", 2: "t", 3: "u"})})
    d = build_design("y ~ x + (1 | `my group`)", df)
    assert d.terms[0].group == "my group" and d.terms[0].levels == ("p q", "r s", "t", "u")


@pytest.mark.parametrize("values", [np.full(40, 3.0), np.r_[np.full(38, 2.0), np.nan, np.nan]])
def test_constant_response_is_named(values):
    df = TRAIN.assign(resp=values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DesignError, match=r"response 'resp' \(column 'resp'\) is constant"):
            build_design("resp ~ x + (1 | g)", df)


def test_relevel_unknown_reference_is_named():
    with pytest.raises(DesignError, match="ref = 'd' is not a level"):
        build_design('y ~ relevel(f, ref = "d") + (1 | g)', TRAIN)


def test_center_is_r_scale_without_scaling():
    """center(x) (formulaic's; R has none) is R's scale(x, scale = FALSE)."""
    _, _, want, _ = _reference("scale_noscale", "train")
    d = build_design("y ~ center(x) + (1 | g)", TRAIN)
    assert d.fixed_names == ("(Intercept)", "center(x)")
    np.testing.assert_allclose(d.X, want, rtol=1e-12)


def test_lag_is_refused_with_the_reason():
    from bayesmer import FormulaError

    # R's lag() of a data column is a no-op in a model frame, formulaic's shifts
    with pytest.raises(FormulaError, match=r"lag\(\) in .* leaves the values where they are"):
        build_design("y ~ lag(x) + (1 | g)", TRAIN)
