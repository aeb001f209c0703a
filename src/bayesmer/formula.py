"""Parse lme4 mixed-model formulas.

The fixed part is left to formulaic; this module only splits a formula into its
response, its fixed right-hand side and its random-effect bars, and expands the
bar shorthands exactly as lme4 does:

* ``(x || g)``   -> ``(1 | g) + (0 + x | g)`` (independent terms),
* ``(1 | a/b)``  -> ``(1 | a) + (1 | a:b)`` (nesting),
* ``(1 | a:b)``  -> one term grouped by the interaction of ``a`` and ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FormulaError", "RandomTerm", "Formula", "parse_formula"]


class FormulaError(ValueError):
    """A formula that cannot be parsed, with the culprit named."""


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(expr | group)`` after expansion.

    Parameters
    ----------
    expr : str
        Right-hand side of the bar in formulaic syntax, e.g. ``"1 + Days"`` or
        ``"0 + Days"``.
    factors : tuple of str
        Grouping columns; more than one for an interaction ``a:b``.
    """

    expr: str
    factors: tuple[str, ...]

    @property
    def group(self) -> str:
        """The grouping factor's name, ``"a:b"`` for an interaction."""
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class Formula:
    """A parsed mixed-model formula.

    Attributes
    ----------
    response : str
        Left-hand side expression, e.g. ``"Reaction"`` or ``"log(y)"``.
    fixed : str
        Right-hand side of the fixed part in formulaic syntax (``"1"`` when only
        an intercept, ``"0"`` when none).
    random : tuple of RandomTerm
        The expanded random-effect terms, in formula order.
    """

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    def __str__(self) -> str:
        parts = [self.fixed] + [str(t) for t in self.random]
        return f"{self.response} ~ " + " + ".join(parts)


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at top-level separators, returning (sign, piece) pairs."""
    out: list[tuple[str, str]] = []
    depth, start, sign = 0, 0, "+"
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in seps:
            out.append((sign, text[start:i].strip()))
            sign, start = ch, i + 1
    out.append((sign, text[start:].strip()))
    return out


def _check_parens(text: str, formula: str) -> None:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            raise FormulaError(
                f"unbalanced parentheses in formula {formula!r}: "
                f"a ')' at position {i} closes nothing"
            )
    if depth:
        raise FormulaError(
            f"unbalanced parentheses in formula {formula!r}: {depth} '(' never closed"
        )


def _strip_outer(piece: str) -> str | None:
    """Return the inside of ``piece`` if it is one parenthesised group."""
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    depth = 0
    for i, ch in enumerate(piece):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(piece) - 1:
            return None
    return piece[1:-1].strip()


def _bar_split(inner: str) -> tuple[str, str, bool] | None:
    """Split ``lhs | rhs`` or ``lhs || rhs`` at top level; None if no bar."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            double = inner[i + 1 : i + 2] == "|"
            rhs = inner[i + 2 :] if double else inner[i + 1 :]
            if "|" in rhs:
                raise FormulaError(f"more than one bar in random-effect term ({inner})")
            return inner[:i].strip(), rhs.strip(), double
    return None


def _grouping(rhs: str, term: str) -> list[tuple[str, ...]]:
    """Expand a grouping expression into a list of factor tuples."""
    if not rhs:
        raise FormulaError(f"random-effect term {term} has no grouping factor right of the bar")
    if any(sep in rhs for sep in "+*()|~"):
        raise FormulaError(
            f"grouping expression {rhs!r} in {term} is not supported: use a factor, "
            "an interaction a:b or nesting a/b"
        )
    out: list[tuple[str, ...]] = []
    nest: list[tuple[str, ...]] = []
    for part in rhs.split("/"):
        names = tuple(n.strip() for n in part.split(":"))
        if any(not n for n in names):
            raise FormulaError(f"empty factor name in grouping expression {rhs!r} of {term}")
        nest.append(names)
        out.append(tuple(n for grp in nest for n in grp))
    return out


