"""Every bundled model file fitted at its own settings: divergences, R-hat, ESS and time.

    python benchmarks/model_files.py --write

Runs ``bayesmer run models/<name>.toml`` in a subprocess per file (import, REML,
sampling, report), loads the written ``posterior.nc`` with :func:`bayesmer.load`
and writes ``benchmarks/results/model_files.md``. Goal: no divergence and every
R-hat <= 1.01.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bayesmer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("bayesmer")
    rows, ok = [], True
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "models").glob("*.toml")):
            out = Path(tmp) / path.stem
            t0 = time.perf_counter()
            subprocess.run([str(exe), "run", str(path), "--out", str(out)], check=True, capture_output=True)
            wall = time.perf_counter() - t0
            fit = bayesmer.load(out / "posterior.nc")
            s = fit.summary()
            div = int(fit.idata["sample_stats"]["diverging"].sum())
            rhat = float(s["r_hat"].max())
            ok &= div == 0 and rhat <= 1.01
            post = fit.idata["posterior"]
            rows.append(f"| {path.stem} | {fit.strategy} | {post.sizes['chain']} x {post.sizes['draw']} | {div} | "
                        f"{rhat:.4f} | {s['ess_bulk'].min():.0f} | {wall:.1f} |")
    lines = ["# Every model file at its own settings", "",
             f"`python benchmarks/model_files.py`; wall time of the whole `bayesmer run` (import, REML, sampling, "
             f"report with plots); load average at the start {load[0]:.2f} (2 cores).", "",
             "| model file | strategy | chains x draws | divergences | max R-hat | min bulk ESS | wall s |",
             "|---|---|---|---:|---:|---:|---:|", *rows, "",
             f"No divergence and every R-hat <= 1.01: {'met' if ok else 'NOT met'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / "model_files.md").write_text(text)


if __name__ == "__main__":
    main()
