"""Test statistics, asymptotic CLs, upper limits and significance against pyhf.infer.

pyhf's references are computed once, on numpy, with MIGRAD's tolerance tightened so
that both sides are converged far below the 1e-5 agreement asserted here.
"""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

from ratiofactory import infer

TIGHT = infer.FitOptions(tolerance=1e-7)

SPEC = {"channels": [{"name": "sr", "samples": [
    {"name": "signal", "data": [3.0, 5.0, 7.0], "modifiers": [
        {"name": "mu", "type": "normfactor", "data": None}]},
    {"name": "background", "data": [40.0, 50.0, 45.0], "modifiers": [
        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
        {"name": "bkg_shape", "type": "histosys",
         "data": {"hi_data": [42.0, 52.0, 44.0], "lo_data": [38.0, 48.0, 46.0]}},
        {"name": "stat", "type": "staterror", "data": [3.0, 3.0, 3.0]}]}]}]}


@pytest.fixture(scope="module")
def model():
    return pyhf.Model(SPEC, poi_name="mu", validate=False)


@pytest.fixture(scope="module")
def data(model):
    return np.array([44.0, 57.0, 49.0, *model.config.auxdata])


@pytest.fixture(scope="module")
def signal_data(model):
    return np.array([52.0, 64.0, 60.0, *model.config.auxdata])


def _numpy_pyhf(function):
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-7))
    try:
        return function()
    finally:
        pyhf.set_backend("numpy")


@pytest.fixture(scope="module")
def pyhf_reference(model, data, signal_data):
    def compute():
        ref = {}
        for stat in ("qtilde", "q"):
            bounds = model.config.suggested_bounds()
            if stat == "q":
                bounds[model.config.poi_index] = (-5.0, 10.0)
            for mu in (0.5, 2.0):
                cls, tails, band = pyhf.infer.hypotest(mu, data, model, par_bounds=bounds, test_stat=stat,
                                                       return_tail_probs=True, return_expected_set=True)
                ref[stat, mu] = [float(cls), *map(float, tails), *map(float, band)]
        grid = np.linspace(1.0, 5.0, 5)
        obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=grid)
        ref["scan_limit"] = [float(obs), *map(float, exp)]
        p0, band = pyhf.infer.hypotest(0.0, signal_data, model, test_stat="q0", return_expected_set=True)
        ref["q0"] = [float(p0), *map(float, band)]
        init, fixed = model.config.suggested_init(), model.config.suggested_fixed()
        wide = model.config.suggested_bounds()
        wide[model.config.poi_index] = (-5.0, 10.0)
        narrow = model.config.suggested_bounds()
        ts = pyhf.infer.test_statistics
        ref["stats"] = {
            "qtilde": float(ts.qmu_tilde(1.0, data, model, init, narrow, fixed)),
            "tmu_tilde": float(ts.tmu_tilde(1.0, data, model, init, narrow, fixed)),
            "q": float(ts.qmu(1.0, data, model, init, wide, fixed)),
            "tmu": float(ts.tmu(1.0, data, model, init, wide, fixed)),
            "q0": float(ts.q0(0.0, signal_data, model, init, narrow, fixed)),
        }
        return ref

    return _numpy_pyhf(compute)


@pytest.mark.parametrize("test_stat", ["qtilde", "q"])
def test_hypotest_agrees_with_pyhf(backend, model, data, pyhf_reference, test_stat):
    bounds = {"mu": (-5.0, 10.0)} if test_stat == "q" else None
    for mu in (0.5, 2.0):
        result = infer.hypotest(model, data, mu, test_stat=test_stat, bounds=bounds, options=TIGHT)
        ours = [result.cls, result.clsb, result.clb, *result.expected_cls]
        np.testing.assert_allclose(ours, pyhf_reference[test_stat, mu], atol=1e-5)
        assert result.cls == pytest.approx(result.clsb / result.clb, rel=1e-12)


