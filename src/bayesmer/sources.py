"""Data that are not a pandas DataFrame in memory: the design's statistics computed where the data live.

For a Gaussian mixed model everything after the sufficient statistics costs
O(levels), not O(rows). This module turns a Dask DataFrame, a Polars DataFrame
or LazyFrame, a DuckDB relation, a Spark DataFrame or a path or glob of Parquet
files into a :class:`~bayesmer.design.Design` without rows: the same names,
levels, contrasts and transforms as :func:`~bayesmer.design.build_design` on the
same rows, and :class:`RawSums`, the additive cross products every row
contributes to. Two passes read the data:

1. the metadata pass: the rows, the missing values per column, the distinct
   values of the categorical and grouping columns (the factor levels), the
   moments of the numeric columns (``scale()``/``center()``'s state, and the
   centre of the response that keeps the sums free of cancellation);
2. the statistics pass: per chunk (partition, record batch) the rows' y, X, Z
   and level codes are built by the in-memory design's own code with the
   full-data state fixed, and reduced to sums.

Each pass is a map over chunks and a reduction of small partial results: a
Dask or Spark cluster runs the map on its workers and only O(levels) numbers
reach the driver; Polars, DuckDB and Parquet stream Arrow record batches of a
bounded size through this process.
"""

from __future__ import annotations

import functools
import glob as _glob
import math
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .design import (
    CONTEXT, Design, DesignError, ReTerm, _LazySpec, _check_finite, _check_varies, _logical, _matrix, _parse,
    _r_column, _r_names_for, _required, _simple_matrix,
)
from .design import build_design as build_frame_design
from .formula import Formula, factor_code, parse_formula, to_formulaic

__all__ = ["RawSums", "Source", "as_source", "is_source", "build_design", "build_source_design",
           "iter_design_chunks"]

# rows per chunk streamed through this process (Polars, DuckDB, Parquet): measured on 30M rows of
# Parquet, the peak memory of the two passes was 1.6 GB at 2M rows a chunk, 0.9 GB at 250k, as fast
CHUNK_ROWS = 250_000
# transforms whose state needs every row and that cannot be computed from the metadata pass
_NEEDS_ALL_ROWS = ("r_poly", "r_ns", "splines_r_ns", "r_bs", "splines_r_bs")
_FACTOR_CALL = re.compile(r"\b(?:factor|as\.factor|C|relevel|dummy|ordered|as\.ordered)\(\s*([A-Za-z_.][\w.]*)")


# --- recognising the input -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Source:
    """Data read where they live.

    Attributes
    ----------
    kind : {"parquet", "dask", "polars", "polars-lazy", "duckdb", "spark"}
    obj : object
        The engine's object (for ``"parquet"``, the list of files).
    label : str
        How errors name the data: the path or glob, or the engine.
    columns : tuple of str

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.parquet"
    >>> bayesmer.datasets.load("sleepstudy").to_parquet(path)
    >>> sources.as_source(str(path)).kind
    'parquet'
    """

    kind: str
    obj: object = field(repr=False)
    label: str
    columns: tuple[str, ...]
    chunk_rows: int = CHUNK_ROWS

    def map_reduce(self, columns: list[str], fn, combine):
        """``combine`` over ``fn(chunk)`` for every chunk (a pandas DataFrame of ``columns``).

        Dask and Spark run ``fn`` on their workers; the others stream chunks here.
        """
        if self.kind == "dask":
            return _dask_map_reduce(self.obj[columns], fn, combine)
        if self.kind == "spark":
            return _spark_map_reduce(self.obj.select(*columns), fn, combine)
        out = None
        for chunk in self.chunks(columns):
            part = fn(chunk)
            out = part if out is None else combine(out, part)
        return out

    def chunks(self, columns: list[str]):
        """The data as pandas DataFrames of ``columns``, a bounded number of rows at a time."""
        if self.kind == "parquet":
            import pyarrow.dataset as ds

            dataset = ds.dataset(list(self.obj), format="parquet")
            # one file and one batch ahead at most: the memory stays that of a chunk
            for batch in dataset.to_batches(columns=columns, batch_size=self.chunk_rows, batch_readahead=1,
                                            fragment_readahead=1):
                yield batch.to_pandas()
        elif self.kind == "polars":
            for part in self.obj.select(columns).iter_slices(self.chunk_rows):
                yield part.to_pandas()
        elif self.kind == "polars-lazy":
            lazy = self.obj.select(columns)
            if hasattr(lazy, "collect_batches"):  # Polars >= 1.32 streams; before, the columns are collected
                parts = lazy.collect_batches(chunk_size=self.chunk_rows)
            else:
                parts = lazy.collect(engine="streaming").iter_slices(self.chunk_rows)
            for part in parts:
                yield part.to_pandas()
        elif self.kind == "duckdb":
            rel = self.obj.select(*[_duck_name(c) for c in columns])
            # to_arrow_reader in DuckDB >= 1.4, fetch_record_batch before it
            read = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch
            reader = read(self.chunk_rows)
            for batch in reader:
                yield batch.to_pandas()
        elif self.kind == "dask":
            for part in self.obj[columns].to_delayed():
                yield part.compute()
        elif self.kind == "spark":
            # one partition at a time to the driver, in chunks of rows
            rows = []
            for row in self.obj.select(*columns).toLocalIterator():
                rows.append(tuple(row))
                if len(rows) == self.chunk_rows:
                    yield pd.DataFrame.from_records(rows, columns=columns)
                    rows = []
            if rows:
                yield pd.DataFrame.from_records(rows, columns=columns)
        else:  # pragma: no cover
            raise DesignError(f"unknown source kind {self.kind!r}")


def _duck_name(c: str) -> str:
    return '"' + c.replace('"', '""') + '"'


