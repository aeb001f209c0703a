"""One BLAS thread while bayesmer computes.

Every matrix here is small (k x k per group, or one dense block): threads gain
nothing, and an OpenBLAS thread pool that spins while another process holds a
core slowed sampling 10-20x on a loaded 2-core machine (measured: a 20-group
SBC fit, 0.7 s of sampling with one thread, 20 s with the default pool).
numpy and scipy also load separate OpenBLAS builds whose pools contend.
"""

from __future__ import annotations

import contextlib
import functools

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    """threadpoolctl's view of the loaded BLAS libraries, inspected once."""
    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Context manager limiting every loaded BLAS to one thread."""
    return _controller().limit(limits=1, user_api="blas")
