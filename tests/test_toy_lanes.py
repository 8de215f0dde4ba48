"""The toy fits' lane scheduling (toys/lanes.py): a window of lanes refilled with unfinished
ones gives each lane exactly the iterations of its own loop."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest

from ratiofactory.toys.lanes import run_lanes, window_size

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _newton_sqrt(state, inputs):
    """One Newton step for √target per lane; finished at 1e-12 or after 60 steps."""
    x, iteration, _ = state
    target = inputs
    x = x - (x * x - target) / (2.0 * x)
    return x, iteration + 1, (jnp.abs(x * x - target) < 1e-12 * target) | (iteration + 1 >= 60)


@pytest.fixture
def float64():
    pyhf.set_backend("jax", precision="64b")  # float64 on jax, as the toy fits run
    yield
    pyhf.set_backend("numpy", precision="64b")


@pytest.mark.parametrize("n_lanes", [1, 5, 37, 200])
def test_window_gives_each_lane_its_own_iterations(n_lanes, float64):
    rng = np.random.default_rng(n_lanes)
    targets = np.exp(rng.uniform(-20.0, 20.0, n_lanes))  # from 2 to ~40 iterations
    state = (jnp.ones(n_lanes), jnp.zeros(n_lanes, dtype=int), jnp.zeros(n_lanes, dtype=bool))
    finished = lambda s: s[2]
    results = {}
    for window in (True, False):
        run = jax.jit(lambda s, t, w=window: run_lanes(_newton_sqrt, finished, s, lambda lanes: t[lanes], w))
        results[window] = [np.asarray(a) for a in run(state, jnp.asarray(targets))]
    for k in range(n_lanes):  # each lane alone, in plain Python
        x, iteration, done = 1.0, 0, False
        while not done:
            x, iteration, done = (float(v) for v in _newton_sqrt((x, iteration, False), targets[k]))
        assert results[True][1][k] == results[False][1][k] == iteration
        assert results[True][0][k] == results[False][0][k] == pytest.approx(x, rel=1e-15)
    assert np.ptp(results[True][1]) > 5 or n_lanes == 1  # the lanes did need different numbers of steps
    assert window_size(n_lanes) <= n_lanes
