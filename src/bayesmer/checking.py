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
import xarray as xr

__all__ = [
    "CheckError",
    "SweepResult",
    "sensitivity",
    "prior_sweep",
    "loo",
    "logo",
    "group_loglik",
    "compare",
]


class CheckError(ValueError):
    """A check that cannot run on the fits given, with the reason."""


def _require(fit, *groups: str) -> None:
    have = set(fit.idata.children)
    missing = [g for g in groups if g not in have]
    if missing:
        raise CheckError(
            f"the fit has no {' or '.join(missing)} group; refit with bayesmer.fit "
            "(which stores them) or add them to its DataTree"
        )


def _hyper_draws(fit) -> dict[str, np.ndarray]:
    """Hyperparameter draws keyed by the summary's labels, shape (chain, draw)."""
    post = fit.idata["posterior"]
    d = fit.design
    out: dict[str, np.ndarray] = {}
    beta = post["beta"].values
    for j, name in enumerate(d.fixed_names):
        out[f"fixed {name}"] = beta[..., j]
    for t in d.terms:
        sd = post[f"sd_{t.name}"].values
        for c, col in enumerate(t.terms):
            out[f"sd({col}|{t.name})"] = sd[..., c]
        if t.k > 1 and f"corr_{t.name}" in post:
            corr = post[f"corr_{t.name}"].values
            for i in range(t.k):
                for j in range(i):
                    out[f"corr({t.terms[j]},{t.terms[i]}|{t.name})"] = corr[..., i, j]
    out["sigma"] = post["sigma"].values
    return out


_DIAGNOSIS = {
    "potential prior-data conflict": "prior-data conflict",
    "potential strong prior / weak likelihood": "strong prior / weak likelihood",
}


