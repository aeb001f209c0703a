"""Data bigger than memory: bayesmer on a Parquet data set of 100 million rows, and its peers.

Writes ``benchmarks/results/scale.md``. Every fit runs in a child process under
``/usr/bin/time -v`` (peak resident memory of the whole process, data included);
the data are written in chunks to a temporary directory and deleted afterwards.

1. The 100-million-row fit: a random intercept and slope over 10,000 groups,
   two fixed covariates, ``bayesmer.fit`` on the Parquet glob: the two passes
   over the data (the metadata, then the statistics), REML, and a 4 x 1000-draw
   posterior (1000 tuning draws per chain).
2. A crossed design out of memory: two factors of 5,000 and 1,000 levels,
   10 million rows, through DuckDB: REML and a posterior.
3. The peers on the same model at growing sizes, each until it fails, passes
   ~10 minutes or ~20 GB: lme4 (Rscript, data.table's fread of a CSV, the fit
   timed alone), statsmodels MixedLM, bambi (the fit timed alone; data in memory).

Usage::

    python benchmarks/scale.py                 # everything (about half an hour on 2 cores)
    python benchmarks/scale.py --rows 10000000 --skip-peers --skip-crossed   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"
CROSSED = "y ~ x1 + (1 | a) + (1 | b)"
TRUE = {"beta": (1.0, 0.5, -0.3), "sd": (0.8, 0.4), "corr": 0.3, "sigma": 1.0}


# --- data ---------------------------------------------------------------------------------------


def _group_effects(G: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    s0, s1 = TRUE["sd"]
    C = np.array([[s0**2, TRUE["corr"] * s0 * s1], [TRUE["corr"] * s0 * s1, s1**2]])
    return rng.standard_normal((G, 2)) @ np.linalg.cholesky(C).T


def chunk(n: int, G: int, seed: int, part: int, b: np.ndarray):
    """One chunk of the random intercept and slope model (pandas DataFrame)."""
    import pandas as pd

    rng = np.random.default_rng([seed, 2, part])
    g = rng.integers(0, G, n).astype(np.int32)
    x1 = rng.standard_normal(n)
    x2 = rng.uniform(-1, 1, n)
    b0, b1, b2 = TRUE["beta"]
    y = b0 + b1 * x1 + b2 * x2 + b[g, 0] + b[g, 1] * x1 + TRUE["sigma"] * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def write_parquet(directory: Path, rows: int, G: int, seed: int = 1, per_file: int = 5_000_000) -> float:
    """Write ``rows`` rows in files of ``per_file`` rows (row groups of 1M); returns GB on disk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    b = _group_effects(G, seed)
    for part, lo in enumerate(range(0, rows, per_file)):
        df = chunk(min(per_file, rows - lo), G, seed, part, b)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), directory / f"part-{part:04d}.parquet",
                       row_group_size=1_000_000)
    return sum(f.stat().st_size for f in directory.glob("*.parquet")) / 1e9


def write_crossed(directory: Path, rows: int, Ga: int, Gb: int, seed: int = 3, per_file: int = 5_000_000) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    rng0 = np.random.default_rng([seed, 1])
    ua, ub = 0.7 * rng0.standard_normal(Ga), 0.5 * rng0.standard_normal(Gb)
    for part, lo in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - lo)
        rng = np.random.default_rng([seed, 2, part])
        a, bb = rng.integers(0, Ga, n).astype(np.int32), rng.integers(0, Gb, n).astype(np.int32)
        x1 = rng.standard_normal(n)
        y = 1.0 + 0.5 * x1 + ua[a] + ub[bb] + rng.standard_normal(n)
        pq.write_table(pa.Table.from_pandas(pd.DataFrame({"y": y, "x1": x1, "a": a, "b": bb}), preserve_index=False),
                       directory / f"part-{part:04d}.parquet", row_group_size=1_000_000)


# --- children -----------------------------------------------------------------------------------


