"""New data read as the fit read its data; extension dtypes; sizes; honest failures.

Predictions are checked against the linear predictor computed by hand from
the posterior means of beta and b (``kind="link"`` is linear in them, so its
posterior mean is theirs), for a fit and its reloaded copy alike.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer.design import DesignError, MAX_DENSE_BYTES, build_design, new_data
from bayesmer.errors import FitError, PredictionError
from bayesmer.glmer_fit import PirlsError, SeparationError

from conftest import quiet_fit

SMALL = {"draws": 60, "tune": 60, "chains": 2, "seed": 3}
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _link(fit, newdata, **kw):
    """Posterior mean of the linear predictor on newdata."""
    return fit.predict(newdata, kind="link", summary=True, **kw)["mean"].to_numpy()


def _draws(tree) -> np.ndarray:
    """The predictions' draws, chains stacked: (S, rows)."""
    (var,) = tree["predictions"].to_dataset().data_vars.values()
    return var.to_numpy().reshape(-1, var.shape[-1])


def _no_chain(exc):
    """No "during handling of the above exception" chain under the error."""
    return exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def _reloaded(fit, tmp_path_factory, name):
    path = fit.save(tmp_path_factory.mktemp(name) / "fit.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.load(path)


# ---- fits shared by the module ------------------------------------------------


@pytest.fixture(scope="module")
def gauss_data():
    s = bayesmer.datasets.load("sleepstudy")
    # a factor with integer levels, as a categorical
    return s.assign(dose=pd.Categorical(s["Days"].to_numpy() % 3 + 1))


@pytest.fixture(scope="module")
def gauss_fit(gauss_data):
    return quiet_fit("Reaction ~ Days + dose + (1 | Subject)", gauss_data, **SMALL)


@pytest.fixture(scope="module")
def gauss_back(gauss_fit, tmp_path_factory):
    return _reloaded(gauss_fit, tmp_path_factory, "gauss")


@pytest.fixture(scope="module")
def cbpp():
    return bayesmer.datasets.load("cbpp")


@pytest.fixture(scope="module")
def binom_fit(cbpp):
    return quiet_fit(CBPP, cbpp, family="binomial", **SMALL)


@pytest.fixture(scope="module")
def binom_back(binom_fit, tmp_path_factory):
    return _reloaded(binom_fit, tmp_path_factory, "binom")


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=len(g))
    expo = rng.integers(1, 6, size=len(g)).astype(float)
    b = rng.normal(scale=0.4, size=12)
    y = rng.poisson(expo * np.exp(0.5 + 0.3 * x + b[g]))
    return pd.DataFrame({"y": y, "x": x, "g": g, "expo": expo, "logexpo": np.log(expo)})


@pytest.fixture(scope="module")
def pois_col(counts):
    return quiet_fit("y ~ x + (1 | g)", counts, family="poisson", offset="logexpo", **SMALL)


@pytest.fixture(scope="module")
def pois_arr(counts):
    return quiet_fit("y ~ x + (1 | g)", counts, family="poisson", offset=np.log(counts["expo"].to_numpy()), **SMALL)


# ---- Gaussian ---------------------------------------------------------------------


@pytest.mark.parametrize("dose", [3, "3", 3.0, pd.Categorical([3]), pd.Categorical(["3"])],
                         ids=["int", "str", "float", "cat-int", "cat-str"])
def test_gaussian_factor_level_matched_by_value(gauss_fit, gauss_back, dose):
    fe, re_ = gauss_fit.fixef(), gauss_fit.ranef()["Subject"]
    new = pd.DataFrame({"Days": [4.0], "dose": dose if isinstance(dose, pd.Categorical) else [dose],
                        "Subject": [309]})
    hand = fe["(Intercept)"] + 4 * fe["Days"] + fe["dose3"] + re_.loc["309", "(Intercept)"]
    assert _link(gauss_fit, new) == pytest.approx([hand], abs=1e-9)
    assert _link(gauss_back, new) == pytest.approx([hand], abs=1e-9)


def test_gaussian_baseline_and_new_subject(gauss_fit):
    fe = gauss_fit.fixef()
    new = pd.DataFrame({"Days": [0.0, 2.0], "dose": [1, 2], "Subject": [309, 999]})
    got = gauss_fit.predict(new, kind="link", include_random=False, summary=True)["mean"].to_numpy()
    assert got == pytest.approx([fe["(Intercept)"], fe["(Intercept)"] + 2 * fe["Days"] + fe["dose2"]], abs=1e-9)
    with pytest.raises(PredictionError, match="999"):
        gauss_fit.predict(new, sample_new_groups=False)


