"""The ONNX interpreter for parameterised ratio models: equal to onnxruntime on exact
graphs and a small network with every supported activation, on numpy and jax; exact
gradients in the parameter column; unsupported operators refused by name."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratiofactory.errors import InvalidONNXModel
from ratiofactory.onnx_graph import GraphFunction
from ratiofactory.testing import (
    Exponential,
    Normal,
    Uniform,
    broken_model,
    mixture_pdf,
    ratio_model,
    shifted_normal_ratio_model,
)

onnx = pytest.importorskip("onnx")
jax.config.update("jax_enable_x64", True)  # as pyhf.set_backend("jax") does
helper, numpy_helper = onnx.helper, onnx.numpy_helper

SIGNAL = [(1.0, [Normal(0.5, 0.1), Uniform(-1.0, 1.0)])]
BACKGROUND = [(0.7, [Exponential(2.0, 0.0, 2.0), Uniform(-1.0, 1.0)]),
              (0.3, [Uniform(0.0, 2.0), Uniform(-1.0, 1.0)])]
X = np.column_stack([np.linspace(0.01, 1.99, 57), np.linspace(-0.9, 0.9, 57)])


@pytest.mark.parametrize("output", ["ratio", "log_ratio", "probability", "logit"])
@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_exact_graphs_equal_onnxruntime_and_the_densities(output, xp):
    graph = GraphFunction(ratio_model(SIGNAL, BACKGROUND, output=output))
    graph.check(X)
    (raw,) = graph(xp, xp.asarray(X))
    exact = mixture_pdf(SIGNAL, X) / mixture_pdf(BACKGROUND, X)
    ratio = {"ratio": lambda v: v, "log_ratio": np.exp, "probability": lambda v: v / (1 - v),
             "logit": np.exp}[output](np.asarray(raw))
    np.testing.assert_allclose(ratio, exact, rtol=1e-9)


def _network(dtype=np.float64) -> bytes:
    """A 2 -> 8 -> 8 -> 1 network through Gemm, MatMul, Concat and the activations
    (onnxruntime has LeakyRelu, Elu and Softplus in float32 only)."""
    rng = np.random.default_rng(3)
    init = lambda name, *shape: numpy_helper.from_array(rng.normal(0, 0.7, shape).astype(dtype), name)
    acts = [("Relu", {}), ("Tanh", {}), ("Sigmoid", {})]
    if dtype == np.float32:
        acts += [("LeakyRelu", {"alpha": 0.1}), ("Elu", {}), ("Softplus", {})]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1)]
    nodes += [helper.make_node(op, ["h1"], [f"a{k}"], **attrs) for k, (op, attrs) in enumerate(acts)]
    nodes += [
        helper.make_node("Concat", [f"a{k}" for k in range(len(acts))], ["cat"], axis=1),
        helper.make_node("MatMul", ["cat", "w2"], ["h2"]), helper.make_node("Add", ["h2", "b2"], ["h3"]),
        helper.make_node("Softmax", ["h3"], ["soft"], axis=1),
        helper.make_node("ReduceMax", ["soft"], ["peak"], keepdims=1, axes=[1]),
        helper.make_node("Exp", ["peak"], ["e"]), helper.make_node("Flatten", ["e"], ["flat"], axis=1),
        helper.make_node("Squeeze", ["flat", "one"], ["r"]),
    ]
    inits = [init("w1", 8, 2), init("b1", 8), init("w2", 8 * len(acts), 8), init("b2", 8),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", elem, ["N", 2])],
                              [helper.make_tensor_value_info("r", elem, ["N"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_network_equals_onnxruntime(dtype):
    graph = GraphFunction(_network(dtype))
    graph.check(X.astype(dtype))
    jitted = jax.jit(lambda x: graph(jnp, x)[0])
    np.testing.assert_allclose(np.asarray(jitted(X.astype(dtype))), graph(np, X.astype(dtype))[0],
                               rtol=1e-6 if dtype == np.float64 else 1e-5)


def test_a_wrong_translation_is_caught_by_check():
    graph = GraphFunction(_network())
    graph._constants["b1"] = graph._constants["b1"] + 1e-3  # as if an operator were mistranslated
    with pytest.raises(InvalidONNXModel, match="differs from onnxruntime at entry"):
        graph.check(X)


def test_gradient_in_the_parameter_column_is_exact():
    sigma = 0.4
    graph = GraphFunction(shifted_normal_ratio_model(sigma, [(1.0, [Uniform(0.0, 4.0)])], output="log_ratio"))
    x = jnp.asarray([0.3, 1.1, 2.9])

    def total(mean):
        columns = jnp.column_stack([x, jnp.full_like(x, mean)])
        return jnp.sum(graph(jnp, columns)[0])

    mean = 1.3
    # d/dm Σ ln N(x_i; m, σ) = Σ (x_i − m)/σ²
    assert float(jax.grad(total)(mean)) == pytest.approx(float(jnp.sum(x - mean)) / sigma**2, rel=1e-12)
    hess = float(jax.hessian(total)(mean))
    assert hess == pytest.approx(-3 / sigma**2, rel=1e-12)


def test_unsupported_operators_are_named():
    node = helper.make_node("Loop", ["n", "cond"], ["out"], body=helper.make_graph([], "b", [], []))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 11, ["N", 1])],
                              [helper.make_tensor_value_info("out", 11, ["N"])])
    content = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(InvalidONNXModel, match=r"operator Loop .* not supported.*supported: Abs"):
        GraphFunction(content, source="models/loop.onnx")
    with pytest.raises(InvalidONNXModel, match="not an ONNX model"):
        GraphFunction(broken_model("not_onnx"))
