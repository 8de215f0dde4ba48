"""The safe formula language of coefficient functions f_j(θ).

A formula is a text such as ``"mu - sqrt(mu)"`` or ``"1 + 2*cW + cW**2"``. It is parsed
with :mod:`ast` and accepted only if every node is on a whitelist: numbers, parameter
names (ASCII identifiers), ``+ - * / **``, unary ``-``/``+`` and calls of ``sqrt exp log
abs pow min max``. The result is a small immutable tree of our own; nothing is ever
``eval``-ed. Evaluation goes through an array namespace ``xp`` (numpy or jax.numpy), so a
formula runs under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

>>> expr = parse_expression("mu - sqrt(mu)")
>>> sorted(expr.parameters)
['mu']
>>> float(expr.evaluate({"mu": 4.0}))
2.0
>>> parse_expression("os.system(1)", pointer="/f")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ratiofactory.errors.InvalidExpression: /f: 'os.system(1)': attribute access is not allowed in formulas; allowed: ...
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidExpression, RatiofactoryError

__all__ = [
    "FUNCTIONS",
    "MAX_LENGTH",
    "BinaryOperation",
    "Expression",
    "FunctionCall",
    "MissingParameterValue",
    "Negation",
    "Number",
    "Parameter",
    "parse_expression",
]

MAX_LENGTH = 1000
"""Longest formula text accepted (characters)."""

MAX_DEPTH = 200
"""Deepest nesting of operations accepted (keeps evaluation far from the recursion limit)."""

FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    "sqrt": (1, 1),
    "exp": (1, 1),
    "log": (1, 1),
    "abs": (1, 1),
    "pow": (2, 2),
    "min": (2, None),
    "max": (2, None),
}
"""Whitelisted functions and their (least, most) number of arguments; None: no limit."""

ALLOWED = "allowed: numbers, parameter names, + - * / **, sqrt exp log abs pow min max"

_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_REJECTED_OPERATORS = {
    ast.FloorDiv: "'//'", ast.Mod: "'%'", ast.MatMult: "'@'", ast.BitXor: "'^' (write ** for powers)",
    ast.BitAnd: "'&'", ast.BitOr: "'|'", ast.LShift: "'<<'", ast.RShift: "'>>'",
    ast.Not: "'not'", ast.Invert: "'~'",
}  # fmt: skip
_REJECTED_NODES = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Compare: "comparisons",
    ast.BoolOp: "'and'/'or'", ast.Lambda: "lambda expressions", ast.IfExp: "conditional expressions (if/else)",
    ast.NamedExpr: "assignments (:=)", ast.JoinedStr: "strings", ast.List: "lists",
    ast.Tuple: "tuples", ast.Dict: "dicts", ast.Set: "sets", ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.GeneratorExp: "generators",
    ast.Starred: "*-unpacking", ast.Await: "await", ast.Slice: "slices",
}  # fmt: skip


class MissingParameterValue(RatiofactoryError, KeyError):
    """A formula was evaluated without a value for one of its parameters."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


# --- the tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A numeric constant (always a finite float)."""

    value: float

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        return self.value


@dataclass(frozen=True)
class Parameter:
    """A parameter of the model, by name."""

    name: str

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        return xp.asarray(values[self.name]) * 1.0  # integers become floats


@dataclass(frozen=True)
class Negation:
    """Unary minus."""

    operand: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        return -self.operand.evaluate(values, xp)


@dataclass(frozen=True)
class BinaryOperation:
    """``left <operator> right`` with operator one of ``+ - * / **``."""

    operator: str
    left: Node
    right: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        left = self.left.evaluate(values, xp)
        right = self.right.evaluate(values, xp)
        if self.operator == "**":
            return _power(left, right, xp)
        return _ARITHMETIC[self.operator](left, right)


@dataclass(frozen=True)
class FunctionCall:
    """A call of one of :data:`FUNCTIONS`."""

    function: str
    arguments: tuple[Node, ...]

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        args = [arg.evaluate(values, xp) for arg in self.arguments]
        if self.function == "pow":
            return _power(args[0], args[1], xp)
        if self.function in ("min", "max"):
            pairwise = xp.minimum if self.function == "min" else xp.maximum
            return functools.reduce(pairwise, args)
        if self.function == "sqrt" and xp is not np:
            return _jax_sqrt()(args[0])
        return getattr(xp, self.function)(args[0])


