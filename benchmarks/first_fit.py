"""The first fit on a fresh install: every compile cache empty, then warm.

Run from the repository root::

    .venv/bin/python benchmarks/first_fit.py           # prints the table
    .venv/bin/python benchmarks/first_fit.py --write   # also writes benchmarks/results/first_fit.md

Each run is a child process with its own compile caches:

- numba's, through ``NUMBA_CACHE_DIR`` (numba reads it as ``numba.config.CACHE_DIR``;
  when set, its ``_UserProvidedCacheLocator`` comes before the in-tree
  ``__pycache__`` beside the source, so the package's own ``*.nbi``/``*.nbc``
  files are not read);
- PyTensor's, through ``PYTENSOR_FLAGS=base_compiledir=<dir>,compiledir=<dir>/compiledir``
  (``config.compiledir`` is where its C modules go; it defaults to a folder
  under ``base_compiledir``, ``~/.pytensor``).

The child times ``import bayesmer``, then the first ``bayesmer.fit`` of
sleepstudy (``Reaction ~ 1 + Days + (1 + Days | Subject)``, 4 chains x 1000
draws, 1000 tune), then in the same process a fit of another data set
(penicillin, ``diameter ~ 1 + (1 | plate) + (1 | sample)``) to show that a new
data set compiles nothing. The cold run starts from empty temporary cache
folders; the warm run is a new process on the folders the cold run filled.
Whether the cold run really compiled is checked two ways: bayesmer's stderr
notice ("bayesmer: compiling the likelihood engine", printed when getting the
compiled engine takes over a second) and the files numba wrote to the empty
folder. Python's own bytecode (``*.pyc``, which pip writes at install time) is
left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "first_fit.md"
NOTICE = "bayesmer: compiling the likelihood engine"

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
PENICILLIN = "diameter ~ 1 + (1 | plate) + (1 | sample)"


def child(draws: int, tune: int, chains: int) -> None:
    """Runs in the subprocess: prints one JSON line of timings."""
    t0 = time.perf_counter()
    import bayesmer

    t1 = time.perf_counter()
    import numba
    import pytensor

    out = {"import_s": t1 - t0, "numba_cache_dir": numba.config.CACHE_DIR,
           "pytensor_compiledir": str(pytensor.config.compiledir)}
    for name, formula in (("sleepstudy", SLEEP), ("penicillin", PENICILLIN)):
        df = bayesmer.datasets.load(name)
        print(f"--- fit {name}", file=sys.stderr, flush=True)
        a = time.perf_counter()
        fit = bayesmer.fit(formula, df, draws=draws, tune=tune, chains=chains, seed=1, progress=False)
        total = time.perf_counter() - a
        s = fit.summary()
        out[name] = {"total_s": total, **{f"{k}_s": v for k, v in fit.timings.items()}, "strategy": fit.strategy,
                     "min_ess_bulk": float(s["ess_bulk"].min()), "max_r_hat": float(s["r_hat"].max()),
                     "divergences": int(fit.idata["sample_stats"]["diverging"].sum())}
    print("RESULT " + json.dumps(out), flush=True)


def _count(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "nbi_nbc": sum(p.suffix in (".nbi", ".nbc") for p in files),
            "bytes": sum(p.stat().st_size for p in files)}


def run_child(label: str, numba_dir: Path, pt_dir: Path, args) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(numba_dir)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={pt_dir},compiledir={pt_dir / 'compiledir'}"
    before = {"numba": _count(numba_dir), "pytensor": _count(pt_dir)}
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"{label}: NUMBA_CACHE_DIR={numba_dir} ({before['numba']['files']} files), PYTENSOR_FLAGS="
          f"{env['PYTENSOR_FLAGS']} ({before['pytensor']['files']} files); load {load}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", "--draws", str(args.draws), "--tune", str(args.tune),
                        "--chains", str(args.chains)], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{label}: child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    res = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("RESULT "))[7:])
    # which fit, if any, printed the compile notice
    notice_in = None
    current = "import"
    for line in p.stderr.splitlines():
        if line.startswith("--- fit "):
            current = line[8:]
        if NOTICE in line and notice_in is None:
            notice_in = current
    res.update(label=label, process_wall_s=wall, load_before=load, load_after=[round(x, 2) for x in os.getloadavg()],
               compile_notice=notice_in, caches_before=before,
               caches_after={"numba": _count(numba_dir), "pytensor": _count(pt_dir)})
    print(f"{label}: {json.dumps(res)}", file=sys.stderr, flush=True)
    return res


def _rest(f) -> float:
    """The fit's time outside fit.timings: design, the REML start (numba-compiled too), priors, model."""
    return f["total_s"] - f["compile_s"] - f["sampling_s"] - f["postprocess_s"]


