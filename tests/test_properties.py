"""Property-based tests: random valid workspaces and parameter points (hypothesis).

The strategies build binned (pyhf) channels with normfactor, normsys, histosys, lumi,
shapesys and staterror modifiers, and unbinned channels whose samples carry exact ONNX
ratios (``ratiofactory.testing``, single models and ensembles in every output kind),
normfactor, normsys, lumi, formula and ratiosys modifiers, random event sets and
reference samples. The invariants:

- −ln L is finite or +∞, never NaN, at any point inside the bounds;
- numpy and jax agree to 1e-10 (relative);
- a pure pyhf specification gives pyhf's logpdf;
- algebra round trips: renaming twice, pruning a channel then combining it back;
- a mutated (invalid) specification raises a RatiofactoryError naming its place, never
  another exception.

Each property runs a few derandomised examples in the default suite and many random
ones in the slow run (``pytest -m slow tests/test_properties.py``); the settings profiles
are registered in conftest.py.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pyhf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ratiofactory
from ratiofactory import algebra
from ratiofactory.errors import InvalidExpression, RatiofactoryError
from ratiofactory.expressions import parse_expression
from ratiofactory.testing import Exponential, Normal, Uniform, constant_model, ratio_model

OUTPUTS = ("ratio", "log_ratio", "probability", "logit")
P_REF = [(0.5, [Normal(5.0, 1.0)]), (0.5, [Exponential(0.3, 0.0, 10.0)])]
#: numerator densities of the ratio models (denominator P_REF)
DENSITIES = {
    "sig": [(1.0, [Normal(5.0, 1.0)])],
    "bkg": [(1.0, [Exponential(0.3, 0.0, 10.0)])],
    "flat": [(1.0, [Uniform(0.0, 10.0)])],
}
#: ratiosys pairs: p(x | alpha = ±1) / p(x) of the signal shape
SHAPE_PAIRS = {
    "shift": ([(1.0, [Normal(5.2, 1.0)])], [(1.0, [Normal(4.8, 1.0)])]),
    "width": ([(1.0, [Normal(5.0, 1.2)])], [(1.0, [Normal(5.0, 0.85)])]),
}
FORMULA_PARAMETERS = ("mu", "theta")
NORMFACTORS = ("mu", "k")
NUISANCES = ("alpha", "beta")
LUMI_CONFIG = {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "inits": [1.0], "bounds": [[0.9, 1.1]]}


#: RATIOFACTORY_RANDOM_PROPERTIES=1: the slow runs draw new random examples each time
#: (exploration); otherwise they are reproducible, like every other test in CI
RANDOM_PROPERTIES = os.environ.get("RATIOFACTORY_RANDOM_PROPERTIES") == "1"


def _examples(fast: int, slow: int):
    """Two tests from one property ``f(root, data)``: a few examples and many in the slow
    run, both derandomised (the profile in conftest.py) unless RANDOM_PROPERTIES."""

    def decorate(check):
        fast_test = settings(max_examples=fast)(given(data=st.data())(check))
        slow_test = settings(max_examples=slow, derandomize=not RANDOM_PROPERTIES)(given(data=st.data())(check))
        return fast_test, pytest.mark.slow(slow_test)

    return decorate


# ---------------------------------------------------------------- files shared by examples


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A directory with the ONNX models every generated workspace may reference."""
    root = tmp_path_factory.mktemp("properties")
    (root / "models").mkdir()
    (root / "data").mkdir()
    for name, numerator in DENSITIES.items():
        for output in OUTPUTS:
            ratio_model(numerator, P_REF, output=output, path=root / "models" / f"{name}_{output}.onnx")
    for name, (up, down) in SHAPE_PAIRS.items():
        ratio_model(up, DENSITIES["sig"], path=root / "models" / f"{name}_up.onnx")
        ratio_model(down, DENSITIES["sig"], path=root / "models" / f"{name}_dn.onnx")
    constant_model(1.0, 1, path=root / "models" / "one_ratio.onnx")
    return root


def _write_events(root: Path, columns: dict[str, np.ndarray]) -> str:
    """An npz file named by its content, under root/data; its relative path."""
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in columns.values())).hexdigest()
    relative = f"data/{digest[:16]}.npz"
    if not (root / relative).exists():
        np.savez(root / relative, **columns)
    return relative


# ---------------------------------------------------------------- strategies


