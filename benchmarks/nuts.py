"""NUTS efficiency: bayesmer's marginal engine, its full model and bambi, side by side.

Run from the repository root::

    .venv/bin/python benchmarks/nuts.py --write              # the small models
    .venv/bin/python benchmarks/nuts.py --insteval --write   # only the InstEval shape (slow)
    .venv/bin/python benchmarks/nuts.py --insteval --insteval-fit --merge --write  # its plain fit, to the end
    .venv/bin/python benchmarks/nuts.py --methods bambi2 --merge --write  # re-run some cells only
    .venv/bin/python benchmarks/nuts.py --render             # rewrite nuts.md from nuts.json
    .venv/bin/python benchmarks/nuts.py --quick --out /tmp/x # smoke test, tiny settings
    .venv/bin/python benchmarks/nuts.py --glmm --write       # cbpp and VerbAgg vs bambi and brms
    .venv/bin/python benchmarks/nuts.py --families --write   # negbinomial, cumulative, beta, student vs bambi, brms

Per model and method: bayesmer's compile and sampling seconds (``fit.timings``),
the whole ``fit`` call's wall time (data frame to fitted object, compile
included, imports excluded), the smallest bulk ESS over the hyperparameters
(fixed effects, random-effect SDs and correlations, residual SD: the rows of
``fit.summary()``; for bambi its fixed effects and its ``*_sigma`` terms), that
minimum per second of sampling and per second end to end, the largest R-hat
and the number of divergences. On the small models each cell is the faster
(by total time) of ``--repeats`` fits in this one process.

bambi cannot model the correlation of random intercepts and slopes: for
``(1 + x | g)`` it fits the uncorrelated model ``(x | g)``, so it has fewer
hyperparameters than bayesmer. It samples with PyMC's own NUTS (its default);
its compile time is inside its total.

bayesmer's default (``strategy="auto"``, the marginal model) runs nutpie on the
numba-compiled likelihood engine through a C pointer, chains in parallel;
``strategy="full"`` samples every random effect with PyTensor's C linker, one
Python call per gradient, chains sequential.

The InstEval shape (``--insteval``): ``benchmarks/reml.py``'s
``simulate_insteval()`` (73,421 rows; 2,972 x 1,128 x 14 levels). It times one
gradient of the engine's density (BLAS limited to one thread, as in
``bayesmer.fit``), then samples 4 chains x 300 draws (300 tune)
with the same compiled model ``bayesmer.fit`` uses (nutpie in the background,
so the run can be stopped after ``--insteval-timeout`` seconds and what it did
by then measured); if that run finishes in time it is repeated as a plain
``bayesmer.fit`` for the real figures (``--insteval-fit`` runs only that fit,
to the end, however long it takes). bambi is timed on a row subsample and
scaled to the full size (an extrapolation, labelled as such).

The binomial GLMMs (``--glmm``, written to ``nuts_glmm.md`` and ``nuts_glmm.json``): cbpp
(``cbind(incidence, size - incidence) ~ period + (1 | herd)``) and VerbAgg (``r2 ~ Anger + Gender + btype +
situ + (1 | id) + (1 | item)``), bayesmer against bambi (default and ``cores=2``) and brms (``Rscript
benchmarks/brms_glmm.R``, the whole process timed, Stan's compile included; ``cores=2``), the peers given
bayesmer's default priors (see :func:`peer_priors`); min bulk and tail ESS over the fixed effects and SDs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmer

# one-time imports outside every timed region, for all methods alike
import arviz_stats  # noqa: E402,F401
import bambi  # noqa: E402,F401
import nutpie  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OUT = ROOT / "benchmarks" / "results"

INSTEVAL_FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
BAMBI = "bambi"
BAMBI2 = "bambi, cores=2"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def big_data(n_groups=500, per_group=200, seed=2024) -> pd.DataFrame:
    """Random intercepts and slopes: 3 + 0.75 x, sds 1 and 0.5, corr 0.3, sigma 1."""
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal([0, 0], cov, size=n_groups)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    y = 3 + b[g, 0] + (0.75 + b[g, 1]) * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def models(extra: bool):
    """(name, bayesmer formula, bambi formula or None, data, methods, extra)."""
    out = [
        ("sleepstudy", "Reaction ~ 1 + Days + (1 + Days | Subject)", "Reaction ~ 1 + Days + (Days | Subject)",
         bayesmer.datasets.load("sleepstudy"), ["default"]),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1 + (1 | plate) + (1 | sample)",
         bayesmer.datasets.load("penicillin"), ["default", "full"]),
        ("subjitems", "y ~ x + (1 + x | subj) + (1 + x | item)", "y ~ x + (x | subj) + (x | item)",
         pd.read_csv(DATA / "subjitems.csv"), ["default", "full"]),
    ]
    if extra:
        out += [
            ("ogorek", "y ~ x + a + x*a + (1 + x | unit)", None, bayesmer.datasets.load("ogorek"),
             ["default", "full"]),
            ("sim100k", "y ~ x + (x | g)", None, big_data(), ["default", "full"]),
        ]
    return out


def run_bayesmer(formula, df, strategy, draws, tune, chains):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmer.fit(formula, df, draws=draws, tune=tune, chains=chains, seed=1, strategy=strategy,
                           progress=False)
    total = time.perf_counter() - t0
    s = fit.summary()  # the hyperparameters only: fixed, sd, corr, sigma
    stats = fit.idata["sample_stats"]
    return {
        "strategy_used": fit.strategy,
        "compile_s": fit.timings["compile"],
        "sampling_s": fit.timings["sampling"],
        "total_s": total,
        "min_ess_bulk": float(s["ess_bulk"].min()),
        "min_ess_at": " ".join(str(x) for x in s["ess_bulk"].idxmin() if x),
        "max_r_hat": float(s["r_hat"].max()),
        "divergences": int(stats["diverging"].sum()),
        "gradients": int(stats["n_steps"].sum()) if "n_steps" in stats else None,
        "n_hyper": int(len(s)),
    }


def run_bambi(formula, df, draws, tune, chains, cores=None):
    import arviz_stats as azs
    import bambi as bmb

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(formula, df)
        kw = {"cores": cores} if cores else {}  # PyMC's default: cpu_count() // 2 processes, 1 here
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, progressbar=False, **kw)
    total = time.perf_counter() - t0
    post = idata["posterior"].to_dataset()
    keep = [v for v in post.data_vars if "|" not in v or v.endswith("_sigma")]
    ess = azs.ess(post[keep], method="bulk")
    rhat = azs.rhat(post[keep])
    per_var = {v: float(ess[v].min()) for v in keep}
    stats = idata["sample_stats"]
    return {
        "strategy_used": "bambi",
        "compile_s": float("nan"),
        "sampling_s": float(idata["posterior"].attrs.get("sampling_time", float("nan"))),
        "total_s": total,
        "min_ess_bulk": min(per_var.values()),
        "min_ess_at": min(per_var, key=per_var.get),
        "max_r_hat": float(max(float(rhat[v].max()) for v in keep)),
        "divergences": int(stats["diverging"].sum()),
        "gradients": int(stats["n_steps"].sum()) if "n_steps" in stats else None,
        "n_hyper": int(sum(int(np.prod(post[v].shape[2:])) for v in keep)),
    }


def best(fn, n):
    runs = [fn() for _ in range(n)]
    return min(runs, key=lambda r: r["total_s"]) | {"repeats": n, "all_total_s": [r["total_s"] for r in runs]}


def small(args) -> dict:
    cfg = dict(draws=args.draws, tune=args.tune, chains=args.chains)
    load_before = _load()
    rows = []
    for name, formula, bformula, df, methods in models(args.extra):
        if args.models and name not in args.models.split(","):
            continue
        extra = name in ("ogorek", "sim100k")
        for method in methods:
            if args.methods and method not in args.methods.split(","):
                continue
            c = dict(cfg)
            if name == "sim100k" and method == "full":  # explicit b on 100,000 rows: a short run
                c = dict(draws=min(300, c["draws"]), tune=min(300, c["tune"]), chains=2)
            reps = 1 if extra else args.repeats
            strategy = "auto" if method == "default" else method
            print(f"{name}: bayesmer {method} {c} x{reps}  load {_load()}", file=sys.stderr, flush=True)
            load = _load()
            r = best(lambda: run_bayesmer(formula, df, strategy, **c), reps)
            rows.append({"model": name, "rows": len(df), "method": f"bayesmer {method}", **c, **r,
                         "load_at_start": load})
        for label, cores in ((BAMBI, None), (BAMBI2, 2)):
            key = "bambi" if cores is None else "bambi2"
            if not bformula or args.skip_bambi or (args.methods and key not in args.methods.split(",")):
                continue
            print(f"{name}: {label} {cfg} x{args.repeats}  load {_load()}", file=sys.stderr, flush=True)
            load = _load()
            r = best(lambda: run_bambi(bformula, df, cores=cores, **cfg), args.repeats)
            rows.append({"model": name, "rows": len(df), "method": label, "formula": bformula, **cfg, **r,
                         "load_at_start": load})
    for r in rows:
        r["ess_per_sampling_s"] = r["min_ess_bulk"] / r["sampling_s"]
        r["ess_per_total_s"] = r["min_ess_bulk"] / r["total_s"]
    return {"load_before": load_before, "load_after": _load(), "repeats": args.repeats, "rows": rows,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def merge_small(old: dict, new: dict) -> dict:
    """``new``'s rows replace ``old``'s of the same model and method; the runs' loads are all kept."""
    runs = old.get("runs") or [{k: old.get(k) for k in ("when", "load_before", "load_after")}]
    runs.append({k: new.get(k) for k in ("when", "load_before", "load_after")} |
                {"cells": [f"{r['model']}: {r['method']}" for r in new["rows"]]})
    key = lambda r: (r["model"], r["method"])  # noqa: E731
    fresh = {key(r): r for r in new["rows"]}
    rows = [fresh.pop(key(r), r) for r in old["rows"]]
    for r in fresh.values():  # new cells go after their model's others
        at = max((i for i, o in enumerate(rows) if o["model"] == r["model"]), default=len(rows) - 1)
        rows.insert(at + 1, r)
    return old | {"rows": rows, "runs": runs}


