"""Ratios normalised on the reference sample: the estimators, the report (API, `inspect`),
exact Asimov closure, shape drift, negative Asimov weights.

Independent references: the exact densities (scipy.stats) on the same events, analytic
expectations (E_{p_S}[g^α] of a Gaussian shift), repeated Monte Carlo samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_toy import P_B, P_REF, P_S, make_toy, run, run_json
from scipy import stats

import ratiofactory
from ratiofactory import infer
from ratiofactory.normalisation import (
    DRIFT_LIMIT,
    MIN_EFFECTIVE_EVENTS,
    drift_warnings,
    kish_effective_size,
    weighted_mean_and_error,
)
from ratiofactory.testing import Exponential, Normal, constant_model, ratio_model, sample_mixture

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace"


# --- estimators -------------------------------------------------------------------------


def test_weighted_mean_and_error_against_the_textbook_formula():
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, 1000)
    w /= w.sum()
    v = rng.exponential(1.0, 1000)
    mean, error = weighted_mean_and_error(w, v)
    assert mean == pytest.approx(np.sum(w * v), rel=1e-14)
    assert error == pytest.approx(np.sqrt(np.sum(w**2 * (v - np.sum(w * v)) ** 2)), rel=1e-12)


def test_the_standard_error_is_the_spread_over_repeated_reference_samples():
    """The reported error of N = Σ w r agrees with the scatter of N over 400 independent
    reference samples (500 weighted events each)."""
    rng = np.random.default_rng(7)
    factors, errors = [], []
    for _ in range(400):
        x = rng.exponential(1.0, 500)
        w = rng.uniform(0.5, 1.5, 500)
        mean, error = weighted_mean_and_error(w / w.sum(), x)
        factors.append(mean)
        errors.append(error)
    spread = np.std(factors, ddof=1)
    assert np.mean(errors) == pytest.approx(spread, rel=0.1)  # 400 samples: ±3.5 % on the spread


def test_a_constant_ratio_has_zero_error_and_no_pull():
    """The old estimator took the spread about a rounded mean: ~1e-17 'errors' and pulls of
    ±141 for a ratio that is exactly constant."""
    w = np.full(3000, 1 / 3000)  # Σ w = 1 only up to rounding
    mean, error = weighted_mean_and_error(w, np.ones(3000))
    assert error == 0.0
    assert abs(mean - 1.0) < 1e-12
    assert infer.YieldCheck("SR", 300.0, 300.0 * mean, error).pull == 0.0
    assert infer.YieldCheck("SR", 300.0, 301.0, 0.0).pull == np.inf


def test_kish_effective_size():
    assert kish_effective_size(np.full(10, 0.1)) == pytest.approx(10.0)
    assert kish_effective_size(np.array([1.0, 1.0, 2.0])) == pytest.approx(16 / 6)
    assert kish_effective_size(np.zeros(0)) == 0.0


# --- the report on an exact-ratio toy --------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path, _ = make_toy(tmp_path_factory.mktemp("norm"))
    return path


def _exact(x):
    """(r_S, r_B) = p/p_ref of the CLI toy from scipy.stats (the signal ratio is an
    ensemble of N(3, 0.4) and N(3, 0.41) over p_ref)."""
    expo = stats.truncexpon(b=0.4 * 8.0, scale=1 / 0.4)
    p_s = 0.5 * (stats.norm.pdf(x, 3.0, 0.4) + stats.norm.pdf(x, 3.0, 0.41))
    p_ref = 0.3 * stats.norm.pdf(x, 3.0, 0.4) + 0.7 * expo.pdf(x)
    return p_s / p_ref, expo.pdf(x) / p_ref


def test_report_numbers_against_the_exact_ratios(toy):
    model = ratiofactory.Workspace.load(toy).model()
    x_ref = np.load(toy.parent / "data" / "reference.npz")["x"]
    report = model.normalisation()
    (channel,) = report.channels
    assert channel.channel == "SR"
    assert (channel.ratio_normalisation, channel.shape_normalisation) == ("reference", "reference")
    assert channel.reference_events == len(x_ref) == 2000
    assert channel.effective_events == pytest.approx(2000.0)
    for sample, r in zip(channel.samples, _exact(x_ref), strict=True):
        assert sample.factor == pytest.approx(np.mean(r), rel=1e-10)
        assert sample.standard_error == pytest.approx(np.std(r) / np.sqrt(len(r)), rel=1e-8)
        assert sample.effective_events == pytest.approx(np.sum(r) ** 2 / np.sum(r**2), rel=1e-8)
        assert abs(sample.pull) < 3  # exact ratios: N differs from one by MC noise only
    assert report.warnings() == []
    payload = report.to_dict()
    assert payload["channels"][0]["samples"][0]["factor"] == channel.samples[0].factor
    assert json.loads(json.dumps(payload)) == payload


def test_inspect_prints_and_writes_the_normalisation(toy, tmp_path):
    result = run(["inspect", toy])
    assert result.exit_code == 0, result.output
    assert "Σ w_ref r" in result.stdout
    assert "signal" in result.stdout
    assert result.stderr == ""
    content = run_json(["inspect", toy], tmp_path)
    samples = content["normalisation"]["channels"][0]["samples"]
    x_ref = np.load(toy.parent / "data" / "reference.npz")["x"]
    assert [s["factor"] for s in samples] == pytest.approx([np.mean(r) for r in _exact(x_ref)], rel=1e-10)
    assert content["normalisation"]["warnings"] == []


def test_inspect_warns_on_one_line_each_for_a_small_or_mismatched_reference(tmp_path):
    """50 reference events (ESS < 100) and a background ratio computed against a wrong
    reference density (0.9/0.1 instead of 0.3/0.7): it integrates to ~5 ≠ 1."""
    path, _ = make_toy(tmp_path)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "data" / "reference.npz", x=sample_mixture(P_REF, 50, rng)[:, 0])
    ratio_model(P_B, [(0.9, P_S[0][1]), (0.1, P_B[0][1])], path=tmp_path / "models" / "B.onnx")
    result = run(["inspect", path])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines)
    assert any("reference sample has an effective size of only 50.0 events" in line for line in lines)
    assert any("sample 'background': the ratio integrates to" in line and "standard errors from 1" in line
               for line in lines)
    assert "Traceback" not in result.stderr
    assert ".py:" not in result.stderr
    assert MIN_EFFECTIVE_EVENTS == 100


@pytest.mark.parametrize(("mode", "expected"), [("reference", 0), ("none", 2)])
def test_ratiosys_averages_warn_only_where_the_likelihood_keeps_them(mode, expected):
    # with ratio_normalisation 'reference' the likelihood uses g±/K±, so K± ≠ 1 is no warning
    from ratiofactory.normalisation import (
        ChannelNormalisation,
        NormalisationReport,
        SampleNormalisation,
        SystematicNormalisation,
    )

    shifted = SystematicNormalisation("k_factor", 0.999671, 5e-6, 1.00024, 5.3e-6)  # the ensemble example's SBI
    sample = SampleNormalisation("SBI", 1.0, 0.0017, 77084.3, (shifted,))
    report = NormalisationReport((ChannelNormalisation("SR_4l", mode, "reference", 100000, 1e5, (sample,)),))
    lines = report.warnings()
    assert len(lines) == expected
    if expected:
        assert lines[0].startswith("channel 'SR_4l', sample 'SBI': ratiosys 'k_factor' hi averages 0.999671")
        assert "(-65.8 standard errors from 1), so the sample's yield changes with 'k_factor'" in lines[0]


def test_a_constant_ratio_gives_no_false_asimov_warning(tmp_path, backend):
    """Every sample's ratio a constant 1, the old behaviour (no normalisation): Σ w^A = ν
    up to rounding, and no AsimovYieldWarning (pytest turns warnings into errors)."""
    constant_model(1.0, 1, path=tmp_path / "one.onnx")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "ref.npz", x=rng.uniform(0, 1, 3000))
    np.savez(tmp_path / "obs.npz", x=rng.uniform(0, 1, 40))
    onnx = {"onnx": {"path": "one.onnx"}, "output": "ratio"}
    spec = {"version": "1.0.0", "unbinned_channels": [{
        "name": "SR", "observables": [{"name": "x", "bounds": [0, 1]}], "ratio_normalisation": "none",
        "reference": {"events": {"path": "ref.npz"}},
        "samples": [{"name": "S", "yield": 10.0, "ratio": onnx, "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "B", "yield": 30.0, "ratio": onnx, "modifiers": []}]}],
        "observations": [{"name": "SR", "events": {"path": "obs.npz"}}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}
    model = ratiofactory.Workspace(spec, base_dir=tmp_path).model()
    check, = infer.asimov_yield_checks(model, [1.3])
    assert check.standard_error == 0.0
    assert check.pull == 0.0
    infer.asimov_data(model, [1.3])
    sample = model.normalisation().channels[0].samples[0]
    assert (sample.standard_error, sample.pull) == (0.0, 0.0)


# --- exact Asimov closure ------------------------------------------------------------------------


def _closure(model, points, start_offset):
    for point in points:
        truth = np.array([point[name] for name in model.config.par_order])
        data = infer.asimov_data(model, truth)
        start = {name: point[name] + start_offset.get(name, 0.0) for name in model.config.par_order}
        result = infer.fit(model, data, init=start, tolerance=1e-8)
        np.testing.assert_allclose(result.values, truth, atol=1e-4, err_msg=str(point))


def test_asimov_closure_on_the_cli_toy(toy, backend):
    model = ratiofactory.Workspace.load(toy).model()
    points = [{"mu": mu, "bkg_norm": b} for mu, b in ((1.0, 0.0), (0.2, 1.3), (3.0, -0.8), (0.0, 0.4))]
    _closure(model, points, {"mu": 0.3, "bkg_norm": -0.3})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["exact.json", "workspace.json"])
def test_asimov_closure_on_the_shipped_models(name, backend):
    """Within bounds, s > 0 on every reference event; started near θ₀ (the other basin of
    the √μ interference is the global-fit helper's business)."""
    model = ratiofactory.Workspace.load(EXAMPLE / name).model()
    points = [{"mu": 1.0, "lumi": 1.0, "k_factor": 0.0}, {"mu": 2.0, "lumi": 1.02, "k_factor": 0.7},
              {"mu": 0.3, "lumi": 0.98, "k_factor": -1.4}, {"mu": 0.0, "lumi": 1.0, "k_factor": 2.2}]
    _closure(model, points, {"mu": 0.05, "k_factor": 0.2, "lumi": 0.005})


# --- shape drift ------------------------------------------------------------------------------------

DRIFT_NU_S, DRIFT_NU_B, SHIFT, WIDTH = 200.0, 400.0, 0.25, 0.5


@pytest.fixture(scope="module")
def drift_models(tmp_path_factory):
    """The issue's model: a Gaussian signal whose peak moves by ±0.25 (σ = 0.5) as a code4
    ratiosys, on an exponential background; one workspace per shape normalisation."""
    root = tmp_path_factory.mktemp("drift")
    signal = [(1.0, [Normal(5.0, WIDTH)])]
    background = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
    reference = [(0.5, signal[0][1]), (0.5, background[0][1])]
    graphs = {"S": (signal, reference), "B": (background, reference),
              "up": ([(1.0, [Normal(5.0 + SHIFT, WIDTH)])], signal),
              "dn": ([(1.0, [Normal(5.0 - SHIFT, WIDTH)])], signal)}
    for name, (num, den) in graphs.items():
        ratio_model(num, den, path=root / f"{name}.onnx")
    rng = np.random.default_rng(3)
    observed = np.concatenate([sample_mixture(signal, rng.poisson(DRIFT_NU_S), rng),
                               sample_mixture(background, rng.poisson(DRIFT_NU_B), rng)])[:, 0]
    ref = sample_mixture(reference, 20000, rng)[:, 0]
    np.savez(root / "obs.npz", x=observed[(observed >= 0) & (observed <= 10)])
    np.savez(root / "ref.npz", x=ref[(ref >= 0) & (ref <= 10)])
    onnx = lambda f: {"onnx": {"path": f}, "output": "ratio"}
    paths = {}
    for mode in ("nominal", "reference"):
        spec = {"version": "1.0.0", "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0, 10]}],
            "reference": {"events": {"path": "ref.npz"}}, "shape_normalisation": mode,
            "samples": [{"name": "S", "yield": DRIFT_NU_S, "ratio": onnx("S.onnx"), "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "shift", "type": "ratiosys",
                             "data": {"hi": onnx("up.onnx"), "lo": onnx("dn.onnx"), "interpolation": "code4"}}]},
                        {"name": "B", "yield": DRIFT_NU_B, "ratio": onnx("B.onnx"),
                         "modifiers": [{"name": "b", "type": "normfactor", "data": None}]}]}],
            "observations": [{"name": "SR", "events": {"path": "obs.npz"}}],
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
                {"name": "mu", "bounds": [[0, 5]]}]}}]}
        paths[mode] = root / f"{mode}.json"
        paths[mode].write_text(json.dumps(spec))
    return paths


