"""The design and response of a mixed model with a non-Gaussian response, shared by every GLMM fit.

lme4's ``glmer`` (:mod:`bayesmer.glmer_fit`), glmmTMB's families
(:mod:`bayesmer.glmmtmb_fit`), the posterior's builder and the default priors
read a GLMM's data through here: the response as R's ``glm`` holds it
(``cbind(successes, failures)``, a two-level factor, prior weights), the
offset, and the design with lme4's allowance for a grouping factor with one
level per row. It knows families (:mod:`bayesmer.family`), never a fit.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import Design, DesignError, ReTerm, _grouping, build_design, plain_frame
from .family import Family, FamilyError, as_binary
from .formula import Call, Formula, FormulaError, Name, check_value, deparse, evaluate, parse_formula, parse_r

__all__ = ["RESPONSE_COLUMN", "Response", "GlmmData", "glmm_design", "parse_glmm_formula", "split_response",
           "parse_response", "read_response", "evaluate_column", "frame_design"]

#: the placeholder column build_design reads the evaluated response from
RESPONSE_COLUMN = "_glmer_response_"


@dataclass(frozen=True)
class Response:
    y: np.ndarray  # proportions (binomial) or counts, all rows of the data
    wt: np.ndarray  # prior weights: trials for the binomial
    label: str  # what the messages call the response


def evaluate_column(expr, data: pd.DataFrame, where: str) -> np.ndarray:
    """A numeric column, or an R expression of columns (:func:`bayesmer.formula.evaluate`: never Python's eval)."""
    if isinstance(expr, str) and expr in data.columns:
        expr = Name(expr)  # a column, whatever its name (the arrays saved as "(weights)", "(offset)")
    return evaluate(expr, data, where, error=DesignError)


def parse_response(lhs: str) -> object:
    """The parsed response: a checked R expression, or ``cbind(successes, failures)`` of two."""
    node = parse_r(lhs)
    if isinstance(node, Call) and node.fn == "cbind":
        if len(node.args) != 2 or any(k is not None for k, _ in node.args):
            raise FormulaError(f"cbind in the response {lhs!r} needs two arguments: successes and failures")
        for _, arg in node.args:
            check_value(arg, f"the response {lhs!r}")
    else:
        check_value(node, f"the response {lhs!r}")
    return node


def split_response(formula: str | Formula) -> tuple[str, Formula]:
    """The left-hand side, and the formula with the placeholder response.

    The response is evaluated here (``cbind(s, f)`` makes two columns, a
    factor is 0/1), and build_design reads the result from a placeholder
    column.
    """
    if isinstance(formula, Formula):
        return formula.response, dataclasses.replace(formula, response=RESPONSE_COLUMN)
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {type(formula).__name__}")
    depth = 0
    for i, ch in enumerate(formula):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "~" and depth == 0:
            lhs = formula[:i].strip()
            if not lhs:
                raise FormulaError(f"formula {formula!r} has no response left of '~'")
            parse_response(lhs)  # checked here, so that a model file's response is refused when the file is read
            return " ".join(lhs.split()), parse_formula(f"{RESPONSE_COLUMN} ~ {formula[i + 1:]}")
    raise FormulaError(f"formula {formula!r} needs a '~' between the response and the terms")


def parse_glmm_formula(formula: str | Formula) -> tuple[str, Formula]:
    """A GLMM formula: its response as written (``cbind(s, f)`` included) and the parsed right-hand side.

    Raises
    ------
    FormulaError
        For a formula without ``~`` or a response, or a bad right-hand side.
    """
    return split_response(formula)


def read_response(lhs: str, data: pd.DataFrame, family: Family, weights) -> Response:
    """y and the prior weights as R's ``glm`` holds them."""
    n = len(data)
    if weights is None:
        prior = np.ones(n)
    elif isinstance(weights, str):
        prior = evaluate_column(weights, data, f"weights {weights!r}")
    else:
        prior = np.asarray(weights, dtype=float).reshape(-1)
        if prior.shape[0] != n:
            raise DesignError(f"weights has {prior.shape[0]} values for {n} rows")
    node = parse_response(lhs)
    if isinstance(node, Call) and node.fn == "cbind":
        if family.name != "binomial":
            raise FamilyError(f"a cbind(successes, failures) response needs family='binomial', not {family.name!r}")
        args = [deparse(a) for _, a in node.args]
        s, f = (evaluate_column(a, data, f"the response {lhs!r}") for _, a in node.args)
        for values, expr, what in ((s, args[0], "successes"), (f, args[1], "failures")):
            neg = values < 0
            if np.any(neg):
                rows = data.index[neg]
                shown = ", ".join(str(r) for r in rows[:10])
                more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
                raise FamilyError(f"the {what} {expr!r} of the response {lhs!r} are negative: rows {shown}{more}")
        trials = s + f
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials == 0, 0.0, s / trials)
        return Response(y, trials * prior, lhs)
    column = node.id if isinstance(node, Name) and node.id in data.columns else None
    if family.name == "binomial" and column is not None and (
            not pd.api.types.is_numeric_dtype(data[column]) or pd.api.types.is_bool_dtype(data[column])):
        return Response(as_binary(data[column], lhs), prior, lhs)
    return Response(evaluate_column(node, data, f"the response {lhs!r}"), prior, lhs)


