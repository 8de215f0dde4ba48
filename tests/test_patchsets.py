"""pyhf patchsets on ratiofactory workspaces: patching, validation errors, ``--patch`` on
the analysis commands, and ``grid`` (a CLs test per signal point).

References: pyhf's CLs on the sbottom likelihood (tests/data/sbottom_RegionA_pyhf_cls.json,
written by validation/sbottom_patchset_pyhf.py with pyhf's Minuit at strategy 2), and,
for an unbinned patchset built here, the same test on each signal point's workspace
written out in full (no patch involved).
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_toy import one_line_error, run, run_json

import ratiofactory
from ratiofactory import infer
from ratiofactory.errors import InvalidSpecification
from ratiofactory.grid import run_grid
from ratiofactory.patchset import PatchSet, apply_patch, values_from_name
from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

pytest.importorskip("onnx")

SBOTTOM = next((p for p in (Path(__file__).resolve().parents[k] / "shared" / "data" /
                             "pyhf-ins1748602-probability-models.tar.gz" for k in (2, 3)) if p.exists()),
               Path("../shared/data/pyhf-ins1748602-probability-models.tar.gz"))
PYHF_CLS = Path(__file__).with_name("data") / "sbottom_RegionA_pyhf_cls.json"
STRICT = infer.FitOptions(strategy=2)


# --- an unbinned signal grid -----------------------------------------------------------

P_B = [(1.0, [Exponential(0.3, 0.0, 10.0)])]
P_REF = [(0.5, [Normal(5.0, 2.0)]), (0.5, P_B[0][1])]
MASSES = (3.0, 5.0, 7.0)
YIELDS = (5.0, 15.0, 40.0)


def _signal(mass: float, nu: float) -> dict:
    return {"name": "signal", "yield": nu, "ratio": {"onnx": {"path": f"models/S_{mass:g}.onnx"}, "output": "ratio"},
            "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}


def _background_spec() -> dict:
    return {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR", "observables": [{"name": "x", "bounds": [0.0, 10.0]}],
            "reference": {"events": {"path": "data/reference.npz"}},
            "samples": [{"name": "background", "yield": 200.0,
                         "ratio": {"onnx": {"path": "models/B.onnx"}, "output": "ratio"},
                         "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]}]}],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 20.0]], "inits": [1.0]}]}}],
    }


def _point_patch(mass: float, nu: float) -> list[dict]:
    return [{"op": "add", "path": "/unbinned_channels/0/samples/0", "value": _signal(mass, nu)}]


@pytest.fixture(scope="module")
def unbinned_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    (root / "models").mkdir()
    (root / "data").mkdir()
    for mass in MASSES:
        ratio_model([(1.0, [Normal(mass, 0.5)])], P_REF, path=root / "models" / f"S_{mass:g}.onnx")
    ratio_model(P_B, P_REF, path=root / "models" / "B.onnx")
    rng = np.random.default_rng(3)
    observed = sample_mixture([(200.0, P_B[0][1])], rng.poisson(200), rng)[:, 0]  # background only
    np.savez(root / "data" / "observed.npz", x=observed[(observed >= 0) & (observed <= 10)])
    reference = sample_mixture(P_REF, 4000, rng)[:, 0]
    np.savez(root / "data" / "reference.npz", x=reference[(reference >= 0) & (reference <= 10)])
    (root / "bkgonly.json").write_text(json.dumps(_background_spec()))
    ws = ratiofactory.Workspace.load(root / "bkgonly.json")
    patches = {f"S_{m:g}_{nu:g}": _point_patch(m, nu) for m in MASSES for nu in YIELDS}
    patchset = PatchSet.from_patches(ws.spec, patches, labels=["m_S", "nu_S"], description="toy grid")
    (root / "patchset.json").write_text(json.dumps(patchset.to_dict()))
    return root, ws, patchset


def test_patchset_round_trips_pyhf_format(unbinned_grid):
    import pyhf

    root, ws, patchset = unbinned_grid
    loaded = PatchSet.load(root / "patchset.json")
    assert loaded.names == patchset.names
    assert loaded.labels == ["m_S", "nu_S"]
    assert loaded[(5.0, 15.0)].name == "S_5_15"
    assert loaded.digests["sha256"] == pyhf.utils.digest(ws.spec)
    spec = loaded.to_dict()
    spec["metadata"]["references"] = {"hepdata": "ins1234567"}  # pyhf requires a HEPData record
    assert pyhf.PatchSet(spec)["S_5_15"].patch == list(loaded["S_5_15"].operations)


def test_grid_equals_the_tests_on_the_full_workspaces(unbinned_grid):
    root, ws, patchset = unbinned_grid
    result = run_grid(ws, patchset, names=["S_3_5", "S_5_40", "S_7_15"])
    for point in result.points:
        mass, nu = point.values
        spec = _background_spec()
        spec["unbinned_channels"][0]["samples"].insert(0, _signal(mass, nu))
        full = ratiofactory.Workspace(spec, base_dir=root)
        model = full.model()
        reference = infer.hypotest(model, full.data(model), 1.0)
        assert point.cls == pytest.approx(reference.cls, rel=1e-9)
        assert point.expected_cls == pytest.approx(reference.expected_cls, rel=1e-9)
    # the larger the signal, the stronger the exclusion
    assert result.points[1].excluded
    assert result.points[1].cls < result.points[0].cls


def test_dask_executor_gives_the_local_result(unbinned_grid):
    from ratiofactory.toys import DaskExecutor

    _, ws, patchset = unbinned_grid
    local = run_grid(ws, patchset, names=["S_3_15", "S_7_40"])
    with DaskExecutor(n_workers=1, processes=False) as dask:
        distributed = run_grid(ws, patchset, names=["S_3_15", "S_7_40"], executor=dask)
    assert [p.cls for p in distributed.points] == [p.cls for p in local.points]


def test_patch_errors_name_the_patch_and_the_pointer(unbinned_grid):
    root, ws, patchset = unbinned_grid
    with pytest.raises(InvalidSpecification, match=r"patch 'bad': /unbinned_channels/0/samples/0/yield"):
        apply_patch(ws, [{"op": "replace", "path": "/unbinned_channels/0/samples/0/yield", "value": "many"}],
                     name="bad")
    with pytest.raises(InvalidSpecification, match=r"operation 1 \(remove /unbinned_channels/3\) does not apply"):
        apply_patch(ws, [_point_patch(3.0, 5.0)[0], {"op": "remove", "path": "/unbinned_channels/3"}], name="two")
    other = ratiofactory.Workspace({**_background_spec(), "measurements": [
        {"name": "other", "config": {"poi": "mu", "parameters": []}}]}, base_dir=root)
    with pytest.raises(InvalidSpecification, match="made for a workspace with sha256"):
        patchset.apply(other, "S_3_5")
    assert ws.spec == _background_spec()  # inputs are never modified
    with pytest.raises(InvalidSpecification, match=r"/patches/0/metadata/values: .*2 values for 1 labels"):
        PatchSet({**patchset.to_dict(), "metadata": {**patchset.to_dict()["metadata"], "labels": ["m"]}})


def test_patch_with_a_missing_onnx_file_fails_at_model_time_with_the_pointer(unbinned_grid):
    _, ws, _ = unbinned_grid
    patched = apply_patch(ws, _point_patch(4.0, 5.0), name="S_4_5")
    with pytest.raises(ratiofactory.errors.InvalidFile, match=r"/unbinned_channels/0/samples/0/ratio.*S_4.onnx"):
        patched.model()


def test_values_from_patch_names():
    assert values_from_name("sbottom_1300_850_60") == [1300.0, 850.0, 60.0]
    assert values_from_name("S_2.5_10") == [2.5, 10.0]


# --- command line ----------------------------------------------------------------------


def test_cli_patch_option_equals_the_full_workspace(unbinned_grid, tmp_path):
    root, _, _ = unbinned_grid
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps(_point_patch(5.0, 15.0)))
    patched = run_json(["fit", root / "bkgonly.json", "-p", patch], tmp_path)
    by_name = run_json(["fit", root / "bkgonly.json", "-p", root / "patchset.json", "--patch-name", "S_5_15"],
                       tmp_path, "named.json")
    spec = _background_spec()
    spec["unbinned_channels"][0]["samples"].insert(0, _signal(5.0, 15.0))
    (root / "full_5_15.json").write_text(json.dumps(spec))
    full = run_json(["fit", root / "full_5_15.json"], tmp_path, "full.json")
    assert patched["values"] == pytest.approx(full["values"], rel=1e-9)
    assert by_name["values"] == pytest.approx(full["values"], rel=1e-9)


def test_cli_patchset_needs_a_patch_name(unbinned_grid):
    root, _, _ = unbinned_grid
    one_line_error(run(["fit", root / "bkgonly.json", "-p", root / "patchset.json"]),
                   "is a patchset: choose a patch with --patch-name", "S_3_5")
    one_line_error(run(["fit", root / "bkgonly.json", "-p", root / "patchset.json", "--patch-name", "S_9_9"]),
                   "no patch 'S_9_9' in the patchset")


def test_cli_patch_errors_speak_the_command_line(unbinned_grid, tmp_path):
    """--patch-name with a plain JSON patch is refused (was ignored); a -p patch setting a
    missing ONNX file is named in the error; a patchset made for another workspace points
    to the command that applies it anyway, not to verify=False."""
    root, _, _ = unbinned_grid
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps(_point_patch(5.0, 15.0)))
    result = run(["fit", root / "bkgonly.json", "-p", patch, "--patch-name", "S_5_15"])
    assert result.exit_code == 2
    assert f"--patch-name 'S_5_15' selects a patch of a patchset, but {patch} is a plain JSON patch" in result.stderr
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(_point_patch(4.0, 5.0)))  # models/S_4.onnx does not exist
    one_line_error(run(["fit", root / "bkgonly.json", "-p", missing]),
                   f"the patch {missing}: /unbinned_channels/0/samples/0/ratio", "S_4.onnx")
    other = root / "other_measurement.json"
    other.write_text(json.dumps({**_background_spec(), "measurements": [
        {"name": "other", "config": {"poi": "mu", "parameters": []}}]}))
    result = run(["fit", other, "-p", root / "patchset.json", "--patch-name", "S_5_15"])
    one_line_error(result, "made for a workspace with sha256",
                   "'ratiofactory patchset apply --no-verify' writes the patched workspace anyway")
    assert "verify=False" not in result.stderr
    result = run(["patchset", "apply", other, root / "patchset.json", "--name", "S_5_15", "-o", root / "x.json"])
    one_line_error(result, "--no-verify applies it anyway")


def test_cli_grid_writes_table_plot_and_json(unbinned_grid, tmp_path):
    root, _, _ = unbinned_grid
    table, plot = tmp_path / "grid.csv", tmp_path / "grid.png"
    payload = run_json(["grid", root / "bkgonly.json", root / "patchset.json", "--table", table, "--plot", plot,
                        "--select", "m_S=5", "--select", "nu_S=40", "--upper-limit"], tmp_path)
    assert [p["name"] for p in payload["points"]] == ["S_5_40"]
    point = payload["points"][0]
    assert point["excluded"] == (point["cls"] < 0.05)
    assert point["upper_limit"] is not None
    assert 0 < point["upper_limit"] < 1.0  # 40 signal events on a background-only sample
    assert plot.read_bytes().startswith(b"\x89PNG")
    rows = table.read_text().splitlines()
    assert rows[0].startswith("name,m_S,nu_S,CLs obs")
    assert rows[1].startswith("S_5_40,5.0,40.0,")


def test_cli_patchset_inspect_and_verify(unbinned_grid, tmp_path):
    root, _, _ = unbinned_grid
    info = run_json(["patchset", "inspect", root / "patchset.json"], tmp_path)
    assert info["labels"] == ["m_S", "nu_S"]
    assert len(info["patches"]) == 9
    result = run(["patchset", "verify", root / "bkgonly.json", root / "patchset.json"])
    assert result.exit_code == 0, result.output
    assert "9 patches apply" in result.output


def test_plot_exclusion_draws_the_contours(unbinned_grid, tmp_path):
    from ratiofactory import plots

    _, ws, patchset = unbinned_grid
    result = run_grid(ws, patchset)
    fig = plots.plot_exclusion(result, path=tmp_path / "contour.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "m_S"
    assert ax.get_ylabel() == "nu_S"
    assert len(ax.collections) >= 3  # two scatters and at least one contour
    assert sum(p.excluded for p in result.points) >= 1


# --- the sbottom likelihood against pyhf ---------------------------------------------------


@pytest.fixture(scope="module")
def sbottom_region_a():
    if not SBOTTOM.exists():
        pytest.skip(f"{SBOTTOM} is not there")
    with tarfile.open(SBOTTOM) as tar:
        background = json.load(tar.extractfile("RegionA/BkgOnly.json"))
        members = sorted(m.name for m in tar.getmembers() if m.name.startswith("RegionA/patch."))
        patches = {Path(m).name.removeprefix("patch.").removesuffix(".json"): json.load(tar.extractfile(m))
                   for m in members}
    ws = ratiofactory.Workspace(background)
    return ws, PatchSet.from_patches(background, patches, labels=["m_sb", "m_n2", "m_n1"])


def _compare_with_pyhf(result, reference=None):
    """Equal to pyhf's CLs to 1e-4 relative where pyhf's Minuit converged at strategy 2; where
    it did not (pyhf fell back to strategy 1 or scipy), to 5e-3, the spread between pyhf's
    own optimisers."""
    reference = reference or json.loads(PYHF_CLS.read_text())
    assert not result.failed, result.failed[0]
    for point in result.points:
        expected = reference["points"][point.name]
        strict = reference["optimizer"][point.name].startswith("minuit strategy 2")
        rel, abs_ = (1e-4, 1e-7) if strict else (5e-3, 1e-5)
        assert point.cls == pytest.approx(expected[0], rel=rel, abs=abs_), point.name
        assert point.expected_cls == pytest.approx(expected[1:], rel=rel, abs=abs_), point.name


@pytest.mark.slow  # 11 s on a loaded 2-core machine (full-suite run, 01:55 UTC)
def test_sbottom_points_equal_pyhf(sbottom_region_a):
    ws, patchset = sbottom_region_a
    _compare_with_pyhf(run_grid(ws, patchset, names=["sbottom_1000_830_700"], options=STRICT))


def _pyhf_cls(spec):
    """pyhf's CLs at mu = 1 with the tightest optimiser that converges (as
    validation/sbottom_patchset_pyhf.py), for points missing from the stored reference."""
    import pyhf

    settings = (("minuit strategy 2 tolerance 1e-7", lambda: pyhf.optimize.minuit_optimizer(tolerance=1e-7, strategy=2)),
                ("minuit strategy 1", lambda: pyhf.optimize.minuit_optimizer(strategy=1)),
                ("scipy", pyhf.optimize.scipy_optimizer))
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    try:
        for label, optimizer in settings:
            pyhf.set_backend("numpy", optimizer())
            try:
                cls, expected = pyhf.infer.hypotest(1.0, workspace.data(model), model, test_stat="qtilde",
                                                    return_expected_set=True)
            except (pyhf.exceptions.FailedMinimization, AssertionError):
                continue
            return [float(cls), *(float(e) for e in expected)], label
    finally:
        pyhf.set_backend("numpy", "scipy")
    raise AssertionError("pyhf did not converge")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RATIOFACTORY_FULL_VALIDATION"),
                    reason="all 217 sbottom points take ~90 min on 2 cores: set RATIOFACTORY_FULL_VALIDATION=1")
def test_sbottom_all_region_a_points_equal_pyhf(sbottom_region_a):
    ws, patchset = sbottom_region_a
    reference = json.loads(PYHF_CLS.read_text())
    for patch in patchset:  # points the stored reference lacks: pyhf now
        if patch.name not in reference["points"]:
            spec = patchset.apply(ws, patch.name).spec
            reference["points"][patch.name], reference["optimizer"][patch.name] = _pyhf_cls(spec)
    _compare_with_pyhf(run_grid(ws, patchset, options=STRICT), reference)
