"""Parse lme4 mixed-model formulas with R's grammar and R's meaning.

A formula is read by an R expression parser (R's operators and precedence,
backticked and dotted names, ``**`` as ``^``) and split the way lme4's
``findbars``/``nobars`` split it:

* ``(x || g)``   -> ``(1 | g) + (0 + x | g)`` (independent terms, one per term
  label, as lme4's ``expandDoubleVerts``),
* ``(1 | a/b)``  -> ``(1 | a) + (1 | a:b)`` (nesting),
* ``(1 | a:b)``  -> one term grouped by the interaction of ``a`` and ``b``,
* ``y ~ x | g``  -> ``y ~ 1 + (1 + x | g)`` (a bar without parentheses is the
  whole right-hand side, as R's precedence makes it).

Both the fixed part and each bar's left side are expanded into R's term labels
(``terms.formula``: ``a*b`` -> ``a + b + a:b``, ``(a + b + c)^2``, ``a/b``,
``%in%``, ``-``), ordered by degree as R orders them. ``^`` is R's: a power inside
a function call such as ``I(x^2)``, the interaction power outside. Functions are
checked here against the ones bayesmer evaluates as R does; any other is an error
naming it, never a different model. The printed formula (``str``) is canonical:
it parses back to itself and to the same design.

The hand-written parser is needed because no Python library reads R's formula
grammar. formulaic (which builds the model matrices from :func:`to_formulaic`'s
translation) reads ``^`` and ``**`` outside a call as R's interaction power, but
evaluates the inside of a call as Python, where ``^`` is XOR (an integer column's
``I(day^2)`` was ``day XOR 2``), ``x.1`` an attribute and ``relevel`` a column.
"""

from __future__ import annotations

import ast
import functools
import keyword
import math
import re
from dataclasses import dataclass

from .errors import BayesmerError

__all__ = ["FormulaError", "RandomTerm", "Formula", "parse_formula"]


class FormulaError(BayesmerError, ValueError):
    """A formula that cannot be parsed, with the culprit named."""


# --- R expressions -----------------------------------------------------------


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Num:
    value: float
    integer: bool = False  # R's ``2L``


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[tuple[str | None, object], ...]


@dataclass(frozen=True)
class Paren:
    body: object


@dataclass(frozen=True)
class Bin:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Un:
    op: str
    operand: object


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<bq>`[^`]*`)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    |(?P<name>(?:[^\W\d]|\.(?!\d))[\w.]*)
    |(?P<op>%[^%\s]*%|\|\||&&|\*\*|:::|::|==|!=|<=|>=|[-+*/^:~|&!<>=(),\[\]$@{};?])
    """,
    re.X,
)

# R's binary operators: (left binding power, right binding power), from ?Syntax.
_BINARY = {
    "~": (1, 2),
    "|": (3, 4), "||": (3, 4),
    "&": (5, 6), "&&": (5, 6),
    "==": (8, 9), "!=": (8, 9), "<": (8, 9), ">": (8, 9), "<=": (8, 9), ">=": (8, 9),
    "+": (10, 11), "-": (10, 11),
    "*": (12, 13), "/": (12, 13),
    "%": (14, 15),  # every %op%
    ":": (16, 17),
    "^": (20, 19),  # right associative, above unary minus: -2^2 is -(2^2)
}
_PREFIX = {"-": 18, "+": 18, "!": 7}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE",
             "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "in"}
_MAX_DEPTH = 100


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."

_SYNTACTIC = re.compile(r"(?:[^\W\d_]|\.(?!\d))[\w.]*\Z")


def _tokens(text: str, formula: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(f"cannot read {text[pos:pos + 10]!r} at position {pos} of formula {formula!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tok = m.group()
        if kind == "op" and tok == "**":
            tok = "^"  # R reads ** as ^
        if kind == "op" and tok in ("[", "]", "$", "@", "{", "}", ";", "?", ":::", "<-"):
            raise FormulaError(f"{tok!r} in formula {formula!r} is not supported in a model formula")
        out.append((kind, tok))
    return out


class _Parser:
    """A Pratt parser for R expressions."""

    def __init__(self, text: str, formula: str):
        self.toks = _tokens(text, formula)
        self.i = 0
        self.depth = 0
        self.formula = formula

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def next(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, tok: str):
        kind, got = self.next()
        if got != tok:
            where = "the end" if got is None else repr(got)
            raise FormulaError(f"expected {tok!r} but found {where} in formula {self.formula!r}")

    def parse(self):
        if not self.toks:
            raise FormulaError(f"formula {self.formula!r} is empty")
        node = self.expr(0)
        if self.peek()[0] is not None:
            raise FormulaError(f"unexpected {self.peek()[1]!r} in formula {self.formula!r}")
        return node

    def expr(self, min_bp: int):
        # each level of parentheses, calls or prefix operators is a Python frame or two
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise FormulaError(f"formula {_short(self.formula)} nests more than {_MAX_DEPTH} levels deep")
        try:
            return self._expr(min_bp)
        finally:
            self.depth -= 1

    def _expr(self, min_bp: int):
        left = self.prefix()
        while True:
            kind, tok = self.peek()
            if kind != "op":
                if kind is not None:
                    raise FormulaError(f"unexpected {tok!r} after {deparse(left)!r} in formula {self.formula!r}")
                return left
            key = "%" if tok.startswith("%") and len(tok) > 1 else tok
            if key not in _BINARY:
                return left
            lbp, rbp = _BINARY[key]
            if lbp < min_bp:
                return left
            self.next()
            if self.peek()[0] is None:
                raise FormulaError(f"formula {self.formula!r} ends after the operator {tok!r}")
            if tok in ("|", "||") and self.peek()[1] == ")":
                raise FormulaError(f"random-effect term ({deparse(left)} {tok} ) in formula {self.formula!r} "
                                   "has no grouping factor right of the bar")
            left = Bin(tok, left, self.expr(rbp))

    def prefix(self):
        kind, tok = self.next()
        if kind is None:
            raise FormulaError(f"formula {self.formula!r} ends too early")
        if kind == "num":
            value = float(tok.rstrip("L"))
            # R reads 1.5L or 1e10L as a double (with a warning): an integer only when it is one
            integer = tok.endswith("L") and value.is_integer() and abs(value) < 2**31
            return Num(value, integer)
        if kind == "str":
            return Str(re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), tok[1:-1]))
        if kind in ("name", "bq"):
            name = tok[1:-1] if kind == "bq" else tok
            if kind == "name" and self.peek()[1] == "::":
                self.next()
                k2, t2 = self.next()
                if k2 not in ("name", "bq"):
                    raise FormulaError(f"expected a name after {name}:: in formula {self.formula!r}")
                name = f"{name}::{t2.strip('`')}"
                if self.peek()[1] != "(":
                    raise FormulaError(f"{name} in formula {self.formula!r} must be a function call")
            if self.peek()[1] == "(":
                self.next()
                return Call(name, self.arguments(name))
            return Name(name)
        if tok == "(":
            body = self.expr(0)
            self.expect(")")
            return Paren(body)
        if tok in _PREFIX:
            return Un(tok, self.expr(_PREFIX[tok]))
        if tok == "~":
            raise FormulaError(f"formula {self.formula!r} has no response left of '~'")
        if tok in ("|", "||"):
            raise FormulaError(f"a random-effect term in formula {self.formula!r} has nothing left of the bar; "
                               "write (1 | g) for random intercepts")
        raise FormulaError(f"unexpected {tok!r} in formula {self.formula!r}")

    def arguments(self, fn: str):
        args = []
        if self.peek()[1] == ")":
            self.next()
            return tuple(args)
        while True:
            name = None
            kind, tok = self.peek()
            if kind in ("name", "bq", "str") and self.peek(1)[1] == "=":
                name = tok.strip("`\"'")
                self.next()
                self.next()
            args.append((name, self.expr(0)))
            kind, tok = self.next()
            if tok == ")":
                return tuple(args)
            if tok != ",":
                where = "the end" if tok is None else repr(tok)
                raise FormulaError(f"expected ',' or ')' in the arguments of {fn}() but found {where} "
                                   f"in formula {self.formula!r}")


