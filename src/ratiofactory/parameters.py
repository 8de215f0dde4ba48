"""Parameter bookkeeping: which parameters a workspace has and how they are constrained.

Unbinned modifiers declare their parameters with the same requirement records that
pyhf's own modifiers use, so a name shared between a binned and an unbinned channel is
one parameter with one constraint term, and the sharing rules are pyhf's:

==============  ===========================  ==================================
modifier        parameter kind               constraint
==============  ===========================  ==================================
``formula``     each name in the expression  none (free, like a normfactor)
``normfactor``  free                         none
``lumi``        Gaussian                     aux = lumi, σ from the measurement
``normsys``     nuisance parameter α         standard normal
``ratiosys``    nuisance parameter α         standard normal (like histosys)
spurious sig.   nuisance parameter α_ss      standard normal (like normsys)
ratio inputs    each name in ``parameters``  none (free, like a normfactor)
                of a parameterised ratio
==============  ===========================  ==================================

>>> reqs = unbinned_requirements({"name": "SR", "samples": [{"name": "S", "modifiers": [
...     {"name": "f", "type": "formula", "data": {"expression": "mu - sqrt(mu)"}},
...     {"name": "k", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]}]}, "/unbinned_channels/0")
>>> sorted(reqs), reqs["mu"][0].pointer
(['k', 'mu'], '/unbinned_channels/0/samples/0/modifiers/0')
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyhf
from pyhf.modifiers import histosys, lumi, normfactor, normsys
from pyhf.parameters import reduce_paramsets_requirements

from .errors import InvalidModel
from .expressions import parse_expression

__all__ = [
    "FormulaParameterWarning",
    "Requirement",
    "binned_formula_requirements",
    "binned_requirements",
    "check_shared_parameters",
    "formula_lookalikes",
    "make_paramsets",
    "unbinned_requirements",
]

#: binned modifier types whose parameter is a single number (can be shared with unbinned ones)
_SCALAR_BINNED = {"normfactor": normfactor, "normsys": normsys, "histosys": histosys, "lumi": lumi}

#: what each unbinned modifier type asks of its parameter (pyhf requirement records)
_UNBINNED = {"normfactor": normfactor, "normsys": normsys, "ratiosys": histosys, "lumi": lumi}


@dataclass(frozen=True)
class Requirement:
    """What one modifier asks of a parameter, and where in the workspace it was asked
    (``record`` is None for a binned vector parameter such as a shapesys)."""

    record: Mapping[str, Any] | None
    kind: str
    pointer: str


def unbinned_requirements(channel: Mapping[str, Any], pointer: str) -> dict[str, list[Requirement]]:
    """Parameter requirements of one unbinned channel, keyed by parameter name."""
    reqs: dict[str, list[Requirement]] = {}
    for s_idx, sample in enumerate(channel["samples"]):
        for k, name in enumerate(sample.get("ratio", {}).get("parameters", [])):
            record = normfactor.required_parset(None, None)  # free, like a normfactor
            where = f"{pointer}/samples/{s_idx}/ratio/parameters/{k}"
            reqs.setdefault(name, []).append(Requirement(record, "ratio input", where))
        for m_idx, modifier in enumerate(sample.get("modifiers", [])):
            where = f"{pointer}/samples/{s_idx}/modifiers/{m_idx}"
            kind = modifier["type"]
            if kind == "formula":
                _add_formula_requirements(reqs, modifier, where)
            else:
                record = _UNBINNED[kind].required_parset(None, modifier.get("data"))
                reqs.setdefault(modifier["name"], []).append(Requirement(record, kind, where))
    if "spurious_signal" in channel:  # its nuisance parameter: standard normal, like a normsys
        entry = channel["spurious_signal"]
        record = normsys.required_parset(None, {"hi": 1.0, "lo": 1.0})
        reqs.setdefault(entry["name"], []).append(
            Requirement(record, "spurious_signal", f"{pointer}/spurious_signal"))
    return reqs


def _add_formula_requirements(
    reqs: dict[str, list[Requirement]], modifier: Mapping[str, Any], where: str
) -> None:
    """Each name in a formula asks for a free parameter, like a normfactor."""
    expr = parse_expression(modifier["data"]["expression"], pointer=f"{where}/data/expression")
    for name in sorted(expr.parameters):
        record = normfactor.required_parset(None, None)
        reqs.setdefault(name, []).append(Requirement(record, "formula", where))


def binned_formula_requirements(channel: Mapping[str, Any], pointer: str) -> dict[str, list[Requirement]]:
    """Parameter requirements of the ``formula`` modifiers of one binned channel: pyhf
    never sees them (it sees a hidden placeholder, see :mod:`ratiofactory.binned_formulas`),
    so they are checked and created like an unbinned channel's."""
    reqs: dict[str, list[Requirement]] = {}
    for s_idx, sample in enumerate(channel["samples"]):
        for m_idx, modifier in enumerate(sample.get("modifiers", [])):
            if modifier["type"] == "formula":
                _add_formula_requirements(reqs, modifier, f"{pointer}/samples/{s_idx}/modifiers/{m_idx}")
    return reqs


