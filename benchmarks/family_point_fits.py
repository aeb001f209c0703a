"""Time bayesmer.glmmtmb's point fits against the R fits recorded in tests/data/family_*.json.

Run after ``Rscript tests/data/make_family_refs.R`` (which records R's median
of 3 elapsed times and the load average) so that both ran under similar load:

    PYTHONPATH=src python benchmarks/family_point_fits.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_families import LINKS, REFS, _load  # noqa: E402

from bayesmer.glmmtmb_fit import glmmtmb  # noqa: E402

CASES = {**{k: (v[0], v[1], None) for k, v in REFS.items()}, **{k: (v[0], None, v[1]) for k, v in LINKS.items()},
         "negbinomial_offset": ("negbinomial", None, None), "negbinomial_singular": ("negbinomial", None, None)}


def main():
    rows = []
    for name, (fam, zi, link) in CASES.items():
        ref, d = _load(name)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = glmmtmb(ref["formula"], d, fam, ziformula=zi, link=link)
            times.append(time.perf_counter() - t)
        times.sort()
        rows.append((name, ref["call"].split("(")[0], ref["seconds"], ref["load"], times[1], os.getloadavg()[0],
                     fit.n_evaluations, fit.n_gradients))
    df = pd.DataFrame(rows, columns=["fit", "R", "R s", "R load", "bayesmer s", "load", "evaluations", "gradients"])
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