def _expression():
    leaf = st.one_of(st.sampled_from(FORMULA_PARAMETERS), st.sampled_from(["0.5", "1", "2", "0.1"]))

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(["sqrt", "exp", "log", "abs"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["min", "max", "pow"]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        )

    return st.recursive(leaf, extend, max_leaves=4).filter(_parses)


def _parses(text: str) -> bool:
    """Constant parts must be finite numbers (``log(0.1 - 0.5)`` is refused with a located error)."""
    try:
        parse_expression(text)
    except InvalidExpression:
        return False
    return True


@st.composite
def binned_channel(draw, index: int):
    nbins = draw(st.integers(1, 3))
    counts = st.lists(st.floats(0.5, 50.0), min_size=nbins, max_size=nbins)
    samples = []
    for s in range(draw(st.integers(1, 3))):
        data = draw(counts)
        modifiers = []
        if draw(st.booleans()):
            modifiers.append({"name": draw(st.sampled_from(NORMFACTORS)), "type": "normfactor", "data": None})
        if draw(st.booleans()):
            hi, lo = draw(st.floats(1.01, 1.5)), draw(st.floats(0.6, 0.99))
            modifiers.append({"name": draw(st.sampled_from(NUISANCES)), "type": "normsys", "data": {"hi": hi, "lo": lo}})
        if draw(st.booleans()):
            shift = draw(st.floats(0.01, 0.3))
            modifiers.append({"name": draw(st.sampled_from(NUISANCES)), "type": "histosys", "data": {
                "hi_data": [v * (1 + shift) for v in data], "lo_data": [v * (1 - shift) for v in data]}})
        if draw(st.booleans()):
            modifiers.append({"name": "lumi", "type": "lumi", "data": None})
        if draw(st.booleans()):
            modifiers.append({"name": f"stat_B{index}", "type": "staterror", "data": [0.1 * v for v in data]})
        if draw(st.booleans()):
            modifiers.append({"name": f"shape_B{index}_{s}", "type": "shapesys", "data": [0.2 * v for v in data]})
        samples.append({"name": f"s{s}", "data": data, "modifiers": modifiers})
    observed = draw(st.lists(st.integers(0, 60).map(float), min_size=nbins, max_size=nbins))
    return {"name": f"B{index}", "samples": samples}, {"name": f"B{index}", "data": observed}


def _ratio(draw):
    def single():
        name = draw(st.sampled_from([*DENSITIES, "one"]))
        output = "ratio" if name == "one" else draw(st.sampled_from(OUTPUTS))
        return {"onnx": {"path": f"models/{name}_{output}.onnx"}, "output": output}

    if draw(st.integers(0, 3)) == 0:
        return {"ensemble": [single(), single()], "aggregate": "mean"}
    return single()


@st.composite
def unbinned_channel(draw, root: Path, index: int):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # a few sizes only, so that jax's eager operations compile once per size, not per example
    n_observed = draw(st.sampled_from([0, 1, 12, 30]))
    n_reference = draw(st.sampled_from([8, 64]))
    observed = rng.uniform(0.0, 10.0, n_observed)
    reference = rng.uniform(0.0, 10.0, n_reference)
    weights = rng.uniform(0.5, 1.5, n_reference)
    samples = []
    for s in range(draw(st.integers(1, 3))):
        modifiers = []
        if draw(st.booleans()):
            modifiers.append({"name": draw(st.sampled_from(NORMFACTORS)), "type": "normfactor", "data": None})
        if draw(st.booleans()):
            hi, lo = draw(st.floats(1.01, 1.5)), draw(st.floats(0.6, 0.99))
            modifiers.append({"name": draw(st.sampled_from(NUISANCES)), "type": "normsys",
                              "data": {"hi": hi, "lo": lo, "interpolation": draw(st.sampled_from(["code1", "code4"]))}})
        if draw(st.booleans()):
            modifiers.append({"name": "lumi", "type": "lumi", "data": None})
        if draw(st.booleans()):
            modifiers.append({"name": f"f_U{index}_{s}", "type": "formula", "data": {"expression": draw(_expression())}})
        if draw(st.booleans()):
            pair = draw(st.sampled_from(sorted(SHAPE_PAIRS)))
            modifiers.append({"name": draw(st.sampled_from(NUISANCES)), "type": "ratiosys", "data": {
                "hi": {"onnx": {"path": f"models/{pair}_up.onnx"}, "output": "ratio"},
                "lo": {"onnx": {"path": f"models/{pair}_dn.onnx"}, "output": "ratio"},
                "interpolation": draw(st.sampled_from(["code0", "code1", "code4"]))}})
        samples.append({"name": f"s{s}", "yield": draw(st.floats(0.5, 100.0)), "ratio": _ratio(draw),
                        "modifiers": modifiers})
    channel = {"name": f"U{index}", "observables": [{"name": "x", "bounds": [0.0, 10.0]}], "samples": samples}
    has_ratiosys = any(m["type"] == "ratiosys" for s in samples for m in s["modifiers"])
    if has_ratiosys or draw(st.booleans()):
        path = _write_events(root, {"x": reference, "weight": weights / weights.sum()})
        channel["reference"] = {"events": {"path": path, "weight": "weight"}}
        channel["shape_normalisation"] = draw(st.sampled_from(["nominal", "reference"]))
    observation = {"name": f"U{index}", "events": {"path": _write_events(root, {"x": observed})}}
    return channel, observation


def _measurement(spec: dict) -> dict:
    """pyhf's measurement: POI mu when there is one ("" otherwise), lumi's settings if used."""
    used = {m["name"] for key in ("channels", "unbinned_channels") for c in spec.get(key, [])
            for s in c["samples"] for m in s["modifiers"]}
    formulas = " ".join(m["data"]["expression"] for c in spec.get("unbinned_channels", [])
                        for s in c["samples"] for m in s["modifiers"] if m["type"] == "formula")
    has_mu = "mu" in used or "mu" in formulas
    parameters = [copy.deepcopy(LUMI_CONFIG)] if "lumi" in used else []  # mutations must not reach the constant
    return {"name": "m", "config": {"poi": "mu" if has_mu else "", "parameters": parameters}}


@st.composite
def workspaces(draw, root: Path, binned: bool = True, unbinned: bool = True):
    """A valid workspace spec (at least one channel)."""
    n_binned = draw(st.integers(0, 2)) if binned else 0
    n_unbinned = draw(st.integers(0 if n_binned else 1, 2)) if unbinned else 0
    if n_binned + n_unbinned == 0:
        n_binned = 1
    spec: dict = {"version": "1.0.0", "observations": []}
    if n_binned:
        pairs = [draw(binned_channel(i)) for i in range(n_binned)]
        spec["channels"] = [c for c, _ in pairs]
        spec["observations"] += [o for _, o in pairs]
    if n_unbinned:
        pairs = [draw(unbinned_channel(root, i)) for i in range(n_unbinned)]
        spec["unbinned_channels"] = [c for c, _ in pairs]
        spec["observations"] += [o for _, o in pairs]
    if n_binned and not any(s["modifiers"] for c in spec["channels"] for s in c["samples"]):
        # pyhf refuses a model without parameters
        spec["channels"][0]["samples"][0]["modifiers"].append({"name": "mu", "type": "normfactor", "data": None})
    spec["measurements"] = [_measurement(spec)]
    return spec


def _point(draw, model) -> list[float]:
    """A random parameter point inside the model's bounds."""
    # no subnormal numbers: XLA on the CPU flushes them to zero (a parameter of 1e-308
    # is 0 on jax, which turns a finite -ln L into +inf), numpy keeps them
    # values (or products of them) near 1e-308 underflow to subnormals, which XLA flushes too
    tiny = lambda x: x != 0 and abs(x) < 1e-100
    return [draw(st.floats(lo, hi, allow_subnormal=False).filter(lambda x: not tiny(x)))
            for lo, hi in model.config.suggested_bounds()]


def _build(spec: dict, root: Path):
    ws = ratiofactory.Workspace(spec, base_dir=root)
    model = ws.model(cache=False)
    return ws, model


# ---------------------------------------------------------------- properties


def _jax_nll(model, ws):
    """−ln L on jax, jit-compiled once per model (eager jax compiles every operation)."""
    import jax

    if not hasattr(model, "_property_jax_nll"):
        data = ws.data(model)
        model._property_jax_nll = jax.jit(lambda p: model.nll(p, data))
    return model._property_jax_nll


def _nll_is_finite_or_plus_infinity_and_backends_agree(root, data):
    gc.collect()  # pyhf re-precomputes every live binned model when the backend changes
    spec = data.draw(workspaces(root))
    ws, model = _build(spec, root)
    observed = ws.data(model)
    points = [_point(data.draw, model) for _ in range(3)]
    values = [float(model.nll(pars, observed)) for pars in points]
    for pars, value in zip(points, values, strict=True):
        assert not math.isnan(value), (spec, pars)
        assert value == math.inf or math.isfinite(value), (spec, pars, value)
    pyhf.set_backend("jax", precision="64b")
    try:
        nll = _jax_nll(model, ws)
        values_jax = [float(nll(pyhf.tensorlib.astensor(pars))) for pars in points]
    finally:
        pyhf.set_backend("numpy", precision="64b")
    for pars, value, value_jax in zip(points, values, values_jax, strict=True):
        if math.isinf(value):
            assert value_jax == value, (spec, pars)
        else:
            assert value_jax == pytest.approx(value, rel=1e-10, abs=1e-10), (spec, pars)


test_nll_is_finite_or_plus_infinity_and_backends_agree, test_nll_properties_thorough = _examples(3, 40)(
    _nll_is_finite_or_plus_infinity_and_backends_agree)


def _pure_pyhf_logpdf_equals_pyhf(root, data):
    spec = data.draw(workspaces(root, unbinned=False))
    ws, model = _build(spec, root)
    reference = pyhf.Workspace(spec)
    ref_model = reference.model()
    assert model.config.par_order == ref_model.config.par_order
    observed = ws.data(model)
    np.testing.assert_array_equal(observed, reference.data(ref_model))
    for _ in range(3):
        pars = _point(data.draw, model)
        ours = float(model.logpdf(pars, observed)[0])
        theirs = float(ref_model.logpdf(pars, observed)[0])
        if math.isnan(theirs):  # pyhf: NaN at a negative expected count; ours: likelihood 0
            assert ours == -math.inf, (spec, pars)
        else:
            assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12) or ours == theirs, (spec, pars)
    assert ws.digest() == pyhf.utils.digest(reference)


