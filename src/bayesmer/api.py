"""One call from formula to Bayesian fit: design -> REML -> priors -> model -> draws."""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from .builder import build_glmm, build_model
from .checking import CheckError, SweepResult
from .errors import BayesmerError, FitError, LoadError, SettingsError
from .sources import build_design
from .io import read
from .priors import PriorError, default_priors, parse_prior, resolve_priors, slots_of
from .family import get_family
from .glmer_fit import SeparationError, failed_fit, fit_glmer
from .glmm_design import glmm_design
from .lmer import fit_reml
from .results import BayesFit, diagnose
from .sampling import sample, sample_glmm
from .settings import Settings, draw_seed

__all__ = ["fit", "load", "prior_sweep", "default_priors", "prior_predictive"]


def fit(
    formula: str,
    data: pd.DataFrame,
    priors: dict | None = None,
    *,
    family: str = "gaussian",
    link: str | None = None,
    weights=None,
    offset=None,
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
    """Fit a Bayesian linear (Clark's Mixed Model 7) or generalized linear mixed model with NUTS.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``; for the
        binomial, ``cbind(successes, failures) ~ ...`` as lme4 takes it.
    data : DataFrame, or data not in memory
        A path or glob of Parquet files (read lazily), a Dask, Polars or Spark
        DataFrame, a Polars LazyFrame or a DuckDB relation: the sufficient
        statistics are computed where the data live, in two passes
        (:mod:`bayesmer.sources`); the per-row groups are then off unless
        asked for, and computed one chunk of rows at a time (Gaussian family).
    priors : dict, optional
        Overrides of the data-scaled defaults by slot name, bayesmer's or
        brms's, e.g. ``{"b": "Normal(0, 50)", "sd(Subject)": "HalfNormal(10)"}``;
        :func:`bayesmer.default_priors` lists them, see
        :func:`bayesmer.priors.resolve_priors`.
    family : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"``, or a family of
        :mod:`bayesmer.families` by brms's name or an alias (bambi's):
        ``negbinomial``, ``zero_inflated_poisson``, ``zero_inflated_negbinomial``,
        ``student``, ``Gamma``, ``lognormal``, ``beta``, ``cumulative``. A binomial or
        Poisson model is fitted beside lme4's ``glmer`` (Laplace), a family's
        beside glmmTMB's Laplace fit (ordinal::clmm's for ``cumulative``,
        :func:`bayesmer.glmmtmb`, ``fit.reml``), and sampled with b explicit on
        the compiled density (see :func:`bayesmer.builder.build_glmm`); the
        family's own parameters are sampled with them (variables named as
        brms names them: ``shape``, ``nu``, ``phi``, ``zi``, ``sigma``, the
        thresholds ``Intercept`` over dim ``threshold``). The priors are on the
        link scale (:func:`bayesmer.default_priors`). ``lognormal`` is the
        Gaussian model of log y, sampled by the exact marginal engine (b and β
        integrated out) beside lmer's ML fit of log y; its ``log_likelihood``
        (with the Jacobian ``-log y``), ``observed_data`` and
        ``posterior_predictive`` are on the y scale. A ``cumulative`` response
        is an ordered categorical (a numeric column is ordered by value, with
        a warning stating the order); its draws are the categories 1..K, the
        labels the groups' ``category`` coordinate.
    link : str, optional
        The binomial's ``"logit"`` (default), ``"probit"`` or ``"cloglog"``;
        the Poisson's ``"log"``; ``"inverse"`` for Gamma, ``"probit"`` for
        cumulative.
    weights, offset : str or array-like, optional
        As :func:`bayesmer.glmer`: prior weights (the binomial's numbers of
        trials for a proportion response) and a known part of the linear
        predictor; GLMMs only (a Gaussian offset goes in the formula).
    draws, tune, chains, seed, sampler, strategy, method, backend, target_accept
        Checked by :class:`bayesmer.settings.Settings` (the same checks as
        model files and the command line): draws, tune, chains >= 1; seed >=
        0 (None draws one, kept in ``fit.settings["seed"]``, the posterior's
        ``seed`` attribute and the printout: ``seed=fit.settings["seed"]``
        gives the same draws again); sampler in ``settings.SAMPLERS``; strategy ``"auto"``,
        ``"marginal"`` (random effects integrated out, any Gaussian model; ``"auto"``) or
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
    KeyboardInterrupt
        Ctrl-C (SIGINT) while sampling, saying how many draws were made. An
        interrupted run is never returned as a fit: nutpie and PyMC hand
        back the draws made so far (nutpie's padded with NaN) as if sampling
        had finished, and no honest summary comes from those; rerun, with
        fewer draws if need be.
    SamplingError
        Draws that are not a posterior sample: NaN or infinite values in a
        sampled variable, or fewer draws than asked for.

    Warns
    -----
    UserWarning
        Divergences, R-hat > 1.01 or bulk/tail ESS below 100 per chain; a 0/1
        or count response fitted with the Gaussian family (naming the family
        to use); perfect or quasi-separation in a binomial model (naming the
        column), after which the posterior is still sampled (the priors keep
        it proper) and the summary's reml column is NaN.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fit.strategy                    # random and fixed effects integrated out
    'marginal'

    A binomial GLMM beside glmer's Laplace fit:

    >>> cbpp = bayesmer.datasets.load("cbpp")
    >>> gfit = bayesmer.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
    ...                     family="binomial", draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> gfit.family.name
    'binomial'

    A negative binomial model beside glmmTMB's fit, its ``shape`` by brms's name:

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(12), 10)
    >>> mu = np.exp(1.0 + rng.normal(0, 0.5, 12)[g])
    >>> counts = pd.DataFrame({"y": rng.negative_binomial(2.0, 2.0 / (2.0 + mu)), "g": g.astype(str)})
    >>> nbfit = bayesmer.fit("y ~ 1 + (1 | g)", counts, family="negbinomial", priors={"shape": "gamma(2, 0.5)"},
    ...                      draws=200, tune=200, chains=2, seed=1, progress=False)   # doctest: +SKIP
    >>> nbfit.summary().loc["dpar"].index.tolist()                                      # doctest: +SKIP
    [('', 'shape')]
    """
    settings = Settings(
        draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, strategy=strategy,
        method=method, backend=backend, target_accept=target_accept, family=family, link=link,
    )
    if settings.seed is None:
        # the seed used is a setting of the fit like any other: recorded, so the fit can be rerun
        settings = dataclasses.replace(settings, seed=draw_seed())
    run = dict(draws=settings.draws, tune=settings.tune, chains=settings.chains, seed=settings.seed,
               sampler=settings.sampler, progress=progress, backend=settings.backend,
               target_accept=settings.target_accept, log_likelihood=log_likelihood,
               sample_posterior_predictive=sample_posterior_predictive, sample_prior=sample_prior)
    if settings.family not in ("gaussian", "binomial", "poisson"):
        return _fit_family(formula, data, priors, settings, weights, offset, run)
    if settings.family != "gaussian":
        return _fit_glmm(formula, data, priors, settings, weights, offset, run)
    if weights is not None or offset is not None:
        raise SettingsError(
            "weights= and offset= are for family='binomial' or 'poisson'; a Gaussian model takes "
            "offset(...) in the formula and has no prior weights"
        )
    design = build_design(formula, data)
    _warn_family(design)
    reml = fit_reml(design, method=settings.method)
    prior_set = resolve_priors(design, priors)
    built = build_model(design, prior_set, strategy=settings.strategy, start=reml)
    sampled = sample(built, design, **run)
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


def _warn_family(design) -> None:
    """Warn when a Gaussian fit's response looks binary or like counts, naming the family to use."""
    if design.y is None:  # not in memory: the rows are not read again for this
        return
    y = np.asarray(design.y, dtype=float)
    if not len(y) or not np.all(y == np.round(y)) or np.any(y < 0):
        return
    if np.all((y == 0) | (y == 1)):
        warnings.warn(
            f"the response {design.response!r} is 0/1: the Gaussian family predicts values outside [0, 1]; "
            "use family='binomial'",
            UserWarning,
            stacklevel=3,
        )
    elif np.any(y == 0) or y.max() <= 10:
        warnings.warn(
            f"the response {design.response!r} looks like counts (non-negative integers"
            f"{', with zeros' if np.any(y == 0) else ''}): consider family='poisson'",
            UserWarning,
            stacklevel=3,
        )


def _fit_glmm(formula, data, priors, settings, weights, offset, run) -> BayesFit:
    """fit() for a binomial or Poisson model: glmer's Laplace fit beside the posterior."""
    if settings.strategy == "marginal" or settings.strategy == "full":
        raise SettingsError(
            f"strategy={settings.strategy!r} is for the Gaussian family; a {settings.family} model keeps its "
            "random effects explicit (strategy='auto')"
        )
    fam = get_family(settings.family, settings.link)
    gd = glmm_design(formula, data, fam, weights=weights, offset=offset)
    point = _point_glmm(gd, stacklevel=4)
    prior_set = resolve_priors(gd, priors, family=fam)
    return _sample_glmm_fit(gd, point, prior_set, settings, run)


def _sample_glmm_fit(gd, point, prior_set, settings, run) -> BayesFit:
    """The posterior of a model with explicit random effects (any non-Gaussian family), beside its point fit."""
    built = build_glmm(gd, prior_set, start=point)
    sampled = sample_glmm(built, gd, **run)
    result = BayesFit(
        design=gd.design,
        reml=point,
        priors=prior_set,
        built=built,
        idata=sampled.idata,
        timings=sampled.timings,
        strategy=built.strategy,
        settings=settings.to_dict(),
        glmm=gd,
    )
    diagnose(result, stacklevel=5)
    return result


def _family_point(fd, offset, stacklevel: int = 3):
    """glmmTMB's (clmm's) Laplace fit of a :mod:`bayesmer.families` model: the reference beside the posterior.

    Where it fails (a :class:`FitError`: a dpar running off to a boundary,
    e.g. a negbinomial shape to infinity) the priors still keep the posterior
    proper: a warning, and the chains run from a stand-in's start
    (:func:`bayesmer.glmmtmb_fit.failed_fit`); the summary's reml column is NaN.
    """
    from .glmmtmb_fit import failed_fit as failed_family_fit, glmmtmb

    try:
        with warnings.catch_warnings():
            # family_data stated the order of an ordinal response already
            warnings.filterwarnings("ignore", message=r"the cumulative response .* (numeric|unordered)")
            return glmmtmb(fd.formula, _frame_rows(fd), family=fd.family, offset=fd.offset_spec if offset is None or
                           isinstance(offset, str) else fd.frame["(offset)"].to_numpy())
    except FitError as exc:
        warnings.warn(f"{exc}. Sampling the posterior anyway (the priors keep it proper): the reml column is NaN",
                      UserWarning, stacklevel=stacklevel + 1)
        return failed_family_fit(fd, exc)


def _frame_rows(fd):
    """The rows and columns the model reads (what a saved fit stores)."""
    return fd.frame


def _fit_family(formula, data, priors, settings, weights, offset, run) -> BayesFit:
    """fit() for a family of :mod:`bayesmer.families`: glmmTMB's Laplace fit beside the posterior."""
    from .familydata import family_data
    from .families import get_family as get_response_family

    if weights is not None:
        raise SettingsError(f"weights= is for family='binomial' or 'poisson', not {settings.family!r}")
    if settings.strategy in ("marginal", "full"):
        raise SettingsError(
            f"strategy={settings.strategy!r} is for the Gaussian family; a {settings.family} model keeps its "
            "random effects explicit (strategy='auto')"
        )
    fam = get_response_family(settings.family).with_link(settings.link)
    fd = family_data(formula, data, fam, offset=offset)
    if fam.name == "lognormal":
        return _fit_lognormal(fd, priors, settings, offset, run)
    prior_set = resolve_priors(fd, priors, family=fd.family)  # a bad prior name fails before the point fit
    point = _family_point(fd, offset)
    return _sample_glmm_fit(fd, point, prior_set, settings, run)


def _log_design(fd):
    """The Gaussian design of log y for a lognormal model: the response column holds log y."""
    from .design import DesignError

    if fd.label not in fd.frame.columns:
        raise DesignError(f"lognormal: the response {fd.label!r} must be a column of the data (not an expression)")
    frame = fd.frame.copy()
    frame[fd.label] = np.log(frame[fd.label].to_numpy(dtype=float))
    return build_design(fd.formula, frame)


def _lognormal_groups(tree, design, fd):
    """The y scale's groups of a lognormal fit: log_likelihood with the Jacobian -log y_i, observed and
    predictive values exp(.) of the log scale's, constant_data the columns as given."""
    from .sampling import constant_data

    name = design.response
    logy = np.asarray(design.y, dtype=float)
    groups = {k: v.to_dataset() for k, v in tree.children.items()}
    if "log_likelihood" in groups:
        ds = groups["log_likelihood"]
        groups["log_likelihood"] = ds.assign({name: ds[name] - logy})
    for g in ("observed_data", "posterior_predictive"):
        if g in groups:
            ds = groups[g]
            groups[g] = ds.assign({name: np.exp(ds[name])})
    if "constant_data" in groups:
        attrs = groups["constant_data"].attrs
        groups["constant_data"] = constant_data(design, fd.frame.reset_index(drop=True))
        groups["constant_data"].attrs = attrs
    new = xr.DataTree.from_dict(groups)
    new.attrs = dict(tree.attrs)
    return new


def _fit_lognormal(fd, priors, settings, offset, run) -> BayesFit:
    """lognormal: the exact Gaussian marginal engine on log y (b and β integrated out as the Gaussian fit's),
    the point fit lmer(log y) by ML as glmmTMB's; the groups on the y scale (:func:`_lognormal_groups`)."""
    if offset is not None:
        raise SettingsError("a lognormal model takes offset(...) in the formula, not offset=")
    design = _log_design(fd)
    reml = fit_reml(design, method="ML")
    prior_set = resolve_priors(design, priors, family="lognormal")
    built = build_model(design, prior_set, strategy=settings.strategy, start=reml)
    sampled = sample(built, design, **run)
    result = BayesFit(
        design=design, reml=reml, priors=prior_set, built=built, idata=_lognormal_groups(sampled.idata, design, fd),
        timings=sampled.timings, strategy=built.strategy, settings=settings.to_dict(), response_family=fd.family,
    )
    diagnose(result, stacklevel=5)
    return result


def _point_glmm(gd, stacklevel: int):
    """glmer's Laplace fit beside the posterior; on separation a stand-in, and a warning.

    Separation leaves the likelihood without a finite maximum, but the priors
    keep the posterior proper: the chains run from the stand-in's start
    (:func:`bayesmer.glmer_fit.failed_fit`) and the summary's reml column is NaN.
    """
    try:
        return fit_glmer(gd)
    except SeparationError as exc:
        warnings.warn(f"{exc}. Sampling the posterior anyway (the priors keep it proper; check the prior on the "
                      "separating column, whose posterior it shapes): the reml column is NaN",
                      UserWarning, stacklevel=stacklevel + 1)
        return failed_fit(gd, exc)


def load(path) -> BayesFit:
    """Read a fit written by :meth:`BayesFit.save` (or ``bayesmer run`` / ``fit --out``).

    The draws are the file's; the design, the REML twin (exact, milliseconds)
    and the PyMC model are rebuilt from the stored formula, priors, settings
    and data columns.

    Parameters
    ----------
    path : str or Path
        A ``.nc`` or ``.zarr`` file written by :meth:`BayesFit.save`, or
        ``posterior.nc`` from ``bayesmer run``.

    Returns
    -------
    BayesFit
        Prints, summarises, predicts, gives LOO, ``ranef()`` and ``varcorr()`` as the fit did.

    Raises
    ------
    LoadError
        A missing file, an unknown file type, a file that is not a bayesmer fit,
        one saved in a format newer than this bayesmer reads, or one whose stored
        formula, weights, offset, priors or settings do not parse (they are
        re-parsed as a new fit's are, never evaluated as Python).

    Warns
    -----
    UserWarning
        A file written by another bayesmer version (naming it).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> import tempfile, pathlib
    >>> path = fit.save(pathlib.Path(tempfile.mkdtemp()) / "fit.zarr")
    >>> again = bayesmer.load(path)
    >>> again.draws("sigma").shape == fit.draws("sigma").shape
    True
    """
    tree, meta, frame = read(path)
    try:
        return _rebuild(tree, meta, frame)
    except BayesmerError as exc:
        # the stored strings went through the parsers a new fit uses; a bad one names the file
        raise LoadError(f"{path}: the stored model cannot be rebuilt: {exc}") from exc


def _rebuild(tree, meta: dict, frame) -> BayesFit:
    """load()'s fit from what :func:`bayesmer.io.read` returns."""
    settings = Settings.from_mapping(meta["settings"])
    if settings.family not in ("gaussian", "binomial", "poisson"):
        from .familydata import family_data
        from .families import get_family as get_response_family

        fam = get_response_family(settings.family).with_link(settings.link)
        if fam.name == "lognormal":
            fd = family_data(meta["formula"], frame, fam)
            design = _log_design(fd)
            reml = fit_reml(design, method="ML")
            priors = resolve_priors(design, meta["priors"], family="lognormal")
            built = build_model(design, priors, strategy=meta["strategy"], start=reml)
            return BayesFit(design=design, reml=reml, priors=priors, built=built, idata=tree,
                            timings=meta.get("timings", {}), strategy=meta["strategy"],
                            settings=settings.to_dict(), response_family=fd.family)
        with warnings.catch_warnings():
            # the fit stated an ordinal response's order when it was made
            warnings.filterwarnings("ignore", message=r"the cumulative response .* (numeric|unordered)")
            fd = family_data(meta["formula"], frame, fam, offset=meta.get("offset"))
        point = _family_point(fd, meta.get("offset"))
        priors = resolve_priors(fd, meta["priors"], family=fd.family)
        return BayesFit(
            design=fd.design, reml=point, priors=priors, built=build_glmm(fd, priors, start=point), idata=tree,
            timings=meta.get("timings", {}), strategy=meta["strategy"], settings=settings.to_dict(), glmm=fd,
        )
    if settings.family != "gaussian":
        fam = get_family(settings.family, settings.link)
        gd = glmm_design(meta["formula"], frame, fam, weights=meta.get("weights"), offset=meta.get("offset"))
        point = _point_glmm(gd, stacklevel=3)
        priors = resolve_priors(gd, meta["priors"], family=fam)
        return BayesFit(
            design=gd.design, reml=point, priors=priors, built=build_glmm(gd, priors, start=point), idata=tree,
            timings=meta.get("timings", {}), strategy=meta["strategy"], settings=settings.to_dict(), glmm=gd,
        )
    design = build_design(meta["formula"], frame)
    reml = fit_reml(design, method=settings.method)
    priors = resolve_priors(design, meta["priors"])
    built = build_model(design, priors, strategy=meta["strategy"], start=reml)
    return BayesFit(
        design=design, reml=reml, priors=priors, built=built, idata=tree,
        timings=meta.get("timings", {}), strategy=meta["strategy"], settings=settings.to_dict(),
    )


def _expand(design, key: str, family=None) -> list[str]:
    """Slot names a sweep key covers (bayesmer's or brms's name: a class, a group or one slot)."""
    try:
        return slots_of(design, key, family=family)
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

    Returns
    -------
    SweepResult
        ``table`` (one block of summary rows per grid point, the grid in
        ``prior:<name>`` columns), ``fits`` (grid point -> BayesFit) and
        ``plot()``.

    Examples
    --------
    >>> import bayesmer
    >>> dye = bayesmer.datasets.load("dyestuff")
    >>> fit = bayesmer.fit("Yield ~ 1 + (1 | Batch)", dye,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> sweep = bayesmer.prior_sweep(fit, {"sd(Batch)": ["HalfCauchy(5)", "HalfCauchy(50)"]})
    >>> sorted(sweep.table["prior:sd(Batch)"].unique())
    ['HalfCauchy(5)', 'HalfCauchy(50)']
    """
    if not grid:
        raise CheckError("the sweep grid is empty")
    base = fit.priors.to_dict()
    model = fit.glmm if fit.glmm is not None else fit.design
    slots = {key: _expand(model, key, fit.family) for key in grid}
    values = {key: [str(parse_prior(v)) for v in grid[key]] for key in grid}
    settings = dict(fit.settings)
    settings.update(sample_kwargs)
    settings.setdefault("progress", False)
    tables, fits = [], {}
    for combo in itertools.product(*values.values()):
        priors = dict(base)
        for key, spec in zip(values, combo):
            priors.update({slot: spec for slot in slots[key]})
        if fit.glmm is not None:
            gd = fit.glmm
            refitted = _refit(gd.formula, gd.frame, priors=priors, weights=gd.weights_spec, offset=gd.offset_spec,
                              **settings)
        else:
            data = fit.design.frame if fit.design.frame is not None else fit.design.source[0].obj  # not in memory
            refitted = _refit(fit.design.formula, data, priors=priors, **settings)
        fits[combo] = refitted
        summ = refitted.summary().reset_index()
        for key, spec in zip(values, combo):
            summ.insert(0, f"prior:{key}", spec)
        tables.append(summ)
    return SweepResult(pd.concat(tables, ignore_index=True), fits)


def prior_predictive(
    formula: str,
    data: pd.DataFrame,
    priors: dict | None = None,
    family: str = "gaussian",
    draws: int = 500,
    seed: int | None = None,
    *,
    link: str | None = None,
    weights=None,
    offset=None,
) -> "xr.DataTree":
    """Draws from the prior and of data sets from it, before any fit: a prior predictive check.

    The model :func:`bayesmer.fit` would sample, with the same priors
    (data-scaled defaults and ``priors``' overrides), drawn from its prior:
    brms's ``sample_prior = "only"``. A Gaussian model needs no fit at all;
    a binomial or Poisson model's builder takes glmer's Laplace fit as its
    start and centring choice (:func:`bayesmer.builder.build_glmm`), so that
    fit (milliseconds to seconds) is run, though the draws do not depend on it.

    Parameters
    ----------
    formula : str
        As :func:`bayesmer.fit`.
    data : DataFrame
        In memory (the replicated data sets are drawn row by row).
    priors : dict, optional
        As :func:`bayesmer.fit`.
    family : {"gaussian", "binomial", "poisson"}
    draws : int
        Prior draws (one chain).
    seed : int, optional
    link, weights, offset : optional
        As :func:`bayesmer.fit`.

    Returns
    -------
    xarray.DataTree
        ``prior`` (the fixed effects, SDs, correlations and sigma; the
        random effects' draws are not stored), ``prior_predictive`` (chain,
        draw, obs; named as the response, counts for a binomial or Poisson
        model), ``observed_data`` and ``constant_data`` (the columns the
        formula reads): ready for :func:`bayesmer.plots.plot_ppc` with
        ``group="prior_predictive"``.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> tree = bayesmer.prior_predictive("Reaction ~ Days + (Days | Subject)", sleep,
    ...                                  priors={"b": "Normal(0, 20)"}, draws=100, seed=1)
    >>> tree["prior_predictive"]["Reaction"].shape
    (1, 100, 180)
    >>> sorted(tree.children)
    ['constant_data', 'observed_data', 'prior', 'prior_predictive']
    """
    import pymc as pm
    import xarray as xr

    from .sampling import _counts, _ds, _new_rng, _prior_groups, constant_data, group_attrs

    settings = Settings(draws=draws, seed=seed, family=family, link=link)
    if settings.family == "gaussian":
        if weights is not None or offset is not None:
            raise SettingsError("weights= and offset= are for family='binomial' or 'poisson'")
        design = build_design(formula, data)
        if getattr(design, "sums", None) is not None:
            raise SettingsError("prior_predictive draws data sets row by row: pass a pandas DataFrame")
        prior_set = resolve_priors(design, priors)
        # no REML fit: the start values only matter to NUTS, and the builder has OLS's without one
        built = build_model(design, prior_set, strategy="marginal")
        prior, pp = _prior_groups(built, design, settings.draws, settings.seed, _new_rng(settings.seed))
        observed = xr.Dataset({built.response: (("obs",), design.y)}, coords={"obs": np.arange(design.n)})
        const = constant_data(design)
    else:
        fam = get_family(settings.family, settings.link)
        gd = glmm_design(formula, data, fam, weights=weights, offset=offset)
        prior_set = resolve_priors(gd, priors, family=fam)
        built = build_glmm(gd, prior_set, start=_point_glmm(gd, stacklevel=3))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Potential.*")
            pri = pm.sample_prior_predictive(draws=settings.draws, model=built.model, random_seed=settings.seed)
        prior = _ds(pri["prior"])
        keep = [v for v in prior.data_vars if v not in built.hidden and not v.startswith(("z_", "corr_chol_", "b_"))]
        prior = prior[keep]  # and the coordinates of only these
        pp = _ds(pri["prior_predictive"])
        observed = xr.Dataset({built.response: (("obs",), _counts(gd))}, coords={"obs": np.arange(len(gd.y))})
        const = constant_data(gd.design, gd.frame)
    groups = {"prior": prior, "prior_predictive": pp, "observed_data": observed, "constant_data": const}
    for ds in groups.values():
        ds.attrs = group_attrs("pymc")
    return xr.DataTree.from_dict(groups)


_refit = fit  # prior_sweep's refit: its argument named fit shadows the function
