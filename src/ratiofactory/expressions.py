"""The safe formula language of coefficient functions f_j(θ): HS3 generic expressions.

A formula is a text such as ``"mu - sqrt(mu)"`` or ``"1 + 2*cW + cW^2"``, in the
language of HS3's ``generic_function`` (HEP Statistics Serialization Standard, section
"Generic Expressions"): numbers, ``TRUE``/``FALSE``, ``PI``/``EULER``, parameter names,
``+ - * / ^``, comparisons, ``! && ||``, the conditional ``c ? a : b`` and the functions
``exp log sqrt abs pow min max sin cos tan asin acos atan``; plus ``**`` (the same as
``^``), ``ifelse(c, a, b)`` and ``min``/``max`` of more than two arguments. It is
tokenised and parsed by :mod:`ratiofactory.formula_parser` into a small immutable tree
of our own; nothing is ever ``eval``-ed. Evaluation goes through an array namespace
``xp`` (numpy or jax.numpy), so a formula runs under ``jax.jit``, ``jax.grad`` and
``jax.vmap``.

>>> expr = parse_expression("mu - sqrt(mu)")
>>> sorted(expr.parameters)
['mu']
>>> float(expr.evaluate({"mu": 4.0}))
2.0
>>> float(parse_expression("mu^2 * PI").evaluate({"mu": 2.0})) / 3.141592653589793
4.0
>>> parse_expression("os.system(1)", pointer="/f")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ratiofactory.errors.InvalidExpression: /f: 'os.system(1)': attribute access (.system) is not allowed in formulas; allowed: ...
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidExpression, RatiofactoryError

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "BinaryOperation",
    "Comparison",
    "Conditional",
    "Expression",
    "FunctionCall",
    "Logical",
    "MissingParameterValue",
    "Negation",
    "Not",
    "Number",
    "Parameter",
    "parse_expression",
]

MAX_LENGTH = 1000
"""Longest formula text accepted (characters)."""

MAX_DEPTH = 200
"""Deepest nesting of operations accepted (keeps evaluation far from the recursion limit)."""

FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    "exp": (1, 1),
    "log": (1, 1),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "pow": (2, 2),
    "min": (2, None),
    "max": (2, None),
    "sin": (1, 1),
    "cos": (1, 1),
    "tan": (1, 1),
    "asin": (1, 1),
    "acos": (1, 1),
    "atan": (1, 1),
    "ifelse": (3, 3),
}
"""Whitelisted functions and their (least, most) number of arguments; None: no limit."""

CONSTANTS: Mapping[str, float] = {"PI": math.pi, "EULER": math.e, "TRUE": 1.0, "FALSE": 0.0}
"""HS3's named literals (case-sensitive: ``pi`` is a parameter name, ``PI`` is π)."""

ALLOWED = (
    "allowed: numbers, PI EULER TRUE FALSE, parameter names, + - * / ^ (or **), "
    "== === != !== < <= > >=, ! && ||, c ? a : b, " + " ".join(FUNCTIONS)
)

_XP_NAMES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan"}

#: |a − b| ≤ APPROX_ULPS · ε · max(|a|, |b|) is HS3's approximately-equal ``a == b``
APPROX_ULPS = 4.0


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
    """``left <operator> right`` with operator one of ``+ - * / **`` (``^`` is ``**``)."""

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
class Comparison:
    """``left <operator> right``, 1.0 if true and 0.0 if false; ``==``/``!=`` compare to
    within :data:`APPROX_ULPS` units of least precision, ``===``/``!==`` exactly."""

    operator: str
    left: Node
    right: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        left = xp.asarray(self.left.evaluate(values, xp))
        right = xp.asarray(self.right.evaluate(values, xp))
        if self.operator in ("==", "!="):
            scale = xp.maximum(xp.abs(left), xp.abs(right))
            close = xp.abs(left - right) <= APPROX_ULPS * np.finfo(np.float64).eps * scale
            truth = close if self.operator == "==" else ~close
        else:
            truth = _COMPARE[self.operator](left, right)
        return xp.where(truth, 1.0, 0.0)


