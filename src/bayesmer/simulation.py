"""Draw responses from a stated linear mixed model, as lme4's ``simulate``.

The model is the one ``formula`` defines on ``data`` (the design is built once)
with every parameter given: fixed effects, residual sd, and per random-effect
term the standard deviations and correlations of its columns. New random
effects are drawn for every simulation, so each draw is a fresh data set from
the marginal model, not a resample around one set of group effects.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .design import Design, ReTerm, build_design
from .errors import BayesmerError
from .formula import parse_formula

__all__ = ["SimulationError", "simulate"]


class SimulationError(BayesmerError, ValueError):
    """Parameters that do not match the model, with the culprits named."""


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _with_response(formula, data: pd.DataFrame) -> pd.DataFrame:
    """Add a placeholder response when the data lack it: it is to be drawn."""
    f = parse_formula(formula)
    name = f.response.strip()
    if name.isidentifier() and name not in data.columns:
        # any varying values do (build_design refuses a constant response); they are never read
        return data.assign(**{name: np.arange(len(data), dtype=float)})
    return data


def _from_fit(fit, design: Design) -> dict:
    """Read a fit's estimates through its ``fixef``/``sigma``/``sd``/``corr`` (or a glmer fit's ``cov_matrices``)."""
    if hasattr(fit, "cov_matrices") and not hasattr(fit, "sigma"):
        covs = fit.cov_matrices()
        fixef = fit.fixef() if callable(fit.fixef) else fit.fixef
        sd = {t.name: np.sqrt(np.diag(covs[t.name])) for t in design.terms if t.name in covs}
        corr = {}
        for t in design.terms:
            if t.k > 1 and t.name in covs:
                with np.errstate(invalid="ignore", divide="ignore"):
                    corr[t.name] = covs[t.name] / np.outer(sd[t.name], sd[t.name])
        out = {"fixef": {str(k): float(v) for k, v in fixef.items()}, "sd": sd, "corr": corr}
        dpars = getattr(fit, "dpars", None)
        if isinstance(dpars, pd.Series) and len(dpars):  # a FamilyFit's family parameters (brms's names)
            out["dpars"] = {str(k): float(v) for k, v in dpars.items()}
        return out
    missing = [a for a in ("fixef", "sigma", "sd") if not hasattr(fit, a)]
    if missing:
        raise SimulationError(
            f"params of type {type(fit).__name__} lack {missing}; pass a dict with "
            "'fixef', 'sigma', 'sd' (and 'corr'), or a fit with fixef, sigma, sd(name) and corr(name)"
        )
    fixef = fit.fixef()
    sigma = fit.sigma() if callable(fit.sigma) else fit.sigma
    sd, corr = {}, {}
    for term in design.terms:
        try:
            sd[term.name] = fit.sd(term.name)
            if term.k > 1:
                corr[term.name] = fit.corr(term.name)
        except (KeyError, ValueError, IndexError) as exc:
            raise SimulationError(
                f"the fit has no estimates for random-effect term {term.name!r} {term.label}: {exc}"
            ) from exc
    if isinstance(fixef, pd.Series):
        fixef = {str(k): float(v) for k, v in fixef.items()}
    return {"fixef": fixef, "sigma": sigma, "sd": sd, "corr": corr}


def _as_dict(params, design: Design) -> dict:
    if isinstance(params, Mapping):
        return dict(params)
    if hasattr(params, "params") and callable(params.params):
        got = params.params()
        if not isinstance(got, Mapping):
            raise SimulationError(f"{type(params).__name__}.params() returned {type(got).__name__}, not a dict")
        return dict(got)
    return _from_fit(params, design)


def _check_keys(given: Mapping, names, what: str, valid: str) -> None:
    """Raise naming the missing and unknown keys of ``given`` against ``names``."""
    missing = [k for k in names if k not in given]
    unknown = [k for k in given if k not in names]
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise SimulationError(f"{what}: {'; '.join(parts)}; {valid}")


def _fixef(value, design: Design, names=None) -> np.ndarray:
    names = design.fixed_names if names is None else names
    if isinstance(value, pd.Series):
        value = {str(k): v for k, v in value.items()}
    if isinstance(value, Mapping):
        _check_keys(value, names, "params['fixef'] does not match the fixed effects",
                    f"the model's fixed effects are {list(names)}")
        return np.array([float(value[k]) for k in names])
    beta = np.asarray(value, dtype=float).reshape(-1)
    if beta.size != len(names):
        raise SimulationError(
            f"params['fixef'] has {beta.size} value(s) for {len(names)} fixed effects {list(names)}"
        )
    return beta


def _term_cov_factor(term: ReTerm, sd_value, corr_value) -> np.ndarray:
    """Lower Cholesky factor of the term's covariance, shape (k, k)."""
    k = term.k
    sd = np.asarray(sd_value, dtype=float).reshape(-1)
    if sd.size != k:
        raise SimulationError(
            f"params['sd'][{term.name!r}] has {sd.size} value(s); term {term.label} has {k} "
            f"column(s) {list(term.terms)}"
        )
    if np.any(~np.isfinite(sd)) or np.any(sd < 0):
        raise SimulationError(f"params['sd'][{term.name!r}] must be finite and >= 0, got {sd.tolist()}")
    if k == 1:
        return sd.reshape(1, 1)
    if corr_value is None:
        raise SimulationError(
            f"params['corr'] lacks {term.name!r}: term {term.label} has {k} correlated columns "
            f"{list(term.terms)}; give a {k} x {k} correlation matrix"
            + (" or one number" if k == 2 else "")
        )
    corr = np.asarray(corr_value, dtype=float)
    if corr.ndim == 0:
        if k != 2:
            raise SimulationError(
                f"params['corr'][{term.name!r}] is one number but term {term.label} has {k} columns; "
                f"give a {k} x {k} matrix"
            )
        corr = np.array([[1.0, float(corr)], [float(corr), 1.0]])
    if corr.shape != (k, k):
        raise SimulationError(f"params['corr'][{term.name!r}] has shape {corr.shape}; term {term.label} needs ({k}, {k})")
    # A fit reports NaN correlations for a column whose sd is 0 (a singular
    # fit); they do not matter then, so read them as 0.
    corr = np.where(np.isnan(corr) & (np.outer(sd, sd) == 0), 0.0, corr)
    np.fill_diagonal(corr, 1.0)
    if not np.allclose(corr, corr.T) or not np.allclose(np.diag(corr), 1.0):
        raise SimulationError(f"params['corr'][{term.name!r}] must be symmetric with a unit diagonal")
    cov = corr * np.outer(sd, sd)
    # A singular covariance (a zero sd, |corr| = 1) is a legal model: factor it
    # by eigenvalues rather than Cholesky, which would refuse it.
    w, v = np.linalg.eigh(cov)
    if w.min() < -1e-8 * max(1.0, w.max()):
        raise SimulationError(f"params['corr'][{term.name!r}] is not a valid correlation matrix (not positive semi-definite)")
    return v * np.sqrt(np.clip(w, 0.0, None))


