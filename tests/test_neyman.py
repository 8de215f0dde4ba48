"""Neyman construction: belt, observed interval, resumption, and coverage on an exact-ratio toy."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
from scipy.stats import chi2

import ratiofactory
from ratiofactory.infer import InvalidFitSetup
from ratiofactory.toys import (
    CONFIDENCE_LEVELS,
    confidence_set,
    neyman_construction,
    neyman_coverage,
)
from ratiofactory.toys.examples import gaussian_on_exponential


@pytest.fixture(scope="module")
def unbinned(tmp_path_factory):
    path = gaussian_on_exponential(tmp_path_factory.mktemp("neyman"), seed=5)
    pyhf.set_backend("jax", precision="64b")
    try:
        ws = ratiofactory.Workspace.load(path)
        model = ws.model()
        data = np.asarray(ws.data(model))
    finally:
        pyhf.set_backend("numpy", precision="64b")
    return model, data


@pytest.fixture
def jax_backend():
    pyhf.set_backend("jax", precision="64b")
    yield
    pyhf.set_backend("numpy", precision="64b")


def test_confidence_set_pieces():
    x = np.arange(6.0)
    t = np.array([5.0, 0.0, 5.0, 5.0, 0.0, 0.0])
    pieces = confidence_set(x, t, np.full(6, 1.0))
    assert pieces == [pytest.approx([0.8, 1.2]), pytest.approx([3.8, 5.0])]


@pytest.mark.slow  # 14 s on a loaded 2-core machine (full-suite run, 01:55 UTC)
def test_belt_interval_and_resume(unbinned, jax_backend, tmp_path):
    model, data = unbinned
    grid = np.linspace(0.2, 2.2, 6)
    result = neyman_construction(model, data, grid, 128, seed=4, directory=tmp_path)
    belt = result.to_dict()
    json.dumps(belt)  # plain JSON
    key68, key95 = (f"{cl:.6g}" for cl in CONFIDENCE_LEVELS)
    crit68, crit95 = np.array(belt["critical"][key68]), np.array(belt["critical"][key95])
    # with ~100 events the toys' critical values are close to Wilks' 1 and 4
    assert np.all(np.abs(crit68 - chi2.ppf(CONFIDENCE_LEVELS[0], 1)) < 0.5)
    assert np.all(np.abs(crit95 - chi2.ppf(CONFIDENCE_LEVELS[1], 1)) < 2.0)
    assert np.all(crit95 > crit68)
    (lo, hi), = belt["intervals"][key68]
    assert lo < hi
    assert grid[0] <= lo
    assert hi <= grid[-1]
    assert np.all(result.t_observed[(grid > lo) & (grid < hi)] <= crit68[(grid > lo) & (grid < hi)])
    files = sorted(tmp_path.glob("point_*.json"))
    assert len(files) == 6
    assert not list(tmp_path.glob(".*tmp"))
    # resume: a saved point is read back, not recomputed (a marker survives)
    saved = json.loads(files[0].read_text())
    saved["critical"][key68] = 123.0
    files[0].write_text(json.dumps(saved))
    again = neyman_construction(model, data, grid, 128, seed=4, directory=tmp_path)
    assert again.critical[key68][0] == 123.0
    np.testing.assert_array_equal(again.critical[key95], result.critical[key95])
    # other settings: the point is recomputed
    other = neyman_construction(model, data, grid[:1], 64, seed=4, directory=tmp_path)
    assert other.critical[key68][0] != 123.0


@pytest.mark.slow  # 60 pseudo-experiments x 128 toys: ~5 s
def test_coverage_small(unbinned, jax_backend):
    model, _ = unbinned
    result = neyman_coverage(model, [1.0, 0.0], 60, 128, seed=21)
    assert result.n_failed == 0
    for key, rate in result.covered.items():
        assert abs(rate - float(key)) < 3 * result.standard_error[key] + 1e-12, result.table()


def test_unsorted_grid_gives_the_sorted_construction():
    """A grid given high to low (or with a repeat) is taken sorted: the interval is
    [lo, hi] with lo < hi, never reversed (the CLI printed [2, 1] for --poi-range 2 1)."""
    model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    data = [62.0, *model.config.auxdata]
    backward = neyman_construction(model, data, [6.0, 2.4, 0.0, 2.4], 8, seed=3)
    assert backward.poi_values.tolist() == [0.0, 2.4, 6.0]
    assert backward.t_observed[1] == pytest.approx(0.0, abs=1e-6)  # the best fit, mu-hat = 2.4
    assert backward.t_observed[0] > 1.0
    assert backward.t_observed[2] > 1.0
    (lo, hi), = backward.intervals[f"{CONFIDENCE_LEVELS[0]:.6g}"]
    assert 0.0 < lo < 2.4 < hi < 6.0
    with pytest.raises(InvalidFitSetup, match="finite"):
        neyman_construction(model, data, [1.0, float("nan")], 10, seed=3)
