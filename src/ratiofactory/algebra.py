"""Workspace algebra on plain dicts: combine, prune, rename, sort.

Every function takes specifications (dicts, e.g. ``Workspace.spec`` or a pyhf workspace
loaded with ``json.load``), never modifies them, and returns a new specification that
has passed :func:`ratiofactory.schema.validate` and
:func:`ratiofactory.consistency.check_consistency`. Binned (pyhf) and unbinned channels are
handled alike; a channel name is unique across both kinds.

Join modes of :func:`combine`, as pyhf's:

- ``"none"``: the workspaces may share no channel, observation or measurement name;
- ``"outer"``: shared names are allowed when the two items are identical; measurements
  of the same name must have the same POI and their parameter settings are merged
  (a parameter configured differently on the two sides is an error);
- ``"left outer"`` / ``"right outer"``: for a shared name the left (right) item wins.

``merge_channels=True`` (outer joins only) merges same-named channels sample by sample.

File references (``{"path": ...}``) are relative to a workspace's directory. When the
two workspaces live in different directories, :func:`combine` rewrites the paths of
both to the combined workspace's directory (``base_dir``, the left one's by default);
a file outside that directory cannot be referenced safely and is refused. sha256
digests are kept.

>>> left = {"version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [{"name": "s", "data": [5.0],
...         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}]}],
...     "observations": [{"name": "SR", "data": [6.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}
>>> right = rename(left, channels={"SR": "CR"})
>>> [c["name"] for c in combine(left, right, join="outer")["channels"]]
['SR', 'CR']
>>> combine(left, left)
Traceback (most recent call last):
...
ratiofactory.algebra.InvalidWorkspaceOperation: combine (join='none'): both workspaces define channel 'SR'; rename one of them or choose join='outer', 'left outer' or 'right outer'
"""

from __future__ import annotations

import copy
import keyword
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from . import consistency, schema
from .errors import InvalidExpression, InvalidModel, RatiofactoryError
from .expressions import CONSTANTS, FUNCTIONS, parse_expression
from .files import file_references
from .parameters import (
    binned_formula_requirements,
    binned_requirements,
    check_shared_parameters,
    unbinned_requirements,
)

__all__ = ["JOINS", "InvalidWorkspaceOperation", "combine", "prune", "rebase_paths", "rename", "sorted_spec"]

JOINS = ("none", "outer", "left outer", "right outer")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHANNEL_LISTS = ("channels", "unbinned_channels")


class InvalidWorkspaceOperation(RatiofactoryError, ValueError):
    """A combine, prune or rename that cannot give a consistent workspace."""


def _checked(spec: dict[str, Any], operation: str) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- combine


def _join_items(
    left: Sequence[Mapping], right: Sequence[Mapping], join: str, what: str, merge_key: str | None = None
) -> list[dict]:
    primary, secondary = (right, left) if join == "right outer" else (left, right)
    joined = [copy.deepcopy(dict(item)) for item in primary]
    position = {item["name"]: i for i, item in enumerate(joined)}
    for item in secondary:
        name = item["name"]
        if name not in position:
            joined.append(copy.deepcopy(dict(item)))
            continue
        if join == "none":
            raise InvalidWorkspaceOperation(
                f"combine (join='none'): both workspaces define {what} {name!r}; rename one of them "
                "or choose join='outer', 'left outer' or 'right outer'"
            )
        if merge_key is not None:
            target = joined[position[name]]
            target[merge_key] = _join_items(target[merge_key], item[merge_key], "left outer", "sample")
        elif join == "outer" and dict(item) != joined[position[name]]:
            raise InvalidWorkspaceOperation(
                f"combine (join='outer'): the two workspaces define {what} {name!r} differently; "
                "make them identical, rename one, or choose join='left outer' or 'right outer'"
            )
    return joined


