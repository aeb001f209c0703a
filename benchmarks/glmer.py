"""Time bayesmer's glmer against lme4's glmer (R) on the reference models.

Run from the repository root::

    .venv/bin/python benchmarks/glmer.py            # prints the table
    .venv/bin/python benchmarks/glmer.py --write    # also writes benchmarks/results/glmer.md

Both sides fit the models of tests/test_glmer.py from the same CSV files,
in one session: bayesmer in this process (the median of ``--repeats`` whole
fits, formula and design included, after one warm-up fit), then lme4 through
``Rscript`` (the median of as many ``system.time(glmer(...))`` fits). The
machine's load average is read before and after each side, as other
processes share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_glmer import MODELS, load, ref  # noqa: E402  (one list of models for tests and timings)

from bayesmer import glmer  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "glmer.md"

# lme4's spelling of each model: (data set, R formula, extra glmer arguments).
R_MODELS = {
    "cbpp_cbind": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "family = binomial"),
    "cbpp_weights": ("cbpp", "incidence / size ~ period + (1 | herd)", "family = binomial, weights = size"),
    "cbpp_probit": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "family = binomial('probit')"),
    "cbpp_cloglog": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "family = binomial('cloglog')"),
    "grouseticks": ("grouseticks", "TICKS ~ YEAR + sHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "family = poisson"),
    "verbagg": ("verbagg", "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)", "family = binomial"),
    "poisson_slope": ("poisson_sim", "y ~ x + (1 + x | g)", "family = poisson"),
    "poisson_slope_crossed": ("poisson_sim", "y3 ~ x + (1 + x | g) + (1 | h)", "family = poisson"),
    "poisson_offset": ("poisson_sim", "yrate ~ x + (1 | g)", "family = poisson, offset = log(expo)"),
    "verbagg2000": ("verbagg[1:2000, ]", "r2 ~ Anger + btype + (1 | id)", "family = binomial"),
    "singular": ("singular", "y ~ x + (1 | g)", "family = binomial"),
}

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
rd <- function(name, factors) {
  d <- read.csv(file.path("tests/data", paste0("glmer_", name, ".csv")))
  for (f in factors) d[[f]] <- factor(d[[f]])
  d
}
cbpp <- rd("cbpp", c("herd", "period"))
grouseticks <- rd("grouseticks", c("INDEX", "BROOD", "YEAR", "LOCATION"))
verbagg <- rd("verbagg", c("Gender", "item", "id", "btype", "situ", "r2"))
poisson_sim <- rd("poisson_sim", c("g", "h"))
singular <- rd("singular", "g")
args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[1])
models <- jsonlite::fromJSON(args[2])
out <- list()
for (name in names(models)) {
  m <- models[[name]]
  call <- sprintf("glmer(%s, data = %s, %s)", m[2], m[1], m[3])
  fit <- function() suppressMessages(eval(parse(text = call)))
  fit()
  out[[name]] <- median(replicate(reps, system.time(fit())[["elapsed"]]))
}
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def time_bayesmer(repeats: int) -> tuple[dict[str, float], dict]:
    out, fits = {}, {}
    for name, (formula, data, kw) in MODELS.items():
        frame = load(data)
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the singular model's message
            for i in range(repeats + 1):
                t = time.perf_counter()
                fits[name] = glmer(formula, frame, **kw)
                if i:  # the first fit warms caches (imports, formula parses)
                    times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    return out, fits


def accuracy(name: str, fit) -> tuple[float, float, float, float, float]:
    """Largest relative differences from lme4 (fixef, SE, SD/corr), and -2 log L and deviance differences."""
    r = ref(name)

    def rel(a, b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return float(np.max(np.abs(a - b) / np.abs(b)))

    vc = fit.varcorr
    sd = []
    for row in r["varcorr"]:
        kind, t2 = ("corr", row["var2"]) if row["var2"] else ("sd", "")
        got = vc[(vc.kind == kind) & (vc.group == row["grp"]) & (vc.term1 == row["var1"]) & (vc.term2 == t2)]
        if row["sdcor"] != 0:
            sd.append(abs(got.value.iloc[0] - row["sdcor"]) / abs(row["sdcor"]))
    return (
        rel(fit.fixef, list(r["fixef"].values())),
        rel(fit.se, list(r["se"].values())),
        max(sd, default=0.0),
        abs(fit.minus2loglik - r["minus2loglik"]),
        abs(fit.deviance - r["deviance"]),
    )


def time_lme4(repeats: int) -> dict[str, float]:
    models = json.dumps({k: list(v) for k, v in R_MODELS.items()})
    res = subprocess.run(
        ["Rscript", "-e", R_SCRIPT, str(repeats), models],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    load0 = loadavg()
    ours, fits = time_bayesmer(args.repeats)
    load1 = loadavg()
    theirs = time_lme4(args.repeats)
    load2 = loadavg()
    lines = [
        "# glmer: bayesmer against lme4",
        "",
        f"Command: `.venv/bin/python benchmarks/glmer.py --repeats {args.repeats} --write`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"lme4 via Rscript. Load average (1, 5, 15 min) before bayesmer {load0}, after it {load1}, "
        f"after lme4 {load2}: other processes share the cores, so both columns carry their noise.",
        "",
        f"Median of {args.repeats} whole fits each (bayesmer after one warm-up fit; lme4 after one).",
        "",
        "| model | n | bayesmer (s) | lme4 (s) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (formula, data, kw) in MODELS.items():
        n = len(load(data))
        a, b = ours[name], theirs[name]
        lines.append(f"| {name} | {n} | {a:.3f} | {b:.3f} | {a / b:.1f}x |")
    lines += [
        "",
        "Agreement with lme4 (tests/data/glmer_*.json, lme4 1.1-31): largest relative difference of the",
        "fixed effects, their SEs and the SDs/correlations; absolute difference of -2 log L and of",
        "lme4's deviance() (the conditional deviance).",
        "",
        "| model | fixef | SE | SD/corr | -2 log L | deviance |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in MODELS:
        a = accuracy(name, fits[name])
        lines.append(f"| {name} | " + " | ".join(f"{v:.1e}" for v in a) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        OUT.write_text(text)


if __name__ == "__main__":
    main()
