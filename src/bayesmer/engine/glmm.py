"""The posterior density of a binomial or Poisson mixed model, for nutpie.

The random effects stay in the model (no exact marginal exists off the
Gaussian family); each term is non-centred (``b_g = Λ u_g``, ``u ~ N(0, I)``)
or centred (``b_g ~ N(0, ΛΛ')``), chosen per term by :func:`choose_centring`.
The compiled code is :func:`bayesmer.engine._kernel.glmm_logp_grad`
(``cache=True``, data through arrays): nutpie calls it through a C pointer as it
calls the Gaussian collapsed density, so a new data set compiles nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernel import (
    _GLMM_LAYOUT, BETA_LOGIT, BINOMIAL_CLOGLOG, BINOMIAL_LOGIT, BINOMIAL_PROBIT, CUMULATIVE_LOGIT, CUMULATIVE_PROBIT,
    GAMMA_INVERSE, GAMMA_LOG, GAUSSIAN, NEGBINOMIAL, POISSON_LOG, STUDENT, TR_LOG, TR_LOG1M1, TR_LOGIT,
    TR_ORDERED_FIRST, TR_ORDERED_NEXT, ZERO_INFLATED_NEGBINOMIAL, ZERO_INFLATED_POISSON, glmm_entry_points,
    glmm_expand, glmm_logp_grad,
)
from .density import PRIOR_CODES

__all__ = ["GlmmSpec", "FAMILY_CODES", "choose_centring", "CENTRE_ABOVE", "dpar_layout"]

#: (family, link) -> the kernel's code
FAMILY_CODES = {
    ("binomial", "logit"): BINOMIAL_LOGIT,
    ("binomial", "probit"): BINOMIAL_PROBIT,
    ("binomial", "cloglog"): BINOMIAL_CLOGLOG,
    ("poisson", "log"): POISSON_LOG,
    # bayesmer.families' families (their dpars the last coordinates of x)
    ("negbinomial", "log"): NEGBINOMIAL,
    ("zero_inflated_poisson", "log"): ZERO_INFLATED_POISSON,
    ("zero_inflated_negbinomial", "log"): ZERO_INFLATED_NEGBINOMIAL,
    ("student", "identity"): STUDENT,
    ("Gamma", "log"): GAMMA_LOG,
    ("Gamma", "inverse"): GAMMA_INVERSE,
    ("beta", "logit"): BETA_LOGIT,
    ("cumulative", "logit"): CUMULATIVE_LOGIT,
    ("cumulative", "probit"): CUMULATIVE_PROBIT,
    ("gaussian", "identity"): GAUSSIAN,
}

_TRANSFORMS = {"log": TR_LOG, "logit": TR_LOGIT, "log1m1": TR_LOG1M1}


def _family_key(family) -> tuple[str, str]:
    """(name, link) of a family of bayesmer.family (link an object) or bayesmer.families (link a string)."""
    link = family.link if isinstance(family.link, str) else family.link.name
    return family.name, link


def dpar_layout(family) -> tuple[list[str], np.ndarray]:
    """The dpars' coordinate labels (brms's names, ``Intercept[k]``) and kernel transform codes."""
    labels, tr = [], []
    for d in getattr(family, "dpars", ()):
        m = family.dpar_size(d)
        if d.transform == "ordered":
            labels += [f"{d.name}[{i + 1}]" for i in range(m)]
            tr += [TR_ORDERED_FIRST] + [TR_ORDERED_NEXT] * (m - 1)
        else:
            labels.append(d.name)
            tr.append(_TRANSFORMS[d.transform])
    return labels, np.array(tr, dtype=np.int64)

#: A term is centred when its median level's data outweigh its prior this many times over,
#: in the direction they say least about (see :func:`choose_centring`).
CENTRE_ABOVE = 10.0


def choose_centring(terms, working_weights: np.ndarray, covs) -> tuple[bool, ...]:
    """Per term, centred (True) or non-centred, from how much the data say about each level.

    For level g of a term with Ψ = LL' (the Laplace fit's estimate), the data's
    precision about ``b_g`` relative to the prior's is ``M_g = L'(Σ_i w_i z_i z_i')L``
    over its rows (w the working weights at the conditional modes). Where the
    median level has ``λ_min(M_g) > CENTRE_ABOVE`` the likelihood pins every
    direction of each b_g and the centred form samples well; otherwise the
    non-centred form avoids the funnel. Measured (``benchmarks/glmm_centring.py``):
    a Poisson random slope whose intercepts are well identified (trace of M_g
    about 12) but whose slopes are not diverged 2-5 times in 8,000 draws centred
    and never non-centred. A term with a zero variance estimate is non-centred.
    """
    out = []
    for t, Psi in zip(terms, covs):
        Psi = np.atleast_2d(np.asarray(Psi, dtype=float))
        if not np.all(np.isfinite(Psi)):
            out.append(False)
            continue
        try:
            L = np.linalg.cholesky(Psi)
        except np.linalg.LinAlgError:  # a singular (boundary) estimate
            out.append(False)
            continue
        ZL = t.Z @ L
        M = np.zeros((t.n_levels, t.k, t.k))
        np.add.at(M, t.codes, working_weights[:, None, None] * ZL[:, :, None] * ZL[:, None, :])
        lam = np.linalg.eigvalsh(M)[:, 0]
        out.append(bool(np.median(lam) > CENTRE_ABOVE))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class GlmmSpec:
    """Everything the compiled GLMM density reads, as arrays (see ``_kernel.glmm_logp_grad``).

    Attributes
    ----------
    meta : ndarray of int64
        n, p, terms, kmax, family code, nd (the family's dpar coordinates), then
        the nd transform codes (``_kernel.TR_*``).
    codes, par : ndarray
        Prior family codes and parameters: each fixed effect, then each term's SDs.
    eta : ndarray (terms,)
        LKJ shape per term.
    y, wt, off : ndarray (n,)
        Response (a proportion for the binomial, a count for the Poisson), prior
        weights (the binomial's trials), offset.
    X : ndarray (n, p)
    term_k, term_G, term_cent : ndarray of int64 (terms,)
    rcodes : ndarray of int64 (terms, n)
    Z : ndarray (n, sum of k)
    term_zoff : ndarray of int64 (terms,)
    bshift, bchol : ndarray (p,), (p, p)
        β = bshift + bchol γ, γ what NUTS moves (the Laplace fit's β and the
        Cholesky factor of its covariance; zeros and the identity without one).
    """

    meta: np.ndarray
    codes: np.ndarray
    par: np.ndarray
    eta: np.ndarray
    y: np.ndarray
    wt: np.ndarray
    off: np.ndarray
    X: np.ndarray
    term_k: np.ndarray
    term_G: np.ndarray
    term_cent: np.ndarray
    rcodes: np.ndarray
    Z: np.ndarray
    term_zoff: np.ndarray
    bshift: np.ndarray
    bchol: np.ndarray

    layout = _GLMM_LAYOUT

    entry_points = staticmethod(glmm_entry_points)

    @property
    def p(self) -> int:
        return int(self.meta[1])

    @property
    def nd(self) -> int:
        """The family's dpar coordinates (the last of x)."""
        return int(self.meta[5])

    @property
    def n_hyper(self) -> int:
        k = self.term_k
        return int(np.sum(k + k * (k - 1) // 2))

    @property
    def ndim(self) -> int:
        """Length of x: β, per term k log-SDs and k(k-1)/2 partial correlations, every effect, the dpars."""
        return self.p + self.n_hyper + int(np.sum(self.term_G * self.term_k)) + self.nd

    @property
    def n_expanded(self) -> int:
        return self.ndim

    def arrays(self) -> tuple:
        """The density's arguments after (x, grad), in the kernel's order."""
        return (self.meta, self.codes, self.par, self.eta, self.y, self.wt, self.off, self.X, self.term_k,
                self.term_G, self.term_cent, self.rcodes, self.Z, self.term_zoff, self.bshift, self.bchol)

    flat_arrays = arrays

    def logp(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(log density, gradient) at x, from Python."""
        g = np.zeros(self.ndim)
        lp = glmm_logp_grad(np.asarray(x, dtype=float), g, *self.arrays())
        return lp, g

    def expand(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_expanded)
        glmm_expand(np.asarray(x, dtype=float), out, self.meta, self.term_k, self.term_G, self.term_cent,
                    self.bshift, self.bchol)
        return out

    def initial_x(self, beta, sds, corr_chols, bs, dpars_z=None) -> np.ndarray:
        """The unconstrained vector of given constrained values (b per term as (G, k); the dpars unconstrained,
        as ``ResponseFamily.pack`` gives them)."""
        from .nuts import _partial_corr_coords

        beta = np.asarray(beta, dtype=float).reshape(-1)
        x = [np.linalg.solve(self.bchol, beta - self.bshift) if beta.size else beta]
        Lams = []
        for sd, L in zip(sds, corr_chols):
            sd = np.atleast_1d(np.asarray(sd, dtype=float))
            k = len(sd)
            L = np.asarray(L, dtype=float).reshape(k, k)
            x.append(np.log(sd))
            x.append(np.asarray(_partial_corr_coords(L), dtype=float))
            Lams.append(sd[:, None] * L)
        for b, Lam, cent in zip(bs, Lams, self.term_cent):
            b = np.asarray(b, dtype=float)
            x.append((b if cent else np.clip(np.linalg.solve(Lam, b.T).T, -5, 5)).reshape(-1))
        if self.nd:
            x.append(np.asarray(dpars_z, dtype=float).reshape(self.nd))
        return np.concatenate(x)

    @classmethod
    def build(cls, X, y, wt, off, terms, family, priors, centred, beta_loc=None, beta_cov=None) -> "GlmmSpec":
        """From the model's arrays, its family and a :class:`~bayesmer.priors.PriorSet`.

        Parameters
        ----------
        terms : sequence of ReTerm
            Codes and raw columns per term.
        family : Family or ResponseFamily
            A family of :mod:`bayesmer.family` (binomial, Poisson) or of
            :mod:`bayesmer.families` (its dpars' priors ``priors.dpars``).
        centred : sequence of bool
            Per term (see :func:`choose_centring`).
        beta_loc, beta_cov : ndarray, optional
            Where β's posterior is and its covariance, roughly (the Laplace
            fit's): NUTS then moves β in those coordinates.
        """
        key = _family_key(family)
        if key not in FAMILY_CODES:
            raise ValueError(f"no posterior density for family {key[0]!r} with link {key[1]!r}")
        labels, tr = dpar_layout(family)
        scalar = [p for _, p in priors.fixed]
        for t in terms:
            scalar += list(priors.sd_priors(t.name))
        if labels:
            dp = dict(getattr(priors, "dpars", ()))
            if getattr(priors, "sigma", None) is not None:  # the Gaussian family's sigma: the PriorSet's own
                dp.setdefault("sigma", priors.sigma)
            for lab in labels:
                scalar.append(dp[lab] if lab in dp else dp[lab.split("[")[0]])
        codes = np.array([PRIOR_CODES[type(p).__name__] for p in scalar], dtype=np.int64)
        par = np.zeros((len(scalar), 3))
        for i, p in enumerate(scalar):
            v = p.params()
            par[i, : len(v)] = v
        n = len(y)
        p = X.reshape(n, -1).shape[1]
        shift = np.zeros(p) if beta_loc is None else np.asarray(beta_loc, dtype=float)
        chol = np.eye(p)
        if beta_cov is not None and p:
            try:
                chol = np.linalg.cholesky(np.asarray(beta_cov, dtype=float))
            except np.linalg.LinAlgError:
                chol = np.diag(np.sqrt(np.maximum(np.diag(beta_cov), 1e-12)))
        ks = np.array([t.k for t in terms], dtype=np.int64)
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        return cls(
            meta=np.concatenate([[n, p, len(terms), int(ks.max()), FAMILY_CODES[key], len(tr)], tr]).astype(np.int64),
            codes=codes,
            par=par,
            eta=np.array([priors.corr_prior(t.name).eta if t.k > 1 else 1.0 for t in terms]),
            y=f64(y), wt=f64(wt), off=f64(off), X=f64(X.reshape(n, -1)),
            term_k=ks,
            term_G=np.array([t.n_levels for t in terms], dtype=np.int64),
            term_cent=np.array([int(c) for c in centred], dtype=np.int64),
            rcodes=np.ascontiguousarray(np.stack([t.codes for t in terms]), dtype=np.int64),
            Z=f64(np.concatenate([t.Z for t in terms], axis=1)),
            term_zoff=np.concatenate([[0], np.cumsum(ks)[:-1]]).astype(np.int64),
            bshift=f64(shift), bchol=f64(chol),
        )
