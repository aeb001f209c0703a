"""Flops of the collapsed density's gradient against its measured time, and the machine's BLAS peak.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/flops.py                # before = main
    PYTHONPATH=src .venv/bin/python benchmarks/flops.py --before REV --write

For each model (sleepstudy, Penicillin, a 150-student subset of the InstEval shape and the whole
InstEval shape, both from ``benchmarks/reml.py``'s simulator) it builds the engine's density at
the REML estimates (what ``bayesmer.fit`` starts NUTS from), counts the flops one gradient
needs by the formula below, and times ``logp_grad`` of this tree's kernel and of the kernel at
``--before`` (``git show REV:src/bayesmer/engine/_kernel.py``, imported as a module of its own),
alternating the two in one process, with one BLAS thread as ``bayesmer.fit`` samples. Both
wall time and the thread's CPU time are reported (the machine is shared: CPU time is the
steadier), with the load average. The two kernels' densities and gradients are compared too.

The flop count of one gradient (one right-hand side; G1 levels of K1 columns in the first,
block-diagonal factor; the dense block S of m2 = q2 + pb rows: the other factors' q2 columns
and, when β is integrated out, its p rows; n_g the dense rows level g touches)::

    dense  = m2³/3 (potrf) + 2m2³/3 (potri: trtri + lauum)                     = m2³
             (before: potrf + LU inverse of L (getrf + getri, 2m2³) + L⁻ᵀL⁻¹ (gemm, 2m2³) = 13/3 m2³)
    sparse = Σ_g n_g(n_g + 1) K1   (S -= H_g M_g⁻¹ H_g', pairs of touched rows)
           + Σ_g n_g(n_g + 1) K1²  (Σ_g E_g S⁻¹ E_g', the same pairs, for ∂log|P|; with K1 = 1 and
                                     m2 >= 400 accumulated as W = Σ_g E_g'E_g in the Schur pass, and
                                     <S⁻¹, W> then costs m2² more)
           + Σ_g (7/3 K1³ + 6 n_g K1²)  (per level: M_g, its Cholesky and inverse, H_g, E_g)
           + 4 m2² (two triangular solves) + q2² (S = Λ₂'A₂₂Λ₂ + I, scalar terms)

The machine's peak: a 3000 x 3000 dgemm (2·3000³ flops) through numpy, one thread and two.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "flops.md"

FORMULA_IE = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
MODELS = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "insteval_150": FORMULA_IE,
    "insteval": FORMULA_IE,
}


def load():
    a = os.getloadavg()
    return f"{a[0]:.2f} {a[1]:.2f} {a[2]:.2f}"


def model_data(name):
    import bayesmer
    from reml import simulate_insteval

    if name == "insteval":
        return simulate_insteval()
    if name == "insteval_150":
        df = simulate_insteval()
        keep = np.random.default_rng(7).choice(df["s"].unique(), 150, replace=False)
        return df[df["s"].isin(keep)].reset_index(drop=True)
    return bayesmer.datasets.load(name)


def density_at_reml(name):
    """The engine's density (DensitySpec) and the start x NUTS gets (the REML estimates)."""
    from bayesmer import naming as nm
    from bayesmer.builder import build_model
    from bayesmer.design import build_design
    from bayesmer.engine.nuts import initial_x
    from bayesmer.lmer import fit_reml
    from bayesmer.priors import resolve_priors

    df = model_data(name)
    design = build_design(MODELS[name], df)
    t0 = time.perf_counter()
    fit = fit_reml(design)
    t_reml = time.perf_counter() - t0
    built = build_model(design, resolve_priors(design, None), strategy="auto", start=fit)
    init, terms = built.initial_point, list(built.sd)
    chols = []
    for t in terms:
        v = nm.corr_chol_var(t)
        chols.append(init[v] if v in init else np.eye(len(np.atleast_1d(init[built.sd[t]]))))
    x = initial_x(built.density, float(init[built.sigma]), [init[built.sd[t]] for t in terms], chols,
                  None if built.density.integrate_beta else init[built.beta])
    return df, built.density, x, t_reml