@pytest.fixture(scope="module")
def limits(model, data):
    """Our root-found limits on both backends (computed once per backend)."""
    results = {}
    for name in ("numpy", "jax"):
        pyhf.set_backend(name)
        try:
            results[name] = infer.upper_limit(model, data, options=TIGHT, rtol=1e-10)
        finally:
            pyhf.set_backend("numpy")
    return results


def test_upper_limits_have_pyhf_cls_at_the_level(model, data, limits):
    """pyhf's own CLs (observed, and each expected band) at our limits is 0.05: since
    |dCLs/dμ| ≈ 0.03 here, 3e-7 in CLs is 1e-5 in μ. (pyhf's toms748 scan to the same
    precision takes 13 s; this check is independent of any root finder.)"""
    reference = limits["numpy"]
    np.testing.assert_allclose([limits["jax"].observed, *limits["jax"].expected],
                               [reference.observed, *reference.expected], rtol=1e-6)
    for k, mu in enumerate([reference.observed, *reference.expected]):
        cls, band = _numpy_pyhf(lambda mu=mu: pyhf.infer.hypotest(mu, data, model, return_expected_set=True))
        value = float(cls) if k == 0 else float(band[k - 1])
        assert value == pytest.approx(0.05, abs=3e-7), (k, mu)
    result = limits["numpy"]
    assert list(result.expected) == sorted(result.expected)
    assert result.method == "toms748"
    assert result.cls_expected.shape == (result.poi_values.size, 5)


def test_scan_limits_agree_with_pyhf(model, data, pyhf_reference):
    result = infer.upper_limit(model, data, scan=np.linspace(1.0, 5.0, 5), options=TIGHT)
    np.testing.assert_allclose([result.observed, *result.expected], pyhf_reference["scan_limit"], rtol=1e-5)
    assert result.method == "scan"
    assert result.cls_observed.size == 5


def test_significance_agrees_with_pyhf(backend, model, signal_data, pyhf_reference):
    result = infer.significance(model, signal_data, options=TIGHT)
    p0, *band = pyhf_reference["q0"]
    assert result.pvalue == pytest.approx(p0, abs=1e-7, rel=1e-5)
    np.testing.assert_allclose(result.expected_pvalues, band, rtol=1e-5)
    assert result.expected_pvalue == result.expected_pvalues[2]
    assert result.significance == pytest.approx(np.sqrt(result.q0), rel=1e-9)
    assert result.expected_significance == pytest.approx(np.sqrt(result.q0_asimov), rel=1e-9)


def test_test_statistics_agree_with_pyhf(model, data, signal_data, pyhf_reference):
    for stat, reference in pyhf_reference["stats"].items():
        bounds = {"mu": (-5.0, 10.0)} if stat in ("q", "tmu") else None
        sample = signal_data if stat == "q0" else data
        value = infer.compute_teststat(model, sample, 1.0, test_stat=stat, bounds=bounds, options=TIGHT)
        assert value == pytest.approx(reference, abs=1e-6), stat


def test_tilde_statistics_bound_the_poi_at_zero(model):
    """q̃ with a negative lower bound equals q̃ with the bound at 0, and differs from q
    when the data prefer μ̂ < 0."""
    data = np.array([36.0, 45.0, 40.0, *model.config.auxdata])
    tilde = infer.compute_teststat(model, data, 1.0, test_stat="qtilde", bounds={"mu": (-5.0, 10.0)})
    plain = infer.compute_teststat(model, data, 1.0, test_stat="q", bounds={"mu": (-5.0, 10.0)})
    zero = infer.compute_teststat(model, data, 1.0, test_stat="qtilde")
    assert tilde == pytest.approx(zero, abs=1e-6)
    assert plain > tilde + 0.5


def test_asymptotic_pvalues_closed_form():
    clsb, clb, cls = infer.asymptotic_pvalues(4.0, 1.0, "q")
    from scipy.stats import norm

    assert clsb == [pytest.approx(norm.sf(2.0))]
    assert clb == [pytest.approx(norm.sf(1.0))]
    assert cls == [pytest.approx(norm.sf(2.0) / norm.sf(1.0))]
    # q̃ above q_A: ts = (q − q_A) / (2√q_A)
    clsb, clb, _ = infer.asymptotic_pvalues(4.0, 1.0, "qtilde")
    assert clb == [pytest.approx(norm.sf(1.5))]
    assert clsb == [pytest.approx(norm.sf(2.5))]


