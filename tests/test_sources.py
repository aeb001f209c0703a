"""Data not in memory (bayesmer.sources): the same design, statistics and REML fit as pandas.

Every Gaussian reference data set of tests/data through Dask (several partitions,
and a distributed LocalCluster), Polars (DataFrame and LazyFrame), DuckDB and
Parquet (one file, and a glob of several), in small chunks so that every
reduction is exercised; the statistics and the fit agree with the pandas path
to 1e-10 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

from bayesmer import sources
from bayesmer import build_design
from bayesmer.design import DesignError
from bayesmer.engine.collapsed import CollapsedStats
from bayesmer.lmer import fit_reml

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DATA = Path(__file__).parent / "data"
LME4 = ("clark_intercepts", "clark_slopes", "dyestuff", "dyestuff2_singular", "ogorek_crosslevel", "ogorek_simple",
        "pastes_nested", "penicillin_crossed", "sleepstudy_ml", "sleepstudy_reml", "sleepstudy_uncorr")
CASES = [(n, json.loads((DATA / f"{n}.json").read_text())) for n in LME4]
CASES = [(n, r["formula"], r["data"], "REML" if r.get("REML", True) else "ML") for n, r in CASES]
# transforms, factor contrasts and crossed factors beyond the references
CASES += [
    ("subjitems_crossed", "y ~ x + (1 + x | subj) + (1 + x | item)", "subjitems.csv", "REML"),
    ("subjitems_transforms", "y ~ scale(x) + I(x^2) + log(x + 10) + (1 + x | subj) + (1 | item)", "subjitems.csv", "REML"),
    ("machines_factors", "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", "suite_machines.csv", "REML"),
    ("sleep_factor_center", "Reaction ~ factor(Days) + center(Days) + (1 | Subject)", "sleepstudy.csv", "REML"),
]
ENGINES = ("dask", "polars", "polars-lazy", "duckdb", "parquet", "parquet-glob")
RTOL = 1e-10


def _close(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    err = float(np.max(np.abs(a - b))) if b.size else 0.0
    assert err <= RTOL * scale, f"{what}: max |diff| {err:.3g} vs scale {scale:.3g}"


def _convert(df: pd.DataFrame, engine: str, tmp: Path):
    if engine == "dask":
        dd = pytest.importorskip("dask.dataframe")
        return dd.from_pandas(df, npartitions=3)
    if engine in ("polars", "polars-lazy"):
        pl = pytest.importorskip("polars")
        out = pl.from_pandas(df)
        return out.lazy() if engine == "polars-lazy" else out
    if engine == "duckdb":
        duckdb = pytest.importorskip("duckdb")
        con = duckdb.connect()
        con.register("frame", df)
        return con.sql("select * from frame")
    tmp.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if engine == "parquet":
        pq.write_table(table, tmp / "data.parquet", row_group_size=97)
        return str(tmp / "data.parquet")
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
        pq.write_table(table.take(part), tmp / f"part-{i}.parquet")
    return str(tmp / "part-*.parquet")


def _stats_invariants(st: CollapsedStats):
    """The statistics that do not depend on the β0 they are taken about."""
    A11, A1X, A1e, ptr, rows, vals, A22, A2X, A2e, XtX, Xte, ete, _ = st.arrays
    A1y = A1e + A1X @ st.beta0
    A2y = A2e + A2X @ st.beta0
    rss = float(ete[0] - Xte @ np.linalg.lstsq(XtX, Xte, rcond=None)[0]) if st.p else float(ete[0])
    return {"A11": A11, "A1X": A1X, "A1y": A1y, "ptr": ptr, "rows": rows, "A21": vals, "A22": A22, "A2X": A2X,
            "A2y": A2y, "XtX": XtX, "rss": rss}


@pytest.fixture(scope="module")
def pandas_fits():
    out = {}
    for name, formula, data, method in CASES:
        df = load_data(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            design = build_design(formula, df)
            fit = fit_reml(design, method=method)
        out[name] = (df, design, fit, sorted(str(w.message) for w in caught))
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_same_statistics_and_fit(engine, pandas_fits, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_ROWS", 97)  # several chunks even on the small data sets
    for name, formula, _, method in CASES:
        df, d0, r0, msgs0 = pandas_fits[name]
        data = _convert(df, engine, tmp_path / name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d1 = build_design(formula, data)
            r1 = fit_reml(d1, method=method)
        assert sorted(str(w.message) for w in caught) == msgs0, name
        assert not d1.in_memory and d1.n == d0.n and d1.n_dropped == d0.n_dropped, name
        assert d1.fixed_names == d0.fixed_names and d1.aliased == d0.aliased, name
        assert [(t.name, t.group, t.levels, t.terms) for t in d1.terms] == \
               [(t.name, t.group, t.levels, t.terms) for t in d0.terms], name
        s0, s1 = _stats_invariants(CollapsedStats.from_design(d0)), _stats_invariants(CollapsedStats.from_design(d1))
        for key in s0:
            _close(s1[key], s0[key], f"{name} {engine} {key}")
        _close(r1.theta, r0.theta, f"{name} {engine} theta")
        _close(r1.fixef.to_numpy(), r0.fixef.to_numpy(), f"{name} {engine} fixef")
        _close(r1.se.to_numpy(), r0.se.to_numpy(), f"{name} {engine} se")
        _close(r1.sigma, r0.sigma, f"{name} {engine} sigma")
        _close(r1.objective, r0.objective, f"{name} {engine} objective")
        for t in d0.terms:
            _close(r1.ranef[t.name].to_numpy(), r0.ranef[t.name].to_numpy(), f"{name} {engine} ranef {t.name}")


def test_missing_values_counted_as_pandas(tmp_path):
    df = load_data("sleepstudy.csv").copy()
    df.loc[[3, 50, 51], "Reaction"] = np.nan
    df.loc[[7, 50], "Days"] = np.nan
    formula = "Reaction ~ Days + (Days | Subject)"
    with pytest.warns(UserWarning) as w0:
        d0 = build_design(formula, df)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "na.parquet")
    with pytest.warns(UserWarning) as w1:
        d1 = build_design(formula, str(tmp_path / "na.parquet"))
    assert d1.n_dropped == d0.n_dropped == 4
    assert [str(m.message) for m in w1] == [str(m.message) for m in w0]
    _close(fit_reml(d1).theta, fit_reml(d0).theta, "theta with missing values")


def test_dask_distributed_local_cluster(pandas_fits):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    df, d0, r0, _ = pandas_fits["sleepstudy_reml"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl):
        d1 = build_design("Reaction ~ Days + (Days | Subject)", dd.from_pandas(df, npartitions=4))
    r1 = fit_reml(d1)
    _close(r1.theta, r0.theta, "theta on a LocalCluster")
    _close(r1.fixef.to_numpy(), r0.fixef.to_numpy(), "fixef on a LocalCluster")


def test_no_file_matches(tmp_path):
    with pytest.raises(DesignError, match=r"no Parquet file matches .*nothing-\*\.parquet"):
        build_design("y ~ x + (1 | g)", str(tmp_path / "nothing-*.parquet"))


def test_file_missing_a_column(tmp_path):
    df = load_data("sleepstudy.csv")
    pq.write_table(pa.Table.from_pandas(df.iloc[:90], preserve_index=False), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pandas(df.iloc[90:].drop(columns="Days"), preserve_index=False),
                   tmp_path / "b.parquet")
    with pytest.raises(DesignError, match=r"b\.parquet.*lacks column\(s\) \['Days'\]"):
        build_design("Reaction ~ Days + (Days | Subject)", str(tmp_path / "*.parquet"))


def test_grouping_column_all_null(tmp_path):
    df = load_data("sleepstudy.csv").copy()
    df["Subject"] = pd.Series([None] * len(df), dtype="object")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "s.parquet")
    with pytest.raises(DesignError, match=r"grouping column 'Subject'.*missing in every row of .*s\.parquet"):
        build_design("Reaction ~ Days + (Days | Subject)", str(tmp_path / "s.parquet"))


def test_transform_needing_all_rows_is_named(tmp_path):
    df = load_data("sleepstudy.csv")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "s.parquet")
    with pytest.raises(DesignError, match=r"poly\(\) needs every row"):
        build_design("Reaction ~ poly(Days, 2) + (1 | Subject)", str(tmp_path / "s.parquet"))


def test_fit_out_of_memory_groups_on_request(tmp_path):
    """fit() on Parquet: no per-row groups unless asked; asked, they equal the in-memory rows'
    on the same draws; the exact leave-one-group-out from the per-group sums; 'full' refused."""
    import bayesmer
    from bayesmer.builder import BuildError
    from bayesmer.checking import group_loglik
    from bayesmer.errors import PredictionError
    from bayesmer.sampling import _pointwise

    df = load_data("sleepstudy.csv")
    path = str(tmp_path / "sleep.parquet")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    formula = "Reaction ~ Days + (Days | Subject)"
    kw = dict(draws=150, tune=150, chains=2, seed=3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bayesmer.fit(formula, path, **kw)
        asked = bayesmer.fit(formula, path, log_likelihood=True, sample_posterior_predictive=True, **kw)
    assert "log_likelihood" not in plain.idata.children and "observed_data" not in plain.idata.children
    assert {"log_likelihood", "posterior_predictive"} <= set(asked.idata.children)
    d0 = build_design(formula, df)
    post = asked.idata["posterior"].to_dataset()

    def draws(v):
        a = post[v].transpose("chain", "draw", ...).to_numpy()
        return a.reshape((-1,) + a.shape[2:])

    beta, sigma = draws("beta"), draws("sigma")
    bs = [draws(f"b_{t.name}") for t in d0.terms]
    ll0 = _pointwise(d0, beta, sigma, bs, lambda eta, sg, s: -0.5 * np.log(2 * np.pi * sg**2)
                     - 0.5 * ((d0.y - eta) / sg) ** 2)
    _close(asked.idata["log_likelihood"]["Reaction"].values.reshape(ll0.shape), ll0, "chunked log-likelihood")
    import dataclasses

    in_memory = dataclasses.replace(asked, design=d0)
    _close(group_loglik(asked), group_loglik(in_memory), "exact group marginals from the sums")
    with pytest.raises(PredictionError, match="not in memory"):
        plain.predict()
    assert plain.predict(df.iloc[:5])["predictions"].sizes["obs"] == 5
    with pytest.raises(BuildError, match="not in memory"):
        bayesmer.fit(formula, path, strategy="full", **kw)
    _close(plain.reml.fitted(), fit_reml(d0).fitted(), "fitted values in chunks")
    # saved without its rows, loaded by reading the Parquet file again
    plain.save(tmp_path / "fit.nc")
    loaded = bayesmer.load(tmp_path / "fit.nc")
    assert not loaded.design.in_memory
    _close(loaded.reml.theta, plain.reml.theta, "theta after load")


def test_spark(pandas_fits):
    """The optional Spark engine (extra ``bayesmer[spark]``): mapInPandas on a local session."""
    pytest.importorskip("pyspark")
    import os
    import sys

    from pyspark.sql import SparkSession

    # the executors' Python must be this one, which has bayesmer
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    try:
        spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false") \
            .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate()
    except Exception as exc:  # no Java
        pytest.skip(f"no Spark session: {exc}")
    try:
        for name in ("sleepstudy_reml", "penicillin_crossed"):
            df, d0, r0, _ = pandas_fits[name]
            formula = [c for c in CASES if c[0] == name][0][1]
            r1 = fit_reml(build_design(formula, spark.createDataFrame(df)))
            _close(r1.theta, r0.theta, f"{name} spark theta")
            _close(r1.fixef.to_numpy(), r0.fixef.to_numpy(), f"{name} spark fixef")
    finally:
        spark.stop()


def test_aliased_columns_dropped_as_pandas(tmp_path):
    df = load_data("sleepstudy.csv").copy()
    df["Days2"] = 2.0 * df["Days"]
    df["half"] = np.where(df["Days"] < 5, "early", "late")
    df["early"] = (df["Days"] < 5).astype(float)
    formula = "Reaction ~ Days + Days2 + half + early + (1 | Subject)"
    with pytest.warns(UserWarning) as w0:
        d0 = build_design(formula, df)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "a.parquet")
    with pytest.warns(UserWarning) as w1:
        d1 = build_design(formula, str(tmp_path / "a.parquet"))
    assert d1.aliased == d0.aliased == ("Days2", "early")
    assert [str(m.message) for m in w1] == [str(m.message) for m in w0]
    _close(fit_reml(d1).fixef.to_numpy(), fit_reml(d0).fixef.to_numpy(), "fixef without the aliased columns")