# -- InstEval -------------------------------------------------------------------------------------

def _simulate_insteval() -> pd.DataFrame:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from reml import simulate_insteval

    return simulate_insteval()


def _start_x(built) -> np.ndarray:
    """The unconstrained start vector, as ``bayesmer.sampling._compile_engine`` builds it."""
    from bayesmer import naming as nm
    from bayesmer.engine.nuts import initial_x

    init, terms = built.initial_point, list(built.sd)
    chols = []
    for t in terms:
        name = nm.corr_chol_var(t)
        chols.append(init[name] if name in init else np.eye(len(np.atleast_1d(init[built.sd[t]]))))
    return initial_x(built.density, float(init[built.sigma]), [init[built.sd[t]] for t in terms], chols,
                     None if built.density.integrate_beta else init[built.beta])


def insteval_fit(args) -> dict:
    """Only the plain ``bayesmer.fit`` on the InstEval shape, however long it takes."""
    df = _simulate_insteval()
    load_before = _load()
    started = time.strftime("%H:%M UTC", time.gmtime())
    print(f"insteval: bayesmer.fit {args.chains} x {args.insteval_draws} ({args.insteval_tune} tune); load "
          f"{load_before}", file=sys.stderr, flush=True)
    r = run_bayesmer(INSTEVAL_FORMULA, df, "auto", draws=args.insteval_draws, tune=args.insteval_tune,
                     chains=args.chains)
    r.update(draws=args.insteval_draws, tune=args.insteval_tune, chains=args.chains, load_before=load_before,
             load_after=_load(), started=started)
    print(f"insteval: bayesmer.fit {r}", file=sys.stderr, flush=True)
    return {"fit": r}


def insteval(args) -> dict:
    from bayesmer._threads import one_blas_thread
    from bayesmer.builder import build_model
    from bayesmer.design import build_design
    from bayesmer.priors import resolve_priors
    from bayesmer.lmer import fit_reml
    from bayesmer.sampling import _compile_engine

    load_before = _load()
    df = _simulate_insteval()
    out = {"rows": len(df), "formula": INSTEVAL_FORMULA, "load_before": load_before,
           "levels": {g: int(df[g].nunique()) for g in ("s", "d", "dept")}}
    draws, tune, chains = args.insteval_draws, args.insteval_tune, args.chains

    # 1. what bayesmer.fit does before sampling, and one gradient of the density
    t0 = time.perf_counter()
    design = build_design(INSTEVAL_FORMULA, df)
    t1 = time.perf_counter()
    reml = fit_reml(design)
    t2 = time.perf_counter()
    built = build_model(design, resolve_priors(design, None), strategy="auto", start=reml)
    t3 = time.perf_counter()
    compiled = _compile_engine(built)
    t4 = time.perf_counter()
    out.update(design_s=t1 - t0, reml_s=t2 - t1, build_s=t3 - t2, compile_s=t4 - t3, strategy=built.strategy)
    spec = built.density
    x = _start_x(built)  # the REML estimates, where the chains start
    times = []
    # bayesmer.fit samples with every BLAS limited to one thread (bayesmer._threads); so does this.
    # Without it, OpenBLAS's threads on nutpie's worker threads crashed the process here (SIGSEGV).
    with one_blas_thread():
        spec.logp(x)
        for i in range(args.insteval_grads):
            g0 = time.perf_counter()
            spec.logp(x + 0.001 * (i + 1))
            times.append(time.perf_counter() - g0)
    out["s_per_gradient"] = float(np.median(times))
    out["s_per_gradient_all"] = times
    print(f"insteval: design {t1 - t0:.1f} s, REML {t2 - t1:.1f} s, build {t3 - t2:.1f} s, "
          f"compile {t4 - t3:.2f} s; one logp+gradient {out['s_per_gradient']:.3f} s (median of {len(times)})",
          file=sys.stderr, flush=True)

    # 2. the sampling run, stoppable: nutpie in the background on the compiled engine model
    print(f"insteval: {chains} chains x {draws} draws ({tune} tune), at most {args.insteval_timeout} s; "
          f"load {_load()}", file=sys.stderr, flush=True)
    out["load_at_sampling"] = _load()
    blas = one_blas_thread()
    blas.__enter__()
    s0 = time.perf_counter()
    bg = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=1, progress_bar=False,
                       save_warmup=True, target_accept=0.8, blocking=False)
    def done():
        try:  # nutpie 0.16 raises TimeoutError here while the chains still run
            return bool(bg.is_finished)
        except TimeoutError:
            return False

    while not done() and time.perf_counter() - s0 < args.insteval_timeout:
        time.sleep(0.5)
    finished = done()
    elapsed = time.perf_counter() - s0
    trace = bg.wait() if finished else bg.abort()
    blas.__exit__(None, None, None)
    out.update(pilot_finished=finished, pilot_elapsed_s=elapsed, draws=draws, tune=tune, chains=chains)
    done_tune = done_draws = grads = 0
    per_chain = []
    for grp in ("warmup_sample_stats", "sample_stats"):
        if grp in trace.children:
            st = trace[grp]
            steps = st["n_steps"].values  # chain x draw, NaN/0 where not drawn yet
            valid = np.isfinite(steps) & (steps > 0)
            n = int(valid.sum())
            grads += int(np.nansum(np.where(valid, steps, 0)))
            per_chain.append(valid.sum(axis=1).tolist())
            if grp == "warmup_sample_stats":
                done_tune = n
            else:
                done_draws = n
    out.update(pilot_tune_iters=done_tune, pilot_draw_iters=done_draws, pilot_gradients=grads,
               pilot_iters_per_chain=per_chain)
    if grads:
        cores = min(chains, os.cpu_count() or 1)
        out["pilot_s_per_gradient_in_sampler"] = elapsed * cores / grads
        iters = done_tune + done_draws
        out["pilot_gradients_per_iter"] = grads / max(iters, 1)
        # time for the whole run if the rest costs what the part run so far cost per iteration
        out["extrapolated_total_sampling_s"] = elapsed * chains * (tune + draws) / max(iters, 1)
    print(f"insteval: finished={finished} in {elapsed:.0f} s; {done_tune} tune + {done_draws} draw iterations "
          f"over all chains, {grads} gradients", file=sys.stderr, flush=True)

    # 3. if it can finish, the real thing: one plain bayesmer.fit
    if finished:
        r = run_bayesmer(INSTEVAL_FORMULA, df, "auto", draws=draws, tune=tune, chains=chains)
        out["fit"] = r
        print(f"insteval: bayesmer.fit {r}", file=sys.stderr, flush=True)

    # 4. bambi on a subsample, scaled to the full size (an extrapolation)
    if not args.skip_bambi:
        n_sub = args.insteval_bambi_rows
        sub = df.sample(n=n_sub, random_state=1).reset_index(drop=True)
        bcfg = dict(draws=200, tune=200, chains=2)
        print(f"insteval: bambi on {n_sub} rows {bcfg}; load {_load()}", file=sys.stderr, flush=True)
        r = run_bambi(INSTEVAL_FORMULA, sub, **bcfg)
        r["rows"] = n_sub
        r["levels"] = {g: int(sub[g].nunique()) for g in ("s", "d", "dept")}
        r.update(bcfg)
        scale = len(df) / n_sub
        r["extrapolated_sampling_s_full"] = r["sampling_s"] * scale
        r["extrapolated_ess_per_sampling_s_full"] = r["min_ess_bulk"] / r["sampling_s"] / scale
        out["bambi_subsample"] = r
        print(f"insteval: bambi {r}", file=sys.stderr, flush=True)
    out["load_after"] = _load()
    return out


# -- GLMMs: cbpp and VerbAgg against bambi and brms (--glmm) ------------------------------------

BRMS = "brms, cores=2"
BRMS_R = ROOT / "benchmarks" / "brms_glmm.R"


