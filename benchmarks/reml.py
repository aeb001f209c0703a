"""Time bayesmer's REML/ML against statsmodels, mixedlm and lme4's recorded times.

Run from the repository root::

    .venv/bin/python benchmarks/reml.py            # prints the table
    .venv/bin/python benchmarks/reml.py --write    # also writes benchmarks/results/reml.md

Every time is a whole fit from the data frame (formula parsing and design
included), the median of several runs in this one process, each on a fresh
copy of the data (mixedlm caches on the DataFrame object): wall time, and the
process's CPU time (``time.process_time``), which a loaded machine inflates
less. The reference fits are tests/data/*.json's lme4 fits and
tests/data/suite_fits.jsonl's (lme4's, nlme's and MixedModels.jl's examples);
those mixedlm cannot parse are left out of the comparison. lme4's times are
those recorded with the reference fits (tests/data/*.json, lme4 1.1-31); the
InstEval-shaped design is simulated here, so its lme4 entry is lme4's time on
the real InstEval (about 11 s), for scale only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmer
from bayesmer import reml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OUT = ROOT / "benchmarks" / "results" / "reml.md"

# statsmodels' MixedLM takes one grouping factor; crossed and nested designs
# go through variance components (vc_formula) within one all-covering group.
STATSMODELS = {
    "clark_intercepts": dict(formula="y ~ x", groups="clus", re_formula="1"),
    "clark_slopes": dict(formula="y ~ x", groups="clus", re_formula="~x"),
    "dyestuff": dict(formula="Yield ~ 1", groups="Batch", re_formula="1"),
    "dyestuff2_singular": dict(formula="Yield ~ 1", groups="Batch", re_formula="1"),
    "ogorek_crosslevel": dict(formula="y ~ x * a", groups="unit", re_formula="~x"),
    "ogorek_simple": dict(formula="y ~ x", groups="unit", re_formula="~x"),
    "pastes_nested": dict(formula="strength ~ 1", groups="batch", re_formula="1",
                          vc_formula={"cask": "0 + C(cask)"}),
    "penicillin_crossed": dict(formula="diameter ~ 1", groups="one", re_formula="0",
                               vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}),
    "sleepstudy_ml": dict(formula="Reaction ~ Days", groups="Subject", re_formula="~Days"),
    "sleepstudy_reml": dict(formula="Reaction ~ Days", groups="Subject", re_formula="~Days"),
    "sleepstudy_uncorr": None,  # independent intercept and slope: no direct spelling
}


def _median_time(fn, data: pd.DataFrame, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn(copy of data)`` (and the median CPU time in ``_median_time.cpu``).

    A fresh copy each run (made outside the clock): mixedlm answers a second
    fit on the very same DataFrame object from a cache in a few milliseconds.
    """
    times, cpus, out = [], [], None
    for _ in range(repeats):
        fresh = data.copy(deep=True)
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(fresh)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    _median_time.cpu = statistics.median(cpus)
    return statistics.median(times), out


def _statsmodels(case_id: str, data: pd.DataFrame, reml_: bool, repeats: int):
    spec = STATSMODELS.get(case_id)
    if spec is None:
        return None
    import statsmodels.formula.api as smf

    data = data.copy()
    data["one"] = 1
    kw = dict(groups=spec["groups"], re_formula=spec["re_formula"])
    if "vc_formula" in spec:
        kw["vc_formula"] = spec["vc_formula"]

    def run(df):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return smf.mixedlm(spec["formula"], df, **kw).fit(reml=reml_)

    return _median_time(run, data, repeats)[0]


def _mixedlm(formula: str, data: pd.DataFrame, reml_: bool, repeats: int):
    import mixedlm

    def run(df):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mixedlm.lmer(formula, df, REML=reml_)

    return _median_time(run, data, repeats)


def _bayesmer(formula: str, data: pd.DataFrame, method: str, repeats: int):
    def run(df):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reml(formula, df, method=method)

    return _median_time(run, data, repeats)


