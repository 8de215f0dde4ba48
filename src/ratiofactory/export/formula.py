"""Formula expressions written as RooFit (TFormula) expressions.

The parsed tree of :mod:`ratiofactory.expressions` is printed with ``@i`` references to
the RooFit variables in the order of ``names``; every operation is bracketed, so
precedence never depends on TFormula's rules.

>>> from ratiofactory.expressions import parse_expression
>>> roofit_formula(parse_expression("mu - sqrt(mu)"), ["mu"])
'(@0 - sqrt(@0))'
>>> roofit_formula(parse_expression("max(cW, 0.5)**2 / abs(cB)"), ["cB", "cW"])
'(pow(TMath::Max(@1, 0.5), 2.0) / fabs(@0))'
>>> roofit_formula(parse_expression("mu > 1 ? sqrt(mu) : mu"), ["mu"])
'((((@0 > 1.0) ? 1.0 : 0.0) != 0) ? sqrt(@0) : @0)'
"""

from __future__ import annotations

from collections.abc import Sequence

from ..expressions import (
    APPROX_ULPS,
    BinaryOperation,
    Comparison,
    Conditional,
    Expression,
    FunctionCall,
    Logical,
    Negation,
    Node,
    Not,
    Number,
    Parameter,
)

__all__ = ["roofit_formula"]

_FUNCTIONS = {"sqrt": "sqrt", "exp": "exp", "log": "log", "abs": "fabs", "pow": "pow", "sin": "sin",
              "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan"}
_EPSILON = 2.220446049250313e-16


def roofit_formula(expression: Expression, names: Sequence[str]) -> str:
    """``expression`` as a TFormula text; parameter ``names[i]`` becomes ``@i``."""
    position = {name: i for i, name in enumerate(names)}
    return _write(expression.root, position)


def _write(node: Node, position: dict[str, int]) -> str:
    if isinstance(node, Number):
        return repr(float(node.value))
    if isinstance(node, Parameter):
        return f"@{position[node.name]}"
    if isinstance(node, Negation):
        return f"(-{_write(node.operand, position)})"
    if isinstance(node, BinaryOperation):
        left, right = _write(node.left, position), _write(node.right, position)
        if node.operator == "**":
            return f"pow({left}, {right})"
        return f"({left} {node.operator} {right})"
    if isinstance(node, Comparison):
        left, right = _write(node.left, position), _write(node.right, position)
        if node.operator in ("==", "!="):  # HS3's approximate equality, as ratiofactory evaluates it
            tolerance = repr(APPROX_ULPS * _EPSILON)
            close = f"(fabs({left} - {right}) <= {tolerance} * TMath::Max(fabs({left}), fabs({right})))"
            return close if node.operator == "==" else f"(!{close})"
        operator = {"===": "==", "!==": "!="}.get(node.operator, node.operator)
        return f"(({left} {operator} {right}) ? 1.0 : 0.0)"
    if isinstance(node, Logical):
        left, right = _write(node.left, position), _write(node.right, position)
        return f"((({left} != 0) {node.operator} ({right} != 0)) ? 1.0 : 0.0)"
    if isinstance(node, Not):
        return f"(({_write(node.operand, position)} == 0) ? 1.0 : 0.0)"
    if isinstance(node, Conditional):
        condition = _write(node.condition, position)
        return f"(({condition} != 0) ? {_write(node.if_true, position)} : {_write(node.if_false, position)})"
    if isinstance(node, FunctionCall):
        args = [_write(arg, position) for arg in node.arguments]
        if node.function in ("min", "max"):
            name = "TMath::Min" if node.function == "min" else "TMath::Max"
            text = args[0]
            for arg in args[1:]:
                text = f"{name}({text}, {arg})"
            return text
        return f"{_FUNCTIONS[node.function]}({', '.join(args)})"
    raise TypeError(f"unknown formula node {node!r}")