def _tree_reduce(items, combine):
    while len(items) > 1:
        items = [items[i] if i + 1 == len(items) else combine(items[i], items[i + 1]) for i in range(0, len(items), 2)]
    return items[0]


def _dask_map_reduce(ddf, fn, combine):
    """Map over the partitions and reduce pairwise on the workers (the current Dask
    scheduler: a ``distributed.Client`` when one is active); only the result comes back."""
    import dask

    parts = [dask.delayed(fn)(p) for p in ddf.to_delayed()]
    if not parts:
        raise DesignError("the Dask DataFrame has no partitions")
    (out,) = dask.compute(_tree_reduce(parts, dask.delayed(combine)))
    return out


def _spark_map_reduce(sdf, fn, combine):  # pragma: no cover - spark is optional, not in the test extra
    """mapInPandas: each partition's partial result pickled into one binary cell; the
    driver unpickles and combines them (O(levels) each)."""
    import pickle

    def run(batches):
        out = None
        for b in batches:
            part = fn(b)
            out = part if out is None else combine(out, part)
        if out is not None:
            yield pd.DataFrame({"part": [pickle.dumps(out)]})

    rows = sdf.mapInPandas(run, schema="part binary").collect()
    # Not user input: each cell is what run() above pickled on this job's own executors,
    # collected straight back (never read from a file or a table someone else wrote).
    parts = [pickle.loads(r["part"]) for r in rows]
    if not parts:
        raise DesignError("the Spark DataFrame has no rows")
    return _tree_reduce(parts, combine)


def _parquet_files(path) -> tuple[list[str], str]:
    text = os.fspath(path)
    if os.path.isdir(text):
        files = sorted(str(p) for p in Path(text).rglob("*.parquet"))
    elif any(ch in text for ch in "*?["):
        files = sorted(_glob.glob(text, recursive=True))
    else:
        files = [text] if os.path.exists(text) else []
    if not files:
        raise DesignError(f"no Parquet file matches {text!r}")
    return files, text


def is_source(data) -> bool:
    """Whether ``data`` is one of the out-of-memory inputs :func:`as_source` reads.

    Parameters
    ----------
    data : object

    Returns
    -------
    bool
        True for a path, a glob, a list of paths, or a Dask, Polars, DuckDB or
        Spark object; False for a pandas DataFrame.

    Examples
    --------
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> sources.is_source("data/part-*.parquet"), sources.is_source(bayesmer.datasets.load("dyestuff"))
    (True, False)
    """
    if isinstance(data, (str, os.PathLike)):
        return True
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        return True
    mod = type(data).__module__ or ""
    return mod.split(".")[0] in ("dask", "dask_expr", "polars", "duckdb", "_duckdb", "pyspark")


def as_source(data, chunk_rows: int | None = None) -> Source:
    """Recognise ``data``: a path or glob of Parquet files, a Dask, Polars or Spark DataFrame,
    a Polars LazyFrame or a DuckDB relation.

    Parameters
    ----------
    data : path, glob, list of paths, or an engine's data frame
    chunk_rows : int, optional
        Rows per streamed record batch (Polars, DuckDB, Parquet); default
        :data:`CHUNK_ROWS`.

    Returns
    -------
    Source

    Raises
    ------
    DesignError
        No file matches the path; a file is not Parquet; an unsupported type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.parquet"
    >>> bayesmer.datasets.load("sleepstudy").to_parquet(path)
    >>> src = sources.as_source(str(path))
    >>> src.kind, "Reaction" in src.columns
    ('parquet', True)
    """
    chunk_rows = CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    if isinstance(data, (str, os.PathLike, list, tuple)):
        import pyarrow.parquet as pq

        if isinstance(data, (list, tuple)):  # several paths or globs
            found = [_parquet_files(p) for p in data]
            files, label = [f for fs, _ in found for f in fs], ", ".join(lb for _, lb in found)
        else:
            files, label = _parquet_files(data)
        columns = None
        for f in files:
            try:
                names = tuple(pq.read_schema(f).names)
            except Exception as exc:
                raise DesignError(f"cannot read {f!r} as Parquet: {exc}") from exc
            columns = names if columns is None else columns
        return Source("parquet", tuple(files), label, tuple(columns), chunk_rows)
    mod = (type(data).__module__ or "").split(".")[0]
    name = type(data).__name__
    if mod in ("dask", "dask_expr") and hasattr(data, "to_delayed"):
        return Source("dask", data, "the Dask DataFrame", tuple(map(str, data.columns)), chunk_rows)
    if mod == "polars" and name == "DataFrame":
        return Source("polars", data, "the Polars DataFrame", tuple(data.columns), chunk_rows)
    if mod == "polars" and name == "LazyFrame":
        return Source("polars-lazy", data, "the Polars LazyFrame", tuple(data.collect_schema().names()), chunk_rows)
    if mod in ("duckdb", "_duckdb") and (hasattr(data, "to_arrow_reader") or hasattr(data, "fetch_record_batch")):
        return Source("duckdb", data, "the DuckDB relation", tuple(data.columns), chunk_rows)
    if mod == "pyspark" and hasattr(data, "mapInPandas"):
        return Source("spark", data, "the Spark DataFrame", tuple(data.columns), chunk_rows)
    raise DesignError(
        f"data must be a pandas, Dask, Polars or Spark DataFrame, a Polars LazyFrame, a DuckDB relation "
        f"or a path or glob of Parquet files, not {type(data).__module__}.{name}"
    )


# --- the metadata pass -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Meta:
    """Partial metadata of some rows (additive: see :func:`_meta_combine`)."""

    n_total: int
    n_incomplete: int
    nulls: dict  # column -> rows with a missing value
    distinct: dict  # column or tuple of grouping columns -> DataFrame of distinct values (complete rows)
    moments: dict  # numeric column -> (count, mean, M2) over complete rows
    sample: pd.DataFrame  # a few complete rows, for the dtypes and formulaic's state


