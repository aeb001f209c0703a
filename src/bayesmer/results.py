"""The Bayesian fit, reported next to REML.

:class:`BayesFit` holds every stage's output (design, REML fit, priors, built
model, draws) and reads its tables from the draws only. It answers the same
protocol as :class:`~bayesmer.lmer.RemlFit` (``fixef()``, ``ranef()``,
``varcorr()``, ``icc()``; see :mod:`bayesmer.protocol`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from . import checking, io
from . import naming as nm
from .builder import BuiltModel, build_glmm, build_model
from .design import Design, build_design, new_data
from .errors import PredictionError
from .priors import PriorSet
from .protocol import varcorr_table, variance_shares
from .sampling import _family_rows, constant_data, group_attrs, linear_predictor

__all__ = ["BayesFit", "diagnose", "PREDICTION_KINDS"]

_SAMPLE = ("chain", "draw")
_COLUMNS = ["reml", "reml_se", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat"]
#: what predict() returns: the linear predictor, the mean, new responses; the category probabilities (cumulative)
PREDICTION_KINDS = ("link", "mean", "response", "probs")


def _stack(post: xr.Dataset, name: str) -> np.ndarray:
    a = post[name].transpose(*_SAMPLE, ...).to_numpy()
    return a.reshape((-1,) + a.shape[2:])


def _interval_table(draws: np.ndarray, index, prob: float | None = None) -> pd.DataFrame:
    """Mean, sd and HDI (arviz-stats; :data:`bayesmer.interpret.PROB` by default) of draws (S, m)."""
    import arviz_stats as azs

    from .interpret import _check_prob, _hdi_names

    prob = _check_prob(prob)
    lo, hi = _hdi_names(prob)
    hdi = np.asarray(azs.hdi(draws, prob=prob, axis=0))
    hdi = hdi.reshape(-1, 2) if hdi.shape[-1] == 2 else hdi.T
    return pd.DataFrame(
        {"mean": draws.mean(0), "sd": draws.std(0, ddof=1), lo: hdi[:, 0], hi: hdi[:, 1]}, index=index
    )


@dataclass(frozen=True, eq=False)
class BayesFit:
    """A Bayesian linear or generalized linear mixed model sampled with NUTS.

    Attributes
    ----------
    design : Design
    reml : RemlFit
        The REML fit that started the chains, reported alongside.
    priors : PriorSet
    built : BuiltModel
        The PyMC model with the names of its variables.
    idata : xarray.DataTree
        ArviZ 1's schema: ``posterior``, ``sample_stats``, ``log_likelihood``
        (when small enough), ``log_prior``, ``observed_data``,
        ``constant_data`` (the columns the formula reads) and the optional
        groups; every group carries ArviZ's attributes.
    timings : dict
        Seconds spent compiling, sampling and post-processing.
    strategy : {"marginal", "full", "glmm"}
    settings : dict
        The validated :class:`bayesmer.settings.Settings` of the fit, as a dict.
    glmm : GlmmData, FamilyData or None
        A binomial or Poisson model's response, weights and offset (``reml``
        is then lme4's Laplace fit, a :class:`~bayesmer.glmer_fit.GlmerFit`);
        a :mod:`bayesmer.families` model's (``reml`` glmmTMB's or clmm's
        Laplace fit, a :class:`~bayesmer.glmmtmb_fit.FamilyFit`).
    response_family : ResponseFamily or None
        ``lognormal``'s family: the fit is the Gaussian model of log y
        (``design``, ``reml`` and the draws on the log scale), its
        ``log_likelihood``, ``observed_data`` and ``posterior_predictive`` on the y scale.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> print(fit)                      # REML beside the posterior, then the priors  # doctest: +SKIP
    >>> fit.summary().loc["fixed"]      # doctest: +SKIP
    """

    design: Design
    reml: object
    priors: PriorSet
    built: BuiltModel
    idata: xr.DataTree
    timings: dict = field(default_factory=dict)
    strategy: str = "marginal"
    settings: dict = field(default_factory=dict)
    glmm: object = None
    response_family: object = None

    @property
    def family(self):
        """The family of a binomial, Poisson or :mod:`bayesmer.families` fit; None for the Gaussian."""
        return self.response_family if self.glmm is None else self.glmm.family

    def __getstate__(self):
        # the PyMC model holds compiled closures that do not pickle; it is rebuilt on load
        state = dict(self.__dict__)
        state["built"] = None
        return state

    def __setstate__(self, state):
        if state.get("built") is None and state.get("glmm") is not None:
            state["built"] = build_glmm(state["glmm"], state["priors"], start=state["reml"])
        elif state.get("built") is None:
            state["built"] = build_model(
                state["design"], state["priors"], strategy=state["strategy"], start=state["reml"]
            )
        self.__dict__.update(state)

    @property
    def model(self):
        """The ``pm.Model`` (``pm.model_to_graphviz(fit.model)`` draws it)."""
        return self.built.model

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of variable ``name``, chains stacked: shape (chains * draws, ...).

        Parameters
        ----------
        name : str
            A variable of the ``posterior`` group, e.g. ``"beta"``, ``"sigma"``,
            ``"sd_Subject"``.

        Returns
        -------
        ndarray
            Shape ``(chains * draws, ...)``: the variable's own dimensions last.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.draws("sigma").shape
        (400,)
        """
        post = self.idata["posterior"]
        if name not in post.data_vars:
            raise KeyError(f"no posterior variable {name!r}; the posterior has {list(post.data_vars)}")
        return _stack(post.to_dataset(), name)

    # ---- checking --------------------------------------------------------
    def sensitivity(self, threshold: float = 0.05) -> pd.DataFrame:
        """Power-scaling prior/likelihood sensitivity; see :func:`bayesmer.checking.sensitivity`.

        Parameters
        ----------
        threshold : float
            Power-scaling sensitivity above which a parameter is flagged
            (priorsense's default, 0.05).

        Returns
        -------
        DataFrame
            Per hyperparameter: ``prior``, ``likelihood`` and ``diagnosis``; see
            :func:`bayesmer.checking.sensitivity`.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.sensitivity()
        >>> list(table.columns)
        ['prior', 'likelihood', 'diagnosis']
        """
        return checking.sensitivity(self, threshold)

    def loo(self, **kwargs):
        """PSIS-LOO over rows; see :func:`bayesmer.checking.loo`.

        Parameters
        ----------
        **kwargs
            ``thin`` (an int: keep every ``thin``-th draw when the pointwise
            log-likelihood was not stored) and the keywords of ``arviz_stats.loo``.

        Returns
        -------
        ELPDData
            arviz-stats' result: ``elpd``, ``se``, ``p``, the Pareto k of each row.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> result = fit.loo()
        >>> result.kind
        'loo'
        """
        return checking.loo(self, **kwargs)

    def logo(self, **kwargs):
        """PSIS leave-one-group-out over the groups' exact marginal likelihoods; see :func:`bayesmer.checking.logo`.

        Pareto-smoothed importance sampling from this one fit, not a refit
        without each group: each group's term is its likelihood with its
        random effects integrated out exactly (Gaussian family, terms nested in
        the group); Pareto k says where the approximation fails.

        Parameters
        ----------
        **kwargs
            ``group`` (the grouping factor to leave out; default the outermost one)
            and the keywords of ``arviz_stats.loo``; see :func:`bayesmer.checking.logo`.

        Returns
        -------
        ELPDData
            arviz-stats' result over groups: one elpd term and one Pareto k per group.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> result = fit.logo()             # PSIS over the 18 subjects, no refit
        >>> int(result.n_data_points)
        18
        """
        return checking.logo(self, **kwargs)

    def save(self, path) -> "object":
        """Write the fit to NetCDF (``.nc``) or Zarr (``.zarr``); :func:`bayesmer.load` reads it back.

        Atomic: a failed write raises :class:`bayesmer.SaveError` naming the
        path and leaves a previous file there unchanged (:func:`bayesmer.io.save`).

        Parameters
        ----------
        path : str or Path
            Ending in ``.nc`` (NetCDF) or ``.zarr`` (a Zarr store).

        Returns
        -------
        Path
            The path written.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> import tempfile, pathlib
        >>> path = fit.save(pathlib.Path(tempfile.mkdtemp()) / "sleep.nc")
        >>> bayesmer.load(path).fixef().round(0).index.tolist()
        ['(Intercept)', 'Days']
        """
        return io.save(self, path)

    # ---- parameter table -------------------------------------------------
    def _scalars(self) -> tuple[list[tuple[str, str, str]], xr.Dataset, list[float], list[float]]:
        """One (chain, draw) variable per reported parameter, with REML values."""
        post = self.idata["posterior"].to_dataset()
        d, m, r = self.design, self.built, self.reml
        keys, data, reml_v, reml_se = [], {}, [], []

        def add(key, arr, rv, rse=np.nan):
            data[f"p{len(keys)}"] = (_SAMPLE, np.asarray(arr))
            keys.append(key)
            reml_v.append(float(rv) if rv is not None else np.nan)
            reml_se.append(float(rse))

        if self.glmm is not None:
            return self._glmm_scalars(post, add, keys, data, reml_v, reml_se)
        rfix = r.fixef() if r is not None else None
        # the variance components' asymptotic SEs, in varcorr's row order (NaN on large or singular fits)
        vse = iter(r.varcorr_se()["se"].to_numpy()) if r is not None else None

        def se_next():
            return next(vse) if vse is not None else np.nan
        for name in d.fixed_names:
            add(("fixed", "", name), post[m.beta].sel({nm.FIXED_DIM: name}),
                rfix[name] if r is not None else None, r.se[name] if r is not None else np.nan)
        for t in d.terms:
            sd = post[m.sd[t.name]]
            rsd = r.sd(t.name) if r is not None else [None] * t.k
            for i, col in enumerate(t.terms):
                add(("sd", t.name, col), sd.isel({nm.term_dim(t.name): i}), rsd[i], se_next())
            if t.name in m.corr:
                R = post[m.corr[t.name]]
                rR = r.corr(t.name) if r is not None else None
                for p, ((i, j), label) in enumerate(zip(nm.pairs(t.k), nm.pair_labels(t.terms))):
                    add(("corr", t.name, label), R.isel({nm.pair_dim(t.name): p}),
                        rR[i, j] if rR is not None else None, se_next())
        add(("sigma", "Residual", "sigma"), post[m.sigma], r.sigma if r is not None else None, se_next())
        return keys, xr.Dataset(data), reml_v, reml_se

    def _glmm_scalars(self, post, add, keys, data, reml_v, reml_se):
        """:meth:`_scalars` beside glmer's Laplace fit: its estimates and fixed-effect SEs, no sigma."""
        m, r = self.built, self.reml
        failed = getattr(r, "failed", None) is not None  # glmer found no optimum: NaN, not its start values
        for name in self.glmm.fixed_names:
            add(("fixed", "", name), post[m.beta].sel({nm.FIXED_DIM: name}), np.nan if failed else r.fixef[name],
                r.se[name])
        covs = r.cov_matrices()
        for t in self.glmm.terms:
            C = covs[t.name] * (np.nan if failed else 1.0)
            rsd = np.sqrt(np.maximum(np.diag(C), 0.0))
            sd = post[m.sd[t.name]]
            for i, col in enumerate(t.terms):
                add(("sd", t.name, col), sd.isel({nm.term_dim(t.name): i}), rsd[i])
            if t.name in m.corr:
                R = post[m.corr[t.name]]
                with np.errstate(invalid="ignore", divide="ignore"):
                    rR = C / np.outer(rsd, rsd)
                for p, ((i, j), label) in enumerate(zip(nm.pairs(t.k), nm.pair_labels(t.terms))):
                    add(("corr", t.name, label), R.isel({nm.pair_dim(t.name): p}), rR[i, j])
        # a family's own parameters (brms's names) beside the Laplace fit's dpars and their SEs
        for name in getattr(m, "dpars", ()):
            v = post[name]
            if nm.THRESHOLD_DIM in v.dims:
                for k in v.coords[nm.THRESHOLD_DIM].to_numpy():
                    label = nm.threshold_label(k)
                    add(("dpar", "", label), v.sel({nm.THRESHOLD_DIM: k}),
                        np.nan if failed else r.dpars.get(label, np.nan),
                        r.dpars_se.get(label, np.nan))
            else:
                add(("dpar", "", name), v, np.nan if failed else r.dpars.get(name, np.nan),
                    r.dpars_se.get(name, np.nan))
        return keys, xr.Dataset(data), reml_v, reml_se

    @property
    def terms(self) -> tuple:
        """The random-effect terms, in lme4's order (a GLMM's include one-level-per-row terms)."""
        return self.glmm.terms if self.glmm is not None else self.design.terms

    def summary(self, prob: float | None = None) -> pd.DataFrame:
        """Posterior summaries next to the REML estimates.

        Parameters
        ----------
        prob : float, optional
            The HDI's probability (:data:`bayesmer.interpret.PROB`, 0.94, by
            default); ``summary(prob=0.95)`` has columns ``hdi_2.5%``, ``hdi_97.5%``.

        Returns
        -------
        DataFrame
            Indexed by (component, group, name), component in fixed, sd, corr,
            sigma (Gaussian only), dpar (a :mod:`bayesmer.families` family's
            own parameters by brms's names: ``shape``, ``nu``, ``phi``, ``zi``,
            ``sigma``, ``Intercept[1]``..); columns reml, reml_se (fixed effects: lme4's;
            SDs, correlations and sigma: :meth:`RemlFit.varcorr_se`, NaN above
            its row limit or on a singular fit; a GLMM's: glmer's Laplace
            estimates, SEs for the fixed effects only; a family's: glmmTMB's
            (clmm's) Laplace fit, ``fit.reml.dpars`` and ``dpars_se``), mean, sd, hdi_3%,
            hdi_97% (94% HDI), ess_bulk, ess_tail, r_hat.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.summary()
        >>> table.loc[("fixed", "", "Days"), ["reml", "mean", "hdi_3%", "hdi_97%"]].shape
        (4,)
        """
        import arviz_stats as azs

        from .interpret import _check_prob, _hdi_names

        prob = _check_prob(prob)
        lo, hi = _hdi_names(prob)
        keys, ds, reml_v, reml_se = self._scalars()
        s = azs.summary(ds, kind="all", ci_prob=prob, ci_kind="hdi", round_to="none")
        tag = f"hdi{100 * prob:g}"
        out = pd.DataFrame(
            {
                "reml": reml_v,
                "reml_se": reml_se,
                "mean": s["mean"].to_numpy(float),
                "sd": s["sd"].to_numpy(float),
                lo: s[f"{tag}_lb"].to_numpy(float),
                hi: s[f"{tag}_ub"].to_numpy(float),
                "ess_bulk": s["ess_bulk"].to_numpy(float),
                "ess_tail": s["ess_tail"].to_numpy(float),
                "r_hat": s["r_hat"].to_numpy(float),
            },
            index=pd.MultiIndex.from_tuples(keys, names=["component", "group", "name"]),
        )
        return out[["reml", "reml_se", "mean", "sd", lo, hi, "ess_bulk", "ess_tail", "r_hat"]]

    def _header(self) -> str:
        d = self.design
        post = self.idata["posterior"]
        groups = ", ".join(f"{t.name}: {t.n_levels}" for t in self.terms)
        t = self.timings
        seed = self.settings.get("seed")
        seed = post.attrs.get("seed") if seed is None else seed
        seed = "" if seed is None else f"; seed {seed}"
        if self.glmm is not None:
            fam = self.glmm.family
            link = fam.link if isinstance(fam.link, str) else fam.link.name
            what = f"Bayesian generalized linear mixed model ({fam.name}, {link} link; NUTS)"
            point = "reml: lme4's glmer (Laplace)"
            if getattr(self.built, "dpars", ()):
                point = ("reml: ordinal::clmm's fit (Laplace)" if fam.name == "cumulative"
                         else "reml: glmmTMB's fit (Laplace)")
                if fam.name == "cumulative":
                    point += f"; categories {' < '.join(fam.levels)}"
            return (
                f"{what}\nFormula: {self.glmm.formula}\nObservations: {d.n}; groups: {groups}\n"
                f"Draws: {post.sizes['chain']} chains x {post.sizes['draw']}; "
                f"compile {t.get('compile', 0):.1f} s, sampling {t.get('sampling', 0):.1f} s{seed}; {point}"
            )
        what = f"Bayesian linear mixed model ({self.strategy} likelihood, NUTS)"
        if self.response_family is not None:
            what = (f"Bayesian {self.response_family.name} mixed model (the Gaussian model of log y, {self.strategy} "
                    "likelihood, NUTS; reml: lmer's ML fit of log y)")
        return (
            f"{what}\n"
            f"Formula: {d.formula}\n"
            f"Observations: {d.n}; groups: {groups}\n"
            f"Draws: {post.sizes['chain']} chains x {post.sizes['draw']}; "
            f"compile {t.get('compile', 0):.1f} s, sampling {t.get('sampling', 0):.1f} s{seed}"
        )

    @staticmethod
    def _format(table: pd.DataFrame) -> dict:
        # a blank, not NaN, where REML has no standard error (variance components)
        fmt = {c: "{:.4g}".format for c in table.columns}
        fmt["reml_se"] = lambda v: "" if not np.isfinite(v) else f"{v:.4g}"
        return fmt

    def __str__(self) -> str:
        table = self.summary()
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            body = table.to_string(formatters=self._format(table))
        return f"{self._header()}\n\n{body}\n\nPriors:\n{self.priors}"

    def __repr__(self) -> str:
        formula = self.design.formula if self.glmm is None else self.glmm.formula
        return f"<BayesFit {formula} ({self.strategy})>"

    def _repr_html_(self) -> str:
        table = self.summary()
        head = "<br>".join(self._header().split("\n"))
        return f"<p>{head}</p>{table.to_html(formatters=self._format(table))}"

    # ---- estimates (the protocol shared with RemlFit) --------------------
    def fixef(self, prob: float | None = None) -> pd.Series | pd.DataFrame:
        """Posterior means of the fixed effects; with ``prob``, a table of mean, sd and that HDI.

        Parameters
        ----------
        prob : float, optional
            The HDI's probability; None (default) gives the means only.

        Returns
        -------
        Series or DataFrame
            Indexed by the fixed effects' lme4 names.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.fixef().index.tolist()
        ['(Intercept)', 'Days']
        """
        if prob is not None:
            return _interval_table(self.draws(self.built.beta), pd.Index(list(self._fixed_names)), prob)
        beta = self.idata["posterior"][self.built.beta].mean(_SAMPLE)
        return pd.Series(beta.to_numpy(), index=list(self._fixed_names), name="mean")

    @property
    def _fixed_names(self) -> tuple:
        """The sampled fixed effects' names (a cumulative model has no intercept column)."""
        return tuple(self.glmm.fixed_names) if self.glmm is not None else tuple(self.design.fixed_names)

    def ranef(self, prob: float | None = None) -> dict[str, pd.DataFrame]:
        """Per term, posterior means of the random effects (levels x columns).

        Parameters
        ----------
        prob : float, optional
            With it, per term a table indexed by (level, column) with mean, sd and that HDI.

        Returns
        -------
        dict of str to DataFrame
            Term name -> levels x columns, as :meth:`RemlFit.ranef`.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.ranef()["Subject"].shape
        (18, 2)
        """
        post = self.idata["posterior"]
        out = {}
        for t in self.terms:
            if prob is not None:
                b = self.draws(self.built.b[t.name])
                idx = pd.MultiIndex.from_product([list(t.levels), list(t.terms)], names=[t.name, "term"])
                out[t.name] = _interval_table(b.reshape(len(b), -1), idx, prob)
                continue
            b = post[self.built.b[t.name]].mean(_SAMPLE).to_numpy()
            out[t.name] = pd.DataFrame(b, index=pd.Index(list(t.levels), name=t.name), columns=list(t.terms))
        return out

    def varcorr(self, prob: float | None = None) -> pd.DataFrame:
        """Posterior means of SDs and correlations, in REML's tidy layout.

        Parameters
        ----------
        prob : float, optional
            With it, columns ``sd`` (posterior SD) and that HDI's bounds are added beside ``value``.

        Returns
        -------
        DataFrame
            Columns ``group, kind, term1, term2, value`` (``kind`` ``"sd"`` or
            ``"corr"``), then the ``Residual`` row.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.varcorr()["kind"].tolist()
        ['sd', 'sd', 'corr', 'sd']
        """
        post = self.idata["posterior"]
        sds = {t.name: post[self.built.sd[t.name]].mean(_SAMPLE).to_numpy() for t in self.terms}
        corrs = {t.name: post[self.built.corr[t.name]].mean(_SAMPLE).to_numpy() for t in self.terms if t.k > 1}
        owner = self.glmm if self.glmm is not None else self.design
        sigma = None if self.glmm is not None else float(post[self.built.sigma].mean())
        table = varcorr_table(owner, sds, corrs, sigma)
        if prob is None:
            return table
        # the same rows from each draw summary: varcorr_table lays out whatever values it is given
        sd_draws = [self.draws(self.built.sd[t.name]) for t in self.terms]
        corr_draws = {t.name: self.draws(self.built.corr[t.name]) for t in self.terms if t.k > 1}
        cols = sd_draws + list(corr_draws.values())
        if sigma is not None:
            cols.append(self.draws(self.built.sigma)[:, None])
        summ = _interval_table(np.column_stack(cols), None, prob)

        def layout(col):
            vals, pos = iter(summ[col].to_numpy()), {}
            for t in self.terms:
                pos[t.name] = np.array([next(vals) for _ in range(t.k)])
            out_c = {}
            for name, c in corr_draws.items():
                out_c[name] = np.array([next(vals) for _ in range(c.shape[1])])
            return varcorr_table(owner, pos, out_c, next(vals) if sigma is not None else None)["value"].to_numpy()

        table = table.copy()
        for col in summ.columns[1:]:
            table[col] = layout(col)
        return table

    def icc(self) -> pd.DataFrame:
        """Posterior of each variance component's share of an observation's variance.

        A random-intercept term's share is the intraclass correlation
        ``sd^2 / (sum of sd^2 + sigma^2)`` (Mixed Model 4a); a term with slopes
        adds ``z' Psi z`` averaged over the fitted rows (see
        :func:`bayesmer.protocol.variance_shares`).

        Returns
        -------
        DataFrame
            Indexed by component (terms, then ``Residual``): mean, sd,
            hdi_3%, hdi_97% of the share, and ``reml``, the REML fit's share.

        Examples
        --------
        >>> import bayesmer
        >>> dye = bayesmer.datasets.load("dyestuff")
        >>> fit = bayesmer.fit("Yield ~ 1 + (1 | Batch)", dye,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.icc().index.tolist()
        ['Batch', 'Residual']
        """
        if self.glmm is not None:
            raise NotImplementedError(
                "icc() is the share of an observation's variance, defined for the Gaussian family; a "
                f"{self.glmm.family.name} model has no residual variance on the data scale"
            )
        covs = {t.name: (L := self.cov_factor(t.name)) @ np.swapaxes(L, -1, -2) for t in self.design.terms}
        shares = variance_shares(self.design, covs, self.draws(self.built.sigma))
        table = _interval_table(np.column_stack(list(shares.values())), pd.Index(list(shares), name="component"))
        if self.reml is not None:
            table["reml"] = self.reml.icc()["share"].reindex(table.index).to_numpy()
        return table

    def cov_factor(self, term: str) -> np.ndarray:
        """Per draw, the Cholesky factor L of a term's covariance (Psi = L L'), shape (S, k, k).

        Parameters
        ----------
        term : str
            A term's name, e.g. ``"Subject"``.

        Returns
        -------
        ndarray
            Shape ``(S, k, k)``: S draws (chains stacked), k the term's columns.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit.cov_factor("Subject").shape
        (400, 2, 2)
        """
        t = {t.name: t for t in self.terms}[term]
        sd = self.draws(self.built.sd[t.name])
        if t.k == 1:
            return sd[:, :, None]
        R = nm.corr_matrix(self.draws(self.built.corr[t.name]), t.k)
        # jitter keeps the factor defined for draws with |corr| = 1
        return sd[:, :, None] * np.linalg.cholesky(R + 1e-12 * np.eye(t.k))

    # ---- prediction ------------------------------------------------------
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        kind: str = "mean",
        include_random: bool = True,
        sample_new_groups: bool = True,
        seed: int | None = None,
        summary: bool = False,
        offset=None,
        weights=None,
        point: bool = False,
    ):
        """Posterior draws of the mean or of new responses on ``newdata``, in a DataTree.

        Parameters
        ----------
        newdata : DataFrame, optional
            Defaults to the fitted data. Read as the fitted data were: a
            factor's value is matched to a fitted level by value whatever its
            dtype (``4``, ``4.0``, ``"4"`` and a categorical ``4`` all mean
            level ``"4"``); a value that is not a level of a fixed-effect
            factor, a string in a numeric column or a missing value outside the
            grouping columns raises :class:`~bayesmer.DesignError` naming the
            column and the value. A binomial or Poisson model reads its new
            rows' offset (the formula's ``offset()`` and ``offset=`` given as a
            column or expression) and, for ``kind="response"``, its trials
            (the ``cbind`` total, ``weights=``) from ``newdata``.
        kind : {"mean", "response", "link", "probs"}
            ``"link"``: the linear predictor ``X beta + Z b`` (+ offset);
            ``"mean"``: the expected response, its inverse link (variable
            ``mu``; the same as ``"link"`` for the Gaussian; a probability or
            a rate for the binomial and Poisson); ``"response"``: new
            observations (the mean plus ``N(0, sigma^2)`` noise; binomial
            successes in the row's trials, Poisson counts), named as the response.
            The families of :mod:`bayesmer.families`: ``"link"`` is on the
            log scale for ``lognormal``, ``"mean"`` is E[y]
            given the draw's parameters: ``exp(eta)`` (negbinomial, Gamma
            with the log link), ``(1 - zi) exp(eta)`` (zero-inflated),
            ``exp(eta + sigma^2 / 2)`` (lognormal), ``logit^-1(eta)`` (beta),
            ``eta`` (student), and for ``cumulative`` the expected category
            number ``sum_k k P(Y = k)`` (eta has no intercept there: the
            thresholds stand for it); ``"response"`` draws from the family
            (``cumulative``: category numbers 1..K, their labels the
            ``category`` coordinate). ``"probs"`` (``cumulative`` only): each
            category's probability ``P(Y = k) = F(Intercept[k] - eta) -
            F(Intercept[k-1] - eta)``, variable ``probs`` over (chain, draw,
            obs, category) with the categories' labels.
        include_random : bool
            Add the random effects; False gives the population mean ``X beta``.
        sample_new_groups : bool
            A level not in the fitted data gets, per draw, effects drawn from
            the population ``N(0, Psi)`` of that draw, shared by its rows
            (True, the default here); False raises :class:`PredictionError`
            naming the levels, as bambi's and brms's defaults do.
        seed : int, optional
            For the effects of new levels and the noise of ``"response"``.
        summary : bool
            Return a DataFrame (mean, sd, hdi_3%, hdi_97% per row) instead.
        offset, weights : str or array-like, optional
            Binomial and Poisson models: the new rows' ``offset=`` and
            ``weights=`` as :func:`bayesmer.fit` takes them (a column of
            ``newdata`` or one value per row), in place of the fit's own
            spelling; needed when the fit was given arrays.
        point : bool
            The point fit's (``fit.reml``: lme4's REML or ML, glmer's or
            glmmTMB's maximum likelihood) prediction instead of the
            posterior's: its fixed effects, conditional modes (zero for a
            level not in the fitted data or a missing one) and family
            parameters. ``"response"`` draws one new response per row.

        Returns
        -------
        xarray.DataTree or DataFrame
            The fit's tree (not modified) plus ``predictions`` (chain, draw,
            obs; ``category`` too for ``"probs"``) and
            ``predictions_constant_data`` (the columns of ``newdata`` the
            formula reads). With ``summary=True`` a DataFrame (for
            ``"probs"`` one row per row and category, indexed by both). With
            ``point=True`` a Series indexed like ``newdata``'s rows (for
            ``"probs"`` a DataFrame, one column per category, its label).

        Notes
        -----
        A missing value in a grouping column means an unknown member of the
        population: ``"mean"`` averages over the population (the term adds
        zero, exactly, as the model is linear), ``"response"`` draws the
        member's effects from ``N(0, Psi)`` per row.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> import pandas as pd
        >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "new"]})
        >>> tree = fit.predict(new, kind="response", seed=2)   # "new": drawn from the population
        >>> tree["predictions"]["Reaction"].shape
        (2, 200, 2)
        >>> fit.predict(new, summary=True).columns.tolist()
        ['mean', 'sd', 'hdi_3%', 'hdi_97%']
        """
        if kind not in PREDICTION_KINDS:
            raise PredictionError(f"kind must be one of {', '.join(PREDICTION_KINDS)}, got {kind!r}")
        fam_name = getattr(self.family, "name", "gaussian")
        if kind == "probs" and fam_name != "cumulative":
            raise PredictionError(f"kind='probs' gives the category probabilities of a cumulative (ordinal) model; "
                                  f"this is a {fam_name} model: use kind='mean'")
        if self.glmm is not None:
            return _predict_glmm(self, newdata, kind, include_random, sample_new_groups, seed, summary,
                                 offset, weights, point)
        if point and summary:
            raise PredictionError("summary=True summarises draws; point=True gives one value per row")
        if offset is not None or weights is not None:
            raise PredictionError("offset= and weights= are for binomial and Poisson fits; a Gaussian model's "
                                  "offset is the formula's offset(...), read from newdata")
        d, m = self.design, self.built
        post = self.idata["posterior"].to_dataset()
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        S = 1 if point else n_chain * n_draw
        if newdata is None and getattr(d, "sums", None) is not None:
            raise PredictionError("the fitted data are not in memory: pass newdata (a pandas DataFrame, e.g. "
                                  "one chunk of them), or fit with sample_posterior_predictive=True")
        df = d.frame if newdata is None else newdata
        if not isinstance(df, pd.DataFrame):
            raise PredictionError(f"newdata must be a pandas DataFrame, not {type(df).__name__}")
        missing_group = {}
        src = df if include_random else _placeholder_groups(d, df)  # the rows new_data reads
        filled = src
        for t in d.terms:
            absent = [c for c in t.factors if c not in src.columns]
            if absent:
                raise PredictionError(f"newdata lacks grouping column {absent[0]!r} of term {t.label} "
                                      "(include_random=False predicts without it)")
            missing_group[t.name] = src[list(t.factors)].isna().any(axis=1).to_numpy()
        if any(v.any() for v in missing_group.values()):
            # a placeholder level, replaced by the population below; new_data refuses missing values
            filled = src.copy()
            for t in d.terms:
                for c in t.factors:
                    if filled[c].isna().any():
                        filled[c] = filled[c].astype(object).where(filled[c].notna(), "\0unknown")
        nd = new_data(d, filled)
        rng = np.random.default_rng(seed)
        if point:  # the REML (ML) fit's estimates and conditional modes
            beta = np.asarray(pd.Series(self.reml.fixef).reindex(list(d.fixed_names)), dtype=float)[None, :]
            ranef = self.reml.ranef() if callable(self.reml.ranef) else self.reml.ranef
        else:
            beta = _stack(post, m.beta) if d.p else np.zeros((S, 0))
        Zs, codes, bs = [], [], []
        extra = np.zeros((S, len(df)))
        if include_random:
            for t, c, Z, keys in zip(d.terms, nd.codes, nd.Z, nd.keys):
                if point:
                    b = np.asarray(ranef[t.name].reindex(list(t.levels)), dtype=float)[None]
                else:
                    b = _stack(post, m.b[t.name])
                unknown = missing_group[t.name]
                new = (c < 0) & ~unknown
                c = c.copy()
                if new.any():
                    new_keys, inv = np.unique(keys[new].astype(str), return_inverse=True)
                    if not sample_new_groups:
                        raise PredictionError(
                            f"newdata has level(s) of {t.group} not in the fitted data: "
                            f"{', '.join(map(repr, new_keys[:5]))}{' ...' if len(new_keys) > 5 else ''}; "
                            "pass sample_new_groups=True to draw their effects from the population"
                        )
                    if point:  # the point fit's prediction for a new level: its effects at their mean, zero
                        new_b = np.zeros((1, len(new_keys), t.k))
                    else:
                        L = self.cov_factor(t.name)
                        z = rng.standard_normal((S, len(new_keys), t.k))
                        new_b = np.einsum("sgk,slk->sgl", z, L)
                    b = np.concatenate([b, new_b], axis=1)
                    c[new] = t.n_levels + inv
                c[unknown] = -1
                if kind == "response" and unknown.any() and not point:
                    L = self.cov_factor(t.name)
                    z = rng.standard_normal((S, int(unknown.sum()), t.k))
                    extra[:, unknown] += np.einsum("sgk,slk,gl->sg", z, L, Z[unknown])
                Zs.append(Z)
                codes.append(c)
                bs.append(b)
        eta = linear_predictor(nd.X, Zs, codes, beta, bs) + extra
        if nd.offset is not None:
            eta = eta + nd.offset
        sigma = np.array([float(self.reml.sigma)]) if point else _stack(post, m.sigma)
        if kind == "response":
            eta = eta + sigma[:, None] * rng.standard_normal(eta.shape)
        if fam_name == "lognormal":  # the Gaussian model of log y: the y scale's mean and draws
            if kind == "mean":
                eta = np.exp(eta + sigma[:, None] ** 2 / 2)
            elif kind == "response":
                eta = np.exp(eta)
        if point:
            name = {"response": d.response, "mean": nm.mean_var(d.response), "link": nm.link_var(d.response)}[kind]
            return _point_result(eta, df, kind, name)
        return self._prediction_tree(eta, df, kind, include_random, summary)

    def _prediction_tree(self, eta, df, kind, include_random, summary, levels=()):
        d = self.design
        post = self.idata["posterior"]
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        if summary:
            if kind == "probs":  # one row per (row, category)
                S, n, K = eta.shape
                index = pd.MultiIndex.from_product([df.index, list(levels)], names=[df.index.name, nm.CATEGORY_DIM])
                return _interval_table(eta.reshape(S, n * K), index)
            return _interval_table(eta, df.index)
        response = self.built.response if self.glmm is not None else d.response
        name = {"response": response, "mean": nm.mean_var(response), "link": nm.link_var(response),
                "probs": "probs" if response != "probs" else "probs_category"}[kind]
        sampler = self.settings.get("sampler", "nutpie")
        coords = {"chain": post.coords["chain"], "draw": post.coords["draw"], nm.OBS_DIM: np.arange(len(df))}
        if kind == "probs":
            var = ((*_SAMPLE, nm.OBS_DIM, nm.CATEGORY_DIM), eta.reshape(n_chain, n_draw, len(df), -1))
            coords[nm.CATEGORY_DIM] = list(levels)
        else:
            var = ((*_SAMPLE, nm.OBS_DIM), eta.reshape(n_chain, n_draw, -1))
            if kind == "response" and levels:  # category numbers 1..K; their labels as a coordinate
                coords[nm.CATEGORY_DIM] = list(levels)
        pred = xr.Dataset({name: var}, coords=coords,
                          attrs=group_attrs(sampler, kind=kind, include_random=int(include_random)))
        if self.glmm is not None:
            used = self.glmm.frame.columns
        else:
            used = d.frame.columns if d.frame is not None else pd.Index(d.source[1].used)  # not in memory: the plan's
        pcd = constant_data(d, df[list(used.intersection(df.columns))])
        pcd.attrs = group_attrs(sampler)
        groups = {k: v.to_dataset() for k, v in self.idata.children.items()}
        groups["predictions"] = pred
        groups["predictions_constant_data"] = pcd
        tree = xr.DataTree.from_dict(groups)
        tree.attrs = dict(self.idata.attrs)
        return tree

    # ---- after the fit (bayesmer.interpret; thin delegations) -----------
    def hypothesis(self, hypotheses, alpha: float = 0.05) -> pd.DataFrame:
        """brms's ``hypothesis()`` on the fixed effects, beside REML's Wald test; see :func:`bayesmer.interpret.hypothesis`.

        Parameters
        ----------
        hypotheses : str or list of str
            Linear hypotheses on the fixed effects, e.g. ``"Days > 10"``,
            ``"Intercept + 10 * Days > 350"``, ``"period2 - period3 = 0"``
            (``Intercept`` names ``(Intercept)``, as in brms; a name in
            backticks; read by :func:`bayesmer.parse_hypothesis`, never evaluated).
        alpha : float
            brms's ``alpha``: the interval is the draws' ``alpha/2`` and
            ``1 - alpha/2`` quantiles for ``=``, the ``alpha`` and
            ``1 - alpha`` quantiles for an inequality.

        Returns
        -------
        DataFrame
            One row per hypothesis: brms's columns ``Hypothesis``,
            ``Estimate``, ``Est.Error``, ``CI.Lower``, ``CI.Upper``,
            ``Evid.Ratio`` (an inequality's posterior odds; for ``=`` the
            Savage-Dickey density ratio), ``Post.Prob``, ``Star``; then REML's
            Wald test: ``reml``, ``reml_se`` (from ``vcov``), ``z``, ``p``.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.hypothesis(["Days > 10", "Days = 10"])
        >>> table["Hypothesis"].tolist()
        ['(Days)-(10) > 0', '(Days)-(10) = 0']
        >>> table.columns.tolist()[-4:]
        ['reml', 'reml_se', 'z', 'p']
        """
        from . import interpret

        return interpret.hypothesis(self, hypotheses, alpha=alpha)

    def r2(self, prob: float | None = None) -> pd.DataFrame:
        """Bayesian R² (brms's ``bayes_R2``) beside Nakagawa's R² of the REML fit; see :func:`bayesmer.interpret.r2`.

        Per draw ``var(mu) / (var(mu) + var(y - mu))`` over the fitted rows
        (Gelman, Goodrich, Gabry and Vehtari 2019), with the groups' effects
        (``conditional``) and without them (``marginal``); the ``reml``
        column is performance's ``r2_nakagawa`` of the REML or glmer fit.

        Parameters
        ----------
        prob : float, optional
            The HDI's probability (:data:`bayesmer.interpret.PROB`, 0.94, by default).

        Returns
        -------
        DataFrame
            Rows ``conditional`` and ``marginal``; columns ``reml``, then the
            posterior's ``mean``, ``sd``, HDI bounds and ``ess_bulk``.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.r2()
        >>> table.index.tolist(), table.columns.tolist()
        (['conditional', 'marginal'], ['reml', 'mean', 'sd', 'hdi_3%', 'hdi_97%', 'ess_bulk'])
        """
        from . import interpret

        return interpret.r2(self, prob=prob)

    def predictions(self, newdata=None, by=None, include_random=True, kind: str = "mean",
                    prob: float | None = None) -> pd.DataFrame:
        """marginaleffects's ``predictions()``, REML beside the posterior; see :func:`bayesmer.interpret.predictions`.

        Parameters
        ----------
        newdata : DataFrame, optional
            The rows to predict at; the fitted rows by default
            (:func:`bayesmer.datagrid` makes a grid).
        by : None, True, str or list of str
            None: one row per row of ``newdata``; True: their average; column
            names: the average within each group of those columns.
        include_random : {True, "conditional", False, "zero", "integrated", "marginal"}
            True: the observed groups' effects (REML's conditional modes, the
            posterior's draws; a new level adds zero); False: the population
            level, random effects at zero; ``"integrated"``: the mean over a
            new group's ``N(0, Sigma)`` (the same as False on the identity link).
        kind : {"mean", "link"}
            The expected response (a probability, a rate) or the linear predictor.
        prob : float, optional
            The HDI's probability (0.94 by default).

        Returns
        -------
        DataFrame
            The rows (or the ``by`` groups), then ``reml`` and ``reml_se``
            (the REML/Laplace estimate and its delta-method SE over the fixed
            effects, conditional modes held fixed), then the posterior's
            ``mean``, ``sd``, HDI bounds and ``ess_bulk``.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.predictions(by="Days")          # the mean over the subjects, per day
        >>> table[["Days", "reml"]].round(1).head(2).values.tolist()
        [[0.0, 251.4], [1.0, 261.9]]
        >>> grid = bayesmer.datagrid(fit, Days=[0, 9])
        >>> fit.predictions(grid, include_random=False)["reml"].round(1).tolist()
        [251.4, 345.6]
        """
        from . import interpret

        return interpret.predictions(self, newdata, by=by, include_random=include_random, kind=kind, prob=prob)

    def comparisons(self, variables=None, newdata=None, by=None, contrast=None, comparison: str = "difference",
                    include_random=True, kind: str = "mean", prob: float | None = None) -> pd.DataFrame:
        """marginaleffects's ``comparisons()``, REML beside the posterior; see :func:`bayesmer.interpret.comparisons`.

        The change in the prediction when a variable changes, per row or
        averaged (``by=True``: marginaleffects's ``avg_comparisons``).

        Parameters
        ----------
        variables : str, list of str or dict
            The variables to change; a dict maps each to its own contrast.
        newdata : DataFrame, optional
            As :meth:`predictions`.
        by : None, True, str or list of str
            As :meth:`predictions`.
        contrast : optional
            A factor: ``"reference"`` (default: each level against the
            first), ``"pairwise"``, ``"sequential"`` or a pair ``(lo, hi)``; a
            number: a step ``h`` (default 1: ``x + h`` against ``x``), a pair
            of values, or ``"sd"`` (``x + sd/2`` against ``x - sd/2``).
        comparison : {"difference", "ratio"}
            ``hi - lo`` or ``hi / lo`` per row (then averaged).
        include_random : {True, "conditional", False, "zero", "integrated", "marginal"}
            As :meth:`predictions`.
        kind : {"mean", "link"}
            As :meth:`predictions`.
        prob : float, optional
            The HDI's probability (0.94 by default).

        Returns
        -------
        DataFrame
            ``term``, ``contrast``, the rows or groups, then the columns of
            :meth:`predictions`.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.comparisons("Days", by=True)    # one more day, averaged over the rows
        >>> table[["term", "contrast"]].values.tolist(), round(float(table["reml"].iloc[0]), 2)
        ([['Days', '+1']], 10.47)
        """
        from . import interpret

        return interpret.comparisons(self, variables, newdata, by=by, contrast=contrast, comparison=comparison,
                                     include_random=include_random, kind=kind, prob=prob)

    def slopes(self, variables=None, newdata=None, by=None, include_random=True, kind: str = "mean",
               eps: float | None = None, prob: float | None = None) -> pd.DataFrame:
        """marginaleffects's ``slopes()``, REML beside the posterior; see :func:`bayesmer.interpret.slopes`.

        The derivative of the prediction in a numeric variable, by central
        differences per row; ``by=True`` averages them (``avg_slopes``).

        Parameters
        ----------
        variables : str or list of str
            The numeric variables (a factor: use :meth:`comparisons`).
        newdata : DataFrame, optional
            As :meth:`predictions`.
        by : None, True, str or list of str
            As :meth:`predictions`.
        include_random : {True, "conditional", False, "zero", "integrated", "marginal"}
            As :meth:`predictions`.
        kind : {"mean", "link"}
            As :meth:`predictions`.
        eps : float, optional
            The step of ``(f(x + eps/2) - f(x - eps/2)) / eps``; by default
            ``1e-4`` times the variable's range in the fitted data (marginaleffects's).
        prob : float, optional
            The HDI's probability (0.94 by default).

        Returns
        -------
        DataFrame
            ``term``, the rows or groups, then the columns of :meth:`predictions`.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> table = fit.slopes("Days", by=True)
        >>> round(float(table["reml"].iloc[0]), 2)      # the Gaussian model's slope: the fixed effect
        10.47
        """
        from . import interpret

        return interpret.slopes(self, variables, newdata, by=by, include_random=include_random, kind=kind,
                                eps=eps, prob=prob)

    def posterior_predictive(self, seed: int | None = None) -> "BayesFit":
        """A copy of the fit whose tree has a ``posterior_predictive`` group (this fit is not changed).

        New observations on the fitted rows, one per draw (as
        ``fit(..., sample_posterior_predictive=True)`` would have drawn
        them): the mean plus ``N(0, sigma^2)`` noise, binomial successes in
        the row's trials, Poisson counts. A group already there is replaced.

        Parameters
        ----------
        seed : int, optional
            For the noise (and the effects of rows with a missing group).

        Returns
        -------
        BayesFit
            The same fit with ``posterior_predictive`` (chain, draw, obs) in
            its ``idata``, named as the response: ready for
            :func:`bayesmer.plots.plot_ppc` and ArviZ's checks.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit2 = fit.posterior_predictive(seed=1)
        >>> fit2.idata["posterior_predictive"]["Reaction"].shape
        (2, 200, 180)
        >>> "posterior_predictive" in fit.idata.children
        False
        """
        import dataclasses

        name = self.built.response if self.glmm is not None else self.design.response
        if getattr(self.built, "dpars", ()):  # a bayesmer.families family: drawn from the family itself
            pp = _family_predictive(self, seed)
            pp.attrs = group_attrs(self.settings.get("sampler", "nutpie"))
        else:
            tree = self.predict(kind="response", seed=seed)
            pred = tree["predictions"].to_dataset()
            pp = xr.Dataset({name: pred[name]}, attrs=group_attrs(self.settings.get("sampler", "nutpie")))
        groups = {k: v.to_dataset() for k, v in self.idata.children.items()}
        groups["posterior_predictive"] = pp
        new = xr.DataTree.from_dict(groups)
        new.attrs = dict(self.idata.attrs)
        return dataclasses.replace(self, idata=new)

    def update(self, formula: str | None = None, priors: dict | None = None, data=None, **settings) -> "BayesFit":
        """Refit a changed model, the fit's other settings kept (brms's ``update``).

        What carries over unless given anew: the data; the priors you set
        (those that differ from the data-scaled defaults; the defaults
        themselves are recomputed for the new model and data); every
        setting in ``fit.settings`` (``draws``, ``tune``, ``chains``,
        ``seed``, ``sampler``, ``strategy``, ``method``, ``backend``,
        ``target_accept``, ``family``, ``link``); a binomial or Poisson
        fit's ``weights=`` and ``offset=`` when given as a column name or
        an expression (arrays do not carry over: pass them again). Not
        carried: ``progress``, ``log_likelihood``,
        ``sample_posterior_predictive`` and ``sample_prior``, which take
        :func:`bayesmer.fit`'s defaults unless given. This fit is not
        changed.

        Parameters
        ----------
        formula : str, optional
            The new model's whole formula (no ``.`` shorthand).
        priors : dict, optional
            Overrides as :func:`bayesmer.fit` takes them, merged over the
            carried ones: a key here replaces every carried slot it covers
            (``"b"`` replaces a carried ``"Days"``). A carried prior whose
            slot the new model lacks is dropped with a warning, and so are
            all carried priors when ``family`` changes (their scale does).
        data : DataFrame, optional
            New data; by default the fitted data (the columns the formula
            read: a new formula reading other columns needs ``data=``).
        **settings
            :func:`bayesmer.fit`'s keyword arguments (``draws=``, ``seed=``,
            ``family=``, ``progress=``, ...).

        Returns
        -------
        BayesFit

        Raises
        ------
        SettingsError
            An argument :func:`bayesmer.fit` does not take.

        Examples
        --------
        >>> import bayesmer
        >>> sleep = bayesmer.datasets.load("sleepstudy")
        >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
        ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
        >>> fit2 = fit.update(priors={"Days": "Normal(10, 1)"}, progress=False)
        >>> fit2.priors.to_dict()["Days"], fit2.settings["draws"]
        ('Normal(10.0, 1.0)', 200)
        >>> fit3 = fit.update("Reaction ~ 1 + (1 | Subject)", progress=False)
        >>> list(fit3.reml.fixef.index)
        ['(Intercept)']
        """
        # the pipeline (design -> REML -> priors -> model -> draws) sits above the results: the one
        # call upward, looked up when called, as prior_sweep's refit
        from .api import fit as refit

        kwargs, old_priors = _update_arguments(self, formula, priors, data, settings)
        formula_, data_ = kwargs.pop("formula"), kwargs.pop("data")
        return refit(formula_, data_, priors=old_priors, **kwargs)


