"""What every workspace-algebra operation checks before it returns a specification."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import consistency, schema
from ..errors import InvalidExpression, InvalidModel, RatiofactoryError
from ..parameters import (
    binned_formula_requirements,
    binned_requirements,
    check_shared_parameters,
    unbinned_requirements,
)

CHANNEL_LISTS = ("channels", "unbinned_channels")


class InvalidWorkspaceOperation(RatiofactoryError, ValueError):
    """A combine, prune or rename that cannot give a consistent workspace."""


def checked(spec: dict[str, Any], operation: str) -> dict[str, Any]:
    """``spec`` after the schema, the consistency rules, every formula and the parameter
    kinds were checked: an operation must not write a workspace that only fails at fit."""
    schema.validate(spec)
    consistency.check_consistency(spec)
    binned = [binned_requirements(c, f"/channels/{i}") for i, c in enumerate(spec.get("channels", []))]
    try:
        unbinned = [binned_formula_requirements(c, f"/channels/{i}") for i, c in enumerate(spec.get("channels", []))]
        unbinned += [unbinned_requirements(c, f"/unbinned_channels/{i}")
                     for i, c in enumerate(spec.get("unbinned_channels", []))]
        check_shared_parameters(binned, unbinned)
    except (InvalidModel, InvalidExpression) as err:
        raise InvalidWorkspaceOperation(f"{operation}: the result would not be a valid model: {err}") from None
    _check_binned_kinds(binned, operation)
    return spec


#: binned modifier types that may share a parameter (pyhf's paramset kinds)
_BINNED_KIND = {"normsys": "constrained nuisance parameter", "histosys": "constrained nuisance parameter",
                "normfactor": "free scale factor", "lumi": "luminosity", "shapesys": "shapesys",
                "staterror": "staterror", "shapefactor": "shapefactor"}


def _check_binned_kinds(binned: Sequence[Mapping[str, list[Any]]], operation: str) -> None:
    first: dict[str, Any] = {}
    for reqs in binned:
        for name, entries in reqs.items():
            for entry in entries:
                kind = _BINNED_KIND.get(entry.kind, entry.kind)
                seen = first.setdefault(name, (kind, entry))
                if seen[0] != kind:
                    raise InvalidWorkspaceOperation(
                        f"{operation}: parameter {name!r} would be a {entry.kind} at {entry.pointer} but a "
                        f"{seen[1].kind} at {seen[1].pointer}; a shared name needs one kind of parameter "
                        "(rename one of them)"
                    )


def all_channels(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for key in CHANNEL_LISTS:
        yield from spec.get(key, [])


InvalidWorkspaceOperation.__module__ = "ratiofactory.algebra"  # where users import it from