# --------------------------------------------------------------------------
# the design, with lme4's allowance for one level per row


def _unique_per_row(data: pd.DataFrame, factors: tuple[str, ...]) -> bool:
    cols = data[list(factors)]
    cols = cols[cols.notna().all(axis=1)]
    return len(cols) > 1 and not cols.duplicated().any()


def frame_design(f: Formula, data: pd.DataFrame, resp: Response, offset: np.ndarray) -> tuple[Design, tuple[ReTerm, ...], np.ndarray]:
    """The design, its random-effect terms in lme4's order, and the kept rows' positions.

    build_design refuses a grouping factor with a level per row (right for a
    linear model, whose residual it would duplicate); lme4's glmer takes one
    (an observation-level random effect for overdispersion). Such intercept
    terms are left out of build_design and made here, then put in lme4's
    order (by decreasing number of levels, formula order among ties).
    """
    frame = data.reset_index(drop=True)
    if RESPONSE_COLUMN in frame.columns:
        raise DesignError(f"the data has a column named {RESPONSE_COLUMN!r}, which glmer uses internally")
    missing = ~(np.isfinite(resp.y) & np.isfinite(resp.wt) & np.isfinite(offset))
    obs_terms = [t for t in f.random if all(c in frame.columns for c in t.factors) and _unique_per_row(frame, t.factors)]
    for t in obs_terms:
        if t.expr != "1":
            raise DesignError(
                f"random-effect term {t} has one level of {t.group!r} per row; only an intercept "
                f"(1 | {t.group}) is supported for such a term"
            )
        missing |= frame[list(t.factors)].isna().any(axis=1).to_numpy()
    kept_terms = tuple(t for t in f.random if t not in obs_terms)
    if obs_terms and not kept_terms:
        raise DesignError("every random-effect term has one level per row; glmer needs a grouping with repeated levels")
    kept_y = resp.y[~missing]
    if len(kept_y) and np.all(kept_y == kept_y[0]):
        # lme4's check.response.not.const; build_design's own check would
        # name the placeholder column.
        raise FamilyError(f"the response {resp.label!r} is constant ({kept_y[0]:g} in all {len(kept_y)} rows)")
    frame[RESPONSE_COLUMN] = np.where(missing, np.nan, resp.y)
    with warnings.catch_warnings():
        # build_design's missing-value warning would name the placeholder column.
        warnings.filterwarnings("ignore", message=r"\d+ row\(s\) with missing values")
        design = build_design(dataclasses.replace(f, random=kept_terms), frame)
    pos = design.frame.index.to_numpy()
    if len(pos) < len(frame):
        warnings.warn(
            f"{len(frame) - len(pos)} row(s) with missing values in the response, weights, offset or "
            f"model columns removed ({len(pos)} kept)",
            UserWarning,
            stacklevel=3,
        )
    if not obs_terms:
        return design, design.terms, pos
    n = len(pos)
    kept = frame.iloc[pos]
    made = []
    for t in obs_terms:
        codes, levels = _grouping(kept, t.factors)
        made.append((t, ReTerm(
            name=t.group, group=t.group, factors=t.factors, codes=codes, levels=levels,
            terms=("(Intercept)",), Z=np.ones((n, 1)), expr="1", spec=None,
        )))
    order = {t: i for i, t in enumerate(f.random)}
    built = [(order[t], rt) for t, rt in made]
    by_expr = {}
    for rt in design.terms:
        by_expr.setdefault((rt.expr, rt.factors), []).append(rt)
    for t in kept_terms:
        built.append((order[t], by_expr[(t.expr, t.factors)].pop(0)))
    built.sort(key=lambda item: (-item[1].n_levels, item[0]))
    seen: dict[str, int] = {}
    terms = []
    for _, rt in built:
        count = seen.get(rt.group, 0)
        seen[rt.group] = count + 1
        name = rt.group if count == 0 else f"{rt.group}.{count}"
        terms.append(dataclasses.replace(rt, name=name))
    return design, tuple(terms), pos