def simulate_insteval(seed: int = 2024) -> pd.DataFrame:
    """73,421 ratings in InstEval's shape: students s, lecturers d within dept."""
    rng = np.random.default_rng(seed)
    n, n_s, n_d, n_dept = 73_421, 2_972, 1_128, 14
    dept_of_d = rng.integers(0, n_dept, n_d)
    home = rng.integers(0, n_dept, n_s)  # a student's department
    s = rng.integers(0, n_s, n)
    # Most ratings are of lecturers in the student's department.
    own = rng.random(n) < 0.8
    by_dept = [np.flatnonzero(dept_of_d == k) for k in range(n_dept)]
    d = rng.integers(0, n_d, n)
    for k in range(n_dept):
        rows = np.flatnonzero(own & (home[s] == k))
        d[rows] = rng.choice(by_dept[k], size=rows.size)
    dept = dept_of_d[d]
    service = rng.integers(0, 2, n)
    y = (3.2 - 0.09 * service + rng.normal(0, 0.33, n_s)[s] + rng.normal(0, 0.52, n_d)[d]
         + rng.normal(0, 0.08, n_dept)[dept] + rng.normal(0, 1.18, n))
    return pd.DataFrame({
        "y": y, "service": service.astype(str),
        "s": s.astype(str), "d": d.astype(str), "dept": dept.astype(str),
    })


def _agree(fit, m) -> float:
    """Largest relative difference of θ·σ (scalar terms: the SDs) and σ, bayesmer vs mixedlm.

    Sorted, as the two may order terms with equal numbers of levels differently.
    """
    ours = np.append(np.sort(fit.theta * fit.sigma), fit.sigma)
    theirs = np.append(np.sort(np.asarray(m.theta) * m.sigma), m.sigma)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-8)))