_UPDATE_EXTRA = ("progress", "log_likelihood", "sample_posterior_predictive", "sample_prior", "weights", "offset")


def _update_arguments(fit: BayesFit, formula, priors, data, settings: dict) -> tuple[dict, dict | None]:
    """:meth:`BayesFit.update`'s arguments to :func:`bayesmer.fit`: (keyword arguments, priors)."""
    import warnings

    from .errors import SettingsError
    from .priors import default_priors, slots_of

    unknown = [k for k in settings if k not in fit.settings and k not in _UPDATE_EXTRA]
    if unknown:
        raise SettingsError(f"update: unknown argument {unknown[0]!r}; it takes formula, priors, data and "
                            f"{', '.join([*fit.settings, *_UPDATE_EXTRA])}")
    gd = fit.glmm
    kwargs = dict(fit.settings)
    family_changed = "family" in settings and settings["family"] != kwargs["family"]
    if family_changed and "link" not in settings:
        kwargs["link"] = None  # the old family's link need not be the new one's
    kwargs.update(settings)
    if gd is not None and kwargs["family"] != "gaussian":
        for name, spec in (("weights", gd.weights_spec), ("offset", gd.offset_spec)):
            if spec is not None:
                kwargs.setdefault(name, spec)
    model_changed = formula is not None or data is not None or family_changed
    if formula is None:
        formula = gd.formula if gd is not None else str(fit.design.formula)
    if data is None:
        if gd is not None:
            data = gd.frame
        else:
            data = fit.design.frame if fit.design.frame is not None else fit.design.source[0].obj  # not in memory
    kwargs["formula"], kwargs["data"] = formula, data
    # the priors set by hand: those that differ from the defaults of the fitted model and data
    defaults = default_priors(gd if gd is not None else fit.design, family=fit.family).to_dict()
    carried = {k: v for k, v in fit.priors.to_dict().items() if defaults.get(k) != v}
    new_model, family = None, kwargs["family"]
    if model_changed and (carried or priors):
        if family == "gaussian":
            new_model = build_design(formula, data)
        else:
            from .family import get_family
            from .glmm_design import glmm_design

            new_model = glmm_design(formula, data, get_family(family, kwargs["link"]))
    fam = None if family == "gaussian" else family
    dropped = []
    if carried and family_changed:
        dropped, carried = list(carried), {}
    elif carried and new_model is not None:
        slots = default_priors(new_model, family=fam).to_dict()
        dropped = [k for k in carried if k not in slots]
        carried = {k: v for k, v in carried.items() if k in slots}
    if dropped:
        why = "its family changed" if family_changed else "the new model has no such slot"
        warnings.warn(f"update: the prior(s) of {', '.join(dropped)} do not carry over ({why})", UserWarning,
                      stacklevel=4)
    if priors:
        model = new_model if new_model is not None else (gd if gd is not None else fit.design)
        covered = {slot for key in priors for slot in slots_of(model, key, family=fam)} if carried else set()
        carried = {k: v for k, v in carried.items() if k not in covered} | dict(priors)
    return kwargs, (carried or None)