def _r_number(v: float, integer: bool = False) -> str:
    """A number as R's deparse prints it (15 significant digits, fixed or e)."""
    if integer:
        return f"{int(v)}L"
    if math.isinf(v):
        return "Inf"
    if v == 0:
        return "0"
    ref = float(f"{v:.15g}")
    d = next(d for d in range(1, 16) if float(f"{v:.{d}g}") == ref)
    sci = f"{v:.{d - 1}e}"
    mant, exp = sci.split("e")
    sci = f"{mant}e{exp[0]}{exp[1:].lstrip('0').rjust(2, '0')}"
    e = int(exp)
    fixed = f"{v:.{max(0, d - 1 - e)}f}"
    return fixed if len(fixed) <= len(sci) else sci


def _r_name(name: str) -> str:
    return name if _SYNTACTIC.match(name) and name not in _RESERVED else f"`{name}`"


def deparse(node) -> str:
    """R's ``deparse`` of an expression: the text R names its columns with."""
    match node:
        case Name("TRUE" | "FALSE" | "NULL" | "NA" | "Inf" | "NaN" as const):
            return const
        case Name(id):
            return _r_name(id)
        case Num(v, integer):
            return _r_number(v, integer)
        case Str(v):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        case Call(fn, args):
            head = "::".join(_r_name(p) for p in fn.split("::"))
            inner = ", ".join(deparse(a) if k is None else f"{_r_name(k)} = {deparse(a)}" for k, a in args)
            return f"{head}({inner})"
        case Paren(body):
            return f"({deparse(body)})"
        case Un(op, x):
            return f"{op}{deparse(x)}"
        case Bin(op, left, right):
            # R's deparse spaces every binary operator but ^ : / %% %/%
            if op in ("^", ":", "/", "%%", "%/%"):
                return f"{deparse(left)}{op}{deparse(right)}"
            return f"{deparse(left)} {op} {deparse(right)}"
    raise TypeError(node)  # pragma: no cover


def parse_r(text: str, formula: str | None = None):
    """Parse one R expression (``formula`` names the whole formula in errors)."""
    node = _Parser(text, text if formula is None else formula).parse()
    _check_depth(node, text if formula is None else formula)
    return node


_MAX_TREE = 400  # the recursive walks of a parsed expression (deparse, terms, evaluation) stay far from Python's limit


