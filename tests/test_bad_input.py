"""Bad input through the whole chain (Workspace.load → model): one clear line naming the place."""

from __future__ import annotations

import copy
import json
import warnings

import cli_toy
import numpy as np
import pytest

import ratiofactory
import ratiofactory.algebra
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
    _one_line(excinfo, "/measurements/0/config/poi", "'nu'", "mu", "no modifier uses it",
              "a background-only workspace needs a signal patch first")

    def misspelt_poi(spec):
        spec["measurements"][0]["config"]["poi"] = "muu"

    with pytest.raises(errors.InvalidModel) as excinfo:
        _build(workdir, misspelt_poi)
    _one_line(excinfo, "'muu'", "did you mean 'mu'?")
    ws = ratiofactory.Workspace.load(workdir / "workspace.json")
    with pytest.raises(errors.InvalidModel) as excinfo:
        ws.model("other")
    _one_line(excinfo, "other", "meas")


def test_a_formula_parameter_that_looks_like_a_typo_is_a_warning(workdir):
    from ratiofactory.parameters import FormulaParameterWarning

    def typo(spec):  # "muu" beside the POI "mu": a new free parameter nobody asked for
        spec["unbinned_channels"][0]["samples"][0]["modifiers"].append(
            {"name": "g", "type": "formula", "data": {"expression": "sqrt(muu)"}})

    with pytest.warns(FormulaParameterWarning) as record:
        model = _build(workdir, typo)
    assert "muu" in model.config.par_order
    assert [str(w.message) for w in record] == [
        ("parameter 'muu' (formula at /unbinned_channels/0/samples/0/modifiers/1) is used only by formulas and "
         "has no measurement setting, so it is a new free parameter: did you mean 'mu'?")]

    def configured(spec):  # a measurement setting says the parameter is meant
        typo(spec)
        spec["measurements"][0]["config"]["parameters"].append({"name": "muu", "bounds": [[0, 5]]})

    def far(spec):  # nothing like the POI or a configured parameter (kappa_t ~ kappa_b: both loose)
        spec["unbinned_channels"][0]["samples"][0]["modifiers"].append(
            {"name": "g", "type": "formula", "data": {"expression": "kappa_t * kappa_b"}})

    for change in (configured, far):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FormulaParameterWarning)
            _build(workdir, change)


def test_inputs_are_not_modified(workdir):
    spec = copy.deepcopy(SPEC)
    ws = ratiofactory.Workspace(spec, base_dir=workdir)
    ws.model(cache=False)
    assert spec == SPEC


# --------------------------------------------------------------------------- JSON input
# Python's json accepts what JSON does not (NaN), keeps the last of duplicate keys and
# overflows the stack on deep nesting: each is a one-line error naming file and place.


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('{"version": "1.0.0", "version": "1.0.0"}', ["ws.json: /:", "duplicate key 'version'"]),
        ('{"measurements": [{"name": "m", "config": {"poi": "a", "poi": "b"}}]}',
         ["ws.json: /measurements/0/config:", "duplicate key 'poi'"]),
        ('{"a": [1.0, NaN]}', ["ws.json: /a/1:", "NaN is not a JSON number"]),
        ('{"a": {"b": -Infinity}}', ["ws.json: /a/b:", "-Infinity"]),
        ('{"a": ' + "9" * 5000 + "}", ["ws.json: /a:", "5000 digits"]),
        ('{"a": 1' + "0" * 5000 + ".5}", ["ws.json: /a:", "does not fit a float64"]),
        ('{"a": 1e999}', ["ws.json: /a:", "1e999"]),
        ('{"a": [0.0, -2.5e-999]}', ["ws.json: /a/1:", "-2.5e-999 is too small for a float64"]),
        ("[" * 100000 + "]" * 100000, ["ws.json:", "nested more than", "line 1, column"]),
        ('{"a": ' + "[" * 100 + "]" * 100 + "}", ["ws.json: /a/0/0", "nested more than"]),
        ('["not", "an object"]', ["ws.json:", "a workspace is a JSON object"]),
    ],
)
def test_json_that_python_would_accept_or_crash_on(tmp_path, text, fragments):
    path = tmp_path / "ws.json"
    path.write_text(text)
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        ratiofactory.Workspace.load(path)
    _one_line(excinfo, *fragments)


def test_workspace_that_is_not_utf8(tmp_path):
    path = tmp_path / "ws.json"
    path.write_bytes(b'{"version": "1.0.0",\n "name": "caf\xe9"}')
    with pytest.raises(errors.InvalidFile) as excinfo:
        ratiofactory.Workspace.load(path)
    _one_line(excinfo, "ws.json", "not UTF-8", "line 2")


