"""After the fit: hypotheses, R², predictions, comparisons and slopes, both sides.

Every function takes a :class:`~bayesmer.results.BayesFit` and returns a
DataFrame with the REML/Laplace answer (lme4's estimates, delta-method
standard errors over the fixed effects, as marginaleffects computes them for
``lmer``/``glmer``) beside the posterior's (mean, SD, HDI, bulk ESS; brms's
meanings). Nothing is stored on the fit.

The three meanings of "the random effects" (``include_random``):

``"conditional"`` (``True``)
    The observed groups' effects: REML's conditional modes, the posterior's
    draws (lme4 ``re.form = NULL``, brms ``re_formula = NULL``). A level not in
    the fitted data adds zero, as lme4's ``allow.new.levels = TRUE``.
``"zero"`` (``False``)
    The population level, random effects at zero (``re.form = NA``).
``"integrated"`` (``"marginal"``)
    The mean over the random-effect distribution ``N(0, Sigma)`` of a new
    group (brmsmargins): for each row the linear predictor's random part is
    ``N(0, v)`` with ``v = sum_t z_t' Sigma_t z_t``, integrated by 40-node
    Gauss-Hermite quadrature (exact for the identity link, where it equals
    ``"zero"``). On a logit model the three differ: averaging the inverse
    link over the groups pulls probabilities towards 1/2, so the integrated
    probability of a rare event is larger than the population-level one
    (``plogis(X beta)``, the "typical group"); on cbpp the period-1 incidence
    is 0.198 at zero, 0.216 integrated, 0.215 averaged over the observed herds.

The REML side's standard errors vary the fixed effects (and a family's dpars,
from the point fit's joint covariance: a cumulative model's thresholds), holding
the conditional modes and the covariances at their estimates (as marginaleffects
does for ``lmer``): for an average over the observed groups they can be much
larger than the posterior SD, which also counts how the groups' effects
co-vary with the fixed effects (sleepstudy's mean fitted reaction: 9.05
against about 1.9).

The families of :mod:`bayesmer.families` (negative binomial, zero-inflated,
student, Gamma, lognormal, beta, cumulative) read their dpars (``shape``,
``zi``, ``sigma``, ``phi``, ``nu``, the thresholds) into the mean: the
posterior each draw's own, the REML/Laplace side the point fit's estimates,
held fixed in the delta-method SE. The mean is the family's ``E[y]`` as
:meth:`BayesFit.predict` computes it (one owner: ``results._family_mean``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from .design import new_data
from .errors import BayesmerError

__all__ = [
    "PROB",
    "InterpretError",
    "hypothesis",
    "r2",
    "predictions",
    "comparisons",
    "slopes",
    "datagrid",
    "parse_hypothesis",
]

#: The default interval probability of every table here (ArviZ's 94% HDI, as ``summary()``).
PROB = 0.94
_MODES = {True: "conditional", "conditional": "conditional", False: "zero", "zero": "zero",
          "integrated": "integrated", "marginal": "integrated"}
_GH_NODES = 40


class InterpretError(BayesmerError, ValueError):
    """A hypothesis, variable, column or option that cannot be read."""


# ---------------------------------------------------------------- helpers
def _hdi_names(prob: float) -> tuple[str, str]:
    lo, hi = 100 * (1 - prob) / 2, 100 * (1 + prob) / 2
    return f"hdi_{lo:g}%", f"hdi_{hi:g}%"


def _check_prob(prob) -> float:
    prob = PROB if prob is None else prob
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 < prob < 1:
        raise InterpretError(f"prob must be a number between 0 and 1, got {prob!r}")
    return float(prob)


def _posterior_columns(draws: np.ndarray, n_chain: int, prob: float) -> pd.DataFrame:
    """Mean, sd, HDI and bulk ESS of draws (S, m), S = chains x draws in chain order."""
    import arviz_stats as azs

    S, m = draws.shape
    lo, hi = _hdi_names(prob)
    hdi = np.asarray(azs.hdi(draws, prob=prob, axis=0)).reshape(m, 2)
    by_chain = draws.reshape(n_chain, S // n_chain, m)
    ess = np.asarray(azs.ess(by_chain, chain_axis=0, draw_axis=1, method="bulk"), dtype=float).reshape(m)
    return pd.DataFrame({"mean": draws.mean(0), "sd": draws.std(0, ddof=1), lo: hdi[:, 0], hi: hdi[:, 1],
                         "ess_bulk": ess})


def _n_chain(fit) -> int:
    return int(fit.idata["posterior"].sizes["chain"])


def _beta_draws(fit) -> np.ndarray:
    return fit.draws(fit.built.beta)


def _fixed_names(fit) -> list[str]:
    # the model's own fixed effects (a cumulative model has no intercept column: its thresholds stand for it)
    return list(fit.glmm.fixed_names if fit.glmm is not None else fit.design.fixed_names)


def _response_family(fit):
    """The :mod:`bayesmer.families` family of the fit (lognormal's too), or None (Gaussian, binomial, Poisson)."""
    from .results import _is_response_family

    gd = getattr(fit, "glmm", None)  # getattr: a stand-in fit carrying only draws and estimates
    fam = gd.family if gd is not None else getattr(fit, "response_family", None)
    return fam if fam is not None and _is_response_family(fam) else None


def _dpars(fit, side: str) -> dict:
    """The family's dpars: the point fit's estimates (``(1,)``, thresholds ``(1, K-1)``) or the draws'.

    Empty for the Gaussian, binomial and Poisson fits, whose mean reads no dpar.
    """
    fam = _response_family(fit)
    if fam is None:
        return {}
    if fit.glmm is None:  # lognormal: the Gaussian model of log y, whose sigma is the family's
        return {"sigma": np.array([float(fit.reml.sigma)]) if side == "reml" else fit.draws(fit.built.sigma)}
    if side == "reml":
        from .errors import PredictionError
        from .results import _point_parts

        try:
            return _point_parts(fit)[2]
        except PredictionError:  # the point fit failed: its columns NaN, the posterior's still given
            return {k: np.full((1, *np.shape(v)[1:]), np.nan) for k, v in _dpars(fit, "post").items()}
    from .sampling import family_draws

    return family_draws(fit.idata["posterior"].to_dataset(), fam, fit.built.dpars)


# ---------------------------------------------------------------- hypotheses
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<rel><=|>=|==|!=|=|<|>)"
                    r"|(?P<op>[-+*/()])|(?P<tick>`[^`]+`))")
