"""Checking a Bayesian fit: prior sensitivity, LOO, leave-one-group-out, comparison.

Power-scaling sensitivity and PSIS-LOO come from arviz-stats; this module only
feeds them the right quantities: the hyperparameters' log prior (not the random
effects' population density) and, for leave-one-group-out, each group's exact
marginal log-likelihood with its random effects integrated out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import naming as nm
from .errors import BayesmerError
from .sampling import _pointwise

__all__ = [
    "CheckError",
    "SweepResult",
    "sensitivity",
    "loo",
    "logo",
    "group_loglik",
    "compare",
]


class CheckError(BayesmerError, ValueError):
    """A check that cannot run on the fits given, with the reason."""


def _require(fit, *groups: str) -> None:
    have = set(fit.idata.children)
    missing = [g for g in groups if g not in have]
    if missing:
        raise CheckError(
            f"the fit's DataTree has no {' or '.join(missing)} group; bayesmer.fit always writes it: "
            "was the tree edited, or loaded from a file that is not a bayesmer fit?"
        )


def _hyper_draws(fit) -> dict[str, np.ndarray]:
    """Hyperparameter draws keyed by their labels (:mod:`bayesmer.naming`), shape (chain, draw)."""
    post = fit.idata["posterior"]
    d = fit.design
    glmm = getattr(fit, "glmm", None)
    fixed_names = d.fixed_names if glmm is None else glmm.fixed_names  # cumulative's X has no intercept
    out: dict[str, np.ndarray] = {}
    if len(fixed_names):
        beta = post[nm.BETA].values
        for j, name in enumerate(fixed_names):
            out[name] = beta[..., j]
    for t in (d.terms if glmm is None else glmm.terms):
        sd = post[nm.sd_var(t.name)].values
        for c, col in enumerate(t.terms):
            out[nm.sd_label(col, t.name)] = sd[..., c]
        if t.k > 1:
            corr = post[nm.corr_var(t.name)].values
            for p, (i, j) in enumerate(nm.pairs(t.k)):
                out[nm.corr_label(t.terms[i], t.terms[j], t.name)] = corr[..., p]
    if glmm is None:
        out[nm.SIGMA] = post[nm.SIGMA].values
    for name in getattr(fit.built, "dpars", ()):  # a family's own parameters, brms's labels
        v = post[name].values
        if v.ndim == 3:
            for k in range(v.shape[-1]):
                out[nm.threshold_label(k + 1)] = v[..., k]
        else:
            out[name] = v
    return out


_DIAGNOSIS = {
    "potential prior-data conflict": "prior-data conflict",
    "potential strong prior / weak likelihood": "strong prior / weak likelihood",
}


def sensitivity(fit, threshold: float = 0.05) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity of every hyperparameter.

    Importance-reweights the posterior by the power-scaled hyperparameter prior
    or likelihood (Kallioinen et al. 2024, through arviz-stats), no refit.

    Parameters
    ----------
    fit : BayesFit
    threshold : float
        Sensitivity above which a parameter is flagged (priorsense's 0.05).

    Returns
    -------
    DataFrame
        Indexed by parameter, columns ``prior``, ``likelihood`` and
        ``diagnosis`` (empty when fine, else ``"prior-data conflict"`` or
        ``"strong prior / weak likelihood"``).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> bayesmer.sensitivity(fit).index.tolist()[:2]
    ['(Intercept)', 'Days']
    """
    from arviz_base import from_dict
    from arviz_stats import psense_summary

    _require(fit, "log_prior")
    draws = _hyper_draws(fit)
    lp = fit.idata["log_prior"].to_dataset()
    if "log_likelihood" in fit.idata.children:
        ll = fit.idata["log_likelihood"].to_dataset()
    else:
        post = fit.idata["posterior"]
        size = post.sizes["chain"] * post.sizes["draw"] * fit.design.n
        if size > _ON_DEMAND_LIMIT:
            raise CheckError(
                f"power-scaling needs the pointwise log-likelihood ({size:.2g} values) that the fit did not "
                "store; refit with log_likelihood=True, or with fewer draws"
            )
        ll = _pointwise_tree(fit, 1)["log_likelihood"].to_dataset()
    tree = from_dict(
        {
            "posterior": draws,
            "log_prior": {k: v.values for k, v in lp.data_vars.items()},
            "log_likelihood": {k: v.values for k, v in ll.data_vars.items()},
        },
    )
    table = psense_summary(tree, threshold=threshold, round_to=6)
    table.index = [str(i) for i in table.index]
    table["diagnosis"] = [_DIAGNOSIS.get(v, "") for v in table["diagnosis"]]
    return table[["prior", "likelihood", "diagnosis"]]


