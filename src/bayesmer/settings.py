"""The settings of a fit, validated in one place.

:func:`bayesmer.fit`, model files (``[model]`` and ``[sampler]``) and the
command line all check a setting with :func:`check`, so a value is accepted or
refused everywhere with the same message. The valid values of the choices live
here only: adding a backend is adding it to :data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real

from .errors import SettingsError

__all__ = ["draw_seed", "LINKS", "FAMILIES", "METHODS", "STRATEGIES", "SAMPLERS", "BACKENDS", "CHOICES", "SECTION", "Settings", "check"]

METHODS = ("REML", "ML")
STRATEGIES = ("auto", "marginal", "full")
SAMPLERS = ("nutpie", "pymc")
BACKENDS = ("auto", "engine", "pytensor", "numba")
#: the GLM families and their links, the canonical link first (bayesmer.family implements them);
#: kept here, in a module that imports no numerics, so the command line's help needs none
LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}
#: the response families: the Gaussian linear mixed model and family.py's GLM families
FAMILIES = ("gaussian", *LINKS)

CHOICES: dict[str, tuple[str, ...]] = {
    "method": METHODS,
    "strategy": STRATEGIES,
    "sampler": SAMPLERS,
    "backend": BACKENDS,
    "family": FAMILIES,
}
# least value of the integer settings; tune >= 1: NUTS without a single tuning
# step keeps its initial step size, which is not a posterior sample
_LEAST = {"draws": 1, "tune": 1, "chains": 1, "seed": 0}

# the model file's section of each setting
SECTION = {
    "family": "model",
    "link": "model",
    "method": "model",
    "strategy": "model",
    "draws": "sampler",
    "tune": "sampler",
    "chains": "sampler",
    "seed": "sampler",
    "sampler": "sampler",
    "backend": "sampler",
    "target_accept": "sampler",
}


def check(name: str, value):
    """The valid form of setting ``name`` (``method`` upper-cased), or :class:`SettingsError`.

    Raises
    ------
    SettingsError
        ``"tune must be an integer >= 1, got 0"`` and the like; an unknown name.
    """
    if name in _LEAST:
        if name == "seed" and value is None:
            return None
        least = _LEAST[name]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
            raise SettingsError(f"{name} must be an integer >= {least}, got {value!r}")
        return int(value)
    if name == "family" and value not in FAMILIES:
        return _response_family_name(value)
    if name in CHOICES:
        valid = CHOICES[name]
        if name == "method" and isinstance(value, str):
            value = value.upper()
        if value not in valid:
            raise SettingsError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        return value
    if name == "link":
        from .families.base import LINKS as FAMILY_LINKS

        valid = sorted({"identity"} | {link for links in LINKS.values() for link in links} | set(FAMILY_LINKS))
        if value is not None and value not in valid:
            raise SettingsError(f"link must be one of {', '.join(valid)}, got {value!r}")
        return value
    if name == "target_accept":
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
            raise SettingsError(f"target_accept must be a number between 0 and 1 (exclusive), got {value!r}")
        return float(value)
    raise SettingsError(f"unknown setting {name!r}; the settings are {', '.join(SECTION)}")


def _response_family_name(value) -> str:
    """brms's name of a family of :mod:`bayesmer.families` (its registry: the one owner of the names and
    aliases; imported here only when a family beyond :data:`FAMILIES` is asked for)."""
    from .families import FamilyError, get_family

    if not isinstance(value, str):
        raise SettingsError(f"family must be a family's name, got {value!r}")
    try:
        name = get_family(value).name
    except FamilyError as exc:
        raise SettingsError(f"family must be one of {', '.join(FAMILIES)} or a family of bayesmer.families: "
                            f"{exc}") from None
    return {"bernoulli": "binomial"}.get(name, name)


def draw_seed() -> int:
    """A fresh seed from the OS's entropy, in ``[0, 2**32)``, for a fit given ``seed=None``.

    Drawn once and recorded (the fit's settings, the posterior's ``seed``
    attribute), so that any fit can be run again draw for draw.
    """
    import numpy as np

    return int(np.random.SeedSequence().entropy % 2**32)


@dataclass(frozen=True)
class Settings:
    """The validated settings of one fit (defaults of :func:`bayesmer.fit`).

    Attributes
    ----------
    draws, tune, chains : int
        Per chain, all >= 1.
    seed : int or None
        >= 0.
    sampler : {"nutpie", "pymc"}
    strategy : {"auto", "marginal", "full"}
    method : {"REML", "ML"}
    backend : {"auto", "engine", "pytensor", "numba"}
    target_accept : float
        In (0, 1).
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"`` or any family of
        :mod:`bayesmer.families` by brms's name or an alias (kept as brms's name).
    link : str or None
        The family's link (its canonical one when None): binomial ``logit``,
        ``probit``, ``cloglog``; Poisson ``log``; none for the Gaussian.

    Examples
    --------
    >>> import bayesmer
    >>> bayesmer.Settings(draws=500, chains=2).to_dict()["draws"]
    500
    >>> bayesmer.Settings(chains=0)             # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    SettingsError: ...
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = None
    sampler: str = "nutpie"
    strategy: str = "auto"
    method: str = "REML"
    backend: str = "auto"
    target_accept: float = 0.8
    family: str = "gaussian"
    link: str | None = None

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        if self.family == "gaussian":
            if self.link not in (None, "identity"):
                raise SettingsError(f"the gaussian family takes the identity link only, got link={self.link!r}")
        elif self.family not in LINKS:
            from .families import FamilyError, get_family

            try:
                get_family(self.family).with_link(self.link)
            except FamilyError as exc:
                raise SettingsError(str(exc)) from None
        elif self.link is not None and self.link not in LINKS[self.family]:
            raise SettingsError(f"link must be one of {', '.join(LINKS[self.family])} for family "
                                f"{self.family!r}, got {self.link!r}")

    @classmethod
    def from_mapping(cls, values) -> "Settings":
        """Settings from a mapping; unset (None) values keep the defaults, unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise SettingsError(f"unknown setting {key!r}; the settings are {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)
