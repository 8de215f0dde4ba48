"""The exact-ratio ONNX graphs of ratiofactory.testing against scipy.stats."""

from __future__ import annotations

import math
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy import integrate, stats

from ratiofactory import testing
from ratiofactory.testing import (
    BROKEN_KINDS,
    Exponential,
    Normal,
    Uniform,
    broken_model,
    constant_model,
    mixture_pdf,
    ratio_model,
    sample_mixture,
)

NUMERATOR = [
    (2.0, [Normal(1.0, 0.3), Normal(0.0, 0.5)]),
    (1.0, [Exponential(0.8, 0.0, 3.0), Uniform(-1.0, 1.0)]),
]
DENOMINATOR = [
    (0.6, [Exponential(1.5, 0.0, 3.0), Uniform(-1.0, 1.0)]),
    (0.4, [Uniform(0.0, 3.0), Exponential(-2.0, -1.0, 1.0)]),
]


def scipy_component(component):
    """The same 1-D density, written with scipy.stats only."""
    if isinstance(component, Normal):
        return stats.norm(loc=component.mean, scale=component.sigma)
    if isinstance(component, Uniform):
        return stats.uniform(loc=component.lo, scale=component.hi - component.lo)
    slope, lo, hi = component.slope, component.lo, component.hi
    if slope > 0:
        return stats.truncexpon(b=(hi - lo) * slope, loc=lo, scale=1 / slope)
    raise NotImplementedError  # rising exponentials: see scipy_pdf


def scipy_pdf(mixture, x):
    total = sum(w for w, _ in mixture)
    density = np.zeros(len(x))
    for weight, components in mixture:
        term = np.full(len(x), weight / total)
        for d, component in enumerate(components):
            if isinstance(component, Exponential) and component.slope < 0:
                # mirror image of a falling exponential: x -> lo + hi - x
                mirrored = Exponential(-component.slope, component.lo, component.hi)
                term *= scipy_component(mirrored).pdf(component.lo + component.hi - x[:, d])
            else:
                term *= scipy_component(component).pdf(x[:, d])
        density += term
    return density


def run(model_bytes, x):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    dtype = np.float32 if session.get_inputs()[0].type == "tensor(float)" else np.float64
    return session.run(None, {"x": x.astype(dtype)})[0]


@pytest.fixture(scope="module")
def events():
    return sample_mixture(DENOMINATOR, 4000, np.random.default_rng(11))


def test_mixture_pdf_matches_scipy(events):
    for mixture in (NUMERATOR, DENOMINATOR):
        np.testing.assert_allclose(
            mixture_pdf(mixture, events), scipy_pdf(mixture, events), rtol=1e-13
        )


@pytest.mark.parametrize(
    "component",
    [
        Normal(0.3, 2.0),
        Uniform(-2.0, 5.0),
        Exponential(1.3, 0.5, 4.0),
        Exponential(-0.7, -1.0, 2.0),
        Exponential(0.0, 1.0, 3.0),
        Exponential(2.0, 1.0, math.inf),
    ],
)
def test_components_are_normalised(component):
    lo = getattr(component, "lo", -math.inf)
    hi = getattr(component, "hi", math.inf)
    total, _ = integrate.quad(lambda t: np.exp(component.log_pdf(np.array([t])))[0], lo, hi)
    assert total == pytest.approx(1.0, rel=1e-10)


def test_outside_support_density_is_zero():
    x = np.array([[-0.1, 0.0], [3.1, 0.0], [1.0, 1.5]])
    assert mixture_pdf([(1.0, [Exponential(1.5, 0.0, 3.0), Uniform(-1.0, 1.0)])], x).tolist() == [
        0.0,
        0.0,
        0.0,
    ]


@pytest.mark.parametrize(
    "component",
    [
        Exponential(1.5, 0.0, 3.0),
        Exponential(-2.0, -1.0, 1.0),
        Exponential(3.0, 1.0, math.inf),
        Uniform(-1.0, 2.0),
        Normal(1.0, 0.3),
    ],
)
def test_sampling_follows_the_density(component):
    sample = sample_mixture([(1.0, [component])], 20000, np.random.default_rng(3))[:, 0]
    if isinstance(component, Exponential) and component.slope < 0:
        mirrored = Exponential(-component.slope, component.lo, component.hi)
        sample = component.lo + component.hi - sample
        component = mirrored
    if isinstance(component, Exponential) and math.isinf(component.hi):
        cdf = stats.expon(loc=component.lo, scale=1 / component.slope).cdf
    else:
        cdf = scipy_component(component).cdf
    assert stats.kstest(sample, cdf).pvalue > 1e-3