def _lhs_terms(lhs: str) -> tuple[bool | None, list[str]]:
    """Split the left of a bar into (intercept flag, other terms).

    The flag is True for an explicit ``1``, False for ``0``/``-1``, None when
    implicit (lme4 then includes an intercept).
    """
    intercept: bool | None = None
    terms: list[str] = []
    for sign, piece in _split_top(lhs, "+-"):
        if not piece:
            if sign == "+" and not terms and intercept is None:
                continue
            raise FormulaError(f"empty term in {lhs!r}")
        if piece in ("0", "1"):
            intercept = (piece == "1") == (sign == "+")
        elif sign == "-":
            raise FormulaError(f"cannot remove {piece!r} in a random-effect term ({lhs})")
        else:
            terms.append(piece)
    return intercept, terms


def _expand_bar(lhs: str, rhs: str, double: bool) -> list[RandomTerm]:
    term = f"({lhs} {'||' if double else '|'} {rhs})"
    if not lhs:
        raise FormulaError(f"random-effect term {term} has nothing left of the bar; write (1 | {rhs}) for random intercepts")
    groups = _grouping(rhs, term)
    intercept, terms = _lhs_terms(lhs)
    if intercept is False and not terms:
        raise FormulaError(f"random-effect term {term} has no columns: it removes the intercept and adds nothing")
    if double:
        exprs = (["1"] if intercept is not False else []) + [f"0 + {t}" for t in terms]
    else:
        head = "1" if intercept is not False else "0"
        exprs = [" + ".join([head] + terms)]
    return [RandomTerm(expr, factors) for factors in groups for expr in exprs]


def parse_formula(formula: str | Formula) -> Formula:
    """Parse an lme4 formula such as ``"y ~ x + (1 + x | g)"``.

    Parameters
    ----------
    formula : str or Formula
        The formula; a parsed ``Formula`` is returned unchanged.

    Returns
    -------
    Formula

    Raises
    ------
    FormulaError
        When the formula is malformed or has no random-effect term.
    """
    if isinstance(formula, Formula):
        return formula
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {type(formula).__name__}")
    text = " ".join(formula.split())
    _check_parens(text, formula)
    if text.count("~") != 1:
        raise FormulaError(f"formula {formula!r} needs exactly one '~' between the response and the terms")
    lhs, rhs = (s.strip() for s in text.split("~"))
    if not lhs:
        raise FormulaError(f"formula {formula!r} has no response left of '~'")
    if not rhs:
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    fixed: list[tuple[str, str]] = []
    random: list[RandomTerm] = []
    for sign, piece in _split_top(rhs, "+-"):
        inner = _strip_outer(piece)
        bar = _bar_split(inner) if inner is not None else None
        if bar is None:
            if "|" in piece:
                raise FormulaError(f"a random-effect term must be written in parentheses: ({piece})")
            if not piece:
                if sign == "+" and not fixed:
                    continue
                raise FormulaError(f"empty term in formula {formula!r}")
            fixed.append((sign, piece))
            continue
        if sign == "-":
            raise FormulaError(f"a random-effect term cannot be subtracted: -{piece}")
        random.extend(_expand_bar(*bar))
    if not random:
        raise FormulaError(
            f"formula {formula!r} has no random-effect term such as (1 | group): "
            "it is a plain regression; fit it with statsmodels' OLS or add a (1 | group) term"
        )
    return Formula(lhs, _canonical_fixed(fixed), tuple(random))


def _canonical_fixed(pieces: list[tuple[str, str]]) -> str:
    """Join the fixed pieces with the intercept made explicit, as lme4 prints it."""
    intercept = True
    rest: list[str] = []
    for sign, piece in pieces:
        if piece in ("0", "1"):
            intercept = (piece == "1") == (sign == "+")
        else:
            rest.append(piece if sign == "+" else f"- {piece}")
    out = "1" if intercept else "0"
    for piece in rest:
        out += f" {piece}" if piece.startswith("- ") else f" + {piece}"
    return out
