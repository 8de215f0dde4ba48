"""Profile scans and Wilks intervals against closed-form Poisson likelihoods."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq

from ratiofactory import infer


def poisson_t(nu, n):
    """−2 ln[Pois(n|ν)/Pois(n|n)] = 2[ν − n + n ln(n/ν)]."""
    return 2.0 * (nu - n + n * np.log(n / nu))


def counting_model(s, b, bounds=(-2.0, 10.0)):
    spec = {"channels": [{"name": "c", "samples": [
        {"name": "s", "data": list(s), "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "b", "data": list(b), "modifiers": []}]}],
        "parameters": [{"name": "mu", "bounds": [list(bounds)], "inits": [1.0]}]}
    return pyhf.Model(spec, poi_name="mu", validate=False)


class QuadraticCounting:
    """One Poisson count with ν = μ² s + b: t_μ is symmetric in μ, so for n > b every
    interval has two disjoint pieces (what interference terms can do to NSBI fits)."""

    def __init__(self, s, b):
        self.s, self.b = s, b
        self.config = SimpleNamespace(
            par_names=["mu"], par_order=["mu"], poi_index=0, poi_name="mu", npars=1,
            auxdata=[], nmaindata=1, nauxdata=0, par_slice=lambda name: slice(0, 1),
            suggested_init=lambda: [1.0], suggested_bounds=lambda: [(-5.0, 5.0)],
            suggested_fixed=lambda: [False],
        )

    def logpdf(self, pars, data):
        tensorlib, _ = pyhf.get_backend()
        xp = np if tensorlib.name == "numpy" else __import__("jax.numpy", fromlist=["numpy"])
        nu = xp.asarray(pars)[0] ** 2 * self.s + self.b
        return xp.asarray(data)[0] * xp.log(nu) - nu


def test_scan_and_intervals_match_closed_form(backend):
    s, b, n = 10.0, 20.0, 35.0
    model = counting_model([s], [b])
    grid = np.linspace(0.0, 4.0, 9)
    scan = infer.profile_scan(model, [n], grid, options=infer.FitOptions(tolerance=1e-7))
    np.testing.assert_allclose(scan.tmu, poisson_t(grid * s + b, n), atol=1e-7)
    assert scan.bestfit.poi_value == pytest.approx((n - b) / s, abs=1e-5)
    muhat = (n - b) / s
    for cl, threshold in ((infer.CL_1SIGMA, 1.0), (infer.CL_2SIGMA, 4.0)):
        result = infer.interval(scan, cl)
        assert result.threshold == pytest.approx(threshold, abs=1e-12)
        f = lambda mu, t=threshold: poisson_t(mu * s + b, n) - t
        expected = (brentq(f, -b / s + 1e-9, muhat, xtol=1e-14), brentq(f, muhat, 10.0, xtol=1e-14))
        assert len(result.intervals) == 1
        assert result.refined
        np.testing.assert_allclose(result.intervals[0], expected, atol=1e-5)
        assert result.open_ends == ((False, False),)
        down, up = result.errors
        assert up > -down > 0  # Poisson intervals are asymmetric


def test_interpolation_only_without_profile():
    """A scan restored without its model interpolates linearly (and says so)."""
    model = counting_model([10.0], [20.0])
    scan = infer.profile_scan(model, [35.0], np.linspace(0.0, 4.0, 41))
    bare = infer.ScanResult(scan.poi, scan.poi_values, scan.tmu, scan.twice_nll, scan.profiled, scan.bestfit)
    refined, linear = infer.interval(scan), infer.interval(bare)
    assert not linear.refined
    np.testing.assert_allclose(linear.intervals[0], refined.intervals[0], atol=5e-3)


def test_disjoint_intervals_from_a_nonmonotonic_yield(backend):
    s, b, n = 4.0, 30.0, 36.0
    model = QuadraticCounting(s, b)
    grid = np.linspace(-4.0, 4.0, 17)
    scan = infer.profile_scan(model, [n], grid, options=infer.FitOptions(tolerance=1e-7))
    np.testing.assert_allclose(scan.tmu, poisson_t(grid**2 * s + b, n), atol=1e-6)
    result = infer.interval(scan)
    root = np.sqrt((n - b) / s)
    f = lambda mu: poisson_t(mu**2 * s + b, n) - 1.0
    inner, outer = brentq(f, 0.0, root, xtol=1e-14), brentq(f, root, 4.0, xtol=1e-14)
    assert len(result.intervals) == 2
    np.testing.assert_allclose(result.intervals, [(-outer, -inner), (inner, outer)], atol=1e-5)
    # at 2σ the two pieces merge across μ = 0
    wide = infer.interval(scan, infer.CL_2SIGMA)
    assert len(wide.intervals) == 1
    g = lambda mu: poisson_t(mu**2 * s + b, n) - 4.0
    np.testing.assert_allclose(wide.intervals[0], (-brentq(g, root, 4.0), brentq(g, root, 4.0)), atol=1e-5)


def test_profiled_nuisance_parameters_agree_with_pyhf_tmu():
    model = pyhf.simplemodels.uncorrelated_background([6.0, 9.0], [50.0, 40.0], [6.0, 5.0], validate=False)
    data = [60.0, 52.0, *model.config.auxdata]
    grid = [0.5, 1.5, 2.5]
    scan = infer.profile_scan(model, data, grid, options=infer.FitOptions(tolerance=1e-7))
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-7))
    try:
        bounds = model.config.suggested_bounds()
        reference = [float(pyhf.infer.test_statistics.tmu(mu, data, model, model.config.suggested_init(),
                                                            bounds, model.config.suggested_fixed())) for mu in grid]
    finally:
        pyhf.set_backend("numpy")
    np.testing.assert_allclose(scan.tmu, reference, atol=1e-6)
    assert scan.profiled.shape == (3, 3)
    np.testing.assert_allclose(scan.profiled[:, 0], grid)


def test_open_ends_and_threshold_override():
    model = counting_model([10.0], [20.0])
    scan = infer.profile_scan(model, [35.0], [1.0, 1.5, 2.0, 2.5, 3.0])
    result = infer.interval(scan, threshold=9.0)
    assert result.open_ends == ((True, True),)
    assert result.intervals == ((1.0, 3.0),)
    assert result.cl == pytest.approx(0.9973, abs=1e-4)


def test_two_poi_grid_matches_closed_form(backend):
    spec = {"channels": [{"name": "c", "samples": [
        {"name": "s1", "data": [10.0, 0.0], "modifiers": [{"name": "mu1", "type": "normfactor", "data": None}]},
        {"name": "s2", "data": [0.0, 8.0], "modifiers": [{"name": "mu2", "type": "normfactor", "data": None}]},
        {"name": "b", "data": [20.0, 30.0], "modifiers": []}]}]}
    model = pyhf.Model(spec, poi_name="mu1", validate=False)
    xs, ys = np.array([0.5, 1.5, 2.5]), np.array([0.0, 1.0, 2.0])
    scan = infer.profile_scan_2d(model, [35.0, 42.0], xs, ys, pois=("mu1", "mu2"),
                                 options=infer.FitOptions(tolerance=1e-7))
    expected = poisson_t(xs[:, None] * 10.0 + 20.0, 35.0) + poisson_t(ys[None, :] * 8.0 + 30.0, 42.0)
    np.testing.assert_allclose(scan.tmu, expected, atol=1e-6)
    np.testing.assert_array_equal(scan.inside(infer.CL_1SIGMA), expected <= 2.2957489288986)
    payload = json.loads(json.dumps(scan.to_dict()))
    assert payload["pois"] == ["mu1", "mu2"]
    assert len(payload["tmu"]) == 3
    assert "mu2" in str(scan)


def test_scan_errors():
    model = counting_model([10.0], [20.0], bounds=(0.0, 10.0))
    with pytest.raises(infer.InvalidFitSetup, match=r"scan range \[-1, 3\] of 'mu' lies outside its bounds \[0, 10\]"):
        infer.profile_scan(model, [35.0], [-1.0, 1.0, 3.0])
    scan = infer.profile_scan(model, [35.0], [5.0, 6.0])
    with pytest.raises(infer.InvalidFitSetup, match="no scan point of 'mu' has t_mu < 1"):
        infer.interval(scan)
    with pytest.raises(infer.InvalidFitSetup, match="two different parameters"):
        infer.profile_scan_2d(model, [35.0], [1.0], [1.0], pois=("mu", "mu"))


def test_scan_result_prints_and_serialises():
    model = counting_model([10.0], [20.0])
    scan = infer.profile_scan(model, [35.0], [0.0, 1.5, 3.0])
    payload = json.loads(json.dumps(scan.to_dict()))
    assert list(payload) == ["poi", "poi_values", "tmu", "twice_nll", "bestfit_poi", "twice_nll_min", "profiled",
                             "poi_bounds"]
    assert "t_mu" in str(scan)
    result = infer.interval(scan)
    assert "68.27% CL" in str(result)
    assert json.loads(json.dumps(result.to_dict()))["intervals"][0] == list(result.intervals[0])


def test_interval_beyond_the_scan_is_open_not_a_signed_error(backend):
    """Scan [0, 1] with μ̂ = 1.5 outside it: the piece [lo, 1] is open above. The headline
    printed ``+-0.5`` (an upper "error" to the scan's end, negative) and the JSON gave no
    hint; now the open side has no error (NaN/null) and the text says ``> 1``."""
    model = counting_model([10.0], [20.0])
    scan = infer.profile_scan(model, [35.0], [0.0, 0.5, 1.0])
    result = infer.interval(scan)
    assert result.bestfit == pytest.approx(1.5, abs=1e-4)
    exact_lo = brentq(lambda mu: poisson_t(10.0 * mu + 20.0, 35.0) - 1.0, 0.0, 1.5)
    ((lo, hi),) = result.intervals
    assert lo == pytest.approx(exact_lo, abs=1e-6)
    assert hi == 1.0
    assert result.open_ends == ((False, True),)
    down, up = result.errors
    assert down == pytest.approx(exact_lo - result.bestfit, abs=1e-9)
    assert np.isnan(up)
    text = str(result).splitlines()[0]
    assert f"[{lo:.6g}, > 1]" in text
    assert "open above" in text
    assert "best fit lies outside the scan [0, 1]" in text
    assert "+-" not in text
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["errors"][1] is None
    assert payload["scan_range"] == [0.0, 1.0]


def test_scan_ending_at_the_bound_is_a_closed_end(backend):
    """A scan from the POI's lower bound: the interval ends there (the bound), it is not
    open, and the lower error is the distance to the bound."""
    model = counting_model([10.0], [20.0], bounds=(0.0, 10.0))
    scan = infer.profile_scan(model, [21.0], [0.0, 1.0, 2.0])
    result = infer.interval(scan)
    assert result.bestfit == pytest.approx(0.1, abs=1e-5)
    assert result.open_ends == ((False, False),)
    assert result.intervals[0][0] == 0.0
    assert result.errors[0] == pytest.approx(-0.1, abs=1e-5)
    exact_hi = brentq(lambda mu: poisson_t(10.0 * mu + 20.0, 21.0) - 1.0, 0.1, 2.0)
    assert result.errors[1] == pytest.approx(exact_hi - 0.1, abs=1e-5)
    assert " +" in str(result).splitlines()[0]


def test_degenerate_scan_or_no_point_inside_is_a_clear_error():
    model = counting_model([10.0], [20.0])
    with pytest.raises(infer.InvalidFitSetup, match="at least 2 distinct points, got 1"):
        infer.interval(infer.profile_scan(model, [35.0], [1.0, 1.0]))
    with pytest.raises(infer.InvalidFitSetup, match=r"the best fit 1\.\d+ lies below the scan \[3, 4\]: scan a range containing it"):
        infer.interval(infer.profile_scan(model, [35.0], [3.0, 4.0]))