def _lookup(table, key: str, what: str, design: Design):
    if not isinstance(table, Mapping):
        raise SimulationError(f"params[{what!r}] must be a dict keyed by term name, not {type(table).__name__}")
    return table.get(key)


def simulate(formula, data: pd.DataFrame, params, seed=None, nsim: int = 1, family=None, link=None, weights=None):
    """Draw responses from the mixed model ``formula`` with stated parameters.

    Parameters
    ----------
    formula : str
        An lme4 formula; its response need not be in ``data`` (it is drawn).
    data : DataFrame
        The covariates and grouping factors of the rows to simulate.
    params : dict or fit
        ``{"fixef": {name: value} or array, "sigma": float,
        "sd": {term: [sd per column]}, "corr": {term: k x k matrix}}``; a
        number stands for the 2 x 2 correlation of a two-column term and
        ``corr`` is not needed for one-column terms. Term names are the
        design's (``"Subject"``, ``"Subject.1"`` for a second term on the same
        factor). An object with a ``params()`` method returning such a dict, or
        a fit with ``fixef``, ``sigma``, ``sd(name)`` and ``corr(name)`` (a
        REML fit), is read the same way.
    seed : int, Generator or None
    nsim : int
        Number of independent response vectors.
    family, link : str, optional
        ``"binomial"`` (logit, probit, cloglog) or ``"poisson"`` (log): the
        responses are drawn from the family at ``g⁻¹(Xβ + Zb + offset)``, and
        ``params`` needs no ``sigma`` (a glmer fit is read as it is). The
        formula's response may be ``cbind(successes, failures)``. Any other
        family of :mod:`bayesmer.families` (``negbinomial``,
        ``zero_inflated_poisson``, ``zero_inflated_negbinomial``, ``student``,
        ``Gamma``, ``lognormal``, ``beta``, ``cumulative``, by brms's name or
        an alias) draws from that family at ``η = Xβ + Zb + offset`` with its
        parameters ``params["dpars"]`` (brms's names: ``{"shape": 2.0}``,
        ``{"sigma": 0.5, "nu": 4}``, ``{"Intercept": [-1, 0.5, 2]}`` or
        ``"Intercept[1]"``, ... for the thresholds of ``cumulative``, whose
        ``η`` has no intercept); a :func:`bayesmer.glmmtmb` fit is read as it
        is (its ``dpars`` included; its family and link when ``family`` is
        not given).
    weights : str or array-like, optional
        The binomial's numbers of trials per row (a column name or values);
        one trial (a 0/1 response) when not given.

    Returns
    -------
    Series (nsim=1) or DataFrame with columns ``sim_1 .. sim_nsim``
        Indexed like the rows of ``data`` used (rows with missing covariates
        are dropped, as in fitting). The binomial's are numbers of successes,
        the Poisson's counts; ``cumulative``'s are ordered categoricals with
        the response's categories (those of ``data``'s response column, or
        of the fit's, else ``1`` .. ``K``).

    Raises
    ------
    SimulationError
        Naming the missing, unknown or malformed parameters.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> params = {"fixef": {"(Intercept)": 250.0, "Days": 10.0}, "sigma": 25.0,
    ...           "sd": {"Subject": [25.0, 6.0]}, "corr": {"Subject": 0.1}}
    >>> y = bayesmer.simulate("Reaction ~ Days + (Days | Subject)", sleep, params, seed=1)
    >>> len(y)
    180
    >>> sims = bayesmer.simulate("Reaction ~ Days + (Days | Subject)", sleep,
    ...                          bayesmer.reml("Reaction ~ Days + (Days | Subject)", sleep), seed=1, nsim=3)
    >>> sims.shape
    (180, 3)
    >>> counts = bayesmer.simulate("n ~ Days + (1 | Subject)", sleep,
    ...                            {"fixef": [1.0, 0.2], "sd": {"Subject": [0.5]}, "dpars": {"shape": 2.0}},
    ...                            family="negbinomial", seed=1)
    >>> bool((counts >= 0).all() and (counts == counts.round()).all())
    True
    """
    if not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise SimulationError(f"nsim must be a positive integer, got {nsim!r}")
    from .family import get_family
    from .settings import LINKS, check

    from .families import ResponseFamily

    fit_family = getattr(params, "family", None)
    if family is None and isinstance(fit_family, ResponseFamily):  # a glmmtmb fit: its family and link
        family, link = fit_family.name, fit_family.link if link is None else link
    name = None if family is None else check("family", family)  # brms's name of an alias
    if name == "bernoulli":
        name = "binomial"
    if name not in (None, "gaussian", *LINKS):
        return _simulate_family(formula, data, params, seed, nsim, name, link)
    fam = None if name in (None, "gaussian") else get_family(name, link)
    if fam is not None:
        from .glmm_design import RESPONSE_COLUMN, parse_glmm_formula

        label, f = parse_glmm_formula(formula)
        if not isinstance(data, pd.DataFrame):
            raise SimulationError(f"data must be a pandas DataFrame, not {type(data).__name__}")
        design = build_design(f, data.assign(**{RESPONSE_COLUMN: np.arange(len(data), dtype=float)}))
    else:
        if isinstance(data, pd.DataFrame):
            data = _with_response(formula, data)
        design = build_design(formula, data)
    p = _as_dict(params, design)
    known = {"fixef", "sigma", "sd", "corr"}
    unknown = sorted(set(p) - known)
    if unknown:
        raise SimulationError(f"unknown key(s) {unknown} in params; the keys are {sorted(known)}")
    missing = [k for k in (("fixef",) if fam is not None else ("fixef", "sigma")) if k not in p]
    if "sd" not in p and design.terms:
        missing.append("sd")
    if missing:
        raise SimulationError(f"params lack {missing}; the keys are 'fixef', 'sigma', 'sd' and 'corr'")

    beta = _fixef(p["fixef"], design)
    sigma = np.asarray(p.get("sigma", 0.0), dtype=float)
    if sigma.size != 1 or not np.isfinite(sigma) or float(sigma) < 0:
        raise SimulationError(f"params['sigma'] must be one finite number >= 0, got {p['sigma']!r}")
    sigma = float(sigma)

    sd_table = p["sd"]
    corr_table = p.get("corr") or {}
    names = [t.name for t in design.terms]
    if isinstance(sd_table, Mapping):
        _check_keys(sd_table, names, "params['sd'] does not match the random-effect terms",
                    "the terms are " + ", ".join(f"{t.name!r} {list(t.terms)}" for t in design.terms))
    if isinstance(corr_table, Mapping):
        extra = [k for k in corr_table if k not in names]
        if extra:
            raise SimulationError(f"params['corr'] has unknown term(s) {extra}; the terms are {names}")
    factors = [
        _term_cov_factor(t, _lookup(sd_table, t.name, "sd", design), _lookup(corr_table, t.name, "corr", design))
        for t in design.terms
    ]

    rng = _rng(seed)
    mu = design.X @ beta if design.p else np.zeros(design.n)
    if design.offset is not None:
        mu = mu + design.offset
    trials = _trials(weights, data, design) if fam is not None and fam.name == "binomial" else None
    out = np.empty((design.n, nsim))
    for s in range(nsim):
        y = mu.copy()
        for term, L in zip(design.terms, factors):
            b = rng.standard_normal((term.n_levels, term.k)) @ L.T
            y += np.einsum("ij,ij->i", term.Z, b[term.codes])
        if fam is None:
            out[:, s] = y + sigma * rng.standard_normal(design.n)
        elif trials is not None:
            out[:, s] = rng.binomial(trials, fam.link.linkinv(y))
        else:
            out[:, s] = rng.poisson(fam.link.linkinv(y))
    index = design.frame.index
    name = design.response if fam is None else label
    if nsim == 1:
        return pd.Series(out[:, 0], index=index, name=name)
    return pd.DataFrame(out, index=index, columns=[f"sim_{i + 1}" for i in range(nsim)])


