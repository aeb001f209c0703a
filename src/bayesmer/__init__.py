"""bayesmer: Bayesian mixed-effects models from lme4 formulas.

One design feeds both estimators: :func:`reml` (exact REML/ML, as lme4) and
:func:`fit` (PyMC's Mixed Model 7 sampled with NUTS), reported side by side.
"""

import warnings as _warnings

# PyTensor warns on import when it cannot link its own BLAS; bayesmer's graphs
# are small per-group algebra that numpy's BLAS serves, so the warning only
# alarms users.
_warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)

# Names are imported on first use (PEP 562): `bayesmer --help` imports the
# package to reach bayesmer.cli, and must not wait for PyMC and numba. Each
# public name -> the submodule that owns it.
_OWNERS = {
    "simulate_clark": "datasets", "simulate_ogorek": "datasets",
    "Design": "design", "DesignError": "design", "ReTerm": "design", "build_design": "design",
    "Formula": "formula", "FormulaError": "formula", "RandomTerm": "formula", "parse_formula": "formula",
    "RemlFit": "lmer", "fit_reml": "lmer", "reml": "lmer",
    "GlmerFit": "glmer_fit", "glmer": "glmer_fit",
    "FamilyFit": "glmmtmb_fit", "glmmtmb": "glmmtmb_fit",
    # after the fit: see BayesFit.hypothesis, .r2, .predictions, .comparisons, .slopes
    "InterpretError": "interpret", "datagrid": "interpret", "parse_hypothesis": "interpret", "anova": "lmer",
    "SimulationError": "simulation", "simulate": "simulation",
    "default_priors": "api", "fit": "api", "load": "api", "prior_sweep": "api",
    "BayesmerError": "errors", "LoadError": "errors", "PredictionError": "errors", "SettingsError": "errors",
    "SaveError": "errors", "SamplingError": "errors", "FitError": "errors",
    "PirlsError": "glmer_fit", "SeparationError": "glmer_fit",
    "Settings": "settings",
    "BuildError": "builder",
    "LKJ": "priors", "Exponential": "priors", "Gamma": "priors", "Beta": "priors", "HalfCauchy": "priors", "HalfNormal": "priors",
    "HalfStudentT": "priors", "Normal": "priors", "PriorError": "priors", "PriorSet": "priors",
    "StudentT": "priors", "parse_prior": "priors",
    "BayesFit": "results",
    "CheckError": "checking", "compare": "checking", "sensitivity": "checking",
}
_SUBMODULES = ("checking", "datasets", "plots")


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    owner = _OWNERS.get(name)
    if owner is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{owner}", __name__), name)
    globals()[name] = value  # once looked up, a plain attribute
    return value


# No public name is also a submodule's name (the Laplace fits live in glmer_fit and
# glmmtmb_fit), so importing a submodule never shadows a function on the package.


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_OWNERS))


__version__ = "0.1.0"

__all__ = [
    "BayesFit",
    "BayesmerError",
    "SaveError",
    "SamplingError",
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
    "Gamma",
    "Beta",
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