def write_md(runs, env, args) -> str:
    md = [
        "# First fit on a fresh install (`benchmarks/first_fit.py`)",
        "",
        f"Machine: {env['cpus']} CPUs ({env['machine']}), Python {env['python']}, shared with other jobs (load "
        "average per run below). Code: commit " + env["commit"] + ". Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "Each row is a new process. *cold*: numba's cache (`NUMBA_CACHE_DIR`) and PyTensor's "
        "(`PYTENSOR_FLAGS=base_compiledir=...,compiledir=...`) point at empty temporary folders, as on a fresh "
        "install; *warm*: a second process on the folders the cold one filled. In each process: `import "
        f"bayesmer`, then `bayesmer.fit` of sleepstudy (`{SLEEP}`), then of penicillin (`{PENICILLIN}`), "
        f"{args.chains} chains x {args.draws} draws ({args.tune} tune), default settings (the marginal engine). "
        "Fit times are the whole `fit` call; compile / sampling / post-process are `fit.timings`, rest is the "
        "remainder (design, the REML fit that starts the chains, priors, model building).",
        "",
        "| run | load at start | import s | sleepstudy fit s (compile, sampling, post, rest) | penicillin fit s "
        "(compile, sampling, post, rest) | compile notice during | numba cache files after (nbi/nbc) | "
        "PyTensor compiledir files after | process wall s |",
        "|---|---|---:|---|---|---|---:|---:|---:|",
    ]
    for r in runs:
        s, p = r["sleepstudy"], r["penicillin"]
        md.append(
            f"| {r['label']} | {r['load_before'][0]} | {r['import_s']:.1f} | {s['total_s']:.1f} ({s['compile_s']:.1f}, "
            f"{s['sampling_s']:.1f}, {s['postprocess_s']:.1f}, {_rest(s):.1f}) | {p['total_s']:.1f} "
            f"({p['compile_s']:.2f}, {p['sampling_s']:.1f}, {p['postprocess_s']:.1f}, {_rest(p):.1f}) | {r['compile_notice'] or 'none'} | "
            f"{r['caches_after']['numba']['files']} ({r['caches_after']['numba']['nbi_nbc']}) | "
            f"{r['caches_after']['pytensor']['files']} | {r['process_wall_s']:.1f} |"
        )
    cold = runs[0]
    md += ["", "Checks:", ""]
    md.append(f"- The cold run started with {cold['caches_before']['numba']['files']} files in its numba cache folder "
              f"and {cold['caches_before']['pytensor']['files']} in its PyTensor folder; numba wrote "
              f"{cold['caches_after']['numba']['nbi_nbc']} `.nbi`/`.nbc` files there, and bayesmer printed its "
              f"compile notice during: {cold['compile_notice'] or 'nothing (NOT confirmed)'}. The child saw "
              f"`numba.config.CACHE_DIR` = `{cold['numba_cache_dir']}` and `pytensor.config.compiledir` = "
              f"`{cold['pytensor_compiledir']}`.")
    for r in runs:
        md.append(f"- {r['label']}: sleepstudy min ESS {r['sleepstudy']['min_ess_bulk']:.0f}, max R-hat "
                  f"{r['sleepstudy']['max_r_hat']:.3f}, {r['sleepstudy']['divergences']} divergences; penicillin "
                  f"min ESS {r['penicillin']['min_ess_bulk']:.0f}, max R-hat {r['penicillin']['max_r_hat']:.3f}, "
                  f"{r['penicillin']['divergences']} divergences.")
    first = cold["sleepstudy"]["total_s"]
    both = cold["import_s"] + first
    md += ["", "## Goal", ""]
    md.append(f"- The first fit on a fresh install under 60 s: {'met' if first < 60 else 'NOT met'} "
              f"({first:.1f} s for the fit; {both:.1f} s with `import bayesmer`; load {cold['load_before'][0]} "
              "at the start). The second data set in the same process (penicillin) took "
              f"{cold['penicillin']['total_s']:.1f} s with {cold['penicillin']['compile_s']:.2f} s of compile: "
              "no per-data-set compile.")
    return "\n".join(md) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.child:
        child(args.draws, args.tune, args.chains)
        return

    with tempfile.TemporaryDirectory(prefix="bayesmer-first-fit-") as tmp:
        numba_dir, pt_dir = Path(tmp) / "numba", Path(tmp) / "pytensor"
        numba_dir.mkdir()
        pt_dir.mkdir()
        runs = [run_child("cold", numba_dir, pt_dir, args), run_child("warm", numba_dir, pt_dir, args)]

    from importlib.metadata import version

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    env = {"commit": head, "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "versions": {k: version(k) for k in ("bayesmer", "numba", "pytensor", "nutpie", "pymc")}}
    md = write_md(runs, env, args)
    print(md)
    if args.write:
        args.out.write_text(md)


if __name__ == "__main__":
    main()