def _gaussian_shift_drift(alpha: float) -> float:
    """E_{p_S}[g⁺(x)^α] for g⁺ = N(5 + δ, σ)/N(5, σ): exp(α(α − 1) δ²/(2σ²)) (code4 is
    exponential for α ≥ 1)."""
    return float(np.exp(alpha * (alpha - 1) * SHIFT**2 / (2 * WIDTH**2)))


def test_nominal_shape_normalisation_runs_to_the_bound_and_is_reported(drift_models, backend):
    model = ratiofactory.Workspace.load(drift_models["nominal"]).model()
    data = ratiofactory.Workspace.load(drift_models["nominal"]).data(model)
    shift = model.config.par_order.index("shift")
    result = infer.fit(model, data, init={"shift": 2.0})
    assert result.values[shift] == pytest.approx(5.0, abs=1e-6)  # the upper bound
    drift = model.shape_drift(result.values)
    assert drift["SR"]["S"] == pytest.approx(_gaussian_shift_drift(5.0), rel=0.02)  # 12.18
    lines = drift_warnings(model, drift)
    assert len(lines) == 1
    assert "channel 'SR', sample 'S'" in lines[0]
    assert "12.2" in lines[0]
    # −2 ln L falls steadily beyond |α| = 1 (the density gains a yield ν does not)
    profile = [2 * float(model.nll(infer.fit(model, data, fixed={"shift": a}).values, data)) for a in (1, 3, 5)]
    assert profile[0] > profile[1] > profile[2]


