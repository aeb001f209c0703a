"""Centred or non-centred random effects in a GLMM: what bayesmer's per-term choice rests on.

For each model, every per-term parameterisation that `choose_centring` could pick (all
non-centred, all centred, and its own choice) is sampled with two seeds (4 x 1000 draws after
1000 tuning steps, nutpie on the compiled density); printed: min bulk ESS of the
hyperparameters and fixed effects, min ESS per sampling second, max R-hat and divergences.

    python benchmarks/glmm_centring.py [--write]   # -> benchmarks/results/glmm_centring.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def _cases():
    cbpp = pd.read_csv(DATA / "glmer_cbpp.csv", dtype={"herd": str, "period": str})
    sim = pd.read_csv(DATA / "glmer_poisson_sim.csv")
    verb = pd.read_csv(DATA / "glmer_verbagg.csv")
    return [
        ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"),
        ("poisson slope", "y ~ x + (1 + x | g)", sim, "poisson"),
        ("poisson crossed", "y3 ~ x + (1 + x | g) + (1 | h)", sim, "poisson"),
        ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", verb, "binomial"),
    ]


def main() -> None:
    import arviz_stats as azs

    from bayesmer.builder import build_glmm
    from bayesmer.family import get_family
    from bayesmer.glmer_fit import fit_glmer, glmm_design
    from bayesmer.priors import resolve_priors
    from bayesmer.sampling import sample_glmm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [
        "# GLMM parameterisation per term: centred or non-centred",
        "",
        f"`python benchmarks/glmm_centring.py --write` on {head.strip()}; load before: {os.getloadavg()[0]:.1f}",
        "(2 cores, shared). 4 chains x 1000 draws, 1000 tune; two seeds per row.",
        "",
        "| model | terms | centred | auto | min ESS | ESS/s | max R-hat | divergences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, formula, data, fam in _cases():
        F = get_family(fam)
        gd = glmm_design(formula, data, F)
        point = fit_glmer(gd)
        priors = resolve_priors(gd, None, family=F)
        auto = build_glmm(gd, priors, start=point).density.term_cent.astype(bool)
        nt = len(gd.terms)
        for cent in dict.fromkeys([(False,) * nt, (True,) * nt, tuple(bool(c) for c in auto)]):
            built = build_glmm(gd, priors, start=point, centred=cent)
            cells = []
            for seed in (1, 2):
                s = sample_glmm(built, gd, seed=seed, progress=False, log_likelihood=False)
                post = s.idata["posterior"].to_dataset()
                keep = [v for v in post.data_vars if not v.startswith("b_")]
                ess, rh = azs.ess(post[keep]), azs.rhat(post[keep])
                mins = min(float(ess[v].min()) for v in keep)
                cells.append((mins, mins / s.timings["sampling"], max(float(rh[v].max()) for v in keep),
                              int(s.idata["sample_stats"]["diverging"].sum())))
            row = (f"| {name} | {', '.join(t.name for t in gd.terms)} | {''.join('c' if c else 'n' for c in cent)} "
                   f"| {''.join('c' if c else 'n' for c in auto)} | "
                   + " | ".join(" / ".join(fmt.format(c[i]) for c in cells)
                                for i, fmt in enumerate(("{:.0f}", "{:.0f}", "{:.3f}", "{:d}"))) + " |")
            print(row, flush=True)
            lines.append(row)
    lines += ["", f"load after: {os.getloadavg()[0]:.1f}. `c` centred, `n` non-centred, per term in the order listed."]
    if args.write:
        (ROOT / "benchmarks" / "results" / "glmm_centring.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