def _check_depth(root, formula: str) -> None:
    """Refuse an expression deeper than the walks over it can go (a sum of hundreds of terms is deep)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_TREE:
            raise FormulaError(f"formula {_short(formula)} is more than {_MAX_TREE} operators deep; "
                               "split it or compute columns in the data frame")
        match node:
            case Bin(_, a, b):
                stack += [(a, depth + 1), (b, depth + 1)]
            case Paren(x) | Un(_, x):
                stack.append((x, depth + 1))
            case Call(_, args):
                stack += [(a, depth + 1) for _, a in args]


# --- functions evaluated as R does -------------------------------------------


@dataclass(frozen=True)
class _Fn:
    """An R function bayesmer evaluates: its R arguments (in R's positional
    order) with the Python keyword each becomes, and whether its first argument
    is data (the others must be literals)."""

    py: str
    args: tuple[tuple[str, str], ...]
    literal: tuple[str, ...] = ()


_ELEMENTWISE = ("log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "sin", "cos", "tan",
                "floor", "ceiling", "trunc", "sign")
FUNCTIONS: dict[str, _Fn] = {
    "I": _Fn("I", (("x", "x"),)),
    "log": _Fn("r_log", (("x", "x"), ("base", "base")), ("base",)),
    "scale": _Fn("r_scale", (("x", "x"), ("center", "center"), ("scale", "scale")), ("center", "scale")),
    "center": _Fn("center", (("x", "x"),)),
    "poly": _Fn("r_poly", (("x", "x"), ("degree", "degree"), ("raw", "raw")), ("degree", "raw")),
    "factor": _Fn("r_factor", (("x", "x"),)),
    "as.factor": _Fn("r_as_factor", (("x", "x"),)),
    "C": _Fn("r_C", (("object", "x"),)),
    "relevel": _Fn("r_relevel", (("x", "x"), ("ref", "ref")), ("ref",)),
    "dummy": _Fn("r_dummy", (("f", "x"), ("levelsToKeep", "levels")), ("levelsToKeep",)),
    "ns": _Fn("r_ns", (("x", "x"), ("df", "df"), ("knots", "knots"), ("intercept", "intercept"),
                      ("Boundary.knots", "boundary_knots")), ("df", "knots", "intercept", "Boundary.knots")),
    "bs": _Fn("r_bs", (("x", "x"), ("df", "df"), ("knots", "knots"), ("degree", "degree"),
                      ("intercept", "intercept"), ("Boundary.knots", "boundary_knots")),
              ("df", "knots", "degree", "intercept", "Boundary.knots")),
} | {f: _Fn(f"r_{f}", (("x", "x"),)) for f in _ELEMENTWISE}
_NAMESPACES = {"splines": {"ns", "bs"}, "stats": {"poly", "relevel", "offset"}, "lme4": {"dummy"},
               "base": {"I", "log", "scale", "factor", "as.factor"} | set(_ELEMENTWISE)}


# formulaic transforms whose R namesake means something else in a model formula
_WHY_NOT = {
    "lag": "R's lag() of a data column leaves the values where they are (stats::lag shifts a time "
           "series' time base) while formulaic's shifts them; compute the lagged column in the data frame",
}


def _function(fn: str, where: str) -> tuple[str, _Fn]:
    base = fn
    if "::" in fn:
        ns, base = fn.split("::", 1)
        if base not in _NAMESPACES.get(ns, ()):
            raise FormulaError(f"function {fn}() in {where} is not supported")
    if base in _WHY_NOT:
        raise FormulaError(f"function {fn}() in {where} is not supported: {_WHY_NOT[base]}")
    if base not in FUNCTIONS:
        known = ", ".join(sorted(FUNCTIONS))
        raise FormulaError(
            f"function {fn}() in {where} is not supported: bayesmer evaluates {known} and offset() as R "
            "does; compute the column in the data frame instead"
        )
    return base, FUNCTIONS[base]


def _literal(node, fn: str, arg: str, where: str) -> object:
    """The Python value of a literal argument (number, string, TRUE, c(...))."""
    match node:
        case Num(v, integer):
            return int(v) if integer or v.is_integer() else v
        case Str(v):
            return v
        case Name("TRUE" | "T"):
            return True
        case Name("FALSE" | "F"):
            return False
        case Name("NULL"):
            return None
        case Un("-", Num(v, integer)):
            return -(int(v) if integer or v.is_integer() else v)
        case Call("c", args) if all(k is None for k, _ in args):
            return [_literal(a, fn, arg, where) for _, a in args]
    raise FormulaError(f"argument {arg} of {fn}() in {where} must be a literal value, not {deparse(node)!r}")


def _bind(call: Call, where: str) -> tuple[str, _Fn, dict[str, object]]:
    """Match a call's arguments to the R function's, as R matches them."""
    base, spec = _function(call.fn, where)
    names = [r for r, _ in spec.args]
    bound: dict[str, object] = {}
    positional = [a for k, a in call.args if k is None]
    if base == "poly" and len(positional) > 2:
        raise FormulaError(f"poly() of several variables in {where} is not supported; write one poly() per variable")
    for k, a in call.args:
        if k is None:
            continue
        match = [n for n in names if n == k] or [n for n in names if n.startswith(k)]
        if len(match) != 1:
            raise FormulaError(f"argument {k!r} of {call.fn}() in {where} is not supported; "
                               f"the arguments are {names}")
        if match[0] in bound:
            raise FormulaError(f"argument {match[0]!r} of {call.fn}() given twice in {where}")
        bound[match[0]] = a
    free = [n for n in names if n not in bound]
    if len(positional) > len(free):
        raise FormulaError(f"{call.fn}() in {where} has {len(call.args)} arguments; it takes {names}")
    bound.update(zip(free, positional))
    first = names[0]
    if first not in bound:
        raise FormulaError(f"{call.fn}() in {where} has no {first!r} argument")
    if base == "relevel" and "ref" not in bound:
        raise FormulaError(f"relevel() in {where} needs ref = \"level\"")
    for n in bound:
        if n != first:
            bound[n] = _literal(bound[n], call.fn, n, where)
    if base == "poly" and not isinstance(bound.get("degree", 1), int):
        raise FormulaError(f"degree of poly() in {where} must be a whole number, not {bound['degree']!r}")
    return base, spec, bound


# Characters formulaic's tokenizer and name sanitizer read as quotes or escapes: a
# column name holding one could end its backticks early and leave the rest of the
# code outside them.
_UNSAFE_NAME = re.compile(r"[\\'\"`\x00-\x1f\x7f]")


def _py_name(name: str, where: str) -> str:
    if _UNSAFE_NAME.search(name):
        raise FormulaError(f"column name {name!r} in {where} holds a quote, backslash or control character, "
                           "which bayesmer does not read in a formula; rename the column")
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"`{name}`"


def _py_literal(v) -> str:
    """A literal argument as Python code without quotes, brackets or backslashes of its own.

    A string becomes ``r_chr('<hex of its UTF-8>')``: formulaic does not read
    quotes inside a call's parentheses, and writes the code of a stateful
    transform's call into code of its own between double quotes, so no
    character of a value may reach it as written.
    """
    match v:
        case bool() | None:
            return repr(v)
        case int():
            return repr(v)
        case float():
            return "1e999" if v == math.inf else "(-1e999)" if v == -math.inf else repr(v)
        case str():
            return f"r_chr('{v.encode().hex()}')"
        case list():
            return "[" + ", ".join(_py_literal(x) for x in v) + "]"
    raise FormulaError(f"cannot use the value {v!r} in a formula")  # pragma: no cover


_PY_OPS = {"^": "**", "%%": "%", "%/%": "//", "&&": "&", "||": "|", "&": "&", "|": "|", "+": "+",
           "-": "-", "*": "*", "/": "/", "==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}


def to_python(node, where: str) -> str:
    """Python code that computes an R expression, for formulaic to evaluate.

    Every operator is R's (``^`` a power, ``%%`` the modulus); every function one
    of :data:`FUNCTIONS`, named as bayesmer's design evaluates them.
    """
    match node:
        case Name("TRUE"):
            return "True"
        case Name("FALSE"):
            return "False"
        case Name(id):
            if id in _RESERVED:
                raise FormulaError(f"{id} in {where} is not a value bayesmer can use in a formula")
            return _py_name(id, where)
        case Num(v, integer):
            return _py_literal(int(v) if integer or v.is_integer() else v)
        case Str(v):
            return _py_literal(v)
        case Paren(body):
            return f"({to_python(body, where)})"
        case Un("-" | "+" as op, x):
            return f"({op}{to_python(x, where)})"
        case Un("!", x):
            return f"(~{to_python(x, where)})"
        case Bin(op, left, right) if op in _PY_OPS:
            if op in ("|", "||"):
                raise FormulaError(f"a bar '|' inside a function call in {where}: lme4 would read it as a "
                                   "random-effect term; compute the logical column in the data frame instead")
            return f"({to_python(left, where)} {_PY_OPS[op]} {to_python(right, where)})"
        case Bin(op, _, _):
            raise FormulaError(f"operator {op!r} inside a function call in {where} is not supported")
        case Call(fn, _) if fn in ("offset", "stats::offset"):
            raise FormulaError(f"offset() in {where} is only allowed as a term of the fixed part")
        case Call():
            base, spec, bound = _bind(node, where)
            pynames = dict(spec.args)
            parts = [to_python(bound[spec.args[0][0]], where)]
            parts += [f"{pynames[k]}={_py_literal(v)}" for k, v in bound.items() if k != spec.args[0][0]]
            prefix = "splines_" if node.fn.startswith("splines::") else ""
            return f"{prefix}{spec.py}({', '.join(parts)})"
    raise FormulaError(f"cannot use {deparse(node)!r} in {where}")


def variables(node) -> set[str]:
    """The data columns an expression reads (names that are not functions)."""
    match node:
        case Name(id):
            return set() if id in ("TRUE", "FALSE") else {id}
        case Call(fn, args):
            if fn == "c":
                return set()
            if fn in ("offset", "stats::offset"):
                return set().union(*(variables(a) for _, a in args))
            _, spec, bound = _bind(node, f"term {deparse(node)}")
            return variables(bound[spec.args[0][0]])  # the other arguments are literals
        case Paren(body) | Un(_, body):
            return variables(body)
        case Bin(_, left, right):
            return variables(left) | variables(right)
    return set()


# --- R's terms.formula ---------------------------------------------------------


def _key(node) -> str:
    return deparse(node)


def _expand(node, where: str) -> tuple[list[tuple[str, ...]], bool | None, list[tuple[str, ...]]]:
    """R's term expansion of a formula's right side (no bars).

    Returns the terms (tuples of factor labels, deduplicated in order), the
    intercept (True/False when written, None when implicit) and the terms
    removed with ``-``.
    """
    match node:
        case Num(1.0) | Num(0.0):
            return [], node.value == 1.0, []
        case Num(v):
            raise FormulaError(f"the number {_r_number(v)} in {where} is not a term; write I({_r_number(v)}) "
                               "for a constant column")
        case Paren(body):
            return _expand(body, where)
        case Un("+", x):
            return _expand(x, where)
        case Un("-", x):
            terms, icpt, removed = _expand(x, where)
            if removed:
                raise FormulaError(f"cannot read -({deparse(x)}) in {where}")
            return [], (None if icpt is None else not icpt), terms
        case Bin("+", a, b):
            ta, ia, ra = _expand(a, where)
            tb, ib, rb = _expand(b, where)
            terms = _union(ta, [t for t in tb])
            return terms, ib if ib is not None else ia, ra + rb
        case Bin("-", a, b):
            ta, ia, ra = _expand(a, where)
            tb, ib, rb = _expand(b, where)
            if rb:
                raise FormulaError(f"cannot read - ({deparse(b)}) in {where}")
            terms = [t for t in ta if frozenset(t) not in {frozenset(r) for r in tb}]
            icpt = ia if ib is None else (False if ib else ia)
            return terms, icpt, ra + tb
        case Bin(":", a, b):
            return _product(_expand_only(a, where, ":"), _expand_only(b, where, ":")), None, []
        case Bin("*", a, b):
            ta, tb = _expand_only(a, where, "*"), _expand_only(b, where, "*")
            return _union(_union(ta, tb), _product(ta, tb)), None, []
        case Bin("/", a, b):
            ta, tb = _expand_only(a, where, "/"), _expand_only(b, where, "/")
            every = tuple(dict.fromkeys(f for t in ta for f in t))
            return _union(ta, _product([every], tb)), None, []
        case Bin("%in%", a, b):
            ta, tb = _expand_only(a, where, "%in%"), _expand_only(b, where, "%in%")
            every = tuple(dict.fromkeys(f for t in tb for f in t))
            return _product(ta, [every]), None, []
        case Bin("^", a, Num(v)) if v >= 1 and v.is_integer():
            ta = _expand_only(a, where, "^")
            out = ta
            for _ in range(int(v) - 1):
                out = _union(out, _product(out, ta))
            return out, None, []
        case Bin("^", a, b):
            raise FormulaError(f"the power {deparse(node)!r} in {where} needs a whole number of at least 1 "
                               f"right of ^ (R's interaction power); write I({deparse(node)}) for the arithmetic power")
        case Bin("|" | "||", _, _):
            raise FormulaError(f"random-effect term {deparse(node)} in {where} must be a term of its own, "
                               f"written in parentheses: ({deparse(node)})")
        case Bin("~", _, _):
            raise FormulaError(f"a second '~' in {where}")
        case Bin(op, _, _):
            raise FormulaError(f"operator {op!r} in {where} is not a formula operator; "
                               f"write I({deparse(node)}) for the value it computes")
        case Un(op, _):
            raise FormulaError(f"operator {op!r} in {where} is not a formula operator; "
                               f"write I({deparse(node)}) for the value it computes")
        case Name("."):
            raise FormulaError(f"'.' (all other columns) in {where} is not supported; name the columns")
        case Name() | Call():
            if isinstance(node, Call) and node.fn in ("offset", "stats::offset"):
                raise FormulaError(f"offset() in {where} must be a term of its own, added with +")
            if isinstance(node, Call):
                # unknown functions and bad arguments are errors here, naming the term
                term = f"term {deparse(node)} of {where}"
                _bind(node, term)
                to_python(node, term)
            return [(_key(node),)], None, []
        case Str(v):
            raise FormulaError(f"the string {v!r} in {where} is not a term")
    raise FormulaError(f"cannot read {deparse(node)!r} in {where}")  # pragma: no cover


def _expand_only(node, where: str, op: str) -> list[tuple[str, ...]]:
    terms, icpt, removed = _expand(node, where)
    if icpt is not None or removed:
        raise FormulaError(f"an intercept or a removed term inside {op!r} in {where} is not supported")
    return terms


def _union(a: list[tuple[str, ...]], b: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    seen = {frozenset(t) for t in a}
    out = list(a)
    for t in b:
        if frozenset(t) not in seen:
            seen.add(frozenset(t))
            out.append(t)
    return out


def _product(a: list[tuple[str, ...]], b: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for ta in a:
        for tb in b:
            out = _union(out, [tuple(dict.fromkeys(ta + tb))])
    return out


def _order(terms: list[tuple[str, ...]], variables_order: list[str]) -> list[str]:
    """R's term labels, factors in order of first appearance, terms in the
    order the expansion made them.

    R then sorts them by degree (:func:`by_degree`); the unsorted order is what
    a printed formula keeps, so that it parses back with the same first
    appearances and hence the same labels.
    """
    pos = {v: i for i, v in enumerate(variables_order)}
    return [":".join(sorted(t, key=lambda f: pos[f])) for t in terms]


def by_degree(labels: list[str]) -> list[str]:
    """Term labels in R's order: by number of factors, ties as written."""
    return sorted(labels, key=lambda t: len(_split_colon(t)))


