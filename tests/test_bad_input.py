"""Bad input through the whole chain (Workspace.load → model): one clear line naming the place."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import ratiofactory
from ratiofactory import errors
from ratiofactory.testing import Normal, broken_model, ratio_model

P_SIG = [(1.0, [Normal(0.0, 1.0)])]
P_REF = [(1.0, [Normal(0.0, 2.0)])]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "models" / "sig.onnx").write_bytes(ratio_model(P_SIG, P_REF))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data" / "observed.npz", x=rng.normal(0, 1.5, 50))
    np.savez(tmp_path / "data" / "reference.npz", x=rng.normal(0, 2.0, 200))
    return tmp_path


SPEC = {
    "version": "1.0.0",
    "unbinned_channels": [{
        "name": "SR",
        "observables": [{"name": "x"}],
        "reference": {"events": {"path": "data/reference.npz"}},
        "samples": [{"name": "sig", "yield": 50.0,
                     "ratio": {"onnx": {"path": "models/sig.onnx"}, "output": "ratio"},
                     "modifiers": [{"name": "f", "type": "formula", "data": {"expression": "mu"}}]}],
    }],
    "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
}


def _build(workdir, change=None):
    spec = copy.deepcopy(SPEC)
    if change:
        change(spec)
    path = workdir / "workspace.json"
    path.write_text(json.dumps(spec))
    return ratiofactory.Workspace.load(path).model(cache=False)


def _one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def _sample(spec):
    return spec["unbinned_channels"][0]["samples"][0]


def test_valid_workspace_builds(workdir):
    model = _build(workdir)
    assert model.config.par_order == ["mu"]


def test_schema_violation_names_pointer(workdir):
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"].update(output="prob"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio/output", "probability")


def test_invalid_json_gives_line_and_column(tmp_path):
    path = tmp_path / "ws.json"
    path.write_text('{"version": "1.0.0",\n  "channels": [,]}')
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        ratiofactory.Workspace.load(path)
    _one_line(excinfo, "line 2", "column")


def test_missing_file(workdir):
    with pytest.raises(errors.InvalidFile) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path="models/nope.onnx"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio", "models/nope.onnx")


@pytest.mark.parametrize("path", ["../outside.onnx", "models/../../outside.onnx", "models/link.onnx"])
def test_path_escaping_the_workspace(workdir, path):
    outside = workdir.parent / "outside.onnx"
    outside.write_bytes(ratio_model(P_SIG, P_REF))
    (workdir / "models" / "link.onnx").symlink_to(outside)
    with pytest.raises(errors.UnsafePath) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path=path))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio")


def test_absolute_path_is_refused(workdir):
    with pytest.raises(errors.RatiofactoryError) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path=str(workdir / "models" / "sig.onnx")))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio")


def test_sha256_mismatch(workdir):
    with pytest.raises(errors.DigestMismatch) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(sha256="0" * 64))
    _one_line(excinfo, "models/sig.onnx", "sha256")


def test_onnx_input_width_differs_from_observables(workdir):
    (workdir / "models" / "wide.onnx").write_bytes(broken_model("wrong_width", n_observables=1))
    with pytest.raises(errors.InvalidONNXModel) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path="models/wide.onnx"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio", "models/wide.onnx")


@pytest.mark.parametrize("kind", ["nan", "inf", "negative"])
def test_onnx_bad_values_name_sample_and_event(workdir, kind):
    (workdir / "models" / "bad.onnx").write_bytes(broken_model(kind, n_observables=1))
    with pytest.raises(errors.InvalidONNXModel) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path="models/bad.onnx"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio", "models/bad.onnx", "event ")


@pytest.mark.parametrize(
    ("expression", "problem"),
    [("mu + foo(mu)", "foo"), ("mu.real", "attribute"), ("__import__('os')", "__import__")],
)
def test_bad_formula(workdir, expression, problem):
    with pytest.raises(errors.InvalidExpression) as excinfo:
        _build(workdir, lambda s: _sample(s)["modifiers"][0]["data"].update(expression=expression))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/modifiers/0/data/expression", problem)


def test_pickled_npz_is_refused(workdir):
    np.savez(workdir / "data" / "observed.npz", x=np.array([1.0, "a", None], dtype=object))
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir)
    _one_line(excinfo, "data/observed.npz")


def test_event_file_missing_an_observable(workdir):
    np.savez(workdir / "data" / "observed.npz", y=np.zeros(3))
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir)
    _one_line(excinfo, "data/observed.npz", "'x'")


def test_event_outside_observable_bounds(workdir):
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir, lambda s: s["unbinned_channels"][0]["observables"][0].update(bounds=[-1.0, 1.0]))
    _one_line(excinfo, "outside the bounds", "first: event")


def test_duplicate_sample_names(workdir):
    def duplicate(spec):
        samples = spec["unbinned_channels"][0]["samples"]
        samples.append(copy.deepcopy(samples[0]))

    with pytest.raises(errors.InvalidSpecification) as excinfo:
        _build(workdir, duplicate)
    _one_line(excinfo, "/unbinned_channels/0/samples/1")


def test_unknown_poi_and_measurement(workdir):
    def unknown_poi(spec):
        spec["measurements"][0]["config"]["poi"] = "nu"

    with pytest.raises(errors.InvalidModel) as excinfo:
        _build(workdir, unknown_poi)
    _one_line(excinfo, "/measurements/0/config/poi", "'nu'", "mu")
    ws = ratiofactory.Workspace.load(workdir / "workspace.json")
    with pytest.raises(errors.InvalidModel) as excinfo:
        ws.model("other")
    _one_line(excinfo, "other", "meas")


def test_inputs_are_not_modified(workdir):
    spec = copy.deepcopy(SPEC)
    ws = ratiofactory.Workspace(spec, base_dir=workdir)
    ws.model(cache=False)
    assert spec == SPEC