def _trials(weights, data: pd.DataFrame, design: Design) -> np.ndarray:
    """The binomial's trials per kept row: ``weights`` (a column or values), else one."""
    if weights is None:
        return np.ones(design.n, dtype=np.int64)
    if isinstance(weights, str):
        if weights not in data.columns:
            raise SimulationError(f"unknown weights column {weights!r}; the data has {list(data.columns)}")
        values = data.loc[design.frame.index, weights].to_numpy(dtype=float)
    else:
        values = np.asarray(weights, dtype=float).reshape(-1)
        if values.size != len(data):
            raise SimulationError(f"weights has {values.size} values for {len(data)} rows")
        values = values[data.index.get_indexer(design.frame.index)]
    if np.any(values < 0) or np.any(values != np.round(values)):
        bad = design.frame.index[(values < 0) | (values != np.round(values))]
        raise SimulationError(f"the binomial's trials must be whole numbers >= 0: rows {list(bad[:10])}")
    return values.astype(np.int64)


def _random_part(design: Design, terms, p: dict) -> list:
    """Each term's covariance factor from ``p["sd"]``/``p["corr"]``, checked against the terms."""
    sd_table = p["sd"] if terms else p.get("sd", {})
    corr_table = p.get("corr") or {}
    names = [t.name for t in terms]
    if isinstance(sd_table, Mapping):
        _check_keys(sd_table, names, "params['sd'] does not match the random-effect terms",
                    "the terms are " + ", ".join(f"{t.name!r} {list(t.terms)}" for t in terms))
    if isinstance(corr_table, Mapping):
        extra = [k for k in corr_table if k not in names]
        if extra:
            raise SimulationError(f"params['corr'] has unknown term(s) {extra}; the terms are {names}")
    return [_term_cov_factor(t, _lookup(sd_table, t.name, "sd", design), _lookup(corr_table, t.name, "corr", design))
            for t in terms]


