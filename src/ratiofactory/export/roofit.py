"""Export a workspace to RooFit: one RooWorkspace that RooFit and Combine can fit.

The whole likelihood is one pdf, ``simPdf``, a RooSimultaneous over the channels
(index category ``channelCat``): binned channels as HistFactory builds them
(:mod:`.histfactory`), unbinned channels as extended pdfs over per-event columns
(:mod:`.unbinned`), each multiplied by the constraints of its parameters. The dataset
``data_obs`` holds the binned counts and, per observed event, the ratios and
shape-systematic ratios the model evaluated from its ONNX files; ``ModelConfig`` names
the POI, the nuisance parameters, the observables and the global observables. A
``reference_<channel>`` dataset holds the same columns on the reference events with
weights w_ref (Σ = 1): Asimov weights at θ are w_ref · s(x;θ). The ONNX references, the
parameter-name map and the column meanings are in the workspace's generic object
``ratiofactory_metadata`` (JSON in a TNamed's title).

>>> import ratiofactory
>>> from ratiofactory.export import to_roofit
>>> ws = ratiofactory.Workspace.load("examples/offshell/workspace/exact.json")  # doctest: +SKIP
>>> export = to_roofit(ws)                                                      # doctest: +SKIP
>>> export.write("offshell.root")                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write
from ._root import ExportError, load_root
from .histfactory import build_histfactory
from .parameters import RooParameters
from .unbinned import UnbinnedExport, build_unbinned_channel

__all__ = ["DATASET", "MODEL_CONFIG", "PDF", "RooFitExport", "RooFitFit", "export_roofit", "to_roofit"]

PDF = "simPdf"
DATASET = "data_obs"
MODEL_CONFIG = "ModelConfig"
METADATA = "ratiofactory_metadata"


@dataclass(frozen=True)
class RooFitFit:
    """RooFit's MIGRAD minimum and MINOS interval of the POI (at ΔNLL = ``error_level``)."""

    poi: str
    value: float
    lower: float
    upper: float
    nll: float
    status: int


@dataclass
class RooFitExport:
    """An exported RooWorkspace with the map from ratiofactory to RooFit parameter names.

    ``workspace`` is the ``ROOT.RooWorkspace``; ``parameter_names[name]`` lists the
    RooFit variables of ratiofactory parameter ``name`` (one per component).
    """

    workspace: Any
    parameter_names: dict[str, list[str]]
    par_order: list[str]
    metadata: dict[str, Any]
    _nll: Any = field(default=None, repr=False)

    @property
    def pdf(self) -> Any:
        return self.workspace.pdf(PDF)

    @property
    def data(self) -> Any:
        return self.workspace.data(DATASET)

    @property
    def model_config(self) -> Any:
        return self.workspace.obj(MODEL_CONFIG)

    def variable(self, name: str, component: int = 0) -> Any:
        """The RooRealVar of (component ``component`` of) ratiofactory parameter ``name``."""
        return self.workspace.var(self.parameter_names[name][component])

    def set_parameters(self, pars: Sequence[float]) -> None:
        """Set the RooFit variables to a ratiofactory parameter vector (model order)."""
        values = iter(np.asarray(pars, dtype=float))
        for name in self.par_order:
            for roofit in self.parameter_names[name]:
                var = self.workspace.var(roofit)
                value = float(next(values))
                if not var.inRange(value, ""):
                    var.setRange(min(value, var.getMin()), max(value, var.getMax()))
                var.setVal(value)

    def create_nll(self) -> Any:
        """RooFit's NLL of ``simPdf`` on ``data_obs`` (extended, constraints, global
        observables from the ModelConfig, no offset); created once."""
        if self._nll is None:
            R = load_root()
            globs = self.model_config.GetGlobalObservables()
            self._nll = self.pdf.createNLL(self.data, R.RooFit.GlobalObservables(globs), R.RooFit.Offset("off"))
        return self._nll

    def nll(self, pars: Sequence[float] | None = None) -> float:
        """RooFit's −ln L at ``pars`` (a ratiofactory parameter vector; default: current values)."""
        if pars is not None:
            self.set_parameters(pars)
        return float(self.create_nll().getVal())

    def fit(self, *, minos: bool = True, error_level: float = 0.5, strategy: int = 2,
            tolerance: float = 1e-5) -> RooFitFit:
        """MIGRAD (Minuit2) on RooFit's NLL, then MINOS on the POI at ΔNLL = ``error_level``."""
        R = load_root()
        minimizer = R.RooMinimizer(self.create_nll())
        minimizer.setMinimizerType("Minuit2")
        minimizer.setStrategy(strategy)
        minimizer.setEps(tolerance)
        minimizer.setPrintLevel(-1)
        minimizer.setErrorLevel(error_level)
        status = int(minimizer.migrad())
        poi_var = self.model_config.GetParametersOfInterest().first()
        value, nll = poi_var.getVal(), float(self.create_nll().getVal())
        lower = upper = float("nan")
        if minos:
            minimizer.hesse()
            status = max(status, int(minimizer.minos(R.RooArgSet(poi_var))))
            lower, upper = value + poi_var.getErrorLo(), value + poi_var.getErrorHi()
        return RooFitFit(poi_var.GetName(), value, lower, upper, nll, status)

    def write(self, path: str | Path) -> Path:
        """Write the RooWorkspace to a ROOT file (atomically)."""
        return _write(self.workspace, path)


