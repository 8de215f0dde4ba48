"""Export to RooFit: RooFit's NLL of the exported workspace minus ratiofactory's is one
constant, and RooFit's MIGRAD/MINOS reproduce ratiofactory's fit.

Workspaces: the off-shell example's exact-density model (968 observed events, three
samples with a formula in μ, lumi, a normsys and a per-event ratiosys k_factor); a
mixed workspace built here (an unbinned channel with formula, normsys, ratiosys and lumi,
and a binned channel with normfactor, normsys, histosys, staterror, lumi and a formula, sharing mu,
lumi and bkg_xs); and the published sbottom likelihood (binned only, against pyhf).
Skipped without ROOT (``pip install root``).

This file is not collected by pytest's default pattern: tests/test_export_roofit.py runs
it in a pytest process of its own, because ROOT, once imported, stays resident (~500 MB)
for the rest of the process. Run it directly with ``pytest tests/roofit_checks.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest

import ratiofactory
from ratiofactory import infer
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

pytest.importorskip("onnx")
try:
    from ratiofactory.export._root import ExportError, load_root

    ROOT = load_root()
except Exception as err:  # noqa: BLE001 - any failure to load ROOT skips the module
    pytest.skip(f"ROOT is not available: {err}", allow_module_level=True)

from ratiofactory.export import export_roofit, to_roofit

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace"
SBOTTOM = next((p for p in (Path(__file__).resolve().parents[k] / "shared" / "data" /
                             "pyhf-ins1748602-probability-models.tar.gz" for k in (2, 3)) if p.exists()),
               Path("../shared/data/pyhf-ins1748602-probability-models.tar.gz"))  # main, or a worktree beside it
SPREAD = 1e-8


def _random_points(model, rng, n=20, width=None):
    """n parameter points around the suggested init, inside the bounds."""
    init = np.asarray(model.config.suggested_init(), dtype=float)
    lo, hi = np.asarray(model.config.suggested_bounds(), dtype=float).T
    fixed = np.asarray(model.config.suggested_fixed())
    width = np.minimum(0.5, 0.3 * (hi - lo)) if width is None else width
    points = init + rng.uniform(-1, 1, (n, init.size)) * width
    points = np.clip(points, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    points[:, fixed] = init[fixed]
    return points


def _offsets(export, model, data, points):
    return np.array([export.nll(p) - float(model.nll(p, data)) for p in points])


# --- the off-shell exact model ------------------------------------------------------------


@pytest.fixture(scope="module")
def offshell():
    # RooFit cannot express shape_normalisation "reference" (the default with a reference
    # sample); the ratios stay normalised on the reference sample (ratio_normalisation)
    spec = json.loads((EXAMPLE / "exact.json").read_text())
    spec["unbinned_channels"][0]["shape_normalisation"] = "nominal"
    ws = ratiofactory.Workspace(spec, base_dir=EXAMPLE)
    model = ws.model()
    return ws, model, ws.data(model), to_roofit(ws, model=model)


@pytest.mark.slow
def test_offshell_nll_differs_by_one_constant(offshell):
    _, model, data, export = offshell
    rng = np.random.default_rng(20)
    points = _random_points(model, rng, width=np.array([1.5, 0.05, 2.0]))
    points[:, 0] = rng.uniform(0.05, 3.0, len(points))  # mu over both basins
    offsets = _offsets(export, model, data, points)
    assert np.ptp(offsets) <= SPREAD, offsets


def _compare_fits(export, model, data, grid):
    """RooFit's MIGRAD μ̂ and MINOS edges against ratiofactory's μ̂ (MIGRAD, tolerance 1e-6)
    and profile-likelihood interval (scan + Brent on the profile, t_μ = 1)."""
    ours = infer.fit(model, data, tolerance=1e-6, strategy=2)
    interval = infer.interval(infer.profile_scan(model, data, grid), cl=infer.CL_1SIGMA)
    export.set_parameters(model.config.suggested_init())
    theirs = export.fit()
    assert theirs.status == 0
    assert theirs.value == pytest.approx(ours.value("mu"), abs=1e-4)
    assert len(interval.intervals) == 1
    assert (theirs.lower, theirs.upper) == pytest.approx(interval.intervals[0], abs=1e-4)


@pytest.mark.slow
def test_offshell_migrad_and_minos_equal_ratiofactory(offshell):
    _, model, data, export = offshell
    _compare_fits(export, model, data, np.linspace(0.0, 2.0, 9))


def test_offshell_export_names_columns_and_onnx_references(offshell):
    _, model, _, export = offshell
    meta = export.metadata
    assert meta["parameters"] == {"mu": ["mu"], "lumi": ["lumi"], "k_factor": ["alpha_k_factor"]}
    columns = meta["unbinned_channels"][0]["columns"]
    assert columns["SR_4l_r_S"]["ratio"]["onnx"]["path"] == "models/exact/S.onnx"
    assert columns["SR_4l_g_SBI_k_factor_hi"]["side"] == "hi"
    data = export.data
    assert data.numEntries() == model.unbinned_channels[0].n_observed
    assert export.workspace.data("reference_SR_4l").sumEntries() == pytest.approx(1.0, abs=1e-12)
    mc = export.model_config
    assert mc.GetParametersOfInterest().first().GetName() == "mu"
    assert sorted(v.GetName() for v in mc.GetNuisanceParameters()) == ["alpha_k_factor", "lumi"]
    assert sorted(v.GetName() for v in mc.GetGlobalObservables()) == ["nom_alpha_k_factor", "nom_lumi"]


# --- a mixed binned + unbinned workspace ---------------------------------------------------

P_S = [(1.0, [Normal(5.0, 0.5)])]
P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_B_UP = [(1.0, [Exponential(0.27, 0.0, 10.0)])]
P_B_DN = [(1.0, [Exponential(0.34, 0.0, 10.0)])]
P_REF = [(0.5, P_S[0][1]), (0.5, P_B[0][1])]


def _mixed_spec() -> dict:
    onnx = lambda name: {"onnx": {"path": f"models/{name}.onnx"}, "output": "ratio"}
    lumi = {"name": "lumi", "type": "lumi", "data": None}
    xs = {"name": "bkg_xs", "type": "normsys", "data": {"hi": 1.05, "lo": 0.93}}
    return {
        "version": "1.0.0",
        "channels": [{"name": "SR_bin", "samples": [
            {"name": "signal", "data": [3.0, 6.0, 2.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}, lumi]},
            {"name": "background", "data": [40.0, 30.0, 12.0], "modifiers": [
                xs, lumi,
                {"name": "shape", "type": "histosys", "data": {"hi_data": [43.0, 31.0, 11.0],
                                                                "lo_data": [38.0, 29.5, 12.5]}},
                {"name": "stat", "type": "staterror", "data": [3.0, 2.5, 1.5]}]},
            {"name": "fakes", "data": [5.0, 4.0, 3.0], "modifiers": [
                {"name": "stat", "type": "staterror", "data": [1.0, 1.0, 1.0]}]},
            {"name": "interference", "data": [2.0, 1.0, 0.5], "modifiers": [
                {"name": "f_I", "type": "formula", "data": {"expression": "1 - sqrt(mu)/4"}}]}]}],
        "unbinned_channels": [{
            "name": "SR_unbin",
            "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "data/reference.npz", "weight": "weight"}},
            "shape_normalisation": "nominal",  # what RooFit can express
            "samples": [
                {"name": "S", "yield": 30.0, "ratio": onnx("S"), "modifiers": [
                    {"name": "f_S", "type": "formula", "data": {"expression": "mu*(1 + 0.1*sqrt(mu))"}}, lumi]},
                {"name": "B", "yield": 300.0, "ratio": onnx("B"), "modifiers": [
                    xs, lumi,
                    {"name": "bkg_shape", "type": "ratiosys",
                     "data": {"hi": onnx("B_up"), "lo": onnx("B_dn")}}]}]}],
        "observations": [{"name": "SR_bin", "data": [49.0, 40.0, 15.0]},
                         {"name": "SR_unbin", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 10.0]]},
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}]}}],
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed_export")
    (root / "models").mkdir()
    (root / "data").mkdir()
    for name, numerator, denominator in (("S", P_S, P_REF), ("B", P_B, P_REF),
                                         ("B_up", P_B_UP, P_B), ("B_dn", P_B_DN, P_B)):
        ratio_model(numerator, denominator, path=root / "models" / f"{name}.onnx")
    rng = np.random.default_rng(11)
    observed = sample_mixture([(30.0, P_S[0][1]), (300.0, P_B[0][1])], rng.poisson(330), rng)[:, 0]
    np.savez(root / "data" / "observed.npz", x=observed[(observed >= 0) & (observed <= 10)])
    reference = sample_mixture(P_REF, 3000, rng)[:, 0]
    np.savez(root / "data" / "reference.npz", x=reference, weight=np.full(reference.size, 1 / reference.size))
    (root / "workspace.json").write_text(json.dumps(_mixed_spec()))
    ws = ratiofactory.Workspace.load(root / "workspace.json")
    model = ws.model()
    return ws, model, ws.data(model), to_roofit(ws, model=model)


def test_mixed_nll_differs_by_one_constant(mixed):
    _, model, data, export = mixed
    offsets = _offsets(export, model, data, _random_points(model, np.random.default_rng(3)))
    assert np.ptp(offsets) <= SPREAD, offsets


def test_mixed_shares_parameters_between_binned_and_unbinned_channels(mixed):
    _, _model, _, export = mixed
    pdf = export.pdf
    assert pdf.ClassName() == "RooSimultaneous"
    binned, unbinned = pdf.getPdf("SR_bin"), pdf.getPdf("SR_unbin")
    for name in ("mu", "lumi", "alpha_bkg_xs"):
        assert binned.getVariables().find(name)
        assert unbinned.getVariables().find(name)
    constraints = [c.GetName() for c in export.workspace.allPdfs() if c.GetName().endswith(("Constraint", "constraint"))]
    assert constraints.count("lumi_constraint") == 1
    assert constraints.count("alpha_bkg_xsConstraint") == 1
    assert export.metadata["parameters"]["stat"] == [f"gamma_stat_SR_bin_bin_{i}" for i in range(3)]
    # the binned formula's placeholder normfactor is replaced by the formula of mu
    assert not pdf.getVariables().find("binned_formula_0")
    assert binned.getComponents().find("binned_formula_0_function")


@pytest.mark.slow
def test_mixed_migrad_and_minos_equal_ratiofactory(mixed):
    _, model, data, export = mixed
    _compare_fits(export, model, data, np.linspace(0.3, 1.5, 7))


def test_written_file_reads_back_with_the_same_nll(mixed, tmp_path):
    ws, model, _data, export = mixed
    path = tmp_path / "out" / "mixed.root"
    export_roofit(ws, path, reference=False)
    handle = ROOT.TFile.Open(str(path))
    w = handle.Get("w")
    nll = w.pdf("simPdf").createNLL(w.data("data_obs"), ROOT.RooFit.GlobalObservables(
        w.obj("ModelConfig").GetGlobalObservables()), ROOT.RooFit.Offset("off"))
    point = _random_points(model, np.random.default_rng(8), n=1)[0]
    export.set_parameters(point)
    for var in export.workspace.allVars():
        if w.var(var.GetName()):
            w.var(var.GetName()).setVal(var.getVal())
    assert nll.getVal() == pytest.approx(export.nll(), abs=1e-9)
    assert not w.data("reference_SR_unbin")
    assert json.loads(w.genobj("ratiofactory_metadata").GetTitle())["poi"] == "mu"
    handle.Close()


def test_reference_shape_normalisation_with_ratiosys_is_refused(mixed):
    ws, _, _, _ = mixed
    spec = ws.spec
    spec["unbinned_channels"][0]["shape_normalisation"] = "reference"
    other = ratiofactory.Workspace(spec, base_dir=ws.base_dir)
    with pytest.raises(ExportError, match=r"SR_unbin.*shape_normalisation 'reference'"):
        to_roofit(other)


# --- the sbottom likelihood (binned, against pyhf) ---------------------------------------


@pytest.fixture(scope="module")
def sbottom(tmp_path_factory):
    if not SBOTTOM.exists():
        pytest.skip(f"{SBOTTOM} is not there")
    import tarfile

    import jsonpatch

    with tarfile.open(SBOTTOM) as tar:
        bkg = json.load(tar.extractfile("RegionA/BkgOnly.json"))
        patch = json.load(tar.extractfile("RegionA/patch.sbottom_1300_850_60.json"))
    return jsonpatch.apply_patch(bkg, patch)


@pytest.mark.slow
def test_sbottom_binned_nll_equals_pyhf_up_to_a_constant(sbottom):
    ws = ratiofactory.Workspace(sbottom)
    model = ws.model()
    export = to_roofit(ws, model=model)
    pyhf_model = pyhf.Workspace(sbottom).model()
    data = ws.data(model)
    points = _random_points(model, np.random.default_rng(4), width=0.3)
    offsets = [export.nll(p) + float(pyhf_model.logpdf(p, data)[0]) for p in points]
    assert np.ptp(offsets) <= SPREAD, offsets


def test_cli_writes_a_root_file(mixed, tmp_path):
    from click.testing import CliRunner

    from ratiofactory.cli import cli

    ws, _, _, _ = mixed
    out = tmp_path / "mixed.root"
    result = CliRunner().invoke(cli, ["export", "roofit", str(ws.base_dir / "workspace.json"), "-o", str(out),
                                      "--no-reference"])
    assert result.exit_code == 0, result.output
    assert "1 binned and 1 unbinned channel(s), POI mu" in result.output
    handle = ROOT.TFile.Open(str(out))
    assert handle.Get("w").pdf("simPdf")
    handle.Close()
