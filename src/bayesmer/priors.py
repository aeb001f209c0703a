"""Priors of the Bayesian mixed model (Clark's "Mixed Model 7").

Each prior is a small frozen dataclass that prints as it is written
(``HalfCauchy(5)``), parses back from that string without ``eval``, makes its
PyMC distribution and evaluates its log density in numpy (for the
``log_prior`` group). :func:`default_priors` scales them to the data and
:func:`resolve_priors` applies a user's overrides by slot name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import ClassVar, Mapping

import numpy as np
from scipy import special, stats

from .design import moments
from .sources import build_design
from .errors import BayesmerError
from .naming import corr_slot, sd_label

__all__ = [
    "PriorError",
    "Prior",
    "Normal",
    "StudentT",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "Exponential",
    "Gamma",
    "Beta",
    "LKJ",
    "BrmsPrior",
    "PriorSet",
    "parse_prior",
    "default_priors",
    "resolve_priors",
    "slots_of",
]


class PriorError(BayesmerError, ValueError):
    """A prior that is malformed, out of range or in the wrong slot."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _real(cls_name: str, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PriorError(f"{cls_name}: {field} must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise PriorError(f"{cls_name}: {field} must be finite, got {value}")
    return value


def _positive(cls_name: str, field: str, value) -> float:
    value = _real(cls_name, field, value)
    if value <= 0:
        raise PriorError(f"{cls_name}: {field} must be positive, got {_fmt(value)}")
    return value