def _appearance(node, out: list[str]) -> list[str]:
    """Factor labels in order of first appearance (R's ``variables`` order)."""
    match node:
        case Name() | Call():
            key = _key(node)
            if key not in out:
                out.append(key)
        case Paren(body) | Un(_, body):
            _appearance(body, out)
        case Bin(_, left, right):
            _appearance(left, out)
            _appearance(right, out)
    return out


def _term_labels(node, where: str) -> tuple[bool | None, list[str]]:
    terms, icpt, _ = _expand(node, where)
    return icpt, _order(terms, _appearance(node, []))


# --- the mixed-model formula ----------------------------------------------------


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(expr | group)`` after expansion.

    Parameters
    ----------
    expr : str
        Right-hand side of the bar as R term labels with the intercept first,
        e.g. ``"1 + Days"`` or ``"0 + Days"``.
    factors : tuple of str
        Grouping columns; more than one for an interaction ``a:b``.

    Examples
    --------
    >>> import bayesmer
    >>> [t.group for t in bayesmer.parse_formula("y ~ 1 + (1 | a/b)").random]
    ['a', 'a:b']
    """

    expr: str
    factors: tuple[str, ...]

    @property
    def group(self) -> str:
        """The grouping factor's name, ``"a:b"`` for an interaction."""
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.expr} | {':'.join(_r_name(f) for f in self.factors)})"