def test_workspace_larger_than_the_file_limit(tmp_path, monkeypatch):
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(SPEC))
    monkeypatch.setenv("RATIOFACTORY_MAX_FILE_BYTES", "100")
    with pytest.raises(errors.InvalidFile) as excinfo:
        ratiofactory.Workspace.load(path)
    _one_line(excinfo, "ws.json", "above the limit of 100", "RATIOFACTORY_MAX_FILE_BYTES")


def test_deep_spec_built_in_python_is_refused_before_copying():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        ratiofactory.Workspace({**SPEC, "deep": deep})
    _one_line(excinfo, "/deep/0/0", "nested more than")


def test_cli_stdin_json_errors_name_stdin(workdir):
    result = cli_toy.run(["fit", "-"], input=b'{"version": "1.0.0", "version": "1.0.0"}')
    cli_toy.one_line_error(result, "<stdin>: /:", "duplicate key 'version'")
    result = cli_toy.run(["fit", "-"], input=b'{"a": "\xff"}')
    cli_toy.one_line_error(result, "<stdin>", "not UTF-8")


# --------------------------------------------------------------------------- pyhf's errors
# pyhf 0.7 has no common exception base class; each class reachable from model
# construction becomes an InvalidModel naming the measurement and pyhf's reason.

BINNED = {
    "version": "1.0.0",
    "channels": [{"name": "CR", "samples": [
        {"name": "sig", "data": [5.0, 6.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": [50.0, 60.0], "modifiers": [{"name": "u", "type": "shapesys", "data": [5.0, 6.0]}]},
    ]}],
    "observations": [{"name": "CR", "data": [55.0, 66.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
}


def _binned(change, **kwargs):
    spec = copy.deepcopy(BINNED)
    change(spec)
    return ratiofactory.Workspace(spec, **kwargs).model(cache=False)


@pytest.mark.parametrize(
    ("pyhf_class", "change"),
    [
        ("InvalidModel", lambda s: s["measurements"][0]["config"]["parameters"].extend(
            [{"name": "mu", "bounds": [[0, 10]]}, {"name": "mu", "bounds": [[0, 5]]}])),
        ("InvalidModel", lambda s: s["channels"][0]["samples"][0]["modifiers"].append(
            {"name": "u", "type": "shapesys", "data": [1.0, 1.0]})),
        ("InvalidNameReuse", lambda s: s["channels"][0]["samples"][1]["modifiers"].append(
            {"name": "mu", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})),
    ],
)
def test_pyhf_model_errors_become_invalid_model(pyhf_class, change):
    with pytest.raises(errors.InvalidModel) as excinfo:
        _binned(change)
    _one_line(excinfo, "/measurements/0", f"({pyhf_class}:")


def test_pyhf_invalid_modifier_without_schema_validation():
    def unknown_type(spec):
        spec["channels"][0]["samples"][1]["modifiers"][0]["type"] = "magic"

    with pytest.raises(errors.InvalidModel) as excinfo:
        _binned(unknown_type, validate=False)
    _one_line(excinfo, "/measurements/0", "(InvalidModifier:", "magic")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [({"normsys": {"interpcode": "code9"}}, "code1, code4"), ({"staterror": {}}, "'staterror'")],
)
def test_modifier_settings_pyhf_would_assert_on(settings, fragment):
    with pytest.raises(errors.InvalidModel) as excinfo:
        ratiofactory.Workspace(BINNED).model(modifier_settings=settings)
    _one_line(excinfo, "modifier_settings", fragment)


# --------------------------------------------------------------------------- silent changes of meaning


def test_measurement_setting_for_a_parameter_no_modifier_uses(workdir):
    def typo(spec):
        spec["measurements"][0]["config"]["parameters"] = [{"name": "mu", "bounds": [[0, 5]]},
                                                           {"name": "lumi_typo", "bounds": [[0, 2]]}]

    with pytest.raises(errors.InvalidModel) as excinfo:
        _build(workdir, typo)
    _one_line(excinfo, "/measurements/0/config/parameters/1/name", "'lumi_typo'", "no modifier uses")


def test_setting_for_the_poi_of_a_background_only_workspace_is_kept():
    """pyhf's published BkgOnly.json configures the POI its signal patch adds."""
    spec = copy.deepcopy(BINNED)
    spec["measurements"][0]["config"] = {"poi": "mu_SIG", "parameters": [{"name": "mu_SIG", "bounds": [[0, 10]]}]}
    model = ratiofactory.Workspace(spec).model(poi_name=None)
    assert model.config.poi_name is None


def test_prune_of_a_formula_parameter_is_refused(workdir):
    _build(workdir)
    result = cli_toy.run(["prune", workdir / "workspace.json", "-m", "mu"])
    cli_toy.one_line_error(result, "prune: 'mu' is a parameter of the formula or ratio model at",
                           "/unbinned_channels/0/samples/0/modifiers/0/data/expression")
    with pytest.raises(ratiofactory.algebra.InvalidWorkspaceOperation):
        ratiofactory.algebra.prune(SPEC, modifiers=["mu"])
    pruned = ratiofactory.algebra.prune(SPEC, modifiers=["f"], samples=[])  # the formula itself: fine
    assert pruned["unbinned_channels"][0]["samples"][0]["modifiers"] == []


@pytest.mark.parametrize("new", ["sqrt", "exp", "max", "PI", "TRUE", "and", "lambda", "None", "__class__"])
def test_rename_to_a_reserved_word_is_refused(workdir, new):
    _build(workdir)
    result = cli_toy.run(["rename", workdir / "workspace.json", "-m", "mu", new])
    cli_toy.one_line_error(result, f"rename: 'mu' → '{new}'", "reserved")


@pytest.mark.parametrize("new", ["mu-2", "mu 2", "mu.x", "2mu", "µ"])
def test_rename_of_a_formula_parameter_to_a_name_formulas_cannot_read(new):
    with pytest.raises(ratiofactory.algebra.InvalidWorkspaceOperation) as excinfo:
        ratiofactory.algebra.rename(SPEC, modifiers={"mu": new})
    _one_line(excinfo, f"'mu' → {new!r}", "/unbinned_channels/0/samples/0/modifiers/0/data/expression")


def test_rename_into_a_name_of_another_kind_is_refused():
    def with_normsys(spec):
        _sample(spec)["modifiers"].append({"name": "k", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}})

    spec = copy.deepcopy(SPEC)
    with_normsys(spec)
    with pytest.raises(ratiofactory.algebra.InvalidWorkspaceOperation) as excinfo:
        ratiofactory.algebra.rename(spec, modifiers={"k": "mu"})
    _one_line(excinfo, "rename:", "parameter 'mu'", "/unbinned_channels/0/samples/0/modifiers")


def test_combine_normsys_with_normfactor_of_the_same_name_is_refused():
    right = copy.deepcopy(BINNED)
    right["channels"][0]["name"] = right["observations"][0]["name"] = "VR"
    right["channels"][0]["samples"][1]["modifiers"] = [
        {"name": "mu", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]
    with pytest.raises(ratiofactory.algebra.InvalidWorkspaceOperation) as excinfo:
        ratiofactory.algebra.combine(BINNED, right, join="outer")
    _one_line(excinfo, "combine", "parameter 'mu'", "normsys", "normfactor", "/channels/1/samples/1/modifiers/0")


def test_combine_unbinned_normfactor_with_binned_normsys_is_refused(workdir):
    right = copy.deepcopy(BINNED)
    right["channels"][0]["samples"][0]["modifiers"] = [
        {"name": "mu", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]
    right["measurements"][0]["config"]["poi"] = "mu"
    with pytest.raises(ratiofactory.algebra.InvalidWorkspaceOperation) as excinfo:
        ratiofactory.algebra.combine(SPEC, right, join="outer")
    _one_line(excinfo, "combine", "parameter 'mu'", "/channels/0/samples/0/modifiers/0")


def test_event_outside_bounds_message_has_no_numpy_repr(workdir):
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir, lambda s: s["unbinned_channels"][0]["observables"][0].update(bounds=[-0.5, 0.5]))
    _one_line(excinfo, "x = ")
    assert "np." not in str(excinfo.value)


# --------------------------------------------------------------------------- resource limits: ONNX


def _loop_model(trips: int = 10**12) -> bytes:
    """r(x) = exp(x + trips·1e-30), the sum made by an ONNX Loop of ``trips`` iterations."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "tiny"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.DOUBLE, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.DOUBLE, None)],
        [numpy_helper.from_array(np.array(1e-30), "tiny")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["r"], body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1])],
        [helper.make_tensor_value_info("r", TensorProto.DOUBLE, ["N", 1])],
        [numpy_helper.from_array(np.array(trips, dtype=np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "cond")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _with_op(op_type: str, domain: str = "") -> bytes:
    """A [N, 1] → [N, 1] graph made of one ``op_type`` node followed by Exp."""
    import onnx
    from onnx import TensorProto, helper

    attributes = {"shape": [1], "dtype": TensorProto.DOUBLE} if op_type.startswith("Random") else {}
    inputs = [] if op_type.startswith("Random") and not op_type.endswith("Like") else ["x"]
    graph = helper.make_graph(
        [helper.make_node(op_type, inputs, ["y"], domain=domain, **attributes),
         helper.make_node("Add", ["x", "y"], ["r"])],
        "one_op",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1])],
        [helper.make_tensor_value_info("r", TensorProto.DOUBLE, ["N", 1])],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (_loop_model, ["operator Loop", "control flow", "RATIOFACTORY_ONNX_EXTRA_OPS=Loop"]),
        (lambda: _with_op("RandomNormalLike"), ["RandomNormalLike", "deterministic"]),
        (lambda: _with_op("Evil", "com.attacker"), ["com.attacker:Evil", "allow-list"]),
        (lambda: b"\x0a\xff\xff\xff\xff\x0f", ["not a valid ONNX model", "protobuf"]),
    ],
)
def test_onnx_operators_outside_the_allow_list(workdir, content, fragments):
    (workdir / "models" / "evil.onnx").write_bytes(content())
    with pytest.raises(errors.InvalidONNXModel) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"]["onnx"].update(path="models/evil.onnx"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio", "models/evil.onnx", *fragments)


def test_onnx_time_limit_stops_an_allowed_loop(workdir, monkeypatch):
    """A trusted model with a Loop runs; one of 10¹² iterations is stopped at the time limit."""
    monkeypatch.setenv("RATIOFACTORY_ONNX_EXTRA_OPS", "Loop")
    (workdir / "models" / "loop.onnx").write_bytes(_loop_model(trips=3))
    _build(workdir, lambda s: _sample(s)["ratio"].update(onnx={"path": "models/loop.onnx"}, output="log_ratio"))
    (workdir / "models" / "loop.onnx").write_bytes(_loop_model())
    monkeypatch.setenv("RATIOFACTORY_ONNX_SECONDS", "0.3")
    with pytest.raises(errors.InvalidONNXModel) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"].update(onnx={"path": "models/loop.onnx"}, output="log_ratio"))
    _one_line(excinfo, "models/loop.onnx", "time limit of 0.3 s", "RATIOFACTORY_ONNX_SECONDS")


# --------------------------------------------------------------------------- resource limits: event files


def _npy_header(shape, descr="<f8") -> bytes:
    import io

    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
    return stream.getvalue()


def _npz(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


@pytest.mark.parametrize(
    ("name", "write", "fragments"),
    [
        ("huge.npz", lambda p: _npz(p, {"x.npy": _npy_header((10**12,)) + bytes(64)}),
         ["column 'x' claims 1000000000000 events", "RATIOFACTORY_MAX_EVENTS"]),
        ("short.npz", lambda p: _npz(p, {"x.npy": _npy_header((1000,)) + bytes(64)}),
         ["claims 1000 events (8000 bytes)", "truncated"]),
        ("huge.npy", lambda p: p.write_bytes(_npy_header((10**12,), [("x", "<f8")]) + bytes(64)),
         ["claims 1000000000000 events"]),
        ("wide.npz", lambda p: _npz(p, {"x.npy": _npy_header((10, 10**11)) + bytes(64)}),
         ["bytes of data, above the limit", "RATIOFACTORY_MAX_FILE_BYTES"]),
        ("objects.npy", lambda p: np.save(p, np.array([1.0, "a"], dtype=object), allow_pickle=True),
         ["pickled/object arrays"]),
        ("latin1.csv", lambda p: p.write_bytes(b"x\n1.0\n0.5 # caf\xe9\n"), ["line 3 is not UTF-8"]),
        ("longheader.csv", lambda p: p.write_bytes(b"x" * (2 << 20) + b"\n1\n"), ["header row is longer"]),
        ("text.csv", lambda p: p.write_text("x\n1.0\nabc\n"), ["cannot read the numbers"]),
        ("nan.csv", lambda p: p.write_text("x\n1.0\nnan\n"), ["event 1 has non-finite x"]),
    ],
)
def test_event_files_refused_before_allocating(workdir, name, write, fragments):
    write(workdir / "data" / name)
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir, lambda s: s["observations"][0]["events"].update(path=f"data/{name}"))
    _one_line(excinfo, "/observations/0", f"data/{name}", *fragments)


def test_event_count_limit_is_configurable(workdir, monkeypatch):
    np.savez(workdir / "data" / "observed.npz", x=np.zeros(50))
    (workdir / "data" / "observed.csv").write_text("x\n" + "0.0\n" * 50)
    _build(workdir)
    monkeypatch.setenv("RATIOFACTORY_MAX_EVENTS", "49")
    for name in ("observed.npz", "observed.csv"):
        with pytest.raises(errors.InvalidEvents) as excinfo:
            _build(workdir, lambda s, n=name: s["observations"][0]["events"].update(path=f"data/{n}"))
        _one_line(excinfo, f"data/{name}", "limit", "RATIOFACTORY_MAX_EVENTS")


# --------------------------------------------------------------------------- ratio cache


def test_replaced_ratio_cache_entry_is_detected_and_recomputed(workdir, tmp_path):
    from ratiofactory.ratio_cache import RatioCache, RatioCacheWarning

    path = workdir / "workspace.json"
    path.write_text(json.dumps(SPEC))
    ws = ratiofactory.Workspace.load(path)
    model = ws.model(cache=RatioCache(tmp_path / "cache"))
    data = ws.data(model)
    reference = float(model.logpdf([1.3], data)[0])
    entries = sorted((tmp_path / "cache" / "ratios").glob("*.npz"))
    assert len(entries) == 2  # the observed and the reference events
    for entry_path in entries:
        with np.load(entry_path) as entry:
            ratios, digest = entry["ratios"], entry["sha256"]
        np.savez(entry_path, ratios=ratios[::-1].copy(), sha256=digest)  # valid ratios of other events
    with pytest.warns(RatioCacheWarning, match="does not match its sha256"):
        again = ws.model(cache=RatioCache(tmp_path / "cache"))
    assert float(again.logpdf([1.3], data)[0]) == reference


# --------------------------------------------------------------------------- bundles: forged manifests, bombs


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory):
    """(workspace path, bundle path) of the CLI toy."""
    import pyhf

    from ratiofactory import publish

    pyhf.set_backend("numpy", precision="64b")
    root = tmp_path_factory.mktemp("bundle")
    path, _ = cli_toy.make_toy(root / "ws")
    publish.pack(path, root / "toy.tar.gz")
    return path, root / "toy.tar.gz"


def _unpacked(toy_bundle, tmp_path):
    from ratiofactory import publish

    return publish.unpack(toy_bundle[1], tmp_path / "bundle")


def _edit_manifest(directory, change):
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    change(manifest)
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))


def _sha256(path):
    from ratiofactory.files import sha256_file

    return sha256_file(path)


def _outside_workspace(directory):
    """A valid workspace outside the bundle, with its own copies of the files."""
    import shutil

    outside = directory.parent / "outside"
    shutil.copytree(directory, outside)
    (outside / "MANIFEST.json").unlink()
    return outside / "workspace.json"


@pytest.mark.parametrize(
    ("forge", "fragments"),
    [
        (lambda d, m: m.update(workspace=str(_outside_workspace(d))),
         ["'workspace' must name one of the files"]),
        (lambda d, m: (m.update(workspace="../outside/workspace.json"), _outside_workspace(d),
                       m["files"].update({"../outside/workspace.json": _sha256(d / "workspace.json")})),
         ["'../outside/workspace.json'", "not a normalised path inside the bundle"]),
        (lambda d, m: m["files"].update({str(_outside_workspace(d)): _sha256(d / "workspace.json")}),
         ["is not a relative path inside the bundle"]),
        (lambda d, m: m["files"].update({"./workspace.json": m["files"]["workspace.json"]}),
         ["'./workspace.json'", "not a normalised path"]),
        (lambda d, m: m["files"].pop("models/B.onnx"), ["models/B.onnx: in the bundle but not in MANIFEST.json"]),
        (lambda d, m: m["files"].update({"models/extra.onnx": "0" * 64}),
         ["models/extra.onnx: listed in MANIFEST.json but not in the bundle"]),
        (lambda d, m: m["files"].update({"models/B.onnx": "not a digest"}), ["files/models/B.onnx", "not a sha256"]),
        (lambda d, m: m.update(workspace="MANIFEST.json"), ["'workspace' must name one of the files"]),
        (lambda d, m: m["files"].update({"MANIFEST.json": "0" * 64}), ["may not list itself"]),
        (lambda d, m: m.update(version=2), ["manifest version 2"]),
        (lambda d, m: m.update(files=[]), ["'files' must be an object"]),
    ],
)
def test_forged_manifest_fails_verify(toy_bundle, tmp_path, forge, fragments):
    from ratiofactory import publish

    directory = _unpacked(toy_bundle, tmp_path)
    _edit_manifest(directory, lambda m: forge(directory, m))
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.verify(directory)
    _one_line(excinfo, *fragments)
    cli_toy.one_line_error(cli_toy.run(["verify", directory]), fragments[0])


def test_file_added_to_a_bundle_fails_verify(toy_bundle, tmp_path):
    from ratiofactory import publish

    directory = _unpacked(toy_bundle, tmp_path)
    (directory / "data" / "smuggled.npz").write_bytes(b"x")
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.verify(directory)
    _one_line(excinfo, "data/smuggled.npz: in the bundle but not in MANIFEST.json")


@pytest.mark.parametrize("where", ["models/B.onnx", "models/link.onnx", "MANIFEST.json", "data"])
def test_symlink_in_an_unpacked_bundle_fails_verify(toy_bundle, tmp_path, where):
    import shutil

    from ratiofactory import publish

    directory = _unpacked(toy_bundle, tmp_path)
    target = directory / where
    if target.is_dir():
        shutil.move(target, tmp_path / "elsewhere")
        target.symlink_to(tmp_path / "elsewhere")
    else:
        copy_ = tmp_path / "copy"
        copy_.write_bytes(target.read_bytes() if target.exists() else b"x")
        target.unlink(missing_ok=True)
        target.symlink_to(copy_)
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.verify(directory)
    _one_line(excinfo, "symbolic link" if where != "MANIFEST.json" else "no manifest")


def test_verify_reports_the_workspace_the_manifest_names(toy_bundle, tmp_path):
    """A second listed workspace is what is verified when the manifest names it."""
    from ratiofactory import publish

    directory = _unpacked(toy_bundle, tmp_path)
    spec = json.loads((directory / "workspace.json").read_text())
    spec["measurements"][0]["name"] = "other"
    (directory / "other.json").write_text(json.dumps(spec))
    _edit_manifest(directory, lambda m: (m.update(workspace="other.json"),
                                         m["files"].update({"other.json": _sha256(directory / "other.json")})))
    report = publish.verify(directory)
    assert report["workspace"] == "other.json"
    assert report["digest"] == ratiofactory.Workspace.load(directory / "other.json").digest()
    assert report["digest"] != ratiofactory.Workspace.load(directory / "workspace.json").digest()


def _tar(path, members):
    """A .tar.gz of (TarInfo, content or None) pairs; a content shorter than the member's
    size is written as is (a header that claims more than the archive holds)."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    for info, content in members:
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT))
        if content:
            raw.write(content + bytes(-len(content) % 512))
    raw.write(bytes(1024))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def _member(name, size=0, kind=None):
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    if kind is not None:
        info.type, info.linkname = kind, "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("members", "env", "fragments"),
    [
        ([(_member("bomb.npz", 2**30), bytes(1 << 20))], {},
         ["member 'bomb.npz'", "decompression bomb", "RATIOFACTORY_MAX_BUNDLE_RATIO"]),
        ([(_member(f"m{i}"), None) for i in range(30)], {"RATIOFACTORY_MAX_BUNDLE_MEMBERS": "20"},
         ["more than 20 members", "RATIOFACTORY_MAX_BUNDLE_MEMBERS"]),
        ([(_member("big.npz", 5000), bytes(5000))], {"RATIOFACTORY_MAX_FILE_BYTES": "4096"},
         ["member 'big.npz' has 5000 bytes", "RATIOFACTORY_MAX_FILE_BYTES"]),
        ([(_member("a.npz", 10), bytes(10)), (_member("a.npz", 10), bytes(10))], {}, ["appears twice"]),
        ([(_member("link", kind=b"2"), None)], {}, ["member 'link' is a link"]),
        ([(_member("hard", kind=b"1"), None)], {}, ["member 'hard' is a link"]),
        ([(_member("fifo", kind=b"6"), None)], {}, ["member 'fifo' is a special file"]),
    ],
)
def test_unpack_limits_and_members(tmp_path, monkeypatch, members, env, fragments):
    from ratiofactory import publish

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bundle = _tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.unpack(bundle, tmp_path / "target")
    _one_line(excinfo, "evil.tar.gz", *fragments)
    assert not (tmp_path / "target").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]  # no partial extraction left