@dataclass(frozen=True)
class Prior:
    """Base class: validation, printing and the slot it may fill."""

    #: "real" (fixed effects), "positive" (scales) or "corr" (correlation matrices)
    support: ClassVar[str] = ""
    _positive_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for f in fields(self):
            check = _positive if f.name in self._positive_fields else _real
            object.__setattr__(self, f.name, check(type(self).__name__, f.name, getattr(self, f.name)))

    def params(self) -> tuple[float, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __str__(self) -> str:
        return f"{type(self).__name__}({', '.join(_fmt(v) for v in self.params())})"

    def spec(self) -> str:
        """Like ``str`` but exact: ``parse_prior(p.spec()) == p``."""
        return f"{type(self).__name__}({', '.join(repr(v) for v in self.params())})"

    def to_dict(self) -> dict:
        return {"family": type(self).__name__, **{f.name: getattr(self, f.name) for f in fields(self)}}

    # subclasses: _pymc(name, params as arrays, dims) and logp(x)
    def logp(self, x):
        """Log density at ``x`` (numpy, elementwise)."""
        raise NotImplementedError

    @classmethod
    def pymc_vector(cls, name: str, priors, dims=None):
        """One PyMC variable with one prior of this family per element.

        Must be called inside a model context; ``priors`` all of type ``cls``.
        """
        cols = np.array([p.params() for p in priors], dtype=float).T
        return cls._pymc(name, *cols, dims=dims)

    def pymc(self, name: str, dims=None):
        """The PyMC variable with this prior (scalar unless ``dims``)."""
        return type(self)._pymc(name, *self.params(), dims=dims)


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma) on a fixed effect.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.Normal(mu=0.0, sigma=10.0)
    Normal(mu=0.0, sigma=10.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (a fixed effect):

    >>> bayesmer.parse_prior("Normal(mu=0.0, sigma=10.0)") == bayesmer.Normal(mu=0.0, sigma=10.0)
    True
    >>> priors = {"Days": "Normal(mu=0.0, sigma=10.0)"}
    """

    mu: float
    sigma: float
    support: ClassVar[str] = "real"
    _positive_fields: ClassVar[tuple[str, ...]] = ("sigma",)

    @staticmethod
    def _pymc(name, mu, sigma, dims=None):
        import pymc as pm

        return pm.Normal(name, mu=mu, sigma=sigma, dims=dims)

    def logp(self, x):
        return stats.norm.logpdf(x, self.mu, self.sigma)


@dataclass(frozen=True)
class StudentT(Prior):
    """StudentT(nu, mu, sigma) on a fixed effect.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.StudentT(nu=3.0, mu=0.0, sigma=10.0)
    StudentT(nu=3.0, mu=0.0, sigma=10.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (the fixed effects):

    >>> bayesmer.parse_prior("StudentT(nu=3.0, mu=0.0, sigma=10.0)") == bayesmer.StudentT(nu=3.0, mu=0.0, sigma=10.0)
    True
    >>> priors = {"b": "StudentT(nu=3.0, mu=0.0, sigma=10.0)"}
    """

    nu: float
    mu: float
    sigma: float
    support: ClassVar[str] = "real"
    _positive_fields: ClassVar[tuple[str, ...]] = ("nu", "sigma")

    @staticmethod
    def _pymc(name, nu, mu, sigma, dims=None):
        import pymc as pm

        return pm.StudentT(name, nu=nu, mu=mu, sigma=sigma, dims=dims)

    def logp(self, x):
        return stats.t.logpdf(x, self.nu, self.mu, self.sigma)


@dataclass(frozen=True)
class HalfCauchy(Prior):
    """HalfCauchy(beta) on a standard deviation; beta is the scale.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.HalfCauchy(beta=5.0)
    HalfCauchy(beta=5.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (a grouping factor's SDs):

    >>> bayesmer.parse_prior("HalfCauchy(beta=5.0)") == bayesmer.HalfCauchy(beta=5.0)
    True
    >>> priors = {"sd(Subject)": "HalfCauchy(beta=5.0)"}
    """

    beta: float
    support: ClassVar[str] = "positive"
    _positive_fields: ClassVar[tuple[str, ...]] = ("beta",)

    @staticmethod
    def _pymc(name, beta, dims=None):
        import pymc as pm

        return pm.HalfCauchy(name, beta=beta, dims=dims)

    def logp(self, x):
        return stats.halfcauchy.logpdf(x, scale=self.beta)


@dataclass(frozen=True)
class HalfNormal(Prior):
    """HalfNormal(sigma) on a standard deviation.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.HalfNormal(sigma=10.0)
    HalfNormal(sigma=10.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (the residual SD):

    >>> bayesmer.parse_prior("HalfNormal(sigma=10.0)") == bayesmer.HalfNormal(sigma=10.0)
    True
    >>> priors = {"sigma": "HalfNormal(sigma=10.0)"}
    """

    sigma: float
    support: ClassVar[str] = "positive"
    _positive_fields: ClassVar[tuple[str, ...]] = ("sigma",)

    @staticmethod
    def _pymc(name, sigma, dims=None):
        import pymc as pm

        return pm.HalfNormal(name, sigma=sigma, dims=dims)

    def logp(self, x):
        return stats.halfnorm.logpdf(x, scale=self.sigma)


@dataclass(frozen=True)
class HalfStudentT(Prior):
    """HalfStudentT(nu, sigma) on a standard deviation.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.HalfStudentT(nu=3.0, sigma=10.0)
    HalfStudentT(nu=3.0, sigma=10.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (every random-effect SD):

    >>> bayesmer.parse_prior("HalfStudentT(nu=3.0, sigma=10.0)") == bayesmer.HalfStudentT(nu=3.0, sigma=10.0)
    True
    >>> priors = {"sd": "HalfStudentT(nu=3.0, sigma=10.0)"}
    """

    nu: float
    sigma: float
    support: ClassVar[str] = "positive"
    _positive_fields: ClassVar[tuple[str, ...]] = ("nu", "sigma")

    @staticmethod
    def _pymc(name, nu, sigma, dims=None):
        import pymc as pm

        return pm.HalfStudentT(name, nu=nu, sigma=sigma, dims=dims)

    def logp(self, x):
        x = np.asarray(x, dtype=float)
        out = np.log(2.0) + stats.t.logpdf(x, self.nu, 0.0, self.sigma)
        return np.where(x >= 0, out, -np.inf)


@dataclass(frozen=True)
class Exponential(Prior):
    """Exponential(lam) on a standard deviation; lam is the rate.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.Exponential(lam=0.1)
    Exponential(lam=0.1)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (the residual SD):

    >>> bayesmer.parse_prior("Exponential(lam=0.1)") == bayesmer.Exponential(lam=0.1)
    True
    >>> priors = {"sigma": "Exponential(lam=0.1)"}
    """

    lam: float
    support: ClassVar[str] = "positive"
    _positive_fields: ClassVar[tuple[str, ...]] = ("lam",)

    @staticmethod
    def _pymc(name, lam, dims=None):
        import pymc as pm

        return pm.Exponential(name, lam=lam, dims=dims)

    def logp(self, x):
        return stats.expon.logpdf(x, scale=1.0 / self.lam)


@dataclass(frozen=True)
class Gamma(Prior):
    """Gamma(alpha, beta) on a positive parameter: shape alpha, rate beta (brms's ``gamma(a, b)``).

    brms's default prior of a negative binomial's or Gamma's ``shape`` and a
    beta family's ``phi`` is ``Gamma(0.01, 0.01)``; of Student's ``nu``,
    ``Gamma(2, 0.1)`` (on nu >= 1).

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.Gamma(alpha=2.0, beta=0.1)
    Gamma(alpha=2.0, beta=0.1)
    >>> bayesmer.parse_prior("gamma(0.01, 0.01)").resolve("shape")
    Gamma(alpha=0.01, beta=0.01)
    >>> priors = {"shape": "Gamma(2, 0.5)"}
    """

    alpha: float
    beta: float
    support: ClassVar[str] = "positive"
    _positive_fields: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    @staticmethod
    def _pymc(name, alpha, beta, dims=None):
        import pymc as pm

        return pm.Gamma(name, alpha=alpha, beta=beta, dims=dims)

    def logp(self, x):
        return stats.gamma.logpdf(x, self.alpha, scale=1.0 / self.beta)


@dataclass(frozen=True)
class Beta(Prior):
    """Beta(alpha, beta) on a probability (the zero-inflation ``zi``; brms's ``beta(a, b)``).

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.Beta(alpha=1.0, beta=1.0)
    Beta(alpha=1.0, beta=1.0)
    >>> priors = {"zi": "Beta(1, 4)"}
    """

    alpha: float
    beta: float
    support: ClassVar[str] = "unit"
    _positive_fields: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    @staticmethod
    def _pymc(name, alpha, beta, dims=None):
        import pymc as pm

        return pm.Beta(name, alpha=alpha, beta=beta, dims=dims)

    def logp(self, x):
        return stats.beta.logpdf(x, self.alpha, self.beta)


@dataclass(frozen=True)
class LKJ(Prior):
    """LKJ(eta) on a correlation matrix; eta = 1 is uniform.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.LKJ(eta=2.0)
    LKJ(eta=2.0)

    The same prior as a string, for one slot of :func:`bayesmer.fit`'s ``priors``
    (a term's correlation matrix):

    >>> bayesmer.parse_prior("LKJ(eta=2.0)") == bayesmer.LKJ(eta=2.0)
    True
    >>> priors = {"corr(Subject)": "LKJ(eta=2.0)"}
    """

    eta: float
    support: ClassVar[str] = "corr"
    _positive_fields: ClassVar[tuple[str, ...]] = ("eta",)

    def pymc(self, name: str, n: int, dims=None):
        """PyMC 6's ``LKJCorr``: a lower Cholesky factor of the correlation matrix."""
        import pymc as pm

        return pm.LKJCorr(name, n=n, eta=self.eta, dims=dims)

    def logp(self, R):
        """Log density of correlation matrices ``R`` (..., k, k)."""
        R = np.asarray(R, dtype=float)
        k = R.shape[-1]
        i = np.arange(1, k)
        const = (k - 1) * special.gammaln(self.eta + 0.5 * (k - 1)) - np.sum(
            0.5 * i * np.log(np.pi) + special.gammaln(self.eta + 0.5 * (k - 1 - i))
        )
        _, logdet = np.linalg.slogdet(R)
        return const + (self.eta - 1.0) * logdet


FAMILIES: dict[str, type[Prior]] = {
    c.__name__: c for c in (Normal, StudentT, HalfCauchy, HalfNormal, HalfStudentT, Exponential, Gamma, Beta, LKJ)
}

# brms's (Stan's) lower-case spellings: parameter names, in order
BRMS_FAMILIES: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "cauchy": ("mu", "sigma"),
    "exponential": ("lam",),
    "gamma": ("alpha", "beta"),
    "beta": ("alpha", "beta"),
    "lkj": ("eta",),
    "lkj_corr_cholesky": ("eta",),
}


@dataclass(frozen=True)
class BrmsPrior(Prior):
    """A prior in brms's spelling, ``normal(0, 10)``, made concrete by the slot it fills.

    As brms does, a location-scale prior on a standard deviation is its half
    (``normal(0, 10)`` -> ``HalfNormal(10)``, ``student_t(3, 0, 10)`` ->
    ``HalfStudentT(3, 10)``, ``cauchy(0, 5)`` -> ``HalfCauchy(5)``, location 0
    only); on a fixed effect ``cauchy(m, s)`` is ``StudentT(1, m, s)``;
    ``exponential(r)`` is ``Exponential(r)``, ``lkj(eta)`` ``LKJ(eta)``.

    Examples
    --------
    >>> parse_prior("student_t(3, 0, 10)").resolve("sd")
    HalfStudentT(nu=3.0, sigma=10.0)
    """

    family: str
    args: tuple
    support: ClassVar[str] = "brms"

    def __post_init__(self):
        names = BRMS_FAMILIES.get(self.family)
        if names is None:
            raise PriorError(f"unknown brms prior family {self.family!r}; known: {', '.join(BRMS_FAMILIES)}")
        if len(self.args) != len(names):
            raise PriorError(f"{self.family} takes {len(names)} parameter(s) ({', '.join(names)}); got {self}")
        object.__setattr__(self, "args", tuple(_real(self.family, n, v) for n, v in zip(names, self.args)))

    def params(self) -> tuple[float, ...]:
        return self.args

    def __str__(self) -> str:
        return f"{self.family}({', '.join(_fmt(v) for v in self.args)})"

    def spec(self) -> str:
        return f"{self.family}({', '.join(repr(v) for v in self.args)})"

    def to_dict(self) -> dict:
        return {"family": self.family, **dict(zip(BRMS_FAMILIES[self.family], self.args))}

    def resolve(self, slot: str) -> Prior:
        """The bayesmer prior for a slot: ``"fixed"``, ``"sd"``, ``"sigma"`` or ``"corr"``."""
        f, a = self.family, self.args
        support = _SLOT_SUPPORT[slot]
        if f in ("lkj", "lkj_corr_cholesky"):
            return LKJ(*a) if support == "corr" else self._refuse(slot)
        if support == "real":
            if f == "normal":
                return Normal(*a)
            if f == "student_t":
                return StudentT(*a)
            if f == "cauchy":
                return StudentT(1.0, *a)
            return self._refuse(slot)
        if support == "positive":
            if f == "exponential":
                return Exponential(*a)
            if f in ("normal", "student_t", "cauchy"):
                if a[-2] != 0:
                    raise PriorError(f"{self} on {slot}: bayesmer's half-distributions start at 0; brms's "
                                     f"truncated {f} with location {_fmt(a[-2])} has no counterpart")
                return {"normal": HalfNormal, "cauchy": HalfCauchy}[f](a[-1]) if f != "student_t" else (
                    HalfStudentT(a[0], a[2]))
            if f == "gamma":
                if slot in ("sd", "sigma"):
                    raise PriorError(_NO_GAMMA.format(prior=self, slot=slot))
                return Gamma(*a)
        if support == "unit" and f == "beta":
            return Beta(*a)
        return self._refuse(slot)

    def _refuse(self, slot):
        raise PriorError(f"{self} cannot be the prior of {slot}: it needs {_SLOT_WORDS[slot]}")

_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$", re.S)
_KW = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")


def parse_prior(text: str | Prior) -> Prior:
    """Parse ``"HalfCauchy(5)"``, ``"Normal(0, sigma=10)"`` and the like.

    Numbers only, positional or by keyword; nothing is evaluated. brms's
    lower-case spellings (``normal(0, 10)``, ``student_t(3, 0, 10)``,
    ``cauchy(0, 5)``, ``exponential(1)``, ``lkj(2)``) give a
    :class:`BrmsPrior`, made concrete by the slot it is given to.

    Parameters
    ----------
    text : str or Prior
        A prior object is returned unchanged.

    Returns
    -------
    Prior
        One of :class:`Normal`, :class:`StudentT`, :class:`HalfCauchy`,
        :class:`HalfNormal`, :class:`HalfStudentT`, :class:`Exponential`,
        :class:`LKJ`.

    Raises
    ------
    PriorError
        For an unknown family, a malformed string, a wrong number of
        parameters or an out-of-range value.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.parse_prior("Normal(0, sigma=10)")
    Normal(mu=0.0, sigma=10.0)
    >>> print(bayesmer.parse_prior("HalfCauchy(5)"))
    HalfCauchy(5)
    """
    if isinstance(text, Prior):
        return text
    if not isinstance(text, str):
        raise PriorError(f"a prior must be a prior object or a string like 'HalfCauchy(5)', not {text!r}")
    m = _CALL.match(text)
    if m is None:
        raise PriorError(f"cannot parse prior {text!r}: expected Family(number, ...), e.g. 'Normal(0, 10)'")
    family, body = m.groups()
    cls = FAMILIES.get(family)
    if cls is None and family in BRMS_FAMILIES:
        try:
            values = [float(v) for v in body.split(",")] if body.strip() else []
        except ValueError:
            raise PriorError(f"cannot parse prior {text!r}: brms's spelling takes numbers, by position") from None
        return BrmsPrior(family, tuple(values))
    if cls is None:
        raise PriorError(f"unknown prior family {family!r} in {text!r}; known: {', '.join(FAMILIES)}, and brms's "
                         f"{', '.join(BRMS_FAMILIES)}")
    names = [f.name for f in fields(cls)]
    args: list[float] = []
    kwargs: dict[str, float] = {}
    pieces = [p for p in body.split(",")] if body.strip() else []
    for piece in pieces:
        kw = _KW.match(piece)
        raw = kw.group(2) if kw else piece.strip()
        try:
            value = float(raw)
        except ValueError:
            raise PriorError(f"cannot parse prior {text!r}: {raw.strip()!r} is not a number") from None
        if kw:
            if kw.group(1) not in names:
                raise PriorError(f"{family} has no parameter {kw.group(1)!r}; its parameters are {names}")
            kwargs[kw.group(1)] = value
        elif kwargs:
            raise PriorError(f"cannot parse prior {text!r}: positional value after a keyword")
        else:
            args.append(value)
    given = dict(zip(names, args))
    if len(args) > len(names) or set(given) & set(kwargs) or len(given) + len(kwargs) != len(names):
        raise PriorError(f"{family} takes {len(names)} parameter(s) ({', '.join(names)}); got {text!r}")
    return cls(**given, **kwargs)


# the families' dpars (bayesmer.families) by brms's class: thresholds real, zi a probability
_SLOT_SUPPORT = {"fixed": "real", "sd": "positive", "sigma": "positive", "corr": "corr", "shape": "positive",
                 "phi": "positive", "nu": "positive", "zi": "unit", "Intercept": "real"}
_SLOT_WORDS = {
    "shape": "a positive parameter (Gamma, HalfNormal, HalfStudentT, HalfCauchy or Exponential)",
    "phi": "a positive parameter (Gamma, HalfNormal, HalfStudentT, HalfCauchy or Exponential)",
    "nu": "a positive parameter (Gamma, HalfNormal, HalfStudentT, HalfCauchy or Exponential)",
    "zi": "a probability (Beta)",
    "Intercept": "the thresholds (Normal or StudentT)",
    "fixed": "a fixed effect (Normal or StudentT)",
    "sd": "a standard deviation (HalfCauchy, HalfNormal, HalfStudentT or Exponential)",
    "sigma": "a standard deviation (HalfCauchy, HalfNormal, HalfStudentT or Exponential)",
    "corr": "a correlation matrix (LKJ)",
}


_NO_GAMMA = ("{prior} on {slot}: bayesmer has no Gamma prior for a standard deviation (Gamma is for the family "
             "parameters shape, phi and nu, as brms uses it); use HalfNormal, HalfStudentT, HalfCauchy or Exponential")


def _check_slot(prior: Prior, cls: str, where: str) -> Prior:
    if isinstance(prior, BrmsPrior):
        try:
            return prior.resolve(cls)
        except PriorError as exc:
            raise PriorError(f"{where}: {exc}") from None
    if prior.support != _SLOT_SUPPORT[cls]:
        raise PriorError(f"{prior} cannot be the prior of {where}: it needs {_SLOT_WORDS[cls]}")
    if isinstance(prior, Gamma) and cls in ("sd", "sigma"):
        raise PriorError(_NO_GAMMA.format(prior=prior, slot=where))
    return prior


@dataclass(frozen=True)
class PriorSet:
    """All priors of one model, by slot.

    Attributes
    ----------
    fixed : tuple of (name, Prior)
        One per fixed effect, in the design's order.
    sigma : Prior or None
        Residual standard deviation; None for a family without one (binomial, Poisson).
    sd : tuple of (term name, tuple of (column, Prior))
        One per column of each random-effect term.
    corr : tuple of (term name, LKJ)
        One per term with more than one column.
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"`` or a family of
        :mod:`bayesmer.families`: whose scale the priors are on.
    dpars : tuple of (name, Prior)
        The family's own parameters by brms's class name (``shape``, ``nu``,
        ``phi``, ``zi``, ``sigma``; ``Intercept``: every threshold of
        ``cumulative``), on their natural scale.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> ps = bayesmer.default_priors("Reaction ~ Days + (Days | Subject)", sleep)
    >>> [name for name, _ in ps.fixed]
    ['(Intercept)', 'Days']
    >>> sorted(ps.to_dict())[:2]
    ['(Intercept)', 'Days']
    """

    fixed: tuple[tuple[str, Prior], ...]
    sigma: Prior | None
    sd: tuple[tuple[str, tuple[tuple[str, Prior], ...]], ...]
    corr: tuple[tuple[str, LKJ], ...]
    family: str = "gaussian"
    dpars: tuple[tuple[str, Prior], ...] = ()

    def dpar_prior(self, name: str) -> Prior:
        """The prior of the family parameter ``name`` (brms's class name)."""
        return dict(self.dpars)[name]

    def fixed_prior(self, name: str) -> Prior:
        return dict(self.fixed)[name]

    def sd_priors(self, term: str) -> tuple[Prior, ...]:
        return tuple(p for _, p in dict(self.sd)[term])

    def corr_prior(self, term: str) -> LKJ | None:
        return dict(self.corr).get(term)

    def rows(self, exact: bool = False) -> list[tuple[str, str, str]]:
        """(class, slot name, prior) rows, the slot names :func:`resolve_priors` accepts."""
        show = (lambda p: p.spec()) if exact else str
        out = [("fixed", name, show(p)) for name, p in self.fixed]
        for term, cols in self.sd:
            out += [("sd", sd_label(col, term), show(p)) for col, p in cols]
        out += [("corr", corr_slot(term), show(p)) for term, p in self.corr]
        if self.sigma is not None:
            out.append(("sigma", "sigma", show(self.sigma)))
        out += [(name, name, show(p)) for name, p in self.dpars]
        return out

    def to_dict(self) -> dict[str, str]:
        """``{slot name: exact prior string}``; :func:`resolve_priors` takes it back unchanged."""
        return {name: prior for _, name, prior in self.rows(exact=True)}

    def table(self):
        """The priors as a DataFrame: class, brms class, slot name (what ``priors=`` takes) and prior."""
        import pandas as pd

        dp = {n for n, _ in self.dpars}
        rows = [(c, c if n in dp and c == n else _brms_class(c, n), n, p) for c, n, p in self.rows()]
        return pd.DataFrame(rows, columns=["class", "brms", "parameter", "prior"])

    @property
    def integrates_beta(self) -> bool:
        """Whether the fixed effects can be integrated out: a Gaussian model, every fixed-effect prior Normal."""
        return self.family in ("gaussian", "lognormal") and all(isinstance(p, Normal) for _, p in self.fixed)

    def beta_note(self) -> str:
        """How the marginal model treats the fixed effects under these priors, in one line."""
        if not self.fixed:
            return "fixed effects: none"
        if self.family not in ("gaussian", "lognormal"):
            return f"fixed effects: sampled by NUTS with the random effects ({self.family} family, link scale)"
        if self.integrates_beta:
            return ("fixed effects: integrated out exactly (every prior Normal) and drawn after sampling "
                    "from their Gaussian conditional")
        other = sorted({f"{type(p).__name__} on {name}" for name, p in self.fixed if not isinstance(p, Normal)})
        return (f"fixed effects: sampled by NUTS, not integrated out ({', '.join(other)}: only Normal priors "
                "integrate out exactly)")

    def __str__(self) -> str:
        t = self.table()
        widths = [max(len(c), *(len(str(v)) for v in t[c])) for c in t.columns]
        lines = ["  ".join(c.ljust(w) for c, w in zip(t.columns, widths)).rstrip()]
        lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in t.itertuples(index=False)]
        lines.append(self.beta_note())
        return "\n".join(lines)


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.shape[0] > 1 else 0.0


def default_priors(design, data=None, family=None) -> PriorSet:
    """Weakly informative priors scaled to the data (Mixed Model 7), before any fit.

    ``bayesmer.default_priors("Reaction ~ Days + (Days | Subject)", df)``
    prints every prior :func:`bayesmer.fit` sets, by the slot name that
    overrides it and its brms class (brms's ``default_prior``).

    Parameters
    ----------
    design : Design or str
        A design, or a formula (then ``data`` is needed).
    data : DataFrame, optional
    family : Family, ResponseFamily or str, optional
        A binomial, Poisson or :mod:`bayesmer.families` family puts the
        priors on the link scale (below).

    Gaussian, with ``s_y = sd(y)``:

    * a fixed slope on column ``x_j``: ``Normal(0, 2.5 s_y / sd(x_j))``, i.e. a
      one-sd change in ``x_j`` moves y by a few sd of y at most;
    * the intercept: ``Normal(mean(y), s)`` with
      ``s^2 = (2.5 s_y)^2 + sum_j (2.5 s_y mean(x_j) / sd(x_j))^2``. The
      intercept of an uncentered X is the value at x = 0, which is
      ``mean(y) - sum_j beta_j mean(x_j)``; its scale therefore adds the prior
      variance the slopes carry to x = 0 (bambi does the same);
    * a constant column that is not the intercept: scale ``2.5 s_y / |c|``;
    * residual SD: ``HalfCauchy(s_y)``;
    * SD of a random-effect column ``z``: ``HalfCauchy(s_y)`` for a constant
      column (the intercept), ``HalfCauchy(s_y / sd(z))`` otherwise;
    * each term with several columns: ``LKJ(2)`` on its correlation matrix,
      mildly favouring small correlations.

    Binomial and Poisson (the link scale's unit in place of ``s_y``, as
    rstanarm's defaults): slopes ``Normal(0, 2.5 / sd(x_j))``; the intercept
    ``Normal(g(ȳ), s)`` with ``s² = 2.5² + Σ_j (2.5 mean(x_j)/sd(x_j))²`` and ȳ
    the mean response (the trial-weighted proportion for the binomial, the
    mean count for the Poisson, less the mean offset on the log scale),
    clipped to (0.01, 0.99) or to at least 0.01; SDs ``HalfCauchy(1)`` on an
    intercept column and ``HalfCauchy(1 / sd(z))`` otherwise; ``LKJ(2)``; no
    residual SD.

    A family of :mod:`bayesmer.families`: the fixed effects and SDs as for the
    binomial and Poisson (the link scale's unit; for an identity link,
    ``student``, the data's as for the Gaussian), the intercept centred at the
    link of the mean response (``cumulative`` has none: its thresholds stand
    for it); the family's own parameters get brms 2.18's defaults, overridden
    by brms's class names in ``priors=``:

    * ``shape`` (negbinomial, zero-inflated NB, Gamma) and ``phi`` (beta):
      ``Gamma(0.01, 0.01)`` (brms's ``gamma(0.01, 0.01)``; rate parameterised);
    * ``nu`` (student): ``Gamma(2, 0.1)`` on nu >= 1;
    * ``zi`` (zero-inflated): ``Beta(1, 1)``;
    * ``sigma`` (student, lognormal): ``HalfStudentT(3, s)``, ``s = max(2.5,
      mad(y))`` (lognormal: of log y; lognormal's other priors are the
      Gaussian model's of log y);
    * ``Intercept`` (cumulative's thresholds, each): ``StudentT(3, 0, 2.5)``.

    Returns
    -------
    PriorSet
        Prints as a table (class, brms name, slot, prior).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> priors = bayesmer.default_priors("Reaction ~ Days + (Days | Subject)", sleep)
    >>> str(priors.corr_prior("Subject"))
    'LKJ(2)'
    >>> print(priors)                                   # doctest: +SKIP
    """
    from .family import get_family

    rfam = response_family(family)
    if not hasattr(design, "y"):  # a formula
        if data is None:
            raise PriorError("default_priors(formula, data): the data are needed to scale the priors")
        if rfam is not None:
            from .familydata import family_data

            design = family_data(design, data, rfam)
            rfam = design.family
        elif family is not None and get_family(family).name != "gaussian":
            from .glmm_design import glmm_design

            design = glmm_design(design, data, get_family(family))
        else:
            design = build_design(design, data)
    elif rfam is not None and getattr(design, "family", None) is not None:
        rfam = design.family  # bound to the data (cumulative's categories)
    fam = None if family is None or rfam is not None else get_family(family)
    glm = fam is not None and fam.name != "gaussian"
    m = moments(design)  # from the rows, or from the sums of data not in memory
    if rfam is not None and rfam.name != "lognormal":
        sy, my = _family_scale(design, rfam, m)
    elif glm:
        sy = 1.0
        my = _link_centre(design, fam)
    else:
        sy = m.y_sd
        if not sy > 0:
            sy = max(abs(m.y_mean), 1.0)
        my = m.y_mean
    scales, means, const = [], [], []
    for j in range(design.p):
        s = float(m.x_sd[j])
        is_const = not s > 1e-12 * max(1.0, float(m.x_maxabs[j]))
        const.append(is_const)
        means.append(float(m.x_mean[j]))
        scales.append(2.5 * sy / (abs(float(m.x_first[j])) if is_const else s))
    fixed = []
    intercept = design.fixed_names.index("(Intercept)") if "(Intercept)" in design.fixed_names else None
    for j, name in enumerate(design.fixed_names):
        if j == intercept:
            shift = sum((scales[i] * means[i]) ** 2 for i in range(len(scales)) if i != j and not const[i])
            fixed.append((name, Normal(my, math.sqrt((2.5 * sy) ** 2 + shift))))
        else:
            fixed.append((name, Normal(0.0, scales[j])))
    sd = []
    corr = []
    for ti, term in enumerate(design.terms):
        cols = []
        for c, col in enumerate(term.terms):
            s = float(m.z_sd[ti][c])
            if s > 1e-12 * max(1.0, float(m.z_maxabs[ti][c])):
                r = sy / s
            else:
                r = sy / max(abs(float(m.z_first[ti][c])), 1e-12)
            cols.append((col, HalfCauchy(r)))
        sd.append((term.name, tuple(cols)))
        if term.k > 1:
            corr.append((term.name, LKJ(2.0)))
    if rfam is not None:
        if rfam.name == "lognormal":  # the Gaussian model of log y: its priors, brms's sigma
            return PriorSet(tuple(fixed), _brms_sigma(design.y), tuple(sd), tuple(corr), "lognormal")
        return PriorSet(tuple(fixed), None, tuple(sd), tuple(corr), rfam.name, _dpar_defaults(design, rfam))
    return PriorSet(tuple(fixed), None if glm else HalfCauchy(sy), tuple(sd), tuple(corr), fam.name if glm else "gaussian")


_GLM_NAMES = ("gaussian", "binomial", "bernoulli", "poisson")


def response_family(family):
    """The :mod:`bayesmer.families` family ``family`` names, or None for lme4's gaussian/binomial/poisson."""
    from .families import ResponseFamily, get_family as get_response_family

    if family is None:
        return None
    if isinstance(family, ResponseFamily):
        return None if family.name in _GLM_NAMES else family
    if not isinstance(family, str):
        return None  # a bayesmer.family Family
    fam = get_response_family(family)
    return None if fam.name in _GLM_NAMES else fam


def _brms_scale(y) -> float:
    """brms's scale of a default sigma prior: max(2.5, mad(y) rounded to 1 decimal)."""
    y = np.asarray(y, dtype=float)
    mad = 1.4826 * float(np.median(np.abs(y - np.median(y)))) if len(y) else 0.0
    return max(2.5, round(mad, 1))


def _brms_sigma(y) -> Prior:
    """brms's default prior of sigma: student_t(3, 0, scale), half (:func:`_brms_scale`)."""
    return HalfStudentT(3.0, _brms_scale(y))


def _family_scale(data, fam, m) -> tuple[float, float]:
    """The fixed effects' unit and intercept centre for a family: the data's for an identity link, else the link's."""
    if fam.link == "identity":
        sy = m.y_sd if m.y_sd > 0 else max(abs(m.y_mean), 1.0)
        return sy, m.y_mean
    off = getattr(data, "offset", None)
    return 1.0, fam.init_eta(np.asarray(data.y, dtype=float)) - (float(np.mean(off)) if off is not None else 0.0)


def _dpar_defaults(data, fam) -> tuple:
    """brms's default priors of a family's dpars (brms 2.18, ``Dpar.prior``)."""
    out = []
    for d in fam.dpars:
        if d.name == "sigma":
            out.append((d.name, _brms_sigma(data.y)))
        else:
            out.append((d.name, parse_prior(d.prior).resolve(d.name)))
    return tuple(out)


def _link_centre(design, fam) -> float:
    """The intercept prior's centre for a GLMM: the link of the mean response (see :func:`default_priors`)."""
    y = np.asarray(design.y, dtype=float)
    wt = getattr(design, "weights", None)
    wt = np.ones_like(y) if wt is None else np.asarray(wt, dtype=float)
    off = getattr(design, "offset", None)
    if fam.name == "binomial":
        m = float(np.sum(wt * y) / np.sum(wt)) if np.sum(wt) > 0 else 0.5
        return float(fam.link.linkfun(np.clip(m, 0.01, 0.99)))
    m = max(float(np.mean(y)), 0.01)
    return float(fam.link.linkfun(m)) - (float(np.mean(off)) if off is not None else 0.0)


# brms's classes beside bayesmer's: "b" is every fixed effect but the intercept,
# "Intercept" the intercept alone, "cor" the same as "corr"
CLASSES = ("fixed", "b", "sd", "sigma", "corr", "cor")


def _brms_class(cls: str, name: str) -> str:
    if cls == "fixed":
        return "Intercept" if name == "(Intercept)" else "b"
    return {"corr": "cor"}.get(cls, cls)


def resolve_priors(design, overrides: Mapping[str, Prior | str] | None = None, family=None) -> PriorSet:
    """The default priors with ``overrides`` applied.

    Parameters
    ----------
    design : Design
    overrides : dict, optional
        Keys name a class of slots, a group's slots or one slot; values are
        priors or strings. From broad to narrow, a narrower key always winning
        whatever the dict's order:

        1. classes ``"fixed"`` (every fixed effect), ``"sd"``, ``"sigma"``,
           ``"corr"`` (brms: ``"cor"``);
        2. brms's ``"b"``: every fixed effect but the intercept;
        3. one grouping factor's (or term's) slots: ``"sd(Subject)"``,
           ``"corr(Subject)"`` (brms: ``"cor(Subject)"``);
        4. one slot: a fixed effect by its lme4 name (``"Days"``,
           ``"(Intercept)"``, brms: ``"Intercept"``), ``"sd(Days|Subject)"``
           (one column of one term, the term by its unique name).

    Raises
    ------
    PriorError
        For an unknown name (listing the valid ones), a prior of the wrong
        family for its slot, or an unparsable prior.
    """
    base = default_priors(design, family=family)
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        raise PriorError(f"priors must be a dict of name -> prior, not {type(overrides).__name__}")
    fixed = dict(base.fixed)
    sigma = base.sigma
    dpars = dict(base.dpars)
    sd = {term: dict(cols) for term, cols in base.sd}
    corr = dict(base.corr)
    terms = {t.name: t for t in design.terms}
    groups = sorted({t.group for t in design.terms} | set(terms))
    sd_slot = re.compile(r"^sd\((.+)\|(.+)\)$")
    group_slot = re.compile(r"^(sd|corr|cor)\(([^|]+)\)$")

    def group_terms(kind: str, g: str) -> list[str]:
        names = [t for t in terms if t == g or terms[t].group == g]
        return [t for t in names if kind == "sd" or t in corr]

    def level(key) -> int | None:
        if not isinstance(key, str):
            return None
        if key in dpars:
            return 0
        if key == "sigma" and sigma is None:
            return None
        if key in ("fixed", "sd", "sigma", "corr", "cor"):
            return 0
        if key == "b":
            return 1
        if (m := group_slot.match(key)) and group_terms(m.group(1), m.group(2)):
            return 2 if m.group(2) not in corr or m.group(1) == "sd" else 3
        if key in fixed or (key == "Intercept" and "(Intercept)" in fixed):
            return 3
        if (m := sd_slot.match(key)) and m.group(2) in sd and m.group(1) in sd[m.group(2)]:
            return 3
        return None

    valid = [c for c in CLASSES if c != "sigma" or sigma is not None] + ["Intercept"] * ("(Intercept)" in fixed) + [n for _, n, _ in base.rows() if n != "sigma"]
    valid += [f"sd({g})" for g in groups] + [f"cor({g})" for g in groups if group_terms("corr", g)]
    valid += list(dpars)
    valid = list(dict.fromkeys(valid))
    levels = {}
    family_params = ("shape", "nu", "phi", "zi", "sigma", "Intercept", "zoi", "coi", "hu", "alpha", "disc")
    for key in overrides:
        levels[key] = level(key)
        if levels[key] is None and key in family_params and base.family not in ("gaussian", "binomial", "poisson"):
            own = list(dpars) or "none"
            raise PriorError(f"{key!r} is not a parameter of the {base.family} family (an unknown family "
                             f"parameter in priors); its family parameters are {own}")
        if key == "sigma" and sigma is None and key not in dpars:
            raise PriorError("this family has no residual standard deviation: 'sigma' takes no prior")
        if levels[key] is None:
            raise PriorError(f"unknown prior name {key!r}; valid names: {', '.join(map(str, valid))}")

    def parsed(key):
        try:
            return parse_prior(overrides[key])
        except PriorError as exc:
            raise PriorError(f"prior for {key!r}: {exc}") from None

    for key in sorted(overrides, key=lambda k: levels[k]):
        prior = parsed(key)
        if key in dpars:
            dpars[key] = _check_slot(prior, key, f"the {base.family} family's {key!r}")
        elif key in ("fixed", "b"):
            prior = _check_slot(prior, "fixed", f"class {key!r}")
            fixed = {n: (prior if key == "fixed" or n != "(Intercept)" else p) for n, p in fixed.items()}
        elif key == "sd":
            prior = _check_slot(prior, "sd", "class 'sd'")
            sd = {t: {c: prior for c in cols} for t, cols in sd.items()}
        elif key == "sigma":
            sigma = _check_slot(prior, "sigma", "class 'sigma'")
        elif key in ("corr", "cor"):
            prior = _check_slot(prior, "corr", f"class {key!r}")
            corr = {t: prior for t in corr}
        elif key in fixed or key == "Intercept":
            name = "(Intercept)" if key == "Intercept" else key
            fixed[name] = _check_slot(prior, "fixed", f"fixed effect {name!r}")
        elif m := sd_slot.match(key):
            sd[m.group(2)][m.group(1)] = _check_slot(prior, "sd", key)
        else:
            m = group_slot.match(key)
            kind = "sd" if m.group(1) == "sd" else "corr"
            prior = _check_slot(prior, kind, key)
            for t in group_terms(kind, m.group(2)):
                if kind == "sd":
                    sd[t] = {c: prior for c in sd[t]}
                else:
                    corr[t] = prior
    return PriorSet(
        tuple(fixed.items()),
        sigma,
        tuple((t, tuple(cols.items())) for t, cols in sd.items()),
        tuple(corr.items()),
        base.family,
        tuple(dpars.items()),
    )


def slots_of(design, key: str, family=None) -> list[str]:
    """The slot names (as :meth:`PriorSet.rows` gives them) that the override key ``key`` sets.

    ``"b"`` gives every fixed effect but the intercept, ``"sd(Subject)"`` the
    SDs of Subject's terms, and so on: the answer comes from
    :func:`resolve_priors` itself, so it cannot disagree with it.

    Raises
    ------
    PriorError
        For a name :func:`resolve_priors` does not accept.
    """
    base = dict((n, p) for _, n, p in default_priors(design, family=family).rows(exact=True))
    last = None
    # a probe of each support: the one the key's slots accept marks them
    for probe in (Normal(123456.5, 1.0), HalfNormal(123456.5), LKJ(123456.5)):
        try:
            got = dict((n, p) for _, n, p in resolve_priors(design, {key: probe}, family=family).rows(exact=True))
        except PriorError as exc:
            if "unknown prior name" in str(exc):
                raise
            last = exc
            continue
        return [n for n in got if got[n] != base[n]]
    raise last
