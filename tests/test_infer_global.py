"""Global minimum search of every fit: the off-shell interference example (two minima
along √μ), pyhf's published coupled-histosys fixture (two minima along a nuisance
parameter), the at-bound flag, the JSON and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
import scipy.optimize
from cli_toy import run

import ratiofactory
from ratiofactory import infer

EXACT = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace" / "exact.json"


# ----------------------------------------------------------------------------- off-shell example

@pytest.fixture(scope="module")
def _offshell_models() -> dict[str, tuple]:
    """Off-shell models built in this module, per backend (freed with the module)."""
    return {}


@pytest.fixture
def offshell(backend, _offshell_models):
    """exact.json's model (100k reference events) and its background-only Asimov data
    (conditional MLE at μ = 0 on the observed data), built once per backend."""
    if backend not in _offshell_models:
        ws = ratiofactory.Workspace.load(EXACT)
        model = ws.model()
        bonly = infer.fit(model, ws.data(model), fixed={"mu": 0.0}, hesse=False)
        _offshell_models[backend] = (model, model.expected_data(bonly.values), bonly)
    return _offshell_models[backend]


def test_background_only_asimov_fit_finds_mu_zero(offshell):
    model, asimov, generated = offshell
    local = infer.fit(model, asimov, global_search=False, hesse=False)
    assert local.poi_value == pytest.approx(2.38, abs=0.01)  # MIGRAD alone, from μ = 1: the wrong basin
    result = infer.fit(model, asimov, hesse=False)
    assert result.poi_value == pytest.approx(0.0, abs=1e-4)
    assert result.value("k_factor") == pytest.approx(generated.value("k_factor"), abs=2e-3)
    assert result.twice_nll == pytest.approx(generated.twice_nll, abs=1e-6) or result.twice_nll < generated.twice_nll
    assert result.twice_nll < local.twice_nll - 1.0
    (other,) = result.other_minima
    assert other.values[result.index("mu")] == pytest.approx(local.poi_value, abs=0.01)
    assert other.delta_twice_nll == pytest.approx(local.twice_nll - result.twice_nll, abs=1e-5)
    assert result.at_bound == {"mu": "lower"}
    assert result.local_fits == 2  # from μ = 1 and from the curve's minimum at μ = 0


def test_asimov_generating_point_as_seed(offshell):
    model, asimov, generated = offshell
    result = infer.fit(model, asimov, hesse=False, starts=1, seeds=[generated.values])
    assert result.poi_value == pytest.approx(0.0, abs=1e-4)


# ----------------------------------------------------------------------------- coupled histosys

def _histosys(lo, hi):
    return {"name": "coupled_histosys", "type": "histosys", "data": {"lo_data": lo, "hi_data": hi}}


#: pyhf's validation fixture 2bin_2channel_coupledhisto (validation/data in the pyhf repository):
#: one histosys shared by three samples in two channels, with both variations of bkg2's
#: second bin below nominal, so that the yield has a kink (a maximum) at α = 0.
COUPLED = {"channels": [
    {"name": "signal", "samples": [
        {"name": "signal", "data": [30.0, 35.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg1", "data": [100.0, 100.0], "modifiers": [_histosys([90.0, 90.0], [110.0, 110.0])]},
        {"name": "bkg2", "data": [50.0, 120.0], "modifiers": [_histosys([45.0, 45.0], [55.0, 55.0])]}]},
    {"name": "control", "samples": [
        {"name": "background", "data": [105.0, 100.0], "modifiers": [_histosys([95.0, 90.0], [110.0, 115.0])]}]}]}
COUPLED_DATA = {"signal": [170.0, 220.0], "control": [110.0, 105.0]}


@pytest.fixture
def coupled(backend):
    model = pyhf.Model(COUPLED, poi_name="mu", validate=False)
    data = [v for c in model.config.channels for v in COUPLED_DATA[c]] + model.config.auxdata
    return model, data


def _slsqp_global(model, data, fixed_mu=None):
    """Independent reference: scipy SLSQP from every point of an 11 × 11 grid (α, μ), on
    pyhf's numpy logpdf; the lowest minimum."""
    previous = pyhf.tensorlib.name
    pyhf.set_backend("numpy", precision="64b")
    try:
        reference = pyhf.Model(COUPLED, poi_name="mu", validate=False)
        alpha, mu = reference.config.par_order.index("coupled_histosys"), reference.config.poi_index
        data = np.asarray(data, dtype=float)

        def twice_nll(x):
            value = -2.0 * float(reference.logpdf(np.asarray(x), data)[0])
            return value if np.isfinite(value) else 1e10

        bounds = list(reference.config.suggested_bounds())
        if fixed_mu is not None:
            bounds[mu] = (fixed_mu, fixed_mu)
        best = None
        for a in np.linspace(-2.5, 2.5, 11):
            for m in np.linspace(0.0, 5.0, 11) if fixed_mu is None else [fixed_mu]:
                x0 = np.zeros(2)
                x0[alpha], x0[mu] = a, m
                res = scipy.optimize.minimize(twice_nll, x0, method="SLSQP", bounds=bounds,
                                              options={"ftol": 1e-14, "maxiter": 500})
                if best is None or res.fun < best.fun:
                    best = res
        return best
    finally:
        pyhf.set_backend(previous, precision="64b")