def _write(workspace: Any, path: str | Path) -> Path:
    load_root()
    with atomic_write(path) as tmp:
        if not workspace.writeToFile(str(tmp), True):
            raise ExportError(f"{path}: ROOT could not write the workspace")
    return Path(path)


def export_roofit(workspace: Any, path: str | Path, *, measurement: str | None = None,
                  name: str = "w", reference: bool = True) -> RooFitExport:
    """Write ``workspace`` (a :class:`ratiofactory.Workspace`) as a RooWorkspace ``name``
    to the ROOT file ``path``; see :func:`to_roofit`."""
    export = to_roofit(workspace, measurement=measurement, name=name, reference=reference)
    export.write(path)
    return export


def to_roofit(workspace: Any, *, measurement: str | None = None, name: str = "w",
              reference: bool = True, model: Any = None) -> RooFitExport:
    """The RooWorkspace of a measurement of ``workspace`` (the first by default).

    ``reference`` adds the datasets of reference events. ``model`` is the compiled
    model of that measurement, if already built (its per-event arrays are exported).
    """
    import pyhf

    from .. import __version__

    R = load_root()
    if model is None:
        model = workspace.model(measurement)
    for channel in model.unbinned_channels:
        for sample in channel.samples:
            if sample.parameterised is not None:
                raise ExportError(f"channel {channel.name!r}, sample {sample.name!r}: a parameterised ratio"
                                  " r(x | θ) has no fixed per-event values to export as dataset columns")
    spec = workspace.spec
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        data = np.asarray(workspace.data(model), dtype=float)
        ratios = [[np.asarray(s.ratio, dtype=float) for s in t.samples] for t in model._channel_tensors(np)]
    finally:
        pyhf.set_backend(*previous)
    auxdata = data[model.config.nmaindata:]
    params = RooParameters(R, model, spec, auxdata)
    keep: list[Any] = []
    out = R.RooWorkspace(name, "ratiofactory export")
    category = R.RooCategory("channelCat", "channel")
    pdfs: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    globs: list[Any] = []
    if spec.get("channels"):
        hf, formulas = build_histfactory(R, spec, model, params.names, keep)
        keep.append(hf)
        hf_globs = hf.obj("ModelConfig").GetGlobalObservables()
        observations = {o["name"]: o["data"] for o in spec["observations"] if "data" in o}
        lumis = _lumi_parameters(spec)
        for channel in model.config.binned_channels:
            pdf = hf.pdf(f"model_{channel}")
            if lumis.get(channel):
                constraints = [params.constraint(name) for name in sorted(lumis[channel])]
                pdf = R.RooProdPdf(f"model_{channel}_lumi", f"{channel} with its luminosity constraint",
                                   R.RooArgList(*list(pdf.pdfList()), *constraints))
                keep.append(pdf)
            out.Import(pdf, R.RooFit.RecycleConflictNodes(), R.RooFit.Silence())
            datasets[channel] = _binned_dataset(R, out.var(f"obs_x_{channel}"), observations[channel])
            keep.append(datasets[channel])
            pdfs[channel] = _replace_formula_placeholders(R, out, out.pdf(pdf.GetName()), formulas, params, keep)
        globs += [out.var(g.GetName()) for g in hf_globs]
    unbinned: list[UnbinnedExport] = []
    specs = {c["name"]: c for c in spec.get("unbinned_channels", [])}
    for channel, channel_ratios in zip(model.unbinned_channels, ratios, strict=True):
        part = build_unbinned_channel(R, channel, channel_ratios, params, specs[channel.name])
        out.Import(part.pdf, R.RooFit.RecycleConflictNodes(), R.RooFit.Silence())
        pdfs[channel.name] = out.pdf(part.pdf.GetName())
        datasets[channel.name] = part.dataset(R, "observed")
        unbinned.append(part)
        keep.append(part)
    globs += [out.var(g.GetName()) for g in params.global_observables]
    _apply_settings(out, model, params)

    for channel in pdfs:
        category.defineType(channel)
    sim = R.RooSimultaneous(PDF, "ratiofactory likelihood", category)
    for channel, pdf in pdfs.items():
        sim.addPdf(pdf, channel)
    out.Import(sim, R.RooFit.RecycleConflictNodes(), R.RooFit.Silence())
    observables = _combined_observables(R, datasets, category)
    combined = _combine(R, datasets, observables, category)
    out.Import(combined, R.RooFit.Silence())
    if reference:
        for part in unbinned:
            if part.reference_weights.size:
                ref = part.dataset(R, "reference")
                ref.SetName(f"reference_{part.name}")
                out.Import(ref, R.RooFit.Silence())
    global_set = R.RooArgSet(*[g for g in globs if g])
    for g in global_set:
        g.setConstant(True)
    _widen_global_observables(out, global_set)
    _model_config(R, out, model, params, observables, global_set)
    metadata = {
        "ratiofactory_version": __version__,
        "workspace_digest": workspace.digest(),
        "measurement": measurement or workspace.measurement_names[0],
        "poi": model.config.poi_name,
        "parameters": params.names,
        "pdf": PDF, "dataset": DATASET, "model_config": MODEL_CONFIG,
        "binned_channels": list(model.config.binned_channels),
        "unbinned_channels": [part.metadata for part in unbinned],
        "note": ("per-event columns hold the ONNX ratio models evaluated once on the observed and "
                 "reference events; the 'ratio' entries are the workspace's references to them"),
    }
    out.Import(R.TNamed(METADATA, json.dumps(metadata, sort_keys=True)))
    export = RooFitExport(out, params.names, list(model.config.par_order), metadata)
    export._keep = (keep, params, category, sim, combined)  # type: ignore[attr-defined]
    return export