def sensitivity(fit, threshold: float = 0.05) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity of every hyperparameter.

    Importance-reweights the posterior by the power-scaled hyperparameter prior
    or likelihood (Kallioinen et al. 2024, through arviz-stats), no refit.

    Returns
    -------
    DataFrame
        Indexed by parameter, columns ``prior``, ``likelihood`` and
        ``diagnosis`` (empty when fine, else ``"prior-data conflict"`` or
        ``"strong prior / weak likelihood"``).
    """
    from arviz_base import from_dict
    from arviz_stats import psense_summary

    _require(fit, "log_prior", "log_likelihood")
    draws = _hyper_draws(fit)
    lp = fit.idata["log_prior"].to_dataset()
    ll = fit.idata["log_likelihood"].to_dataset()
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


def _expand(priors, key: str) -> list[str]:
    """Slot names a sweep key covers: a class expands to all its slots."""
    rows = priors.rows()
    if key in ("fixed", "sd", "sigma", "corr"):
        return [name for cls, name, _ in rows if cls == key]
    if key in {name for _, name, _ in rows}:
        return [key]
    valid = ["fixed", "sd", "sigma", "corr"] + [name for _, name, _ in rows]
    raise CheckError(f"the sweep names unknown prior {key!r}; valid names: {', '.join(valid)}")


def prior_sweep(fit, grid: dict, **sample_kwargs) -> SweepResult:
    """Refit ``fit`` over a grid of priors and tabulate how every summary moves.

    Parameters
    ----------
    fit : BayesFit
    grid : dict
        Prior name (as :func:`bayesmer.fit` accepts: ``"sd"``,
        ``"sd(Days|Subject)"``, ...) -> list of priors. Every combination is fitted.
    **sample_kwargs
        Passed to :func:`bayesmer.fit` (draws, tune, chains, seed, ...); the
        fit's own settings otherwise.
    """
    from .api import fit as refit
    from .priors import parse_prior

    if not grid:
        raise CheckError("the sweep grid is empty")
    base = fit.priors.to_dict()
    slots = {key: _expand(fit.priors, key) for key in grid}
    values = {key: [str(parse_prior(v)) for v in grid[key]] for key in grid}
    settings = dict(getattr(fit, "settings", {}) or {})
    settings.update(sample_kwargs)
    settings.setdefault("progress", False)
    tables, fits = [], {}
    for combo in itertools.product(*values.values()):
        priors = dict(base)
        for key, spec in zip(values, combo):
            priors.update({slot: spec for slot in slots[key]})
        refitted = refit(fit.design.formula, fit.design.frame, priors=priors, **settings)
        fits[combo] = refitted
        summ = refitted.summary().reset_index()
        for key, spec in zip(values, combo):
            summ.insert(0, f"prior:{key}", spec)
        tables.append(summ)
    return SweepResult(pd.concat(tables, ignore_index=True), fits)


def loo(fit, **kwargs):
    """PSIS-LOO over rows (arviz-stats), conditional on the random effects."""
    from arviz_stats import loo as az_loo

    _require(fit, "log_likelihood")
    return az_loo(fit.idata, **kwargs)


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


def group_loglik(fit, group: str | None = None) -> np.ndarray:
    """Each group's exact marginal log-likelihood per draw, shape (chain, draw, groups).

    The group's random effects, of every term nested in it, are integrated
    out: ``y_j ~ N(X_j beta, sigma^2 I + Z_j Psi_j Z_j')``, evaluated with the
    matrix determinant lemma and Woodbury's identity (q_j x q_j algebra per
    draw, q_j the group's number of random effects).

    Raises
    ------
    CheckError
        When the terms are crossed: groups are then not independent.
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
    shape = fit.idata["posterior"]["sigma"].shape
    beta, sigma = fit.draws("beta"), fit.draws("sigma")
    s2 = sigma**2
    chols = [fit.cov_factor(t.name) for t in d.terms]
    S = sigma.shape[0]
    out = np.empty((S, len(levels)))
    for j in range(len(levels)):
        rows = np.flatnonzero(codes == j)
        r = d.y[rows][None, :] - beta @ d.X[rows].T  # (S, n_j)
        # Z_j L_j, one block of columns per term level present in the group
        blocks = []
        for t, L in zip(d.terms, chols):
            tc = t.codes[rows]
            for lev in np.unique(tc):
                Zl = np.where((tc == lev)[:, None], t.Z[rows], 0.0)  # (n_j, k)
                blocks.append(np.einsum("nk,skl->snl", Zl, L))
        ZL = np.concatenate(blocks, axis=2)  # (S, n_j, q_j)
        q = ZL.shape[2]
        M = np.eye(q) + np.einsum("snq,snr->sqr", ZL, ZL) / s2[:, None, None]
        cM = np.linalg.cholesky(M)
        v = np.einsum("snq,sn->sq", ZL, r)
        w = np.linalg.solve(cM, v[..., None])[..., 0]
        logdet = 2 * np.log(np.diagonal(cM, axis1=1, axis2=2)).sum(axis=1)
        quad = (r**2).sum(axis=1) - (w**2).sum(axis=1) / s2
        out[:, j] = -0.5 * rows.size * np.log(2 * np.pi * s2) - 0.5 * logdet - quad / (2 * s2)
    return out.reshape(shape + (len(levels),))


def logo(fit, group: str | None = None, **kwargs):
    """Leave-one-group-out cross-validation by PSIS over groups.

    When every term is nested in ``group`` (the default: the outermost
    grouping factor), each group's random effects are integrated out exactly
    (Gaussian model), so no refit and no approximation of that integral is
    needed. For crossed terms the groups are not independent; name ``group``
    and the pointwise log-likelihood, conditional on the random effects, is
    summed within each of its groups (brms' grouped LOO), with a warning.
    """
    import warnings

    from arviz_base import from_dict
    from arviz_stats import loo as az_loo

    d = fit.design
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
        _require(fit, "log_likelihood")
        codes, levels = _group_codes(d, tuple(group.split(":")))
        warnings.warn(
            f"terms are crossed: leaving out groups of {group!r} with the log-likelihood "
            "conditional on the random effects, not the exact marginal",
            UserWarning,
            stacklevel=2,
        )
        pointwise = np.asarray(fit.idata["log_likelihood"][d.response].values)
        ll = np.stack([pointwise[..., codes == j].sum(axis=-1) for j in range(len(levels))], axis=-1)
        name = group
    tree = from_dict(
        {"posterior": {"sigma": fit.idata["posterior"]["sigma"].values}, "log_likelihood": {name: ll}},
        dims={name: [f"{name}_level"]},
        coords={f"{name}_level": list(levels)},
    )
    return az_loo(tree, **kwargs)


def compare(fits: dict, **kwargs) -> pd.DataFrame:
    """Rank fits of the same data by PSIS-LOO elpd, REML AIC/BIC beside.

    Returns
    -------
    DataFrame
        Indexed by model name, best first: arviz-stats' compare columns
        (``elpd``, ``se``, ``elpd_diff``, ``dse``, ``weight``, ...) plus
        ``reml_aic`` and ``reml_bic``.
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
    for name in names:
        _require(fits[name], "log_likelihood")
    table = az_compare({name: f.idata for name, f in fits.items()}, **kwargs)
    table["reml_aic"] = [fits[n].reml.aic for n in table.index]
    table["reml_bic"] = [fits[n].reml.bic for n in table.index]
    return table