def test_sample_mixture_fractions_and_shape():
    mixture = [
        (3.0, [Uniform(0.0, 1.0), Uniform(0.0, 1.0)]),
        (1.0, [Uniform(10.0, 11.0), Uniform(0.0, 1.0)]),
    ]
    sample = sample_mixture(mixture, 10000, np.random.default_rng(5))
    assert sample.shape == (10000, 2)
    fraction = np.mean(sample[:, 0] > 5)
    assert abs(fraction - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 10000)
    assert np.mean(sample[:5000, 0] > 5) > 0.2  # shuffled, not in blocks


@pytest.mark.parametrize("output", ["ratio", "log_ratio", "probability", "logit"])
def test_ratio_model_is_exact_in_float64(events, output):
    model_bytes = ratio_model(NUMERATOR, DENOMINATOR, output=output)
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    emitted = run(model_bytes, events)
    assert emitted.shape == (len(events),)
    assert emitted.dtype == np.float64
    ratio = scipy_pdf(NUMERATOR, events) / scipy_pdf(DENOMINATOR, events)
    expected = {
        "ratio": ratio,
        "log_ratio": np.log(ratio),
        "logit": np.log(ratio),
        "probability": ratio / (1 + ratio),
    }[output]
    np.testing.assert_allclose(emitted, expected, rtol=1e-12)


def test_ratio_model_float32(events, tmp_path):
    model_bytes = ratio_model(NUMERATOR, DENOMINATOR, dtype="float32", path=tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == model_bytes
    emitted = run(model_bytes, events)
    assert emitted.dtype == np.float32
    ratio = scipy_pdf(NUMERATOR, events) / scipy_pdf(DENOMINATOR, events)
    np.testing.assert_allclose(emitted, ratio, rtol=2e-5)


def test_ratio_zero_outside_numerator_support():
    numerator = [(1.0, [Uniform(0.0, 1.0)])]
    denominator = [(1.0, [Uniform(0.0, 4.0)])]
    x = np.array([[0.5], [2.0]])
    assert run(ratio_model(numerator, denominator), x).tolist() == [4.0, 0.0]
    assert run(ratio_model(numerator, denominator, output="probability"), x).tolist() == [0.8, 0]


@pytest.mark.parametrize(
    ("output", "emitted"),
    [
        ("ratio", 2.5),
        ("log_ratio", math.log(2.5)),
        ("logit", math.log(2.5)),
        ("probability", 2.5 / 3.5),
    ],
)
def test_constant_model(output, emitted):
    values = run(constant_model(2.5, 3, output=output), np.zeros((5, 3)))
    assert values.tolist() == [emitted] * 5


def test_broken_models_break_as_described():
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert run(broken_model("nan"), x)[1] != run(broken_model("nan"), x)[1]
    assert run(broken_model("inf"), x).tolist() == [0.5, math.inf]
    assert run(broken_model("negative"), x).tolist() == [0.5, -1.0]
    assert run(broken_model("output_2d"), x).shape == (2, 2)
    shapes = {
        kind: ort.InferenceSession(broken_model(kind), providers=["CPUExecutionProvider"])
        for kind in ("wrong_width", "fixed_batch", "int_input", "two_outputs")
    }
    assert shapes["wrong_width"].get_inputs()[0].shape == ["N", 3]
    assert shapes["fixed_batch"].get_inputs()[0].shape == [1, 2]
    assert shapes["int_input"].get_inputs()[0].type == "tensor(int64)"
    assert len(shapes["two_outputs"].get_outputs()) == 2
    with pytest.raises(Exception, match="MatMul"):
        run(broken_model("runtime_width"), x)
    assert broken_model("not_onnx").startswith(b"this is not")
    assert set(BROKEN_KINDS) >= {"nan", "inf", "negative", "wrong_width", "output_2d"}


def test_invalid_inputs():
    with pytest.raises(ValueError, match="unknown broken model"):
        broken_model("fine")
    with pytest.raises(ValueError, match="positive weights"):
        ratio_model([(0.0, [Uniform(0, 1)])], [(1.0, [Uniform(0, 1)])])
    with pytest.raises(ValueError, match="same number"):
        mixture_pdf(
            [(1.0, [Uniform(0, 1)]), (1.0, [Uniform(0, 1), Uniform(0, 1)])], np.zeros((1, 2))
        )
    with pytest.raises(ValueError, match="numerator has 1 observables, denominator 2"):
        ratio_model([(1.0, [Uniform(0, 1)])], [(1.0, [Uniform(0, 1), Uniform(0, 1)])])
    with pytest.raises(ValueError, match="finite lo < hi"):
        Uniform(1.0, 0.0)
    with pytest.raises(ValueError, match="hi = inf only for slope > 0"):
        Exponential(-1.0, 0.0, math.inf)
    with pytest.raises(ValueError, match="unknown output kind"):
        ratio_model(NUMERATOR, DENOMINATOR, output="odds")
    with pytest.raises(ValueError, match="dtype must be"):
        constant_model(1.0, 2, dtype="float16")


def test_missing_onnx_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"needs the onnx package: pip install onnx"):
        testing.constant_model(1.0, 2)