@dataclass(frozen=True)
class Formula:
    """A parsed mixed-model formula.

    Attributes
    ----------
    response : str
        Left-hand side as R deparses it, e.g. ``"Reaction"`` or ``"log(y)"``.
    fixed : str
        The fixed part's R term labels, intercept first (``"1"`` when only an
        intercept, ``"0"`` when none), e.g. ``"1 + a + b + a:b"``; in the order
        the expansion made them, which R sorts by degree (:func:`by_degree`).
    random : tuple of RandomTerm
        The expanded random-effect terms, in formula order.
    offset : tuple of str
        The expressions inside ``offset(...)`` terms, summed into the linear
        predictor with coefficient 1.

    Examples
    --------
    >>> import bayesmer
    >>> f = bayesmer.parse_formula("y ~ x + (x || g)")
    >>> f.response, f.fixed, [str(t) for t in f.random]
    ('y', '1 + x', ['(1 | g)', '(0 + x | g)'])
    """

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    offset: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [self.fixed] + [f"offset({o})" for o in self.offset] + [str(t) for t in self.random]
        return f"{self.response} ~ " + " + ".join(parts)


def _sum_terms(node, sign: str = "+") -> list[tuple[str, object]]:
    """The top-level terms of a sum, with their signs (parentheses kept)."""
    match node:
        case Bin("+" | "-" as op, a, b):
            return _sum_terms(a, sign) + _sum_terms(b, op if sign == "+" else ("+" if op == "-" else "-"))
        case Un("+", x):
            return _sum_terms(x, sign)
        case Un("-", x):
            return _sum_terms(x, "-" if sign == "+" else "+")
        case Paren(Bin("+", _, _) as body) if sign == "+" and _contains_bar(body):
            # lme4's findbars looks inside parentheses: y ~ (x + (1 | g))
            return _sum_terms(body, sign)
    return [(sign, node)]