@dataclass(frozen=True, eq=False)
class SweepResult:
    """A prior sweep: one refit per grid point.

    Attributes
    ----------
    table : DataFrame
        Tidy: the grid's columns, then component, group, name and the
        posterior summary columns of each refit.
    fits : dict
        Grid point (tuple of prior strings) -> BayesFit.

    Examples
    --------
    >>> import bayesmer
    >>> dye = bayesmer.datasets.load("dyestuff")
    >>> fit = bayesmer.fit("Yield ~ 1 + (1 | Batch)", dye, draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> sweep = bayesmer.prior_sweep(fit, {"sigma": ["HalfCauchy(10)", "HalfCauchy(100)"]})
    >>> len(sweep.fits)
    2
    >>> fig = sweep.plot()
    """

    table: pd.DataFrame
    fits: dict = field(repr=False)

    def plot(self):
        """Posterior mean and 94% HDI of every summary row along the grid."""
        import matplotlib.pyplot as plt

        keys = [c for c in self.table.columns if c.startswith("prior:")]
        t = self.table.assign(setting=self.table[keys].astype(str).agg(" / ".join, axis=1))
        rows = t[["component", "group", "name"]].drop_duplicates().to_records(index=False)
        ncol = 3
        nrow = -(-len(rows) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.6 * nrow), squeeze=False)
        settings = list(dict.fromkeys(t["setting"]))
        for ax, (comp, grp, name) in zip(axes.ravel(), rows):
            sub = t[(t.component == comp) & (t.group == grp) & (t.name == name)].set_index("setting").loc[settings]
            x = np.arange(len(settings))
            ax.errorbar(
                x, sub["mean"], yerr=[sub["mean"] - sub["hdi_3%"], sub["hdi_97%"] - sub["mean"]], fmt="o"
            )
            if "reml" in sub and np.isfinite(sub["reml"].iloc[0]):
                ax.axhline(sub["reml"].iloc[0], color="C1", lw=0.8, label="REML")
            ax.set_xticks(x, settings, rotation=30, fontsize=7, ha="right")
            ax.set_title(f"{comp} {grp} {name}".replace("  ", " "), fontsize=9)
        for ax in axes.ravel()[len(rows):]:
            ax.set_visible(False)
        fig.tight_layout()
        return fig


# pointwise log-likelihoods computed on demand stay below this many values (400 MB)
_ON_DEMAND_LIMIT = 50_000_000


def _pointwise_tree(fit, thin: int):
    """posterior + log_likelihood of every ``thin``-th draw, computed from the draws (nothing stored)."""
    import xarray as xr

    d = fit.design
    post = fit.idata["posterior"].to_dataset().isel(draw=slice(None, None, thin))
    c, n_draw = post.sizes["chain"], post.sizes["draw"]

    def stack(name):
        a = post[name].transpose("chain", "draw", ...).to_numpy()
        return a.reshape((-1,) + a.shape[2:])

    beta = stack(nm.BETA) if d.p else np.zeros((c * n_draw, 0))
    sigma = stack(nm.SIGMA)
    bs = [stack(nm.b_var(t.name)) for t in d.terms]
    y = d.y
    if getattr(d, "sums", None) is not None:  # data not in memory: one chunk of rows at a time
        from .sampling import _pointwise_chunked

        ll = _pointwise_chunked(
            d, beta, sigma, bs, lambda eta, sg, y: -0.5 * np.log(2 * np.pi * sg**2) - 0.5 * ((y - eta) / sg) ** 2)
    else:
        ll = _pointwise(
            d, beta, sigma, bs, lambda eta, sg, s: -0.5 * np.log(2 * np.pi * sg**2) - 0.5 * ((y - eta) / sg) ** 2
        )
    loglik = xr.Dataset(
        {d.response: (("chain", "draw", nm.OBS_DIM), ll.reshape(c, n_draw, -1))},
        coords={"chain": post.chain, "draw": post.draw, nm.OBS_DIM: np.arange(d.n)},
    )
    return xr.DataTree.from_dict({"posterior": post[[nm.SIGMA]], "log_likelihood": loglik})


