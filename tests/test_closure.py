"""Closure: the compiled unbinned likelihood equals an independent scipy.stats computation.

The toy has two observables, three samples with interference-like coefficients
(μ − √μ, √μ, 1 − √μ), a lumi, a normfactor, a normsys and a ratiosys whose up/down
ratios are exact ONNX graphs; every ONNX output kind and an ensemble are exercised.
"""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
from scipy import stats

import ratiofactory
from ratiofactory import infer
from ratiofactory.testing import Exponential, Normal, Uniform, ratio_model, sample_mixture

NU = {"S": 40.0, "SBI": 1020.0, "B": 1000.0}  # ν_SBI = 0.5 ν_S + ν_B (see P_SBI)
LUMI_SIGMA = 0.02
K_HI, K_LO = 1.1, 0.92

# densities (weight, [component per observable])
P_S = [(1.0, [Normal(5.0, 0.5), Normal(0.4, 0.3)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0), Uniform(-1.0, 1.0)])]
# SBI = S + B with a destructive interference of half the signal: ν_SBI p_SBI = 0.5 ν_S p_S + ν_B p_B
P_SBI = [(0.5 * NU["S"] / NU["SBI"], P_S[0][1]), (NU["B"] / NU["SBI"], P_B[0][1])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]
# shape systematic of S: the peak moves by ±0.2 (hi), the lo side is an ensemble of two shifts
P_S_UP = [(1.0, [Normal(5.2, 0.5), Normal(0.4, 0.3)])]
P_S_DN_A = [(1.0, [Normal(4.85, 0.5), Normal(0.4, 0.3)])]
P_S_DN_B = [(1.0, [Normal(4.75, 0.5), Normal(0.4, 0.3)])]


def _pdf(kind: str, x: np.ndarray) -> np.ndarray:
    """Independent scipy.stats densities of the toy (no ratiofactory code)."""
    x1, x2 = x[:, 0], x[:, 1]
    expo = stats.truncexpon(b=0.3 * 10.0, scale=1 / 0.3)
    s = lambda m1: stats.norm.pdf(x1, m1, 0.5) * stats.norm.pdf(x2, 0.4, 0.3)
    b = expo.pdf(x1) * stats.uniform.pdf(x2, -1, 2)
    return {
        "S": s(5.0),
        "B": b,
        "SBI": (0.5 * NU["S"] * s(5.0) + NU["B"] * b) / NU["SBI"],
        "REF": 0.5 * s(5.0) + 0.5 * b,
        "S_UP": s(5.2),
        "S_DN": 0.5 * (s(4.85) + s(4.75)),
    }[kind]


def _code4(alpha: float, hi, lo):
    """pyhf's code4 interpolator, as an independent reference, on per-event arrays."""
    hi, lo = np.atleast_1d(hi), np.atleast_1d(lo)
    histos = [[[lo, np.ones_like(hi), hi]]]
    interp = pyhf.interpolators.code4(histos, alpha0=1)
    return np.asarray(interp(pyhf.tensorlib.astensor([[alpha]])))[0, 0, 0]


MODES = [("reference", "reference"), ("reference", "nominal"), ("none", "reference"), ("none", "nominal")]
"""(ratio_normalisation, shape_normalisation); the first is the default with a reference sample."""


def reference_nll(pars: dict, x: np.ndarray, reference: np.ndarray, modes=MODES[0]) -> float:
    """−ln L relative to p_ref, constraint terms included, from scipy.stats alone."""
    nu, s = reference_density(pars, x, reference, modes)
    nll = nu - np.sum(np.log(s))
    nll -= stats.norm.logpdf(0.0, pars["k"], 1.0) + stats.norm.logpdf(0.0, pars["shift"], 1.0)
    nll -= stats.norm.logpdf(1.0, pars["lumi"], LUMI_SIGMA)
    return float(nll)