def _bar(node):
    """The bar of a term ``(lhs | rhs)`` (parentheses optional), or None."""
    while isinstance(node, Paren):
        node = node.body
    if isinstance(node, Bin) and node.op in ("|", "||"):
        return node
    return None


def _contains_bar(node) -> bool:
    match node:
        case Bin("|" | "||", _, _):
            return True
        case Bin(_, a, b):
            return _contains_bar(a) or _contains_bar(b)
        case Paren(x) | Un(_, x):
            return _contains_bar(x)
    return False  # a bar inside a call is refused by to_python, naming the call


def _grouping(node, term: str) -> list[tuple[str, ...]]:
    """Expand a grouping expression (``g``, ``a:b``, ``a/b``) into factor tuples."""

    def factors(n) -> tuple[str, ...]:
        match n:
            case Name(id):
                return (id,)
            case Bin(":", a, b):
                return factors(a) + factors(b)
        raise FormulaError(
            f"grouping expression {deparse(node)!r} in {term} is not supported: use a factor, "
            "an interaction a:b or nesting a/b"
        )

    def nest(n) -> list[tuple[str, ...]]:
        match n:
            case Bin("/", a, b):
                outer = nest(a)
                inner = factors(b)
                return outer + [outer[-1] + inner]
            case Paren(x):
                return nest(x)
        return [factors(n)]

    return nest(node)


def _expand_bar(bar: Bin, where: str) -> list[RandomTerm]:
    term = deparse(Paren(bar))
    groups = _grouping(bar.right, term)
    intercept, labels = _term_labels(bar.left, f"random-effect term {term}")
    if intercept is False and not labels:
        raise FormulaError(f"random-effect term {term} has no columns: it removes the intercept and adds nothing")
    if bar.op == "||":
        exprs = (["1"] if intercept is not False else []) + [f"0 + {t}" for t in by_degree(labels)]
    else:
        exprs = [" + ".join(["1" if intercept is not False else "0"] + labels)]
    return [RandomTerm(expr, factors) for factors in groups for expr in exprs]


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> Formula:
    formula = text
    if not text.strip():
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    if "~" not in text:
        raise FormulaError(f"formula {formula!r} needs exactly one '~' between the response and the terms")
    _check_parens(text, formula)
    if text.strip().endswith("~"):
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    if text.strip().startswith("~"):
        raise FormulaError(f"formula {formula!r} has no response left of '~'")
    node = parse_r(text, formula)
    if not (isinstance(node, Bin) and node.op == "~"):
        raise FormulaError(f"formula {formula!r} needs exactly one '~' between the response and the terms")
    lhs, rhs = node.left, node.right
    if _contains_bar(lhs) or (isinstance(lhs, Bin) and lhs.op == "~"):
        raise FormulaError(f"formula {formula!r} needs exactly one '~' between the response and the terms")
    to_python(lhs, "the response")
    fixed: list[tuple[str, object]] = []
    random: list[RandomTerm] = []
    offsets: list[str] = []
    whole = _bar(rhs) if not isinstance(rhs, Paren) else None
    pieces = [("+", rhs)] if whole is not None else _sum_terms(rhs)
    for sign, piece in pieces:
        bar = _bar(piece)
        if bar is not None:
            if sign == "-":
                raise FormulaError(f"a random-effect term cannot be subtracted: -{deparse(piece)}")
            random.extend(_expand_bar(bar, formula))
        elif _contains_bar(piece):
            raise FormulaError(
                f"the bar in {deparse(piece)!r} of formula {formula!r} is not a term of its own: "
                "a random-effect term must be added with + and written in parentheses, e.g. (1 | g)"
            )
        elif isinstance(piece, Call) and piece.fn in ("offset", "stats::offset"):
            if sign == "-" or len(piece.args) != 1 or piece.args[0][0] not in (None, "object"):
                raise FormulaError(f"offset() in formula {formula!r} takes one expression and is added with +")
            to_python(piece.args[0][1], f"offset({deparse(piece.args[0][1])})")
            offsets.append(deparse(piece.args[0][1]))
        else:
            fixed.append((sign, piece))
    if not random:
        raise FormulaError(
            f"formula {formula!r} has no random-effect term such as (1 | group): "
            "it is a plain regression; fit it with statsmodels' OLS or add a (1 | group) term"
        )
    node_fixed = None
    for sign, piece in fixed:
        if node_fixed is None:
            node_fixed = piece if sign == "+" else Un("-", piece)
        else:
            node_fixed = Bin(sign, node_fixed, piece)
    if node_fixed is None:
        intercept, labels = None, []
    else:
        intercept, labels = _term_labels(node_fixed, "the fixed effects")
    fixed_text = " + ".join(["1" if intercept is not False else "0"] + labels)
    return Formula(deparse(lhs), fixed_text, tuple(random), tuple(offsets))


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


def parse_formula(formula: str | Formula) -> Formula:
    """Parse an lme4 formula such as ``"y ~ x + (1 + x | g)"``.

    Parameters
    ----------
    formula : str or Formula
        The formula as it would be written in R; a parsed ``Formula`` is
        returned unchanged.

    Returns
    -------
    Formula

    Raises
    ------
    FormulaError
        When the formula is malformed, has no random-effect term, or uses a
        function or operator bayesmer cannot evaluate as R does.

    Examples
    --------
    >>> import bayesmer
    >>> print(bayesmer.parse_formula("Reaction ~ Days + (Days | Subject)"))
    Reaction ~ 1 + Days + (1 + Days | Subject)
    """
    if isinstance(formula, Formula):
        return formula
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {type(formula).__name__}")
    return _parse(formula)


# --- translation for the design ---------------------------------------------------


@functools.lru_cache(maxsize=1024)
def factor_code(label: str) -> str:
    """Python code (for formulaic) of one factor given by its R label."""
    code = to_python(parse_r(label), f"term {label}")
    check_python(code, f"term {label}")
    return code


