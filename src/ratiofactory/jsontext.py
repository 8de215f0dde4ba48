"""Reading JSON text strictly: what Python's ``json`` accepts silently is an error here.

A workspace or a bundle manifest is untrusted input. :func:`loads` refuses, naming the
source and the JSON pointer (or line and column):

- duplicate keys in an object (``json`` keeps the last one silently);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON; ``json`` accepts them);
- numbers that do not fit a float64 (``1e999``, a 5000-digit integer, ``1e-999``, which
  would silently become 0);
- nesting deeper than :data:`MAX_DEPTH` levels (``json`` and ``copy.deepcopy`` would
  otherwise stop with a ``RecursionError``).

>>> loads('{"a": [1, 2.5, {"b": null}]}', "ws.json")
{'a': [1, 2.5, {'b': None}]}
>>> loads('{"a": 1, "a": 2}', "ws.json")
Traceback (most recent call last):
...
ratiofactory.errors.InvalidSpecification: ws.json: /: duplicate key 'a' in an object (JSON keeps only one of them silently); remove or rename one
>>> loads('{"a": [0, NaN]}', "ws.json")
Traceback (most recent call last):
...
ratiofactory.errors.InvalidSpecification: ws.json: /a/1: NaN is not a JSON number; write a finite number
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from ratiofactory.errors import InvalidSpecification

__all__ = ["MAX_DEPTH", "check_depth", "loads"]

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted (a workspace needs about 8)."""

_MAX_DIGITS = 308  # longer integers do not fit a float64


class _Rejected:
    """Placeholder left in the parsed tree where a value is refused (found afterwards by
    its JSON pointer, which the ``json`` hooks do not know)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _Duplicated(dict[str, Any]):
    """An object that repeated the key ``duplicate``."""

    duplicate: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    flagged = _Duplicated(result)
    flagged.duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
    return flagged


def _constant(text: str) -> _Rejected:
    return _Rejected(f"{text} is not a JSON number; write a finite number")


def _integer(text: str) -> int | _Rejected:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        return _Rejected(f"an integer of {len(text.lstrip('-'))} digits does not fit a float64")
    return int(text)


def _float(text: str) -> float | _Rejected:
    value = float(text)
    shown = text if len(text) <= 24 else f"{text[:12]}…({len(text)} characters)"
    if not math.isfinite(value):
        return _Rejected(f"the number {shown} does not fit a float64 (it would become {value})")
    if value == 0.0 and any(digit in "123456789" for digit in text.lower().partition("e")[0]):
        return _Rejected(f"the number {shown} is too small for a float64 (it would become 0)")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_integer, parse_float=_float
)


def loads(text: str, source: str) -> Any:
    """Parse ``text`` (from ``source``, named in errors) strictly; see the module docstring."""
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise InvalidSpecification(
            f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}", source=source
        ) from None
    except RecursionError:
        line, column = _too_deep_at(text)
        raise InvalidSpecification(
            f"objects and arrays nested more than {MAX_DEPTH} levels deep "
            f"at line {line}, column {column}",
            source=source,
        ) from None
    check_depth(value, source)
    return value


def check_depth(value: Any, source: str = "") -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and values :func:`loads` flagged;
    iterative, so any depth is reported rather than overflowing the stack."""
    for node, path in _containers(value):
        where = _pointer(path)
        if len(path) >= MAX_DEPTH:
            raise InvalidSpecification(
                f"objects and arrays nested more than {MAX_DEPTH} levels deep", where, source=source
            )
        if isinstance(node, _Duplicated):
            raise InvalidSpecification(
                f"duplicate key {node.duplicate!r} in an object (JSON keeps only one "
                "of them silently); remove or rename one",
                where,
                source=source,
            )
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, _Rejected):
                raise InvalidSpecification(item.problem, _pointer([*path, key]), source=source)


def _containers(value: Any) -> Iterator[tuple[Any, list[Any]]]:
    """Every dict and list in ``value`` with its path, depth first, without recursion."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        yield node, path
        if len(path) >= MAX_DEPTH:
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((item, [*path, key]) for key, item in items if isinstance(item, (dict, list)))


def _pointer(path: list[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}\n]')


def _too_deep_at(text: str) -> tuple[int, int]:
    """Line and column where the nesting first exceeds :data:`MAX_DEPTH` (strings skipped)."""
    depth, line, line_start = 0, 1, 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "\n":
            line, line_start = line + 1, match.end()
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, match.start() - line_start + 1
        elif token in "]}":
            depth -= 1
    return line, 1