Node = Number | Parameter | Negation | BinaryOperation | FunctionCall

_ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}  # fmt: skip


_STEEP = 1e30
"""The slope of ``sqrt`` at 0 on jax (finite, so that 0 · slope is 0, not NaN)."""


@functools.cache
def _jax_sqrt() -> Callable[[Any], Any]:
    """``sqrt`` whose derivative at 0 is a large finite number instead of +∞: a zero tangent
    through ``sqrt(0)`` (the derivative of ``sqrt(mu)`` in another parameter's direction,
    forward-mode Hessians) stays 0 instead of becoming NaN, and at μ = 0 the gradient in μ
    keeps its sign (a fit then sees that the bound holds it)."""
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def sqrt(x: Any) -> Any:
        return jnp.sqrt(x)

    @sqrt.defjvp
    def sqrt_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
        (x,), (dx,) = primals, tangents
        y = sqrt(x)  # itself: its derivatives (Hessians) keep the finite slope at 0
        positive = y > 0
        slope = jnp.where(positive, 0.5 / jnp.where(positive, y, 1.0), _STEEP)
        return y, slope * dx

    return sqrt


def _power(base: Any, exponent: Any, xp: Any) -> Any:
    """``base ** exponent``; a small whole constant exponent uses integer powers (exact
    for negative bases, well-behaved gradients at 0)."""
    if isinstance(exponent, float) and exponent.is_integer() and abs(exponent) <= 64:
        return base ** int(exponent)
    return xp.power(base, exponent)


@dataclass(frozen=True)
class Expression:
    """A parsed formula: its ``text``, its tree ``root`` and its ``parameters``.

    >>> expr = parse_expression("1 + 2*cW + cW**2")
    >>> float(expr.evaluate({"cW": 0.5}))
    2.25
    >>> str(expr)
    '1 + 2*cW + cW**2'
    """

    text: str
    root: Node
    parameters: frozenset[str]
    pointer: str = field(default="", compare=False)

    def evaluate(self, values: Mapping[str, Any], xp: Any = np) -> Any:
        """The formula's value with ``values[name]`` for each parameter (scalars or
        arrays, broadcast together), computed with the array namespace ``xp``."""
        missing = self.parameters.difference(values)
        if missing:
            where = f"{self.pointer}: " if self.pointer else ""
            raise MissingParameterValue(
                f"{where}formula {self.text!r} needs a value for parameter "
                f"{min(missing)!r}; given: {', '.join(sorted(values)) or 'none'}"
            )
        return xp.asarray(self.root.evaluate(values, xp))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


# --- parsing ---------------------------------------------------------------------------


