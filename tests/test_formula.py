import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesmer import FormulaError, build_design, parse_formula


@pytest.mark.parametrize(
    ("formula", "canonical"),
    [
        ("Reaction ~ Days + (Days | Subject)", "Reaction ~ 1 + Days + (1 + Days | Subject)"),
        # R's terms(): a*b is a + b + a:b
        ("y ~ x + a + x*a + (1 + x | unit)", "y ~ 1 + x + a + x:a + (1 + x | unit)"),
        # the double bar splits into independent terms, as lme4's expandDoubleVerts
        ("Reaction ~ Days + (Days || Subject)", "Reaction ~ 1 + Days + (1 | Subject) + (0 + Days | Subject)"),
        ("y ~ x + (0 + x + z || g)", "y ~ 1 + x + (0 + x | g) + (0 + z | g)"),
        # ... one term per term label, as lme4 (x*z has three)
        ("y ~ (x*z || g)", "y ~ 1 + (1 | g) + (0 + x | g) + (0 + z | g) + (0 + x:z | g)"),
        ("strength ~ 1 + (1 | batch/cask)", "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
        ("y ~ 1 + (1 | a/b/c)", "y ~ 1 + (1 | a) + (1 | a:b) + (1 | a:b:c)"),
        ("y ~ (1 | a:b)", "y ~ 1 + (1 | a:b)"),
        ("d ~ 1 + (1|plate) + (1|sample)", "d ~ 1 + (1 | plate) + (1 | sample)"),
        ("y ~ 0 + x + (0 + Machine | Worker)", "y ~ 0 + x + (0 + Machine | Worker)"),
        ("y ~ x - 1 + (x - 1 | g)", "y ~ 0 + x + (0 + x | g)"),
        ("y ~ -1 + x + (1 | g)", "y ~ 0 + x + (1 | g)"),
        # ** is R's ^; inside I() a power, printed as R deparses it
        ("log(y) ~ I(x ** 2) + C(a) + (1 | g) + (0 + x | g)", "log(y) ~ 1 + I(x^2) + C(a) + (1 | g) + (0 + x | g)"),
        ("pixel ~ day + I(day^2) + (day | Dog)", "pixel ~ 1 + day + I(day^2) + (1 + day | Dog)"),
        # outside I() ^ is the interaction power
        ("y ~ (a + b + c)^2 + (1 | g)", "y ~ 1 + a + b + c + a:b + a:c + b:c + (1 | g)"),
        ("y ~ a*b*c - a:b:c + (1 | g)", "y ~ 1 + a + b + a:b + c + a:c + b:c + (1 | g)"),
        ("y ~ a/b + (1 | g)", "y ~ 1 + a + a:b + (1 | g)"),
        ("y ~ x +\n   (x | g)", "y ~ 1 + x + (1 + x | g)"),
        # a bar without parentheses: R's precedence makes it the whole right side
        ("Yield ~ 1 | Batch", "Yield ~ 1 + (1 | Batch)"),
        ("log(y) ~ x | z", "log(y) ~ 1 + (1 + x | z)"),
        ("y ~ x + x | g", "y ~ 1 + (1 + x | g)"),
        ("y ~ (x + (1 | g))", "y ~ 1 + x + (1 | g)"),
        ("y ~ x + ((1 | g))", "y ~ 1 + x + (1 | g)"),
        ('y ~ relevel(f, ref = "caf\u00e9 \\"x\\"") + (1 | g)', 'y ~ 1 + relevel(f, ref = "caf\u00e9 \\"x\\"") + (1 | g)'),
        # R's names: dots, backticks (kept only where R needs them)
        ("y ~ x.1 + `x.2` + `my var` + (1 | `my group`)", "y ~ 1 + x.1 + x.2 + `my var` + (1 | `my group`)"),
        ("y ~ poly(x,2) + poly(x, 3, raw=TRUE) + relevel(f, ref='b') + (1 | g)",
         'y ~ 1 + poly(x, 2) + poly(x, 3, raw = TRUE) + relevel(f, ref = "b") + (1 | g)'),
        ("y ~ x + offset(log(n)) + (1 | g)", "y ~ 1 + x + offset(log(n)) + (1 | g)"),
        ("y ~ splines::ns(x, df = 3) + (1 | g)", "y ~ 1 + splines::ns(x, df = 3) + (1 | g)"),
        ("y ~ factor(z > 6) + I(-x^2/2) + (1 | g)", "y ~ 1 + factor(z > 6) + I(-x^2/2) + (1 | g)"),
    ],
)
def test_canonical_string(formula, canonical):
    parsed = parse_formula(formula)
    assert str(parsed) == canonical
    # printing is a fixed point: the canonical form parses back to itself
    assert str(parse_formula(canonical)) == canonical


def test_parts():
    f = parse_formula("y ~ x + a + x:a + offset(z) + (1 + x | unit) + (1 | a:b)")
    assert f.response == "y"
    assert f.fixed == "1 + x + a + x:a"
    assert f.offset == ("z",)
    assert [t.factors for t in f.random] == [("unit",), ("a", "b")]
    assert [t.expr for t in f.random] == ["1 + x", "1"]
    assert f.random[1].group == "a:b"
    g = parse_formula("y ~ 1 + (1 | `my group`/`x.1`)")
    assert [t.factors for t in g.random] == [("my group",), ("my group", "x.1")]


def test_columns_read_by_named_arguments():
    from bayesmer.formula import columns_of

    f = parse_formula('y ~ poly(degree = 2, x = `x.1`) + relevel(ref = "b", f):z + offset(log(n)) + (1 | g)')
    assert columns_of(f.fixed) == {"x.1", "f", "z"} and columns_of(f.offset[0]) == {"n"}


def test_interaction_labels_follow_first_appearance():
    # R's terms(): a factor's place in a label is its first appearance
    assert parse_formula("y ~ b:a + a + (1 | g)").fixed == "1 + b:a + a"
    assert parse_formula("y ~ a + b + b:a + (1 | g)").fixed == "1 + a + b + a:b"


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x + (| g)", "nothing left of the bar"),
        ("y ~ x + (x | g", "unbalanced parentheses"),
        ("y ~ x + x | g)", "unbalanced parentheses"),
        ("y ~ x", "plain regression"),
        ("y ~ x + (x | )", "no grouping factor"),
        ("~ x + (1 | g)", "no response"),
        ("y ~ ", "no terms"),
        ("y x + (1 | g)", "exactly one '~'"),
        ("y ~ x ~ z + (1 | g)", "exactly one '~'"),
        ("y ~ x + (0 | g)", "no columns"),
        ("y ~ x + (1 | g + h)", "not supported"),
        ("y ~ x - (1 | g)", "cannot be subtracted"),
        ("y ~ x + (1 | a//b)", "unexpected '/'"),
        # a bar that is not a term of its own would be another model in lme4
        ("y ~ x * (1 | g)", "not a term of its own"),
        ("y ~ I(a | b) + (1 | g)", "bar '|' inside a function call"),
        # functions bayesmer cannot evaluate as R: named, never a different model
        ("y ~ lag(x) + (1 | g)", r"function lag\(\) in .* is not supported"),
        ("y ~ mgcv::s(x) + (1 | g)", r"function mgcv::s\(\)"),
        ("y ~ poly(x, y, z) + (1 | g)", r"poly\(\) of several variables"),
        ("y ~ ns(x, df = d) + (1 | g)", "argument df of ns.. .* must be a literal"),
        ("y ~ relevel(f) + (1 | g)", "needs ref"),
        ("y ~ poly(x, 2, foo = 1) + (1 | g)", "argument 'foo' of poly"),
        ("y ~ (a + b)^x + (1 | g)", r"needs a whole number .* write I\(\(a \+ b\)\^x\)"),
        ("y ~ (x > 2) + (1 | g)", "not a formula operator"),
        ("y ~ 2 + (1 | g)", "is not a term"),
        ("y ~ . + (1 | g)", "all other columns"),
        ("y ~ x[1] + (1 | g)", "not supported in a model formula"),
        ("y ~ offset(z, w) + (1 | g)", "offset"),
        ("y ~ log(offset(z)) + (1 | g)", "only allowed as a term"),
    ],
)
def test_errors_name_the_problem(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_not_a_string():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(3)


# --- property: printing is canonical and keeps the design -----------------------

_VARS = ["a", "b", "x", "x.1", "`my v`"]


def _atom():
    return st.one_of(
        st.sampled_from(_VARS),
        st.sampled_from(["I(x^2)", "I(x * 2)", "log(z)", "poly(x, 2)", "factor(k)", "I(-x^2/2)"]),
    )


def _fixed(depth=2):
    if depth == 0:
        return _atom()
    sub = _fixed(depth - 1)
    return st.one_of(
        _atom(),
        st.builds(lambda l, r: f"{l} + {r}", sub, sub),
        st.builds(lambda l, r: f"{l}:{r}", _atom(), _atom()),
        st.builds(lambda l, r: f"{l} * {r}", _atom(), _atom()),
        st.builds(lambda l, r, n: f"({l} + {r})^{n}", _atom(), _atom(), st.integers(1, 3)),
        st.builds(lambda l, r: f"{l}/{r}", _atom(), _atom()),
        st.builds(lambda l, r: f"{l} %in% {r}", _atom(), _atom()),
        st.builds(lambda l, r: f"{l} - {r}", sub, _atom()),
        st.builds(lambda l: f"({l})", sub),
    )


_BAR = st.builds(
    lambda lhs, op, grp: f"({lhs} {op} {grp})",
    st.sampled_from(["1", "x", "0 + x", "x + x.1", "1 + poly(x, 2)", "x*x.1", "`my v`"]),
    st.sampled_from(["|", "||"]),
    st.sampled_from(["g", "g/h", "g:h", "`my g`"]),
)


@st.composite
def _formulas(draw):
    fixed = draw(_fixed())
    if draw(st.booleans()):
        fixed += " + offset(log(z))"
    icpt = draw(st.sampled_from(["", "0 + ", "1 + ", "-1 + "]))
    bars = draw(st.lists(_BAR, min_size=1, max_size=3))
    if draw(st.booleans()) and len(bars) == 1:
        # the bare bar: everything right of ~ is the term
        return f"y ~ {bars[0][1:-1]}"
    return f"y ~ {icpt}{fixed} + " + " + ".join(bars)


def _data():
    rng = np.random.default_rng(5)
    n = 48
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n), "x.1": rng.normal(size=n),
        "my v": rng.normal(size=n), "z": rng.uniform(1, 3, n), "k": rng.integers(0, 3, n),
        "a": rng.choice(["p", "q"], n), "b": rng.choice(["r", "s", "t"], n),
        "g": np.repeat(np.arange(8), 6).astype(str), "h": np.tile(["u", "v"], n // 2),
        "my g": np.tile(np.arange(6), 8),
    })


_DATA = _data()


@settings(max_examples=int(os.environ.get("BAYESMER_PROPERTY_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_formulas())
def test_printed_formula_is_canonical_and_keeps_the_design(text):
    import warnings

    parsed = parse_formula(text)
    canonical = str(parsed)
    again = parse_formula(canonical)
    assert str(again) == canonical
    assert again == parsed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient random draws are fine here
        a = build_design(text, _DATA)
        b = build_design(canonical, _DATA)
    assert a.fixed_names == b.fixed_names
    np.testing.assert_array_equal(a.X, b.X)
    assert [(t.name, t.terms, t.levels) for t in a.terms] == [(t.name, t.terms, t.levels) for t in b.terms]
    assert (a.offset is None) == (b.offset is None)
    if a.offset is not None:
        np.testing.assert_array_equal(a.offset, b.offset)
    for ta, tb in zip(a.terms, b.terms):
        np.testing.assert_array_equal(ta.Z, tb.Z)
        np.testing.assert_array_equal(ta.codes, tb.codes)
