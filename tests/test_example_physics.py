"""The off-shell example's physics: exact densities, generator, exact-ratio ONNX models.

References are independent of the code under test where possible: scipy quadrature
instead of the closed-form grid weights, a direct Gaussian-CDF integral of the true rate
instead of the tabulated convolution, χ² tests of generated events.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy import integrate, special, stats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offshell"
sys.path.insert(0, str(EXAMPLE))

import exact_onnx
import generate
import physics

DENSITIES = ("S", "B", "SBI", "ref", "S_kf_up", "S_kf_dn", "SBI_kf_up", "SBI_kf_dn")


@pytest.fixture(scope="module")
def model():
    return physics.offshell_model()


@pytest.fixture(scope="module")
def reference_events(model):
    return generate.sample_reference(model, 60_000, np.random.default_rng(2024))


def test_top_loop_factor_limits():
    # F(0) = 1; at threshold τ = 1, f = π²/4 and T = 3/2; above it T has an imaginary part
    t = physics.top_loop_factor(np.array([1e-6, 1.0, 4.0]))
    assert t[0] / 1e-6 == pytest.approx(1.0, rel=1e-5)
    assert t[1] == pytest.approx(1.5 + 0j, abs=1e-12)
    assert abs(t[2].imag) > 0.5


@pytest.mark.parametrize("name", DENSITIES)
def test_densities_integrate_to_one(model, name):
    m = np.linspace(*physics.M4L_BOUNDS, 40_001)
    inner = []
    for c in np.linspace(-1, 1, 41):  # the density is quadratic in c: Simpson is exact
        x = np.column_stack([m, np.full_like(m, c)])
        inner.append(integrate.trapezoid(model.density(name, x), m))
    total = integrate.simpson(inner, x=np.linspace(-1, 1, 41))
    assert total == pytest.approx(1.0, abs=2e-6)


def test_yields_match_direct_integral_of_true_rate(model):
    # ν_j = scale · ∫ dm rate_j(m) P(220 ≤ m_obs ≤ 2000 | m), Gaussian resolution
    m = np.exp(np.linspace(np.log(2 * physics.M_Z + 1e-6), np.log(2600.0), 200_001))
    sigma = model.par.resolution * m
    lo, hi = physics.M4L_BOUNDS
    acceptance = special.ndtr((hi - m) / sigma) - special.ndtr((lo - m) / sigma)
    comps = physics.true_components(m, model.par)
    for name in ("S", "I", "B"):
        flat, c2 = comps[name]
        direct = model.rate_scale * integrate.trapezoid((2 * flat + 2 / 3 * c2) * acceptance, m)
        assert model.yields[name] == pytest.approx(direct, rel=1e-5)


def test_yields_and_interference(model):
    y = model.yields
    assert y["B"] == pytest.approx(1000.0)
    assert 20 <= y["S"] <= 35
    assert y["I"] < -y["S"]  # destructive, larger than the signal itself
    assert y["SBI"] == pytest.approx(y["S"] + y["I"] + y["B"], rel=1e-12)
    assert model.expected_yield(1.0) == pytest.approx(y["SBI"])
    assert model.expected_yield(4.0) == pytest.approx(4 * y["S"] + 2 * y["I"] + y["B"])


def test_interference_negative_and_large_at_high_mass(model):
    m4l = np.exp(model.u_grid)
    interference, signal = model.rates["I"][0], model.rates["S"][0]
    high = m4l > 400
    assert np.all(interference[high] < 0)
    assert np.all(interference[m4l > 800] < -1.5 * signal[m4l > 800])


def test_full_model_density_positive(model):
    m4l = np.exp(model.u_grid)
    r = model.rates
    for mu in (0.0, 0.1, 0.5, 1.0, 3.0, 10.0):
        for c2 in (0.0, 1.0):
            rate = sum(k * (r[n][0] + c2 * r[n][1])
                       for k, n in zip((mu, np.sqrt(mu), 1.0), ("S", "I", "B"), strict=True))
            assert np.all(rate > 0), (mu, m4l[rate <= 0][:3])


def _chi2_pvalue(model, name, x):
    """χ² of a (m4l, |cos θ*|) histogram against the exact density."""
    m_edges = np.quantile(x[:, 0], np.linspace(0, 1, 16))
    m_edges[[0, -1]] = physics.M4L_BOUNDS
    c_edges = np.linspace(0, 1, 5)
    observed, _, _ = np.histogram2d(x[:, 0], np.abs(x[:, 1]), [m_edges, c_edges])
    expected = np.empty_like(observed)
    for i in range(len(m_edges) - 1):
        m = np.linspace(m_edges[i], m_edges[i + 1], 401)
        for j in range(len(c_edges) - 1):
            c = np.linspace(c_edges[j], c_edges[j + 1], 5)
            grid = np.array([[mm, cc] for mm in m for cc in c])
            p = model.density(name, grid).reshape(m.size, c.size)
            expected[i, j] = 2 * integrate.trapezoid(integrate.simpson(p, x=c, axis=1), m)
    expected *= len(x)
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    return stats.chi2.sf(chi2, observed.size - 1)


@pytest.mark.parametrize(("name", "seed"), [("S", 1), ("B", 2), ("SBI", 3)])
def test_generated_events_follow_the_densities(model, name, seed):
    x = generate.sample_events(model, generate.PROCESSES[name], 40_000,
                               np.random.default_rng(seed))
    assert _chi2_pvalue(model, name, x) > 1e-3


def test_weighted_training_samples_follow_the_densities(model):
    # high masses enhanced by (m/220)^2, weights undo it: weighted χ² in m4l bins
    x, w = generate.sample_weighted_events(model, generate.PROCESSES["SBI"], 40_000,
                                           np.random.default_rng(7), bias_power=2.0)
    assert np.mean(x[:, 0] > 700) > 0.02  # an unweighted SBI sample has 0.7 % there
    edges = np.geomspace(*physics.M4L_BOUNDS, 21)
    total, _ = np.histogram(x[:, 0], edges, weights=w)
    variance, _ = np.histogram(x[:, 0], edges, weights=w**2)
    m = np.linspace(*physics.M4L_BOUNDS, 200_001)
    u = model.density("SBI", np.column_stack([m, np.zeros_like(m)]))  # U(m4l)
    u_plus_v = model.density("SBI", np.column_stack([m, np.ones_like(m)]))
    marginal = 2 * u + 2 / 3 * (u_plus_v - u)  # ∫ (U + V c²) dc over [-1, 1]
    cdf = np.concatenate([[0], np.cumsum((marginal[1:] + marginal[:-1]) / 2 * np.diff(m))])
    expected = np.diff(np.interp(edges, m, cdf)) * w.sum()
    chi2 = float(np.sum((total - expected) ** 2 / variance))
    assert stats.chi2.sf(chi2, len(expected) - 1) > 1e-3


def test_reference_sample_follows_reference_density(model, reference_events):
    assert _chi2_pvalue(model, "ref", reference_events) > 1e-3


@pytest.mark.parametrize("name", ["S", "B", "SBI"])
def test_ratios_average_to_one_on_reference(model, reference_events, name):
    r = model.ratio(name, reference_events)
    error = r.std() / np.sqrt(r.size)
    assert abs(r.mean() - 1) < 4 * error


@pytest.mark.parametrize("direction", [1, -1])
def test_k_factor_tilt_is_normalised_and_positive(model, direction):
    m4l = np.linspace(*physics.M4L_BOUNDS, 20_001)
    p_s_mass = 2 * physics.interpolate_table(model.u_grid, model.tables["S"], m4l)[0]
    g = model.k_factor_tilt(m4l, direction)
    assert np.all(g > 0.5)
    assert integrate.trapezoid(g * p_s_mass, m4l) == pytest.approx(1.0, abs=1e-6)
    # and S with the K-factor is 1.1 / 0.9 times the nominal signal
    hi, lo = model.normsys("S")
    assert (hi, lo) == (pytest.approx(1.1), pytest.approx(0.9))


def test_sbi_k_factor_variation_scales_signal_amplitude(model):
    # ν^± p_SBI^± = k S + √k I + B with k = 1.1 g^+ (resp. 0.9 g^-); k is applied on the
    # grid nodes, so between them the interpolation differs at the 1e-7 level
    x = np.array([[250.0, 0.3], [600.0, -0.8], [1500.0, 0.0]])
    y = model.yields
    k = 1.1 * model.k_factor_tilt(x[:, 0], 1)
    interference = (y["SBI"] * model.density("SBI", x) - y["S"] * model.density("S", x)
                    - y["B"] * model.density("B", x))
    expected = k * y["S"] * model.density("S", x) + np.sqrt(k) * interference \
        + y["B"] * model.density("B", x)
    assert y["SBI_kf_up"] * model.density("SBI_kf_up", x) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["S", "B", "SBI", "S_kf_up", "S_kf_dn", "SBI_kf_up",
                                  "SBI_kf_dn"])
def test_exact_onnx_models_reproduce_numpy(model, reference_events, name):
    proto = exact_onnx.exact_models(model)[name]
    session = ort.InferenceSession(proto.SerializeToString())
    x = np.vstack([reference_events[:5000], [[220.0, -1.0], [2000.0, 1.0]]])
    out = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(out, exact_onnx.exact_ratio_numpy(model, name, x), rtol=1e-10)


def test_observed_dataset_is_poisson_sized(model):
    sizes = [len(generate.sample_observed(model, 1.0, np.random.default_rng(s)))
             for s in range(5)]
    nu = model.expected_yield(1.0)
    assert all(abs(n - nu) < 5 * np.sqrt(nu) for n in sizes)
    assert len(set(sizes)) > 1


WORKSPACE = EXAMPLE / "workspace"


@pytest.mark.skipif(not (WORKSPACE / "workspace.json").exists(), reason="not built")
@pytest.mark.parametrize("spec_name", ["workspace.json", "exact.json"])
def test_shipped_workspace_files_and_digests(model, spec_name):
    spec = json.loads((WORKSPACE / spec_name).read_text())
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "path" in node and "sha256" in node:
                refs.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    assert len(refs) == (2 + 3 * 5 + 4 * 5 if spec_name == "workspace.json" else 2 + 7)
    for ref in refs:
        data = (WORKSPACE / ref["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref["sha256"], ref["path"]
    samples = {s["name"]: s for s in spec["unbinned_channels"][0]["samples"]}
    assert samples["S"]["yield"] == pytest.approx(model.yields["S"])
    total = sum(p.stat().st_size for p in WORKSPACE.rglob("*") if p.is_file())
    assert total < 10 * 1024 * 1024


def _trained_ratio(name: str, x: np.ndarray) -> np.ndarray:
    """(5, N) member ratios of a shipped trained ensemble."""
    members = []
    for k in range(5):
        session = ort.InferenceSession(WORKSPACE / "models" / f"{name}_{k}.onnx")
        out = session.run(None, {"x": x.astype(np.float32)})[0].astype(float)
        assert out.shape == (len(x),)
        members.append(out / (1 - out) if "_kf_" in name else np.exp(out))
    return np.array(members)


@pytest.mark.skipif(not (WORKSPACE / "workspace.json").exists(), reason="not built")
def test_shipped_trained_ensembles_close_on_reference(model):
    with np.load(WORKSPACE / "data" / "reference.npz") as f:
        x = np.column_stack([f["m4l"], f["cos_theta"]])[:20_000]
        assert f["weight"].sum() == pytest.approx(1.0)
    rms = lambda a: float(np.sqrt(np.mean(a**2)))
    trained = {name: _trained_ratio(name, x).mean(0) for name in ("S", "B", "SBI")}
    for name, r_hat in trained.items():
        r_exact = model.ratio(name, x)
        assert abs(r_hat.mean() - 1) < 0.02
        assert rms(r_hat / r_exact - 1) < 0.06
    # what the fit of mu needs: p_SBI/p_B (the B/ref network cancels in it), where the
    # SBI events are: reference events weighted by p_SBI/p_ref
    sbi_over_b = trained["SBI"] / trained["B"] / model.ratio("SBI", x, denominator="B")
    on_sbi = model.ratio("SBI", x)
    assert np.sqrt(np.average((sbi_over_b - 1) ** 2, weights=on_sbi)) < 0.01
    for name in ("S_kf_up", "S_kf_dn", "SBI_kf_up", "SBI_kf_dn"):  # on the sample's events
        deviation = _trained_ratio(name, x).mean(0) / exact_onnx.exact_ratio_numpy(
            model, name, x) - 1
        on_sample = model.ratio(name.split("_kf_")[0], x)
        assert np.sqrt(np.average(deviation**2, weights=on_sample)) < 0.01