def _references():
    """(reference, data) of every lme4 reference fit: tests/data/*.json's, then suite_fits.jsonl's."""
    for path in sorted(DATA.glob("*.json")):
        ref = json.loads(path.read_text())
        if "REML" not in ref or "lme4_seconds" not in ref:  # the lme4 fits only, not brms/glmer references
            continue
        yield ref, bayesmer.datasets.load(Path(ref["data"]).stem)
    for line in (DATA / "suite_fits.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        ref = dict(json.loads(line), REML=True)
        ref["id"] = "suite_" + ref["id"]
        stem = Path(ref["data"]).stem
        df = (bayesmer.datasets.load(stem) if stem in bayesmer.datasets.list_datasets()
              else pd.read_csv(DATA / ref["data"]))
        for col, levels in ref.get("levels", {}).items():
            df[col] = pd.Categorical(df[col].astype(str), categories=levels)
        yield ref, df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    ap.add_argument("--save", metavar="JSON", help="also save the rows (e.g. of a run on an older commit)")
    ap.add_argument("--before", metavar="JSON", help="rows saved by --save from a run of an older commit, "
                    "shown beside this run's (each run's ratios are its own, side by side)")
    args = ap.parse_args(argv)

    load = os.getloadavg()
    rows = []
    for ref, data in _references():
        method = "REML" if ref["REML"] else "ML"
        # bayesmer and mixedlm alternate, so that both see the same load
        t_b, fit = _bayesmer(ref["formula"], data, method, args.repeats)
        c_b = _median_time.cpu
        try:
            t_m, m = _mixedlm(ref["formula"], data, ref["REML"], args.repeats)
            c_m = _median_time.cpu
        except Exception as exc:  # a spelling mixedlm does not parse
            print(f"  {ref['id']}: mixedlm: {exc}", file=sys.stderr)
            t_m = c_m = m = None
        t_sm = _statsmodels(ref["id"], data, ref["REML"], max(1, args.repeats // 2))
        rows.append(dict(model=ref["id"], n=len(data), bayesmer=t_b, statsmodels=t_sm, mixedlm=t_m,
                         cpu_b=c_b, cpu_m=c_m, lme4=ref.get("lme4_seconds"),
                         agree=None if m is None else _agree(fit, m), evals=fit.n_evaluations))
        print(f"  {ref['id']}: done", file=sys.stderr)

    big = [("insteval_simulated", simulate_insteval())]
    try:
        import mixedlm

        big.append(("insteval_real (mixedlm's copy)", mixedlm.load_insteval()))
    except Exception:  # the real data only come with mixedlm
        pass
    formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
    for name, data in big:
        reps = max(1, min(3, args.repeats))
        t_b, fit = _bayesmer(formula, data, "REML", reps)
        c_b = _median_time.cpu
        t_m, m = _mixedlm(formula, data, True, reps)
        c_m = _median_time.cpu
        rows.append(dict(model=name, n=len(data), bayesmer=t_b, statsmodels=None, mixedlm=t_m,
                         cpu_b=c_b, cpu_m=c_m, lme4=11.0, agree=_agree(fit, m), evals=fit.n_evaluations))
        print(f"  {name}: done", file=sys.stderr)

    load_after = os.getloadavg()
    if args.save:
        Path(args.save).write_text(json.dumps(dict(rows=rows, load=[load[0], load_after[0]],
                                                   bayesmer=str(Path(bayesmer.__file__).parent))))
    before = json.loads(Path(args.before).read_text()) if args.before else None
    old = {r["model"]: r for r in before["rows"]} if before else {}
    print(f"load average before {load[0]:.2f}, after {load_after[0]:.2f} (1-minute)", file=sys.stderr)

    def fmt(v):
        return "n/a" if v is None else f"{v * 1e3:.1f}"

    def ratio(a, b):
        return "n/a" if a is None or b is None else f"{a / b:.1f}x"

    head = ("| model | rows | bayesmer ms | mixedlm ms | bayesmer CPU ms | mixedlm CPU ms | "
            "mixedlm / bayesmer (wall) | mixedlm / bayesmer (CPU) | statsmodels ms | lme4 ms (recorded) | "
            "lme4 / bayesmer | statsmodels / bayesmer | evals | max rel diff vs mixedlm |")
    if before:
        head += " before: bayesmer CPU ms | before: mixedlm / bayesmer (CPU) | CPU before / after |"
    lines = [head, "|" + "|".join(["---"] * (17 if before else 14)) + "|"]
    for r in rows:
        agree = "n/a" if r["agree"] is None else f"{r['agree']:.1e}"
        line = (
            f"| {r['model']} | {r['n']} | {fmt(r['bayesmer'])} | {fmt(r['mixedlm'])} | {fmt(r['cpu_b'])} | "
            f"{fmt(r['cpu_m'])} | {ratio(r['mixedlm'], r['bayesmer'])} | {ratio(r['cpu_m'], r['cpu_b'])} | "
            f"{fmt(r['statsmodels'])} | {fmt(r['lme4'])} | {ratio(r['lme4'], r['bayesmer'])} | "
            f"{ratio(r['statsmodels'], r['bayesmer'])} | {r['evals']} | {agree} |"
        )
        if before:
            o = old.get(r["model"], {})
            line += (f" {fmt(o.get('cpu_b'))} | {ratio(o.get('cpu_m'), o.get('cpu_b'))} | "
                     f"{ratio(o.get('cpu_b'), r['cpu_b'])} |")
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    if args.write:
        cpu = platform.processor() or platform.machine()
        text = (
            "# REML benchmark\n\n"
            f"`{' '.join(['.venv/bin/python', 'benchmarks/reml.py'] + (argv if argv is not None else sys.argv[1:]))}`"
            f" on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}, 1-minute load average {load[0]:.2f} before the run and "
            f"{load_after[0]:.2f} after "
            "(other processes share the machine: small-model times move by 2-3x between runs).\n\n"
            "Times: whole fit from the data frame, median of the repeats (bayesmer and mixedlm "
            f"{args.repeats} on the reference models, 3 on InstEval; statsmodels half as many). "
            "lme4: times recorded with the reference fits (lme4 1.1-31); for the InstEval rows "
            "lme4's ~11 s on the real InstEval, for scale. The last column compares bayesmer's "
            "and mixedlm's SDs and sigma.\n\n" + table + "\n"
        )
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