def _family_dpars(fam, given, levels_k: int | None) -> dict:
    """The family's parameters from ``params["dpars"]`` (brms's names), checked: a dict as the family reads it."""
    if not isinstance(given, Mapping):
        raise SimulationError(f"params['dpars'] must be a dict of the {fam.name} family's parameters "
                              f"{fam.dpar_names()}, not {type(given).__name__}")
    given = dict(given)
    out = {}
    for d in fam.dpars:
        if d.transform == "ordered":
            keys = sorted((k for k in given if k.startswith(f"{d.name}[")), key=lambda k: int(k[len(d.name) + 1:-1])
                          if k[len(d.name) + 1:-1].isdigit() else -1)
            if d.name in given:
                value = np.asarray(given.pop(d.name), dtype=float).reshape(-1)
            elif keys:
                want = [f"{d.name}[{i + 1}]" for i in range(len(keys))]
                if keys != want:
                    raise SimulationError(f"params['dpars'] names thresholds {keys}; give {d.name}[1] .. "
                                          f"{d.name}[K-1] (or {d.name!r}: a list)")
                value = np.array([float(given.pop(k)) for k in keys])
            else:
                raise SimulationError(f"params['dpars'] lacks the thresholds {d.name!r} (K-1 increasing numbers) "
                                      "of the cumulative family")
            if value.size < 1 or not np.all(np.isfinite(value)) or np.any(np.diff(value) <= 0):
                raise SimulationError(f"the thresholds {d.name} must be finite and increasing, got {value.tolist()}")
            if levels_k is not None and value.size != levels_k - 1:
                raise SimulationError(f"{value.size} threshold(s) {d.name} for {levels_k} categories; give "
                                      f"{levels_k - 1}")
            out[d.name] = value
            continue
        if d.name not in given:
            raise SimulationError(f"params['dpars'] lacks {d.name!r}; the {fam.name} family's parameters are "
                                  f"{fam.dpar_names()}")
        value = np.asarray(given.pop(d.name), dtype=float)
        if value.size != 1 or not np.isfinite(value) or not d.lower <= float(value) <= d.upper or (
                d.transform in ("log", "logit") and float(value) in (d.lower, d.upper)) or (
                d.transform == "log1m1" and float(value) <= 1):
            raise SimulationError(f"params['dpars'][{d.name!r}] must be one number in the parameter's range "
                                  f"({d.lower}, {d.upper}){' above 1' if d.transform == 'log1m1' else ''}, got "
                                  f"{np.asarray(value).tolist()!r}")
        out[d.name] = float(value)
    if given:
        raise SimulationError(f"params['dpars'] has unknown parameter(s) {sorted(given)}; the {fam.name} family's "
                              f"parameters are {fam.dpar_names()}")
    return out


