"""lme4's Laplace deviance of a binomial or Poisson mixed model, by lme4's PIRLS.

With the relative covariance factor Λ(θ) and spherical random effects u
(b = Λu), the conditional mode û(θ, β) minimises the penalised deviance
``Σ devResid(y, μ) + |u|²`` (penalised iteratively reweighted least squares,
PIRLS, on ``Λ'Z'WZΛ + I``, factored by :mod:`.blocks`). lme4's Laplace
deviance is then

    -2 log L(θ, β) ≈ -2 Σ log p(y | û) + |û|² + log|L|²,   LL' = Λ'Z'WZΛ + I

with W the working weights at û. lme4's deviance function is not quite the
exact Laplace approximation (its PIRLS stops at a relative change of 1e-7);
it is reproduced step for step, so that lme4's estimates and finite-difference
standard errors are too. The outer optimisation is :mod:`bayesmer.glmer_fit`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..errors import FitError
from ..family import Family
from .blocks import BlockChol, RowBlocks

__all__ = ["PirlsError", "LaplaceDeviance", "PirlsResult"]


class PirlsError(FitError):
    """PIRLS found no conditional mode (the linear predictor diverged).

    A :class:`~bayesmer.errors.FitError` (so a ``RuntimeError`` as before).
    """


class LaplaceDeviance:
    """lme4's Laplace deviance of one model, evaluated by lme4's PIRLS.

    lme4's deviance function is a deterministic function of its parameters
    that is not quite the exact Laplace approximation: every evaluation
    starts PIRLS from the same linear predictor ``lp0``, stops when the
    penalised deviance changes by less than ``tol_pwrss`` (relative), and
    takes log|L|² from the factor made with the weights before the last
    step. At lme4's default (1e-7) this moves the deviance by up to ~1e-3
    and lme4's finite-difference standard errors by up to ~1%, so the steps
    are followed as ``pwrssUpdate`` in lme4's ``external.cpp`` takes them.

    Lives only inside one fit (:func:`bayesmer.glmer`'s).
    """

    def __init__(self, X, y, wt, offset, terms, family: Family, tol_pwrss: float):
        self.X, self.y, self.wt, self.offset, self.family = X, y, wt, offset, family
        self.link = family.link
        self.tol = tol_pwrss
        self.blocks = RowBlocks(terms, len(y))
        self.ks, self.K, self.q, self.nth = self.blocks.ks, self.blocks.K, self.blocks.q, self.blocks.nth
        # R's mustart: the response model's first linear predictor (offset excluded).
        mu0 = (wt * y + 0.5) / (wt + 1) if family.name == "binomial" else y + 0.1
        self.lp0 = self.link.linkfun(mu0) - offset
        self.shift = family.loglik_shift(y, wt)
        self.n_evals = 0

    def lam_z(self, theta: np.ndarray):
        """ZΛ(θ) (:meth:`RowBlocks.lam_z`)."""
        return self.blocks.lam_z(theta)

    def factor(self, data: np.ndarray, W: np.ndarray) -> BlockChol:
        """The factor of ``Λ'Z'WZΛ + I`` (:meth:`RowBlocks.factor`)."""
        return self.blocks.factor(data, W)

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None = None, exact: bool = False) -> PirlsResult:
        """lme4's ``pwrssUpdate`` at θ: over u given β, or over (u, β) when β is None (nAGQ = 0).

        Fisher scoring from ``lp0``; a step that raises the penalised deviance
        is halved (up to 10 times); stops when the penalised deviance changes
        by less than ``tol`` relative. L is the factor of the last iteration.
        With ``exact``, PIRLS runs on to a 1e-11 change and L is made at the
        final modes: the exact Laplace deviance, smooth in the parameters.
        """
        tol = 1e-11 if exact else self.tol
        X, y, wt, fam, link = self.X, self.y, self.wt, self.family, self.link
        joint = beta is None and X.shape[1] > 0
        A = self.lam_z(theta)
        At = A.T  # a CSC view: no copy
        data = A.data.reshape(-1, self.K)
        off = self.offset if beta is None or not len(beta) else self.offset + X @ beta
        eta = self.lp0 + self.offset
        mu = link.linkinv(eta)
        du, db = np.zeros(self.q), np.zeros(X.shape[1])
        oldpdev = np.finfo(float).max

        def update(du, db):
            e = off + A @ du
            if joint:
                e = e + X @ db
            m = link.linkinv(e)
            return e, m, float(fam.dev_resids(y, m, wt).sum() + du @ du)

        for _ in range(30):
            olddu, olddb = du, db
            mu_eta = link.mu_eta(eta)
            var = fam.variance(mu)
            W = wt * mu_eta**2 / var
            z = eta - off + (y - mu) / mu_eta  # the working response, offset excluded
            L = self.factor(data, W)
            cu = L.fwd(At @ (W * z))
            if joint:
                WX = W[:, None] * X
                RZX = L.fwd(At @ WX)
                RX = sla.cholesky(X.T @ WX - RZX.T @ RZX, lower=True, check_finite=False)
                cb = sla.solve_triangular(RX, WX.T @ z - RZX.T @ cu, lower=True, check_finite=False)
                db = sla.solve_triangular(RX.T, cb, lower=False, check_finite=False)
                cu = cu - RZX @ db
            du = L.bwd(cu)
            eta, mu, pdev = update(du, db)
            if abs((oldpdev - pdev) / pdev) < tol:
                if exact:
                    mu_eta = link.mu_eta(eta)
                    L = self.factor(data, wt * mu_eta**2 / fam.variance(mu))
                return PirlsResult(du, db if joint else None, eta, mu, L, pdev, RX if joint else None)
            if not np.isfinite(pdev) or pdev > oldpdev:
                for _ in range(10):
                    du, db = (olddu + du) / 2, (olddb + db) / 2
                    eta, mu, pdev = update(du, db)
                    if np.isfinite(pdev) and pdev <= oldpdev:
                        break
                if not np.isfinite(pdev) or pdev - oldpdev > tol:
                    raise PirlsError(f"PIRLS step-halvings failed to reduce the deviance at θ = {theta}")
            oldpdev = pdev
        raise PirlsError(f"PIRLS did not converge in 30 iterations at θ = {theta}")

    def laplace(self, theta, beta=None, exact: bool = False) -> float:
        """lme4's Laplace deviance: nAGQ = 1 given β, nAGQ = 0 (β in PIRLS) without."""
        self.n_evals += 1
        try:
            r = self.pirls(np.asarray(theta, dtype=float), beta, exact)
        except (PirlsError, np.linalg.LinAlgError):
            return np.inf
        return r.value(self)

    def f_all(self, par: np.ndarray) -> float:
        """lme4's deviance function of stage 2, of (θ, β)."""
        return self.laplace(par[: self.nth], par[self.nth :])

    def f_exact(self, par: np.ndarray) -> float:
        return self.laplace(par[: self.nth], par[self.nth :], exact=True)

    def rx_crossprod(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``RX'RX = X'WX - RZX'RZX`` at the modes given (θ, β): β's precision by the Schur complement
        (lme4's ``vcov`` from RX, its fallback where the finite-difference Hessian is not positive definite)."""
        A = self.lam_z(theta)
        r = self.pirls(theta, beta)
        W = self.wt * self.link.mu_eta(r.eta) ** 2 / self.family.variance(r.mu)
        WX = W[:, None] * self.X
        RZX = r.L.fwd(A.T @ WX)
        return self.X.T @ WX - RZX.T @ RZX

    def set_lp0(self, r: PirlsResult) -> None:
        """Start later PIRLS from this one's linear predictor (lme4's ``lp0 <- pp$linPred(1)``)."""
        self.lp0 = r.eta - self.offset


@dataclass(frozen=True)
class PirlsResult:
    u: np.ndarray
    beta: np.ndarray | None
    eta: np.ndarray
    mu: np.ndarray
    L: BlockChol
    pdev: float
    RX: np.ndarray | None = None  # lower Cholesky factor of β's Schur complement (joint PIRLS)

    def value(self, prob: LaplaceDeviance) -> float:
        """ldL2 + |u|² + -2 log p(y | u): pdev holds the deviance and |u|²."""
        return float(self.L.logdet() + self.pdev + prob.shift)