test_pure_pyhf_logpdf_equals_pyhf, test_pure_pyhf_logpdf_thorough = _examples(10, 60)(_pure_pyhf_logpdf_equals_pyhf)


def _all_names(spec: dict) -> dict[str, set[str]]:
    channels = [c for key in ("channels", "unbinned_channels") for c in spec.get(key, [])]
    return {
        "channels": {c["name"] for c in channels},
        "samples": {s["name"] for c in channels for s in c["samples"]},
        "modifiers": {m["name"] for c in channels for s in c["samples"] for m in s["modifiers"]},
    }


def _rename_twice_and_prune_then_combine_round_trip(root, data):
    spec = data.draw(workspaces(root))
    names = _all_names(spec)
    kind = data.draw(st.sampled_from(sorted(k for k, v in names.items() if v - {"lumi"})))
    old = data.draw(st.sampled_from(sorted(names[kind] - {"lumi"})))  # pyhf: lumi is named "lumi"
    new = "renamed_" + old
    there = algebra.rename(spec, **{kind: {old: new}})
    assert old not in _all_names(there)[kind]
    assert algebra.rename(there, **{kind: {new: old}}) == spec
    # prune one channel, then combine the pruned workspace with that channel alone
    channels = sorted(names["channels"])
    if len(channels) > 1:
        removed = data.draw(st.sampled_from(channels))
        rest = algebra.prune(spec, channels=[removed])
        alone = algebra.prune(spec, channels=[c for c in channels if c != removed])
        combined = algebra.combine(rest, alone, join="outer")
        assert algebra.sorted_spec(combined) == algebra.sorted_spec(spec)
    # the round trips give the same likelihood
    ws, model = _build(spec, root)
    back, back_model = _build(algebra.rename(there, **{kind: {new: old}}), root)
    pars = model.config.suggested_init()
    assert float(back_model.nll(pars, back.data(back_model))) == float(model.nll(pars, ws.data(model)))


