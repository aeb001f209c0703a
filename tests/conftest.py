"""Fixtures shared by the test modules: the bundled data and one small fit of each kind."""

import warnings
from pathlib import Path

import pytest

import bayesmer

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"
MODELS = sorted((ROOT / "models").glob("*.toml"))
SLEEP = "Reaction ~ Days + (Days | Subject)"


def load_data(file_name: str):
    """A data file named by a reference: the package's copy for bundled data sets, else tests/data's."""
    import pandas as pd

    stem = Path(file_name).stem
    if stem in bayesmer.datasets.list_datasets():
        return bayesmer.datasets.load(stem)
    return pd.read_csv(DATA / file_name)


def quiet_fit(formula, data, **kw):
    """bayesmer.fit with small defaults and its diagnostic warnings silenced (short chains trip them)."""
    kw = {"draws": 300, "tune": 300, "chains": 2, "seed": 11, "progress": False} | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmer.fit(formula, data, **kw)


@pytest.fixture(scope="session")
def sleep():
    return bayesmer.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def sleep_fit(sleep):
    """A random-slope fit: two columns per subject, one correlation."""
    return quiet_fit(SLEEP, sleep)


@pytest.fixture(scope="session", params=MODELS, ids=[p.stem for p in MODELS])
def model_file_fit(request):
    """Every model file fitted with short chains (its own priors and data)."""
    from bayesmer.modelfile import load_data, load_model_file

    spec = load_model_file(request.param)
    settings = {k: v for k, v in spec.settings().items() if k in ("strategy", "method", "seed", "family", "link")}
    return quiet_fit(spec.formula, load_data(spec), priors=spec.prior_dict, **{"draws": 150, "tune": 150} | settings)
