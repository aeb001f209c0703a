"""Bundled data sets and the seed documents' simulations."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer import datasets

DATA = Path(__file__).parent / "data"
NAMES = ["sleepstudy", "dyestuff", "dyestuff2", "penicillin", "pastes", "ogorek", "clark_intercepts", "clark_slopes"]


def test_list_names_every_bundled_set():
    assert set(NAMES) <= set(datasets.list())
    assert datasets.list() == datasets.list_datasets()
    assert bayesmer.datasets.list() == datasets.list()


LME4 = json.loads((DATA / "datasets_ref.json").read_text())  # made by tests/data/make_datasets_ref.R


@pytest.mark.parametrize("name", [n for n in NAMES if n in LME4])
def test_load_matches_lme4(name):
    """lme4's data sets, checked against R's own copy: columns, sums, extremes, levels and their counts."""
    df = datasets.load(name)
    ref = LME4[name]
    assert list(df.columns) == ref["columns"] and len(df) == ref["nrow"]
    for col, want in ref["summary"].items():
        if "levels" in want:
            assert [str(v) for v in df[col].cat.categories] == want["levels"], col
            assert df[col].value_counts(sort=False).reindex(df[col].cat.categories).tolist() == want["counts"], col
        else:
            x = df[col].to_numpy(float)
            assert x.sum() == pytest.approx(want["sum"], rel=1e-12), col
            assert (x**2).sum() == pytest.approx(want["sumsq"], rel=1e-12), col
            assert (x.min(), x.max()) == (want["min"], want["max"]), col


@pytest.mark.parametrize(
    "name, groups",
    [
        ("sleepstudy", ["Subject"]),
        ("dyestuff", ["Batch"]),
        ("penicillin", ["plate", "sample"]),
        ("pastes", ["batch", "cask", "sample"]),
        ("ogorek", ["unit"]),
        ("clark_slopes", ["clus"]),
    ],
)
def test_grouping_columns_are_categorical(name, groups):
    df = datasets.load(name)
    for col in groups:
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col


def test_sleepstudy_subject_keeps_its_numbers():
    s = datasets.load("sleepstudy")
    assert s.shape == (180, 3)
    assert s["Subject"].cat.categories[0] == 308
    assert len(s["Subject"].cat.categories) == 18


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(datasets.DatasetError) as err:
        datasets.load("sleepstudyy")
    msg = str(err.value)
    assert "'sleepstudyy'" in msg
    for name in NAMES:
        assert name in msg


def test_simulate_ogorek_layout_and_truth():
    df = datasets.simulate_ogorek(1)
    assert df.shape == (900, 4)
    assert list(df.columns) == ["unit", "a", "x", "y"]
    assert df["unit"].nunique() == 30
    # the seed's grid: 30 points from -4 in steps of 8/30, shared by every unit
    grid = df.loc[df["unit"] == 1, "x"].to_numpy()
    np.testing.assert_allclose(grid, -4 + 8 * np.arange(30) / 30)
    p = df.attrs["params"]
    assert p["fixef"] == {"(Intercept)": 1.0, "x": 3.0, "a": -0.15, "x:a": 0.3}
    assert p["sigma"] == 0.75 and p["sd"] == {"unit": [0.2, 0.5]} and p["corr"] == {"unit": 0.9}


def test_simulate_ogorek_recovers_its_generating_values():
    df, eff = datasets.simulate_ogorek(7, n_units=4000, n_per_unit=30, return_effects=True)
    # unit intercepts and slopes regress on a with the stated coefficients
    A = np.column_stack([np.ones(len(eff)), eff["a"]])
    ca, *_ = np.linalg.lstsq(A, eff["alpha"], rcond=None)
    cb, *_ = np.linalg.lstsq(A, eff["beta"], rcond=None)
    np.testing.assert_allclose(ca, [1.0, -0.15], atol=0.02)
    np.testing.assert_allclose(cb, [3.0, 0.3], atol=0.03)
    ra, rb = eff["alpha"] - A @ ca, eff["beta"] - A @ cb
    assert ra.std() == pytest.approx(0.2, rel=0.05)
    assert rb.std() == pytest.approx(0.5, rel=0.05)
    assert np.corrcoef(ra, rb)[0, 1] == pytest.approx(0.9, abs=0.02)
    # residuals about each unit's line have sd .75
    u = df["unit"].cat.codes.to_numpy()
    resid = df["y"] - eff["alpha"].to_numpy()[u] - eff["beta"].to_numpy()[u] * df["x"]
    assert resid.std() == pytest.approx(0.75, rel=0.02)


def test_simulate_is_deterministic_by_seed():
    pd.testing.assert_frame_equal(datasets.simulate_ogorek(5), datasets.simulate_ogorek(5))
    assert not datasets.simulate_ogorek(5)["y"].equals(datasets.simulate_ogorek(6)["y"])
    a = datasets.simulate_clark(3, "slopes")
    pd.testing.assert_frame_equal(a, datasets.simulate_clark(3, "slopes"))


def test_simulate_clark_intercepts():
    df, eff = datasets.simulate_clark(11, "intercepts", n_groups=3000, return_effects=True)
    assert list(df.columns) == ["x", "y", "clus"]
    assert df["clus"].nunique() == 3000
    assert eff["(Intercept)"].std() == pytest.approx(0.5, rel=0.05)
    g = df["clus"].cat.codes.to_numpy()
    resid = df["y"] - 3 - 0.75 * df["x"] - eff["(Intercept)"].to_numpy()[g]
    assert resid.std() == pytest.approx(1.0, rel=0.03)
    assert df.attrs["params"]["sd"] == {"clus": [0.5]}


def test_simulate_clark_slopes_empirical_covariance():
    df, eff = datasets.simulate_clark(1234, "slopes", return_effects=True)
    assert df.shape == (1000, 3)
    # as MASS::mvrnorm(empirical = TRUE): sample moments exactly as stated
    np.testing.assert_allclose(eff.mean(), 0, atol=1e-12)
    np.testing.assert_allclose(eff.cov(), [[1, 0.25], [0.25, 1]], atol=1e-12)
    free = datasets.simulate_clark(1234, "slopes", empirical=False, return_effects=True)[1]
    assert not np.allclose(free.cov(), [[1, 0.25], [0.25, 1]], atol=1e-6)


def test_simulate_clark_bad_kind():
    with pytest.raises(ValueError, match="intercepts"):
        datasets.simulate_clark(1, "slope")