def binned_requirements(channel: Mapping[str, Any], pointer: str) -> dict[str, list[Requirement]]:
    """Parameter requirements of one pyhf binned channel (scalar modifier types only;
    vector ones such as shapesys are recorded with ``record=None``; ``formula`` modifiers
    are left to :func:`binned_formula_requirements`)."""
    reqs: dict[str, list[Requirement]] = {}
    for s_idx, sample in enumerate(channel["samples"]):
        for m_idx, modifier in enumerate(sample.get("modifiers", [])):
            if modifier["type"] == "formula":
                continue
            where = f"{pointer}/samples/{s_idx}/modifiers/{m_idx}"
            module = _SCALAR_BINNED.get(modifier["type"])
            record = module.required_parset(sample["data"], modifier["data"]) if module else None
            reqs.setdefault(modifier["name"], []).append(Requirement(record, modifier["type"], where))
    return reqs


def _merge(into: dict[str, list[Requirement]], more: Mapping[str, list[Requirement]]) -> None:
    for name, reqs in more.items():
        into.setdefault(name, []).extend(reqs)


def check_shared_parameters(
    binned: Iterable[Mapping[str, list[Requirement]]],
    unbinned: Iterable[Mapping[str, list[Requirement]]],
) -> dict[str, list[Requirement]]:
    """Check that every parameter name shared across modifiers asks for one kind of
    parameter; return the unbinned requirements of names that pyhf does not own."""
    binned_all: dict[str, list[Requirement]] = {}
    for channel_reqs in binned:
        _merge(binned_all, channel_reqs)
    unbinned_all: dict[str, list[Requirement]] = {}
    for channel_reqs in unbinned:
        _merge(unbinned_all, channel_reqs)
    for name, reqs in unbinned_all.items():
        first = reqs[0]
        for other in [*binned_all.get(name, []), *reqs[1:]]:
            if other.record is None or first.record is None or dict(other.record) != dict(first.record):
                raise InvalidModel(
                    f"parameter '{name}' is a {other.kind} at {other.pointer} but a {first.kind} at "
                    f"{first.pointer}; a shared parameter needs one constraint type (rename one of them)"
                )
    return {name: reqs for name, reqs in unbinned_all.items() if name not in binned_all}


def _scalar_record(req: Requirement) -> dict[str, Any]:
    if req.record is None:
        raise InvalidModel(f"the {req.kind} at {req.pointer} has one parameter per bin; "
                           "an unbinned channel can share only single-number parameters")
    return dict(req.record)


def make_paramsets(
    requirements: Mapping[str, list[Requirement]], user_config: Iterable[Mapping[str, Any]]
) -> dict[str, pyhf.parameters.paramset]:
    """pyhf paramset objects for the given requirements, measurement settings applied."""
    user = {entry["name"]: entry for entry in user_config}
    try:
        reduced = reduce_paramsets_requirements(
            {name: [_scalar_record(r) for r in reqs] for name, reqs in requirements.items()}, user
        )
    except (pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidNameReuse) as err:
        raise InvalidModel(f"/measurements: parameter configuration: {err}") from None
    paramsets = {}
    for name, spec in reduced.items():
        needed = ("inits", "bounds", "auxdata", "sigmas")
        if any(spec.get(key) is None for key in needed if key in spec):
            where = requirements[name][0].pointer
            raise InvalidModel(
                f"parameter '{name}' ({requirements[name][0].kind} at {where}) needs a measurement "
                "config entry with 'auxdata', 'sigmas', 'inits' and 'bounds'"
            )
        cls = getattr(pyhf.parameters, spec.pop("paramset_type"))
        paramsets[name] = cls(**spec)
    return paramsets



class FormulaParameterWarning(UserWarning):
    """A parameter only formulas use looks like a typo of another (see :func:`formula_lookalikes`)."""


def formula_lookalikes(
    requirements: Iterable[Mapping[str, list[Requirement]]], user_config: Iterable[Mapping[str, Any]],
    poi: str | None = None,
) -> list[str]:
    """One line per parameter that only formulas use and the measurement does not configure
    whose name is close to the POI or a parameter that is configured or used by another
    modifier (``muu`` beside ``mu``): a typo there silently adds a free parameter.

    >>> reqs = {"mu": [Requirement(None, "normfactor", "/a")], "muu": [Requirement(None, "formula", "/b")]}
    >>> formula_lookalikes([reqs], [])[0]
    "parameter 'muu' (formula at /b) is used only by formulas and has no measurement setting, so it is a new free parameter: did you mean 'mu'?"
    """
    merged: dict[str, list[Requirement]] = {}
    for channel_reqs in requirements:
        _merge(merged, channel_reqs)
    configured = {entry["name"] for entry in user_config} | {poi}
    loose = {name for name, reqs in merged.items() if name not in configured and all(r.kind == "formula" for r in reqs)}
    anchored = sorted(set(merged) - loose)
    lines = []
    for name in sorted(loose):
        close = difflib.get_close_matches(name, anchored, n=2, cutoff=0.75)
        if close:
            lines.append(f"parameter '{name}' (formula at {merged[name][0].pointer}) is used only by formulas and "
                         "has no measurement setting, so it is a new free parameter: did you mean "
                         f"{' or '.join(map(repr, close))}?")
    return lines
