"""Simulation-based calibration of bayesmer's sampler, both strategies.

Each replication draws every hyperparameter from the prior, simulates a
data set from it, fits the same model, and records the rank of the true value
among thinned posterior draws. Two designs: ``slopes``, a correlated
random-slope model ``y ~ x + (x | g)`` (results in ``benchmarks/results/``),
and ``crossed``, subjects x items with correlated random intercepts and slopes
on both factors (``--design crossed``, results in
``benchmarks/results/sbc_crossed/``).
If the sampler draws from the exact posterior, every rank is uniform
(Talts et al. 2018). Fixed, data-independent priors are used, since SBC needs
the prior the data were drawn from.

    python benchmarks/sbc.py --reps 200          # both strategies, ~35 min on 2 cores

Writes benchmarks/results/sbc_<strategy>.json (ranks per replication), sbc.md
and sbc_ranks.png. The strategies, or halves of one (``--first``), can run as parallel processes:

    python benchmarks/sbc.py --strategies marginal & python benchmarks/sbc.py --strategies full --reps 100
    python benchmarks/sbc.py --strategies full --reps 100 --first 100
    python benchmarks/sbc.py --design crossed --strategies marginal --reps 400 --seed 8808

Response families (issue 17): ``--family negbinomial`` and ``--family cumulative`` (random intercepts,
bayesmer's default strategy), ranks to ``benchmarks/results/sbc_families/sbc_<family>.json`` and the table to
``benchmarks/results/sbc_<family>.md``:

    nice -n 10 python benchmarks/sbc.py --family negbinomial --reps 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import bayesmer

RESULTS = Path(__file__).parent / "results"
FORMULA = "y ~ x + (x | g)"
PRIORS = {"fixed": "Normal(0, 1)", "sd": "HalfNormal(1)", "sigma": "HalfNormal(1)", "corr": "LKJ(2)"}
GROUPS, PER_GROUP = 20, 8
THIN_TO = 99  # ranks 0..99, binned into 10 bins of 10
PARAMS = ["beta[0]", "beta[1]", "sd[0]", "sd[1]", "corr", "sigma"]


def draw_truth(rng: np.random.Generator) -> dict:
    """One draw of the hyperparameters from PRIORS."""
    # LKJ(2) for a 2x2 matrix: (r + 1) / 2 ~ Beta(2, 2)
    return {
        "beta": rng.normal(0, 1, 2),
        "sd": np.abs(rng.normal(0, 1, 2)),
        "corr": 2 * rng.beta(2, 2) - 1,
        "sigma": abs(rng.normal(0, 1)),
    }


def simulate(truth: dict, rng: np.random.Generator) -> pd.DataFrame:
    g = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=g.size)
    r = truth["corr"]
    chol = np.linalg.cholesky(np.array([[1, r], [r, 1]]))
    b = (rng.standard_normal((GROUPS, 2)) @ chol.T) * truth["sd"]
    mu = truth["beta"][0] + b[g, 0] + (truth["beta"][1] + b[g, 1]) * x
    y = mu + truth["sigma"] * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def _flat(fit, name):
    a = np.asarray(fit.idata["posterior"][name].values)
    return a.reshape((-1,) + a.shape[2:])


def ranks_of(draws: list[np.ndarray], values: list[float]) -> list[int]:
    idx = np.linspace(0, draws[0].shape[0] - 1, THIN_TO).round().astype(int)
    return [int((d[idx] < v).sum()) for d, v in zip(draws, values)]


def ranks(fit, truth: dict) -> list[int]:
    beta, sd, corr, sigma = _flat(fit, "beta"), _flat(fit, "sd_g"), _flat(fit, "corr_g")[:, 0], _flat(fit, "sigma")
    draws = [beta[:, 0], beta[:, 1], sd[:, 0], sd[:, 1], corr, sigma]
    values = [truth["beta"][0], truth["beta"][1], truth["sd"][0], truth["sd"][1], truth["corr"], truth["sigma"]]
    return ranks_of(draws, values)


# -- crossed: subjects x items, correlated intercepts and slopes on both factors
SUBJECTS, ITEMS = 12, 10


def draw_truth_crossed(rng: np.random.Generator) -> dict:
    return {
        "beta": rng.normal(0, 1, 2),
        "sd_subj": np.abs(rng.normal(0, 1, 2)),
        "corr_subj": 2 * rng.beta(2, 2) - 1,
        "sd_item": np.abs(rng.normal(0, 1, 2)),
        "corr_item": 2 * rng.beta(2, 2) - 1,
        "sigma": abs(rng.normal(0, 1)),
    }


def _effects(rng, n, sd, r):
    chol = np.linalg.cholesky(np.array([[1, r], [r, 1]]))
    return (rng.standard_normal((n, 2)) @ chol.T) * sd


def simulate_crossed(truth: dict, rng: np.random.Generator) -> pd.DataFrame:
    s, i = (a.ravel() for a in np.meshgrid(np.arange(SUBJECTS), np.arange(ITEMS), indexing="ij"))
    x = rng.choice([-0.5, 0.5], size=s.size)
    bs = _effects(rng, SUBJECTS, truth["sd_subj"], truth["corr_subj"])
    bi = _effects(rng, ITEMS, truth["sd_item"], truth["corr_item"])
    mu = truth["beta"][0] + bs[s, 0] + bi[i, 0] + (truth["beta"][1] + bs[s, 1] + bi[i, 1]) * x
    y = mu + truth["sigma"] * rng.standard_normal(s.size)
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{v}" for v in s], "item": [f"i{v}" for v in i]})


def ranks_crossed(fit, truth: dict) -> list[int]:
    beta, sigma = _flat(fit, "beta"), _flat(fit, "sigma")
    ss, si = _flat(fit, "sd_subj"), _flat(fit, "sd_item")
    cs, ci = _flat(fit, "corr_subj")[:, 0], _flat(fit, "corr_item")[:, 0]
    draws = [beta[:, 0], beta[:, 1], ss[:, 0], ss[:, 1], cs, si[:, 0], si[:, 1], ci, sigma]
    values = [*truth["beta"], *truth["sd_subj"], truth["corr_subj"], *truth["sd_item"], truth["corr_item"],
              truth["sigma"]]
    return ranks_of(draws, values)


# -- response families (issue 17): negative binomial and cumulative logit, random intercepts
FAM_GROUPS, FAM_PER_GROUP = 20, 10
NB_PRIORS = {"fixed": "Normal(0, 1)", "sd": "HalfNormal(1)", "shape": "Gamma(2, 0.5)"}
# the thresholds' prior is Normal(0, 2) on each, restricted to increasing ones: the sorted draws of
# three independent Normal(0, 2)
CUM_PRIORS = {"fixed": "Normal(0, 1)", "sd": "HalfNormal(1)", "Intercept": "Normal(0, 2)"}
CUM_K = 4  # categories


def _x_and_g(rng):
    g = np.repeat(np.arange(FAM_GROUPS), FAM_PER_GROUP)
    return rng.normal(size=g.size), g


def draw_truth_nb(rng: np.random.Generator) -> dict:
    return {"beta": rng.normal(0, 1, 2), "sd": abs(rng.normal(0, 1)), "shape": rng.gamma(2.0, 1 / 0.5)}


def simulate_nb(truth: dict, rng: np.random.Generator) -> pd.DataFrame:
    x, g = _x_and_g(rng)
    b = rng.normal(0, truth["sd"], FAM_GROUPS)
    mu = np.exp(truth["beta"][0] + truth["beta"][1] * x + b[g])
    k = truth["shape"]
    y = rng.poisson(rng.gamma(k, mu / k))  # Var = mu + mu^2 / shape
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g]})


def draw_truth_cum(rng: np.random.Generator) -> dict:
    return {"beta": rng.normal(0, 1), "sd": abs(rng.normal(0, 1)),
            "thresholds": np.sort(rng.normal(0, 2, CUM_K - 1))}


def simulate_cum(truth: dict, rng: np.random.Generator) -> pd.DataFrame:
    """P(Y <= k) = logistic(threshold_k - eta), eta = beta x + b_g (no intercept)."""
    x, g = _x_and_g(rng)
    b = rng.normal(0, truth["sd"], FAM_GROUPS)
    eta = truth["beta"] * x + b[g]
    latent = eta + rng.logistic(size=x.size)
    y = 1 + np.searchsorted(truth["thresholds"], latent)  # categories 1..K
    cat = pd.Categorical(y, categories=list(range(1, CUM_K + 1)), ordered=True)
    return pd.DataFrame({"y": cat, "x": x, "g": [f"g{v}" for v in g]})


def _dpar_draws(fit, name):
    """A family parameter's draws, (draws,) or (draws, k)."""
    return _flat(fit, name)