def parse_expression(text: str, *, pointer: str = "") -> Expression:
    """Parse ``text`` into an :class:`Expression`, accepting only the whitelisted language.

    Raises :class:`InvalidExpression` (one line: ``pointer``, the text, what was rejected).
    Parts without parameters are computed once here and must give finite numbers.

    >>> parse_expression("2 * sqrt(4) * mu").root
    BinaryOperation(operator='*', left=Number(value=4.0), right=Parameter(name='mu'))
    """
    if not isinstance(text, str):
        raise _rejection(pointer, text, f"a formula must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _rejection(pointer, text, f"a formula may have at most {MAX_LENGTH} characters")
    stripped = text.strip()
    if not stripped:
        raise _rejection(pointer, text, "the formula is empty")
    if "#" in stripped:
        raise _rejection(pointer, text, "comments (#) are not allowed in formulas")
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        line = f"line {exc.lineno}, " if (exc.lineno or 1) > 1 else ""
        column = f" at {line}column {exc.offset}" if exc.offset else ""
        raise _rejection(pointer, text, f"not a valid formula ({exc.msg}{column})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _rejection(pointer, text, f"not a valid formula ({exc})") from None
    builder = _TreeBuilder(stripped, text, pointer)
    root = builder.build(tree.body, depth=0)
    return Expression(text, root, frozenset(builder.names), pointer)


def _rejection(pointer: str, text: object, problem: str) -> InvalidExpression:
    shown = text if not isinstance(text, str) or len(text) <= 100 else text[:97] + "..."
    where = f"{pointer}: " if pointer else ""
    err = InvalidExpression(f"{where}{shown!r}: {problem}; {ALLOWED}")
    err.pointer = pointer
    return err


class _TreeBuilder:
    """Turns a Python ast into our tree, rejecting anything off the whitelist."""

    def __init__(self, source: str, text: str, pointer: str) -> None:
        self.source = source
        self.text = text
        self.pointer = pointer
        self.names: set[str] = set()

    def reject(self, problem: str) -> InvalidExpression:
        return _rejection(self.pointer, self.text, problem)

    def build(self, node: ast.AST, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.reject(f"formulas may nest at most {MAX_DEPTH} operations deep")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.parameter(node.id)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        what = _REJECTED_NODES.get(type(node), f"'{type(node).__name__}' expressions")
        raise self.reject(
            f"{what} {'is' if what.endswith('access') else 'are'} not allowed in formulas"
        )

    def number(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool):
            raise self.reject(f"booleans ({value}) are not allowed in formulas")
        if isinstance(value, (str, bytes)):
            raise self.reject("strings are not allowed in formulas")
        if isinstance(value, complex):
            raise self.reject("complex numbers are not allowed in formulas")
        if not isinstance(value, (int, float)):
            raise self.reject(f"the constant {value!r} is not allowed in formulas")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.reject(
                f"the number {ast.get_source_segment(self.source, node)} is too large"
            )
        return Number(number)

    def parameter(self, name: str) -> Parameter:
        if name in FUNCTIONS:
            raise self.reject(
                f"{name!r} is a function, not a parameter name (call it: {name}(...))"
            )
        if name.startswith("__"):
            raise self.reject(f"names starting with '__' such as {name!r} are not allowed")
        if not _ASCII_NAME.match(name):
            raise self.reject(f"parameter name {name!r} must be ASCII letters, digits and _")
        self.names.add(name)
        return Parameter(name)

    def unary(self, node: ast.UnaryOp, depth: int) -> Node:
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth + 1)
        if not isinstance(node.op, ast.USub):
            raise self.reject(f"the operator {_REJECTED_OPERATORS[type(node.op)]} is not allowed")
        return self.folded(Negation(self.build(node.operand, depth + 1)), node)

    def binary(self, node: ast.BinOp, depth: int) -> Node:
        symbol = _BINARY.get(type(node.op))
        if symbol is None:
            raise self.reject(f"the operator {_REJECTED_OPERATORS[type(node.op)]} is not allowed")
        left = self.build(node.left, depth + 1)
        right = self.build(node.right, depth + 1)
        return self.folded(BinaryOperation(symbol, left, right), node)

    def call(self, node: ast.Call, depth: int) -> Node:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.reject("attribute access is not allowed in formulas")
            raise self.reject("only the functions sqrt exp log abs pow min max may be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.reject(f"unknown function {name!r}")
        if node.keywords:
            raise self.reject(f"keyword arguments (in the call of {name!r}) are not allowed")
        least, most = FUNCTIONS[name]
        count = len(node.args)
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.reject(f"*-unpacking (in the call of {name!r}) is not allowed")
        if count < least or (most is not None and count > most):
            wanted = f"{least}" if least == most else f"at least {least}"
            raise self.reject(f"{name} takes {wanted} argument{'s' * (least > 1)}, got {count}")
        arguments = tuple(self.build(arg, depth + 1) for arg in node.args)
        return self.folded(FunctionCall(name, arguments), node)

    def folded(self, node: Node, source: ast.AST) -> Node:
        """``node`` itself, or its value when it holds no parameter (which must be finite)."""
        if not _is_constant(node):
            return node
        try:
            with np.errstate(all="raise"):
                value = node.evaluate({}, np)
            value = float(value)
        except (ArithmeticError, ValueError, TypeError):
            value = math.nan
        if not math.isfinite(value):
            part = ast.get_source_segment(self.source, source)
            raise self.reject(f"the constant part {part!r} is not a finite number")
        return Number(value)


def _is_constant(node: Node) -> bool:
    if isinstance(node, Negation):
        return isinstance(node.operand, Number)
    if isinstance(node, BinaryOperation):
        return isinstance(node.left, Number) and isinstance(node.right, Number)
    if isinstance(node, FunctionCall):
        return all(isinstance(arg, Number) for arg in node.arguments)
    return False
