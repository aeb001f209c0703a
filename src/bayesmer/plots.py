"""Plots of a Bayesian fit beside its REML twin, for notebooks and reports.

ArviZ draws the generic pictures (trace, rank, forest of one model); these are
the ones it cannot: REML against the posterior, group OLS against REML BLUP
against the posterior mean (Hoff's shrinkage picture), the random-effect
correlations, conditional effects and comparisons with the REML line beside the
posterior band, and predictive checks (arviz-plots' ``plot_ppc_dist`` and
``plot_ppc_tstat`` on the fit's posterior or prior predictive draws; bars for
counts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import naming as nm

__all__ = ["plot_forest", "plot_shrinkage", "plot_correlation", "plot_ppc", "plot_predictions", "plot_comparisons",
           "group_ols"]


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


# ---- conditional effects and comparisons ------------------------------------
# matplotlib, not arviz-plots: the REML side is an estimate and a delta-method
# SE, not draws, and arviz-plots draws bands and forests from draws only.

_FACET_OVER = 6  # more `by` levels than this: one panel each, else colours on one panel
_GRID_POINTS = 50


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _model_frame(fit) -> pd.DataFrame:
    frame = fit.glmm.frame if fit.glmm is not None else fit.design.frame
    if frame is None:
        raise ValueError("the fitted data are not in memory: the plot's grid comes from them")
    return frame


def _levels_of(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories)
    return sorted(pd.unique(col.dropna()), key=lambda v: (str(type(v)), v))


def _hdi_columns(table: pd.DataFrame) -> tuple[str, str]:
    lo, hi = [c for c in table.columns if c.startswith("hdi_")]
    return lo, hi


def _grouping_columns(fit) -> set:
    return {c for t in fit.design.terms for c in t.factors}


def _response_label(fit, kind: str) -> str:
    resp = fit.design.response if fit.glmm is None else fit.built.response
    if kind == "link":
        return f"{resp} (linear predictor)"
    if fit.family is None:
        return resp
    if fit.family.name in ("binomial", "bernoulli"):
        return f"probability: {resp}"
    return f"expected {resp}"


def _random_label(include_random) -> str:
    if include_random in (True, "conditional"):
        return "random effects at the groups' values"
    if include_random in (False, "zero"):
        return "random effects at zero"
    return "random effects integrated over their distribution"


def plot_predictions(fit, variable: str, by: str | None = None, include_random=None, kind: str = "mean",
                     prob: float | None = None, n_points: int = _GRID_POINTS):
    """Conditional effects (brms's ``conditional_effects``): the prediction over a variable, REML beside the posterior.

    The other columns are held at their mean (numbers) or most frequent
    value (factors, grouping columns), as :func:`bayesmer.datagrid` does;
    the values come from :meth:`BayesFit.predictions` on that grid. A numeric
    ``variable`` gets the posterior mean line in its HDI band (solid, filled)
    and the REML/Laplace estimate's line (dashed) with its delta-method
    ±1.96 SE interval (dotted); a factor gets points with error bars, the
    posterior's (circles) beside REML's (squares).

    Parameters
    ----------
    fit : BayesFit
    variable : str
        A column the formula reads: the x-axis.
    by : str, optional
        A second column: one curve per value, in colours on one panel (up to
        6 values) or a panel each (more). A factor's levels; a number's mean
        and mean ± 1 SD (as brms).
    include_random : {None, True, False, "integrated"}, optional
        As :meth:`BayesFit.predictions`. None (default): True when
        ``variable`` or ``by`` is a grouping column (a line or a point per
        group, with its effects), else False (brms's ``re_formula = NA``:
        the population line).
    kind : {"mean", "link"}
        The expected response (a probability, a rate) or the linear predictor.
    prob : float, optional
        The HDI's probability (0.94 by default).
    n_points : int
        Grid points over a numeric variable's observed range.

    Returns
    -------
    matplotlib.figure.Figure
        Its artists carry gids: ``posterior_mean``, ``posterior_band``,
        ``reml`` and ``reml_ci`` (lines and bands of a numeric variable; the
        points of a factor).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fig = bayesmer.plots.plot_predictions(fit, "Days", by="Subject")   # a panel per subject
    >>> len(fig.axes)
    18
    """
    from .interpret import datagrid

    plt = _plt()
    frame = _model_frame(fit)
    for name, what in ((variable, "variable"), (by, "by")):
        if name is not None and name not in frame.columns:
            raise ValueError(f"{what} {name!r} is not a column the model reads; they are {list(frame.columns)}")
    if by == variable:
        raise ValueError(f"by must differ from the variable ({variable!r})")
    if include_random is None:
        include_random = bool({variable, by} & _grouping_columns(fit))
    numeric = _is_numeric(frame[variable])
    if numeric:
        xs = np.linspace(float(frame[variable].min()), float(frame[variable].max()), n_points)
    else:
        xs = _levels_of(frame[variable])
    values = {variable: xs}
    by_values = [None]
    if by is not None:
        if _is_numeric(frame[by]):
            m, s = float(frame[by].mean()), float(frame[by].std())
            by_values = [m - s, m, m + s]
        else:
            by_values = _levels_of(frame[by])
        values[by] = by_values
    grid = datagrid(fit, **values)
    table = fit.predictions(grid, include_random=include_random, kind=kind, prob=prob)
    lo, hi = _hdi_columns(table)
    nb = len(by_values)
    facet = nb > _FACET_OVER
    if facet:
        ncol = min(6, nb)
        nrow = -(-nb // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol, 2.0 * nrow + 0.8), sharex=True, sharey=True,
                                 squeeze=False)
        for extra in axes.flat[nb:]:
            extra.remove()
        axes = list(axes.flat[:nb])
    else:
        fig, ax = plt.subplots(figsize=(6, 4))
        axes = [ax] * nb
    labels = [None if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in by_values]
    for j, (axis, bv, label) in enumerate(zip(axes, by_values, labels)):
        rows = table if bv is None else table[_match(table[by], bv)]
        c_post = "C0" if facet or bv is None else f"C{j % 10}"
        c_reml = "C1" if facet or bv is None else c_post
        if numeric:
            rows = rows.sort_values(variable)
            x = rows[variable].to_numpy(dtype=float)
            band = axis.fill_between(x, rows[lo], rows[hi], color=c_post, alpha=0.25, lw=0)
            band.set_gid("posterior_band")
            (line,) = axis.plot(x, rows["mean"], color=c_post, lw=2, label=label if not facet else None)
            line.set_gid("posterior_mean")
            (rl,) = axis.plot(x, rows["reml"], color=c_reml, ls="--", lw=1.3)
            rl.set_gid("reml")
            for sign in (-1, 1):
                (ci,) = axis.plot(x, rows["reml"] + sign * 1.96 * rows["reml_se"], color=c_reml, ls=":", lw=0.9)
                ci.set_gid("reml_ci")
        else:
            pos = np.arange(len(xs))
            width = 0.7 / (1 if facet else nb)
            off = (-0.35 + width * (j + 0.5)) if not facet and nb > 1 else 0.0
            d = width / 4
            order = [list(map(str, xs)).index(str(v)) for v in rows[variable]]
            xp = pos[order] + off
            mean = rows["mean"].to_numpy()
            pe = axis.errorbar(xp - d, mean, yerr=[mean - rows[lo].to_numpy(), rows[hi].to_numpy() - mean],
                               fmt="o", color=c_post, capsize=2, label=label if not facet else None)
            pe.lines[0].set_gid("posterior_mean")
            reml = rows["reml"].to_numpy()
            re = axis.errorbar(xp + d, reml, yerr=1.96 * rows["reml_se"].to_numpy(), fmt="s", ms=4,
                               mfc="white", color=c_reml, capsize=2)
            re.lines[0].set_gid("reml")
            axis.set_xticks(pos, [str(v) for v in xs])
        if facet:
            axis.set_title(f"{by} = {label}", fontsize=8)
            axis.tick_params(labelsize=7)
    prob_txt = f"{round(100 * (prob or 0.94))}%"
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = nb > 1 and not facet  # colours name the by values; the key shows the styles in grey
    cp, cr = ("0.3", "0.3") if grey else ("C0", "C1")
    if numeric:
        key = [Line2D([], [], color=cp, lw=2, label="posterior mean"),
               Patch(color=cp, alpha=0.25, label=f"{prob_txt} HDI"),
               Line2D([], [], color=cr, ls="--", label="REML (dotted: ±1.96 SE)")]
    else:
        key = [Line2D([], [], color=cp, marker="o", label=f"posterior mean, {prob_txt} HDI"),
               Line2D([], [], color=cr, marker="s", mfc="white", label="REML ±1.96 SE")]
    if grey:
        handles, names = axes[0].get_legend_handles_labels()
        first = axes[0].legend(handles, names, title=by, fontsize=7, title_fontsize=7, loc="upper left",
                               bbox_to_anchor=(1.01, 1))
        axes[0].add_artist(first)
        axes[0].legend(handles=key, fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0))
    elif facet:
        fig.legend(handles=key, fontsize=7, loc="upper right", ncols=len(key))
    else:
        axes[0].legend(handles=key, fontsize=7)
    ylabel = _response_label(fit, kind)
    if facet:
        fig.supxlabel(variable, fontsize=9)
        fig.supylabel(ylabel, fontsize=9)
    else:
        axes[0].set_xlabel(variable)
        axes[0].set_ylabel(ylabel)
    fig.suptitle(f"{variable}{'' if by is None else f' by {by}'}: {_random_label(include_random)}", fontsize=9,
                 x=0.02 if facet else 0.5, ha="left" if facet else "center")
    fig.tight_layout()
    return fig


def _match(col: pd.Series, value) -> np.ndarray:
    if isinstance(value, float):
        return np.isclose(col.to_numpy(dtype=float), value)
    return (col.astype(str) == str(value)).to_numpy()


def plot_comparisons(fit, variables, by=True, contrast=None, comparison: str = "difference", include_random=True,
                     kind: str = "mean", prob: float | None = None):
    """The comparisons table drawn: each contrast's posterior mean and HDI beside REML's estimate ±1.96 SE.

    Draws :meth:`BayesFit.comparisons`' rows, one per contrast (and ``by``
    group), with a reference line at no change (0 for a difference, 1 for a
    ratio).

    Parameters
    ----------
    fit : BayesFit
    variables : str, list of str or dict
        As :meth:`BayesFit.comparisons`.
    by : True, str or list of str
        True (default): each comparison averaged over the fitted rows
        (marginaleffects's ``avg_comparisons``); column names: averaged within
        each of their groups. (Per-row comparisons, ``by=None``, are a table,
        not a picture.)
    contrast, comparison, include_random, kind, prob
        As :meth:`BayesFit.comparisons`.

    Returns
    -------
    matplotlib.figure.Figure
        The posterior's intervals carry the gid ``posterior``, REML's points
        the gid ``reml``.

    Examples
    --------
    >>> import bayesmer
    >>> cbpp = bayesmer.datasets.load("cbpp")
    >>> fit = bayesmer.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
    ...                    family="binomial", draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> fig = bayesmer.plots.plot_comparisons(fit, "period")     # periods 2-4 against 1, probability scale
    """
    plt = _plt()
    if by is None or by is False:
        raise ValueError("plot_comparisons draws averaged comparisons: by=True or column names "
                         "(fit.comparisons(..., by=None) gives the per-row table)")
    table = fit.comparisons(variables, by=by, contrast=contrast, comparison=comparison,
                            include_random=include_random, kind=kind, prob=prob)
    lo, hi = _hdi_columns(table)
    by_cols = [] if by is True else ([by] if isinstance(by, str) else list(by))
    labels = []
    for _, row in table.iterrows():
        text = f"{row['term']}: {row['contrast']}"
        if by_cols:
            text += " | " + ", ".join(f"{c}={row[c]}" for c in by_cols)
        labels.append(text)
    n = len(table)
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * n + 1.3))
    y = np.arange(n)[::-1].astype(float)
    post = ax.hlines(y + 0.12, table[lo], table[hi], color="C0", lw=2.5, label=f"posterior mean, "
                     f"{round(100 * (prob or 0.94))}% HDI")
    post.set_gid("posterior")
    ax.plot(table["mean"], y + 0.12, "o", color="C0", ms=5)
    reml = ax.errorbar(table["reml"], y - 0.12, xerr=1.96 * table["reml_se"], fmt="s", ms=4, color="C1", capsize=2,
                       label="REML ±1.96 SE")
    reml.lines[0].set_gid("reml")
    ax.axvline(1.0 if comparison == "ratio" else 0.0, color="0.5", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    what = "ratio" if comparison == "ratio" else "difference"
    ax.set_xlabel(f"{what} in {_response_label(fit, kind)}", fontsize=9)
    ax.set_title(_random_label(include_random), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---- predictive checks --------------------------------------------------------

PPC_KINDS = ("dens", "stat", "grouped", "bars")
_MAX_GROUP_PANELS = 12


def _prop_zero(x):
    return np.mean(x == 0, axis=-1)


_prop_zero.__name__ = "proportion of zeros"

_STATS = {"sd": "std", "zeros": _prop_zero, "prop_zero": _prop_zero}


def _ppc_tree(data, group: str, seed):
    """The tree holding ``group`` (drawing the posterior predictive of a fit without one) and the response name."""
    import xarray as xr

    if group not in ("posterior_predictive", "prior_predictive"):
        raise ValueError(f"group must be 'posterior_predictive' or 'prior_predictive', not {group!r}")
    if isinstance(data, xr.DataTree):
        tree = data
    elif hasattr(data, "idata"):
        tree = data.idata
        if group not in tree.children and group == "posterior_predictive":
            tree = data.posterior_predictive(seed=seed).idata
    else:
        raise TypeError(f"plot_ppc takes a BayesFit or a DataTree, not {type(data).__name__}")
    if group not in tree.children:
        raise ValueError(f"no {group} group: bayesmer.prior_predictive(formula, data, priors=...) draws one "
                         "before fitting (or fit with sample_prior=True)")
    names = list(tree[group].data_vars)
    if len(names) != 1:
        raise ValueError(f"the {group} group has {len(names)} variables ({names}); plot_ppc draws one response")
    return tree, names[0]


def _integer_valued(tree, group, name) -> bool:
    y = np.asarray(tree[group][name].values)
    if "observed_data" in tree.children:
        y = np.concatenate([y.ravel(), np.asarray(tree["observed_data"][name].values).ravel()])
    return bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))


def plot_ppc(data, kind: str = "dens", group: str = "posterior_predictive", by: str | None = None,
             stat="mean", ndraws: int = 50, levels=None, prob: float = 0.94, seed=None):
    """Posterior or prior predictive checks: densities, a statistic, per group, or bars for counts.

    Parameters
    ----------
    data : BayesFit or xarray.DataTree
        A fit (its ``posterior_predictive`` group, drawn by
        :meth:`BayesFit.posterior_predictive` when missing), or a tree with
        ``group`` and ``observed_data``, such as :func:`bayesmer.prior_predictive`'s.
    kind : {"dens", "stat", "grouped", "bars"}
        ``"dens"``: the observed density over ``ndraws`` replicated ones
        (arviz-plots' ``plot_ppc_dist``; ECDFs for an integer-valued
        response). ``"stat"``: a statistic's predictive distribution with
        the observed value marked (arviz-plots' ``plot_ppc_tstat``).
        ``"grouped"``: ``"dens"`` with a panel per level of ``by``.
        ``"bars"``: counts and ordinal categories (bayesplot's ``ppc_bars``):
        the observed frequency of each value as bars, the replications'
        median frequency and ``prob`` equal-tailed interval as points with
        error bars; for an integer-valued response. The earlier spellings
        ``"posterior"`` and ``"prior"`` still mean ``"dens"`` of that group.
    group : {"posterior_predictive", "prior_predictive"}
        Which replications; with ``"prior_predictive"`` the observed data
        are drawn too, for scale.
    by : str, optional
        ``kind="grouped"``: a column of the tree's ``constant_data`` (a
        factor or grouping column).
    stat : str, float or callable
        ``kind="stat"``: ``"mean"``, ``"median"``, ``"sd"``, ``"var"``,
        ``"min"``, ``"max"``, ``"iqr"``, ``"mad"``, ``"zeros"`` (the
        proportion of zeros), a quantile in (0, 1), or a function of the
        1-D array of a data set.
    ndraws : int
        Replicated data sets overlaid (``"dens"``, ``"grouped"``).
    levels : list, optional
        ``kind="grouped"``: the levels to draw; by default all, or the first
        12 in sort order when there are more.
    prob : float
        ``kind="bars"``: the interval's probability.
    seed : int, optional
        For the replications drawn when the fit has none.

    Returns
    -------
    arviz_plots.PlotCollection
        ``pc.viz["figure"].item()`` is the matplotlib figure. With
        ``kind="bars"`` the observed bars carry the gid ``observed`` and the
        replications' points the gid ``predictive``.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> pc = bayesmer.plots.plot_ppc(fit, ndraws=20, seed=1)
    >>> pc = bayesmer.plots.plot_ppc(fit, kind="stat", stat="sd", seed=1)
    >>> pc = bayesmer.plots.plot_ppc(fit, kind="grouped", by="Subject", levels=["308", "309"], seed=1)
    """
    import arviz_plots as azp

    if kind in ("posterior", "prior"):  # the earlier spelling of group=, kept so existing calls keep working
        kind, group = "dens", f"{kind}_predictive"
    if kind not in PPC_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PPC_KINDS)}, not {kind!r}")
    tree, name = _ppc_tree(data, group, seed)
    has_obs = "observed_data" in tree.children and name in tree["observed_data"].data_vars
    discrete = _integer_valued(tree, group, name)
    if kind == "bars":
        if not discrete:
            raise ValueError(f"kind='bars' is for counts and ordinal categories: the response {name!r} is not "
                             "integer-valued; use kind='dens'")
        return _ppc_bars(tree, group, name, prob, has_obs)
    if kind == "stat":
        t_stat = _STATS.get(stat, stat) if isinstance(stat, str) else stat
        visuals = {"observed_tstat": {}} if (group == "prior_predictive" and has_obs) else {}
        return azp.plot_ppc_tstat(tree, group=group, var_names=[name], t_stat=t_stat, visuals=visuals,
                                  backend="matplotlib")
    visuals = {"observed_dist": {}} if (group == "prior_predictive" and has_obs) else {}
    dist_kind = "ecdf" if discrete else "kde"
    if kind == "dens":
        return azp.plot_ppc_dist(tree, group=group, var_names=[name], num_samples=ndraws, kind=dist_kind,
                                 visuals=visuals, backend="matplotlib")
    # grouped: the rows' obs coordinate relabelled by the group's values; arviz-plots facets on
    # unique coordinate values and pools the rows that share one
    if by is None:
        raise ValueError("kind='grouped' needs by=, a column of the model's data (e.g. a grouping factor)")
    const = tree["constant_data"] if "constant_data" in tree.children else None
    if const is None or by not in const.data_vars:
        have = [] if const is None else list(const.data_vars)
        raise ValueError(f"by={by!r} is not a column of the tree's constant_data; it has {have}")
    values = np.asarray(const[by].values).astype(str)
    all_levels = sorted(set(values), key=lambda v: (len(v), v) if v.isdigit() else (0, v))
    if levels is None:
        levels = all_levels[:_MAX_GROUP_PANELS]
    levels = [str(v) for v in levels]
    unknown = [v for v in levels if v not in all_levels]
    if unknown:
        raise ValueError(f"levels {unknown} are not values of {by!r}")
    keep = np.flatnonzero(np.isin(values, levels))
    dim = by if by not in ("chain", "draw", "sample") else f"{by}_"  # arviz-plots' own dimension names
    sub = {}
    for g in (group, "observed_data") if has_obs else (group,):
        ds = tree[g].to_dataset()[[name]].isel(obs=keep)
        sub[g] = ds.assign_coords(obs=values[keep]).rename({"obs": dim})
    import xarray as xr

    sub_tree = xr.DataTree.from_dict(sub)
    ncol = min(4, len(levels))
    nrow = -(-len(levels) // ncol)
    pc = azp.plot_ppc_dist(sub_tree, group=group, var_names=[name], num_samples=ndraws, kind=dist_kind,
                           visuals=visuals | {"title": {"size": 9}}, cols=[dim], col_wrap=ncol,
                           figure_kwargs={"figsize": (3.0 * ncol, 2.3 * nrow + 0.4)}, backend="matplotlib")
    fig = pc.viz["figure"].item()
    shown = f"{len(levels)} of {len(all_levels)} levels" if len(levels) < len(all_levels) else "each level"
    fig.suptitle(f"{group.replace('_', ' ')} check by {by} ({shown})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return pc


def _ppc_bars(tree, group, name, prob, has_obs):
    """bayesplot's ppc_bars: observed frequencies as bars, the replications' as points with intervals.

    matplotlib inside an arviz-plots PlotCollection: arviz-plots' nearest,
    ``plot_ppc_rootogram``, draws the observed frequencies as points on a
    square-root scale, not as bars.
    """
    import xarray as xr
    from arviz_plots import PlotCollection

    yrep = np.asarray(tree[group][name].values)
    yrep = np.rint(yrep.reshape(-1, yrep.shape[-1])).astype(np.int64)
    y = np.rint(np.asarray(tree["observed_data"][name].values)).astype(np.int64) if has_obs else None
    lo = int(yrep.min() if y is None else min(yrep.min(), y.min()))
    top = int(np.ceil(np.quantile(yrep, 0.995)))
    hi = top if y is None else max(int(y.max()), top)
    overflow = hi - lo + 1 > 100  # a wide prior predictive: the tail pooled in the last bar
    if overflow:
        hi = lo + 99
    K = hi - lo + 1
    S = yrep.shape[0]
    idx = np.clip(yrep - lo, 0, K - 1) + K * np.arange(S)[:, None]
    freq = np.bincount(idx.ravel(), minlength=S * K).reshape(S, K)
    a = (1 - prob) / 2
    med, qlo, qhi = np.quantile(freq, [0.5, a, 1 - a], axis=0)
    x = np.arange(lo, hi + 1)
    ds = xr.Dataset({name: (("value",), med)}, coords={"value": x})
    pc = PlotCollection.wrap(ds, cols=["__variable__"], backend="matplotlib",
                             figure_kwargs={"figsize": (6, 4)})
    ax = pc.get_target(name, {})
    if y is not None:
        obs = np.bincount(np.clip(y - lo, 0, K - 1), minlength=K)
        bars = ax.bar(x, obs, width=0.8, color="C0", alpha=0.45, label="observed")
        for bar in bars:
            bar.set_gid("observed")
    pts = ax.errorbar(x, med, yerr=[med - qlo, qhi - med], fmt="o", ms=3.5, color="k", capsize=2, lw=1,
                      label=f"{'prior' if group == 'prior_predictive' else 'posterior'} predictive: median, "
                            f"{round(100 * prob)}% interval")
    pts.lines[0].set_gid("predictive")
    if K <= 25:
        ax.set_xticks(x)
    if overflow:
        ticks = np.unique(np.linspace(lo, hi, 6).round().astype(int))
        ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + [f"≥{hi}"])
    ax.set_xlabel(name)
    ax.set_ylabel("count of rows")
    ax.legend(fontsize=7)
    return pc
