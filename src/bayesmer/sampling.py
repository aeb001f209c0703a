"""Sample a built model with NUTS and assemble the ArviZ DataTree.

Groups: ``posterior`` (beta, sigma, sd_*, corr_*, b_*), ``sample_stats``,
``log_likelihood`` (pointwise, conditional on b, named as the response),
``log_prior`` (the hyperparameters' priors only), ``observed_data``,
``constant_data`` (the columns the formula reads) and, on request,
``posterior_predictive``, ``prior`` and ``prior_predictive``; every group
carries ArviZ's attributes (:func:`group_attrs`). Variables and dims are named
by :mod:`bayesmer.naming`.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from ._threads import one_blas_thread
from . import naming as nm
from . import settings as st
from .builder import BuiltModel
from .errors import SamplingError
from .engine import draw_effects as _draw_effects
from .engine.nuts import compile_density, initial_x

__all__ = ["Sampled", "sample", "sample_glmm", "linear_predictor", "constant_data", "group_attrs"]

_SAMPLE = ("chain", "draw")
# keep pointwise log-likelihoods below ~400 MB unless asked
_LOGLIK_AUTO_LIMIT = 50_000_000


@dataclass(frozen=True, eq=False)
class Sampled:
    """Draws and the time they took.

    Attributes
    ----------
    idata : xarray.DataTree
    timings : dict
        Seconds: ``compile``, ``sampling`` and ``postprocess``.
    sampler : str
    backend : str
    seed : int or None
        The seed the sampler ran with (drawn when none was given).
    """

    idata: xr.DataTree
    timings: dict = field(default_factory=dict)
    sampler: str = "nutpie"
    backend: str = "engine"
    seed: int | None = None


def group_attrs(sampler: str, **extra) -> dict:
    """ArviZ's standard group attributes (``created_at``, ``inference_library``...).

    ``from_dict``/``from_pymc`` stamp their groups with these; the groups
    bayesmer computes itself (exact draws of b, log-likelihood, predictions)
    get the same, naming the sampler whose draws they derive from.
    """
    import importlib

    from arviz_base import make_attrs

    from . import __version__

    # the name is imported: only one of the samplers the settings allow (a saved fit's settings are data)
    attrs = make_attrs(inference_library=importlib.import_module(st.check("sampler", sampler)))
    attrs.update({"creation_library": "bayesmer", "creation_library_version": __version__}, **extra)
    return attrs


def _strings(s: pd.Series) -> np.ndarray:
    """A column as a numpy str array; a missing value as the empty string."""
    return np.array(["" if pd.isna(v) else str(v) for v in s], dtype=str)


def constant_data(design, frame=None) -> xr.Dataset:
    """The columns the formula reads, one variable per column over ``obs``.

    What prediction needs to rebuild the design (and :func:`bayesmer.load` to
    rebuild the fit). Categorical columns are stored as strings with their
    categories (in order) in the variable's attributes, so the reference
    level survives a round trip through a file.
    """
    import json

    frame = design.frame if frame is None else frame
    out = {}
    for col in frame.columns:
        s = frame[col]
        attrs = {}
        if isinstance(s.dtype, pd.CategoricalDtype):
            attrs = {"categories": json.dumps([str(c) for c in s.cat.categories]), "ordered": int(s.cat.ordered)}
            values = _strings(s)
        elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            values = _strings(s)
        else:
            values = s.to_numpy()
        out[str(col)] = xr.DataArray(values, dims=(nm.OBS_DIM,), attrs=attrs)
    return xr.Dataset(out, coords={nm.OBS_DIM: np.arange(len(frame))})


def _initial_point_fn(built: BuiltModel):
    from pymc.initial_point import make_initial_point_fn

    m = built.model
    return make_initial_point_fn(
        model=m, overrides=built.initial_point, jitter_rvs=set(m.free_RVs), return_transformed=True
    )


def _compile_pytensor(built: BuiltModel):
    """nutpie driving a PyTensor function on the C linker through its Python-function interface.

    ``nutpie.compile_pymc_model``, and PyTensor 3's default numba linker too,
    JIT-compile code that embeds the data: every new data set costs 10-40 s
    (measured: ~20 s per 160-row SBC replicate). The C linker's compiled ops
    are cached on disk by op, not by data: after the first fit on a machine a
    new data set compiles in ~2 s. Each gradient then pays a Python call
    (20-70 µs), small next to that compile time for all but very long runs.
    """
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords
    from nutpie.compiled_pyfunc import from_pyfunc
    from pytensor.compile.mode import get_mode

    n_dim, _, logp_fn, expand_fn, init_fn, shape_info, reparam = _make_functions(
        built.model,
        mode=get_mode("cvm"),
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=_initial_point_fn(built),
        var_names=None,
    )
    logp_fn.trust_input = True
    expand_fn.trust_input = True
    names, _, shapes = shape_info

    def make_logp():
        def logp(x, **_):
            lp, grad = logp_fn(x)
            return float(lp), np.asarray(grad, dtype="float64", order="C")

        return logp

    def make_expand(seed1, seed2, chain):
        def expand(x, **_):
            return {
                n: np.asarray(v, dtype="float64", order="C").reshape(s)
                for n, v, s in zip(names, expand_fn(x), shapes)
            }

        return expand

    dims, coords = _prepare_dims_and_coords(built.model, shape_info, reparam)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp,
        make_expand_fn=make_expand,
        make_initial_point_fn=init_fn,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        dims=dims,
        coords=coords,
        reparameterized_names=reparam,
    )


def _compile_engine(built: BuiltModel):
    """nutpie on the engine's compiled collapsed density (see :mod:`bayesmer.engine.nuts`)."""
    spec = built.density
    init = built.start
    terms = list(built.sd)
    corr_chols = [init[nm.corr_chol_var(t)] for t in terms]
    x0 = initial_x(spec, float(init[built.sigma]), [init[built.sd[t]] for t in terms], corr_chols,
                   None if spec.integrate_beta else init[built.beta])
    coords = {k: list(v) for k, v in built.model.coords.items() if k != nm.OBS_DIM}
    names, shapes, dims = [built.sigma], [()], {}
    for t, k in zip(terms, spec.stats.term_k):
        k = int(k)
        names.append(built.sd[t])
        shapes.append((k,))
        dims[built.sd[t]] = (nm.term_dim(t),)
        if k > 1:
            names.append(built.corr[t])
            shapes.append((k * (k - 1) // 2,))
            dims[built.corr[t]] = (nm.pair_dim(t),)
    if not spec.integrate_beta:
        names.append(built.beta)
        shapes.append((spec.stats.p,))
        dims[built.beta] = (nm.FIXED_DIM,)
    return compile_density(spec, names, shapes, dims, coords, x0)


def _compile_glmm(built: BuiltModel):
    """nutpie on the engine's compiled GLMM density (see :mod:`bayesmer.engine.glmm`)."""
    spec = built.density
    init = built.start
    terms = list(built.sd)
    if built.strategy == "full":  # the Gaussian model's explicit effects: z, sigma last
        bs = [init[nm.z_var(t)] @ (init[built.sd[t]][:, None] * init[nm.corr_chol_var(t)]).T for t in terms]
        dz = np.log([init[built.sigma]])
        tail = (built.sigma,)
    else:
        bs = [init[built.b[t]] for t in terms]
        dz = init.get("dpars_z")
        tail = built.dpars
    x0 = spec.initial_x(init[built.beta], [init[built.sd[t]] for t in terms],
                        [init[nm.corr_chol_var(t)] for t in terms], bs, dz)
    coords = {k: list(v) for k, v in built.model.coords.items() if k != nm.OBS_DIM}
    names, shapes, dims = [], [], {}
    if spec.p:
        names.append(built.beta)
        shapes.append((spec.p,))
        dims[built.beta] = (nm.FIXED_DIM,)
    for t, k in zip(terms, spec.term_k):
        k = int(k)
        names.append(built.sd[t])
        shapes.append((k,))
        dims[built.sd[t]] = (nm.term_dim(t),)
        if k > 1:
            names.append(built.corr[t])
            shapes.append((k * (k - 1) // 2,))
            dims[built.corr[t]] = (nm.pair_dim(t),)
    for t, k, G in zip(terms, spec.term_k, spec.term_G):
        names.append(built.b[t])
        shapes.append((int(G), int(k)))
        dims[built.b[t]] = (nm.level_dim(t), nm.effect_dim(t))
    fam = built.family
    for name in tail:  # the family's parameters, natural scale, last (GlmmSpec's order)
        names.append(name)
        if name == nm.THRESHOLDS and fam is not None and fam.name == "cumulative":
            shapes.append((fam.n_thresholds,))
            dims[name] = (nm.THRESHOLD_DIM,)
            coords[nm.THRESHOLD_DIM] = pd.Index(np.arange(1, fam.n_thresholds + 1))  # nutpie: no list of ints
        else:
            shapes.append(())
    return compile_density(spec, names, shapes, dims, coords, x0)


def _run_nutpie(built, draws, tune, chains, seed, progress, backend, target_accept):
    import nutpie

    t0 = time.perf_counter()
    if backend == "auto":
        backend = "engine" if built.density is not None else "pytensor"
    cores = None
    if backend == "engine":
        if built.density is None:
            raise st.SettingsError("backend='engine' samples the marginal model: use strategy='marginal' or 'auto'")
        compiled = _compile_glmm(built) if built.strategy in ("glmm", "full") else _compile_engine(built)
    elif backend == "pytensor":
        compiled = _compile_pytensor(built)
        # Python-level logp calls hold the GIL: parallel chains would only
        # contend for it (a convoy that made sampling 10x slower here).
        cores = 1
    else:
        compiled = nutpie.compile_pymc_model(built.model, initial_points=built.initial_point)
    t1 = time.perf_counter()
    kwargs = {"cores": cores} if cores else {}
    # nutpie's blocking sample() answers Ctrl-C with the partial trace, NaN past the
    # draws done, as if all went well: wait here and turn the interrupt into one
    bg = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress_bar=progress,
        save_warmup=False,
        target_accept=target_accept,
        blocking=False,
        **kwargs,
    )
    try:
        idata = bg.wait()
    except KeyboardInterrupt:
        try:
            done = _completed_draws(bg.abort())
        except BaseException:  # a panic of nutpie's threads too: the count is a courtesy, the interrupt is the news
            done = None
        raise _interrupted(done, draws, chains) from None
    except BaseException:
        bg.cancel()
        raise
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1, backend


def _run_pymc(built, draws, tune, chains, seed, progress, target_accept, sigint):
    t0 = time.perf_counter()
    try:
        idata = _pm_sample(built, draws, tune, chains, seed, progress, target_accept)
    except KeyboardInterrupt:
        raise _interrupted(None, draws, chains) from None
    except Exception as exc:
        if sigint:  # an interrupted run that PyMC could not even assemble
            raise _interrupted(None, draws, chains) from exc
        raise
    if sigint:
        # PyMC swallows Ctrl-C and returns the draws made so far, as if all went well
        try:
            done = _completed_draws(idata)
        except Exception:
            done = None
        raise _interrupted(done, draws, chains)
    t1 = time.perf_counter()
    # PyMC compiles inside pm.sample; its time is not separable here
    return idata, 0.0, t1 - t0


def _pm_sample(built, draws, tune, chains, seed, progress, target_accept):
    with built.model:
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            progressbar=progress,
            initvals=built.initial_point,
            target_accept=target_accept,
            compute_convergence_checks=False,
            # the C linker caches compiled ops across data sets (see _compile_pytensor)
            backend="c",
        )


def _run(built, draws, tune, chains, seed, sampler, progress, backend, target_accept):
    """Check the settings and run the sampler: (raw tree, compile s, sampling s, backend, seed, sampler)."""
    draws, tune, chains = (st.check(k, v) for k, v in (("draws", draws), ("tune", tune), ("chains", chains)))
    sampler, backend = st.check("sampler", sampler), st.check("backend", backend)
    target_accept = st.check("target_accept", target_accept)
    if seed is None:
        seed = st.draw_seed()
    with one_blas_thread(), _sigint_seen() as sigint:
        if sampler == "nutpie":
            raw, t_compile, t_sample, backend = _run_nutpie(
                built, draws, tune, chains, seed, progress, backend, target_accept
            )
        else:
            raw, t_compile, t_sample = _run_pymc(built, draws, tune, chains, seed, progress, target_accept, sigint)
            backend = "pymc"
        if sigint:  # a Ctrl-C the sampler swallowed
            raise _interrupted(None, draws, chains)
    got = _ds(raw["posterior"]).sizes
    if got.get("chain") != chains or got.get("draw") != draws:
        raise SamplingError(f"the sampler returned {got.get('chain')} chains x {got.get('draw')} draws, "
                            f"not the {chains} x {draws} asked for: it stopped early")
    return raw, t_compile, t_sample, backend, seed, sampler


@contextmanager
def _sigint_seen():
    """Note a SIGINT during sampling, then let it act as it did (KeyboardInterrupt by default).

    Samplers catch the KeyboardInterrupt and return the draws made so far as
    a finished run (nutpie, PyMC): the note is how :func:`_run` still tells.
    Signal handlers belong to the main thread; elsewhere, or when SIGINT is
    ignored or left to the OS, nothing is installed and the draw-count check
    of :func:`_run` remains.
    """
    seen: list[int] = []  # true once a SIGINT came
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _completed_draws(trace) -> int:
    """Post-tuning draws made, over all chains, in a partial trace: those whose values are all finite."""
    post = _ds(trace["posterior"])
    n_chain, n_draw = post.sizes.get("chain", 0), post.sizes.get("draw", 0)
    if not n_chain * n_draw or not post.data_vars:
        return 0
    ok = np.ones((n_chain, n_draw), dtype=bool)
    for v in post.data_vars.values():
        a = v.transpose(*_SAMPLE, ...).to_numpy().reshape(n_chain, n_draw, -1)
        ok &= np.isfinite(a).all(axis=-1)
    return int(ok.sum())


def _interrupted(done: int | None, draws: int, chains: int) -> KeyboardInterrupt:
    """The KeyboardInterrupt fit() raises: how far sampling got, of ``draws`` x ``chains``."""
    total = draws * chains
    if done is None:
        what = f"sampling interrupted before its {total} draws were made"
    elif done == 0:
        what = f"sampling interrupted while tuning (0 of {total} draws made)"
    else:
        what = f"sampling interrupted: {done} of {total} draws made"
    return KeyboardInterrupt(f"{what}; a partial run gives no fit")


def _check_finite(post: xr.Dataset) -> None:
    """Refuse draws with NaN or infinities: never a posterior sample, whatever the sampler said."""
    bad = [str(n) for n, v in post.data_vars.items()
           if v.dtype.kind in "fc" and not np.isfinite(v.to_numpy()).all()]
    if bad:
        raise SamplingError(f"the sampler returned non-finite draws of {', '.join(bad)}: "
                            "not a posterior sample (an interrupted or failed run)")


def _sampler_groups(raw, built, sampler: str) -> tuple[xr.Dataset, xr.Dataset]:
    """The sampler's posterior (helpers dropped) and sample_stats (with ArviZ's attributes)."""
    post = _ds(raw["posterior"])
    drop = [v for v in post.data_vars if v in built.hidden or v.startswith("z_") or v.startswith("corr_chol_")]
    post = post.drop_vars(drop)
    _check_finite(post)
    stats = _ds(raw["sample_stats"])
    stats = stats.drop_vars([v for v in stats.data_vars if stats[v].dtype == object])
    stats.attrs = group_attrs(sampler, **{k: v for k, v in stats.attrs.items() if k not in ("created_at",)})
    return post, stats


def _ds(node) -> xr.Dataset:
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def _stack(post: xr.Dataset, name: str) -> np.ndarray:
    """(chain, draw, ...) -> (S, ...)."""
    a = post[name].transpose(*_SAMPLE, ...).to_numpy()
    return a.reshape((-1,) + a.shape[2:])


def _L_draws(post: xr.Dataset, built: BuiltModel, term) -> np.ndarray:
    sd = _stack(post, built.sd[term.name])
    if term.k == 1:
        return sd[:, :, None]
    R = nm.corr_matrix(_stack(post, built.corr[term.name]), term.k)
    try:
        C = np.linalg.cholesky(R)
    except np.linalg.LinAlgError:  # |corr| rounding to 1
        C = np.linalg.cholesky(R + 1e-10 * np.eye(term.k))
    return sd[:, :, None] * C


def linear_predictor(design_X, Zs, codes, beta, bs) -> np.ndarray:
    """``X β + Σ_t z_t·b_t[code]`` for draws ``beta`` (S, p) and ``bs`` [(S, G_t, k_t)].

    A code of -1 contributes nothing (the caller supplies effects for new levels).
    """
    eta = beta @ design_X.T if design_X.shape[1] else np.zeros((beta.shape[0], design_X.shape[0]))
    for Z, c, b in zip(Zs, codes, bs):
        known = c >= 0
        contrib = np.einsum("snk,nk->sn", b[:, np.where(known, c, 0)], Z)
        eta = eta + np.where(known, contrib, 0.0)
    return eta


def _pointwise(design, beta, sigma, bs, fn, chunk=200):
    S = sigma.shape[0]
    out = np.empty((S, design.n))
    for lo in range(0, S, chunk):
        s = slice(lo, min(S, lo + chunk))
        eta = linear_predictor(design.X, [t.Z for t in design.terms], [t.codes for t in design.terms], beta[s], [b[s] for b in bs])
        if design.offset is not None:
            eta = eta + design.offset
        out[s] = fn(eta, sigma[s, None], s)
    return out


def _draw_effects_chunked(stats, sigma, Ts, rng, chunk=250, beta=None, **prior):
    """:func:`bayesmer.engine.draw_effects` over chunks of draws, into preallocated outputs."""
    S = sigma.shape[0]
    beta_out, bs_out = None, None
    for lo in range(0, S, chunk):
        s = slice(lo, min(S, lo + chunk))
        b, bs = _draw_effects(stats, sigma[s], [T[s] for T in Ts], rng,
                              beta=None if beta is None else beta[s], **prior)
        if beta_out is None:
            beta_out = np.empty((S,) + b.shape[1:])
            bs_out = [np.empty((S,) + x.shape[1:]) for x in bs]
        beta_out[s] = b
        for out, x in zip(bs_out, bs):
            out[s] = x
    return beta_out, bs_out


def _pointwise_chunked(design, beta, sigma, bs, fn, chunk=200):
    """:func:`_pointwise` for data not in memory (:mod:`bayesmer.sources`): the rows rebuilt one
    chunk at a time where the data live, ``fn(eta, sigma, y)`` per chunk; only the result is kept."""
    from .sources import iter_design_chunks

    S = sigma.shape[0]
    out = np.empty((S, design.n))
    row = 0
    for rows in iter_design_chunks(design):
        m = len(rows.y)
        for lo in range(0, S, chunk):
            s = slice(lo, min(S, lo + chunk))
            eta = linear_predictor(rows.X, list(rows.term_Z), list(rows.term_codes), beta[s], [b[s] for b in bs])
            if rows.offset is not None:
                eta = eta + rows.offset
            out[s, row:row + m] = fn(eta, sigma[s, None], rows.y)
        row += m
    return out


def _row_groups_chunked(design, built, post, beta, sigma, bs, rng, log_likelihood, predictive) -> dict:
    """``log_likelihood`` and ``posterior_predictive`` of data not in memory, when asked for."""
    if not (log_likelihood or predictive):
        return {}
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    coords = {"chain": post.coords["chain"], "draw": post.coords["draw"], "obs": np.arange(design.n)}
    out = {}
    if log_likelihood:
        ll = _pointwise_chunked(design, beta, sigma, bs,
                                lambda eta, sg, y: -0.5 * np.log(2 * np.pi * sg**2) - 0.5 * ((y - eta) / sg) ** 2)
        out["log_likelihood"] = xr.Dataset({built.response: (("chain", "draw", "obs"), ll.reshape(n_chain, n_draw, -1))},
                                           coords=coords)
    if predictive:
        yrep = _pointwise_chunked(design, beta, sigma, bs, lambda eta, sg, y: eta + sg * rng.standard_normal(eta.shape))
        out["posterior_predictive"] = xr.Dataset(
            {built.response: (("chain", "draw", "obs"), yrep.reshape(n_chain, n_draw, -1))}, coords=coords)
    return out


def _log_prior(post: xr.Dataset, built: BuiltModel, terms) -> xr.Dataset:
    pri = built.priors
    out = {}
    if pri.fixed:
        beta = post[built.beta]
        lp = np.stack([p.logp(beta.sel(fixed=n).to_numpy()) for n, p in pri.fixed], axis=-1)
        out[built.beta] = (("chain", "draw", "fixed"), lp)
    for t in terms:
        sd = post[built.sd[t.name]].transpose(*_SAMPLE, ...).to_numpy()
        lp = np.stack([p.logp(sd[..., i]) for i, p in enumerate(pri.sd_priors(t.name))], axis=-1)
        out[built.sd[t.name]] = (("chain", "draw", nm.term_dim(t.name)), lp)
        if t.name in built.corr:
            R = nm.corr_matrix(post[built.corr[t.name]].transpose(*_SAMPLE, ...).to_numpy(), t.k)
            out[built.corr[t.name]] = (_SAMPLE, pri.corr_prior(t.name).logp(R))
    if built.sigma is not None:
        out[built.sigma] = (_SAMPLE, pri.sigma.logp(post[built.sigma].to_numpy()))
    for name in getattr(built, "dpars", ()):
        v = post[name].transpose(*_SAMPLE, ...)
        out[name] = (v.dims, np.asarray(pri.dpar_prior(name).logp(v.to_numpy())))
    keep = ("chain", "draw", "fixed", nm.THRESHOLD_DIM)
    return xr.Dataset(out, coords={k: post.coords[k] for k in post.coords if k in keep or k.endswith("_term")})


def _new_rng(seed):
    return np.random.default_rng(None if seed is None else [int(seed), 7919])


def sample(
    built: BuiltModel,
    design,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "nutpie",
    progress: bool = True,
    *,
    backend: str = "auto",
    target_accept: float = 0.8,
    log_likelihood: bool | None = None,
    sample_posterior_predictive: bool = False,
    sample_prior: bool | int = False,
) -> Sampled:
    """Sample the posterior of ``built`` and assemble the DataTree.

    Parameters
    ----------
    built : BuiltModel
    design : Design
    draws, tune, chains : int
        Per chain; ``draws`` and ``chains`` at least 1.
    seed : int, optional
        Seeds the sampler and the exact draws of b under ``"marginal"``; one
        is drawn when None (:func:`bayesmer.settings.draw_seed`). The seed
        used is :attr:`Sampled.seed` and the posterior's ``seed`` attribute.
    sampler : {"nutpie", "pymc"}
    progress : bool
    backend : {"auto", "engine", "pytensor", "numba"}
        For nutpie. ``"engine"`` (what ``"auto"`` picks) hands nutpie the
        engine's numba-compiled density as a C pointer (the collapsed one for
        the marginal model, the GLMM kernel with the Gaussian family for
        ``"full"``): compiled once per machine, no compile per data set, no
        Python call per gradient, chains in parallel. ``"pytensor"`` hands nutpie the PyMC model's
        PyTensor function on the C linker (a Python call per gradient, chains
        one after another); ``"numba"`` is ``nutpie.compile_pymc_model``
        (10-40 s to compile for every new data set).
    target_accept : float
    log_likelihood : bool, optional
        Pointwise log-likelihood group; by default only when it stays small
        (draws x rows <= 5e7), and for data not in memory only when True.
    sample_posterior_predictive : bool
    sample_prior : bool or int
        Add ``prior`` (the hyperparameters) and ``prior_predictive``; an int
        sets the number of prior draws (default 500).

    Returns
    -------
    Sampled
    """
    run = _run(built, draws, tune, chains, seed, sampler, progress, backend, target_accept)
    raw, t_compile, t_sample, backend, seed, sampler = run
    t0 = time.perf_counter()
    rng = _new_rng(seed)

    post, stats = _sampler_groups(raw, built, sampler)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    sigma = _stack(post, built.sigma)
    Ls = [_L_draws(post, built, t) for t in design.terms]

    if built.strategy == "marginal":
        # (β,) b exactly from their Gaussian conditional, one draw per posterior draw
        spec = built.density
        Ts = [L / sigma[:, None, None] for L in Ls]
        # data not in memory come with many groups: the draws in chunks keep the temporaries small
        draw_effects = _draw_effects if getattr(design, "sums", None) is None else _draw_effects_chunked
        if spec.integrate_beta:
            beta, b_draws = draw_effects(spec.stats, sigma, Ts, rng, prior_mu=spec.mu0, prior_sd=spec.s0)
            post[built.beta] = (("chain", "draw", nm.FIXED_DIM), beta.reshape(n_chain, n_draw, -1))
            post = post.assign_coords({nm.FIXED_DIM: list(design.fixed_names)})
        else:
            beta = _stack(post, built.beta) if design.p else np.zeros((S, 0))
            _, b_draws = draw_effects(spec.stats, sigma, Ts, rng, beta=beta)
        for t, b in zip(design.terms, b_draws):
            post[built.b[t.name]] = (
                ("chain", "draw", nm.level_dim(t.name), nm.effect_dim(t.name)),
                b.reshape(n_chain, n_draw, t.n_levels, t.k),
            )
            post = post.assign_coords({nm.level_dim(t.name): list(t.levels), nm.effect_dim(t.name): list(t.terms)})
    else:
        beta = _stack(post, built.beta) if design.p else np.zeros((S, 0))
    bs = [_stack(post, built.b[t.name]) for t in design.terms]

    # the sampler's attributes, plus which library drew b (and, later, beta) exactly
    post.attrs = group_attrs(sampler, **{k: v for k, v in post.attrs.items() if k != "created_at"} | {"seed": seed})
    groups: dict[str, xr.Dataset] = {"posterior": post, "sample_stats": stats}
    in_memory = getattr(design, "sums", None) is None
    if not in_memory:
        # data not in memory: the per-row groups only on request, one chunk of rows at a time
        groups.update(_row_groups_chunked(design, built, post, beta, sigma, bs, rng, bool(log_likelihood),
                                          sample_posterior_predictive))
        log_likelihood, sample_posterior_predictive = False, False
    sample_coords = {"chain": post.coords["chain"], "draw": post.coords["draw"],
                     "obs": np.arange(design.n if in_memory else 0)}
    y = design.y
    want_ll = log_likelihood if log_likelihood is not None else S * design.n <= _LOGLIK_AUTO_LIMIT
    if want_ll:
        ll = _pointwise(
            design, beta, sigma, bs,
            lambda eta, sg, s: -0.5 * np.log(2 * np.pi * sg**2) - 0.5 * ((y - eta) / sg) ** 2,
        )
        groups["log_likelihood"] = xr.Dataset(
            {built.response: (("chain", "draw", "obs"), ll.reshape(n_chain, n_draw, -1))}, coords=sample_coords
        )
    groups["log_prior"] = _log_prior(post, built, design.terms)
    if in_memory:
        groups["observed_data"] = xr.Dataset({built.response: (("obs",), y)}, coords={"obs": np.arange(design.n)})
        groups["constant_data"] = constant_data(design)
    if sample_posterior_predictive:
        yrep = _pointwise(design, beta, sigma, bs, lambda eta, sg, s: eta + sg * rng.standard_normal(eta.shape))
        groups["posterior_predictive"] = xr.Dataset(
            {built.response: (("chain", "draw", "obs"), yrep.reshape(n_chain, n_draw, -1))}, coords=sample_coords
        )
    if sample_prior:
        n_prior = 500 if sample_prior is True else int(sample_prior)
        prior, prior_pred = _prior_groups(built, design, n_prior, seed, rng)
        groups["prior"] = prior
        groups["prior_predictive"] = prior_pred
    for name, ds in groups.items():
        if name not in ("posterior", "sample_stats"):
            ds.attrs = group_attrs(sampler)
    idata = xr.DataTree.from_dict(groups)
    t1 = time.perf_counter()
    return Sampled(
        idata=idata,
        timings={"compile": t_compile, "sampling": t_sample, "postprocess": t1 - t0},
        sampler=sampler,
        backend=backend,
        seed=seed,
    )


def _prior_groups(built, design, n_prior, seed, rng):
    names = [built.sigma, *built.sd.values(), *built.corr.values()]
    if design.p and not built.integrate_beta:
        names.append(built.beta)
    with warnings.catch_warnings():
        # Potentials (the marginal likelihood) are rightly ignored here
        warnings.filterwarnings("ignore", message=".*Potential.*")
        pri = pm.sample_prior_predictive(draws=n_prior, model=built.model, var_names=names, random_seed=seed)
    prior = _ds(pri["prior"])
    if design.p and built.integrate_beta:
        # integrated out, so not a model variable: draw it from its Normal prior
        spec = built.density
        c, d = prior.sizes["chain"], prior.sizes["draw"]
        draws_beta = spec.mu0 + spec.s0 * rng.standard_normal((c, d, design.p))
        prior[built.beta] = (("chain", "draw", nm.FIXED_DIM), draws_beta)
        prior = prior.assign_coords({nm.FIXED_DIM: list(design.fixed_names)})
    beta = _stack(prior, built.beta) if design.p else np.zeros((n_prior, 0))
    sigma = _stack(prior, built.sigma)
    bs = []
    for t in design.terms:
        L = _L_draws(prior, built, t)
        z = rng.standard_normal((L.shape[0], t.n_levels, t.k))
        bs.append(np.einsum("sgk,slk->sgl", z, L))
    if getattr(design, "sums", None) is None:
        yrep = _pointwise(design, beta, sigma, bs, lambda eta, sg, s: eta + sg * rng.standard_normal(eta.shape))
    else:
        yrep = _pointwise_chunked(design, beta, sigma, bs, lambda eta, sg, y: eta + sg * rng.standard_normal(eta.shape))
    c, d = prior.sizes["chain"], prior.sizes["draw"]
    pp = xr.Dataset(
        {built.response: (("chain", "draw", "obs"), yrep.reshape(c, d, -1))},
        coords={"chain": prior.coords["chain"], "draw": prior.coords["draw"], "obs": np.arange(design.n)},
    )
    return prior, pp


def _counts(data) -> np.ndarray:
    """The response as counts: successes for the binomial (0/1 for a binary response), counts for the Poisson."""
    return np.round(data.y * data.weights) if data.family.name == "binomial" else data.y


def _glmm_rows(data, beta, bs, chunk=200, link=True):
    """μ (``link=False``: η) per draw and row, ``(S, n)``."""
    S = beta.shape[0]
    out = np.empty((S, len(data.y)))
    for lo in range(0, S, chunk):
        s = slice(lo, min(S, lo + chunk))
        eta = linear_predictor(np.asarray(data.X, dtype=float), [t.Z for t in data.terms],
                               [t.codes for t in data.terms], beta[s], [b[s] for b in bs]) + data.offset
        out[s] = data.family.link.linkinv(eta) if link else eta
    return out


def family_draws(post: xr.Dataset, fam, names) -> dict:
    """The dpars per draw, as :mod:`bayesmer.families` takes them (``(S,)``; thresholds ``(S, K-1)``)."""
    out = {}
    for name in names:
        v = post[name].transpose(*_SAMPLE, ...).to_numpy()
        out[name] = v.reshape(-1, *v.shape[2:])
    return out


def _family_rows(eta, dp, fn) -> np.ndarray:
    """``fn(eta_s, dp_s)`` per draw s (the draws' rows of eta, each with its own dpars), ``(S, n)``."""
    out = np.empty_like(eta)
    for s in range(eta.shape[0]):
        out[s] = fn(eta[s], {k: v[s] for k, v in dp.items()})
    return out


def sample_glmm(
    built: BuiltModel,
    data,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "nutpie",
    progress: bool = True,
    *,
    backend: str = "auto",
    target_accept: float = 0.8,
    log_likelihood: bool | None = None,
    sample_posterior_predictive: bool = False,
    sample_prior: bool | int = False,
) -> Sampled:
    """Sample a binomial or Poisson mixed model (:func:`bayesmer.builder.build_glmm`).

    As :func:`sample`; the response groups hold counts (successes of the
    binomial, 0/1 for a binary response), the log-likelihood is R's per row
    (with its binomial coefficient or ``log y!``), and ``posterior_predictive``
    draws counts from the family.
    """
    run = _run(built, draws, tune, chains, seed, sampler, progress, backend, target_accept)
    raw, t_compile, t_sample, backend, seed, sampler = run
    t0 = time.perf_counter()
    rng = _new_rng(seed)
    post, stats = _sampler_groups(raw, built, sampler)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    p = len(data.fixed_names)
    beta = _stack(post, built.beta) if p else np.zeros((S, 0))
    bs = [_stack(post, built.b[t.name]) for t in data.terms]
    post.attrs = group_attrs(sampler, **{k: v for k, v in post.attrs.items() if k != "created_at"} | {"seed": seed})
    groups: dict[str, xr.Dataset] = {"posterior": post, "sample_stats": stats}
    n = len(data.y)
    obs = np.arange(n)
    sample_coords = {"chain": post.coords["chain"], "draw": post.coords["draw"], "obs": obs}
    fam = data.family
    want_ll = log_likelihood if log_likelihood is not None else S * n <= _LOGLIK_AUTO_LIMIT
    from .families import ResponseFamily

    family_fit = isinstance(fam, ResponseFamily)
    need = want_ll or sample_posterior_predictive
    mu = _glmm_rows(data, beta, bs, link=not family_fit) if need else None
    name = built.response
    dp = family_draws(post, fam, built.dpars) if family_fit else None
    y = np.asarray(data.y, dtype=float)
    if want_ll:
        if family_fit:  # the family's own density, every constant included
            ll = _family_rows(mu, dp, lambda e, d: data.weights * fam.logpdf(y, e, d, data.weights))
        else:
            ll = fam.loglik(data.y[None, :], mu, data.weights[None, :])
        groups["log_likelihood"] = xr.Dataset({name: (("chain", "draw", "obs"), ll.reshape(n_chain, n_draw, n))},
                                              coords=sample_coords)
    groups["log_prior"] = _log_prior(post, built, data.terms)
    observed = xr.Dataset({name: (("obs",), _counts(data) if not family_fit else y)}, coords={"obs": obs})
    if family_fit and fam.name == "cumulative":
        # the categories 1..K as numbers; their labels, in order, as a coordinate (naming.CATEGORY_DIM)
        observed = observed.assign_coords({nm.CATEGORY_DIM: list(fam.levels)})
    groups["observed_data"] = observed
    groups["constant_data"] = constant_data(data.design, data.frame)
    if sample_posterior_predictive:
        if family_fit:
            yrep = _family_rows(mu, dp, lambda e, d: fam.rvs(e, d, data.weights, rng))
        else:
            yrep = _draw_counts(fam, mu, data.weights, rng)
        pp = xr.Dataset({name: (("chain", "draw", "obs"), yrep.reshape(n_chain, n_draw, n))}, coords=sample_coords)
        if family_fit and fam.name == "cumulative":
            pp = pp.assign_coords({nm.CATEGORY_DIM: list(fam.levels)})
        groups["posterior_predictive"] = pp
    if sample_prior:
        n_prior = 500 if sample_prior is True else int(sample_prior)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Potential.*")
            pri = pm.sample_prior_predictive(draws=n_prior, model=built.model, random_seed=seed)
        prior = _ds(pri["prior"])
        prior = prior.drop_vars([v for v in prior.data_vars if v in built.hidden or v.startswith("z_")
                                 or v.startswith("corr_chol_")])
        groups["prior"] = prior
        groups["prior_predictive"] = _ds(pri["prior_predictive"])
    for g, ds in groups.items():
        if g not in ("posterior", "sample_stats"):
            ds.attrs = group_attrs(sampler)
    idata = xr.DataTree.from_dict(groups)
    t1 = time.perf_counter()
    return Sampled(
        idata=idata,
        timings={"compile": t_compile, "sampling": t_sample, "postprocess": t1 - t0},
        sampler=sampler,
        backend=backend,
        seed=seed,
    )


def _draw_counts(fam, mu, weights, rng) -> np.ndarray:
    """Counts drawn from the family at μ: binomial successes in ``round(weights)`` trials, or Poisson counts."""
    if fam.name == "binomial":
        return rng.binomial(np.round(weights).astype(np.int64)[None, :], np.clip(mu, 0.0, 1.0)).astype(float)
    return rng.poisson(mu).astype(float)
