"""The arrays of a mixed model of a :mod:`bayesmer.families` family, for its priors and its posterior.

:func:`family_data` reads the response as :func:`bayesmer.glmmtmb` does (the
same design, rows and checks, so a bad response is refused before any fit with
the family's message naming the rows) and holds what the posterior needs, in
the shape of :class:`bayesmer.glmm_design.GlmmData` (the binomial's and Poisson's), which it extends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import DesignError, plain_frame
from .families import FamilyError, ResponseFamily, get_family
from .glmm_design import GlmmData, Response, evaluate_column, frame_design, split_response

__all__ = ["FamilyData", "family_data"]


@dataclass(frozen=True, eq=False)
class FamilyData(GlmmData):
    """A family model's design and response: :class:`~bayesmer.glmm_design.GlmmData`'s fields, its family a
    :class:`~bayesmer.families.ResponseFamily`.

    Attributes
    ----------
    family : ResponseFamily
        Bound to the data (``cumulative``: its ordered categories).
    design : Design
        ``design.X`` keeps lme4's intercept column; :attr:`X` drops it for ``cumulative``.
    terms : tuple of ReTerm
    y : ndarray (n,)
        The response: counts, values, categories 1..K (``cumulative``), log y (``lognormal``).
    weights, offset : ndarray (n,)
    label, formula : str
    frame : DataFrame
        The kept rows of the columns the formula and offset read (saving, loading).
    weights_spec, offset_spec : str or None
    """

    family: ResponseFamily

    @property
    def _keep(self) -> list[int]:
        names = list(self.design.fixed_names)
        if getattr(self.family, "has_intercept", True) is False and "(Intercept)" in names:
            return [j for j, n in enumerate(names) if n != "(Intercept)"]
        return list(range(len(names)))

    @property
    def X(self) -> np.ndarray:
        return np.asarray(self.design.X, dtype=float)[:, self._keep]

    @property
    def fixed_names(self) -> tuple:
        names = list(self.design.fixed_names)
        return tuple(names[j] for j in self._keep)

    @property
    def p(self) -> int:
        return len(self._keep)

    @property
    def levels(self) -> tuple:
        """The ordered categories of a ``cumulative`` response (empty otherwise)."""
        return tuple(getattr(self.family, "levels", ()))


def family_data(formula, data: pd.DataFrame, family, offset=None, link: str | None = None) -> FamilyData:
    """The design and response of a mixed model of ``family`` (as :func:`bayesmer.glmmtmb` reads them).

    Raises
    ------
    FamilyError, DesignError
        A response the family cannot take (naming the rows and the family that
        takes them), an ordinal response without an order, a bad ``offset``.
    """
    fam = get_family(family).with_link(link) if isinstance(family, str) else family.with_link(link)
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    lhs, f = split_response(formula)
    n = len(data)
    if lhs in data.columns:
        col = data[lhs]
        bind = getattr(fam, "bind", None)
        if bind is not None and not getattr(fam, "levels", ()):
            fam = bind(col, lhs)
        y_all = fam.prepare_response(col, lhs)
    else:
        if fam.name == "cumulative":
            raise FamilyError(f"the cumulative response {lhs!r} must be a column of the data")
        y_all = evaluate_column(lhs, plain_frame(data), f"the response {lhs!r}")
    if offset is None:
        off_all = np.zeros(n)
    elif isinstance(offset, str):
        off_all = evaluate_column(offset, plain_frame(data), f"offset {offset!r}")
    else:
        off_all = np.asarray(offset, dtype=float).reshape(-1)
        if off_all.shape[0] != n:
            raise DesignError(f"offset has {off_all.shape[0]} values for {n} rows")
    ok = np.isfinite(y_all)
    fam.check_response(y_all[ok], lhs, data.index[ok])
    if fam.name == "lognormal":
        with np.errstate(divide="ignore", invalid="ignore"):
            y_all = np.log(y_all)
    design, terms, pos = frame_design(f, data, Response(y_all, np.ones(n), lhs), off_all)
    y, off = y_all[pos], off_all[pos]
    if design.offset is not None:
        off = off + np.asarray(design.offset, dtype=float)
    if fam.name == "cumulative":
        fam.check_response(y, lhs, data.index[pos])  # a category seen only in dropped rows
    text = f"{formula} {offset if isinstance(offset, str) else ''}"
    cols = [c for c in data.columns if re.search(r"(?<![\w.])" + re.escape(str(c)) + r"(?![\w.])", text)]
    frame = data.iloc[pos][cols].copy()
    offset_spec = offset if offset is None or isinstance(offset, str) else "(offset)"
    if offset is not None and not isinstance(offset, str):
        frame["(offset)"] = off_all[pos]
    formula_text = " ".join(formula.split()) if isinstance(formula, str) else str(formula)
    if not isinstance(fam, ResponseFamily):  # pragma: no cover - get_family returns one
        raise FamilyError(f"not a family: {fam!r}")
    return FamilyData(fam, design, terms, y, np.ones(len(y)), off, lhs, formula_text, frame, None, offset_spec)
