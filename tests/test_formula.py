import pytest

from bayesmer import FormulaError, parse_formula


@pytest.mark.parametrize(
    ("formula", "canonical"),
    [
        ("Reaction ~ Days + (Days | Subject)", "Reaction ~ 1 + Days + (1 + Days | Subject)"),
        ("y ~ x + a + x*a + (1 + x | unit)", "y ~ 1 + x + a + x*a + (1 + x | unit)"),
        # the double bar splits into independent terms, as lme4's expandDoubleVerts
        ("Reaction ~ Days + (Days || Subject)", "Reaction ~ 1 + Days + (1 | Subject) + (0 + Days | Subject)"),
        ("y ~ x + (0 + x + z || g)", "y ~ 1 + x + (0 + x | g) + (0 + z | g)"),
        ("strength ~ 1 + (1 | batch/cask)", "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
        ("y ~ 1 + (1 | a/b/c)", "y ~ 1 + (1 | a) + (1 | a:b) + (1 | a:b:c)"),
        ("y ~ (1 | a:b)", "y ~ 1 + (1 | a:b)"),
        ("d ~ 1 + (1|plate) + (1|sample)", "d ~ 1 + (1 | plate) + (1 | sample)"),
        ("y ~ 0 + x + (0 + Machine | Worker)", "y ~ 0 + x + (0 + Machine | Worker)"),
        ("y ~ x - 1 + (x - 1 | g)", "y ~ 0 + x + (0 + x | g)"),
        ("log(y) ~ I(x ** 2) + C(a) + (1 | g) + (0 + x | g)", "log(y) ~ 1 + I(x ** 2) + C(a) + (1 | g) + (0 + x | g)"),
        ("y ~ x +\n   (x | g)", "y ~ 1 + x + (1 + x | g)"),
    ],
)
def test_canonical_string(formula, canonical):
    parsed = parse_formula(formula)
    assert str(parsed) == canonical
    # printing is a fixed point: the canonical form parses back to itself
    assert str(parse_formula(canonical)) == canonical


def test_parts():
    f = parse_formula("y ~ x + a + x:a + (1 + x | unit) + (1 | a:b)")
    assert f.response == "y"
    assert f.fixed == "1 + x + a + x:a"
    assert [t.factors for t in f.random] == [("unit",), ("a", "b")]
    assert [t.expr for t in f.random] == ["1 + x", "1"]
    assert f.random[1].group == "a:b"


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x + (| g)", "nothing left of the bar"),
        ("y ~ x + (x | g", "unbalanced parentheses"),
        ("y ~ x + x | g)", "unbalanced parentheses"),
        ("y ~ x", "plain regression"),
        ("y ~ x + (x | )", "no grouping factor"),
        ("y ~ x + x | g", "in parentheses"),
        ("~ x + (1 | g)", "no response"),
        ("y ~ ", "no terms"),
        ("y x + (1 | g)", "exactly one '~'"),
        ("y ~ x + (0 | g)", "no columns"),
        ("y ~ x + (1 | g + h)", "not supported"),
        ("y ~ x - (1 | g)", "cannot be subtracted"),
        ("y ~ x + (1 | a//b)", "empty factor"),
    ],
)
def test_errors_name_the_problem(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_not_a_string():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(3)
