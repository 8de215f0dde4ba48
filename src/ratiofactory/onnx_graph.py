"""ONNX graphs as array functions: a small interpreter for ratio networks on numpy or jax.

Ratio models whose inputs include model parameters, r(x | θ), cannot be evaluated once:
the likelihood calls them at every θ. On jax they must be traceable (jit, exact gradients
in θ), so :class:`GraphFunction` runs the ONNX graph node by node with ``jax.numpy`` (or
``numpy``) operations. It covers the operators that density-ratio networks and
:mod:`ratiofactory.testing`'s exact graphs use (:data:`SUPPORTED_OPS`); a graph with any
other operator is refused at load, naming the operator. :meth:`GraphFunction.check`
compares the translation with onnxruntime on given inputs; the model builder does that
before a translated graph is used.

Integer and shape computations (``Shape``, constant indices) stay concrete numpy arrays,
so shapes are static under ``jax.jit``. Reading the graph needs the ``onnx`` package
(``pip install "ratiofactory[parameterised]"``).

>>> import numpy as np
>>> from ratiofactory.testing import Normal, ratio_model
>>> graph = GraphFunction(ratio_model([(1.0, [Normal(0.0, 1.0)])], [(1.0, [Normal(0.0, 2.0)])],
...                                   output="ratio"))
>>> x = np.array([[0.0], [1.0]])
>>> np.round(graph(np, x)[0], 6).tolist()   # N(x; 0, 1) / N(x; 0, 2)
[2.0, 1.374579]
>>> graph.check(x)                          # equal to onnxruntime to 1e-6
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidONNXModel

__all__ = ["CHECK_RTOL", "SUPPORTED_OPS", "GraphFunction"]

#: relative (and, near zero, absolute) tolerance of :meth:`GraphFunction.check`
CHECK_RTOL = 1e-6


def _sigmoid(xp: Any, x: Any) -> Any:
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


def _gemm(xp: Any, a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: float = 1.0,
          transA: int = 0, transB: int = 0) -> Any:
    a = a.T if transA else a
    b = b.T if transB else b
    out = alpha * (a @ b)
    return out if c is None else out + beta * c


def _axes(attrs: dict[str, Any], given: Any) -> tuple[int, ...] | None:
    axes = attrs.get("axes") if given is None else np.asarray(given).tolist()
    return None if axes is None else tuple(int(a) for a in np.atleast_1d(axes))


def _reduce(name: str) -> Callable[..., Any]:
    def run(xp: Any, x: Any, axes: Any = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0,
            **attrs: Any) -> Any:
        chosen = _axes(attrs, axes)
        if chosen == () and noop_with_empty_axes:
            return x
        return getattr(xp, name)(x, axis=chosen, keepdims=bool(keepdims))
    return run


def _unsqueeze(xp: Any, x: Any, axes: Any = None, **attrs: Any) -> Any:
    chosen = _axes(attrs, axes) or ()
    rank = np.ndim(x) + len(chosen)
    for axis in sorted(a % rank for a in chosen):
        x = xp.expand_dims(x, axis)
    return x


def _squeeze(xp: Any, x: Any, axes: Any = None, **attrs: Any) -> Any:
    chosen = _axes(attrs, axes)
    return xp.squeeze(x) if chosen is None else xp.squeeze(x, axis=chosen)


def _shape(xp: Any, x: Any, *, start: int = 0, end: int | None = None) -> np.ndarray:
    return np.asarray(np.shape(x)[start:end], dtype=np.int64)


def _expand(xp: Any, x: Any, shape: Any) -> Any:
    target = np.broadcast_shapes(np.shape(x), tuple(int(s) for s in np.asarray(shape)))
    return xp.broadcast_to(x, target)


def _reshape(xp: Any, x: Any, shape: Any, *, allowzero: int = 0) -> Any:
    dims = [int(s) for s in np.asarray(shape)]
    dims = [np.shape(x)[i] if d == 0 and not allowzero else d for i, d in enumerate(dims)]
    return xp.reshape(x, dims)


def _flatten(xp: Any, x: Any, *, axis: int = 1) -> Any:
    return xp.reshape(x, (int(np.prod(np.shape(x)[:axis])), -1))


def _gather(xp: Any, x: Any, indices: Any, *, axis: int = 0) -> Any:
    return xp.take(x, np.asarray(indices), axis=axis)


def _clip(xp: Any, x: Any, lo: Any = None, hi: Any = None, **attrs: Any) -> Any:
    lo = attrs.get("min") if lo is None else lo
    hi = attrs.get("max") if hi is None else hi
    return xp.clip(x, lo, hi)


def _cast(xp: Any, x: Any, *, to: int, **_: Any) -> Any:
    from onnx import helper

    return xp.asarray(x).astype(helper.tensor_dtype_to_np_dtype(to))


def _slice(xp: Any, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    starts, ends = np.asarray(starts), np.asarray(ends)
    index = [slice(None)] * np.ndim(x)
    axes = np.arange(starts.size) if axes is None else np.asarray(axes)
    steps = np.ones(starts.size, dtype=np.int64) if steps is None else np.asarray(steps)
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _fold(function: Callable[[Any, Any], Any], arrays: tuple[Any, ...]) -> Any:
    out = arrays[0]
    for a in arrays[1:]:
        out = function(out, a)
    return out


def _logsumexp(xp: Any, a: Any, axis: int) -> Any:
    peak = xp.max(a, axis=axis, keepdims=True)
    return peak + xp.log(xp.sum(xp.exp(a - peak), axis=axis, keepdims=True))


_OPS: dict[str, Callable[..., Any]] = {
    # element-wise arithmetic and activations
    "Add": lambda xp, a, b: a + b, "Sub": lambda xp, a, b: a - b, "Mul": lambda xp, a, b: a * b,
    "Div": lambda xp, a, b: a / b, "Pow": lambda xp, a, b: a ** b, "Neg": lambda xp, a: -a,
    "Abs": lambda xp, a: xp.abs(a), "Exp": lambda xp, a: xp.exp(a), "Log": lambda xp, a: xp.log(a),
    "Sqrt": lambda xp, a: xp.sqrt(a), "Reciprocal": lambda xp, a: 1.0 / a,
    "Tanh": lambda xp, a: xp.tanh(a), "Sigmoid": _sigmoid,
    "Softplus": lambda xp, a: xp.logaddexp(a, 0.0), "Relu": lambda xp, a: xp.maximum(a, 0.0),
    "LeakyRelu": lambda xp, a, alpha=0.01: xp.where(a >= 0, a, alpha * a),
    "Elu": lambda xp, a, alpha=1.0: xp.where(a > 0, a, alpha * xp.expm1(xp.minimum(a, 0.0))),
    "Max": lambda xp, *a: _fold(xp.maximum, a), "Min": lambda xp, *a: _fold(xp.minimum, a),
    "Sum": lambda xp, *a: _fold(lambda u, v: u + v, a), "Clip": _clip,
    # comparisons and selection
    "Where": lambda xp, c, a, b: xp.where(c, a, b), "IsInf": lambda xp, a, **_: xp.isinf(a),
    "IsNaN": lambda xp, a: xp.isnan(a), "Less": lambda xp, a, b: a < b,
    "LessOrEqual": lambda xp, a, b: a <= b, "Greater": lambda xp, a, b: a > b,
    "GreaterOrEqual": lambda xp, a, b: a >= b, "Equal": lambda xp, a, b: a == b,
    "And": lambda xp, a, b: xp.logical_and(a, b), "Or": lambda xp, a, b: xp.logical_or(a, b),
    "Not": lambda xp, a: xp.logical_not(a),
    # linear algebra, reductions, shapes
    "Gemm": _gemm, "MatMul": lambda xp, a, b: a @ b,
    "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"), "ReduceMin": _reduce("min"),
    "ReduceMean": _reduce("mean"),
    "Softmax": lambda xp, a, axis=-1: xp.exp(a - _logsumexp(xp, a, axis)),
    "LogSoftmax": lambda xp, a, axis=-1: a - _logsumexp(xp, a, axis),
    "Concat": lambda xp, *a, axis: xp.concatenate(a, axis=axis), "Gather": _gather,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Shape": _shape, "Expand": _expand,
    "Reshape": _reshape, "Flatten": _flatten, "Slice": _slice, "Cast": _cast,
    "Transpose": lambda xp, a, perm=None: xp.transpose(a, perm), "Identity": lambda xp, a: a,
}

SUPPORTED_OPS = frozenset({*_OPS, "Constant"})
"""The ONNX operators (default domain) :class:`GraphFunction` evaluates."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover (the extra installs it)
        raise InvalidONNXModel("ratio models with parameter inputs need the onnx package:"
                               " pip install 'ratiofactory[parameterised]'") from None
    return onnx