_PY_NODES = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.List, ast.BinOp, ast.UnaryOp, ast.Compare,
             ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv, ast.BitAnd, ast.BitOr,
             ast.USub, ast.UAdd, ast.Invert, ast.Eq, ast.NotEq, ast.Lt, ast.Gt, ast.LtE, ast.GtE)
_PY_KEYWORDS = frozenset(py for fn in FUNCTIONS.values() for _, py in fn.args)
_BACKTICKED = re.compile(r"`[^`]*`")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def check_python(code: str, where: str) -> None:
    """Check that Python code made by :func:`to_python` does no more than compute its R expression.

    formulaic evaluates the code with Python's eval (with builtins), so this is the
    guard that nothing but data columns (the names, which the design checks are
    columns before formulaic runs), literals, arithmetic and calls of the
    functions of :data:`FUNCTIONS` (by their Python names in ``design.CONTEXT``)
    is in it: no attribute, subscript, lambda, comprehension or other call.

    Raises
    ------
    FormulaError
        Naming the code and ``where``; to_python never makes such code, so this is a bug.
    """
    functions = {fn.py for fn in FUNCTIONS.values()} | {f"splines_{fn.py}" for fn in FUNCTIONS.values()}
    placeholder = "__bayesmer_column__"
    try:
        tree = ast.parse(_BACKTICKED.sub(placeholder, code), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"bayesmer made Python code it cannot read for {where}: {code!r} ({exc})") from None
    hex_strings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "r_chr":
            ok = not node.keywords and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _HEX.fullmatch(node.args[0].value) is not None
            hex_strings.add(id(node.args[0]))
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in functions and all(
                k.arg in _PY_KEYWORDS for k in node.keywords)
        elif isinstance(node, ast.keyword):
            ok = node.arg in _PY_KEYWORDS
        elif isinstance(node, ast.Constant):
            ok = type(node.value) in (int, float, bool, type(None)) or id(node) in hex_strings
        else:
            ok = isinstance(node, _PY_NODES)
        if not ok:
            raise FormulaError(f"bayesmer will not evaluate {ast.unparse(node)!r} in {where} "
                               f"(from the Python code {code!r})")


@functools.lru_cache(maxsize=1024)
def to_formulaic(terms: str, logical: frozenset[str] = frozenset()) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A canonical term string (``Formula.fixed``, ``RandomTerm.expr``) in
    formulaic's syntax, with the (Python code, R label) of each factor.

    ``logical`` names the data's logical columns: a bare one is a factor in R
    (``bTRUE``), where formulaic would take it as a 0/1 number.
    """
    codes: dict[str, str] = {}
    out = []
    for piece in by_degree(_split_plus(terms)):
        if piece in ("0", "1"):
            out.append(piece)
            continue
        factors = []
        for f in _split_colon(piece):
            code = factor_code(f)
            node = parse_r(f)
            if isinstance(node, Name) and node.id in logical:
                code = f"r_factor({code})"
            codes.setdefault(code, f)
            factors.append(code)
        out.append(":".join(factors))
    return " + ".join(out), tuple(codes.items())


def _split_top(text: str, sep: str) -> list[str]:
    """Split at top-level ``sep`` (not inside calls, strings or backticks)."""
    parts, depth, start, quote, i = [], 0, 0, None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "`\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif sep == ":" and text.startswith("::", i):
            i += 2  # a namespace, splines::ns
            continue
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _split_colon(label: str) -> list[str]:
    """Split an R term label into its factors' labels."""
    return _split_top(label, ":")


def _split_plus(terms: str) -> list[str]:
    """Split a canonical term string into its term labels."""
    return _split_top(terms, " + ")


@functools.lru_cache(maxsize=1024)
def columns_of(text: str) -> frozenset[str]:
    """The data columns an R expression or term string reads."""
    if text in ("0", "1"):
        return frozenset()
    out: set[str] = set()
    for piece in _split_plus(text):
        if piece in ("0", "1"):
            continue
        for f in _split_colon(piece):
            out |= variables(parse_r(f))
    return frozenset(out)


# --- R expressions evaluated on a data frame ---------------------------------------
#
# A GLMM's response (and each cbind() argument), offset= and weights= are computed
# here, from the parsed R expression, never handed to Python's or pandas' eval: a
# string that comes with data, a model file or a saved fit is data. Only column
# names, literals, R's operators and the functions below are understood.

#: R functions a response, offset or weights expression may call (elementwise, stateless)
VALUE_FUNCTIONS = ("I", "log") + _ELEMENTWISE
_CONSTANTS = {"TRUE": (1.0, "lgl"), "T": (1.0, "lgl"), "FALSE": (0.0, "lgl"), "F": (0.0, "lgl"),
              "NA": (math.nan, "lgl"), "Inf": (math.inf, "num"), "NaN": (math.nan, "num"), "pi": (math.pi, "num")}
_ARITH = ("+", "-", "*", "/", "^", "%%", "%/%")
_COMPARE = ("==", "!=", "<", ">", "<=", ">=")
_LOGIC = ("&", "|")


def check_value(node, where: str) -> None:
    """Check that an R expression is one :func:`evaluate` computes, without data.

    Raises
    ------
    FormulaError
        Naming the operator, function or value that is not supported and ``where``.
    """
    match node:
        case Name() | Num() | Str():
            return
        case Paren(x) | Un("-" | "+" | "!", x):
            check_value(x, where)
            return
        case Bin(op, left, right) if op in _ARITH + _COMPARE + _LOGIC:
            check_value(left, where)
            check_value(right, where)
            return
        case Bin(op, _, _) | Un(op, _):
            raise FormulaError(f"operator {op!r} in {where} is not supported; bayesmer computes "
                               f"{' '.join(_ARITH + _COMPARE + _LOGIC)} and unary - and !")
        case Call(fn, _):
            base = fn.split("::", 1)[1] if "::" in fn and fn.split("::", 1)[0] in _NAMESPACES else fn
            if base not in VALUE_FUNCTIONS:
                raise FormulaError(f"function {fn}() in {where} is not supported: bayesmer computes "
                                   f"{', '.join(VALUE_FUNCTIONS)} here; compute the column in the data frame instead")
            base, spec, bound = _bind(node, where)
            if base == "log" and bound.get("base") is not None and (
                    isinstance(bound["base"], bool) or not isinstance(bound["base"], (int, float))):
                raise FormulaError(f"the base of {deparse(node)} in {where} must be a number")
            check_value(bound[spec.args[0][0]], where)
            return
    raise FormulaError(f"cannot compute {deparse(node)!r} in {where}")  # pragma: no cover