def _normalise(frame: pd.DataFrame, used) -> pd.DataFrame:
    """The columns ``used`` with text as pandas' default string dtype, whatever the engine handed
    (Dask's ``string[pyarrow]``, Arrow's large strings): the dtype the in-memory path sees."""
    frame = frame[list(used)]
    text = [c for c in frame.columns
            if isinstance(frame[c].dtype, pd.StringDtype) and frame[c].dtype != pd.StringDtype(na_value=np.nan)]
    if text:
        frame = frame.assign(**{c: frame[c].astype("str").where(frame[c].notna(), np.nan) for c in text})
    return frame


def _distinct(frame: pd.DataFrame, cols) -> pd.DataFrame:
    return frame[list(cols)].drop_duplicates(ignore_index=True)


def _meta_chunk(spec: tuple, frame: pd.DataFrame) -> _Meta:
    used, distinct_keys, moment_cols, path_col = spec
    frame = _normalise(frame, used)
    isna = frame.isna()
    complete = ~isna.any(axis=1).to_numpy()
    nulls = {c: int(v) for c, v in isna.sum().items()}
    ok = frame.loc[complete]
    distinct = {k: _distinct(ok, k if isinstance(k, tuple) else (k,)) for k in distinct_keys}
    moments = {}
    for c in moment_cols:
        v = ok[c].to_numpy(dtype=float)
        if len(v):
            m = float(v.mean())
            moments[c] = (len(v), m, float(((v - m) ** 2).sum()))
        else:
            moments[c] = (0, 0.0, 0.0)
    return _Meta(len(frame), int((~complete).sum()), nulls, distinct, moments, ok.head(64))


def _meta_combine(a: _Meta, b: _Meta) -> _Meta:
    moments = {}
    for c in a.moments:
        (na, ma, sa), (nb, mb, sb) = a.moments[c], b.moments[c]
        n = na + nb
        if n == 0:
            moments[c] = (0, 0.0, 0.0)
            continue
        d = mb - ma
        # Chan et al.'s pairwise update: stable whatever the means
        moments[c] = (n, ma + d * nb / n, sa + sb + d * d * na * nb / n)
    distinct = {k: pd.concat([a.distinct[k], b.distinct[k]], ignore_index=True).drop_duplicates(ignore_index=True)
                for k in a.distinct}
    sample = a.sample if len(a.sample) >= 64 else pd.concat([a.sample, b.sample]).head(64)
    return _Meta(a.n_total + b.n_total, a.n_incomplete + b.n_incomplete,
                 {c: a.nulls[c] + b.nulls[c] for c in a.nulls}, distinct, moments, sample)


# --- the plan every chunk is built with --------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Grouping:
    """A grouping factor's full-data levels: per column its sorted distinct values, and for an
    interaction the combination keys present (sorted), as :func:`bayesmer.design._grouping` orders them."""

    factors: tuple[str, ...]
    values: tuple  # per factor, a pandas Index of its distinct values in level order
    keys: np.ndarray | None  # interactions: the sorted mixed-radix keys of the combinations present
    levels: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """What a chunk's rows are built with: the used columns and the full-data state.

    Attributes
    ----------
    used : tuple of str
    y_spec, x_spec : formulaic ModelSpec, or None when the simple path builds them
    x_simple : bool
        Whether y and X are plain numeric columns and products (no formulaic per chunk).
    fixed_expr : str
    x_raw : tuple of str
        formulaic's names of every fixed column before aliased ones are dropped.
    offset_specs : tuple of ModelSpec
    groupings : dict of factor tuple -> _Grouping
    blocks : tuple of tuple of int
        Term indices per grouping factor, as the engine's ``factor_blocks`` groups them.
    term_specs : tuple of (expr, ModelSpec or None, simple parse or None)
        Per term (in the design's order) what builds its Z.
    y_centre : float
        Subtracted from y - offset in every chunk so the sums do not cancel.
    logical : frozenset of str
    """

    used: tuple[str, ...]
    fixed_expr: str
    y_spec: object = field(repr=False)
    x_spec: object = field(repr=False)
    x_simple: bool
    x_raw: tuple[str, ...]
    offset_specs: tuple = field(repr=False)
    groupings: dict = field(repr=False)
    blocks: tuple
    term_specs: tuple = field(repr=False)
    term_factors: tuple
    y_centre: float
    logical: frozenset
    label: str
    fixed_r: str
    term_cols: tuple = ()


def _factor_blocks(term_factors) -> tuple[tuple[int, ...], ...]:
    """Term indices grouped by grouping factor, in the terms' order (the engine's factor_blocks)."""
    blocks: dict[tuple, list[int]] = {}
    for i, f in enumerate(term_factors):
        blocks.setdefault(tuple(f), []).append(i)
    return tuple(tuple(v) for v in blocks.values())


