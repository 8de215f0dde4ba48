"""Export to RooFit: RooFit's NLL of the exported workspace minus ratiofactory's is one
constant, and RooFit's MIGRAD/MINOS reproduce ratiofactory's fit.

Workspaces: the off-shell example's exact-density model as shipped (968 observed events,
three samples with a formula in μ, lumi, a normsys and a per-event ratiosys k_factor; the
default shape_normalisation "reference"); a mixed workspace built here (an unbinned channel
with formula, normsys, ratiosys and lumi, shape_normalisation "reference" by default or
"nominal", and a binned channel with normfactor, normsys, histosys, staterror, lumi and a
formula, sharing mu, lumi and bkg_xs); and the published sbottom likelihood (binned only,
against pyhf). The random points put the ratiosys α on both sides beyond |α| = 1, where the
reference-sample integral N_j(α) of "reference" is a Taylor series.
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
from ratiofactory.interpolation import interpolate
from ratiofactory.normalisation import likelihood_arrays
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


def _spread_alpha(model, points, name, rng):
    """Put the ratiosys α ``name`` of ``points`` over its bounds: a quarter each in
    [−5, −1], (−1, 0], (0, 1), [1, 5] (model bounds ±5)."""
    index = model.config.par_slice(name).start
    lo, hi = model.config.suggested_bounds()[index]
    n = len(points)
    edges = [(lo + 1e-9, -1.0), (-1.0, 0.0), (0.0, 1.0), (1.0, hi - 1e-9)]
    points[:, index] = [rng.uniform(*edges[i % 4]) for i in range(n)]
    assert (points[:, index] < -1).any()
    assert (points[:, index] > 1).any()
    return points


def _reference_sums(channel, sample_name, alphas):
    """N_j(α) = Σ_i w_i^ref r_j(x_i) Π g_j(x_i, α), summed over the reference events with
    ratiofactory's per-event interpolation (one ratiosys)."""
    j = next(j for j, s in enumerate(channel.samples) if s.name == sample_name)
    ratio, shapes = likelihood_arrays(channel)[j]
    (code,), ((hi, lo),) = [m.code for m in channel.samples[j].shapesys], shapes
    ref = slice(channel.n_observed, channel.n_events)
    return np.array([np.sum(channel.reference_weights * ratio[ref] * interpolate(code, a, hi[ref], lo[ref], np))
                     for a in alphas])


def _formula_values(export, function, parameter, alphas):
    var, out = export.variable(parameter), []
    for a in alphas:
        var.setVal(a)
        out.append(export.workspace.function(function).getVal())
    return np.array(out)


def _offsets(export, model, data, points):
    return np.array([export.nll(p) - float(model.nll(p, data)) for p in points])


# --- the off-shell exact model ------------------------------------------------------------


@pytest.fixture(scope="module")
def offshell():
    ws = ratiofactory.Workspace.load(EXAMPLE / "exact.json")  # as shipped: shape_normalisation "reference"
    model = ws.model()
    assert model.unbinned_channels[0].shape_normalisation == "reference"
    return ws, model, ws.data(model), to_roofit(ws, model=model)


@pytest.mark.slow
def test_offshell_nll_differs_by_one_constant(offshell):
    _, model, data, export = offshell
    rng = np.random.default_rng(20)
    points = _random_points(model, rng, width=np.array([1.5, 0.05, 2.0]))
    points[:, 0] = rng.uniform(0.05, 3.0, len(points))  # mu over both basins
    points = _spread_alpha(model, points, "k_factor", rng)
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


@pytest.mark.parametrize("sample", ["S", "SBI"])
def test_offshell_reference_integral_formula_equals_the_sum_over_reference_events(offshell, sample):
    _, model, _, export = offshell
    alphas = [-5.0, -3.7, -1.0, -0.4, 0.0, 0.3, 1.0, 2.2, 4.6, 5.0]
    sums = _reference_sums(model.unbinned_channels[0], sample, alphas)
    formula = _formula_values(export, f"SR_4l_{sample}_reference_integral", "k_factor", alphas)
    np.testing.assert_allclose(formula, sums, rtol=1e-10, atol=0)
    assert np.ptp(sums) > 1e-3 * sums[4]  # the integral does depend on α (by 2e-3 for SBI, 2e-2 for S)
    # beyond the bounds it was made for, the formula is NaN (RooFit flags it), never a wrong number
    export.variable("k_factor").setRange(-6.0, 6.0)
    try:
        assert np.isnan(_formula_values(export, f"SR_4l_{sample}_reference_integral", "k_factor", [5.5])[0])
    finally:
        export.variable("k_factor").setRange(-5.0, 5.0)
        export.variable("k_factor").setVal(0.0)