def reference_density(pars: dict, x: np.ndarray, reference: np.ndarray, modes=MODES[0]):
    """(ν(θ), s(x_i;θ)) from scipy.stats alone.

    ``reference`` are the reference events (equal weights). With ratio normalisation each
    sample's p_j/p_ref is divided by its mean over them, N_j, and the shift's g^± by
    K^± = mean(p_S^± / p_ref) / N_S; with shape normalisation the S term is divided by
    mean(r_S g(α)) / mean(r_S).
    """
    ratio_mode, shape_mode = modes
    mu = pars["mu"]
    norm = dict.fromkeys(("S", "SBI", "B"), 1.0)
    k_hi = k_lo = 1.0
    if ratio_mode == "reference":
        ref = _pdf("REF", reference)
        norm = {j: float(np.mean(_pdf(j, reference) / ref)) for j in norm}
        k_hi = float(np.mean(_pdf("S_UP", reference) / ref)) / norm["S"]
        k_lo = float(np.mean(_pdf("S_DN", reference) / ref)) / norm["S"]
    prev = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        both = np.concatenate([x, reference])
        g_both = _code4(pars["shift"], _pdf("S_UP", both) / _pdf("S", both) / k_hi,
                        _pdf("S_DN", both) / _pdf("S", both) / k_lo)
        k = float(_code4(pars["k"], K_HI, K_LO)[0])
    finally:
        pyhf.set_backend(*prev)
    g_s, g_ref = g_both[: len(x)], g_both[len(x):]
    shape = 1.0
    if shape_mode == "reference":
        r_ref = _pdf("S", reference) / _pdf("REF", reference)
        shape = float(np.mean(r_ref * g_ref) / np.mean(r_ref))
    lumi = pars["lumi"]
    c_s = (mu - np.sqrt(mu)) * NU["S"] * lumi
    c_sbi = np.sqrt(mu) * NU["SBI"] * lumi
    c_b = (1 - np.sqrt(mu)) * NU["B"] * lumi * pars["bkg_norm"] * k
    ref = _pdf("REF", x)
    s = (c_s * _pdf("S", x) * g_s / (norm["S"] * shape) + c_sbi * _pdf("SBI", x) / norm["SBI"]
         + c_b * _pdf("B", x) / norm["B"]) / ref
    return c_s + c_sbi + c_b, s


def _write_events(path, x, weights=None):
    columns = {"x1": x[:, 0], "x2": x[:, 1]}
    if weights is not None:
        columns["weight"] = weights
    np.savez(path, **columns)