@pytest.mark.parametrize("dose, shown", [(4, "4"), ("4", "'4'"), ("x", "'x'"), (2.5, "2.5")])
def test_gaussian_unknown_level_is_named(gauss_fit, gauss_back, dose, shown):
    new = pd.DataFrame({"Days": [1.0], "dose": [dose], "Subject": [309]})
    for fit in (gauss_fit, gauss_back):
        with pytest.raises(DesignError, match=rf"column 'dose'.* value {re.escape(shown)} \(row 0\), which is not a level") as info:
            fit.predict(new)
        assert _no_chain(info.value)


def test_gaussian_strings_in_numeric_column_are_named(gauss_fit):
    new = pd.DataFrame({"Days": ["3"], "dose": [1], "Subject": [309]})
    with pytest.raises(DesignError, match=r"column 'Days'.*numeric.*'3'") as info:
        gauss_fit.predict(new)
    assert _no_chain(info.value)
    with pytest.raises(DesignError, match="lacks column 'dose'"):
        gauss_fit.predict(pd.DataFrame({"Days": [1.0], "Subject": [309]}))
    with pytest.raises(DesignError, match=r"column 'Days'.*missing"):
        gauss_fit.predict(pd.DataFrame({"Days": [np.nan], "dose": [1], "Subject": [309]}))


def test_gaussian_extension_dtypes_in_newdata(gauss_fit):
    base = pd.DataFrame({"Days": [1, 5], "dose": [2, 3], "Subject": [308, 372]})
    want = _link(gauss_fit, base)
    ext = base.astype({"Days": "Int64", "dose": "string[python]", "Subject": "int64[pyarrow]"})
    assert _link(gauss_fit, ext) == pytest.approx(want, abs=1e-12)


# ---- binomial: cbpp with cbind, trials ---------------------------------------------


@pytest.mark.parametrize("period", [[4], ["4"], [4.0], pd.Categorical([4]), pd.Categorical(["4"])],
                         ids=["int", "str", "float", "cat-int", "cat-str"])
def test_binomial_level_matched_by_value(binom_fit, binom_back, period):
    fe, re_ = binom_fit.fixef(), binom_fit.ranef()["herd"]
    hand = fe["(Intercept)"] + fe["period4"] + re_.loc["1", "(Intercept)"]
    new = pd.DataFrame({"period": period, "herd": [1]})
    assert _link(binom_fit, new) == pytest.approx([hand], abs=1e-9)
    assert _link(binom_back, new) == pytest.approx([hand], abs=1e-9)


def test_binomial_string_levels_design():
    # the same design rows whatever the training dtype of the factor
    d = bayesmer.datasets.load("cbpp")
    rows = {}
    for name, period in {"cat-int": d["period"], "str": d["period"].astype(str).astype(object),
                         "cat-str": d["period"].astype(str).astype("category"), "int": d["period"].astype(int)}.items():
        gd = bayesmer.glmer("cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)",
                            d.assign(period=period)).design
        rows[name] = [new_data(gd, pd.DataFrame({"period": [v], "herd": [1]})).X for v in (4, "4", 2.0)]
    for name, r in rows.items():
        np.testing.assert_array_equal(r[0], [[1, 0, 0, 1]], err_msg=name)
        np.testing.assert_array_equal(r[1], [[1, 0, 0, 1]], err_msg=name)
        np.testing.assert_array_equal(r[2], [[1, 1, 0, 0]], err_msg=name)
    gd = bayesmer.glmer("cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)",
                        d.assign(period=d["period"].astype(int))).design
    with pytest.raises(DesignError, match=r"column 'period'.*value 5\b"):
        new_data(gd, pd.DataFrame({"period": [5], "herd": [1]}))


def test_binomial_counts_scale_with_trials(binom_fit, binom_back):
    new = pd.DataFrame({"period": [2, 2, 2], "herd": [3, 3, 3], "size": [0, 10, 100_000]})
    p = binom_fit.predict(new, kind="mean", summary=True)["mean"].to_numpy()
    for fit in (binom_fit, binom_back):
        counts = _draws(fit.predict(new, kind="response", seed=1))
        assert np.all(counts[:, 0] == 0) and np.all(counts[:, 1] <= 10)
        assert counts[:, 2].mean() / 100_000 == pytest.approx(p[2], abs=2e-3)
        assert counts[:, 1].max() > 1  # not one trial per row
    with pytest.raises(PredictionError, match=r"lacks column.*'size'"):
        binom_fit.predict(new.drop(columns="size"), kind="response")
    # the link and the mean need no trials
    assert binom_fit.predict(new.drop(columns="size"), kind="mean", summary=True)["mean"].to_numpy() == \
        pytest.approx(p, abs=1e-12)


