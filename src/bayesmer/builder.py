"""Build the PyMC model of a Bayesian linear mixed model (Mixed Model 7).

Two equivalent parameterisations of the same posterior over (β, σ, Ψ):

* ``"marginal"`` (the default for every Gaussian model): ``b`` is integrated
  out exactly, and so is ``β`` when every fixed-effect prior is Normal. The
  likelihood is the engine's collapsed likelihood (lme4's blocked Cholesky on
  sufficient statistics, :mod:`bayesmer.engine`), one Op in the PyMC graph, so
  a log-density costs O(levels) whatever the number of rows and the sampler
  sees no funnel. ``b`` (and ``β``) are drawn afterwards from their exact
  Gaussian conditional, one draw per posterior draw.
* ``"full"``: the random effects are explicit, non-centred
  (``z ~ N(0, 1)``, ``b = z L'`` with ``L = diag(sd) chol(corr)``): the
  cross-check. nutpie samples it on the engine's compiled GLMM density with
  the Gaussian family (:class:`~bayesmer.engine.glmm.GlmmSpec`), the PyMC
  model being the same model for PyMC's tools.

A binomial or Poisson model (:func:`build_glmm`) keeps b explicit (no exact
marginal exists), each term centred or non-centred as the data call for
(:func:`bayesmer.engine.glmm.choose_centring`); the engine's compiled density
(:class:`~bayesmer.engine.glmm.GlmmSpec`) is what nutpie samples, and the PyMC
model is the same model for PyMC's tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import naming as nm
from .design import moments
from .errors import BayesmerError
from .engine import CollapsedStats
from .engine.density import DensitySpec
from .engine.glmm import GlmmSpec, choose_centring
from .engine.op import CollapsedLoglik
from .priors import PriorSet
from .settings import STRATEGIES

__all__ = ["BuildError", "BuiltModel", "build_model", "build_glmm", "FULL_MAX_EFFECTS"]

#: Above this many random effects the explicit model is not offered: NUTS on
#: that many dimensions takes hours where the marginal takes seconds.
FULL_MAX_EFFECTS = 20_000


class BuildError(BayesmerError, ValueError):
    """A model that cannot be built as asked, with the reason and the way out."""


@dataclass(frozen=True, eq=False)
class BuiltModel:
    """A PyMC model ready to sample.

    Attributes
    ----------
    model : pm.Model
    strategy : {"marginal", "full", "glmm"}
    response : str
        Name of the response (the log-likelihood variable's name).
    beta, sigma : str
        Variable names (``sigma`` None for a family without a residual SD).
    sd, corr, b : dict of str to str
        Per term name, its variable names (``corr`` only for k > 1; ``b``
        exists in the model only under ``"full"``, and is added after
        sampling under ``"marginal"``).
    initial_point : dict of str to ndarray
        Starting values on the constrained scale, from REML when given.
    density : DensitySpec, GlmmSpec or None
        Under ``"marginal"``: the sufficient statistics and priors the engine
        samples (``density.integrate_beta`` says whether β is integrated out);
        under ``"glmm"`` the GLMM's arrays, priors and per-term centring;
        under ``"full"`` the same compiled GLMM density with the Gaussian
        family (sigma its last coordinate), every term non-centred.
    priors : PriorSet
    start : dict of str to ndarray
        The same starting values by parameter (``beta``, ``sigma``, ``sd_<term>``,
        ``corr_chol_<term>``) whatever the model's variables are, for samplers
        that do not go through the PyMC model.
    """

    model: pm.Model
    strategy: str
    response: str
    beta: str
    sigma: str
    sd: dict
    corr: dict
    b: dict
    initial_point: dict
    density: DensitySpec | None
    priors: PriorSet
    hidden: tuple[str, ...] = field(default=())
    start: dict = field(default_factory=dict)

    family: object = None
    #: the family's own parameters' variables (brms's names), a :mod:`bayesmer.families` family's only
    dpars: tuple = ()

    @property
    def integrate_beta(self) -> bool:
        """Whether β is integrated out (and drawn after sampling) rather than sampled."""
        return self.strategy == "marginal" and self.density.integrate_beta

    @property
    def hyper_names(self) -> list[str]:
        """The variables with a prior of their own: beta, sd_*, corr_*, sigma."""
        names = [self.beta, *self.sd.values(), *self.corr.values()]
        return names + ([self.sigma] if self.sigma is not None else []) + list(self.dpars)


def _vector(name: str, priors, dims: str):
    """One vector variable; split into scalars when families differ, so each slot keeps its own prior."""
    families = {type(p) for p in priors}
    if len(families) == 1:
        return type(priors[0]).pymc_vector(name, priors, dims=dims), ()
    parts = [p.pymc(f"{name}__{i}") for i, p in enumerate(priors)]
    return pm.Deterministic(name, pt.stack(parts), dims=dims), tuple(f"{name}__{i}" for i in range(len(priors)))


def _cov_factor(t, priors, init, hidden: list, initial_point: dict, names_sd: dict, names_corr: dict):
    """A term's SDs and correlation as PyMC variables; returns its covariance factor ``L = diag(sd) chol(R)``.

    Records the variable names, the hidden helpers and the starting values in the given containers.
    """
    sd_name = nm.sd_var(t.name)
    sd, extra = _vector(sd_name, list(priors.sd_priors(t.name)), nm.term_dim(t.name))
    hidden += extra
    if extra:
        initial_point.update({n: v for n, v in zip(extra, init[sd_name])})
    else:
        initial_point[sd_name] = init[sd_name]
    names_sd[t.name] = sd_name
    if t.k == 1:
        return pt.reshape(sd, (1, 1))
    chol_name = nm.corr_chol_var(t.name)
    Lc = priors.corr_prior(t.name).pymc(chol_name, n=t.k)
    hidden.append(chol_name)
    initial_point[chol_name] = init[chol_name]
    names_corr[t.name] = nm.corr_var(t.name)
    # the pairs only, as brms's cor_ parameters: the unit diagonal and the
    # mirrored triangle of the full matrix gave NaN R-hat/ESS and duplicate panels
    iu = tuple(np.array(nm.pairs(t.k)).T)
    pm.Deterministic(names_corr[t.name], (Lc @ Lc.T)[iu], dims=nm.pair_dim(t.name))
    return sd[:, None] * Lc


def _floor_sd(design, term, m=None) -> np.ndarray:
    m = moments(design) if m is None else m  # the rows' or, out of memory, the sums'
    ti = [t.name for t in design.terms].index(term.name)
    sy = m.y_std or 1.0
    sz = m.z_std[ti]
    scale = np.where(sz > 1e-12, sz, np.abs(m.z_first[ti]) + 1e-12)
    return 1e-2 * sy / scale


def _start_values(design, priors: PriorSet, start) -> dict:
    """REML estimates moved off the boundary (sd 0, |corr| 1), where NUTS cannot start."""
    out: dict = {}
    X, y = design.X, design.y
    m = moments(design)
    if start is None and getattr(design, "sums", None) is not None:
        raise BuildError("data not in memory: the start values come from the REML fit (start=...)")
    if start is not None:
        beta = np.asarray(start.fixef.reindex(list(design.fixed_names)).to_numpy(), dtype=float)
        sigma = float(start.sigma)
    else:
        beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        sigma = float(np.std(y - X @ beta)) if X.shape[1] else float(np.std(y))
    out[nm.BETA] = beta
    out[nm.SIGMA] = max(sigma, 1e-3 * (m.y_std or 1.0))
    for term in design.terms:
        floor = _floor_sd(design, term, m)
        if start is not None:
            sd = np.asarray(start.sd(term.name), dtype=float)
            R = np.asarray(start.corr(term.name), dtype=float)
            R = np.where(np.isfinite(R), R, 0.0)
        else:
            sd = 10 * floor
            R = np.eye(term.k)
        sd = np.maximum(sd, floor)
        R = 0.9 * R + 0.1 * np.eye(term.k)
        out[nm.sd_var(term.name)] = sd
        out[nm.corr_chol_var(term.name)] = np.linalg.cholesky(R)
        if start is not None and term.name in getattr(start, "ranef", {}):
            bhat = np.asarray(start.ranef[term.name].to_numpy(), dtype=float)
        else:
            bhat = np.zeros((term.n_levels, term.k))
        L = sd[:, None] * np.linalg.cholesky(R)
        out[nm.z_var(term.name)] = np.clip(np.linalg.solve(L, bhat.T).T, -5, 5)
    return out


def build_model(design, priors: PriorSet, strategy: str = "auto", start=None) -> BuiltModel:
    """Build the PyMC model of ``design`` with ``priors``.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    strategy : {"auto", "marginal", "full"}
        ``"auto"`` is ``"marginal"``: the random effects (and β under Normal
        priors) integrated out, for every Gaussian model.
    start : RemlFit, optional
        Its estimates become the initial point.

    Returns
    -------
    BuiltModel

    Raises
    ------
    BuildError
        An unknown strategy; a model without random effects; ``"full"`` on a
        model with more than :data:`FULL_MAX_EFFECTS` random effects.
    """
    if strategy not in STRATEGIES:
        raise BuildError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not design.terms:
        raise BuildError("the formula has no random-effect term; a mixed model needs at least one (x | g)")
    strategy = "marginal" if strategy == "auto" else strategy
    if strategy == "full" and getattr(design, "sums", None) is not None:
        raise BuildError(
            "strategy='full' samples every random effect against every row: the data are not in memory. "
            "Use strategy='marginal' (the default), which needs only their statistics"
        )
    n_effects = sum(t.n_levels * t.k for t in design.terms)
    if strategy == "full" and n_effects > FULL_MAX_EFFECTS:
        raise BuildError(
            f"strategy='full' samples every random effect: this model has {n_effects:,} of them (more than "
            f"{FULL_MAX_EFFECTS:,}), which NUTS would take hours over. Use strategy='marginal', which "
            "integrates them out exactly"
        )
    density = None
    if strategy == "marginal":
        try:
            density = DensitySpec.build(CollapsedStats.from_design(design), priors, design)
        except ValueError as err:
            raise BuildError(f"strategy='marginal': {err}") from None

    coords: dict = {nm.FIXED_DIM: list(design.fixed_names), nm.OBS_DIM: np.arange(design.n)}
    if getattr(design, "sums", None) is not None:
        # no rows here: PyMC would hold the row coordinate as a tuple of Python ints (GBs at 1e8 rows)
        del coords[nm.OBS_DIM]
    for t in design.terms:
        coords[nm.level_dim(t.name)] = list(t.levels)
        coords[nm.term_dim(t.name)] = list(t.terms)
        coords[nm.effect_dim(t.name)] = list(t.terms)
        if t.k > 1:
            coords[nm.pair_dim(t.name)] = nm.pair_labels(t.terms)
    init = _start_values(design, priors, start)
    if strategy == "full":
        density = _full_density(design, priors, init, start)
    hidden: list[str] = []
    names_sd, names_corr, names_b = {}, {}, {}
    initial_point: dict = {}

    with pm.Model(coords=coords) as model:
        fixed_priors = [p for _, p in priors.fixed]
        if strategy == "marginal" and density.integrate_beta:
            # β is integrated out: not a variable of the model, drawn after sampling
            beta = pt.as_tensor(density.mu0)
        elif fixed_priors:
            beta, extra = _vector(nm.BETA, fixed_priors, nm.FIXED_DIM)
            hidden += extra
            if extra:
                initial_point.update({n: v for n, v in zip(extra, init[nm.BETA])})
            else:
                initial_point[nm.BETA] = init[nm.BETA]
        else:
            beta = pt.zeros(0)
        sigma = priors.sigma.pymc(nm.SIGMA)
        initial_point[nm.SIGMA] = init[nm.SIGMA]
        Ls = [_cov_factor(t, priors, init, hidden, initial_point, names_sd, names_corr) for t in design.terms]
        if strategy == "marginal":
            kmax = max(t.k for t in design.terms)
            Tall = pt.zeros((len(Ls), kmax, kmax))
            for i, (t, L) in enumerate(zip(design.terms, Ls)):
                Tall = pt.set_subtensor(Tall[i, : t.k, : t.k], L / sigma)
            op = CollapsedLoglik(density.stats, density.s0 if density.integrate_beta else None)
            pm.Potential("marginal_loglik", op(sigma, Tall, beta if design.p else pt.zeros(0)))
        else:
            mu = pt.dot(design.X, beta) if design.p else pt.zeros(design.n)
            if getattr(design, "offset", None) is not None:
                mu = mu + design.offset
            for t, L in zip(design.terms, Ls):
                z_name = nm.z_var(t.name)
                z = pm.Normal(z_name, 0.0, 1.0, dims=(nm.level_dim(t.name), nm.effect_dim(t.name)))
                hidden.append(z_name)
                initial_point[z_name] = init[z_name]
                b = pm.Deterministic(
                    nm.b_var(t.name), pt.dot(z, L.T), dims=(nm.level_dim(t.name), nm.effect_dim(t.name))
                )
                names_b[t.name] = nm.b_var(t.name)
                mu = mu + pt.sum(t.Z * b[t.codes], axis=1)
            pm.Normal(design.response, mu=mu, sigma=sigma, observed=design.y, dims=nm.OBS_DIM)
        if strategy == "marginal":
            names_b = {t.name: nm.b_var(t.name) for t in design.terms}

    return BuiltModel(
        model=model,
        strategy=strategy,
        response=design.response,
        beta=nm.BETA,
        sigma=nm.SIGMA,
        sd=names_sd,
        corr=names_corr,
        b=names_b,
        initial_point=initial_point,
        density=density,
        priors=priors,
        hidden=tuple(hidden),
        start=init,
    )


def _full_density(design, priors, init, start) -> GlmmSpec:
    """``"full"``'s compiled density: the GLMM kernel with the Gaussian family (every term non-centred, as the
    PyMC model's), β moved in the REML fit's coordinates, sigma its last coordinate."""
    from .families import gaussian

    n = design.n
    off = np.zeros(n) if getattr(design, "offset", None) is None else np.asarray(design.offset, dtype=float)
    vcov = None
    if start is not None and design.p:
        try:
            vcov = np.asarray(getattr(start, "vcov"), dtype=float)
        except (TypeError, ValueError, AttributeError):
            vcov = None
        if vcov is not None and (vcov.shape != (design.p, design.p) or not np.all(np.isfinite(vcov))):
            vcov = None
    try:
        return GlmmSpec.build(np.asarray(design.X, dtype=float).reshape(n, -1), np.asarray(design.y, dtype=float),
                              np.ones(n), off, design.terms, gaussian, priors, [False] * len(design.terms),
                              beta_loc=init[nm.BETA] if vcov is not None else None, beta_cov=vcov)
    except ValueError as err:
        raise BuildError(f"strategy='full': {err}") from None


def _is_response_family(fam) -> bool:
    from .families import ResponseFamily

    return isinstance(fam, ResponseFamily)


def _dpar_dict(fam, series) -> dict:
    """The dpars as ``ResponseFamily`` takes them (thresholds an array) from a Series with brms's names."""
    out = {}
    for d in fam.dpars:
        if d.transform == "ordered":
            out[d.name] = np.array([float(series[nm.threshold_label(i + 1)]) for i in range(fam.dpar_size(d))])
        else:
            out[d.name] = float(series[d.name])
    return out


def _glmm_start(data, start, priors):
    """Starting values from the Laplace fit, moved off the boundary (sd 0, |corr| 1)."""
    out: dict = {nm.BETA: np.asarray(start.fixef.to_numpy(), dtype=float)}
    fam = data.family
    if _is_response_family(fam) and fam.dpars:
        dp = _dpar_dict(fam, start.dpars)
        z = fam.pack(dp)
        # a dpar at its boundary (shape -> inf, zi -> 0) starts nearby instead
        z = np.where(np.isfinite(z), np.clip(z, -8.0, 8.0), 0.0)
        out["dpars_z"] = z
        for name, v in fam.unpack(z).items():
            out[name] = np.asarray(v, dtype=float)
    covs = start.cov_matrices()
    for t in data.terms:
        C = covs[t.name]
        sd = np.sqrt(np.maximum(np.diag(C), 0.0))
        z_sd = np.std(t.Z, axis=0)
        floor = 0.05 / np.where(z_sd > 1e-12, z_sd, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            R = np.where(np.outer(sd, sd) > 0, C / np.outer(sd, sd), 0.0)
        R = 0.9 * (R + R.T) / 2 + 0.1 * np.eye(t.k)
        np.fill_diagonal(R, 1.0)
        out[nm.sd_var(t.name)] = np.maximum(sd, floor)
        out[nm.corr_chol_var(t.name)] = np.linalg.cholesky(R)
        out[nm.b_var(t.name)] = np.asarray(start.ranef[t.name].to_numpy(), dtype=float)
    return out


def _working_weights(data, start) -> np.ndarray:
    """The Laplace fit's IRLS weights ``w μ'(η)² / V(μ)`` at its conditional modes (for a family of
    :mod:`bayesmer.families`, the observed information ``-d²ℓ/dη²`` its ``derivs`` give, floored at 0)."""
    fam = data.family
    if _is_response_family(fam):
        dp = _dpar_dict(fam, start.dpars)
        with np.errstate(all="ignore"):
            d2 = fam.derivs(np.asarray(data.y, float), np.asarray(start._eta, float), dp)[1]
        return np.where(np.isfinite(d2), np.maximum(-d2, 0.0), 0.0)
    mu = np.asarray(start.fitted(), dtype=float)
    eta = fam.link.linkfun(mu)
    return data.weights * fam.link.mu_eta(eta) ** 2 / np.maximum(fam.variance(mu), 1e-300)


def build_glmm(data, priors: PriorSet, start, centred=None) -> BuiltModel:
    """Build the posterior of a binomial, Poisson or :mod:`bayesmer.families` mixed model.

    Parameters
    ----------
    data : GlmmData or FamilyData
        The design and response (:func:`bayesmer.glmer_fit.glmm_design`,
        :func:`bayesmer.familydata.family_data`).
    priors : PriorSet
        On the link scale (:func:`bayesmer.priors.default_priors` with the
        family); a family's own parameters in ``priors.dpars``.
    start : GlmerFit or FamilyFit
        The Laplace fit: its estimates start the chains and its conditional
        modes measure, per term, whether to centre (:func:`choose_centring`).
        The family's parameters are PyMC variables with brms's names
        (``shape``, ``nu``, ``phi``, ``zi``, ``sigma``; ``Intercept`` over
        :data:`bayesmer.naming.THRESHOLD_DIM`), the likelihood PyMC's
        distribution of the family (``NegativeBinomial(mu, alpha=shape)``,
        ``ZeroInflatedPoisson(psi=1-zi)``, ``StudentT``, ``Gamma(shape,
        shape/mu)``, ``Beta(mu phi, (1-mu) phi)``, ``OrderedLogistic`` /
        ``OrderedProbit`` on the categories 0..K-1).
    centred : sequence of bool, optional
        Per term, overriding that choice.

    Returns
    -------
    BuiltModel
        ``strategy="glmm"``; ``density`` is the compiled density's
        :class:`GlmmSpec`; ``model`` the same model in PyMC (for graphviz,
        prior predictive draws and ``backend="pytensor"``).
    """
    terms = data.terms
    if not terms:
        raise BuildError("the formula has no random-effect term; a mixed model needs at least one (x | g)")
    fam = data.family
    if centred is None:
        centred = choose_centring(terms, _working_weights(data, start), [start.cov_matrices()[t.name] for t in terms])
    centred = tuple(bool(c) for c in centred)
    if len(centred) != len(terms):
        raise BuildError(f"centred has {len(centred)} entries for {len(terms)} random-effect terms")
    init = _glmm_start(data, start, priors)
    try:
        vcov = np.asarray(start.vcov.to_numpy(), dtype=float)
        ok = vcov.size and np.all(np.isfinite(vcov))
        spec = GlmmSpec.build(np.asarray(data.X, dtype=float), data.y, data.weights, data.offset, terms, fam, priors,
                              centred,
                              beta_loc=init[nm.BETA] if ok else None, beta_cov=vcov if ok else None)
    except ValueError as err:
        raise BuildError(str(err)) from None
    design = data.design
    n = len(data.y)
    coords: dict = {nm.FIXED_DIM: list(data.fixed_names), nm.OBS_DIM: np.arange(n)}
    family_fit = _is_response_family(fam)
    if family_fit and fam.name == "cumulative":
        coords[nm.THRESHOLD_DIM] = list(range(1, fam.n_thresholds + 1))
    for t in terms:
        coords[nm.level_dim(t.name)] = list(t.levels)
        coords[nm.term_dim(t.name)] = list(t.terms)
        coords[nm.effect_dim(t.name)] = list(t.terms)
        if t.k > 1:
            coords[nm.pair_dim(t.name)] = nm.pair_labels(t.terms)
    hidden: list[str] = []
    names_sd, names_corr, names_b = {}, {}, {}
    initial_point: dict = {}
    successes = None if family_fit else np.round(data.y * data.weights)
    with pm.Model(coords=coords) as model:
        fixed_priors = [p for _, p in priors.fixed]
        if fixed_priors:
            beta, extra = _vector(nm.BETA, fixed_priors, nm.FIXED_DIM)
            hidden += extra
            if extra:
                initial_point.update({n_: v for n_, v in zip(extra, init[nm.BETA])})
            else:
                initial_point[nm.BETA] = init[nm.BETA]
            eta = pt.dot(data.X, beta)
        else:
            eta = pt.zeros(n)
        eta = eta + data.offset
        for t, cent in zip(terms, centred):
            L = _cov_factor(t, priors, init, hidden, initial_point, names_sd, names_corr)
            dims = (nm.level_dim(t.name), nm.effect_dim(t.name))
            b_name = nm.b_var(t.name)
            if cent:
                b = pm.MvNormal(b_name, mu=pt.zeros(t.k), chol=L, dims=dims)
                initial_point[b_name] = init[b_name]
            else:
                z_name = nm.z_var(t.name)
                z = pm.Normal(z_name, 0.0, 1.0, dims=dims)
                hidden.append(z_name)
                Lv = init[nm.sd_var(t.name)][:, None] * init[nm.corr_chol_var(t.name)]
                initial_point[z_name] = np.clip(np.linalg.solve(Lv, init[b_name].T).T, -5, 5)
                b = pm.Deterministic(b_name, pt.dot(z, L.T), dims=dims)
            names_b[t.name] = b_name
            eta = eta + pt.sum(t.Z * b[t.codes], axis=1)
        if family_fit:
            dp = _dpar_vars(fam, priors, init, initial_point, hidden)
            _family_likelihood(fam, data, eta, dp)
        elif fam.name == "binomial":
            p = _inverse_link(fam.link.name, eta)
            pm.Binomial(data.label, n=np.round(data.weights).astype("int64"), p=p, observed=successes, dims=nm.OBS_DIM)
        else:
            pm.Poisson(data.label, mu=pt.exp(eta), observed=data.y, dims=nm.OBS_DIM)
    return BuiltModel(
        model=model,
        strategy="glmm",
        response=data.label,
        beta=nm.BETA,
        sigma=None,
        sd=names_sd,
        corr=names_corr,
        b=names_b,
        initial_point=initial_point,
        density=spec,
        priors=priors,
        hidden=tuple(hidden),
        start=init,
        family=fam,
        dpars=tuple(d.name for d in fam.dpars) if family_fit else (),
    )


def _dpar_vars(fam, priors, init, initial_point, hidden) -> dict:
    """The family's parameters as PyMC variables, named as brms names them, with their priors."""
    out = {}
    for d in fam.dpars:
        prior = priors.dpar_prior(d.name)
        if d.transform == "ordered":
            from pymc.distributions.transforms import ordered

            out[d.name] = _ordered_var(d.name, prior, fam.dpar_size(d), ordered)
        elif d.transform == "log1m1":
            # brms's nu >= 1: the prior truncated below at 1 (its normalising constant is a constant)
            out[d.name] = pm.Truncated(d.name, _prior_dist(prior), lower=d.lower)
        else:
            out[d.name] = prior.pymc(d.name)
        if d.name in init:
            initial_point[d.name] = np.asarray(init[d.name], dtype=float)
    return out


def _prior_dist(prior):
    """An unnamed PyMC distribution of a prior (for ``pm.Truncated``)."""
    import pymc as pm_

    kinds = {"Gamma": lambda a, b: pm_.Gamma.dist(alpha=a, beta=b),
             "HalfNormal": lambda s: pm_.HalfNormal.dist(sigma=s),
             "HalfCauchy": lambda b: pm_.HalfCauchy.dist(beta=b),
             "HalfStudentT": lambda nu, s: pm_.HalfStudentT.dist(nu=nu, sigma=s),
             "Exponential": lambda lam: pm_.Exponential.dist(lam=lam)}
    return kinds[type(prior).__name__](*prior.params())


def _ordered_var(name, prior, m, ordered):
    kinds = {"Normal": lambda mu, s: pm.Normal(name, mu=mu, sigma=s, dims=nm.THRESHOLD_DIM, transform=ordered,
                                               initval=np.linspace(-1, 1, m)),
             "StudentT": lambda nu, mu, s: pm.StudentT(name, nu=nu, mu=mu, sigma=s, dims=nm.THRESHOLD_DIM,
                                                       transform=ordered, initval=np.linspace(-1, 1, m))}
    return kinds[type(prior).__name__](*prior.params())


def _family_likelihood(fam, data, eta, dp):
    """The observed response's PyMC distribution for a family of :mod:`bayesmer.families`."""
    name, y = data.label, np.asarray(data.y, dtype=float)
    link = fam.link
    if fam.name == "cumulative":
        obs = (y - 1).astype("int64")
        if link == "logit":
            return pm.OrderedLogistic(name, eta=eta, cutpoints=dp["Intercept"], observed=obs, dims=nm.OBS_DIM,
                                      compute_p=False)
        return pm.OrderedProbit(name, eta=eta, cutpoints=dp["Intercept"], sigma=1.0, observed=obs,
                                dims=nm.OBS_DIM, compute_p=False)
    mu = {"log": pt.exp, "identity": lambda e: e, "logit": pm.math.invlogit, "inverse": lambda e: 1.0 / e}[link](eta)
    kw = dict(observed=y, dims=nm.OBS_DIM)
    if fam.name == "negbinomial":
        return pm.NegativeBinomial(name, mu=mu, alpha=dp["shape"], **kw)
    if fam.name == "zero_inflated_poisson":
        return pm.ZeroInflatedPoisson(name, psi=1.0 - dp["zi"], mu=mu, **kw)
    if fam.name == "zero_inflated_negbinomial":
        return pm.ZeroInflatedNegativeBinomial(name, psi=1.0 - dp["zi"], mu=mu, alpha=dp["shape"], **kw)
    if fam.name == "student":
        return pm.StudentT(name, nu=dp["nu"], mu=mu, sigma=dp["sigma"], **kw)
    if fam.name == "Gamma":
        return pm.Gamma(name, alpha=dp["shape"], beta=dp["shape"] / mu, **kw)
    if fam.name == "beta":
        return pm.Beta(name, alpha=mu * dp["phi"], beta=(1.0 - mu) * dp["phi"], **kw)
    if fam.name == "gaussian":
        return pm.Normal(name, mu=mu, sigma=dp["sigma"], **kw)
    raise BuildError(f"no PyMC model for family {fam.name!r}")


def _inverse_link(link: str, eta):
    if link == "logit":
        return pm.math.invlogit(eta)
    if link == "probit":
        return 0.5 * pt.erfc(-eta / np.sqrt(2.0))
    return 1.0 - pt.exp(-pt.exp(eta))
