"""The likelihood engine: sufficient statistics, the blocked factorization, the collapsed likelihood."""

from .collapsed import CollapsedStats, draw_effects, loglik

__all__ = ["CollapsedStats", "draw_effects", "loglik"]
