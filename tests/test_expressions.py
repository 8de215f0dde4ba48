"""The formula language: whitelist, values, parameters, numpy and jax (jit, grad, vmap)."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pyhf
import pytest

from ratiofactory.errors import InvalidExpression, RatiofactoryError
from ratiofactory.expressions import (
    BinaryOperation,
    Expression,
    MissingParameterValue,
    Number,
    Parameter,
    parse_expression,
)

POINTER = "/unbinned_channels/0/samples/0/modifiers/0/data/expression"

REJECTED = {
    # text: words the one-line message must contain
    "os.system(1)": "attribute access (.system)",
    "mu.real": "attribute access (.real)",
    "x[0]": "subscripts",
    "mu < 1 < 2": "chained comparisons",
    "mu == nu >= 1": "chained comparisons",
    "mu and nu": "'and' is not part of the formula language (write &&",
    "mu or nu": "write ||",
    "lambda: 1": "no lambda",
    "sqrt(x=1)": "keyword arguments",
    "sqrt(*args)": "unexpected '*'",
    "__import__(os)": "unknown function '__import__'",
    "eval(1)": "unknown function 'eval'",
    "sinh(mu)": "unknown function 'sinh'",
    "sqrt + 1": "'sqrt' is a function",
    "sqrt (mu)": "no space is allowed between the function name 'sqrt' and '('",
    "__class__": "names starting with '__'",
    "'mu'": "strings",
    "f'{mu}'": "strings",
    "True * mu": "write TRUE",
    "2j * mu": "'2j' is not a number",
    "1.2.3": "'1.2.3' is not a number",
    "None": "there is no None",
    "": "empty",
    "   ": "empty",
    "mu // 2": "'//'",
    "mu % 2": "'%'",
    "mu & nu": "write && for logical and",
    "mu | nu": "write || for logical or",
    "not mu": "write ! for logical not",
    "~mu": "'~'",
    "[mu]": "subscripts",
    "{mu}": "braces",
    "(mu, 1)": "expected ')' at column 4, found ','",
    "mu if nu else 1": "write condition ? a : b",
    "mu ? 1": "missing ':'",
    "(x := 1)": "'='",
    "mu # a comment": "comments",
    "mu +": "not a valid formula (it ends too early, after '+')",
    "mu mu": "unexpected 'mu' at column 4; write * for products",
    "2 (mu)": "write * for products",
    "sqrt(mu": "missing ')'",
    "mu)": "unexpected ')' at column 3",
    "sqrt(mu, 2)": "sqrt takes 1 argument, got 2",
    "pow(mu)": "pow takes 2 arguments, got 1",
    "min(mu)": "min takes at least 2 arguments, got 1",
    "ifelse(mu, 1)": "ifelse takes 3 arguments, got 2",
    "1e400 * mu": "too large",
    "1/0 + mu": "constant part '1/0' is not a finite number",
    "sqrt(-1) * mu": "constant part 'sqrt(-1)'",
    "10**400 * mu": "constant part '10**400'",
    "10^400 * mu": "constant part '10^400'",
    "asin(2) * mu": "constant part 'asin(2)'",
    "μ + 1": "must be ASCII",
    "x" * 1001: "at most 1000 characters",
    "-" * 300 + "mu": "nest at most",
    "(" * 300 + "mu" + ")" * 300: "nest at most",
    "+".join(["mu"] * 300): "nest at most",
}


@pytest.mark.parametrize(
    ("text", "problem"), list(REJECTED.items()), ids=list(range(len(REJECTED)))
)
def test_rejected_formulas_name_pointer_text_and_problem(text, problem):
    with pytest.raises(InvalidExpression) as info:
        parse_expression(text, pointer=POINTER)
    message = str(info.value)
    assert message.startswith(f"{POINTER}: ")
    assert repr(text[:97]).rstrip("'\"") in message
    assert problem in message
    assert "allowed: numbers, PI EULER TRUE FALSE, parameter names" in message
    assert "\n" not in message
    assert info.value.pointer == POINTER
    assert isinstance(info.value, RatiofactoryError)


def test_message_of_the_brief():
    with pytest.raises(InvalidExpression) as info:
        parse_expression("os.system(1)", pointer=POINTER)
    assert str(info.value) == (
        f"{POINTER}: 'os.system(1)': attribute access (.system) is not allowed in formulas; "
        "allowed: numbers, PI EULER TRUE FALSE, parameter names, + - * / ^ (or **), "
        "== === != !== < <= > >=, ! && ||, c ? a : b, "
        "exp log sqrt abs pow min max sin cos tan asin acos atan ifelse"
    )


def test_without_pointer_the_message_starts_with_the_text():
    with pytest.raises(InvalidExpression, match=r"^'foo\(mu\)': unknown function 'foo'"):
        parse_expression("foo(mu)")


def test_non_string_is_rejected():
    with pytest.raises(InvalidExpression, match="must be a string, not int"):
        parse_expression(3, pointer=POINTER)  # type: ignore[arg-type]


VALUES = [
    # (text, parameter values, value computed by hand)
    ("mu - sqrt(mu)", {"mu": 4.0}, 2.0),
    ("sqrt(mu)", {"mu": 2.25}, 1.5),
    ("1 - sqrt(mu)", {"mu": 0.25}, 0.5),
    ("1 + 2*cW + cW**2", {"cW": -3.0}, 4.0),
    ("(1 - cW)**2 * cHW + 0.5*cW*cHW", {"cW": 0.5, "cHW": 2.0}, 1.0),
    ("-mu**2", {"mu": 3.0}, -9.0),
    ("2**-1 * mu", {"mu": 3.0}, 1.5),
    ("mu / 4 / 2", {"mu": 16.0}, 2.0),
    ("mu - 2 - 3", {"mu": 10.0}, 5.0),
    ("+mu", {"mu": 7.0}, 7.0),
    ("--mu", {"mu": 7.0}, 7.0),
    ("exp(log(mu))", {"mu": 5.0}, 5.0),
    ("log(exp(2))", {}, 2.0),
    ("abs(a - b)", {"a": 1.0, "b": 3.5}, 2.5),
    ("pow(2, x)", {"x": 3.0}, 8.0),
    ("pow(x, 0.5)", {"x": 9.0}, 3.0),
    ("x**1.5", {"x": 4.0}, 8.0),
    ("cW**3", {"cW": -2.0}, -8.0),
    ("min(a, b, 1)", {"a": 3.0, "b": 2.0}, 1.0),
    ("max(a, b, 1)", {"a": 3.0, "b": 2.0}, 3.0),
    ("min(a, b)", {"a": -3.0, "b": 2.0}, -3.0),
    ("1.5e-1 * k", {"k": 2.0}, 0.3),
    ("  mu  ", {"mu": 1.25}, 1.25),
    ("(mu\n + 1)", {"mu": 1.0}, 2.0),
    ("3", {}, 3.0),
    ("mu**-1", {"mu": 2}, 0.5),
]


@pytest.mark.parametrize(("text", "values", "expected"), VALUES)
def test_values_against_hand_computed_numbers(text, values, expected):
    assert float(parse_expression(text).evaluate(values)) == pytest.approx(expected, rel=1e-15)


def test_extra_values_are_ignored_and_arrays_broadcast():
    expr = parse_expression("mu - sqrt(mu)")
    mu = np.array([0.0, 1.0, 4.0, 9.0])
    np.testing.assert_array_equal(expr.evaluate({"mu": mu, "alpha": 3.0}), [0.0, 0.0, 2.0, 6.0])


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("mu - sqrt(mu)", {"mu"}),
        ("1 + 2*cW + cW**2 + cW*cHW", {"cW", "cHW"}),
        ("max(a, b_2, _c) / 2", {"a", "b_2", "_c"}),
        ("2 * pi", {"pi"}),
        ("4", set()),
    ],
)
def test_parameters(text, names):
    expr = parse_expression(text)
    assert expr.parameters == frozenset(names)
    assert isinstance(expr.parameters, frozenset)


def test_tree_is_our_own_and_constants_are_folded():
    expr = parse_expression("2 * sqrt(4) * mu")
    assert isinstance(expr, Expression)
    assert expr.root == BinaryOperation("*", Number(4.0), Parameter("mu"))
    assert expr.text == str(expr) == "2 * sqrt(4) * mu"
    assert repr(expr) == "Expression('2 * sqrt(4) * mu')"
    assert expr == parse_expression("2 * sqrt(4) * mu", pointer="/elsewhere")
    assert hash(expr) == hash(parse_expression("2 * sqrt(4) * mu"))
    with pytest.raises(AttributeError):
        expr.text = "mu"  # type: ignore[misc]


def test_missing_value_names_the_parameter_and_pointer():
    expr = parse_expression("mu * k", pointer=POINTER)
    with pytest.raises(MissingParameterValue) as info:
        expr.evaluate({"mu": 1.0})
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, RatiofactoryError)
    assert (
        str(info.value) == f"{POINTER}: formula 'mu * k' needs a value for parameter 'k'; given: mu"
    )


def test_never_calls_eval_or_exec(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    expr = parse_expression("max(mu - sqrt(mu), 0.1) + exp(-k) * pow(k, 2)")
    assert float(expr.evaluate({"mu": 4.0, "k": 1.0})) == pytest.approx(2.0 + math.exp(-1.0))


def test_deep_but_legitimate_sums_are_accepted():
    text = " + ".join(f"c{i}*x**{i % 4}" for i in range(60))
    expr = parse_expression(text)
    values = {f"c{i}": 1.0 for i in range(60)} | {"x": 2.0}
    assert float(expr.evaluate(values)) == 15 * (1 + 2 + 4 + 8)


# --- jax -------------------------------------------------------------------------------


@pytest.fixture
def jnp():
    pyhf.set_backend("jax", precision="64b")  # enables float64 in jax
    import jax.numpy

    yield jax.numpy
    pyhf.set_backend("numpy", precision="64b")


@pytest.mark.parametrize(("text", "values", "expected"), VALUES)
def test_values_on_jax(jnp, text, values, expected):
    value = parse_expression(text).evaluate(values, jnp)
    assert value.dtype == jnp.float64
    assert float(value) == pytest.approx(expected, rel=1e-15)


def test_jit_grad_and_vmap_of_interference_coefficient(jnp):
    import jax

    expr = parse_expression("mu - sqrt(mu)")

    def coefficient(mu):
        return expr.evaluate({"mu": mu}, jnp)

    for mu in [0.25, 1.0, 2.0, 9.0]:
        assert float(jax.jit(coefficient)(mu)) == pytest.approx(mu - math.sqrt(mu), rel=1e-15)
        assert float(jax.grad(coefficient)(mu)) == pytest.approx(
            1 - 1 / (2 * math.sqrt(mu)), rel=1e-15
        )
    mus = jnp.array([0.25, 1.0, 4.0])
    np.testing.assert_allclose(jax.vmap(jax.grad(coefficient))(mus), [0.0, 0.5, 0.75], rtol=1e-15)


def test_grad_of_eft_morphing_polynomial_and_functions(jnp):
    import jax

    expr = parse_expression(
        "1 + 2*cW + cW**2 + min(cW, 0.3) + abs(cW) + pow(cW, 3) + exp(cW)/log(2 + cW)"
    )

    def expected_derivative(c):
        return (
            2 + 2 * c + (1.0 if c < 0.3 else 0.0) + math.copysign(1.0, c) + 3 * c**2
            + math.exp(c) / math.log(2 + c) - math.exp(c) / ((2 + c) * math.log(2 + c) ** 2)
        )  # fmt: skip

    grad = jax.jit(jax.grad(lambda c: expr.evaluate({"cW": c}, jnp)))
    for c in [-0.5, -0.1, 0.2, 0.7]:
        assert float(grad(c)) == pytest.approx(expected_derivative(c), rel=1e-14)


# --- documentation ---------------------------------------------------------------------


def test_examples_in_docstrings_and_docs_run():
    import doctest
    from pathlib import Path

    import ratiofactory.expressions

    assert doctest.testmod(ratiofactory.expressions, raise_on_error=False).failed == 0
    docs = Path(__file__).resolve().parents[1] / "docs" / "expressions.md"
    result = doctest.testfile(str(docs), module_relative=False, raise_on_error=False)
    assert result.attempted >= 15
    assert result.failed == 0


# --- HS3 generic expressions, construct by construct ---------------------------------
# (text, parameter values, value by hand, {parameter: derivative by hand})

M, N = 0.3, 1.7
HS3_CASES = [
    # literals and named constants
    ("1234 * mu", {"mu": M}, 1234 * M, {"mu": 1234.0}),
    ("123.4 + 1.234e2 + 1.234E2 + mu", {"mu": M}, 123.4 * 3 + M, {"mu": 1.0}),
    ("PI * mu", {"mu": M}, math.pi * M, {"mu": math.pi}),
    ("EULER^mu", {"mu": M}, math.e**M, {"mu": math.e**M}),
    ("TRUE * mu + FALSE", {"mu": M}, M, {"mu": 1.0}),
    # arithmetic, ^ and its precedence/associativity
    ("mu^2", {"mu": N}, N**2, {"mu": 2 * N}),
    ("mu**2", {"mu": N}, N**2, {"mu": 2 * N}),
    ("-mu^2", {"mu": N}, -(N**2), {"mu": -2 * N}),
    ("2^mu^2", {"mu": N}, 2 ** (N**2), {"mu": 2 ** (N**2) * math.log(2) * 2 * N}),
    ("mu^-1", {"mu": N}, 1 / N, {"mu": -1 / N**2}),
    ("mu^0.5 * 3", {"mu": N}, 3 * math.sqrt(N), {"mu": 1.5 / math.sqrt(N)}),
    ("1 + 2*mu^2 / 4 - mu", {"mu": N}, 1 + N**2 / 2 - N, {"mu": N - 1}),
    ("mu / 4 / 2", {"mu": N}, N / 8, {"mu": 0.125}),
    ("2/3 * mu", {"mu": N}, 2 / 3 * N, {"mu": 2 / 3}),
    # comparisons: 1.0 or 0.0, no gradient
    ("mu * 3 == 0.9", {"mu": M}, 1.0, {"mu": 0.0}),  # 0.3*3 = 0.8999999999999999: equal within ULPs
    ("mu * 3 === 0.9", {"mu": M}, 0.0, {"mu": 0.0}),  # but not exactly
    ("mu * 3 != 0.9", {"mu": M}, 0.0, {"mu": 0.0}),
    ("mu * 3 !== 0.9", {"mu": M}, 1.0, {"mu": 0.0}),
    ("mu < nu", {"mu": M, "nu": N}, 1.0, {"mu": 0.0, "nu": 0.0}),
    ("mu <= 0.3", {"mu": M}, 1.0, {"mu": 0.0}),
    ("mu > nu", {"mu": M, "nu": N}, 0.0, {"mu": 0.0, "nu": 0.0}),
    ("mu >= 0.3", {"mu": M}, 1.0, {"mu": 0.0}),
    ("mu + 1 > nu - 1", {"mu": M, "nu": N}, 1.0, {"mu": 0.0, "nu": 0.0}),  # arithmetic first
    # logical operators
    ("!mu", {"mu": M}, 0.0, {"mu": 0.0}),
    ("!(mu - 0.3)", {"mu": M}, 1.0, {"mu": 0.0}),
    ("mu > 1 && nu > 1", {"mu": M, "nu": N}, 0.0, {"mu": 0.0, "nu": 0.0}),
    ("mu > 1 || nu > 1", {"mu": M, "nu": N}, 1.0, {"mu": 0.0, "nu": 0.0}),
    ("mu > 1 || nu > 1 && mu > 1", {"mu": M, "nu": N}, 0.0, {"mu": 0.0, "nu": 0.0}),  # && first
    # the conditional, both spellings; the gradient is the chosen branch's
    ("mu > 1 ? mu^2 : 2*mu - 1", {"mu": N}, N**2, {"mu": 2 * N}),
    ("mu > 1 ? mu^2 : 2*mu - 1", {"mu": M}, 2 * M - 1, {"mu": 2.0}),
    ("ifelse(mu > 1, mu^2, 2*mu - 1)", {"mu": M}, 2 * M - 1, {"mu": 2.0}),
    ("mu < 0 ? 0 : mu < 1 ? mu : 1", {"mu": M}, M, {"mu": 1.0}),  # right-associative
    ("1 + (nu > 1 ? nu : mu) * 2", {"mu": M, "nu": N}, 1 + 2 * N, {"mu": 0.0, "nu": 2.0}),
    # functions
    ("exp(mu)", {"mu": M}, math.exp(M), {"mu": math.exp(M)}),
    ("log(mu)", {"mu": M}, math.log(M), {"mu": 1 / M}),
    ("sqrt(mu)", {"mu": M}, math.sqrt(M), {"mu": 0.5 / math.sqrt(M)}),
    ("abs(mu - nu)", {"mu": M, "nu": N}, N - M, {"mu": -1.0, "nu": 1.0}),
    ("pow(mu, nu)", {"mu": M, "nu": N}, M**N, {"mu": N * M ** (N - 1), "nu": M**N * math.log(M)}),
    ("min(mu, nu)", {"mu": M, "nu": N}, M, {"mu": 1.0, "nu": 0.0}),
    ("max(mu, nu)", {"mu": M, "nu": N}, N, {"mu": 0.0, "nu": 1.0}),
    ("sin(mu)", {"mu": M}, math.sin(M), {"mu": math.cos(M)}),
    ("cos(mu)", {"mu": M}, math.cos(M), {"mu": -math.sin(M)}),
    ("tan(mu)", {"mu": M}, math.tan(M), {"mu": 1 / math.cos(M) ** 2}),
    ("asin(mu)", {"mu": M}, math.asin(M), {"mu": 1 / math.sqrt(1 - M**2)}),
    ("acos(mu)", {"mu": M}, math.acos(M), {"mu": -1 / math.sqrt(1 - M**2)}),
    ("atan(mu)", {"mu": M}, math.atan(M), {"mu": 1 / (1 + M**2)}),
    ("cos(PI) * mu", {"mu": M}, -M, {"mu": -1.0}),
]
HS3_IDS = [text for text, *_ in HS3_CASES]


@pytest.mark.parametrize(("text", "values", "value", "gradient"), HS3_CASES, ids=HS3_IDS)
def test_hs3_construct_values_on_numpy(text, values, value, gradient):
    assert float(parse_expression(text).evaluate(values)) == pytest.approx(value, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize(("text", "values", "value", "gradient"), HS3_CASES, ids=HS3_IDS)
def test_hs3_construct_values_and_gradients_on_jax(jnp, text, values, value, gradient):
    import jax

    expr = parse_expression(text)
    names = sorted(values)

    def f(*args):
        return expr.evaluate(dict(zip(names, args, strict=True)), jnp)

    args = [values[n] for n in names]
    assert float(jax.jit(f)(*args)) == pytest.approx(value, rel=1e-14, abs=1e-15)
    grads = jax.grad(f, argnums=tuple(range(len(names))))(*args)
    for name, grad in zip(names, grads, strict=True):
        assert float(grad) == pytest.approx(gradient[name], rel=1e-13, abs=1e-15), name


def test_hs3_names_are_reserved_and_case_sensitive():
    assert parse_expression("PI * EULER * TRUE + FALSE").parameters == frozenset()
    assert parse_expression("pi * euler").parameters == {"pi", "euler"}  # parameters
    with pytest.raises(InvalidExpression, match="'ifelse' is a function"):
        parse_expression("ifelse + 1")


def test_conditional_on_arrays_picks_per_element():
    expr = parse_expression("mu > 1 ? sqrt(mu) : -mu")
    np.testing.assert_array_equal(expr.evaluate({"mu": np.array([0.5, 4.0, 9.0])}), [-0.5, 2.0, 3.0])


def test_undefined_values_are_nan_without_numpy_warnings():
    """Outside a formula's domain the value is NaN (the model's −ln L is then +inf), and
    numpy's RuntimeWarnings, errors under pytest, are not raised."""
    assert np.isnan(float(parse_expression("pow(mu - 0.5, mu)").evaluate({"mu": 0.2})))
    assert np.isnan(float(parse_expression("sqrt(log(theta))").evaluate({"theta": 0.5})))
    assert float(parse_expression("1 / theta").evaluate({"theta": 0.0})) == np.inf