def gradient_flops(spec) -> dict:
    """The formula of the module's docstring on this density's statistics."""
    s = spec.stats
    ptr = s.arrays[3]
    G1, K1 = int(s.blk_G[0]), int(s.blk_K[0])
    pb = s.p if spec.integrate_beta else 0
    q2 = s.q2
    m2 = q2 + pb
    ng = np.diff(ptr).astype(float) + pb
    pairs = float(np.sum(ng * (ng + 1)))
    per_level = G1 * 7.0 / 3.0 * K1**3 + 6.0 * K1**2 * float(ng.sum())
    small = 4.0 * m2**2 + q2**2
    sparse = pairs * K1 + pairs * K1**2 + per_level + small
    from bayesmer.engine import _kernel

    # up to DENSE_LOOP_MAX rows both kernels factor and invert by loops: m2³ (potrf, trtri, L⁻ᵀL⁻¹)
    old = float(m2) ** 3 if m2 <= _kernel.DENSE_LOOP_MAX else 13.0 / 3.0 * float(m2) ** 3
    return dict(m2=m2, G1=G1, K1=K1, dense_new=float(m2) ** 3, dense_old=old,
                sparse=sparse, new=float(m2) ** 3 + sparse, old=old + sparse)


def blas_peak(n=3000, reps=3) -> dict:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    out = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            a @ b
            best = best_cpu = math.inf
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.thread_time()
                a @ b
                best_cpu = min(best_cpu, time.thread_time() - c0)
                best = min(best, time.perf_counter() - t0)
        out[threads] = 2.0 * n**3 / best / 1e9
        if threads == 1:  # one BLAS thread runs on the calling thread: its CPU time is the work's
            out["cpu"] = 2.0 * n**3 / best_cpu / 1e9
    return out


