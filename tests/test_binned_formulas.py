"""Formula coefficients on binned samples (what pyhf issue #850 asks for).

A binned S/SBI/B channel with the coefficients μ − √μ, √μ, 1 − √μ and a normsys is
compared with an independent Poisson computation (scipy.stats), on numpy and jax, with
the jax gradient against the hand-derived one; the same channel combined with an exact
unbinned channel sharing μ is compared with scipy's densities; the placeholders never
appear as parameters.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyhf
import pytest
from scipy import optimize, stats

import ratiofactory
import ratiofactory.infer
from ratiofactory.binned_formulas import PLACEHOLDER_PREFIX
from ratiofactory.errors import InvalidExpression, InvalidModel, InvalidSpecification
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

S = np.array([2.0, 4.0, 1.0])
SBI = np.array([20.0, 16.0, 9.5])  # interference I = SBI - S - B < 0
B = np.array([20.0, 15.0, 10.0])
K_HI, K_LO = 1.1, 0.9
OBSERVED = [23.0, 17.0, 12.0]
FORMULAS = {"S": "mu - sqrt(mu)", "SBI": "sqrt(mu)", "B": "1 - sqrt(mu)"}


def _binned_channel(name: str = "SR_2l2v") -> dict:
    samples = []
    for sample, data in (("S", S), ("SBI", SBI), ("B", B)):
        samples.append({"name": sample, "data": data.tolist(), "modifiers": [
            {"name": f"f_{sample}", "type": "formula", "data": {"expression": FORMULAS[sample]}},
            {"name": "k", "type": "normsys", "data": {"hi": K_HI, "lo": K_LO}},
        ]})
    return {"name": name, "samples": samples}


def _binned_spec() -> dict:
    return {
        "version": "1.0.0",
        "channels": [_binned_channel()],
        "observations": [{"name": "SR_2l2v", "data": OBSERVED}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0, 10]]}]}}],
    }


def _kappa(k: float) -> float:
    """pyhf's default normsys factor (interpolation code4, from pyhf's interpolator)."""
    prev = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        interp = pyhf.interpolators.code4([[[[K_LO], [1.0], [K_HI]]]], alpha0=1)
        return float(np.asarray(interp(pyhf.tensorlib.astensor([[k]])))[0, 0, 0, 0])
    finally:
        pyhf.set_backend(*prev)


def _expected_counts(mu: float, k: float) -> np.ndarray:
    """ν_b = Σ_j f_j(μ) n_jb · κ(k)."""
    kappa = _kappa(k)
    root = math.sqrt(mu)
    return ((mu - root) * S + root * SBI + (1 - root) * B) * kappa


def _reference_logpdf(mu: float, k: float) -> float:
    """Poisson counts (scipy) + the unit-Gaussian constraint of k (auxdata 0)."""
    counts = stats.poisson.logpmf(np.asarray(OBSERVED, dtype=int), _expected_counts(mu, k)).sum()
    return float(counts + stats.norm.logpdf(0.0, k, 1.0))


def _reference_dmu(mu: float, k: float) -> float:
    """d/dμ of the reference: Σ_b (n_b/ν_b − 1) dν_b/dμ."""
    kappa = _kappa(k)
    root = math.sqrt(mu)
    dnu = ((1 - 0.5 / root) * S + 0.5 / root * SBI - 0.5 / root * B) * kappa
    return float(np.sum((np.asarray(OBSERVED) / _expected_counts(mu, k) - 1) * dnu))


def test_placeholders_are_not_parameters():
    model = ratiofactory.Workspace(_binned_spec()).model()
    assert sorted(model.config.par_order) == ["k", "mu"]
    assert model.config.poi_name == "mu"
    assert model.config.npars == 2 == len(model.config.suggested_init())
    assert all(not n.startswith(PLACEHOLDER_PREFIX) for n in model.config.par_names)
    assert model.config.auxdata == [0.0]  # k only: the placeholders are unconstrained
    assert model.binned.config.npars == 4  # pyhf's own model: k and the 3 placeholders
    assert sum(n.startswith(PLACEHOLDER_PREFIX) for n in model.binned.config.par_order) == 3


@pytest.mark.parametrize(("mu", "k"), [(0.0, 0.0), (0.25, 0.3), (1.0, -0.7), (2.0, 1.4), (4.0, -1.8)])
def test_logpdf_is_the_independent_poisson_computation(backend, mu, k):
    ws = ratiofactory.Workspace(_binned_spec())
    model = ws.model()
    pars = np.zeros(2)
    pars[model.config.par_slice("mu")] = mu
    pars[model.config.par_slice("k")] = k
    value = float(model.logpdf(pars, ws.data(model))[0])
    assert value == pytest.approx(_reference_logpdf(mu, k), rel=1e-12)
    expected = np.asarray(model.expected_actualdata(pars))
    np.testing.assert_allclose(expected, _expected_counts(mu, k), rtol=1e-12)


def test_jax_gradient_is_the_hand_derived_one():
    import jax

    pyhf.set_backend("jax", precision="64b")
    try:
        ws = ratiofactory.Workspace(_binned_spec())
        model = ws.model()
        data = ws.data(model)
        i_mu, i_k = model.config.par_slice("mu").start, model.config.par_slice("k").start
        grad = jax.jit(jax.grad(lambda p: model.logpdf(p, data)[0]))
        for mu, k in [(0.5, 0.2), (2.5, -0.4)]:
            pars = np.zeros(2)
            pars[i_mu], pars[i_k] = mu, k
            g = np.asarray(grad(pars))
            assert g[i_mu] == pytest.approx(_reference_dmu(mu, k), rel=1e-12)
            step = 1e-6  # k: central difference of the independent reference
            numeric = (_reference_logpdf(mu, k + step) - _reference_logpdf(mu, k - step)) / (2 * step)
            assert g[i_k] == pytest.approx(numeric, rel=1e-7)
    finally:
        pyhf.set_backend("numpy", precision="64b")


def test_fit_is_the_reference_minimum():
    ws = ratiofactory.Workspace(_binned_spec())
    model = ws.model()
    result = ratiofactory.infer.fit(model, ws.data(model), tolerance=1e-6)
    ref = optimize.minimize(lambda p: -_reference_logpdf(p[0], p[1]), [1.0, 0.0],
                            bounds=[(0, 10), (-5, 5)], method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-10})
    fitted = {n: result.values[model.config.par_slice(n).start] for n in ("mu", "k")}
    assert fitted["mu"] == pytest.approx(ref.x[0], abs=1e-4)
    assert fitted["k"] == pytest.approx(ref.x[1], abs=1e-4)
    assert "__formula" not in json.dumps(result.to_dict())


def test_shared_with_a_binned_normfactor_of_pyhf():
    """``mu`` as a pyhf normfactor in one channel and inside a formula in another is one parameter."""
    spec = _binned_spec()
    spec["channels"].append({"name": "CR", "samples": [
        {"name": "sig", "data": [3.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": [40.0], "modifiers": []}]})
    spec["observations"].append({"name": "CR", "data": [45.0]})
    ws = ratiofactory.Workspace(spec)
    model = ws.model()
    assert sorted(model.config.par_order) == ["k", "mu"]
    pars = np.zeros(2)
    pars[model.config.par_slice("mu")] = 1.7
    pars[model.config.par_slice("k")] = 0.4
    expected = _reference_logpdf(1.7, 0.4) + stats.poisson.logpmf(45, 3.0 * 1.7 + 40.0)
    assert float(model.logpdf(pars, ws.data(model))[0]) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- combination

NU_S, NU_B = 30.0, 300.0
P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("binned_formulas")
    (root / "models").mkdir()
    (root / "data").mkdir()
    ratio_model(P_S, P_REF, path=root / "models" / "S.onnx")
    ratio_model(P_B, P_REF, path=root / "models" / "B.onnx")
    rng = np.random.default_rng(11)
    observed = sample_mixture([(NU_S, P_S[0][1]), (NU_B, P_B[0][1])], rng.poisson(NU_S + NU_B), rng)
    observed = observed[(observed[:, 0] >= 0) & (observed[:, 0] <= 10)]
    np.savez(root / "data" / "observed.npz", x=observed[:, 0])
    onnx = lambda name: {"onnx": {"path": f"models/{name}.onnx"}, "output": "ratio"}
    spec = _binned_spec()
    spec["unbinned_channels"] = [{
        "name": "SR_4l",
        "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
        "samples": [
            {"name": "S", "yield": NU_S, "ratio": onnx("S"),
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "B", "yield": NU_B, "ratio": onnx("B"), "modifiers": []},
        ],
    }]
    spec["observations"].append({"name": "SR_4l", "events": {"path": "data/observed.npz"}})
    (root / "workspace.json").write_text(json.dumps(spec))
    return root, observed[:, 0]


def test_combination_with_an_unbinned_channel_sharing_mu(combined, backend):
    root, x = combined
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    data = ws.data(model)
    assert sorted(model.config.par_order) == ["k", "mu"]
    p_s = stats.norm.pdf(x, 5.0, 0.5)
    p_b = stats.truncexpon(b=3.0, scale=1 / 0.3).pdf(x)
    p_ref = 0.5 * p_s + 0.5 * p_b
    for mu, k in [(0.3, 0.5), (1.0, 0.0), (2.2, -1.1)]:
        pars = np.zeros(2)
        pars[model.config.par_slice("mu")] = mu
        pars[model.config.par_slice("k")] = k
        unbinned_nll = mu * NU_S + NU_B - np.sum(np.log((mu * NU_S * p_s + NU_B * p_b) / p_ref))
        expected = _reference_logpdf(mu, k) - unbinned_nll
        assert float(model.logpdf(pars, data)[0]) == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------- bad input


def test_bad_binned_formula_names_its_pointer():
    spec = _binned_spec()
    spec["channels"][0]["samples"][1]["modifiers"][0]["data"]["expression"] = "sqrt(mu"
    with pytest.raises(InvalidExpression, match=r"^/channels/0/samples/1/modifiers/0/data/expression: "):
        ratiofactory.Workspace(spec)


def test_reserved_placeholder_names_are_rejected():
    spec = _binned_spec()
    spec["channels"][0]["samples"][0]["modifiers"].append(
        {"name": PLACEHOLDER_PREFIX + "x", "type": "normfactor", "data": None})
    with pytest.raises(InvalidSpecification, match="reserved"):
        ratiofactory.Workspace(spec)


def test_formula_parameter_that_is_a_pyhf_vector_parameter_is_an_error():
    spec = _binned_spec()
    spec["channels"][0]["samples"][2]["modifiers"].append(
        {"name": "stat", "type": "staterror", "data": [1.0, 1.0, 1.0]})
    spec["channels"][0]["samples"][0]["modifiers"][0]["data"]["expression"] = "stat * mu"
    with pytest.raises(InvalidModel, match="'stat'"):
        ratiofactory.Workspace(spec).model()


def test_schema_rejects_a_malformed_binned_formula():
    spec = _binned_spec()
    spec["channels"][0]["samples"][0]["modifiers"][0]["data"] = {"expr": "mu"}
    with pytest.raises(InvalidSpecification, match="/channels/0/samples/0/modifiers/0/data"):
        ratiofactory.Workspace(spec)


def test_pyhf_spec_gives_pyhf_its_parameters_unchanged():
    """Without binned formulas the model hands pyhf ``pars[:n]`` itself (bit-identical)."""
    spec = _binned_spec()
    for sample in spec["channels"][0]["samples"]:
        sample["modifiers"] = [m for m in sample["modifiers"] if m["type"] != "formula"]
    spec["channels"][0]["samples"][0]["modifiers"].append({"name": "mu", "type": "normfactor", "data": None})
    ws = ratiofactory.Workspace(spec)
    model = ws.model()
    assert model._binned_parameters.identity
    reference = pyhf.Workspace({k: v for k, v in spec.items() if k != "version"} | {"version": "1.0.0"})
    pyhf_model = reference.model()
    assert pyhf_model.config.par_order == model.config.par_order
    pars = np.array([1.3, 0.2])
    assert float(model.logpdf(pars, ws.data(model))[0]) == float(pyhf_model.logpdf(pars, reference.data(pyhf_model))[0])
