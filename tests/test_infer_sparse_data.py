"""Fits to observed data evaluate the observed events only (infer/sparse_data.py): the
same −2 ln L, gradient and fit as the dense likelihood, on numpy and jax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory.infer.fitting import minimize
from ratiofactory.infer.objective import Objective, make_setup

EXACT = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "exact.json"

@pytest.fixture(scope="module")
def _models() -> dict[str, tuple]:
    """Models built in this module, per backend (freed with the module)."""
    return {}


@pytest.fixture
def exact(backend, _models):
    if backend not in _models:
        ws = ratiofactory.Workspace.load(EXACT)
        model = ws.model()
        _models[backend] = (model, ws.data(model))
    return _models[backend]


POINTS = [[1.0, 1.0, 0.0], [0.3, 0.97, -0.6], [2.2, 1.04, 1.0], [0.05, 1.0, -2.7], [4.0, 0.93, 5.0],
          [0.0, 1.0, -5.0]]


@pytest.mark.slow_when(backend="jax")  # builds the example on jax: ~4 s; numpy runs in the fast suite
def test_observed_data_are_evaluated_on_their_events(exact):
    model, data = exact
    sparse, dense = Objective(model, data), Objective(model, data, sparse=False)
    assert sparse.sparse is not None
    assert dense.sparse is None
    for point in map(np.array, POINTS):
        assert sparse(point) == pytest.approx(dense(point), rel=1e-11, abs=1e-9)
        if sparse.has_grad:
            np.testing.assert_allclose(sparse.grad(point), dense.grad(point), rtol=1e-8, atol=1e-7)


def test_outside_the_bounds_of_the_integrals_it_is_dense(exact):
    model, data = exact
    sparse, dense = Objective(model, data), Objective(model, data, sparse=False)
    beyond = np.array([1.0, 1.0, 6.5])  # k_factor beyond the model's bounds (±5)
    assert not sparse.sparse.covers(beyond)
    assert sparse(beyond) == dense(beyond)


def test_asimov_data_sparse_on_numpy_dense_on_jax(exact):
    model, _data = exact
    asimov = model.expected_data([1.0, 1.0, 0.0])
    objective = Objective(model, asimov)
    assert (objective.sparse is None) == (objective.backend == "jax")  # the faster one on each
    dense = Objective(model, asimov, sparse=False)
    for point in map(np.array, POINTS):
        assert objective(point) == pytest.approx(dense(point), rel=1e-11, abs=1e-9)
    binned = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    assert Objective(binned, [55.0, *binned.config.auxdata]).sparse is None


def test_fits_equal_the_dense_ones(exact):
    model, data = exact
    setup = make_setup(model)
    for fixed in (None, 0.7):
        start = setup if fixed is None else setup.with_poi_fixed(fixed)
        sparse = minimize(Objective(model, data), start, hesse=True)
        dense = minimize(Objective(model, data, sparse=False), start, hesse=True)
        assert sparse.twice_nll == pytest.approx(dense.twice_nll, abs=1e-6)
        np.testing.assert_allclose(sparse.values, dense.values, atol=2e-4)
        np.testing.assert_allclose(sparse.errors, dense.errors, rtol=1e-3)
