"""One call from formula to Bayesian fit: design -> REML -> priors -> model -> draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .builder import build_model
from .design import build_design
from .priors import resolve_priors
from .reml import fit_reml
from .results import BayesFit, diagnose
from .sampling import sample

__all__ = ["fit"]


def _count(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def fit(
    formula: str,
    data: pd.DataFrame,
    priors: dict | None = None,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "nutpie",
    strategy: str = "auto",
    progress: bool = True,
    method: str = "REML",
    backend: str = "pytensor",
    target_accept: float = 0.8,
    log_likelihood: bool | None = None,
    sample_posterior_predictive: bool = False,
    sample_prior: bool | int = False,
) -> BayesFit:
    """Fit a Bayesian linear mixed model (Clark's Mixed Model 7) with NUTS.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame
    priors : dict, optional
        Overrides of the data-scaled defaults by slot name, e.g.
        ``{"fixed": "Normal(0, 500)", "sd(Days|Subject)": "HalfNormal(10)"}``;
        see :func:`bayesmer.priors.resolve_priors`.
    draws, tune, chains : int
        Per chain; draws and chains >= 1, tune >= 1.
    seed : int, optional
    sampler : {"nutpie", "pymc"}
    strategy : {"auto", "marginal", "full"}
        ``"marginal"`` integrates the random effects out (one grouping
        factor only), ``"full"`` samples them; ``"auto"`` picks marginal
        when it applies.
    progress : bool
    method : {"REML", "ML"}
        Criterion of the exact fit reported beside the posterior (and whose
        estimates start the chains).
    backend : {"pytensor", "numba"}
        How nutpie evaluates the model; see :func:`bayesmer.sampling.sample`.
    target_accept : float
    log_likelihood, sample_posterior_predictive, sample_prior
        Extra DataTree groups; see :func:`bayesmer.sampling.sample`.

    Returns
    -------
    BayesFit

    Warns
    -----
    UserWarning
        Divergences, R-hat > 1.01 or bulk/tail ESS below 100 per chain.
    """
    _count("draws", draws, 1)
    _count("tune", tune, 1)
    _count("chains", chains, 1)
    design = build_design(formula, data)
    reml = fit_reml(design, method=method)
    prior_set = resolve_priors(design, priors)
    built = build_model(design, prior_set, strategy=strategy, start=reml)
    sampled = sample(
        built,
        design,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        progress=progress,
        backend=backend,
        target_accept=target_accept,
        log_likelihood=log_likelihood,
        sample_posterior_predictive=sample_posterior_predictive,
        sample_prior=sample_prior,
    )
    result = BayesFit(
        design=design,
        reml=reml,
        priors=prior_set,
        built=built,
        idata=sampled.idata,
        timings=sampled.timings,
        strategy=built.strategy,
        settings={
            "draws": draws, "tune": tune, "chains": chains, "seed": seed, "sampler": sampler,
            "strategy": strategy, "method": method, "backend": backend, "target_accept": target_accept,
        },
    )
    diagnose(result, stacklevel=3)
    return result
