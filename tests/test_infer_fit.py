"""Maximum-likelihood fits: agreement with pyhf's minuit fit, exact errors, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

from ratiofactory import infer
from ratiofactory.errors import RatiofactoryError

TIGHT = 1e-7

SPEC = {"channels": [{"name": "sr", "samples": [
    {"name": "signal", "data": [3.0, 5.0, 7.0, 4.0], "modifiers": [
        {"name": "mu", "type": "normfactor", "data": None},
        {"name": "lumi", "type": "lumi", "data": None}]},
    {"name": "background", "data": [40.0, 50.0, 45.0, 30.0], "modifiers": [
        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
        {"name": "bkg_shape", "type": "histosys",
         "data": {"hi_data": [42.0, 52.0, 44.0, 29.0], "lo_data": [38.0, 48.0, 46.0, 31.0]}},
        {"name": "stat", "type": "staterror", "data": [3.0, 3.0, 3.0, 3.0]}]}]}],
    "parameters": [{"name": "lumi", "inits": [1.0], "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.8, 1.2]]}]}


@pytest.fixture(scope="module")
def model():
    return pyhf.Model(SPEC, poi_name="mu", validate=False)


@pytest.fixture(scope="module")
def data(model):
    return np.array([49.0, 61.0, 50.0, 33.0, *model.config.auxdata])


@pytest.fixture(scope="module")
def pyhf_fits(model, data):
    """pyhf's own minuit fits (numpy, tight tolerance): free, and with lumi and mu fixed."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=TIGHT))
    try:
        free = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
        fixed = list(model.config.suggested_fixed())
        init = list(model.config.suggested_init())
        for name, value in (("lumi", 1.01), ("mu", 0.5)):
            fixed[model.config.par_slice(name).start] = True
            init[model.config.par_slice(name).start] = value
        held = pyhf.infer.mle.fit(data, model, init_pars=init, fixed_params=fixed, return_fitted_val=True)
    finally:
        pyhf.set_backend("numpy")
    return [(np.asarray(p, dtype=float), float(v)) for p, v in (free, held)]


@pytest.fixture(scope="module")
def reference_errors(model, data, pyhf_fits):
    return _finite_difference_errors(model, data, pyhf_fits[0][0], np.ones(model.config.npars, bool))


def _finite_difference_errors(model, data, x, free):
    """Independent reference: √diag(2 H⁻¹) with H from central differences of −2 ln L."""
    def f(p):
        return -2.0 * float(np.asarray(model.logpdf(p, data)).reshape(-1)[0])
    idx = np.flatnonzero(free)
    h = 1e-4 * np.maximum(1.0, np.abs(x))
    hess = np.zeros((idx.size, idx.size))
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            ei, ej = np.eye(x.size)[i] * h[i], np.eye(x.size)[j] * h[j]
            hess[a, b] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    errors = np.zeros(x.size)
    errors[idx] = np.sqrt(np.diag(2.0 * np.linalg.inv(hess)))
    return errors


@pytest.mark.parametrize("method", ["minuit", "scipy"])
def test_fit_agrees_with_pyhf(backend, model, data, pyhf_fits, reference_errors, method):
    reference, twice_nll = pyhf_fits[0]
    result = infer.fit(model, data, method=method, tolerance=TIGHT)
    assert result.valid
    assert result.covariance_valid
    assert result.backend == backend
    np.testing.assert_allclose(result.values, reference, atol=1e-5)
    assert result.twice_nll == pytest.approx(twice_nll, abs=1e-7)
    np.testing.assert_allclose(result.errors, reference_errors, rtol=2e-3 if backend == "numpy" else 1e-5)


def test_fixed_parameters_agree_with_pyhf(backend, model, data, pyhf_fits):
    reference, twice_nll = pyhf_fits[1]
    result = infer.fit(model, data, fixed={"lumi": 1.01, "mu": 0.5}, tolerance=TIGHT)
    np.testing.assert_allclose(result.values, reference, atol=1e-5)
    assert result.twice_nll == pytest.approx(twice_nll, abs=1e-7)
    assert result.value("lumi") == 1.01
    assert result.error("lumi") == 0.0
    assert result.covariance[result.index("mu")].tolist() == [0.0] * model.config.npars


