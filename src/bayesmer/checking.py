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


def _draws(fit, name: str) -> np.ndarray:
    arr = np.asarray(fit.idata["posterior"][name].values)
    return arr.reshape((-1,) + arr.shape[2:])


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


def _single_factor(design) -> tuple[np.ndarray, tuple[str, ...], str]:
    factors = {t.factors for t in design.terms}
    if len(factors) != 1:
        raise CheckError(
            "leave-one-group-out needs every random-effect term on one grouping factor; "
            f"this model has {sorted(':'.join(f) for f in factors)}"
        )
    t = design.terms[0]
    return t.codes, t.levels, t.group


def group_loglik(fit) -> np.ndarray:
    """Each group's exact marginal log-likelihood per draw, shape (chain, draw, groups).

    The group's random effects are integrated out: ``y_j ~ N(X_j beta,
    sigma^2 I + Z_j Psi Z_j')``, evaluated from per-group sufficient statistics
    with the matrix determinant lemma and Woodbury's identity.
    """
    d = fit.design
    codes, levels, _ = _single_factor(d)
    G = len(levels)
    Z = np.concatenate([t.Z for t in d.terms], axis=1)
    K = Z.shape[1]
    ZtZ = np.zeros((G, K, K))
    ZtX = np.zeros((G, K, d.p))
    Zty = np.zeros((G, K))
    XtX = np.zeros((G, d.p, d.p))
    Xty = np.zeros((G, d.p))
    yty = np.zeros(G)
    np.add.at(ZtZ, codes, Z[:, :, None] * Z[:, None, :])
    np.add.at(ZtX, codes, Z[:, :, None] * d.X[:, None, :])
    np.add.at(Zty, codes, Z * d.y[:, None])
    np.add.at(XtX, codes, d.X[:, :, None] * d.X[:, None, :])
    np.add.at(Xty, codes, d.X * d.y[:, None])
    np.add.at(yty, codes, d.y**2)
    nj = np.bincount(codes, minlength=G).astype(float)

    post = fit.idata["posterior"]
    shape = post["sigma"].shape
    beta = _draws(fit, "beta")
    sigma = _draws(fit, "sigma")
    S = sigma.shape[0]
    L = np.zeros((S, K, K))
    off = 0
    for t in d.terms:
        sd = _draws(fit, f"sd_{t.name}")
        if t.k > 1:
            corr = _draws(fit, f"corr_{t.name}")
            # jitter keeps the Cholesky defined at |corr| = 1 draws
            chol = np.linalg.cholesky(corr + 1e-12 * np.eye(t.k))
        else:
            chol = np.ones((S, 1, 1))
        L[:, off : off + t.k, off : off + t.k] = sd[:, :, None] * chol
        off += t.k

    out = np.empty((S, G))
    s2 = sigma**2
    for s in range(S):
        rr = yty - 2 * Xty @ beta[s] + np.einsum("gij,i,j->g", XtX, beta[s], beta[s])
        Ztr = Zty - ZtX @ beta[s]
        LtZtZL = np.einsum("ki,gkl,lj->gij", L[s], ZtZ, L[s])
        M = np.eye(K) + LtZtZL / s2[s]
        cM = np.linalg.cholesky(M)
        v = np.einsum("ki,gk->gi", L[s], Ztr)
        w = np.linalg.solve(cM, v[..., None])[..., 0]
        logdet = 2 * np.log(np.diagonal(cM, axis1=1, axis2=2)).sum(axis=1)
        quad = rr - (w**2).sum(axis=1) / s2[s]
        out[s] = -0.5 * nj * np.log(2 * np.pi * s2[s]) - 0.5 * logdet - quad / (2 * s2[s])
    return out.reshape(shape + (G,))


def logo(fit, **kwargs):
    """Leave-one-group-out cross-validation with exact group marginal likelihoods.

    Each group's random effects are integrated out exactly (Gaussian model), so
    PSIS over groups needs no refit and no approximation of the integral.
    """
    from arviz_base import from_dict
    from arviz_stats import loo as az_loo

    _, levels, group = _single_factor(fit.design)
    ll = group_loglik(fit)
    tree = from_dict(
        {"posterior": {"sigma": fit.idata["posterior"]["sigma"].values}, "log_likelihood": {group: ll}},
        dims={group: [f"{group}_level"]},
        coords={f"{group}_level": list(levels)},
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