def _concrete(value: Any) -> bool:
    return isinstance(value, np.ndarray | np.generic | int | float)


class GraphFunction:
    """An ONNX model (bytes) as a function ``f(xp, *inputs) -> list of outputs``.

    ``xp`` is ``numpy`` or ``jax.numpy``; inputs follow the graph's input order
    (:attr:`input_names`). Raises :class:`~ratiofactory.errors.InvalidONNXModel` for
    operators outside :data:`SUPPORTED_OPS`, other domains or subgraphs.
    """

    def __init__(self, content: bytes, *, source: str = "ONNX model") -> None:
        onnx = _onnx()
        try:
            model = onnx.load_model_from_string(content)
        except Exception as err:  # noqa: BLE001 (protobuf raises its own DecodeError)
            raise InvalidONNXModel(f"{source}: not an ONNX model ({type(err).__name__})") from None
        self.content, self.source, graph = content, source, model.graph
        self._constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in self._constants]
        self.output_names = [o.name for o in graph.output]
        self._nodes = [self._node(onnx, node) for node in graph.node]

    def _node(self, onnx: Any, node: Any) -> tuple[str, list[str], list[str], dict[str, Any]]:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
            raise InvalidONNXModel(
                f"{self.source}: operator {op} (node {node.name!r}) is not supported in ratio"
                f" models with parameter inputs; supported: {', '.join(sorted(SUPPORTED_OPS))}")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            if set(attrs) != {"value"}:
                raise InvalidONNXModel(f"{self.source}: Constant node {node.name!r} needs a 'value' tensor")
            attrs = {"value": onnx.numpy_helper.to_array(attrs["value"])}
        return node.op_type, list(node.input), list(node.output), attrs

    def __call__(self, xp: Any, *inputs: Any) -> list[Any]:
        if len(inputs) != len(self.input_names):
            raise InvalidONNXModel(f"{self.source}: {len(self.input_names)} input(s) expected,"
                                   f" got {len(inputs)}")
        values: dict[str, Any] = {"": None, **self._constants}
        values.update(zip(self.input_names, inputs, strict=True))
        for op_type, names, outputs, attrs in self._nodes:
            if op_type == "Constant":
                values[outputs[0]] = attrs["value"]
                continue
            args = [values[n] for n in names]
            while args and args[-1] is None:  # trailing optional inputs left out
                args.pop()
            backend = np if all(_concrete(a) for a in args if a is not None) else xp
            values[outputs[0]] = _OPS[op_type](backend, *args, **attrs)
        return [values[name] for name in self.output_names]

    def check(self, *inputs: np.ndarray, rtol: float = CHECK_RTOL) -> None:
        """Raise :class:`~ratiofactory.errors.InvalidONNXModel` unless the translation equals
        onnxruntime on ``inputs`` (relative ``rtol``; absolute ``rtol`` near zero)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(self.content, sess_options=options, providers=["CPUExecutionProvider"])
        expected = session.run(None, dict(zip(self.input_names, inputs, strict=True)))
        for name, want, have in zip(self.output_names, expected, self(np, *inputs), strict=True):
            want, have = np.asarray(want, dtype=float), np.asarray(have, dtype=float)
            if want.shape != have.shape:
                raise InvalidONNXModel(f"{self.source}: the translated output {name!r} has shape"
                                       f" {have.shape}, onnxruntime gives {want.shape}")
            same = np.isclose(have, want, rtol=rtol, atol=rtol) | (have == want)
            if not same.all():
                first = int(np.flatnonzero(~same.reshape(-1))[0])
                raise InvalidONNXModel(
                    f"{self.source}: the translated output {name!r} differs from onnxruntime at"
                    f" entry {first} ({have.reshape(-1)[first]:.8g} vs {want.reshape(-1)[first]:.8g})")