def _sorted_values(s: pd.Series) -> pd.Index:
    """A column's distinct values in the level order of the in-memory design (``_factor_codes``)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        present = set(s.dropna().tolist())
        return pd.Index([c for c in cats if c in present], dtype=object)
    try:
        _, uniques = pd.factorize(s, sort=True)
    except TypeError:
        cat = s.astype("category")
        return pd.Index(cat.cat.categories)
    return pd.Index(uniques)


def _make_grouping(factors: tuple[str, ...], combos: pd.DataFrame) -> _Grouping:
    values = tuple(_sorted_values(combos[f]) for f in factors)
    names = [[str(v) for v in vals] for vals in values]
    if len(factors) == 1:
        return _Grouping(factors, values, None, tuple(names[0]))
    sizes = [max(len(v), 1) for v in values]
    key = np.zeros(len(combos), dtype=np.int64)
    for f, vals, size in zip(factors, values, sizes):
        key = key * size + _lookup(vals, combos[f], f)
    keys = np.unique(key)
    digits = np.stack(np.unravel_index(keys, sizes), axis=1)
    levels = tuple(":".join(names[j][i] for j, i in enumerate(row)) for row in digits)
    return _Grouping(factors, values, keys, levels)


def _lookup(values: pd.Index, col: pd.Series, name: str) -> np.ndarray:
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    codes = values.get_indexer(col)
    if (codes < 0).any():
        bad = col[codes < 0].iloc[0]
        raise DesignError(f"grouping column {name!r} has a value {bad!r} the metadata pass did not see")
    return codes.astype(np.int64)


def _codes(g: _Grouping, frame: pd.DataFrame) -> np.ndarray:
    if g.keys is None:
        return _lookup(g.values[0], frame[g.factors[0]], g.factors[0])
    sizes = [max(len(v), 1) for v in g.values]
    key = np.zeros(len(frame), dtype=np.int64)
    for f, vals, size in zip(g.factors, g.values, sizes):
        key = key * size + _lookup(vals, frame[f], f)
    return np.searchsorted(g.keys, key).astype(np.int64)


def _with_moments(spec, moments: dict, where: str, label: str):
    """formulaic's spec with scale()/center() state from the full data; poly/ns/bs refused."""
    if spec is None:
        return None
    state = dict(spec.transform_state)
    changed = False
    for key, st in state.items():
        m = re.fullmatch(r"(r_scale|center)\(\s*([A-Za-z_][\w]*)\s*\)", key)
        if m:
            col = m.group(2)
            if col not in moments:
                raise DesignError(f"{where}: {key} of a column that is not numeric")
            n, mean, m2 = moments[col]
            sd = math.sqrt(m2 / (n - 1)) if n > 1 else float("nan")
            state[key] = {"center": mean, "scale": sd} if m.group(1) == "r_scale" else \
                dict(st, center=np.float64(mean))
            changed = True
        elif key.split("(")[0] in _NEEDS_ALL_ROWS or key.startswith(("r_scale", "center")):
            call = key.split("(")[0].removeprefix("splines_").removeprefix("r_")
            raise DesignError(
                f"{where}: {call}() needs every row of {label} at once to fix its state (knots, orthogonal "
                f"basis or arguments); compute the term as a column first, or give its knots, or use raw = TRUE"
            )
    return spec.update(transform_state=state) if changed else spec


def _plan(f: Formula, src: Source, meta: _Meta, used: list[str], moments: dict) -> tuple[Plan, dict]:
    sample = meta.sample
    # a frame with every distinct value of the categorical columns, so that formulaic's
    # levels (and R's factor() levels) are those of the full data
    proto = sample.copy()
    in_terms = set(_required(f.response)) | set(_required(f.fixed)) | {c for o in f.offset for c in _required(o)}
    in_terms |= {c for t in f.random for c in _required(t.expr)}
    for k, d in meta.distinct.items():
        if isinstance(k, tuple) or d.empty or k not in in_terms:
            continue
        extra = pd.DataFrame({c: np.repeat(sample[c].to_numpy()[:1], len(d)) for c in sample.columns})
        extra[k] = d[k].to_numpy()
        for c in sample.columns:
            dtype = sample[c].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                cats = list(dtype.categories)
                dtype = pd.CategoricalDtype(cats + [v for v in pd.unique(extra[c]) if v not in set(cats)],
                                            ordered=dtype.ordered)
                proto[c] = proto[c].astype(dtype)
            extra[c] = extra[c].astype(dtype)
        proto = pd.concat([proto, extra], ignore_index=True)
    logical = _logical(proto)
    fixed_code, _ = to_formulaic(f.fixed, logical)
    fixed_expr = f"{factor_code(f.response)} ~ {fixed_code}"
    parsed = _parse(fixed_expr)
    simple = _simple_matrix(parsed.lhs, proto) is not None and _simple_matrix(parsed.rhs, proto) is not None \
        and _simple_matrix(parsed.lhs, proto)[1] != ["Intercept"]
    if simple:
        y_spec = x_spec = None
        x_raw = tuple(_simple_matrix(parsed.rhs, proto)[1])
    else:
        mm = _matrix(fixed_expr, proto, "the fixed effects")
        y_spec = _with_moments(mm.lhs.model_spec, moments, "the response", src.label)
        x_spec = _with_moments(mm.rhs.model_spec, moments, "the fixed effects", src.label)
        x_raw = tuple(mm.rhs.columns)
    offset_specs = []
    for o in f.offset:
        mm = _matrix(f"0 + I({factor_code(o)})", proto, f"offset({o})")
        offset_specs.append(_with_moments(mm.model_spec, moments, f"offset({o})", src.label))
    groupings = {}
    for t in f.random:
        if t.factors not in groupings:
            key = t.factors if len(t.factors) > 1 else t.factors[0]
            combos = meta.distinct[key]
            groupings[t.factors] = _make_grouping(t.factors, combos)
    return Plan(
        used=tuple(used), fixed_expr=fixed_expr, y_spec=y_spec, x_spec=x_spec, x_simple=simple, x_raw=x_raw,
        offset_specs=tuple(offset_specs), groupings=groupings, blocks=(), term_specs=(), term_factors=(),
        y_centre=0.0, logical=logical, label=src.label, fixed_r=f.fixed,
    ), {"proto": proto}


