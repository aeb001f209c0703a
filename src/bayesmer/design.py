"""Build the design of a mixed model once: y, X and the random-effect blocks.

Every estimator (REML/ML, the PyMC builder, prediction, simulation) reads the
frozen :class:`Design` this module returns and never goes back to the data.
Random-effect terms are stored as MixedModels.jl's ``ReMat`` is: grouping codes
plus the raw ``n x k`` columns, never as an ``n x q`` indicator matrix.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from .formula import Formula, FormulaError, RandomTerm, parse_formula

__all__ = ["DesignError", "ReTerm", "Design", "NewData", "build_design", "new_data"]


class DesignError(ValueError):
    """Data that cannot make a design for the formula, with the culprit named."""


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One random-effect term: grouping codes and the raw columns it multiplies.

    Attributes
    ----------
    name : str
        Unique name: the grouping factor, with lme4's ``.1``, ``.2`` suffix when
        several terms share a factor (``(Days || Subject)`` gives ``Subject`` and
        ``Subject.1``).
    group : str
        Grouping factor as written, ``"batch:cask"`` for an interaction.
    factors : tuple of str
        The data columns that make up the grouping factor.
    codes : ndarray of int64, shape (n,)
        Level index of each row.
    levels : tuple of str
        Level names; ``"A:a"`` for an interaction.
    terms : tuple of str
        Column names, lme4 style: ``("(Intercept)", "Days")``.
    Z : ndarray, shape (n, k)
        Raw columns of the term.
    expr : str
        The term's left-hand side in formulaic syntax.
    spec : formulaic ModelSpec
        Rebuilds ``Z`` for new data.
    """

    name: str
    group: str
    factors: tuple[str, ...]
    codes: np.ndarray
    levels: tuple[str, ...]
    terms: tuple[str, ...]
    Z: np.ndarray
    expr: str
    spec: object = field(repr=False)

    @property
    def k(self) -> int:
        """Number of columns (random effects per level)."""
        return self.Z.shape[1]

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def label(self) -> str:
        """The term as lme4 prints it, ``(1 + Days | Subject)``."""
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True, eq=False)
class Design:
    """The design of a linear mixed model.

    Attributes
    ----------
    formula : Formula
    response : str
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    fixed_names : tuple of str
        lme4 names: ``(Intercept)``, ``x``, ``x:a``, ``aB`` for factor level B.
    terms : tuple of ReTerm
        In lme4's order: by decreasing number of levels, ties in formula order.
    frame : DataFrame
        The used columns of the rows kept, indexed as in the input.
    n_dropped : int
        Rows removed for a missing value.
    aliased : tuple of str
        Fixed-effect columns dropped because X was rank deficient.
    fixed_spec : formulaic ModelSpec
        Rebuilds ``X`` for new data.
    """

    formula: Formula
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    terms: tuple[ReTerm, ...]
    frame: pd.DataFrame = field(repr=False)
    n_dropped: int
    aliased: tuple[str, ...]
    fixed_spec: object = field(repr=False)

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.y.shape[0]

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return self.X.shape[1]


@dataclass(frozen=True, eq=False)
class NewData:
    """A design's matrices rebuilt on new data, for prediction and simulation.

    Attributes
    ----------
    X : ndarray, shape (m, p)
    codes : tuple of ndarray
        Per term of the design, the level index of each row; -1 for a level the
        design has not seen.
    Z : tuple of ndarray
        Per term, the raw columns, shape (m, k).
    """

    X: np.ndarray
    codes: tuple[np.ndarray, ...]
    Z: tuple[np.ndarray, ...]


_LEVEL = re.compile(r"\[(?:T\.)?([^\]]*)\]")


def _lme4_name(name: str) -> str:
    """formulaic's column name as lme4 prints it: ``a[T.b]`` -> ``ab``."""
    if name == "Intercept":
        return "(Intercept)"
    return _LEVEL.sub(r"\1", name)


@functools.lru_cache(maxsize=512)
def _parse(expr: str):
    """formulaic's parse of ``expr``, cached: parsing costs as much as building."""
    return formulaic.Formula(expr)


@functools.lru_cache(maxsize=512)
def _required_cached(expr: str) -> frozenset[str]:
    return frozenset(str(v) for v in _parse(expr).required_variables)


def _required(expr: str) -> set[str]:
    try:
        return set(_required_cached(expr))
    except Exception as exc:  # formulaic raises many types for bad syntax
        raise FormulaError(f"cannot parse {expr!r}: {exc}") from exc


