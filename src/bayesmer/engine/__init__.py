"""The likelihood engine: sufficient statistics, the blocked factorization, the collapsed likelihood."""

import os as _os

from .._numba_cache import ensure_cache as _ensure_cache

# before the kernels are defined: numba refuses a cached function with nowhere to write it
_ensure_cache(_os.path.join(_os.path.dirname(__file__), "_kernel.py"))

from .collapsed import CollapsedStats, draw_effects, loglik

__all__ = ["CollapsedStats", "draw_effects", "loglik"]