def glmm_models():
    """Per model: the data, each tool's formula and family, and how bayesmer's columns map to bambi's terms."""
    cbpp = pd.read_csv(DATA / "glmer_cbpp.csv", dtype={"herd": str, "period": str})
    verb = pd.read_csv(DATA / "glmer_verbagg.csv", dtype={"id": str})
    verb["r2y"] = (verb["r2"] == "Y").astype(int)  # bambi's bernoulli response
    return [
        dict(name="cbpp", data=cbpp, csv="glmer_cbpp.csv",
             formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
             bambi_formula="p(incidence, size) ~ period + (1|herd)", bambi_family="binomial",
             bambi_terms={"period": ["period2", "period3", "period4"]},
             brms_formula="incidence | trials(size) ~ period + (1 | herd)", brms_family="binomial",
             col_classes={"herd": "character", "period": "character"}, yes_col=None),
        dict(name="verbagg", data=verb, csv="glmer_verbagg.csv",
             formula="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
             bambi_formula="r2y ~ Anger + Gender + btype + situ + (1|id) + (1|item)", bambi_family="bernoulli",
             bambi_terms={"Anger": ["Anger"], "Gender": ["GenderM"], "btype": ["btypescold", "btypeshout"],
                          "situ": ["situself"]},
             brms_formula="r2 | trials(1) ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
             brms_family="binomial",
             col_classes={"id": "character", "item": "character", "Gender": "character", "btype": "character",
                          "situ": "character", "r2": "character"}, yes_col="r2"),
    ]


def peer_priors(m) -> dict:
    """bayesmer's default priors, spelled for the peers.

    Slopes and SDs as bayesmer's. The intercept: bambi and brms centre the predictors and put the
    intercept's prior on the intercept at the predictors' means; bayesmer's is on the intercept at x = 0,
    ``Normal(g(ybar), sqrt(2.5^2 + sum_j (2.5 mean(x_j) / sd(x_j))^2))``, the spread that
    ``Normal(g(ybar), 2.5)`` on the centred intercept implies under the slopes' priors; so the peers get
    ``Normal(g(ybar), 2.5)`` on theirs.
    """
    ps = bayesmer.default_priors(m["formula"], m["data"], family="binomial")
    fixed = dict(ps.fixed)
    icpt = fixed.pop("(Intercept)")
    sds = {g: dict(cols)["(Intercept)"].beta for g, cols in ps.sd}
    return {"intercept": (float(icpt.mu), 2.5), "bayesmer_intercept": (float(icpt.mu), float(icpt.sigma)),
            "b": {k: float(v.sigma) for k, v in fixed.items()}, "sd": sds, "bayesmer": str(ps)}


def _min_at(d: dict) -> tuple[float, str]:
    k = min(d, key=d.get)
    return float(d[k]), k


def run_bayesmer_glmm(m, draws, tune, chains):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmer.fit(m["formula"], m["data"], family="binomial", draws=draws, tune=tune, chains=chains,
                           seed=1, progress=False)
    total = time.perf_counter() - t0
    s = fit.summary()  # beta, sd_*, corr_*: the hyperparameters and fixed effects
    name = lambda i: " ".join(str(x) for x in i if x)
    eb, at_b = _min_at({name(i): v for i, v in s["ess_bulk"].items()})
    et, at_t = _min_at({name(i): v for i, v in s["ess_tail"].items()})
    stats = fit.idata["sample_stats"]
    return {"strategy_used": fit.strategy, "compile_s": fit.timings["compile"], "sampling_s": fit.timings["sampling"],
            "total_s": total, "min_ess_bulk": eb, "min_ess_bulk_at": at_b, "min_ess_tail": et, "min_ess_tail_at": at_t,
            "max_r_hat": float(s["r_hat"].max()), "divergences": int(stats["diverging"].sum()), "n_hyper": len(s)}


def run_bambi_glmm(m, pri, draws, tune, chains, cores=None):
    import arviz_stats as azs
    import bambi as bmb

    priors = {"Intercept": bmb.Prior("Normal", mu=pri["intercept"][0], sigma=pri["intercept"][1])}
    for term, cols in m["bambi_terms"].items():
        sig = [pri["b"][c] for c in cols]
        priors[term] = bmb.Prior("Normal", mu=0.0, sigma=sig[0] if len(sig) == 1 else np.array(sig))
    for g, beta in pri["sd"].items():
        priors[f"1|{g}"] = bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfCauchy", beta=beta))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(m["bambi_formula"], m["data"], family=m["bambi_family"], priors=priors)
        kw = {"cores": cores} if cores else {}
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, progressbar=False, **kw)
    total = time.perf_counter() - t0
    post = idata["posterior"].to_dataset()
    keep = [v for v in post.data_vars if "|" not in v or v.endswith("_sigma")]
    keep = [v for v in keep if not v.endswith("_mean") and v not in ("p", "mu")]
    out = {"strategy_used": "bambi", "compile_s": float("nan"),
           "sampling_s": float(idata["posterior"].attrs.get("sampling_time", float("nan"))), "total_s": total}
    for method in ("bulk", "tail"):
        ess = azs.ess(post[keep], method=method)
        v, at = _min_at({k: float(ess[k].min()) for k in keep})
        out[f"min_ess_{method}"], out[f"min_ess_{method}_at"] = v, at
    rhat = azs.rhat(post[keep])
    out.update(max_r_hat=float(max(float(rhat[v].max()) for v in keep)),
               divergences=int(idata["sample_stats"]["diverging"].sum()),
               n_hyper=int(sum(int(np.prod(post[v].shape[2:])) for v in keep)), variables=keep)
    return out


def run_brms_glmm(m, pri, draws, tune, chains, cores, timeout):
    import subprocess
    import tempfile

    priors = [{"prior": f"normal({pri['intercept'][0]!r}, {pri['intercept'][1]!r})", "class": "Intercept"}]
    priors += [{"prior": f"normal(0, {s!r})", "class": "b", "coef": c} for c, s in pri["b"].items()]
    priors += [{"prior": f"cauchy(0, {b!r})", "class": "sd", "group": g} for g, b in pri["sd"].items()]
    spec = {"csv": str(DATA / m["csv"]), "col_classes": m["col_classes"], "formula": m["brms_formula"],
            "family": m["brms_family"], "yes_col": m["yes_col"], "priors": priors, "chains": chains,
            "iter": tune + draws, "warmup": tune, "cores": cores, "seed": 1}
    with tempfile.TemporaryDirectory() as tmp:
        sp, op = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        sp.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(["Rscript", str(BRMS_R), str(sp), str(op)], cwd=ROOT, capture_output=True, check=False,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"failed": f"stopped after {timeout:.0f} s (timeout)", "total_s": time.perf_counter() - t0}
        total = time.perf_counter() - t0
        if proc.returncode != 0 or not op.exists():
            return {"failed": (proc.stderr or proc.stdout)[-2000:], "total_s": total}
        r = json.loads(op.read_text())
    chain_s = r["chain_s"]
    return {"strategy_used": "brms (rstan)", "compile_s": float("nan"),
            # Stan's chain seconds over the 2 workers; Stan 2.21 times chains with clock(), CPU time
            "sampling_s": sum(chain_s) / min(cores, chains),
            "total_s": total, "brm_s": r["brm_s"], "r_load_s": r["load_s"], "chain_s": chain_s,
            "min_ess_bulk": r["min_ess_bulk"], "min_ess_bulk_at": r["min_ess_bulk_at"],
            "min_ess_tail": r["min_ess_tail"], "min_ess_tail_at": r["min_ess_tail_at"],
            "max_r_hat": r["max_r_hat"], "divergences": int(r["divergences"]), "n_hyper": r["n_hyper"],
            "variables": r["variables"], "prior": r["prior"], "versions": r["versions"]}


# -- response families (issue 17, --families): bayesmer vs bambi (cores=2) vs brms ----------------

FAMILIES = ("negbinomial", "cumulative", "beta", "student")
BAMBI_FAMILY = {"negbinomial": "negativebinomial", "cumulative": "cumulative", "beta": "beta", "student": "t"}
# brms's (and bayesmer's) name of a family parameter -> bambi's
BAMBI_DPAR = {"shape": "alpha", "phi": "kappa", "sigma": "sigma", "nu": "nu"}


def family_models():
    """Per family: the data, formula and priors of its brms reference (tests/data/brms_family_<family>.json)."""
    out = []
    for fam in FAMILIES:
        ref = json.loads((DATA / f"brms_family_{fam}.json").read_text())
        if fam == "negbinomial":
            d = pd.read_csv(DATA / ref["data"], dtype={"Trt": str, "patient": str, "visit": str})
        elif fam == "cumulative":
            d = pd.read_csv(DATA / ref["data"], dtype={"judge": str, "bottle": str})
            d["rating"] = pd.Categorical(d["rating"], categories=[1, 2, 3, 4, 5], ordered=True)
        else:
            d = pd.read_csv(DATA / ref["data"], dtype={"g": str})
        out.append(dict(name=fam, data=d, formula=ref["formula"], ref=ref,
                        priors={("fixed" if k == "b" else k): v for k, v in ref["priors"].items()}))
    return out


def _family_draws(fit, key) -> np.ndarray:
    """(chain, draw) draws of a reference parameter ([kind, group, name]) from a bayesmer fit."""
    kind, group, name = key
    post = fit.idata["posterior"]
    if kind == "fixed":
        x = post["beta"].sel(fixed=name)
    elif kind == "sd":
        x = post[f"sd_{group}"].sel({f"{group}_term": name})
    elif name in post:
        x = post[name]
    else:
        k = int(name[name.index("[") + 1:-1])
        x = post["Intercept"]
        x = x.isel({x.dims[-1]: k - 1})
    return np.asarray(x.to_numpy(), dtype=float)


