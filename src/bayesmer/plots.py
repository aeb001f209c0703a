"""Plots of a Bayesian fit beside its REML twin, for notebooks and reports.

ArviZ draws the generic pictures (trace, rank, forest of one model); these are
the ones it cannot: REML against the posterior, group OLS against REML BLUP
against the posterior mean (Hoff's shrinkage picture), the random-effect
correlations, and a posterior predictive check drawn from the fitted design.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import naming as nm

__all__ = ["plot_forest", "plot_shrinkage", "plot_correlation", "plot_ppc", "group_ols"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _term(fit, term: str | None):
    terms = {t.name: t for t in fit.design.terms}
    if term is None:
        return fit.design.terms[0]
    if term not in terms:
        raise ValueError(f"unknown random-effect term {term!r}; the model has {list(terms)}")
    return terms[term]


def plot_forest(fit):
    """Posterior mean and 94% HDI beside the REML estimate of every parameter.

    Fixed effects carry REML's ±1.96 SE. Each parameter gets its own row and
    x-axis, since their scales differ by orders of magnitude. Returns the
    matplotlib figure.

    Parameters
    ----------
    fit : BayesFit

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fig = bayesmer.plots.plot_forest(fit)
    """
    plt = _plt()
    table = fit.summary()
    fig, axes = plt.subplots(len(table), 1, figsize=(6.5, 0.55 * len(table) + 0.8), squeeze=False)
    for axis, ((comp, group, name), row) in zip(axes[:, 0], table.iterrows()):
        axis.hlines(0.1, row["hdi_3%"], row["hdi_97%"], color="C0", lw=2.5)
        axis.plot(row["mean"], 0.1, "o", color="C0")
        se = row.get("reml_se", np.nan)
        xerr = 1.96 * se if comp == "fixed" and np.isfinite(se) else None
        axis.errorbar(row["reml"], -0.1, xerr=xerr, fmt="s", color="C1", ms=4, capsize=2)
        axis.set_ylim(-0.4, 0.4)
        axis.set_yticks([0], [f"{comp}: {group} {name}".replace(":  ", ": ")], fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            axis.spines[side].set_visible(False)
    axes[0, 0].set_title("posterior mean, 94% HDI (blue) and REML ±1.96 SE (orange)", fontsize=9)
    fig.tight_layout(h_pad=0.3)
    return fig


def group_ols(fit, term: str | None = None) -> pd.DataFrame:
    """Per-level OLS of the term's columns, as if each group were fitted alone.

    The response is the partial residual ``y - X_other @ beta_reml`` where
    ``X_other`` are the fixed columns the term does not vary, so that the OLS
    coefficients sit on the same scale as ``fixef + ranef``. Levels with too few
    rows for their own fit are NaN.

    Parameters
    ----------
    fit : BayesFit
        A Gaussian fit with its data in memory.
    term : str, optional
        A term's name; default the first term.

    Returns
    -------
    DataFrame
        Levels x the term's columns.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> bayesmer.plots.group_ols(fit).shape
    (18, 2)
    """
    t = _term(fit, term)
    d = fit.design
    fixef = fit.reml.fixef
    other = [j for j, n in enumerate(d.fixed_names) if n not in t.terms]
    resid = d.y - d.X[:, other] @ fixef.to_numpy()[other]
    out = np.full((t.n_levels, t.k), np.nan)
    for j in range(t.n_levels):
        rows = t.codes == j
        Zj = t.Z[rows]
        if rows.sum() > t.k and np.linalg.matrix_rank(Zj) == t.k:
            out[j] = np.linalg.lstsq(Zj, resid[rows], rcond=None)[0]
    return pd.DataFrame(out, index=pd.Index(t.levels, name=t.group), columns=list(t.terms))


def _coefs(fit, t) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group coefficients ``fixef + ranef`` under REML and the posterior mean."""
    shift = np.array([fit.reml.fixef.get(n, 0.0) for n in t.terms])
    reml = fit.reml.ranef[t.name] + shift
    beta = fit.draws(nm.BETA)
    cols = [fit.design.fixed_names.index(n) if n in fit.design.fixed_names else None for n in t.terms]
    b = fit.draws(nm.b_var(t.name))
    post = b.mean(axis=0) + np.array([beta[:, c].mean() if c is not None else 0.0 for c in cols])
    return reml, pd.DataFrame(post, index=reml.index, columns=reml.columns)


