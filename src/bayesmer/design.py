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
from formulaic.materializers.types import FactorValues
from formulaic.transforms import TRANSFORMS
from formulaic.utils.stateful_transforms import stateful_transform
from scipy.interpolate import BSpline
from scipy.linalg import qr as _qr

from .errors import BayesmerError
from .rmath import ELEMENTWISE, r_log
from .formula import Formula, FormulaError, RandomTerm, _r_number, columns_of, factor_code, parse_formula, to_formulaic

__all__ = ["DesignError", "Column", "ReTerm", "Design", "NewData", "Moments", "build_design", "new_data", "moments"]


class DesignError(BayesmerError, ValueError):
    """Data that cannot make a design for the formula, with the culprit named."""


#: The largest dense matrix (X, or one random-effect term's columns) a design
#: builds: 1 GiB. formulaic holds a matrix about three times while building it
#: (its own frame, the float copy, the rank check's working copy), so 1 GiB of X
#: already needs 3-4 GiB; a fixed factor past it (thousands of levels on many
#: rows) is almost always meant as a grouping factor, which is stored as codes.
MAX_DENSE_BYTES = 1 << 30


@dataclass(frozen=True)
class Column:
    """How the design read one data column, so that new data are read alike.

    Attributes
    ----------
    name : str
    kind : {"numeric", "logical", "factor"}
        A number; a boolean (R's logical, a factor in the fixed part); anything
        else (categorical, strings, objects), a factor.
    dtype : str
        The column's dtype as the design held it (after pandas' extension
        dtypes were read as NumPy's).
    levels : tuple
        A factor's levels as the data held them (the categories of a
        categorical, else the sorted distinct values); a numeric column's
        distinct values when it groups a random effect; else empty.
    ordered : bool
        An ordered categorical.
    """

    name: str
    kind: str
    dtype: str
    levels: tuple = ()
    ordered: bool = False


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
        The term's left-hand side as R term labels (``"1 + Days"``).
    spec : formulaic ModelSpec
        Rebuilds ``Z`` for new data (with :data:`CONTEXT`).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> d = bayesmer.build_design("Reaction ~ Days + (Days || Subject)", sleep)
    >>> [(t.name, t.terms) for t in d.terms]
    [('Subject', ('(Intercept)',)), ('Subject.1', ('Days',))]
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
        return len(self.terms)

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
        Rebuilds ``X`` for new data (with :data:`CONTEXT`).
    offset : ndarray, shape (n,), or None
        The sum of the formula's ``offset(...)`` terms, a part of the linear
        predictor with coefficient 1 (``y - offset`` is what the random and fixed
        effects explain); None when the formula has none.
    sums : RawSums, optional
        Data not in memory (:mod:`bayesmer.sources`): the additive statistics of the
        rows; ``y``, ``X``, ``frame`` and the terms' ``codes`` and ``Z`` are then None.
    source : tuple, optional
        Data not in memory: the source and the plan that rebuild the rows in chunks.
    columns : tuple of Column
        How each used column was read (its kind and a factor's levels), which
        :func:`new_data` reads new data by; empty for data not in memory.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> d = bayesmer.build_design("Reaction ~ Days + (Days | Subject)", sleep)
    >>> d.X.shape, d.fixed_names
    ((180, 2), ('(Intercept)', 'Days'))
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
    offset: np.ndarray | None = field(default=None, repr=False)
    sums: object = field(default=None, repr=False)
    source: object = field(default=None, repr=False)
    columns: tuple = field(default=(), repr=False)

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.y.shape[0] if self.sums is None else self.sums.n

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return self.X.shape[1] if self.sums is None else len(self.fixed_names)

    @property
    def in_memory(self) -> bool:
        """Whether the rows are here (a pandas DataFrame) or only their statistics."""
        return self.sums is None


@dataclass(frozen=True, eq=False)
class Moments:
    """The column summaries that data-scaled priors and start values read, with or without rows.

    Attributes
    ----------
    y_mean, y_sd, y_std : float
        The response's mean, SD (ddof 1; 0 for one row) and SD (ddof 0).
    x_mean, x_sd, x_maxabs, x_first : ndarray (p,)
        Per fixed column; ``x_first`` the first row's value (a constant column's value).
    z_mean, z_sd, z_std, z_maxabs, z_first, zz : tuple over terms
        Per term, per column (k,) as for X (``z_std`` ddof 0), and ``zz`` the mean of z z' (k, k).
    """

    y_mean: float
    y_sd: float
    y_std: float
    x_mean: np.ndarray
    x_sd: np.ndarray
    x_maxabs: np.ndarray
    x_first: np.ndarray
    z_mean: tuple
    z_sd: tuple
    z_std: tuple
    z_maxabs: tuple
    z_first: tuple
    zz: tuple


def _sd1(x: np.ndarray) -> np.ndarray:
    """Per column (each a 1-D array, as the priors always computed it) the SD, ddof 1."""
    if x.ndim == 1:
        return float(np.std(x, ddof=1)) if x.shape[0] > 1 else 0.0
    return np.array([_sd1(np.ascontiguousarray(x[:, j])) for j in range(x.shape[1])])


def moments(design: Design) -> Moments:
    """The design's :class:`Moments`: from its rows, or from its sums when the data are not in memory."""
    if design.sums is None:
        y, X = np.asarray(design.y, dtype=float), np.asarray(design.X, dtype=float)
        n = len(y)
        return Moments(
            float(np.mean(y)), _sd1(y), float(np.std(y)),
            np.array([float(np.mean(X[:, j])) for j in range(X.shape[1])]), _sd1(X),
            np.abs(X).max(axis=0) if n else np.zeros(X.shape[1]), X[0].copy() if n else np.zeros(X.shape[1]),
            tuple(t.Z.mean(axis=0) for t in design.terms), tuple(_sd1(t.Z) for t in design.terms),
            tuple(np.std(t.Z, axis=0) for t in design.terms), tuple(np.abs(t.Z).max(axis=0) for t in design.terms),
            tuple(t.Z[0].copy() for t in design.terms), tuple(t.Z.T @ t.Z / n for t in design.terms),
        )
    c = design.sums.columns()
    n = design.n
    mean, var, maxabs = c["mean"], c["var"], c["maxabs"]
    sd1 = np.sqrt(var * n / (n - 1)) if n > 1 else np.zeros_like(var)
    x, yj, zs = c["x"], c["y"], c["z"]
    return Moments(
        float(mean[yj] + design.sums.y_centre), float(sd1[yj]), float(np.sqrt(var[yj])), mean[x], sd1[x],
        maxabs[x], mean[x], tuple(mean[z] for z in zs), tuple(sd1[z] for z in zs),
        tuple(np.sqrt(var[z]) for z in zs), tuple(maxabs[z] for z in zs), tuple(mean[z] for z in zs),
        tuple(c["WtW"][np.ix_(z, z)] / n for z in zs),
    )


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
    offset : ndarray, shape (m,), or None
        The formula's offset on the new rows, to add to a prediction.
    keys : tuple of ndarray
        Per term, each row's level name (a new level's as :func:`level_key`
        spells it), which tells new levels apart.
    """

    X: np.ndarray
    codes: tuple[np.ndarray, ...]
    Z: tuple[np.ndarray, ...]
    offset: np.ndarray | None = None
    keys: tuple[np.ndarray, ...] = ()


_LEVEL = re.compile(r"\[(?:T\.)?([^\]]*)\]")


def _lme4_name(name: str) -> str:
    """formulaic's column name as lme4 prints it: ``a[T.b]`` -> ``ab``."""
    if name == "Intercept":
        return "(Intercept)"
    return _LEVEL.sub(r"\1", name)


