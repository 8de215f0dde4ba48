"""evaluate_ratio against exact analytic ratios computed with scipy.stats; checks; cache."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from scipy import stats

from ratiofactory.errors import DigestMismatch, InvalidONNXModel, InvalidSpecification
from ratiofactory.events import EventSet
from ratiofactory.onnx_eval import evaluate_ratio
from ratiofactory.ratio_cache import RatioCache, RatioCacheWarning, content_digest
from ratiofactory.testing import (
    Exponential,
    Normal,
    Uniform,
    broken_model,
    constant_model,
    ratio_model,
    sample_mixture,
)

POINTER = "/unbinned_channels/0/samples/1/ratio"
OBSERVABLES = ("m4l", "cos_theta")
REFERENCE = [
    (0.6, [Exponential(1.5, 0.0, 3.0), Uniform(-1.0, 1.0)]),
    (0.4, [Uniform(0.0, 3.0), Uniform(-1.0, 1.0)]),
]
SIGNALS = [
    [
        (2.0, [Normal(1.0, 0.3), Normal(0.0, 0.5)]),
        (1.0, [Exponential(0.8, 0.0, 3.0), Uniform(-1.0, 1.0)]),
    ],
    [(1.0, [Normal(1.2, 0.5), Normal(0.2, 0.7)])],
    [(1.0, [Exponential(0.5, 0.0, 3.0), Normal(-0.1, 1.0)])],
]


def scipy_pdf(mixture, x):
    """Independent reference with scipy.stats (all slopes here are positive)."""
    total = sum(w for w, _ in mixture)
    density = np.zeros(len(x))
    for weight, components in mixture:
        term = np.full(len(x), weight / total)
        for d, c in enumerate(components):
            if isinstance(c, Normal):
                term *= stats.norm.pdf(x[:, d], loc=c.mean, scale=c.sigma)
            elif isinstance(c, Uniform):
                term *= stats.uniform.pdf(x[:, d], loc=c.lo, scale=c.hi - c.lo)
            else:
                term *= stats.truncexpon.pdf(
                    x[:, d], b=(c.hi - c.lo) * c.slope, loc=c.lo, scale=1 / c.slope
                )
        density += term
    return density


def exact_ratio(signal, x):
    return scipy_pdf(signal, x) / scipy_pdf(REFERENCE, x)


@pytest.fixture(scope="module")
def events():
    values = sample_mixture(REFERENCE, 3001, np.random.default_rng(2))
    return EventSet(values, None, OBSERVABLES, "data/ref.npz")


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "models").mkdir()
    return tmp_path


@pytest.fixture
def sessions(monkeypatch):
    """Counts the onnxruntime sessions created."""
    created = []
    original = onnxruntime.InferenceSession

    def counting(*args, **kwargs):
        created.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    return created


def write(workspace, name, model_bytes):
    (workspace / "models" / name).write_bytes(model_bytes)
    return {"path": f"models/{name}"}


def single(workspace, name, model_bytes, output="ratio"):
    return {"onnx": write(workspace, name, model_bytes), "output": output}


@pytest.mark.parametrize("output", ["ratio", "log_ratio", "probability", "logit"])
def test_each_output_kind_is_exact(workspace, events, output):
    spec = single(workspace, "s.onnx", ratio_model(SIGNALS[0], REFERENCE, output=output), output)
    values = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    assert values.members.shape == (1, len(events))
    assert values.mean.dtype == np.float64
    np.testing.assert_allclose(values.mean, exact_ratio(SIGNALS[0], events.values), rtol=1e-12)
    np.testing.assert_array_equal(values.members[0], values.mean)


def test_float32_model(workspace, events):
    spec = single(
        workspace,
        "s.onnx",
        ratio_model(SIGNALS[0], REFERENCE, output="probability", dtype="float32"),
        "probability",
    )
    values = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    assert values.mean.dtype == np.float64
    np.testing.assert_allclose(values.mean, exact_ratio(SIGNALS[0], events.values), rtol=1e-5)


def test_ensemble_mean_and_members(workspace, events):
    outputs = ["ratio", "logit", "probability"]
    members = [
        single(workspace, f"m{k}.onnx", ratio_model(s, REFERENCE, output=out), out)
        for k, (s, out) in enumerate(zip(SIGNALS, outputs, strict=True))
    ]
    spec = {"ensemble": members, "aggregate": "mean"}
    values = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    expected = np.stack([exact_ratio(s, events.values) for s in SIGNALS])
    assert values.members.shape == (3, len(events))
    np.testing.assert_allclose(values.members, expected, rtol=1e-12)
    np.testing.assert_allclose(values.mean, expected.mean(axis=0), rtol=1e-12)


def test_batching_does_not_change_values(workspace, events):
    # one-term densities: the graph is pure arithmetic, so batches must agree bit for bit
    numerator = [(1.0, [Normal(1.2, 0.5), Exponential(0.7, -1.0, 1.0)])]
    denominator = [(1.0, [Exponential(1.5, 0.0, 3.0), Uniform(-1.0, 1.0)])]
    content = ratio_model(numerator, denominator, output="log_ratio")
    spec = single(workspace, "s.onnx", content, "log_ratio")
    small = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None, batch_size=7)
    large = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    np.testing.assert_array_equal(small.mean, large.mean)
    np.testing.assert_allclose(
        large.mean,
        scipy_pdf(numerator, events.values) / scipy_pdf(denominator, events.values),
        rtol=1e-12,
    )


def test_batching_with_transcendental_ops_agrees_to_rounding(workspace, events):
    # onnxruntime's vectorised Exp/Log round differently in the tail of a batch (ulps)
    spec = single(workspace, "s.onnx", ratio_model(SIGNALS[0], REFERENCE, output="logit"), "logit")
    small = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None, batch_size=7)
    large = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    np.testing.assert_allclose(small.mean, large.mean, rtol=2e-15, atol=0)


def test_large_float32_run_casts_batches_and_exps_on_threads(workspace):
    # 300 000 events: float64 -> float32 casts in a reused buffer, exp() on threads
    numerator = [(1.0, [Normal(1.2, 0.5), Exponential(0.7, -1.0, 1.0)])]
    values = sample_mixture(REFERENCE, 300_000, np.random.default_rng(9))
    many = EventSet(values, None, OBSERVABLES, "data/big.npz")
    content = ratio_model(numerator, REFERENCE[:1], output="logit", dtype="float32")
    spec = single(workspace, "s32.onnx", content, "logit")
    large = evaluate_ratio(spec, many, workspace, pointer=POINTER, cache=None)
    small = evaluate_ratio(spec, many, workspace, pointer=POINTER, cache=None, batch_size=4099)
    np.testing.assert_array_equal(small.mean, large.mean)
    exact = scipy_pdf(numerator, values) / scipy_pdf(REFERENCE[:1], values)
    np.testing.assert_allclose(large.mean, exact, rtol=2e-5)
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    emitted = session.run(None, {"x": values.astype(np.float32)})[0].astype(np.float64)
    np.testing.assert_array_equal(large.mean, np.exp(emitted))  # every chunk, in float64


def test_no_events(workspace):
    spec = single(workspace, "c.onnx", constant_model(2.0, 2))
    empty = EventSet(np.zeros((0, 2)), None, OBSERVABLES, "none")
    values = evaluate_ratio(spec, empty, workspace, pointer=POINTER, cache=None)
    assert values.members.shape == (1, 0)


def test_digest_is_checked(workspace, events):
    spec = single(workspace, "c.onnx", constant_model(2.0, 2))
    spec["onnx"]["sha256"] = "ab" * 32
    with pytest.raises(DigestMismatch, match=rf"^{POINTER}/onnx: sha256 of models/c\.onnx is"):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)


def test_memory_cache_runs_model_once(workspace, events, sessions, tmp_path):
    spec = single(workspace, "s.onnx", ratio_model(SIGNALS[1], REFERENCE))
    cache = RatioCache(tmp_path / "cache")
    first = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=cache)
    second = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=cache)
    assert len(sessions) == 1
    np.testing.assert_array_equal(first.mean, second.mean)
    ensemble = {"ensemble": [spec, spec], "aggregate": "mean"}
    evaluate_ratio(ensemble, events, workspace, pointer=POINTER, cache=cache)
    assert len(sessions) == 1


def test_disk_cache_survives_a_new_cache(workspace, events, sessions, tmp_path):
    spec = single(workspace, "s.onnx", ratio_model(SIGNALS[1], REFERENCE))
    first = evaluate_ratio(
        spec, events, workspace, pointer=POINTER, cache=RatioCache(tmp_path / "cache")
    )
    files = list((tmp_path / "cache" / "ratios").glob("*"))
    assert [f.suffix for f in files] == [".npz"]  # no temporary file left behind
    again = evaluate_ratio(
        spec, events, workspace, pointer=POINTER, cache=RatioCache(tmp_path / "cache")
    )
    assert len(sessions) == 1
    np.testing.assert_array_equal(first.mean, again.mean)
    np.testing.assert_allclose(again.mean, exact_ratio(SIGNALS[1], events.values), rtol=1e-12)


def test_cache_key_separates_output_kind_and_events(workspace, events, sessions, tmp_path):
    cache = RatioCache(tmp_path / "cache", on_disk=False)
    content = constant_model(2.0, 2)
    evaluate_ratio(
        single(workspace, "c.onnx", content), events, workspace, pointer=POINTER, cache=cache
    )
    as_log = evaluate_ratio(
        single(workspace, "c.onnx", content, "log_ratio"),
        events,
        workspace,
        pointer=POINTER,
        cache=cache,
    )
    fewer = EventSet(events.values[:10], None, OBSERVABLES, "subset")
    evaluate_ratio(
        single(workspace, "c.onnx", content), fewer, workspace, pointer=POINTER, cache=cache
    )
    assert len(sessions) == 3
    np.testing.assert_allclose(as_log.mean, np.exp(2.0))
    assert not (tmp_path / "cache").exists()


def _entry_ratios(entry):
    with np.load(entry) as archive:
        return archive["ratios"]


@pytest.mark.parametrize(
    ("damage", "why"),
    [(b"garbage", "unreadable"), ("wrong_length", "not 3001 ratios"), ("negative", "sha256"),
     ("negative_resigned", "outside"), ("other_valid_array", "sha256"), ("other_entry", "sha256")],
)
def test_corrupt_cache_entry_is_recomputed(workspace, events, sessions, tmp_path, damage, why):
    spec = single(workspace, "s.onnx", ratio_model(SIGNALS[2], REFERENCE))
    first = evaluate_ratio(
        spec, events, workspace, pointer=POINTER, cache=RatioCache(tmp_path / "cache")
    )
    (entry,) = (tmp_path / "cache" / "ratios").glob("*.npz")
    key = entry.stem
    if damage == "wrong_length":
        np.savez(entry, ratios=np.ones(5), sha256=np.array(content_digest(key, np.ones(5))))
    elif damage == "negative":
        np.savez(entry, ratios=-first.mean, sha256=np.array(content_digest(key, first.mean)))
    elif damage == "negative_resigned":
        np.savez(entry, ratios=-first.mean, sha256=np.array(content_digest(key, -first.mean)))
    elif damage == "other_valid_array":  # valid ratios, the old digest: a replaced array
        np.savez(entry, ratios=2 * first.mean, sha256=np.array(content_digest(key, first.mean)))
    elif damage == "other_entry":  # another key's complete entry copied over this one
        other = 3 * first.mean
        np.savez(entry, ratios=other, sha256=np.array(content_digest("0" * 64, other)))
    else:
        entry.write_bytes(damage)
    with pytest.warns(RatioCacheWarning, match=rf"{key}\.npz refused: .*{why}"):
        again = evaluate_ratio(
            spec, events, workspace, pointer=POINTER, cache=RatioCache(tmp_path / "cache")
        )
    assert len(sessions) == 2
    np.testing.assert_array_equal(again.mean, first.mean)
    np.testing.assert_array_equal(_entry_ratios(entry), first.mean)  # rewritten


def test_unwritable_cache_warns_and_still_evaluates(workspace, events, tmp_path):
    (tmp_path / "not_a_directory").write_text("")
    spec = single(workspace, "c.onnx", constant_model(2.0, 2))
    cache = RatioCache(tmp_path / "not_a_directory")
    with pytest.warns(RuntimeWarning, match="is not writable"):
        values = evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=cache)
    assert values.mean.tolist() == [2.0] * len(events)


def test_cache_directory_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RATIOFACTORY_CACHE_DIR", str(tmp_path / "env"))
    assert RatioCache().directory == tmp_path / "env"
    monkeypatch.delenv("RATIOFACTORY_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert RatioCache().directory == tmp_path / ".cache" / "ratiofactory"


def test_no_cache_runs_every_time(workspace, events, sessions):
    spec = single(workspace, "c.onnx", constant_model(2.0, 2))
    for _ in range(2):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
    assert len(sessions) == 2


def with_negative_first_observable(events, index):
    values = np.abs(events.values[:20])
    values[index, 0] = -1.0
    values[index + 3, 0] = -2.0
    return EventSet(values, None, OBSERVABLES, "data/ref.npz")


@pytest.mark.parametrize(
    ("kind", "output", "message"),
    [
        ("nan", "ratio", "event 4: ratio output is nan, which must be finite"),
        ("inf", "log_ratio", "event 4: log_ratio output is inf, which must be finite"),
        ("negative", "ratio", "event 4: ratio is -1.0, which must be > 0"),
        ("negative", "probability", "event 4: probability is -1.0, which must lie in (0, 1)"),
    ],
)
def test_bad_values_name_the_first_bad_event(workspace, events, kind, output, message):
    spec = single(workspace, "bad.onnx", broken_model(kind), output)
    with pytest.raises(InvalidONNXModel) as info:
        evaluate_ratio(
            spec,
            with_negative_first_observable(events, 4),
            workspace,
            pointer=POINTER,
            cache=None,
            batch_size=3,
        )
    assert str(info.value) == f"{POINTER}: models/bad.onnx: {message} (2 events affected)"


def test_probability_of_one_is_refused(workspace, events):
    spec = single(workspace, "one.onnx", constant_model(1.0, 2, output="ratio"), "probability")
    with pytest.raises(InvalidONNXModel, match=r"event 0: probability is 1.0, which must lie in"):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)


@pytest.mark.parametrize(
    ("emitted", "message"),
    [
        (800.0, r"event 0: logit is 800.0, which overflows exp\(\)"),
        (-800.0, r"event 0: ratio is 0.0, which must be > 0"),
    ],
)
def test_log_ratio_overflow_and_underflow(workspace, events, emitted, message):
    node = helper.make_node("Expand", ["big", "n"], ["r"])
    shape = helper.make_node("Shape", ["x"], ["n"], start=0, end=1)
    graph = helper.make_graph(
        [shape, node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])],
        [helper.make_tensor_value_info("r", TensorProto.DOUBLE, ["N"])],
        [onnx.numpy_helper.from_array(np.array(emitted), "big")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    spec = single(workspace, "big.onnx", model.SerializeToString(), "logit")
    with pytest.raises(InvalidONNXModel, match=message):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "wrong_width",
            (
                r"input 'x' takes 3 columns but the channel has 2 observables "
                r"\(m4l, cos_theta\)$"
            ),
        ),
        (
            "runtime_width",
            (
                r"onnxruntime refused events 0\.\.6 \(.*MatMul.*\); the model must take "
                r"\[N, 2\] inputs$"
            ),
        ),
        (
            "output_2d",
            (
                r"output has shape \(7, 2\) and type float64 for events 0\.\.6; expected one "
                r"number per event"
            ),
        ),
        ("output_2d_declared", r"output 'r' has shape \['N', 2\]; expected one number per event"),
        ("two_outputs", r"has 2 outputs \(r, r2\); a ratio model has one output"),
        ("fixed_batch", r"input 'x' has a fixed batch size 1; export it with a dynamic first axis"),
        (
            "int_input",
            (
                r"input 'x' has type tensor\(int64\); expected tensor\(float\) or "
                r"tensor\(double\)"
            ),
        ),
        ("not_onnx", r"not a valid ONNX model \(.*\)$"),
    ],
)
def test_contract_breaches(workspace, events, capfd, kind, message):
    spec = single(workspace, "bad.onnx", broken_model(kind))
    with pytest.raises(InvalidONNXModel, match=rf"^{POINTER}: models/bad\.onnx: {message}") as info:
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None, batch_size=7)
    assert "\n" not in str(info.value)
    assert "onnxruntime" not in capfd.readouterr().err  # no log spilled on stderr


def test_ensemble_member_errors_name_the_member(workspace, events):
    good = single(workspace, "good.onnx", constant_model(2.0, 2))
    bad = single(workspace, "bad.onnx", broken_model("wrong_width"))
    spec = {"ensemble": [good, bad], "aggregate": "mean"}
    with pytest.raises(InvalidONNXModel, match=rf"^{POINTER}/ensemble/1: models/bad\.onnx"):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)


@pytest.mark.parametrize(
    ("spec", "where", "message"),
    [
        ({"onnx": {"path": "models/c.onnx"}, "output": "odds"}, "/output", "output must be one of"),
        ({"ensemble": [], "aggregate": "mean"}, "/ensemble", "an ensemble needs a non-empty list"),
        ({"ensemble": [{"ensemble": []}]}, "/ensemble/0", "ensemble members must be single ONNX"),
        (
            {"ensemble": [{"onnx": {"path": "models/c.onnx"}}], "aggregate": "median"},
            "/aggregate",
            "unknown aggregate 'median'",
        ),
    ],
)
def test_malformed_specs(workspace, events, spec, where, message):
    write(workspace, "c.onnx", constant_model(2.0, 2))
    with pytest.raises(InvalidSpecification, match=f"^{POINTER}{where}: {message}"):
        evaluate_ratio(spec, events, workspace, pointer=POINTER, cache=None)