@pytest.fixture(scope="module")
def coupled_reference():
    model = pyhf.Model(COUPLED, poi_name="mu", validate=False)
    data = [v for c in model.config.channels for v in COUPLED_DATA[c]] + model.config.auxdata
    return _slsqp_global(model, data), _slsqp_global(model, data, fixed_mu=1.0)


def test_coupled_histosys_fit_reaches_the_slsqp_minimum(coupled, coupled_reference, backend):
    model, data = coupled
    reference, _ = coupled_reference
    local = infer.fit(model, data, global_search=False)
    assert local.twice_nll - reference.fun == pytest.approx(1.4692, abs=1e-3)  # the basin of the default init
    result = infer.fit(model, data)
    assert result.twice_nll == pytest.approx(reference.fun, abs=1e-6)
    np.testing.assert_allclose(result.values, reference.x, atol=2e-3)
    assert result.value("coupled_histosys") == pytest.approx(0.414, abs=2e-3)
    assert result.poi_value == pytest.approx(0.427, abs=2e-3)
    (other,) = result.other_minima
    np.testing.assert_allclose(other.values, local.values, atol=2e-3)
    assert other.delta_twice_nll == pytest.approx(local.twice_nll - result.twice_nll, abs=1e-5)
    assert result.at_bound == {}


def test_coupled_histosys_test_statistic_uses_global_fits(coupled, coupled_reference, backend):
    """q_μ at μ = 1: both the free and the conditional fit must be global (the conditional
    one has two minima in α too: α = −0.455 and α = 0.593)."""
    model, data = coupled
    free, conditional = coupled_reference
    q = infer.compute_teststat(model, data, 1.0, test_stat="q")
    assert q == pytest.approx(conditional.fun - free.fun, abs=1e-5)
    assert q == pytest.approx(1.9146, abs=1e-3)


def test_starts_option_is_checked():
    with pytest.raises(infer.InvalidFitSetup, match="starts must be a positive integer"):
        infer.FitOptions(starts=0)
    assert infer.FitOptions(global_search=False).curve_points == 1


# ----------------------------------------------------------------------------- at a bound

@pytest.fixture
def deficit():
    """Fewer events than the background alone: μ̂ wants to be negative, the bound is 0."""
    model = pyhf.simplemodels.uncorrelated_background([10.0], [50.0], [3.0], validate=False)
    return model, [38.0, *model.config.auxdata]


def test_best_fit_at_a_bound_is_flagged(deficit, backend):
    model, data = deficit
    result = infer.fit(model, data)
    assert result.poi_value == pytest.approx(0.0, abs=1e-6)
    assert result.at_bound == {"mu": "lower"}
    (line,) = result.warnings
    assert line.startswith("the best fit lies on a bound: mu = ")
    assert "warning: the best fit lies on a bound" in str(result)
    assert "lower" in result.table()
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["at_bound"] == {"mu": "lower"}
    assert payload["other_minima"] == []
    widened = infer.fit(model, data, bounds={"mu": (-5.0, 10.0)})
    assert widened.at_bound == {}
    assert widened.poi_value < -0.5
    assert widened.warnings == ()


def test_fixed_parameters_are_never_at_a_bound(deficit):
    model, data = deficit
    result = infer.fit(model, data, fixed={"mu": 0.0})
    assert result.at_bound == {}


def test_other_minima_serialise(coupled):
    model, data = coupled
    payload = json.loads(json.dumps(infer.fit(model, data).to_dict()))
    (other,) = payload["other_minima"]
    assert set(other["values"]) == {"coupled_histosys", "mu"}
    assert other["delta_twice_nll"] == pytest.approx(1.4692, abs=1e-3)
    assert payload["local_fits"] >= 2
    assert any("other local minimum" in line for line in payload["warnings"])


# ----------------------------------------------------------------------------- command line

def _deficit_workspace(tmp_path: Path) -> Path:
    spec = {"version": "1.0.0",
            "channels": [{"name": "sr", "samples": [
                {"name": "signal", "data": [10.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "data": [50.0], "modifiers": [
                    {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]}]}],
            "observations": [{"name": "sr", "data": [38.0]}],
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}
    path = tmp_path / "deficit.json"
    path.write_text(json.dumps(spec))
    return path


def test_cli_fit_warns_at_a_bound_and_takes_starts(tmp_path):
    path = _deficit_workspace(tmp_path)
    result = run(["fit", path, "--output-file", tmp_path / "fit.json"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: the best fit lies on a bound: mu = ")
    assert "Traceback" not in result.output
    assert "UserWarning" not in result.output
    payload = json.loads((tmp_path / "fit.json").read_text())
    assert payload["at_bound"] == {"mu": "lower"}
    assert payload["local_fits"] >= 1
    local = run(["fit", path, "--no-global", "--quiet", "--output-file", tmp_path / "local.json"])
    assert local.exit_code == 0
    assert local.stdout == ""  # --quiet: no table, but the warning still goes to stderr
    assert local.stderr.startswith("warning: the best fit lies on a bound")
    assert json.loads((tmp_path / "local.json").read_text())["local_fits"] == 1
    assert run(["fit", path, "--starts", "5", "-q"]).exit_code == 0
    bad = run(["fit", path, "--starts", "0"])
    assert bad.exit_code != 0
    assert "--starts" in bad.stderr


def test_inference_docs_examples_run():
    """docs/inference.md's examples (global search and at-bound ones included) run and print
    the numbers shown."""
    import doctest

    docs = Path(__file__).resolve().parents[1] / "docs" / "inference.md"
    result = doctest.testfile(str(docs), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 30
    assert result.failed == 0
