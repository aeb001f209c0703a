"""R's elementwise numeric functions, shared by the design and the expression evaluator.

:mod:`bayesmer.design` hands them to formulaic (``r_log`` and so on, see
``design.CONTEXT``); :func:`bayesmer.formula.evaluate` calls them for a GLMM's
response, ``offset=`` and ``weights=``. They live here, below both, because
design imports formula.
"""

from __future__ import annotations

import numpy as np

__all__ = ["r_log", "ELEMENTWISE"]


def r_log(x, base=None):
    """R's ``log(x, base)``."""
    out = np.log(np.asarray(x, dtype=float))
    return out if base is None else out / np.log(base)


def _elementwise(f):
    return lambda x: f(np.asarray(x, dtype=float))


#: R name -> the function of one numeric vector that computes it as R does
ELEMENTWISE = {name: _elementwise(f) for name, f in {
    "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp, "expm1": np.expm1,
    "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos, "tan": np.tan, "floor": np.floor,
    "ceiling": np.ceil, "trunc": np.trunc, "sign": np.sign}.items()}