def _family_predictive(fit: BayesFit, seed) -> xr.Dataset:
    """New observations on the fitted rows of a :mod:`bayesmer.families` model, one per draw (``rvs``);
    an ordinal model's are the categories 1..K, their labels the ``category`` coordinate."""
    from .sampling import _glmm_rows, family_draws

    gd, m = fit.glmm, fit.built
    post = fit.idata["posterior"].to_dataset()
    c, d = post.sizes["chain"], post.sizes["draw"]
    beta = _stack(post, m.beta) if gd.p else np.zeros((c * d, 0))
    bs = [_stack(post, m.b[t.name]) for t in gd.terms]
    eta = _glmm_rows(gd, beta, bs, link=False)
    dp = family_draws(post, gd.family, m.dpars)
    rng = np.random.default_rng(seed)
    fam = gd.family
    yrep = _family_rows(eta, dp, lambda e, dd: fam.rvs(e, dd, gd.weights, rng))
    n = len(gd.y)
    pp = xr.Dataset({m.response: ((*_SAMPLE, nm.OBS_DIM), yrep.reshape(c, d, n))},
                    coords={"chain": post.coords["chain"], "draw": post.coords["draw"], nm.OBS_DIM: np.arange(n)})
    if fam.name == "cumulative":
        pp = pp.assign_coords({nm.CATEGORY_DIM: list(fam.levels)})
    return pp