def evaluate(expr, data, where: str, error: type[BayesmerError] = FormulaError):
    """Compute an R expression of a data frame's columns as R does, one value per row.

    Parameters
    ----------
    expr : str or parsed node
        A column name (plain or backticked) or an R expression of columns, e.g.
        ``"size - incidence"`` or ``"log(exposure)"``.
    data : pandas.DataFrame
    where : str
        What the expression is, for messages (``"the response 'y'"``).
    error : BayesmerError subclass
        Raised for what is wrong with the data (an unknown or non-numeric column).

    Returns
    -------
    ndarray of float, shape (len(data),)
        Logical values as 0/1, R's NA as NaN.

    Raises
    ------
    FormulaError
        An expression that is not R's or uses what is not supported (see
        :func:`check_value`).
    error
        An unknown column (naming it and the closest columns) or a value that is
        not numeric.
    """
    import numpy as np

    node = parse_r(expr) if isinstance(expr, str) else expr
    check_value(node, where)
    with np.errstate(all="ignore"):
        value, kind = _compute(node, data, where, error)
    if kind == "chr":
        raise error(f"{where} is not numeric: {deparse(node)!r} gives text")
    value = np.asarray(value, dtype=float)
    if value.ndim != 1 or value.shape[0] != len(data):
        raise error(f"{where} does not give one value per row: {deparse(node)!r} is a single value")
    return value


def _column(name: str, data, where: str, error):
    import difflib

    import numpy as np
    import pandas as pd

    if name not in data.columns:
        if name in _CONSTANTS:
            value, kind = _CONSTANTS[name]
            return np.float64(value), kind
        cols = [str(c) for c in data.columns]
        close = difflib.get_close_matches(name, cols, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise error(f"unknown column {name!r} in {where}{hint} (the data has {cols[:20]}"
                    f"{' ...' if len(cols) > 20 else ''})")
    col = data[name]
    if isinstance(col, pd.DataFrame):
        raise error(f"the data has several columns named {name!r} ({where})")
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=float, na_value=np.nan), "lgl"
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=float, na_value=np.nan), "num"
    if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col.dtype) \
            or col.dtype == object:
        values = col.astype(object).to_numpy()
        return np.array([None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else str(v)
                         for v in values], dtype=object), "chr"
    raise error(f"column {name!r} in {where} has dtype {col.dtype}, which is neither numeric nor text")


def _numeric(v, kind: str, node, where: str, error):
    if kind == "chr":
        raise error(f"{deparse(node)!r} in {where} is text, not a number")
    return v


def _compute(node, data, where: str, error):
    import numpy as np

    match node:
        case Name(id):
            return _column(id, data, where, error)
        case Num(v):
            return np.float64(v), "num"
        case Str(v):
            return np.array(v, dtype=object), "chr"
        case Paren(x) | Un("+", x):
            return _compute(x, data, where, error)
        case Un("-", x):
            v, k = _compute(x, data, where, error)
            return -_numeric(v, k, x, where, error), "num"
        case Un("!", x):
            v, k = _compute(x, data, where, error)
            v = _numeric(v, k, x, where, error)
            return np.where(np.isnan(v), np.nan, v == 0), "lgl"
        case Call():
            base, spec, bound = _bind(node, where)
            arg = bound[spec.args[0][0]]
            v, k = _compute(arg, data, where, error)
            v = _numeric(v, k, arg, where, error)
            if base == "I":
                return v, k
            if base == "log":
                from .rmath import r_log
                return r_log(v, bound.get("base")), "num"
            from .rmath import ELEMENTWISE
            return ELEMENTWISE[base](v), "num"
        case Bin(op, left, right):
            a, ka = _compute(left, data, where, error)
            b, kb = _compute(right, data, where, error)
            if op in _COMPARE:
                return _compare(op, a, ka, b, kb, node, where, error), "lgl"
            a = _numeric(a, ka, left, where, error)
            b = _numeric(b, kb, right, where, error)
            na = np.isnan(a) | np.isnan(b)
            if op == "&":
                return np.where((a == 0) | (b == 0), 0.0, np.where(na, np.nan, 1.0)), "lgl"
            if op == "|":
                return np.where(((a != 0) & ~np.isnan(a)) | ((b != 0) & ~np.isnan(b)), 1.0,
                                np.where(na, np.nan, 0.0)), "lgl"
            # R's %% and %/% floor (the sign of the divisor), as numpy's mod and floor_divide
            f = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "^": np.power,
                 "%%": np.mod, "%/%": np.floor_divide}[op]
            return f(a, b), "num"
    raise FormulaError(f"cannot compute {deparse(node)!r} in {where}")  # pragma: no cover


def _compare(op, a, ka, b, kb, node, where, error):
    import operator

    import numpy as np

    f = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le,
         ">=": operator.ge}[op]
    if (ka == "chr") != (kb == "chr"):
        raise error(f"{deparse(node)!r} in {where} compares text with a number")
    if ka == "chr":
        if op not in ("==", "!="):
            raise error(f"{deparse(node)!r} in {where} orders text, which depends on R's locale; "
                        "compare with == or != instead")
        a, b = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        out = np.array([np.nan if x is None or y is None else float(f(x, y)) for x, y in zip(a.ravel(), b.ravel())])
        return out.reshape(a.shape)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, f(a, b).astype(float))