class _LazySpec:
    """A formulaic ModelSpec built on first use from the design's own frame.

    The simple designs built without formulaic (see :func:`_simple_matrix`)
    still rebuild on new data exactly as formulaic does: the spec formulaic
    would have returned is made from the same expression and rows when first
    asked for, and every attribute is read from it.
    """

    def __init__(self, expr: str, frame: pd.DataFrame, rhs: bool):
        self._args = (expr, frame, rhs)
        self._spec = None

    def _get(self):
        if self._spec is None:
            expr, frame, rhs = self._args
            mm = _matrix(expr, frame, "the fixed effects" if rhs else f"random-effect term ({expr})")
            self._spec = mm.rhs.model_spec if rhs else mm.model_spec
        return self._spec

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_args", "_spec"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return repr(self._get())


def _simple_matrix(terms, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """The model matrix of parsed formulaic ``terms`` without formulaic, if simple.

    Simple: every term is the intercept, one plain numeric column (not bool,
    not categorical or text) or a product of such columns, the common case
    (``1``, ``Days``, ``0 + x``, ``x * a`` of numeric ``x`` and ``a``).
    Columns in formulaic's order (that of the parsed terms) with its names
    (``x:a`` for a product); None for anything else, which formulaic builds.
    """
    cols: list[np.ndarray | None] = []
    names: list[str] = []
    values: dict[str, np.ndarray] = {}
    for term in terms:
        factors = term.factors
        if not factors:
            return None
        first = factors[0]
        if len(factors) == 1 and getattr(first.eval_method, "value", first.eval_method) == "literal":
            if first.expr != "1":
                return None
            cols.append(None)
            names.append("Intercept")
            continue
        prod = None
        for fa in factors:
            if getattr(fa.eval_method, "value", fa.eval_method) != "lookup" or fa.expr not in frame.columns:
                return None
            v = values.get(fa.expr)
            if v is None:
                col = frame[fa.expr]
                if not isinstance(col, pd.Series):  # duplicated column names
                    return None
                dtype = col.dtype
                if not (isinstance(dtype, np.dtype) and dtype.kind in "iuf"):
                    return None
                v = values[fa.expr] = col.to_numpy(dtype=float)
            prod = v if prod is None else prod * v
        name = ":".join(fa.expr for fa in factors)
        if name != str(term):
            return None
        cols.append(prod)
        names.append(name)
    out = np.empty((len(frame), len(cols)))
    for j, c in enumerate(cols):
        out[:, j] = 1.0 if c is None else c
    return out, names


def _used_columns(formula: Formula, data: pd.DataFrame) -> list[str]:
    used: list[str] = []
    needed = [(formula.response, "the response")]
    needed += [(formula.fixed, "the fixed effects")]
    for term in formula.random:
        needed.append((term.expr, f"random-effect term {term}"))
    for expr, where in needed:
        for name in sorted(_required(expr)):
            if name not in data.columns:
                raise DesignError(f"unknown column {name!r} in {where}; the data has {list(data.columns)}")
            if name not in used:
                used.append(name)
    for term in formula.random:
        for name in term.factors:
            if name not in data.columns:
                raise DesignError(
                    f"unknown grouping column {name!r} in random-effect term {term}; "
                    f"the data has {list(data.columns)}"
                )
            if name not in used:
                used.append(name)
    return used


def _matrix(expr: str, frame: pd.DataFrame, where: str):
    try:
        return formulaic.model_matrix(expr, frame, na_action="ignore")
    except Exception as exc:
        raise DesignError(f"cannot build {where} from {expr!r}: {exc}") from exc


def _check_finite(values: np.ndarray, names, where: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        cols = np.atleast_2d(bad.T).any(axis=1) if values.ndim == 2 else [True]
        culprits = [n for n, b in zip(names, cols) if b]
        raise DesignError(
            f"{where} has {int(bad.sum())} infinite or undefined value(s) in {culprits}; "
            "remove or transform those rows"
        )


def _factor_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes and level names of one grouping column, read as categorical."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        # pd.factorize(sort=True) gives astype("category")'s levels (the sorted
        # distinct values) in a fraction of the time; values that do not sort
        # (mixed types) go the categorical way, which keeps them in order seen.
        try:
            codes, uniques = pd.factorize(col, sort=True)
        except TypeError:
            pass
        else:
            return codes.astype(np.int64, copy=False), [str(c) for c in uniques]
        cat = col.astype("category")
    else:
        cat = col.cat.remove_unused_categories()
    return cat.cat.codes.to_numpy(np.int64), [str(c) for c in cat.cat.categories]


def _grouping(frame: pd.DataFrame, factors: tuple[str, ...], columns: dict | None = None):
    """Codes and level names of a grouping factor (an interaction of several).

    ``columns`` caches each column's codes across the terms of one design.
    """
    columns = {} if columns is None else columns
    parts = []
    for f in factors:
        if f not in columns:
            columns[f] = _factor_codes(frame[f])
        parts.append(columns[f])
    if len(parts) == 1:
        return parts[0][0], tuple(parts[0][1])
    # One integer per combination, in the lexicographic order of the codes
    # (that of np.unique on the stacked rows), then its distinct values.
    key = np.zeros(len(frame), dtype=np.int64)
    sizes = [max(len(lv), 1) for _, lv in parts]
    if math.prod(sizes) < 2**62:
        for (c, _), size in zip(parts, sizes):
            key = key * size + c
        combined, codes = np.unique(key, return_inverse=True)
        combos = np.stack(np.unravel_index(combined, sizes), axis=1)
    else:
        stacked = np.stack([c for c, _ in parts], axis=1)
        combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    levels = tuple(":".join(parts[j][1][i] for j, i in enumerate(row)) for row in combos)
    return codes.reshape(-1).astype(np.int64), levels


def _drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Keep the leading linearly independent columns, as lme4's pivoted QR does."""
    rank = np.linalg.matrix_rank(X)
    if rank == X.shape[1]:
        return X, names, []
    keep: list[int] = []
    scale = np.linalg.norm(X, axis=0)
    tol = 1e-7
    for j in range(X.shape[1]):
        cand = keep + [j]
        sub = X[:, cand] / np.where(scale[cand] > 0, scale[cand], 1.0)
        if scale[j] > 0 and np.linalg.matrix_rank(sub, tol=tol * np.sqrt(X.shape[0])) == len(cand):
            keep.append(j)
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], dropped


def build_design(formula: str | Formula, data: pd.DataFrame) -> Design:
    """Build the design of ``formula`` on ``data``.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame
        One row per observation. Grouping columns are read as categorical
        whatever their dtype.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DesignError
        Naming the column, term or level at fault.

    Warns
    -----
    UserWarning
        When rows are dropped for missing values (with their count) or aliased
        fixed-effect columns are dropped (with their names).
    """
    f = parse_formula(formula)
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DesignError("the data frame is empty: it has no rows to fit")
    used = _used_columns(f, data)
    frame = data[used]
    complete = frame.notna().all(axis=1).to_numpy()
    n_dropped = int((~complete).sum())
    if n_dropped:
        missing = [c for c in used if frame[c].isna().any()]
        warnings.warn(
            f"{n_dropped} row(s) with missing values in {missing} removed ({int(complete.sum())} kept)",
            UserWarning,
            stacklevel=2,
        )
        frame = frame.loc[complete]
    if len(frame) == 0:
        raise DesignError("no rows left after removing rows with missing values")

    resp_cols = _required(f.response)
    for name in resp_cols:
        if not pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            raise DesignError(
                f"the response column {name!r} is not numeric (dtype {frame[name].dtype}); "
                "a linear mixed model needs a numeric response"
            )
    fixed_expr = f"{f.response} ~ {f.fixed}"
    simple = _simple_fixed(fixed_expr, frame)
    if simple is not None:
        y, X, raw_names = simple
        fixed_spec = _LazySpec(fixed_expr, frame, rhs=True)
    else:
        mm = _matrix(fixed_expr, frame, "the fixed effects")
        y = np.asarray(mm.lhs, dtype=float)
        X = np.asarray(mm.rhs, dtype=float)
        raw_names = list(mm.rhs.columns)
        fixed_spec = mm.rhs.model_spec
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise DesignError(f"the response {f.response!r} makes {y.shape[1]} columns; it must be one numeric column")
        y = y[:, 0]
    _check_finite(y, [f.response], f"the response {f.response!r}")
    names = [_lme4_name(c) for c in raw_names]
    _check_finite(X, names, "the fixed-effect design")
    aliased: list[str] = []
    if X.shape[1]:
        X, names, aliased = _drop_aliased(X, names)
        if aliased:
            warnings.warn(
                f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} "
                f"column(s): {aliased}",
                UserWarning,
                stacklevel=2,
            )

    n = len(frame)
    # Terms from ``||`` or ``/`` share expressions and grouping factors: each
    # distinct one is built once (the arrays are shared, never written to).
    groupings: dict[tuple[str, ...], tuple] = {}
    matrices: dict[str, tuple] = {}
    built = [_build_term(t, frame, n, groupings, matrices) for t in f.random]
    # lme4 orders terms by decreasing number of levels (a stable sort).
    order = sorted(range(len(built)), key=lambda i: -len(built[i][1]))
    seen: dict[str, int] = {}
    final: list[ReTerm] = []
    for i in order:
        t = f.random[i]
        count = seen.get(t.group, 0)
        seen[t.group] = count + 1
        name = t.group if count == 0 else f"{t.group}.{count}"
        codes, levels, Z, tnames, spec = built[i]
        final.append(ReTerm(name, t.group, t.factors, codes, levels, tnames, Z, t.expr, spec))
    return Design(
        formula=f,
        response=f.response,
        y=y,
        X=X,
        fixed_names=tuple(names),
        terms=tuple(final),
        frame=frame,
        n_dropped=n_dropped,
        aliased=tuple(aliased),
        fixed_spec=fixed_spec,
    )