_IDENT = re.compile(r"[A-Za-z_.][A-Za-z0-9_.:]*")


@dataclass(frozen=True)
class Hypothesis:
    """One parsed hypothesis ``c' beta + const  (sign)  0``.

    Attributes
    ----------
    text : str
        As written.
    label : str
        brms's label: ``"(Days)-(10) > 0"``.
    coef : ndarray
        Coefficients of the fixed effects, in the fit's order.
    const : float
    sign : {"=", "<", ">"}
    """

    text: str
    label: str
    coef: np.ndarray
    const: float
    sign: str


def parse_hypothesis(text: str, names) -> Hypothesis:
    """Parse ``"Days > 10"`` into a linear combination of the fixed effects ``names``.

    Terms are numbers, fixed-effect names (``Intercept`` for ``(Intercept)``,
    as brms; a name in backticks), ``+ - * /`` and parentheses; products and
    quotients must keep the combination linear. No ``eval``: the text is
    read by this function's own tokenizer and recursive-descent parser.

    Parameters
    ----------
    text : str
        One hypothesis with exactly one of ``=``, ``<`` or ``>``, as brms's
        ``hypothesis()`` takes it.
    names : sequence of str
        The fixed effects' lme4 names, in the fit's order.

    Returns
    -------
    Hypothesis
        ``coef`` (one coefficient per name), ``const`` and ``sign``, for the
        hypothesis ``coef' beta + const  (sign)  0``; ``label`` is brms's.

    Raises
    ------
    InterpretError
        An unknown name (listing the fixed effects), no or two relations, or
        a product or quotient that is not linear.

    Examples
    --------
    >>> from bayesmer import parse_hypothesis
    >>> h = parse_hypothesis("Intercept + 10 * Days > 350", ["(Intercept)", "Days"])
    >>> h.coef, h.const, h.sign, h.label
    (array([ 1., 10.]), -350.0, '>', '(Intercept+10*Days)-(350) > 0')
    """
    if not isinstance(text, str) or not text.strip():
        raise InterpretError(f"a hypothesis must be a non-empty string like 'Days > 10', not {text!r}")
    names = list(names)
    index = {n: i for i, n in enumerate(names)}
    if "(Intercept)" in index:
        index.setdefault("Intercept", index["(Intercept)"])
    by_length = sorted(index, key=len, reverse=True)
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        hit = next((n for n in by_length if text.startswith(n, pos) and not (
            (n[-1].isalnum() or n[-1] in "_.") and pos + len(n) < len(text)
            and (text[pos + len(n)].isalnum() or text[pos + len(n)] in "_."))), None)
        if hit is not None:
            tokens.append(("name", index[hit]))
            pos += len(hit)
            continue
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            ident = _IDENT.match(text, pos)
            if ident:
                raise InterpretError(f"hypothesis {text!r}: unknown name {ident.group()!r}; the fixed effects are "
                                     f"{', '.join(names)}")
            raise InterpretError(f"hypothesis {text!r}: cannot read {text[pos:]!r}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "tick":
            inner = val[1:-1]
            if inner not in index:
                raise InterpretError(f"hypothesis {text!r}: unknown name {inner!r}; the fixed effects are "
                                     f"{', '.join(names)}")
            tokens.append(("name", index[inner]))
        elif kind == "num":
            tokens.append(("num", float(val)))
        else:
            tokens.append((kind, val))
        pos = m.end()
    rels = [i for i, t in enumerate(tokens) if t[0] == "rel"]
    if len(rels) != 1 or tokens[rels[0]][1] not in ("=", "<", ">"):
        raise InterpretError(f"hypothesis {text!r} needs exactly one of '=', '<' or '>' (as brms's hypothesis)")
    sign = tokens[rels[0]][1]
    p = len(names)
    lhs = _Linear(tokens[: rels[0]], p, text).parse()
    rhs = _Linear(tokens[rels[0] + 1:], p, text).parse()
    coef, const = lhs[0] - rhs[0], lhs[1] - rhs[1]
    left, right = (s.replace(" ", "") for s in re.split(r"[=<>]", text, maxsplit=1))
    label = f"({left})" + (f"-({right})" if right != "0" else "") + f" {sign} 0"
    return Hypothesis(text, label, coef, float(const), sign)


class _Linear:
    """Recursive descent over tokens to (coefficients, constant); products of two non-constants refused."""

    def __init__(self, tokens, p, text):
        self.t, self.i, self.p, self.text = tokens, 0, p, text

    def fail(self, why):
        raise InterpretError(f"hypothesis {self.text!r}: {why}")

    def parse(self):
        if not self.t:
            self.fail("a side of the relation is empty")
        out = self.expr()
        if self.i != len(self.t):
            self.fail(f"unexpected {self.t[self.i][1]!r}")
        return out

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def expr(self):
        c, k = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.t[self.i][1]
            self.i += 1
            c2, k2 = self.term()
            c, k = (c + c2, k + k2) if op == "+" else (c - c2, k - k2)
        return c, k

    def term(self):
        c, k = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.t[self.i][1]
            self.i += 1
            c2, k2 = self.unary()
            if op == "*":
                if c.any() and c2.any():
                    self.fail("a product of two fixed effects is not a linear hypothesis")
                c, k = (c * k2, k * k2) if c.any() else (c2 * k, k * k2)
            else:
                if c2.any():
                    self.fail("dividing by a fixed effect is not a linear hypothesis")
                if k2 == 0:
                    self.fail("division by zero")
                c, k = c / k2, k / k2
        return c, k

    def unary(self):
        if self.peek() == ("op", "-"):
            self.i += 1
            c, k = self.unary()
            return -c, -k
        if self.peek() == ("op", "+"):
            self.i += 1
            return self.unary()
        return self.atom()

    def atom(self):
        kind, val = self.peek()
        if kind is None:
            self.fail("the expression ends too soon")
        self.i += 1
        if kind == "num":
            return np.zeros(self.p), val
        if kind == "name":
            c = np.zeros(self.p)
            c[val] = 1.0
            return c, 0.0
        if (kind, val) == ("op", "("):
            out = self.expr()
            if self.peek() != ("op", ")"):
                self.fail("a '(' is not closed")
            self.i += 1
            return out
        self.fail(f"unexpected {val!r}")


def _bw_nrd0(x: np.ndarray) -> float:
    """R's ``bw.nrd0`` (what ``density()`` uses by default)."""
    hi = np.std(x, ddof=1)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    lo = min(hi, iqr / 1.34) or hi or abs(x[0]) or 1.0
    return 0.9 * lo * len(x) ** -0.2


def _density_at_zero(x: np.ndarray) -> float:
    bw = _bw_nrd0(x)
    return float(np.mean(stats.norm.pdf(-x / bw)) / bw)


def _prior_density_at_zero(fit, h: Hypothesis) -> float:
    """The prior density of ``c' beta + const`` at 0 (the fixed effects' priors are independent)."""
    from .priors import Normal, StudentT

    names = _fixed_names(fit)
    used = [(c, fit.priors.fixed_prior(n)) for c, n in zip(h.coef, names) if c != 0]
    if all(isinstance(p, Normal) for _, p in used):
        mu = sum(c * p.mu for c, p in used) + h.const
        sd = math.sqrt(sum((c * p.sigma) ** 2 for c, p in used))
        return float(stats.norm.pdf(0.0, mu, sd)) if sd > 0 else float("nan")
    if len(used) == 1 and isinstance(used[0][1], StudentT):
        c, p = used[0]
        return float(stats.t.pdf(0.0, p.nu, c * p.mu + h.const, abs(c) * p.sigma))
    # a sum with a Student-t term has no closed form: the prior sampled (fixed seed) and smoothed as brms does
    rng = np.random.default_rng(20261203)
    x = np.full(40000, h.const)
    for c, p in used:
        x += c * (p.mu + p.sigma * (rng.standard_t(p.nu, x.size) if isinstance(p, StudentT) else rng.standard_normal(x.size)))
    return _density_at_zero(x)


def hypothesis(fit, hypotheses, alpha: float = 0.05) -> pd.DataFrame:
    """brms's ``hypothesis()`` on the fixed effects, beside REML's Wald test.

    Parameters
    ----------
    fit : BayesFit
    hypotheses : str or list of str
        E.g. ``"Days > 10"``, ``"Intercept + 10 * Days > 350"``,
        ``"period2 - period3 = 0"`` (see :func:`parse_hypothesis`); a
        :mod:`bayesmer.families` fit's dpars by brms's names too: ``"shape > 1"``,
        ``"Intercept[2] - Intercept[1] > 2"`` (their REML side: the point
        estimates and their SEs, taken as uncorrelated with the fixed effects;
        ``=`` on a dpar has no Savage-Dickey ratio here: NaN).
    alpha : float
        brms's ``alpha``: the interval is the draws' ``alpha/2`` and
        ``1 - alpha/2`` quantiles for ``=``, the ``alpha`` and ``1 - alpha``
        quantiles for an inequality (brms 2.18 prints this 90% interval as
        the "one-sided" one; its bound on the hypothesis's side is the
        one-sided 95% bound).

    Returns
    -------
    DataFrame
        One row per hypothesis: ``Hypothesis`` (brms's label), ``Estimate``
        (posterior mean of ``lhs - rhs``), ``Est.Error`` (its SD),
        ``CI.Lower``, ``CI.Upper``, ``Evid.Ratio`` (inequalities: the posterior
        odds of the hypothesis; ``=``: the Savage-Dickey ratio, posterior over
        prior density at 0, the posterior smoothed as R's ``density()`` and
        the prior exact for normal priors), ``Post.Prob`` and ``Star`` (``*``
        when the interval excludes 0 for ``=``, when ``Post.Prob > 1 - alpha``
        otherwise); then REML's Wald test: ``reml`` (the estimate), ``reml_se``
        (from ``vcov``), ``z`` and ``p`` (normal reference; two-sided for
        ``=``, one-sided against the hypothesis's complement otherwise).

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> hypothesis(fit, ["Days > 10", "Days = 10"])["Hypothesis"].tolist()  # doctest: +SKIP
    ['(Days)-(10) > 0', '(Days)-(10) = 0']
    """
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InterpretError(f"alpha must be between 0 and 1, got {alpha!r}")
    names = _fixed_names(fit)
    n_fixed = len(names)
    beta = _beta_draws(fit)
    rfix = np.asarray(_reml_beta(fit))
    V = np.asarray(fit.reml.vcov, dtype=float)
    dnames, ddraws, dest, dse = _dpar_columns(fit)
    if dnames:
        names, beta, rfix = names + dnames, np.hstack([beta, ddraws]), np.concatenate([rfix, dest])
        Vj = getattr(fit.reml, "_vcov_dpars", None)
        if Vj is not None and list(fit.reml.dpars.index) == dnames and Vj.shape == (len(names),) * 2:
            V = np.asarray(Vj, dtype=float)  # the point fit's joint covariance of beta and the dpars
        else:  # no joint covariance (a stand-in fit): the dpars' SEs beside beta's, covariances zero
            V = np.block([[V, np.zeros((n_fixed, len(dnames)))], [np.zeros((len(dnames), n_fixed)),
                                                                   np.diag(dse**2)]])
    rows = []
    for text in hypotheses:
        h = parse_hypothesis(text, names)
        x = beta @ h.coef + h.const
        est, err = float(x.mean()), float(x.std(ddof=1))
        if h.sign == "=":
            lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
            # Savage-Dickey needs the prior's density: the fixed effects' only (NaN on a dpar)
            er = (_density_at_zero(x) / _prior_density_at_zero(fit, replace(h, coef=h.coef[:n_fixed]))
                  if not np.any(h.coef[n_fixed:]) else np.nan)
            pp = er / (1 + er)
            star = not (lo <= 0 <= hi)
        else:
            # brms 2.18: the equal-tailed 1 - 2 alpha interval; the odds count a draw at 0 against
            lo, hi = np.quantile(x, [alpha, 1 - alpha])
            hits = int(np.sum(x > 0) if h.sign == ">" else np.sum(x < 0))
            er = hits / (len(x) - hits) if hits < len(x) else np.inf
            pp = hits / len(x)
            star = pp > 1 - alpha
        r = float(rfix @ h.coef + h.const)
        se = float(np.sqrt(h.coef @ V @ h.coef))
        z = r / se if se > 0 else np.nan
        p = 2 * stats.norm.sf(abs(z)) if h.sign == "=" else (stats.norm.sf(z) if h.sign == ">" else stats.norm.cdf(z))
        rows.append({"Hypothesis": h.label, "Estimate": est, "Est.Error": err, "CI.Lower": lo, "CI.Upper": hi,
                     "Evid.Ratio": er, "Post.Prob": pp, "Star": "*" if star else "",
                     "reml": r, "reml_se": se, "z": z, "p": float(p)})
    return pd.DataFrame(rows)


def _dpar_columns(fit):
    """A family's dpars as hypothesis terms: (names, draws (S, q), the point fit's estimates and SEs).

    brms's names (``shape``, ``zi``, ``Intercept[1]``); none for the other fits (lognormal's sigma
    is the Gaussian model's, not offered).
    """
    fam = _response_family(fit)
    if fam is None or getattr(fit, "glmm", None) is None:
        return [], None, None, None
    d = _dpars(fit, "post")
    cols, names = [], []
    for n in fit.built.dpars:
        v = np.asarray(d[n], dtype=float)
        cols.append(v.reshape(len(v), -1))
        names += [f"{n}[{i + 1}]" for i in range(v.shape[1])] if v.ndim == 2 else [n]
    draws = np.column_stack(cols)
    return (names, draws, fit.reml.dpars.reindex(names).to_numpy(float),
            fit.reml.dpars_se.reindex(names).to_numpy(float))


def _reml_beta(fit) -> np.ndarray:
    f = fit.reml.fixef
    return np.asarray(f() if callable(f) else f, dtype=float)


# ---------------------------------------------------------------- R²
def _fitted_rows(fit):
    """The fitted rows: X, offset, per term (Z, codes), y and trials (1 for Gaussian and Poisson)."""
    if fit.glmm is not None:
        gd = fit.glmm
        if _response_family(fit) is not None:  # the response as observed (categories 1..K), its mean unscaled
            return gd.X, gd.offset, [(t.Z, t.codes) for t in gd.terms], gd.y, np.ones(len(gd.y))
        return gd.X, gd.offset, [(t.Z, t.codes) for t in gd.terms], gd.y * gd.weights, gd.weights
    d = fit.design
    if getattr(d, "sums", None) is not None:
        raise InterpretError("R² needs the fitted rows in memory (the data were summarised where they live)")
    off = d.offset if d.offset is not None else np.zeros(d.n)
    # lognormal: the engine's response is log y; R² is of y, against E[y]
    y = np.exp(d.y) if fit.response_family is not None else d.y
    return d.X, off, [(t.Z, t.codes) for t in d.terms], y, np.ones(d.n)


def _r_contrib(Zc, bs):
    """Sum over terms of z_i . b_t[code_i] for draws bs [(S, G, k)] -> (S, n)."""
    out = 0.0
    for (Z, c), b in zip(Zc, bs):
        known = c >= 0
        out = out + np.where(known, np.einsum("snk,nk->sn", b[:, np.where(known, c, 0)], Z), 0.0)
    return out


def _nakagawa(fit) -> tuple[float, float]:
    """performance's ``r2_nakagawa`` of the REML/Laplace fit: (conditional, marginal).

    NaN for a :mod:`bayesmer.families` family (lognormal aside, the Gaussian model of log y):
    its distribution-specific variance is not computed here.
    """
    if fit.glmm is not None and _response_family(fit) is not None:
        # insight's variances for these families (the lognormal approximation of the
        # negative binomial's, none for the ordinal ones) are not reproduced: NaN, not a guess
        return float("nan"), float("nan")
    r = fit.reml
    X, off, Zc, _, _ = _fitted_rows(fit)
    beta = _reml_beta(fit)
    var_f = float(np.var(X @ beta, ddof=1))
    covs = r.cov_matrices()
    terms = fit.glmm.terms if fit.glmm is not None else fit.design.terms
    # insight::get_variance: a term's variance is the mean of z' Sigma z over the rows (Johnson 2014)
    var_r = float(sum(np.mean(np.einsum("nk,kl,nl->n", Z, covs[t.name], Z)) for t, (Z, _) in zip(terms, Zc)))
    if fit.glmm is None:
        var_e = r.sigma**2
    else:
        fam = fit.glmm.family
        if fam.name == "binomial":
            var_e = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}[fam.link.name]
        else:
            var_e = math.log1p(1.0 / math.exp(_null_intercept(fit)))
    total = var_f + var_r + var_e
    return (var_f + var_r) / total, var_f / total


