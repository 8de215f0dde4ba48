"""ONNX graphs that compute exact analytic density ratios, for tests, validation, benchmarks.

A density is a mixture ``[(weight, components), ...]``: each term is a product of one
1-D density per observable (:class:`Normal`, :class:`Exponential`, :class:`Uniform`);
the mixture weights are normalised. :func:`ratio_model` builds an ONNX model (input
``"x"`` [N, D], output ``"r"`` [N]) for numerator(x)/denominator(x), emitted as any of the
output kinds; :func:`mixture_pdf` and :func:`sample_mixture` are the numpy counterparts.
Needs the ``onnx`` package (``pip install onnx``).

>>> signal = [(1.0, [Normal(0.5, 0.1), Uniform(-1.0, 1.0)])]
>>> background = [(0.7, [Exponential(2.0, 0.0, 2.0), Uniform(-1.0, 1.0)]),
...               (0.3, [Uniform(0.0, 2.0), Uniform(-1.0, 1.0)])]
>>> x = np.array([[0.5, 0.0], [0.9, 0.3]])
>>> model_bytes = ratio_model(signal, background, output="log_ratio")
>>> import onnxruntime
>>> session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
>>> ratio = np.exp(session.run(None, {"x": x})[0])
>>> ratio.round(4).tolist()
[5.9134, 0.0035]
>>> bool(np.allclose(ratio, mixture_pdf(signal, x) / mixture_pdf(background, x), rtol=1e-12))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BROKEN_KINDS",
    "Exponential",
    "Normal",
    "Uniform",
    "broken_model",
    "constant_model",
    "mixture_pdf",
    "ratio_model",
    "sample_mixture",
    "shifted_normal_ratio_model",
]

OPSET = 17
IR_VERSION = 8
BROKEN_KINDS = {
    "nan": "NaN where the first observable is negative, 0.5 elsewhere",
    "inf": "+inf where the first observable is negative, 0.5 elsewhere",
    "negative": "-1 where the first observable is negative, 0.5 elsewhere",
    "wrong_width": "declares one input column more than the observables",
    "runtime_width": "dynamic input width, but fails at run time unless it gets D+1 columns",
    "output_2d": "dynamic input width, returns its [N, D] input (caught after running)",
    "output_2d_declared": "declares an [N, 2] output (caught before running)",
    "two_outputs": "two outputs",
    "fixed_batch": "input with a fixed batch size of 1",
    "int_input": "int64 input",
    "not_onnx": "bytes that are not an ONNX model",
}
"""The contract breaches :func:`broken_model` can build, with what each does."""


@dataclass(frozen=True)
class Normal:
    """Gaussian density with ``mean`` and standard deviation ``sigma``."""

    mean: float
    sigma: float

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.sigma
        return -0.5 * z * z - math.log(self.sigma * math.sqrt(2 * math.pi))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.mean, self.sigma, n)

    def _graph(self, g: _Graph, x: str) -> str:
        z = g.op("Div", g.op("Sub", x, g.const(self.mean)), g.const(self.sigma))
        square = g.op("Mul", g.op("Mul", z, z), g.const(-0.5))
        return g.op("Sub", square, g.const(math.log(self.sigma * math.sqrt(2 * math.pi))))


@dataclass(frozen=True)
class Exponential:
    """Density ∝ exp(−slope·x) truncated to [lo, hi] (hi may be ``inf`` for slope > 0)."""

    slope: float
    lo: float
    hi: float

    def __post_init__(self) -> None:
        finite = math.isfinite(self.lo) and (math.isfinite(self.hi) or self.slope > 0)
        if not (finite and self.lo < self.hi):
            raise ValueError(
                f"Exponential needs finite lo < hi (hi = inf only for slope > 0), got {self}"
            )

    def _log_norm(self) -> float:
        """ln of the constant c in p(x) = c·exp(−slope·x) on [lo, hi]."""
        slope, width = self.slope, self.hi - self.lo
        if slope == 0:
            return -math.log(width)
        if slope > 0:
            return math.log(slope) + slope * self.lo - math.log(-math.expm1(-slope * width))
        rise = -slope
        return math.log(rise) - rise * self.hi - math.log(-math.expm1(-rise * width))

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        inside = (x >= self.lo) & (x <= self.hi)
        return np.where(inside, self._log_norm() - self.slope * x, -np.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u, width = rng.random(n), self.hi - self.lo
        if self.slope == 0:
            return self.lo + width * u
        if self.slope > 0:
            return self.lo - np.log1p(u * math.expm1(-self.slope * width)) / self.slope
        return self.hi + np.log1p(u * math.expm1(self.slope * width)) / -self.slope

    def _graph(self, g: _Graph, x: str) -> str:
        value = g.op("Sub", g.const(self._log_norm()), g.op("Mul", x, g.const(self.slope)))
        return g.op("Where", g.inside(x, self.lo, self.hi), value, g.const(-np.inf))


@dataclass(frozen=True)
class Uniform:
    """Flat density on [lo, hi]."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"Uniform needs finite lo < hi, got {self}")

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        inside = (x >= self.lo) & (x <= self.hi)
        return np.where(inside, -math.log(self.hi - self.lo), -np.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.lo, self.hi, n)

    def _graph(self, g: _Graph, x: str) -> str:
        inside = g.inside(x, self.lo, self.hi)
        return g.op("Where", inside, g.const(-math.log(self.hi - self.lo)), g.const(-np.inf))