def _simulate_family(formula, data, params, seed, nsim: int, name: str, link):
    """:func:`simulate` for a family of :mod:`bayesmer.families` other than lme4's (see there)."""
    import dataclasses

    from .families import FamilyError, get_family as get_response_family
    from .glmm_design import RESPONSE_COLUMN, parse_glmm_formula

    try:
        fam = get_response_family(name).with_link(link)
    except FamilyError as exc:
        raise SimulationError(str(exc)) from None
    if not isinstance(data, pd.DataFrame):
        raise SimulationError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    label, f = parse_glmm_formula(formula)
    design = build_design(f, data.assign(**{RESPONSE_COLUMN: np.arange(len(data), dtype=float)}))
    names = list(design.fixed_names)
    X = np.asarray(design.X, dtype=float)
    if getattr(fam, "has_intercept", True) is False and "(Intercept)" in names:  # the thresholds stand for it
        j = names.index("(Intercept)")
        X, names = np.delete(X, j, axis=1), names[:j] + names[j + 1:]
    p = _as_dict(params, design)
    known = {"fixef", "sd", "corr", "dpars"}
    unknown = sorted(set(p) - known)
    if unknown:
        raise SimulationError(f"unknown key(s) {unknown} in params for the {fam.name} family; the keys are "
                              f"{sorted(known)} (its own parameters, e.g. sigma, go in 'dpars')")
    missing = [k for k in ("fixef", "dpars") if k not in p] + (["sd"] if design.terms and "sd" not in p else [])
    if missing:
        raise SimulationError(f"params lack {missing}; the keys are 'fixef', 'sd', 'corr' and 'dpars' "
                              f"(the {fam.name} family's {fam.dpar_names()})")
    beta = _fixef(p["fixef"], design, names)
    levels = ()
    if fam.name == "cumulative":
        fit_family = getattr(params, "family", None)
        if getattr(fit_family, "levels", ()):
            levels = tuple(fit_family.levels)
        elif label in data.columns and isinstance(data[label].dtype, pd.CategoricalDtype):
            levels = tuple(str(c) for c in data[label].cat.categories)
    dp = _family_dpars(fam, p["dpars"], len(levels) if levels else None)
    if fam.name == "cumulative":
        levels = levels or tuple(str(k) for k in range(1, len(dp["Intercept"]) + 2))
        fam = dataclasses.replace(fam, levels=levels)
    factors = _random_part(design, design.terms, p)
    rng = _rng(seed)
    eta0 = X @ beta if len(names) else np.zeros(design.n)
    if design.offset is not None:
        eta0 = eta0 + design.offset
    out = np.empty((design.n, nsim))
    for s in range(nsim):
        eta = eta0.copy()
        for term, L in zip(design.terms, factors):
            b = rng.standard_normal((term.n_levels, term.k)) @ L.T
            eta += np.einsum("ij,ij->i", term.Z, b[term.codes])
        out[:, s] = fam.rvs(eta, dp, None, rng)
    index = design.frame.index
    if fam.name == "cumulative":
        def cat(col):
            return pd.Categorical.from_codes(col.astype(int) - 1, categories=list(levels), ordered=True)

        if nsim == 1:
            return pd.Series(cat(out[:, 0]), index=index, name=label)
        return pd.DataFrame({f"sim_{i + 1}": cat(out[:, i]) for i in range(nsim)}, index=index)
    if nsim == 1:
        return pd.Series(out[:, 0], index=index, name=label)
    return pd.DataFrame(out, index=index, columns=[f"sim_{i + 1}" for i in range(nsim)])