@dataclass(frozen=True)
class Logical:
    """``left && right`` or ``left || right``; a value is true when it is not 0."""

    operator: str
    left: Node
    right: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        left = xp.asarray(self.left.evaluate(values, xp)) != 0
        right = xp.asarray(self.right.evaluate(values, xp)) != 0
        truth = (left & right) if self.operator == "&&" else (left | right)
        return xp.where(truth, 1.0, 0.0)


@dataclass(frozen=True)
class Not:
    """``!operand``: 1.0 where the operand is 0, else 0.0."""

    operand: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        return xp.where(xp.asarray(self.operand.evaluate(values, xp)) == 0, 1.0, 0.0)


@dataclass(frozen=True)
class Conditional:
    """``condition ? if_true : if_false`` (also written ``ifelse(condition, if_true,
    if_false)``); both branches are computed, ``xp.where`` picks one per element."""

    condition: Node
    if_true: Node
    if_false: Node

    def evaluate(self, values: Mapping[str, Any], xp: Any) -> Any:
        condition = xp.asarray(self.condition.evaluate(values, xp)) != 0
        return xp.where(condition, self.if_true.evaluate(values, xp), self.if_false.evaluate(values, xp))


@dataclass(frozen=True)
class FunctionCall:
    """A call of one of :data:`FUNCTIONS` (``ifelse`` becomes a :class:`Conditional`)."""

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
        return getattr(xp, _XP_NAMES.get(self.function, self.function))(args[0])


Node = Number | Parameter | Negation | BinaryOperation | Comparison | Logical | Not | Conditional | FunctionCall

_ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}  # fmt: skip
_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "===": operator.eq, "!==": operator.ne,
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

    >>> expr = parse_expression("1 + 2*cW + cW^2")
    >>> float(expr.evaluate({"cW": 0.5}))
    2.25
    >>> str(expr)
    '1 + 2*cW + cW^2'
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
        if xp is not np:
            return xp.asarray(self.root.evaluate(values, xp))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf: −ln L = +inf
            return xp.asarray(self.root.evaluate(values, xp))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def parse_expression(text: str, *, pointer: str = "") -> Expression:
    """Parse ``text`` into an :class:`Expression`, accepting only the formula language.

    Raises :class:`InvalidExpression` (one line: ``pointer``, the text, what was rejected).
    Parts without parameters are computed once here and must give finite numbers.

    >>> parse_expression("2 * sqrt(4) * mu").root
    BinaryOperation(operator='*', left=Number(value=4.0), right=Parameter(name='mu'))
    """
    from .formula_parser import parse_tree

    if not isinstance(text, str):
        raise rejection(pointer, text, f"a formula must be a string, not {type(text).__name__}")
    root, names = parse_tree(text, pointer)
    return Expression(text, root, frozenset(names), pointer)


def rejection(pointer: str, text: object, problem: str) -> InvalidExpression:
    """The one-line error of a rejected formula."""
    shown = text if not isinstance(text, str) or len(text) <= 100 else text[:97] + "..."
    where = f"{pointer}: " if pointer else ""
    err = InvalidExpression(f"{where}{shown!r}: {problem}; {ALLOWED}")
    err.pointer = pointer
    return err


def fold_constant(node: Node) -> float | None:
    """The value of ``node`` if it holds no parameter (nan if it is not finite), else None."""
    children = _children(node)
    if not children or not all(isinstance(child, Number) for child in children):
        return None
    try:
        with np.errstate(all="raise"):
            value = float(node.evaluate({}, np))
    except (ArithmeticError, ValueError, TypeError):
        value = math.nan
    return value


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Negation, Not)):
        return (node.operand,)
    if isinstance(node, (BinaryOperation, Comparison, Logical)):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.condition, node.if_true, node.if_false)
    if isinstance(node, FunctionCall):
        return node.arguments
    return ()
