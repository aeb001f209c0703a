"""bayesmer: Bayesian mixed-effects models from lme4 formulas.

One design feeds both estimators: :func:`reml` (exact REML/ML, as lme4) and
:func:`fit` (PyMC's Mixed Model 7 sampled with NUTS), reported side by side.
"""

from . import datasets
from .datasets import simulate_clark, simulate_ogorek
from .design import Design, DesignError, ReTerm, build_design
from .formula import Formula, FormulaError, RandomTerm, parse_formula
from .reml import RemlFit, fit_reml, reml
from .simulate import SimulationError, simulate
from .api import fit
from .builder import BuildError
from .priors import (
    LKJ,
    Exponential,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    PriorError,
    PriorSet,
    StudentT,
    parse_prior,
)
from .results import BayesFit

__version__ = "0.1.0"

__all__ = [
    "BayesFit",
    "BuildError",
    "Exponential",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "LKJ",
    "Normal",
    "PriorError",
    "PriorSet",
    "StudentT",
    "fit",
    "parse_prior",
    "Design",
    "DesignError",
    "Formula",
    "FormulaError",
    "RandomTerm",
    "RemlFit",
    "ReTerm",
    "SimulationError",
    "build_design",
    "datasets",
    "fit_reml",
    "parse_formula",
    "reml",
    "simulate",
    "simulate_clark",
    "simulate_ogorek",
]
