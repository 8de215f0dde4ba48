"""The binned (pyhf) channels of a workspace as HistFactory builds them.

This is what pyhf's ``json2xml`` followed by ROOT's ``hist2workspace`` does, without the
XML and ROOT files in between: a ``RooStats.HistFactory.Measurement`` is filled from the
pyhf JSON (in-memory histograms of unit-width bins) and
``HistoToWorkspaceFactoryFast::MakeCombinedModel`` builds the workspace. The modifier
mapping is

==============  ==================================================================
pyhf            HistFactory
==============  ==================================================================
normfactor      NormFactor
normsys         OverallSys (FlexibleInterpVar, pyhf's code → ROOT's code)
histosys        HistoSys (PiecewiseInterpolation; code4p → 4, code0 → 0, code2 → 2)
lumi            NormFactor (the luminosity parameter keeps its pyhf name), with a
                Gaussian constraint added by the caller; HistFactory's own ``Lumi`` is
                fixed at 1 (ROOT 6.40 scales every sample by it, whatever
                NormalizeByTheory says, unlike pyhf's lumi modifier)
staterror       StatError (absolute errors on the nominal histogram, Gaussian, no threshold)
shapesys        ShapeSys with relative errors σ_b/n_b, Poisson constraint
shapefactor     ShapeFactor
formula         NormFactor placeholder ``binned_formula_<k>``, replaced afterwards by
                the RooFormulaVar of the formula (``RooWorkspace`` ``EDIT``; see
                :func:`ratiofactory.export.roofit.to_roofit`)
==============  ==================================================================

Afterwards every parameter gets the pyhf model's initial value, bounds and fixed flag,
and the global observables the observed auxdata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._root import ExportError

__all__ = ["build_histfactory"]

_NORMSYS_CODES = {"code0": 0, "code1": 1, "code2": 2, "code4": 4}
_HISTOSYS_CODES = {"code0": 0, "code2": 2, "code4p": 4}


def _histogram(root: Any, name: str, values: Sequence[float] | np.ndarray,
               errors: Sequence[float] | np.ndarray | None = None) -> Any:
    hist = root.TH1D(name, name, len(values), 0.0, float(len(values)))
    hist.SetDirectory(0)
    root.SetOwnership(hist, False)  # HistFactory's HistRef deletes the histograms it holds
    for i, value in enumerate(values):
        hist.SetBinContent(i + 1, float(value))
        hist.SetBinError(i + 1, 0.0 if errors is None else float(errors[i]))
    return hist


def build_histfactory(
    root: Any,
    spec: Mapping[str, Any],
    model: Any,
    names: Mapping[str, list[str]],
    keep: list[Any],
) -> tuple[Any, dict[str, Any]]:
    """A RooWorkspace built by HistFactory from the binned channels of ``spec`` (channel
    pdfs ``model_<channel>``), and the placeholder name → formula expression of every
    binned ``formula`` modifier."""
    from ..binned_formulas import split_binned_formulas

    HF = root.RooStats.HistFactory
    channels, formulas = split_binned_formulas(spec["channels"])
    placeholders = {f.placeholder: f"binned_formula_{k}" for k, f in enumerate(formulas)}
    for channel in channels:
        for sample in channel["samples"]:
            for modifier in sample.get("modifiers", []):
                modifier["name"] = placeholders.get(modifier["name"], modifier["name"])
    observations = {o["name"]: o for o in spec["observations"]}
    measurement = HF.Measurement("ratiofactory", "ratiofactory export")
    poi = model.config.poi_name
    if poi is not None:
        measurement.SetPOI(names[poi][0])
    measurement.SetLumi(1.0)
    measurement.SetLumiRelErr(0.1)
    measurement.AddConstantParam("Lumi")
    for channel_spec in channels:
        measurement.AddChannel(_channel(root, channel_spec, observations[channel_spec["name"]], keep))
    keep.append(measurement)
    factory = HF.HistoToWorkspaceFactoryFast(measurement)
    keep.append(factory)
    workspace = factory.MakeCombinedModel(measurement)
    if not workspace:
        raise ExportError("HistFactory could not build the binned channels (see ROOT's messages above)")
    _set_interpolation_codes(root, workspace, model)
    return workspace, {placeholders[f.placeholder]: f.expression for f in formulas}


def _channel(root: Any, channel_spec: Mapping[str, Any], observation: Mapping[str, Any], keep: list[Any]) -> Any:
    HF = root.RooStats.HistFactory
    name = channel_spec["name"]
    channel = HF.Channel(name)
    data = _histogram(root, f"{name}_data", observation["data"])
    keep.append(data)
    channel.SetData(data)
    channel.SetStatErrorConfig(0.0, "Gaussian")
    for sample_spec in channel_spec["samples"]:
        channel.AddSample(_sample(root, name, sample_spec, keep))
    return channel


def _sample(root: Any, channel: str, sample_spec: Mapping[str, Any], keep: list[Any]) -> Any:
    HF = root.RooStats.HistFactory
    label = f"{channel}_{sample_spec['name']}"
    nominal = np.asarray(sample_spec["data"], dtype=float)
    staterror = [m for m in sample_spec.get("modifiers", []) if m["type"] == "staterror"]
    hist = _histogram(root, f"{label}_nominal", nominal, staterror[0]["data"] if staterror else None)
    keep.append(hist)
    sample = HF.Sample(sample_spec["name"])
    sample.SetHisto(hist)
    sample.SetNormalizeByTheory(False)
    for modifier in sample_spec.get("modifiers", []):
        kind, mname, data = modifier["type"], modifier["name"], modifier["data"]
        if kind == "normfactor" or kind == "lumi":
            sample.AddNormFactor(mname, 1.0, 0.0, 10.0)
        elif kind == "normsys":
            sample.AddOverallSys(mname, float(data["lo"]), float(data["hi"]))
        elif kind == "histosys":
            histosys = HF.HistoSys()
            histosys.SetName(mname)
            lo = _histogram(root, f"{label}_{mname}_lo", data["lo_data"])
            hi = _histogram(root, f"{label}_{mname}_hi", data["hi_data"])
            histosys.SetHistoLow(lo)
            histosys.SetHistoHigh(hi)
            keep += [lo, hi, histosys]
            sample.AddHistoSys(histosys)
        elif kind == "staterror":
            sample.ActivateStatError()
        elif kind == "shapesys":
            relative = np.divide(np.asarray(data, dtype=float), nominal,
                                 out=np.zeros_like(nominal), where=nominal != 0)
            errors = _histogram(root, f"{label}_{mname}_relerr", relative)
            shapesys = HF.ShapeSys()
            shapesys.SetName(mname)
            shapesys.SetErrorHist(errors)
            shapesys.SetConstraintType(HF.Constraint.Poisson)
            keep += [errors, shapesys]
            sample.AddShapeSys(shapesys)
        elif kind == "shapefactor":
            sample.AddShapeFactor(mname)
        else:
            raise ExportError(f"channel '{channel}', sample '{sample_spec['name']}': modifier type "
                              f"'{kind}' has no HistFactory equivalent")
    keep.append(sample)
    return sample


def _set_interpolation_codes(root: Any, workspace: Any, model: Any) -> None:
    """pyhf's interpolation codes (its defaults: normsys code4, histosys code4p), and no
    clipping of interpolated bins at zero (pyhf's histosys does not clip)."""
    settings = getattr(model.binned.config, "modifier_settings", None) or {}
    normsys = settings.get("normsys", {}).get("interpcode", "code4")
    histosys = settings.get("histosys", {}).get("interpcode", "code4p")
    if normsys not in _NORMSYS_CODES or histosys not in _HISTOSYS_CODES:
        raise ExportError(f"interpolation codes normsys {normsys}, histosys {histosys} have no ROOT equivalent")
    for component in workspace.components():
        if component.InheritsFrom("RooStats::HistFactory::FlexibleInterpVar"):
            component.setAllInterpCodes(_NORMSYS_CODES[normsys])
        elif component.InheritsFrom("PiecewiseInterpolation"):
            component.setAllInterpCodes(_HISTOSYS_CODES[histosys])
            component.setPositiveDefinite(False)  # pyhf does not clip a sample's bins at 0