def test_unpack_refuses_thirty_thousand_members_by_default(tmp_path):
    from ratiofactory import publish

    bundle = _tar(tmp_path / "many.tar.gz", [(_member(f"m{i}"), None) for i in range(30_000)])
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.unpack(bundle, tmp_path / "target")
    _one_line(excinfo, "many.tar.gz", f"more than {publish.DEFAULT_MAX_MEMBERS} members")


def test_unpack_into_a_file_is_refused(toy_bundle, tmp_path):
    from ratiofactory import publish

    (tmp_path / "file").write_text("")
    with pytest.raises(errors.InvalidFile) as excinfo:
        publish.unpack(toy_bundle[1], tmp_path / "file")
    _one_line(excinfo, "file", "not a directory")


# --------------------------------------------------------------------------- outputs never overwrite inputs


@pytest.fixture
def toy_copy(toy_bundle, tmp_path):
    from ratiofactory import publish

    directory = publish.unpack(toy_bundle[1], tmp_path / "ws")
    (directory / "MANIFEST.json").unlink()
    return directory


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["fit", "{ws}", "-o", "{ws}"], ["--output-file", "is the workspace"]),
        (["fit", "{ws}", "-o", "{d}/data/observed.npz"], ["is the file the workspace references at /observations/0/events"]),
        (["fit", "{ws}", "-o", "{d}/link.npz"], ["link.npz is the file the workspace references at /observations/0/events"]),
        (["fit", "{ws}", "-o", "{d}/hard.npz"], ["hard.npz is the file the workspace references at /unbinned_channels/0/reference"]),
        (["fit", "{ws}", "-o", "{d}/models/../workspace.json"], ["is the workspace"]),
        # a link with a plot's extension to a model (models/B.onnx itself is refused for its extension)
        (["scan", "{ws}", "--poi-range", "0", "2", "--plot", "{d}/B.png"], ["--plot", "B.png is the file the workspace"]),
        (["scan", "{ws}", "--poi-range", "0", "2", "--plot", "{d}/x.png", "-o", "{d}/x.png"], ["x.png is also given to"]),
        (["validate", "{ws}", "-o", "{d}/data/reference.npz"], ["/unbinned_channels/0/reference/events"]),
        (["inspect", "{ws}", "-o", "{ws}"], ["is the workspace"]),
        (["prune", "{ws}", "-m", "bkg_norm", "-o", "{ws}"], ["is the workspace"]),
        (["rename", "{ws}", "-m", "bkg_norm", "b", "-o", "{d}/models/S_a.onnx"], ["/unbinned_channels/0/samples/0/ratio"]),
        (["combine", "{ws}", "{ws}", "--join", "outer", "-o", "{ws}"], ["is the workspace"]),
        (["digest", "{ws}", "-o", "{d}/data/observed.npz"], ["/observations/0/events"]),
        (["pack", "{ws}", "{ws}"], ["BUNDLE", "is the workspace"]),
        (["pack", "{ws}", "{d}/models/B.onnx"], ["BUNDLE", "models/B.onnx"]),
        (["verify", "{d}/../bundle.tar.gz", "-o", "{d}/../bundle.tar.gz"], ["is the bundle"]),
        (["fit", "-", "-o", "{d}/data/observed.npz"], ["/observations/0/events"]),
    ],
)
def test_outputs_that_would_overwrite_an_input_are_refused(toy_copy, toy_bundle, args, fragments, monkeypatch):
    import shutil

    directory = toy_copy
    shutil.copy(toy_bundle[1], directory.parent / "bundle.tar.gz")
    (directory / "link.npz").symlink_to(directory / "data" / "observed.npz")
    (directory / "hard.npz").hardlink_to(directory / "data" / "reference.npz")
    (directory / "B.png").symlink_to(directory / "models" / "B.onnx")
    before = {p: p.read_bytes() for p in [*directory.rglob("*"), directory.parent / "bundle.tar.gz"] if p.is_file()}
    ws = directory / "workspace.json"
    monkeypatch.chdir(directory)
    stdin = ws.read_text() if "-" in args else None
    result = cli_toy.run([a.format(ws=ws, d=directory) for a in args], input=stdin)
    cli_toy.one_line_error(result, "refusing to overwrite an input" if "also given" not in fragments[0] else "",
                           *fragments)
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------------------------------- more careless inputs