def test_errors(model, data):
    with pytest.raises(infer.InvalidFitSetup, match="unknown test statistic 'qq'"):
        infer.hypotest(model, data, 1.0, test_stat="qq")
    with pytest.raises(infer.InvalidFitSetup, match=r"CLs is still above the level at mu=0.5.*raise the POI's upper bound"):
        infer.upper_limit(model, data, bounds={"mu": (0.0, 0.5)}, init={"mu": 0.2}, strict=True)
    with pytest.raises(infer.InvalidFitSetup,
                       match=r"CLs does not cross 0.05 within the scan of mu \[0, 1\] \(observed\)"):
        infer.upper_limit(model, data, scan=[0.0, 0.5, 1.0], strict=True)
    with pytest.raises(infer.InvalidFitSetup, match="the POI 'mu' is fixed"):
        infer.hypotest(model, data, 1.0, fixed=["mu"])


def test_limits_beyond_the_scan_are_reported_not_raised(model, data):
    """A band whose CLs stays above the level to the end of the scan is ``> hi`` (NaN, null
    in JSON, outside_range "above") with a warning naming it; every other line keeps the
    number a wider scan through the same points gives (linear interpolation between the same
    two points), and ``strict=True`` raises as before."""
    wide = infer.upper_limit(model, data, scan=np.linspace(0.0, 5.0, 11))
    assert wide.outside_range == (None,) * 6
    hi = 3.0  # between the observed (2.83) and the +1 sigma expected limit (3.09)
    assert wide.observed < hi < wide.expected[3]
    with pytest.warns(infer.LimitOutsideRangeWarning,
                      match=r"CLs of expected \+1 sigma, expected \+2 sigma is still above 0.05 at mu=3.*limit > 3 "):
        narrow = infer.upper_limit(model, data, scan=np.linspace(0.0, hi, 7))
    assert narrow.outside_range == (None, None, None, None, "above", "above")
    assert narrow.search_range == (0.0, hi)
    assert narrow.observed == wide.observed
    assert narrow.expected[:3] == wide.expected[:3]
    assert np.isnan(narrow.expected[3])
    assert np.isnan(narrow.expected[4])
    assert [line.split()[-1] for line in str(narrow).splitlines()[-2:]] == ["-", "-"]
    assert "> 3" in str(narrow).splitlines()[-1]
    saved = json.loads(json.dumps(narrow.to_dict(), allow_nan=False))
    assert saved["expected"][3:] == [None, None]
    assert saved["outside_range"][4:] == ["above", "above"]
    with pytest.warns(infer.LimitOutsideRangeWarning, match=r"CLs of observed, .* is already below 0.05 at mu=6"):
        low = infer.upper_limit(model, data, scan=[6.0, 7.0])
    assert low.outside_range == ("below",) * 6
    assert "< 6" in str(low)
    with pytest.raises(infer.InvalidFitSetup, match=r"mu \[0, 3\] \(expected \+1 sigma\); extend the scan"):
        infer.upper_limit(model, data, scan=np.linspace(0.0, hi, 7), strict=True)


def test_results_print_and_serialise(model, data, signal_data, limits):
    test = infer.hypotest(model, data, 1.0)
    limit = limits["numpy"]
    discovery = infer.significance(model, signal_data)
    for result, words in ((test, ["CLs", "expected -2 sigma"]), (limit, ["observed", "+2 sigma"]),
                          (discovery, ["q0", "Z"])):
        text = str(result)
        assert all(word in text for word in words), text
        json.dumps(result.to_dict())
    assert list(test.to_dict())[:4] == ["poi", "poi_value", "test_stat", "teststat"]
    assert json.loads(json.dumps(limit.to_dict()))["expected"] == list(limit.expected)