def _simple_fixed(expr: str, frame: pd.DataFrame):
    """y, X and formulaic's column names for a simple fixed part, else None."""
    try:
        parsed = _parse(expr)
        lhs, rhs = parsed.lhs, parsed.rhs
    except Exception:
        return None  # formulaic reports it, with its own message
    left = _simple_matrix(lhs, frame)
    if left is None or left[1] == ["Intercept"]:
        return None
    right = _simple_matrix(rhs, frame)
    if right is None:
        return None
    return left[0], right[0], right[1]


def _build_term(t: RandomTerm, frame: pd.DataFrame, n: int, groupings=None, matrices=None):
    groupings = {} if groupings is None else groupings
    matrices = {} if matrices is None else matrices
    if t.factors not in groupings:
        groupings[t.factors] = _grouping(frame, t.factors, groupings.setdefault("columns", {}))
    codes, levels = groupings[t.factors]
    if len(levels) < 2:
        raise DesignError(
            f"grouping factor {t.group!r} of {t} has a single level ({levels[0]!r}); "
            "a random effect needs at least two levels"
        )
    if len(levels) >= n:
        raise DesignError(
            f"grouping factor {t.group!r} of {t} has {len(levels)} levels for {n} rows: "
            "each row is its own group, so its variance cannot be told apart from the residual"
        )
    if t.expr not in matrices:
        matrices[t.expr] = _term_matrix(t, frame)
    Z, tnames, spec = matrices[t.expr]
    return codes, levels, Z, tnames, spec


