"""Build the PyMC model of a Bayesian linear mixed model (Mixed Model 7).

Two equivalent parameterisations of the same posterior over (β, σ, Ψ):

* ``"full"``: the random effects are explicit, non-centred
  (``z ~ N(0, 1)``, ``b = z L'`` with ``L = diag(sd) chol(corr)``);
* ``"marginal"``: when every term shares one grouping factor, ``b`` is
  integrated out exactly. Per group ``y_j ~ N(X_j β, σ² I + Z_j Ψ Z_j')``,
  evaluated from per-group sufficient statistics with the Woodbury identity
  and the determinant lemma, so a log-density costs O(groups · k³) whatever
  the number of rows. ``b`` is drawn afterwards from its exact Gaussian
  conditional (:func:`draw_conditional_b`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import naming as nm
from .priors import PriorSet

__all__ = ["BuildError", "GroupStats", "BuiltModel", "build_model", "marginal_applies", "draw_conditional_b"]


class BuildError(ValueError):
    """A model that cannot be built as asked, with the reason and the way out."""


@dataclass(frozen=True, eq=False)
class GroupStats:
    """Per-group sufficient statistics of the marginal likelihood.

    The residual is taken about a reference ``beta0`` (the least-squares fit)
    so that ``r'r`` is a small number plus small corrections: expanding about
    zero would subtract large, nearly equal terms when y has a large mean.

    Attributes
    ----------
    term_names : tuple of str
        The terms whose columns are stacked, in order.
    ks : tuple of int
        Columns per term; ``K = sum(ks)``.
    n : ndarray (G,)
    ZtZ : ndarray (G, K, K)
    ZtX : ndarray (G, K, p)
    Zte : ndarray (G, K)
        ``Z_j' (y_j - X_j beta0)``.
    XtX : ndarray (p, p)
    Xte : ndarray (p,)
    ete : float
    beta0 : ndarray (p,)
    """

    term_names: tuple[str, ...]
    ks: tuple[int, ...]
    n: np.ndarray
    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zte: np.ndarray
    XtX: np.ndarray
    Xte: np.ndarray
    ete: float
    beta0: np.ndarray

    @classmethod
    def from_design(cls, design) -> "GroupStats":
        codes = design.terms[0].codes
        G = design.terms[0].n_levels
        Z = np.concatenate([t.Z for t in design.terms], axis=1)
        X, y = design.X, design.y
        beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        e = y - X @ beta0
        K, p = Z.shape[1], X.shape[1]
        ZtZ = np.zeros((G, K, K))
        np.add.at(ZtZ, codes, Z[:, :, None] * Z[:, None, :])
        ZtX = np.zeros((G, K, p))
        np.add.at(ZtX, codes, Z[:, :, None] * X[:, None, :])
        Zte = np.zeros((G, K))
        np.add.at(Zte, codes, Z * e[:, None])
        return cls(
            term_names=tuple(t.name for t in design.terms),
            ks=tuple(t.k for t in design.terms),
            n=np.bincount(codes, minlength=G),
            ZtZ=ZtZ,
            ZtX=ZtX,
            Zte=Zte,
            XtX=X.T @ X,
            Xte=X.T @ e,
            ete=float(e @ e),
            beta0=beta0,
        )


@dataclass(frozen=True, eq=False)
class BuiltModel:
    """A PyMC model ready to sample.

    Attributes
    ----------
    model : pm.Model
    strategy : {"marginal", "full"}
    response : str
        Name of the response (the log-likelihood variable's name).
    beta, sigma : str
        Variable names.
    sd, corr, b : dict of str to str
        Per term name, its variable names (``corr`` only for k > 1; ``b``
        exists in the model only under ``"full"``, and is added after
        sampling under ``"marginal"``).
    initial_point : dict of str to ndarray
        Starting values on the constrained scale, from REML when given.
    stats : GroupStats or None
        The sufficient statistics, under ``"marginal"``.
    priors : PriorSet
    """

    model: pm.Model
    strategy: str
    response: str
    beta: str
    sigma: str
    sd: dict
    corr: dict
    b: dict
    initial_point: dict
    stats: GroupStats | None
    priors: PriorSet
    hidden: tuple[str, ...] = field(default=())

    @property
    def hyper_names(self) -> list[str]:
        """The variables with a prior of their own: beta, sd_*, corr_*, sigma."""
        return [self.beta, *self.sd.values(), *self.corr.values(), self.sigma]


def marginal_applies(design) -> tuple[bool, str]:
    """Whether b can be integrated out, and why not when it cannot."""
    if not design.terms:
        return False, "the model has no random-effect terms"
    factors = {t.factors for t in design.terms}
    if len(factors) > 1:
        groups = ", ".join(sorted({t.group for t in design.terms}))
        return False, (
            f"its random-effect terms use different grouping factors ({groups}): crossed or nested "
            "factors couple the groups, so the likelihood does not split into per-group blocks"
        )
    return True, ""


def _vector(name: str, priors, dims: str):
    """One vector variable; split into scalars when families differ, so each slot keeps its own prior."""
    families = {type(p) for p in priors}
    if len(families) == 1:
        return type(priors[0]).pymc_vector(name, priors, dims=dims), ()
    parts = [p.pymc(f"{name}__{i}") for i, p in enumerate(priors)]
    return pm.Deterministic(name, pt.stack(parts), dims=dims), tuple(f"{name}__{i}" for i in range(len(priors)))


def _floor_sd(design, term) -> np.ndarray:
    sy = float(np.std(design.y)) or 1.0
    sz = np.std(term.Z, axis=0)
    scale = np.where(sz > 1e-12, sz, np.abs(term.Z[0]) + 1e-12)
    return 1e-2 * sy / scale


def _start_values(design, priors: PriorSet, start) -> dict:
    """REML estimates moved off the boundary (sd 0, |corr| 1), where NUTS cannot start."""
    out: dict = {}
    X, y = design.X, design.y
    if start is not None:
        beta = np.asarray(start.fixef.reindex(list(design.fixed_names)).to_numpy(), dtype=float)
        sigma = float(start.sigma)
    else:
        beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        sigma = float(np.std(y - X @ beta)) if X.shape[1] else float(np.std(y))
    out[nm.BETA] = beta
    out[nm.SIGMA] = max(sigma, 1e-3 * (float(np.std(y)) or 1.0))
    for term in design.terms:
        floor = _floor_sd(design, term)
        if start is not None:
            sd = np.asarray(start.sd(term.name), dtype=float)
            R = np.asarray(start.corr(term.name), dtype=float)
            R = np.where(np.isfinite(R), R, 0.0)
        else:
            sd = 10 * floor
            R = np.eye(term.k)
        sd = np.maximum(sd, floor)
        R = 0.9 * R + 0.1 * np.eye(term.k)
        out[nm.sd_var(term.name)] = sd
        out[nm.corr_chol_var(term.name)] = np.linalg.cholesky(R)
        if start is not None and term.name in getattr(start, "ranef", {}):
            bhat = np.asarray(start.ranef[term.name].to_numpy(), dtype=float)
        else:
            bhat = np.zeros((term.n_levels, term.k))
        L = sd[:, None] * np.linalg.cholesky(R)
        out[nm.z_var(term.name)] = np.clip(np.linalg.solve(L, bhat.T).T, -5, 5)
    return out


def _chol_solve_unrolled(M, u):
    """log|M| and u'M⁻¹u for a batch of small SPD matrices, entry by entry.

    ``M`` is a K x K nested list of (G,) tensors, ``u`` a list of K (G,)
    tensors. Unrolling the Cholesky keeps everything elementwise over groups:
    it compiles quickly under both the C and numba backends and
    differentiates without batched linear-algebra ops.
    """
    K = len(u)
    C = [[None] * K for _ in range(K)]
    for i in range(K):
        for j in range(i + 1):
            s = M[i][j]
            for k in range(j):
                s = s - C[i][k] * C[j][k]
            C[i][j] = pt.sqrt(s) if i == j else s / C[j][j]
    logdet = 0.0
    v = []
    quad = 0.0
    for i in range(K):
        s = u[i]
        for k in range(i):
            s = s - C[i][k] * v[k]
        v.append(s / C[i][i])
        quad = quad + v[i] ** 2
        logdet = logdet + 2.0 * pt.log(C[i][i])
    return logdet, quad


def _marginal_loglik(stats: GroupStats, beta, sigma, Ls, N: int):
    """Exact log p(y | β, σ, Ψ) with b integrated out (see module docstring)."""
    K = sum(stats.ks)
    # block-diagonal L of the stacked columns
    if len(Ls) == 1:
        L = Ls[0]
    else:
        L = pt.zeros((K, K))
        off = 0
        for Lt, k in zip(Ls, stats.ks):
            L = pt.set_subtensor(L[off : off + k, off : off + k], Lt)
            off += k
    s2 = sigma**2
    if stats.XtX.shape[0]:
        delta = beta - stats.beta0
        rtr = stats.ete - 2.0 * pt.dot(delta, stats.Xte) + pt.dot(delta, pt.dot(stats.XtX, delta))
        Ztr = stats.Zte - pt.tensordot(stats.ZtX, delta, axes=[[2], [0]])
    else:
        rtr = stats.ete
        Ztr = pt.as_tensor(stats.Zte)
    A = pt.matmul(pt.matmul(L.T, stats.ZtZ), L) / s2  # (G, K, K) = L'Z'ZL/σ²
    u = pt.dot(Ztr, L)  # rows L'Z_j'r_j
    M = [[(1.0 if i == j else 0.0) + A[:, i, j] for j in range(K)] for i in range(K)]
    logdet, quad = _chol_solve_unrolled(M, [u[:, i] for i in range(K)])
    return (
        -0.5 * N * pt.log(2.0 * np.pi * s2)
        - 0.5 * pt.sum(logdet)
        - (rtr - pt.sum(quad) / s2) / (2.0 * s2)
    )


def build_model(design, priors: PriorSet, strategy: str = "auto", start=None) -> BuiltModel:
    """Build the PyMC model of ``design`` with ``priors``.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    strategy : {"auto", "marginal", "full"}
        ``"auto"`` integrates the random effects out when all terms share one
        grouping factor, else keeps them explicit.
    start : RemlFit, optional
        Its estimates become the initial point.

    Returns
    -------
    BuiltModel

    Raises
    ------
    BuildError
        ``strategy="marginal"`` on crossed or nested factors; an unknown
        strategy; a model without random effects.
    """
    if strategy not in ("auto", "marginal", "full"):
        raise BuildError(f"strategy must be 'auto', 'marginal' or 'full', not {strategy!r}")
    if not design.terms:
        raise BuildError("the formula has no random-effect term; a mixed model needs at least one (x | g)")
    ok, why = marginal_applies(design)
    if strategy == "marginal" and not ok:
        raise BuildError(
            f"strategy='marginal' cannot integrate out the random effects of this model: {why}. "
            "Use strategy='full' (or 'auto', which picks it)"
        )
    strategy = ("marginal" if ok else "full") if strategy == "auto" else strategy

    coords: dict = {nm.FIXED_DIM: list(design.fixed_names), nm.OBS_DIM: np.arange(design.n)}
    for t in design.terms:
        coords[nm.level_dim(t.name)] = list(t.levels)
        coords[nm.term_dim(t.name)] = list(t.terms)
        coords[nm.effect_dim(t.name)] = list(t.terms)
        if t.k > 1:
            coords[nm.pair_dim(t.name)] = nm.pair_labels(t.terms)
    init = _start_values(design, priors, start)
    hidden: list[str] = []
    names_sd, names_corr, names_b = {}, {}, {}
    initial_point: dict = {}

    with pm.Model(coords=coords) as model:
        fixed_priors = [p for _, p in priors.fixed]
        if fixed_priors:
            beta, extra = _vector(nm.BETA, fixed_priors, nm.FIXED_DIM)
            hidden += extra
            if extra:
                initial_point.update({n: v for n, v in zip(extra, init[nm.BETA])})
            else:
                initial_point[nm.BETA] = init[nm.BETA]
        else:
            beta = pt.zeros(0)
        sigma = priors.sigma.pymc(nm.SIGMA)
        initial_point[nm.SIGMA] = init[nm.SIGMA]
        Ls = []
        for t in design.terms:
            sd_name = nm.sd_var(t.name)
            sd, extra = _vector(sd_name, list(priors.sd_priors(t.name)), nm.term_dim(t.name))
            hidden += extra
            if extra:
                initial_point.update({n: v for n, v in zip(extra, init[sd_name])})
            else:
                initial_point[sd_name] = init[sd_name]
            names_sd[t.name] = sd_name
            if t.k > 1:
                chol_name = nm.corr_chol_var(t.name)
                Lc = priors.corr_prior(t.name).pymc(chol_name, n=t.k)
                hidden.append(chol_name)
                initial_point[chol_name] = init[chol_name]
                names_corr[t.name] = nm.corr_var(t.name)
                # the pairs only, as brms's cor_ parameters: the unit diagonal and the
                # mirrored triangle of the full matrix gave NaN R-hat/ESS and duplicate panels
                iu = tuple(np.array(nm.pairs(t.k)).T)
                pm.Deterministic(names_corr[t.name], (Lc @ Lc.T)[iu], dims=nm.pair_dim(t.name))
                Ls.append(sd[:, None] * Lc)
            else:
                Ls.append(pt.reshape(sd, (1, 1)))
        if strategy == "marginal":
            stats = GroupStats.from_design(design)
            pm.Potential("marginal_loglik", _marginal_loglik(stats, beta, sigma, Ls, design.n))
        else:
            stats = None
            mu = pt.dot(design.X, beta) if design.p else pt.zeros(design.n)
            for t, L in zip(design.terms, Ls):
                z_name = nm.z_var(t.name)
                z = pm.Normal(z_name, 0.0, 1.0, dims=(nm.level_dim(t.name), nm.effect_dim(t.name)))
                hidden.append(z_name)
                initial_point[z_name] = init[z_name]
                b = pm.Deterministic(
                    nm.b_var(t.name), pt.dot(z, L.T), dims=(nm.level_dim(t.name), nm.effect_dim(t.name))
                )
                names_b[t.name] = nm.b_var(t.name)
                mu = mu + pt.sum(t.Z * b[t.codes], axis=1)
            pm.Normal(design.response, mu=mu, sigma=sigma, observed=design.y, dims=nm.OBS_DIM)
        if strategy == "marginal":
            names_b = {t.name: nm.b_var(t.name) for t in design.terms}

    return BuiltModel(
        model=model,
        strategy=strategy,
        response=design.response,
        beta=nm.BETA,
        sigma=nm.SIGMA,
        sd=names_sd,
        corr=names_corr,
        b=names_b,
        initial_point=initial_point,
        stats=stats,
        priors=priors,
        hidden=tuple(hidden),
    )


def draw_conditional_b(stats: GroupStats, beta, sigma, Ls, rng, chunk: int = 256) -> np.ndarray:
    """One exact draw of b from p(b | β, σ, Ψ, y) per posterior draw.

    With ``b_j = L a_j`` and ``a_j ~ N(0, I)`` a priori, the posterior of
    ``a_j`` is Gaussian with precision ``M_j = I + L'Z_j'Z_j L/σ²`` and mean
    ``M_j⁻¹ L'Z_j'r_j/σ²``; no Ψ⁻¹ is needed, so a zero SD is fine.

    Parameters
    ----------
    stats : GroupStats
    beta : ndarray (S, p)
    sigma : ndarray (S,)
    Ls : list of ndarray (S, k_t, k_t)
        Per term, ``diag(sd) chol(corr)`` per draw.
    rng : numpy Generator
    chunk : int
        Draws handled at once, to bound memory at (chunk, G, K, K).

    Returns
    -------
    ndarray (S, G, K)
        The stacked columns of all terms.
    """
    S = sigma.shape[0]
    G, K = stats.Zte.shape
    out = np.empty((S, G, K))
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        s = slice(lo, hi)
        L = np.zeros((hi - lo, K, K))
        off = 0
        for Lt, k in zip(Ls, stats.ks):
            L[:, off : off + k, off : off + k] = Lt[s]
            off += k
        s2 = sigma[s] ** 2
        delta = beta[s] - stats.beta0 if stats.XtX.shape[0] else np.zeros((hi - lo, 0))
        Ztr = stats.Zte[None] - np.einsum("gkp,sp->sgk", stats.ZtX, delta)
        u = np.einsum("sgk,skl->sgl", Ztr, L) / s2[:, None, None]
        A = np.einsum("skl,gkm,smn->sgln", L, stats.ZtZ, L) / s2[:, None, None, None]
        M = A + np.eye(K)
        C = np.linalg.cholesky(M)
        # mean = M⁻¹u; noise C'⁻¹ε has covariance M⁻¹
        w = np.linalg.solve(C, u[..., None])
        eps = rng.standard_normal((hi - lo, G, K, 1))
        a = np.linalg.solve(np.swapaxes(C, -1, -2), w + eps)[..., 0]
        out[s] = np.einsum("skl,sgl->sgk", L, a)
    return out