def _new_values(spec, df: pd.DataFrame, what: str, arg: str) -> np.ndarray:
    """A GLMM's ``offset=`` or ``weights=`` on new rows: a column or expression of ``df``, or one value per row."""
    from .glmm_design import evaluate_column as _evaluate

    if isinstance(spec, str):
        try:
            values = _evaluate(spec, df, f"{arg}= {spec!r}")
        except Exception as exc:
            raise PredictionError(f"cannot read the {what} {spec!r} ({arg}=) from newdata: {exc}") from None
    else:
        values = np.asarray(spec, dtype=float).reshape(-1)
        if values.shape[0] != len(df):
            raise PredictionError(f"{arg}= has {values.shape[0]} values for {len(df)} rows of newdata")
    bad = ~np.isfinite(values)
    if bad.any():
        raise PredictionError(f"the {what} of newdata's row {df.index[int(np.flatnonzero(bad)[0])]!r} is "
                              f"{values[bad][0]}; give a finite value for every row")
    return values


def _array_spec(spec, arg: str, df: pd.DataFrame):
    """The fit's ``offset=``/``weights=`` as newdata gives it: its column or expression, or, for a
    fit given an array, newdata's ``(offset)``/``(weights)`` column; else say what to pass."""
    if spec is None or spec not in (f"({arg})",):
        return spec
    if spec in df.columns:
        return spec
    raise PredictionError(f"the fit's {arg}= was an array, so newdata cannot name it: pass "
                          f"predict(newdata, {arg}=...) with one value per row (or a column name)")


