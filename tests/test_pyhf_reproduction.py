"""A pure pyhf workspace gives pyhf's numbers: logpdf, Asimov data, fits and CLs.

The references are pyhf itself (``pyhf.Workspace(spec).model()`` and ``pyhf.infer``);
ours is ``ratiofactory.Workspace(spec).model()``, run through ``pyhf.infer`` directly
(same minimiser, so the numbers agree to rounding) and through ``ratiofactory.infer``
with a tight tolerance. ``Workspace.digest()`` is ``pyhf digest``'s.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyhf
import pytest

import ratiofactory
import ratiofactory.infer

SBOTTOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyhf-ins1748602-probability-models.tar.gz"
SBOTTOM_POINTS = [
    ("RegionA", "sbottom_1000_131_1"),
    ("RegionA", "sbottom_1300_230_100"),
    ("RegionC", "sbottom_1000_205_60"),
    ("RegionC", "sbottom_1300_230_100"),
]


def _workspace_of(model: pyhf.Model, observed: list[float]) -> dict:
    return {
        "version": "1.0.0",
        "channels": model.spec["channels"],
        "observations": [{"name": model.config.channels[0], "data": observed}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
    }


def _every_modifier() -> dict:
    """Two channels using normfactor, normsys, histosys, shapesys, shapefactor, staterror, lumi."""
    return {
        "version": "1.0.0",
        "channels": [
            {"name": "SR", "samples": [
                {"name": "signal", "data": [4.0, 9.0, 3.0], "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.08, "lo": 0.95}}]},
                {"name": "ttbar", "data": [30.0, 25.0, 12.0], "modifiers": [
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "jes", "type": "histosys",
                     "data": {"hi_data": [32.0, 26.5, 12.2], "lo_data": [28.5, 23.0, 11.5]}},
                    {"name": "stat_SR", "type": "staterror", "data": [2.0, 1.8, 1.2]},
                    {"name": "ttbar_norm", "type": "normfactor", "data": None}]},
                {"name": "fakes", "data": [6.0, 4.0, 2.0], "modifiers": [
                    {"name": "fakes_unc", "type": "shapesys", "data": [1.5, 1.2, 0.9]}]}]},
            {"name": "CR", "samples": [
                {"name": "ttbar", "data": [200.0, 150.0], "modifiers": [
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "jes", "type": "histosys", "data": {"hi_data": [206.0, 152.0], "lo_data": [195.0, 148.0]}},
                    {"name": "ttbar_norm", "type": "normfactor", "data": None},
                    {"name": "cr_shape", "type": "shapefactor", "data": None}]},
                {"name": "wjets", "data": [50.0, 40.0], "modifiers": [
                    {"name": "wjets_xs", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
                    {"name": "stat_CR", "type": "staterror", "data": [3.0, 2.5]}]}]},
        ],
        "observations": [{"name": "SR", "data": [43.0, 41.0, 18.0]}, {"name": "CR", "data": [262.0, 186.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.9, 1.1]], "inits": [1.0]},
            {"name": "cr_shape", "fixed": True, "inits": [1.0, 1.0]},
            {"name": "mu", "bounds": [[0.0, 10.0]]}]}}],
    }


SPECS = {
    "uncorrelated": _workspace_of(pyhf.simplemodels.uncorrelated_background([5.0, 10.0], [50.0, 60.0], [5.0, 12.0],
                                                                            validate=False), [57.0, 63.0]),
    "correlated": _workspace_of(pyhf.simplemodels.correlated_background([12.0], [50.0], [55.0], [45.0],
                                                                        validate=False), [58.0]),
    "every_modifier": _every_modifier(),
}


def _sbottom_spec(region: str, point: str) -> dict:
    if not SBOTTOM.exists():
        pytest.skip(f"ATLAS sbottom likelihood not found at {SBOTTOM}")
    jsonpatch = pytest.importorskip("jsonpatch")
    with tarfile.open(SBOTTOM) as archive:
        background = json.load(archive.extractfile(f"{region}/BkgOnly.json"))
        patch = json.load(archive.extractfile(f"{region}/patch.{point}.json"))
    return jsonpatch.apply_patch(background, patch)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_digest_equals_pyhf_digest(name):
    spec = SPECS[name]
    assert ratiofactory.Workspace(spec).digest() == pyhf.utils.digest(pyhf.Workspace(spec))


def test_digest_equals_pyhf_digest_with_non_ascii_text():
    spec = json.loads(json.dumps(SPECS["uncorrelated"]))
    spec["measurements"][0]["name"] = "μ-scan, 13 TeV"
    assert ratiofactory.Workspace(spec).digest() == pyhf.utils.digest(pyhf.Workspace(spec))


@pytest.mark.parametrize(("region", "point"), SBOTTOM_POINTS[:2])
def test_sbottom_digest_equals_pyhf_digest(region, point):
    spec = _sbottom_spec(region, point)
    assert ratiofactory.Workspace(spec).digest() == pyhf.utils.digest(pyhf.Workspace(spec))


def _both(spec: dict) -> tuple[pyhf.Model, object, ratiofactory.model.Model, object]:
    reference = pyhf.Workspace(spec)
    ref_model = reference.model()
    ours = ratiofactory.Workspace(spec)
    model = ours.model()
    return ref_model, reference.data(ref_model), model, ours.data(model)


def _random_points(model: pyhf.Model, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    init = np.asarray(model.config.suggested_init())
    bounds = np.asarray(model.config.suggested_bounds())
    width = np.minimum(bounds[:, 1] - bounds[:, 0], 2.0)
    points = init + rng.uniform(-0.25, 0.25, size=(n, init.size)) * width
    return np.clip(points, bounds[:, 0] + 1e-3, bounds[:, 1] - 1e-3)


def _check_same_model(ref_model, ref_data, model, data, n_random: int = 4) -> None:
    assert model.config.par_names == ref_model.config.par_names
    assert model.config.poi_index == ref_model.config.poi_index
    np.testing.assert_array_equal(np.asarray(data), np.asarray(ref_data))
    for pars in [ref_model.config.suggested_init(), *_random_points(ref_model, n_random, seed=3)]:
        pars = pyhf.tensorlib.astensor(pars)
        expected = float(ref_model.logpdf(pars, ref_data)[0])
        assert float(model.logpdf(pars, data)[0]) == pytest.approx(expected, rel=1e-12, abs=0)
        np.testing.assert_allclose(model.expected_data(pars), ref_model.expected_data(pars), rtol=1e-12, atol=0)


@pytest.mark.slow_when(backend="jax", name="every_modifier")  # 5-10 s: eager jax
@pytest.mark.parametrize("name", sorted(SPECS))
def test_logpdf_and_asimov_equal_pyhf(name, backend):
    _check_same_model(*_both(SPECS[name]), n_random=4 if backend == "numpy" else 0)


@pytest.mark.slow_when(backend="jax")  # 8 s: eager jax on a 60-parameter model
@pytest.mark.parametrize(("region", "point"), SBOTTOM_POINTS)
def test_sbottom_logpdf_equals_pyhf(region, point, backend):
    if backend == "jax" and (region, point) != SBOTTOM_POINTS[0]:
        pytest.skip("jax: one point (eager jax evaluation of a 60-parameter model is slow)")
    _check_same_model(*_both(_sbottom_spec(region, point)), n_random=4 if backend == "numpy" else 0)


def _assert_hypotest_equal(ref_model, ref_data, model, data, poi_value: float) -> None:
    expected = pyhf.infer.hypotest(poi_value, ref_data, ref_model, return_expected_set=True)
    got = pyhf.infer.hypotest(poi_value, data, model, return_expected_set=True)
    assert float(got[0]) == pytest.approx(float(expected[0]), rel=1e-6)
    np.testing.assert_allclose(np.asarray(got[1], dtype=float), np.asarray(expected[1], dtype=float), rtol=1e-6)
    ref_fit = np.asarray(pyhf.infer.mle.fit(ref_data, ref_model))
    our_fit = np.asarray(pyhf.infer.mle.fit(data, model))
    np.testing.assert_allclose(our_fit, ref_fit, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_pyhf_infer_on_our_model_equals_pyhf(name, backend):
    if backend == "jax" and name != "uncorrelated":
        pytest.skip("jax: one model here (pyhf.infer on jax is slow to compile); all in the slow sbottom test")
    pyhf.set_backend(backend, pyhf.optimize.minuit_optimizer(strategy=1, tolerance=1e-4), precision="64b")
    _assert_hypotest_equal(*_both(SPECS[name]), poi_value=1.0)


@pytest.mark.slow_when(backend="jax", name="every_modifier")  # 7 s
@pytest.mark.parametrize("name", sorted(SPECS))
def test_ratiofactory_infer_equals_pyhf(name, backend):
    """Our own inference (tolerance 1e-6) on our model against pyhf.infer on pyhf's
    (MINUIT strategy 2, tolerance 1e-7): observed CLs to 1e-6 relative; the expected band
    to 1e-5 (its -2σ tail is ~0.01 and amplifies the fits' residual 1e-7 errors); best-fit
    parameters to 1e-4 (two minimisers each within their EDM of the same minimum)."""
    if backend == "jax" and name != "every_modifier":
        pytest.skip("jax: the model with every modifier type is enough (jit compilation is slow)")
    pyhf.set_backend(backend, pyhf.optimize.minuit_optimizer(strategy=2, tolerance=1e-7), precision="64b")
    ref_model, ref_data, model, data = _both(SPECS[name])
    expected = pyhf.infer.hypotest(1.0, ref_data, ref_model, return_expected_set=True)
    got = ratiofactory.infer.hypotest(model, data, 1.0, options=ratiofactory.infer.FitOptions(tolerance=1e-6))
    assert got.cls == pytest.approx(float(expected[0]), rel=1e-6)
    np.testing.assert_allclose(got.expected_cls, np.asarray(expected[1], dtype=float), rtol=1e-5)
    ref_fit = np.asarray(pyhf.infer.mle.fit(ref_data, ref_model))
    result = ratiofactory.infer.fit(model, data, hesse=False, tolerance=1e-6)
    np.testing.assert_allclose(result.values, ref_fit, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("region", "point"), SBOTTOM_POINTS)
def test_sbottom_cls_and_fit_equal_pyhf(region, point, backend):
    """The published ATLAS likelihood: observed and expected CLs and the best fit through
    pyhf.infer on our model equal pyhf's (20-35 s per point and backend on a loaded 2-core machine)."""
    if backend == "jax" and point != SBOTTOM_POINTS[0][1]:
        pytest.skip("jax: one point is enough (the jit compilation dominates)")
    pyhf.set_backend(backend, pyhf.optimize.minuit_optimizer(strategy=1, tolerance=1e-3), precision="64b")
    _assert_hypotest_equal(*_both(_sbottom_spec(region, point)), poi_value=1.0)