def _join_measurements(left: Sequence[Mapping], right: Sequence[Mapping], join: str) -> list[dict]:
    if join != "outer":
        return _join_items(left, right, join, "measurement")
    joined = [copy.deepcopy(dict(m)) for m in left]
    position = {m["name"]: i for i, m in enumerate(joined)}
    for measurement in right:
        name = measurement["name"]
        if name not in position:
            joined.append(copy.deepcopy(dict(measurement)))
            continue
        target = joined[position[name]]["config"]
        if target["poi"] != measurement["config"]["poi"]:
            raise InvalidWorkspaceOperation(
                f"combine (join='outer'): measurement {name!r} has POI {target['poi']!r} on the left "
                f"and {measurement['config']['poi']!r} on the right"
            )
        target["parameters"] = _join_items(
            target.get("parameters", []), measurement["config"].get("parameters", []), "outer",
            f"parameter configuration of measurement {name!r}:",
        )
    return joined


def combine(
    left: Mapping[str, Any],
    right: Mapping[str, Any],
    *,
    join: str = "none",
    merge_channels: bool = False,
    left_base_dir: str | Path | None = None,
    right_base_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The combination of two workspace specifications (see the module docstring).

    With ``left_base_dir``/``right_base_dir`` (the directories the specs' relative file
    paths start from), the paths are rewritten relative to ``base_dir`` (default:
    ``left_base_dir``), the directory the combined workspace will live in.
    """
    if join not in JOINS:
        raise InvalidWorkspaceOperation(f"unknown join {join!r}; choose one of {', '.join(map(repr, JOINS))}")
    if merge_channels and join == "none":
        raise InvalidWorkspaceOperation("merge_channels needs join='outer', 'left outer' or 'right outer'")
    if left.get("version") != right.get("version"):
        raise InvalidWorkspaceOperation(
            f"combine: workspace versions differ ({left.get('version')!r} and {right.get('version')!r})"
        )
    if base_dir is None:
        base_dir = left_base_dir
    if base_dir is not None:
        if left_base_dir is not None:
            left = rebase_paths(left, left_base_dir, base_dir)
        if right_base_dir is not None:
            right = rebase_paths(right, right_base_dir, base_dir)
    spec: dict[str, Any] = {"version": left["version"]}
    merge_key = "samples" if merge_channels else None
    for key in _CHANNEL_LISTS:
        if key in left or key in right:
            spec[key] = _join_items(left.get(key, []), right.get(key, []), join, "channel", merge_key)
    spec["observations"] = _join_items(left["observations"], right["observations"], join, "observation")
    spec["measurements"] = _join_measurements(left["measurements"], right["measurements"], join)
    return _checked(spec, f"combine (join={join!r})")


# ----------------------------------------------------------------------------- file paths


def rebase_paths(spec: Mapping[str, Any], old_base: str | Path, new_base: str | Path) -> dict[str, Any]:
    """A copy of ``spec`` whose relative file paths, written for ``old_base``, point to the
    same files from ``new_base``. Refuses a file outside ``new_base``; digests are kept."""
    old_base, new_base = Path(old_base).resolve(), Path(new_base).resolve()
    out = copy.deepcopy(dict(spec))
    if old_base == new_base:
        return out
    for pointer, found in file_references(out):
        ref = cast(dict[str, Any], found)  # a dict of the deep copy (JSON objects are dicts)
        target = (old_base / ref["path"]).resolve()
        if not target.is_relative_to(new_base):
            raise InvalidWorkspaceOperation(
                f"{pointer}/path: {target} lies outside the combined workspace's directory {new_base}; "
                "copy the file (or the workspace) under that directory first"
            )
        ref["path"] = Path(os.path.relpath(target, new_base)).as_posix()
    return out


# ----------------------------------------------------------------------------- prune, rename


def _all_channels(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for key in _CHANNEL_LISTS:
        yield from spec.get(key, [])


def _names(spec: Mapping[str, Any]) -> dict[str, set[str]]:
    channels = list(_all_channels(spec))
    modifiers, types, parameters = set(), set(), set()
    for channel in channels:
        for sample in channel["samples"]:
            parameters.update(sample.get("ratio", {}).get("parameters", []))
            for modifier in sample.get("modifiers", []):
                modifiers.add(modifier["name"])
                types.add(modifier["type"])
                if modifier["type"] == "formula":
                    parameters |= parse_expression(modifier["data"]["expression"]).parameters
    return {
        "channel": {c["name"] for c in channels},
        "sample": {s["name"] for c in channels for s in c["samples"]},
        "modifier": modifiers | parameters,
        "modifier type": types,
        "measurement": {m["name"] for m in spec["measurements"]},
    }


def _require(known: dict[str, set[str]], what: str, names: Iterable[str]) -> None:
    for name in names:
        if name not in known[what]:
            listed = ", ".join(sorted(known[what]))
            raise InvalidWorkspaceOperation(f"no {what} {name!r} in the workspace; known: {listed}")


def prune(
    spec: Mapping[str, Any],
    *,
    modifiers: Iterable[str] = (),
    modifier_types: Iterable[str] = (),
    samples: Iterable[str] = (),
    channels: Iterable[str] = (),
    measurements: Iterable[str] = (),
) -> dict[str, Any]:
    """``spec`` without the named modifiers (and their parameter settings), modifier
    types, samples, channels (and their observations) and measurements."""
    modifiers, modifier_types, samples = set(modifiers), set(modifier_types), set(samples)
    channels, measurements = set(channels), set(measurements)
    known = _names(spec)
    for what, names in (("modifier", modifiers), ("modifier type", modifier_types), ("sample", samples),
                        ("channel", channels), ("measurement", measurements)):
        _require(known, what, names)
    out = copy.deepcopy(dict(spec))
    for key in _CHANNEL_LISTS:
        if key not in out:
            continue
        out[key] = [c for c in out[key] if c["name"] not in channels]
        for channel in out[key]:
            channel["samples"] = [s for s in channel["samples"] if s["name"] not in samples]
            for sample in channel["samples"]:
                sample["modifiers"] = [
                    m for m in sample.get("modifiers", [])
                    if m["name"] not in modifiers and m["type"] not in modifier_types
                ]
    out["observations"] = [o for o in out["observations"] if o["name"] not in channels]
    out["measurements"] = [m for m in out["measurements"] if m["name"] not in measurements]
    _refuse_pruned_formula_parameters(out, modifiers)
    remaining = _names(out)["modifier"]
    for measurement in out["measurements"]:
        config = measurement["config"]  # settings of parameters that are gone go with them
        config["parameters"] = [p for p in config.get("parameters", [])
                                if p["name"] in remaining or p["name"] == config["poi"]]
    return _checked(out, "prune")


def _formula_uses(spec: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name → pointer of the first formula expression or parameterised ratio
    that uses it."""
    uses: dict[str, str] = {}
    for key in _CHANNEL_LISTS:
        for c, channel in enumerate(spec.get(key, [])):
            for s, sample in enumerate(channel["samples"]):
                for k, name in enumerate(sample.get("ratio", {}).get("parameters", [])):
                    uses.setdefault(name, f"/{key}/{c}/samples/{s}/ratio/parameters/{k}")
                for m, modifier in enumerate(sample.get("modifiers", [])):
                    if modifier["type"] == "formula":
                        for name in parse_expression(modifier["data"]["expression"]).parameters:
                            uses.setdefault(name, f"/{key}/{c}/samples/{s}/modifiers/{m}/data/expression")
    return uses


def _refuse_pruned_formula_parameters(spec: Mapping[str, Any], modifiers: Iterable[str]) -> None:
    uses = _formula_uses(spec)
    for name in sorted(modifiers):
        if name in uses:
            raise InvalidWorkspaceOperation(
                f"prune: {name!r} is a parameter of the formula or ratio model at {uses[name]}, which "
                "stays; pruning its modifiers and settings would not remove it. Prune the formula "
                "modifier (by its own name), its sample or its channel instead"
            )


def _rename_in_expression(expression: str, renames: Mapping[str, str]) -> str:
    used = parse_expression(expression).parameters
    for old, new in renames.items():
        if old in used:
            expression = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w(])", new, expression)
    return expression


