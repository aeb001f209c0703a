"""predict(include_random=False) and predictions(include_random=False) on new rows without the grouping
columns (issue 18 item 6): the population level needs no group, on a Gaussian and a binomial fit.

Checked against the linear predictor X beta computed by hand from the posterior draws of beta, and
against the same rows with a grouping column given (which include_random=False ignores).
"""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmer
from bayesmer.errors import PredictionError

from conftest import quiet_fit

SMALL = {"draws": 60, "tune": 60, "chains": 2, "seed": 3}


def _beta(fit):
    b = fit.idata["posterior"]["beta"]
    return b.to_numpy().reshape(-1, b.shape[-1])  # (S, p), chains stacked


@pytest.fixture(scope="module")
def binom_fit():
    return quiet_fit("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     bayesmer.datasets.load("cbpp"), family="binomial", **SMALL)


def test_gaussian_population_prediction_without_subject(sleep_fit):
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0]})
    B = _beta(sleep_fit)
    by_hand = B[:, 0][:, None] + B[:, 1][:, None] * new["Days"].to_numpy()[None, :]
    for kind in ("mean", "link"):
        tab = sleep_fit.predict(new, include_random=False, kind=kind, summary=True)
        np.testing.assert_allclose(tab["mean"], by_hand.mean(axis=0), rtol=1e-10)
    tree = sleep_fit.predict(new, include_random=False)
    (var,) = tree["predictions"].to_dataset().data_vars.values()
    draws = var.to_numpy().reshape(-1, 3)
    np.testing.assert_allclose(draws, by_hand, rtol=1e-10)
    assert "Subject" not in tree["predictions_constant_data"].data_vars  # the placeholder does not leak
    # the same rows with a subject: include_random=False ignores it
    with_subject = sleep_fit.predict(new.assign(Subject="308"), include_random=False, summary=True)
    np.testing.assert_allclose(with_subject["mean"], by_hand.mean(axis=0), rtol=1e-10)
    noisy = sleep_fit.predict(new, include_random=False, kind="response", seed=1, summary=True)
    assert noisy["sd"].gt(tab["sd"]).all()  # sigma's noise on top of beta's spread
    table = sleep_fit.predictions(new, include_random=False)
    np.testing.assert_allclose(table["mean"], by_hand.mean(axis=0), rtol=1e-10)
    with pytest.raises(PredictionError, match="lacks grouping column 'Subject'.*include_random=False"):
        sleep_fit.predict(new)


def test_binomial_population_prediction_without_herd(binom_fit):
    new = pd.DataFrame({"period": ["1", "2", "4"], "size": [10, 10, 20], "incidence": [0, 0, 0]})
    X = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]], float)
    eta = _beta(binom_fit) @ X.T
    link = binom_fit.predict(new, include_random=False, kind="link", summary=True)
    np.testing.assert_allclose(link["mean"], eta.mean(axis=0), rtol=1e-10)
    mean = binom_fit.predict(new, include_random=False, summary=True)
    np.testing.assert_allclose(mean["mean"], expit(eta).mean(axis=0), rtol=1e-10)
    counts = binom_fit.predict(new, include_random=False, kind="response", seed=1, summary=True)
    assert np.all(counts["mean"].to_numpy() <= new["size"].to_numpy())
    table = binom_fit.predictions(new, include_random=False)
    np.testing.assert_allclose(table["mean"], expit(eta).mean(axis=0), rtol=1e-10)