def ranks_nb(fit, truth: dict) -> list[int]:
    beta, sd, shape = _flat(fit, "beta"), _flat(fit, "sd_g")[:, 0], _dpar_draws(fit, "shape")
    return ranks_of([beta[:, 0], beta[:, 1], sd, shape],
                    [truth["beta"][0], truth["beta"][1], truth["sd"], truth["shape"]])


def ranks_cum(fit, truth: dict) -> list[int]:
    beta, sd, thr = _flat(fit, "beta")[:, 0], _flat(fit, "sd_g")[:, 0], _dpar_draws(fit, "Intercept")
    return ranks_of([beta, sd] + [thr[:, k] for k in range(CUM_K - 1)],
                    [truth["beta"], truth["sd"], *truth["thresholds"]])


@dataclasses.dataclass(frozen=True)
class Design:
    formula: str
    title: str
    params: list
    draw_truth: object
    simulate: object
    ranks: object
    results: Path
    priors: dict = dataclasses.field(default_factory=lambda: PRIORS)
    family: str = "gaussian"


DESIGNS = {
    "slopes": Design(FORMULA, f"`{FORMULA}`, {GROUPS} groups x {PER_GROUP} rows", PARAMS, draw_truth, simulate,
                     ranks, RESULTS),
    "crossed": Design(
        "y ~ x + (1 + x | subj) + (1 + x | item)",
        f"`y ~ x + (1 + x | subj) + (1 + x | item)`, {SUBJECTS} subjects x {ITEMS} items, one row each",
        ["beta[0]", "beta[1]", "sd_subj[0]", "sd_subj[1]", "corr_subj", "sd_item[0]", "sd_item[1]", "corr_item",
         "sigma"],
        draw_truth_crossed, simulate_crossed, ranks_crossed, RESULTS / "sbc_crossed",
    ),
    "negbinomial": Design(
        "y ~ x + (1 | g)", f"negative binomial `y ~ x + (1 | g)`, {FAM_GROUPS} groups x {FAM_PER_GROUP} rows",
        ["(Intercept)", "x", "sd_g", "shape"], draw_truth_nb, simulate_nb, ranks_nb, RESULTS / "sbc_families",
        NB_PRIORS, "negbinomial"),
    "cumulative": Design(
        "y ~ x + (1 | g)",
        f"cumulative logit `y ~ x + (1 | g)`, {CUM_K} categories, {FAM_GROUPS} groups x {FAM_PER_GROUP} rows",
        ["x", "sd_g"] + [f"Intercept[{k}]" for k in range(1, CUM_K)], draw_truth_cum, simulate_cum, ranks_cum,
        RESULTS / "sbc_families", CUM_PRIORS, "cumulative"),
}
FAMILY_DESIGNS = ("negbinomial", "cumulative")