def _term_spec(t, proto: pd.DataFrame, logical, moments, label):
    code, _ = to_formulaic(t.expr, logical)
    parsed = _parse(code)
    simple = _simple_matrix(parsed, proto)
    if simple is not None:
        return code, None, simple[1]
    mm = _matrix(code, proto, f"random-effect term {t}")
    return code, _with_moments(mm.model_spec, moments, f"random-effect term {t}", label), list(mm.columns)


# --- one chunk's rows, as the in-memory design builds them ------------------------------------


@dataclass(frozen=True, eq=False)
class ChunkRows:
    """A chunk's complete rows: y (minus offset and centre), every fixed column, per block codes and Z."""

    y: np.ndarray
    X: np.ndarray
    codes: tuple
    Z: tuple
    offset: np.ndarray | None
    term_codes: tuple = ()
    term_Z: tuple = ()


def _chunk_rows(plan: Plan, frame: pd.DataFrame) -> ChunkRows:
    frame = _normalise(frame, plan.used)
    frame = frame.loc[frame.notna().all(axis=1).to_numpy()]
    if plan.x_simple:
        parsed = _parse(plan.fixed_expr)
        y = _simple_matrix(parsed.lhs, frame)[0][:, 0]
        X = _simple_matrix(parsed.rhs, frame)[0]
    else:
        y = np.asarray(plan.y_spec.get_model_matrix(frame, na_action="ignore", context=CONTEXT), dtype=float)
        y = y[:, 0] if y.ndim == 2 else y
        X = np.asarray(plan.x_spec.get_model_matrix(frame, na_action="ignore", context=CONTEXT), dtype=float)
        if X.ndim == 1:
            X = X[:, None]
    _check_finite(y, ["the response"], f"the response in {plan.label}")
    _check_finite(X, list(plan.x_raw), f"the fixed-effect design of {plan.label}")
    offset = None
    if plan.offset_specs:
        offset = np.zeros(len(frame))
        for spec in plan.offset_specs:
            v = np.asarray(spec.get_model_matrix(frame, na_action="ignore", context=CONTEXT), dtype=float)
            offset += v[:, 0] if v.ndim == 2 else v
        _check_finite(offset, ["offset"], f"the offset in {plan.label}")
    zs: dict[str, np.ndarray] = {}
    codes, Zb = [], []
    term_codes, term_Z = [None] * len(plan.term_specs), [None] * len(plan.term_specs)
    for idx in plan.blocks:
        g = plan.groupings[plan.term_factors[idx[0]]]
        codes.append(_codes(g, frame))
        parts = []
        for i in idx:
            term_codes[i] = codes[-1]
            code, spec, names = plan.term_specs[i]
            if code not in zs:
                if spec is None:
                    zs[code] = _simple_matrix(_parse(code), frame)[0]
                else:
                    zs[code] = np.asarray(spec.get_model_matrix(frame, na_action="ignore", context=CONTEXT),
                                          dtype=float).reshape(len(frame), -1)
                _check_finite(zs[code], names, f"random-effect term ({code}) in {plan.label}")
            parts.append(zs[code])
            term_Z[i] = zs[code]
        Zb.append(np.concatenate(parts, axis=1))
    return ChunkRows(y, X, tuple(codes), tuple(Zb), offset, tuple(term_codes), tuple(term_Z))


def iter_design_chunks(design: Design):
    """Per chunk of an out-of-memory design's data, its complete rows rebuilt (:class:`ChunkRows`,
    X with the design's columns, the terms' codes and Z in the design's order), in the data's
    order: the per-row groups and predictions computed on request, one chunk in memory at a time.

    Parameters
    ----------
    design : Design
        A design built from data not in memory (``design.source`` set).

    Yields
    ------
    ChunkRows
        One chunk's rows: ``X``, the terms' codes and ``Z``, the response.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.parquet"
    >>> bayesmer.datasets.load("sleepstudy").to_parquet(path)
    >>> d = sources.build_source_design("Reaction ~ Days + (Days | Subject)", str(path))
    >>> sum(len(chunk.X) for chunk in sources.iter_design_chunks(d))
    180
    """
    src, plan = design.source
    names = _fixed_names(plan)
    keep = [names.index(n) for n in design.fixed_names]
    for frame in src.chunks(list(plan.used)):
        r = _chunk_rows(plan, frame)
        yield replace(r, X=r.X[:, keep])


