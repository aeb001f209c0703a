"""CPU time per ``bayesmer.reml()`` call, split into build_design and fit_reml.

Run from the repository root::

    .venv/bin/python benchmarks/reml_overhead.py [--repeats 60] [--profile ID]

CPU time (``time.process_time``), the median over many repeats, so that a
loaded machine does not inflate it as wall time would. Each repeat runs on a
fresh copy of the data made outside the clock. ``--profile ID`` prints the
cProfile of ``reml()`` on one reference model, sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd

import bayesmer
from bayesmer.design import build_design
from bayesmer.lmer import fit_reml, reml

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def cases():
    for path in sorted(DATA.glob("*.json")):
        spec = json.loads(path.read_text())
        if "REML" not in spec:
            continue
        yield spec["id"], spec["formula"], "REML" if spec["REML"] else "ML", bayesmer.datasets.load(Path(spec["data"]).stem)


def cpu_median(fn, data, repeats):
    times = []
    for _ in range(repeats):
        fresh = data.copy(deep=True)
        t0 = time.process_time()
        fn(fresh)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.profile:
        for cid, formula, method, data in cases():
            if cid == args.profile:
                for _ in range(5):
                    reml(formula, data.copy(), method=method)
                pr = cProfile.Profile()
                pr.enable()
                for _ in range(50):
                    reml(formula, data.copy(), method=method)
                pr.disable()
                pstats.Stats(pr).sort_stats("cumtime").print_stats(45)
        return
    print(f"{'model':22s} {'design':>8s} {'fit':>8s} {'reml()':>8s}   (ms CPU, median of {args.repeats})")
    for cid, formula, method, data in cases():
        if args.only and cid not in args.only:
            continue
        for _ in range(3):  # warm caches and imports
            reml(formula, data.copy(), method=method)
        design = build_design(formula, data)
        t_d = cpu_median(lambda d: build_design(formula, d), data, args.repeats)
        t_f = cpu_median(lambda d: fit_reml(design, method=method), data, args.repeats)
        t_r = cpu_median(lambda d: reml(formula, d, method=method), data, args.repeats)
        print(f"{cid:22s} {1e3 * t_d:8.2f} {1e3 * t_f:8.2f} {1e3 * t_r:8.2f}", flush=True)


if __name__ == "__main__":
    main()
