"""Asimov datasets on binned models (the unbinned ones are in test_infer_unbinned.py)."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest

from ratiofactory import infer
from ratiofactory.infer.asimov import conditional_asimov
from ratiofactory.infer.objective import Objective, make_setup


@pytest.fixture(scope="module")
def model():
    return pyhf.simplemodels.uncorrelated_background([6.0, 9.0], [50.0, 40.0], [6.0, 5.0], validate=False)


def test_asimov_is_expected_data(backend, model):
    pars = [1.7, 1.05, 0.9]
    asimov = np.asarray(infer.asimov_data(model, pars))
    main = [6.0 * 1.7 + 50.0 * 1.05, 9.0 * 1.7 + 40.0 * 0.9]
    np.testing.assert_allclose(asimov[:2], main, rtol=1e-12)
    np.testing.assert_allclose(asimov[2:], np.asarray(model.config.auxdata) * [1.05, 0.9], rtol=1e-12)
    assert infer.asimov_yield_checks(model, pars) == []  # no unbinned channel


def test_fit_to_asimov_returns_the_generating_point(backend, model):
    truth = [1.7, 1.05, 0.9]
    result = infer.fit(model, infer.asimov_data(model, truth), tolerance=1e-6)
    np.testing.assert_allclose(result.values, truth, atol=1e-4)


def test_conditional_asimov_profiles_on_the_observed_data(model):
    data = np.array([62.0, 55.0, *model.config.auxdata])
    setup = make_setup(model)
    asimov, conditional = conditional_asimov(Objective(model, data), setup, 0.0)
    assert conditional.values[0] == 0.0
    reference = infer.fit(model, data, fixed={"mu": 0.0})
    np.testing.assert_allclose(conditional.values, reference.values, atol=1e-6)
    np.testing.assert_allclose(asimov, model.expected_data(reference.values), rtol=1e-5)


def test_yield_check_pull():
    check = infer.YieldCheck("SR", expected_yield=100.0, asimov_sum=103.0, standard_error=1.5)
    assert check.pull == pytest.approx(2.0)
    exact = infer.YieldCheck("SR", expected_yield=100.0, asimov_sum=100.0, standard_error=0.0)
    assert exact.pull == 0.0
    off = infer.YieldCheck("SR", expected_yield=100.0, asimov_sum=101.0, standard_error=0.0)
    assert off.pull == np.inf
