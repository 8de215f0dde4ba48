"""RooFit names of a model's parameters: HistFactory's conventions.

A parameter keeps its ratiofactory name when it is free (normfactor, formula parameters,
shapefactor bins get HistFactory's ``gamma_<name>_bin_<i>``); a Gaussian-constrained
nuisance parameter (normsys, histosys, ratiosys) is ``alpha_<name>``; the luminosity
keeps its name (HistFactory's own ``Lumi`` is fixed at 1, see :mod:`.histfactory`); staterror bins are ``gamma_stat_<channel>_bin_<i>`` and shapesys bins
``gamma_<name>_bin_<i>``. So a parameter shared by a binned channel (built by
HistFactory) and an unbinned channel is the same RooFit variable, and a RooFit or
Combine user sees the names HistFactory would give.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0, 3.0], [50.0, 40.0], [5.0, 4.0])
>>> roofit_names(model, model.spec)["uncorr_bkguncrt"]
['gamma_uncorr_bkguncrt_bin_0', 'gamma_uncorr_bkguncrt_bin_1']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._root import ExportError

__all__ = ["modifier_types", "roofit_names"]


def modifier_types(spec: Mapping[str, Any]) -> dict[str, set[str]]:
    """Parameter name → the modifier types that use it, over binned and unbinned channels."""
    types: dict[str, set[str]] = {}
    for channel in [*spec.get("channels", []), *spec.get("unbinned_channels", [])]:
        for sample in channel["samples"]:
            for modifier in sample.get("modifiers", []):
                if modifier["type"] == "formula":
                    continue
                types.setdefault(modifier["name"], set()).add(modifier["type"])
    return types


def _staterror_channel(spec: Mapping[str, Any], name: str) -> str:
    channels = {
        channel["name"]
        for channel in spec.get("channels", [])
        for sample in channel["samples"]
        for modifier in sample.get("modifiers", [])
        if modifier["name"] == name and modifier["type"] == "staterror"
    }
    if len(channels) != 1:
        raise ExportError(
            f"staterror '{name}' is used in channels {sorted(channels)}; HistFactory has one "
            "staterror per channel (rename them per channel to export)"
        )
    return channels.pop()


def roofit_names(model: Any, spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """Parameter name → RooFit variable name(s), one per component, in ``model``'s order."""
    types = modifier_types(spec)
    names: dict[str, list[str]] = {}
    for name in model.config.par_order:
        n = model.config.param_set(name).n_parameters
        kinds = types.get(name, set())
        if kinds & {"normsys", "histosys", "ratiosys"}:
            names[name] = [f"alpha_{name}"]
        elif "staterror" in kinds:
            names[name] = [f"gamma_stat_{_staterror_channel(spec, name)}_bin_{i}" for i in range(n)]
        elif kinds & {"shapesys", "shapefactor"}:
            names[name] = [f"gamma_{name}_bin_{i}" for i in range(n)]
        else:  # normfactor or formula parameter
            names[name] = [name] if n == 1 else [f"{name}_{i}" for i in range(n)]
    taken: dict[str, str] = {}
    for name, roofit in names.items():
        for item in roofit:
            if item in taken:
                raise ExportError(
                    f"parameters '{taken[item]}' and '{name}' would both be called '{item}' in RooFit; "
                    "rename one of them"
                )
            taken[item] = name
    return names