def _null_intercept(fit) -> float:
    """The intercept of the model refitted without its fixed effects (insight's null model, for the Poisson)."""
    import warnings

    from .glmer_fit import glmer
    from .glmm_design import parse_glmm_formula

    gd = fit.glmm
    lhs, f = parse_glmm_formula(gd.formula)
    null = f"{lhs} ~ " + " + ".join(["1", *[f"offset({o})" for o in f.offset], *map(str, f.random)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular or slow null fit still gives the mean's level
        m0 = glmer(null, gd.frame, family=gd.family, weights=gd.weights_spec, offset=gd.offset_spec)
    return float(m0.fixef["(Intercept)"])


def r2(fit, prob: float | None = None) -> pd.DataFrame:
    """Bayesian R² (Gelman, Goodrich, Gabry and Vehtari 2019) beside Nakagawa's R² of the REML fit.

    Per draw ``var(mu) / (var(mu) + var(y - mu))`` over the fitted rows, as
    brms's ``bayes_R2``: ``mu`` the expected response (a binomial's expected
    count ``p * trials`` against the observed count; for the families of
    :mod:`bayesmer.families` their ``E[y]``, as :func:`predictions`'s
    ``"mean"``: lognormal's ``exp(eta + sigma²/2)`` against y itself, not
    log y; a cumulative model's expected category number ``sum_k k P(Y = k)``
    against the observed category number, as brms scores ordinal models);
    ``conditional`` with the groups' effects, ``marginal`` without them
    (brms ``re_formula = NA``). The residual variance is the residuals'
    ``var(y - mu)`` (brms's), not a model-based ``Var(y | mu)``.

    Parameters
    ----------
    fit : BayesFit
    prob : float, optional
        The HDI's probability (default :data:`PROB`).

    Returns
    -------
    DataFrame
        Rows ``conditional`` and ``marginal``; columns ``reml`` (performance's
        ``r2_nakagawa``: variance of ``X beta``, the mean of ``z' Sigma z``
        per term, the residual variance: sigma², π²/3 for the logit, 1 for the
        probit, ``log(1 + 1/exp(b0))`` for the Poisson, ``b0`` the intercept
        of the null model ``y ~ 1 + (random terms)``, as insight refits it;
        for lognormal the Gaussian model's of log y, as of
        ``lmer(log(y) ~ ...)``; NaN for the other families of
        :mod:`bayesmer.families`, whose distribution-specific variances
        insight approximates in ways not reproduced here), then the
        posterior's mean, sd, HDI and bulk ESS.

    Examples
    --------
    >>> fit.r2()  # doctest: +SKIP
    """
    prob = _check_prob(prob)
    X, off, Zc, y, trials = _fitted_rows(fit)
    beta = _beta_draws(fit)
    terms = fit.glmm.terms if fit.glmm is not None else fit.design.terms
    bs = [fit.draws(fit.built.b[t.name]) for t in terms]
    eta0 = beta @ X.T + off
    dp = _dpars(fit, "post")
    out = []
    for eta in (eta0 + _r_contrib(Zc, bs), eta0):
        mu = _mean(fit, eta, None, "mean", dp) * trials
        vm = mu.var(axis=1, ddof=1)
        ve = (y - mu).var(axis=1, ddof=1)
        out.append(vm / (vm + ve))
    table = _posterior_columns(np.column_stack(out), _n_chain(fit), prob)
    table.index = pd.Index(["conditional", "marginal"], name="R2")
    table.insert(0, "reml", list(_nakagawa(fit)))
    return table


# ---------------------------------------------------------------- predictions
def _frame(fit) -> pd.DataFrame:
    if fit.glmm is not None:
        return fit.glmm.frame
    if getattr(fit.design, "sums", None) is not None:
        raise InterpretError("the fitted data are not in memory: pass newdata (a pandas DataFrame)")
    return fit.design.frame


def _design(fit):
    return fit.glmm.design if fit.glmm is not None else fit.design


def _terms(fit):
    if fit.glmm is not None and len(fit.glmm.terms) != len(fit.glmm.design.terms):
        raise InterpretError("predictions with a one-level-per-row random-effect term are not supported")
    return _design(fit).terms


@dataclass(frozen=True)
class _Rows:
    """A data frame's rows as the model reads them."""

    X: np.ndarray
    offset: np.ndarray
    Zc: tuple  # per term (Z, codes), codes -1 for levels not fitted and missing groups


def _rows(fit, df: pd.DataFrame, fitted_offset: bool) -> _Rows:
    d = _design(fit)
    filled = df
    missing = {}
    for t in _terms(fit):
        for c in t.factors:
            if c not in df.columns or df[c].isna().any():
                missing[c] = df[c].isna().to_numpy() if c in df.columns else np.ones(len(df), bool)
    if missing:
        # a placeholder level: code -1 (no group effect) on these rows
        filled = df.copy()
        for c, miss in missing.items():
            col = filled[c].astype(object) if c in filled.columns else pd.Series(None, index=df.index, dtype=object)
            filled[c] = col.where(~miss, "\0unknown")
    try:
        nd = new_data(d, filled)
    except BayesmerError as exc:
        raise InterpretError(str(exc)) from None
    if fitted_offset:
        off = fit.glmm.offset if fit.glmm is not None else d.offset
    else:
        off = nd.offset
    off = np.zeros(len(df)) if off is None else np.asarray(off, dtype=float)
    X = nd.X
    keep = getattr(fit.glmm, "_keep", None)  # cumulative: no intercept column (the thresholds stand for it)
    if keep is not None and X.shape[1] != len(keep):
        X = np.asarray(X, dtype=float)[:, keep]
    return _Rows(X, off, tuple(zip(nd.Z, nd.codes)))


@dataclass(frozen=True)
class _Side:
    """One estimator's pieces: the random part of eta and the integrated variance, per row."""

    re: np.ndarray  # (n,) REML or (S, n) posterior
    v: np.ndarray | None  # same shapes, or None


def _reml_side(fit, rows: _Rows, mode: str) -> _Side:
    terms = _terms(fit)
    if mode == "conditional":
        ranef = fit.reml.ranef() if callable(fit.reml.ranef) else fit.reml.ranef
        bs = [ranef[t.name].to_numpy()[None] for t in terms]
        return _Side(_r_contrib(rows.Zc, bs)[0], None)
    if mode == "zero":
        return _Side(np.zeros(len(rows.X)), None)
    covs = fit.reml.cov_matrices()
    v = sum(np.einsum("nk,kl,nl->n", Z, covs[t.name], Z) for t, (Z, _) in zip(terms, rows.Zc))
    return _Side(np.zeros(len(rows.X)), np.asarray(v, dtype=float))


def _post_side(fit, rows: _Rows, mode: str) -> _Side:
    terms = _terms(fit)
    S = _beta_draws(fit).shape[0]
    n = len(rows.X)
    if mode == "conditional":
        bs = [fit.draws(fit.built.b[t.name]) for t in terms]
        return _Side(_r_contrib(rows.Zc, bs) if terms else np.zeros((S, n)), None)
    if mode == "zero":
        return _Side(np.zeros((S, n)), None)
    v = np.zeros((S, n))
    for t, (Z, _) in zip(terms, rows.Zc):
        L = fit.cov_factor(t.name)  # (S, k, k)
        v += np.sum(np.einsum("skl,nk->snl", L, Z) ** 2, axis=2)
    return _Side(np.zeros((S, n)), v)


def _mean(fit, eta: np.ndarray, v, kind: str, dp: dict) -> np.ndarray:
    """The link-scale or mean-scale value of eta (integrated over N(0, v) when v is given).

    ``dp``: the family's dpars, one value per row of ``eta`` (or one for all). ``kind="probs"``
    gives (m, n, K) category probabilities of a cumulative model.
    """
    if kind == "link":
        return eta
    fam = _response_family(fit)
    if fam is None:
        if fit.glmm is None:  # Gaussian: the mean is eta
            return eta
        inv = fit.glmm.family.link.linkinv
    elif kind == "probs":
        def inv(e):
            return fam.probs(e, dp)
    else:
        # one owner of E[y] (predict's): exp(eta) scaled by 1 - zi, exp(eta + sigma^2/2), E[Y] of a cumulative...
        from .results import _family_mean

        def inv(e):
            return _family_mean(fam, e, dp)
    if v is None:
        return inv(eta)
    x, w = np.polynomial.hermite_e.hermegauss(_GH_NODES)
    sd = np.sqrt(v)
    out = 0.0
    for xk, wk in zip(x, w):
        out = out + wk * inv(eta + sd * xk)
    return out / math.sqrt(2 * math.pi)


def _check_mode(include_random) -> str:
    try:
        return _MODES[include_random]
    except (KeyError, TypeError):
        raise InterpretError(f"include_random must be True/'conditional', False/'zero' or 'integrated'/'marginal', "
                             f"not {include_random!r}") from None


def _check_kind(kind, fit) -> str:
    if kind == "probs" and getattr(_response_family(fit), "name", None) == "cumulative":
        return kind
    if kind not in ("link", "mean"):
        more = ", or 'probs' (a cumulative model's category probabilities)"
        raise InterpretError(f"kind must be 'link' (the linear predictor) or 'mean' (the expected response, "
                             f"a probability or a rate){more}, not {kind!r}")
    return kind


def _agg(u: np.ndarray, A) -> np.ndarray:
    """Unit values (m, n) averaged by A (g, n); category-major (m, K n) ones category by category."""
    if A is None:
        return u
    K = u.shape[1] // A.shape[1]
    return u @ (A if K == 1 else np.kron(np.eye(K), A)).T


def _groups(df: pd.DataFrame, by) -> tuple[np.ndarray, pd.DataFrame]:
    """(averaging matrix A (m, n), the m groups' labels) for ``by``."""
    n = len(df)
    if by is None:
        return None, None
    if by is True:
        return np.full((1, n), 1.0 / n), pd.DataFrame(index=[0])
    cols = [by] if isinstance(by, str) else list(by)
    for c in cols:
        if c not in df.columns:
            raise InterpretError(f"by: no column {c!r} in the data; columns: {', '.join(map(str, df.columns))}")
    keys = df[cols].reset_index(drop=True)
    codes = keys.groupby(cols, sort=True, observed=True).ngroup().to_numpy()
    labels = keys.groupby(cols, sort=True, observed=True).size().reset_index()[cols]
    A = np.zeros((len(labels), n))
    A[codes, np.arange(n)] = 1.0
    A /= A.sum(axis=1, keepdims=True)
    return A, labels


@dataclass(frozen=True)
class _Quantity:
    """Unit-level values as a function of beta.

    ``pieces``: [(rows, REML side, posterior side, sign)]; the unit value is
    ``sum(sign * mean(X beta + offset + re)) / step`` (one piece: a
    prediction; two: a comparison, or a slope with ``step``), or with
    ``ratio`` the first piece's value over the second's.
    """

    pieces: tuple
    ratio: bool = False
    step: float = 1.0


def _evaluate(fit, q: _Quantity, beta: np.ndarray, side: str, kind: str, dp: dict) -> np.ndarray:
    """Unit values (m, n) for beta (m, p): REML's side with m perturbed betas, or the draws.

    ``kind="probs"``: (m, K n), category-major (the n rows of category 1, then of category 2...).
    """
    vals = []
    for rows, reml, post, sign in q.pieces:
        s = reml if side == "reml" else post
        eta = beta @ rows.X.T + rows.offset + s.re
        vals.append((sign, _mean(fit, eta, s.v, kind, dp)))
    out = vals[0][1] / vals[1][1] if q.ratio else sum(sign * v for sign, v in vals) / q.step
    if out.ndim == 3:
        out = np.moveaxis(out, 2, 1).reshape(out.shape[0], -1)
    return out


def _table(fit, q: _Quantity, A, kind: str, prob: float) -> pd.DataFrame:
    """REML estimate and delta-method SE (numerical Jacobian over beta, vcov) beside the posterior."""
    b = _reml_beta(fit)
    p = len(b)
    dp = _dpars(fit, "reml")
    Vj = getattr(fit.reml, "_vcov_dpars", None)
    if Vj is None or not dp:
        # the dpars held at their estimates (none, or no joint covariance): the SE varies β only
        V, x0, dp_shapes = np.asarray(fit.reml.vcov, dtype=float), b, []
    else:
        # β and the dpars together, from the point fit's joint covariance: a cumulative model's
        # thresholds move E[Y] as much as β does (emmeans's delta method for clmm does the same)
        V = np.asarray(Vj, dtype=float)
        dp_shapes = [(k, np.shape(v)[1:]) for k, v in dp.items()]
        x0 = np.concatenate([b] + [np.asarray(v, dtype=float).reshape(-1) for v in dp.values()])
    m = len(x0)
    h = 1e-6 * np.maximum(1.0, np.abs(x0))
    Xs = np.vstack([x0[None], x0 + np.diag(h), x0 - np.diag(h)])
    if dp_shapes:
        pos, dps = p, {}
        for k, shape in dp_shapes:
            size = int(np.prod(shape)) if shape else 1
            dps[k] = Xs[:, pos : pos + size].reshape((len(Xs), *shape))
            pos += size
    else:
        dps = dp
    vals = _agg(_evaluate(fit, q, Xs[:, :p], "reml", kind, dps), A)
    est = vals[0]
    J = (vals[1 : m + 1] - vals[m + 1 :]) / (2 * h[:, None])  # (m, rows)
    se = np.sqrt(np.clip(np.einsum("im,ij,jm->m", J, V, J), 0, None))
    draws = _beta_draws(fit)
    post = _agg(_evaluate(fit, q, draws, "post", kind, _dpars(fit, "post")), A)
    table = _posterior_columns(post, _n_chain(fit), prob)
    table.insert(0, "reml_se", se)
    table.insert(0, "reml", est)
    return table


def _base(fit, newdata) -> tuple[pd.DataFrame, bool]:
    if newdata is None:
        return _frame(fit).reset_index(drop=True), True
    if not isinstance(newdata, pd.DataFrame):
        raise InterpretError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
    return newdata.reset_index(drop=True), False


def _with_labels(table: pd.DataFrame, df: pd.DataFrame, A, labels, fit=None) -> pd.DataFrame:
    left = (df if A is None else labels).reset_index(drop=True)
    if len(table) != len(left):  # kind="probs": a block of rows per category, marginaleffects's "group"
        levels = fit.glmm.levels
        left = pd.concat([left] * len(levels), ignore_index=True)
        left.insert(0, "group", pd.Categorical(np.repeat(levels, len(table) // len(levels)), categories=levels,
                                               ordered=True))
    return pd.concat([left, table.reset_index(drop=True)], axis=1)


def predictions(fit, newdata=None, by=None, include_random=True, kind: str = "mean",
                prob: float | None = None) -> pd.DataFrame:
    """Predictions as marginaleffects's ``predictions()``: per row, or averaged (``by``).

    Parameters
    ----------
    fit : BayesFit
    newdata : DataFrame, optional
        The rows to predict at (the fitted rows by default; :func:`datagrid`
        makes a grid).
    by : None, True, str or list of str
        None: one row per row of ``newdata``; True: their average; column
        names: the average within each group of those columns.
    include_random : {True, "conditional", False, "zero", "integrated", "marginal"}
        See the module's description: the observed groups' effects, none,
        or integrated over ``N(0, Sigma)``.
    kind : {"mean", "link", "probs"}
        ``"mean"``: the expected response ``E[y]`` (brms's
        ``posterior_epred``): a probability, a rate; ``exp(eta)`` (negative
        binomial, Gamma with the log link), ``(1 - zi) exp(eta)``
        (zero-inflated), ``mu`` (beta, student), ``exp(eta + sigma²/2)``
        (lognormal: the mean of y, not of log y); for ``cumulative`` the
        expected category number ``sum_k k P(Y = k)`` (categories numbered
        1..K; brms's ``posterior_epred`` gives the K probabilities instead:
        ``"probs"``). ``"link"``: the linear predictor ``eta`` (log y's mean
        for lognormal; for ``cumulative`` without the thresholds).
        ``"probs"`` (``cumulative`` only): ``P(Y = k)``, a block of rows per
        category labelled by a first column ``group`` (marginaleffects's
        name), each block the rows (or ``by`` groups) in order.
    prob : float, optional
        HDI probability (default :data:`PROB`).

    Returns
    -------
    DataFrame
        The rows (or the ``by`` groups), then ``reml``, ``reml_se`` (the
        REML/Laplace estimate and its delta-method SE over the fixed effects
        and, for a family of :mod:`bayesmer.families`, its dpars (``zi``, the
        thresholds...) with their joint covariance, as emmeans does for
        ``clmm``), ``mean``, ``sd``,
        ``hdi_*``, ``ess_bulk`` of the posterior (each draw with its own dpars).

    Examples
    --------
    >>> fit.predictions(by="Days")  # doctest: +SKIP
    """
    prob, mode, kind = _check_prob(prob), _check_mode(include_random), _check_kind(kind, fit)
    df, fitted = _base(fit, newdata)
    A, labels = _groups(df, by)
    rows = _rows(fit, df, fitted)
    q = _Quantity(((rows, _reml_side(fit, rows, mode), _post_side(fit, rows, mode), 1.0),))
    return _with_labels(_table(fit, q, A, kind, prob), df, A, labels, fit)


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _levels(fit, var: str, col: pd.Series) -> list:
    ref = _frame(fit)[var] if var in _frame(fit).columns else col
    if isinstance(ref.dtype, pd.CategoricalDtype):
        return list(ref.cat.categories)
    return sorted(pd.unique(ref.dropna()), key=lambda v: (str(type(v)), v))


def _contrast_pairs(fit, var, col, spec):
    """[(label, lo values, hi values)] for one variable's contrast spec."""
    if _is_numeric(col):
        if spec is None:
            spec = 1
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return [(f"+{spec:g}", col, col + spec)]
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            lo, hi = spec
            return [(f"{hi:g} - {lo:g}", pd.Series(lo, index=col.index), pd.Series(hi, index=col.index))]
        if spec == "sd":
            s = float(_frame(fit)[var].std())
            return [("sd", col - s / 2, col + s / 2)]
        raise InterpretError(f"contrast for numeric {var!r} must be a step (1), a pair (lo, hi) or 'sd', not {spec!r}")
    levels = _levels(fit, var, col)
    spec = "reference" if spec is None else spec
    const = lambda v: pd.Series([v] * len(col), index=col.index, dtype=object)  # noqa: E731
    if spec == "reference":
        pairs = [(levels[0], lv) for lv in levels[1:]]
    elif spec == "pairwise":
        pairs = [(a, b) for i, a in enumerate(levels) for b in levels[i + 1 :]]
    elif spec == "sequential":
        pairs = list(zip(levels[:-1], levels[1:]))
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        bad = [v for v in spec if v not in levels]
        if bad:
            raise InterpretError(f"contrast for {var!r}: no level {bad[0]!r}; levels: {', '.join(map(str, levels))}")
        pairs = [tuple(spec)]
    else:
        raise InterpretError(f"contrast for factor {var!r} must be 'reference', 'pairwise', 'sequential' or a pair "
                             f"of levels, not {spec!r}")
    return [(f"{b} - {a}", const(a), const(b)) for a, b in pairs]


def _variables(df, variables, what) -> dict:
    if variables is None:
        raise InterpretError(f"{what}: name the variables, e.g. variables='Days'")
    if isinstance(variables, str):
        variables = {variables: None}
    elif isinstance(variables, (list, tuple)):
        variables = {v: None for v in variables}
    elif not isinstance(variables, dict):
        raise InterpretError(f"{what}: variables must be a name, a list of names or a dict name -> contrast")
    for v in variables:
        if v not in df.columns:
            raise InterpretError(f"{what}: no column {v!r} in the data; columns: {', '.join(map(str, df.columns))}")
    return variables


def comparisons(fit, variables=None, newdata=None, by=None, contrast=None, comparison: str = "difference",
                include_random=True, kind: str = "mean", prob: float | None = None) -> pd.DataFrame:
    """Comparisons as marginaleffects's ``comparisons()``: the change in prediction when a variable changes.

    Parameters
    ----------
    fit : BayesFit
    variables : str, list or dict
        The variables to change; a dict gives each its own contrast.
    newdata, by, include_random, kind, prob
        As :func:`predictions` (``by=True`` averages over the rows:
        marginaleffects's ``avg_comparisons``).
    contrast : optional
        For a factor: ``"reference"`` (default; each level against the first),
        ``"pairwise"``, ``"sequential"`` or a pair ``(lo, hi)``; for a number:
        a step ``h`` (default 1: ``x + h`` against ``x``), a pair of values,
        or ``"sd"`` (``x + sd/2`` against ``x - sd/2``).
    comparison : {"difference", "ratio"}
        ``hi - lo`` or ``hi / lo`` per row (then averaged).

    Returns
    -------
    DataFrame
        ``term``, ``contrast``, the rows or groups, then the columns of
        :func:`predictions`.

    Examples
    --------
    >>> fit.comparisons("period", by=True)  # doctest: +SKIP
    """
    prob, mode, kind = _check_prob(prob), _check_mode(include_random), _check_kind(kind, fit)
    if comparison not in ("difference", "ratio"):
        raise InterpretError(f"comparison must be 'difference' or 'ratio', not {comparison!r}")
    df, fitted = _base(fit, newdata)
    A, labels = _groups(df, by)
    out = []
    for var, spec in _variables(df, variables, "comparisons").items():
        for label, lo, hi in _contrast_pairs(fit, var, df[var], contrast if spec is None else spec):
            pieces = []
            for values, sign in ((hi, 1.0), (lo, -1.0)):
                d2 = df.copy()
                d2[var] = values.to_numpy()
                rows = _rows(fit, d2, fitted)
                pieces.append((rows, _reml_side(fit, rows, mode), _post_side(fit, rows, mode), sign))
            q = _Quantity(tuple(pieces), ratio=comparison == "ratio")
            t = _with_labels(_table(fit, q, A, kind, prob), df, A, labels, fit)
            t.insert(0, "contrast", label)
            t.insert(0, "term", var)
            out.append(t)
    return pd.concat(out, ignore_index=True)


def slopes(fit, variables=None, newdata=None, by=None, include_random=True, kind: str = "mean",
           eps: float | None = None, prob: float | None = None) -> pd.DataFrame:
    """Slopes as marginaleffects's ``slopes()``: the derivative of the prediction in a numeric variable.

    Central differences ``(f(x + eps/2) - f(x - eps/2)) / eps`` per row,
    ``eps`` by default ``1e-4`` times the variable's range in the fitted data
    (marginaleffects's step); ``by`` averages them (``avg_slopes``).

    Parameters
    ----------
    fit : BayesFit
    variables : str or list of str
        The numeric variables to differentiate in.
    newdata, by, include_random, kind, prob
        As :func:`predictions`.
    eps : float, optional
        The step; by default ``1e-4`` times the variable's range.

    Returns
    -------
    DataFrame
        ``term``, the rows or groups, then the columns of :func:`predictions`.

    Examples
    --------
    >>> fit.slopes("Days", by=True)  # doctest: +SKIP
    """
    prob, mode, kind = _check_prob(prob), _check_mode(include_random), _check_kind(kind, fit)
    df, fitted = _base(fit, newdata)
    A, labels = _groups(df, by)
    out = []
    for var in _variables(df, variables, "slopes"):
        if not _is_numeric(df[var]):
            raise InterpretError(f"slopes: {var!r} is not numeric; use comparisons() for a factor")
        ref = _frame(fit)[var] if var in _frame(fit).columns else df[var]
        e = eps if eps is not None else 1e-4 * float(ref.max() - ref.min() or 1.0)
        pieces = []
        for shift, sign in ((e / 2, 1.0), (-e / 2, -1.0)):
            d2 = df.copy()
            d2[var] = df[var].astype(float) + shift
            rows = _rows(fit, d2, fitted)
            pieces.append((rows, _reml_side(fit, rows, mode), _post_side(fit, rows, mode), sign))
        t = _with_labels(_table(fit, _Quantity(tuple(pieces), step=e), A, kind, prob), df, A, labels, fit)
        t.insert(0, "term", var)
        out.append(t)
    return pd.concat(out, ignore_index=True)


def datagrid(fit, **values) -> pd.DataFrame:
    """A grid of rows as marginaleffects's ``datagrid()``: the named columns crossed, the rest typical.

    Every column the model reads that is not named is held at its mean
    (numbers) or its most frequent value (factors, grouping columns; the
    first in sort order among equally frequent ones); a factor keeps its
    categories.

    Parameters
    ----------
    fit : BayesFit
        The fit whose data (the columns its formula reads) give the typical values.
    **values
        Column name -> a value or a list of values; the grid crosses them.

    Returns
    -------
    DataFrame
        One row per combination of the named values, the model's columns in
        the fitted data's order: ready for ``newdata=`` of
        :meth:`BayesFit.predictions`, ``comparisons`` and ``slopes``.

    Raises
    ------
    InterpretError
        A name that is not a column the model reads.

    Examples
    --------
    >>> import bayesmer
    >>> sleep = bayesmer.datasets.load("sleepstudy")
    >>> fit = bayesmer.fit("Reaction ~ Days + (Days | Subject)", sleep,
    ...                    draws=200, tune=200, chains=2, seed=1, progress=False)
    >>> grid = bayesmer.datagrid(fit, Days=[0, 5, 9])
    >>> grid["Days"].tolist(), grid["Subject"].astype(str).tolist()
    ([0, 5, 9], ['308', '308', '308'])
    """
    frame = _frame(fit)
    for k in values:
        if k not in frame.columns:
            raise InterpretError(f"datagrid: no column {k!r} in the model's data; columns: "
                                 f"{', '.join(map(str, frame.columns))}")
    typical = {}
    for c in frame.columns:
        if c in values:
            continue
        col = frame[c]
        typical[c] = [col.mean()] if _is_numeric(col) else [col.mode().iloc[0]]
    grid = {k: list(np.atleast_1d(v)) for k, v in values.items()} | typical
    idx = pd.MultiIndex.from_product(list(grid.values()), names=list(grid))
    out = idx.to_frame(index=False)
    for c in frame.columns:  # keep the fitted data's types (a factor stays a factor)
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical(out[c], categories=frame[c].cat.categories)
    return out[[c for c in frame.columns if c in out.columns]]