def run_bayesmer_family(m, draws, tune, chains):
    import arviz_stats as azs

    priors, note = dict(m["priors"]), None
    # famkernel's resolve_priors refuses a 'sigma' key where sigma is a family parameter (student); there its
    # default is the stated prior, HalfStudentT(3, 2.5): checked below, and then left to the default
    dp = dict(bayesmer.default_priors(m["formula"], m["data"], family=m["name"]).dpars)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = bayesmer.fit(m["formula"], m["data"], family=m["name"], priors=priors, draws=draws, tune=tune,
                               chains=chains, seed=1, progress=False)
        except bayesmer.priors.PriorError as exc:
            if "sigma" not in priors or "'sigma' takes no prior" not in str(exc) or str(dp.get("sigma")) != \
                    "HalfStudentT(3, 2.5)":
                raise
            priors.pop("sigma")
            note = f"sigma's prior left to bayesmer's default {dp['sigma']} (the stated one): {exc}"
            t0 = time.perf_counter()
            fit = bayesmer.fit(m["formula"], m["data"], family=m["name"], priors=priors, draws=draws, tune=tune,
                               chains=chains, seed=1, progress=False)
    total = time.perf_counter() - t0
    ess, rhat = {}, {}
    for r in m["ref"]["summary"]:  # the parameters of brms's reference: fixed effects, SDs, family parameters
        a = _family_draws(fit, r["bayesmer"])
        ess[r["variable"]] = {"bulk": float(azs.ess(a, method="bulk")),
                              "tail": float(azs.ess(a, method="tail", prob=(0.05, 0.95)))}
        rhat[r["variable"]] = float(azs.rhat(a))
    eb, at_b = _min_at({k: v["bulk"] for k, v in ess.items()})
    et, at_t = _min_at({k: v["tail"] for k, v in ess.items()})
    stats = fit.idata["sample_stats"]
    return {"strategy_used": fit.strategy, "compile_s": fit.timings.get("compile", float("nan")),
            "sampling_s": fit.timings["sampling"], "total_s": total, "min_ess_bulk": eb, "min_ess_bulk_at": at_b,
            "min_ess_tail": et, "min_ess_tail_at": at_t, "max_r_hat": max(rhat.values()),
            "divergences": int(stats["diverging"].sum()), "n_hyper": len(ess), "note": note}


def _bambi_priors(m):
    import bambi as bmb
    import pymc as pm

    def parse(text):
        f, a = text.split("(", 1)
        return f, [float(v) for v in a.rstrip(")").split(",")]

    p = m["ref"]["priors"]
    _, (mu, sigma) = parse(p["b"])
    pri = {"common": bmb.Prior("Normal", mu=mu, sigma=sigma)}
    if m["name"] != "cumulative":
        pri["Intercept"] = bmb.Prior("Normal", mu=mu, sigma=sigma)
    nu, _, s = parse(p["sd"])[1]
    group = m["formula"].split("|")[1].strip(" )")
    pri[f"1|{group}"] = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfStudentT", nu=nu, sigma=s))
    for cls, text in p.items():
        if cls in BAMBI_DPAR:
            f, a = parse(text)
            pri[BAMBI_DPAR[cls]] = (bmb.Prior("Gamma", alpha=a[0], beta=a[1]) if f == "gamma"
                                    else bmb.Prior("HalfStudentT", nu=a[0], sigma=a[2]))
        if cls == "Intercept":  # the thresholds: ordered, each student_t(3, 0, 2.5)
            k = len(m["data"][m["formula"].split("~")[0].strip()].cat.categories) - 1
            f, a = parse(text)
            pri["threshold"] = bmb.Prior("StudentT", nu=a[0], mu=a[1], sigma=a[2],
                                         transform=pm.distributions.transforms.ordered,
                                         initval=np.linspace(-2, 2, k))
    return pri


def run_bambi_family(m, draws, tune, chains, cores=2):
    import arviz_stats as azs
    import bambi as bmb

    formula = m["formula"].replace("(1 | ", "(1|")  # bambi drops the intercept of an ordinal family itself
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(formula, m["data"], family=BAMBI_FAMILY[m["name"]], priors=_bambi_priors(m),
                          center_predictors=False)
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, progressbar=False, cores=cores)
    total = time.perf_counter() - t0
    post = idata["posterior"].to_dataset()
    keep = [v for v in post.data_vars if "|" not in v or v.endswith("_sigma")]
    keep = [v for v in keep if not v.endswith("_mean") and v not in ("p", "mu")]
    out = {"strategy_used": "bambi", "compile_s": float("nan"), "formula": formula,
           "sampling_s": float(idata["posterior"].attrs.get("sampling_time", float("nan"))), "total_s": total}
    for method in ("bulk", "tail"):
        ess = azs.ess(post[keep], method=method)
        v, at = _min_at({k: float(ess[k].min()) for k in keep})
        out[f"min_ess_{method}"], out[f"min_ess_{method}_at"] = v, at
    rhat = azs.rhat(post[keep])
    out.update(max_r_hat=float(max(float(rhat[v].max()) for v in keep)),
               divergences=int(idata["sample_stats"]["diverging"].sum()),
               n_hyper=int(sum(int(np.prod(post[v].shape[2:])) for v in keep)), variables=keep)
    return out


def brms_family_row(m) -> dict:
    """brms's figures from its reference run (tests/data/make_family_brms_refs.R): 4 chains x 2,500 draws
    (1,000 warm-up), cores = 1 (chains one after another), Stan's compile included in the total."""
    ref = m["ref"]
    s = ref["summary"]
    eb = min(s, key=lambda r: r["ess_bulk"])
    et = min(s, key=lambda r: r["ess_tail"])
    sec = ref["seconds"]
    return {"method": "brms (reference run, cores=1)", "strategy_used": "brms (rstan)",
            "draws": ref["draws_per_chain"], "tune": ref["warmup"], "chains": ref["chains"],
            "compile_s": sec["total_with_compile"] - sec["warmup_and_sampling"],
            "sampling_s": sec["warmup_and_sampling"], "total_s": sec["total_with_compile"],
            "min_ess_bulk": eb["ess_bulk"], "min_ess_bulk_at": eb["variable"], "min_ess_tail": et["ess_tail"],
            "min_ess_tail_at": et["variable"], "max_r_hat": max(r["rhat"] for r in s),
            "divergences": ref["divergences"], "n_hyper": len(s), "load_at_start": ref["load"],
            "adapt_delta": ref["adapt_delta"]}


def families(args) -> dict:
    cfg = dict(draws=args.draws, tune=args.tune, chains=args.chains)
    out = {"commit": _git("rev-parse", "--short", "HEAD").strip(), "uptime_before": _uptime(),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "config": cfg,
           "bayesmer_repeats": args.repeats, "rows": []}
    methods = args.methods.split(",") if args.methods else ["bayesmer", "bambi2", "brms"]
    for m in family_models():
        if args.models and m["name"] not in args.models.split(","):
            continue
        base = {"model": m["name"], "rows": len(m["data"]), "formula": m["formula"], **cfg}
        if "bayesmer" in methods:
            print(f"{m['name']}: bayesmer {cfg} x{args.repeats}; {_uptime()}", file=sys.stderr, flush=True)
            load = _load()
            runs = [run_bayesmer_family(m, **cfg) for _ in range(args.repeats)]
            r = min(runs, key=lambda x: x["total_s"]) | {"all_total_s": [x["total_s"] for x in runs]}
            out["rows"].append(base | {"method": "bayesmer", "load_at_start": load, "load_at_end": _load()} | r)
            print(f"  {out['rows'][-1]}", file=sys.stderr, flush=True)
        if "bambi2" in methods and not args.skip_bambi:
            print(f"{m['name']}: {BAMBI2} {cfg}; {_uptime()}", file=sys.stderr, flush=True)
            load = _load()
            try:
                r = run_bambi_family(m, cores=2, **cfg)
            except Exception as e:  # noqa: BLE001 - a peer's failure is a result
                r = {"failed": f"{type(e).__name__}: {e}"[:500]}
            out["rows"].append(base | {"method": BAMBI2, "family": BAMBI_FAMILY[m["name"]], "load_at_start": load,
                                       "load_at_end": _load()} | r)
            print(f"  {out['rows'][-1]}", file=sys.stderr, flush=True)
        if "brms" in methods:
            out["rows"].append(base | brms_family_row(m))
            speed = OUT / "brms_families_speed.json"  # Rscript benchmarks/brms_families.R, run just before
            if speed.exists():
                sp = json.loads(speed.read_text())
                r = sp["rows"].get(m["name"])
                if r:
                    out["rows"].append(base | {
                        "method": "brms, cores=2", "strategy_used": "brms (rstan)", "draws": sp["draws"],
                        "tune": sp["warmup"], "chains": sp["chains"], "sampling_s": r["sampling_s_over_2_workers"],
                        "total_s": r["total_s"], "min_ess_bulk": r["min_ess_bulk"],
                        "min_ess_bulk_at": r["min_ess_bulk_at"], "min_ess_tail": r["min_ess_tail"],
                        "min_ess_tail_at": r["min_ess_tail_at"], "max_r_hat": r["max_r_hat"],
                        "divergences": int(r["divergences"]), "load_at_start": r["load_at_start"],
                        "load_at_end": r["load_at_end"], "when": sp["when"],
                        "note": f"Rscript benchmarks/brms_families.R at {sp['when']} (just before this run); sampling "
                                "seconds: Stan's chain seconds summed over the 2 workers / 2; total: the brm() call, "
                                "compile included"})
    for r in out["rows"]:
        if "failed" not in r:
            r["ess_per_sampling_s"] = min(r["min_ess_bulk"], r["min_ess_tail"]) / r["sampling_s"]
            r["ess_per_total_s"] = min(r["min_ess_bulk"], r["min_ess_tail"]) / r["total_s"]
    out["uptime_after"] = _uptime()
    return out