def loo(fit, thin: int | None = None, **kwargs):
    """PSIS-LOO over rows (arviz-stats), conditional on the random effects.

    Uses the stored ``log_likelihood`` group. When :func:`bayesmer.fit` did
    not store it (draws x rows above 5e7 by default), it is computed here from
    the draws, without keeping it, as long as it stays below 5e7 values;
    beyond that, ``thin`` keeps every ``thin``-th draw (the error says which
    value fits).

    Parameters
    ----------
    fit : BayesFit
    thin : int, optional
        Keep every ``thin``-th draw of each chain when the log-likelihood is
        computed here.
    **kwargs
        Passed to ``arviz_stats.loo``.

    Returns
    -------
    ELPDData
        arviz-stats' PSIS-LOO result, one Pareto k per row.

    Raises
    ------
    CheckError
        When the log-likelihood is not stored and would be too large, with the
        ``thin`` to pass.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> int(bayesmer.checking.loo(fit).n_data_points)
    180
    """
    from arviz_stats import loo as az_loo

    if "log_likelihood" in fit.idata.children and thin is None:
        return az_loo(fit.idata, **kwargs)
    post = fit.idata["posterior"]
    S = post.sizes["chain"] * post.sizes["draw"]
    n = fit.design.n
    if thin is None:
        need = -(-S * n // _ON_DEMAND_LIMIT)
        if need > 1:
            raise CheckError(
                f"the pointwise log-likelihood of {S} draws x {n} rows ({S * n:.2g} values, "
                f"{S * n * 8 / 1e9:.1f} GB) was not stored; pass thin={need} to fit.loo() or compare() (keeps "
                f"{-(-post.sizes['draw'] // need)} draws per chain, computed on the fly), refit with "
                "log_likelihood=True to store it all, or use fit.logo() (exact group marginals, any size)"
            )
        thin = 1
    if isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1:
        raise CheckError(f"thin must be an integer >= 1, got {thin!r}")
    return az_loo(_pointwise_tree(fit, int(thin)), **kwargs)


def _outer_factor(design, group: str | None) -> tuple[str, ...] | None:
    """The factor whose groups carry all random effects (single or nested), if any.

    Terms on ``a``, ``a:b``, ``a:b:c`` all nest within ``a``: each group of
    ``a`` then holds its own random effects and is independent of the others
    given the hyperparameters, so its marginal likelihood is exact.
    """
    factors = [t.factors for t in design.terms]
    outer = min(factors, key=len)
    if all(f[: len(outer)] == outer for f in factors):
        if group is None or tuple(group.split(":")) == outer:
            return outer
    return None


def _group_codes(design, factors: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    for t in design.terms:
        if t.factors == factors:
            return t.codes, t.levels
    names = [t.group for t in design.terms]
    raise CheckError(f"no random-effect term is grouped by {':'.join(factors)!r}; groups: {names}")


def _group_blocks(design, codes: np.ndarray, G: int):
    """Per outer group, the columns of its random effects, padded to a common width Q.

    Returns the dense (n, Q) rows of Z in each group's own columns, and for
    each group and pair of columns the index of the entry of L (the terms'
    Cholesky factors, flattened and concatenated) that sits there, or the last
    index (a zero) off the diagonal blocks and in the padding.
    """
    n = design.n
    slots_term, slots_col, slots_block = [], [], []  # per group, lists over its columns
    row_slot = []  # per term, (n,) first column of the row's block
    width = np.zeros(G, dtype=np.int64)
    block_id = 0
    per_group = [[] for _ in range(G)]
    for ti, t in enumerate(design.terms):
        pairs = np.unique(np.stack([codes, t.codes], axis=1), axis=0)  # (outer, level) blocks, sorted
        start = np.empty(len(pairs), dtype=np.int64)
        for b, (g, lev) in enumerate(pairs):
            start[b] = width[g]
            width[g] += t.k
            per_group[g].extend((ti, a, block_id + b) for a in range(t.k))
        block_id += len(pairs)
        where = np.searchsorted(pairs[:, 0] * (t.n_levels + 1) + pairs[:, 1], codes * (t.n_levels + 1) + t.codes)
        row_slot.append(start[where])
    Q = int(width.max())
    Zd = np.zeros((n, Q))
    rows = np.arange(n)
    for t, s0 in zip(design.terms, row_slot):
        for a in range(t.k):
            Zd[rows, s0 + a] += t.Z[:, a]
    offsets = np.cumsum([0] + [t.k * t.k for t in design.terms])
    zero = int(offsets[-1])
    idx = np.full((G, Q, Q), zero, dtype=np.int64)
    for g in range(G):
        for c1, (t1, a1, b1) in enumerate(per_group[g]):
            for c2, (t2, a2, b2) in enumerate(per_group[g]):
                if b1 == b2:
                    idx[g, c1, c2] = offsets[t1] + a1 * design.terms[t1].k + a2
    return Zd, idx


def _group_stats_from_sums(d, outer):
    """:func:`group_loglik`'s per-group statistics from the sums of data not in memory
    (:mod:`bayesmer.sources`): the first factor's per-level Z'Z, Z'X, Z'e, X'X, X'e, e'e."""
    s = d.sums
    if len(s.blk_G) > 1 or d.terms[0].factors != outer:
        raise CheckError("data not in memory: the exact group marginals need a single grouping factor")
    if d.terms[0].terms[0] != "(Intercept)":
        raise CheckError("data not in memory: the exact group marginals need a random intercept")
    n_j = s.A11[:, 0, 0]  # the intercept's column: the rows per group
    p = d.p
    beta_c = np.linalg.lstsq(s.XtX, s.Xty, rcond=None)[0] if p else np.zeros(0)
    beta0 = beta_c.copy()
    if s.y_centre:
        from .engine.collapsed import _intercept_column

        beta0[_intercept_column(s)] += s.y_centre
    Zte = s.A1y - s.A1X @ beta_c
    Xte = s.G1Xy - s.G1XtX @ beta_c
    ete = s.G1yy - 2 * s.G1Xy @ beta_c + np.einsum("p,gpq,q->g", beta_c, s.G1XtX, beta_c)
    # the block's columns are the terms' in the design's order: L's entries within each term's square
    Q = s.A11.shape[1]
    offsets = np.cumsum([0] + [t.k * t.k for t in d.terms])
    idx = np.full((len(n_j), Q, Q), int(offsets[-1]), dtype=np.int64)
    col = 0
    for ti, t in enumerate(d.terms):
        for a1 in range(t.k):
            for a2 in range(t.k):
                idx[:, col + a1, col + a2] = offsets[ti] + a1 * t.k + a2
        col += t.k
    return n_j, s.A11, s.A1X, Zte, s.G1XtX, Xte, ete, beta0, idx


def group_loglik(fit, group: str | None = None, chunk: int = 250) -> np.ndarray:
    """Each group's exact marginal log-likelihood per draw, shape (chain, draw, groups).

    The group's random effects, of every term nested in it, are integrated
    out: ``y_j ~ N(X_j beta, sigma^2 I + Z_j Psi_j Z_j')``, evaluated with the
    matrix determinant lemma and Woodbury's identity from per-group sufficient
    statistics, all groups and a chunk of draws at once (numpy batched
    Cholesky; no Python loop over groups).

    Parameters
    ----------
    fit : BayesFit
        A Gaussian fit.
    group : str, optional
        The grouping factor; default the outermost one.
    chunk : int
        Draws evaluated at once (memory grows with chunk x groups).

    Returns
    -------
    ndarray
        Shape ``(chain, draw, groups)``.

    Raises
    ------
    CheckError
        When the terms are crossed: groups are then not independent.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> bayesmer.checking.group_loglik(fit).shape
    (2, 200, 18)
    """
    d = fit.design
    outer = _outer_factor(d, group)
    if outer is None:
        raise CheckError(
            "exact group marginals need every random-effect term nested in the group "
            f"({[t.group for t in d.terms]} are crossed); use logo(fit, group=...) for the "
            "conditional version"
        )
    codes, levels = _group_codes(d, outer)
    G = len(levels)
    shape = fit.idata["posterior"][nm.SIGMA].shape
    if getattr(d, "sums", None) is not None:
        n_j, ZtZ, ZtX, Zte, XtX, Xte, ete, beta0, idx = _group_stats_from_sums(d, outer)
    else:
        Zd, idx = _group_blocks(d, codes, G)
        X = d.X
        # residuals about the least-squares fit keep r'r free of cancellation when y has a large mean
        y = d.y if d.offset is None else d.y - d.offset
        beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if d.p else np.zeros(0)
        e = y - X @ beta0
        n_j = np.bincount(codes, minlength=G).astype(float)
        ZtZ = np.zeros((G,) + idx.shape[1:])
        np.add.at(ZtZ, codes, Zd[:, :, None] * Zd[:, None, :])
        ZtX = np.zeros((G, Zd.shape[1], d.p))
        np.add.at(ZtX, codes, Zd[:, :, None] * X[:, None, :])
        Zte = np.zeros((G, Zd.shape[1]))
        np.add.at(Zte, codes, Zd * e[:, None])
        XtX = np.zeros((G, d.p, d.p))
        np.add.at(XtX, codes, X[:, :, None] * X[:, None, :])
        Xte = np.zeros((G, d.p))
        np.add.at(Xte, codes, X * e[:, None])
        ete = np.bincount(codes, weights=e * e, minlength=G)
    beta = fit.draws(nm.BETA) if d.p else np.zeros((int(np.prod(shape)), 0))
    sigma = fit.draws(nm.SIGMA)
    Lflat = np.concatenate([fit.cov_factor(t.name).reshape(sigma.shape[0], -1) for t in d.terms]
                           + [np.zeros((sigma.shape[0], 1))], axis=1)
    S = sigma.shape[0]
    Q = idx.shape[1]
    out = np.empty((S, G))
    for lo in range(0, S, chunk):
        s = slice(lo, min(S, lo + chunk))
        s2 = sigma[s] ** 2
        L = Lflat[s][:, idx]  # (s, G, Q, Q)
        delta = beta[s] - beta0
        rtr = ete - 2 * delta @ Xte.T + np.einsum("sp,gpq,sq->sg", delta, XtX, delta)
        Ztr = Zte[None] - np.einsum("gqp,sp->sgq", ZtX, delta)
        u = np.einsum("sgqa,sgq->sga", L, Ztr)
        M = np.einsum("sgqa,gqr,sgrb->sgab", L, ZtZ, L) / s2[:, None, None, None] + np.eye(Q)
        C = np.linalg.cholesky(M)
        w = np.linalg.solve(C, u[..., None])[..., 0]
        logdet = 2 * np.log(np.diagonal(C, axis1=-2, axis2=-1)).sum(-1)
        quad = rtr - (w**2).sum(-1) / s2[:, None]
        out[s] = -0.5 * n_j * np.log(2 * np.pi * s2[:, None]) - 0.5 * logdet - quad / (2 * s2[:, None])
    return out.reshape(shape + (G,))


def logo(fit, group: str | None = None, **kwargs):
    """Leave-one-group-out cross-validation by PSIS over groups.

    When every term is nested in ``group`` (the default: the outermost
    grouping factor), each group's random effects are integrated out exactly
    (Gaussian model), so no refit and no approximation of that integral is
    needed. For crossed terms the groups are not independent; name ``group``
    and the pointwise log-likelihood, conditional on the random effects, is
    summed within each of its groups (brms' grouped LOO), with a warning.

    Parameters
    ----------
    fit : BayesFit
    group : str, optional
        The grouping factor whose groups are left out; default the outermost
        factor when every term nests in it. Crossed terms need it named.
    **kwargs
        Passed to ``arviz_stats.loo``.

    Returns
    -------
    ELPDData
        arviz-stats' PSIS result over groups, one Pareto k per group.

    Examples
    --------
    >>> import bayesmer
    >>> pastes = bayesmer.datasets.load("pastes")
    >>> fit = bayesmer.fit("strength ~ 1 + (1 | batch/cask)", pastes,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> int(bayesmer.checking.logo(fit).n_data_points)  # the 10 batches, casks nested in them
    10
    """
    import warnings

    from arviz_base import from_dict
    from arviz_stats import loo as az_loo

    d = fit.design
    if getattr(fit, "glmm", None) is not None:
        return _logo_glmm(fit, group, **kwargs)
    outer = _outer_factor(d, group)
    if outer is not None:
        _, levels = _group_codes(d, outer)
        ll = group_loglik(fit, ":".join(outer))
        name = ":".join(outer)
    else:
        if group is None:
            raise CheckError(
                f"the random-effect terms {[t.group for t in d.terms]} are crossed: name the "
                "factor to leave out, e.g. logo(fit, group=...)"
            )
        codes, levels = _group_codes(d, tuple(group.split(":")))
        warnings.warn(
            f"terms are crossed: leaving out groups of {group!r} with the log-likelihood "
            "conditional on the random effects, not the exact marginal",
            UserWarning,
            stacklevel=2,
        )
        tree = fit.idata if "log_likelihood" in fit.idata.children else _pointwise_tree(fit, 1)
        pointwise = np.asarray(tree["log_likelihood"][d.response].values)
        G = len(levels)
        ll = np.stack([np.bincount(codes, weights=row, minlength=G) for row in pointwise.reshape(-1, d.n)])
        ll = ll.reshape(pointwise.shape[:2] + (G,))
        name = group
    tree = from_dict(
        {"posterior": {nm.SIGMA: fit.idata["posterior"][nm.SIGMA].values}, "log_likelihood": {name: ll}},
        dims={name: [nm.level_dim(name)]},
        coords={nm.level_dim(name): list(levels)},
    )
    return az_loo(tree, **kwargs)


def _logo_glmm(fit, group, **kwargs):
    """Leave-one-group-out for a binomial or Poisson fit: PSIS over groups of the conditional log-likelihood.

    No exact group marginal exists off the Gaussian family, so each group's
    rows' log-likelihoods given its effects are summed (brms's grouped LOO); a
    warning says so, and Pareto k says when the importance sampling fails.
    """
    import warnings

    from arviz_base import from_dict
    from arviz_stats import loo as az_loo

    gd, built = fit.glmm, fit.built
    names = [t.group for t in gd.terms]
    group = names[0] if group is None else group
    term = next((t for t in gd.terms if t.group == group or t.name == group), None)
    if term is None:
        raise CheckError(f"no random-effect term groups by {group!r}; the grouping factors are {names}")
    if "log_likelihood" not in fit.idata.children:
        raise CheckError("the fit has no log_likelihood group: refit with log_likelihood=True")
    warnings.warn(
        f"a {gd.family.name} model has no exact group marginal: leaving out groups of {group!r} with the "
        "log-likelihood conditional on the random effects (check Pareto k)",
        UserWarning,
        stacklevel=3,
    )
    pointwise = np.asarray(fit.idata["log_likelihood"][built.response].values)
    n, G = pointwise.shape[-1], term.n_levels
    ll = np.stack([np.bincount(term.codes, weights=row, minlength=G) for row in pointwise.reshape(-1, n)])
    ll = ll.reshape(pointwise.shape[:2] + (G,))
    tree = from_dict(
        {"posterior": {nm.BETA: fit.idata["posterior"][nm.BETA].values}, "log_likelihood": {group: ll}},
        dims={group: [nm.level_dim(group)]},
        coords={nm.level_dim(group): list(term.levels)},
    )
    return az_loo(tree, **kwargs)


def compare(fits: dict, thin: int | None = None, **kwargs) -> pd.DataFrame:
    """Rank fits of the same data by PSIS-LOO elpd, REML AIC/BIC beside.

    Parameters
    ----------
    fits : dict of name -> BayesFit
    thin : int, optional
        Passed to :func:`loo` for fits whose pointwise log-likelihood was not
        stored (large data); its error names the value to pass.
    **kwargs
        Passed to ``arviz_stats.compare``.

    Returns
    -------
    DataFrame
        Indexed by model name, best first: arviz-stats' compare columns
        (``elpd``, ``se``, ``elpd_diff``, ``dse``, ``weight``, ...) plus
        ``reml_aic`` and ``reml_bic``.

    Examples
    --------
    >>> import bayesmer
    >>> dye = bayesmer.datasets.load("dyestuff")
    >>> fit = bayesmer.fit("Yield ~ 1 + (1 | Batch)", dye,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> pooled = bayesmer.fit("Yield ~ 1 + (1 | Batch)", dye, {"sd": "HalfNormal(1)"},
    ...                       draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> table = bayesmer.compare({"default": fit, "tight sd": pooled})
    >>> {"elpd", "reml_aic", "reml_bic"} <= set(table.columns)
    True
    """
    from arviz_stats import compare as az_compare

    if not isinstance(fits, dict) or len(fits) < 2:
        raise CheckError("compare needs a dict of at least two named fits")
    names = list(fits)
    ref = fits[names[0]].design
    for name in names[1:]:
        d = fits[name].design
        if d.n != ref.n or not np.array_equal(d.y, ref.y):
            raise CheckError(
                f"fits {names[0]!r} and {name!r} are not of the same data "
                f"({ref.n} vs {d.n} rows, responses {ref.response!r} vs {d.response!r}); "
                "LOO can only compare models of the same observations"
            )
    # loo() computes a log-likelihood that was not stored, or says what to pass
    table = az_compare({name: loo(f, thin=thin) for name, f in fits.items()}, **kwargs)
    table["reml_aic"] = [fits[n].reml.aic for n in table.index]
    table["reml_bic"] = [fits[n].reml.bic for n in table.index]
    return table
