"""REML fit times of this checkout against another commit's, in alternating processes.

    git worktree add --detach /tmp/before <commit>
    python benchmarks/reml_vs_commit.py /tmp/before/src --write

Each process imports bayesmer from one source tree (PYTHONPATH), fits every lme4
reference model (the median of ``--repeats`` fits, the whole fit from the data
frame) and the InstEval-shaped crossed design of ``benchmarks/reml.py`` (the
fastest of 3), and prints JSON; the two trees take turns ``--rounds`` times and
each figure is the median over rounds. Writes ``benchmarks/results/reml_vs_commit.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"

CHILD = r"""
import json, statistics, sys, time, warnings
from pathlib import Path
import pandas as pd
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import bayesmer
from reml import simulate_insteval
data_dir = Path(sys.argv[3])
repeats = int(sys.argv[4])
fits = ["clark_intercepts", "clark_slopes", "dyestuff", "dyestuff2_singular", "ogorek_crosslevel", "ogorek_simple",
        "pastes_nested", "penicillin_crossed", "sleepstudy_ml", "sleepstudy_reml", "sleepstudy_uncorr"]
out = {}
warnings.simplefilter("ignore")
for name in fits:
    ref = json.loads((data_dir / f"{name}.json").read_text())
    data = bayesmer.datasets.load(Path(ref["data"]).stem)
    method = "REML" if ref["REML"] else "ML"
    bayesmer.reml(ref["formula"], data, method=method)  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bayesmer.reml(ref["formula"], data, method=method)
        times.append(time.perf_counter() - t0)
    out[name] = statistics.median(times)
df = simulate_insteval()
times = []
for _ in range(3):
    t0 = time.perf_counter()
    fit = bayesmer.reml("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", df)
    times.append(time.perf_counter() - t0)
out["insteval_simulated"] = min(times)
print(json.dumps(out))
"""


def run(src: str, repeats: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, src, str(ROOT / "benchmarks"), str(ROOT / "tests" / "data"), str(repeats)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the other commit's src directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    now, before = [], []
    for _ in range(args.rounds):
        before.append(run(args.before, args.repeats))
        now.append(run(str(ROOT / "src"), args.repeats))
    load_after = os.getloadavg()
    commit = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"

    def med(runs, key):
        vals = sorted(r[key] for r in runs)
        return vals[len(vals) // 2]

    lines = ["# REML fit time: this checkout against an earlier commit", "",
             f"`python benchmarks/reml_vs_commit.py {args.before}` (commit {commit}); {args.rounds} alternating rounds, each the median "
             f"of {args.repeats} fits per model (InstEval shape: fastest of 3); figure = median over rounds. "
             f"Load average before {load[0]:.2f}, after {load_after[0]:.2f} (2 cores).", "",
             "| model | before (ms) | now (ms) | now / before |", "|---|---:|---:|---:|"]
    slower = []
    for key in now[0]:
        b, n = med(before, key) * 1000, med(now, key) * 1000
        lines.append(f"| {key} | {b:.1f} | {n:.1f} | {n / b:.2f} |")
        if n > b:
            slower.append(key)
    lines += ["", f"Slower than before: {', '.join(slower) if slower else 'none'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (OUT / "reml_vs_commit.md").write_text(text)


if __name__ == "__main__":
    main()