# --- the statistics pass ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RawSums:
    """Additive sums over the rows of a design, O(levels) in size.

    With ỹ = y - offset - ``y_centre`` and W = [1, X, ỹ, Z of every block]:

    Attributes
    ----------
    n : int
    y_centre : float
    WtW : ndarray (1+p+1+ΣK, same)
        The global cross products: n, the column sums, X'X, X'ỹ, ỹ'ỹ, Z'Z totals.
    A11, A1X, A1y : per level of the first block's factor, Z'Z (G1,K1,K1), Z'X (G1,K1,p), Z'ỹ (G1,K1)
    A21 : scipy CSR (q2, G1*K1)
        The other blocks' columns against the first's (the pair tables of crossed factors).
    A22, A2X, A2y : the other blocks' dense Z2'Z2 (q2,q2), Z2'X (q2,p), Z2'ỹ (q2,)
    y_min, y_max : float
        Of y - offset (the response's check that it varies).
    blk_G, blk_K : tuple of int
        Levels and columns per block.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.parquet"
    >>> bayesmer.datasets.load("sleepstudy").to_parquet(path)
    >>> d = sources.build_source_design("Reaction ~ Days + (Days | Subject)", str(path))
    >>> d.sums.n, d.sums.p
    (180, 2)
    """

    n: int
    y_centre: float
    WtW: np.ndarray
    A11: np.ndarray
    A1X: np.ndarray
    A1y: np.ndarray
    A21: object
    A22: np.ndarray
    A2X: np.ndarray
    A2y: np.ndarray
    y_min: float
    y_max: float
    blk_G: tuple
    blk_K: tuple
    W_min: np.ndarray
    W_max: np.ndarray
    G1XtX: np.ndarray
    G1Xy: np.ndarray
    G1yy: np.ndarray
    term_cols: tuple

    @property
    def p(self) -> int:
        return self.A1X.shape[2]

    def __add__(self, other: "RawSums") -> "RawSums":
        return RawSums(
            self.n + other.n, self.y_centre, self.WtW + other.WtW, self.A11 + other.A11, self.A1X + other.A1X,
            self.A1y + other.A1y, (self.A21 + other.A21).tocsr(), self.A22 + other.A22, self.A2X + other.A2X,
            self.A2y + other.A2y, min(self.y_min, other.y_min), max(self.y_max, other.y_max),
            self.blk_G, self.blk_K, np.minimum(self.W_min, other.W_min), np.maximum(self.W_max, other.W_max),
            self.G1XtX + other.G1XtX, self.G1Xy + other.G1Xy, self.G1yy + other.G1yy, self.term_cols,
        )

    def keep_fixed(self, keep: list[int]) -> "RawSums":
        """The sums with only the fixed columns ``keep`` (after aliased ones are dropped)."""
        p = self.p
        idx = [0, *(1 + j for j in keep), *range(1 + p, self.WtW.shape[0])]
        return replace(self, WtW=self.WtW[np.ix_(idx, idx)], A1X=self.A1X[:, :, keep], A2X=self.A2X[:, keep],
                       W_min=self.W_min[idx], W_max=self.W_max[idx], G1XtX=self.G1XtX[:, keep][:, :, keep],
                       G1Xy=self.G1Xy[:, keep])

    @property
    def XtX(self) -> np.ndarray:
        p = self.p
        return self.WtW[1:1 + p, 1:1 + p]

    @property
    def Xty(self) -> np.ndarray:
        p = self.p
        return self.WtW[1:1 + p, 1 + p]

    @property
    def yty(self) -> float:
        return float(self.WtW[1 + self.p, 1 + self.p])

    def columns(self) -> dict:
        """Per column of W (1, X, ỹ, Z): ``mean``, ``var`` (ddof 0), ``maxabs``; ``y`` and ``x``, ``z``
        index W's columns of the response, the fixed columns and each term's columns."""
        n = self.n
        mean = self.WtW[0] / n
        # about the mean, from the cross products: the sums were taken about a centred response
        var = np.clip(np.diag(self.WtW) / n - mean**2, 0.0, None)
        p = self.p
        z0 = 2 + p
        return {"mean": mean, "var": var, "maxabs": np.maximum(np.abs(self.W_min), np.abs(self.W_max)),
                "x": list(range(1, 1 + p)), "y": 1 + p,
                "z": [list(range(z0 + a, z0 + a + k)) for a, k in self.term_cols], "WtW": self.WtW}


def _sums_chunk(plan: Plan, frame: pd.DataFrame) -> RawSums:
    r = _chunk_rows(plan, frame)
    n, P = len(r.y), r.X.shape[1]
    y = r.y - (0.0 if r.offset is None else r.offset)
    y_min = float(y.min()) if n else math.inf
    y_max = float(y.max()) if n else -math.inf
    yc = y - plan.y_centre
    W = np.concatenate([np.ones((n, 1)), r.X, yc[:, None], *r.Z], axis=1)
    WtW = W.T @ W
    W_min = W.min(axis=0) if n else np.full(W.shape[1], np.inf)
    W_max = W.max(axis=0) if n else np.full(W.shape[1], -np.inf)
    codes1, Z1 = r.codes[0], r.Z[0]
    G1 = len(plan.groupings[plan.term_factors[plan.blocks[0][0]]].levels)
    K1 = Z1.shape[1]
    A11 = np.zeros((G1, K1, K1))
    A1X = np.zeros((G1, K1, P))
    A1y = np.zeros((G1, K1))
    for a in range(K1):
        for c in range(a, K1):
            v = np.bincount(codes1, weights=Z1[:, a] * Z1[:, c], minlength=G1)
            A11[:, a, c] = v
            A11[:, c, a] = v
        for c in range(P):
            A1X[:, a, c] = np.bincount(codes1, weights=Z1[:, a] * r.X[:, c], minlength=G1)
        A1y[:, a] = np.bincount(codes1, weights=Z1[:, a] * yc, minlength=G1)
    # per level of the first factor, X'X, X'ỹ and ỹ'ỹ: the exact leave-one-group-out reads them
    G1XtX = np.zeros((G1, P, P))
    G1Xy = np.zeros((G1, P))
    for a in range(P):
        for c in range(a, P):
            v = np.bincount(codes1, weights=r.X[:, a] * r.X[:, c], minlength=G1)
            G1XtX[:, a, c] = v
            G1XtX[:, c, a] = v
        G1Xy[:, a] = np.bincount(codes1, weights=r.X[:, a] * yc, minlength=G1)
    G1yy = np.bincount(codes1, weights=yc * yc, minlength=G1)
    blk_G = [G1]
    blk_K = [K1]
    mats = []
    for idx, codes, Z in zip(plan.blocks[1:], r.codes[1:], r.Z[1:]):
        G = len(plan.groupings[plan.term_factors[idx[0]]].levels)
        blk_G.append(G)
        blk_K.append(Z.shape[1])
        mats.append(_sparse(codes, G, Z, n))
    q2 = sum(g * k for g, k in zip(blk_G[1:], blk_K[1:]))
    if q2:
        Z2t = sp.hstack(mats, format="csr").T.tocsr()
        A21 = (Z2t @ _sparse(codes1, G1, Z1, n)).tocsr()
        A22 = np.asarray((Z2t @ Z2t.T).toarray())
        A2X = np.asarray(Z2t @ r.X).reshape(q2, P)
        A2y = np.asarray(Z2t @ yc).reshape(-1)
    else:
        A21 = sp.csr_matrix((0, G1 * K1))
        A22, A2X, A2y = np.zeros((0, 0)), np.zeros((0, P)), np.zeros(0)
    return RawSums(n, plan.y_centre, WtW, A11, A1X, A1y, A21, A22, A2X, A2y, y_min, y_max,
                   tuple(blk_G), tuple(blk_K), W_min, W_max, G1XtX, G1Xy, G1yy, plan.term_cols)


