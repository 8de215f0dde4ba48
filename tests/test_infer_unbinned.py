"""Inference on an exact-ratio unbinned workspace against an independent scipy
implementation of the same extended unbinned likelihood.

Toy: one observable x ∈ [0, 10]; signal p_S = N(5, 0.5) with yield 50 μ, background a
truncated exponential with yield 500 b, both times lumi (Gaussian constraint σ = 0.05);
p_ref = (p_S + p_B)/2. The ratio models are exact ONNX graphs. The reference sample is
a midpoint-rule grid weighted by p_ref, so that reference-sample integrals are exact to
~1e-8 and the Asimov dataset reproduces its generating point.

Independent likelihood (no ratiofactory code), with u_i = μ a_i + b c_i,
a_i = 50 p_S/p_ref, c_i = 500 p_B/p_ref:

    −ln L = lumi (50 μ + 500 b) − N ln lumi − Σ ln u_i + (lumi − 1)²/(2σ²)

whose gradient and Hessian are written out below.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyhf
import pytest
from scipy import optimize, stats

import ratiofactory
from ratiofactory import infer

# the workspace builder imports modules other engineers are still writing
pytest.importorskip("ratiofactory.workspace", reason="the unbinned model's modules are not all in the tree yet")
pytest.importorskip("onnx")
from ratiofactory.testing import Exponential, Normal, ratio_model

NU_S, NU_B, LUMI_SIGMA = 50.0, 500.0, 0.05
P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]
P_FAR = [(1.0, [Normal(9.5, 1.0)])]  # 31 % of it lies outside [0, 10]: a mis-normalised ratio


def _densities(x):
    p_s = stats.norm.pdf(x, 5.0, 0.5)
    p_b = stats.truncexpon(b=3.0, scale=1 / 0.3).pdf(x)
    return p_s, p_b, 0.5 * (p_s + p_b)


def _build(root, background_density=P_B, name="toy", ratio_normalisation=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "S.onnx").write_bytes(ratio_model(P_S, P_REF, output="log_ratio"))
    (root / "B.onnx").write_bytes(ratio_model(background_density, P_REF, output="ratio"))
    rng = np.random.default_rng(2024)
    observed = np.concatenate([rng.normal(5.0, 0.5, rng.poisson(NU_S)),
                               stats.truncexpon(b=3.0, scale=1 / 0.3).rvs(rng.poisson(NU_B), random_state=rng)])
    np.savez(root / "observed.npz", x=observed)
    grid = (np.arange(20000) + 0.5) * 10.0 / 20000
    np.savez(root / "reference.npz", x=grid, w=_densities(grid)[2])
    onnx = lambda f, out: {"onnx": {"path": f}, "output": out}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "reference.npz", "weight": "w"}},
            "samples": [
                {"name": "S", "yield": NU_S, "ratio": onnx("S.onnx", "log_ratio"), "modifiers": [
                    {"name": "f_S", "type": "formula", "data": {"expression": "mu"}},
                    {"name": "lumi", "type": "lumi", "data": None}]},
                {"name": "B", "yield": NU_B, "ratio": onnx("B.onnx", "ratio"), "modifiers": [
                    {"name": "b", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None}]}]}],
        "observations": [{"name": "SR", "events": {"path": "observed.npz"}}],
        "measurements": [{"name": name, "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[-5.0, 10.0]]},
            {"name": "lumi", "auxdata": [1.0], "sigmas": [LUMI_SIGMA], "bounds": [[0.5, 1.5]], "inits": [1.0]}]}}],
    }
    if ratio_normalisation is not None:
        spec["unbinned_channels"][0]["ratio_normalisation"] = ratio_normalisation
    (root / "workspace.json").write_text(json.dumps(spec))
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    return model, np.asarray(ws.data(model)), observed


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("unbinned") / "toy")


class Reference:
    """The independent likelihood in (μ, b, lumi)."""

    def __init__(self, x):
        p_s, p_b, p_ref = _densities(x)
        self.a, self.c, self.n = NU_S * p_s / p_ref, NU_B * p_b / p_ref, x.size

    def nll(self, t):
        mu, b, lumi = t
        u = mu * self.a + b * self.c
        if np.any(u <= 0):
            return np.inf
        return lumi * (NU_S * mu + NU_B * b) - self.n * np.log(lumi) - np.sum(np.log(u)) \
            + 0.5 * ((lumi - 1.0) / LUMI_SIGMA) ** 2

    def grad(self, t):
        mu, b, lumi = t
        u = mu * self.a + b * self.c
        return np.array([lumi * NU_S - np.sum(self.a / u), lumi * NU_B - np.sum(self.c / u),
                         NU_S * mu + NU_B * b - self.n / lumi + (lumi - 1.0) / LUMI_SIGMA**2])

    def hessian(self, t):
        mu, b, lumi = t
        u2 = (mu * self.a + b * self.c) ** 2
        return np.array([
            [np.sum(self.a**2 / u2), np.sum(self.a * self.c / u2), NU_S],
            [np.sum(self.a * self.c / u2), np.sum(self.c**2 / u2), NU_B],
            [NU_S, NU_B, self.n / lumi**2 + 1.0 / LUMI_SIGMA**2]])

    def minimum(self, fixed_mu=None, start=(1.0, 1.0, 1.0)):
        """Newton-polished minimum (all free, or at fixed μ)."""
        free = [0, 1, 2] if fixed_mu is None else [1, 2]
        t = np.array(start, dtype=float)
        if fixed_mu is not None:
            t[0] = fixed_mu
        def f(v):
            return self.nll(np.insert(v, 0, fixed_mu) if fixed_mu is not None else v)
        def g(v):
            return self.grad(np.insert(v, 0, fixed_mu) if fixed_mu is not None else v)[free]
        res = optimize.minimize(f, t[free], jac=g, method="BFGS", options={"gtol": 1e-9})
        t[free] = res.x
        for _ in range(3):
            t[free] -= np.linalg.solve(self.hessian(t)[np.ix_(free, free)], self.grad(t)[free])
        return t, self.nll(t)


@pytest.fixture(scope="module")
def reference(toy):
    return Reference(toy[2])


def _order(model):
    return [model.config.par_names.index(n) for n in ("mu", "b", "lumi")]


def test_fit_and_hesse_match_independent_likelihood(backend, toy, reference):
    model, data, _ = toy
    result = infer.fit(model, data, tolerance=1e-7)
    best, _ = reference.minimum()
    idx = _order(model)
    np.testing.assert_allclose(result.values[idx], best, atol=1e-5)
    errors = np.sqrt(np.diag(np.linalg.inv(reference.hessian(best))))  # errordef 0.5 on −ln L
    np.testing.assert_allclose(result.errors[idx], errors, rtol=1e-5 if backend == "jax" else 3e-3)


def test_profile_scan_and_interval_match_independent_likelihood(toy, reference):
    pyhf.set_backend("jax")
    try:
        model, data, _ = toy
        grid = np.linspace(0.0, 2.5, 11)
        scan = infer.profile_scan(model, data, grid, options=infer.FitOptions(tolerance=1e-7))
        ci = infer.interval(scan)
    finally:
        pyhf.set_backend("numpy")
    best, nll_min = reference.minimum()
    profile = lambda mu: 2.0 * (reference.minimum(mu, best)[1] - nll_min)
    np.testing.assert_allclose(scan.tmu, [profile(mu) for mu in grid], atol=1e-5)
    # brute force on the reference: crossings of its own profile with 1
    lower = optimize.brentq(lambda mu: profile(mu) - 1.0, 0.0, best[0], xtol=1e-10)
    upper = optimize.brentq(lambda mu: profile(mu) - 1.0, best[0], 2.5, xtol=1e-10)
    assert len(ci.intervals) == 1
    np.testing.assert_allclose(ci.intervals[0], (lower, upper), atol=1e-5)


def test_asimov_fit_returns_generating_point(toy):
    model, _, _ = toy
    truth = np.array(model.config.suggested_init(), dtype=float)
    truth[_order(model)] = (1.3, 0.95, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asimov = infer.asimov_data(model, truth)
    check = infer.asimov_yield_checks(model, truth)[0]
    assert check.expected_yield == pytest.approx(1.3 * NU_S + 0.95 * NU_B)
    assert abs(check.asimov_sum / check.expected_yield - 1) < 1e-6
    result = infer.fit(model, asimov)
    np.testing.assert_allclose(result.values[_order(model)], (1.3, 0.95, 1.0), atol=1e-3)


def test_significance_matches_independent_q0(toy, reference):
    model, data, _ = toy
    result = infer.significance(model, data, options=infer.FitOptions(tolerance=1e-7))
    best, nll_min = reference.minimum()
    q0 = 2.0 * (reference.minimum(0.0, best)[1] - nll_min)
    assert result.q0 == pytest.approx(q0, abs=1e-5)
    assert result.significance == pytest.approx(np.sqrt(q0), abs=1e-5)
    assert result.expected_significance > 3.0


def test_nonpositive_density_at_init_is_a_clear_error(toy):
    model, data, _ = toy
    with pytest.raises(infer.InvalidFitSetup,
                       match=r"-2 ln L is inf at the initial parameters \(mu=-2.*s\(x;θ\) <= 0.*here \d+ event\(s\),"
                             r" first: channel 'SR' observed event \d+ with s = -.*start from other initial values") as info:
        infer.fit(model, data, init={"mu": -2.0})
    assert "\n" not in str(info.value)


def test_asimov_warns_when_ratios_and_yields_disagree(tmp_path):
    """Without normalisation on the reference sample (``ratio_normalisation: "none"``) a
    ratio that does not integrate to one makes Σ w^A ≠ ν(θ): AsimovYieldWarning."""
    model, _, _ = _build(tmp_path / "far", background_density=P_FAR, name="far", ratio_normalisation="none")
    init = model.config.suggested_init()
    check = infer.asimov_yield_checks(model, init)[0]
    # 31 % of the background falls outside the observable range: Σ w^A ≈ 50 + 0.69·500
    assert check.asimov_sum == pytest.approx(NU_S + NU_B * stats.norm.cdf(0.5), rel=1e-4)
    assert check.pull < -20
    with pytest.warns(infer.AsimovYieldWarning, match=r"unbinned channel 'SR': the Asimov weights sum to"):
        infer.asimov_data(model, init)


def test_normalisation_reports_the_misnormalised_ratio_and_divides_it_out(tmp_path):
    """By default the same ratio is divided by its integral over the reference sample,
    N_B = Φ(0.5) (the grid integrates to ~1e-8): the yields and the Asimov data agree, and
    the report names the sample."""
    model, _, _ = _build(tmp_path / "far", background_density=P_FAR, name="far")
    init = model.config.suggested_init()
    report = model.normalisation()
    background = report.channels[0].samples[1]
    assert background.sample == "B"
    assert background.factor == pytest.approx(stats.norm.cdf(0.5), rel=1e-6)
    assert background.pull < -20
    assert [line for line in report.warnings() if "'B'" in line] == [
        (f"channel 'SR', sample 'B': the ratio integrates to {background.factor:.6g} ± "
        f"{background.standard_error:.2g} over the reference sample ({background.pull:+.1f} standard errors from 1); "
        "the likelihood divides it out (ratio_normalisation 'reference')")]
    check = infer.asimov_yield_checks(model, init)[0]
    assert check.asimov_sum == pytest.approx(NU_S + NU_B, rel=1e-12)
    assert check.pull == 0.0