def _apply_settings(out: Any, model: Any, params: RooParameters) -> None:
    """The model's initial values, bounds and fixed flags on every parameter in ``out``."""
    for name in model.config.par_order:
        for component, roofit in enumerate(params.names[name]):
            var = out.var(roofit)
            if not var:
                continue
            init, (lo, hi), fixed = params.settings(name, component)
            var.setRange(lo, hi)
            var.setVal(init)
            var.setConstant(fixed)


def _replace_formula_placeholders(R: Any, out: Any, pdf: Any, formulas: Mapping[str, Any], params: RooParameters,
                                  keep: list[Any]) -> Any:
    """``pdf`` with the NormFactor placeholder of each binned formula it uses replaced by
    the formula's RooFormulaVar (a new pdf ``<name>_formulas``, made by ``EDIT``)."""
    from .unbinned import formula_var

    used = [name for name in formulas if pdf.getVariables().find(name)]
    if not used:
        return pdf
    for name in used:
        function = formula_var(R, f"{name}_function", formulas[name], params)
        keep.append(function)
        out.Import(function, R.RooFit.RecycleConflictNodes(), R.RooFit.Silence())
    edits = ", ".join(f"{name}={name}_function" for name in used)
    edited = out.factory(f"EDIT::{pdf.GetName()}_formulas({pdf.GetName()}, {edits})")
    if not edited:
        raise ExportError(f"RooFit could not put the binned formulas into {pdf.GetName()}")
    return out.pdf(f"{pdf.GetName()}_formulas")


