"""A ratiofactory model works where a pyhf.Model works: pyhf.infer and cabinetry run on
a plain unbinned Model (no adapter), on numpy and jax, and agree with ratiofactory.infer."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory import infer
from ratiofactory.model import traceable_logpdf
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, [Normal(5.0, 0.5)]), (0.5, [Exponential(0.3, 0.0, 10.0)])]


def _spec() -> dict:
    def onnx(name):
        return {"onnx": {"path": f"models/{name}.onnx"}, "output": "ratio"}

    return {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
            "samples": [
                {"name": "S", "yield": 10.0, "ratio": onnx("S"),
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "B", "yield": 60.0, "ratio": onnx("B"),
                 "modifiers": [{"name": "bkg", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                               {"name": "lumi", "type": "lumi", "data": None}]},
            ],
        }],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 10.0]]},
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "inits": [1.0], "bounds": [[0.9, 1.1]]},
        ]}}],
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("dropin")
    (root / "models").mkdir()
    (root / "data").mkdir()
    ratio_model(P_S, P_REF, path=root / "models" / "S.onnx")
    ratio_model(P_B, P_REF, path=root / "models" / "B.onnx")
    rng = np.random.default_rng(1)
    observed = sample_mixture([(10.0, P_S[0][1]), (60.0, P_B[0][1])], 70, rng)
    np.savez(root / "data" / "observed.npz", x=observed[:, 0])
    reference = sample_mixture(P_REF, 500, rng)
    np.savez(root / "data" / "reference.npz", x=reference[:, 0], weight=np.full(500, 1 / 500))
    (root / "workspace.json").write_text(json.dumps(_spec()))
    return ratiofactory.Workspace.load(root / "workspace.json")


def test_logpdf_has_pyhf_shape_and_nll_is_scalar(workspace, backend):
    model = workspace.model()
    data = workspace.data(model)
    pars = pyhf.tensorlib.astensor([1.3, 0.2, 1.01])
    logpdf = model.logpdf(pars, data)
    assert logpdf.shape == (1,)
    assert np.shape(model.nll(pars, data)) == ()
    assert float(model.nll(pars, data)) == pytest.approx(-float(logpdf[0]), rel=1e-15)
    assert float(model.make_pdf(pars).log_prob(data)) == pytest.approx(float(logpdf[0]), rel=1e-15)
    if backend == "jax":
        f, arrays = traceable_logpdf(model)
        assert f(pars, data, arrays).shape == (1,)
        assert float(f(pars, data, arrays)[0]) == pytest.approx(float(logpdf[0]), rel=1e-12)


def test_pyhf_infer_runs_on_plain_model(workspace, backend):
    model = workspace.model()
    data = workspace.data(model)
    ours = infer.fit(model, data)
    bestfit, twice_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    np.testing.assert_allclose(np.asarray(bestfit), ours.values, atol=5e-4)
    assert float(twice_nll) == pytest.approx(ours.twice_nll, abs=1e-5)
    cls, expected = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", return_expected_set=True)
    mine = infer.hypotest(model, data, 1.0, test_stat="qtilde")
    assert 0.05 < mine.cls < 0.95  # a test with something to compare
    assert float(cls) == pytest.approx(mine.cls, abs=2e-4)
    np.testing.assert_allclose([float(v) for v in expected], mine.expected_cls, atol=2e-4)


def _cabinetry_against_ours(model, data):
    cabinetry = pytest.importorskip("cabinetry")
    # cabinetry's default MINUIT tolerance (EDM < 2e-4) leaves Δμ̂ of the refits uncertain
    # by a few 1e-3 here; a tight one makes them comparable with ours to 1e-4
    fit = cabinetry.fit.fit(model, data, tolerance=1e-4, strategy=2)
    ours = infer.fit(model, data)
    assert fit.labels == model.config.par_names
    np.testing.assert_allclose(fit.bestfit, ours.values, atol=5e-4)
    # ours: the exact Hessian on jax, equal on numpy to 1e-6; cabinetry's MINUIT Hesse is
    # within 0.7 % of it here
    np.testing.assert_allclose(fit.uncertainty, ours.errors, rtol=1e-2)
    ranking = cabinetry.fit.ranking(model, data, fit_results=fit, tolerance=1e-4, strategy=2)
    impacts = {row.name: row for row in infer.impacts(model, data).rows}
    assert sorted(ranking.labels) == sorted(impacts) == ["bkg", "lumi"]
    for i, name in enumerate(ranking.labels):
        row = impacts[name]
        for kind in ("prefit_up", "prefit_down"):
            assert getattr(ranking, kind)[i] == pytest.approx(getattr(row, kind), abs=2e-4), (name, kind)
        for kind in ("postfit_up", "postfit_down"):  # shifted by ± the post-fit errors (1 % apart)
            assert getattr(ranking, kind)[i] == pytest.approx(getattr(row, kind), rel=1e-2, abs=2e-4)
    assert abs(impacts["bkg"].postfit_up) > 0.03  # impacts to compare, not zeros


def test_cabinetry_fit_and_ranking_on_plain_model(workspace, backend):
    model = workspace.model()
    _cabinetry_against_ours(model, workspace.data(model))