def test_binomial_unknown_period_is_named(binom_fit, binom_back):
    for fit in (binom_fit, binom_back):
        for v in (5, "5", "x"):
            with pytest.raises(DesignError, match=rf"column 'period'.*{v!r}"):
                fit.predict(pd.DataFrame({"period": [v], "herd": [1]}))


# ---- Poisson: offsets of new rows ------------------------------------------------


def test_poisson_offset_column_read_from_newdata(pois_col, tmp_path_factory):
    fe, re_ = pois_col.fixef(), pois_col.ranef()["g"]
    new = pd.DataFrame({"x": [0.5, 0.5], "g": [4, 4], "logexpo": np.log([1.0, 2.0])})
    hand = fe["(Intercept)"] + 0.5 * fe["x"] + re_.loc["4", "(Intercept)"] + np.log([1.0, 2.0])
    back = _reloaded(pois_col, tmp_path_factory, "pois")
    for fit in (pois_col, back):
        assert _link(fit, new) == pytest.approx(hand, abs=1e-9)
        mu = _draws(fit.predict(new, kind="mean"))
        np.testing.assert_allclose(mu[:, 1] / mu[:, 0], 2.0, rtol=1e-12)
    with pytest.raises(PredictionError, match="logexpo"):
        pois_col.predict(new.drop(columns="logexpo"))


def test_poisson_offset_array(pois_arr):
    fe, re_ = pois_arr.fixef(), pois_arr.ranef()["g"]
    new = pd.DataFrame({"x": [0.5, 0.5], "g": [4, 4]})
    off = np.log([1.0, 2.0])
    hand = fe["(Intercept)"] + 0.5 * fe["x"] + re_.loc["4", "(Intercept)"] + off
    assert _link(pois_arr, new, offset=off) == pytest.approx(hand, abs=1e-9)
    mu = _draws(pois_arr.predict(new, kind="mean", offset=off))
    np.testing.assert_allclose(mu[:, 1] / mu[:, 0], 2.0, rtol=1e-12)
    with pytest.raises(PredictionError, match=r"offset= was an array"):
        pois_arr.predict(new)
    with pytest.raises(PredictionError, match="3 values for 2 rows"):
        pois_arr.predict(new, offset=[0.0, 0.0, 0.0])