test_algebra_round_trips, test_algebra_round_trips_thorough = _examples(8, 40)(
    _rename_twice_and_prune_then_combine_round_trip)


# ---------------------------------------------------------------- invalid specifications


def _paths(node, prefix=()):
    """Every (path, value) in a JSON document."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _set(spec, path, value):
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(spec, path):
    node = spec
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


BAD_VALUES = [None, -1.0, 0.0, 1e308, "", "x", "../outside.npz", "/etc/passwd", [], {}, [1.0, "a"],
              True, "mu - ", "sqrt(", "__import__('os')", "nan", -1e308, 10**400]


@st.composite
def mutated(draw, root: Path):
    spec = draw(workspaces(root))
    paths = [p for p, _ in _paths(spec) if p]
    path = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(["set", "delete", "duplicate"]))
    if action == "delete":
        _delete(spec, path)
    elif action == "duplicate" and isinstance(path[-1], int):
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        parent.append(copy.deepcopy(parent[path[-1]]))
    else:
        _set(spec, path, draw(st.sampled_from(BAD_VALUES)))
    return spec


def _mutated_spec_fails_cleanly(root, data):
    spec = data.draw(mutated(root))
    text = json.dumps(spec)
    try:
        ws, model = _build(spec, root)
        ws.data(model)
    except RatiofactoryError as err:
        message = str(err)
        assert "\n" not in message.strip(), message
        assert "/" in message, message  # a JSON pointer or a file path
    assert json.dumps(spec) == text  # the input is never modified


test_mutated_spec_fails_cleanly, test_mutated_spec_thorough = _examples(25, 150)(_mutated_spec_fails_cleanly)