def test_reference_shape_normalisation_stays_inside(drift_models, backend):
    model = ratiofactory.Workspace.load(drift_models["reference"]).model()
    data = ratiofactory.Workspace.load(drift_models["reference"]).data(model)
    shift = model.config.par_order.index("shift")
    result = infer.fit(model, data, init={"shift": 2.0})
    assert abs(result.values[shift]) < 1.0
    drift = model.shape_drift(result.values)
    assert abs(drift["SR"]["S"] - 1) < DRIFT_LIMIT
    assert drift_warnings(model, model.shape_drift([1.0, 5.0, 1.0])) == []  # divided out: no warning
    assert model.shape_drift([1.0, 0.0, 1.0]) == {"SR": {"S": pytest.approx(1.0, abs=1e-12)}}


def test_cli_fit_reports_the_drift(drift_models, tmp_path):
    content = run_json(["fit", drift_models["nominal"], "--fixed", "shift=5"], tmp_path)
    assert content["shape_drift"]["SR"]["S"] == pytest.approx(_gaussian_shift_drift(5.0), rel=0.02)
    result = run(["fit", drift_models["nominal"], "--fixed", "shift=5"])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: channel 'SR', sample 'S'")
    quiet = run(["fit", drift_models["reference"], "--fixed", "shift=5"])
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert "shape drift at the best fit" in quiet.stdout


# --- negative Asimov weights and negative data weights -------------------------------------------


def test_negative_weights_count_in_the_likelihood(toy, backend):
    """A negative event weight enters as w ln s like any other; it is never dropped."""
    model = ratiofactory.Workspace.load(toy).model()
    data = np.array(ratiofactory.Workspace.load(toy).data(model), dtype=float)
    pars = [1.2, 0.3]
    _nu, s = (np.asarray(v) for v in model.event_densities(pars, "SR"))
    changed = data.copy()
    changed[:5] = -0.5
    expected = float(model.logpdf(pars, data)[0]) + np.sum((-0.5 - 1.0) * np.log(s[:5]))
    assert float(model.logpdf(pars, changed)[0]) == pytest.approx(expected, rel=1e-12)
