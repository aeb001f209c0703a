"""The response families' posteriors are brms's (issue 17): negbinomial, cumulative, beta, student.

References: brms 2.18 (Stan NUTS) with every prior stated, 4 chains x 2,500 draws
(``data/make_family_brms_refs.R``, one ``data/brms_family_<family>.json`` each). bayesmer fits the
same model with the same priors, and every posterior mean must lie within 4 combined Monte Carlo
SEs of brms's (arviz_stats' MCSE for bayesmer's draws, posterior's ``mcse_mean`` for brms's), every
posterior SD within 10% of brms's, and no draw may diverge.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer

DATA = Path(__file__).parent / "data"
FAMILIES = ["negbinomial", "cumulative", "beta", "student"]
CHAINS, TUNE = 4, 1000
# draws per chain: 10% of the SD is at least 3 combined Monte Carlo SEs of the two SDs (measured: 3.3-8
# at these draws); the scales (shape, the judges' SD) and Student's intercept (bulk ESS ~0.07 per draw
# here, ~0.1 in brms) need more draws than the rest
DRAWS = {"negbinomial": 2000, "cumulative": 2000, "beta": 1000, "student": 2500}

# brms's prior classes -> bayesmer's priors= keys: "fixed" is every fixed effect, the intercept
# included, as brms's class b is with `center = FALSE`; the other classes have the same names
KEYS = {"b": "fixed"}


def _data(family: str) -> pd.DataFrame:
    if family == "negbinomial":
        return pd.read_csv(DATA / "family_epilepsy.csv", dtype={"Trt": str, "patient": str, "visit": str})
    if family == "cumulative":
        d = pd.read_csv(DATA / "family_wine.csv", dtype={"judge": str, "bottle": str})
        d["rating"] = pd.Categorical(d["rating"], categories=[1, 2, 3, 4, 5], ordered=True)
        return d
    return pd.read_csv(DATA / f"family_{family}.csv", dtype={"g": str})


def _ref(family: str) -> dict:
    return json.loads((DATA / f"brms_family_{family}.json").read_text())


def _fit(family: str, seed: int):
    ref = _ref(family)
    priors = {KEYS.get(k, k): v for k, v in ref["priors"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(ref["formula"], _data(family), family=family, priors=priors, draws=DRAWS[family], tune=TUNE,
                            chains=CHAINS, seed=seed, progress=False)


def _draws(fit, key) -> np.ndarray:
    """(chain, draw) draws of one parameter; key = [kind, group, name] as the reference names it."""
    kind, group, name = key
    post = fit.idata["posterior"]
    if kind == "fixed":
        x = post["beta"].sel(fixed=name)
    elif kind == "sd":
        x = post[f"sd_{group}"].sel({f"{group}_term": name})
    elif name in post:  # a family parameter: shape, phi, nu, sigma, or one threshold by its brms name
        x = post[name]
    else:  # a threshold Intercept[k] as the k-th entry of the variable "Intercept"
        k = int(name[name.index("[") + 1:-1])
        x = post["Intercept"]
        x = x.isel({x.dims[-1]: k - 1})
    a = np.asarray(x.to_numpy(), dtype=float)
    assert a.shape[0] == CHAINS, (key, a.shape)
    return a


class _Fits(dict):
    """Each family fitted once, when first asked for (one family's failure leaves the others' tests)."""

    def __missing__(self, family):
        self[family] = _fit(family, 17 + FAMILIES.index(family))
        return self[family]


@pytest.fixture(scope="module")
def fits():
    return _Fits()


@pytest.mark.parametrize("family", FAMILIES)
def test_same_posterior_as_brms(fits, family):
    import arviz_stats as azs

    fit, ref = fits[family], _ref(family)
    assert ref["divergences"] == 0
    assert int(np.asarray(fit.idata["sample_stats"]["diverging"]).sum()) == 0
    bad = []
    for r in ref["summary"]:
        a = _draws(fit, r["bayesmer"])
        mean, sd = a.mean(), a.std(ddof=1)
        tol = 4 * np.hypot(float(azs.mcse(a, method="mean")), r["mcse_mean"])
        if not (abs(mean - r["mean"]) <= tol and abs(sd / r["sd"] - 1) <= 0.10):
            bad.append((r["variable"], round(mean, 4), round(r["mean"], 4), round(tol, 4), round(sd, 4),
                        round(r["sd"], 4)))
    assert not bad, f"{family}: differs from brms (name, mean, brms's, tolerance, sd, brms's): {bad}"


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_covers_every_parameter(fits, family):
    """The reference holds every fixed effect, the SD and the family's parameters: all bayesmer samples."""
    expected = {"negbinomial": {"shape"}, "beta": {"phi"}, "student": {"sigma", "nu"},
                "cumulative": {f"Intercept[{k}]" for k in range(1, 5)}}
    ref = _ref(family)
    names = {r["bayesmer"][2] for r in ref["summary"] if r["bayesmer"][0] in ("dpar", "threshold")}
    assert names == expected[family]
    group = ref["formula"].split("| ")[1][:-1]
    assert [r["bayesmer"][1] for r in ref["summary"] if r["bayesmer"][0] == "sd"] == [group]
    fixed = {r["bayesmer"][2] for r in ref["summary"] if r["bayesmer"][0] == "fixed"}
    assert fixed == set(fits[family].idata["posterior"]["beta"].coords["fixed"].to_numpy())