def write_families_md(res: dict, env: dict, path: Path) -> None:
    cfg = res["config"]
    md = ["# NUTS benchmark, response families: bayesmer vs bambi (cores=2) vs brms "
          "(`benchmarks/nuts.py --families`)",
          "",
          f"Run {res['when']} (commit {res['commit']}), one process, families and tools one after another. "
          f"Machine: {env['cpus']} CPUs, shared with other jobs: `uptime` before: `{res['uptime_before']}`; after: "
          f"`{res['uptime_after']}`. Each row states the 1-minute load average at its start (and end).",
          "",
          f"Models, data and priors: those of the brms references (`tests/data/brms_family_<family>.json`, "
          f"every prior stated; bambi given the same ones, `center_predictors=False`, Student's nu without brms's "
          f"nu >= 1 bound). bayesmer and bambi: {cfg['chains']} chains x {cfg['draws']} draws ({cfg['tune']} tune); "
          f"bayesmer best of {res['bayesmer_repeats']} fits in this process (compile caches warm). brms: the "
          "reference run of `tests/data/make_family_brms_refs.R` (4 chains x 2,500 draws, 1,000 warm-up, cores=1: "
          "chains one after another, so its sampling seconds are the sum over chains; Stan's compile is in the "
          "total), not re-run here: its load is the one recorded then.",
          "",
          "Min ESS: the smallest bulk or tail ESS over the fixed effects, the group SD and the family's "
          "parameters (thresholds included). ESS/s: that minimum per second of sampling (warm-up included) and "
          "per second end to end (data frame to fitted object; compile included).",
          "",
          "| family | rows | method | draws | min ESS bulk (at) | min ESS tail | sampling s | total s | "
          "ESS/s sampling | ESS/s total | max R-hat | div. | load |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "failed" in r:
            md.append(f"| {r['model']} | {r['rows']} | {r['method']} | | failed: {r['failed'][:120]} | | | | | | | | "
                      f"{r.get('load_at_start')} |")
            continue
        load = r.get("load_at_start")
        load = load[0] if isinstance(load, list) else load
        md.append(f"| {r['model']} | {r['rows']} | {r['method']} | {r['chains']} x {r['draws']} | "
                  f"{r['min_ess_bulk']:.0f} ({r['min_ess_bulk_at']}) | {r['min_ess_tail']:.0f} | "
                  f"{r['sampling_s']:.1f} | {r['total_s']:.1f} | {r['ess_per_sampling_s']:.1f} | "
                  f"{r['ess_per_total_s']:.1f} | {r['max_r_hat']:.3f} | {r['divergences']} | {load} |")
    notes = [f"- {r['model']}, {r['method']}: {r['note']}" for r in res["rows"] if r.get("note")]
    if notes:
        md += ["", "Notes:", ""] + notes
    md += ["", "Ratios (bayesmer / peer, min ESS per second; issue 17's goals: at least bambi's, 10x brms end to end; "
           "issue 19's: 2x bambi):", ""]
    for fam in FAMILIES:
        rows = {r["method"]: r for r in res["rows"] if r["model"] == fam and "failed" not in r}
        b = rows.get("bayesmer")
        if not b:
            continue
        parts = []
        if BAMBI2 in rows:
            p = rows[BAMBI2]
            parts.append(f"{b['ess_per_sampling_s'] / p['ess_per_sampling_s']:.1f}x bambi (cores=2) per sampling "
                         f"second, {b['ess_per_total_s'] / p['ess_per_total_s']:.1f}x end to end")
        brms_rows = [r for k, r in rows.items() if k.startswith("brms")]
        if brms_rows:
            p = rows.get("brms, cores=2", brms_rows[0])
            parts.append(f"{b['ess_per_sampling_s'] / p['ess_per_sampling_s']:.1f}x {p['method']} per sampling second, "
                         f"{b['ess_per_total_s'] / p['ess_per_total_s']:.1f}x end to end")
        md.append(f"- {fam}: " + "; ".join(parts) + ".")
    path.write_text("\n".join(md) + "\n")


def _git(*a) -> str:
    import subprocess

    return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False).stdout