def _new_offset(gd, df: pd.DataFrame, offset) -> np.ndarray:
    """The ``offset=`` part of new rows' offset (the formula's is :func:`new_data`'s)."""
    spec = offset if offset is not None else _array_spec(gd.offset_spec, "offset", df)
    return np.zeros(len(df)) if spec is None else _new_values(spec, df, "offset", "offset")


def _new_trials(gd, df: pd.DataFrame, weights) -> np.ndarray:
    """A binomial model's trials on new rows: the ``cbind`` total times the prior weights.

    A column of the response that newdata lacks (the successes of ``cbind(s, n - s)``)
    may be left out when the total does not depend on it (``s + (n - s)``).
    """
    from .formula import Call, deparse, variables
    from .glmm_design import evaluate_column as _evaluate, parse_response as _lhs

    spec = weights if weights is not None else _array_spec(gd.weights_spec, "weights", df)
    prior = np.ones(len(df)) if spec is None else _new_values(spec, df, "weights (trials)", "weights")
    node = _lhs(gd.label)  # parsed as the fit parsed it: never evaluated as Python
    if not (isinstance(node, Call) and node.fn == "cbind"):
        return prior
    args = [a for _, a in node.args]
    read = sorted(set().union(*(variables(a) for a in args)) & set(map(str, gd.frame.columns)))
    absent = [c for c in read if c not in df.columns]

    def total(fill):
        frame = df.assign(**{c: fill for c in absent}) if absent else df
        try:
            return sum(_evaluate(a, frame, f"the response {gd.label!r}") for a in args)
        except Exception as exc:
            raise PredictionError(f"cannot read the trials {' + '.join(map(deparse, args))} of the response "
                                  f"{gd.label!r} from newdata: {exc}") from None

    trials = total(0.0)
    if absent and not np.allclose(trials, total(1.0), rtol=0, atol=1e-9):
        raise PredictionError(
            f"kind='response' draws binomial counts out of each new row's trials, the total of {gd.label!r}: "
            f"newdata lacks column(s) {', '.join(map(repr, absent))} it needs"
        )
    bad = ~np.isfinite(trials) | (trials < 0)
    if bad.any():
        raise PredictionError(f"the trials of newdata's row {df.index[int(np.flatnonzero(bad)[0])]!r} are "
                              f"{trials[bad][0]}; they must be finite and non-negative")
    return trials * prior