def run(design: Design, strategy: str, reps: int, seed: int, draws: int, tune: int, first: int = 0,
        checkpoint=None) -> dict:
    out = {"ranks": [], "divergences": [], "seconds": []}
    for rep in range(first, first + reps):
        rng = np.random.default_rng([seed, rep])
        truth = design.draw_truth(rng)
        data = design.simulate(truth, rng)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {} if design.family == "gaussian" else {"family": design.family}
            try:
                fit = bayesmer.fit(
                    design.formula, data, priors=design.priors, draws=draws, tune=tune, chains=2,
                    seed=seed * 100_000 + rep, strategy=strategy, progress=False, **kw,
                )
            except Exception as exc:  # noqa: BLE001 - a family fit that fails is a result: counted, its data kept
                if design.family == "gaussian":
                    raise
                out.setdefault("failed", []).append({"rep": rep, "error": f"{type(exc).__name__}: {exc}"[:300]})
                design.results.mkdir(parents=True, exist_ok=True)
                data.to_csv(design.results / f"failed_{design.family}_{seed}_{rep}.csv", index=False)
                print(f"  rep {rep} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
        out["seconds"].append(time.perf_counter() - t0)
        out["ranks"].append(design.ranks(fit, truth))
        out["divergences"].append(int(np.asarray(fit.idata["sample_stats"]["diverging"].values).sum()))
        if (rep - first) % 20 == 19:
            print(f"  {strategy}: {rep - first + 1}/{reps} replications", flush=True)
            if checkpoint:
                checkpoint(out)
    return out


def uniformity(r: np.ndarray, bins: int = 10) -> tuple[np.ndarray, float]:
    counts = np.histogram(r, bins=bins, range=(0, THIN_TO + 1))[0]
    return counts, float(stats.chisquare(counts).pvalue)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--strategies", nargs="+", default=["marginal", "full"])
    ap.add_argument("--first", type=int, default=0, help="index of the first replication (to split a run)")
    ap.add_argument("--report-only", action="store_true", help="rebuild sbc.md/png from the sbc_<strategy>.json files")
    ap.add_argument("--design", choices=list(DESIGNS), default="slopes")
    ap.add_argument("--family", choices=FAMILY_DESIGNS, default=None,
                    help="a response family's design (the default strategy); results/sbc_<family>.md")
    args = ap.parse_args()
    logging.getLogger("pymc").setLevel(logging.ERROR)
    if args.family:
        return main_family(args)
    design = DESIGNS[args.design]
    results = design.results
    results.mkdir(exist_ok=True)
    if not args.report_only:
        # one file per strategy, so that strategies can run as parallel processes
        for strategy in args.strategies:
            print(f"{strategy}: {args.reps} replications", flush=True)
            res = run(design, strategy, args.reps, args.seed, args.draws, args.tune, args.first)
            res.update(formula=design.formula, priors=PRIORS, design=args.design, reps=args.reps,
                       draws=args.draws, tune=args.tune, chains=2, seed=args.seed, thinned_to=THIN_TO)
            part = "" if args.first == 0 else f".{args.first}"
            (results / f"sbc_{strategy}{part}.json").write_text(json.dumps(res, indent=1))
    report(design)


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main_family(args) -> None:
    """``--family``: one design, bayesmer's default strategy, ranks to sbc_families/sbc_<family>[.<first>].json."""
    import os
    import subprocess

    design = DESIGNS[args.family]
    design.results.mkdir(parents=True, exist_ok=True)
    part = "" if args.first == 0 else f".{args.first}"
    path = design.results / f"sbc_{args.family}{part}.json"
    if not args.report_only:
        load_before = _load()
        print(f"{args.family}: {args.reps} replications, load {load_before}", flush=True)
        t0 = time.perf_counter()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

        def save(res, done=False):  # every 20 replications too, so that a stopped run keeps what it did
            res = dict(res, formula=design.formula, family=design.family, priors=design.priors, design=args.family,
                       reps=args.reps, first=args.first, draws=args.draws, tune=args.tune, chains=2, seed=args.seed,
                       thinned_to=THIN_TO, load_before=load_before, load_after=_load(), cpus=os.cpu_count(),
                       wall_s=time.perf_counter() - t0, commit=commit, when=when, complete=done)
            path.write_text(json.dumps(res, indent=1))

        save(run(design, "auto", args.reps, args.seed, args.draws, args.tune, args.first, checkpoint=save), True)
    report_family(design, args.family)


def report_family(design: Design, family: str) -> None:
    """Uniformity per parameter from every sbc_families/sbc_<family>[.<first>].json; results/sbc_<family>.md."""
    parts = sorted((json.loads(p.read_text()) for p in design.results.glob(f"sbc_{family}*.json")),
                   key=lambda p: p["first"])
    if not parts:
        raise SystemExit(f"no sbc_{family}*.json results to report")
    ranks = np.array([r for p in parts for r in p["ranks"]])
    failed = [f for p in parts for f in p.get("failed", [])]
    div = [d for p in parts for d in p["divergences"]]
    secs = [x for p in parts for x in p["seconds"]]
    first = parts[0]
    lines = [f"# SBC: {design.title}", "",
             f"`python benchmarks/sbc.py --family {family} --reps {first['reps']}`"
             + (" then, to make up for the fits that raised, "
                + "; ".join(f"`--first {p['first']} --reps {p['reps']}`" for p in parts if p["first"])
                if len(parts) > 1 else "") + f"; seed {first['seed']}; bayesmer's default "
             f"strategy; priors {design.priors}; 2 chains x {first['draws']} draws ({first['tune']} tune) per fit; "
             f"rank of the true value among {THIN_TO} thinned draws, 10 bins; chi-square uniformity test per "
             "parameter (pass: p > 0.01).", "",
             "Run: " + "; ".join(f"{p['when']}, commit {p['commit']}, {len(p['ranks'])} replications"
                                 f"{'' if p.get('complete', True) else ' (stopped before the end)'} in "
                                 f"{p['wall_s']:.0f} s, load (1/5/15 min) {p['load_before']} before and "
                                 f"{p['load_after']} after, {p['cpus']} CPUs" for p in parts) + ".", "",
             "| parameter | replications | chi2 p-value | bin counts |", "|---|---|---|---|"]
    per = {}
    for j, name in enumerate(design.params):
        counts, p = uniformity(ranks[:, j])
        per[name] = {"p_value": p, "counts": counts.tolist()}
        lines.append(f"| {name} | {len(ranks)} | {p:.3f} | {' '.join(map(str, counts))} |")
    ok = all(v["p_value"] > 0.01 for v in per.values())
    if failed:
        lines += ["", "Fits that raised (not in the ranks; their data in "
                  f"`sbc_families/failed_{family}_<seed>_<rep>.csv`): "
                  f"{len(failed)}: " + "; ".join(f"rep {f['rep']}: {f['error'][:150]}" for f in failed) + ". "
                  "Leaving them out keeps the ranks uniform: whether a fit raises depends on the data set alone, and "
                  "given the data the true values are draws from the same posterior the sampler draws from."]
    lines += ["", f"Fits with divergences: {sum(d > 0 for d in div)} of {len(div)}; median {np.median(secs):.2f} s "
              f"per fit (max {np.max(secs):.1f} s).", "",
              f"Every parameter uniform at p > 0.01: {'yes' if ok else 'NO'}."]
    (RESULTS / f"sbc_{family}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(design: Design) -> None:
    """Uniformity tests, table and rank histograms from every sbc_<strategy>.json."""
    results = design.results
    runs: dict[str, dict] = {}
    for path in sorted(results.glob("sbc_*.json")):  # sbc_<strategy>[.<first>].json
        strategy = path.stem.removeprefix("sbc_").split(".")[0]
        part = json.loads(path.read_text())
        if strategy in runs:
            for key in ("ranks", "divergences", "seconds"):
                runs[strategy][key] += part[key]
        else:
            runs[strategy] = part
    if not runs:
        raise SystemExit("no sbc_<strategy>.json results to report")
    first = next(iter(runs.values()))
    lines = [f"# SBC: {design.title}", "",
             f"`python benchmarks/sbc.py{'' if design.results == RESULTS else ' --design crossed'}`; "
             f"seed {first['seed']}; priors {PRIORS}; 2 chains x {first['draws']} draws "
             f"({first['tune']} tune) per fit; rank of the true value among {THIN_TO} thinned draws, 10 bins; "
             "chi-square uniformity test per parameter (pass: p > 0.01).", "",
             "| strategy | replications | parameter | chi2 p-value | bin counts |", "|---|---|---|---|---|"]
    summary = {}
    for strategy, res in runs.items():
        r = np.array(res["ranks"])
        per = {}
        for j, name in enumerate(design.params):
            counts, p = uniformity(r[:, j])
            per[name] = {"p_value": p, "counts": counts.tolist()}
            lines.append(f"| {strategy} | {len(r)} | {name} | {p:.3f} | {' '.join(map(str, counts))} |")
        divergent = int(np.sum(np.array(res["divergences"]) > 0))
        summary[strategy] = {"parameters": per, "replications": len(r), "divergent_fits": divergent,
                             "median_seconds_per_fit": float(np.median(res["seconds"]))}
        lines.append(f"| {strategy} | | fits with divergences: {divergent}; median {np.median(res['seconds']):.2f} s "
                     "per fit | | |")
    ok = all(v["p_value"] > 0.01 for s in summary.values() for v in s["parameters"].values())
    lines += ["", f"Every parameter uniform at p > 0.01 under every strategy: {'yes' if ok else 'NO'}."]
    (results / "sbc.md").write_text("\n".join(lines) + "\n")
    plot({"reps": len(r), "strategies": summary}, design)
    print("\n".join(lines))


def plot(result: dict, design: Design) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(result["strategies"])
    params = design.params
    fig, axes = plt.subplots(len(strategies), len(params), figsize=(2.4 * len(params), 2.2 * len(strategies)),
                             squeeze=False)
    reps = result["reps"]
    band = stats.binom.interval(0.99, reps, 0.1)
    for i, s in enumerate(strategies):
        for j, name in enumerate(params):
            ax = axes[i, j]
            counts = result["strategies"][s]["parameters"][name]["counts"]
            ax.bar(np.arange(10), counts, width=1.0, color="C0", edgecolor="white")
            ax.axhspan(*band, color="C7", alpha=0.3)
            p = result["strategies"][s]["parameters"][name]["p_value"]
            ax.set_title(f"{s} {name}\np={p:.2f}", fontsize=8)
            ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(design.results / "sbc_ranks.png", dpi=80)


if __name__ == "__main__":
    main()