def _src_hash() -> str:
    """A hash of src/ as it is on disk (others may edit it while this runs)."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted((ROOT / "src").rglob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode() + f.read_bytes())
    return h.hexdigest()[:12]


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def glmm(args) -> dict:
    import hashlib

    cfg = dict(draws=args.draws, tune=args.tune, chains=args.chains)
    src_diff = _git("diff", "HEAD", "--", "src")
    src_disk = _src_hash()
    out = {"commit": _git("rev-parse", "--short", "HEAD").strip(), "uptime_before": _uptime(),
           "src_uncommitted_sha1": hashlib.sha1(src_diff.encode()).hexdigest()[:12] if src_diff else None,
           "src_uncommitted_files": _git("diff", "HEAD", "--stat", "--", "src").strip().splitlines()[-1:] if src_diff
           else [], "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "config": cfg,
           "bayesmer_repeats": args.repeats, "rows": [], "priors": {}}
    for m in glmm_models():
        if args.models and m["name"] not in args.models.split(","):
            continue
        pri = peer_priors(m)
        out["priors"][m["name"]] = {k: v for k, v in pri.items()}
        base = {"model": m["name"], "rows": len(m["data"]), **cfg}
        methods = args.methods.split(",") if args.methods else ["bayesmer", "bambi", "bambi2", "brms"]
        if "bayesmer" in methods:
            print(f"{m['name']}: bayesmer {cfg} x{args.repeats}; {_uptime()}", file=sys.stderr, flush=True)
            load = _load()
            runs = [run_bayesmer_glmm(m, **cfg) for _ in range(args.repeats)]
            r = min(runs, key=lambda x: x["total_s"]) | {"all_total_s": [x["total_s"] for x in runs],
                                                          "first_total_s": runs[0]["total_s"]}
            out["rows"].append(base | {"method": "bayesmer", "formula": m["formula"], "load_at_start": load} | r)
            print(f"  {r}", file=sys.stderr, flush=True)
        for label, key, cores in ((BAMBI, "bambi", None), (BAMBI2, "bambi2", 2)):
            if key not in methods or args.skip_bambi:
                continue
            print(f"{m['name']}: {label} {cfg}; {_uptime()}", file=sys.stderr, flush=True)
            load = _load()
            r = run_bambi_glmm(m, pri, cores=cores, **cfg)
            out["rows"].append(base | {"method": label, "formula": m["bambi_formula"], "family": m["bambi_family"],
                                       "load_at_start": load} | r)
            print(f"  {r}", file=sys.stderr, flush=True)
        if "brms" in methods:
            c = dict(cfg)
            if m["name"] == "verbagg" and args.brms_verbagg_draws:
                c.update(draws=args.brms_verbagg_draws, tune=args.brms_verbagg_draws)
            print(f"{m['name']}: {BRMS} {c}; {_uptime()}", file=sys.stderr, flush=True)
            load = _load()
            r = run_brms_glmm(m, pri, cores=2, timeout=args.brms_timeout, **c)
            out["rows"].append(base | c | {"method": BRMS, "formula": m["brms_formula"], "family": m["brms_family"],
                                           "load_at_start": load} | r)
            print(f"  {r}", file=sys.stderr, flush=True)
    for r in out["rows"]:
        if "failed" not in r:
            r["ess_per_total_s"] = min(r["min_ess_bulk"], r["min_ess_tail"]) / r["total_s"]
            r["ess_per_sampling_s"] = min(r["min_ess_bulk"], r["min_ess_tail"]) / r["sampling_s"]
    if args.brms_verbagg_draws:
        out["notes"] = [f"- brms on VerbAgg ran {args.chains} chains x {args.brms_verbagg_draws} draws "
                        f"({args.brms_verbagg_draws} warm-up) instead of {args.draws} ({args.tune}): {args.note}"]
    out["uptime_after"] = _uptime()
    out["src_changed_during_run"] = _src_hash() != src_disk
    out["commit_after"] = _git("rev-parse", "--short", "HEAD").strip()
    return out


def write_glmm_md(res: dict, env: dict, path: Path) -> None:
    cfg = res["config"]
    brms_v = next((r["versions"] for r in res["rows"] if r.get("versions")), None)
    md = [
        "# NUTS benchmark, binomial GLMMs: bayesmer vs bambi vs brms (`benchmarks/nuts.py --glmm`)",
        "",
        f"Run {res['when']}, one process, models and tools one after another. Machine: {env['cpus']} CPUs "
        f"({env['machine']}), shared with other jobs: `uptime` before: `{res['uptime_before']}`; after: "
        f"`{res['uptime_after']}`. The load average at each cell's start is in the table.",
        f"Code: HEAD {res['commit']}"
        + (f" plus the working tree's uncommitted changes to src/ (others' work in progress; "
           f"`git diff HEAD -- src` sha1 {res['src_uncommitted_sha1']}: {res['src_uncommitted_files'][0]})"
           if res.get("src_uncommitted_sha1") else "")
        + (". src/ changed on disk during the run (others were editing it); bayesmer's modules were imported at "
           "the start, so the run used the state at its start." if res.get("src_changed_during_run") else ".")
        + (f" HEAD at the end: {res['commit_after']}." if res.get("commit_after") != res["commit"] else ""),
        f"Versions: bayesmer {env['bayesmer']}, nutpie {env['nutpie']}, numba {env['numba']}, PyMC {env['pymc']}, "
        f"bambi {env['bambi']}, Python {env['python']}"
        + (f"; brms {brms_v['brms']}, rstan {brms_v['rstan']}, {brms_v['R']}" if brms_v else "") + ".",
    ] + res.get("header_notes", []) + [
        "",
        "What each column is:",
        "",
        f"- All tools: {cfg['chains']} chains x {cfg['draws']} draws after {cfg['tune']} tuning/warm-up iterations "
        "(unless the row says otherwise), seed 1, each tool's default NUTS settings (target acceptance 0.8).",
        f"- total s: end to end. bayesmer: the whole `bayesmer.fit(formula, df, family=\"binomial\")` call (design, "
        "Laplace start, model set-up, sampling, post-processing; no compile per data set; imports excluded); "
        f"the faster of {res['bayesmer_repeats']} fits in this process, the first one's time beside it. "
        "bambi: `bmb.Model(...)` plus `.fit(...)` (PyMC compile included, imports excluded), one fit. "
        "brms: the whole `Rscript` process (R start, library loading, Stan's C++ compile, sampling, summary), "
        "one run; the `brm()` call alone is given in the notes.",
        "- sampling s: bayesmer's `fit.timings['sampling']` (nutpie, chains in parallel threads); bambi's "
        "`sampling_time` (PyMC); brms: Stan's per-chain warm-up + sampling seconds summed over the chains, "
        "divided by 2 (its 2 worker processes); Stan 2.21 (rstan's) measures these with `clock()`, CPU time, "
        "so on a loaded machine this is below the sampling's wall time (the `brm()` call's wall time, "
        "compile included, is in the notes).",
        "- min ESS bulk / tail: the smallest bulk and tail ESS over the fixed effects and the random-effect SDs "
        "(bayesmer: `fit.summary()`, i.e. beta, sd_*, corr_*; bambi: its common terms and `*_sigma`; brms: "
        "`b_*`, `sd_*`, `cor_*` by `posterior::summarise_draws`). ESS / s: the smaller of the two minima "
        "per second (total or sampling). max R-hat over the same variables.",
        "- bambi (PyMC's NUTS): PyMC's default runs the chains in `cpu_count() // 2` = 1 process here (sequential); "
        "'bambi, cores=2' passes `cores=2`. brms: `cores=2` (rstan, 2 processes).",
        "",
        "| model | rows | tool | chains x draws (tune) | total s | sampling s | min ESS bulk (at) | min ESS tail (at) "
        "| min ESS / total s | min ESS / sampling s | max R-hat | divergences | load at start |",
        "|---|---:|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if "failed" in r:
            md.append(f"| {r['model']} | {r['rows']} | {r['method']} | {r['chains']} x {r['draws']} ({r['tune']}) | "
                      f"{r['total_s']:.1f} | FAILED | - | - | - | - | - | - | {r['load_at_start'][0]} |")
            continue
        tot = f"{r['total_s']:.2f}"
        if r["method"] == "bayesmer" and len(r.get("all_total_s", [])) > 1:
            tot += f" (first {r['first_total_s']:.2f})"
        md.append(
            f"| {r['model']} | {r['rows']} | {r['method']} | {r['chains']} x {r['draws']} ({r['tune']}) | {tot} | "
            f"{_fmt(r['sampling_s'], 2)} | {r['min_ess_bulk']:.0f} ({r['min_ess_bulk_at']}) | "
            f"{r['min_ess_tail']:.0f} ({r['min_ess_tail_at']}) | {r['ess_per_total_s']:.1f} | "
            f"{r['ess_per_sampling_s']:.1f} | {r['max_r_hat']:.3f} | {r['divergences']} | {r['load_at_start'][0]} |")
    md += ["", "Ratios, bayesmer over each peer (min ESS per total second; per sampling second; the peer's total time "
           "over bayesmer's):", ""]
    goals = []
    for model in dict.fromkeys(r["model"] for r in res["rows"]):
        m = _cell(res["rows"], model, "bayesmer")
        if not m or "failed" in m:
            continue
        parts, beats = [], []
        for other in (BAMBI, BAMBI2, BRMS):
            o = _cell(res["rows"], model, other)
            if not o:
                parts.append(f"vs {other}: not run")
                continue
            if "failed" in o:
                parts.append(f"vs {other}: the peer failed ({o['failed'][:200]!r})")
                continue
            parts.append(f"vs {other}: {m['ess_per_total_s'] / o['ess_per_total_s']:.1f}x per total s, "
                         f"{m['ess_per_sampling_s'] / o['ess_per_sampling_s']:.1f}x per sampling s, "
                         f"{o['total_s'] / m['total_s']:.1f}x faster end to end")
            beats.append((other, o["total_s"] / m["total_s"], m["ess_per_total_s"] / o["ess_per_total_s"],
                          o["draws"] != m["draws"]))
        md.append(f"- {model}: " + "; ".join(parts))
        yn = lambda r: "yes" if r > 1 else "NO"
        for other, t, e, fewer in beats:
            goals.append(f"- {model} vs {other}: less total time: {yn(t)} ({t:.1f}x); more min ESS per total "
                         f"second: {yn(e)} ({e:.2f}x)" + (" (the peer ran fewer draws, see the notes)" if fewer else "")
                         + f"; both: {'met' if t > 1 and e > 1 else 'NOT met'}.")
    md += ["", "## Goal (issue 12): faster than bambi and brms end to end", ""] + goals
    md += ["", "## Priors", "",
           "bayesmer: its defaults (`bayesmer.default_priors(formula, df, family=\"binomial\")`). bambi and brms get "
           "the same slope priors (Normal(0, s) per column) and the same HalfCauchy on each random-intercept SD "
           "(bambi: `1|g ~ Normal(0, HalfCauchy(beta))`; brms: `cauchy(0, beta)` on class sd, which brms bounds "
           "at 0). The intercept differs in parameterisation: bambi and brms centre the predictors and put its "
           "prior on the intercept at the predictors' means, so they get Normal(g(ybar), 2.5) there, the prior "
           "that bayesmer's wider prior on the intercept at x = 0 (sqrt(2.5^2 + sum_j (2.5 mean(x_j)/sd(x_j))^2)) "
           "is derived from; the marginal spreads agree, the joint priors differ slightly.", ""]
    for name, p in res["priors"].items():
        md.append(f"- {name}: intercept (bayesmer, at x = 0) Normal({p['bayesmer_intercept'][0]:.4g}, "
                  f"{p['bayesmer_intercept'][1]:.4g}); peers (centred) Normal({p['intercept'][0]:.4g}, "
                  f"{p['intercept'][1]}); slopes " + ", ".join(f"{k} Normal(0, {v:.4g})" for k, v in p["b"].items())
                  + "; SDs " + ", ".join(f"{g} HalfCauchy({b:g})" for g, b in p["sd"].items()) + ".")
    md += ["", "## Notes", ""]
    for r in res["rows"]:
        if r["method"] == "bayesmer" and "failed" not in r:
            md.append(f"- {r['model']}, bayesmer: strategy {r['strategy_used']}; compile {r['compile_s']:.2f} s, "
                      f"sampling {r['sampling_s']:.2f} s; whole-fit times of the {len(r['all_total_s'])} fits "
                      f"{[round(x, 2) for x in r['all_total_s']]}.")
        if r["method"] == BRMS and "failed" not in r:
            md.append(f"- {r['model']}, brms: `{r['formula']}`, family {r['family']}(); R start and library "
                      f"loading {r['r_load_s']:.1f} s, the `brm()` call (compile + sampling) {r['brm_s']:.1f} s, "
                      f"Stan's per-chain CPU seconds {[round(x, 1) for x in r['chain_s']]}.")
        if r["method"] == BRMS and "failed" in r:
            md.append(f"- {r['model']}, brms: FAILED after {r['total_s']:.0f} s: {r['failed'][:500]!r}")
        if r["method"].startswith("bambi") and "failed" not in r:
            md.append(f"- {r['model']}, {r['method']}: `{r['formula']}`, family {r['family']}.")
    md += res.get("notes", [])
    path.write_text("\n".join(md) + "\n")


# -- results --------------------------------------------------------------------------------------

def env_info() -> dict:
    import bambi
    import numba
    import pymc
    import pytensor

    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "commit": head,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "bayesmer": bayesmer.__version__,
        "nutpie": nutpie.__version__,
        "numba": numba.__version__,
        "pytensor": pytensor.__version__,
        "pymc": pymc.__version__,
        "bambi": bambi.__version__,
    }


def _fmt(x, nd=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}"


def _cell(rows, model, method):
    for r in rows:
        if r["model"] == model and r["method"] == method:
            return r
    return None


def write_md(saved: dict, out: Path) -> None:
    env = saved["env"]
    sm = saved.get("small")
    ie = saved.get("insteval")
    md = [
        "# NUTS benchmark (`benchmarks/nuts.py`)",
        "",
        f"Machine: {env['cpus']} CPUs ({env['machine']}), Python {env['python']}; shared with other jobs, so "
        "times are noisy: the load average (1, 5, 15 min) is given before and after each part.",
        f"Code: commit {env.get('commit', '?')} (the HEAD when the last part ran). "
        f"Versions: bayesmer {env['bayesmer']}, nutpie {env['nutpie']}, numba {env['numba']}, "
        f"PyTensor {env['pytensor']}, PyMC {env['pymc']}, bambi {env['bambi']}.",
        "",
        "min ESS: the smallest bulk ESS over the hyperparameters (fixed effects, random-effect SDs and "
        "correlations, residual SD; for bambi its fixed effects and `*_sigma` terms). total s: the whole "
        "`fit` call from the data frame (design, REML start, compile, sampling, post-processing; imports "
        "excluded). bayesmer default = `strategy=\"auto\"`, which chose the marginal model (column 'used') "
        "and runs nutpie on the compiled engine, chains in parallel; `full` samples every random effect "
        "(PyTensor C linker, chains sequential). bambi fits the *uncorrelated* model `(x | g)` where "
        "bayesmer fits `(1 + x | g)` (bambi cannot model the correlation: sleepstudy and subjitems; on "
        "penicillin both fit the same model), samples with PyMC's NUTS with its default settings, and "
        "its compile time is inside its total (its compile column is blank). PyMC's default runs the chains "
        "in `cpu_count() // 2` processes, which is 1 on this 2-CPU machine (it sampled the 4 chains "
        "sequentially); the rows 'bambi, cores=2' pass `cores=2` (4 chains in 2 processes).",
        "",
    ]
    if sm:
        md += [
            f"## Small models ({sm['rows'][0]['chains']} chains x {sm['rows'][0]['draws']} draws, "
            f"{sm['rows'][0]['tune']} tune; each cell the faster of {sm['repeats']} fits)",
            "",
            f"Load average before {tuple(sm['load_before'])}, after {tuple(sm['load_after'])}"
            + (f" ({sm.get('when')})" if sm.get("when") else "") + "."
            + "".join(f" Cells re-run {r['when']} ({', '.join(r['cells'])}): load before {tuple(r['load_before'])}, "
                      f"after {tuple(r['load_after'])}." for r in (sm.get("runs") or [])[1:]),
            "",
            "| model | rows | method | used | chains x draws | compile s | sampling s | total s | min ESS "
            "(at) | max R-hat | divergences | min ESS / sampling s | min ESS / total s | load at start |",
            "|---|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in sm["rows"]:
            md.append(
                f"| {r['model']} | {r['rows']} | {r['method']} | {r['strategy_used']} | {r['chains']} x "
                f"{r['draws']} | {_fmt(r['compile_s'], 2)} | {_fmt(r['sampling_s'], 2)} | {_fmt(r['total_s'], 2)} | "
                f"{r['min_ess_bulk']:.0f} ({r['min_ess_at']}) | {r['max_r_hat']:.3f} | {r['divergences']} | "
                f"{r['ess_per_sampling_s']:.0f} | {r['ess_per_total_s']:.0f} | {r['load_at_start'][0]} |"
            )
        if any(r["model"] == "sim100k" for r in sm["rows"]):
            md += ["", "sim100k's full model ran 2 chains x 300 draws (300 tune) only; with R-hat far above 1.01 "
                   "its ESS (and so its ESS per second) is itself rough."]
        if not any(r["model"] in ("ogorek", "sim100k") for r in sm["rows"]):
            md += ["", "The earlier ogorek and 100,000-row rows were dropped from this run to keep it short "
                   "(`--extra` runs them)."]
        md += ["", "Ratios (bayesmer default over the other):", ""]
        for model in dict.fromkeys(r["model"] for r in sm["rows"]):
            m = _cell(sm["rows"], model, "bayesmer default")
            parts = []
            for other in ("bayesmer full", BAMBI, BAMBI2):
                o = _cell(sm["rows"], model, other)
                if m and o:
                    parts.append(f"vs {other}: {m['ess_per_sampling_s'] / o['ess_per_sampling_s']:.1f}x per "
                                 f"sampling s, {m['ess_per_total_s'] / o['ess_per_total_s']:.1f}x per total s, "
                                 f"{o['total_s'] / m['total_s']:.1f}x in total time")
            if parts:
                md.append(f"- {model}: " + "; ".join(parts))
    if ie:
        md += ["", "## InstEval shape (`--insteval`)", "",
               f"`{ie['formula']}` on `benchmarks/reml.py`'s `simulate_insteval()`: {ie['rows']} rows, levels "
               f"{ie['levels']}. Load average before {tuple(ie['load_before'])}, at sampling "
               f"{tuple(ie['load_at_sampling'])}, after {tuple(ie['load_after'])}.", ""]
        md += [
            f"- Before sampling: design {ie['design_s']:.1f} s, REML {ie['reml_s']:.1f} s, model "
            f"{ie['build_s']:.1f} s, engine set-up {ie['compile_s']:.2f} s (strategy {ie['strategy']}).",
            f"- One log density + gradient of the marginal model: {ie['s_per_gradient']:.2f} s (median of "
            f"{len(ie['s_per_gradient_all'])}, one thread).",
        ]
        if ie["pilot_finished"]:
            md.append(f"- The background run of {ie['chains']} chains x {ie['draws']} draws ({ie['tune']} tune) "
                      f"finished in {ie['pilot_elapsed_s']:.0f} s.")
        else:
            md.append(
                f"- {ie['chains']} chains x {ie['draws']} draws ({ie['tune']} tune) did NOT finish: stopped after "
                f"{ie['pilot_elapsed_s']:.0f} s with {ie['pilot_tune_iters']} tuning and {ie['pilot_draw_iters']} "
                f"sampling iterations done over all chains (of {ie['chains'] * (ie['tune'] + ie['draws'])}), "
                f"{ie['pilot_gradients']} gradients"
                + (f" ({ie['pilot_gradients_per_iter']:.1f} per iteration, {ie['pilot_s_per_gradient_in_sampler']:.2f} "
                   f"s each with the chains on {min(ie['chains'], env['cpus'])} cores). At that rate the whole run "
                   f"would take about {ie['extrapolated_total_sampling_s'] / 60:.1f} minutes of sampling "
                   "(an extrapolation; tuning's early iterations cost more steps, so it is rough)."
                   if ie["pilot_gradients"] else ".")
            )
        f = ie.get("fit")
        if f:
            md.append(
                f"- The plain `bayesmer.fit` (default settings, {f['chains']} chains x {f['draws']} draws, {f['tune']} "
                f"tune), run to the end from {f.get('started', '?')}, load {tuple(f['load_before'])} before and "
                f"{tuple(f['load_after'])} after: total {f['total_s']:.0f} s ({f['total_s'] / 60:.1f} minutes), "
                f"sampling {f['sampling_s']:.0f} s, other (design, REML, post-processing) "
                f"{f['total_s'] - f['sampling_s'] - f['compile_s']:.0f} s; min ESS {f['min_ess_bulk']:.0f} "
                f"({f['min_ess_at']}), max R-hat {f['max_r_hat']:.3f}, divergences {f['divergences']}; "
                f"{f.get('gradients')} gradients in the kept draws "
                f"({f['gradients'] / (f['chains'] * f['draws']):.1f} per draw; tuning's are not recorded).")
        b = ie.get("bambi_subsample")
        if b:
            md.append(
                f"- bambi on a random {b['rows']}-row subsample (levels {b['levels']}), {b['chains']} chains x "
                f"{b['draws']} draws ({b['tune']} tune): total {b['total_s']:.1f} s, sampling {b['sampling_s']:.1f} s, "
                f"min ESS {b['min_ess_bulk']:.0f} ({b['min_ess_at']}), max R-hat {b['max_r_hat']:.3f}, divergences "
                f"{b['divergences']}. EXTRAPOLATION to {ie['rows']} rows, assuming the cost per gradient grows with "
                f"the rows and the steps per draw stay the same (optimistic): sampling about "
                f"{b['extrapolated_sampling_s_full'] / 60:.1f} minutes for the same draws, min ESS per sampling "
                f"second about {b['extrapolated_ess_per_sampling_s_full']:.2f}."
            )
        if b and ie.get("pilot_gradients"):
            own = ie["pilot_s_per_gradient_in_sampler"] * ie["pilot_gradients_per_iter"]
            theirs = b["extrapolated_sampling_s_full"] / (b["chains"] * (b["tune"] + b["draws"]))
            md.append(
                f"- Per iteration of one chain: bayesmer {own:.2f} s ({ie['pilot_gradients_per_iter']:.1f} gradients "
                f"of {ie['pilot_s_per_gradient_in_sampler']:.2f} s, in tuning); bambi extrapolated to the full size "
                f"{theirs:.3f} s ({b['gradients'] / (b['chains'] * (b['tune'] + b['draws'])):.1f} gradients of about "
                f"{b['extrapolated_sampling_s_full'] / b['gradients'] * 1000:.1f} ms; its chains ran one after "
                "another). bambi's draws mix far worse (min ESS "
                f"{b['min_ess_bulk']:.0f} of {b['chains'] * b['draws']} draws on the subsample) and bayesmer's ESS "
                + (f"on this design {ie['fit']['min_ess_bulk']:.0f} of {ie['fit']['chains'] * ie['fit']['draws']} "
                   "draws (the plain fit above): min ESS per sampling second "
                   f"{ie['fit']['min_ess_bulk'] / ie['fit']['sampling_s']:.2f} against bambi's extrapolated "
                   f"{b['extrapolated_ess_per_sampling_s_full']:.2f}." if ie.get("fit") else
                   "on this design was not measured (the run did not finish), so which is ahead in ESS per "
                   "second here is open.")
            )
    md += ["", "## Goals", ""]
    md += goals(saved)
    out.write_text("\n".join(md) + "\n")


def _vs2(m, b2, goal) -> str:
    """The same goal against bambi with cores=2, if that row was run."""
    if not b2:
        return ""
    r = m["ess_per_total_s"] / b2["ess_per_total_s"]
    return (f"; against bambi with cores=2: {'met' if r >= goal else 'NOT met'} ({r:.1f}x per total second, "
            f"{m['ess_per_sampling_s'] / b2['ess_per_sampling_s']:.1f}x per sampling second)")


def goals(saved) -> list[str]:
    g = []
    sm = saved.get("small")
    ok = lambda c: "met" if c else "NOT met"  # noqa: E731
    if sm:
        rows = sm["rows"]
        m, b = _cell(rows, "sleepstudy", "bayesmer default"), _cell(rows, "sleepstudy", BAMBI)
        b2 = _cell(rows, "sleepstudy", BAMBI2)
        if m and b:
            ratio = m["ess_per_total_s"] / b["ess_per_total_s"]
            g.append(f"- sleepstudy, bayesmer default >= 5x bambi in min bulk ESS per total second: {ok(ratio >= 5)} "
                     f"({ratio:.1f}x: {m['ess_per_total_s']:.0f} vs {b['ess_per_total_s']:.0f}; bambi fits the "
                     "uncorrelated model)" + _vs2(m, b2, 5) + ".")
        if m:
            g.append(f"- sleepstudy, bayesmer under 2 s wall for the whole fit: {ok(m['total_s'] < 2)} "
                     f"({m['total_s']:.2f} s, the faster of {sm['repeats']}: {[round(x, 2) for x in m['all_total_s']]}).")
        for model in ("penicillin", "subjitems"):
            m = _cell(rows, model, "bayesmer default")
            f = _cell(rows, model, "bayesmer full")
            b = _cell(rows, model, BAMBI)
            if m and f:
                r1 = m["ess_per_sampling_s"] / f["ess_per_sampling_s"]
                r2 = m["ess_per_total_s"] / f["ess_per_total_s"]
                g.append(f"- {model}, marginal >= 20x full in min ESS per sampling second: {ok(r1 >= 20)} "
                         f"({r1:.0f}x: {m['ess_per_sampling_s']:.0f} vs {f['ess_per_sampling_s']:.0f}; per total "
                         f"second {r2:.0f}x).")
            if m and b:
                r1 = m["ess_per_total_s"] / b["ess_per_total_s"]
                r2 = m["ess_per_sampling_s"] / b["ess_per_sampling_s"]
                g.append(f"- {model}, marginal >= 10x bambi in min ESS per total second: {ok(r1 >= 10)} "
                         f"({r1:.1f}x: {m['ess_per_total_s']:.0f} vs {b['ess_per_total_s']:.0f}; per sampling "
                         f"second {r2:.1f}x)" + _vs2(m, _cell(rows, model, BAMBI2), 10) + ".")
    ie = saved.get("insteval")
    if ie:
        f = ie.get("fit")
        if f:
            met = f["min_ess_bulk"] >= 400 and f["max_r_hat"] <= 1.01 and f["total_s"] < 600
            g.append(f"- InstEval shape, 4 chains, min ESS >= 400, max R-hat <= 1.01, under 10 minutes: {ok(met)} "
                     f"(min ESS {f['min_ess_bulk']:.0f}: {ok(f['min_ess_bulk'] >= 400)}; max R-hat "
                     f"{f['max_r_hat']:.3f}: {ok(f['max_r_hat'] <= 1.01)}; {f['total_s']:.0f} s = "
                     f"{f['total_s'] / 60:.1f} minutes for {f['chains']} x {f['draws']} draws ({f['tune']} tune): "
                     f"{ok(f['total_s'] < 600)}).")
        else:
            est = ie.get("extrapolated_total_sampling_s")
            g.append(
                f"- InstEval shape, 4 chains, min ESS >= 400, max R-hat <= 1.01, under 10 minutes: NOT met: "
                f"{ie['chains']} x {ie['draws']} draws ({ie['tune']} tune) did not finish within "
                f"{ie['pilot_elapsed_s']:.0f} s; one gradient takes {ie['s_per_gradient']:.2f} s"
                + (f"; about {est / 60:.1f} minutes of sampling extrapolated" if est else "") + ".")
    return g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write nuts.json (merging the parts run) and nuts.md")
    ap.add_argument("--render", action="store_true", help="only rewrite nuts.md from nuts.json")
    ap.add_argument("--render-glmm", action="store_true", help="only rewrite nuts_glmm.md from nuts_glmm.json")
    ap.add_argument("--out", type=Path, default=OUT, help="where --write and --render write")
    ap.add_argument("--repeats", type=int, default=2, help="fits per cell on the small models (fastest kept)")
    ap.add_argument("--extra", action="store_true", help="also ogorek and the 100,000-row model (marginal vs full)")
    ap.add_argument("--skip-bambi", action="store_true")
    ap.add_argument("--methods", default="", help="comma-separated subset of default,full,bambi,bambi2")
    ap.add_argument("--merge", action="store_true", help="with --write: replace only the cells run in nuts.json")
    ap.add_argument("--models", default="", help="comma-separated subset of the small models (for testing)")
    ap.add_argument("--insteval", action="store_true", help="only the InstEval shape (slow)")
    ap.add_argument("--insteval-fit", action="store_true",
                    help="with --insteval: only the plain bayesmer.fit, to the end (with --merge: added to nuts.json)")
    ap.add_argument("--insteval-draws", type=int, default=300)
    ap.add_argument("--insteval-tune", type=int, default=300)
    ap.add_argument("--insteval-timeout", type=float, default=240.0, help="seconds before the run is stopped")
    ap.add_argument("--insteval-grads", type=int, default=5, help="gradients timed one by one")
    ap.add_argument("--insteval-bambi-rows", type=int, default=5000)
    ap.add_argument("--glmm", action="store_true",
                    help="only cbpp and VerbAgg (binomial) against bambi and brms; writes nuts_glmm.json/.md")
    ap.add_argument("--brms-verbagg-draws", type=int, default=0,
                    help="with --glmm: brms on VerbAgg with this many draws and as many warm-up (0: as the others)")
    ap.add_argument("--note", default="", help="with --glmm --brms-verbagg-draws: why, for the results file")
    ap.add_argument("--brms-timeout", type=float, default=1500.0, help="with --glmm: seconds before brms is stopped")
    ap.add_argument("--families", action="store_true",
                    help="only the response families (negbinomial, cumulative, beta, student) against bambi (cores=2) "
                         "and brms's reference runs; writes nuts_families.json/.md")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 chains x 100 draws, 1 repeat")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    args = ap.parse_args(argv)
    if args.quick:
        args.draws = args.tune = 100
        args.chains, args.repeats = 2, 1
        args.insteval_draws = args.insteval_tune = 20
        args.insteval_timeout = min(args.insteval_timeout, 30)
        args.insteval_grads = 2
        args.insteval_bambi_rows = min(args.insteval_bambi_rows, 1000)

    path = args.out / "nuts.json"
    if args.render:
        write_md(json.loads(path.read_text()), args.out / "nuts.md")
        return

    if args.glmm:
        result = glmm(args)
        print(json.dumps(result, indent=1, default=float))
        if args.write:
            args.out.mkdir(parents=True, exist_ok=True)
            env = env_info()
            (args.out / "nuts_glmm.json").write_text(json.dumps({"env": env, "glmm": result}, indent=1,
                                                                default=float) + "\n")
            write_glmm_md(result, env, args.out / "nuts_glmm.md")
            print((args.out / "nuts_glmm.md").read_text())
        return
    if args.families:
        result = families(args)
        print(json.dumps(result, indent=1, default=float))
        if args.write:
            args.out.mkdir(parents=True, exist_ok=True)
            env = env_info()
            (args.out / "nuts_families.json").write_text(json.dumps({"env": env, "families": result}, indent=1,
                                                                    default=float) + "\n")
            write_families_md(result, env, args.out / "nuts_families.md")
            print((args.out / "nuts_families.md").read_text())
        return
    if args.render_glmm:
        saved = json.loads((args.out / "nuts_glmm.json").read_text())
        write_glmm_md(saved["glmm"], saved["env"], args.out / "nuts_glmm.md")
        return

    part = "insteval" if args.insteval else "small"
    if args.insteval_fit:
        result = insteval_fit(args)
    else:
        result = insteval(args) if args.insteval else small(args)
    print(json.dumps(result, indent=1, default=float))
    if args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        saved = {}
        if path.exists():
            saved = json.loads(path.read_text())
            if "small" not in saved and "insteval" not in saved:  # the old format: replace it
                saved = {}
        saved["env"] = env_info()
        if part == "small" and args.merge and "small" in saved:
            result = merge_small(saved["small"], result)
        if part == "insteval" and args.merge and "insteval" in saved:
            result = saved["insteval"] | result
        saved[part] = result
        path.write_text(json.dumps(saved, indent=1, default=float) + "\n")
        write_md(saved, args.out / "nuts.md")
        print((args.out / "nuts.md").read_text())


if __name__ == "__main__":
    main()