# --- R's functions, evaluated as R evaluates them ------------------------------
#
# formula.py turns each R call into a call of one of these (``poly(x, 2)`` ->
# ``r_poly(x, degree=2)``); formulaic evaluates them with its stateful-transform
# machinery, so that new data reuse the training state (levels, knots, the
# polynomial's coefficients, the centre and scale), as R's predict() does through
# makepredictcall. formulaic's own transforms are used where they give R's
# numbers (poly, bs, C); the others are written here, each saying why.


def _r_label(v) -> str:
    """A value as R's ``as.character`` prints it (a factor level's name)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else _r_number(float(v))
    return str(v)


def _as_series(x) -> pd.Series:
    return x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))


def _r_levels(x: pd.Series) -> list[str]:
    """R's ``factor(x)`` levels: a factor's own (used) levels, else the sorted
    distinct values (numbers sorted as numbers, FALSE before TRUE)."""
    if isinstance(x.dtype, pd.CategoricalDtype):
        return [_r_label(c) for c in x.cat.remove_unused_categories().cat.categories]
    values = pd.unique(x.dropna())
    try:
        values = sorted(values)
    except TypeError as exc:
        raise DesignError(f"the values of a factor() column cannot be sorted into levels: {exc}") from exc
    return list(dict.fromkeys(_r_label(v) for v in values))


def _labels(x: pd.Series) -> pd.Series:
    out = x.astype(object).map(lambda v: v if pd.isna(v) else _r_label(v))
    return out


def _known_labels(x: pd.Series, levels: list[str], call: str) -> pd.Series:
    """New data's labels of a ``factor()`` column, refusing a value that is not a training level
    (formulaic would turn it into a row of zeros, the baseline level, with only a warning)."""
    labels = _labels(x)
    known = set(levels)
    bad = [v for v, lab in zip(x.astype(object), labels) if not pd.isna(lab) and lab not in known]
    if bad:
        col = f"column {x.name!r}" if isinstance(x.name, str) else "a column"
        raise DesignError(
            f"new data: {col} has value {_value(bad[0])!r}, which is not a level of {call}() in the fitted data; "
            f"its levels are {_shown(levels)}"
        )
    return labels


def _shown(levels, limit: int = 10) -> str:
    levels = list(levels)
    more = f" ... ({len(levels)} in all)" if len(levels) > limit else ""
    return ", ".join(repr(_value(v)) for v in levels[:limit]) + more


@stateful_transform
def r_factor(x, _state=None):
    """R's ``factor(x)`` (also ``as.factor``, ``C(x)``): treatment contrasts on
    R's levels, named as R names them (``factor(z)2``, ``factor(b)TRUE``).

    Written here because formulaic's ``C`` names levels by Python's ``str``
    (``1.0``, ``True``) where R writes ``1`` and ``TRUE``.
    """
    x = _as_series(x)
    if "levels" not in _state:
        _state["levels"] = _r_levels(x)
        return TRANSFORMS["C"](_labels(x), levels=_state["levels"])
    return TRANSFORMS["C"](_known_labels(x, _state["levels"], "factor"), levels=_state["levels"])


r_as_factor = r_factor
r_C = r_factor


@stateful_transform
def r_relevel(x, ref, _state=None):
    """R's ``relevel(f, ref = "b")``: ``factor(f)`` with ``ref`` as first level."""
    x = _as_series(x)
    if "levels" not in _state:
        levels = _r_levels(x)
        ref = _r_label(ref)
        if ref not in levels:
            raise DesignError(f"relevel(): ref = {ref!r} is not a level of the column; its levels are {levels}")
        _state["levels"] = [ref] + [lv for lv in levels if lv != ref]
        return TRANSFORMS["C"](_labels(x), levels=_state["levels"])
    return TRANSFORMS["C"](_known_labels(x, _state["levels"], "relevel"), levels=_state["levels"])


