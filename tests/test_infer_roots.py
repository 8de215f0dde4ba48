"""Crossings found with few fits: the slope of a profile (envelope theorem), bracketed
Newton, and the intervals and limits that use them; MIGRAD's initial steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq

import ratiofactory
from ratiofactory import infer
from ratiofactory.infer.fitting import minimize
from ratiofactory.infer.objective import Objective, make_setup
from ratiofactory.infer.roots import bracketed_newton, poi_slope

EXACT = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "exact.json"


def _counted(f):
    calls = []

    def wrapped(x):
        calls.append(x)
        return f(x)

    return wrapped, calls


def test_bracketed_newton_converges_quadratically():
    f, calls = _counted(lambda x: (x * x - 2.0, 2.0 * x))
    root = bracketed_newton(f, 1.0, 2.0, -1.0, 2.0, xtol=1e-13, rtol=0.0)
    assert root == pytest.approx(np.sqrt(2.0), abs=1e-13)
    assert len(calls) <= 5
    # a steep, nearly flat-then-steep function: the bracket keeps Newton from overshooting
    g, calls = _counted(lambda x: (np.tanh(20.0 * (x - 0.3)), 20.0 / np.cosh(20.0 * (x - 0.3)) ** 2))
    root = bracketed_newton(g, 0.0, 10.0, g(0.0)[0], g(10.0)[0], xtol=1e-12, rtol=0.0)
    assert root == pytest.approx(0.3, abs=1e-12)
    assert len(calls) <= 40


def test_bracketed_newton_without_slope_and_with_a_wrong_one():
    cube = lambda x: x**3 - 1e-3
    root = bracketed_newton(lambda x: (cube(x), np.nan), 0.0, 1.0, cube(0.0), cube(1.0), xtol=1e-12, rtol=0.0)
    assert root == pytest.approx(0.1, abs=1e-11)
    wrong = bracketed_newton(lambda x: (cube(x), -5.0), 0.0, 1.0, cube(0.0), cube(1.0), xtol=1e-12, rtol=0.0)
    assert wrong == pytest.approx(0.1, abs=1e-11)
    assert bracketed_newton(lambda x: (x, 1.0), 0.0, 1.0, 0.0, 1.0, xtol=1e-9, rtol=0.0) == 0.0
    with pytest.raises(ValueError, match="do not bracket"):
        bracketed_newton(lambda x: (x, 1.0), 1.0, 2.0, 1.0, 2.0, xtol=1e-9, rtol=0.0)


def _profile(objective, setup, mu):
    return minimize(objective, setup.with_poi_fixed(mu), infer.FitOptions(tolerance=1e-8), hesse=False)


def test_profile_slope_is_the_partial_derivative_along_the_poi(backend):
    model = pyhf.simplemodels.uncorrelated_background([5.0, 8.0], [50.0, 30.0], [5.0, 4.0], validate=False)
    data = np.array([62.0, 41.0, *model.config.auxdata])
    objective, setup = Objective(model, data), make_setup(model)
    for mu in (0.5, 2.0, 4.0):
        fit = _profile(objective, setup, mu)
        h = 1e-3
        numerical = (_profile(objective, setup, mu + h).twice_nll - _profile(objective, setup, mu - h).twice_nll) / (2 * h)
        assert poi_slope(objective, fit.values, 0, setup.bounds) == pytest.approx(numerical, rel=1e-4, abs=1e-6)


def test_interval_edges_are_crossings_and_equal_brent(backend):
    model = pyhf.simplemodels.uncorrelated_background([6.0], [50.0], [7.0], validate=False)
    data = [63.0, *model.config.auxdata]
    scan = infer.profile_scan(model, data, np.linspace(0.0, 6.0, 13))
    newton = infer.interval(scan, infer.CL_2SIGMA)
    bare = infer.ScanResult(scan.poi, scan.poi_values, scan.tmu, scan.twice_nll, scan.profiled, scan.bestfit,
                            lambda mu: scan.profile(mu))  # a profile without a slope: Brent, as before
    brent = infer.interval(bare, infer.CL_2SIGMA)
    for (lo, hi), (b_lo, b_hi) in zip(newton.intervals, brent.intervals, strict=True):
        assert lo == pytest.approx(b_lo, abs=1e-7)
        assert hi == pytest.approx(b_hi, abs=1e-7)
        for edge in (lo, hi):
            if 0.0 < edge < 6.0:  # not an end of the scan
                assert scan.profile(edge) == pytest.approx(4.0, abs=1e-7)
    assert 0.0 < newton.intervals[0][1] < 6.0


def test_limit_crossings_by_newton_equal_toms748(backend, monkeypatch):
    from ratiofactory.infer import limits

    model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    data = [55.0, *model.config.auxdata]
    newton = infer.upper_limit(model, data)
    plain = limits._excluded
    monkeypatch.setattr(limits, "_excluded", lambda grid, f, rtol, atol, f_and_slope=None: plain(grid, f, rtol, atol))
    toms = infer.upper_limit(model, data)
    assert newton.observed == pytest.approx(toms.observed, rel=2e-5)
    np.testing.assert_allclose(newton.expected, toms.expected, rtol=2e-5)
    assert len(newton.poi_values) < len(toms.poi_values)  # fewer conditional fits
    assert infer.hypotest(model, data, newton.observed).cls == pytest.approx(0.05, abs=1e-6)
    # every crossing: brentq on the asymptotic CLs agrees
    root = brentq(lambda mu: infer.hypotest(model, data, mu).cls - 0.05, 1.0, 10.0, xtol=1e-10)
    assert newton.observed == pytest.approx(root, rel=1e-5)


def test_migrad_leaves_a_start_near_zero(backend):
    """A warm start with a nuisance parameter at 2e-7 (where it had no effect, μ = 0 of the
    interference model): iminuit's default step, 1 % of the value, made MIGRAD on jax stop
    "converged" at α = 3e-7, 0.0135 above the conditional minimum."""
    ws = ratiofactory.Workspace.load(EXACT)
    model = ws.model()
    data = ws.data(model)
    fits = [infer.fit(model, data, init={"k_factor": k}, fixed={"mu": 0.0333}, hesse=False, global_search=False)
            for k in (2.2e-7, 0.0, 0.5)]
    for fit in fits[:2]:
        assert fit.twice_nll == pytest.approx(fits[2].twice_nll, abs=1e-6)
        assert fit.value("k_factor") == pytest.approx(fits[2].value("k_factor"), abs=2e-3)