def test_offshell_export_names_columns_and_onnx_references(offshell):
    _, model, _, export = offshell
    meta = export.metadata
    assert meta["parameters"] == {"mu": ["mu"], "lumi": ["lumi"], "k_factor": ["alpha_k_factor"]}
    columns = meta["unbinned_channels"][0]["columns"]
    assert columns["SR_4l_r_S"]["ratio"]["onnx"]["path"] == "models/exact/S.onnx"
    assert columns["SR_4l_g_SBI_k_factor_hi"]["side"] == "hi"
    renormalised = meta["unbinned_channels"][0]["shape_normalisation"]
    assert [(m["sample"], m["factor"], m["alpha_bounds"]) for m in renormalised] == [
        ("S", "SR_4l_S_shape_norm", [[-5.0, 5.0]]), ("SBI", "SR_4l_SBI_shape_norm", [[-5.0, 5.0]])]
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


def _mixed_export(ws, shape_normalisation):
    spec = ws.spec
    spec["unbinned_channels"][0]["shape_normalisation"] = shape_normalisation
    other = ratiofactory.Workspace(spec, base_dir=ws.base_dir)
    model = other.model()
    return other, model, other.data(model), to_roofit(other, model=model)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The mixed workspace as written (shape_normalisation "reference", the default)."""
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


def _assert_mixed_offsets_constant(model, data, export, seed):
    rng = np.random.default_rng(seed)
    points = _spread_alpha(model, _random_points(model, rng), "bkg_shape", rng)
    offsets = _offsets(export, model, data, points)
    assert np.ptp(offsets) <= SPREAD, offsets


def test_mixed_nll_differs_by_one_constant(mixed):
    _, model, data, export = mixed
    assert model.unbinned_channels[0].shape_normalisation == "reference"
    _assert_mixed_offsets_constant(model, data, export, seed=3)


def test_mixed_nominal_shape_normalisation_nll_differs_by_one_constant(mixed):
    ws, _, _, _ = mixed
    _, model, data, export = _mixed_export(ws, "nominal")
    assert not export.workspace.function("SR_unbin_B_shape_norm")
    _assert_mixed_offsets_constant(model, data, export, seed=5)


def test_mixed_reference_integral_formula_equals_the_sum_over_reference_events(mixed):
    _, model, _, export = mixed
    alphas = [-4.9, -1.0, -0.6, 0.0, 0.2, 0.999, 1.0, 3.1]
    sums = _reference_sums(model.unbinned_channels[0], "B", alphas)
    np.testing.assert_allclose(_formula_values(export, "SR_unbin_B_reference_integral", "bkg_shape", alphas),
                               sums, rtol=1e-10, atol=0)
    assert not export.workspace.function("SR_unbin_S_reference_integral")  # no ratiosys: factor 1


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


def test_reference_integral_too_long_a_series_is_refused(mixed):
    # α bounds of ±100: the Taylor series of the exponential branches would need more than
    # MAX_TERMS terms, so N(α) has no formula; the export names channel, sample and bounds
    ws, _, _, _ = mixed
    spec = ws.spec
    spec["measurements"][0]["config"]["parameters"].append({"name": "bkg_shape", "bounds": [[-100.0, 100.0]]})
    other = ratiofactory.Workspace(spec, base_dir=ws.base_dir)
    with pytest.raises(ExportError, match=r"channel 'SR_unbin', sample 'B': shape_normalisation 'reference'"
                                          r".*bkg_shape \(-100.0, 100.0\)"):
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


# --- the formula of N(α) with several systematics on one sample ---------------------------


@pytest.mark.parametrize("codes", [("code4", "code1"), ("code0", "code4")])
def test_reference_integral_formula_of_two_systematics_equals_the_event_sum(codes):
    from ratiofactory.export.shape_normalisation import integral_formula
    from ratiofactory.interpolation import prepare_interpolation
    from ratiofactory.toys import shape_integrals

    rng = np.random.default_rng(7)
    n, bounds = 2000, [(-5.0, 5.0), (-3.0, 2.0)]
    weights = rng.uniform(0.0, 1.0, n) / n
    factors = [(rng.uniform(0.8, 1.3, n), rng.uniform(0.75, 1.2, n)) for _ in codes]
    systematics = [(code, prepare_interpolation(code, hi, lo).arrays, b)
                   for code, (hi, lo), b in zip(codes, factors, bounds, strict=True)]
    integral = shape_integrals.build(weights, systematics, np)
    pieces = shape_integrals.polynomial_pieces(integral)
    a = ROOT.RooRealVar("a_two", "a", 0.0, *bounds[0])
    b = ROOT.RooRealVar("b_two", "b", 0.0, *bounds[1])
    formula = ROOT.RooFormulaVar("n_two", "N(a, b)", integral_formula(pieces, bounds), ROOT.RooArgList(a, b))
    for alpha in (-4.6, -1.0, -0.3, 0.0, 0.5, 1.0, 3.3, 5.0):
        for beta in (-3.0, -1.0, -0.7, 0.2, 1.0, 1.6):
            a.setVal(alpha)
            b.setVal(beta)
            (c1, (h1, l1)), (c2, (h2, l2)) = zip(codes, factors, strict=True)
            direct = np.sum(weights * interpolate(c1, alpha, h1, l1, np) * interpolate(c2, beta, h2, l2, np))
            assert formula.getVal() == pytest.approx(direct, rel=1e-10, abs=0), (alpha, beta)