def test_formula_offset_of_new_rows(counts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gd = bayesmer.glmer("y ~ x + offset(log(expo)) + (1 | g)", counts, family="poisson").design
    nd = new_data(gd, pd.DataFrame({"x": [0.0, 0.0], "g": [1, 1], "expo": [1.0, 2.0]}))
    np.testing.assert_allclose(nd.offset, np.log([1.0, 2.0]))
    with pytest.raises(DesignError, match="lacks column 'expo'.*offset"):
        new_data(gd, pd.DataFrame({"x": [0.0], "g": [1]}))


# ---- extension dtypes -------------------------------------------------------------

SLEEP = "Reaction ~ Days + (Days | Subject)"
DTYPES = {
    "Days Int64": ("Days", "Int64"),
    "Days Float64": ("Days", "Float64"),
    "Days int64[pyarrow]": ("Days", "int64[pyarrow]"),
    "Days double[pyarrow]": ("Days", "double[pyarrow]"),
    "Reaction Float64": ("Reaction", "Float64"),
    "Reaction double[pyarrow]": ("Reaction", "double[pyarrow]"),
    "Subject string[python]": ("Subject", "string[python]"),
    "Subject string[pyarrow]": ("Subject", "string[pyarrow]"),
    "Subject str": ("Subject", "str"),
    "Subject Int64": ("Subject", "Int64"),
    "Subject int64[pyarrow]": ("Subject", "int64[pyarrow]"),
    "Subject category of strings": ("Subject", "category"),
}


def _same_fit(a, b):
    np.testing.assert_allclose(a.fixef().to_numpy(), b.fixef().to_numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-10)
    assert abs(a.sigma - b.sigma) < 1e-10


@pytest.fixture(scope="module")
def sleep_reml():
    return bayesmer.reml(SLEEP, bayesmer.datasets.load("sleepstudy"))


@pytest.mark.parametrize("case", list(DTYPES))
def test_extension_dtype_gives_the_numpy_fit(case, sleep_reml):
    s = bayesmer.datasets.load("sleepstudy")
    col, dtype = DTYPES[case]
    values = s[col]
    if col == "Subject":  # categorical of integers: as integers, or as their strings
        values = values.astype(int)
        values = values.astype(str) if dtype in ("string[python]", "string[pyarrow]", "str", "category") else values
    d = s.assign(**{col: values.astype(dtype)})
    _same_fit(bayesmer.reml(SLEEP, d), sleep_reml)


def test_extension_dtype_factor_and_logical_predictors(sleep_reml):
    s = bayesmer.datasets.load("sleepstudy")
    s = s.assign(half=pd.Categorical(np.where(s["Days"] > 4, "late", "early")), flag=s["Days"] % 2 == 0)
    f = "Reaction ~ Days + half + flag + (1 | Subject)"
    base = bayesmer.reml(f, s)
    ext = s.assign(half=s["half"].astype(str).astype("string[pyarrow]"), flag=s["flag"].astype("boolean"))
    _same_fit(bayesmer.reml(f, ext), base)
    assert list(bayesmer.reml(f, ext).fixef().index) == ["(Intercept)", "Days", "halflate", "flagTRUE"]


def test_pd_na_rows_dropped_and_counted():
    s = bayesmer.datasets.load("sleepstudy")
    drop = [3, 50, 100]
    base = bayesmer.reml(SLEEP, s.drop(index=drop))
    for col, dtype in (("Days", "Int64"), ("Reaction", "Float64"), ("Days", "int64[pyarrow]")):
        d = s.assign(**{col: s[col].astype(dtype)})
        d.loc[drop, col] = pd.NA
        with pytest.warns(UserWarning, match=r"3 row\(s\) with missing values in \['%s'\] removed \(177 kept\)" % col):
            fit = bayesmer.reml(SLEEP, d)
        _same_fit(fit, base)


def test_extension_dtypes_in_glmer(cbpp):
    base = bayesmer.glmer(CBPP, cbpp)
    ext = cbpp.assign(incidence=cbpp["incidence"].astype("Int64"), size=cbpp["size"].astype("int64[pyarrow]"),
                      period=cbpp["period"].astype(str).astype("string[python]"),
                      herd=cbpp["herd"].astype(str).astype("str"))
    fit = bayesmer.glmer(CBPP, ext)
    np.testing.assert_allclose(fit.fixef.to_numpy(), base.fixef.to_numpy(), atol=1e-8)
    assert fit.minus2loglik == pytest.approx(base.minus2loglik, abs=1e-8)
    # a 0/1 response as boolean and as Int64 with a missing value
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"y": rng.random(120) < 0.4, "x": rng.normal(size=120), "g": np.repeat(np.arange(12), 10)})
    b0 = bayesmer.glmer("y ~ x + (1 | g)", d.drop(index=[5]), family="binomial")
    for y in (d["y"].astype("boolean"), d["y"].astype(int).astype("Int64")):
        dd = d.assign(y=y)
        dd.loc[5, "y"] = pd.NA
        with pytest.warns(UserWarning, match=r"1 row\(s\) with missing values"):
            b1 = bayesmer.glmer("y ~ x + (1 | g)", dd, family="binomial")
        np.testing.assert_allclose(b1.fixef.to_numpy(), b0.fixef.to_numpy(), atol=1e-8)


def test_extension_dtypes_in_bayesian_fit(gauss_data, gauss_fit):
    ext = gauss_data.assign(Days=gauss_data["Days"].astype("Int64"),
                            Reaction=gauss_data["Reaction"].astype("double[pyarrow]"),
                            Subject=gauss_data["Subject"].astype(int).astype(str).astype("string[pyarrow]"),
                            dose=gauss_data["dose"].astype(int).astype("int64[pyarrow]").astype(str).astype("str"))
    ext.loc[[0, 7], "Days"] = pd.NA
    with pytest.warns(UserWarning, match=r"2 row\(s\) with missing values in \['Days'\]"):
        fit = bayesmer.fit("Reaction ~ Days + dose + (1 | Subject)", ext, progress=False,
                           **(SMALL | {"draws": 20, "tune": 20}))
    base = bayesmer.reml("Reaction ~ Days + dose + (1 | Subject)", gauss_data.drop(index=[0, 7]))
    _same_fit(fit.reml, base)
    new = pd.DataFrame({"Days": pd.array([2], dtype="Int64"), "dose": pd.array(["2"], dtype="string[pyarrow]"),
                        "Subject": pd.array([309], dtype="int64[pyarrow]")})
    fe, re_ = fit.fixef(), fit.ranef()["Subject"]
    hand = fe["(Intercept)"] + 2 * fe["Days"] + fe["dose2"] + re_.loc["309", "(Intercept)"]
    assert _link(fit, new) == pytest.approx([hand], abs=1e-9)


# ---- sizes ---------------------------------------------------------------------------