@dataclass(frozen=True, eq=False)
class GlmmData:
    """A GLMM's arrays: the design and the response as R's ``glm`` holds it.

    Attributes
    ----------
    family : Family
    design : Design
        Its ``y`` is the response below; ``terms`` may differ from ``design.terms``.
    terms : tuple of ReTerm
        In lme4's order, including observation-level terms (one level per row).
    y : ndarray (n,)
        Proportions (binomial) or counts (Poisson).
    weights : ndarray (n,)
        Prior weights: the binomial's trials times any ``weights=``.
    offset : ndarray (n,)
        The whole offset (the formula's and ``offset=``).
    label : str
        The response as written (``cbind(incidence, size - incidence)``).
    formula : str
        The formula as given, response included.
    frame : DataFrame
        The kept rows of the columns the formula, weights and offset read
        (what rebuilds the model: saving, loading, refitting); ``weights=`` or
        ``offset=`` given as arrays are its columns ``(weights)``, ``(offset)``.
    weights_spec, offset_spec : str or None
        The column name or expression of ``frame`` each was read from.
    """

    family: Family
    design: Design
    terms: tuple
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    label: str
    formula: str = ""
    frame: pd.DataFrame | None = None
    weights_spec: str | None = None
    offset_spec: str | None = None

    # what default_priors (and design.moments) read of a design: rows in memory, no sums
    sums = None

    @property
    def X(self) -> np.ndarray:
        return self.design.X

    @property
    def p(self) -> int:
        return self.design.p

    @property
    def fixed_names(self) -> tuple:
        return self.design.fixed_names


def glmm_design(formula, data: pd.DataFrame, family: Family, weights=None, offset=None) -> GlmmData:
    """The design and response of a binomial or Poisson mixed model (see :func:`glmer`).

    Raises
    ------
    FamilyError, DesignError
        A response outside the family's range (naming the column and the rows), a
        bad ``weights=``/``offset=``.
    """
    fam = family
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    lhs, f = split_response(formula)
    # pandas' extension dtypes (Int64, string, pyarrow's) as NumPy's, pd.NA as NaN, for the
    # response, weights and offset; build_design reads its columns so itself, after dropping rows
    plain = plain_frame(data)
    resp = read_response(lhs, plain, fam, weights)
    if offset is None:
        off_all = np.zeros(len(data))
    elif isinstance(offset, str):
        off_all = evaluate_column(offset, plain, f"offset {offset!r}")
    else:
        off_all = np.asarray(offset, dtype=float).reshape(-1)
        if off_all.shape[0] != len(data):
            raise DesignError(f"offset has {off_all.shape[0]} values for {len(data)} rows")
    design, terms, pos = frame_design(f, data, resp, off_all)
    y, wt, off = resp.y[pos], resp.wt[pos], off_all[pos]
    design_offset = getattr(design, "offset", None)
    if design_offset is not None:
        off = off + np.asarray(design_offset, dtype=float)
    fam.validate(y, wt, resp.label, data.index[pos])
    text = f"{formula} {weights if isinstance(weights, str) else ''} {offset if isinstance(offset, str) else ''}"
    cols = [c for c in data.columns if re.search(r"(?<![\w.])" + re.escape(str(c)) + r"(?![\w.])", text)]
    frame = plain_frame(data.iloc[pos][cols]).copy()
    specs = []
    for arg, name in ((weights, "(weights)"), (offset, "(offset)")):
        if arg is None or isinstance(arg, str):
            specs.append(arg)
        else:
            frame[name] = np.asarray(arg, dtype=float).reshape(-1)[pos]
            specs.append(name)
    formula_text = " ".join(formula.split()) if isinstance(formula, str) else str(formula)
    return GlmmData(fam, design, terms, y, wt, off, resp.label, formula_text, frame, *specs)
