"""Response families with brms's names (bambi's as aliases), for point fits and posteriors.

Each family is a frozen object (:class:`~bayesmer.families.base.ResponseFamily`):
its link and inverse link, variance, the log density of each row and its first
and second derivatives in the linear predictor (observed information), its
distributional parameters with brms's names and unconstrained transforms, and
brms's default priors for them as data. :func:`get_family` finds one by name.
"""

from __future__ import annotations

from .base import Dpar, FamilyError, ResponseFamily
from .beta import beta
from .cumulative import cumulative
from .gamma import Gamma
from .glm import bernoulli, binomial, gaussian, poisson
from .lognormal import lognormal
from .negbinomial import negbinomial
from .student import student
from .zero_inflated_negbinomial import zero_inflated_negbinomial
from .zero_inflated_poisson import zero_inflated_poisson

__all__ = ["Dpar", "FamilyError", "ResponseFamily", "FAMILIES", "ALIASES", "get_family", "family_names"]

#: brms's name -> family
FAMILIES: dict[str, ResponseFamily] = {
    f.name: f
    for f in (negbinomial, zero_inflated_poisson, zero_inflated_negbinomial, student, Gamma, lognormal, beta,
              cumulative, gaussian, bernoulli, binomial, poisson)
}
#: an alias -> brms's name
ALIASES: dict[str, str] = {a: f.name for f in FAMILIES.values() for a in f.aliases}


def family_names() -> list[str]:
    """brms's names of the families, then the aliases.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from bayesmer.families import family_names
    >>> family_names()[:3]
    ['negbinomial', 'zero_inflated_poisson', 'zero_inflated_negbinomial']
    """
    return list(FAMILIES) + sorted(ALIASES)


def get_family(name: str | ResponseFamily) -> ResponseFamily:
    """The family called ``name`` (brms's name or an alias such as bambi's).

    Parameters
    ----------
    name : str or ResponseFamily
        brms's name, an alias (``"negativebinomial"``, ``"nbinom2"``,
        ``"zip"``, ``"zinb"``, ``"t"``, ``"gamma"``, ``"ordinal"``, ...), or
        the name in another case; a family is returned as it is.

    Returns
    -------
    ResponseFamily

    Raises
    ------
    FamilyError
        For an unknown name, listing the valid ones.

    Examples
    --------
    >>> from bayesmer.families import get_family
    >>> get_family("nbinom2").name, get_family("t").name, get_family("ordinal").name
    ('negbinomial', 'student', 'cumulative')
    """
    if isinstance(name, ResponseFamily):
        return name
    if isinstance(name, str):
        if name in FAMILIES:
            return FAMILIES[name]
        if name in ALIASES:
            return FAMILIES[ALIASES[name]]
        low = {k.lower(): v for k, v in {**{n: n for n in FAMILIES}, **ALIASES}.items()}
        if name.lower() in low:
            return FAMILIES[low[name.lower()]]
    aliases = ", ".join(f"{a} ({n})" for a, n in sorted(ALIASES.items()))
    raise FamilyError(f"unknown family {name!r}; the families are {list(FAMILIES)}; aliases: {aliases}")
