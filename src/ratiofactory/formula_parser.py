"""Tokeniser and parser of the formula language (HS3 generic expressions).

A hand-written precedence-climbing parser over a whitelist of tokens; it builds the
tree of :mod:`ratiofactory.expressions` and never calls ``eval``. Precedence, lowest
first (C's conventions, with ``^`` binding tighter than unary minus as in mathematics):

=====================  ==============================  =====================
level                  operators                       associativity
=====================  ==============================  =====================
conditional            ``c ? a : b``                   right
logical or             ``||``                          left
logical and            ``&&``                          left
comparison             ``== != === !== < <= > >=``     none (no chains)
additive               ``+ -``                         left
multiplicative         ``* /``                         left
unary                  ``- + !``                       prefix
power                  ``^`` (``**``)                  right
=====================  ==============================  =====================

>>> root, names = parse_tree("-mu^2 + (x > 1 ? 2 : 3)", "")
>>> root.left
Negation(operand=BinaryOperation(operator='**', left=Parameter(name='mu'), right=Number(value=2.0)))
>>> sorted(names)
['mu', 'x']
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import InvalidExpression
from .expressions import (
    CONSTANTS,
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    BinaryOperation,
    Comparison,
    Conditional,
    FunctionCall,
    Logical,
    Negation,
    Node,
    Not,
    Number,
    Parameter,
    fold_constant,
    rejection,
)

__all__ = ["parse_tree"]

_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>===|!==|==|!=|<=|>=|&&|\|\||\*\*|[-+*/^<>!(),?:])"
)
_REJECTED_CHARACTERS = {
    "%": "the operator '%' is", "@": "the operator '@' is", "~": "the operator '~' is",
    "&": "the operator '&' (write && for logical and) is", "|": "the operator '|' (write || for logical or) is",
    "=": "'=' (assignments and keyword arguments do not exist; == compares) is",
    "[": "subscripts are", "]": "subscripts are", "{": "braces are", "}": "braces are", ";": "';' is",
    "'": "strings are", '"': "strings are", "#": "comments (#) are", "\\": "backslashes are",
}  # fmt: skip
_WORDS = {
    "and": "write && for logical and", "or": "write || for logical or", "not": "write ! for logical not",
    "if": "write condition ? a : b or ifelse(condition, a, b)", "else": "write condition ? a : b",
    "True": "write TRUE", "False": "write FALSE", "None": "there is no None", "lambda": "no lambda expressions",
    "in": "no 'in'", "is": "write === for exact equality", "import": "no imports",
}  # fmt: skip
_COMPARISONS = ("==", "!=", "===", "!==", "<", "<=", ">", ">=")
_BINARY = {
    "||": 1, "&&": 2, **dict.fromkeys(_COMPARISONS, 3), "+": 4, "-": 4, "*": 5, "/": 5, "^": 7, "**": 7,
}  # fmt: skip
_UNARY_POWER = 6


def parse_tree(text: str, pointer: str) -> tuple[Node, set[str]]:
    """The tree of ``text`` and the parameter names in it; raises :class:`InvalidExpression`."""
    if len(text) > MAX_LENGTH:
        raise rejection(pointer, text, f"a formula may have at most {MAX_LENGTH} characters")
    parser = _Parser(text, pointer)
    if not parser.tokens:
        raise rejection(pointer, text, "the formula is empty")
    try:
        root = parser.expression(0, 0)
    except RecursionError:
        raise parser.reject(f"formulas may nest at most {MAX_DEPTH} operations deep") from None
    if parser.position < len(parser.tokens):
        raise parser.unexpected()
    return root, parser.names


def _tokenize(text: str, reject: Any) -> list[tuple[str, str, int]]:
    """(kind, text, column) of each token; kind is 'number', 'name' or 'op'."""
    tokens: list[tuple[str, str, int]] = []
    at = 0
    while at < len(text):
        if text.startswith("//", at):
            raise reject("the operator '//' is not allowed (/ divides as floats)")
        match = _TOKEN.match(text, at)
        if match is None:
            char = text[at]
            if char == ".":
                raise reject(_dot(text, at, tokens))
            if char.isalpha() or char == "_":
                word = re.match(r"\w+", text[at:])
                raise reject(f"parameter name {word.group() if word else char!r} must be ASCII letters, digits and _")
            what = _REJECTED_CHARACTERS.get(char, f"the character {char!r} is")
            raise reject(f"{what} not allowed in formulas")
        kind = match.lastgroup
        if kind == "number" and re.match(r"[A-Za-z0-9_.]", text[match.end() : match.end() + 1]):
            bad = re.match(r"[\w.]+", text[at:])
            raise reject(f"{bad.group() if bad else match.group()!r} is not a number")
        if kind != "space":
            tokens.append((kind or "", match.group(), at + 1))
        at = match.end()
    return tokens


def _dot(text: str, at: int, tokens: list[tuple[str, str, int]]) -> str:
    if tokens and (tokens[-1][0] == "name" or tokens[-1][1] == ")"):
        attribute = re.match(r"\.\w*", text[at:])
        return f"attribute access ({attribute.group() if attribute else '.'}) is not allowed in formulas"
    return f"'.' at column {at + 1} is not allowed here"


class _Parser:
    def __init__(self, text: str, pointer: str) -> None:
        self.text, self.pointer = text, pointer
        self.tokens = _tokenize(text, self.reject)
        self.position = 0
        self.names: set[str] = set()
        self.depth: dict[int, int] = {}
        self.span: dict[int, tuple[int, int]] = {}

    # -- helpers ------------------------------------------------------------------------

    def reject(self, problem: str) -> InvalidExpression:
        return rejection(self.pointer, self.text, problem)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            last = self.tokens[-1][1] if self.tokens else ""
            raise self.reject(f"not a valid formula (it ends too early, after {last!r})")
        self.position += 1
        return token

    def expect(self, symbol: str, context: str) -> tuple[str, str, int]:
        token = self.take() if self.peek() is not None else None
        if token is None:
            raise self.reject(f"not a valid formula ({context}: missing {symbol!r} at the end)")
        if token[1] != symbol:
            raise self.reject(f"not a valid formula ({context}: expected {symbol!r} at column {token[2]}, found {token[1]!r})")
        return token

    def unexpected(self) -> InvalidExpression:
        kind, value, column = self.tokens[self.position]
        if kind == "name" and value in _WORDS:
            return self.reject(f"{value!r} is not part of the formula language ({_WORDS[value]})")
        hint = "; write * for products" if kind in ("name", "number") or value == "(" else ""
        return self.reject(f"not a valid formula (unexpected {value!r} at column {column}{hint})")

    def node(self, node: Node, start: int, end: int, *children: Node) -> Node:
        """Record depth and source span of ``node``; fold it when it holds no parameter."""
        depth = 1 + max((self.depth.get(id(c), 1) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise self.reject(f"formulas may nest at most {MAX_DEPTH} operations deep")
        value = fold_constant(node)
        if value is not None:
            if not math.isfinite(value):
                part = self.text[start - 1 : end - 1]
                raise self.reject(f"the constant part {part!r} is not a finite number")
            node, depth = Number(value), 1
        self.depth[id(node)] = depth
        self.span[id(node)] = (start, end)
        return node

    def end_of(self, node: Node) -> int:
        return self.span[id(node)][1]

    def start_of(self, node: Node) -> int:
        return self.span[id(node)][0]

    # -- grammar ------------------------------------------------------------------------

    def expression(self, min_power: int, nesting: int) -> Node:
        if nesting > MAX_DEPTH:
            raise self.reject(f"formulas may nest at most {MAX_DEPTH} operations deep")
        left = self.prefix(nesting)
        while (token := self.peek()) is not None and token[0] == "op":
            symbol = token[1]
            if symbol == "?" and min_power == 0:
                left = self.conditional(left, nesting)
                continue
            power = _BINARY.get(symbol)
            if power is None or power < min_power:
                break
            self.take()
            right_power = power if symbol in ("^", "**") else power + 1
            right = self.expression(right_power, nesting + 1)
            left = self.binary(symbol, left, right)
            following = self.peek()
            if symbol in _COMPARISONS and following is not None and following[1] in _COMPARISONS:
                raise self.reject(
                    f"chained comparisons ({symbol} ... {following[1]}) are not allowed; write (a < b) && (b < c)"
                )
        return left

    def binary(self, symbol: str, left: Node, right: Node) -> Node:
        node: Node
        if symbol in ("^", "**"):
            node = BinaryOperation("**", left, right)
        elif symbol in _COMPARISONS:
            node = Comparison(symbol, left, right)
        elif symbol in ("&&", "||"):
            node = Logical(symbol, left, right)
        else:
            node = BinaryOperation(symbol, left, right)
        return self.node(node, self.start_of(left), self.end_of(right), left, right)

    def conditional(self, condition: Node, nesting: int) -> Node:
        self.take()  # '?'
        if_true = self.expression(0, nesting + 1)
        self.expect(":", "a conditional 'c ? a : b'")
        if_false = self.expression(0, nesting + 1)
        node = Conditional(condition, if_true, if_false)
        return self.node(node, self.start_of(condition), self.end_of(if_false), condition, if_true, if_false)

    def prefix(self, nesting: int) -> Node:
        kind, value, column = self.take()
        if kind == "op" and value in ("-", "+", "!"):
            operand = self.expression(_UNARY_POWER, nesting + 1)
            if value == "+":
                return operand
            node: Node = Negation(operand) if value == "-" else Not(operand)
            return self.node(node, column, self.end_of(operand), operand)
        if kind == "op" and value == "(":
            inner = self.expression(0, nesting + 1)
            close = self.expect(")", f"the '(' at column {column}")
            self.span[id(inner)] = (column, close[2] + 1)
            return inner
        if kind == "number":
            number = float(value)
            if not math.isfinite(number):
                raise self.reject(f"the number {value} is too large")
            return self.node(Number(number), column, column + len(value))
        if kind == "name":
            return self.name(value, column, nesting)
        self.position -= 1
        raise self.unexpected()

    def name(self, name: str, column: int, nesting: int) -> Node:
        following = self.peek()
        called = following is not None and following[1] == "("
        if called and following is not None and following[2] == column + len(name):
            return self.call(name, column, nesting)
        if name in _WORDS:
            raise self.reject(f"{name!r} is not part of the formula language ({_WORDS[name]})")
        if name in FUNCTIONS:
            if called:
                raise self.reject(f"no space is allowed between the function name {name!r} and '(' (HS3)")
            raise self.reject(f"{name!r} is a function, not a parameter name (call it: {name}(...))")
        if name in CONSTANTS:
            return self.node(Number(CONSTANTS[name]), column, column + len(name))
        if name.startswith("__"):
            raise self.reject(f"names starting with '__' such as {name!r} are not allowed")
        self.names.add(name)
        return self.node(Parameter(name), column, column + len(name))

    def call(self, name: str, column: int, nesting: int) -> Node:
        if name not in FUNCTIONS:
            raise self.reject(f"unknown function {name!r}")
        self.take()  # '('
        arguments: list[Node] = []
        if self.peek() is not None and self.peek()[1] == ")":  # type: ignore[index]
            close = self.take()
        else:
            while True:
                arguments.append(self.expression(0, nesting + 1))
                close = self.expect_one_of((",", ")"), f"the call of {name!r} at column {column}")
                if close[1] == ")":
                    break
        least, most = FUNCTIONS[name]
        if len(arguments) < least or (most is not None and len(arguments) > most):
            wanted = f"{least}" if least == most else f"at least {least}"
            raise self.reject(f"{name} takes {wanted} argument{'s' * (least > 1)}, got {len(arguments)}")
        node: Node = Conditional(*arguments) if name == "ifelse" else FunctionCall(name, tuple(arguments))
        return self.node(node, column, close[2] + 1, *arguments)

    def expect_one_of(self, symbols: tuple[str, ...], context: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise self.reject(f"not a valid formula ({context}: missing ')' at the end)")
        if token[1] not in symbols:
            raise self.reject(
                f"not a valid formula ({context}: expected ',' or ')' at column {token[2]}, found {token[1]!r})"
            )
        return self.take()
