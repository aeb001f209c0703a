"""VerbAgg, bayesmer against bambi only, for a quiet machine (the addendum of results/nuts_glmm.md).

``benchmarks/nuts.py --glmm`` runs brms too (17 minutes for VerbAgg); this is the short re-run of
the two Python tools, to be run with nothing else on the machine. Prints, per tool, the total
seconds, min bulk/tail ESS (fixed effects and SDs) and min ESS per total second, and the load.

    python benchmarks/verbagg_quiet.py
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "glmer_verbagg.csv"


def main() -> None:
    import arviz_stats as azs
    import bambi as bmb

    import bayesmer

    warnings.simplefilter("ignore")
    va = pd.read_csv(DATA)
    print("load before", os.getloadavg())
    for rep in range(2):
        t = time.perf_counter()
        fit = bayesmer.fit("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", va, family="binomial",
                           seed=1, progress=False, log_likelihood=False)
        total = time.perf_counter() - t
        s = fit.summary()
        ess = min(s["ess_bulk"].min(), s["ess_tail"].min())
        print(f"bayesmer fit {rep + 1}: total {total:.1f} s, sampling {fit.timings['sampling']:.1f} s, min ESS bulk/tail "
              f"{s['ess_bulk'].min():.0f}/{s['ess_tail'].min():.0f}, ESS/s {ess / total:.1f}, "
              f"max R-hat {s['r_hat'].max():.3f}", flush=True)
    df = va.assign(r2y=(va["r2"] == "Y").astype(int))
    for cores in (None, 2):
        t = time.perf_counter()
        m = bmb.Model("r2y ~ Anger + Gender + btype + situ + (1|id) + (1|item)", df, family="bernoulli")
        idata = m.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False,
                      **({} if cores is None else {"cores": cores}))
        total = time.perf_counter() - t
        post = idata["posterior"].to_dataset()
        keep = [v for v in post.data_vars if not v.endswith("_offset") and v not in ("1|id", "1|item")]
        eb, et = azs.ess(post[keep], method="bulk"), azs.ess(post[keep], method="tail")
        mb, mt = min(float(eb[v].min()) for v in keep), min(float(et[v].min()) for v in keep)
        print(f"bambi cores={cores}: total {total:.1f} s, min ESS bulk/tail {mb:.0f}/{mt:.0f}, "
              f"ESS/s {min(mb, mt) / total:.1f}", flush=True)
    print("load after", os.getloadavg())


if __name__ == "__main__":
    main()