def _sparse(codes, G, Z, n):
    K = Z.shape[1]
    rows = np.repeat(np.arange(n), K)
    cols = (codes[:, None] * K + np.arange(K)[None, :]).reshape(-1)
    return sp.csr_matrix((Z.reshape(-1), (rows, cols)), shape=(n, G * K))


def _add(a, b):
    return a + b


# --- the design ------------------------------------------------------------------------------


def _aliased(sums: RawSums, names: list[str]) -> list[int]:
    """The leading linearly independent fixed columns, by :func:`bayesmer.design._drop_aliased`'s
    rule (unit-norm columns, tolerance 1e-7 sqrt(n)) read from X'X: a column is kept when the
    smallest singular value of the kept columns with it stays above the tolerance."""
    XtX = sums.XtX
    scale = np.sqrt(np.clip(np.diag(XtX), 0.0, None))
    tol = 1e-7 * math.sqrt(sums.n)
    keep: list[int] = []
    for j in range(XtX.shape[0]):
        if not scale[j] > 0:
            continue
        cand = keep + [j]
        s = scale[cand]
        gram = XtX[np.ix_(cand, cand)] / np.outer(s, s)
        smin = math.sqrt(max(float(np.linalg.eigvalsh(gram)[0]), 0.0))
        if smin > tol:
            keep.append(j)
    return keep


def _check_columns(f: Formula, src: Source) -> list[str]:
    used: list[str] = []
    needed = [(f.response, "the response"), (f.fixed, "the fixed effects")]
    needed += [(o, f"offset({o})") for o in f.offset]
    needed += [(t.expr, f"random-effect term {t}") for t in f.random]
    for expr, where in needed:
        for name in sorted(_required(expr)):
            if name not in src.columns:
                raise DesignError(f"unknown column {name!r} in {where} ({src.label}); it has {list(src.columns)}")
            if name not in used:
                used.append(name)
    for t in f.random:
        for name in t.factors:
            if name not in src.columns:
                raise DesignError(f"unknown grouping column {name!r} in random-effect term {t} ({src.label}); "
                                  f"it has {list(src.columns)}")
            if name not in used:
                used.append(name)
    if src.kind == "parquet":
        import pyarrow.parquet as pq

        # a file of a glob without a column would be read as all missing: name it
        for path in src.obj:
            names = set(pq.read_schema(path).names)
            lacking = [c for c in used if c not in names]
            if lacking:
                raise DesignError(f"Parquet file {path!r} lacks column(s) {lacking} that the formula reads")
    return used


def build_design(formula: str | Formula, data) -> Design:
    """Build the design of ``formula`` on ``data``, in memory or not (``bayesmer.build_design``).

    A pandas DataFrame goes to :func:`bayesmer.design.build_design` (see it for
    the rules); a path or glob of Parquet files, a Dask, Polars or Spark
    DataFrame, a Polars LazyFrame or a DuckDB relation to
    :func:`build_source_design`: a design without rows, its statistics computed
    where the data live.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula.
    data : DataFrame or data source
        The rows in memory, or where they live (see above).

    Returns
    -------
    Design
        X, and per random-effect term its grouping codes and raw columns (no
        rows for data not in memory: their sufficient statistics instead).

    Raises
    ------
    FormulaError, DesignError
        As :func:`bayesmer.design.build_design`; data of any other type.

    Examples
    --------
    >>> import bayesmer
    >>> d = bayesmer.build_design("Yield ~ 1 + (1 | Batch)", bayesmer.datasets.load("dyestuff"))
    >>> d.n, [t.group for t in d.terms]
    (30, ['Batch'])
    """
    if is_source(data):
        return build_source_design(formula, data)
    return build_frame_design(formula, data)