@stateful_transform
def r_dummy(x, levels=None, _state=None):
    """lme4's ``dummy(f, levelsToKeep)``: 0/1 indicator columns of the kept levels
    (all levels when none are given), named as R names them: one level's
    column by the call alone, several by the call and the level."""
    x = _as_series(x)
    if "levels" not in _state:
        known = _r_levels(x)
        keep = known if levels is None else [_r_label(v) for v in ([levels] if isinstance(levels, str) else levels)]
        unknown = [lv for lv in keep if lv not in known]
        if unknown:
            raise DesignError(f"dummy(): {unknown} not among the levels {known}")
        _state["levels"] = keep
    labels = _labels(x)
    cols = np.column_stack([(labels == lv).to_numpy(dtype=float) for lv in _state["levels"]])
    if levels is not None and isinstance(levels, str):
        return cols[:, 0]
    return FactorValues(cols, column_names=tuple(_state["levels"]))


@stateful_transform
def r_poly(x, degree=1, raw=False, _state=None):
    """R's ``poly(x, degree, raw)``, formulaic's numbers (R's orthogonal basis
    and signs, checked against R) with R's column names 1..degree."""
    values = np.asarray(x, dtype=float)
    if "alpha" not in _state and not raw and len(np.unique(values[~np.isnan(values)])) <= degree:
        raise DesignError(f"poly(): degree {degree} must be less than the number of unique values "
                          f"({len(np.unique(values[~np.isnan(values)]))}), as R requires")
    out = TRANSFORMS["poly"](values, degree=degree, raw=raw, _state=_state)
    return FactorValues(np.asarray(out, dtype=float), column_names=tuple(str(i) for i in range(1, degree + 1)))


@stateful_transform
def r_scale(x, center=True, scale=True, _state=None):
    """R's ``scale(x, center, scale)``.

    Written here because R's ``scale = TRUE`` without centring divides by the
    root mean square ``sqrt(sum(x^2) / (n - 1))``, not by the standard deviation.
    New data reuse the training centre and scale (R's predict() would re-scale
    the new data by their own, which is rarely what anyone means).
    """
    values = np.asarray(x, dtype=float)
    if "center" not in _state:
        ok = values[~np.isnan(values)]
        c = float(np.mean(ok)) if center is True else (0.0 if center is False else float(center))
        if scale is True:
            s = float(np.sqrt(np.sum((ok - c) ** 2) / (len(ok) - 1)))
        else:
            s = 1.0 if scale is False else float(scale)
        _state["center"], _state["scale"] = c, s
    return (values - _state["center"]) / _state["scale"]


def _spline_design(knots: np.ndarray, x: np.ndarray, order: int, deriv: int = 0) -> np.ndarray:
    """R's ``splines::splineDesign(knots, x, ord, derivs)``: every B-spline basis
    function (or its derivative) of order ``order`` at ``x``."""
    n = len(knots) - order
    out = np.empty((len(x), n))
    for j in range(n):
        c = np.zeros(n)
        c[j] = 1.0
        out[:, j] = BSpline(knots, c, order - 1, extrapolate=True)(x, nu=deriv)
    return out


@stateful_transform
def r_ns(x, df=None, knots=None, intercept=False, boundary_knots=None, _state=None):
    """R's ``splines::ns``: the natural cubic spline basis, ported from R 4.

    Written here because formulaic has no natural spline (its ``cr`` is mgcv's
    cubic regression spline, another basis). Interior knots at quantiles of x,
    boundary knots at its range; linear beyond the boundary knots, as R.
    """
    values = np.asarray(x, dtype=float)
    ok = ~np.isnan(values)
    if "knots" not in _state:
        xs = values[ok]
        bk = np.sort(np.asarray(boundary_knots, dtype=float)) if boundary_knots is not None else \
            np.array([xs.min(), xs.max()])
        if knots is None and df is not None:
            n_inner = max(int(df) - 1 - int(bool(intercept)), 0)
            inside = xs[(xs >= bk[0]) & (xs <= bk[1])]
            probs = np.linspace(0, 1, n_inner + 2)[1:-1]
            inner = np.quantile(inside, probs) if n_inner else np.array([])
        else:
            inner = np.asarray([] if knots is None else knots, dtype=float).ravel()
        _state["knots"], _state["boundary"] = inner.tolist(), bk.tolist()
    inner, bk = np.asarray(_state["knots"], dtype=float), np.asarray(_state["boundary"], dtype=float)
    aknots = np.sort(np.concatenate([np.repeat(bk, 4), inner]))
    xs = values[ok]
    basis = np.empty((len(xs), len(inner) + 4))
    low, high = xs < bk[0], xs > bk[1]
    mid = ~(low | high)
    basis[mid] = _spline_design(aknots, xs[mid], 4)
    for side, pivot in ((low, bk[0]), (high, bk[1])):
        if side.any():
            tt = np.vstack([_spline_design(aknots, np.array([pivot]), 4, d) for d in (0, 1)])
            basis[side] = np.column_stack([np.ones(side.sum()), xs[side] - pivot]) @ tt
    const = np.vstack([_spline_design(aknots, np.array([b]), 4, 2) for b in bk])
    if not intercept:
        const, basis = const[:, 1:], basis[:, 1:]
    # R: qr.qty(qr(t(const)), t(basis)) without the first two rows; LAPACK's
    # Householder QR has LINPACK's signs, so the basis matches R's exactly.
    q, _ = _qr(const.T)
    basis = (q.T @ basis.T).T[:, 2:]
    out = np.full((len(values), basis.shape[1]), np.nan)
    out[ok] = basis
    return FactorValues(out, column_names=tuple(str(i) for i in range(1, basis.shape[1] + 1)))


@stateful_transform
def r_bs(x, df=None, knots=None, degree=3, intercept=False, boundary_knots=None, _state=None):
    """R's ``splines::bs`` by formulaic's ``bs`` (R's numbers, checked against R),
    extended beyond the boundary knots by the boundary pieces, as R does."""
    kwargs = dict(df=df, knots=knots, degree=degree, include_intercept=bool(intercept), extrapolation="extend")
    if boundary_knots is not None:
        kwargs["lower_bound"], kwargs["upper_bound"] = sorted(boundary_knots)
    out = TRANSFORMS["bs"](np.asarray(x, dtype=float), _state=_state, **kwargs)
    arr = np.column_stack([np.asarray(out[k], dtype=float) for k in sorted(out)])
    return FactorValues(arr, column_names=tuple(str(i) for i in range(1, arr.shape[1] + 1)))