def _is_response_family(fam) -> bool:
    from .families import ResponseFamily

    return isinstance(fam, ResponseFamily)


def _point_parts(fit: BayesFit):
    """The point fit's (``fit.reml``) fixed effects ``(1, p)``, per term effects ``(1, levels, k)`` and dpars."""
    point, gd = fit.reml, fit.glmm
    fixef = point.fixef() if callable(point.fixef) and not isinstance(point.fixef, pd.Series) else point.fixef
    names = list(gd.fixed_names)
    beta = np.asarray(pd.Series(fixef).reindex(names), dtype=float)[None, :]
    if np.isnan(beta).any():
        raise PredictionError("the point fit has no estimates (it failed); predict from the posterior (point=False)")
    ranef = point.ranef() if callable(point.ranef) else point.ranef
    bs = {t.name: np.asarray(ranef[t.name].reindex(list(t.levels)), dtype=float)[None] for t in gd.terms}
    dp = {}
    if _is_response_family(gd.family):
        for d in gd.family.dpars:
            if d.transform == "ordered":
                v = [point.dpars[f"{d.name}[{i + 1}]"] for i in range(gd.family.dpar_size(d))]
                dp[d.name] = np.asarray(v, dtype=float)[None, :]
            else:
                dp[d.name] = np.array([float(point.dpars[d.name])])
    return beta, bs, dp


