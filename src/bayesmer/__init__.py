"""bayesmer: Bayesian mixed-effects models from lme4 formulas.

One design feeds both estimators: :func:`reml` (exact REML/ML, as lme4) and
:func:`fit` (PyMC's Mixed Model 7 sampled with NUTS), reported side by side.
"""

import warnings as _warnings

# PyTensor warns on import when it cannot link its own BLAS; bayesmer's graphs
# are small per-group algebra that numpy's BLAS serves, so the warning only
# alarms users.
_warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)

from . import checking, datasets, plots
from .datasets import simulate_clark, simulate_ogorek
from .design import Design, DesignError, ReTerm, build_design
from .formula import Formula, FormulaError, RandomTerm, parse_formula
from .lmer import RemlFit, fit_reml, reml
from .glmer import GlmerFit, PirlsError, SeparationError, glmer
from .simulation import SimulationError, simulate
from .api import default_priors, fit, load, prior_sweep
from .errors import BayesmerError, FitError, LoadError, PredictionError, SettingsError
from .settings import Settings
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
from .checking import CheckError, compare, sensitivity

__version__ = "0.1.0"

__all__ = [
    "BayesFit",
    "BayesmerError",
    "FitError",
    "PirlsError",
    "SeparationError",
    "LoadError",
    "PredictionError",
    "Settings",
    "SettingsError",
    "default_priors",
    "load",
    "BuildError",
    "CheckError",
    "checking",
    "compare",
    "plots",
    "prior_sweep",
    "sensitivity",
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