def r_chr(hex_text: str) -> str:
    """A string literal of a formula, which :func:`bayesmer.formula.to_python` writes as the hex of its UTF-8."""
    return bytes.fromhex(hex_text).decode()


CONTEXT: dict[str, object] = {
    "r_chr": r_chr,
    "r_factor": r_factor, "r_as_factor": r_as_factor, "r_C": r_C, "r_relevel": r_relevel, "r_dummy": r_dummy,
    "r_poly": r_poly, "r_scale": r_scale, "r_ns": r_ns, "splines_r_ns": r_ns, "r_bs": r_bs,
    "splines_r_bs": r_bs, "r_log": r_log, "center": TRANSFORMS["center"], "I": TRANSFORMS["I"],
} | {f"r_{name}": f for name, f in ELEMENTWISE.items()}
"""The functions the Python code of :func:`bayesmer.formula.to_formulaic` calls."""


@functools.lru_cache(maxsize=1024)
def _formulaic_factor(code: str) -> str:
    """formulaic's name of the factor whose Python code is ``code``."""
    terms = [t for t in formulaic.Formula(code) if str(t) != "1"]
    (term,) = terms
    (factor,) = term.factors
    return factor.expr


def _logical(frame: pd.DataFrame) -> frozenset[str]:
    """The frame's logical columns, which R's model.matrix codes as factors."""
    if frame.columns.is_unique:  # one look at the dtypes, not a Series per column
        return frozenset(c for c, dt in frame.dtypes.items() if pd.api.types.is_bool_dtype(dt))
    return frozenset(c for c in frame.columns if pd.api.types.is_bool_dtype(frame[c]))


