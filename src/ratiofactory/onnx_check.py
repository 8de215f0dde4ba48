"""Limits on untrusted ONNX ratio models: an operator allow-list and an evaluation time limit.

A published ONNX file is a program. Before onnxruntime sees it (its optimiser may fold
constants at load time), :func:`check_operators` reads the operators of the graph, of
every subgraph and of every model-local function from the protobuf wire format (no
``onnx`` package needed) and refuses any outside :data:`ALLOWED_OPERATORS`: what
classifiers, regressors and boosted trees need (dense layers, activations, normalisation,
shape bookkeeping, comparisons, tree ensembles). Refused are control flow (``Loop``,
``Scan``, ``If``: a ``Loop`` of 10¹² iterations would hang a fit), random generators
(ratios must be deterministic), sequences, maps, strings and custom domains.
``$RATIOFACTORY_ONNX_EXTRA_OPS`` (comma-separated ``Op`` or ``domain:Op``) allows more.

Every onnxruntime call is also bounded in time (:func:`run_seconds`,
``$RATIOFACTORY_ONNX_SECONDS``, default 300 s per batch of events): after it the run is
cancelled through ``RunOptions.terminate``.

>>> from ratiofactory.testing import Normal, ratio_model
>>> content = ratio_model([(1.0, [Normal(0, 1)])], [(1.0, [Normal(0, 2)])])
>>> sorted({op for _, op in graph_operators(content)})[:4]
['Add', 'Div', 'Exp', 'Gather']
>>> check_operators(content) is None
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ratiofactory.errors import InvalidFile

__all__ = [
    "ALLOWED_OPERATORS",
    "DEFAULT_RUN_SECONDS",
    "check_operators",
    "graph_operators",
    "run_seconds",
]

EXTRA_OPS_ENV = "RATIOFACTORY_ONNX_EXTRA_OPS"
SECONDS_ENV = "RATIOFACTORY_ONNX_SECONDS"
DEFAULT_RUN_SECONDS = 300.0
"""Longest one onnxruntime call (one batch of events) may run, in seconds."""

_STANDARD = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
BitShift Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp
Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalMaxPool Greater GreaterOrEqual GroupNormalization HardSigmoid HardSwish Hardmax
Identity InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual
Log LogSoftmax LpNormalization MatMul MatMulInteger Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg Not OneHot Or PRelu Pad Pow QLinearMatMul QuantizeLinear Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Round Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Where Xor
"""
_ML = """
Binarizer LinearClassifier LinearRegressor Normalizer OneHotEncoder Scaler SVMClassifier
SVMRegressor TreeEnsemble TreeEnsembleClassifier TreeEnsembleRegressor
"""
_MICROSOFT = "BiasGelu FastGelu FusedMatMul Gelu QuickGelu SkipLayerNormalization"

ALLOWED_OPERATORS: frozenset[tuple[str, str]] = frozenset(
    [("", op) for op in _STANDARD.split()]
    + [("ai.onnx.ml", op) for op in _ML.split()]
    + [("com.microsoft", op) for op in _MICROSOFT.split()]
)
"""(domain, operator) pairs a ratio model may use; domain ``""`` is the standard ai.onnx."""


def _extra_operators() -> frozenset[tuple[str, str]]:
    text = os.environ.get(EXTRA_OPS_ENV, "")
    extra = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        domain, _, op = item.rpartition(":")
        extra.add(("" if domain == "ai.onnx" else domain, op))
    return frozenset(extra)


def run_seconds() -> float:
    """The time limit of one onnxruntime call: ``$RATIOFACTORY_ONNX_SECONDS`` or 300 s."""
    text = os.environ.get(SECONDS_ENV)
    if text is None:
        return DEFAULT_RUN_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise InvalidFile(f"${SECONDS_ENV}={text!r} is not a positive number of seconds")
    return seconds


def check_operators(content: bytes) -> str | None:
    """The first refused operator of an ONNX model as a message, or None when all are allowed.

    Raises ``ValueError`` when ``content`` is not a protobuf message.
    """
    allowed = ALLOWED_OPERATORS | _extra_operators()
    for domain, op in graph_operators(content):
        key = ("" if domain == "ai.onnx" else domain, op)
        if key not in allowed:
            shown = f"{domain}:{op}" if domain else op
            reason = _REASONS.get(op, "it is not on the allow-list of operators ratio models need")
            return (
                f"uses the operator {shown}, which is refused: {reason} (allow it with "
                f"${EXTRA_OPS_ENV}={shown} if you trust this model)"
            )
    return None


_REASONS = dict.fromkeys(("Loop", "Scan", "If"), "control flow can run for an unbounded time") | dict.fromkeys(("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"), "ratios must be deterministic")


# -- protobuf wire format: just enough of onnx.proto to find every node ---------------

_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE = 1
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS = 6, 11
_FUNCTION_NODE = 7


def graph_operators(content: bytes) -> Iterator[tuple[str, str]]:
    """(domain, op_type) of every node: main graph, subgraphs, model-local functions."""
    data = memoryview(content)
    graphs: list[memoryview] = []
    nodes: list[memoryview] = []
    for field, value in _fields(data):
        if field == _MODEL_GRAPH:
            graphs.append(value)
        elif field == _MODEL_FUNCTIONS:
            nodes.extend(v for f, v in _fields(value) if f == _FUNCTION_NODE)
    while graphs or nodes:
        if graphs:
            nodes.extend(v for f, v in _fields(graphs.pop()) if f == _GRAPH_NODE)
            continue
        domain, op = "", ""
        for field, value in _fields(nodes.pop()):
            if field == _NODE_OP_TYPE:
                op = bytes(value).decode("utf-8", "replace")
            elif field == _NODE_DOMAIN:
                domain = bytes(value).decode("utf-8", "replace")
            elif field == _NODE_ATTRIBUTE:
                graphs.extend(v for f, v in _fields(value) if f in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS))
        yield domain, op


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(field number, payload) of the length-delimited fields of a message; other wire
    types are skipped. Raises ValueError on a malformed message."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _varint(data, position)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError("truncated protobuf field")
            yield field, data[position : position + length]
            position += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if position > end:
            raise ValueError("truncated protobuf field")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("malformed protobuf varint")
        byte = data[position]
        result |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return result, position
        shift += 7