def rename(
    spec: Mapping[str, Any],
    *,
    modifiers: Mapping[str, str] | None = None,
    samples: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
    measurements: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``spec`` with modifiers/parameters (also inside formula expressions, the inputs of
    parameterised ratios, measurement settings and the POI), samples, channels (and their observations) and measurements
    renamed by ``{old: new}`` maps."""
    modifiers, samples = dict(modifiers or {}), dict(samples or {})
    channels, measurements = dict(channels or {}), dict(measurements or {})
    known = _names(spec)
    for what, names in (("modifier", modifiers), ("sample", samples), ("channel", channels),
                        ("measurement", measurements)):
        _require(known, what, names)
    uses = _formula_uses(spec)
    for old, new in modifiers.items():
        _check_new_parameter_name(old, new)
        if old in uses and not _IDENTIFIER.fullmatch(new):
            raise InvalidWorkspaceOperation(
                f"rename: {old!r} → {new!r}: {old!r} appears in the formula at {uses[old]}/data/expression, "
                f"where {new!r} would not read as one parameter name (use letters, digits and _)"
            )
    out = copy.deepcopy(dict(spec))
    for channel in _all_channels(out):
        channel["name"] = channels.get(channel["name"], channel["name"])
        for sample in channel["samples"]:
            sample["name"] = samples.get(sample["name"], sample["name"])
            if "parameters" in sample.get("ratio", {}):
                sample["ratio"]["parameters"] = [modifiers.get(n, n) for n in sample["ratio"]["parameters"]]
            for modifier in sample.get("modifiers", []):
                modifier["name"] = modifiers.get(modifier["name"], modifier["name"])
                if modifier["type"] == "formula":
                    data = modifier["data"]
                    data["expression"] = _rename_in_expression(data["expression"], modifiers)
    for observation in out["observations"]:
        observation["name"] = channels.get(observation["name"], observation["name"])
    for measurement in out["measurements"]:
        measurement["name"] = measurements.get(measurement["name"], measurement["name"])
        config = measurement["config"]
        config["poi"] = modifiers.get(config["poi"], config["poi"])
        for parameter in config.get("parameters", []):
            parameter["name"] = modifiers.get(parameter["name"], parameter["name"])
    return _checked(out, "rename")


def reserved_names() -> frozenset[str]:
    """Names a parameter may not take: the formula language's functions, constants and
    refused words, and Python's keywords.

    >>> {"sqrt", "PI", "TRUE", "and", "lambda", "None"} <= reserved_names()
    True
    """
    from .formula_parser import _WORDS

    return frozenset(FUNCTIONS) | frozenset(CONSTANTS) | frozenset(_WORDS) | frozenset(keyword.kwlist)


def _check_new_parameter_name(old: str, new: object) -> None:
    if not isinstance(new, str) or not new:
        raise InvalidWorkspaceOperation(f"rename: {old!r} → {new!r}: a parameter name cannot be empty")
    if new in reserved_names() or new.startswith("__"):
        raise InvalidWorkspaceOperation(
            f"rename: {old!r} → {new!r}: {new!r} is reserved by the formula language "
            f"(its functions, constants {', '.join(CONSTANTS)}, words such as 'and', Python keywords, "
            "names starting with '__'); choose another name"
        )


def sorted_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with channels, samples, modifiers (by name, type), observations,
    measurements and parameter settings in alphabetical order. The order of an unbinned
    channel's observables is kept: it is the input order of its ONNX models."""
    out = copy.deepcopy(dict(spec))
    by_name = lambda item: item["name"]
    for key in _CHANNEL_LISTS:
        if key in out:
            out[key].sort(key=by_name)
    for channel in _all_channels(out):
        channel["samples"].sort(key=by_name)
        for sample in channel["samples"]:
            sample.get("modifiers", []).sort(key=lambda m: (m["name"], m["type"]))
    out["observations"].sort(key=by_name)
    out["measurements"].sort(key=by_name)
    for measurement in out["measurements"]:
        measurement["config"].get("parameters", []).sort(key=by_name)
    return _checked(out, "sort")
