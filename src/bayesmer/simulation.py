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
        return {"fixef": {str(k): float(v) for k, v in fixef.items()}, "sd": sd, "corr": corr}
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


def _fixef(value, design: Design) -> np.ndarray:
    names = design.fixed_names
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
        formula's response may be ``cbind(successes, failures)``.
    weights : str or array-like, optional
        The binomial's numbers of trials per row (a column name or values);
        one trial (a 0/1 response) when not given.

    Returns
    -------
    Series (nsim=1) or DataFrame with columns ``sim_1 .. sim_nsim``
        Indexed like the rows of ``data`` used (rows with missing covariates
        are dropped, as in fitting). The binomial's are numbers of successes,
        the Poisson's counts.

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
    """
    if not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise SimulationError(f"nsim must be a positive integer, got {nsim!r}")
    from .family import get_family

    fam = None if family in (None, "gaussian") else get_family(family, link)
    if fam is not None:
        from .glmer_fit import RESPONSE_COLUMN, parse_glmm_formula

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