def _family_mean(fam, eta: np.ndarray, dp: dict) -> np.ndarray:
    """E[y] per draw and row (S, n) from the family's ``mean``, the draws' dpars broadcast over rows."""
    if fam.name == "cumulative":  # its thresholds are per draw (S, K-1), not broadcast over rows
        return np.asarray(fam.mean(eta, dp), dtype=float)
    return np.asarray(fam.mean(eta, {k: np.asarray(v)[:, None] for k, v in dp.items()}), dtype=float)


def _point_result(values: np.ndarray, df: pd.DataFrame, kind: str, name: str, levels=()):
    """The point fit's prediction: a Series per row, or for ``"probs"`` a DataFrame with a column per category."""
    if kind == "probs":
        return pd.DataFrame(values[0], index=df.index, columns=pd.Index(list(levels), name=nm.CATEGORY_DIM))
    if kind == "response" and levels:
        return pd.Series(pd.Categorical.from_codes(values[0].astype(int) - 1, categories=list(levels), ordered=True),
                         index=df.index, name=name)
    return pd.Series(values[0], index=df.index, name=name)


def _placeholder_groups(design: Design, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a placeholder level in each grouping column it lacks: a population-level prediction
    (``include_random=False``) does not read them."""
    absent = [c for t in design.terms for c in t.factors if c not in df.columns]
    return df.assign(**{c: "\0unknown" for c in dict.fromkeys(absent)}) if absent else df


def _predict_glmm(fit: BayesFit, newdata, kind, include_random, sample_new_groups, seed, summary,
                  offset=None, weights=None, point=False):
    """BayesFit.predict for a binomial, Poisson or :mod:`bayesmer.families` fit (see there)."""
    gd, m = fit.glmm, fit.built
    post = fit.idata["posterior"].to_dataset()
    S = post.sizes["chain"] * post.sizes["draw"]
    rng = np.random.default_rng(seed)
    family_fit = _is_response_family(gd.family)
    if point:
        if summary:
            raise PredictionError("summary=True summarises draws; point=True gives one value per row")
        beta_pt, b_pt, dp = _point_parts(fit)
        S = 1
    elif family_fit:
        from .sampling import family_draws

        dp = family_draws(post, gd.family, m.dpars)
    if newdata is None:
        if offset is not None or weights is not None:
            raise PredictionError("offset= and weights= are for newdata; the fitted rows have their own")
        new, df = gd, gd.frame
    else:
        if not isinstance(newdata, pd.DataFrame):
            raise PredictionError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
        new, df = None, newdata

    def effects(t):
        return b_pt[t.name] if point else _stack(post, m.b[t.name])

    if point:
        beta = beta_pt
    else:
        beta = _stack(post, m.beta) if gd.p else np.zeros((S, 0))
    if new is not None:
        X, off, weights = gd.X, gd.offset, gd.weights
        Zs = [t.Z for t in gd.terms] if include_random else []
        codes = [t.codes for t in gd.terms] if include_random else []
        bs = [effects(t) for t in gd.terms] if include_random else []
    else:
        nd = new_data(gd.design, df if include_random else _placeholder_groups(gd.design, df))
        X = nd.X
        keep = getattr(gd, "_keep", None)  # cumulative: no intercept column (the thresholds stand for it)
        if keep is not None and X.shape[1] != len(keep):
            X = np.asarray(X, dtype=float)[:, keep]
        off = np.zeros(len(df)) if nd.offset is None else np.asarray(nd.offset, dtype=float)
        off = off + _new_offset(gd, df, offset)
        if kind == "response" and gd.family.name == "binomial":
            weights = _new_trials(gd, df, weights)
        Zs, codes, bs = [], [], []
        if include_random:
            if len(gd.terms) != len(gd.design.terms):
                raise PredictionError("prediction on new data with a one-level-per-row term is not supported")
            for t, c, Z, keys in zip(gd.terms, nd.codes, nd.Z, nd.keys):
                b = effects(t)
                new_lv = c < 0
                c = c.copy()
                if new_lv.any():
                    if not sample_new_groups:
                        raise PredictionError(
                            f"newdata has level(s) of {t.group} not in the fitted data; pass "
                            "sample_new_groups=True to draw their effects from the population"
                        )
                    new_keys, inv = np.unique(keys[new_lv].astype(str), return_inverse=True)
                    if point:  # the point fit's prediction for a new level: its effects at their mean, zero
                        new_b = np.zeros((1, len(new_keys), t.k))
                    else:
                        L = fit.cov_factor(t.name)
                        z = rng.standard_normal((S, len(new_keys), t.k))
                        new_b = np.einsum("sgk,slk->sgl", z, L)
                    b = np.concatenate([b, new_b], axis=1)
                    c[new_lv] = t.n_levels + inv
                Zs.append(Z)
                codes.append(c)
                bs.append(b)
    eta = linear_predictor(X, Zs, codes, beta, bs) + off
    levels = tuple(getattr(gd.family, "levels", ()))
    if family_fit:
        fam = gd.family
        if kind == "mean":
            eta = _family_mean(fam, eta, dp)
        elif kind == "probs":
            eta = fam.probs(eta, dp)
        elif kind == "response":
            eta = _family_rows(eta, dp, lambda e, d: fam.rvs(e, d, None, rng))
    else:
        if kind != "link":
            eta = gd.family.link.linkinv(eta)
        if kind == "response":
            if gd.family.name == "binomial":
                eta = rng.binomial(np.round(weights).astype(np.int64)[None, :], eta).astype(float)
            else:
                eta = rng.poisson(eta).astype(float)
    if point:
        name = {"response": m.response, "mean": nm.mean_var(m.response), "link": nm.link_var(m.response),
                "probs": "probs"}[kind]
        return _point_result(eta, df, kind, name, levels)
    return fit._prediction_tree(eta, df, kind, include_random, summary, levels)



def diagnose(fit: BayesFit, stacklevel: int = 3) -> list[str]:
    """Warn about divergences, high R-hat and low ESS, with what to try."""
    msgs = []
    stats = fit.idata["sample_stats"]
    chains = fit.idata["posterior"].sizes["chain"]
    if "diverging" in stats:
        n_div = int(stats["diverging"].sum())
        if n_div:
            msgs.append(
                f"{n_div} divergent transition(s) after tuning: the posterior has regions NUTS cannot "
                "follow; try target_accept=0.95, more informative priors on the SDs"
                + (", or strategy='marginal'" if fit.strategy == "full" else "")
            )
    s = fit.summary()
    bad_rhat = s.index[s["r_hat"] > 1.01]
    if len(bad_rhat):
        names = ", ".join(f"{c}:{g + ':' if g else ''}{n}" for c, g, n in bad_rhat)
        msgs.append(f"R-hat above 1.01 for {names}: the chains disagree; run more tune and draws")
    least = 100 * chains
    low = s.index[(s["ess_bulk"] < least) | (s["ess_tail"] < least)]
    if len(low):
        names = ", ".join(f"{c}:{g + ':' if g else ''}{n}" for c, g, n in low)
        msgs.append(
            f"effective sample size below {least} (100 per chain) for {names}: "
            "increase draws, or reparameterise (strategy='marginal' when it applies)"
        )
    for msg in msgs:
        warnings.warn(msg, UserWarning, stacklevel=stacklevel)
    return msgs