def plot_shrinkage(fit, term: str | None = None, columns: tuple[str, str] | None = None, ax=None):
    """Group OLS, REML BLUP and posterior mean of each level's coefficients.

    Two columns of the term give a scatter with an arrow from each group's own
    OLS fit to its posterior mean; a one-column term gives a dot plot per level.
    Returns the matplotlib figure.

    Parameters
    ----------
    fit : BayesFit
        A Gaussian fit with its data in memory.
    term : str, optional
        A term's name; default the first term.
    columns : tuple of two str, optional
        The two columns of the term to plot against each other; default its
        first two.
    ax : matplotlib Axes, optional
        Draw there instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fig = bayesmer.plots.plot_shrinkage(fit)
    """
    plt = _plt()
    t = _term(fit, term)
    ols = group_ols(fit, t.name)
    reml, post = _coefs(fit, t)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5) if t.k > 1 else (6, 0.25 * t.n_levels + 1.5))
    fig = ax.figure
    if t.k > 1:
        cx, cy = columns or t.terms[:2]
        for name in (cx, cy):
            if name not in t.terms:
                raise ValueError(f"column {name!r} is not in term {t.label}; it has {list(t.terms)}")
        ax.plot(ols[cx], ols[cy], "o", mfc="none", color="C7", label="group OLS")
        ax.plot(reml[cx], reml[cy], "s", color="C1", ms=4, label="REML BLUP")
        ax.plot(post[cx], post[cy], "o", color="C0", ms=4, label="posterior mean")
        for lev in ols.index:
            if np.isfinite(ols.loc[lev, [cx, cy]]).all():
                ax.annotate(
                    "", (post.loc[lev, cx], post.loc[lev, cy]), (ols.loc[lev, cx], ols.loc[lev, cy]),
                    arrowprops={"arrowstyle": "->", "color": "C7", "lw": 0.6},
                )
        fx = [fit.reml.fixef.get(n, 0.0) for n in (cx, cy)]
        ax.plot(*fx, "*", color="k", ms=12, label="population (REML)")
        ax.set_xlabel(cx)
        ax.set_ylabel(cy)
    else:
        (c,) = t.terms
        order = np.argsort(ols[c].fillna(post[c]).to_numpy())
        pos = np.arange(t.n_levels)
        ax.plot(ols[c].to_numpy()[order], pos, "o", mfc="none", color="C7", label="group OLS")
        ax.plot(reml[c].to_numpy()[order], pos, "s", color="C1", ms=4, label="REML BLUP")
        ax.plot(post[c].to_numpy()[order], pos, "o", color="C0", ms=4, label="posterior mean")
        ax.axvline(fit.reml.fixef.get(c, 0.0), color="k", lw=0.8)
        ax.set_yticks(pos, np.asarray(t.levels)[order], fontsize=7)
        ax.set_xlabel(c)
    ax.set_title(f"shrinkage of {t.label}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_correlation(fit, term: str | None = None, ax=None):
    """Posterior of each random-effect correlation of a term, REML marked.

    Returns the matplotlib figure.

    Parameters
    ----------
    fit : BayesFit
    term : str, optional
        A term with at least two columns; default the first term.
    ax : matplotlib Axes, optional
        Draw there (one correlation) instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fig = bayesmer.plots.plot_correlation(fit)
    """
    plt = _plt()
    t = _term(fit, term)
    if t.k < 2:
        raise ValueError(f"term {t.label} has one column and no correlation")
    corr = fit.draws(nm.corr_var(t.name))  # (S, pairs)
    remlc = fit.reml.corr(t.name)
    pairs = nm.pairs(t.k)
    if ax is None:
        fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax)
    for p, (axis, (i, j)) in enumerate(zip(axes, pairs)):
        axis.hist(corr[:, p], bins=40, range=(-1, 1), density=True, color="C0", alpha=0.7)
        axis.axvline(remlc[i, j], color="C1", lw=2, label=f"REML {remlc[i, j]:.3f}")
        axis.set_xlabel(nm.corr_label(t.terms[i], t.terms[j], t.name))
        axis.legend(fontsize=7)
    fig = axes[0].figure
    fig.suptitle(f"random-effect correlation of {t.label}", fontsize=10)
    fig.tight_layout()
    return fig


def posterior_predictive(fit, ndraws: int | None = None, seed=None) -> np.ndarray:
    """Replicated responses ``(draws, n)`` from the posterior, conditional on b (:meth:`BayesFit.predict`)."""
    rng = np.random.default_rng(seed)
    tree = fit.predict(kind="response", seed=seed)
    yrep = np.asarray(tree["predictions"][fit.design.response].values)
    yrep = yrep.reshape(-1, yrep.shape[-1])
    if ndraws is not None and ndraws < yrep.shape[0]:
        yrep = yrep[rng.choice(yrep.shape[0], ndraws, replace=False)]
    return yrep


def plot_ppc(fit, ndraws: int = 50, seed=None, kind: str = "posterior"):
    """Densities of replicated data over the observed response, drawn by arviz-plots' ``plot_ppc_dist``.

    Parameters
    ----------
    fit : BayesFit
    ndraws : int
        Replicated data sets drawn.
    seed : int, optional
        For the replications.
    kind : {"posterior", "prior"}
        ``"posterior"`` replicates from the posterior (the stored
        ``posterior_predictive`` group when there is one, else
        :meth:`BayesFit.predict` with ``kind="response"``); ``"prior"`` needs
        the ``prior_predictive`` group, from ``bayesmer.fit(..., sample_prior=True)``.

    Returns
    -------
    arviz_plots.PlotCollection

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> pc = bayesmer.plots.plot_ppc(fit, ndraws=20, seed=1)
    """
    import arviz_plots as azp
    import xarray as xr

    if kind not in ("posterior", "prior"):
        raise ValueError(f"kind must be 'posterior' or 'prior', not {kind!r}")
    group = f"{kind}_predictive"
    tree = fit.idata
    if group not in tree.children:
        if kind == "prior":
            raise ValueError("the fit has no prior_predictive group: refit with bayesmer.fit(..., sample_prior=True)")
        pred = fit.predict(kind="response", seed=seed)
        tree = xr.DataTree.from_dict(
            {"posterior_predictive": pred["predictions"].to_dataset(),
             "observed_data": tree["observed_data"].to_dataset()}
        )
    return azp.plot_ppc_dist(tree, group=group, num_samples=ndraws, backend="matplotlib")