def _inside(x):
    """Events inside the support of every density (B is uniform in x2 on [-1, 1])."""
    return (x[:, 0] >= 0) & (x[:, 0] <= 10) & (np.abs(x[:, 1]) < 1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy workspace directory (workspace.json with the default normalisations,
    workspace_<ratio>_<shape>.json with each explicit pair), its observed and reference events."""
    root = tmp_path_factory.mktemp("closure")
    (root / "models").mkdir()
    (root / "data").mkdir()
    rng = np.random.default_rng(7)
    models = {
        "S": ratio_model(P_S, P_REF, output="probability"),
        "SBI": ratio_model(P_SBI, P_REF, output="logit"),
        "B": ratio_model(P_B, P_REF, output="log_ratio"),
        "S_up": ratio_model(P_S_UP, P_S, output="ratio"),
        "S_dn_a": ratio_model(P_S_DN_A, P_S, output="ratio"),
        "S_dn_b": ratio_model(P_S_DN_B, P_S, output="log_ratio"),
    }
    for name, content in models.items():
        (root / "models" / f"{name}.onnx").write_bytes(content)
    n_obs = rng.poisson(NU["SBI"])
    observed = sample_mixture(P_SBI, n_obs, rng)
    observed = observed[_inside(observed)]
    _write_events(root / "data" / "observed.npz", observed)
    reference = sample_mixture(P_REF, 5000, rng)
    reference = reference[_inside(reference)]
    _write_events(root / "data" / "reference.npz", reference, np.full(len(reference), 2.0))
    onnx = lambda name, output: {"onnx": {"path": f"models/{name}.onnx"}, "output": output}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR",
            "observables": [{"name": "x1", "bounds": [0.0, 10.0]}, {"name": "x2", "bounds": [-1.0, 1.0]}],
            "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
            "samples": [
                {"name": "S", "yield": NU["S"], "ratio": onnx("S", "probability"), "modifiers": [
                    {"name": "f_S", "type": "formula", "data": {"expression": "mu - sqrt(mu)"}},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "shift", "type": "ratiosys", "data": {
                        "hi": onnx("S_up", "ratio"),
                        "lo": {"ensemble": [onnx("S_dn_a", "ratio"), onnx("S_dn_b", "log_ratio")],
                               "aggregate": "mean"}}}]},
                {"name": "SBI", "yield": NU["SBI"], "ratio": onnx("SBI", "logit"), "modifiers": [
                    {"name": "f_SBI", "type": "formula", "data": {"expression": "sqrt(mu)"}},
                    {"name": "lumi", "type": "lumi", "data": None}]},
                {"name": "B", "yield": NU["B"], "ratio": onnx("B", "log_ratio"), "modifiers": [
                    {"name": "f_B", "type": "formula", "data": {"expression": "1 - sqrt(mu)"}},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "bkg_norm", "type": "normfactor", "data": None},
                    {"name": "k", "type": "normsys", "data": {"hi": K_HI, "lo": K_LO}}]},
            ],
        }],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [LUMI_SIGMA], "bounds": [[0.5, 1.5]], "inits": [1.0]},
        ]}}],
    }
    (root / "workspace.json").write_text(json.dumps(spec, indent=1))
    for ratio_mode, shape_mode in MODES:
        channel = spec["unbinned_channels"][0]
        channel["ratio_normalisation"], channel["shape_normalisation"] = ratio_mode, shape_mode
        (root / f"workspace_{ratio_mode}_{shape_mode}.json").write_text(json.dumps(spec, indent=1))
    return root, observed, reference


def _random_points(model, n, seed):
    rng = np.random.default_rng(seed)
    ranges = {"mu": (0.3, 3.0), "lumi": (0.95, 1.05), "bkg_norm": (0.8, 1.2), "k": (-2.5, 2.5), "shift": (-2.5, 2.5)}
    points = []
    for i in range(n):
        pars = {name: rng.uniform(*ranges[name]) for name in model.config.par_order}
        if i < 6:  # the interpolation's special points
            pars["shift"] = pars["k"] = [0.0, 1.0, -1.0, 0.5, -0.5, 1.7][i]
        points.append(pars)
    return points


def _vector(model, pars):
    return [pars[name] for name in model.config.par_order]


@pytest.mark.parametrize("modes", MODES, ids="-".join)
def test_nll_equals_independent_computation(toy, backend, modes):
    root, observed, reference = toy
    ws = ratiofactory.Workspace.load(root / f"workspace_{modes[0]}_{modes[1]}.json")
    model = ws.model()
    data = ws.data(model)
    assert sorted(model.config.par_order) == ["bkg_norm", "k", "lumi", "mu", "shift"]
    for pars in _random_points(model, 24, seed=11):
        ours = float(model.nll(_vector(model, pars), data))
        expected = reference_nll(pars, observed, reference, modes)
        assert ours == pytest.approx(expected, rel=1e-9), pars


def test_default_normalisation_is_reference_for_both(toy):
    root, observed, reference = toy
    model = ratiofactory.Workspace.load(root / "workspace.json").model()
    channel = model.unbinned_channels[0]
    assert (channel.ratio_normalisation, channel.shape_normalisation) == MODES[0]
    data = ratiofactory.Workspace.load(root / "workspace.json").data(model)
    pars = _random_points(model, 1, seed=1)[0]
    assert -float(model.logpdf(_vector(model, pars), data)[0]) == pytest.approx(
        reference_nll(pars, observed, reference), rel=1e-9)


def test_jax_gradient_matches_finite_differences(toy):
    import jax

    root, _, _ = toy
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    pyhf.set_backend("jax")
    try:
        model = ws.model()
        data = ws.data(model)
        value_and_grad = jax.jit(jax.value_and_grad(lambda p: model.nll(p, data)))
        for pars in _random_points(model, 5, seed=3):
            x = np.asarray(_vector(model, pars))
            value, grad = value_and_grad(x)
            assert float(value) == pytest.approx(float(model.nll(x, data)), rel=1e-12)
            for i in range(len(x)):
                h = 1e-5 * max(1.0, abs(x[i]))
                up, dn = x.copy(), x.copy()
                up[i] += h
                dn[i] -= h
                fd = (float(model.nll(up, data)) - float(model.nll(dn, data))) / (2 * h)
                assert float(grad[i]) == pytest.approx(fd, rel=1e-6, abs=1e-6)
    finally:
        pyhf.set_backend("numpy")


def test_expected_data_is_reweighted_reference(toy, backend):
    root, _, _ = toy
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    init = model.config.suggested_init()
    asimov = np.asarray(model.expected_data(init))
    n_obs = model.unbinned_channels[0].n_observed
    weights = asimov[: model.config.nmaindata]
    assert np.all(weights[:n_obs] == 0)
    # at mu = 1 only the SBI sample contributes; its ratio is normalised on the reference
    # sample (the default), so Σ w^A = ν_SBI exactly, not only within the reference statistics
    assert weights.sum() == pytest.approx(NU["SBI"], rel=1e-12)
    assert model.config.auxdata_order == ["lumi", "shift", "k"]
    assert list(asimov[model.config.nmaindata :]) == pytest.approx([1.0, 0.0, 0.0])


def test_nonpositive_density_gives_inf_and_names_events(toy, backend):
    root, _, _ = toy
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    data = ws.data(model)
    pars = dict(zip(model.config.par_order, model.config.suggested_init(), strict=True))
    # μ = 4 makes 1 − √μ = −1: with bkg_norm = 5 the B term outweighs SBI away from the peak
    pars["mu"], pars["bkg_norm"] = 4.0, 5.0
    logpdf = float(model.logpdf(_vector(model, pars), data)[0])
    assert logpdf == -np.inf
    bad = model.nonpositive_events(_vector(model, pars), data)
    assert bad
    assert {entry["set"] for entry in bad} == {"observed"}
    first = bad[0]
    assert first["channel"] == "SR"
    assert first["s"] <= 0


def test_negative_weights_where_s_is_not_positive_make_the_likelihood_infinite(toy, backend):
    """Weights ≤ 0 used to be dropped: a negative weight on an event with s ≤ 0 gave a finite
    likelihood. Every non-zero weight counts now."""
    root, _, _ = toy
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    data = np.array(ws.data(model), dtype=float)
    pars = dict(zip(model.config.par_order, model.config.suggested_init(), strict=True))
    pars["mu"], pars["bkg_norm"] = 4.0, 5.0
    bad = [entry["event"] for entry in model.nonpositive_events(_vector(model, pars), data)]
    data[bad] = -1.0
    assert float(model.logpdf(_vector(model, pars), data)[0]) == -np.inf
    data[bad] = 0.0
    assert np.isfinite(float(model.logpdf(_vector(model, pars), data)[0]))


def test_negative_asimov_weights_are_an_error_naming_the_sample_and_events(toy, backend):
    from ratiofactory.errors import NegativeAsimovWeights

    root, _, reference = toy
    model = ratiofactory.Workspace.load(root / "workspace.json").model()
    pars = dict(zip(model.config.par_order, model.config.suggested_init(), strict=True))
    pars["mu"], pars["bkg_norm"] = 4.0, 5.0  # c_B = (1 − √μ) ν_B bkg_norm < 0
    _, s_ref = reference_density(pars, reference, reference)
    negative = np.flatnonzero(s_ref < 0)
    assert 0 < negative.size < len(reference)
    with pytest.raises(NegativeAsimovWeights) as err:
        infer.asimov_data(model, _vector(model, pars))
    assert (err.value.channel, err.value.sample) == ("SR", "B")
    assert err.value.events == negative[:10].tolist()
    message = str(err.value)
    assert "\n" not in message
    assert f"s(x;θ) < 0 on {negative.size} of {len(reference)} reference events" in message
    assert f"first: reference events {negative[0]} (w_ref s = " in message
    pars["mu"], pars["bkg_norm"] = 1.5, 1.0  # s > 0 everywhere: Σ w^A = ν exactly
    nu, _ = reference_density(pars, reference, reference)
    asimov = np.asarray(infer.asimov_data(model, _vector(model, pars)))[: model.config.nmaindata]
    assert np.all(asimov >= 0)
    assert asimov.sum() == pytest.approx(nu, rel=1e-12)


@pytest.mark.parametrize("modes", MODES, ids="-".join)
def test_asimov_fit_returns_the_generating_point(toy, backend, modes):
    """Exact with both normalisations "reference" (the default); the other settings miss by
    the reference sample's Monte Carlo error and the shape drift (docs/schema.md)."""
    root, _, _ = toy
    model = ratiofactory.Workspace.load(root / f"workspace_{modes[0]}_{modes[1]}.json").model()
    truth = {"mu": 1.4, "lumi": 1.01, "shift": 0.6, "bkg_norm": 0.9, "k": -0.4}
    x = np.array(_vector(model, truth))
    start = {name: truth[name] + {"mu": 0.1, "shift": -0.3, "k": 0.2}.get(name, 0.0) for name in truth}
    result = infer.fit(model, infer.asimov_data(model, x, check=False), init=start, tolerance=1e-8)
    deviation = np.max(np.abs(np.asarray(result.values) - x))
    if modes == ("reference", "reference"):
        assert deviation < 1e-4
    else:
        assert deviation > 1e-3


@pytest.mark.slow  # 15 s per setting: four compilations of value, gradient and Hessian
@pytest.mark.parametrize("modes", [MODES[0], MODES[3]], ids="-".join)
def test_chunked_jax_likelihood_equals_the_one_pass_sum(toy, monkeypatch, modes):
    """Large channels are summed in chunks on jax; forced here with a chunk of 37 events
    (the last chunk overlaps its neighbour and must not count events twice)."""
    import jax

    from ratiofactory import likelihood

    root, observed, ref_events = toy
    ws = ratiofactory.Workspace.load(root / f"workspace_{modes[0]}_{modes[1]}.json")
    pyhf.set_backend("jax")
    try:
        model = ws.model()
        data = ws.data(model)
        n_events = model.unbinned_channels[0].n_events
        assert n_events % 37 != 0
        one_pass = jax.jit(jax.value_and_grad(lambda p: model.nll(p, data)))
        one_pass_hessian = jax.jit(jax.hessian(lambda p: model.nll(p, data)))
        monkeypatch.setattr(likelihood, "EVENT_CHUNK", 37)
        monkeypatch.setattr(likelihood, "CHUNKED_FROM", 74)
        chunked = jax.jit(jax.value_and_grad(lambda p: model.nll(p, data)))
        chunked_hessian = jax.jit(jax.hessian(lambda p: model.nll(p, data)))
        x0 = np.asarray(model.config.suggested_init())
        assert "scan" in str(jax.make_jaxpr(lambda p: model.nll(p, data))(x0))  # the chunked sum is used
        for pars in _random_points(model, 4, seed=5):
            x = np.asarray(_vector(model, pars))
            (value, grad), (reference, reference_grad) = chunked(x), one_pass(x)
            assert float(value) == pytest.approx(reference_nll(pars, observed, ref_events, modes), rel=1e-9)
            np.testing.assert_allclose(grad, reference_grad, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(chunked_hessian(x), one_pass_hessian(x), rtol=1e-9, atol=1e-9)
        pars = dict(zip(model.config.par_order, model.config.suggested_init(), strict=True))
        pars["mu"], pars["bkg_norm"] = 4.0, 5.0  # s ≤ 0 on some observed events
        value, grad = chunked(np.asarray(_vector(model, pars)))
        assert float(value) == np.inf
        assert np.all(np.isfinite(grad))
        # vectorised toy fits (vmap of Newton with exact Hessians) through the chunked sum
        from ratiofactory.infer import FitOptions
        from ratiofactory.infer.objective import make_setup
        from ratiofactory.toys import fit_toys, generate_toys

        # one local MIGRAD refit per unconverged toy, so that both sums follow the same path:
        # the global search's extra fits agree only to the fit precision (~1e-4 here)
        local = FitOptions(global_search=False)
        toys = generate_toys(model, model.config.suggested_init(), 3, seed=2)
        fits = fit_toys(model, toys, make_setup(model), options=local, sparse=False)  # the dense chunked sum
        monkeypatch.setattr(likelihood, "CHUNKED_FROM", 10**9)
        model_one_pass = ws.model()
        reference = fit_toys(model_one_pass, toys, make_setup(model_one_pass), options=local, sparse=False)
        assert fits.converged.all()
        np.testing.assert_allclose(fits.values, reference.values, rtol=1e-7, atol=1e-7)
    finally:
        pyhf.set_backend("numpy")


@pytest.mark.parametrize("chunked", [False, True])
def test_an_infinite_coefficient_gives_plus_infinity_not_nan(tmp_path, backend, chunked, monkeypatch):
    """mu/theta at theta = 0: nu = inf and s = inf, so nu - sum ln s was inf - inf = NaN
    (found by the slow property test); the likelihood is undefined there: +inf."""
    if chunked and backend == "numpy":
        pytest.skip("the chunked sum is jax's")
    from ratiofactory import likelihood

    if chunked:
        monkeypatch.setattr(likelihood, "CHUNKED_FROM", 1)
    (tmp_path / "models").mkdir()
    ratio_model([(1.0, [Normal(5.0, 1.0)])], [(1.0, [Uniform(0.0, 10.0)])], path=tmp_path / "models" / "r.onnx")
    np.savez(tmp_path / "obs.npz", x=np.array([4.0, 5.0, 6.5]))
    ratio = {"onnx": {"path": "models/r.onnx"}, "output": "ratio"}
    spec = {"version": "1.0.0", "observations": [{"name": "U", "events": {"path": "obs.npz"}}],
            "unbinned_channels": [{"name": "U", "observables": [{"name": "x", "bounds": [0.0, 10.0]}], "samples": [
                {"name": "a", "yield": 1.0, "ratio": ratio, "modifiers": []},
                {"name": "b", "yield": 1.0, "ratio": ratio,
                 "modifiers": [{"name": "f", "type": "formula", "data": {"expression": "mu / theta"}}]}]}],
            "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}
    (tmp_path / "ws.json").write_text(json.dumps(spec))
    ws = ratiofactory.Workspace.load(tmp_path / "ws.json")
    model = ws.model(cache=False)
    data = ws.data(model)
    assert model.config.par_order == ["mu", "theta"]
    assert float(model.nll(np.array([1.0, 0.0]), data)) == np.inf  # 1/0
    assert float(model.nll(np.array([-1.0, 0.0]), data)) == np.inf  # -1/0: s = -inf
    nu = 1.0 + 2.0  # a finite point against the analytic value: nu - sum ln(3 r(x_i))
    r = stats.norm.pdf([4.0, 5.0, 6.5], 5.0, 1.0) / 0.1
    assert float(model.nll(np.array([2.0, 1.0]), data)) == pytest.approx(nu - np.sum(np.log(3.0 * r)), rel=1e-9)