Component = Normal | Exponential | Uniform
Mixture = Sequence[tuple[float, Sequence[Component]]]


def mixture_pdf(mixture: Mixture, x: np.ndarray) -> np.ndarray:
    """Density of the mixture at the rows of ``x`` (n, D), in numpy (float64)."""
    weights, terms = _normalised(mixture)
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros(x.shape[0])
    for weight, components in zip(weights, terms, strict=True):
        log_term = sum(c.log_pdf(x[:, d]) for d, c in enumerate(components))
        total += weight * np.exp(log_term)
    return total


def sample_mixture(mixture: Mixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` events (n, D) from the mixture, in random order."""
    weights, terms = _normalised(mixture)
    counts = rng.multinomial(n, weights)
    blocks = [
        np.column_stack([c.sample(k, rng) for c in components])
        for k, components in zip(counts, terms, strict=True)
    ]
    return rng.permutation(np.concatenate(blocks))


def ratio_model(
    numerator: Mixture,
    denominator: Mixture,
    output: str = "ratio",
    dtype: str = "float64",
    path: Path | str | None = None,
) -> bytes:
    """ONNX model computing numerator(x)/denominator(x) as ``output`` (ratio, log_ratio,
    probability = r/(1+r), logit = ln r); written to ``path`` if given."""
    weights_num, terms_num = _normalised(numerator)
    weights_den, terms_den = _normalised(denominator)
    n_obs = len(terms_num[0])
    if len(terms_den[0]) != n_obs:
        raise ValueError(f"numerator has {n_obs} observables, denominator {len(terms_den[0])}")
    g = _Graph(dtype)
    columns = [g.op("Gather", "x", g.const(d, np.int64), axis=1) for d in range(n_obs)]
    log_ratio = g.op(
        "Sub",
        g.log_mixture(weights_num, terms_num, columns),
        g.log_mixture(weights_den, terms_den, columns),
    )
    g.emit(log_ratio, output, "r")
    return g.finish(n_obs, path)


def shifted_normal_ratio_model(
    sigma: float,
    denominator: Mixture,
    output: str = "ratio",
    dtype: str = "float64",
    path: Path | str | None = None,
) -> bytes:
    """Parameterised ONNX model r(x | m) = N(x; m, ``sigma``) / denominator(x) for one
    observable: input ``"x"`` [N, 2] holds the observable, then the mean m (a model
    parameter the likelihood appends as a column); written to ``path`` if given.

    >>> import onnxruntime
    >>> content = shifted_normal_ratio_model(0.5, [(1.0, [Uniform(0.0, 4.0)])])
    >>> session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    >>> x = np.array([[1.0, 1.0], [1.0, 1.5]])                # x = 1 at means 1 and 1.5
    >>> r = session.run(None, {"x": x})[0]
    >>> bool(np.allclose(r, 4 * np.exp(-0.5 * ((1.0 - x[:, 1]) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))))
    True
    """
    weights_den, terms_den = _normalised(denominator)
    if len(terms_den[0]) != 1:
        raise ValueError("shifted_normal_ratio_model has one observable")
    g = _Graph(dtype)
    x, mean = (g.op("Gather", "x", g.const(d, np.int64), axis=1) for d in (0, 1))
    z = g.op("Div", g.op("Sub", x, mean), g.const(sigma))
    log_num = g.op("Sub", g.op("Mul", g.op("Mul", z, z), g.const(-0.5)),
                   g.const(math.log(sigma * math.sqrt(2 * math.pi))))
    g.emit(g.op("Sub", log_num, g.log_mixture(weights_den, terms_den, [x])), output, "r")
    return g.finish(2, path)


def constant_model(
    value: float,
    n_observables: int,
    output: str = "ratio",
    dtype: str = "float64",
    path: Path | str | None = None,
) -> bytes:
    """ONNX model whose ratio is ``value`` for every event, emitted as ``output``."""
    if not value > 0:
        raise ValueError(f"a constant ratio must be > 0, got {value}")
    emitted = {
        "ratio": value,
        "log_ratio": math.log(value),
        "logit": math.log(value),
        "probability": value / (1.0 + value),
    }
    if output not in emitted:
        raise ValueError(f"unknown output kind {output!r}")
    g = _Graph(dtype)
    g.outputs.append(("r", g.op("Expand", g.const(emitted[output]), g.batch_shape()), ["N"]))
    return g.finish(n_observables, path)


def broken_model(kind: str, n_observables: int = 2, dtype: str = "float64") -> bytes:
    """A model breaking the ratio-model contract in the way :data:`BROKEN_KINDS` describes."""
    if kind not in BROKEN_KINDS:
        raise ValueError(f"unknown broken model {kind!r}; choose from {', '.join(BROKEN_KINDS)}")
    if kind == "not_onnx":
        return b"this is not an ONNX model\n"
    g = _Graph(dtype)
    width: Any = n_observables
    if kind in ("nan", "inf", "negative"):
        bad = {"nan": np.nan, "inf": np.inf, "negative": -1.0}[kind]
        first = g.op("Gather", "x", g.const(0, np.int64), axis=1)
        g.outputs.append(
            (
                "r",
                g.op("Where", g.op("Less", first, g.const(0.0)), g.const(bad), g.const(0.5)),
                ["N"],
            )
        )
    elif kind in ("wrong_width", "fixed_batch", "int_input", "two_outputs"):
        width = n_observables + (kind == "wrong_width")
        half = g.op("Expand", g.const(0.5), g.batch_shape())
        g.outputs.append(("r", half, ["N"]))
        if kind == "two_outputs":
            g.outputs.append(("r2", g.op("Identity", half), ["N"]))
    elif kind == "runtime_width":
        width = "D"
        weights = g.const(np.full((n_observables + 1, 1), 0.5))
        g.outputs.append(("r", g.op("MatMul", "x", weights), ["N", 1]))
    elif kind == "output_2d":
        width = "D"
        g.outputs.append(("r", g.op("Identity", "x"), ["N", "D"]))
    else:
        half = g.op(
            "Expand",
            g.const(np.full((1, 2), 0.5)),
            g.op("Concat", g.batch_shape(), g.const([2], np.int64), axis=0),
        )
        g.outputs.append(("r", half, ["N", 2]))
    batch = 1 if kind == "fixed_batch" else "N"
    return g.finish(width, None, batch=batch, input_int=kind == "int_input")


def _normalised(mixture: Mixture) -> tuple[list[float], list[tuple[Component, ...]]]:
    terms = [(float(w), tuple(components)) for w, components in mixture]
    if not terms or any(not w > 0 for w, _ in terms):
        raise ValueError("a mixture needs at least one term, with positive weights")
    if len({len(c) for _, c in terms}) != 1 or not terms[0][1]:
        raise ValueError("every mixture term needs the same number (>= 1) of components")
    total = sum(w for w, _ in terms)
    return [w / total for w, _ in terms], [c for _, c in terms]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ratiofactory.testing builds ONNX graphs and needs the onnx "
            "package: pip install onnx (or ratiofactory[test])"
        ) from None
    return onnx


class _Graph:
    """A tiny ONNX graph builder: named nodes, constants as initializers."""

    def __init__(self, dtype: str) -> None:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.onnx = _onnx()
        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.outputs: list[tuple[str, str, list[Any]]] = []

    def _name(self, stem: str) -> str:
        return f"{stem}_{len(self.nodes) + len(self.initializers)}"

    def const(self, value: Any, dtype: Any = None) -> str:
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self._name("c")
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        name = self._name(op_type.lower())
        self.nodes.append(
            self.onnx.helper.make_node(op_type, list(inputs), [name], name=name, **attributes)
        )
        return name

    def batch_shape(self) -> str:
        return self.op("Shape", "x", start=0, end=1)

    def inside(self, x: str, lo: float, hi: float) -> str:
        return self.op(
            "And",
            self.op("GreaterOrEqual", x, self.const(lo)),
            self.op("LessOrEqual", x, self.const(hi)),
        )

    def log_mixture(
        self, weights: list[float], terms: list[tuple[Component, ...]], columns: list[str]
    ) -> str:
        logs = []
        for weight, components in zip(weights, terms, strict=True):
            log_term = self.const(math.log(weight))
            for column, component in zip(columns, components, strict=True):
                log_term = self.op("Add", log_term, component._graph(self, column))
            logs.append(log_term)
        if len(logs) == 1:
            return logs[0]
        axis = self.const([1], np.int64)
        stacked = self.op("Concat", *[self.op("Unsqueeze", t, axis) for t in logs], axis=1)
        peak = self.op("ReduceMax", stacked, axes=[1], keepdims=1)
        peak = self.op("Where", self.op("IsInf", peak), self.const(0.0), peak)
        total = self.op(
            "ReduceSum", self.op("Exp", self.op("Sub", stacked, peak)), axis, keepdims=0
        )
        return self.op("Add", self.op("Log", total), self.op("Squeeze", peak, axis))

    def emit(self, log_ratio: str, output: str, name: str) -> None:
        if output == "ratio":
            value = self.op("Exp", log_ratio)
        elif output == "probability":
            value = self.op(
                "Reciprocal",
                self.op("Add", self.const(1.0), self.op("Exp", self.op("Neg", log_ratio))),
            )
        elif output in ("log_ratio", "logit"):
            value = self.op("Identity", log_ratio)
        else:
            raise ValueError(f"unknown output kind {output!r}")
        self.outputs.append((name, value, ["N"]))

    def finish(
        self, width: Any, path: Path | str | None, *, batch: Any = "N", input_int: bool = False
    ) -> bytes:
        helper, onnx = self.onnx.helper, self.onnx
        elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        in_elem = onnx.TensorProto.INT64 if input_int else elem
        inputs = [helper.make_tensor_value_info("x", in_elem, [batch, width])]
        nodes = list(self.nodes)
        outputs = []
        for name, value, shape in self.outputs:
            nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))
            outputs.append(helper.make_tensor_value_info(name, elem, shape))
        graph = helper.make_graph(nodes, "ratiofactory_testing", inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="ratiofactory.testing",
        )
        content = model.SerializeToString()
        if path is not None:
            Path(path).write_bytes(content)
        return content