def _widen_global_observables(out: Any, globs: Any) -> None:
    """Give each global observable a range that holds its constraint's whole probability for
    every allowed parameter value (±40σ beyond the parameter's bounds), so that the
    constraint's normalisation over that range does not depend on the parameter (a Gaussian
    constraint truncated at HistFactory's default ranges shifts the NLL by ~1e-9 at 5σ)."""
    names = {g.GetName() for g in globs}
    for pdf in out.allPdfs():
        if pdf.ClassName() == "RooGaussian":
            x, mean, sigma = pdf.getX(), pdf.getMean(), pdf.getSigma()
            glob, par = (x, mean) if x.GetName() in names else (mean, x)
            if glob.GetName() not in names or not par.InheritsFrom("RooRealVar"):
                continue
            width = 40.0 * sigma.getVal()
            glob.setRange(min(glob.getMin(), par.getMin() - width), max(glob.getMax(), par.getMax() + width))
        elif pdf.ClassName() == "RooPoisson":
            glob, mean = pdf.getX(), pdf.getMean()
            if glob.GetName() not in names:
                continue
            largest = mean.getVal() * 100.0  # γ ≤ 10 in HistFactory and pyhf: τγ ≤ 10τ
            glob.setRange(0.0, max(glob.getMax(), largest + 40.0 * np.sqrt(largest) + 10.0))


def _lumi_parameters(spec: Mapping[str, Any]) -> dict[str, set[str]]:
    """Binned channel → names of its lumi parameters (constrained here, not by HistFactory)."""
    return {
        channel["name"]: {m["name"] for sample in channel["samples"] for m in sample.get("modifiers", [])
                          if m["type"] == "lumi"}
        for channel in spec.get("channels", [])
    }


def _binned_dataset(R: Any, observable: Any, counts: Sequence[float]) -> Any:
    """One entry per bin at the bin centre of HistFactory's ``obs_x_<channel>``, weighted by the count."""
    weight = R.RooRealVar("weightVar", "weight", 1.0, -1e30, 1e30)
    centres = np.arange(len(counts), dtype=float) + 0.5
    dataset = R.RooDataSet.from_numpy({observable.GetName(): centres, "weightVar": np.asarray(counts, dtype=float)},
                                      [observable, weight], weight_name="weightVar")
    dataset._keep = weight
    return dataset


def _combined_observables(R: Any, datasets: Mapping[str, Any], category: Any) -> Any:
    observables = R.RooArgSet(category)
    for dataset in datasets.values():
        observables.add(dataset.get(), True)
    return observables


def _combine(R: Any, datasets: Mapping[str, Any], observables: Any, category: Any) -> Any:
    weight = R.RooRealVar("weightVar", "weight", 1.0, -1e30, 1e30)
    variables = R.RooArgSet(observables)
    variables.add(weight, True)
    imports = R.std.map("std::string, RooDataSet*")()
    for channel, dataset in datasets.items():
        imports[channel] = dataset
    combined = R.RooDataSet(DATASET, "observed data", variables, R.RooFit.Index(category),
                            R.RooFit.Import(imports), R.RooFit.WeightVar(weight))
    combined._keep = (weight, imports)
    return combined


def _model_config(R: Any, out: Any, model: Any, params: RooParameters, observables: Any, globs: Any) -> None:
    mc = R.RooStats.ModelConfig(MODEL_CONFIG, out)
    mc.SetPdf(PDF)
    poi = model.config.poi_name
    pois = R.RooArgSet()
    if poi is not None:
        pois.add(out.var(params.names[poi][0]))
        mc.SetParametersOfInterest(pois)
    nps = R.RooArgSet()
    for name in model.config.par_order:
        for roofit in params.names[name]:
            var = out.var(roofit)
            if var and not var.isConstant() and name != poi:
                nps.add(var)
    mc.SetNuisanceParameters(nps)
    mc.SetObservables(R.RooArgSet(*[out.obj(o.GetName()) for o in observables]))
    mc.SetGlobalObservables(globs)
    out.Import(mc)
