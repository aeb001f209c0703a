"""The Bayesian fit, reported next to REML.

:class:`BayesFit` holds every stage's output (design, REML fit, priors, built
model, draws) and reads its tables from the draws only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .builder import BuiltModel
from .design import new_data
from .priors import PriorSet
from .sampling import linear_predictor

__all__ = ["BayesFit", "diagnose"]

_SAMPLE = ("chain", "draw")
_COLUMNS = ["reml", "reml_se", "mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat"]


def _stack(post: xr.Dataset, name: str) -> np.ndarray:
    a = post[name].transpose(*_SAMPLE, ...).to_numpy()
    return a.reshape((-1,) + a.shape[2:])


@dataclass(frozen=True, eq=False)
class BayesFit:
    """A Bayesian linear mixed model sampled with NUTS.

    Attributes
    ----------
    design : Design
    reml : RemlFit
        The REML fit that started the chains, reported alongside.
    priors : PriorSet
    built : BuiltModel
        The PyMC model with the names of its variables.
    idata : xarray.DataTree
    timings : dict
        Seconds spent compiling, sampling and post-processing.
    strategy : {"marginal", "full"}
    settings : dict
        The sampler settings of :func:`bayesmer.fit` (draws, tune, chains,
        seed, ...), reused by :func:`bayesmer.prior_sweep` to refit.
    """

    design: object
    reml: object
    priors: PriorSet
    built: BuiltModel
    idata: xr.DataTree
    timings: dict = field(default_factory=dict)
    strategy: str = "marginal"
    settings: dict = field(default_factory=dict)

    @property
    def model(self):
        """The ``pm.Model`` (``pm.model_to_graphviz(fit.model)`` draws it)."""
        return self.built.model

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of variable ``name``, chains stacked: shape (chains * draws, ...)."""
        post = self.idata["posterior"]
        if name not in post.data_vars:
            raise KeyError(f"no posterior variable {name!r}; the posterior has {list(post.data_vars)}")
        return _stack(post.to_dataset(), name)

    # ---- checking --------------------------------------------------------
    def sensitivity(self, threshold: float = 0.05) -> pd.DataFrame:
        """Power-scaling prior/likelihood sensitivity; see :func:`bayesmer.checking.sensitivity`."""
        from .checking import sensitivity

        return sensitivity(self, threshold)

    def loo(self, **kwargs):
        """PSIS-LOO over rows; see :func:`bayesmer.checking.loo`."""
        from .checking import loo

        return loo(self, **kwargs)

    def logo(self, **kwargs):
        """Leave-one-group-out with exact group marginals; see :func:`bayesmer.checking.logo`."""
        from .checking import logo

        return logo(self, **kwargs)

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

        for name in d.fixed_names:
            add(("fixed", "", name), post[m.beta].sel(fixed=name),
                r.fixef[name] if r is not None else None, r.se[name] if r is not None else np.nan)
        for t in d.terms:
            sd = post[m.sd[t.name]]
            rsd = r.sd(t.name) if r is not None else [None] * t.k
            for i, col in enumerate(t.terms):
                add(("sd", t.name, col), sd.isel({f"{t.name}_term": i}), rsd[i])
            if t.name in m.corr:
                R = post[m.corr[t.name]]
                rR = r.corr(t.name) if r is not None else None
                for i in range(t.k):
                    for j in range(i + 1, t.k):
                        add(("corr", t.name, f"{t.terms[i]},{t.terms[j]}"),
                            R.isel({f"{t.name}_term": i, f"{t.name}_term_bis": j}),
                            rR[i, j] if rR is not None else None)
        add(("sigma", "Residual", "sigma"), post[m.sigma], r.sigma if r is not None else None)
        return keys, xr.Dataset(data), reml_v, reml_se

    def summary(self) -> pd.DataFrame:
        """Posterior summaries next to the REML estimates.

        Returns
        -------
        DataFrame
            Indexed by (component, group, name), component in fixed, sd, corr,
            sigma; columns reml, reml_se (fixed effects), mean, sd, hdi_3%,
            hdi_97% (94% HDI), ess_bulk, ess_tail, r_hat.
        """
        import arviz_stats as azs

        keys, ds, reml_v, reml_se = self._scalars()
        s = azs.summary(ds, kind="all", ci_prob=0.94, ci_kind="hdi", round_to="none")
        out = pd.DataFrame(
            {
                "reml": reml_v,
                "reml_se": reml_se,
                "mean": s["mean"].to_numpy(float),
                "sd": s["sd"].to_numpy(float),
                "hdi_3%": s["hdi94_lb"].to_numpy(float),
                "hdi_97%": s["hdi94_ub"].to_numpy(float),
                "ess_bulk": s["ess_bulk"].to_numpy(float),
                "ess_tail": s["ess_tail"].to_numpy(float),
                "r_hat": s["r_hat"].to_numpy(float),
            },
            index=pd.MultiIndex.from_tuples(keys, names=["component", "group", "name"]),
        )
        return out[_COLUMNS]

    def _header(self) -> str:
        d = self.design
        post = self.idata["posterior"]
        groups = ", ".join(f"{t.name}: {t.n_levels}" for t in d.terms)
        t = self.timings
        return (
            f"Bayesian linear mixed model ({self.strategy} likelihood, NUTS)\n"
            f"Formula: {d.formula}\n"
            f"Observations: {d.n}; groups: {groups}\n"
            f"Draws: {post.sizes['chain']} chains x {post.sizes['draw']}; "
            f"compile {t.get('compile', 0):.1f} s, sampling {t.get('sampling', 0):.1f} s"
        )

    def __str__(self) -> str:
        table = self.summary()
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
            body = table.to_string()
        return f"{self._header()}\n\n{body}\n\nPriors:\n{self.priors}"

    def __repr__(self) -> str:
        return f"<BayesFit {self.design.formula} ({self.strategy})>"

    def _repr_html_(self) -> str:
        table = self.summary()
        head = "<br>".join(self._header().split("\n"))
        return f"<p>{head}</p>{table.to_html(float_format=lambda v: f'{v:.4g}')}"

    # ---- estimates -------------------------------------------------------
    def fixef(self) -> pd.Series:
        """Posterior means of the fixed effects."""
        s = self.summary().xs("fixed", level="component")["mean"]
        return pd.Series(s.to_numpy(), index=s.index.get_level_values("name"), name="mean")

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Per term, posterior means of the random effects (levels x columns)."""
        post = self.idata["posterior"]
        out = {}
        for t in self.design.terms:
            b = post[self.built.b[t.name]].mean(_SAMPLE).to_numpy()
            out[t.name] = pd.DataFrame(b, index=list(t.levels), columns=list(t.terms))
        return out

    def varcorr(self) -> pd.DataFrame:
        """Posterior means of SDs and correlations, in REML's tidy layout."""
        s = self.summary()
        rows = []
        for (comp, group, name), mean in s["mean"].items():
            if comp == "sd":
                rows.append((group, "sd", name, "", mean))
            elif comp == "corr":
                a, b = name.split(",", 1)
                rows.append((group, "corr", a, b, mean))
            elif comp == "sigma":
                rows.append(("Residual", "sd", "", "", mean))
        return pd.DataFrame(rows, columns=["group", "kind", "term1", "term2", "value"])

    def predict(self, newdata: pd.DataFrame | None = None, include_random: bool = True, summary: bool = False,
                seed: int | None = None):
        """Draws of the expected response ``X β + Z b`` on ``newdata``.

        Parameters
        ----------
        newdata : DataFrame, optional
            Defaults to the fitted data.
        include_random : bool
            Add the random effects. A level not in the fitted data gets, per
            draw, effects drawn from the population N(0, Ψ) of that draw.
        summary : bool
            Return a DataFrame (mean, sd, hdi_3%, hdi_97%) instead of draws.
        seed : int, optional
            For the effects of new levels.

        Returns
        -------
        ndarray (draws, rows) or DataFrame
        """
        d, m = self.design, self.built
        post = self.idata["posterior"].to_dataset()
        df = d.frame if newdata is None else newdata
        nd = new_data(d, df)
        beta = _stack(post, m.beta) if d.p else np.zeros((post.sizes["chain"] * post.sizes["draw"], 0))
        Zs, codes, bs = [], [], []
        rng = np.random.default_rng(seed)
        if include_random:
            for t, c, Z in zip(d.terms, nd.codes, nd.Z):
                b = _stack(post, m.b[t.name])
                if (c < 0).any():
                    keys = df[list(t.factors)].astype(str).agg(":".join, axis=1).to_numpy()
                    new_keys, inv = np.unique(keys[c < 0], return_inverse=True)
                    L = self.cov_factor(t.name)
                    z = rng.standard_normal((b.shape[0], len(new_keys), t.k))
                    b = np.concatenate([b, np.einsum("sgk,slk->sgl", z, L)], axis=1)
                    c = c.copy()
                    c[c < 0] = t.n_levels + inv
                Zs.append(Z)
                codes.append(c)
                bs.append(b)
        eta = linear_predictor(nd.X, Zs, codes, beta, bs)
        if not summary:
            return eta
        hdi = _hdi(eta, 0.94)
        return pd.DataFrame(
            {"mean": eta.mean(0), "sd": eta.std(0, ddof=1), "hdi_3%": hdi[:, 0], "hdi_97%": hdi[:, 1]},
            index=df.index,
        )

    def cov_factor(self, term: str) -> np.ndarray:
        """Per draw, the Cholesky factor L of a term's covariance (Psi = L L'), shape (S, k, k)."""
        t = {t.name: t for t in self.design.terms}[term]
        sd = self.draws(self.built.sd[t.name])
        if t.k == 1:
            return sd[:, :, None]
        R = self.draws(self.built.corr[t.name])
        # jitter keeps the factor defined for draws with |corr| = 1
        return sd[:, :, None] * np.linalg.cholesky(R + 1e-12 * np.eye(t.k))


def _hdi(x: np.ndarray, prob: float) -> np.ndarray:
    """Narrowest interval holding ``prob`` of the draws, per column."""
    s = np.sort(x, axis=0)
    n = s.shape[0]
    w = int(np.floor(prob * n))
    widths = s[w:] - s[: n - w]
    i = np.argmin(widths, axis=0)
    cols = np.arange(s.shape[1])
    return np.stack([s[i, cols], s[i + w, cols]], axis=1)


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