def build_source_design(formula: str | Formula, data, chunk_rows: int | None = None) -> Design:
    """The design of ``formula`` on data that are not in memory (see the module).

    Parameters
    ----------
    formula : str or Formula
    data : path or glob of Parquet files, Dask/Polars/Spark DataFrame, Polars LazyFrame, DuckDB relation
    chunk_rows : int, optional
        Rows per streamed record batch; default :data:`CHUNK_ROWS`.

    Returns
    -------
    Design
        Without rows (``y``, ``X``, ``frame``, the terms' ``codes`` and ``Z`` are None); its
        ``sums`` hold the statistics and ``source`` what reads the rows again on request.

    Raises
    ------
    DesignError
        Naming the file, column or term: no file matches, a file lacks a column, a grouping
        column all missing, a transform that needs every row at once.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import bayesmer
    >>> from bayesmer import sources
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.parquet"
    >>> bayesmer.datasets.load("sleepstudy").to_parquet(path)
    >>> d = sources.build_source_design("Reaction ~ Days + (Days | Subject)", str(path))
    >>> d.y is None, d.sums.n
    (True, 180)
    """
    f = parse_formula(formula)
    src = data if isinstance(data, Source) else as_source(data, chunk_rows)
    used = _check_columns(f, src)
    grouping_cols = {c for t in f.random for c in t.factors}
    factor_cols = set(_FACTOR_CALL.findall(str(f.fixed))) | {c for t in f.random for c in _FACTOR_CALL.findall(t.expr)}
    # the first chunk's dtypes say which columns are categorical
    first = _first_chunk(src, used)
    categorical = [c for c in used if c in factor_cols or not pd.api.types.is_numeric_dtype(first[c])
                   or pd.api.types.is_bool_dtype(first[c])]
    distinct_keys = [c for c in used if c in categorical and c not in grouping_cols]
    for t in f.random:
        key = t.factors if len(t.factors) > 1 else t.factors[0]
        if key not in distinct_keys:
            distinct_keys.append(key)
    moment_cols = [c for c in used if pd.api.types.is_numeric_dtype(first[c]) and not pd.api.types.is_bool_dtype(first[c])]
    meta = src.map_reduce(used, functools.partial(_meta_chunk, (tuple(used), tuple(distinct_keys),
                                                                tuple(moment_cols), None)), _meta_combine)
    if meta.n_total == 0:
        raise DesignError(f"{src.label} has no rows to fit")
    for t in f.random:
        for c in t.factors:
            if meta.nulls[c] == meta.n_total:
                raise DesignError(f"grouping column {c!r} of random-effect term {t} is missing in every row "
                                  f"of {src.label}")
    n_dropped = meta.n_incomplete
    if n_dropped:
        missing = [c for c in used if meta.nulls[c]]
        warnings.warn(
            f"{n_dropped} row(s) with missing values in {missing} removed ({meta.n_total - n_dropped} kept)",
            UserWarning, stacklevel=3,
        )
    if meta.n_total == n_dropped:
        raise DesignError("no rows left after removing rows with missing values")
    for name in _required(f.response):
        if not pd.api.types.is_numeric_dtype(meta.sample[name]) or pd.api.types.is_bool_dtype(meta.sample[name]):
            raise DesignError(
                f"the response column {name!r} is not numeric (dtype {meta.sample[name].dtype}); "
                "a linear mixed model needs a numeric response"
            )
    plan, extra = _plan(f, src, meta, used, meta.moments)
    proto = extra["proto"]
    # terms in lme4's order (decreasing number of levels, stable), named as build_design names them
    order = sorted(range(len(f.random)), key=lambda i: -len(plan.groupings[f.random[i].factors].levels))
    specs = [_term_spec(f.random[i], proto, plan.logical, meta.moments, src.label) for i in order]
    term_factors = tuple(f.random[i].factors for i in order)
    blocks = _factor_blocks(term_factors)
    term_cols, pos = [None] * len(specs), 0
    for idx in blocks:
        for i in idx:
            term_cols[i] = (pos, len(specs[i][2]))
            pos += len(specs[i][2])
    plan = replace(plan, blocks=blocks, term_specs=tuple(specs), term_factors=term_factors,
                   term_cols=tuple(term_cols))
    # the centre of y: the mean of the response column when it is y itself (the common case), else 0
    resp = f.response.strip()
    centre = meta.moments[resp][1] if resp in meta.moments and not f.offset and "(Intercept)" in \
        _fixed_names(plan) else 0.0
    plan = replace(plan, y_centre=float(centre))
    sums = src.map_reduce(used, functools.partial(_sums_chunk, plan), _add)
    n = sums.n
    names = _fixed_names(plan)
    if sums.y_max == sums.y_min:
        _check_varies(np.array([sums.y_min, sums.y_max]), f.response, sorted(_required(f.response)), n_dropped)
    keep = _aliased(sums, names) if names else []
    aliased = [names[j] for j in range(len(names)) if j not in keep]
    if aliased:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column(s): {aliased}",
            UserWarning, stacklevel=3,
        )
    sums = sums.keep_fixed(keep)
    terms = []
    seen: dict[str, int] = {}
    for pos, i in enumerate(order):
        t = f.random[i]
        g = plan.groupings[t.factors]
        if len(g.levels) < 2:
            raise DesignError(f"grouping factor {t.group!r} of {t} has a single level ({g.levels[0]!r}); "
                              "a random effect needs at least two levels")
        if len(g.levels) >= n:
            raise DesignError(f"grouping factor {t.group!r} of {t} has {len(g.levels)} levels for {n} rows: "
                              "each row is its own group, so its variance cannot be told apart from the residual")
        count = seen.get(t.group, 0)
        seen[t.group] = count + 1
        code, spec, raw = specs[pos]
        labels = _r_names_for(t.expr, plan.logical)
        tnames = tuple(_r_column(c, labels) for c in raw)
        terms.append(ReTerm(t.group if count == 0 else f"{t.group}.{count}", t.group, t.factors, None, g.levels,
                            tnames, None, t.expr, spec if spec is not None else _LazySpec(code, proto, rhs=False)))
    return Design(
        formula=f, response=f.response, y=None, X=None, fixed_names=tuple(names[j] for j in keep),
        terms=tuple(terms), frame=None, n_dropped=n_dropped, aliased=tuple(aliased),
        fixed_spec=plan.x_spec if plan.x_spec is not None else _LazySpec(plan.fixed_expr, proto, rhs=True),
        offset=None, sums=sums, source=(src, plan),
    )


def _fixed_names(plan: Plan) -> list[str]:
    labels = _r_names_for(plan.fixed_r, plan.logical)
    return [_r_column(c, labels) for c in plan.x_raw]


def _first_chunk(src: Source, used: list[str]) -> pd.DataFrame:
    if src.kind == "dask":
        return _normalise(src.obj[used]._meta, used)
    if src.kind == "spark":
        return _normalise(src.obj.select(*used).limit(1024).toPandas(), used)
    small = replace(src, chunk_rows=1024)
    for chunk in small.chunks(used):
        return _normalise(chunk, used)
    return pd.DataFrame({c: [] for c in used})
