"""Pruning and renaming channels, samples, modifiers (parameters) and measurements."""

from __future__ import annotations

import copy
import keyword
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..expressions import CONSTANTS, FUNCTIONS, parse_expression
from .checks import CHANNEL_LISTS, InvalidWorkspaceOperation, all_channels, checked

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _names(spec: Mapping[str, Any]) -> dict[str, set[str]]:
    channels = list(all_channels(spec))
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
    for key in CHANNEL_LISTS:
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
    return checked(out, "prune")


def _formula_uses(spec: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name → pointer of the first formula expression or parameterised ratio
    that uses it."""
    uses: dict[str, str] = {}
    for key in CHANNEL_LISTS:
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
    for channel in all_channels(out):
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
    return checked(out, "rename")


def reserved_names() -> frozenset[str]:
    """Names a parameter may not take: the formula language's functions, constants and
    refused words, and Python's keywords.

    >>> {"sqrt", "PI", "TRUE", "and", "lambda", "None"} <= reserved_names()
    True
    """
    from ..formula_parser import _WORDS

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
