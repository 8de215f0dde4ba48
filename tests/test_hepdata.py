"""HEPData submissions: tables equal the results they come from, hepdata-validator accepts
the submission, the bundle resource verifies (and a tampered one does not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from cli_toy import make_toy, one_line_error, run, run_json

from ratiofactory import hepdata, infer
from ratiofactory.errors import InvalidFile
from ratiofactory.files import sha256_file
from ratiofactory.workspace import Workspace

pytest.importorskip("hepdata_validator")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path, _ = make_toy(tmp_path_factory.mktemp("hepdata"))
    return path


@pytest.fixture(scope="module")
def submission(toy, tmp_path_factory):
    """fit, scan and upper-limit outputs of the CLI, packed into one submission."""
    tmp = tmp_path_factory.mktemp("results")
    fit = run_json(["fit", toy, "--minos", "--quiet"], tmp, "fit.json")
    scan = run_json(["scan", toy, "--poi-range", "0", "2", "--points", "5", "--quiet"], tmp, "scan.json")
    limit = run_json(["upper-limit", toy, "--poi-range", "0.05", "3.05", "--points", "7", "--quiet"], tmp,
                     "limit.json")
    target = tmp / "hepdata"
    result = run(["pack", toy, "--hepdata", target, "--result", tmp / "fit.json",
                  "--result", tmp / "scan.json", "--result", tmp / "limit.json", "--quiet"])
    assert result.exit_code == 0, result.output
    return target, fit, scan, limit


def _documents(target):
    return list(yaml.safe_load_all((target / "submission.yaml").read_text()))


def _table(target, name):
    doc = next(d for d in _documents(target)[1:] if d["name"] == name)
    return yaml.safe_load((target / doc["data_file"]).read_text())


def test_submission_is_valid_and_lists_the_bundle_with_its_digest(submission):
    target, *_ = submission
    assert hepdata.validate_submission(target) is True
    record, *tables = _documents(target)
    (resource,) = record["additional_resources"]
    assert resource["location"] == "workspace.tar.gz"
    assert f"sha256: {sha256_file(target / 'workspace.tar.gz')}" in resource["description"]
    assert [t["name"] for t in tables] == ["Best-fit parameters", "Profile likelihood scan of mu",
                                           "Upper limits on mu", "CLs versus mu"]


def test_tables_hold_the_results_numbers(submission):
    target, fit, scan, limit = submission
    best = _table(target, "Best-fit parameters")
    assert [v["value"] for v in best["independent_variables"][0]["values"]] == fit["parameters"]
    rows = best["dependent_variables"][0]["values"]
    np.testing.assert_array_equal([r["value"] for r in rows], fit["values"])
    np.testing.assert_array_equal([r["errors"][0]["symerror"] for r in rows], fit["errors"])
    minos = rows[0]["errors"][1]["asymerror"]
    assert [minos["minus"], minos["plus"]] == fit["minos"]["mu"]

    table = _table(target, "Profile likelihood scan of mu")
    np.testing.assert_array_equal([v["value"] for v in table["independent_variables"][0]["values"]],
                                  scan["poi_values"])
    np.testing.assert_array_equal([v["value"] for v in table["dependent_variables"][0]["values"]], scan["tmu"])

    limits = _table(target, "Upper limits on mu")["dependent_variables"][0]
    np.testing.assert_array_equal([v["value"] for v in limits["values"]], [limit["observed"], *limit["expected"]])
    assert limits["qualifiers"] == [{"name": "CL", "value": pytest.approx(0.95)}]
    curve = _table(target, "CLs versus mu")["dependent_variables"]
    np.testing.assert_array_equal([v["value"] for v in curve[0]["values"]], limit["cls_observed"])
    np.testing.assert_array_equal([v["value"] for v in curve[3]["values"]], np.asarray(limit["cls_expected"])[:, 2])


def test_verify_reads_the_unpacked_submission(submission, tmp_path):
    target, *_ = submission
    report = run_json(["verify", target, "--quiet"], tmp_path)
    assert report["validated"] is True
    assert report["bundles"][0]["valid"] is True
    plain = run_json(["verify", target / "workspace.tar.gz", "--quiet"], tmp_path, "plain.json")
    assert plain["digest"] == report["bundles"][0]["digest"]


def test_a_replaced_bundle_fails_verification(submission, toy, tmp_path):
    target, *_ = submission
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in target.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    other = tmp_path / "other.tar.gz"
    assert run(["pack", toy, other, "--quiet"]).exit_code == 0
    with other.open("ab") as handle:  # a different valid-looking archive
        handle.write(b"\0" * 512)
    (copy / "workspace.tar.gz").write_bytes(other.read_bytes())
    one_line_error(run(["verify", copy]), "workspace.tar.gz", "differs from the", "submission.yaml")


def test_computed_fit_and_scan_without_results(toy, tmp_path):
    summary = hepdata.write_submission(toy, tmp_path / "sub")
    assert summary["tables"] == ["Best-fit parameters", "Profile likelihood scan of mu"]
    ws = Workspace.load(toy)
    model = ws.model()
    best = infer.fit(model, ws.data(model))
    values = [r["value"] for r in _table(tmp_path / "sub", "Best-fit parameters")["dependent_variables"][0]["values"]]
    np.testing.assert_allclose(values, best.values, atol=1e-5)
    scan = _table(tmp_path / "sub", "Profile likelihood scan of mu")
    mus = [v["value"] for v in scan["independent_variables"][0]["values"]]
    assert min(mus) < best.poi_value < max(mus)
    assert min(v["value"] for v in scan["dependent_variables"][0]["values"]) < 0.05


def test_bad_inputs_name_what_is_wrong(toy, tmp_path):
    not_result = tmp_path / "x.json"
    not_result.write_text(json.dumps({"hello": 1}))
    one_line_error(run(["pack", toy, "--hepdata", tmp_path / "h", "--result", not_result]),
                   "result 1", "not a ratiofactory result")
    assert not (tmp_path / "h").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    one_line_error(run(["pack", toy, "--hepdata", busy, "--result", not_result]), "new or empty")
    assert (busy / "keep.txt").read_text() == "mine"
    one_line_error(run(["pack", toy]), "BUNDLE", "--hepdata")


def test_invalid_table_is_reported_by_the_validator(submission, tmp_path):
    target, *_ = submission
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in target.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    (copy / "bestfit.yaml").write_text(yaml.safe_dump({"independent_variables": "nope"}))
    with pytest.raises(InvalidFile, match="not a valid HEPData submission"):
        hepdata.validate_submission(copy)


def test_nulls_of_ordinary_results_become_missing_values(toy, tmp_path):
    """The default (root-finding) upper-limit JSON has null CLs where the root finder did
    not evaluate, and a fit with the POI on a bound has a null error: both were refused
    ("not a complete ratiofactory result"); now nulls are HEPData's missing value "-", a
    null error is omitted, a limit beyond the range is "> HI", and the validator accepts it."""
    limit = run_json(["upper-limit", toy, "--quiet"], tmp_path, "limit.json")
    assert None in limit["cls_observed"]
    patch = tmp_path / "bound.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/measurements/0/config/parameters/0",
                                  "value": {"name": "mu", "bounds": [[1.5, 4.0]], "inits": [2.0]}}]))
    fit = run_json(["fit", toy, "-p", patch, "--quiet"], tmp_path, "fit.json")
    assert fit["errors"][0] is None
    assert fit["at_bound"] == {"mu": "lower"}
    outside = run_json(["upper-limit", toy, "--poi-range", "0.05", "1", "--points", "3", "--quiet"], tmp_path,
                       "outside.json")
    assert "above" in outside["outside_range"]
    target = tmp_path / "hepdata"
    result = run(["pack", toy, "--hepdata", target, "--quiet",
                  *(x for name in ("limit", "fit") for x in ("--result", tmp_path / f"{name}.json"))])
    assert result.exit_code == 0, result.output
    assert hepdata.validate_submission(target) is True
    curve = _table(target, "CLs versus mu")["dependent_variables"][0]["values"]
    assert [v["value"] for v in curve] == ["-" if c is None else c for c in limit["cls_observed"]]
    best = _table(target, "Best-fit parameters")["dependent_variables"][0]["values"]
    assert best[0] == {"value": 1.5}  # no error entry for the POI on its bound
    assert best[1]["errors"][0]["symerror"] == fit["errors"][1]
    described = {d["name"]: d["description"] for d in _documents(target)[1:]}
    assert "mu (lower)" in described["Best-fit parameters"]
    other = tmp_path / "hepdata2"
    assert run(["pack", toy, "--hepdata", other, "--result", tmp_path / "outside.json", "--quiet"]).exit_code == 0
    limits = [v["value"] for v in _table(other, "Upper limits on mu")["dependent_variables"][0]["values"]]
    assert limits == [f"> {1:g}" if where == "above" else value for value, where in
                      zip([outside["observed"], *outside["expected"]], outside["outside_range"], strict=True)]


def test_impacts_without_poi_error_and_nan_values_are_tabulated():
    impacts = {"poi": "mu", "poi_value": 0.0, "poi_error": None, "rows": [
        {"name": "a", "pull": 0.1, "constraint": 0.9, "hessian": None, "prefit_up": 0.0, "prefit_down": 0.2,
         "postfit_up": None, "postfit_down": float("nan")}]}
    table = hepdata.result_table(impacts)
    assert "no Hesse error" in table.description
    values = [v["values"][0]["value"] for v in table.data["dependent_variables"]]
    assert values == [0.1, 0.9, "-", 0.0, 0.2, "-", "-"]
