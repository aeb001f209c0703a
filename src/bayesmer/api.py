"""One call from formula to Bayesian fit: design -> REML -> priors -> model -> draws."""

from __future__ import annotations

import itertools

import pandas as pd

from .builder import build_model
from .checking import CheckError, SweepResult
from .design import build_design
from .io import read
from .priors import PriorError, default_priors, parse_prior, resolve_priors, slots_of
from .lmer import fit_reml
from .results import BayesFit, diagnose
from .sampling import sample
from .settings import Settings

__all__ = ["fit", "load", "prior_sweep", "default_priors"]


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
    backend: str = "auto",
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
    data : DataFrame, or data not in memory
        A path or glob of Parquet files (read lazily), a Dask, Polars or Spark
        DataFrame, a Polars LazyFrame or a DuckDB relation: the sufficient
        statistics are computed where the data live, in two passes
        (:mod:`bayesmer.sources`); the per-row groups are then off unless
        asked for, and computed one chunk of rows at a time.
    priors : dict, optional
        Overrides of the data-scaled defaults by slot name, bayesmer's or
        brms's, e.g. ``{"b": "Normal(0, 50)", "sd(Subject)": "HalfNormal(10)"}``;
        :func:`bayesmer.default_priors` lists them, see
        :func:`bayesmer.priors.resolve_priors`.
    draws, tune, chains, seed, sampler, strategy, method, backend, target_accept
        Checked by :class:`bayesmer.settings.Settings` (the same checks as
        model files and the command line): draws, tune, chains >= 1; seed >=
        0; sampler in ``settings.SAMPLERS``; strategy ``"auto"``,
        ``"marginal"`` (random effects integrated out, one grouping factor) or
        ``"full"``; method ``"REML"`` or ``"ML"`` (the exact fit reported
        beside the posterior, whose estimates start the chains); backend: how
        nutpie evaluates the model (see :func:`bayesmer.sampling.sample`);
        target_accept in (0, 1).
    progress : bool
    log_likelihood, sample_posterior_predictive, sample_prior
        Extra DataTree groups; see :func:`bayesmer.sampling.sample`.

    Returns
    -------
    BayesFit

    Raises
    ------
    SettingsError
        A setting out of range, naming it.

    Warns
    -----
    UserWarning
        Divergences, R-hat > 1.01 or bulk/tail ESS below 100 per chain.
    """
    settings = Settings(
        draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, strategy=strategy,
        method=method, backend=backend, target_accept=target_accept,
    )
    design = build_design(formula, data)
    reml = fit_reml(design, method=settings.method)
    prior_set = resolve_priors(design, priors)
    built = build_model(design, prior_set, strategy=settings.strategy, start=reml)
    sampled = sample(
        built,
        design,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        seed=settings.seed,
        sampler=settings.sampler,
        progress=progress,
        backend=settings.backend,
        target_accept=settings.target_accept,
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
        settings=settings.to_dict(),
    )
    diagnose(result, stacklevel=3)
    return result


def load(path) -> BayesFit:
    """Read a fit written by :meth:`BayesFit.save` (or ``bayesmer run`` / ``fit --out``).

    The draws are the file's; the design, the REML twin (exact, milliseconds)
    and the PyMC model are rebuilt from the stored formula, priors, settings
    and data columns.

    Returns
    -------
    BayesFit
        Prints, summarises, predicts, gives LOO, ``ranef()`` and ``varcorr()`` as the fit did.

    Raises
    ------
    LoadError
        A missing file, an unknown file type, or a file that is not a bayesmer fit.
    """
    tree, meta, frame = read(path)
    design = build_design(meta["formula"], frame)
    settings = Settings.from_mapping(meta["settings"])
    reml = fit_reml(design, method=settings.method)
    priors = resolve_priors(design, meta["priors"])
    built = build_model(design, priors, strategy=meta["strategy"], start=reml)
    return BayesFit(
        design=design, reml=reml, priors=priors, built=built, idata=tree,
        timings=meta.get("timings", {}), strategy=meta["strategy"], settings=settings.to_dict(),
    )


def _expand(design, key: str) -> list[str]:
    """Slot names a sweep key covers (bayesmer's or brms's name: a class, a group or one slot)."""
    try:
        return slots_of(design, key)
    except PriorError as exc:
        raise CheckError(f"the sweep names unknown prior {key!r}: {exc}") from None


def prior_sweep(fit: BayesFit, grid: dict, **sample_kwargs) -> SweepResult:
    """Refit ``fit`` over a grid of priors and tabulate how every summary moves.

    Parameters
    ----------
    fit : BayesFit
    grid : dict
        Prior name (as :func:`bayesmer.fit` accepts: ``"sd"``, ``"b"``,
        ``"sd(Subject)"``, ``"sd(Days|Subject)"``, ...) -> list of priors.
        Every combination is fitted.
    **sample_kwargs
        Passed to :func:`bayesmer.fit` (draws, tune, chains, seed, ...); the
        fit's own settings otherwise.
    """
    if not grid:
        raise CheckError("the sweep grid is empty")
    base = fit.priors.to_dict()
    slots = {key: _expand(fit.design, key) for key in grid}
    values = {key: [str(parse_prior(v)) for v in grid[key]] for key in grid}
    settings = dict(fit.settings)
    settings.update(sample_kwargs)
    settings.setdefault("progress", False)
    tables, fits = [], {}
    for combo in itertools.product(*values.values()):
        priors = dict(base)
        for key, spec in zip(values, combo):
            priors.update({slot: spec for slot in slots[key]})
        data = fit.design.frame if fit.design.frame is not None else fit.design.source[0].obj  # not in memory
        refitted = _refit(fit.design.formula, data, priors=priors, **settings)
        fits[combo] = refitted
        summ = refitted.summary().reset_index()
        for key, spec in zip(values, combo):
            summ.insert(0, f"prior:{key}", spec)
        tables.append(summ)
    return SweepResult(pd.concat(tables, ignore_index=True), fits)


_refit = fit  # prior_sweep's refit: its argument named fit shadows the function
