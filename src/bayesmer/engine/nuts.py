"""nutpie on the compiled collapsed density, with no Python call per gradient.

The density (:func:`bayesmer.engine.density.logp_grad`) is wrapped in a numba
``cfunc`` compiled once per machine (``cache=True``): it reads its data
through one pointer to a table of array addresses and shapes, so a new data
set needs no compilation. nutpie's Rust sampler calls the C pointer directly
and runs the chains in parallel threads.

nutpie takes such a pointer only through ``nutpie.compile_pymc.CompiledPyMCModel``,
which its public ``compile_pymc_model`` builds after JIT-compiling a PyTensor
graph with the data in it (4-25 s per data set here). bayesmer builds that
dataclass itself; it is private API, so pyproject pins nutpie to the tested
minor version and ``tests/test_engine.py`` checks the fields it relies on.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from ._kernel import c_entry_points
from .density import DensitySpec

__all__ = ["compile_density", "initial_x"]


def _table(layout, arrays) -> tuple[np.ndarray, list[np.ndarray]]:
    """The header the cfuncs read: per array its address and shape (padded to 3)."""
    keep = []
    h = np.zeros(4 * len(layout), dtype=np.int64)
    for i, ((is_int, ndim), a) in enumerate(zip(layout, arrays, strict=True)):
        a = np.ascontiguousarray(a, dtype=np.int64 if is_int else np.float64)
        if a.ndim != ndim:
            raise ValueError(f"array {i} of the density has {a.ndim} dimensions, the C entry point reads {ndim}")
        keep.append(a)
        h[4 * i] = a.ctypes.data
        h[4 * i + 1 : 4 * i + 1 + a.ndim] = a.shape
    return h, keep


def _entry_points(get=c_entry_points, announce_after: float = 1.0):
    """The compiled callbacks; says so on stderr when getting them takes a while (a compile)."""
    if get.cache_info().currsize:
        return get()

    def say():
        print("bayesmer: compiling the likelihood engine (once per machine and version; "
              "about a minute)...", file=sys.stderr, flush=True)

    timer = threading.Timer(announce_after, say)
    timer.start()
    try:
        return get()
    finally:
        timer.cancel()


def _partial_corr_coords(L: np.ndarray) -> list[float]:
    """The tanh-partial-correlation coordinates of a correlation Cholesky factor (row-wise)."""
    k = L.shape[0]
    out = []
    for i in range(1, k):
        w = 1.0
        for j in range(i):
            c = np.clip(L[i, j] / w, -0.99, 0.99)
            out.append(np.arctanh(c))
            w *= np.sqrt(1.0 - c * c)
    return out


def initial_x(spec: DensitySpec, sigma: float, sds, corr_chols, beta=None) -> np.ndarray:
    """The unconstrained vector of given constrained values (see :mod:`.density`)."""
    x = [np.log(sigma)]
    for sd, L in zip(sds, corr_chols):
        sd = np.atleast_1d(np.asarray(sd, dtype=float))
        x.extend(np.log(sd))
        k = len(sd)
        x.extend(_partial_corr_coords(np.asarray(L, dtype=float).reshape(k, k)))
    if not spec.integrate_beta:
        x.extend(np.asarray(beta, dtype=float))
    return np.asarray(x, dtype=float)


def compile_density(spec, names, shapes, dims, coords, x0: np.ndarray, jitter: float = 0.5):
    """A nutpie compiled model sampling ``spec``.

    Parameters
    ----------
    spec : DensitySpec or GlmmSpec
        Its ``layout``, ``entry_points()`` and ``flat_arrays()`` say what the C callbacks read.
    names, shapes : list
        The expanded variables (see :func:`bayesmer.engine.density.expand`) and their shapes.
    dims, coords : dict
        For nutpie's DataTree.
    x0 : ndarray
        Where the chains start, each jittered uniformly by ``jitter`` per coordinate.
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    c_logp, c_expand = _entry_points(spec.entry_points)
    header, keep = _table(spec.layout, spec.flat_arrays())
    sizes = [int(np.prod(s)) for s in shapes]
    slices, o = [], 0
    for s in sizes:
        slices.append(slice(o, o + s))
        o += s
    if o != spec.n_expanded:
        raise ValueError(f"expanded sizes {sizes} do not add up to {spec.n_expanded}")

    def init(seed):
        rng = np.random.default_rng(seed)
        return x0 + rng.uniform(-jitter, jitter, size=x0.shape)

    return CompiledPyMCModel(
        dims=dims,
        _n_dim=spec.ndim,
        _coords=coords,
        _shapes={n: tuple(s) for n, s in zip(names, shapes)},
        compiled_logp_func=c_logp,
        compiled_expand_func=c_expand,
        initial_point_func=init,
        shared_data={str(i): a for i, a in enumerate(keep)},
        shared_var_keys={},
        user_data=header,
        n_expanded=spec.n_expanded,
        shape_info=(list(names), slices, [tuple(s) for s in shapes]),
        logp_func=None,
        expand_func=None,
    )