@functools.lru_cache(maxsize=512)
def _r_names_for(terms: str, logical: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
    """(formulaic factor name, R label) of each factor of a term string, longest
    name first (the order :func:`_r_column` tries them in)."""
    _, codes = to_formulaic(terms, logical)
    pairs = {_formulaic_factor(code): label for code, label in codes}
    return tuple(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


_R_LEVEL = {"True": "TRUE", "False": "FALSE"}


def _r_column(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """formulaic's column name as R's model.matrix names it.

    ``Intercept`` -> ``(Intercept)``; each factor's formulaic name becomes its R
    label, a level ``[T.b]`` or ``[b]`` is appended as R does (``fb``), as is a
    basis column ``[1]`` (``poly(x, 2)1``); factors join with ``:``.
    """
    if name == "Intercept":
        return "(Intercept)"
    out, i = [], 0
    while i < len(name):
        for fname, label in labels:
            if not name.startswith(fname, i):
                continue
            j = i + len(fname)
            if j == len(name) or name[j] == ":":
                out.append(label)
                i = j + 1
                break
            if name[j] == "[":
                k = name.find("]", j)
                while k != -1 and not (k + 1 == len(name) or name[k + 1] == ":"):
                    k = name.find("]", k + 1)
                if k == -1:
                    continue
                level = name[j + 1 : k]
                level = level[2:] if level.startswith("T.") else level
                out.append(label + _R_LEVEL.get(level, level))
                i = k + 2
                break
        else:
            return _lme4_name(name)  # not one of ours: formulaic's name, lme4-style
    return ":".join(out)


@functools.lru_cache(maxsize=512)
def _parse(expr: str):
    """formulaic's parse of ``expr``, cached: parsing costs as much as building."""
    return formulaic.Formula(expr)


def _required(expr: str) -> set[str]:
    """The data columns an R expression or term string (from a Formula) reads."""
    try:
        return set(columns_of(expr))
    except FormulaError:
        raise
    except Exception as exc:  # pragma: no cover - the Formula was parsed already
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
    spanned = False  # whether a column so far spans the intercept (formulaic's rank rule)
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
            spanned = True
            continue
        if (len(factors) == 1 and getattr(first.eval_method, "value", first.eval_method) == "lookup"
                and first.expr in frame.columns and isinstance(frame[first.expr], pd.Series)
                and not (isinstance(frame[first.expr].dtype, np.dtype) and frame[first.expr].dtype.kind in "iufb")):
            enc = _simple_factor(frame[first.expr])
            if enc is None or str(term) != first.expr:
                return None
            codes, levels = enc
            # treatment contrasts, as formulaic: every level when nothing spans the intercept yet
            shown = levels if not spanned else levels[1:]
            fmt = "{}[{}]" if not spanned else "{}[T.{}]"
            for lv in shown:
                cols.append((codes == levels.index(lv)).astype(float))
                names.append(fmt.format(first.expr, lv))
            spanned = True
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


def _simple_factor(col: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """Codes and levels of a text or categorical column as formulaic encodes it (the sorted
    distinct strings, or the categories in order), or None where it might not (other values,
    unused categories)."""
    dt = col.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cats = list(dt.categories)
        if not all(isinstance(c, str) for c in cats):
            return None
        codes = col.cat.codes.to_numpy()
        if (codes < 0).any() or np.bincount(codes, minlength=len(cats)).min(initial=1) == 0:
            return None
        return codes, cats
    if dt != object:
        return None
    codes, uniques = pd.factorize(col, sort=True)
    levels = list(uniques)
    if (codes < 0).any() or not all(isinstance(v, str) for v in levels):
        return None
    return codes, levels


def _used_columns(formula: Formula, data: pd.DataFrame) -> list[str]:
    used: list[str] = []
    needed = [(formula.response, "the response")]
    needed += [(formula.fixed, "the fixed effects")]
    needed += [(o, f"offset({o})") for o in formula.offset]
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
        return formulaic.model_matrix(expr, frame, na_action="ignore", context=CONTEXT)
    except DesignError:
        raise
    except Exception as exc:
        raise DesignError(f"cannot build {where} from {expr!r}: {exc}") from exc


def _offset(formula: Formula, frame: pd.DataFrame):
    """The summed offset on ``frame`` and the specs that rebuild each term."""
    if not formula.offset:
        return None, ()
    total = np.zeros(len(frame))
    specs = []
    for o in formula.offset:
        mm = _matrix(f"0 + I({factor_code(o)})", frame, f"offset({o})")
        if mm.shape[1] != 1:
            raise DesignError(f"offset({o}) makes {mm.shape[1]} columns; an offset must be one numeric column")
        value = np.asarray(mm, dtype=float)[:, 0]
        _check_finite(value, [f"offset({o})"], f"offset({o})")
        total += value
        specs.append(mm.model_spec)
    return total, tuple(specs)


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


# --- pandas' extension dtypes, and how each column is read --------------------


def _plain(col: pd.Series) -> pd.Series:
    """``col`` with a NumPy dtype and the same values: pandas' extension dtypes
    (``Int64``, ``Float64``, ``boolean``, ``string``/``str``, pyarrow-backed ones,
    a categorical of strings) read as NumPy's, missing values (``pd.NA``) as NaN.

    Everything downstream (formulaic, the simple matrices, the grouping codes)
    then sees what the NumPy-dtype data would give. An integer or boolean
    column keeps its type only without missing values (NumPy has no missing
    integer): callers drop the incomplete rows first.
    """
    dt = col.dtype
    if isinstance(dt, np.dtype):
        return col
    if isinstance(dt, pd.CategoricalDtype):
        if isinstance(dt.categories.dtype, np.dtype):
            return col
        cats = pd.Index(_plain(pd.Series(dt.categories)).to_numpy(), dtype=object)
        cat = pd.Categorical.from_codes(col.cat.codes.to_numpy(), categories=cats, ordered=dt.ordered)
        return pd.Series(cat, index=col.index, name=col.name)
    has_na = bool(col.isna().any())
    kind = getattr(dt, "kind", "O")
    if pd.api.types.is_bool_dtype(dt):
        values = col.to_numpy(dtype=float, na_value=np.nan) if has_na else col.to_numpy(dtype=bool)
    elif pd.api.types.is_integer_dtype(dt) and not has_na:
        values = col.to_numpy(dtype=np.uint64 if kind == "u" else np.int64)
    elif pd.api.types.is_numeric_dtype(dt):
        values = col.to_numpy(dtype=float, na_value=np.nan)
    elif pd.api.types.is_string_dtype(dt):
        values = col.to_numpy(dtype=object, na_value=np.nan)
    else:
        return col  # dates and the like: as pandas gives them
    # dtype given: pandas 3 would read an object array of strings as its str dtype again
    return pd.Series(values, index=col.index, name=col.name, dtype=values.dtype)


def plain_frame(data: pd.DataFrame, columns=None) -> pd.DataFrame:
    """``data`` (its ``columns``, all by default) with every extension dtype read as NumPy's (see :func:`_plain`)."""
    columns = list(data.columns) if columns is None else list(columns)
    return _plain_owned(data[columns])


def _plain_owned(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`plain_frame` of a frame the caller made itself (given back as it is when every dtype is NumPy's)."""
    columns = list(frame.columns)
    if frame.columns.is_unique:
        if all(isinstance(dt, np.dtype) for dt in frame.dtypes):
            return frame
    elif all(isinstance(frame[c].dtype, np.dtype) for c in frame.columns if isinstance(frame[c], pd.Series)):
        return frame
    return pd.DataFrame({c: _plain(frame[c]) for c in columns}, index=frame.index)


def _plain_select(data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """``plain_frame(data, used)`` of complete rows and unique column names, built from the
    columns (their values copied; text kept as NumPy's object dtype)."""
    out = {}
    for c in used:
        col = data[c]
        dt = col.dtype
        if not (isinstance(dt, np.dtype) or (isinstance(dt, pd.CategoricalDtype)
                                             and isinstance(dt.categories.dtype, np.dtype))):
            col = _plain(col)
            dt = col.dtype
        if dt == object:
            out[c] = pd.Series(col.to_numpy(dtype=object, copy=True), index=data.index, name=c, dtype=object)
        elif isinstance(dt, pd.CategoricalDtype):
            out[c] = col.array.copy()
        else:
            out[c] = col.to_numpy(copy=True)
    return pd.DataFrame(out, index=data.index, copy=False)


def _column(col: pd.Series, grouping: bool) -> Column:
    """How the design reads ``col`` (already plain): see :class:`Column`."""
    dt = col.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return Column(str(col.name), "factor", str(dt), tuple(dt.categories), bool(dt.ordered))
    if pd.api.types.is_bool_dtype(dt):
        return Column(str(col.name), "logical", str(dt), (False, True))
    if pd.api.types.is_numeric_dtype(dt):
        levels = tuple(pd.unique(col.dropna())) if grouping else ()
        return Column(str(col.name), "numeric", str(dt), tuple(sorted(levels)))
    values = list(pd.unique(col.dropna()))
    try:
        values = sorted(values)
    except TypeError:
        pass  # mixed types: in order seen, as the grouping codes take them
    return Column(str(col.name), "factor", str(dt), tuple(values))


_AS_FACTOR = re.compile(r"(?:factor|as\.factor|C|relevel|dummy)\(\s*$")


def _factor_only(name: str, exprs) -> bool:
    """Whether the R expressions read column ``name`` only as ``factor(name)`` (or
    ``as.factor``, ``C``, ``relevel``, ``dummy``): a number there is a level."""
    seen = False
    for expr in exprs:
        for m in re.finditer(r"(?<![\w.])" + re.escape(name) + r"(?![\w.])", expr):
            if not _AS_FACTOR.search(expr[: m.start()]):
                return False
            seen = True
    return seen


def level_key(v) -> str | None:
    """The key a value is matched to a factor's level by: its name as R's
    ``as.character`` writes it, so ``4``, ``4.0``, ``"4"`` and a categorical
    ``4`` are one level, ``True`` is ``"TRUE"``; None for a missing value."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return _r_label(v)


def _match(info: Column, col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each value of new data's ``col`` as an index into ``info.levels`` (-1: not a level) and its key."""
    codes, uniques = pd.factorize(col.astype(object), use_na_sentinel=True)
    lookup: dict[str, int] = {}
    for i, v in enumerate(info.levels):
        lookup.setdefault(level_key(v), i)
    ukeys = [level_key(v) for v in uniques]
    uidx = np.array([lookup.get(k, -1) if k is not None else -1 for k in ukeys] + [-1], dtype=np.int64)
    keys = np.array(ukeys + [None], dtype=object)
    return uidx[codes], keys[codes]


def _bad(col: pd.Series, mask: np.ndarray) -> str:
    """The first offending value of ``col`` where ``mask``, with its row."""
    i = int(np.flatnonzero(mask)[0])
    return f"{_value(col.iloc[i])!r} (row {_value(col.index[i])!r})"


def _value(v):
    """A NumPy scalar as Python's, for messages (``5``, not ``np.int64(5)``)."""
    return v.item() if isinstance(v, np.generic) else v


def _read_new(info: Column | None, col: pd.Series, where: str, as_factor: bool = False) -> pd.Series:
    """New data's column read as the design read its training column.

    A factor's value is matched to a training level by value whatever its
    dtype (see :func:`level_key`) and given back as that level, in the
    training dtype; a numeric column must hold numbers.

    Raises
    ------
    DesignError
        A missing value, a value that is not a level of a factor, a string in a
        numeric column; naming the column and the value.
    """
    name = col.name
    col = _plain(col)
    missing = col.isna().to_numpy()
    if missing.any():
        raise DesignError(
            f"new data: column {name!r} ({where}) has {int(missing.sum())} missing value(s), e.g. at row "
            f"{col.index[int(np.flatnonzero(missing)[0])]!r}; a prediction needs every value"
        )
    if info is None:
        return col
    if info.kind == "numeric" and as_factor and info.levels:
        # a numeric column the formula reads only as factor(x): its values are levels, matched by value
        idx, _ = _match(info, col)
        if (idx < 0).any():
            raise DesignError(
                f"new data: column {name!r} ({where}) has value {_bad(col, idx < 0)}, which is not a level of "
                f"factor({name}) in the fitted data; its levels are {_shown(info.levels)}"
            )
        return pd.Series(np.asarray(info.levels)[idx], index=col.index, name=name)
    if info.kind == "numeric":
        dt = col.dtype
        if isinstance(dt, pd.CategoricalDtype):
            col = col.astype(object)
            dt = col.dtype
        if pd.api.types.is_numeric_dtype(dt):
            return pd.Series(col.to_numpy(dtype=float), index=col.index, name=name)
        values = col.to_numpy(dtype=object)
        isnum = np.array([isinstance(v, (int, float, np.integer, np.floating)) for v in values], dtype=bool)
        if not isnum.all():
            raise DesignError(
                f"new data: column {name!r} ({where}) was numeric in the fitted data but has value "
                f"{_bad(col, ~isnum)} (dtype {col.dtype}); give numbers"
            )
        return pd.Series(values.astype(float), index=col.index, name=name)
    idx, _ = _match(info, col)
    if (idx < 0).any():
        raise DesignError(
            f"new data: column {name!r} ({where}) has value {_bad(col, idx < 0)}, which is not a level in the "
            f"fitted data; its levels are {_shown(info.levels)}"
        )
    if info.kind == "logical":
        return pd.Series(np.asarray(info.levels, dtype=bool)[idx], index=col.index, name=name)
    if info.dtype == "category":
        cat = pd.Categorical.from_codes(idx, categories=pd.Index(list(info.levels)), ordered=info.ordered)
        return pd.Series(cat, index=col.index, name=name)
    levels = np.empty(len(info.levels), dtype=object)
    levels[:] = list(info.levels)
    return pd.Series(levels[idx], index=col.index, name=name)


# --- the size of the dense matrices, before they are built --------------------

_FACTOR_CALLS = re.compile(r"^(?:r_factor|r_as_factor|r_C|r_relevel|r_dummy|C)\((\w+)")


def _factor_width(expr: str, frame: pd.DataFrame) -> tuple[int, str | None]:
    """Columns one formulaic factor makes at most, and the data column behind it when a factor's."""
    col = expr if expr in frame.columns else None
    if col is None:
        m = _FACTOR_CALLS.match(expr)
        if m is None or m.group(1) not in frame.columns:
            return 1, None
        col = m.group(1)
    elif pd.api.types.is_numeric_dtype(frame[col].dtype) and not pd.api.types.is_bool_dtype(frame[col].dtype):
        return 1, None
    values = frame[col]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return len(values.dtype.categories), col
    return int(values.nunique()), col


def _check_size(code: str, frame: pd.DataFrame, where: str) -> None:
    """Refuse a dense matrix over :data:`MAX_DENSE_BYTES` before building it.

    Counts each term's columns from its factors' levels (no one-hot encoding),
    so that 50,000 levels on 200,000 rows are refused in milliseconds.
    """
    try:
        terms = _parse(code)
        terms = terms.rhs if hasattr(terms, "rhs") else terms
    except Exception:
        return  # formulaic reports a bad expression when it builds it
    n = len(frame)
    total, worst = 0, (0, None, 0)
    for term in terms:
        width, culprit, levels = 1, None, 0
        for fa in term.factors:
            w, col = _factor_width(fa.expr, frame)
            width *= w
            if col is not None and w > levels:
                culprit, levels = col, w
        total += width
        if culprit is not None and width > worst[0]:
            worst = (width, culprit, levels)
    need = n * total * 8
    if need <= MAX_DENSE_BYTES or worst[1] is None:
        return
    col, levels = worst[1], worst[2]
    raise DesignError(
        f"{where}: column {col!r} is a factor with {levels} levels, which with {n} rows would make a dense "
        f"{n} x {total} matrix ({need / 2**30:.1f} GiB at 8 bytes a value), over bayesmer's limit of "
        f"{MAX_DENSE_BYTES / 2**30:g} GiB; model it as a grouping factor, (1 | {col}), or merge its levels"
    )


def build_design(formula: str | Formula, data: pd.DataFrame) -> Design:
    """Build the design of ``formula`` on ``data``.

    Parameters
    ----------
    formula : str or Formula
        An lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame, or data not in memory
        One row per observation. Grouping columns are read as categorical
        whatever their dtype. pandas' extension dtypes (``Int64``,
        ``Float64``, ``boolean``, ``string``/``str``, ``category``,
        pyarrow-backed ones) are read as the NumPy dtype with the same values
        would be, ``pd.NA`` as a missing value. Data not in memory (a path or
        glob of Parquet files, a Dask, Polars or Spark DataFrame, a Polars
        LazyFrame or a DuckDB relation) go through :func:`bayesmer.build_design`
        (:func:`bayesmer.sources.build_design`), which builds on this one.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DesignError
        Naming the column, term or level at fault; a fixed factor (or a
        random-effect term's columns) whose dense matrix would pass
        :data:`MAX_DENSE_BYTES` is refused before it is built, naming the
        column, its level count and the size.

    Warns
    -----
    UserWarning
        When rows are dropped for missing values (with their count) or aliased
        fixed-effect columns are dropped (with their names).

    Examples
    --------
    >>> import bayesmer
    >>> pastes = bayesmer.datasets.load("pastes")
    >>> d = bayesmer.build_design("strength ~ 1 + (1 | batch/cask)", pastes)
    >>> [t.group for t in d.terms]
    ['batch:cask', 'batch']
    """
    f = parse_formula(formula)
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__} (data not in memory: "
                          f"bayesmer.build_design, bayesmer.fit and bayesmer.reml read them)")
    if len(data) == 0:
        raise DesignError("the data frame is empty: it has no rows to fit")
    used = _used_columns(f, data)
    if data.columns.is_unique:
        # column by column: a take of the used columns costs more than a small fit
        complete = np.ones(len(data), dtype=bool)
        for c in used:
            complete &= data[c].notna().to_numpy()
        frame = None
    else:
        frame = data[used]
        complete = frame.notna().all(axis=1).to_numpy()
    n_dropped = int((~complete).sum())
    if n_dropped or frame is not None:
        frame = data[used] if frame is None else frame
    if n_dropped:
        missing = [c for c in used if frame[c].isna().any()]
        warnings.warn(
            f"{n_dropped} row(s) with missing values in {missing} removed ({int(complete.sum())} kept)",
            UserWarning,
            stacklevel=2,
        )
        frame = frame.loc[complete]
    if frame is None:
        frame = _plain_select(data, used)  # every row complete
    else:
        if len(frame) == 0:
            raise DesignError("no rows left after removing rows with missing values")
        frame = _plain_owned(frame)  # complete rows: an Int64 column stays integer

    resp_cols = _required(f.response)
    for name in resp_cols:
        if not pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            raise DesignError(
                f"the response column {name!r} is not numeric (dtype {frame[name].dtype}); "
                "a linear mixed model needs a numeric response"
            )
    logical = _logical(frame)
    fixed_code, _ = to_formulaic(f.fixed, logical)
    fixed_expr = f"{factor_code(f.response)} ~ {fixed_code}"
    _check_size(fixed_expr, frame, "the fixed effects")
    for t in f.random:
        _check_size(to_formulaic(t.expr, logical)[0], frame, f"random-effect term {t}")
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
    _check_varies(y, f.response, sorted(resp_cols), n_dropped)
    offset, _ = _offset(f, frame)
    labels = _r_names_for(f.fixed, logical)
    names = [_r_column(c, labels) for c in raw_names]
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
    exprs = [f.fixed, *f.offset, *(t.expr for t in f.random)]
    grouping = {c for t in f.random for c in t.factors} | {c for c in used if _factor_only(c, exprs)}
    columns = tuple(_column(frame[c], c in grouping) for c in used if isinstance(frame[c], pd.Series))
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
        offset=offset,
        columns=columns,
    )


def _check_varies(y: np.ndarray, response: str, columns: list[str], n_dropped: int) -> None:
    """A constant response has no residual variance to estimate: say so here,
    naming it, rather than fail in the optimiser's linear algebra."""
    if len(y) and np.ptp(y) == 0:
        after = f" after removing {n_dropped} row(s) with missing values" if n_dropped else ""
        cols = f" (column {', '.join(map(repr, columns))})" if columns else ""
        raise DesignError(
            f"the response {response!r}{cols} is constant ({y[0]:g} in all {len(y)} rows{after}); "
            "a mixed model needs a response that varies"
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
    logical = _logical(frame)
    code, _ = to_formulaic(t.expr, logical)
    try:
        simple = _simple_matrix(_parse(code), frame)
    except Exception:
        simple = None  # formulaic reports it below, with its own message
    if simple is not None:
        Z, raw = simple
        spec = _LazySpec(code, frame, rhs=False)
    else:
        mm = _matrix(code, frame, f"random-effect term {t}")
        Z = np.asarray(mm, dtype=float)
        raw = list(mm.columns)
        spec = mm.model_spec
    labels = _r_names_for(t.expr, logical)
    tnames = tuple(_r_column(c, labels) for c in raw)
    _check_finite(Z, tnames, f"random-effect term {t}")
    return Z, tnames, spec


def _from_formulaic(exc: Exception, what: str) -> DesignError:
    """formulaic's error building ``what`` as a DesignError: ours when it wraps one, else its message."""
    inner = exc
    while inner is not None and not isinstance(inner, DesignError):
        inner = inner.__cause__ or inner.__context__
    if inner is not None:
        return inner
    return DesignError(f"cannot build {what} for new data: {exc}")


def new_data(design: Design, data: pd.DataFrame) -> NewData:
    """Rebuild the design's matrices on ``data`` (e.g. for prediction).

    New data are read as the training data were (:attr:`Design.columns`): a
    factor's value is matched to a level by value whatever its dtype (``4``,
    ``4.0``, ``"4"`` and a categorical ``4`` all mean level ``"4"``: see
    :func:`level_key`), so a fit and its reloaded copy read the same data
    alike. Levels of a grouping factor the design has not seen get code -1.

    Raises
    ------
    DesignError
        A missing column; a missing value outside the grouping columns; a
        value that is not a level of a fixed-effect factor, or a string in a
        numeric column; naming the column and the value.
    """
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"new data must be a pandas DataFrame, not {type(data).__name__}")
    # Every name the formula's code reads must be a column here: formulaic would
    # look a missing one up in its context and in Python's builtins.
    f = design.formula
    infos = {c.name: c for c in design.columns}
    needed: dict[str, str] = {}
    for expr, where in [(f.fixed, "the fixed effects")] + [(o, f"offset({o})") for o in f.offset] + [
        (t.expr, f"random-effect term {t.label}") for t in design.terms
    ]:
        for name in sorted(_required(expr)):
            needed.setdefault(name, where)
    for name, where in needed.items():
        if name not in data.columns:
            raise DesignError(f"new data lacks column {name!r}, which {where} read(s)")
    exprs = [f.fixed, *f.offset, *(t.expr for t in design.terms)]
    frame = pd.DataFrame({c: _read_new(infos.get(c), data[c], w, _factor_only(c, exprs)) for c, w in needed.items()},
                         index=data.index)
    try:
        X = np.asarray(design.fixed_spec.get_model_matrix(frame, na_action="raise", context=CONTEXT), dtype=float)
    except Exception as exc:
        raise _from_formulaic(exc, "the fixed effects") from None
    logical = _logical(design.frame) if design.frame is not None else design.source[1].logical
    labels = _r_names_for(design.formula.fixed, logical)
    keep = [c for c in design.fixed_spec.column_names if _r_column(c, labels) in design.fixed_names]
    if len(keep) != X.shape[1]:
        cols = list(design.fixed_spec.column_names)
        X = X[:, [cols.index(c) for c in keep]]
    offset = None
    if design.formula.offset:
        # each offset term rebuilt from the training rows' spec, so a stateful
        # transform inside it keeps its training state
        _, specs = _offset(design.formula, design.frame)
        offset = np.zeros(len(data))
        for o, spec in zip(design.formula.offset, specs):
            try:
                offset += np.asarray(spec.get_model_matrix(frame, na_action="raise", context=CONTEXT),
                                     dtype=float)[:, 0]
            except Exception as exc:
                raise _from_formulaic(exc, f"offset({o})") from None
    codes, Zs, keys = [], [], []
    for term in design.terms:
        for name in term.factors:
            if name not in data.columns:
                raise DesignError(f"new data lacks grouping column {name!r} of term {term.label}")
        key = _group_keys(term, infos, data)
        lookup = {lev: i for i, lev in enumerate(term.levels)}
        codes.append(np.fromiter((lookup.get(k, -1) for k in key), dtype=np.int64, count=len(key)))
        keys.append(key)
        try:
            Zs.append(np.asarray(term.spec.get_model_matrix(frame, na_action="raise", context=CONTEXT),
                                 dtype=float))
        except Exception as exc:
            raise _from_formulaic(exc, term.label) from None
    return NewData(X, tuple(codes), tuple(Zs), offset, tuple(keys))


def _group_keys(term: ReTerm, infos: dict, data: pd.DataFrame) -> np.ndarray:
    """Each new row's level name of ``term``'s grouping factor: the training level's name
    (as :func:`_factor_codes` spells it) where the value matches one by value, else the value's key."""
    parts = []
    for name in term.factors:
        col = _plain(data[name])
        info = infos.get(name)
        if info is None or not info.levels:
            parts.append(col.astype(object).map(lambda v: None if level_key(v) is None else str(v)).to_numpy())
            continue
        idx, key = _match(info, col)
        names = np.array([str(v) for v in info.levels] + [None], dtype=object)
        parts.append(np.where(idx >= 0, names[idx], key))
    if len(parts) == 1:
        return parts[0]
    out = parts[0].astype(object)
    for p in parts[1:]:
        out = np.array([None if a is None or b is None else f"{a}:{b}" for a, b in zip(out, p)], dtype=object)
    return out


#: a column past this magnitude is named when a criterion is not finite: its
#: squares (1e16 and up) leave no digits for the rest of a double's sums
_HUGE = 1e8


def nonfinite_advice(design: Design) -> str:
    """What to change when a fit's criterion is not finite: the columns of huge
    magnitude in X and the random-effect terms, named, or a general hint."""
    found = []
    if design.X is not None:
        for name, v in zip(design.fixed_names, np.abs(design.X).max(axis=0, initial=0.0)):
            if name != "(Intercept)" and v > _HUGE:
                found.append((v, f"{name!r} (fixed effects)"))
    for t in design.terms:
        if t.Z is None:
            continue
        for name, v in zip(t.terms, np.abs(t.Z).max(axis=0, initial=0.0)):
            if name != "(Intercept)" and v > _HUGE:
                found.append((v, f"{name!r} (in {t.label})"))
    if not found:
        return ("look for columns of extreme magnitude or values that make the model degenerate, "
                "and centre or scale the predictors")
    found.sort(reverse=True)
    shown = ", ".join(f"{what} reaches {v:.3g}" for v, what in found[:3])
    return f"column(s) of huge magnitude: {shown}; centre or scale them (scale(x), or I(x - mean))"