def child_bayesmer(path: str, formula: str, engine: str, draws: int, tune: int, chains: int, out: str) -> None:
    """Design (two passes), REML, the posterior: the steps of bayesmer.fit, timed one by one."""
    import warnings

    from bayesmer.builder import build_model
    from bayesmer.sources import build_design
    from bayesmer.lmer import fit_reml
    from bayesmer.priors import resolve_priors
    from bayesmer.sampling import sample

    if engine == "duckdb":
        import duckdb

        data = duckdb.sql(f"select * from read_parquet('{path}')")
    elif engine == "dask":
        import dask.dataframe as dd

        data = dd.read_parquet(path)
    else:
        data = path
    times = {}
    t0 = time.perf_counter()
    design = build_design(formula, data)
    times["design (2 passes over the data)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reml = fit_reml(design)
    times["REML"] = time.perf_counter() - t0
    result = {"n": design.n, "levels": {t.name: t.n_levels for t in design.terms},
              "reml": {"fixef": reml.fixef.round(5).to_dict(), "sigma": round(reml.sigma, 5),
                       "sd": {t.name: [round(float(v), 5) for v in reml.sd(t.name)] for t in design.terms}}}
    # written now too, so that a run stopped in the posterior still reports the design and REML
    Path(out).write_text(json.dumps(result | {"times": {k: round(v, 2) for k, v in times.items()}}))
    if draws:
        t0 = time.perf_counter()
        priors = resolve_priors(design, None)
        built = build_model(design, priors, start=reml)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampled = sample(built, design, draws=draws, tune=tune, chains=chains, seed=1, progress=False)
        times["posterior (compile + NUTS + exact draws of b)"] = time.perf_counter() - t0
        post = sampled.idata["posterior"]
        result["posterior_mean"] = {v: np.round(post[v].mean(("chain", "draw")).values, 4).tolist()
                                    for v in post.data_vars if not v.startswith("b_")}
        div = sampled.idata["sample_stats"]["diverging"].values.sum()
        result["divergences"] = int(div)
        result["sampling_timings"] = {k: round(v, 2) for k, v in sampled.timings.items()}
    result["times"] = {k: round(v, 2) for k, v in times.items()}
    Path(out).write_text(json.dumps(result))


def child_statsmodels(rows: int, G: int, out: str) -> None:
    import statsmodels.formula.api as smf

    df = chunk(rows, G, 1, 0, _group_effects(G, 1))
    t0 = time.perf_counter()
    res = smf.mixedlm("y ~ x1 + x2", df, groups=df["g"], re_formula="~x1").fit(reml=True)
    Path(out).write_text(json.dumps({"fit_s": time.perf_counter() - t0, "fixef": res.fe_params.round(4).tolist()}))


def child_bambi(rows: int, G: int, out: str) -> None:
    import bambi as bmb

    df = chunk(rows, G, 1, 0, _group_effects(G, 1))
    df["g"] = df["g"].astype(str)
    t0 = time.perf_counter()
    model = bmb.Model(FORMULA, df)
    idata = model.fit(draws=1000, tune=1000, chains=4, cores=2, random_seed=1, progressbar=False)
    Path(out).write_text(json.dumps({"fit_s": time.perf_counter() - t0,
                                     "x1": float(idata.posterior["x1"].mean())}))


R_LME4 = r"""
suppressMessages({library(lme4); library(data.table)})
args <- commandArgs(TRUE)
d <- fread(args[1]); d$g <- factor(d$g)
t0 <- proc.time()[["elapsed"]]
m <- lmer(y ~ x1 + x2 + (1 + x1 | g), data = d, REML = TRUE)
t1 <- proc.time()[["elapsed"]]
cat(sprintf('{"fit_s": %.3f, "x1": %.5f}', t1 - t0, fixef(m)[["x1"]]), file = args[2])
"""


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run under /usr/bin/time -v: wall seconds, peak RSS (GB), exit status, the child's JSON."""
    out = Path(tempfile.mktemp(suffix=".json"))
    t0 = time.perf_counter()
    # its own session, so that on timeout every process under /usr/bin/time (PyMC's workers too)
    # is killed while time itself lives to report the peak memory
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        for pid in _session(proc.pid):
            if pid != proc.pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        _, err = proc.communicate()
        status = f"stopped after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss = int(m.group(1)) / 1e6 if m else float("nan")
    res = {"status": status, "wall_s": round(wall, 1), "peak_rss_gb": round(rss, 2)}
    if out.exists():
        res.update(json.loads(out.read_text()))
        out.unlink()
    elif status != "ok":
        tail = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("\t")][-3:]
        res["error"] = " | ".join(tail)[-300:]
    return res


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (from /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 of stat, the session id
                pids.append(int(d.name))
    return pids


def load() -> str:
    return os.popen("uptime").read().strip()


# --- the benchmark ------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--crossed-rows", type=int, default=10_000_000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--crossed-draws", type=int, default=500)
    ap.add_argument("--crossed-timeout", type=float, default=3600)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-crossed", action="store_true")
    ap.add_argument("--skip-main", action="store_true")
    ap.add_argument("--peer-sizes", default="100000,1000000,10000000,30000000")
    ap.add_argument("--peer-timeout", type=float, default=600)
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    ap.add_argument("--out", default=str(HERE / "results" / "scale.md"))
    ap.add_argument("--append", action="store_true", help="add the sections run to the existing results file")
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "bayesmer":
            path, formula, engine, draws, tune, chains, out = rest
            child_bayesmer(path, formula, engine, int(draws), int(tune), int(chains), out)
        elif kind == "statsmodels":
            child_statsmodels(int(rest[0]), int(rest[1]), rest[2])
        elif kind == "bambi":
            child_bambi(int(rest[0]), int(rest[1]), rest[2])
        return

    commit = os.popen(f"git -C {HERE} rev-parse --short HEAD").read().strip()
    lines = ["# Data bigger than memory: 100 million rows from Parquet, and the peers", "",
             f"`python benchmarks/scale.py` at commit {commit}; {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB memory. "
             "Peak memory: `/usr/bin/time -v`'s maximum resident set size of the child process that "
             "does the fit (the data it holds included). Load (`uptime`) is given before each run.", ""]
    if args.append and Path(args.out).exists():
        lines = Path(args.out).read_text().rstrip("\n").split("\n") + [""]
    me = [sys.executable, __file__, "--child"]
    work = Path(tempfile.mkdtemp(prefix="bayesmer-scale-", dir=args.tmp))
    results = {}
    try:
        if not args.skip_main:
            t0 = time.perf_counter()
            gb = write_parquet(work / "main", args.rows, args.groups)
            t_write = time.perf_counter() - t0
            glob = str(work / "main" / "*.parquet")
            before = load()
            res = run_child(me + ["bayesmer", glob, FORMULA, "parquet", str(args.draws), str(args.draws), "4"], 3600)
            results["main"] = res
            lines += [f"## {args.rows:,} rows, {args.groups:,} groups: `{FORMULA}`", "",
                      f"Parquet: {gb:.2f} GB in {len(list((work / 'main').glob('*.parquet')))} files (written in "
                      f"{t_write:.0f} s, not counted). `bayesmer.fit`'s steps on the glob, 4 chains x "
                      f"{args.draws} draws after {args.draws} tuning draws. Load before: {before}", "",
                      "| step | seconds |", "|---|---|"]
            for k, v in res.get("times", {}).items():
                lines.append(f"| {k} | {v} |")
            lines += [f"| **total (child process, start to end)** | **{res['wall_s']}** |", "",
                      f"Peak resident memory: **{res['peak_rss_gb']} GB**. Status: {res['status']}. "
                      f"Divergences: {res.get('divergences')}.", "",
                      f"REML: `{json.dumps(res.get('reml'))}`", "",
                      f"Posterior means: `{json.dumps(res.get('posterior_mean'))}`", "",
                      f"Truth: {TRUE}", ""]
            if "error" in res:
                lines += [f"Error: `{res['error']}`", ""]
            shutil.rmtree(work / "main")
            Path(args.out).write_text("\n".join(lines))
        if not args.skip_crossed:
            Ga, Gb = 5000, 1000
            write_crossed(work / "crossed", args.crossed_rows, Ga, Gb)
            glob = str(work / "crossed" / "*.parquet")
            before = load()
            res = run_child(me + ["bayesmer", glob, CROSSED, "duckdb", str(args.crossed_draws),
                                  str(args.crossed_draws), "2"], args.crossed_timeout)
            results["crossed"] = res
            lines += [f"## Crossed, out of memory: {args.crossed_rows:,} rows, `{CROSSED}`, "
                      f"{Ga:,} x {Gb:,} levels, through DuckDB", "",
                      f"`duckdb.sql(\"select * from read_parquet('...')\")` handed to the design; the posterior "
                      f"2 chains x {args.crossed_draws} draws after as many tuning draws (each gradient factors the dense "
                      f"{Gb:,} x {Gb:,} block of the smaller factor). Load before: {before}", "",
                      "| step | seconds |", "|---|---|"]
            for k, v in res.get("times", {}).items():
                lines.append(f"| {k} | {v} |")
            lines += [f"| **total** | **{res['wall_s']}** |", "",
                      f"Peak resident memory: **{res['peak_rss_gb']} GB**. Status: {res['status']}.", "",
                      f"REML: `{json.dumps(res.get('reml'))}`; posterior means `{json.dumps(res.get('posterior_mean'))}`", ""]
            if "error" in res:
                lines += [f"Error: `{res['error']}`", ""]
            shutil.rmtree(work / "crossed")
            Path(args.out).write_text("\n".join(lines))
        if not args.skip_peers:
            lines += ["## The peers, same model, data in memory", "",
                      f"Each size until the peer fails or passes {args.peer_timeout:.0f} s; a peer that failed or "
                      "was stopped is not run at larger sizes. lme4: `lmer` (REML), the fit timed alone "
                      "(data.table's fread of a CSV before it); statsmodels: `MixedLM.fit(reml=True)`; bambi: "
                      "4 x 1000 draws, 1000 tuning, `cores=2`. bayesmer at the same sizes from one Parquet "
                      "file for comparison (REML and the 4 x 1000 posterior).", "",
                      "| rows | tool | status | fit s | wall s | peak memory GB | load before | note |",
                      "|---|---|---|---|---|---|---|---|"]
            sizes = [int(s) for s in args.peer_sizes.split(",")]
            dead: set[str] = set()
            for rows in sizes:
                d = work / f"peer-{rows}"
                d.mkdir()
                df = chunk(rows, args.groups, 1, 0, _group_effects(args.groups, 1))
                csv = d / "data.csv"
                df.to_csv(csv, index=False)
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / "data.parquet")
                del df
                rscript = d / "fit.R"
                rscript.write_text(R_LME4)
                runs = {
                    "lme4": ["Rscript", str(rscript), str(csv)],
                    "statsmodels": me + ["statsmodels", str(rows), str(args.groups)],
                    "bambi": me + ["bambi", str(rows), str(args.groups)],
                    "bayesmer": me + ["bayesmer", str(d / "data.parquet"), FORMULA, "parquet", "1000", "1000", "4"],
                }
                for tool, cmd in runs.items():
                    if tool in dead:
                        continue
                    before = load().split("load average:")[-1].strip()
                    res = run_child(cmd, args.peer_timeout)
                    results[f"{tool}-{rows}"] = res
                    fit_s = res.get("fit_s") or sum(res.get("times", {}).values()) or float("nan")
                    note = res.get("error", "")
                    if tool == "bayesmer" and "times" in res:
                        note = "; ".join(f"{k} {v}" for k, v in res["times"].items())
                    lines.append(f"| {rows:,} | {tool} | {res['status']} | {fit_s:.1f} | {res['wall_s']} | "
                                 f"{res['peak_rss_gb']} | {before} | {note} |")
                    Path(args.out).write_text("\n".join(lines))
                    if res["status"] != "ok" or res["peak_rss_gb"] > 20:
                        dead.add(tool)
                shutil.rmtree(d)
            lines.append("")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
        store = Path(args.out).with_suffix(".json")
        previous = json.loads(store.read_text()) if args.append and store.exists() else {}
        store.write_text(json.dumps(previous | results, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
