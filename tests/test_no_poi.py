"""``"poi": ""`` is pyhf's measurement without a parameter of interest: the model builds,
fits run, and what needs a POI says so clearly (Python API and command line)."""

from __future__ import annotations

import json

import pyhf
import pytest
from cli_toy import make_toy, one_line_error, run

import ratiofactory
from ratiofactory import infer

BINNED = {
    "version": "1.0.0",
    "channels": [{"name": "SR", "samples": [
        {"name": "s", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "b", "data": [50.0], "modifiers": [{"name": "u", "type": "shapesys", "data": [5.0]}]}]}],
    "observations": [{"name": "SR", "data": [55.0]}],
    "measurements": [{"name": "m", "config": {"poi": "", "parameters": []}}],
}


def test_empty_poi_is_no_poi_as_in_pyhf():
    ws = ratiofactory.Workspace(BINNED)
    model = ws.model()
    reference = pyhf.Workspace(BINNED).model()
    assert reference.config.poi_index is None
    assert model.config.poi_index is None
    assert model.config.poi_name is None
    data = ws.data(model)
    result = infer.fit(model, data)
    assert result.poi is None
    _, twice_nll = pyhf.infer.mle.fit(data, reference, return_fitted_val=True)
    assert result.twice_nll == pytest.approx(float(twice_nll), abs=1e-6)
    with pytest.raises(infer.InvalidFitSetup, match=r'no parameter of interest \(measurement with "poi": ""'):
        infer.hypotest(model, data, 1.0)
    assert infer.hypotest(model, data, 1.0, poi="mu").cls == pytest.approx(
        infer.hypotest(ws.model(poi_name="mu"), data, 1.0).cls, abs=1e-9)


@pytest.fixture(scope="module")
def no_poi_workspace(tmp_path_factory):
    path, _ = make_toy(tmp_path_factory.mktemp("nopoi"))
    spec = json.loads(path.read_text())
    spec["measurements"][0]["config"]["poi"] = ""
    path.write_text(json.dumps(spec))
    return path


def test_cli_without_poi(no_poi_workspace, tmp_path):
    result = run(["fit", no_poi_workspace, "-o", tmp_path / "fit.json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "fit.json").read_text())["poi"] is None
    needs_poi = (["cls", "--test-poi", "1"], ["upper-limit"], ["significance"], ["impacts"],
                 ["scan", "--poi-range", "0", "2"], ["toys", "--ntoys", "10"],
                 ["neyman", "--ntoys", "10", "--poi-range", "0", "2", "--points", "2"])
    for command in needs_poi:
        one_line_error(run([*command, no_poi_workspace]), "no parameter of interest")