def test_huge_fixed_factor_refused_before_building():
    rng = np.random.default_rng(0)
    n, levels = 200_000, 50_000
    d = pd.DataFrame({"y": rng.normal(size=n), "store": (np.arange(n) % levels).astype(str),
                      "g": rng.integers(0, 50, size=n)})
    t0 = time.perf_counter()
    with pytest.raises(DesignError) as info:
        build_design("y ~ store + (1 | g)", d)
    seconds = time.perf_counter() - t0
    tracemalloc.start()  # apart: tracing slows the run it measures
    with pytest.raises(DesignError):
        build_design("y ~ store + (1 | g)", d)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"refused in {seconds:.3f} s, peak {peak / 2**20:.1f} MiB traced")
    msg = str(info.value)
    assert "'store'" in msg and "50000 levels" in msg and "(1 | store)" in msg and "GiB" in msg
    assert seconds < 1.0, seconds
    assert peak < 2**30 / 4, peak  # far below the matrix it refuses (74 GiB)
    # a small factor passes, and the threshold is the one documented
    assert MAX_DENSE_BYTES == 2**30
    build_design("y ~ g + (1 | g)", d.assign(g=d["g"] % 5 + 1, store="a").iloc[:1000])


# ---- separation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def separated():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    trt = np.where(rng.random(200) < 0.3, "c", np.where(rng.random(200) < 0.5, "a", "b"))
    y = (rng.random(200) < 1 / (1 + np.exp(-(0.3 * x + rng.normal(size=20)[g] * 0.5)))).astype(int)
    y[trt == "c"] = 1
    return pd.DataFrame({"y": y, "x": x, "trt": trt, "g": g})


def test_perfect_separation_is_named(separated):
    d = separated.assign(y=(separated["x"] > 0).astype(int))
    with pytest.raises(SeparationError, match=r"perfect separation by 'x'.*prior") as info:
        bayesmer.glmer("y ~ x + (1 | g)", d, family="binomial")
    assert isinstance(info.value, PirlsError) and isinstance(info.value, RuntimeError)
    assert isinstance(info.value, bayesmer.BayesmerError)


def test_posterior_fit_goes_on_under_separation(separated):
    d = separated.assign(y=(separated["x"] > 0).astype(int))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayesmer.fit("y ~ x + (1 | g)", d, family="binomial", priors={"b": "Normal(0, 2.5)"},
                           progress=False, **SMALL)
    said = [str(w.message) for w in caught if "perfect separation by 'x'" in str(w.message)]
    assert len(said) == 1 and "Sampling the posterior anyway" in said[0]
    assert fit.reml.failed and not fit.reml.converged
    table = fit.summary()
    assert table.loc[("fixed", "", "x"), "reml"] != table.loc[("fixed", "", "x"), "reml"]  # NaN: glmer failed
    assert np.isnan(table["reml"]).all()
    assert 0 < table.loc[("fixed", "", "x"), "mean"] < 20  # the prior holds it


def test_quasi_separation_by_a_level_is_named(separated):
    with pytest.warns(UserWarning, match=r"quasi-separation by 'trtc': all \d+ responses where it is 1 are 1"):
        bayesmer.glmer("y ~ x + trt + (1 | g)", separated, family="binomial")


# ---- numba's cache, a criterion that is not finite ---------------------------------------


def test_no_writable_numba_cache_is_one_warning(tmp_path):
    src = Path(bayesmer.__file__).parent
    pkg = tmp_path / "site" / "bayesmer"
    shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "engine" / "__pycache__").write_text("")  # a file: numba cannot make its in-tree cache folder
    env = dict(os.environ, NUMBA_CACHE_DIR="/dev/null/numba", XDG_CACHE_HOME="/dev/null/xdg", HOME="/dev/null/home",
               PYTHONPATH=str(tmp_path / "site"), PYTHONDONTWRITEBYTECODE="1")
    code = "import bayesmer, bayesmer.engine._kernel as k; print('ok', k.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout and "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "numba" in ln]
    assert len(lines) == 1 and "NUMBA_CACHE_DIR='/dev/null/numba'" in lines[0] and "bayesmer-numba-" in lines[0]


def test_infinite_criterion_is_an_error():
    s = bayesmer.datasets.load("sleepstudy")
    with pytest.raises(FitError, match=r"REML criterion is inf.*huge magnitude: 'Days'.*scale"):
        bayesmer.reml(SLEEP, s.assign(Days=s["Days"] + 1e12))
    with pytest.raises(FitError, match=r"ML criterion is inf"):
        bayesmer.reml(SLEEP, s.assign(Days=s["Days"] + 1e12), method="ML")