def test_fixed_as_list_of_bools_and_names(model, data):
    flags = [name == "lumi" for name in model.config.par_names]
    by_flags = infer.fit(model, data, fixed=flags)
    by_name = infer.fit(model, data, fixed=["lumi"])
    np.testing.assert_allclose(by_flags.values, by_name.values, atol=1e-12)
    assert by_name.value("lumi") == 1.0


def test_minos_single_bin_counting_matches_analytic():
    """ν = μ s + b, n observed: −2Δln L = 2[ν − n + n ln(n/ν)], crossings in closed form."""
    from scipy.optimize import brentq

    s, b, n = 10.0, 20.0, 35.0
    counting = pyhf.Model({"channels": [{"name": "c", "samples": [
        {"name": "s", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "b", "data": [b], "modifiers": []}]}]}, poi_name="mu", validate=False)
    t = lambda mu: 2 * (mu * s + b - n + n * np.log(n / (mu * s + b))) - 1.0
    muhat = (n - b) / s
    result = infer.fit(counting, [n], minos=["mu"], tolerance=1e-6)
    lower, upper = result.minos["mu"]
    assert result.poi_value == pytest.approx(muhat, abs=1e-5)
    assert result.poi_error == pytest.approx(np.sqrt(n) / s, rel=1e-5)  # Hesse: σ = √n / s
    assert muhat + lower == pytest.approx(brentq(t, 0.0, muhat), abs=1e-4)
    assert muhat + upper == pytest.approx(brentq(t, muhat, 10.0), abs=1e-4)
    assert "minos" in str(result)


def test_result_prints_and_serialises(model, data):
    result = infer.fit(model, data)
    text = str(result)
    assert "valid=yes" in text
    assert "bkg_shape" in text
    assert "stat[3]" in text
    payload = json.loads(json.dumps(result.to_dict()))
    assert list(payload) == ["parameters", "values", "errors", "covariance", "fixed", "poi", "twice_nll",
                             "valid", "covariance_valid", "edm", "nfev", "message", "method", "backend",
                             "minos", "other_minima", "at_bound", "local_fits", "warnings"]
    assert payload["poi"] == "mu"
    assert isinstance(payload["values"][0], float)
    assert result.correlation[0, 0] == pytest.approx(1.0)
    with pytest.raises(AttributeError):
        result.valid = False


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"poi": "nope"}, r"unknown parameter 'nope'; the model's parameters are: .*bkg_norm"),
    ({"init": {"mu": 5.0}, "bounds": {"mu": (0.0, 2.0)}}, r"init of 'mu' = 5 lies outside its bounds \[0, 2\]"),
    ({"fixed": {"mu": 20.0}}, r"fixed value of 'mu' = 20 lies outside its bounds \[0, 10\]"),
    ({"bounds": {"mu": (3.0, 1.0)}}, r"bounds of 'mu' = \[3, 1\] are empty"),
    ({"init": [1.0, 2.0]}, r"init: expected 8 values"),
    ({"fixed": {"stat": [1.0, 1.0]}}, r"fixed value for 'stat': expected 4 values, got 2"),
    ({"method": "simplex"}, r"unknown fit method 'simplex'"),
    ({"minos": ["lumi"], "fixed": ["lumi"]}, r"minos: parameter 'lumi' is fixed"),
])
def test_bad_input_is_one_clear_error(model, data, kwargs, message):
    with pytest.raises(infer.InvalidFitSetup, match=message) as info:
        infer.fit(model, data, **kwargs)
    assert isinstance(info.value, RatiofactoryError)
    assert "\n" not in str(info.value)


def test_wrong_data_length(model):
    with pytest.raises(infer.InvalidFitSetup, match=r"data has shape \(3,\); the model expects a flat vector of 11 numbers \(4 main data then 7 auxiliary data\)"):
        infer.fit(model, [1.0, 2.0, 3.0])


def test_nonfinite_likelihood_at_init_is_reported(model, data):
    with pytest.raises(infer.InvalidFitSetup, match=r"-2 ln L is nan at the initial parameters \(bkg_shape=0, lumi=1, mu=-100.*start from other initial values"):
        infer.fit(model, data, init={"mu": -100.0}, bounds={"mu": (-200.0, 10.0)})


def test_unconverged_fit_raises_with_diagnostics(model, data):
    with pytest.raises(infer.FitFailed, match="did not converge: MIGRAD did not converge; call limit reached") as info:
        infer.fit(model, data, maxiter=5)
    assert info.value.result is not None
    assert not info.value.result.valid
