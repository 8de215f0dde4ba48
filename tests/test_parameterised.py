"""Parameterised ratio models r(x | m): a Gaussian signal whose mean m is a model parameter
(exact graph from ratiofactory.testing) on an exponential background, against an
independent likelihood written here from the densities; fits and scans of m on numpy and
jax; located errors for what is not supported."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
import scipy.optimize
import scipy.stats

from ratiofactory import Workspace, infer
from ratiofactory.errors import InvalidONNXModel, InvalidSpecification
from ratiofactory.testing import (
    Exponential,
    Uniform,
    ratio_model,
    sample_mixture,
    shifted_normal_ratio_model,
)

pytest.importorskip("onnx")

SIGMA, NU_S, NU_B, M_TRUE, LO, HI = 0.3, 200.0, 400.0, 2.1, 0.0, 4.0
REFERENCE = [(1.0, [Uniform(LO, HI)])]
BACKGROUND = [(1.0, [Exponential(0.5, LO, HI)])]


def _spec(normalisation: str = "reference") -> dict:
    return {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [LO, HI]}],
            "reference": {"events": {"path": "reference.npz"}}, "ratio_normalisation": normalisation,
            "samples": [
                {"name": "signal", "yield": NU_S,
                 "ratio": {"onnx": {"path": "signal.onnx"}, "output": "log_ratio", "parameters": ["m"]},
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "yield": NU_B, "ratio": {"onnx": {"path": "background.onnx"},
                                                                "output": "ratio"}, "modifiers": []},
            ]}],
        "observations": [{"name": "SR", "events": {"path": "observed.npz"}}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 5.0]], "inits": [1.0]},
            {"name": "m", "bounds": [[1.0, 3.0]], "inits": [1.8]}]}}],
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("parameterised")
    rng = np.random.default_rng(11)
    signal = rng.normal(M_TRUE, SIGMA, rng.poisson(NU_S))
    observed = np.concatenate([signal[(signal > LO) & (signal < HI)],
                               sample_mixture(BACKGROUND, rng.poisson(NU_B), rng)[:, 0]])
    np.savez(root / "observed.npz", x=observed)
    np.savez(root / "reference.npz", x=sample_mixture(REFERENCE, 3000, rng)[:, 0])
    (root / "signal.onnx").write_bytes(shifted_normal_ratio_model(SIGMA, REFERENCE, output="log_ratio"))
    (root / "background.onnx").write_bytes(ratio_model(BACKGROUND, REFERENCE))
    return root


def _workspace(files, spec) -> Workspace:
    path = files / f"ws_{abs(hash(json.dumps(spec, sort_keys=True)))}.json"
    path.write_text(json.dumps(spec))
    return Workspace.load(path)


class Independent:
    """−ln L from the densities: ν(θ) − Σ ln s(x_i; θ) with s relative to p_ref = 1/4."""

    def __init__(self, files, normalisation):
        self.x = np.load(files / "observed.npz")["x"]
        self.ref = np.load(files / "reference.npz")["x"]
        self.normalise = normalisation == "reference"

    def ratios(self, x, m):
        signal = scipy.stats.norm.pdf(x, m, SIGMA) * (HI - LO)
        background = np.exp(BACKGROUND[0][1][0].log_pdf(x)) * (HI - LO)
        return signal, background

    def nll(self, mu, m):
        r_s, r_b = self.ratios(self.x, m)
        if self.normalise:
            n_s, n_b = (np.mean(r) for r in self.ratios(self.ref, m))
            r_s, r_b = r_s / n_s, r_b / n_b
        return NU_S * mu + NU_B - np.sum(np.log(NU_S * mu * r_s + NU_B * r_b))


@pytest.fixture(params=["numpy", "jax"])
def backend(request):
    pyhf.set_backend(request.param)
    yield request.param
    pyhf.set_backend("numpy")


@pytest.mark.parametrize("normalisation", ["reference", "none"])
def test_likelihood_equals_the_independent_one(files, backend, normalisation):
    ws = _workspace(files, _spec(normalisation))
    model = ws.model()
    data = ws.data(model)
    reference = Independent(files, normalisation)
    names = model.config.par_order
    rng = np.random.default_rng(2)
    for mu, m in zip(rng.uniform(0.2, 3.0, 6), rng.uniform(1.0, 3.0, 6), strict=True):
        pars = np.array([{"mu": mu, "m": m}[n] for n in names])
        assert float(model.nll(pars, data)) == pytest.approx(reference.nll(mu, m), rel=1e-10, abs=1e-9)


def test_jax_gradient_in_the_network_parameter(files):
    import jax

    pyhf.set_backend("jax")
    try:
        ws = _workspace(files, _spec())
        model = ws.model()
        data = ws.data(model)
        names = model.config.par_order
        pars = np.array([{"mu": 1.3, "m": 2.2}[n] for n in names])
        grad = np.asarray(jax.jit(jax.grad(lambda p: model.nll(p, data)))(pars))
    finally:
        pyhf.set_backend("numpy")
    reference = Independent(files, "reference")
    step = 1e-6
    for i, name in enumerate(names):
        up, down = ({"mu": 1.3, "m": 2.2} for _ in range(2))
        up[name] += step
        down[name] -= step
        numeric = (reference.nll(**up) - reference.nll(**down)) / (2 * step)
        assert grad[i] == pytest.approx(numeric, rel=1e-6, abs=1e-6)


def test_fit_and_scan_of_the_mass(files, backend):
    ws = _workspace(files, _spec())
    model = ws.model()
    data = ws.data(model)
    reference = Independent(files, "reference")
    best = scipy.optimize.minimize(lambda p: reference.nll(*p), [1.0, 1.8], bounds=[(0, 5), (1, 3)],
                                   method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10})
    result = infer.fit(model, data)
    assert result.value("mu") == pytest.approx(best.x[0], abs=1e-4)
    assert result.value("m") == pytest.approx(best.x[1], abs=1e-4)
    assert abs(result.value("m") - M_TRUE) < 4 * result.error("m")

    grid = [best.x[1] - 0.05, best.x[1] + 0.05]
    scan = infer.profile_scan(model, data, grid, poi="m")
    for m, tmu in zip(grid, scan.tmu, strict=True):
        profiled = scipy.optimize.minimize_scalar(lambda mu, m=m: reference.nll(mu, m), bounds=(0, 5),
                                                  method="bounded", options={"xatol": 1e-10})
        assert tmu == pytest.approx(2 * (profiled.fun - best.fun), abs=2e-4)


def test_unsupported_places_are_refused_with_pointers(files):
    spec = _spec()
    signal = spec["unbinned_channels"][0]["samples"][0]
    signal["ratio"] = {"ensemble": [dict(signal["ratio"])]}
    with pytest.raises(InvalidSpecification, match="/unbinned_channels/0/samples/0/ratio/ensemble/0/parameters"):
        _workspace(files, spec)
    spec = _spec()
    spec["unbinned_channels"][0]["samples"][0]["modifiers"].append(
        {"name": "shape", "type": "ratiosys", "data": {"hi": {"onnx": {"path": "background.onnx"}, "output": "ratio"},
                                                        "lo": {"onnx": {"path": "background.onnx"}, "output": "ratio"}}})
    with pytest.raises(InvalidSpecification, match="/unbinned_channels/0/samples/0/modifiers/1"):
        _workspace(files, spec)


def test_a_ratio_that_is_not_positive_names_the_event(files):
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    nodes = [helper.make_node("Gather", ["x", "zero"], ["obs"], axis=1),
             helper.make_node("Gather", ["x", "one"], ["mass"], axis=1),
             helper.make_node("Sub", ["obs", "mass"], ["r"])]  # x − m: negative below the mass
    graph = helper.make_graph(
        nodes, "bad", [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, ["N", 2])],
        [helper.make_tensor_value_info("r", onnx.TensorProto.DOUBLE, ["N"])],
        [onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
         onnx.numpy_helper.from_array(np.array(1, np.int64), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (files / "bad.onnx").write_bytes(model.SerializeToString())
    spec = _spec()
    spec["unbinned_channels"][0]["samples"][0]["ratio"] = {"onnx": {"path": "bad.onnx"}, "output": "ratio",
                                                           "parameters": ["m"]}
    ws = _workspace(files, spec)
    with pytest.raises(InvalidONNXModel, match=r"/unbinned_channels/0/samples/0/ratio: bad.onnx: ratio .* at "
                                               r"event \d+ .* at m=1.8"):
        ws.model()


def test_algebra_knows_ratio_inputs(files):
    from ratiofactory import algebra

    renamed = algebra.rename(_spec(), modifiers={"m": "m_H"})
    assert renamed["unbinned_channels"][0]["samples"][0]["ratio"]["parameters"] == ["m_H"]
    assert [p["name"] for p in renamed["measurements"][0]["config"]["parameters"]] == ["mu", "m_H"]
    with pytest.raises(algebra.InvalidWorkspaceOperation, match="/unbinned_channels/0/samples/0/ratio/parameters/0"):
        algebra.prune(_spec(), modifiers=["m"])
