"""The collapsed likelihood as a PyTensor Op, so the marginal model stays a PyMC model.

``pm.model_to_graphviz``, ``model.compile_logp`` and PyMC's own samplers see
one Op with an exact gradient (a second Op). nutpie does not go through it:
:mod:`bayesmer.engine.nuts` hands it the same numba code as a C pointer.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from . import _kernel
from .collapsed import CollapsedStats

__all__ = ["CollapsedLoglik"]


def _evaluate(stats: CollapsedStats, sigma, Tall, beta_or_mu, s0, integ):
    delta = np.asarray(beta_or_mu, dtype=float) - stats.beta0
    gT = np.zeros_like(Tall)
    gd = np.zeros(stats.p)
    ll, gs, ok = _kernel.loglik_grad(float(sigma), np.ascontiguousarray(Tall, dtype=float), delta, s0, integ,
                                     stats.n, stats.kernel_stats(), gT, gd)
    if not ok:
        return -np.inf, 0.0, gT, gd
    return ll - 0.5 * stats.n * np.log(2.0 * np.pi), gs, gT, gd


class _Grad(Op):

    def __init__(self, parent: "CollapsedLoglik"):
        self.parent = parent

    def make_node(self, sigma, Tall, beta):
        ins = [pt.as_tensor(sigma, dtype="float64"), pt.as_tensor(Tall, dtype="float64"),
               pt.as_tensor(beta, dtype="float64")]
        return Apply(self, ins, [pt.dscalar(), pt.dtensor3(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        p = self.parent
        _, gs, gT, gd = _evaluate(p.stats, inputs[0], inputs[1], inputs[2], p.s0, p.integrate_beta)
        outputs[0][0] = np.asarray(gs)
        outputs[1][0] = gT
        outputs[2][0] = gd


class CollapsedLoglik(Op):
    """log p(y | σ, Λ, β), or with β integrated out log p(y | σ, Λ).

    Inputs: σ (scalar), the terms' relative factors packed as (terms, kmax,
    kmax) (see :meth:`CollapsedStats.pack_T`) and β (p,) — ignored, pass the
    prior mean, when ``prior_sd`` is given and β is integrated out.
    """


    def __init__(self, stats: CollapsedStats, prior_sd: np.ndarray | None = None):
        self.stats = stats
        self.integrate_beta = prior_sd is not None
        self.s0 = np.asarray(prior_sd, dtype=float) if prior_sd is not None else np.zeros(stats.p)
        self._grad = _Grad(self)

    def make_node(self, sigma, Tall, beta):
        ins = [pt.as_tensor(sigma, dtype="float64"), pt.as_tensor(Tall, dtype="float64"),
               pt.as_tensor(beta, dtype="float64")]
        return Apply(self, ins, [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        ll, _, _, _ = _evaluate(self.stats, inputs[0], inputs[1], inputs[2], self.s0, self.integrate_beta)
        outputs[0][0] = np.asarray(ll)

    def pullback(self, inputs, outputs, output_grads):
        gs, gT, gd = self._grad(*inputs)
        g = output_grads[0]
        gb = pt.zeros_like(inputs[2]) if self.integrate_beta else g * gd
        return [g * gs, g * gT, gb]