def _term_matrix(t: RandomTerm, frame: pd.DataFrame):
    try:
        simple = _simple_matrix(_parse(t.expr), frame)
    except Exception:
        simple = None  # formulaic reports it below, with its own message
    if simple is not None:
        Z, raw = simple
        spec = _LazySpec(t.expr, frame, rhs=False)
    else:
        mm = _matrix(t.expr, frame, f"random-effect term {t}")
        Z = np.asarray(mm, dtype=float)
        raw = list(mm.columns)
        spec = mm.model_spec
    tnames = tuple(_lme4_name(c) for c in raw)
    _check_finite(Z, tnames, f"random-effect term {t}")
    return Z, tnames, spec


def new_data(design: Design, data: pd.DataFrame) -> NewData:
    """Rebuild the design's matrices on ``data`` (e.g. for prediction).

    Levels of a grouping factor the design has not seen get code -1. Missing
    values are an error here: a prediction is wanted for every row.
    """
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"new data must be a pandas DataFrame, not {type(data).__name__}")
    try:
        X = np.asarray(design.fixed_spec.get_model_matrix(data, na_action="raise"), dtype=float)
    except Exception as exc:
        raise DesignError(f"cannot build the fixed effects for new data: {exc}") from exc
    keep = [c for c in design.fixed_spec.column_names if _lme4_name(c) in design.fixed_names]
    if len(keep) != X.shape[1]:
        cols = list(design.fixed_spec.column_names)
        X = X[:, [cols.index(c) for c in keep]]
    codes, Zs = [], []
    for term in design.terms:
        for name in term.factors:
            if name not in data.columns:
                raise DesignError(f"new data lacks grouping column {name!r} of term {term.label}")
        keys = data[list(term.factors)].astype(str).agg(":".join, axis=1)
        lookup = {lev: i for i, lev in enumerate(term.levels)}
        codes.append(np.array([lookup.get(k, -1) for k in keys], dtype=np.int64))
        try:
            Zs.append(np.asarray(term.spec.get_model_matrix(data, na_action="raise"), dtype=float))
        except Exception as exc:
            raise DesignError(f"cannot build {term.label} for new data: {exc}") from exc
    return NewData(X, tuple(codes), tuple(Zs))