def old_kernel(rev: str):
    """The kernel at ``rev`` as a module of its own (its numba cache next to it, in a temp dir)."""
    src = subprocess.run(["git", "show", f"{rev}:src/bayesmer/engine/_kernel.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    d = Path(tempfile.gettempdir()) / f"bayesmer_kernel_{rev.replace('/', '_')}"
    d.mkdir(exist_ok=True)
    path = d / "kernel_before.py"
    if not path.exists() or path.read_text() != src:
        path.write_text(src)
    spec = importlib.util.spec_from_file_location("kernel_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kernel_before"] = mod  # numba's cache finds the module again by its name
    spec.loader.exec_module(mod)
    return mod


def time_pair(kernels, spec, x, reps):
    """Alternating timings (wall, CPU) of each kernel's logp_grad at x; the medians."""
    args = spec.arrays()
    g = np.zeros(spec.ndim)
    for k in kernels:
        k.logp_grad(x, g, *args)
    wall = [[] for _ in kernels]
    cpu = [[] for _ in kernels]
    for _ in range(reps):
        for i, k in enumerate(kernels):
            w0, c0 = time.perf_counter(), time.thread_time()
            k.logp_grad(x, g, *args)
            cpu[i].append(time.thread_time() - c0)
            wall[i].append(time.perf_counter() - w0)
    return [float(np.median(w)) for w in wall], [float(np.median(c)) for c in cpu]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main", help="the git revision of the kernel to compare with")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    from bayesmer._threads import one_blas_thread
    from bayesmer.engine import _kernel as new

    before = old_kernel(args.before)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    load0 = load()
    peak = blas_peak()
    print(f"BLAS peak (numpy dgemm 3000): {peak[1]:.1f} GFLOP/s one thread ({peak['cpu']:.1f} per CPU second), "
          f"{peak[2]:.1f} two; load {load()}", flush=True)
    rows = []
    for name in args.models.split(","):
        df, spec, x, t_reml = density_at_reml(name)
        fl = gradient_flops(spec)
        reps = 5 if fl["m2"] > 500 else 50
        with one_blas_thread():
            g_old, g_new = np.zeros(spec.ndim), np.zeros(spec.ndim)
            lp_old = before.logp_grad(x, g_old, *spec.arrays())
            lp_new = new.logp_grad(x, g_new, *spec.arrays())
            (w_old, w_new), (c_old, c_new) = time_pair([before, new], spec, x, reps)
        s = spec.stats
        shape = " x ".join(str(int(v)) for v in s.blk_G)
        r = dict(model=name, rows=len(df), levels=shape, m2=fl["m2"], fl=fl, w_old=w_old, w_new=w_new,
                 c_old=c_old, c_new=c_new, load=load(),
                 dlp=abs(lp_old - lp_new) / max(abs(lp_old), 1.0),
                 dg=float(np.max(np.abs(g_old - g_new)) / max(np.max(np.abs(g_old)), 1e-300)))
        rows.append(r)
        print(f"{name}: {len(df)} rows, levels {shape}, m2 {fl['m2']}: flops old {fl['old']:.3g} new "
              f"{fl['new']:.3g}; CPU ms old {1e3 * c_old:.3f} new {1e3 * c_new:.3f} (wall {1e3 * w_old:.3f} / "
              f"{1e3 * w_new:.3f}); rel diff logp {r['dlp']:.1e} grad {r['dg']:.1e}; load {r['load']}", flush=True)
    load1 = load()

    def gf(flops, t):
        return flops / t / 1e9

    lines = [
        "| model | rows | levels | m2 | flops before | flops after | CPU ms before | CPU ms after | "
        "speed-up (CPU) | wall ms before | wall ms after | GFLOP/s after (CPU) | after / 1-thread peak (CPU) | "
        "rel. diff (logp, grad) | load after the model |",
        "|" + "---|" * 15,
    ]
    for r in rows:
        fl = r["fl"]
        lines.append(
            f"| {r['model']} | {r['rows']} | {r['levels']} | {r['m2']} | {fl['old']:.3g} | {fl['new']:.3g} | "
            f"{1e3 * r['c_old']:.3f} | {1e3 * r['c_new']:.3f} | {r['c_old'] / r['c_new']:.2f}x | "
            f"{1e3 * r['w_old']:.3f} | {1e3 * r['w_new']:.3f} | {gf(fl['new'], r['c_new']):.2f} | "
            f"{gf(fl['new'], r['c_new']) / peak['cpu']:.2f} | {r['dlp']:.0e}, {r['dg']:.0e} | {r['load']} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        cpu = platform.processor() or platform.machine()
        text = (
            "# Flops of the engine's gradient\n\n"
            f"`PYTHONPATH=src .venv/bin/python benchmarks/flops.py --before {args.before} --write` at {head} on "
            f"{os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"1-, 5-, 15-minute load averages {load0} before the run and {load1} after (a shared machine: "
            "the wall times move with the load, the thread's CPU time much less).\n\n"
            f"BLAS peak, numpy's dgemm at 3000 x 3000: **{peak[1]:.1f} GFLOP/s on one thread "
            f"({peak['cpu']:.1f} per second of the thread's CPU time), {peak[2]:.1f} on two** (wall time; "
            "two threads gain little while other processes hold the cores).\n\n"
            "One gradient of the collapsed log density (`_kernel.logp_grad`, β integrated out: "
            "the default Normal priors) at the REML estimates, one BLAS thread; before = the kernel at "
            f"`{args.before}`, after = this tree's; medians of alternating runs. Flops by the formula in "
            "`benchmarks/flops.py`'s docstring: the dense block costs m2³ now (potrf + potri) and "
            "13/3 m2³ before (potrf, an LU inverse of the factor and a full product); the sparse part "
            "(the first factor's couplings) is the same in both.\n\n"
            "```\n" + __doc__[__doc__.index("The flop count"):__doc__.index("The machine's peak")].strip()
            + "\n```\n\n"
            "insteval_150: the 150 students drawn (seed 7) from the simulated InstEval shape with all "
            "their ratings; its largest factor is then the lecturers, so the dense block is small.\n\n"
            + table + "\n\n"
            "Notes.\n\n"
            "- The dense block's flops are at what the algebra needs: the gradient of log|S| needs S⁻¹ on the "
            "pattern of the couplings (pairs of lecturers a student shares) and on the other factors' "
            "diagonal blocks, and S's Cholesky factor is dense, so selected inversion costs what potri costs. "
            "The alternative of L⁻¹ alone (trtri, m2³/3) and then ||L⁻¹H_g'||² per level streams "
            "nnz(H)·m2/2 entries of L⁻¹ (about 390 MB on the InstEval shape) where lauum's m2³/3 is BLAS-3: "
            "not taken.\n"
            "- The couplings are sparse (a student touches ~27 of 1,144 dense rows): a dense syrk on the "
            "coupling block would cost G1·m2² = 3.9 GFLOP on the InstEval shape against the loops' 2.7 MFLOP. "
            "The loops are memory-bound; visiting them row by row of S (S is 10 MB there) was measured "
            "faster than level by level on the InstEval shape and slower on the small subset, so the "
            "kernel switches at m2 = 400.\n"
            "- Level order: the dense Cholesky's cost does not depend on the order of S's rows (no "
            "fill to reduce in a dense block). Sorting lecturers and students by department made the "
            "coupling loop up to ~2x faster in a microbenchmark on the simulated shape (locality, not "
            "flops); not done, as it would need the permutation undone everywhere the levels are read.\n"
        )
        OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