def test_npz_with_a_member_twice(workdir):
    import warnings
    import zipfile

    path = workdir / "data" / "twice.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w") as archive:
            for values in (np.zeros(3), np.ones(3)):
                archive.writestr("x.npy", _npy_header((3,)) + values.tobytes())
    with pytest.raises(errors.InvalidEvents) as excinfo:
        _build(workdir, lambda s: s["observations"][0]["events"].update(path="data/twice.npz"))
    _one_line(excinfo, "/observations/0", "data/twice.npz", "'x.npy' twice")


def test_onnx_with_external_data_is_refused(workdir, tmp_path):
    """Weights stored outside the model file (here: an absolute path) are never read."""
    import onnx
    from onnx import TensorProto, helper

    (tmp_path / "secret.bin").write_bytes(np.array([42.0]).tobytes())
    weight = TensorProto(name="w", data_type=TensorProto.DOUBLE, dims=[1], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": str(tmp_path / "secret.bin"), "offset": "0", "length": "8"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["r"])], "external",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1])],
                              [helper.make_tensor_value_info("r", TensorProto.DOUBLE, ["N", 1])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (workdir / "models" / "external.onnx").write_bytes(model.SerializeToString())
    assert onnx.load_from_string(model.SerializeToString()).graph.initializer[0].external_data
    with pytest.raises(errors.InvalidONNXModel) as excinfo:
        _build(workdir, lambda s: _sample(s)["ratio"].update(onnx={"path": "models/external.onnx"}, output="ratio"))
    _one_line(excinfo, "/unbinned_channels/0/samples/0/ratio", "models/external.onnx", "not a valid ONNX model")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_cli_fixed_value_must_be_finite(workdir, value):
    _build(workdir)
    result = cli_toy.run(["fit", workdir / "workspace.json", "--fixed", f"mu={value}"])
    cli_toy.one_line_error(result, "--fixed", f"mu={value}", "not a finite number")


def test_cli_stdin_larger_than_the_file_limit(workdir, monkeypatch):
    monkeypatch.setenv("RATIOFACTORY_MAX_FILE_BYTES", "64")
    result = cli_toy.run(["fit", "-"], input=json.dumps(SPEC))
    cli_toy.one_line_error(result, "<stdin>: more than 64 bytes", "RATIOFACTORY_MAX_FILE_BYTES")


@pytest.mark.parametrize(("env", "value"), [("RATIOFACTORY_ONNX_SECONDS", "soon"), ("RATIOFACTORY_ONNX_SECONDS", "-1"),
                                            ("RATIOFACTORY_MAX_EVENTS", "many"), ("RATIOFACTORY_MAX_FILE_BYTES", "4G")])
def test_malformed_limit_variables_are_named(workdir, monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(errors.RatiofactoryError) as excinfo:
        _build(workdir)
    _one_line(excinfo, f"${env}={value!r}")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["fit", "{ws}", "--fixed", "mu=1", "--fixed", "mu=2"], ["--fixed", "'mu' is fixed twice (1 and 2)"]),
        (["rename", "{ws}", "-m", "mu", "a", "-m", "mu", "b"], ["--modifier", "'mu' is renamed twice"]),
        (["rename", "{ws}", "-c", "SR", "A", "-c", "CR", "A"], ["--channel", "both renamed to 'A'"]),
    ],
)
def test_cli_options_given_twice_are_refused(workdir, args, fragments):
    _build(workdir)
    result = cli_toy.run([a.format(ws=workdir / "workspace.json") for a in args])
    cli_toy.one_line_error(result, *fragments)


#: file-path parameters that commands read, not write
_INPUT_PATHS = {("unpack", "bundle"), ("reweighting", "events_file")}
#: file-path parameters that every command having them reads (--patch, patchsets)
_INPUT_NAMES = {"patch", "patchset_file", "patch_files"}


def _commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_file_output_of_every_command_is_protected():
    """A command added later with a new file output must join the protected outputs."""
    import click

    from ratiofactory.cli import cli
    from ratiofactory.cli._outputs import _OUTPUT_PARAMETERS

    unprotected = []
    for name, command in _commands(cli):
        for param in command.params:
            kind = param.type
            is_file = isinstance(kind, click.Path) and not kind.dir_okay and not kind.exists
            known = (param.name in _OUTPUT_PARAMETERS or param.name in _INPUT_NAMES
                     or (name.split()[-1], param.name) in _INPUT_PATHS)
            if is_file and not known:
                unprotected.append(f"{name} {param.name}")
    assert unprotected == []


def test_export_output_over_an_input_is_refused(workdir):
    _build(workdir)
    result = cli_toy.run(["export", "roofit", workdir / "workspace.json", "-o", workdir / "data" / "observed.npz"])
    cli_toy.one_line_error(result, "--output", "/observations/0/events", "refusing to overwrite an input")


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        ({"name": "mu", "bounds": [[2.0]]}, ["/measurements/0/config/parameters/0/bounds/0", "a pair [lower, upper]"]),
        ({"name": "mu", "bounds": [[2.0, 1.0]]}, ["/bounds/0", "lower bound 2.0 must be below upper bound 1.0"]),
        ({"name": "mu", "bounds": [[0.0, 1.0]], "inits": [2.0]}, ["/inits/0", "init 2.0 lies outside the bounds [0.0, 1.0]"]),
        # pyhf's schema allows constraint widths <= 0; its likelihood is then NaN
        ({"name": "u", "sigmas": [0.1, 0.0]}, ["/measurements/0/config/parameters/0/sigmas/1",
                                               "sigma 0.0 of parameter 'u' must be positive"]),
        ({"name": "u", "sigmas": [-0.1, 0.1]}, ["/sigmas/0", "sigma -0.1"]),
        ({"name": "u", "factors": [100.0, 0.0]}, ["/factors/1", "factor 0.0 of parameter 'u' must be positive"]),
    ],
)
def test_measurement_bounds_pyhf_schema_lets_through(setting, fragments):
    spec = copy.deepcopy(BINNED)
    spec["measurements"][0]["config"]["parameters"] = [setting]
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        ratiofactory.Workspace(spec)
    _one_line(excinfo, *fragments)


def test_spec_built_with_numpy_values_is_read_as_json():
    """numpy scalars and arrays (as pyhf users write them) become JSON numbers and lists:
    pyhf, the digest and the messages never see numpy types."""
    spec = copy.deepcopy(BINNED)
    spec["channels"][0]["samples"][0]["data"] = np.array([5.0, 6.0])
    spec["observations"][0]["data"] = np.array([55, 66])
    spec["measurements"][0]["config"]["parameters"] = [
        {"name": "mu", "fixed": np.bool_(False), "bounds": np.array([[0.0, 5.0]]), "inits": [np.float64(1.0)]}]
    ws = ratiofactory.Workspace(spec)
    assert ws.digest() == ratiofactory.Workspace(json.loads(json.dumps(ws.spec))).digest()
    assert ws.model().config.suggested_bounds()[0] == (0.0, 5.0)
    spec["channels"][0]["samples"][0]["modifiers"][0]["type"] = np.str_("normfactorr")
    spec["measurements"][0]["config"]["parameters"][0]["inits"] = np.array([[1.0]])
    with pytest.raises(errors.InvalidSpecification) as excinfo:
        ratiofactory.Workspace(spec)
    assert "np." not in str(excinfo.value)
    assert "array(" not in str(excinfo.value)
